"""ClientApp: adds 1 to the model; one node is slow in round 1."""

import time

from flwr.client import ClientApp, NumPyClient
from flwr.common import Context


class Client(NumPyClient):
    def __init__(self, slow_seconds: float) -> None:
        self.slow_seconds = slow_seconds

    def fit(self, parameters, config):
        if int(config["server-round"]) == 1 and self.slow_seconds > 0:
            print(f"straggling for {self.slow_seconds:.0f}s", flush=True)
            time.sleep(self.slow_seconds)
        return [p + 1 for p in parameters], 1, {}


def client_fn(context: Context):
    pid = int(context.node_config.get("partition-id", 0))
    slow = pid == int(context.run_config["straggler-partition"])
    return Client(float(context.run_config["straggle-seconds"]) if slow else 0.0).to_client()


app = ClientApp(client_fn=client_fn)

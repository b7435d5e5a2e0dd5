"""ServerApp: FedAvg over a tiny model on Flower's strategy API, with a round timeout."""

import numpy as np
from flwr.common import Context, ndarrays_to_parameters
from flwr.server import ServerApp, ServerAppComponents, ServerConfig
from flwr.server.strategy import FedAvg


def server_fn(context: Context) -> ServerAppComponents:
    strategy = FedAvg(
        fraction_evaluate=0.0,
        min_fit_clients=2,
        min_available_clients=2,
        initial_parameters=ndarrays_to_parameters([np.zeros((2, 2))]),
        on_fit_config_fn=lambda rnd: {"server-round": rnd},
    )
    config = ServerConfig(
        num_rounds=int(context.run_config["num-server-rounds"]),
        round_timeout=float(context.run_config["round-timeout"]),
    )
    return ServerAppComponents(strategy=strategy, config=config)


app = ServerApp(server_fn=server_fn)

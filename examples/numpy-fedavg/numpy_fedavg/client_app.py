"""ClientApp: a fake, deterministic local step and a per-run counter in `context.state`.

`train` adds `(partition-id + 1) * lr` to every array and reports
`num-examples = 10 * (partition-id + 1)`, so the FedAvg result depends on the node config
but not on node ids, timing or message order. Every `train` call increments a counter
kept in `context.state`; the counter is reported as a metric, which shows that the
SuperNode persists the ClientApp's state across rounds of one run.

With the run config `fail-partition = N`, the node with `partition-id = N` raises in
`train`, to show that a failing ClientApp reaches the ServerApp as an error reply.
"""

import numpy as np
from flwr.client import ClientApp
from flwr.common import ArrayRecord, Context, Message, MetricRecord, RecordDict

app = ClientApp()


def _partition_id(context: Context) -> int:
    return int(context.node_config.get("partition-id", 0))


def _counter(context: Context) -> int:
    if "counter" in context.state:
        return int(context.state["counter"]["n"])
    return 0


@app.train()
def train(msg: Message, context: Context) -> Message:
    pid = _partition_id(context)
    if pid == int(context.run_config.get("fail-partition", -1)):
        raise ValueError(f"partition {pid} fails on purpose")
    lr = float(msg.content["config"]["lr"])
    arrays = msg.content["arrays"].to_numpy_ndarrays()
    counter = _counter(context) + 1
    context.state["counter"] = MetricRecord({"n": counter})
    updated = [(a + (pid + 1) * lr).astype(a.dtype) for a in arrays]
    content = RecordDict(
        {
            "arrays": ArrayRecord(updated),
            "metrics": MetricRecord(
                {
                    "num-examples": 10 * (pid + 1),
                    "train-loss": 1.0 / counter,
                    "partition-id": pid,
                    "counter": counter,
                }
            ),
        }
    )
    return Message(content, reply_to=msg)


@app.evaluate()
def evaluate(msg: Message, context: Context) -> Message:
    pid = _partition_id(context)
    arrays = msg.content["arrays"].to_numpy_ndarrays()
    loss = float(sum(float(np.sum(a, dtype=np.float64)) for a in arrays))
    content = RecordDict(
        {
            "metrics": MetricRecord(
                {
                    "num-examples": 5 * (pid + 1),
                    "eval-loss": loss,
                    "partition-id": pid,
                    "counter": _counter(context),
                }
            )
        }
    )
    return Message(content, reply_to=msg)

"""ClientApp: trains and evaluates the logistic regression on this node's partition."""

import numpy as np
from flwr.client import ClientApp
from flwr.common import Array, ArrayRecord, Context, Message, MetricRecord, RecordDict

from quickstart_numpy import task

app = ClientApp()


def _data(context: Context):
    pid = int(context.node_config.get("partition-id", 0))
    num = int(context.node_config.get("num-partitions", 1))
    return pid, task.partition(pid, num)


def _model(msg: Message):
    arrays = msg.content["arrays"]
    return arrays["weight"].numpy().reshape(-1), float(arrays["bias"].numpy()[0])


def _arrays(w: np.ndarray, b: float) -> ArrayRecord:
    return ArrayRecord(
        {"weight": Array(w.reshape(1, task.DIM).astype(np.float32)), "bias": Array(np.array([b], dtype=np.float32))}
    )


@app.train()
def train(msg: Message, context: Context) -> Message:
    w, b = _model(msg)
    pid, (train_set, _) = _data(context)
    config = msg.content["config"]
    lr = float(config.get("lr", context.run_config.get("lr", 0.1)))
    rnd = int(config.get("server-round", 0))
    epochs = int(context.run_config.get("local-epochs", 1))
    w, b, loss = task.train(w, b, train_set, epochs, lr, (pid << 32) ^ rnd)
    metrics = MetricRecord({"train_loss": loss, "num-examples": len(train_set[1])})
    return Message(RecordDict({"arrays": _arrays(w, b), "metrics": metrics}), reply_to=msg)


@app.evaluate()
def evaluate(msg: Message, context: Context) -> Message:
    w, b = _model(msg)
    _, (_, test_set) = _data(context)
    loss, acc = task.evaluate(w, b, test_set)
    metrics = MetricRecord({"eval_loss": loss, "eval_acc": acc, "num-examples": len(test_set[1])})
    return Message(RecordDict({"metrics": metrics}), reply_to=msg)

"""ServerApp: FedAvg weighted by `num-examples`, as the quickstart's Rust ServerApp does.

Each round: a `train` message to every node, the returned weights averaged; an `evaluate`
message to every node; a central evaluation on the held-out set. Ends with one line

    QUICKSTART accuracy <initial> -> <final>, final loss <loss>
"""

import time

import numpy as np
from flwr.common import Array, ArrayRecord, ConfigRecord, Context, Message, MessageType, RecordDict
from flwr.server import Grid, ServerApp

from quickstart_numpy import task

app = ServerApp()


def _wait_for_nodes(grid: Grid, n: int, timeout: float) -> list[int]:
    deadline = time.monotonic() + timeout
    while len(ids := sorted(grid.get_node_ids())) < n:
        if time.monotonic() > deadline:
            raise RuntimeError(f"only {len(ids)} of {n} nodes connected after {timeout:.0f}s")
        time.sleep(0.5)
    return ids


def _ask(grid: Grid, nodes, kind: str, content: RecordDict, rnd: int, timeout: float) -> list[Message]:
    msgs = [Message(content, nid, kind, group_id=str(rnd)) for nid in nodes]
    replies = [r for r in grid.send_and_receive(msgs, timeout=timeout) if not r.has_error()]
    if len(replies) != len(msgs):
        raise RuntimeError(f"{kind}: {len(replies)} good replies to {len(msgs)} messages")
    return replies


def _weighted(values, weights):
    total = float(sum(weights))
    return sum(v.astype(np.float64) * w for v, w in zip(values, weights)) / total


def _arrays(w: np.ndarray, b: float) -> ArrayRecord:
    return ArrayRecord({"weight": Array(w.reshape(1, task.DIM)), "bias": Array(np.array([b], dtype=np.float32))})


@app.main()
def main(grid: Grid, context: Context) -> None:
    rc = context.run_config
    rounds, lr = int(rc["num-server-rounds"]), float(rc["lr"])
    min_nodes, timeout = int(rc["min-nodes"]), float(rc.get("round-timeout", 600))
    w, b = np.zeros(task.DIM, dtype=np.float32), 0.0
    test_set = task.central_test_set()
    initial, _ = task.evaluate(w, b, test_set)[::-1]
    for rnd in range(1, rounds + 1):
        nodes = _wait_for_nodes(grid, min_nodes, float(rc.get("node-wait-timeout", 300)))
        arrays = _arrays(w, b)
        config = ConfigRecord({"lr": lr, "server-round": rnd})
        train = _ask(grid, nodes, MessageType.TRAIN, RecordDict({"arrays": arrays, "config": config}), rnd, timeout)
        weights = [int(r.content["metrics"]["num-examples"]) for r in train]
        w = _weighted([r.content["arrays"]["weight"].numpy().reshape(-1) for r in train], weights).astype(np.float32)
        b = float(_weighted([r.content["arrays"]["bias"].numpy() for r in train], weights)[0])
        arrays = _arrays(w, b)
        ev = _ask(grid, nodes, MessageType.EVALUATE, RecordDict({"arrays": arrays}), rnd, timeout)
        ev_w = [int(r.content["metrics"]["num-examples"]) for r in ev]
        ev_loss = sum(float(r.content["metrics"]["eval_loss"]) * n for r, n in zip(ev, ev_w)) / sum(ev_w)
        loss, acc = task.evaluate(w, b, test_set)
        print(f"round {rnd}: federated eval loss {ev_loss:.4f}, central loss {loss:.4f}, accuracy {acc:.4f}")
    loss, acc = task.evaluate(w, b, test_set)
    print(f"QUICKSTART accuracy {initial:.4f} -> {acc:.4f}, final loss {loss:.4f}", flush=True)

"""ServerApp: FedAvg over numpy arrays with Flower 1.20's Message API.

Each round sends one `train` message to every connected node, averages the returned
arrays weighted by `num-examples`, then sends one `evaluate` message to every node. It
prints one `ROUND` line per round and, at the end, one line

    FINAL {"arrays": [...], "counters": {...}, "eval-loss": ..., "rounds": ...}

with every float rounded to 6 decimals and keys sorted, so the same app prints the same
line on any correct SuperLink/SuperNode pair (Python Flower's or Sepal's).
"""

import json
import time

import numpy as np
from flwr.common import ArrayRecord, ConfigRecord, Context, Message, MessageType, RecordDict
from flwr.server import Grid, ServerApp

app = ServerApp()


def _wait_for_nodes(grid: Grid, n: int, timeout: float) -> list[int]:
    deadline = time.monotonic() + timeout
    announced = False
    while len(ids := sorted(grid.get_node_ids())) < n:
        if time.monotonic() > deadline:
            raise RuntimeError(f"only {len(ids)} of {n} nodes connected after {timeout:.0f}s")
        if not announced:
            print(f"waiting for {n} nodes ({len(ids)} connected)", flush=True)
            announced = True
        time.sleep(1)
    return ids


def _replies(grid: Grid, msgs: list[Message], kind: str, tolerate_errors: bool) -> list[Message]:
    replies = list(grid.send_and_receive(msgs))
    errors = [r for r in replies if r.has_error()]
    for r in errors:
        print(f"ERROR REPLY ({kind}) code={r.error.code} reason={r.error.reason}", flush=True)
    if len(replies) != len(msgs) or (errors and not tolerate_errors):
        raise RuntimeError(f"{kind}: {len(replies)} replies to {len(msgs)} messages, {len(errors)} errors")
    return [r for r in replies if not r.has_error()]


def _rounded(values) -> list:
    return [round(float(v), 6) for v in values]


@app.main()
def main(grid: Grid, context: Context) -> None:
    rounds = int(context.run_config["num-server-rounds"])
    lr = float(context.run_config["lr"])
    min_nodes = int(context.run_config["min-nodes"])
    wait_timeout = float(context.run_config.get("node-wait-timeout", 300))
    # With a failing partition configured, its error replies are logged and left out.
    tolerate_errors = int(context.run_config.get("fail-partition", -1)) >= 0
    arrays = [np.zeros((2, 3), dtype=np.float32), np.arange(4, dtype=np.float64)]
    counters: dict[str, int] = {}
    eval_loss = 0.0
    for rnd in range(1, rounds + 1):
        t0 = time.time()
        nodes = _wait_for_nodes(grid, min_nodes, wait_timeout)

        config = ConfigRecord({"lr": lr, "server-round": rnd})
        train = [
            Message(
                RecordDict({"arrays": ArrayRecord(arrays), "config": config}),
                nid,
                MessageType.TRAIN,
                group_id=str(rnd),
            )
            for nid in nodes
        ]
        replies = _replies(grid, train, "train", tolerate_errors)
        metrics = [r.content["metrics"] for r in replies]
        weights = [int(m["num-examples"]) for m in metrics]
        total = sum(weights)
        results = [r.content["arrays"].to_numpy_ndarrays() for r in replies]
        arrays = [
            (sum(res[i].astype(np.float64) * w for res, w in zip(results, weights)) / total).astype(
                arrays[i].dtype
            )
            for i in range(len(arrays))
        ]
        counters = {str(int(m["partition-id"])): int(m["counter"]) for m in metrics}

        evaluate = [
            Message(RecordDict({"arrays": ArrayRecord(arrays)}), nid, MessageType.EVALUATE, group_id=str(rnd))
            for nid in nodes
        ]
        ev = [r.content["metrics"] for r in _replies(grid, evaluate, "evaluate", tolerate_errors)]
        ev_total = sum(int(m["num-examples"]) for m in ev)
        eval_loss = sum(float(m["eval-loss"]) * int(m["num-examples"]) for m in ev) / ev_total

        print(
            f"ROUND {rnd}/{rounds}: {len(replies)} train replies, {len(ev)} eval replies, "
            f"counters={json.dumps(counters, sort_keys=True)}, eval-loss={eval_loss:.6f}, "
            f"{time.time() - t0:.2f}s",
            flush=True,
        )

    final = {
        "rounds": rounds,
        "arrays": [_rounded(a.astype(np.float64).ravel()) for a in arrays],
        "counters": counters,
        "eval-loss": round(eval_loss, 6),
    }
    print("FINAL " + json.dumps(final, sort_keys=True, separators=(",", ":")), flush=True)

"""ServerApp: sends one `size-mib` MiB float32 ArrayRecord to every node in one `train`
message each (a single `send_and_receive`), checks that every reply holds the array plus
`partition-id + 1`, and prints one line for the benchmark harness:

    LARGE roundtrip_s=<seconds of send_and_receive> ok=<good replies> nodes=<n> size_mib=<m>

The array is seeded random data, so its 20 MiB chunks are all distinct and none is
deduplicated by the object store.
"""

import time

import numpy as np
from flwr.common import ArrayRecord, Context, Message, MessageType, RecordDict
from flwr.server import Grid, ServerApp

app = ServerApp()

# Elements compared at a time when checking a reply (bounds the temporary copy to 64 MiB).
CHECK_STEP = 16 * 1024 * 1024


def _wait_for_nodes(grid: Grid, n: int, timeout: float) -> list[int]:
    deadline = time.monotonic() + timeout
    while len(ids := sorted(grid.get_node_ids())) < n:
        if time.monotonic() > deadline:
            raise RuntimeError(f"only {len(ids)} of {n} nodes connected after {timeout:.0f}s")
        time.sleep(0.2)
    return ids


def _reply_ok(reply: Message, base: np.ndarray) -> bool:
    if reply.has_error():
        print(f"ERROR REPLY code={reply.error.code} reason={reply.error.reason}", flush=True)
        return False
    offset = np.float32(int(reply.content["metrics"]["partition-id"]) + 1)
    arrays = reply.content["arrays"].to_numpy_ndarrays(keep_input=False)
    if len(arrays) != 1 or arrays[0].dtype != base.dtype or arrays[0].shape != base.shape:
        print(f"BAD REPLY: {[(a.dtype, a.shape) for a in arrays]}", flush=True)
        return False
    got = arrays[0]
    for start in range(0, base.size, CHECK_STEP):
        end = start + CHECK_STEP
        if not np.array_equal(got[start:end], base[start:end] + offset):
            print(f"BAD REPLY: values differ in elements {start}..{end}", flush=True)
            return False
    return True


@app.main()
def main(grid: Grid, context: Context) -> None:
    size_mib = int(context.run_config["size-mib"])
    min_nodes = int(context.run_config["min-nodes"])
    nodes = _wait_for_nodes(grid, min_nodes, float(context.run_config["node-wait-timeout"]))
    base = np.random.default_rng(0).random(size_mib * 1024 * 1024 // 4, dtype=np.float32)
    # One record shared by all messages: the app serialises the array once.
    content = RecordDict({"arrays": ArrayRecord([base])})
    msgs = [Message(content, nid, MessageType.TRAIN) for nid in nodes]

    t0 = time.monotonic()
    replies = list(grid.send_and_receive(msgs, timeout=float(context.run_config["reply-timeout"])))
    roundtrip = time.monotonic() - t0

    ok = 0
    while replies:
        ok += _reply_ok(replies.pop(), base)  # pop: each reply is freed once checked
    print(f"LARGE roundtrip_s={roundtrip:.3f} ok={ok} nodes={len(nodes)} size_mib={size_mib}", flush=True)
    if ok != len(nodes):
        raise RuntimeError(f"{ok} of {len(nodes)} replies were correct")

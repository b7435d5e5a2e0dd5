"""ServerApp: sends `num-messages` tiny `query` instructions to the one node, one at a
time (send, wait for the reply, next), then ends.

It polls for each reply every `poll-interval` seconds instead of using
`Grid.send_and_receive` (which sleeps 3 s between polls), so that a run of many messages
is not mostly waiting; the benchmark measures at the SuperNode, not here."""

import time

from flwr.common import ConfigRecord, Context, Message, MessageType, RecordDict
from flwr.server import Grid, ServerApp

app = ServerApp()


def _wait_for_node(grid: Grid, timeout: float) -> int:
    deadline = time.monotonic() + timeout
    while not (ids := sorted(grid.get_node_ids())):
        if time.monotonic() > deadline:
            raise RuntimeError(f"no node connected within {timeout:.0f}s")
        time.sleep(0.2)
    return ids[0]


def _reply(grid: Grid, msg_id: str, timeout: float, poll: float) -> Message:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        replies = list(grid.pull_messages([msg_id]))
        if replies:
            return replies[0]
        time.sleep(poll)
    raise RuntimeError(f"no reply to {msg_id} within {timeout:.0f}s")


@app.main()
def main(grid: Grid, context: Context) -> None:
    messages = int(context.run_config["num-messages"])
    timeout = float(context.run_config["reply-timeout"])
    poll = float(context.run_config["poll-interval"])
    node = _wait_for_node(grid, timeout)
    for seq in range(messages):
        msg = Message(RecordDict({"config": ConfigRecord({"seq": seq})}), node, MessageType.QUERY)
        (msg_id,) = grid.push_messages([msg])
        reply = _reply(grid, msg_id, timeout, poll)
        if reply.has_error():
            raise RuntimeError(f"message {seq}: error reply {reply.error.code}: {reply.error.reason}")
    print(f"DISPATCH done: {messages} messages to node {node}", flush=True)

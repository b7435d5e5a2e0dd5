"""ServerApp: one push of `messages` `query` instructions to the first node.

A SuperLink that bounds the messages a run may have in flight refuses the push as a
whole; the error ends this ServerApp, and the run's log shows it.
"""

import time

from flwr.common import ConfigRecord, Context, Message, RecordDict
from flwr.server import Grid, ServerApp

app = ServerApp()


@app.main()
def main(grid: Grid, context: Context) -> None:
    count = int(context.run_config["messages"])
    deadline = time.monotonic() + 120
    while not (nodes := sorted(grid.get_node_ids())):
        if time.monotonic() > deadline:
            raise RuntimeError("no node connected")
        time.sleep(0.5)
    messages = [
        Message(RecordDict({"config": ConfigRecord({"i": i})}), nodes[0], "query") for i in range(count)
    ]
    ids = list(grid.push_messages(messages))
    print(f"FLOOD pushed {len(ids)} messages", flush=True)

"""ClientApp: answers each `query` with a one-entry metric record (the instruction's
sequence number) and does nothing else, so that what is measured is the SuperNode's
dispatch and not the app."""

from flwr.client import ClientApp
from flwr.common import Context, Message, MetricRecord, RecordDict

app = ClientApp()


@app.query()
def query(msg: Message, context: Context) -> Message:
    seq = int(msg.content["config"]["seq"])
    return Message(RecordDict({"metrics": MetricRecord({"seq": seq})}), reply_to=msg)

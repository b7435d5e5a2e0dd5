"""ClientApp: answers every `query` with an empty reply."""

from flwr.client import ClientApp
from flwr.common import Context, Message, RecordDict

app = ClientApp()


@app.query()
def query(msg: Message, context: Context) -> Message:
    return Message(RecordDict(), reply_to=msg)

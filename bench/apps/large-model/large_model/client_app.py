"""ClientApp: replies to `train` with the received array plus `partition-id + 1`.

The reply differs from the request (and between nodes) on purpose: Flower stores objects by
content hash, so echoing the array unchanged would let the SuperLink skip the upload of
every chunk it already holds, and the way back would carry almost nothing.
"""

import numpy as np
from flwr.client import ClientApp
from flwr.common import ArrayRecord, Context, Message, MetricRecord, RecordDict

app = ClientApp()


@app.train()
def train(msg: Message, context: Context) -> Message:
    pid = int(context.node_config.get("partition-id", 0))
    arrays = msg.content["arrays"].to_numpy_ndarrays(keep_input=False)
    shifted = []
    for a in arrays:
        a += np.float32(pid + 1)  # in place: one copy of the array in memory
        shifted.append(a)
    content = RecordDict(
        {
            "arrays": ArrayRecord(shifted, keep_input=False),
            "metrics": MetricRecord({"partition-id": pid}),
        }
    )
    return Message(content, reply_to=msg)

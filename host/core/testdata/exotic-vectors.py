#!/usr/bin/env python3
"""Object ids of the "exotic" messages in src/objects/tests.rs, computed by real flwr.

Run with the flwr 1.20.0 venv: /work/flwr-venv/bin/python testdata/exotic-vectors.py
"""
import os
os.environ.setdefault("FLWR_TELEMETRY_ENABLED", "0")
import numpy as np
from flwr.common import Array, ArrayRecord, ConfigRecord, MetricRecord, RecordDict, Error, Metadata
from flwr.common.message import make_message
from flwr.common.inflatable import get_all_nested_objects, get_object_tree

md = Metadata(run_id=2**64-1, message_id="", src_node_id=7, dst_node_id=2**63, reply_to_message_id="",
              group_id="g\u00e9", created_at=0.0, ttl=-0.0, message_type="query.custom")
arrays = ArrayRecord({
    "f32": Array(np.arange(6, dtype=np.float32).reshape(2, 3) * 0.5),
    "f64scalar": Array(np.array(2.5, dtype=np.float64)),
    "empty": Array(np.zeros((0,), dtype=np.float32)),
    "i64": Array(np.array([-1, 2**40], dtype=np.int64)),
})
metrics = MetricRecord({"d": -0.0, "i": -5, "u": 2**63, "dl": [0.5, -1.0], "il": [-1, 0, 1],
                        "ul": [2**64-1, 1], "el": []})
config = ConfigRecord({"b": False, "s": "h\u00e9llo", "by": b"\x00\x01", "bl": [True, False],
                       "sl": ["x", "\u00ff"], "byl": [b"a", b""], "d": 1e-300, "i": 0, "el": [], "": "empty key"})
content = RecordDict({"\u043a\u043b\u044e\u0447": arrays, "\U0001F600": metrics, "q\"\\\n\x7f/": config,
                      "again": metrics})
msg = make_message(metadata=md, content=content)
for oid, o in get_all_nested_objects(msg).items():
    c = o.deflate()
    print(type(o).__name__, oid, len(c), c.hex() if len(c) < 600 else "")
def pt(t, ind=0):
    print(" " * ind + t.object_id)
    for c in t.children: pt(c, ind + 1)
pt(get_object_tree(msg))
emsg = make_message(metadata=Metadata(run_id=0, message_id="", src_node_id=1, dst_node_id=1,
        reply_to_message_id="abc", group_id="", created_at=1750000001.25, ttl=0.0, message_type="system"),
        error=Error(code=-3, reason="\u00fcn\u00efcode"))
for oid, o in get_all_nested_objects(emsg).items():
    c = o.deflate(); print(type(o).__name__, oid, len(c), c.hex())

//! Writes the seed corpus: `cargo run --example gen_corpus` (from fuzz/).

use std::fs;
use std::path::Path;

use prost::Message as _;
use sepal_core::records::{Array, ArrayRecord, ConfigRecord, Error, Message, Metadata, MetricRecord, RecordDict};
use sepal_proto::pb;

fn metadata() -> Metadata {
    Metadata {
        run_id: 1234,
        src_node_id: 1,
        dst_node_id: 5678,
        group_id: "1".into(),
        created_at: 1750000000.5,
        ttl: 43200.0,
        message_type: "train".into(),
        ..Metadata::default()
    }
}

fn messages() -> Vec<(&'static str, Message)> {
    let arrays = ArrayRecord::new()
        .with("w", Array::from_i64(&[0, 1, 2, 3, 4, 5], &[2, 3]).unwrap())
        .with("f", Array::from_f32(&[0.0, 0.5, 1.0], &[3]).unwrap())
        .with("empty", Array::from_f64(&[], &[0]).unwrap());
    let metrics = MetricRecord::new().with("loss", 0.5.into()).with("n", 10i64.into()).with("ids", vec![1i64, 2].into());
    let config = ConfigRecord::new()
        .with("lr", 0.1.into())
        .with("flag", true.into())
        .with("name", "x".into())
        .with("tags", vec!["a".to_owned(), "b".to_owned()].into());
    let content = RecordDict::new().with("arrays", arrays.into()).with("metrics", metrics.into()).with("config", config.into());
    vec![
        ("full", Message::with_content(metadata(), content)),
        ("empty", Message::with_content(metadata(), RecordDict::new())),
        ("error", Message::with_error(metadata(), Error::new(-3, "nope ✗"))),
    ]
}

fn main() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("corpus");
    for dir in ["fab_read", "object_decode", "record_convert"] {
        fs::create_dir_all(root.join(dir)).unwrap();
    }
    let fabs = Path::new(env!("CARGO_MANIFEST_DIR")).join("../fab/tests/data");
    for entry in fs::read_dir(fabs).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().is_some_and(|e| e == "fab") {
            fs::copy(&path, root.join("fab_read").join(path.file_name().unwrap())).unwrap();
        }
    }
    for (name, message) in messages() {
        let (_, objects, _) = sepal_core::message_to_objects(&message);
        for flags in [1u8, 16 | 1] {
            let input = sepal_fuzz::encode_objects_input(flags, &objects);
            sepal_fuzz::object_decode(&input);
            fs::write(root.join("object_decode").join(format!("{name}-{flags}")), input).unwrap();
        }
        let proto = pb::Message::from(&message).encode_to_vec();
        sepal_fuzz::record_convert(&proto);
        fs::write(root.join("record_convert").join(name), proto).unwrap();
        // One raw object, for the head parser.
        let (_, bytes) = &objects[0];
        fs::write(root.join("object_decode").join(format!("{name}-raw")), bytes).unwrap();
    }
}

//! The large-model benchmark's ClientApp: replies to `train` with the received float32
//! array plus `partition-id + 1`, like the Python app in `bench/apps/large-model`.
//!
//! A 1 GiB array leaves little room in a wasm32 address space, so the array is taken out
//! of the instruction and shifted in place: it is a slice of the instruction's bytes, and
//! once nothing else holds those, `BytesMut::from` takes them over without a copy.

use sepal_sdk::bytes::BytesMut;
use sepal_sdk::prelude::*;

fn train(mut msg: Message, ctx: &mut Context) -> Result<Message, AppError> {
    let pid = ctx.node_config.get_i64_or("partition-id", 0);
    let offset = (pid + 1) as f32;
    let array = match msg.take_content().remove("arrays") {
        Some(Record::Array(mut arrays)) => arrays.remove("w"),
        _ => None,
    };
    let array = array.ok_or_else(|| AppError::new("the instruction has no array `arrays.w`"))?;
    let header = array.data.len().checked_sub(array.numel() * 4).filter(|_| array.dtype == "float32");
    let header = header.ok_or_else(|| AppError::new(format!("`arrays.w` is not a float32 array: {}", array.dtype)))?;
    let Array { dtype, shape, stype, data } = array;
    let mut data = BytesMut::from(data);
    for value in data[header..].chunks_exact_mut(4) {
        let shifted = f32::from_le_bytes(value.try_into().expect("4 bytes")) + offset;
        value.copy_from_slice(&shifted.to_le_bytes());
    }
    let shifted = Array { dtype, shape, stype, data: data.freeze() };
    let content = RecordDict::new()
        .with("arrays", ArrayRecord::new().with("w", shifted).into())
        .with("metrics", MetricRecord::new().with("partition-id", pid.into()).into());
    Ok(msg.reply(content))
}

sepal_sdk::export_client_app!(ClientApp::new().train(train));

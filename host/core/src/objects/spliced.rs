//! A message's protobuf encoding (`flwr.proto.Message`, what a Wasm app is handed) written
//! straight from its objects: each array's data is copied once, from its chunks into the
//! encoding, not joined into one buffer first and copied again. For a 1 GiB model that is
//! a gigabyte less to copy and to hold.

use bytes::Bytes;
use prost::encoding::{encoded_len_varint, key_len, message};
use prost::Message as _;
use sepal_proto::pb;
use sepal_proto::pb::record_dict::item::Value;

use super::encode::put_len_header;

/// The data of each array of a message, in the order its records and their arrays come,
/// as the chunks it is made of.
pub(crate) type ArrayData = Vec<Vec<Bytes>>;

/// The arrays' data still to write, in order.
type Arrays<'a> = std::slice::Iter<'a, Vec<Bytes>>;

/// The encoding of `message`, whose arrays' data are empty, with the data of its i-th array
/// (in order of records, then arrays) being `data[i]` joined: the same bytes prost would
/// write for the message with that data. `None` if `data` does not have one entry per array.
pub(crate) fn encode_with_array_data(msg: &pb::Message, data: &ArrayData) -> Option<Vec<u8>> {
    let mut arrays = data.iter();
    let content_len = msg.content.as_ref().map(|c| record_dict_len(c, &mut arrays));
    if arrays.next().is_some() || content_len.is_some_and(|l| l.is_none()) {
        return None;
    }
    let content_len = content_len.flatten();
    let meta_len = msg.metadata.as_ref().map_or(0, |m| message::encoded_len(1, m));
    let error_len = msg.error.as_ref().map_or(0, |e| message::encoded_len(3, e));
    let total = meta_len + content_len.map_or(0, |l| key_len(2) + delimited(l)) + error_len;

    let mut buf = Vec::with_capacity(total);
    if let Some(meta) = &msg.metadata {
        message::encode(1, meta, &mut buf);
    }
    if let (Some(content), Some(len)) = (&msg.content, content_len) {
        put_len_header(&mut buf, 2, len);
        write_record_dict(content, &mut data.iter(), &mut buf);
    }
    if let Some(error) = &msg.error {
        message::encode(3, error, &mut buf);
    }
    debug_assert_eq!(buf.len(), total);
    Some(buf)
}

/// A length-delimited field's bytes after its key.
fn delimited(len: usize) -> usize {
    encoded_len_varint(len as u64) + len
}

fn data_len(chunks: &[Bytes]) -> usize {
    chunks.iter().map(Bytes::len).sum()
}

/// `RecordDict.Item` without its value (the key, as prost writes it).
fn item_key(key: &str) -> pb::record_dict::Item {
    pb::record_dict::Item { key: key.to_owned(), value: None }
}

/// `ArrayRecord.Item` without its value.
fn array_item_key(key: &str) -> pb::array_record::Item {
    pb::array_record::Item { key: key.to_owned(), value: None }
}

fn record_dict_len(rd: &pb::RecordDict, arrays: &mut Arrays<'_>) -> Option<usize> {
    let mut len = 0;
    for item in &rd.items {
        let item_len = match &item.value {
            Some(Value::ArrayRecord(ar)) => {
                item_key(&item.key).encoded_len() + key_len(2) + delimited(array_record_len(ar, arrays)?)
            }
            _ => item.encoded_len(),
        };
        len += key_len(1) + delimited(item_len);
    }
    Some(len)
}

fn array_record_len(ar: &pb::ArrayRecord, arrays: &mut Arrays<'_>) -> Option<usize> {
    let mut len = 0;
    for item in &ar.items {
        let key_only = array_item_key(&item.key).encoded_len();
        let value = match &item.value {
            Some(array) => key_len(2) + delimited(array_len(array, arrays.next()?)),
            None => 0,
        };
        len += key_len(1) + delimited(key_only + value);
    }
    Some(len)
}

fn array_len(array: &pb::Array, chunks: &[Bytes]) -> usize {
    let n = data_len(chunks);
    array.encoded_len() + if n > 0 { key_len(4) + delimited(n) } else { 0 }
}

fn write_record_dict(rd: &pb::RecordDict, arrays: &mut Arrays<'_>, buf: &mut Vec<u8>) {
    for item in &rd.items {
        let Some(Value::ArrayRecord(ar)) = &item.value else {
            message::encode(1, item, buf);
            continue;
        };
        let mut ahead = arrays.clone();
        let ar_len = array_record_len(ar, &mut ahead).unwrap_or(0);
        let key = item_key(&item.key);
        put_len_header(buf, 1, key.encoded_len() + key_len(2) + delimited(ar_len));
        key.encode_raw(buf);
        put_len_header(buf, 2, ar_len);
        write_array_record(ar, arrays, buf);
    }
}

fn write_array_record(ar: &pb::ArrayRecord, arrays: &mut Arrays<'_>, buf: &mut Vec<u8>) {
    for item in &ar.items {
        let key = array_item_key(&item.key);
        let Some(array) = &item.value else {
            message::encode(1, &key, buf);
            continue;
        };
        let chunks = arrays.next().map_or(&[][..], Vec::as_slice);
        let len = array_len(array, chunks);
        put_len_header(buf, 1, key.encoded_len() + key_len(2) + delimited(len));
        key.encode_raw(buf);
        put_len_header(buf, 2, len);
        array.encode_raw(buf);
        let n = data_len(chunks);
        if n > 0 {
            put_len_header(buf, 4, n);
            chunks.iter().for_each(|c| buf.extend_from_slice(c));
        }
    }
}

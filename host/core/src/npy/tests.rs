//! `.npy` bytes compared with `numpy.save` output (numpy 2.4.6 in the flwr 1.20.0 venv).

use super::*;
use crate::records::Array;

/// `np.arange(6, dtype=np.float32).reshape(2, 3) * 0.5`
const F32_2X3: &str = "934e554d5059010076007b276465736372273a20273c6634272c2027666f727472616e5f6f72646572273a2046616c73652c20277368617065273a2028322c2033292c207d202020202020202020202020202020202020202020202020202020202020202020202020202020202020202020202020202020202020202020200a000000000000003f0000803f0000c03f0000004000002040";
/// `np.array([1.5, -2.0, 3.25, 1e300])`
const F64_4: &str = "934e554d5059010076007b276465736372273a20273c6638272c2027666f727472616e5f6f72646572273a2046616c73652c20277368617065273a2028342c292c207d2020202020202020202020202020202020202020202020202020202020202020202020202020202020202020202020202020202020202020202020200a000000000000f83f00000000000000c00000000000000a409c7500883ce4377e";
/// `np.array(-7, dtype=np.int64)` (0-d)
const I64_SCALAR: &str = "934e554d5059010076007b276465736372273a20273c6938272c2027666f727472616e5f6f72646572273a2046616c73652c20277368617065273a2028292c207d20202020202020202020202020202020202020202020202020202020202020202020202020202020202020202020202020202020202020202020202020200af9ffffffffffffff";
/// `np.zeros((0,), dtype=np.float32)`
const F32_EMPTY: &str = "934e554d5059010076007b276465736372273a20273c6634272c2027666f727472616e5f6f72646572273a2046616c73652c20277368617065273a2028302c292c207d2020202020202020202020202020202020202020202020202020202020202020202020202020202020202020202020202020202020202020202020200a";
/// `np.zeros((1,) * 36, dtype=np.uint8)`: the header is exactly aligned before padding,
/// so numpy pads a full 64 bytes.
const U8_36_DIMS: &str = "934e554d50590100f6007b276465736372273a20277c7531272c2027666f727472616e5f6f72646572273a2046616c73652c20277368617065273a2028312c20312c20312c20312c20312c20312c20312c20312c20312c20312c20312c20312c20312c20312c20312c20312c20312c20312c20312c20312c20312c20312c20312c20312c20312c20312c20312c20312c20312c20312c20312c20312c20312c20312c20312c2031292c207d2020202020202020202020202020202020202020202020202020202020202020202020202020202020202020202020202020202020202020202020202020202020202020202020202020202020202020202020200a00";
/// `np.asfortranarray(np.arange(6, dtype=np.float32).reshape(2, 3))`
const F32_FORTRAN: &str = "934e554d5059010076007b276465736372273a20273c6634272c2027666f727472616e5f6f72646572273a20547275652c20277368617065273a2028322c2033292c207d20202020202020202020202020202020202020202020202020202020202020202020202020202020202020202020202020202020202020202020200a00000000000040400000803f00008040000000400000a040";
/// `np.arange(6, dtype='>f8').reshape(3, 2)`
const F64_BIG_ENDIAN: &str = "934e554d5059010076007b276465736372273a20273e6638272c2027666f727472616e5f6f72646572273a2046616c73652c20277368617065273a2028332c2032292c207d202020202020202020202020202020202020202020202020202020202020202020202020202020202020202020202020202020202020202020200a00000000000000003ff00000000000004000000000000000400800000000000040100000000000004014000000000000";

fn unhex(s: &str) -> Vec<u8> {
    hex::decode(s).unwrap()
}

#[test]
fn encodes_like_numpy_2d() {
    let values = [0.0f32, 0.5, 1.0, 1.5, 2.0, 2.5];
    assert_eq!(encode_values(&values, &[2, 3]).unwrap(), unhex(F32_2X3));
}

#[test]
fn encodes_like_numpy_1d() {
    let values = [1.5, -2.0, 3.25, 1e300];
    assert_eq!(encode_values(&values, &[4]).unwrap(), unhex(F64_4));
}

#[test]
fn encodes_like_numpy_0d() {
    assert_eq!(encode_values(&[-7i64], &[]).unwrap(), unhex(I64_SCALAR));
}

#[test]
fn encodes_like_numpy_empty() {
    assert_eq!(encode_values::<f32>(&[], &[0]).unwrap(), unhex(F32_EMPTY));
}

#[test]
fn pads_a_full_block_when_already_aligned() {
    let bytes = encode_values(&[0u8], &[1; 36]).unwrap();
    assert_eq!(bytes, unhex(U8_36_DIMS));
    assert_eq!(bytes.len(), 257);
}

#[test]
fn fortran_header_uses_the_last_axis_for_growth_padding() {
    let expected = unhex(F32_FORTRAN);
    assert_eq!(header_bytes("<f4", true, &[2, 3]), expected[..128]);
}

#[test]
fn round_trips_every_numpy_vector() {
    let back: Vec<f32> = decode_values(&unhex(F32_2X3)).unwrap();
    assert_eq!(back, [0.0, 0.5, 1.0, 1.5, 2.0, 2.5]);
    let back: Vec<f64> = decode_values(&unhex(F64_4)).unwrap();
    assert_eq!(back, [1.5, -2.0, 3.25, 1e300]);
    let back: Vec<i64> = decode_values(&unhex(I64_SCALAR)).unwrap();
    assert_eq!(back, [-7]);
    let back: Vec<f32> = decode_values(&unhex(F32_EMPTY)).unwrap();
    assert!(back.is_empty());
}

#[test]
fn reads_fortran_order_and_big_endian() {
    let back: Vec<f32> = decode_values(&unhex(F32_FORTRAN)).unwrap();
    assert_eq!(back, [0.0, 1.0, 2.0, 3.0, 4.0, 5.0]);
    let back: Vec<f64> = decode_values(&unhex(F64_BIG_ENDIAN)).unwrap();
    assert_eq!(back, [0.0, 1.0, 2.0, 3.0, 4.0, 5.0]);
}

#[test]
fn parses_the_header() {
    let bytes = unhex(F32_2X3);
    let (header, data) = parse(&bytes).unwrap();
    assert_eq!(header.descr, "<f4");
    assert!(!header.fortran_order);
    assert_eq!(header.shape, [2, 3]);
    assert_eq!(data.len(), 24);
}

#[test]
fn array_helpers_round_trip() {
    let a = Array::from_f32(&[1.0, 2.0, 3.0, 4.0], &[2, 2]).unwrap();
    assert_eq!((a.dtype.as_str(), a.shape.as_slice()), ("float32", &[2, 2][..]));
    assert_eq!(a.stype, Array::NUMPY);
    assert_eq!(a.to_f32().unwrap(), [1.0, 2.0, 3.0, 4.0]);
    let b = Array::from_f64(&[0.25], &[]).unwrap();
    assert_eq!(b.to_f64().unwrap(), [0.25]);
    assert_eq!(b.npy_header().unwrap().shape, Vec::<usize>::new());
    let c = Array::from_i64(&[5, 6], &[2]).unwrap();
    assert_eq!((c.dtype.as_str(), c.to_i64().unwrap()), ("int64", vec![5, 6]));
}

#[test]
fn rejects_bad_input() {
    let err = Array::from_f32(&[1.0, 2.0, 3.0], &[2, 2]).unwrap_err();
    assert!(matches!(err, NpyError::ShapeMismatch { expected: 4, found: 3, .. }));
    let a = Array::from_f32(&[1.0], &[1]).unwrap();
    assert!(matches!(a.to_f64(), Err(NpyError::WrongDtype { .. })));
    let mut truncated = unhex(F32_2X3);
    truncated.pop();
    assert!(matches!(parse(&truncated), Err(NpyError::DataLength { found: 23, .. })));
    assert!(matches!(parse(b"not npy at all"), Err(NpyError::NotNpy(_))));
    let mut version = unhex(F32_2X3);
    version[6] = 9;
    assert!(matches!(parse(&version), Err(NpyError::UnsupportedVersion { major: 9, .. })));
    let pickled = unhex(&F32_2X3.replace("3c6634", "7c4f30")); // '<f4' -> '|O0'
    assert!(matches!(parse(&pickled), Err(NpyError::UnsupportedDtype(_))));
    let raw = Array { stype: "torch.raw".into(), ..a };
    assert!(matches!(raw.to_f32(), Err(NpyError::NotNumpy(_))));
    let big = Array::from_f32(&[], &[0, 1 << 31]);
    assert!(matches!(big, Err(NpyError::ShapeTooLarge(_))));
}

#[test]
fn rejects_malformed_headers() {
    for header in [
        "{'descr': '<f4', 'fortran_order': False}",
        "{'descr': '<f4', 'fortran_order': Maybe, 'shape': (1,)}",
        "{'descr': [('a', '<f4')], 'fortran_order': False, 'shape': (1,)}",
        "{'descr': '<f4', 'fortran_order': False, 'shape': (1,), 'x': 1}",
        "{'descr': '<f4', 'fortran_order': False, 'shape': (-1,)}",
        "['descr']",
    ] {
        let mut bytes = b"\x93NUMPY\x01\x00".to_vec();
        bytes.extend_from_slice(&(header.len() as u16).to_le_bytes());
        bytes.extend_from_slice(header.as_bytes());
        assert!(parse(&bytes).is_err(), "{header}");
    }
}

#[test]
fn huge_headers_use_format_2() {
    // numpy's `_write_array_header` for 30000 dims of 1 (a header numpy itself cannot load).
    let header = header_bytes("|u1", false, &[1; 30_000]);
    assert_eq!(header.len(), 90_112);
    assert_eq!(header[..12], unhex("934e554d50590200f45f0100"));
    let digest = crate::objects::object_id(&header);
    assert_eq!(digest, "d841060b86a7d1ce8c852ccbab97bfd2240a243b10be9dbb6e9369e6e9401ecb");
}

//! The `.npy` file format, as `numpy.save(..., allow_pickle=False)` writes it.
//!
//! Flower's `Array` (stype `numpy.ndarray`) carries a complete `.npy` file as its data, and
//! object ids hash those bytes, so the header must be byte-identical to numpy's: format 1.0,
//! the dict `{'descr': '<f4', 'fortran_order': False, 'shape': (2, 3), }`, spare spaces for
//! growing the first axis (numpy's `GROWTH_AXIS_MAX_DIGITS`), then spaces and a newline so
//! that the whole header is a multiple of 64 bytes.
//!
//! Reading accepts format 1.0, 2.0 and 3.0, either byte order and Fortran order.

use crate::error::NpyError;

const MAGIC: &[u8] = b"\x93NUMPY";
const ALIGN: usize = 64;
const GROWTH_AXIS_MAX_DIGITS: usize = 21;

/// A numeric element type that can be stored in a `.npy` file.
pub trait NpyElement: Copy {
    /// numpy's dtype name (`str(ndarray.dtype)`), e.g. `float32`.
    const DTYPE: &'static str;
    /// numpy's little-endian `descr`, e.g. `<f4`.
    const DESCR: &'static str;
    /// Size in bytes.
    const SIZE: usize;
    /// Appends the little-endian bytes of `self`.
    fn put_le(self, out: &mut Vec<u8>);
    /// Reads one element from `SIZE` bytes in the given byte order.
    fn get(bytes: &[u8], big_endian: bool) -> Self;
}

macro_rules! npy_element {
    ($t:ty, $name:literal, $descr:literal) => {
        impl NpyElement for $t {
            const DTYPE: &'static str = $name;
            const DESCR: &'static str = $descr;
            const SIZE: usize = std::mem::size_of::<$t>();
            fn put_le(self, out: &mut Vec<u8>) {
                out.extend_from_slice(&self.to_le_bytes());
            }
            fn get(bytes: &[u8], big_endian: bool) -> Self {
                let mut raw = [0u8; std::mem::size_of::<$t>()];
                raw.copy_from_slice(bytes);
                if big_endian {
                    <$t>::from_be_bytes(raw)
                } else {
                    <$t>::from_le_bytes(raw)
                }
            }
        }
    };
}

npy_element!(f32, "float32", "<f4");
npy_element!(f64, "float64", "<f8");
npy_element!(i32, "int32", "<i4");
npy_element!(i64, "int64", "<i8");
npy_element!(u8, "uint8", "|u1");

/// The parsed header of a `.npy` file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NpyHeader {
    /// numpy's dtype descriptor, e.g. `<f4`.
    pub descr: String,
    /// Whether the data is in column-major order.
    pub fortran_order: bool,
    /// The array's shape (empty for a 0-d array).
    pub shape: Vec<usize>,
}

impl NpyHeader {
    /// Number of elements (1 for a 0-d array).
    pub fn len(&self) -> Option<usize> {
        self.shape.iter().try_fold(1usize, |n, &d| n.checked_mul(d))
    }

    /// Whether the array has no elements.
    pub fn is_empty(&self) -> bool {
        self.len() == Some(0)
    }
}

/// Encodes a complete `.npy` file for C-ordered `data` in the byte order of `descr`.
pub fn encode(descr: &str, shape: &[usize], data: &[u8]) -> Vec<u8> {
    let mut out = header_bytes(descr, false, shape);
    out.extend_from_slice(data);
    out
}

/// Encodes `values` with the given shape as a complete `.npy` file.
pub fn encode_values<T: NpyElement>(values: &[T], shape: &[usize]) -> Result<Vec<u8>, NpyError> {
    let expected = element_count(shape)?;
    if expected != values.len() {
        return Err(NpyError::ShapeMismatch { shape: shape.to_vec(), expected, found: values.len() });
    }
    let mut out = header_bytes(T::DESCR, false, shape);
    out.reserve(values.len() * T::SIZE);
    values.iter().for_each(|v| v.put_le(&mut out));
    Ok(out)
}

/// The header (magic, version, length, padded dict) numpy 2.x writes: format 1.0, or 2.0
/// if the header does not fit 64 KiB.
pub fn header_bytes(descr: &str, fortran_order: bool, shape: &[usize]) -> Vec<u8> {
    let mut dict = format!(
        "{{'descr': '{descr}', 'fortran_order': {}, 'shape': {}, }}",
        if fortran_order { "True" } else { "False" },
        python_tuple(shape)
    );
    let growth_axis = if fortran_order { shape.last() } else { shape.first() };
    if let Some(d) = growth_axis {
        let digits = d.to_string().len();
        dict.push_str(&" ".repeat(GROWTH_AXIS_MAX_DIGITS.saturating_sub(digits)));
    }
    let hlen = dict.len() + 1;
    let pad = ALIGN - (MAGIC.len() + 2 + 2 + hlen) % ALIGN;
    let mut out = Vec::with_capacity(12 + hlen + ALIGN);
    out.extend_from_slice(MAGIC);
    match u16::try_from(hlen + pad) {
        Ok(total) => {
            out.extend_from_slice(&[1, 0]);
            out.extend_from_slice(&total.to_le_bytes());
        }
        Err(_) => return header_v2(dict),
    }
    out.extend_from_slice(dict.as_bytes());
    out.resize(out.len() + pad, b' ');
    out.push(b'\n');
    out
}

/// Format 2.0 (4-byte header length), numpy's choice when the header exceeds 64 KiB.
fn header_v2(mut dict: String) -> Vec<u8> {
    let hlen = dict.len() + 1;
    let pad = ALIGN - (MAGIC.len() + 2 + 4 + hlen) % ALIGN;
    let total = u32::try_from(hlen + pad).unwrap_or(u32::MAX);
    dict.push_str(&" ".repeat(pad));
    dict.push('\n');
    let mut out = MAGIC.to_vec();
    out.extend_from_slice(&[2, 0]);
    out.extend_from_slice(&total.to_le_bytes());
    out.extend_from_slice(dict.as_bytes());
    out
}

fn python_tuple(shape: &[usize]) -> String {
    match shape {
        [] => "()".to_owned(),
        [d] => format!("({d},)"),
        _ => {
            let dims: Vec<String> = shape.iter().map(usize::to_string).collect();
            format!("({})", dims.join(", "))
        }
    }
}

fn element_count(shape: &[usize]) -> Result<usize, NpyError> {
    shape.iter().try_fold(1usize, |n, &d| n.checked_mul(d)).ok_or_else(|| NpyError::ShapeTooLarge(shape.to_vec()))
}

/// Splits a `.npy` file into its parsed header and its data bytes.
///
/// The data length must equal the shape's element count times the dtype's item size.
pub fn parse(bytes: &[u8]) -> Result<(NpyHeader, &[u8]), NpyError> {
    let (dict, data) = split_header(bytes)?;
    let header = parse_dict(dict)?;
    let item = item_size(&header.descr)?;
    let expected =
        header.len().and_then(|n| n.checked_mul(item)).ok_or_else(|| NpyError::ShapeTooLarge(header.shape.clone()))?;
    if expected != data.len() {
        return Err(NpyError::DataLength { shape: header.shape, descr: header.descr, expected, found: data.len() });
    }
    Ok((header, data))
}

/// Decodes a `.npy` file whose dtype is `T`, into C (row-major) order.
pub fn decode_values<T: NpyElement>(bytes: &[u8]) -> Result<Vec<T>, NpyError> {
    let (header, data) = parse(bytes)?;
    let big_endian = check_descr::<T>(&header.descr)?;
    let values: Vec<T> = data.chunks_exact(T::SIZE).map(|c| T::get(c, big_endian)).collect();
    if header.fortran_order && header.shape.len() > 1 {
        return Ok(fortran_to_c(&values, &header.shape));
    }
    Ok(values)
}

/// Returns whether `descr` is `T` in big-endian order; errors if it is another type.
fn check_descr<T: NpyElement>(descr: &str) -> Result<bool, NpyError> {
    let wrong = || NpyError::WrongDtype { expected: T::DESCR.to_owned(), found: descr.to_owned() };
    let (order, kind) = descr.split_at_checked(1).ok_or_else(wrong)?;
    if kind != &T::DESCR[1..] {
        return Err(wrong());
    }
    match order {
        "<" | "=" | "|" => Ok(false),
        ">" => Ok(T::SIZE > 1),
        _ => Err(wrong()),
    }
}

/// Reorders column-major `values` of `shape` into row-major order.
fn fortran_to_c<T: Copy>(values: &[T], shape: &[usize]) -> Vec<T> {
    let mut strides = Vec::with_capacity(shape.len());
    let mut stride = 1;
    for &d in shape {
        strides.push(stride);
        stride *= d;
    }
    let mut index = vec![0usize; shape.len()];
    let mut out = Vec::with_capacity(values.len());
    for _ in 0..values.len() {
        let offset: usize = index.iter().zip(&strides).map(|(i, s)| i * s).sum();
        out.push(values[offset]);
        for axis in (0..shape.len()).rev() {
            index[axis] += 1;
            if index[axis] < shape[axis] {
                break;
            }
            index[axis] = 0;
        }
    }
    out
}

/// numpy's item size for a simple `descr` such as `<f4` or `|b1`.
fn item_size(descr: &str) -> Result<usize, NpyError> {
    let unsupported = || NpyError::UnsupportedDtype(descr.to_owned());
    let mut chars = descr.chars();
    let order = chars.next().ok_or_else(unsupported)?;
    let kind = chars.next().ok_or_else(unsupported)?;
    if !"<>|=".contains(order) || !"biufc".contains(kind) {
        return Err(unsupported());
    }
    let size: usize = chars.as_str().parse().map_err(|_| unsupported())?;
    match size {
        1 | 2 | 4 | 8 | 16 => Ok(size),
        _ => Err(unsupported()),
    }
}

fn split_header(bytes: &[u8]) -> Result<(&str, &[u8]), NpyError> {
    if bytes.len() < 10 || !bytes.starts_with(MAGIC) {
        return Err(NpyError::NotNpy("missing the \\x93NUMPY magic string".into()));
    }
    let (major, minor) = (bytes[6], bytes[7]);
    let (len, start): (usize, usize) = match (major, minor) {
        (1, 0) => (u16::from_le_bytes([bytes[8], bytes[9]]) as usize, 10),
        (2, 0) | (3, 0) if bytes.len() >= 12 => {
            let raw = [bytes[8], bytes[9], bytes[10], bytes[11]];
            (u32::from_le_bytes(raw) as usize, 12)
        }
        (2, 0) | (3, 0) => return Err(NpyError::NotNpy("truncated header".into())),
        _ => return Err(NpyError::UnsupportedVersion { major, minor }),
    };
    let end = start
        .checked_add(len)
        .filter(|&e| e <= bytes.len())
        .ok_or_else(|| NpyError::NotNpy("header length exceeds the data".into()))?;
    let text = std::str::from_utf8(&bytes[start..end]).map_err(|_| NpyError::BadHeader("header is not text".into()))?;
    Ok((text, &bytes[end..]))
}

fn parse_dict(text: &str) -> Result<NpyHeader, NpyError> {
    let mut p = DictParser { s: text.as_bytes(), pos: 0 };
    let (mut descr, mut fortran, mut shape) = (None, None, None);
    p.expect(b'{')?;
    while !p.eat(b'}') {
        let key = p.string()?;
        p.expect(b':')?;
        match key.as_str() {
            "descr" => descr = Some(p.descr()?),
            "fortran_order" => fortran = Some(p.boolean()?),
            "shape" => shape = Some(p.tuple()?),
            other => return Err(bad(format!("unexpected key {other:?}"))),
        }
        if !p.eat(b',') {
            p.expect(b'}')?;
            break;
        }
    }
    p.skip_ws();
    if p.pos != p.s.len() {
        return Err(bad("unexpected text after the dict"));
    }
    match (descr, fortran, shape) {
        (Some(descr), Some(fortran_order), Some(shape)) => Ok(NpyHeader { descr, fortran_order, shape }),
        _ => Err(bad("the dict needs 'descr', 'fortran_order' and 'shape'")),
    }
}

fn bad(reason: impl Into<String>) -> NpyError {
    NpyError::BadHeader(reason.into())
}

/// A reader for the Python literal dict in a `.npy` header.
struct DictParser<'a> {
    s: &'a [u8],
    pos: usize,
}

impl DictParser<'_> {
    fn skip_ws(&mut self) {
        while self.s.get(self.pos).is_some_and(u8::is_ascii_whitespace) {
            self.pos += 1;
        }
    }

    fn eat(&mut self, c: u8) -> bool {
        self.skip_ws();
        let hit = self.s.get(self.pos) == Some(&c);
        self.pos += usize::from(hit);
        hit
    }

    fn expect(&mut self, c: u8) -> Result<(), NpyError> {
        if self.eat(c) {
            return Ok(());
        }
        Err(bad(format!("expected {:?} at byte {}", c as char, self.pos)))
    }

    fn string(&mut self) -> Result<String, NpyError> {
        self.skip_ws();
        let quote = match self.s.get(self.pos) {
            Some(&q @ (b'\'' | b'"')) => q,
            _ => return Err(bad(format!("expected a string at byte {}", self.pos))),
        };
        let start = self.pos + 1;
        let len =
            self.s[start..].iter().position(|&c| c == quote || c == b'\\').ok_or_else(|| bad("unterminated string"))?;
        if self.s[start + len] == b'\\' {
            return Err(bad("escapes in header strings are not supported"));
        }
        self.pos = start + len + 1;
        Ok(String::from_utf8_lossy(&self.s[start..start + len]).into_owned())
    }

    fn descr(&mut self) -> Result<String, NpyError> {
        self.skip_ws();
        if self.s.get(self.pos) == Some(&b'[') {
            return Err(NpyError::UnsupportedDtype("structured dtype".into()));
        }
        self.string()
    }

    fn boolean(&mut self) -> Result<bool, NpyError> {
        self.skip_ws();
        for (word, value) in [(&b"True"[..], true), (&b"False"[..], false)] {
            if self.s[self.pos..].starts_with(word) {
                self.pos += word.len();
                return Ok(value);
            }
        }
        Err(bad("fortran_order is not True or False"))
    }

    fn tuple(&mut self) -> Result<Vec<usize>, NpyError> {
        self.expect(b'(')?;
        let mut dims = Vec::new();
        while !self.eat(b')') {
            dims.push(self.integer()?);
            if !self.eat(b',') {
                self.expect(b')')?;
                break;
            }
        }
        Ok(dims)
    }

    fn integer(&mut self) -> Result<usize, NpyError> {
        self.skip_ws();
        let start = self.pos;
        while self.s.get(self.pos).is_some_and(u8::is_ascii_digit) {
            self.pos += 1;
        }
        let digits = std::str::from_utf8(&self.s[start..self.pos]).unwrap_or("");
        let value = digits.parse().map_err(|_| bad(format!("bad shape dimension at byte {start}")))?;
        self.eat(b'L'); // Python 2 long suffix
        Ok(value)
    }
}

#[cfg(test)]
mod tests;

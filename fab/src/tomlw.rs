//! A TOML writer that formats like Python's `tomli-w` 1.x (what `flwr build` uses).
//!
//! Matching its layout lets `sepal build` produce the same `pyproject.toml` bytes, and so
//! the same FAB hash, as `flwr build` for the same app. Layout rules (from tomli-w):
//! scalars of a table first, then its sub-tables; non-empty arrays one item per line,
//! indented by four spaces, with a trailing comma; arrays of tables as `[[name]]` unless
//! every table fits inline in 100 columns; floats as Python's `repr`; basic strings only.

use std::fmt::Write as _;

use toml::value::{Datetime, Offset};
use toml::{Table, Value};

const INDENT: &str = "    ";
const MAX_LINE_LENGTH: usize = 100;

/// Serializes a document like `tomli_w.dumps(doc)`.
pub(crate) fn dumps(doc: &Table) -> String {
    let mut out = String::new();
    write_table(doc, "", false, &mut out);
    out
}

fn write_table(table: &Table, name: &str, inside_aot: bool, out: &mut String) {
    let mut literals = Vec::new();
    let mut tables = Vec::new();
    for (key, value) in table {
        match value {
            Value::Table(t) => tables.push((key, t, false)),
            Value::Array(items) if is_aot(items) && !all_inline(items) => {
                tables.extend(items.iter().filter_map(Value::as_table).map(|t| (key, t, true)));
            }
            _ => literals.push((key, value)),
        }
    }
    let mut wrote = false;
    if inside_aot || (!name.is_empty() && (!literals.is_empty() || tables.is_empty())) {
        wrote = true;
        let _ = writeln!(out, "{}", if inside_aot { format!("[[{name}]]") } else { format!("[{name}]") });
    }
    for (key, value) in &literals {
        wrote = true;
        let _ = writeln!(out, "{} = {}", key_part(key), literal(value, 0));
    }
    for (key, sub, in_aot) in tables {
        if wrote {
            out.push('\n');
        }
        wrote = true;
        let key = key_part(key);
        let full = if name.is_empty() { key } else { format!("{name}.{key}") };
        write_table(sub, &full, in_aot, out);
    }
}

fn is_aot(items: &[Value]) -> bool {
    !items.is_empty() && items.iter().all(Value::is_table)
}

fn all_inline(items: &[Value]) -> bool {
    items.iter().filter_map(Value::as_table).all(|t| {
        let rendered = format!("{INDENT}{},", inline_table(t));
        rendered.chars().count() <= MAX_LINE_LENGTH && !rendered.contains('\n')
    })
}

fn literal(value: &Value, nest: usize) -> String {
    match value {
        Value::Boolean(b) => b.to_string(),
        Value::Integer(i) => i.to_string(),
        Value::Float(x) => python_float_repr(*x),
        Value::String(s) => basic_string(s),
        Value::Datetime(d) => python_datetime(d),
        Value::Array(items) => inline_array(items, nest),
        Value::Table(t) => inline_table(t),
    }
}

fn inline_array(items: &[Value], nest: usize) -> String {
    if items.is_empty() {
        return "[]".into();
    }
    let item_indent = INDENT.repeat(nest + 1);
    let lines: Vec<String> = items.iter().map(|item| format!("{item_indent}{}", literal(item, nest + 1))).collect();
    format!("[\n{},\n{}]", lines.join(",\n"), INDENT.repeat(nest))
}

fn inline_table(table: &Table) -> String {
    if table.is_empty() {
        return "{}".into();
    }
    let pairs: Vec<String> = table.iter().map(|(k, v)| format!("{} = {}", key_part(k), literal(v, 0))).collect();
    format!("{{ {} }}", pairs.join(", "))
}

fn key_part(key: &str) -> String {
    let bare = |c: char| c.is_ascii_alphanumeric() || c == '-' || c == '_';
    if !key.is_empty() && key.chars().all(bare) {
        key.to_string()
    } else {
        basic_string(key)
    }
}

/// A TOML basic string, escaped like tomli-w (compact escapes, else `\uXXXX`).
pub(crate) fn basic_string(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for c in s.chars() {
        match c {
            '\u{8}' => out.push_str("\\b"),
            '\n' => out.push_str("\\n"),
            '\u{c}' => out.push_str("\\f"),
            '\r' => out.push_str("\\r"),
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\t' => out.push('\t'),
            c if (c as u32) < 0x20 || c == '\u{7f}' => {
                let _ = write!(out, "\\u{:04x}", c as u32);
            }
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

/// Formats a float as Python's `repr(float)`: shortest round-trip digits, fixed notation
/// for decimal exponents in [-4, 16), else `d.ddde±XX`; `inf`, `-inf`, `nan`.
pub(crate) fn python_float_repr(x: f64) -> String {
    if x.is_nan() {
        return "nan".into();
    }
    if x.is_infinite() {
        return if x > 0.0 { "inf" } else { "-inf" }.into();
    }
    let sci = format!("{:e}", x.abs()); // e.g. "1.5e-7", shortest round-trip digits
    let (mantissa, exp) = sci.split_once('e').expect("LowerExp always has an exponent");
    let exp: i32 = exp.parse().expect("LowerExp exponent is an integer");
    let digits: String = mantissa.chars().filter(|c| *c != '.').collect();
    let sign = if x.is_sign_negative() { "-" } else { "" };
    if (-4..16).contains(&exp) {
        format!("{sign}{}", fixed_notation(&digits, exp))
    } else {
        let exp_sign = if exp < 0 { '-' } else { '+' };
        format!("{sign}{mantissa}e{exp_sign}{:02}", exp.abs())
    }
}

/// Places the decimal point in `digits` (d.ddd × 10^exp), always with a fractional part.
fn fixed_notation(digits: &str, exp: i32) -> String {
    let point = exp + 1; // digits before the point
    if point <= 0 {
        let zeros = "0".repeat(point.unsigned_abs() as usize);
        return format!("0.{zeros}{digits}");
    }
    let point = point as usize;
    if digits.len() <= point {
        format!("{digits}{}.0", "0".repeat(point - digits.len()))
    } else {
        format!("{}.{}", &digits[..point], &digits[point..])
    }
}

/// Formats a TOML datetime as Python's `str()` of the value tomli returns.
fn python_datetime(d: &Datetime) -> String {
    let mut out = String::new();
    if let Some(date) = d.date {
        let _ = write!(out, "{:04}-{:02}-{:02}", date.year, date.month, date.day);
    }
    if let Some(time) = d.time {
        if d.date.is_some() {
            out.push(' ');
        }
        let _ = write!(out, "{:02}:{:02}:{:02}", time.hour, time.minute, time.second);
        let micros = time.nanosecond / 1000;
        if micros > 0 {
            let _ = write!(out, ".{micros:06}");
        }
    }
    match d.offset {
        Some(Offset::Z) => out.push_str("+00:00"),
        Some(Offset::Custom { minutes }) => {
            let sign = if minutes < 0 { '-' } else { '+' };
            let m = minutes.unsigned_abs();
            let _ = write!(out, "{sign}{:02}:{:02}", m / 60, m % 60);
        }
        None => {}
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn floats_match_python_repr() {
        let cases = [
            (0.1, "0.1"),
            (1.0, "1.0"),
            (-0.0, "-0.0"),
            (100.0, "100.0"),
            (1e15, "1000000000000000.0"),
            (1e16, "1e+16"),
            (1.5e16, "1.5e+16"),
            (0.0001, "0.0001"),
            (0.00001, "1e-05"),
            (1.25e-7, "1.25e-07"),
            (123.456, "123.456"),
            (1e100, "1e+100"),
            (123456789012345678.0, "1.2345678901234568e+17"),
            (5e-324, "5e-324"),
            (f64::MAX, "1.7976931348623157e+308"),
            (f64::INFINITY, "inf"),
            (f64::NEG_INFINITY, "-inf"),
            (f64::NAN, "nan"),
        ];
        for (x, want) in cases {
            assert_eq!(python_float_repr(x), want, "{x}");
        }
    }

    #[test]
    fn layout_matches_tomli_w() {
        let doc: Table = toml::from_str(
            "top = 1\n[a]\nlist = ['x', 2]\nempty = []\n[a.b]\nk = \"v\"\n\
             [[aot]]\nn = 1\n[[aot]]\nn = 2\n[c.d]\ne = 1\n\"odd key\" = true\n",
        )
        .unwrap();
        let want = "top = 1\naot = [\n    { n = 1 },\n    { n = 2 },\n]\n\n[a]\nlist = [\n    \"x\",\n    2,\n]\n\
                    empty = []\n\n[a.b]\nk = \"v\"\n\n[c.d]\ne = 1\n\"odd key\" = true\n";
        assert_eq!(dumps(&doc), want);
    }

    #[test]
    fn datetimes_like_python_str() {
        let doc: Table =
            toml::from_str("a = 2024-01-02T03:04:05.5Z\nb = 1979-05-27\nc = 2024-01-02T03:04:05-01:30\nd=07:32:00\n")
                .unwrap();
        let want = "a = 2024-01-02 03:04:05.500000+00:00\nb = 1979-05-27\n\
                    c = 2024-01-02 03:04:05-01:30\nd = 07:32:00\n";
        assert_eq!(dumps(&doc), want);
    }
}

//! Run and node config: typed scalar values, flattening, Flower's override syntax, fusing.
//!
//! Flower keeps a config as a flat map from dotted keys to `bool | int | float | str`
//! (its `UserConfig`). Nested TOML tables become dotted keys (`[a.b] c = 1` -> `"a.b.c"`).

use std::fmt;
use std::path::Path;

use indexmap::IndexMap;

use crate::error::{Error, Result};
use crate::tomlw;

/// A flat, ordered config map (file order, like Python's dict).
pub type ConfigMap = IndexMap<String, ConfigValue>;

/// One config value: the scalar types Flower allows in a run or node config.
#[derive(Debug, Clone, PartialEq)]
pub enum ConfigValue {
    /// A TOML boolean.
    Bool(bool),
    /// A TOML integer.
    Int(i64),
    /// A TOML float.
    Float(f64),
    /// A TOML string.
    Str(String),
}

impl fmt::Display for ConfigValue {
    /// Formats the value as a TOML literal (so `k={value}` parses back to the same value).
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ConfigValue::Bool(b) => write!(f, "{b}"),
            ConfigValue::Int(i) => write!(f, "{i}"),
            ConfigValue::Float(x) => f.write_str(&tomlw::python_float_repr(*x)),
            ConfigValue::Str(s) => f.write_str(&tomlw::basic_string(s)),
        }
    }
}

impl ConfigValue {
    /// Converts one TOML scalar; `None` for arrays, tables and datetimes.
    fn from_toml(value: &toml::Value) -> Option<Self> {
        Some(match value {
            toml::Value::Boolean(b) => ConfigValue::Bool(*b),
            toml::Value::Integer(i) => ConfigValue::Int(*i),
            toml::Value::Float(x) => ConfigValue::Float(*x),
            toml::Value::String(s) => ConfigValue::Str(s.clone()),
            _ => return None,
        })
    }
}

/// Flattens a TOML table into dotted keys, refusing anything but scalars and tables.
///
/// Mirrors Flower's `flatten_dict`: `{a = {b = 1}}` becomes `"a.b" = 1`; a later key that
/// flattens to the same name replaces the earlier one.
pub fn flatten_table(table: &toml::Table) -> Result<ConfigMap> {
    let mut out = ConfigMap::new();
    flatten_into(table, "", &mut out)?;
    Ok(out)
}

fn flatten_into(table: &toml::Table, prefix: &str, out: &mut ConfigMap) -> Result<()> {
    for (key, value) in table {
        let full = if prefix.is_empty() { key.clone() } else { format!("{prefix}.{key}") };
        if let toml::Value::Table(inner) = value {
            flatten_into(inner, &full, out)?;
        } else if let Some(scalar) = ConfigValue::from_toml(value) {
            out.insert(full, scalar);
        } else {
            let problem = format!("found {} {value}", value.type_str());
            return Err(Error::ConfigValue { key: full, problem });
        }
    }
    Ok(())
}

/// Parses Flower's `--run-config` / `--node-config` arguments into a flat map.
///
/// Each argument holds space-separated `key=value` pairs; every value is a TOML value
/// (`lr=0.5`, `name="x y"`, `name='x'`, `flag=true`, `n=3`, `t={a=1}`), so an unquoted
/// string such as `name=abc` is an error, as in Flower. Text that is not a `key=value`
/// pair is ignored, as Flower's regular expression does. A single argument ending in
/// `.toml` is read as a TOML file; such a file next to other arguments is an error.
/// Later arguments override earlier ones key by key.
pub fn parse_config_args<S: AsRef<str>>(args: &[S]) -> Result<ConfigMap> {
    if let [only] = args {
        let only = only.as_ref();
        if only.ends_with(".toml") {
            return read_config_file(Path::new(only));
        }
    }
    let mut out = ConfigMap::new();
    for arg in args.iter().map(AsRef::as_ref).filter(|a| !a.is_empty()) {
        if arg.ends_with(".toml") {
            return Err(Error::ConfigFileMixed { arg: arg.into() });
        }
        out.extend(parse_config_overrides(arg)?);
    }
    Ok(out)
}

/// Parses one `"k=v k2=v2"` override string (see [`parse_config_args`]).
pub fn parse_config_overrides(input: &str) -> Result<ConfigMap> {
    let document: String = find_pairs(input).into_iter().map(|(key, value)| format!("{key} = {value}\n")).collect();
    let table: toml::Table = toml::from_str(&document).map_err(|cause| Error::Toml {
        what: format!("config override {input:?} (expected e.g. 'key1=123 key2=false key3=\"string\"')"),
        cause,
    })?;
    flatten_table(&table)
}

fn read_config_file(path: &Path) -> Result<ConfigMap> {
    let text = std::fs::read_to_string(path).map_err(|e| Error::io("reading", path, e))?;
    let table: toml::Table =
        toml::from_str(&text).map_err(|cause| Error::Toml { what: path.display().to_string(), cause })?;
    flatten_table(&table)
}

/// Python's `str.isspace` (what `\s` matches in Flower's regex), slightly wider than Rust's.
fn is_py_space(c: char) -> bool {
    c.is_whitespace() || ('\u{1c}'..='\u{1f}').contains(&c)
}

/// Finds `key=value` pairs exactly as Flower's `(\S+?)=('[^']*'|"[^"]*"|\S+)` with `findall`.
fn find_pairs(input: &str) -> Vec<(&str, &str)> {
    let mut pairs = Vec::new();
    let mut pos = 0;
    while pos < input.len() {
        match pair_at(input, pos) {
            Some((key_end, value_end)) => {
                pairs.push((&input[pos..key_end], &input[key_end + 1..value_end]));
                pos = value_end;
            }
            None => pos += input[pos..].chars().next().map_or(1, char::len_utf8),
        }
    }
    pairs
}

/// Tries to match one pair starting at `start`: returns (index of '=', end of value).
fn pair_at(input: &str, start: usize) -> Option<(usize, usize)> {
    // The key is lazy: try each '=' after at least one non-space character, in order.
    for (offset, c) in input[start..].char_indices() {
        if is_py_space(c) {
            return None;
        }
        if c == '=' && offset > 0 {
            let eq = start + offset;
            if let Some(end) = value_end(input, eq + 1) {
                return Some((eq, end));
            }
        }
    }
    None
}

/// End of a value at `start`: a '…' or "…" quoted run, else a run of non-space chars.
fn value_end(input: &str, start: usize) -> Option<usize> {
    let rest = &input[start..];
    for quote in ['\'', '"'] {
        if let Some(inner) = rest.strip_prefix(quote) {
            if let Some(close) = inner.find(quote) {
                return Some(start + 1 + close + 1);
            }
        }
    }
    let len = rest.find(is_py_space).unwrap_or(rest.len());
    (len > 0).then_some(start + len)
}

/// Overrides `defaults` with `overrides`, refusing keys the defaults do not have.
///
/// Mirrors Flower's `fuse_dicts(main, override)` on flat configs: keys keep the defaults'
/// order, values (of any type) are replaced, and an unknown key fails with
/// `Key '<key>' is not present in the main dictionary`.
pub fn fuse_run_config(defaults: &ConfigMap, overrides: &ConfigMap) -> Result<ConfigMap> {
    let mut fused = defaults.clone();
    for (key, value) in overrides {
        match fused.get_mut(key) {
            Some(slot) => *slot = value.clone(),
            None => return Err(Error::UnknownConfigKey { key: key.clone() }),
        }
    }
    Ok(fused)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(s: &str) -> ConfigMap {
        parse_config_overrides(s).unwrap()
    }

    #[test]
    fn parses_typed_values() {
        let m = parse(r#"lr=0.5 name="x y" flag=true n=3 lit='a b'"#);
        assert_eq!(m["lr"], ConfigValue::Float(0.5));
        assert_eq!(m["name"], ConfigValue::Str("x y".into()));
        assert_eq!(m["flag"], ConfigValue::Bool(true));
        assert_eq!(m["n"], ConfigValue::Int(3));
        assert_eq!(m["lit"], ConfigValue::Str("a b".into()));
        assert_eq!(m.keys().collect::<Vec<_>>(), ["lr", "name", "flag", "n", "lit"]);
    }

    #[test]
    fn dotted_keys_and_inline_tables_flatten() {
        let m = parse("a.b=1 t={x=2,y=\"z\"}");
        assert_eq!(m["a.b"], ConfigValue::Int(1));
        assert_eq!(m["t.x"], ConfigValue::Int(2));
        assert_eq!(m["t.y"], ConfigValue::Str("z".into()));
    }

    #[test]
    fn unquoted_string_is_an_error_like_flower() {
        let err = parse_config_overrides("name=abc").unwrap_err();
        assert!(matches!(err, Error::Toml { .. }), "{err}");
    }

    #[test]
    fn arrays_and_dates_are_refused() {
        let err = parse_config_overrides("x=[1,2]").unwrap_err();
        assert!(err.to_string().contains("\"x\""), "{err}");
        assert!(parse_config_overrides("d=2024-01-01").is_err());
    }

    #[test]
    fn non_pairs_are_ignored_like_flowers_findall() {
        let m = parse("junk lr=0.1 a= =b");
        assert_eq!(m.len(), 1);
        assert_eq!(m["lr"], ConfigValue::Float(0.1));
        assert!(parse("").is_empty());
    }

    #[test]
    fn duplicate_key_in_one_string_is_an_error() {
        assert!(parse_config_overrides("n=1 n=2").is_err());
    }

    #[test]
    fn later_args_override_earlier() {
        let m = parse_config_args(&["n=1 a.b=1", "", "n=2 a.c=3"]).unwrap();
        assert_eq!(m["n"], ConfigValue::Int(2));
        assert_eq!(m["a.b"], ConfigValue::Int(1));
        assert_eq!(m["a.c"], ConfigValue::Int(3));
    }

    #[test]
    fn toml_file_args() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("c.toml");
        std::fs::write(&path, "lr = 0.2\n[sub]\nk = 'v'\n").unwrap();
        let path = path.to_str().unwrap();
        let m = parse_config_args(&[path]).unwrap();
        assert_eq!(m["sub.k"], ConfigValue::Str("v".into()));
        let err = parse_config_args(&["n=1", path]).unwrap_err();
        assert!(matches!(err, Error::ConfigFileMixed { .. }));
    }

    #[test]
    fn fuse_replaces_and_refuses_unknown_keys() {
        let defaults = parse("a=1 b=\"x\"");
        let fused = fuse_run_config(&defaults, &parse("b=2")).unwrap();
        assert_eq!(fused["a"], ConfigValue::Int(1));
        assert_eq!(fused["b"], ConfigValue::Int(2));
        let err = fuse_run_config(&defaults, &parse("c=1")).unwrap_err();
        assert_eq!(err.to_string(), "Key 'c' is not present in the main dictionary");
    }

    #[test]
    fn display_round_trips() {
        let m = parse(r#"a=1 b=-0.5 c=1e20 d="s p" e=false"#);
        let text: Vec<String> = m.iter().map(|(k, v)| format!("{k}={v}")).collect();
        assert_eq!(parse(&text.join(" ")), m);
        assert_eq!(m["c"].to_string(), "1e+20");
        assert_eq!(ConfigValue::Str("q\"\n".into()).to_string(), r#""q\"\n""#);
    }
}

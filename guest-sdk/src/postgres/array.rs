//! PostgreSQL's text form of one-dimensional numeric arrays (`{1.5,2,-0.25}`), as a
//! simple query returns a `real[]` or `double precision[]` column.

use super::PgError;

/// Parses a one-dimensional array of numbers in PostgreSQL's text form into `f32`s:
/// `{1.5,2,-0.25}`, `{}` (empty), elements optionally quoted, `NaN`, `Infinity` and
/// `-Infinity` as PostgreSQL writes them. A `NULL` element, a nested (multi-dimensional)
/// array or anything that is not a number is an error naming it.
///
/// ```
/// # #[cfg(feature = "postgres")] {
/// use sepal_sdk::postgres::parse_f32_array;
/// assert_eq!(parse_f32_array("{1.5,2,-0.25}").unwrap(), vec![1.5, 2.0, -0.25]);
/// # }
/// ```
pub fn parse_f32_array(text: &str) -> Result<Vec<f32>, PgError> {
    let bad = |reason: String| PgError::Array { text: shorten(text), reason };
    let inner = text
        .trim()
        .strip_prefix('{')
        .and_then(|t| t.strip_suffix('}'))
        .ok_or_else(|| bad("an array is written {a,b,...}".into()))?;
    if inner.trim().is_empty() {
        return Ok(Vec::new());
    }
    if inner.contains('{') {
        return Err(bad("a multi-dimensional array; expected one dimension".into()));
    }
    inner
        .split(',')
        .enumerate()
        .map(|(i, element)| {
            let element = element.trim();
            let unquoted = element.strip_prefix('"').and_then(|e| e.strip_suffix('"')).unwrap_or(element);
            if element.eq_ignore_ascii_case("NULL") {
                return Err(bad(format!("element {} is NULL", i + 1)));
            }
            unquoted.parse::<f32>().map_err(|_| bad(format!("element {} ({unquoted:?}) is not a number", i + 1)))
        })
        .collect()
}

/// At most 80 characters of `text`, for error messages about long arrays.
fn shorten(text: &str) -> String {
    match text.char_indices().nth(80) {
        Some((cut, _)) => format!("{}...", &text[..cut]),
        None => text.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers_as_postgres_writes_them() {
        assert_eq!(parse_f32_array("{1.5,2,-0.25,1e-3}").unwrap(), vec![1.5, 2.0, -0.25, 0.001]);
        assert_eq!(parse_f32_array(" { 1 , \"2.5\" } ").unwrap(), vec![1.0, 2.5]);
        assert_eq!(parse_f32_array("{}").unwrap(), Vec::<f32>::new());
        let special = parse_f32_array("{NaN,Infinity,-Infinity}").unwrap();
        assert!(special[0].is_nan());
        assert_eq!(&special[1..], &[f32::INFINITY, f32::NEG_INFINITY]);
    }

    #[test]
    fn what_is_not_a_flat_numeric_array_is_named() {
        let reason = |text: &str| match parse_f32_array(text) {
            Err(PgError::Array { reason, .. }) => reason,
            other => panic!("{text}: {other:?}"),
        };
        assert!(reason("1,2").contains("{a,b,...}"));
        assert!(reason("{1,NULL,3}").contains("element 2 is NULL"));
        assert!(reason("{{1,2},{3,4}}").contains("multi-dimensional"));
        assert!(reason("{1,abc}").contains("element 2 (\"abc\")"));
        assert!(reason("{1,,2}").contains("element 2"));
    }

    #[test]
    fn long_arrays_are_shortened_in_errors() {
        let long = format!("{{{}x}}", "1,".repeat(100));
        let err = parse_f32_array(&long).unwrap_err().to_string();
        assert!(err.len() < 200 && err.contains("..."), "{err}");
    }
}

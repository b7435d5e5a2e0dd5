//! `.info/CONTENT`: one line `<path>,<sha256 hex>,<size in bits>\n` per bundled file.

use indexmap::IndexMap;

use crate::error::{Error, Result};

/// One listed file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Listing {
    /// Lowercase hex SHA-256 of the file.
    pub sha256: String,
    /// Size in bits (Flower's unit).
    pub bits: u64,
}

/// Lowercase hex SHA-256 of `bytes`.
pub(crate) fn sha256_hex(bytes: &[u8]) -> String {
    use sha2::Digest;
    hex::encode(sha2::Sha256::digest(bytes))
}

/// The CONTENT line for one file.
pub(crate) fn line(path: &str, bytes: &[u8]) -> String {
    format!("{path},{},{}\n", sha256_hex(bytes), bytes.len() as u64 * 8)
}

/// Parses CONTENT into path -> listing. Empty lines are skipped; a path may contain commas.
pub(crate) fn parse(text: &str) -> Result<IndexMap<String, Listing>> {
    let mut listings = IndexMap::new();
    for (index, raw) in text.split('\n').enumerate() {
        if raw.is_empty() {
            continue;
        }
        let bad = |reason| Error::ContentLine { line_no: index + 1, line: raw.into(), reason };
        let mut fields = raw.rsplitn(3, ',');
        let (Some(bits), Some(sha256), Some(path)) = (fields.next(), fields.next(), fields.next()) else {
            return Err(bad("expected <path>,<sha256 hex>,<size in bits>"));
        };
        if sha256.len() != 64 || !sha256.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Err(bad("the hash is not 64 hex digits"));
        }
        let bits: u64 = bits.parse().map_err(|_| bad("the size in bits is not a number"))?;
        let listing = Listing { sha256: sha256.to_ascii_lowercase(), bits };
        if listings.insert(path.to_string(), listing).is_some() {
            return Err(bad("the path is listed twice"));
        }
    }
    Ok(listings)
}

/// Checks one file against its listing.
pub(crate) fn check(path: &str, bytes: &[u8], listing: &Listing) -> Result<()> {
    let mismatch = |reason| Error::ContentMismatch { path: path.into(), reason };
    let bits = bytes.len() as u64 * 8;
    if bits != listing.bits {
        return Err(mismatch(format!("size is {bits} bits, CONTENT says {}", listing.bits)));
    }
    let actual = sha256_hex(bytes);
    if actual != listing.sha256 {
        return Err(mismatch(format!("sha256 is {actual}, CONTENT says {}", listing.sha256)));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn line_then_parse_round_trips() {
        let text = line("a,b.py", b"hi") + &line("c.py", b"");
        let parsed = parse(&text).unwrap();
        assert_eq!(parsed["a,b.py"].bits, 16);
        check("a,b.py", b"hi", &parsed["a,b.py"]).unwrap();
        check("c.py", b"", &parsed["c.py"]).unwrap();
    }

    #[test]
    fn malformed_lines_are_refused() {
        assert!(parse("x.py,abc,8\n").is_err());
        assert!(parse(&format!("x.py,{},eight\n", "0".repeat(64))).is_err());
        assert!(parse(&format!("{},8\n", "0".repeat(64))).is_err());
        let dup = line("x.py", b"1") + &line("x.py", b"1");
        assert!(parse(&dup).is_err());
    }

    #[test]
    fn size_and_hash_mismatches_are_reported() {
        let parsed = parse(&line("x.py", b"abc")).unwrap();
        let err = check("x.py", b"abd", &parsed["x.py"]).unwrap_err();
        assert!(err.to_string().contains("sha256 is"), "{err}");
        let err = check("x.py", b"abcd", &parsed["x.py"]).unwrap_err();
        assert!(err.to_string().contains("size is 32 bits, CONTENT says 24"), "{err}");
    }
}

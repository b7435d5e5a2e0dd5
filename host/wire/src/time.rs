//! Flower's ISO-8601 timestamps: how Python's `datetime.isoformat()` writes UTC times (in
//! run records and the `flwr-timestamp` a SuperNode signs), and how they are read back.

use chrono::{DateTime, Utc};

/// The current time as Python's `datetime.now(timezone.utc).isoformat()` writes it.
pub fn now_iso() -> String {
    iso(Utc::now())
}

/// Formats a UTC time the way Python's `isoformat()` does (microseconds, `+00:00`).
pub fn iso(t: DateTime<Utc>) -> String {
    t.format("%Y-%m-%dT%H:%M:%S%.6f+00:00").to_string()
}

/// Parses an ISO-8601 timestamp with an offset.
pub fn parse_iso(s: &str) -> Option<DateTime<Utc>> {
    DateTime::parse_from_rfc3339(s).ok().map(|t| t.with_timezone(&Utc))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn iso_round_trips_and_matches_python_shape() {
        let s = now_iso();
        assert!(s.ends_with("+00:00"), "{s}");
        assert_eq!(s.len(), "2026-11-27T22:04:27.400684+00:00".len());
        assert!(parse_iso(&s).is_some());
        assert!(parse_iso("2026-11-27T22:04:27.400684+00:00").is_some());
        assert!(parse_iso("yesterday").is_none());
    }
}

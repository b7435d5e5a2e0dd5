//! The crate's error type.

use std::path::PathBuf;

/// Everything that can go wrong while reading, checking, building or unpacking a FAB.
///
/// Every variant carries enough context (entry name, key, sizes) to say what was wrong
/// without a debugger.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The archive (or a built FAB) is bigger than the allowed size.
    #[error("FAB is {size} bytes, over the limit of {limit} bytes")]
    TooLarge {
        /// Size of the archive in bytes.
        size: u64,
        /// The limit in bytes.
        limit: u64,
    },

    /// The bytes are not a ZIP archive the reader understands.
    #[error("FAB is not a valid ZIP archive: {reason}")]
    Malformed {
        /// What is wrong with the container.
        reason: String,
    },

    /// One entry of the archive could not be read (corrupt data, bad CRC, unsupported method).
    #[error("FAB entry {} could not be read: {cause}", excerpt(.name))]
    Entry {
        /// Entry name as stored in the archive.
        name: String,
        /// The underlying ZIP error (shown in the message, so not also a `source`).
        cause: zip::result::ZipError,
    },

    /// An entry name is not a safe relative path.
    #[error("FAB entry {} has an unsafe path: {reason}", excerpt(.name))]
    UnsafePath {
        /// Entry name as stored in the archive.
        name: String,
        /// Why the path is refused.
        reason: &'static str,
    },

    /// An entry is a symbolic link.
    #[error("FAB entry {} is a symbolic link, which FABs may not contain", excerpt(.name))]
    Symlink {
        /// Entry name as stored in the archive.
        name: String,
    },

    /// An entry is encrypted.
    #[error("FAB entry {} is encrypted, which FABs may not be", excerpt(.name))]
    Encrypted {
        /// Entry name as stored in the archive.
        name: String,
    },

    /// The archive has more entries than allowed.
    #[error("FAB has more than {limit} entries")]
    TooManyEntries {
        /// The limit.
        limit: usize,
    },

    /// Decompressing an entry went over the unpacked-size budget (zip bomb guard).
    #[error("FAB entry {} expands past the unpacked size limit of {limit} bytes", excerpt(.name))]
    EntryTooLarge {
        /// Entry name as stored in the archive.
        name: String,
        /// The unpacked-size limit in bytes.
        limit: u64,
    },

    /// Two entries have the same name.
    #[error("FAB has two entries named {}", excerpt(.name))]
    DuplicateEntry {
        /// The repeated name.
        name: String,
    },

    /// A required file is not in the archive.
    #[error("FAB has no {}", excerpt(.name))]
    MissingFile {
        /// The missing file, e.g. `pyproject.toml` or `.info/CONTENT`.
        name: &'static str,
    },

    /// A line of `.info/CONTENT` is not `<path>,<sha256 hex>,<size in bits>`.
    #[error(".info/CONTENT line {line_no} ({line:?}) is malformed: {reason}")]
    ContentLine {
        /// 1-based line number.
        line_no: usize,
        /// The offending line.
        line: String,
        /// What is wrong with it.
        reason: &'static str,
    },

    /// A file listed in `.info/CONTENT` is missing or differs from its listing.
    #[error(".info/CONTENT does not match {}: {reason}", excerpt(.path))]
    ContentMismatch {
        /// The listed path.
        path: String,
        /// What differs.
        reason: String,
    },

    /// A file in the archive is not listed in `.info/CONTENT`.
    #[error("FAB file {} is not listed in .info/CONTENT", excerpt(.path))]
    NotListed {
        /// The unlisted file.
        path: String,
    },

    /// The FAB's SHA-256 is not the expected one.
    #[error("FAB hash mismatch: expected {expected}, got {actual}")]
    HashMismatch {
        /// The hash the caller expected.
        expected: String,
        /// The hash of the bytes.
        actual: String,
    },

    /// A TOML document (pyproject.toml, a config file, an override string) did not parse.
    #[error("{what} is not valid TOML: {}", toml_reason(.cause))]
    Toml {
        /// What was being parsed.
        what: String,
        /// The parser's error (shown in the message, so not also a `source`).
        cause: toml::de::Error,
    },

    /// A file that must be UTF-8 text is not.
    #[error("{what} is not valid UTF-8")]
    NotUtf8 {
        /// What was being decoded.
        what: String,
    },

    /// A required `pyproject.toml` field is missing or has the wrong type.
    #[error("pyproject.toml: {field} {problem}")]
    Manifest {
        /// The field, e.g. `[tool.flwr.app] publisher`.
        field: &'static str,
        /// What is wrong, e.g. `is missing` or `must be a string`.
        problem: String,
    },

    /// A component reference is neither a `.wasm` path nor a Python `module:attr`.
    #[error("pyproject.toml: [tool.flwr.app.components] {component} = {} is invalid: {reason}", excerpt(.value))]
    Component {
        /// `serverapp` or `clientapp`.
        component: &'static str,
        /// The configured value.
        value: String,
        /// Why it is refused.
        reason: &'static str,
    },

    /// A Wasm component named in `pyproject.toml` is not in the FAB.
    #[error("pyproject.toml names {component} = {}, but the FAB has no such file", excerpt(.path))]
    MissingComponent {
        /// `serverapp` or `clientapp`.
        component: &'static str,
        /// The path named in `pyproject.toml`.
        path: String,
    },

    /// A config value is not a scalar (bool, integer, float, string) or table of those.
    #[error("config key {}: {problem}; values must be bool, int, float or string (or tables of those)", excerpt(.key))]
    ConfigValue {
        /// The flattened key.
        key: String,
        /// What was found instead.
        problem: String,
    },

    /// An override key is not in the app's default run config (Flower's wording).
    #[error("Key '{key}' is not present in the main dictionary")]
    UnknownConfigKey {
        /// The unknown key.
        key: String,
    },

    /// A `.toml` config file was passed together with `key=value` pairs.
    #[error("TOML files cannot be passed alongside key-value pairs (got {arg:?})")]
    ConfigFileMixed {
        /// The offending argument.
        arg: String,
    },

    /// An I/O operation on the file system failed.
    #[error("{action} {path}: {cause}", path = path.display())]
    Io {
        /// What was being done, e.g. `reading`.
        action: &'static str,
        /// The path involved.
        path: PathBuf,
        /// The OS error (shown in the message, so not also a `source`).
        cause: std::io::Error,
    },

    /// A path on disk cannot be used (symlink in the way, not UTF-8, not a directory...).
    #[error("refusing {path}: {reason}", path = path.display())]
    UnsafeTarget {
        /// The path involved.
        path: PathBuf,
        /// Why it is refused.
        reason: &'static str,
    },

    /// A FAB cannot be written as a classic (non-ZIP64) archive.
    #[error("cannot build FAB: {reason}")]
    Build {
        /// What went wrong.
        reason: String,
    },
}

/// Shorthand for `Result<T, sepal_fab::Error>`.
pub type Result<T, E = Error> = std::result::Result<T, E>;

impl Error {
    /// An [`Error::Io`] with context.
    pub(crate) fn io(action: &'static str, path: impl Into<PathBuf>, cause: std::io::Error) -> Self {
        Error::Io { action, path: path.into(), cause }
    }
}

/// At most this many characters of something a user (or an attacker) wrote are repeated in
/// an error message; error messages travel in gRPC statuses and logs.
const EXCERPT_CHARS: usize = 80;

/// `text` quoted, cut to a short excerpt that says it was cut: how errors repeat what a
/// user (or an attacker) wrote.
pub fn excerpt(text: &str) -> String {
    match text.char_indices().nth(EXCERPT_CHARS) {
        None => format!("{text:?}"),
        Some((cut, _)) => format!("{:?}… ({} bytes in all)", &text[..cut], text.len()),
    }
}

/// A TOML error without the offending line (which can be arbitrarily long): its message
/// and where it is.
fn toml_reason(cause: &toml::de::Error) -> String {
    let message = cause.message().trim_end();
    let message = match message.char_indices().nth(EXCERPT_CHARS * 2) {
        None => message.to_string(),
        Some((cut, _)) => format!("{}…", &message[..cut]),
    };
    match cause.span() {
        Some(span) => format!("{message} (at byte {})", span.start),
        None => message,
    }
}

#[cfg(test)]
mod tests {
    use crate::Manifest;

    #[test]
    fn echoed_input_is_cut_to_a_marked_excerpt() {
        let huge = "x".repeat(1 << 20);
        let err = Manifest::parse(&format!("[project]\nname = {huge}\n")).unwrap_err().to_string();
        assert!(err.len() < 400, "{} bytes: {}", err.len(), &err[..400.min(err.len())]);
        assert!(err.starts_with("pyproject.toml is not valid TOML: "), "{err}");

        let toml = format!(
            "[project]\nname = \"a\"\nversion = \"1.0.0\"\n[tool.flwr.app]\npublisher = \"p\"\n\
             [tool.flwr.app.components]\nserverapp = \"{huge}\"\nclientapp = \"a:b\"\n"
        );
        let err = Manifest::parse(&toml).unwrap_err().to_string();
        assert!(err.len() < 400, "{} bytes", err.len());
        assert!(err.contains(&format!("({} bytes in all)", huge.len())), "the cut is marked: {err}");
    }
}

//! App text made safe for a run's log: split into lines, control characters and escape
//! sequences neutralised, and lines dressed as the host's disarmed.
//!
//! A run's log is shown on users' terminals (`flwr log`, `sepal log`) and read as the
//! account of what happened. Whatever an app writes must therefore neither drive the
//! terminal (clear the screen, move the cursor, retitle the window, overwrite a line with
//! a carriage return) nor pass for a line of the host's: only Sepal writes lines that
//! start with [`HOST_TAG`] or [`SANDBOX_TAG`].

use std::fmt::Write as _;

/// How every line the host itself writes into a run's log starts.
pub const HOST_TAG: &str = "SEPAL   : ";
/// How the sandbox's notices (an output cap reached, a limit hit) start.
pub const SANDBOX_TAG: &str = "SANDBOX : ";
/// What an app line that would start like a host line is prefixed with.
pub const APP_TAG: &str = "APP     : ";

/// App text of any kind (stdout, a Python process's log upload, the last words of a
/// process) as it goes into a run's log: one line per line of `text`, each neutralised
/// ([`neutralise`]) and ending with a newline, also the last one (so that what follows
/// starts a line of its own); a line that would start like the host's gets [`APP_TAG`]
/// in front. Empty text gives nothing.
///
/// ```
/// use sepal_executor::log::app_text;
/// assert_eq!(app_text("INFO :      round 1\n"), "INFO :      round 1\n");
/// assert_eq!(app_text("a\u{1b}[2Jb\rc"), "a\\u{1b}[2Jb\\rc\n");
/// assert_eq!(app_text("ok\nSEPAL   : ServerApp failed: no"), "ok\nAPP     : SEPAL   : ServerApp failed: no\n");
/// ```
pub fn app_text(text: &str) -> String {
    let mut out = String::with_capacity(text.len() + 1);
    for line in lines(text) {
        let start = out.len();
        neutralise(line, &mut out);
        if looks_like_host(&out[start..]) {
            out.insert_str(start, APP_TAG);
        }
        out.push('\n');
    }
    out
}

/// A line the host writes into a run's log: [`HOST_TAG`], then `text` on one line
/// (newlines and other control characters in it, which may come from the app, are made
/// visible).
///
/// ```
/// use sepal_executor::log::host_line;
/// assert_eq!(host_line("ServerApp failed: boom\nat x"), "SEPAL   : ServerApp failed: boom\\nat x\n");
/// ```
pub fn host_line(text: &str) -> String {
    let mut out = String::with_capacity(HOST_TAG.len() + text.len() + 1);
    out.push_str(HOST_TAG);
    neutralise(text, &mut out);
    out.push('\n');
    out
}

/// The lines of `text`: split at `\n` (a `\r` before it belongs to the newline), without
/// the empty piece after a final newline.
pub(crate) fn lines(text: &str) -> impl Iterator<Item = &str> {
    let none = text.is_empty();
    let body = text.strip_suffix('\n').unwrap_or(text);
    body.split('\n').filter(move |_| !none).map(|line| line.strip_suffix('\r').unwrap_or(line))
}

/// Appends `line` to `out` with nothing left that a terminal acts on or that hides text:
///
/// - colour and style sequences (`ESC [ ... m`, as Flower's own log lines carry) are
///   dropped, so Python apps' lines keep Flower's look without its colours;
/// - every other control character (C0, DEL, C1; so every other escape sequence, and
///   carriage returns) is written visibly, Rust-style: `\u{1b}`, `\r`, `\n`, `\0`; a tab
///   stays a tab;
/// - invisible formatting characters (zero-width spaces and joiners, bidirectional
///   overrides, line and paragraph separators, the byte-order mark, soft hyphens) are
///   written visibly the same way.
pub fn neutralise(line: &str, out: &mut String) {
    let mut chars = line.char_indices().peekable();
    while let Some((at, c)) = chars.next() {
        if c == '\u{1b}' {
            if let Some(len) = sgr_len(&line[at..]) {
                // Skip the rest of the sequence.
                while chars.peek().is_some_and(|&(i, _)| i < at + len) {
                    chars.next();
                }
                continue;
            }
        }
        match c {
            '\t' => out.push('\t'),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\0' => out.push_str("\\0"),
            c if c.is_control() || invisible(c) => {
                let _ = write!(out, "\\u{{{:x}}}", c as u32);
            }
            c => out.push(c),
        }
    }
}

/// The length of the colour/style sequence (`ESC [` digits and separators `m`) that
/// `text` starts with, if it starts with one.
fn sgr_len(text: &str) -> Option<usize> {
    let rest = text.strip_prefix("\u{1b}[")?;
    let params = rest.bytes().take_while(|b| b.is_ascii_digit() || *b == b';' || *b == b':').count();
    (rest.as_bytes().get(params) == Some(&b'm')).then_some(2 + params + 1)
}

/// Characters that take no room on a terminal, or reorder or break what is around them.
fn invisible(c: char) -> bool {
    matches!(
        c,
        '\u{ad}'
            | '\u{200b}'..='\u{200f}'
            | '\u{2028}'..='\u{202e}'
            | '\u{2060}'..='\u{2064}'
            | '\u{2066}'..='\u{206f}'
            | '\u{feff}'
    )
}

/// Whether a (neutralised) line would read as one of the host's: its first word, after
/// any leading whitespace, is a host tag's (`SEPAL`, `SANDBOX`) in any case.
fn looks_like_host(line: &str) -> bool {
    let line = line.trim_start();
    let word_len = line.bytes().take_while(u8::is_ascii_alphabetic).count();
    let word = &line[..word_len];
    word.eq_ignore_ascii_case("SEPAL") || word.eq_ignore_ascii_case("SANDBOX")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn neutralised(line: &str) -> String {
        let mut out = String::new();
        neutralise(line, &mut out);
        out
    }

    #[test]
    fn escape_sequences_and_control_characters_are_made_visible() {
        assert_eq!(neutralised("\u{1b}[2J\u{1b}[Hclear"), "\\u{1b}[2J\\u{1b}[Hclear");
        assert_eq!(neutralised("\u{1b}]0;title\u{7}x"), "\\u{1b}]0;title\\u{7}x");
        assert_eq!(neutralised("10%\rdone"), "10%\\rdone");
        assert_eq!(neutralised("nul\0 del\u{7f} c1\u{9b}31m"), "nul\\0 del\\u{7f} c1\\u{9b}31m");
        assert_eq!(neutralised("a\tb"), "a\tb");
        assert_eq!(
            neutralised("zero\u{200b}width \u{202e}rtl \u{2028}sep \u{feff}bom"),
            "zero\\u{200b}width \\u{202e}rtl \\u{2028}sep \\u{feff}bom"
        );
        assert_eq!(neutralised("naïve café ✓"), "naïve café ✓");
    }

    #[test]
    fn colours_are_dropped_so_flower_lines_keep_their_look() {
        // What Flower's console handler writes for an INFO record.
        assert_eq!(neutralised("\u{1b}[92mINFO \u{1b}[0m:      Starting round 1"), "INFO :      Starting round 1");
        assert_eq!(neutralised("\u{1b}[1;31;48:5:1mbold\u{1b}[m"), "bold");
        // Not a colour sequence: shown, not dropped.
        assert_eq!(neutralised("\u{1b}[31"), "\\u{1b}[31");
        assert_eq!(neutralised("\u{1b}[31x"), "\\u{1b}[31x");
    }

    #[test]
    fn lines_dressed_as_the_hosts_are_disarmed() {
        for fake in [
            "SEPAL   : ServerApp failed: boom",
            "SANDBOX : stdout truncated",
            "   SEPAL   : indented",
            "sepal   : lower case",
            "Sandbox: close enough",
            "SEPAL",
            "\u{1b}[31mSEPAL   : coloured",
        ] {
            let out = app_text(fake);
            assert!(out.starts_with(APP_TAG), "{fake:?} -> {out:?}");
            assert!(!out.starts_with(HOST_TAG) && !out.starts_with(SANDBOX_TAG));
        }
        for plain in ["INFO :      SEPAL", "Sandboxed training", "sepals", "\u{200b}SEPAL   : hidden", ""] {
            assert!(!app_text(plain).starts_with(APP_TAG), "{plain:?}");
        }
        // Visible: a zero-width space does not hide what follows.
        assert_eq!(app_text("\u{200b}SEPAL   : x"), "\\u{200b}SEPAL   : x\n");
    }

    #[test]
    fn text_is_split_into_terminated_lines() {
        assert_eq!(app_text(""), "");
        assert_eq!(app_text("\n"), "\n");
        assert_eq!(app_text("one"), "one\n");
        assert_eq!(app_text("one\r\ntwo\n\nfour\n"), "one\ntwo\n\nfour\n");
        assert_eq!(lines("a\n\nb").collect::<Vec<_>>(), ["a", "", "b"]);
        assert_eq!(lines("").count(), 0);
        assert_eq!(lines("\n").collect::<Vec<_>>(), [""]);
    }

    #[test]
    fn host_lines_are_one_line_whatever_they_quote() {
        assert_eq!(host_line("ServerApp failed: x"), "SEPAL   : ServerApp failed: x\n");
        let quoted = host_line("ServerApp failed: panic\nSEPAL   : run completed\u{1b}[2J");
        assert_eq!(quoted.matches('\n').count(), 1, "{quoted}");
        assert!(quoted.ends_with("panic\\nSEPAL   : run completed\\u{1b}[2J\n"), "{quoted}");
    }
}

//! A subset of `.gitignore` matching, following the `gitwildmatch` rules of Python's
//! `pathspec` (what `flwr build` uses).
//!
//! Supported: comments (`#`), blank lines, negation (`!`), anchoring (a leading `/` or a
//! `/` inside the pattern), directory patterns (trailing `/`), `*`, `?`, `[...]` classes
//! (`!`/`^` negation, ranges), `\` escapes and `**` (leading, inner, trailing). A pattern
//! that matches a directory also matches everything below it. The last matching pattern
//! wins (like `pathspec`, a negation can re-include a file below an excluded directory).
//!
//! Difference from Flower: Flower matches patterns against the *absolute* path of each
//! file (with the leading `/` removed), so its anchored patterns never match and its
//! unanchored ones can match directories above the app. Here paths are relative to the
//! app directory, which is what `.gitignore` means.

/// One parsed pattern.
#[derive(Debug, Clone)]
struct Pattern {
    /// Path segments; `**` is a segment of its own.
    segments: Vec<String>,
    /// `true` for a normal pattern, `false` for a `!` negation.
    include: bool,
}

/// A list of patterns, applied in order (last match wins).
#[derive(Debug, Clone, Default)]
pub(crate) struct GitIgnore {
    patterns: Vec<Pattern>,
}

impl GitIgnore {
    /// Builds a matcher from `.gitignore` lines.
    pub(crate) fn new<'a>(lines: impl IntoIterator<Item = &'a str>) -> Self {
        let patterns = lines.into_iter().filter_map(parse_line).collect();
        GitIgnore { patterns }
    }

    /// Whether the file at `components` (relative to the app directory) is ignored.
    pub(crate) fn is_ignored(&self, components: &[String]) -> bool {
        let mut ignored = false;
        for pattern in &self.patterns {
            if match_segments(&pattern.segments, components) {
                ignored = pattern.include;
            }
        }
        ignored
    }
}

fn parse_line(line: &str) -> Option<Pattern> {
    let line = if line.ends_with("\\ ") { line.trim_start() } else { line.trim() };
    if line.is_empty() || line.starts_with('#') || line == "/" {
        return None;
    }
    let (include, body) = match line.strip_prefix('!') {
        Some(rest) => (false, rest),
        None => (true, line),
    };
    let mut segments: Vec<String> = body.split('/').map(str::to_string).collect();
    segments.dedup_by(|a, b| a == "**" && b == "**");
    if segments == ["**", ""] {
        // `**/`: everything inside any directory, i.e. every path with a '/'.
        return Some(Pattern { segments: vec!["*".into(), "**".into()], include });
    }
    let dir_pattern = segments.last().is_some_and(String::is_empty);
    if segments[0].is_empty() {
        segments.remove(0); // leading '/': anchored at the app directory
    } else if (segments.len() == 1 || (segments.len() == 2 && dir_pattern)) && segments[0] != "**" {
        segments.insert(0, "**".into()); // no inner '/': matches at any depth
    }
    if dir_pattern && segments.len() > 1 {
        *segments.last_mut()? = "**".into(); // `dir/` matches what is inside dir
    }
    if segments.is_empty() || segments.iter().all(String::is_empty) {
        return None;
    }
    Some(Pattern { segments, include })
}

/// Matches pattern segments against path components; a match of a leading part of the
/// path (a directory) covers everything below it.
fn match_segments(segments: &[String], path: &[String]) -> bool {
    match segments.split_first() {
        None => true,
        Some((first, rest)) if first == "**" => {
            if rest.is_empty() {
                return !path.is_empty();
            }
            (0..=path.len()).any(|skip| match_segments(rest, &path[skip..]))
        }
        Some((first, rest)) => match path.split_first() {
            Some((component, below)) => glob(first, component) && match_segments(rest, below),
            None => false,
        },
    }
}

/// Matches one path component against one glob segment (`*`, `?`, `[...]`, `\x`).
fn glob(pattern: &str, text: &str) -> bool {
    let pattern: Vec<char> = pattern.chars().collect();
    let text: Vec<char> = text.chars().collect();
    glob_chars(&pattern, &text)
}

fn glob_chars(pattern: &[char], text: &[char]) -> bool {
    let Some((&first, rest)) = pattern.split_first() else {
        return text.is_empty();
    };
    match first {
        '*' => (0..=text.len()).any(|skip| glob_chars(rest, &text[skip..])),
        '?' => !text.is_empty() && glob_chars(rest, &text[1..]),
        '[' => match char_class(rest) {
            Some((class, after)) => !text.is_empty() && class.matches(text[0]) && glob_chars(after, &text[1..]),
            None => literal('[', rest, text),
        },
        '\\' if !rest.is_empty() => literal(rest[0], &rest[1..], text),
        c => literal(c, rest, text),
    }
}

fn literal(c: char, rest: &[char], text: &[char]) -> bool {
    text.first() == Some(&c) && glob_chars(rest, &text[1..])
}

/// A `[...]` class: ranges and single characters, possibly negated.
struct CharClass {
    negated: bool,
    ranges: Vec<(char, char)>,
}

impl CharClass {
    fn matches(&self, c: char) -> bool {
        self.ranges.iter().any(|&(lo, hi)| lo <= c && c <= hi) != self.negated
    }
}

/// Parses a class body after `[`; returns the class and the pattern after `]`.
fn char_class(body: &[char]) -> Option<(CharClass, &[char])> {
    let mut i = 0;
    let negated = matches!(body.first(), Some('!' | '^'));
    if negated {
        i += 1;
    }
    let mut ranges = Vec::new();
    let mut first = true;
    while i < body.len() {
        let c = body[i];
        if c == ']' && !first {
            return Some((CharClass { negated, ranges }, &body[i + 1..]));
        }
        first = false;
        let lo = if c == '\\' && i + 1 < body.len() {
            i += 1;
            body[i]
        } else {
            c
        };
        if body.get(i + 1) == Some(&'-') && body.get(i + 2).is_some_and(|&h| h != ']') {
            ranges.push((lo, body[i + 2]));
            i += 3;
        } else {
            ranges.push((lo, lo));
            i += 1;
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ignored(patterns: &str, path: &str) -> bool {
        let components: Vec<String> = path.split('/').map(str::to_string).collect();
        GitIgnore::new(patterns.lines()).is_ignored(&components)
    }

    #[test]
    fn unanchored_names_match_at_any_depth() {
        assert!(ignored("secret.py", "secret.py"));
        assert!(ignored("secret.py", "a/b/secret.py"));
        assert!(!ignored("secret.py", "a/secret.pyc"));
        assert!(ignored("*.md", "docs/x.md"));
        assert!(ignored("build", "build/x.py"));
    }

    #[test]
    fn anchored_patterns_match_from_the_root() {
        assert!(ignored("/gen.py", "gen.py"));
        assert!(!ignored("/gen.py", "a/gen.py"));
        assert!(ignored("a/gen.py", "a/gen.py"));
        assert!(!ignored("a/gen.py", "b/a/gen.py"));
        assert!(ignored("a/*.py", "a/x.py"));
        assert!(!ignored("a/*.py", "a/b/x.py"));
    }

    #[test]
    fn directory_patterns_only_match_directories() {
        assert!(ignored("__pycache__/", "pkg/__pycache__/m.py"));
        assert!(!ignored("data/", "data"));
        assert!(ignored("data/", "data/x.md"));
        assert!(ignored("/out/", "out/x.md"));
        assert!(!ignored("/out/", "a/out/x.md"));
    }

    #[test]
    fn double_star_forms() {
        assert!(ignored("**/tmp.py", "tmp.py"));
        assert!(ignored("**/tmp.py", "a/b/tmp.py"));
        assert!(ignored("a/**/z.py", "a/z.py"));
        assert!(ignored("a/**/z.py", "a/b/c/z.py"));
        assert!(ignored("a/**", "a/b.py"));
        assert!(!ignored("a/**", "a"));
        assert!(ignored("**/", "a/b.py"));
        assert!(!ignored("**/", "b.py"));
    }

    #[test]
    fn negation_comments_classes_escapes() {
        assert!(!ignored("*.py\n!keep.py", "keep.py"));
        assert!(ignored("*.py\n!keep.py", "drop.py"));
        assert!(!ignored("# *.py\n\n", "x.py"));
        assert!(ignored("x[0-9].py", "x7.py"));
        assert!(!ignored("x[!0-9].py", "x7.py"));
        assert!(ignored("\\#odd.md", "#odd.md"));
        assert!(ignored("?.md", "a.md"));
        assert!(!ignored("?.md", "ab.md"));
        assert!(ignored("  spaced.md  ", "spaced.md"));
    }
}

//! Parser for `axonserver.properties`-style files (the Java `.properties` syntax).
//!
//! Owns the file syntax only: `key=value`, `key: value` and `key value`; `#`/`!` comment
//! lines; blank lines; a line ending in an odd number of backslashes continues on the next
//! line (whose leading whitespace is dropped); the escapes `\t \n \r \f \uXXXX` and `\x` for
//! any other `x`. Keys and values are trimmed. It does not know which keys exist (`keys`) or
//! read the file (`settings`). Invariant: every entry carries the 1-based line it starts on,
//! and each key appears once, with the value of its last occurrence (later wins).

use std::collections::HashSet;
use std::path::Path;

use super::error::ConfigError;

/// One `key=value` entry of a properties file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    /// The key as written (escapes resolved, trimmed, not canonicalised).
    pub key: String,
    /// The value, escapes resolved and trimmed; empty for a bare key.
    pub value: String,
    /// The 1-based line on which the entry starts.
    pub line: usize,
}

/// Parses the text of a properties file. `path` is only used to name the file in errors.
/// Duplicate keys keep the last occurrence, in file order.
pub fn parse(text: &str, path: &Path) -> Result<Vec<Entry>, ConfigError> {
    let mut entries = Vec::new();
    for (line, logical) in logical_lines(text) {
        let (raw_key, raw_value) = split_entry(&logical);
        let unescape_at = |raw: &str| {
            unescape(raw).map_err(|reason| ConfigError::ParseLine { path: path.to_path_buf(), line, reason })
        };
        let key = unescape_at(raw_key)?;
        let value = unescape_at(raw_value)?;
        entries.push(Entry { key, value, line });
    }
    Ok(keep_last(entries))
}

/// Joins continued lines and drops comments and blank lines. Yields (first line, text).
fn logical_lines(text: &str) -> Vec<(usize, String)> {
    let mut done = Vec::new();
    let mut pending: Option<(usize, String)> = None;
    for (index, raw) in text.lines().enumerate() {
        let line = raw.trim();
        let (body, continues) = strip_continuation(line);
        let (start, mut joined) = match pending.take() {
            Some(open) => open,
            None if line.is_empty() || line.starts_with(['#', '!']) => continue,
            None => (index + 1, String::new()),
        };
        joined.push_str(body);
        if continues {
            pending = Some((start, joined));
        } else {
            done.push((start, joined));
        }
    }
    done.extend(pending);
    done
}

/// Removes a trailing continuation backslash: one that is not itself escaped.
fn strip_continuation(line: &str) -> (&str, bool) {
    let backslashes = line.len() - line.trim_end_matches('\\').len();
    if backslashes % 2 == 1 { (&line[..line.len() - 1], true) } else { (line, false) }
}

/// Splits a logical line at the first unescaped `=`, `:` or whitespace (Java's rule): the
/// separator is optional whitespace, then at most one `=`/`:`, then optional whitespace.
fn split_entry(logical: &str) -> (&str, &str) {
    let mut escaped = false;
    let mut key_end = logical.len();
    for (at, c) in logical.char_indices() {
        if escaped {
            escaped = false;
        } else if c == '\\' {
            escaped = true;
        } else if c == '=' || c == ':' || c.is_whitespace() {
            key_end = at;
            break;
        }
    }
    let (key, rest) = logical.split_at(key_end);
    let rest = rest.trim_start();
    let value = rest.strip_prefix(['=', ':']).unwrap_or(rest).trim();
    (key, value)
}

/// Resolves backslash escapes. A lone trailing backslash is dropped, as Java does.
fn unescape(raw: &str) -> Result<String, String> {
    let mut out = String::with_capacity(raw.len());
    let mut chars = raw.chars();
    while let Some(c) = chars.next() {
        if c != '\\' {
            out.push(c);
            continue;
        }
        match chars.next() {
            Some('t') => out.push('\t'),
            Some('n') => out.push('\n'),
            Some('r') => out.push('\r'),
            Some('f') => out.push('\u{c}'),
            Some('u') => out.push(unicode_escape(&mut chars)?),
            Some(other) => out.push(other),
            None => {}
        }
    }
    Ok(out)
}

/// Reads the four hex digits of a `\uXXXX` escape.
fn unicode_escape(chars: &mut std::str::Chars<'_>) -> Result<char, String> {
    let hex: String = chars.by_ref().take(4).collect();
    let code = (hex.len() == 4).then(|| u32::from_str_radix(&hex, 16).ok()).flatten();
    code.and_then(char::from_u32)
        .ok_or_else(|| format!("malformed \\u escape \"\\u{hex}\": expected 4 hex digits of a non-surrogate"))
}

/// Keeps only the last entry for each key, in file order.
fn keep_last(entries: Vec<Entry>) -> Vec<Entry> {
    let mut seen = HashSet::new();
    let mut kept: Vec<Entry> = entries.into_iter().rev().filter(|entry| seen.insert(entry.key.clone())).collect();
    kept.reverse();
    kept
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parsed(text: &str) -> Vec<(String, String, usize)> {
        parse(text, Path::new("test.properties")).unwrap().into_iter().map(|e| (e.key, e.value, e.line)).collect()
    }

    fn entry(key: &str, value: &str, line: usize) -> (String, String, usize) {
        (key.to_owned(), value.to_owned(), line)
    }

    #[test]
    fn separators_comments_and_blank_lines() {
        let text = "# a comment\n\
                    ! another comment\n\
                    \n\
                    a=1\n\
                    b: 2\n\
                    \x20 c = 3 \x20\n\
                    d 4\n\
                    e\n\
                    f=\n\
                    g=x=y:z\n\
                    \t# indented comment\n";
        assert_eq!(
            parsed(text),
            vec![
                entry("a", "1", 4),
                entry("b", "2", 5),
                entry("c", "3", 6),
                entry("d", "4", 7),
                entry("e", "", 8),
                entry("f", "", 9),
                entry("g", "x=y:z", 10),
            ]
        );
    }

    #[test]
    fn continuation_lines_join_and_keep_the_first_line_number() {
        let text = "x=1\nlist = a,\\\n    b,\\\n    c\ny=2\n";
        assert_eq!(parsed(text), vec![entry("x", "1", 1), entry("list", "a,b,c", 2), entry("y", "2", 5)]);
    }

    #[test]
    fn escaped_backslash_at_end_does_not_continue() {
        let text = "dir=C:\\\\data\\\\\nnext=1\n";
        assert_eq!(parsed(text), vec![entry("dir", "C:\\data\\", 1), entry("next", "1", 2)]);
    }

    #[test]
    fn continuation_at_end_of_file_and_comment_ending_in_backslash() {
        assert_eq!(parsed("# comment \\\na=1\nb=2\\"), vec![entry("a", "1", 2), entry("b", "2", 3)]);
    }

    #[test]
    fn continued_line_starting_with_hash_is_not_a_comment() {
        assert_eq!(parsed("a=x\\\n#y\n"), vec![entry("a", "x#y", 1)]);
    }

    #[test]
    fn escapes_in_keys_and_values() {
        let text = "my\\ key\\=x = tab\\there \\u00e9\\:\n";
        assert_eq!(parsed(text), vec![entry("my key=x", "tab\there é:", 1)]);
    }

    #[test]
    fn crlf_line_endings() {
        assert_eq!(parsed("a=1\r\nb=2\r\n"), vec![entry("a", "1", 1), entry("b", "2", 2)]);
    }

    #[test]
    fn duplicate_keys_keep_the_last_value() {
        assert_eq!(parsed("a=1\nb=2\na=3\n"), vec![entry("b", "2", 2), entry("a", "3", 3)]);
    }

    #[test]
    fn malformed_unicode_escape_names_file_and_line() {
        let err = parse("a=1\nb=\\u12G4\n", Path::new("conf/x.properties")).unwrap_err();
        let message = err.to_string();
        assert!(message.contains("conf/x.properties:2"), "{message}");
        assert!(message.contains("malformed \\u escape"), "{message}");
        assert!(parse("a=\\u12", Path::new("p")).is_err());
        assert!(parse("a=\\ud800", Path::new("p")).is_err());
    }

    proptest::proptest! {
        #[test]
        fn parse_never_panics_and_lines_are_in_range(text in "(\\PC|[\\\\=: \\t\\n\\r#!])*") {
            if let Ok(entries) = parse(&text, Path::new("p")) {
                let lines = text.lines().count();
                for entry in entries {
                    proptest::prop_assert!(entry.line >= 1 && entry.line <= lines);
                }
            }
        }
    }
}

//! Owns where a configuration is read from: the process environment or a dotenv file (or
//! standard input, `-`). Parsing follows `scripts/lib.sh` `load_dotenv`: `KEY=VALUE` lines,
//! `#` comments and blank lines skipped, an optional `export ` prefix, one pair of matching
//! surrounding quotes removed, no shell evaluation. A malformed line is an error naming its
//! line number only, never its content (it may hold a secret).

use std::collections::BTreeMap;
use std::fmt;
use std::io::Read;

/// A configuration snapshot: variable name → raw value.
#[derive(Clone, Default)]
pub struct Source {
    vars: BTreeMap<String, String>,
    /// `process-env`, `env-file` or `stdin`: reported in JSON, never the path's contents.
    pub kind: &'static str,
}

impl fmt::Debug for Source {
    /// Names only: a `Source` holds secret values.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Source")
            .field("kind", &self.kind)
            .field("names", &self.vars.keys().collect::<Vec<_>>())
            .finish()
    }
}

/// Why a dotenv text could not be read.
#[derive(Debug, PartialEq, Eq)]
pub struct ParseError {
    /// 1-based line number of the malformed line.
    pub line: usize,
}

impl fmt::Display for ParseError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "line {}: not KEY=VALUE with KEY matching [A-Za-z_][A-Za-z0-9_]*",
            self.line
        )
    }
}

impl Source {
    /// The current process environment (non-UTF-8 values are skipped).
    pub fn from_process_env() -> Self {
        Self {
            vars: std::env::vars_os()
                .filter_map(|(k, v)| Some((k.into_string().ok()?, v.into_string().ok()?)))
                .collect(),
            kind: "process-env",
        }
    }

    /// A dotenv file, or standard input when `path` is `-`.
    pub fn from_env_file(path: &str) -> Result<Self, String> {
        let (text, kind) = if path == "-" {
            let mut text = String::new();
            std::io::stdin()
                .read_to_string(&mut text)
                .map_err(|e| format!("cannot read standard input: {e}"))?;
            (text, "stdin")
        } else {
            let text =
                std::fs::read_to_string(path).map_err(|e| format!("cannot read {path}: {e}"))?;
            (text, "env-file")
        };
        let vars = parse_dotenv(&text).map_err(|e| format!("{path}: {e}"))?;
        Ok(Self { vars, kind })
    }

    /// A source from pairs (tests, `check`).
    pub fn from_pairs<'a>(pairs: impl IntoIterator<Item = (&'a str, &'a str)>) -> Self {
        Self {
            vars: pairs
                .into_iter()
                .map(|(k, v)| (k.to_owned(), v.to_owned()))
                .collect(),
            kind: "pairs",
        }
    }

    /// The raw value of `name`, if present.
    pub fn get(&self, name: &str) -> Option<String> {
        self.vars.get(name).cloned()
    }

    /// Sets or replaces `name` (used for `--env`).
    pub fn set(&mut self, name: &str, value: &str) {
        self.vars.insert(name.to_owned(), value.to_owned());
    }
}

fn valid_key(key: &str) -> bool {
    let mut bytes = key.bytes();
    matches!(bytes.next(), Some(b) if b.is_ascii_alphabetic() || b == b'_')
        && bytes.all(|b| b.is_ascii_alphanumeric() || b == b'_')
}

/// Parses dotenv text into pairs; later lines win over earlier ones.
pub fn parse_dotenv(text: &str) -> Result<BTreeMap<String, String>, ParseError> {
    let mut vars = BTreeMap::new();
    for (i, raw) in text.lines().enumerate() {
        let line = raw.trim_start();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let line = line.strip_prefix("export ").unwrap_or(line);
        let Some((key, value)) = line.split_once('=') else {
            return Err(ParseError { line: i + 1 });
        };
        if !valid_key(key) {
            return Err(ParseError { line: i + 1 });
        }
        let value = value.trim_end_matches('\r');
        let unquoted = [b'"', b'\'']
            .iter()
            .find_map(|q| {
                let q = char::from(*q);
                (value.len() >= 2 && value.starts_with(q) && value.ends_with(q))
                    .then(|| &value[1..value.len() - 1])
            })
            .unwrap_or(value);
        vars.insert(key.to_owned(), unquoted.to_owned());
    }
    Ok(vars)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn dotenv_lines_become_pairs_with_comments_exports_and_quotes_handled() {
        let vars = parse_dotenv(
            "# comment\n\nexport A=1\nB=\"two words\"\nC='x=y'\nD=\nE=plain # not a comment\r\n",
        )
        .unwrap();
        assert_eq!(vars["A"], "1");
        assert_eq!(vars["B"], "two words");
        assert_eq!(vars["C"], "x=y");
        assert_eq!(vars["D"], "");
        assert_eq!(vars["E"], "plain # not a comment");
    }

    #[test]
    fn a_malformed_line_is_reported_by_number_without_its_content() {
        let err = parse_dotenv("A=1\nsk-proj-secretvalue\n").unwrap_err();
        assert_eq!(err, ParseError { line: 2 });
        assert!(!err.to_string().contains("sk-proj"));
        assert_eq!(parse_dotenv("1BAD=x").unwrap_err().line, 1);
    }

    #[test]
    fn debug_of_a_source_shows_names_not_values() {
        let s = Source::from_pairs([("JWT_SECRET_KEY", "very-secret-value")]);
        let text = format!("{s:?}");
        assert!(text.contains("JWT_SECRET_KEY") && !text.contains("very-secret-value"));
    }
}

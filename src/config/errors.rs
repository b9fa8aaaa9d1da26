//! Problems found in a configuration file and where they are.
//!
//! Every problem carries a file:line:col so an operator can jump straight to
//! it; the whole list is reported at once so a broken file is fixed in one
//! edit-restart cycle instead of one per mistake.

use std::fmt;

/// One thing wrong with a configuration file.
///
/// `line` and `column` are 1-based; `column` counts characters (not bytes) so
/// it matches what editors show. Both are 0 when there is no position (the
/// file could not be read at all).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    pub file: String,
    pub line: usize,
    pub column: usize,
    pub message: String,
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.line == 0 {
            // No position to point at (e.g. the file is missing); "f:0:0:"
            // would send editors to a line that does not exist.
            write!(f, "{}: {}", self.file, self.message)
        } else {
            write!(
                f,
                "{}:{}:{}: {}",
                self.file, self.line, self.column, self.message
            )
        }
    }
}

/// Everything wrong with a configuration file; never empty when returned.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub struct ConfigError {
    pub problems: Vec<Problem>,
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, p) in self.problems.iter().enumerate() {
            if i > 0 {
                writeln!(f)?;
            }
            write!(f, "{p}")?;
        }
        Ok(())
    }
}

/// 1-based (line, column) of byte `offset` in `text`; column in characters.
///
/// An offset past the end (or inside a multi-byte character) is clamped to
/// the nearest preceding character boundary so a bad span from the parser can
/// never panic here.
pub(crate) fn line_col(text: &str, offset: usize) -> (usize, usize) {
    let mut end = offset.min(text.len());
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    let before = text.get(..end).unwrap_or("");
    let line_start = before.rfind('\n').map_or(0, |i| i + 1);
    let line = before.matches('\n').count() + 1;
    let column = before.get(line_start..).unwrap_or("").chars().count() + 1;
    (line, column)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn line_col_counts_characters() {
        let text = "a = 1\nbé = \"x\"\n";
        assert_eq!(line_col(text, 0), (1, 1));
        assert_eq!(line_col(text, 4), (1, 5));
        assert_eq!(line_col(text, 6), (2, 1));
        // 'é' is two bytes: the '=' after "bé " is byte 10 but column 4.
        assert_eq!(line_col(text, 10), (2, 4));
        assert_eq!(line_col(text, 8), (2, 2)); // inside 'é' clamps back
        assert_eq!(line_col(text, 999), (3, 1));
    }

    #[test]
    fn display_formats() {
        let p = Problem {
            file: "f.toml".into(),
            line: 3,
            column: 10,
            message: "bad".into(),
        };
        assert_eq!(p.to_string(), "f.toml:3:10: bad");
        let io = Problem {
            line: 0,
            column: 0,
            ..p.clone()
        };
        assert_eq!(io.to_string(), "f.toml: bad");
        let e = ConfigError {
            problems: vec![p, io],
        };
        assert_eq!(e.to_string(), "f.toml:3:10: bad\nf.toml: bad");
    }
}

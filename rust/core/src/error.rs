//! Typed errors of the core. Every error that comes from a file names the file and,
//! where a line is to blame, its 1-based line number.

use std::fmt;
use std::io;
use std::path::{Path, PathBuf};

/// What is wrong with one line of a BED-like file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LineProblem {
    /// Fewer columns than the format needs.
    TooFewColumns { found: usize, needed: usize },
    /// A coordinate column that is not a decimal integer.
    NotAnInteger { column: &'static str, value: String },
    /// A coordinate below zero.
    Negative { column: &'static str, value: String },
    /// A coordinate above 2^32-1.
    TooLarge { column: &'static str, value: String },
    /// `start > end`.
    StartAfterEnd { start: u32, end: u32 },
    /// Bytes that are not UTF-8 where text is required.
    NotUtf8,
    /// Any other problem, said in words.
    Other(String),
    /// A line longer than [`crate::io::MAX_LINE_BYTES`] (or a file longer than its cap).
    TooLong { limit: usize, what: &'static str },
}

impl fmt::Display for LineProblem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            LineProblem::TooFewColumns { found, needed } => {
                write!(f, "too few columns: found {found}, need at least {needed}")
            }
            LineProblem::NotAnInteger { column, value } => {
                write!(f, "{column} is not an integer: {value:?}")
            }
            LineProblem::Negative { column, value } => {
                write!(f, "{column} is negative: {value}")
            }
            LineProblem::TooLarge { column, value } => {
                write!(f, "{column} is above 2^32-1: {value}")
            }
            LineProblem::StartAfterEnd { start, end } => {
                write!(f, "start > end ({start} > {end})")
            }
            LineProblem::NotUtf8 => write!(f, "text is not valid UTF-8"),
            LineProblem::Other(msg) => f.write_str(msg),
            LineProblem::TooLong { limit, what } => {
                write!(
                    f,
                    "{what} longer than {limit} bytes (not a text file of this kind?)"
                )
            }
        }
    }
}

/// Where an error happened: a file (or a description of an in-memory source).
fn show_path(path: &Path) -> String {
    path.display().to_string()
}

/// "corrupt ... after line N", or "at the start of the file" when no line was read.
fn show_compression(path: &Path, line: u64, message: &str) -> String {
    let path = show_path(path);
    if line == 0 {
        format!("{path}: corrupt or truncated compressed data at the start of the file: {message}")
    } else {
        format!("{path}:{line}: corrupt or truncated compressed data after line {line}: {message}")
    }
}

/// Errors of the atacformer core.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The file does not exist.
    #[error("{}: no such file", show_path(.path))]
    NotFound { path: PathBuf },

    /// Any other I/O failure while opening or reading a file.
    #[error("{}: {source}", show_path(.path))]
    Io {
        path: PathBuf,
        #[source]
        source: io::Error,
    },

    /// A malformed line in a BED-like file.
    #[error("{}:{line}: {problem}", show_path(.path))]
    Parse {
        path: PathBuf,
        line: u64,
        problem: LineProblem,
    },

    /// Corrupt or truncated compressed data; `line` is the last line read intact (0: the
    /// data is bad from the very start of the file).
    #[error("{}", show_compression(.path, *.line, .message))]
    Compression {
        path: PathBuf,
        line: u64,
        message: String,
    },

    /// A problem in a tokenizer configuration file.
    #[error("{}:{line}: {message}", show_path(.path))]
    Config {
        path: PathBuf,
        line: u64,
        message: String,
    },

    /// The same region appears twice in a universe.
    #[error("{}:{second_line}: duplicate universe region {region} (first seen on line {first_line})", show_path(.path))]
    DuplicateRegion {
        path: PathBuf,
        region: String,
        first_line: u64,
        second_line: u64,
    },

    /// A universe with no regions.
    #[error("{}: the universe has no regions", show_path(.path))]
    EmptyUniverse { path: PathBuf },

    /// A bad argument or value given by the caller (not read from a file).
    #[error("{0}")]
    InvalidInput(String),
}

impl Error {
    /// Wraps an I/O error, turning "not found" into [`Error::NotFound`].
    pub fn io(path: impl Into<PathBuf>, source: io::Error) -> Self {
        let path = path.into();
        if source.kind() == io::ErrorKind::NotFound {
            Error::NotFound { path }
        } else {
            Error::Io { path, source }
        }
    }
}

/// Result alias of the core.
pub type Result<T, E = Error> = std::result::Result<T, E>;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn compression_errors_say_where() {
        let at = |line| Error::Compression {
            path: PathBuf::from("f.gz"),
            line,
            message: "invalid gzip header".into(),
        };
        assert_eq!(
            at(0).to_string(),
            "f.gz: corrupt or truncated compressed data at the start of the file: invalid gzip header"
        );
        assert_eq!(
            at(7).to_string(),
            "f.gz:7: corrupt or truncated compressed data after line 7: invalid gzip header"
        );
    }
}

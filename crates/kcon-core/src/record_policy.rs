//! The values of the record-policy properties (`errors.*`), which a record processor above
//! the consumer follows for records that fail.

use std::fmt;

/// `errors.tolerance` (Kafka Connect's name, KIP-298): what a record that failed for good
/// does.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum ErrorTolerance {
    /// Processing stops with an error; nothing past the record is stored.
    #[default]
    None,
    /// The record is skipped, or written to the dead-letter topic when one is set, and
    /// processing goes on.
    All,
}

impl ErrorTolerance {
    /// What `errors.tolerance` allows, in words.
    pub const EXPECTED: &'static str = "none or all";

    /// Reads `none` or `all`, in any case.
    pub fn parse(value: &str) -> Option<ErrorTolerance> {
        match value.trim().to_ascii_lowercase().as_str() {
            "none" => Some(ErrorTolerance::None),
            "all" => Some(ErrorTolerance::All),
            _ => None,
        }
    }
}

impl fmt::Display for ErrorTolerance {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            ErrorTolerance::None => "none",
            ErrorTolerance::All => "all",
        })
    }
}

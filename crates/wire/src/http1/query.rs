//! `application/x-www-form-urlencoded` query strings (WHATWG URL §5).

use thiserror::Error;

/// A query string that does not decode.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[non_exhaustive]
pub enum QueryError {
    /// `%` not followed by two hex digits.
    #[error("bad percent-escape in query")]
    BadEscape,
    /// The decoded bytes are not UTF-8.
    #[error("query is not valid UTF-8 after decoding")]
    NotUtf8,
}

/// Splits `query` (without the `?`) on `&`, then each pair on the first `=`, and
/// percent-decodes both sides (`+` is a space). Empty pieces (`a=1&&b=2`) are skipped.
pub fn pairs(query: &str) -> Result<Vec<(String, String)>, QueryError> {
    todo!("{query}")
}

/// Percent-decodes one component (`+` is a space).
pub fn decode_component(s: &str) -> Result<String, QueryError> {
    todo!("{s}")
}

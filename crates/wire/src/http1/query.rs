//! `application/x-www-form-urlencoded` query strings (WHATWG URL §5).

use std::borrow::Cow;

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
    query
        .split('&')
        .filter(|piece| !piece.is_empty())
        .map(|piece| {
            let (name, value) = piece.split_once('=').unwrap_or((piece, ""));
            Ok((decode_component(name)?, decode_component(value)?))
        })
        .collect()
}

/// The decoded value of the first pair named `name` in `query` (as [`pairs`] decodes them),
/// or `None`. Every pair is still checked, so a bad escape anywhere is the error [`pairs`]
/// would give; only a value with escapes is copied.
pub fn find<'q>(query: &'q str, name: &str) -> Result<Option<Cow<'q, str>>, QueryError> {
    let mut found = None;
    let mut rest = query;
    // Split on bytes: `&` and `=` are ASCII, so every cut is on a character boundary, and a
    // byte scan of a short query costs a fraction of a `char` pattern search.
    while !rest.is_empty() {
        let end = rest.bytes().position(|b| b == b'&').unwrap_or(rest.len());
        let piece = &rest[..end];
        rest = rest.get(end + 1..).unwrap_or("");
        if piece.is_empty() {
            continue;
        }
        let (key, value) = match piece.bytes().position(|b| b == b'=') {
            Some(i) => (&piece[..i], &piece[i + 1..]),
            None => (piece, ""),
        };
        let key = decode(key)?;
        let value = decode(value)?;
        if found.is_none() && key == name {
            found = Some(value);
        }
    }
    Ok(found)
}

/// Percent-decodes one component (`+` is a space).
///
/// Unlike the WHATWG parser, which passes a stray `%` through, a bad escape is an error: the
/// lab's query API would rather answer 400 than act on a guess.
pub fn decode_component(s: &str) -> Result<String, QueryError> {
    decode(s).map(Cow::into_owned)
}

/// [`decode_component`], borrowing `s` when it has nothing to decode.
fn decode(s: &str) -> Result<Cow<'_, str>, QueryError> {
    let bytes = s.as_bytes();
    if !bytes.iter().any(|&b| b == b'%' || b == b'+') {
        return Ok(Cow::Borrowed(s));
    }
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while let Some(&b) = bytes.get(i) {
        match b {
            b'+' => out.push(b' '),
            b'%' => {
                let hi = bytes.get(i + 1).copied().and_then(hex);
                let lo = bytes.get(i + 2).copied().and_then(hex);
                let (Some(hi), Some(lo)) = (hi, lo) else {
                    return Err(QueryError::BadEscape);
                };
                out.push(hi << 4 | lo);
                i += 2;
            }
            _ => out.push(b),
        }
        i += 1;
    }
    String::from_utf8(out)
        .map(Cow::Owned)
        .map_err(|_| QueryError::NotUtf8)
}

fn hex(b: u8) -> Option<u8> {
    match b {
        b'0'..=b'9' => Some(b - b'0'),
        b'a'..=b'f' => Some(b - b'a' + 10),
        b'A'..=b'F' => Some(b - b'A' + 10),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(a: &str, b: &str) -> (String, String) {
        (a.to_owned(), b.to_owned())
    }

    #[test]
    fn splits_and_decodes() {
        assert_eq!(
            pairs("year=2020&name=blue+tit&&q=a%3Db%26c&flag").unwrap(),
            vec![
                p("year", "2020"),
                p("name", "blue tit"),
                p("q", "a=b&c"),
                p("flag", "")
            ]
        );
        assert_eq!(pairs("").unwrap(), vec![]);
        assert_eq!(pairs("=x&a==b").unwrap(), vec![p("", "x"), p("a", "=b")]);
    }

    #[test]
    fn find_agrees_with_pairs() {
        for query in [
            "msg=hello%20world",
            "a=1&msg=first&msg=second",
            "m%73g=escaped+name&x",
            "x=1",
            "",
            "msg",
            "msg=ok&bad=%zz",
            "bad=%C3&msg=ok",
        ] {
            let expected =
                pairs(query).map(|all| all.into_iter().find(|(k, _)| k == "msg").map(|(_, v)| v));
            let got = find(query, "msg").map(|v| v.map(Cow::into_owned));
            assert_eq!(got, expected, "query {query:?}");
        }
        assert!(matches!(
            find("msg=plain", "msg"),
            Ok(Some(Cow::Borrowed("plain")))
        ));
    }

    #[test]
    fn components() {
        assert_eq!(decode_component("plain").unwrap(), "plain");
        assert_eq!(decode_component("caf%C3%A9%20%2b+").unwrap(), "café + ");
        assert_eq!(decode_component("%e2%82%ac").unwrap(), "€");
        assert_eq!(decode_component("é").unwrap(), "é");
    }

    #[test]
    fn errors() {
        for bad in ["%", "%4", "%zz", "a%g0", "100%"] {
            assert_eq!(decode_component(bad), Err(QueryError::BadEscape), "{bad}");
        }
        assert_eq!(decode_component("%ff"), Err(QueryError::NotUtf8));
        assert_eq!(decode_component("%C3"), Err(QueryError::NotUtf8));
        assert_eq!(pairs("a=1&b=%"), Err(QueryError::BadEscape));
    }
}

//! The JSON a load reads most, decoded without serde when it is in the one layout both
//! stores write: a cutoff as `serde_json::to_vec(&Cutoff)` (redb) or the commit script's
//! `{"valid_after":%d,"preserved":%s,"version":%d}` (Redis) writes it, and a user's field
//! `["workspace","subject"]` without escapes. Anything else (escapes, other key orders,
//! whitespace) goes through serde_json as before, so every stored value still loads.
//!
//! What it buys: serde_json (with its derive of `Cutoff`, `Preserved` and the pair) was
//! the largest part of the reader's time in a profile of a 1M + 1M embedded load.

use std::str::FromStr;

use super::{Cutoff, Preserved};

/// What is left to read of a value.
struct Cursor<'a> {
    rest: &'a [u8],
}

/// A stored cutoff.
pub(super) fn cutoff(bytes: &[u8]) -> Result<Cutoff, serde_json::Error> {
    match canonical_cutoff(bytes) {
        Some(cutoff) => Ok(cutoff),
        None => serde_json::from_slice(bytes),
    }
}

/// A JSON pair of texts (a user cutoff's field in Redis).
pub(super) fn pair(text: &str) -> Result<(String, String), serde_json::Error> {
    match canonical_pair(text.as_bytes()) {
        Some((first, second)) => Ok((first.to_string(), second.to_string())),
        None => serde_json::from_str(text),
    }
}

fn canonical_cutoff(bytes: &[u8]) -> Option<Cutoff> {
    let mut json = Cursor { rest: bytes };
    json.tag(b"{\"valid_after\":")?;
    let valid_after = json.number(b',')?;
    json.tag(b",\"preserved\":")?;
    let preserved = match json.tag(b"null") {
        Some(()) => None,
        None => Some(json.preserved()?),
    };
    json.tag(b",\"version\":")?;
    let version = json.number(b'}')?;
    json.tag(b"}")?;
    json.rest.is_empty().then_some(Cutoff {
        valid_after,
        preserved,
        version,
    })
}

fn canonical_pair(bytes: &[u8]) -> Option<(&str, &str)> {
    let mut json = Cursor { rest: bytes };
    json.tag(b"[\"")?;
    let first = json.text()?;
    json.tag(b",\"")?;
    let second = json.text()?;
    json.tag(b"]")?;
    json.rest.is_empty().then_some((first, second))
}

// === impl Cursor ===

impl<'a> Cursor<'a> {
    fn tag(&mut self, tag: &[u8]) -> Option<()> {
        self.rest = self.rest.strip_prefix(tag)?;
        Some(())
    }

    /// `{"session_id":"...","expires_at":...}`
    fn preserved(&mut self) -> Option<Preserved> {
        self.tag(b"{\"session_id\":\"")?;
        let session_id = self.text()?.to_string();
        self.tag(b",\"expires_at\":")?;
        let expires_at = self.number(b'}')?;
        self.tag(b"}")?;
        Some(Preserved {
            session_id,
            expires_at,
        })
    }

    /// A JSON number up to `end`: only the characters JSON numbers have, starting as JSON
    /// numbers do (Rust's parsers also take `+1`, `inf`, `NaN`).
    fn number<T: FromStr>(&mut self, end: u8) -> Option<T> {
        let len = self.rest.iter().position(|b| *b == end)?;
        let (number, rest) = self.rest.split_at(len);
        let first = *number.first()?;
        let json = |b: &u8| b.is_ascii_digit() || b"-+.eE".contains(b);
        if !(first == b'-' || first.is_ascii_digit()) || !number.iter().all(json) {
            return None;
        }
        self.rest = rest;
        std::str::from_utf8(number).ok()?.parse().ok()
    }

    /// The rest of a text whose opening quote was read, and its closing quote: `None` for
    /// one with escapes or control characters (serde reads those).
    fn text(&mut self) -> Option<&'a str> {
        let len = self.rest.iter().position(|b| *b == b'"')?;
        let (text, rest) = self.rest.split_at(len);
        if text.iter().any(|b| *b == b'\\' || *b < 0x20) {
            return None;
        }
        self.rest = &rest[1..];
        std::str::from_utf8(text).ok()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn both(json: &str) -> (Option<Cutoff>, Option<Cutoff>) {
        let fast = canonical_cutoff(json.as_bytes());
        (fast, serde_json::from_str(json).ok())
    }

    #[test]
    fn cutoffs_in_the_stores_layout_decode_as_serde_decodes_them() {
        let preserved = Preserved {
            session_id: "sha256:ab/ü".into(),
            expires_at: 1795916001.25,
        };
        for cutoff in [
            Cutoff {
                valid_after: -5,
                preserved: None,
                version: 1795916000123456,
            },
            Cutoff {
                valid_after: 1795916001,
                preserved: Some(preserved),
                version: 7,
            },
        ] {
            let json = serde_json::to_string(&cutoff).unwrap();
            assert_eq!(both(&json), (Some(cutoff.clone()), Some(cutoff)));
        }
    }

    #[test]
    fn other_layouts_fall_back_to_serde() {
        for json in [
            r#"{"valid_after":1,"version":2,"preserved":null}"#,
            r#"{"valid_after":1, "preserved":null,"version":2}"#,
            r#"{"valid_after":1,"preserved":{"session_id":"a\"b","expires_at":2.0},"version":2}"#,
            r#"{"valid_after":1.0,"preserved":null,"version":2}"#,
        ] {
            let (fast, serde) = both(json);
            assert_eq!(fast, None, "{json}");
            assert_eq!(cutoff(json.as_bytes()).ok(), serde, "{json}");
        }
        for json in [
            r#"{"valid_after":+1,"preserved":null,"version":2}"#,
            r#"{"valid_after":1,"preserved":{"session_id":"a","expires_at":NaN},"version":2}"#,
            r#"{"valid_after":1,"preserved":null,"version":2}x"#,
        ] {
            assert_eq!(both(json), (None, None), "{json}");
            assert!(cutoff(json.as_bytes()).is_err(), "{json}");
        }
    }

    #[test]
    fn pairs_decode_with_or_without_escapes() {
        for (first, second) in [("acme", "auth0|42"), ("a\",\"b", "c\\d"), ("", "é")] {
            let field = serde_json::to_string(&(first, second)).unwrap();
            assert_eq!(pair(&field).unwrap(), (first.into(), second.into()));
        }
        assert!(pair(r#"["a","b",]"#).is_err());
    }
}

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
        // `1e400` parses as infinity here; serde refuses it.
        let expires_at = self.number(b'}').filter(|at: &f64| at.is_finite())?;
        self.tag(b"}")?;
        Some(Preserved {
            session_id,
            expires_at,
        })
    }

    /// A JSON number up to `end`, checked against JSON's grammar first: Rust's parsers
    /// also take `+1`, `01`, `1.`, `inf` and `NaN`, which serde refuses.
    fn number<T: FromStr>(&mut self, end: u8) -> Option<T> {
        let len = self.rest.iter().position(|b| *b == end)?;
        let (number, rest) = self.rest.split_at(len);
        if !is_json_number(number) {
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

/// `-? (0 | [1-9][0-9]*) (. [0-9]+)? ([eE] [+-]? [0-9]+)?` (RFC 8259 section 6).
fn is_json_number(number: &[u8]) -> bool {
    let digits = |bytes: &[u8]| bytes.iter().take_while(|b| b.is_ascii_digit()).count();
    let mut rest = number.strip_prefix(b"-").unwrap_or(number);
    match digits(rest) {
        0 => return false,
        n if n > 1 && rest[0] == b'0' => return false,
        n => rest = &rest[n..],
    }
    if let Some(fraction) = rest.strip_prefix(b".") {
        let n = digits(fraction);
        if n == 0 {
            return false;
        }
        rest = &fraction[n..];
    }
    if let Some(exponent) = rest.strip_prefix(b"e").or_else(|| rest.strip_prefix(b"E")) {
        let exponent = exponent
            .strip_prefix(b"+")
            .or_else(|| exponent.strip_prefix(b"-"));
        let exponent = exponent.unwrap_or(&rest[1..]);
        let n = digits(exponent);
        if n == 0 {
            return false;
        }
        rest = &exponent[n..];
    }
    rest.is_empty()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The same, but for the last bit of `expires_at`: serde_json (without its
    /// `float_roundtrip` feature) may round a decimal differently from Rust's exact parser.
    fn agree(a: Option<&Cutoff>, b: Option<&Cutoff>) -> bool {
        let (Some(a), Some(b)) = (a, b) else {
            return a == b;
        };
        let expiry = |c: &Cutoff| c.preserved.as_ref().map(|p| p.expires_at);
        let close = match (expiry(a), expiry(b)) {
            (Some(x), Some(y)) => x == y || (x - y).abs() <= x.abs() * 4.0 * f64::EPSILON,
            (x, y) => x == y,
        };
        let (mut a, mut b) = (a.clone(), b.clone());
        for p in a.preserved.iter_mut().chain(b.preserved.iter_mut()) {
            p.expires_at = 0.0;
        }
        close && a == b
    }

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

    proptest::proptest! {
        // No regression file: the project keeps no top-level proptest-regressions/
        // (tests/properties.rs does the same); a failure prints its shrunk case.
        #![proptest_config(proptest::test_runner::Config {
            cases: 2000,
            failure_persistence: None,
            ..proptest::test_runner::Config::default()
        })]
        /// Whatever the fast path reads, it reads as serde does: on what the stores
        /// write, and on any text at all.
        #[test]
        fn the_fast_path_never_disagrees_with_serde(
            valid_after: i64,
            version: u64,
            preserved in proptest::option::of((".*", proptest::num::f64::NORMAL)),
            plain in "[ !#-\\[\\]-~]*",
            at: usize,
            inserted in proptest::sample::select(vec!['0', '1', '-', '+', '.', 'e', '"', ' ', ',']),
        ) {
            let preserved = preserved.map(|(session_id, expires_at)| Preserved {
                session_id,
                expires_at,
            });
            let cutoff = Cutoff { valid_after, preserved, version };
            let json = serde_json::to_string(&cutoff).unwrap();
            let (fast, serde) = both(&json);
            proptest::prop_assert!(agree(serde.as_ref(), Some(&cutoff)), "{}", json);
            proptest::prop_assert!(fast.is_none() || fast.as_ref() == Some(&cutoff), "{}", json);
            // Without escapes, the fast path reads it.
            let unescaped = Cutoff {
                preserved: Some(Preserved { session_id: plain, expires_at: 1795916001.25 }),
                ..cutoff.clone()
            };
            let text = serde_json::to_string(&unescaped).unwrap();
            proptest::prop_assert_eq!(canonical_cutoff(text.as_bytes()), Some(unescaped), "{}", text);
            // The same text with one character more (of those that make or break JSON
            // numbers and texts), anywhere.
            let (index, _) = json.char_indices().nth(at % json.chars().count()).unwrap();
            let mut changed = json.clone();
            changed.insert(index, inserted);
            let (fast, serde) = both(&changed);
            proptest::prop_assert!(fast.is_none() || agree(fast.as_ref(), serde.as_ref()), "{}", changed);
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

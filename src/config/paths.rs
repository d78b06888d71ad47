//! The path rule of SPEC section 4: tricky paths are refused before any matching, so a
//! public prefix can never be stretched to reach a private path.

/// A request path that could mean something else to the upstream than to us.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum BadPath {
    #[error("the path contains a dot-segment")]
    DotSegment,
    #[error("the path contains a backslash")]
    Backslash,
    #[error("the path contains an encoded '.', '/' or '\\'")]
    EncodedSeparator,
    #[error("the path must start with /")]
    NotAbsolute,
}

/// `auth.public_paths`: exact paths and `/prefix/*` entries.
#[derive(Debug, Clone, Default)]
pub struct PublicPaths {
    exact: Vec<String>,
    /// Stored without the `/*`: `/assets` matches `/assets` and `/assets/...`.
    prefixes: Vec<String>,
}

/// Refuses dot-segments, backslashes and percent-encoded `.`, `/`, `\` (encoded once or
/// more) anywhere in `path`.
pub fn check_path(path: &str) -> Result<(), BadPath> {
    if !path.starts_with('/') {
        return Err(BadPath::NotAbsolute);
    }
    if path.contains('\\') {
        return Err(BadPath::Backslash);
    }
    if has_encoded_separator(path.as_bytes()) {
        return Err(BadPath::EncodedSeparator);
    }
    if path
        .split('/')
        .any(|segment| segment == "." || segment == "..")
    {
        return Err(BadPath::DotSegment);
    }
    Ok(())
}

/// An encoded `.`, `/` or `\` at any depth of encoding: `%252f` is `%2f` to an upstream
/// that decodes once more (and `/` to one that decodes twice).
fn has_encoded_separator(path: &[u8]) -> bool {
    let mut current = std::borrow::Cow::Borrowed(path);
    loop {
        if encodes_separator(&current) {
            return true;
        }
        // Each decoding of a `%25` shortens the path, so this ends.
        if !current.windows(3).any(|w| w == b"%25") {
            return false;
        }
        current = std::borrow::Cow::Owned(percent_encoding::percent_decode(&current).collect());
    }
}

fn encodes_separator(path: &[u8]) -> bool {
    path.windows(3).any(|w| {
        w[0] == b'%'
            && matches!(
                (w[1], w[2].to_ascii_lowercase()),
                (b'2', b'e' | b'f') | (b'5', b'c')
            )
    })
}

/// `true` when `path` is `prefix` itself or lies under `prefix/`.
pub fn is_under(path: &str, prefix: &str) -> bool {
    path.strip_prefix(prefix)
        .is_some_and(|rest| rest.is_empty() || rest.starts_with('/'))
}

// === impl PublicPaths ===

impl PublicPaths {
    /// Builds the matcher; an entry that does not start with `/` is returned as the error.
    pub fn new(entries: &[String]) -> Result<Self, String> {
        let mut paths = Self::default();
        for entry in entries {
            if !entry.starts_with('/') {
                return Err(entry.clone());
            }
            match entry.strip_suffix("/*") {
                Some(prefix) => paths.prefixes.push(prefix.to_string()),
                None => paths.exact.push(entry.clone()),
            }
        }
        Ok(paths)
    }

    /// Whether a (checked) request path is forwarded without a token.
    pub fn matches(&self, path: &str) -> bool {
        self.exact.iter().any(|exact| exact == path)
            || self.prefixes.iter().any(|prefix| is_under(path, prefix))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refuses_every_path_trick() {
        let tricks = [
            "/assets/../admin",
            "/assets/..",
            "/assets/.",
            "/./admin",
            "/..",
            "/assets/%2e%2e/admin",
            "/assets/%2E%2E/admin",
            "/assets/.%2e/admin",
            "/assets%2fadmin",
            "/assets%2Fadmin",
            "/assets/%5cadmin",
            "/assets/%5Cadmin",
            "/assets\\..\\admin",
            "/a%2e",
            "/assets/%252e%252e/admin",
            "/assets%252fadmin",
            "/assets%25252Fadmin",
            "/assets/%255c",
        ];
        for path in tricks {
            assert!(check_path(path).is_err(), "{path} should be refused");
        }
    }

    #[test]
    fn accepts_ordinary_paths() {
        for path in [
            "/",
            "/a/b",
            "/a.b/c..d/.well-known",
            "/x%20y",
            "/%41",
            "/a/.../b",
            "/100%25/x",
        ] {
            assert_eq!(check_path(path), Ok(()), "{path}");
        }
    }

    #[test]
    fn public_prefix_covers_itself_and_below_only() {
        let public = PublicPaths::new(&["/assets/*".into(), "/health".into()]).unwrap();
        assert!(public.matches("/assets"));
        assert!(public.matches("/assets/app.js"));
        assert!(!public.matches("/assetsX"));
        assert!(!public.matches("/assets-private/x"));
        assert!(public.matches("/health"));
        assert!(!public.matches("/health/x"));
        assert!(!public.matches("/"));
    }
}

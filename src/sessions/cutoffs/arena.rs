//! The bytes of one shard: keys and preserved sessions, each written once, one after the
//! other, in one growing buffer.
//!
//! One buffer instead of a heap allocation per name saves the allocator's per-block
//! overhead and the 16-byte `Box<str>` header (part of the 421 -> ~70 bytes per cutoff of
//! issue 15). Cutoffs are never deleted, only replaced by higher ranks, so nothing here is
//! ever freed: a replaced preserved session stays behind (a few dozen bytes per logout,
//! until the next start).

/// Offsets are `u32`: a shard holds at most 4 GiB of names, far beyond any store.
#[derive(Debug, Default)]
pub(super) struct Arena {
    bytes: Vec<u8>,
}

/// A stored key: the name, and the interned workspace it belongs to (user cutoffs).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub(super) struct Key<'a> {
    pub(super) workspace: Option<u32>,
    pub(super) name: &'a [u8],
}

/// A preserved session as stored: the token's `exp` and the session id.
#[derive(Debug, Clone, Copy)]
pub(super) struct PreservedRef<'a> {
    pub(super) expires_at: f64,
    pub(super) session_id: &'a [u8],
}

// === impl Arena ===

impl Arena {
    /// Appends `key`: its name length-prefixed, then its workspace id when it has one.
    pub(super) fn push_key(&mut self, key: &Key<'_>) -> u32 {
        let at = self.offset();
        self.push_text(key.name);
        if let Some(workspace) = key.workspace {
            self.bytes.extend_from_slice(&workspace.to_le_bytes());
        }
        at
    }

    /// The key at `at`; `scoped` says whether it carries a workspace id.
    pub(super) fn key(&self, at: u32, scoped: bool) -> Key<'_> {
        let (name, end) = self.text(at as usize);
        let workspace = scoped.then(|| u32::from_le_bytes(self.array(end)));
        Key { workspace, name }
    }

    /// Appends a preserved session: its expiry, then its id length-prefixed.
    pub(super) fn push_preserved(&mut self, expires_at: f64, session_id: &[u8]) -> u32 {
        let at = self.offset();
        self.bytes.extend_from_slice(&expires_at.to_le_bytes());
        self.push_text(session_id);
        at
    }

    pub(super) fn preserved(&self, at: u32) -> PreservedRef<'_> {
        let at = at as usize;
        let expires_at = f64::from_le_bytes(self.array(at));
        let (session_id, _) = self.text(at + 8);
        PreservedRef {
            expires_at,
            session_id,
        }
    }

    /// Bytes held, for the tests' accounting.
    #[cfg(test)]
    pub(super) fn len(&self) -> usize {
        self.bytes.len()
    }

    /// Gives back what growing by doubling reserved beyond the end.
    pub(super) fn shrink_to_fit(&mut self) {
        self.bytes.shrink_to_fit();
    }

    fn offset(&self) -> u32 {
        u32::try_from(self.bytes.len())
            .ok()
            .filter(|at| *at < super::table::FIRST_SENTINEL)
            .expect("a shard's arena stays under 4 GiB: memory runs out long before")
    }

    /// A LEB128 length, then the bytes: names are short, so the prefix is one byte.
    fn push_text(&mut self, text: &[u8]) {
        let mut len = text.len();
        while len >= 0x80 {
            self.bytes.push((len as u8) | 0x80);
            len >>= 7;
        }
        self.bytes.push(len as u8);
        self.bytes.extend_from_slice(text);
    }

    /// The length-prefixed bytes at `at`, and the offset just past them.
    fn text(&self, mut at: usize) -> (&[u8], usize) {
        let (mut len, mut shift) = (0usize, 0);
        loop {
            let byte = self.bytes[at];
            at += 1;
            len |= usize::from(byte & 0x7f) << shift;
            if byte < 0x80 {
                break;
            }
            shift += 7;
        }
        (&self.bytes[at..at + len], at + len)
    }

    fn array<const N: usize>(&self, at: usize) -> [u8; N] {
        self.bytes[at..at + N]
            .try_into()
            .expect("a slice of N bytes is an [u8; N]")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_and_sessions_read_back_as_written() {
        let mut arena = Arena::default();
        let long = "x".repeat(300);
        let plain = Key {
            workspace: None,
            name: b"acme",
        };
        let scoped = Key {
            workspace: Some(0x0102_0304),
            name: long.as_bytes(),
        };
        let (a, b) = (arena.push_key(&plain), arena.push_key(&scoped));
        let p = arena.push_preserved(1.5, b"jti:admin");
        assert_eq!(arena.key(a, false), plain);
        assert_eq!(arena.key(b, true), scoped);
        let preserved = arena.preserved(p);
        assert_eq!(preserved.expires_at, 1.5);
        assert_eq!(preserved.session_id, b"jti:admin");
        // 1-byte prefix for "acme", 2 bytes for 300, 4 for the workspace id.
        assert_eq!(arena.len(), 5 + 302 + 4 + 8 + 10);
    }
}

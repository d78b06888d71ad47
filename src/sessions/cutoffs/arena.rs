//! The bytes of one shard: keys and preserved sessions, each written once, one after the
//! other, in chunks of 64 KiB.
//!
//! Chunks instead of a heap allocation per name save the allocator's per-block overhead
//! and the 16-byte `Box<str>` header (part of the 421 -> ~70 bytes per cutoff of issue 15);
//! chunks instead of one growing buffer leave no freed copies behind while a load grows
//! it. Cutoffs are never deleted, only replaced by higher ranks, so nothing here is ever
//! freed: a replaced preserved session stays behind (a few dozen bytes per logout, until
//! the next start).

/// Bytes per chunk; a larger item gets a chunk of its own.
const CHUNK: usize = 1 << 16;

/// Offsets are `u32`: the chunk number, then the position in it. A shard holds at most
/// 65,535 chunks (4 GiB), far beyond any store.
#[derive(Debug, Default)]
pub(super) struct Arena {
    chunks: Vec<Vec<u8>>,
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
        let size = 10 + key.name.len() + 4;
        let (at, bytes) = self.room(size);
        push_text(bytes, key.name);
        if let Some(workspace) = key.workspace {
            bytes.extend_from_slice(&workspace.to_le_bytes());
        }
        at
    }

    /// The key at `at`; `scoped` says whether it carries a workspace id.
    pub(super) fn key(&self, at: u32, scoped: bool) -> Key<'_> {
        let (name, rest) = text(self.at(at));
        let workspace = scoped.then(|| u32::from_le_bytes(array(rest)));
        Key { workspace, name }
    }

    /// Appends a preserved session: its expiry, then its id length-prefixed.
    pub(super) fn push_preserved(&mut self, expires_at: f64, session_id: &[u8]) -> u32 {
        let (at, bytes) = self.room(8 + 10 + session_id.len());
        bytes.extend_from_slice(&expires_at.to_le_bytes());
        push_text(bytes, session_id);
        at
    }

    pub(super) fn preserved(&self, at: u32) -> PreservedRef<'_> {
        let bytes = self.at(at);
        let expires_at = f64::from_le_bytes(array(bytes));
        let (session_id, _) = text(&bytes[8..]);
        PreservedRef {
            expires_at,
            session_id,
        }
    }

    /// Bytes held, for the tests' accounting.
    #[cfg(test)]
    pub(super) fn len(&self) -> usize {
        self.chunks.iter().map(Vec::len).sum()
    }

    /// The offset of the next item and the chunk to write it to, with room for `size`
    /// bytes (an upper bound) in it.
    fn room(&mut self, size: usize) -> (u32, &mut Vec<u8>) {
        // Positions stay under 64 KiB, also in a chunk of its own made larger.
        let full = self
            .chunks
            .last()
            .is_none_or(|last| last.len() >= CHUNK || last.capacity() - last.len() < size);
        if full {
            self.chunks.push(Vec::with_capacity(size.max(CHUNK)));
        }
        let chunk = self.chunks.len() - 1;
        let last = &mut self.chunks[chunk];
        let position = last.len();
        let at = u32::try_from(chunk << 16 | position)
            .ok()
            .filter(|at| *at < super::table::FIRST_SENTINEL && position < CHUNK)
            .expect("a shard's arena stays under 4 GiB: memory runs out long before");
        (at, last)
    }

    /// The bytes from `at` to the end of its chunk.
    fn at(&self, at: u32) -> &[u8] {
        let (chunk, position) = ((at >> 16) as usize, (at & 0xffff) as usize);
        &self.chunks[chunk][position..]
    }
}

/// A LEB128 length, then the bytes: names are short, so the prefix is one byte.
fn push_text(bytes: &mut Vec<u8>, text: &[u8]) {
    let mut len = text.len();
    while len >= 0x80 {
        bytes.push((len as u8) | 0x80);
        len >>= 7;
    }
    bytes.push(len as u8);
    bytes.extend_from_slice(text);
}

/// The length-prefixed bytes at the start of `bytes`, and what follows them.
fn text(bytes: &[u8]) -> (&[u8], &[u8]) {
    let (mut len, mut shift, mut at) = (0usize, 0, 0);
    loop {
        let byte = bytes[at];
        at += 1;
        len |= usize::from(byte & 0x7f) << shift;
        if byte < 0x80 {
            break;
        }
        shift += 7;
    }
    bytes[at..].split_at(len)
}

fn array<const N: usize>(bytes: &[u8]) -> [u8; N] {
    bytes[..N]
        .try_into()
        .expect("a slice of N bytes is an [u8; N]")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_and_sessions_read_back_as_written() {
        let mut arena = Arena::default();
        let long = "x".repeat(300);
        let huge = "y".repeat(100_000);
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
        // Beyond a chunk: in one of its own, and the next item in a new one.
        let big = Key {
            workspace: Some(7),
            name: huge.as_bytes(),
        };
        let (c, d) = (arena.push_key(&big), arena.push_key(&plain));
        assert_eq!((arena.key(c, true), arena.key(d, false)), (big, plain));
        assert_eq!((c >> 16, d >> 16), (1, 2));
        let preserved = arena.preserved(p);
        assert_eq!(preserved.expires_at, 1.5);
        assert_eq!(preserved.session_id, b"jti:admin");
        // 1-byte prefix for "acme", 2 bytes for 300, 4 for the workspace id.
        assert_eq!(arena.len(), 5 + 302 + 4 + 8 + 10 + 100_003 + 4 + 5);
    }
}

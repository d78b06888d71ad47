//! RESP2 replies read straight off a buffered socket, for the scans: a page's fields and
//! values are copied once, into the page's one buffer, with no allocation per field.
//!
//! redis-rs parses a reply into a `Value` tree (an allocation per element, through
//! combine's parser): three quarters of the gateway's CPU for a 1M + 1M load from Redis
//! (docs/perf/issue-15.md). Only the shapes a scan gets are read here: `+OK`, an error,
//! and an `HSCAN` page; anything else is an error, and the scan (and its resync) fails.

use std::io;
use std::ops::Range;

use tokio::io::{AsyncBufReadExt, AsyncRead, AsyncReadExt, BufReader};

/// The longest field or value taken: far beyond any record (a cutoff is a few hundred
/// bytes), far below what a broken or hostile server could make us allocate.
const MAX_ELEMENT: usize = 16 << 20;
/// The most elements taken in one page: `COUNT` is a hint Redis may exceed (a small hash
/// comes whole), never by this much.
const MAX_PAGE_ELEMENTS: usize = 1 << 24;
/// Elements room is made for ahead of them: `COUNT` (10,000) pairs, with a margin.
const RESERVED_ELEMENTS: usize = 1 << 15;
/// The longest first line of a reply read: a type byte and a number, or an error's
/// sentence.
const MAX_LINE: usize = 4096;

/// One `HSCAN` page: its fields and values one after the other in `bytes`.
#[derive(Debug, Default)]
pub(super) struct Page {
    bytes: Vec<u8>,
    /// Where each element is in `bytes`: field, value, field, value...
    elements: Vec<Range<usize>>,
}

/// A reply that is not what the command gets, or an error reply.
#[derive(Debug, thiserror::Error)]
pub(super) enum ReplyError {
    /// The server's own error reply (`-WRONGPASS ...`); it never repeats a password.
    #[error("{0}")]
    Server(String),
    #[error("unexpected reply: {0}")]
    Unexpected(&'static str),
    #[error(transparent)]
    Io(#[from] io::Error),
}

impl From<ReplyError> for crate::store::StoreError {
    fn from(error: ReplyError) -> Self {
        Self::RedisScan(error.to_string())
    }
}

/// The first line of a reply: its type byte and the rest of the line.
struct Head<'a> {
    kind: u8,
    text: &'a [u8],
}

// === impl Page ===

impl Page {
    /// The (field, value) pairs of the page.
    pub(super) fn pairs(&self) -> impl Iterator<Item = (&[u8], &[u8])> {
        self.elements
            .chunks_exact(2)
            .map(|pair| (&self.bytes[pair[0].clone()], &self.bytes[pair[1].clone()]))
    }

    pub(super) fn len(&self) -> usize {
        self.elements.len() / 2
    }

    fn clear(&mut self) {
        self.bytes.clear();
        self.elements.clear();
    }
}

/// Reads a `+OK` (or any simple string): what `AUTH` and `SELECT` answer.
pub(super) async fn ok<R: AsyncRead + Unpin>(
    reader: &mut BufReader<R>,
    line: &mut Vec<u8>,
) -> Result<(), ReplyError> {
    match head(reader, line).await?.kind {
        b'+' => Ok(()),
        _ => Err(ReplyError::Unexpected("not a simple string")),
    }
}

/// Reads an `HSCAN` reply into `page` (cleared first); returns the next cursor.
pub(super) async fn hscan_page<R: AsyncRead + Unpin>(
    reader: &mut BufReader<R>,
    line: &mut Vec<u8>,
    page: &mut Page,
) -> Result<u64, ReplyError> {
    page.clear();
    if array_len(head(reader, line).await?)? != 2 {
        return Err(ReplyError::Unexpected("a scan reply is a pair"));
    }
    let cursor = bulk(reader, line, &mut page.bytes).await?;
    let cursor = std::str::from_utf8(&page.bytes[cursor]).ok();
    let cursor = cursor.and_then(|c| c.parse().ok());
    let cursor = cursor.ok_or(ReplyError::Unexpected("the cursor is not a number"))?;
    page.bytes.clear();
    let elements = array_len(head(reader, line).await?)?;
    if elements % 2 != 0 || elements > MAX_PAGE_ELEMENTS {
        return Err(ReplyError::Unexpected(
            "a page holds fields and their values",
        ));
    }
    // Room for what a page of ours holds at most, not for what a reply announces: a
    // server's count alone never makes us allocate.
    page.elements.reserve(elements.min(RESERVED_ELEMENTS));
    for _ in 0..elements {
        let element = bulk(reader, line, &mut page.bytes).await?;
        page.elements.push(element);
    }
    Ok(cursor)
}

/// Appends the next bulk string's bytes to `out`; returns where they are in it. Taken
/// from the reader's buffer when it is all there (nearly always: one system call fills
/// it with hundreds of elements), else read piece by piece.
async fn bulk<R: AsyncRead + Unpin>(
    reader: &mut BufReader<R>,
    line: &mut Vec<u8>,
    out: &mut Vec<u8>,
) -> Result<Range<usize>, ReplyError> {
    let start = out.len();
    if let Some(taken) = buffered_bulk(reader.buffer(), out)? {
        reader.consume(taken);
        return Ok(start..out.len());
    }
    let len = bulk_len(head(reader, line).await?)?;
    out.resize(start + len + 2, 0);
    reader.read_exact(&mut out[start..]).await?;
    if !out.ends_with(b"\r\n") {
        return Err(ReplyError::Unexpected("a bulk string runs past its length"));
    }
    out.truncate(start + len);
    Ok(start..out.len())
}

/// A whole bulk string at the start of `buffer`, appended to `out`: how many bytes of
/// `buffer` it took, or `None` when it is not all there yet.
fn buffered_bulk(buffer: &[u8], out: &mut Vec<u8>) -> Result<Option<usize>, ReplyError> {
    let Some(end) = buffer.iter().position(|&b| b == b'\n') else {
        return Ok(None);
    };
    let len = bulk_len(parse_head(&buffer[..=end])?)?;
    let body = end + 1;
    let Some(rest) = buffer.get(body..body + len + 2) else {
        return Ok(None);
    };
    if !rest.ends_with(b"\r\n") {
        return Err(ReplyError::Unexpected("a bulk string runs past its length"));
    }
    out.extend_from_slice(&rest[..len]);
    Ok(Some(body + len + 2))
}

/// Reads the first line of a reply into `line`. An error reply is returned as the error.
async fn head<'l, R: AsyncRead + Unpin>(
    reader: &mut BufReader<R>,
    line: &'l mut Vec<u8>,
) -> Result<Head<'l>, ReplyError> {
    line.clear();
    // A line is a type byte and a number or a short message: a longer one is not RESP.
    let mut limited = (&mut *reader).take(MAX_LINE as u64);
    limited.read_until(b'\n', line).await?;
    if !line.ends_with(b"\n") {
        return Err(match line.is_empty() {
            true => io::Error::from(io::ErrorKind::UnexpectedEof).into(),
            false => ReplyError::Unexpected("a line without its end"),
        });
    }
    parse_head(line)
}

fn parse_head(line: &[u8]) -> Result<Head<'_>, ReplyError> {
    let text = line
        .strip_suffix(b"\r\n")
        .ok_or(ReplyError::Unexpected("a line not ended by CRLF"))?;
    let (&kind, text) = text
        .split_first()
        .ok_or(ReplyError::Unexpected("an empty line"))?;
    if kind == b'-' {
        return Err(ReplyError::Server(
            String::from_utf8_lossy(text).into_owned(),
        ));
    }
    Ok(Head { kind, text })
}

fn array_len(head: Head<'_>) -> Result<usize, ReplyError> {
    match head.kind {
        b'*' => length(head.text, usize::MAX),
        _ => Err(ReplyError::Unexpected("not an array")),
    }
}

fn bulk_len(head: Head<'_>) -> Result<usize, ReplyError> {
    match head.kind {
        b'$' => length(head.text, MAX_ELEMENT),
        _ => Err(ReplyError::Unexpected("not a bulk string")),
    }
}

/// A length of at most `max`; a nil (`-1`) is refused too: a scan never gets one.
fn length(text: &[u8], max: usize) -> Result<usize, ReplyError> {
    let digits = !text.is_empty() && text.len() <= 10 && text.iter().all(u8::is_ascii_digit);
    let len = digits.then(|| text.iter().fold(0, |n, d| n * 10 + usize::from(d - b'0')));
    len.filter(|len| *len <= max)
        .ok_or(ReplyError::Unexpected("a length out of range"))
}

#[cfg(test)]
mod tests {
    use super::*;

    async fn page_of(
        reply: &[u8],
        capacity: usize,
    ) -> Result<(u64, Vec<(Vec<u8>, Vec<u8>)>), ReplyError> {
        let mut reader = BufReader::with_capacity(capacity, reply);
        let (mut line, mut page) = (Vec::new(), Page::default());
        let cursor = hscan_page(&mut reader, &mut line, &mut page).await?;
        let pairs = page
            .pairs()
            .map(|(f, v)| (f.to_vec(), v.to_vec()))
            .collect();
        Ok((cursor, pairs))
    }

    fn reply(cursor: &str, elements: &[&[u8]]) -> Vec<u8> {
        let head = format!(
            "*2\r\n${}\r\n{cursor}\r\n*{}\r\n",
            cursor.len(),
            elements.len()
        );
        let mut out = head.into_bytes();
        for element in elements {
            out.extend_from_slice(format!("${}\r\n", element.len()).as_bytes());
            out.extend_from_slice(element);
            out.extend_from_slice(b"\r\n");
        }
        out
    }

    #[tokio::test]
    async fn a_page_reads_whole_whatever_the_buffer_size() {
        let long = vec![b'x'; 5000];
        let elements: [&[u8]; 6] = [b"acme", b"{\"v\":1}", b"", b"\r\n$3\r\n", b"b", &long];
        let bytes = reply("1234", &elements);
        // 1: every element straddles a refill; 7: some do; the default: none does.
        for capacity in [1, 7, 8192] {
            let (cursor, pairs) = page_of(&bytes, capacity).await.unwrap();
            assert_eq!(cursor, 1234, "buffer {capacity}");
            let flat: Vec<&[u8]> = pairs.iter().flat_map(|(f, v)| [&f[..], &v[..]]).collect();
            assert_eq!(flat, elements, "buffer {capacity}");
        }
        let (cursor, pairs) = page_of(&reply("0", &[]), 8192).await.unwrap();
        assert_eq!((cursor, pairs.len()), (0, 0));
    }

    #[tokio::test]
    async fn malformed_or_hostile_replies_are_errors() {
        let good = reply("0", &[b"f", b"v"]);
        let cases: Vec<(&str, Vec<u8>)> = vec![
            ("truncated", good[..good.len() - 3].to_vec()),
            ("empty", Vec::new()),
            (
                "error reply",
                b"-WRONGTYPE Operation against a key\r\n".to_vec(),
            ),
            ("not a pair", b"*3\r\n".to_vec()),
            (
                "odd elements",
                b"*2\r\n$1\r\n0\r\n*1\r\n$1\r\nf\r\n".to_vec(),
            ),
            ("cursor not a number", reply("x1", &[])),
            (
                "nil bulk",
                b"*2\r\n$1\r\n0\r\n*2\r\n$-1\r\n$1\r\nv\r\n".to_vec(),
            ),
            (
                "huge bulk",
                b"*2\r\n$1\r\n0\r\n*2\r\n$99999999999\r\n".to_vec(),
            ),
            (
                "over the element limit",
                format!("*2\r\n$1\r\n0\r\n*2\r\n${}\r\n", MAX_ELEMENT + 1).into_bytes(),
            ),
            (
                "huge page",
                format!("*2\r\n$1\r\n0\r\n*{}\r\n", MAX_PAGE_ELEMENTS + 2).into_bytes(),
            ),
            (
                "length lies",
                b"*2\r\n$1\r\n0\r\n*2\r\n$1\r\nff\r\n$1\r\nv\r\n".to_vec(),
            ),
            ("bare LF", b"*2\n".to_vec()),
            ("integer for bulk", b"*2\r\n:0\r\n*0\r\n".to_vec()),
            ("endless line", vec![b'+'; MAX_LINE * 2]),
        ];
        for (name, bytes) in cases {
            for capacity in [3, 8192] {
                let result = page_of(&bytes, capacity).await;
                assert!(
                    result.is_err(),
                    "{name} (buffer {capacity}) read as {result:?}"
                );
            }
        }
        let result = page_of(b"-WRONGTYPE Operation\r\n", 64).await;
        assert!(matches!(result, Err(ReplyError::Server(m)) if m == "WRONGTYPE Operation"));
    }

    #[tokio::test]
    async fn an_announced_count_alone_reserves_no_more_than_a_page_of_ours() {
        let announced = format!("*2\r\n$1\r\n0\r\n*{}\r\n", MAX_PAGE_ELEMENTS);
        let mut reader = BufReader::new(announced.as_bytes());
        let (mut line, mut page) = (Vec::new(), Page::default());
        let result = hscan_page(&mut reader, &mut line, &mut page).await;
        assert!(result.is_err(), "no element followed");
        assert!(page.elements.capacity() <= RESERVED_ELEMENTS * 2);
    }

    #[tokio::test]
    async fn ok_takes_a_simple_string_and_nothing_else() {
        let mut line = Vec::new();
        let mut reader = BufReader::new(&b"+OK\r\n:1\r\n-WRONGPASS invalid\r\n"[..]);
        ok(&mut reader, &mut line).await.unwrap();
        assert!(matches!(
            ok(&mut reader, &mut line).await,
            Err(ReplyError::Unexpected(_))
        ));
        let refused = ok(&mut reader, &mut line).await;
        assert!(matches!(refused, Err(ReplyError::Server(m)) if m == "WRONGPASS invalid"));
    }
}

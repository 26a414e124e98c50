//! A guard in front of the multipart parser. The parser buffers a part's headers (and the
//! preamble before the first boundary) until it finds their end, with no limit of its own, so a
//! client could make it hold hundreds of megabytes. [`HeadCapped`] watches the body as it passes
//! and fails it once the preamble or a part's headers run past [`MAX_PART_HEAD`] bytes; part
//! contents pass unlimited (their handlers cap them).

use bytes::Bytes;
use futures_util::Stream;
use memchr::memmem;
use std::pin::Pin;
use std::task::{Context, Poll};

/// Longest preamble or part-header block accepted (OpenAI's forms have a few short headers).
pub const MAX_PART_HEAD: usize = 16 << 10;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Seek {
    /// The preamble: looking for the first `--boundary`.
    First,
    /// A part's headers: looking for the blank line that ends them.
    HeadEnd,
    /// A part's contents: looking for `\r\n--boundary`.
    Delimiter,
}

/// Finds, across chunk edges, the delimiters of a multipart body and measures what lies in the
/// parts' heads.
pub struct HeadScanner {
    first: Vec<u8>,
    delimiter: Vec<u8>,
    seek: Seek,
    /// Bytes seen since the current seek began (for the head limit).
    seen: usize,
    /// The last bytes of the previous chunk, which may begin a match (at most pattern - 1).
    carry: Vec<u8>,
}

const HEAD_END: &[u8] = b"\r\n\r\n";

impl HeadScanner {
    pub fn new(boundary: &str) -> Self {
        Self {
            first: format!("--{boundary}").into_bytes(),
            delimiter: format!("\r\n--{boundary}").into_bytes(),
            seek: Seek::First,
            seen: 0,
            carry: Vec::new(),
        }
    }

    fn pattern(&self) -> &[u8] {
        match self.seek {
            Seek::First => &self.first,
            Seek::HeadEnd => HEAD_END,
            Seek::Delimiter => &self.delimiter,
        }
    }

    fn advance(&mut self) {
        self.seek = match self.seek {
            Seek::First | Seek::Delimiter => Seek::HeadEnd,
            Seek::HeadEnd => Seek::Delimiter,
        };
        self.seen = 0;
        self.carry.clear();
    }

    /// Scans the next chunk; an error once a head passes the limit.
    pub fn feed(&mut self, mut chunk: &[u8]) -> Result<(), String> {
        while !chunk.is_empty() {
            let pattern = self.pattern().to_vec();
            // A match that starts in the carried bytes and ends in this chunk.
            let take = chunk.len().min(pattern.len() - 1);
            let mut joined = std::mem::take(&mut self.carry);
            let carried = joined.len();
            joined.extend_from_slice(&chunk[..take]);
            let consumed = match memmem::find(&joined, &pattern) {
                Some(at) => Some(at + pattern.len() - carried),
                None => memmem::find(chunk, &pattern).map(|at| at + pattern.len()),
            };
            match consumed {
                Some(n) => {
                    self.check(n)?;
                    chunk = &chunk[n..];
                    self.advance();
                }
                None => {
                    self.check(chunk.len())?;
                    // Keep the tail that could still begin a match.
                    let keep = pattern.len() - 1;
                    if chunk.len() >= keep {
                        joined.clear();
                        joined.extend_from_slice(&chunk[chunk.len() - keep..]);
                    } else {
                        let excess = joined.len().saturating_sub(keep);
                        joined.drain(..excess);
                    }
                    // A short chunk is wholly in `joined` (after the carry): keep its end.
                    self.carry = joined;
                    return Ok(());
                }
            }
        }
        Ok(())
    }

    fn check(&mut self, n: usize) -> Result<(), String> {
        self.seen += n;
        if self.seek != Seek::Delimiter && self.seen > MAX_PART_HEAD + self.pattern().len() {
            let what = match self.seek {
                Seek::First => "The multipart preamble before the first boundary",
                _ => "A multipart part's headers",
            };
            return Err(format!(
                "{what} are longer than the {MAX_PART_HEAD} bytes allowed."
            ));
        }
        Ok(())
    }
}

/// The `boundary` parameter of a `multipart/form-data` content type.
pub fn boundary(content_type: &str) -> Option<String> {
    content_type.split(';').skip(1).find_map(|param| {
        let (key, value) = param.split_once('=')?;
        key.trim()
            .eq_ignore_ascii_case("boundary")
            .then(|| value.trim().trim_matches('"').to_owned())
            .filter(|b| !b.is_empty())
    })
}

/// A body stream passed through a [`HeadScanner`].
pub struct HeadCapped<S> {
    inner: S,
    scanner: HeadScanner,
    failed: bool,
}

impl<S> HeadCapped<S> {
    pub fn new(inner: S, boundary: &str) -> Self {
        Self {
            inner,
            scanner: HeadScanner::new(boundary),
            failed: false,
        }
    }
}

impl<S, E> Stream for HeadCapped<S>
where
    S: Stream<Item = Result<Bytes, E>> + Unpin,
    E: Into<axum::BoxError>,
{
    type Item = Result<Bytes, axum::BoxError>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        if self.failed {
            return Poll::Ready(None);
        }
        match Pin::new(&mut self.inner).poll_next(cx) {
            Poll::Ready(Some(Ok(chunk))) => match self.scanner.feed(&chunk) {
                Ok(()) => Poll::Ready(Some(Ok(chunk))),
                Err(message) => {
                    self.failed = true;
                    Poll::Ready(Some(Err(message.into())))
                }
            },
            Poll::Ready(Some(Err(e))) => Poll::Ready(Some(Err(e.into()))),
            Poll::Ready(None) => Poll::Ready(None),
            Poll::Pending => Poll::Pending,
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn body(head_len: usize) -> Vec<u8> {
        let mut b = b"--XyZ\r\nContent-Disposition: form-data; name=\"a\"\r\n".to_vec();
        b.extend(std::iter::repeat_n(b'h', head_len));
        b.extend_from_slice(b"\r\n\r\nvalue with --XyZ inside but no CRLF before it");
        b.extend(std::iter::repeat_n(b'v', 100_000));
        b.extend_from_slice(
            b"\r\n--XyZ\r\nContent-Disposition: form-data; name=\"b\"\r\n\r\nb\r\n--XyZ--\r\n",
        );
        b
    }

    fn scan(bytes: &[u8], piece: usize) -> Result<(), String> {
        let mut s = HeadScanner::new("XyZ");
        for c in bytes.chunks(piece) {
            s.feed(c)?;
        }
        Ok(())
    }

    #[test]
    fn boundaries() {
        assert_eq!(
            boundary("multipart/form-data; boundary=abc").as_deref(),
            Some("abc")
        );
        assert_eq!(
            boundary("multipart/form-data;charset=utf-8; BOUNDARY=\"a b\"").as_deref(),
            Some("a b")
        );
        assert_eq!(boundary("multipart/form-data"), None);
    }

    #[test]
    fn ordinary_forms_pass_in_any_chunking() {
        let b = body(100);
        for piece in [1, 2, 3, 5, 7, 64, 4096, b.len()] {
            assert_eq!(scan(&b, piece), Ok(()), "piece {piece}");
        }
    }

    #[test]
    fn a_long_part_head_fails_in_any_chunking() {
        let b = body(MAX_PART_HEAD + 10);
        for piece in [1, 3, 7, 4096, b.len()] {
            let err = scan(&b, piece).unwrap_err();
            assert!(err.contains("headers"), "{err}");
        }
        // A head that never ends fails as soon as it passes the limit.
        let mut endless = b"--XyZ\r\n".to_vec();
        endless.extend(std::iter::repeat_n(b'h', MAX_PART_HEAD * 4));
        assert!(scan(&endless, 1000).is_err());
    }

    #[test]
    fn a_long_preamble_fails() {
        let mut b = vec![b'p'; MAX_PART_HEAD + 100];
        b.extend(body(10));
        assert!(scan(&b, 999).unwrap_err().contains("preamble"));
    }

    #[test]
    fn the_second_parts_head_is_measured_too() {
        let mut b =
            b"--XyZ\r\nContent-Disposition: form-data; name=\"a\"\r\n\r\nshort\r\n--XyZ\r\n"
                .to_vec();
        b.extend(std::iter::repeat_n(b'h', MAX_PART_HEAD + 10));
        b.extend_from_slice(b"\r\n\r\nx\r\n--XyZ--\r\n");
        assert!(scan(&b, 4096).is_err());
    }
}

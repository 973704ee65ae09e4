//! Replies from Redis, decoded incrementally from whatever bytes have arrived: a partial
//! reply, several replies, or a reply split at any byte.
//!
//! Contract: [`Decoder`] owns a read buffer; [`Decoder::feed`] appends what the socket gave,
//! [`Decoder::next`] yields the complete replies in order and `Ok(None)` while the next one
//! is incomplete. [`decode`] is the same parse over a caller's slice, returning the reply at
//! its front and the bytes it took (never more than the slice).
//!
//! Strictness: every line ends in exactly CR LF, a bulk body is followed by CR LF, integers
//! and lengths are decimal i64 without `+` (overflow refused), the only negative length is -1
//! (null). Any other byte stream is a [`RespError`] as soon as the bytes that prove it have
//! arrived; after one, the decoder is out of step with the stream, keeps no bytes, and
//! returns the same error from then on.
//!
//! Bounds ([`RespLimits`]): a bulk length, an array length and a nesting depth are refused
//! when their header line arrives; a reply is refused as soon as it is known to exceed
//! `max_reply` bytes on the wire, so the decoder never holds more than `max_reply` bytes of an
//! incomplete reply plus the complete replies not yet taken plus the last feed. A decoded
//! reply holds at most about 22 heap bytes per wire byte (an element takes at least 3 bytes
//! on the wire and 32 in memory, in a vector at most twice the size it needs; an array's
//! vector starts at 64 elements at most, whatever its header declares). When the buffer
//! empties, its capacity shrinks to [`IDLE_CAPACITY`].
//!
//! Cost: the decoder remembers how far the parse of an incomplete reply got (the elements of
//! its open arrays, and how far the current line was searched for its end), so no byte is
//! scanned twice for a line end. Each call of [`Decoder::next`] looks at the bytes that
//! arrived since the previous call, plus at most 22 bytes again (the header line of a bulk
//! string whose body is still arriving); a bulk body is copied once when complete; moving the
//! unconsumed bytes to the buffer's front costs at most as many bytes as were consumed. In all,
//! [`Decoder::work`] stays within 3 x the bytes fed + 23 x the calls, so a 100 MB reply
//! arriving one byte at a time costs O(100 MB). [`decode`] keeps no progress: calling it again
//! on a longer buffer rescans it from the start.

use super::resp::{Reply, RespError, RespLimits};

/// The longest integer or length: a sign and 19 digits.
const MAX_NUMBER: usize = 20;

/// The capacity an empty read buffer keeps; above it, an empty buffer is shrunk.
pub(crate) const IDLE_CAPACITY: usize = 16 * 1024;

/// The smallest an array element can be on the wire (`+\r\n`), to refuse at its header an
/// array that cannot fit in `max_reply`.
const MIN_ELEMENT: usize = 3;

/// Decodes the reply at the front of `buf`: `Ok(Some((reply, consumed)))` when it is
/// complete, `Ok(None)` when `buf` holds only a prefix of one (within the limits).
pub(crate) fn decode(buf: &[u8], limits: &RespLimits) -> Result<Option<(Reply, usize)>, RespError> {
    parse(buf, limits, &mut Progress::default())
}

/// A read buffer and the replies decoded from it.
#[derive(Debug)]
pub(crate) struct Decoder {
    limits: RespLimits,
    buf: Vec<u8>,
    /// The first byte of `buf` not yet taken by a reply.
    start: usize,
    /// The parse of the reply at `start`, when it is incomplete.
    progress: Progress,
    /// Set by the first error, returned from then on.
    failed: Option<RespError>,
    /// Bytes moved to the buffer's front.
    moved: u64,
}

impl Decoder {
    /// An empty decoder that accepts what `limits` allow.
    pub(crate) fn new(limits: RespLimits) -> Decoder {
        Decoder {
            limits,
            buf: Vec::new(),
            start: 0,
            progress: Progress::default(),
            failed: None,
            moved: 0,
        }
    }

    /// Appends bytes read from the connection (ignored after an error).
    pub(crate) fn feed(&mut self, bytes: &[u8]) {
        if self.failed.is_some() {
            return;
        }
        // Moving the unconsumed bytes only once at least as many were consumed keeps the
        // moves within the bytes consumed.
        if self.start > 0 && self.start >= self.buf.len() - self.start {
            self.moved += (self.buf.len() - self.start) as u64;
            self.buf.drain(..self.start);
            self.start = 0;
        }
        self.buf.extend_from_slice(bytes);
    }

    /// The next complete reply, `Ok(None)` while it is still arriving.
    pub(crate) fn next(&mut self) -> Result<Option<Reply>, RespError> {
        if let Some(error) = self.failed {
            return Err(error);
        }
        match parse(&self.buf[self.start..], &self.limits, &mut self.progress) {
            Ok(Some((reply, used))) => {
                self.start += used;
                self.progress.restart();
                if self.start == self.buf.len() {
                    self.buf.clear();
                    self.start = 0;
                    self.buf.shrink_to(IDLE_CAPACITY);
                }
                Ok(Some(reply))
            }
            Ok(None) => Ok(None),
            Err(error) => {
                self.failed = Some(error);
                self.buf = Vec::new();
                self.start = 0;
                self.progress.restart();
                Err(error)
            }
        }
    }

    /// The bytes held that no reply has taken yet.
    pub(crate) fn buffered(&self) -> usize {
        self.buf.len() - self.start
    }

    /// The heap bytes the decoder holds: its buffer, and the elements of an incomplete
    /// reply's open arrays (not counting what those elements own).
    pub(crate) fn heap_bytes(&self) -> usize {
        self.buf.capacity()
            + self
                .progress
                .open
                .iter()
                .map(|open| open.items.capacity() * std::mem::size_of::<Reply>())
                .sum::<usize>()
    }

    /// The work done so far, in bytes looked at, copied or moved (the cost contract in the
    /// module header is stated in it).
    pub(crate) fn work(&self) -> u64 {
        self.progress.examined + self.moved
    }
}

/// An array whose elements are still arriving.
#[derive(Debug)]
struct OpenArray {
    items: Vec<Reply>,
    len: usize,
}

/// How far the parse of the reply at the front of a buffer got; offsets are from the reply's
/// first byte.
#[derive(Debug, Default)]
struct Progress {
    /// Where the next element starts: every element before it is in `open`.
    at: usize,
    /// Where the search for the end of the line at `at` goes on (0: from its start).
    searched: usize,
    /// The arrays begun and not complete, outermost first.
    open: Vec<OpenArray>,
    /// Bytes looked at or copied, over every reply (never restarted).
    examined: u64,
}

impl Progress {
    /// Ready for the next reply.
    fn restart(&mut self) {
        self.at = 0;
        self.searched = 0;
        self.open.clear();
    }
}

/// Goes on with the parse of the reply at the front of `buf` from where `progress` stands.
fn parse(
    buf: &[u8],
    limits: &RespLimits,
    progress: &mut Progress,
) -> Result<Option<(Reply, usize)>, RespError> {
    loop {
        let at = progress.at;
        let Some(&kind) = buf.get(at) else {
            return Ok(None);
        };
        let numeric = match kind {
            b'+' | b'-' => false,
            b':' | b'$' | b'*' => true,
            other => return Err(RespError::UnknownType(other)),
        };
        let Some(cr) = line_end(buf, numeric, limits.max_reply, progress)? else {
            return Ok(None);
        };
        let line = &buf[at + 1..cr];
        let mut end = cr + 2;
        let element = match kind {
            b'+' | b'-' => {
                progress.examined += line.len() as u64;
                if kind == b'+' {
                    Reply::Simple(line.to_vec())
                } else {
                    Reply::Error(line.to_vec())
                }
            }
            b':' => Reply::Integer(number(line, progress)?),
            b'$' => match length(number(line, progress)?, limits.max_bulk, bulk_too_long)? {
                None => Reply::Bulk(None),
                Some(len) => {
                    end = end
                        .checked_add(len)
                        .and_then(|end| end.checked_add(2))
                        .filter(|&end| end <= limits.max_reply)
                        .ok_or(RespError::ReplyTooLarge {
                            max: limits.max_reply,
                        })?;
                    if end > buf.len() {
                        // The header is found again at once next time (`searched` = `cr`).
                        return Ok(None);
                    }
                    progress.examined += (len + 2) as u64;
                    if &buf[end - 2..end] != b"\r\n" {
                        return Err(RespError::BadLineEnd);
                    }
                    Reply::bulk(&buf[cr + 2..end - 2])
                }
            },
            _ => {
                let declared = number(line, progress)?;
                match length(declared, limits.max_array, array_too_long)? {
                    None => Reply::Array(None),
                    Some(len) => {
                        if progress.open.len() >= limits.max_depth {
                            return Err(RespError::TooDeep {
                                max: limits.max_depth,
                            });
                        }
                        if len == 0 {
                            Reply::Array(Some(Vec::new()))
                        } else {
                            let fits = len
                                .checked_mul(MIN_ELEMENT)
                                .and_then(|size| size.checked_add(end))
                                .is_some_and(|size| size <= limits.max_reply);
                            if !fits {
                                return Err(RespError::ReplyTooLarge {
                                    max: limits.max_reply,
                                });
                            }
                            progress.open.push(OpenArray {
                                items: Vec::with_capacity(len.min(64)),
                                len,
                            });
                            progress.at = end;
                            progress.searched = 0;
                            continue;
                        }
                    }
                }
            }
        };
        if end > limits.max_reply {
            return Err(RespError::ReplyTooLarge {
                max: limits.max_reply,
            });
        }
        progress.at = end;
        progress.searched = 0;
        // The element completes the arrays it fills, innermost first.
        let mut element = element;
        loop {
            let Some(mut top) = progress.open.pop() else {
                return Ok(Some((element, end)));
            };
            top.items.push(element);
            if top.items.len() < top.len {
                progress.open.push(top);
                break;
            }
            element = Reply::Array(Some(top.items));
        }
    }
}

/// The position of the CR ending the line that starts at `progress.at` (its first byte is
/// the type), or `None` while it has not fully arrived; the search goes on next time from
/// where it stopped. The search looks only as far as the line may reach (a number's 20
/// bytes, the reply's `max_reply`), so a refusal comes at the same byte however the stream
/// was split.
fn line_end(
    buf: &[u8],
    numeric: bool,
    max_reply: usize,
    progress: &mut Progress,
) -> Result<Option<usize>, RespError> {
    let at = progress.at;
    // The CR must come before `limit`: a line ends with CR LF within `max_reply`, and a
    // number's text takes at most MAX_NUMBER bytes.
    let reply_limit = max_reply.saturating_sub(1);
    let number_limit = at + 1 + MAX_NUMBER + 1;
    let limit = if numeric {
        number_limit.min(reply_limit)
    } else {
        reply_limit
    };
    let from = progress.searched.max(at + 1);
    let window = buf.get(from..buf.len().min(limit)).unwrap_or_default();
    let Some(offset) = window.iter().position(|&b| b == b'\r' || b == b'\n') else {
        progress.examined += window.len() as u64;
        progress.searched = from + window.len();
        if buf.len() < limit {
            return Ok(None);
        }
        return Err(if numeric && number_limit <= reply_limit {
            RespError::BadInteger
        } else {
            RespError::ReplyTooLarge { max: max_reply }
        });
    };
    progress.examined += offset as u64 + 1;
    let cr = from + offset;
    if buf[cr] == b'\n' {
        return Err(RespError::BadLineEnd);
    }
    match buf.get(cr + 1) {
        None => {
            progress.searched = cr;
            Ok(None)
        }
        Some(b'\n') => {
            progress.searched = cr;
            Ok(Some(cr))
        }
        Some(_) => Err(RespError::BadLineEnd),
    }
}

/// A decimal i64: an optional `-` and 1 to 19 digits, within range.
fn number(text: &[u8], progress: &mut Progress) -> Result<i64, RespError> {
    progress.examined += text.len() as u64;
    let (negative, digits) = match text.split_first() {
        Some((b'-', rest)) => (true, rest),
        _ => (false, text),
    };
    if digits.is_empty() || digits.len() > MAX_NUMBER - 1 {
        return Err(RespError::BadInteger);
    }
    let mut n: i64 = 0;
    for &digit in digits {
        if !digit.is_ascii_digit() {
            return Err(RespError::BadInteger);
        }
        let digit = i64::from(digit - b'0');
        // Negative numbers are accumulated downwards, so i64::MIN is reached.
        n = n
            .checked_mul(10)
            .and_then(|n| {
                if negative {
                    n.checked_sub(digit)
                } else {
                    n.checked_add(digit)
                }
            })
            .ok_or(RespError::BadInteger)?;
    }
    Ok(n)
}

/// A declared length: `None` for -1 (null), refused below -1, and above `max` with
/// `too_long`.
fn length(
    declared: i64,
    max: usize,
    too_long: fn(i64, usize) -> RespError,
) -> Result<Option<usize>, RespError> {
    match declared {
        -1 => Ok(None),
        n if n < -1 => Err(RespError::BadLength(n)),
        n => match usize::try_from(n) {
            Ok(len) if len <= max => Ok(Some(len)),
            _ => Err(too_long(n, max)),
        },
    }
}

fn bulk_too_long(len: i64, max: usize) -> RespError {
    RespError::BulkTooLong { len, max }
}

fn array_too_long(len: i64, max: usize) -> RespError {
    RespError::ArrayTooLong { len, max }
}

#[cfg(test)]
mod tests;

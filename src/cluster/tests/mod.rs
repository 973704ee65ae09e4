//! Tests of the RESP2 codec as a whole: the byte soup (random replies split at random points,
//! random garbage), a differential run against `redis-protocol`, and a real `redis-server`;
//! and of the node scripts on one.
//! What they share: a reference encoder written apart from the codec, random replies, and
//! the decoding of a whole stream at once and in pieces.

mod admin_scripts;
mod oracle;
mod redis_server;
mod scripts;
mod soup;

use super::resp::{Reply, RespError, RespLimits};
use super::resp_decode::{decode, Decoder};
pub(super) use crate::fuzzing::resp::encode_reply;
use crate::testkit::Rng;

/// Limits the soup stays within (its replies are far smaller).
const LIMITS: RespLimits = RespLimits {
    max_bulk: 1 << 16,
    max_reply: 1 << 20,
    max_array: 64,
    max_depth: 6,
};

/// Up to `max` bytes, any of them when `binary`, else printable ASCII.
fn random_bytes(rng: &mut Rng, max: usize, binary: bool) -> Vec<u8> {
    let len = rng.below(max + 1);
    (0..len)
        .map(|_| {
            if binary {
                // Truncation to the low byte is the point.
                rng.next() as u8
            } else {
                b' ' + rng.below(95) as u8
            }
        })
        .collect()
}

/// A random reply, arrays nested at most `depth` deep. Simple strings and errors carry no
/// CR or LF; error texts are ASCII (as Redis's are, and as the oracle requires).
fn random_reply(rng: &mut Rng, depth: usize) -> Reply {
    match rng.below(if depth == 0 { 5 } else { 7 }) {
        0 => {
            let mut text = random_bytes(rng, 20, true);
            text.retain(|&b| b != b'\r' && b != b'\n');
            Reply::Simple(text)
        }
        1 => Reply::Error(random_bytes(rng, 30, false)),
        2 => Reply::Integer(match rng.below(4) {
            0 => i64::MIN,
            1 => i64::MAX,
            2 => rng.below(1000) as i64 - 500,
            _ => rng.next() as i64,
        }),
        3 if rng.one_in(6) => Reply::Bulk(None),
        3 | 4 => {
            let max = if rng.one_in(20) { 5000 } else { 40 };
            Reply::Bulk(Some(random_bytes(rng, max, true)))
        }
        _ if rng.one_in(8) => Reply::Array(None),
        _ => {
            let len = rng.below(6);
            Reply::Array(Some(
                (0..len).map(|_| random_reply(rng, depth - 1)).collect(),
            ))
        }
    }
}

/// What decoding a stream gives: the replies in order, then how it ends.
#[derive(Debug, PartialEq, Eq)]
struct Decoded {
    replies: Vec<Reply>,
    /// `Ok(n)`: no error, `n` bytes of an incomplete reply left over.
    end: Result<usize, RespError>,
}

/// Decodes `stream` with [`decode`] over the whole of it, reply after reply.
fn decode_whole(stream: &[u8], limits: &RespLimits) -> Decoded {
    let mut replies = Vec::new();
    let mut at = 0;
    loop {
        match decode(&stream[at..], limits) {
            Ok(Some((reply, used))) => {
                assert!(used > 0 && used <= stream.len() - at, "took {used}");
                // The reply is exactly the bytes it took.
                assert_eq!(
                    decode(&stream[at..at + used], limits),
                    Ok(Some((reply.clone(), used)))
                );
                replies.push(reply);
                at += used;
            }
            Ok(None) => {
                return Decoded {
                    replies,
                    end: Ok(stream.len() - at),
                }
            }
            Err(error) => {
                return Decoded {
                    replies,
                    end: Err(error),
                }
            }
        }
    }
}

/// Feeds `stream` to a [`Decoder`] in pieces of random sizes (1 byte to 1 KiB), taking every
/// reply after each piece.
fn decode_in_pieces(stream: &[u8], limits: &RespLimits, rng: &mut Rng) -> Decoded {
    let mut decoder = Decoder::new(*limits);
    let mut replies = Vec::new();
    let mut rest = stream;
    while !rest.is_empty() {
        let max = *rng.pick(&[1, 3, 16, 1024]);
        let (piece, tail) = rest.split_at((1 + rng.below(max)).min(rest.len()));
        rest = tail;
        decoder.feed(piece);
        loop {
            match decoder.next() {
                Ok(Some(reply)) => replies.push(reply),
                Ok(None) => break,
                Err(error) => {
                    return Decoded {
                        replies,
                        end: Err(error),
                    }
                }
            }
        }
        assert!(decoder.buffered() <= limits.max_reply + piece.len());
    }
    Decoded {
        replies,
        end: Ok(decoder.buffered()),
    }
}

/// Random garbage: bytes drawn mostly from RESP's own vocabulary, so that it often gets
/// some way into a reply before going wrong; or a valid stream with a few bytes changed.
fn garbage(rng: &mut Rng) -> Vec<u8> {
    const WORDS: [&[u8]; 16] = [
        b"+",
        b"-",
        b":",
        b"$",
        b"*",
        b"\r\n",
        b"\r",
        b"\n",
        b"-1",
        b"0",
        b"1",
        b"3",
        b"12",
        b"OK",
        b"\x00",
        b"99999999999999999999",
    ];
    if rng.chance(50) {
        let mut stream = Vec::new();
        for _ in 0..1 + rng.below(4) {
            encode_reply(&random_reply(rng, 4), &mut stream);
        }
        for _ in 0..1 + rng.below(3) {
            if stream.is_empty() {
                break;
            }
            let at = rng.below(stream.len());
            match rng.below(3) {
                0 => stream[at] = *rng.pick(b"+-:$*\r\n0123456789x"),
                1 => {
                    stream.remove(at);
                }
                _ => stream.insert(at, rng.next() as u8),
            }
        }
        return stream;
    }
    let mut stream = Vec::new();
    for _ in 0..rng.below(40) {
        if rng.one_in(8) {
            stream.push(rng.next() as u8);
        } else {
            let word = WORDS[rng.below(WORDS.len())];
            stream.extend_from_slice(word);
        }
    }
    stream
}

//! Fuzzes the RESP2 reply decoder, `resp_decode`, with bytes from Redis (or from whoever sits
//! between it and the gateway). The first byte picks the limits, the next three the sizes of
//! the pieces the rest is fed in.
//!
//! Checks: no panic; [`decode`] over the whole stream and a [`Decoder`] fed in pieces give
//! the same replies and end the same way (the same error, or the same bytes left over); a
//! reply never takes more than the input, and decodes alike from exactly the bytes it took;
//! every reply respects the limits, and encoded again decodes to itself; the decoder never
//! holds more than `max_reply` plus the last piece, and its work stays within the cost
//! contract (3 x the bytes + 23 x the calls).

use crate::cluster::resp::{Reply, RespError, RespLimits};
use crate::cluster::resp_decode::{decode, Decoder};

/// The limits the first byte picks from.
const LIMITS: [RespLimits; 3] = [
    RespLimits {
        max_bulk: 8,
        max_reply: 48,
        max_array: 3,
        max_depth: 2,
    },
    RespLimits {
        max_bulk: 1024,
        max_reply: 4096,
        max_array: 64,
        max_depth: 4,
    },
    RespLimits {
        max_bulk: 64 * 1024,
        max_reply: 64 * 1024,
        max_array: 1024,
        max_depth: 8,
    },
];

/// `reply` in RESP2, written plainly: the reference encoder, apart from the codec, that the
/// codec's tests also use.
pub(crate) fn encode_reply(reply: &Reply, out: &mut Vec<u8>) {
    match reply {
        Reply::Simple(text) | Reply::Error(text) => {
            out.push(if matches!(reply, Reply::Simple(_)) {
                b'+'
            } else {
                b'-'
            });
            out.extend_from_slice(text);
            out.extend_from_slice(b"\r\n");
        }
        Reply::Integer(n) => out.extend_from_slice(format!(":{n}\r\n").as_bytes()),
        Reply::Bulk(None) => out.extend_from_slice(b"$-1\r\n"),
        Reply::Bulk(Some(bytes)) => {
            out.extend_from_slice(format!("${}\r\n", bytes.len()).as_bytes());
            out.extend_from_slice(bytes);
            out.extend_from_slice(b"\r\n");
        }
        Reply::Array(None) => out.extend_from_slice(b"*-1\r\n"),
        Reply::Array(Some(items)) => {
            out.extend_from_slice(format!("*{}\r\n", items.len()).as_bytes());
            for item in items {
                encode_reply(item, out);
            }
        }
    }
}

/// Panics unless `reply` is within `limits` at `depth`.
fn check_limits(reply: &Reply, limits: &RespLimits, depth: usize) {
    match reply {
        Reply::Simple(text) | Reply::Error(text) => {
            assert!(!text.contains(&b'\r') && !text.contains(&b'\n'));
        }
        Reply::Bulk(Some(bytes)) => assert!(bytes.len() <= limits.max_bulk),
        Reply::Array(Some(items)) => {
            assert!(depth < limits.max_depth);
            assert!(items.len() <= limits.max_array);
            for item in items {
                check_limits(item, limits, depth + 1);
            }
        }
        _ => {}
    }
}

/// The replies of a stream in order, then its end: the error, or the bytes left over.
type Decoded = (Vec<Reply>, Result<usize, RespError>);

fn whole(stream: &[u8], limits: &RespLimits) -> Decoded {
    let mut replies = Vec::new();
    let mut at = 0;
    loop {
        match decode(&stream[at..], limits) {
            Ok(Some((reply, used))) => {
                assert!(used > 0 && used <= stream.len() - at);
                assert!(used <= limits.max_reply);
                let exact = decode(&stream[at..at + used], limits);
                assert_eq!(exact.as_ref().ok(), Some(&Some((reply.clone(), used))));
                check_limits(&reply, limits, 0);
                let mut again = Vec::new();
                encode_reply(&reply, &mut again);
                assert_eq!(
                    decode(&again, limits).ok(),
                    Some(Some((reply.clone(), again.len())))
                );
                replies.push(reply);
                at += used;
            }
            Ok(None) => return (replies, Ok(stream.len() - at)),
            Err(error) => return (replies, Err(error)),
        }
    }
}

/// Feeds `stream` in pieces of the given sizes (cycled; 0 means all the rest).
fn pieces(stream: &[u8], sizes: &[usize], limits: &RespLimits) -> Decoded {
    let mut decoder = Decoder::new(*limits);
    let mut replies = Vec::new();
    let mut calls = 0u64;
    let mut rest = stream;
    let mut sizes = sizes.iter().cycle();
    while !rest.is_empty() {
        let size = match sizes.next() {
            Some(&n) if n > 0 => n.min(rest.len()),
            _ => rest.len(),
        };
        let (piece, tail) = rest.split_at(size);
        rest = tail;
        decoder.feed(piece);
        loop {
            calls += 1;
            match decoder.next() {
                Ok(Some(reply)) => replies.push(reply),
                Ok(None) => break,
                Err(error) => return (replies, Err(error)),
            }
        }
        assert!(decoder.buffered() <= limits.max_reply + piece.len());
        assert!(decoder.work() <= 3 * stream.len() as u64 + 23 * calls);
    }
    (replies, Ok(decoder.buffered()))
}

/// Runs one input: returns when it holds, panics when a check fails.
pub fn run(data: &[u8]) {
    let Some((&pick, rest)) = data.split_first() else {
        return;
    };
    let limits = &LIMITS[usize::from(pick) % LIMITS.len()];
    let (size_bytes, stream) = rest.split_at(rest.len().min(3));
    let sizes: Vec<usize> = size_bytes.iter().map(|&b| usize::from(b % 32)).collect();
    let at_once = whole(stream, limits);
    assert_eq!(pieces(stream, &[], limits), at_once);
    assert_eq!(pieces(stream, &sizes, limits), at_once);
    assert_eq!(pieces(stream, &[1], limits), at_once);
}

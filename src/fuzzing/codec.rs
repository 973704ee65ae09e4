//! Fuzzes the WebSocket frame decoder, `codec::Decoder`, with client bytes. The first byte
//! picks `max_payload`, the next three the sizes of the chunks the rest is fed in.
//!
//! Checks: no panic; what is delivered respects the limits (messages within `max_payload`,
//! text valid UTF-8, control payloads within 125 bytes); between calls the decoder holds at
//! most `max_payload` plus one control payload, and nothing when idle; feeding the stream in
//! chunks gives the same items and the same result as feeding it at once.

use std::cell::Cell;

use crate::ws::codec::{CloseError, CodecLimits, Decoder, Incoming};

/// The largest control frame payload (RFC 6455 section 5.5).
const MAX_CONTROL: usize = 125;

/// The `max_payload` values the first byte picks from.
const MAX_PAYLOADS: [usize; 6] = [1, 16, 125, 126, 1024, 64 * 1024];

/// A delivered item, owned.
#[derive(Debug, PartialEq, Eq)]
enum Item {
    Message(Vec<u8>, bool),
    Ping(Vec<u8>),
    Pong(Vec<u8>),
    Close(Option<u16>, String),
}

fn check_and_own(item: Incoming<'_>, limits: &CodecLimits) -> Item {
    match item {
        Incoming::Message { data, binary } => {
            assert!(data.len() <= limits.max_payload);
            assert!(binary || std::str::from_utf8(data).is_ok());
            Item::Message(data.to_vec(), binary)
        }
        Incoming::Ping(data) => {
            assert!(data.len() <= MAX_CONTROL);
            Item::Ping(data.to_vec())
        }
        Incoming::Pong(data) => {
            assert!(data.len() <= MAX_CONTROL);
            Item::Pong(data.to_vec())
        }
        Incoming::Close { code, reason } => {
            assert!(reason.len() <= MAX_CONTROL - 2);
            assert!(code.is_some() || reason.is_empty());
            Item::Close(code, reason.to_string())
        }
    }
}

/// Decodes `stream` fed in chunks of the given sizes (cycled; 0 means all the rest).
fn decode(
    stream: &[u8],
    sizes: &[usize],
    limits: &CodecLimits,
) -> (Vec<Item>, Result<(), CloseError>) {
    let mut decoder = Decoder::default();
    let mut items = Vec::new();
    let mut rest = stream;
    let mut sizes = sizes.iter().cycle();
    while !rest.is_empty() {
        let size = match sizes.next() {
            Some(&n) if n > 0 => n.min(rest.len()),
            _ => rest.len(),
        };
        let (chunk, tail) = rest.split_at(size);
        rest = tail;
        let mut input = chunk.to_vec();
        let result = decoder.decode(&mut input, &Cell::new(*limits), &mut |item| {
            items.push(check_and_own(item, limits));
            true
        });
        if let Err(e) = result {
            return (items, Err(e));
        }
        assert!(decoder.heap_bytes() <= limits.max_payload + MAX_CONTROL);
        if decoder.is_idle() {
            assert_eq!(decoder.heap_bytes(), 0);
        }
    }
    (items, Ok(()))
}

/// Runs one input: returns when it holds, panics when a check fails.
pub fn run(data: &[u8]) {
    let Some((&pick, rest)) = data.split_first() else {
        return;
    };
    let limits = CodecLimits {
        max_payload: MAX_PAYLOADS[usize::from(pick) % MAX_PAYLOADS.len()],
        max_held: usize::MAX,
    };
    let (size_bytes, stream) = rest.split_at(rest.len().min(3));
    let sizes: Vec<usize> = size_bytes.iter().map(|&b| usize::from(b % 32)).collect();
    let at_once = decode(stream, &[], &limits);
    let chunked = decode(stream, &sizes, &limits);
    assert_eq!(at_once, chunked);
}

//! The soup through `redis-protocol` 6 too: every reply this codec decodes, that decoder
//! decodes to the same frame with the same length. It is more lenient (it takes a lone CR or
//! LF inside a simple string, a `+` sign, any two bytes after a bulk body), so garbage it
//! accepts this codec may refuse, never the other way round. It holds an error's text as a
//! `String`, so replies with an error that is not UTF-8 are left out of the comparison.

use redis_protocol::resp2::decode::decode as oracle_decode;
use redis_protocol::resp2::types::OwnedFrame;

use super::*;

/// `reply` as the oracle writes it: both nulls are one `Null`.
fn frame(reply: &Reply) -> OwnedFrame {
    match reply {
        Reply::Simple(text) => OwnedFrame::SimpleString(text.clone()),
        Reply::Error(text) => OwnedFrame::Error(String::from_utf8_lossy(text).into_owned()),
        Reply::Integer(n) => OwnedFrame::Integer(*n),
        Reply::Bulk(None) | Reply::Array(None) => OwnedFrame::Null,
        Reply::Bulk(Some(bytes)) => OwnedFrame::BulkString(bytes.clone()),
        Reply::Array(Some(items)) => OwnedFrame::Array(items.iter().map(frame).collect()),
    }
}

/// True when every error inside `reply` is UTF-8.
fn utf8_errors(reply: &Reply) -> bool {
    match reply {
        Reply::Error(text) => std::str::from_utf8(text).is_ok(),
        Reply::Array(Some(items)) => items.iter().all(utf8_errors),
        _ => true,
    }
}

/// Checks every reply `stream` decodes to against the oracle; returns how many there were.
fn agree(stream: &[u8], limits: &RespLimits) -> usize {
    let mut at = 0;
    let mut replies = 0;
    while let Ok(Some((reply, used))) = decode(&stream[at..], limits) {
        if !utf8_errors(&reply) {
            at += used;
            continue;
        }
        let expected = Some((frame(&reply), used));
        let got = oracle_decode(&stream[at..]).expect("the oracle takes what the codec took");
        assert_eq!(got, expected, "at {at} of {stream:?}");
        at += used;
        replies += 1;
    }
    replies
}

#[test]
fn the_soup_decodes_as_redis_protocol_decodes_it() {
    let mut rng = Rng::new(0x5eed_0003);
    let mut replies = 0;
    for _ in 0..2000 {
        let mut stream = Vec::new();
        let count = 1 + rng.below(6);
        for _ in 0..count {
            encode_reply(&random_reply(&mut rng, 4), &mut stream);
        }
        assert_eq!(agree(&stream, &LIMITS), count);
        replies += count;
    }
    for _ in 0..20_000 {
        replies += agree(&garbage(&mut rng), &LIMITS);
    }
    assert!(replies > 10_000, "only {replies} replies compared");
}

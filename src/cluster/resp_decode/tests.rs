use super::*;

const LIMITS: RespLimits = RespLimits {
    max_bulk: 1 << 20,
    max_reply: 1 << 22,
    max_array: 1 << 16,
    max_depth: 8,
};

fn bulk(bytes: &[u8]) -> Reply {
    Reply::bulk(bytes)
}

fn array(items: Vec<Reply>) -> Reply {
    Reply::Array(Some(items))
}

/// Decodes one whole reply with `limits`, and checks that every proper prefix is incomplete
/// and that a decoder fed one byte at a time yields it exactly with the last byte.
fn reply_with(bytes: &[u8], limits: RespLimits) -> Reply {
    let (reply, used) = decode(bytes, &limits)
        .expect("a valid reply")
        .expect("a complete reply");
    assert_eq!(used, bytes.len());
    for cut in 0..bytes.len() {
        assert_eq!(decode(&bytes[..cut], &limits), Ok(None), "prefix of {cut}");
    }
    let mut decoder = Decoder::new(limits);
    for (i, &byte) in bytes.iter().enumerate() {
        decoder.feed(&[byte]);
        let got = decoder.next().expect("no error byte by byte");
        if i + 1 < bytes.len() {
            assert_eq!(
                got,
                None,
                "complete after {} of {} bytes",
                i + 1,
                bytes.len()
            );
        } else {
            assert_eq!(got.as_ref(), Some(&reply));
        }
    }
    assert_eq!(decoder.buffered(), 0);
    reply
}

fn reply(bytes: &[u8]) -> Reply {
    reply_with(bytes, LIMITS)
}

/// The error `bytes` give with `limits`, the same whole and fed one byte at a time, after
/// which the decoder holds nothing and keeps the error.
fn error_with(bytes: &[u8], limits: RespLimits) -> RespError {
    let error = decode(bytes, &limits).expect_err("an invalid stream");
    let mut decoder = Decoder::new(limits);
    let mut got = None;
    for &byte in bytes {
        decoder.feed(&[byte]);
        match decoder.next() {
            Ok(None) => {}
            Ok(Some(reply)) => panic!("{reply:?} from {bytes:?}"),
            Err(error) => {
                got = Some(error);
                break;
            }
        }
    }
    assert_eq!(got, Some(error), "byte by byte");
    decoder.feed(b"+OK\r\n");
    assert_eq!(decoder.next(), Err(error), "the error stays");
    assert_eq!(decoder.buffered(), 0);
    assert_eq!(decoder.heap_bytes(), 0);
    error
}

fn error(bytes: &[u8]) -> RespError {
    error_with(bytes, LIMITS)
}

#[test]
fn simple_strings_and_errors() {
    assert_eq!(reply(b"+OK\r\n"), Reply::Simple(b"OK".to_vec()));
    assert_eq!(reply(b"+\r\n"), Reply::Simple(Vec::new()));
    assert_eq!(
        reply(b"-ERR unknown command 'FOO'\r\n"),
        Reply::Error(b"ERR unknown command 'FOO'".to_vec())
    );
    assert_eq!(
        reply(b"-NOSCRIPT No matching script\r\n"),
        Reply::Error(b"NOSCRIPT No matching script".to_vec())
    );
    // Any byte but CR and LF, UTF-8 or not.
    assert_eq!(
        reply(b"+\x00\xff caf\xc3\xa9\r\n"),
        Reply::Simple(b"\x00\xff caf\xc3\xa9".to_vec())
    );
}

#[test]
fn integers() {
    assert_eq!(reply(b":0\r\n"), Reply::Integer(0));
    assert_eq!(reply(b":42\r\n"), Reply::Integer(42));
    assert_eq!(reply(b":-1\r\n"), Reply::Integer(-1));
    assert_eq!(reply(b":9223372036854775807\r\n"), Reply::Integer(i64::MAX));
    assert_eq!(
        reply(b":-9223372036854775808\r\n"),
        Reply::Integer(i64::MIN)
    );
    // Leading zeros count towards the 19 digits.
    assert_eq!(reply(b":007\r\n"), Reply::Integer(7));
    assert_eq!(reply(b":-0\r\n"), Reply::Integer(0));
}

#[test]
fn bulk_strings() {
    assert_eq!(reply(b"$5\r\nhello\r\n"), bulk(b"hello"));
    assert_eq!(reply(b"$0\r\n\r\n"), bulk(b""));
    assert_eq!(reply(b"$-1\r\n"), Reply::Bulk(None));
    // Binary-safe: CR LF, NUL and a `$` header inside the body are only data.
    assert_eq!(
        reply(b"$11\r\n\r\n$3\r\nab\x00\r\n\r\n"),
        bulk(b"\r\n$3\r\nab\x00\r\n")
    );
    let big = vec![b'x'; 70_000];
    let mut encoded = b"$70000\r\n".to_vec();
    encoded.extend_from_slice(&big);
    encoded.extend_from_slice(b"\r\n");
    assert_eq!(
        decode(&encoded, &LIMITS),
        Ok(Some((bulk(&big), encoded.len())))
    );
}

#[test]
fn arrays() {
    assert_eq!(reply(b"*0\r\n"), array(Vec::new()));
    assert_eq!(reply(b"*-1\r\n"), Reply::Array(None));
    assert_eq!(
        reply(b"*3\r\n$3\r\nfoo\r\n$-1\r\n:7\r\n"),
        array(vec![bulk(b"foo"), Reply::Bulk(None), Reply::Integer(7)])
    );
    assert_eq!(
        reply(b"*2\r\n*2\r\n+a\r\n*0\r\n*1\r\n*-1\r\n"),
        array(vec![
            array(vec![Reply::Simple(b"a".to_vec()), array(Vec::new())]),
            array(vec![Reply::Array(None)]),
        ])
    );
    // An error inside an array (EXEC, a script's table) is an element like any other.
    assert_eq!(
        reply(b"*2\r\n-ERR x\r\n+OK\r\n"),
        array(vec![
            Reply::Error(b"ERR x".to_vec()),
            Reply::Simple(b"OK".to_vec())
        ])
    );
    // Exactly max_depth levels.
    let deep = b"*1\r\n".repeat(LIMITS.max_depth);
    let mut nested = Reply::Integer(1);
    for _ in 0..LIMITS.max_depth {
        nested = array(vec![nested]);
    }
    assert_eq!(reply(&[deep, b":1\r\n".to_vec()].concat()), nested);
}

#[test]
fn several_replies_in_one_buffer_come_out_in_order() {
    let stream = b"+OK\r\n:1\r\n$2\r\nab\r\n*1\r\n:2\r\n+PART";
    assert_eq!(
        decode(stream, &LIMITS),
        Ok(Some((Reply::Simple(b"OK".to_vec()), 5)))
    );
    let mut decoder = Decoder::new(LIMITS);
    decoder.feed(stream);
    assert_eq!(decoder.next(), Ok(Some(Reply::Simple(b"OK".to_vec()))));
    assert_eq!(decoder.next(), Ok(Some(Reply::Integer(1))));
    assert_eq!(decoder.next(), Ok(Some(bulk(b"ab"))));
    assert_eq!(decoder.next(), Ok(Some(array(vec![Reply::Integer(2)]))));
    assert_eq!(decoder.next(), Ok(None));
    assert_eq!(decoder.buffered(), 5);
    decoder.feed(b"IAL\r");
    assert_eq!(decoder.next(), Ok(None));
    decoder.feed(b"\n");
    assert_eq!(decoder.next(), Ok(Some(Reply::Simple(b"PARTIAL".to_vec()))));
    assert_eq!(decoder.next(), Ok(None));
    assert_eq!(decoder.buffered(), 0);
}

#[test]
fn unknown_type_bytes() {
    for (bytes, byte) in [
        (&b"!3\r\nerr\r\n"[..], b'!'), // RESP3 blob error
        (b"%1\r\n", b'%'),             // RESP3 map
        (b"_\r\n", b'_'),              // RESP3 null
        (b"\x00", 0),
        (b"\r\n", b'\r'),
        (b"OK\r\n", b'O'),
    ] {
        assert_eq!(error(bytes), RespError::UnknownType(byte), "{bytes:?}");
    }
    // Inside an array, and after a complete reply, a type byte is checked alike.
    assert_eq!(error(b"*2\r\n:1\r\n#t\r\n"), RespError::UnknownType(b'#'));
    let mut decoder = Decoder::new(LIMITS);
    decoder.feed(b"*1\r\n:1\r\n~");
    assert_eq!(decoder.next(), Ok(Some(array(vec![Reply::Integer(1)]))));
    assert_eq!(decoder.next(), Err(RespError::UnknownType(b'~')));
}

#[test]
fn line_ends_must_be_exactly_crlf() {
    for bytes in [
        &b"+OK\n"[..],
        b"+O\nK\r\n",
        b"+OK\rX",
        b"+OK\r\r\n",
        b":1\n",
        b":1\r:",
        b"$2\nab\r\n",
        b"$2\r\nabXY",
        b"$2\r\nab\n\r",
        b"$2\r\nabc\r\n",
        b"*1\n:1\r\n",
        b"*1\r\n-E\rR\r\n",
    ] {
        assert_eq!(error(bytes), RespError::BadLineEnd, "{bytes:?}");
    }
}

#[test]
fn integers_and_lengths_must_be_decimal_i64() {
    for bytes in [
        &b":\r\n"[..],
        b":-\r\n",
        b":+1\r\n",
        b":1a\r\n",
        b": 1\r\n",
        b":1 \r\n",
        b":--1\r\n",
        b":1.5\r\n",
        b":9223372036854775808\r\n",
        b":-9223372036854775809\r\n",
        b":99999999999999999999\r\n",
        b"$\r\n",
        b"$abc\r\n",
        b"$+3\r\nabc\r\n",
        b"*1e3\r\n",
        b"*\r\n",
    ] {
        assert_eq!(error(bytes), RespError::BadInteger, "{bytes:?}");
    }
    // A number line is refused after its 21st byte, without waiting for a line end.
    let long = [b":".as_slice(), &[b'1'; 21]].concat();
    assert_eq!(decode(&long[..21], &LIMITS), Ok(None));
    assert_eq!(error(&long), RespError::BadInteger);
    let long = [b"$".as_slice(), &[b'0'; 100]].concat();
    assert_eq!(error(&long), RespError::BadInteger);
}

#[test]
fn negative_lengths_other_than_null() {
    assert_eq!(error(b"$-2\r\n"), RespError::BadLength(-2));
    assert_eq!(error(b"*-5\r\n"), RespError::BadLength(-5));
    assert_eq!(
        error(b"$-9223372036854775808\r\n"),
        RespError::BadLength(i64::MIN)
    );
}

const SMALL: RespLimits = RespLimits {
    max_bulk: 10,
    max_reply: 64,
    max_array: 4,
    max_depth: 2,
};

#[test]
fn bulk_length_limit() {
    assert_eq!(
        reply_with(b"$10\r\n0123456789\r\n", SMALL),
        bulk(b"0123456789")
    );
    // Refused at the header, before any of the body has arrived.
    assert_eq!(
        error_with(b"$11\r\n", SMALL),
        RespError::BulkTooLong { len: 11, max: 10 }
    );
    assert_eq!(
        error_with(b"$9223372036854775807\r\n", SMALL),
        RespError::BulkTooLong {
            len: i64::MAX,
            max: 10
        }
    );
}

#[test]
fn array_length_and_depth_limits() {
    assert_eq!(
        reply_with(b"*4\r\n:1\r\n:2\r\n:3\r\n:4\r\n", SMALL),
        array((1..=4).map(Reply::Integer).collect())
    );
    assert_eq!(
        error_with(b"*5\r\n", SMALL),
        RespError::ArrayTooLong { len: 5, max: 4 }
    );
    assert_eq!(
        error(b"*2147483648\r\n"),
        RespError::ArrayTooLong {
            len: 1 << 31,
            max: LIMITS.max_array
        }
    );
    assert_eq!(
        reply_with(b"*1\r\n*1\r\n:1\r\n", SMALL),
        array(vec![array(vec![Reply::Integer(1)])])
    );
    assert_eq!(
        error_with(b"*1\r\n*1\r\n*0\r\n", SMALL),
        RespError::TooDeep { max: 2 }
    );
    // A null array is no level; depth 0 allows no array at all.
    assert_eq!(
        reply_with(b"*1\r\n*1\r\n*-1\r\n", SMALL),
        array(vec![array(vec![Reply::Array(None)])])
    );
    let flat = RespLimits {
        max_depth: 0,
        ..SMALL
    };
    assert_eq!(reply_with(b"*-1\r\n", flat), Reply::Array(None));
    assert_eq!(error_with(b"*0\r\n", flat), RespError::TooDeep { max: 0 });
}

#[test]
fn reply_size_limit() {
    // 64 bytes exactly: `+` and 61 bytes and CR LF.
    let exact = [b"+".as_slice(), &[b'a'; 61], b"\r\n"].concat();
    assert_eq!(exact.len(), 64);
    assert_eq!(reply_with(&exact, SMALL), Reply::Simple(vec![b'a'; 61]));
    let over = [b"+".as_slice(), &[b'a'; 62], b"\r\n"].concat();
    assert_eq!(
        error_with(&over, SMALL),
        RespError::ReplyTooLarge { max: 64 }
    );
    // A line that never ends is refused once it cannot end within the limit: without a CR
    // in its first 63 bytes, its CR LF would end past byte 64.
    let endless = [b"-".as_slice(), &[b'e'; 200]].concat();
    assert_eq!(decode(&endless[..62], &SMALL), Ok(None));
    assert_eq!(
        decode(&endless[..63], &SMALL),
        Err(RespError::ReplyTooLarge { max: 64 })
    );
    assert_eq!(
        error_with(&endless, SMALL),
        RespError::ReplyTooLarge { max: 64 }
    );
    // A bulk within max_bulk whose reply would not fit: refused at its header.
    let roomy = RespLimits {
        max_bulk: 100,
        ..SMALL
    };
    assert_eq!(
        error_with(b"$60\r\n", roomy),
        RespError::ReplyTooLarge { max: 64 }
    );
    // An array whose elements cannot fit, even at 3 bytes each: refused at its header.
    let wide = RespLimits {
        max_array: 100,
        ..SMALL
    };
    assert_eq!(
        error_with(b"*21\r\n", wide),
        RespError::ReplyTooLarge { max: 64 }
    );
    // Elements that fit one by one but not together.
    let mut many = b"*10\r\n".to_vec();
    for _ in 0..10 {
        many.extend_from_slice(b"$4\r\nabcd\r\n");
    }
    let roomy_array = RespLimits {
        max_array: 10,
        ..SMALL
    };
    assert_eq!(
        error_with(&many, roomy_array),
        RespError::ReplyTooLarge { max: 64 }
    );
    // The limit is per reply: many small replies in a row are fine.
    let mut decoder = Decoder::new(SMALL);
    for _ in 0..100 {
        decoder.feed(&exact);
    }
    for _ in 0..100 {
        assert_eq!(decoder.next(), Ok(Some(Reply::Simple(vec![b'a'; 61]))));
    }
    assert_eq!(decoder.next(), Ok(None));
}

#[test]
fn a_reply_arriving_slowly_is_held_within_the_limit() {
    let limits = RespLimits::new(4096);
    let mut decoder = Decoder::new(limits);
    decoder.feed(b"$4000\r\n");
    let mut fed = 7;
    while fed < 4000 {
        decoder.feed(&[b'z'; 100]);
        fed += 100;
        assert_eq!(decoder.next(), Ok(None));
        assert!(decoder.heap_bytes() <= 2 * 4096, "{}", decoder.heap_bytes());
    }
    // A hostile peer that keeps sending a line without end is cut off at the limit.
    let mut decoder = Decoder::new(limits);
    decoder.feed(b"*2\r\n+");
    let mut result = Ok(None);
    let mut fed = 5;
    while result == Ok(None) {
        decoder.feed(&[b'x'; 64]);
        fed += 64;
        result = decoder.next();
        assert!(fed <= 4096 + 64, "still waiting after {fed} bytes");
    }
    assert_eq!(result, Err(RespError::ReplyTooLarge { max: 4096 }));
    assert_eq!(decoder.heap_bytes(), 0);
}

#[test]
fn an_empty_buffer_gives_back_its_memory() {
    let mut decoder = Decoder::new(LIMITS);
    let body = vec![7u8; 1 << 20];
    decoder.feed(format!("${}\r\n", body.len()).as_bytes());
    decoder.feed(&body);
    decoder.feed(b"\r\n");
    assert_eq!(decoder.next(), Ok(Some(bulk(&body))));
    assert!(decoder.heap_bytes() <= IDLE_CAPACITY);
}

#[test]
fn decode_never_takes_more_than_its_reply() {
    let stream = b"*2\r\n:1\r\n:2\r\n+next\r\n";
    let (first, used) = decode(stream, &LIMITS).unwrap().unwrap();
    assert_eq!(used, 12);
    assert_eq!(first, array(vec![Reply::Integer(1), Reply::Integer(2)]));
    assert_eq!(
        decode(&stream[used..], &LIMITS),
        Ok(Some((Reply::Simple(b"next".to_vec()), 7)))
    );
}

/// Feeds `stream` in pieces of `piece` bytes, calling `next` after each, and checks the cost
/// contract: work within 3 x the bytes + 23 x the calls.
fn check_cost(stream: &[u8], piece: usize, limits: RespLimits) -> usize {
    let mut decoder = Decoder::new(limits);
    let mut calls = 0u64;
    let mut replies = 0;
    for chunk in stream.chunks(piece) {
        decoder.feed(chunk);
        loop {
            calls += 1;
            match decoder.next() {
                Ok(Some(_)) => replies += 1,
                Ok(None) => break,
                Err(error) => panic!("{error}"),
            }
        }
    }
    let bound = 3 * stream.len() as u64 + 23 * calls;
    assert!(
        decoder.work() <= bound,
        "work {} for {} bytes in {calls} calls (bound {bound})",
        decoder.work(),
        stream.len()
    );
    replies
}

#[test]
fn a_large_reply_one_byte_at_a_time_costs_linear_work() {
    let limits = RespLimits::new(8 << 20);
    let size = 2 << 20;
    // A bulk string, a simple string, an array of many small elements, nested arrays.
    let mut stream = format!("${size}\r\n").into_bytes();
    stream.extend_from_slice(&vec![b'b'; size]);
    stream.extend_from_slice(b"\r\n+");
    stream.extend_from_slice(&vec![b's'; size]);
    stream.extend_from_slice(b"\r\n*100000\r\n");
    for _ in 0..100_000 {
        stream.extend_from_slice(b":12345\r\n");
    }
    stream.extend_from_slice(&b"*2\r\n".repeat(8));
    stream.extend_from_slice(&b"$3\r\nabc\r\n".repeat(9));
    assert_eq!(check_cost(&stream, 1, limits), 4);
    assert_eq!(check_cost(&stream, 7, limits), 4);
    assert_eq!(check_cost(&stream, 4096, limits), 4);
    // Many small replies, several per read.
    let small = b"+OK\r\n:1\r\n$3\r\nabc\r\n".repeat(50_000);
    assert_eq!(check_cost(&small, 1000, limits), 150_000);
    assert_eq!(check_cost(&small, 13, limits), 150_000);
}

#[test]
fn calls_without_new_bytes_cost_a_bounded_amount() {
    let mut decoder = Decoder::new(LIMITS);
    decoder.feed(b"*2\r\n$1000\r\nabc");
    assert_eq!(decoder.next(), Ok(None));
    let before = decoder.work();
    for _ in 0..1000 {
        assert_eq!(decoder.next(), Ok(None));
    }
    assert!(decoder.work() - before <= 1000 * 23);
}

/// The heap bytes `reply` owns.
fn heap(reply: &Reply) -> usize {
    match reply {
        Reply::Simple(text) | Reply::Error(text) | Reply::Bulk(Some(text)) => text.capacity(),
        Reply::Array(Some(items)) => {
            items.capacity() * std::mem::size_of::<Reply>() + items.iter().map(heap).sum::<usize>()
        }
        _ => 0,
    }
}

#[test]
fn a_decoded_reply_costs_at_most_22_heap_bytes_per_wire_byte() {
    assert!(std::mem::size_of::<Reply>() <= 32);
    let limits = RespLimits {
        max_array: 1 << 20,
        ..LIMITS
    };
    // The smallest elements, in arrays of the sizes that leave most room unused.
    for len in [1, 63, 65, 100_000, 131_073] {
        let wire = [format!("*{len}\r\n").into_bytes(), b"+\r\n".repeat(len)].concat();
        let (reply, _) = decode(&wire, &limits).unwrap().unwrap();
        assert!(
            heap(&reply) <= 22 * wire.len(),
            "{} heap bytes for {} wire bytes",
            heap(&reply),
            wire.len()
        );
    }
    let nested = [b"*2\r\n".repeat(4), b"*1\r\n*1\r\n*-1\r\n".repeat(16)].concat();
    let (reply, _) = decode(&nested, &LIMITS).unwrap().unwrap();
    assert!(heap(&reply) <= 22 * nested.len());
}

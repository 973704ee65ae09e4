use super::*;
use crate::testkit::Rng;

const LIMITS: CodecLimits = CodecLimits {
    max_payload: 1 << 20,
    max_held: usize::MAX,
};
const MASK: [u8; 4] = [0x37, 0xfa, 0x21, 0x3d];

/// An owned copy of an [`Incoming`].
#[derive(Clone, Debug, PartialEq, Eq)]
enum Item {
    Message(Vec<u8>, bool),
    Ping(Vec<u8>),
    Pong(Vec<u8>),
    Close(Option<u16>, String),
}

impl From<Incoming<'_>> for Item {
    fn from(item: Incoming<'_>) -> Self {
        match item {
            Incoming::Message { data, binary } => Item::Message(data.to_vec(), binary),
            Incoming::Ping(data) => Item::Ping(data.to_vec()),
            Incoming::Pong(data) => Item::Pong(data.to_vec()),
            Incoming::Close { code, reason } => Item::Close(code, reason.to_owned()),
        }
    }
}

fn text(s: &str) -> Item {
    Item::Message(s.as_bytes().to_vec(), false)
}

/// A client frame with the given first byte (FIN, RSV bits, opcode), masked when `mask` is set.
fn frame_raw(first: u8, payload: &[u8], mask: Option<[u8; 4]>) -> Vec<u8> {
    let mut out = vec![first];
    let bit = if mask.is_some() { 0x80 } else { 0 };
    let len = payload.len();
    if len < 126 {
        out.push(bit | len as u8);
    } else if len < 65536 {
        out.push(bit | 126);
        out.extend((len as u16).to_be_bytes());
    } else {
        out.push(bit | 127);
        out.extend((len as u64).to_be_bytes());
    }
    match mask {
        Some(m) => {
            out.extend(m);
            out.extend(payload.iter().enumerate().map(|(i, b)| b ^ m[i % 4]));
        }
        None => out.extend(payload),
    }
    out
}

/// A masked client frame.
fn frame(fin: bool, opcode: u8, payload: &[u8]) -> Vec<u8> {
    frame_raw(if fin { 0x80 } else { 0 } | opcode, payload, Some(MASK))
}

fn close_frame(code: u16, reason: &[u8]) -> Vec<u8> {
    let mut payload = code.to_be_bytes().to_vec();
    payload.extend(reason);
    frame(true, 0x8, &payload)
}

/// Feeds `input` to `decoder` in pieces cut at the (ascending) offsets `cuts`.
fn feed(
    decoder: &mut Decoder,
    input: &[u8],
    cuts: &[usize],
    limits: CodecLimits,
) -> Result<Vec<Item>, CloseError> {
    let mut items = Vec::new();
    let mut start = 0;
    for &cut in cuts.iter().chain(std::iter::once(&input.len())) {
        let mut piece = input[start..cut].to_vec();
        decoder.decode(&mut piece, &Cell::new(limits), &mut |item| {
            items.push(Item::from(item));
            true
        })?;
        start = cut;
    }
    Ok(items)
}

fn decode_all(input: &[u8]) -> Result<Vec<Item>, CloseError> {
    feed(&mut Decoder::default(), input, &[], LIMITS)
}

fn error_code(input: &[u8]) -> u16 {
    decode_all(input).expect_err("an error").code
}

#[test]
fn decoder_is_small() {
    let size = std::mem::size_of::<Decoder>();
    println!("size_of::<Decoder>() = {size}");
    assert!(size <= 64, "Decoder is {size} bytes");
    assert_eq!(Decoder::default().heap_bytes(), 0);
}

#[test]
fn decodes_each_kind() {
    let mut input = frame(true, 0x1, b"hello");
    input.extend(frame(true, 0x2, &[0, 255, 7]));
    input.extend(frame(true, 0x9, b"ping"));
    input.extend(frame(true, 0xA, b""));
    input.extend(frame(true, 0x8, b""));
    input.extend(close_frame(1000, "bye €".as_bytes()));
    assert_eq!(
        decode_all(&input),
        Ok(vec![
            text("hello"),
            Item::Message(vec![0, 255, 7], true),
            Item::Ping(b"ping".to_vec()),
            Item::Pong(vec![]),
            Item::Close(None, String::new()),
            Item::Close(Some(1000), "bye €".to_owned()),
        ])
    );
}

#[test]
fn protocol_errors_close_with_1002() {
    let mut cases: Vec<(&str, Vec<u8>)> = vec![
        ("rsv1", frame_raw(0x80 | 0x40 | 0x1, b"a", Some(MASK))),
        ("rsv2", frame_raw(0x80 | 0x20 | 0x1, b"a", Some(MASK))),
        ("rsv3", frame_raw(0x80 | 0x10 | 0x2, b"a", Some(MASK))),
        ("rsv on ping", frame_raw(0x80 | 0x40 | 0x9, b"", Some(MASK))),
        ("unmasked", frame_raw(0x81, b"hi", None)),
        ("unmasked ping", frame_raw(0x89, b"", None)),
        ("fragmented ping", frame(false, 0x9, b"")),
        ("fragmented close", frame(false, 0x8, b"")),
        ("long ping", frame(true, 0x9, &[0; 126])),
        ("long pong", frame(true, 0xA, &[0; 65536])),
        ("long close", close_frame(1000, &[b'a'; 124])),
        ("stray continuation", frame(true, 0x0, b"x")),
        ("stray non-final continuation", frame(false, 0x0, b"x")),
        ("close of one byte", frame(true, 0x8, &[3])),
        (
            "nested text",
            [frame(false, 0x1, b"a"), frame(true, 0x1, b"b")].concat(),
        ),
        (
            "nested binary",
            [frame(false, 0x2, b"a"), frame(true, 0x2, b"b")].concat(),
        ),
        (
            "nested mixed",
            [frame(false, 0x1, b"a"), frame(false, 0x2, b"b")].concat(),
        ),
    ];
    for opcode in [3, 4, 5, 6, 7, 0xB, 0xC, 0xD, 0xE, 0xF] {
        cases.push(("reserved opcode", frame(true, opcode, b"")));
    }
    for code in [
        0, 1, 999, 1004, 1005, 1006, 1015, 1016, 1100, 2000, 2999, 5000, 65535,
    ] {
        cases.push(("invalid close code", close_frame(code, b"")));
    }
    for (name, input) in cases {
        assert_eq!(error_code(&input), 1002, "{name}");
    }
}

/// A masked frame of `payload` announcing `len` in the form `form` picks (0: in the second
/// byte, 1: in 16 bits, 2: in 64 bits), whatever the payload's real length.
fn frame_with_length(first: u8, form: u8, len: u64, payload: &[u8]) -> Vec<u8> {
    let mut out = vec![first];
    match form {
        0 => out.push(0x80 | len as u8),
        1 => {
            out.push(0x80 | 126);
            out.extend((len as u16).to_be_bytes());
        }
        _ => {
            out.push(0x80 | 127);
            out.extend(len.to_be_bytes());
        }
    }
    out.extend(MASK);
    out.extend(payload.iter().enumerate().map(|(i, b)| b ^ MASK[i % 4]));
    out
}

#[test]
fn a_length_not_in_its_shortest_encoding_closes_with_1002() {
    let refused: Vec<(&str, Vec<u8>)> = vec![
        ("16-bit 0", frame_with_length(0x81, 1, 0, b"")),
        ("16-bit 5", frame_with_length(0x81, 1, 5, b"hello")),
        ("16-bit 125", frame_with_length(0x82, 1, 125, &[7; 125])),
        ("16-bit ping", frame_with_length(0x89, 1, 4, b"ping")),
        ("16-bit close", frame_with_length(0x88, 1, 0, b"")),
        ("64-bit 0", frame_with_length(0x82, 2, 0, b"")),
        ("64-bit 5", frame_with_length(0x81, 2, 5, b"hello")),
        ("64-bit 125", frame_with_length(0x82, 2, 125, &[7; 125])),
        ("64-bit 126", frame_with_length(0x82, 2, 126, &[7; 126])),
        (
            "64-bit 65535",
            frame_with_length(0x82, 2, 65_535, &[7; 65_535]),
        ),
        ("64-bit pong", frame_with_length(0x8A, 2, 0, b"")),
        ("64-bit top bit", frame_with_length(0x82, 2, 1 << 63, b"")),
        ("64-bit all ones", frame_with_length(0x82, 2, u64::MAX, b"")),
        ("top bit ping", frame_with_length(0x89, 2, 1 << 63, b"")),
        (
            "a continuation",
            [frame(false, 0x1, b"a"), frame_with_length(0x80, 1, 1, b"b")].concat(),
        ),
    ];
    for (name, input) in &refused {
        let mut decoder = Decoder::default();
        let mut items = 0;
        let result = decoder.decode(&mut input.clone(), &Cell::new(LIMITS), &mut |_| {
            items += 1;
            true
        });
        assert_eq!(result.map_err(|e| e.code), Err(1002), "{name}");
        assert_eq!(items, 0, "{name}: nothing is delivered");
        // The same header arriving a byte at a time is refused too.
        let cuts: Vec<usize> = (1..input.len().min(16)).collect();
        let split = feed(&mut Decoder::default(), input, &cuts, LIMITS);
        assert_eq!(split.map_err(|e| e.code), Err(1002), "{name}, split");
    }
    let shortest = [
        frame_with_length(0x81, 0, 125, &[b'a'; 125]),
        frame_with_length(0x81, 1, 126, &[b'a'; 126]),
        frame_with_length(0x82, 1, 65_535, &[1; 65_535]),
        frame_with_length(0x82, 2, 65_536, &[1; 65_536]),
    ];
    for input in shortest {
        let items = decode_all(&input).expect("the shortest encoding is accepted");
        assert_eq!(items.len(), 1);
    }
    // The length's form is checked before the limits: an over-long form is 1002, not 1009.
    let small = CodecLimits {
        max_payload: 10,
        max_held: usize::MAX,
    };
    let input = frame_with_length(0x82, 2, 100, &[0; 100]);
    let result = feed(&mut Decoder::default(), &input, &[], small);
    assert_eq!(result.unwrap_err().code, 1002);
}

#[test]
fn valid_close_codes_are_delivered() {
    for code in [
        1000, 1001, 1002, 1003, 1007, 1008, 1009, 1010, 1011, 1012, 1013, 1014, 3000, 3999, 4000,
        4999,
    ] {
        let expected = Item::Close(Some(code), "ok".to_owned());
        assert_eq!(
            decode_all(&close_frame(code, b"ok")),
            Ok(vec![expected]),
            "{code}"
        );
    }
}

#[test]
fn close_code_rule_matches_the_rfc_ranges() {
    for code in 0..=u16::MAX {
        let rfc = matches!(code, 1000..=1003 | 1007..=1014 | 3000..=4999);
        assert_eq!(close_code_is_valid(code), rfc, "{code}");
    }
}

#[test]
fn invalid_utf8_closes_with_1007() {
    assert_eq!(error_code(&frame(true, 0x1, b"ok \xff")), 1007);
    assert_eq!(
        error_code(&frame(true, 0x1, b"\xed\xa0\x80")),
        1007,
        "surrogate"
    );
    assert_eq!(
        error_code(&frame(true, 0x1, b"abc\xe2\x82")),
        1007,
        "truncated at the end"
    );
    let fragmented = [frame(false, 0x1, b"abc"), frame(true, 0x0, b"\xe2\x82")].concat();
    assert_eq!(
        error_code(&fragmented),
        1007,
        "truncated at the end of fragments"
    );
    assert_eq!(
        error_code(&close_frame(1000, b"\xc0\xaf")),
        1007,
        "close reason"
    );
    // A binary message need not be UTF-8.
    assert_eq!(
        decode_all(&frame(true, 0x2, b"\xff")),
        Ok(vec![Item::Message(vec![0xff], true)])
    );
}

#[test]
fn too_big_closes_with_1009() {
    let limits = CodecLimits {
        max_payload: 100,
        max_held: usize::MAX,
    };
    let run = |input: &[u8]| feed(&mut Decoder::default(), input, &[], limits);
    assert_eq!(
        run(&frame(true, 0x2, &[1; 100])).map(|items| items.len()),
        Ok(1)
    );
    assert_eq!(run(&frame(true, 0x2, &[1; 101])).unwrap_err().code, 1009);
    let exact = [
        frame(false, 0x1, &[b'a'; 60]),
        frame(true, 0x0, &[b'b'; 40]),
    ]
    .concat();
    assert_eq!(run(&exact).map(|items| items.len()), Ok(1));
    let over = [
        frame(false, 0x1, &[b'a'; 60]),
        frame(false, 0x0, &[b'b'; 40]),
        frame(true, 0x0, b"c"),
    ]
    .concat();
    assert_eq!(run(&over).unwrap_err().code, 1009);
}

#[test]
fn what_a_message_in_progress_holds_is_bounded_by_max_held() {
    let limits = CodecLimits {
        max_payload: 1000,
        max_held: 100,
    };
    // A whole message in one input is never held, whatever its size.
    let big = frame(true, 0x2, &[1; 500]);
    assert_eq!(
        feed(&mut Decoder::default(), &big, &[], limits).map(|items| items.len()),
        Ok(1)
    );
    // The same frame split: its bytes, as they arrive, pass what may be held.
    let err = feed(&mut Decoder::default(), &big, &[10], limits).unwrap_err();
    assert_eq!((err.code, err.reason), (1008, "Server busy"));
    // A fragmented message counts everything it holds so far.
    let within = [
        frame(false, 0x1, &[b'a'; 60]),
        frame(true, 0x0, &[b'b'; 40]),
    ]
    .concat();
    assert_eq!(
        feed(&mut Decoder::default(), &within, &[], limits).map(|i| i.len()),
        Ok(1)
    );
    let over = [
        frame(false, 0x1, &[b'a'; 60]),
        frame(true, 0x0, &[b'b'; 41]),
    ]
    .concat();
    assert_eq!(
        feed(&mut Decoder::default(), &over, &[], limits)
            .unwrap_err()
            .code,
        1008
    );
}

#[test]
fn message_bytes_follow_the_message_in_progress() {
    let input = [
        frame(false, 0x1, &[b'a'; 30]),
        frame(true, 0x0, &[b'b'; 20]),
    ]
    .concat();
    let mut decoder = Decoder::default();
    assert_eq!(decoder.message_bytes(), 0);
    // The first fragment and the header of the second with 5 of its 20 bytes.
    let cut = input.len() - 15;
    let mut head = input[..cut].to_vec();
    decoder
        .decode(&mut head, &Cell::new(LIMITS), &mut |_| true)
        .unwrap();
    assert!(decoder.message_in_progress());
    assert_eq!(decoder.message_bytes(), 30 + 20);
    // A ping in between does not count.
    let mut rest = input[cut..].to_vec();
    let (mut first, mut second) = (rest[..5].to_vec(), rest.split_off(5));
    decoder
        .decode(&mut first, &Cell::new(LIMITS), &mut |_| true)
        .unwrap();
    assert_eq!(decoder.message_bytes(), 50);
    decoder
        .decode(&mut second, &Cell::new(LIMITS), &mut |_| true)
        .unwrap();
    assert!(!decoder.message_in_progress());
    assert_eq!(decoder.message_bytes(), 0);
}

#[test]
fn limits_changed_by_the_callback_apply_to_the_next_frame() {
    let input = [frame(true, 0x1, b"auth"), frame(true, 0x2, &[7; 200])].concat();
    let limits = Cell::new(CodecLimits {
        max_payload: 100,
        max_held: usize::MAX,
    });
    let mut sizes = Vec::new();
    let mut all = input.clone();
    Decoder::default()
        .decode(&mut all, &limits, &mut |item| {
            if let Incoming::Message { data, .. } = item {
                sizes.push(data.len());
            }
            limits.set(CodecLimits {
                max_payload: 1000,
                ..limits.get()
            });
            true
        })
        .unwrap();
    assert_eq!(sizes, [4, 200]);
    let mut again = input;
    let strict = Cell::new(CodecLimits {
        max_payload: 100,
        max_held: usize::MAX,
    });
    let result = Decoder::default().decode(&mut again, &strict, &mut |_| true);
    assert_eq!(result.unwrap_err().code, 1009);
}

#[test]
fn huge_length_is_refused_before_any_allocation() {
    for len in [(1u64 << 63) - 1, 1 << 62, (1 << 20) + 1] {
        let mut input = vec![0x82, 0x80 | 127];
        input.extend(len.to_be_bytes());
        input.extend(MASK);
        let mut decoder = Decoder::default();
        let result = decoder.decode(&mut input, &Cell::new(LIMITS), &mut |_| true);
        assert_eq!(result.unwrap_err().code, 1009, "{len}");
        assert_eq!(decoder.heap_bytes(), 0);
    }
}

#[test]
fn fragmented_text_with_control_frames_between() {
    let input = [
        frame(false, 0x1, b"Hel"),
        frame(true, 0x9, b"p1"),
        frame(false, 0x0, b"lo "),
        frame(true, 0xA, b"p2"),
        frame(false, 0x0, b""),
        frame(true, 0x9, b""),
        frame(true, 0x0, b"world"),
        frame(true, 0x1, b"next"),
    ]
    .concat();
    let expected = vec![
        Item::Ping(b"p1".to_vec()),
        Item::Pong(b"p2".to_vec()),
        Item::Ping(vec![]),
        text("Hello world"),
        text("next"),
    ];
    assert_eq!(decode_all(&input), Ok(expected));
}

#[test]
fn close_between_fragments_is_delivered_at_once() {
    let input = [frame(false, 0x2, b"ab"), close_frame(1001, b"")].concat();
    assert_eq!(
        decode_all(&input),
        Ok(vec![Item::Close(Some(1001), String::new())])
    );
}

/// A stream with every length format, zero-copy and buffered paths, fragments with control
/// frames between them and UTF-8 split across fragments.
fn sample_stream() -> (Vec<u8>, Vec<Item>) {
    let big: Vec<u8> = (0..300u32).map(|i| (i * 7) as u8).collect();
    let input = [
        frame(true, 0x1, b"hello"),
        frame(false, 0x1, &"a\u{20ac}".as_bytes()[..2]),
        frame(true, 0x9, b"ping!"),
        frame(false, 0x0, &"a\u{20ac}".as_bytes()[2..]),
        frame(true, 0x0, "b\u{1f600}".as_bytes()),
        frame(true, 0x2, &big),
        frame(false, 0x2, &big[..130]),
        frame(true, 0xA, &[9; 125]),
        frame(true, 0x0, &big[130..]),
        frame(true, 0x1, b""),
        close_frame(1000, b"bye"),
    ]
    .concat();
    let expected = vec![
        text("hello"),
        Item::Ping(b"ping!".to_vec()),
        text("a\u{20ac}b\u{1f600}"),
        Item::Message(big.clone(), true),
        Item::Pong(vec![9; 125]),
        Item::Message(big, true),
        text(""),
        Item::Close(Some(1000), "bye".to_owned()),
    ];
    (input, expected)
}

#[test]
fn any_split_gives_the_same_items() {
    let (input, expected) = sample_stream();
    assert_eq!(decode_all(&input).as_ref(), Ok(&expected));
    for cut in 0..=input.len() {
        let mut decoder = Decoder::default();
        assert_eq!(
            feed(&mut decoder, &input, &[cut], LIMITS).as_ref(),
            Ok(&expected),
            "cut at {cut}"
        );
        assert!(decoder.is_idle());
        assert_eq!(decoder.heap_bytes(), 0);
    }
    for first in (0..input.len()).step_by(7) {
        for second in first..=input.len() {
            let items = feed(&mut Decoder::default(), &input, &[first, second], LIMITS);
            assert_eq!(
                items.as_ref(),
                Ok(&expected),
                "cuts at {first} and {second}"
            );
        }
    }
}

#[test]
fn byte_by_byte_gives_the_same_items() {
    let (mut input, mut expected) = sample_stream();
    let large: Vec<u8> = (0..70_000u32).map(|i| (i % 251) as u8).collect();
    input.extend(frame(true, 0x2, &large));
    expected.push(Item::Message(large, true));
    let cuts: Vec<usize> = (1..input.len()).collect();
    let mut decoder = Decoder::default();
    assert_eq!(feed(&mut decoder, &input, &cuts, LIMITS), Ok(expected));
    assert!(decoder.is_idle());
    assert_eq!(decoder.heap_bytes(), 0);
}

#[test]
fn whole_frames_are_handed_out_without_copy() {
    let mut input = [
        frame(true, 0x1, b"zero copy"),
        frame(true, 0x9, b"p"),
        frame(true, 0x2, &[5; 1000]),
    ]
    .concat();
    let range = input.as_ptr_range();
    let mut decoder = Decoder::default();
    let mut seen = 0;
    let result = decoder.decode(&mut input, &Cell::new(LIMITS), &mut |item| {
        let data = match item {
            Incoming::Message { data, .. } | Incoming::Ping(data) => data,
            other => panic!("unexpected {other:?}"),
        };
        assert!(range.contains(&data.as_ptr()), "not a slice of the input");
        seen += 1;
        true
    });
    assert_eq!(result, Ok(input.len()));
    assert_eq!(seen, 3);
    assert_eq!(decoder.heap_bytes(), 0);
    // Unmasked in place.
    assert_eq!(&input[6..15], b"zero copy");
}

#[test]
fn a_header_split_across_reads_still_gives_a_slice_of_the_input() {
    let input = frame(true, 0x1, &[b'x'; 200]);
    let mut decoder = Decoder::default();
    let mut head = input[..3].to_vec();
    decoder
        .decode(&mut head, &Cell::new(LIMITS), &mut |_| {
            panic!("nothing yet")
        })
        .unwrap();
    assert!(!decoder.is_idle());
    assert_eq!(decoder.heap_bytes(), 0);
    let mut rest = input[3..].to_vec();
    let range = rest.as_ptr_range();
    let mut seen = 0;
    decoder
        .decode(&mut rest, &Cell::new(LIMITS), &mut |item| {
            let Incoming::Message {
                data,
                binary: false,
            } = item
            else {
                panic!("{item:?}")
            };
            assert!(range.contains(&data.as_ptr()));
            assert_eq!(data, &[b'x'; 200][..]);
            seen += 1;
            true
        })
        .unwrap();
    assert_eq!(seen, 1);
    assert!(decoder.is_idle());
}

#[test]
fn heap_is_held_only_while_a_message_is_in_flight() {
    let mut decoder = Decoder::default();
    let first = frame(false, 0x1, b"part one, ");
    assert_eq!(feed(&mut decoder, &first, &[], LIMITS), Ok(vec![]));
    assert!(!decoder.is_idle());
    assert!(decoder.heap_bytes() > 0);
    let ping = frame(true, 0x9, b"x");
    assert_eq!(
        feed(&mut decoder, &ping, &[3], LIMITS),
        Ok(vec![Item::Ping(b"x".to_vec())])
    );
    assert!(!decoder.is_idle());
    let last = frame(true, 0x0, b"part two");
    assert_eq!(
        feed(&mut decoder, &last, &[], LIMITS),
        Ok(vec![text("part one, part two")])
    );
    assert!(decoder.is_idle());
    assert_eq!(decoder.heap_bytes(), 0);

    // A control frame split across reads, outside any message.
    let ping = frame(true, 0x9, &[1; 100]);
    assert_eq!(
        feed(&mut decoder, &ping, &[50], LIMITS),
        Ok(vec![Item::Ping(vec![1; 100])])
    );
    assert!(decoder.is_idle());
    assert_eq!(decoder.heap_bytes(), 0);

    // An empty first fragment, a control frame split across reads, then a last fragment
    // handed out from the input.
    let input = [
        frame(false, 0x2, b""),
        frame(true, 0x9, b"split ping"),
        frame(true, 0x0, b"end"),
    ]
    .concat();
    let items = feed(&mut decoder, &input, &[15], LIMITS);
    assert_eq!(
        items,
        Ok(vec![
            Item::Ping(b"split ping".to_vec()),
            Item::Message(b"end".to_vec(), true)
        ])
    );
    assert!(decoder.is_idle());
    assert_eq!(decoder.heap_bytes(), 0);

    // A single frame split across reads: the buffer never outgrows the frame.
    let long = frame(true, 0x2, &[2; 50_000]);
    let cuts: Vec<usize> = (1..long.len() / 1000).map(|i| i * 1000).collect();
    assert_eq!(
        feed(&mut decoder, &long[..long.len() - 1], &cuts, LIMITS),
        Ok(vec![])
    );
    assert!(decoder.heap_bytes() <= 50_000);
    let mut last = [long[long.len() - 1]];
    let mut items = Vec::new();
    decoder
        .decode(&mut last, &Cell::new(LIMITS), &mut |item| {
            items.push(Item::from(item));
            true
        })
        .unwrap();
    assert_eq!(items, vec![Item::Message(vec![2; 50_000], true)]);
    assert!(decoder.is_idle());
    assert_eq!(decoder.heap_bytes(), 0);
}

#[test]
fn utf8_split_inside_a_sequence_across_fragments_is_valid() {
    let euro = "\u{20ac}".as_bytes();
    let input = [
        frame(false, 0x1, &[b"a", &euro[..1]].concat()),
        frame(false, 0x0, &euro[1..2]),
        frame(false, 0x0, b""),
        frame(true, 0x0, &[&euro[2..], b"b"].concat()),
    ]
    .concat();
    assert_eq!(decode_all(&input), Ok(vec![text("a\u{20ac}b")]));
}

#[test]
fn invalid_utf8_is_caught_on_the_fragment_that_makes_it_certain() {
    let mut decoder = Decoder::default();
    // "κόσμε" then 0xF4, the start of a four-byte sequence: not yet invalid.
    let first = frame(false, 0x1, &["κόσμε".as_bytes(), &[0xf4]].concat());
    assert_eq!(feed(&mut decoder, &first, &[], LIMITS), Ok(vec![]));
    // 0x90 after 0xF4 would encode a code point above U+10FFFF.
    let second = frame(false, 0x0, &[0x90, 0x80, 0x80]);
    assert_eq!(
        feed(&mut decoder, &second, &[], LIMITS).unwrap_err().code,
        1007
    );

    // Inside one frame: the error comes with the read holding the bad byte, before the
    // frame is complete.
    let payload = [b"valid text ".as_slice(), &[0xff], &[b'z'; 100]].concat();
    let input = frame(true, 0x1, &payload);
    let mut decoder = Decoder::default();
    let mut head = input[..10].to_vec();
    assert_eq!(
        decoder.decode(&mut head, &Cell::new(LIMITS), &mut |_| true),
        Ok(10)
    );
    let mut bad = input[10..20].to_vec();
    assert_eq!(
        decoder
            .decode(&mut bad, &Cell::new(LIMITS), &mut |_| true)
            .unwrap_err()
            .code,
        1007
    );
}

#[test]
fn returning_false_stops_decoding() {
    let mut input = [frame(true, 0x1, b"one"), frame(true, 0x1, b"two")].concat();
    let mut items = Vec::new();
    let result = Decoder::default().decode(&mut input, &Cell::new(LIMITS), &mut |item| {
        items.push(Item::from(item));
        false
    });
    assert_eq!(
        result,
        Ok(frame(true, 0x1, b"one").len()),
        "up to the end of its frame"
    );
    assert_eq!(items, vec![text("one")]);
}

#[test]
fn unmask_matches_the_bytewise_rule() {
    let data: Vec<u8> = (0..100u8).collect();
    for len in 0..data.len() {
        for phase in 0..4 {
            let mut mask = MASK;
            mask.rotate_left(phase);
            let mut got = data[..len].to_vec();
            unmask(&mut got, mask);
            let expected: Vec<u8> = data[..len]
                .iter()
                .enumerate()
                .map(|(i, b)| b ^ MASK[(i + phase) % 4])
                .collect();
            assert_eq!(got, expected);
        }
    }
}

/// Turns an unmasked server frame into the masked client frame with the same content.
fn as_client_frame(server: &[u8]) -> Vec<u8> {
    let mut cursor = Cursor::new(server);
    let (mut header, len) = FrameHeader::parse(&mut cursor).unwrap().unwrap();
    assert!(header.mask.is_none(), "server frames are not masked");
    assert!(header.is_final);
    let payload = &server[cursor.position() as usize..];
    assert_eq!(payload.len() as u64, len);
    header.mask = Some(MASK);
    let mut out = Vec::new();
    header.format(len, &mut out).unwrap();
    out.extend(payload.iter().enumerate().map(|(i, b)| b ^ MASK[i % 4]));
    out
}

#[test]
fn encoded_frames_round_trip() {
    for len in [0, 1, 125, 126, 65535, 65536, 100_000] {
        let payload: Vec<u8> = (0..len).map(|i| b'a' + (i % 26) as u8).collect();
        let header_len = match len {
            0..=125 => 2,
            126..=65535 => 4,
            _ => 10,
        };
        for (kind, binary) in [(OutKind::Text, false), (OutKind::Binary, true)] {
            let mut out = vec![0xEE];
            encode(&mut out, kind, &payload);
            assert_eq!(out.len(), 1 + header_len + len, "{len}");
            let items = decode_all(&as_client_frame(&out[1..]));
            assert_eq!(items, Ok(vec![Item::Message(payload.clone(), binary)]));
        }
    }
    let mut out = Vec::new();
    encode(&mut out, OutKind::Ping, b"abc");
    assert_eq!(out, b"\x89\x03abc");
    let mut out = Vec::new();
    encode(&mut out, OutKind::Pong, &[7; 200]);
    assert_eq!(
        decode_all(&as_client_frame(&out)),
        Ok(vec![Item::Pong(vec![7; 125])])
    );
}

#[test]
fn encoded_close_round_trips_and_truncates_on_a_char_boundary() {
    let mut out = Vec::new();
    encode_close(&mut out, 1001, "Server shutting down");
    assert_eq!(&out[..4], b"\x88\x16\x03\xe9");
    let items = decode_all(&as_client_frame(&out));
    assert_eq!(
        items,
        Ok(vec![Item::Close(
            Some(1001),
            "Server shutting down".to_owned()
        )])
    );

    let long = "é".repeat(100);
    let mut out = Vec::new();
    encode_close(&mut out, 1008, &long);
    assert_eq!(out.len(), 2 + 2 + 122);
    let items = decode_all(&as_client_frame(&out));
    assert_eq!(items, Ok(vec![Item::Close(Some(1008), "é".repeat(61))]));

    let exact = "x".repeat(123);
    let mut out = Vec::new();
    encode_close(&mut out, 1000, &(exact.clone() + "yz"));
    assert_eq!(
        decode_all(&as_client_frame(&out)),
        Ok(vec![Item::Close(Some(1000), exact)])
    );
}

/// A frame that is valid or nearly so: random flags, opcode, mask, length format and content.
fn random_frame(rng: &mut Rng) -> Vec<u8> {
    let opcode = [0u8, 1, 2, 8, 9, 10, 3, 0xB][rng.below(8)];
    let mut first = opcode | if rng.below(4) == 0 { 0 } else { 0x80 };
    if rng.below(16) == 0 {
        first |= 0x10 << rng.below(3);
    }
    let len = match rng.below(40) {
        0 => rng.below(70_000),
        1..=4 => 126 + rng.below(300),
        _ => rng.below(20),
    };
    // Random bytes at the start, one repeated byte after them (cheap for long payloads).
    let mut payload = vec![rng.next() as u8; len];
    for byte in payload.iter_mut().take(400) {
        *byte = rng.next() as u8;
    }
    if rng.below(2) == 0 {
        for byte in payload.iter_mut() {
            *byte &= 0x7f;
        }
    }
    if opcode == 8 && payload.len() >= 2 && rng.below(2) == 0 {
        payload[..2].copy_from_slice(&1000u16.to_be_bytes());
    }
    let mask = (rng.below(20) != 0).then(|| (rng.next() as u32).to_ne_bytes());
    let mut out = frame_raw(first, &payload, mask);
    if rng.below(30) == 0 {
        // A forged length: anything from a short count to 2^64 - 1.
        out[1] = (out[1] & 0x80) | 127;
        out.splice(2..2, rng.next().to_be_bytes());
    }
    out
}

#[test]
fn byte_soup_never_panics() {
    let mut rng = Rng::new(0x9e37_79b9_7f4a_7c15);
    for round in 0..6000 {
        let input: Vec<u8> = if round % 3 == 0 {
            (0..rng.below(200)).map(|_| rng.next() as u8).collect()
        } else {
            (0..1 + rng.below(6))
                .flat_map(|_| random_frame(&mut rng))
                .collect()
        };
        let mut cuts: Vec<usize> = (0..rng.below(6))
            .map(|_| rng.below(input.len() + 1))
            .collect();
        cuts.sort_unstable();
        let limits = CodecLimits {
            max_payload: [10, 1000, 1 << 20][rng.below(3)],
            max_held: usize::MAX,
        };
        let stop_after = rng.below(10);
        let mut decoder = Decoder::default();
        let mut start = 0;
        let mut delivered = 0;
        for &cut in cuts.iter().chain(std::iter::once(&input.len())) {
            let mut piece = input[start..cut].to_vec();
            start = cut;
            let result = decoder.decode(&mut piece, &Cell::new(limits), &mut |item| {
                if let Incoming::Message {
                    data,
                    binary: false,
                } = item
                {
                    assert!(std::str::from_utf8(data).is_ok());
                }
                delivered += 1;
                delivered < stop_after
            });
            if result.is_err() || delivered >= stop_after {
                break;
            }
            if decoder.is_idle() {
                assert_eq!(decoder.heap_bytes(), 0);
            }
            assert!(decoder.heap_bytes() <= limits.max_payload + MAX_CONTROL_PAYLOAD);
        }
    }
}

#[test]
fn a_stop_takes_up_to_the_end_of_its_frame_and_the_rest_decodes_later() {
    let three = frame(true, 0x1, b"three");
    let input = [
        frame(true, 0x1, b"one"),
        frame(true, 0x9, b"p"),
        frame(true, 0x1, b"two"),
        three[..4].to_vec(),
    ]
    .concat();
    let mut decoder = Decoder::default();
    let mut all = input.clone();
    let mut seen = Vec::new();
    let taken = decoder
        .decode(&mut all, &Cell::new(LIMITS), &mut |item| {
            seen.push(Item::from(item));
            seen.len() < 3
        })
        .unwrap();
    assert_eq!(
        taken,
        input.len() - 4,
        "up to the end of the frame it stopped at"
    );
    assert_eq!(all[taken..], input[taken..], "the rest untouched");
    let mut rest = all[taken..].to_vec();
    rest.extend_from_slice(&three[4..]);
    let mut later = Vec::new();
    let taken = decoder
        .decode(&mut rest, &Cell::new(LIMITS), &mut |item| {
            later.push(Item::from(item));
            true
        })
        .unwrap();
    assert_eq!(taken, rest.len());
    assert_eq!(seen, [text("one"), Item::Ping(b"p".to_vec()), text("two")]);
    assert_eq!(later, [text("three")]);
}

/// `decode_frames` stops after its frames at a frame's end, leaves the rest as it was, and
/// decoding the rest afterwards gives what one call would have.
#[test]
fn a_frame_bound_stops_at_a_frame_end_and_the_rest_decodes_later() {
    let mut input = frame(false, 0x1, b"ab");
    for _ in 0..10 {
        input.extend(frame(false, 0x0, b""));
    }
    input.extend(frame(false, 0x0, b"c"));
    input.extend(frame(true, 0x0, b"d"));
    input.extend(frame(true, 0x9, b"p"));
    let whole = decode_all(&input).expect("valid");
    let mut decoder = Decoder::default();
    let mut items = Vec::new();
    let mut rest = input.clone();
    let mut calls = 0;
    while !rest.is_empty() {
        let before = rest.clone();
        let taken = decoder
            .decode_frames(&mut rest, &Cell::new(LIMITS), 4, &mut |item| {
                items.push(Item::from(item));
                true
            })
            .expect("valid");
        assert!(taken > 0 && taken <= rest.len());
        assert_eq!(rest[taken..], before[taken..], "the rest is left untouched");
        rest.drain(..taken);
        calls += 1;
    }
    assert_eq!(calls, 4, "14 frames, 4 at a time");
    assert_eq!(items, whole);
    assert!(decoder.is_idle());
}

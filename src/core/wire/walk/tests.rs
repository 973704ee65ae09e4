use super::*;
use crate::core::wire::compact::{compact_serde, Budget, CompactError};
use crate::core::wire::envelope::parse_envelope_serde;
use crate::core::wire::payloads::{self, parse_text, AgentRegisterIn};
use crate::core::wire::{parse_envelope, strict as strict_check, EnvelopeError};
use crate::fuzzing::json;
use crate::testkit::Rng;

const PIECES: [&str; 24] = [
    "a",
    "b",
    "ab",
    "hello world",
    "\u{e9}",
    "\u{1f600}",
    "\\n",
    "\\\"",
    "\\\\",
    "\\/",
    "\\u0041",
    "\\u00e9",
    "\\ud83d\\ude00",
    "\\ud800",
    "\\udc00",
    "\\u0000",
    "\\ud800\\u0041",
    "\\ud800\\n",
    "\\x",
    "\\u12",
    "\u{1}",
    "\t",
    "12345678",
    "\\b\\f\\r\\t",
];

const KEYS: [&str; 8] = [
    "a", "b", "ab", "a\\u0062", "\\u0061b", "", "k\\u0000", "\\ud800",
];

const NUMBERS: [&str; 34] = [
    "0",
    "-0",
    "1",
    "-1",
    "123456789012345678",
    "-123456789012345678",
    "1234567890123456789",
    "12345678901234567890",
    "-9223372036854775809",
    "123456789012345678901234567890",
    "1.5",
    "-1.5e3",
    "1e308",
    "1.7976931348623157e308",
    "1.7976931348623159e308",
    "1e309",
    "-1e309",
    "2e308",
    "0.1e310",
    "1e-400",
    "0e99999",
    "1E+2",
    "1e-2",
    "01",
    "1.",
    "-",
    "1e",
    "1e+",
    "00",
    "9007199254740993",
    "4.9e-324",
    "0.30000000000000004",
    "-0.0",
    "1e99999999999999999999",
];

fn ws(rng: &mut Rng, out: &mut String) {
    if rng.one_in(4) {
        out.push_str(rng.pick::<&str>(&[" ", "\n", "\t", "\r", "  \n "]));
    }
}

fn string(rng: &mut Rng, out: &mut String) {
    out.push('"');
    for _ in 0..rng.below(4) {
        let piece = rng.pick(&PIECES);
        // Mostly valid pieces: the invalid ones (raw control characters, bad escapes, lone
        // surrogates) are the last eight.
        if rng.one_in(3) || PIECES[..16].contains(piece) {
            out.push_str(piece);
        } else {
            out.push_str("plain text");
        }
    }
    if rng.one_in(8) {
        out.push_str(&"x".repeat(rng.below(40)));
    }
    out.push('"');
}

fn value(rng: &mut Rng, depth: usize, out: &mut String) {
    ws(rng, out);
    let pick = if depth == 0 {
        rng.below(4)
    } else {
        rng.below(7)
    };
    match pick {
        0 => string(rng, out),
        1 => out.push_str(if rng.one_in(6) {
            rng.pick::<&str>(&NUMBERS)
        } else {
            rng.pick::<&str>(&NUMBERS[..7])
        }),
        2 => out.push_str(rng.pick::<&str>(&["true", "false", "null"])),
        3 => out.push_str(&format!("{}", rng.below(1000))),
        4 | 5 => {
            out.push('{');
            let wide = rng.one_in(8);
            let n = rng.below(if wide { 20 } else { 4 });
            for i in 0..n {
                if i > 0 {
                    out.push(',');
                }
                ws(rng, out);
                if rng.one_in(3) {
                    out.push('"');
                    out.push_str(rng.pick::<&str>(&KEYS));
                    out.push('"');
                } else {
                    out.push_str(&format!("\"k{}\"", rng.below(1 << 20)));
                }
                ws(rng, out);
                out.push(':');
                value(rng, depth - 1, out);
            }
            ws(rng, out);
            out.push('}');
        }
        _ => {
            out.push('[');
            for i in 0..rng.below(5) {
                if i > 0 {
                    out.push(',');
                }
                value(rng, depth - 1, out);
            }
            ws(rng, out);
            out.push(']');
        }
    }
    ws(rng, out);
}

/// A payload object, sometimes wrapped in deep arrays near the depth limits.
fn payload(rng: &mut Rng) -> Vec<u8> {
    let mut out = String::from("{\"p\":");
    if rng.one_in(10) {
        let deep = rng.pick(&[120, 125, 126, 127, 128, 129]);
        out.push_str(&"[".repeat(*deep));
        value(rng, 2, &mut out);
        out.push_str(&"]".repeat(*deep));
    } else {
        value(rng, 4, &mut out);
    }
    out.push('}');
    out.into_bytes()
}

fn mutate(rng: &mut Rng, text: &mut Vec<u8>) {
    const BYTES: &[u8] = b"{}[],:\"\\ 0123456789eE.+-tfnu\x01\xff\xc3";
    for _ in 0..=rng.below(3) {
        if text.is_empty() {
            return;
        }
        let at = rng.below(text.len());
        match rng.below(5) {
            0 => {
                text.remove(at);
            }
            1 => text.insert(at, *rng.pick(BYTES)),
            2 => text[at] = *rng.pick(BYTES),
            3 => text.truncate(at),
            _ => {
                let end = (at + rng.below(16)).min(text.len());
                let copy = text[at..end].to_vec();
                let to = rng.below(text.len());
                text.splice(to..to, copy);
            }
        }
    }
}

/// The walk against the `serde_json` reads, on generated JSON, valid and mutated (and as
/// an envelope: the whole message mutated too).
#[test]
fn the_walk_decides_and_writes_what_serde_json_does() {
    // `WALK_ROUNDS` and `WALK_SEED` run more, or other, rounds.
    let env = |name: &str, default: u64| {
        std::env::var(name)
            .ok()
            .and_then(|v| v.parse().ok())
            .unwrap_or(default)
    };
    let mut rng = Rng::new(env("WALK_SEED", 0x5eed_1e55));
    let (mut accepted, mut refused) = (0, 0);
    for round in 0..env("WALK_ROUNDS", 20_000) {
        let mut text = payload(&mut rng);
        if round % 2 == 1 {
            mutate(&mut rng, &mut text);
        }
        // The strict walk decides every payload itself.
        match strict(&text) {
            Ok(()) => accepted += 1,
            Err(Stop::Refused(_)) => refused += 1,
            Err(other) => panic!("{other:?}: {}", String::from_utf8_lossy(&text)),
        }
        json::run(&text);
        let mut message = [
            br#"{"type":"chat","id":"1","#.as_slice(),
            rng.pick(&[
                r#""sessionId":"r\u0031","#,
                r#""target":{"a":[1,{"\ud800":1}]},"#,
                r#""replyTo":-5,"x":[[[{}]]],"#,
                r#""id":"2","#,
                "",
            ])
            .as_bytes(),
            b"\"payload\":",
            &text,
            b"}",
        ]
        .concat();
        if round % 3 == 0 {
            mutate(&mut rng, &mut message);
        }
        json::run(&message);
    }
    // The generator reaches both sides.
    assert!(accepted > 2_000 && refused > 2_000, "{accepted} {refused}");
}

#[test]
fn strict_walk_agrees_on_the_edges() {
    let nested = |depth: usize| {
        format!(
            "{{\"a\":{}{}}}",
            "[".repeat(depth - 1),
            "]".repeat(depth - 1)
        )
    };
    assert!(strict(nested(STRICT_DEPTH).as_bytes()).is_ok());
    assert!(strict(nested(STRICT_DEPTH + 1).as_bytes()).is_err());
    assert!(strict(nested(100_000).as_bytes()).is_err());
    assert_eq!(STRICT_DEPTH, strict_check::MAX_DEPTH);
    for ok in [
        r#"{"a":1,"b":{"a":1},"c":[{"a":1},{"a":1}]}"#,
        r#"{"n":[1e308,-1e308,12345678901234567890123,1e-400,0e99999]}"#,
        r#"{"e":"\ud83d\ude00\u0000\n"}"#,
    ] {
        assert_eq!(strict(ok.as_bytes()), Ok(()), "{ok}");
    }
    for bad in [
        r#"{"a":1,"a":2}"#,
        r#"{"ab":1,"a\u0062":2}"#,
        r#"{"s":"\ud800"}"#,
        r#"{"s":"\udc00"}"#,
        r#"{"n":1e999999}"#,
        r#"{"n":-1e309}"#,
        r#"{"a":1} x"#,
        "{\"s\":\"\u{1}\"}",
        r#"{"a":[1,]}"#,
    ] {
        assert!(
            matches!(strict(bad.as_bytes()), Err(Stop::Refused(_))),
            "{bad}"
        );
        assert!(strict_check::check_serde(bad.as_bytes()).is_err(), "{bad}");
    }
}

/// An object of 100 000 keys is checked by buckets of hashes, not 10^10 comparisons; a
/// duplicate at either end is found.
#[test]
fn many_keys_are_checked_by_buckets() {
    let keys: Vec<String> = (0..100_000).map(|i| format!("\"k{i}\":0")).collect();
    let object = format!("{{{}}}", keys.join(","));
    assert!(strict(object.as_bytes()).is_ok());
    let twice = format!("{{{},\"k0\":1}}", keys.join(","));
    assert!(strict(twice.as_bytes()).is_err());
    let escaped = format!("{{\"k\\u0031\":1,{}}}", keys.join(","));
    assert!(strict(escaped.as_bytes()).is_err());
    // In an object of a few keys a duplicate stops the walk at once, refused at the second
    // key: what follows it is not read (here it is not even JSON).
    let early = format!("{{\"a\":1,\"b\":2,\"a\":3,{}", "x".repeat(1000));
    let mut walker = Walker::new(early.as_bytes());
    let refused = Refusal {
        what: "duplicate key in an object",
        at: 13,
    };
    assert_eq!(
        walker.value(Mode::Strict, STRICT_DEPTH),
        Err(Stop::Refused(refused))
    );
    assert_eq!(&early[..walker.pos], r#"{"a":1,"b":2,"a""#);
    // Sizes around the bucket counts, a duplicate at the end and the start.
    for n in [9, 10, 15, 16, 17, 31, 64, 1000, 4097] {
        let keys: Vec<String> = (0..n).map(|i| format!("\"{i}\":0")).collect();
        let object = format!("{{{}}}", keys.join(","));
        assert!(strict(object.as_bytes()).is_ok(), "{n}");
        let last = format!("{{{},\"{}\":1}}", keys.join(","), n - 1);
        assert!(strict(last.as_bytes()).is_err(), "{n}");
        let first = format!("{{\"0\":1,{}}}", keys[1..].join(",") + ",\"0\":2");
        assert!(strict(first.as_bytes()).is_err(), "{n}");
    }
}

/// Keys are duplicates only within one object: the same keys in nested and sibling wide
/// objects pass, as they do for `serde_json`, with the buffers reused between them.
#[test]
fn large_objects_are_checked_apart() {
    let wide = |n: usize, inner: &str| {
        let mut keys: Vec<String> = (0..n).map(|i| format!("\"k{i}\":{i}")).collect();
        keys.insert(n / 2, format!("\"inner\":{inner}"));
        format!("{{{}}}", keys.join(","))
    };
    let mut text = "1".to_owned();
    for n in [3, 9, 40, 8, 200, 9, 1000] {
        text = wide(n, &text);
        assert!(strict(text.as_bytes()).is_ok(), "{n}");
        assert_eq!(strict_check::check_serde(text.as_bytes()), Ok(()));
    }
    let siblings = format!("{{\"a\":[{}]}}", vec![wide(50, "2"); 30].join(","));
    assert!(strict(siblings.as_bytes()).is_ok());
    // A duplicate in the innermost, or in an outer object after an inner one ended.
    for (at, dup) in [(0, "\"k1\":0,"), (1, "\"k5\":0,")] {
        let mut text = wide(20, &wide(30, &wide(10, "1")));
        let inner = text
            .match_indices("\"inner\":")
            .nth(at)
            .map(|(i, _)| i)
            .unwrap();
        let close = text[inner..].find('}').unwrap() + inner + 1;
        text.insert_str(close + 1, dup);
        assert!(strict(text.as_bytes()).is_err(), "{text}");
        assert!(strict_check::check_serde(text.as_bytes()).is_err());
    }
}

/// Stored client JSON: compacted in the strict walk, keys written as for [`compact`].
#[test]
fn the_strict_compaction_writes_keys_and_refuses_duplicates() {
    let raw = r#" { "b" : [ 1 , { "x\u0041" : 2 , "y" : {} } ] , "a" : "s" } "#;
    let (mut a, mut b) = (Vec::new(), Vec::new());
    compact_strict(raw.as_bytes(), &mut a, 1 << 20).unwrap();
    compact(raw.as_bytes(), &mut b, 1 << 20).unwrap();
    assert_eq!(a, b);
    assert_eq!(a, br#"{"b":[1,{"xA":2,"y":{}}],"a":"s"}"#);
    for dup in [r#"{"x":true,"x":false}"#, r#"{"o":[{"ab":1,"a\u0062":2}]}"#] {
        assert!(compact(dup.as_bytes(), &mut Vec::new(), 1 << 20).is_ok());
        assert!(
            compact_strict(dup.as_bytes(), &mut Vec::new(), 1 << 20).is_err(),
            "{dup}"
        );
    }
}

/// A message whose nesting passes 128 levels outside its payload is found, in the member
/// it is in.
#[test]
fn nesting_is_counted_over_the_whole_message() {
    let deep = |levels: usize| format!("{}{}", "[".repeat(levels), "]".repeat(levels));
    let message = |zz: &str| format!(r#"{{"type":"ping","id":"x","z\"z":{zz},"payload":{{}}}}"#);
    assert_eq!(too_deep(message(&deep(127)).as_bytes()), None);
    assert_eq!(
        too_deep(message(&deep(128)).as_bytes()),
        Some(&br#"z\"z"#[..])
    );
    assert_eq!(
        too_deep(message(&deep(500_000)).as_bytes()),
        Some(&br#"z\"z"#[..])
    );
    let text = format!(r#"{{"a":"[[[[","payload":{{"p":{}}}}}"#, deep(126));
    assert_eq!(too_deep(text.as_bytes()), None);
    let text = format!(r#"{{"a":"[[[[","payload":{{"p":{}}}}}"#, deep(127));
    assert_eq!(too_deep(text.as_bytes()), Some(&b"payload"[..]));
    // The walk notes the first member that deep and goes on; the envelope refuses it.
    fn noted(text: &str) -> Option<&[u8]> {
        envelope(text.as_bytes(), |_| true, |_| None).unwrap().deep
    }
    assert_eq!(noted(&message(&deep(127))), None);
    assert_eq!(noted(&message(&deep(128))), Some(&br#"z\"z"#[..]));
    assert_eq!(noted(&message(&deep(500_000))), Some(&br#"z\"z"#[..]));
    let member = |levels| format!(r#"{{"type":"ping","id":{{"a":{}}}}}"#, deep(levels));
    assert_eq!(noted(&member(126)), None);
    assert_eq!(noted(&member(127)), Some(&b"id"[..]));
    assert_eq!(too_deep(member(127).as_bytes()), Some(&b"id"[..]));
    // The payload, checked or not, after a duplicate key the check keeps; a member after
    // one already too deep; and the grammar still checked past the depth.
    let payload = |t: &str, levels| {
        format!(
            r#"{{"type":"{t}","id":"x","payload":{{"k":1,"k":[{}]}}}}"#,
            deep(levels)
        )
    };
    for t in ["chat", "agent_register"] {
        assert_eq!(noted(&payload(t, 125)), None);
        assert_eq!(noted(&payload(t, 126)), Some(&b"payload"[..]));
    }
    let two = format!(
        r#"{{"a":{},"type":"x","id":{},"b":1}}"#,
        deep(200),
        deep(300)
    );
    assert_eq!(noted(&two), Some(&b"a"[..]));
    let broken = format!(r#"{{"type":"x","id":"x","a":{}]}}"#, deep(200));
    assert!(matches!(
        envelope(broken.as_bytes(), |_| true, |_| None),
        Err(Stop::Refused(_))
    ));
    // A lone surrogate in a member the envelope reads is the message's refusal, a member
    // too deep before it or not.
    for text in [
        r#"{"type":"ping","id":"\ud800"}"#.to_owned(),
        r#"{"type":"ping","id":"x","sessionId":{"\udc00":1}}"#.to_owned(),
        format!(
            r#"{{"type":"ping","id":"x","a":{},"target":"\ud800"}}"#,
            deep(200)
        ),
    ] {
        let m = text.as_bytes();
        assert!(
            matches!(envelope(m, |_| true, |_| None), Err(Stop::Refused(_))),
            "{text}"
        );
        assert!(matches!(parse_envelope(m), Err(EnvelopeError::Parse(_))));
        assert!(matches!(
            parse_envelope_serde(m),
            Err(EnvelopeError::Parse(_))
        ));
    }
    // The same outcome as serde_json's read with the scan after it, for every member.
    for levels in [125, 126, 127, 128, 129, 300, 100_000] {
        let d = deep(levels);
        for text in [
            format!(r#"{{"type":"ping","id":"x","z":{d}}}"#),
            format!(r#"{{"type":"ping","id":"x","sessionId":{d}}}"#),
            format!(r#"{{"type":{d},"id":"x"}}"#),
            format!(r#"{{"type":"ping","id":{d}}}"#),
            format!(r#"{{"type":"ping","id":"x","target":{{"t":{d}}}}}"#),
            format!(r#"{{"type":"chat","id":"x","payload":{{"p":{d}}}}}"#),
            format!(r#"{{"type":"ping","id":"x","payload":{{"p":{d}}}}}"#),
            format!(r#"{{"type":"chat","id":"x","payload":{{"a":1,"a":{d}}}}}"#),
            format!(r#"{{"id":"x","payload":{d},"type":"chat"}}"#),
        ] {
            let m = text.as_bytes();
            let (fast, slow) = (parse_envelope(m), parse_envelope_serde(m));
            match (&fast, &slow) {
                (Ok(a), Ok(b)) => assert_eq!(a.payload, b.payload),
                (Err(EnvelopeError::Parse(_)), Err(EnvelopeError::Parse(_))) => {}
                _ => assert_eq!(fast, slow, "{levels}: {}", &text[..60.min(text.len())]),
            }
        }
    }
}

#[test]
fn compact_walk_writes_serde_json_text() {
    let raw = r#" { "b" : [ 1 , -2 , 1.5e3 , true , null , "x\"\u0041\n" ] , "a" : { } , "c":[ ] , "d":-0, "e":12345678901234567890123 } "#;
    let mut out = Vec::new();
    compact(raw.as_bytes(), &mut out, 1 << 20).unwrap();
    let mut reference = Vec::new();
    compact_serde(
        raw.as_bytes(),
        &mut Budget {
            out: &mut reference,
            max: 1 << 20,
        },
    )
    .unwrap();
    assert_eq!(out, reference);
    assert_eq!(
        String::from_utf8(out).unwrap(),
        r#"{"b":[1,-2,1500.0,true,null,"x\"A\n"],"a":{},"c":[],"d":-0.0,"e":1.2345678901234568e+22}"#
    );
    let mut out = Vec::new();
    assert_eq!(compact(b"[1,2,3]", &mut out, 6), Err(Stop::TooLarge));
}

#[test]
fn the_envelope_walk_checks_the_payload_on_its_way() {
    let text = br#"{"type":"chat","id":"1","payload":{"a":[1,2]}}"#;
    let walked = envelope(text, |_| true, |_| None).unwrap();
    assert_eq!(walked.payload_check, Some(Ok(())));
    assert_eq!(walked.payload, Some(br#"{"a":[1,2]}"#.as_slice()));
    // A refusal of the payload is kept, its offset counted from the payload, and the walk
    // goes on to the envelope's end.
    let twice = br#"{"type":"chat","id":"1","payload":{"a":1,"a":2},"sessionId":"s"}"#;
    let walked = envelope(twice, |_| true, |_| None).unwrap();
    let refused = Refusal {
        what: "duplicate key in an object",
        at: 7,
    };
    assert_eq!(walked.payload_check, Some(Err(refused)));
    assert_eq!(walked.payload, Some(br#"{"a":1,"a":2}"#.as_slice()));
    assert_eq!(walked.members[2], Some(Member::Str("s".into())));
    let payload = br#"{"a":1,"a":2}"#;
    assert_eq!(strict(payload), Err(Stop::Refused(refused)));
    let env = parse_envelope(twice).unwrap();
    assert_eq!(
        env.payload_check,
        Some(Err(strict_check::check(payload).unwrap_err()))
    );
    // Past the depth limit, with a lone surrogate and a number out of range after it: the
    // first is kept, and the grammar is still checked to the end.
    let deep = format!(
        r#"{{"type":"chat","id":"1","payload":{{"a":{}"\ud800",1e999{}}}}}"#,
        "[".repeat(200),
        "]".repeat(200)
    );
    let walked = envelope(deep.as_bytes(), |_| true, |_| None).unwrap();
    assert_eq!(
        walked.payload_check.unwrap().unwrap_err().what,
        "nesting deeper than 127 levels"
    );
    let broken = deep.replacen("1e999]", "1e999,]", 1);
    assert_eq!(
        envelope(broken.as_bytes(), |_| true, |_| None).unwrap_err(),
        Stop::Refused(Refusal {
            what: "expected a value",
            at: broken.find(",]").unwrap() + 1,
        })
    );
    // A known member twice is refused as soon as its name is read.
    assert_eq!(
        envelope(
            br#"{"type":"a","t\u0079pe":"b","id":"1"}"#,
            |_| true,
            |_| None
        )
        .unwrap_err(),
        Stop::Refused(Refusal {
            what: "duplicate field `type`",
            at: 12,
        })
    );
    // A type whose payload is not forwarded: not checked on the way.
    let typed = br#"{"type":"agent_register","id":"1","payload":{"a":1}}"#;
    assert_eq!(parse_envelope(typed).unwrap().payload_check, None);
    let late = br#"{"id":"1","payload":{"a":1},"type":"agent_register"}"#;
    assert_eq!(parse_envelope(late).unwrap().payload_check, Some(Ok(())));
    // Text that is not UTF-8 is left to serde_json.
    let latin = b"{\"type\":\"chat\",\"id\":\"1\",\"x\":\"\xe9\"}";
    assert_eq!(
        envelope(latin, |_| true, |_| None).unwrap_err(),
        Stop::Unsure
    );
    assert_eq!(parse_envelope(latin), parse_envelope_serde(latin));
}

/// A message of 1 MiB refused at its last bytes is refused by the walk itself (one pass),
/// with the code and field `serde_json`'s read gives.
#[test]
fn a_large_message_refused_at_its_end_is_refused_by_the_walk() {
    let filler = format!("[{}0]", "0,".repeat(1 << 19));
    let cases = [
        // A relay whose payload has a key twice at its end.
        format!(
            r#"{{"type":"chat","id":"1","sessionId":"s","payload":{{"d":{filler},"k":1,"k":2}}}}"#
        ),
        // A lone surrogate at the end.
        format!(
            r#"{{"type":"chat","id":"1","sessionId":"s","payload":{{"d":{filler},"k":"\udc00"}}}}"#
        ),
        // A syntax error at the end (a missing `}`).
        format!(r#"{{"type":"agent_register","id":"1","payload":{{"metadata":{{"d":{filler}}}}}"#),
    ];
    for (i, message) in cases.iter().enumerate() {
        let m = message.as_bytes();
        let walked = envelope(m, |t| t == "chat", |_| None);
        let (fast, slow) = (parse_envelope(m), parse_envelope_serde(m));
        match i {
            0 | 1 => {
                let checked = walked.unwrap().payload_check.unwrap().unwrap_err();
                let env = fast.unwrap();
                let payload = env.payload;
                assert_eq!(checked.at, payload.len() - if i == 0 { 6 } else { 8 });
                assert!(slow.unwrap().payload_check.is_none());
                let serde = strict_check::check_serde(payload).unwrap_err();
                let refused = env.payload_check.unwrap().unwrap_err();
                assert_eq!((refused.field, serde.field), ("payload", "payload"));
            }
            _ => {
                assert_eq!(
                    walked.unwrap_err(),
                    Stop::Refused(Refusal {
                        what: "unexpected end of the text",
                        at: m.len(),
                    })
                );
                assert!(matches!(fast, Err(EnvelopeError::Parse(_))));
                assert!(matches!(slow, Err(EnvelopeError::Parse(_))));
            }
        }
    }
}

/// ns/byte of the old and the new reads, side by side in one run (a ratio that machine
/// noise mostly cancels). `cargo test --release --lib wire::walk::tests::speed -- --ignored
/// --nocapture`.
#[test]
#[ignore]
fn speed() {
    use std::time::Instant;
    fn time(bytes: usize, mut f: impl FnMut()) -> f64 {
        let mut best = f64::MAX;
        for _ in 0..7 {
            let start = Instant::now();
            let mut n = 0;
            while n < 8 || start.elapsed().as_millis() < 50 {
                f();
                n += 1;
            }
            best = best.min(start.elapsed().as_nanos() as f64 / n as f64 / bytes as f64);
        }
        best
    }
    let zeros = |len: usize| {
        let n = len / 2;
        let mut s = String::from("{\"d\":[0");
        for _ in 1..n {
            s.push_str(",0");
        }
        s.push_str("]}");
        s
    };
    let strings = |len: usize| {
        let mut s = String::from("{\"d\":[");
        let mut i = 0;
        while s.len() < len {
            if i > 0 {
                s.push(',');
            }
            s.push_str(&format!(
                "{{\"id\":{i},\"text\":\"{}\"}}",
                "lorem ipsum dolor ".repeat(5)
            ));
            i += 1;
        }
        s.push_str("]}");
        s
    };
    let cases = [
        ("1 MiB [0,0,...]", zeros(1 << 20)),
        ("64 KiB [0,0,...]", zeros(1 << 16)),
        ("1 MiB strings", strings(1 << 20)),
    ];
    println!(
        "{:<20} {:>24} {:>24} {:>24} {:>24}",
        "ns/byte (old / new)", "envelope, chat", "strict check", "compact", "envelope, other type"
    );
    for (name, payload) in &cases {
        let message = format!(r#"{{"type":"chat","id":"1","sessionId":"s","payload":{payload}}}"#);
        let p = payload.as_bytes();
        let m = message.as_bytes();
        let env_old = time(m.len(), || assert!(parse_envelope_serde(m).is_ok()));
        let env_new = time(m.len(), || {
            assert_eq!(parse_envelope(m).unwrap().payload_check, Some(Ok(())))
        });
        let other = message.replacen("\"chat\"", "\"other\"", 1);
        let o = other.as_bytes();
        let other_old = time(o.len(), || assert!(parse_envelope_serde(o).is_ok()));
        let other_new = time(o.len(), || assert!(parse_envelope(o).is_ok()));
        let strict_old = time(p.len(), || assert!(strict_check::check_serde(p).is_ok()));
        let strict_new = time(p.len(), || assert!(strict(p).is_ok()));
        let mut out = Vec::with_capacity(p.len());
        let compact_old = time(p.len(), || {
            out.clear();
            assert!(compact_serde(
                p,
                &mut Budget {
                    out: &mut out,
                    max: 1 << 21
                }
            )
            .is_ok());
        });
        let compact_new = time(p.len(), || {
            out.clear();
            assert!(compact(p, &mut out, 1 << 21).is_ok());
        });
        let pair = |a: f64, b: f64| format!("{a:.2} / {b:.2} ({:.1}x)", a / b);
        println!(
            "{name:<20} {:>24} {:>24} {:>24} {:>24}",
            pair(env_old, env_new),
            pair(strict_old, strict_new),
            pair(compact_old, compact_new),
            pair(other_old, other_new)
        );
    }
}

/// One read picked by `WALK_CASE` (`envelope_old`, `envelope_new`, `strict_old`,
/// `strict_new`, `compact_old`, `compact_new`, `typed_old` and `typed_new`: the envelope and
/// an `agent_register` payload read from the whole payload or from the noted members, or
/// nothing) 4 times over a 1 MiB payload (`WALK_PAYLOAD`: `zeros`, the default, `strings`,
/// `wide`, `topwide`: the keys of `wide` as the payload's own members, or `nested`; the
/// message's type is `WALK_TYPE`, `chat` by default): for instruction counts under
/// `valgrind --tool=callgrind`, where the difference from the empty case is the read's.
#[test]
#[ignore]
fn profile() {
    let case = std::env::var("WALK_CASE").unwrap_or_default();
    let kind = std::env::var("WALK_PAYLOAD").unwrap_or_default();
    let mut payload = String::from("{\"d\":[");
    if kind == "strings" {
        let mut i = 0;
        while payload.len() < 1 << 20 {
            if i > 0 {
                payload.push(',');
            }
            payload.push_str(&format!(
                "{{\"id\":{i},\"text\":\"{}\"}}",
                "lorem ipsum dolor ".repeat(5)
            ));
            i += 1;
        }
    } else if kind == "wide" {
        // One object of distinct keys (`"k1":0,"k2":0,...`), as wide as 1 MiB allows.
        payload.truncate(payload.len() - 1);
        payload.push_str("{\"k0\":0");
        let mut i = 1;
        while payload.len() < 1 << 20 {
            payload.push_str(&format!(",\"k{i}\":0"));
            i += 1;
        }
        payload.push('}');
    } else if kind == "topwide" {
        // The same keys as the payload's own members (`{"k0":0,"k1":0,...}`).
        payload = String::from("{\"k0\":0");
        let mut i = 1;
        while payload.len() < 1 << 20 {
            payload.push_str(&format!(",\"k{i}\":0"));
            i += 1;
        }
    } else if kind == "nested" {
        payload.push_str(&"[".repeat(1 << 19));
        payload.push_str(&"]".repeat(1 << 19));
    } else {
        payload.push('0');
        while payload.len() < 1 << 20 {
            payload.push_str(",0");
        }
    }
    payload.push_str(match kind.as_str() {
        "topwide" => "}",
        "wide" => "}",
        _ => "]}",
    });
    let msg_type = std::env::var("WALK_TYPE").unwrap_or_else(|_| "chat".into());
    let message =
        format!(r#"{{"type":"{msg_type}","id":"1","sessionId":"s","payload":{payload}}}"#);
    let (p, m) = (payload.as_bytes(), message.as_bytes());
    let mut out = Vec::with_capacity(p.len());
    for _ in 0..4 {
        out.clear();
        match case.as_str() {
            "envelope_old" => assert!(parse_envelope_serde(m).is_ok()),
            "envelope_new" => assert!(parse_envelope(m).is_ok()),
            "strict_old" => assert_eq!(strict_check::check_serde(p).is_ok(), kind != "nested"),
            "strict_new" => assert_eq!(strict(p).is_ok(), kind != "nested"),
            "compact_old" => {
                assert!(compact_serde(
                    p,
                    &mut Budget {
                        out: &mut out,
                        max: 1 << 21
                    }
                )
                .is_ok())
            }
            "compact_new" => assert!(compact(p, &mut out, 1 << 21).is_ok()),
            "typed_old" => {
                let env = parse_envelope(m).unwrap();
                assert!(parse_text::<AgentRegisterIn<'_>>(env.payload).is_ok());
            }
            "typed_new" => {
                let env = parse_envelope(m).unwrap();
                assert!(payloads::parse::<AgentRegisterIn<'_>>(&env).is_ok());
            }
            _ => {}
        }
    }
    println!("{case} {} {}", p.len(), out.len());
}

#[test]
fn small_integer_runs_are_exactly_the_plain_ones() {
    let word = |text: &[u8; 8]| small_integers(u64::from_le_bytes(*text));
    for yes in [b"0,0,0,0,", b"1234567,", b"0,12,34,", b"9,0,100,"] {
        assert!(word(yes), "{}", String::from_utf8_lossy(yes));
    }
    for no in [
        b"0,0,0,00",
        b"0,0,0,01",
        b"01,0,0,0",
        b"0,,0,0,0",
        b",0,0,0,0",
        b"0,0,0,0 ",
        b"0,0,0,-1",
        b"0,0,0,0]",
        b"0,0,0,0.",
        b"00,0000,",
        b"0,0,01,,",
        b"0,\xc30,12,",
    ] {
        assert!(!word(no), "{}", String::from_utf8_lossy(no));
    }
    // Every byte string of digits and commas: the walk agrees with serde_json on the
    // array it makes.
    let alphabet = [b'0', b'1', b',', b'9'];
    for n in 0..4usize.pow(8) {
        let mut text = *b"00000000";
        let mut k = n;
        for byte in &mut text {
            *byte = alphabet[k % 4];
            k /= 4;
        }
        let array = [b"{\"a\":[0,".as_slice(), &text, b"0]}"].concat();
        let walked = strict(&array).is_ok();
        let read = strict_check::check_serde(&array).is_ok();
        assert_eq!(walked, read, "{}", String::from_utf8_lossy(&array));
    }
}

/// Runs of brackets (passed 8 at a time) around objects, across the bit stack's words and
/// the depth limits, as payloads, stored JSON and envelopes.
#[test]
fn bracket_runs_agree_with_serde_json() {
    let mut rng = Rng::new(7);
    for depth in (1..300).chain([1000, 5000]) {
        let mut text = String::from("{\"p\":");
        let mut closers = Vec::new();
        for _ in 0..depth {
            if rng.one_in(12) {
                text.push_str("{\"k\":");
                closers.push('}');
            } else {
                text.push('[');
                closers.push(']');
            }
        }
        text.push_str(rng.pick::<&str>(&["0", "[]", "{}", "\"s\""]));
        while let Some(c) = closers.pop() {
            text.push(c);
        }
        text.push('}');
        json::run(text.as_bytes());
        let plain = format!("{{\"p\":{}{}}}", "[".repeat(depth), "]".repeat(depth));
        json::run(plain.as_bytes());
    }
}

/// Compaction stops at the same place for every budget inside runs passed 8 bytes at a time
/// (small integers, brackets), with and without an error after them.
#[test]
fn budgets_inside_word_runs_agree_with_serde_json() {
    for text in [
        "[0,1,22,333,4,5,6,7,8,9,10,11,12,13,14,15,16,17,18,19]",
        "[0,1,22,333,4,5,6,7,8,9,10,11,12,13,14,15,16,17,18,19,]",
        "[[[[[[[[[[[[[[[[[[1]]]]]]]]]]]]]]]]]]",
        "[[[[[[[[[[[[[[[[[[1]]]]]]]]]]]]]]]]]] x",
        "{\"a\":[[[[[[[[[[0,0,0,0,0,0,0,0,0,0,0,0]]]]]]]]]]}",
    ] {
        for max in 0..text.len() + 2 {
            let (mut fast, mut slow) = (Vec::new(), Vec::new());
            let a = crate::core::wire::compact::compact(
                text.as_bytes(),
                &mut Budget {
                    out: &mut fast,
                    max,
                },
            );
            let b = compact_serde(
                text.as_bytes(),
                &mut Budget {
                    out: &mut slow,
                    max,
                },
            );
            // The same outcome: the same text, or a refusal for the budget, or for the text.
            let kind = |r: &Result<(), CompactError>| match r {
                Ok(()) => "ok",
                Err(CompactError::TooLarge) => "too large",
                Err(CompactError::Invalid(_)) => "invalid",
            };
            assert_eq!(kind(&a), kind(&b), "{text} at {max}: {a:?} {b:?}");
            assert_eq!(fast, slow, "{text} at {max}");
        }
    }
}

//! Writing outgoing envelopes (PROTOCOL section 2) straight into a byte buffer.
//!
//! Contract:
//! - [`write_envelope`] writes `{"type","id","payload","timestamp"}` plus `replyTo`,
//!   `sessionId` and `source` when given, as one JSON object. Strings are escaped here; no
//!   intermediate `String` or `Value` is built.
//! - The payload is written by a closure; when it reports failure, everything written for
//!   this envelope is removed from the buffer and [`write_envelope`] returns `false`.
//! - Generated ids ([`MsgId::Generated`]) come from [`next_message_id`], a process-wide
//!   counter, so they are unique within the process across every core in it.

use std::sync::atomic::{AtomicU64, Ordering};

use serde::Serialize;

static NEXT_MESSAGE_ID: AtomicU64 = AtomicU64::new(1);

/// A fresh number for a generated message id, unique within the process.
pub(crate) fn next_message_id() -> u64 {
    NEXT_MESSAGE_ID.fetch_add(1, Ordering::Relaxed)
}

/// Make every later generated id at least `base`: a cluster node puts its number in the
/// high bits, so that two nodes never generate the same id (PROTOCOL section 13).
pub(crate) fn set_message_id_base(base: u64) {
    NEXT_MESSAGE_ID.fetch_max(base, Ordering::Relaxed);
}

/// The `id` of an outgoing message.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum MsgId<'a> {
    /// A generated id, written as `g-` followed by the number in lowercase hex.
    Generated(u64),
    /// An id given by a client (a delivered `route_request` keeps the requester's id).
    Given(&'a str),
}

impl MsgId<'_> {
    /// A new generated id.
    pub(crate) fn fresh() -> Self {
        MsgId::Generated(next_message_id())
    }
}

/// The envelope fields of an outgoing message, everything but the payload.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Head<'a> {
    /// `type`
    pub msg_type: &'a str,
    /// `id`
    pub id: MsgId<'a>,
    /// `timestamp`, ms since the Unix epoch.
    pub timestamp: u64,
    /// `replyTo`: the id of the request this answers.
    pub reply_to: Option<&'a str>,
    /// `sessionId`, on session-scoped messages.
    pub session_id: Option<&'a str>,
    /// `source`: the sender's clientId, on relayed and routed messages.
    pub source: Option<&'a str>,
}

impl<'a> Head<'a> {
    /// A head with a fresh id and no optional fields.
    pub(crate) fn new(msg_type: &'a str, timestamp: u64) -> Self {
        Head {
            msg_type,
            id: MsgId::fresh(),
            timestamp,
            reply_to: None,
            session_id: None,
            source: None,
        }
    }

    /// Set `replyTo`.
    pub(crate) fn reply_to(mut self, id: &'a str) -> Self {
        self.reply_to = Some(id);
        self
    }

    /// Set `sessionId`.
    pub(crate) fn session(mut self, session_id: &'a str) -> Self {
        self.session_id = Some(session_id);
        self
    }

    /// Set `source`.
    pub(crate) fn source(mut self, client_id: &'a str) -> Self {
        self.source = Some(client_id);
        self
    }
}

/// Append one envelope to `buf`; `payload` writes the payload value and returns whether it
/// succeeded. On failure nothing is left in `buf` and the result is `false`.
pub(crate) fn write_envelope(
    buf: &mut Vec<u8>,
    head: &Head<'_>,
    payload: impl FnOnce(&mut Vec<u8>) -> bool,
) -> bool {
    let start = buf.len();
    buf.extend_from_slice(b"{\"type\":");
    write_str(buf, head.msg_type);
    buf.extend_from_slice(b",\"id\":");
    match head.id {
        MsgId::Generated(n) => {
            buf.extend_from_slice(b"\"g-");
            write_hex(buf, n);
            buf.push(b'"');
        }
        MsgId::Given(id) => write_str(buf, id),
    }
    buf.extend_from_slice(b",\"payload\":");
    if !payload(buf) {
        buf.truncate(start);
        return false;
    }
    buf.extend_from_slice(b",\"timestamp\":");
    write_u64(buf, head.timestamp);
    for (name, value) in [
        (&b",\"replyTo\":"[..], head.reply_to),
        (b",\"sessionId\":", head.session_id),
        (b",\"source\":", head.source),
    ] {
        if let Some(value) = value {
            buf.extend_from_slice(name);
            write_str(buf, value);
        }
    }
    buf.push(b'}');
    true
}

/// The length of the envelope [`write_envelope`] writes for `head` around a payload of
/// `payload_len` bytes, counted without writing it.
pub(crate) fn envelope_len(head: &Head<'_>, payload_len: usize) -> usize {
    let id = match head.id {
        MsgId::Generated(n) => 4 + hex_digits(n),
        MsgId::Given(id) => str_len(id),
    };
    let optional: usize = [
        ("replyTo", head.reply_to),
        ("sessionId", head.session_id),
        ("source", head.source),
    ]
    .iter()
    .filter_map(|(name, value)| value.map(|v| name.len() + 4 + str_len(v)))
    .sum();
    // {"type":T,"id":I,"payload":P,"timestamp":N}
    let fixed = r#"{"type":,"id":,"payload":,"timestamp":}"#.len();
    fixed + str_len(head.msg_type) + id + payload_len + decimal_digits(head.timestamp) + optional
}

/// The length of `text` as [`write_str`] writes it, quotes included.
pub(crate) fn str_len(text: &str) -> usize {
    2 + text
        .bytes()
        .map(|b| match b {
            b'"' | b'\\' | b'\n' | b'\r' | b'\t' | 0x08 | 0x0c => 2,
            0..=0x1f => 6,
            _ => 1,
        })
        .sum::<usize>()
}

/// Digits of `n` in decimal.
fn decimal_digits(n: u64) -> usize {
    n.checked_ilog10().map_or(1, |d| d as usize + 1)
}

/// Digits of `n` in lowercase hex, as [`write_hex`] writes it.
fn hex_digits(n: u64) -> usize {
    n.checked_ilog2().map_or(1, |d| d as usize / 4 + 1)
}

/// A payload writer that serializes `value` with serde_json.
pub(crate) fn ser<T: Serialize + ?Sized>(value: &T) -> impl FnOnce(&mut Vec<u8>) -> bool + '_ {
    move |buf| serde_json::to_writer(&mut *buf, value).is_ok()
}

/// A payload writer for values given by the host program or its handlers: like [`ser`], but
/// the result must be a JSON object, as every outgoing `payload` is (PROTOCOL section 2).
pub(crate) fn ser_object<T: Serialize + ?Sized>(
    value: &T,
) -> impl FnOnce(&mut Vec<u8>) -> bool + '_ {
    move |buf| {
        let start = buf.len();
        serde_json::to_writer(&mut *buf, value).is_ok() && buf.get(start) == Some(&b'{')
    }
}

/// A payload writer that copies JSON text verbatim.
pub(crate) fn raw(json: &[u8]) -> impl FnOnce(&mut Vec<u8>) -> bool + '_ {
    move |buf| {
        buf.extend_from_slice(json);
        true
    }
}

/// Append `text` as a JSON string literal.
pub(crate) fn write_str(buf: &mut Vec<u8>, text: &str) {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    buf.push(b'"');
    let bytes = text.as_bytes();
    let mut run = 0;
    for (i, &b) in bytes.iter().enumerate() {
        let escape: &[u8] = match b {
            b'"' => b"\\\"",
            b'\\' => b"\\\\",
            b'\n' => b"\\n",
            b'\r' => b"\\r",
            b'\t' => b"\\t",
            0x08 => b"\\b",
            0x0c => b"\\f",
            0..=0x1f => b"",
            _ => continue,
        };
        buf.extend_from_slice(&bytes[run..i]);
        if escape.is_empty() {
            buf.extend_from_slice(b"\\u00");
            buf.push(HEX[usize::from(b >> 4)]);
            buf.push(HEX[usize::from(b & 0xf)]);
        } else {
            buf.extend_from_slice(escape);
        }
        run = i + 1;
    }
    buf.extend_from_slice(&bytes[run..]);
    buf.push(b'"');
}

/// Append `n` in decimal.
pub(crate) fn write_u64(buf: &mut Vec<u8>, mut n: u64) {
    let mut digits = [0u8; 20];
    let mut at = digits.len();
    loop {
        at -= 1;
        digits[at] = b'0' + (n % 10) as u8;
        n /= 10;
        if n == 0 {
            break;
        }
    }
    buf.extend_from_slice(&digits[at..]);
}

fn write_hex(buf: &mut Vec<u8>, mut n: u64) {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    let mut digits = [0u8; 16];
    let mut at = digits.len();
    loop {
        at -= 1;
        digits[at] = HEX[(n & 0xf) as usize];
        n >>= 4;
        if n == 0 {
            break;
        }
    }
    buf.extend_from_slice(&digits[at..]);
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::{json, Value};

    fn parse(buf: &[u8]) -> Value {
        serde_json::from_slice(buf).expect("valid JSON")
    }

    #[test]
    fn writes_every_field() {
        let mut buf = b"junk".to_vec();
        let head = Head {
            msg_type: "chat",
            id: MsgId::Generated(0xbeef),
            timestamp: 1_764_201_600_000,
            reply_to: Some("r\"1"),
            session_id: Some("room"),
            source: Some("c"),
        };
        assert!(write_envelope(&mut buf, &head, raw(br#"{"a":[1]}"#)));
        assert_eq!(
            parse(&buf[4..]),
            json!({"type":"chat","id":"g-beef","payload":{"a":[1]},"timestamp":1_764_201_600_000u64,
                   "replyTo":"r\"1","sessionId":"room","source":"c"})
        );
    }

    #[test]
    fn optional_fields_are_left_out() {
        let mut buf = Vec::new();
        let head = Head {
            id: MsgId::Given("req-9"),
            ..Head::new("pong", 0)
        };
        assert!(write_envelope(
            &mut buf,
            &head,
            ser(&json!({"clientId":"x"}))
        ));
        assert_eq!(
            parse(&buf),
            json!({"type":"pong","id":"req-9","payload":{"clientId":"x"},"timestamp":0})
        );
    }

    #[test]
    fn a_failing_payload_leaves_nothing_behind() {
        let mut buf = b"keep".to_vec();
        assert!(!write_envelope(&mut buf, &Head::new("x", 1), |b| {
            b.extend_from_slice(b"partial");
            false
        }));
        assert_eq!(buf, b"keep");
        let mut bad = std::collections::BTreeMap::new();
        bad.insert(vec![1u8], 1);
        assert!(!write_envelope(&mut buf, &Head::new("x", 1), ser(&bad)));
        assert_eq!(buf, b"keep");
    }

    #[test]
    fn strings_escape_like_serde() {
        let all: String = (0u8..0x80).map(char::from).chain("é😀".chars()).collect();
        let mut buf = Vec::new();
        write_str(&mut buf, &all);
        let back: String = serde_json::from_slice(&buf).unwrap();
        assert_eq!(back, all);
        assert_eq!(buf, serde_json::to_vec(&all).unwrap());
    }

    #[test]
    fn numbers_and_ids() {
        for n in [0u64, 7, 10, 99, 1_000_000, u64::MAX] {
            let mut buf = Vec::new();
            write_u64(&mut buf, n);
            assert_eq!(buf, n.to_string().as_bytes());
            let mut hex = Vec::new();
            write_hex(&mut hex, n);
            assert_eq!(hex, format!("{n:x}").as_bytes());
        }
        let a = next_message_id();
        let b = next_message_id();
        assert!(b > a);
    }

    #[test]
    fn envelope_len_is_the_length_written() {
        let texts = [
            "",
            "a",
            "a\"b\\c",
            "\n\r\t\u{8}\u{c}",
            "\u{1}\u{1f}",
            "é€😀",
            "x",
        ];
        for n in [0u64, 1, 15, 16, 255, 4096, u64::MAX] {
            for text in texts {
                let heads = [
                    Head {
                        id: MsgId::Generated(n),
                        ..Head::new(text, n)
                    },
                    Head {
                        id: MsgId::Given(text),
                        ..Head::new("chat", n)
                            .reply_to(text)
                            .session("s")
                            .source(text)
                    },
                ];
                for head in heads {
                    let mut buf = Vec::new();
                    assert!(write_envelope(&mut buf, &head, raw(br#"{"k":1}"#)));
                    assert_eq!(envelope_len(&head, 7), buf.len(), "{head:?}");
                }
            }
        }
    }
}

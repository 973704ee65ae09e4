//! The wire vocabulary of PROTOCOL sections 2-6: incoming envelopes, message kinds and the
//! lenient field type payloads are read with (the error codes are in
//! [`errors`](crate::core::errors)).
//!
//! Contract:
//! - [`parse_envelope`] reads one client message. It borrows every string it can from the
//!   input and never builds a `serde_json::Value`; the payload is returned as the raw bytes of
//!   the JSON object, so a relay copies them verbatim and a request parses them into its own
//!   typed struct, from the members the walk noted on its way ([`Envelope::noted`]). Any
//!   input gives `Ok` or an [`EnvelopeError`], never a panic.
//! - An `INVALID_MESSAGE` error carries the request's `id` as `reply_to` whenever the id is
//!   valid (a non-empty string of at most [`MAX_ID_BYTES`] bytes).
//! - Field errors ([`FieldError`]) name the offending field; they become `INVALID_MESSAGE`
//!   with `details.field`.

use std::borrow::Cow;
use std::fmt;

use serde::de::{self, Deserialize, Deserializer, IgnoredAny, MapAccess, SeqAccess, Visitor};
use serde_json::value::RawValue;
use serde_json::{Map, Value};

use crate::core::wire::fields;
use crate::core::wire::strict;
use crate::core::wire::walk::{self, Member, Noted};

/// Longest `id` a client may send, in bytes.
pub(crate) const MAX_ID_BYTES: usize = 128;

/// The message types the gateway handles itself (PROTOCOL section 5).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum MsgKind {
    /// `ping`
    Ping,
    /// `auth`
    Auth,
    /// `connect`
    Connect,
    /// `session_create`
    SessionCreate,
    /// `session_join`
    SessionJoin,
    /// `session_leave`
    SessionLeave,
    /// `session_patch`
    SessionPatch,
    /// `presence`
    Presence,
    /// `presence_query`
    PresenceQuery,
    /// `chat`, `chat_stream`, `chat_complete`, `tool_start`, `tool_update`, `tool_result`,
    /// `broadcast`: relayed to the other members of the envelope's session.
    Relay,
    /// `route_request`
    RouteRequest,
    /// `route_response`
    RouteResponse,
    /// `agent_register`
    AgentRegister,
    /// `agent_unregister`
    AgentUnregister,
    /// `agent_heartbeat`
    AgentHeartbeat,
    /// `agent_query`
    AgentQuery,
    /// `admin_kick`
    AdminKick,
    /// `admin_clients`
    AdminClients,
}

impl MsgKind {
    /// Every built-in `type` with its kind: the one list [`MsgKind::of`] reads.
    pub(crate) const TYPES: [(&'static str, MsgKind); 24] = [
        ("ping", MsgKind::Ping),
        ("auth", MsgKind::Auth),
        ("connect", MsgKind::Connect),
        ("session_create", MsgKind::SessionCreate),
        ("session_join", MsgKind::SessionJoin),
        ("session_leave", MsgKind::SessionLeave),
        ("session_patch", MsgKind::SessionPatch),
        ("presence", MsgKind::Presence),
        ("presence_query", MsgKind::PresenceQuery),
        ("chat", MsgKind::Relay),
        ("chat_stream", MsgKind::Relay),
        ("chat_complete", MsgKind::Relay),
        ("tool_start", MsgKind::Relay),
        ("tool_update", MsgKind::Relay),
        ("tool_result", MsgKind::Relay),
        ("broadcast", MsgKind::Relay),
        ("route_request", MsgKind::RouteRequest),
        ("route_response", MsgKind::RouteResponse),
        ("agent_register", MsgKind::AgentRegister),
        ("agent_unregister", MsgKind::AgentUnregister),
        ("agent_heartbeat", MsgKind::AgentHeartbeat),
        ("agent_query", MsgKind::AgentQuery),
        ("admin_kick", MsgKind::AdminKick),
        ("admin_clients", MsgKind::AdminClients),
    ];

    /// The built-in kind of a `type`, or `None` for any other type.
    pub(crate) fn of(msg_type: &str) -> Option<MsgKind> {
        MsgKind::TYPES
            .iter()
            .find(|(name, _)| *name == msg_type)
            .map(|&(_, kind)| kind)
    }

    /// Whether the kind is handled before the connection has authenticated.
    pub(crate) fn pre_auth(self) -> bool {
        matches!(self, MsgKind::Ping | MsgKind::Auth | MsgKind::Connect)
    }

    /// Whether the kind's payload, or a part of it, is forwarded or stored as the client
    /// sent it, unread: such a payload passes [`strict::check`](crate::core::wire::strict)
    /// first (PROTOCOL section 11, "Relays are checked").
    pub(crate) fn forwards_payload(self) -> bool {
        matches!(
            self,
            MsgKind::Relay | MsgKind::RouteRequest | MsgKind::RouteResponse | MsgKind::SessionPatch
        )
    }
}

/// A JSON value read without building a tree: strings are borrowed when they carry no
/// escapes, objects and arrays are skipped and only their kind is kept.
#[derive(Clone, Debug, PartialEq)]
pub(crate) enum Loose<'a> {
    /// A string.
    Str(Cow<'a, str>),
    /// `true` or `false`.
    Bool(bool),
    /// A non-negative integer that fits in a `u64`.
    UInt(u64),
    /// Any other number (negative, fractional, huge).
    Number,
    /// `null`.
    Null,
    /// An object (contents skipped).
    Object,
    /// An array (contents skipped).
    Array,
}

impl<'de: 'a, 'a> Deserialize<'de> for Loose<'a> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        // Under a name of its own, so that a payload's typed read can tell a `Loose` object or
        // array from a value it reads whole ([`fields`]); `serde_json` reads the value inside.
        deserializer.deserialize_newtype_struct(fields::LOOSE, LooseVisitor)
    }
}

struct LooseVisitor;

impl<'de> Visitor<'de> for LooseVisitor {
    type Value = Loose<'de>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("any JSON value")
    }

    fn visit_bool<E: de::Error>(self, v: bool) -> Result<Self::Value, E> {
        Ok(Loose::Bool(v))
    }

    fn visit_i64<E: de::Error>(self, v: i64) -> Result<Self::Value, E> {
        Ok(u64::try_from(v).map_or(Loose::Number, Loose::UInt))
    }

    fn visit_u64<E: de::Error>(self, v: u64) -> Result<Self::Value, E> {
        Ok(Loose::UInt(v))
    }

    fn visit_f64<E: de::Error>(self, _v: f64) -> Result<Self::Value, E> {
        Ok(Loose::Number)
    }

    fn visit_borrowed_str<E: de::Error>(self, v: &'de str) -> Result<Self::Value, E> {
        Ok(Loose::Str(Cow::Borrowed(v)))
    }

    fn visit_str<E: de::Error>(self, v: &str) -> Result<Self::Value, E> {
        Ok(Loose::Str(Cow::Owned(v.to_owned())))
    }

    fn visit_string<E: de::Error>(self, v: String) -> Result<Self::Value, E> {
        Ok(Loose::Str(Cow::Owned(v)))
    }

    fn visit_unit<E: de::Error>(self) -> Result<Self::Value, E> {
        Ok(Loose::Null)
    }

    fn visit_none<E: de::Error>(self) -> Result<Self::Value, E> {
        Ok(Loose::Null)
    }

    fn visit_some<D: Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
        d.deserialize_any(LooseVisitor)
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
        while map.next_entry::<IgnoredAny, IgnoredAny>()?.is_some() {}
        Ok(Loose::Object)
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
        while seq.next_element::<IgnoredAny>()?.is_some() {}
        Ok(Loose::Array)
    }

    fn visit_newtype_struct<D: Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
        d.deserialize_any(LooseVisitor)
    }
}

/// A payload field that is missing, of the wrong type or out of range.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct FieldError {
    /// The field's wire name, e.g. `sessionId`.
    pub field: &'static str,
    /// What is wrong, for the error's `message`.
    pub message: String,
}

impl FieldError {
    /// A field error with this message.
    pub(crate) fn new(field: &'static str, message: impl Into<String>) -> Self {
        FieldError {
            field,
            message: message.into(),
        }
    }

    fn required(field: &'static str) -> Self {
        FieldError::new(field, format!("{field} is required"))
    }

    fn not_string(field: &'static str) -> Self {
        FieldError::new(field, format!("{field} must be a string"))
    }
}

/// An optional string field: absent or `null` is `None`; any other non-string is an error.
pub(crate) fn opt_str<'b>(
    value: &'b Option<Loose<'_>>,
    field: &'static str,
) -> Result<Option<&'b str>, FieldError> {
    match value {
        None | Some(Loose::Null) => Ok(None),
        Some(Loose::Str(text)) => Ok(Some(text)),
        Some(_) => Err(FieldError::not_string(field)),
    }
}

/// A required non-empty string field.
pub(crate) fn req_str<'b>(
    value: &'b Option<Loose<'_>>,
    field: &'static str,
) -> Result<&'b str, FieldError> {
    match opt_str(value, field)? {
        None => Err(FieldError::required(field)),
        Some("") => Err(FieldError::new(field, format!("{field} must not be empty"))),
        Some(text) => Ok(text),
    }
}

/// An optional identifier: when present, a non-empty string of at most [`MAX_ID_BYTES`] bytes.
pub(crate) fn opt_ident<'b>(
    value: &'b Option<Loose<'_>>,
    field: &'static str,
) -> Result<Option<&'b str>, FieldError> {
    match opt_str(value, field)? {
        None => Ok(None),
        Some(text) => check_ident(text, field).map(Some),
    }
}

/// `text` as an identifier: non-empty, at most [`MAX_ID_BYTES`] bytes.
pub(crate) fn check_ident<'b>(text: &'b str, field: &'static str) -> Result<&'b str, FieldError> {
    if text.is_empty() {
        Err(FieldError::new(field, format!("{field} must not be empty")))
    } else if text.len() > MAX_ID_BYTES {
        Err(FieldError::new(
            field,
            format!("{field} must be at most {MAX_ID_BYTES} bytes"),
        ))
    } else {
        Ok(text)
    }
}

/// `text` as a name (a session `name`, an agent `name`, a `deviceName`, a presence
/// `status`: PROTOCOL section 11): at most `max_bytes` bytes (`max_name_bytes`).
pub(crate) fn check_name<'b>(
    text: &'b str,
    field: &'static str,
    max_bytes: usize,
) -> Result<&'b str, FieldError> {
    if text.len() > max_bytes {
        Err(FieldError::new(
            field,
            format!("{field} must be at most {max_bytes} bytes"),
        ))
    } else {
        Ok(text)
    }
}

/// The `limit` of a paged query (`agent_query`, `presence_query`; PROTOCOL section 11):
/// absent or `null` is `max`; else an integer from 1 to `max`.
pub(crate) fn opt_limit(value: &Option<Loose<'_>>, max: usize) -> Result<usize, FieldError> {
    match value {
        None | Some(Loose::Null) => Ok(max),
        Some(Loose::UInt(n)) if (1..=max as u64).contains(n) => Ok(*n as usize),
        Some(_) => Err(FieldError::new(
            "limit",
            format!("limit must be an integer from 1 to {max}"),
        )),
    }
}

/// An optional boolean field.
pub(crate) fn opt_bool(
    value: &Option<Loose<'_>>,
    field: &'static str,
) -> Result<Option<bool>, FieldError> {
    match value {
        None | Some(Loose::Null) => Ok(None),
        Some(Loose::Bool(flag)) => Ok(Some(*flag)),
        Some(_) => Err(FieldError::new(field, format!("{field} must be a boolean"))),
    }
}

/// An optional object field (absent or `null` is `None`).
pub(crate) fn opt_object(
    value: Option<Value>,
    field: &'static str,
) -> Result<Option<Map<String, Value>>, FieldError> {
    match value {
        None | Some(Value::Null) => Ok(None),
        Some(Value::Object(map)) => Ok(Some(map)),
        Some(_) => Err(FieldError::new(field, format!("{field} must be an object"))),
    }
}

/// An envelope field read as a string (PROTOCOL section 2).
#[derive(Clone, Debug, PartialEq)]
pub(crate) enum Field<'a> {
    /// Not present, or `null`.
    Absent,
    /// A string.
    Str(Cow<'a, str>),
    /// Present but not a string.
    Wrong,
}

impl Field<'_> {
    /// The string, if the field is one.
    pub(crate) fn as_str(&self) -> Option<&str> {
        match self {
            Field::Str(text) => Some(text),
            _ => None,
        }
    }

    /// A required identifier (non-empty string of at most [`MAX_ID_BYTES`] bytes).
    pub(crate) fn ident(&self, field: &'static str) -> Result<&str, FieldError> {
        match self {
            Field::Absent => Err(FieldError::required(field)),
            Field::Wrong => Err(FieldError::not_string(field)),
            Field::Str(text) => check_ident(text, field),
        }
    }

    /// An optional identifier; a present but malformed one is an error.
    pub(crate) fn opt_ident(&self, field: &'static str) -> Result<Option<&str>, FieldError> {
        match self {
            Field::Absent => Ok(None),
            _ => self.ident(field).map(Some),
        }
    }

    fn from_loose(value: Option<Loose<'_>>) -> Field<'_> {
        match value {
            None | Some(Loose::Null) => Field::Absent,
            Some(Loose::Str(text)) => Field::Str(text),
            Some(_) => Field::Wrong,
        }
    }
}

/// A client message whose `type` and `id` are valid.
#[derive(Clone, Debug, PartialEq)]
pub(crate) struct Envelope<'a> {
    /// `type`: a non-empty string.
    pub msg_type: Cow<'a, str>,
    /// `id`: a non-empty string of at most [`MAX_ID_BYTES`] bytes.
    pub id: Cow<'a, str>,
    /// The raw JSON text of `payload`, always an object (`{}` when absent or `null`).
    pub payload: &'a [u8],
    /// What [`strict::check`](crate::core::wire::strict) gives for `payload`, when it is
    /// known (the walk checks it on its way); `None` when it is not.
    pub payload_check: Option<Result<(), FieldError>>,
    /// `sessionId`.
    pub session_id: Field<'a>,
    /// `replyTo`.
    pub reply_to: Field<'a>,
    /// `target`.
    pub target: Field<'a>,
    /// The members of `payload` its typed read needs, noted by the walk
    /// ([`fields::read`]); `None` when the walk did not read the message (the typed read
    /// then reads the whole payload).
    pub noted: Option<Vec<Noted>>,
}

/// Why [`parse_envelope`] refused a message.
#[derive(Clone, Debug, PartialEq)]
pub(crate) enum EnvelopeError<'a> {
    /// Not JSON, or JSON that is not an object: `PARSE_ERROR`.
    Parse(String),
    /// `type`, `id` or `payload` missing or malformed: `INVALID_MESSAGE`.
    Invalid {
        /// The field at fault.
        error: FieldError,
        /// The request's `id`, when it is valid.
        reply_to: Option<Cow<'a, str>>,
    },
}

/// The members of an envelope, with `payload` read as `P`: its raw text
/// ([`RawValue`], whose span serde_json gives in the same pass that checks it), or, to
/// word a parse error as a typed read of the payload would, a [`Loose`] value.
#[derive(serde::Deserialize)]
struct RawEnvelope<'a, P> {
    #[serde(borrow, rename = "type")]
    msg_type: Option<Loose<'a>>,
    #[serde(borrow)]
    id: Option<Loose<'a>>,
    payload: Option<P>,
    #[serde(borrow, rename = "sessionId")]
    session_id: Option<Loose<'a>>,
    #[serde(borrow, rename = "replyTo")]
    reply_to: Option<Loose<'a>>,
    #[serde(borrow)]
    target: Option<Loose<'a>>,
}

/// The parse error of text that is not an envelope, worded by reading its payload as a
/// [`Loose`] value (which differs from skipping it only in the wording of an error in the
/// payload object's own members, e.g. a trailing comma).
fn parse_error(data: &[u8], fast: serde_json::Error) -> EnvelopeError<'_> {
    let error = match serde_json::from_slice::<RawEnvelope<'_, Loose<'_>>>(data) {
        Err(e) => e,
        Ok(_) => fast,
    };
    EnvelopeError::Parse(error.to_string())
}

/// The first byte of `text` that is not JSON white space.
fn first_byte(text: &[u8]) -> Option<u8> {
    text.iter()
        .copied()
        .find(|b| !matches!(b, b' ' | b'\t' | b'\n' | b'\r'))
}

fn invalid(error: FieldError, reply_to: Option<Cow<'_, str>>) -> EnvelopeError<'_> {
    EnvelopeError::Invalid { error, reply_to }
}

/// The members of an envelope as read, by the walk or by `serde_json`.
struct Members<'a> {
    msg_type: Option<Loose<'a>>,
    id: Option<Loose<'a>>,
    payload: Option<&'a [u8]>,
    session_id: Option<Loose<'a>>,
    reply_to: Option<Loose<'a>>,
    target: Option<Loose<'a>>,
}

impl<'a> Members<'a> {
    fn walked(scanned: walk::Scanned<'a>) -> Self {
        let [msg_type, id, session_id, reply_to, target] = scanned.members.map(|member| {
            member.map(|member| match member {
                Member::Str(text) => Loose::Str(text),
                Member::Bool(flag) => Loose::Bool(flag),
                Member::UInt(n) => Loose::UInt(n),
                Member::Number => Loose::Number,
                Member::Object => Loose::Object,
                Member::Array => Loose::Array,
            })
        });
        Members {
            msg_type,
            id,
            payload: scanned.payload,
            session_id,
            reply_to,
            target,
        }
    }
}

/// Read one client message (PROTOCOL section 2). `data` need not be valid UTF-8: invalid
/// text is a parse error. The [`walk`] reads it in one pass (checking the payload as
/// [`strict::check`](crate::core::wire::strict) does on the way) and accepts or refuses it,
/// a parse error worded by the walk (`expected a value at byte N`); only text that is not
/// UTF-8 is read again with `serde_json`, whose error is then the parse error's text.
pub(crate) fn parse_envelope(data: &[u8]) -> Result<Envelope<'_>, EnvelopeError<'_>> {
    parse_with(data, true)
}

/// [`parse_envelope`] done by `serde_json` alone: the reference the walk keeps to.
#[cfg(any(test, fuzzing))]
pub(crate) fn parse_envelope_serde(data: &[u8]) -> Result<Envelope<'_>, EnvelopeError<'_>> {
    parse_with(data, false)
}

/// The envelope fields (PROTOCOL section 2) a refusal for nesting names as `details.field`;
/// any other member is named `envelope`.
const DEPTH_FIELDS: [&str; 8] = [
    "type",
    "id",
    "payload",
    "sessionId",
    "timestamp",
    "replyTo",
    "source",
    "target",
];

fn parse_with(data: &[u8], walk: bool) -> Result<Envelope<'_>, EnvelopeError<'_>> {
    if first_byte(data) != Some(b'{') {
        return Err(EnvelopeError::Parse(
            "message must be a JSON object".to_owned(),
        ));
    }
    let walked = if walk {
        walk::envelope(
            data,
            |msg_type| MsgKind::of(msg_type).is_some_and(MsgKind::forwards_payload),
            fields::noted,
        )
    } else {
        Err(walk::Stop::Unsure)
    };
    // The member in which the message nests deeper than 128 levels, if it does.
    let deep;
    let mut noted = None;
    let (raw, payload_check) = match walked {
        Ok(mut scanned) => {
            deep = scanned.deep;
            noted = Some(std::mem::take(&mut scanned.noted));
            let check = match scanned.payload_check {
                _ if scanned.payload.is_none() => Some(Ok(())),
                Some(Err(refusal)) => Some(Err(strict::refused(refusal))),
                check => check.map(|_| Ok(())),
            };
            (Members::walked(scanned), check)
        }
        Err(walk::Stop::Refused(refusal)) => {
            return Err(EnvelopeError::Parse(refusal.to_string()));
        }
        Err(_) => {
            let raw: RawEnvelope<'_, &RawValue> =
                serde_json::from_slice(data).map_err(|e| parse_error(data, e))?;
            deep = walk::too_deep(data);
            let absent = raw.payload.is_none();
            let members = Members {
                msg_type: raw.msg_type,
                id: raw.id,
                payload: raw.payload.map(|raw| raw.get().as_bytes()),
                session_id: raw.session_id,
                reply_to: raw.reply_to,
                target: raw.target,
            };
            (members, absent.then_some(Ok(())))
        }
    };
    let id = match raw.id {
        Some(Loose::Str(id)) => match check_ident(&id, "id") {
            Ok(_) => id,
            Err(error) => return Err(invalid(error, None)),
        },
        None | Some(Loose::Null) => return Err(invalid(FieldError::required("id"), None)),
        Some(_) => return Err(invalid(FieldError::not_string("id"), None)),
    };
    let msg_type = match raw.msg_type {
        Some(Loose::Str(t)) if !t.is_empty() => t,
        Some(Loose::Str(_)) => {
            let error = FieldError::new("type", "type must not be empty");
            return Err(invalid(error, Some(id)));
        }
        None | Some(Loose::Null) => return Err(invalid(FieldError::required("type"), Some(id))),
        Some(_) => return Err(invalid(FieldError::not_string("type"), Some(id))),
    };
    if let Some(member) = deep {
        let field = DEPTH_FIELDS
            .into_iter()
            .find(|f| f.as_bytes() == member)
            .unwrap_or("envelope");
        let message = format!("{field}: the message nests deeper than 128 levels");
        return Err(invalid(FieldError::new(field, message), Some(id)));
    }
    let payload: &[u8] = match raw.payload {
        None => b"{}",
        Some(text) if text.starts_with(b"{") => text,
        Some(_) => {
            let error = FieldError::new("payload", "payload must be an object");
            return Err(invalid(error, Some(id)));
        }
    };
    Ok(Envelope {
        msg_type,
        id,
        payload,
        payload_check,
        session_id: Field::from_loose(raw.session_id),
        reply_to: Field::from_loose(raw.reply_to),
        target: Field::from_loose(raw.target),
        noted,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ok(text: &str) -> Envelope<'_> {
        parse_envelope(text.as_bytes()).expect("valid envelope")
    }

    fn invalid(text: &str) -> (String, Option<String>) {
        match parse_envelope(text.as_bytes()) {
            Err(EnvelopeError::Invalid { error, reply_to }) => {
                (error.field.to_owned(), reply_to.map(|r| r.into_owned()))
            }
            other => panic!("expected invalid, got {other:?}"),
        }
    }

    #[test]
    fn reads_a_full_envelope_borrowing_strings() {
        let env = ok(
            r#"{"type":"chat","id":"c-1","sessionId":"room","payload":{"text":"hi"},"replyTo":"x","target":"t","timestamp":5}"#,
        );
        assert_eq!(env.msg_type, "chat");
        assert!(matches!(env.msg_type, Cow::Borrowed(_)));
        assert_eq!(env.id, "c-1");
        assert_eq!(env.payload, br#"{"text":"hi"}"#);
        assert_eq!(env.session_id, Field::Str(Cow::Borrowed("room")));
        assert_eq!(env.reply_to.as_str(), Some("x"));
        assert_eq!(env.target.as_str(), Some("t"));
    }

    #[test]
    fn missing_or_null_payload_is_an_empty_object() {
        assert_eq!(ok(r#"{"type":"ping","id":"1"}"#).payload, b"{}");
        assert_eq!(
            ok(r#"{"type":"ping","id":"1","payload":null}"#).payload,
            b"{}"
        );
    }

    #[test]
    fn escaped_keys_and_values_are_decoded() {
        let env = ok(r#"{"t\u0079pe":"pi\u006eg","id":"a\"b","p\u0061yload":{"k":"}"}}"#);
        assert_eq!(env.msg_type, "ping");
        assert_eq!(env.id, "a\"b");
        assert_eq!(env.payload, br#"{"k":"}"}"#);
    }

    #[test]
    fn non_objects_and_garbage_are_parse_errors() {
        for text in [
            "",
            "   ",
            "[1,2]",
            "\"x\"",
            "42",
            "null",
            "{",
            "{\"type\":\"ping\",\"id\":\"1\"} x",
            "{\"type\":\"ping\",\"type\":\"ping\",\"id\":\"1\"}",
        ] {
            assert!(
                matches!(
                    parse_envelope(text.as_bytes()),
                    Err(EnvelopeError::Parse(_))
                ),
                "{text:?}"
            );
        }
        assert!(matches!(
            parse_envelope(b"{\"type\":\"p\xffg\",\"id\":\"1\"}"),
            Err(EnvelopeError::Parse(_))
        ));
    }

    #[test]
    fn type_and_id_are_validated_with_reply_to_when_the_id_is_good() {
        assert_eq!(invalid(r#"{"id":"1"}"#), ("type".into(), Some("1".into())));
        assert_eq!(
            invalid(r#"{"type":"","id":"1"}"#),
            ("type".into(), Some("1".into()))
        );
        assert_eq!(
            invalid(r#"{"type":3,"id":"1"}"#),
            ("type".into(), Some("1".into()))
        );
        assert_eq!(invalid(r#"{"type":"ping"}"#), ("id".into(), None));
        assert_eq!(invalid(r#"{"type":"ping","id":""}"#), ("id".into(), None));
        assert_eq!(invalid(r#"{"type":"ping","id":7}"#), ("id".into(), None));
        let long = format!(r#"{{"type":"ping","id":"{}"}}"#, "x".repeat(129));
        assert_eq!(invalid(&long), ("id".into(), None));
        let max = format!(r#"{{"type":"ping","id":"{}"}}"#, "x".repeat(128));
        assert_eq!(ok(&max).id.len(), 128);
        assert_eq!(
            invalid(r#"{"type":"ping","id":"1","payload":[1]}"#),
            ("payload".into(), Some("1".into()))
        );
        assert_eq!(
            invalid(r#"{"type":"ping","id":"1","payload":"x"}"#),
            ("payload".into(), Some("1".into()))
        );
    }

    #[test]
    fn wrong_typed_envelope_fields_are_kept_as_wrong() {
        let env = ok(r#"{"type":"chat","id":"1","sessionId":5,"target":null}"#);
        assert_eq!(env.session_id, Field::Wrong);
        assert_eq!(env.target, Field::Absent);
        assert!(env.session_id.ident("sessionId").is_err());
        assert!(env.target.opt_ident("target").unwrap().is_none());
    }

    #[test]
    fn loose_fields_report_the_field_name() {
        #[derive(serde::Deserialize)]
        struct P<'a> {
            #[serde(borrow)]
            a: Option<Loose<'a>>,
            #[serde(borrow)]
            b: Option<Loose<'a>>,
            #[serde(borrow)]
            c: Option<Loose<'a>>,
        }
        let p: P<'_> = serde_json::from_str(r#"{"a":"x","b":{"n":[1]},"c":-3}"#).unwrap();
        assert_eq!(opt_str(&p.a, "a"), Ok(Some("x")));
        assert_eq!(opt_str(&p.b, "b").unwrap_err().field, "b");
        assert_eq!(p.c, Some(Loose::Number));
        assert_eq!(req_str(&None, "z").unwrap_err().message, "z is required");
        assert!(opt_bool(&p.a, "a").is_err());
        assert_eq!(opt_ident(&p.a, "a"), Ok(Some("x")));
    }

    #[test]
    fn kinds_and_pre_auth() {
        assert_eq!(MsgKind::of("tool_result"), Some(MsgKind::Relay));
        assert_eq!(MsgKind::of("custom"), None);
        assert!(MsgKind::Connect.pre_auth());
        assert!(!MsgKind::SessionJoin.pre_auth());
        assert!(MsgKind::SessionPatch.forwards_payload());
        assert!(!MsgKind::SessionCreate.forwards_payload());
    }
}

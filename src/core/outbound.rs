//! Sending from the core: staging an envelope once in the [`Actions`] arena, delivering it to
//! one or many connections, counting what was sent, and the error replies.
//!
//! Contract:
//! - Every message the core sends goes through [`send`], [`fan_out`] or [`send_error`], so
//!   `gateway_messages_out_total` counts one per recipient under the type's label and
//!   `gateway_errors_total` one per error.
//! - A fan-out stages its bytes once, and only when there is at least one recipient; every
//!   recipient receives the same bytes (the same `id`).
//! - A payload that fails to serialize sends nothing ([`send`] returns `false`).

use serde::Serialize;

use crate::app::{Actions, ConnId, Staged};
use crate::core::errors::{ErrorCode, Refusal};
use crate::core::events::Event;
use crate::core::metrics::{type_label, Metrics};
use crate::core::scopes::Scope;
use crate::core::wire::payloads::ErrorOut;
use crate::core::wire::FieldError;
use crate::core::wire::{self, Head};

/// Stage one envelope; `None` when the payload failed to serialize.
pub(crate) fn stage(
    out: &mut Actions<Event>,
    head: &Head<'_>,
    payload: impl FnOnce(&mut Vec<u8>) -> bool,
) -> Option<Staged> {
    let mut ok = false;
    let staged = out.stage_with(|buf| ok = wire::write_envelope(buf, head, payload));
    ok.then_some(staged)
}

/// Stage and send one message to `conn`; whether it was sent.
pub(crate) fn send(
    out: &mut Actions<Event>,
    metrics: &mut Metrics,
    conn: ConnId,
    head: &Head<'_>,
    payload: impl FnOnce(&mut Vec<u8>) -> bool,
) -> bool {
    match stage(out, head, payload) {
        Some(msg) => {
            out.send(conn, &msg);
            metrics.count_out(type_label(head.msg_type), 1);
            true
        }
        None => false,
    }
}

/// [`send`], when the message is at most `max` bytes; else nothing is sent and the result
/// is [`TooLarge`] (a payload that fails to serialize is `Ok(false)`).
pub(crate) fn send_within(
    out: &mut Actions<Event>,
    metrics: &mut Metrics,
    conn: ConnId,
    head: &Head<'_>,
    max: usize,
    payload: impl FnOnce(&mut Vec<u8>) -> bool,
) -> Result<bool, TooLarge> {
    let Some(msg) = stage(out, head, payload) else {
        return Ok(false);
    };
    if out.bytes(&msg).len() > max {
        out.unstage(msg);
        return Err(TooLarge);
    }
    out.send(conn, &msg);
    metrics.count_out(type_label(head.msg_type), 1);
    Ok(true)
}

/// A message that would be larger than `max_message_size` (PROTOCOL section 11).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct TooLarge;

/// Whether a relayed or routed payload of `payload_len` bytes, delivered under `head`, fits
/// in `max` bytes (`max_message_size`); else `LIMIT_EXCEEDED` naming both sizes. Counted
/// without writing anything.
pub(crate) fn check_delivery(
    head: &Head<'_>,
    payload_len: usize,
    max: usize,
) -> Result<(), Reject> {
    let len = wire::envelope_len(head, payload_len);
    if len <= max {
        return Ok(());
    }
    Err(Reject::new(
        ErrorCode::LimitExceeded,
        format!("The message as delivered would be {len} bytes, over max_message_size ({max})"),
    ))
}

/// Send `payload` serialized with serde to `conn`.
pub(crate) fn send_ser<T: Serialize + ?Sized>(
    out: &mut Actions<Event>,
    metrics: &mut Metrics,
    conn: ConnId,
    head: &Head<'_>,
    payload: &T,
) -> bool {
    send(out, metrics, conn, head, wire::ser(payload))
}

/// Send one message to every connection of `conns`, staged once; returns how many got it.
pub(crate) fn fan_out(
    out: &mut Actions<Event>,
    metrics: &mut Metrics,
    conns: impl IntoIterator<Item = ConnId>,
    head: &Head<'_>,
    payload: impl FnOnce(&mut Vec<u8>) -> bool,
) -> usize {
    let mut conns = conns.into_iter();
    let Some(first) = conns.next() else {
        return 0;
    };
    let Some(msg) = stage(out, head, payload) else {
        return 0;
    };
    out.send(first, &msg);
    let mut sent = 1;
    for conn in conns {
        out.send(conn, &msg);
        sent += 1;
    }
    metrics.count_out(type_label(head.msg_type), sent as u64);
    sent
}

/// Send the `error` of `reject` to `conn` at `timestamp`, with `replyTo` when the request's
/// id is known.
pub(crate) fn send_error(
    out: &mut Actions<Event>,
    metrics: &mut Metrics,
    conn: ConnId,
    reply_to: Option<&str>,
    timestamp: u64,
    reject: &Reject,
) {
    let head = Head {
        reply_to,
        ..Head::new("error", timestamp)
    };
    let payload = ErrorOut::new(reject.code, &reject.message, reject.field, reject.scope);
    if send_ser(out, metrics, conn, &head, &payload) {
        metrics.count_error(reject.code);
    }
}

/// A request refused with an error reply.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Reject {
    /// The error code.
    pub code: ErrorCode,
    /// The error message.
    pub message: String,
    /// The field at fault, sent as `details.field`.
    pub field: Option<&'static str>,
    /// The scope the request lacks, sent as `details.scope` (`FORBIDDEN` only).
    pub scope: Option<&'static str>,
}

impl Reject {
    /// A refusal with this code and message.
    pub(crate) fn new(code: ErrorCode, message: impl Into<String>) -> Self {
        Reject {
            code,
            message: message.into(),
            field: None,
            scope: None,
        }
    }

    /// `FORBIDDEN` for a request that needs `scope`.
    pub(crate) fn forbidden(scope: Scope) -> Self {
        Reject {
            code: ErrorCode::Forbidden,
            message: format!("This request needs the {} scope", scope.name()),
            field: None,
            scope: Some(scope.name()),
        }
    }

    /// The error reply of a table's refusal about `subject` (see [`Refusal`]).
    pub(crate) fn refused(refusal: &impl Refusal, subject: &str) -> Self {
        Reject {
            code: refusal.code(),
            message: refusal.message(subject),
            field: refusal.field(),
            scope: None,
        }
    }
}

impl From<FieldError> for Reject {
    fn from(e: FieldError) -> Self {
        Reject {
            code: ErrorCode::InvalidMessage,
            message: e.message,
            field: Some(e.field),
            scope: None,
        }
    }
}

/// `text` cut to at most 128 bytes (on a character boundary), for echoing client strings
/// in error messages.
pub(crate) fn short(text: &str) -> &str {
    if text.len() <= 128 {
        return text;
    }
    let mut end = 128;
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    &text[..end]
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::app::Action;
    use crate::testkit::conn;

    #[test]
    fn fan_out_stages_once_and_counts_each_recipient() {
        let mut out = Actions::new();
        let mut m = Metrics::new();
        let head = Head::new("chat", 1);
        assert_eq!(fan_out(&mut out, &mut m, [], &head, wire::raw(b"{}")), 0);
        assert!(out.is_empty());
        let n = fan_out(
            &mut out,
            &mut m,
            [conn(1), conn(2), conn(3)],
            &head,
            wire::raw(b"{}"),
        );
        assert_eq!(n, 3);
        let staged: Vec<_> = out
            .list()
            .iter()
            .map(|a| match a {
                Action::Send { msg, .. } => msg.clone(),
                other => panic!("{other:?}"),
            })
            .collect();
        assert!(staged.windows(2).all(|w| w[0] == w[1]));
        assert_eq!(m.messages_out(type_label("chat")), 3);
    }

    #[test]
    fn errors_are_counted_by_code() {
        let mut out = Actions::new();
        let mut m = Metrics::new();
        let reject = Reject::new(ErrorCode::SessionFull, "full");
        send_error(&mut out, &mut m, conn(1), Some("r"), 5, &reject);
        assert_eq!(m.errors(ErrorCode::SessionFull), 1);
        assert_eq!(m.messages_out(type_label("error")), 1);
        let Action::Send { msg, .. } = &out.list()[0] else {
            panic!()
        };
        let v: serde_json::Value = serde_json::from_slice(out.bytes(msg)).unwrap();
        assert_eq!(v["replyTo"], "r");
        assert_eq!(v["payload"]["code"], "SESSION_FULL");
    }

    #[test]
    fn short_cuts_on_a_char_boundary() {
        assert_eq!(short("abc"), "abc");
        let long = "é".repeat(100);
        assert!(short(&long).len() <= 128);
        assert!(long.starts_with(short(&long)));
    }
}

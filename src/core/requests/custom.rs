//! Custom message handlers registered by the embedding program, the [`HandlerContext`] they
//! act through, and the host actions shared with [`Command`](crate::core::events::Command)s.
//!
//! Contract:
//! - A message of a type that is neither built in nor registered is answered
//!   `UNKNOWN_TYPE` and reported as [`Event::UnhandledMessage`], which carries the message's
//!   text as it arrived (never a parsed tree), built only when the host keeps events.
//! - A handler runs for a message of its type from an authenticated connection, after the
//!   size, parse, envelope, rate limit and auth checks; it is responsible for the reply (the
//!   gateway sends none for it).
//! - Messages sent through the context carry a fresh `id` and no `source`; `reply` and
//!   `error` carry `replyTo` = the request's `id`; `broadcast` carries `sessionId`.
//! - `send_to` reaches any open connection (authenticated or not), `broadcast` every member
//!   of the session (the sender included), staged once. A payload that does not serialize
//!   sends nothing (`reply` then answers `INTERNAL_ERROR` instead).
//! - `kick` closes with 1008 `Kicked`, `kick_with_reason` with `Kicked: REASON` cut to the
//!   123 bytes of a close reason, as `admin_kick` does (`state::kick_reason`); the
//!   connection's cleanup happens when the reactor reports the close.

use std::collections::HashMap;

use std::time::Instant;

use serde::Serialize;
use serde_json::Value;

use crate::app::Actions;
use crate::core::auth::ANONYMOUS;
use crate::core::cluster;
use crate::core::errors::ErrorCode;
use crate::core::events::Event;
use crate::core::outbound::{self, short, Reject};
use crate::core::state::{kick_reason, CoreState, Req, CLOSE_POLICY};
use crate::core::wire::{self, Envelope, Head};

/// A registered handler.
pub(crate) type Handler = Box<dyn FnMut(&mut HandlerContext<'_>, &Message) + Send>;

/// The registered handlers, by message type.
#[derive(Default)]
pub(crate) struct Handlers {
    by_type: HashMap<String, Handler>,
}

impl Handlers {
    /// Handle `msg_type` with `handler` from now on, replacing any handler it had. Whether
    /// the type may be handled (not empty, not built in) is the caller's to check.
    pub(crate) fn insert(&mut self, msg_type: &str, handler: Handler) {
        self.by_type.insert(msg_type.to_owned(), handler);
    }

    /// A message of a type that is not built in: its handler, or `UNKNOWN_TYPE` and an
    /// [`Event::UnhandledMessage`].
    pub(crate) fn handle(
        &mut self,
        state: &mut CoreState,
        req: &Req<'_>,
        env: &Envelope<'_>,
        data: &[u8],
        out: &mut Actions<Event>,
    ) {
        let Some(handler) = self.by_type.get_mut(env.msg_type.as_ref()) else {
            let reject = Reject::new(
                ErrorCode::UnknownType,
                format!("Unknown message type: {}", short(&env.msg_type)),
            );
            state.reject(out, req, reject);
            let client = state.clients.get(req.conn).filter(|_| out.wants_events());
            if let Some(client) = client {
                out.emit(Event::UnhandledMessage {
                    client_id: client.client_id.clone(),
                    msg_type: env.msg_type.clone().into_owned(),
                    message: String::from_utf8_lossy(data).into_owned(),
                });
            }
            return;
        };
        let payload: Value = match serde_json::from_slice(env.payload) {
            Ok(payload) => payload,
            Err(e) => {
                let reject = Reject {
                    field: Some("payload"),
                    scope: None,
                    ..Reject::new(ErrorCode::InvalidMessage, format!("payload: {e}"))
                };
                state.reject(out, req, reject);
                return;
            }
        };
        let message = Message {
            msg_type: env.msg_type.clone().into_owned(),
            id: env.id.clone().into_owned(),
            payload,
            session_id: env.session_id.as_str().map(str::to_owned),
        };
        let mut ctx = HandlerContext::new(state, out, *req);
        handler(&mut ctx, &message);
    }
}

/// A client message handed to a custom handler.
#[derive(Clone, Debug, PartialEq)]
pub struct Message {
    /// `type`
    pub msg_type: String,
    /// `id`
    pub id: String,
    /// `payload` (an object; `{}` when the client sent none).
    pub payload: Value,
    /// `sessionId`, when the envelope carried a string one.
    pub session_id: Option<String>,
}

/// What a custom handler can do while it handles one message.
pub struct HandlerContext<'a> {
    state: &'a mut CoreState,
    out: &'a mut Actions<Event>,
    req: Req<'a>,
}

impl<'a> HandlerContext<'a> {
    pub(crate) fn new(state: &'a mut CoreState, out: &'a mut Actions<Event>, req: Req<'a>) -> Self {
        HandlerContext { state, out, req }
    }

    /// The sender's `clientId`.
    pub fn client_id(&self) -> &str {
        self.state
            .clients
            .get(self.req.conn)
            .map_or("", |c| c.client_id.as_str())
    }

    /// The sender's `userId`.
    pub fn user_id(&self) -> &str {
        self.state
            .clients
            .get(self.req.conn)
            .and_then(|c| c.user_id.as_deref())
            .unwrap_or(ANONYMOUS)
    }

    /// The sender's scopes (PROTOCOL section 12) by name: `sessions`, `agents`, `route`,
    /// `admin`, in that order. A handler decides for itself what its type needs.
    pub fn scopes(&self) -> Vec<&'static str> {
        self.state
            .clients
            .get(self.req.conn)
            .map(|c| c.scopes.names().collect())
            .unwrap_or_default()
    }

    /// Whether the sender has the `admin` scope.
    pub fn is_admin(&self) -> bool {
        self.state
            .clients
            .get(self.req.conn)
            .is_some_and(|c| c.scopes.is_admin())
    }

    /// The `id` of the message being handled.
    pub fn request_id(&self) -> &str {
        self.req.id
    }

    /// Reply to the sender with `replyTo` set. `msg_type` must not be empty and `payload`
    /// must serialize to a JSON object; otherwise the sender gets `INTERNAL_ERROR` instead.
    pub fn reply(&mut self, msg_type: &str, payload: impl Serialize) {
        let head = Head::new(msg_type, self.req.ts).reply_to(self.req.id);
        let sent = !msg_type.is_empty()
            && outbound::send(
                self.out,
                &mut self.state.metrics,
                self.req.conn,
                &head,
                wire::ser_object(&payload),
            );
        if !sent {
            log::warn!("handler reply of type {} is not a message: empty type or a payload that is not a JSON object", crate::core::escaped::Escaped(msg_type));
            self.error(ErrorCode::InternalError, "Reply could not be serialized");
        }
    }

    /// Send a message to the client `client_id`; whether it was sent (false when the client is
    /// not connected, `msg_type` is empty or `payload` is not a JSON object).
    pub fn send_to(&mut self, client_id: &str, msg_type: &str, payload: impl Serialize) -> bool {
        send_to_client(
            self.state,
            self.out,
            client_id,
            msg_type,
            &payload,
            self.req.now,
        )
    }

    /// Send a message to every member of `session_id`; returns how many received it (0 also
    /// when `msg_type` is empty or `payload` is not a JSON object).
    pub fn broadcast(
        &mut self,
        session_id: &str,
        msg_type: &str,
        payload: impl Serialize,
    ) -> usize {
        broadcast_to_session(
            self.state,
            self.out,
            session_id,
            msg_type,
            &payload,
            self.req.now,
        )
    }

    /// Close the connection of `client_id` with 1008 `Kicked`; whether it was open (false
    /// also when it was already closing).
    pub fn kick(&mut self, client_id: &str) -> bool {
        kick(self.state, self.out, client_id, None)
    }

    /// Close the connection of `client_id` with 1008 `Kicked: REASON`, as `admin_kick` with a
    /// reason does: `reason` is cut on a character boundary so that the close reason fits
    /// the 123 bytes a close frame allows, and an empty `reason` closes with plain `Kicked`.
    /// Whether it was open (false also when it was already closing).
    ///
    /// ```no_run
    /// # use gateway::{Config, Gateway};
    /// # let mut gateway = Gateway::bind(Config::default()).unwrap();
    /// gateway
    ///     .register_handler("vote_kick", |ctx, msg| {
    ///         let target = msg.payload["clientId"].as_str().unwrap_or_default();
    ///         // The peer sees close code 1008 with reason `Kicked: voted out`.
    ///         let kicked = ctx.is_admin() && ctx.kick_with_reason(target, "voted out");
    ///         ctx.reply("vote_result", serde_json::json!({ "kicked": kicked }));
    ///     })
    ///     .unwrap();
    /// ```
    pub fn kick_with_reason(&mut self, client_id: &str, reason: &str) -> bool {
        kick(self.state, self.out, client_id, Some(reason))
    }

    /// Answer the sender with an `error` (`replyTo` set).
    pub fn error(&mut self, code: ErrorCode, message: &str) {
        let req = self.req;
        self.state
            .reject(self.out, &req, Reject::new(code, message));
    }
}

/// Send one message to the client `client_id` (no `source`, no `replyTo`). In a cluster, a
/// client on another node is reached through its node's channel: true then means the
/// message is on its way (PROTOCOL section 13).
pub(crate) fn send_to_client<T: Serialize + ?Sized>(
    state: &mut CoreState,
    out: &mut Actions<Event>,
    client_id: &str,
    msg_type: &str,
    payload: &T,
    now: Instant,
) -> bool {
    let ts = state.wall_ms(now);
    let Some(conn) = state.clients.conn_of(client_id) else {
        let Some(cl) = state.cluster.as_deref_mut() else {
            return false;
        };
        if msg_type.is_empty() {
            return false;
        }
        let mut message = Vec::new();
        if !wire::write_envelope(
            &mut message,
            &Head::new(msg_type, ts),
            wire::ser_object(payload),
        ) {
            return false;
        }
        return cluster::clients::send_remote(cl, client_id, &message, now, out);
    };
    if msg_type.is_empty() {
        log::warn!(
            "not sending a message with an empty type to {}",
            crate::core::escaped::Escaped(client_id)
        );
        return false;
    }
    outbound::send(
        out,
        &mut state.metrics,
        conn,
        &Head::new(msg_type, ts),
        wire::ser_object(payload),
    )
}

/// Send one message, staged once, to every member of `session_id`; how many members it
/// goes to. In a cluster it is published on the session's channel and reaches the members
/// on every node; the count is then the session's members as this node knows them (0 when
/// it has none of them).
pub(crate) fn broadcast_to_session<T: Serialize + ?Sized>(
    state: &mut CoreState,
    out: &mut Actions<Event>,
    session_id: &str,
    msg_type: &str,
    payload: &T,
    now: Instant,
) -> usize {
    let ts = state.wall_ms(now);
    if msg_type.is_empty() {
        log::warn!(
            "not broadcasting a message with an empty type to {}",
            crate::core::escaped::Escaped(session_id)
        );
        return 0;
    }
    if let Some(cl) = state.cluster.as_deref_mut() {
        let head = Head::new(msg_type, ts).session(session_id);
        let mut message = Vec::new();
        if !wire::write_envelope(&mut message, &head, wire::ser_object(payload)) {
            return 0;
        }
        return cluster::sessions::host_broadcast(cl, session_id, &message, now, out);
    }
    let Some(session) = state.sessions.get(session_id) else {
        return 0;
    };
    let head = Head::new(msg_type, ts).session(session_id);
    outbound::fan_out(
        out,
        &mut state.metrics,
        session.members().iter().map(|m| m.conn),
        &head,
        wire::ser_object(payload),
    )
}

/// Close the connection of `client_id` with 1008 `Kicked`, or `Kicked: REASON` for a
/// non-empty `reason` (cut to fit a close frame); whether it was open and not yet closing.
pub(crate) fn kick(
    state: &mut CoreState,
    out: &mut Actions<Event>,
    client_id: &str,
    reason: Option<&str>,
) -> bool {
    match state.clients.conn_of(client_id) {
        Some(conn) => {
            log::debug!(
                "kicking client {}",
                crate::core::escaped::Escaped(client_id)
            );
            state.close(out, conn, CLOSE_POLICY, kick_reason(reason))
        }
        None => false,
    }
}

//! Custom message handlers registered by the embedding program, the [`HandlerContext`] they
//! act through, and the host actions shared with [`Command`](crate::core::events::Command)s.
//!
//! Contract:
//! - A handler runs for a message of its type from an authenticated connection, after the
//!   size, parse, envelope, rate limit and auth checks; it is responsible for the reply (the
//!   gateway sends none for it).
//! - Messages sent through the context carry a fresh `id` and no `source`; `reply` and
//!   `error` carry `replyTo` = the request's `id`; `broadcast` carries `sessionId`.
//! - `send_to` reaches any open connection (authenticated or not), `broadcast` every member
//!   of the session (the sender included), staged once. A payload that does not serialize
//!   sends nothing (`reply` then answers `INTERNAL_ERROR` instead).
//! - `kick` closes with 1008 `Kicked`; the connection's cleanup happens when the reactor
//!   reports the close.

use serde::Serialize;
use serde_json::Value;

use crate::app::Actions;
use crate::core::auth::ANONYMOUS;
use crate::core::dispatch::{CoreState, Req, CLOSE_POLICY, REASON_KICKED};
use crate::core::events::Event;
use crate::core::outbound::{self, Reject};
use crate::core::wire::ErrorCode;
use crate::core::wire::{self, Head};

/// A registered handler.
pub(crate) type Handler = Box<dyn FnMut(&mut HandlerContext<'_>, &Message) + Send>;

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
            log::warn!("handler reply of type {msg_type:?} is not a message: empty type or a payload that is not a JSON object");
            self.error(ErrorCode::InternalError, "Reply could not be serialized");
        }
    }

    /// Send a message to the client `client_id`; whether it was sent (false when the client is
    /// not connected, `msg_type` is empty or `payload` is not a JSON object).
    pub fn send_to(&mut self, client_id: &str, msg_type: &str, payload: impl Serialize) -> bool {
        self.state
            .host_send(self.out, client_id, msg_type, &payload, self.req.ts)
    }

    /// Send a message to every member of `session_id`; returns how many received it (0 also
    /// when `msg_type` is empty or `payload` is not a JSON object).
    pub fn broadcast(
        &mut self,
        session_id: &str,
        msg_type: &str,
        payload: impl Serialize,
    ) -> usize {
        self.state
            .host_broadcast(self.out, session_id, msg_type, &payload, self.req.ts)
    }

    /// Close the connection of `client_id` with 1008 `Kicked`; whether it was open.
    pub fn kick(&mut self, client_id: &str) -> bool {
        self.state.host_kick(self.out, client_id)
    }

    /// Answer the sender with an `error` (`replyTo` set).
    pub fn error(&mut self, code: ErrorCode, message: &str) {
        let req = self.req;
        self.state
            .reject(self.out, &req, Reject::new(code, message));
    }
}

impl CoreState {
    /// Send one message to the client `client_id` (no `source`, no `replyTo`).
    pub(crate) fn host_send<T: Serialize + ?Sized>(
        &mut self,
        out: &mut Actions<Event>,
        client_id: &str,
        msg_type: &str,
        payload: &T,
        ts: u64,
    ) -> bool {
        let Some(conn) = self.clients.conn_of(client_id) else {
            return false;
        };
        if msg_type.is_empty() {
            log::warn!("not sending a message with an empty type to {client_id}");
            return false;
        }
        outbound::send(
            out,
            &mut self.metrics,
            conn,
            &Head::new(msg_type, ts),
            wire::ser_object(payload),
        )
    }

    /// Send one message, staged once, to every member of `session_id`.
    pub(crate) fn host_broadcast<T: Serialize + ?Sized>(
        &mut self,
        out: &mut Actions<Event>,
        session_id: &str,
        msg_type: &str,
        payload: &T,
        ts: u64,
    ) -> usize {
        let Some(session) = self.sessions.get(session_id) else {
            return 0;
        };
        if msg_type.is_empty() {
            log::warn!("not broadcasting a message with an empty type to {session_id}");
            return 0;
        }
        let head = Head::new(msg_type, ts).session(session_id);
        outbound::fan_out(
            out,
            &mut self.metrics,
            session.members().iter().map(|m| m.conn),
            &head,
            wire::ser_object(payload),
        )
    }

    /// Close the connection of `client_id` with 1008 `Kicked`.
    pub(crate) fn host_kick(&mut self, out: &mut Actions<Event>, client_id: &str) -> bool {
        match self.clients.conn_of(client_id) {
            Some(conn) => {
                log::debug!("kicking client {client_id}");
                self.close(out, conn, CLOSE_POLICY, REASON_KICKED)
            }
            None => false,
        }
    }
}

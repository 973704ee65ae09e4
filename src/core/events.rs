//! What crosses between the core and the host program: [`Command`]s in (through a handle,
//! from any thread) and [`Event`]s out (through the bounded event queue).
//!
//! Contract:
//! - Commands act like the same action taken by a handler: messages they send carry a fresh
//!   `id`, no `replyTo` and no `source`; a command naming an unknown client or session does
//!   nothing.
//! - Events report what happened after it happened; the reactor may drop events when the
//!   host's queue is full (counted in `gateway_events_dropped_total`), so they are
//!   notifications, never the only record of state.

use serde_json::Value;

/// A request from the host program to the core.
#[derive(Clone, Debug, PartialEq)]
pub(crate) enum Command {
    /// Send one message to the client `client_id` (any open connection).
    SendToClient {
        /// The receiving client.
        client_id: String,
        /// The message `type`.
        msg_type: String,
        /// The message `payload`.
        payload: Value,
    },
    /// Send one message to every member of `session_id`, with `sessionId` set.
    BroadcastToSession {
        /// The session.
        session_id: String,
        /// The message `type`.
        msg_type: String,
        /// The message `payload`.
        payload: Value,
    },
    /// Close the client's connection with 1008 `Kicked`.
    Kick {
        /// The client to disconnect.
        client_id: String,
    },
}

/// Something that happened, for the host program.
#[derive(Clone, Debug, PartialEq)]
#[non_exhaustive]
pub enum Event {
    /// A connection opened and got its `clientId`.
    ClientConnected {
        /// The new client.
        client_id: String,
    },
    /// A connection closed; `reason` is the close reason label, with `:CODE` when it carried
    /// a close code (e.g. `peer:1000`, `timeout`).
    ClientDisconnected {
        /// The client that left.
        client_id: String,
        /// Why.
        reason: String,
    },
    /// A connection authenticated (in auth mode `none`, right after it connected).
    ClientAuthenticated {
        /// The client.
        client_id: String,
        /// Its `userId`.
        user_id: String,
    },
    /// A session was created by `client_id`.
    SessionCreated {
        /// The session.
        session_id: String,
        /// Its creator.
        client_id: String,
    },
    /// `client_id` joined an existing session.
    SessionJoined {
        /// The session.
        session_id: String,
        /// The new member.
        client_id: String,
    },
    /// `client_id` left a session (by `session_leave` or by disconnecting).
    SessionLeft {
        /// The session.
        session_id: String,
        /// The member that left.
        client_id: String,
    },
    /// An agent was registered (or re-registered, or taken over) by `client_id`.
    AgentRegistered {
        /// The agent.
        agent_id: String,
        /// Its owner.
        client_id: String,
    },
    /// An agent turned offline because its connection closed.
    AgentOffline {
        /// The agent.
        agent_id: String,
    },
    /// A message whose type is neither built in nor handled by a registered handler; the
    /// client got `UNKNOWN_TYPE`.
    UnhandledMessage {
        /// The sender.
        client_id: String,
        /// Its `type`.
        msg_type: String,
        /// The whole message as received.
        message: Value,
    },
}

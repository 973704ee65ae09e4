//! What crosses between the core and the host program: [`Command`]s in (through a handle,
//! from any thread) and [`Event`]s out (through the bounded event queue).
//!
//! Contract:
//! - Commands act like the same action taken by a handler: messages they send carry a fresh
//!   `id`, no `replyTo` and no `source`; a command naming an unknown client or session does
//!   nothing.
//! - Events report what happened after it happened; the reactor may drop events when the
//!   host's queue is full (counted in `gateway_events_dropped_total`), so they are
//!   notifications, never the only record of state. The queue is bounded in bytes too, each
//!   event counted at [`Event::estimated_bytes`].
//! - An event holds at most the message as it arrived (its text), never a parsed copy.

use serde_json::Value;

use crate::config::Config;

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
    /// Close the client's connection with 1008 `Kicked`, or `Kicked: REASON` with a
    /// non-empty reason (cut to fit a close frame).
    Kick {
        /// The client to disconnect.
        client_id: String,
        /// The reason after `Kicked: `, if any.
        reason: Option<String>,
    },
    /// Run with this configuration's live keys from now on (PROTOCOL section 12).
    Reload(Box<Config>),
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
    /// The configuration was reloaded (a SIGHUP, [`Gateway::reload`] or
    /// [`GatewayHandle::reload`]).
    ///
    /// [`Gateway::reload`]: crate::Gateway::reload
    /// [`GatewayHandle::reload`]: crate::GatewayHandle::reload
    ConfigReloaded {
        /// The keys whose value changed, in the order of the configuration file (names
        /// only, never a value); empty when nothing changed.
        changed: Vec<String>,
    },
    /// A message whose type is neither built in nor handled by a registered handler; the
    /// client got `UNKNOWN_TYPE`.
    UnhandledMessage {
        /// The sender.
        client_id: String,
        /// Its `type`.
        msg_type: String,
        /// The whole message as it arrived: its JSON text, unparsed (parse it with
        /// `serde_json::from_str` when needed).
        message: String,
    },
}

impl Event {
    /// What the event costs in the host's queue: its inline size plus the bytes of its
    /// strings.
    pub(crate) fn estimated_bytes(&self) -> usize {
        let strings: &[&String] = match self {
            Event::ConfigReloaded { changed } => {
                let each = changed.iter().map(|s| s.capacity()).sum::<usize>();
                let list = changed.capacity() * std::mem::size_of::<String>();
                return std::mem::size_of::<Event>() + list + each;
            }
            Event::ClientConnected { client_id } => &[client_id],
            Event::ClientDisconnected { client_id, reason } => &[client_id, reason],
            Event::ClientAuthenticated { client_id, user_id } => &[client_id, user_id],
            Event::SessionCreated {
                session_id,
                client_id,
            }
            | Event::SessionJoined {
                session_id,
                client_id,
            }
            | Event::SessionLeft {
                session_id,
                client_id,
            } => &[session_id, client_id],
            Event::AgentRegistered {
                agent_id,
                client_id,
            } => &[agent_id, client_id],
            Event::AgentOffline { agent_id } => &[agent_id],
            Event::UnhandledMessage {
                client_id,
                msg_type,
                message,
            } => &[client_id, msg_type, message],
        };
        std::mem::size_of::<Event>() + strings.iter().map(|s| s.capacity()).sum::<usize>()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_event_costs_its_size_and_its_strings() {
        let small = Event::AgentOffline {
            agent_id: "a".into(),
        };
        assert!(small.estimated_bytes() > std::mem::size_of::<Event>());
        let big = Event::UnhandledMessage {
            client_id: "c".into(),
            msg_type: "t".into(),
            message: "x".repeat(100_000),
        };
        assert!(big.estimated_bytes() >= 100_002);
        assert!(big.estimated_bytes() < 100_002 + 512);
    }
}

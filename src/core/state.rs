//! `CoreState`, everything the request handlers work on, and what every request shares:
//! the `Req` being handled, the clock, the error reply and closing a connection (with the
//! close reasons, a kick's included).
//!
//! Contract:
//! - Sans-IO: no sockets, no clock reads. Wall-clock milliseconds are
//!   `start_wall_ms + (now - start)`, with the `Instant`s passed in.
//! - `CoreState` is defined and given its methods here only; the handlers of each message
//!   family are free functions over it in `requests`.
//! - A connection marked `closing` stays known until the reactor reports the close; it is
//!   asked to close once (`CoreState::close`).

use std::borrow::Cow;
use std::collections::HashMap;
use std::time::Instant;

use crate::app::{Actions, ConnId};
use crate::config::{AuthMode, Config};
use crate::core::agents::AgentRegistry;
use crate::core::auth::Verifier;
use crate::core::clients::Clients;
use crate::core::events::Event;
use crate::core::metrics::Metrics;
use crate::core::outbound::{self, Reject};
use crate::core::routes::{self, RouteTable};
use crate::core::scopes::Policy;
use crate::core::sessions::{SessionLimits, SessionTable, MAX_METADATA_BYTES};
use crate::core::users::{UserLimits, Users};

/// Close code for policy violations (PROTOCOL section 8).
pub(crate) const CLOSE_POLICY: u16 = 1008;
/// Close reason when the auth deadline passes.
pub(crate) const REASON_AUTH_TIMEOUT: &str = "Authentication timeout";
/// Close reason after `max_auth_failures` failed `auth` messages.
pub(crate) const REASON_AUTH_FAILURES: &str = "Too many authentication failures";
/// Close reason of a kick without a reason: `admin_kick`,
/// [`Command::Kick`](crate::core::events::Command::Kick) and a custom handler's `kick`.
pub(crate) const REASON_KICKED: &str = "Kicked";

/// The most bytes a WebSocket close reason may have (RFC 6455 section 5.5).
pub(crate) const MAX_CLOSE_REASON: usize = 123;

/// Close reason of a connection that would hold more than `max_outbound_buffer` of queued
/// output (the transport's own slow-consumer close says the same).
pub(crate) const REASON_SLOW_CONSUMER: &str = "Slow consumer";

/// Close reason of a connection whose credential a reload no longer accepts (PROTOCOL
/// section 12).
pub(crate) const REASON_TOKEN_REVOKED: &str = "Token revoked";

/// The close reason of a kick: `Kicked`, or `Kicked: REASON` with `reason` cut on a
/// character boundary to fit [`MAX_CLOSE_REASON`] bytes. An empty reason is none. Only a
/// kick with a reason allocates.
pub(crate) fn kick_reason(reason: Option<&str>) -> Cow<'static, str> {
    let reason = match reason {
        None | Some("") => return Cow::Borrowed(REASON_KICKED),
        Some(reason) => reason,
    };
    let mut text = String::with_capacity(MAX_CLOSE_REASON);
    text.push_str(REASON_KICKED);
    text.push_str(": ");
    let mut end = reason.len().min(MAX_CLOSE_REASON - text.len());
    while !reason.is_char_boundary(end) {
        end -= 1;
    }
    text.push_str(&reason[..end]);
    Cow::Owned(text)
}

/// The session table's bounds in `config` (at start and at each reload).
pub(crate) fn session_limits(config: &Config) -> SessionLimits {
    SessionLimits {
        max_clients_per_session: config.max_clients_per_session,
        max_sessions_per_client: config.max_sessions_per_client,
        max_sessions: config.max_sessions,
        max_metadata_bytes: MAX_METADATA_BYTES,
    }
}

/// The per-user bounds in `config` (at start and at each reload).
pub(crate) fn user_limits(config: &Config) -> UserLimits {
    UserLimits {
        connections: config.max_connections_per_user,
        memberships: config.max_memberships_per_user,
        pending_routes: config.max_pending_routes_per_user,
        agents: config.max_agents_per_user,
    }
}

/// One request being handled: who sent it, its id and the time.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Req<'r> {
    /// The sender.
    pub conn: ConnId,
    /// The request's `id`, for `replyTo`.
    pub id: &'r str,
    /// Now.
    pub now: Instant,
    /// Now in ms since the Unix epoch.
    pub ts: u64,
}

/// Everything the handlers work on.
pub(crate) struct CoreState {
    pub config: Config,
    /// The configured secrets, hashed once.
    pub auth: Verifier,
    /// Which scopes each user has.
    pub policy: Policy,
    pub start: Instant,
    pub start_wall_ms: u64,
    pub clients: Clients,
    pub sessions: SessionTable,
    pub agents: AgentRegistry,
    pub routes: RouteTable,
    /// What each user holds, against the per-user bounds.
    pub users: Users,
    pub metrics: Metrics,
    /// Offline epoch → agent id, for the TTL timers in flight.
    pub agent_ttl: HashMap<u64, String>,
    pub state_version: u64,
    /// This node's part in a cluster; `None` for a standalone gateway.
    pub cluster: Option<Box<crate::core::cluster::node::Cluster>>,
}

impl CoreState {
    /// Empty tables for `config`, started at `start`, when the wall clock read
    /// `start_wall_ms`.
    pub(crate) fn new(config: &Config, start: Instant, start_wall_ms: u64) -> Self {
        CoreState {
            config: config.clone(),
            auth: Verifier::new(config),
            policy: Policy::new(config),
            start,
            start_wall_ms,
            clients: Clients::new(),
            sessions: SessionTable::new(session_limits(config)),
            agents: AgentRegistry::new(config.max_agents),
            routes: RouteTable::new(
                routes::DEFAULT_PER_REQUESTER,
                routes::DEFAULT_PER_RESPONDER,
                routes::DEFAULT_TOTAL,
            ),
            users: Users::new(user_limits(config)),
            metrics: Metrics::new(),
            agent_ttl: HashMap::new(),
            state_version: 0,
            cluster: None,
        }
    }

    /// `stateVersion` as clients see it: this node's count of changes, or in a cluster the
    /// cluster's, as of this node's last heartbeat.
    pub(crate) fn shown_state_version(&self) -> u64 {
        self.cluster
            .as_ref()
            .map_or(self.state_version, |cl| cl.counts.version)
    }

    /// `now` in ms since the Unix epoch.
    pub(crate) fn wall_ms(&self, now: Instant) -> u64 {
        self.start_wall_ms.saturating_add(self.uptime_ms(now))
    }

    /// Ms since the core started.
    pub(crate) fn uptime_ms(&self, now: Instant) -> u64 {
        u64::try_from(now.saturating_duration_since(self.start).as_millis()).unwrap_or(u64::MAX)
    }

    /// Whether clients must authenticate.
    pub(crate) fn auth_required(&self) -> bool {
        self.config.auth_mode != AuthMode::None
    }

    /// Send the error of `reject` in reply to `req`.
    pub(crate) fn reject(&mut self, out: &mut Actions<Event>, req: &Req<'_>, reject: Reject) {
        outbound::send_error(
            out,
            &mut self.metrics,
            req.conn,
            Some(req.id),
            req.ts,
            &reject,
        );
    }

    /// Mark `conn` closing and ask the reactor to close it with `code` and `reason` (at most
    /// 123 bytes; a `&'static str` is not copied); false when it is unknown or already
    /// closing.
    pub(crate) fn close(
        &mut self,
        out: &mut Actions<Event>,
        conn: ConnId,
        code: u16,
        reason: impl Into<Cow<'static, str>>,
    ) -> bool {
        match self.clients.get_mut(conn) {
            Some(client) if !client.closing => {
                client.closing = true;
                out.close(conn, code, reason);
                true
            }
            _ => false,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kick_reasons_fit_a_close_frame() {
        assert_eq!(kick_reason(None), "Kicked");
        assert_eq!(kick_reason(Some("")), "Kicked");
        assert!(matches!(kick_reason(None), Cow::Borrowed(_)));
        assert_eq!(kick_reason(Some("spam")), "Kicked: spam");
        let long = "x".repeat(500);
        let cut = kick_reason(Some(&long));
        assert_eq!(cut.len(), MAX_CLOSE_REASON);
        assert!(cut.starts_with("Kicked: xxx"));
        // 115 bytes of room: a 2-byte character that would straddle the end is left out.
        let accents = "\u{e9}".repeat(100);
        let cut = kick_reason(Some(&accents));
        assert_eq!(cut.len(), MAX_CLOSE_REASON - 1);
        assert!(cut.ends_with('\u{e9}'));
    }
}

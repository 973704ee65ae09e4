//! [`GatewayCore`]: the gateway protocol as an [`App`] — the state every handler works on,
//! the order in which an incoming message is checked, and the routing of each message to its
//! handler.
//!
//! Contract:
//! - Sans-IO: no sockets, no clock reads. Wall-clock milliseconds are
//!   `start_wall_ms + (now - start)`, with the `Instant`s passed in.
//! - An incoming message goes through, in order: size (`MESSAGE_TOO_LARGE`), UTF-8 and JSON
//!   (`PARSE_ERROR`), envelope (`INVALID_MESSAGE`), rate limit (`RATE_LIMITED`, not handled),
//!   auth gate (`AUTH_REQUIRED` for anything but `auth`, `connect`, `ping`), then its handler.
//!   Messages refused before the rate limit step take no token.
//! - Every request of PROTOCOL section 5 gets exactly one reply or one `error`, each with
//!   `replyTo`; relays, `presence`, `route_request` and `route_response` are answered only
//!   when refused.
//! - Messages from a connection the core has asked to close are ignored.
//! - Built-in types cannot be taken over by a registered handler.

use std::collections::HashMap;
use std::time::Instant;

use serde_json::Value;

use crate::app::{Actions, App, CloseReason, ConnId, HttpResponse, TransportStats};
use crate::config::{AuthMode, Config};
use crate::core::agents::AgentRegistry;
use crate::core::auth::ANONYMOUS;
use crate::core::clients::{Client, Clients};
use crate::core::events::{Command, Event};
use crate::core::metrics::{type_label, CoreGauges, Health, Metrics, INVALID};
use crate::core::outbound::{self, short, Reject};
use crate::core::ratelimit::TokenBucket;
use crate::core::requests::custom::{Handler, HandlerContext, Message};
use crate::core::routes::{self, RouteTable};
use crate::core::sessions::{SessionLimits, SessionTable, MAX_METADATA_BYTES};
use crate::core::timers::{self, Timer};
use crate::core::wire::payloads::WelcomeOut;
use crate::core::wire::Head;
use crate::core::wire::{parse_envelope, Envelope, EnvelopeError, ErrorCode, MsgKind};

/// Close code for policy violations (PROTOCOL section 8).
pub const CLOSE_POLICY: u16 = 1008;
/// Close reason when the auth deadline passes.
pub const REASON_AUTH_TIMEOUT: &str = "Authentication timeout";
/// Close reason after `max_auth_failures` failed `auth` messages.
pub const REASON_AUTH_FAILURES: &str = "Too many authentication failures";
/// Close reason of [`Command::Kick`] and [`HandlerContext::kick`].
pub const REASON_KICKED: &str = "Kicked";

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
    pub start: Instant,
    pub start_wall_ms: u64,
    pub clients: Clients,
    pub sessions: SessionTable,
    pub agents: AgentRegistry,
    pub routes: RouteTable,
    pub metrics: Metrics,
    /// Offline epoch → agent id, for the TTL timers in flight.
    pub agent_ttl: HashMap<u64, String>,
    pub state_version: u64,
}

impl CoreState {
    /// `now` in ms since the Unix epoch.
    pub fn wall_ms(&self, now: Instant) -> u64 {
        self.start_wall_ms.saturating_add(self.uptime_ms(now))
    }

    /// Ms since the core started.
    pub fn uptime_ms(&self, now: Instant) -> u64 {
        u64::try_from(now.saturating_duration_since(self.start).as_millis()).unwrap_or(u64::MAX)
    }

    /// Whether clients must authenticate.
    pub fn auth_required(&self) -> bool {
        self.config.auth_mode != AuthMode::None
    }

    /// Send the error of `reject` in reply to `req`.
    pub fn reject(&mut self, out: &mut Actions<Event>, req: &Req<'_>, reject: Reject) {
        outbound::send_error(
            out,
            &mut self.metrics,
            req.conn,
            Some(req.id),
            reject.code,
            &reject.message,
            reject.field,
            req.ts,
        );
    }

    /// Mark `conn` closing and ask the reactor to close it; false when it is unknown or
    /// already closing.
    pub fn close(
        &mut self,
        out: &mut Actions<Event>,
        conn: ConnId,
        code: u16,
        reason: &'static str,
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

    /// Run the handler of a built-in kind; a refusal becomes the error reply.
    fn handle_builtin(
        &mut self,
        kind: MsgKind,
        req: &Req<'_>,
        env: &Envelope<'_>,
        out: &mut Actions<Event>,
    ) {
        let result = match kind {
            MsgKind::Ping => {
                self.on_ping(req, out);
                Ok(())
            }
            MsgKind::Auth => self.on_auth(req, env, out),
            MsgKind::Connect => self.on_connect(req, env, out),
            MsgKind::SessionCreate => self.on_session_create(req, env, out),
            MsgKind::SessionJoin => self.on_session_join(req, env, out),
            MsgKind::SessionLeave => self.on_session_leave(req, env, out),
            MsgKind::SessionPatch => self.on_session_patch(req, env, out),
            MsgKind::Presence => self.on_presence(req, env, out),
            MsgKind::Relay => self.on_relay(req, env, out),
            MsgKind::RouteRequest => self.on_route_request(req, env, out),
            MsgKind::RouteResponse => self.on_route_response(req, env, out),
            MsgKind::AgentRegister => self.on_agent_register(req, env, out),
            MsgKind::AgentUnregister => self.on_agent_unregister(req, env, out),
            MsgKind::AgentHeartbeat => self.on_agent_heartbeat(req, env, out),
            MsgKind::AgentQuery => self.on_agent_query(req, env, out),
        };
        if let Err(reject) = result {
            self.reject(out, req, reject);
        }
    }

    /// Forget `client`: leave its sessions, turn its agents offline, drop its routes.
    fn forget(&mut self, client: Client, reason: String, now: Instant, out: &mut Actions<Event>) {
        let conn = client.conn;
        let ts = self.wall_ms(now);
        self.leave_all_sessions(conn, ts, out);
        let expiry =
            Config::duration(self.config.agent_ttl_ms).and_then(|ttl| now.checked_add(ttl));
        for (agent_id, epoch) in self.agents.owner_disconnected(conn, ts) {
            self.state_version += 1;
            log::debug!("agent {agent_id} offline");
            if let Some(at) = expiry {
                self.agent_ttl.insert(epoch, agent_id.clone());
                out.set_timer(at, timers::agent_ttl(epoch));
            }
            out.emit(Event::AgentOffline { agent_id });
        }
        self.routes.drop_conn(conn);
        log::debug!("client {} disconnected ({reason})", client.client_id);
        out.emit(Event::ClientDisconnected {
            client_id: client.client_id,
            reason,
        });
    }
}

/// The gateway protocol core: implements [`App`] for the reactor.
pub struct GatewayCore {
    state: CoreState,
    handlers: HashMap<String, Handler>,
}

impl GatewayCore {
    /// A core for `config`, started at `start`, when the wall clock read `start_wall_ms`
    /// (ms since the Unix epoch).
    pub fn new(config: &Config, start: Instant, start_wall_ms: u64) -> Self {
        let limits = SessionLimits {
            max_clients_per_session: config.max_clients_per_session,
            max_sessions_per_client: config.max_sessions_per_client,
            max_sessions: config.max_sessions,
            max_metadata_bytes: MAX_METADATA_BYTES,
        };
        GatewayCore {
            state: CoreState {
                config: config.clone(),
                start,
                start_wall_ms,
                clients: Clients::new(),
                sessions: SessionTable::new(limits),
                agents: AgentRegistry::new(config.max_agents),
                routes: RouteTable::new(routes::DEFAULT_PER_REQUESTER, routes::DEFAULT_TOTAL),
                metrics: Metrics::new(),
                agent_ttl: HashMap::new(),
                state_version: 0,
            },
            handlers: HashMap::new(),
        }
    }

    /// Handle messages of type `msg_type` with `handler`, after the auth gate, instead of
    /// answering `UNKNOWN_TYPE`. Returns `false`, registering nothing, when `msg_type` is
    /// empty or a built-in type; registering a type again replaces its handler.
    pub fn register_handler<F>(&mut self, msg_type: &str, handler: F) -> bool
    where
        F: FnMut(&mut HandlerContext<'_>, &Message) + Send + 'static,
    {
        if msg_type.is_empty() || MsgKind::of(msg_type).is_some() {
            return false;
        }
        self.handlers.insert(msg_type.to_owned(), Box::new(handler));
        true
    }

    /// Open connections the core knows.
    pub fn client_count(&self) -> usize {
        self.state.clients.len()
    }

    /// Authenticated connections.
    pub fn authenticated_count(&self) -> usize {
        self.state.clients.authenticated()
    }

    /// Sessions.
    pub fn session_count(&self) -> usize {
        self.state.sessions.len()
    }

    /// Agents stored, offline ones included.
    pub fn agent_count(&self) -> usize {
        self.state.agents.len()
    }

    /// Offline agents whose TTL expiry is pending.
    #[cfg(test)]
    pub(crate) fn pending_agent_expiries(&self) -> usize {
        self.state.agent_ttl.len()
    }

    /// The `stateVersion` reported in `hello_ok`.
    pub fn state_version(&self) -> u64 {
        self.state.state_version
    }

    /// The `clientId` of `conn`.
    pub fn client_id_of(&self, conn: ConnId) -> Option<&str> {
        self.state.clients.get(conn).map(|c| c.client_id.as_str())
    }

    /// A message of a type that is not built in: its handler, or `UNKNOWN_TYPE`.
    fn handle_other(
        &mut self,
        req: &Req<'_>,
        env: &Envelope<'_>,
        data: &[u8],
        out: &mut Actions<Event>,
    ) {
        let state = &mut self.state;
        let Some(handler) = self.handlers.get_mut(env.msg_type.as_ref()) else {
            let reject = Reject::new(
                ErrorCode::UnknownType,
                format!("Unknown message type: {}", short(&env.msg_type)),
            );
            state.reject(out, req, reject);
            let message = serde_json::from_slice(data).unwrap_or_else(
                |_| serde_json::json!({"type": env.msg_type.as_ref(), "id": env.id.as_ref()}),
            );
            if let Some(client) = state.clients.get(req.conn) {
                out.emit(Event::UnhandledMessage {
                    client_id: client.client_id.clone(),
                    msg_type: env.msg_type.clone().into_owned(),
                    message,
                });
            }
            return;
        };
        let payload: Value = match serde_json::from_slice(env.payload) {
            Ok(payload) => payload,
            Err(e) => {
                let reject = Reject {
                    field: Some("payload"),
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

impl App for GatewayCore {
    type Command = Command;
    type Event = Event;

    fn on_open(&mut self, conn: ConnId, now: Instant, out: &mut Actions<Event>) {
        let state = &mut self.state;
        let ts = state.wall_ms(now);
        let auth_required = state.auth_required();
        let client_id = uuid::Uuid::new_v4().to_string();
        let deadline = if auth_required {
            Config::duration(state.config.auth_timeout_ms).and_then(|d| now.checked_add(d))
        } else {
            None
        };
        let bucket = (state.config.rate_limit_per_sec > 0).then(|| {
            TokenBucket::new(
                state.config.rate_limit_per_sec,
                state.config.rate_limit_burst,
                now,
            )
        });
        let client = Client {
            conn,
            client_id: client_id.clone(),
            user_id: (!auth_required).then(|| ANONYMOUS.to_owned()),
            auth_failures: 0,
            auth_deadline: deadline,
            bucket,
            device: None,
            closing: false,
        };
        if let Some(old) = state.clients.insert(client) {
            log::warn!("connection slot {} reopened before it closed", conn.index);
            state.forget(old, CloseReason::Reset.label().to_owned(), now, out);
        }
        let welcome = WelcomeOut {
            session_id: &client_id,
            client_id: &client_id,
            status: "connected",
            auth_required,
        };
        outbound::send_ser(
            out,
            &mut state.metrics,
            conn,
            &Head::new("session_info", ts),
            &welcome,
        );
        if let Some(at) = deadline {
            out.set_timer(at, timers::auth_timeout(conn));
        }
        log::debug!("client {client_id} connected");
        out.emit(Event::ClientConnected {
            client_id: client_id.clone(),
        });
        if !auth_required {
            out.emit(Event::ClientAuthenticated {
                client_id,
                user_id: ANONYMOUS.to_owned(),
            });
        }
    }

    fn on_message(
        &mut self,
        conn: ConnId,
        data: &[u8],
        binary: bool,
        now: Instant,
        out: &mut Actions<Event>,
    ) {
        let state = &mut self.state;
        match state.clients.get(conn) {
            Some(client) if !client.closing => {}
            _ => return,
        }
        let ts = state.wall_ms(now);
        let max = state.config.max_message_size;
        if data.len() > max {
            state.metrics.count_in(INVALID);
            let message = format!(
                "Message of {} bytes exceeds the limit of {max} bytes",
                data.len()
            );
            outbound::send_error(
                out,
                &mut state.metrics,
                conn,
                None,
                ErrorCode::MessageTooLarge,
                &message,
                None,
                ts,
            );
            return;
        }
        let parsed = if binary && std::str::from_utf8(data).is_err() {
            Err(EnvelopeError::Parse(
                "binary message is not UTF-8".to_owned(),
            ))
        } else {
            parse_envelope(data)
        };
        let env = match parsed {
            Ok(env) => env,
            Err(EnvelopeError::Parse(detail)) => {
                state.metrics.count_in(INVALID);
                outbound::send_error(
                    out,
                    &mut state.metrics,
                    conn,
                    None,
                    ErrorCode::ParseError,
                    &format!("Parse error: {detail}"),
                    None,
                    ts,
                );
                return;
            }
            Err(EnvelopeError::Invalid { error, reply_to }) => {
                state.metrics.count_in(INVALID);
                outbound::send_error(
                    out,
                    &mut state.metrics,
                    conn,
                    reply_to.as_deref(),
                    ErrorCode::InvalidMessage,
                    &error.message,
                    Some(error.field),
                    ts,
                );
                return;
            }
        };
        state.metrics.count_in(type_label(&env.msg_type));
        let kind = MsgKind::of(&env.msg_type);
        let req = Req {
            conn,
            id: &env.id,
            now,
            ts,
        };
        let Some(client) = state.clients.get_mut(conn) else {
            return;
        };
        if let Some(bucket) = &mut client.bucket {
            if !bucket.try_take(now) {
                let reject = Reject::new(ErrorCode::RateLimited, "Rate limit exceeded");
                state.reject(out, &req, reject);
                return;
            }
        }
        if !client.is_authenticated() && !kind.is_some_and(MsgKind::pre_auth) {
            let reject = Reject::new(ErrorCode::AuthRequired, "Authentication required");
            state.reject(out, &req, reject);
            return;
        }
        log::trace!("{} from {conn:?}", short(&env.msg_type));
        match kind {
            Some(kind) => state.handle_builtin(kind, &req, &env, out),
            None => self.handle_other(&req, &env, data, out),
        }
    }

    fn on_close(
        &mut self,
        conn: ConnId,
        reason: CloseReason,
        now: Instant,
        out: &mut Actions<Event>,
    ) {
        let state = &mut self.state;
        let Some(client) = state.clients.remove(conn) else {
            return;
        };
        let reason = match reason {
            CloseReason::Peer(code) | CloseReason::App(code) | CloseReason::Protocol(code) => {
                format!("{}:{code}", reason.label())
            }
            other => other.label().to_owned(),
        };
        state.forget(client, reason, now, out);
    }

    fn on_command(&mut self, cmd: Command, now: Instant, out: &mut Actions<Event>) {
        let state = &mut self.state;
        let ts = state.wall_ms(now);
        match cmd {
            Command::SendToClient {
                client_id,
                msg_type,
                payload,
            } => {
                state.host_send(out, &client_id, &msg_type, &payload, ts);
            }
            Command::BroadcastToSession {
                session_id,
                msg_type,
                payload,
            } => {
                state.host_broadcast(out, &session_id, &msg_type, &payload, ts);
            }
            Command::Kick { client_id } => {
                state.host_kick(out, &client_id);
            }
        }
    }

    fn on_timer(&mut self, token: u64, now: Instant, out: &mut Actions<Event>) {
        let state = &mut self.state;
        match timers::decode(token) {
            Timer::AuthTimeout {
                index,
                generation_bits,
            } => {
                let Some(conn) = state
                    .clients
                    .get_by_index(index)
                    .filter(|c| timers::names(c.conn, index, generation_bits))
                    .filter(|c| !c.is_authenticated())
                    .filter(|c| c.auth_deadline.is_some_and(|at| now >= at))
                    .map(|c| c.conn)
                else {
                    return;
                };
                log::debug!("auth timeout for {conn:?}");
                state.close(out, conn, CLOSE_POLICY, REASON_AUTH_TIMEOUT);
            }
            Timer::AgentTtl { epoch } => {
                if let Some(agent_id) = state.agent_ttl.remove(&epoch) {
                    if state.agents.expire(&agent_id, epoch) {
                        state.state_version += 1;
                        log::debug!("agent {agent_id} removed after its TTL");
                    }
                }
            }
        }
    }

    fn http_get(
        &mut self,
        path: &str,
        stats: &TransportStats,
        now: Instant,
    ) -> Option<HttpResponse> {
        let state = &self.state;
        if !state.config.http_endpoints {
            return None;
        }
        let path = path.split('?').next().unwrap_or(path);
        match path {
            "/health" => {
                let health = Health {
                    status: "ok",
                    service: "gateway",
                    timestamp: state.wall_ms(now),
                    uptime: state.uptime_ms(now),
                    clients: state.clients.len(),
                    sessions: state.sessions.len(),
                    agents: state.agents.len(),
                };
                Some(HttpResponse {
                    status: 200,
                    content_type: "application/json",
                    body: serde_json::to_vec(&health).unwrap_or_default(),
                })
            }
            "/metrics" => {
                let gauges = CoreGauges {
                    clients: state.clients.len(),
                    authenticated: state.clients.authenticated(),
                    sessions: state.sessions.len(),
                    agents: state.agents.len(),
                    agents_online: state.agents.online_count(),
                    routes_pending: state.routes.len(),
                    state_version: state.state_version,
                    uptime_ms: state.uptime_ms(now),
                };
                Some(HttpResponse {
                    status: 200,
                    content_type: "text/plain; version=0.0.4; charset=utf-8",
                    body: state.metrics.render(stats, &gauges).into_bytes(),
                })
            }
            _ => None,
        }
    }
}

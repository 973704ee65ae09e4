//! [`GatewayCore`]: the gateway protocol as an [`App`] — the order in which an incoming
//! message is checked, and the routing of each message, command and timer to its handler in
//! [`requests`](crate::core::requests). The state they work on is `CoreState`
//! ([`state`](crate::core::state)).
//!
//! Contract:
//! - An incoming message goes through, in order: size (`MESSAGE_TOO_LARGE`), UTF-8 and JSON
//!   (`PARSE_ERROR`), envelope (`INVALID_MESSAGE`), rate limit (`RATE_LIMITED`, not handled),
//!   auth gate (`AUTH_REQUIRED` for anything but `auth`, `connect`, `ping`), scope
//!   (`FORBIDDEN` with `details.scope`, PROTOCOL section 12), for a type whose
//!   payload is forwarded unread the strict payload check (`INVALID_MESSAGE`, `wire/strict.rs`),
//!   then its handler.
//!   Messages refused before the rate limit step take no token.
//! - Every request of PROTOCOL section 5 gets exactly one reply or one `error`, each with
//!   `replyTo`; relays, `presence`, `route_request` and `route_response` are answered only
//!   when refused.
//! - Messages from a connection the core has asked to close are ignored.
//! - Built-in types cannot be taken over by a registered handler.

use std::time::Instant;

use crate::app::{Actions, App, CloseReason, ConnId, HttpResponse, LinkId, TransportStats};
use crate::config::{Config, ConfigError};
use crate::core::auth::ANONYMOUS;
use crate::core::cluster::mirror::PendingDevices;
use crate::core::cluster::node::{Cluster, ClusterSetup};
use crate::core::cluster::{self, LinkReport};
use crate::core::errors::ErrorCode;
use crate::core::escaped::Escaped;
use crate::core::events::{Command, Event};
use crate::core::metrics::{type_label, ClusterGauges, ClusterHealth, CoreGauges, Health, INVALID};
use crate::core::outbound::{self, Reject};
use crate::core::requests::custom::{self, HandlerContext, Handlers, Message};
use crate::core::requests::{admin, agents, connection, devices, reload, routes, sessions};
use crate::core::scopes::Scope;
use crate::core::state::{CoreState, Req, CLOSE_POLICY, REASON_AUTH_TIMEOUT};
use crate::core::timers::{self, Timer};
use crate::core::wire::payloads::PresenceQueryIn;
use crate::core::wire::{parse_envelope, strict, Envelope, EnvelopeError, MsgKind};

/// The scope a built-in kind needs (PROTOCOL section 12); `None` for `ping`, `auth` and
/// `connect`. Types handled by a registered handler need none: the handler sees the
/// sender's scopes in its [`HandlerContext`].
fn scope_of(kind: MsgKind) -> Option<Scope> {
    match kind {
        MsgKind::Ping | MsgKind::Auth | MsgKind::Connect => None,
        MsgKind::SessionCreate
        | MsgKind::SessionJoin
        | MsgKind::SessionLeave
        | MsgKind::SessionPatch
        | MsgKind::Presence
        | MsgKind::Relay => Some(Scope::Sessions),
        MsgKind::AgentRegister
        | MsgKind::AgentUnregister
        | MsgKind::AgentHeartbeat
        | MsgKind::RouteResponse => Some(Scope::Agents),
        MsgKind::RouteRequest | MsgKind::AgentQuery | MsgKind::PresenceQuery => Some(Scope::Route),
        MsgKind::AdminKick | MsgKind::AdminClients => Some(Scope::Admin),
    }
}

/// Run the handler of a built-in kind; a refusal becomes the error reply.
fn handle_builtin(
    state: &mut CoreState,
    kind: MsgKind,
    req: &Req<'_>,
    env: &Envelope<'_>,
    out: &mut Actions<Event>,
) {
    // The envelope's walk has checked the payload on its way when it could.
    if kind.forwards_payload() {
        let checked = match &env.payload_check {
            Some(checked) => checked.clone(),
            None => strict::check(env.payload),
        };
        if let Err(error) = checked {
            state.reject(out, req, error.into());
            return;
        }
    }
    if let Some(mut cl) = state.cluster.take() {
        let result = cluster_builtin(state, &mut cl, kind, req, env, out);
        state.cluster = Some(cl);
        match result {
            Some(Err(reject)) => return state.reject(out, req, reject),
            Some(Ok(())) => return,
            None => {}
        }
    }
    let result = match kind {
        MsgKind::Ping => {
            connection::ping(state, req, out);
            Ok(())
        }
        MsgKind::Auth => connection::auth(state, req, env, out),
        MsgKind::Connect => connection::connect(state, req, env, out),
        MsgKind::SessionCreate => sessions::create(state, req, env, out),
        MsgKind::SessionJoin => sessions::join(state, req, env, out),
        MsgKind::SessionLeave => sessions::leave(state, req, env, out),
        MsgKind::SessionPatch => sessions::patch(state, req, env, out),
        MsgKind::Presence => sessions::presence(state, req, env, out),
        MsgKind::PresenceQuery => devices::query(state, req, env, out),
        MsgKind::Relay => sessions::relay(state, req, env, out),
        MsgKind::RouteRequest => routes::request(state, req, env, out),
        MsgKind::RouteResponse => routes::response(state, req, env, out),
        MsgKind::AgentRegister => agents::register(state, req, env, out),
        MsgKind::AgentUnregister => agents::unregister(state, req, env, out),
        MsgKind::AgentHeartbeat => agents::heartbeat(state, req, env, out),
        MsgKind::AgentQuery => agents::query(state, req, env, out),
        MsgKind::AdminKick => admin::kick(state, req, env, out),
        MsgKind::AdminClients => admin::clients(state, req, env, out),
    };
    if let Err(reject) = result {
        state.reject(out, req, reject);
    }
}

/// The handler of a built-in kind in a cluster, when it differs from a standalone gateway's
/// (PROTOCOL section 13); `None` for the kinds served alike.
fn cluster_builtin(
    state: &mut CoreState,
    cl: &mut Cluster,
    kind: MsgKind,
    req: &Req<'_>,
    env: &Envelope<'_>,
    out: &mut Actions<Event>,
) -> Option<Result<(), Reject>> {
    Some(match kind {
        MsgKind::SessionCreate => cluster::sessions::join(state, cl, req, env, true, out),
        MsgKind::SessionJoin => cluster::sessions::join(state, cl, req, env, false, out),
        MsgKind::SessionLeave => cluster::sessions::leave(state, cl, req, env, out),
        MsgKind::Presence => cluster::sessions::presence(state, cl, req, env, out),
        MsgKind::Relay => cluster::sessions::relay(state, cl, req, env, out),
        MsgKind::RouteRequest => cluster::routes::request(state, cl, req, env, out),
        MsgKind::PresenceQuery => presence_query(state, cl, req, env, out),
        MsgKind::RouteResponse => cluster::routes::response(state, cl, req, env, out),
        MsgKind::AgentRegister => cluster::agents::register(state, cl, req, env, out),
        MsgKind::AgentUnregister => cluster::agents::change(state, cl, req, env, true, out),
        MsgKind::AgentHeartbeat => cluster::agents::change(state, cl, req, env, false, out),
        MsgKind::AgentQuery => cluster::agents::query(state, cl, req, env, out),
        MsgKind::SessionPatch => cluster::patch::patch(state, cl, req, env, out),
        MsgKind::AdminKick => cluster::admin::kick(state, cl, req, env, out),
        MsgKind::AdminClients => cluster::admin::clients(state, cl, req, env, out),
        _ => return None,
    })
}

/// `presence_query` in a cluster: its fields read as on one node, the page from the
/// cluster's devices.
fn presence_query(
    state: &mut CoreState,
    cl: &mut Cluster,
    req: &Req<'_>,
    env: &Envelope<'_>,
    out: &mut Actions<Event>,
) -> Result<(), Reject> {
    let p: PresenceQueryIn<'_> = crate::core::wire::payloads::parse(env)?;
    let limit = crate::core::wire::opt_limit(&p.limit, state.config.max_list_items)?;
    let from = devices::page_start(&p.cursor)?;
    let pending = PendingDevices {
        conn: req.conn,
        req_id: req.id.to_owned(),
        ts: req.ts,
        now: req.now,
        limit,
        hello: false,
    };
    cluster::devices::query(state, cl, pending, from, req.now, out)
}

/// The gateway protocol core: implements [`App`] for the reactor.
pub(crate) struct GatewayCore {
    state: CoreState,
    handlers: Handlers,
}

impl GatewayCore {
    /// A core for `config`, started at `start`, when the wall clock read `start_wall_ms`
    /// (ms since the Unix epoch).
    pub(crate) fn new(config: &Config, start: Instant, start_wall_ms: u64) -> Self {
        GatewayCore {
            state: CoreState::new(config, start, start_wall_ms),
            handlers: Handlers::default(),
        }
    }

    /// Handle messages of type `msg_type` with `handler`, after the auth gate, instead of
    /// answering `UNKNOWN_TYPE`. Returns `false`, registering nothing, when `msg_type` is
    /// empty or a built-in type; registering a type again replaces its handler.
    pub(crate) fn register_handler<F>(&mut self, msg_type: &str, handler: F) -> bool
    where
        F: FnMut(&mut HandlerContext<'_>, &Message) + Send + 'static,
    {
        if msg_type.is_empty() || MsgKind::of(msg_type).is_some() {
            return false;
        }
        self.handlers.insert(msg_type, Box::new(handler));
        true
    }

    /// Run with `config`'s live keys from now on (PROTOCOL section 12); the keys that
    /// changed, or why nothing did (logged too).
    pub(crate) fn reload(
        &mut self,
        config: Config,
        now: Instant,
        out: &mut Actions<Event>,
    ) -> Result<Vec<&'static str>, ConfigError> {
        reload::reload(&mut self.state, config, now, out)
    }

    /// The configuration the core runs with (the live keys as of the last reload).
    pub(crate) fn config(&self) -> &Config {
        &self.state.config
    }

    /// Open connections the core knows.
    pub(crate) fn client_count(&self) -> usize {
        self.state.clients.len()
    }

    /// Authenticated connections.
    #[cfg(test)]
    pub(crate) fn authenticated_count(&self) -> usize {
        self.state.clients.authenticated()
    }

    /// Sessions.
    pub(crate) fn session_count(&self) -> usize {
        self.state.sessions.len()
    }

    /// Agents stored, offline ones included.
    pub(crate) fn agent_count(&self) -> usize {
        self.state.agents.len()
    }

    /// Offline agents whose TTL expiry is pending.
    #[cfg(test)]
    pub(crate) fn pending_agent_expiries(&self) -> usize {
        self.state.agent_ttl.len()
    }

    /// The `stateVersion` reported in `hello_ok`.
    #[cfg(test)]
    pub(crate) fn state_version(&self) -> u64 {
        self.state.state_version
    }

    /// The `clientId` of `conn`.
    #[cfg(any(test, fuzzing))]
    pub(crate) fn client_id_of(&self, conn: ConnId) -> Option<&str> {
        self.state.clients.get(conn).map(|c| c.client_id.as_str())
    }
    /// A message of `conn` that does not wait (see [`Cluster`]): its checks and handler.
    fn handle_message(
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
            let reject = Reject::new(
                ErrorCode::MessageTooLarge,
                format!(
                    "Message of {} bytes exceeds the limit of {max} bytes",
                    data.len()
                ),
            );
            outbound::send_error(out, &mut state.metrics, conn, None, ts, &reject);
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
                let reject = Reject::new(ErrorCode::ParseError, format!("Parse error: {detail}"));
                outbound::send_error(out, &mut state.metrics, conn, None, ts, &reject);
                return;
            }
            Err(EnvelopeError::Invalid { error, reply_to }) => {
                state.metrics.count_in(INVALID);
                let reply_to = reply_to.as_deref();
                let reject = Reject::from(error);
                outbound::send_error(out, &mut state.metrics, conn, reply_to, ts, &reject);
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
        if let Some(scope) = kind.and_then(scope_of) {
            if !client.scopes.allows(scope) {
                state.reject(out, &req, Reject::forbidden(scope));
                return;
            }
        }
        log::trace!("{} from {conn:?}", Escaped(&env.msg_type));
        match kind {
            Some(kind) => handle_builtin(state, kind, &req, &env, out),
            None => self.handlers.handle(state, &req, &env, data, out),
        }
    }

    /// Handle what released connections sent while they waited for the broker.
    fn replay_released(&mut self, now: Instant, out: &mut Actions<Event>) {
        while let Some((conn, data, binary)) =
            self.state.cluster.as_mut().and_then(|c| c.next_released())
        {
            self.handle_message(conn, &data, binary, now, out);
        }
    }

    /// This node's name in its cluster, if it is in one.
    pub(crate) fn node_id(&self) -> Option<&str> {
        self.state.cluster.as_ref().map(|cl| cl.node.as_str())
    }

    /// Join the cluster `setup` describes (PROTOCOL section 13).
    pub(crate) fn join_cluster(
        &mut self,
        setup: ClusterSetup,
        now: Instant,
        out: &mut Actions<Event>,
    ) {
        cluster::start(&mut self.state, setup, now, out);
    }
}

impl App for GatewayCore {
    type Command = Command;
    type Event = Event;

    fn event_bytes(&self, event: &Event) -> usize {
        event.estimated_bytes()
    }

    fn on_open(&mut self, conn: ConnId, now: Instant, out: &mut Actions<Event>) {
        connection::open(&mut self.state, conn, now, out);
    }

    fn on_message(
        &mut self,
        conn: ConnId,
        data: &[u8],
        binary: bool,
        now: Instant,
        out: &mut Actions<Event>,
    ) {
        if let Some(cl) = self.state.cluster.as_mut() {
            if cl.is_held(conn) {
                let max = self.state.config.max_message_size;
                if !cl.keep(conn, data, binary, max) {
                    let ts = self.state.wall_ms(now);
                    let reject = Reject::new(
                        ErrorCode::LimitExceeded,
                        "Too many messages waiting for the cluster",
                    );
                    outbound::send_error(out, &mut self.state.metrics, conn, None, ts, &reject);
                }
                return;
            }
        }
        self.handle_message(conn, data, binary, now, out);
        self.replay_released(now, out);
    }

    fn on_link_open(&mut self, link: LinkId, now: Instant, out: &mut Actions<Event>) {
        cluster::on_link(&mut self.state, link, LinkReport::Open, now, out);
        self.replay_released(now, out);
    }

    fn on_link_data(&mut self, link: LinkId, data: &[u8], now: Instant, out: &mut Actions<Event>) {
        cluster::on_link(&mut self.state, link, LinkReport::Data(data), now, out);
        self.replay_released(now, out);
    }

    fn on_link_closed(
        &mut self,
        link: LinkId,
        error: &str,
        now: Instant,
        out: &mut Actions<Event>,
    ) {
        cluster::on_link(&mut self.state, link, LinkReport::Closed(error), now, out);
        self.replay_released(now, out);
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
        let ts = state.wall_ms(now);
        if let Some(cl) = state.cluster.as_mut() {
            cluster::sessions::conn_gone(cl, conn, &client.client_id, client.usage_key(), now, out);
            if client.is_authenticated() {
                cluster::clients::closed(cl, &client.client_id, now, out);
                if client.device.is_some() {
                    cluster::devices::forget(cl, &client.client_id, now, out);
                }
            }
            let user = client.is_authenticated() && client.user_id.as_deref() != Some(ANONYMOUS);
            cluster::users::conn_gone(cl, conn, client.usage_key(), user, now, out);
            let dropped = cl.routes.drop_target(conn);
            cluster::users::deliveries_dropped(&state.clients, cl, dropped, now, out);
            cluster::agents::owner_gone(cl, conn, &client.client_id, ts, now, out);
        }
        let reason = match reason {
            CloseReason::Peer(code) | CloseReason::App(code) | CloseReason::Protocol(code) => {
                format!("{}:{code}", reason.label())
            }
            other => other.label().to_owned(),
        };
        connection::forget(state, client, reason, now, out);
    }

    fn on_command(&mut self, cmd: Command, now: Instant, out: &mut Actions<Event>) {
        let state = &mut self.state;
        match cmd {
            Command::SendToClient {
                client_id,
                msg_type,
                payload,
            } => {
                custom::send_to_client(state, out, &client_id, &msg_type, &payload, now);
            }
            Command::BroadcastToSession {
                session_id,
                msg_type,
                payload,
            } => {
                custom::broadcast_to_session(state, out, &session_id, &msg_type, &payload, now);
            }
            Command::Kick { client_id, reason } => {
                custom::kick(state, out, &client_id, reason.as_deref());
            }
            Command::Reload(config) => {
                // A refusal is logged there; the host learns of a success by the event.
                let _ = reload::reload(state, *config, now, out);
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
                    .filter(|c| c.auth_deadline().is_some_and(|at| now >= at))
                    .map(|c| c.conn)
                else {
                    return;
                };
                log::debug!("auth timeout for {conn:?}");
                state.close(out, conn, CLOSE_POLICY, REASON_AUTH_TIMEOUT);
            }
            Timer::TokenExpiry {
                index,
                generation_bits,
            } => connection::expiry_check(state, index, generation_bits, now, out),
            Timer::AgentTtl { epoch } => agents::ttl_expired(state, epoch),
            Timer::ClusterTick => {
                cluster::tick(state, now, out);
                self.replay_released(now, out);
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
                let cluster = state.cluster.as_ref().map(|cl| ClusterHealth {
                    node_id: cl.node.clone(),
                    nodes: cl.nodes_alive,
                    broker: if cl.is_serving() { "ok" } else { "down" },
                });
                let degraded = cluster.as_ref().is_some_and(|c| c.broker == "down");
                let health = Health {
                    status: if degraded { "degraded" } else { "ok" },
                    service: "gateway",
                    timestamp: state.wall_ms(now),
                    uptime: state.uptime_ms(now),
                    // In a cluster, the cluster's counts (as of the last heartbeat).
                    clients: state.cluster.as_ref().map_or(state.clients.len(), |cl| {
                        usize::try_from(cl.counts.clients).unwrap_or(usize::MAX)
                    }),
                    sessions: state.cluster.as_ref().map_or(state.sessions.len(), |cl| {
                        usize::try_from(cl.counts.sessions).unwrap_or(usize::MAX)
                    }),
                    agents: state.cluster.as_ref().map_or(state.agents.len(), |cl| {
                        usize::try_from(cl.counts.agents).unwrap_or(usize::MAX)
                    }),
                    cluster,
                };
                Some(HttpResponse {
                    status: if degraded { 503 } else { 200 },
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
                    routes_pending: state.routes.len()
                        + state.cluster.as_ref().map_or(0, |cl| cl.routes.len()),
                    state_version: state.shown_state_version(),
                    uptime_ms: state.uptime_ms(now),
                    cluster: state.cluster.as_ref().map(|cl| ClusterGauges {
                        nodes: cl.nodes_alive,
                        broker_up: cl.is_serving(),
                        commands: cl.broker.commands_total,
                        errors: cl.broker.errors_total,
                        round_trips: cl.broker.round_trips.clone(),
                    }),
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

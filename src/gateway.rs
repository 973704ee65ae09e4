//! [`Gateway`]: the gateway protocol core on the reactor, as a library object.
//!
//! `Gateway::bind` listens and starts no thread. The host then either gives the gateway a
//! thread of its own with [`Gateway::run`], or drives it from its own loop with
//! [`Gateway::poll`] (the poll's descriptor is exposed through `AsRawFd`, so a host can wait
//! for it in its own epoll set). [`GatewayHandle`] reaches the loop from any thread.
//!
//! Events ([`Gateway::next_event`]) are kept for a host that polls: the queue holds at most
//! [`EVENT_QUEUE`] events and [`EVENT_QUEUE_BYTES`] bytes, and what finds it full is dropped
//! and counted. A gateway given its thread with [`Gateway::run`] keeps no events at all, since
//! nothing can read them while `run` blocks: `run` turns the queue off.
//!
//! A reload (PROTOCOL section 12) gives the running gateway a new configuration: from the
//! loop's thread with [`Gateway::reload`], from any thread with [`GatewayHandle::reload`],
//! or on SIGHUP with [`Gateway::reload_on_sighup`], whose source (the binary's reads its file
//! again) is called on the loop's thread. The core applies it; its new transport bounds reach
//! the reactor as an action.

use std::net::{IpAddr, SocketAddr, ToSocketAddrs};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use serde_json::Value;

use crate::config::{AuthMode, Config, ConfigError};
use crate::core::cluster::node::ClusterSetup;
use crate::core::{transport_limits, Command, Event, GatewayCore, HandlerContext, Message};
use crate::error::Error;
use crate::transport::{Control, HandleError, ReactorHandle};
use crate::transport::{Reactor, RunState, TransportConfig, TransportLimits};

/// A bound gateway. See the module docs.
pub struct Gateway {
    reactor: Reactor<GatewayCore>,
}

impl std::fmt::Debug for Gateway {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Gateway")
            .field("local_addr", &self.local_addr())
            .finish()
    }
}

impl Gateway {
    /// Validate `config`, bind its `host:port` and set up the loop. Starts no thread.
    ///
    /// # Examples
    ///
    /// ```
    /// use gateway::{Config, Gateway};
    ///
    /// let mut config = Config::default();
    /// config.port = 0; // any free port
    /// let gw = Gateway::bind(config)?;
    /// assert!(gw.url().starts_with("ws://127.0.0.1:"));
    /// # Ok::<(), gateway::Error>(())
    /// ```
    pub fn bind(config: Config) -> Result<Gateway, Error> {
        config.validate()?;
        let ip: IpAddr = config.host.parse().map_err(|_| Error::Bind {
            addr: config.host.clone(),
            source: std::io::Error::new(std::io::ErrorKind::InvalidInput, "not an IP address"),
        })?;
        let addr = SocketAddr::new(ip, config.port);
        let addr_text = addr.to_string();
        // The bounds a reload may change come from the one function a reload uses too.
        let TransportLimits {
            origins,
            max_header_bytes,
            max_payload,
            // Raised to max_payload by the core when the connection authenticates.
            initial_max_payload,
            max_inflight_bytes,
            tls,
        } = transport_limits(&config);
        let transport = TransportConfig {
            addr,
            reuse_port: config.reuse_port,
            path: config.path.clone(),
            max_connections: config.max_connections,
            max_header_bytes,
            origins,
            handshake_timeout: Config::duration(config.handshake_timeout_ms),
            heartbeat_interval: Config::duration(config.heartbeat_interval_ms),
            client_timeout: Config::duration(config.client_timeout_ms),
            close_timeout: Config::duration(config.close_timeout_ms),
            max_payload,
            initial_max_payload,
            max_pending_handshakes: config.max_pending_handshakes,
            max_inflight_bytes,
            message_timeout: Config::duration(config.message_timeout_ms),
            max_outbound_buffer: config.max_outbound_buffer,
            write_share: TransportConfig::WRITE_SHARE,
            event_queue: EVENT_QUEUE,
            event_queue_bytes: EVENT_QUEUE_BYTES,
            tls,
        };
        let wall_ms = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_millis() as u64);
        let core = GatewayCore::new(&config, Instant::now(), wall_ms);
        let reactor = Reactor::bind(transport, core).map_err(|source| Error::Bind {
            addr: addr_text,
            source,
        })?;
        let mut gateway = Gateway { reactor };
        gateway.warn_about_risky_settings();
        if let Some(setup) = cluster_setup(&config)? {
            gateway
                .reactor
                .with_app(|core, now, out| core.join_cluster(setup, now, out));
        }
        Ok(gateway)
    }

    /// This node's name in the cluster, when it is in one (PROTOCOL section 13): `node_id`,
    /// or the random name it was given at start, with a suffix after each time it was
    /// declared dead while alive.
    pub fn node_id(&self) -> Option<&str> {
        self.reactor.app().node_id()
    }

    fn warn_about_risky_settings(&self) {
        let config = self.config();
        let loopback = self.local_addr().ip().is_loopback();
        if !loopback && config.auth_mode == AuthMode::None {
            log::warn!(
                "listening on the non-loopback address {} with auth_mode = none: anyone who can reach it can connect",
                config.host
            );
        }
        if config.auth_mode != AuthMode::None && config.cors_origins.iter().any(|o| o == "*") {
            log::warn!(
                "cors_origins = * with authentication on: any web page can open connections to this gateway"
            );
        }
        let every = |list: &[String]| list.iter().any(|u| u == "*");
        if config.auth_mode == AuthMode::Password
            && (!config.admin_users.is_empty()
                || !every(&config.allow_sessions)
                || !every(&config.allow_agents)
                || !every(&config.allow_route))
        {
            log::warn!(
                "auth_mode = password: each client names its own userId, so admin_users and the allow_* lists grant their scopes to anyone who has the password"
            );
        }
        if config.auth_mode == AuthMode::Token && config.auth_tokens.is_empty() {
            log::warn!(
                "auth_mode = token and no auth_tokens are configured: nobody can authenticate"
            );
        }
    }

    /// The address the gateway listens on (the real port when `port = 0`).
    pub fn local_addr(&self) -> SocketAddr {
        self.reactor.local_addr()
    }

    /// The URL clients connect to, e.g. `ws://127.0.0.1:18789/ws` (`wss://` with TLS).
    pub fn url(&self) -> String {
        let scheme = if self.reactor.is_tls() { "wss" } else { "ws" };
        format!("{scheme}://{}{}", self.local_addr(), self.config().path)
    }

    /// The configuration the gateway runs with (after a reload: its live keys as reloaded).
    pub fn config(&self) -> &Config {
        self.reactor.app().config()
    }

    /// Run with `config` from now on, as far as it can change while running (PROTOCOL
    /// section 12): its live keys take effect, every other key keeps its old value with a
    /// warning in the log. Connections authenticated with a token that is no longer
    /// configured (or with a changed `auth_password`) are closed with 1008 `Token revoked`;
    /// changed scopes apply from each connection's next message; a changed `log_level` sets
    /// [`log::set_max_level`]. The log says `configuration reloaded` and what changed, and
    /// [`Event::ConfigReloaded`] is emitted.
    ///
    /// Returns the keys that changed. When `config` is invalid, or would be once the keys
    /// that cannot change keep their old values, nothing changes and the error is returned
    /// (and logged).
    ///
    /// # Examples
    ///
    /// ```
    /// use gateway::{AuthToken, Config, Gateway};
    ///
    /// let mut config = Config::default();
    /// config.port = 0;
    /// let mut gw = Gateway::bind(config.clone())?;
    /// config.auth_tokens = vec![AuthToken { user: "ops".into(), secret: "s3cret".into() }];
    /// config.port = 1; // cannot change while running: kept, with a warning
    /// assert_eq!(gw.reload(config)?, ["auth_tokens"]);
    /// assert_ne!(gw.config().port, 1);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn reload(&mut self, config: Config) -> Result<Vec<String>, ConfigError> {
        let changed = self
            .reactor
            .with_app(|core, now, out| core.reload(config, now, out))?;
        Ok(changed.into_iter().map(str::to_owned).collect())
    }

    /// On SIGHUP, call `source` for a configuration and reload it as [`Gateway::reload`]
    /// does; an error from `source` (a file that does not parse, say) is logged and changes
    /// nothing. The signal is watched by this gateway's own poll and `source` runs on the
    /// loop's thread, between two steps of a turn (no extra thread): it should be quick,
    /// e.g. read one file. A second call replaces the source.
    ///
    /// The `gateway` binary's source reads its configuration file again and applies its
    /// `--set` overrides over it.
    pub fn reload_on_sighup<F>(&mut self, mut source: F) -> Result<(), Error>
    where
        F: FnMut() -> Result<Config, ConfigError> + Send + 'static,
    {
        self.reactor
            .on_hangup(move |core, now, out| {
                let started = Instant::now();
                match source() {
                    Ok(config) => {
                        let read = started.elapsed();
                        // A refusal is logged by the core.
                        let _ = core.reload(config, now, out);
                        log::info!(
                            "SIGHUP handled in {:.3} ms ({:.3} ms to get the configuration)",
                            started.elapsed().as_secs_f64() * 1e3,
                            read.as_secs_f64() * 1e3
                        );
                    }
                    Err(e) => crate::core::log_refused(&e),
                }
            })
            .map_err(Error::Io)
    }

    /// A handle for other threads (`Clone + Send`).
    #[must_use]
    pub fn handle(&self) -> GatewayHandle {
        GatewayHandle {
            inner: self.reactor.handle(),
        }
    }

    /// Run the loop on this thread until the gateway has shut down (through a handle's
    /// [`GatewayHandle::shutdown`] or a signal, see [`Gateway::shutdown_on_signals`]). Events
    /// are not kept from then on (see the module docs): a host that wants them polls instead.
    pub fn run(&mut self) -> Result<(), Error> {
        self.reactor.run().map_err(Error::Io)
    }

    /// One turn of the loop, waiting at most `timeout` for something to happen (`None`: until
    /// the next timer or event). For a host that runs its own loop; call it again and again,
    /// reading [`Gateway::next_event`] in between, until [`Gateway::is_stopped`].
    ///
    /// # Examples
    ///
    /// A host loop that also does work of its own between turns:
    ///
    /// ```
    /// use gateway::{Config, Gateway};
    /// use std::time::Duration;
    ///
    /// let mut config = Config::default();
    /// config.port = 0;
    /// let mut gw = Gateway::bind(config)?;
    /// let handle = gw.handle();
    /// let mut turns = 0;
    /// while !gw.is_stopped() {
    ///     gw.poll(Some(Duration::from_millis(5)))?;
    ///     while let Some(event) = gw.next_event() {
    ///         println!("{event:?}");
    ///     }
    ///     turns += 1; // ... the host's own work ...
    ///     if turns == 3 {
    ///         handle.shutdown().expect("the gateway is running");
    ///     }
    /// }
    /// # Ok::<(), gateway::Error>(())
    /// ```
    pub fn poll(&mut self, timeout: Option<Duration>) -> Result<(), Error> {
        self.reactor.turn(timeout).map_err(Error::Io)
    }

    /// The next event, if any. The queue is bounded (see [`EVENT_QUEUE`] and
    /// [`EVENT_QUEUE_BYTES`]); events that find it full are dropped and counted in `/metrics`
    /// as `gateway_events_dropped_total`. After [`Gateway::run`], always `None`.
    pub fn next_event(&mut self) -> Option<Event> {
        self.reactor.next_event()
    }

    /// Begin a shutdown from the loop's own thread (the same as [`GatewayHandle::shutdown`]).
    pub fn shutdown(&mut self) {
        self.reactor.begin_shutdown();
    }

    /// Whether the gateway has shut down; `poll` does nothing more.
    pub fn is_stopped(&self) -> bool {
        self.reactor.run_state() == RunState::Stopped
    }

    /// Shut down on SIGTERM and SIGINT, watched by this gateway's own poll (no extra thread).
    pub fn shutdown_on_signals(&mut self) -> Result<(), Error> {
        self.reactor.shutdown_on_signals().map_err(Error::Io)
    }

    /// Handle messages of type `msg_type` with `handler`, called on the loop's thread after
    /// the size, parse, envelope, rate limit and auth checks. The handler is responsible for
    /// the reply; a second registration for the same type replaces the first. Fails with
    /// [`Error::BuiltInType`] (and registers nothing) when `msg_type` is built in or empty.
    ///
    /// # Examples
    ///
    /// ```
    /// use gateway::{Config, Error, Gateway};
    ///
    /// let mut config = Config::default();
    /// config.port = 0;
    /// let mut gw = Gateway::bind(config)?;
    /// gw.register_handler("whoami", |ctx, _msg| {
    ///     let reply = serde_json::json!({ "clientId": ctx.client_id() });
    ///     ctx.reply("whoami_result", reply);
    /// })?;
    /// assert!(matches!(
    ///     gw.register_handler("ping", |_, _| {}),
    ///     Err(Error::BuiltInType(t)) if t == "ping"
    /// ));
    /// # Ok::<(), gateway::Error>(())
    /// ```
    pub fn register_handler<F>(&mut self, msg_type: &str, handler: F) -> Result<(), Error>
    where
        F: FnMut(&mut HandlerContext<'_>, &Message) + Send + 'static,
    {
        if self.reactor.app_mut().register_handler(msg_type, handler) {
            Ok(())
        } else {
            Err(Error::BuiltInType(msg_type.to_string()))
        }
    }

    /// Open WebSocket connections.
    pub fn client_count(&self) -> usize {
        self.reactor.app().client_count()
    }

    /// Sessions that exist.
    pub fn session_count(&self) -> usize {
        self.reactor.app().session_count()
    }

    /// Registered agents (offline ones included until their TTL passes).
    pub fn agent_count(&self) -> usize {
        self.reactor.app().agent_count()
    }
}

/// Capacity of the event queue read by [`Gateway::next_event`], in events.
pub const EVENT_QUEUE: usize = 4096;

/// Capacity of the event queue read by [`Gateway::next_event`], in bytes: each event is
/// counted at its inline size plus the bytes of its strings (an
/// [`Event::UnhandledMessage`] holds the message as it arrived, up to `max_message_size`).
pub const EVENT_QUEUE_BYTES: usize = 4 * 1024 * 1024;

#[cfg(unix)]
impl std::os::unix::io::AsRawFd for Gateway {
    /// The poll's descriptor: readable when the gateway has work; then call
    /// `poll(Some(Duration::ZERO))`.
    fn as_raw_fd(&self) -> std::os::unix::io::RawFd {
        self.reactor.raw_fd()
    }
}

/// Reaches a [`Gateway`]'s loop from any thread. Every method queues a command and wakes the
/// loop; it fails only when the gateway has stopped or its command queue is full.
#[derive(Clone, Debug)]
pub struct GatewayHandle {
    inner: ReactorHandle<Command>,
}

impl GatewayHandle {
    /// Send a message of `msg_type` with `payload` to the client `client_id`. Ignored (and
    /// logged) when no such client is connected, `msg_type` is empty or `payload` is not a
    /// JSON object. In a cluster, a client on another node is reached too.
    pub fn send_to_client(
        &self,
        client_id: &str,
        msg_type: &str,
        payload: Value,
    ) -> Result<(), HandleError> {
        self.inner.send(Control::App(Command::SendToClient {
            client_id: client_id.to_string(),
            msg_type: msg_type.to_string(),
            payload,
        }))
    }

    /// Send a `broadcast` message with `payload` to every member of `session_id` (in a
    /// cluster, the members on every node).
    pub fn broadcast_to_session(
        &self,
        session_id: &str,
        payload: Value,
    ) -> Result<(), HandleError> {
        self.broadcast_message(session_id, "broadcast", payload)
    }

    /// Send a message of `msg_type` with `payload` to every member of `session_id`. Ignored
    /// (and logged) when `msg_type` is empty or `payload` is not a JSON object.
    pub fn broadcast_message(
        &self,
        session_id: &str,
        msg_type: &str,
        payload: Value,
    ) -> Result<(), HandleError> {
        self.inner.send(Control::App(Command::BroadcastToSession {
            session_id: session_id.to_string(),
            msg_type: msg_type.to_string(),
            payload,
        }))
    }

    /// Reload the gateway with `config`, as [`Gateway::reload`] does, on the loop's thread;
    /// what changed is logged and reported by [`Event::ConfigReloaded`], and a refused
    /// configuration is logged and changes nothing.
    pub fn reload(&self, config: Config) -> Result<(), HandleError> {
        self.inner
            .send(Control::App(Command::Reload(Box::new(config))))
    }

    /// Close the connection of `client_id` with 1008 `Kicked`. Nothing happens when no such
    /// client is connected.
    pub fn kick(&self, client_id: &str) -> Result<(), HandleError> {
        self.inner.send(Control::App(Command::Kick {
            client_id: client_id.to_string(),
            reason: None,
        }))
    }

    /// Close the connection of `client_id` with 1008 `Kicked: REASON`, as `admin_kick` with
    /// a reason does (PROTOCOL section 12): `reason` is cut on a character boundary so that
    /// the close reason fits the 123 bytes a close frame allows, and an empty `reason`
    /// closes with plain `Kicked`. Nothing happens when no such client is connected.
    ///
    /// ```no_run
    /// # use gateway::{Config, Gateway};
    /// let gateway = Gateway::bind(Config::default())?;
    /// let handle = gateway.handle();
    /// # let client_id = "";
    /// // From any thread: the client sees close code 1008, reason `Kicked: maintenance`.
    /// handle.kick_with_reason(client_id, "maintenance")?;
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn kick_with_reason(&self, client_id: &str, reason: &str) -> Result<(), HandleError> {
        self.inner.send(Control::App(Command::Kick {
            client_id: client_id.to_string(),
            reason: Some(reason.to_string()),
        }))
    }

    /// Shut the gateway down: close 1001 to everyone, wait for the close handshakes up to
    /// `close_timeout_ms`, then stop.
    pub fn shutdown(&self) -> Result<(), HandleError> {
        self.inner.shutdown()
    }
}

/// What the core needs to join the cluster of `config`, with the Redis host resolved (once,
/// here: never in the poll loop); `None` for a standalone gateway.
fn cluster_setup(config: &Config) -> Result<Option<ClusterSetup>, Error> {
    let Some(url) = &config.cluster_redis else {
        return Ok(None);
    };
    let addr = (url.host.as_str(), url.port)
        .to_socket_addrs()
        .ok()
        .and_then(|mut addrs| addrs.next())
        .ok_or_else(|| {
            Error::Config(ConfigError {
                file: None,
                line: None,
                key: Some("cluster_redis".to_string()),
                message: format!("the host {} could not be resolved", url.host),
            })
        })?;
    let node_id = config.node_id.clone().unwrap_or_else(|| {
        let id = uuid::Uuid::new_v4().simple().to_string();
        format!("node-{}", &id[..12])
    });
    Ok(Some(ClusterSetup {
        addr,
        password: url.password.clone(),
        db: url.db,
        prefix: config.cluster_prefix.clone(),
        node_id,
        timeout: Duration::from_millis(config.broker_timeout_ms),
        heartbeat: Duration::from_millis(config.node_heartbeat_ms),
        dead: Duration::from_millis(config.node_dead_ms),
    }))
}

//! The gateway's configuration: [`Config`] with every key of PROTOCOL section 9 and its
//! default.
//!
//! Field names are the configuration keys. Durations stay in milliseconds as in the file
//! (`0` turns that timer off); [`Config::duration`] turns one into an `Option<Duration>`.

use std::time::Duration;

/// How clients authenticate (PROTOCOL section 7).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AuthMode {
    /// `auth` must carry a `token` matching one of `auth_tokens`.
    Token,
    /// `auth` must carry the `password` equal to `auth_password`.
    Password,
    /// No authentication: every connection is authenticated when it opens.
    None,
}

impl AuthMode {
    /// The configuration spelling: `token`, `password` or `none`.
    pub fn as_str(self) -> &'static str {
        match self {
            AuthMode::Token => "token",
            AuthMode::Password => "password",
            AuthMode::None => "none",
        }
    }
}

/// One `USER:SECRET` entry of `auth_tokens`.
#[derive(Clone, PartialEq, Eq)]
pub struct AuthToken {
    /// The `userId` a client authenticated with this token gets.
    pub user: String,
    /// The secret the client sends as `token`.
    pub secret: String,
}

impl std::fmt::Debug for AuthToken {
    // Secrets never reach a log line, not even through `{:?}`.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "AuthToken({}:***)", self.user)
    }
}

/// The effective configuration. `Config::default()` is the documented default of every key.
#[derive(Clone, Debug, PartialEq)]
pub struct Config {
    /// Address to listen on.
    pub host: String,
    /// Port to listen on; 0 picks a free port.
    pub port: u16,
    /// The WebSocket endpoint's path.
    pub path: String,
    /// Open WebSocket connections at most; an upgrade beyond it gets 503.
    pub max_connections: usize,
    /// Serve `GET /health` and `GET /metrics`.
    pub http_endpoints: bool,
    /// How clients authenticate.
    pub auth_mode: AuthMode,
    /// Accepted tokens, for `auth_mode = token`.
    pub auth_tokens: Vec<AuthToken>,
    /// The password, for `auth_mode = password`.
    pub auth_password: Option<String>,
    /// A connection not authenticated within this many ms is closed with 1008.
    pub auth_timeout_ms: u64,
    /// Failed `auth` messages allowed before the connection is closed with 1008.
    pub max_auth_failures: u32,
    /// Allowed `Origin` patterns (PROTOCOL section 7).
    pub cors_origins: Vec<String>,
    /// Refuse upgrades that carry no `Origin`.
    pub require_origin: bool,
    /// An upgrade not completed within this many ms is dropped.
    pub handshake_timeout_ms: u64,
    /// Interval between WebSocket Ping frames sent to each connection.
    pub heartbeat_interval_ms: u64,
    /// A connection silent for this many ms is closed with 1001.
    pub client_timeout_ms: u64,
    /// How long to wait for the peer's close frame before dropping the socket.
    pub close_timeout_ms: u64,
    /// How long an offline agent is kept before it is removed.
    pub agent_ttl_ms: u64,
    /// Largest accepted HTTP request head, in bytes.
    pub max_header_bytes: usize,
    /// Largest frame or message, in bytes; beyond it the connection is closed with 1009.
    pub max_payload: usize,
    /// Largest message handled, in bytes; beyond it `MESSAGE_TOO_LARGE`, connection kept.
    pub max_message_size: usize,
    /// Unsent bytes queued for one connection at most; beyond it close 1008 `Slow consumer`.
    pub max_outbound_buffer: usize,
    /// Members of one session at most.
    pub max_clients_per_session: usize,
    /// Sessions one client may be in at most.
    pub max_sessions_per_client: usize,
    /// Sessions in the gateway at most.
    pub max_sessions: usize,
    /// Registered agents at most.
    pub max_agents: usize,
    /// Messages per second per connection; 0 turns rate limiting off.
    pub rate_limit_per_sec: u32,
    /// Token bucket size for rate limiting.
    pub rate_limit_burst: u32,
    /// Log level for stderr.
    pub log_level: log::LevelFilter,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            host: "127.0.0.1".to_string(),
            port: 18789,
            path: "/ws".to_string(),
            max_connections: 10_000,
            http_endpoints: true,
            auth_mode: AuthMode::Token,
            auth_tokens: Vec::new(),
            auth_password: None,
            auth_timeout_ms: 10_000,
            max_auth_failures: 3,
            cors_origins: vec![
                "http://localhost:*".to_string(),
                "http://127.0.0.1:*".to_string(),
            ],
            require_origin: false,
            handshake_timeout_ms: 5_000,
            heartbeat_interval_ms: 30_000,
            client_timeout_ms: 60_000,
            close_timeout_ms: 5_000,
            agent_ttl_ms: 300_000,
            max_header_bytes: 8192,
            max_payload: 10 * 1024 * 1024,
            max_message_size: 1024 * 1024,
            max_outbound_buffer: 4 * 1024 * 1024,
            max_clients_per_session: 10,
            max_sessions_per_client: 64,
            max_sessions: 100_000,
            max_agents: 10_000,
            rate_limit_per_sec: 0,
            rate_limit_burst: 100,
            log_level: log::LevelFilter::Info,
        }
    }
}

impl Config {
    /// A millisecond setting as a duration; `None` when it is 0 (timer off).
    pub fn duration(ms: u64) -> Option<Duration> {
        (ms > 0).then(|| Duration::from_millis(ms))
    }
}

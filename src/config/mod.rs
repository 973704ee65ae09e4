//! The gateway's configuration: [`Config`] with every key of PROTOCOL section 9 and its
//! default, the `gateway.conf` parser, `--set` overrides, validation and printing.
//!
//! Field names are the configuration keys. Durations stay in milliseconds as in the file
//! (`0` turns that timer off); [`Config::duration`] turns one into an `Option<Duration>`.
//! The file format is PROTOCOL section 9; its full rules are written down beside the parser
//! (`src/config/parse.rs`), and the rules of a valid configuration on [`Config::validate`].
//!
//! Inside: `keys.rs` is the table of keys, one row per key, which parsing (`parse.rs`),
//! validation (`validate.rs`) and printing (`print.rs`) read; `values.rs` holds the value
//! syntaxes and the rules of one key that the rows are made of; `reload.rs` what a reload
//! changes. `keys.rs` says how to add a key.
//!
//! # Secrets
//!
//! Token secrets, `auth_password` and `jwt_secret` never appear in `Debug` output, in error messages or in
//! [`Config::to_file_string`] (which shows them as `***`). Error messages quote bad values of
//! other keys.

mod cluster;
mod file;
mod jwt;
mod keys;
mod parse;
mod print;
pub(crate) mod reload;
mod secret;
mod tls;
mod validate;
mod values;
pub(crate) mod x509;

use std::fmt;
use std::time::Duration;

pub use cluster::RedisUrl;
pub use jwt::JwtPublicKey;
pub(crate) use jwt::KeyType;
pub use tls::{TlsCertificates, TlsPrivateKey};

/// How clients authenticate (PROTOCOL section 7).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AuthMode {
    /// `auth` must carry a `token` matching one of `auth_tokens`.
    Token,
    /// `auth` must carry the `password` equal to `auth_password`.
    Password,
    /// `auth` must carry a `token` that is a JWT signed with `jwt_secret` (HS256) or the key
    /// of `jwt_public_key` (RS256, ES256 or EdDSA), whose `sub` claim is the `userId`
    /// (PROTOCOL section 12). A repeated `auth` refreshes the token.
    Jwt,
    /// No authentication: every connection is authenticated when it opens.
    None,
}

impl AuthMode {
    /// The configuration spelling: `token`, `password`, `jwt` or `none`.
    pub fn as_str(self) -> &'static str {
        match self {
            AuthMode::Token => "token",
            AuthMode::Password => "password",
            AuthMode::Jwt => "jwt",
            AuthMode::None => "none",
        }
    }
}

/// The item of a user list (`allow_sessions`, `allow_agents`, `allow_route`, `admin_users`)
/// that names every user.
pub(crate) const EVERY_USER: &str = "*";

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
///
/// Its `Debug` output is the file format of [`Config::to_file_string`], with `auth_password`,
/// `jwt_secret` and every token secret as `***`.
#[derive(Clone, PartialEq)]
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
    /// The listener's certificate chain (PROTOCOL section 14); with `tls_key`, the listener
    /// speaks TLS only (`wss://`, `https://`).
    pub tls_cert: Option<TlsCertificates>,
    /// The private key of `tls_cert`.
    pub tls_key: Option<TlsPrivateKey>,
    /// CAs of client certificates: when set, a client must present a certificate signed by
    /// one of them in the TLS handshake.
    pub tls_client_ca: Option<TlsCertificates>,
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
    /// The HS256 key of `auth_mode = jwt`, used as its raw bytes (at least 32 of them).
    pub jwt_secret: Option<String>,
    /// The public key of `auth_mode = jwt` (RS256, ES256 or EdDSA, by its type), read from
    /// its PEM file by [`JwtPublicKey::read`]. Not together with `jwt_secret`.
    pub jwt_public_key: Option<JwtPublicKey>,
    /// When set, a JWT's `iss` must equal it.
    pub jwt_issuer: Option<String>,
    /// When set, a JWT's `aud` must be it, or an array containing it.
    pub jwt_audience: Option<String>,
    /// Allowance in ms for clock skew on a JWT's `exp` and `nbf`.
    pub jwt_leeway_ms: u64,
    /// Users with the `sessions` scope (PROTOCOL section 12); `*` is every user.
    pub allow_sessions: Vec<String>,
    /// Users with the `agents` scope; `*` is every user.
    pub allow_agents: Vec<String>,
    /// Users with the `route` scope; `*` is every user.
    pub allow_route: Vec<String>,
    /// Users with the `admin` scope; `*` is every user.
    pub admin_users: Vec<String>,
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
    /// No reply or delivery is larger (PROTOCOL section 11).
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
    /// Before a connection authenticates (auth on), a message or the frames of one in progress larger than this: close 1009.
    pub max_preauth_message_size: usize,
    /// Longest session `name`, agent `name` and `type`, `deviceName` and presence `status`; longer is `INVALID_MESSAGE` naming the field.
    pub max_name_bytes: usize,
    /// Largest `capabilities` plus `metadata` of one agent, as compact JSON; larger is `LIMIT_EXCEEDED`.
    pub max_agent_bytes: usize,
    /// Capability names of one agent at most (`tools` + `modes` + keys of `custom`); more is `LIMIT_EXCEEDED`.
    pub max_capabilities: usize,
    /// Agents, online or offline, registered under one `userId` at most; more is `LIMIT_EXCEEDED`.
    pub max_agents_per_user: usize,
    /// Authenticated connections of one `userId` at most; an `auth` beyond it gets `LIMIT_EXCEEDED` and the connection stays unauthenticated.
    pub max_connections_per_user: usize,
    /// Session memberships over all connections of one `userId` at most.
    pub max_memberships_per_user: usize,
    /// Delivered, unanswered `route_request`s of one `userId` at most.
    pub max_pending_routes_per_user: usize,
    /// Accepted sockets not yet upgraded (or refused and lingering) at most; one accepted beyond it is closed at once, without a response.
    pub max_pending_handshakes: usize,
    /// Bytes of partly received messages over all connections at most; a frame that would pass it closes its own connection with 1008 `Server busy`.
    pub max_inflight_bytes: usize,
    /// A message whose first frame arrived must be complete within this many ms, else close 1008 `Message timeout`.
    pub message_timeout_ms: u64,
    /// Entries in one `agent_list` or `presence_list` page, and in `hello_ok.presence`, at most.
    pub max_list_items: usize,
    /// The Redis server of the cluster this gateway joins (PROTOCOL section 13); `None`: a
    /// standalone gateway, with no broker code on its paths.
    pub cluster_redis: Option<RedisUrl>,
    /// Prefix of every Redis key and channel of the cluster.
    pub cluster_prefix: String,
    /// This process's name in the cluster; `None`: a random one made at start.
    pub node_id: Option<String>,
    /// Bind the listener with `SO_REUSEPORT`, so that several processes share one port.
    pub reuse_port: bool,
    /// A cluster operation not answered within this many ms fails with `UNAVAILABLE`.
    pub broker_timeout_ms: u64,
    /// How often a node tells the cluster it is alive, in ms.
    pub node_heartbeat_ms: u64,
    /// A node silent for this many ms is dead for the cluster.
    pub node_dead_ms: u64,
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
            tls_cert: None,
            tls_key: None,
            tls_client_ca: None,
            auth_mode: AuthMode::Token,
            auth_tokens: Vec::new(),
            auth_password: None,
            auth_timeout_ms: 10_000,
            max_auth_failures: 3,
            jwt_secret: None,
            jwt_public_key: None,
            jwt_issuer: None,
            jwt_audience: None,
            jwt_leeway_ms: 5_000,
            allow_sessions: vec![EVERY_USER.to_string()],
            allow_agents: vec![EVERY_USER.to_string()],
            allow_route: vec![EVERY_USER.to_string()],
            admin_users: Vec::new(),
            cors_origins: vec![
                "http://localhost:*".to_string(),
                "http://127.0.0.1:*".to_string(),
                "https://localhost:*".to_string(),
                "https://127.0.0.1:*".to_string(),
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
            max_preauth_message_size: 64 * 1024,
            max_name_bytes: 256,
            max_agent_bytes: 64 * 1024,
            max_capabilities: 256,
            max_agents_per_user: 100,
            max_connections_per_user: 1000,
            max_memberships_per_user: 4096,
            max_pending_routes_per_user: 4096,
            max_pending_handshakes: 1024,
            max_inflight_bytes: 256 * 1024 * 1024,
            message_timeout_ms: 30_000,
            max_list_items: 100,
            cluster_redis: None,
            cluster_prefix: "gw".to_string(),
            node_id: None,
            reuse_port: false,
            broker_timeout_ms: 2_000,
            node_heartbeat_ms: 2_000,
            node_dead_ms: 10_000,
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

impl fmt::Debug for Config {
    /// The effective configuration in the file format ([`Config::to_file_string`]), so a
    /// secret never reaches a log line through `{:?}`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.to_file_string())
    }
}

pub(crate) use secret::{MAX_SECRET_BYTES, SECRET_MASK};

/// The largest value of a `_ms` key: 365 days in milliseconds.
pub(crate) const MAX_MS: u64 = 365 * 24 * 60 * 60 * 1000;

/// A configuration error that names the file, the line and the key (file/line `None` for
/// `--set` or defaults checks).
///
/// Its message never contains a secret.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError {
    /// The file the error is in; `None` for `--set` and for [`Config::validate`].
    pub file: Option<String>,
    /// The 1-based line the error is on, when it is on one.
    pub line: Option<usize>,
    /// The key concerned, when there is one.
    pub key: Option<String>,
    /// What is wrong.
    pub message: String,
}

impl fmt::Display for ConfigError {
    /// `FILE:LINE: KEY: MESSAGE`, leaving out the parts that are `None`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match (&self.file, self.line) {
            (Some(file), Some(line)) => write!(f, "{file}:{line}: ")?,
            (Some(file), None) => write!(f, "{file}: ")?,
            (None, Some(line)) => write!(f, "line {line}: ")?,
            (None, None) => {}
        }
        if let Some(key) = &self.key {
            write!(f, "{}: ", key.escape_debug())?;
        }
        f.write_str(&self.message)
    }
}

impl std::error::Error for ConfigError {}

impl JwtPublicKey {
    /// Read and check the PEM file at `path`: exactly one `PUBLIC KEY` block (SPKI) of an RSA
    /// key of 2048 to 8192 bits, a P-256 key or an Ed25519 key, or an `RSA PUBLIC KEY` block
    /// (PKCS#1). A relative path is relative to the current directory.
    ///
    /// The error names the key `jwt_public_key` and says what is wrong with the file.
    pub fn read(path: impl AsRef<std::path::Path>) -> Result<JwtPublicKey, ConfigError> {
        jwt::read(path.as_ref()).map_err(|message| ConfigError {
            file: None,
            line: None,
            key: Some("jwt_public_key".to_string()),
            message,
        })
    }
}

#[cfg(test)]
mod tests;

//! The gateway's configuration: [`Config`] with every key of PROTOCOL section 9 and its
//! default, the `gateway.conf` parser, `--set` overrides, validation and printing.
//!
//! Field names are the configuration keys. Durations stay in milliseconds as in the file
//! (`0` turns that timer off); [`Config::duration`] turns one into an `Option<Duration>`.
//!
//! # File format
//!
//! - One `key = value` per line; the key is split from the value at the first `=`, and both
//!   are trimmed. Blank lines are ignored. A UTF-8 byte order mark and CRLF line ends are
//!   accepted.
//! - `#` starts a comment only at the start of a line or right after white space, so
//!   `auth_password = secret#1` keeps the `#` and `port = 1 # note` is `1`.
//! - Numbers are decimal digits only (no sign, no separators). Sizes are bytes, with an
//!   optional `KiB` or `MiB` suffix, with or without a space (`2MiB`, `2 MiB`). Keys ending in
//!   `_ms` are milliseconds, from 0 (timer off) to [`MAX_MS`] (365 days). Booleans are `true`
//!   or `false`. `log_level` is `error`, `warn`, `info`, `debug` or `trace`; `auth_mode` is
//!   `token`, `password` or `none`. All of these are case-sensitive.
//! - Lists (`cors_origins`, `auth_tokens`) are comma-separated, items trimmed; an empty item
//!   is an error, an empty value is the empty list. An `auth_tokens` item is `USER:SECRET`,
//!   split at the first `:`; both parts are trimmed and must be non-empty, so a secret may
//!   contain `:` and `#` but not `,`. A value that the file format could not hold as it is
//!   (say a `--set` secret with white space before a `#`) is refused, so that
//!   [`Config::to_file_string`] output always reads back the same.
//! - `auth_password =` with an empty value means no password.
//! - An unknown key, a repeated key, a line without `=` or a bad value is a [`ConfigError`]
//!   naming the file, the line and the key.
//!
//! Rules that involve one key are checked while parsing (so the error names the line) and
//! again by [`Config::validate`]; rules across keys are checked only by `validate`, after the
//! file and every `--set` have been applied. The rules are listed on [`Config::validate`].
//!
//! # Secrets
//!
//! Token secrets and `auth_password` never appear in `Debug` output, in error messages or in
//! [`Config::to_file_string`] (which shows them as `***`). Error messages quote bad values of
//! other keys.

use std::fmt;
use std::path::Path;
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
///
/// Its `Debug` output is the file format of [`Config::to_file_string`], with `auth_password`
/// and every token secret as `***`.
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

impl fmt::Debug for Config {
    /// The effective configuration in the file format ([`Config::to_file_string`]), so a
    /// secret never reaches a log line through `{:?}`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.to_file_string())
    }
}

/// What [`Config::to_file_string`] prints in place of a secret.
pub const SECRET_MASK: &str = "***";

/// The largest value of a `_ms` key: 365 days in milliseconds.
pub const MAX_MS: u64 = 365 * 24 * 60 * 60 * 1000;

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

/// The value shape of a key, which decides how its value is read and printed.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Kind {
    /// A count or number with an inclusive range.
    Number { min: u64, max: u64 },
    /// Bytes, with an optional `KiB`/`MiB` suffix.
    Size,
    /// Milliseconds, 0 to [`MAX_MS`].
    Millis,
    /// Anything else: parsed by its own rule.
    Other,
}

const USIZE_MAX: u64 = if usize::BITS > 64 {
    u64::MAX
} else {
    usize::MAX as u64
};
const U32_MAX: u64 = u32::MAX as u64;

/// Every key with its value shape, in the order of the shipped `gateway.conf`.
const KEY_TABLE: [(&str, Kind); 28] = [
    ("host", Kind::Other),
    ("port", Kind::Number { min: 0, max: 65535 }),
    ("path", Kind::Other),
    (
        "max_connections",
        Kind::Number {
            min: 1,
            max: USIZE_MAX,
        },
    ),
    ("http_endpoints", Kind::Other),
    ("auth_mode", Kind::Other),
    ("auth_tokens", Kind::Other),
    ("auth_password", Kind::Other),
    ("auth_timeout_ms", Kind::Millis),
    (
        "max_auth_failures",
        Kind::Number {
            min: 0,
            max: U32_MAX,
        },
    ),
    ("cors_origins", Kind::Other),
    ("require_origin", Kind::Other),
    ("handshake_timeout_ms", Kind::Millis),
    ("heartbeat_interval_ms", Kind::Millis),
    ("client_timeout_ms", Kind::Millis),
    ("close_timeout_ms", Kind::Millis),
    ("agent_ttl_ms", Kind::Millis),
    ("max_header_bytes", Kind::Size),
    ("max_payload", Kind::Size),
    ("max_message_size", Kind::Size),
    ("max_outbound_buffer", Kind::Size),
    (
        "max_clients_per_session",
        Kind::Number {
            min: 1,
            max: USIZE_MAX,
        },
    ),
    (
        "max_sessions_per_client",
        Kind::Number {
            min: 1,
            max: USIZE_MAX,
        },
    ),
    (
        "max_sessions",
        Kind::Number {
            min: 1,
            max: USIZE_MAX,
        },
    ),
    (
        "max_agents",
        Kind::Number {
            min: 1,
            max: USIZE_MAX,
        },
    ),
    (
        "rate_limit_per_sec",
        Kind::Number {
            min: 0,
            max: U32_MAX,
        },
    ),
    (
        "rate_limit_burst",
        Kind::Number {
            min: 0,
            max: U32_MAX,
        },
    ),
    ("log_level", Kind::Other),
];

/// Sizes are at least one byte and at most what fits in `usize`.
const SIZE_MIN: u64 = 1;

const LOG_LEVELS: [(&str, log::LevelFilter); 5] = [
    ("error", log::LevelFilter::Error),
    ("warn", log::LevelFilter::Warn),
    ("info", log::LevelFilter::Info),
    ("debug", log::LevelFilter::Debug),
    ("trace", log::LevelFilter::Trace),
];

impl Config {
    /// Every configuration key, grouped as in the shipped `gateway.conf`: listener, auth,
    /// origins, timers, limits, logging.
    pub const KEYS: [&'static str; 28] = {
        let mut keys = [""; 28];
        let mut i = 0;
        while i < KEY_TABLE.len() {
            keys[i] = KEY_TABLE[i].0;
            i += 1;
        }
        keys
    };

    /// A millisecond setting as a duration; `None` when it is 0 (timer off).
    pub fn duration(ms: u64) -> Option<Duration> {
        (ms > 0).then(|| Duration::from_millis(ms))
    }

    /// Read a configuration file: the defaults, overridden by every key in the file.
    ///
    /// An unreadable file, or one that is not UTF-8, is an error naming it. Cross-key rules
    /// are not checked here; call [`Config::validate`] after any `--set`.
    pub fn from_path(path: &Path) -> Result<Config, ConfigError> {
        let name = path.display().to_string();
        let bytes = std::fs::read(path).map_err(|e| ConfigError {
            file: Some(name.clone()),
            line: None,
            key: None,
            message: format!("cannot read the file: {e}"),
        })?;
        match String::from_utf8(bytes) {
            Ok(text) => Config::parse_str(&text, &name),
            Err(e) => {
                let good = e.as_bytes().get(..e.utf8_error().valid_up_to());
                let line = 1 + good.map_or(0, |b| b.iter().filter(|&&c| c == b'\n').count());
                Err(ConfigError {
                    file: Some(name),
                    line: Some(line),
                    key: None,
                    message: "the file is not valid UTF-8".to_string(),
                })
            }
        }
    }

    /// Parse the text of a configuration file: the defaults, overridden by every key in it.
    ///
    /// `file_name` is only used in error messages. Cross-key rules are not checked here; call
    /// [`Config::validate`] after any `--set`.
    pub fn parse_str(text: &str, file_name: &str) -> Result<Config, ConfigError> {
        let text = text.strip_prefix('\u{feff}').unwrap_or(text);
        let mut config = Config::default();
        let mut seen: Vec<(&'static str, usize)> = Vec::new();
        for (index, raw) in text.split('\n').enumerate() {
            let line = index + 1;
            let raw = raw.strip_suffix('\r').unwrap_or(raw);
            let content = strip_comment(raw).trim();
            if content.is_empty() {
                continue;
            }
            let error = |key: Option<&str>, message: String| ConfigError {
                file: Some(file_name.to_string()),
                line: Some(line),
                key: key.map(str::to_string),
                message,
            };
            let Some((key, value)) = content.split_once('=') else {
                // Only a known key is echoed: the line may be a misplaced secret.
                let first = content.split_whitespace().next().unwrap_or("");
                return Err(error(
                    known_key(first),
                    "missing `=`: expected `key = value`".to_string(),
                ));
            };
            let (key, value) = (key.trim(), value.trim());
            if key.is_empty() {
                return Err(error(None, "missing key before `=`".to_string()));
            }
            let Some(key) = known_key(key) else {
                return Err(error(shown_key(key), unknown_key_message(key)));
            };
            if let Some((_, first)) = seen.iter().find(|(k, _)| *k == key) {
                return Err(error(
                    Some(key),
                    format!("repeated key (first set on line {first})"),
                ));
            }
            seen.push((key, line));
            config
                .apply(key, value)
                .map_err(|message| error(Some(key), message))?;
        }
        Ok(config)
    }

    /// Apply one `KEY=VALUE` (as from `--set`): same value syntax and rules as the file; key
    /// and value are trimmed, and no comment is stripped (`port=1 # x` is an error, and so is
    /// a secret the file would cut at a `#`). A list key gets the whole new list. On error the
    /// configuration is unchanged.
    ///
    /// The error names the key and says it came from `--set`.
    pub fn set(&mut self, key: &str, value: &str) -> Result<(), ConfigError> {
        let error = |key: Option<&str>, message: String| ConfigError {
            file: None,
            line: None,
            key: key.map(str::to_string),
            message: format!("{message} (from --set)"),
        };
        let key = key.trim();
        if key.is_empty() {
            return Err(error(None, "missing key before `=`".to_string()));
        }
        let Some(key) = known_key(key) else {
            return Err(error(shown_key(key), unknown_key_message(key)));
        };
        self.apply(key, value.trim())
            .map_err(|message| error(Some(key), message))
    }

    /// Check the whole configuration, after the file and every `--set`.
    ///
    /// Rules of one key (also checked while parsing):
    /// - `host` is an IP address (IPv6 without brackets);
    /// - `path` starts with `/` and has no white space, control character, `?` or `#`;
    /// - `max_connections`, every size and every `max_*` count but `max_auth_failures` is at
    ///   least 1; every `_ms` key is at most [`MAX_MS`];
    /// - each `cors_origins` pattern is non-empty, without white space, control characters,
    ///   `,` or `#`;
    /// - each token's USER is non-empty, without `:`, `,`, control characters or a `#` that
    ///   would start a comment (first, or after white space); each SECRET is non-empty,
    ///   without `,`, control characters or white space followed by `#`; neither has white
    ///   space at its ends; no two tokens share a secret;
    /// - `auth_password`, when set, is non-empty, without control characters, white space at
    ///   its ends or a `#` that would start a comment;
    /// - no secret, nor `auth_password`, is `***` (the mask that `--print-config` prints);
    /// - `log_level` is not `off`.
    ///
    /// Rules across keys:
    /// - `max_message_size <= max_payload`;
    /// - `max_outbound_buffer >= max_message_size` (one relayed message must fit);
    /// - `auth_mode = password` needs `auth_password`;
    /// - `rate_limit_burst >= 1` when `rate_limit_per_sec > 0`;
    /// - `heartbeat_interval_ms < client_timeout_ms` when both are on.
    ///
    /// `auth_mode = token` without tokens is allowed (the gateway warns at start).
    pub fn validate(&self) -> Result<(), ConfigError> {
        let error = |key: &str, message: String| ConfigError {
            file: None,
            line: None,
            key: Some(key.to_string()),
            message,
        };
        let in_range = |key: &'static str, value: u64| -> Result<(), ConfigError> {
            let (min, max) = match kind_of(key) {
                Some(Kind::Number { min, max }) => (min, max),
                Some(Kind::Size) => (SIZE_MIN, USIZE_MAX),
                Some(Kind::Millis) => (0, MAX_MS),
                Some(Kind::Other) | None => return Ok(()),
            };
            if value < min {
                Err(error(key, format!("must be at least {min}, is {value}")))
            } else if value > max {
                Err(error(key, format!("must be at most {max}, is {value}")))
            } else {
                Ok(())
            }
        };
        let wide = |n: usize| u64::try_from(n).unwrap_or(u64::MAX);

        check_host(&self.host).map_err(|m| error("host", m))?;
        check_path(&self.path).map_err(|m| error("path", m))?;
        in_range("max_connections", wide(self.max_connections))?;
        check_tokens(&self.auth_tokens).map_err(|m| error("auth_tokens", m))?;
        if let Some(password) = &self.auth_password {
            check_password(password).map_err(|m| error("auth_password", m))?;
        }
        in_range("auth_timeout_ms", self.auth_timeout_ms)?;
        check_origins(&self.cors_origins).map_err(|m| error("cors_origins", m))?;
        in_range("handshake_timeout_ms", self.handshake_timeout_ms)?;
        in_range("heartbeat_interval_ms", self.heartbeat_interval_ms)?;
        in_range("client_timeout_ms", self.client_timeout_ms)?;
        in_range("close_timeout_ms", self.close_timeout_ms)?;
        in_range("agent_ttl_ms", self.agent_ttl_ms)?;
        in_range("max_header_bytes", wide(self.max_header_bytes))?;
        in_range("max_payload", wide(self.max_payload))?;
        in_range("max_message_size", wide(self.max_message_size))?;
        in_range("max_outbound_buffer", wide(self.max_outbound_buffer))?;
        in_range(
            "max_clients_per_session",
            wide(self.max_clients_per_session),
        )?;
        in_range(
            "max_sessions_per_client",
            wide(self.max_sessions_per_client),
        )?;
        in_range("max_sessions", wide(self.max_sessions))?;
        in_range("max_agents", wide(self.max_agents))?;
        if level_name(self.log_level).is_none() {
            return Err(error(
                "log_level",
                "must be one of error, warn, info, debug, trace".to_string(),
            ));
        }

        if self.max_message_size > self.max_payload {
            return Err(error(
                "max_message_size",
                format!(
                    "must not exceed max_payload ({} > {})",
                    self.max_message_size, self.max_payload
                ),
            ));
        }
        if self.max_outbound_buffer < self.max_message_size {
            return Err(error(
                "max_outbound_buffer",
                format!(
                    "must be at least max_message_size ({} < {})",
                    self.max_outbound_buffer, self.max_message_size
                ),
            ));
        }
        if self.auth_mode == AuthMode::Password && self.auth_password.is_none() {
            return Err(error(
                "auth_password",
                "is required when auth_mode = password".to_string(),
            ));
        }
        if self.rate_limit_per_sec > 0 && self.rate_limit_burst == 0 {
            return Err(error(
                "rate_limit_burst",
                "must be at least 1 when rate_limit_per_sec is on".to_string(),
            ));
        }
        if self.heartbeat_interval_ms > 0
            && self.client_timeout_ms > 0
            && self.heartbeat_interval_ms >= self.client_timeout_ms
        {
            return Err(error(
                "heartbeat_interval_ms",
                format!(
                    "must be less than client_timeout_ms when both are on ({} >= {})",
                    self.heartbeat_interval_ms, self.client_timeout_ms
                ),
            ));
        }
        Ok(())
    }

    /// The effective configuration in the file format: every key, one per line, grouped as in
    /// the shipped `gateway.conf`, with every secret shown as `***` (token users are shown).
    ///
    /// Parsing the result with the secrets put back yields the same `Config`, for any
    /// configuration that passes [`Config::validate`].
    pub fn to_file_string(&self) -> String {
        let Config {
            host,
            port,
            path,
            max_connections,
            http_endpoints,
            auth_mode,
            auth_tokens,
            auth_password,
            auth_timeout_ms,
            max_auth_failures,
            cors_origins,
            require_origin,
            handshake_timeout_ms,
            heartbeat_interval_ms,
            client_timeout_ms,
            close_timeout_ms,
            agent_ttl_ms,
            max_header_bytes,
            max_payload,
            max_message_size,
            max_outbound_buffer,
            max_clients_per_session,
            max_sessions_per_client,
            max_sessions,
            max_agents,
            rate_limit_per_sec,
            rate_limit_burst,
            log_level,
        } = self;
        let tokens: Vec<String> = auth_tokens
            .iter()
            .map(|t| format!("{}:{SECRET_MASK}", t.user))
            .collect();
        let groups: [(&str, Vec<(&str, String)>); 6] = [
            (
                "listener",
                vec![
                    ("host", host.clone()),
                    ("port", port.to_string()),
                    ("path", path.clone()),
                    ("max_connections", max_connections.to_string()),
                    ("http_endpoints", http_endpoints.to_string()),
                ],
            ),
            (
                "auth",
                vec![
                    ("auth_mode", auth_mode.as_str().to_string()),
                    ("auth_tokens", tokens.join(", ")),
                    (
                        "auth_password",
                        auth_password
                            .as_ref()
                            .map_or(String::new(), |_| SECRET_MASK.to_string()),
                    ),
                    ("auth_timeout_ms", auth_timeout_ms.to_string()),
                    ("max_auth_failures", max_auth_failures.to_string()),
                ],
            ),
            (
                "origins",
                vec![
                    ("cors_origins", cors_origins.join(", ")),
                    ("require_origin", require_origin.to_string()),
                ],
            ),
            (
                "timers",
                vec![
                    ("handshake_timeout_ms", handshake_timeout_ms.to_string()),
                    ("heartbeat_interval_ms", heartbeat_interval_ms.to_string()),
                    ("client_timeout_ms", client_timeout_ms.to_string()),
                    ("close_timeout_ms", close_timeout_ms.to_string()),
                    ("agent_ttl_ms", agent_ttl_ms.to_string()),
                ],
            ),
            (
                "limits",
                vec![
                    ("max_header_bytes", max_header_bytes.to_string()),
                    ("max_payload", max_payload.to_string()),
                    ("max_message_size", max_message_size.to_string()),
                    ("max_outbound_buffer", max_outbound_buffer.to_string()),
                    (
                        "max_clients_per_session",
                        max_clients_per_session.to_string(),
                    ),
                    (
                        "max_sessions_per_client",
                        max_sessions_per_client.to_string(),
                    ),
                    ("max_sessions", max_sessions.to_string()),
                    ("max_agents", max_agents.to_string()),
                    ("rate_limit_per_sec", rate_limit_per_sec.to_string()),
                    ("rate_limit_burst", rate_limit_burst.to_string()),
                ],
            ),
            (
                "logging",
                vec![(
                    "log_level",
                    level_name(*log_level).unwrap_or("off").to_string(),
                )],
            ),
        ];
        let mut out = String::from("# gateway effective configuration (secrets shown as ***)\n");
        for (group, entries) in groups {
            out.push_str("\n# ");
            out.push_str(group);
            out.push('\n');
            for (key, value) in entries {
                out.push_str(key);
                out.push_str(" =");
                if !value.is_empty() {
                    out.push(' ');
                    out.push_str(&value);
                }
                out.push('\n');
            }
        }
        out
    }

    /// Set one known key from its trimmed value; the error is the message only.
    fn apply(&mut self, key: &'static str, value: &str) -> Result<(), String> {
        match kind_of(key) {
            Some(Kind::Number { min, max }) => {
                let n = parse_number(value, min, max)?;
                self.set_number(key, n)
            }
            Some(Kind::Size) => {
                let n = parse_size(value)?;
                self.set_number(key, n)
            }
            Some(Kind::Millis) => {
                let n = parse_millis(value)?;
                self.set_number(key, n)
            }
            Some(Kind::Other) => self.set_other(key, value),
            None => Err(unknown_key_message(key)),
        }
    }

    /// Store a number already checked against the key's range.
    fn set_number(&mut self, key: &str, n: u64) -> Result<(), String> {
        let too_big = || format!("{n} does not fit this platform");
        let size = || usize::try_from(n).map_err(|_| too_big());
        let small = || u32::try_from(n).map_err(|_| too_big());
        match key {
            "port" => self.port = u16::try_from(n).map_err(|_| too_big())?,
            "max_connections" => self.max_connections = size()?,
            "auth_timeout_ms" => self.auth_timeout_ms = n,
            "max_auth_failures" => self.max_auth_failures = small()?,
            "handshake_timeout_ms" => self.handshake_timeout_ms = n,
            "heartbeat_interval_ms" => self.heartbeat_interval_ms = n,
            "client_timeout_ms" => self.client_timeout_ms = n,
            "close_timeout_ms" => self.close_timeout_ms = n,
            "agent_ttl_ms" => self.agent_ttl_ms = n,
            "max_header_bytes" => self.max_header_bytes = size()?,
            "max_payload" => self.max_payload = size()?,
            "max_message_size" => self.max_message_size = size()?,
            "max_outbound_buffer" => self.max_outbound_buffer = size()?,
            "max_clients_per_session" => self.max_clients_per_session = size()?,
            "max_sessions_per_client" => self.max_sessions_per_client = size()?,
            "max_sessions" => self.max_sessions = size()?,
            "max_agents" => self.max_agents = size()?,
            "rate_limit_per_sec" => self.rate_limit_per_sec = small()?,
            "rate_limit_burst" => self.rate_limit_burst = small()?,
            _ => return Err(unknown_key_message(key)),
        }
        Ok(())
    }

    /// Store a key whose value is not a plain number.
    fn set_other(&mut self, key: &str, value: &str) -> Result<(), String> {
        match key {
            "host" => {
                check_host(value)?;
                self.host = value.to_string();
            }
            "path" => {
                check_path(value)?;
                self.path = value.to_string();
            }
            "http_endpoints" => self.http_endpoints = parse_bool(value)?,
            "require_origin" => self.require_origin = parse_bool(value)?,
            "auth_mode" => {
                self.auth_mode = match value {
                    "token" => AuthMode::Token,
                    "password" => AuthMode::Password,
                    "none" => AuthMode::None,
                    _ => {
                        return Err(format!(
                            "expected token, password or none, got {}",
                            quote(value)
                        ))
                    }
                }
            }
            "auth_tokens" => {
                let mut tokens = Vec::new();
                for (index, item) in split_list(value)?.into_iter().enumerate() {
                    let Some((user, secret)) = item.split_once(':') else {
                        return Err(format!(
                            "item {}: expected USER:SECRET, found no `:`",
                            index + 1
                        ));
                    };
                    tokens.push(AuthToken {
                        user: user.trim().to_string(),
                        secret: secret.trim().to_string(),
                    });
                }
                check_tokens(&tokens)?;
                self.auth_tokens = tokens;
            }
            "auth_password" => {
                if value.is_empty() {
                    self.auth_password = None;
                } else {
                    check_password(value)?;
                    self.auth_password = Some(value.to_string());
                }
            }
            "cors_origins" => {
                let origins: Vec<String> =
                    split_list(value)?.into_iter().map(str::to_string).collect();
                check_origins(&origins)?;
                self.cors_origins = origins;
            }
            "log_level" => {
                self.log_level = LOG_LEVELS
                    .iter()
                    .find(|(name, _)| *name == value)
                    .map(|(_, level)| *level)
                    .ok_or_else(|| {
                        format!(
                            "expected one of error, warn, info, debug, trace, got {}",
                            quote(value)
                        )
                    })?;
            }
            _ => return Err(unknown_key_message(key)),
        }
        Ok(())
    }
}

/// The line with its comment removed: from the first `#` that starts the line or follows
/// white space.
fn strip_comment(line: &str) -> &str {
    let mut after_space = true;
    for (at, c) in line.char_indices() {
        if c == '#' && after_space {
            return line.get(..at).unwrap_or("");
        }
        after_space = c.is_whitespace();
    }
    line
}

/// The table's spelling of `key`, if it is a configuration key.
fn known_key(key: &str) -> Option<&'static str> {
    KEY_TABLE.iter().map(|(k, _)| *k).find(|k| *k == key)
}

fn kind_of(key: &str) -> Option<Kind> {
    KEY_TABLE
        .iter()
        .find(|(k, _)| *k == key)
        .map(|(_, kind)| *kind)
}

/// An unknown key as it may be shown: not when it holds white space or `:`, where it may be
/// a misplaced `USER:SECRET` or `key value` line.
fn shown_key(key: &str) -> Option<&str> {
    (!key.chars().any(|c| c.is_whitespace() || c == ':')).then_some(key)
}

/// "unknown key", with the closest known key when one is near.
fn unknown_key_message(key: &str) -> String {
    if shown_key(key).is_none() {
        return "unknown key (a key has no white space or `:`)".to_string();
    }
    let length = key.chars().count();
    let best = KEY_TABLE
        .iter()
        .filter(|(k, _)| k.len().abs_diff(length) <= 2)
        .map(|(k, _)| (edit_distance(key, k), *k))
        .min();
    match best {
        Some((distance, near)) if distance <= 2 => {
            format!("unknown key (did you mean `{near}`?)")
        }
        _ => "unknown key".to_string(),
    }
}

/// Levenshtein distance over chars; long inputs are cut short since they match nothing.
fn edit_distance(a: &str, b: &str) -> usize {
    let a: Vec<char> = a.chars().take(64).collect();
    let b: Vec<char> = b.chars().collect();
    let mut previous: Vec<usize> = (0..=b.len()).collect();
    let mut current = vec![0; b.len() + 1];
    for (i, ca) in a.iter().enumerate() {
        current[0] = i + 1;
        for (j, cb) in b.iter().enumerate() {
            let substitute = previous[j] + usize::from(ca != cb);
            current[j + 1] = substitute.min(previous[j + 1] + 1).min(current[j] + 1);
        }
        std::mem::swap(&mut previous, &mut current);
    }
    previous[b.len()]
}

/// A value for an error message: quoted, escaped, and cut after 64 characters.
fn quote(value: &str) -> String {
    const LIMIT: usize = 64;
    match value.char_indices().nth(LIMIT) {
        Some((at, _)) => format!("{:?}...", value.get(..at).unwrap_or("")),
        None => format!("{value:?}"),
    }
}

/// Decimal digits only, in `min..=max`.
fn parse_number(value: &str, min: u64, max: u64) -> Result<u64, String> {
    digits(value)
        .filter(|n| (min..=max).contains(n))
        .ok_or_else(|| {
            format!(
                "expected a number from {min} to {max}, got {}",
                quote(value)
            )
        })
}

fn digits(value: &str) -> Option<u64> {
    if value.is_empty() || !value.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    value.parse().ok()
}

/// Bytes, with an optional `KiB` or `MiB` suffix, at least [`SIZE_MIN`].
fn parse_size(value: &str) -> Result<u64, String> {
    let (number, unit) = if let Some(n) = value.strip_suffix("KiB") {
        (n.trim_end(), 1024)
    } else if let Some(n) = value.strip_suffix("MiB") {
        (n.trim_end(), 1024 * 1024)
    } else {
        (value, 1)
    };
    digits(number)
        .and_then(|n| n.checked_mul(unit))
        .filter(|n| (SIZE_MIN..=USIZE_MAX).contains(n))
        .ok_or_else(|| {
            format!(
                "expected a size from {SIZE_MIN} to {USIZE_MAX} bytes (a KiB or MiB suffix \
                 is accepted), got {}",
                quote(value)
            )
        })
}

fn parse_millis(value: &str) -> Result<u64, String> {
    digits(value).filter(|n| *n <= MAX_MS).ok_or_else(|| {
        format!(
            "expected milliseconds from 0 to {MAX_MS} (0 = off), got {}",
            quote(value)
        )
    })
}

fn parse_bool(value: &str) -> Result<bool, String> {
    match value {
        "true" => Ok(true),
        "false" => Ok(false),
        _ => Err(format!("expected true or false, got {}", quote(value))),
    }
}

/// Comma-separated items, trimmed; an empty value is the empty list, an empty item an error.
fn split_list(value: &str) -> Result<Vec<&str>, String> {
    if value.is_empty() {
        return Ok(Vec::new());
    }
    let items: Vec<&str> = value.split(',').map(str::trim).collect();
    match items.iter().position(|item| item.is_empty()) {
        Some(at) => Err(format!("item {} of the list is empty", at + 1)),
        None => Ok(items),
    }
}

fn level_name(level: log::LevelFilter) -> Option<&'static str> {
    LOG_LEVELS
        .iter()
        .find(|(_, l)| *l == level)
        .map(|(name, _)| *name)
}

fn check_host(host: &str) -> Result<(), String> {
    host.parse::<std::net::IpAddr>().map(|_| ()).map_err(|_| {
        format!(
            "expected an IP address such as 127.0.0.1 or ::1, got {}",
            quote(host)
        )
    })
}

fn check_path(path: &str) -> Result<(), String> {
    if !path.starts_with('/') {
        return Err(format!("must start with `/`, got {}", quote(path)));
    }
    if path
        .chars()
        .any(|c| c.is_whitespace() || c.is_control() || c == '?' || c == '#')
    {
        return Err(format!(
            "must not contain white space, control characters, `?` or `#`, got {}",
            quote(path)
        ));
    }
    Ok(())
}

fn check_origins(origins: &[String]) -> Result<(), String> {
    for (index, origin) in origins.iter().enumerate() {
        if origin.is_empty() {
            return Err(format!("item {} of the list is empty", index + 1));
        }
        if origin
            .chars()
            .any(|c| c.is_whitespace() || c.is_control() || c == ',' || c == '#')
        {
            return Err(format!(
                "item {}: a pattern has no white space, control characters, `,` or `#` \
                 (items are separated by `,`), got {}",
                index + 1,
                quote(origin)
            ));
        }
    }
    Ok(())
}

/// Whether `s` has white space at either end.
fn padded(s: &str) -> bool {
    s.trim() != s
}

/// Whether `s` has white space followed by `#`, which the file format reads as a comment.
fn space_then_hash(s: &str) -> bool {
    s.chars()
        .zip(s.chars().skip(1))
        .any(|(a, b)| a.is_whitespace() && b == '#')
}

/// Whether `s`, written as a value of its own, would be cut by a comment.
fn comment_inside(s: &str) -> bool {
    s.starts_with('#') || space_then_hash(s)
}

/// The token rules; messages name entries by position and never quote a secret.
fn check_tokens(tokens: &[AuthToken]) -> Result<(), String> {
    for (index, token) in tokens.iter().enumerate() {
        let n = index + 1;
        let user = &token.user;
        if user.is_empty() {
            return Err(format!("item {n}: USER is empty (expected USER:SECRET)"));
        }
        if padded(user)
            || comment_inside(user)
            || user.chars().any(|c| c == ':' || c == ',' || c.is_control())
        {
            return Err(format!(
                "item {n}: USER must not contain `:`, `,`, control characters or a `#` that \
                 would start a comment, nor begin or end with white space"
            ));
        }
        let secret = &token.secret;
        if secret.is_empty() {
            return Err(format!("item {n}: SECRET is empty (expected USER:SECRET)"));
        }
        if padded(secret)
            || space_then_hash(secret)
            || secret.chars().any(|c| c == ',' || c.is_control())
        {
            return Err(format!(
                "item {n}: SECRET must not contain `,`, control characters or white space \
                 followed by `#`, nor begin or end with white space"
            ));
        }
        if secret == SECRET_MASK {
            return Err(format!(
                "item {n}: SECRET is `***`, the mask that --print-config prints; put the \
                 real secret back"
            ));
        }
        if let Some(first) = tokens
            .get(..index)
            .and_then(|earlier| earlier.iter().position(|t| t.secret == token.secret))
        {
            return Err(format!("items {} and {n} have the same SECRET", first + 1));
        }
    }
    Ok(())
}

fn check_password(password: &str) -> Result<(), String> {
    if password.is_empty() {
        return Err("is empty".to_string());
    }
    if padded(password) || comment_inside(password) || password.chars().any(char::is_control) {
        return Err(
            "must not contain control characters or a `#` that would start a comment, \
                    nor begin or end with white space"
                .to_string(),
        );
    }
    if password == SECRET_MASK {
        return Err(
            "is `***`, the mask that --print-config prints; put the real password back".to_string(),
        );
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<Config, ConfigError> {
        Config::parse_str(text, "gateway.conf")
    }

    fn parsed(text: &str) -> Config {
        match parse(text) {
            Ok(config) => config,
            Err(e) => panic!("{text:?} should parse: {e}"),
        }
    }

    fn error(text: &str) -> String {
        match parse(text) {
            Ok(config) => panic!("{text:?} should not parse, got {config:?}"),
            Err(e) => e.to_string(),
        }
    }

    fn set_error(key: &str, value: &str) -> String {
        match Config::default().set(key, value) {
            Ok(()) => panic!("--set {key}={value} should fail"),
            Err(e) => e.to_string(),
        }
    }

    fn invalid(config: &Config) -> String {
        match config.validate() {
            Ok(()) => panic!("{config:?} should not validate"),
            Err(e) => {
                assert_eq!((e.file.as_deref(), e.line), (None, None));
                e.to_string()
            }
        }
    }

    fn token(user: &str, secret: &str) -> AuthToken {
        AuthToken {
            user: user.to_string(),
            secret: secret.to_string(),
        }
    }

    /// A value for every key that differs from its default.
    const NON_DEFAULTS: [(&str, &str); 28] = [
        ("host", "0.0.0.0"),
        ("port", "9000"),
        ("path", "/gateway"),
        ("max_connections", "5"),
        ("http_endpoints", "false"),
        ("auth_mode", "password"),
        ("auth_tokens", "alice:s1, bob:s2"),
        ("auth_password", "pw"),
        ("auth_timeout_ms", "1"),
        ("max_auth_failures", "0"),
        ("cors_origins", "*"),
        ("require_origin", "true"),
        ("handshake_timeout_ms", "0"),
        ("heartbeat_interval_ms", "0"),
        ("client_timeout_ms", "0"),
        ("close_timeout_ms", "7"),
        ("agent_ttl_ms", "8"),
        ("max_header_bytes", "4 KiB"),
        ("max_payload", "3MiB"),
        ("max_message_size", "2 MiB"),
        ("max_outbound_buffer", "2MiB"),
        ("max_clients_per_session", "2"),
        ("max_sessions_per_client", "3"),
        ("max_sessions", "4"),
        ("max_agents", "5"),
        ("rate_limit_per_sec", "20"),
        ("rate_limit_burst", "1"),
        ("log_level", "trace"),
    ];

    #[test]
    fn defaults_are_valid_and_documented_values() {
        let c = Config::default();
        assert_eq!(c.validate(), Ok(()));
        assert_eq!(
            (c.host.as_str(), c.port, c.path.as_str()),
            ("127.0.0.1", 18789, "/ws")
        );
        assert_eq!(c.auth_mode, AuthMode::Token);
        assert!(c.auth_tokens.is_empty() && c.auth_password.is_none());
        assert_eq!(c.max_payload, 10_485_760);
        assert_eq!(c.log_level, log::LevelFilter::Info);
    }

    #[test]
    fn keys_are_unique_and_each_sets_its_own_field() {
        let mut keys = Config::KEYS.to_vec();
        keys.sort_unstable();
        keys.dedup();
        assert_eq!(keys.len(), Config::KEYS.len());
        assert_eq!(
            NON_DEFAULTS.map(|(k, _)| k),
            Config::KEYS,
            "NON_DEFAULTS follows KEYS"
        );
        let mut all = Config::default();
        let mut previous = Config::default();
        for (key, value) in NON_DEFAULTS {
            let mut one = Config::default();
            one.set(key, value).unwrap_or_else(|e| panic!("{e}"));
            assert_ne!(one, Config::default(), "{key} changed nothing");
            all.set(key, value).unwrap_or_else(|e| panic!("{e}"));
            assert_ne!(all, previous, "{key} changed nothing");
            previous = all.clone();
        }
        assert_eq!(all.validate(), Ok(()));
    }

    #[test]
    fn empty_comment_and_blank_text_is_the_defaults() {
        for text in [
            "",
            "\n\n",
            "# only a comment\n",
            "   \t\n  # indented\r\n",
            "\u{feff}",
        ] {
            assert_eq!(parsed(text), Config::default(), "{text:?}");
        }
    }

    #[test]
    fn every_key_from_a_file() {
        let text: String = NON_DEFAULTS
            .iter()
            .map(|(k, v)| format!("{k} = {v}\n"))
            .collect();
        let c = parsed(&text);
        assert_eq!(c.host, "0.0.0.0");
        assert_eq!(c.port, 9000);
        assert_eq!(c.path, "/gateway");
        assert_eq!(c.max_connections, 5);
        assert!(!c.http_endpoints && c.require_origin);
        assert_eq!(c.auth_mode, AuthMode::Password);
        assert_eq!(
            c.auth_tokens,
            vec![token("alice", "s1"), token("bob", "s2")]
        );
        assert_eq!(c.auth_password.as_deref(), Some("pw"));
        assert_eq!((c.auth_timeout_ms, c.max_auth_failures), (1, 0));
        assert_eq!(c.cors_origins, vec!["*"]);
        assert_eq!(
            [
                c.handshake_timeout_ms,
                c.heartbeat_interval_ms,
                c.client_timeout_ms,
                c.close_timeout_ms,
                c.agent_ttl_ms
            ],
            [0, 0, 0, 7, 8]
        );
        assert_eq!(
            [
                c.max_header_bytes,
                c.max_payload,
                c.max_message_size,
                c.max_outbound_buffer
            ],
            [4096, 3 << 20, 2 << 20, 2 << 20]
        );
        assert_eq!(
            [
                c.max_clients_per_session,
                c.max_sessions_per_client,
                c.max_sessions,
                c.max_agents
            ],
            [2, 3, 4, 5]
        );
        assert_eq!((c.rate_limit_per_sec, c.rate_limit_burst), (20, 1));
        assert_eq!(c.log_level, log::LevelFilter::Trace);
        assert_eq!(c.validate(), Ok(()));
    }

    #[test]
    fn numbers() {
        assert_eq!(parsed("port = 0").port, 0);
        assert_eq!(parsed("port = 65535").port, 65535);
        assert_eq!(parsed("port=007").port, 7);
        assert_eq!(parsed("  port   =   80   ").port, 80);
        assert_eq!(
            parsed("max_auth_failures = 4294967295").max_auth_failures,
            u32::MAX
        );
        for bad in [
            "abc",
            "",
            "+1",
            "-1",
            "1_000",
            "1 000",
            "0x10",
            "1.5",
            "65536",
            "99999999999999999999",
        ] {
            assert_eq!(
                error(&format!("port = {bad}")),
                format!("gateway.conf:1: port: expected a number from 0 to 65535, got {bad:?}")
            );
        }
        assert_eq!(
            error("max_auth_failures = 4294967296"),
            "gateway.conf:1: max_auth_failures: expected a number from 0 to 4294967295, got \"4294967296\""
        );
        assert!(error("max_connections = 0").contains("expected a number from 1 to"));
        assert!(error("max_agents = 0")
            .starts_with("gateway.conf:1: max_agents: expected a number from 1 to"));
        assert!(error("rate_limit_per_sec = -5").contains("rate_limit_per_sec: expected a number"));
    }

    #[test]
    fn sizes() {
        for (text, bytes) in [
            ("512", 512),
            ("2MiB", 2 << 20),
            ("2 MiB", 2 << 20),
            ("2 \t MiB", 2 << 20),
            ("3KiB", 3072),
            ("3 KiB", 3072),
            ("0001 KiB", 1024),
        ] {
            assert_eq!(
                parsed(&format!("max_payload = {text}")).max_payload,
                bytes,
                "{text}"
            );
        }
        if usize::BITS == 64 {
            assert_eq!(
                parsed("max_payload = 18446744073709551615").max_payload,
                usize::MAX
            );
        }
        for bad in [
            "0",
            "0 KiB",
            "",
            "MiB",
            "2 mib",
            "2 MB",
            "2 GiB",
            "2 B",
            "2MiB MiB",
            "-2 MiB",
            "1.5 MiB",
            "18446744073709551616",
            "18446744073709551615 MiB",
            "17592186044416 MiB",
        ] {
            let e = error(&format!("max_payload = {bad}"));
            assert_eq!(
                e,
                format!(
                    "gateway.conf:1: max_payload: expected a size from 1 to {USIZE_MAX} bytes \
                     (a KiB or MiB suffix is accepted), got {bad:?}"
                )
            );
        }
    }

    #[test]
    fn durations() {
        assert_eq!(parsed("agent_ttl_ms = 0").agent_ttl_ms, 0);
        assert_eq!(
            parsed(&format!("agent_ttl_ms = {MAX_MS}")).agent_ttl_ms,
            MAX_MS
        );
        for bad in ["5s", "1e3", "-1", "", "31536000001", "18446744073709551616"] {
            assert_eq!(
                error(&format!("client_timeout_ms = {bad}")),
                format!(
                    "gateway.conf:1: client_timeout_ms: expected milliseconds from 0 to \
                     31536000000 (0 = off), got {bad:?}"
                )
            );
        }
        assert_eq!(Config::duration(0), None);
        assert_eq!(Config::duration(1500), Some(Duration::from_millis(1500)));
    }

    #[test]
    fn booleans_levels_and_modes() {
        assert!(!parsed("http_endpoints = false").http_endpoints);
        assert!(parsed("require_origin = true").require_origin);
        for bad in ["TRUE", "yes", "1", "", "true false"] {
            assert_eq!(
                error(&format!("require_origin = {bad}")),
                format!("gateway.conf:1: require_origin: expected true or false, got {bad:?}")
            );
        }
        for (name, level) in LOG_LEVELS {
            assert_eq!(parsed(&format!("log_level = {name}")).log_level, level);
        }
        for bad in ["INFO", "off", "warning", ""] {
            assert_eq!(
                error(&format!("log_level = {bad}")),
                format!(
                    "gateway.conf:1: log_level: expected one of error, warn, info, debug, \
                     trace, got {bad:?}"
                )
            );
        }
        for mode in [AuthMode::Token, AuthMode::Password, AuthMode::None] {
            assert_eq!(
                parsed(&format!("auth_mode = {}", mode.as_str())).auth_mode,
                mode
            );
        }
        assert_eq!(
            error("auth_mode = Token"),
            "gateway.conf:1: auth_mode: expected token, password or none, got \"Token\""
        );
    }

    #[test]
    fn host_and_path() {
        assert_eq!(parsed("host = ::1").host, "::1");
        assert_eq!(parsed("host = 0.0.0.0").host, "0.0.0.0");
        for bad in ["localhost", "", "[::1]", "127.0.0.1:80", "256.0.0.1"] {
            assert_eq!(
                error(&format!("host = {bad}")),
                format!(
                    "gateway.conf:1: host: expected an IP address such as 127.0.0.1 or ::1, \
                     got {bad:?}"
                )
            );
        }
        assert_eq!(parsed("path = /").path, "/");
        assert_eq!(parsed("path = /a/b-c").path, "/a/b-c");
        assert_eq!(
            error("path = ws"),
            "gateway.conf:1: path: must start with `/`, got \"ws\""
        );
        assert_eq!(
            error("path ="),
            "gateway.conf:1: path: must start with `/`, got \"\""
        );
        for bad in ["/a?b", "/a b", "/a#b"] {
            assert!(
                error(&format!("path = {bad}"))
                    .starts_with("gateway.conf:1: path: must not contain"),
                "{bad}"
            );
        }
    }

    #[test]
    fn lists() {
        assert_eq!(
            parsed("cors_origins = https://a.example ,http://b:*,   *").cors_origins,
            vec!["https://a.example", "http://b:*", "*"]
        );
        assert!(parsed("cors_origins =").cors_origins.is_empty());
        assert!(parsed("cors_origins =   # nothing allowed")
            .cors_origins
            .is_empty());
        assert!(parsed("auth_tokens =").auth_tokens.is_empty());
        assert_eq!(
            error("cors_origins = a, , b"),
            "gateway.conf:1: cors_origins: item 2 of the list is empty"
        );
        assert_eq!(
            error("cors_origins = a,"),
            "gateway.conf:1: cors_origins: item 2 of the list is empty"
        );
        assert_eq!(
            error("cors_origins = ,a"),
            "gateway.conf:1: cors_origins: item 1 of the list is empty"
        );
        assert!(error("cors_origins = http://a http://b")
            .starts_with("gateway.conf:1: cors_origins: item 1: a pattern has no white space"));
    }

    #[test]
    fn tokens() {
        let c = parsed("auth_tokens = alice:s1, bob : s:2 ,carol:#x#, dave:a b");
        assert_eq!(
            c.auth_tokens,
            vec![
                token("alice", "s1"),
                token("bob", "s:2"),
                token("carol", "#x#"),
                token("dave", "a b")
            ]
        );
        let cases = [
            (
                "auth_tokens = alice",
                "item 1: expected USER:SECRET, found no `:`",
            ),
            (
                "auth_tokens = a:b, :hunter2",
                "item 2: USER is empty (expected USER:SECRET)",
            ),
            (
                "auth_tokens = a: ",
                "item 1: SECRET is empty (expected USER:SECRET)",
            ),
            ("auth_tokens = a:b,,c:d", "item 2 of the list is empty"),
            ("auth_tokens = a:b,", "item 2 of the list is empty"),
            (
                "auth_tokens = a:hunter2, b:hunter2",
                "items 1 and 2 have the same SECRET",
            ),
            (
                "auth_tokens = a:***",
                "item 1: SECRET is `***`, the mask that --print-config prints; put the real \
                 secret back",
            ),
        ];
        for (text, message) in cases {
            let e = error(text);
            assert_eq!(e, format!("gateway.conf:1: auth_tokens: {message}"));
            assert!(!e.contains("hunter2"), "{e}");
        }
        // The same user with two secrets is allowed (rotation).
        assert_eq!(parsed("auth_tokens = a:x, a:y").auth_tokens.len(), 2);
    }

    #[test]
    fn password() {
        assert_eq!(
            parsed("auth_password = p@ss w0rd").auth_password.as_deref(),
            Some("p@ss w0rd")
        );
        assert_eq!(parsed("auth_password =").auth_password, None);
        assert_eq!(parsed("auth_password = # none").auth_password, None);
        assert_eq!(
            error("auth_password = ***"),
            "gateway.conf:1: auth_password: is `***`, the mask that --print-config prints; put \
             the real password back"
        );
    }

    #[test]
    fn comments() {
        assert_eq!(
            parsed("auth_password = secret#1").auth_password.as_deref(),
            Some("secret#1")
        );
        assert_eq!(
            parsed("auth_password = secret#1 # note")
                .auth_password
                .as_deref(),
            Some("secret#1")
        );
        assert_eq!(
            parsed("auth_password = a#b#c\t# note")
                .auth_password
                .as_deref(),
            Some("a#b#c")
        );
        assert_eq!(
            parsed("auth_tokens = dev:s#1, x:#y # two tokens").auth_tokens,
            vec![token("dev", "s#1"), token("x", "#y")]
        );
        assert_eq!(parsed("port = 1 # note").port, 1);
        assert_eq!(parsed("port = 2\t#note").port, 2);
        assert_eq!(parsed("#port = 3\n  # port = 4\n").port, 18789);
        // A `#` right after the value is part of it.
        assert_eq!(
            error("port = 1#2"),
            "gateway.conf:1: port: expected a number from 0 to 65535, got \"1#2\""
        );
        assert_eq!(
            error("port# = 1"),
            "gateway.conf:1: port#: unknown key (did you mean `port`?)"
        );
    }

    #[test]
    fn bom_and_crlf() {
        let c = parsed("\u{feff}port = 1\r\nhost = ::1\r\n\r\nauth_password = x#y\r\n");
        assert_eq!((c.port, c.host.as_str()), (1, "::1"));
        assert_eq!(c.auth_password.as_deref(), Some("x#y"));
        assert_eq!(
            error("\u{feff}# a\r\n\r\nport = x\r\n"),
            "gateway.conf:3: port: expected a number from 0 to 65535, got \"x\""
        );
        // A BOM anywhere but at the very start is not white space.
        assert!(
            error("\n\u{feff}port = 1").starts_with("gateway.conf:2: \\u{feff}port: unknown key")
        );
    }

    #[test]
    fn line_errors_name_file_line_and_key() {
        let text = "# listener\nhost = 127.0.0.1\n\nport = 1\nprot = 2\n";
        let e = parse(text).unwrap_err();
        assert_eq!(
            e,
            ConfigError {
                file: Some("gateway.conf".to_string()),
                line: Some(5),
                key: Some("prot".to_string()),
                message: "unknown key (did you mean `port`?)".to_string(),
            }
        );
        assert_eq!(
            error("port = 1\nhost = ::1\n\nport = 2"),
            "gateway.conf:4: port: repeated key (first set on line 1)"
        );
        assert_eq!(
            error("port = 1\nport = 1"),
            "gateway.conf:2: port: repeated key (first set on line 1)"
        );
        assert_eq!(
            error("frobnicate = 1"),
            "gateway.conf:1: frobnicate: unknown key"
        );
        assert_eq!(
            error("Port = 1"),
            "gateway.conf:1: Port: unknown key (did you mean `port`?)"
        );
        assert_eq!(
            error("\n\nport 8080"),
            "gateway.conf:3: port: missing `=`: expected `key = value`"
        );
        // The words of a line without `=` are not echoed unless they are a key.
        let e = error("hunter2");
        assert_eq!(e, "gateway.conf:1: missing `=`: expected `key = value`");
        // Nor is an unknown key that may hold a secret.
        assert_eq!(
            error("auth_password: hunter2 = x"),
            "gateway.conf:1: unknown key (a key has no white space or `:`)"
        );
        assert_eq!(
            set_error("dev:hunter2", "x"),
            "unknown key (a key has no white space or `:`) (from --set)"
        );
        assert_eq!(error("  = 5"), "gateway.conf:1: missing key before `=`");
        // The error stops at the first bad line.
        assert_eq!(
            error("port = x\nbogus = 1"),
            "gateway.conf:1: port: expected a number from 0 to 65535, got \"x\""
        );
        let e = Config::parse_str("port = x", "/etc/gw.conf").unwrap_err();
        assert_eq!(
            e.to_string(),
            "/etc/gw.conf:1: port: expected a number from 0 to 65535, got \"x\""
        );
        // The value is split at the first `=` only.
        assert_eq!(
            parsed("auth_password = a=b").auth_password.as_deref(),
            Some("a=b")
        );
    }

    #[test]
    fn long_values_are_cut_in_messages() {
        let long = "9".repeat(500);
        let e = error(&format!("port = {long}"));
        assert!(
            e.ends_with(&format!("got \"{}\"...", "9".repeat(64))),
            "{e}"
        );
    }

    #[test]
    fn error_display_forms() {
        let mut e = ConfigError {
            file: Some("f.conf".to_string()),
            line: Some(3),
            key: Some("port".to_string()),
            message: "bad".to_string(),
        };
        assert_eq!(e.to_string(), "f.conf:3: port: bad");
        e.key = None;
        assert_eq!(e.to_string(), "f.conf:3: bad");
        e.line = None;
        assert_eq!(e.to_string(), "f.conf: bad");
        e.file = None;
        assert_eq!(e.to_string(), "bad");
        e.key = Some("a\nb".to_string());
        assert_eq!(e.to_string(), "a\\nb: bad");
    }

    #[test]
    fn set_overrides_and_reports_set() {
        let mut c = parsed("port = 1\ncors_origins = http://a, http://b\nauth_tokens = a:1");
        c.set("port", "2").unwrap();
        c.set(" port ", " 3 ").unwrap();
        c.set("cors_origins", "*").unwrap();
        c.set("auth_tokens", "b:2, c:3").unwrap();
        c.set("max_payload", "5 MiB").unwrap();
        assert_eq!(c.port, 3);
        assert_eq!(c.cors_origins, vec!["*"]);
        assert_eq!(c.auth_tokens, vec![token("b", "2"), token("c", "3")]);
        assert_eq!(c.max_payload, 5 << 20);
        // No comment stripping in --set values.
        c.set("auth_password", "a#b c").unwrap();
        assert_eq!(c.auth_password.as_deref(), Some("a#b c"));
        // What the file would read as a comment is refused, not cut.
        assert!(c.set("auth_password", "a #b").is_err());
        assert_eq!(c.auth_password.as_deref(), Some("a#b c"));
        c.set("auth_password", "").unwrap();
        assert_eq!(c.auth_password, None);

        assert_eq!(
            set_error("port", "abc"),
            "port: expected a number from 0 to 65535, got \"abc\" (from --set)"
        );
        assert_eq!(
            set_error("prot", "1"),
            "prot: unknown key (did you mean `port`?) (from --set)"
        );
        assert_eq!(set_error("", "1"), "missing key before `=` (from --set)");
        assert_eq!(
            set_error("port", "1 # x"),
            "port: expected a number from 0 to 65535, got \"1 # x\" (from --set)"
        );
        let e = Config::default()
            .set("auth_tokens", "a:hunter2,b:hunter2")
            .unwrap_err();
        assert_eq!(
            e,
            ConfigError {
                file: None,
                line: None,
                key: Some("auth_tokens".to_string()),
                message: "items 1 and 2 have the same SECRET (from --set)".to_string(),
            }
        );
        // A failed --set leaves the configuration as it was.
        let before = c.clone();
        assert!(c.set("max_payload", "lots").is_err());
        assert_eq!(c, before);
    }

    #[test]
    fn validate_rules_of_one_key() {
        let with = |f: &dyn Fn(&mut Config)| {
            let mut c = Config::default();
            f(&mut c);
            invalid(&c)
        };
        assert!(
            with(&|c| c.host = "example.com".into()).starts_with("host: expected an IP address")
        );
        assert!(with(&|c| c.path = "ws".into()).starts_with("path: must start with `/`"));
        assert_eq!(
            with(&|c| c.max_connections = 0),
            "max_connections: must be at least 1, is 0"
        );
        assert_eq!(
            with(&|c| c.max_header_bytes = 0),
            "max_header_bytes: must be at least 1, is 0"
        );
        assert_eq!(
            with(&|c| c.max_sessions = 0),
            "max_sessions: must be at least 1, is 0"
        );
        assert_eq!(
            with(&|c| c.max_agents = 0),
            "max_agents: must be at least 1, is 0"
        );
        assert_eq!(
            with(&|c| c.max_clients_per_session = 0),
            "max_clients_per_session: must be at least 1, is 0"
        );
        assert_eq!(
            with(&|c| c.max_sessions_per_client = 0),
            "max_sessions_per_client: must be at least 1, is 0"
        );
        assert_eq!(
            with(&|c| c.agent_ttl_ms = u64::MAX),
            format!("agent_ttl_ms: must be at most {MAX_MS}, is {}", u64::MAX)
        );
        assert_eq!(
            with(&|c| c.cors_origins = vec![String::new()]),
            "cors_origins: item 1 of the list is empty"
        );
        assert_eq!(
            with(&|c| c.auth_tokens = vec![token("", "s")]),
            "auth_tokens: item 1: USER is empty (expected USER:SECRET)"
        );
        assert_eq!(
            with(&|c| c.auth_tokens = vec![token("u", "")]),
            "auth_tokens: item 1: SECRET is empty (expected USER:SECRET)"
        );
        assert!(with(&|c| c.auth_tokens = vec![token("u:v", "s")])
            .starts_with("auth_tokens: item 1: USER must not contain"));
        assert!(with(&|c| c.auth_tokens = vec![token("u", "a,b")])
            .starts_with("auth_tokens: item 1: SECRET must not contain"));
        assert!(with(&|c| c.auth_tokens = vec![token("u", " s")])
            .starts_with("auth_tokens: item 1: SECRET must not contain"));
        assert_eq!(
            with(&|c| c.auth_password = Some(String::new())),
            "auth_password: is empty"
        );
        assert!(with(&|c| c.auth_password = Some("a\nb".into()))
            .starts_with("auth_password: must not contain"));
        assert_eq!(
            with(&|c| c.log_level = log::LevelFilter::Off),
            "log_level: must be one of error, warn, info, debug, trace"
        );
    }

    #[test]
    fn validate_rules_across_keys() {
        let check = |text: &str| Config::parse_str(text, "t").unwrap().validate();
        let message = |text: &str| check(text).unwrap_err().to_string();
        assert_eq!(
            message("max_payload = 1 MiB\nmax_message_size = 2 MiB"),
            "max_message_size: must not exceed max_payload (2097152 > 1048576)"
        );
        assert_eq!(
            check("max_payload = 1 MiB\nmax_message_size = 1 MiB"),
            Ok(())
        );
        assert_eq!(
            message("max_outbound_buffer = 1000\nmax_message_size = 1001"),
            "max_outbound_buffer: must be at least max_message_size (1000 < 1001)"
        );
        assert_eq!(check("max_outbound_buffer = 1 MiB"), Ok(()));
        assert_eq!(
            message("auth_mode = password"),
            "auth_password: is required when auth_mode = password"
        );
        assert_eq!(check("auth_mode = password\nauth_password = pw"), Ok(()));
        assert_eq!(
            message("rate_limit_per_sec = 10\nrate_limit_burst = 0"),
            "rate_limit_burst: must be at least 1 when rate_limit_per_sec is on"
        );
        assert_eq!(
            check("rate_limit_per_sec = 0\nrate_limit_burst = 0"),
            Ok(())
        );
        assert_eq!(
            message("heartbeat_interval_ms = 60000"),
            "heartbeat_interval_ms: must be less than client_timeout_ms when both are on \
             (60000 >= 60000)"
        );
        assert_eq!(
            check("heartbeat_interval_ms = 90000\nclient_timeout_ms = 0"),
            Ok(())
        );
        assert_eq!(
            check("heartbeat_interval_ms = 0\nclient_timeout_ms = 1"),
            Ok(())
        );
        // Token mode without tokens and password mode with tokens are allowed.
        assert_eq!(check("auth_mode = token\nauth_tokens ="), Ok(()));
        assert_eq!(check("auth_mode = none\nauth_password = x"), Ok(()));
    }

    #[test]
    fn file_string_masks_secrets_and_round_trips() {
        let text: String = NON_DEFAULTS
            .iter()
            .map(|(k, v)| format!("{k} = {v}\n"))
            .collect();
        let mut c = parsed(&text);
        c.set("auth_tokens", "alice:top#secret, bob:s:2, carol:third one")
            .unwrap();
        c.set("auth_password", "hunter2#x").unwrap();
        let printed = c.to_file_string();
        for secret in ["top#secret", "s:2", "third one", "hunter2"] {
            assert!(!printed.contains(secret), "{secret} in {printed}");
        }
        assert!(
            printed.contains("\nauth_tokens = alice:***, bob:***, carol:***\n"),
            "{printed}"
        );
        assert!(printed.contains("\nauth_password = ***\n"), "{printed}");
        for key in Config::KEYS {
            let lines = printed
                .lines()
                .filter(|l| l.starts_with(&format!("{key} =")))
                .count();
            assert_eq!(lines, 1, "{key}");
        }
        let restored = printed
            .replace("alice:***", "alice:top#secret")
            .replace("bob:***", "bob:s:2")
            .replace("carol:***", "carol:third one")
            .replace("auth_password = ***", "auth_password = hunter2#x");
        assert_eq!(parsed(&restored), c);

        // Without secrets the output parses back as is.
        for config in [Config::default(), {
            let mut d = Config::default();
            d.cors_origins.clear();
            d.host = "::".into();
            d.log_level = log::LevelFilter::Error;
            d
        }] {
            let printed = config.to_file_string();
            assert_eq!(parsed(&printed), config, "{printed}");
        }
        // Printed secrets are refused rather than taken as the secret `***`.
        assert!(parse(&printed).is_err());
    }

    #[test]
    fn debug_hides_secrets() {
        let c = Config {
            auth_tokens: vec![token("alice", "hunter2")],
            auth_password: Some("swordfish".into()),
            ..Config::default()
        };
        let debug = format!("{c:?} {c:#?}");
        assert!(
            !debug.contains("hunter2") && !debug.contains("swordfish"),
            "{debug}"
        );
        assert!(debug.contains("alice") && debug.contains("***"), "{debug}");
        // An unset password prints as unset, not as a mask.
        assert!(format!("{:?}", Config::default())
            .lines()
            .any(|l| l.trim_end() == "auth_password ="));
    }

    fn scratch_file(name: &str, bytes: &[u8]) -> std::path::PathBuf {
        let dir = std::env::temp_dir().join(format!("gateway-config-test-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join(name);
        std::fs::write(&path, bytes).unwrap();
        path
    }

    #[test]
    fn from_path_names_the_file() {
        let path = scratch_file("ok.conf", b"port = 4242\n");
        assert_eq!(Config::from_path(&path).unwrap().port, 4242);

        let path = scratch_file("bad.conf", b"port = 1\nport = x\n");
        let e = Config::from_path(&path).unwrap_err();
        assert_eq!(e.file.as_deref(), Some(path.display().to_string().as_str()));
        assert_eq!((e.line, e.key.as_deref()), (Some(2), Some("port")));

        let path = scratch_file(
            "latin1.conf",
            b"# ok\nhost = 127.0.0.1\nauth_password = caf\xe9\n",
        );
        let e = Config::from_path(&path).unwrap_err();
        assert_eq!(
            e.to_string(),
            format!("{}:3: the file is not valid UTF-8", path.display())
        );

        let missing = path.with_file_name("does-not-exist.conf");
        let e = Config::from_path(&missing).unwrap_err();
        assert_eq!((e.line, e.key.as_deref()), (None, None));
        assert!(
            e.to_string()
                .starts_with(&format!("{}: cannot read the file: ", missing.display())),
            "{e}"
        );
        if let Some(dir) = path.parent() {
            let _ = std::fs::remove_dir_all(dir);
        }
    }

    #[test]
    fn shipped_gateway_conf() {
        let path = Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/gateway.conf"));
        if !path.exists() {
            return;
        }
        let text = std::fs::read_to_string(path).unwrap();
        let config = Config::from_path(path).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(config.validate(), Ok(()));
        assert_eq!(
            config,
            Config {
                auth_tokens: vec![token("dev", "dev-token-change-me")],
                ..Config::default()
            }
        );
        let lines: Vec<&str> = text.lines().collect();
        for key in Config::KEYS {
            let at: Vec<usize> = (0..lines.len())
                .filter(|&i| {
                    !lines[i].starts_with('#')
                        && lines[i]
                            .split_once('=')
                            .is_some_and(|(k, _)| k.trim() == key)
                })
                .collect();
            assert_eq!(at.len(), 1, "{key} is set once in gateway.conf");
            let comments: Vec<&str> = lines[..at[0]]
                .iter()
                .rev()
                .take_while(|l| l.starts_with('#'))
                .copied()
                .collect();
            assert!(
                comments.iter().any(|l| l.contains("Default:")),
                "{key} has a comment with its default"
            );
        }
        assert_eq!(text.matches("auth_tokens =").count(), 1);
        assert!(text.contains("DEVELOPMENT ONLY"));
        // The sections, in order.
        let sections: Vec<&str> = lines
            .iter()
            .filter_map(|l| l.strip_prefix("# --- ")?.strip_suffix(" ---"))
            .collect();
        assert_eq!(
            sections,
            ["listener", "auth", "origins", "timers", "limits", "logging"]
        );
    }

    #[test]
    fn values_the_file_format_cannot_hold_are_refused() {
        // `,#u` does not start a comment, but the printed `, #u` would.
        assert!(error("auth_tokens = a:b,#u:s")
            .starts_with("gateway.conf:1: auth_tokens: item 2: USER must not contain"));
        assert!(error("cors_origins = http://a,#b")
            .starts_with("gateway.conf:1: cors_origins: item 2: a pattern has no"));
        assert!(set_error("auth_tokens", "u:a #b")
            .starts_with("auth_tokens: item 1: SECRET must not contain"));
        assert!(set_error("auth_password", "#pw").starts_with("auth_password: must not contain"));
        assert!(set_error("auth_password", "a\t#b").starts_with("auth_password: must not contain"));
        assert!(set_error("auth_password", "a\nb").starts_with("auth_password: must not contain"));
        let mut c = Config::default();
        c.set("auth_tokens", "u:#s, v:s#t").unwrap();
        c.set("auth_password", "p#w").unwrap();
        assert_eq!(c.auth_tokens[0].secret, "#s");
    }

    /// The printed configuration with the real secrets written back.
    fn restore_secrets(printed: &str, config: &Config) -> String {
        let tokens: Vec<String> = config
            .auth_tokens
            .iter()
            .map(|t| format!("{}:{}", t.user, t.secret))
            .collect();
        printed
            .lines()
            .map(|line| {
                if line.starts_with("auth_tokens =") {
                    format!("auth_tokens = {}\n", tokens.join(", "))
                } else if line.starts_with("auth_password =") {
                    format!(
                        "auth_password = {}\n",
                        config.auth_password.as_deref().unwrap_or("")
                    )
                } else {
                    format!("{line}\n")
                }
            })
            .collect()
    }

    #[test]
    fn every_valid_configuration_round_trips() {
        let values = [
            "0",
            "1",
            "2",
            "7",
            "65535",
            "100000",
            "31536000000",
            "3 KiB",
            "2MiB",
            "true",
            "false",
            "token",
            "password",
            "none",
            "warn",
            "trace",
            "::1",
            "0.0.0.0",
            "/",
            "/a-b",
            "*",
            "http://a:*, https://b.example",
            "a:b",
            "a:b, c:d#e, f:#g, h:i:j",
            "u:s #t",
            "a:x, b:x",
            "#pw",
            "pw#1",
            "p w",
            "",
            "x y #z",
            "abc",
            "-1",
        ];
        let mut rng = Rng(42);
        let mut checked = 0;
        for _ in 0..3000 {
            let mut config = Config::default();
            for _ in 0..rng.below(12) {
                let key = Config::KEYS[rng.below(Config::KEYS.len())];
                let _ = config.set(key, values[rng.below(values.len())]);
            }
            if config.validate().is_err() {
                continue;
            }
            checked += 1;
            let printed = config.to_file_string();
            let restored = restore_secrets(&printed, &config);
            assert_eq!(parsed(&restored), config, "{restored}");
        }
        assert!(checked > 100, "{checked}");
    }

    /// xorshift64*: a small deterministic generator for the byte-soup test.
    struct Rng(u64);

    impl Rng {
        fn next(&mut self) -> u64 {
            self.0 ^= self.0 >> 12;
            self.0 ^= self.0 << 25;
            self.0 ^= self.0 >> 27;
            self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
        }

        fn below(&mut self, n: usize) -> usize {
            usize::try_from(self.next() % n as u64).unwrap_or(0)
        }
    }

    #[test]
    fn byte_soup_never_panics() {
        let pieces: Vec<&str> = Config::KEYS
            .iter()
            .copied()
            .chain([
                "=",
                " = ",
                " ",
                "\t",
                "#",
                " #",
                "\n",
                "\r\n",
                "\r",
                ",",
                ", ",
                ":",
                "0",
                "1",
                "65535",
                "65536",
                "99999999999999999999999",
                "KiB",
                "MiB",
                " MiB",
                "true",
                "false",
                "token",
                "password",
                "none",
                "info",
                "/",
                "/ws",
                "::1",
                "127.0.0.1",
                "*",
                "***",
                "\u{feff}",
                "é",
                "\u{0}",
                "\u{200b}",
                "user:secret",
                "-",
                "+",
            ])
            .collect();
        let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
        let mut parsed_ok = 0;
        for _ in 0..5000 {
            let mut text = String::new();
            for _ in 0..rng.below(40) {
                if rng.below(8) == 0 {
                    let bytes: Vec<u8> = (0..rng.below(6)).map(|_| rng.next() as u8).collect();
                    text.push_str(&String::from_utf8_lossy(&bytes));
                } else {
                    text.push_str(pieces[rng.below(pieces.len())]);
                }
            }
            if let Ok(config) = Config::parse_str(&text, "soup.conf") {
                parsed_ok += 1;
                let _ = config.validate();
                let _ = Config::parse_str(&config.to_file_string(), "printed");
                let _ = format!("{config:?}");
            }
            let mut config = Config::default();
            let key = pieces[rng.below(pieces.len())];
            let _ = config.set(key, &text);
            let _ = config.validate();
            let _ = config.to_file_string();
        }
        assert!(parsed_ok > 0);
    }
}

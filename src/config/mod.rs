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
mod tests;

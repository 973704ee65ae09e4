//! The table of configuration keys. Each row of [`KEY_TABLE`] says everything about one key:
//! its name, the group it is printed under, how its value is read into its field, how it is
//! printed, and the rule it is checked against. Parsing and `--set` ([`Key::apply`]),
//! [`Config::validate`] ([`Key::check`]) and [`Config::to_file_string`] ([`Key::printed`])
//! read the table; none of them names a key.
//!
//! # Adding a key
//!
//! 1. The field in [`Config`], named as the key, with its doc.
//! 2. Its default in `impl Default for Config`.
//! 3. Its row here, where it goes in the shipped `gateway.conf`. A number names its [`Unit`]
//!    (the syntax and range come with it) and reads and writes its field through `wide` and
//!    `fit`; any other value names its own `parse`, `print` and `check` (from `values.rs`),
//!    and a value that holds a secret is a [`Kind::Secret`], printed by a `mask`.
//! 4. Whether a reload may change it while running (`live`, PROTOCOL section 12): `true` when
//!    the running gateway reads the field afresh for each new input it checks (a credential, a
//!    list, a bound on new input), `false` when it was used to build something at start (the
//!    listener, the timers, the open-file budget). `src/config/reload.rs` reads the flag; a
//!    key that is not live keeps its old value at a reload, with a warning.
//!
//! Then describe it in the shipped `gateway.conf` and in PROTOCOL section 9 (and a live key in
//! the reload list of PROTOCOL section 12), and give it a value other than its default in the
//! tests' `NON_DEFAULTS`; the tests fail until the shipped file sets it and `NON_DEFAULTS` has
//! it.
//!
//! Contract: [`Config::KEYS`] lists the rows' names in table order, which is the order of
//! the shipped `gateway.conf`; rows of one group are adjacent.

use std::ops::RangeInclusive;

use super::cluster::{check_cluster_name, parse_node_id, parse_redis};
use super::tls::parse_file;
use super::values::{
    check_claim_value, check_host, check_jwt_secret, check_log_level, check_origins,
    check_password, check_path, check_tokens, check_users, fit, level_name, masked_password,
    masked_tokens, parse_auth_mode, parse_bool, parse_claim_value, parse_jwt_public_key,
    parse_jwt_secret, parse_log_level, parse_millis, parse_number, parse_origins, parse_password,
    parse_size, parse_tokens, parse_users, print_jwt_public_key, revealed_tokens, wide, SIZE_MIN,
    U32_MAX, USIZE_MAX,
};
use super::{Config, TlsCertificates, TlsPrivateKey, MAX_MS};

/// A file's path as the file format prints it (empty for none).
fn print_path(path: Option<&std::path::Path>) -> String {
    path.map_or(String::new(), |p| p.display().to_string())
}

/// One configuration key.
pub(crate) struct Key {
    /// The key as the file spells it, which is also the name of its [`Config`] field.
    pub(crate) name: &'static str,
    /// The `# group` heading it is printed under.
    pub(crate) group: &'static str,
    /// Whether a reload may change it while the gateway runs (see the module docs).
    pub(crate) live: bool,
    /// How its value is read, printed and checked.
    pub(crate) kind: Kind,
}

/// The value shape of a key.
pub(crate) enum Kind {
    /// A number: read and range-checked as its [`Unit`] says.
    Number {
        unit: Unit,
        /// The field, widened.
        get: fn(&Config) -> u64,
        /// Store a number already in the unit's range.
        set: fn(&mut Config, u64) -> Result<(), String>,
    },
    /// Anything else: parsed, printed and checked by its own functions.
    Other {
        /// Read the trimmed value into the field, checking the key's rule; on error the
        /// field is unchanged.
        parse: fn(&mut Config, &str) -> Result<(), String>,
        /// The value as the file writes it.
        print: fn(&Config) -> String,
        /// The key's rule, the one `parse` applies, for a field set directly.
        check: fn(&Config) -> Result<(), String>,
    },
    /// A value holding a secret: like [`Kind::Other`], but printed by `mask`, with every
    /// secret as [`super::SECRET_MASK`], so the printed line does not read back as it was.
    Secret {
        parse: fn(&mut Config, &str) -> Result<(), String>,
        mask: fn(&Config) -> String,
        check: fn(&Config) -> Result<(), String>,
        /// The value as the file writes it, secrets included: only compared and read back
        /// by a reload ([`Key::value`]), never printed or logged.
        reveal: fn(&Config) -> String,
    },
}

/// How a number is written, and its inclusive range.
pub(crate) enum Unit {
    /// Decimal digits, in the range.
    Count(RangeInclusive<u64>),
    /// Bytes, with an optional `KiB` or `MiB` suffix, from [`SIZE_MIN`] to `usize::MAX`.
    Size,
    /// Milliseconds, from 0 (timer off) to [`MAX_MS`].
    Millis,
}

impl Unit {
    fn range(&self) -> (u64, u64) {
        match self {
            Unit::Count(range) => (*range.start(), *range.end()),
            Unit::Size => (SIZE_MIN, USIZE_MAX),
            Unit::Millis => (0, MAX_MS),
        }
    }

    fn parse(&self, value: &str) -> Result<u64, String> {
        match self {
            Unit::Count(range) => parse_number(value, *range.start(), *range.end()),
            Unit::Size => parse_size(value),
            Unit::Millis => parse_millis(value),
        }
    }
}

impl Key {
    /// The row of `name`, if it is a configuration key (spelled exactly).
    pub(crate) fn find(name: &str) -> Option<&'static Key> {
        KEY_TABLE.iter().find(|key| key.name == name)
    }

    /// Set this key from its trimmed value; the error is the message only.
    pub(crate) fn apply(&self, config: &mut Config, value: &str) -> Result<(), String> {
        match &self.kind {
            Kind::Number { unit, set, .. } => set(config, unit.parse(value)?),
            Kind::Other { parse, .. } | Kind::Secret { parse, .. } => parse(config, value),
        }
    }

    /// The value as [`Config::to_file_string`] prints it.
    pub(crate) fn printed(&self, config: &Config) -> String {
        match &self.kind {
            Kind::Number { get, .. } => get(config).to_string(),
            Kind::Other { print, .. } => print(config),
            Kind::Secret { mask, .. } => mask(config),
        }
    }

    /// The value in the file's syntax, secrets unmasked, so that `apply` of it gives the
    /// field the same value: what a reload compares and carries over. Never printed.
    pub(crate) fn value(&self, config: &Config) -> String {
        match &self.kind {
            Kind::Number { get, .. } => get(config).to_string(),
            Kind::Other { print, .. } => print(config),
            Kind::Secret { reveal, .. } => reveal(config),
        }
    }

    /// This key's rule, for [`Config::validate`]; the error is the message only.
    pub(crate) fn check(&self, config: &Config) -> Result<(), String> {
        match &self.kind {
            Kind::Number { unit, get, .. } => {
                let (min, max) = unit.range();
                let value = get(config);
                if value < min {
                    Err(format!("must be at least {min}, is {value}"))
                } else if value > max {
                    Err(format!("must be at most {max}, is {value}"))
                } else {
                    Ok(())
                }
            }
            Kind::Other { check, .. } | Kind::Secret { check, .. } => check(config),
        }
    }

    /// Whether the key is printed masked.
    #[cfg(test)]
    pub(crate) fn is_secret(&self) -> bool {
        matches!(self.kind, Kind::Secret { .. })
    }
}

impl Config {
    /// Every configuration key, grouped as in the shipped `gateway.conf`: listener, auth,
    /// jwt, access, origins, timers, limits, bounds, logging.
    pub const KEYS: [&'static str; KEY_TABLE.len()] = {
        let mut keys = [""; KEY_TABLE.len()];
        let mut i = 0;
        while i < KEY_TABLE.len() {
            keys[i] = KEY_TABLE[i].name;
            i += 1;
        }
        keys
    };
}

/// Every key, in the order of the shipped `gateway.conf`.
pub(crate) const KEY_TABLE: &[Key] = &[
    Key {
        name: "host",
        group: "listener",
        live: false,
        kind: Kind::Other {
            parse: |c, v| check_host(v).map(|()| c.host = v.to_string()),
            print: |c| c.host.clone(),
            check: |c| check_host(&c.host),
        },
    },
    Key {
        name: "port",
        group: "listener",
        live: false,
        kind: Kind::Number {
            unit: Unit::Count(0..=65535),
            get: |c| wide(c.port),
            set: |c, n| fit(n).map(|n| c.port = n),
        },
    },
    Key {
        name: "path",
        group: "listener",
        live: false,
        kind: Kind::Other {
            parse: |c, v| check_path(v).map(|()| c.path = v.to_string()),
            print: |c| c.path.clone(),
            check: |c| check_path(&c.path),
        },
    },
    Key {
        name: "max_connections",
        group: "listener",
        live: false,
        kind: Kind::Number {
            unit: Unit::Count(1..=USIZE_MAX),
            get: |c| wide(c.max_connections),
            set: |c, n| fit(n).map(|n| c.max_connections = n),
        },
    },
    Key {
        name: "http_endpoints",
        group: "listener",
        live: false,
        kind: Kind::Other {
            parse: |c, v| parse_bool(v).map(|b| c.http_endpoints = b),
            print: |c| c.http_endpoints.to_string(),
            check: |_| Ok(()),
        },
    },
    // The TLS files are read when set, so a reload reads them again: new connections get the
    // new pair. Turning TLS on or off is not live (`reload.rs`).
    Key {
        name: "tls_cert",
        group: "tls",
        live: true,
        kind: Kind::Other {
            parse: |c, v| parse_file(v, |p| TlsCertificates::read(p)).map(|f| c.tls_cert = f),
            print: |c| print_path(c.tls_cert.as_ref().map(TlsCertificates::path)),
            // Checked when read; the pair is checked across keys.
            check: |_| Ok(()),
        },
    },
    Key {
        name: "tls_key",
        group: "tls",
        live: true,
        kind: Kind::Other {
            parse: |c, v| parse_file(v, |p| TlsPrivateKey::read(p)).map(|f| c.tls_key = f),
            print: |c| print_path(c.tls_key.as_ref().map(TlsPrivateKey::path)),
            check: |_| Ok(()),
        },
    },
    Key {
        name: "tls_client_ca",
        group: "tls",
        live: true,
        kind: Kind::Other {
            parse: |c, v| parse_file(v, |p| TlsCertificates::read(p)).map(|f| c.tls_client_ca = f),
            print: |c| print_path(c.tls_client_ca.as_ref().map(TlsCertificates::path)),
            check: |_| Ok(()),
        },
    },
    Key {
        name: "auth_mode",
        group: "auth",
        live: false,
        kind: Kind::Other {
            parse: |c, v| parse_auth_mode(v).map(|mode| c.auth_mode = mode),
            print: |c| c.auth_mode.as_str().to_string(),
            check: |_| Ok(()),
        },
    },
    Key {
        name: "auth_tokens",
        group: "auth",
        live: true,
        kind: Kind::Secret {
            parse: |c, v| parse_tokens(v).map(|tokens| c.auth_tokens = tokens),
            mask: |c| masked_tokens(&c.auth_tokens),
            check: |c| check_tokens(&c.auth_tokens),
            reveal: |c| revealed_tokens(&c.auth_tokens),
        },
    },
    Key {
        name: "auth_password",
        group: "auth",
        live: true,
        kind: Kind::Secret {
            parse: |c, v| parse_password(v).map(|password| c.auth_password = password),
            mask: |c| masked_password(c.auth_password.as_deref()),
            check: |c| c.auth_password.as_deref().map_or(Ok(()), check_password),
            reveal: |c| c.auth_password.clone().unwrap_or_default(),
        },
    },
    Key {
        name: "auth_timeout_ms",
        group: "auth",
        live: false,
        kind: Kind::Number {
            unit: Unit::Millis,
            get: |c| wide(c.auth_timeout_ms),
            set: |c, n| fit(n).map(|n| c.auth_timeout_ms = n),
        },
    },
    Key {
        name: "max_auth_failures",
        group: "auth",
        live: true,
        kind: Kind::Number {
            unit: Unit::Count(0..=U32_MAX),
            get: |c| wide(c.max_auth_failures),
            set: |c, n| fit(n).map(|n| c.max_auth_failures = n),
        },
    },
    Key {
        name: "jwt_secret",
        group: "jwt",
        live: true,
        kind: Kind::Secret {
            parse: |c, v| parse_jwt_secret(v).map(|secret| c.jwt_secret = secret),
            mask: |c| masked_password(c.jwt_secret.as_deref()),
            check: |c| c.jwt_secret.as_deref().map_or(Ok(()), check_jwt_secret),
            reveal: |c| c.jwt_secret.clone().unwrap_or_default(),
        },
    },
    Key {
        name: "jwt_public_key",
        group: "jwt",
        live: true,
        kind: Kind::Other {
            parse: |c, v| parse_jwt_public_key(v).map(|key| c.jwt_public_key = key),
            print: |c| print_jwt_public_key(c.jwt_public_key.as_ref()),
            // A `JwtPublicKey` is checked when it is read: it cannot hold a bad key.
            check: |_| Ok(()),
        },
    },
    Key {
        name: "jwt_issuer",
        group: "jwt",
        live: true,
        kind: Kind::Other {
            parse: |c, v| parse_claim_value(v).map(|iss| c.jwt_issuer = iss),
            print: |c| c.jwt_issuer.clone().unwrap_or_default(),
            check: |c| c.jwt_issuer.as_deref().map_or(Ok(()), check_claim_value),
        },
    },
    Key {
        name: "jwt_audience",
        group: "jwt",
        live: true,
        kind: Kind::Other {
            parse: |c, v| parse_claim_value(v).map(|aud| c.jwt_audience = aud),
            print: |c| c.jwt_audience.clone().unwrap_or_default(),
            check: |c| c.jwt_audience.as_deref().map_or(Ok(()), check_claim_value),
        },
    },
    Key {
        name: "jwt_leeway_ms",
        group: "jwt",
        live: true,
        kind: Kind::Number {
            unit: Unit::Millis,
            get: |c| wide(c.jwt_leeway_ms),
            set: |c, n| fit(n).map(|n| c.jwt_leeway_ms = n),
        },
    },
    Key {
        name: "allow_sessions",
        group: "access",
        live: true,
        kind: Kind::Other {
            parse: |c, v| parse_users(v).map(|users| c.allow_sessions = users),
            print: |c| c.allow_sessions.join(", "),
            check: |c| check_users(&c.allow_sessions),
        },
    },
    Key {
        name: "allow_agents",
        group: "access",
        live: true,
        kind: Kind::Other {
            parse: |c, v| parse_users(v).map(|users| c.allow_agents = users),
            print: |c| c.allow_agents.join(", "),
            check: |c| check_users(&c.allow_agents),
        },
    },
    Key {
        name: "allow_route",
        group: "access",
        live: true,
        kind: Kind::Other {
            parse: |c, v| parse_users(v).map(|users| c.allow_route = users),
            print: |c| c.allow_route.join(", "),
            check: |c| check_users(&c.allow_route),
        },
    },
    Key {
        name: "admin_users",
        group: "access",
        live: true,
        kind: Kind::Other {
            parse: |c, v| parse_users(v).map(|users| c.admin_users = users),
            print: |c| c.admin_users.join(", "),
            check: |c| check_users(&c.admin_users),
        },
    },
    Key {
        name: "cors_origins",
        group: "origins",
        live: true,
        kind: Kind::Other {
            parse: |c, v| parse_origins(v).map(|origins| c.cors_origins = origins),
            print: |c| c.cors_origins.join(", "),
            check: |c| check_origins(&c.cors_origins),
        },
    },
    Key {
        name: "require_origin",
        group: "origins",
        live: true,
        kind: Kind::Other {
            parse: |c, v| parse_bool(v).map(|b| c.require_origin = b),
            print: |c| c.require_origin.to_string(),
            check: |_| Ok(()),
        },
    },
    Key {
        name: "handshake_timeout_ms",
        group: "timers",
        live: false,
        kind: Kind::Number {
            unit: Unit::Millis,
            get: |c| wide(c.handshake_timeout_ms),
            set: |c, n| fit(n).map(|n| c.handshake_timeout_ms = n),
        },
    },
    Key {
        name: "heartbeat_interval_ms",
        group: "timers",
        live: false,
        kind: Kind::Number {
            unit: Unit::Millis,
            get: |c| wide(c.heartbeat_interval_ms),
            set: |c, n| fit(n).map(|n| c.heartbeat_interval_ms = n),
        },
    },
    Key {
        name: "client_timeout_ms",
        group: "timers",
        live: false,
        kind: Kind::Number {
            unit: Unit::Millis,
            get: |c| wide(c.client_timeout_ms),
            set: |c, n| fit(n).map(|n| c.client_timeout_ms = n),
        },
    },
    Key {
        name: "close_timeout_ms",
        group: "timers",
        live: false,
        kind: Kind::Number {
            unit: Unit::Millis,
            get: |c| wide(c.close_timeout_ms),
            set: |c, n| fit(n).map(|n| c.close_timeout_ms = n),
        },
    },
    Key {
        name: "agent_ttl_ms",
        group: "timers",
        live: false,
        kind: Kind::Number {
            unit: Unit::Millis,
            get: |c| wide(c.agent_ttl_ms),
            set: |c, n| fit(n).map(|n| c.agent_ttl_ms = n),
        },
    },
    Key {
        name: "max_header_bytes",
        group: "limits",
        live: true,
        kind: Kind::Number {
            unit: Unit::Size,
            get: |c| wide(c.max_header_bytes),
            set: |c, n| fit(n).map(|n| c.max_header_bytes = n),
        },
    },
    Key {
        name: "max_payload",
        group: "limits",
        live: true,
        kind: Kind::Number {
            unit: Unit::Size,
            get: |c| wide(c.max_payload),
            set: |c, n| fit(n).map(|n| c.max_payload = n),
        },
    },
    Key {
        name: "max_message_size",
        group: "limits",
        live: true,
        kind: Kind::Number {
            unit: Unit::Size,
            get: |c| wide(c.max_message_size),
            set: |c, n| fit(n).map(|n| c.max_message_size = n),
        },
    },
    Key {
        name: "max_outbound_buffer",
        group: "limits",
        live: false,
        kind: Kind::Number {
            unit: Unit::Size,
            get: |c| wide(c.max_outbound_buffer),
            set: |c, n| fit(n).map(|n| c.max_outbound_buffer = n),
        },
    },
    Key {
        name: "max_clients_per_session",
        group: "limits",
        live: true,
        kind: Kind::Number {
            unit: Unit::Count(1..=USIZE_MAX),
            get: |c| wide(c.max_clients_per_session),
            set: |c, n| fit(n).map(|n| c.max_clients_per_session = n),
        },
    },
    Key {
        name: "max_sessions_per_client",
        group: "limits",
        live: true,
        kind: Kind::Number {
            unit: Unit::Count(1..=USIZE_MAX),
            get: |c| wide(c.max_sessions_per_client),
            set: |c, n| fit(n).map(|n| c.max_sessions_per_client = n),
        },
    },
    Key {
        name: "max_sessions",
        group: "limits",
        live: true,
        kind: Kind::Number {
            unit: Unit::Count(1..=USIZE_MAX),
            get: |c| wide(c.max_sessions),
            set: |c, n| fit(n).map(|n| c.max_sessions = n),
        },
    },
    Key {
        name: "max_agents",
        group: "limits",
        live: true,
        kind: Kind::Number {
            unit: Unit::Count(1..=USIZE_MAX),
            get: |c| wide(c.max_agents),
            set: |c, n| fit(n).map(|n| c.max_agents = n),
        },
    },
    Key {
        name: "rate_limit_per_sec",
        group: "limits",
        live: true,
        kind: Kind::Number {
            unit: Unit::Count(0..=U32_MAX),
            get: |c| wide(c.rate_limit_per_sec),
            set: |c, n| fit(n).map(|n| c.rate_limit_per_sec = n),
        },
    },
    Key {
        name: "rate_limit_burst",
        group: "limits",
        live: true,
        kind: Kind::Number {
            unit: Unit::Count(0..=U32_MAX),
            get: |c| wide(c.rate_limit_burst),
            set: |c, n| fit(n).map(|n| c.rate_limit_burst = n),
        },
    },
    Key {
        name: "max_preauth_message_size",
        group: "bounds",
        live: true,
        kind: Kind::Number {
            unit: Unit::Size,
            get: |c| wide(c.max_preauth_message_size),
            set: |c, n| fit(n).map(|n| c.max_preauth_message_size = n),
        },
    },
    Key {
        name: "max_name_bytes",
        group: "bounds",
        live: true,
        kind: Kind::Number {
            unit: Unit::Size,
            get: |c| wide(c.max_name_bytes),
            set: |c, n| fit(n).map(|n| c.max_name_bytes = n),
        },
    },
    Key {
        name: "max_agent_bytes",
        group: "bounds",
        live: true,
        kind: Kind::Number {
            unit: Unit::Size,
            get: |c| wide(c.max_agent_bytes),
            set: |c, n| fit(n).map(|n| c.max_agent_bytes = n),
        },
    },
    Key {
        name: "max_capabilities",
        group: "bounds",
        live: true,
        kind: Kind::Number {
            unit: Unit::Count(1..=USIZE_MAX),
            get: |c| wide(c.max_capabilities),
            set: |c, n| fit(n).map(|n| c.max_capabilities = n),
        },
    },
    Key {
        name: "max_agents_per_user",
        group: "bounds",
        live: true,
        kind: Kind::Number {
            unit: Unit::Count(1..=USIZE_MAX),
            get: |c| wide(c.max_agents_per_user),
            set: |c, n| fit(n).map(|n| c.max_agents_per_user = n),
        },
    },
    Key {
        name: "max_connections_per_user",
        group: "bounds",
        live: true,
        kind: Kind::Number {
            unit: Unit::Count(1..=USIZE_MAX),
            get: |c| wide(c.max_connections_per_user),
            set: |c, n| fit(n).map(|n| c.max_connections_per_user = n),
        },
    },
    Key {
        name: "max_memberships_per_user",
        group: "bounds",
        live: true,
        kind: Kind::Number {
            unit: Unit::Count(1..=USIZE_MAX),
            get: |c| wide(c.max_memberships_per_user),
            set: |c, n| fit(n).map(|n| c.max_memberships_per_user = n),
        },
    },
    Key {
        name: "max_pending_routes_per_user",
        group: "bounds",
        live: true,
        kind: Kind::Number {
            unit: Unit::Count(1..=USIZE_MAX),
            get: |c| wide(c.max_pending_routes_per_user),
            set: |c, n| fit(n).map(|n| c.max_pending_routes_per_user = n),
        },
    },
    Key {
        name: "max_pending_handshakes",
        group: "bounds",
        live: false,
        kind: Kind::Number {
            unit: Unit::Count(1..=USIZE_MAX),
            get: |c| wide(c.max_pending_handshakes),
            set: |c, n| fit(n).map(|n| c.max_pending_handshakes = n),
        },
    },
    Key {
        name: "max_inflight_bytes",
        group: "bounds",
        live: true,
        kind: Kind::Number {
            unit: Unit::Size,
            get: |c| wide(c.max_inflight_bytes),
            set: |c, n| fit(n).map(|n| c.max_inflight_bytes = n),
        },
    },
    Key {
        name: "message_timeout_ms",
        group: "bounds",
        live: false,
        kind: Kind::Number {
            unit: Unit::Millis,
            get: |c| wide(c.message_timeout_ms),
            set: |c, n| fit(n).map(|n| c.message_timeout_ms = n),
        },
    },
    Key {
        name: "max_list_items",
        group: "bounds",
        live: true,
        kind: Kind::Number {
            unit: Unit::Count(1..=USIZE_MAX),
            get: |c| wide(c.max_list_items),
            set: |c, n| fit(n).map(|n| c.max_list_items = n),
        },
    },
    Key {
        name: "cluster_redis",
        group: "cluster",
        live: false,
        kind: Kind::Secret {
            parse: |c, v| parse_redis(v).map(|url| c.cluster_redis = url),
            mask: |c| {
                c.cluster_redis
                    .as_ref()
                    .map_or(String::new(), |u| u.to_string())
            },
            check: |_| Ok(()),
            reveal: |c| {
                c.cluster_redis
                    .as_ref()
                    .map_or(String::new(), |u| u.revealed())
            },
        },
    },
    Key {
        name: "cluster_prefix",
        group: "cluster",
        live: false,
        kind: Kind::Other {
            parse: |c, v| check_cluster_name(v).map(|()| c.cluster_prefix = v.to_string()),
            print: |c| c.cluster_prefix.clone(),
            check: |c| check_cluster_name(&c.cluster_prefix),
        },
    },
    Key {
        name: "node_id",
        group: "cluster",
        live: false,
        kind: Kind::Other {
            parse: |c, v| parse_node_id(v).map(|id| c.node_id = id),
            print: |c| c.node_id.clone().unwrap_or_default(),
            check: |c| c.node_id.as_deref().map_or(Ok(()), check_cluster_name),
        },
    },
    Key {
        name: "reuse_port",
        group: "cluster",
        live: false,
        kind: Kind::Other {
            parse: |c, v| parse_bool(v).map(|b| c.reuse_port = b),
            print: |c| c.reuse_port.to_string(),
            check: |_| Ok(()),
        },
    },
    Key {
        name: "broker_timeout_ms",
        group: "cluster",
        live: false,
        kind: Kind::Number {
            unit: Unit::Count(1..=MAX_MS),
            get: |c| c.broker_timeout_ms,
            set: |c, n| {
                c.broker_timeout_ms = n;
                Ok(())
            },
        },
    },
    Key {
        name: "node_heartbeat_ms",
        group: "cluster",
        live: false,
        kind: Kind::Number {
            unit: Unit::Count(1..=MAX_MS),
            get: |c| c.node_heartbeat_ms,
            set: |c, n| {
                c.node_heartbeat_ms = n;
                Ok(())
            },
        },
    },
    Key {
        name: "node_dead_ms",
        group: "cluster",
        live: false,
        kind: Kind::Number {
            unit: Unit::Count(1..=MAX_MS),
            get: |c| c.node_dead_ms,
            set: |c, n| {
                c.node_dead_ms = n;
                Ok(())
            },
        },
    },
    Key {
        name: "log_level",
        group: "logging",
        live: true,
        kind: Kind::Other {
            parse: |c, v| parse_log_level(v).map(|level| c.log_level = level),
            print: |c| level_name(c.log_level).unwrap_or("off").to_string(),
            check: |c| check_log_level(c.log_level),
        },
    },
];

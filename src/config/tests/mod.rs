//! Tests of the configuration, one file per file of `src/config/`; the helpers they share
//! are here.

mod keys;
mod parse;
mod print;
mod reload;
mod validate;
mod values;

use super::*;
use crate::testkit::Rng;

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

/// A P-256 public key PEM shipped for the tests.
const TLS_CERT: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/tls/cert.pem");
const TLS_KEY: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/tls/key.pem");
const TLS_CA: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/tls/ca.pem");
const EC_PUBLIC_KEY: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/jwt/ec.pub.pem");

/// The fixture key file `name`.
fn fixture_key(name: &str) -> String {
    format!("{}/tests/fixtures/jwt/{name}", env!("CARGO_MANIFEST_DIR"))
}

/// A value for every key that differs from its default.
const NON_DEFAULTS: [(&str, &str); 59] = [
    ("host", "0.0.0.0"),
    ("port", "9000"),
    ("path", "/gateway"),
    ("max_connections", "5"),
    ("http_endpoints", "false"),
    ("tls_cert", TLS_CERT),
    ("tls_key", TLS_KEY),
    ("tls_client_ca", TLS_CA),
    ("auth_mode", "password"),
    ("auth_tokens", "alice:s1, bob:s2"),
    ("auth_password", "pw"),
    ("auth_timeout_ms", "1"),
    ("max_auth_failures", "0"),
    ("jwt_secret", "an-hs256-key-of-thirty-two-bytes#1"),
    ("jwt_public_key", EC_PUBLIC_KEY),
    ("jwt_issuer", "https://issuer.example"),
    ("jwt_audience", "gateway"),
    ("jwt_leeway_ms", "250"),
    ("allow_sessions", "alice, bob"),
    ("allow_agents", ""),
    ("allow_route", "alice"),
    ("admin_users", "ops"),
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
    ("max_preauth_message_size", "4 KiB"),
    ("max_name_bytes", "64"),
    ("max_agent_bytes", "16 KiB"),
    ("max_capabilities", "16"),
    ("max_agents_per_user", "6"),
    ("max_connections_per_user", "7"),
    ("max_memberships_per_user", "8"),
    ("max_pending_routes_per_user", "9"),
    ("max_pending_handshakes", "10"),
    ("max_inflight_bytes", "32 MiB"),
    ("message_timeout_ms", "11"),
    ("max_list_items", "12"),
    ("cluster_redis", "redis://:pw-1@127.0.0.1:6390/1"),
    ("cluster_prefix", "gw-test"),
    ("node_id", "node-7"),
    ("reuse_port", "true"),
    ("broker_timeout_ms", "13"),
    ("node_heartbeat_ms", "14"),
    ("node_dead_ms", "4001"),
    ("log_level", "trace"),
];

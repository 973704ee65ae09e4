//! Checking a whole [`Config`]: the rule of every key, from its row of the key table
//! ([`Key::check`](super::keys::Key::check)), then the rules across keys.
//!
//! Contract: the rule of one key is checked while parsing (so that the error names the
//! line) and again here, for fields set directly; rules across keys are checked only here,
//! after the file and every `--set` have been applied. The first rule broken is the error,
//! keys in table order first.

use super::keys::KEY_TABLE;
use super::{AuthMode, Config, ConfigError};
use crate::core::requests::sessions::smallest_max_message_size;

impl Config {
    /// Check the whole configuration, after the file and every `--set`.
    ///
    /// Rules of one key (also checked while parsing):
    /// - `host` is an IP address (IPv6 without brackets);
    /// - `path` starts with `/` and has no white space, control character, `?` or `#`;
    /// - `max_connections`, every size and every `max_*` count but `max_auth_failures` is at
    ///   least 1; every `_ms` key is at most 365 days;
    /// - each `cors_origins` pattern is non-empty, without white space, control characters,
    ///   `,` or `#`;
    /// - each token's USER is non-empty, without `:`, `,`, control characters or a `#` that
    ///   would start a comment (first, or after white space); each SECRET is non-empty,
    ///   without `,`, control characters or white space followed by `#`; neither has white
    ///   space at its ends; no two tokens share a secret;
    /// - `auth_password`, when set, is non-empty, without control characters, white space at
    ///   its ends or a `#` that would start a comment;
    /// - no secret, nor `auth_password`, is `***` (the mask that `--print-config` prints);
    /// - `jwt_secret` has 32 to 4096 bytes, under the rules of `auth_password`;
    ///   `jwt_issuer` and `jwt_audience`, when set, have at most 1024 bytes and no control
    ///   characters; a [`JwtPublicKey`](super::JwtPublicKey) was checked when it was read;
    /// - `log_level` is not `off`.
    ///
    /// Rules across keys:
    /// - `max_message_size <= max_payload`;
    /// - `max_message_size` is at least the `session_info` reply to a `session_create`
    ///   without metadata whose identifiers are all 128 bytes and whose name is
    ///   `max_name_bytes` (PROTOCOL section 11);
    /// - `max_outbound_buffer >= max_message_size` (one relayed message must fit);
    /// - `auth_mode = password` needs `auth_password`;
    /// - `jwt_secret` and `jwt_public_key` are not both set, and `auth_mode = jwt` needs one;
    /// - `rate_limit_burst >= 1` when `rate_limit_per_sec > 0`;
    /// - `heartbeat_interval_ms < client_timeout_ms` when both are on;
    /// - `node_dead_ms >= 2 * node_heartbeat_ms`, so that one late heartbeat does not make a
    ///   node dead;
    /// - `tls_cert` and `tls_key` are both set or neither, `tls_client_ca` only with them, the
    ///   key is the certificate's and the TLS library can use both (PROTOCOL section 14; a
    ///   build without the `tls` feature refuses any of them).
    ///
    /// `auth_mode = token` without tokens is allowed (the gateway warns at start).
    pub fn validate(&self) -> Result<(), ConfigError> {
        let error = |key: &str, message: String| ConfigError {
            file: None,
            line: None,
            key: Some(key.to_string()),
            message,
        };
        for key in KEY_TABLE {
            key.check(self)
                .map_err(|message| error(key.name, message))?;
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
        let least = smallest_max_message_size(self.max_name_bytes);
        if self.max_message_size < least {
            return Err(error(
                "max_message_size",
                format!(
                    "must be at least {least} with max_name_bytes = {}: the session_info \
                     reply to a session_create without metadata, with 128-byte ids, must fit \
                     (is {})",
                    self.max_name_bytes, self.max_message_size
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
        if self.jwt_secret.is_some() && self.jwt_public_key.is_some() {
            return Err(error(
                "jwt_public_key",
                "cannot be set together with jwt_secret: the key decides the one algorithm \
                 accepted"
                    .to_string(),
            ));
        }
        if self.auth_mode == AuthMode::Jwt
            && self.jwt_secret.is_none()
            && self.jwt_public_key.is_none()
        {
            return Err(error(
                "jwt_secret",
                "auth_mode = jwt needs jwt_secret or jwt_public_key".to_string(),
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
        if self.node_dead_ms < self.node_heartbeat_ms.saturating_mul(2) {
            return Err(error(
                "node_dead_ms",
                format!(
                    "must be at least twice node_heartbeat_ms ({} < 2 * {})",
                    self.node_dead_ms, self.node_heartbeat_ms
                ),
            ));
        }
        if let Err((key, message)) = self.tls_server() {
            return Err(error(key, message));
        }
        Ok(())
    }

    /// The TLS server of `tls_cert`, `tls_key` and `tls_client_ca`: `None` when TLS is off.
    /// The error names the key at fault: one of the pair without the other, a client CA
    /// without a certificate, a key that is not the certificate's, a build without TLS.
    pub(crate) fn tls_server(
        &self,
    ) -> Result<Option<crate::transport::tls::TlsServer>, (&'static str, String)> {
        super::tls::server(
            self.tls_cert.as_ref(),
            self.tls_key.as_ref(),
            self.tls_client_ca.as_ref(),
        )
    }
}

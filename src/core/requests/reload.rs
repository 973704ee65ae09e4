//! A reload (PROTOCOL section 12): the core takes a new configuration while its connections
//! stay open.
//!
//! Contract of [`reload`]:
//! - What changes and what keeps its old value is [`Config::reload`]'s decision; when it
//!   refuses the configuration, nothing changes and the error is logged.
//! - Otherwise, in one call: the verifier is rebuilt with the same hash key, the scope
//!   policy and every table's bounds are replaced; every connection whose credential is no
//!   longer configured is closed with 1008 `Token revoked` (a token: its exact `USER:SECRET`
//!   pair is gone; the password: `auth_password` changed); every other authenticated
//!   connection whose scopes come from the lists (`Via::claimed_scopes` is `None`) gets the new
//!   policy's scopes, checked from its next message; rate buckets take the new rate; the
//!   transport gets its new bounds ([`transport_limits`]).
//! - The log warns once per key that kept its old value and then says `configuration
//!   reloaded` with the names of what changed, never a value; [`Event::ConfigReloaded`]
//!   carries the same names.
//! - Cost: one pass over the tokens (a hash set of the pairs) and one over the connections,
//!   a hash lookup each: no pass over the tokens per connection.

use std::collections::HashSet;
use std::time::Instant;

use crate::app::{Actions, TransportLimits};
use crate::config::reload::Reload;
use crate::config::{AuthMode, Config, ConfigError};
use crate::core::auth::Via;
use crate::core::clients::Client;
use crate::core::events::Event;
use crate::core::ratelimit::TokenBucket;
use crate::core::scopes::Policy;
use crate::core::state::{
    session_limits, user_limits, CoreState, CLOSE_POLICY, REASON_TOKEN_REVOKED,
};
use crate::ws::origin::OriginPolicy;

/// Run with `config`'s live keys from now on; returns the keys that changed. See the module
/// docs.
pub(crate) fn reload(
    state: &mut CoreState,
    config: Config,
    now: Instant,
    out: &mut Actions<Event>,
) -> Result<Vec<&'static str>, ConfigError> {
    let Reload {
        config,
        changed,
        kept,
    } = state.config.reload(config).inspect_err(log_refused)?;
    for key in &kept {
        log::warn!("{key} cannot change while the gateway runs: it keeps its old value");
    }
    let password_changed = config.auth_password != state.config.auth_password;
    state.auth = state.auth.rebuilt(&config);
    state.policy = Policy::new(&config);
    state.sessions.set_limits(session_limits(&config));
    state.agents.set_max_agents(config.max_agents);
    state.users.set_limits(user_limits(&config));
    if changed.contains(&"log_level") {
        log::set_max_level(config.log_level);
    }

    let tokens: HashSet<(u64, &str)> = state.auth.token_pairs().collect();
    let mut revoked = Vec::new();
    for client in state.clients.iter_mut().filter(|c| !c.closing) {
        rebucket(client, &config, now);
        let Some(user) = client.user_id.as_deref() else {
            continue;
        };
        let still_valid = match client.via {
            Via::Open => true,
            Via::Password => !password_changed,
            Via::Token { secret_hash } => tokens.contains(&(secret_hash, user)),
            // A JWT was checked against the key when it was presented; it ends at its `exp`.
            Via::Jwt { .. } => true,
        };
        if !still_valid {
            revoked.push(client.conn);
        } else if client.via.claimed_scopes().is_none() {
            client.scopes = state.policy.scopes_of(user);
        }
    }
    drop(tokens);
    for &conn in &revoked {
        state.close(out, conn, CLOSE_POLICY, REASON_TOKEN_REVOKED);
    }

    out.set_limits(transport_limits(&config));
    state.config = config;
    let names = if changed.is_empty() {
        "nothing changed".to_owned()
    } else {
        format!("changed {}", changed.join(", "))
    };
    if revoked.is_empty() {
        log::info!("configuration reloaded: {names}");
    } else {
        log::info!(
            "configuration reloaded: {names}; {} connections closed (Token revoked)",
            revoked.len()
        );
    }
    out.emit(Event::ConfigReloaded {
        changed: changed.iter().map(|&key| key.to_owned()).collect(),
    });
    Ok(changed)
}

/// Log that a configuration was refused and nothing changed (the configuration error names
/// the file, the line and the key when it has them, and never a secret).
pub(crate) fn log_refused(error: &ConfigError) {
    log::warn!("configuration not reloaded, nothing changed: {error}");
}

/// Give `client` the bucket the configured rate asks for: none when rate limiting is off, a
/// new full one when it was off, else its own with the new rate.
fn rebucket(client: &mut Client, config: &Config, now: Instant) {
    let (rate, burst) = (config.rate_limit_per_sec, config.rate_limit_burst);
    match (&mut client.bucket, rate) {
        (_, 0) => client.bucket = None,
        (Some(bucket), _) => bucket.set_rate(rate, burst),
        (None, _) => client.bucket = Some(TokenBucket::new(rate, burst, now)),
    }
}

/// The transport's bounds in `config` (at start and at each reload). Before a connection
/// authenticates it is held to `max_preauth_message_size` when auth is on.
pub(crate) fn transport_limits(config: &Config) -> TransportLimits {
    TransportLimits {
        origins: OriginPolicy::new(&config.cors_origins, config.require_origin),
        max_header_bytes: config.max_header_bytes,
        max_payload: config.max_payload,
        initial_max_payload: (config.auth_mode != AuthMode::None)
            .then_some(config.max_preauth_message_size),
        max_inflight_bytes: config.max_inflight_bytes,
        // Valid configurations only come here: their TLS server was built once already.
        tls: config
            .tls_server()
            .expect("Bug: a validated configuration has a TLS server"),
    }
}

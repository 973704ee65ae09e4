//! [`MemoryBound`]: the resident memory that no sequence of messages within a
//! configuration's limits can push the gateway past (PROTOCOL section 11), as a sum of named
//! terms, for `gateway --check` and for hosts that size a container.
//!
//! Contract: every term is a count from the configuration times the most one unit of it can
//! hold; the fixed costs per record are the measured overheads the README states (and
//! `benches/hostile.rs` measures), rounded up. Client JSON that is stored is counted at 3
//! times its size (the section 11 rule for stored data). The total adds a quarter for the
//! allocator's fragmentation. The README's "Memory bound" section explains each term.

use std::fmt;

use crate::config::Config;
use crate::core::wire::merge::index_bytes_at_most;

/// Resident memory of the process before any client: the binary, the loop's buffers.
const BASE: u64 = 8 << 20;
/// What one open connection costs with nothing queued: its socket state, slot, decoder,
/// client record and timer entries.
const PER_CONNECTION: u64 = 2 << 10;
/// What one socket in its handshake costs beside its request head.
const PER_HANDSHAKE: u64 = 1 << 10;
/// An agent record beside its stored JSON and names.
const PER_AGENT: u64 = 1 << 10;
/// Index overhead per capability name of an agent.
const PER_CAPABILITY: u64 = 128;
/// A session beside its name and metadata.
const PER_SESSION: u64 = 576;
/// One membership (a member in a session and the session in the member's list).
const PER_MEMBERSHIP: u64 = 128;
/// One pending route beside its request id and the agent id its response is shown from.
const PER_ROUTE: u64 = 256;
/// The longest id the protocol stores (`MAX_ID_BYTES`).
const ID_BYTES: u64 = 128;
/// The largest session metadata (`sessions::MAX_METADATA_BYTES`).
const METADATA_BYTES: u64 = 64 << 10;
/// The index kept beside the largest metadata, for its patches (`merge::Metadata`).
const METADATA_INDEX: u64 = index_bytes_at_most(METADATA_BYTES as usize) as u64;
/// Pending routes over all connections (`routes::DEFAULT_TOTAL`).
const ROUTES_TOTAL: u64 = 65_536;
/// Stored client JSON costs at most this many times its size (section 11).
const STORED_FACTOR: u64 = 3;
/// What one configured token costs beside its text: its entry in the core's token table,
/// its keyed hash and the user's record (about 300 bytes measured with 100 000 tokens).
const PER_TOKEN: u64 = 384;
/// In a cluster (`cluster_redis`): the commands in flight toward Redis (at most 64 MiB and
/// 65 536 of them, each with up to 512 bytes of what waits for its reply) and, on each of
/// the two links, the largest reply or message being read (64 MiB).
const CLUSTER_LINKS: u64 = (64 << 20) + 65_536 * 512 + 2 * (64 << 20);
/// What one entry of a configured list (`allow_*`, `admin_users`, `cors_origins`) costs
/// beside its text.
const PER_LIST_ENTRY: u64 = 64;
/// What one TLS socket can hold beside the rest (PROTOCOL section 14): rustls's state (about
/// 4 KiB measured, counted at 8), the ciphertext to write (`CIPHERTEXT_LIMIT` and one
/// record), and the ciphertext received and kept: a handshake message rustls joins (at most
/// 64 KiB) and the start of a record (at most 16 KiB and its header).
const PER_TLS_SOCKET: u64 =
    (8 << 10) + crate::transport::CIPHERTEXT_LIMIT as u64 + (1 << 10) + (64 << 10) + (17 << 10);

/// The memory bound of a configuration, term by term. See the module docs.
///
/// # Examples
///
/// ```
/// use gateway::{Config, MemoryBound};
///
/// let mut config = Config::default();
/// config.max_connections = 100;
/// let bound = MemoryBound::of(&config);
/// assert!(bound.total_bytes() > 100 * config.max_outbound_buffer as u64);
/// println!("{bound}"); // memory bound: N MiB (base ..., connections ..., ...)
/// ```
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MemoryBound {
    terms: Vec<(&'static str, u64)>,
}

impl MemoryBound {
    /// The bound for `config`.
    pub fn of(config: &Config) -> MemoryBound {
        let c = |n: usize| n as u64;
        let name = c(config.max_name_bytes);
        // A queue may pass `max_outbound_buffer` by one message before the connection is
        // closed as a slow consumer, and its buffer holds up to twice its unsent bytes before
        // it drops the written prefix (`transport/outbox.rs`). The frame arena a turn's
        // fan-outs share is within this too: every byte of it that is kept is queued for some
        // connection (counted in its queue) or in the prefix nobody holds, which is dropped
        // once it is as long as the rest (`transport/reactor/write.rs`).
        let connections = c(config.max_connections)
            * (PER_CONNECTION
                + 2 * (c(config.max_outbound_buffer) + c(config.max_message_size))
                + STORED_FACTOR * (ID_BYTES + name));
        let handshakes =
            c(config.max_pending_handshakes) * (PER_HANDSHAKE + c(config.max_header_bytes));
        let agents = c(config.max_agents)
            * (PER_AGENT
                + STORED_FACTOR * (c(config.max_agent_bytes) + ID_BYTES + name)
                + c(config.max_capabilities) * PER_CAPABILITY);
        let sessions = c(config.max_sessions)
            * (PER_SESSION + METADATA_INDEX + STORED_FACTOR * (ID_BYTES + name + METADATA_BYTES));
        let memberships = (c(config.max_sessions) * c(config.max_clients_per_session))
            .min(c(config.max_connections) * c(config.max_sessions_per_client))
            * PER_MEMBERSHIP;
        let routes = ROUTES_TOTAL * (PER_ROUTE + 2 * ID_BYTES);
        // The configuration itself, twice: a reload builds the new one beside the old.
        let tokens: u64 = config
            .auth_tokens
            .iter()
            .map(|t| PER_TOKEN + STORED_FACTOR * c(t.user.len() + t.secret.len()))
            .sum();
        let lists: u64 = [
            &config.allow_sessions,
            &config.allow_agents,
            &config.allow_route,
            &config.admin_users,
            &config.cors_origins,
        ]
        .iter()
        .flat_map(|list| list.iter())
        .map(|entry| PER_LIST_ENTRY + STORED_FACTOR * c(entry.len()))
        .sum();
        let configuration = 2 * (tokens + lists);
        let mut terms = vec![
            ("base", BASE),
            ("connections", connections),
            ("handshakes", handshakes),
            ("in-flight messages", c(config.max_inflight_bytes)),
            ("agents", agents),
            ("sessions", sessions),
            ("memberships", memberships),
            ("routes", routes),
            ("configuration", configuration),
        ];
        if config.cluster_redis.is_some() {
            // A node mirrors the members (on any node) of the sessions its clients are in,
            // and keeps for a joiner what comes before its reply (at most
            // `max_outbound_buffer`); a mirror's name and metadata are within `sessions`.
            let mirrored = c(config.max_sessions)
                .min(c(config.max_connections) * c(config.max_sessions_per_client))
                * c(config.max_clients_per_session)
                * (PER_MEMBERSHIP + STORED_FACTOR * 2 * ID_BYTES);
            let waiting = c(config.max_connections) * c(config.max_outbound_buffer);
            terms.push(("cluster", CLUSTER_LINKS + mirrored + waiting));
        }
        if config.tls_cert.is_some() {
            let sockets = c(config.max_connections) + c(config.max_pending_handshakes);
            terms.push(("tls", sockets * PER_TLS_SOCKET));
        }
        let sum: u64 = terms.iter().map(|(_, n)| n).sum();
        let mut bound = MemoryBound { terms };
        bound.terms.push(("allocator slack", sum / 4));
        bound
    }

    /// The bound in bytes.
    pub fn total_bytes(&self) -> u64 {
        self.terms.iter().map(|(_, n)| n).sum()
    }

    /// Each term and its bytes, in the order printed.
    pub fn terms(&self) -> &[(&'static str, u64)] {
        &self.terms
    }
}

impl fmt::Display for MemoryBound {
    /// `memory bound: N MiB (base A MiB, connections B MiB, ...)`, rounded up to whole MiB.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mib = |n: u64| n.div_ceil(1 << 20);
        write!(f, "memory bound: {} MiB (", mib(self.total_bytes()))?;
        for (i, (name, bytes)) in self.terms.iter().enumerate() {
            let sep = if i == 0 { "" } else { ", " };
            write!(f, "{sep}{name} {} MiB", mib(*bytes))?;
        }
        f.write_str(")")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_tls_term_counts_every_socket_only_with_tls_on() {
        let mut config = Config {
            max_connections: 100,
            max_pending_handshakes: 10,
            ..Config::default()
        };
        assert!(MemoryBound::of(&config)
            .terms()
            .iter()
            .all(|(n, _)| *n != "tls"));
        let fixture =
            |name: &str| format!("{}/tests/fixtures/tls/{name}", env!("CARGO_MANIFEST_DIR"));
        config.tls_cert = Some(crate::config::TlsCertificates::read(fixture("cert.pem")).unwrap());
        let bound = MemoryBound::of(&config);
        let tls = bound
            .terms()
            .iter()
            .find(|(n, _)| *n == "tls")
            .map(|(_, b)| *b);
        assert_eq!(tls, Some(110 * PER_TLS_SOCKET));
        assert_eq!(PER_TLS_SOCKET, 106 << 10, "the README's figure");
    }

    #[test]
    fn the_configuration_term_counts_tokens_twice_for_a_reload() {
        let term = |config: &Config| {
            MemoryBound::of(config)
                .terms()
                .iter()
                .find(|(n, _)| *n == "configuration")
                .map(|(_, b)| *b)
        };
        let mut config = Config::default();
        let before = term(&config).expect("a configuration term");
        config.auth_tokens = (0..1000)
            .map(|i| crate::config::AuthToken {
                user: format!("user-{i:05}"),
                secret: "s".repeat(30),
            })
            .collect();
        let grown = term(&config).unwrap() - before;
        assert_eq!(grown, 2 * 1000 * (PER_TOKEN + STORED_FACTOR * 40));
    }

    #[test]
    fn a_cluster_adds_its_links_mirrors_and_joins_waiting() {
        let mut config = Config {
            max_connections: 10,
            max_sessions: 5,
            max_sessions_per_client: 2,
            max_clients_per_session: 3,
            max_outbound_buffer: 1000,
            ..Config::default()
        };
        assert!(MemoryBound::of(&config)
            .terms()
            .iter()
            .all(|(n, _)| *n != "cluster"));
        config.cluster_redis =
            Some(crate::config::RedisUrl::parse("redis://127.0.0.1:6379").unwrap());
        let cluster = MemoryBound::of(&config)
            .terms()
            .iter()
            .find(|(n, _)| *n == "cluster")
            .map(|(_, b)| *b);
        let mirrored = 5 * 3 * (PER_MEMBERSHIP + STORED_FACTOR * 2 * ID_BYTES);
        assert_eq!(cluster, Some(CLUSTER_LINKS + mirrored + 10 * 1000));
    }
}

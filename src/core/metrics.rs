//! The core's counters and the text of `GET /health` and `GET /metrics` (PROTOCOL section 1).
//!
//! Contract:
//! - Message types are counted under a fixed label set, [`TYPE_LABELS`]: every built-in
//!   type by name, `other` for any other type (custom and unknown types alike) and `invalid`
//!   for incoming messages whose type could not be read. A client cannot add a label, so the
//!   cardinality of every metric is fixed.
//! - [`Metrics::render`] writes the Prometheus text exposition format (version 0.0.4): a
//!   `# HELP` and a `# TYPE` line per metric, every name starting with `gateway_`, every
//!   label of a fixed set present even when its count is zero.
//! - Counters only grow; gauges are passed in when rendering.

use std::fmt::Write as _;

use serde::Serialize;

use crate::app::{CloseReason, TransportStats};
use crate::cluster::broker::RoundTrips;
use crate::core::errors::ErrorCode;

/// Every label a message type is counted under.
pub(crate) const TYPE_LABELS: [&str; 36] = [
    "ping",
    "pong",
    "auth",
    "auth_success",
    "connect",
    "hello_ok",
    "session_create",
    "session_join",
    "session_leave",
    "session_patch",
    "session_info",
    "presence",
    "presence_query",
    "presence_list",
    "chat",
    "chat_stream",
    "chat_complete",
    "tool_start",
    "tool_update",
    "tool_result",
    "broadcast",
    "route_request",
    "route_response",
    "agent_register",
    "agent_unregister",
    "agent_heartbeat",
    "agent_query",
    "agent_info",
    "agent_list",
    "error",
    "admin_kick",
    "admin_result",
    "admin_clients",
    "client_list",
    "other",
    "invalid",
];

/// Index of the `other` label, the one after every type's own.
pub(crate) const OTHER: usize = TYPE_LABELS.len() - 2;
/// Index of the `invalid` label, the last.
pub(crate) const INVALID: usize = TYPE_LABELS.len() - 1;
const USED_LABELS: usize = TYPE_LABELS.len();

/// The label index of a message type: its own for a built-in type, [`OTHER`] for any other.
///
/// A scan of [`TYPE_LABELS`] in order: the most frequent types (`ping`, `pong`) come first,
/// and most comparisons stop at the length.
pub(crate) fn type_label(msg_type: &str) -> usize {
    TYPE_LABELS[..OTHER]
        .iter()
        .position(|label| *label == msg_type)
        .unwrap_or(OTHER)
}

/// Gauges of the core, sampled when rendering.
#[derive(Clone, Debug, Default)]
pub(crate) struct CoreGauges {
    /// Connections known to the core.
    pub clients: usize,
    /// Authenticated connections.
    pub authenticated: usize,
    /// Sessions.
    pub sessions: usize,
    /// Agents stored, offline ones included.
    pub agents: usize,
    /// Agents online or busy.
    pub agents_online: usize,
    /// Pending route requests.
    pub routes_pending: usize,
    /// The `stateVersion` of `hello_ok`.
    pub state_version: u64,
    /// Ms since the core started.
    pub uptime_ms: u64,
    /// A cluster node's figures; `None` for a standalone gateway.
    pub cluster: Option<ClusterGauges>,
}

/// The figures of a cluster node (PROTOCOL section 13).
#[derive(Clone, Debug)]
pub(crate) struct ClusterGauges {
    /// Live nodes as of the last heartbeat.
    pub nodes: u64,
    /// Whether cluster requests are served.
    pub broker_up: bool,
    /// Commands sent to Redis.
    pub commands: u64,
    /// Broker links lost (errors, timeouts, failed probes).
    pub errors: u64,
    /// Round trips of the commands answered.
    pub round_trips: RoundTrips,
}

/// Counters kept by the core.
#[derive(Clone, Debug)]
pub(crate) struct Metrics {
    messages_in: [u64; USED_LABELS],
    messages_out: [u64; USED_LABELS],
    errors: [u64; ErrorCode::ALL.len()],
}

impl Metrics {
    /// New counters, all zero.
    pub(crate) fn new() -> Self {
        Metrics {
            messages_in: [0; USED_LABELS],
            messages_out: [0; USED_LABELS],
            errors: [0; ErrorCode::ALL.len()],
        }
    }

    /// Count one incoming message under label index `label`.
    pub(crate) fn count_in(&mut self, label: usize) {
        if let Some(n) = self.messages_in.get_mut(label) {
            *n += 1;
        }
    }

    /// Count `n` outgoing deliveries under label index `label`.
    pub(crate) fn count_out(&mut self, label: usize, n: u64) {
        if let Some(count) = self.messages_out.get_mut(label) {
            *count += n;
        }
    }

    /// Count one error sent with `code`.
    pub(crate) fn count_error(&mut self, code: ErrorCode) {
        self.errors[code.index()] += 1;
    }

    /// Outgoing deliveries counted under a label index.
    #[cfg(test)]
    pub(crate) fn messages_out(&self, label: usize) -> u64 {
        self.messages_out.get(label).copied().unwrap_or(0)
    }

    /// Errors sent with `code`.
    #[cfg(test)]
    pub(crate) fn errors(&self, code: ErrorCode) -> u64 {
        self.errors[code.index()]
    }

    /// The `/metrics` body.
    pub(crate) fn render(&self, stats: &TransportStats, core: &CoreGauges) -> String {
        let mut out = String::with_capacity(8192);
        let gauge = |out: &mut String, name: &str, help: &str, value: u64| {
            header(out, name, help, "gauge");
            let _ = writeln!(out, "{name} {value}");
        };
        let counter = |out: &mut String, name: &str, help: &str, value: u64| {
            header(out, name, help, "counter");
            let _ = writeln!(out, "{name} {value}");
        };
        gauge(
            &mut out,
            "gateway_connections_open",
            "Open WebSocket connections.",
            stats.open_connections,
        );
        gauge(
            &mut out,
            "gateway_sockets_open",
            "Accepted sockets in any state (handshaking, open, closing).",
            stats.sockets,
        );
        gauge(
            &mut out,
            "gateway_clients",
            "Connections known to the protocol core.",
            core.clients as u64,
        );
        gauge(
            &mut out,
            "gateway_clients_authenticated",
            "Authenticated connections.",
            core.authenticated as u64,
        );
        gauge(
            &mut out,
            "gateway_sessions",
            "Sessions.",
            core.sessions as u64,
        );
        gauge(
            &mut out,
            "gateway_agents",
            "Registered agents, offline ones included.",
            core.agents as u64,
        );
        gauge(
            &mut out,
            "gateway_agents_online",
            "Agents online or busy.",
            core.agents_online as u64,
        );
        gauge(
            &mut out,
            "gateway_routes_pending",
            "Route requests delivered and not yet answered.",
            core.routes_pending as u64,
        );
        gauge(
            &mut out,
            "gateway_state_version",
            "Changes to sessions and agents since start.",
            core.state_version,
        );
        if let Some(cluster) = &core.cluster {
            render_cluster(&mut out, cluster);
        }
        gauge(
            &mut out,
            "gateway_output_queued_bytes",
            "Bytes queued for output and not yet written.",
            stats.bytes_queued,
        );
        gauge(
            &mut out,
            "gateway_timers_pending",
            "Entries in the timer wheel, including those of closed connections not yet due.",
            stats.timers_pending,
        );
        gauge(
            &mut out,
            "gateway_handshakes_pending",
            "Sockets accepted and not yet upgraded, or refused and lingering.",
            stats.pending_handshakes,
        );
        gauge(
            &mut out,
            "gateway_inflight_bytes",
            "Bytes of partly received messages over all connections.",
            stats.inflight_bytes,
        );
        gauge(
            &mut out,
            "gateway_preauth_inflight_bytes",
            "The part of gateway_inflight_bytes held by unauthenticated connections.",
            stats.preauth_inflight_bytes,
        );
        gauge(
            &mut out,
            "gateway_events_queued_bytes",
            "Bytes of the events waiting in the host's queue.",
            stats.events_queued_bytes,
        );
        gauge(
            &mut out,
            "gateway_uptime_seconds",
            "Seconds since the gateway started.",
            core.uptime_ms / 1000,
        );
        counter(
            &mut out,
            "gateway_connections_accepted_total",
            "WebSocket connections accepted.",
            stats.connections_accepted,
        );
        header(
            &mut out,
            "gateway_connections_closed_total",
            "WebSocket connections closed, by reason.",
            "counter",
        );
        for (label, value) in CloseReason::LABELS.iter().zip(stats.connections_closed) {
            let _ = writeln!(
                out,
                "gateway_connections_closed_total{{reason=\"{label}\"}} {value}"
            );
        }
        header(
            &mut out,
            "gateway_handshake_refusals_total",
            "Refused upgrades and plain HTTP answers other than 200, by status.",
            "counter",
        );
        let mut refusals = stats.handshake_refusals.clone();
        refusals.sort_unstable();
        for (status, value) in refusals {
            let _ = writeln!(
                out,
                "gateway_handshake_refusals_total{{status=\"{status}\"}} {value}"
            );
        }
        counter(
            &mut out,
            "gateway_handshake_timeouts_total",
            "Handshakes that timed out.",
            stats.handshake_timeouts,
        );
        counter(
            &mut out,
            "gateway_turn_share_waits_total",
            "Times a connection waited a loop turn because its user had spent its share of it.",
            stats.turn_share_waits,
        );
        counter(
            &mut out,
            "gateway_handshakes_shed_total",
            "Sockets closed at accept because max_pending_handshakes were pending.",
            stats.handshakes_shed,
        );
        for (name, help, counts) in [
            (
                "gateway_messages_in_total",
                "Messages received, by type (other: any type not built in; invalid: unreadable).",
                &self.messages_in,
            ),
            (
                "gateway_messages_out_total",
                "Messages sent, one per recipient, by type (other: any type not built in).",
                &self.messages_out,
            ),
        ] {
            header(&mut out, name, help, "counter");
            for (label, value) in TYPE_LABELS.iter().zip(counts.iter()) {
                let _ = writeln!(out, "{name}{{type=\"{label}\"}} {value}");
            }
        }
        counter(
            &mut out,
            "gateway_bytes_in_total",
            "Bytes read from sockets.",
            stats.bytes_in,
        );
        counter(
            &mut out,
            "gateway_bytes_out_total",
            "Bytes written to sockets.",
            stats.bytes_out,
        );
        header(
            &mut out,
            "gateway_errors_total",
            "Error messages sent, by code.",
            "counter",
        );
        for code in ErrorCode::ALL {
            let _ = writeln!(
                out,
                "gateway_errors_total{{code=\"{}\"}} {}",
                code.as_str(),
                self.errors[code.index()]
            );
        }
        counter(
            &mut out,
            "gateway_events_dropped_total",
            "Events dropped because the host's event queue was full.",
            stats.events_dropped,
        );
        out
    }
}

fn header(out: &mut String, name: &str, help: &str, kind: &str) {
    let _ = writeln!(out, "# HELP {name} {help}");
    let _ = writeln!(out, "# TYPE {name} {kind}");
}

/// The cluster's series: nodes, broker state, commands, errors and the round trips.
fn render_cluster(out: &mut String, cluster: &ClusterGauges) {
    header(
        out,
        "gateway_cluster_nodes",
        "Live nodes of the cluster, as of the last heartbeat.",
        "gauge",
    );
    let _ = writeln!(out, "gateway_cluster_nodes {}", cluster.nodes);
    header(
        out,
        "gateway_broker_up",
        "1 when cluster requests are served, else 0.",
        "gauge",
    );
    let _ = writeln!(out, "gateway_broker_up {}", u8::from(cluster.broker_up));
    header(
        out,
        "gateway_broker_commands_total",
        "Commands sent to Redis.",
        "counter",
    );
    let _ = writeln!(out, "gateway_broker_commands_total {}", cluster.commands);
    header(
        out,
        "gateway_broker_errors_total",
        "Broker links lost: errors, timeouts and subscriber probes that did not come back.",
        "counter",
    );
    let _ = writeln!(out, "gateway_broker_errors_total {}", cluster.errors);
    let name = "gateway_broker_rtt_seconds";
    header(
        out,
        name,
        "Round trips of the commands Redis answered.",
        "histogram",
    );
    let rtt = &cluster.round_trips;
    let mut total = 0;
    for (bound, count) in RoundTrips::BOUNDS.iter().zip(rtt.counts) {
        total += count;
        let _ = writeln!(out, "{name}_bucket{{le=\"{bound}\"}} {total}");
    }
    total += rtt.counts[RoundTrips::BOUNDS.len()];
    let _ = writeln!(out, "{name}_bucket{{le=\"+Inf\"}} {total}");
    let _ = writeln!(out, "{name}_sum {}", rtt.sum);
    let _ = writeln!(out, "{name}_count {total}");
}

/// The `/health` body.
#[derive(Clone, Debug, Serialize)]
pub(crate) struct Health {
    /// `ok`, or `degraded` when a cluster node's broker is unreachable.
    pub status: &'static str,
    /// Always `gateway`.
    pub service: &'static str,
    /// Now, ms since the Unix epoch.
    pub timestamp: u64,
    /// Ms since start.
    pub uptime: u64,
    /// Open WebSocket connections.
    pub clients: usize,
    /// Sessions.
    pub sessions: usize,
    /// Agents stored.
    pub agents: usize,
    /// A cluster node's view of the cluster; absent for a standalone gateway.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cluster: Option<ClusterHealth>,
}

/// The `cluster` object of `/health` (PROTOCOL section 13).
#[derive(Clone, Debug, Serialize)]
pub(crate) struct ClusterHealth {
    /// This node's name.
    #[serde(rename = "nodeId")]
    pub node_id: String,
    /// Live nodes, as of the last heartbeat.
    pub nodes: u64,
    /// `ok` or `down`.
    pub broker: &'static str,
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::wire::MsgKind;

    #[test]
    fn labels_are_fixed() {
        assert_eq!(TYPE_LABELS[OTHER], "other");
        assert_eq!(TYPE_LABELS[INVALID], "invalid");
        assert_eq!(type_label("ping"), 0);
        assert_eq!(type_label("error"), 29);
        assert_eq!(type_label("my_custom"), OTHER);
        assert_eq!(type_label("invalid"), OTHER);
        assert_eq!(type_label(""), OTHER);
        for (i, label) in TYPE_LABELS[..OTHER].iter().enumerate() {
            assert_eq!(type_label(label), i);
        }
    }

    #[test]
    fn every_built_in_kind_has_its_own_label() {
        for (msg_type, _) in MsgKind::TYPES {
            assert_eq!(TYPE_LABELS[type_label(msg_type)], msg_type);
        }
        let distinct: std::collections::HashSet<_> = TYPE_LABELS.iter().collect();
        assert_eq!(distinct.len(), TYPE_LABELS.len(), "a label is listed twice");
    }

    #[test]
    fn renders_every_metric_with_help_and_type() {
        let mut m = Metrics::new();
        m.count_in(type_label("ping"));
        m.count_out(type_label("pong"), 3);
        m.count_error(ErrorCode::RateLimited);
        let stats = TransportStats {
            open_connections: 4,
            connections_closed: [1, 2, 3, 4, 5, 6, 7],
            handshake_refusals: vec![(503, 2), (403, 1)],
            bytes_queued: 99,
            timers_pending: 7,
            ..TransportStats::default()
        };
        let text = m.render(
            &stats,
            &CoreGauges {
                sessions: 2,
                ..CoreGauges::default()
            },
        );
        for line in [
            "gateway_connections_open 4",
            "gateway_sessions 2",
            "gateway_output_queued_bytes 99",
            "gateway_timers_pending 7",
            "gateway_connections_closed_total{reason=\"slow_consumer\"} 5",
            "gateway_handshake_refusals_total{status=\"403\"} 1",
            "gateway_messages_in_total{type=\"ping\"} 1",
            "gateway_messages_in_total{type=\"invalid\"} 0",
            "gateway_messages_out_total{type=\"pong\"} 3",
            "gateway_errors_total{code=\"RATE_LIMITED\"} 1",
            "gateway_events_dropped_total 0",
        ] {
            assert!(text.lines().any(|l| l == line), "missing {line}");
        }
        let mut declared = std::collections::HashSet::new();
        for line in text.lines() {
            if let Some(rest) = line.strip_prefix("# TYPE ") {
                declared.insert(rest.split(' ').next().unwrap().to_owned());
            } else if !line.starts_with("# HELP ") {
                let name = line.split(['{', ' ']).next().unwrap();
                assert!(name.starts_with("gateway_"), "{line}");
                assert!(declared.contains(name), "no TYPE for {line}");
            }
        }
    }
}

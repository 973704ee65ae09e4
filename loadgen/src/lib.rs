//! The load generator's engine, behind its binary (`src/main.rs`) and `benches/gateway.rs`.
//!
//! One thread, one `mio::Poll`, many nonblocking connections to any `ws://` URL that speaks the
//! gateway's JSON protocol (the gateway itself, or a peer server doing the same work). It has
//! its own small client-side framing: masked client frames out; unmasked server frames in,
//! fragmented messages reassembled, server Pings answered with Pongs, a server Close answered
//! and reported.
//!
//! Every connection goes through the protocol's opening: HTTP upgrade (the `Sec-WebSocket-Accept`
//! is checked), the welcome `session_info`, `auth` with the token, `auth_success` ([`Engine`]).
//! Then the modes ([`run_latency`], [`run_relay_latency`], [`run_throughput`], [`run_fanout`],
//! [`run_fanout_across`], [`run_idle`]) drive it;
//! [`run_floor`] with [`spawn_echo`] is the raw TCP ping-pong floor the latency is compared to.
//!
//! The hot paths read JSON with a small top-level field scanner ([`json_field`]), not a full
//! parse, so that the client costs as little CPU as possible on a machine it shares with the
//! server; the same scanner is used against every server, so comparisons stay fair.
//!
//! Server CPU and memory come from `/proc` ([`Probe`]); what a bench prints about its machine
//! from [`loadavg`] and [`cpu_model`].

use std::time::Duration;

mod engine;
mod fanout;
mod floor;
mod framing;
mod idle;
mod json;
mod latency;
mod machine;
mod probe;
mod relay;
mod results;
mod throughput;
mod url;

pub use engine::{Conn, Engine, Inbox, Phase};
pub use fanout::{run_fanout, run_fanout_across, FanoutResult};
pub use floor::{run_floor, spawn_echo};
pub use idle::{run_idle, IdleResult};
pub use json::{json_field, json_str, json_u64, push_u64};
pub use latency::run_latency;
pub use machine::{cpu_model, loadavg, raise_fd_limit};
pub use probe::{clock_ticks, current_tid, pin, rss_anon_kib, rss_kib, Probe};
pub use relay::run_relay_latency;
pub use results::{median, round3, LatencyResult};
pub use throughput::{run_throughput, ThroughputResult};
pub use url::{Target, WsUrl};

/// The token of the shipped development configuration.
pub const DEFAULT_TOKEN: &str = "dev-token-change-me";
/// Published figure, for context only: uWebSockets bare echo, server CPU per message.
pub const REF_UWS_ECHO_US: f64 = 4.8;
/// Published figure, for context only: a Node `ws` server doing the same JSON work.
pub const REF_NODE_WS_US: f64 = 9.5;

/// How much one `read` takes at most.
const READ_CHUNK: usize = 64 * 1024;
/// How long the opening (connect, upgrade, welcome, auth) of a batch may take at most.
const SETUP_TIMEOUT: Duration = Duration::from_secs(120);
/// How long one reply may take at most before a mode gives up.
const REPLY_TIMEOUT: Duration = Duration::from_secs(10);

//! The cluster layer: several gateway processes acting as one through a shared Redis
//! (docs/PROTOCOL.md section 13). Shared state lives in Redis, changed by short Lua scripts;
//! session, node and control events travel over Redis pub/sub.
//!
//! Its wire format is RESP2, spoken here by a sans-IO codec: [`resp_encode`] appends commands
//! to an outbox, [`resp_decode`] reads replies incrementally from whatever bytes have arrived,
//! [`resp_push`] recognizes the pub/sub pushes among them, and [`resp`] has the types they
//! share. [`broker`] is the Redis client built on it (two links, handshakes, timeouts,
//! reconnects), and [`scripts`] holds every Lua script with the layout of the keys. Nothing in
//! this folder names a socket or a clock (`.ci/sans-io`): the connections to Redis are the
//! transport's outbound links, driven by the poll loop, which hands their bytes to this code
//! as it does with WebSocket frames; the core (`src/core/cluster`) decides what to ask.

// The codec's helpers for tests and the fuzz target (a slice decoder, pipelines, the
// decoder's counters) are not used by the broker.
#![cfg_attr(not(test), allow(dead_code))]

pub(crate) mod broker;
pub(crate) mod resp;
pub(crate) mod resp_decode;
pub(crate) mod resp_encode;
pub(crate) mod resp_push;
pub(crate) mod scripts;

#[cfg(test)]
mod tests;

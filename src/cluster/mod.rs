//! The cluster layer: several gateway processes acting as one through a shared Redis
//! (docs/PROTOCOL.md section 13). Shared state lives in Redis, changed by short Lua scripts;
//! session, node and control events travel over Redis pub/sub.
//!
//! Its wire format is RESP2, spoken here by a sans-IO codec: [`resp_encode`] appends commands
//! to an outbox, [`resp_decode`] reads replies incrementally from whatever bytes have arrived,
//! [`resp_push`] recognizes the pub/sub pushes among them, and [`resp`] has the types they
//! share. Nothing in this folder names a socket or a clock (`.ci/sans-io`): the connection to
//! Redis is driven by the poll loop, which hands its bytes to this codec, as it does with
//! WebSocket frames.
// Nothing outside the tests drives the codec yet; the broker link that will is not built.
#![cfg_attr(not(test), allow(dead_code))]

pub(crate) mod broker;
pub(crate) mod resp;
pub(crate) mod resp_decode;
pub(crate) mod resp_encode;
pub(crate) mod resp_push;
pub(crate) mod scripts;

#[cfg(test)]
mod tests;

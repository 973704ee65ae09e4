//! `gateway`: a single-threaded WebSocket gateway, the control plane between AI agents, tools
//! and user interfaces.
//!
//! Clients connect over WebSocket, authenticate, join sessions, broadcast inside them,
//! register agents with capabilities, and route requests to a client, an agent, or any agent
//! that has a capability. The wire protocol is described in `docs/PROTOCOL.md`.
//!
//! Everything runs on one thread, in one `mio` poll loop, with no async runtime: a program
//! that is not async can embed it and drive it from its own loop.
//!
//! ```no_run
//! use gateway::{Config, Gateway};
//! use std::time::Duration;
//!
//! let mut config = Config::default();
//! config.port = 0; // any free port
//! let mut gw = Gateway::bind(config)?;
//! println!("listening on {}", gw.url());
//! let handle = gw.handle(); // Clone + Send: use it from any thread
//! std::thread::spawn(move || {
//!     let _ = handle.broadcast_to_session("room-1", serde_json::json!({"hello": 1}));
//! });
//! // Either give the gateway this thread until it shuts down: `gw.run()?;`
//! // or drive it from a loop of your own:
//! while !gw.is_stopped() {
//!     gw.poll(Some(Duration::from_millis(5)))?;
//!     while let Some(event) = gw.next_event() {
//!         println!("{event:?}");
//!     }
//!     # gw.shutdown();
//! }
//! # Ok::<(), gateway::Error>(())
//! ```
//!
//! # The API
//!
//! At the root, what a host needs: [`Gateway`] and [`GatewayHandle`] to run the gateway,
//! [`Config`] (with [`AuthMode`], [`AuthToken`], [`JwtPublicKey`], [`ConfigError`]) to configure it, [`Event`]
//! to hear what happens, [`HandlerContext`], [`Message`] and [`ErrorCode`] for custom message
//! types, [`Error`] and [`HandleError`] for what can fail, and [`MemoryBound`] for what a
//! configuration may cost.
//!
//! [`transport`] is the "bring your own core" API: the reactor drives any [`transport::App`],
//! with no knowledge of the gateway protocol. The gateway's protocol core is one such app;
//! `examples/echo_server.rs` is another. Everything else is internal.
#![deny(missing_docs)]
#![warn(unreachable_pub)]

mod app;
pub(crate) mod cluster;
mod config;
mod core;
mod error;
#[cfg(any(fuzzing, test))]
pub mod fuzzing;
mod gateway;
mod memory;
pub mod transport;
mod ws;

#[cfg(test)]
mod testkit;

pub use crate::config::{
    AuthMode, AuthToken, Config, ConfigError, JwtPublicKey, RedisUrl, TlsCertificates,
    TlsPrivateKey,
};
pub use crate::core::{ErrorCode, Event, HandlerContext, Message};
pub use crate::error::Error;
pub use crate::gateway::{Gateway, GatewayHandle, EVENT_QUEUE, EVENT_QUEUE_BYTES};
pub use crate::memory::MemoryBound;
pub use crate::transport::HandleError;

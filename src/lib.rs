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
//! The transport ([`transport::Reactor`]) does not depend on the gateway protocol: it drives any
//! [`app::App`]. The gateway's protocol ([`core`]) is one such app; `examples/echo_server.rs`
//! is another.
#![deny(missing_docs)]

pub mod app;
pub mod config;
pub mod core;
pub mod error;
#[cfg(any(fuzzing, test))]
pub mod fuzzing;
pub mod gateway;
pub mod transport;
pub mod ws;

#[cfg(test)]
pub(crate) mod testkit;

pub use crate::config::Config;
pub use crate::error::Error;
pub use crate::gateway::{Gateway, GatewayHandle};
pub use crate::transport::handle::HandleError;

//! The protocol brain: everything from the welcome message on, as a sans-IO [`App`]
//! ([`GatewayCore`]) that the reactor drives.
//!
//! Nothing under this module does I/O, imports `mio` or `std::net`, or reads the clock: time
//! comes in as `now: Instant`, and wall-clock milliseconds are derived from the base given to
//! [`GatewayCore::new`]. Each submodule has one job:
//!
//! - [`protocol`], [`json_scan`], [`payloads`], [`wire`]: reading and writing the wire format;
//! - [`clients`], [`sessions`], [`agents`], [`routes`], [`ratelimit`], [`auth`], [`timers`]:
//!   state and decisions, each testable alone;
//! - [`dispatch`]: the [`App`] implementation and the order of checks; `conn_ops`,
//!   `session_ops`, `agent_ops`, `route_ops` hold the request handlers; [`handlers`] the
//!   embedding program's custom handlers; [`outbound`] the sending; [`metrics`] `/health`
//!   and `/metrics`; [`events`] the commands and events exchanged with the host.
//!
//! [`App`]: crate::app::App

mod agent_ops;
pub mod agents;
pub mod auth;
pub mod clients;
mod conn_ops;
pub mod dispatch;
pub mod events;
pub mod handlers;
pub mod json_scan;
pub mod metrics;
pub mod outbound;
pub mod payloads;
pub mod protocol;
pub mod ratelimit;
mod route_ops;
pub mod routes;
mod session_ops;
pub mod sessions;
pub mod timers;
pub mod wire;

pub use dispatch::GatewayCore;
pub use events::{Command, Event};
pub use handlers::{HandlerContext, Message};
pub use protocol::ErrorCode;

#[cfg(test)]
mod tests;

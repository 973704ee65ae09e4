//! The protocol brain: everything from the welcome message on, as a sans-IO [`App`]
//! ([`GatewayCore`]) that the reactor drives.
//!
//! Nothing under this module does I/O, imports `mio` or `std::net`, or reads the clock: time
//! comes in as `now: Instant`, and wall-clock milliseconds are derived from the base given to
//! [`GatewayCore::new`]. Each submodule has one job:
//!
//! - [`wire`]: reading and writing the wire format (envelopes, payloads, compact JSON, the
//!   payload check);
//! - [`clients`], [`sessions`], [`agents`], [`routes`], [`ratelimit`], [`auth`] (with
//!   [`jwt`]), [`scopes`], [`timers`]:
//!   the tables, state and decisions, each testable alone; they never import [`state`] or
//!   [`requests`];
//! - [`errors`]: the error codes and [`Refusal`](errors::Refusal), the one way a table
//!   reports a refusal;
//! - [`state`]: `CoreState`, everything the handlers work on, and what every request shares;
//! - [`requests`]: the handlers, one file per message family, the embedding program's custom
//!   handlers among them;
//! - [`dispatch`]: [`GatewayCore`], the [`App`] implementation: the order of checks and the
//!   routing of each message to its handler;
//! - [`outbound`] the sending; [`metrics`] `/health` and `/metrics`; [`events`] the commands
//!   and events exchanged with the host; [`escaped`] a peer's string in a log line.
//!
//! [`App`]: crate::app::App

pub(crate) mod agents;
pub(crate) mod auth;
pub(crate) mod clients;
pub(crate) mod cluster;
pub(crate) mod dispatch;
pub(crate) mod errors;
pub(crate) mod escaped;
pub(crate) mod events;
pub(crate) mod hash_index;
pub(crate) mod jwt;
pub(crate) mod metrics;
pub(crate) mod outbound;
pub(crate) mod ratelimit;
pub(crate) mod requests;
pub(crate) mod routes;
pub(crate) mod scopes;
pub(crate) mod sessions;
pub(crate) mod state;
pub(crate) mod timers;
pub(crate) mod users;
pub(crate) mod wire;

pub(crate) use dispatch::GatewayCore;
pub use errors::ErrorCode;
pub(crate) use events::Command;
pub use events::Event;
pub use requests::custom::{HandlerContext, Message};
pub(crate) use requests::reload::{log_refused, transport_limits};

#[cfg(test)]
mod tests;

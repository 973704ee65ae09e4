//! The request handlers, one file per message family: `connection` (a connection's
//! opening and close, `ping`, `auth`, `connect`), `sessions` (the session requests and the
//! relays), `devices` (what `hello_ok.presence` and `presence_query` list), `agents`,
//! `routes`, `admin` (the admin messages), [`custom`] (the embedding program's handlers and
//! the host's commands) and `reload` (a new configuration taken while running).
//!
//! Contract:
//! - Each handler is a free function taking `&mut CoreState` (and the `Req` and
//!   [`Envelope`] for a request), not a method: `CoreState` is defined and given its shared
//!   methods in [`state`](crate::core::state) alone, so its whole surface reads in one file,
//!   while what a family does reads in its own file, whose private functions stay private to it.
//!   `dispatch` names the family of every handler it calls.
//! - A request handler returns `Err(Reject)` to refuse; the caller sends that as the error
//!   reply. One that has replied itself (or has nothing to say) returns `Ok`.
//! - The families use each other only in one direction: `connection` calls `sessions` and
//!   `agents` when a connection closes; no family imports `dispatch`.
//!
//! [`Envelope`]: crate::core::wire::Envelope

pub(crate) mod admin;
pub(crate) mod agents;
pub(crate) mod connection;
pub(crate) mod custom;
pub(crate) mod devices;
pub(crate) mod reload;
pub(crate) mod routes;
pub(crate) mod sessions;

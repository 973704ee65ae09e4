//! The request handlers, one file per message family: `connection` (`ping`, `auth`,
//! `connect`), `sessions`, `agents`, `routes` and [`custom`] (the embedding program's
//! handlers).

mod agents;
mod connection;
pub mod custom;
mod routes;
mod sessions;

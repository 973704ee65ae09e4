//! `gateway`: a single-threaded WebSocket gateway between AI agents, tools and user interfaces.
#![deny(missing_docs)]

pub mod app;
pub mod config;

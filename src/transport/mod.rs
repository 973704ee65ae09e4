//! The mio side, ignorant of the gateway protocol, and the "bring your own core" API: a
//! [`Reactor`] drives any [`App`] over nonblocking sockets in one poll loop.
//!
//! Inside: the reactor loop (`reactor/`, its steps in `reactor/mod.rs`, the app's outbound
//! links in `reactor/link.rs` and `reactor/links.rs`), one accepted socket and its state
//! machine (`connection.rs`), what a socket is owed (`outbox.rs`), the command channel behind
//! [`ReactorHandle`] (`handle.rs`) and the timer wheel (`timer.rs`).

mod connection;
mod handle;
mod outbox;
mod reactor;
mod timer;
pub(crate) mod tls;

pub use crate::app::{
    Action, Actions, App, CloseReason, ConnId, HttpResponse, LinkId, Staged, TransportLimits,
    TransportStats,
};
pub use crate::ws::origin::OriginPolicy;
pub use handle::{Control, HandleError, ReactorHandle};
pub use reactor::{Reactor, RunState, TransportConfig};
pub use tls::{TlsKeyFormat, TlsServer, CIPHERTEXT_LIMIT};

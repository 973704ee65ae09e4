//! The mio side, ignorant of the gateway protocol: the [`reactor`] loop, its
//! [`connection`]s and their [`outbox`]es, the [`handle`] channel and the [`timer`] wheel.

pub mod connection;
pub mod handle;
pub mod outbox;
pub mod reactor;
pub mod timer;

pub use crate::app::{
    Action, Actions, App, CloseReason, ConnId, HttpResponse, Staged, TransportStats,
};
pub use reactor::{Reactor, TransportConfig};

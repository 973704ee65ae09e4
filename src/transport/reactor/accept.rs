//! Accepting (turn step 7): taking new sockets off the listener within a budget, registering
//! each once, and backing off when accepting fails.
//!
//! A new connection starts in `Handshaking` with its handshake deadline armed (on a TLS
//! listener, with its TLS session: the one deadline covers the TLS handshake and the HTTP
//! upgrade, and it counts as pending through both), and is pumped
//! on the next turn, since its request may already be waiting.
//!
//! A socket accepted while `max_pending_handshakes` sockets are pending (accepted and not
//! upgraded, or refused and lingering) takes the place of the oldest of them, which is
//! dropped without a response (and counted as shed): sockets that send nothing cannot hold
//! the slots, since each holds one only until `max_pending_handshakes` newer sockets come, so
//! a flood shuts out a request that completes its handshake in time only while it opens
//! `max_pending_handshakes` sockets within that time. The accept order is a queue of ids
//! (`pending_order`), where stale entries (upgraded or gone) are skipped when the oldest is
//! looked for and swept out when the queue reaches twice the bound: O(1) amortized per
//! accept, and nothing per open connection.

use std::io;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use mio::net::TcpStream;
use mio::Interest;

use crate::app::App;
use crate::transport::connection::Connection;
use crate::transport::tls::TlsServer;

use super::ready::queue_ready;
use super::slots::{key_of, token_of};
use super::{Reactor, RunState};

/// Sockets accepted per turn.
const ACCEPT_BUDGET: usize = 256;
/// After an accept error such as running out of descriptors, wait this long before retrying.
const ACCEPT_BACKOFF: Duration = Duration::from_millis(50);
/// What every accepted socket is registered for. On Linux also urgent data (`EPOLLPRI`),
/// which changes when a read may stop (see `connection.rs`).
#[cfg(any(target_os = "linux", target_os = "android"))]
const SOCKET_INTEREST: Interest = Interest::READABLE
    .add(Interest::WRITABLE)
    .add(Interest::PRIORITY);
#[cfg(not(any(target_os = "linux", target_os = "android")))]
const SOCKET_INTEREST: Interest = Interest::READABLE.add(Interest::WRITABLE);

impl<A: App> Reactor<A> {
    /// Step 7: accept new sockets while running and the listener is ready.
    pub(super) fn accept(&mut self, now: Instant) {
        if self.state != RunState::Running
            || !self.listener_ready
            || self.accept_paused_until.is_some()
        {
            return;
        }
        for _ in 0..ACCEPT_BUDGET {
            match self.listener.accept() {
                Ok((socket, peer)) => {
                    if self.accept_failing {
                        self.accept_failing = false;
                        log::info!("accepting connections again");
                    }
                    self.admit(socket, peer, now)
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    self.listener_ready = false;
                    return;
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) if is_transient_accept_error(&e) => continue,
                Err(e) => {
                    // Out of descriptors and the like: back off instead of spinning, and
                    // say so once per episode rather than at every retry.
                    if !self.accept_failing {
                        self.accept_failing = true;
                        log::warn!("accept failed: {e}; retrying every {ACCEPT_BACKOFF:?}");
                    }
                    self.accept_paused_until = Some(now + ACCEPT_BACKOFF);
                    return;
                }
            }
        }
    }

    /// Register `socket` and give it a slot.
    fn admit(&mut self, mut socket: TcpStream, peer: SocketAddr, now: Instant) {
        if self.pending_handshakes >= self.config.max_pending_handshakes && !self.shed_oldest() {
            log::debug!(
                "{} handshakes pending; closing {peer}",
                self.pending_handshakes
            );
            self.stats.handshakes_shed += 1;
            return; // dropping the socket closes it
        }
        let _ = socket.set_nodelay(true);
        let Some(slot) = self.conns.vacant() else {
            log::error!("too many sockets; dropping {peer}");
            return;
        };
        let id = slot.id();
        let tls = match self.config.tls.as_ref().map(TlsServer::session) {
            None => None,
            Some(Ok(session)) => Some(Box::new(session)),
            Some(Err(e)) => {
                log::warn!("no TLS session for {peer}: {e}");
                return;
            }
        };
        if let Err(e) = self
            .poll
            .registry()
            .register(&mut socket, token_of(id), SOCKET_INTEREST)
        {
            log::warn!("could not register {peer}: {e}");
            return;
        }
        log::trace!("accepted {peer} as {}", id.index);
        let conn = slot.insert(Connection::new(socket, id, now, tls));
        self.pending_handshakes += 1;
        // The request may already be waiting: try reading on the next pump.
        queue_ready(&mut self.ready, conn);
        self.deadlines.arm_handshake(&self.config, id, now);
        self.pending_order.push_back(id);
        if self.pending_order.len() > 2 * self.config.max_pending_handshakes.max(16) {
            let conns = &self.conns;
            self.pending_order.retain(|&id| {
                conns
                    .get(id)
                    .is_some_and(|c| c.pending_handshake && !c.in_reap)
            });
        }
    }
}

impl<A: App> Reactor<A> {
    /// Drop the oldest pending handshake to make room for a new one; whether there was one
    /// (every pending socket may already be on its way out this turn).
    fn shed_oldest(&mut self) -> bool {
        while let Some(id) = self.pending_order.pop_front() {
            let Some(conn) = self.conns.get_mut(id) else {
                continue;
            };
            if !conn.pending_handshake || conn.in_reap {
                continue;
            }
            log::debug!(
                "{} handshakes pending; dropping connection {}, the oldest",
                self.pending_handshakes,
                id.index
            );
            // No longer counted from now, so the next accept of this turn sheds another.
            conn.pending_handshake = false;
            self.pending_handshakes -= 1;
            self.stats.handshakes_shed += 1;
            self.mark_reap(key_of(id));
            return true;
        }
        false
    }
}

/// Errors that end one incoming connection, not the listener: accept the next.
fn is_transient_accept_error(e: &io::Error) -> bool {
    matches!(
        e.kind(),
        io::ErrorKind::ConnectionAborted | io::ErrorKind::ConnectionReset
    )
}

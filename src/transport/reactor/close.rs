//! Closing: the ways a connection leaves the open state, reaping (turn step 8), and the
//! shutdown of the whole loop.
//!
//! The app hears `on_close` exactly once, from [`Reactor::leave_open`], whichever way the
//! connection goes: our close frame and a linger for the peer's ([`Reactor::start_close`]), a
//! protocol error ([`Reactor::fail`]), everything queued and the write side to shut
//! ([`Reactor::finish`]), or at once ([`Reactor::drop_now`]). A connection marked for reaping
//! does no more I/O (its events are ignored, its queue is dropped) and is removed at the end
//! of a turn, which bumps its slot's generation (see `slots.rs`). Removing a socket costs two
//! system calls, so a turn removes at most [`REAP_BUDGET`], oldest first, and the rest in the
//! turns after: thousands of connections ending at once (their linger timers fire together,
//! say) do not hold up the others. When a shutdown is over, what is left to write is flushed
//! regardless of the flush budget, and every socket goes at once.

use std::time::{Duration, Instant};

use crate::app::{App, CloseReason};
use crate::transport::connection::ConnState;
use crate::ws::codec;

use super::{Reactor, RunState};

/// Sockets removed per turn (deregistered and closed: some 10 to 20 us each on loopback).
const REAP_BUDGET: usize = 256;

impl<A: App> Reactor<A> {
    /// Begin shutting down: close 1001 to every open connection, drop the others, stop
    /// accepting, and stop once every close handshake is done or `close_timeout` passed.
    pub fn begin_shutdown(&mut self) {
        if self.state != RunState::Running {
            return;
        }
        let now = Instant::now();
        log::info!(
            "shutting down: closing {} connections",
            self.open_connections
        );
        self.state = RunState::ShuttingDown;
        self.shutdown_deadline = Some(now + self.config.close_timeout.unwrap_or(Duration::ZERO));
        for key in self.conns.keys() {
            match self.conns.at(key).map(|conn| &conn.state) {
                Some(ConnState::Open { .. }) => self.start_close(
                    key,
                    1001,
                    "Server shutting down",
                    CloseReason::Shutdown,
                    now,
                ),
                Some(ConnState::Handshaking { .. }) => self.mark_reap(key),
                _ => {}
            }
        }
        self.apply_actions(now);
    }

    /// Step 8: remove the connections marked for reaping; when a shutdown is over, every
    /// connection, and stop.
    pub(super) fn reap(&mut self, now: Instant) {
        self.reap_done(REAP_BUDGET);
        if self.state == RunState::ShuttingDown
            && (self.close_handshakes_done() || self.shutdown_deadline.is_some_and(|d| now >= d))
        {
            // What the flush budget left goes out first (best effort), then every socket.
            self.flush_within(usize::MAX, None);
            for key in self.conns.keys() {
                self.mark_reap(key);
            }
            self.reap_done(usize::MAX);
            self.state = RunState::Stopped;
            // Drop what nobody will handle, then the receiver itself: handles now get Stopped.
            if let Some(commands) = self.commands.take() {
                while commands.try_recv().is_ok() {}
            }
            log::info!("stopped");
        }
    }

    /// Whether every remaining socket has sent all it will send, its close frame included,
    /// and needs nothing more from its peer (or is about to be removed anyway).
    fn close_handshakes_done(&self) -> bool {
        self.conns
            .iter()
            .all(|(_, c)| c.in_reap || (matches!(c.state, ConnState::Finishing) && c.write_shut))
    }

    /// Tell the app the connection left the open state (once).
    pub(super) fn leave_open(&mut self, key: usize, reason: CloseReason, now: Instant) {
        let Some(conn) = self.conns.at_mut(key) else {
            return;
        };
        if !conn.app_open {
            return;
        }
        conn.app_open = false;
        let id = conn.id;
        self.open_connections -= 1;
        self.stats.connections_closed[reason_index(reason)] += 1;
        self.app.on_close(id, reason, now, &mut self.actions);
    }

    /// Close an open connection: queue a close frame after what is queued, then wait for the
    /// peer's close frame until the linger timer.
    pub(super) fn start_close(
        &mut self,
        key: usize,
        code: u16,
        reason: &str,
        why: CloseReason,
        now: Instant,
    ) {
        let Some(conn) = self.conns.at_mut(key) else {
            return;
        };
        let decoder = match &mut conn.state {
            ConnState::Open { decoder } => std::mem::take(decoder),
            _ => return,
        };
        self.out
            .queue(conn, |out| codec::encode_close(out, code, reason));
        conn.state = ConnState::Closing { decoder };
        self.deadlines.arm_linger(&self.config, conn.id, now);
        self.leave_open(key, why, now);
    }

    /// A protocol error: queue the close frame and finish without waiting for a reply.
    pub(super) fn fail(&mut self, key: usize, code: u16, reason: &str, now: Instant) {
        let Some(conn) = self.conns.at_mut(key) else {
            return;
        };
        if conn.is_open() {
            self.out
                .queue(conn, |out| codec::encode_close(out, code, reason));
        }
        self.leave_open(key, CloseReason::Protocol(code), now);
        self.finish(key, now);
    }

    /// Everything we will send is queued: flush, shut down writing, drain, drop.
    pub(super) fn finish(&mut self, key: usize, now: Instant) {
        let Some(conn) = self.conns.at_mut(key) else {
            return;
        };
        if matches!(conn.state, ConnState::Finishing) {
            return;
        }
        let lingering = matches!(conn.state, ConnState::Closing { .. });
        // The decoder goes, and its bytes with it.
        let held = conn.message_bytes();
        self.inflight -= held;
        if !conn.full_limit {
            self.preauth_inflight -= held;
        }
        conn.unread.clear();
        conn.state = ConnState::Finishing;
        self.out.mark_dirty(conn);
        if !lingering {
            self.deadlines.arm_linger(&self.config, conn.id, now);
        }
    }

    /// Drop a socket at once (reset, timeout in the handshake, linger expired).
    pub(super) fn drop_now(&mut self, key: usize, now: Instant) {
        self.leave_open(key, CloseReason::Reset, now);
        self.mark_reap(key);
    }

    /// Remove `key` at the end of this turn or, past the budget, of a later one. Nothing more
    /// is read or written: its queue goes now, so it holds no range of the frame arena even
    /// when it is no longer in `dirty`, and its events are ignored from now on.
    pub(super) fn mark_reap(&mut self, key: usize) {
        if let Some(conn) = self.conns.at_mut(key) {
            conn.readable = false;
            conn.writable = false;
            conn.outbox.discard(&mut self.out.pool);
            if !conn.in_reap {
                conn.in_reap = true;
                self.reap.push_back(key);
            }
        }
    }

    /// Deregister and remove the `budget` connections marked for reaping longest ago.
    fn reap_done(&mut self, budget: usize) {
        for _ in 0..budget {
            let Some(key) = self.reap.pop_front() else {
                break;
            };
            let Some(mut conn) = self.conns.remove(key) else {
                continue;
            };
            let _ = self.poll.registry().deregister(&mut conn.socket);
            let held = conn.message_bytes();
            self.inflight -= held;
            if !conn.full_limit {
                self.preauth_inflight -= held;
            }
            if conn.pending_handshake {
                self.pending_handshakes -= 1;
            }
            if conn.app_open {
                // Every path that drops an open connection goes through leave_open first.
                log::error!("Bug: connection {key} reaped while open");
            }
        }
    }
}

/// The index of `reason` in the stats' closed-connection counters.
fn reason_index(reason: CloseReason) -> usize {
    CloseReason::LABELS
        .iter()
        .position(|l| *l == reason.label())
        .unwrap_or(0)
}

//! Writing (turn step 6): queueing bytes and frames on a connection, the list of connections
//! to flush, and the flush itself.
//!
//! Partial writes are normal: whatever appends to an outbox marks its connection dirty, and
//! every turn ends by flushing the dirty ones; what the socket does not take waits for the
//! writable latch. A connection with more than `max_outbound_buffer` bytes unsent is a slow
//! consumer and is closed with 1008. The frame arena is cleared at the end of the flush, once
//! no outbox holds a range of it (see `outbox.rs`).

use std::io;
use std::net::Shutdown;
use std::time::Instant;

use crate::app::{App, CloseReason, ConnId, Staged, TransportStats};
use crate::transport::connection::{ConnState, Connection};
use crate::transport::outbox::{BufferPool, FrameArena};
use crate::ws::codec::{self, OutKind};

use super::slots::key_of;
use super::Reactor;

/// What writing needs beside the connection itself: the buffer pool, the turn's frame arena
/// and the list of connections to flush.
#[derive(Default)]
pub(super) struct Output {
    /// Emptied outbox buffers for reuse.
    pub(super) pool: BufferPool,
    /// This turn's frames of messages sent to connections (see `outbox.rs`). Every connection
    /// holding a range of it is in `dirty`.
    pub(super) frames: FrameArena,
    /// Connections to flush at the end of the turn, each once (`in_dirty`).
    pub(super) dirty: Vec<usize>,
}

/// What a flush left for the loop to do.
enum Flushed {
    /// Nothing more.
    Done,
    /// The socket failed: drop the connection.
    Failed(io::Error),
    /// Both sides are shut down: reap it.
    Shut,
    /// More than `max_outbound_buffer` bytes (this many) are still queued on an open connection.
    SlowConsumer(usize),
}

impl Output {
    /// Put `conn` on the list to flush (once).
    pub(super) fn mark_dirty(&mut self, conn: &mut Connection) {
        if !conn.in_dirty {
            conn.in_dirty = true;
            self.dirty.push(key_of(conn.id));
        }
    }

    /// Append the bytes `write` produces to `conn`'s outbox, after everything queued.
    pub(super) fn queue(&mut self, conn: &mut Connection, write: impl FnOnce(&mut Vec<u8>)) {
        conn.outbox.append(&mut self.pool, &self.frames, write);
        self.mark_dirty(conn);
    }

    /// Append one frame to `conn`'s outbox.
    pub(super) fn queue_frame(&mut self, conn: &mut Connection, kind: OutKind, payload: &[u8]) {
        self.queue(conn, |out| codec::encode(out, kind, payload));
    }

    /// Write what `conn` owes its peer. Afterwards it holds no range of the frame arena, unless
    /// the write failed (the connection is then dropped, and that discards its queue).
    fn flush(
        &mut self,
        conn: &mut Connection,
        stats: &mut TransportStats,
        max_outbound_buffer: usize,
    ) -> Flushed {
        if conn.writable && conn.outbox.pending() > 0 {
            match conn.write_outbox(&self.frames) {
                Ok(n) => stats.bytes_out += n as u64,
                Err(e) => return Flushed::Failed(e),
            }
        }
        conn.outbox.settle(&mut self.pool, &self.frames);
        conn.outbox.release_if_empty(&mut self.pool);
        let pending = conn.outbox.pending();
        if pending == 0 {
            if matches!(conn.state, ConnState::Finishing) && !conn.write_shut {
                conn.write_shut = true;
                let _ = conn.socket.shutdown(Shutdown::Write);
                if conn.peer_eof {
                    return Flushed::Shut;
                }
            }
        } else if pending > max_outbound_buffer && conn.is_open() {
            return Flushed::SlowConsumer(pending);
        }
        Flushed::Done
    }
}

impl<A: App> Reactor<A> {
    /// Queue the staged message `msg` on `id`, unless it is stale or no longer open.
    pub(super) fn send_staged(&mut self, id: ConnId, msg: &Staged) {
        let Some(conn) = self.conns.get_mut(id) else {
            return;
        };
        if !conn.is_open() || !conn.app_open {
            return; // closing, or the app was told it closed (a reset waiting to be reaped)
        }
        let frame = self.out.frames.frame(msg, self.actions.bytes(msg));
        conn.outbox
            .push_frame(&mut self.out.pool, &self.out.frames, frame);
        self.out.mark_dirty(conn);
        if conn.outbox.pending() > self.config.max_outbound_buffer {
            // Try to write now: a reader that keeps up is not a slow consumer.
            let flushed = self
                .out
                .flush(conn, &mut self.stats, self.config.max_outbound_buffer);
            self.after_flush(key_of(id), flushed, Instant::now());
        }
    }

    /// Step 6: flush every dirty connection, apply what that made the app do, then clear the
    /// frame arena.
    pub(super) fn flush_dirty(&mut self) {
        let now = Instant::now();
        let mut dirty = std::mem::take(&mut self.out.dirty);
        for key in dirty.drain(..) {
            let Some(conn) = self.conns.at_mut(key) else {
                continue;
            };
            conn.in_dirty = false;
            let flushed = self
                .out
                .flush(conn, &mut self.stats, self.config.max_outbound_buffer);
            self.after_flush(key, flushed, now);
        }
        // flush may mark nothing dirty; keep the allocation.
        if self.out.dirty.is_empty() {
            self.out.dirty = dirty;
        }
        self.apply_actions(now);
        // What those actions queued waits for the next turn, on its own bytes: the arena is
        // cleared now.
        for &key in &self.out.dirty {
            if let Some(conn) = self.conns.at_mut(key) {
                conn.outbox.settle(&mut self.out.pool, &self.out.frames);
            }
        }
        debug_assert!(
            self.conns.iter().all(|(_, c)| !c.outbox.holds_frames()),
            "Bug: a connection holds a range of the frame arena it is about to lose"
        );
        self.out.frames.clear();
    }

    /// Act on what flushing `key` found.
    fn after_flush(&mut self, key: usize, flushed: Flushed, now: Instant) {
        match flushed {
            Flushed::Done => {}
            Flushed::Failed(e) => {
                log::debug!("connection {key}: write failed: {e}");
                self.drop_now(key, now);
            }
            Flushed::Shut => self.mark_reap(key),
            Flushed::SlowConsumer(queued) => {
                log::warn!("connection {key}: slow consumer, {queued} bytes queued");
                self.start_close(key, 1008, "Slow consumer", CloseReason::SlowConsumer, now);
            }
        }
    }
}

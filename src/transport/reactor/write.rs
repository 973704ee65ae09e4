//! Writing (turn step 6): queueing bytes and frames on a connection, the list of connections
//! to flush, and the flush itself.
//!
//! Partial writes are normal: whatever appends to an outbox marks its connection dirty, and
//! every turn ends by flushing the dirty ones; what the socket does not take waits for the
//! writable latch. A connection with more than `max_outbound_buffer` bytes unsent is a slow
//! consumer and is closed with 1008. The frame arena is cleared at the end of the flush, once
//! no outbox holds a range of it (see `outbox.rs`). The queueing and the write of one
//! connection are `output.rs`.

use std::time::Instant;

use crate::app::{App, CloseReason, ConnId, Staged};

use super::output::Flushed;
use super::slots::key_of;
use super::Reactor;

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

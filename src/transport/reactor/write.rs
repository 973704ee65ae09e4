//! Writing (turn step 6): queueing bytes and frames on a connection, the list of connections
//! to flush, and the flush itself.
//!
//! Partial writes are normal: whatever appends to an outbox marks its connection dirty, and
//! every turn ends by flushing the dirty ones; what the socket does not take waits for the
//! writable latch. A connection with more than `max_outbound_buffer` bytes unsent is a slow
//! consumer and is closed with 1008. The frame arena is cleared at the end of the flush, once
//! no outbox holds a range of it (see `outbox.rs`). The queueing and the write of one
//! connection are `output.rs`.
//!
//! Open connections are flushed every turn, however many. The others (closing, finishing, a
//! plain HTTP answer) are flushed at most [`CLOSE_FLUSH_BUDGET`] a turn, oldest first: when
//! one turn closes thousands of connections, their close frames and the shutdowns of their
//! write sides (a system call or two each) are spread over the turns after it, and the open
//! connections are served in between. A connection past the budget stays in `dirty` (its
//! outbox then holds no range of the arena: a close frame or any bytes appended after a
//! range settle it, see `outbox.rs`; and the settling below covers it anyway). No close frame
//! is lost to the budget: a connection whose linger expires first is flushed once more before
//! it is reaped, and so is every dirty one when a shutdown is over.

use std::time::Instant;

use crate::app::{App, CloseReason, ConnId, Staged};

use super::output::Flushed;
use super::slots::key_of;
use super::Reactor;

/// Connections that are not open flushed per turn (a write of some 10 to 30 us each on
/// loopback, and a shutdown of the write side).
const CLOSE_FLUSH_BUDGET: usize = 256;

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

    /// Step 6: flush the outbound links that have bytes queued (`links.rs`), then every dirty
    /// open connection and, within the budget, the others; apply what that made the app do,
    /// then clear the frame arena.
    pub(super) fn flush_dirty(&mut self) {
        self.flush_links(Instant::now());
        self.flush_within(CLOSE_FLUSH_BUDGET);
    }

    /// [`Reactor::flush_dirty`] with a budget of `budget` connections that are not open
    /// (`usize::MAX`: all, when a shutdown is over and every socket goes).
    pub(super) fn flush_within(&mut self, mut budget: usize) {
        let now = Instant::now();
        let mut dirty = std::mem::take(&mut self.out.dirty);
        // The keys left for the next turn are moved to the front of `dirty`.
        let mut left = 0;
        for i in 0..dirty.len() {
            let key = dirty[i];
            let Some(conn) = self.conns.at_mut(key) else {
                continue;
            };
            if conn.in_reap {
                conn.in_dirty = false; // its queue is gone; it does no more I/O
                continue;
            }
            if !conn.is_open() {
                if budget == 0 {
                    dirty[left] = key; // still `in_dirty`
                    left += 1;
                    continue;
                }
                budget -= 1;
            }
            conn.in_dirty = false;
            let flushed = self
                .out
                .flush(conn, &mut self.stats, self.config.max_outbound_buffer);
            self.after_flush(key, flushed, now);
        }
        // Next turn: what the budget left, oldest first, then what was marked dirty since
        // (usually nothing: the allocation of `dirty` is kept).
        dirty.truncate(left);
        dirty.append(&mut self.out.dirty);
        self.out.dirty = dirty;
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

    /// Write what `key` still owes its peer now, whatever the budget, and ignore the outcome:
    /// it is about to be reaped (its linger expired while its close frame waited).
    pub(super) fn flush_before_reap(&mut self, key: usize) {
        if let Some(conn) = self.conns.at_mut(key) {
            if conn.owes_bytes() && !conn.in_reap {
                let max = self.config.max_outbound_buffer;
                let _ = self.out.flush(conn, &mut self.stats, max);
            }
        }
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

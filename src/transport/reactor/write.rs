//! Writing (turn step 6): queueing bytes and frames on a connection, the list of connections
//! to flush, and the flush itself.
//!
//! Partial writes are normal: whatever appends to an outbox marks its connection dirty, and
//! every turn ends by flushing the dirty ones; what the socket does not take waits for the
//! writable latch. A connection with more than `max_outbound_buffer` bytes unsent is a slow
//! consumer and is closed with 1008. The queueing and the write of one connection are
//! `output.rs`.
//!
//! The writes' share of a turn: the open connections are flushed until `write_share` (1 ms,
//! [`TransportConfig`](super::TransportConfig)) has passed since the flush began (the clock
//! is read after each large write and every [`LOOK_EVERY`] small ones). The large queues the
//! share leaves do not count as replies owed for the read side's share (`read.rs`): their
//! writes come first in the next flush anyway, and a sender fanning out is not cut into 1 ms
//! reads for them (the small ones do: a `pong` among them is a reply a peer waits for).
//! Those that owe at most [`SMALL_WRITE`] bytes (a reply, a pong) go first, then the others,
//! so a reply never waits behind the writes of a large fan-out; one connection of each kind is flushed each turn at least. The ones the share
//! leaves stay in `dirty`, moved to its front: next turn they are flushed before the
//! connections that became dirty since, in the same order. So the write of one large message
//! to every member of a session (a 1 MiB `chat` to 9 members: a quarter of a millisecond of
//! kernel copy per member) is spread over the turns after it, and the others are served in
//! between. A connection whose queue passes `max_outbound_buffer` is written at once, whatever
//! the share (`send_staged`), as before: a reader that keeps up is not a slow consumer.
//!
//! The frame arena after the flush: when no outbox holds a range of it, it is cleared. When a
//! connection the share left still holds a range, the arena is kept for the next turn (its
//! ranges stay valid; the next turn's frames are framed after them), as long as what is held
//! (from the first held byte to the end) is at most `max_outbound_buffer` bytes; the prefix
//! before the first held byte is dropped once it is half the arena (the ranges moved down
//! with it: moving what is held costs no more than what is dropped). Past that bound every
//! holder copies its range into its own buffer first (`Outbox::settle`) and the arena is
//! cleared, so the arena keeps at most twice `max_outbound_buffer` from one turn to the next.
//! Every holder is in `dirty` (see `outbox.rs`).
//!
//! Open connections are flushed within the share; the others (closing, finishing, a plain
//! HTTP answer) at most [`CLOSE_FLUSH_BUDGET`] a turn, oldest first: when one turn closes
//! thousands of connections, their close frames and the shutdowns of their write sides (a
//! system call or two each) are spread over the turns after it, and the open connections are
//! served in between. A connection past the budget stays in `dirty` (its outbox then holds no
//! range of the arena: a close frame or any bytes appended after a range settle it). No close
//! frame is lost to the budget: a connection whose linger expires first is flushed once more
//! before it is reaped, and so is every dirty one, whatever the share, when a shutdown is over.

use std::time::{Duration, Instant};

use crate::app::{App, CloseReason, ConnId, Staged};

use super::output::Flushed;
use super::slots::key_of;
use super::Reactor;

/// Connections that are not open flushed per turn (a write of some 10 to 30 us each on
/// loopback, and a shutdown of the write side).
const CLOSE_FLUSH_BUDGET: usize = 256;

/// A connection that owes at most this many bytes is flushed before the others: one system
/// call of some microseconds.
const SMALL_WRITE: usize = 16 * 1024;

/// Small writes between two looks at the clock (the clock is read after every large one).
const LOOK_EVERY: usize = 32;

/// The writes' share of one turn.
struct Share {
    /// When the flush began.
    began: Instant,
    /// How long the share is; `None`: no end (the last flush of a shutdown). Its end is
    /// reckoned only when the clock is read: a flush of a few small writes never does.
    share: Option<Duration>,
    spent: bool,
    /// Small writes since the clock was last read.
    small: usize,
}

impl Share {
    fn new(began: Instant, share: Option<Duration>) -> Share {
        Share {
            began,
            share,
            spent: false,
            small: 0,
        }
    }

    /// A connection was flushed (`large`: it owed more than a small write): read the clock
    /// after a large one, and after every [`LOOK_EVERY`] small ones.
    fn note(&mut self, large: bool) {
        let Some(share) = self.share else {
            return;
        };
        self.small += usize::from(!large);
        if !self.spent && (large || self.small >= LOOK_EVERY) {
            self.small = 0;
            self.spent = self
                .began
                .checked_add(share)
                .is_some_and(|ends| Instant::now() >= ends);
        }
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

    /// Step 6: flush the outbound links that have bytes queued (`links.rs`), then the dirty
    /// connections within the writes' share and the close budget; apply what that made the
    /// app do, then clear the frame arena unless a connection left for the next turn holds a
    /// range of it.
    pub(super) fn flush_dirty(&mut self) {
        self.flush_links(Instant::now());
        self.flush_within(CLOSE_FLUSH_BUDGET, Some(self.config.write_share));
    }

    /// [`Reactor::flush_dirty`] with a budget of `budget` connections that are not open and a
    /// share of `share` for the open ones (`usize::MAX` and `None`: all, when a shutdown is
    /// over and every socket goes).
    pub(super) fn flush_within(&mut self, mut budget: usize, share: Option<Duration>) {
        let now = Instant::now();
        let mut share = Share::new(now, share);
        let mut dirty = std::mem::take(&mut self.out.dirty);
        // The keys left for the next turn are moved to the front of `dirty`, in their order:
        // first the small ones and the closing ones, then the large ones.
        let mut left = 0;
        let mut deferred = 0;
        let mut flushed_small = false;
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
            } else if conn.outbox.pending() > SMALL_WRITE {
                self.out.large.push(key); // after the small ones
                continue;
            } else if share.spent && flushed_small {
                dirty[left] = key; // a reply, perhaps: owed, for the read share
                left += 1;
                continue;
            } else {
                flushed_small = true;
            }
            self.flush_one(key, false, &mut share, now);
        }
        let mut flushed_large = false;
        for j in 0..self.out.large.len() {
            let key = self.out.large[j];
            let Some(conn) = self.conns.at_mut(key) else {
                continue;
            };
            if conn.in_reap {
                conn.in_dirty = false;
                continue;
            }
            if share.spent && flushed_large {
                dirty[left] = key;
                left += 1;
                deferred += 1;
                continue;
            }
            flushed_large = true;
            self.flush_one(key, true, &mut share, now);
        }
        self.out.large.clear();
        self.out.deferred = deferred;
        // Next turn: what the share and the budget left, oldest first, then what was marked
        // dirty since (usually nothing: the allocation of `dirty` is kept).
        dirty.truncate(left);
        dirty.append(&mut self.out.dirty);
        self.out.dirty = dirty;
        self.apply_actions(now);
        self.end_arena_turn();
    }

    /// Flush dirty connection `key` (its `in_dirty` cleared) and act on the outcome.
    fn flush_one(&mut self, key: usize, large: bool, share: &mut Share, now: Instant) {
        let Some(conn) = self.conns.at_mut(key) else {
            return;
        };
        conn.in_dirty = false;
        let flushed = self
            .out
            .flush(conn, &mut self.stats, self.config.max_outbound_buffer);
        share.note(large);
        self.after_flush(key, flushed, now);
    }

    /// The turn's frames are written or held: clear the arena, unless a connection in `dirty`
    /// holds a range of it and what is held fits `max_outbound_buffer`; then drop the prefix
    /// nobody holds once it is half the arena (see the module docs).
    fn end_arena_turn(&mut self) {
        if self.out.dirty.is_empty() {
            // Every queue written: nobody holds a range.
            debug_assert!(
                self.conns.iter().all(|(_, c)| !c.outbox.holds_frames()),
                "Bug: a connection holds a range of the frame arena and is not in dirty"
            );
            self.out.frames.clear();
            return;
        }
        let conns = &self.conns;
        let first = self
            .out
            .dirty
            .iter()
            .filter_map(|&key| conns.at(key).and_then(|c| c.outbox.frames_start()))
            .min();
        let len = self.out.frames.len();
        debug_assert!(
            self.conns
                .iter()
                .all(|(_, c)| c.in_dirty || !c.outbox.holds_frames()),
            "Bug: a connection holds a range of the frame arena and is not in dirty"
        );
        if let Some(first) = first {
            if len - first <= self.config.max_outbound_buffer {
                if first > 0 && first >= len / 2 {
                    // Moving what is held costs no more than what is dropped.
                    self.out.frames.drop_front(first);
                    for &key in &self.out.dirty {
                        if let Some(conn) = self.conns.at_mut(key) {
                            conn.outbox.frames_dropped(first);
                        }
                    }
                }
                return; // the holders write their ranges from it next turn
            }
        }
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

//! Reading (turn step 3): pumping ready connections within a budget, and what the bytes read
//! become: a request head (see `upgrade.rs`), WebSocket frames and messages for the app, or
//! the end of the stream.
//!
//! When the readable latch is set and cleared is told in `connection.rs`. A connection whose
//! budget ran out keeps its latch and goes back to the ready queue for the next turn. A
//! zero-byte read is a half-close: the frames already buffered are handled first.
//!
//! A connection's share of a turn: its messages are handed to the app until what is left of
//! its group's [`TURN_SHARE`] in this turn has passed since its pump began (one message at
//! least; the groups, and a connection whose group has nothing left, are `shares.rs`). Then,
//! if anything else waits (a connection kept for the next turn by its group, a
//! connection in the ready queue or with bytes to flush from before, a command, or an event
//! that a poll with no wait reports at that moment), the rest of what it sent in that read
//! is kept, undecoded, in its `unread` bytes and decoded first in the next turn, before its
//! socket is read again, so its messages keep their order and what it holds is at most one
//! read. If nothing else waits, it goes on with a new share: a lone busy connection (a
//! sender fanning out) is not cut into turns for nobody. The unread bytes count against
//! `max_inflight_bytes` like a message in progress; when they would pass it, the read is
//! handled whole, as if there were no share.
//!
//! Frames that make no message (empty or tiny continuation frames, pongs) spend the share
//! too: the decoder stops every [`FRAMES_PER_LOOK`] frames for a look at the clock, and
//! the rest of the read is kept the same way; and a connection with more to read looks at
//! the clock after each read, stopping with its latch set (nothing is kept: the bytes stay in
//! the socket). A read is decoded in one go when no frame bound is reached, so one message in
//! a read costs no more than before.
//!
//! The reserve of the connections that have not authenticated: while a connection is held to
//! the initial limit (`initial_max_payload`, the gateway's `max_preauth_message_size`; not
//! `full_limit`), what it holds (a message in progress, unread bytes) counts in
//! `preauth_inflight` too, and those
//! connections together hold at most a quarter of `max_inflight_bytes`
//! ([`preauth_reserve`]); a data frame that would pass it closes its own connection with
//! 1008 `Server busy`, as `max_inflight_bytes` does. Three quarters of `max_inflight_bytes`
//! are so always left to authenticated connections, whatever the others send. A connection
//! whose limit is raised takes what it holds out of the reserve (`commands.rs`).
//!
//! The TLS handshakes' share of a turn: once the sessions fed in their handshake this turn
//! have taken [`HANDSHAKE_SHARE`] (`tls.rs` counts it; one handshake at least), a connection
//! still in its TLS handshake is not read in this turn: its latch is left set and it goes back
//! to the ready queue, so the connections after it in the queue are served before the next
//! handshake.

use std::cell::Cell;
use std::time::{Duration, Instant};

use crate::app::{App, CloseReason, ConnId};
use crate::transport::connection::{ConnState, ReadResult};
use crate::ws::codec::{self, CodecLimits, Incoming, OutKind};

use super::deadlines::message_timeout;
use super::ready::{queue_ready, HANDSHAKE_SHARE};
use super::shares::TURN_SHARE;
use super::slots::{key_of, token_of};
use super::Reactor;

/// Bytes read from one connection per turn before the others get their turn.
pub(super) const READ_BUDGET: usize = 256 * 1024;

/// Frames decoded between two looks at the clock when they make no message (see the
/// module docs): some microseconds of the smallest frames.
const FRAMES_PER_LOOK: usize = 128;

/// The part of `max_inflight_bytes` the connections that have not authenticated may hold
/// together (see the module docs).
fn preauth_reserve(max_inflight_bytes: usize) -> usize {
    max_inflight_bytes / 4
}

impl<A: App> Reactor<A> {
    /// Step 3: pump the outbound links (`links.rs`), then each connection in the ready queue
    /// once.
    pub(super) fn pump_ready(&mut self, now: Instant) {
        self.pump_links(now);
        self.handshake_spent = Duration::ZERO;
        self.shares.begin_turn(&mut self.ready, now);
        let rounds = self.ready.len();
        for _ in 0..rounds {
            let Some(key) = self.ready.pop_front() else {
                break;
            };
            let Some(conn) = self.conns.at_mut(key) else {
                continue;
            };
            conn.in_ready = false;
            if !conn.readable && conn.unread.is_empty() {
                continue;
            }
            if self.handshake_spent >= HANDSHAKE_SHARE && conn.tls_handshaking() {
                // The turn's handshakes are spent: its latch keeps it for the next turn.
                queue_ready(&mut self.ready, conn);
                continue;
            }
            let began = Instant::now();
            let left = self.shares.begin_pump(conn.share_group(), began);
            if left.is_zero() {
                // Its group's share is spent: first in the next turn.
                conn.in_ready = true;
                self.shares.defer(key);
                self.stats.turn_share_waits += 1;
                continue;
            }
            let tls = conn.tls.is_some();
            self.share_ends = began + left;
            self.owed_before = self.out.dirty.len() > self.out.deferred;
            if !self.resume(key, now) {
                self.apply_actions(now);
            } else if tls {
                self.pump_read_tls(key, now);
            } else {
                self.pump_read(key, now);
            }
            if let Some(conn) = self.conns.at_mut(key) {
                if (conn.readable || !conn.unread.is_empty()) && !conn.in_reap {
                    // Budget or share spent: the latch and the unread bytes remember; come
                    // back next turn.
                    queue_ready(&mut self.ready, conn);
                }
            }
        }
    }

    /// Whether anything but connection `id` waits for the loop, once its share is spent: a
    /// connection queued to be pumped, or with bytes to flush from before this pump began (a
    /// reply it owes a peer that waits for it; not the large queues the last flush's share
    /// left, which the next flush takes first anyway), a command, or an event a poll with no wait
    /// reports now (its latches set, as in step 2). If nothing does, it goes on with a new
    /// share.
    fn others_waiting(&mut self, id: ConnId) -> bool {
        let own = token_of(id);
        if self.owed_before
            || self.commands_pending
            || self.shares.any_deferred()
            || self.ready.iter().any(|&k| k != key_of(id))
        {
            return true;
        }
        if self
            .poll
            .poll(&mut self.events, Some(Duration::ZERO))
            .is_err()
        {
            return true;
        }
        let others = self.events.iter().any(|e| e.token() != own);
        self.set_latches();
        others
    }

    /// Decode what a connection left unread in an earlier turn. Returns false when it is not
    /// to be read this turn (its share was spent again, or it stopped).
    fn resume(&mut self, key: usize, now: Instant) -> bool {
        let Some(conn) = self.conns.at_mut(key) else {
            return false;
        };
        if conn.unread.is_empty() {
            return true;
        }
        let mut unread = conn.unread.take();
        self.inflight -= unread.len();
        if !conn.full_limit {
            self.preauth_inflight -= unread.len();
        }
        self.decode(key, &mut unread, now)
    }

    /// Read from one connection until its readable latch clears, end of stream or the budget.
    fn pump_read(&mut self, key: usize, now: Instant) {
        let mut budget = READ_BUDGET;
        let mut buf = std::mem::take(&mut self.read_buf);
        while budget > 0 {
            // Looked up again each time: the app ran in between.
            let Some(conn) = self.conns.at_mut(key) else {
                break;
            };
            if !conn.readable {
                break;
            }
            let id = conn.id;
            match conn.read_into(&mut buf) {
                ReadResult::Data(n) => {
                    budget = budget.saturating_sub(n);
                    self.stats.bytes_in += n as u64;
                    conn.last_rx = now;
                    if !self.on_bytes(key, &mut buf[..n], now) || self.read_share_spent(key, id) {
                        break;
                    }
                }
                ReadResult::WouldBlock => break,
                ReadResult::Eof => {
                    self.on_eof(key, now);
                    break;
                }
                ReadResult::Failed(e) => {
                    log::debug!("connection {key}: read failed: {e}");
                    self.drop_now(key, now);
                    break;
                }
            }
        }
        self.read_buf = buf;
        self.apply_actions(now);
    }

    /// Whether connection `key` is to stop reading after a read, its share of the turn spent
    /// with others waiting: its latch, still set, brings it back next turn. Only a connection
    /// that has more to read looks at the clock.
    pub(super) fn read_share_spent(&mut self, key: usize, id: ConnId) -> bool {
        self.conns.at_mut(key).is_some_and(|c| c.readable) && self.share_spent(id)
    }

    /// Whether the share of the turn of connection `id`, being pumped, is spent while others
    /// wait. When nothing else waits it gets a new share.
    fn share_spent(&mut self, id: ConnId) -> bool {
        if Instant::now() < self.share_ends {
            return false;
        }
        if self.others_waiting(id) {
            return true;
        }
        self.share_ends = Instant::now() + TURN_SHARE;
        false
    }

    /// Handle bytes just read. Returns false when reading should stop.
    pub(super) fn on_bytes(&mut self, key: usize, bytes: &mut [u8], now: Instant) -> bool {
        let Some(conn) = self.conns.at_mut(key) else {
            return false;
        };
        match &conn.state {
            ConnState::Handshaking { .. } => self.on_head_bytes(key, bytes, now),
            ConnState::Open { .. } | ConnState::Closing { .. } => self.decode(key, bytes, now),
            ConnState::Finishing => true, // drained and discarded
        }
    }

    /// Feed WebSocket bytes to the connection's decoder. Returns false when reading should stop.
    ///
    /// The bounds on messages in progress are kept here, with no lookup beyond the
    /// connection's own: the decoder is given the connection's payload limit and what is left
    /// of `max_inflight_bytes` once the other connections' bytes are counted; the in-flight
    /// count moves by what the decoder holds after the call less what it held before; and a
    /// message that is still in progress after the call and began in it sets `message_since`,
    /// and gives the connection a message-timeout entry unless it has one.
    ///
    /// The connection's share of the turn is kept here too (see the module docs): once it is
    /// spent, the decoder stops after the message that spent it and the rest of `bytes` is
    /// kept in the connection's `unread`, counted in flight.
    pub(super) fn decode(&mut self, key: usize, bytes: &mut [u8], now: Instant) -> bool {
        let Some(conn) = self.conns.at_mut(key) else {
            return false;
        };
        let id = conn.id;
        let full_limit = conn.full_limit
            || self
                .config
                .initial_max_payload
                .map_or(true, |initial| initial >= self.config.max_payload);
        // Not authenticated: what it holds counts in the reserve too.
        let preauth = !conn.full_limit;
        let (mut decoder, open) = match &mut conn.state {
            ConnState::Open { decoder } => (std::mem::take(decoder), true),
            ConnState::Closing { decoder } => (std::mem::take(decoder), false),
            _ => return false,
        };
        let held_before = decoder.message_bytes();
        let began_before = decoder.message_in_progress();
        let room = (self.config.max_inflight_bytes)
            .saturating_add(held_before)
            .saturating_sub(self.inflight);
        let reserve = preauth_reserve(self.config.max_inflight_bytes);
        let limits = Cell::new(CodecLimits {
            max_payload: self.payload_limit(full_limit),
            max_held: if preauth {
                room.min(
                    reserve
                        .saturating_add(held_before)
                        .saturating_sub(self.preauth_inflight),
                )
            } else {
                room
            },
        });
        let mut keep_reading = true;
        let mut messages = 0usize;
        // The rest of `bytes` may be kept for the next turn only if it fits the bounds.
        let may_pause = open
            && self.inflight.saturating_add(bytes.len()) <= self.config.max_inflight_bytes
            && (!preauth || self.preauth_inflight.saturating_add(bytes.len()) <= reserve);
        let mut paused = false;
        let mut taken = 0;
        let result = loop {
            let step = decoder.decode_frames(
                &mut bytes[taken..],
                &limits,
                FRAMES_PER_LOOK,
                &mut |incoming| {
                    let message = matches!(incoming, Incoming::Message { .. });
                    messages += usize::from(message);
                    keep_reading = self.on_incoming(key, id, incoming, open, now);
                    if preauth && self.conns.get(id).is_some_and(|c| c.full_limit) {
                        // Raised by this message: the frames after it already get the new
                        // limit, and no longer the reserve's.
                        limits.set(CodecLimits {
                            max_payload: self.payload_limit(true),
                            max_held: room,
                        });
                    }
                    if keep_reading && message && may_pause && self.share_spent(id) {
                        paused = true;
                        keep_reading = false;
                    }
                    keep_reading
                },
            );
            match step {
                Ok(n) => {
                    taken += n;
                    // Else `FRAMES_PER_LOOK` frames were decoded: a look at the clock.
                    if !keep_reading || taken == bytes.len() {
                        break Ok(taken);
                    }
                    if may_pause && self.share_spent(id) {
                        paused = true;
                        keep_reading = false;
                        break Ok(taken);
                    }
                }
                Err(err) => break Err(err),
            }
        };
        // Put the decoder back if the connection is still in a decoding state; else its bytes
        // go with it.
        self.inflight -= held_before;
        if preauth {
            self.preauth_inflight -= held_before;
        }
        if let Some(conn) = self.conns.at_mut(key) {
            match &mut conn.state {
                ConnState::Open { decoder: slot } | ConnState::Closing { decoder: slot } => {
                    let mut held = decoder.message_bytes();
                    let began = decoder.message_in_progress() && (!began_before || messages > 0);
                    if began {
                        conn.message_since = self.deadlines.stamp(now);
                        if let (Some(timeout), false) =
                            (message_timeout(&self.config), conn.message_timer)
                        {
                            self.deadlines.arm_message(id, now, timeout);
                            conn.message_timer = true;
                        }
                    }
                    *slot = decoder;
                    if let (true, Ok(taken)) = (paused, &result) {
                        let rest = &bytes[*taken..];
                        held += rest.len();
                        conn.unread.set(rest);
                    }
                    self.inflight += held;
                    if !conn.full_limit {
                        self.preauth_inflight += held;
                    }
                }
                _ => {}
            }
        }
        match result {
            Ok(_) => keep_reading,
            Err(err) => {
                log::debug!(
                    "connection {key}: protocol error, closing with {}: {}",
                    err.code,
                    err.reason
                );
                self.fail(key, err.code, err.reason, now);
                false
            }
        }
    }

    /// The largest frame or message a connection may send: `max_payload` once the app raised
    /// its limit or when there is no initial limit, else `initial_max_payload` (never more
    /// than `max_payload`).
    fn payload_limit(&self, full: bool) -> usize {
        match self.config.initial_max_payload {
            Some(initial) if !full => initial.min(self.config.max_payload),
            _ => self.config.max_payload,
        }
    }

    /// One decoded frame or message. Returns false to stop decoding this input.
    fn on_incoming(
        &mut self,
        key: usize,
        id: ConnId,
        incoming: Incoming<'_>,
        open: bool,
        now: Instant,
    ) -> bool {
        match incoming {
            Incoming::Message { data, binary } => {
                if !open {
                    return true; // closing: data is discarded
                }
                self.app
                    .on_message(id, data, binary, now, &mut self.actions);
                self.apply_actions(now);
                self.conns.get(id).is_some_and(|c| c.is_open())
            }
            Incoming::Ping(payload) => {
                if open {
                    if let Some(conn) = self.conns.at_mut(key) {
                        self.out.queue_frame(conn, OutKind::Pong, payload);
                    }
                }
                true
            }
            Incoming::Pong(_) => true,
            Incoming::Close { code, reason } => {
                log::debug!("connection {key}: peer closed with {code:?} {reason:?}");
                if open {
                    // Echo the peer's code (RFC 6455 section 5.5.1), then finish.
                    let Some(conn) = self.conns.at_mut(key) else {
                        return false;
                    };
                    self.out.queue(conn, |out| {
                        codec::encode_close(out, code.unwrap_or(1000), "")
                    });
                    self.leave_open(key, CloseReason::Peer(code.unwrap_or(1005)), now);
                }
                self.finish(key, now);
                false
            }
        }
    }

    /// The peer shut down its write side (a zero-byte read).
    pub(super) fn on_eof(&mut self, key: usize, now: Instant) {
        let Some(conn) = self.conns.at_mut(key) else {
            return;
        };
        conn.readable = false;
        conn.peer_eof = true;
        match conn.state {
            ConnState::Handshaking { .. } => self.drop_now(key, now),
            ConnState::Open { .. } => {
                // Half-close: what arrived before it was handled; flush what we owe, then go.
                self.leave_open(key, CloseReason::Reset, now);
                self.finish(key, now);
            }
            ConnState::Closing { .. } => self.drop_now(key, now),
            ConnState::Finishing => {
                if conn.write_shut {
                    self.mark_reap(key);
                }
            }
        }
    }
}

//! Expiring timers (turn step 5): what happens when each kind of entry on the wheel of
//! `deadlines.rs` fires: a handshake that is late is dropped, a lingering socket is reaped,
//! the app's timer reaches the app, the heartbeat closes an idle connection or pings it, and a
//! message that is not complete within `message_timeout` closes its connection with 1008.

use std::time::Instant;

use crate::app::{App, CloseReason, ConnId};
use crate::transport::connection::ConnState;
use crate::ws::codec::OutKind;

use super::deadlines::{message_timeout, since_stamp, Timer};
use super::slots::key_of;
use super::Reactor;

impl<A: App> Reactor<A> {
    /// Step 5: act on every entry that is due, and end an accept back-off that is over.
    pub(super) fn expire_timers(&mut self, now: Instant) {
        let mut expired = self.deadlines.take_due(now);
        for timer in expired.drain(..) {
            match timer {
                Timer::App(token) => {
                    self.app.on_timer(token, now, &mut self.actions);
                    self.apply_actions(now);
                }
                Timer::Handshake(id) => {
                    let late = self.conns.get(id).is_some_and(|c| {
                        matches!(c.state, ConnState::Handshaking { .. }) && !c.in_reap
                    });
                    if late {
                        log::debug!("connection {}: handshake timed out", id.index);
                        self.stats.handshake_timeouts += 1;
                        self.mark_reap(key_of(id));
                    }
                }
                Timer::Linger(id) => {
                    let done = self.conns.get(id).is_some_and(|c| {
                        matches!(c.state, ConnState::Closing { .. } | ConnState::Finishing)
                    });
                    if done {
                        // A close frame still waiting for the flush budget goes out first.
                        self.flush_before_reap(key_of(id));
                        self.mark_reap(key_of(id));
                    }
                }
                Timer::Heartbeat(id) => self.heartbeat(id, now),
                Timer::Message(id) => self.message_deadline(id, now),
            }
        }
        self.deadlines.give_back(expired);
        if let Some(until) = self.accept_paused_until {
            if now >= until {
                self.accept_paused_until = None;
            }
        }
    }

    /// `id`'s message-timeout entry fired: close it if its message in progress is late, else
    /// arm the entry again for when it will be.
    fn message_deadline(&mut self, id: ConnId, now: Instant) {
        let Some(conn) = self.conns.get_mut(id) else {
            return;
        };
        conn.message_timer = false;
        let Some(timeout) = message_timeout(&self.config) else {
            return;
        };
        if !conn.is_open() || !conn.message_in_progress() {
            return; // done, or closing (the linger ends it)
        }
        let elapsed = since_stamp(conn.message_since, self.deadlines.stamp(now));
        if elapsed >= timeout {
            log::debug!("connection {}: message timed out", id.index);
            self.fail(key_of(id), 1008, "Message timeout", now);
            self.apply_actions(now);
        } else {
            self.deadlines.arm_message(id, now, timeout - elapsed);
            conn.message_timer = true;
        }
    }

    /// `id`'s heartbeat entry fired: close it if idle, else ping if due and arm the next one.
    fn heartbeat(&mut self, id: ConnId, now: Instant) {
        let Some(conn) = self.conns.get_mut(id) else {
            return;
        };
        if !conn.is_open() {
            return;
        }
        if self
            .config
            .client_timeout
            .is_some_and(|d| now >= conn.last_rx + d)
        {
            log::debug!("connection {}: idle, closing", id.index);
            self.start_close(
                key_of(id),
                1001,
                "Connection timeout",
                CloseReason::Timeout,
                now,
            );
            self.apply_actions(now);
            return;
        }
        if self
            .config
            .heartbeat_interval
            .is_some_and(|d| now >= conn.last_ping + d)
        {
            self.out.queue_frame(conn, OutKind::Ping, b"");
            conn.last_ping = now;
        }
        self.deadlines.arm_heartbeat(&self.config, conn, now);
    }
}

//! Expiring timers (turn step 5): what happens when each kind of entry on the wheel of
//! `deadlines.rs` fires: a handshake that is late is dropped, a lingering socket is reaped,
//! the app's timer reaches the app, and the heartbeat closes an idle connection or pings it.

use std::time::Instant;

use crate::app::{App, CloseReason, ConnId};
use crate::transport::connection::ConnState;
use crate::ws::codec::OutKind;

use super::deadlines::Timer;
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
                    let late = self
                        .conns
                        .get(id)
                        .is_some_and(|c| matches!(c.state, ConnState::Handshaking { .. }));
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
                        self.mark_reap(key_of(id));
                    }
                }
                Timer::Heartbeat(id) => self.heartbeat(id, now),
            }
        }
        self.deadlines.give_back(expired);
        if let Some(until) = self.accept_paused_until {
            if now >= until {
                self.accept_paused_until = None;
            }
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

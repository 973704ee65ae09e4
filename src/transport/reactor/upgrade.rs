//! The HTTP side of a connection in `Handshaking`: gathering the request head, then the
//! upgrade to a WebSocket, a plain answer (the app's `/health`, `/metrics`, or 404) or a
//! refusal. Parsing and the answers' bytes are sans-IO, in `ws::handshake`.
//!
//! Bytes pipelined after the head already belong to the WebSocket stream and go to the
//! decoder. An upgrade beyond `max_connections` is refused with 503. A socket counts as a
//! pending handshake (`max_pending_handshakes`, see `accept.rs`) from its accept until its
//! upgrade, or until it is reaped when it is answered or refused instead.

use std::time::{Duration, Instant};

use crate::app::{App, TransportStats};
use crate::transport::connection::ConnState;
use crate::ws::codec;
use crate::ws::handshake::{self, Outcome, Refusal};

use super::deadlines::first_ping_lead;
use super::Reactor;

impl<A: App> Reactor<A> {
    /// Bytes of a request head. Returns false when reading should stop.
    pub(super) fn on_head_bytes(&mut self, key: usize, bytes: &mut [u8], now: Instant) -> bool {
        let Some(conn) = self.conns.at_mut(key) else {
            return false;
        };
        let ConnState::Handshaking { head } = &mut conn.state else {
            return false;
        };
        if head.is_empty() {
            // The common case: the whole head arrived in one read; parse in place.
            let outcome = handshake::parse_request(bytes, &self.rules);
            if matches!(outcome, Outcome::Partial) {
                head.extend_from_slice(bytes);
                return true;
            }
            self.on_head(key, outcome, bytes, now)
        } else {
            head.extend_from_slice(bytes);
            let outcome = handshake::parse_request(head, &self.rules);
            if matches!(outcome, Outcome::Partial) {
                return true;
            }
            let mut head = std::mem::take(head);
            self.on_head(key, outcome, &mut head, now)
        }
    }

    /// A complete request head (or a refusal) arrived. `bytes` holds the head and anything
    /// pipelined after it.
    fn on_head(&mut self, key: usize, outcome: Outcome, bytes: &mut [u8], now: Instant) -> bool {
        match outcome {
            Outcome::Partial => true,
            Outcome::Refuse(refusal) => {
                self.refuse(key, refusal, now);
                false
            }
            Outcome::Plain { path, .. } => {
                let stats = self.stats();
                let answer = self.app.http_get(&path, &stats, now);
                let Some(conn) = self.conns.at_mut(key) else {
                    return false;
                };
                let status = answer.as_ref().map_or(404, |resp| resp.status);
                self.out.queue(conn, |out| match &answer {
                    Some(resp) => {
                        handshake::write_response(out, resp.status, resp.content_type, &resp.body)
                    }
                    None => handshake::write_response(
                        out,
                        404,
                        "text/plain; charset=utf-8",
                        b"Not Found\n",
                    ),
                });
                if status != 200 {
                    count_refusal(&mut self.stats, status);
                }
                self.finish(key, now);
                false
            }
            Outcome::Upgrade {
                accept_key,
                head_len,
            } => {
                if self.open_connections >= self.config.max_connections {
                    self.refuse(key, Refusal::AT_CAPACITY, now);
                    return false;
                }
                let lead = self.config.heartbeat_interval.map_or(Duration::ZERO, |d| {
                    first_ping_lead(self.stats.connections_accepted, d)
                });
                let Some(conn) = self.conns.at_mut(key) else {
                    return false;
                };
                self.out
                    .queue(conn, |out| handshake::write_accept(out, &accept_key));
                conn.state = ConnState::Open {
                    decoder: codec::Decoder::default(),
                };
                conn.app_open = true;
                conn.full_limit = self.config.initial_max_payload.is_none();
                conn.pending_handshake = false;
                self.pending_handshakes -= 1;
                // As if a Ping had gone out `lead` ago: the first comes that much early.
                conn.last_ping = now.checked_sub(lead).unwrap_or(now);
                let id = conn.id;
                self.open_connections += 1;
                self.stats.connections_accepted += 1;
                self.deadlines.arm_heartbeat(&self.config, conn, now);
                self.app.on_open(id, now, &mut self.actions);
                self.apply_actions(now);
                let rest = bytes.get_mut(head_len..).unwrap_or_default();
                if rest.is_empty() {
                    true
                } else {
                    self.decode(key, rest, now)
                }
            }
        }
    }

    /// Answer with `refusal` and finish.
    fn refuse(&mut self, key: usize, refusal: Refusal, now: Instant) {
        count_refusal(&mut self.stats, refusal.status);
        let Some(conn) = self.conns.at_mut(key) else {
            return;
        };
        log::debug!("connection {key}: upgrade refused with {}", refusal.status);
        self.out
            .queue(conn, |out| handshake::write_refusal(out, refusal));
        self.finish(key, now);
    }
}

/// Count an answer other than 101 or 200 under its status.
fn count_refusal(stats: &mut TransportStats, status: u16) {
    match stats
        .handshake_refusals
        .iter_mut()
        .find(|(s, _)| *s == status)
    {
        Some((_, n)) => *n += 1,
        None => stats.handshake_refusals.push((status, 1)),
    }
}

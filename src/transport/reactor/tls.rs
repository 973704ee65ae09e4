//! Reading a TLS connection (turn step 3, on a TLS listener): ciphertext from the socket into
//! the connection's session, the plaintext out of it into the same path a plain connection's
//! bytes take (`read.rs`: the request head, then frames).
//!
//! The session decrypts in place, in the reactor's ciphertext buffer; what it keeps between
//! two reads is the start of a record (or of a handshake message) at most. The plaintext goes through one buffer of the
//! reactor's (`tls_plain`) to `read.rs`.
//!
//! The readable latch, the read budget and the connection's share of a turn work as for a
//! plain connection, on ciphertext: the share is looked at after each read, so the records it
//! takes past its share are those of one read (`TLS_READ_BUF`, some hundreds at most). The
//! time spent feeding a session still in its handshake (the server's signature, the key
//! exchange) is added to the turn's `handshake_spent`, which bounds the handshakes of a turn
//! (`read.rs`). What
//! the session has to say back (its handshake, an alert) puts the connection on the list to
//! flush. A session that fails (bytes that are not TLS, a refused handshake, a bad record)
//! gets no HTTP answer: its alert, if any, is written and the connection finishes. Once a
//! connection is `Finishing`, what arrives is discarded without decryption. A close_notify
//! from the peer ends its stream as a zero-byte read does.

use std::time::Instant;

use crate::app::App;
use crate::transport::connection::{ConnState, ReadResult};
use crate::transport::tls::Fed;

use super::read::READ_BUDGET;
use super::ready::TLS_PLAIN_KEEP;
use super::Reactor;

/// What to do after one step of a TLS read.
enum Next {
    Go,
    Stop,
}

impl<A: App> Reactor<A> {
    /// Read from one TLS connection until its readable latch clears, end of stream, the
    /// budget, or the connection stops reading.
    pub(super) fn pump_read_tls(&mut self, key: usize, now: Instant) {
        let mut budget = READ_BUDGET;
        let mut cipher = std::mem::take(&mut self.tls_buf);
        while budget > 0 {
            let Some(conn) = self.conns.at_mut(key) else {
                break;
            };
            if !conn.readable {
                break;
            }
            let id = conn.id;
            let n = match conn.read_into(&mut cipher) {
                ReadResult::Data(n) => n,
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
            };
            budget = budget.saturating_sub(n);
            self.stats.bytes_in += n as u64;
            conn.last_rx = now;
            if matches!(conn.state, ConnState::Finishing) {
                continue; // drained and discarded
            }
            if let Next::Stop = self.decrypt(key, &mut cipher[..n], now) {
                break;
            }
            if self.read_share_spent(key, id) {
                break; // the records of one read at most past its share
            }
        }
        self.tls_buf = cipher;
        self.apply_actions(now);
    }

    /// Feed `input` to the session of `key` (it decrypts in place) and hand on the plaintext
    /// it yields.
    fn decrypt(&mut self, key: usize, input: &mut [u8], now: Instant) -> Next {
        let Some(conn) = self.conns.at_mut(key) else {
            return Next::Stop;
        };
        let Some(tls) = conn.tls.as_deref_mut() else {
            return Next::Stop;
        };
        let mut plain = std::mem::take(&mut self.tls_plain);
        let handshake_began = tls.is_handshaking().then(Instant::now);
        let fed = tls.feed(input, &mut plain);
        if let Some(began) = handshake_began {
            self.handshake_spent += began.elapsed();
        }
        if tls.wants_write() {
            self.out.mark_dirty(conn); // a handshake message or an alert to send
        }
        let next = match fed {
            Fed::Failed(reason) => {
                log::debug!("connection {key}: TLS failed: {reason}");
                self.finish(key, now);
                Next::Stop
            }
            Fed::Ok | Fed::Closed => {
                if !plain.is_empty() && !self.on_bytes(key, &mut plain, now) {
                    Next::Stop
                } else if matches!(fed, Fed::Closed) {
                    self.on_eof(key, now);
                    Next::Stop
                } else {
                    Next::Go
                }
            }
        };
        plain.clear();
        if plain.capacity() > TLS_PLAIN_KEEP {
            plain = Vec::new();
        }
        self.tls_plain = plain;
        next
    }
}

//! One accepted socket and the state machine it goes through.
//!
//! `Handshaking` (reading the HTTP request head) → `Open` (WebSocket frames both ways) →
//! `Closing` (our close frame is queued; we read until the peer's close frame arrives) →
//! `Finishing` (everything we will ever send is queued: flush it, shut down our write side,
//! then read and discard until the peer closes or the linger timer fires). A refused upgrade
//! or a plain HTTP answer goes straight from `Handshaking` to `Finishing`.
//!
//! # The readiness latches
//!
//! Events are edge-triggered: `readable` / `writable` are set by events and cleared when a
//! syscall returns `WouldBlock`, and stopping early (the read budget) is fine because the
//! latch remembers. On Linux a read that fills less than the buffer also clears `readable`: the
//! socket was drained at that moment, and data arriving later raises a new edge. That saves a
//! `read` returning `WouldBlock` per message (half the reads of an idle connection answering
//! its heartbeat). Two cases break the rule, and once an event has reported one of them
//! (`read_to_block`) reads go on until `WouldBlock`: end of stream or an error (no new edge
//! is coming), and TCP urgent data, which sockets are registered for on Linux (`EPOLLPRI`)
//! because a read stops short at the urgent mark while more data is already queued.
//!
//! The [`Outbox`] holds what is not yet written (see `outbox.rs`); an idle connection's
//! outbox holds no heap memory.
//!
//! # TLS
//!
//! On a TLS listener a connection also has a [`TlsSession`]: the reactor reads ciphertext and
//! feeds it to the session (`reactor/tls.rs`), and [`Connection::write_outbox`] encrypts the
//! outbox into the session and writes the session's ciphertext, partial writes included. The
//! state machine above runs on the plaintext unchanged; `Handshaking` covers the TLS
//! handshake and the HTTP request head together. A plain connection has no session (`None`,
//! no allocation).

use std::io::{self, Read};
use std::time::Instant;

use mio::net::TcpStream;

use crate::app::ConnId;
use crate::transport::outbox::{FrameArena, Outbox};
use crate::transport::tls::TlsSession;
use crate::ws::codec::Decoder;

/// Where a connection is in its life.
#[derive(Debug)]
pub(super) enum ConnState {
    /// Reading the HTTP request head; `head` holds the bytes of an incomplete head.
    Handshaking {
        /// Bytes received so far (empty while nothing is buffered).
        head: Vec<u8>,
    },
    /// The WebSocket is open.
    Open {
        /// Frame decoder (no heap while idle).
        decoder: Decoder,
    },
    /// Our close frame is queued; waiting for the peer's.
    Closing {
        /// Frame decoder, to find the peer's close frame.
        decoder: Decoder,
    },
    /// Flush the outbox, shut down writing, then drain until the peer closes.
    Finishing,
}

/// A connection's bytes read and not yet decoded ([`Connection::unread`]): unallocated when
/// empty, and 8 bytes in the record (a boxed `Vec`: one more allocation when it is set, which
/// happens only when a connection's share of a turn ends with bytes left in a read).
#[derive(Debug, Default)]
#[allow(clippy::box_collection)] // the box is the point: a thin pointer in every record
pub(super) struct Unread(Option<Box<Vec<u8>>>);

impl Unread {
    /// Keep `bytes`, in place of nothing (none are kept yet).
    pub(super) fn set(&mut self, bytes: &[u8]) {
        debug_assert!(self.0.is_none(), "taken before it is set again");
        self.0 = (!bytes.is_empty()).then(|| Box::new(bytes.to_vec()));
    }

    /// The bytes kept, leaving none.
    pub(super) fn take(&mut self) -> Vec<u8> {
        self.0.take().map(|bytes| *bytes).unwrap_or_default()
    }

    /// Drop the bytes kept.
    pub(super) fn clear(&mut self) {
        self.0 = None;
    }

    pub(super) fn len(&self) -> usize {
        self.0.as_ref().map_or(0, |bytes| bytes.len())
    }

    pub(super) fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// One accepted socket.
#[derive(Debug)]
pub(super) struct Connection {
    /// The socket (nonblocking, registered once: READABLE | WRITABLE, and PRIORITY on Linux).
    pub socket: TcpStream,
    /// This connection's id (slot index + generation; the reactor's `slots.rs` says why).
    pub id: ConnId,
    /// The state machine.
    pub state: ConnState,
    /// Bytes waiting to be written.
    pub outbox: Outbox,
    /// Bytes read and not yet decoded: the rest of a read once the connection's share of a
    /// turn was spent (`reactor/read.rs`); decoded before the socket is read again.
    pub unread: Unread,
    /// Readable latch (see the module docs).
    pub readable: bool,
    /// An event reported end of stream, an error or urgent data: read until `WouldBlock`
    /// (see the module docs).
    pub read_to_block: bool,
    /// Writable latch: set by an event, cleared on `WouldBlock`.
    pub writable: bool,
    /// Queued in the reactor's ready list (avoids duplicates).
    pub in_ready: bool,
    /// Queued in the reactor's dirty list (avoids duplicates).
    pub in_dirty: bool,
    /// Queued in the reactor's reap list: it does no more I/O and is removed within a few
    /// turns (the flag keeps it in the list once, and is how the loop knows in O(1)).
    pub in_reap: bool,
    /// The app saw `on_open` and has not yet seen `on_close`.
    pub app_open: bool,
    /// Our write side has been shut down (in `Finishing`, after the final flush).
    pub write_shut: bool,
    /// The peer shut down its write side (a zero-byte read was seen).
    pub peer_eof: bool,
    /// When the last byte arrived (idle timeout).
    pub last_rx: Instant,
    /// When the last Ping frame was queued.
    pub last_ping: Instant,
    /// When the message in progress began (its first frame arrived), as a stamp of the
    /// reactor's wheel (`deadlines.rs`); meaningful only while the decoder has a message in
    /// progress.
    pub message_since: u32,
    /// A message-timeout entry for this connection is on the wheel (at most one is).
    pub message_timer: bool,
    /// Held to `max_payload`: the app raised its limit from `initial_max_payload`, or there
    /// was none when it opened. Until then its `message_bytes` count in the reserve of the
    /// connections that have not authenticated too (`reactor/read.rs`).
    pub full_limit: bool,
    /// Counted in the reactor's pending handshakes: accepted and never upgraded.
    pub pending_handshake: bool,
    /// The app's group for the shares of a turn, 0 for none (`reactor/shares.rs`).
    pub group: u32,
    /// The TLS session, on a TLS listener (see the module docs).
    pub tls: Option<Box<TlsSession>>,
}

/// What a read pump iteration produced.
pub(super) enum ReadResult {
    /// `n` bytes are in the buffer.
    Data(usize),
    /// The peer shut down its write side (a zero-byte read).
    Eof,
    /// Nothing more to read now; the readable latch was cleared.
    WouldBlock,
    /// The socket failed (reset and the like).
    Failed(io::Error),
}

impl Connection {
    /// A freshly accepted socket, in `Handshaking`.
    pub(super) fn new(
        socket: TcpStream,
        id: ConnId,
        now: Instant,
        tls: Option<Box<TlsSession>>,
    ) -> Connection {
        Connection {
            socket,
            id,
            state: ConnState::Handshaking { head: Vec::new() },
            outbox: Outbox::default(),
            unread: Unread::default(),
            readable: true,
            read_to_block: false,
            writable: true,
            in_ready: false,
            in_dirty: false,
            in_reap: false,
            app_open: false,
            write_shut: false,
            peer_eof: false,
            last_rx: now,
            last_ping: now,
            message_since: 0,
            message_timer: false,
            full_limit: false,
            pending_handshake: true,
            group: 0,
            tls,
        }
    }

    /// Whether anything is waiting to be written: the outbox, or a TLS session's ciphertext.
    pub(super) fn owes_bytes(&self) -> bool {
        self.outbox.pending() > 0 || self.tls_owes_bytes()
    }

    /// Whether a TLS session holds ciphertext not yet written.
    pub(super) fn tls_owes_bytes(&self) -> bool {
        self.tls.as_deref().is_some_and(TlsSession::wants_write)
    }

    /// Whether it has a TLS session still in its handshake.
    pub(super) fn tls_handshaking(&self) -> bool {
        self.tls.as_deref().is_some_and(TlsSession::is_handshaking)
    }

    /// Queue a TLS close_notify (once, and only after the handshake). Returns whether one was
    /// queued now; a plain connection has none.
    pub(super) fn queue_close_notify(&mut self) -> bool {
        self.tls
            .as_deref_mut()
            .is_some_and(TlsSession::close_notify)
    }

    /// Whether its decoder has a data message in progress.
    pub(super) fn message_in_progress(&self) -> bool {
        match &self.state {
            ConnState::Open { decoder } | ConnState::Closing { decoder } => {
                decoder.message_in_progress()
            }
            _ => false,
        }
    }

    /// Bytes its decoder holds for a message in progress (0 outside `Open` and `Closing`),
    /// and its unread bytes: what `max_inflight_bytes` counts for it.
    pub(super) fn message_bytes(&self) -> usize {
        let decoding = match &self.state {
            ConnState::Open { decoder } | ConnState::Closing { decoder } => decoder.message_bytes(),
            _ => 0,
        };
        decoding + self.unread.len()
    }

    /// Whether the WebSocket is open for application messages.
    pub(super) fn is_open(&self) -> bool {
        matches!(self.state, ConnState::Open { .. })
    }

    /// Read once into `buf`, handling `Interrupted` and updating the latch.
    pub(super) fn read_into(&mut self, buf: &mut [u8]) -> ReadResult {
        loop {
            match self.socket.read(buf) {
                Ok(0) => return ReadResult::Eof,
                Ok(n) => {
                    // The short-read rule of the module docs, on Linux only: elsewhere urgent
                    // data is not reported apart, and on Windows mio emulates the edges.
                    let short_read_drains = cfg!(any(target_os = "linux", target_os = "android"));
                    if short_read_drains && n < buf.len() && !self.read_to_block {
                        self.readable = false; // drained: the next byte raises a new edge
                    }
                    return ReadResult::Data(n);
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    self.readable = false;
                    return ReadResult::WouldBlock;
                }
                Err(e) => return ReadResult::Failed(e),
            }
        }
    }

    /// Write as much of the outbox as the socket takes. Returns the bytes written, or the
    /// error that ends the connection. Clears the writable latch on `WouldBlock`.
    ///
    /// With TLS: the session's ciphertext first, then the outbox encrypted into the session
    /// (as much as its ciphertext limit takes) and written, until the socket blocks or nothing
    /// is left; the bytes counted are ciphertext. No write ever waits for the socket.
    pub(super) fn write_outbox(&mut self, arena: &FrameArena) -> io::Result<usize> {
        let Some(tls) = self.tls.as_deref_mut() else {
            let written = self.outbox.write_to(&mut self.socket, arena)?;
            if written.blocked {
                self.writable = false;
            }
            return Ok(written.bytes);
        };
        let mut sent = 0;
        loop {
            while tls.wants_write() {
                match tls.write_tls(&mut self.socket) {
                    Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
                    Ok(n) => sent += n,
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                        self.writable = false;
                        return Ok(sent);
                    }
                    Err(e) => return Err(e),
                }
            }
            if self.outbox.pending() == 0 {
                return Ok(sent);
            }
            // `blocked` here means the session's ciphertext limit, not the socket.
            if self.outbox.write_to(&mut tls.encrypting(), arena)?.bytes == 0 {
                return Ok(sent);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// What every socket costs in the reactor's slab, idle.
    #[test]
    fn a_connection_record_is_small() {
        use std::mem::size_of;
        println!(
            "Connection {} (state {}, outbox {}, socket {})",
            size_of::<Connection>(),
            size_of::<ConnState>(),
            size_of::<Outbox>(),
            size_of::<TcpStream>()
        );
        assert!(size_of::<Connection>() <= 208);
    }
}

//! [`Output`]: what writing needs beside a connection (the buffer pool, the turn's frame
//! arena, the list of connections to flush), and the queueing and the write of one
//! connection. When the loop flushes, and what it does with the result, is `write.rs`.

use std::io;
use std::net::Shutdown;

use crate::app::TransportStats;
use crate::transport::connection::{ConnState, Connection};
use crate::transport::outbox::{BufferPool, FrameArena};
use crate::ws::codec::{self, OutKind};

use super::slots::key_of;

/// What writing needs beside the connection itself: the buffer pool, the turn's frame arena
/// and the list of connections to flush.
#[derive(Default)]
pub(super) struct Output {
    /// Emptied outbox buffers for reuse.
    pub(super) pool: BufferPool,
    /// The frames of messages sent to connections this turn, and of earlier turns while a
    /// connection left for this one holds a range of them (see `outbox.rs`, `write.rs`).
    /// Every connection holding a range of it is in `dirty`.
    pub(super) frames: FrameArena,
    /// Connections to flush at the end of the turn, each once (`in_dirty`).
    pub(super) dirty: Vec<usize>,
    /// How many connections with a large queue in `dirty` the writes' share of the last
    /// flush left (their writes wait, first in the next flush: `read.rs` does not count them
    /// as replies owed).
    pub(super) deferred: usize,
    /// Scratch list of the flush: the dirty connections that owe more than a small write,
    /// flushed after the others (`write.rs`). Empty between flushes.
    pub(super) large: Vec<usize>,
}

/// What a flush left for the loop to do.
pub(super) enum Flushed {
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
    pub(super) fn flush(
        &mut self,
        conn: &mut Connection,
        stats: &mut TransportStats,
        max_outbound_buffer: usize,
    ) -> Flushed {
        if conn.writable && conn.owes_bytes() {
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
                // TLS: close_notify goes after everything else, and the write side is shut
                // once the session's last ciphertext is out.
                if conn.queue_close_notify() && conn.writable {
                    match conn.write_outbox(&self.frames) {
                        Ok(n) => stats.bytes_out += n as u64,
                        Err(e) => return Flushed::Failed(e),
                    }
                }
                if conn.tls_owes_bytes() {
                    return Flushed::Done; // the writable latch brings it back
                }
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

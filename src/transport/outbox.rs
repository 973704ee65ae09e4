//! What a connection owes its peer, and the memory behind it.
//!
//! A connection's [`Outbox`] holds two things, written in this order:
//! 1. a buffer of bytes of its own (handshake answers, control frames, anything left over
//!    from an earlier turn), written from an offset so that partial writes are normal;
//! 2. at most one range of the loop turn's [`FrameArena`]. A message sent to many
//!    connections in one turn is framed once into the arena and every receiver queues the
//!    range instead of a copy. Frames framed one after the other extend one range, so a
//!    session member that receives every broadcast of a turn gets all of them in one write.
//!
//! Invariants:
//! - order is kept: before bytes are appended to the buffer, a held range is copied into it
//!   ([`Outbox::settle`]); a new range that does not continue the held one does the same;
//! - the arena is cleared only when no outbox holds a range of it. The reactor keeps every
//!   holder in its list of connections to flush, and a flush writes the range or settles it;
//!   a holder whose flush waits for a later turn keeps its range, and the arena is kept with
//!   it (its prefix that nobody holds dropped, the ranges moved down with it; within a
//!   bound, past which the holders settle: `reactor/write.rs`);
//! - an emptied buffer goes back to the [`BufferPool`], so an idle connection owns no heap
//!   memory.

use std::io::{self, IoSlice, Write};
use std::ops::Range;

use crate::app::Staged;
use crate::ws::codec::{self, OutKind};

/// Buffers kept for reuse.
const POOL_SIZE: usize = 32;
/// A buffer larger than this is freed rather than pooled.
const POOL_MAX_CAPACITY: usize = 16 * 1024;
/// After a turn, an arena that grew past this (a large message) gives its memory back.
const ARENA_KEEP: usize = 1024 * 1024;

/// Emptied outbox buffers, kept so that a connection that sends now and then does not
/// allocate each time.
#[derive(Debug, Default)]
pub(super) struct BufferPool {
    bufs: Vec<Vec<u8>>,
}

impl BufferPool {
    /// A buffer to append to: a pooled one, or a new empty one.
    fn take(&mut self) -> Vec<u8> {
        self.bufs.pop().unwrap_or_default()
    }

    /// Keep `buf` for reuse if it is small and the pool has room; free it otherwise.
    fn give(&mut self, mut buf: Vec<u8>) {
        if buf.capacity() > 0 && buf.capacity() <= POOL_MAX_CAPACITY && self.bufs.len() < POOL_SIZE
        {
            buf.clear();
            self.bufs.push(buf);
        }
    }
}

/// The frames of messages sent during one loop turn, each framed once (kept into the next
/// turns while an outbox holds a range of it, see the module invariants).
#[derive(Debug, Default)]
pub(super) struct FrameArena {
    bytes: Vec<u8>,
    /// The staged message framed last and where its frame is, so that sending it to the next
    /// receiver reuses the frame.
    last: Option<(Staged, Range<usize>)>,
}

impl FrameArena {
    /// The frame of staged message `msg` (whose bytes are `payload`), framed now unless it was
    /// the last one framed.
    pub(super) fn frame(&mut self, msg: &Staged, payload: &[u8]) -> Range<usize> {
        if let Some((staged, range)) = &self.last {
            if staged == msg {
                return range.clone();
            }
        }
        let kind = if msg.is_binary() {
            OutKind::Binary
        } else {
            OutKind::Text
        };
        let start = self.bytes.len();
        codec::encode(&mut self.bytes, kind, payload);
        let range = start..self.bytes.len();
        self.last = Some((msg.clone(), range.clone()));
        range
    }

    /// The staged messages are gone (their arena was cleared): a new `Staged` equal to an old
    /// one is a different message.
    pub(super) fn forget_staged(&mut self) {
        self.last = None;
    }

    /// Forget every frame. Only when no outbox holds a range (see the module invariants).
    pub(super) fn clear(&mut self) {
        self.bytes.clear();
        self.last = None;
        if self.bytes.capacity() > ARENA_KEEP {
            self.bytes = Vec::new();
        }
    }

    /// Bytes framed since it was last cleared.
    pub(super) fn len(&self) -> usize {
        self.bytes.len()
    }

    /// Forget the first `n` bytes, which no outbox holds; every held range must then be
    /// moved down by `n` ([`Outbox::frames_dropped`]).
    pub(super) fn drop_front(&mut self, n: usize) {
        self.bytes.drain(..n);
        self.last = None;
    }

    fn get(&self, range: &Range<usize>) -> &[u8] {
        &self.bytes[range.clone()]
    }
}

/// Bytes queued for one socket (see the module docs).
#[derive(Debug, Default)]
pub(super) struct Outbox {
    /// Bytes of its own; empty and capacity-free while nothing is queued.
    buf: Vec<u8>,
    /// How much of `buf` has been written already.
    offset: usize,
    /// Frames in the turn's arena, queued after `buf`; empty when none.
    frames: Range<usize>,
}

/// What [`Outbox::write_to`] did.
#[derive(Debug, PartialEq, Eq)]
pub(super) struct Written {
    /// Bytes the socket took.
    pub bytes: usize,
    /// The socket said `WouldBlock` before everything was written.
    pub blocked: bool,
}

impl Outbox {
    /// Bytes queued and not yet written.
    pub(super) fn pending(&self) -> usize {
        self.buf.len() - self.offset + self.frames.len()
    }

    /// Whether it holds a range of the turn's arena.
    pub(super) fn holds_frames(&self) -> bool {
        !self.frames.is_empty()
    }

    /// Append bytes produced by `write` after everything queued.
    pub(super) fn append(
        &mut self,
        pool: &mut BufferPool,
        arena: &FrameArena,
        write: impl FnOnce(&mut Vec<u8>),
    ) {
        self.settle(pool, arena);
        if self.buf.capacity() == 0 {
            self.buf = pool.take();
        }
        self.compact();
        write(&mut self.buf);
    }

    /// Drop the written prefix of the buffer once it is at least as long as what is still
    /// unsent: a connection that never drains completely (a slow reader) would otherwise
    /// grow its buffer forever while its unsent bytes stay within `max_outbound_buffer`.
    /// Moving the unsent bytes costs no more than the prefix they replace, so it is O(1)
    /// per byte written, and the buffer never holds more than twice its unsent bytes before
    /// an append.
    fn compact(&mut self) {
        if self.offset > 0 && self.offset >= self.buf.len() - self.offset {
            self.buf.drain(..self.offset);
            self.offset = 0;
        }
    }

    /// Queue `frame`, a range of `arena`, after everything queued.
    pub(super) fn push_frame(
        &mut self,
        pool: &mut BufferPool,
        arena: &FrameArena,
        frame: Range<usize>,
    ) {
        if self.frames.is_empty() {
            self.frames = frame;
        } else if self.frames.end == frame.start {
            self.frames.end = frame.end;
        } else {
            self.settle(pool, arena);
            self.frames = frame;
        }
    }

    /// Where the held range of the arena starts, if it holds one.
    pub(super) fn frames_start(&self) -> Option<usize> {
        (!self.frames.is_empty()).then_some(self.frames.start)
    }

    /// The arena dropped its first `n` bytes ([`FrameArena::drop_front`]), none of them held.
    pub(super) fn frames_dropped(&mut self, n: usize) {
        if !self.frames.is_empty() {
            self.frames = self.frames.start - n..self.frames.end - n;
        }
    }

    /// Copy the held arena range into the buffer, so that the arena may be cleared.
    pub(super) fn settle(&mut self, pool: &mut BufferPool, arena: &FrameArena) {
        if self.frames.is_empty() {
            return;
        }
        if self.buf.capacity() == 0 {
            self.buf = pool.take();
        }
        self.compact();
        self.buf.extend_from_slice(arena.get(&self.frames));
        self.frames = 0..0;
    }

    /// Write as much as `out` takes: the buffer, then the arena range, in one `writev` when
    /// both hold bytes. An error other than `WouldBlock` ends the connection.
    pub(super) fn write_to(
        &mut self,
        out: &mut impl Write,
        arena: &FrameArena,
    ) -> io::Result<Written> {
        let mut written = Written {
            bytes: 0,
            blocked: false,
        };
        while self.pending() > 0 {
            let head = &self.buf[self.offset..];
            let tail = arena.get(&self.frames);
            let result = if head.is_empty() {
                out.write(tail)
            } else if tail.is_empty() {
                out.write(head)
            } else {
                out.write_vectored(&[IoSlice::new(head), IoSlice::new(tail)])
            };
            match result {
                Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
                Ok(n) => {
                    self.consume(n);
                    written.bytes += n;
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    written.blocked = true;
                    break;
                }
                Err(e) => return Err(e),
            }
        }
        Ok(written)
    }

    /// Hand the buffer back to the pool once everything is written.
    pub(super) fn release_if_empty(&mut self, pool: &mut BufferPool) {
        if self.pending() == 0 {
            self.offset = 0;
            self.frames = 0..0;
            pool.give(std::mem::take(&mut self.buf));
        }
    }

    /// Forget everything queued: the socket is gone and nothing more will be written.
    pub(super) fn discard(&mut self, pool: &mut BufferPool) {
        self.offset = self.buf.len();
        self.frames = 0..0;
        self.release_if_empty(pool);
    }

    /// `n` bytes were written: first from the buffer, then from the range.
    fn consume(&mut self, n: usize) {
        let from_buf = n.min(self.buf.len() - self.offset);
        self.offset += from_buf;
        self.frames.start += n - from_buf;
        if self.frames.is_empty() {
            self.frames = 0..0;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::app::Actions;

    /// A writer that takes at most `limit` bytes per call and then blocks after `calls_left`.
    struct Trickle {
        got: Vec<u8>,
        limit: usize,
        calls_left: usize,
        vectored_calls: usize,
    }

    impl Write for Trickle {
        fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
            if self.calls_left == 0 {
                return Err(io::ErrorKind::WouldBlock.into());
            }
            self.calls_left -= 1;
            let n = buf.len().min(self.limit);
            self.got.extend_from_slice(&buf[..n]);
            Ok(n)
        }

        fn write_vectored(&mut self, bufs: &[IoSlice<'_>]) -> io::Result<usize> {
            self.vectored_calls += 1;
            if self.calls_left == 0 {
                return Err(io::ErrorKind::WouldBlock.into());
            }
            self.calls_left -= 1;
            let mut n = 0;
            for b in bufs {
                let take = b.len().min(self.limit - n);
                self.got.extend_from_slice(&b[..take]);
                n += take;
            }
            Ok(n)
        }

        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }

    fn trickle(limit: usize, calls: usize) -> Trickle {
        Trickle {
            got: Vec::new(),
            limit,
            calls_left: calls,
            vectored_calls: 0,
        }
    }

    fn text_frame(payload: &[u8]) -> Vec<u8> {
        let mut v = Vec::new();
        codec::encode(&mut v, OutKind::Text, payload);
        v
    }

    /// A staged-message arena, a frame arena, a pool and one outbox.
    #[derive(Default)]
    struct Setup {
        staged: Actions<()>,
        arena: FrameArena,
        pool: BufferPool,
        outbox: Outbox,
    }

    impl Setup {
        /// Stage `text` as a new message and frame it into the arena.
        fn frame(&mut self, text: &[u8]) -> Range<usize> {
            let msg = self.staged.stage_bytes(text, false);
            self.arena.frame(&msg, self.staged.bytes(&msg))
        }

        fn push_frame(&mut self, frame: Range<usize>) {
            self.outbox.push_frame(&mut self.pool, &self.arena, frame);
        }

        fn append(&mut self, bytes: &[u8]) {
            self.outbox
                .append(&mut self.pool, &self.arena, |b| b.extend_from_slice(bytes));
        }
    }

    #[test]
    fn one_staged_message_is_framed_once_for_every_receiver() {
        let mut t = Setup::default();
        let msg = t.staged.stage_bytes(b"hello", false);
        let a = t.arena.frame(&msg, t.staged.bytes(&msg));
        let b = t.arena.frame(&msg, t.staged.bytes(&msg));
        assert_eq!(a, b);
        assert_eq!(t.arena.get(&a), &text_frame(b"hello")[..]);
        // After the staged arena is cleared, an equal `Staged` is a new message.
        t.arena.forget_staged();
        let c = t.arena.frame(&msg, t.staged.bytes(&msg));
        assert_eq!(c.start, a.end);
    }

    #[test]
    fn consecutive_frames_extend_one_range_and_are_written_in_one_call() {
        let mut t = Setup::default();
        for text in [&b"one"[..], b"two", b"three"] {
            let frame = t.frame(text);
            t.push_frame(frame);
        }
        assert_eq!(t.outbox.buf.capacity(), 0, "no copy was made");
        let mut out = trickle(usize::MAX, 1);
        let w = t.outbox.write_to(&mut out, &t.arena).unwrap();
        let expected = [text_frame(b"one"), text_frame(b"two"), text_frame(b"three")].concat();
        assert_eq!(out.got, expected);
        assert_eq!(w.bytes, expected.len());
        assert!(!w.blocked);
        assert_eq!(t.outbox.pending(), 0);
    }

    #[test]
    fn order_holds_across_own_bytes_and_arena_ranges() {
        let mut t = Setup::default();
        let f1 = t.frame(b"m1");
        let f2 = t.frame(b"m2");
        let f3 = t.frame(b"m3");
        t.append(b"own0");
        t.push_frame(f1);
        t.append(b"own1");
        // f3 does not continue f2's neighbour f1: the range in hand is settled first.
        t.push_frame(f3);
        t.push_frame(f2);
        let expected = [
            b"own0".to_vec(),
            text_frame(b"m1"),
            b"own1".to_vec(),
            text_frame(b"m3"),
            text_frame(b"m2"),
        ]
        .concat();
        assert_eq!(t.outbox.pending(), expected.len());
        // Three bytes per call: the split falls inside both parts, and writev is used.
        let mut out = trickle(3, usize::MAX);
        let w = t.outbox.write_to(&mut out, &t.arena).unwrap();
        assert_eq!(out.got, expected);
        assert_eq!(w.bytes, expected.len());
        assert!(out.vectored_calls > 0);
    }

    #[test]
    fn a_blocked_write_keeps_the_rest_and_settle_frees_the_arena() {
        let mut t = Setup::default();
        let frame = t.frame(&[b'x'; 100]);
        let expected = t.arena.get(&frame).to_vec();
        t.push_frame(frame);
        let mut out = trickle(40, 1);
        let w = t.outbox.write_to(&mut out, &t.arena).unwrap();
        assert_eq!(
            w,
            Written {
                bytes: 40,
                blocked: true
            }
        );
        assert!(t.outbox.holds_frames());
        t.outbox.settle(&mut t.pool, &t.arena);
        assert!(!t.outbox.holds_frames());
        t.arena.clear();
        let mut out2 = trickle(usize::MAX, 1);
        t.outbox.write_to(&mut out2, &t.arena).unwrap();
        assert_eq!([out.got, out2.got].concat(), expected);
        t.outbox.release_if_empty(&mut t.pool);
        assert_eq!(t.outbox.buf.capacity(), 0);
        assert_eq!(
            t.pool.bufs.len(),
            1,
            "the emptied buffer went back to the pool"
        );
    }

    #[test]
    fn a_range_moved_down_with_the_arena_still_writes_its_frames() {
        let mut t = Setup::default();
        let dead = t.frame(&[b'd'; 50]);
        let held = t.frame(b"kept");
        t.push_frame(held.clone());
        t.arena.drop_front(dead.len());
        t.outbox.frames_dropped(dead.len());
        assert_eq!(t.outbox.frames_start(), Some(0));
        // A frame framed after the drop continues the moved range.
        let next = t.frame(b"next");
        assert_eq!(next.start, held.len());
        t.push_frame(next);
        let mut out = trickle(usize::MAX, 1);
        t.outbox.write_to(&mut out, &t.arena).unwrap();
        assert_eq!(out.got, [text_frame(b"kept"), text_frame(b"next")].concat());
        assert_eq!(t.outbox.frames_start(), None);
    }

    #[test]
    fn write_errors_are_returned() {
        struct Broken;
        impl Write for Broken {
            fn write(&mut self, _: &[u8]) -> io::Result<usize> {
                Err(io::ErrorKind::ConnectionReset.into())
            }
            fn flush(&mut self) -> io::Result<()> {
                Ok(())
            }
        }
        let mut t = Setup::default();
        t.append(b"x");
        let err = t.outbox.write_to(&mut Broken, &t.arena).unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::ConnectionReset);
    }

    #[test]
    fn a_reader_that_never_drains_keeps_the_buffer_within_twice_its_unsent_bytes() {
        let mut s = Setup::default();
        let chunk = vec![b'x'; 200_000];
        let mut sink = trickle(150_000, usize::MAX);
        let mut sent = 0usize;
        for _ in 0..200 {
            s.append(&chunk);
            sent += chunk.len();
            // The reader takes a little less than arrives, so the queue never empties.
            sink.calls_left = 1;
            s.outbox.write_to(&mut sink, &s.arena).unwrap();
            let unsent = s.outbox.pending();
            assert!(unsent > 0);
            assert!(
                s.outbox.buf.len() <= 2 * unsent + chunk.len(),
                "{} held for {unsent} unsent",
                s.outbox.buf.len()
            );
        }
        // Order and content survive the compactions.
        sink.calls_left = usize::MAX;
        sink.limit = usize::MAX;
        s.outbox.write_to(&mut sink, &s.arena).unwrap();
        assert_eq!(sink.got.len(), sent);
        assert!(sink.got.iter().all(|&b| b == b'x'));
    }
}

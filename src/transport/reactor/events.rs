//! The host's event queue: what the app emits, waiting for the host's `next_event`.
//!
//! Contract:
//! - The queue holds at most `max_len` events and at most `max_bytes` bytes, each event
//!   counted at the size the app estimates for it ([`crate::app::App::event_bytes`]) when it
//!   is pushed; an event that would pass either bound is dropped and counted.
//! - A queue turned off ([`HostEvents::turn_off`], done by `Reactor::run`, which nothing can
//!   read events from while it runs) keeps nothing and counts nothing: it is not a full queue.
//! - The byte count is exact: it goes up by an event's size when it is queued, down by the same
//!   size when it is taken, and is 0 when the queue is empty.

use std::collections::VecDeque;

/// Events waiting for the host, each with the size it was counted at.
#[derive(Debug)]
pub(super) struct HostEvents<E> {
    queue: VecDeque<(E, usize)>,
    bytes: usize,
    max_len: usize,
    max_bytes: usize,
    on: bool,
    dropped: u64,
}

impl<E> HostEvents<E> {
    /// An empty queue of at most `max_len` events and `max_bytes` bytes.
    pub(super) fn new(max_len: usize, max_bytes: usize) -> HostEvents<E> {
        HostEvents {
            queue: VecDeque::new(),
            bytes: 0,
            max_len,
            max_bytes,
            on: true,
            dropped: 0,
        }
    }

    /// Queue `event`, counted as `size` bytes, unless it would pass a bound (then it is
    /// dropped and counted) or the queue is off.
    pub(super) fn push(&mut self, event: E, size: usize) {
        if !self.on {
            return;
        }
        let fits = self.queue.len() < self.max_len
            && self
                .bytes
                .checked_add(size)
                .is_some_and(|total| total <= self.max_bytes);
        if fits {
            self.bytes += size;
            self.queue.push_back((event, size));
        } else {
            self.dropped += 1;
        }
    }

    /// The oldest event, if any.
    pub(super) fn pop(&mut self) -> Option<E> {
        let (event, size) = self.queue.pop_front()?;
        self.bytes -= size;
        Some(event)
    }

    /// Keep no events from now on, and forget those queued.
    pub(super) fn turn_off(&mut self) {
        self.on = false;
        self.queue = VecDeque::new();
        self.bytes = 0;
    }

    /// Bytes of the queued events, as counted when they were pushed.
    pub(super) fn bytes(&self) -> usize {
        self.bytes
    }

    /// Events dropped because a bound was reached.
    pub(super) fn dropped(&self) -> u64 {
        self.dropped
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bounded_in_count_and_in_bytes() {
        let mut events = HostEvents::new(3, 100);
        events.push('a', 40);
        events.push('b', 70); // 110 > 100: dropped
        events.push('c', 60);
        assert_eq!((events.bytes(), events.dropped()), (100, 1));
        events.push('d', 0);
        events.push('e', 0); // a fourth event: dropped
        assert_eq!(events.dropped(), 2);
        assert_eq!(events.pop(), Some('a'));
        assert_eq!(events.bytes(), 60);
        events.push('f', 40);
        assert_eq!(events.bytes(), 100);
        let rest: Vec<char> = std::iter::from_fn(|| events.pop()).collect();
        assert_eq!(rest, ['c', 'd', 'f']);
        assert_eq!(events.bytes(), 0);
        events.push('g', usize::MAX); // no overflow: dropped
        assert_eq!((events.bytes(), events.dropped()), (0, 3));
    }

    #[test]
    fn a_queue_turned_off_keeps_and_counts_nothing() {
        let mut events = HostEvents::new(10, 1000);
        events.push(1, 10);
        events.turn_off();
        assert_eq!(events.bytes(), 0);
        events.push(2, 10);
        assert_eq!(events.pop(), None);
        assert_eq!((events.bytes(), events.dropped()), (0, 0));
    }
}

//! Handles: how other threads reach a reactor's loop.
//!
//! A [`ReactorHandle`] is `Clone + Send`. It puts a [`Control`] on a channel and wakes the
//! loop through its `mio::Waker`; the loop drains the channel within a budget in the turn
//! that sees the wake, and in the next turns while commands are left. The channel is bounded
//! by a shared count rather than by preallocated slots, so an idle gateway holds no memory
//! for it. A full queue is reported to the sender, never blocks it (the loop thread itself
//! may hold a handle), and a stopped loop is reported too.

use std::fmt;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::mpsc::{channel, Receiver, Sender, TryRecvError};
use std::sync::Arc;

use mio::Waker;

/// Commands queued for one loop at most; beyond it [`HandleError::Full`].
pub(super) const COMMAND_QUEUE: usize = 65_536;

/// What a handle carries to the loop.
#[derive(Debug)]
pub enum Control<C> {
    /// Close every connection with 1001 and stop.
    Shutdown,
    /// A command for the application core.
    App(C),
}

/// Why a handle could not deliver a command.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HandleError {
    /// The loop has stopped (or its owner was dropped); nothing will read the command.
    Stopped,
    /// The loop is not keeping up: the command queue is full. Retry later or shed load.
    Full,
}

impl fmt::Display for HandleError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            HandleError::Stopped => write!(f, "the gateway has stopped"),
            HandleError::Full => write!(f, "the gateway's command queue is full"),
        }
    }
}

impl std::error::Error for HandleError {}

/// A cloneable, thread-safe way to send commands into a reactor's loop.
pub struct ReactorHandle<C> {
    sender: Sender<Control<C>>,
    queued: Arc<AtomicUsize>,
    waker: Arc<Waker>,
}

impl<C> Clone for ReactorHandle<C> {
    fn clone(&self) -> Self {
        ReactorHandle {
            sender: self.sender.clone(),
            queued: Arc::clone(&self.queued),
            waker: Arc::clone(&self.waker),
        }
    }
}

/// The loop's end of the channel.
pub(crate) struct ControlReceiver<C> {
    receiver: Receiver<Control<C>>,
    queued: Arc<AtomicUsize>,
}

impl<C> ControlReceiver<C> {
    /// The next command, if one is queued.
    pub(crate) fn try_recv(&self) -> Result<Control<C>, TryRecvError> {
        let control = self.receiver.try_recv()?;
        self.queued.fetch_sub(1, Ordering::AcqRel);
        Ok(control)
    }
}

/// A channel whose senders refuse more than [`COMMAND_QUEUE`] unread commands.
pub(crate) fn control_channel<C: Send + 'static>(
    waker: Arc<Waker>,
) -> (ReactorHandle<C>, ControlReceiver<C>) {
    let (sender, receiver) = channel();
    let queued = Arc::new(AtomicUsize::new(0));
    let handle = ReactorHandle {
        sender,
        queued: Arc::clone(&queued),
        waker,
    };
    (handle, ControlReceiver { receiver, queued })
}

impl<C> fmt::Debug for ReactorHandle<C> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("ReactorHandle")
    }
}

impl<C: Send + 'static> ReactorHandle<C> {
    /// Queue `control` and wake the loop.
    pub fn send(&self, control: Control<C>) -> Result<(), HandleError> {
        // Reserve a place first, so concurrent senders cannot overshoot the bound.
        if self.queued.fetch_add(1, Ordering::AcqRel) >= COMMAND_QUEUE {
            self.queued.fetch_sub(1, Ordering::AcqRel);
            return Err(HandleError::Full);
        }
        if self.sender.send(control).is_err() {
            self.queued.fetch_sub(1, Ordering::AcqRel);
            return Err(HandleError::Stopped);
        }
        // A failed wake means the poll is gone; the command will never be read.
        self.waker.wake().map_err(|_| HandleError::Stopped)
    }

    /// Ask the loop to shut down (close 1001 to everyone, then stop).
    pub fn shutdown(&self) -> Result<(), HandleError> {
        self.send(Control::Shutdown)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_queue_is_bounded_and_reports_a_stopped_loop() {
        let poll = mio::Poll::new().expect("poll");
        let waker = Arc::new(Waker::new(poll.registry(), mio::Token(0)).expect("waker"));
        let (handle, receiver) = control_channel::<u32>(waker);
        let other = handle.clone();
        for i in 0..COMMAND_QUEUE {
            assert_eq!(handle.send(Control::App(i as u32)), Ok(()));
        }
        assert_eq!(other.send(Control::App(0)), Err(HandleError::Full));
        assert!(matches!(receiver.try_recv(), Ok(Control::App(0))));
        assert_eq!(other.send(Control::Shutdown), Ok(()));
        assert_eq!(handle.send(Control::App(1)), Err(HandleError::Full));
        // A stopped loop drains what is queued and drops its end: senders learn it.
        while receiver.try_recv().is_ok() {}
        drop(receiver);
        assert_eq!(handle.send(Control::App(2)), Err(HandleError::Stopped));
    }
}

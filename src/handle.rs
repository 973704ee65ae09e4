//! Handles: how other threads reach a reactor's loop.
//!
//! A [`ReactorHandle`] is `Clone + Send`. It puts a [`Control`] on a bounded channel and wakes
//! the loop through its `mio::Waker`; the loop drains the channel with a budget each turn. A
//! full channel is reported to the sender, never blocks it (the loop thread itself may hold a
//! handle), and a stopped loop is reported too.

use std::fmt;
use std::sync::mpsc::{Receiver, SyncSender, TrySendError};
use std::sync::Arc;

use mio::Waker;

/// Commands queued for one loop at most; beyond it [`HandleError::Full`].
pub const COMMAND_QUEUE: usize = 65_536;

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
    sender: SyncSender<Control<C>>,
    waker: Arc<Waker>,
}

impl<C> Clone for ReactorHandle<C> {
    fn clone(&self) -> Self {
        ReactorHandle {
            sender: self.sender.clone(),
            waker: Arc::clone(&self.waker),
        }
    }
}

impl<C> fmt::Debug for ReactorHandle<C> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("ReactorHandle")
    }
}

impl<C: Send + 'static> ReactorHandle<C> {
    /// A handle sending on `sender` and waking `waker`.
    pub(crate) fn new(sender: SyncSender<Control<C>>, waker: Arc<Waker>) -> Self {
        ReactorHandle { sender, waker }
    }

    /// Queue `control` and wake the loop.
    pub fn send(&self, control: Control<C>) -> Result<(), HandleError> {
        match self.sender.try_send(control) {
            Ok(()) => {}
            Err(TrySendError::Full(_)) => return Err(HandleError::Full),
            Err(TrySendError::Disconnected(_)) => return Err(HandleError::Stopped),
        }
        // A failed wake means the poll is gone; the command will never be read.
        self.waker.wake().map_err(|_| HandleError::Stopped)
    }

    /// Ask the loop to shut down (close 1001 to everyone, then stop).
    pub fn shutdown(&self) -> Result<(), HandleError> {
        self.send(Control::Shutdown)
    }
}

/// The loop's end of the channel.
pub(crate) type ControlReceiver<C> = Receiver<Control<C>>;

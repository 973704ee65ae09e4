//! What reaches the loop other than bytes: the actions the app pushes, handle commands (turn
//! step 4) and signals.
//!
//! One `mio::Waker` serves every handle. Its wake edge is spent once seen, so when the command
//! budget runs out the loop remembers that more may be pending and polls with timeout 0.

use std::sync::mpsc::TryRecvError;
use std::time::Instant;

use crate::app::{Action, App, CloseReason};
use crate::transport::handle::Control;

use super::deadlines::Timer;
use super::slots::key_of;
use super::{Reactor, RunState};

/// Handle commands drained per turn.
const COMMAND_BUDGET: usize = 1024;

impl<A: App> Reactor<A> {
    /// Apply what the app pushed, including what it pushes while we apply (on_close calls).
    pub(super) fn apply_actions(&mut self, now: Instant) {
        let mut list = std::mem::take(&mut self.action_scratch);
        loop {
            self.actions.take_list(&mut list);
            if list.is_empty() {
                break;
            }
            for action in list.drain(..) {
                match action {
                    Action::Send { conn, msg } => self.send_staged(conn, &msg),
                    Action::Close { conn, code, reason } => {
                        if self.conns.contains(conn) {
                            let why = CloseReason::App(code);
                            self.start_close(key_of(conn), code, &reason, why, now);
                        }
                    }
                    Action::RaiseLimit { conn } => {
                        if let Some(conn) = self.conns.get_mut(conn) {
                            conn.full_limit = true;
                        }
                    }
                    Action::Emit(event) => {
                        let size = self.app.event_bytes(&event);
                        self.host_events.push(event, size);
                    }
                    Action::Timer { at, token } => {
                        self.deadlines.schedule(now, at, Timer::App(token))
                    }
                }
            }
        }
        self.action_scratch = list;
        self.actions.clear();
        self.out.frames.forget_staged();
    }

    /// Step 4: drain handle commands within a budget, when the waker fired or some were left.
    pub(super) fn drain_commands(&mut self, now: Instant) {
        if !self.commands_pending {
            return;
        }
        self.commands_pending = false;
        for _ in 0..COMMAND_BUDGET {
            let Some(commands) = self.commands.as_ref() else {
                return;
            };
            match commands.try_recv() {
                Ok(Control::Shutdown) => self.begin_shutdown(),
                Ok(Control::App(cmd)) => {
                    if self.state == RunState::Running {
                        self.app.on_command(cmd, now, &mut self.actions);
                        self.apply_actions(now);
                    }
                }
                Err(TryRecvError::Empty) | Err(TryRecvError::Disconnected) => return,
            }
        }
        // Budget spent and the wake edge with it: remember there may be more.
        self.commands_pending = true;
    }

    /// A signal arrived: log it and begin shutting down.
    pub(super) fn drain_signals(&mut self) {
        let mut got = false;
        if let Some(signals) = self.signals.as_mut() {
            for signal in signals.pending() {
                log::info!("received signal {signal}");
                got = true;
            }
        }
        if got {
            self.begin_shutdown();
        }
    }
}

//! What reaches the loop other than bytes: the actions the app pushes (the link actions are
//! carried out in `links.rs`), handle commands (turn step 4) and signals (SIGHUP to the hangup hook, the others begin the shutdown).
//!
//! One `mio::Waker` serves every handle. Its wake edge is spent once seen, so when the command
//! budget runs out the loop remembers that more may be pending and polls with timeout 0.

use std::sync::mpsc::TryRecvError;
use std::time::Instant;

use signal_hook::consts::SIGHUP;

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
                            if !conn.full_limit {
                                // What it holds leaves the reserve of those before auth.
                                self.preauth_inflight -= conn.message_bytes();
                                conn.full_limit = true;
                            }
                        }
                    }
                    Action::ShareTurn { conn, group } => {
                        if let Some(conn) = self.conns.get_mut(conn) {
                            conn.group = group;
                        }
                    }
                    Action::Emit(event) => {
                        let size = self.app.event_bytes(&event);
                        self.host_events.push(event, size);
                    }
                    Action::Timer { at, token } => {
                        self.deadlines.schedule(now, at, Timer::App(token))
                    }
                    Action::SetLimits(limits) => {
                        // The upgrade rules are a copy of these settings: keep them in step.
                        self.rules.max_header_bytes = limits.max_header_bytes;
                        self.rules.origins = limits.origins.clone();
                        self.config.set_limits(*limits);
                    }
                    Action::LinkConnect { link, addr } => self.link_connect(link, addr),
                    Action::LinkSend { link, msg } => self.link_send(link, &msg),
                    Action::LinkClose { link } => {
                        self.link_close(link);
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

    /// Signals arrived: log each; SIGTERM or SIGINT begins shutting down, else a SIGHUP
    /// (one call however many arrived) calls the hangup hook, whose actions are applied at
    /// once.
    pub(super) fn drain_signals(&mut self) {
        let (mut stop, mut hangup) = (false, false);
        if let Some(signals) = self.signals.as_mut() {
            for signal in signals.pending() {
                log::info!("received signal {signal}");
                if signal == SIGHUP {
                    hangup = true;
                } else {
                    stop = true;
                }
            }
        }
        if stop {
            self.begin_shutdown();
        } else if hangup && self.state == RunState::Running {
            if let Some(mut hook) = self.hangup.take() {
                let now = Instant::now();
                hook(&mut self.app, now, &mut self.actions);
                self.hangup = Some(hook);
                self.apply_actions(now);
            }
        }
    }
}

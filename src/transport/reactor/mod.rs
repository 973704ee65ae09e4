//! The event loop: one `mio::Poll`, a listener, the slots of [`Connection`]s, the app's
//! outbound links and one timer wheel, driving an [`App`].
//!
//! One turn of [`Reactor::turn`], each step one call there:
//! 1. poll, with timeout 0 when work is left over (budget hit, commands pending, flush or
//!    accept due, a link to connect, read or write), else until the next timer or deadline;
//! 2. events only set latches (listener ready, waker, a connection's or a link's readable /
//!    writable);
//!    an event with a stale token is ignored; signals are acted on here: SIGTERM and SIGINT
//!    begin the shutdown, SIGHUP calls the hangup hook (`commands.rs`);
//! 3. pump the outbound links first: end their connects, read each within a byte budget
//!    (`links.rs`); then every ready connection within a byte budget and a share of the
//!    turn (`TURN_SHARE` of its messages; the rest of that read is kept for its next turn,
//!    decoded before its socket is read again); one left unfinished stays in the ready
//!    queue with its latch set or its unread bytes (`read.rs`, `upgrade.rs`; on a TLS
//!    listener the ciphertext goes through the connection's session first, `tls.rs`, and
//!    the TLS handshakes of a turn stop after `HANDSHAKE_SHARE`, the rest left for the next);
//! 4. drain handle commands within a budget (`commands.rs`);
//! 5. expire timers: handshake deadline, heartbeat and idle timeout, message timeout, close
//!    linger, app timers (`expire.rs`, on the wheel of `deadlines.rs`);
//! 6. flush the links with bytes queued (`links.rs`), then every connection whose outbox
//!    grew, the closing ones within a budget (`write.rs`);
//! 7. accept new sockets (`accept.rs`);
//! 8. reap connections that are done, within a budget, and stop when a shutdown is over
//!    (`close.rs`).
//!
//! A mass close (a reload revoking a token thousands of connections use, a shutdown) is
//! spread over turns by the budgets of steps 6 and 8: every close frame is written and every
//! socket removed, a few hundred a turn, while the open connections are served in between.
//!
//! The transport's bounds: `initial_max_payload` until the app raises a connection's limit,
//! `max_inflight_bytes` and `message_timeout` on messages in progress (`read.rs`,
//! `expire.rs`), `max_pending_handshakes` (`accept.rs`), and the host's event queue, bounded
//! in count and bytes and off under [`Reactor::run`] (`events.rs`).
//!
//! Connections live in generation-stamped slots, so that a stale event, timer, action or
//! command never touches a newer connection in a reused slot: the rule is in `slots.rs`. The
//! links keep a generation per id the same way, with tokens in a range no connection's token
//! takes (`link.rs`).
//!
//! The reactor never panics on what a peer sends: bad input closes that connection with the
//! close code or HTTP status it deserves; I/O errors on one socket end that socket only.

mod accept;
mod close;
mod commands;
mod config;
mod deadlines;
mod events;
mod expire;
mod link;
mod links;
mod listener;
mod output;
mod read;
mod ready;
mod shares;
mod slots;
mod tls;
mod upgrade;
mod write;

use std::collections::VecDeque;
use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use mio::net::TcpListener;
use mio::{Events, Interest, Poll, Token, Waker};

use crate::app::{Action, Actions, App, ConnId, TransportStats};
use crate::transport::connection::Connection;
use crate::transport::handle::{control_channel, ControlReceiver, ReactorHandle};
use crate::ws::handshake::UpgradeRules;

pub use config::TransportConfig;

use deadlines::Deadlines;
use events::HostEvents;
use link::Links;
use output::Output;
use ready::{queue_ready, READ_BUF, TLS_READ_BUF};
use shares::TurnShares;
use slots::Slots;

const LISTENER: Token = Token(usize::MAX - 1);
const WAKER: Token = Token(usize::MAX - 2);
const SIGNALS: Token = Token(usize::MAX - 3);

/// What [`Reactor::on_hangup`] calls when SIGHUP arrives.
type HangupHook<A> = Box<dyn FnMut(&mut A, Instant, &mut Actions<<A as App>::Event>) + Send>;

/// Whether the loop runs, is shutting down, or has stopped.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RunState {
    /// Serving.
    Running,
    /// Close frames sent; waiting for handshakes to finish until the deadline.
    ShuttingDown,
    /// Every connection is gone; `turn` does nothing more.
    Stopped,
}

/// The event loop driving an [`App`].
pub struct Reactor<A: App> {
    poll: Poll,
    events: Events,
    listener: TcpListener,
    local_addr: SocketAddr,
    /// `None` once stopped, so handles learn that nothing will read their commands.
    commands: Option<ControlReceiver<A::Command>>,
    handle: ReactorHandle<A::Command>,
    signals: Option<signal_hook_mio::v1_0::Signals>,
    /// Called on SIGHUP (see [`Reactor::on_hangup`]).
    hangup: Option<HangupHook<A>>,
    config: TransportConfig,
    rules: UpgradeRules,
    /// The connections, in generation-stamped slots (see `slots.rs`).
    conns: Slots<Connection>,
    /// The app's outbound links (`link.rs`, driven by `links.rs`).
    links: Links,
    deadlines: Deadlines,
    app: A,
    actions: Actions<A::Event>,
    action_scratch: Vec<Action<A::Event>>,
    host_events: HostEvents<A::Event>,
    read_buf: Vec<u8>,
    /// Ciphertext read from a TLS socket before the session takes it (empty without TLS).
    tls_buf: Vec<u8>,
    /// Plaintext a TLS session yielded, on its way to the request head or the decoder.
    tls_plain: Vec<u8>,
    /// Connections to pump, each once (`in_ready`).
    ready: VecDeque<usize>,
    /// The buffer pool, the turn's frame arena and the connections to flush.
    out: Output,
    /// Connections to remove, oldest first, each once (`in_reap`); at most `REAP_BUDGET` a
    /// turn (`close.rs`).
    reap: VecDeque<usize>,
    listener_ready: bool,
    accept_paused_until: Option<Instant>,
    accept_failing: bool,
    commands_pending: bool,
    open_connections: usize,
    /// Sockets whose `pending_handshake` is set (`max_pending_handshakes` bounds it).
    pending_handshakes: usize,
    /// The pending handshakes in accept order, oldest first, with entries gone stale
    /// (upgraded, reaped) among them, swept past twice `max_pending_handshakes` (`accept.rs`).
    pending_order: VecDeque<ConnId>,
    /// The sum of every connection's `message_bytes` (`max_inflight_bytes` bounds it).
    inflight: usize,
    /// The part of `inflight` of connections without `full_limit` (the reserve of those that
    /// have not authenticated bounds it, `read.rs`).
    preauth_inflight: usize,
    /// When the share of the turn of the connection being pumped ends (`read.rs`).
    share_ends: Instant,
    /// What each group of connections spent of its share in this turn, and the connections
    /// kept for the next (`shares.rs`).
    shares: TurnShares,
    /// Whether other connections had bytes to flush when that pump began (`read.rs`).
    owed_before: bool,
    /// The time this turn's step 3 spent feeding TLS sessions in their handshake (`tls.rs`);
    /// past `HANDSHAKE_SHARE` the others in theirs wait for the next turn (`read.rs`).
    handshake_spent: Duration,
    state: RunState,
    shutdown_deadline: Option<Instant>,
    stats: TransportStats,
}

impl<A: App> Reactor<A> {
    /// Bind the listener (with `SO_REUSEPORT` when `config.reuse_port`) and set up the loop.
    /// Starts no thread.
    pub fn bind(config: TransportConfig, app: A) -> io::Result<Reactor<A>> {
        let poll = Poll::new()?;
        let mut listener = listener::bind(config.addr, config.reuse_port)?;
        let local_addr = listener.local_addr()?;
        poll.registry()
            .register(&mut listener, LISTENER, Interest::READABLE)?;
        let waker = Arc::new(Waker::new(poll.registry(), WAKER)?);
        let (handle, commands) = control_channel(waker);
        let now = Instant::now();
        let rules = UpgradeRules {
            path: config.path.clone(),
            max_header_bytes: config.max_header_bytes,
            origins: config.origins.clone(),
        };
        let tls_buf = if config.tls.is_some() {
            vec![0; TLS_READ_BUF]
        } else {
            Vec::new()
        };
        Ok(Reactor {
            poll,
            events: Events::with_capacity(1024),
            listener,
            local_addr,
            commands: Some(commands),
            handle,
            signals: None,
            hangup: None,
            rules,
            host_events: HostEvents::new(config.event_queue, config.event_queue_bytes),
            config,
            conns: Slots::new(),
            links: Links::default(),
            deadlines: Deadlines::new(now),
            app,
            actions: Actions::new(),
            action_scratch: Vec::new(),
            read_buf: vec![0; READ_BUF],
            tls_buf,
            tls_plain: Vec::new(),
            ready: VecDeque::new(),
            out: Output::default(),
            reap: VecDeque::new(),
            listener_ready: true,
            accept_paused_until: None,
            accept_failing: false,
            commands_pending: false,
            open_connections: 0,
            pending_handshakes: 0,
            pending_order: VecDeque::new(),
            inflight: 0,
            preauth_inflight: 0,
            share_ends: now,
            shares: TurnShares::default(),
            owed_before: false,
            handshake_spent: Duration::ZERO,
            state: RunState::Running,
            shutdown_deadline: None,
            stats: TransportStats::default(),
        })
    }

    /// The address the listener is bound to (with the real port when 0 was asked).
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// Whether the listener speaks TLS (`wss://`, `https://`).
    pub fn is_tls(&self) -> bool {
        self.config.tls.is_some()
    }

    /// A handle for other threads.
    #[must_use]
    pub fn handle(&self) -> ReactorHandle<A::Command> {
        self.handle.clone()
    }

    /// The application core.
    pub fn app(&self) -> &A {
        &self.app
    }

    /// The application core, mutably (e.g. to register handlers before running).
    pub fn app_mut(&mut self) -> &mut A {
        &mut self.app
    }

    /// Whether the loop runs, shuts down or has stopped.
    pub fn run_state(&self) -> RunState {
        self.state
    }

    /// The transport's counters as of now.
    pub fn stats(&self) -> TransportStats {
        let mut stats = self.stats.clone();
        stats.open_connections = self.open_connections as u64;
        stats.sockets = self.conns.len() as u64;
        stats.timers_pending = self.deadlines.len() as u64;
        stats.bytes_queued = self
            .conns
            .iter()
            .map(|(_, c)| c.outbox.pending() as u64)
            .sum();
        stats.events_dropped = self.host_events.dropped();
        stats.events_queued_bytes = self.host_events.bytes() as u64;
        stats.pending_handshakes = self.pending_handshakes as u64;
        stats.inflight_bytes = self.inflight as u64;
        stats.preauth_inflight_bytes = self.preauth_inflight as u64;
        debug_assert_eq!(
            self.inflight,
            self.conns
                .iter()
                .map(|(_, c)| c.message_bytes())
                .sum::<usize>(),
            "the in-flight count is the sum of what the decoders hold and what is unread"
        );
        debug_assert_eq!(
            self.preauth_inflight,
            self.conns
                .iter()
                .filter(|(_, c)| !c.full_limit)
                .map(|(_, c)| c.message_bytes())
                .sum::<usize>(),
            "the reserve's count is the sum of what connections before auth hold"
        );
        stats
    }

    /// The next event for the host program, if any.
    pub fn next_event(&mut self) -> Option<A::Event> {
        self.host_events.pop()
    }

    /// The poll's file descriptor, for a host that waits on it in its own epoll set.
    #[cfg(unix)]
    pub fn raw_fd(&self) -> std::os::unix::io::RawFd {
        use std::os::unix::io::AsRawFd;
        self.poll.as_raw_fd()
    }

    /// Shut down on SIGTERM and SIGINT (the signals are watched by this loop's poll).
    pub fn shutdown_on_signals(&mut self) -> io::Result<()> {
        self.watch_signals(&[signal_hook::consts::SIGTERM, signal_hook::consts::SIGINT])
    }

    /// Call `hook` with the app on this loop's thread whenever SIGHUP arrives (watched by
    /// this loop's poll, like [`Reactor::shutdown_on_signals`]; several SIGHUPs that arrive
    /// together make one call). The actions it pushes are applied right after it returns.
    /// A second call replaces the hook.
    pub fn on_hangup<F>(&mut self, hook: F) -> io::Result<()>
    where
        F: FnMut(&mut A, Instant, &mut Actions<A::Event>) + Send + 'static,
    {
        self.watch_signals(&[signal_hook::consts::SIGHUP])?;
        self.hangup = Some(Box::new(hook));
        Ok(())
    }

    /// Watch `signals` too, on the one signal source this loop's poll reads.
    fn watch_signals(&mut self, signals: &[std::os::raw::c_int]) -> io::Result<()> {
        if let Some(watched) = &self.signals {
            return signals.iter().try_for_each(|&s| watched.add_signal(s));
        }
        let mut watched = signal_hook_mio::v1_0::Signals::new(signals)?;
        self.poll
            .registry()
            .register(&mut watched, SIGNALS, Interest::READABLE)?;
        self.signals = Some(watched);
        Ok(())
    }

    /// Call `act` with the app now, on this loop's thread, and apply the actions it pushes
    /// (what it sends goes out in the next turn). For a host that drives the loop itself
    /// and wants to act on the app between turns.
    pub fn with_app<R>(
        &mut self,
        act: impl FnOnce(&mut A, Instant, &mut Actions<A::Event>) -> R,
    ) -> R {
        let now = Instant::now();
        let result = act(&mut self.app, now, &mut self.actions);
        self.apply_actions(now);
        result
    }

    /// Run turns until the loop has stopped. Nothing can read events while this runs, so the
    /// event queue is turned off first: what the app emits from then on is not kept (the
    /// app's [`Actions::wants_events`] says so), and [`Reactor::next_event`] returns `None`.
    pub fn run(&mut self) -> io::Result<()> {
        self.host_events.turn_off();
        self.actions.turn_events_off();
        while self.state != RunState::Stopped {
            self.turn(None)?;
        }
        Ok(())
    }

    /// One turn of the loop (the steps are in the module docs); `timeout` bounds how long it
    /// may wait for events (`None`: until the next timer or event).
    pub fn turn(&mut self, timeout: Option<Duration>) -> io::Result<()> {
        if self.state == RunState::Stopped {
            return Ok(());
        }
        // 1. Poll.
        self.poll_events(timeout)?;
        // 2. Events only set latches.
        self.set_latches();
        let now = Instant::now();
        // 3. Pump ready connections within the read budget.
        self.pump_ready(now);
        // 4. Drain handle commands within the command budget.
        self.drain_commands(now);
        // 5. Expire timers.
        self.expire_timers(now);
        // 6. Flush every connection whose outbox grew.
        self.flush_dirty();
        // 7. Accept new sockets.
        self.accept(now);
        // 8. Reap what is done; stop when a shutdown is over.
        self.reap(now);
        Ok(())
    }

    /// Step 1: wait for events, no longer than `host` allows.
    fn poll_events(&mut self, host: Option<Duration>) -> io::Result<()> {
        let wait = self.poll_timeout(host, Instant::now());
        match self.poll.poll(&mut self.events, wait) {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == io::ErrorKind::Interrupted => Ok(()),
            Err(e) => Err(e),
        }
    }

    /// Zero when work is left over; else until the earliest of the next timer, the end of an
    /// accept back-off, the shutdown deadline and `host`.
    fn poll_timeout(&self, host: Option<Duration>, now: Instant) -> Option<Duration> {
        let busy = !self.ready.is_empty()
            || self.shares.any_deferred()
            || self.commands_pending
            || !self.out.dirty.is_empty()
            || !self.reap.is_empty()
            || self.links.busy()
            || (self.listener_ready
                && self.state == RunState::Running
                && self.accept_paused_until.is_none());
        if busy {
            return Some(Duration::ZERO);
        }
        let mut deadline = self.deadlines.next_expiry();
        for extra in [self.accept_paused_until, self.shutdown_deadline]
            .into_iter()
            .flatten()
        {
            deadline = Some(deadline.map_or(extra, |d| d.min(extra)));
        }
        let until_timer = deadline.map(|d| d.saturating_duration_since(now));
        match (host, until_timer) {
            (Some(h), Some(t)) => Some(h.min(t)),
            (Some(h), None) => Some(h),
            (None, t) => t,
        }
    }

    /// Step 2: set the latches the events report, and begin the shutdown a signal asks for.
    /// The rule for the readable latch is in `connection.rs`.
    fn set_latches(&mut self) {
        let mut woken = false;
        let mut signalled = false;
        for event in self.events.iter() {
            match event.token() {
                LISTENER => self.listener_ready = true,
                WAKER => woken = true,
                SIGNALS => signalled = true,
                token if Links::is_link_token(token) => {
                    let Some(link) = self.links.by_token_mut(token) else {
                        continue; // stale: that link was closed
                    };
                    if event.is_readable() || event.is_read_closed() || event.is_error() {
                        link.readable = true;
                    }
                    if event.is_writable() || event.is_write_closed() || event.is_error() {
                        link.writable = true;
                    }
                }
                token => {
                    let Some(conn) = self.conns.by_token_mut(token) else {
                        continue; // stale: the slot was reused
                    };
                    if conn.in_reap {
                        continue; // no more I/O: it is about to go
                    }
                    let read_to_block =
                        event.is_read_closed() || event.is_error() || event.is_priority();
                    if event.is_readable() || read_to_block {
                        conn.readable = true;
                        conn.read_to_block |= read_to_block;
                        queue_ready(&mut self.ready, conn);
                    }
                    if event.is_writable() || event.is_write_closed() {
                        conn.writable = true;
                        if conn.owes_bytes() {
                            self.out.mark_dirty(conn);
                        }
                    }
                }
            }
        }
        if woken {
            self.commands_pending = true;
        }
        if signalled {
            self.drain_signals();
        }
    }
}

//! The event loop: one `mio::Poll`, a listener, a slab of [`Connection`]s and one timer
//! wheel, driving an [`App`].
//!
//! One turn of [`Reactor::turn`]:
//! 1. poll, with timeout 0 when work is left over, else until the next timer;
//! 2. events only set latches (listener ready, waker, a connection's readable / writable);
//!    an event whose token generation does not match its slot is stale and ignored;
//! 3. pump every ready connection within a byte budget; one left unfinished stays ready;
//! 4. drain handle commands within a budget;
//! 5. expire timers (handshake deadline, heartbeat and idle timeout, close linger, app timers);
//! 6. flush every connection whose outbox grew;
//! 7. accept new sockets;
//! 8. reap connections that are done.
//!
//! Tokens carry slab index + generation (`ConnId`); the generation of a slot is bumped when
//! its connection is removed, so a stale event, timer or command never touches a new
//! connection in a reused slot.
//!
//! The reactor never panics on what a peer sends: bad input closes that connection with the
//! close code or HTTP status it deserves; I/O errors on one socket end that socket only.

use std::collections::VecDeque;
use std::io;
use std::net::{Shutdown, SocketAddr};
use std::sync::mpsc::TryRecvError;
use std::sync::Arc;
use std::time::{Duration, Instant};

use mio::net::TcpListener;
use mio::{Events, Interest, Poll, Token, Waker};
use slab::Slab;

use crate::app::{Action, Actions, App, CloseReason, ConnId, TransportStats};
use crate::transport::connection::{ConnState, Connection, ReadResult};
use crate::transport::handle::{control_channel, Control, ControlReceiver, ReactorHandle};
use crate::transport::outbox::{BufferPool, FrameArena};
use crate::transport::timer::TimerWheel;
use crate::ws::codec::{self, CodecLimits, Incoming, OutKind};
use crate::ws::handshake::{self, Outcome, Refusal, UpgradeRules};
use crate::ws::origin::OriginPolicy;

const LISTENER: Token = Token(usize::MAX - 1);
const WAKER: Token = Token(usize::MAX - 2);
const SIGNALS: Token = Token(usize::MAX - 3);

/// Size of the read buffer shared by every connection.
const READ_BUF: usize = 64 * 1024;
/// Bytes read from one connection per turn before the others get their turn.
const READ_BUDGET: usize = 256 * 1024;
/// Handle commands drained per turn.
const COMMAND_BUDGET: usize = 1024;
/// Sockets accepted per turn.
const ACCEPT_BUDGET: usize = 256;
/// Connections the kernel may hold for `accept` (capped by `net.core.somaxconn`). mio and the
/// standard library listen with 128: a burst of clients reconnecting at once overflows that,
/// and each overflowed SYN waits a second to be retransmitted.
const LISTEN_BACKLOG: i32 = 4096;
/// What every accepted socket is registered for. On Linux also urgent data (`EPOLLPRI`): a
/// read stops at the urgent mark with more data queued behind it, so such a connection must
/// be read until `WouldBlock` (see `connection.rs`).
#[cfg(any(target_os = "linux", target_os = "android"))]
const SOCKET_INTEREST: Interest = Interest::READABLE
    .add(Interest::WRITABLE)
    .add(Interest::PRIORITY);
#[cfg(not(any(target_os = "linux", target_os = "android")))]
const SOCKET_INTEREST: Interest = Interest::READABLE.add(Interest::WRITABLE);
/// Timer wheel granularity.
const TICK: Duration = Duration::from_millis(5);
/// After an accept error such as running out of descriptors, wait this long before retrying.
const ACCEPT_BACKOFF: Duration = Duration::from_millis(50);
/// Timers are coalesced: a deadline is rounded up by at most 1/16 of its distance from now,
/// and never by more than this, so that thousands of connections opened over a few seconds
/// share a few wakeups instead of one each.
const COALESCE_MAX: Duration = Duration::from_millis(100);
/// How long a refused or finished socket is kept to drain when `close_timeout` is off.
const DEFAULT_LINGER: Duration = Duration::from_secs(1);

/// The transport's settings (taken from [`crate::config::Config`] by `Gateway`).
#[derive(Clone, Debug)]
pub struct TransportConfig {
    /// Address to listen on.
    pub addr: SocketAddr,
    /// WebSocket endpoint path.
    pub path: String,
    /// Open WebSocket connections at most (503 beyond).
    pub max_connections: usize,
    /// Largest HTTP request head (431 beyond).
    pub max_header_bytes: usize,
    /// Origin policy for upgrades (403 when refused).
    pub origins: OriginPolicy,
    /// Drop a socket whose upgrade is not complete by then.
    pub handshake_timeout: Option<Duration>,
    /// Send a Ping frame this often.
    pub heartbeat_interval: Option<Duration>,
    /// Close with 1001 after this long without any inbound byte.
    pub client_timeout: Option<Duration>,
    /// Wait this long for the peer's close frame (and for draining) before dropping.
    pub close_timeout: Option<Duration>,
    /// Largest frame or message (1009 beyond).
    pub max_payload: usize,
    /// Unsent bytes per connection at most (1008 `Slow consumer` beyond).
    pub max_outbound_buffer: usize,
    /// Capacity of the host's event queue.
    pub event_queue: usize,
}

impl TransportConfig {
    /// Settings for `addr` with the protocol's defaults (path `/ws`, local origins).
    pub fn new(addr: SocketAddr) -> TransportConfig {
        TransportConfig {
            addr,
            path: "/ws".to_string(),
            max_connections: 10_000,
            max_header_bytes: 8192,
            origins: OriginPolicy::allow_all(),
            handshake_timeout: Some(Duration::from_secs(5)),
            heartbeat_interval: Some(Duration::from_secs(30)),
            client_timeout: Some(Duration::from_secs(60)),
            close_timeout: Some(Duration::from_secs(5)),
            max_payload: 10 * 1024 * 1024,
            max_outbound_buffer: 4 * 1024 * 1024,
            event_queue: 4096,
        }
    }
}

/// What a timer wheel entry stands for.
#[derive(Clone, Copy, Debug)]
enum Timer {
    /// The upgrade must be done by now.
    Handshake(ConnId),
    /// Heartbeat: decide between idle close, ping, or re-arming.
    Heartbeat(ConnId),
    /// Closing or finishing: drop the socket now.
    Linger(ConnId),
    /// The app's own timer.
    App(u64),
}

fn token_of(id: ConnId) -> Token {
    Token(((id.generation as usize) << 32) | id.index as usize)
}

fn id_of(token: Token) -> ConnId {
    ConnId {
        index: (token.0 & 0xffff_ffff) as u32,
        generation: (token.0 >> 32) as u32,
    }
}

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
    config: TransportConfig,
    rules: UpgradeRules,
    limits: CodecLimits,
    conns: Slab<Connection>,
    /// Generation of each slab slot, bumped when its connection is removed.
    generations: Vec<u32>,
    timers: TimerWheel<Timer>,
    /// The instant coalesced deadlines are counted from.
    timer_epoch: Instant,
    expired: Vec<Timer>,
    app: A,
    actions: Actions<A::Event>,
    action_scratch: Vec<Action<A::Event>>,
    host_events: VecDeque<A::Event>,
    read_buf: Vec<u8>,
    ready: VecDeque<usize>,
    dirty: Vec<usize>,
    reap: Vec<usize>,
    /// Emptied outbox buffers for reuse.
    pool: BufferPool,
    /// This turn's frames of messages sent to connections (see `outbox.rs`). Every connection
    /// holding a range of it is in `dirty`.
    frames: FrameArena,
    listener_ready: bool,
    accept_paused_until: Option<Instant>,
    accept_failing: bool,
    commands_pending: bool,
    open_connections: usize,
    state: RunState,
    shutdown_deadline: Option<Instant>,
    stats: TransportStats,
}

impl<A: App> Reactor<A> {
    /// Bind the listener and set up the loop. Starts no thread.
    pub fn bind(config: TransportConfig, app: A) -> io::Result<Reactor<A>> {
        let poll = Poll::new()?;
        let mut listener = TcpListener::bind(config.addr)?;
        widen_backlog(&listener)?;
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
        let limits = CodecLimits {
            max_payload: config.max_payload,
        };
        Ok(Reactor {
            poll,
            events: Events::with_capacity(1024),
            listener,
            local_addr,
            commands: Some(commands),
            handle,
            signals: None,
            rules,
            limits,
            config,
            conns: Slab::new(),
            generations: Vec::new(),
            timers: TimerWheel::new(TICK, now),
            timer_epoch: now,
            expired: Vec::new(),
            app,
            actions: Actions::new(),
            action_scratch: Vec::new(),
            host_events: VecDeque::new(),
            read_buf: vec![0; READ_BUF],
            ready: VecDeque::new(),
            dirty: Vec::new(),
            reap: Vec::new(),
            pool: BufferPool::default(),
            frames: FrameArena::default(),
            listener_ready: true,
            accept_paused_until: None,
            accept_failing: false,
            commands_pending: false,
            open_connections: 0,
            state: RunState::Running,
            shutdown_deadline: None,
            stats: TransportStats::default(),
        })
    }

    /// The address the listener is bound to (with the real port when 0 was asked).
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// A handle for other threads.
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
        stats.timers_pending = self.timers.len() as u64;
        stats.bytes_queued = self
            .conns
            .iter()
            .map(|(_, c)| c.outbox.pending() as u64)
            .sum();
        stats
    }

    /// The next event for the host program, if any.
    pub fn next_event(&mut self) -> Option<A::Event> {
        self.host_events.pop_front()
    }

    /// The poll's file descriptor, for a host that waits on it in its own epoll set.
    #[cfg(unix)]
    pub fn raw_fd(&self) -> std::os::unix::io::RawFd {
        use std::os::unix::io::AsRawFd;
        self.poll.as_raw_fd()
    }

    /// Shut down on SIGTERM and SIGINT (the signals are watched by this loop's poll).
    pub fn shutdown_on_signals(&mut self) -> io::Result<()> {
        let mut signals = signal_hook_mio::v1_0::Signals::new([
            signal_hook::consts::SIGTERM,
            signal_hook::consts::SIGINT,
        ])?;
        self.poll
            .registry()
            .register(&mut signals, SIGNALS, Interest::READABLE)?;
        self.signals = Some(signals);
        Ok(())
    }

    /// Run turns until the loop has stopped.
    pub fn run(&mut self) -> io::Result<()> {
        while self.state != RunState::Stopped {
            self.turn(None)?;
        }
        Ok(())
    }

    /// Begin shutting down: close 1001 to every open connection, drop the others, stop
    /// accepting, and stop once every close handshake is done or `close_timeout` passed.
    pub fn begin_shutdown(&mut self) {
        if self.state != RunState::Running {
            return;
        }
        let now = Instant::now();
        log::info!(
            "shutting down: closing {} connections",
            self.open_connections
        );
        self.state = RunState::ShuttingDown;
        self.shutdown_deadline = Some(now + self.config.close_timeout.unwrap_or(Duration::ZERO));
        let keys: Vec<usize> = self.conns.iter().map(|(key, _)| key).collect();
        for key in keys {
            let open = self.conns.get(key).is_some_and(|c| c.is_open());
            if open {
                self.start_close(
                    key,
                    1001,
                    "Server shutting down",
                    CloseReason::Shutdown,
                    now,
                );
            } else if matches!(
                self.conns.get(key).map(|c| &c.state),
                Some(ConnState::Handshaking { .. })
            ) {
                self.mark_reap(key);
            }
        }
        self.apply_actions(now);
    }

    /// One turn of the loop; `timeout` bounds how long it may wait for events (`None`: until
    /// the next timer or event).
    pub fn turn(&mut self, timeout: Option<Duration>) -> io::Result<()> {
        if self.state == RunState::Stopped {
            return Ok(());
        }
        let wait = self.poll_timeout(timeout, Instant::now());
        match self.poll.poll(&mut self.events, wait) {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
        // 2. Latches only.
        let mut woken = false;
        let mut signalled = false;
        for event in self.events.iter() {
            match event.token() {
                LISTENER => self.listener_ready = true,
                WAKER => woken = true,
                SIGNALS => signalled = true,
                token => {
                    let id = id_of(token);
                    let key = id.index as usize;
                    let Some(conn) = self.conns.get_mut(key) else {
                        continue;
                    };
                    if conn.id != id {
                        continue; // stale: the slot was reused
                    }
                    let read_to_block =
                        event.is_read_closed() || event.is_error() || event.is_priority();
                    if event.is_readable() || read_to_block {
                        conn.readable = true;
                        conn.read_to_block |= read_to_block;
                        if !conn.in_ready {
                            conn.in_ready = true;
                            self.ready.push_back(key);
                        }
                    }
                    if event.is_writable() || event.is_write_closed() {
                        conn.writable = true;
                        if conn.outbox.pending() > 0 && !conn.in_dirty {
                            conn.in_dirty = true;
                            self.dirty.push(key);
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
        let now = Instant::now();
        // 3. Pump ready connections.
        self.pump_ready(now);
        // 4. Commands.
        if self.commands_pending {
            self.drain_commands(now);
        }
        // 5. Timers.
        self.expire_timers(now);
        // 6. Flush.
        self.flush_dirty();
        // 7. Accept.
        if self.state == RunState::Running && self.listener_ready {
            self.accept(now);
        }
        // 8. Reap.
        self.reap_done();
        if self.state == RunState::ShuttingDown
            && (self.close_handshakes_done() || self.shutdown_deadline.is_some_and(|d| now >= d))
        {
            let keys: Vec<usize> = self.conns.iter().map(|(key, _)| key).collect();
            for key in keys {
                self.mark_reap(key);
            }
            self.reap_done();
            self.state = RunState::Stopped;
            // Drop what nobody will handle, then the receiver itself: handles now get Stopped.
            if let Some(commands) = self.commands.take() {
                while commands.try_recv().is_ok() {}
            }
            log::info!("stopped");
        }
        Ok(())
    }

    /// Whether every remaining socket has sent all it will send, its close frame included,
    /// and needs nothing more from its peer.
    fn close_handshakes_done(&self) -> bool {
        self.conns
            .iter()
            .all(|(_, c)| matches!(c.state, ConnState::Finishing) && c.write_shut)
    }

    fn poll_timeout(&self, host: Option<Duration>, now: Instant) -> Option<Duration> {
        let busy = !self.ready.is_empty()
            || self.commands_pending
            || !self.dirty.is_empty()
            || (self.listener_ready
                && self.state == RunState::Running
                && self.accept_paused_until.is_none());
        if busy {
            return Some(Duration::ZERO);
        }
        let mut deadline = self.timers.next_expiry();
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

    fn drain_signals(&mut self) {
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

    // ----- reading -------------------------------------------------------------------------

    fn pump_ready(&mut self, now: Instant) {
        let rounds = self.ready.len();
        for _ in 0..rounds {
            let Some(key) = self.ready.pop_front() else {
                break;
            };
            let Some(conn) = self.conns.get_mut(key) else {
                continue;
            };
            conn.in_ready = false;
            if !conn.readable {
                continue;
            }
            self.pump_read(key, now);
            if let Some(conn) = self.conns.get_mut(key) {
                if conn.readable && !conn.in_ready && !self.reap.contains(&key) {
                    // Budget hit: the latch remembers; come back next turn.
                    conn.in_ready = true;
                    self.ready.push_back(key);
                }
            }
        }
    }

    /// Read from one connection until `WouldBlock`, end of stream or the budget.
    fn pump_read(&mut self, key: usize, now: Instant) {
        let mut budget = READ_BUDGET;
        let mut buf = std::mem::take(&mut self.read_buf);
        while budget > 0 {
            let Some(conn) = self.conns.get_mut(key) else {
                break;
            };
            if !conn.readable {
                break;
            }
            match conn.read_into(&mut buf) {
                ReadResult::Data(n) => {
                    budget = budget.saturating_sub(n);
                    self.stats.bytes_in += n as u64;
                    conn.last_rx = now;
                    if !self.on_bytes(key, &mut buf[..n], now) {
                        break;
                    }
                }
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
            }
        }
        self.read_buf = buf;
        self.apply_actions(now);
    }

    /// Handle bytes just read. Returns false when reading should stop.
    fn on_bytes(&mut self, key: usize, bytes: &mut [u8], now: Instant) -> bool {
        let Some(conn) = self.conns.get_mut(key) else {
            return false;
        };
        match &mut conn.state {
            ConnState::Handshaking { head } => {
                if head.is_empty() {
                    // The common case: the whole head arrived in one read; parse in place.
                    let outcome = handshake::parse_request(bytes, &self.rules);
                    if matches!(outcome, Outcome::Partial) {
                        head.extend_from_slice(bytes);
                        return true;
                    }
                    self.on_head(key, outcome, bytes, now)
                } else {
                    head.extend_from_slice(bytes);
                    let head = std::mem::take(head);
                    let outcome = handshake::parse_request(&head, &self.rules);
                    if matches!(outcome, Outcome::Partial) {
                        if let Some(conn) = self.conns.get_mut(key) {
                            conn.state = ConnState::Handshaking { head };
                        }
                        return true;
                    }
                    let mut head = head;
                    self.on_head(key, outcome, &mut head, now)
                }
            }
            ConnState::Open { .. } | ConnState::Closing { .. } => self.decode(key, bytes, now),
            ConnState::Finishing => true, // drained and discarded
        }
    }

    /// A complete request head (or a refusal) arrived. `bytes` holds the head and anything
    /// pipelined after it.
    fn on_head(&mut self, key: usize, outcome: Outcome, bytes: &mut [u8], now: Instant) -> bool {
        match outcome {
            Outcome::Partial => true,
            Outcome::Refuse(refusal) => {
                self.refuse(key, refusal, now);
                false
            }
            Outcome::Plain { path, .. } => {
                let stats = self.stats();
                let answer = self.app.http_get(&path, &stats, now);
                let Some(conn) = self.conns.get_mut(key) else {
                    return false;
                };
                let status = answer.as_ref().map_or(404, |resp| resp.status);
                conn.outbox
                    .append(&mut self.pool, &self.frames, |out| match &answer {
                        Some(resp) => handshake::write_response(
                            out,
                            resp.status,
                            resp.content_type,
                            &resp.body,
                        ),
                        None => handshake::write_response(
                            out,
                            404,
                            "text/plain; charset=utf-8",
                            b"Not Found\n",
                        ),
                    });
                if status != 200 {
                    count_refusal(&mut self.stats, status);
                }
                self.finish(key, now);
                false
            }
            Outcome::Upgrade {
                accept_key,
                head_len,
            } => {
                if self.open_connections >= self.config.max_connections {
                    self.refuse(
                        key,
                        Refusal {
                            status: 503,
                            body: "Too many connections",
                        },
                        now,
                    );
                    return false;
                }
                let lead = self.config.heartbeat_interval.map_or(Duration::ZERO, |d| {
                    first_ping_lead(self.stats.connections_accepted, d)
                });
                let Some(conn) = self.conns.get_mut(key) else {
                    return false;
                };
                conn.outbox.append(&mut self.pool, &self.frames, |out| {
                    handshake::write_accept(out, &accept_key)
                });
                conn.state = ConnState::Open {
                    decoder: codec::Decoder::default(),
                };
                conn.app_open = true;
                // As if a Ping had gone out `lead` ago: the first comes that much early.
                conn.last_ping = now.checked_sub(lead).unwrap_or(now);
                let id = conn.id;
                self.open_connections += 1;
                self.stats.connections_accepted += 1;
                self.mark_dirty(key);
                self.arm_heartbeat(id, now);
                self.app.on_open(id, now, &mut self.actions);
                self.apply_actions(now);
                let rest = bytes.get_mut(head_len..).unwrap_or_default();
                if rest.is_empty() {
                    true
                } else {
                    self.decode(key, rest, now)
                }
            }
        }
    }

    fn refuse(&mut self, key: usize, refusal: Refusal, now: Instant) {
        count_refusal(&mut self.stats, refusal.status);
        let Some(conn) = self.conns.get_mut(key) else {
            return;
        };
        log::debug!("connection {key}: upgrade refused with {}", refusal.status);
        conn.outbox.append(&mut self.pool, &self.frames, |out| {
            handshake::write_refusal(out, refusal)
        });
        self.finish(key, now);
    }

    /// Feed WebSocket bytes to the connection's decoder. Returns false when reading should stop.
    fn decode(&mut self, key: usize, bytes: &mut [u8], now: Instant) -> bool {
        let Some(conn) = self.conns.get_mut(key) else {
            return false;
        };
        let id = conn.id;
        let (mut decoder, open) = match &mut conn.state {
            ConnState::Open { decoder } => (std::mem::take(decoder), true),
            ConnState::Closing { decoder } => (std::mem::take(decoder), false),
            _ => return false,
        };
        let limits = self.limits;
        let mut keep_reading = true;
        let result = decoder.decode(bytes, &limits, &mut |incoming| {
            keep_reading = self.on_incoming(key, id, incoming, open, now);
            keep_reading
        });
        // Put the decoder back if the connection is still in a decoding state.
        if let Some(conn) = self.conns.get_mut(key) {
            match &mut conn.state {
                ConnState::Open { decoder: slot } | ConnState::Closing { decoder: slot } => {
                    *slot = decoder;
                }
                _ => {}
            }
        }
        match result {
            Ok(()) => keep_reading,
            Err(err) => {
                log::debug!(
                    "connection {key}: protocol error, closing with {}: {}",
                    err.code,
                    err.reason
                );
                self.fail(key, err.code, err.reason, now);
                false
            }
        }
    }

    /// One decoded frame or message. Returns false to stop decoding this input.
    fn on_incoming(
        &mut self,
        key: usize,
        id: ConnId,
        incoming: Incoming<'_>,
        open: bool,
        now: Instant,
    ) -> bool {
        match incoming {
            Incoming::Message { data, binary } => {
                if !open {
                    return true; // closing: data is discarded
                }
                self.app
                    .on_message(id, data, binary, now, &mut self.actions);
                self.apply_actions(now);
                self.conns
                    .get(key)
                    .is_some_and(|c| c.id == id && c.is_open())
            }
            Incoming::Ping(payload) => {
                if open {
                    self.queue_frame(key, OutKind::Pong, payload);
                }
                true
            }
            Incoming::Pong(_) => true,
            Incoming::Close { code, reason } => {
                log::debug!("connection {key}: peer closed with {code:?} {reason:?}");
                if open {
                    // Echo the peer's code (RFC 6455 section 5.5.1), then finish.
                    let Some(conn) = self.conns.get_mut(key) else {
                        return false;
                    };
                    conn.outbox.append(&mut self.pool, &self.frames, |out| {
                        codec::encode_close(out, code.unwrap_or(1000), "")
                    });
                    self.mark_dirty(key);
                    self.leave_open(key, CloseReason::Peer(code.unwrap_or(1005)), now);
                }
                self.finish(key, now);
                false
            }
        }
    }

    fn on_eof(&mut self, key: usize, now: Instant) {
        let Some(conn) = self.conns.get_mut(key) else {
            return;
        };
        conn.readable = false;
        conn.peer_eof = true;
        match conn.state {
            ConnState::Handshaking { .. } => self.drop_now(key, now),
            ConnState::Open { .. } => {
                // Half-close: what arrived before it was handled; flush what we owe, then go.
                self.leave_open(key, CloseReason::Reset, now);
                self.finish(key, now);
            }
            ConnState::Closing { .. } => self.drop_now(key, now),
            ConnState::Finishing => {
                if conn.write_shut {
                    self.mark_reap(key);
                }
            }
        }
    }

    // ----- closing -------------------------------------------------------------------------

    /// Tell the app the connection left the open state (once).
    fn leave_open(&mut self, key: usize, reason: CloseReason, now: Instant) {
        let Some(conn) = self.conns.get_mut(key) else {
            return;
        };
        if !conn.app_open {
            return;
        }
        conn.app_open = false;
        let id = conn.id;
        self.open_connections -= 1;
        self.stats.connections_closed[reason_index(reason)] += 1;
        self.app.on_close(id, reason, now, &mut self.actions);
    }

    /// Close an open connection: queue a close frame after what is queued, then wait for the
    /// peer's close frame until the linger timer.
    fn start_close(&mut self, key: usize, code: u16, reason: &str, why: CloseReason, now: Instant) {
        let Some(conn) = self.conns.get_mut(key) else {
            return;
        };
        let decoder = match &mut conn.state {
            ConnState::Open { decoder } => std::mem::take(decoder),
            _ => return,
        };
        conn.outbox.append(&mut self.pool, &self.frames, |out| {
            codec::encode_close(out, code, reason)
        });
        conn.state = ConnState::Closing { decoder };
        let id = conn.id;
        self.mark_dirty(key);
        self.arm_linger(id, now);
        self.leave_open(key, why, now);
    }

    /// A protocol error: queue the close frame and finish without waiting for a reply.
    fn fail(&mut self, key: usize, code: u16, reason: &str, now: Instant) {
        let Some(conn) = self.conns.get_mut(key) else {
            return;
        };
        let was_open = conn.is_open();
        if was_open {
            conn.outbox.append(&mut self.pool, &self.frames, |out| {
                codec::encode_close(out, code, reason)
            });
            self.mark_dirty(key);
        }
        self.leave_open(key, CloseReason::Protocol(code), now);
        self.finish(key, now);
    }

    /// Everything we will send is queued: flush, shut down writing, drain, drop.
    fn finish(&mut self, key: usize, now: Instant) {
        let Some(conn) = self.conns.get_mut(key) else {
            return;
        };
        if matches!(conn.state, ConnState::Finishing) {
            return;
        }
        let lingering = matches!(conn.state, ConnState::Closing { .. });
        conn.state = ConnState::Finishing;
        let id = conn.id;
        self.mark_dirty(key);
        if !lingering {
            self.arm_linger(id, now);
        }
    }

    /// Drop a socket at once (reset, timeout in the handshake, linger expired).
    fn drop_now(&mut self, key: usize, now: Instant) {
        self.leave_open(key, CloseReason::Reset, now);
        self.mark_reap(key);
    }

    /// Remove `key` at the end of this turn. Nothing more is read or written: its queue goes
    /// now, so it holds no range of the frame arena even when it is no longer in `dirty`.
    fn mark_reap(&mut self, key: usize) {
        if let Some(conn) = self.conns.get_mut(key) {
            conn.readable = false;
            conn.writable = false;
            conn.outbox.discard(&mut self.pool);
            if !self.reap.contains(&key) {
                self.reap.push(key);
            }
        }
    }

    fn reap_done(&mut self) {
        while let Some(key) = self.reap.pop() {
            if !self.conns.contains(key) {
                continue;
            }
            let mut conn = self.conns.remove(key);
            let _ = self.poll.registry().deregister(&mut conn.socket);
            if conn.app_open {
                // Every path that drops an open connection goes through leave_open first.
                log::error!("Bug: connection {key} reaped while open");
            }
            if let Some(generation) = self.generations.get_mut(key) {
                *generation = generation.wrapping_add(1);
            }
        }
    }

    // ----- writing -------------------------------------------------------------------------

    fn mark_dirty(&mut self, key: usize) {
        if let Some(conn) = self.conns.get_mut(key) {
            if !conn.in_dirty {
                conn.in_dirty = true;
                self.dirty.push(key);
            }
        }
    }

    /// Append one frame to a connection's outbox.
    fn queue_frame(&mut self, key: usize, kind: OutKind, payload: &[u8]) {
        let Some(conn) = self.conns.get_mut(key) else {
            return;
        };
        conn.outbox.append(&mut self.pool, &self.frames, |out| {
            codec::encode(out, kind, payload)
        });
        self.mark_dirty(key);
    }

    fn flush_dirty(&mut self) {
        let now = Instant::now();
        let mut dirty = std::mem::take(&mut self.dirty);
        for key in dirty.drain(..) {
            if let Some(conn) = self.conns.get_mut(key) {
                conn.in_dirty = false;
            }
            self.flush(key, now);
        }
        // flush may mark nothing dirty; keep the allocation.
        if self.dirty.is_empty() {
            self.dirty = dirty;
        }
        self.apply_actions(now);
        // What those actions queued waits for the next turn, on its own bytes: the arena is
        // cleared now.
        for &key in &self.dirty {
            if let Some(conn) = self.conns.get_mut(key) {
                conn.outbox.settle(&mut self.pool, &self.frames);
            }
        }
        debug_assert!(
            self.conns.iter().all(|(_, c)| !c.outbox.holds_frames()),
            "Bug: a connection holds a range of the frame arena it is about to lose"
        );
        self.frames.clear();
    }

    /// Write what `key` owes its peer. Afterwards it holds no range of the frame arena.
    fn flush(&mut self, key: usize, now: Instant) {
        let Some(conn) = self.conns.get_mut(key) else {
            return;
        };
        if conn.writable && conn.outbox.pending() > 0 {
            match conn.write_outbox(&self.frames) {
                Ok(n) => self.stats.bytes_out += n as u64,
                Err(e) => {
                    log::debug!("connection {key}: write failed: {e}");
                    self.drop_now(key, now);
                    return;
                }
            }
        }
        let Some(conn) = self.conns.get_mut(key) else {
            return;
        };
        conn.outbox.settle(&mut self.pool, &self.frames);
        conn.outbox.release_if_empty(&mut self.pool);
        if conn.outbox.pending() == 0 {
            if matches!(conn.state, ConnState::Finishing) && !conn.write_shut {
                conn.write_shut = true;
                let _ = conn.socket.shutdown(Shutdown::Write);
                if conn.peer_eof {
                    self.mark_reap(key);
                }
            }
        } else if conn.outbox.pending() > self.config.max_outbound_buffer && conn.is_open() {
            log::warn!(
                "connection {key}: slow consumer, {} bytes queued",
                conn.outbox.pending()
            );
            self.start_close(key, 1008, "Slow consumer", CloseReason::SlowConsumer, now);
        }
    }

    // ----- actions -------------------------------------------------------------------------

    /// Apply what the app pushed, including what it pushes while we apply (on_close calls).
    fn apply_actions(&mut self, now: Instant) {
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
                        if let Some(key) = self.key_of(conn) {
                            self.start_close(key, code, reason, CloseReason::App(code), now);
                        }
                    }
                    Action::Emit(event) => {
                        if self.host_events.len() < self.config.event_queue {
                            self.host_events.push_back(event);
                        } else {
                            self.stats.events_dropped += 1;
                        }
                    }
                    Action::Timer { at, token } => self.schedule(now, at, Timer::App(token)),
                }
            }
        }
        self.action_scratch = list;
        self.actions.clear();
        self.frames.forget_staged();
    }

    fn key_of(&self, id: ConnId) -> Option<usize> {
        let key = id.index as usize;
        self.conns
            .get(key)
            .is_some_and(|c| c.id == id)
            .then_some(key)
    }

    fn send_staged(&mut self, id: ConnId, msg: &crate::app::Staged) {
        let Some(key) = self.key_of(id) else {
            return;
        };
        let Some(conn) = self.conns.get_mut(key) else {
            return;
        };
        if !conn.is_open() || !conn.app_open {
            return; // closing, or the app was told it closed (a reset waiting to be reaped)
        }
        let frame = self.frames.frame(msg, self.actions.bytes(msg));
        conn.outbox.push_frame(&mut self.pool, &self.frames, frame);
        let over = conn.outbox.pending() > self.config.max_outbound_buffer;
        self.mark_dirty(key);
        if over {
            // Try to write now: a reader that keeps up is not a slow consumer.
            self.flush(key, Instant::now());
        }
    }

    // ----- commands and timers ---------------------------------------------------------------

    fn drain_commands(&mut self, now: Instant) {
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

    /// Put `timer` on the wheel at `at`, coalesced with its neighbours.
    fn schedule(&mut self, now: Instant, at: Instant, timer: Timer) {
        self.timers
            .insert(coalesced(self.timer_epoch, now, at), timer);
    }

    fn arm_heartbeat(&mut self, id: ConnId, now: Instant) {
        let Some(key) = self.key_of(id) else {
            return;
        };
        let last_ping = self.conns[key].last_ping;
        let ping = self.config.heartbeat_interval.map(|d| last_ping + d);
        let idle = self.config.client_timeout.map(|d| now + d);
        let at = match (ping, idle) {
            (Some(p), Some(i)) => p.min(i),
            (Some(t), None) | (None, Some(t)) => t,
            (None, None) => return,
        };
        self.schedule(now, at, Timer::Heartbeat(id));
    }

    fn arm_linger(&mut self, id: ConnId, now: Instant) {
        let linger = self.config.close_timeout.unwrap_or(DEFAULT_LINGER);
        self.schedule(now, now + linger, Timer::Linger(id));
    }

    fn expire_timers(&mut self, now: Instant) {
        let mut expired = std::mem::take(&mut self.expired);
        self.timers.expire(now, &mut expired);
        for timer in expired.drain(..) {
            match timer {
                Timer::App(token) => {
                    self.app.on_timer(token, now, &mut self.actions);
                    self.apply_actions(now);
                }
                Timer::Handshake(id) => {
                    if let Some(key) = self.key_of(id) {
                        if matches!(self.conns[key].state, ConnState::Handshaking { .. }) {
                            log::debug!("connection {key}: handshake timed out");
                            self.stats.handshake_timeouts += 1;
                            self.mark_reap(key);
                        }
                    }
                }
                Timer::Linger(id) => {
                    if let Some(key) = self.key_of(id) {
                        if matches!(
                            self.conns[key].state,
                            ConnState::Closing { .. } | ConnState::Finishing
                        ) {
                            self.mark_reap(key);
                        }
                    }
                }
                Timer::Heartbeat(id) => self.heartbeat(id, now),
            }
        }
        self.expired = expired;
        if let Some(until) = self.accept_paused_until {
            if now >= until {
                self.accept_paused_until = None;
            }
        }
    }

    fn heartbeat(&mut self, id: ConnId, now: Instant) {
        let Some(key) = self.key_of(id) else {
            return;
        };
        let conn = &self.conns[key];
        if !conn.is_open() {
            return;
        }
        let idle_at = self.config.client_timeout.map(|d| conn.last_rx + d);
        if idle_at.is_some_and(|at| now >= at) {
            log::debug!("connection {key}: idle, closing");
            self.start_close(key, 1001, "Connection timeout", CloseReason::Timeout, now);
            self.apply_actions(now);
            return;
        }
        let mut ping_at = self.config.heartbeat_interval.map(|d| conn.last_ping + d);
        if ping_at.is_some_and(|at| now >= at) {
            self.queue_frame(key, OutKind::Ping, b"");
            self.conns[key].last_ping = now;
            ping_at = self.config.heartbeat_interval.map(|d| now + d);
        }
        let next = match (ping_at, idle_at) {
            (Some(p), Some(i)) => p.min(i),
            (Some(t), None) | (None, Some(t)) => t,
            (None, None) => return,
        };
        self.schedule(now, next, Timer::Heartbeat(id));
    }

    // ----- accepting -----------------------------------------------------------------------

    fn accept(&mut self, now: Instant) {
        if self.accept_paused_until.is_some() {
            return;
        }
        for _ in 0..ACCEPT_BUDGET {
            match self.listener.accept() {
                Ok((socket, peer)) => {
                    if self.accept_failing {
                        self.accept_failing = false;
                        log::info!("accepting connections again");
                    }
                    self.admit(socket, peer, now)
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    self.listener_ready = false;
                    return;
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) if is_transient_accept_error(&e) => continue,
                Err(e) => {
                    // Out of descriptors and the like: back off instead of spinning, and
                    // say so once per episode rather than at every retry.
                    if !self.accept_failing {
                        self.accept_failing = true;
                        log::warn!("accept failed: {e}; retrying every {ACCEPT_BACKOFF:?}");
                    }
                    self.accept_paused_until = Some(now + ACCEPT_BACKOFF);
                    return;
                }
            }
        }
    }

    fn admit(&mut self, mut socket: mio::net::TcpStream, peer: SocketAddr, now: Instant) {
        let _ = socket.set_nodelay(true);
        let entry = self.conns.vacant_entry();
        let key = entry.key();
        if key >= self.generations.len() {
            self.generations.resize(key + 1, 0);
        }
        let Ok(index) = u32::try_from(key) else {
            log::error!("too many sockets; dropping {peer}");
            return;
        };
        let id = ConnId {
            index,
            generation: self.generations[key],
        };
        if let Err(e) = self
            .poll
            .registry()
            .register(&mut socket, token_of(id), SOCKET_INTEREST)
        {
            log::warn!("could not register {peer}: {e}");
            return;
        }
        log::trace!("accepted {peer} as {key}");
        entry.insert(Connection::new(socket, id, now));
        if let Some(timeout) = self.config.handshake_timeout {
            self.schedule(now, now + timeout, Timer::Handshake(id));
        }
        // The request may already be waiting: try reading on the next pump.
        if let Some(conn) = self.conns.get_mut(key) {
            conn.in_ready = true;
            self.ready.push_back(key);
        }
    }
}

/// `at` rounded up to a multiple (counted from `epoch`) of a grain of at most 1/16 of
/// `at - now` and at most [`COALESCE_MAX`]; unchanged when that grain is below one tick.
fn coalesced(epoch: Instant, now: Instant, at: Instant) -> Instant {
    let grain = (at.saturating_duration_since(now) / 16).min(COALESCE_MAX);
    if grain < TICK {
        return at;
    }
    let grain = grain.as_nanos();
    let offset = at.saturating_duration_since(epoch).as_nanos();
    let rounded = offset.div_ceil(grain) * grain;
    u64::try_from(rounded)
        .ok()
        .and_then(|nanos| epoch.checked_add(Duration::from_nanos(nanos)))
        .unwrap_or(at)
}

/// Raise the listen backlog of a bound listener to [`LISTEN_BACKLOG`]: calling `listen` again
/// on a listening socket sets its backlog.
#[cfg(unix)]
fn widen_backlog(listener: &TcpListener) -> io::Result<()> {
    use std::os::unix::io::AsRawFd;
    // SAFETY: `listen` takes a descriptor and an integer; the descriptor is the listener's own
    // and stays open for the duration of the call.
    if unsafe { libc::listen(listener.as_raw_fd(), LISTEN_BACKLOG) } == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

#[cfg(not(unix))]
fn widen_backlog(_listener: &TcpListener) -> io::Result<()> {
    Ok(())
}

/// How much earlier than a whole heartbeat interval the `n`th connection gets its first Ping:
/// between none and half the interval, spread evenly over consecutive connections (the
/// fractional parts of `n` times the golden ratio). Connections opened together, as after a
/// restart, then ping spread over half an interval instead of all in the same turns, which
/// would hold up everyone else's traffic while thousands of Pings are written.
fn first_ping_lead(n: u64, interval: Duration) -> Duration {
    // 2^64 / golden ratio; the top 53 bits of the product are frac(n / golden ratio).
    let fraction = (n.wrapping_mul(0x9E37_79B9_7F4A_7C15) >> 11) as f64 / (1u64 << 53) as f64;
    interval.mul_f64(fraction / 2.0)
}

fn is_transient_accept_error(e: &io::Error) -> bool {
    matches!(
        e.kind(),
        io::ErrorKind::ConnectionAborted | io::ErrorKind::ConnectionReset
    )
}

fn reason_index(reason: CloseReason) -> usize {
    CloseReason::LABELS
        .iter()
        .position(|l| *l == reason.label())
        .unwrap_or(0)
}

fn count_refusal(stats: &mut TransportStats, status: u16) {
    match stats
        .handshake_refusals
        .iter_mut()
        .find(|(s, _)| *s == status)
    {
        Some((_, n)) => *n += 1,
        None => stats.handshake_refusals.push((status, 1)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn first_pings_of_connections_opened_together_spread_over_half_an_interval() {
        let interval = Duration::from_secs(30);
        let half = interval / 2;
        // 1 000 consecutive connections: every lead is within half the interval, and each
        // tenth of that half gets about a tenth of them.
        let mut buckets = [0usize; 10];
        for n in 5_000..6_000 {
            let lead = first_ping_lead(n, interval);
            assert!(lead < half, "{lead:?}");
            buckets[(lead.as_secs_f64() / half.as_secs_f64() * 10.0) as usize] += 1;
        }
        for (i, count) in buckets.iter().enumerate() {
            assert!((90..=110).contains(count), "bucket {i}: {count} of 1000");
        }
        assert_eq!(first_ping_lead(0, interval), Duration::ZERO);
    }

    #[test]
    fn deadlines_are_coalesced_within_a_sixteenth_and_100_ms() {
        let epoch = Instant::now();
        let ms = Duration::from_millis;
        // Far deadlines land on 100 ms boundaries, never early, at most 100 ms late.
        for start in [0u64, 3, 997, 12_345] {
            let now = epoch + ms(start);
            for (i, d) in [5_000u64, 10_000, 30_000].into_iter().enumerate() {
                let at = now + ms(d) + ms(i as u64 * 7);
                let c = coalesced(epoch, now, at);
                assert!(c >= at && c - at < ms(100), "{start} {d}: {:?}", c - at);
                assert_eq!((c - epoch).as_nanos() % ms(100).as_nanos(), 0);
            }
        }
        // Two connections opened 40 ms apart share the wakeup of their 5 s deadline.
        let a = coalesced(epoch, epoch + ms(1010), epoch + ms(6010));
        let b = coalesced(epoch, epoch + ms(1050), epoch + ms(6050));
        assert_eq!(a, b);
        // Short deadlines keep their precision: within a sixteenth.
        let now = epoch + ms(20);
        let at = now + ms(400);
        let c = coalesced(epoch, now, at);
        assert!(c >= at && c - at <= ms(25));
        let at = now + ms(50);
        assert_eq!(coalesced(epoch, now, at), at, "below one tick of grain");
    }
}

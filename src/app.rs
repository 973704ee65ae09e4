//! The line between the transport and an application core.
//!
//! The reactor (`src/transport/reactor/`) knows sockets, HTTP upgrades, WebSocket frames and timers; it
//! knows nothing of the gateway protocol. It drives an [`App`]: it calls the app when a
//! connection opens, when a whole message arrives, when a connection closes, when a handle
//! command arrives and when a timer the app set fires. The app answers by pushing
//! [`Action`]s into an [`Actions`] list, which the reactor applies right after the call, in order.
//!
//! Contract:
//! - `on_open` is called once per accepted WebSocket connection, before any `on_message` for it;
//!   `on_close` is called exactly once for every connection that got `on_open`, when it leaves
//!   the open state (close frame sent or received, error, reset, timeout, shutdown). After
//!   `on_close`, sends to that connection are ignored, and so is every [`ConnId`] whose
//!   generation is stale.
//! - Messages of one connection reach the app in the order they arrived; the actions of one
//!   call are applied in the order they were pushed, so a connection receives what is sent to
//!   it in the order the app produced it.
//! - Bytes given to `send` are one WebSocket message each. The reactor frames them; the app
//!   never sees frames.
//! - An app may also open outbound TCP links (e.g. to a message broker): it names each with a
//!   [`LinkId`], writes bytes to it, and is told when it connects, when bytes arrive and when
//!   it ends. The reactor reads the links first in every turn, before any connection.
//! - Nothing here does I/O or reads the clock: time comes in as `now`.

use std::borrow::Cow;
use std::net::SocketAddr;
use std::ops::Range;
use std::time::Instant;

use crate::ws::origin::OriginPolicy;

/// Identifies one connection: a slab index plus the generation of that slot.
///
/// Slab slots are reused; the generation makes a stale id (from an old timer, command or
/// event) harmless, because it no longer matches the slot's current generation (the rule is
/// told in `src/transport/reactor/slots.rs`).
#[derive(Copy, Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ConnId {
    /// Index of the slot in the reactor's slab.
    pub index: u32,
    /// Generation of the slot when the connection was accepted.
    pub generation: u32,
}

/// Why a connection left the open state, as reported to [`App::on_close`].
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum CloseReason {
    /// The peer sent a close frame with this code (1005 when it carried none).
    Peer(u16),
    /// The app asked for the close with this code.
    App(u16),
    /// A protocol violation closed it with this close code (1002, 1007, 1009), or a bound of
    /// the transport did (1008 `Server busy`, 1008 `Message timeout`).
    Protocol(u16),
    /// Nothing arrived for `client_timeout_ms` (close 1001 `Connection timeout`).
    Timeout,
    /// Its queued output passed `max_outbound_buffer` (close 1008 `Slow consumer`).
    SlowConsumer,
    /// The gateway is shutting down (close 1001 `Server shutting down`).
    Shutdown,
    /// The socket ended without a close handshake (reset, end of stream, I/O error).
    Reset,
}

impl CloseReason {
    /// A short label for logs and metrics.
    pub fn label(self) -> &'static str {
        match self {
            CloseReason::Peer(_) => "peer",
            CloseReason::App(_) => "app",
            CloseReason::Protocol(_) => "protocol_error",
            CloseReason::Timeout => "timeout",
            CloseReason::SlowConsumer => "slow_consumer",
            CloseReason::Shutdown => "shutdown",
            CloseReason::Reset => "reset",
        }
    }

    /// Every label [`CloseReason::label`] can return, in a fixed order.
    pub const LABELS: [&'static str; 7] = [
        "peer",
        "app",
        "protocol_error",
        "timeout",
        "slow_consumer",
        "shutdown",
        "reset",
    ];
}

/// Bytes staged in an [`Actions`] arena, ready to be sent to any number of connections.
///
/// Staging a message once and sending the same `Staged` to many connections is how a
/// broadcast is serialized once.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Staged {
    range: Range<usize>,
    binary: bool,
}

impl Staged {
    /// Whether it goes out as a binary message (text otherwise).
    pub fn is_binary(&self) -> bool {
        self.binary
    }
}

/// One thing the app asks the reactor to do.
#[derive(Debug, PartialEq)]
pub enum Action<E> {
    /// Send the staged bytes to `conn` as one WebSocket message.
    Send {
        /// The receiving connection.
        conn: ConnId,
        /// The message, staged in the same [`Actions`].
        msg: Staged,
    },
    /// Close `conn`: everything already queued for it is written first, then a close frame
    /// with `code` and `reason`.
    Close {
        /// The connection to close.
        conn: ConnId,
        /// The close code (PROTOCOL section 8).
        code: u16,
        /// The close reason, at most 123 bytes: borrowed for the fixed reasons, owned only
        /// when it is built for one close.
        reason: Cow<'static, str>,
    },
    /// From now on `conn` may send frames and messages up to `max_payload`; until then the
    /// transport holds it to `initial_max_payload` (see the transport's config). An app
    /// raises it when the connection has proved who it is, e.g. authenticated.
    RaiseLimit {
        /// The connection.
        conn: ConnId,
    },
    /// From now on `conn`'s messages take their time from the share of a loop turn that
    /// every connection of `group` shares, instead of a share of its own: an app gives the
    /// connections of one user one group, so that many connections do not take the loop for
    /// many shares of each turn. `group` is the app's number; 0 and `u32::MAX` are the
    /// transport's (0: a share of its own again). Until then a connection held to
    /// `initial_max_payload` shares one share with every such connection, and any other has
    /// a share of its own.
    ShareTurn {
        /// The connection.
        conn: ConnId,
        /// The group.
        group: u32,
    },
    /// Hand an event to the host program (`Gateway::next_event`).
    Emit(E),
    /// Call [`App::on_timer`] with `token` once `at` has passed (never early; up to one
    /// timer-wheel tick late). Timers are not cancelled: the app checks a token when it fires.
    Timer {
        /// When the timer fires.
        at: Instant,
        /// An opaque value handed back to `on_timer`.
        token: u64,
    },
    /// From now on the transport checks new input against these bounds (e.g. after the
    /// app's configuration was reloaded).
    SetLimits(Box<TransportLimits>),
    /// Open an outbound TCP connection, `link`, to `addr` (nonblocking, in the same poll,
    /// with `TCP_NODELAY`). [`App::on_link_open`] reports it connected,
    /// [`App::on_link_closed`] that it failed (`connect: <error>`) or ended; either comes
    /// from a later pump of the loop, never from inside this action. A link already open
    /// under the same id is closed first, without a report.
    LinkConnect {
        /// The app's name for the link.
        link: LinkId,
        /// Where to connect.
        addr: SocketAddr,
    },
    /// Write the staged bytes to `link`, after what was written to it before. Bytes for a
    /// link that is connecting are written once it connects; bytes for a link that is closed
    /// are dropped. The app bounds what it writes to a link that does not drain.
    LinkSend {
        /// The link.
        link: LinkId,
        /// The bytes, staged in the same [`Actions`].
        msg: Staged,
    },
    /// Close `link` at once (unwritten bytes are dropped), without a report.
    LinkClose {
        /// The link.
        link: LinkId,
    },
}

/// The app's name for an outbound TCP link ([`Action::LinkConnect`]): a small number the
/// app chooses, one open link per number at a time.
#[derive(Copy, Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct LinkId(pub u8);

/// The transport's bounds that an app may change while the loop runs
/// ([`Actions::set_limits`]). Each applies from the next input it checks: an upgrade
/// request, a frame; what was accepted already is kept.
#[derive(Clone, Debug, PartialEq)]
pub struct TransportLimits {
    /// Origin policy for upgrades (403 when refused).
    pub origins: OriginPolicy,
    /// Largest HTTP request head (431 beyond).
    pub max_header_bytes: usize,
    /// Largest frame or message (1009 beyond).
    pub max_payload: usize,
    /// Largest frame or message of a connection until the app raises its limit; `None`:
    /// `max_payload` from the start.
    pub initial_max_payload: Option<usize>,
    /// Bytes of partly received messages over all connections at most.
    pub max_inflight_bytes: usize,
    /// The TLS certificate and key new connections are served with, on a TLS listener
    /// (ignored when it would turn TLS on or off: that is decided at bind).
    pub tls: Option<crate::transport::tls::TlsServer>,
}

/// The list of actions an app call pushes, with an arena holding the bytes they send.
///
/// The reactor keeps one `Actions` and clears it after applying it, so steady-state traffic
/// does not allocate.
#[derive(Debug)]
pub struct Actions<E> {
    arena: Vec<u8>,
    list: Vec<Action<E>>,
    events_off: bool,
}

impl<E> Default for Actions<E> {
    fn default() -> Self {
        Actions {
            arena: Vec::new(),
            list: Vec::new(),
            events_off: false,
        }
    }
}

impl<E> Actions<E> {
    /// An empty list.
    pub fn new() -> Self {
        Self::default()
    }

    /// Stage a text message written by `write` into the arena; send it with [`Actions::send`].
    #[must_use]
    pub fn stage_with(&mut self, write: impl FnOnce(&mut Vec<u8>)) -> Staged {
        let start = self.arena.len();
        write(&mut self.arena);
        Staged {
            range: start..self.arena.len(),
            binary: false,
        }
    }

    /// Stage a copy of `bytes` as a text (`binary == false`) or binary message.
    #[must_use]
    pub fn stage_bytes(&mut self, bytes: &[u8], binary: bool) -> Staged {
        let start = self.arena.len();
        self.arena.extend_from_slice(bytes);
        Staged {
            range: start..self.arena.len(),
            binary,
        }
    }

    /// Take back `msg` before it is sent: when it is the last message staged, its bytes
    /// leave the arena (else they stay, unsent, until [`Actions::clear`]).
    pub(crate) fn unstage(&mut self, msg: Staged) {
        if msg.range.end == self.arena.len() {
            self.arena.truncate(msg.range.start);
        }
    }

    /// Send a staged message to `conn`.
    pub fn send(&mut self, conn: ConnId, msg: &Staged) {
        self.list.push(Action::Send {
            conn,
            msg: msg.clone(),
        });
    }

    /// Stage `text` and send it to `conn`.
    pub fn send_text(&mut self, conn: ConnId, text: &str) {
        let msg = self.stage_bytes(text.as_bytes(), false);
        self.send(conn, &msg);
    }

    /// Close `conn` with `code` and `reason` (at most 123 bytes) after what is queued for it.
    /// A `&'static str` reason is kept borrowed: closing allocates nothing.
    pub fn close(&mut self, conn: ConnId, code: u16, reason: impl Into<Cow<'static, str>>) {
        let reason = reason.into();
        self.list.push(Action::Close { conn, code, reason });
    }

    /// Let `conn` send frames and messages up to `max_payload` from now on (see
    /// [`Action::RaiseLimit`]).
    pub fn raise_limit(&mut self, conn: ConnId) {
        self.list.push(Action::RaiseLimit { conn });
    }

    /// Give `conn` the share of a loop turn of `group` (see [`Action::ShareTurn`]).
    ///
    /// ```
    /// use gateway::transport::{Action, Actions, ConnId};
    ///
    /// let mut out: Actions<()> = Actions::new();
    /// let conn = ConnId { index: 3, generation: 1 };
    /// out.share_turn(conn, 7);
    /// assert_eq!(out.list(), &[Action::ShareTurn { conn, group: 7 }]);
    /// ```
    pub fn share_turn(&mut self, conn: ConnId, group: u32) {
        self.list.push(Action::ShareTurn { conn, group });
    }

    /// Hand `event` to the host program (nothing, while [`Actions::wants_events`] is false).
    pub fn emit(&mut self, event: E) {
        if !self.events_off {
            self.list.push(Action::Emit(event));
        }
    }

    /// Whether an emitted event is kept for the host: false once nothing can read events
    /// (the transport's `run`), so that an app need not build an event only to have it
    /// dropped.
    pub fn wants_events(&self) -> bool {
        !self.events_off
    }

    /// From now on, drop what is emitted ([`Actions::wants_events`] is false).
    pub(crate) fn turn_events_off(&mut self) {
        self.events_off = true;
    }

    /// Ask for [`App::on_timer`] with `token` once `at` has passed.
    pub fn set_timer(&mut self, at: Instant, token: u64) {
        self.list.push(Action::Timer { at, token });
    }

    /// Open the outbound link `link` to `addr` ([`Action::LinkConnect`]).
    pub fn link_connect(&mut self, link: LinkId, addr: SocketAddr) {
        self.list.push(Action::LinkConnect { link, addr });
    }

    /// Write `bytes` to `link` ([`Action::LinkSend`]).
    pub fn link_send(&mut self, link: LinkId, bytes: &[u8]) {
        let msg = self.stage_bytes(bytes, true);
        self.list.push(Action::LinkSend { link, msg });
    }

    /// Close `link` at once ([`Action::LinkClose`]).
    pub fn link_close(&mut self, link: LinkId) {
        self.list.push(Action::LinkClose { link });
    }

    /// Have the transport check new input against `limits` from now on.
    pub fn set_limits(&mut self, limits: TransportLimits) {
        self.list.push(Action::SetLimits(Box::new(limits)));
    }

    /// The bytes of a staged message.
    pub fn bytes(&self, msg: &Staged) -> &[u8] {
        &self.arena[msg.range.clone()]
    }

    /// The actions pushed so far, in order.
    pub fn list(&self) -> &[Action<E>] {
        &self.list
    }

    /// Whether nothing was pushed.
    pub fn is_empty(&self) -> bool {
        self.list.is_empty()
    }

    /// Take the pushed actions out (the arena stays, so staged bytes remain readable until
    /// [`Actions::clear`]).
    pub fn take_list(&mut self, into: &mut Vec<Action<E>>) {
        if into.is_empty() {
            // A broadcast pushes one action per member: hand the list over without a copy.
            std::mem::swap(into, &mut self.list);
        } else {
            into.append(&mut self.list);
        }
    }

    /// Forget every action and staged byte, keeping the memory for reuse.
    pub fn clear(&mut self) {
        self.arena.clear();
        self.list.clear();
    }
}

/// Counters the reactor keeps, offered to the app for its `/health` and `/metrics` answers.
#[derive(Clone, Debug, Default)]
pub struct TransportStats {
    /// WebSocket connections currently open.
    pub open_connections: u64,
    /// Sockets accepted, in any state (handshaking, open, closing).
    pub sockets: u64,
    /// WebSocket connections accepted since start.
    pub connections_accepted: u64,
    /// Connections closed since start, by [`CloseReason::label`] (same order as `LABELS`).
    pub connections_closed: [u64; 7],
    /// Refused upgrades and plain HTTP answers other than 200, by status code.
    pub handshake_refusals: Vec<(u16, u64)>,
    /// Handshakes that timed out.
    pub handshake_timeouts: u64,
    /// Bytes read from sockets.
    pub bytes_in: u64,
    /// Bytes written to sockets.
    pub bytes_out: u64,
    /// Bytes queued for output and not yet written, over all connections.
    pub bytes_queued: u64,
    /// Events dropped because the host's event queue was full (in count or in bytes).
    pub events_dropped: u64,
    /// Bytes of the events in the host's queue, as the app estimates them.
    pub events_queued_bytes: u64,
    /// Sockets accepted and not yet upgraded, or refused and lingering.
    pub pending_handshakes: u64,
    /// Sockets closed as soon as they were accepted, because `max_pending_handshakes` sockets
    /// were pending.
    pub handshakes_shed: u64,
    /// Bytes of partly received messages over all connections (what `max_inflight_bytes`
    /// bounds: each one's payload so far plus what its current frame still announces).
    pub inflight_bytes: u64,
    /// The part of `inflight_bytes` held by connections not raised from
    /// `initial_max_payload` (the gateway's unauthenticated connections), which share at most
    /// a quarter of `max_inflight_bytes`.
    pub preauth_inflight_bytes: u64,
    /// Times a connection with input was not read in a turn because its group (the gateway:
    /// its user) had spent its share of that turn.
    pub turn_share_waits: u64,
    /// Entries in the timer wheel. Timers are cancelled lazily, so this includes entries of
    /// connections already closed, until their deadline passes.
    pub timers_pending: u64,
}

/// A plain HTTP answer produced by the app for a non-upgrade request.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HttpResponse {
    /// Status code, e.g. 200.
    pub status: u16,
    /// `Content-Type` header value.
    pub content_type: &'static str,
    /// The body.
    pub body: Vec<u8>,
}

/// An application core driven by the reactor. See the module docs for the contract.
///
/// # Examples
///
/// An echo core, run on the gateway's own transport (`examples/echo_server.rs` is the same
/// core as a program):
///
/// ```
/// use gateway::transport::{Actions, App, CloseReason, ConnId, Reactor, TransportConfig};
/// use std::time::Instant;
///
/// struct Echo;
///
/// impl App for Echo {
///     type Command = ();
///     type Event = ();
///
///     fn on_open(&mut self, _: ConnId, _: Instant, _: &mut Actions<()>) {}
///
///     fn on_message(&mut self, conn: ConnId, data: &[u8], binary: bool, _: Instant, out: &mut Actions<()>) {
///         let msg = out.stage_bytes(data, binary);
///         out.send(conn, &msg);
///     }
///
///     fn on_close(&mut self, _: ConnId, _: CloseReason, _: Instant, _: &mut Actions<()>) {}
///
///     fn on_command(&mut self, _: (), _: Instant, _: &mut Actions<()>) {}
/// }
///
/// let mut config = TransportConfig::new("127.0.0.1:0".parse().unwrap());
/// config.path = "/".to_string();
/// let mut reactor = Reactor::bind(config, Echo)?;
/// let url = format!("ws://{}/", reactor.local_addr());
/// let handle = reactor.handle();
/// let client = std::thread::spawn(move || {
///     let (mut ws, _) = tungstenite::connect(url).expect("upgrade");
///     ws.send(tungstenite::Message::text("hello")).expect("send");
///     let echoed = ws.read().expect("the echo");
///     handle.shutdown().expect("the reactor runs");
///     echoed
/// });
/// reactor.run()?; // until the shutdown
/// assert_eq!(client.join().unwrap().to_text().unwrap(), "hello");
/// # Ok::<(), std::io::Error>(())
/// ```
pub trait App {
    /// What a [`ReactorHandle`](crate::transport::ReactorHandle) carries to the app from other threads.
    type Command: Send + 'static;
    /// What the app hands to the host program through the bounded event queue.
    type Event;

    /// A WebSocket connection completed its upgrade.
    fn on_open(&mut self, conn: ConnId, now: Instant, out: &mut Actions<Self::Event>);

    /// A whole message arrived on `conn`. Text messages are valid UTF-8 (the reactor closes
    /// with 1007 otherwise); `binary` tells which frame type carried it.
    fn on_message(
        &mut self,
        conn: ConnId,
        data: &[u8],
        binary: bool,
        now: Instant,
        out: &mut Actions<Self::Event>,
    );

    /// `conn` left the open state; see [`CloseReason`].
    fn on_close(
        &mut self,
        conn: ConnId,
        reason: CloseReason,
        now: Instant,
        out: &mut Actions<Self::Event>,
    );

    /// A command arrived from a handle.
    fn on_command(&mut self, cmd: Self::Command, now: Instant, out: &mut Actions<Self::Event>);

    /// A timer set with [`Actions::set_timer`] fired.
    fn on_timer(&mut self, _token: u64, _now: Instant, _out: &mut Actions<Self::Event>) {}

    /// The bytes `event` is counted at in the host's event queue, which is bounded in bytes
    /// as well as in count: its inline size plus what it holds on the heap. The default
    /// counts the inline size only.
    fn event_bytes(&self, _event: &Self::Event) -> usize {
        std::mem::size_of::<Self::Event>()
    }

    /// The outbound link `link` ([`Action::LinkConnect`]) is connected: the bytes sent to it
    /// while it was connecting are written now, and those sent from now on after them.
    fn on_link_open(&mut self, _link: LinkId, _now: Instant, _out: &mut Actions<Self::Event>) {}

    /// Bytes arrived on `link`, in order; a call holds what one read returned (a reply may be
    /// split over calls, and a call may hold several).
    fn on_link_data(
        &mut self,
        _link: LinkId,
        _data: &[u8],
        _now: Instant,
        _out: &mut Actions<Self::Event>,
    ) {
    }

    /// `link` failed to connect, or ended (end of stream, reset, I/O error: `error` says
    /// which); it is closed, and its unwritten bytes are dropped. Not called after
    /// [`Action::LinkClose`].
    fn on_link_closed(
        &mut self,
        _link: LinkId,
        _error: &str,
        _now: Instant,
        _out: &mut Actions<Self::Event>,
    ) {
    }

    /// Answer a plain (non-upgrade) `GET` for `path`; `None` means 404.
    fn http_get(
        &mut self,
        _path: &str,
        _stats: &TransportStats,
        _now: Instant,
    ) -> Option<HttpResponse> {
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn staged_bytes_are_shared_by_every_send() {
        let mut out: Actions<()> = Actions::new();
        let msg = out.stage_with(|buf| buf.extend_from_slice(b"{\"a\":1}"));
        let (a, b) = (crate::testkit::conn(1), crate::testkit::conn(2));
        out.send(a, &msg);
        out.send(b, &msg);
        assert_eq!(out.list().len(), 2);
        for action in out.list() {
            match action {
                Action::Send { msg, .. } => assert_eq!(out.bytes(msg), b"{\"a\":1}"),
                other => panic!("unexpected {other:?}"),
            }
        }
        out.clear();
        assert!(out.is_empty());
    }
}

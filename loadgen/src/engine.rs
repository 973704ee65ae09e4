//! Many client connections on one poll ([`Engine`]), each taken through the protocol's opening
//! (connect, HTTP upgrade with the `Sec-WebSocket-Accept` checked, the welcome
//! `session_info`, `auth`, `auth_success`); then the messages of ready connections are
//! gathered in an [`Inbox`] for the mode that drives them.

use std::io::{self, Read, Write};
use std::net::Shutdown;
use std::time::{Duration, Instant};

use mio::net::TcpStream;
use mio::{Events, Interest, Poll, Token};

use crate::framing::{
    base64, next_random, parse_header, push_frame, seed, OP_BINARY, OP_CLOSE, OP_CONT, OP_PING,
    OP_PONG, OP_TEXT,
};
use crate::json::{json_field, json_str, lossy};
use crate::url::Target;
use crate::{READ_CHUNK, SETUP_TIMEOUT};

/// A connection's buffers are given back when empty and larger than this.
const KEEP_CAPACITY: usize = 16 * 1024;

/// Where a connection is in the opening sequence.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Phase {
    /// TCP connect in progress.
    Connecting,
    /// Upgrade request sent; reading the response head.
    Upgrading,
    /// Upgraded; waiting for the welcome `session_info`.
    Welcome,
    /// `auth` sent; waiting for `auth_success`.
    Authing,
    /// Authenticated: messages go to the inbox.
    Ready,
    /// Closed or failed.
    Closed,
}

/// One client connection.
pub struct Conn {
    stream: TcpStream,
    /// Where it is.
    pub phase: Phase,
    /// The `clientId` from the welcome.
    pub client_id: String,
    /// Which of the engine's targets it goes to.
    target: usize,
    key: String,
    rbuf: Vec<u8>,
    wbuf: Vec<u8>,
    wpos: usize,
    frag: Vec<u8>,
    frag_op: u8,
    writable: bool,
    in_dirty: bool,
}

/// Messages received by ready connections since the last [`Engine::take_inbox`].
#[derive(Default)]
pub struct Inbox {
    data: Vec<u8>,
    msgs: Vec<(usize, usize, usize)>,
}

impl Inbox {
    /// (connection index, message bytes) in arrival order.
    pub fn iter(&self) -> impl Iterator<Item = (usize, &[u8])> + '_ {
        self.msgs
            .iter()
            .map(move |&(c, s, e)| (c, &self.data[s..e]))
    }

    /// How many messages.
    pub fn len(&self) -> usize {
        self.msgs.len()
    }

    /// Whether there is none.
    pub fn is_empty(&self) -> bool {
        self.msgs.is_empty()
    }

    pub(crate) fn clear(&mut self) {
        self.data.clear();
        self.msgs.clear();
    }
}

/// Many client connections on one poll.
pub struct Engine {
    poll: Poll,
    events: Events,
    /// Where connections go ([`Engine::add_target`]), each with its `auth` frame.
    targets: Vec<(Target, Vec<u8>)>,
    /// The connections, by index (= mio token).
    pub conns: Vec<Conn>,
    readbuf: Vec<u8>,
    pub(crate) inbox: Inbox,
    dirty: Vec<usize>,
    ready_events: Vec<(usize, bool, bool)>,
    rng: u64,
    /// Connections that reached `Ready`.
    pub n_ready: usize,
    /// Connections that failed before `Ready`.
    pub n_failed: usize,
    /// Ready connections that were closed (by the server or an error).
    pub n_lost: usize,
    /// The first failure, for the report.
    pub first_error: Option<String>,
    /// Server Ping frames answered.
    pub pings_answered: u64,
}

impl Engine {
    /// An engine for `target` (its target 0), with no connection yet.
    pub fn new(target: &Target) -> Result<Engine, String> {
        let mut engine = Engine {
            poll: Poll::new().map_err(|e| format!("poll: {e}"))?,
            events: Events::with_capacity(4096),
            targets: Vec::new(),
            conns: Vec::new(),
            readbuf: vec![0; READ_CHUNK],
            inbox: Inbox::default(),
            dirty: Vec::new(),
            ready_events: Vec::new(),
            rng: seed(),
            n_ready: 0,
            n_failed: 0,
            n_lost: 0,
            first_error: None,
            pings_answered: 0,
        };
        engine.add_target(target)?;
        Ok(engine)
    }

    /// Another place connections may go (a node of a cluster, say); returns its number for
    /// [`Engine::connect_to`] and [`Engine::open_ready_to`].
    pub fn add_target(&mut self, target: &Target) -> Result<usize, String> {
        let token = serde_json::to_string(&target.token).map_err(|e| e.to_string())?;
        let auth_frame =
            format!("{{\"type\":\"auth\",\"id\":\"auth\",\"payload\":{{\"token\":{token}}}}}")
                .into_bytes();
        self.targets.push((target.clone(), auth_frame));
        Ok(self.targets.len() - 1)
    }

    /// Start one connection to the first target; returns its index.
    pub fn connect(&mut self) -> Result<usize, String> {
        self.connect_to(0)
    }

    /// Start one connection to target number `target`; returns its index.
    pub fn connect_to(&mut self, target: usize) -> Result<usize, String> {
        let idx = self.conns.len();
        let to = &self.targets[target].0;
        let mut stream = to
            .connect(idx)
            .map_err(|e| format!("connect {}: {e}", to.url.addr))?;
        self.poll
            .registry()
            .register(
                &mut stream,
                Token(idx),
                Interest::READABLE | Interest::WRITABLE,
            )
            .map_err(|e| format!("register: {e}"))?;
        let mut key = [0u8; 16];
        for chunk in key.chunks_mut(8) {
            chunk.copy_from_slice(&next_random(&mut self.rng).to_ne_bytes());
        }
        self.conns.push(Conn {
            stream,
            phase: Phase::Connecting,
            client_id: String::new(),
            target,
            key: base64(&key),
            rbuf: Vec::new(),
            wbuf: Vec::new(),
            wpos: 0,
            frag: Vec::new(),
            frag_op: 0,
            writable: false,
            in_dirty: false,
        });
        Ok(idx)
    }

    /// Open `n` connections to the first target, at most `concurrency` in their opening at
    /// once, and wait until every one is authenticated. Returns their indices (consecutive).
    pub fn open_ready(&mut self, n: usize, concurrency: usize) -> Result<Vec<usize>, String> {
        self.open_ready_to(0, n, concurrency)
    }

    /// [`Engine::open_ready`] to target number `target`.
    pub fn open_ready_to(
        &mut self,
        target: usize,
        n: usize,
        concurrency: usize,
    ) -> Result<Vec<usize>, String> {
        let first = self.conns.len();
        let ready0 = self.n_ready;
        let failed0 = self.n_failed;
        let deadline = Instant::now() + SETUP_TIMEOUT;
        let mut started = 0;
        loop {
            let ready = self.n_ready - ready0;
            if self.n_failed > failed0 {
                return Err(format!(
                    "{} of {n} connections failed while opening ({ready} ready): {}",
                    self.n_failed - failed0,
                    self.first_error.clone().unwrap_or_default()
                ));
            }
            if ready == n {
                break;
            }
            while started < n && started - ready < concurrency.max(1) {
                self.connect_to(target)?;
                started += 1;
            }
            self.poll_once(Some(Duration::from_millis(50)))?;
            self.inbox.clear();
            if Instant::now() > deadline {
                return Err(format!(
                    "timed out opening connections: {ready} of {n} ready"
                ));
            }
        }
        Ok((first..first + n).collect())
    }

    /// Queue a text message on connection `idx` (written on the next flush or poll).
    pub fn send_text(&mut self, idx: usize, payload: &[u8]) {
        let conn = &mut self.conns[idx];
        if conn.phase == Phase::Closed {
            return;
        }
        push_frame(&mut conn.wbuf, OP_TEXT, payload, &mut self.rng);
        if !conn.in_dirty {
            conn.in_dirty = true;
            self.dirty.push(idx);
        }
    }

    /// Bytes queued on `idx` and not written yet.
    pub fn pending(&self, idx: usize) -> usize {
        let c = &self.conns[idx];
        c.wbuf.len() - c.wpos
    }

    /// Take the messages received so far (give the value back with [`Engine::give_inbox`]).
    pub fn take_inbox(&mut self) -> Inbox {
        std::mem::take(&mut self.inbox)
    }

    /// Give back an inbox taken with [`Engine::take_inbox`], to reuse its buffers.
    pub fn give_inbox(&mut self, mut inbox: Inbox) {
        if self.inbox.is_empty() {
            inbox.clear();
            self.inbox = inbox;
        }
    }

    /// Write what is queued on every connection that has something queued.
    pub fn flush_dirty(&mut self) {
        let mut dirty = std::mem::take(&mut self.dirty);
        for &idx in &dirty {
            self.conns[idx].in_dirty = false;
            self.flush(idx);
        }
        dirty.clear();
        if self.dirty.is_empty() {
            self.dirty = dirty;
        }
    }

    /// Flush, wait up to `timeout` for readiness, read and handle what arrived, flush again.
    pub fn poll_once(&mut self, timeout: Option<Duration>) -> Result<(), String> {
        self.flush_dirty();
        match self.poll.poll(&mut self.events, timeout) {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::Interrupted => return Ok(()),
            Err(e) => return Err(format!("poll: {e}")),
        }
        let mut ready = std::mem::take(&mut self.ready_events);
        ready.clear();
        for ev in self.events.iter() {
            ready.push((
                ev.token().0,
                ev.is_readable() || ev.is_read_closed() || ev.is_error(),
                ev.is_writable() || ev.is_write_closed(),
            ));
        }
        for &(idx, readable, writable) in &ready {
            if idx >= self.conns.len() || self.conns[idx].phase == Phase::Closed {
                continue;
            }
            if writable {
                self.conns[idx].writable = true;
                if self.conns[idx].phase == Phase::Connecting {
                    self.on_connected(idx);
                }
                self.flush(idx);
            }
            if readable && self.conns[idx].phase != Phase::Connecting {
                self.read(idx);
            }
        }
        self.ready_events = ready;
        self.flush_dirty();
        Ok(())
    }

    fn on_connected(&mut self, idx: usize) {
        let conn = &mut self.conns[idx];
        match conn.stream.take_error() {
            Ok(None) => {}
            Ok(Some(e)) | Err(e) => return self.fail(idx, format!("connect: {e}")),
        }
        if let Err(e) = conn.stream.peer_addr() {
            if e.kind() == io::ErrorKind::NotConnected {
                conn.writable = false;
                return; // not yet: a later writable event finishes it
            }
            return self.fail(idx, format!("connect: {e}"));
        }
        let _ = conn.stream.set_nodelay(true);
        let url = &self.targets[conn.target].0.url;
        let request = format!(
            "GET {} HTTP/1.1\r\nHost: {}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
             Sec-WebSocket-Key: {}\r\nSec-WebSocket-Version: 13\r\n\r\n",
            url.path,
            url.host_header(),
            conn.key
        );
        conn.wbuf.extend_from_slice(request.as_bytes());
        conn.phase = Phase::Upgrading;
    }

    fn flush(&mut self, idx: usize) {
        let conn = &mut self.conns[idx];
        if !conn.writable || conn.phase == Phase::Connecting || conn.phase == Phase::Closed {
            return;
        }
        while conn.wpos < conn.wbuf.len() {
            match conn.stream.write(&conn.wbuf[conn.wpos..]) {
                Ok(0) => return self.fail(idx, "write returned 0".into()),
                Ok(n) => conn.wpos += n,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    conn.writable = false;
                    return;
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return self.fail(idx, format!("write: {e}")),
            }
        }
        conn.wbuf.clear();
        conn.wpos = 0;
        if conn.wbuf.capacity() > KEEP_CAPACITY {
            conn.wbuf = Vec::new();
        }
    }

    fn read(&mut self, idx: usize) {
        loop {
            let conn = &mut self.conns[idx];
            if conn.phase == Phase::Closed {
                return;
            }
            match conn.stream.read(&mut self.readbuf) {
                Ok(0) => return self.fail(idx, "the server closed the connection".into()),
                Ok(n) => {
                    conn.rbuf.extend_from_slice(&self.readbuf[..n]);
                    if let Err(e) = self.process(idx) {
                        return self.fail(idx, e);
                    }
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return self.fail(idx, format!("read: {e}")),
            }
        }
        let conn = &mut self.conns[idx];
        if conn.rbuf.is_empty() && conn.rbuf.capacity() > KEEP_CAPACITY {
            conn.rbuf = Vec::new();
        }
    }

    fn fail(&mut self, idx: usize, why: String) {
        let conn = &mut self.conns[idx];
        if conn.phase == Phase::Closed {
            return;
        }
        if conn.phase == Phase::Ready {
            self.n_lost += 1;
        } else {
            self.n_failed += 1;
        }
        if self.first_error.is_none() {
            self.first_error = Some(format!("connection {idx}: {why}"));
        }
        conn.phase = Phase::Closed;
        let _ = self.poll.registry().deregister(&mut conn.stream);
        let _ = conn.stream.shutdown(Shutdown::Both);
        conn.rbuf = Vec::new();
        conn.wbuf = Vec::new();
        conn.frag = Vec::new();
    }

    /// Handle what is in `rbuf`: the upgrade response, then frames.
    fn process(&mut self, idx: usize) -> Result<(), String> {
        let Engine {
            conns,
            inbox,
            dirty,
            rng,
            targets,
            n_ready,
            pings_answered,
            ..
        } = self;
        let conn = &mut conns[idx];
        let auth_frame = &targets[conn.target].1;
        if conn.phase == Phase::Upgrading {
            let mut headers = [httparse::EMPTY_HEADER; 32];
            let mut response = httparse::Response::new(&mut headers);
            let head_len = match response.parse(&conn.rbuf) {
                Ok(httparse::Status::Complete(n)) => n,
                Ok(httparse::Status::Partial) if conn.rbuf.len() < 16 * 1024 => return Ok(()),
                Ok(httparse::Status::Partial) => return Err("upgrade response too long".into()),
                Err(e) => return Err(format!("bad upgrade response: {e}")),
            };
            if response.code != Some(101) {
                return Err(format!(
                    "upgrade refused: {} {}",
                    response.code.unwrap_or(0),
                    response.reason.unwrap_or("")
                ));
            }
            let expected = tungstenite::handshake::derive_accept_key(conn.key.as_bytes());
            let accept = response
                .headers
                .iter()
                .find(|h| h.name.eq_ignore_ascii_case("sec-websocket-accept"))
                .map(|h| h.value);
            if accept != Some(expected.as_bytes()) {
                return Err("wrong Sec-WebSocket-Accept".into());
            }
            conn.rbuf.drain(..head_len);
            conn.phase = Phase::Welcome;
        }
        let Conn {
            stream,
            rbuf,
            wbuf,
            frag,
            frag_op,
            phase,
            client_id,
            in_dirty,
            ..
        } = conn;
        let mut pos = 0;
        let mut result = Ok(());
        while let Some((fin, op, header, len)) = parse_header(&rbuf[pos..])? {
            if rbuf.len() - pos < header + len {
                break;
            }
            let payload = &rbuf[pos + header..pos + header + len];
            pos += header + len;
            let message: &[u8] = match op {
                OP_TEXT | OP_BINARY if fin => payload,
                OP_TEXT | OP_BINARY => {
                    *frag_op = op;
                    frag.clear();
                    frag.extend_from_slice(payload);
                    continue;
                }
                OP_CONT => {
                    if *frag_op == 0 {
                        return Err("continuation frame without a message".into());
                    }
                    frag.extend_from_slice(payload);
                    if !fin {
                        continue;
                    }
                    *frag_op = 0;
                    frag
                }
                OP_PING => {
                    push_frame(wbuf, OP_PONG, payload, rng);
                    *pings_answered += 1;
                    if !*in_dirty {
                        *in_dirty = true;
                        dirty.push(idx);
                    }
                    continue;
                }
                OP_PONG => continue,
                OP_CLOSE => {
                    let code = if payload.len() >= 2 {
                        u16::from_be_bytes([payload[0], payload[1]])
                    } else {
                        1005
                    };
                    let reason = lossy(payload.get(2..).unwrap_or_default());
                    let mut reply = Vec::new();
                    push_frame(&mut reply, OP_CLOSE, &code.to_be_bytes(), rng);
                    // Best effort: the connection is over either way.
                    let _ = stream.write(&reply);
                    result = Err(format!("server sent close {code} {reason:?}"));
                    break;
                }
                other => return Err(format!("unknown opcode {other}")),
            };
            match *phase {
                Phase::Ready => {
                    let start = inbox.data.len();
                    inbox.data.extend_from_slice(message);
                    inbox.msgs.push((idx, start, inbox.data.len()));
                }
                Phase::Welcome => {
                    let kind = json_str(message, b"type");
                    let welcome = json_field(message, b"payload")
                        .and_then(|p| json_str(p, b"clientId").map(lossy));
                    match (kind, welcome) {
                        (Some(b"session_info"), Some(id)) => {
                            *client_id = id;
                            push_frame(wbuf, OP_TEXT, auth_frame, rng);
                            *phase = Phase::Authing;
                            if !*in_dirty {
                                *in_dirty = true;
                                dirty.push(idx);
                            }
                        }
                        _ => {
                            return Err(format!(
                                "expected the welcome session_info, got {}",
                                lossy(message)
                            ))
                        }
                    }
                }
                Phase::Authing => match json_str(message, b"type") {
                    Some(b"auth_success") => {
                        *phase = Phase::Ready;
                        *n_ready += 1;
                    }
                    Some(b"error") => {
                        return Err(format!("auth refused: {}", lossy(message)));
                    }
                    _ => {} // something else before the reply: ignore
                },
                _ => {}
            }
        }
        rbuf.drain(..pos);
        if frag.capacity() > KEEP_CAPACITY && *frag_op == 0 {
            *frag = Vec::new();
        }
        result
    }

    /// Close every connection (a close frame where it is open, then the socket).
    pub fn close_all(&mut self) {
        for idx in 0..self.conns.len() {
            let conn = &mut self.conns[idx];
            if conn.phase == Phase::Closed {
                continue;
            }
            if matches!(conn.phase, Phase::Welcome | Phase::Authing | Phase::Ready) {
                let mut frame = Vec::new();
                push_frame(&mut frame, OP_CLOSE, &1000u16.to_be_bytes(), &mut self.rng);
                let _ = conn.stream.write(&frame);
            }
            conn.phase = Phase::Closed;
            let _ = self.poll.registry().deregister(&mut conn.stream);
        }
        self.conns.clear();
        self.dirty.clear();
        self.inbox.clear();
    }

    /// Fail with the first error if any ready connection was lost.
    pub fn check_lost(&self) -> Result<(), String> {
        if self.n_lost > 0 {
            return Err(format!(
                "{} connection(s) lost: {}",
                self.n_lost,
                self.first_error.clone().unwrap_or_default()
            ));
        }
        Ok(())
    }
}

impl Drop for Engine {
    fn drop(&mut self) {
        self.close_all();
    }
}

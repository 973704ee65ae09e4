//! The client engine behind `examples/loadgen.rs` and `benches/gateway.rs` (both include this
//! file with `#[path]`; it is not a crate of its own).
//!
//! One thread, one `mio::Poll`, many nonblocking connections to any `ws://` URL that speaks the
//! gateway's JSON protocol (the gateway itself, or a peer server doing the same work). It has
//! its own small client-side framing: masked client frames out; unmasked server frames in,
//! fragmented messages reassembled, server Pings answered with Pongs, a server Close answered
//! and reported.
//!
//! Every connection goes through the protocol's opening: HTTP upgrade (the `Sec-WebSocket-Accept`
//! is checked), the welcome `session_info`, `auth` with the token, `auth_success`. Then the
//! modes ([`run_latency`], [`run_throughput`], [`run_fanout`], [`run_idle`]) drive it;
//! [`run_floor`] with [`spawn_echo`] is the raw TCP ping-pong floor the latency is compared to.
//!
//! The hot paths read JSON with a small top-level field scanner ([`json_field`]), not a full
//! parse, so that the client costs as little CPU as possible on a machine it shares with the
//! server; the same scanner is used against every server, so comparisons stay fair.
//!
//! Server CPU comes from `/proc/PID/stat` (a process) or `/proc/PID/task/TID/stat` (one
//! thread): utime + stime, in clock ticks, turned into seconds with `getconf CLK_TCK` (read
//! once; 100 if that fails). Server memory is `VmRSS` from `/proc/PID/status`.
#![allow(dead_code)]

use std::io::{self, Read, Write};
use std::net::{Shutdown, SocketAddr, ToSocketAddrs};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use mio::net::TcpStream;
use mio::{Events, Interest, Poll, Token};
use serde_json::{json, Value};

/// The token of the shipped development configuration.
pub const DEFAULT_TOKEN: &str = "dev-token-change-me";
/// Published figure, for context only: uWebSockets bare echo, server CPU per message.
pub const REF_UWS_ECHO_US: f64 = 4.8;
/// Published figure, for context only: a Node `ws` server doing the same JSON work.
pub const REF_NODE_WS_US: f64 = 9.5;

const READ_CHUNK: usize = 64 * 1024;
/// A connection's buffers are given back when empty and larger than this.
const KEEP_CAPACITY: usize = 16 * 1024;
/// How long the opening (connect, upgrade, welcome, auth) of a batch may take at most.
const SETUP_TIMEOUT: Duration = Duration::from_secs(120);
/// How long one reply may take at most before a mode gives up.
const REPLY_TIMEOUT: Duration = Duration::from_secs(10);

// ----- URL ------------------------------------------------------------------------------------

/// A parsed `ws://host:port/path` URL.
#[derive(Clone, Debug)]
pub struct WsUrl {
    /// Host as written (for the `Host` header).
    pub host: String,
    /// Port (80 when absent).
    pub port: u16,
    /// Path and query, at least `/`.
    pub path: String,
    /// The resolved address.
    pub addr: SocketAddr,
}

impl WsUrl {
    /// Parse and resolve `url`; only `ws://` is supported.
    pub fn parse(url: &str) -> Result<WsUrl, String> {
        let rest = url
            .strip_prefix("ws://")
            .ok_or_else(|| format!("{url}: only ws:// URLs are supported"))?;
        let (authority, path) = match rest.find('/') {
            Some(i) => (&rest[..i], &rest[i..]),
            None => (rest, "/"),
        };
        let (host, port) = if let Some(v6) = authority.strip_prefix('[') {
            let end = v6
                .find(']')
                .ok_or_else(|| format!("{url}: bad IPv6 host"))?;
            let port = match v6[end + 1..].strip_prefix(':') {
                Some(p) => p.parse().map_err(|_| format!("{url}: bad port"))?,
                None => 80,
            };
            (&v6[..end], port)
        } else {
            match authority.rsplit_once(':') {
                Some((h, p)) => (h, p.parse().map_err(|_| format!("{url}: bad port"))?),
                None => (authority, 80),
            }
        };
        let addr = (host, port)
            .to_socket_addrs()
            .map_err(|e| format!("{url}: cannot resolve {host}: {e}"))?
            .next()
            .ok_or_else(|| format!("{url}: {host} has no address"))?;
        Ok(WsUrl {
            host: host.to_string(),
            port,
            path: path.to_string(),
            addr,
        })
    }

    fn host_header(&self) -> String {
        if self.host.contains(':') {
            format!("[{}]:{}", self.host, self.port)
        } else {
            format!("{}:{}", self.host, self.port)
        }
    }
}

/// Where to connect and how to authenticate.
#[derive(Clone, Debug)]
pub struct Target {
    /// The endpoint.
    pub url: WsUrl,
    /// The `auth` token.
    pub token: String,
    /// Connect from this many loopback source addresses (127.0.0.1, .2, ...) in turn; 1 lets
    /// the kernel choose. With one source address, `connect()` searches ever longer for a free
    /// ephemeral port once ~14 000 are taken, and the client, not the server, sets the pace.
    pub sources: u8,
}

impl Target {
    /// A target for `url` with `token`, connecting from one source address.
    pub fn new(url: &str, token: &str) -> Result<Target, String> {
        Ok(Target {
            url: WsUrl::parse(url)?,
            token: token.to_string(),
            sources: 1,
        })
    }

    /// The same target, connecting from `sources` loopback addresses (only for a loopback
    /// IPv4 target on Linux; elsewhere the kernel chooses).
    pub fn with_sources(mut self, sources: u8) -> Target {
        self.sources = sources.max(1);
        self
    }

    /// Start a nonblocking connection, the `n`th of this target.
    fn connect(&self, n: usize) -> io::Result<TcpStream> {
        match self.url.addr {
            SocketAddr::V4(dst) if self.sources > 1 && dst.ip().is_loopback() => {
                let src = std::net::Ipv4Addr::new(127, 0, 0, 1 + (n % self.sources as usize) as u8);
                connect_from(src, dst)
            }
            addr => TcpStream::connect(addr),
        }
    }
}

/// A nonblocking connection from `src` to `dst`. `IP_BIND_ADDRESS_NO_PORT` defers the choice
/// of the source port to `connect()`, which then picks it for the whole 4-tuple.
#[cfg(target_os = "linux")]
fn connect_from(src: std::net::Ipv4Addr, dst: std::net::SocketAddrV4) -> io::Result<TcpStream> {
    use std::os::fd::FromRawFd;

    fn sockaddr(ip: std::net::Ipv4Addr, port: u16) -> libc::sockaddr_in {
        libc::sockaddr_in {
            sin_family: libc::AF_INET as libc::sa_family_t,
            sin_port: port.to_be(),
            sin_addr: libc::in_addr {
                s_addr: u32::from(ip).to_be(),
            },
            sin_zero: [0; 8],
        }
    }
    fn check(rc: libc::c_int) -> io::Result<()> {
        if rc == 0 {
            Ok(())
        } else {
            Err(io::Error::last_os_error())
        }
    }
    let len = std::mem::size_of::<libc::sockaddr_in>() as libc::socklen_t;
    let from = sockaddr(src, 0);
    let to = sockaddr(*dst.ip(), dst.port());
    let one: libc::c_int = 1;
    // SAFETY: plain socket calls on a descriptor this function owns from the moment it exists
    // (`stream` closes it on every return path); every pointer is to a local that outlives
    // the call, with the length of its type.
    unsafe {
        let fd = libc::socket(
            libc::AF_INET,
            libc::SOCK_STREAM | libc::SOCK_NONBLOCK | libc::SOCK_CLOEXEC,
            0,
        );
        if fd < 0 {
            return Err(io::Error::last_os_error());
        }
        let stream = std::net::TcpStream::from_raw_fd(fd);
        check(libc::setsockopt(
            fd,
            libc::IPPROTO_IP,
            libc::IP_BIND_ADDRESS_NO_PORT,
            (&one as *const libc::c_int).cast(),
            std::mem::size_of::<libc::c_int>() as libc::socklen_t,
        ))?;
        check(libc::bind(
            fd,
            (&from as *const libc::sockaddr_in).cast(),
            len,
        ))?;
        if let Err(e) = check(libc::connect(
            fd,
            (&to as *const libc::sockaddr_in).cast(),
            len,
        )) {
            if e.raw_os_error() != Some(libc::EINPROGRESS) {
                return Err(e);
            }
        }
        Ok(TcpStream::from_std(stream))
    }
}

#[cfg(not(target_os = "linux"))]
fn connect_from(_src: std::net::Ipv4Addr, dst: std::net::SocketAddrV4) -> io::Result<TcpStream> {
    TcpStream::connect(SocketAddr::V4(dst))
}

// ----- /proc probes ---------------------------------------------------------------------------

/// Clock ticks per second for `/proc/*/stat` (`getconf CLK_TCK`, read once; 100 if unknown).
pub fn clock_ticks() -> f64 {
    static TICKS: OnceLock<f64> = OnceLock::new();
    *TICKS.get_or_init(|| {
        std::process::Command::new("getconf")
            .arg("CLK_TCK")
            .output()
            .ok()
            .and_then(|o| String::from_utf8(o.stdout).ok())
            .and_then(|s| s.trim().parse::<f64>().ok())
            .filter(|t| *t > 0.0)
            .unwrap_or(100.0)
    })
}

/// utime + stime in ticks from a `/proc/.../stat` file.
fn stat_ticks(path: &str) -> Option<u64> {
    let text = std::fs::read_to_string(path).ok()?;
    // The command name may hold spaces and parentheses: fields start after the last ')'.
    let rest = &text[text.rfind(')')? + 1..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    // fields[0] is field 3 (state); utime is field 14, stime field 15.
    let utime: u64 = fields.get(11)?.parse().ok()?;
    let stime: u64 = fields.get(12)?.parse().ok()?;
    Some(utime + stime)
}

/// `VmRSS` of a process in KiB.
pub fn rss_kib(pid: u32) -> Option<u64> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let line = text.lines().find(|l| l.starts_with("VmRSS:"))?;
    line.split_whitespace().nth(1)?.parse().ok()
}

/// The calling thread's id (from `/proc/thread-self`).
pub fn current_tid() -> Option<u32> {
    let link = std::fs::read_link("/proc/thread-self").ok()?;
    link.file_name()?.to_str()?.parse().ok()
}

/// Pin thread (or process) `tid` to `cpu` with `taskset -p`; false when that failed.
pub fn pin(tid: u32, cpu: usize) -> bool {
    std::process::Command::new("taskset")
        .args(["-p", "-c", &cpu.to_string(), &tid.to_string()])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

/// What the server is, for CPU and memory readings.
#[derive(Clone, Copy, Debug)]
pub enum Probe {
    /// Nothing known: no server figures.
    None,
    /// A whole process (all its threads).
    Process(u32),
    /// One thread of a process (an in-process gateway's loop thread).
    Thread {
        /// The process.
        pid: u32,
        /// The thread.
        tid: u32,
    },
}

impl Probe {
    /// The calling thread.
    pub fn this_thread() -> Probe {
        match current_tid() {
            Some(tid) => Probe::Thread {
                pid: std::process::id(),
                tid,
            },
            None => Probe::None,
        }
    }

    /// CPU time used so far (user + system), in seconds.
    pub fn cpu_seconds(&self) -> Option<f64> {
        let ticks = match *self {
            Probe::None => return None,
            Probe::Process(pid) => stat_ticks(&format!("/proc/{pid}/stat"))?,
            Probe::Thread { pid, tid } => stat_ticks(&format!("/proc/{pid}/task/{tid}/stat"))?,
        };
        Some(ticks as f64 / clock_ticks())
    }

    /// Resident memory of the process, in KiB.
    pub fn rss_kib(&self) -> Option<u64> {
        match *self {
            Probe::None => None,
            Probe::Process(pid) | Probe::Thread { pid, .. } => rss_kib(pid),
        }
    }

    /// Wait until the server has used less than one clock tick of CPU in 200 ms (at most
    /// `limit`), so that one measurement does not pay for the previous one's teardown.
    pub fn wait_quiet(&self, limit: Duration) {
        let end = Instant::now() + limit;
        let Some(mut last) = self.cpu_seconds() else {
            return;
        };
        while Instant::now() < end {
            std::thread::sleep(Duration::from_millis(200));
            let Some(now) = self.cpu_seconds() else {
                return;
            };
            if now - last < 1.0 / clock_ticks() {
                return;
            }
            last = now;
        }
    }
}

// ----- JSON scanning --------------------------------------------------------------------------

/// The raw text of the top-level field `key` of the JSON object `obj` (strings keep their
/// quotes; nested objects are returned whole), found by the gateway's own scanner.
pub fn json_field<'a>(obj: &'a [u8], key: &[u8]) -> Option<&'a [u8]> {
    let key = std::str::from_utf8(key).ok()?;
    gateway::core::wire::scan::member(obj, key)
}

/// The contents (still escaped) of the top-level string field `key`.
pub fn json_str<'a>(obj: &'a [u8], key: &[u8]) -> Option<&'a [u8]> {
    let v = json_field(obj, key)?;
    (v.len() >= 2 && v[0] == b'"').then(|| &v[1..v.len() - 1])
}

/// The top-level field `key` as an unsigned integer.
pub fn json_u64(obj: &[u8], key: &[u8]) -> Option<u64> {
    let v = json_field(obj, key)?;
    if v.is_empty() || !v.iter().all(u8::is_ascii_digit) {
        return None;
    }
    v.iter().try_fold(0u64, |n, d| {
        n.checked_mul(10)?.checked_add(u64::from(d - b'0'))
    })
}

/// Append `n` in decimal.
pub fn push_u64(buf: &mut Vec<u8>, mut n: u64) {
    let mut digits = [0u8; 20];
    let mut i = digits.len();
    loop {
        i -= 1;
        digits[i] = b'0' + (n % 10) as u8;
        n /= 10;
        if n == 0 {
            break;
        }
    }
    buf.extend_from_slice(&digits[i..]);
}

fn lossy(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

// ----- framing --------------------------------------------------------------------------------

const OP_CONT: u8 = 0x0;
const OP_TEXT: u8 = 0x1;
const OP_BINARY: u8 = 0x2;
const OP_CLOSE: u8 = 0x8;
const OP_PING: u8 = 0x9;
const OP_PONG: u8 = 0xA;

/// xorshift64*: mask keys and handshake keys (not for secrets).
fn next_random(state: &mut u64) -> u64 {
    let mut x = *state;
    x ^= x >> 12;
    x ^= x << 25;
    x ^= x >> 27;
    *state = x;
    x.wrapping_mul(0x2545_f491_4f6c_dd1d)
}

fn seed() -> u64 {
    let t = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as u64);
    (t ^ (u64::from(std::process::id()) << 32)) | 1
}

fn apply_mask(data: &mut [u8], mask: [u8; 4]) {
    let m = u32::from_ne_bytes(mask);
    let mut chunks = data.chunks_exact_mut(4);
    for chunk in &mut chunks {
        let v = u32::from_ne_bytes([chunk[0], chunk[1], chunk[2], chunk[3]]) ^ m;
        chunk.copy_from_slice(&v.to_ne_bytes());
    }
    for (i, b) in chunks.into_remainder().iter_mut().enumerate() {
        *b ^= mask[i];
    }
}

/// Append one masked client frame.
fn push_frame(buf: &mut Vec<u8>, opcode: u8, payload: &[u8], rng: &mut u64) {
    buf.push(0x80 | opcode);
    let n = payload.len();
    if n < 126 {
        buf.push(0x80 | n as u8);
    } else if n <= 0xffff {
        buf.push(0x80 | 126);
        buf.extend_from_slice(&(n as u16).to_be_bytes());
    } else {
        buf.push(0x80 | 127);
        buf.extend_from_slice(&(n as u64).to_be_bytes());
    }
    let mask = (next_random(rng) as u32).to_ne_bytes();
    buf.extend_from_slice(&mask);
    let start = buf.len();
    buf.extend_from_slice(payload);
    apply_mask(&mut buf[start..], mask);
}

/// A server frame header: (fin, opcode, header length, payload length), or None if incomplete.
fn parse_header(b: &[u8]) -> Result<Option<(bool, u8, usize, usize)>, String> {
    if b.len() < 2 {
        return Ok(None);
    }
    if b[0] & 0x70 != 0 {
        return Err("server frame with reserved bits set".into());
    }
    if b[1] & 0x80 != 0 {
        return Err("masked server frame".into());
    }
    let fin = b[0] & 0x80 != 0;
    let op = b[0] & 0x0f;
    let (len, header) = match b[1] & 0x7f {
        126 => {
            if b.len() < 4 {
                return Ok(None);
            }
            (usize::from(u16::from_be_bytes([b[2], b[3]])), 4)
        }
        127 => {
            if b.len() < 10 {
                return Ok(None);
            }
            let mut n = [0u8; 8];
            n.copy_from_slice(&b[2..10]);
            let n = u64::from_be_bytes(n);
            (usize::try_from(n).map_err(|_| "frame too large")?, 10)
        }
        n => (usize::from(n), 2),
    };
    Ok(Some((fin, op, header, len)))
}

fn base64(bytes: &[u8]) -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::new();
    for chunk in bytes.chunks(3) {
        let b = [
            chunk[0],
            *chunk.get(1).unwrap_or(&0),
            *chunk.get(2).unwrap_or(&0),
        ];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(ALPHABET[(n >> (18 - 6 * i)) as usize & 63] as char);
            } else {
                out.push('=');
            }
        }
    }
    out
}

// ----- the engine -----------------------------------------------------------------------------

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

    fn clear(&mut self) {
        self.data.clear();
        self.msgs.clear();
    }
}

/// Many client connections on one poll.
pub struct Engine {
    poll: Poll,
    events: Events,
    target: Target,
    auth_frame: Vec<u8>,
    /// The connections, by index (= mio token).
    pub conns: Vec<Conn>,
    readbuf: Vec<u8>,
    inbox: Inbox,
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
    /// An engine for `target`, with no connection yet.
    pub fn new(target: &Target) -> Result<Engine, String> {
        let token = serde_json::to_string(&target.token).map_err(|e| e.to_string())?;
        let auth_frame =
            format!("{{\"type\":\"auth\",\"id\":\"auth\",\"payload\":{{\"token\":{token}}}}}")
                .into_bytes();
        Ok(Engine {
            poll: Poll::new().map_err(|e| format!("poll: {e}"))?,
            events: Events::with_capacity(4096),
            target: target.clone(),
            auth_frame,
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
        })
    }

    /// Start one connection; returns its index.
    pub fn connect(&mut self) -> Result<usize, String> {
        let idx = self.conns.len();
        let mut stream = self
            .target
            .connect(idx)
            .map_err(|e| format!("connect {}: {e}", self.target.url.addr))?;
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

    /// Open `n` connections, at most `concurrency` in their opening at once, and wait until
    /// every one is authenticated. Returns their indices (consecutive).
    pub fn open_ready(&mut self, n: usize, concurrency: usize) -> Result<Vec<usize>, String> {
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
                self.connect()?;
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
        let url = &self.target.url;
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
            auth_frame,
            n_ready,
            pings_answered,
            ..
        } = self;
        let conn = &mut conns[idx];
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

// ----- results --------------------------------------------------------------------------------

/// Round-trip times of one run.
#[derive(Clone, Debug)]
pub struct LatencyResult {
    /// Samples in ns, sorted.
    pub samples_ns: Vec<u64>,
}

impl LatencyResult {
    fn new(mut samples_ns: Vec<u64>) -> LatencyResult {
        samples_ns.sort_unstable();
        LatencyResult { samples_ns }
    }

    /// The `q` quantile (nearest rank) in µs.
    pub fn quantile_us(&self, q: f64) -> f64 {
        if self.samples_ns.is_empty() {
            return f64::NAN;
        }
        let n = self.samples_ns.len();
        let rank = ((q * n as f64).ceil() as usize).clamp(1, n);
        self.samples_ns[rank - 1] as f64 / 1000.0
    }

    /// Mean in µs.
    pub fn mean_us(&self) -> f64 {
        let sum: u128 = self.samples_ns.iter().map(|&n| u128::from(n)).sum();
        sum as f64 / self.samples_ns.len().max(1) as f64 / 1000.0
    }

    /// p50, p90, p99, p99.9, max and mean as JSON (µs).
    pub fn to_json(&self) -> Value {
        json!({
            "count": self.samples_ns.len(),
            "p50_us": round3(self.quantile_us(0.5)),
            "p90_us": round3(self.quantile_us(0.9)),
            "p99_us": round3(self.quantile_us(0.99)),
            "p999_us": round3(self.quantile_us(0.999)),
            "max_us": round3(self.quantile_us(1.0)),
            "mean_us": round3(self.mean_us()),
        })
    }

    /// One human-readable line.
    pub fn line(&self) -> String {
        format!(
            "{} round trips: p50 {:.1} µs  p90 {:.1}  p99 {:.1}  p99.9 {:.1}  max {:.1}  mean {:.1}",
            self.samples_ns.len(),
            self.quantile_us(0.5),
            self.quantile_us(0.9),
            self.quantile_us(0.99),
            self.quantile_us(0.999),
            self.quantile_us(1.0),
            self.mean_us()
        )
    }
}

/// Round to 3 decimals (NaN becomes null in JSON output through `json!`).
pub fn round3(x: f64) -> f64 {
    (x * 1000.0).round() / 1000.0
}

/// The median of `values` (NaN ignored); NaN when there is none.
pub fn median(values: &[f64]) -> f64 {
    let mut v: Vec<f64> = values.iter().copied().filter(|x| !x.is_nan()).collect();
    if v.is_empty() {
        return f64::NAN;
    }
    v.sort_by(|a, b| a.total_cmp(b));
    let n = v.len();
    if n % 2 == 1 {
        v[n / 2]
    } else {
        (v[n / 2 - 1] + v[n / 2]) / 2.0
    }
}

fn delta(a: Option<f64>, b: Option<f64>) -> Option<f64> {
    Some(b? - a?)
}

fn opt(x: Option<f64>) -> Value {
    x.filter(|v| v.is_finite())
        .map_or(Value::Null, |v| json!(round3(v)))
}

fn fmt_opt(x: Option<f64>, decimals: usize) -> String {
    match x {
        Some(v) if v.is_finite() => format!("{v:.decimals$}"),
        _ => "n/a".to_string(),
    }
}

// ----- TCP floor ------------------------------------------------------------------------------

/// Start a blocking echo thread on 127.0.0.1:0 (one client at a time); returns its address
/// and the thread's id.
pub fn spawn_echo() -> io::Result<(SocketAddr, Option<u32>)> {
    let listener = std::net::TcpListener::bind("127.0.0.1:0")?;
    let addr = listener.local_addr()?;
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::Builder::new()
        .name("tcp-echo".into())
        .spawn(move || {
            let _ = tx.send(current_tid());
            let mut buf = vec![0u8; READ_CHUNK];
            for stream in listener.incoming() {
                let Ok(mut stream) = stream else { continue };
                let _ = stream.set_nodelay(true);
                loop {
                    match stream.read(&mut buf) {
                        Ok(0) | Err(_) => break,
                        Ok(n) => {
                            if stream.write_all(&buf[..n]).is_err() {
                                break;
                            }
                        }
                    }
                }
            }
        })?;
    let tid = rx.recv().ok().flatten();
    Ok((addr, tid))
}

/// `count` round trips of `size` bytes (after `warmup`) against an echo server, with the same
/// I/O pattern as the WebSocket latency client: nonblocking write, poll, read.
pub fn run_floor(
    addr: SocketAddr,
    size: usize,
    warmup: usize,
    count: usize,
) -> Result<LatencyResult, String> {
    let mut poll = Poll::new().map_err(|e| e.to_string())?;
    let mut events = Events::with_capacity(16);
    let mut stream = TcpStream::connect(addr).map_err(|e| format!("connect {addr}: {e}"))?;
    poll.registry()
        .register(
            &mut stream,
            Token(0),
            Interest::READABLE | Interest::WRITABLE,
        )
        .map_err(|e| e.to_string())?;
    let deadline = Instant::now() + REPLY_TIMEOUT;
    while stream.peer_addr().is_err() {
        poll.poll(&mut events, Some(Duration::from_millis(100)))
            .map_err(|e| e.to_string())?;
        if let Ok(Some(e)) = stream.take_error() {
            return Err(format!("connect {addr}: {e}"));
        }
        if Instant::now() > deadline {
            return Err(format!("connect {addr}: timed out"));
        }
    }
    stream.set_nodelay(true).map_err(|e| e.to_string())?;
    let msg = vec![0x5au8; size.max(1)];
    let mut buf = vec![0u8; READ_CHUNK];
    let mut samples = Vec::with_capacity(count);
    for i in 0..warmup + count {
        let t0 = Instant::now();
        let mut written = 0;
        let mut got = 0;
        while got < msg.len() {
            if written < msg.len() {
                match stream.write(&msg[written..]) {
                    Ok(n) => written += n,
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
                    Err(e) => return Err(format!("write: {e}")),
                }
            }
            match stream.read(&mut buf) {
                Ok(0) => return Err("echo closed".into()),
                Ok(n) => {
                    got += n;
                    continue;
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
                Err(e) => return Err(format!("read: {e}")),
            }
            poll.poll(&mut events, Some(REPLY_TIMEOUT))
                .map_err(|e| e.to_string())?;
            if events.is_empty() {
                return Err("echo timed out".into());
            }
        }
        if i >= warmup {
            samples.push(t0.elapsed().as_nanos() as u64);
        }
    }
    Ok(LatencyResult::new(samples))
}

// ----- latency --------------------------------------------------------------------------------

/// One connection, then sequential `ping` → `pong` round trips: `warmup` unrecorded, then
/// `count` recorded.
pub fn run_latency(target: &Target, warmup: usize, count: usize) -> Result<LatencyResult, String> {
    let mut e = Engine::new(target)?;
    let c = e.open_ready(1, 1)?[0];
    let mut samples = Vec::with_capacity(count);
    let mut msg = Vec::with_capacity(64);
    let mut id = Vec::with_capacity(24);
    for i in 0..(warmup + count) as u64 {
        id.clear();
        id.push(b'p');
        push_u64(&mut id, i);
        msg.clear();
        msg.extend_from_slice(b"{\"type\":\"ping\",\"id\":\"");
        msg.extend_from_slice(&id);
        msg.extend_from_slice(b"\"}");
        let t0 = Instant::now();
        e.send_text(c, &msg);
        e.flush_dirty();
        let mut done = false;
        while !done {
            e.poll_once(Some(REPLY_TIMEOUT))?;
            e.check_lost()?;
            let inbox = e.take_inbox();
            for (_, m) in inbox.iter() {
                match json_str(m, b"type") {
                    Some(b"pong") if json_str(m, b"replyTo") == Some(&id[..]) => done = true,
                    Some(b"error") => return Err(format!("error reply: {}", lossy(m))),
                    _ => {}
                }
            }
            e.give_inbox(inbox);
            if !done && t0.elapsed() > REPLY_TIMEOUT {
                return Err(format!(
                    "no pong for {} within {REPLY_TIMEOUT:?}",
                    lossy(&id)
                ));
            }
        }
        if i >= warmup as u64 {
            samples.push(t0.elapsed().as_nanos() as u64);
        }
    }
    Ok(LatencyResult::new(samples))
}

// ----- throughput -----------------------------------------------------------------------------

/// Figures of one throughput run.
#[derive(Clone, Debug)]
pub struct ThroughputResult {
    /// Connections.
    pub conns: usize,
    /// Pings in flight per connection.
    pub pipeline: usize,
    /// Length of the measured window, s.
    pub seconds: f64,
    /// Pongs received in the window.
    pub pongs: u64,
    /// Server CPU used in the window, s.
    pub server_cpu_s: Option<f64>,
    /// This client thread's CPU in the window, s.
    pub client_cpu_s: Option<f64>,
    /// Error replies seen.
    pub errors: u64,
}

impl ThroughputResult {
    /// Pongs per second.
    pub fn rate(&self) -> f64 {
        self.pongs as f64 / self.seconds
    }

    /// Server CPU µs per ping → pong.
    pub fn cpu_us_per_msg(&self) -> Option<f64> {
        Some(self.server_cpu_s? * 1e6 / self.pongs.max(1) as f64)
    }

    /// Server CPU as a % of one core.
    pub fn server_cpu_pct(&self) -> Option<f64> {
        Some(self.server_cpu_s? * 100.0 / self.seconds)
    }

    /// The figures as JSON.
    pub fn to_json(&self) -> Value {
        json!({
            "conns": self.conns,
            "pipeline": self.pipeline,
            "seconds": round3(self.seconds),
            "pongs": self.pongs,
            "pongs_per_s": round3(self.rate()),
            "server_cpu_us_per_msg": opt(self.cpu_us_per_msg()),
            "server_cpu_pct": opt(self.server_cpu_pct()),
            "client_cpu_pct": opt(self.client_cpu_s.map(|c| c * 100.0 / self.seconds)),
            "errors": self.errors,
        })
    }

    /// One human-readable line.
    pub fn line(&self) -> String {
        format!(
            "{} conns × {} in flight: {:.0} pongs/s; server CPU {} µs/msg ({}% of a core); client {}% of a core; {} errors",
            self.conns,
            self.pipeline,
            self.rate(),
            fmt_opt(self.cpu_us_per_msg(), 2),
            fmt_opt(self.server_cpu_pct(), 0),
            fmt_opt(self.client_cpu_s.map(|c| c * 100.0 / self.seconds), 0),
            self.errors
        )
    }
}

/// `conns` connections, each keeping `pipeline` pings in flight; measured for `duration`
/// after `warmup`.
pub fn run_throughput(
    target: &Target,
    conns: usize,
    pipeline: usize,
    warmup: Duration,
    duration: Duration,
    server: Probe,
) -> Result<ThroughputResult, String> {
    let me = Probe::this_thread();
    let mut e = Engine::new(target)?;
    let ids = e.open_ready(conns, 64)?;
    let mut seq = 0u64;
    let mut msg = Vec::with_capacity(64);
    let mut send_ping = |e: &mut Engine, c: usize, seq: &mut u64| {
        msg.clear();
        msg.extend_from_slice(b"{\"type\":\"ping\",\"id\":\"t");
        push_u64(&mut msg, *seq);
        msg.extend_from_slice(b"\"}");
        *seq += 1;
        e.send_text(c, &msg);
    };
    for &c in &ids {
        for _ in 0..pipeline.max(1) {
            send_ping(&mut e, c, &mut seq);
        }
    }
    let start = Instant::now();
    let measure_at = start + warmup;
    let end = measure_at + duration;
    let mut pongs = 0u64;
    let mut errors = 0u64;
    let mut first: Option<(Instant, u64, Option<f64>, Option<f64>)> = None;
    let mut last_progress = Instant::now();
    loop {
        e.poll_once(Some(Duration::from_millis(20)))?;
        e.check_lost()?;
        let inbox = e.take_inbox();
        let before = pongs;
        for (c, m) in inbox.iter() {
            match json_str(m, b"type") {
                Some(b"pong") => {
                    pongs += 1;
                    send_ping(&mut e, c, &mut seq);
                }
                Some(b"error") => errors += 1,
                _ => {}
            }
        }
        e.give_inbox(inbox);
        let now = Instant::now();
        if pongs > before {
            last_progress = now;
        } else if now - last_progress > REPLY_TIMEOUT {
            return Err(format!("no pong for {REPLY_TIMEOUT:?}"));
        }
        if first.is_none() && now >= measure_at {
            first = Some((now, pongs, server.cpu_seconds(), me.cpu_seconds()));
        }
        if now >= end {
            let (t0, p0, s0, c0) = first.unwrap_or((start, 0, None, None));
            return Ok(ThroughputResult {
                conns,
                pipeline,
                seconds: (now - t0).as_secs_f64(),
                pongs: pongs - p0,
                server_cpu_s: delta(s0, server.cpu_seconds()),
                client_cpu_s: delta(c0, me.cpu_seconds()),
                errors,
            });
        }
    }
}

// ----- fan-out --------------------------------------------------------------------------------

/// Figures of one fan-out run.
#[derive(Clone, Debug)]
pub struct FanoutResult {
    /// Receiving members (the sender not included).
    pub members: usize,
    /// Broadcast payload size, bytes.
    pub size: usize,
    /// Messages allowed ahead of the slowest member.
    pub pipeline: usize,
    /// Time to open the connections and join them to the session, s.
    pub setup_s: f64,
    /// Length of the measured window, s.
    pub seconds: f64,
    /// Broadcasts sent in the window.
    pub messages: u64,
    /// Deliveries (message × member) in the window.
    pub deliveries: u64,
    /// Server CPU in the window, s.
    pub server_cpu_s: Option<f64>,
    /// This client thread's CPU in the window, s.
    pub client_cpu_s: Option<f64>,
    /// Broadcasts sent in all.
    pub sent_total: u64,
    /// Deliveries expected and not received by the end (must be 0).
    pub lost: u64,
    /// Deliveries out of order or duplicated (must be 0).
    pub disorder: u64,
    /// Deliveries whose `source` was not the sender (must be 0).
    pub bad_source: u64,
    /// Error replies seen.
    pub errors: u64,
}

impl FanoutResult {
    /// Deliveries per second.
    pub fn rate(&self) -> f64 {
        self.deliveries as f64 / self.seconds
    }

    /// Server CPU µs per delivery.
    pub fn cpu_us_per_delivery(&self) -> Option<f64> {
        Some(self.server_cpu_s? * 1e6 / self.deliveries.max(1) as f64)
    }

    /// Server CPU as a % of one core.
    pub fn server_cpu_pct(&self) -> Option<f64> {
        Some(self.server_cpu_s? * 100.0 / self.seconds)
    }

    /// Whether every member received every message, in order, from the sender.
    pub fn ok(&self) -> bool {
        self.lost == 0 && self.disorder == 0 && self.bad_source == 0 && self.errors == 0
    }

    /// The figures as JSON.
    pub fn to_json(&self) -> Value {
        json!({
            "members": self.members,
            "size": self.size,
            "pipeline": self.pipeline,
            "setup_s": round3(self.setup_s),
            "seconds": round3(self.seconds),
            "messages": self.messages,
            "deliveries": self.deliveries,
            "deliveries_per_s": round3(self.rate()),
            "server_cpu_us_per_delivery": opt(self.cpu_us_per_delivery()),
            "server_cpu_pct": opt(self.server_cpu_pct()),
            "client_cpu_pct": opt(self.client_cpu_s.map(|c| c * 100.0 / self.seconds)),
            "sent_total": self.sent_total,
            "lost": self.lost,
            "disorder": self.disorder,
            "bad_source": self.bad_source,
            "errors": self.errors,
        })
    }

    /// One human-readable line.
    pub fn line(&self) -> String {
        format!(
            "1 sender → {} members, {} B, ≤{} ahead: {:.0} msgs/s, {:.0} deliveries/s; server CPU {} µs/delivery ({}% of a core); client {}% of a core; sent {}, lost {}, disorder {}, bad source {}, errors {} (setup {:.1} s)",
            self.members,
            self.size,
            self.pipeline,
            self.messages as f64 / self.seconds,
            self.rate(),
            fmt_opt(self.cpu_us_per_delivery(), 3),
            fmt_opt(self.server_cpu_pct(), 0),
            fmt_opt(self.client_cpu_s.map(|c| c * 100.0 / self.seconds), 0),
            self.sent_total,
            self.lost,
            self.disorder,
            self.bad_source,
            self.errors,
            self.setup_s
        )
    }
}

/// (when, sent, delivered, server CPU s, client CPU s) at one edge of the measured window.
type Snapshot = (Instant, u64, u64, Option<f64>, Option<f64>);

/// How many members have received exactly `base + i` messages, to find the slowest in O(1).
struct SlowestTracker {
    base: u64,
    counts: std::collections::VecDeque<usize>,
}

impl SlowestTracker {
    fn new(members: usize) -> Self {
        let mut counts = std::collections::VecDeque::new();
        counts.push_back(members);
        SlowestTracker { base: 0, counts }
    }

    /// A member went from `from` received messages to `from + 1`.
    fn advance(&mut self, from: u64) {
        let i = (from - self.base) as usize;
        self.counts[i] -= 1;
        if self.counts.len() <= i + 1 {
            self.counts.push_back(0);
        }
        self.counts[i + 1] += 1;
        while self.counts.front() == Some(&0) {
            self.counts.pop_front();
            self.base += 1;
        }
    }

    /// Messages received by the slowest member.
    fn min(&self) -> u64 {
        self.base
    }
}

/// `members` members and one sender join one session; the sender floods `broadcast` messages
/// of about `size` payload bytes, at most `pipeline` ahead of the slowest member (refilling the
/// window in bursts once half of it is free), measured for `duration` after `warmup`; then
/// every member must have received every message in order.
pub fn run_fanout(
    target: &Target,
    members: usize,
    size: usize,
    pipeline: usize,
    warmup: Duration,
    duration: Duration,
    server: Probe,
) -> Result<FanoutResult, String> {
    let me = Probe::this_thread();
    let setup_start = Instant::now();
    let mut e = Engine::new(target)?;
    let ids = e.open_ready(members + 1, 64)?;
    let sender = ids[0];
    let first_member = ids[1];
    let session = format!(
        "fanout-{}-{}",
        std::process::id(),
        next_random(&mut seed()) % 1_000_000_000
    );
    // The sender creates the session; the members join, at most 64 joins in flight.
    let create = format!(
        "{{\"type\":\"session_create\",\"id\":\"create\",\"payload\":{{\"sessionId\":\"{session}\"}}}}"
    );
    let join = format!(
        "{{\"type\":\"session_join\",\"id\":\"join\",\"sessionId\":\"{session}\",\"payload\":{{\"sessionId\":\"{session}\"}}}}"
    );
    e.send_text(sender, create.as_bytes());
    let mut joined = 0usize; // the sender counts once its create is answered
    let mut next_join = 0usize;
    let mut created = false;
    let deadline = Instant::now() + SETUP_TIMEOUT;
    while joined < members + 1 {
        // Once created, `joined - 1` members are in and `next_join` have asked.
        while created && next_join < members && next_join - (joined - 1) < 64 {
            e.send_text(ids[1 + next_join], join.as_bytes());
            next_join += 1;
        }
        e.poll_once(Some(Duration::from_millis(50)))?;
        e.check_lost()?;
        let inbox = e.take_inbox();
        for (_, m) in inbox.iter() {
            match (json_str(m, b"type"), json_str(m, b"replyTo")) {
                (Some(b"session_info"), Some(b"create")) => {
                    created = true;
                    joined += 1;
                }
                (Some(b"session_info"), Some(b"join")) => joined += 1,
                (Some(b"error"), _) => {
                    return Err(format!(
                        "joining the session failed ({joined} in so far; is max_clients_per_session ≥ {}?): {}",
                        members + 1,
                        lossy(m)
                    ));
                }
                _ => {}
            }
        }
        e.give_inbox(inbox);
        if Instant::now() > deadline {
            return Err(format!("timed out joining: {joined} of {} in", members + 1));
        }
    }
    let setup_s = setup_start.elapsed().as_secs_f64();
    let sender_id = e.conns[sender].client_id.clone().into_bytes();

    // The message: {"type":"broadcast","id":"b","sessionId":S,"payload":{"seq":N,"pad":"xx"}}
    let pad = "x".repeat(size.saturating_sub(26));
    let prefix = format!(
        "{{\"type\":\"broadcast\",\"id\":\"b\",\"sessionId\":\"{session}\",\"payload\":{{\"seq\":"
    );
    let suffix = format!(",\"pad\":\"{pad}\"}}}}");
    let mut msg = Vec::with_capacity(prefix.len() + suffix.len() + 20);

    let mut expected = vec![0u64; members];
    let mut tracker = SlowestTracker::new(members);
    let mut sent = 0u64;
    let mut delivered = 0u64;
    let mut disorder = 0u64;
    let mut bad_source = 0u64;
    let mut errors = 0u64;
    let start = Instant::now();
    let measure_at = start + warmup;
    let end = measure_at + duration;
    let mut first: Option<Snapshot> = None;
    let mut last: Option<Snapshot> = None;
    let mut last_progress = Instant::now();
    loop {
        let now = Instant::now();
        let flooding = now < end;
        // Refill the window in bursts, once half of it is free: the gateway then reads many
        // messages per turn and writes each member a batch of them per syscall.
        let window = pipeline.max(1) as u64;
        if flooding {
            if sent <= tracker.min() + window / 2 {
                while sent < tracker.min() + window {
                    msg.clear();
                    msg.extend_from_slice(prefix.as_bytes());
                    push_u64(&mut msg, sent);
                    msg.extend_from_slice(suffix.as_bytes());
                    e.send_text(sender, &msg);
                    sent += 1;
                }
            }
        } else if last.is_none() {
            last = Some((now, sent, delivered, server.cpu_seconds(), me.cpu_seconds()));
        }
        if !flooding && tracker.min() >= sent {
            break;
        }
        e.poll_once(Some(Duration::from_millis(20)))?;
        e.check_lost()?;
        let inbox = e.take_inbox();
        let before = delivered;
        for (c, m) in inbox.iter() {
            let kind = json_str(m, b"type");
            if kind == Some(b"error") {
                errors += 1;
                continue;
            }
            if c == sender || kind != Some(b"broadcast") {
                continue; // presence and the like
            }
            let member = c - first_member;
            let Some(seq) = json_field(m, b"payload").and_then(|p| json_u64(p, b"seq")) else {
                disorder += 1;
                continue;
            };
            if json_str(m, b"source") != Some(&sender_id[..]) {
                bad_source += 1;
            }
            if seq != expected[member] {
                disorder += 1;
                if seq < expected[member] {
                    continue; // a duplicate: not a new delivery
                }
            }
            while expected[member] <= seq {
                tracker.advance(expected[member]);
                expected[member] += 1;
            }
            delivered += 1;
        }
        e.give_inbox(inbox);
        let now = Instant::now();
        if delivered > before {
            last_progress = now;
        } else if now - last_progress > REPLY_TIMEOUT {
            break; // nothing arrives any more: count what is missing as lost
        }
        if first.is_none() && now >= measure_at {
            first = Some((now, sent, delivered, server.cpu_seconds(), me.cpu_seconds()));
        }
    }
    let (t0, s0, d0, sc0, cc0) = first.unwrap_or((start, 0, 0, None, None));
    let (t1, s1, d1, sc1, cc1) = last.unwrap_or((Instant::now(), sent, delivered, None, None));
    let received: u64 = expected.iter().sum();
    Ok(FanoutResult {
        members,
        size,
        pipeline,
        setup_s,
        seconds: (t1 - t0).as_secs_f64(),
        messages: s1 - s0,
        deliveries: d1 - d0,
        server_cpu_s: delta(sc0, sc1),
        client_cpu_s: delta(cc0, cc1),
        sent_total: sent,
        lost: (sent * members as u64).saturating_sub(received),
        disorder,
        bad_source,
        errors,
    })
}

// ----- idle connections -----------------------------------------------------------------------

/// Figures of one idle run.
#[derive(Clone, Debug)]
pub struct IdleResult {
    /// Connections opened and authenticated.
    pub conns: usize,
    /// Time to open and authenticate them all, s.
    pub setup_s: f64,
    /// Server CPU during the setup, s.
    pub setup_server_cpu_s: Option<f64>,
    /// This client thread's CPU during the setup, s.
    pub setup_client_cpu_s: Option<f64>,
    /// Server RSS before opening, KiB.
    pub rss_before_kib: Option<u64>,
    /// Server RSS once all are authenticated, KiB.
    pub rss_after_kib: Option<u64>,
    /// Server RSS at the end of the idle hold, KiB.
    pub rss_end_kib: Option<u64>,
    /// Length of the idle hold, s.
    pub hold_s: f64,
    /// Server CPU during the hold, s.
    pub idle_cpu_s: Option<f64>,
    /// Server Ping frames answered during the hold.
    pub pings: u64,
    /// Connections lost during the hold (must be 0).
    pub lost: usize,
}

impl IdleResult {
    /// Connections set up per second.
    pub fn setup_rate(&self) -> f64 {
        self.conns as f64 / self.setup_s
    }

    /// RSS growth per connection, bytes, once authenticated.
    pub fn rss_per_conn(&self) -> Option<f64> {
        Some(
            (self.rss_after_kib? as f64 - self.rss_before_kib? as f64) * 1024.0 / self.conns as f64,
        )
    }

    /// RSS growth per connection, bytes, at the end of the hold.
    pub fn rss_per_conn_end(&self) -> Option<f64> {
        Some((self.rss_end_kib? as f64 - self.rss_before_kib? as f64) * 1024.0 / self.conns as f64)
    }

    /// Server CPU during the hold, % of one core.
    pub fn idle_cpu_pct(&self) -> Option<f64> {
        Some(self.idle_cpu_s? * 100.0 / self.hold_s)
    }

    /// The figures as JSON.
    pub fn to_json(&self) -> Value {
        json!({
            "conns": self.conns,
            "setup_s": round3(self.setup_s),
            "setup_conns_per_s": round3(self.setup_rate()),
            "setup_server_cpu_us_per_conn": opt(self.setup_server_cpu_s.map(|c| c * 1e6 / self.conns as f64)),
            "setup_client_cpu_us_per_conn": opt(self.setup_client_cpu_s.map(|c| c * 1e6 / self.conns as f64)),
            "rss_before_kib": self.rss_before_kib,
            "rss_after_kib": self.rss_after_kib,
            "rss_end_kib": self.rss_end_kib,
            "rss_per_conn_bytes": opt(self.rss_per_conn()),
            "rss_per_conn_end_bytes": opt(self.rss_per_conn_end()),
            "hold_s": round3(self.hold_s),
            "idle_cpu_pct": opt(self.idle_cpu_pct()),
            "pings_answered": self.pings,
            "lost": self.lost,
        })
    }

    /// Human-readable lines.
    pub fn line(&self) -> String {
        format!(
            "{} conns opened+authenticated in {:.2} s ({:.0} conns/s; CPU per conn: server {} µs, client {} µs); server RSS {} → {} KiB ({} B/conn), {} KiB after the hold ({} B/conn); idle {:.0} s: server CPU {}% of a core, {} pings answered, {} lost",
            self.conns,
            self.setup_s,
            self.setup_rate(),
            fmt_opt(self.setup_server_cpu_s.map(|c| c * 1e6 / self.conns as f64), 0),
            fmt_opt(self.setup_client_cpu_s.map(|c| c * 1e6 / self.conns as f64), 0),
            self.rss_before_kib.map_or("n/a".into(), |v| v.to_string()),
            self.rss_after_kib.map_or("n/a".into(), |v| v.to_string()),
            fmt_opt(self.rss_per_conn(), 0),
            self.rss_end_kib.map_or("n/a".into(), |v| v.to_string()),
            fmt_opt(self.rss_per_conn_end(), 0),
            self.hold_s,
            fmt_opt(self.idle_cpu_pct(), 3),
            self.pings,
            self.lost
        )
    }
}

/// Open `conns` connections (at most `concurrency` opening at once), authenticate each, then
/// hold them idle for `hold`, answering the server's Pings.
pub fn run_idle(
    target: &Target,
    conns: usize,
    concurrency: usize,
    hold: Duration,
    server: Probe,
) -> Result<IdleResult, String> {
    let me = Probe::this_thread();
    let mut e = Engine::new(target)?;
    let rss_before_kib = server.rss_kib();
    let (scpu0, ccpu0) = (server.cpu_seconds(), me.cpu_seconds());
    let t0 = Instant::now();
    e.open_ready(conns, concurrency)?;
    let setup_s = t0.elapsed().as_secs_f64();
    let setup_server_cpu_s = delta(scpu0, server.cpu_seconds());
    let setup_client_cpu_s = delta(ccpu0, me.cpu_seconds());
    let rss_after_kib = server.rss_kib();
    let pings0 = e.pings_answered;
    let cpu0 = server.cpu_seconds();
    let h0 = Instant::now();
    let end = h0 + hold;
    loop {
        let now = Instant::now();
        if now >= end {
            break;
        }
        e.poll_once(Some(end - now))?;
        e.inbox.clear();
    }
    let cpu1 = server.cpu_seconds();
    let hold_s = h0.elapsed().as_secs_f64();
    Ok(IdleResult {
        conns,
        setup_s,
        setup_server_cpu_s,
        setup_client_cpu_s,
        rss_before_kib,
        rss_after_kib,
        rss_end_kib: server.rss_kib(),
        hold_s,
        idle_cpu_s: delta(cpu0, cpu1),
        pings: e.pings_answered - pings0,
        lost: e.n_lost,
    })
}

// Run with `cargo test --example loadgen`.
#[cfg(test)]
mod tests {
    #[allow(unused_imports)] // a bench target sees cfg(test) without the test harness
    use super::*;

    #[test]
    fn scanner_reads_top_level_fields() {
        let m = br#"{"type":"pong","id":"g-1","payload":{"clientId":"c","type":"x"},"timestamp":17,"replyTo":"p1"}"#;
        assert_eq!(json_str(m, b"type"), Some(&b"pong"[..]));
        assert_eq!(json_str(m, b"replyTo"), Some(&b"p1"[..]));
        assert_eq!(json_u64(m, b"timestamp"), Some(17));
        let p = json_field(m, b"payload").unwrap();
        assert_eq!(json_str(p, b"clientId"), Some(&b"c"[..]));
        let spaced = br#"{ "type" : "a\"b", "n": [1, {"x": "}"}], "k": 5 }"#;
        assert_eq!(json_u64(spaced, b"k"), Some(5));
        assert_eq!(json_str(spaced, b"type"), Some(&br#"a\"b"#[..]));
    }

    #[test]
    fn base64_of_16_bytes() {
        assert_eq!(base64(b"0123456789abcdef"), "MDEyMzQ1Njc4OWFiY2RlZg==");
    }

    #[test]
    fn tracker_follows_the_slowest() {
        let mut t = SlowestTracker::new(2);
        t.advance(0);
        assert_eq!(t.min(), 0);
        t.advance(0);
        assert_eq!(t.min(), 1);
        t.advance(1);
        t.advance(2);
        assert_eq!(t.min(), 1);
    }
}

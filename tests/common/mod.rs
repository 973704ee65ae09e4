//! Test support: a gateway on 127.0.0.1 port 0 in a thread of its own, and clients built on
//! plain std sockets (with read timeouts) and tungstenite's client side; a `redis-server` of
//! a test's own in `redis.rs`.
#![allow(dead_code)]

pub mod binary;
pub mod cluster;
pub mod redis;

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::sync::atomic::{AtomicU64, Ordering};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use gateway::AuthToken;
use gateway::{Config, Gateway, GatewayHandle};
use serde_json::{json, Value};
use tungstenite::protocol::frame::CloseFrame;
use tungstenite::{Message, WebSocket};

/// How long a test waits for something that should happen.
pub const WAIT: Duration = Duration::from_secs(5);
/// The token every test gateway accepts (user `alice`).
pub const TOKEN: &str = "secret-alice";
/// A second token (user `bob`).
pub const TOKEN_BOB: &str = "secret-bob";

/// A third token (user `carol`).
pub const TOKEN_CAROL: &str = "secret-carol";
/// The token of user `ops`, which [`admin_config`] makes an admin.
pub const TOKEN_OPS: &str = "secret-ops";

/// `config` with one more token, `secret` for `user`.
pub fn with_token(mut config: Config, user: &str, secret: &str) -> Config {
    config.auth_tokens.push(AuthToken {
        user: user.into(),
        secret: secret.into(),
    });
    config
}

/// [`test_config`] with `ops` ([`TOKEN_OPS`]) in `admin_users`.
pub fn admin_config() -> Config {
    let mut config = with_token(test_config(), "ops", TOKEN_OPS);
    config.admin_users = vec!["ops".into()];
    config
}

/// A config for tests: port 0, two tokens, everything else default.
pub fn test_config() -> Config {
    Config {
        port: 0,
        auth_tokens: vec![
            AuthToken {
                user: "alice".into(),
                secret: TOKEN.into(),
            },
            AuthToken {
                user: "bob".into(),
                secret: TOKEN_BOB.into(),
            },
        ],
        ..Config::default()
    }
}

/// A gateway running `run()` in its own thread; shut down and joined on drop.
pub struct TestGateway {
    pub addr: SocketAddr,
    pub path: String,
    pub handle: GatewayHandle,
    thread: Option<JoinHandle<Result<(), gateway::Error>>>,
}

impl TestGateway {
    pub fn start(config: Config) -> TestGateway {
        let path = config.path.clone();
        let gw = Gateway::bind(config).expect("bind");
        Self::run(gw, path)
    }

    pub fn run(mut gw: Gateway, path: String) -> TestGateway {
        let addr = gw.local_addr();
        let handle = gw.handle();
        let thread = std::thread::spawn(move || gw.run());
        TestGateway {
            addr,
            path,
            handle,
            thread: Some(thread),
        }
    }

    pub fn url(&self) -> String {
        format!("ws://{}{}", self.addr, self.path)
    }

    /// Shut down and wait for `run` to return; returns how long that took.
    pub fn stop(&mut self) -> Duration {
        let started = Instant::now();
        let _ = self.handle.shutdown();
        if let Some(thread) = self.thread.take() {
            thread.join().expect("gateway thread").expect("run");
        }
        started.elapsed()
    }

    /// GET a plain HTTP path; returns (status, body).
    pub fn http_get(&self, path: &str) -> (u16, String) {
        let response = raw_http(
            self.addr,
            format!("GET {path} HTTP/1.1\r\nHost: localhost\r\n\r\n").as_bytes(),
        );
        split_response(&response)
    }

    /// The value of one metric line (`name` with labels, exactly as printed).
    pub fn metric(&self, series: &str) -> Option<f64> {
        let (_, body) = self.http_get("/metrics");
        body.lines().find_map(|line| {
            line.strip_prefix(series)?
                .strip_prefix(' ')?
                .trim()
                .parse()
                .ok()
        })
    }

    /// `/health` as JSON.
    pub fn health(&self) -> Value {
        let (status, body) = self.http_get("/health");
        assert_eq!(status, 200, "{body}");
        serde_json::from_str(&body).expect("health JSON")
    }
}

impl Drop for TestGateway {
    fn drop(&mut self) {
        if self.thread.is_some() {
            let _ = self.handle.shutdown();
            if let Some(thread) = self.thread.take() {
                let _ = thread.join();
            }
        }
    }
}

/// Send raw bytes, read until the server closes; returns what arrived.
pub fn raw_http(addr: SocketAddr, request: &[u8]) -> String {
    let mut stream = TcpStream::connect(addr).expect("connect");
    stream.set_read_timeout(Some(WAIT)).unwrap();
    stream.write_all(request).expect("write request");
    let mut response = Vec::new();
    let _ = stream.read_to_end(&mut response);
    String::from_utf8_lossy(&response).into_owned()
}

/// (status, body) of an HTTP response.
pub fn split_response(response: &str) -> (u16, String) {
    let status = response
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    let body = response
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_string())
        .unwrap_or_default();
    (status, body)
}

static NEXT_ID: AtomicU64 = AtomicU64::new(1);

/// A fresh request id.
pub fn next_id() -> String {
    format!("t-{}", NEXT_ID.fetch_add(1, Ordering::Relaxed))
}

/// A WebSocket client with read timeouts.
pub struct Client {
    pub ws: WebSocket<TcpStream>,
    pub client_id: String,
    pub welcome: Value,
}

impl Client {
    /// Connect and read the welcome `session_info`.
    pub fn connect(gw: &TestGateway) -> Client {
        Self::connect_url(&gw.url())
    }

    pub fn connect_url(url: &str) -> Client {
        let ws = open_ws(url, None).expect("upgrade");
        let mut client = Client {
            ws,
            client_id: String::new(),
            welcome: Value::Null,
        };
        let welcome = client.recv();
        assert_eq!(welcome["type"], "session_info", "{welcome}");
        assert_eq!(welcome["payload"]["status"], "connected", "{welcome}");
        client.client_id = welcome["payload"]["clientId"]
            .as_str()
            .expect("clientId")
            .to_string();
        client.welcome = welcome;
        client
    }

    /// Connect and authenticate with `token`.
    pub fn authed(gw: &TestGateway, token: &str) -> Client {
        let mut client = Self::connect(gw);
        let reply = client.request("auth", json!({ "token": token }));
        assert_eq!(reply["type"], "auth_success", "{reply}");
        client
    }

    pub fn send_text(&mut self, text: &str) {
        self.ws.send(Message::text(text.to_string())).expect("send");
    }

    pub fn send(&mut self, value: &Value) {
        self.send_text(&value.to_string());
    }

    /// Send `{type, id, payload}` and return the id.
    pub fn send_msg(&mut self, msg_type: &str, payload: Value) -> String {
        let id = next_id();
        self.send(&json!({ "type": msg_type, "id": id, "payload": payload }));
        id
    }

    /// Send a request and return the reply (the next message with `replyTo` = its id;
    /// anything else arriving first is a test failure).
    pub fn request(&mut self, msg_type: &str, payload: Value) -> Value {
        let id = self.send_msg(msg_type, payload);
        let reply = self.recv();
        assert_eq!(
            reply["replyTo"],
            id.as_str(),
            "reply to {msg_type}: {reply}"
        );
        reply
    }

    /// Send a full envelope and return the reply.
    pub fn request_envelope(&mut self, mut envelope: Value) -> Value {
        let id = next_id();
        envelope["id"] = json!(id);
        self.send(&envelope);
        let reply = self.recv();
        assert_eq!(reply["replyTo"], id.as_str(), "reply: {reply}");
        reply
    }

    /// The next text message as JSON (protocol pings are answered by tungstenite).
    pub fn recv(&mut self) -> Value {
        serde_json::from_str(&self.recv_text()).expect("JSON from gateway")
    }

    /// The next text message as the gateway wrote it.
    /// The next message this client gets, which must be at most `max` bytes as written.
    pub fn recv_within(&mut self, max: usize) -> Value {
        let text = self.recv_text();
        let head = &text[..text.len().min(200)];
        assert!(text.len() <= max, "{} bytes: {head}", text.len());
        serde_json::from_str(&text).expect("JSON")
    }

    /// Send a request and read its reply, which must be at most `max` bytes.
    pub fn request_within(&mut self, msg_type: &str, payload: Value, max: usize) -> Value {
        let id = self.send_msg(msg_type, payload);
        let reply = self.recv_within(max);
        assert_eq!(reply["replyTo"], id.as_str(), "{reply}");
        reply
    }

    pub fn recv_text(&mut self) -> String {
        let deadline = Instant::now() + WAIT;
        loop {
            assert!(Instant::now() < deadline, "no message within {WAIT:?}");
            match self.ws.read() {
                Ok(Message::Text(text)) => return text.as_str().to_owned(),
                Ok(Message::Binary(_)) => panic!("unexpected binary message"),
                Ok(Message::Close(frame)) => panic!("connection closed: {frame:?}"),
                Ok(_) => continue,
                // A signal (a stop and continue of the process, say) interrupted the read.
                Err(tungstenite::Error::Io(e)) if e.kind() == std::io::ErrorKind::Interrupted => {
                    continue
                }
                Err(tungstenite::Error::Io(e))
                    if matches!(
                        e.kind(),
                        std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                    ) =>
                {
                    panic!("no message within {WAIT:?}")
                }
                Err(e) => panic!("read failed: {e}"),
            }
        }
    }

    /// Assert that nothing arrives for `quiet`.
    pub fn expect_silence(&mut self, quiet: Duration) {
        self.ws.get_mut().set_read_timeout(Some(quiet)).unwrap();
        let result = self.ws.read();
        self.ws.get_mut().set_read_timeout(Some(WAIT)).unwrap();
        match result {
            Err(tungstenite::Error::Io(e))
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                ) => {}
            Ok(Message::Ping(_)) | Ok(Message::Pong(_)) => {}
            other => panic!("expected silence, got {other:?}"),
        }
    }

    /// Read until the gateway's close frame arrives; returns it.
    pub fn expect_close(&mut self) -> Option<CloseFrame> {
        expect_close(&mut self.ws)
    }
}

/// Read from `ws` until a close frame; returns it (None when the socket ended without one).
pub fn expect_close(ws: &mut WebSocket<TcpStream>) -> Option<CloseFrame> {
    let deadline = Instant::now() + WAIT;
    while Instant::now() < deadline {
        match ws.read() {
            Ok(Message::Close(frame)) => return frame,
            Ok(_) => continue,
            Err(tungstenite::Error::ConnectionClosed) | Err(tungstenite::Error::AlreadyClosed) => {
                return None
            }
            Err(tungstenite::Error::Io(e))
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                ) =>
            {
                panic!("no close within {WAIT:?}")
            }
            Err(_) => return None,
        }
    }
    panic!("no close within {WAIT:?}")
}

/// Open a WebSocket to `url`, optionally with an `Origin` header.
pub fn open_ws(
    url: &str,
    origin: Option<&str>,
) -> Result<WebSocket<TcpStream>, tungstenite::Error> {
    use tungstenite::client::IntoClientRequest;
    let mut request = url.into_client_request()?;
    if let Some(origin) = origin {
        request
            .headers_mut()
            .insert("Origin", origin.parse().expect("origin header"));
    }
    let host = url
        .trim_start_matches("ws://")
        .split('/')
        .next()
        .unwrap_or_default()
        .to_string();
    let stream = TcpStream::connect(host).map_err(tungstenite::Error::Io)?;
    stream.set_read_timeout(Some(WAIT)).unwrap();
    stream.set_nodelay(true).unwrap();
    let (ws, _) = tungstenite::client::client(request, stream).map_err(|e| match e {
        tungstenite::HandshakeError::Failure(e) => e,
        tungstenite::HandshakeError::Interrupted(_) => {
            tungstenite::Error::Io(std::io::ErrorKind::WouldBlock.into())
        }
    })?;
    Ok(ws)
}

/// Poll `check` until it returns true or `WAIT` passes.
pub fn eventually(mut check: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + WAIT;
    while Instant::now() < deadline {
        if check() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    false
}

/// A hand-driven WebSocket client: raw frames over a std socket, for tests that need to send
/// what a well-behaved library would not.
pub struct RawWs {
    pub stream: TcpStream,
    buf: Vec<u8>,
}

/// The upgrade request a browser-less client sends.
pub fn upgrade_request(path: &str, extra_headers: &str) -> String {
    format!(
        "GET {path} HTTP/1.1\r\nHost: localhost\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
         Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n{extra_headers}\r\n"
    )
}

/// One client frame, masked unless `masked` is false.
pub fn frame(opcode: u8, fin: bool, payload: &[u8], masked: bool) -> Vec<u8> {
    let mut out = vec![(if fin { 0x80 } else { 0 }) | opcode];
    let mask_bit = if masked { 0x80 } else { 0 };
    match payload.len() {
        n if n < 126 => out.push(mask_bit | n as u8),
        n if n <= 0xffff => {
            out.push(mask_bit | 126);
            out.extend_from_slice(&(n as u16).to_be_bytes());
        }
        n => {
            out.push(mask_bit | 127);
            out.extend_from_slice(&(n as u64).to_be_bytes());
        }
    }
    if masked {
        let key = [0x37, 0xfa, 0x21, 0x3d];
        out.extend_from_slice(&key);
        out.extend(payload.iter().enumerate().map(|(i, b)| b ^ key[i % 4]));
    } else {
        out.extend_from_slice(payload);
    }
    out
}

/// A server frame as read: (fin, opcode, payload).
pub type ServerFrame = (bool, u8, Vec<u8>);

impl RawWs {
    /// Connect and send `request` raw; does not read anything.
    pub fn connect_raw(addr: SocketAddr, request: &[u8]) -> RawWs {
        let stream = TcpStream::connect(addr).expect("connect");
        stream.set_read_timeout(Some(WAIT)).unwrap();
        stream.set_nodelay(true).unwrap();
        let mut raw = RawWs {
            stream,
            buf: Vec::new(),
        };
        raw.stream.write_all(request).expect("write");
        raw
    }

    /// Connect, upgrade, and read the 101 head and the welcome message.
    pub fn open(gw: &TestGateway) -> RawWs {
        Self::open_with(gw, &[])
    }

    /// Connect and send the upgrade with `after` pipelined behind it; read the 101 head.
    pub fn open_with(gw: &TestGateway, after: &[u8]) -> RawWs {
        Self::open_at(gw.addr, &gw.path, after)
    }

    /// [`RawWs::open_with`] by address and path, for threads that hold no `TestGateway`.
    pub fn open_at(addr: SocketAddr, path: &str, after: &[u8]) -> RawWs {
        let mut request = upgrade_request(path, "").into_bytes();
        request.extend_from_slice(after);
        let mut raw = Self::connect_raw(addr, &request);
        let head = raw.read_head();
        assert!(head.starts_with("HTTP/1.1 101"), "{head}");
        let (_, opcode, payload) = raw.read_frame().expect("welcome");
        assert_eq!(opcode, 1);
        let welcome: Value = serde_json::from_slice(&payload).unwrap();
        assert_eq!(welcome["type"], "session_info");
        raw
    }

    fn fill(&mut self) -> bool {
        let mut chunk = [0u8; 8192];
        match self.stream.read(&mut chunk) {
            Ok(0) => false,
            Ok(n) => {
                self.buf.extend_from_slice(&chunk[..n]);
                true
            }
            Err(_) => false,
        }
    }

    /// Read the HTTP response head.
    pub fn read_head(&mut self) -> String {
        loop {
            if let Some(pos) = self.buf.windows(4).position(|w| w == b"\r\n\r\n") {
                let head: Vec<u8> = self.buf.drain(..pos + 4).collect();
                return String::from_utf8_lossy(&head).into_owned();
            }
            if !self.fill() {
                return String::from_utf8_lossy(&self.buf).into_owned();
            }
        }
    }

    /// Read one frame; None when the socket ended or timed out first.
    pub fn read_frame(&mut self) -> Option<ServerFrame> {
        loop {
            if self.buf.len() >= 2 {
                let fin = self.buf[0] & 0x80 != 0;
                let opcode = self.buf[0] & 0x0f;
                let masked = self.buf[1] & 0x80 != 0;
                assert!(!masked, "server frames are never masked");
                let (len, header) = match self.buf[1] & 0x7f {
                    126 if self.buf.len() >= 4 => {
                        (u16::from_be_bytes([self.buf[2], self.buf[3]]) as usize, 4)
                    }
                    127 if self.buf.len() >= 10 => {
                        let mut b = [0u8; 8];
                        b.copy_from_slice(&self.buf[2..10]);
                        (u64::from_be_bytes(b) as usize, 10)
                    }
                    n if n < 126 => (n as usize, 2),
                    _ => (usize::MAX, 0),
                };
                if len != usize::MAX && self.buf.len() >= header + len {
                    let payload = self.buf[header..header + len].to_vec();
                    self.buf.drain(..header + len);
                    return Some((fin, opcode, payload));
                }
            }
            if !self.fill() {
                return None;
            }
        }
    }

    /// Read frames until a text message; returns it as JSON (pings are skipped, not answered).
    pub fn read_json(&mut self) -> Option<Value> {
        loop {
            let (_, opcode, payload) = self.read_frame()?;
            match opcode {
                1 => return serde_json::from_slice(&payload).ok(),
                9 | 10 => continue,
                _ => return None,
            }
        }
    }

    /// Read frames until a close frame; returns (code, reason), or None when the socket
    /// ended without one.
    pub fn read_close(&mut self) -> Option<(u16, String)> {
        loop {
            let (_, opcode, payload) = self.read_frame()?;
            if opcode == 8 {
                let code = if payload.len() >= 2 {
                    u16::from_be_bytes([payload[0], payload[1]])
                } else {
                    1005
                };
                let reason = String::from_utf8_lossy(payload.get(2..).unwrap_or_default());
                return Some((code, reason.into_owned()));
            }
        }
    }

    pub fn send(&mut self, bytes: &[u8]) {
        self.stream.write_all(bytes).expect("write");
    }

    /// Whether the server closed the TCP connection (end of stream) within `WAIT`.
    pub fn sees_eof(&mut self) -> bool {
        let deadline = Instant::now() + WAIT;
        let mut chunk = [0u8; 4096];
        while Instant::now() < deadline {
            match self.stream.read(&mut chunk) {
                Ok(0) => return true,
                Ok(_) => continue,
                Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => return true,
                Err(_) => return false,
            }
        }
        false
    }
}

/// A test config with `auth_mode = none`.
pub fn no_auth_config() -> Config {
    Config {
        auth_mode: gateway::AuthMode::None,
        ..test_config()
    }
}

/// A test config with `auth_mode = password` and this password.
pub fn password_config(password: &str) -> Config {
    Config {
        auth_mode: gateway::AuthMode::Password,
        auth_password: Some(password.to_string()),
        ..test_config()
    }
}

/// Assert that `msg` is an `error` with `code`; returns the message.
pub fn assert_error<'m>(msg: &'m Value, code: &str) -> &'m Value {
    assert_eq!(msg["type"], "error", "expected {code}: {msg}");
    assert_eq!(msg["payload"]["code"], code, "{msg}");
    assert!(msg["payload"]["message"].is_string(), "{msg}");
    msg
}

/// Milliseconds since the Unix epoch, by the test's clock.
pub fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

/// `n` clients authenticated as alice, all members of `session_id` (created by the first);
/// the `presence` `joined` messages of the joins have been read.
pub fn session_group(gw: &TestGateway, session_id: &str, n: usize) -> Vec<Client> {
    let mut group: Vec<Client> = Vec::with_capacity(n);
    for i in 0..n {
        let mut client = Client::authed(gw, TOKEN);
        let reply = client.request("session_create", json!({ "sessionId": session_id }));
        let status = if i == 0 { "created" } else { "joined" };
        assert_eq!(reply["payload"]["status"], status, "{reply}");
        for member in group.iter_mut() {
            let joined = member.recv_type("presence");
            assert_eq!(joined["payload"]["status"], "joined", "{joined}");
            assert_eq!(joined["payload"]["clientId"], client.client_id.as_str());
        }
        group.push(client);
    }
    group
}

impl Client {
    /// Send `{type, id, sessionId, payload}`; returns the id.
    pub fn send_scoped(&mut self, msg_type: &str, session_id: &str, payload: Value) -> String {
        let id = next_id();
        self.send(&json!({
            "type": msg_type,
            "id": id,
            "sessionId": session_id,
            "payload": payload,
        }));
        id
    }

    /// Send a request that must be refused with `code`; returns the `error` (its `replyTo`
    /// checked).
    pub fn request_error(&mut self, msg_type: &str, payload: Value, code: &str) -> Value {
        let reply = self.request(msg_type, payload);
        assert_error(&reply, code);
        reply
    }

    /// The next message, which must be of `msg_type`.
    pub fn recv_type(&mut self, msg_type: &str) -> Value {
        let msg = self.recv();
        assert_eq!(msg["type"], msg_type, "{msg}");
        msg
    }

    /// Queue every message of `batch` and flush them together, so that they reach the
    /// gateway in as few reads as possible.
    pub fn send_batch(&mut self, batch: &[Value]) {
        for msg in batch {
            self.ws
                .write(Message::text(msg.to_string()))
                .expect("write");
        }
        self.ws.flush().expect("flush");
    }

    /// Close the WebSocket from this side and read until the gateway's close frame.
    pub fn close_cleanly(mut self) {
        self.ws.close(None).expect("close");
        let _ = expect_close(&mut self.ws);
    }
}

impl RawWs {
    /// Send one masked text frame holding `value`.
    pub fn send_json(&mut self, value: &Value) {
        self.send(&frame(1, true, value.to_string().as_bytes(), true));
    }
}

/// The lines `child` writes to its piped stderr, read by a thread of their own until it
/// closes them.
pub fn stderr_lines(child: &mut std::process::Child) -> std::sync::mpsc::Receiver<String> {
    use std::io::BufRead;
    let stderr = child.stderr.take().expect("stderr piped");
    let (tx, lines) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in std::io::BufReader::new(stderr).lines() {
            let Ok(line) = line else { break };
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    lines
}

/// Create session `room` with metadata of `max / 2` bytes from `owner`, then join it with new
/// clients from `connect` (given how many members there are) until a join's `joined` reply
/// would be larger than `max`: that join is `LIMIT_EXCEEDED`. Every reply and notice read on
/// the way is at most `max` bytes. The members, the owner first, and the refused client.
pub fn join_until_too_large(
    mut owner: Client,
    max: usize,
    mut connect: impl FnMut(usize) -> Client,
) -> (Vec<Client>, Client) {
    let meta = json!({"k": "x".repeat(max / 2)});
    let created = owner.request_within(
        "session_create",
        json!({"sessionId": "room", "metadata": meta}),
        max,
    );
    assert_eq!(created["payload"]["status"], "created", "{created}");
    let mut members = vec![owner];
    let refused = loop {
        assert!(members.len() < 100, "every join fitted");
        let mut c = connect(members.len());
        let reply = c.request_within("session_join", json!({"sessionId": "room"}), max);
        if reply["type"] == "error" {
            assert_error(&reply, "LIMIT_EXCEEDED");
            break c;
        }
        assert_eq!(reply["payload"]["status"], "joined", "{reply}");
        for m in members.iter_mut() {
            let joined = m.recv_within(max);
            assert_eq!(joined["payload"]["status"], "joined", "{joined}");
        }
        members.push(c);
    };
    assert!(members.len() > 2, "{} members", members.len());
    (members, refused)
}

/// Resident memory of a process (`"self"`, or a pid), in KiB, from `/proc/PROCESS/status`.
pub fn rss_kib(process: impl std::fmt::Display) -> u64 {
    std::fs::read_to_string(format!("/proc/{process}/status"))
        .expect("/proc/PROCESS/status")
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .expect("VmRSS")
}

/// In session `room` as [`join_until_too_large`] made it (metadata `{"k": "x" * (max / 2)}`):
/// a `session_patch` from `sender` whose `patched` reply would be larger than `max` is
/// `LIMIT_EXCEEDED` and changes nothing; one that fits is merged, and every member of `rest`
/// gets the merged metadata, in messages of at most `max` bytes.
pub fn patch_until_too_large(sender: &mut Client, rest: &mut [Client], max: usize) {
    let patch = json!({"sessionKey": "room", "patch": {"more": "z".repeat(max / 2)}});
    let reply = sender.request_within("session_patch", patch, max);
    assert_error(&reply, "LIMIT_EXCEEDED");
    let patch = json!({"sessionKey": "room", "patch": {"more": "z"}});
    let reply = sender.request_within("session_patch", patch, max);
    assert_eq!(reply["payload"]["status"], "patched", "{reply}");
    let merged = json!({"k": "x".repeat(max / 2), "more": "z"});
    assert_eq!(reply["payload"]["metadata"], merged, "{reply}");
    for m in rest.iter_mut() {
        let patched = m.recv_within(max);
        assert_eq!(patched["payload"]["metadata"], merged, "{patched}");
    }
}

/// A transport `Reactor` running `run()` in a thread of its own; shut down and joined on
/// drop.
pub struct ReactorThread {
    handle: gateway::transport::ReactorHandle<()>,
    thread: Option<JoinHandle<std::io::Result<()>>>,
}

impl ReactorThread {
    pub fn start<A>(mut reactor: gateway::transport::Reactor<A>) -> ReactorThread
    where
        A: gateway::transport::App<Command = (), Event: Send> + Send + 'static,
    {
        let handle = reactor.handle();
        let thread = Some(std::thread::spawn(move || reactor.run()));
        ReactorThread { handle, thread }
    }
}

impl Drop for ReactorThread {
    fn drop(&mut self) {
        let _ = self.handle.shutdown();
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

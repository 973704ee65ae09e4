//! A blocking client of the wire protocol for the attacks: tungstenite for the upgrade and for
//! reading (no size limits, so a reply of any size is read whole), and pre-built client frames
//! written raw, so that a timed send costs one `write` and no masking or copying (the masking
//! key is zero, which RFC 6455 allows; the server unmasks as for any other key).

use std::io::{ErrorKind, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

use tungstenite::protocol::WebSocketConfig;
use tungstenite::{Message, WebSocket};

/// A masked client text frame holding one JSON message whose `id` is `ID_WIDTH` digits, so
/// that each repetition can get its own id in place ([`Frame::set_seq`]).
pub struct Frame {
    bytes: Vec<u8>,
    id_at: usize,
    message_len: usize,
}

/// Digits of the ids of [`Frame`]s.
const ID_WIDTH: usize = 8;

impl Frame {
    /// A frame for `json`, which must contain `"id":"@"` once: the `@` is replaced by the
    /// sequence number.
    pub fn new(json: &str) -> Frame {
        let marker = "\"id\":\"@\"";
        let at = json.find(marker).expect("the message has \"id\":\"@\"");
        let text = format!(
            "{}\"id\":\"{}\"{}",
            &json[..at],
            "0".repeat(ID_WIDTH),
            &json[at + marker.len()..]
        );
        let payload = text.as_bytes();
        let mut bytes = Vec::with_capacity(payload.len() + 14);
        bytes.push(0x81); // FIN + text
        match payload.len() {
            n if n < 126 => bytes.push(0x80 | n as u8),
            n if n <= 0xffff => {
                bytes.push(0x80 | 126);
                bytes.extend_from_slice(&(n as u16).to_be_bytes());
            }
            n => {
                bytes.push(0x80 | 127);
                bytes.extend_from_slice(&(n as u64).to_be_bytes());
            }
        }
        bytes.extend_from_slice(&[0; 4]); // masking key: zero
        let id_at = bytes.len() + at + "\"id\":\"".len();
        bytes.extend_from_slice(payload);
        Frame {
            bytes,
            id_at,
            message_len: payload.len(),
        }
    }

    /// Give the message the id `seq` (decimal, zero-padded); returns the id.
    pub fn set_seq(&mut self, seq: u64) -> String {
        let id = format!(
            "{:0width$}",
            seq % 10u64.pow(ID_WIDTH as u32),
            width = ID_WIDTH
        );
        self.bytes[self.id_at..self.id_at + ID_WIDTH].copy_from_slice(id.as_bytes());
        id
    }

    /// The frame as written.
    pub fn bytes(&self) -> &[u8] {
        &self.bytes
    }

    /// The message's size in bytes (the frame's payload).
    pub fn message_len(&self) -> usize {
        self.message_len
    }
}

/// What came back for a request.
#[derive(Clone, Debug)]
pub enum Outcome {
    /// The reply (its `type`, and the error `code` when it is an `error`), read at `at`.
    Reply {
        at: Instant,
        kind: String,
        code: Option<String>,
    },
    /// The server closed the connection first (close code and reason, when given).
    Closed(String),
    /// Nothing by the deadline.
    Timeout,
    /// The socket failed.
    Failed(String),
}

/// One connection, upgraded and welcomed.
pub struct Client {
    ws: WebSocket<TcpStream>,
    /// The `clientId` from the welcome.
    pub client_id: String,
    /// Error codes of errors that were not the awaited reply (e.g. a refused relay).
    pub stray_errors: Vec<String>,
    seq: u64,
}

fn config() -> WebSocketConfig {
    WebSocketConfig::default()
        .read_buffer_size(16 * 1024)
        .max_message_size(None)
        .max_frame_size(None)
}

/// A top-level string field of a reply, read with the gateway's own scanner.
fn field(text: &str, key: &str) -> Option<String> {
    loadgen::json_str(text.as_bytes(), key.as_bytes())
        .map(|v| String::from_utf8_lossy(v).into_owned())
}

impl Client {
    /// Connect to `url` (`ws://127.0.0.1:PORT/ws`), upgrade and read the welcome.
    pub fn open(url: &str) -> Result<Client, String> {
        let addr = url
            .strip_prefix("ws://")
            .and_then(|r| r.split('/').next())
            .ok_or_else(|| format!("bad url {url}"))?;
        let stream = TcpStream::connect(addr).map_err(|e| format!("connect {addr}: {e}"))?;
        let _ = stream.set_nodelay(true);
        let (ws, _) = tungstenite::client::client_with_config(url, stream, Some(config()))
            .map_err(|e| format!("upgrade: {e}"))?;
        let mut client = Client {
            ws,
            client_id: String::new(),
            stray_errors: Vec::new(),
            seq: 0,
        };
        let deadline = Instant::now() + Duration::from_secs(10);
        let welcome = client.next_text(deadline)?;
        client.client_id = loadgen::json_field(welcome.as_bytes(), b"payload")
            .and_then(|p| loadgen::json_str(p, b"clientId"))
            .map(|v| String::from_utf8_lossy(v).into_owned())
            .ok_or_else(|| format!("no clientId in the welcome: {welcome}"))?;
        Ok(client)
    }

    /// [`Client::open`], then `auth` with `token`; `auth_success` is required.
    pub fn authed(url: &str, token: &str) -> Result<Client, String> {
        let mut client = Client::open(url)?;
        let auth = format!(r#"{{"type":"auth","id":"@","payload":{{"token":"{token}"}}}}"#);
        client.expect(&auth, "auth_success")?;
        Ok(client)
    }

    /// Send `json` (with `"id":"@"`) and require a reply of type `kind`.
    pub fn expect(&mut self, json: &str, kind: &str) -> Result<(), String> {
        let mut frame = Frame::new(json);
        match self.request(&mut frame, Instant::now() + Duration::from_secs(30)) {
            Outcome::Reply { kind: k, .. } if k == kind => Ok(()),
            other => Err(format!("expected {kind}, got {other:?}")),
        }
    }

    fn next_seq(&mut self) -> u64 {
        self.seq += 1;
        self.seq
    }

    /// Write a frame as it is.
    pub fn write_raw(&mut self, bytes: &[u8]) -> Result<(), String> {
        let stream = self.ws.get_mut();
        stream.write_all(bytes).map_err(|e| format!("write: {e}"))
    }

    /// Send `frame` (with a fresh id) and wait until its reply, the close, or `deadline`.
    pub fn request(&mut self, frame: &mut Frame, deadline: Instant) -> Outcome {
        let seq = self.next_seq();
        let id = frame.set_seq(seq);
        if let Err(e) = self.write_raw(frame.bytes()) {
            return Outcome::Failed(e);
        }
        self.await_reply(&id, deadline)
    }

    /// Send `frame` and then a `ping` in the same write, and wait for the `pong`: the cost of
    /// a message that has no reply.
    pub fn send_then_ping(&mut self, frame: &mut Frame, deadline: Instant) -> Outcome {
        let seq = self.next_seq();
        frame.set_seq(seq);
        let mut ping = Frame::new(r#"{"type":"ping","id":"@"}"#);
        let ping_id = ping.set_seq(self.next_seq());
        let mut both = Vec::with_capacity(frame.bytes.len() + ping.bytes.len());
        both.extend_from_slice(&frame.bytes);
        both.extend_from_slice(&ping.bytes);
        if let Err(e) = self.write_raw(&both) {
            return Outcome::Failed(e);
        }
        self.await_reply(&ping_id, deadline)
    }

    /// A `ping` → `pong` round trip.
    pub fn ping(&mut self, deadline: Instant) -> Result<Duration, Outcome> {
        let mut frame = Frame::new(r#"{"type":"ping","id":"@"}"#);
        let t0 = Instant::now();
        match self.request(&mut frame, deadline) {
            Outcome::Reply { at, .. } => Ok(at - t0),
            other => Err(other),
        }
    }

    /// The next text message, by `deadline`.
    fn next_text(&mut self, deadline: Instant) -> Result<String, String> {
        loop {
            match self.read(deadline) {
                Ok(Some(text)) => return Ok(text),
                Ok(None) => continue,
                Err(outcome) => return Err(format!("{outcome:?}")),
            }
        }
    }

    /// One message: `Some(text)`, `None` for a control or binary message, or the outcome
    /// that ends the wait.
    fn read(&mut self, deadline: Instant) -> Result<Option<String>, Outcome> {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Err(Outcome::Timeout);
        }
        let _ = self.ws.get_mut().set_read_timeout(Some(left));
        match self.ws.read() {
            Ok(Message::Text(text)) => Ok(Some(text.as_str().to_owned())),
            Ok(Message::Close(frame)) => Err(Outcome::Closed(match frame {
                Some(f) => format!("close {} {}", u16::from(f.code), f.reason),
                None => "close".into(),
            })),
            Ok(_) => Ok(None),
            Err(tungstenite::Error::Io(e))
                if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) =>
            {
                Err(Outcome::Timeout)
            }
            Err(tungstenite::Error::ConnectionClosed | tungstenite::Error::AlreadyClosed) => {
                Err(Outcome::Closed("closed".into()))
            }
            Err(e) => Err(Outcome::Closed(format!("socket: {e}"))),
        }
    }

    /// Wait for the reply to `id`; other messages are skipped (their error codes kept in
    /// `stray_errors`).
    pub fn await_reply(&mut self, id: &str, deadline: Instant) -> Outcome {
        loop {
            let text = match self.read(deadline) {
                Ok(Some(text)) => text,
                Ok(None) => continue,
                Err(outcome) => return outcome,
            };
            let at = Instant::now();
            let kind = field(&text, "type").unwrap_or_default();
            let code = (kind == "error")
                .then(|| {
                    loadgen::json_field(text.as_bytes(), b"payload")
                        .and_then(|p| loadgen::json_str(p, b"code"))
                        .map(|v| String::from_utf8_lossy(v).into_owned())
                })
                .flatten();
            if field(&text, "replyTo").as_deref() == Some(id) {
                return Outcome::Reply { at, kind, code };
            }
            if let Some(code) = code {
                self.stray_errors.push(code);
            }
        }
    }

    /// Give up the WebSocket and keep the socket (to hold the connection open without
    /// reading, or to drain it raw).
    pub fn into_stream(self) -> TcpStream {
        self.ws.into_inner()
    }
}

//! The codec against a real `redis-server` (started on a free port, no persistence), over a
//! plain blocking socket: commands, binary values, a pipeline, errors, a script, pub/sub, and
//! the reply limit. Skipped, with a note, when `redis-server` is not installed.

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use super::super::resp_encode::{encode, Int, Pipeline};
use super::super::resp_push::{push, Push};
use super::*;

/// A `redis-server` of this test's own, killed when dropped.
pub(super) struct Server {
    child: Child,
    port: u16,
}

impl Server {
    /// Starts one, or `None` when `redis-server` cannot be run.
    pub(super) fn start() -> Option<Server> {
        if Command::new("redis-server")
            .arg("--version")
            .stdout(Stdio::null())
            .status()
            .is_err()
        {
            eprintln!("note: redis-server is not installed; the real-server test is skipped");
            return None;
        }
        // A port that was free a moment ago; another process taking it in between shows
        // up as a server that exits, and another port is tried.
        for _ in 0..5 {
            let port = TcpListener::bind("127.0.0.1:0")
                .and_then(|listener| listener.local_addr())
                .expect("a free port")
                .port();
            let mut child = Command::new("redis-server")
                .args(["--port", &port.to_string(), "--bind", "127.0.0.1"])
                .args(["--save", "", "--appendonly", "no"])
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .expect("redis-server starts");
            let deadline = Instant::now() + Duration::from_secs(10);
            while Instant::now() < deadline {
                if let Ok(Some(_)) = child.try_wait() {
                    break;
                }
                if TcpStream::connect(("127.0.0.1", port)).is_ok() {
                    return Some(Server { child, port });
                }
                std::thread::sleep(Duration::from_millis(10));
            }
            let _ = child.kill();
            let _ = child.wait();
        }
        panic!("redis-server did not start");
    }

    pub(super) fn connect(&self, limits: RespLimits) -> Conn {
        let stream = TcpStream::connect(("127.0.0.1", self.port)).expect("connect");
        stream
            .set_read_timeout(Some(Duration::from_secs(10)))
            .expect("a read timeout");
        Conn {
            stream,
            decoder: Decoder::new(limits),
        }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// One connection, its replies decoded as they arrive, in whatever pieces the socket gives.
pub(super) struct Conn {
    stream: TcpStream,
    decoder: Decoder,
}

impl Conn {
    fn send(&mut self, bytes: &[u8]) {
        self.stream.write_all(bytes).expect("write");
    }

    pub(super) fn reply(&mut self) -> Result<Reply, RespError> {
        let mut buf = [0u8; 4096];
        loop {
            if let Some(reply) = self.decoder.next()? {
                return Ok(reply);
            }
            let n = self
                .stream
                .read(&mut buf)
                .expect("a reply before the timeout");
            assert!(n > 0, "redis-server closed the connection");
            self.decoder.feed(&buf[..n]);
        }
    }

    pub(super) fn call(&mut self, args: &[&[u8]]) -> Reply {
        let mut out = Vec::new();
        encode(&mut out, args);
        self.send(&out);
        self.reply().expect("a valid reply")
    }
}

fn simple(text: &str) -> Reply {
    Reply::Simple(text.as_bytes().to_vec())
}

#[test]
fn a_real_redis_server() {
    let Some(server) = Server::start() else {
        return;
    };
    let limits = RespLimits::new(4 << 20);
    let mut conn = server.connect(limits);

    assert_eq!(conn.call(&[b"PING"]), simple("PONG"));
    assert_eq!(conn.call(&[b"ECHO", b"a\r\nb"]), Reply::bulk(b"a\r\nb"));

    // Binary values, CR LF and NUL inside, and one large enough to arrive in many reads.
    let value = b"\r\n$3\r\nfoo\r\n\x00\xff*1\r\n".to_vec();
    assert_eq!(conn.call(&[b"SET", b"k:bin", &value]), simple("OK"));
    assert_eq!(conn.call(&[b"GET", b"k:bin"]).as_bytes(), Some(&value[..]));
    assert_eq!(conn.call(&[b"GET", b"k:missing"]), Reply::Bulk(None));
    let big: Vec<u8> = (0..3_000_000u32).map(|i| (i % 251) as u8).collect();
    assert_eq!(conn.call(&[b"SET", b"k:big", &big]), simple("OK"));
    assert_eq!(conn.call(&[b"GET", b"k:big"]).as_bytes(), Some(&big[..]));

    // A pipeline of 1000 INCRs in one write, answered in order.
    let mut pipeline = Pipeline::new();
    for _ in 0..1000 {
        pipeline.command(&[b"INCR", b"k:n"]);
    }
    let (bytes, commands) = pipeline.take();
    conn.send(&bytes);
    for n in 1..=commands {
        assert_eq!(conn.reply(), Ok(Reply::Integer(n as i64)));
    }
    assert_eq!(
        conn.call(&[b"INCRBY", b"k:n", &Int::new(-1001)]),
        Reply::Integer(-1)
    );

    // Errors are replies: the connection goes on.
    let Reply::Error(text) = conn.call(&[b"NOSUCHCOMMAND", b"x"]) else {
        panic!("an error reply");
    };
    assert!(text.starts_with(b"ERR unknown command"), "{text:?}");
    let Reply::Error(text) = conn.call(&[b"INCR", b"k:bin"]) else {
        panic!("an error reply");
    };
    assert!(text.starts_with(b"ERR value is not an integer"), "{text:?}");
    assert_eq!(conn.call(&[b"PING"]), simple("PONG"));

    // A script: a nested table, a null, an error of its own.
    let script = b"return {1, 'two', {3, redis.call('GET', KEYS[1])}, redis.call('GET', KEYS[2])}";
    assert_eq!(
        conn.call(&[b"EVAL", script, b"2", b"k:n", b"k:missing"]),
        Reply::Array(Some(vec![
            Reply::Integer(1),
            Reply::bulk(b"two"),
            Reply::Array(Some(vec![Reply::Integer(3), Reply::bulk(b"-1")])),
            // A missing key is Lua's `false`, which comes back as the null bulk.
            Reply::Bulk(None),
        ]))
    );
    assert_eq!(
        conn.call(&[b"EVAL", b"return redis.error_reply('NOPE no')", b"0"]),
        Reply::Error(b"NOPE no".to_vec())
    );

    // Pub/sub: confirmations and messages arrive as pushes on the subscribed connection.
    let mut subscriber = server.connect(limits);
    let mut out = Vec::new();
    encode(&mut out, &[b"SUBSCRIBE", b"gw:s:{a}", b"gw:ctl"]);
    subscriber.send(&out);
    let confirmation = subscriber.reply().expect("a confirmation");
    assert_eq!(
        push(&confirmation),
        Some(Push::Subscribed {
            pattern: false,
            name: b"gw:s:{a}",
            count: 1
        })
    );
    let confirmation = subscriber.reply().expect("a confirmation");
    assert_eq!(
        push(&confirmation),
        Some(Push::Subscribed {
            pattern: false,
            name: b"gw:ctl",
            count: 2
        })
    );
    let payload = b"{\"type\":\"relay\"}\r\n*1\r\n";
    assert_eq!(
        conn.call(&[b"PUBLISH", b"gw:s:{a}", payload]),
        Reply::Integer(1)
    );
    let message = subscriber.reply().expect("a message");
    assert_eq!(
        push(&message),
        Some(Push::Message {
            channel: b"gw:s:{a}",
            payload
        })
    );
    let mut out = Vec::new();
    encode(&mut out, &[b"PING"]);
    subscriber.send(&out);
    let pong = subscriber.reply().expect("a pong");
    assert_eq!(push(&pong), Some(Push::Pong(b"")));

    // A reply above the limit is refused at its header, before its body is read.
    let mut small = server.connect(RespLimits::new(64 * 1024));
    let mut out = Vec::new();
    encode(&mut out, &[b"GET", b"k:big"]);
    small.send(&out);
    assert_eq!(
        small.reply(),
        Err(RespError::BulkTooLong {
            len: 3_000_000,
            max: 64 * 1024
        })
    );
}

//! A `redis-server` of a test's own, on a free port, without persistence; killed when
//! dropped. Tests that need one call [`RedisServer::start`]: when `redis-server` is not
//! installed it returns `None` and the test says it is skipped, unless
//! `GATEWAY_REQUIRE_REDIS` is set (CI sets it), where a missing server fails the test.

#![allow(dead_code)]

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

pub struct RedisServer {
    child: Option<Child>,
    pub port: u16,
    /// Where it listens.
    pub addr: SocketAddr,
}

impl RedisServer {
    /// A running server, or `None` (with a note) when `redis-server` is not installed.
    pub fn start() -> Option<RedisServer> {
        let installed = Command::new("redis-server")
            .arg("--version")
            .stdout(Stdio::null())
            .status()
            .is_ok();
        if !installed {
            assert!(
                std::env::var_os("GATEWAY_REQUIRE_REDIS").is_none(),
                "redis-server is not installed (apt-get install redis-server)"
            );
            eprintln!("note: redis-server is not installed; this test is skipped");
            return None;
        }
        for _ in 0..5 {
            let port = TcpListener::bind("127.0.0.1:0")
                .and_then(|l| l.local_addr())
                .expect("a free port")
                .port();
            let addr = SocketAddr::from(([127, 0, 0, 1], port));
            let mut server = RedisServer {
                child: None,
                port,
                addr,
            };
            if server.spawn() {
                return Some(server);
            }
        }
        panic!("redis-server did not start");
    }

    /// Start the process on `self.port`; false when it exited (the port was taken).
    fn spawn(&mut self) -> bool {
        let mut child = Command::new("redis-server")
            .args(["--port", &self.port.to_string(), "--bind", "127.0.0.1"])
            .args(["--save", "", "--appendonly", "no"])
            .args(["--enable-debug-command", "local"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("redis-server starts");
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = child.try_wait() {
                return false;
            }
            // Answered by this process, not by another test's server that took the port
            // first (this one then exits).
            let pid = format!("process_id:{}\r\n", child.id());
            if self
                .try_command(&["INFO", "server"])
                .is_some_and(|info| info.contains(&pid))
            {
                self.child = Some(child);
                return true;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        let _ = child.kill();
        let _ = child.wait();
        false
    }

    /// `redis://127.0.0.1:PORT`.
    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }

    /// Kill it with SIGKILL (its data is gone: it has no persistence).
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Start it again on the same port, empty.
    pub fn restart(&mut self) {
        self.kill();
        let deadline = Instant::now() + Duration::from_secs(10);
        while !self.spawn() {
            assert!(Instant::now() < deadline, "redis-server did not restart");
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Send a signal (`STOP`, `CONT`) to the process.
    pub fn signal(&self, signal: &str) {
        let pid = self.child.as_ref().expect("running").id();
        let status = Command::new("kill")
            .args([&format!("-{signal}"), &pid.to_string()])
            .status()
            .expect("kill runs");
        assert!(status.success());
    }

    /// One command's reply, as raw RESP text.
    pub fn command(&self, args: &[&str]) -> String {
        self.try_command(args).expect("redis answers")
    }

    fn try_command(&self, args: &[&str]) -> Option<String> {
        let mut stream = TcpStream::connect(("127.0.0.1", self.port)).ok()?;
        stream.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
        let mut request = format!("*{}\r\n", args.len());
        for arg in args {
            request.push_str(&format!("${}\r\n{arg}\r\n", arg.len()));
        }
        stream.write_all(request.as_bytes()).ok()?;
        let mut reply = Vec::new();
        let mut buf = [0u8; 4096];
        // A reply is complete once it ends in CRLF and nothing more comes at once.
        loop {
            let n = stream.read(&mut buf).ok()?;
            if n == 0 {
                break;
            }
            reply.extend_from_slice(&buf[..n]);
            if reply.ends_with(b"\r\n") && complete(&reply) {
                break;
            }
        }
        String::from_utf8(reply).ok()
    }
}

/// Whether `reply` holds one whole RESP2 reply (enough for the tests' commands).
fn complete(reply: &[u8]) -> bool {
    fn skip(reply: &[u8], at: usize) -> Option<usize> {
        let line_end = reply[at..].windows(2).position(|w| w == b"\r\n")? + at;
        let line = std::str::from_utf8(&reply[at + 1..line_end]).ok()?;
        match reply[at] {
            b'$' => {
                let len: i64 = line.parse().ok()?;
                if len < 0 {
                    return Some(line_end + 2);
                }
                let end = line_end + 2 + len as usize + 2;
                (end <= reply.len()).then_some(end)
            }
            b'*' => {
                let len: i64 = line.parse().ok()?;
                let mut at = line_end + 2;
                for _ in 0..len.max(0) {
                    at = skip(reply, at)?;
                }
                Some(at)
            }
            _ => Some(line_end + 2),
        }
    }
    skip(reply, 0) == Some(reply.len())
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        if let Some(child) = &self.child {
            // A stopped server does not die of SIGKILL until it is continued on some kernels.
            let _ = Command::new("kill")
                .args(["-CONT", &child.id().to_string()])
                .status();
        }
        self.kill();
    }
}

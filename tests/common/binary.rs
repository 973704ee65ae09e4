//! The `gateway` binary in a child process, for what only the binary does (its log, signals,
//! reload, its own resident memory): its stderr read line by line on a thread of its own (so
//! it never blocks on a full pipe), its URL and address taken from its `listening on` line;
//! killed when dropped.

use std::net::SocketAddr;
use std::path::Path;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use serde_json::json;

use super::{stderr_lines, Client, WAIT};

/// A running `gateway` binary.
pub struct Binary {
    pub child: Child,
    lines: mpsc::Receiver<String>,
    seen: Vec<String>,
    /// From its `listening on` line: `ws://127.0.0.1:PORT/ws` or `wss://...`.
    pub url: String,
    pub addr: SocketAddr,
}

impl Binary {
    /// Start `gateway ARGS` and wait for its `listening on` line.
    pub fn start(args: &[&str]) -> Binary {
        let mut command = Command::new(env!("CARGO_BIN_EXE_gateway"));
        command.args(args);
        Binary::spawn(command)
    }

    /// Start `gateway ARGS` in `cwd` and wait for its `listening on` line.
    pub fn start_in(cwd: &Path, args: &[&str]) -> Binary {
        let mut command = Command::new(env!("CARGO_BIN_EXE_gateway"));
        command.current_dir(cwd).args(args);
        Binary::spawn(command)
    }

    /// Run `command` (the binary, or a wrapper such as `prlimit` around it) with its stderr
    /// piped, and wait for its `listening on` line.
    pub fn spawn(mut command: Command) -> Binary {
        let mut child = command
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn gateway");
        let lines = stderr_lines(&mut child);
        let mut binary = Binary {
            child,
            lines,
            seen: Vec::new(),
            url: String::new(),
            addr: SocketAddr::from(([127, 0, 0, 1], 0)),
        };
        let line = binary.line_with("listening on ");
        let (_, url) = line.split_once("listening on ").expect("the url");
        binary.url = url.trim().to_string();
        let (_, rest) = binary.url.split_once("://").expect("a scheme");
        let host = rest.split('/').next().expect("host:port");
        binary.addr = host.parse().expect("host:port");
        binary
    }

    /// Start `gateway ARGS` from `sh` after `prefix` (such as `ulimit -n 48`) and wait for
    /// its `listening on` line.
    pub fn start_after(prefix: &str, args: &[&str]) -> Binary {
        Binary::spawn(shell_command(prefix, args))
    }

    /// The process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Send `signal` (`HUP`, `STOP`, ...) with `kill`.
    pub fn signal(&self, signal: &str) {
        let status = Command::new("kill")
            .args([&format!("-{signal}"), &self.child.id().to_string()])
            .status()
            .expect("kill runs");
        assert!(status.success(), "kill -{signal}");
    }

    /// The next line of stderr that contains `text` (failing after `WAIT`).
    pub fn line_with(&mut self, text: &str) -> String {
        self.line_with_any(&[text])
    }

    /// The next line of stderr that contains one of `texts` (failing after `WAIT`).
    pub fn line_with_any(&mut self, texts: &[&str]) -> String {
        let deadline = Instant::now() + WAIT;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.lines.recv_timeout(left) {
                Ok(line) => {
                    self.seen.push(line.clone());
                    if texts.iter().any(|text| line.contains(text)) {
                        return line;
                    }
                }
                Err(_) => panic!("no line with {texts:?}; stderr:\n{}", self.log()),
            }
        }
    }

    /// A client connected to it and authenticated with `token`.
    pub fn client(&self, token: &str) -> Client {
        let mut client = Client::connect_url(&self.url);
        let reply = client.request("auth", json!({ "token": token }));
        assert_eq!(reply["type"], "auth_success", "{reply}");
        client
    }

    /// Wait up to `within` for the process to exit (killing it when it does not), then for
    /// the rest of its stderr; its exit status, `None` when it had to be killed.
    pub fn wait_exit(&mut self, within: Duration) -> Option<ExitStatus> {
        let deadline = Instant::now() + within;
        let status = loop {
            if let Some(status) = self.child.try_wait().expect("try_wait") {
                break Some(status);
            }
            if Instant::now() >= deadline {
                let _ = self.child.kill();
                let _ = self.child.wait();
                break None;
            }
            std::thread::sleep(Duration::from_millis(5));
        };
        // The reader ends at the end of the pipe, once the process is gone.
        while let Ok(line) = self.lines.recv_timeout(WAIT) {
            self.seen.push(line);
        }
        status
    }

    /// Every line of stderr so far.
    pub fn log(&mut self) -> String {
        while let Ok(line) = self.lines.try_recv() {
            self.seen.push(line);
        }
        self.seen.join("\n")
    }
}

impl Drop for Binary {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// `sh -c 'PREFIX; exec gateway ARGS'`: the binary with limits (`ulimit`) set before it runs.
pub fn shell_command(prefix: &str, args: &[&str]) -> Command {
    let bin = env!("CARGO_BIN_EXE_gateway");
    let quoted: Vec<String> = args.iter().map(|a| format!("'{a}'")).collect();
    let mut command = Command::new("sh");
    command
        .arg("-c")
        .arg(format!("{prefix}; exec '{bin}' {}", quoted.join(" ")));
    command
}

//! The `gateway` binary: PROTOCOL section 9 (configuration file, command line, exit
//! statuses, the `listening on` line) and the signal-driven shutdown of section 3.

mod common;

use std::io::Read;
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use common::binary::Binary;
use common::*;
use serde_json::json;

/// The shipped development token of `gateway.conf` (user `dev`).
const DEV_TOKEN: &str = "dev-token-change-me";

fn repo_root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

fn gateway(cwd: &Path, args: &[&str]) -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_gateway"));
    command.current_dir(cwd).args(args).stdin(Stdio::null());
    command
}

/// A directory of its own under the system temp dir, removed on drop.
struct TempDir(PathBuf);

impl TempDir {
    fn new() -> TempDir {
        static COUNTER: AtomicU64 = AtomicU64::new(0);
        let nanos = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.subsec_nanos());
        let path = std::env::temp_dir().join(format!(
            "gateway-binary-test-{}-{}-{nanos}",
            std::process::id(),
            COUNTER.fetch_add(1, Ordering::Relaxed)
        ));
        std::fs::create_dir_all(&path).expect("temp dir");
        TempDir(path)
    }

    /// Write `name` with `text`; returns its path as a string.
    fn file(&self, name: &str, text: &str) -> String {
        let path = self.0.join(name);
        std::fs::write(&path, text).expect("write config");
        path.to_string_lossy().into_owned()
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// What a finished run printed.
struct Finished {
    status: ExitStatus,
    stdout: String,
    stderr: String,
}

/// Run to completion (killed and failed if it takes longer than `WAIT`).
fn finish(mut command: Command) -> Finished {
    let mut child = command
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn gateway");
    let stdout = child.stdout.take().expect("stdout");
    let stderr = child.stderr.take().expect("stderr");
    let read_all = |mut pipe: Box<dyn Read + Send>| {
        std::thread::spawn(move || {
            let mut text = String::new();
            let _ = pipe.read_to_string(&mut text);
            text
        })
    };
    let stdout = read_all(Box::new(stdout));
    let stderr = read_all(Box::new(stderr));
    let status = wait_for_exit(&mut child, WAIT);
    Finished {
        status,
        stdout: stdout.join().expect("stdout reader"),
        stderr: stderr.join().expect("stderr reader"),
    }
}

/// Wait for `child` to exit within `limit`; kill it and fail otherwise.
fn wait_for_exit(child: &mut Child, limit: Duration) -> ExitStatus {
    let deadline = Instant::now() + limit;
    loop {
        if let Some(status) = child.try_wait().expect("try_wait") {
            return status;
        }
        if Instant::now() >= deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!("the gateway did not exit within {limit:?}");
        }
        std::thread::sleep(Duration::from_millis(5));
    }
}

fn run_ok(cwd: &Path, args: &[&str]) -> Finished {
    let done = finish(gateway(cwd, args));
    assert_eq!(
        done.status.code(),
        Some(0),
        "{args:?}: {}{}",
        done.stdout,
        done.stderr
    );
    done
}

fn run_err(cwd: &Path, args: &[&str]) -> Finished {
    let done = finish(gateway(cwd, args));
    assert_eq!(
        done.status.code(),
        Some(2),
        "{args:?}: {}{}",
        done.stdout,
        done.stderr
    );
    assert!(!done.stderr.is_empty(), "{args:?}: an error is printed");
    done
}

#[test]
fn version_and_help_exit_zero() {
    let dir = TempDir::new();
    for flag in ["--version", "-V"] {
        let done = run_ok(&dir.0, &[flag]);
        assert_eq!(
            done.stdout.trim(),
            format!("gateway {}", env!("CARGO_PKG_VERSION"))
        );
    }
    for args in [
        &["--help"][..],
        &["-h"],
        &["--set", "port=abc", "--help"],
        &["--version", "--help"],
    ] {
        let done = run_ok(&dir.0, args);
        assert!(done.stdout.contains("Usage: gateway"), "{}", done.stdout);
        for option in [
            "--config",
            "--set",
            "--check",
            "--print-config",
            "--version",
            "--help",
        ] {
            assert!(done.stdout.contains(option), "{option} in {}", done.stdout);
        }
    }
    let done = run_err(&dir.0, &["--bogus"]);
    assert!(done.stderr.contains("--bogus"), "{}", done.stderr);
    assert!(done.stdout.is_empty());
}

#[test]
fn check_accepts_the_shipped_config() {
    let done = run_ok(repo_root(), &["--check"]);
    assert!(done.stderr.is_empty(), "{}", done.stderr);
    run_ok(repo_root(), &["--config", "gateway.conf", "--check"]);
    run_ok(
        repo_root(),
        &["--check", "--set", "port=0", "--set", "max_payload=2 MiB"],
    );
}

#[test]
fn check_prints_the_memory_bound_and_its_terms() {
    let bound_of = |args: &[&str]| -> u64 {
        let done = run_ok(repo_root(), args);
        let line = done
            .stdout
            .lines()
            .find(|l| l.starts_with("memory bound: "))
            .unwrap_or_else(|| panic!("no memory bound in {}", done.stdout));
        for term in [
            "base",
            "connections",
            "handshakes",
            "in-flight messages",
            "agents",
        ] {
            assert!(line.contains(&format!("{term} ")), "{term} in {line}");
        }
        let mib = line["memory bound: ".len()..].split(' ').next().unwrap();
        mib.parse()
            .unwrap_or_else(|_| panic!("a number of MiB in {line}"))
    };
    let default = bound_of(&["--check"]);
    let small = bound_of(&[
        "--check",
        "--set",
        "max_connections=100",
        "--set",
        "max_sessions=100",
        "--set",
        "max_agents=100",
        "--set",
        "max_inflight_bytes=16 MiB",
    ]);
    assert!(small < default, "{small} MiB is below {default} MiB");
    // 100 connections may each hold twice max_outbound_buffer (4 MiB) and one message (1 MiB).
    assert!(small > 500, "{small} MiB");
}

#[test]
fn check_names_file_line_and_key_of_a_bad_config() {
    let dir = TempDir::new();
    let cases = [
        (
            "bad-value.conf",
            "# a comment\n\nmax_agents = lots\n",
            3,
            "max_agents",
            "",
        ),
        (
            "unknown-key.conf",
            "port = 0\nmax_agentz = 5\n",
            2,
            "max_agentz",
            "max_agents",
        ),
        (
            "repeated.conf",
            "port = 1\n# again:\nport = 2\n",
            3,
            "port",
            "repeated",
        ),
        (
            "bad-bool.conf",
            "http_endpoints = yes\n",
            1,
            "http_endpoints",
            "",
        ),
        ("bad-port.conf", "port = 70000\n", 1, "port", ""),
    ];
    for (name, text, line, key, also) in cases {
        let path = dir.file(name, text);
        let done = run_err(&dir.0, &["--config", &path, "--check"]);
        let expected = format!("{path}:{line}: {key}");
        assert!(
            done.stderr.contains(&expected),
            "{expected:?} in {:?}",
            done.stderr
        );
        assert!(done.stderr.contains(also), "{also:?} in {:?}", done.stderr);
        // Without --check, the gateway refuses to start the same way.
        let done = run_err(&dir.0, &["--config", &path, "--set", "port=0"]);
        assert!(done.stderr.contains(&expected), "{:?}", done.stderr);
        assert!(!done.stderr.contains("listening on"), "{:?}", done.stderr);
    }

    // A bad secret is not echoed.
    let path = dir.file("secret.conf", "auth_tokens = no-colon-hunter2\n");
    let done = run_err(&dir.0, &["--config", &path, "--check"]);
    assert!(
        done.stderr.contains(&format!("{path}:1: auth_tokens")),
        "{}",
        done.stderr
    );
    assert!(!done.stderr.contains("hunter2"), "{}", done.stderr);

    // A missing file is named too.
    let missing = dir.0.join("missing.conf").to_string_lossy().into_owned();
    let done = run_err(&dir.0, &["--config", &missing, "--check"]);
    assert!(done.stderr.contains(&missing), "{}", done.stderr);
}

#[test]
fn bad_set_values_exit_2() {
    let dir = TempDir::new();
    let done = run_err(&dir.0, &["--set", "port=abc"]);
    assert!(done.stderr.contains("port"), "{}", done.stderr);
    assert!(done.stderr.contains("(from --set)"), "{}", done.stderr);
    let done = run_err(&dir.0, &["--check", "--set", "port=abc"]);
    assert!(done.stderr.contains("port"), "{}", done.stderr);
    let done = run_err(&dir.0, &["--set", "no_such_key=1", "--check"]);
    assert!(done.stderr.contains("no_such_key"), "{}", done.stderr);
    run_err(&dir.0, &["--set", "port", "--check"]);
    run_err(&dir.0, &["--set"]);
    // Cross-key rules are checked after every --set.
    let done = run_err(
        &dir.0,
        &[
            "--set",
            "max_message_size=2MiB",
            "--set",
            "max_payload=1MiB",
        ],
    );
    assert!(done.stderr.contains("max_message_size"), "{}", done.stderr);
    // A max_message_size in which a session_info could not fit names the least it may be.
    let done = run_err(&dir.0, &["--check", "--set", "max_message_size=1000"]);
    assert!(
        done.stderr
            .contains("max_message_size: must be at least 1274 with max_name_bytes = 256"),
        "{}",
        done.stderr
    );
    run_ok(
        &dir.0,
        &[
            "--check",
            "--set",
            "max_message_size=1100",
            "--set",
            "max_name_bytes=4",
        ],
    );
    // The last --set for a key wins.
    let done = run_ok(
        &dir.0,
        &["--set", "port=1", "--set", "port=4321", "--print-config"],
    );
    assert!(done.stdout.contains("port = 4321"), "{}", done.stdout);
}

#[test]
fn print_config_masks_secrets() {
    let dir = TempDir::new();
    let path = dir.file(
        "secrets.conf",
        "auth_mode = token\n\
         auth_tokens = ops:tok-0ps-s3cret, ci:tok#with-hash\n\
         auth_password = hunter2-pass\n\
         port = 4242\n",
    );
    let done = run_ok(&dir.0, &["--config", &path, "--print-config"]);
    let out = &done.stdout;
    for secret in [
        "tok-0ps-s3cret",
        "tok#with-hash",
        "with-hash",
        "hunter2-pass",
    ] {
        assert!(!out.contains(secret), "{secret} printed:\n{out}");
    }
    assert!(out.contains("auth_tokens = ops:***, ci:***"), "{out}");
    assert!(out.contains("auth_password = ***"), "{out}");
    assert!(out.contains("port = 4242"), "{out}");
    for key in gateway::Config::KEYS {
        let count = out
            .lines()
            .filter(|l| l.split('=').next().map(str::trim) == Some(key))
            .count();
        assert_eq!(count, 1, "{key} once in:\n{out}");
    }

    // A secret given with --set is masked as well; --check with --print-config prints.
    let done = run_ok(
        &dir.0,
        &[
            "--config",
            &path,
            "--set",
            "auth_tokens=ci:set-s3cret",
            "--check",
            "--print-config",
        ],
    );
    assert!(
        done.stdout.contains("auth_tokens = ci:***"),
        "{}",
        done.stdout
    );
    assert!(!done.stdout.contains("set-s3cret"), "{}", done.stdout);

    // The shipped file is read from the current directory; the dev token is masked.
    let done = run_ok(repo_root(), &["--print-config"]);
    assert!(
        done.stdout.contains("auth_tokens = dev:***"),
        "{}",
        done.stdout
    );
    assert!(!done.stdout.contains(DEV_TOKEN), "{}", done.stdout);
    // Without a gateway.conf, the defaults apply.
    let done = run_ok(&dir.0, &["--print-config"]);
    assert!(done.stdout.contains("port = 18789"), "{}", done.stdout);
    assert!(!done.stdout.contains("dev:"), "{}", done.stdout);
}

/// Connect to a running binary and authenticate with the shipped dev token.
fn dev_client(gw: &Binary) -> Client {
    let mut client = Client::connect_url(&gw.url);
    let reply = client.request("auth", json!({"token": DEV_TOKEN}));
    assert_eq!(reply["type"], "auth_success", "{reply}");
    assert_eq!(reply["payload"]["userId"], "dev");
    client
}

#[test]
fn sigterm_closes_clients_with_1001_and_exits_0() {
    let mut gw = Binary::start_in(
        repo_root(),
        &["--set", "port=0", "--set", "close_timeout_ms=1000"],
    );
    assert!(
        gw.url.starts_with("ws://127.0.0.1:") && gw.url.ends_with("/ws"),
        "{}",
        gw.url
    );
    assert_ne!(gw.addr.port(), 0, "the real port");
    assert_ne!(gw.addr.port(), 18789, "--set overrides the file");

    let mut client = dev_client(&gw);
    let pong = client.request("ping", json!({}));
    assert_eq!(pong["type"], "pong");

    let signalled = Instant::now();
    gw.signal("TERM");
    let frame = client.expect_close().expect("close frame");
    assert_eq!(u16::from(frame.code), 1001);
    assert_eq!(frame.reason.as_str(), "Server shutting down");
    let _ = client.ws.flush();
    drop(client);
    let status = gw
        .wait_exit(Duration::from_millis(2500))
        .expect("exited in time");
    assert_eq!(status.code(), Some(0), "{}", gw.log());
    assert!(
        signalled.elapsed() < Duration::from_millis(2500),
        "exited within close_timeout"
    );
}

#[test]
fn sigint_shuts_down_after_close_timeout_and_the_listening_line_survives_log_level_error() {
    let mut gw = Binary::start_in(
        repo_root(),
        &[
            "--set",
            "port=0",
            "--set",
            "close_timeout_ms=300",
            "--set",
            "log_level=error",
        ],
    );
    let mut client = dev_client(&gw);
    // A peer that never answers the close frame.
    let mut silent = RawWs::open_at(gw.addr, "/ws", &[]);

    let signalled = Instant::now();
    gw.signal("INT");
    let frame = client.expect_close().expect("close frame");
    assert_eq!(u16::from(frame.code), 1001);
    assert_eq!(frame.reason.as_str(), "Server shutting down");
    assert_eq!(
        silent.read_close(),
        Some((1001, "Server shutting down".to_string()))
    );
    let status = gw
        .wait_exit(Duration::from_millis(2000))
        .expect("exited in time");
    let took = signalled.elapsed();
    assert_eq!(status.code(), Some(0), "{}", gw.log());
    assert!(
        took >= Duration::from_millis(250),
        "waited for the close handshakes: {took:?}"
    );
    assert!(silent.sees_eof(), "the silent peer is dropped");
    let stderr = gw.log();
    assert!(!stderr.contains("INFO"), "log_level = error: {stderr}");
    assert!(stderr.contains("listening on ws://127.0.0.1:"), "{stderr}");
}

#[test]
fn without_a_config_file_the_defaults_apply_and_it_warns_that_nobody_can_authenticate() {
    let dir = TempDir::new();
    let mut gw = Binary::start_in(&dir.0, &["--set", "port=0"]);
    // The warning is logged before the listening line.
    assert!(gw.log().contains("nobody can authenticate"), "{}", gw.log());
    let mut client = Client::connect_url(&gw.url);
    let reply = client.request("auth", json!({"token": DEV_TOKEN}));
    assert_eq!(reply["payload"]["code"], "AUTH_FAILED", "{reply}");
    drop(client);
    gw.signal("TERM");
    let status = gw.wait_exit(WAIT).expect("exited in time");
    assert_eq!(status.code(), Some(0), "{}", gw.log());
}

#[test]
fn a_port_in_use_exits_1_with_a_clear_message() {
    let taken = TcpListener::bind("127.0.0.1:0").expect("bind");
    let port = taken.local_addr().unwrap().port();
    let dir = TempDir::new();
    let done = finish(gateway(&dir.0, &["--set", &format!("port={port}")]));
    assert_eq!(done.status.code(), Some(1), "{}", done.stderr);
    assert!(
        done.stderr.contains(&format!("127.0.0.1:{port}")),
        "{}",
        done.stderr
    );
    assert!(
        done.stderr.to_lowercase().contains("in use"),
        "{}",
        done.stderr
    );
    assert!(!done.stderr.contains("listening on"), "{}", done.stderr);
}

#[test]
fn check_reads_the_jwt_public_key_file() {
    let dir = TempDir::new();
    let fixture = |name: &str| {
        repo_root()
            .join("tests/fixtures/jwt")
            .join(name)
            .to_string_lossy()
            .into_owned()
    };
    for key in ["rsa.pub.pem", "ec.pub.pem", "ed.pub.pem"] {
        let set = format!("jwt_public_key={}", fixture(key));
        run_ok(
            &dir.0,
            &["--check", "--set", "auth_mode=jwt", "--set", &set],
        );
    }
    let missing = dir.0.join("gone.pem").to_string_lossy().into_owned();
    let private = fixture("ec.key.pem");
    let not_pem = dir.file("not.pem", "hello\n");
    for (path, says) in [
        (missing.as_str(), "cannot read"),
        (private.as_str(), "private key"),
        (not_pem.as_str(), "not a PEM file"),
    ] {
        let conf = dir.file(
            "jwt.conf",
            &format!("auth_mode = jwt\njwt_public_key = {path}\n"),
        );
        let done = run_err(&dir.0, &["--config", &conf, "--check"]);
        assert!(
            done.stderr.contains(&format!("{conf}:2: jwt_public_key: ")),
            "{}",
            done.stderr
        );
        assert!(done.stderr.contains(says), "{says:?} in {}", done.stderr);
    }
    // jwt mode without a key, and both keys at once.
    let done = run_err(&dir.0, &["--check", "--set", "auth_mode=jwt"]);
    assert!(
        done.stderr.contains("needs jwt_secret or jwt_public_key"),
        "{}",
        done.stderr
    );
    let secret = "jwt_secret=0123456789abcdef0123456789abcdef";
    let key = format!("jwt_public_key={}", fixture("ed.pub.pem"));
    let done = run_err(&dir.0, &["--check", "--set", secret, "--set", &key]);
    assert!(
        done.stderr.contains("cannot be set together"),
        "{}",
        done.stderr
    );
    assert!(!done.stderr.contains("0123456789abcdef"), "{}", done.stderr);
}

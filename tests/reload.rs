//! Reload (PROTOCOL section 12): the real binary re-reads its file on SIGHUP, and an embedding
//! program reloads with `Gateway::reload` and `GatewayHandle::reload`, while clients stay
//! connected over real sockets.

mod common;

use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc;
use std::time::Instant;

use common::binary::Binary;
use common::*;
use gateway::{AuthToken, Config, Event, Gateway};
use serde_json::json;
use tungstenite::protocol::frame::coding::CloseCode;

const ALICE: &str = "alice-s3cret-1";
const BOB: &str = "bob-s3cret-2";

/// A directory of its own, removed on drop.
struct TempDir(PathBuf);

impl TempDir {
    fn new() -> TempDir {
        static COUNTER: AtomicU64 = AtomicU64::new(0);
        let path = std::env::temp_dir().join(format!(
            "gateway-reload-test-{}-{}",
            std::process::id(),
            COUNTER.fetch_add(1, Ordering::Relaxed)
        ));
        std::fs::create_dir_all(&path).expect("temp dir");
        TempDir(path)
    }

    fn conf(&self) -> PathBuf {
        self.0.join("gateway.conf")
    }

    /// (Re)write the configuration file.
    fn write(&self, text: &str) {
        std::fs::write(self.conf(), text).expect("write config");
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// A configuration file with the two tokens and `extra` lines.
fn conf_text(extra: &str) -> String {
    format!("port = 0\nauth_tokens = alice:{ALICE}, bob:{BOB}\nlog_level = info\n{extra}")
}

/// The binary run in `dir` with `--config` naming `dir`'s file, and `extra_args`.
fn with_file(dir: &TempDir, extra_args: &[&str]) -> Binary {
    let conf = dir.conf();
    let mut args = vec!["--config", conf.to_str().expect("utf-8 path")];
    args.extend_from_slice(extra_args);
    Binary::start_in(&dir.0, &args)
}

/// Send SIGHUP and return the line that says how the reload went.
fn reload(gw: &mut Binary) -> String {
    gw.signal("HUP");
    gw.line_with_any(&["configuration reloaded", "configuration not reloaded"])
}

fn assert_revoked(client: &mut Client) {
    let frame = client.expect_close().expect("a close frame");
    assert_eq!(frame.code, CloseCode::Policy);
    assert_eq!(frame.reason.as_str(), "Token revoked");
}

fn pings(client: &mut Client) {
    assert_eq!(client.request("ping", json!({}))["type"], "pong");
}

#[test]
fn a_revoked_token_closes_its_connections_and_no_others() {
    let dir = TempDir::new();
    dir.write(&conf_text(""));
    let mut gw = with_file(&dir, &[]);
    let mut alice = gw.client(ALICE);
    let mut alice_too = gw.client(ALICE);
    let mut bob = gw.client(BOB);
    dir.write(&format!(
        "port = 0\nauth_tokens = bob:{BOB}, carol:c-s3cret-3\nlog_level = info\n"
    ));
    let line = reload(&mut gw);
    assert!(
        line.contains("configuration reloaded: changed auth_tokens"),
        "{line}"
    );
    assert!(
        line.contains("2 connections closed (Token revoked)"),
        "{line}"
    );
    assert_revoked(&mut alice);
    assert_revoked(&mut alice_too);
    pings(&mut bob);
    // Old token refused, new one accepted.
    let mut late = Client::connect_url(&gw.url);
    let reply = late.request("auth", json!({ "token": ALICE }));
    assert_error(&reply, "AUTH_FAILED");
    gw.client("c-s3cret-3");
    let log = gw.log();
    for secret in [ALICE, BOB, "c-s3cret-3"] {
        assert!(!log.contains(secret), "a secret in the log:\n{log}");
    }
}

#[test]
fn changed_scopes_apply_from_the_next_message() {
    let dir = TempDir::new();
    dir.write(&conf_text(""));
    let mut gw = with_file(&dir, &[]);
    let mut alice = gw.client(ALICE);
    assert_eq!(
        alice.request("agent_query", json!({}))["type"],
        "agent_list"
    );
    dir.write(&conf_text("allow_route = bob\n"));
    let line = reload(&mut gw);
    assert!(
        line.ends_with("configuration reloaded: changed allow_route"),
        "{line}"
    );
    let reply = alice.request("agent_query", json!({}));
    assert_eq!(
        assert_error(&reply, "FORBIDDEN")["payload"]["details"]["scope"],
        "route"
    );
    let mut bob = gw.client(BOB);
    assert_eq!(bob.request("agent_query", json!({}))["type"], "agent_list");
    dir.write(&conf_text("allow_route = bob\nadmin_users = alice\n"));
    reload(&mut gw);
    assert_eq!(
        alice.request("agent_query", json!({}))["type"],
        "agent_list"
    );
}

#[test]
fn a_broken_file_changes_nothing_and_the_gateway_keeps_serving() {
    let dir = TempDir::new();
    dir.write(&conf_text(""));
    let mut gw = with_file(&dir, &[]);
    let mut alice = gw.client(ALICE);
    // Line 4 is bad; line 5 would revoke alice's token if it were taken.
    dir.write(&format!(
        "port = 0\nauth_tokens = alice:{ALICE}, bob:{BOB}\nlog_level = info\nmax_list_items = lots\nauth_tokens = bob:{BOB}\n"
    ));
    let line = reload(&mut gw);
    let place = format!("{}:4: max_list_items:", dir.conf().display());
    assert!(
        line.contains("configuration not reloaded, nothing changed"),
        "{line}"
    );
    assert!(line.contains(&place), "{line}");
    pings(&mut alice);
    gw.client(ALICE);
    // A fixed file is taken at the next SIGHUP.
    dir.write(&conf_text("max_list_items = 5\n"));
    let line = reload(&mut gw);
    assert!(line.contains("changed max_list_items"), "{line}");
    pings(&mut alice);
}

#[test]
fn a_key_that_cannot_change_live_keeps_its_old_value_with_a_warning() {
    let dir = TempDir::new();
    dir.write(&conf_text(""));
    let mut gw = with_file(&dir, &[]);
    let mut alice = gw.client(ALICE);
    dir.write(&conf_text(
        "path = /elsewhere\nheartbeat_interval_ms = 1000\n",
    ));
    let line = reload(&mut gw);
    assert!(
        line.ends_with("configuration reloaded: nothing changed"),
        "{line}"
    );
    let log = gw.log();
    for key in ["path", "heartbeat_interval_ms"] {
        let warning = format!("{key} cannot change while the gateway runs: it keeps its old value");
        assert!(log.contains(&warning), "{log}");
    }
    // Still at the old path.
    pings(&mut alice);
    gw.client(BOB);
}

#[test]
fn set_overrides_are_applied_again_over_the_file() {
    let dir = TempDir::new();
    dir.write(&conf_text("allow_route = *\n"));
    let mut gw = with_file(&dir, &["--set", "allow_route=bob"]);
    let mut alice = gw.client(ALICE);
    assert_error(&alice.request("agent_query", json!({})), "FORBIDDEN");
    dir.write(&conf_text("allow_route = *\nmax_list_items = 5\n"));
    let line = reload(&mut gw);
    assert!(
        line.ends_with("configuration reloaded: changed max_list_items"),
        "{line}"
    );
    assert_error(&alice.request("agent_query", json!({})), "FORBIDDEN");
}

#[test]
fn without_a_file_sighup_has_nothing_to_reload() {
    let dir = TempDir::new(); // no gateway.conf in it
    let args = [
        "--set",
        "port=0",
        "--set",
        &format!("auth_tokens=alice:{ALICE}"),
    ];
    let mut gw = Binary::start_in(&dir.0, &args);
    let mut alice = gw.client(ALICE);
    let line = reload(&mut gw);
    assert!(line.contains("nothing to reload"), "{line}");
    pings(&mut alice);
}

#[test]
fn log_level_changes_live() {
    let dir = TempDir::new();
    dir.write(&conf_text(""));
    let mut gw = with_file(&dir, &[]);
    dir.write(&format!(
        "port = 0\nauth_tokens = alice:{ALICE}, bob:{BOB}\nlog_level = debug\n"
    ));
    let line = reload(&mut gw);
    assert!(line.ends_with("changed log_level"), "{line}");
    let alice = gw.client(ALICE);
    let connected = format!("client {} connected", alice.client_id);
    gw.line_with(&connected);
}

fn two_tokens() -> Config {
    Config {
        port: 0,
        auth_tokens: vec![
            AuthToken {
                user: "alice".into(),
                secret: ALICE.into(),
            },
            AuthToken {
                user: "bob".into(),
                secret: BOB.into(),
            },
        ],
        ..Config::default()
    }
}

#[test]
fn gateway_reload_from_the_loop_thread_returns_the_changes_and_emits_an_event() {
    let config = two_tokens();
    let mut gw = Gateway::bind(config.clone()).expect("bind");
    let url = gw.url();
    let (authed_tx, authed_rx) = mpsc::channel();
    let client = std::thread::spawn(move || {
        let mut alice = Client::connect_url(&url);
        let reply = alice.request("auth", json!({ "token": ALICE }));
        assert_eq!(reply["type"], "auth_success", "{reply}");
        authed_tx.send(()).expect("main waits");
        let frame = alice.expect_close().expect("a close frame");
        (frame.code, frame.reason.to_string())
    });
    let deadline = Instant::now() + WAIT;
    while authed_rx.try_recv().is_err() {
        assert!(Instant::now() < deadline, "alice did not authenticate");
        gw.poll(Some(std::time::Duration::from_millis(5)))
            .expect("poll");
    }
    while gw.next_event().is_some() {}
    let mut new = config.clone();
    new.auth_tokens.remove(0);
    new.port = 1;
    assert_eq!(gw.reload(new).expect("valid"), ["auth_tokens"]);
    assert_eq!(gw.config().auth_tokens.len(), 1);
    assert_ne!(gw.config().port, 1);
    let mut events = Vec::new();
    while !client.is_finished() {
        assert!(Instant::now() < deadline, "alice was not closed");
        gw.poll(Some(std::time::Duration::from_millis(5)))
            .expect("poll");
        events.extend(std::iter::from_fn(|| gw.next_event()));
    }
    let (code, reason) = client.join().expect("client");
    assert_eq!(
        (code, reason.as_str()),
        (CloseCode::Policy, "Token revoked")
    );
    assert!(events.contains(&Event::ConfigReloaded {
        changed: vec!["auth_tokens".into()]
    }));
    // An invalid configuration is refused, naming the key; nothing changes.
    let broken = Config {
        max_list_items: 0,
        ..two_tokens()
    };
    let e = gw.reload(broken).expect_err("invalid");
    assert_eq!(e.key.as_deref(), Some("max_list_items"));
    assert_eq!(gw.config().auth_tokens.len(), 1);
}

#[test]
fn a_handle_reload_reaches_the_transport_too() {
    let gw = TestGateway::start(two_tokens());
    let mut bob = Client::authed(&gw, BOB);
    assert!(open_ws(&gw.url(), None).is_ok(), "no Origin needed yet");
    let strict = Config {
        require_origin: true,
        cors_origins: vec!["https://app.example".into()],
        ..two_tokens()
    };
    gw.handle.reload(strict).expect("the gateway runs");
    assert!(
        eventually(|| open_ws(&gw.url(), None).is_err()),
        "an upgrade without Origin is refused after the reload"
    );
    assert!(open_ws(&gw.url(), Some("http://localhost:3000")).is_err());
    assert!(open_ws(&gw.url(), Some("https://app.example")).is_ok());
    pings(&mut bob);
}

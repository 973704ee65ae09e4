//! The library as a host program uses it: driving `Gateway::poll` from its own loop, reading
//! `next_event`, reaching the loop through `GatewayHandle` from other threads, custom message
//! handlers, and running the gateway on a thread of its own.

mod common;

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::mpsc;
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use common::*;
use gateway::AuthMode;
use gateway::{ErrorCode, Event};
use gateway::{Gateway, GatewayHandle, HandleError};
use serde_json::json;

/// A host program: owns the gateway and drives it from its own loop on the test thread.
struct Host {
    gw: Gateway,
    events: Vec<Event>,
    timeout: Duration,
}

impl Host {
    fn new(config: gateway::Config) -> Host {
        Host {
            gw: Gateway::bind(config).expect("bind"),
            events: Vec::new(),
            timeout: Duration::from_millis(5),
        }
    }

    /// One turn of the host loop: poll, then read every event.
    fn turn(&mut self) {
        self.gw.poll(Some(self.timeout)).expect("poll");
        while let Some(event) = self.gw.next_event() {
            self.events.push(event);
        }
    }

    /// Drive the loop until `done` holds; panics after `WAIT`.
    fn drive_until(&mut self, what: &str, mut done: impl FnMut(&mut Host) -> bool) {
        let deadline = Instant::now() + WAIT;
        while !done(self) {
            assert!(
                Instant::now() < deadline,
                "host loop: {what} within {WAIT:?}"
            );
            self.turn();
        }
    }

    /// Drive the loop until `thread` has finished; returns its result (its panic, re-raised).
    fn drive_thread<T>(&mut self, thread: JoinHandle<T>) -> T {
        self.drive_until("client thread done", |_| thread.is_finished());
        match thread.join() {
            Ok(value) => value,
            Err(panic) => std::panic::resume_unwind(panic),
        }
    }

    fn position(&self, wanted: &Event) -> usize {
        self.events
            .iter()
            .position(|e| e == wanted)
            .unwrap_or_else(|| panic!("no {wanted:?} in {:#?}", self.events))
    }
}

fn authed_url(url: &str, token: &str) -> Client {
    let mut client = Client::connect_url(url);
    let reply = client.request("auth", json!({"token": token}));
    assert_eq!(reply["type"], "auth_success", "{reply}");
    client
}

#[test]
fn host_loop_serves_clients_while_a_handle_sends_from_another_thread() {
    let mut host = Host::new(test_config());
    let port = host.gw.local_addr().port();
    assert_ne!(port, 0, "the real port");
    let url = host.gw.url();
    assert_eq!(url, format!("ws://127.0.0.1:{port}/ws"));

    let handle = host.gw.handle();
    let (ready_tx, ready_rx) = mpsc::channel::<String>();
    let sender = std::thread::spawn(move || {
        let client_id = ready_rx.recv_timeout(WAIT).expect("client ready");
        handle
            .send_to_client(&client_id, "notice", json!({"text": "hello"}))
            .expect("send_to_client");
        handle
            .broadcast_to_session("room", json!({"n": 1}))
            .expect("broadcast_to_session");
        handle
            .broadcast_message("room", "announcement", json!({"n": 2}))
            .expect("broadcast_message");
        // Unknown client or session: accepted, nothing happens.
        handle
            .send_to_client("nobody", "notice", json!({}))
            .expect("unknown client");
        handle
            .broadcast_to_session("no-room", json!({}))
            .expect("unknown session");
    });
    let client = std::thread::spawn(move || {
        let mut client = authed_url(&url, TOKEN);
        let created = client.request("session_create", json!({"sessionId": "room"}));
        assert_eq!(created["payload"]["status"], "created", "{created}");
        ready_tx.send(client.client_id.clone()).unwrap();
        let got = [client.recv(), client.recv(), client.recv()];
        client.expect_silence(Duration::from_millis(100));
        let pong = client.request("ping", json!({}));
        assert_eq!(pong["type"], "pong");
        got
    });
    let [notice, broadcast, announcement] = host.drive_thread(client);
    sender.join().expect("sender thread");

    assert_eq!(notice["type"], "notice", "{notice}");
    assert_eq!(notice["payload"], json!({"text": "hello"}));
    assert!(notice["id"].as_str().is_some_and(|s| !s.is_empty()));
    assert!(notice["timestamp"].is_u64());
    for field in ["replyTo", "source", "sessionId"] {
        assert!(notice.get(field).is_none(), "no {field}: {notice}");
    }
    assert_eq!(broadcast["type"], "broadcast", "{broadcast}");
    assert_eq!(broadcast["sessionId"], "room");
    assert_eq!(broadcast["payload"], json!({"n": 1}));
    assert!(broadcast.get("source").is_none(), "{broadcast}");
    assert_eq!(announcement["type"], "announcement", "{announcement}");
    assert_eq!(announcement["sessionId"], "room");
    assert_eq!(announcement["payload"], json!({"n": 2}));

    // The client has gone: the host loop notices.
    host.drive_until("the client's cleanup", |h| {
        h.gw.client_count() == 0 && h.gw.session_count() == 0
    });
}

#[test]
fn next_event_reports_each_action() {
    let mut host = Host::new(test_config());
    let url = host.gw.url();
    let client = std::thread::spawn(move || {
        let mut a = authed_url(&url, TOKEN);
        let created = a.request("session_create", json!({"sessionId": "ev"}));
        assert_eq!(created["payload"]["status"], "created");
        let agent = a.request(
            "agent_register",
            json!({"agentId": "ev-agent", "type": "pi", "name": "E", "capabilities": {}}),
        );
        assert_eq!(agent["payload"]["status"], "registered");

        let mut b = authed_url(&url, TOKEN_BOB);
        let joined = b.request("session_join", json!({"sessionId": "ev"}));
        assert_eq!(joined["payload"]["status"], "joined");
        let left = b.request("session_leave", json!({"sessionId": "ev"}));
        assert_eq!(left["payload"]["status"], "left");
        let mystery_id = next_id();
        b.send(&json!({"type": "mystery", "id": mystery_id, "payload": {"k": "v"}}));
        let unknown = b.recv();
        assert_eq!(unknown["payload"]["code"], "UNKNOWN_TYPE", "{unknown}");

        let never_authed = Client::connect_url(&url);
        let ids = (
            a.client_id.clone(),
            b.client_id.clone(),
            never_authed.client_id.clone(),
            mystery_id,
        );
        drop(never_authed);
        drop(b);
        drop(a);
        ids
    });
    let (a, b, c, mystery_id) = host.drive_thread(client);
    host.drive_until("three disconnects", |h| {
        h.events
            .iter()
            .filter(|e| matches!(e, Event::ClientDisconnected { .. }))
            .count()
            == 3
    });

    let connected_a = host.position(&Event::ClientConnected {
        client_id: a.clone(),
    });
    let authed_a = host.position(&Event::ClientAuthenticated {
        client_id: a.clone(),
        user_id: "alice".into(),
    });
    let created = host.position(&Event::SessionCreated {
        session_id: "ev".into(),
        client_id: a.clone(),
    });
    let registered = host.position(&Event::AgentRegistered {
        agent_id: "ev-agent".into(),
        client_id: a.clone(),
    });
    let authed_b = host.position(&Event::ClientAuthenticated {
        client_id: b.clone(),
        user_id: "bob".into(),
    });
    let joined = host.position(&Event::SessionJoined {
        session_id: "ev".into(),
        client_id: b.clone(),
    });
    let left_b = host.position(&Event::SessionLeft {
        session_id: "ev".into(),
        client_id: b.clone(),
    });
    let left_a = host.position(&Event::SessionLeft {
        session_id: "ev".into(),
        client_id: a.clone(),
    });
    let offline = host.position(&Event::AgentOffline {
        agent_id: "ev-agent".into(),
    });
    let unhandled = host
        .events
        .iter()
        .position(|e| matches!(e, Event::UnhandledMessage { .. }))
        .expect("UnhandledMessage");
    let Event::UnhandledMessage {
        client_id,
        msg_type,
        message,
    } = &host.events[unhandled]
    else {
        unreachable!()
    };
    assert_eq!(client_id, &b);
    assert_eq!(msg_type, "mystery");
    let message: serde_json::Value =
        serde_json::from_str(message).expect("the message as it arrived");
    assert_eq!(message["id"], mystery_id.as_str());
    assert_eq!(message["payload"], json!({"k": "v"}));

    let disconnected = |who: &str| {
        host.events
            .iter()
            .position(|e| matches!(e, Event::ClientDisconnected { client_id, reason } if client_id == who && !reason.is_empty()))
            .unwrap_or_else(|| panic!("ClientDisconnected for {who}"))
    };
    let (gone_a, gone_b) = (disconnected(&a), disconnected(&b));
    assert!(connected_a < authed_a && authed_a < created && created < registered);
    assert!(registered < authed_b && authed_b < joined && joined < left_b);
    assert!(left_b < unhandled && unhandled < gone_b);
    assert!(registered < left_a && left_a < offline && offline < gone_a);

    // A connection that never authenticated: connected and disconnected only.
    host.position(&Event::ClientConnected {
        client_id: c.clone(),
    });
    disconnected(&c);
    assert!(
        !host
            .events
            .iter()
            .any(|e| matches!(e, Event::ClientAuthenticated { client_id, .. } if client_id == &c)),
        "{:#?}",
        host.events
    );
    assert_eq!(
        host.events
            .iter()
            .filter(|e| matches!(
                e,
                Event::SessionJoined { .. } | Event::SessionCreated { .. }
            ))
            .count(),
        2,
        "the creator does not also join: {:#?}",
        host.events
    );
    assert_eq!(
        host.events
            .iter()
            .filter(|e| matches!(e, Event::UnhandledMessage { .. }))
            .count(),
        1
    );
}

#[test]
fn with_auth_off_a_connection_is_authenticated_at_once() {
    let mut config = test_config();
    config.auth_mode = AuthMode::None;
    let mut host = Host::new(config);
    let url = host.gw.url();
    let client = std::thread::spawn(move || Client::connect_url(&url).client_id.clone());
    let id = host.drive_thread(client);
    host.drive_until("authenticated event", |h| {
        h.events
            .iter()
            .any(|e| matches!(e, Event::ClientAuthenticated { .. }))
    });
    let connected = host.position(&Event::ClientConnected {
        client_id: id.clone(),
    });
    let authed = host.position(&Event::ClientAuthenticated {
        client_id: id,
        user_id: "anonymous".into(),
    });
    assert_eq!(authed, connected + 1);
}

/// A gateway with the handlers of `registered_handlers_*`, on its own thread.
fn gateway_with_handlers() -> TestGateway {
    let mut gw = Gateway::bind(test_config()).expect("bind");
    for builtin in [
        "ping",
        "auth",
        "agent_register",
        "route_request",
        "chat",
        "",
    ] {
        assert!(
            gw.register_handler(builtin, |ctx, _| ctx.reply("hijacked", json!({})))
                .is_err(),
            "{builtin:?} cannot be registered"
        );
    }
    gw.register_handler("echo", |ctx, _| ctx.reply("wrong", json!({})))
        .expect("not a built-in type");
    // Registering again replaces.
    gw.register_handler("echo", |ctx, msg| {
        let payload = json!({
            "text": msg.payload["text"],
            "clientId": ctx.client_id(),
            "userId": ctx.user_id(),
            "requestId": ctx.request_id(),
            "sessionId": msg.session_id,
        });
        ctx.reply("echo_reply", payload);
    })
    .expect("not a built-in type");
    gw.register_handler("announce", |ctx, msg| {
        let session = msg.session_id.clone().unwrap_or_default();
        let count = ctx.broadcast(&session, "announcement", &msg.payload);
        ctx.reply("announced", json!({"count": count}));
    })
    .expect("not a built-in type");
    gw.register_handler("poke", |ctx, msg| {
        let target = msg.payload["target"].as_str().unwrap_or_default();
        let from = ctx.client_id().to_owned();
        let delivered = ctx.send_to(target, "poked", json!({"from": from}));
        ctx.reply("poke_result", json!({"delivered": delivered}));
    })
    .expect("not a built-in type");
    gw.register_handler("boot", |ctx, msg| {
        let target = msg.payload["target"].as_str().unwrap_or_default();
        let kicked = ctx.kick(target);
        ctx.reply("boot_result", json!({"kicked": kicked}));
    })
    .expect("not a built-in type");
    gw.register_handler("boot_for", |ctx, msg| {
        let target = msg.payload["target"].as_str().unwrap_or_default();
        let reason = msg.payload["reason"].as_str().unwrap_or_default();
        let kicked = ctx.kick_with_reason(target, reason);
        ctx.reply("boot_result", json!({"kicked": kicked}));
    })
    .expect("not a built-in type");
    gw.register_handler("refuse", |ctx, _| {
        ctx.error(ErrorCode::Forbidden, "Not today")
    })
    .expect("not a built-in type");
    TestGateway::run(gw, "/ws".into())
}

#[test]
fn registered_handlers_reply_with_reply_to() {
    let gw = gateway_with_handlers();
    let mut a = Client::authed(&gw, TOKEN);

    let id = next_id();
    a.send(&json!({"type": "echo", "id": id, "sessionId": "s-1", "payload": {"text": "hi"}}));
    let reply = a.recv();
    assert_eq!(reply["type"], "echo_reply", "{reply}");
    assert_eq!(reply["replyTo"], id.as_str());
    assert_ne!(reply["id"], id.as_str());
    assert!(reply.get("source").is_none(), "{reply}");
    assert_eq!(
        reply["payload"],
        json!({"text": "hi", "clientId": a.client_id, "userId": "alice", "requestId": id, "sessionId": "s-1"})
    );

    let reply = a.request("refuse", json!({}));
    assert_eq!(reply["type"], "error", "{reply}");
    assert_eq!(reply["payload"]["code"], "FORBIDDEN");
    assert_eq!(reply["payload"]["message"], "Not today");

    // Built-in types keep their own handling.
    let reply = a.request("ping", json!({}));
    assert_eq!(reply["type"], "pong", "{reply}");
    let reply = a.request("unregistered_type", json!({}));
    assert_eq!(reply["payload"]["code"], "UNKNOWN_TYPE", "{reply}");

    // Handlers run after the auth gate.
    let mut anon = Client::connect(&gw);
    let reply = anon.request("echo", json!({"text": "x"}));
    assert_eq!(reply["payload"]["code"], "AUTH_REQUIRED", "{reply}");
}

#[test]
fn registered_handlers_broadcast_send_and_kick_through_the_context() {
    let gw = gateway_with_handlers();
    let mut a = Client::authed(&gw, TOKEN);
    let mut b = Client::authed(&gw, TOKEN_BOB);
    let mut anon = Client::connect(&gw);
    a.request("session_create", json!({"sessionId": "hall"}));
    b.request("session_join", json!({"sessionId": "hall"}));
    assert_eq!(a.recv()["type"], "presence");

    // broadcast reaches every member, the sender included, then the reply.
    let id = next_id();
    a.send(&json!({"type": "announce", "id": id, "sessionId": "hall", "payload": {"msg": "doors open"}}));
    for member in [&mut a, &mut b] {
        let got = member.recv();
        assert_eq!(got["type"], "announcement", "{got}");
        assert_eq!(got["sessionId"], "hall");
        assert_eq!(got["payload"], json!({"msg": "doors open"}));
        assert!(got.get("replyTo").is_none() && got.get("source").is_none());
    }
    let reply = a.recv();
    assert_eq!(reply["type"], "announced", "{reply}");
    assert_eq!(reply["replyTo"], id.as_str());
    assert_eq!(reply["payload"]["count"], 2);
    anon.expect_silence(Duration::from_millis(100));

    // send_to reaches any open connection, authenticated or not.
    let reply = a.request("poke", json!({"target": b.client_id}));
    assert_eq!(reply["payload"]["delivered"], true, "{reply}");
    let poked = b.recv();
    assert_eq!(poked["type"], "poked");
    assert_eq!(poked["payload"]["from"], a.client_id.as_str());
    let reply = a.request("poke", json!({"target": anon.client_id}));
    assert_eq!(reply["payload"]["delivered"], true, "{reply}");
    assert_eq!(anon.recv()["type"], "poked");
    let reply = a.request("poke", json!({"target": "nobody"}));
    assert_eq!(reply["payload"]["delivered"], false, "{reply}");

    // kick closes with 1008.
    let reply = a.request("boot", json!({"target": b.client_id}));
    assert_eq!(reply["payload"]["kicked"], true, "{reply}");
    let frame = b.expect_close().expect("close frame");
    assert_eq!(u16::from(frame.code), 1008);
    assert_eq!(frame.reason.as_str(), "Kicked");
    // The kicked client left the session.
    let left = a.recv();
    assert_eq!(left["type"], "presence", "{left}");
    assert_eq!(left["payload"]["status"], "left");
    assert_eq!(left["payload"]["clientId"], b.client_id.as_str());
    let reply = a.request("boot", json!({"target": b.client_id}));
    assert_eq!(reply["payload"]["kicked"], false, "{reply}");
}

#[test]
fn handle_kick_closes_the_client_with_1008() {
    let gw = TestGateway::start(test_config());
    let mut a = Client::authed(&gw, TOKEN);
    let mut b = Client::authed(&gw, TOKEN_BOB);
    gw.handle
        .kick("nobody")
        .expect("unknown client: nothing happens");
    gw.handle.kick(&a.client_id).expect("kick");
    let frame = a.expect_close().expect("close frame");
    assert_eq!(u16::from(frame.code), 1008);
    assert_eq!(frame.reason.as_str(), "Kicked");
    assert!(eventually(|| gw.health()["clients"] == 1));
    let reply = b.request("ping", json!({}));
    assert_eq!(reply["type"], "pong", "others stay connected");
}

/// The close frame `client` gets, as (code, reason).
fn close_of(client: &mut Client) -> (u16, String) {
    let frame = client.expect_close().expect("close frame");
    (u16::from(frame.code), frame.reason.to_string())
}

#[test]
fn handle_kick_with_reason_closes_with_the_reason_cut_to_a_close_frame() {
    let gw = TestGateway::start(test_config());
    let mut a = Client::authed(&gw, TOKEN);
    let mut b = Client::authed(&gw, TOKEN);
    let mut c = Client::authed(&gw, TOKEN_BOB);
    let mut d = Client::authed(&gw, TOKEN_BOB);
    gw.handle
        .kick_with_reason("nobody", "x")
        .expect("unknown client: nothing happens");
    gw.handle
        .kick_with_reason(&a.client_id, "maintenance")
        .expect("kick");
    assert_eq!(close_of(&mut a), (1008, "Kicked: maintenance".to_owned()));
    gw.handle.kick_with_reason(&b.client_id, "").expect("kick");
    assert_eq!(close_of(&mut b), (1008, "Kicked".to_owned()));
    // 115 bytes of room after `Kicked: `: the 2-byte character across the end is left out.
    let long = "\u{e9}".repeat(100);
    gw.handle
        .kick_with_reason(&c.client_id, &long)
        .expect("kick");
    let (code, reason) = close_of(&mut c);
    assert_eq!(code, 1008);
    assert_eq!(reason, format!("Kicked: {}", "\u{e9}".repeat(57)));
    assert_eq!(reason.len(), 122);
    assert!(eventually(|| gw.health()["clients"] == 1));
    let reply = d.request("ping", json!({}));
    assert_eq!(reply["type"], "pong", "others stay connected");
}

#[test]
fn a_handler_kicks_with_a_reason_through_the_context() {
    let gw = gateway_with_handlers();
    let mut a = Client::authed(&gw, TOKEN);
    let mut b = Client::authed(&gw, TOKEN_BOB);
    let mut c = Client::authed(&gw, TOKEN_BOB);
    let reply = a.request(
        "boot_for",
        json!({"target": b.client_id, "reason": "voted out"}),
    );
    assert_eq!(reply["payload"]["kicked"], true, "{reply}");
    assert_eq!(close_of(&mut b), (1008, "Kicked: voted out".to_owned()));
    // Already closing or gone: not kicked again.
    let reply = a.request(
        "boot_for",
        json!({"target": b.client_id, "reason": "again"}),
    );
    assert_eq!(reply["payload"]["kicked"], false, "{reply}");
    let reply = a.request(
        "boot_for",
        json!({"target": c.client_id, "reason": "x".repeat(300)}),
    );
    assert_eq!(reply["payload"]["kicked"], true, "{reply}");
    assert_eq!(
        close_of(&mut c),
        (1008, format!("Kicked: {}", "x".repeat(115)))
    );
    let reply = a.request("ping", json!({}));
    assert_eq!(reply["type"], "pong", "the sender stays connected");
}

#[test]
fn handle_shutdown_stops_the_host_loop_and_closes_clients_with_1001() {
    let mut config = test_config();
    config.close_timeout_ms = 500;
    let mut host = Host::new(config);
    let url = host.gw.url();
    let handle = host.gw.handle();
    let client = std::thread::spawn(move || {
        let mut client = authed_url(&url, TOKEN);
        handle.shutdown().expect("shutdown");
        client.expect_close()
    });
    let started = Instant::now();
    host.drive_until("stopped", |h| h.gw.is_stopped());
    let took = started.elapsed();
    let frame = host.drive_thread(client).expect("close frame");
    assert_eq!(u16::from(frame.code), 1001);
    assert_eq!(frame.reason.as_str(), "Server shutting down");
    assert!(took < Duration::from_millis(1500), "stopped after {took:?}");

    // Stopped: polling does nothing, and the listener is gone.
    host.gw.poll(Some(Duration::ZERO)).expect("poll after stop");
    assert!(host.gw.is_stopped());
    let addr = host.gw.local_addr();
    drop(host);
    assert!(std::net::TcpStream::connect(addr).is_err());
}

#[test]
fn a_handle_reports_a_gateway_that_is_gone() {
    let mut host = Host::new(test_config());
    let handle: GatewayHandle = host.gw.handle();
    let other = handle.clone();
    host.gw.shutdown();
    host.drive_until("stopped", |h| h.gw.is_stopped());
    // Stopped but not yet dropped: nothing will read commands any more, and handles say so.
    assert_eq!(
        other.send_to_client("x", "t", json!({})),
        Err(HandleError::Stopped)
    );
    drop(host);
    assert_eq!(handle.shutdown(), Err(HandleError::Stopped));
}

#[test]
fn shutdown_ends_when_the_close_handshakes_are_done() {
    let mut config = test_config();
    config.close_timeout_ms = 3000;
    let mut host = Host::new(config);
    let addr = host.gw.local_addr();
    let (tx, rx) = mpsc::channel();
    // A client that answers the close frame but keeps its socket open.
    let client = std::thread::spawn(move || {
        let mut raw = RawWs::open_at(addr, "/ws", &[]);
        tx.send(()).unwrap();
        let close = raw.read_close();
        raw.send(&frame(8, true, &1001u16.to_be_bytes(), true));
        let ended = raw.sees_eof();
        (close, ended)
    });
    host.drive_until("client connected", |_| rx.try_recv().is_ok());
    let started = Instant::now();
    host.gw.shutdown();
    host.drive_until("stopped", |h| h.gw.is_stopped());
    let took = started.elapsed();
    let (close, ended) = host.drive_thread(client);
    assert_eq!(close.map(|c| c.0), Some(1001));
    assert!(ended, "the gateway closed the socket");
    assert!(took < Duration::from_millis(1500), "stopped after {took:?}");
}

#[test]
fn gateway_shutdown_from_the_loop_thread() {
    let mut config = test_config();
    config.close_timeout_ms = 500;
    let mut host = Host::new(config);
    let url = host.gw.url();
    let (tx, rx) = mpsc::channel();
    let client = std::thread::spawn(move || {
        let mut client = authed_url(&url, TOKEN);
        tx.send(()).unwrap();
        client.expect_close()
    });
    host.drive_until("client authenticated", |_| rx.try_recv().is_ok());
    host.gw.shutdown();
    host.drive_until("stopped", |h| h.gw.is_stopped());
    let frame = host.drive_thread(client).expect("close frame");
    assert_eq!(u16::from(frame.code), 1001);
}

#[test]
fn gateway_is_send_and_runs_on_another_thread() {
    fn assert_send<T: Send>() {}
    assert_send::<Gateway>();
    assert_send::<GatewayHandle>();

    let calls = Arc::new(AtomicUsize::new(0));
    let mut config = test_config();
    config.close_timeout_ms = 4000;
    let mut gw = Gateway::bind(config).expect("bind");
    let counter = Arc::clone(&calls);
    gw.register_handler("count", move |ctx, _| {
        let n = counter.fetch_add(1, Ordering::SeqCst) + 1;
        ctx.reply("counted", json!({"n": n}));
    })
    .expect("not a built-in type");
    let url = gw.url();
    let handle = gw.handle();
    let thread = std::thread::spawn(move || gw.run());

    let mut client = authed_url(&url, TOKEN);
    for n in 1..=3 {
        let reply = client.request("count", json!({}));
        assert_eq!(reply["payload"]["n"], n, "{reply}");
    }
    assert_eq!(calls.load(Ordering::SeqCst), 3);

    let started = Instant::now();
    handle.shutdown().expect("shutdown");
    let frame = client.expect_close().expect("close frame");
    assert_eq!(u16::from(frame.code), 1001);
    // Answer the close and hang up: the gateway need not wait for close_timeout.
    let _ = client.ws.flush();
    drop(client);
    let deadline = Instant::now() + WAIT;
    while !thread.is_finished() {
        assert!(Instant::now() < deadline, "run did not return");
        std::thread::sleep(Duration::from_millis(5));
    }
    thread
        .join()
        .expect("gateway thread")
        .expect("run returns Ok");
    let took = started.elapsed();
    assert!(
        took < Duration::from_millis(3000),
        "run returned after {took:?}, not when the close handshake completed"
    );
    assert_eq!(handle.shutdown(), Err(HandleError::Stopped));
}

#[test]
fn raw_fd_is_the_poll_and_zero_timeout_turns_are_enough() {
    use std::os::unix::io::AsRawFd;

    let mut host = Host::new(test_config());
    host.timeout = Duration::ZERO;
    let fd = host.gw.as_raw_fd();
    assert!(fd >= 0, "{fd}");
    assert_eq!(host.gw.as_raw_fd(), fd, "stable");
    #[cfg(target_os = "linux")]
    {
        let link = std::fs::read_link(format!("/proc/self/fd/{fd}")).expect("an open fd");
        assert!(
            link.to_string_lossy().contains("eventpoll"),
            "an epoll descriptor: {link:?}"
        );
    }

    let url = host.gw.url();
    let client = std::thread::spawn(move || {
        let mut client = authed_url(&url, TOKEN);
        let reply = client.request("session_create", json!({"sessionId": "zero"}));
        assert_eq!(reply["payload"]["status"], "created");
        let reply = client.request("ping", json!({}));
        assert_eq!(reply["type"], "pong");
        client.client_id.clone()
    });
    let deadline = Instant::now() + WAIT;
    while !client.is_finished() {
        assert!(Instant::now() < deadline, "client did not finish");
        host.turn();
        std::thread::yield_now();
    }
    let id: String = match client.join() {
        Ok(id) => id,
        Err(panic) => std::panic::resume_unwind(panic),
    };
    host.drive_until("disconnect event", |h| {
        h.events
            .iter()
            .any(|e| matches!(e, Event::ClientDisconnected { client_id, .. } if client_id == &id))
    });
    assert!(host.events.contains(&Event::SessionCreated {
        session_id: "zero".into(),
        client_id: id,
    }));
}

//! The transport's bounds of PROTOCOL section 11 over real sockets: the pre-auth message
//! limit, pending handshakes, bytes in flight, the message timeout, the event queue and the
//! open-file limit of the binary. Every test keeps a bystander and checks it is still served.

mod common;

use std::io::Read;
use std::net::TcpStream;
use std::process::Stdio;
use std::time::{Duration, Instant};

use common::binary::{shell_command, Binary};
use common::*;
use gateway::{Event, Gateway, EVENT_QUEUE_BYTES};
use serde_json::{json, Value};

/// A `ping` of exactly `len` bytes (its payload is padding the gateway does not read).
fn ping_of(id: &str, len: usize) -> Vec<u8> {
    let head = format!(r#"{{"type":"ping","id":"{id}","payload":{{"pad":""#);
    let tail = r#""}}"#;
    let mut text = head.into_bytes();
    text.resize(len - tail.len(), b'x');
    text.extend_from_slice(tail.as_bytes());
    text
}

/// A raw connection that has authenticated.
fn raw_authed(gw: &TestGateway) -> RawWs {
    let mut raw = RawWs::open(gw);
    let auth = json!({"type":"auth","id":"a","payload":{"token": TOKEN}}).to_string();
    raw.send(&frame(1, true, auth.as_bytes(), true));
    let reply = raw.read_json().expect("auth reply");
    assert_eq!(reply["type"], "auth_success", "{reply}");
    raw
}

/// The bystander still gets its pong.
fn served(bystander: &mut Client) {
    assert_eq!(bystander.request("ping", json!({}))["type"], "pong");
}

#[test]
fn before_auth_a_message_or_its_frames_past_the_preauth_limit_close_1009() {
    let mut config = test_config();
    config.max_preauth_message_size = 1024;
    let gw = TestGateway::start(config);
    let mut bystander = Client::authed(&gw, TOKEN);

    // One frame over the limit, before auth.
    let mut raw = RawWs::open(&gw);
    raw.send(&frame(1, true, &ping_of("p", 1025), true));
    assert_eq!(raw.read_close().map(|(code, _)| code), Some(1009));
    // Frames of one message in progress, each within the limit, together past it.
    let mut raw = RawWs::open(&gw);
    let text = ping_of("p", 1200);
    raw.send(&frame(1, false, &text[..600], true));
    raw.send(&frame(0, true, &text[600..], true));
    assert_eq!(raw.read_close().map(|(code, _)| code), Some(1009));
    // At the limit it is served.
    let mut raw = RawWs::open(&gw);
    raw.send(&frame(1, true, &ping_of("p", 1024), true));
    assert_eq!(raw.read_json().expect("pong")["type"], "pong");
    served(&mut bystander);

    // After auth the limit is max_payload: a larger message is served.
    let mut raw = raw_authed(&gw);
    raw.send(&frame(1, true, &ping_of("big", 50_000), true));
    assert_eq!(raw.read_json().expect("pong")["replyTo"], "big");
    // Also when it is pipelined right behind the auth that raised it, in one write.
    let mut raw = RawWs::open(&gw);
    let auth = json!({"type":"auth","id":"a","payload":{"token": TOKEN}}).to_string();
    let mut both = frame(1, true, auth.as_bytes(), true);
    both.extend(frame(1, true, &ping_of("next", 50_000), true));
    raw.send(&both);
    assert_eq!(raw.read_json().expect("auth")["type"], "auth_success");
    assert_eq!(raw.read_json().expect("pong")["replyTo"], "next");
    served(&mut bystander);
}

#[test]
fn with_auth_off_the_preauth_limit_does_not_apply() {
    let mut config = no_auth_config();
    config.max_preauth_message_size = 1024;
    let gw = TestGateway::start(config);
    let mut raw = RawWs::open(&gw);
    raw.send(&frame(1, true, &ping_of("big", 50_000), true));
    assert_eq!(raw.read_json().expect("pong")["replyTo"], "big");
}

/// Whether the server closes `stream` without sending a byte, within a second.
fn closed_without_response(stream: &mut TcpStream) -> bool {
    stream
        .set_read_timeout(Some(Duration::from_secs(1)))
        .unwrap();
    let mut byte = [0u8; 1];
    match stream.read(&mut byte) {
        Ok(0) => true,
        Err(e) => e.kind() == std::io::ErrorKind::ConnectionReset,
        Ok(_) => false,
    }
}

#[test]
fn a_socket_accepted_beyond_max_pending_handshakes_takes_the_place_of_the_oldest() {
    let mut config = test_config();
    config.max_pending_handshakes = 4;
    config.handshake_timeout_ms = 30_000;
    config.close_timeout_ms = 30_000;
    let gw = TestGateway::start(config);
    let mut bystander = Client::authed(&gw, TOKEN);

    // Three silent sockets and one refused and lingering (its answer unread, never closed),
    // accepted in the order they connect (the listener's queue is first in, first out).
    let mut pending: Vec<TcpStream> = (0..3)
        .map(|_| TcpStream::connect(gw.addr).unwrap())
        .collect();
    let mut refused = TcpStream::connect(gw.addr).unwrap();
    std::io::Write::write_all(&mut refused, b"GET /nope HTTP/1.1\r\n\r\n").unwrap();
    let mut head = [0u8; 12];
    refused.read_exact(&mut head).unwrap();
    assert_eq!(&head, b"HTTP/1.1 404");
    // A fifth socket takes the place of the oldest, which is closed without a response; a
    // sixth, of the next oldest.
    let mut fifth = TcpStream::connect(gw.addr).unwrap();
    assert!(closed_without_response(&mut pending[0]));
    let mut sixth = TcpStream::connect(gw.addr).unwrap();
    assert!(closed_without_response(&mut pending[1]));
    // The newer ones are still there.
    for stream in [&mut pending[2], &mut fifth, &mut sixth] {
        stream
            .set_read_timeout(Some(Duration::from_millis(100)))
            .unwrap();
        let err = stream.read(&mut [0u8; 1]).expect_err("still waiting");
        assert!(matches!(
            err.kind(),
            std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
        ));
    }
    served(&mut bystander);
    // A request is answered while the slots are full: it takes the place of the oldest.
    let (status, _) = gw.http_get("/health");
    assert_eq!(status, 200);
    assert!(eventually(|| gw
        .metric("gateway_handshakes_shed_total")
        .is_some_and(|n| n >= 3.0)));
    // Upgraded connections are not counted.
    let mut client = Client::authed(&gw, TOKEN);
    served(&mut client);
    drop((pending, fifth, sixth, refused));
    assert!(eventually(
        || gw.metric("gateway_handshakes_pending") == Some(1.0) // the /metrics request itself
    ));
    served(&mut bystander);
}

#[test]
fn a_flood_of_idle_sockets_does_not_shut_out_health_nor_clients() {
    let mut config = test_config();
    config.max_pending_handshakes = 32;
    // Longer than the test: only the bound can close the flood's sockets.
    config.handshake_timeout_ms = 60_000;
    let gw = TestGateway::start(config);
    let mut bystander = Client::authed(&gw, TOKEN);
    // 200 sockets that send nothing, held open until the end.
    let flood: Vec<TcpStream> = (0..200)
        .map(|_| TcpStream::connect(gw.addr).unwrap())
        .collect();
    assert!(eventually(|| gw
        .metric("gateway_handshakes_shed_total")
        .is_some_and(|n| n >= 168.0)));
    // /health answers, and a WebSocket client upgrades and authenticates.
    assert!(eventually(|| gw.http_get("/health").0 == 200));
    let mut authed = None;
    assert!(eventually(|| {
        let Ok(ws) = open_ws(&gw.url(), None) else {
            return false;
        };
        let mut client = Client {
            ws,
            client_id: String::new(),
            welcome: Value::Null,
        };
        let welcome = client.recv();
        assert_eq!(welcome["payload"]["status"], "connected", "{welcome}");
        let reply = client.request("auth", json!({ "token": TOKEN }));
        assert_eq!(reply["type"], "auth_success", "{reply}");
        authed = Some(client);
        true
    }));
    served(authed.as_mut().unwrap());
    let pending = gw.metric("gateway_handshakes_pending").unwrap();
    assert!(pending <= 32.0, "{pending}");
    served(&mut bystander);
    drop(flood);
}

#[test]
fn bytes_in_flight_are_bounded_as_they_arrive_and_given_back() {
    let mut config = test_config();
    config.max_inflight_bytes = 100_000;
    let gw = TestGateway::start(config);
    let mut bystander = Client::authed(&gw, TOKEN);
    let inflight = || gw.metric("gateway_inflight_bytes");
    let cut = 8 + 100; // 2 + 2 length + 4 mask bytes of header, and 100 payload bytes

    // Headers announcing more than the bound between them reserve nothing: each connection
    // holds the 100 bytes it sent.
    let mut a = raw_authed(&gw);
    let a_frame = frame(1, true, &ping_of("a", 60_000), true);
    a.send(&a_frame[..cut]);
    let mut b = raw_authed(&gw);
    let b_frame = frame(1, true, &ping_of("b", 50_000), true);
    b.send(&b_frame[..cut]);
    assert!(eventually(|| inflight() == Some(200.0)), "{:?}", inflight());
    served(&mut bystander);
    // A's message arrives: it is handled and its bytes are given back.
    a.send(&a_frame[cut..]);
    assert_eq!(a.read_json().expect("pong")["replyTo"], "a");
    assert!(eventually(|| inflight() == Some(100.0)), "{:?}", inflight());
    // C holds 60 000 bytes; B's bytes would then pass the bound: B is closed, C and the
    // bystander are not.
    let mut c = raw_authed(&gw);
    let c_frame = frame(1, true, &ping_of("c", 60_000), true);
    c.send(&c_frame[..c_frame.len() - 100]);
    assert!(
        eventually(|| inflight().is_some_and(|n| n >= 60_000.0)),
        "{:?}",
        inflight()
    );
    b.send(&b_frame[cut..]);
    assert_eq!(b.read_close(), Some((1008, "Server busy".to_string())));
    served(&mut bystander);
    c.send(&c_frame[c_frame.len() - 100..]);
    assert_eq!(c.read_json().expect("pong")["replyTo"], "c");
    assert!(eventually(|| inflight() == Some(0.0)), "{:?}", inflight());
    // Fragments count what is held so far; a connection that goes away mid-message gives
    // its bytes back.
    let mut d = raw_authed(&gw);
    let text = ping_of("d", 90_000);
    d.send(&frame(1, false, &text[..45_000], true));
    assert!(
        eventually(|| inflight().is_some_and(|n| n >= 45_000.0)),
        "{:?}",
        inflight()
    );
    d.send(&frame(0, true, &text[45_000..], true));
    assert_eq!(d.read_json().expect("pong")["replyTo"], "d");
    assert!(eventually(|| inflight() == Some(0.0)), "{:?}", inflight());
    let mut e = raw_authed(&gw);
    e.send(&a_frame[..cut]);
    assert!(eventually(|| inflight() == Some(100.0)), "{:?}", inflight());
    drop(e);
    assert!(eventually(|| inflight() == Some(0.0)), "{:?}", inflight());
    served(&mut bystander);
}

/// Connections that have not authenticated hold at most a quarter of `max_inflight_bytes`
/// between them: holders of unfinished messages before auth are refused with 1008 past it,
/// and an authenticated client's large message arriving in two reads is still served.
#[test]
fn unauthenticated_holders_cannot_take_the_room_of_an_authenticated_message() {
    let mut config = test_config();
    config.max_inflight_bytes = 400_000; // a reserve of 100 000 bytes before auth
    let gw = TestGateway::start(config);
    let mut bystander = Client::authed(&gw, TOKEN);
    let inflight = || gw.metric("gateway_inflight_bytes").unwrap_or(-1.0);
    let held = ping_of("h", 60_000);
    let piece = frame(1, false, &held[..20_000], true);
    // Each holder sends 20 000 bytes of an unfinished message and a Ping behind it: a Pong
    // says it holds them, a close frame that it was refused.
    let mut holders = Vec::new();
    let mut refused = None;
    for _ in 0..30 {
        let mut raw = RawWs::open(&gw);
        let mut bytes = piece.clone();
        bytes.extend(frame(9, true, b"held", true));
        raw.send(&bytes);
        match raw.read_frame() {
            Some((_, 10, payload)) if payload == b"held" => holders.push(raw),
            Some((_, 8, payload)) => {
                refused = Some((u16::from_be_bytes([payload[0], payload[1]]), payload));
                break;
            }
            other => panic!("{other:?}"),
        }
    }
    let (code, payload) = refused.expect("a holder past the reserve is refused");
    assert_eq!(code, 1008);
    assert_eq!(&payload[2..], b"Server busy");
    assert!(
        (1..=5).contains(&holders.len()),
        "{} holders of 20 000 bytes in a reserve of 100 000",
        holders.len()
    );
    let before = inflight();
    assert!(before <= 100_000.0, "{before}");
    let preauth = gw.metric("gateway_preauth_inflight_bytes");
    assert_eq!(preauth, Some(before), "all of it held before auth");
    served(&mut bystander);

    // 300 000 bytes arrive in two reads: the first half is held beside the holders'.
    let mut authed = raw_authed(&gw);
    let big = frame(1, true, &ping_of("big", 300_000), true);
    authed.send(&big[..150_000]);
    assert!(
        eventually(|| inflight() >= before + 100_000.0),
        "{}",
        inflight()
    );
    authed.send(&big[150_000..]);
    assert_eq!(authed.read_json().expect("pong")["replyTo"], "big");
    // Holders that go away give their room back: a new one holds again.
    drop(holders);
    assert!(eventually(|| inflight() == 0.0), "{}", inflight());
    let mut raw = RawWs::open(&gw);
    raw.send(&[piece, frame(9, true, b"held", true)].concat());
    assert_eq!(raw.read_frame().map(|(_, opcode, _)| opcode), Some(10));
    served(&mut bystander);
}

#[test]
fn a_message_not_complete_within_message_timeout_closes_1008() {
    let mut config = test_config();
    config.message_timeout_ms = 500;
    let gw = TestGateway::start(config);
    let mut bystander = Client::authed(&gw, TOKEN);

    // A message that stops half way.
    let mut stalled = raw_authed(&gw);
    let started = Instant::now();
    stalled.send(&frame(1, false, b"{\"type\":", true));
    // Fragments that keep coming, each in time, the whole too late: counted from the first.
    let mut trickle = raw_authed(&gw);
    trickle.send(&frame(1, false, b"{", true));
    // Messages split across writes but each complete within the timeout: never closed.
    let mut steady = raw_authed(&gw);
    for i in 0..8 {
        let ping = frame(1, true, &ping_of(&format!("s{i}"), 200), true);
        steady.send(&ping[..50]);
        std::thread::sleep(Duration::from_millis(150));
        steady.send(&ping[50..]);
        assert_eq!(
            steady.read_json().expect("pong")["replyTo"],
            format!("s{i}").as_str()
        );
        if i < 5 {
            // Closed at 500 ms, it may refuse the last of these.
            let _ = std::io::Write::write_all(&mut trickle.stream, &frame(0, false, b" ", true));
        }
    }
    assert!(started.elapsed() > Duration::from_millis(1200));
    assert_eq!(
        stalled.read_close(),
        Some((1008, "Message timeout".to_string()))
    );
    assert_eq!(
        trickle.read_close(),
        Some((1008, "Message timeout".to_string()))
    );
    served(&mut bystander);
}

#[test]
fn a_message_timeout_is_not_early() {
    let mut config = test_config();
    config.message_timeout_ms = 400;
    let gw = TestGateway::start(config);
    let mut raw = raw_authed(&gw);
    let started = Instant::now();
    raw.send(&frame(1, false, b"{", true));
    assert_eq!(raw.read_close().map(|(code, _)| code), Some(1008));
    let took = started.elapsed();
    assert!(took >= Duration::from_millis(400), "{took:?}");
    assert!(took < Duration::from_secs(3), "{took:?}");
}

/// A message of a type nobody handles, `len` bytes long.
fn mystery_of(id: &str, len: usize) -> String {
    let head = format!(r#"{{"type":"mystery","id":"{id}","payload":{{"pad":""#);
    let tail = r#""}}"#;
    let mut text = head;
    text.push_str(&"y".repeat(len - text.len() - tail.len()));
    text.push_str(tail);
    text
}

#[test]
fn a_gateway_under_run_keeps_no_events() {
    // The binary is a gateway under `run()` with no host reading events; its memory is its
    // own (in this process it would share its RSS with the tests running beside it).
    let gw = Binary::start(&[
        "--config",
        "/dev/null",
        "--set",
        "port=0",
        "--set",
        &format!("auth_tokens=alice:{TOKEN},bob:{TOKEN_BOB}"),
    ]);
    let (url, addr) = (gw.url.clone(), gw.addr);
    let rss = || rss_kib(gw.pid());
    let metric = |series: &str| {
        let (_, body) = split_response(&raw_http(
            addr,
            b"GET /metrics HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
        ));
        body.lines()
            .find_map(|l| l.strip_prefix(series)?.trim().parse::<f64>().ok())
    };
    let authed = |token: &str| {
        let mut client = Client::connect_url(&url);
        let reply = client.request("auth", json!({ "token": token }));
        assert_eq!(reply["type"], "auth_success", "{reply}");
        client
    };
    let mut client = authed(TOKEN);
    let mut bystander = authed(TOKEN_BOB);
    client.send_text(&mystery_of("warm", 900_000));
    assert_error(&client.recv(), "UNKNOWN_TYPE");
    let before = rss();
    // 64 unhandled messages of 900 kB: kept as events, they would be 57 MB.
    for i in 0..64 {
        client.send_text(&mystery_of(&format!("m{i}"), 900_000));
        assert_error(&client.recv(), "UNKNOWN_TYPE");
    }
    let grown = rss().saturating_sub(before);
    let (queued, dropped) = (
        metric("gateway_events_queued_bytes"),
        metric("gateway_events_dropped_total"),
    );
    served(&mut bystander);
    assert!(grown < 24 * 1024, "RSS grew by {grown} KiB");
    assert_eq!(queued, Some(0.0));
    assert_eq!(dropped, Some(0.0));
}

#[test]
fn the_event_queue_is_bounded_in_bytes_and_an_event_holds_the_message_as_it_arrived() {
    let mut config = test_config();
    config.port = 0;
    let mut gw = Gateway::bind(config).expect("bind");
    let addr = gw.local_addr();
    let url = gw.url();
    let sent: Vec<String> = (0..10)
        .map(|i| mystery_of(&format!("m{i}"), 900_000))
        .collect();
    let to_send = sent.clone();
    let client = std::thread::spawn(move || {
        let mut client = Client::connect_url(&url);
        let reply = client.request("auth", json!({ "token": TOKEN }));
        assert_eq!(reply["type"], "auth_success");
        for text in &to_send {
            client.send_text(text);
            assert_error(&client.recv(), "UNKNOWN_TYPE");
        }
        served(&mut client);
        let metrics = raw_http(addr, b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n");
        let metric = |name: &str| -> f64 {
            metrics
                .lines()
                .find_map(|l| l.strip_prefix(name)?.strip_prefix(' ')?.trim().parse().ok())
                .unwrap_or_else(|| panic!("{name} in {metrics}"))
        };
        (
            metric("gateway_events_queued_bytes"),
            metric("gateway_events_dropped_total"),
        )
    });
    // Poll without reading events until the client is done.
    while !client.is_finished() {
        gw.poll(Some(Duration::from_millis(5))).expect("poll");
    }
    let (queued, dropped) = client.join().expect("client");
    assert!(queued <= EVENT_QUEUE_BYTES as f64, "{queued}");
    assert!(
        dropped >= 6.0,
        "4 MiB holds at most 4 of the 10: {dropped} dropped"
    );
    let mut kept = Vec::new();
    while let Some(event) = gw.next_event() {
        if let Event::UnhandledMessage { message, .. } = event {
            kept.push(message);
        }
    }
    assert!(!kept.is_empty() && kept.len() <= 4, "{}", kept.len());
    for message in &kept {
        assert!(sent.contains(message), "the text as sent");
        let parsed: Value = serde_json::from_str(message).expect("JSON");
        assert_eq!(parsed["type"], "mystery");
    }
}

/// The soft and hard "Max open files" of a process.
fn open_file_limits(pid: u32) -> (String, String) {
    let limits = std::fs::read_to_string(format!("/proc/{pid}/limits")).expect("limits");
    let line = limits
        .lines()
        .find(|l| l.starts_with("Max open files"))
        .expect("Max open files");
    let mut fields = line["Max open files".len()..].split_whitespace();
    (
        fields.next().unwrap_or_default().to_string(),
        fields.next().unwrap_or_default().to_string(),
    )
}

#[test]
fn the_binary_raises_its_soft_open_file_limit_to_the_hard_one_and_logs_it() {
    let conf = concat!(env!("CARGO_MANIFEST_DIR"), "/gateway.conf");
    let mut gw = Binary::start_after(
        "ulimit -S -n 256",
        &[
            "--config",
            conf,
            "--set",
            "port=0",
            "--set",
            "log_level=info",
        ],
    );
    let log = gw.log();
    let logged = log.lines().find(|line| line.contains("open-file limit:"));
    let (soft, hard) = open_file_limits(gw.pid());
    drop(gw);
    assert_eq!(soft, hard);
    let logged = logged.expect("the open-file limit is logged");
    assert!(logged.contains("(was 256"), "{logged}");
    assert!(
        logged.contains(&format!("open-file limit: {soft}")),
        "{logged}"
    );
}

#[test]
fn check_warns_when_connections_and_handshakes_do_not_fit_in_the_limit() {
    let conf = concat!(env!("CARGO_MANIFEST_DIR"), "/gateway.conf");
    let run = |max_connections: &str| {
        let child = shell_command(
            "ulimit -n 512",
            &[
                "--config",
                conf,
                "--check",
                "--set",
                &format!("max_connections={max_connections}"),
                "--set",
                "max_pending_handshakes=100",
            ],
        )
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn gateway");
        let out = child.wait_with_output().expect("gateway --check");
        assert!(out.status.success());
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert!(
            stdout.starts_with("configuration OK\nmemory bound: "),
            "{stdout}"
        );
        String::from_utf8_lossy(&out.stderr).into_owned()
    };
    let warning = run("1000");
    assert!(
        warning.contains(
            "max_connections (1000) + max_pending_handshakes (100) + 32 reserved descriptors = 1132 do not fit in the open-file limit of 512"
        ),
        "{warning}"
    );
    assert_eq!(run("380"), "", "380 + 100 + 32 = 512 fits");
}

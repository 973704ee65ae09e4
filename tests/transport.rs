//! The transport over real sockets: PROTOCOL section 1 (the upgrade table, /health,
//! /metrics), framing, close codes of section 8, heartbeats and shutdown.

mod common;

use std::time::{Duration, Instant};

use common::*;
use serde_json::{json, Value};

fn refusal(gw: &TestGateway, request: &str) -> (u16, String, String) {
    let response = raw_http(gw.addr, request.as_bytes());
    let (status, body) = split_response(&response);
    (status, body, response)
}

#[test]
fn upgrade_refusals_follow_the_table() {
    let gw = TestGateway::start(test_config());
    let key = "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n";

    // 431: head larger than max_header_bytes.
    let big = format!(
        "GET /ws HTTP/1.1\r\nHost: x\r\nX-Fill: {}\r\n\r\n",
        "a".repeat(9000)
    );
    let (status, _, response) = refusal(&gw, &big);
    assert_eq!(status, 431, "{response}");
    assert!(response.to_ascii_lowercase().contains("connection: close"));

    // 400: not HTTP/1.1, or not parseable.
    let (status, _, _) = refusal(&gw, "GET /ws HTTP/1.0\r\nHost: x\r\n\r\n");
    assert_eq!(status, 400);
    let (status, _, _) = refusal(&gw, "\x01\x02 garbage\r\n\r\n");
    assert_eq!(status, 400);

    // 405: another method.
    let (status, _, _) = refusal(&gw, &upgrade_request("/ws", "").replacen("GET", "POST", 1));
    assert_eq!(status, 405);

    // 404: another path, with or without upgrade headers.
    let (status, _, _) = refusal(&gw, &upgrade_request("/other", ""));
    assert_eq!(status, 404);
    let (status, _, _) = refusal(&gw, "GET /nothing-here HTTP/1.1\r\nHost: x\r\n\r\n");
    assert_eq!(status, 404);

    // 426: version missing or not 13, with the version header.
    let (status, _, response) = refusal(
        &gw,
        &upgrade_request("/ws", "")
            .replace("Sec-WebSocket-Version: 13", "Sec-WebSocket-Version: 8"),
    );
    assert_eq!(status, 426);
    assert!(response.contains("Sec-WebSocket-Version: 13"), "{response}");
    let (status, _, _) = refusal(
        &gw,
        &format!(
            "GET /ws HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n{key}\r\n"
        ),
    );
    assert_eq!(status, 426);

    // 400: missing Upgrade, Connection without the upgrade token, bad key.
    let (status, _, _) = refusal(
        &gw,
        &upgrade_request("/ws", "").replace("Upgrade: websocket\r\n", ""),
    );
    assert_eq!(status, 400);
    let (status, _, _) = refusal(
        &gw,
        &upgrade_request("/ws", "").replace("Connection: Upgrade", "Connection: keep-alive"),
    );
    assert_eq!(status, 400);
    let (status, _, _) = refusal(
        &gw,
        &upgrade_request("/ws", "").replace("dGhlIHNhbXBsZSBub25jZQ==", "c2hvcnQ="),
    );
    assert_eq!(status, 400);

    // A token list in any case is fine.
    let ok = upgrade_request("/ws?x=1", "")
        .replace("Connection: Upgrade", "Connection: keep-alive, UPGRADE");
    let mut raw = RawWs::connect_raw(gw.addr, ok.as_bytes());
    let head = raw.read_head();
    assert!(head.starts_with("HTTP/1.1 101"), "{head}");
    assert!(
        head.contains("Sec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo="),
        "{head}"
    );
}

#[test]
fn origins_are_checked() {
    let gw = TestGateway::start(test_config());
    for origin in [
        "http://localhost:8080.evil.com",
        "http://localhost.evil.com:3000",
        "https://localhost",
        "http://evil.com",
    ] {
        let (status, body, _) = refusal(
            &gw,
            &upgrade_request("/ws", &format!("Origin: {origin}\r\n")),
        );
        assert_eq!(status, 403, "{origin}");
        assert!(body.contains("Origin not allowed"), "{body}");
    }
    assert!(open_ws(&gw.url(), Some("http://localhost:3000")).is_ok());
    assert!(open_ws(&gw.url(), Some("http://127.0.0.1:5173")).is_ok());
    // An https page on localhost too (PROTOCOL section 14).
    assert!(open_ws(&gw.url(), Some("https://localhost:3000")).is_ok());
    assert!(open_ws(&gw.url(), Some("https://127.0.0.1:8443")).is_ok());
    assert!(
        open_ws(&gw.url(), None).is_ok(),
        "no Origin: a program, allowed"
    );

    let mut config = test_config();
    config.require_origin = true;
    let strict = TestGateway::start(config);
    let (status, body, _) = refusal(&strict, &upgrade_request("/ws", ""));
    assert_eq!(status, 403);
    assert!(body.contains("Origin not allowed"));
}

#[test]
fn max_connections_refuses_with_503_and_frees_the_slot() {
    let mut config = test_config();
    config.max_connections = 1;
    let gw = TestGateway::start(config);
    let first = Client::connect(&gw);
    let (status, _, _) = refusal(&gw, &upgrade_request("/ws", ""));
    assert_eq!(status, 503);
    drop(first);
    assert!(
        eventually(|| open_ws(&gw.url(), None).is_ok()),
        "a slot frees up when a client leaves"
    );
}

#[test]
fn handshake_timeout_closes_without_response() {
    let mut config = test_config();
    config.handshake_timeout_ms = 200;
    let gw = TestGateway::start(config);
    let started = Instant::now();
    let mut raw = RawWs::connect_raw(gw.addr, b"GET /ws HTTP/1.1\r\nHost: x\r\n");
    assert!(raw.sees_eof(), "socket closed at the deadline");
    assert!(started.elapsed() >= Duration::from_millis(190));
    assert!(raw.read_head().is_empty(), "no response is sent");
}

#[test]
fn health_and_metrics() {
    let gw = TestGateway::start(test_config());
    let _client = Client::authed(&gw, TOKEN);
    let health = gw.health();
    assert_eq!(health["status"], "ok");
    assert_eq!(health["service"], "gateway");
    for field in ["timestamp", "uptime", "clients", "sessions", "agents"] {
        assert!(health[field].is_u64(), "{field} in {health}");
    }
    assert_eq!(health["clients"], 1);

    let (status, body) = gw.http_get("/metrics");
    assert_eq!(status, 200);
    assert!(body.contains("# HELP"), "{body}");
    assert!(body.contains("# TYPE"), "{body}");
    for line in body
        .lines()
        .filter(|l| !l.starts_with('#') && !l.is_empty())
    {
        assert!(line.starts_with("gateway_"), "{line}");
    }

    let mut config = test_config();
    config.http_endpoints = false;
    let off = TestGateway::start(config);
    assert_eq!(off.http_get("/health").0, 404);
    assert_eq!(off.http_get("/metrics").0, 404);
}

#[test]
fn first_frame_pipelined_behind_the_upgrade() {
    let gw = TestGateway::start(test_config());
    let ping = json!({"type": "ping", "id": "p-1"}).to_string();
    let mut raw = RawWs::open_with(&gw, &frame(1, true, ping.as_bytes(), true));
    let pong = raw.read_json().expect("pong");
    assert_eq!(pong["type"], "pong");
    assert_eq!(pong["replyTo"], "p-1");
}

#[test]
fn fragmented_message_with_control_frames_between() {
    let gw = TestGateway::start(test_config());
    let mut raw = RawWs::open(&gw);
    let text = json!({"type": "ping", "id": "frag-1"}).to_string();
    let (a, b) = text.as_bytes().split_at(7);
    let (b, c) = b.split_at(5);
    let mut bytes = frame(1, false, a, true);
    bytes.extend(frame(9, true, b"hi", true)); // ping between fragments
    bytes.extend(frame(0, false, b, true));
    bytes.extend(frame(0, true, c, true));
    // Send it a byte at a time, to exercise partial frames.
    for byte in bytes {
        raw.send(&[byte]);
    }
    let (_, opcode, payload) = raw.read_frame().expect("pong frame");
    assert_eq!((opcode, payload.as_slice()), (10, &b"hi"[..]));
    let reply = raw.read_json().expect("reply");
    assert_eq!(reply["replyTo"], "frag-1");
}

#[test]
fn binary_frames_carry_json_too() {
    let gw = TestGateway::start(test_config());
    let mut raw = RawWs::open(&gw);
    raw.send(&frame(2, true, br#"{"type":"ping","id":"b-1"}"#, true));
    assert_eq!(raw.read_json().unwrap()["replyTo"], "b-1");
    raw.send(&frame(2, true, b"\xff\xfe not utf8", true));
    let error = raw.read_json().unwrap();
    assert_eq!(error["payload"]["code"], "PARSE_ERROR");
}

#[test]
fn invalid_utf8_text_closes_1007() {
    let gw = TestGateway::start(test_config());
    let mut raw = RawWs::open(&gw);
    raw.send(&frame(
        1,
        true,
        b"\xce\xba\xe1\xbd\xb9\xcf\x83\xce\xbc\xce\xb5\xed\xa0\x80",
        true,
    ));
    assert_eq!(raw.read_close().map(|c| c.0), Some(1007));
    assert!(raw.sees_eof());
}

#[test]
fn unmasked_frame_closes_1002() {
    let gw = TestGateway::start(test_config());
    let mut raw = RawWs::open(&gw);
    raw.send(&frame(1, true, br#"{"type":"ping","id":"u"}"#, false));
    assert_eq!(raw.read_close().map(|c| c.0), Some(1002));
}

/// A masked text frame of `payload` whose length is sent in 16 bits (`wide` false) or 64 bits
/// (`wide` true) as `len`, whatever the payload's real length.
fn frame_with_long_length(payload: &[u8], wide: bool, len: u64) -> Vec<u8> {
    let mut out = vec![0x81];
    if wide {
        out.push(0x80 | 127);
        out.extend_from_slice(&len.to_be_bytes());
    } else {
        out.push(0x80 | 126);
        out.extend_from_slice(&(len as u16).to_be_bytes());
    }
    let key = [0x37, 0xfa, 0x21, 0x3d];
    out.extend_from_slice(&key);
    out.extend(payload.iter().enumerate().map(|(i, b)| b ^ key[i % 4]));
    out
}

#[test]
fn a_length_not_in_its_shortest_encoding_closes_1002_and_others_are_served() {
    let gw = TestGateway::start(test_config());
    let mut bystander = Client::authed(&gw, TOKEN);
    let ping = br#"{"type":"ping","id":"long"}"#;
    let n = ping.len() as u64;
    let cases = [
        (
            "16-bit length of a short frame",
            frame_with_long_length(ping, false, n),
        ),
        (
            "64-bit length of a short frame",
            frame_with_long_length(ping, true, n),
        ),
        (
            "64-bit length with its top bit set",
            frame_with_long_length(ping, true, n | 1 << 63),
        ),
    ];
    for (name, bytes) in cases {
        let mut raw = RawWs::open(&gw);
        raw.send(&bytes);
        // The first frame back is the close: the ping inside was not handled.
        let (_, opcode, payload) = raw.read_frame().expect(name);
        assert_eq!(opcode, 8, "{name}: {payload:?}");
        assert_eq!(u16::from_be_bytes([payload[0], payload[1]]), 1002, "{name}");
        assert!(raw.sees_eof(), "{name}");
        assert_eq!(
            bystander.request("ping", json!({}))["type"],
            "pong",
            "{name}"
        );
    }
    // The same ping in its shortest encoding is answered.
    let mut raw = RawWs::open(&gw);
    raw.send(&frame(1, true, ping, true));
    assert_eq!(raw.read_json().expect("reply")["replyTo"], "long");
    assert!(eventually(|| gw.health()["clients"] == 2));
}

#[test]
fn frame_over_max_payload_closes_1009_and_too_large_message_is_an_error() {
    let mut config = test_config();
    config.max_payload = 64 * 1024;
    config.max_message_size = 1500;
    let gw = TestGateway::start(config);

    let mut raw = RawWs::open(&gw);
    let big = format!(
        r#"{{"type":"ping","id":"big","pad":"{}"}}"#,
        "x".repeat(2000)
    );
    raw.send(&frame(1, true, big.as_bytes(), true));
    let error = raw.read_json().unwrap();
    assert_eq!(error["payload"]["code"], "MESSAGE_TOO_LARGE");
    raw.send(&frame(1, true, br#"{"type":"ping","id":"after"}"#, true));
    assert_eq!(
        raw.read_json().unwrap()["replyTo"],
        "after",
        "connection kept"
    );

    // A header announcing 2^63 bytes: refused before anything is allocated.
    let mut huge = vec![0x81, 0xff];
    huge.extend_from_slice(&(1u64 << 62).to_be_bytes());
    huge.extend_from_slice(&[1, 2, 3, 4]);
    raw.send(&huge);
    assert_eq!(raw.read_close().map(|c| c.0), Some(1009));
}

#[test]
fn peer_close_is_echoed_and_the_socket_closed() {
    let gw = TestGateway::start(test_config());
    let mut raw = RawWs::open(&gw);
    let mut payload = 1000u16.to_be_bytes().to_vec();
    payload.extend_from_slice(b"bye");
    raw.send(&frame(8, true, &payload, true));
    assert_eq!(raw.read_close().map(|c| c.0), Some(1000));
    assert!(raw.sees_eof());
    assert!(eventually(|| gw.health()["clients"] == 0));
}

#[test]
fn heartbeat_pings_and_idle_timeout() {
    let mut config = test_config();
    config.heartbeat_interval_ms = 100;
    config.client_timeout_ms = 400;
    let gw = TestGateway::start(config);

    // A raw client that never answers: pings arrive, then the idle close.
    let mut raw = RawWs::open(&gw);
    let started = Instant::now();
    let mut pings = 0;
    let close = loop {
        let (_, opcode, payload) = raw.read_frame().expect("frame");
        match opcode {
            9 => pings += 1,
            8 => {
                break (
                    u16::from_be_bytes([payload[0], payload[1]]),
                    payload[2..].to_vec(),
                )
            }
            other => panic!("unexpected opcode {other}"),
        }
    };
    assert!(pings >= 2, "pings before the timeout: {pings}");
    assert_eq!(close.0, 1001);
    assert_eq!(close.1, b"Connection timeout");
    assert!(started.elapsed() >= Duration::from_millis(390));

    // A client that answers pings (tungstenite does) stays connected past the timeout.
    let mut live = Client::connect(&gw);
    let until = Instant::now() + Duration::from_millis(900);
    while Instant::now() < until {
        live.expect_silence(Duration::from_millis(100));
    }
    let reply = live.request("ping", json!({}));
    assert_eq!(reply["type"], "pong");
}

#[test]
fn shutdown_closes_everyone_with_1001() {
    let mut config = test_config();
    config.close_timeout_ms = 1000;
    let mut gw = TestGateway::start(config);
    let mut a = Client::authed(&gw, TOKEN);
    let mut raw = RawWs::open(&gw); // does not answer the close
    let took = gw.stop();
    let frame = a.expect_close().expect("close frame");
    assert_eq!(u16::from(frame.code), 1001);
    assert_eq!(frame.reason.as_str(), "Server shutting down");
    assert_eq!(
        raw.read_close(),
        Some((1001, "Server shutting down".to_string()))
    );
    assert!(
        took < Duration::from_millis(1900),
        "run returned after {took:?}"
    );
}

#[test]
fn large_messages_survive_partial_writes() {
    let gw = TestGateway::start(test_config());
    let mut a = Client::authed(&gw, TOKEN);
    let mut b = Client::authed(&gw, TOKEN_BOB);
    let created = a.request("session_create", json!({"sessionId": "big"}));
    assert_eq!(created["payload"]["status"], "created");
    b.request("session_join", json!({"sessionId": "big"}));
    let joined = a.recv();
    assert_eq!(joined["type"], "presence");
    let blob = "y".repeat(900 * 1024);
    for i in 0..3 {
        a.send(&json!({"type": "chat", "id": format!("c{i}"), "sessionId": "big", "payload": {"text": blob, "i": i}}));
    }
    for i in 0..3 {
        let got: Value = b.recv();
        assert_eq!(got["type"], "chat");
        assert_eq!(got["payload"]["i"], i);
        assert_eq!(
            got["payload"]["text"].as_str().map(str::len),
            Some(blob.len())
        );
    }
}

#[test]
fn a_burst_of_connections_waits_in_the_listen_backlog_while_the_loop_is_busy() {
    // 300 clients connect at once while the loop is not running (busy elsewhere): the kernel
    // must complete every TCP handshake and queue it for `accept`. With the 128 that mio and
    // std listen with, the rest would have their SYNs dropped and wait a second or more.
    const BURST: usize = 300;
    let somaxconn: usize = std::fs::read_to_string("/proc/sys/net/core/somaxconn")
        .ok()
        .and_then(|s| s.trim().parse().ok())
        .unwrap_or(4096);
    if somaxconn < BURST {
        eprintln!("net.core.somaxconn is {somaxconn}: the kernel caps the backlog below {BURST}");
        return;
    }
    let gw = gateway::Gateway::bind(test_config()).expect("bind");
    let addr = gw.local_addr();
    let started = Instant::now();
    let mut sockets = Vec::new();
    for i in 0..BURST {
        let s = std::net::TcpStream::connect_timeout(&addr, Duration::from_millis(900))
            .unwrap_or_else(|e| panic!("connection {i} of {BURST} not queued: {e}"));
        sockets.push(s);
    }
    assert!(
        started.elapsed() < Duration::from_millis(900),
        "connecting took {:?}",
        started.elapsed()
    );
    // Once the loop runs, the queued connections are served: the last one upgrades.
    let gw = TestGateway::run(gw, "/ws".into());
    let mut last = sockets.pop().unwrap();
    last.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    use std::io::{Read, Write};
    last.write_all(upgrade_request("/ws", "").as_bytes())
        .unwrap();
    let mut head = [0u8; 12];
    last.read_exact(&mut head).unwrap();
    assert_eq!(&head, b"HTTP/1.1 101");
    drop(last); // closed by the client, so shutdown does not wait for its close frame
    drop(sockets);
    drop(gw);
}

//! Hostile and broken peers: malformed frames get the close code RFC 6455 names, resets and
//! half-closes in every state leave nothing behind, and none of it disturbs other clients.

mod common;

use std::io::{Read, Write};
use std::net::TcpStream;

use common::*;
use serde_json::json;

/// `setsockopt(level, name, value)` on `stream`, asserting that it succeeds.
#[cfg(target_os = "linux")]
fn set_option<T>(stream: &TcpStream, level: libc::c_int, name: libc::c_int, value: &T) {
    use std::os::fd::AsRawFd;
    // SAFETY: a valid descriptor, and a pointer to an initialised `T` with its size.
    let rc = unsafe {
        libc::setsockopt(
            stream.as_raw_fd(),
            level,
            name,
            (value as *const T).cast(),
            std::mem::size_of::<T>() as libc::socklen_t,
        )
    };
    assert_eq!(rc, 0, "setsockopt({level}, {name})");
}

/// Make dropping `stream` send a TCP reset instead of a FIN (SO_LINGER with timeout 0).
#[cfg(target_os = "linux")]
fn reset_on_drop(stream: &TcpStream) {
    let linger = libc::linger {
        l_onoff: 1,
        l_linger: 0,
    };
    set_option(stream, libc::SOL_SOCKET, libc::SO_LINGER, &linger);
}

fn close_code_for(gw: &TestGateway, bytes: &[u8]) -> Option<u16> {
    let mut raw = RawWs::open(gw);
    raw.send(bytes);
    raw.read_close().map(|c| c.0)
}

#[test]
fn malformed_frames_get_the_rfc_close_codes() {
    let gw = TestGateway::start(test_config());
    let mut bystander = Client::authed(&gw, TOKEN);

    // Reserved bits (no extension negotiated).
    let mut rsv = frame(1, true, b"{}", true);
    rsv[0] |= 0x40;
    assert_eq!(close_code_for(&gw, &rsv), Some(1002), "RSV1");
    // Reserved opcodes, data and control.
    assert_eq!(close_code_for(&gw, &frame(3, true, b"x", true)), Some(1002));
    assert_eq!(
        close_code_for(&gw, &frame(0xb, true, b"x", true)),
        Some(1002)
    );
    // Unmasked client frame.
    assert_eq!(
        close_code_for(&gw, &frame(1, true, b"{}", false)),
        Some(1002)
    );
    // Continuation without a start; a new message inside a fragmented one.
    assert_eq!(close_code_for(&gw, &frame(0, true, b"x", true)), Some(1002));
    let mut nested = frame(1, false, b"{", true);
    nested.extend(frame(1, true, b"}", true));
    assert_eq!(close_code_for(&gw, &nested), Some(1002));
    // Control frames: fragmented, or longer than 125 bytes.
    assert_eq!(
        close_code_for(&gw, &frame(9, false, b"x", true)),
        Some(1002)
    );
    assert_eq!(
        close_code_for(&gw, &frame(9, true, &[0u8; 126], true)),
        Some(1002)
    );
    // Close frames: one-byte payload, invalid codes, a 124-byte reason (126 bytes in all).
    assert_eq!(close_code_for(&gw, &frame(8, true, &[3], true)), Some(1002));
    for code in [0u16, 999, 1004, 1005, 1006, 1015, 2000, 5000, 65535] {
        let payload = code.to_be_bytes();
        assert_eq!(
            close_code_for(&gw, &frame(8, true, &payload, true)),
            Some(1002),
            "close code {code}"
        );
    }
    let mut long_reason = 1000u16.to_be_bytes().to_vec();
    long_reason.extend_from_slice(&[b'r'; 124]);
    assert_eq!(
        close_code_for(&gw, &frame(8, true, &long_reason, true)),
        Some(1002)
    );
    let mut bad_reason = 1000u16.to_be_bytes().to_vec();
    bad_reason.extend_from_slice(b"\xff\xfe");
    assert_eq!(
        close_code_for(&gw, &frame(8, true, &bad_reason, true)),
        Some(1007)
    );
    // Invalid UTF-8 split across fragments: é is C3 A9; C3 followed by 28 is invalid.
    let mut split = frame(1, false, b"{\"a\":\"\xc3", true);
    split.extend(frame(0, true, b"(\"}", true));
    assert_eq!(close_code_for(&gw, &split), Some(1007));
    // A valid sequence split across fragments is fine.
    let mut raw = RawWs::open(&gw);
    let mut ok = frame(1, false, b"{\"type\":\"ping\",\"id\":\"\xc3", true);
    ok.extend(frame(0, true, b"\xa9\"}", true));
    raw.send(&ok);
    assert_eq!(raw.read_json().unwrap()["replyTo"], "\u{e9}");
    drop(raw);
    // Length fields up to 2^63.
    for len in [1u64 << 40, (1u64 << 63) - 1, 1u64 << 63] {
        let mut huge = vec![0x81, 0xff];
        huge.extend_from_slice(&len.to_be_bytes());
        huge.extend_from_slice(&[1, 2, 3, 4]);
        let code = close_code_for(&gw, &huge);
        assert!(
            matches!(code, Some(1009) | Some(1002)),
            "length {len}: {code:?}"
        );
    }

    // None of it touched the bystander.
    let reply = bystander.request("ping", json!({}));
    assert_eq!(reply["type"], "pong");
    assert!(eventually(|| gw.health()["clients"] == 1));
}

#[test]
fn a_ping_flood_is_answered_in_order_and_others_are_served() {
    let gw = TestGateway::start(test_config());
    let mut bystander = Client::authed(&gw, TOKEN);
    let mut raw = RawWs::open(&gw);
    let mut flood = Vec::new();
    for i in 0..5000u32 {
        flood.extend(frame(9, true, &i.to_be_bytes(), true));
    }
    raw.send(&flood);
    assert_eq!(bystander.request("ping", json!({}))["type"], "pong");
    for i in 0..5000u32 {
        let (_, opcode, payload) = raw.read_frame().expect("pong");
        assert_eq!(opcode, 10);
        assert_eq!(payload, i.to_be_bytes(), "pong {i} in order");
    }
}

#[test]
fn header_flood_gets_431_and_the_gateway_stays_up() {
    let gw = TestGateway::start(test_config());
    let mut request = b"GET /ws HTTP/1.1\r\nHost: x\r\n".to_vec();
    for i in 0..200 {
        request.extend(format!("X-H{i}: v\r\n").as_bytes());
    }
    request.extend(b"\r\n");
    let (status, _) = split_response(&raw_http(gw.addr, &request));
    assert_eq!(status, 431);
    // An endless header with no end of head: refused once it passes the limit.
    let mut endless = TcpStream::connect(gw.addr).unwrap();
    endless.set_read_timeout(Some(WAIT)).unwrap();
    let _ = endless.write_all(b"GET /ws HTTP/1.1\r\nX: ");
    let chunk = [b'a'; 1024];
    for _ in 0..16 {
        if endless.write_all(&chunk).is_err() {
            break;
        }
    }
    let mut response = Vec::new();
    let _ = endless.read_to_end(&mut response);
    assert!(String::from_utf8_lossy(&response).starts_with("HTTP/1.1 431"));
    assert_eq!(
        Client::authed(&gw, TOKEN).request("ping", json!({}))["type"],
        "pong"
    );
}

#[cfg(target_os = "linux")]
#[test]
fn resets_and_half_closes_in_every_state_leave_nothing_behind() {
    let mut config = test_config();
    config.max_clients_per_session = 200;
    // Short timers, so that every timer of the churned connections comes due within the test.
    config.handshake_timeout_ms = 400;
    config.auth_timeout_ms = 400;
    config.heartbeat_interval_ms = 300;
    config.client_timeout_ms = 5000;
    config.close_timeout_ms = 200;
    config.message_timeout_ms = 400;
    let gw = TestGateway::start(config);
    let mut owner = Client::authed(&gw, TOKEN);
    owner.request("session_create", json!({"sessionId": "churn"}));
    let timers_before = settled_timers(&gw);

    // 10 000 connections in 25 waves.
    for wave in 0..25 {
        let mut doomed = Vec::new();
        for i in 0..400 {
            let stream = TcpStream::connect(gw.addr).unwrap();
            stream.set_read_timeout(Some(WAIT)).unwrap();
            let mut stream = stream;
            match i % 5 {
                // Mid-handshake.
                0 => {
                    let _ = stream.write_all(b"GET /ws HTTP/1.1\r\nHost: x\r\nUpgr");
                }
                // Open, authenticated, in a session, mid-frame.
                1 | 2 => {
                    let mut raw = RawWs::open_at(gw.addr, "/ws", &[]);
                    let auth =
                        json!({"type":"auth","id":"a","payload":{"token": TOKEN}}).to_string();
                    raw.send(&frame(1, true, auth.as_bytes(), true));
                    raw.read_json().expect("auth reply");
                    let join =
                        json!({"type":"session_join","id":"j","payload":{"sessionId":"churn"}})
                            .to_string();
                    raw.send(&frame(1, true, join.as_bytes(), true));
                    raw.read_json().expect("join reply");
                    let partial = frame(1, true, &[b'x'; 300], true);
                    raw.send(&partial[..100]);
                    stream = raw.stream;
                }
                // Refused upgrade, response unread.
                3 => {
                    let _ = stream.write_all(b"GET /nope HTTP/1.1\r\n\r\n");
                }
                // Plain connect and nothing at all.
                _ => {}
            }
            doomed.push((stream, i % 2 == 0));
        }
        for (stream, reset) in doomed {
            if reset {
                reset_on_drop(&stream);
                drop(stream);
            } else {
                let _ = stream.shutdown(std::net::Shutdown::Write);
                drop(stream);
            }
        }
        // Presence `left` for every member that went away.
        let mut left = 0;
        while left < 160 {
            let msg = owner.recv();
            if msg["type"] == "presence" && msg["payload"]["status"] == "left" {
                left += 1;
            }
        }
        assert!(
            eventually(|| gw.metric("gateway_sockets_open") == Some(2.0)),
            "wave {wave}: sockets left behind: {:?}",
            gw.metric("gateway_sockets_open")
        );
    }
    let health = gw.health();
    assert_eq!(health["clients"], 1, "{health}");
    assert_eq!(health["sessions"], 1, "{health}");
    assert_eq!(owner.request("ping", json!({}))["type"], "pong");
    // Lazily cancelled timers of the 10 000 connections have all come due and gone.
    let timers_after = settled_timers(&gw);
    assert!(
        timers_after <= timers_before + 2.0,
        "timers pending: {timers_before} before the churn, {timers_after} after"
    );
}

/// `gateway_timers_pending` once it stops falling, read at a pace that adds at most a couple
/// of entries (each HTTP request leaves a linger entry for `close_timeout_ms`).
fn settled_timers(gw: &TestGateway) -> f64 {
    let deadline = std::time::Instant::now() + WAIT;
    let mut last = f64::MAX;
    loop {
        let now = gw.metric("gateway_timers_pending").expect("timers gauge");
        if now >= last || std::time::Instant::now() > deadline {
            return now;
        }
        last = now;
        std::thread::sleep(std::time::Duration::from_millis(500));
    }
}

/// Send `before`, one urgent (out-of-band) byte, then `after`, corked into one segment, so that
/// everything has arrived before the gateway's first read.
#[cfg(target_os = "linux")]
fn send_around_urgent_byte(stream: &TcpStream, before: &[u8], after: &[u8]) {
    use std::os::fd::AsRawFd;
    let fd = stream.as_raw_fd();
    let cork = |on: libc::c_int| set_option(stream, libc::IPPROTO_TCP, libc::TCP_CORK, &on);
    let mut urgent = before.to_vec();
    urgent.push(b'!'); // with MSG_OOB the last byte is the urgent one, out of band
    cork(1);
    // SAFETY: valid buffers with their lengths, on a valid descriptor.
    unsafe {
        let sent = libc::send(fd, urgent.as_ptr().cast(), urgent.len(), libc::MSG_OOB);
        assert_eq!(sent, urgent.len() as isize, "send with MSG_OOB");
        let sent = libc::send(fd, after.as_ptr().cast(), after.len(), 0);
        assert_eq!(sent, after.len() as isize, "send");
    }
    cork(0);
}

#[cfg(target_os = "linux")]
#[test]
fn urgent_data_does_not_strand_the_bytes_behind_it() {
    // A read stops at TCP's urgent mark while more is already queued: the gateway must not
    // take that short read for a drained socket (it would wait for an edge that never comes).
    let gw = TestGateway::start(test_config());
    for attempt in 0..3 {
        // In the upgrade request.
        let mut stream = TcpStream::connect(gw.addr).unwrap();
        stream
            .set_read_timeout(Some(std::time::Duration::from_secs(3)))
            .unwrap();
        let request = upgrade_request("/ws", "");
        let (before, after) = request.as_bytes().split_at(20);
        send_around_urgent_byte(&stream, before, after);
        let mut head = [0u8; 12];
        stream
            .read_exact(&mut head)
            .unwrap_or_else(|e| panic!("attempt {attempt}: no answer to the upgrade: {e}"));
        assert_eq!(&head, b"HTTP/1.1 101");

        // In a WebSocket frame: a Ping split by an urgent byte still gets its Pong.
        let mut raw = RawWs::open(&gw);
        let ping = frame(9, true, b"urgent", true);
        let (before, after) = ping.split_at(3);
        send_around_urgent_byte(&raw.stream, before, after);
        let (_, opcode, payload) = raw
            .read_frame()
            .unwrap_or_else(|| panic!("attempt {attempt}: no Pong"));
        assert_eq!((opcode, payload.as_slice()), (10, &b"urgent"[..]));
    }
}

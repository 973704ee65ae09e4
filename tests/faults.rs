//! Faults around the process: SIGTERM with output still queued, running out of file
//! descriptors, and the memory of slow readers (one closed at the bound, one that never
//! drains kept within it). These run the real `gateway` binary.

mod common;

use std::net::{SocketAddr, TcpStream};
use std::time::{Duration, Instant};

use common::binary::Binary;
use common::*;
use serde_json::json;

/// The binary with the shipped `gateway.conf` and `--set` overrides, run by `sh` after
/// `shell_prefix` when there is one.
fn spawn_gateway(shell_prefix: Option<&str>, sets: &[&str]) -> Binary {
    let mut args: Vec<String> = vec![
        "--config".into(),
        concat!(env!("CARGO_MANIFEST_DIR"), "/gateway.conf").into(),
        "--set".into(),
        "port=0".into(),
        "--set".into(),
        format!("auth_tokens=alice:{TOKEN}"),
    ];
    for set in sets {
        args.push("--set".into());
        args.push(set.to_string());
    }
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    match shell_prefix {
        Some(prefix) => Binary::start_after(prefix, &args),
        None => Binary::start(&args),
    }
}

/// CPU time (user + system) of a process, in clock ticks.
fn cpu_ticks(pid: u32) -> u64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).expect("stat");
    let after_name = stat
        .rsplit_once(')')
        .map(|(_, rest)| rest)
        .unwrap_or_default();
    let fields: Vec<&str> = after_name.split_whitespace().collect();
    // Fields after the name start at state (3); utime is 14 and stime 15.
    fields[11].parse::<u64>().unwrap() + fields[12].parse::<u64>().unwrap()
}

/// A raw client, authenticated and joined to `session`, whose reads are up to the test.
fn member_that_does_not_read(addr: SocketAddr, session: &str) -> RawWs {
    let mut raw = RawWs::open_at(addr, "/ws", &[]);
    let auth = json!({"type":"auth","id":"a","payload":{"token": TOKEN}}).to_string();
    raw.send(&frame(1, true, auth.as_bytes(), true));
    raw.read_json().expect("auth");
    let join = json!({"type":"session_join","id":"j","payload":{"sessionId": session}}).to_string();
    raw.send(&frame(1, true, join.as_bytes(), true));
    raw.read_json().expect("join");
    raw
}

#[test]
fn sigterm_writes_every_queued_message_before_the_close_frame() {
    let mut gw = spawn_gateway(None, &["close_timeout_ms=3000"]);
    let addr = gw.addr;
    let url = format!("ws://{addr}/ws");
    let mut sender = Client::connect_url(&url);
    sender.request("auth", json!({"token": TOKEN}));
    sender.request("session_create", json!({"sessionId": "q"}));

    // A member that does not read while the sender fills its queue.
    let mut slow = member_that_does_not_read(addr, "q");
    assert_eq!(sender.recv()["payload"]["status"], "joined");

    let pad = "p".repeat(16 * 1024);
    let count = 150; // about 2.4 MiB: more than the socket buffers hold, less than the limit
    for i in 0..count {
        sender.send(&json!({"type":"chat","id":format!("m{i}"),"sessionId":"q","payload":{"i":i,"pad":pad}}));
    }
    // The sender's own round trip proves every chat was handled before the signal.
    sender.request("ping", json!({}));
    gw.signal("TERM");

    for i in 0..count {
        let msg = slow.read_json().expect("queued message");
        assert_eq!(msg["type"], "chat");
        assert_eq!(msg["payload"]["i"], i, "in order, none lost");
    }
    assert_eq!(
        slow.read_close(),
        Some((1001, "Server shutting down".to_string()))
    );
    let mut payload = 1001u16.to_be_bytes().to_vec();
    payload.extend_from_slice(b"ok");
    slow.send(&frame(8, true, &payload, true));
    let close = sender.expect_close().expect("sender closed too");
    assert_eq!(u16::from(close.code), 1001);
    let status = gw
        .wait_exit(Duration::from_millis(3500))
        .expect("exited in time");
    assert_eq!(status.code(), Some(0));
}

#[cfg(target_os = "linux")]
#[test]
fn running_out_of_descriptors_does_not_spin_and_service_resumes() {
    let mut gw = spawn_gateway(Some("ulimit -n 48"), &["handshake_timeout_ms=0"]);
    let addr = gw.addr;
    // Hold more sockets than the process may open.
    let mut held: Vec<TcpStream> = Vec::new();
    for _ in 0..80 {
        if let Ok(stream) = TcpStream::connect(addr) {
            held.push(stream);
        }
    }
    let before = cpu_ticks(gw.pid());
    let started = Instant::now();
    while started.elapsed() < Duration::from_millis(1000) {
        std::thread::sleep(Duration::from_millis(50));
    }
    let used = cpu_ticks(gw.pid()) - before;
    // A loop spinning on EMFILE would use the whole second (about 100 ticks).
    assert!(
        used < 30,
        "gateway used {used} ticks while out of descriptors"
    );

    drop(held);
    let url = format!("ws://{addr}/ws");
    let mut served = false;
    let deadline = Instant::now() + WAIT;
    while Instant::now() < deadline && !served {
        if let Ok(mut ws) = open_ws(&url, None) {
            served = matches!(ws.read(), Ok(tungstenite::Message::Text(_)));
        }
    }
    assert!(served, "service resumed once descriptors were freed");
    gw.signal("TERM");
    let status = gw.wait_exit(WAIT).expect("exited");
    assert_eq!(status.code(), Some(0));
}

#[cfg(target_os = "linux")]
#[test]
fn a_slow_consumer_is_closed_and_its_memory_returned() {
    let mut gw = spawn_gateway(
        None,
        &["max_outbound_buffer=2MiB", "max_message_size=128KiB"],
    );
    let addr = gw.addr;
    let url = format!("ws://{addr}/ws");
    let mut sender = Client::connect_url(&url);
    sender.request("auth", json!({"token": TOKEN}));
    sender.request("session_create", json!({"sessionId": "flood"}));
    let mut reader = Client::connect_url(&url);
    reader.request("auth", json!({"token": TOKEN}));
    reader.request("session_join", json!({"sessionId": "flood"}));
    sender.recv(); // presence: reader joined

    // Warm up the same paths once, so the baseline includes what steady traffic allocates.
    let pad = "f".repeat(100 * 1024);
    for i in 0..20 {
        sender.send(&json!({"type":"chat","id":format!("w{i}"),"sessionId":"flood","payload":{"i":i,"pad":pad}}));
        assert_eq!(reader.recv()["payload"]["i"], i);
    }
    let before = rss_kib(gw.pid());

    // A member that never reads.
    let slow = member_that_does_not_read(addr, "flood");
    sender.recv();
    reader.recv(); // presence: slow joined

    let count = 200; // 20 MiB in all, ten times the limit
    let reading = std::thread::spawn(move || {
        let mut left = false;
        for i in 0..count {
            let mut msg = reader.recv();
            while msg["type"] == "presence" {
                left |= msg["payload"]["status"] == "left";
                msg = reader.recv();
            }
            assert_eq!(msg["payload"]["i"], i, "every message, in order");
        }
        left
    });
    for i in 0..count {
        sender.send(&json!({"type":"chat","id":format!("m{i}"),"sessionId":"flood","payload":{"i":i,"pad":pad}}));
    }
    let saw_left = reading.join().expect("reader");
    assert!(saw_left, "the others saw the slow member leave");
    let mut left = false;
    while !left {
        let msg = sender.recv();
        left = msg["type"] == "presence" && msg["payload"]["status"] == "left";
    }

    // The slow member was closed with 1008 once it reads what was queued before the close.
    drop(slow);
    let settled = eventually(|| rss_kib(gw.pid()) <= before + 1024);
    let after = rss_kib(gw.pid());
    assert!(
        settled,
        "RSS {before} KiB before the flood, {after} KiB after"
    );
    eprintln!("gateway RSS: {before} KiB before the flood, {after} KiB after");
    drop(sender);
    gw.signal("TERM");
    assert_eq!(gw.wait_exit(WAIT).and_then(|s| s.code()), Some(0));
}

/// Pin `stream`'s receive buffer to 64 KiB, so that what the kernel holds for a slow reader
/// stays small and does not grow as it reads.
fn small_receive_buffer(stream: &TcpStream) {
    use std::os::fd::AsRawFd;
    let size: libc::c_int = 64 * 1024;
    // SAFETY: a valid socket, an option of the size given.
    let rc = unsafe {
        libc::setsockopt(
            stream.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_RCVBUF,
            (&size as *const libc::c_int).cast(),
            std::mem::size_of::<libc::c_int>() as libc::socklen_t,
        )
    };
    assert_eq!(rc, 0, "SO_RCVBUF");
}

/// `gateway_output_queued_bytes` of the gateway at `addr`: what its outboxes hold unsent.
fn queued_bytes(addr: SocketAddr) -> u64 {
    let response = raw_http(addr, b"GET /metrics HTTP/1.1\r\nHost: localhost\r\n\r\n");
    let (_, body) = split_response(&response);
    body.lines()
        .find_map(|l| l.strip_prefix("gateway_output_queued_bytes "))
        .and_then(|v| v.trim().parse().ok())
        .expect("gateway_output_queued_bytes")
}

#[cfg(target_os = "linux")]
#[test]
fn a_reader_that_never_drains_does_not_grow_the_gateways_memory() {
    const LIMIT: u64 = 8 << 20;
    const BATCH: usize = 4;
    let mut gw = spawn_gateway(
        None,
        &["max_outbound_buffer=8MiB", "max_message_size=128KiB"],
    );
    let addr = gw.addr;
    let url = format!("ws://{addr}/ws");
    let mut sender = Client::connect_url(&url);
    sender.request("auth", json!({"token": TOKEN}));
    sender.request("session_create", json!({"sessionId": "stream"}));
    let mut reader = Client::connect_url(&url);
    small_receive_buffer(reader.ws.get_ref());
    reader.request("auth", json!({"token": TOKEN}));
    reader.request("session_join", json!({"sessionId": "stream"}));
    sender.recv(); // presence: reader joined

    let pad = "s".repeat(120 * 1024);
    let chat = |i: usize| json!({"type": "chat", "id": format!("m{i}"), "sessionId": "stream", "payload": {"i": i, "pad": pad}});
    // Warm up the same paths, so that the baseline holds what steady traffic allocates.
    for i in 0..20 {
        sender.send(&chat(i));
        assert_eq!(reader.recv()["payload"]["i"], i);
    }
    let before = rss_kib(gw.pid());

    // 64 MiB streamed through the reader's queue while it never empties: the reader takes
    // messages only while more than 3 MiB waits in the gateway, and the sender sends only
    // while less than 6 MiB does (the kernel's socket buffers fill first, and take at most
    // some 1.3 MiB at a time when the socket is writable again). Without compaction the
    // queue's buffer would keep every byte since it last emptied.
    let total = 544;
    let (mut sent, mut read) = (20, 20);
    let mut peak = before;
    let mut waiting = 0;
    while read < 20 + total {
        let queued = queued_bytes(addr);
        if queued < 6 << 20 && sent < 20 + total {
            for _ in 0..BATCH {
                sender.send(&chat(sent));
                sent += 1;
            }
        }
        if queued > 3 << 20 || sent == 20 + total {
            for _ in 0..BATCH.min(sent - read) {
                let msg = reader.recv();
                assert_eq!(msg["payload"]["i"], read, "every message, in order");
                read += 1;
            }
            waiting += usize::from(queued > 0);
            peak = peak.max(rss_kib(gw.pid()));
        }
    }
    peak = peak.max(rss_kib(gw.pid()));
    // Most reads happened with bytes waiting behind them (the last ones drain the queue).
    assert!(
        waiting > total / BATCH / 2,
        "{waiting} of {} reads",
        total / BATCH
    );
    let grown = peak.saturating_sub(before);
    eprintln!("gateway RSS: {before} KiB before, peak {peak} KiB while streaming 64 MiB");
    // The queue's buffer holds at most twice its unsent bytes (under 6 MiB and a batch) and
    // one message: 13 MiB; allow as much again for the allocator.
    assert!(
        grown * 1024 <= 4 * LIMIT,
        "RSS grew by {grown} KiB with max_outbound_buffer = {} KiB",
        LIMIT >> 10
    );
    drop((sender, reader));
    gw.signal("TERM");
    assert_eq!(gw.wait_exit(WAIT).and_then(|s| s.code()), Some(0));
}

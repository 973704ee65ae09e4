//! Soak: a mixed load against the real `gateway` binary for a set time (connects, auth,
//! sessions, relays, agent registration, routing by capability, clean and abrupt
//! disconnects), then a report: errors, messages sent and received (lost must be 0), and the
//! gateway's RSS at the start and the end.
//!
//! ```text
//! cargo bench --bench soak                      # 60 s
//! SOAK_SECS=600 SOAK_ROOMS=8 cargo bench --bench soak
//! ```
//!
//! Each room is a thread with four clients that go through cycles in lockstep: connect and
//! authenticate, create and join a session, send chats round-robin (every other member must
//! receive each one, in order), register an agent and route a request to it by capability,
//! then disconnect (half of the cycles close cleanly, half drop the sockets).

use std::io::{BufRead, BufReader};
use std::net::TcpStream;
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::{json, Value};
use tungstenite::{Message, WebSocket};

const TOKEN: &str = "soak-secret";
const MEMBERS: usize = 4;
const CHATS_PER_CYCLE: usize = 40;

#[derive(Default)]
struct Totals {
    cycles: AtomicU64,
    connections: AtomicU64,
    sent: AtomicU64,
    expected: AtomicU64,
    received: AtomicU64,
    routed: AtomicU64,
    errors: AtomicU64,
}

fn env_u64(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn rss_kib(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .unwrap_or_default()
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or(0)
}

struct Member {
    ws: WebSocket<TcpStream>,
    client_id: String,
}

impl Member {
    fn send(&mut self, value: Value) -> Result<(), String> {
        self.ws
            .send(Message::text(value.to_string()))
            .map_err(|e| e.to_string())
    }

    fn recv(&mut self) -> Result<Value, String> {
        loop {
            match self.ws.read().map_err(|e| e.to_string())? {
                Message::Text(text) => {
                    return serde_json::from_str(text.as_str()).map_err(|e| e.to_string())
                }
                Message::Close(frame) => return Err(format!("closed: {frame:?}")),
                _ => continue,
            }
        }
    }

    fn expect(&mut self, msg_type: &str) -> Result<Value, String> {
        let msg = self.recv()?;
        if msg["type"] == msg_type {
            Ok(msg)
        } else {
            Err(format!("expected {msg_type}, got {msg}"))
        }
    }
}

fn connect(url: &str, totals: &Totals) -> Result<Member, String> {
    let host = url
        .trim_start_matches("ws://")
        .split('/')
        .next()
        .unwrap_or_default();
    let stream = TcpStream::connect(host).map_err(|e| e.to_string())?;
    let _ = stream.set_read_timeout(Some(Duration::from_secs(10)));
    let (ws, _) = tungstenite::client(url, stream).map_err(|e| e.to_string())?;
    let mut member = Member {
        ws,
        client_id: String::new(),
    };
    let welcome = member.expect("session_info")?;
    member.client_id = welcome["payload"]["clientId"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    member.send(json!({"type":"auth","id":"auth","payload":{"token":TOKEN}}))?;
    member.expect("auth_success")?;
    totals.connections.fetch_add(1, Ordering::Relaxed);
    Ok(member)
}

/// One cycle of one room; returns an error description on the first unexpected thing.
fn cycle(url: &str, room: usize, n: u64, totals: &Totals) -> Result<(), String> {
    let session = format!("soak-{room}-{n}");
    let mut members = Vec::new();
    for _ in 0..MEMBERS {
        members.push(connect(url, totals)?);
    }
    members[0].send(json!({"type":"session_create","id":"c","payload":{"sessionId":session}}))?;
    members[0].expect("session_info")?;
    for joiner in 1..MEMBERS {
        members[joiner]
            .send(json!({"type":"session_join","id":"j","payload":{"sessionId":session}}))?;
        members[joiner].expect("session_info")?;
        for earlier in members.iter_mut().take(joiner) {
            earlier.expect("presence")?;
        }
    }
    // Chats round-robin; every other member reads each one, checking order.
    for i in 0..CHATS_PER_CYCLE {
        let from = i % MEMBERS;
        members[from].send(
            json!({"type":"chat","id":format!("m{i}"),"sessionId":session,"payload":{"i":i}}),
        )?;
        totals.sent.fetch_add(1, Ordering::Relaxed);
        let source = members[from].client_id.clone();
        for (to, member) in members.iter_mut().enumerate() {
            if to == from {
                continue;
            }
            totals.expected.fetch_add(1, Ordering::Relaxed);
            let msg = member.expect("chat")?;
            if msg["payload"]["i"] != i || msg["source"] != source.as_str() {
                return Err(format!("chat out of order or from the wrong source: {msg}"));
            }
            totals.received.fetch_add(1, Ordering::Relaxed);
        }
    }
    // An agent, and a request routed to it by capability.
    let capability = format!("soak-{room}");
    members[0].send(json!({"type":"agent_register","id":"r","payload":{
        "agentId": format!("agent-{room}"), "type":"custom", "name":"soak",
        "capabilities":{"chat":false,"tools":[capability],"streaming":false,"modes":[]}}}))?;
    members[0].expect("agent_info")?;
    members[1].send(json!({"type":"route_request","id":format!("q{n}"),"target":format!("capability:{capability}"),"payload":{"n":n}}))?;
    let request = members[0].expect("route_request")?;
    members[0].send(json!({"type":"route_response","id":"resp","target":request["source"],"replyTo":request["id"],"payload":{"ok":n}}))?;
    let response = members[1].expect("route_response")?;
    if response["payload"]["ok"] != n {
        return Err(format!("wrong route response {response}"));
    }
    totals.routed.fetch_add(1, Ordering::Relaxed);
    // Leave: cleanly on even cycles, by dropping the sockets on odd ones.
    for mut member in members {
        if n % 2 == 0 {
            let _ = member.ws.close(None);
            let _ = member.ws.flush();
        }
    }
    totals.cycles.fetch_add(1, Ordering::Relaxed);
    Ok(())
}

fn main() {
    let secs = env_u64("SOAK_SECS", 60);
    let rooms = env_u64("SOAK_ROOMS", 8) as usize;
    let mut child = Command::new(env!("CARGO_BIN_EXE_gateway"))
        .args([
            "--config",
            concat!(env!("CARGO_MANIFEST_DIR"), "/gateway.conf"),
            "--set",
            "port=0",
            "--set",
            &format!("auth_tokens=soak:{TOKEN}"),
            "--set",
            "log_level=warn",
        ])
        .stdin(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn gateway");
    let pid = child.id();
    let mut stderr = BufReader::new(child.stderr.take().expect("stderr"));
    let mut line = String::new();
    let addr = loop {
        line.clear();
        if stderr.read_line(&mut line).unwrap_or(0) == 0 {
            panic!("gateway exited before listening");
        }
        if let Some(rest) = line.split("listening on ws://").nth(1) {
            break rest.trim().to_string();
        }
    };
    // Keep draining the log so the gateway never blocks on a full pipe.
    std::thread::spawn(move || {
        for line in stderr.lines().map_while(Result::ok) {
            eprintln!("[gateway] {line}");
        }
    });
    let url = format!("ws://{addr}");
    let rss_start = rss_kib(pid);
    let totals = Arc::new(Totals::default());
    let started = Instant::now();
    let until = started + Duration::from_secs(secs);
    let workers: Vec<_> = (0..rooms)
        .map(|room| {
            let url = url.clone();
            let totals = Arc::clone(&totals);
            std::thread::spawn(move || {
                let mut n = 0;
                while Instant::now() < until {
                    if let Err(e) = cycle(&url, room, n, &totals) {
                        totals.errors.fetch_add(1, Ordering::Relaxed);
                        eprintln!("room {room} cycle {n}: {e}");
                    }
                    n += 1;
                }
            })
        })
        .collect();
    let mut peak = rss_start;
    let mut next_report = started + Duration::from_secs(60);
    while Instant::now() < until {
        std::thread::sleep(Duration::from_millis(500));
        let rss = rss_kib(pid);
        peak = peak.max(rss);
        if Instant::now() >= next_report {
            next_report += Duration::from_secs(60);
            println!(
                "  t={:>4} s  connections {:>8}  deliveries {:>10}  awaited {}  errors {}  RSS {rss} KiB",
                started.elapsed().as_secs(),
                totals.connections.load(Ordering::Relaxed),
                totals.received.load(Ordering::Relaxed),
                totals.expected.load(Ordering::Relaxed) - totals.received.load(Ordering::Relaxed),
                totals.errors.load(Ordering::Relaxed),
            );
        }
    }
    for worker in workers {
        let _ = worker.join();
    }
    // Let the last disconnects settle, then read the end state.
    let settle = Instant::now() + Duration::from_secs(5);
    let mut health_after = http_get(&addr, "/health").1;
    while !health_after.contains("\"clients\":0") && Instant::now() < settle {
        std::thread::sleep(Duration::from_millis(50));
        health_after = http_get(&addr, "/health").1;
    }
    let rss_end = rss_kib(pid);
    let _ = Command::new("kill")
        .arg("-TERM")
        .arg(pid.to_string())
        .status();
    let status = child.wait().expect("wait");

    let t = &totals;
    let sent = t.expected.load(Ordering::Relaxed);
    let received = t.received.load(Ordering::Relaxed);
    println!("soak: {secs} s, {rooms} rooms of {MEMBERS} clients");
    println!(
        "  cycles {}  connections {}  chats sent {}  deliveries expected {}  received {}  lost {}",
        t.cycles.load(Ordering::Relaxed),
        t.connections.load(Ordering::Relaxed),
        t.sent.load(Ordering::Relaxed),
        sent,
        received,
        sent - received
    );
    println!(
        "  routed requests answered {}  errors {}",
        t.routed.load(Ordering::Relaxed),
        t.errors.load(Ordering::Relaxed)
    );
    println!("  gateway RSS: start {rss_start} KiB, peak {peak} KiB, end {rss_end} KiB");
    println!("  /health at the end: {}", health_after.trim());
    println!("  gateway exit status on SIGTERM: {status}");
}

fn http_get(addr: &str, path: &str) -> (u16, String) {
    use std::io::{Read, Write};
    let host = addr.split('/').next().unwrap_or_default();
    let Ok(mut stream) = TcpStream::connect(host) else {
        return (0, String::new());
    };
    let _ = stream.set_read_timeout(Some(Duration::from_secs(5)));
    let _ = write!(stream, "GET {path} HTTP/1.1\r\nHost: x\r\n\r\n");
    let mut response = String::new();
    let _ = stream.read_to_string(&mut response);
    let status = response
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    let body = response
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_string())
        .unwrap_or_default();
    (status, body)
}

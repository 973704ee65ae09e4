//! Soak: a mixed load against the real `gateway` binary for a set time (connects, auth,
//! sessions, relays, agent registration, routing by capability, clean and abrupt
//! disconnects), then a report: errors, messages sent and received (lost must be 0), and the
//! gateway's RSS at the start and the end.
//!
//! ```text
//! cargo bench --bench soak                      # 60 s, one gateway
//! SOAK_SECS=600 SOAK_ROOMS=8 cargo bench --bench soak
//! SOAK_NODES=3 cargo bench --bench soak         # 30 s, a cluster of 3 gateways and a Redis
//! SOAK_SECS=600 SOAK_NODES=3 cargo bench --bench soak
//! ```
//!
//! Each room is a thread with four clients that go through cycles in lockstep: connect and
//! authenticate, create and join a session, send chats round-robin (every other member must
//! receive each one, in order), register an agent and route a request to it by capability,
//! then disconnect (half of the cycles close cleanly, half drop the sockets).
//!
//! With `SOAK_NODES` = N > 1 the bench starts its own `redis-server` (no persistence) on a
//! free port and N gateway processes sharing it. A room's members are spread over the nodes
//! (member k of room r on node r + k, modulo N), so the agent (member 0) and the client
//! routing to it by capability (member 1) are on different nodes. The 40 chats of a cycle
//! are written all at once, each member sending every fourth, before anyone reads; then each
//! member reads the 30 of the others (a read timing out after 10 s ends its wait), and a
//! ping round trip on every member before the leave reads what comes late. Each delivery is
//! counted as received once, lost, duplicated, or reordered (read after a later chat of the
//! same sender), and the members' orders are compared pairwise (every member of a session
//! sees one order); a second `route_response` is counted too. Each gateway's RSS, Redis's
//! RSS and its `used_memory` are sampled after a warm-up (a tenth of the run, 5 to 60 s),
//! halfway through the rest, at the end, and once the clients have left, when Redis's keys
//! are counted by shape.
use std::collections::HashMap;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::process::{Child, Command, Stdio};
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
    // Cluster mode: what `check_chats` counts.
    lost: AtomicU64,
    duplicated: AtomicU64,
    reordered: AtomicU64,
    foreign: AtomicU64,
    order_differs: AtomicU64,
    route_duplicates: AtomicU64,
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
    /// Cluster mode: every chat read, as (source, `payload.i`), in the order read.
    chats: Vec<(String, u64)>,
    /// Cluster mode: `route_response`s read.
    route_responses: u64,
    /// Cluster mode: which member, on which node, for the errors.
    label: String,
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

impl Member {
    /// Cluster mode: the next message of `msg_type`, noting the chats and `route_response`s
    /// read on the way and passing over presence (of this cycle's joins).
    fn expect_past_chats(&mut self, msg_type: &str) -> Result<Value, String> {
        loop {
            let msg = self
                .recv()
                .map_err(|e| format!("{} waiting for {msg_type}: {e}", self.label))?;
            if msg["type"] == "chat" {
                self.note_chat(&msg);
                continue;
            }
            if msg["type"] == "route_response" {
                self.route_responses += 1;
            }
            if msg["type"] == msg_type {
                return Ok(msg);
            }
            if msg["type"] != "route_response" && msg["type"] != "presence" {
                return Err(format!("expected {msg_type}, got {msg}"));
            }
        }
    }

    /// Cluster mode: the next message, or `None` when the read timed out.
    fn recv_or_timeout(&mut self) -> Result<Option<Value>, String> {
        loop {
            match self.ws.read() {
                Ok(Message::Text(text)) => {
                    return serde_json::from_str(text.as_str()).map_err(|e| e.to_string())
                }
                Ok(Message::Close(frame)) => return Err(format!("closed: {frame:?}")),
                Ok(_) => continue,
                Err(tungstenite::Error::Io(e))
                    if matches!(
                        e.kind(),
                        std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                    ) =>
                {
                    return Ok(None)
                }
                Err(e) => return Err(e.to_string()),
            }
        }
    }

    fn note_chat(&mut self, msg: &Value) {
        let source = msg["source"].as_str().unwrap_or_default().to_string();
        let i = msg["payload"]["i"].as_u64().unwrap_or(u64::MAX);
        self.chats.push((source, i));
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
        chats: Vec::new(),
        route_responses: 0,
        label: String::new(),
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

/// Cluster mode: one cycle of one room, its members spread over the nodes at `urls`.
fn cluster_cycle(urls: &[String], room: usize, n: u64, totals: &Totals) -> Result<(), String> {
    let session = format!("soak-{room}-{n}");
    let mut members = Vec::new();
    for k in 0..MEMBERS {
        let node = (room + k) % urls.len();
        let mut member = connect(&urls[node], totals)
            .map_err(|e| format!("member {k} connecting to n{}: {e}", node + 1))?;
        member.label = format!("member {k} on n{} ({})", node + 1, member.client_id);
        members.push(member);
    }
    members[0].send(json!({"type":"session_create","id":"c","payload":{"sessionId":session}}))?;
    members[0].expect_past_chats("session_info")?;
    for joiner in 1..MEMBERS {
        members[joiner]
            .send(json!({"type":"session_join","id":"j","payload":{"sessionId":session}}))?;
        members[joiner].expect_past_chats("session_info")?;
        for earlier in members.iter_mut().take(joiner) {
            earlier.expect_past_chats("presence")?;
        }
    }
    // Every chat written before any is read: member i % MEMBERS sends chat i.
    for i in 0..CHATS_PER_CYCLE {
        members[i % MEMBERS].send(
            json!({"type":"chat","id":format!("m{i}"),"sessionId":session,"payload":{"i":i}}),
        )?;
        totals.sent.fetch_add(1, Ordering::Relaxed);
    }
    let wanted = CHATS_PER_CYCLE - CHATS_PER_CYCLE / MEMBERS;
    for member in members.iter_mut() {
        totals.expected.fetch_add(wanted as u64, Ordering::Relaxed);
        // Until the member has every chat of the others once; a read timing out (10 s) ends
        // the wait, and what is missing then counts as lost unless it comes later.
        while distinct(&member.chats) < wanted {
            let Some(msg) = member.recv_or_timeout()? else {
                break;
            };
            match msg["type"].as_str() {
                Some("chat") => member.note_chat(&msg),
                Some("presence") => {}
                _ => return Err(format!("expected chat, got {msg}")),
            }
        }
    }
    // An agent on one node, and a request routed to it by capability from another.
    let capability = format!("soak-{room}");
    members[0].send(json!({"type":"agent_register","id":"r","payload":{
        "agentId": format!("agent-{room}"), "type":"custom", "name":"soak",
        "capabilities":{"chat":false,"tools":[capability],"streaming":false,"modes":[]}}}))?;
    members[0].expect_past_chats("agent_info")?;
    members[1].send(json!({"type":"route_request","id":format!("q{n}"),"target":format!("capability:{capability}"),"payload":{"n":n}}))?;
    let request = members[0].expect_past_chats("route_request")?;
    members[0].send(json!({"type":"route_response","id":"resp","target":request["source"],"replyTo":request["id"],"payload":{"ok":n}}))?;
    let response = members[1].expect_past_chats("route_response")?;
    if response["payload"]["ok"] != n {
        return Err(format!("wrong route response {response}"));
    }
    totals.routed.fetch_add(1, Ordering::Relaxed);
    // A ping round trip on each, so that late chats and a second route answer are read.
    for member in members.iter_mut() {
        member.send(json!({"type":"ping","id":"p"}))?;
        member.expect_past_chats("pong")?;
    }
    totals.route_duplicates.fetch_add(
        members[1].route_responses.saturating_sub(1),
        Ordering::Relaxed,
    );
    check_chats(&members, totals);
    for mut member in members {
        if n % 2 == 0 {
            let _ = member.ws.close(None);
            let _ = member.ws.flush();
        }
    }
    totals.cycles.fetch_add(1, Ordering::Relaxed);
    Ok(())
}

fn distinct(chats: &[(String, u64)]) -> usize {
    let mut seen: Vec<&(String, u64)> = chats.iter().collect();
    seen.sort();
    seen.dedup();
    seen.len()
}

/// Counts what each member read against what the others sent: received once, lost,
/// duplicated, reordered (read after a later chat of the same sender), foreign (a chat
/// that is not another member's of this cycle), and pairs of members that saw the chats
/// they both received in different orders.
fn check_chats(members: &[Member], totals: &Totals) {
    let sender = |source: &str| members.iter().position(|m| m.client_id == source);
    let mut orders = Vec::new();
    for (to, member) in members.iter().enumerate() {
        let mut count: HashMap<u64, u64> = HashMap::new();
        let mut last: HashMap<usize, u64> = HashMap::new();
        let mut order = Vec::new();
        for (source, i) in &member.chats {
            let Some(from) = sender(source).filter(|&f| {
                f != to && (*i as usize) % MEMBERS == f && (*i as usize) < CHATS_PER_CYCLE
            }) else {
                totals.foreign.fetch_add(1, Ordering::Relaxed);
                continue;
            };
            let seen = count.entry(*i).or_default();
            *seen += 1;
            if *seen > 1 {
                totals.duplicated.fetch_add(1, Ordering::Relaxed);
                continue;
            }
            if last.get(&from).is_some_and(|&l| l > *i) {
                totals.reordered.fetch_add(1, Ordering::Relaxed);
            } else {
                last.insert(from, *i);
            }
            order.push(*i);
        }
        let wanted = (0..CHATS_PER_CYCLE).filter(|i| i % MEMBERS != to).count() as u64;
        totals
            .received
            .fetch_add(count.len() as u64, Ordering::Relaxed);
        totals
            .lost
            .fetch_add(wanted - count.len() as u64, Ordering::Relaxed);
        orders.push(order);
    }
    for a in 0..members.len() {
        for b in a + 1..members.len() {
            let common = |order: &[u64]| -> Vec<u64> {
                order
                    .iter()
                    .copied()
                    .filter(|&i| i as usize % MEMBERS != a && i as usize % MEMBERS != b)
                    .collect()
            };
            if common(&orders[a]) != common(&orders[b]) {
                totals.order_differs.fetch_add(1, Ordering::Relaxed);
            }
        }
    }
}

/// A gateway process with `sets` (`KEY=VALUE`) beside the repository's `gateway.conf`, its
/// log forwarded to stderr with `tag`; returns it and its `host:port/path`.
fn spawn_gateway(sets: &[String], tag: &str) -> (Child, String) {
    let mut command = Command::new(env!("CARGO_BIN_EXE_gateway"));
    command.args([
        "--config",
        concat!(env!("CARGO_MANIFEST_DIR"), "/gateway.conf"),
    ]);
    for set in sets {
        command.args(["--set", set]);
    }
    let mut child = command
        .stdin(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn gateway");
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
    let tag = tag.to_string();
    std::thread::spawn(move || {
        for line in stderr.lines().map_while(Result::ok) {
            eprintln!("[{tag}] {line}");
        }
    });
    (child, addr)
}

fn main() {
    let nodes = env_u64("SOAK_NODES", 1) as usize;
    if nodes > 1 {
        cluster(nodes);
    } else {
        standalone();
    }
}

fn standalone() {
    let secs = env_u64("SOAK_SECS", 60);
    let rooms = env_u64("SOAK_ROOMS", 8) as usize;
    let (mut child, addr) = spawn_gateway(
        &[
            "port=0".to_string(),
            format!("auth_tokens=soak:{TOKEN}"),
            "log_level=warn".to_string(),
        ],
        "gateway",
    );
    let pid = child.id();
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

/// A `redis-server` of the bench's own, on a free port, without persistence.
struct Redis {
    child: Child,
    port: u16,
}

fn start_redis() -> Redis {
    for _ in 0..5 {
        let port = TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .expect("a free port")
            .port();
        let mut child = Command::new("redis-server")
            .args(["--port", &port.to_string(), "--bind", "127.0.0.1"])
            .args(["--save", "", "--appendonly", "no"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("redis-server runs (apt-get install redis-server)");
        // Answered by this process, not by another that took the port first.
        let pid = format!("process_id:{}\r\n", child.id());
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = child.try_wait() {
                break;
            }
            if let Some(Resp::Bulk(Some(info))) = redis_command(port, &["INFO", "server"]) {
                if info.contains(&pid) {
                    return Redis { child, port };
                }
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        let _ = child.kill();
        let _ = child.wait();
    }
    panic!("redis-server did not start");
}

/// A RESP2 reply.
enum Resp {
    /// A simple string, an integer or an error.
    Line,
    Bulk(Option<String>),
    Array(Vec<Resp>),
}

/// The reply starting at `at` and where it ends, or `None` while it is incomplete.
fn parse_resp(buf: &[u8], at: usize) -> Option<(Resp, usize)> {
    let end = buf.get(at..)?.windows(2).position(|w| w == b"\r\n")? + at;
    let line = String::from_utf8_lossy(&buf[at + 1..end]).into_owned();
    match buf[at] {
        b'$' => {
            let len: i64 = line.parse().ok()?;
            if len < 0 {
                return Some((Resp::Bulk(None), end + 2));
            }
            let stop = end + 2 + len as usize;
            let text = buf.get(end + 2..stop)?;
            buf.get(stop + 1)?;
            Some((
                Resp::Bulk(Some(String::from_utf8_lossy(text).into_owned())),
                stop + 2,
            ))
        }
        b'*' => {
            let len: i64 = line.parse().ok()?;
            let mut items = Vec::new();
            let mut next = end + 2;
            for _ in 0..len.max(0) {
                let (item, after) = parse_resp(buf, next)?;
                items.push(item);
                next = after;
            }
            Some((Resp::Array(items), next))
        }
        _ => Some((Resp::Line, end + 2)),
    }
}

fn redis_command(port: u16, args: &[&str]) -> Option<Resp> {
    let mut stream = TcpStream::connect(("127.0.0.1", port)).ok()?;
    stream.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
    let mut request = format!("*{}\r\n", args.len());
    for arg in args {
        request.push_str(&format!("${}\r\n{arg}\r\n", arg.len()));
    }
    stream.write_all(request.as_bytes()).ok()?;
    let mut reply = Vec::new();
    let mut buf = [0u8; 16384];
    loop {
        if let Some((resp, _)) = parse_resp(&reply, 0) {
            return Some(resp);
        }
        let n = stream.read(&mut buf).ok()?;
        if n == 0 {
            return None;
        }
        reply.extend_from_slice(&buf[..n]);
    }
}

/// Redis's `used_memory` (bytes).
fn redis_used_memory(port: u16) -> u64 {
    match redis_command(port, &["INFO", "memory"]) {
        Some(Resp::Bulk(Some(info))) => info
            .lines()
            .find_map(|l| l.strip_prefix("used_memory:"))
            .and_then(|v| v.trim().parse().ok())
            .unwrap_or(0),
        _ => 0,
    }
}

/// Redis's keys, counted by shape (what is between braces left out).
fn redis_key_shapes(port: u16) -> Vec<(String, usize)> {
    let mut shapes: HashMap<String, usize> = HashMap::new();
    if let Some(Resp::Array(keys)) = redis_command(port, &["KEYS", "*"]) {
        for key in keys {
            if let Resp::Bulk(Some(key)) = key {
                let mut shape = String::new();
                let mut depth = 0;
                for c in key.chars() {
                    match c {
                        '{' => {
                            if depth == 0 {
                                shape.push_str("{}");
                            }
                            depth += 1;
                        }
                        '}' => depth -= 1,
                        _ if depth == 0 => shape.push(c),
                        _ => {}
                    }
                }
                *shapes.entry(shape).or_default() += 1;
            }
        }
    }
    let mut shapes: Vec<_> = shapes.into_iter().collect();
    shapes.sort();
    shapes
}

/// Memory at one point: each gateway's RSS and Redis's RSS (KiB), Redis's `used_memory`.
struct Sample {
    at: u64,
    gateways: Vec<u64>,
    redis_rss: u64,
    redis_used: u64,
}

fn cluster(nodes: usize) {
    let secs = env_u64("SOAK_SECS", 30);
    let rooms = env_u64("SOAK_ROOMS", 8) as usize;
    let mut redis = start_redis();
    let mut gateways = Vec::new();
    for k in 1..=nodes {
        gateways.push(spawn_gateway(
            &[
                "port=0".to_string(),
                format!("auth_tokens=soak:{TOKEN}"),
                "log_level=warn".to_string(),
                format!("cluster_redis=redis://127.0.0.1:{}", redis.port),
                format!("node_id=n{k}"),
            ],
            &format!("n{k}"),
        ));
    }
    let addrs: Vec<String> = gateways.iter().map(|(_, addr)| addr.clone()).collect();
    let pids: Vec<u32> = gateways.iter().map(|(child, _)| child.id()).collect();
    for addr in &addrs {
        let deadline = Instant::now() + Duration::from_secs(20);
        while !http_get(addr, "/health").1.contains("\"broker\":\"ok\"") {
            assert!(
                Instant::now() < deadline,
                "{addr} does not serve the cluster"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }
    let urls: Vec<String> = addrs.iter().map(|a| format!("ws://{a}")).collect();
    let redis_pid = redis.child.id();
    let started = Instant::now();
    let sample = || Sample {
        at: started.elapsed().as_secs(),
        gateways: pids.iter().map(|&pid| rss_kib(pid)).collect(),
        redis_rss: rss_kib(redis_pid),
        redis_used: redis_used_memory(redis.port),
    };
    let totals = Arc::new(Totals::default());
    let until = started + Duration::from_secs(secs);
    let workers: Vec<_> = (0..rooms)
        .map(|room| {
            let urls = urls.clone();
            let totals = Arc::clone(&totals);
            std::thread::spawn(move || {
                let mut n = 0;
                while Instant::now() < until {
                    if let Err(e) = cluster_cycle(&urls, room, n, &totals) {
                        totals.errors.fetch_add(1, Ordering::Relaxed);
                        eprintln!("room {room} cycle {n}: {e}");
                    }
                    n += 1;
                }
            })
        })
        .collect();
    let warm = (secs / 10).clamp(5, 60).min(secs);
    let middle = warm + (secs - warm) / 2;
    let every = if secs >= 300 { 60 } else { 10 };
    let (mut first, mut mid) = (None, None);
    let mut next_report = every;
    while Instant::now() < until {
        std::thread::sleep(Duration::from_millis(500));
        let t = started.elapsed().as_secs();
        if first.is_none() && t >= warm {
            first = Some(sample());
        }
        if mid.is_none() && t >= middle {
            mid = Some(sample());
        }
        if t >= next_report {
            next_report += every;
            let now = sample();
            println!(
                "  t={:>4} s  cycles {:>7}  deliveries {:>9}  lost {}  errors {}  RSS {:?} KiB  redis used_memory {} B",
                t,
                totals.cycles.load(Ordering::Relaxed),
                totals.received.load(Ordering::Relaxed),
                totals.lost.load(Ordering::Relaxed),
                totals.errors.load(Ordering::Relaxed),
                now.gateways,
                now.redis_used,
            );
        }
    }
    let last = sample();
    let first = first.unwrap_or_else(sample);
    let mid = mid.unwrap_or_else(sample);
    for worker in workers {
        let _ = worker.join();
    }
    // Let the last disconnects settle, then read the end state.
    let settle = Instant::now() + Duration::from_secs(10);
    let healths = || -> Vec<String> {
        addrs
            .iter()
            .map(|addr| http_get(addr, "/health").1.trim().to_string())
            .collect()
    };
    let mut health_after = healths();
    while !health_after.iter().all(|h| h.contains("\"clients\":0")) && Instant::now() < settle {
        std::thread::sleep(Duration::from_millis(50));
        health_after = healths();
    }
    let settled = sample();
    let keys = redis_key_shapes(redis.port);
    let mut statuses = Vec::new();
    for (child, _) in gateways.iter_mut() {
        let _ = Command::new("kill")
            .arg("-TERM")
            .arg(child.id().to_string())
            .status();
    }
    for (child, _) in gateways.iter_mut() {
        statuses.push(child.wait().expect("wait").to_string());
    }
    let _ = redis.child.kill();
    let _ = redis.child.wait();

    let t = &totals;
    let get = |a: &AtomicU64| a.load(Ordering::Relaxed);
    println!(
        "soak: {secs} s, {nodes} nodes and a redis-server, {rooms} rooms of {MEMBERS} clients (member k of room r on node (r + k) mod {nodes})"
    );
    println!(
        "  cycles {}  connections {}  chats sent {}  deliveries expected {}  received once {}",
        get(&t.cycles),
        get(&t.connections),
        get(&t.sent),
        get(&t.expected),
        get(&t.received),
    );
    println!(
        "  lost {}  duplicated {}  reordered {}  foreign {}  pairs of members whose orders differ {}",
        get(&t.lost),
        get(&t.duplicated),
        get(&t.reordered),
        get(&t.foreign),
        get(&t.order_differs),
    );
    println!(
        "  routed requests answered {}  answered twice {}  errors {}",
        get(&t.routed),
        get(&t.route_duplicates),
        get(&t.errors),
    );
    println!(
        "  memory        after warm-up (t={} s)  middle (t={} s)  end (t={} s)  growth warm-up->end  after the clients left",
        first.at, mid.at, last.at
    );
    let row = |name: &str, unit: &str, f: &dyn Fn(&Sample) -> u64| {
        let (a, b, c, d) = (f(&first), f(&mid), f(&last), f(&settled));
        println!(
            "  {name:<12}  {a:>10} {unit}  {b:>10} {unit}  {c:>10} {unit}  {:>+10} {unit} ({:+.1} %)  {d:>10} {unit}",
            c as i64 - a as i64,
            (c as f64 - a as f64) * 100.0 / (a.max(1) as f64),
        );
    };
    for k in 0..nodes {
        row(&format!("n{} RSS", k + 1), "KiB", &|s: &Sample| {
            s.gateways[k]
        });
    }
    row("redis RSS", "KiB", &|s: &Sample| s.redis_rss);
    row("redis used", "B  ", &|s: &Sample| s.redis_used);
    let total: usize = keys.iter().map(|(_, n)| n).sum();
    println!("  redis keys at the end: {total} {keys:?}");
    for (k, health) in health_after.iter().enumerate() {
        println!("  n{} /health at the end: {health}", k + 1);
    }
    println!(
        "  gateway exit statuses on SIGTERM: {}",
        statuses.join(", ")
    );
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

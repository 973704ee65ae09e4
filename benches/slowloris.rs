//! Slowloris: 1000 connections that trickle the upgrade one byte at a time and 1000 that open
//! and send nothing, against a gateway in this process. Prints a normal client's ping round
//! trip before and during the attack (median, and the ratio), and when the gateway closed the
//! attacking sockets relative to its handshake deadline.
//!
//! ```text
//! cargo bench --bench slowloris
//! SLOWLORIS_CONNS=1000 SLOWLORIS_DEADLINE_MS=3000 cargo bench --bench slowloris
//! ```

use std::io::{ErrorKind, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::{Duration, Instant};

use gateway::AuthToken;
use gateway::{Config, Gateway};
use tungstenite::Message;

const TOKEN: &str = "bench-token";

fn env_usize(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn median(mut v: Vec<Duration>) -> Duration {
    v.sort();
    v[v.len() / 2]
}

/// Sequential JSON ping → pong round trips on an authenticated connection, at least `count`
/// of them and until `until`.
fn ping_rtts(url: &str, count: usize, until: Instant) -> Vec<Duration> {
    let (mut ws, _) = tungstenite::connect(url).expect("connect");
    let _welcome = ws.read().expect("welcome");
    let auth = format!(r#"{{"type":"auth","id":"a","payload":{{"token":"{TOKEN}"}}}}"#);
    ws.send(Message::text(auth)).expect("auth");
    let _ = ws.read().expect("auth reply");
    let mut rtts = Vec::with_capacity(count);
    let mut i = 0;
    while i < count || Instant::now() < until {
        i += 1;
        let started = Instant::now();
        ws.send(Message::text(format!(r#"{{"type":"ping","id":"p{i}"}}"#)))
            .expect("ping");
        loop {
            if let Message::Text(_) = ws.read().expect("pong") {
                break;
            }
        }
        rtts.push(started.elapsed());
    }
    rtts
}

/// One attacking socket.
struct Attacker {
    stream: TcpStream,
    trickles: bool,
    connected_at: Duration,
    closed_at: Option<Duration>,
}

/// Whether the server has closed `stream` (end of stream or reset).
fn closed_by_server(stream: &mut TcpStream) -> bool {
    let mut byte = [0u8; 1];
    match stream.read(&mut byte) {
        Ok(0) => true,
        Ok(_) => false,
        Err(e) => !matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut),
    }
}

fn main() {
    let conns = env_usize("SLOWLORIS_CONNS", 1000);
    let deadline_ms = env_usize("SLOWLORIS_DEADLINE_MS", 3000);
    let pings = env_usize("SLOWLORIS_PINGS", 2000);

    let config = Config {
        port: 0,
        auth_tokens: vec![AuthToken {
            user: "bench".into(),
            secret: TOKEN.into(),
        }],
        handshake_timeout_ms: deadline_ms as u64,
        max_connections: 20_000,
        log_level: log::LevelFilter::Error,
        ..Config::default()
    };
    let mut gw = Gateway::bind(config).expect("bind");
    let addr: SocketAddr = gw.local_addr();
    let url = gw.url();
    let handle = gw.handle();
    let server = std::thread::spawn(move || gw.run());

    let phase = Duration::from_millis(deadline_ms as u64 * 8 / 10);
    let baseline = median(ping_rtts(&url, pings, Instant::now() + phase));

    // The attack: `conns` silent sockets and `conns` tricklers, watched from this thread
    // while another thread pings.
    let attack_start = Instant::now();
    let pinger = {
        let url = url.clone();
        std::thread::spawn(move || median(ping_rtts(&url, pings, attack_start + phase)))
    };
    let mut sockets: Vec<Attacker> = (0..2 * conns)
        .map(|i| {
            let stream = TcpStream::connect(addr).expect("connect");
            stream.set_nonblocking(true).expect("nonblocking");
            Attacker {
                stream,
                trickles: i % 2 == 0,
                connected_at: attack_start.elapsed(),
                closed_at: None,
            }
        })
        .collect();
    let request = b"GET /ws HTTP/1.1\r\nHost: localhost\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n";
    let connected_in = attack_start.elapsed();
    let give_up = connected_in + Duration::from_millis(deadline_ms as u64 + 5000);
    let mut position = 0;
    let mut next_byte = Instant::now();
    while attack_start.elapsed() < give_up && sockets.iter().any(|s| s.closed_at.is_none()) {
        // One byte per trickling connection every 100 ms: the head would take about 15 s.
        let write_now = Instant::now() >= next_byte && position < request.len();
        for socket in sockets.iter_mut().filter(|s| s.closed_at.is_none()) {
            if write_now && socket.trickles {
                let _ = socket.stream.write(&request[position..position + 1]);
            }
            if closed_by_server(&mut socket.stream) {
                socket.closed_at = Some(attack_start.elapsed());
            }
        }
        if write_now {
            position += 1;
            next_byte += Duration::from_millis(100);
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    let during = pinger.join().expect("pinger");

    println!(
        "slowloris: {conns} trickling + {conns} silent connections, handshake deadline {deadline_ms} ms"
    );
    println!(
        "  all attacking sockets connected {:.2} s after the attack began",
        connected_in.as_secs_f64()
    );
    println!(
        "  ping round trip p50 without attack: {:>8.1} us",
        baseline.as_secs_f64() * 1e6
    );
    println!(
        "  ping round trip p50 during attack:  {:>8.1} us  (ratio {:.2})",
        during.as_secs_f64() * 1e6,
        during.as_secs_f64() / baseline.as_secs_f64(),
    );
    for (kind, trickles) in [("trickling", true), ("silent", false)] {
        let mut times: Vec<Duration> = sockets
            .iter()
            .filter(|s| s.trickles == trickles)
            .filter_map(|s| Some(s.closed_at? - s.connected_at))
            .collect();
        times.sort();
        let closed = times.len();
        let (first, mid, last) = match (times.first(), times.last()) {
            (Some(first), Some(last)) => (*first, times[closed / 2], *last),
            _ => Default::default(),
        };
        println!(
            "  {kind:>9}: {closed}/{conns} closed by the gateway, {:.2} s / {:.2} s / {:.2} s (min / median / max) after connecting",
            first.as_secs_f64(),
            mid.as_secs_f64(),
            last.as_secs_f64()
        );
    }

    let _ = handle.shutdown();
    let _ = server.join();
}

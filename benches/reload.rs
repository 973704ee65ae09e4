//! `cargo bench --bench reload`: what a SIGHUP reload costs the loop (PROTOCOL section 12)
//! with 10 000 configured tokens and 10 000 open authenticated connections.
//!
//! The release binary runs in a child process with a configuration file of `TOKENS` tokens;
//! the load generator opens `CONNS` connections, authenticated with one of them; a bystander
//! connection (another token) sends `ping` after `ping` all along. Each round rewrites the
//! file (another `allow_route` list, one token more or less, the rate limit on or off: every
//! connection's scopes and bucket are recomputed) and sends SIGHUP; the last round removes
//! the load generator's token, so that the one reload closes all `CONNS` connections.
//!
//! Printed per round: the time the loop spent handling the SIGHUP (the gateway's own
//! `SIGHUP handled in` line: reading the file, the core's reload, the actions), and the
//! slowest bystander round trip from the SIGHUP to 200 ms after the reload (the closes of
//! the last round happen in the turns after it), beside the bystander's quiet p50 / max
//! before the first round. The target is a stall of at most 50 ms; the last round's
//! bystander figure is printed apart, as the cost of closing every connection at once.
//!
//! Figures depend on the machine; the bench shares its cores with the gateway.

use std::io::{BufRead, BufReader, Write};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{mpsc, Arc, Mutex};
use std::time::{Duration, Instant};

use loadgen::{Engine, Target};

const TOKENS: usize = 10_000;
const CONNS: usize = 10_000;
const ROUNDS: usize = 5;
const LOAD_TOKEN: &str = "load-token-0000000000";
const BYSTANDER_TOKEN: &str = "bystander-token-000000";
const TARGET_MS: f64 = 50.0;
const WAIT: Duration = Duration::from_secs(20);

/// One bystander ping: when it was sent and when its pong arrived.
type Ping = (Instant, Instant);

fn main() {
    if let Err(e) = run() {
        eprintln!("reload bench failed: {e}");
        std::process::exit(1);
    }
}

/// The configuration file of round `round` (`None`: the first one).
fn conf_text(round: Option<usize>) -> String {
    let round_no = round.map_or(0, |r| r + 1);
    let mut tokens = String::with_capacity(TOKENS * 40);
    // The load generator's token stays until the last round.
    if round != Some(ROUNDS - 1) {
        tokens.push_str(&format!("load:{LOAD_TOKEN}, "));
    }
    tokens.push_str(&format!("watch:{BYSTANDER_TOKEN}"));
    // One token more or less each round.
    for i in 0..TOKENS - 2 + round_no % 2 {
        tokens.push_str(&format!(", u{i}:secret-{i:05}-{:08x}", i * 7919));
    }
    let route = if round_no % 2 == 0 {
        "*".to_string()
    } else {
        "load, watch, ops".to_string()
    };
    let rate = if round_no % 2 == 0 { 0 } else { 1_000_000 };
    format!(
        "port = 0\nmax_connections = 20000\nmax_connections_per_user = 20000\n\
         max_pending_handshakes = 4096\nlog_level = info\nallow_route = {route}\n\
         rate_limit_per_sec = {rate}\nrate_limit_burst = 1000000\nauth_tokens = {tokens}\n"
    )
}

struct Gateway {
    child: Child,
    lines: mpsc::Receiver<String>,
    url: String,
}

impl Gateway {
    fn start(conf: &std::path::Path) -> Result<Gateway, String> {
        let bin = env!("CARGO_BIN_EXE_gateway");
        let mut child = Command::new(bin)
            .arg("--config")
            .arg(conf)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .map_err(|e| format!("spawn {bin}: {e}"))?;
        let stderr = child.stderr.take().expect("piped stderr");
        let (tx, lines) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines() {
                let Ok(line) = line else { break };
                // Only what the bench reads: the per-connection debug lines are dropped here.
                let wanted = ["listening on", "SIGHUP handled", "reloaded", "not reloaded"];
                if wanted.iter().any(|w| line.contains(w)) && tx.send(line).is_err() {
                    break;
                }
            }
        });
        let mut gw = Gateway {
            child,
            lines,
            url: String::new(),
        };
        let line = gw.line_with("listening on ")?;
        gw.url = line
            .split_once("listening on ")
            .map(|(_, url)| url.trim().to_string())
            .ok_or("no url")?;
        Ok(gw)
    }

    fn line_with(&mut self, text: &str) -> Result<String, String> {
        let deadline = Instant::now() + WAIT;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            let line = self
                .lines
                .recv_timeout(left)
                .map_err(|_| format!("no line with {text:?} from the gateway"))?;
            if line.contains(text) {
                return Ok(line);
            }
        }
    }

    fn hup(&self) {
        // SAFETY: kill(2) on the child this bench spawned.
        unsafe {
            libc::kill(self.child.id() as i32, libc::SIGHUP);
        }
    }
}

impl Drop for Gateway {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Ping the gateway until `stop`, recording each round trip.
fn bystander(
    url: String,
    stop: Arc<AtomicBool>,
    pings: Arc<Mutex<Vec<Ping>>>,
) -> Result<(), String> {
    let (mut ws, _) = tungstenite::connect(url.as_str()).map_err(|e| e.to_string())?;
    let next = |ws: &mut tungstenite::WebSocket<_>| -> Result<String, String> {
        loop {
            match ws.read().map_err(|e| e.to_string())? {
                tungstenite::Message::Text(text) => return Ok(text.to_string()),
                tungstenite::Message::Close(frame) => return Err(format!("closed: {frame:?}")),
                _ => continue,
            }
        }
    };
    next(&mut ws)?; // the welcome
    let auth = format!(r#"{{"type":"auth","id":"a","payload":{{"token":"{BYSTANDER_TOKEN}"}}}}"#);
    ws.send(tungstenite::Message::text(auth))
        .map_err(|e| e.to_string())?;
    let reply = next(&mut ws)?;
    if !reply.contains("auth_success") {
        return Err(format!("bystander auth: {reply}"));
    }
    let ping = r#"{"type":"ping","id":"p","payload":{}}"#;
    while !stop.load(Ordering::Relaxed) {
        let sent = Instant::now();
        ws.send(tungstenite::Message::text(ping))
            .map_err(|e| e.to_string())?;
        let reply = next(&mut ws)?;
        if !reply.contains("pong") {
            return Err(format!("bystander: {reply}"));
        }
        pings.lock().expect("pings").push((sent, Instant::now()));
    }
    Ok(())
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}

fn run() -> Result<(), String> {
    let fds = loadgen::raise_fd_limit();
    if fds < CONNS + 64 {
        return Err(format!("the open-file limit {fds} is below {}", CONNS + 64));
    }
    let dir = std::env::temp_dir().join(format!("gateway-reload-bench-{}", std::process::id()));
    std::fs::create_dir_all(&dir).map_err(|e| e.to_string())?;
    let conf = dir.join("gateway.conf");
    let write = |text: String| -> Result<(), String> {
        let mut file = std::fs::File::create(&conf).map_err(|e| e.to_string())?;
        file.write_all(text.as_bytes()).map_err(|e| e.to_string())
    };
    write(conf_text(None))?;
    let mut gw = Gateway::start(&conf)?;
    println!(
        "reload bench: {TOKENS} tokens in the file ({} KiB), {CONNS} connections",
        conf_text(None).len() / 1024
    );

    let target = Target::new(&gw.url, LOAD_TOKEN)?;
    let mut engine = Engine::new(&target)?;
    let t0 = Instant::now();
    engine.open_ready(CONNS, 512)?;
    println!(
        "  {CONNS} connections opened and authenticated in {:.2} s",
        t0.elapsed().as_secs_f64()
    );

    let stop = Arc::new(AtomicBool::new(false));
    let pings = Arc::new(Mutex::new(Vec::new()));
    let watcher = {
        let (url, stop, pings) = (gw.url.clone(), stop.clone(), pings.clone());
        std::thread::spawn(move || bystander(url, stop, pings))
    };
    // A quiet second for the baseline, the engine answering the server's Pings meanwhile.
    let quiet_end = Instant::now() + Duration::from_secs(1);
    while Instant::now() < quiet_end {
        engine.poll_once(Some(Duration::from_millis(10)))?;
    }
    let mut quiet: Vec<f64> = pings
        .lock()
        .expect("pings")
        .iter()
        .map(|(s, r)| ms(*r - *s))
        .collect();
    if quiet.is_empty() {
        return Err("the bystander got no pong".into());
    }
    quiet.sort_by(f64::total_cmp);
    println!(
        "  bystander ping, quiet: p50 {:.3} ms, max {:.3} ms ({} pings)",
        quiet[quiet.len() / 2],
        quiet[quiet.len() - 1],
        quiet.len()
    );

    let mut worst: f64 = 0.0;
    let mut closing: f64 = 0.0;
    for round in 0..ROUNDS {
        write(conf_text(Some(round)))?;
        let hup_at = Instant::now();
        gw.hup();
        // The core logs `configuration reloaded`, then the gateway `SIGHUP handled in`.
        let summary = gw.line_with("configuration reloaded")?;
        let handled = gw.line_with("SIGHUP handled in")?;
        let reloaded_at = Instant::now();
        // Pings a little past the reload, so that one overlapping its end has returned.
        let after = reloaded_at + Duration::from_millis(200);
        let give_up = after + WAIT;
        // Until then, and until a ping sent after then came back.
        while Instant::now() < after
            || !pings
                .lock()
                .expect("pings")
                .last()
                .is_some_and(|(s, _)| *s > after)
        {
            if Instant::now() > give_up {
                return Err("the bystander got no pong after the reload".into());
            }
            engine.poll_once(Some(Duration::from_millis(10)))?;
        }
        // Every round trip from the SIGHUP to 200 ms after the reload's log line: the
        // closes a reload asks for are done in the turns after it, and count too.
        let overlapping = pings
            .lock()
            .expect("pings")
            .iter()
            .filter(|(sent, got)| *got >= hup_at && *sent <= after)
            .map(|(s, r)| ms(*r - *s))
            .collect::<Vec<f64>>();
        let window = overlapping.len();
        let overlapping = overlapping.into_iter().fold(0.0, f64::max);
        let loop_ms: f64 = handled
            .split_once("SIGHUP handled in ")
            .and_then(|(_, rest)| rest.split_whitespace().next())
            .and_then(|n| n.parse().ok())
            .ok_or_else(|| format!("unreadable: {handled}"))?;
        // The last round's bystander figure is the cost of closing every connection (the
        // transport's close frames and the kernel's teardown), not of the reload: apart.
        worst = worst.max(loop_ms);
        if round + 1 < ROUNDS {
            worst = worst.max(overlapping);
        } else {
            closing = overlapping;
        }
        let what = summary
            .split_once("configuration reloaded: ")
            .map_or(summary.as_str(), |(_, rest)| rest);
        println!(
            "  round {}: loop busy {loop_ms:.3} ms with the SIGHUP ({}), slowest of the {window} bystander round trips from it to 200 ms after {overlapping:.3} ms; {what}",
            round + 1,
            handled
                .split_once('(')
                .and_then(|(_, rest)| rest.strip_suffix(')'))
                .unwrap_or("")
        );
    }
    stop.store(true, Ordering::Relaxed);
    let _ = watcher.join();
    let _ = std::fs::remove_dir_all(&dir);
    println!(
        "  worst stall of a reload {worst:.3} ms (loop busy, bystander in rounds 1-{}); target <= {TARGET_MS} ms: {}",
        ROUNDS - 1,
        if worst <= TARGET_MS { "met" } else { "MISSED" }
    );
    println!(
        "  closing all {CONNS} connections after the last reload held the bystander {closing:.3} ms"
    );
    Ok(())
}

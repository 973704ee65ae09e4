//! `cargo bench --bench jwt`: what one `auth` costs the loop in `auth_mode = jwt`, for each
//! algorithm (HS256, ES256, RS256 with a 2048-bit key, EdDSA), beside a `ping` baseline.
//!
//! Method: a gateway (`Gateway::bind`, port 0) on a thread of its own, one client connection
//! on this thread, authenticated once. Then, alternating on that connection, a JSON `ping` →
//! `pong` round trip and an `auth` → `auth_success` round trip (in jwt mode a repeated
//! `auth` is a refresh, so the token is verified every time), after a warm-up. Printed: the
//! median of each, and their difference, which is the extra time the gateway spends on an
//! `auth` over a `ping` (verification, the claims, the longer message), i.e. the time the
//! loop is busy with it. The runs alternate so that a drift of the machine moves both sides
//! alike. Nothing is asserted: the machine may be shared.
//!
//! Environment: `GATEWAY_JWT_BENCH_COUNT` (5000 round trips of each kind per algorithm).
//! Without `--bench` (as `cargo test --benches` runs it) it does one tiny smoke run.

use std::net::TcpStream;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use gateway::{AuthMode, Config, Gateway, JwtPublicKey};
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use serde_json::{json, Value};
use tungstenite::{Message, WebSocket};

const SECRET: &str = "bench-only-hs256-key-0123456789abcdef";

fn fixture(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/jwt")
        .join(name)
}

/// The gateway config and a signed token for `alg`.
fn setup(alg: Algorithm) -> (Config, String) {
    let mut config = Config {
        port: 0,
        auth_mode: AuthMode::Jwt,
        log_level: log::LevelFilter::Error,
        ..Config::default()
    };
    let pem = |name| std::fs::read(fixture(name)).expect("fixture key");
    let key = match alg {
        Algorithm::HS256 => {
            config.jwt_secret = Some(SECRET.into());
            EncodingKey::from_secret(SECRET.as_bytes())
        }
        Algorithm::RS256 => {
            config.jwt_public_key = Some(JwtPublicKey::read(fixture("rsa.pub.pem")).unwrap());
            EncodingKey::from_rsa_pem(&pem("rsa.key.pem")).unwrap()
        }
        Algorithm::ES256 => {
            config.jwt_public_key = Some(JwtPublicKey::read(fixture("ec.pub.pem")).unwrap());
            EncodingKey::from_ec_pem(&pem("ec.key.pem")).unwrap()
        }
        Algorithm::EdDSA => {
            config.jwt_public_key = Some(JwtPublicKey::read(fixture("ed.pub.pem")).unwrap());
            EncodingKey::from_ed_pem(&pem("ed.key.pem")).unwrap()
        }
        other => panic!("no bench for {other:?}"),
    };
    let exp = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs()
        + 3600;
    let claims = json!({"sub": "bench", "exp": exp, "iss": "bench-issuer"});
    let token = jsonwebtoken::encode(&Header::new(alg), &claims, &key).unwrap();
    (config, token)
}

/// Send `text` and wait for the reply, which must be of `reply_type`; the round trip.
fn round_trip(ws: &mut WebSocket<TcpStream>, text: &str, reply_type: &str) -> Duration {
    let start = Instant::now();
    ws.send(Message::text(text.to_string())).expect("send");
    loop {
        match ws.read().expect("read") {
            Message::Text(reply) => {
                let elapsed = start.elapsed();
                let reply: Value = serde_json::from_str(reply.as_str()).unwrap();
                assert_eq!(reply["type"], reply_type, "{reply}");
                return elapsed;
            }
            _ => continue,
        }
    }
}

fn median(mut samples: Vec<Duration>) -> Duration {
    samples.sort_unstable();
    samples[samples.len() / 2]
}

/// (ping median, auth median) over `count` alternating round trips of each.
fn measure(alg: Algorithm, count: usize) -> (Duration, Duration, usize) {
    let (config, token) = setup(alg);
    let mut gw = Gateway::bind(config).expect("bind");
    let url = gw.url();
    let addr = gw.local_addr();
    let handle = gw.handle();
    let server = std::thread::spawn(move || gw.run());
    let stream = TcpStream::connect(addr).expect("connect");
    stream.set_nodelay(true).expect("nodelay");
    let (mut ws, _) = tungstenite::client(url.as_str(), stream).expect("upgrade");
    ws.read().expect("welcome");
    let ping = json!({"type": "ping", "id": "p", "payload": {}}).to_string();
    let auth = json!({"type": "auth", "id": "a", "payload": {"token": token}}).to_string();
    round_trip(&mut ws, &auth, "auth_success");
    let warmup = (count / 10).max(1);
    let (mut pings, mut auths) = (Vec::with_capacity(count), Vec::with_capacity(count));
    for i in 0..warmup + count {
        let p = round_trip(&mut ws, &ping, "pong");
        let a = round_trip(&mut ws, &auth, "auth_success");
        if i >= warmup {
            pings.push(p);
            auths.push(a);
        }
    }
    let _ = ws.close(None);
    let _ = handle.shutdown();
    let _ = server.join();
    (median(pings), median(auths), token.len())
}

fn main() {
    let bench = std::env::args().any(|a| a == "--bench");
    let count = if bench {
        std::env::var("GATEWAY_JWT_BENCH_COUNT")
            .ok()
            .and_then(|v| v.parse().ok())
            .unwrap_or(5000)
    } else {
        20
    };
    println!("auth in auth_mode = jwt: median round trips over {count} of each, alternating on one connection");
    println!(
        "{:<8} {:>7} {:>10} {:>10} {:>14}",
        "alg", "token", "ping", "auth", "auth - ping"
    );
    for (name, alg) in [
        ("HS256", Algorithm::HS256),
        ("ES256", Algorithm::ES256),
        ("RS256", Algorithm::RS256),
        ("EdDSA", Algorithm::EdDSA),
    ] {
        let (ping, auth, token_len) = measure(alg, count);
        let extra = auth.saturating_sub(ping);
        println!(
            "{name:<8} {:>6}B {:>8.1}us {:>8.1}us {:>12.1}us",
            token_len,
            ping.as_secs_f64() * 1e6,
            auth.as_secs_f64() * 1e6,
            extra.as_secs_f64() * 1e6
        );
    }
    println!(
        "RS256 uses a 2048-bit key; `auth - ping` is the loop time of one auth beyond a ping's."
    );
}

//! Nodes of a cluster for tests: in-process gateways on one test's own `redis-server`, with
//! a short heartbeat (so that a node serves soon after it starts) and the default broker
//! timeout, with a long node_dead_ms, so that a loaded machine makes no node dead.

use std::time::{Duration, Instant};

use gateway::Config;
use serde_json::Value;

use super::redis::RedisServer;
use super::*;

/// A node of the cluster that uses `redis` (see the module docs for its timers).
pub fn node_config(redis: &RedisServer, node: &str) -> Config {
    let mut config = with_token(test_config(), "carol", TOKEN_CAROL);
    config.cluster_redis = Some(gateway::RedisUrl::parse(&redis.url()).expect("url"));
    config.node_id = Some(node.to_string());
    config.broker_timeout_ms = 2000;
    config.node_heartbeat_ms = 200;
    config.node_dead_ms = 10_000;
    config
}

/// Start a node and wait until it serves cluster requests.
pub fn node(redis: &RedisServer, name: &str, tweak: impl FnOnce(&mut Config)) -> TestGateway {
    let mut config = node_config(redis, name);
    tweak(&mut config);
    let gw = TestGateway::start(config);
    wait_broker(&gw, "ok");
    gw
}

/// Wait until `/health` says the broker is `state` (`ok` or `down`).
pub fn wait_broker(gw: &TestGateway, state: &str) {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let (_, body) = gw.http_get("/health");
        let health: Value = serde_json::from_str(&body).expect("health JSON");
        if health["cluster"]["broker"] == state {
            return;
        }
        assert!(Instant::now() < deadline, "broker not {state}: {health}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// A TCP proxy in front of `redis` that passes everything at once but what Redis sends to a
/// node's command connection (the one named `...-cmd`), which it holds back for `delay`: so
/// a script's reply reaches the node after the events the script published. Its threads end
/// with the test process.
pub struct SlowCommandsProxy {
    pub port: u16,
}

impl SlowCommandsProxy {
    pub fn start(redis: &RedisServer, delay: Duration) -> SlowCommandsProxy {
        use std::net::{TcpListener, TcpStream};
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
        let port = listener.local_addr().expect("addr").port();
        let upstream = redis.addr;
        std::thread::spawn(move || {
            for client in listener.incoming() {
                let Ok(client) = client else { return };
                let Ok(server) = TcpStream::connect(upstream) else {
                    continue;
                };
                let is_command = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
                // Node to Redis: at once, noting which connection this is.
                let (mut from, mut to) = (
                    client.try_clone().expect("clone"),
                    server.try_clone().expect("clone"),
                );
                let flag = std::sync::Arc::clone(&is_command);
                std::thread::spawn(move || {
                    let mut buf = [0u8; 65536];
                    let mut seen = Vec::new();
                    while let Ok(n) = std::io::Read::read(&mut from, &mut buf) {
                        if n == 0 || std::io::Write::write_all(&mut to, &buf[..n]).is_err() {
                            break;
                        }
                        if seen.len() < 4096 {
                            seen.extend_from_slice(&buf[..n]);
                            if seen.windows(4).any(|w| w == b"-cmd") {
                                flag.store(true, std::sync::atomic::Ordering::SeqCst);
                            }
                        }
                    }
                    let _ = to.shutdown(std::net::Shutdown::Write);
                });
                // Redis to node: each chunk written `delay` after it came, in order, on the
                // command connection; at once on the others.
                let (mut from, mut to) = (server, client);
                let (chunks, due) = std::sync::mpsc::channel::<(Instant, Vec<u8>)>();
                std::thread::spawn(move || {
                    let mut buf = [0u8; 65536];
                    while let Ok(n) = std::io::Read::read(&mut from, &mut buf) {
                        if n == 0 {
                            break;
                        }
                        let at = if is_command.load(std::sync::atomic::Ordering::SeqCst) {
                            Instant::now() + delay
                        } else {
                            Instant::now()
                        };
                        if chunks.send((at, buf[..n].to_vec())).is_err() {
                            break;
                        }
                    }
                });
                std::thread::spawn(move || {
                    for (at, bytes) in due {
                        std::thread::sleep(at.saturating_duration_since(Instant::now()));
                        if std::io::Write::write_all(&mut to, &bytes).is_err() {
                            break;
                        }
                    }
                    let _ = to.shutdown(std::net::Shutdown::Write);
                });
            }
        });
        SlowCommandsProxy { port }
    }
}

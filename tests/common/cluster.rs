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

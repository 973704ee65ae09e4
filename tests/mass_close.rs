//! Many connections closed in one turn of the loop: a reload through
//! `GatewayHandle::reload` that revokes the token thousands of connections use. Every one of
//! them gets its 1008 close frame and leaves the open count, and a bystander's pings are
//! answered promptly while the closes are in progress.

mod common;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::*;
use gateway::Config;
use serde_json::json;

/// Connections whose token the reload revokes.
const CONNS: usize = 2_000;
/// Their token (user `load`).
const LOAD_TOKEN: &str = "secret-load";
/// The slowest bystander round trip allowed while the closes are in progress.
const BOUND: Duration = Duration::from_millis(500);

/// The test configuration, with room for `CONNS` connections of one user, and the load
/// token while `with_load`.
fn config(with_load: bool) -> Config {
    let mut config = test_config();
    config.max_connections = CONNS + 64;
    config.max_connections_per_user = CONNS + 64;
    if with_load {
        config = with_token(config, "load", LOAD_TOKEN);
    }
    config
}

/// Round trips of `ping` on `client` until `stop`, each as (sent, answered).
fn ping_until(mut client: Client, stop: Arc<AtomicBool>) -> Vec<(Instant, Instant)> {
    let mut trips = Vec::new();
    while !stop.load(Ordering::Relaxed) {
        let sent = Instant::now();
        let reply = client.request("ping", json!({}));
        assert_eq!(reply["type"], "pong", "{reply}");
        trips.push((sent, Instant::now()));
    }
    trips
}

/// `CONNS` connections authenticated with the load token.
fn open_load(gw: &TestGateway) -> Vec<RawWs> {
    // The upgrade and the `auth` in one write, then the `auth_success`.
    let auth = json!({"type": "auth", "id": "a", "payload": {"token": LOAD_TOKEN}});
    let auth = frame(1, true, auth.to_string().as_bytes(), true);
    let load: Vec<RawWs> = (0..CONNS)
        .map(|_| {
            let mut raw = RawWs::open_with(gw, &auth);
            let reply = raw.read_json().expect("auth reply");
            assert_eq!(reply["type"], "auth_success", "{reply}");
            raw
        })
        .collect();
    assert_eq!(
        gw.metric("gateway_connections_open"),
        Some(CONNS as f64),
        "all open"
    );
    load
}

#[test]
fn a_reload_revoking_thousands_of_connections_closes_each_while_the_loop_serves_others() {
    let gw = TestGateway::start(config(true));
    let mut load = open_load(&gw);

    let stop = Arc::new(AtomicBool::new(false));
    let bystander = {
        let (client, stop) = (Client::authed(&gw, TOKEN), stop.clone());
        std::thread::spawn(move || ping_until(client, stop))
    };
    let started = Instant::now();
    gw.handle.reload(config(false)).expect("reload");
    // Every revoked connection gets its close frame; each answers it, as a peer should.
    for (i, raw) in load.iter_mut().enumerate() {
        let close = raw.read_close();
        assert_eq!(
            close,
            Some((1008, "Token revoked".to_string())),
            "connection {i} of {CONNS}"
        );
        raw.send(&frame(8, true, &1008u16.to_be_bytes(), true));
    }
    let closed = Instant::now();
    drop(load);
    // The app heard each close; the server had each one's close frame and end of stream,
    // and removed its socket (left: the bystander's and the metrics request's own).
    assert_eq!(
        gw.metric("gateway_connections_closed_total{reason=\"app\"}"),
        Some(CONNS as f64)
    );
    assert_eq!(gw.metric("gateway_connections_open"), Some(1.0));
    assert!(
        eventually(|| gw.metric("gateway_sockets_open") == Some(2.0)),
        "sockets: {:?}",
        gw.metric("gateway_sockets_open")
    );
    let done = Instant::now();
    stop.store(true, Ordering::Relaxed);
    let trips = bystander
        .join()
        .expect("the bystander's pings all answered");

    // Every round trip that overlapped the closes, from the reload to the last socket gone.
    let during: Vec<Duration> = trips
        .iter()
        .filter(|(sent, answered)| *answered >= started && *sent <= done)
        .map(|(sent, answered)| *answered - *sent)
        .collect();
    let slowest = during.iter().max().copied().unwrap_or_default();
    assert!(
        !during.is_empty(),
        "no bystander ping overlapped the closes"
    );
    assert!(
        slowest <= BOUND,
        "the bystander waited {slowest:?} for a pong while {CONNS} connections closed \
         (closes read in {:?}, {} round trips)",
        closed - started,
        during.len()
    );
}

#[test]
fn a_shutdown_without_a_close_timeout_still_sends_every_close_frame() {
    // No wait for the peers' close frames: the loop stops in the turn that closes them all.
    let mut config = config(true);
    config.close_timeout_ms = 0;
    let mut gw = TestGateway::start(config);
    let mut load = open_load(&gw);
    gw.stop();
    for (i, raw) in load.iter_mut().enumerate() {
        assert_eq!(
            raw.read_close(),
            Some((1001, "Server shutting down".to_string())),
            "connection {i} of {CONNS}"
        );
    }
}

//! `reuse_port`: loops bound with it to the same address all get connections from the
//! kernel; without it the second bind is refused with `AddrInUse`. Over real sockets on
//! 127.0.0.1, for the transport's `Reactor` and for the `Gateway` built from a `Config`.

mod common;

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use common::{raw_http, split_response, test_config, ReactorThread, TestGateway};
use gateway::transport::{
    Actions, App, CloseReason, ConnId, HttpResponse, Reactor, TransportConfig, TransportStats,
};
use gateway::Gateway;

/// An app that answers `GET /who` with its name.
struct Named(&'static str);

impl App for Named {
    type Command = ();
    type Event = ();

    fn on_open(&mut self, _: ConnId, _: Instant, _: &mut Actions<()>) {}
    fn on_message(&mut self, _: ConnId, _: &[u8], _: bool, _: Instant, _: &mut Actions<()>) {}
    fn on_close(&mut self, _: ConnId, _: CloseReason, _: Instant, _: &mut Actions<()>) {}
    fn on_command(&mut self, _: (), _: Instant, _: &mut Actions<()>) {}

    fn http_get(&mut self, path: &str, _: &TransportStats, _: Instant) -> Option<HttpResponse> {
        (path == "/who").then(|| HttpResponse {
            status: 200,
            content_type: "text/plain",
            body: self.0.as_bytes().to_vec(),
        })
    }
}

fn config(addr: SocketAddr, reuse_port: bool) -> TransportConfig {
    let mut config = TransportConfig::new(addr);
    config.reuse_port = reuse_port;
    config
}

#[test]
fn two_reactors_with_reuse_port_share_a_port_and_both_accept() {
    let a = Reactor::bind(config("127.0.0.1:0".parse().unwrap(), true), Named("a")).expect("a");
    let addr = a.local_addr();
    let b = Reactor::bind(config(addr, true), Named("b")).expect("b on the same port");
    assert_eq!(b.local_addr(), addr);
    let (_a, _b) = (ReactorThread::start(a), ReactorThread::start(b));

    // Each new connection goes to one of them: ask until both have answered.
    let (mut by_a, mut by_b) = (0, 0);
    let deadline = Instant::now() + Duration::from_secs(10);
    while (by_a == 0 || by_b == 0) && Instant::now() < deadline {
        let response = raw_http(addr, b"GET /who HTTP/1.1\r\nHost: x\r\n\r\n");
        match split_response(&response) {
            (200, name) if name == "a" => by_a += 1,
            (200, name) if name == "b" => by_b += 1,
            other => panic!("{other:?}"),
        }
    }
    assert!(by_a > 0 && by_b > 0, "both accepted: a {by_a}, b {by_b}");
}

#[test]
fn without_reuse_port_a_second_reactor_cannot_bind() {
    let a = Reactor::bind(config("127.0.0.1:0".parse().unwrap(), false), Named("a")).expect("a");
    let addr = a.local_addr();
    for reuse_port in [false, true] {
        let err = Reactor::bind(config(addr, reuse_port), Named("b")).err();
        let kind = err.map(|e| e.kind());
        assert_eq!(kind, Some(std::io::ErrorKind::AddrInUse), "{reuse_port}");
    }
}

#[test]
fn the_gateway_binds_with_the_reuse_port_key() {
    let mut config = test_config();
    config.reuse_port = true;
    let first = TestGateway::start(config.clone());
    config.port = first.addr.port();
    let second = TestGateway::start(config.clone());
    assert_eq!(second.addr, first.addr);
    for _ in 0..20 {
        let (status, _) = split_response(&raw_http(first.addr, b"GET /health HTTP/1.1\r\n\r\n"));
        assert_eq!(status, 200);
    }

    config.reuse_port = false;
    match Gateway::bind(config) {
        Err(gateway::Error::Bind { source, .. }) => {
            assert_eq!(source.kind(), std::io::ErrorKind::AddrInUse)
        }
        other => panic!("a bind error, not {:?}", other.map(|_| ())),
    }
}

//! An echo server on the gateway's reactor: every text and binary message that arrives at
//! `ws://ADDR/` is sent back unchanged. Conformance suites (Autobahn) run against it.
//!
//! ```text
//! cargo run --release --example echo_server -- 127.0.0.1:9001
//! ```

use std::net::SocketAddr;
use std::time::Instant;

use gateway::transport::{Actions, App, CloseReason, ConnId, Reactor, TransportConfig};

/// The echo core: no state at all.
struct Echo;

impl App for Echo {
    type Command = ();
    type Event = ();

    fn on_open(&mut self, _conn: ConnId, _now: Instant, _out: &mut Actions<()>) {}

    fn on_message(
        &mut self,
        conn: ConnId,
        data: &[u8],
        binary: bool,
        _now: Instant,
        out: &mut Actions<()>,
    ) {
        let msg = out.stage_bytes(data, binary);
        out.send(conn, &msg);
    }

    fn on_close(&mut self, _: ConnId, _: CloseReason, _: Instant, _: &mut Actions<()>) {}

    fn on_command(&mut self, _: (), _: Instant, _: &mut Actions<()>) {}
}

fn main() {
    let addr: SocketAddr = match std::env::args()
        .nth(1)
        .unwrap_or_else(|| "127.0.0.1:9001".into())
        .parse()
    {
        Ok(addr) => addr,
        Err(e) => {
            eprintln!("echo_server: expected an address like 127.0.0.1:9001: {e}");
            std::process::exit(2);
        }
    };
    let mut config = TransportConfig::new(addr);
    config.path = "/".to_string();
    // Conformance cases send messages up to 16 MiB and expect them echoed whole.
    config.max_payload = 64 * 1024 * 1024;
    config.max_outbound_buffer = 256 * 1024 * 1024;
    config.heartbeat_interval = None;
    config.client_timeout = None;
    let mut reactor = match Reactor::bind(config, Echo) {
        Ok(reactor) => reactor,
        Err(e) => {
            eprintln!("echo_server: cannot listen on {addr}: {e}");
            std::process::exit(1);
        }
    };
    if let Err(e) = reactor.shutdown_on_signals() {
        eprintln!("echo_server: cannot watch for signals: {e}");
        std::process::exit(1);
    }
    eprintln!("echo_server: listening on ws://{}/", reactor.local_addr());
    if let Err(e) = reactor.run() {
        eprintln!("echo_server: {e}");
        std::process::exit(1);
    }
}

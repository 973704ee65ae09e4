//! An echo server on the gateway's reactor: every text and binary message that arrives at
//! `ws://ADDR/` is sent back unchanged. Conformance suites (Autobahn) run against it. With
//! `--tls-cert C --tls-key K` (PEM files) after the address it serves `wss://ADDR/` instead.
//!
//! ```text
//! cargo run --release --example echo_server -- 127.0.0.1:9001
//! cargo run --release --example echo_server -- 127.0.0.1:9443 --tls-cert cert.pem --tls-key key.pem
//! ```

use std::net::SocketAddr;
use std::time::Instant;

use gateway::transport::{Actions, App, CloseReason, ConnId, Reactor, TlsServer, TransportConfig};
use gateway::{TlsCertificates, TlsPrivateKey};

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

/// Exit 2 with `message`.
fn usage(message: &str) -> ! {
    eprintln!("echo_server: {message}");
    eprintln!("usage: echo_server [ADDR [--tls-cert CERT.pem --tls-key KEY.pem]]");
    std::process::exit(2);
}

/// The TLS server of the `--tls-cert` and `--tls-key` files, if given.
fn tls(cert: Option<String>, key: Option<String>) -> Option<TlsServer> {
    let (cert, key) = match (cert, key) {
        (None, None) => return None,
        (Some(cert), Some(key)) => (cert, key),
        _ => usage("--tls-cert and --tls-key go together"),
    };
    let cert = TlsCertificates::read(&cert).unwrap_or_else(|e| usage(&e));
    let key = TlsPrivateKey::read(&key).unwrap_or_else(|e| usage(&e));
    match TlsServer::new(cert.ders(), key.der(), key.format(), &[]) {
        Ok(server) => Some(server),
        Err(e) => usage(&e),
    }
}

fn main() {
    let mut args = std::env::args().skip(1);
    let addr: SocketAddr = match args
        .next()
        .unwrap_or_else(|| "127.0.0.1:9001".into())
        .parse()
    {
        Ok(addr) => addr,
        Err(e) => usage(&format!("expected an address like 127.0.0.1:9001: {e}")),
    };
    let (mut cert, mut key) = (None, None);
    while let Some(flag) = args.next() {
        let slot = match flag.as_str() {
            "--tls-cert" => &mut cert,
            "--tls-key" => &mut key,
            other => usage(&format!("unknown argument {other:?}")),
        };
        *slot = Some(
            args.next()
                .unwrap_or_else(|| usage(&format!("{flag} needs a file"))),
        );
    }
    let mut config = TransportConfig::new(addr);
    config.tls = tls(cert, key);
    let scheme = if config.tls.is_some() { "wss" } else { "ws" };
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
    eprintln!(
        "echo_server: listening on {scheme}://{}/",
        reactor.local_addr()
    );
    if let Err(e) = reactor.run() {
        eprintln!("echo_server: {e}");
        std::process::exit(1);
    }
}

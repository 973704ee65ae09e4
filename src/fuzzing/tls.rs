//! Fuzzes what a peer can send a TLS listener before its handshake is done: a server session
//! (`transport::tls`, the fixture certificate) fed the bytes after the first three, in pieces
//! whose sizes bytes 0 to 2 pick; and the X.509 summary `--check` prints
//! (`config::x509::summarize`) on the whole input.
//!
//! Checks: no panic; no plaintext comes out (no input completes a handshake: it would need the
//! server's random); once a feed fails, every later one fails; the ciphertext queued for the
//! peer stays within one handshake flight; a summary's names and subject are made of the
//! input's bytes (each at most as long as the input).

use std::sync::OnceLock;

use crate::transport::tls::{Fed, TlsKeyFormat, TlsServer};

/// The server every input is fed to (its key is parsed once).
fn server() -> &'static TlsServer {
    static SERVER: OnceLock<TlsServer> = OnceLock::new();
    SERVER.get_or_init(|| {
        let der = |pem_text: &[u8]| pem::parse(pem_text).expect("a fixture").into_contents();
        let cert = der(include_bytes!("../../tests/fixtures/tls/cert.pem"));
        let key = der(include_bytes!("../../tests/fixtures/tls/key.pem"));
        TlsServer::new(&[cert], &key, TlsKeyFormat::Pkcs8, &[]).expect("the fixture pair")
    })
}

/// Runs one input: returns when it holds, panics when a check fails.
pub fn run(data: &[u8]) {
    if let Some(summary) = crate::config::x509::summarize(data) {
        for name in &summary.names {
            assert!(name.len() <= 4 * data.len(), "{summary:?}");
        }
        assert!(summary.subject.len() <= 4 * data.len() + 16, "{summary:?}");
    }
    let (sizes, stream) = data.split_at(data.len().min(3));
    let mut session = server().session().expect("a session");
    let mut input = stream.to_vec();
    let mut rest = &mut input[..];
    let mut plain = Vec::new();
    let mut failed = false;
    let mut i = 0;
    while !rest.is_empty() {
        let size = 1 + usize::from(sizes.get(i % 3).copied().unwrap_or(255)) * 64;
        i += 1;
        let (piece, after) = rest.split_at_mut(size.min(rest.len()));
        match session.feed(piece, &mut plain) {
            Fed::Failed(_) => failed = true,
            Fed::Ok | Fed::Closed => assert!(!failed, "a failed session took more input"),
        }
        assert!(plain.is_empty(), "plaintext before a handshake");
        rest = after;
    }
    let mut out = Vec::new();
    while session.wants_write() {
        session.write_tls(&mut out).expect("a Vec takes everything");
    }
    assert!(out.len() <= 64 * 1024, "{} bytes queued", out.len());
}

//! `wss://` on the gateway itself (PROTOCOL section 14), against real TLS clients: Python
//! `websockets` with an `ssl` context trusting a test CA, `openssl s_client` (versions, ALPN,
//! client certificates), Node `ws`, a rustls client under tungstenite, and plain clients that
//! speak no TLS. The hostile cases (a handshake that never ends, a reset in the middle of one,
//! a slow consumer) and a reload of the certificate run over TLS too. The certificates are
//! made by `openssl` for each test in a directory of its own.
#![cfg(feature = "tls")]

mod common;

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::binary::Binary;
use common::*;
use gateway::{Config, TlsCertificates, TlsPrivateKey};
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use rustls::{ClientConfig, ClientConnection, RootCertStore, StreamOwned};
use serde_json::{json, Value};
use tungstenite::{Message, WebSocket};

/// A test CA, a server certificate for `localhost` and `127.0.0.1` signed by it, and a client
/// certificate signed by it, in a directory removed on drop.
struct Certs {
    dir: PathBuf,
}

/// Run `openssl` with `args` in `dir`; panics with its output when it fails.
fn openssl(dir: &Path, args: &[&str]) {
    let out = Command::new("openssl")
        .args(args)
        .current_dir(dir)
        .output()
        .expect("openssl runs");
    assert!(
        out.status.success(),
        "openssl {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

impl Certs {
    fn new() -> Certs {
        static NEXT: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
        let n = NEXT.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        let dir = std::env::temp_dir().join(format!("gateway-tls-{}-{n}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let certs = Certs { dir };
        let ec = [
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:P-256",
            "-nodes",
        ];
        let ca = [
            &["req", "-x509"][..],
            &ec,
            &["-keyout", "ca.key", "-out", "ca.pem"],
        ]
        .concat();
        openssl(
            &certs.dir,
            &[&ca[..], &["-days", "2", "-subj", "/CN=gateway test CA"]].concat(),
        );
        certs.signed(
            "server",
            "/CN=localhost",
            "DNS:localhost,IP:127.0.0.1",
            "serverAuth",
        );
        certs.signed("client", "/CN=test client", "DNS:client.test", "clientAuth");
        certs
    }

    /// `NAME.pem` and `NAME.key`: a certificate for `san` with a P-256 key, signed by the CA.
    fn signed(&self, name: &str, subject: &str, san: &str, usage: &str) {
        let p256 = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256"];
        self.signed_with(name, &p256, subject, san, usage);
    }

    /// [`Certs::signed`] with the key `new_key` (the `openssl req` arguments that make it).
    fn signed_with(&self, name: &str, new_key: &[&str], subject: &str, san: &str, usage: &str) {
        let key = format!("{name}.key");
        let csr = format!("{name}.csr");
        let pem = format!("{name}.pem");
        let ext = format!("{name}.ext");
        std::fs::write(
            self.dir.join(&ext),
            format!("subjectAltName={san}\nextendedKeyUsage={usage}\nbasicConstraints=CA:FALSE\n"),
        )
        .unwrap();
        let request = ["-nodes", "-keyout", &key, "-out", &csr, "-subj", subject];
        openssl(&self.dir, &[&["req"][..], new_key, &request].concat());
        openssl(
            &self.dir,
            &[
                "x509",
                "-req",
                "-in",
                &csr,
                "-CA",
                "ca.pem",
                "-CAkey",
                "ca.key",
                "-CAcreateserial",
                "-days",
                "2",
                "-out",
                &pem,
                "-extfile",
                &ext,
            ],
        );
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.join(name)
    }

    fn arg(&self, name: &str) -> String {
        self.path(name).display().to_string()
    }

    /// The DER of the first certificate of `NAME.pem`.
    fn der(&self, name: &str) -> Vec<u8> {
        TlsCertificates::read(self.path(name)).unwrap().ders()[0].clone()
    }

    /// [`test_config`] serving the server certificate.
    fn config(&self) -> Config {
        let mut config = test_config();
        config.tls_cert = Some(TlsCertificates::read(self.path("server.pem")).unwrap());
        config.tls_key = Some(TlsPrivateKey::read(self.path("server.key")).unwrap());
        config
    }

    /// A rustls client trusting the CA, with the client certificate when `with_cert`.
    fn client(&self, with_cert: bool) -> Arc<ClientConfig> {
        let mut roots = RootCertStore::empty();
        roots.add(CertificateDer::from(self.der("ca.pem"))).unwrap();
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let builder = ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_root_certificates(roots);
        let mut config = if with_cert {
            let chain = vec![CertificateDer::from(self.der("client.pem"))];
            let key = TlsPrivateKey::read(self.path("client.key")).unwrap();
            let key = PrivateKeyDer::try_from(key.der().to_vec()).unwrap();
            builder.with_client_auth_cert(chain, key).unwrap()
        } else {
            builder.with_no_client_auth()
        };
        config.alpn_protocols = vec![b"http/1.1".to_vec()];
        Arc::new(config)
    }
}

impl Drop for Certs {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

type Tls = StreamOwned<ClientConnection, TcpStream>;

/// A TLS connection to `addr` for `localhost`, its handshake done.
fn tls_connect(addr: SocketAddr, config: Arc<ClientConfig>) -> std::io::Result<Tls> {
    let sock = TcpStream::connect(addr)?;
    sock.set_read_timeout(Some(WAIT))?;
    sock.set_nodelay(true)?;
    let name = ServerName::try_from("localhost").unwrap();
    let conn = ClientConnection::new(config, name).unwrap();
    let mut tls = StreamOwned::new(conn, sock);
    while tls.conn.is_handshaking() {
        tls.conn.complete_io(&mut tls.sock)?;
    }
    Ok(tls)
}

/// A WebSocket over TLS, its welcome read.
struct Wss {
    ws: WebSocket<Tls>,
}

impl Wss {
    fn open(addr: SocketAddr, config: Arc<ClientConfig>) -> Result<Wss, String> {
        let tls = tls_connect(addr, config).map_err(|e| e.to_string())?;
        let url = format!("wss://localhost:{}/ws", addr.port());
        let (ws, _) = tungstenite::client::client(url, tls).map_err(|e| e.to_string())?;
        let mut wss = Wss { ws };
        let welcome = wss.recv();
        assert_eq!(welcome["type"], "session_info", "{welcome}");
        Ok(wss)
    }

    fn authed(addr: SocketAddr, config: Arc<ClientConfig>, token: &str) -> Wss {
        let mut wss = Wss::open(addr, config).expect("wss");
        let reply = wss.request("auth", json!({ "token": token }));
        assert_eq!(reply["type"], "auth_success", "{reply}");
        wss
    }

    fn send(&mut self, value: &Value) {
        self.ws
            .send(Message::text(value.to_string()))
            .expect("send");
    }

    fn request(&mut self, msg_type: &str, payload: Value) -> Value {
        let id = next_id();
        self.send(&json!({ "type": msg_type, "id": id, "payload": payload }));
        let reply = self.recv();
        assert_eq!(reply["replyTo"], id.as_str(), "{reply}");
        reply
    }

    fn recv(&mut self) -> Value {
        loop {
            match self.ws.read().expect("a message") {
                Message::Text(text) => return serde_json::from_str(text.as_str()).unwrap(),
                Message::Close(frame) => panic!("closed: {frame:?}"),
                _ => continue,
            }
        }
    }

    /// The certificate the server presented.
    fn server_cert(&self) -> Vec<u8> {
        let conn = &self.ws.get_ref().conn;
        conn.peer_certificates().expect("a certificate")[0].to_vec()
    }
}

/// Whether the peer of `sock` closes it within `WAIT` without sending an HTTP response;
/// returns what it sent before closing.
fn read_to_close(sock: &mut TcpStream) -> Vec<u8> {
    sock.set_read_timeout(Some(WAIT)).unwrap();
    let deadline = Instant::now() + WAIT;
    let mut got = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        assert!(Instant::now() < deadline, "not closed within {WAIT:?}");
        match sock.read(&mut buf) {
            Ok(0) => return got,
            Ok(n) => got.extend_from_slice(&buf[..n]),
            Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => return got,
            Err(e) => panic!("read: {e}"),
        }
    }
}

/// A GET of `path` over TLS; returns (status, body).
fn https_get(addr: SocketAddr, config: Arc<ClientConfig>, path: &str) -> (u16, String) {
    let mut tls = tls_connect(addr, config).expect("TLS");
    write!(tls, "GET {path} HTTP/1.1\r\nHost: localhost\r\n\r\n").unwrap();
    tls.flush().unwrap();
    let mut response = Vec::new();
    match tls.read_to_end(&mut response) {
        Ok(_) => {}
        Err(e) => panic!(
            "https read: {e} after {:?}",
            String::from_utf8_lossy(&response)
        ),
    }
    split_response(&String::from_utf8_lossy(&response))
}

/// `openssl s_client` against `addr` with `args`, sending `input`; returns its stdout and
/// stderr together and whether it exited 0.
fn s_client(addr: SocketAddr, args: &[&str], input: &[u8]) -> (String, bool) {
    let mut child = Command::new("openssl")
        .arg("s_client")
        .arg("-connect")
        .arg(addr.to_string())
        .arg("-servername")
        .arg("localhost")
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("openssl s_client runs");
    child.stdin.take().unwrap().write_all(input).unwrap();
    let deadline = Instant::now() + WAIT;
    while child.try_wait().unwrap().is_none() {
        if Instant::now() > deadline {
            let _ = child.kill();
            panic!("s_client {args:?} did not end within {WAIT:?}");
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    let out = child.wait_with_output().unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (text, out.status.success())
}

/// Whether tools the test needs may be missing: outside CI a missing one skips the test with
/// a note; in CI (`CI` set) it fails it.
fn missing(what: &str) -> bool {
    assert!(std::env::var_os("CI").is_none(), "{what} is needed in CI");
    eprintln!("note: {what} is not available; the test is skipped");
    true
}

/// The Python of the virtualenv with `websockets` (`GATEWAY_TLS_VENV`, else
/// `target/tls-venv`, which `.ci/run` makes).
fn python() -> Option<PathBuf> {
    let venv = std::env::var_os("GATEWAY_TLS_VENV")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("target/tls-venv"));
    let python = venv.join("bin/python");
    python.exists().then_some(python)
}

const PY_CLIENT: &str = r#"
import asyncio, json, ssl, sys, urllib.request
url, ca, token, health = sys.argv[1:5]
ctx = ssl.create_default_context(cafile=ca)
async def main():
    import websockets
    async with websockets.connect(url, ssl=ctx) as ws:
        welcome = json.loads(await ws.recv())
        assert welcome["type"] == "session_info", welcome
        await ws.send(json.dumps({"type": "auth", "id": "a", "payload": {"token": token}}))
        assert json.loads(await ws.recv())["type"] == "auth_success"
        await ws.send(json.dumps({"type": "ping", "id": "p", "payload": {}}))
        pong = json.loads(await ws.recv())
        assert pong["type"] == "pong" and pong["replyTo"] == "p", pong
        print("negotiated", ws.transport.get_extra_info("ssl_object").version())
    body = json.loads(urllib.request.urlopen(health, context=ctx, timeout=5).read())
    print("health", body["status"], body["clients"])
asyncio.run(main())
"#;

#[test]
fn python_websockets_over_wss_and_health_over_https() {
    let Some(python) = python() else {
        let _ = missing("a virtualenv with Python websockets (target/tls-venv)");
        return;
    };
    let certs = Certs::new();
    let gw = TestGateway::start(certs.config());
    let url = format!("wss://localhost:{}/ws", gw.addr.port());
    let health = format!("https://localhost:{}/health", gw.addr.port());
    let out = Command::new(python)
        .args(["-c", PY_CLIENT, &url, &certs.arg("ca.pem"), TOKEN, &health])
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(stdout.contains("negotiated TLSv1.3"), "{stdout}");
    assert!(stdout.contains("health ok 0"), "{stdout}");
}

#[test]
fn openssl_s_client_versions_and_alpn() {
    let certs = Certs::new();
    let gw = TestGateway::start(certs.config());
    let ca = certs.arg("ca.pem");
    let get = b"GET /health HTTP/1.1\r\nHost: localhost\r\n\r\n";
    for version in ["-tls1_2", "-tls1_3"] {
        let (out, ok) = s_client(gw.addr, &[version, "-CAfile", &ca, "-ign_eof"], get);
        assert!(ok, "{version}: {out}");
        let name = if version == "-tls1_2" {
            "TLSv1.2"
        } else {
            "TLSv1.3"
        };
        assert!(out.contains(&format!("New, {name}")), "{version}: {out}");
        assert!(out.contains("Verify return code: 0 (ok)"), "{out}");
        assert!(out.contains("HTTP/1.1 200 OK"), "{version}: {out}");
        assert!(out.contains("\"service\":\"gateway\""), "{out}");
    }
    // TLS 1.1 and 1.0 are refused in the handshake.
    for old in ["-tls1_1", "-tls1"] {
        let (out, ok) = s_client(gw.addr, &[old, "-cipher", "DEFAULT@SECLEVEL=0"], get);
        assert!(!ok && !out.contains("HTTP/1.1"), "{old}: {out}");
        assert!(
            out.contains("alert") || out.contains("no protocols available"),
            "{old}: {out}"
        );
    }
    // ALPN: http/1.1 is chosen; a client offering none is served; one offering only h2 is not.
    let (out, ok) = s_client(
        gw.addr,
        &["-alpn", "h2,http/1.1", "-CAfile", &ca, "-ign_eof"],
        get,
    );
    assert!(ok && out.contains("ALPN protocol: http/1.1"), "{out}");
    let (out, ok) = s_client(gw.addr, &["-CAfile", &ca, "-ign_eof"], get);
    assert!(
        ok && out.contains("No ALPN negotiated") && out.contains("200 OK"),
        "{out}"
    );
    let (out, ok) = s_client(gw.addr, &["-alpn", "h2", "-CAfile", &ca], get);
    assert!(!ok && out.contains("no application protocol"), "{out}");
    // A bystander's handshake after all that.
    let (status, body) = https_get(gw.addr, certs.client(false), "/metrics");
    assert_eq!(status, 200);
    assert!(body.contains("gateway_"), "{body}");
}

#[test]
fn client_certificates_required_when_tls_client_ca_is_set() {
    let certs = Certs::new();
    let mut config = certs.config();
    config.tls_client_ca = Some(TlsCertificates::read(certs.path("ca.pem")).unwrap());
    let gw = TestGateway::start(config);
    let ca = certs.arg("ca.pem");
    let get = b"GET /health HTTP/1.1\r\nHost: localhost\r\n\r\n";
    let with = ["-CAfile", &ca, "-ign_eof"];
    let (out, _) = s_client(gw.addr, &with, get);
    assert!(
        !out.contains("HTTP/1.1 200"),
        "no certificate, no answer: {out}"
    );
    assert!(out.contains("certificate required"), "{out}");
    let (cert, key) = (certs.arg("client.pem"), certs.arg("client.key"));
    let (out, ok) = s_client(
        gw.addr,
        &[&with[..], &["-cert", &cert, "-key", &key]].concat(),
        get,
    );
    assert!(ok && out.contains("HTTP/1.1 200 OK"), "{out}");
    // A certificate of another CA is refused too.
    let other = Certs::new();
    let (cert, key) = (other.arg("client.pem"), other.arg("client.key"));
    let (out, _) = s_client(
        gw.addr,
        &[&with[..], &["-cert", &cert, "-key", &key]].concat(),
        get,
    );
    assert!(!out.contains("HTTP/1.1 200"), "{out}");
    // The rustls client: refused without its certificate, served with it.
    assert!(Wss::open(gw.addr, certs.client(false)).is_err());
    let mut wss = Wss::authed(gw.addr, certs.client(true), TOKEN);
    assert_eq!(wss.request("ping", json!({}))["type"], "pong");
}

#[test]
fn plain_http_and_plain_websocket_on_a_tls_port_get_no_http_response() {
    let certs = Certs::new();
    let gw = TestGateway::start(certs.config());
    for request in [
        "GET /health HTTP/1.1\r\nHost: localhost\r\n\r\n".to_string(),
        upgrade_request("/ws", ""),
    ] {
        let mut sock = TcpStream::connect(gw.addr).unwrap();
        sock.write_all(request.as_bytes()).unwrap();
        let got = read_to_close(&mut sock);
        assert!(
            !got.starts_with(b"HTTP/"),
            "{:?}",
            String::from_utf8_lossy(&got)
        );
        // A TLS alert record at most: content type 21.
        assert!(got.is_empty() || got[0] == 21, "{got:?}");
    }
    let (status, _) = https_get(gw.addr, certs.client(false), "/health");
    assert_eq!(status, 200);
}

const NODE_CLIENT: &str = r#"
const fs = require('fs');
const WebSocket = require(process.argv[1]);
const ws = new WebSocket(process.argv[2], { ca: fs.readFileSync(process.argv[3]) });
const timer = setTimeout(() => { console.log('timeout'); process.exit(1); }, 5000);
let step = 0;
ws.on('message', (data) => {
  const msg = JSON.parse(data.toString());
  if (step === 0 && msg.type === 'session_info') {
    step = 1;
    ws.send(JSON.stringify({ type: 'auth', id: 'a', payload: { token: process.argv[4] } }));
  } else if (step === 1 && msg.type === 'auth_success') {
    step = 2;
    ws.send(JSON.stringify({ type: 'ping', id: 'p', payload: {} }));
  } else if (step === 2 && msg.type === 'pong' && msg.replyTo === 'p') {
    console.log('pong over', ws._socket.getProtocol());
    clearTimeout(timer);
    ws.close(1000);
  } else {
    console.log('unexpected', JSON.stringify(msg));
    process.exit(1);
  }
});
ws.on('close', (code) => { console.log('closed', code); });
ws.on('error', (e) => { console.log('error', e.message); process.exit(1); });
"#;

#[test]
fn node_ws_over_wss() {
    // `npm install ws` into target/node-ws (`.ci/run` does); without network it may be absent.
    let module = Path::new(env!("CARGO_MANIFEST_DIR")).join("target/node-ws/node_modules/ws");
    if Command::new("node").arg("--version").output().is_err() || !module.exists() {
        eprintln!(
            "note: node or the ws module (target/node-ws) is not available; the test is skipped"
        );
        return;
    }
    let certs = Certs::new();
    let gw = TestGateway::start(certs.config());
    let url = format!("wss://localhost:{}/ws", gw.addr.port());
    let out = Command::new("node")
        .args(["-e", NODE_CLIENT])
        .arg(&module)
        .args([&url, &certs.arg("ca.pem"), TOKEN])
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(stdout.contains("pong over TLSv1.3"), "{stdout}");
    assert!(stdout.contains("closed 1000"), "{stdout}");
}

#[test]
fn a_tls_request_while_the_pending_handshakes_are_full_takes_the_place_of_the_oldest() {
    let certs = Certs::new();
    let mut config = certs.config();
    config.handshake_timeout_ms = 60_000;
    config.max_pending_handshakes = 2;
    let gw = TestGateway::start(config);
    // A TLS handshake begun and left, then a socket that sends nothing: both count.
    let mut slow = TcpStream::connect(gw.addr).unwrap();
    slow.write_all(&[0x16, 0x03, 0x01, 0x02, 0x00, 0x01])
        .unwrap();
    let _silent = TcpStream::connect(gw.addr).unwrap();
    // /health over TLS is answered, and the oldest (the TLS one) is closed long before its
    // deadline.
    assert!(eventually(|| gw.health_https(&certs).is_some()));
    assert!(read_to_close(&mut slow).is_empty());
}

#[test]
fn a_tls_handshake_that_never_ends_is_closed_at_the_handshake_deadline() {
    let certs = Certs::new();
    let mut config = certs.config();
    config.handshake_timeout_ms = 300;
    let gw = TestGateway::start(config);
    // A ClientHello's first bytes, then nothing; and a socket that sends nothing at all.
    let mut slow = TcpStream::connect(gw.addr).unwrap();
    slow.write_all(&[0x16, 0x03, 0x01, 0x02, 0x00, 0x01])
        .unwrap();
    let mut silent = TcpStream::connect(gw.addr).unwrap();
    let started = Instant::now();
    assert!(read_to_close(&mut slow).is_empty());
    assert!(read_to_close(&mut silent).is_empty());
    let waited = started.elapsed();
    assert!(waited < Duration::from_secs(3), "{waited:?}");
    // And a TLS handshake done in time, then no HTTP request: the same deadline closes it.
    let mut tls = tls_connect(gw.addr, certs.client(false)).expect("TLS");
    let mut buf = [0u8; 64];
    let started = Instant::now();
    let n = tls.read(&mut buf).unwrap_or(0);
    assert_eq!(n, 0);
    assert!(started.elapsed() < Duration::from_secs(3));
    let (_, metrics) = https_get(gw.addr, certs.client(false), "/metrics");
    assert!(
        metrics.contains("\ngateway_handshake_timeouts_total 3\n"),
        "{metrics}"
    );
    assert!(
        metrics.contains("\ngateway_handshakes_shed_total 0\n"),
        "{metrics}"
    );
}

impl TestGateway {
    /// `/health` over TLS, or `None` when the handshake or the request fails.
    fn health_https(&self, certs: &Certs) -> Option<Value> {
        let mut tls = tls_connect(self.addr, certs.client(false)).ok()?;
        tls.write_all(b"GET /health HTTP/1.1\r\nHost: localhost\r\n\r\n")
            .ok()?;
        let mut response = Vec::new();
        tls.read_to_end(&mut response).ok()?;
        let (status, body) = split_response(&String::from_utf8_lossy(&response));
        (status == 200).then(|| serde_json::from_str(&body).ok())?
    }
}

/// Close `sock` with a reset (SO_LINGER 0) instead of a FIN.
fn reset(sock: TcpStream) {
    use std::os::unix::io::AsRawFd;
    let linger = libc::linger {
        l_onoff: 1,
        l_linger: 0,
    };
    // SAFETY: a valid socket and a `linger` of the size given.
    let rc = unsafe {
        libc::setsockopt(
            sock.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_LINGER,
            std::ptr::addr_of!(linger).cast(),
            std::mem::size_of::<libc::linger>() as libc::socklen_t,
        )
    };
    assert_eq!(rc, 0);
    drop(sock);
}

#[test]
fn resets_in_the_middle_of_tls_handshakes_leave_a_bystander_unaffected() {
    let certs = Certs::new();
    let gw = TestGateway::start(certs.config());
    let mut bystander = Wss::authed(gw.addr, certs.client(false), TOKEN);
    // A real ClientHello from a rustls client, cut after its first bytes or whole, then reset.
    let mut hello = Vec::new();
    let name = ServerName::try_from("localhost").unwrap();
    let mut conn = ClientConnection::new(certs.client(false), name).unwrap();
    conn.write_tls(&mut hello).unwrap();
    for cut in [5, hello.len() / 2, hello.len()] {
        for _ in 0..20 {
            let mut sock = TcpStream::connect(gw.addr).unwrap();
            sock.write_all(&hello[..cut]).unwrap();
            reset(sock);
        }
        assert_eq!(bystander.request("ping", json!({}))["type"], "pong");
    }
    assert!(eventually(|| gw
        .health_https(&certs)
        .is_some_and(|h| h["clients"] == 1)));
}

/// A flood of TLS handshakes does not hold the loop for the open connections: 300 sockets,
/// once the gateway has accepted them all, each send a real ClientHello (to an RSA 2048 key,
/// whose signatures take the loop far longer than the writes take the test), then a
/// bystander sends a ping. Its pong arrives while some of the 300 still wait for their
/// ServerHello (with no share of a turn for handshakes, every ClientHello that arrived before
/// the ping is answered in the turn that reads the ping, or before); every one of them gets
/// it after.
#[test]
fn a_flood_of_tls_handshakes_shares_the_loop_with_a_bystander() {
    const FLOOD: usize = 300;
    let certs = Certs::new();
    let rsa = ["-newkey", "rsa:2048"];
    certs.signed_with(
        "rsa",
        &rsa,
        "/CN=localhost",
        "DNS:localhost,IP:127.0.0.1",
        "serverAuth",
    );
    let mut config = certs.config();
    config.tls_cert = Some(TlsCertificates::read(certs.path("rsa.pem")).unwrap());
    config.tls_key = Some(TlsPrivateKey::read(certs.path("rsa.key")).unwrap());
    config.handshake_timeout_ms = 60_000;
    let gw = TestGateway::start(config);
    let mut bystander = Wss::authed(gw.addr, certs.client(false), TOKEN);
    let name = ServerName::try_from("localhost").unwrap();
    let hellos: Vec<Vec<u8>> = (0..FLOOD)
        .map(|_| {
            let mut conn = ClientConnection::new(certs.client(false), name.clone()).unwrap();
            let mut hello = Vec::new();
            conn.write_tls(&mut hello).unwrap();
            hello
        })
        .collect();
    let mut flood: Vec<TcpStream> = (0..FLOOD)
        .map(|_| TcpStream::connect(gw.addr).unwrap())
        .collect();
    let pending = || {
        let (_, metrics) = https_get(gw.addr, certs.client(false), "/metrics");
        metrics
            .lines()
            .find_map(|line| line.strip_prefix("gateway_handshakes_pending "))
            .and_then(|n| n.trim().parse::<usize>().ok())
            .unwrap_or(0)
    };
    assert!(eventually(|| pending() >= FLOOD), "every socket accepted");
    for (sock, hello) in flood.iter_mut().zip(&hellos) {
        sock.write_all(hello).unwrap();
    }

    assert_eq!(bystander.request("ping", json!({}))["type"], "pong");
    let answered = flood
        .iter()
        .filter(|sock| {
            sock.set_nonblocking(true).unwrap();
            let mut byte = [0u8; 1];
            let seen = matches!(sock.peek(&mut byte), Ok(n) if n > 0);
            sock.set_nonblocking(false).unwrap();
            seen
        })
        .count();
    assert!(
        answered < FLOOD,
        "the bystander's ping was answered only after every handshake"
    );
    // The rest are served in the turns after: each gets its ServerHello (a handshake record).
    for sock in &mut flood {
        sock.set_read_timeout(Some(WAIT)).unwrap();
        let mut first = [0u8; 1];
        sock.read_exact(&mut first).expect("a ServerHello");
        assert_eq!(first[0], 0x16, "a handshake record");
    }
}

#[test]
fn a_slow_consumer_over_tls_is_closed_with_1008_and_large_messages_arrive_whole() {
    let certs = Certs::new();
    let mut config = certs.config();
    config.max_message_size = 128 * 1024;
    config.max_outbound_buffer = 256 * 1024;
    let gw = TestGateway::start(config);
    let mut flooder = Wss::authed(gw.addr, certs.client(false), TOKEN);
    flooder.request("session_create", json!({"sessionId": "flood"}));
    let mut reader = Wss::authed(gw.addr, certs.client(false), TOKEN_BOB);
    reader.request("session_join", json!({"sessionId": "flood"}));
    assert_eq!(flooder.recv()["type"], "presence");
    let mut slow = Wss::authed(gw.addr, certs.client(false), TOKEN);
    slow.request("session_join", json!({"sessionId": "flood"}));
    assert_eq!(flooder.recv()["type"], "presence");
    assert_eq!(reader.recv()["type"], "presence");

    // The reader keeps up, message by message; the slow one reads nothing.
    let blob = "z".repeat(100 * 1024);
    let slow_consumer = "gateway_connections_closed_total{reason=\"slow_consumer\"}";
    let metric = |gw: &TestGateway| {
        let (_, body) = https_get(gw.addr, certs.client(false), "/metrics");
        body.lines()
            .find_map(|l| l.strip_prefix(slow_consumer)?.trim().parse::<f64>().ok())
    };
    let mut sent = 0u64;
    let deadline = Instant::now() + Duration::from_secs(30);
    while metric(&gw) != Some(1.0) {
        assert!(
            Instant::now() < deadline,
            "no slow consumer after {sent} messages"
        );
        let id = next_id();
        flooder.send(&json!({"type": "chat", "id": id, "sessionId": "flood",
            "payload": {"seq": sent, "text": blob}}));
        let msg = reader.recv();
        assert_eq!(msg["payload"]["seq"], sent, "in order, whole");
        assert_eq!(
            msg["payload"]["text"].as_str().map(str::len),
            Some(blob.len())
        );
        sent += 1;
    }
    let left = reader.recv();
    assert_eq!(left["payload"]["status"], "left", "{left}");
    // What the slow one reads now: the messages queued before the limit, then 1008.
    let mut next = 0u64;
    let close = loop {
        match slow.ws.read().expect("frame") {
            Message::Text(text) => {
                let msg: Value = serde_json::from_str(text.as_str()).unwrap();
                if msg["type"] == "chat" {
                    assert_eq!(msg["payload"]["seq"], next);
                    next += 1;
                }
            }
            Message::Close(frame) => break frame.expect("a close frame"),
            _ => {}
        }
    };
    assert!(next > 0 && next <= sent);
    assert_eq!(u16::from(close.code), 1008);
    assert_eq!(close.reason.as_str(), "Slow consumer");
    assert_eq!(flooder.recv()["payload"]["status"], "left");
    assert_eq!(flooder.request("ping", json!({}))["type"], "pong");
}

#[test]
fn sighup_loads_a_new_certificate_for_new_connections_and_keeps_the_old_on_a_bad_file() {
    let certs = Certs::new();
    certs.signed(
        "second",
        "/CN=localhost",
        "DNS:localhost,IP:127.0.0.1",
        "serverAuth",
    );
    let (cert, key) = (certs.path("live.pem"), certs.path("live.key"));
    std::fs::copy(certs.path("server.pem"), &cert).unwrap();
    std::fs::copy(certs.path("server.key"), &key).unwrap();
    let conf = certs.path("gateway.conf");
    std::fs::write(
        &conf,
        format!(
            "port = 0\nauth_tokens = alice:{TOKEN}\ntls_cert = {}\ntls_key = {}\n",
            cert.display(),
            key.display()
        ),
    )
    .unwrap();
    let mut gw = Binary::start(&["--config", conf.to_str().expect("utf-8 path")]);
    assert!(
        gw.url.starts_with("wss://127.0.0.1:") && gw.url.ends_with("/ws"),
        "{}",
        gw.url
    );
    let addr = gw.addr;

    let mut old = Wss::authed(addr, certs.client(false), TOKEN);
    assert_eq!(old.server_cert(), certs.der("server.pem"));
    // A new pair in the same files: new connections get it, the open one goes on.
    std::fs::copy(certs.path("second.pem"), &cert).unwrap();
    std::fs::copy(certs.path("second.key"), &key).unwrap();
    gw.signal("HUP");
    gw.line_with("SIGHUP handled");
    let mut new = Wss::authed(addr, certs.client(false), TOKEN);
    assert_eq!(new.server_cert(), certs.der("second.pem"));
    assert_eq!(old.request("ping", json!({}))["type"], "pong");
    assert_eq!(old.server_cert(), certs.der("server.pem"));
    // A key that is not the certificate's, then a file that is not PEM: logged, nothing
    // changes.
    std::fs::copy(certs.path("server.key"), &key).unwrap();
    gw.signal("HUP");
    let refused = gw.line_with("tls_key");
    assert!(refused.contains("not the certificate's"), "{refused}");
    std::fs::write(&cert, "not a certificate\n").unwrap();
    gw.signal("HUP");
    let refused = gw.line_with("tls_cert");
    assert!(refused.contains("PEM"), "{refused}");
    let mut third = Wss::authed(addr, certs.client(false), TOKEN);
    assert_eq!(third.server_cert(), certs.der("second.pem"));
    for wss in [&mut old, &mut new, &mut third] {
        assert_eq!(wss.request("ping", json!({}))["type"], "pong");
    }
    let (status, body) = https_get(addr, certs.client(false), "/health");
    assert_eq!(status, 200);
    assert!(body.contains("\"clients\":3"), "{body}");
    for wss in [old, new, third] {
        drop(wss); // no close handshake to wait for at the shutdown
    }
    gw.signal("TERM");
    let deadline = Instant::now() + WAIT;
    while gw.child.try_wait().unwrap().is_none() {
        assert!(Instant::now() < deadline, "the gateway did not stop");
        std::thread::sleep(Duration::from_millis(10));
    }
}

#[test]
fn check_reports_the_certificate_and_refuses_a_key_that_is_not_its() {
    let certs = Certs::new();
    let check = |key: &str| {
        Command::new(env!("CARGO_BIN_EXE_gateway"))
            .args(["--config", "/dev/null", "--check"])
            .arg("--set")
            .arg(format!("tls_cert={}", certs.arg("server.pem")))
            .arg("--set")
            .arg(format!("tls_key={}", certs.arg(key)))
            .output()
            .unwrap()
    };
    let ok = check("server.key");
    let stdout = String::from_utf8_lossy(&ok.stdout);
    assert!(
        ok.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&ok.stderr)
    );
    assert!(
        stdout.contains("tls_cert: subject CN=localhost; names localhost, 127.0.0.1; expires "),
        "{stdout}"
    );
    let days = [
        "(in 1 days); key ECDSA; 1 certificate",
        "(in 2 days); key ECDSA; 1 certificate",
    ];
    assert!(days.iter().any(|d| stdout.contains(d)), "{stdout}");
    assert!(!String::from_utf8_lossy(&ok.stderr).contains("warning"));
    let bad = check("client.key");
    assert_eq!(bad.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&bad.stderr);
    assert!(
        stderr.contains("tls_key: the key is not the certificate's"),
        "{stderr}"
    );
    let bad = check("ca.pem");
    assert_eq!(bad.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&bad.stderr).contains("found CERTIFICATE"));
}

#[test]
fn check_warns_of_an_rsa_key_that_makes_handshakes_costly() {
    let certs = Certs::new();
    openssl(
        &certs.dir,
        &[
            "req",
            "-x509",
            "-newkey",
            "rsa:3072",
            "-nodes",
            "-keyout",
            "rsa.key",
            "-out",
            "rsa.pem",
            "-days",
            "2",
            "-subj",
            "/CN=localhost",
        ],
    );
    let out = Command::new(env!("CARGO_BIN_EXE_gateway"))
        .args(["--config", "/dev/null", "--check"])
        .arg("--set")
        .arg(format!("tls_cert={}", certs.arg("rsa.pem")))
        .arg("--set")
        .arg(format!("tls_key={}", certs.arg("rsa.key")))
        .output()
        .unwrap();
    let (stdout, stderr) = (
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr),
    );
    assert!(out.status.success(), "{stdout}{stderr}");
    assert!(
        stdout.contains("key RSA 3072 bits; 1 certificate"),
        "{stdout}"
    );
    assert!(
        stderr.contains("gateway: warning: tls_cert ")
            && stderr.contains("an RSA key of 3072 bits makes each TLS handshake cost"),
        "{stderr}"
    );
}

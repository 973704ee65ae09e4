//! `cargo bench --bench tls`: what TLS on the listener costs, each figure beside the same one
//! over plain `ws://` measured in the same run. Nothing is asserted: the figures are for
//! people, and the machine may be shared.
//!
//! The certificate is a P-256 (ECDSA) one signed by a test CA, both made by `openssl` at the
//! start in a temporary directory. In this order:
//! 1. latency: JSON `ping` → `pong` round trips on one authenticated connection, ws and wss
//!    alternating run by run against two in-process gateways; p50 and p99, wss / ws. Client
//!    and server threads share CPU 0 (as in `benches/gateway.rs`);
//! 2. saturation: `CONNS` connections with `WINDOW` pings in flight each, for `SECS`; server
//!    CPU per ping (its loop thread's utime + stime from `/proc/self/task/TID/stat`), wss / ws.
//!    Server on CPU 0, client on CPU 1;
//! 3. handshakes: full TLS 1.3 handshakes (no resumption) one after the other from CPU 1;
//!    server CPU per handshake, and so handshakes per second of one server core;
//! 4. memory: the release `gateway` binary in a child process, `IDLE` authenticated idle
//!    connections opened against it, over wss and then (another child) over ws; resident
//!    memory per connection is the growth of the child's RSS over the connections, after a
//!    warm-up of 100. The same for the Node `ws` peer of `benches/peers/node_gateway.js` over
//!    `https`, when node and `target/node-ws/node_modules/ws` are there;
//! 5. the size of the release binary this bench runs (with TLS), and of
//!    `target/notls/release/gateway` when it exists
//!    (`cargo build --release --no-default-features --target-dir target/notls`).
//!
//! Each figure of 1 to 3 is the median of `REPS` runs. Environment: `GATEWAY_TLS_BENCH_REPS`
//! (5), `GATEWAY_TLS_BENCH_COUNT` (10000 round trips), `GATEWAY_TLS_BENCH_SECS` (2),
//! `GATEWAY_TLS_BENCH_CONNS` (32), `GATEWAY_TLS_BENCH_WINDOW` (16),
//! `GATEWAY_TLS_BENCH_HANDSHAKES` (1000), `GATEWAY_TLS_BENCH_IDLE` (3000),
//! `GATEWAY_BENCH_PIN` (`0`: no pinning). Without `--bench` (as `cargo test --benches` runs
//! it) it does one tiny smoke run.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{mpsc, Arc};
use std::time::{Duration, Instant};

use gateway::{AuthToken, Config, Gateway, GatewayHandle, TlsCertificates, TlsPrivateKey};
use loadgen::{median, Probe};
use rustls::client::Resumption;
use rustls::pki_types::{CertificateDer, ServerName};
use rustls::{ClientConfig, ClientConnection, RootCertStore, StreamOwned};
use tungstenite::{Message, WebSocket};

const TOKEN: &str = "bench-token";

fn env_num<T: std::str::FromStr>(name: &str, default: T) -> T {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

struct Settings {
    reps: usize,
    count: usize,
    secs: f64,
    conns: usize,
    window: usize,
    handshakes: usize,
    idle: usize,
    pin: bool,
}

impl Settings {
    fn from_env(smoke: bool) -> Settings {
        if smoke {
            return Settings {
                reps: 1,
                count: 200,
                secs: 0.2,
                conns: 2,
                window: 2,
                handshakes: 20,
                idle: 20,
                pin: false,
            };
        }
        Settings {
            reps: env_num("GATEWAY_TLS_BENCH_REPS", 5usize).max(1),
            count: env_num("GATEWAY_TLS_BENCH_COUNT", 10_000usize).max(100),
            secs: env_num("GATEWAY_TLS_BENCH_SECS", 2.0f64).max(0.1),
            conns: env_num("GATEWAY_TLS_BENCH_CONNS", 32usize).max(1),
            window: env_num("GATEWAY_TLS_BENCH_WINDOW", 16usize).max(1),
            handshakes: env_num("GATEWAY_TLS_BENCH_HANDSHAKES", 1000usize).max(10),
            idle: env_num("GATEWAY_TLS_BENCH_IDLE", 3000usize).max(10),
            pin: std::env::var("GATEWAY_BENCH_PIN").map_or(true, |v| v != "0"),
        }
    }
}

/// The test CA and the server certificate, in a directory removed on drop.
struct Certs {
    dir: PathBuf,
}

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
        let dir = std::env::temp_dir().join(format!("gateway-tls-bench-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let ec = [
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:P-256",
            "-nodes",
        ];
        openssl(
            &dir,
            &[
                &["req", "-x509"][..],
                &ec,
                &["-keyout", "ca.key", "-out", "ca.pem", "-days", "2"],
                &["-subj", "/CN=bench CA"],
            ]
            .concat(),
        );
        std::fs::write(
            dir.join("ext"),
            "subjectAltName=DNS:localhost,IP:127.0.0.1\n",
        )
        .unwrap();
        openssl(
            &dir,
            &[
                &["req"][..],
                &ec,
                &[
                    "-keyout",
                    "key.pem",
                    "-out",
                    "csr",
                    "-subj",
                    "/CN=localhost",
                ],
            ]
            .concat(),
        );
        openssl(
            &dir,
            &[
                "x509",
                "-req",
                "-in",
                "csr",
                "-CA",
                "ca.pem",
                "-CAkey",
                "ca.key",
                "-CAcreateserial",
                "-days",
                "2",
                "-out",
                "cert.pem",
                "-extfile",
                "ext",
            ],
        );
        Certs { dir }
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.join(name)
    }

    fn client(&self) -> Arc<ClientConfig> {
        let ca = TlsCertificates::read(self.path("ca.pem")).unwrap();
        let mut roots = RootCertStore::empty();
        roots
            .add(CertificateDer::from(ca.ders()[0].clone()))
            .unwrap();
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let mut config = ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_root_certificates(roots)
            .with_no_client_auth();
        config.resumption = Resumption::disabled();
        config.alpn_protocols = vec![b"http/1.1".to_vec()];
        Arc::new(config)
    }
}

impl Drop for Certs {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// A client stream: plain TCP or TLS over it.
enum Stream {
    Plain(TcpStream),
    Tls(Box<StreamOwned<ClientConnection, TcpStream>>),
}

impl Read for Stream {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        match self {
            Stream::Plain(s) => s.read(buf),
            Stream::Tls(s) => s.read(buf),
        }
    }
}

impl Write for Stream {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        match self {
            Stream::Plain(s) => s.write(buf),
            Stream::Tls(s) => s.write(buf),
        }
    }
    fn flush(&mut self) -> std::io::Result<()> {
        match self {
            Stream::Plain(s) => s.flush(),
            Stream::Tls(s) => s.flush(),
        }
    }
}

/// A TCP connection to `addr`, with TLS when `tls` is given, its TLS handshake done.
fn connect(addr: SocketAddr, tls: Option<&Arc<ClientConfig>>) -> Stream {
    let sock = TcpStream::connect(addr).expect("connect");
    sock.set_nodelay(true).unwrap();
    sock.set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    let Some(config) = tls else {
        return Stream::Plain(sock);
    };
    let name = ServerName::try_from("localhost").unwrap();
    let conn = ClientConnection::new(config.clone(), name).unwrap();
    let mut tls = StreamOwned::new(conn, sock);
    while tls.conn.is_handshaking() {
        tls.conn.complete_io(&mut tls.sock).expect("TLS handshake");
    }
    Stream::Tls(Box::new(tls))
}

/// An authenticated WebSocket to `addr`.
fn open(addr: SocketAddr, tls: Option<&Arc<ClientConfig>>) -> WebSocket<Stream> {
    let scheme = if tls.is_some() { "wss" } else { "ws" };
    let url = format!("{scheme}://localhost:{}/ws", addr.port());
    let (mut ws, _) = tungstenite::client::client(url, connect(addr, tls)).expect("upgrade");
    recv(&mut ws); // session_info
    let auth = format!(r#"{{"type":"auth","id":"a","payload":{{"token":"{TOKEN}"}}}}"#);
    ws.send(Message::text(auth)).unwrap();
    let reply = recv(&mut ws);
    assert!(reply.contains("auth_success"), "{reply}");
    ws
}

fn recv(ws: &mut WebSocket<Stream>) -> String {
    loop {
        match ws.read().expect("read") {
            Message::Text(text) => return text.as_str().to_string(),
            Message::Close(frame) => panic!("closed: {frame:?}"),
            _ => continue,
        }
    }
}

const PING: &str = r#"{"type":"ping","id":"p","payload":{}}"#;

/// An in-process gateway on its own thread, and its thread id for CPU readings.
struct InProcess {
    addr: SocketAddr,
    tid: Option<u32>,
    handle: GatewayHandle,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Drop for InProcess {
    fn drop(&mut self) {
        let _ = self.handle.shutdown();
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

fn config(certs: Option<&Certs>) -> Config {
    let mut config = Config {
        port: 0,
        auth_tokens: vec![AuthToken {
            user: "dev".into(),
            secret: TOKEN.into(),
        }],
        max_connections: 20_000,
        max_connections_per_user: 20_000,
        ..Config::default()
    };
    if let Some(certs) = certs {
        config.tls_cert = Some(TlsCertificates::read(certs.path("cert.pem")).unwrap());
        config.tls_key = Some(TlsPrivateKey::read(certs.path("key.pem")).unwrap());
    }
    config
}

fn start(certs: Option<&Certs>) -> InProcess {
    let config = config(certs);
    let (tx, rx) = mpsc::channel();
    let thread = std::thread::spawn(move || {
        let mut gw = Gateway::bind(config).expect("bind");
        tx.send((gw.local_addr(), gw.handle(), loadgen::current_tid()))
            .unwrap();
        gw.run().expect("run");
    });
    let (addr, handle, tid) = rx.recv().unwrap();
    InProcess {
        addr,
        tid,
        handle,
        thread: Some(thread),
    }
}

fn pin(on: bool, tid: Option<u32>, cpu: usize) {
    if let (true, Some(tid)) = (on, tid) {
        let _ = loadgen::pin(tid, cpu);
    }
}

fn quantile(sorted: &[f64], q: f64) -> f64 {
    sorted[((sorted.len() - 1) as f64 * q).round() as usize]
}

/// `count` round trips; (p50, p99) in microseconds.
fn latency(gw: &InProcess, tls: Option<&Arc<ClientConfig>>, count: usize) -> (f64, f64) {
    let mut ws = open(gw.addr, tls);
    for _ in 0..count / 10 {
        ws.send(Message::text(PING)).unwrap();
        recv(&mut ws);
    }
    let mut times = Vec::with_capacity(count);
    for _ in 0..count {
        let t0 = Instant::now();
        ws.send(Message::text(PING)).unwrap();
        recv(&mut ws);
        times.push(t0.elapsed().as_secs_f64() * 1e6);
    }
    times.sort_by(f64::total_cmp);
    (quantile(&times, 0.5), quantile(&times, 0.99))
}

/// Pings with `window` in flight on each of `conns` connections for `secs`; (pings per
/// second, server CPU microseconds per ping).
fn saturation(gw: &InProcess, tls: Option<&Arc<ClientConfig>>, s: &Settings) -> (f64, Option<f64>) {
    let mut conns: Vec<WebSocket<Stream>> = (0..s.conns).map(|_| open(gw.addr, tls)).collect();
    let probe = gw.tid.map(|tid| Probe::Thread {
        pid: std::process::id(),
        tid,
    });
    let round = |conns: &mut Vec<WebSocket<Stream>>| {
        for ws in conns.iter_mut() {
            for _ in 0..s.window {
                ws.write(Message::text(PING)).unwrap();
            }
            ws.flush().unwrap();
        }
        for ws in conns.iter_mut() {
            for _ in 0..s.window {
                recv(ws);
            }
        }
    };
    round(&mut conns); // warm-up
    let cpu0 = probe.and_then(|p| p.cpu_seconds());
    let t0 = Instant::now();
    let mut pings = 0usize;
    while t0.elapsed().as_secs_f64() < s.secs {
        round(&mut conns);
        pings += s.conns * s.window;
    }
    let wall = t0.elapsed().as_secs_f64();
    let cpu = match (cpu0, probe.and_then(|p| p.cpu_seconds())) {
        (Some(a), Some(b)) => Some((b - a) * 1e6 / pings as f64),
        _ => None,
    };
    (pings as f64 / wall, cpu)
}

/// `n` full handshakes one after the other; (handshakes per second of the client loop,
/// server CPU microseconds per handshake).
fn handshakes(gw: &InProcess, tls: &Arc<ClientConfig>, n: usize) -> (f64, Option<f64>) {
    let probe = gw.tid.map(|tid| Probe::Thread {
        pid: std::process::id(),
        tid,
    });
    let cpu0 = probe.and_then(|p| p.cpu_seconds());
    let t0 = Instant::now();
    for _ in 0..n {
        let Stream::Tls(mut tls) = connect(gw.addr, Some(tls)) else {
            unreachable!()
        };
        // The server has processed the client's Finished once it answers a request.
        tls.write_all(b"GET /nothing HTTP/1.1\r\nHost: localhost\r\n\r\n")
            .unwrap();
        let mut buf = [0u8; 256];
        let _ = tls.read(&mut buf);
    }
    let wall = t0.elapsed().as_secs_f64();
    let cpu = match (cpu0, probe.and_then(|p| p.cpu_seconds())) {
        (Some(a), Some(b)) => Some((b - a) * 1e6 / n as f64),
        _ => None,
    };
    (n as f64 / wall, cpu)
}

/// The release binary in a child process, with TLS when `certs` is given; its address.
fn spawn_binary(certs: Option<&Certs>) -> (Child, SocketAddr) {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_gateway"));
    cmd.args(["--config", "/dev/null", "--set", "port=0"])
        .args(["--set", "max_connections=20000"])
        .args(["--set", "max_connections_per_user=20000"])
        .args(["--set", &format!("auth_tokens=dev:{TOKEN}")])
        .args(["--set", "log_level=warn"]);
    if let Some(certs) = certs {
        cmd.arg("--set")
            .arg(format!("tls_cert={}", certs.path("cert.pem").display()))
            .arg("--set")
            .arg(format!("tls_key={}", certs.path("key.pem").display()));
    }
    listening(cmd)
}

/// Spawn `cmd` and wait for its `listening on URL` line; the child and the URL's address.
fn listening(mut cmd: Command) -> (Child, SocketAddr) {
    let mut child = cmd
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn the server");
    let stderr = BufReader::new(child.stderr.take().unwrap());
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        let mut tx = Some(tx);
        for line in stderr.lines() {
            let Ok(line) = line else { break };
            let Some(at) = line.find("listening on ") else {
                continue;
            };
            if let Some(tx) = tx.take() {
                let url = &line[at + "listening on ".len()..];
                let host = url.split("://").nth(1).unwrap().split('/').next().unwrap();
                let _ = tx.send(host.parse::<SocketAddr>().unwrap());
            }
        }
    });
    let addr = rx
        .recv_timeout(Duration::from_secs(10))
        .expect("the server's address");
    (child, addr)
}

/// The Node `ws` peer of `benches/peers/node_gateway.js` over `https`, when node and the ws
/// module (`target/node-ws`, as `.ci/run` installs it) are there.
fn spawn_node(certs: &Certs) -> Option<(Child, SocketAddr)> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let modules = root.join("target/node-ws/node_modules");
    if !modules.join("ws").exists() || Command::new("node").arg("--version").output().is_err() {
        return None;
    }
    let mut cmd = Command::new("node");
    cmd.arg(root.join("benches/peers/node_gateway.js"))
        .env("NODE_PATH", modules)
        .env("GATEWAY_TOKEN", TOKEN)
        .env("TLS_CERT", certs.path("cert.pem"))
        .env("TLS_KEY", certs.path("key.pem"));
    Some(listening(cmd))
}

/// Bytes of resident memory per idle authenticated connection of a child server.
fn rss_per_conn(server: (Child, SocketAddr), certs: &Certs, tls: bool, n: usize) -> Option<f64> {
    let (mut child, addr) = server;
    let client = certs.client();
    let tls = tls.then_some(&client);
    let mut held: Vec<WebSocket<Stream>> = (0..100).map(|_| open(addr, tls)).collect();
    std::thread::sleep(Duration::from_millis(200));
    let before = loadgen::rss_kib(child.id());
    held.extend((0..n).map(|_| open(addr, tls)));
    std::thread::sleep(Duration::from_millis(500));
    let after = loadgen::rss_kib(child.id());
    drop(held);
    let _ = child.kill();
    let _ = child.wait();
    Some((after? as f64 - before? as f64) * 1024.0 / n as f64)
}

fn main() {
    let smoke = !std::env::args().any(|a| a == "--bench");
    let s = Settings::from_env(smoke);
    let certs = Certs::new();
    let client = certs.client();
    println!(
        "TLS bench: P-256 certificate, rustls on ring; {} reps; load average {}",
        s.reps,
        loadgen::loadavg()
    );
    let me = loadgen::current_tid();
    let plain = start(None);
    let secure = start(Some(&certs));

    // 1. Latency, ws and wss alternating, client and servers on CPU 0.
    pin(s.pin, me, 0);
    pin(s.pin, plain.tid, 0);
    pin(s.pin, secure.tid, 0);
    let (mut ws, mut wss) = (Vec::new(), Vec::new());
    for _ in 0..s.reps {
        ws.push(latency(&plain, None, s.count));
        wss.push(latency(&secure, Some(&client), s.count));
    }
    let p = |runs: &[(f64, f64)], f: fn(&(f64, f64)) -> f64| {
        median(&runs.iter().map(f).collect::<Vec<_>>())
    };
    let (ws50, ws99) = (p(&ws, |r| r.0), p(&ws, |r| r.1));
    let (wss50, wss99) = (p(&wss, |r| r.0), p(&wss, |r| r.1));
    println!("latency, JSON ping round trip ({} each):", s.count);
    println!("   ws    p50 {ws50:7.1} us   p99 {ws99:7.1} us");
    println!(
        "   wss   p50 {wss50:7.1} us   p99 {wss99:7.1} us   wss/ws p50 {:.2}x  p99 {:.2}x",
        wss50 / ws50,
        wss99 / ws99
    );

    // 2. Saturation, server on CPU 0, client on CPU 1.
    pin(s.pin, me, 1);
    let (mut ws, mut wss) = (Vec::new(), Vec::new());
    for _ in 0..s.reps {
        ws.push(saturation(&plain, None, &s));
        wss.push(saturation(&secure, Some(&client), &s));
    }
    let rate = |runs: &[(f64, Option<f64>)]| median(&runs.iter().map(|r| r.0).collect::<Vec<_>>());
    let cpu = |runs: &[(f64, Option<f64>)]| {
        let v: Vec<f64> = runs.iter().filter_map(|r| r.1).collect();
        (!v.is_empty()).then(|| median(&v))
    };
    println!(
        "saturation, {} connections x {} pings in flight, {} s:",
        s.conns, s.window, s.secs
    );
    let show = |x: Option<f64>| x.map_or("n/a".to_string(), |x| format!("{x:.2}"));
    println!(
        "   ws    {:9.0} pings/s   server CPU {} us/ping",
        rate(&ws),
        show(cpu(&ws))
    );
    let ratio = match (cpu(&wss), cpu(&ws)) {
        (Some(a), Some(b)) => format!("{:.2}x", a / b),
        _ => "n/a".into(),
    };
    println!(
        "   wss   {:9.0} pings/s   server CPU {} us/ping   wss/ws CPU per ping {ratio}",
        rate(&wss),
        show(cpu(&wss))
    );

    // 3. Full TLS 1.3 handshakes.
    let runs: Vec<(f64, Option<f64>)> = (0..s.reps)
        .map(|_| handshakes(&secure, &client, s.handshakes))
        .collect();
    let per = cpu(&runs);
    println!(
        "handshakes, full TLS 1.3 (ECDHE X25519, ECDSA P-256), {} per run: {:.0}/s from one client; server CPU {} us each = {} per second of one core",
        s.handshakes,
        rate(&runs),
        show(per),
        per.map_or("n/a".into(), |us| format!("{:.0}", 1e6 / us))
    );
    drop(plain);
    drop(secure);

    // 4. Memory per idle authenticated connection, child processes.
    let tls_rss = rss_per_conn(spawn_binary(Some(&certs)), &certs, true, s.idle);
    let ws_rss = rss_per_conn(spawn_binary(None), &certs, false, s.idle);
    let kib = |b: Option<f64>| b.map_or("n/a".into(), |b| format!("{:.2} KiB", b / 1024.0));
    println!(
        "memory, {} idle authenticated connections (release binary): ws {}, wss {} per connection",
        s.idle,
        kib(ws_rss),
        kib(tls_rss)
    );
    match spawn_node(&certs) {
        Some(node) => println!(
            "   Node ws over https (benches/peers/node_gateway.js), the same probe: {} per connection",
            kib(rss_per_conn(node, &certs, true, s.idle))
        ),
        None => println!("   (Node ws over https not measured: node or target/node-ws is missing)"),
    }

    // 5. Binary sizes.
    let size = |path: &Path| std::fs::metadata(path).ok().map(|m| m.len());
    let mib =
        |b: Option<u64>| b.map_or("n/a".into(), |b| format!("{:.2} MiB", b as f64 / 1048576.0));
    let notls = Path::new(env!("CARGO_MANIFEST_DIR")).join("target/notls/release/gateway");
    println!(
        "binary: {} with TLS (this bench's); {} without (target/notls/release/gateway)",
        mib(size(Path::new(env!("CARGO_BIN_EXE_gateway")))),
        mib(size(&notls))
    );
}

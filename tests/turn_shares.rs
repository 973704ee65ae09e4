//! The shares of a loop turn, over real sockets, with the transport's `Reactor` driving an
//! app whose every message keeps the loop for 100 us: the connections of one group
//! (`Actions::share_turn`), and the connections that have not been raised from
//! `initial_max_payload`, take one share of each turn between them, while a connection of
//! its own share keeps its whole share. The app logs the order in which messages reach it,
//! which shows how the loop shared its turns.

mod common;

use std::io::Write;
use std::net::TcpStream;
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use common::{eventually, frame, ReactorThread, WAIT};
use gateway::transport::{Actions, App, CloseReason, ConnId, Reactor, TransportConfig};
use tungstenite::stream::MaybeTlsStream;
use tungstenite::Message;

/// What each message costs the loop.
const COST: Duration = Duration::from_micros(100);

/// Logs `(connection index, first byte)` of each message and spends [`COST`] on it.
/// `raise` raises the connection's limit and `group N` puts it in group N; both are
/// answered `ok`.
struct Busy {
    log: Arc<Mutex<Vec<(u32, u8)>>>,
}

impl App for Busy {
    type Command = ();
    type Event = ();

    fn on_open(&mut self, _: ConnId, _: Instant, _: &mut Actions<()>) {}

    fn on_message(
        &mut self,
        conn: ConnId,
        data: &[u8],
        _: bool,
        _: Instant,
        out: &mut Actions<()>,
    ) {
        if data == b"raise" {
            out.raise_limit(conn);
        } else if let Some(group) = data.strip_prefix(b"group ") {
            let group = std::str::from_utf8(group).unwrap().parse().unwrap();
            out.raise_limit(conn);
            out.share_turn(conn, group);
        } else {
            let began = Instant::now();
            while began.elapsed() < COST {}
            self.log.lock().unwrap().push((conn.index, data[0]));
            return;
        }
        out.send_text(conn, "ok");
    }

    fn on_close(&mut self, _: ConnId, _: CloseReason, _: Instant, _: &mut Actions<()>) {}
    fn on_command(&mut self, _: (), _: Instant, _: &mut Actions<()>) {}
}

/// A reactor running [`Busy`] in its own thread, and the app's log.
struct Running {
    url: String,
    log: Arc<Mutex<Vec<(u32, u8)>>>,
    _reactor: ReactorThread,
}

impl Running {
    fn start() -> Running {
        let mut config = TransportConfig::new("127.0.0.1:0".parse().unwrap());
        config.path = "/".into();
        config.initial_max_payload = Some(1024);
        let log = Arc::new(Mutex::new(Vec::new()));
        let busy = Busy {
            log: Arc::clone(&log),
        };
        let reactor = Reactor::bind(config, busy).expect("bind");
        Running {
            url: format!("ws://{}/", reactor.local_addr()),
            log,
            _reactor: ReactorThread::start(reactor),
        }
    }

    /// The socket of a connection that sent `hello` (`raise`, `group N`; nothing when
    /// empty) and got its `ok`.
    fn open(&self, hello: &str) -> TcpStream {
        let (mut ws, _) = tungstenite::connect(&self.url).expect("upgrade");
        let MaybeTlsStream::Plain(stream) = ws.get_mut() else {
            panic!("plain");
        };
        stream.set_read_timeout(Some(WAIT)).unwrap();
        if !hello.is_empty() {
            ws.send(Message::text(hello)).expect("send");
            assert_eq!(ws.read().expect("ok").into_text().unwrap(), "ok");
        }
        let MaybeTlsStream::Plain(stream) = ws.into_inner() else {
            panic!("plain");
        };
        stream
    }
}

/// The median length of the runs of messages from `flooders` (each sending `hello`, then
/// 200 messages `f`) between two runs of messages from one connection with a share of its
/// own (200 messages `b`), all written at once; and the median length of that connection's
/// runs. Within one turn, each share makes one run.
fn runs(flooders: usize, hello: impl Fn(usize) -> String) -> (usize, usize) {
    const MESSAGES: usize = 200;
    let gw = Running::start();
    let mut sockets: Vec<TcpStream> = (0..flooders).map(|i| gw.open(&hello(i))).collect();
    sockets.push(gw.open("raise"));
    let mut writers = Vec::new();
    for (i, mut socket) in sockets.iter().map(|s| s.try_clone().unwrap()).enumerate() {
        let byte = if i == flooders { b"b" } else { b"f" };
        let blob: Vec<u8> = (0..MESSAGES)
            .flat_map(|_| frame(1, true, byte, true))
            .collect();
        writers.push(thread::spawn(move || {
            socket.write_all(&blob).expect("write")
        }));
    }
    for writer in writers {
        writer.join().unwrap();
    }
    let total = MESSAGES * (flooders + 1);
    assert!(
        eventually(|| gw.log.lock().unwrap().len() == total),
        "every message arrived"
    );
    let log = gw.log.lock().unwrap().clone();
    // Runs of `f` and of `b`, the flooders' counted only between two runs of `b`.
    let (mut flood_runs, mut own_runs) = (Vec::new(), Vec::new());
    let mut run = (log[0].1, 0);
    let mut seen_own = false;
    for &(_, byte) in &log {
        if byte == run.0 {
            run.1 += 1;
            continue;
        }
        if run.0 == b'b' {
            own_runs.push(run.1);
            seen_own = true;
        } else if seen_own {
            flood_runs.push(run.1);
        }
        run = (byte, 1);
    }
    assert!(
        flood_runs.len() >= 3 && own_runs.len() >= 3,
        "the turns were shared: {flood_runs:?} {own_runs:?}"
    );
    flood_runs.sort_unstable();
    own_runs.sort_unstable();
    (
        flood_runs[flood_runs.len() / 2],
        own_runs[own_runs.len() / 2],
    )
}

/// 8 connections in one group get about one share of a turn between them, beside one
/// connection of its own share: their runs between two of its runs are about as long as its
/// runs, not 8 times as long.
#[test]
fn the_connections_of_one_group_share_one_share_of_a_turn() {
    let (group, own) = runs(8, |_| "group 5".into());
    println!("8 connections of one group: runs of {group} beside runs of {own}");
    assert!(
        group < 3 * own,
        "runs of {group} messages beside runs of {own}"
    );
}

/// Connections in groups of their own each keep a share: 8 of them make runs about 8
/// times as long as the one connection beside them (the measure the other tests rely on).
#[test]
fn connections_of_different_groups_each_keep_a_share() {
    let (groups, own) = runs(8, |i| format!("group {}", 10 + i));
    println!("8 connections of 8 groups: runs of {groups} beside runs of {own}");
    assert!(
        groups > 4 * own,
        "runs of {groups} messages beside runs of {own}"
    );
}

/// The connections that have not been raised from `initial_max_payload` share one share
/// of a turn between them too.
#[test]
fn connections_not_raised_share_one_share_of_a_turn() {
    let (preauth, own) = runs(8, |_| String::new());
    println!("8 connections not raised: runs of {preauth} beside runs of {own}");
    assert!(
        preauth < 3 * own,
        "runs of {preauth} messages beside runs of {own}"
    );
}

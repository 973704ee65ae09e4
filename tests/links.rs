//! The transport's outbound links over real sockets, against a real `redis-server` speaking
//! raw RESP: replies reach the app, bytes sent while connecting are written once connected,
//! a failed connect, a peer that dies, a pipeline of several MiB, and a link id reopened.
//! The app runs on a reactor of its own thread; the test drives it with handle commands and
//! reads what the app was told from a channel. Skipped, with a note, without `redis-server`.

mod common;

use std::net::{SocketAddr, TcpListener};
use std::sync::mpsc::{channel, Receiver, Sender};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use common::redis::RedisServer;
use gateway::transport::{
    Actions, App, CloseReason, ConnId, Control, LinkId, Reactor, ReactorHandle, TransportConfig,
};

/// How long a test waits for what should happen.
const WAIT: Duration = Duration::from_secs(20);
const PING: &[u8] = b"*1\r\n$4\r\nPING\r\n";
const PONG: &[u8] = b"+PONG\r\n";

/// One thing for the app to do on a link, in one command with the others.
enum Step {
    Connect(u8, SocketAddr),
    Send(u8, Vec<u8>),
    Close(u8),
}

/// What the app was told about a link.
#[derive(Debug, PartialEq)]
enum Told {
    Open(u8),
    Data(u8, Vec<u8>),
    Closed(u8, String),
}

/// An app that does the steps it is sent and reports every link call.
struct Linker {
    told: Sender<Told>,
}

impl App for Linker {
    type Command = Vec<Step>;
    type Event = ();

    fn on_open(&mut self, _: ConnId, _: Instant, _: &mut Actions<()>) {}
    fn on_message(&mut self, _: ConnId, _: &[u8], _: bool, _: Instant, _: &mut Actions<()>) {}
    fn on_close(&mut self, _: ConnId, _: CloseReason, _: Instant, _: &mut Actions<()>) {}

    fn on_command(&mut self, steps: Vec<Step>, _: Instant, out: &mut Actions<()>) {
        for step in steps {
            match step {
                Step::Connect(link, addr) => out.link_connect(LinkId(link), addr),
                Step::Send(link, bytes) => out.link_send(LinkId(link), &bytes),
                Step::Close(link) => out.link_close(LinkId(link)),
            }
        }
    }

    fn on_link_open(&mut self, link: LinkId, _: Instant, _: &mut Actions<()>) {
        let _ = self.told.send(Told::Open(link.0));
    }

    fn on_link_data(&mut self, link: LinkId, data: &[u8], _: Instant, _: &mut Actions<()>) {
        let _ = self.told.send(Told::Data(link.0, data.to_vec()));
    }

    fn on_link_closed(&mut self, link: LinkId, error: &str, _: Instant, _: &mut Actions<()>) {
        let _ = self.told.send(Told::Closed(link.0, error.to_string()));
    }
}

/// A [`Linker`] on a reactor running in its own thread; shut down and joined on drop.
struct Harness {
    handle: ReactorHandle<Vec<Step>>,
    told: Receiver<Told>,
    thread: Option<JoinHandle<std::io::Result<()>>>,
}

impl Harness {
    fn start() -> Harness {
        let (tx, told) = channel();
        let config = TransportConfig::new("127.0.0.1:0".parse().unwrap());
        let mut reactor = Reactor::bind(config, Linker { told: tx }).expect("bind");
        let handle = reactor.handle();
        let thread = std::thread::spawn(move || reactor.run());
        Harness {
            handle,
            told,
            thread: Some(thread),
        }
    }

    fn run(&self, steps: Vec<Step>) {
        self.handle
            .send(Control::App(steps))
            .expect("the loop runs");
    }

    /// The next thing the app was told.
    fn next(&self) -> Told {
        self.told
            .recv_timeout(WAIT)
            .expect("the app is told something in time")
    }

    /// The bytes `link` receives, from the next thing told on, until there are `len` of
    /// them; anything else told in between fails the test.
    fn read(&self, link: u8, len: usize) -> Vec<u8> {
        let deadline = Instant::now() + WAIT;
        let mut got = Vec::new();
        while got.len() < len {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.told.recv_timeout(left) {
                Ok(Told::Data(l, data)) if l == link => got.extend_from_slice(&data),
                Ok(other) => panic!("after {} bytes of {len}: {other:?}", got.len()),
                Err(_) => panic!("{} bytes of {len} in time", got.len()),
            }
        }
        assert_eq!(got.len(), len, "no more than asked for");
        got
    }
}

impl Drop for Harness {
    fn drop(&mut self) {
        let _ = self.handle.shutdown();
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// One RESP command.
fn command(args: &[&[u8]]) -> Vec<u8> {
    let mut out = format!("*{}\r\n", args.len()).into_bytes();
    for arg in args {
        out.extend_from_slice(format!("${}\r\n", arg.len()).as_bytes());
        out.extend_from_slice(arg);
        out.extend_from_slice(b"\r\n");
    }
    out
}

#[test]
fn a_link_to_redis_carries_commands_and_replies() {
    let Some(redis) = RedisServer::start() else {
        return;
    };
    let h = Harness::start();
    h.run(vec![Step::Connect(0, redis.addr)]);
    assert_eq!(h.next(), Told::Open(0));
    h.run(vec![Step::Send(0, PING.to_vec())]);
    assert_eq!(h.read(0, PONG.len()), PONG);
    h.run(vec![Step::Send(0, command(&[b"ECHO", b"a\r\nb"]))]);
    assert_eq!(h.read(0, 10), b"$4\r\na\r\nb\r\n");
}

#[test]
fn bytes_sent_while_connecting_are_written_once_connected() {
    let Some(redis) = RedisServer::start() else {
        return;
    };
    let h = Harness::start();
    let echo = command(&[b"ECHO", b"early"]);
    h.run(vec![
        Step::Connect(1, redis.addr),
        Step::Send(1, PING.to_vec()),
        Step::Send(1, echo),
    ]);
    assert_eq!(h.next(), Told::Open(1));
    let expected = b"+PONG\r\n$5\r\nearly\r\n";
    assert_eq!(h.read(1, expected.len()), expected);
}

#[test]
fn a_link_to_a_closed_port_reports_a_connect_error() {
    let addr = {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
        listener.local_addr().expect("addr")
    }; // closed again: nothing listens there
    let h = Harness::start();
    h.run(vec![Step::Connect(2, addr), Step::Send(2, PING.to_vec())]);
    match h.next() {
        Told::Closed(2, error) => assert!(error.starts_with("connect: "), "{error}"),
        other => panic!("a connect error, not {other:?}"),
    }
    // The id is free again: a second attempt is reported the same way.
    h.run(vec![Step::Connect(2, addr)]);
    assert!(matches!(h.next(), Told::Closed(2, e) if e.starts_with("connect: ")));

    // A connect the system refuses at once (TCP to the broadcast address) is reported the
    // same way, from the loop rather than from inside the action; closed before that, it is
    // not reported at all.
    let broadcast: SocketAddr = "255.255.255.255:80".parse().unwrap();
    h.run(vec![Step::Connect(3, broadcast)]);
    assert!(matches!(h.next(), Told::Closed(3, e) if e.starts_with("connect: ")));
    h.run(vec![
        Step::Connect(3, broadcast),
        Step::Close(3),
        Step::Connect(4, addr),
    ]);
    assert!(matches!(h.next(), Told::Closed(4, e) if e.starts_with("connect: ")));
}

#[test]
fn a_server_that_dies_closes_its_link() {
    let Some(mut redis) = RedisServer::start() else {
        return;
    };
    let h = Harness::start();
    h.run(vec![
        Step::Connect(0, redis.addr),
        Step::Send(0, PING.to_vec()),
    ]);
    assert_eq!(h.next(), Told::Open(0));
    assert_eq!(h.read(0, PONG.len()), PONG);
    redis.kill();
    match h.next() {
        Told::Closed(0, error) => {
            assert!(
                error == "end of stream" || error.starts_with("reset: "),
                "{error}"
            )
        }
        other => panic!("the link closed, not {other:?}"),
    }
    // Bytes for the closed link go nowhere and nothing more is told about it.
    h.run(vec![
        Step::Send(0, PING.to_vec()),
        Step::Connect(1, redis.addr),
    ]);
    assert!(matches!(h.next(), Told::Closed(1, e) if e.starts_with("connect: ")));
}

#[test]
fn a_pipeline_of_several_mib_is_written_and_answered_in_full() {
    let Some(redis) = RedisServer::start() else {
        return;
    };
    let h = Harness::start();
    h.run(vec![Step::Connect(0, redis.addr)]);
    assert_eq!(h.next(), Told::Open(0));

    // 10 000 PINGs in one send.
    h.run(vec![Step::Send(0, PING.repeat(10_000))]);
    assert_eq!(h.read(0, PONG.len() * 10_000), PONG.repeat(10_000));

    // 8 MiB of SET values in one send, far more than a socket takes at once, then one value
    // read back whole.
    let value: Vec<u8> = (0..1 << 20).map(|i: u32| (i % 251) as u8).collect();
    let mut pipeline = Vec::new();
    for k in 0..8u8 {
        pipeline.extend_from_slice(&command(&[b"SET", &[b'k', b'0' + k], &value]));
    }
    pipeline.extend_from_slice(&command(&[b"GET", b"k7"]));
    assert!(pipeline.len() > 8 << 20);
    h.run(vec![Step::Send(0, pipeline)]);
    let mut expected = b"+OK\r\n".repeat(8);
    expected.extend_from_slice(format!("${}\r\n", value.len()).as_bytes());
    expected.extend_from_slice(&value);
    expected.extend_from_slice(b"\r\n");
    assert!(
        h.read(0, expected.len()) == expected,
        "the replies, in order"
    );
}

#[test]
fn a_link_id_reopened_is_a_new_link_the_old_one_never_reaches() {
    let Some(redis) = RedisServer::start() else {
        return;
    };
    let h = Harness::start();
    h.run(vec![Step::Connect(0, redis.addr)]);
    assert_eq!(h.next(), Told::Open(0));
    // 20 MiB of replies on their way when the link is closed and its id reopened.
    let value = vec![b'v'; 1 << 20];
    let mut pipeline = command(&[b"SET", b"big", &value]);
    for _ in 0..20 {
        pipeline.extend_from_slice(&command(&[b"GET", b"big"]));
    }
    h.run(vec![Step::Send(0, pipeline)]);
    assert!(matches!(h.next(), Told::Data(0, _)), "the replies began");
    let marker = command(&[b"ECHO", b"new"]);
    h.run(vec![
        Step::Close(0),
        Step::Connect(0, redis.addr),
        Step::Send(0, marker),
    ]);
    // What the old link read before the close was told; after the new link's open, nothing
    // of the old one, and no report of its close.
    let mut old = 0;
    loop {
        match h.next() {
            Told::Data(0, data) => old += data.len(),
            Told::Open(0) => break,
            other => panic!("{other:?}"),
        }
    }
    assert!(
        old < 20 << 20,
        "the old link was closed with replies in flight"
    );
    assert_eq!(h.read(0, 9), b"$3\r\nnew\r\n");
    // A connect on an open id replaces the link without a report, too.
    h.run(vec![
        Step::Connect(0, redis.addr),
        Step::Send(0, command(&[b"ECHO", b"third"])),
    ]);
    assert_eq!(h.next(), Told::Open(0));
    assert_eq!(h.read(0, 11), b"$5\r\nthird\r\n");
    // A closed link is closed without a report: what comes next is the other link's.
    h.run(vec![Step::Close(0), Step::Connect(1, redis.addr)]);
    assert_eq!(h.next(), Told::Open(1));
}

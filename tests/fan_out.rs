//! The writes of a fan-out: one large message to many connections is written within the
//! writes' share of a turn, the connections it leaves first in line in the next turns, a small
//! reply before all of them, and every receiver gets every message whole and in order. Over
//! real sockets on 127.0.0.1: a transport `Reactor` driven turn by turn from the test thread,
//! and the gateway with session members reading in threads of their own.

mod common;

use std::io::{ErrorKind, Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

use common::{frame, session_group, test_config, upgrade_request, Client, TestGateway, TOKEN_BOB};
use gateway::transport::{Actions, App, CloseReason, ConnId, Reactor, TransportConfig};
use serde_json::{json, Value};

/// Bytes of each message of the fan-out.
const LARGE: usize = 1024 * 1024;

/// Members written to: `join` makes a connection one; `fan` sends every member two large
/// binary messages (each filled with its number); `split` sends message 1 to the members
/// that joined first, third, ... and message 2 to the others; `solo` sends messages 3 and 4 to
/// the first member only; `ping` is answered `pong`.
#[derive(Default)]
struct Fan {
    members: Vec<ConnId>,
    fans: usize,
    pings: usize,
}

impl App for Fan {
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
        match data {
            b"join" => self.members.push(conn),
            b"fan" => {
                self.fans += 1;
                for n in [1u8, 2] {
                    let msg = out.stage_bytes(&vec![n; LARGE], true);
                    for &member in &self.members {
                        out.send(member, &msg);
                    }
                }
            }
            b"split" => {
                self.fans += 1;
                for (n, first) in [(1u8, 0), (2, 1)] {
                    let msg = out.stage_bytes(&vec![n; LARGE], true);
                    for &member in self.members.iter().skip(first).step_by(2) {
                        out.send(member, &msg);
                    }
                }
            }
            b"solo" => {
                self.fans += 1;
                for n in [3u8, 4] {
                    let msg = out.stage_bytes(&vec![n; LARGE], true);
                    out.send(self.members[0], &msg);
                }
            }
            b"ping" => {
                self.pings += 1;
                out.send_text(conn, "pong");
            }
            _ => {}
        }
    }

    fn on_close(&mut self, _: ConnId, _: CloseReason, _: Instant, _: &mut Actions<()>) {}
    fn on_command(&mut self, _: (), _: Instant, _: &mut Actions<()>) {}
}

/// A client socket read without blocking, from the thread that turns the reactor.
struct Peer {
    stream: TcpStream,
    got: Vec<u8>,
}

impl Peer {
    /// Read what is there now; whether anything was.
    fn read_now(&mut self) -> bool {
        let mut chunk = vec![0u8; 256 * 1024];
        let mut any = false;
        loop {
            match self.stream.read(&mut chunk) {
                Ok(0) => panic!("the reactor closed a peer"),
                Ok(n) => {
                    self.got.extend_from_slice(&chunk[..n]);
                    any = true;
                }
                Err(e) if e.kind() == ErrorKind::WouldBlock => return any,
                Err(e) => panic!("read: {e}"),
            }
        }
    }

    /// Whether the socket holds bytes now, without taking them.
    fn has_bytes(&self) -> bool {
        let mut one = [0u8; 1];
        match self.stream.peek(&mut one) {
            Ok(n) => n > 0,
            Err(e) if e.kind() == ErrorKind::WouldBlock => false,
            Err(e) => panic!("peek: {e}"),
        }
    }

    fn send(&mut self, text: &[u8]) {
        self.stream
            .write_all(&frame(1, true, text, true))
            .expect("write");
    }
}

/// Turn `reactor` until `done` holds (a 10 s deadline).
fn turn_until<A: App>(reactor: &mut Reactor<A>, mut done: impl FnMut(&mut Reactor<A>) -> bool) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while !done(reactor) {
        assert!(Instant::now() < deadline, "not done within 10 s");
        reactor.turn(Some(Duration::from_millis(5))).expect("turn");
    }
}

/// `n` upgraded peers of `reactor`, their 101 heads read.
fn peers(reactor: &mut Reactor<Fan>, n: usize) -> Vec<Peer> {
    let request = upgrade_request("/ws", "");
    let mut peers: Vec<Peer> = (0..n)
        .map(|_| {
            let mut stream = TcpStream::connect(reactor.local_addr()).expect("connect");
            stream.set_nodelay(true).unwrap();
            stream.write_all(request.as_bytes()).unwrap();
            stream.set_nonblocking(true).unwrap();
            Peer {
                stream,
                got: Vec::new(),
            }
        })
        .collect();
    turn_until(reactor, |_| {
        peers.iter_mut().all(|p| {
            p.read_now();
            p.got.windows(4).any(|w| w == b"\r\n\r\n")
        })
    });
    for p in &mut peers {
        assert!(p.got.starts_with(b"HTTP/1.1 101"));
        p.got.clear();
    }
    peers
}

/// A reactor on `config` with `n` peers that joined the fan-out, and a sender that did not.
fn members(config: TransportConfig, n: usize) -> (Reactor<Fan>, Vec<Peer>, Peer) {
    let mut reactor = Reactor::bind(config, Fan::default()).expect("bind");
    let mut members = peers(&mut reactor, n);
    let sender = peers(&mut reactor, 1).remove(0);
    for m in &mut members {
        m.send(b"join");
    }
    turn_until(&mut reactor, |r| r.app().members.len() == n);
    (reactor, members, sender)
}

/// Read what each of `peers` has waiting.
fn read_all(peers: &mut [Peer]) {
    for p in peers {
        p.read_now();
    }
}

/// The server frame of a binary message of `LARGE` bytes `n`.
fn large_frame(n: u8) -> Vec<u8> {
    let mut out = vec![0x82, 127];
    out.extend_from_slice(&(LARGE as u64).to_be_bytes());
    out.resize(out.len() + LARGE, n);
    out
}

#[test]
fn a_large_fan_out_is_written_one_share_a_turn_with_a_pong_first_and_nothing_lost() {
    let mut config = TransportConfig::new("127.0.0.1:0".parse().unwrap());
    // A share of no time: one large write a turn (and one small), whatever the machine.
    config.write_share = Duration::ZERO;
    let mut reactor = Reactor::bind(config, Fan::default()).expect("bind");
    let mut members = peers(&mut reactor, 9);
    let mut others = peers(&mut reactor, 2);
    let (sender, bystander) = others.split_at_mut(1);
    let (sender, bystander) = (&mut sender[0], &mut bystander[0]);
    for m in &mut members {
        m.send(b"join");
    }
    turn_until(&mut reactor, |r| r.app().members.len() == 9);

    // The fan-out and the ping arrive in one turn, the ping behind it.
    sender.send(b"fan");
    bystander.send(b"ping");
    turn_until(&mut reactor, |r| r.app().fans == 1 && r.app().pings == 1);
    // The pong was written in that turn: it is waiting in the socket.
    bystander.stream.set_nonblocking(false).unwrap();
    bystander
        .stream
        .set_read_timeout(Some(Duration::from_secs(5)))
        .unwrap();
    let mut pong = [0u8; 6];
    bystander.stream.read_exact(&mut pong).expect("the pong");
    assert_eq!(&pong, b"\x81\x04pong");
    // Of the members, the first was written to and the others wait: the next turns take them
    // one by one, in the order they were sent to.
    let written = |members: &[Peer]| members.iter().map(Peer::has_bytes).collect::<Vec<_>>();
    let mut expected = vec![false; 9];
    expected[0] = true;
    assert_eq!(written(&members), expected, "after the turn of the fan-out");
    for i in 1..9 {
        reactor.turn(Some(Duration::ZERO)).expect("turn");
        expected[i] = true;
        assert_eq!(written(&members), expected, "after {i} more turns");
    }

    // Then everyone reads: every member gets both messages, whole and in order.
    let whole = [large_frame(1), large_frame(2)].concat();
    turn_until(&mut reactor, |_| {
        read_all(&mut members);
        members.iter().all(|m| m.got.len() >= whole.len())
    });
    for (i, m) in members.iter().enumerate() {
        assert!(
            m.got == whole,
            "member {i}: {} bytes, not the two messages",
            m.got.len()
        );
    }
    assert!(!sender.read_now(), "the sender is no member");
    assert_eq!(reactor.stats().bytes_queued, 0);
}

#[test]
fn frames_kept_past_max_outbound_buffer_are_copied_and_every_member_still_gets_its_own() {
    let mut config = TransportConfig::new("127.0.0.1:0".parse().unwrap());
    config.write_share = Duration::ZERO;
    // Two 1 MiB frames in the arena are more than this: the members left after the first turn
    // copy their frames, and the arena is cleared.
    config.max_outbound_buffer = 3 * LARGE / 2;
    let (mut reactor, mut members, mut sender) = members(config, 6);
    sender.send(b"split");
    turn_until(&mut reactor, |r| r.app().fans == 1);
    let written = members.iter().filter(|m| m.has_bytes()).count();
    assert_eq!(written, 1, "one large write in the turn of the fan-out");
    turn_until(&mut reactor, |_| {
        read_all(&mut members);
        members.iter().all(|m| m.got.len() >= LARGE + 10)
    });
    for (i, m) in members.iter().enumerate() {
        let n = if i % 2 == 0 { 1 } else { 2 };
        assert!(m.got == large_frame(n), "member {i}: {} bytes", m.got.len());
    }
    assert_eq!(reactor.stats().bytes_queued, 0);
}

#[test]
fn frames_held_after_the_others_are_written_move_down_the_arena_and_stay_whole() {
    let mut config = TransportConfig::new("127.0.0.1:0".parse().unwrap());
    config.write_share = Duration::ZERO;
    config.max_outbound_buffer = 8 * LARGE;
    let (mut reactor, mut members, mut sender) = members(config, 4);
    sender.send(b"fan");
    turn_until(&mut reactor, |r| r.app().fans == 1);
    // The first member was written to; now it gets two more, framed after the first two, and
    // waits behind the three members that still hold the first two.
    assert!(members[0].has_bytes());
    members[0].read_now();
    sender.send(b"solo");
    turn_until(&mut reactor, |r| r.app().fans == 2);
    turn_until(&mut reactor, |_| {
        read_all(&mut members);
        members[0].got.len() >= 4 * (LARGE + 10)
            && members[1..].iter().all(|m| m.got.len() >= 2 * (LARGE + 10))
    });
    let first = [
        large_frame(1),
        large_frame(2),
        large_frame(3),
        large_frame(4),
    ]
    .concat();
    assert!(members[0].got == first, "{} bytes", members[0].got.len());
    let others = [large_frame(1), large_frame(2)].concat();
    for (i, m) in members.iter().enumerate().skip(1) {
        assert!(m.got == others, "member {i}: {} bytes", m.got.len());
    }
    assert_eq!(reactor.stats().bytes_queued, 0);
}

#[test]
fn members_get_every_large_chat_in_order_while_a_bystander_is_answered() {
    const CHATS: usize = 6;
    let gw = TestGateway::start(test_config());
    let mut group = session_group(&gw, "wide", 10);
    let mut sender = group.remove(0);
    let text = "z".repeat(1000 * 1000);
    // The members read in threads of their own, each until it has every chat.
    let readers: Vec<_> = group
        .into_iter()
        .map(|mut member| {
            std::thread::spawn(move || {
                let mut seen = Vec::new();
                while seen.len() < CHATS {
                    let msg = member.recv();
                    if msg["type"] == "chat" {
                        let len = msg["payload"]["text"].as_str().map_or(0, str::len);
                        seen.push((msg["payload"]["i"].as_u64(), len));
                    }
                }
                (seen, member) // still a member: its leaving would tell the sender
            })
        })
        .collect();
    let batch: Vec<Value> = (0..CHATS)
        .map(|i| json!({"type": "chat", "id": format!("c{i}"), "sessionId": "wide", "payload": {"i": i, "text": text}}))
        .collect();
    let mut bystander = Client::authed(&gw, TOKEN_BOB);
    sender.send_batch(&batch);
    for _ in 0..20 {
        let pong = bystander.request("ping", json!({}));
        assert_eq!(pong["type"], "pong");
    }
    let expected: Vec<_> = (0..CHATS as u64).map(|i| (Some(i), text.len())).collect();
    let mut kept = Vec::new();
    for reader in readers {
        let (seen, member) = reader.join().expect("a member");
        assert_eq!(seen, expected);
        kept.push(member);
    }
    let pong = sender.request("ping", json!({}));
    assert_eq!(pong["type"], "pong", "the sender got no error first");
}

//! The Redis client of a node, sans-IO: two links (one for pipelined commands, one
//! subscribed), their handshakes, the order of replies, timeouts, reconnects with back-off,
//! the subscriptions, and a probe of the subscriber.
//!
//! Contract:
//! - It drives the transport's outbound links ([`Actions::link_connect`], `link_send`,
//!   `link_close`) and is driven by their reports and by [`Broker::on_tick`], which the owner
//!   calls at least every [`TICK`] while the broker exists. It reads no clock: `now` comes in.
//! - [`BrokerEvent::Up`] once both links are connected, authenticated, every script is loaded
//!   and every wanted channel is subscribed again; [`BrokerEvent::Down`] when either link is
//!   lost, a command goes unanswered for `timeout`, or the subscriber's probe does not come
//!   back within `timeout`. Then both links are closed and reconnected, at most
//!   `max_backoff` (itself at most [`MAX_BACKOFF`]) apart.
//! - Commands are accepted only while up ([`Broker::call`] returns false otherwise, and when
//!   the queue toward Redis holds `max_queue` commands or `max_queue_bytes`): the caller
//!   fails the request at once.
//!   Every accepted command gets exactly one [`BrokerEvent::Reply`] (Redis's reply, an error
//!   reply included) or one [`BrokerEvent::Failed`] (the link went down first), in the order
//!   the commands were accepted.
//! - A published message reaches the owner as [`BrokerEvent::Message`] in the order Redis
//!   sent it; a channel asked for with [`Broker::subscribe`] is reported once with
//!   [`BrokerEvent::Subscribed`] when Redis confirms it (again after each reconnect).
//! - Scripts are loaded (`SCRIPT LOAD`) at every connect, before `Up`; [`Broker::eval`] runs
//!   one by its digest. A `NOSCRIPT` reply (the scripts were flushed) counts as a broken link.

use std::collections::{BTreeSet, VecDeque};
use std::time::{Duration, Instant};

use core::net::SocketAddr;

use super::resp::{Reply, RespLimits};
use super::resp_decode::Decoder;
use super::resp_encode::{encode, Int};
use super::resp_push::{push, Push};
use crate::app::{Actions, LinkId};

/// The link of pipelined commands.
pub(crate) const COMMAND_LINK: LinkId = LinkId(1);
/// The subscribed link.
pub(crate) const SUBSCRIBER_LINK: LinkId = LinkId(2);

/// How often the owner calls [`Broker::on_tick`] at least.
pub(crate) const TICK: Duration = Duration::from_millis(50);
/// The longest wait between two connection attempts.
pub(crate) const MAX_BACKOFF: Duration = Duration::from_secs(1);
/// The first wait after a failure.
const MIN_BACKOFF: Duration = Duration::from_millis(50);
/// The largest reply accepted (an `agent_query` page, a session's members).
const MAX_REPLY: usize = 64 * 1024 * 1024;

/// What a broker is set up with.
#[derive(Clone, Debug)]
pub(crate) struct BrokerSettings {
    /// The Redis server.
    pub addr: SocketAddr,
    /// `AUTH` with this, when set.
    pub password: Option<String>,
    /// `SELECT` this database when not 0.
    pub db: u32,
    /// A command or the subscriber's probe unanswered this long breaks the link.
    pub timeout: Duration,
    /// Commands in flight at most.
    pub max_queue: usize,
    /// Bytes of commands in flight at most (one more command is taken while below it).
    pub max_queue_bytes: usize,
    /// How often the subscriber is probed.
    pub probe_every: Duration,
    /// The longest wait between two connection attempts (at most [`MAX_BACKOFF`]).
    pub max_backoff: Duration,
    /// The channel the probe is published to (the node's own, which the subscriber always
    /// listens to).
    pub probe_channel: Vec<u8>,
    /// The connections' names in Redis (`CLIENT SETNAME`, then `-cmd` and `-sub`), so that an
    /// operator tells them apart in `CLIENT LIST`.
    pub name: String,
    /// The Lua scripts, loaded at every connect; [`Broker::eval`] names one by its index.
    pub scripts: Vec<&'static str>,
}

/// What the broker tells its owner.
#[derive(Debug, PartialEq)]
pub(crate) enum BrokerEvent {
    /// Both links ready (see the module docs).
    Up,
    /// Lost, with why; every command in flight was failed just before.
    Down(String),
    /// The reply to the command accepted with `tag`.
    Reply { tag: u64, reply: Reply },
    /// The command accepted with `tag` will get no reply.
    Failed { tag: u64 },
    /// A message published to a subscribed channel.
    Message { channel: Vec<u8>, payload: Vec<u8> },
    /// Redis confirmed the subscription to `channel`.
    Subscribed { channel: Vec<u8> },
}

/// Where a link is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Phase {
    /// Not connected; a connect is due at `retry_at`.
    Idle,
    /// Connecting, since the attempt began.
    Connecting,
    /// Connected; the handshake's replies are awaited.
    Handshake,
    /// Serving.
    Ready,
}

/// A command in flight on the command link.
#[derive(Debug)]
struct InFlight {
    /// The owner's tag, or `None` for the broker's own (handshake, probe).
    tag: Option<u64>,
    sent: Instant,
    /// A `SCRIPT LOAD` of the script with this index.
    loads: Option<usize>,
    /// Its bytes on the wire (counted against `max_queue_bytes`).
    bytes: usize,
}

/// The Redis client (see the module docs).
pub(crate) struct Broker {
    settings: BrokerSettings,
    command: Phase,
    subscriber: Phase,
    command_in: Decoder,
    subscriber_in: Decoder,
    in_flight: VecDeque<InFlight>,
    /// The bytes of the commands in flight.
    in_flight_bytes: usize,
    /// Handshake replies the subscriber still awaits (AUTH).
    subscriber_handshake: usize,
    /// The digest of each script, once loaded on this connection.
    digests: Vec<Option<Vec<u8>>>,
    /// Channels the owner wants, and those Redis confirmed on this connection.
    wanted: BTreeSet<Vec<u8>>,
    confirmed: BTreeSet<Vec<u8>>,
    up: bool,
    retry_at: Instant,
    backoff: Duration,
    /// When the connect attempt or the handshake began.
    attempt_since: Instant,
    /// The probe in flight: its number and when it was published.
    probe: Option<(u64, Instant)>,
    probes_sent: u64,
    last_probe: Instant,
    /// Scratch for encoding.
    buf: Vec<u8>,
    /// Commands sent since start (the metric).
    pub(crate) commands_total: u64,
    /// Link failures since start (the metric).
    pub(crate) errors_total: u64,
    /// Round trips of the commands answered.
    pub(crate) round_trips: RoundTrips,
}

/// A histogram of command round trips, for `/metrics` (`gateway_broker_rtt_seconds`).
#[derive(Clone, Debug, Default)]
pub(crate) struct RoundTrips {
    /// Counts of round trips at most [`RoundTrips::BOUNDS`]`[i]` seconds (cumulative when
    /// rendered), the last one for everything longer.
    pub(crate) counts: [u64; RoundTrips::BOUNDS.len() + 1],
    /// The sum of every round trip, in seconds.
    pub(crate) sum: f64,
}

impl RoundTrips {
    /// The upper bounds of the buckets, in seconds.
    pub(crate) const BOUNDS: [f64; 10] = [
        0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.05, 0.25, 1.0,
    ];

    fn record(&mut self, rtt: Duration) {
        let seconds = rtt.as_secs_f64();
        let bucket = Self::BOUNDS
            .iter()
            .position(|&bound| seconds <= bound)
            .unwrap_or(Self::BOUNDS.len());
        self.counts[bucket] += 1;
        self.sum += seconds;
    }
}

impl Broker {
    /// A broker that connects at the first [`Broker::on_tick`].
    pub(crate) fn new(settings: BrokerSettings, now: Instant) -> Broker {
        let limits = RespLimits::new(MAX_REPLY);
        let mut wanted = BTreeSet::new();
        wanted.insert(settings.probe_channel.clone());
        Broker {
            digests: vec![None; settings.scripts.len()],
            settings,
            command: Phase::Idle,
            subscriber: Phase::Idle,
            command_in: Decoder::new(limits),
            subscriber_in: Decoder::new(limits),
            in_flight: VecDeque::new(),
            in_flight_bytes: 0,
            subscriber_handshake: 0,
            wanted,
            confirmed: BTreeSet::new(),
            up: false,
            retry_at: now,
            backoff: MIN_BACKOFF,
            attempt_since: now,
            probe: None,
            probes_sent: 0,
            last_probe: now,
            buf: Vec::new(),
            commands_total: 0,
            errors_total: 0,
            round_trips: RoundTrips::default(),
        }
    }

    /// Whether cluster commands are served now.
    pub(crate) fn is_up(&self) -> bool {
        self.up
    }

    /// Send the command `args`; its answer comes back under `tag`. False (nothing sent) when
    /// the broker is not up or its queue is full.
    pub(crate) fn call<E>(
        &mut self,
        tag: u64,
        args: &[&[u8]],
        now: Instant,
        out: &mut Actions<E>,
    ) -> bool {
        let full = self.in_flight.len() >= self.settings.max_queue
            || self.in_flight_bytes >= self.settings.max_queue_bytes;
        if !self.up || full {
            return false;
        }
        self.send_command(Some(tag), None, args, now, out);
        true
    }

    /// Run the script with index `script` on `keys` and `args` (`EVALSHA`); as [`Broker::call`].
    pub(crate) fn eval<E>(
        &mut self,
        tag: u64,
        script: usize,
        keys: &[&[u8]],
        args: &[&[u8]],
        now: Instant,
        out: &mut Actions<E>,
    ) -> bool {
        let Some(Some(digest)) = self.digests.get(script) else {
            return false;
        };
        let digest = digest.clone();
        let count = Int::new(keys.len() as i64);
        let mut all: Vec<&[u8]> = Vec::with_capacity(3 + keys.len() + args.len());
        all.extend_from_slice(&[b"EVALSHA", &digest, &count]);
        all.extend_from_slice(keys);
        all.extend_from_slice(args);
        self.call(tag, &all, now, out)
    }

    /// Want `channel`: subscribed now when up, and again after every reconnect; reported
    /// with [`BrokerEvent::Subscribed`] when Redis confirms it.
    pub(crate) fn subscribe<E>(&mut self, channel: &[u8], out: &mut Actions<E>) {
        if !self.wanted.insert(channel.to_vec()) {
            return;
        }
        if self.subscriber == Phase::Ready || self.subscriber == Phase::Handshake {
            self.buf.clear();
            encode(&mut self.buf, &[b"SUBSCRIBE", channel]);
            out.link_send(SUBSCRIBER_LINK, &self.buf);
        }
    }

    /// Want `channel` from the first connect on (before the broker has connected: nothing is
    /// sent now).
    pub(crate) fn want(&mut self, channel: &[u8]) {
        self.wanted.insert(channel.to_vec());
    }

    /// Stop wanting `channel`.
    pub(crate) fn unsubscribe<E>(&mut self, channel: &[u8], out: &mut Actions<E>) {
        if channel == self.settings.probe_channel.as_slice() || !self.wanted.remove(channel) {
            return;
        }
        self.confirmed.remove(channel);
        if self.subscriber == Phase::Ready || self.subscriber == Phase::Handshake {
            self.buf.clear();
            encode(&mut self.buf, &[b"UNSUBSCRIBE", channel]);
            out.link_send(SUBSCRIBER_LINK, &self.buf);
        }
    }

    /// Connect when due, expire what waited too long, probe the subscriber.
    pub(crate) fn on_tick<E>(
        &mut self,
        now: Instant,
        out: &mut Actions<E>,
        events: &mut Vec<BrokerEvent>,
    ) {
        let timeout = self.settings.timeout;
        match (self.command, self.subscriber) {
            (Phase::Idle, Phase::Idle) if now >= self.retry_at => {
                self.command = Phase::Connecting;
                self.subscriber = Phase::Connecting;
                self.attempt_since = now;
                out.link_connect(COMMAND_LINK, self.settings.addr);
                out.link_connect(SUBSCRIBER_LINK, self.settings.addr);
                return;
            }
            (Phase::Idle, Phase::Idle) => return,
            _ => {}
        }
        if !self.up && now.saturating_duration_since(self.attempt_since) >= timeout {
            return self.fail("connect and handshake timed out", now, out, events);
        }
        if let Some(oldest) = self.in_flight.front() {
            if now.saturating_duration_since(oldest.sent) >= timeout {
                return self.fail("a command was not answered in time", now, out, events);
            }
        }
        if let Some((_, sent)) = self.probe {
            if now.saturating_duration_since(sent) >= timeout {
                return self.fail("the subscriber's probe did not come back", now, out, events);
            }
        }
        if self.up
            && self.probe.is_none()
            && now.saturating_duration_since(self.last_probe) >= self.settings.probe_every
        {
            self.probes_sent += 1;
            self.probe = Some((self.probes_sent, now));
            self.last_probe = now;
            let number = Int::new(self.probes_sent as i64);
            let mut payload = PROBE_PREFIX.to_vec();
            payload.extend_from_slice(&number);
            let channel = self.settings.probe_channel.clone();
            self.send_command(None, None, &[b"PUBLISH", &channel, &payload], now, out);
        }
    }

    /// A link connected: begin its handshake.
    pub(crate) fn on_link_open<E>(&mut self, link: LinkId, now: Instant, out: &mut Actions<E>) {
        if link == COMMAND_LINK && self.command == Phase::Connecting {
            self.command = Phase::Handshake;
            if let Some(password) = self.settings.password.clone() {
                self.send_command(None, None, &[b"AUTH", password.as_bytes()], now, out);
            }
            let name = format!("{}-cmd", self.settings.name);
            self.send_command(
                None,
                None,
                &[b"CLIENT", b"SETNAME", name.as_bytes()],
                now,
                out,
            );
            if self.settings.db != 0 {
                let db = Int::new(i64::from(self.settings.db));
                self.send_command(None, None, &[b"SELECT", &db], now, out);
            }
            for (index, script) in self.settings.scripts.iter().enumerate() {
                self.buf.clear();
                encode(&mut self.buf, &[b"SCRIPT", b"LOAD", script.as_bytes()]);
                out.link_send(COMMAND_LINK, &self.buf);
                self.in_flight.push_back(InFlight {
                    tag: None,
                    sent: now,
                    loads: Some(index),
                    bytes: 0,
                });
            }
            self.send_command(None, None, &[b"PING"], now, out);
        } else if link == SUBSCRIBER_LINK && self.subscriber == Phase::Connecting {
            self.subscriber = Phase::Handshake;
            self.buf.clear();
            if let Some(password) = &self.settings.password {
                encode(&mut self.buf, &[b"AUTH", password.as_bytes()]);
                self.subscriber_handshake = 1;
            }
            let name = format!("{}-sub", self.settings.name);
            encode(&mut self.buf, &[b"CLIENT", b"SETNAME", name.as_bytes()]);
            self.subscriber_handshake += 1;
            for channel in &self.wanted {
                encode(&mut self.buf, &[b"SUBSCRIBE", channel]);
            }
            out.link_send(SUBSCRIBER_LINK, &self.buf);
        }
    }

    /// Bytes from a link.
    pub(crate) fn on_link_data<E>(
        &mut self,
        link: LinkId,
        data: &[u8],
        now: Instant,
        out: &mut Actions<E>,
        events: &mut Vec<BrokerEvent>,
    ) {
        if link == COMMAND_LINK {
            self.command_in.feed(data);
            loop {
                match self.command_in.next() {
                    Ok(Some(reply)) => {
                        if let Err(why) = self.command_reply(reply, now, events) {
                            return self.fail(why, now, out, events);
                        }
                    }
                    Ok(None) => break,
                    Err(e) => return self.fail(&format!("bad reply: {e}"), now, out, events),
                }
            }
        } else if link == SUBSCRIBER_LINK {
            self.subscriber_in.feed(data);
            loop {
                match self.subscriber_in.next() {
                    Ok(Some(reply)) => {
                        if let Err(why) = self.subscriber_reply(reply, events) {
                            return self.fail(why, now, out, events);
                        }
                    }
                    Ok(None) => break,
                    Err(e) => return self.fail(&format!("bad push: {e}"), now, out, events),
                }
            }
        } else {
            return;
        }
        self.check_up(events);
    }

    /// A link ended or failed to connect.
    pub(crate) fn on_link_closed<E>(
        &mut self,
        link: LinkId,
        error: &str,
        now: Instant,
        out: &mut Actions<E>,
        events: &mut Vec<BrokerEvent>,
    ) {
        if link == COMMAND_LINK || link == SUBSCRIBER_LINK {
            let which = if link == COMMAND_LINK {
                "command link"
            } else {
                "subscriber link"
            };
            self.fail(&format!("{which}: {error}"), now, out, events);
        }
    }

    fn send_command<E>(
        &mut self,
        tag: Option<u64>,
        loads: Option<usize>,
        args: &[&[u8]],
        now: Instant,
        out: &mut Actions<E>,
    ) {
        self.buf.clear();
        encode(&mut self.buf, args);
        out.link_send(COMMAND_LINK, &self.buf);
        self.commands_total += 1;
        self.in_flight_bytes += self.buf.len();
        self.in_flight.push_back(InFlight {
            tag,
            sent: now,
            loads,
            bytes: self.buf.len(),
        });
    }

    fn command_reply(
        &mut self,
        reply: Reply,
        now: Instant,
        events: &mut Vec<BrokerEvent>,
    ) -> Result<(), &'static str> {
        let Some(sent) = self.in_flight.pop_front() else {
            return Err("a reply to no command");
        };
        self.in_flight_bytes -= sent.bytes;
        if let Some(index) = sent.loads {
            match reply.as_bytes() {
                Some(digest) => self.digests[index] = Some(digest.to_vec()),
                None => return Err("a script could not be loaded"),
            }
            return Ok(());
        }
        if let Reply::Error(text) = &reply {
            if text.starts_with(b"NOSCRIPT") {
                return Err("the scripts were flushed");
            }
            if sent.tag.is_none() {
                return Err("the handshake was refused (AUTH or SELECT)");
            }
        }
        match sent.tag {
            Some(tag) => {
                self.round_trips
                    .record(now.saturating_duration_since(sent.sent));
                events.push(BrokerEvent::Reply { tag, reply });
            }
            None if self.command == Phase::Handshake && self.in_flight.is_empty() => {
                self.command = Phase::Ready;
            }
            None => {}
        }
        Ok(())
    }

    fn subscriber_reply(
        &mut self,
        reply: Reply,
        events: &mut Vec<BrokerEvent>,
    ) -> Result<(), &'static str> {
        if self.subscriber_handshake > 0 {
            self.subscriber_handshake -= 1;
            return match reply {
                Reply::Error(_) => Err("the subscriber's handshake was refused"),
                _ => Ok(()),
            };
        }
        match push(&reply) {
            Some(Push::Message { channel, payload }) => {
                if channel == self.settings.probe_channel.as_slice()
                    && payload.starts_with(PROBE_PREFIX)
                {
                    let number = &payload[PROBE_PREFIX.len()..];
                    if let Some((sent, _)) = self.probe {
                        if number == &*Int::new(sent as i64) {
                            self.probe = None;
                        }
                    }
                    return Ok(());
                }
                events.push(BrokerEvent::Message {
                    channel: channel.to_vec(),
                    payload: payload.to_vec(),
                });
            }
            Some(Push::Subscribed {
                pattern: false,
                name,
                ..
            }) => {
                if self.wanted.contains(name) && self.confirmed.insert(name.to_vec()) {
                    if self.subscriber == Phase::Handshake
                        && self.confirmed.len() == self.wanted.len()
                    {
                        self.subscriber = Phase::Ready;
                    }
                    if name != self.settings.probe_channel.as_slice() {
                        events.push(BrokerEvent::Subscribed {
                            channel: name.to_vec(),
                        });
                    }
                }
            }
            Some(Push::Unsubscribed { .. }) | Some(Push::Pong(_)) => {}
            Some(Push::PatternMessage { .. }) | Some(Push::Subscribed { .. }) => {}
            None => return Err("the subscriber got something that is not a push"),
        }
        Ok(())
    }

    fn check_up(&mut self, events: &mut Vec<BrokerEvent>) {
        if self.up || self.command != Phase::Ready || self.subscriber != Phase::Ready {
            return;
        }
        self.up = true;
        self.backoff = MIN_BACKOFF;
        events.push(BrokerEvent::Up);
    }

    /// Lose both links: fail what is in flight, tell the owner, close, and retry later.
    fn fail<E>(
        &mut self,
        why: &str,
        now: Instant,
        out: &mut Actions<E>,
        events: &mut Vec<BrokerEvent>,
    ) {
        self.errors_total += 1;
        for sent in self.in_flight.drain(..) {
            if let Some(tag) = sent.tag {
                events.push(BrokerEvent::Failed { tag });
            }
        }
        self.in_flight_bytes = 0;
        out.link_close(COMMAND_LINK);
        out.link_close(SUBSCRIBER_LINK);
        self.command = Phase::Idle;
        self.subscriber = Phase::Idle;
        let limits = RespLimits::new(MAX_REPLY);
        self.command_in = Decoder::new(limits);
        self.subscriber_in = Decoder::new(limits);
        self.subscriber_handshake = 0;
        self.confirmed.clear();
        self.digests.iter_mut().for_each(|d| *d = None);
        self.probe = None;
        self.retry_at = now + self.backoff;
        self.backoff = (self.backoff * 2)
            .min(self.settings.max_backoff)
            .min(MAX_BACKOFF);
        let was_up = std::mem::replace(&mut self.up, false);
        if was_up {
            events.push(BrokerEvent::Down(why.to_string()));
        } else {
            log::debug!("cluster: broker not reached: {why}");
        }
    }
}

/// What a probe's payload starts with (then its number): no message of the cluster's starts
/// with a NUL byte.
const PROBE_PREFIX: &[u8] = b"\0probe:";

#[cfg(test)]
mod tests {
    use super::*;
    use crate::app::Action;

    fn settings() -> BrokerSettings {
        BrokerSettings {
            addr: "127.0.0.1:6379".parse().unwrap(),
            password: Some("pw".into()),
            db: 2,
            timeout: Duration::from_millis(500),
            max_queue: 2,
            max_queue_bytes: 1 << 20,
            probe_every: Duration::from_millis(100),
            max_backoff: Duration::from_millis(300),
            probe_channel: b"gw:n:a".to_vec(),
            name: "gw-a".into(),
            scripts: vec!["return 1"],
        }
    }

    /// What was written to `link` by the actions in `out`, as text.
    fn written(out: &Actions<()>, link: LinkId) -> String {
        let mut text = String::new();
        for action in out.list() {
            if let Action::LinkSend { link: l, msg } = action {
                if *l == link {
                    text.push_str(&String::from_utf8_lossy(out.bytes(msg)));
                }
            }
        }
        text
    }

    /// A broker brought up by a well-behaved server.
    fn up(now: Instant) -> (Broker, Vec<BrokerEvent>) {
        let mut broker = Broker::new(settings(), now);
        let mut out: Actions<()> = Actions::new();
        let mut events = Vec::new();
        broker.on_tick(now, &mut out, &mut events);
        assert!(matches!(
            out.list()[0],
            Action::LinkConnect {
                link: COMMAND_LINK,
                ..
            }
        ));
        out.clear();
        broker.on_link_open(COMMAND_LINK, now, &mut out);
        let sent = written(&out, COMMAND_LINK);
        assert!(sent.contains("AUTH") && sent.contains("SELECT") && sent.contains("SCRIPT"));
        broker.on_link_open(SUBSCRIBER_LINK, now, &mut out);
        assert!(written(&out, SUBSCRIBER_LINK).contains("SUBSCRIBE"));
        let replies = b"+OK\r\n+OK\r\n+OK\r\n$3\r\nsha\r\n+PONG\r\n";
        broker.on_link_data(COMMAND_LINK, replies, now, &mut out, &mut events);
        assert!(events.is_empty(), "not up before the subscriber is");
        let pushes = b"+OK\r\n+OK\r\n*3\r\n$9\r\nsubscribe\r\n$6\r\ngw:n:a\r\n:1\r\n";
        broker.on_link_data(SUBSCRIBER_LINK, pushes, now, &mut out, &mut events);
        assert_eq!(events, [BrokerEvent::Up]);
        events.clear();
        (broker, events)
    }

    #[test]
    fn replies_come_back_in_order_under_their_tags() {
        let now = Instant::now();
        let (mut broker, mut events) = up(now);
        let mut out: Actions<()> = Actions::new();
        assert!(broker.call(7, &[b"GET", b"k"], now, &mut out));
        assert!(broker.eval(8, 0, &[b"k"], &[b"a"], now, &mut out));
        assert!(written(&out, COMMAND_LINK).contains("EVALSHA\r\n$3\r\nsha"));
        assert!(
            !broker.call(9, &[b"PING"], now, &mut out),
            "the queue holds two"
        );
        // Split anywhere: one reply arrives in two reads.
        broker.on_link_data(COMMAND_LINK, b"$1\r\nv\r\n:4", now, &mut out, &mut events);
        broker.on_link_data(COMMAND_LINK, b"2\r\n", now, &mut out, &mut events);
        assert_eq!(
            events,
            [
                BrokerEvent::Reply {
                    tag: 7,
                    reply: Reply::bulk(b"v")
                },
                BrokerEvent::Reply {
                    tag: 8,
                    reply: Reply::Integer(42)
                },
            ]
        );
    }

    #[test]
    fn the_queue_toward_redis_is_bounded_in_bytes_too() {
        let now = Instant::now();
        let (mut broker, mut events) = up(now);
        let mut out: Actions<()> = Actions::new();
        let big = vec![b'x'; 1 << 20];
        assert!(broker.call(1, &[b"SET", b"k", &big], now, &mut out));
        assert!(
            !broker.call(2, &[b"PING"], now, &mut out),
            "1 MiB in flight: full"
        );
        broker.on_link_data(COMMAND_LINK, b"+OK\r\n", now, &mut out, &mut events);
        assert!(
            broker.call(3, &[b"PING"], now, &mut out),
            "answered: room again"
        );
    }

    #[test]
    fn an_unanswered_command_fails_everything_in_flight_and_reconnects() {
        let now = Instant::now();
        let (mut broker, mut events) = up(now);
        let mut out: Actions<()> = Actions::new();
        assert!(broker.call(1, &[b"GET", b"k"], now, &mut out));
        broker.on_tick(now + Duration::from_millis(499), &mut out, &mut events);
        assert!(events.is_empty());
        out.clear();
        broker.on_tick(now + Duration::from_millis(500), &mut out, &mut events);
        assert_eq!(events[0], BrokerEvent::Failed { tag: 1 });
        assert!(matches!(events[1], BrokerEvent::Down(_)));
        assert!(!broker.is_up());
        assert!(out
            .list()
            .iter()
            .any(|a| matches!(a, Action::LinkClose { link: COMMAND_LINK })));
        assert!(
            !broker.call(2, &[b"PING"], now, &mut out),
            "down: refused at once"
        );
        // It connects again after its back-off.
        out.clear();
        broker.on_tick(now + Duration::from_millis(600), &mut out, &mut events);
        assert!(out.list().iter().any(|a| matches!(
            a,
            Action::LinkConnect {
                link: SUBSCRIBER_LINK,
                ..
            }
        )));
    }

    #[test]
    fn attempts_while_redis_does_not_answer_are_at_most_max_backoff_apart() {
        let now = Instant::now();
        let (mut broker, mut events) = up(now);
        let mut out: Actions<()> = Actions::new();
        broker.on_link_closed(COMMAND_LINK, "reset", now, &mut out, &mut events);
        let mut at = now;
        let mut gaps = Vec::new();
        for _ in 0..8 {
            // The next attempt: the first tick at which a connect goes out.
            let failed = at;
            loop {
                out.clear();
                at += Duration::from_millis(10);
                broker.on_tick(at, &mut out, &mut events);
                if out
                    .list()
                    .iter()
                    .any(|a| matches!(a, Action::LinkConnect { .. }))
                {
                    break;
                }
            }
            gaps.push(at - failed);
            // Connected, but the handshake is never answered.
            broker.on_link_open(COMMAND_LINK, at, &mut out);
            broker.on_link_open(SUBSCRIBER_LINK, at, &mut out);
            at += Duration::from_millis(500);
            broker.on_tick(at, &mut out, &mut events);
            assert!(!broker.is_up());
        }
        assert!(gaps[0] <= Duration::from_millis(60), "{gaps:?}");
        assert!(gaps[1] > gaps[0], "it backs off: {gaps:?}");
        assert!(
            gaps.iter().all(|g| *g <= Duration::from_millis(310)),
            "{gaps:?}"
        );
        assert!(gaps[7] >= Duration::from_millis(300), "{gaps:?}");
    }

    #[test]
    fn a_probe_that_does_not_come_back_breaks_the_link() {
        let now = Instant::now();
        let (mut broker, mut events) = up(now);
        let mut out: Actions<()> = Actions::new();
        let later = now + Duration::from_millis(100);
        broker.on_tick(later, &mut out, &mut events);
        let sent = written(&out, COMMAND_LINK);
        assert!(
            sent.contains("PUBLISH") && sent.contains("gw:n:a"),
            "{sent}"
        );
        // The PUBLISH is answered, but the subscriber never delivers the probe.
        broker.on_link_data(COMMAND_LINK, b":1\r\n", later, &mut out, &mut events);
        broker.on_tick(later + Duration::from_millis(499), &mut out, &mut events);
        assert!(events.is_empty());
        broker.on_tick(later + Duration::from_millis(500), &mut out, &mut events);
        assert!(matches!(&events[0], BrokerEvent::Down(why) if why.contains("probe")));
    }

    #[test]
    fn a_probe_that_comes_back_is_not_a_message() {
        let now = Instant::now();
        let (mut broker, mut events) = up(now);
        let mut out: Actions<()> = Actions::new();
        let later = now + Duration::from_millis(100);
        broker.on_tick(later, &mut out, &mut events);
        broker.on_link_data(COMMAND_LINK, b":1\r\n", later, &mut out, &mut events);
        let probe = b"*3\r\n$7\r\nmessage\r\n$6\r\ngw:n:a\r\n$8\r\n\0probe:1\r\n";
        broker.on_link_data(SUBSCRIBER_LINK, probe, later, &mut out, &mut events);
        broker.on_tick(later + Duration::from_millis(600), &mut out, &mut events);
        assert!(events.is_empty(), "{events:?}");
        assert!(broker.is_up());
    }

    #[test]
    fn subscriptions_are_confirmed_and_restored_after_a_reconnect() {
        let now = Instant::now();
        let (mut broker, mut events) = up(now);
        let mut out: Actions<()> = Actions::new();
        broker.subscribe(b"gw:s:{room}", &mut out);
        assert!(written(&out, SUBSCRIBER_LINK).contains("gw:s:{room}"));
        let confirm = b"*3\r\n$9\r\nsubscribe\r\n$11\r\ngw:s:{room}\r\n:2\r\n";
        broker.on_link_data(SUBSCRIBER_LINK, confirm, now, &mut out, &mut events);
        assert_eq!(
            events,
            [BrokerEvent::Subscribed {
                channel: b"gw:s:{room}".to_vec()
            }]
        );
        events.clear();
        broker.on_link_closed(SUBSCRIBER_LINK, "reset", now, &mut out, &mut events);
        assert!(matches!(events[0], BrokerEvent::Down(_)));
        out.clear();
        let later = now + Duration::from_millis(60);
        broker.on_tick(later, &mut out, &mut events);
        broker.on_link_open(SUBSCRIBER_LINK, later, &mut out);
        let sent = written(&out, SUBSCRIBER_LINK);
        assert!(
            sent.contains("gw:s:{room}") && sent.contains("gw:n:a"),
            "{sent}"
        );
    }

    #[test]
    fn garbage_from_redis_breaks_the_link_without_a_panic() {
        let now = Instant::now();
        let (mut broker, mut events) = up(now);
        let mut out: Actions<()> = Actions::new();
        broker.on_link_data(COMMAND_LINK, b"?what\r\n", now, &mut out, &mut events);
        assert!(matches!(events[0], BrokerEvent::Down(_)));
        let (mut broker, mut events) = up(now);
        broker.on_link_data(COMMAND_LINK, b"+unasked\r\n", now, &mut out, &mut events);
        assert!(
            matches!(events[0], BrokerEvent::Down(_)),
            "a reply to no command"
        );
        let (mut broker, mut events) = up(now);
        broker.on_link_data(SUBSCRIBER_LINK, b":5\r\n", now, &mut out, &mut events);
        assert!(matches!(events[0], BrokerEvent::Down(_)), "not a push");
    }
}

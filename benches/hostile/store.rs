//! Storing client data in a gateway, the way a hostile client fills it up to the limits
//! (agents, sessions, devices), or minimally for the baseline; with the gateway's RSS growth
//! and the bytes of client JSON that were stored.

use std::net::TcpStream;
use std::time::{Duration, Instant};

use crate::bystander::{Bystander, Window};
use crate::child::Gateway;
use crate::client::{Client, Frame, Outcome};
use crate::report::Notes;
use crate::SESSION_METADATA_LIMIT;
use crate::{attacker_token, payloads, Bench, BYSTANDER_INTERVAL, BYSTANDER_TOKEN};

/// A stored set of records and what it cost.
pub struct Stored<T> {
    /// Records the gateway accepted.
    pub records: usize,
    /// Their client JSON, in bytes (the payloads as sent).
    pub bytes: usize,
    /// `VmRSS` after minus before.
    pub rss_growth: f64,
    /// What came back.
    pub notes: Notes,
    /// Why it stopped early, if it did.
    pub over: Option<String>,
    /// The bystander's round trips meanwhile ([`watched`]).
    pub window: Option<Window>,
    /// The connections that hold the records (they must stay open).
    pub held: T,
}

impl<T> Stored<T> {
    fn new(held: T) -> Stored<T> {
        Stored {
            records: 0,
            bytes: 0,
            rss_growth: 0.0,
            notes: Notes::default(),
            over: None,
            window: None,
            held,
        }
    }
}

/// One kind of record sent over a few connections: `per_conn` records per connection (of
/// attacker user `c` for the `c`th), the `i`th record's payload from `payload(i, c, shrink)`
/// sent as `msg_type` and answered by `reply`. When the first record is refused with
/// `LIMIT_EXCEEDED` and `shrinkable`, `shrink` grows by one (a KiB less of the filler: the
/// limits may count a few bytes differently) and it is sent again, up to 16 times.
struct Records<'a> {
    msg_type: &'a str,
    reply: &'a str,
    per_conn: usize,
    shrinkable: bool,
}

fn store_records(
    bench: &Bench,
    gw: &mut Gateway,
    n: usize,
    kind: Records<'_>,
    payload: impl Fn(usize, usize, usize) -> String,
) -> Stored<Vec<Client>> {
    let rss0 = gw.rss();
    let deadline = Instant::now() + bench.s.budget;
    let mut st = Stored::new(Vec::new());
    let mut shrink = 0;
    'records: for i in 0..n {
        let c = i / kind.per_conn.max(1);
        if c == st.held.len() {
            match Client::authed(&gw.url, &attacker_token(c)) {
                Ok(client) => st.held.push(client),
                Err(e) => {
                    st.over = Some(format!("cannot connect: {e}"));
                    break;
                }
            }
        }
        loop {
            let body = payload(i, c, shrink);
            let mut frame = Frame::new(&payloads::message(kind.msg_type, &body));
            let outcome = st.held[c].request(&mut frame, deadline);
            match &outcome {
                Outcome::Reply { kind: k, .. } if k == kind.reply => {
                    st.records += 1;
                    st.bytes += body.len();
                }
                Outcome::Reply {
                    code: Some(code), ..
                } if kind.shrinkable
                    && code == "LIMIT_EXCEEDED"
                    && st.records == 0
                    && shrink < 16 =>
                {
                    shrink += 1;
                    continue;
                }
                Outcome::Reply { .. } => {}
                Outcome::Timeout => {
                    st.over = Some("over budget".into());
                    break 'records;
                }
                Outcome::Closed(_) | Outcome::Failed(_) => {
                    st.notes.outcome(&outcome);
                    break 'records;
                }
            }
            st.notes.outcome(&outcome);
            break;
        }
        if let Some(why) = bench.over_rss(gw) {
            st.over = Some(why);
            break;
        }
    }
    if shrink > 0 {
        st.notes
            .add(format!("filler shrunk by {shrink} KiB to fit"));
    }
    st.rss_growth = gw.rss() as f64 - rss0 as f64;
    st
}

/// Register `n` agents, `max_agents_per_user` per user and one connection per user: at the
/// limits when `big` (capabilities with `max_capabilities` tool names, metadata filling
/// `max_agent_bytes`, a `name` of `max_name_bytes`), minimal otherwise.
pub fn agents(bench: &Bench, gw: &mut Gateway, n: usize, big: bool) -> Stored<Vec<Client>> {
    let lim = &bench.lim;
    let caps = if big {
        payloads::capabilities(lim.max_capabilities)
    } else {
        "{}".to_owned()
    };
    let meta_len = if big {
        lim.max_agent_bytes.saturating_sub(caps.len())
    } else {
        0
    };
    let name_len = if big { lim.max_name_bytes } else { 1 };
    let kind = Records {
        msg_type: "agent_register",
        reply: "agent_info",
        per_conn: lim.max_agents_per_user,
        shrinkable: big,
    };
    store_records(bench, gw, n, kind, |i, c, shrink| {
        let meta = meta_len.saturating_sub(shrink * 1024);
        payloads::agent(&format!("a{c}-{i}"), name_len, &caps, meta)
    })
}

/// Create `n` sessions, `max_sessions_per_client` per connection: with a `name` of
/// `max_name_bytes` and metadata at the 64 KiB limit when `big`, bare otherwise.
pub fn sessions(bench: &Bench, gw: &mut Gateway, n: usize, big: bool) -> Stored<Vec<Client>> {
    let lim = &bench.lim;
    let kind = Records {
        msg_type: "session_create",
        reply: "session_info",
        per_conn: lim.max_sessions_per_client,
        shrinkable: big,
    };
    store_records(bench, gw, n, kind, |i, c, shrink| {
        if big {
            format!(
                r#"{{"sessionId":"s{c}-{i}","name":"{}","metadata":{}}}"#,
                "n".repeat(lim.max_name_bytes.max(1)),
                payloads::metadata(SESSION_METADATA_LIMIT - shrink * 1024, '0')
            )
        } else {
            format!(r#"{{"sessionId":"s{c}-{i}"}}"#)
        }
    })
}

/// Open `n` connections that each send `connect` (a 128-byte `deviceId` and a `deviceName` of
/// `max_name_bytes` when `big`, a short `deviceId` only otherwise) and then `auth`, at most
/// `max_connections_per_user` per user; they stay open, unread.
pub fn devices(bench: &Bench, gw: &mut Gateway, n: usize, big: bool) -> Stored<Vec<TcpStream>> {
    let lim = &bench.lim;
    let rss0 = gw.rss();
    let deadline = Instant::now() + bench.s.budget;
    let mut st = Stored::new(Vec::new());
    for i in 0..n {
        let mut c = match Client::open(&gw.url) {
            Ok(c) => c,
            Err(e) => {
                st.over = Some(format!("cannot connect: {e}"));
                break;
            }
        };
        let payload = if big {
            format!(
                r#"{{"deviceId":"d{i:0>127}","deviceName":"{}","role":"node","protocolVersion":1}}"#,
                "n".repeat(lim.max_name_bytes.max(1))
            )
        } else {
            format!(r#"{{"deviceId":"d{i}","role":"node","protocolVersion":1}}"#)
        };
        let mut connect = Frame::new(&payloads::message("connect", &payload));
        let mut auth = Frame::new(&format!(
            r#"{{"type":"auth","id":"@","payload":{{"token":"{}"}}}}"#,
            attacker_token(i / lim.max_connections_per_user)
        ));
        // An id no request of this client uses, so hello_ok is not taken for the auth reply.
        connect.set_seq(99_999_999);
        if let Err(e) = c.write_raw(connect.bytes()) {
            st.over = Some(e);
            break;
        }
        let outcome = c.request(&mut auth, deadline);
        match &outcome {
            Outcome::Reply { kind, .. } if kind == "auth_success" && c.stray_errors.is_empty() => {
                st.records += 1;
                st.bytes += payload.len();
            }
            Outcome::Timeout => {
                st.over = Some("over budget".into());
                break;
            }
            _ => {}
        }
        for code in &c.stray_errors {
            st.notes.add(format!("connect: error {code}"));
        }
        st.notes.outcome(&outcome);
        st.held.push(c.into_stream());
        if i % 64 == 0 {
            if let Some(why) = bench.over_rss(gw) {
                st.over = Some(why);
                break;
            }
        }
    }
    st.rss_growth = gw.rss() as f64 - rss0 as f64;
    st
}

/// Store with the bystander watching; its window is kept with the result.
pub fn watched<T>(by: &Bystander, store: impl FnOnce() -> Stored<T>) -> Stored<T> {
    let start = Instant::now();
    let mut st = store();
    st.window = Some(by.window(start));
    st
}

/// A baseline gateway of its own: store the minimal records, return what that cost.
pub fn baseline<T>(
    bench: &Bench,
    store: impl FnOnce(&Bench, &mut Gateway) -> Stored<T>,
) -> Result<Stored<()>, String> {
    let mut gw = bench.spawn()?;
    let _by = Bystander::start(&gw.url, BYSTANDER_TOKEN, BYSTANDER_INTERVAL)?;
    std::thread::sleep(Duration::from_millis(50));
    let st = store(bench, &mut gw);
    Ok(Stored {
        records: st.records,
        bytes: st.bytes,
        rss_growth: st.rss_growth,
        notes: st.notes,
        over: st.over,
        window: st.window,
        held: (),
    })
}

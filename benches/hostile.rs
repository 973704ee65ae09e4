//! `cargo bench --bench hostile`: the worst case of each class of hostile client, each within
//! the configured limits, against the release `gateway` binary in a child process (under
//! `prlimit --as`), over the wire protocol only. Every figure is printed beside a baseline
//! measured in the same run; nothing is asserted.
//!
//! Nine phases, each on fresh gateway processes (the configuration is the built-in defaults,
//! `--config /dev/null`, plus 64 tokens of 64 users and `HOSTILE_SET`; every size below is
//! read from `--print-config`, so the attacks follow the limits):
//! 1. agents: `HOSTILE_AGENTS` agents registered at `max_agent_bytes` (capabilities with
//!    `max_capabilities` tool names, metadata filling the rest, `name` of `max_name_bytes`),
//!    `max_agents_per_user` per user; then agent_register at that size, agent_heartbeat
//!    flipping busy/online, and agent_query of the whole registry;
//! 2. sessions: `HOSTILE_SESSIONS` sessions with a `name` of `max_name_bytes` and metadata
//!    at the 64 KiB limit; then session_patch at that limit in a full session, a 90-byte
//!    session_patch into 64 KiB of metadata in 6 650 small keys there (each waiting, after
//!    its reply, for the members to read its notices), and a relay
//!    (`chat`) of a payload nested as deep as `max_message_size` allows;
//! 3. devices: `HOSTILE_DEVICES` connections whose `connect` carries a 128-byte `deviceId`
//!    and a `deviceName` of `max_name_bytes`; then `auth` with a wrong token as long as
//!    `max_preauth_message_size` allows, against the 64 configured tokens;
//! 4. events: `HOSTILE_UNKNOWN` messages of an unknown type at `max_message_size` (a payload
//!    of one array of zeros: the costliest tree per byte);
//! 5. refusals: messages of about `max_message_size` refused at their last bytes (a `chat`
//!    relay with a duplicate key, a lone surrogate or `1e999999` at the end of its payload,
//!    an `agent_register` with a syntax error at its end), each beside the same message
//!    accepted (the relay without its fault, the `agent_register` with its array whole), and
//!    requests of other types accepted with the same array as a payload member they do not
//!    read (`session_create`, `session_patch`, `presence`, `presence_query`, `agent_query`,
//!    `connect`);
//! 6. shapes: `chat` relays of about `max_message_size` made of many small values (distinct
//!    keys of one object: short, written with an escape, long; small objects, empty objects
//!    and empty strings in an array), a `session_patch` whose patch is the wide object,
//!    beside a relay of one long string;
//! 7. routes (`auth_mode = none`, so that any client may route to any other): the close of a
//!    connection holding the most pending routes the bounds allow, 1024 as requester (to 64
//!    targets, 16 each) and 1024 as target (one from each of 1024 requesters, in the middle
//!    of each requester's 63), with the table at its 65 536, beside the close of a connection
//!    holding none; each timed from its close frame to the echo;
//! 8. users: connections streaming relays of one long string of about `max_message_size`,
//!    each into a session of its own, for one quiet window each: one connection of one user,
//!    16 connections of one user (who share one share of each loop turn), and one connection
//!    each of 16 users (a share each); the bystander's `ping` p99 during each;
//! 9. fanout: a `chat` relay of one long string of about `max_message_size` to a session of
//!    two (one member that reads) and to a full one (`max_clients_per_session - 1` members
//!    that read, on a thread that drains them), so that the writes of the fan-out show in the
//!    loop time, the CPU and the bystander's p99 beside the single delivery.
//!
//! Figures:
//! - RSS per stored byte: `VmRSS` growth of the gateway while the records are stored, minus
//!   the growth for as many minimal records (the baseline, a gateway of its own), divided by
//!   the extra bytes of client JSON (target <= 3x: PROTOCOL section 11, "Stored size");
//! - loop time of a message: median time from sending it to its reply (for a message without
//!   a reply: to the `pong` of a `ping` written right behind it), minus the median `ping`
//!   round trip measured just before each one on the same connection (target <= 1 ms);
//! - the gateway's CPU per message: utime + stime of the child (`/proc/PID/stat`) over the
//!   repetitions, each extended until they count `HOSTILE_CPU_TICKS` ticks of `getconf
//!   CLK_TCK` (within half the time budget), per repetition, minus the same for a `ping`
//!   alone counted once per gateway; the loop is one thread, so this is the loop time
//!   without the client's and the loopback's share (target <= 1 ms);
//! - a bystander's `ping` p99 (its own user and connection, a `ping` every 10 ms) during
//!   each attack, beside its p99 with no attack (target <= 10 ms);
//! - close time (routes): the median time from a close frame to its echo (the echo is
//!   written after the core has dropped what the connection held), minus the same for a
//!   connection holding nothing, closed just before it (target <= 1 ms);
//! - whether the gateway survived each phase under `prlimit --as`: the `memory bound`
//!   `gateway --check` prints, or `HOSTILE_AS` bytes (default 8 GiB while no bound is printed;
//!   0 turns prlimit off).
//!
//! Every attack has a time budget (`HOSTILE_BUDGET_SECS`, 10) and an RSS cap
//! (`HOSTILE_RSS_CAP_MIB`, 4096): past either it stops and reports "over budget"; a gateway
//! that does not answer the bystander within 10 s after an attack is killed, and the rest of
//! its phase is skipped. So the bench ends either way and shows before and after.
//!
//! Environment: `HOSTILE_AGENTS` (256), `HOSTILE_SESSIONS` (256), `HOSTILE_DEVICES` (4000),
//! `HOSTILE_REPS` (15, repetitions of a small attack message), `HOSTILE_HEAVY_REPS` (5, of
//! one of up to `max_message_size` or with a reply that large; both are extended for the CPU
//! figure), `HOSTILE_CPU_TICKS` (50), `HOSTILE_UNKNOWN` (16),
//! `HOSTILE_AUTH_TOKEN_BYTES` (`max_preauth_message_size` minus the envelope),
//! `HOSTILE_BUDGET_SECS` (10), `HOSTILE_ATTACK_SECS` (1: a small message is repeated at
//! least this long, for the bystander's p99), `HOSTILE_QUIET_SECS` (2, the bystander's quiet
//! window),
//! `HOSTILE_RSS_CAP_MIB` (4096), `HOSTILE_AS` (bytes, see above), `HOSTILE_SET` (extra
//! `KEY=VALUE` gateway settings, space-separated), `HOSTILE_PHASES` (names of the phases to
//! run, comma-separated; all by default), `HOSTILE_BIN` (another gateway binary to run, e.g.
//! an older build, instead of the one cargo built).
//! Without `--bench` (as `cargo test --benches` runs it) it does one tiny smoke run.

#[path = "hostile/attack.rs"]
mod attack;
#[path = "hostile/bystander.rs"]
mod bystander;
#[path = "hostile/child.rs"]
mod child;
#[path = "hostile/client.rs"]
mod client;
#[path = "hostile/cpu.rs"]
mod cpu;
#[path = "hostile/drain.rs"]
mod drain;
#[path = "hostile/payloads.rs"]
mod payloads;
#[path = "hostile/report.rs"]
mod report;
#[path = "hostile/store.rs"]
mod store;

use std::collections::HashMap;
use std::time::{Duration, Instant};

use serde_json::json;

use attack::{loop_attack, quiet_window, Reps};
use bystander::{Bystander, Window};
use child::Gateway;
use client::{Client, Frame};
use drain::Drain;
use report::{
    bystander_row_as, fmt_ms, loop_rows, median, mib, rss_row, storing_rows, survival_row, times,
    Report,
};
use store::Stored;

/// Users with a token of their own: the attackers' 63 and the bystander.
const TOKENS: usize = 64;
/// A session's metadata limit (PROTOCOL section 4), as compact JSON.
const SESSION_METADATA_LIMIT: usize = 65_536;
/// The bystander's ping interval.
const BYSTANDER_INTERVAL: Duration = Duration::from_millis(10);
/// How long a gateway may take to answer the bystander again after an attack.
const RECOVERY: Duration = Duration::from_secs(10);
/// The address-space limit while `gateway --check` prints no memory bound.
const DEFAULT_AS: u64 = 8 << 30;

fn env_num<T: std::str::FromStr>(name: &str, default: T) -> T {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// What to run, from the environment.
struct Settings {
    /// A smoke run: every phase tiny.
    smoke: bool,
    agents: usize,
    sessions: usize,
    devices: usize,
    reps: usize,
    heavy_reps: usize,
    cpu_ticks: u64,
    unknown: usize,
    auth_token_bytes: Option<usize>,
    budget: Duration,
    attack: Duration,
    quiet: Duration,
    rss_cap: u64,
    address_space: Option<u64>,
    extra_set: Vec<String>,
}

impl Settings {
    fn from_env(smoke: bool) -> Settings {
        let extra_set = std::env::var("HOSTILE_SET")
            .map(|v| v.split_whitespace().map(str::to_owned).collect())
            .unwrap_or_default();
        let address_space = std::env::var("HOSTILE_AS")
            .ok()
            .and_then(|v| v.parse().ok());
        if smoke {
            return Settings {
                smoke,
                agents: 3,
                sessions: 3,
                devices: 10,
                reps: 3,
                heavy_reps: 2,
                cpu_ticks: 0,
                unknown: 2,
                auth_token_bytes: None,
                budget: Duration::from_secs(10),
                attack: Duration::from_millis(100),
                quiet: Duration::from_millis(200),
                rss_cap: 4096 << 20,
                address_space,
                extra_set,
            };
        }
        Settings {
            smoke,
            agents: env_num("HOSTILE_AGENTS", 256usize).max(1),
            sessions: env_num("HOSTILE_SESSIONS", 256usize).max(1),
            devices: env_num("HOSTILE_DEVICES", 4000usize).max(1),
            reps: env_num("HOSTILE_REPS", 15usize).max(1),
            heavy_reps: env_num("HOSTILE_HEAVY_REPS", 5usize).max(1),
            cpu_ticks: env_num("HOSTILE_CPU_TICKS", 50u64),
            unknown: env_num("HOSTILE_UNKNOWN", 16usize).max(1),
            auth_token_bytes: std::env::var("HOSTILE_AUTH_TOKEN_BYTES")
                .ok()
                .and_then(|v| v.parse().ok()),
            budget: Duration::from_secs_f64(env_num("HOSTILE_BUDGET_SECS", 10.0f64).max(0.5)),
            attack: Duration::from_secs_f64(env_num("HOSTILE_ATTACK_SECS", 1.0f64).max(0.0)),
            quiet: Duration::from_secs_f64(env_num("HOSTILE_QUIET_SECS", 2.0f64).max(0.1)),
            rss_cap: env_num("HOSTILE_RSS_CAP_MIB", 4096u64) << 20,
            address_space,
            extra_set,
        }
    }
}

/// The limits the attacks size themselves by, from the effective configuration.
struct Limits {
    max_message_size: usize,
    max_agent_bytes: usize,
    max_capabilities: usize,
    max_name_bytes: usize,
    max_preauth_message_size: usize,
    max_agents_per_user: usize,
    max_sessions_per_client: usize,
    max_clients_per_session: usize,
    max_connections_per_user: usize,
}

impl Limits {
    fn read(config: &HashMap<String, String>) -> Result<Limits, String> {
        let get = |key: &str| -> Result<usize, String> {
            config
                .get(key)
                .ok_or_else(|| format!("--print-config has no {key}"))?
                .parse()
                .map_err(|_| format!("{key} is not a number"))
        };
        Ok(Limits {
            max_message_size: get("max_message_size")?,
            max_agent_bytes: get("max_agent_bytes")?,
            max_capabilities: get("max_capabilities")?,
            max_name_bytes: get("max_name_bytes")?,
            max_preauth_message_size: get("max_preauth_message_size")?,
            max_agents_per_user: get("max_agents_per_user")?.max(1),
            max_sessions_per_client: get("max_sessions_per_client")?.max(1),
            max_clients_per_session: get("max_clients_per_session")?.max(2),
            max_connections_per_user: get("max_connections_per_user")?.max(1),
        })
    }
}

/// What every phase shares: the settings, the gateway's arguments and limits.
struct Bench {
    s: Settings,
    lim: Limits,
    args: Vec<String>,
    address_space: Option<u64>,
    report: Report,
}

/// The secret of attacker user `i` (63 of them, `u0` to `u62`).
fn attacker_token(i: usize) -> String {
    format!("hostile-secret-{}", i % (TOKENS - 1))
}

const BYSTANDER_TOKEN: &str = "bystander-secret";

impl Bench {
    fn spawn(&self) -> Result<Gateway, String> {
        Gateway::spawn(&self.args, self.address_space)
    }

    /// Over the RSS cap, or gone: why the attack must stop.
    fn over_rss(&self, gw: &mut Gateway) -> Option<String> {
        if let Some(status) = gw.exited() {
            return Some(format!("gateway exited ({status})"));
        }
        let rss = gw.rss();
        (rss > self.s.rss_cap).then(|| format!("over budget: RSS {} MiB", rss >> 20))
    }
}

/// A gateway holding `n` records of one kind at the limits, with what the phase's attacks
/// are measured against: its bystander, the records' connections and figures, the bystander's
/// quiet window afterwards and a ping's CPU cost.
struct Filled<T> {
    gw: Gateway,
    by: Bystander,
    big: Stored<T>,
    quiet: Window,
    ping: cpu::Cpu,
}

/// The common start of a storing phase: `n` minimal records of `kind` in a baseline gateway,
/// `n` at the limits in a fresh one watched by a bystander, and the RSS rows of both.
fn fill<T>(
    bench: &mut Bench,
    kind: &str,
    n: usize,
    store: fn(&Bench, &mut Gateway, usize, bool) -> Stored<T>,
) -> Result<Filled<T>, String> {
    let base = store::baseline(bench, |b, gw| store(b, gw, n, false))?;
    let mut gw = bench.spawn()?;
    let by = Bystander::start(&gw.url, BYSTANDER_TOKEN, BYSTANDER_INTERVAL)?;
    std::thread::sleep(Duration::from_millis(50));
    let big = store::watched(&by, || store(bench, &mut gw, n, true));
    let quiet = quiet_window(&by, bench.s.quiet);
    let ping = cpu::ping_cost(&gw, bench.s.cpu_ticks, || {
        Client::authed(&gw.url, &attacker_token(TOKENS - 3))
    });
    rss_row(&mut bench.report, &format!("{kind}_rss"), kind, &base, &big);
    storing_rows(&mut bench.report, &big, &quiet);
    Ok(Filled {
        gw,
        by,
        big,
        quiet,
        ping,
    })
}

fn phase_agents(bench: &mut Bench) -> Result<(), String> {
    let n = bench.s.agents;
    println!(
        "== agents: {n} at max_agent_bytes {} with {} capabilities, {} per user, beside {n} minimal ones",
        bench.lim.max_agent_bytes, bench.lim.max_capabilities, bench.lim.max_agents_per_user
    );
    let Filled {
        mut gw,
        by,
        big,
        quiet,
        ping,
    } = fill(bench, "agents", n, store::agents)?;
    let mut owners = big.held;
    if owners.is_empty() {
        return Err("no agent registered".into());
    }
    let url = gw.url.clone();
    let mut owner = Some(owners.swap_remove(0));

    // agent_register at the limits: the first owner re-registers its first agent.
    let caps = payloads::capabilities(bench.lim.max_capabilities);
    let meta_len = bench.lim.max_agent_bytes.saturating_sub(caps.len());
    let payload = payloads::agent("a0-0", bench.lim.max_name_bytes, &caps, meta_len);
    let mut frame = Frame::new(&payloads::message("agent_register", &payload));
    let label = format!("agent_register {} B", frame.message_len());
    let run = loop_attack(
        bench,
        &mut gw,
        &by,
        Reps::AtLeast(bench.s.reps),
        || {
            owner
                .take()
                .ok_or_else(|| "the owner's connection closed".to_owned())
        },
        |c, _, deadline| c.request(&mut frame, deadline),
    );
    loop_rows(
        &mut bench.report,
        "agent_register",
        &label,
        &run,
        &quiet,
        &ping,
        bench.s.cpu_ticks,
    );
    if run.stuck {
        return Ok(());
    }

    // agent_heartbeat flipping busy/online, on a fresh owner connection of its own agents:
    // the one above is handed back by reopening as user 0 and registering a0-0 again.
    let mut flips = [
        Frame::new(&payloads::message(
            "agent_heartbeat",
            r#"{"agentId":"a0-0","status":"busy"}"#,
        )),
        Frame::new(&payloads::message(
            "agent_heartbeat",
            r#"{"agentId":"a0-0","status":"online"}"#,
        )),
    ];
    let run = loop_attack(
        bench,
        &mut gw,
        &by,
        Reps::AtLeast(bench.s.reps.max(40)),
        || {
            reopen_as_user0(
                &url,
                &payloads::message("agent_register", &payload),
                "agent_info",
            )
        },
        |c, rep, deadline| c.request(&mut flips[rep % 2], deadline),
    );
    loop_rows(
        &mut bench.report,
        "agent_heartbeat",
        &format!(
            "agent_heartbeat busy⇄online, {} caps",
            bench.lim.max_capabilities
        ),
        &run,
        &quiet,
        &ping,
        bench.s.cpu_ticks,
    );
    if run.stuck {
        return Ok(());
    }

    // agent_query of the whole registry, from another user's connection.
    let mut query = Frame::new(&payloads::message("agent_query", "{}"));
    let run = loop_attack(
        bench,
        &mut gw,
        &by,
        Reps::Exactly(bench.s.heavy_reps),
        || Client::authed(&url, &attacker_token(TOKENS - 2)),
        |c, _, deadline| c.request(&mut query, deadline),
    );
    loop_rows(
        &mut bench.report,
        "agent_query",
        &format!(
            "agent_query, {} agents ({})",
            big.records,
            mib(big.bytes as f64)
        ),
        &run,
        &quiet,
        &ping,
        bench.s.cpu_ticks,
    );
    drop(owners);
    survival_row(&mut bench.report, "agents", &mut gw, bench.address_space);
    Ok(())
}

fn phase_sessions(bench: &mut Bench) -> Result<(), String> {
    let n = bench.s.sessions;
    println!(
        "== sessions: {n} with a {}-byte name and {SESSION_METADATA_LIMIT} B of metadata, beside {n} bare ones",
        bench.lim.max_name_bytes
    );
    // `_members` keeps the sessions' connections, and so the sessions, open to the end.
    let Filled {
        mut gw,
        by,
        big: _members,
        quiet,
        ping,
    } = fill(bench, "sessions", n, store::sessions)?;
    let url = gw.url.clone();

    // A full session: the attacker and max_clients_per_session - 1 members that drain.
    let mut attacker = Client::authed(&url, &attacker_token(0))?;
    attacker.expect(
        &payloads::message("session_create", r#"{"sessionId":"arena"}"#),
        "session_info",
    )?;
    let mut members = Vec::new();
    for m in 1..bench.lim.max_clients_per_session {
        let mut c = Client::authed(&url, &attacker_token(m))?;
        c.expect(
            &payloads::message("session_join", r#"{"sessionId":"arena"}"#),
            "session_info",
        )?;
        members.push(c.into_stream());
    }
    let drain = Drain::start(members);
    let mut attacker = Some(attacker);

    // session_patch at the metadata limit: `m` replaced by an array as large as it allows,
    // alternating two values so that every patch changes it.
    let patch = |digit| {
        Frame::new(&payloads::message(
            "session_patch",
            &format!(
                r#"{{"sessionKey":"arena","patch":{}}}"#,
                payloads::metadata(SESSION_METADATA_LIMIT, digit)
            ),
        ))
    };
    let mut patches = [patch('0'), patch('1')];
    let label = format!(
        "session_patch {} B, {} members",
        patches[0].message_len(),
        bench.lim.max_clients_per_session
    );
    let run = loop_attack(
        bench,
        &mut gw,
        &by,
        Reps::AtLeast(bench.s.reps),
        || {
            attacker
                .take()
                .ok_or_else(|| "the attacker's connection closed".to_owned())
        },
        |c, rep, deadline| c.request(&mut patches[rep % 2], deadline),
    );
    loop_rows(
        &mut bench.report,
        "session_patch",
        &label,
        &run,
        &quiet,
        &ping,
        bench.s.cpu_ticks,
    );
    if run.stuck {
        return Ok(());
    }

    // A tiny session_patch into metadata of many small keys (as many `"kN":0` as fit in
    // 65 400 bytes), in the same full session: the cost is the stored text, not the patch.
    // Each patch, after its reply, waits (at most a second) until the members have read
    // its notices: a patch this cheap is answered faster than one thread drains nine
    // copies of the text, and members closed as slow consumers would leave a session
    // whose patches fan out to nobody.
    let (wide, keys) = wide_metadata(65_400);
    let join = payloads::message("session_join", r#"{"sessionId":"arena"}"#);
    let fill = payloads::message(
        "session_patch",
        &format!(
            r#"{{"sessionKey":"arena","patch":{{"m":null,{}}}}}"#,
            &wide[1..wide.len() - 1]
        ),
    );
    let tiny = |digit| {
        Frame::new(&payloads::message(
            "session_patch",
            &format!(r#"{{"sessionKey":"arena","patch":{{"k0":{digit}}}}}"#),
        ))
    };
    let mut tinies = [tiny('1'), tiny('0')];
    // What the members read of each patch at least: the metadata in each one's notice.
    let notices = ((bench.lim.max_clients_per_session - 1) * wide.len()) as u64;
    let label = format!(
        "session_patch of {} B into {} B of metadata in {keys} keys, {} members",
        tinies[0].message_len(),
        wide.len(),
        bench.lim.max_clients_per_session
    );
    let run = loop_attack(
        bench,
        &mut gw,
        &by,
        Reps::AtLeast(bench.s.reps),
        || {
            let mut c = reopen_as_user0(&url, &join, "session_info")?;
            c.expect(&fill, "session_info")?;
            Ok(c)
        },
        |c, rep, deadline| {
            let read = drain.bytes() + notices;
            let outcome = c.request(&mut tinies[rep % 2], deadline);
            let until = Instant::now() + Duration::from_secs(1);
            while drain.bytes() < read && Instant::now() < until {
                std::thread::sleep(Duration::from_micros(100));
            }
            outcome
        },
    );
    loop_rows(
        &mut bench.report,
        "session_patch_wide",
        &label,
        &run,
        &quiet,
        &ping,
        bench.s.cpu_ticks,
    );
    if run.stuck {
        return Ok(());
    }

    // A relay of a payload nested as deep as max_message_size allows, to the full session:
    // its delivery (with the gateway's `id`, `timestamp` and `source`, some 128 bytes more
    // than the message) must fit too.
    let depth = bench
        .lim
        .max_message_size
        .saturating_sub(payloads::ENVELOPE + 16 + 128)
        / 2;
    let mut relay = Frame::new(&format!(
        r#"{{"type":"chat","id":"@","sessionId":"arena","payload":{{"d":{}}}}}"#,
        payloads::nested(depth)
    ));
    let label = format!("chat relay, {} B nested {depth} deep", relay.message_len());
    let run = loop_attack(
        bench,
        &mut gw,
        &by,
        Reps::Exactly(bench.s.heavy_reps),
        || {
            let join = payloads::message("session_join", r#"{"sessionId":"arena"}"#);
            reopen_as_user0(&url, &join, "session_info")
        },
        |c, _, deadline| c.send_then_ping(&mut relay, deadline),
    );
    loop_rows(
        &mut bench.report,
        "relay_nested",
        &label,
        &run,
        &quiet,
        &ping,
        bench.s.cpu_ticks,
    );
    println!(
        "   (the {} draining members read {} in all)",
        bench.lim.max_clients_per_session - 1,
        mib(drain.bytes() as f64)
    );
    drop(drain);
    survival_row(&mut bench.report, "sessions", &mut gw, bench.address_space);
    Ok(())
}

/// Metadata of small keys (`{"k0":0,"k1":0,...}`), as many as fit in `len` bytes; and how many.
fn wide_metadata(len: usize) -> (String, usize) {
    let mut members = Vec::new();
    let mut size = 2;
    loop {
        let member = format!(r#""k{}":0"#, members.len());
        if size + member.len() + usize::from(!members.is_empty()) > len {
            break;
        }
        size += member.len() + usize::from(!members.is_empty());
        members.push(member);
    }
    (format!("{{{}}}", members.join(",")), members.len())
}

/// A new connection of user 0 that sent `json` and got `kind`; retried for a second while
/// refused (the close of the attacker before it, which held the agent or the place in the
/// session, may not have been handled yet).
fn reopen_as_user0(url: &str, json: &str, kind: &str) -> Result<Client, String> {
    let mut c = Client::authed(url, &attacker_token(0))?;
    let mut tries = 0;
    loop {
        match c.expect(json, kind) {
            Ok(()) => return Ok(c),
            Err(_) if tries < 20 => {
                tries += 1;
                std::thread::sleep(Duration::from_millis(50));
            }
            Err(e) => return Err(e),
        }
    }
}

fn phase_devices(bench: &mut Bench) -> Result<(), String> {
    let n = bench.s.devices;
    println!(
        "== devices: {n} connections with a 128-byte deviceId and a {}-byte deviceName, beside {n} with a short deviceId",
        bench.lim.max_name_bytes
    );
    let Filled {
        mut gw,
        by,
        big,
        quiet,
        ping,
    } = fill(bench, "devices", n, store::devices)?;
    let url = gw.url.clone();

    // auth with a wrong token as long as max_preauth_message_size allows, against every
    // configured token.
    let token_len = bench.s.auth_token_bytes.unwrap_or(
        bench
            .lim
            .max_preauth_message_size
            .saturating_sub(payloads::ENVELOPE + 16),
    );
    let mut auth = Frame::new(&payloads::message(
        "auth",
        &format!(r#"{{"token":"{}"}}"#, "x".repeat(token_len.max(1))),
    ));
    // The connection's last allowed failure closes it after the reply; the next repetition's
    // ping finds it closed and opens another.
    let label = format!("auth, wrong {token_len} B token, {TOKENS} tokens");
    let run = loop_attack(
        bench,
        &mut gw,
        &by,
        Reps::AtLeast(bench.s.reps),
        || Client::open(&url),
        |c, _, deadline| c.request(&mut auth, deadline),
    );
    loop_rows(
        &mut bench.report,
        "auth_long_token",
        &label,
        &run,
        &quiet,
        &ping,
        bench.s.cpu_ticks,
    );
    drop(big.held);
    survival_row(&mut bench.report, "devices", &mut gw, bench.address_space);
    Ok(())
}

fn phase_events(bench: &mut Bench) -> Result<(), String> {
    let k = bench.s.unknown;
    let size = bench
        .lim
        .max_message_size
        .saturating_sub(payloads::ENVELOPE);
    println!("== events: {k} messages of an unknown type, {size} B each, on a fresh gateway");
    let mut gw = bench.spawn()?;
    let by = Bystander::start(&gw.url, BYSTANDER_TOKEN, BYSTANDER_INTERVAL)?;
    let quiet = quiet_window(&by, bench.s.quiet);
    let ping = cpu::ping_cost(&gw, bench.s.cpu_ticks, || {
        Client::authed(&gw.url, &attacker_token(0))
    });
    let url = gw.url.clone();
    let mut unknown = Frame::new(&payloads::message(
        "x_hostile",
        &format!(
            r#"{{"a":{}}}"#,
            payloads::zeros(size.saturating_sub(8), '0')
        ),
    ));
    let bytes = unknown.message_len();
    let rss0 = gw.rss();
    let run = loop_attack(
        bench,
        &mut gw,
        &by,
        Reps::Exactly(k),
        || Client::authed(&url, &attacker_token(0)),
        |c, _, deadline| c.request(&mut unknown, deadline),
    );
    let growth = gw.rss() as f64 - rss0 as f64;
    let sent = bytes * run.msg_us.len();
    let per_byte = growth / sent.max(1) as f64;
    bench.report.row(
        "unknown types sent: RSS growth".into(),
        mib(growth),
        format!("{} sent", mib(sent as f64)),
        format!("{} per byte", times(per_byte)),
        "≈ 0 (no events)",
        format!("{} messages", run.msg_us.len()),
    );
    bench.report.json.insert(
        "unknown_rss".into(),
        json!({"sent_bytes": sent, "rss_growth_bytes": growth, "rss_per_byte": loadgen::round3(per_byte)}),
    );
    loop_rows(
        &mut bench.report,
        "unknown_type",
        &format!("unknown type {bytes} B"),
        &run,
        &quiet,
        &ping,
        bench.s.cpu_ticks,
    );
    survival_row(&mut bench.report, "events", &mut gw, bench.address_space);
    Ok(())
}

/// The attacks of [`phase_refusals`]: a label, the JSON key, the message, and whether its
/// reply comes back to its `id` (a `PARSE_ERROR` carries no `replyTo`, nor does a relay
/// reply: those are timed to the `pong` of a `ping` behind them).
struct Refusal {
    key: &'static str,
    label: String,
    frame: Frame,
    replied: bool,
}

fn phase_refusals(bench: &mut Bench) -> Result<(), String> {
    // Room for what the gateway adds to a delivered relay (`id`, `timestamp`, `source`), so
    // that the accepted relay's delivery fits `max_message_size` too.
    let size = bench
        .lim
        .max_message_size
        .saturating_sub(payloads::ENVELOPE + 32 + 256);
    println!(
        "== refusals: messages of about {size} B refused at their last bytes, beside the same accepted, on a fresh gateway"
    );
    let mut gw = bench.spawn()?;
    let by = Bystander::start(&gw.url, BYSTANDER_TOKEN, BYSTANDER_INTERVAL)?;
    let quiet = quiet_window(&by, bench.s.quiet);
    let ping = cpu::ping_cost(&gw, bench.s.cpu_ticks, || {
        Client::authed(&gw.url, &attacker_token(0))
    });
    let url = gw.url.clone();
    let zeros = payloads::zeros(size, '0');
    let relay = |tail: &str| {
        Frame::new(&format!(
            r#"{{"type":"chat","id":"@","sessionId":"refusals","payload":{{"d":{zeros},{tail}}}}}"#
        ))
    };
    let agent = |zeros: &str| {
        Frame::new(&payloads::message(
            "agent_register",
            &format!(
                r#"{{"agentId":"big","type":"custom","name":"n","capabilities":{{}},"x":{zeros}}}"#
            ),
        ))
    };
    let broken = format!("{},]", &zeros[..zeros.len() - 1]);
    // A request of `msg_type` whose payload is `members` and the array as `x`, unread.
    let unread = |msg_type: &str, members: &str| {
        Frame::new(&payloads::message(
            msg_type,
            &format!(r#"{{{members}"x":{zeros}}}"#),
        ))
    };
    let attacks = [
        ("relay_accepted", "accepted", relay(r#""k":1,"j":2"#), false),
        (
            "relay_duplicate",
            "duplicate key at its end",
            relay(r#""k":1,"k":2"#),
            true,
        ),
        (
            "relay_surrogate",
            "lone surrogate at its end",
            relay(r#""k":"\udc00""#),
            true,
        ),
        (
            "relay_range",
            "1e999999 at its end",
            relay(r#""k":1e999999"#),
            true,
        ),
        ("agent_accepted", "accepted", agent(&zeros), true),
        (
            "agent_syntax",
            "`,]` at its end (PARSE_ERROR)",
            agent(&broken),
            false,
        ),
        (
            "unread_session_create",
            "accepted",
            unread("session_create", r#""sessionId":"refusals","#),
            true,
        ),
        (
            "unread_session_patch",
            "accepted",
            unread(
                "session_patch",
                r#""sessionKey":"refusals","patch":{"k":1},"#,
            ),
            true,
        ),
        (
            "unread_presence",
            "accepted",
            unread("presence", r#""status":"away","sessionKey":"refusals","#),
            false,
        ),
        (
            "unread_presence_query",
            "accepted",
            unread("presence_query", ""),
            true,
        ),
        (
            "unread_agent_query",
            "accepted",
            unread("agent_query", ""),
            true,
        ),
        (
            "unread_connect",
            "accepted",
            unread(
                "connect",
                r#""deviceId":"d","role":"node","protocolVersion":1,"#,
            ),
            true,
        ),
    ];
    let attacks = attacks.map(|(key, what, frame, replied)| Refusal {
        key,
        label: match key.strip_prefix("unread_") {
            Some(msg_type) => format!(
                "{msg_type} {} B, {} B of it a member it does not read, {what}",
                frame.message_len(),
                zeros.len()
            ),
            None => format!(
                "{} {} B, {what}",
                if key.starts_with("relay") {
                    "chat relay"
                } else {
                    "agent_register"
                },
                frame.message_len()
            ),
        },
        frame,
        replied,
    });
    for mut attack in attacks {
        let run = loop_attack(
            bench,
            &mut gw,
            &by,
            Reps::Exactly(bench.s.heavy_reps),
            || {
                let mut c = Client::authed(&url, &attacker_token(0))?;
                let create = payloads::message("session_create", r#"{"sessionId":"refusals"}"#);
                if c.expect(&create, "session_info").is_err() {
                    let join = payloads::message("session_join", r#"{"sessionId":"refusals"}"#);
                    c.expect(&join, "session_info")?;
                }
                Ok(c)
            },
            |c, _, deadline| {
                if attack.replied {
                    c.request(&mut attack.frame, deadline)
                } else {
                    c.send_then_ping(&mut attack.frame, deadline)
                }
            },
        );
        loop_rows(
            &mut bench.report,
            attack.key,
            &attack.label,
            &run,
            &quiet,
            &ping,
            bench.s.cpu_ticks,
        );
        if run.stuck {
            return Ok(());
        }
    }
    survival_row(&mut bench.report, "refusals", &mut gw, bench.address_space);
    Ok(())
}

/// `items` joined by `,` between `open` and `close`, as many as fit in `len` bytes (`item(i)`
/// is the `i`th); and how many.
fn filled(len: usize, open: &str, close: &str, item: impl Fn(usize) -> String) -> (String, usize) {
    let mut s = String::from(open);
    let mut n = 0;
    loop {
        let next = item(n);
        if s.len() + next.len() + 1 + close.len() > len {
            break;
        }
        if n > 0 {
            s.push(',');
        }
        s.push_str(&next);
        n += 1;
    }
    s.push_str(close);
    (s, n)
}

fn phase_shapes(bench: &mut Bench) -> Result<(), String> {
    // Sized as the refusals phase's relays, so that a delivery would fit too.
    let size = bench
        .lim
        .max_message_size
        .saturating_sub(payloads::ENVELOPE + 32 + 256);
    println!(
        "== shapes: relays of about {size} B of many small JSON values, beside one long string, on a fresh gateway"
    );
    let mut gw = bench.spawn()?;
    let by = Bystander::start(&gw.url, BYSTANDER_TOKEN, BYSTANDER_INTERVAL)?;
    let quiet = quiet_window(&by, bench.s.quiet);
    let ping = cpu::ping_cost(&gw, bench.s.cpu_ticks, || {
        Client::authed(&gw.url, &attacker_token(0))
    });
    let url = gw.url.clone();
    let string = format!(r#"{{"s":"{}"}}"#, "x".repeat(size - 8));
    let wide = filled(size, "{", "}", |i| format!(r#""k{i:07}":0"#));
    let escaped = filled(size, "{", "}", |i| format!(r#""\u006b{i:07}":0"#));
    let long = filled(size, "{", "}", |i| {
        format!(r#""{}{i:07}":0"#, "k".repeat(57))
    });
    let objects = filled(size, r#"{"a":["#, "]}", |_| r#"{"a":0}"#.to_owned());
    let empty = filled(size, r#"{"a":["#, "]}", |_| "{}".to_owned());
    let strings = filled(size, r#"{"a":["#, "]}", |_| r#""""#.to_owned());
    let relay = |payload: &str| {
        Frame::new(&format!(
            r#"{{"type":"chat","id":"@","sessionId":"shapes","payload":{payload}}}"#
        ))
    };
    let patch = Frame::new(&payloads::message(
        "session_patch",
        &format!(r#"{{"sessionKey":"shapes","patch":{}}}"#, wide.0),
    ));
    let attacks = [
        (
            "shape_string",
            "one string".to_owned(),
            relay(&string),
            false,
        ),
        (
            "shape_wide",
            format!("{} distinct keys of 8 bytes in one object", wide.1),
            relay(&wide.0),
            false,
        ),
        (
            "shape_wide_escaped",
            format!(
                "{} distinct keys written with an escape (\\u006b...)",
                escaped.1
            ),
            relay(&escaped.0),
            false,
        ),
        (
            "shape_wide_long",
            format!("{} distinct keys of 64 bytes", long.1),
            relay(&long.0),
            false,
        ),
        (
            "shape_objects",
            format!("{} objects {{\"a\":0}} in an array", objects.1),
            relay(&objects.0),
            false,
        ),
        (
            "shape_empty_objects",
            format!("{} objects {{}} in an array", empty.1),
            relay(&empty.0),
            false,
        ),
        (
            "shape_strings",
            format!("{} strings \"\" in an array", strings.1),
            relay(&strings.0),
            false,
        ),
        (
            "shape_patch_wide",
            format!(
                "a patch of {} distinct keys of 8 bytes (refused: past the metadata limit)",
                wide.1
            ),
            patch,
            true,
        ),
    ];
    for (key, what, mut frame, replied) in attacks {
        let label = format!(
            "{} {} B, {what}",
            if replied {
                "session_patch"
            } else {
                "chat relay"
            },
            frame.message_len()
        );
        let run = loop_attack(
            bench,
            &mut gw,
            &by,
            Reps::Exactly(bench.s.heavy_reps),
            || {
                let mut c = Client::authed(&url, &attacker_token(0))?;
                let create = payloads::message("session_create", r#"{"sessionId":"shapes"}"#);
                if c.expect(&create, "session_info").is_err() {
                    let join = payloads::message("session_join", r#"{"sessionId":"shapes"}"#);
                    c.expect(&join, "session_info")?;
                }
                Ok(c)
            },
            |c, _, deadline| {
                if replied {
                    c.request(&mut frame, deadline)
                } else {
                    c.send_then_ping(&mut frame, deadline)
                }
            },
        );
        loop_rows(
            &mut bench.report,
            key,
            &label,
            &run,
            &quiet,
            &ping,
            bench.s.cpu_ticks,
        );
        if run.stuck {
            return Ok(());
        }
    }
    survival_row(&mut bench.report, "shapes", &mut gw, bench.address_space);
    Ok(())
}

/// A `chat` of about `max_message_size` to a session of two (one member that reads) and to a
/// full session (`max_clients_per_session - 1` members that read), beside a `ping`.
fn phase_fanout(bench: &mut Bench) -> Result<(), String> {
    let size = bench
        .lim
        .max_message_size
        .saturating_sub(payloads::ENVELOPE + 32 + 256);
    let full = bench.lim.max_clients_per_session;
    println!(
        "== fanout: a chat relay of about {size} B to 1 and to {} members that read, on a fresh gateway",
        full.saturating_sub(1)
    );
    let mut gw = bench.spawn()?;
    let by = Bystander::start(&gw.url, BYSTANDER_TOKEN, BYSTANDER_INTERVAL)?;
    let quiet = quiet_window(&by, bench.s.quiet);
    let ping = cpu::ping_cost(&gw, bench.s.cpu_ticks, || {
        Client::authed(&gw.url, &attacker_token(0))
    });
    let url = gw.url.clone();
    let string = format!(r#"{{"s":"{}"}}"#, "x".repeat(size - 8));
    // The drains keep their members, and so the sessions, to the end of the phase.
    let mut drains = Vec::new();
    for (key, session, members) in [("fanout_one", "fan1", 2), ("fanout_full", "fanfull", full)] {
        let mut streams = Vec::new();
        for m in 1..members {
            let mut c = Client::authed(&url, &attacker_token(m))?;
            let (kind, status) = match m {
                1 => ("session_create", "session_info"),
                _ => ("session_join", "session_info"),
            };
            c.expect(
                &payloads::message(kind, &format!(r#"{{"sessionId":"{session}"}}"#)),
                status,
            )?;
            streams.push(c.into_stream());
        }
        drains.push(Drain::start(streams));
        let mut frame = Frame::new(&format!(
            r#"{{"type":"chat","id":"@","sessionId":"{session}","payload":{string}}}"#
        ));
        let label = format!(
            "chat relay {} B to {} member(s) that read",
            frame.message_len(),
            members - 1
        );
        let run = loop_attack(
            bench,
            &mut gw,
            &by,
            Reps::Exactly(bench.s.heavy_reps),
            || {
                let mut c = Client::authed(&url, &attacker_token(0))?;
                let join =
                    payloads::message("session_join", &format!(r#"{{"sessionId":"{session}"}}"#));
                c.expect(&join, "session_info")?;
                Ok(c)
            },
            |c, _, deadline| c.send_then_ping(&mut frame, deadline),
        );
        loop_rows(
            &mut bench.report,
            key,
            &label,
            &run,
            &quiet,
            &ping,
            bench.s.cpu_ticks,
        );
        if run.stuck {
            return Ok(());
        }
    }
    survival_row(&mut bench.report, "fanout", &mut gw, bench.address_space);
    drop(drains);
    Ok(())
}

/// Connections streaming relays for [`phase_users`]: each writes its message over and over
/// until [`Streams::stop`], its replies read and dropped by a [`Drain`].
struct Streams {
    sockets: Vec<std::net::TcpStream>,
    writers: Vec<std::thread::JoinHandle<u64>>,
    _drain: Drain,
}

impl Streams {
    /// Open a connection for each of `tokens`, the `i`th in session `users{i}`, and start
    /// each writing `message(i)`.
    fn start(
        url: &str,
        tokens: &[String],
        message: impl Fn(usize) -> String,
    ) -> Result<Streams, String> {
        let (mut sockets, mut readers, mut writers) = (Vec::new(), Vec::new(), Vec::new());
        for (i, token) in tokens.iter().enumerate() {
            let mut c = Client::authed(url, token)?;
            let create = format!(r#"{{"sessionId":"users{i}"}}"#);
            c.expect(
                &payloads::message("session_create", &create),
                "session_info",
            )?;
            let stream = c.into_stream();
            let mut writer = stream.try_clone().map_err(|e| e.to_string())?;
            readers.push(stream.try_clone().map_err(|e| e.to_string())?);
            sockets.push(stream);
            let frame = Frame::new(&message(i));
            writers.push(std::thread::spawn(move || {
                use std::io::{ErrorKind, Write};
                // The socket is nonblocking: the drain's clone shares its file status.
                let (bytes, mut sent, mut at) = (frame.bytes(), 0, 0);
                loop {
                    match writer.write(&bytes[at..]) {
                        Ok(0) => break,
                        Ok(n) if at + n == bytes.len() => (sent, at) = (sent + 1, 0),
                        Ok(n) => at += n,
                        Err(e) if e.kind() == ErrorKind::WouldBlock => {
                            std::thread::sleep(Duration::from_micros(200))
                        }
                        Err(_) => break,
                    }
                }
                sent
            }));
        }
        Ok(Streams {
            sockets,
            writers,
            _drain: Drain::start(readers),
        })
    }

    /// Stop writing (the sockets are shut down); the messages written.
    fn stop(self) -> u64 {
        for s in &self.sockets {
            let _ = s.shutdown(std::net::Shutdown::Both);
        }
        self.writers
            .into_iter()
            .map(|w| w.join().unwrap_or(0))
            .sum()
    }
}

fn phase_users(bench: &mut Bench) -> Result<(), String> {
    const CONNS: usize = 16;
    let size = bench
        .lim
        .max_message_size
        .saturating_sub(payloads::ENVELOPE + 32 + 256);
    println!(
        "== users: connections streaming {size} B relays (one string) for {:.1} s each, one user's against as many users', on a fresh gateway",
        bench.s.quiet.as_secs_f64()
    );
    let mut gw = bench.spawn()?;
    let by = Bystander::start(&gw.url, BYSTANDER_TOKEN, BYSTANDER_INTERVAL)?;
    let quiet = quiet_window(&by, bench.s.quiet);
    let text = "x".repeat(size - 8);
    let relay = |i: usize| {
        format!(r#"{{"type":"chat","id":"@","sessionId":"users{i}","payload":{{"s":"{text}"}}}}"#)
    };
    let one_user = vec![attacker_token(0); CONNS];
    let many_users: Vec<String> = (0..CONNS).map(attacker_token).collect();
    for (what, tokens) in [
        ("1 connection of one user".to_owned(), &one_user[..1]),
        (format!("{CONNS} connections of one user"), &one_user[..]),
        (
            format!("{CONNS} connections of {CONNS} users"),
            &many_users[..],
        ),
    ] {
        let streams = Streams::start(&gw.url, tokens, relay)?;
        let from = Instant::now();
        std::thread::sleep(bench.s.quiet);
        let window = by.window(from);
        let sent = streams.stop();
        bystander_row_as(
            &mut bench.report,
            format!("users: bystander ping p99 while {what} stream"),
            &window,
            &quiet,
            format!("; {sent} relays written"),
        );
        if let Some(over) = bench.over_rss(&mut gw) {
            return Err(over);
        }
    }
    survival_row(&mut bench.report, "users", &mut gw, bench.address_space);
    Ok(())
}

/// The shape of [`phase_routes`]'s table: requesters, targets and rounds of one request
/// from each requester (the middle round toward the closing connection), so that the table
/// holds `rounds * requesters + requesters` entries, each target `(rounds - 1) *
/// requesters / targets` and the closing connection's share.
struct RouteShape {
    requesters: usize,
    targets: usize,
    rounds: usize,
}

/// A masked close frame (code 1000, zero masking key).
const CLOSE_FRAME: [u8; 8] = [0x88, 0x82, 0, 0, 0, 0, 0x03, 0xe8];

/// Write a close frame on `client` and wait for the echo; the time it took.
fn close_echo(mut client: Client) -> Result<Duration, String> {
    client
        .ping(Instant::now() + Duration::from_secs(30))
        .map_err(|o| format!("ping before the close: {o:?}"))?;
    let t0 = Instant::now();
    client.write_raw(&CLOSE_FRAME)?;
    match client.await_reply("", Instant::now() + Duration::from_secs(30)) {
        client::Outcome::Closed(_) => Ok(t0.elapsed()),
        other => Err(format!("expected the close echo, got {other:?}")),
    }
}

fn phase_routes(bench: &mut Bench) -> Result<(), String> {
    let shape = if bench.s.smoke {
        RouteShape {
            requesters: 32,
            targets: 4,
            rounds: 3,
        }
    } else {
        RouteShape {
            requesters: 1024,
            targets: 64,
            rounds: 63,
        }
    };
    let reps = bench.s.heavy_reps;
    let total = (shape.rounds + 1) * shape.requesters;
    println!(
        "== routes: the close of a connection with {n} routes pending as requester and {n} as target, {total} pending in all, beside the close of one with none ({reps} reps, auth_mode none)",
        n = shape.requesters
    );
    let mut args = bench.args.clone();
    args.extend(["--set".to_owned(), "auth_mode=none".to_owned()]);
    let mut gw = Gateway::spawn(&args, bench.address_space)?;
    let url = gw.url.clone();
    let mut requesters = (0..shape.requesters)
        .map(|_| Client::open(&url))
        .collect::<Result<Vec<_>, _>>()?;
    let targets = (0..shape.targets)
        .map(|_| Client::open(&url))
        .collect::<Result<Vec<_>, _>>()?;
    let target_ids: Vec<String> = targets.iter().map(|t| t.client_id.clone()).collect();
    let _drain = Drain::start(targets.into_iter().map(Client::into_stream).collect());
    let route = |target: &str| {
        Frame::new(&format!(
            r#"{{"type":"route_request","id":"@","target":"{target}","payload":{{}}}}"#
        ))
    };
    let mut seq = 0u64;
    let (mut worst_us, mut empty_us) = (Vec::new(), Vec::new());
    for rep in 0..reps {
        let mut closing = Client::open(&url)?;
        let empty = Client::open(&url)?;
        // The first rep fills the table; later ones only give the new connection the
        // routes the last one took with it.
        let rounds: Vec<usize> = if rep == 0 {
            (0..shape.rounds).collect()
        } else {
            vec![shape.rounds / 2]
        };
        let writes = rounds.len() * shape.requesters;
        let every = (writes / shape.requesters).max(1);
        let (mut own, mut n) = (0, 0);
        for &round in &rounds {
            for (i, r) in requesters.iter_mut().enumerate() {
                let target = if round == shape.rounds / 2 {
                    closing.client_id.clone()
                } else {
                    target_ids[(i + round) % shape.targets].clone()
                };
                let mut frame = route(&target);
                seq += 1;
                frame.set_seq(seq);
                r.write_raw(frame.bytes())?;
                n += 1;
                if n % every == 0 && own < shape.requesters {
                    let mut frame = route(&target_ids[own % shape.targets]);
                    seq += 1;
                    frame.set_seq(seq);
                    closing.write_raw(frame.bytes())?;
                    own += 1;
                }
            }
        }
        while own < shape.requesters {
            let mut frame = route(&target_ids[own % shape.targets]);
            seq += 1;
            frame.set_seq(seq);
            closing.write_raw(frame.bytes())?;
            own += 1;
        }
        // Every request is recorded once its sender's next ping is answered.
        let deadline = Instant::now() + Duration::from_secs(60);
        for r in requesters.iter_mut().chain(std::iter::once(&mut closing)) {
            r.ping(deadline)
                .map_err(|o| format!("ping after the routes: {o:?}"))?;
            if let Some(code) = r.stray_errors.first() {
                return Err(format!("a route was refused: {code}"));
            }
        }
        empty_us.push(close_echo(empty)?.as_secs_f64() * 1e6);
        worst_us.push(close_echo(closing)?.as_secs_f64() * 1e6);
    }
    let (worst, empty) = (median(&worst_us) / 1e3, median(&empty_us) / 1e3);
    let cost = worst - empty;
    bench.report.row(
        format!(
            "close with {n} + {n} routes pending, {total} in all",
            n = shape.requesters
        ),
        fmt_ms(cost),
        format!("empty close {}", fmt_ms(empty)),
        times(cost / 1.0),
        "≤ 1 ms",
        format!(
            "close to its echo: median {} beside {}, {reps} reps",
            fmt_ms(worst),
            fmt_ms(empty)
        ),
    );
    bench.report.json.insert(
        "route_close".into(),
        json!({
            "cost_ms": loadgen::round3(cost),
            "close_ms": loadgen::round3(worst),
            "empty_close_ms": loadgen::round3(empty),
            "reps": reps,
            "pending": total,
        }),
    );
    survival_row(&mut bench.report, "routes", &mut gw, bench.address_space);
    Ok(())
}

/// One phase of the bench; an error ends that phase only.
type Phase = fn(&mut Bench) -> Result<(), String>;

fn main() {
    let smoke = !std::env::args().any(|a| a == "--bench");
    let s = Settings::from_env(smoke);
    let tokens: Vec<String> = (0..TOKENS - 1)
        .map(|i| format!("u{i}:{}", attacker_token(i)))
        .chain(std::iter::once(format!("bystander:{BYSTANDER_TOKEN}")))
        .collect();
    let mut args: Vec<String> = [
        "--config",
        "/dev/null",
        "--set",
        "port=0",
        "--set",
        "log_level=warn",
    ]
    .iter()
    .map(|a| a.to_string())
    .collect();
    args.push("--set".into());
    args.push(format!("auth_tokens={}", tokens.join(",")));
    for kv in &s.extra_set {
        args.push("--set".into());
        args.push(kv.clone());
    }
    let config = child::effective_config(&args).expect("the gateway's configuration");
    let lim = Limits::read(&config).expect("the limits");
    let bound = child::memory_bound(&args);
    let have_prlimit = std::process::Command::new("prlimit")
        .arg("--version")
        .output()
        .is_ok_and(|o| o.status.success());
    let address_space = match s.address_space {
        Some(0) => None,
        Some(bytes) => Some(bytes),
        None => Some(bound.unwrap_or(DEFAULT_AS)),
    }
    .filter(|_| have_prlimit);
    let load_start = loadgen::loadavg();
    println!(
        "hostile bench{}: {} CPUs, load average at start {load_start}",
        if smoke {
            " (smoke run: pass --bench, or use cargo bench, for figures)"
        } else {
            ""
        },
        std::thread::available_parallelism().map_or(0, |n| n.get()),
    );
    println!(
        "   {} ({} bytes); memory bound from --check: {}; address-space limit: {}",
        child::binary(),
        std::fs::metadata(child::binary()).map_or(0, |m| m.len()),
        bound.map_or("none printed".into(), |b| mib(b as f64)),
        address_space.map_or("none".into(), |b| format!("prlimit --as={b}")),
    );
    println!(
        "   limits: max_message_size {}, max_agent_bytes {}, max_capabilities {}, max_name_bytes {}, max_preauth_message_size {}",
        lim.max_message_size, lim.max_agent_bytes, lim.max_capabilities, lim.max_name_bytes, lim.max_preauth_message_size
    );
    let mut bench = Bench {
        s,
        lim,
        args,
        address_space,
        report: Report::default(),
    };
    let phases: [(&str, Phase); 9] = [
        ("agents", phase_agents),
        ("sessions", phase_sessions),
        ("devices", phase_devices),
        ("events", phase_events),
        ("refusals", phase_refusals),
        ("shapes", phase_shapes),
        ("routes", phase_routes),
        ("users", phase_users),
        ("fanout", phase_fanout),
    ];
    let only = std::env::var("HOSTILE_PHASES").unwrap_or_default();
    let t0 = Instant::now();
    for (name, phase) in phases {
        if !only.is_empty() && !only.split(',').any(|p| p.trim() == name) {
            continue;
        }
        let started = Instant::now();
        if let Err(e) = phase(&mut bench) {
            println!("   !! {name} phase: {e}");
            bench.report.row(
                format!("{name} phase"),
                "failed".into(),
                String::new(),
                String::new(),
                "",
                e,
            );
        }
        println!(
            "   ({name} phase: {:.1} s)",
            started.elapsed().as_secs_f64()
        );
    }
    let load_end = loadgen::loadavg();

    println!();
    println!(
        "== summary ({:.0} s; load average {load_start} at start, {load_end} at the end)",
        t0.elapsed().as_secs_f64()
    );
    let json = &mut bench.report.json;
    json.insert("load_start".into(), json!(load_start));
    json.insert("load_end".into(), json!(load_end));
    json.insert("memory_bound_bytes".into(), json!(bound));
    json.insert("address_space_bytes".into(), json!(address_space));
    bench.report.print();
}

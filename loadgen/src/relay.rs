//! Relay latency: one sender and one receiver in one session, possibly on different servers
//! (two nodes of a cluster); sequential `broadcast` messages, each timed from the sender's
//! write to its arrival at the receiver, both clients on this thread and its clock.

use std::time::{Duration, Instant};

use crate::engine::Engine;
use crate::framing::{next_random, seed};
use crate::json::{json_field, json_str, json_u64, lossy, push_u64};
use crate::results::LatencyResult;
use crate::url::Target;
use crate::{REPLY_TIMEOUT, SETUP_TIMEOUT};

/// The sender (on `from`) creates a session and the receiver (on `to`, which may be the same
/// server) joins it; then `warmup` unrecorded and `count` recorded `broadcast` messages of
/// about `size` payload bytes, one at a time: each is sent once the previous one arrived.
/// A sample is the time from the sender's write to the receiver's read of the whole message.
pub fn run_relay_latency(
    from: &Target,
    to: &Target,
    size: usize,
    warmup: usize,
    count: usize,
) -> Result<LatencyResult, String> {
    let mut e = Engine::new(from)?;
    let to = e.add_target(to)?;
    let sender = e.open_ready(1, 1)?[0];
    let receiver = e.open_ready_to(to, 1, 1)?[0];
    let session = format!(
        "relay-{}-{}",
        std::process::id(),
        next_random(&mut seed()) % 1_000_000_000
    );
    let create = format!(
        "{{\"type\":\"session_create\",\"id\":\"create\",\"payload\":{{\"sessionId\":\"{session}\"}}}}"
    );
    let join = format!(
        "{{\"type\":\"session_join\",\"id\":\"join\",\"payload\":{{\"sessionId\":\"{session}\"}}}}"
    );
    e.send_text(sender, create.as_bytes());
    wait_reply(&mut e, b"create")?;
    e.send_text(receiver, join.as_bytes());
    wait_reply(&mut e, b"join")?;

    let pad = "x".repeat(size.saturating_sub(26));
    let prefix = format!(
        "{{\"type\":\"broadcast\",\"id\":\"b\",\"sessionId\":\"{session}\",\"payload\":{{\"seq\":"
    );
    let suffix = format!(",\"pad\":\"{pad}\"}}}}");
    let mut msg = Vec::with_capacity(prefix.len() + suffix.len() + 20);
    let mut samples = Vec::with_capacity(count);
    for seq in 0..(warmup + count) as u64 {
        msg.clear();
        msg.extend_from_slice(prefix.as_bytes());
        push_u64(&mut msg, seq);
        msg.extend_from_slice(suffix.as_bytes());
        let t0 = Instant::now();
        e.send_text(sender, &msg);
        e.flush_dirty();
        let mut done = false;
        while !done {
            e.poll_once(Some(REPLY_TIMEOUT))?;
            e.check_lost()?;
            let inbox = e.take_inbox();
            for (c, m) in inbox.iter() {
                match json_str(m, b"type") {
                    Some(b"broadcast") if c == receiver => {
                        let got = json_field(m, b"payload").and_then(|p| json_u64(p, b"seq"));
                        if got != Some(seq) {
                            return Err(format!("expected seq {seq}, got {}", lossy(m)));
                        }
                        done = true;
                    }
                    Some(b"error") => return Err(format!("error reply: {}", lossy(m))),
                    _ => {}
                }
            }
            e.give_inbox(inbox);
            if !done && t0.elapsed() > REPLY_TIMEOUT {
                return Err(format!(
                    "broadcast {seq} not received within {REPLY_TIMEOUT:?}"
                ));
            }
        }
        if seq >= warmup as u64 {
            samples.push(t0.elapsed().as_nanos() as u64);
        }
    }
    Ok(LatencyResult::new(samples))
}

/// Wait for the `session_info` answering the request with id `id`.
fn wait_reply(e: &mut Engine, id: &[u8]) -> Result<(), String> {
    let deadline = Instant::now() + SETUP_TIMEOUT;
    loop {
        e.poll_once(Some(Duration::from_millis(50)))?;
        e.check_lost()?;
        let inbox = e.take_inbox();
        let mut done = Ok(false);
        for (_, m) in inbox.iter() {
            match (json_str(m, b"type"), json_str(m, b"replyTo")) {
                (Some(b"session_info"), Some(r)) if r == id => done = Ok(true),
                (Some(b"error"), _) => done = Err(format!("session request refused: {}", lossy(m))),
                _ => {}
            }
        }
        e.give_inbox(inbox);
        if done? {
            return Ok(());
        }
        if Instant::now() > deadline {
            return Err(format!("no answer to {}", lossy(id)));
        }
    }
}

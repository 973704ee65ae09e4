//! Latency: sequential JSON `ping` → `pong` round trips on one connection.

use std::time::Instant;

use crate::engine::Engine;
use crate::json::{json_str, lossy, push_u64};
use crate::results::LatencyResult;
use crate::url::Target;
use crate::REPLY_TIMEOUT;

/// One connection, then sequential `ping` → `pong` round trips: `warmup` unrecorded, then
/// `count` recorded.
pub fn run_latency(target: &Target, warmup: usize, count: usize) -> Result<LatencyResult, String> {
    let mut e = Engine::new(target)?;
    let c = e.open_ready(1, 1)?[0];
    let mut samples = Vec::with_capacity(count);
    let mut msg = Vec::with_capacity(64);
    let mut id = Vec::with_capacity(24);
    for i in 0..(warmup + count) as u64 {
        id.clear();
        id.push(b'p');
        push_u64(&mut id, i);
        msg.clear();
        msg.extend_from_slice(b"{\"type\":\"ping\",\"id\":\"");
        msg.extend_from_slice(&id);
        msg.extend_from_slice(b"\"}");
        let t0 = Instant::now();
        e.send_text(c, &msg);
        e.flush_dirty();
        let mut done = false;
        while !done {
            e.poll_once(Some(REPLY_TIMEOUT))?;
            e.check_lost()?;
            let inbox = e.take_inbox();
            for (_, m) in inbox.iter() {
                match json_str(m, b"type") {
                    Some(b"pong") if json_str(m, b"replyTo") == Some(&id[..]) => done = true,
                    Some(b"error") => return Err(format!("error reply: {}", lossy(m))),
                    _ => {}
                }
            }
            e.give_inbox(inbox);
            if !done && t0.elapsed() > REPLY_TIMEOUT {
                return Err(format!(
                    "no pong for {} within {REPLY_TIMEOUT:?}",
                    lossy(&id)
                ));
            }
        }
        if i >= warmup as u64 {
            samples.push(t0.elapsed().as_nanos() as u64);
        }
    }
    Ok(LatencyResult::new(samples))
}

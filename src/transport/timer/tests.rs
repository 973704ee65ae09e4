use super::*;
use crate::testkit::Rng;

const TICK: Duration = Duration::from_millis(10);

fn ms(n: u64) -> Duration {
    Duration::from_millis(n)
}

fn expire<T>(wheel: &mut TimerWheel<T>, now: Instant) -> Vec<T> {
    let mut out = Vec::new();
    wheel.expire(now, &mut out);
    out
}

#[test]
fn empty_wheel() {
    let t0 = Instant::now();
    let mut wheel: TimerWheel<u32> = TimerWheel::new(TICK, t0);
    assert!(wheel.is_empty());
    assert_eq!(wheel.next_expiry(), None);
    assert_eq!(expire(&mut wheel, t0 + ms(1000)), Vec::<u32>::new());
    assert_eq!(wheel.next_expiry(), None);
}

#[test]
fn fires_in_deadline_order_then_in_insertion_order() {
    let t0 = Instant::now();
    let mut wheel = TimerWheel::new(TICK, t0);
    for (at, value) in [
        (50, "c"),
        (20, "a"),
        (35, "b1"),
        (31, "b0"),
        (35, "b2"),
        (90, "d"),
    ] {
        wheel.insert(t0 + ms(at), value);
    }
    assert_eq!(wheel.len(), 6);
    // 31 and 35 round up to the same tick (40): insertion order there.
    assert_eq!(
        expire(&mut wheel, t0 + ms(100)),
        ["a", "b1", "b0", "b2", "c", "d"]
    );
    assert!(wheel.is_empty());
}

#[test]
fn never_early_and_at_most_one_tick_late() {
    let t0 = Instant::now();
    let mut wheel = TimerWheel::new(TICK, t0);
    wheel.insert(t0 + ms(25), 1);
    wheel.insert(t0 + ms(30), 2);
    assert_eq!(expire(&mut wheel, t0 + ms(24)), Vec::<i32>::new());
    assert_eq!(expire(&mut wheel, t0 + ms(29)), Vec::<i32>::new());
    assert_eq!(expire(&mut wheel, t0 + ms(30)), [1, 2]);

    // At most one tick late: whenever `now` is a tick past the deadline, it has fired.
    let mut wheel = TimerWheel::new(TICK, t0);
    for at in 1..200u64 {
        wheel.insert(t0 + Duration::from_micros(at * 997), at);
    }
    let mut fired = Vec::new();
    let mut now = t0;
    while now < t0 + ms(300) {
        now += Duration::from_micros(1_301);
        let out = expire(&mut wheel, now);
        for &at in &out {
            let deadline = t0 + Duration::from_micros(at * 997);
            assert!(deadline <= now, "early: {at}");
        }
        fired.extend(out);
        for at in 1..200u64 {
            if t0 + Duration::from_micros(at * 997) + TICK <= now {
                assert!(fired.contains(&at), "{at} is more than a tick late");
            }
        }
    }
    assert_eq!(fired, (1..200).collect::<Vec<_>>());
}

#[test]
fn past_deadlines_fire_on_the_next_expire() {
    let t0 = Instant::now();
    let mut wheel = TimerWheel::new(TICK, t0);
    assert_eq!(expire(&mut wheel, t0 + ms(1005)), Vec::<&str>::new());
    wheel.insert(t0 + ms(1004), "just past");
    wheel.insert(t0, "long past");
    wheel.insert(t0 - ms(5), "before start");
    wheel.insert(t0 + ms(1008), "future");
    assert_eq!(wheel.next_expiry(), Some(t0 + ms(1005)));
    // Even a `now` that has not moved.
    assert_eq!(
        expire(&mut wheel, t0 + ms(1005)),
        ["just past", "long past", "before start"]
    );
    assert_eq!(wheel.next_expiry(), Some(t0 + ms(1010)));
    assert_eq!(expire(&mut wheel, t0 + ms(1010)), ["future"]);
}

#[test]
fn far_deadlines() {
    let t0 = Instant::now();
    let mut wheel = TimerWheel::new(TICK, t0);
    let far = [
        ms(300_000),
        ms(3_600_000),
        ms(41_000),
        ms(40_960),
        ms(86_400_000),
    ];
    for (i, delay) in far.iter().enumerate() {
        wheel.insert(t0 + *delay, i);
    }
    wheel.insert(t0 + ms(30_000), 99);
    assert_eq!(wheel.next_expiry(), Some(t0 + ms(30_000)));
    let mut now = t0;
    let mut fired = Vec::new();
    // Walk in 10 ms steps past the span, then in one-second steps.
    while now < t0 + ms(60_000) {
        now += TICK;
        fired.extend(expire(&mut wheel, now).into_iter().map(|v| (v, now)));
    }
    while now < t0 + ms(90_000_000) {
        now += ms(1000);
        fired.extend(expire(&mut wheel, now).into_iter().map(|v| (v, now)));
    }
    let expected = [
        (99, t0 + ms(30_000)),
        (3, t0 + ms(40_960)),
        (2, t0 + ms(41_000)),
        (0, t0 + ms(300_000)),
        (1, t0 + ms(3_600_000)),
        (4, t0 + ms(86_400_000)),
    ];
    assert_eq!(fired, expected);
    assert!(wheel.is_empty());
}

#[test]
fn deadlines_a_whole_span_apart_do_not_share_a_slot_early() {
    let t0 = Instant::now();
    let mut wheel = TimerWheel::new(TICK, t0);
    let span = ms(10 * SLOTS as u64);
    let first = t0 + span + ms(500);
    for (i, at) in [first, first + span, first + span * 2, first - span]
        .into_iter()
        .enumerate()
    {
        wheel.insert(at, i);
    }
    let mut fired = Vec::new();
    while let Some(next) = wheel.next_expiry() {
        for value in expire(&mut wheel, next) {
            fired.push((value, next));
        }
    }
    let expected = [
        (3, first - span),
        (0, first),
        (1, first + span),
        (2, first + span * 2),
    ];
    assert_eq!(fired, expected);
}

#[test]
fn agent_ttls_and_heartbeats_together() {
    let t0 = Instant::now();
    let mut wheel = TimerWheel::new(TICK, t0);
    wheel.insert(t0 + ms(300_000), "ttl");
    let mut now = t0;
    let mut beats = 0;
    wheel.insert(now + ms(30_000), "beat");
    loop {
        let next = wheel.next_expiry().expect("entries left");
        assert!(next > now);
        now = next;
        let out = expire(&mut wheel, now);
        assert!(!out.is_empty(), "next_expiry is exact here");
        if out.contains(&"ttl") {
            assert_eq!(now, t0 + ms(300_000));
            assert_eq!(beats, 9);
            break;
        }
        assert_eq!(out, ["beat"]);
        beats += 1;
        wheel.insert(now + ms(30_000), "beat");
    }
}

#[test]
fn many_entries_in_one_slot() {
    let t0 = Instant::now();
    let mut wheel = TimerWheel::new(TICK, t0);
    for i in 0..20_000u32 {
        // All within (5000 ms, 5010 ms]: one tick.
        wheel.insert(
            t0 + ms(5_001) + Duration::from_micros(u64::from(i % 1_000)),
            i,
        );
    }
    assert_eq!(wheel.len(), 20_000);
    assert_eq!(wheel.next_expiry(), Some(t0 + ms(5_010)));
    assert_eq!(expire(&mut wheel, t0 + ms(5_009)).len(), 0);
    let fired = expire(&mut wheel, t0 + ms(5_010));
    assert!(
        fired == (0..20_000).collect::<Vec<_>>(),
        "insertion order within the tick"
    );
    assert!(wheel.is_empty());
    assert_eq!(wheel.next_expiry(), None);
}

#[test]
fn next_expiry_is_the_earliest_deadline_rounded_up() {
    let t0 = Instant::now();
    let mut wheel = TimerWheel::new(TICK, t0);
    wheel.insert(t0 + ms(1_234) + Duration::from_micros(1), ());
    assert_eq!(wheel.next_expiry(), Some(t0 + ms(1_240)));
    wheel.insert(t0 + ms(500), ());
    assert_eq!(wheel.next_expiry(), Some(t0 + ms(500)));
    wheel.insert(t0 + ms(100_000), ());
    assert_eq!(wheel.next_expiry(), Some(t0 + ms(500)));
    assert_eq!(expire(&mut wheel, t0 + ms(600)).len(), 1);
    assert_eq!(wheel.next_expiry(), Some(t0 + ms(1_240)));
    assert_eq!(expire(&mut wheel, t0 + ms(1_240)).len(), 1);
    assert_eq!(wheel.next_expiry(), Some(t0 + ms(100_000)));
    // Only an overflow entry, then a nearer one in the slots.
    wheel.insert(t0 + ms(99_999), ());
    assert_eq!(wheel.next_expiry(), Some(t0 + ms(100_000)));
    wheel.insert(t0 + ms(2_000), ());
    assert_eq!(wheel.next_expiry(), Some(t0 + ms(2_000)));
    assert_eq!(expire(&mut wheel, t0 + ms(100_000)).len(), 3);
    assert_eq!(wheel.next_expiry(), None);
}

#[test]
fn next_expiry_wraps_round_the_bitmap() {
    let t0 = Instant::now();
    let mut wheel = TimerWheel::new(TICK, t0);
    // Move the wheel's position into the middle of a bitmap word, then use slots behind it.
    assert!(expire(&mut wheel, t0 + ms(10 * (SLOTS as u64 - 30))).is_empty());
    for delay in [ms(10 * 40), ms(10 * 20), ms(10 * (SLOTS as u64 - 1))] {
        wheel.insert(t0 + ms(10 * (SLOTS as u64 - 30)) + delay, delay);
    }
    let base = t0 + ms(10 * (SLOTS as u64 - 30));
    assert_eq!(wheel.next_expiry(), Some(base + ms(200)));
    assert_eq!(expire(&mut wheel, base + ms(200)), [ms(200)]);
    assert_eq!(wheel.next_expiry(), Some(base + ms(400)));
    assert_eq!(expire(&mut wheel, base + ms(400)), [ms(400)]);
    assert_eq!(
        wheel.next_expiry(),
        Some(base + ms(10 * (SLOTS as u64 - 1)))
    );
}

#[test]
fn a_large_jump_of_now_fires_everything_due_in_order() {
    let t0 = Instant::now();
    let mut wheel = TimerWheel::new(TICK, t0);
    let delays = [
        5_000u64, 300_000, 60_000, 30_000, 10_000, 3_599_990, 7_200_000, 20,
    ];
    for (i, delay) in delays.iter().enumerate() {
        wheel.insert(t0 + ms(*delay), i);
    }
    // The process was suspended for an hour.
    assert_eq!(
        expire(&mut wheel, t0 + ms(3_600_000)),
        [7, 0, 4, 3, 2, 1, 5]
    );
    assert_eq!(wheel.len(), 1);
    assert_eq!(wheel.next_expiry(), Some(t0 + ms(7_200_000)));
    wheel.insert(t0 + ms(3_600_005), 8);
    assert_eq!(wheel.next_expiry(), Some(t0 + ms(3_600_010)));
    assert_eq!(expire(&mut wheel, t0 + ms(3_600_010)), [8]);
    assert_eq!(expire(&mut wheel, t0 + ms(7_200_000)), [6]);
}

#[test]
fn odd_ticks_and_times() {
    let t0 = Instant::now();
    let mut wheel = TimerWheel::new(Duration::ZERO, t0);
    wheel.insert(t0 + Duration::from_nanos(5), 1);
    assert_eq!(wheel.next_expiry(), Some(t0 + Duration::from_nanos(5)));
    assert_eq!(
        expire(&mut wheel, t0 + Duration::from_nanos(4)),
        Vec::<i32>::new()
    );
    assert_eq!(expire(&mut wheel, t0 + Duration::from_nanos(5)), [1]);

    let mut wheel = TimerWheel::new(Duration::from_secs(1), t0);
    wheel.insert(t0 + Duration::from_secs(u64::MAX / 4), 2);
    assert_eq!(wheel.len(), 1);
    let _ = wheel.next_expiry();
    assert_eq!(
        expire(&mut wheel, t0 + Duration::from_secs(1 << 40)),
        Vec::<i32>::new()
    );
    // A `now` before the previous one fires nothing new and loses nothing.
    wheel.insert(t0 + Duration::from_secs((1 << 40) + 2), 3);
    assert_eq!(expire(&mut wheel, t0), Vec::<i32>::new());
    assert_eq!(
        expire(&mut wheel, t0 + Duration::from_secs((1 << 40) + 2)),
        [3]
    );
}

/// Checks the wheel against a plain list: an entry fires on the first `expire` whose `now`
/// reaches its deadline rounded up to the tick, or on the first `expire` after its insertion
/// when its deadline had already passed; output ordered as the module documents.
#[test]
fn randomized_against_a_sorted_list() {
    let t0 = Instant::now();
    let tick_us = 10_000u64;
    let mut rng = Rng::new(0x2545_f491_4f6c_dd1d);
    let mut wheel = TimerWheel::new(Duration::from_micros(tick_us), t0);
    // (rounded deadline in µs, insertion number, past) for each pending entry.
    let mut model: Vec<(u64, u64, bool)> = Vec::new();
    let mut now_us = 0u64;
    let mut seen_us = 0u64;
    let mut next_id = 0u64;
    for _ in 0..20_000 {
        match rng.below_u64(10) {
            0..=5 => {
                let at_us = match rng.below_u64(10) {
                    0 => now_us.saturating_sub(rng.below_u64(100_000)),
                    1 => now_us + rng.below_u64(600_000_000),
                    2 => now_us + rng.below_u64(3) * tick_us,
                    3 => {
                        (now_us / tick_us + rng.below_u64(4) * SLOTS as u64 + rng.below_u64(3))
                            * tick_us
                    }
                    _ => now_us + rng.below_u64(60_000_000),
                };
                let past = at_us <= seen_us;
                let rounded = at_us.div_ceil(tick_us) * tick_us;
                wheel.insert(t0 + Duration::from_micros(at_us), next_id);
                model.push((rounded, next_id, past));
                next_id += 1;
            }
            _ => {
                if let Some(next) = wheel.next_expiry() {
                    let earliest = model
                        .iter()
                        .map(|&(r, _, past)| if past { seen_us } else { r })
                        .min();
                    let next_us = next.duration_since(t0).as_micros() as u64;
                    assert!(
                        next_us <= earliest.expect("model has entries"),
                        "next_expiry too late"
                    );
                } else {
                    assert!(model.is_empty());
                }
                now_us += match rng.below_u64(20) {
                    0 => rng.below_u64(4_000_000_000),
                    1..=3 => 0,
                    _ => rng.below_u64(50_000),
                };
                seen_us = seen_us.max(now_us);
                let mut due: Vec<(u64, u64, bool)> = model
                    .iter()
                    .copied()
                    .filter(|&(r, _, past)| past || r <= now_us)
                    .collect();
                model.retain(|&(r, _, past)| !(past || r <= now_us));
                // Past entries first in insertion order, then by rounded deadline.
                due.sort_by_key(|&(r, id, past)| (!past, if past { 0 } else { r }, id));
                let got = expire(&mut wheel, t0 + Duration::from_micros(now_us));
                let got_sorted_by_tick: Vec<u64> = {
                    let mut g: Vec<(u64, u64)> = got
                        .iter()
                        .map(|id| {
                            (
                                due.iter()
                                    .position(|d| d.1 == *id)
                                    .expect("fired but not due")
                                    as u64,
                                *id,
                            )
                        })
                        .collect();
                    g.sort_unstable();
                    g.into_iter().map(|(_, id)| id).collect()
                };
                let expected: Vec<u64> = due.iter().map(|d| d.1).collect();
                assert_eq!(got_sorted_by_tick, expected, "wrong set");
                // Order: past first, then non-decreasing ticks.
                let keys: Vec<(bool, u64)> = got
                    .iter()
                    .map(|id| {
                        let d = due.iter().find(|d| d.1 == *id).expect("due");
                        (!d.2, if d.2 { 0 } else { d.0 })
                    })
                    .collect();
                assert!(keys.windows(2).all(|w| w[0] <= w[1]), "out of order");
                assert_eq!(wheel.len(), model.len());
            }
        }
    }
}

//! `auth_mode = jwt` in the core: `expiresAt`, refreshes, and the expiry check timer (armed
//! at `exp` + leeway at most 60 s ahead, re-armed while the token is valid, stale checks
//! ignored), on the harness's fake clocks.

use super::*;
use crate::core::timers;
use jsonwebtoken::{Algorithm, EncodingKey, Header};

const SECRET: &str = "a-test-only-hs256-key-of-32-bytes";
const LEEWAY: u64 = 1000;

fn jwt_config() -> Config {
    Config {
        auth_mode: AuthMode::Jwt,
        jwt_secret: Some(SECRET.into()),
        jwt_leeway_ms: LEEWAY,
        ..Config::default()
    }
}

/// A token for `sub` whose `exp` is `exp_ms` after the harness's wall-clock start.
fn token(sub: &str, exp_ms: u64) -> String {
    let claims = json!({"sub": sub, "exp": (WALL0 + exp_ms) as f64 / 1000.0});
    let key = EncodingKey::from_secret(SECRET.as_bytes());
    jsonwebtoken::encode(&Header::new(Algorithm::HS256), &claims, &key).unwrap()
}

fn auth(h: &mut Harness, conn: ConnId, token: &str) -> Output {
    h.req(conn, "auth", "a", json!({ "token": token }))
}

/// The expiry check timers in `o`, as (ms after t0, token).
fn checks(h: &Harness, o: &Output) -> Vec<(u64, u64)> {
    o.timers
        .iter()
        .filter(|(_, token)| matches!(timers::decode(*token), timers::Timer::TokenExpiry { .. }))
        .map(|(at, token)| (at.duration_since(h.t0).as_millis() as u64, *token))
        .collect()
}

#[test]
fn auth_success_carries_expires_at_and_arms_the_check_at_exp_plus_leeway() {
    let mut h = Harness::new(jwt_config());
    let (conn, _) = h.open();
    let o = auth(&mut h, conn, &token("alice", 10_000));
    let reply = o.reply(conn, "auth_success", "a");
    assert_eq!(reply["userId"], "alice");
    assert_eq!(reply["expiresAt"], WALL0 + 10_000);
    let check = timers::token_expiry(conn);
    assert_eq!(checks(&h, &o), [(10_000 + LEEWAY, check)]);
    // Fired early (never happens, but harmless): nothing at all.
    h.advance(10_000 + LEEWAY - 1);
    h.timer(check).silent();
    h.advance(1);
    let o = h.timer(check);
    assert_eq!(o.closes, [(conn, 1008, "Token expired".to_owned())]);
    assert!(h.timer(check).closes.is_empty(), "closed once");
}

#[test]
fn a_far_expiry_is_checked_every_minute_until_it_comes() {
    let mut h = Harness::new(jwt_config());
    let (conn, _) = h.open();
    let check = timers::token_expiry(conn);
    let o = auth(&mut h, conn, &token("alice", 150_000));
    assert_eq!(checks(&h, &o), [(60_000, check)]);
    h.advance(60_000);
    let o = h.timer(check);
    assert!(o.closes.is_empty() && o.sent.is_empty());
    assert_eq!(checks(&h, &o), [(120_000, check)]);
    h.advance(60_000);
    let o = h.timer(check);
    assert_eq!(checks(&h, &o), [(150_000 + LEEWAY, check)]);
    h.advance(30_000 + LEEWAY);
    assert_eq!(
        h.timer(check).closes,
        [(conn, 1008, "Token expired".to_owned())]
    );
}

#[test]
fn refreshes_move_the_check_and_stale_checks_end() {
    let mut h = Harness::new(jwt_config());
    let (conn, _) = h.open();
    let check = timers::token_expiry(conn);
    auth(&mut h, conn, &token("alice", 30_000));
    // Later: nothing new armed, the check in flight (31 s) finds the token valid and re-arms.
    let o = auth(&mut h, conn, &token("alice", 50_000));
    assert_eq!(
        o.reply(conn, "auth_success", "a")["expiresAt"],
        WALL0 + 50_000
    );
    assert!(checks(&h, &o).is_empty());
    h.advance(31_000);
    let o = h.timer(check);
    assert!(o.closes.is_empty());
    assert_eq!(checks(&h, &o), [(50_000 + LEEWAY, check)]);
    // Earlier than the check in flight: an earlier one is armed.
    let o = auth(&mut h, conn, &token("alice", 40_000));
    assert_eq!(checks(&h, &o), [(40_000 + LEEWAY, check)]);
    // Another user's token: AUTH_FAILED, nothing armed, identity and expiry kept.
    let o = auth(&mut h, conn, &token("bob", 45_000));
    o.error(conn, "AUTH_FAILED", Some("a"));
    assert!(checks(&h, &o).is_empty());
    h.advance(9_000 + LEEWAY);
    assert_eq!(
        h.timer(check).closes,
        [(conn, 1008, "Token expired".to_owned())]
    );
}

#[test]
fn a_stale_check_neither_closes_nor_re_arms() {
    let mut h = Harness::new(jwt_config());
    let (conn, _) = h.open();
    let check = timers::token_expiry(conn);
    auth(&mut h, conn, &token("alice", 20_000)); // check at 21 s
    auth(&mut h, conn, &token("alice", 5_000)); // check at 6 s
    h.advance(2_000);
    auth(&mut h, conn, &token("alice", 100_000)); // later: nothing armed
    h.advance(4_000);
    // The 6 s check: the token is valid now, it arms the next (at most 60 s ahead).
    let o = h.timer(check);
    assert!(o.closes.is_empty());
    assert_eq!(checks(&h, &o), [(66_000, check)]);
    // The 21 s check is stale: it does nothing.
    h.advance(15_000);
    let o = h.timer(check);
    assert!(o.closes.is_empty() && o.timers.is_empty() && o.sent.is_empty());
    // Another generation of the slot, and a closed connection: nothing.
    let other = ConnId {
        index: conn.index,
        generation: conn.generation + 1,
    };
    h.advance(200_000);
    assert!(h.timer(timers::token_expiry(other)).closes.is_empty());
    h.close(conn, CloseReason::Peer(1000));
    let o = h.timer(check);
    assert!(o.closes.is_empty() && o.timers.is_empty());
}

#[test]
fn other_modes_arm_no_check_and_keep_the_repeated_auth_rule() {
    let mut h = Harness::new(token_config());
    let (conn, _) = h.authed();
    let o = h.req(conn, "auth", "again", json!({"token": "hunter2"}));
    let reply = o.reply(conn, "auth_success", "again");
    assert_eq!(reply["userId"], "alice");
    assert!(reply.get("expiresAt").is_none(), "{reply}");
    assert!(checks(&h, &o).is_empty());
    let o = h.timer(timers::token_expiry(conn));
    assert!(o.closes.is_empty() && o.timers.is_empty());
}

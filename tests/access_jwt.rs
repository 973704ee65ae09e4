//! `auth_mode = jwt` (PROTOCOL section 12) over real sockets: each algorithm accepted, every
//! way a token is refused (signature, algorithm, `alg: none`, algorithm confusion, time,
//! issuer, audience, subject), the `scopes` claim, refreshes, and the close of a connection
//! whose token expires. Keys are the test-only fixtures under tests/fixtures/jwt.

mod common;

use std::path::PathBuf;
use std::time::{Duration, Instant};

use common::*;
use gateway::{AuthMode, Config, JwtPublicKey};
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use serde_json::{json, Value};

/// The HS256 key of the test gateways (test-only, 36 bytes).
const SECRET: &str = "test-only-hs256-key-0123456789abcdef";

fn fixture(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/jwt")
        .join(name)
}

/// A jwt-mode gateway config with `jwt_secret`, no failure limit (each case of a table can
/// use one connection) and a 1 s leeway.
fn hs_config() -> Config {
    Config {
        auth_mode: AuthMode::Jwt,
        jwt_secret: Some(SECRET.into()),
        jwt_leeway_ms: 1000,
        max_auth_failures: 0,
        ..test_config()
    }
}

/// The same with the public key in `file` instead of the secret.
fn key_config(file: &str) -> Config {
    Config {
        jwt_secret: None,
        jwt_public_key: Some(JwtPublicKey::read(fixture(file)).expect("fixture key")),
        ..hs_config()
    }
}

/// Seconds since the epoch, `ms` from now, as a (fractional) NumericDate.
fn at(ms: i64) -> f64 {
    (now_ms() as i64 + ms) as f64 / 1000.0
}

/// Claims for `sub` expiring `ms` from now.
fn claims(sub: &str, ms: i64) -> Value {
    json!({"sub": sub, "exp": at(ms)})
}

fn sign(alg: Algorithm, key: &EncodingKey, claims: &Value) -> String {
    jsonwebtoken::encode(&Header::new(alg), claims, key).expect("sign")
}

fn hs256(claims: &Value) -> String {
    sign(
        Algorithm::HS256,
        &EncodingKey::from_secret(SECRET.as_bytes()),
        claims,
    )
}

/// The private key of a fixture, for `alg`.
fn private_key(alg: Algorithm) -> EncodingKey {
    let pem = |name| std::fs::read(fixture(name)).expect("fixture");
    match alg {
        Algorithm::RS256 | Algorithm::PS256 | Algorithm::RS384 => {
            EncodingKey::from_rsa_pem(&pem("rsa.key.pem")).unwrap()
        }
        Algorithm::ES256 => EncodingKey::from_ec_pem(&pem("ec.key.pem")).unwrap(),
        Algorithm::EdDSA => EncodingKey::from_ed_pem(&pem("ed.key.pem")).unwrap(),
        other => panic!("no fixture for {other:?}"),
    }
}

fn auth(client: &mut Client, token: &str) -> Value {
    client.request("auth", json!({ "token": token }))
}

/// A new connection's `auth` with `token` must fail with `AUTH_FAILED`.
fn refused(gw: &TestGateway, token: &str, why: &str) {
    let mut client = Client::connect(gw);
    let reply = auth(&mut client, token);
    assert_eq!(reply["type"], "error", "{why}: {reply}");
    assert_eq!(reply["payload"]["code"], "AUTH_FAILED", "{why}: {reply}");
    // Still unauthenticated.
    client.request_error("session_create", json!({}), "AUTH_REQUIRED");
}

/// A new connection's `auth` with `token` must succeed as `sub`; returns the client and
/// the reply.
fn accepted(gw: &TestGateway, token: &str, sub: &str) -> (Client, Value) {
    let mut client = Client::connect(gw);
    let reply = auth(&mut client, token);
    assert_eq!(reply["type"], "auth_success", "{reply}");
    assert_eq!(reply["payload"]["userId"], sub, "{reply}");
    assert_eq!(reply["payload"]["clientId"], client.client_id.as_str());
    (client, reply)
}

/// The `userId` the gateway has for `client`, by the members list of a new session.
fn user_of(client: &mut Client) -> Value {
    let session = next_id();
    let reply = client.request("session_create", json!({ "sessionId": session }));
    assert_eq!(reply["payload"]["status"], "created", "{reply}");
    reply["payload"]["members"][0]["userId"].clone()
}

#[test]
fn each_algorithm_is_accepted_with_its_key() {
    let exp = at(60_000);
    let claims = json!({"sub": "alice", "exp": exp});
    let gw = TestGateway::start(hs_config());
    let (mut client, reply) = accepted(&gw, &hs256(&claims), "alice");
    assert_eq!(
        reply["payload"]["expiresAt"],
        (exp * 1000.0).floor() as u64,
        "{reply}"
    );
    assert_eq!(user_of(&mut client), "alice");
    drop(gw);
    for (file, alg) in [
        ("rsa.pub.pem", Algorithm::RS256),
        ("rsa.pkcs1.pub.pem", Algorithm::RS256),
        ("ec.pub.pem", Algorithm::ES256),
        ("ed.pub.pem", Algorithm::EdDSA),
    ] {
        let gw = TestGateway::start(key_config(file));
        let token = sign(alg, &private_key(alg), &claims);
        let (_, reply) = accepted(&gw, &token, "alice");
        assert!(reply["payload"]["expiresAt"].is_u64(), "{file}: {reply}");
    }
}

#[test]
fn a_bad_signature_fails() {
    let gw = TestGateway::start(key_config("ec.pub.pem"));
    let good = sign(
        Algorithm::ES256,
        &private_key(Algorithm::ES256),
        &claims("alice", 60_000),
    );
    accepted(&gw, &good, "alice");
    // Another signature's last character, a forged payload under the old signature.
    let (head, sig) = good.rsplit_once('.').unwrap();
    let flipped = if sig.ends_with('A') { 'B' } else { 'A' };
    refused(
        &gw,
        &format!("{head}.{}{flipped}", &sig[..sig.len() - 1]),
        "tampered signature",
    );
    let bob = sign(
        Algorithm::ES256,
        &private_key(Algorithm::ES256),
        &claims("bob", 60_000),
    );
    let (_, bob_rest) = bob.split_once('.').unwrap();
    let (bob_payload, _) = bob_rest.split_once('.').unwrap();
    let (header, rest) = good.split_once('.').unwrap();
    let (_, sig) = rest.split_once('.').unwrap();
    refused(
        &gw,
        &format!("{header}.{bob_payload}.{sig}"),
        "swapped payload",
    );
    let gw = TestGateway::start(hs_config());
    let other = EncodingKey::from_secret(b"another-test-key-0123456789abcdef!!!");
    refused(
        &gw,
        &sign(Algorithm::HS256, &other, &claims("alice", 60_000)),
        "other secret",
    );
    for junk in ["x", "a.b.c", "..", "x".repeat(4097).as_str()] {
        refused(&gw, junk, "not a JWT");
    }
}

#[test]
fn only_the_keys_one_algorithm_is_accepted() {
    let claims = claims("alice", 60_000);
    let cases = [
        ("ec.pub.pem", Algorithm::RS256),
        ("ec.pub.pem", Algorithm::EdDSA),
        ("ed.pub.pem", Algorithm::ES256),
        ("rsa.pub.pem", Algorithm::ES256),
        // The same RSA key with another RSA algorithm.
        ("rsa.pub.pem", Algorithm::PS256),
        ("rsa.pub.pem", Algorithm::RS384),
    ];
    for (file, alg) in cases {
        let gw = TestGateway::start(key_config(file));
        refused(
            &gw,
            &sign(alg, &private_key(alg), &claims),
            &format!("{alg:?} to {file}"),
        );
    }
    let gw = TestGateway::start(hs_config());
    let secret = EncodingKey::from_secret(SECRET.as_bytes());
    for alg in [Algorithm::HS384, Algorithm::HS512] {
        refused(
            &gw,
            &sign(alg, &secret, &claims),
            &format!("{alg:?} with the secret"),
        );
    }
    for alg in [Algorithm::RS256, Algorithm::ES256, Algorithm::EdDSA] {
        refused(
            &gw,
            &sign(alg, &private_key(alg), &claims),
            &format!("{alg:?} to a secret"),
        );
    }
}

#[test]
fn alg_none_is_refused() {
    let gw = TestGateway::start(hs_config());
    let good = hs256(&claims("alice", 60_000));
    let (_, rest) = good.split_once('.').unwrap();
    let (payload, signature) = rest.split_once('.').unwrap();
    // {"alg":"none","typ":"JWT"}, {"alg":"None"}, {"alg":"NONE"}
    for header in [
        "eyJhbGciOiJub25lIiwidHlwIjoiSldUIn0",
        "eyJhbGciOiJOb25lIn0",
        "eyJhbGciOiJOT05FIn0",
    ] {
        refused(
            &gw,
            &format!("{header}.{payload}."),
            "alg none, no signature",
        );
        refused(
            &gw,
            &format!("{header}.{payload}.{signature}"),
            "alg none, a signature",
        );
    }
    accepted(&gw, &good, "alice");
}

#[test]
fn algorithm_confusion_is_refused() {
    // An HS256 token whose HMAC key is the configured RSA public key, in each of its forms.
    let pem_bytes = std::fs::read(fixture("rsa.pub.pem")).unwrap();
    let spki_der = pem::parse(&pem_bytes).unwrap().into_contents();
    let pkcs1_pem = std::fs::read(fixture("rsa.pkcs1.pub.pem")).unwrap();
    let pkcs1_der = pem::parse(&pkcs1_pem).unwrap().into_contents();
    let claims = claims("alice", 60_000);
    for file in ["rsa.pub.pem", "rsa.pkcs1.pub.pem"] {
        let gw = TestGateway::start(key_config(file));
        for key in [&pem_bytes, &spki_der, &pkcs1_pem, &pkcs1_der] {
            let token = sign(Algorithm::HS256, &EncodingKey::from_secret(key), &claims);
            refused(&gw, &token, "HS256 keyed with the RSA public key");
        }
        accepted(
            &gw,
            &sign(Algorithm::RS256, &private_key(Algorithm::RS256), &claims),
            "alice",
        );
    }
    // The same against an EC key.
    let ec_pem = std::fs::read(fixture("ec.pub.pem")).unwrap();
    let gw = TestGateway::start(key_config("ec.pub.pem"));
    let token = sign(
        Algorithm::HS256,
        &EncodingKey::from_secret(&ec_pem),
        &claims,
    );
    refused(&gw, &token, "HS256 keyed with the EC public key");
}

#[test]
fn expiry_not_before_and_the_leeway() {
    // Leeway 1000 ms.
    let gw = TestGateway::start(hs_config());
    refused(
        &gw,
        &hs256(&claims("alice", -1500)),
        "expired beyond the leeway",
    );
    accepted(&gw, &hs256(&claims("alice", -300)), "alice");
    refused(
        &gw,
        &hs256(&json!({"sub": "alice", "exp": at(60_000), "nbf": at(5000)})),
        "not yet valid",
    );
    accepted(
        &gw,
        &hs256(&json!({"sub": "alice", "exp": at(60_000), "nbf": at(300)})),
        "alice",
    );
    accepted(
        &gw,
        &hs256(&json!({"sub": "alice", "exp": at(60_000), "nbf": at(-10_000)})),
        "alice",
    );
    refused(&gw, &hs256(&json!({"sub": "alice"})), "no exp");
    refused(
        &gw,
        &hs256(&json!({"sub": "alice", "exp": "tomorrow"})),
        "exp a string",
    );
    // Fractional NumericDates are read to the millisecond, rounded down.
    let seconds = now_ms() / 1000 + 60;
    let exp = seconds as f64 + 0.1235;
    let (_, reply) = accepted(&gw, &hs256(&json!({"sub": "alice", "exp": exp})), "alice");
    assert_eq!(reply["payload"]["expiresAt"], seconds * 1000 + 123);
    // Without leeway, just expired fails.
    let strict = TestGateway::start(Config {
        jwt_leeway_ms: 0,
        ..hs_config()
    });
    refused(
        &strict,
        &hs256(&claims("alice", -300)),
        "expired, no leeway",
    );
}

#[test]
fn issuer_and_audience() {
    let gw = TestGateway::start(Config {
        jwt_issuer: Some("https://id.example".into()),
        jwt_audience: Some("gateway".into()),
        ..hs_config()
    });
    let token = |iss: Value, aud: Value| {
        hs256(&json!({"sub": "alice", "exp": at(60_000), "iss": iss, "aud": aud}))
    };
    accepted(
        &gw,
        &token(json!("https://id.example"), json!("gateway")),
        "alice",
    );
    accepted(
        &gw,
        &token(json!("https://id.example"), json!(["web", "gateway"])),
        "alice",
    );
    refused(
        &gw,
        &token(json!("https://evil.example"), json!("gateway")),
        "issuer",
    );
    refused(&gw, &token(Value::Null, json!("gateway")), "no issuer");
    refused(
        &gw,
        &token(json!("https://id.example"), json!("web")),
        "audience string",
    );
    refused(
        &gw,
        &token(json!("https://id.example"), json!(["web", "api"])),
        "audience array",
    );
    refused(
        &gw,
        &token(json!("https://id.example"), json!([])),
        "empty audience array",
    );
    refused(
        &gw,
        &token(json!("https://id.example"), Value::Null),
        "no audience",
    );
    // Not configured: not checked.
    let open = TestGateway::start(hs_config());
    accepted(&open, &token(json!("anyone"), json!("anything")), "alice");
}

#[test]
fn the_subject_is_the_user_id() {
    let gw = TestGateway::start(hs_config());
    let exp = at(60_000);
    refused(&gw, &hs256(&json!({"exp": exp})), "no sub");
    refused(&gw, &hs256(&json!({"sub": "", "exp": exp})), "empty sub");
    refused(
        &gw,
        &hs256(&json!({"sub": "s".repeat(129), "exp": exp})),
        "sub of 129 bytes",
    );
    refused(&gw, &hs256(&json!({"sub": 42, "exp": exp})), "sub a number");
    let long = "s".repeat(128);
    let (mut client, _) = accepted(&gw, &hs256(&json!({"sub": long, "exp": exp})), &long);
    assert_eq!(user_of(&mut client), long.as_str());
    // The static tokens of auth_tokens are not JWTs.
    refused(&gw, TOKEN, "a configured static token");
}

#[test]
fn a_credential_over_4096_bytes_fails_even_when_valid() {
    let gw = TestGateway::start(hs_config());
    let padded =
        |n: usize| hs256(&json!({"sub": "alice", "exp": at(60_000), "pad": "p".repeat(n)}));
    let small = padded(2800);
    assert!(small.len() <= 4096, "{}", small.len());
    accepted(&gw, &small, "alice");
    let big = padded(3200);
    assert!(big.len() > 4096, "{}", big.len());
    refused(&gw, &big, "over 4096 bytes");
}

#[test]
fn a_missing_token_is_not_counted_and_failures_close_at_the_limit() {
    let gw = TestGateway::start(Config {
        max_auth_failures: 2,
        ..hs_config()
    });
    let mut client = Client::connect(&gw);
    client.request_error("auth", json!({}), "AUTH_REQUIRED");
    client.request_error("auth", json!({"token": ""}), "AUTH_REQUIRED");
    client.request_error("auth", json!({"token": "bad"}), "AUTH_FAILED");
    client.request_error("auth", json!({"token": "bad"}), "AUTH_FAILED");
    let frame = client.expect_close().expect("close frame");
    assert_eq!(u16::from(frame.code), 1008);
    assert_eq!(frame.reason.as_str(), "Too many authentication failures");
}

#[test]
fn the_scopes_claim_decides_the_scopes() {
    let gw = TestGateway::start(Config {
        allow_sessions: vec!["alice".into()],
        allow_agents: vec!["alice".into()],
        allow_route: vec!["alice".into()],
        ..hs_config()
    });
    let exp = at(60_000);
    let with_scopes =
        |sub: &str, scopes: Value| hs256(&json!({"sub": sub, "exp": exp, "scopes": scopes}));
    let forbidden = |client: &mut Client, msg_type: &str, scope: &str| {
        let reply = client.request_error(msg_type, json!({}), "FORBIDDEN");
        assert_eq!(reply["payload"]["details"]["scope"], scope, "{reply}");
    };
    // Without the claim, the access lists decide by sub.
    let (mut bob, _) = accepted(&gw, &hs256(&claims("bob", 60_000)), "bob");
    forbidden(&mut bob, "session_create", "sessions");
    forbidden(&mut bob, "agent_query", "route");
    let (mut alice, _) = accepted(&gw, &hs256(&claims("alice", 60_000)), "alice");
    assert_eq!(user_of(&mut alice), "alice");
    // With it, the claim is the set exactly (unknown names ignored), whatever the lists say.
    let (mut bob, _) = accepted(
        &gw,
        &with_scopes("bob", json!(["sessions", "bogus"])),
        "bob",
    );
    assert_eq!(user_of(&mut bob), "bob");
    forbidden(&mut bob, "agent_query", "route");
    forbidden(&mut bob, "agent_register", "agents");
    let (mut alice, _) = accepted(&gw, &with_scopes("alice", json!(["route"])), "alice");
    forbidden(&mut alice, "session_create", "sessions");
    let reply = alice.request("agent_query", json!({}));
    assert_eq!(reply["type"], "agent_list", "{reply}");
    let (mut none, _) = accepted(&gw, &with_scopes("alice", json!([])), "alice");
    forbidden(&mut none, "session_create", "sessions");
    // A refresh takes the new token's scopes: here none in the claim, so the lists again.
    let reply = auth(&mut none, &hs256(&claims("alice", 60_000)));
    assert_eq!(reply["type"], "auth_success", "{reply}");
    assert_eq!(user_of(&mut none), "alice");
    // `admin` alone allows everything.
    let (mut admin, _) = accepted(&gw, &with_scopes("bob", json!(["admin"])), "bob");
    assert_eq!(user_of(&mut admin), "bob");
    let reply = admin.request("agent_query", json!({}));
    assert_eq!(reply["type"], "agent_list", "{reply}");
    // Not an array of strings: the token fails.
    refused(
        &gw,
        &with_scopes("alice", json!("sessions")),
        "scopes a string",
    );
}

#[test]
fn a_refresh_for_the_same_sub_moves_the_expiry() {
    let gw = TestGateway::start(Config {
        jwt_leeway_ms: 100,
        ..hs_config()
    });
    let first = claims("alice", 800);
    let (mut client, reply) = accepted(&gw, &hs256(&first), "alice");
    let old = reply["payload"]["expiresAt"].as_u64().unwrap();
    let reply = auth(&mut client, &hs256(&claims("alice", 60_000)));
    assert_eq!(reply["type"], "auth_success", "{reply}");
    assert_eq!(reply["payload"]["userId"], "alice");
    assert_eq!(reply["payload"]["clientId"], client.client_id.as_str());
    let new = reply["payload"]["expiresAt"].as_u64().unwrap();
    assert!(new >= old + 59_000, "{old} -> {new}");
    // Well past the first token's exp + leeway, the connection is open and served.
    client.expect_silence(Duration::from_millis(1500));
    assert!(now_ms() > old + 100 + 500);
    let pong = client.request("ping", json!({}));
    assert_eq!(pong["type"], "pong", "{pong}");
    assert_eq!(user_of(&mut client), "alice");
}

#[test]
fn a_refresh_for_another_sub_fails_and_keeps_the_identity() {
    let gw = TestGateway::start(Config {
        max_auth_failures: 2,
        ..hs_config()
    });
    let (mut client, _) = accepted(&gw, &hs256(&claims("alice", 60_000)), "alice");
    client.request_error(
        "auth",
        json!({"token": hs256(&claims("bob", 60_000))}),
        "AUTH_FAILED",
    );
    assert_eq!(user_of(&mut client), "alice");
    // A bad token in a refresh fails too; no token is AUTH_REQUIRED, not counted.
    client.request_error("auth", json!({}), "AUTH_REQUIRED");
    let reply = auth(&mut client, &hs256(&claims("alice", 30_000)));
    assert_eq!(reply["type"], "auth_success", "{reply}");
    // The second failed refresh reaches max_auth_failures = 2.
    client.request_error("auth", json!({"token": "not-a-jwt"}), "AUTH_FAILED");
    let frame = client.expect_close().expect("close frame");
    assert_eq!(u16::from(frame.code), 1008);
    assert_eq!(frame.reason.as_str(), "Too many authentication failures");
}

/// Wait for the close of `client`, which must be 1008 `Token expired` between `from` and
/// `to` (ms since the epoch by the test's clock).
fn closes_expired_between(client: &mut Client, from: u64, to: u64) {
    let frame = client.expect_close().expect("close frame");
    let closed = now_ms();
    assert_eq!(u16::from(frame.code), 1008, "{frame:?}");
    assert_eq!(frame.reason.as_str(), "Token expired");
    // 20 ms below: the gateway's clock is the same wall clock read through an Instant.
    assert!(closed + 20 >= from, "closed at {closed}, before {from}");
    assert!(closed <= to, "closed at {closed}, after {to}");
}

#[test]
fn a_token_expiring_while_connected_closes_the_connection() {
    let leeway = 200;
    let gw = TestGateway::start(Config {
        jwt_leeway_ms: leeway,
        ..hs_config()
    });
    let started = Instant::now();
    let exp_ms = now_ms() + 1000;
    let token = hs256(&json!({"sub": "alice", "exp": exp_ms as f64 / 1000.0}));
    let (mut client, _) = accepted(&gw, &token, "alice");
    let (mut other, _) = accepted(&gw, &hs256(&claims("alice", 60_000)), "alice");
    closes_expired_between(&mut client, exp_ms + leeway, exp_ms + leeway + 1000);
    assert!(started.elapsed() < Duration::from_secs(4));
    // The other connection, on a later token, stays.
    assert_eq!(other.request("ping", json!({}))["type"], "pong");
}

#[test]
fn a_refresh_to_an_earlier_expiry_closes_at_the_earlier_time() {
    let leeway = 100;
    let gw = TestGateway::start(Config {
        jwt_leeway_ms: leeway,
        ..hs_config()
    });
    let (mut client, _) = accepted(&gw, &hs256(&claims("alice", 120_000)), "alice");
    let exp_ms = now_ms() + 800;
    let reply = auth(
        &mut client,
        &hs256(&json!({"sub": "alice", "exp": exp_ms as f64 / 1000.0})),
    );
    assert_eq!(reply["payload"]["expiresAt"], exp_ms, "{reply}");
    closes_expired_between(&mut client, exp_ms + leeway, exp_ms + leeway + 1000);
}

#[test]
fn repeated_refreshes_keep_one_connection_alive_and_it_still_expires() {
    // Several refreshes, each later than the last; then the last one runs out.
    let leeway = 50;
    let gw = TestGateway::start(Config {
        jwt_leeway_ms: leeway,
        ..hs_config()
    });
    let (mut client, _) = accepted(&gw, &hs256(&claims("alice", 400)), "alice");
    let mut exp_ms = 0;
    for _ in 0..3 {
        exp_ms = now_ms() + 600;
        let reply = auth(
            &mut client,
            &hs256(&json!({"sub": "alice", "exp": exp_ms as f64 / 1000.0})),
        );
        assert_eq!(reply["payload"]["expiresAt"], exp_ms, "{reply}");
        client.expect_silence(Duration::from_millis(300));
    }
    closes_expired_between(&mut client, exp_ms + leeway, exp_ms + leeway + 1000);
}

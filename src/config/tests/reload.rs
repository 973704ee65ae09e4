//! The reload of a configuration: live keys change, the others keep their old value, an
//! invalid result changes nothing.

use super::*;
use crate::config::keys::KEY_TABLE;

#[test]
fn every_key_value_reads_back_as_the_same_field() {
    for (key, (name, value)) in KEY_TABLE.iter().zip(NON_DEFAULTS) {
        let mut set = Config::default();
        set.set(name, value).unwrap_or_else(|e| panic!("{e}"));
        let mut copy = Config::default();
        key.apply(&mut copy, &key.value(&set))
            .unwrap_or_else(|e| panic!("{name}: {e}"));
        assert_eq!(copy, set, "{name}: its value reads back as it was");
    }
}

#[test]
fn live_keys_change_and_the_others_keep_their_old_value() {
    let old = Config::default();
    for (key, (name, value)) in KEY_TABLE.iter().zip(NON_DEFAULTS) {
        if name.starts_with("tls_") {
            continue; // one alone is not valid: `tls_files_change_but_tls_stays_on_or_off`
        }
        let mut new = Config::default();
        new.set(name, value).unwrap_or_else(|e| panic!("{e}"));
        if name == "auth_mode" {
            new.auth_password = Some("pw".into());
        }
        let reload = match old.reload(new.clone()) {
            Ok(reload) => reload,
            // A value valid alone may break a rule across keys with the old values.
            Err(e) => panic!("{name} = {value}: {e}"),
        };
        if key.live {
            assert_eq!(reload.changed, [name], "{name} is live");
            assert!(reload.kept.is_empty());
            assert_eq!(reload.config, new);
        } else {
            let changed: Vec<&str> = reload.changed.clone();
            assert_eq!(reload.kept, [name], "{name} is not live");
            assert_eq!(key.value(&reload.config), key.value(&old), "{name} kept");
            assert!(changed.iter().all(|k| *k == "auth_password"), "{changed:?}");
        }
    }
}

#[test]
fn the_live_keys_are_the_documented_list() {
    let live: Vec<&str> = KEY_TABLE
        .iter()
        .filter(|k| k.live)
        .map(|k| k.name)
        .collect();
    assert_eq!(
        live,
        [
            "tls_cert",
            "tls_key",
            "tls_client_ca",
            "auth_tokens",
            "auth_password",
            "max_auth_failures",
            "jwt_secret",
            "jwt_public_key",
            "jwt_issuer",
            "jwt_audience",
            "jwt_leeway_ms",
            "allow_sessions",
            "allow_agents",
            "allow_route",
            "admin_users",
            "cors_origins",
            "require_origin",
            "max_header_bytes",
            "max_payload",
            "max_message_size",
            "max_clients_per_session",
            "max_sessions_per_client",
            "max_sessions",
            "max_agents",
            "rate_limit_per_sec",
            "rate_limit_burst",
            "max_preauth_message_size",
            "max_name_bytes",
            "max_agent_bytes",
            "max_capabilities",
            "max_agents_per_user",
            "max_connections_per_user",
            "max_memberships_per_user",
            "max_pending_routes_per_user",
            "max_inflight_bytes",
            "max_list_items",
            "log_level",
        ]
    );
}

#[test]
fn a_reload_reports_names_only_and_nothing_when_nothing_changed() {
    let old = Config {
        auth_tokens: vec![token("alice", "s1")],
        ..Config::default()
    };
    let same = old.reload(old.clone()).expect("valid");
    assert!(same.changed.is_empty() && same.kept.is_empty());
    let new = Config {
        auth_tokens: vec![token("alice", "s2")],
        port: 1,
        ..Config::default()
    };
    let reload = old.reload(new).expect("valid");
    assert_eq!(reload.changed, ["auth_tokens"]);
    assert_eq!(reload.kept, ["port"]);
    assert_eq!(reload.config.auth_tokens, [token("alice", "s2")]);
    assert_eq!(reload.config.port, old.port);
}

#[test]
fn an_invalid_result_is_an_error() {
    let old = Config::default();
    let broken = Config {
        max_message_size: 0,
        ..Config::default()
    };
    let e = old.reload(broken).expect_err("invalid alone");
    assert_eq!(e.key.as_deref(), Some("max_message_size"));
    // Valid alone, but max_outbound_buffer (not live) keeps its old value, which is now
    // smaller than max_message_size.
    let new = Config {
        max_payload: 64 << 20,
        max_message_size: 32 << 20,
        max_outbound_buffer: 64 << 20,
        ..Config::default()
    };
    assert_eq!(new.validate(), Ok(()));
    let e = old.reload(new).expect_err("invalid with the old value");
    assert_eq!(e.key.as_deref(), Some("max_outbound_buffer"));
}

#[cfg(feature = "tls")]
#[test]
fn tls_files_change_but_tls_stays_on_or_off() {
    let with_tls = |keys: &[(&str, &str)]| {
        let mut config = Config::default();
        for (key, value) in keys {
            config.set(key, value).unwrap_or_else(|e| panic!("{e}"));
        }
        config
    };
    let pair = [("tls_cert", TLS_CERT), ("tls_key", TLS_KEY)];
    let on = with_tls(&pair);
    // A client CA added while TLS is on: live.
    let with_ca = with_tls(&[pair[0], pair[1], ("tls_client_ca", TLS_CA)]);
    let reload = on.reload(with_ca.clone()).unwrap();
    assert_eq!(reload.changed, ["tls_client_ca"]);
    assert!(reload.kept.is_empty());
    assert_eq!(reload.config, with_ca);
    // TLS turned on or off: the three keys keep their values.
    let reload = Config::default().reload(on.clone()).unwrap();
    assert_eq!(
        (reload.changed.len(), reload.kept.clone()),
        (0, vec!["tls_cert", "tls_key"])
    );
    assert_eq!(reload.config, Config::default());
    let reload = with_ca.reload(Config::default()).unwrap();
    assert_eq!(reload.kept, ["tls_cert", "tls_key", "tls_client_ca"]);
    assert_eq!(reload.config, with_ca);
}

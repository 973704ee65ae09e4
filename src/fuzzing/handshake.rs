//! Fuzzes the HTTP upgrade parser, `handshake::parse_request`, with the default rules (path
//! `/ws`, 8192 header bytes, the default origin patterns).
//!
//! Checks: no panic; the prefix contract of the module: a prefix of the input gives
//! `Partial` or the outcome of the whole input, checked at every line end and a few other
//! split points; an `Upgrade` or `Plain` head length lies within the input.

use std::sync::OnceLock;

use crate::config::Config;
use crate::ws::handshake::{parse_request, write_accept, Outcome, UpgradeRules};
use crate::ws::origin::OriginPolicy;

/// At most this many prefixes are parsed per input.
const MAX_PREFIXES: usize = 96;

fn rules() -> &'static UpgradeRules {
    static RULES: OnceLock<UpgradeRules> = OnceLock::new();
    RULES.get_or_init(|| UpgradeRules {
        path: "/ws".to_string(),
        max_header_bytes: 8192,
        origins: OriginPolicy::new(&Config::default().cors_origins, false),
    })
}

/// The prefix lengths to try: after each `\r` or `\n`, then halves and near-ends.
fn split_points(data: &[u8]) -> Vec<usize> {
    let len = data.len();
    let mut points: Vec<usize> = data
        .iter()
        .enumerate()
        .filter(|(_, b)| matches!(b, b'\r' | b'\n'))
        .map(|(at, _)| at + 1)
        .take(MAX_PREFIXES - 6)
        .collect();
    points.extend([
        0,
        1,
        len / 3,
        len / 2,
        len.saturating_sub(2),
        len.saturating_sub(1),
    ]);
    points.retain(|&at| at < len);
    points.sort_unstable();
    points.dedup();
    points
}

/// Runs one input: returns when it holds, panics when a check fails.
pub fn run(data: &[u8]) {
    let rules = rules();
    let whole = parse_request(data, rules);
    match &whole {
        Outcome::Upgrade {
            accept_key,
            head_len,
        } => {
            assert!(*head_len <= data.len());
            let mut response = Vec::new();
            write_accept(&mut response, accept_key);
            assert!(response.ends_with(b"\r\n\r\n"));
        }
        Outcome::Plain { path, head_len } => {
            assert!(*head_len <= data.len());
            assert_ne!(path, &rules.path);
        }
        Outcome::Partial => assert!(data.len() < rules.max_header_bytes),
        Outcome::Refuse(_) => {}
    }
    for at in split_points(data) {
        let part = parse_request(&data[..at], rules);
        assert!(
            part == Outcome::Partial || part == whole,
            "prefix of {at} bytes gave {part:?}, the whole {} bytes gave {whole:?}",
            data.len()
        );
    }
}

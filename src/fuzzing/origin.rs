//! Fuzzes the `Origin` matcher, `origin::OriginPolicy`. The input's first line is a
//! comma-separated list of patterns, the rest is the origin value (lossy UTF-8).
//!
//! Checks: no panic; a missing origin follows `require_origin`; `*` allows every value; a
//! policy of several patterns allows exactly what one of them alone allows; a valid pattern
//! without `*` allows its own text in any ASCII case; a valid wildcard pattern allows the
//! origin made by putting `x` for each host `*` and `1` for a `:*` port.

use crate::ws::origin::OriginPolicy;

fn policy(patterns: &[&str], require_origin: bool) -> OriginPolicy {
    let patterns: Vec<String> = patterns.iter().map(|p| p.to_string()).collect();
    OriginPolicy::new(&patterns, require_origin)
}

/// Runs one input: returns when it holds, panics when a check fails.
pub fn run(data: &[u8]) {
    let text = String::from_utf8_lossy(data);
    let (first_line, origin) = text.split_once('\n').unwrap_or((&text, ""));
    let patterns: Vec<&str> = first_line.split(',').collect();

    let all = policy(&patterns, false);
    assert!(all.allows(None));
    assert!(!policy(&patterns, true).allows(None));
    let allowed = all.allows(Some(origin));
    let one_allows = patterns
        .iter()
        .any(|p| policy(&[p], false).allows(Some(origin)));
    assert_eq!(allowed, one_allows, "{patterns:?} on {origin:?}");
    assert!(policy(&["*"], true).allows(Some(origin)));
    assert_eq!(all.allows_any(), patterns.iter().any(|p| p.trim() == "*"));

    for pattern in patterns {
        if !OriginPolicy::is_valid_pattern(pattern) {
            continue;
        }
        let pattern = pattern.trim();
        let single = policy(&[pattern], true);
        let instance = if pattern.contains('*') && pattern != "*" {
            let host_only = pattern.strip_suffix(":*").map(|p| format!("{p}:1"));
            host_only.as_deref().unwrap_or(pattern).replace('*', "x")
        } else {
            pattern.to_string()
        };
        assert!(
            single.allows(Some(&instance)),
            "{pattern:?} refuses {instance:?}"
        );
        assert!(single.allows(Some(&instance.to_ascii_uppercase())));
    }
}

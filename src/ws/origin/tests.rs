use super::*;
use crate::testkit::Rng;

fn policy(patterns: &[&str]) -> OriginPolicy {
    let patterns: Vec<String> = patterns.iter().map(|p| p.to_string()).collect();
    OriginPolicy::new(&patterns, false)
}

fn defaults() -> OriginPolicy {
    policy(&["http://localhost:*", "http://127.0.0.1:*"])
}

#[test]
fn defaults_allow_local_origins_with_a_port() {
    let p = defaults();
    assert!(p.allows(Some("http://localhost:3000")));
    assert!(p.allows(Some("http://localhost:1")));
    assert!(p.allows(Some("http://localhost:65535")));
    assert!(p.allows(Some("http://127.0.0.1:8080")));
    assert!(!p.allows_any());
}

#[test]
fn section_7_refusals() {
    let p = defaults();
    assert!(!p.allows(Some("http://localhost:8080.evil.com")));
    assert!(!p.allows(Some("http://localhost.evil.com:3000")));
    assert!(!p.allows(Some("https://localhost:3000")));
    assert!(!p.allows(Some("http://localhost")));
    assert!(!p.allows(Some("http://127.0.0.1")));
}

#[test]
fn path_user_info_query_and_fragment_are_refused() {
    let p = defaults();
    for origin in [
        "http://localhost:3000/",
        "http://localhost:3000/app",
        "http://user@localhost:3000",
        "http://user:pw@localhost:3000",
        "http://localhost:3000?x=1",
        "http://localhost:3000#top",
        "http://evil.com/http://localhost:3000",
        "http://evil.com#@localhost:3000",
    ] {
        assert!(!p.allows(Some(origin)), "{origin}");
    }
}

#[test]
fn missing_origin_depends_on_require_origin() {
    let patterns = vec!["http://localhost:*".to_string()];
    assert!(OriginPolicy::new(&patterns, false).allows(None));
    assert!(!OriginPolicy::new(&patterns, true).allows(None));
    assert!(OriginPolicy::new(&patterns, true).allows(Some("http://localhost:5173")));
    let star = vec!["*".to_string()];
    assert!(!OriginPolicy::new(&star, true).allows(None));
    assert!(OriginPolicy::new(&star, true).allows(Some("null")));
}

#[test]
fn star_allows_everything() {
    let p = policy(&["*"]);
    assert!(p.allows_any());
    for origin in [
        "https://anything.example",
        "null",
        "",
        "garbage",
        "http://x/y",
    ] {
        assert!(p.allows(Some(origin)), "{origin}");
    }
    assert!(p.allows(None));
    assert!(policy(&["http://localhost:*", " * "]).allows_any());
}

#[test]
fn allow_all_allows_everything_even_a_missing_origin() {
    let p = OriginPolicy::allow_all();
    assert!(p.allows_any());
    assert!(p.allows(None));
    assert!(p.allows(Some("null")));
    assert!(p.allows(Some("https://example.com")));
}

#[test]
fn exact_pattern_must_equal_the_origin() {
    let p = policy(&["https://app.example.com"]);
    assert!(p.allows(Some("https://app.example.com")));
    assert!(p.allows(Some("HTTPS://App.Example.COM")));
    assert!(!p.allows(Some("https://app.example.com:443")));
    assert!(!p.allows(Some("https://app.example.com/")));
    assert!(!p.allows(Some("http://app.example.com")));
    assert!(!p.allows(Some("https://x.app.example.com")));
    assert!(!p.allows(Some("https://app.example.com.evil.com")));
    let with_port = policy(&["http://localhost:3000"]);
    assert!(with_port.allows(Some("http://localhost:3000")));
    assert!(!with_port.allows(Some("http://localhost:3001")));
    assert!(!with_port.allows(Some("http://localhost")));
}

#[test]
fn scheme_and_host_ignore_case() {
    let p = defaults();
    assert!(p.allows(Some("HTTP://localhost:3000")));
    assert!(p.allows(Some("http://LocalHost:3000")));
    assert!(policy(&["HTTP://LOCALHOST:*"]).allows(Some("http://localhost:3000")));
}

#[test]
fn ports_must_be_canonical_and_in_range() {
    let p = defaults();
    for origin in [
        "http://localhost:",
        "http://localhost:0",
        "http://localhost:65536",
        "http://localhost:99999999999",
        "http://localhost:03000",
        "http://localhost:+3000",
        "http://localhost:-1",
        "http://localhost:30a0",
        "http://localhost:3000:4000",
        "http://localhost: 3000",
    ] {
        assert!(!p.allows(Some(origin)), "{origin}");
    }
    assert!(!policy(&["http://localhost"]).allows(Some("http://localhost:")));
}

#[test]
fn malformed_origins_are_refused() {
    let p = defaults();
    for origin in [
        "null",
        "",
        " ",
        "localhost:3000",
        "//localhost:3000",
        "http:/localhost:3000",
        "http://:3000",
        "http://",
        "3http://localhost:3000",
        "http://local host:3000",
        "http://localhost:3000 ",
        " http://localhost:3000",
        "http://local%68ost:3000",
        "http://lócalhost:3000",
        "http://local_host:3000",
        "http://localhost\r\n:3000",
    ] {
        assert!(!p.allows(Some(origin)), "{origin:?}");
    }
}

#[test]
fn null_origin_is_only_allowed_by_star() {
    assert!(!defaults().allows(Some("null")));
    assert!(!policy(&["null"]).allows(Some("null")));
    assert!(!OriginPolicy::is_valid_pattern("null"));
    assert!(policy(&["*"]).allows(Some("null")));
}

#[test]
fn star_in_the_host_matches_host_characters_only() {
    let p = policy(&["https://*.example.com"]);
    assert!(p.allows(Some("https://a.example.com")));
    assert!(p.allows(Some("https://a-b.c.example.com")));
    assert!(p.allows(Some("https://A.EXAMPLE.com")));
    assert!(!p.allows(Some("https://example.com")));
    assert!(!p.allows(Some("https://a.example.com:443")));
    assert!(!p.allows(Some("https://a_b.example.com")));
    assert!(!p.allows(Some("https://a.example.com.evil.com")));
    assert!(!p.allows(Some("https://evil.com/.example.com")));
    assert!(!p.allows(Some("https://evil.com?.example.com")));
    assert!(!p.allows(Some("https://evil.com#.example.com")));
    assert!(!p.allows(Some("https://evil.com@a.example.com")));
    assert!(!p.allows(Some("http://a.example.com")));
}

#[test]
fn several_stars_and_partial_stars() {
    let p = policy(&["http://*-*.example.com:*", "http://dev*:8080"]);
    assert!(p.allows(Some("http://a-b.example.com:1")));
    assert!(p.allows(Some("http://a-b-c.example.com:1")));
    assert!(!p.allows(Some("http://ab.example.com:1")));
    assert!(p.allows(Some("http://dev:8080")));
    assert!(p.allows(Some("http://dev.local:8080")));
    assert!(!p.allows(Some("http://dev.local:8081")));
    assert!(!p.allows(Some("http://dev.local")));
    let any_host = policy(&["http://*:*"]);
    assert!(any_host.allows(Some("http://example.com:80")));
    assert!(!any_host.allows(Some("http://example.com")));
    assert!(!any_host.allows(Some("http://[::1]:80")));
}

#[test]
fn numeric_port_in_a_wildcard_pattern() {
    let p = policy(&["http://*.local:8080"]);
    assert!(p.allows(Some("http://box.local:8080")));
    assert!(!p.allows(Some("http://box.local:8081")));
    assert!(!p.allows(Some("http://box.local")));
}

#[test]
fn ipv6_literals() {
    let p = policy(&["http://[::1]:*"]);
    assert!(p.allows(Some("http://[::1]:3000")));
    assert!(!p.allows(Some("http://[::1]")));
    assert!(!p.allows(Some("http://[::2]:3000")));
    assert!(!p.allows(Some("http://[::1]x:3000")));
    assert!(!p.allows(Some("http://[::1:3000")));
    assert!(!p.allows(Some("http://[]:3000")));
    assert!(!defaults().allows(Some("http://[::1]:3000")));
    assert!(policy(&["http://[::1]:8080"]).allows(Some("http://[::1]:8080")));
}

#[test]
fn invalid_patterns_never_match() {
    for pattern in [
        "",
        "   ",
        "*://localhost:3000",
        "http://localhost:*/",
        "http://localhost:8*",
        "http://localhost:",
        "http://localhost:0",
        "localhost:*",
        "http://*@localhost:*",
        "http://*/x",
        "http://lo_cal*:*",
        "http://[*]:*",
        "**",
    ] {
        assert!(!OriginPolicy::is_valid_pattern(pattern), "{pattern:?}");
    }
    let p = policy(&[
        "*://localhost:3000",
        "http://localhost:8*",
        "http://localhost:*/",
    ]);
    assert!(!p.allows_any());
    assert!(!p.allows(Some("http://localhost:3000")));
    assert!(!p.allows(Some("http://localhost:80")));
    assert!(!p.allows(Some("http://localhost:3000/")));
}

#[test]
fn valid_patterns() {
    for pattern in [
        "*",
        " http://localhost:* ",
        "http://127.0.0.1:*",
        "https://*.example.com",
        "https://app.example.com",
        "http://localhost:3000",
        "http://[::1]:*",
        "app+x.v-1://host",
    ] {
        assert!(OriginPolicy::is_valid_pattern(pattern), "{pattern:?}");
    }
    assert!(policy(&[" http://localhost:* "]).allows(Some("http://localhost:1")));
}

#[test]
fn long_hosts_do_not_blow_up() {
    let p = policy(&["http://*.*.*.*:*"]);
    let host = "a.".repeat(3000) + "b";
    assert!(p.allows(Some(&format!("http://{host}:1"))));
    let bad = "a.".repeat(3000) + "_";
    assert!(!p.allows(Some(&format!("http://{bad}:1"))));
}

/// Seeded byte soup: random patterns and origins built from the characters that matter
/// to the matcher. Nothing may panic; `*` allows every origin given; an exact valid
/// pattern allows its own text.
#[test]
fn byte_soup() {
    const PIECES: [&str; 18] = [
        "http",
        "https",
        "://",
        "*",
        ":",
        "*",
        ".",
        "-",
        "localhost",
        "127.0.0.1",
        "[::1]",
        "/",
        "?",
        "#",
        "@",
        "8080",
        "65536",
        "\u{e9}",
    ];
    let mut rng = Rng::new(0x9e37_79b9_7f4a_7c15);
    for _ in 0..20_000 {
        let make = |rng: &mut Rng| {
            let parts = rng.below(8);
            (0..parts).map(|_| *rng.pick(&PIECES)).collect::<String>()
        };
        let pattern = make(&mut rng);
        let origin = make(&mut rng);
        let p = policy(&[pattern.as_str()]);
        let allowed = p.allows(Some(&origin));
        if pattern == "*" {
            assert!(allowed, "{origin:?}");
        }
        if !pattern.contains('*') && OriginPolicy::is_valid_pattern(&pattern) {
            assert!(p.allows(Some(&pattern)), "{pattern:?}");
        }
        assert!(policy(&["*"]).allows(Some(&origin)));
    }
}

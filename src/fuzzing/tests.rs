//! Every committed seed of every target (`fuzz/corpus-seeds/TARGET/`) runs through its body.

use std::path::Path;

fn run_seeds(target: &str, run: fn(&[u8])) {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("fuzz/corpus-seeds")
        .join(target);
    let mut seeds = 0;
    for entry in std::fs::read_dir(&dir).expect("the seed folder exists") {
        let path = entry.expect("a readable seed folder").path();
        run(&std::fs::read(&path).expect("a readable seed"));
        seeds += 1;
    }
    assert!(seeds > 0, "no seeds in {}", dir.display());
}

#[test]
fn handshake_seeds() {
    run_seeds("handshake", super::handshake::run);
}

#[test]
fn origin_seeds() {
    run_seeds("origin", super::origin::run);
}

#[test]
fn codec_seeds() {
    run_seeds("codec", super::codec::run);
}

#[test]
fn dispatch_seeds() {
    run_seeds("dispatch", super::dispatch::run);
}

#[test]
fn config_seeds() {
    run_seeds("config", super::config::run);
}

#[test]
fn resp_seeds() {
    run_seeds("resp", super::resp::run);
}

#[cfg(feature = "tls")]
#[test]
fn tls_seeds() {
    run_seeds("tls", super::tls::run);
}

#[test]
fn json_seeds() {
    run_seeds("json", super::json::run);
}

/// The JSON walk also reads every other target's seeds.
#[test]
fn json_reads_every_seed() {
    for target in [
        "handshake",
        "origin",
        "codec",
        "dispatch",
        "config",
        "json",
        "resp",
    ] {
        run_seeds(target, super::json::run);
    }
}

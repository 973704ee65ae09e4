//! The `config` target: its input, its checks and its seeds are in `gateway::fuzzing::config`
//! (`src/fuzzing/config.rs`), where the ordinary test suite also runs every committed seed.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| gateway::fuzzing::config::run(data));

//! The `tls` target: its input, its checks and its seeds are in `gateway::fuzzing::tls`
//! (`src/fuzzing/tls.rs`), where the ordinary test suite also runs every committed seed.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| gateway::fuzzing::tls::run(data));

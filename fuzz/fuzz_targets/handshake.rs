//! The `handshake` target: its input, its checks and its seeds are in `gateway::fuzzing::handshake`
//! (`src/fuzzing/handshake.rs`), where the ordinary test suite also runs every committed seed.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| gateway::fuzzing::handshake::run(data));

//! The `dispatch` target: its input, its checks and its seeds are in `gateway::fuzzing::dispatch`
//! (`src/fuzzing/dispatch.rs`), where the ordinary test suite also runs every committed seed.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| gateway::fuzzing::dispatch::run(data));

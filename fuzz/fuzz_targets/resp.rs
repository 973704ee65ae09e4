//! The `resp` target: its input, its checks and its seeds are in `gateway::fuzzing::resp`
//! (`src/fuzzing/resp.rs`), where the ordinary test suite also runs every committed seed.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| gateway::fuzzing::resp::run(data));

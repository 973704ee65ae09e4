//! The fuzz targets' bodies, one module per target, built only with `--cfg fuzzing` (which
//! `cargo fuzz` sets) and in the crate's own tests. They live in the crate so that they can
//! reach its internals without making those public API; `fuzz/fuzz_targets/*.rs` only hands
//! libFuzzer's input to [`handshake::run`], [`origin::run`], [`codec::run`],
//! [`dispatch::run`], [`config::run`], [`json::run`], [`resp::run`] and `tls::run` (with the
//! `tls` feature). `fuzz/README.md` says how
//! to run them.

pub mod codec;
pub mod config;
pub mod dispatch;
pub mod handshake;
pub mod json;
pub mod origin;
pub mod resp;
#[cfg(feature = "tls")]
pub mod tls;

#[cfg(test)]
mod tests;

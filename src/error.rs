//! The errors the library returns. Each variant says what the caller does next.
//!
//! Nothing a peer sends becomes an `Error`: bad input closes that peer's connection. These
//! are the failures of the gateway itself.

use std::fmt;
use std::io;

use crate::config::ConfigError;

/// A failure of the gateway as a whole.
#[derive(Debug)]
#[non_exhaustive]
pub enum Error {
    /// The configuration is invalid. Fix the file or the `--set` named in the message; the
    /// binary exits with status 2.
    Config(ConfigError),
    /// Could not listen on `addr` (in use, not an address of this host, no permission).
    /// Choose another `host`/`port` or free the port.
    Bind {
        /// The address asked for.
        addr: String,
        /// The operating system's error.
        source: io::Error,
    },
    /// [`Gateway::register_handler`](crate::Gateway::register_handler) was given a type the
    /// gateway handles itself (PROTOCOL sections 5 and 6), or the empty type; nothing was
    /// registered. Pick a type of your own.
    BuiltInType(String),
    /// The poll loop itself failed (an OS error on the poll, not on one socket). The gateway
    /// cannot go on: drop it and start a new one.
    Io(io::Error),
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::Config(e) => write!(f, "{e}"),
            Error::Bind { addr, source } => write!(f, "cannot listen on {addr}: {source}"),
            Error::BuiltInType(t) => {
                write!(
                    f,
                    "{t:?} is a built-in message type and cannot get a handler"
                )
            }
            Error::Io(e) => write!(f, "event loop failed: {e}"),
        }
    }
}

impl std::error::Error for Error {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            Error::Config(e) => Some(e),
            Error::Bind { source, .. } => Some(source),
            Error::BuiltInType(_) => None,
            Error::Io(e) => Some(e),
        }
    }
}

impl From<ConfigError> for Error {
    fn from(e: ConfigError) -> Self {
        Error::Config(e)
    }
}

impl From<io::Error> for Error {
    fn from(e: io::Error) -> Self {
        Error::Io(e)
    }
}

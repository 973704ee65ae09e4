//! The listening socket's backlog, widened once at bind. Accepting from it is `accept.rs`.

use std::io;

use mio::net::TcpListener;

/// Connections the kernel may hold for `accept` (capped by `net.core.somaxconn`). mio and the
/// standard library listen with 128: a burst of clients reconnecting at once overflows that,
/// and each overflowed SYN waits a second to be retransmitted.
const LISTEN_BACKLOG: i32 = 4096;
/// Raise the listen backlog of a bound listener to [`LISTEN_BACKLOG`]: calling `listen` again
/// on a listening socket sets its backlog.
#[cfg(unix)]
pub(super) fn widen_backlog(listener: &TcpListener) -> io::Result<()> {
    use std::os::unix::io::AsRawFd;
    // SAFETY: `listen` takes a descriptor and an integer; the descriptor is the listener's own
    // and stays open for the duration of the call.
    if unsafe { libc::listen(listener.as_raw_fd(), LISTEN_BACKLOG) } == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

#[cfg(not(unix))]
pub(super) fn widen_backlog(_listener: &TcpListener) -> io::Result<()> {
    Ok(())
}

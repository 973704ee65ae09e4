//! The listening socket: bound once at [`Reactor::bind`](super::Reactor::bind), with a wide
//! backlog, and with `SO_REUSEPORT` when asked, so that several processes (or loops) share
//! one port and the kernel spreads the connections between them. Accepting from it is
//! `accept.rs`.

use std::io;
use std::net::SocketAddr;

use mio::net::TcpListener;

/// Connections the kernel may hold for `accept` (capped by `net.core.somaxconn`). mio and the
/// standard library listen with 128: a burst of clients reconnecting at once overflows that,
/// and each overflowed SYN waits a second to be retransmitted.
const LISTEN_BACKLOG: i32 = 4096;

/// A nonblocking listener on `addr` with a backlog of [`LISTEN_BACKLOG`], bound with
/// `SO_REUSEPORT` (and `SO_REUSEADDR`) when `reuse_port` is set.
pub(super) fn bind(addr: SocketAddr, reuse_port: bool) -> io::Result<TcpListener> {
    if reuse_port {
        return bind_reuse_port(addr);
    }
    let listener = TcpListener::bind(addr)?;
    widen_backlog(&listener)?;
    Ok(listener)
}

/// Raise the listen backlog of a bound listener to [`LISTEN_BACKLOG`]: calling `listen` again
/// on a listening socket sets its backlog.
#[cfg(unix)]
fn widen_backlog(listener: &TcpListener) -> io::Result<()> {
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
fn widen_backlog(_listener: &TcpListener) -> io::Result<()> {
    Ok(())
}

/// The socket made by hand, since the standard library binds before an option can be set:
/// `socket`, `SO_REUSEADDR` + `SO_REUSEPORT`, `bind`, `listen`, then nonblocking.
#[cfg(unix)]
fn bind_reuse_port(addr: SocketAddr) -> io::Result<TcpListener> {
    use std::os::fd::{FromRawFd, OwnedFd};

    let domain = match addr {
        SocketAddr::V4(_) => libc::AF_INET,
        SocketAddr::V6(_) => libc::AF_INET6,
    };
    #[cfg(any(target_os = "linux", target_os = "android"))]
    let kind = libc::SOCK_STREAM | libc::SOCK_CLOEXEC;
    #[cfg(not(any(target_os = "linux", target_os = "android")))]
    let kind = libc::SOCK_STREAM;
    // SAFETY: `socket` takes three integers and returns a new descriptor or -1.
    let raw = unsafe { libc::socket(domain, kind, 0) };
    if raw < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: `raw` is a descriptor just opened that nothing else owns; `fd` closes it on
    // every early return below.
    let fd = unsafe { OwnedFd::from_raw_fd(raw) };
    #[cfg(not(any(target_os = "linux", target_os = "android")))]
    // SAFETY: `fcntl` on the descriptor `fd` owns, which stays open for the call.
    check(unsafe { libc::fcntl(raw, libc::F_SETFD, libc::FD_CLOEXEC) })?;
    set_flag(&fd, libc::SO_REUSEADDR)?;
    set_flag(&fd, libc::SO_REUSEPORT)?;
    bind_to(&fd, addr)?;
    // SAFETY: `listen` takes the descriptor `fd` owns, open for the call, and an integer.
    check(unsafe { libc::listen(raw, LISTEN_BACKLOG) })?;
    let listener = std::net::TcpListener::from(fd);
    listener.set_nonblocking(true)?;
    Ok(TcpListener::from_std(listener))
}

#[cfg(not(unix))]
fn bind_reuse_port(_addr: SocketAddr) -> io::Result<TcpListener> {
    Err(io::Error::new(
        io::ErrorKind::Unsupported,
        "reuse_port needs SO_REUSEPORT (a Unix system)",
    ))
}

/// `Ok` for a system call's 0, the OS error for its -1.
#[cfg(unix)]
fn check(rc: libc::c_int) -> io::Result<()> {
    if rc < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(())
    }
}

/// Turn the socket-level boolean `option` on.
#[cfg(unix)]
fn set_flag(fd: &std::os::fd::OwnedFd, option: libc::c_int) -> io::Result<()> {
    use std::os::fd::AsRawFd;
    let on: libc::c_int = 1;
    // SAFETY: the value points at a `c_int` that lives for the call, and its size is passed;
    // the descriptor is `fd`'s, open for the call.
    check(unsafe {
        libc::setsockopt(
            fd.as_raw_fd(),
            libc::SOL_SOCKET,
            option,
            (&on as *const libc::c_int).cast(),
            std::mem::size_of::<libc::c_int>() as libc::socklen_t,
        )
    })
}

/// `bind` the socket to `addr`, IPv4 or IPv6.
#[cfg(unix)]
fn bind_to(fd: &std::os::fd::OwnedFd, addr: SocketAddr) -> io::Result<()> {
    match addr {
        SocketAddr::V4(v4) => {
            // SAFETY: all zeroes is a valid `sockaddr_in` (and fills the fields some systems
            // add, such as `sin_len` and `sin_zero`).
            let mut sin: libc::sockaddr_in = unsafe { std::mem::zeroed() };
            sin.sin_family = libc::AF_INET as libc::sa_family_t;
            sin.sin_port = v4.port().to_be();
            sin.sin_addr = libc::in_addr {
                s_addr: u32::from_ne_bytes(v4.ip().octets()),
            };
            bind_raw(fd, &sin)
        }
        SocketAddr::V6(v6) => {
            // SAFETY: all zeroes is a valid `sockaddr_in6`.
            let mut sin6: libc::sockaddr_in6 = unsafe { std::mem::zeroed() };
            sin6.sin6_family = libc::AF_INET6 as libc::sa_family_t;
            sin6.sin6_port = v6.port().to_be();
            sin6.sin6_flowinfo = v6.flowinfo();
            sin6.sin6_addr = libc::in6_addr {
                s6_addr: v6.ip().octets(),
            };
            sin6.sin6_scope_id = v6.scope_id();
            bind_raw(fd, &sin6)
        }
    }
}

/// `bind` with the socket address `sa` (a `sockaddr_in` or `sockaddr_in6`).
#[cfg(unix)]
fn bind_raw<T>(fd: &std::os::fd::OwnedFd, sa: &T) -> io::Result<()> {
    use std::os::fd::AsRawFd;
    // SAFETY: `sa` points at a whole socket address of the size passed, alive for the call;
    // the descriptor is `fd`'s, open for the call.
    check(unsafe {
        libc::bind(
            fd.as_raw_fd(),
            (sa as *const T).cast(),
            std::mem::size_of::<T>() as libc::socklen_t,
        )
    })
}

#[cfg(all(test, unix))]
mod tests {
    use super::*;
    use std::time::{Duration, Instant};

    /// Connect to `addr` until each of `listeners` has accepted a connection, or the deadline.
    fn each_accepts(listeners: &[TcpListener], addr: SocketAddr) -> bool {
        let mut accepted = vec![false; listeners.len()];
        let mut clients = Vec::new();
        let deadline = Instant::now() + Duration::from_secs(10);
        while accepted.contains(&false) && Instant::now() < deadline {
            clients.push(std::net::TcpStream::connect(addr).expect("connect"));
            // The connection is in one of the accept queues once `connect` returned.
            for (listener, got) in listeners.iter().zip(&mut accepted) {
                while listener.accept().is_ok() {
                    *got = true;
                }
            }
            clients.truncate(64); // keep descriptors bounded; the first ones stay open
        }
        !accepted.contains(&false)
    }

    #[test]
    fn reuse_port_lets_two_listeners_share_a_port_and_both_accept() {
        for any in ["127.0.0.1:0", "[::1]:0"] {
            let Ok(first) = bind(any.parse().unwrap(), true) else {
                assert!(any.starts_with('['), "IPv4 loopback binds");
                continue; // no IPv6 here
            };
            let addr = first.local_addr().expect("addr");
            assert_ne!(addr.port(), 0);
            let second = bind(addr, true).expect("a second listener on the same port");
            assert_eq!(second.local_addr().expect("addr"), addr);
            assert!(each_accepts(&[first, second], addr), "both accept ({any})");
        }
    }

    #[test]
    fn without_reuse_port_the_second_bind_is_refused() {
        let first = bind("127.0.0.1:0".parse().unwrap(), false).expect("bind");
        let addr = first.local_addr().expect("addr");
        for reuse_port in [false, true] {
            let err = bind(addr, reuse_port).expect_err("the port is taken");
            assert_eq!(err.kind(), io::ErrorKind::AddrInUse, "{reuse_port}: {err}");
        }
        let shared = bind("127.0.0.1:0".parse().unwrap(), true).expect("bind");
        let err = bind(shared.local_addr().expect("addr"), false).expect_err("taken");
        assert_eq!(err.kind(), io::ErrorKind::AddrInUse);
    }
}

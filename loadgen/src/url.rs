//! Where to connect: a parsed `ws://` URL and the token, and the nonblocking connect to it,
//! from several loopback source addresses when asked.

use std::io;
use std::net::{SocketAddr, ToSocketAddrs};

use mio::net::TcpStream;

/// A parsed `ws://host:port/path` URL.
#[derive(Clone, Debug)]
pub struct WsUrl {
    /// Host as written (for the `Host` header).
    pub host: String,
    /// Port (80 when absent).
    pub port: u16,
    /// Path and query, at least `/`.
    pub path: String,
    /// The resolved address.
    pub addr: SocketAddr,
}

impl WsUrl {
    /// Parse and resolve `url`; only `ws://` is supported.
    pub fn parse(url: &str) -> Result<WsUrl, String> {
        let rest = url
            .strip_prefix("ws://")
            .ok_or_else(|| format!("{url}: only ws:// URLs are supported"))?;
        let (authority, path) = match rest.find('/') {
            Some(i) => (&rest[..i], &rest[i..]),
            None => (rest, "/"),
        };
        let (host, port) = if let Some(v6) = authority.strip_prefix('[') {
            let end = v6
                .find(']')
                .ok_or_else(|| format!("{url}: bad IPv6 host"))?;
            let port = match v6[end + 1..].strip_prefix(':') {
                Some(p) => p.parse().map_err(|_| format!("{url}: bad port"))?,
                None => 80,
            };
            (&v6[..end], port)
        } else {
            match authority.rsplit_once(':') {
                Some((h, p)) => (h, p.parse().map_err(|_| format!("{url}: bad port"))?),
                None => (authority, 80),
            }
        };
        let addr = (host, port)
            .to_socket_addrs()
            .map_err(|e| format!("{url}: cannot resolve {host}: {e}"))?
            .next()
            .ok_or_else(|| format!("{url}: {host} has no address"))?;
        Ok(WsUrl {
            host: host.to_string(),
            port,
            path: path.to_string(),
            addr,
        })
    }

    pub(crate) fn host_header(&self) -> String {
        if self.host.contains(':') {
            format!("[{}]:{}", self.host, self.port)
        } else {
            format!("{}:{}", self.host, self.port)
        }
    }
}

/// Where to connect and how to authenticate.
#[derive(Clone, Debug)]
pub struct Target {
    /// The endpoint.
    pub url: WsUrl,
    /// The `auth` token.
    pub token: String,
    /// Connect from this many loopback source addresses (127.0.0.1, .2, ...) in turn; 1 lets
    /// the kernel choose. With one source address, `connect()` searches ever longer for a free
    /// ephemeral port once ~14 000 are taken, and the client, not the server, sets the pace.
    pub sources: u8,
}

impl Target {
    /// A target for `url` with `token`, connecting from one source address.
    pub fn new(url: &str, token: &str) -> Result<Target, String> {
        Ok(Target {
            url: WsUrl::parse(url)?,
            token: token.to_string(),
            sources: 1,
        })
    }

    /// The same target, connecting from `sources` loopback addresses (only for a loopback
    /// IPv4 target on Linux; elsewhere the kernel chooses).
    pub fn with_sources(mut self, sources: u8) -> Target {
        self.sources = sources.max(1);
        self
    }

    /// Start a nonblocking connection, the `n`th of this target.
    pub(crate) fn connect(&self, n: usize) -> io::Result<TcpStream> {
        match self.url.addr {
            SocketAddr::V4(dst) if self.sources > 1 && dst.ip().is_loopback() => {
                let src = std::net::Ipv4Addr::new(127, 0, 0, 1 + (n % self.sources as usize) as u8);
                connect_from(src, dst)
            }
            addr => TcpStream::connect(addr),
        }
    }
}

/// A nonblocking connection from `src` to `dst`. `IP_BIND_ADDRESS_NO_PORT` defers the choice
/// of the source port to `connect()`, which then picks it for the whole 4-tuple.
#[cfg(target_os = "linux")]
fn connect_from(src: std::net::Ipv4Addr, dst: std::net::SocketAddrV4) -> io::Result<TcpStream> {
    use std::os::fd::FromRawFd;

    fn sockaddr(ip: std::net::Ipv4Addr, port: u16) -> libc::sockaddr_in {
        libc::sockaddr_in {
            sin_family: libc::AF_INET as libc::sa_family_t,
            sin_port: port.to_be(),
            sin_addr: libc::in_addr {
                s_addr: u32::from(ip).to_be(),
            },
            sin_zero: [0; 8],
        }
    }
    fn check(rc: libc::c_int) -> io::Result<()> {
        if rc == 0 {
            Ok(())
        } else {
            Err(io::Error::last_os_error())
        }
    }
    let len = std::mem::size_of::<libc::sockaddr_in>() as libc::socklen_t;
    let from = sockaddr(src, 0);
    let to = sockaddr(*dst.ip(), dst.port());
    let one: libc::c_int = 1;
    // SAFETY: plain socket calls on a descriptor this function owns from the moment it exists
    // (`stream` closes it on every return path); every pointer is to a local that outlives
    // the call, with the length of its type.
    unsafe {
        let fd = libc::socket(
            libc::AF_INET,
            libc::SOCK_STREAM | libc::SOCK_NONBLOCK | libc::SOCK_CLOEXEC,
            0,
        );
        if fd < 0 {
            return Err(io::Error::last_os_error());
        }
        let stream = std::net::TcpStream::from_raw_fd(fd);
        check(libc::setsockopt(
            fd,
            libc::IPPROTO_IP,
            libc::IP_BIND_ADDRESS_NO_PORT,
            (&one as *const libc::c_int).cast(),
            std::mem::size_of::<libc::c_int>() as libc::socklen_t,
        ))?;
        check(libc::bind(
            fd,
            (&from as *const libc::sockaddr_in).cast(),
            len,
        ))?;
        if let Err(e) = check(libc::connect(
            fd,
            (&to as *const libc::sockaddr_in).cast(),
            len,
        )) {
            if e.raw_os_error() != Some(libc::EINPROGRESS) {
                return Err(e);
            }
        }
        Ok(TcpStream::from_std(stream))
    }
}

#[cfg(not(target_os = "linux"))]
fn connect_from(_src: std::net::Ipv4Addr, dst: std::net::SocketAddrV4) -> io::Result<TcpStream> {
    TcpStream::connect(SocketAddr::V4(dst))
}

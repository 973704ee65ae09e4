//! Outbound TCP links ([`LinkId`]s the app opens, e.g. to a broker): one socket each, its
//! connect, its readiness latches and its outbox, and the table of them. When the loop drives
//! them, and what it tells the app, is `links.rs`.
//!
//! Contract:
//! - A link's socket is connected without blocking and registered once, READABLE | WRITABLE,
//!   edge-triggered, with the token [`link_token`] makes of its id and its generation. The
//!   generation of an id is bumped whenever its link is removed, so an event for a link that
//!   was closed (or closed and opened again under the same id) finds nothing.
//! - Link tokens lie in the slot indices no connection is given (`slots.rs`,
//!   `RESERVED_INDEX`), so they never name a connection, and a connection's never names a
//!   link.
//! - The connect is done once the first writable edge finds neither a socket error nor an
//!   unconnected peer ([`Link::finish_connect`], the procedure of mio's `TcpStream::connect`).
//! - Latches as for connections (`connection.rs`): set by events, cleared on `WouldBlock`;
//!   a link is read until `WouldBlock` (no short-read rule: there are a few of them).
//! - Bytes queued before the connect completes wait in the outbox; writes are partial, from
//!   an offset (`outbox.rs`). Nothing here panics on an I/O result.

use std::io::{self, Read};
use std::net::SocketAddr;

use mio::net::TcpStream;
use mio::Token;

use crate::app::{ConnId, LinkId};
use crate::transport::connection::ReadResult;
use crate::transport::outbox::{BufferPool, FrameArena, Outbox};

use super::slots::{id_of, token_of, RESERVED_INDEX};

/// The slot index of link 0's token; link `n` has `LINK_INDEX + n` (in the reserved range).
const LINK_INDEX: u32 = RESERVED_INDEX;

/// The token registered for link `id` in generation `generation`.
pub(super) fn link_token(id: LinkId, generation: u32) -> Token {
    token_of(ConnId {
        index: LINK_INDEX + u32::from(id.0),
        generation,
    })
}

/// The link and generation a token was registered for, if it is a link's token (it may be
/// stale).
fn link_of(token: Token) -> Option<(LinkId, u32)> {
    let id = id_of(token);
    let n = id.index.checked_sub(LINK_INDEX)?;
    Some((LinkId(u8::try_from(n).ok()?), id.generation))
}

/// One outbound link.
#[derive(Debug)]
pub(super) struct Link {
    /// The socket (nonblocking, registered once: READABLE | WRITABLE).
    pub(super) socket: TcpStream,
    /// The generation of its id when it was opened.
    pub(super) generation: u32,
    /// The connect has completed ([`Link::finish_connect`]).
    pub(super) open: bool,
    /// Readable latch.
    pub(super) readable: bool,
    /// Writable latch; while connecting, the edge that may end the connect.
    pub(super) writable: bool,
    /// Bytes waiting to be written, in order (never a range of the frame arena).
    pub(super) outbox: Outbox,
}

impl Link {
    /// Begin connecting to `addr`, without blocking, with `TCP_NODELAY` set.
    pub(super) fn connect(addr: SocketAddr, generation: u32) -> io::Result<Link> {
        let socket = TcpStream::connect(addr)?;
        if let Err(e) = socket.set_nodelay(true) {
            log::debug!("link to {addr}: TCP_NODELAY not set: {e}");
        }
        Ok(Link {
            socket,
            generation,
            open: false,
            readable: false,
            writable: false,
            outbox: Outbox::default(),
        })
    }

    /// Whether the loop has something to do for it now: end its connect, read, or write.
    pub(super) fn has_work(&self) -> bool {
        if !self.open {
            return self.writable;
        }
        self.readable || (self.writable && self.outbox.pending() > 0)
    }

    /// After a writable edge of a connecting link: `Ok(true)` when it is connected,
    /// `Ok(false)` when not yet (the latch is cleared: wait for the next edge), an error when
    /// the connect failed.
    pub(super) fn finish_connect(&mut self) -> io::Result<bool> {
        if let Some(e) = self.socket.take_error()? {
            return Err(e);
        }
        match self.socket.peer_addr() {
            Ok(_) => {
                self.open = true;
                Ok(true)
            }
            Err(e) if is_not_connected_yet(&e) => {
                self.writable = false;
                Ok(false)
            }
            Err(e) => Err(e),
        }
    }

    /// One read into `buf`; `WouldBlock` clears the readable latch.
    pub(super) fn read_into(&mut self, buf: &mut [u8]) -> ReadResult {
        loop {
            match self.socket.read(buf) {
                Ok(0) => return ReadResult::Eof,
                Ok(n) => return ReadResult::Data(n),
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    self.readable = false;
                    return ReadResult::WouldBlock;
                }
                Err(e) => return ReadResult::Failed(e),
            }
        }
    }

    /// Queue `bytes` after everything queued.
    pub(super) fn queue(&mut self, pool: &mut BufferPool, arena: &FrameArena, bytes: &[u8]) {
        self.outbox
            .append(pool, arena, |buf| buf.extend_from_slice(bytes));
    }

    /// Write what the socket takes of the outbox; `WouldBlock` clears the writable latch.
    /// Returns the bytes written.
    pub(super) fn flush(&mut self, pool: &mut BufferPool, arena: &FrameArena) -> io::Result<usize> {
        let written = self.outbox.write_to(&mut self.socket, arena)?;
        if written.blocked {
            self.writable = false;
        }
        self.outbox.release_if_empty(pool);
        Ok(written.bytes)
    }
}

/// Whether `peer_addr` failed only because the connect is still under way.
fn is_not_connected_yet(e: &io::Error) -> bool {
    e.kind() == io::ErrorKind::NotConnected
        || (cfg!(unix) && e.raw_os_error() == Some(libc::EINPROGRESS))
}

/// The links, by id, each with the generation of its id.
#[derive(Debug, Default)]
pub(super) struct Links {
    /// Indexed by `LinkId.0`; grown to the largest id used.
    slots: Vec<Option<Link>>,
    /// Generation of each id ever used, bumped when its link is removed.
    generations: Vec<u32>,
    /// Links whose connect failed at once (before any event), to report in the next pump.
    pub(super) failed: Vec<(LinkId, String)>,
}

impl Links {
    /// One more than the largest id used so far: every link's id is below it.
    pub(super) fn len(&self) -> usize {
        self.slots.len()
    }

    /// The generation the next link opened under `id` gets.
    pub(super) fn generation(&mut self, id: LinkId) -> u32 {
        let index = usize::from(id.0);
        if index >= self.generations.len() {
            self.generations.resize(index + 1, 0);
            self.slots.resize_with(index + 1, || None);
        }
        self.generations[index]
    }

    /// Put `link` under `id`, whose slot is empty (see [`Links::remove`]) and whose
    /// generation `link` carries.
    pub(super) fn insert(&mut self, id: LinkId, link: Link) {
        let index = usize::from(id.0);
        debug_assert_eq!(self.generation(id), link.generation);
        self.slots[index] = Some(link);
    }

    /// The link open under `id`.
    pub(super) fn get_mut(&mut self, id: LinkId) -> Option<&mut Link> {
        self.slots.get_mut(usize::from(id.0))?.as_mut()
    }

    /// The link `token` was registered for; `None` when it is not a link's token or a stale
    /// one.
    pub(super) fn by_token_mut(&mut self, token: Token) -> Option<&mut Link> {
        let (id, generation) = link_of(token)?;
        self.get_mut(id)
            .filter(|link| link.generation == generation)
    }

    /// Whether `token` is a link's token, stale or not.
    pub(super) fn is_link_token(token: Token) -> bool {
        link_of(token).is_some()
    }

    /// Take the link out of `id` and bump the id's generation, so that every event for it is
    /// stale from now on. Forgets a failure of `id` not yet reported, too.
    pub(super) fn remove(&mut self, id: LinkId) -> Option<Link> {
        self.failed.retain(|(failed, _)| *failed != id);
        let index = usize::from(id.0);
        let link = self.slots.get_mut(index)?.take()?;
        self.generations[index] = self.generations[index].wrapping_add(1);
        Some(link)
    }

    /// Whether any link has work now, or a failure waits to be reported.
    pub(super) fn busy(&self) -> bool {
        !self.failed.is_empty() || self.slots.iter().flatten().any(Link::has_work)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn a_link(links: &mut Links, id: LinkId, to: SocketAddr) -> Token {
        let generation = links.generation(id);
        links.insert(id, Link::connect(to, generation).expect("connect"));
        link_token(id, generation)
    }

    #[test]
    fn a_stale_token_finds_nothing_and_no_link_token_is_a_connections() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        let to = listener.local_addr().expect("addr");
        let mut links = Links::default();
        let old = a_link(&mut links, LinkId(3), to);
        assert!(links.by_token_mut(old).is_some());
        assert!(links.remove(LinkId(3)).is_some());
        assert!(links.by_token_mut(old).is_none(), "closed");
        let new = a_link(&mut links, LinkId(3), to);
        assert_ne!(old, new);
        assert!(links.by_token_mut(old).is_none(), "stale after the reopen");
        assert_eq!(links.by_token_mut(new).map(|l| l.generation), Some(1));
        assert!(links.by_token_mut(link_token(LinkId(4), 1)).is_none());
        for id in [0, 1, 255] {
            let token = link_token(LinkId(id), u32::MAX);
            assert!(id_of(token).index >= RESERVED_INDEX);
            assert_eq!(link_of(token), Some((LinkId(id), u32::MAX)));
        }
        // A connection's token is no link's, and the loop's own tokens are in the range.
        let conn = token_of(ConnId {
            index: RESERVED_INDEX - 1,
            generation: 7,
        });
        assert!(!Links::is_link_token(conn));
        for own in [
            super::super::LISTENER,
            super::super::WAKER,
            super::super::SIGNALS,
        ] {
            assert!(id_of(own).index >= RESERVED_INDEX + 256, "{own:?}");
        }
    }

    #[test]
    fn a_failure_not_yet_reported_goes_with_a_close() {
        let mut links = Links::default();
        links.failed.push((LinkId(1), "connect: refused".into()));
        links.failed.push((LinkId(2), "connect: refused".into()));
        assert!(links.busy());
        assert!(links.remove(LinkId(1)).is_none());
        assert_eq!(links.failed, [(LinkId(2), "connect: refused".to_string())]);
    }
}

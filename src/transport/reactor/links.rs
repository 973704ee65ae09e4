//! Driving the outbound links (`link.rs`): the link actions, their reads (turn step 3, before
//! any connection) and their writes (turn step 6, before the connections').
//!
//! Contract, as the app sees it ([`App::on_link_open`], [`App::on_link_data`],
//! [`App::on_link_closed`]):
//! - `LinkConnect` closes a link open under the same id, without a report, and begins a
//!   nonblocking connect. Its outcome is reported from a pump, never from inside the action:
//!   `on_link_open` once connected, or `on_link_closed` with `connect: <error>`, also when
//!   the connect failed at once.
//! - `LinkSend` queues bytes on a connecting or open link (written once it is connected, in
//!   order, partial writes kept for the next writable edge); for an id with no link they are
//!   dropped.
//! - `LinkClose` closes at once, unwritten bytes dropped, without a report.
//! - A link is read until `WouldBlock` within [`LINK_READ_BUDGET`] a turn (the latch stays set
//!   past it); each read's bytes are one `on_link_data`, and its actions are applied before
//!   the next read. End of stream, a reset or an I/O error closes the link and reports it once
//!   (`end of stream`, `reset: ...`, `read: ...`, `write: ...`).
//! - After each app call the link is looked up again by id and generation: a link that call
//!   closed or reopened is not touched further.

use std::io;
use std::net::SocketAddr;
use std::time::Instant;

use mio::Interest;

use crate::app::{App, LinkId, Staged};
use crate::transport::connection::ReadResult;

use super::link::{link_token, Link};
use super::Reactor;

/// Bytes read from one link per turn before the others (and the connections) get their turn.
const LINK_READ_BUDGET: usize = 256 * 1024;

impl<A: App> Reactor<A> {
    /// `LinkConnect`: close what is open under `link` (no report), then begin connecting.
    pub(super) fn link_connect(&mut self, link: LinkId, addr: SocketAddr) {
        self.link_close(link);
        let generation = self.links.generation(link);
        let opened = Link::connect(addr, generation).and_then(|mut new| {
            self.poll.registry().register(
                &mut new.socket,
                link_token(link, generation),
                Interest::READABLE.add(Interest::WRITABLE),
            )?;
            Ok(new)
        });
        match opened {
            Ok(new) => self.links.insert(link, new),
            Err(e) => self.links.failed.push((link, format!("connect: {e}"))),
        }
    }

    /// `LinkSend`: queue the staged bytes on `link`, if it is connecting or open.
    pub(super) fn link_send(&mut self, link: LinkId, msg: &Staged) {
        if let Some(open) = self.links.get_mut(link) {
            let bytes = self.actions.bytes(msg);
            open.queue(&mut self.out.pool, &self.out.frames, bytes);
        }
    }

    /// `LinkClose`, and the first half of every close: take `link` out, deregister it and
    /// drop its bytes. Reports nothing; returns whether a link was there.
    pub(super) fn link_close(&mut self, link: LinkId) -> bool {
        let Some(mut gone) = self.links.remove(link) else {
            return false;
        };
        let _ = self.poll.registry().deregister(&mut gone.socket);
        gone.outbox.discard(&mut self.out.pool);
        true // dropping the socket closes it
    }

    /// Close `link` and tell the app why.
    fn link_ended(&mut self, link: LinkId, error: &str, now: Instant) {
        log::debug!("link {}: {error}", link.0);
        self.link_close(link);
        self.app.on_link_closed(link, error, now, &mut self.actions);
        self.apply_actions(now);
    }

    /// Step 3, first: report the connects that failed at once, then end the connects, and
    /// read the links, that the latches ask for.
    pub(super) fn pump_links(&mut self, now: Instant) {
        for (link, error) in std::mem::take(&mut self.links.failed) {
            self.app
                .on_link_closed(link, &error, now, &mut self.actions);
            self.apply_actions(now);
        }
        for n in 0..self.links.len() {
            // `len()` is at most 256: every index is a link id.
            if let Ok(n) = u8::try_from(n) {
                self.pump_link(LinkId(n), now);
            }
        }
    }

    /// End the connect of `link` if its writable edge came, then read it.
    fn pump_link(&mut self, link: LinkId, now: Instant) {
        let Some(open) = self.links.get_mut(link) else {
            return;
        };
        let generation = open.generation;
        if !open.open {
            if !open.writable {
                return;
            }
            match open.finish_connect() {
                Ok(true) => {
                    self.app.on_link_open(link, now, &mut self.actions);
                    self.apply_actions(now);
                }
                Ok(false) => return,
                Err(e) => {
                    self.link_ended(link, &format!("connect: {e}"), now);
                    return;
                }
            }
        }
        self.read_link(link, generation, now);
    }

    /// Read `link` (of `generation`) until `WouldBlock`, the end, or the budget.
    fn read_link(&mut self, link: LinkId, generation: u32, now: Instant) {
        let mut budget = LINK_READ_BUDGET;
        let mut buf = std::mem::take(&mut self.read_buf);
        while budget > 0 {
            // Looked up again each time: the app ran in between.
            let Some(open) = self
                .links
                .get_mut(link)
                .filter(|l| l.generation == generation && l.open && l.readable)
            else {
                break;
            };
            match open.read_into(&mut buf) {
                ReadResult::Data(n) => {
                    budget = budget.saturating_sub(n);
                    self.app
                        .on_link_data(link, &buf[..n], now, &mut self.actions);
                    self.apply_actions(now);
                }
                ReadResult::WouldBlock => break,
                ReadResult::Eof => {
                    self.link_ended(link, "end of stream", now);
                    break;
                }
                ReadResult::Failed(e) => {
                    self.link_ended(link, &describe(&e, "read"), now);
                    break;
                }
            }
        }
        self.read_buf = buf;
    }

    /// Step 6, first: write every connected link that has bytes queued and may write.
    pub(super) fn flush_links(&mut self, now: Instant) {
        for n in 0..self.links.len() {
            let Ok(n) = u8::try_from(n) else {
                break;
            };
            let link = LinkId(n);
            let Some(open) = self.links.get_mut(link) else {
                continue;
            };
            if !(open.open && open.writable && open.outbox.pending() > 0) {
                continue;
            }
            if let Err(e) = open.flush(&mut self.out.pool, &self.out.frames) {
                self.link_ended(link, &describe(&e, "write"), now);
            }
        }
    }
}

/// What a link's I/O error says to the app: `reset: ...` when the peer reset or went away,
/// else `<what>: ...`.
fn describe(e: &io::Error, what: &str) -> String {
    match e.kind() {
        io::ErrorKind::ConnectionReset
        | io::ErrorKind::ConnectionAborted
        | io::ErrorKind::BrokenPipe => format!("reset: {e}"),
        _ => format!("{what}: {e}"),
    }
}

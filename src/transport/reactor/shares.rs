//! The shares of a turn (turn step 3, `read.rs`): how long the messages of each group of
//! connections may keep the loop in one turn, and the connections that waited because
//! their group's share was spent.
//!
//! Contract:
//! - A connection's group ([`Connection::share_group`]) is the app's
//!   ([`Action::ShareTurn`](crate::app::Action::ShareTurn): the gateway gives the
//!   connections of one user one group); else, while it is held to `initial_max_payload`,
//!   [`PREAUTH`], one group for every connection that has not authenticated; else
//!   [`OWN`]: a share of its own, as every connection had before groups.
//! - [`TurnShares::begin_pump`] gives what is left of a group's [`TURN_SHARE`] in this turn
//!   (a whole one for [`OWN`], and for every group while the turn is shorter than one share:
//!   so a group takes at most two shares of a turn), and charges the pump before to its
//!   group. A connection whose group has
//!   nothing left is not pumped: [`TurnShares::defer`] keeps it, and the next turn's step 3
//!   begins with the connections kept so, in the order they were kept, before the ready
//!   queue ([`TurnShares::begin_turn`]), so that the connections of a group take turns.
//! - Costs: no look at the clock of its own (a pump is charged up to the next pump's
//!   beginning, which the share reads anyway); while the turn is short, a log entry per pump
//!   (the first pump of a turn only that: no instant is added or compared); past one share,
//!   two lookups in a table of the groups pumped in this turn. Nothing is allocated once the
//!   log, the table and the list of kept connections have grown to what one turn needs.

use std::collections::{HashMap, VecDeque};
use std::hash::{BuildHasherDefault, Hasher};
use std::time::{Duration, Instant};

use crate::transport::connection::Connection;

/// How long the messages of one group of connections (or of one connection with a share
/// of its own) may keep the loop in a turn before the others get theirs (see `read.rs`).
pub(super) const TURN_SHARE: Duration = Duration::from_millis(1);

/// The group of a connection with a share of its own.
pub(super) const OWN: u32 = 0;
/// The group of the connections that have not authenticated (held to
/// `initial_max_payload`) and that the app gave no group.
pub(super) const PREAUTH: u32 = u32::MAX;

impl Connection {
    /// The group whose share of a turn this connection's messages take (see the module
    /// docs).
    pub(super) fn share_group(&self) -> u32 {
        match self.group {
            OWN if !self.full_limit => PREAUTH,
            group => group,
        }
    }
}

/// Hashes a group number by one multiplication (Fibonacci hashing): the app's numbers may
/// be consecutive, and the table reads the hash's high bits too.
#[derive(Default)]
pub(super) struct GroupHasher(u64);

impl Hasher for GroupHasher {
    fn finish(&self) -> u64 {
        self.0
    }

    fn write(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.0 = (self.0 ^ u64::from(b)).wrapping_mul(0x9E37_79B9_7F4A_7C15);
        }
    }

    fn write_u32(&mut self, n: u32) {
        self.0 = u64::from(n).wrapping_mul(0x9E37_79B9_7F4A_7C15);
    }
}

/// What the groups pumped in this turn have spent, and the connections kept for the next.
#[derive(Default)]
pub(super) struct TurnShares {
    /// When this turn's step 3 began.
    began: Option<Instant>,
    /// When this turn passes one share (from then on `spent` is kept), reckoned at its second
    /// pump: a turn of one pump never needs it.
    short_until: Option<Instant>,
    /// Whether `spent` is kept (the turn has passed one share).
    exact: bool,
    /// While the turn is short: the pumps begun in it, their groups and when (a pump ends
    /// when the next begins). Only instants are kept, compared and not subtracted, which is
    /// what keeps a pump in a short turn as cheap as without groups.
    log: Vec<(u32, Instant)>,
    /// Once the turn has passed one share: the last pump begun, if it is to be charged.
    pumping: Option<(u32, Instant)>,
    spent: HashMap<u32, Duration, BuildHasherDefault<GroupHasher>>,
    /// Slot keys of the connections not pumped because their group's share was spent, in
    /// the order they were kept (each still has `in_ready` set).
    deferred: Vec<usize>,
}

impl TurnShares {
    /// Begin a turn's step 3 (the turn having begun at `now`): nothing spent, and the
    /// connections kept in the last turn put at the front of `ready`, in their order.
    pub(super) fn begin_turn(&mut self, ready: &mut VecDeque<usize>, now: Instant) {
        self.began = Some(now);
        self.short_until = None;
        self.exact = false;
        self.log.clear();
        self.pumping = None;
        if !self.spent.is_empty() {
            self.spent.clear();
        }
        if !self.deferred.is_empty() {
            for key in self.deferred.drain(..).rev() {
                ready.push_front(key);
            }
        }
    }

    /// A pump of a connection of `group` is to begin at `now`: what is left of the group's
    /// share (zero: the connection is to wait, [`TurnShares::defer`]). The pump before it is
    /// charged the time up to `now`.
    ///
    /// While the turn is shorter than one share no group can have spent one, and each pump
    /// gets a whole share without a lookup (only a log entry), so a group takes at most
    /// two shares of a turn: what it spent before the turn passed one share, and one.
    pub(super) fn begin_pump(&mut self, group: u32, now: Instant) -> Duration {
        if !self.exact {
            if self.log.is_empty() {
                // The turn's first pump: nothing was spent before it, whenever it begins.
                self.log.push((group, now));
                return TURN_SHARE;
            }
            let began = self.began;
            let until = *self.short_until.get_or_insert_with(|| {
                began.and_then(|b| b.checked_add(TURN_SHARE)).unwrap_or(now)
            });
            if now < until {
                self.log.push((group, now));
                return TURN_SHARE;
            }
            self.exact = true;
            let ends = self.log.iter().skip(1).map(|&(_, at)| at).chain([now]);
            for (&(last, began), ended) in self.log.iter().zip(ends) {
                if last != OWN {
                    *self.spent.entry(last).or_default() += ended.saturating_duration_since(began);
                }
            }
        } else if let Some((last, began)) = self.pumping.take() {
            *self.spent.entry(last).or_default() += now.saturating_duration_since(began);
        }
        if group == OWN {
            return TURN_SHARE;
        }
        let spent = self.spent.get(&group).copied().unwrap_or_default();
        let left = TURN_SHARE.saturating_sub(spent);
        if !left.is_zero() {
            self.pumping = Some((group, now));
        }
        left
    }

    /// Keep the connection at slot `key` for the next turn.
    pub(super) fn defer(&mut self, key: usize) {
        self.deferred.push(key);
    }

    /// Whether a connection waits for the next turn.
    pub(super) fn any_deferred(&self) -> bool {
        !self.deferred.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MS: Duration = Duration::from_millis(1);

    #[test]
    fn a_group_shares_one_share_and_its_kept_connections_go_first() {
        assert_eq!(TURN_SHARE, MS);
        let mut shares = TurnShares::default();
        let mut ready = VecDeque::from([5, 6]);
        let t0 = Instant::now();
        let at = |us: u64| t0 + Duration::from_micros(us);
        shares.begin_turn(&mut ready, t0);
        // A short turn: whole shares, whatever was spent.
        assert_eq!(shares.begin_pump(7, at(0)), MS);
        assert_eq!(shares.begin_pump(7, at(600)), MS);
        // Past one share: group 7 spent 600 + 500 us, group 8 nothing, OWN is never kept.
        assert_eq!(shares.begin_pump(OWN, at(1100)), MS);
        assert_eq!(shares.begin_pump(8, at(5000)), MS);
        assert_eq!(shares.begin_pump(7, at(5200)), Duration::ZERO);
        shares.defer(2);
        assert_eq!(shares.begin_pump(8, at(5200)), Duration::from_micros(800));
        assert_eq!(shares.begin_pump(8, at(5900)), Duration::from_micros(100));
        assert_eq!(shares.begin_pump(7, at(6000)), Duration::ZERO);
        shares.defer(1);
        assert!(shares.any_deferred());
        shares.begin_turn(&mut ready, at(7000));
        assert_eq!(ready, [2, 1, 5, 6]);
        assert!(!shares.any_deferred());
        assert_eq!(
            shares.begin_pump(7, at(8500)),
            MS,
            "a new turn, a new share"
        );
    }
}

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
//! - [`TurnShares::left`] is what is left of a group's [`TURN_SHARE`] in this turn (a whole
//!   one for [`OWN`]), [`TurnShares::spend`] takes from it. A connection whose group has
//!   nothing left is not pumped: [`TurnShares::defer`] keeps it, and the next turn's step 3
//!   begins with the connections kept so, in the order they were kept, before the ready
//!   queue ([`TurnShares::begin_turn`]), so that the connections of a group take turns.
//! - Costs: a pump of a grouped connection adds one look at the clock and two lookups in a
//!   table of the groups pumped in this turn; nothing is allocated once that table and the
//!   list of kept connections have grown to what one turn needs.

use std::collections::{HashMap, VecDeque};
use std::hash::{BuildHasherDefault, Hasher};
use std::time::Duration;

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
    spent: HashMap<u32, Duration, BuildHasherDefault<GroupHasher>>,
    /// Slot keys of the connections not pumped because their group's share was spent, in
    /// the order they were kept (each still has `in_ready` set).
    deferred: Vec<usize>,
}

impl TurnShares {
    /// Begin a turn's step 3: nothing spent, and the connections kept in the last turn put
    /// at the front of `ready`, in their order.
    pub(super) fn begin_turn(&mut self, ready: &mut VecDeque<usize>) {
        if !self.spent.is_empty() {
            self.spent.clear();
        }
        for key in self.deferred.drain(..).rev() {
            ready.push_front(key);
        }
    }

    /// What is left of `group`'s share in this turn.
    pub(super) fn left(&self, group: u32) -> Duration {
        if group == OWN {
            return TURN_SHARE;
        }
        let spent = self.spent.get(&group).copied().unwrap_or_default();
        TURN_SHARE.saturating_sub(spent)
    }

    /// `group`'s messages kept the loop for `time` more.
    pub(super) fn spend(&mut self, group: u32, time: Duration) {
        if group != OWN {
            *self.spent.entry(group).or_default() += time;
        }
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

    #[test]
    fn a_group_shares_one_share_and_its_kept_connections_go_first() {
        let mut shares = TurnShares::default();
        let mut ready = VecDeque::from([5, 6]);
        assert_eq!(shares.left(OWN), TURN_SHARE);
        assert_eq!(shares.left(7), TURN_SHARE);
        shares.spend(7, TURN_SHARE / 4);
        shares.spend(7, TURN_SHARE / 4);
        shares.spend(OWN, TURN_SHARE * 9);
        assert_eq!(shares.left(7), TURN_SHARE / 2);
        assert_eq!(shares.left(8), TURN_SHARE);
        assert_eq!(shares.left(OWN), TURN_SHARE, "nothing is kept for OWN");
        shares.spend(7, TURN_SHARE);
        assert_eq!(shares.left(7), Duration::ZERO);
        shares.defer(2);
        shares.defer(1);
        assert!(shares.any_deferred());
        shares.begin_turn(&mut ready);
        assert_eq!(ready, [2, 1, 5, 6]);
        assert!(!shares.any_deferred());
        assert_eq!(shares.left(7), TURN_SHARE, "a new turn, a new share");
    }
}

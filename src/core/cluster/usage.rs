//! What this node counts toward the per-user bounds that hold cluster-wide through its own
//! fields in Redis (`max_connections_per_user`, `max_pending_routes_per_user`, PROTOCOL
//! sections 11 and 13), and the requests that wait for Redis's check (`users.rs` acts on
//! them).
//!
//! Contract:
//! - [`Usage`] is this node's share, by usage key: what it wrote, or will write, in its
//!   field of `P:uc:{usage-key}` and `P:ur:{usage-key}`. Pure data, O(1) per change; a key
//!   that holds nothing is forgotten.
//! - `unwritten` says that Redis may not hold this node's share (a change could not be
//!   sent): it is written again, whole, when the broker serves.
//! - Takes at the broker are tallied apart ([`Usage::asked`], [`Usage::answered`]): a
//!   write-back writes them as counted, since Redis ran them before it, and `generation`
//!   (one more at each write-back) tells the answer of a take whether a write-back came
//!   between its sending and its answer.

use std::collections::HashMap;

use crate::app::ConnId;
use crate::core::auth::Grant;

/// What a usage key holds.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Count {
    /// Authenticated connections (`P:uc:`).
    Connections = 0,
    /// Pending route requests (`P:ur:`).
    Routes = 1,
}

impl Count {
    /// The part of the key of its HASH after the prefix.
    pub(crate) fn tag(self) -> &'static [u8] {
        match self {
            Count::Connections => b"uc",
            Count::Routes => b"ur",
        }
    }

    /// The other one.
    pub(crate) fn other(self) -> Count {
        match self {
            Count::Connections => Count::Routes,
            Count::Routes => Count::Connections,
        }
    }
}

/// This node's share of the per-user counts.
#[derive(Debug, Default)]
pub(crate) struct Usage {
    by_key: HashMap<String, [u64; 2]>,
    /// Takes at the broker, not answered yet.
    in_flight: HashMap<String, [u64; 2]>,
    /// Redis may not hold this share: write it again when the broker serves.
    pub(crate) unwritten: bool,
    /// Write-backs so far.
    pub(crate) generation: u64,
}

impl Usage {
    /// One more of `count` for `key`.
    pub(crate) fn add(&mut self, key: &str, count: Count) {
        match self.by_key.get_mut(key) {
            Some(held) => held[count as usize] += 1,
            None => {
                let mut held = [0; 2];
                held[count as usize] = 1;
                self.by_key.insert(key.to_owned(), held);
            }
        }
    }

    /// `n` fewer of `count` for `key` (at most what it holds); how many were taken off.
    pub(crate) fn sub(&mut self, key: &str, count: Count, n: u64) -> u64 {
        let Some(held) = self.by_key.get_mut(key) else {
            return 0;
        };
        let taken = held[count as usize].min(n);
        held[count as usize] -= taken;
        if held == &[0, 0] {
            self.by_key.remove(key);
        }
        taken
    }

    /// What `key` holds of `count`.
    pub(crate) fn get(&self, key: &str, count: Count) -> u64 {
        self.by_key.get(key).map_or(0, |held| held[count as usize])
    }

    /// A take of `count` for `key` was sent.
    pub(crate) fn asked(&mut self, key: &str, count: Count) {
        match self.in_flight.get_mut(key) {
            Some(n) => n[count as usize] += 1,
            None => {
                let mut n = [0; 2];
                n[count as usize] = 1;
                self.in_flight.insert(key.to_owned(), n);
            }
        }
    }

    /// A take of `count` for `key` was answered (or will never be).
    pub(crate) fn answered(&mut self, key: &str, count: Count) {
        if let Some(n) = self.in_flight.get_mut(key) {
            n[count as usize] = n[count as usize].saturating_sub(1);
            if n == &[0, 0] {
                self.in_flight.remove(key);
            }
        }
    }

    /// What a write-back writes: every key with its connections and pending routes, takes
    /// at the broker included.
    pub(crate) fn to_write(&self) -> Vec<(String, u64, u64)> {
        let mut all: HashMap<&str, [u64; 2]> = HashMap::new();
        for (key, n) in self.by_key.iter().chain(self.in_flight.iter()) {
            let sum = all.entry(key.as_str()).or_default();
            sum[0] += n[0];
            sum[1] += n[1];
        }
        all.into_iter()
            .map(|(k, n)| (k.to_owned(), n[0], n[1]))
            .collect()
    }
}

/// An `auth` whose credential is good, waiting for Redis to count the connection.
#[derive(Debug)]
pub(crate) struct PendingAuth {
    pub(crate) conn: ConnId,
    pub(crate) req_id: String,
    pub(crate) ts: u64,
    pub(crate) grant: Grant,
    /// [`Usage::generation`] when the take was sent.
    pub(crate) generation: u64,
}

/// A `route_request` to a target on this node, waiting for Redis to count it.
#[derive(Debug)]
pub(crate) struct PendingLocalRoute {
    pub(crate) conn: ConnId,
    pub(crate) req_id: String,
    pub(crate) ts: u64,
    /// The requester's `clientId` and usage key.
    pub(crate) requester: String,
    pub(crate) usage_key: String,
    /// The target as named, and its connection.
    pub(crate) target: String,
    pub(crate) target_conn: ConnId,
    /// The agent id the answer is shown from, if any.
    pub(crate) shown: Option<String>,
    /// The request as the target gets it.
    pub(crate) message: Vec<u8>,
    /// [`Usage::generation`] when the take was sent.
    pub(crate) generation: u64,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_key_that_holds_nothing_is_forgotten() {
        let mut usage = Usage::default();
        usage.add("alice", Count::Connections);
        usage.add("alice", Count::Routes);
        usage.add("alice", Count::Routes);
        assert_eq!(usage.get("alice", Count::Routes), 2);
        assert_eq!(usage.sub("alice", Count::Routes, 5), 2);
        assert_eq!(usage.to_write(), [("alice".to_owned(), 1, 0)]);
        assert_eq!(usage.sub("alice", Count::Connections, 1), 1);
        assert!(usage.to_write().is_empty());
        assert_eq!(usage.sub("alice", Count::Connections, 1), 0);
    }

    #[test]
    fn takes_at_the_broker_are_written_as_counted() {
        let mut usage = Usage::default();
        usage.add("alice", Count::Connections);
        usage.asked("alice", Count::Connections);
        usage.asked("bob", Count::Routes);
        let mut written = usage.to_write();
        written.sort();
        assert_eq!(
            written,
            [("alice".to_owned(), 2, 0), ("bob".to_owned(), 0, 1)]
        );
        usage.answered("alice", Count::Connections);
        usage.answered("bob", Count::Routes);
        assert_eq!(usage.to_write(), [("alice".to_owned(), 1, 0)]);
    }
}

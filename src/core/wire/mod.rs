//! The JSON wire format of PROTOCOL sections 2-6: reading envelopes ([`envelope`]), the
//! payload shapes ([`payloads`]) and their typed read from the members the walk noted
//! ([`fields`]), writing envelopes ([`write`](mod@write)), compact client JSON
//! ([`compact`]), the merge of a metadata patch ([`merge`]) the check of forwarded payloads
//! ([`strict`]), and the one-pass walk that is the fast path of the reading, the check and
//! the compaction ([`walk`]).

pub(crate) mod compact;
pub(crate) mod envelope;
pub(crate) mod fields;
pub(crate) mod merge;
pub(crate) mod payloads;
pub(crate) mod strict;
pub(crate) mod walk;
pub(crate) mod write;

pub(crate) use envelope::*;
pub(crate) use write::*;

//! The JSON wire format of PROTOCOL sections 2-6: reading envelopes ([`envelope`]), the
//! payload shapes ([`payloads`]), writing envelopes ([`write`](mod@write)), compact client
//! JSON ([`compact`]), the merge of a metadata patch ([`merge`]) and the check of forwarded payloads ([`strict`]).

pub(crate) mod compact;
pub(crate) mod envelope;
pub(crate) mod merge;
pub(crate) mod payloads;
pub(crate) mod strict;
pub(crate) mod write;

pub(crate) use envelope::*;
pub(crate) use write::*;

//! The JSON wire format of PROTOCOL sections 2-6: reading envelopes ([`envelope`]), the
//! payload shapes ([`payloads`]), writing envelopes ([`write`](mod@write)) and the member scanner
//! ([`scan`]).

pub mod envelope;
pub mod payloads;
pub mod scan;
pub mod write;

pub use envelope::*;
pub use write::*;

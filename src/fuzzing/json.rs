//! Fuzzes the one-pass JSON walk (`core/wire/walk.rs`) against the `serde_json` reads it
//! stands for. The input is JSON text, or anything; it is read as a payload, as stored
//! client JSON and as a whole message, and once more wrapped as a message's payload.
//!
//! Checks: the walk accepts only what `serde_json` accepts; the strict check
//! (`strict::check`), the compaction (`compact::compact`, at three budgets; and
//! `compact::compact_strict`: the same text where the check passes) and the envelope
//! read (`parse_envelope`) give exactly what their `serde_json` reads give: the same
//! decision, the same error text, the same compact bytes, the same members; and a payload the
//! envelope's walk marked as checked passes the `serde_json` check.

use crate::core::wire::compact::{compact, compact_serde, compact_strict, Budget, CompactError};
use crate::core::wire::envelope::parse_envelope_serde;
use crate::core::wire::{parse_envelope, strict, walk};

/// Run one input.
pub fn run(data: &[u8]) {
    check(data);
    let wrapped = [br#"{"type":"chat","id":"1","payload":"#, data, b"}"].concat();
    envelope(&wrapped);
}

fn check(data: &[u8]) {
    let serde = strict::check_serde(data);
    if walk::strict(data).is_ok() {
        assert!(
            serde.is_ok(),
            "the walk passed what serde_json refuses: {serde:?}"
        );
    }
    assert_eq!(strict::check(data), serde);
    for max in [1 << 24, data.len() / 2, 8] {
        let (mut fast, mut slow) = (b"kept".to_vec(), b"kept".to_vec());
        let a = compact(
            data,
            &mut Budget {
                out: &mut fast,
                max,
            },
        );
        let b = compact_serde(
            data,
            &mut Budget {
                out: &mut slow,
                max,
            },
        );
        assert_eq!(format!("{a:?}"), format!("{b:?}"), "compact at {max}");
        assert_eq!(fast, slow, "compact text at {max}");
        // Stored client JSON: the same text when the check passes, else refused (for its
        // size when the budget passed first).
        let mut stored = b"kept".to_vec();
        let c = compact_strict(
            data,
            &mut Budget {
                out: &mut stored,
                max,
            },
        );
        match c {
            Ok(()) => {
                assert_eq!(serde, Ok(()), "stored what the check refuses");
                assert_eq!(stored, slow, "compact strict text at {max}");
            }
            Err(CompactError::Invalid(_)) => {
                assert!(serde.is_err() || b.is_err(), "refused {c:?} at {max}");
                assert_eq!(stored, b"kept");
            }
            Err(CompactError::TooLarge) => assert_eq!(stored, b"kept"),
        }
    }
    envelope(data);
}

fn envelope(data: &[u8]) {
    let fast = parse_envelope(data);
    let slow = parse_envelope_serde(data);
    match (&fast, &slow) {
        (Ok(a), Ok(b)) => {
            if a.payload_strict {
                assert_eq!(strict::check_serde(a.payload), Ok(()), "marked as checked");
            }
            let mut a = a.clone();
            a.payload_strict = b.payload_strict;
            assert_eq!(&a, b);
        }
        _ => assert_eq!(fast, slow),
    }
}

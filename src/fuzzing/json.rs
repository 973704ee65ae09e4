//! Fuzzes the one-pass JSON walk (`core/wire/walk.rs`) against the `serde_json` reads it
//! stands for. The input is JSON text, or anything; it is read as a payload, as stored
//! client JSON and as a whole message, and once more wrapped as a message's payload.
//!
//! Checks: the walk accepts only what `serde_json` accepts and refuses only what it refuses;
//! the strict check (`strict::check`), the compaction (`compact::compact`, at three budgets;
//! and `compact::compact_strict`: the same text where the check passes, refused where it
//! refuses) and the envelope read (`parse_envelope`) give what their `serde_json` reads give:
//! the same decision, the same code and field of a refusal (the walk words its own; where it
//! leaves the decision to `serde_json`, the same text), the same compact bytes, the same
//! members; and a payload the envelope's walk checked on its way gets the decision of the
//! `serde_json` check, and exactly what `strict::check` gives it; and every payload struct
//! read from the members the walk noted (`fields::read`) is what `serde_json` reads from the
//! whole payload (the same struct, or the same error text), in a payload checked on its way
//! (`chat`) and one that is not (`agent_register`).

use crate::core::wire::compact::{compact, compact_serde, compact_strict, Budget, CompactError};
use crate::core::wire::envelope::parse_envelope_serde;
use crate::core::wire::fields::{self, Raw};
use crate::core::wire::payloads::{
    parse_text, AdminClientsIn, AdminKickIn, AgentQueryIn, AgentRefIn, AgentRegisterIn, AuthIn,
    ConnectIn, PresenceIn, PresenceQueryIn, SessionCreateIn, SessionPatchIn, SessionRefIn,
};
use crate::core::wire::{parse_envelope, strict, walk, Envelope, EnvelopeError};

/// Run one input.
pub fn run(data: &[u8]) {
    check(data);
    for head in [
        &br#"{"type":"chat","id":"1","payload":"#[..],
        br#"{"type":"agent_register","id":"1","payload":"#,
    ] {
        envelope(&[head, data, b"}"].concat());
    }
}

/// How many payload structs the typed read of `env` gave, and how many errors, each the same
/// from the noted members as from the whole payload (nothing when the payload's check
/// refused it: no typed read follows).
pub(crate) fn typed(env: &Envelope<'_>) -> (usize, usize) {
    let (mut read, mut refused) = (0, 0);
    if env.payload_check.as_ref().is_some_and(Result::is_err) {
        return (0, 0);
    }
    let Some(noted) = env.noted.as_deref() else {
        return (0, 0);
    };
    let text = String::from_utf8_lossy(env.payload);
    macro_rules! same {
        ($($t:ty),*) => {$(
            let fast = fields::read::<$t>(env.payload, noted)
                .unwrap_or_else(|| panic!("not read from its members: {text}"));
            let slow = parse_text::<$t>(env.payload);
            match (&fast, &slow) {
                (Ok(a), Ok(b)) => {
                    assert_eq!(format!("{a:?}"), format!("{b:?}"), "{}: {text}", stringify!($t));
                    read += 1;
                }
                (Err(a), Err(b)) => {
                    assert_eq!(format!("payload: {a}"), b.message, "{}: {text}", stringify!($t));
                    refused += 1;
                }
                _ => panic!("{} read {fast:?} and {slow:?}: {text}", stringify!($t)),
            }
        )*};
    }
    same!(
        AuthIn<'_>,
        ConnectIn<'_>,
        SessionCreateIn<'_, Raw<'_>>,
        SessionRefIn<'_>,
        SessionPatchIn<'_>,
        PresenceIn<'_>,
        PresenceQueryIn<'_>,
        AdminKickIn<'_>,
        AdminClientsIn<'_>,
        AgentRegisterIn<'_>,
        AgentRefIn<'_>,
        AgentQueryIn<'_>
    );
    (read, refused)
}

fn check(data: &[u8]) {
    let serde = strict::check_serde(data);
    let walked = walk::strict(data);
    match walked {
        Ok(()) => assert!(
            serde.is_ok(),
            "the walk passed what serde_json refuses: {serde:?}"
        ),
        Err(walk::Stop::Refused(refusal)) => assert!(
            serde.is_err(),
            "the walk refused what serde_json passes: {refusal}"
        ),
        Err(other) => panic!("the strict walk left {other:?}"),
    }
    let checked = strict::check(data);
    match (&checked, &serde) {
        (Ok(()), Ok(())) => {}
        (Err(a), Err(b)) => assert_eq!(a.field, b.field),
        _ => assert_eq!(checked, serde),
    }
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
        let unsure = {
            let mut out = Vec::new();
            walk::compact(data, &mut out, max) == Err(walk::Stop::Unsure)
        };
        // The walk leaves only text that is not UTF-8 to serde_json.
        assert!(!unsure || std::str::from_utf8(data).is_err(), "unsure");
        match (&a, &b) {
            (Ok(()), Ok(())) | (Err(CompactError::TooLarge), Err(CompactError::TooLarge)) => {}
            (Err(CompactError::Invalid(_)), Err(CompactError::Invalid(_))) if !unsure => {}
            _ => assert_eq!(
                format!("{a:?}"),
                format!("{b:?}"),
                "compact at {max}: {:?}",
                String::from_utf8_lossy(data)
            ),
        }
        assert_eq!(fast, slow, "compact text at {max}");
        // Stored client JSON: the same text when the check passes, else refused (for its
        // size when the budget passed first), the walk deciding every text itself.
        let mut stored = b"kept".to_vec();
        let walked = walk::compact_strict(data, &mut Vec::new(), max);
        assert!(walked != Err(walk::Stop::Unsure), "compact strict unsure");
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
                assert!(serde.is_err(), "refused {c:?} at {max}");
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
    let unsure = matches!(
        walk::envelope(data, |_| true, |_| None),
        Err(walk::Stop::Unsure)
    );
    assert!(!unsure || std::str::from_utf8(data).is_err(), "unsure");
    match (&fast, &slow) {
        (Ok(a), Ok(b)) => {
            match &a.payload_check {
                Some(Ok(())) => {
                    assert_eq!(strict::check_serde(a.payload), Ok(()), "marked as checked");
                }
                Some(Err(refused)) => {
                    let serde = strict::check_serde(a.payload);
                    let error = serde.expect_err("marked as refused, serde_json passes it");
                    assert_eq!(error.field, refused.field);
                    assert_eq!(strict::check(a.payload).as_ref(), Err(refused));
                }
                None => {}
            }
            typed(a);
            let mut a = a.clone();
            a.payload_check = b.payload_check.clone();
            a.noted = None;
            assert_eq!(&a, b);
        }
        (Err(EnvelopeError::Parse(_)), Err(EnvelopeError::Parse(_))) if !unsure => {}
        _ => assert_eq!(fast, slow),
    }
}

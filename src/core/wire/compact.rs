//! Client JSON kept as compact text: one value read from a payload and written back without
//! white space, so that what the gateway stores costs its compact size (PROTOCOL section 11).
//!
//! Contract:
//! - [`compact`] (and [`Compact`], the same as a serde seed inside a larger read) accepts
//!   exactly what `serde_json` accepts as a `Value` (nesting at most 128 deep, no lone
//!   surrogate escape, no number out of range) and writes it as `serde_json` would write that
//!   value, except that object members keep their order (and a repeated key stays repeated).
//! - The output has a budget: once more than `max` bytes have been written the read stops with
//!   an error and [`Budget::exceeded`] says so, so an oversized value costs at most the work
//!   of reading `max` bytes of it plus its white space.
//! - No tree is built: the cost is the output buffer, and the stack of the nesting (bounded).

use std::fmt;

use serde::de::{self, DeserializeSeed, Deserializer, MapAccess, SeqAccess, Visitor};

use crate::core::wire::{strict, walk, write_str, write_u64};

/// Where a compact value is written, and how much of it may be.
#[derive(Debug)]
pub(crate) struct Budget<'b> {
    /// The output; compact text is appended.
    pub out: &'b mut Vec<u8>,
    /// The most `out` may hold.
    pub max: usize,
}

impl Budget<'_> {
    /// Whether the output passed its budget (the reason a read stopped).
    pub(crate) fn exceeded(&self) -> bool {
        self.out.len() > self.max
    }

    fn check<E: de::Error>(&self) -> Result<(), E> {
        if self.exceeded() {
            Err(E::custom(format_args!("more than {} bytes", self.max)))
        } else {
            Ok(())
        }
    }
}

/// Why [`compact`] failed.
#[derive(Debug)]
pub(crate) enum CompactError {
    /// The compact text would pass the budget.
    TooLarge,
    /// Not a JSON value `serde_json` accepts; its message.
    Invalid(String),
}

/// Append the compact form of the JSON text `raw` to `budget.out`. The
/// [`walk`](crate::core::wire::walk) writes it, or refuses it with its own wording
/// (`expected a value at byte N`), in one pass; only where the walk does not decide (text
/// that is not UTF-8, which the gateway never hands it) `serde_json` reads it again
/// ([`compact_serde`]) and its error is the one returned.
pub(crate) fn compact(raw: &[u8], budget: &mut Budget<'_>) -> Result<(), CompactError> {
    let start = budget.out.len();
    if let Some(decided) = decided(walk::compact(raw, budget.out, budget.max), budget, start) {
        return decided;
    }
    compact_serde(raw, budget)
}

/// What a walk's answer decides (`None`: it was unsure); what it wrote is taken back unless
/// it passed the text.
fn decided(
    walked: Result<(), walk::Stop>,
    budget: &mut Budget<'_>,
    start: usize,
) -> Option<Result<(), CompactError>> {
    let decided = match walked {
        Ok(()) => return Some(Ok(())),
        Err(walk::Stop::TooLarge) => Some(Err(CompactError::TooLarge)),
        Err(walk::Stop::Refused(refusal)) => Some(Err(CompactError::Invalid(refusal.to_string()))),
        Err(walk::Stop::Unsure) => None,
    };
    budget.out.truncate(start);
    decided
}

/// [`compact`] of stored client JSON: the same text, and refused as well where
/// [`strict::check`](crate::core::wire::strict::check) refuses it (a key twice in one object),
/// for its size when the output passed `max` before the walk found what it refuses. The walk
/// compacts and checks in one pass, and words a refusal itself (`duplicate key in an object at
/// byte N`); where it is unsure (no input today) `serde_json` reads the text again, the
/// check's read first (its error is the one returned).
pub(crate) fn compact_strict(raw: &[u8], budget: &mut Budget<'_>) -> Result<(), CompactError> {
    let start = budget.out.len();
    let walked = walk::compact_strict(raw, budget.out, budget.max);
    if let Some(decided) = decided(walked, budget, start) {
        return decided;
    }
    strict::serde_error(raw).map_err(|e| CompactError::Invalid(e.to_string()))?;
    compact_serde(raw, budget)
}

/// [`compact`] done by `serde_json`: the reference the walk keeps to.
pub(crate) fn compact_serde(raw: &[u8], budget: &mut Budget<'_>) -> Result<(), CompactError> {
    let mut de = serde_json::Deserializer::from_slice(raw);
    let start = budget.out.len();
    let result = Compact(budget).deserialize(&mut de).and_then(|()| de.end());
    result.map_err(|e| {
        let too_large = budget.exceeded();
        budget.out.truncate(start);
        if too_large {
            CompactError::TooLarge
        } else {
            CompactError::Invalid(e.to_string())
        }
    })
}

/// A serde seed that reads one value and appends its compact text to the budget's output.
pub(crate) struct Compact<'a, 'b>(pub &'a mut Budget<'b>);

impl<'de> DeserializeSeed<'de> for Compact<'_, '_> {
    type Value = ();

    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<(), D::Error> {
        deserializer.deserialize_any(self)
    }
}

impl Compact<'_, '_> {
    fn written<E: de::Error>(self, write: impl FnOnce(&mut Vec<u8>)) -> Result<(), E> {
        write(self.0.out);
        self.0.check()
    }
}

impl<'de> Visitor<'de> for Compact<'_, '_> {
    type Value = ();

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("any JSON value")
    }

    fn visit_bool<E: de::Error>(self, v: bool) -> Result<(), E> {
        self.written(|out| out.extend_from_slice(if v { b"true" } else { b"false" }))
    }

    fn visit_i64<E: de::Error>(self, v: i64) -> Result<(), E> {
        self.written(|out| {
            if v < 0 {
                out.push(b'-');
            }
            write_u64(out, v.unsigned_abs());
        })
    }

    fn visit_u64<E: de::Error>(self, v: u64) -> Result<(), E> {
        self.written(|out| write_u64(out, v))
    }

    fn visit_f64<E: de::Error>(self, v: f64) -> Result<(), E> {
        // serde_json hands out finite numbers only, and writes them as a `Value` would.
        let mut written = true;
        let result = self.written(|out| written = serde_json::to_writer(out, &v).is_ok());
        if written {
            result
        } else {
            Err(E::custom("number out of range"))
        }
    }

    fn visit_str<E: de::Error>(self, v: &str) -> Result<(), E> {
        self.written(|out| write_str(out, v))
    }

    fn visit_unit<E: de::Error>(self) -> Result<(), E> {
        self.written(|out| out.extend_from_slice(b"null"))
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<(), A::Error> {
        let budget = self.0;
        budget.out.push(b'[');
        let mut first = true;
        loop {
            if !first {
                budget.out.push(b',');
            }
            let mark = budget.out.len();
            if seq.next_element_seed(Compact(budget))?.is_none() {
                budget.out.truncate(if first { mark } else { mark - 1 });
                break;
            }
            first = false;
        }
        budget.out.push(b']');
        budget.check()
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<(), A::Error> {
        let budget = self.0;
        budget.out.push(b'{');
        let mut first = true;
        while let Some(key) = map.next_key_seed(Key(budget, first))? {
            let () = key;
            budget.out.push(b':');
            map.next_value_seed(Compact(budget))?;
            first = false;
        }
        budget.out.push(b'}');
        budget.check()
    }
}

/// An object key, written as a string (after a comma unless it is the first).
struct Key<'a, 'b>(&'a mut Budget<'b>, bool);

impl<'de> DeserializeSeed<'de> for Key<'_, '_> {
    type Value = ();

    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<(), D::Error> {
        deserializer.deserialize_str(self)
    }
}

impl<'de> Visitor<'de> for Key<'_, '_> {
    type Value = ();

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("an object key")
    }

    fn visit_str<E: de::Error>(self, v: &str) -> Result<(), E> {
        if !self.1 {
            self.0.out.push(b',');
        }
        write_str(self.0.out, v);
        self.0.check()
    }
}

/// JavaScript truthiness of a compact JSON value written by [`compact`]: anything but
/// `false`, `null`, `0` (in any spelling) and `""`.
pub(crate) fn is_truthy(compact: &[u8]) -> bool {
    match compact {
        b"false" | b"null" | b"\"\"" => false,
        [b'-' | b'0'..=b'9', ..] => {
            std::str::from_utf8(compact)
                .ok()
                .and_then(|text| text.parse::<f64>().ok())
                != Some(0.0)
        }
        _ => true,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(raw: &str, max: usize) -> Result<String, CompactError> {
        let mut out = Vec::new();
        compact(raw.as_bytes(), &mut Budget { out: &mut out, max })?;
        Ok(String::from_utf8(out).unwrap())
    }

    #[test]
    fn writes_what_a_value_would_without_white_space_and_in_order() {
        let raw =
            r#" { "b" : [ 1 , -2 , 1.5e3 , true , null , "x\"\u0041\n" ] , "a" : { } , "c":[ ] } "#;
        assert_eq!(
            run(raw, 1000).unwrap(),
            r#"{"b":[1,-2,1500.0,true,null,"x\"A\n"],"a":{},"c":[]}"#
        );
        let value: serde_json::Value = serde_json::from_str(raw).unwrap();
        let reread: serde_json::Value = serde_json::from_str(&run(raw, 1000).unwrap()).unwrap();
        assert_eq!(value, reread);
        assert_eq!(run("[[],[[]],{}]", 100).unwrap(), "[[],[[]],{}]");
        assert_eq!(run("\"\"", 100).unwrap(), "\"\"");
    }

    #[test]
    fn refuses_what_a_value_refuses() {
        for bad in [
            "1e999999",
            r#""\ud800""#,
            "[1,]",
            "{\"a\":1} x",
            &format!("{}{}", "[".repeat(200), "]".repeat(200)),
        ] {
            assert!(
                matches!(run(bad, 1 << 20), Err(CompactError::Invalid(_))),
                "{bad}"
            );
        }
    }

    #[test]
    fn stops_at_the_budget_and_leaves_the_output_as_it_was() {
        let big = format!("[{}1]", "1, ".repeat(10_000));
        assert!(matches!(run(&big, 100), Err(CompactError::TooLarge)));
        assert_eq!(run("[1,2,3]", 7).unwrap(), "[1,2,3]");
        assert!(matches!(run("[1,2,3]", 6), Err(CompactError::TooLarge)));
        let mut out = b"keep".to_vec();
        assert!(compact(
            b"[1,2,3]",
            &mut Budget {
                out: &mut out,
                max: 8
            }
        )
        .is_err());
        assert_eq!(out, b"keep");
    }

    #[test]
    fn truthiness_is_javascripts() {
        for yes in [
            "true", "1", "-1", "0.5", "\"x\"", "\"0\"", "[]", "{}", "1e-300",
        ] {
            assert!(is_truthy(yes.as_bytes()), "{yes}");
        }
        for no in ["false", "null", "0", "-0", "0.0", "-0.0", "\"\""] {
            assert!(!is_truthy(no.as_bytes()), "{no}");
        }
    }
}

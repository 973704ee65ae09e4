//! The check of a payload the gateway forwards or stores without reading it into a typed
//! struct: a relay's, a `route_request`'s and `route_response`'s, a `session_patch`'s
//! (PROTOCOL section 11, "Relays are checked").
//!
//! Contract:
//! - [`check`] refuses, as an `INVALID_MESSAGE` about `payload` (the code and field
//!   [`payloads::parse`](crate::core::wire::payloads::parse) gives for any other payload), a
//!   payload with: a key twice in one object, nesting deeper than [`MAX_DEPTH`] (the payload
//!   object itself is depth 1), a string with a lone surrogate escape (`"\ud800"`), or a number
//!   out of the range of an `f64` (`1e999999`). Anything else that is JSON passes.
//!   [`check_field`] is the same check of stored client JSON, its refusal naming its field.
//! - One pass over the bytes, bounded by the message size: no value is built. The pass is
//!   the [`walk`](crate::core::wire::walk) (the same checks, by hand, 8 string bytes at a
//!   time), which passes or refuses the payload itself, a refusal worded as the walk words
//!   it (`payload: duplicate key in an object at byte N`). [`check_serde`] is the same
//!   check done by serde_json, with its messages: the reference the walk keeps to (a
//!   decision the walk left to it would be read there). In that read strings are decoded by
//!   serde_json into its one scratch buffer. The keys of the objects being read are kept on
//!   one stack, borrowed from the input (a key with escapes is decoded once into
//!   one shared buffer), each with a 64-bit FNV-1a hash of its text; when an object ends
//!   its keys are sorted in place by hash, then text (so keys made to collide only fall back
//!   to sorting by text), checked for neighbours that are equal, and popped. So the work is
//!   O(n log n) in the payload's size and the only allocations are those two buffers
//!   growing, never one per value.

use std::fmt;

use serde::de::{self, DeserializeSeed, Deserializer, MapAccess, SeqAccess, Visitor};

use crate::core::wire::{walk, FieldError};

/// Deepest nesting of objects and arrays a checked payload may have, the payload object
/// counted as 1: with the envelope around it, a message nests at most 128 deep (PROTOCOL
/// section 11). It is also serde_json's own recursion limit, which every other payload is
/// read with, so the two agree; the walk counts it itself so that the bound (and the
/// recursion of the walk) does not depend on the parser.
pub(crate) const MAX_DEPTH: usize = 127;

/// Check the raw JSON object text of a payload (see the module contract): the
/// [`walk`](crate::core::wire::walk) decides in one pass; only what it leaves undecided (no
/// input today) is read again with `serde_json` ([`check_serde`]).
pub(crate) fn check(payload: &[u8]) -> Result<(), FieldError> {
    check_field(payload, "payload")
}

/// [`check`] of the JSON text of `field` (stored client JSON: an agent's `capabilities`, a
/// session's `metadata`): the refusal is an `INVALID_MESSAGE` about `field`, worded by the
/// walk (`metadata: duplicate key in an object at byte N`).
pub(crate) fn check_field(text: &[u8], field: &'static str) -> Result<(), FieldError> {
    check_text(text).map_err(|e| FieldError::new(field, format!("{field}: {e}")))
}

/// [`check`] with the refusal's text alone (`duplicate key in an object at byte N`).
pub(crate) fn check_text(text: &[u8]) -> Result<(), String> {
    match walk::strict(text) {
        Ok(()) => Ok(()),
        Err(walk::Stop::Refused(refusal)) => Err(refusal.to_string()),
        Err(_) => serde_error(text).map_err(|e| e.to_string()),
    }
}

/// The refusal of a payload the walk refused, as [`check`] gives it.
pub(crate) fn refused(refusal: walk::Refusal) -> FieldError {
    FieldError::new("payload", format!("payload: {refusal}"))
}

/// The check done by `serde_json`, with its error message: the reference [`check`] keeps to.
#[cfg(any(test, fuzzing))]
pub(crate) fn check_serde(payload: &[u8]) -> Result<(), FieldError> {
    serde_error(payload).map_err(|e| FieldError::new("payload", format!("payload: {e}")))
}

/// [`check_serde`]'s read, with `serde_json`'s error.
pub(crate) fn serde_error(payload: &[u8]) -> Result<(), serde_json::Error> {
    let mut walk = Walk {
        keys: Vec::new(),
        decoded: String::new(),
        depth: 0,
    };
    let mut de = serde_json::Deserializer::from_slice(payload);
    Node(&mut walk).deserialize(&mut de).and_then(|()| de.end())
}

/// A key of an object being read: borrowed from the input, or a range of `Walk::decoded`
/// when it had escapes.
#[derive(Clone, Copy)]
enum Key<'de> {
    Borrowed(&'de str),
    Decoded(usize, usize),
}

/// The state of one pass.
struct Walk<'de> {
    /// The keys of every object open on the path to the current value, outermost first,
    /// each with the [`fnv1a`] hash of its text.
    keys: Vec<(u64, Key<'de>)>,
    /// Keys that had escapes, decoded, one after the other.
    decoded: String,
    /// Objects and arrays open around the current value.
    depth: usize,
}

impl<'de> Walk<'de> {
    fn text<'s>(&'s self, key: &Key<'de>) -> &'s str {
        match *key {
            Key::Borrowed(text) => text,
            Key::Decoded(start, end) => &self.decoded[start..end],
        }
    }

    fn enter<E: de::Error>(&mut self) -> Result<(), E> {
        self.depth += 1;
        if self.depth > MAX_DEPTH {
            return Err(E::custom(format_args!(
                "nesting deeper than {MAX_DEPTH} levels"
            )));
        }
        Ok(())
    }

    /// Whether two of the keys from `start` on are equal; pops them.
    fn duplicate_since(&mut self, start: usize) -> bool {
        let mut own = std::mem::take(&mut self.keys);
        let object = &mut own[start..];
        object.sort_unstable_by(|a, b| {
            a.0.cmp(&b.0)
                .then_with(|| self.text(&a.1).cmp(self.text(&b.1)))
        });
        let duplicate = object
            .windows(2)
            .any(|pair| pair[0].0 == pair[1].0 && self.text(&pair[0].1) == self.text(&pair[1].1));
        own.truncate(start);
        self.keys = own;
        duplicate
    }
}

/// One value anywhere in the payload.
struct Node<'w, 'de>(&'w mut Walk<'de>);

impl<'de> DeserializeSeed<'de> for Node<'_, 'de> {
    type Value = ();

    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<(), D::Error> {
        deserializer.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for Node<'_, 'de> {
    type Value = ();

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("any JSON value")
    }

    // Scalars: serde_json has already refused a lone surrogate in a string and a number
    // out of range when it calls these.
    fn visit_bool<E: de::Error>(self, _: bool) -> Result<(), E> {
        Ok(())
    }

    fn visit_i64<E: de::Error>(self, _: i64) -> Result<(), E> {
        Ok(())
    }

    fn visit_u64<E: de::Error>(self, _: u64) -> Result<(), E> {
        Ok(())
    }

    fn visit_f64<E: de::Error>(self, v: f64) -> Result<(), E> {
        if v.is_finite() {
            Ok(())
        } else {
            Err(E::custom("number out of range"))
        }
    }

    fn visit_str<E: de::Error>(self, _: &str) -> Result<(), E> {
        Ok(())
    }

    fn visit_unit<E: de::Error>(self) -> Result<(), E> {
        Ok(())
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<(), A::Error> {
        self.0.enter()?;
        while seq.next_element_seed(Node(&mut *self.0))?.is_some() {}
        self.0.depth -= 1;
        Ok(())
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<(), A::Error> {
        self.0.enter()?;
        let start = self.0.keys.len();
        while map.next_key_seed(KeySeed(&mut *self.0))?.is_some() {
            map.next_value_seed(Node(&mut *self.0))?;
        }
        if self.0.duplicate_since(start) {
            return Err(de::Error::custom("duplicate key in an object"));
        }
        self.0.depth -= 1;
        Ok(())
    }
}

/// One object key: pushed on the walk's key stack.
struct KeySeed<'w, 'de>(&'w mut Walk<'de>);

impl<'de> DeserializeSeed<'de> for KeySeed<'_, 'de> {
    type Value = ();

    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<(), D::Error> {
        deserializer.deserialize_str(self)
    }
}

impl<'de> Visitor<'de> for KeySeed<'_, 'de> {
    type Value = ();

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("an object key")
    }

    fn visit_borrowed_str<E: de::Error>(self, v: &'de str) -> Result<(), E> {
        self.0.keys.push((fnv1a(v), Key::Borrowed(v)));
        Ok(())
    }

    fn visit_str<E: de::Error>(self, v: &str) -> Result<(), E> {
        let start = self.0.decoded.len();
        self.0.decoded.push_str(v);
        let key = Key::Decoded(start, self.0.decoded.len());
        self.0.keys.push((fnv1a(v), key));
        Ok(())
    }
}

/// The 64-bit FNV-1a hash of `text`: cheap, and only a sort key (equal hashes are compared
/// by text), so a client that makes keys collide gains nothing.
fn fnv1a(text: &str) -> u64 {
    text.bytes().fold(0xcbf2_9ce4_8422_2325, |hash, byte| {
        (hash ^ u64::from(byte)).wrapping_mul(0x0000_0100_0000_01b3)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn nested(depth: usize) -> String {
        // The payload object, then arrays inside it.
        format!(
            "{{\"a\":{}{}}}",
            "[".repeat(depth - 1),
            "]".repeat(depth - 1)
        )
    }

    #[test]
    fn ordinary_payloads_pass() {
        for ok in [
            r#"{}"#,
            r#"{"text":"hi","n":[1,-2,3.5,1e308,12345678901234567890123],"o":{"a":null,"b":true}}"#,
            r#"{"a":{"x":1},"b":{"x":2},"x":[{"x":1},{"x":1}]}"#,
            r#"{"emoji":"\ud83d\ude00","esc":"\n\u0000"}"#,
            r#"{"a\u0062":1,"ab\u0063":2}"#,
        ] {
            assert_eq!(check(ok.as_bytes()), Ok(()), "{ok}");
        }
        assert_eq!(check(nested(MAX_DEPTH).as_bytes()), Ok(()));
    }

    fn refused(payload: &str) -> String {
        let error = check(payload.as_bytes()).expect_err(payload);
        assert_eq!(error.field, "payload");
        error.message
    }

    #[test]
    fn duplicate_keys_are_refused_at_any_depth_even_when_escaped() {
        assert_eq!(
            refused(r#"{"a":1,"a":2}"#),
            "payload: duplicate key in an object at byte 7"
        );
        // In an object of more than 8 keys it is found at the object's end.
        let keys: String = (0..9).map(|i| format!("\"k{i}\":0,")).collect();
        let wide = format!("{{{keys}\"k0\":1}}");
        assert_eq!(
            refused(&wide),
            format!(
                "payload: duplicate key in an object at byte {}",
                wide.len() - 1
            )
        );
        assert!(refused(r#"{"x":[{"b":1,"c":2,"b":3}]}"#).contains("duplicate key"));
        assert!(refused(r#"{"ab":1,"a\u0062":2}"#).contains("duplicate key"));
        assert!(refused(r#"{"o":{"k":1},"p":{"k\u0000":1,"k\u0000":2}}"#).contains("duplicate"));
        // A key of an outer object seen again after a nested object.
        assert!(refused(r#"{"a":{"b":1},"c":2,"a":3}"#).contains("duplicate key"));
    }

    #[test]
    fn depth_surrogates_and_range_are_refused() {
        let _ = refused(&nested(MAX_DEPTH + 1));
        let _ = refused(&nested(100_000));
        assert!(refused(&nested(MAX_DEPTH + 1)).contains("nesting deeper than 127 levels"));
        assert_eq!(
            refused(r#"{"s":"\ud800"}"#),
            "payload: lone surrogate escape at byte 6"
        );
        assert!(refused(r#"{"s":"\ud800\u0041"}"#).contains("surrogate"));
        assert!(refused(r#"{"s":"x\udc00y"}"#).contains("surrogate"));
        let _ = refused(r#"{"\ud800":1}"#);
        assert_eq!(
            refused(r#"{"n":1e999999}"#),
            "payload: number out of range at byte 5"
        );
        assert!(refused(r#"{"n":[-1e400]}"#).contains("out of range"));
    }

    #[test]
    fn not_json_is_refused_too() {
        for bad in ["", "{", r#"{"a":1} x"#, r#"{"a":tru}"#] {
            let _ = refused(bad);
        }
        assert_eq!(
            refused(r#"{"a":1 "b":2}"#),
            "payload: expected `,` or `}` at byte 7"
        );
        let error = check(b"{\"a\":\"\xff\"}").unwrap_err();
        assert_eq!(error.message, "payload: invalid UTF-8 at byte 6");
    }

    #[test]
    fn the_depth_agrees_with_how_other_payloads_are_read() {
        let read = |text: &str| serde_json::from_str::<serde_json::Value>(text).is_ok();
        assert!(read(&nested(MAX_DEPTH)));
        assert!(!read(&nested(MAX_DEPTH + 1)));
    }
}

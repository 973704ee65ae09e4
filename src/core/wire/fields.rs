//! The typed read of a payload from the members the envelope's walk noted: a request reads
//! only the members it has fields for, each from its own bytes, never passing over the rest
//! of the payload again (PROTOCOL section 11, "Work per message").
//!
//! Contract:
//! - [`NAMES`] is every member name a payload struct of
//!   [`payloads`](crate::core::wire::payloads) reads; [`noted`] is how the walk picks them out
//!   ([`walk::Noted`]).
//! - [`read`] gives exactly what `serde_json::from_slice` gives for the whole payload (the
//!   value, or the error's text, its line and column counted in the payload), or `None` where
//!   it cannot tell (a struct with a field not in [`NAMES`], a shape it does not read): the
//!   caller then reads the whole payload with `serde_json`. It relies on what the walk has
//!   checked: the payload's grammar, and that no member before the last noted one has a key
//!   `serde_json` refuses (such a key is noted, and read, as [`walk::Noted::BadKey`]).
//! - Members not noted are not read: `serde_json` passes over them only to check their grammar
//!   (`IgnoredAny`), which the walk has done. A noted member's value is read by `serde_json`
//!   from its first byte, except where that read would only check what the walk checked: a
//!   [`Raw`] value is its span; a [`LOOSE`] object or array (the kind is all a `Loose` keeps)
//!   is its kind when it read cleanly; a member the struct does not have is not read.

use serde::de::{self, DeserializeSeed, Deserializer, MapAccess, SeqAccess, Visitor};
use serde::Deserialize;
use serde_json::value::RawValue;

use crate::core::wire::walk::Noted;

/// Every member name the payload structs read (a test holds the structs to it).
pub(crate) const NAMES: [&str; 24] = [
    "token",
    "password",
    "clientId",
    "clientType",
    "deviceId",
    "deviceName",
    "role",
    "protocolVersion",
    "sessionId",
    "name",
    "metadata",
    "access",
    "allowUsers",
    "sessionKey",
    "patch",
    "status",
    "limit",
    "cursor",
    "reason",
    "agentId",
    "type",
    "capabilities",
    "capability",
    "onlineOnly",
];

/// The slot of a name in [`SLOTS`]: its length, first and last byte mixed.
const fn slot(name: &[u8]) -> usize {
    let (first, last) = (name[0] as usize, name[name.len() - 1] as usize);
    (name.len() + first * 9 + last * 8) % 64
}

/// [`NAMES`] by [`slot`], one index (plus 1; 0 is none) each: a name is looked up with one
/// comparison, whatever the payload's keys are.
const SLOTS: [u8; 64] = {
    let mut slots = [0u8; 64];
    let mut i = 0;
    while i < NAMES.len() {
        let at = slot(NAMES[i].as_bytes());
        assert!(slots[at] == 0, "two names in one slot");
        slots[at] = i as u8 + 1;
        i += 1;
    }
    slots
};

/// The index in [`NAMES`] of `name` (a decoded key), if it is one.
#[inline]
pub(crate) fn noted(name: &[u8]) -> Option<usize> {
    if name.is_empty() {
        return None;
    }
    let index = usize::from(SLOTS[slot(name)]).checked_sub(1)?;
    (NAMES[index].as_bytes() == name).then_some(index)
}

/// The newtype name [`Loose`](crate::core::wire::Loose) is read under: `serde_json` reads it
/// as the value inside; [`read`] as the kind alone of a clean object or array.
pub(crate) const LOOSE: &str = "$gateway::Loose";

/// The newtype name [`Raw`] is read under.
const RAW: &str = "$gateway::Raw";

/// A member's JSON text as sent, borrowed: what `serde_json`'s `&RawValue` gives (its text
/// from the whole payload; its span from [`read`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Raw<'a>(&'a str);

impl<'a> Raw<'a> {
    /// The JSON text.
    pub(crate) fn get(&self) -> &'a str {
        self.0
    }
}

impl<'de: 'a, 'a> Deserialize<'de> for Raw<'a> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_newtype_struct(RAW, RawVisitor)
    }
}

struct RawVisitor;

impl<'de> Visitor<'de> for RawVisitor {
    type Value = Raw<'de>;

    fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("any JSON value")
    }

    fn visit_borrowed_str<E: de::Error>(self, v: &'de str) -> Result<Self::Value, E> {
        Ok(Raw(v))
    }

    fn visit_newtype_struct<D: Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
        <&RawValue>::deserialize(d).map(|raw| Raw(raw.get()))
    }
}

/// Read `payload` (a whole object the walk accepted) into `T` from the members `noted` in it
/// (see the module header); `Err` holds the text of `serde_json`'s error. `None`: read the
/// whole payload instead.
pub(crate) fn read<'a, T: Deserialize<'a>>(
    payload: &'a [u8],
    noted: &[Noted],
) -> Option<Result<T, String>> {
    let mut members = Members {
        payload,
        noted,
        next: 0,
        last: None,
        unsure: false,
    };
    match T::deserialize(&mut members) {
        Ok(value) => Some(Ok(value)),
        Err(_) if members.unsure => None,
        Err(error) => members.word(&error).map(Err),
    }
}

/// Where the read last was: the start of a key or of a value, and for a key its end.
#[derive(Clone, Copy)]
enum Last {
    Key { start: usize, end: usize },
    Value(usize),
}

/// The deserializer of a payload from its noted members.
struct Members<'a, 'n> {
    payload: &'a [u8],
    noted: &'n [Noted],
    next: usize,
    last: Option<Last>,
    /// Set where the read cannot tell what `serde_json` gives.
    unsure: bool,
}

/// An error that only ends the read; the whole payload is read instead.
fn unsure() -> serde_json::Error {
    de::Error::custom("not read from the noted members")
}

impl Members<'_, '_> {
    /// The text `serde_json` gives for `error` read from the whole payload: its position
    /// moved from the member's text to the payload (an error without one, the struct's own,
    /// e.g. a duplicate field, is where the whole read stands then: after the key and the
    /// white space after it).
    fn word(&self, error: &serde_json::Error) -> Option<String> {
        let text = error.to_string();
        let (what, at) = match (self.last?, error.line()) {
            (Last::Key { end, .. }, 0) => {
                let ws = self.payload[end..]
                    .iter()
                    .take_while(|b| matches!(b, b' ' | b'\n' | b'\t' | b'\r'))
                    .count();
                (text.as_str(), end + ws)
            }
            (_, 0) => return None,
            (Last::Key { start, .. } | Last::Value(start), line) => {
                let suffix = format!(" at line {line} column {}", error.column());
                let what = text.strip_suffix(&suffix)?;
                (
                    what,
                    start + index_of(&self.payload[start..], line, error.column())?,
                )
            }
        };
        let (line, column) = position_of(self.payload, at);
        Some(format!("{what} at line {line} column {column}"))
    }
}

/// The line (from 1) and column `serde_json` gives for byte `i` of `text`.
fn position_of(text: &[u8], i: usize) -> (usize, usize) {
    let head = &text[..i.min(text.len())];
    let line_start = head.iter().rposition(|&b| b == b'\n').map_or(0, |p| p + 1);
    let line = 1 + head[..line_start].iter().filter(|&&b| b == b'\n').count();
    (line, i - line_start)
}

/// The byte of `text` at `line` (from 1) and `column`, as [`position_of`] counts them.
fn index_of(text: &[u8], line: usize, column: usize) -> Option<usize> {
    let mut start = 0;
    for _ in 1..line {
        start += text.get(start..)?.iter().position(|&b| b == b'\n')? + 1;
    }
    Some(start + column)
}

impl<'de> MapAccess<'de> for Members<'de, '_> {
    type Error = serde_json::Error;

    fn next_key_seed<K: DeserializeSeed<'de>>(
        &mut self,
        seed: K,
    ) -> Result<Option<K::Value>, Self::Error> {
        let Some(&noted) = self.noted.get(self.next) else {
            return Ok(None);
        };
        let (start, end) = match noted {
            Noted::Member { key, key_end, .. } => (key, key_end),
            Noted::BadKey(key) => (key, key),
        };
        self.last = Some(Last::Key { start, end });
        let mut de = serde_json::Deserializer::from_slice(&self.payload[start..]);
        let key = seed.deserialize(&mut de)?;
        if let Noted::BadKey(_) = noted {
            // serde_json refuses such a key; a key that reads is not what the walk noted.
            return Err(self.end());
        }
        Ok(Some(key))
    }

    fn next_value_seed<V: DeserializeSeed<'de>>(
        &mut self,
        seed: V,
    ) -> Result<V::Value, Self::Error> {
        let Some(&Noted::Member {
            value,
            value_end,
            clean,
            ..
        }) = self.noted.get(self.next)
        else {
            return Err(self.end());
        };
        self.next += 1;
        self.last = Some(Last::Value(value));
        seed.deserialize(Value {
            payload: self.payload,
            start: value,
            end: value_end,
            clean,
            unsure: &mut self.unsure,
        })
    }
}

/// Deserializer methods that end the read (shapes no payload struct has).
macro_rules! unsure {
    ($($method:ident)*) => {
        $(
            fn $method<V: Visitor<'de>>(self, _visitor: V) -> Result<V::Value, Self::Error> {
                Err(self.end())
            }
        )*
    };
}

/// The other Deserializer methods that end the read, with their extra arguments.
macro_rules! unsure_shapes {
    () => {
        fn deserialize_unit_struct<V: Visitor<'de>>(
            self,
            _name: &'static str,
            _visitor: V,
        ) -> Result<V::Value, Self::Error> {
            Err(self.end())
        }

        fn deserialize_tuple<V: Visitor<'de>>(
            self,
            _len: usize,
            _visitor: V,
        ) -> Result<V::Value, Self::Error> {
            Err(self.end())
        }

        fn deserialize_tuple_struct<V: Visitor<'de>>(
            self,
            _name: &'static str,
            _len: usize,
            _visitor: V,
        ) -> Result<V::Value, Self::Error> {
            Err(self.end())
        }

        fn deserialize_enum<V: Visitor<'de>>(
            self,
            _name: &'static str,
            _variants: &'static [&'static str],
            _visitor: V,
        ) -> Result<V::Value, Self::Error> {
            Err(self.end())
        }
    };
}

impl Members<'_, '_> {
    /// End the read: the whole payload is read instead.
    fn end(&mut self) -> serde_json::Error {
        self.unsure = true;
        unsure()
    }
}

impl<'de> Deserializer<'de> for &mut Members<'de, '_> {
    type Error = serde_json::Error;

    fn deserialize_struct<V: Visitor<'de>>(
        self,
        _name: &'static str,
        fields: &'static [&'static str],
        visitor: V,
    ) -> Result<V::Value, Self::Error> {
        if !fields.iter().all(|field| noted(field.as_bytes()).is_some()) {
            return Err(self.end());
        }
        visitor.visit_map(self)
    }

    fn deserialize_newtype_struct<V: Visitor<'de>>(
        self,
        _name: &'static str,
        _visitor: V,
    ) -> Result<V::Value, Self::Error> {
        Err(self.end())
    }

    unsure! {
        deserialize_any deserialize_bool deserialize_i8 deserialize_i16 deserialize_i32
        deserialize_i64 deserialize_u8 deserialize_u16 deserialize_u32 deserialize_u64
        deserialize_f32 deserialize_f64 deserialize_char deserialize_str deserialize_string
        deserialize_bytes deserialize_byte_buf deserialize_option deserialize_unit
        deserialize_seq deserialize_map deserialize_identifier deserialize_ignored_any
    }
    unsure_shapes!();
}

/// The value of one noted member, `payload[start..end]`.
struct Value<'a, 'u> {
    payload: &'a [u8],
    start: usize,
    end: usize,
    clean: bool,
    unsure: &'u mut bool,
}

impl<'a> Value<'a, '_> {
    /// End the read: the whole payload is read instead.
    fn end(self) -> serde_json::Error {
        *self.unsure = true;
        unsure()
    }

    /// `serde_json`'s reader from the value's first byte on (the bytes after it are those the
    /// read of the whole payload sees there).
    fn serde(&self) -> serde_json::Deserializer<serde_json::de::SliceRead<'a>> {
        serde_json::Deserializer::from_slice(&self.payload[self.start..])
    }

    fn text(&self) -> &'a [u8] {
        &self.payload[self.start..self.end]
    }
}

/// A map or sequence with nothing in it: a clean object's or array's kind, for a visitor
/// that keeps only that.
struct Nothing;

impl<'de> MapAccess<'de> for Nothing {
    type Error = serde_json::Error;

    fn next_key_seed<K: DeserializeSeed<'de>>(
        &mut self,
        _seed: K,
    ) -> Result<Option<K::Value>, Self::Error> {
        Ok(None)
    }

    fn next_value_seed<V: DeserializeSeed<'de>>(
        &mut self,
        _seed: V,
    ) -> Result<V::Value, Self::Error> {
        Err(unsure())
    }
}

impl<'de> SeqAccess<'de> for Nothing {
    type Error = serde_json::Error;

    fn next_element_seed<T: DeserializeSeed<'de>>(
        &mut self,
        _seed: T,
    ) -> Result<Option<T::Value>, Self::Error> {
        Ok(None)
    }
}

impl<'de> Deserializer<'de> for Value<'de, '_> {
    type Error = serde_json::Error;

    fn deserialize_any<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Self::Error> {
        self.serde().deserialize_any(visitor)
    }

    fn deserialize_option<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Self::Error> {
        if self.text() == b"null" {
            visitor.visit_none()
        } else {
            visitor.visit_some(self)
        }
    }

    fn deserialize_newtype_struct<V: Visitor<'de>>(
        self,
        name: &'static str,
        visitor: V,
    ) -> Result<V::Value, Self::Error> {
        match (name, self.text().first()) {
            (RAW, _) => match std::str::from_utf8(self.text()) {
                Ok(text) => visitor.visit_borrowed_str(text),
                Err(_) => Err(self.end()),
            },
            (LOOSE, Some(b'{')) if self.clean => visitor.visit_map(Nothing),
            (LOOSE, Some(b'[')) if self.clean => visitor.visit_seq(Nothing),
            _ => self.serde().deserialize_newtype_struct(name, visitor),
        }
    }

    fn deserialize_ignored_any<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Self::Error> {
        visitor.visit_unit()
    }

    fn deserialize_struct<V: Visitor<'de>>(
        self,
        _name: &'static str,
        _fields: &'static [&'static str],
        _visitor: V,
    ) -> Result<V::Value, Self::Error> {
        Err(self.end())
    }

    unsure! {
        deserialize_bool deserialize_i8 deserialize_i16 deserialize_i32
        deserialize_i64 deserialize_u8 deserialize_u16 deserialize_u32 deserialize_u64
        deserialize_f32 deserialize_f64 deserialize_char deserialize_str deserialize_string
        deserialize_bytes deserialize_byte_buf deserialize_unit
        deserialize_seq deserialize_map deserialize_identifier
    }
    unsure_shapes!();
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_name_is_found_and_nothing_else() {
        for (i, name) in NAMES.iter().enumerate() {
            assert_eq!(noted(name.as_bytes()), Some(i), "{name}");
        }
        for other in [
            "",
            "x",
            "Token",
            "tokens",
            "agentid",
            "sessionIx",
            "k0000001",
        ] {
            assert_eq!(noted(other.as_bytes()), None, "{other}");
        }
    }

    #[test]
    fn positions_are_counted_as_serde_json_counts_them() {
        let text = b"{\n  \"a\": 1e999\n}";
        let error = serde_json::from_slice::<serde_json::Value>(text).unwrap_err();
        let at = index_of(text, error.line(), error.column()).unwrap();
        assert_eq!(position_of(text, at), (error.line(), error.column()));
    }
}

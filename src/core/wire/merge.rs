//! A shallow merge of a JSON object into stored metadata, as text: `session_patch`
//! (PROTOCOL section 4).
//!
//! Contract:
//! - `stored` is the compact text serde_json writes for a `Map<String, Value>` (keys sorted,
//!   each value as a `Value` writes it; text that is not such an object counts as `{}`);
//!   `patch` is the text of a JSON object with no key twice in any object (a payload that
//!   passed [`strict::check`](crate::core::wire::strict)).
//! - [`merge`] returns exactly what `serde_json::to_string` gives for `stored` read as a map
//!   with each member of `patch` inserted, a `null` removing its key instead; `None` when
//!   that text is longer than `limit` bytes (or the input is not what the contract says).
//! - A streaming merge of two sorted sequences of keys: the stored members are read one by
//!   one, in their order, and written out as they are read, between the patch's members,
//!   which are the only keys sorted (a list of keys borrowed from the patch, bounded by the
//!   message). No tree and no owned key is built for the stored text (a key with an escape
//!   excepted), so a patch costs one read of the stored text, one write of the result and
//!   the sort of its own keys. Stored text whose keys are not in order (not what `merge`
//!   or [`compact`] writes) is read into that list and sorted the same way first.
//! - No tree is built for a patch value without an object in it: stored values are copied
//!   verbatim, a patch value is compacted ([`compact`]) straight into the result; only a
//!   patch value that holds an object (a `{` anywhere in its text) is read as a `Value`, to
//!   sort its keys, after its compact text has fit. The result is refused as soon as what is
//!   written passes `limit`, so an oversized patch costs at most `limit` bytes of output.
//! - The patch's members are read only while those other than `null` could still fit in
//!   `limit` (see [`Bounded`]): a patch of many members past the limit is refused after
//!   reading about `limit` bytes of them, before any sort.

use std::borrow::Cow;
use std::cmp::Ordering;
use std::fmt;

use serde::de::{self, Deserialize, DeserializeSeed, Deserializer as _, MapAccess, Visitor};
use serde_json::value::RawValue;
use serde_json::Value;

use crate::core::wire::compact::{compact, Budget, CompactError};
use crate::core::wire::write_str;

/// A member of an object: its key (borrowed unless it had an escape) and its value's text.
type Member<'a> = (Cow<'a, str>, &'a RawValue);

/// `stored` with the members of `patch` merged in, within `limit` bytes (see the contract).
pub(crate) fn merge(stored: &str, patch: &[u8], limit: usize) -> Option<Box<str>> {
    let mut de = serde_json::Deserializer::from_slice(patch);
    let read = Bounded(limit).deserialize(&mut de);
    let patch = sorted(read.and_then(|members| de.end().map(|()| members)).ok()?.0);
    let room = stored.len().saturating_add(patch_len(&patch)).min(limit);
    let mut merger = Merger::new(&patch, limit, room);
    let mut de = serde_json::Deserializer::from_str(stored);
    let read = (&mut de)
        .deserialize_map(InOrder(&mut merger))
        .and_then(|()| de.end());
    if read.is_err() {
        if matches!(merger.halt, Some(Halt::Invalid)) {
            return None;
        }
        // Not text `merge` writes: its members sorted first, or none if it is not an object.
        let unsorted = merger.unsorted;
        merger = Merger::new(&patch, limit, room);
        if let Some(Members(members)) = unsorted
            .then(|| serde_json::from_str(stored).ok())
            .flatten()
        {
            for (key, value) in &sorted(members) {
                merger.stored(key, value);
            }
        }
    }
    merger.finish()
}

/// The text lengths of a patch's members: about what they add to the result.
fn patch_len(patch: &[Member<'_>]) -> usize {
    patch.iter().map(|(k, v)| k.len() + v.get().len() + 4).sum()
}

/// `members` sorted by key, the last of a key kept (as a map read from them keeps it).
fn sorted(mut members: Vec<Member<'_>>) -> Vec<Member<'_>> {
    members.sort_by(|a, b| a.0.cmp(&b.0));
    members.dedup_by(|later, kept| {
        let same = later.0 == kept.0;
        if same {
            std::mem::swap(later, kept);
        }
        same
    });
    members
}

/// Why a merge stopped writing.
enum Halt {
    /// The result passed the limit (it only grows).
    Over,
    /// A patch value is not a JSON value `serde_json` reads.
    Invalid,
}

/// The result being written: the stored members handed in order, the patch's interleaved.
struct Merger<'p> {
    /// The patch's members, sorted, and the first not yet written.
    patch: &'p [Member<'p>],
    next: usize,
    /// The result so far, from its `{`.
    out: Vec<u8>,
    limit: usize,
    halt: Option<Halt>,
    /// The stored text had a key not after the one before it.
    unsorted: bool,
}

impl<'p> Merger<'p> {
    fn new(patch: &'p [Member<'p>], limit: usize, room: usize) -> Self {
        let mut out = Vec::with_capacity(room.saturating_add(2));
        out.push(b'{');
        Merger {
            patch,
            next: 0,
            out,
            limit,
            halt: None,
            unsorted: false,
        }
    }

    /// The next stored member: the patch's members before its key, then the patch's member
    /// of that key if there is one, else this one.
    fn stored(&mut self, key: &str, value: &RawValue) {
        let patch = self.patch;
        while self.halt.is_none() {
            let Some((k, v)) = patch.get(self.next) else {
                break;
            };
            let order = k.as_ref().cmp(key);
            if order == Ordering::Greater {
                break;
            }
            self.next += 1;
            self.patched(k, v);
            if order == Ordering::Equal {
                return;
            }
        }
        if self.halt.is_none() {
            self.open(key);
            self.out.extend_from_slice(value.get().as_bytes());
            self.check();
        }
    }

    /// A patch member: nothing for a `null`, else its key and its value's compact text.
    fn patched(&mut self, key: &str, value: &RawValue) {
        let raw = value.get();
        if raw == "null" {
            return;
        }
        self.open(key);
        self.check();
        if self.halt.is_some() {
            return;
        }
        let start = self.out.len();
        // At most `limit - 1` bytes, the `}` to come.
        let max = self.limit.saturating_sub(1);
        let budget = &mut Budget {
            out: &mut self.out,
            max,
        };
        match compact(raw.as_bytes(), budget) {
            Ok(()) => {}
            Err(CompactError::TooLarge) => self.halt = Some(Halt::Over),
            Err(CompactError::Invalid(_)) => self.halt = Some(Halt::Invalid),
        }
        if self.halt.is_none() && self.out[start..].contains(&b'{') {
            let tree = serde_json::from_slice::<Value>(&self.out[start..]);
            self.out.truncate(start);
            match tree {
                Ok(tree) if serde_json::to_writer(&mut self.out, &tree).is_ok() => {}
                _ => self.halt = Some(Halt::Invalid),
            }
        }
        self.check();
    }

    /// A member's key and `:`, after a `,` if it is not the first.
    fn open(&mut self, key: &str) {
        if self.out.len() > 1 {
            self.out.push(b',');
        }
        write_str(&mut self.out, key);
        self.out.push(b':');
    }

    /// Refuse once the result, with its `}`, is longer than the limit.
    fn check(&mut self) {
        if self.halt.is_none() && self.out.len() >= self.limit {
            self.halt = Some(Halt::Over);
        }
    }

    /// The patch's members after the last stored key, and the `}`.
    fn finish(mut self) -> Option<Box<str>> {
        let patch = self.patch;
        for (key, value) in &patch[self.next..] {
            if self.halt.is_some() {
                break;
            }
            self.patched(key, value);
        }
        self.check();
        if self.halt.is_some() {
            return None;
        }
        self.out.push(b'}');
        String::from_utf8(self.out).ok().map(String::into_boxed_str)
    }
}

/// The stored text read as an object, each member handed to the merger as it is read;
/// stops at a key not after the one before it.
struct InOrder<'m, 'p>(&'m mut Merger<'p>);

impl<'de> Visitor<'de> for InOrder<'_, '_> {
    type Value = ();

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("an object")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<(), A::Error> {
        let mut last: Option<Cow<'de, str>> = None;
        while let Some(key) = map.next_key_seed(Key)? {
            let value: &'de RawValue = map.next_value()?;
            if last.as_ref().is_some_and(|last| *last >= key) {
                self.0.unsorted = true;
                return Err(de::Error::custom("keys out of order"));
            }
            self.0.stored(&key, value);
            if matches!(self.0.halt, Some(Halt::Invalid)) {
                return Err(de::Error::custom("an invalid patch value"));
            }
            last = Some(key);
        }
        Ok(())
    }
}

/// An object's members in their order.
struct Members<'a>(Vec<Member<'a>>);

impl<'de> Deserialize<'de> for Members<'de> {
    fn deserialize<D: de::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        Bounded(usize::MAX).deserialize(d)
    }
}

/// The members of a patch whose result is at most this many bytes: the read stops with an
/// error as soon as the members other than `null` read so far could not fit (each adds at
/// least its key quoted, a `:`, one byte of value and a `,` or the `{`; the keys of a
/// patch are distinct), so a patch far past the limit costs the reading of about the
/// limit's worth of members, not of the whole patch.
struct Bounded(usize);

impl<'de> DeserializeSeed<'de> for Bounded {
    type Value = Members<'de>;

    fn deserialize<D: de::Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
        d.deserialize_map(self)
    }
}

impl<'de> Visitor<'de> for Bounded {
    type Value = Members<'de>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("an object")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Members<'de>, A::Error> {
        let mut members = Vec::new();
        // The least the result can be: its `}`, then what each member adds.
        let mut least = 1usize;
        while let Some(key) = map.next_key_seed(Key)? {
            let value: &RawValue = map.next_value()?;
            if value.get() != "null" {
                least = least.saturating_add(key.len() + 5);
                if least > self.0 {
                    return Err(de::Error::custom("the patch's members pass the limit"));
                }
            }
            members.push((key, value));
        }
        Ok(Members(members))
    }
}

/// A key, borrowed from the text unless it had an escape.
struct Key;

impl<'de> DeserializeSeed<'de> for Key {
    type Value = Cow<'de, str>;

    fn deserialize<D: de::Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
        d.deserialize_str(self)
    }
}

impl<'de> Visitor<'de> for Key {
    type Value = Cow<'de, str>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a key")
    }

    fn visit_borrowed_str<E: de::Error>(self, v: &'de str) -> Result<Self::Value, E> {
        Ok(Cow::Borrowed(v))
    }

    fn visit_str<E: de::Error>(self, v: &str) -> Result<Self::Value, E> {
        Ok(Cow::Owned(v.to_owned()))
    }
}
#[cfg(test)]
mod tests {
    use super::*;
    use crate::testkit::Rng;
    use serde_json::{json, Map};

    /// What the merge stood for: a tree, merged and written.
    fn by_tree(stored: &str, patch: &str, limit: usize) -> Option<Box<str>> {
        let mut map: Map<String, Value> = serde_json::from_str(stored).unwrap_or_default();
        let patch: Map<String, Value> = serde_json::from_str(patch).unwrap();
        for (key, value) in patch {
            if value.is_null() {
                map.remove(&key);
            } else {
                map.insert(key, value);
            }
        }
        let text = serde_json::to_string(&map).unwrap();
        (text.len() <= limit).then(|| text.into_boxed_str())
    }

    #[test]
    fn agrees_with_a_tree_merge() {
        let stored = serde_json::to_string(&json!({
            "a": 1, "b": {"y": [1, 2.5, -3], "x": "é\n"}, "c": [true, null], "z\"q": "s"
        }))
        .unwrap();
        for patch in [
            r#"{}"#,
            r#"{"a":null,"zz":1}"#,
            r#"{ "b" : { "q" : { "k2" : 1 , "k1" : [ {"b":1,"a":2} ] } } }"#,
            r#"{"m":[0, 0, 1e3, -0, 0.5, 12345678901234567890123, "\u0041\/"]}"#,
            r#"{"a\u0062":"x","":{},"c":[]}"#,
            r#"{"new":"{not an object}","b":null,"nope":null}"#,
        ] {
            for limit in [0, 10, 40, 60, 80, 1000] {
                assert_eq!(
                    merge(&stored, patch.as_bytes(), limit),
                    by_tree(&stored, patch, limit),
                    "{patch} within {limit}"
                );
            }
        }
        assert_eq!(
            merge("not json", br#"{"a":1}"#, 100).as_deref(),
            Some(r#"{"a":1}"#)
        );
    }

    #[test]
    fn agrees_at_the_limit_and_one_byte_under() {
        let stored = r#"{"a":1,"c":[1,{"b":2}]}"#;
        for patch in [
            r#"{}"#,
            r#"{"a":1}"#,
            r#"{"b":"x"}"#,
            r#"{"a":null,"d":{"z":1,"y":2}}"#,
            r#"{"c":null,"a":null}"#,
        ] {
            for stored in [stored, "{}"] {
                let len = by_tree(stored, patch, usize::MAX).unwrap().len();
                for limit in [len - 1, len, len + 1] {
                    assert_eq!(
                        merge(stored, patch.as_bytes(), limit),
                        by_tree(stored, patch, limit),
                        "{patch} into {stored} within {limit}"
                    );
                }
            }
        }
    }

    #[test]
    fn stored_text_merge_does_not_write_is_read_as_a_map_reads_it() {
        let patch = r#"{"b":7,"zz":null}"#;
        for stored in [
            r#"{"b":1,"a":2}"#,
            r#"{"a":1,"a":2,"c":3}"#,
            r#"{"c":1,"b":2,"c":3}"#,
            r#"{"a\"b":1,"a\u0062":2,"\u00e9":3}"#,
            r#" {"b":1,"a":[1,2]} "#,
            r#"{"a":1} x"#,
            r#"{"a":1"#,
            r#"[1,2]"#,
            r#""text""#,
            "",
        ] {
            for limit in [0, 8, 12, 16, 20, 100] {
                assert_eq!(
                    merge(stored, patch.as_bytes(), limit),
                    by_tree(stored, patch, limit),
                    "{patch} into {stored} within {limit}"
                );
            }
        }
    }

    #[test]
    fn an_invalid_patch_is_refused_whatever_is_stored() {
        for patch in [r#"[1]"#, r#"{"a":1"#, r#"{"a":1e400}"#, r#"{"a":"\ud800"}"#] {
            for stored in [r#"{"a":1}"#, "{}", "[", r#"{"b":1,"a":2}"#] {
                assert_eq!(merge(stored, patch.as_bytes(), 1000), None, "{patch}");
            }
        }
    }

    /// Random maps and patches over a few keys (escaped ones among them), so that keys meet.
    #[test]
    fn agrees_with_a_tree_merge_on_random_maps() {
        const KEYS: [&str; 9] = ["", "a", "ab", "b", "\"", "é", "\n", "z\\", "€x"];
        fn value(rng: &mut Rng, depth: usize) -> String {
            match rng.below(if depth == 0 { 4 } else { 6 }) {
                0 => rng.below(1000).to_string(),
                1 => format!("{:?}", *rng.pick(&KEYS)),
                2 => "true".to_owned(),
                3 => "null".to_owned(),
                4 => {
                    let items: Vec<String> =
                        (0..rng.below(3)).map(|_| value(rng, depth - 1)).collect();
                    format!("[ {} ]", items.join(" , "))
                }
                _ => object(rng, depth - 1, 3),
            }
        }
        fn object(rng: &mut Rng, depth: usize, most: usize) -> String {
            let mut keys: Vec<&str> = KEYS.to_vec();
            let members: Vec<String> = (0..rng.below(most + 1))
                .map(|_| {
                    let key = keys.remove(rng.below(keys.len()));
                    format!("{key:?} : {}", value(rng, depth))
                })
                .collect();
            format!("{{ {} }}", members.join(" ,\n"))
        }
        let mut rng = Rng::new(0x6d65_7267);
        for _ in 0..3000 {
            let stored: Map<String, Value> =
                serde_json::from_str(&object(&mut rng, 2, KEYS.len())).unwrap();
            let stored = serde_json::to_string(&stored).unwrap();
            let patch = object(&mut rng, 2, 6);
            let len = by_tree(&stored, &patch, usize::MAX).unwrap().len();
            for limit in [len - 1, len, rng.below(len + 8)] {
                assert_eq!(
                    merge(&stored, patch.as_bytes(), limit),
                    by_tree(&stored, &patch, limit),
                    "{patch} into {stored} within {limit}"
                );
            }
        }
    }

    #[test]
    fn a_patch_of_more_members_than_fit_is_refused_and_one_of_nulls_is_not() {
        let keys: Vec<String> = (0..20_000).map(|i| format!(r#""k{i}""#)).collect();
        let wide = format!("{{{}}}", keys.join(":0,") + ":0");
        assert_eq!(merge("{}", wide.as_bytes(), 65_536), None);
        assert_eq!(by_tree("{}", &wide, 65_536), None);
        let nulls = format!("{{{}}}", keys.join(":null,") + ":null");
        let stored = r#"{"k1":1,"k19999":2,"x":3}"#;
        assert_eq!(
            merge(stored, nulls.as_bytes(), 65_536).as_deref(),
            Some(r#"{"x":3}"#)
        );
    }

    #[test]
    fn an_oversized_patch_stops_at_the_limit() {
        let big = format!(r#"{{"m":[{}0]}}"#, "0,".repeat(500_000));
        assert_eq!(merge("{}", big.as_bytes(), 65_536), None);
        let removing = format!(r#"{{"m":null,"k":[{}0]}}"#, "0,".repeat(10));
        assert_eq!(
            merge(r#"{"m":[1,2]}"#, removing.as_bytes(), 100),
            by_tree(r#"{"m":[1,2]}"#, &removing, 100)
        );
    }
}

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
//! - [`Metadata`] keeps, beside stored text of 1 KiB or more, the offsets of some of its
//!   members (at most 8 bytes per 256 bytes of text, and 8 more), so that
//!   [`Metadata::merged`] gives the same result as [`merge`] in the time of the patch, a
//!   binary search and a walk of under 256 bytes per patch key, and one copy of the text.

use std::borrow::Cow;
use std::cmp::Ordering;
use std::fmt;

use serde::de::{self, Deserialize, DeserializeSeed, Deserializer as _, MapAccess, Visitor};
use serde_json::value::RawValue;
use serde_json::Value;

use crate::core::wire::compact::{compact, Budget, CompactError};
use crate::core::wire::walk::simple_escape;
use crate::core::wire::write_str;

/// A member of an object: its key (borrowed unless it had an escape) and its value's text.
type Member<'a> = (Cow<'a, str>, &'a RawValue);

/// `stored` with the members of `patch` merged in, within `limit` bytes (see the contract).
pub(crate) fn merge(stored: &str, patch: &[u8], limit: usize) -> Option<Box<str>> {
    merge_read(stored, &read_patch(patch, limit)?, limit)
}

/// A patch's members, sorted, or `None` when it is not an object or cannot fit `limit`.
fn read_patch(patch: &[u8], limit: usize) -> Option<Vec<Member<'_>>> {
    let mut de = serde_json::Deserializer::from_slice(patch);
    let read = Bounded(limit).deserialize(&mut de);
    Some(sorted(
        read.and_then(|members| de.end().map(|()| members)).ok()?.0,
    ))
}

/// [`merge`] of a patch already read.
fn merge_read(stored: &str, patch: &[Member<'_>], limit: usize) -> Option<Box<str>> {
    let room = stored.len().saturating_add(patch_len(patch)).min(limit);
    let mut merger = Merger::new(patch, limit, room);
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
        merger = Merger::new(patch, limit, room);
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

    /// Stored members written as they are (whole members, `,` between them).
    fn run(&mut self, members: &str) {
        if self.out.len() > 1 {
            self.out.push(b',');
        }
        self.out.extend_from_slice(members.as_bytes());
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

/// Stored text shorter than this is merged by [`merge`], without an index.
const INDEXED_FROM: usize = 1024;

/// A member that is not marked starts less than this many bytes after a mark (see
/// [`Metadata`]).
const SPAN: usize = 256;

/// The most bytes the index of `len` bytes of metadata holds: at most two marks per
/// [`SPAN`] bytes and two more, of 4 bytes each; none under 1 KiB.
pub(crate) const fn index_bytes_at_most(len: usize) -> usize {
    if len < INDEXED_FROM {
        0
    } else {
        4 * (2 * (len / SPAN) + 2)
    }
}

/// A session's stored metadata: the text [`merge`] (or `serde_json` for a map) writes, and
/// an index of it, so that a patch is merged in the time of the patch and one copy of the
/// text, without reading the text again.
///
/// The index ("marks") holds the offsets, increasing, of some of the text's top-level
/// members (the `"` of their key): the first member's, and for every other member one less
/// than [`SPAN`] bytes before it. So a key is found by a binary search over the marks (its
/// keys are read in place from the text) and a walk of less than [`SPAN`] bytes from the
/// mark; a member that does not end within that walk is followed by the next mark. A merge
/// writes the untouched runs of members as copies, the patch's members between them, and
/// the marks of the result from the runs' own (moved), each run's first member and each
/// written member, then drops a mark wherever the mark after it is within [`SPAN`] bytes of
/// the last one kept: any two gaps between marks then add up to more than [`SPAN`] bytes, so
/// there are at most `2 * len / SPAN + 2` of them ([`index_bytes_at_most`]). Text shorter
/// than 1 KiB has no index and is merged by [`merge`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Metadata {
    text: Box<str>,
    marks: Box<[u32]>,
}

impl Metadata {
    /// `text`, the compact text of a map (keys sorted, as [`merge`] or `serde_json` writes
    /// it), with its index.
    pub(crate) fn new(text: Box<str>) -> Metadata {
        let marks = marks_of(text.as_bytes());
        Metadata { text, marks }
    }

    /// The text.
    pub(crate) fn text(&self) -> &str {
        &self.text
    }

    /// The bytes its index holds.
    #[cfg(test)]
    pub(crate) fn index_bytes(&self) -> usize {
        4 * self.marks.len()
    }

    /// [`merge`] of `patch` into it, within `limit` bytes, with the result's index: the same
    /// text, or `None`, as [`merge`] gives for its text.
    pub(crate) fn merged(&self, patch: &[u8], limit: usize) -> Option<Metadata> {
        let members = read_patch(patch, limit)?;
        let indexed = !self.marks.is_empty() && u32::try_from(limit).is_ok();
        match indexed.then(|| self.places(&members)).flatten() {
            Some(places) => self.written(&members, &places, limit),
            None => merge_read(&self.text, &members, limit).map(Metadata::new),
        }
    }

    /// Where each of the patch's members goes; `None` for a key escaped as `merge` does not
    /// write it (the text is then merged by [`merge`]).
    fn places(&self, patch: &[Member<'_>]) -> Option<Vec<Place>> {
        let text = self.text.as_bytes();
        let close = text.len() - 1;
        let mut places = Vec::with_capacity(patch.len());
        // The mark of the last place's block, and that place: the keys only grow.
        let (mut block, mut from) = (0, 1);
        for (key, _) in patch {
            let mut odd = false;
            let after = self.marks[block..].partition_point(|&mark| {
                match key_order(text, mark as usize, key) {
                    Some(order) => order != Ordering::Greater,
                    None => {
                        odd = true;
                        false
                    }
                }
            });
            if odd {
                return None;
            }
            // (`after` is 0 only for `block` 0: the key of the block's mark is at most the
            // last key's.)
            let Some(j) = (block + after).checked_sub(1) else {
                // Before the first key.
                places.push(Place { at: 1, end: None });
                continue;
            };
            let mark = self.marks[j] as usize;
            let next = self.marks.get(j + 1).map_or(close, |&m| m as usize - 1);
            let bound = (mark + SPAN).min(close + 1);
            // The members of this block, from its mark (or the last place, if in it) on.
            let mut at = mark.max(from);
            let place = loop {
                if at == close {
                    break Place { at, end: None };
                }
                let order = key_order(text, at, key)?;
                if order == Ordering::Greater {
                    break Place { at, end: None };
                }
                let end = member_end(text, at, bound).unwrap_or(next);
                if order == Ordering::Equal {
                    break Place { at, end: Some(end) };
                }
                at = end + usize::from(text[end] == b',');
            };
            (block, from) = (j, place.at);
            places.push(place);
        }
        Some(places)
    }

    /// The result of writing `patch` at its `places`, with its marks.
    fn written(&self, patch: &[Member<'_>], places: &[Place], limit: usize) -> Option<Metadata> {
        let text = &*self.text;
        let close = text.len() - 1;
        let room = text.len().saturating_add(patch_len(patch)).min(limit);
        let mut merger = Merger::new(&[], limit, room);
        let mut marks = Vec::with_capacity(self.marks.len() + 2 * patch.len() + 1);
        let mut run = Run {
            text,
            marks: &self.marks,
            next: 0,
        };
        // The first stored member not yet written or passed, or the `}`.
        let mut cursor = 1;
        for ((key, value), place) in patch.iter().zip(places) {
            run.write(cursor, place.at, &mut merger, &mut marks);
            cursor = place.at;
            let before = merger.out.len();
            merger.patched(key, value);
            if merger.halt.is_some() {
                return None;
            }
            if merger.out.len() > before {
                marks.push((before + usize::from(before > 1)) as u32);
            }
            if let Some(end) = place.end {
                cursor = end + usize::from(text.as_bytes()[end] == b',');
            }
        }
        run.write(cursor, close, &mut merger, &mut marks);
        let text = merger.finish()?;
        if text.len() < INDEXED_FROM {
            return Some(Metadata::new(text));
        }
        thin(&mut marks, text.len() - 1);
        Some(Metadata {
            text,
            marks: marks.into_boxed_slice(),
        })
    }
}

/// Where a patch's key goes: the stored member it replaces or comes before (the `"` of its
/// key, or the `}`), and that member's end (its `,` or the `}`) when it has that key.
struct Place {
    at: usize,
    end: Option<usize>,
}

/// The stored members being copied, and the first of their marks not yet passed.
struct Run<'t> {
    text: &'t str,
    marks: &'t [u32],
    next: usize,
}

impl Run<'_> {
    /// The stored members from `from` to `to` (member starts, or the `}`) as one copy, with
    /// their marks moved and one at their first member.
    fn write(&mut self, from: usize, to: usize, merger: &mut Merger<'_>, marks: &mut Vec<u32>) {
        let (start, moved) = (
            merger.out.len() + usize::from(merger.out.len() > 1),
            marks.len(),
        );
        while let Some(&mark) = self.marks.get(self.next) {
            let mark = mark as usize;
            if mark >= to {
                break;
            }
            if mark > from {
                marks.push((mark - from + start) as u32);
            }
            self.next += 1;
        }
        if from >= to || merger.halt.is_some() {
            return;
        }
        let end = if to == self.text.len() - 1 {
            to
        } else {
            to - 1
        };
        merger.run(&self.text[from..end]);
        marks.insert(moved, start as u32);
    }
}

/// Drop each mark that the mark after it (or the `}` at `close`) is within [`SPAN`] bytes
/// of the last mark kept, the first kept.
fn thin(marks: &mut Vec<u32>, close: usize) {
    let mut kept = 0;
    for i in 0..marks.len() {
        let next = marks.get(i + 1).map_or(close, |&m| m as usize);
        if kept == 0 || next - marks[kept - 1] as usize > SPAN {
            marks[kept] = marks[i];
            kept += 1;
        }
    }
    marks.truncate(kept);
}

/// The marks of compact object text, each member marked that is [`SPAN`] bytes or more
/// after the last mark; none for text under [`INDEXED_FROM`] bytes (or not such text).
fn marks_of(text: &[u8]) -> Box<[u32]> {
    let none = Box::default();
    if text.len() < INDEXED_FROM || u32::try_from(text.len()).is_err() {
        return none;
    }
    let close = text.len() - 1;
    if text[0] != b'{' || text[close] != b'}' {
        return none;
    }
    let mut marks: Vec<u32> = Vec::with_capacity(text.len() / SPAN + 1);
    let mut at = 1;
    while at < close {
        if text[at] != b'"' {
            return none;
        }
        if marks.last().map_or(true, |&m| at - m as usize >= SPAN) {
            marks.push(at as u32);
        }
        match member_end(text, at, text.len()) {
            Some(end) if text[end] == b',' => at = end + 1,
            Some(end) if end == close => at = end,
            _ => return none,
        }
    }
    marks.into_boxed_slice()
}

/// The end of the member at `at` in compact object text (its `,`, or the object's `}`), if
/// it is before `stop`.
fn member_end(text: &[u8], at: usize, stop: usize) -> Option<usize> {
    let text = text.get(..stop)?;
    let mut depth = 0usize;
    let mut i = at;
    while let Some(&byte) = text.get(i) {
        match byte {
            b'"' => {
                i += 1;
                while let Some(&byte) = text.get(i) {
                    match byte {
                        b'"' => break,
                        b'\\' => i += 2,
                        _ => i += 1,
                    }
                }
            }
            b'{' | b'[' => depth += 1,
            b'}' | b']' if depth > 0 => depth -= 1,
            b',' | b'}' | b']' if depth == 0 => return Some(i),
            _ => {}
        }
        i += 1;
    }
    None
}

/// The order of the key whose `"` is at `at` in `text` against `key`, as strings; `None`
/// for an escape that `write_str` does not write.
fn key_order(text: &[u8], at: usize, key: &str) -> Option<Ordering> {
    let mut i = at + 1;
    let mut key = key.bytes();
    loop {
        let stored = match *text.get(i)? {
            b'"' => None,
            b'\\' => {
                let (byte, len) = unescaped(text.get(i + 1..)?)?;
                i += 1 + len;
                Some(byte)
            }
            byte => {
                i += 1;
                Some(byte)
            }
        };
        match (stored, key.next()) {
            (None, None) => return Some(Ordering::Equal),
            (None, Some(_)) => return Some(Ordering::Less),
            (Some(_), None) => return Some(Ordering::Greater),
            (Some(s), Some(k)) if s != k => return Some(s.cmp(&k)),
            _ => {}
        }
    }
}

/// The byte an escape (after its `\`) stands for and its length, for the escapes
/// `write_str` writes (each of a byte under 0x80).
fn unescaped(escape: &[u8]) -> Option<(u8, usize)> {
    let byte = match *escape.first()? {
        b'u' => {
            let hex = escape.get(1..5)?;
            if !hex.iter().all(u8::is_ascii_hexdigit) {
                return None;
            }
            let code = u16::from_str_radix(std::str::from_utf8(hex).ok()?, 16).ok()?;
            return u8::try_from(code).ok().filter(u8::is_ascii).map(|b| (b, 5));
        }
        c => simple_escape(c)?,
    };
    Some((byte, 1))
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

    /// Every member start of compact object text, as the marks are checked against.
    fn starts(text: &str) -> Vec<usize> {
        let b = text.as_bytes();
        let (mut at, mut all) = (1, Vec::new());
        while at < b.len() - 1 {
            all.push(at);
            let end = member_end(b, at, b.len()).unwrap();
            at = end + usize::from(b[end] == b',');
        }
        all
    }

    /// The index's contract: marks are member starts, the first member's among them, every
    /// member less than `SPAN` bytes after one, and at most `index_bytes_at_most`.
    fn check_index(m: &Metadata) {
        let text = m.text();
        if text.len() < INDEXED_FROM {
            assert!(m.marks.is_empty(), "{text}");
            return;
        }
        let starts = starts(text);
        let marks: Vec<usize> = m.marks.iter().map(|&x| x as usize).collect();
        assert!(marks.windows(2).all(|w| w[0] < w[1]), "{marks:?}");
        assert_eq!(marks.first(), starts.first());
        assert!(
            marks.iter().all(|x| starts.binary_search(x).is_ok()),
            "{marks:?}"
        );
        for s in &starts {
            let before = marks.partition_point(|x| x <= s);
            assert!(s - marks[before - 1] < SPAN, "{s} in {marks:?}");
        }
        assert!(m.index_bytes() <= index_bytes_at_most(text.len()));
    }

    #[test]
    fn the_index_is_built_from_1_kib_with_a_mark_per_span() {
        assert_eq!(Metadata::new("{}".into()).index_bytes(), 0);
        let small = format!(r#"{{"a":"{}"}}"#, "x".repeat(INDEXED_FROM - 9));
        assert_eq!(Metadata::new(small.into()).index_bytes(), 0);
        let map: Map<String, Value> = (0..6650).map(|i| (format!("k{i:05}"), json!(i))).collect();
        let text = serde_json::to_string(&map).unwrap();
        let m = Metadata::new(text.clone().into());
        check_index(&m);
        // One mark per SPAN bytes or so, not one per key.
        assert!(
            m.index_bytes() <= 4 * (text.len() / SPAN + 1),
            "{}",
            m.index_bytes()
        );
        // One long value: its member and the next are marked, nothing inside it.
        let long = format!(r#"{{"a":1,"b":"{}","c":2}}"#, "x".repeat(70_000));
        let m = Metadata::new(long.into());
        check_index(&m);
        assert_eq!(m.marks.len(), 2);
    }

    /// A stored text of 1 KiB or more, keys such that patches meet them: escaped ones, keys
    /// that are prefixes of others, values longer than `SPAN` and values with `,`, `}`, `"`.
    fn big_map(rng: &mut Rng, keys: &[String]) -> Map<String, Value> {
        let mut map = Map::new();
        for key in keys {
            if rng.chance(60) {
                map.insert(key.clone(), big_value(rng));
            }
        }
        map
    }

    fn big_value(rng: &mut Rng) -> Value {
        match rng.below(7) {
            0 => json!(rng.below(1000)),
            1 => json!("x".repeat(rng.below(2 * SPAN + 40))),
            2 => json!({"}": ",", "a\"": [1, {"b": "},{"}], "\\": null}),
            3 => json!([",", "\"}", [], {}]),
            4 => json!(true),
            5 => json!({"z": "y".repeat(rng.below(600))}),
            _ => json!(""),
        }
    }

    fn keys() -> Vec<String> {
        let mut keys: Vec<String> = [
            "", "a", "ab", "abc", "b", "\"", "\\", "\n", "\u{1}", "\u{1f}", "é", "éa", "z\"q",
            "a\u{7f}", "€x", "\t", "/",
        ]
        .iter()
        .map(|k| k.to_string())
        .collect();
        keys.extend((0..120).map(|i| format!("k{i:03}")));
        keys.extend((0..20).map(|i| format!("k{i:03}\"")));
        keys.extend((0..20).map(|i| format!("{}{i}", "l".repeat(300))));
        keys
    }

    fn patch_text(rng: &mut Rng, keys: &[String], most: usize) -> String {
        let mut chosen: Vec<&String> = Vec::new();
        for _ in 0..rng.below(most + 1) {
            let key = rng.pick(keys);
            if !chosen.contains(&key) {
                chosen.push(key);
            }
        }
        let members: Vec<String> = chosen
            .iter()
            .map(|key| {
                let value = match rng.below(4) {
                    0 => "null".to_owned(),
                    1 => r#"{ "y" : 1 , "x" : [ 2 ] }"#.to_owned(),
                    _ => big_value(rng).to_string(),
                };
                format!("{} : {value}", serde_json::to_string(key).unwrap())
            })
            .collect();
        format!("{{ {} }}", members.join(" , "))
    }

    /// The indexed merge against `merge` and the tree, patch after patch (so that the
    /// index of one result serves the next), at, under and past each result's length.
    #[test]
    fn the_indexed_merge_agrees_with_merge_and_a_tree_patch_after_patch() {
        let keys = keys();
        let mut rng = Rng::new(0x696e_6478);
        for _ in 0..30 {
            let stored = serde_json::to_string(&big_map(&mut rng, &keys)).unwrap();
            let mut m = Metadata::new(stored.into());
            check_index(&m);
            for _ in 0..30 {
                let most = if rng.chance(80) { 3 } else { 40 };
                let patch = patch_text(&mut rng, &keys, most);
                let len = by_tree(m.text(), &patch, usize::MAX).unwrap().len();
                for limit in [len - 1, len, len + rng.below(10), rng.below(len + 1)] {
                    let merged = m.merged(patch.as_bytes(), limit);
                    let text = merged.as_ref().map(|m| Box::from(m.text()));
                    assert_eq!(text, merge(m.text(), patch.as_bytes(), limit), "{patch}");
                    assert_eq!(text, by_tree(m.text(), &patch, limit), "{patch}");
                    if let Some(merged) = &merged {
                        check_index(merged);
                    }
                }
                if let Some(next) = m.merged(patch.as_bytes(), usize::MAX >> 40) {
                    m = next;
                }
            }
        }
    }

    /// Patches at the first, a middle and the last key, and around them, into text with an
    /// index (keys with escapes, and a patch key written with an escape for a stored one).
    #[test]
    fn the_indexed_merge_agrees_at_the_ends_and_the_middle() {
        let mut map = Map::new();
        for i in 0..40 {
            map.insert(format!("k{i:02}"), json!("v".repeat(40)));
        }
        map.insert("\"q".into(), json!(1));
        map.insert("a\nb".into(), json!({"}": ","}));
        map.insert("zz".into(), json!("x".repeat(700)));
        let stored = serde_json::to_string(&map).unwrap();
        let m = Metadata::new(stored.clone().into());
        assert!(m.index_bytes() > 0);
        for patch in [
            r#"{}"#,
            r#"{"\"q":null}"#,
            r#"{"\"q":2}"#,
            r#"{"\"":0}"#,
            r#"{"!":1}"#,
            r#"{"zz":null}"#,
            r#"{"zz":"short"}"#,
            r#"{"zzz":1,"zz":null}"#,
            r#"{"k20":null}"#,
            r#"{"k20":[1,2]}"#,
            r#"{"k\u0032\u0030":{"b":1,"a":2}}"#,
            r#"{"k2":1,"k20a":1,"k200":1}"#,
            r#"{"a\nb":null,"a\u000ab":3}"#,
            r#"{"a\u000ab":3}"#,
            r#"{"k00":null,"k01":null,"k39":null,"zz":null,"\"q":null,"a\nb":null}"#,
            r#"{"k00":null,"k39":1,"zz":2,"new":3,"k19":null,"k21":"x"}"#,
            r#"{"nope":null}"#,
            r#"{"big":"0000000000000000000000000000000000000000000000000000000000000000000"}"#,
        ] {
            let len = by_tree(&stored, patch, usize::MAX).unwrap().len();
            for limit in [0, 100, len - 1, len, len + 1, 65_536] {
                let merged = m.merged(patch.as_bytes(), limit);
                let text = merged.as_ref().map(|m| Box::from(m.text()));
                assert_eq!(
                    text,
                    by_tree(&stored, patch, limit),
                    "{patch} within {limit}"
                );
                assert_eq!(text, merge(&stored, patch.as_bytes(), limit), "{patch}");
                if let Some(merged) = &merged {
                    check_index(merged);
                }
            }
        }
        for patch in [
            r#"[1]"#,
            r#"{"a":1"#,
            r#"{"k20":1e400}"#,
            r#"{"zz":"\ud800"}"#,
        ] {
            assert_eq!(m.merged(patch.as_bytes(), 65_536), None, "{patch}");
        }
    }
}

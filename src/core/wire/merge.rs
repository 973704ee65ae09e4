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
//! - No tree is built for the stored text, nor for a patch value without an object in it:
//!   stored values are copied verbatim, a patch value is compacted ([`compact`]); only a
//!   patch value that holds an object (a `{` anywhere in its text) is read as a `Value`, to
//!   sort its keys, after its compact text has fit. Every non-`null` patch member is part of
//!   the result, so the members are counted against `limit` as they are read, and an
//!   oversized patch is refused after at most `limit` bytes of compact output.

use std::borrow::Cow;
use std::collections::BTreeMap;

use serde_json::value::RawValue;
use serde_json::Value;

use crate::core::wire::compact::{compact, Budget};
use crate::core::wire::write_str;

/// `stored` with the members of `patch` merged in, within `limit` bytes (see the contract).
pub(crate) fn merge(stored: &str, patch: &[u8], limit: usize) -> Option<Box<str>> {
    let stored: BTreeMap<String, &RawValue> = serde_json::from_str(stored).unwrap_or_default();
    let patch: BTreeMap<String, &RawValue> = serde_json::from_slice(patch).ok()?;
    let mut merged: BTreeMap<String, Cow<'_, str>> = stored
        .into_iter()
        .map(|(key, value)| (key, Cow::Borrowed(value.get())))
        .collect();
    // `{}` and, per member, its key, `:` and a `,`: a lower bound of the result's length.
    let mut at_least = 2;
    let mut key_text = Vec::new();
    for (key, value) in patch {
        if value.get() == "null" {
            merged.remove(&key);
            continue;
        }
        key_text.clear();
        write_str(&mut key_text, &key);
        at_least += key_text.len() + 2;
        let mut text = Vec::new();
        let max = limit.checked_sub(at_least)?;
        compact(
            value.get().as_bytes(),
            &mut Budget {
                out: &mut text,
                max,
            },
        )
        .ok()?;
        at_least += text.len();
        let text = if text.contains(&b'{') {
            let tree: Value = serde_json::from_slice(&text).ok()?;
            serde_json::to_string(&tree).ok()?
        } else {
            String::from_utf8(text).ok()?
        };
        merged.insert(key, Cow::Owned(text));
    }
    let mut out = Vec::with_capacity(at_least.min(limit));
    out.push(b'{');
    for (i, (key, value)) in merged.iter().enumerate() {
        if i > 0 {
            out.push(b',');
        }
        write_str(&mut out, key);
        out.push(b':');
        out.extend_from_slice(value.as_bytes());
        if out.len() > limit {
            return None;
        }
    }
    out.push(b'}');
    if out.len() > limit {
        return None;
    }
    String::from_utf8(out).ok().map(String::into_boxed_str)
}

#[cfg(test)]
mod tests {
    use super::*;
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

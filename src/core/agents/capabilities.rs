//! An agent's capabilities: read from `agent_register`, kept as compact JSON text, and the
//! capability names they match (PROTOCOL sections 6 and 11).
//!
//! Contract:
//! - [`Capabilities::read`] accepts an object `{"chat"?:BOOL,"tools"?:[STR..],"streaming"?:BOOL,
//!   "modes"?:[STR..],"custom"?:{..}|null}` (unknown members ignored, a known one repeated is
//!   an error) and keeps the normalized compact text
//!   `{"chat","tools","streaming","modes","custom"?}`: missing members take their defaults,
//!   `custom` is written as sent, without white space (see `wire::compact`).
//! - Bounds, checked while reading, before anything is kept: more than `max_names` entries in
//!   `tools` + `modes` + keys of `custom` is [`ReadError::TooManyNames`]; a text longer than
//!   `max_bytes` is [`ReadError::TooLarge`].
//! - Names (the original `findByCapability`): `chat` and `streaming` when those booleans are
//!   true; every other entry of `tools` and `modes`, and every key of `custom` whose value is
//!   truthy as in JavaScript. [`Capabilities::names`] reads them again from the kept text, so
//!   nothing but that text is stored per agent.

use std::borrow::Cow;
use std::collections::BTreeSet;
use std::fmt;

use serde::de::{self, DeserializeSeed, Deserializer, IgnoredAny, MapAccess, SeqAccess, Visitor};

use crate::core::wire::compact::{is_truthy, Budget, Compact};
use crate::core::wire::write_str;

/// The bounds of one agent's capabilities.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Limits {
    /// `max_capabilities`.
    pub max_names: usize,
    /// What is left of `max_agent_bytes`.
    pub max_bytes: usize,
}

impl Limits {
    const NONE: Limits = Limits {
        max_names: usize::MAX,
        max_bytes: usize::MAX,
    };
}

/// Why capabilities were refused.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum ReadError {
    /// Not of the documented shape; what is wrong.
    Invalid(String),
    /// More names than `max_names`.
    TooManyNames,
    /// Longer than `max_bytes` as compact JSON.
    TooLarge,
}

/// Capabilities as their normalized compact JSON text.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Capabilities(Box<str>);

impl Capabilities {
    /// Read the JSON object `raw` within `limits`.
    pub(crate) fn read(raw: &[u8], limits: Limits) -> Result<Capabilities, ReadError> {
        let read = parse(raw, limits)?;
        let text = String::from_utf8(read.json).map_err(|e| ReadError::Invalid(e.to_string()))?;
        Ok(Capabilities(text.into_boxed_str()))
    }

    /// The compact JSON text.
    pub(crate) fn json(&self) -> &str {
        &self.0
    }

    /// Every name these capabilities match, once each, in byte order.
    pub(crate) fn names(&self) -> BTreeSet<Cow<'_, str>> {
        // The text was written by `read`, so it reads again within no limits.
        parse(self.0.as_bytes(), Limits::NONE).map_or_else(|_| BTreeSet::new(), |r| r.names)
    }

    /// Whether these capabilities match `name`.
    #[cfg(test)]
    pub(crate) fn matches(&self, name: &str) -> bool {
        self.names().contains(name)
    }
}

/// What one read produced.
struct Read<'a> {
    json: Vec<u8>,
    names: BTreeSet<Cow<'a, str>>,
}

fn parse(raw: &[u8], limits: Limits) -> Result<Read<'_>, ReadError> {
    let mut over = None;
    let mut de = serde_json::Deserializer::from_slice(raw);
    let parts = de
        .deserialize_map(PartsVisitor {
            limits,
            over: &mut over,
        })
        .and_then(|parts| de.end().map(|()| parts));
    let parts = match (parts, over) {
        (_, Some(limit)) => return Err(limit),
        (Err(e), None) => return Err(ReadError::Invalid(e.to_string())),
        (Ok(parts), None) => parts,
    };
    let json = parts.write();
    if json.len() > limits.max_bytes {
        return Err(ReadError::TooLarge);
    }
    Ok(Read {
        json,
        names: parts.names(),
    })
}

/// The members of a capabilities object, borrowed from its text where possible.
#[derive(Default)]
struct Parts<'a> {
    chat: Option<bool>,
    streaming: Option<bool>,
    tools: Option<Vec<Cow<'a, str>>>,
    modes: Option<Vec<Cow<'a, str>>>,
    custom: Option<Option<Custom<'a>>>,
}

/// `custom`: its compact text and its truthy keys.
struct Custom<'a> {
    json: Vec<u8>,
    truthy: Vec<Cow<'a, str>>,
}

impl<'a> Parts<'a> {
    fn write(&self) -> Vec<u8> {
        let mut out = Vec::new();
        let flag = |on: Option<bool>| -> &[u8] {
            if on == Some(true) {
                b"true"
            } else {
                b"false"
            }
        };
        let list = |out: &mut Vec<u8>, names: &Option<Vec<Cow<'a, str>>>| {
            out.push(b'[');
            for (i, name) in names.iter().flatten().enumerate() {
                if i > 0 {
                    out.push(b',');
                }
                write_str(out, name);
            }
            out.push(b']');
        };
        out.extend_from_slice(b"{\"chat\":");
        out.extend_from_slice(flag(self.chat));
        out.extend_from_slice(b",\"tools\":");
        list(&mut out, &self.tools);
        out.extend_from_slice(b",\"streaming\":");
        out.extend_from_slice(flag(self.streaming));
        out.extend_from_slice(b",\"modes\":");
        list(&mut out, &self.modes);
        if let Some(Some(custom)) = &self.custom {
            out.extend_from_slice(b",\"custom\":");
            out.extend_from_slice(&custom.json);
        }
        out.push(b'}');
        out
    }

    fn names(self) -> BTreeSet<Cow<'a, str>> {
        let mut names = BTreeSet::new();
        if self.chat == Some(true) {
            names.insert(Cow::Borrowed("chat"));
        }
        if self.streaming == Some(true) {
            names.insert(Cow::Borrowed("streaming"));
        }
        let custom = self.custom.flatten().map(|c| c.truthy);
        let listed = [self.tools, self.modes, custom].into_iter().flatten();
        names.extend(
            listed
                .flatten()
                .filter(|name| name != "chat" && name != "streaming"),
        );
        names
    }
}

/// Reads the capabilities object; a bound reached is reported through `over`.
struct PartsVisitor<'o> {
    limits: Limits,
    over: &'o mut Option<ReadError>,
}

impl PartsVisitor<'_> {
    fn limit<E: de::Error>(&mut self, error: ReadError) -> E {
        *self.over = Some(error);
        E::custom("limit reached")
    }
}

fn once<T, E: de::Error>(slot: &mut Option<T>, field: &'static str, value: T) -> Result<(), E> {
    if slot.is_some() {
        return Err(E::duplicate_field(field));
    }
    *slot = Some(value);
    Ok(())
}

impl<'de> Visitor<'de> for PartsVisitor<'_> {
    type Value = Parts<'de>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a capabilities object")
    }

    fn visit_map<A: MapAccess<'de>>(mut self, mut map: A) -> Result<Parts<'de>, A::Error> {
        let mut parts = Parts::default();
        let mut left = Count {
            left: self.limits.max_names,
            over: false,
        };
        while let Some(key) = map.next_key_seed(NameSeed)? {
            match &*key {
                "chat" => once(&mut parts.chat, "chat", map.next_value()?)?,
                "streaming" => once(&mut parts.streaming, "streaming", map.next_value()?)?,
                "tools" | "modes" => {
                    let list = map.next_value_seed(ListSeed { left: &mut left });
                    let list = list.map_err(|e| match left.over {
                        true => self.limit(ReadError::TooManyNames),
                        false => e,
                    })?;
                    let slot = match &*key {
                        "tools" => &mut parts.tools,
                        _ => &mut parts.modes,
                    };
                    once(slot, if &*key == "tools" { "tools" } else { "modes" }, list)?;
                }
                "custom" => {
                    let mut json = Vec::new();
                    let seed = CustomSeed {
                        left: &mut left,
                        budget: Budget {
                            out: &mut json,
                            max: self.limits.max_bytes,
                        },
                    };
                    let custom = map.next_value_seed(seed);
                    let custom = custom.map_err(|e| {
                        if left.over {
                            self.limit(ReadError::TooManyNames)
                        } else if json.len() > self.limits.max_bytes {
                            self.limit(ReadError::TooLarge)
                        } else {
                            e
                        }
                    })?;
                    once(&mut parts.custom, "custom", custom)?;
                }
                _ => {
                    map.next_value::<IgnoredAny>()?;
                }
            }
        }
        Ok(parts)
    }
}

/// The names still allowed; `over` once one more was seen (the read then stops).
struct Count {
    left: usize,
    over: bool,
}

impl Count {
    fn take_one<E: de::Error>(&mut self) -> Result<(), E> {
        match self.left.checked_sub(1) {
            Some(rest) => {
                self.left = rest;
                Ok(())
            }
            None => {
                self.over = true;
                Err(E::custom("too many names"))
            }
        }
    }
}

/// A string, borrowed from the text when it has no escapes.
struct NameSeed;

impl<'de> DeserializeSeed<'de> for NameSeed {
    type Value = Cow<'de, str>;

    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<Self::Value, D::Error> {
        deserializer.deserialize_str(self)
    }
}

impl<'de> Visitor<'de> for NameSeed {
    type Value = Cow<'de, str>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a string")
    }

    fn visit_borrowed_str<E: de::Error>(self, v: &'de str) -> Result<Self::Value, E> {
        Ok(Cow::Borrowed(v))
    }

    fn visit_str<E: de::Error>(self, v: &str) -> Result<Self::Value, E> {
        Ok(Cow::Owned(v.to_owned()))
    }
}

/// `tools` or `modes`: a list of strings, each counted.
struct ListSeed<'l> {
    left: &'l mut Count,
}

impl<'de> DeserializeSeed<'de> for ListSeed<'_> {
    type Value = Vec<Cow<'de, str>>;

    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<Self::Value, D::Error> {
        deserializer.deserialize_seq(self)
    }
}

impl<'de> Visitor<'de> for ListSeed<'_> {
    type Value = Vec<Cow<'de, str>>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a list of names")
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
        let mut names = Vec::new();
        while let Some(name) = seq.next_element_seed(NameSeed)? {
            self.left.take_one()?;
            names.push(name);
        }
        Ok(names)
    }
}

/// `custom`: `null` or an object whose keys are counted and whose values are kept compact.
struct CustomSeed<'l, 'b> {
    left: &'l mut Count,
    budget: Budget<'b>,
}

impl<'de, 'b> DeserializeSeed<'de> for CustomSeed<'_, 'b> {
    type Value = Option<Custom<'de>>;

    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<Self::Value, D::Error> {
        deserializer.deserialize_option(self)
    }
}

impl<'de> Visitor<'de> for CustomSeed<'_, '_> {
    type Value = Option<Custom<'de>>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("an object or null")
    }

    fn visit_none<E: de::Error>(self) -> Result<Self::Value, E> {
        Ok(None)
    }

    fn visit_unit<E: de::Error>(self) -> Result<Self::Value, E> {
        Ok(None)
    }

    fn visit_some<D: Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
        d.deserialize_map(self)
    }

    fn visit_map<A: MapAccess<'de>>(mut self, mut map: A) -> Result<Self::Value, A::Error> {
        let mut truthy = Vec::new();
        let out = &mut self.budget;
        out.out.push(b'{');
        let mut first = true;
        while let Some(key) = map.next_key_seed(NameSeed)? {
            self.left.take_one()?;
            if !first {
                out.out.push(b',');
            }
            first = false;
            write_str(out.out, &key);
            out.out.push(b':');
            let start = out.out.len();
            map.next_value_seed(Compact(out))?;
            if is_truthy(&out.out[start..]) {
                truthy.push(key);
            }
        }
        out.out.push(b'}');
        if out.exceeded() {
            return Err(de::Error::custom("too large"));
        }
        let json = std::mem::take(out.out);
        Ok(Some(Custom { json, truthy }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const ROOMY: Limits = Limits {
        max_names: 8,
        max_bytes: 1000,
    };

    fn read(raw: &str) -> Result<Capabilities, ReadError> {
        Capabilities::read(raw.as_bytes(), ROOMY)
    }

    #[test]
    fn keeps_the_normalized_compact_text() {
        let caps = read(r#" { "custom" : { "b" : [ 1 ] , "a" : 0 } , "tools" : [ "x" , "y\u0041" ], "other": {"deep": [1]} } "#)
            .unwrap();
        assert_eq!(
            caps.json(),
            r#"{"chat":false,"tools":["x","yA"],"streaming":false,"modes":[],"custom":{"b":[1],"a":0}}"#
        );
        assert_eq!(
            read("{}").unwrap().json(),
            r#"{"chat":false,"tools":[],"streaming":false,"modes":[]}"#
        );
        assert_eq!(
            read(r#"{"custom":null,"chat":true}"#).unwrap().json(),
            read(r#"{"chat":true}"#).unwrap().json()
        );
        // What it keeps reads again to itself.
        assert_eq!(
            Capabilities::read(caps.json().as_bytes(), ROOMY).unwrap(),
            caps
        );
    }

    #[test]
    fn names_follow_find_by_capability() {
        let raw = r#"{"chat":true,"streaming":false,"tools":["t","chat","t"],"modes":["streaming","m"],
            "custom":{"yes":1,"no":0,"nil":null,"empty":"","s":"0","list":[],"chat":true}}"#;
        let limits = Limits {
            max_names: 12,
            ..ROOMY
        };
        let caps = Capabilities::read(raw.as_bytes(), limits).unwrap();
        let names = caps.names();
        let names: Vec<&str> = names.iter().map(|n| &**n).collect();
        assert_eq!(names, ["chat", "list", "m", "s", "t", "yes"]);
        assert!(caps.matches("yes") && !caps.matches("no") && !caps.matches("streaming"));
    }

    #[test]
    fn shape_errors_are_invalid() {
        for bad in [
            r#"[1]"#,
            r#""chat""#,
            r#"{"chat":"yes"}"#,
            r#"{"tools":"grep"}"#,
            r#"{"tools":[1]}"#,
            r#"{"tools":null}"#,
            r#"{"custom":[1]}"#,
            r#"{"tools":[],"tools":[]}"#,
            r#"{"custom":{"a":1e999999}}"#,
        ] {
            assert!(matches!(read(bad), Err(ReadError::Invalid(_))), "{bad}");
        }
    }

    #[test]
    fn bounds_are_checked_while_reading() {
        let names = |n: usize| format!("[{}]", vec!["\"a\""; n].join(","));
        assert!(read(&format!(r#"{{"tools":{}}}"#, names(8))).is_ok());
        for raw in [
            format!(r#"{{"tools":{}}}"#, names(9)),
            format!(r#"{{"tools":{},"modes":{}}}"#, names(4), names(5)),
            format!(r#"{{"modes":{},"custom":{{"a":1,"b":2,"c":3}}}}"#, names(6)),
            format!(r#"{{"tools":{}}}"#, names(100_000)),
        ] {
            assert_eq!(read(&raw), Err(ReadError::TooManyNames), "{raw}");
        }
        let long = "x".repeat(1000);
        assert_eq!(
            read(&format!(r#"{{"tools":["{long}"]}}"#)),
            Err(ReadError::TooLarge)
        );
        assert_eq!(
            read(&format!(r#"{{"custom":{{"a":"{long}"}}}}"#)),
            Err(ReadError::TooLarge)
        );
        let fits =
            "x".repeat(1000 - r#"{"chat":false,"tools":[""],"streaming":false,"modes":[]}"#.len());
        assert!(read(&format!(r#"{{"tools":["{fits}"]}}"#)).is_ok());
        assert_eq!(
            read(&format!(r#"{{"tools":["{fits}x"]}}"#)),
            Err(ReadError::TooLarge)
        );
    }
}

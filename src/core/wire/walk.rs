//! One pass over JSON text that decides, without building anything, whether `serde_json` would
//! accept it the way the gateway reads it: the fast path of [`strict`](super::strict),
//! [`compact`](super::compact) and [`parse_envelope`](super::parse_envelope).
//!
//! Contract:
//! - Every entry point answers "accepted" (with what it found: spans, compact text) or
//!   [`Stop`]. "Accepted" is given only where the `serde_json` read it stands for would
//!   succeed with the same result; [`Stop::Refused`] only where that read fails, with the
//!   same outcome for the caller (the error code and field it gives; for [`compact`], a
//!   failure that is not the budget's), worded by the walk: what is wrong and the byte
//!   offset where it was found ([`Refusal`]). So a refused message costs this one pass.
//!   [`Stop::Unsure`] leaves the decision to the `serde_json` read, which then words it as
//!   before: only for text that is not UTF-8 in [`compact`] and [`envelope`] (which the
//!   gateway never hands them: a message is UTF-8 before it is read, and payloads and stored
//!   JSON are spans of it), and for states no input reaches. [`compact_strict`] refuses as
//!   [`strict`] does, or stops for the budget where its output passes it first. The
//!   differential tests of this module and the `json` fuzz target hold every answer to the
//!   `serde_json` read's, on generated and mutated JSON.
//! - The grammar is JSON's, checked at the same bytes as `serde_json` checks it, left to
//!   right, so the first fault the walk finds is the first one that read finds: where the
//!   read checks more than the grammar (depth, surrogates, range), so does the walk, at the
//!   same place. A key twice in one object is the exception: that read finds it at the
//!   object's end; the walk does so for an object of more than [`PAIRWISE`] keys, and in a
//!   smaller one at the key's second occurrence (compared as it is read). Either is a
//!   refusal with the same code and field, and in [`envelope`] (which goes on to the
//!   payload's end) the grammar's refusals still come first.
//! - In [`envelope`], a member nested deeper than [`MEMBER_DEPTH`] is noted
//!   ([`Scanned::deep`]) for the caller to refuse (PROTOCOL section 11) and the walk goes
//!   on; [`too_deep`] finds the same member in a message `serde_json` has read.
//! - In [`envelope`], a payload object is walked member by member (the same refusals at the
//!   same bytes as one value), and the members whose names the caller asks for are noted
//!   ([`Noted`]: their spans, and whether they read cleanly as `serde_json` reads them), for
//!   the typed read of [`fields`](super::fields), which then never passes over the others.
//! - Input must be valid UTF-8 (checked once by each entry point); bytes of 0x80 and over
//!   are then only ever string contents.
//! - The work is linear in the input: string bodies are scanned 8 bytes at a time, and so
//!   are runs of small integers in an array (`0,12,3,`) and of `[` and `]`; nesting is
//!   kept on a bit stack (so a walk that allows any depth needs 1 bit per level), and the
//!   keys of open objects, where duplicates are looked for, on one stack (see [`Keys`]).
//! - No `unsafe`. The steps other than the hot loop of [`Walker::value`] (strings, keys,
//!   numbers that are not plain integers, literals, the duplicate-key check) are
//!   `#[inline(never)]`, which keeps that loop's registers its own (measured: fewer
//!   instructions per element). A string value of at most 15 bytes without escapes is
//!   passed in the loop, without a call; such a key, its `:` right after it, without the
//!   general key path; and the first 64 levels of the bit stack are a register of the loop.
//!
//! Modes, one per way `serde_json` reads a value ([`Mode`]): `Skip` is how it passes over a
//! value it does not keep (`IgnoredAny`, `RawValue`); `Read` is how it reads a value into a
//! visitor (`Value`, [`Compact`](super::compact::Compact)); `Strict` is `Read` plus the
//! duplicate-key and depth checks of [`strict::check`](super::strict::check).

use std::borrow::Cow;

use crate::core::wire::write_str;

/// Why a walk did not accept the text.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Stop {
    /// Refused, where the `serde_json` read the walk stands for refuses too (see
    /// [`Refusal`]).
    Refused(Refusal),
    /// Not decided (text that is not UTF-8, for [`compact`] and [`envelope`]): let
    /// `serde_json` decide and word it.
    Unsure,
    /// The compact text passed its budget (only from [`compact`] and [`compact_strict`]).
    TooLarge,
}

/// A refusal: what is wrong, and the byte offset in the walked text where the walk found
/// it. Displayed as `WHAT at byte N`, e.g. ``expected `,` or `}` at byte 1048570``.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Refusal {
    /// What is wrong, e.g. `duplicate key in an object`.
    pub what: &'static str,
    /// Where, in bytes from the start of the walked text (for a payload walked inside an
    /// envelope, from the start of the payload).
    pub at: usize,
}

impl std::fmt::Display for Refusal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} at byte {}", self.what, self.at)
    }
}

/// The reasons of a [`Refusal`]: the grammar's...
const END: &str = "unexpected end of the text";
const VALUE: &str = "expected a value";
const KEY: &str = "expected a string key";
const COLON: &str = "expected `:`";
const OBJECT: &str = "expected `{`";
const NEXT_MEMBER: &str = "expected `,` or `}`";
const NEXT_ELEMENT: &str = "expected `,` or `]`";
const ESCAPE: &str = "invalid escape";
const HEX: &str = "invalid `\\u` escape";
const CONTROL: &str = "control character in a string";
const NUMBER: &str = "invalid number";
const LITERAL: &str = "invalid literal";
const TRAILING: &str = "trailing characters";
const NOT_UTF8: &str = "invalid UTF-8";
/// ... and the reading's (what [`Mode::Skip`] does not check).
const SURROGATE: &str = "lone surrogate escape";
const RANGE: &str = "number out of range";
const DEEP: &str = "nesting deeper than 127 levels";
const DUPLICATE: &str = "duplicate key in an object";

/// A refusal of `what` at `at`.
#[cold]
fn refuse<T>(what: &'static str, at: usize) -> Step<T> {
    Err(Stop::Refused(Refusal { what, at }))
}

type Step<T = ()> = Result<T, Stop>;

/// How a value is read; see the module header.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Mode {
    /// Grammar only: escapes and `\u` hex digits are checked, surrogates are not paired,
    /// numbers are not converted, any depth.
    Skip,
    /// Grammar, paired surrogates, numbers that fit an `f64`, at most `max_depth` levels.
    Read,
    /// `Read` plus: no key twice in one object.
    Strict,
}

/// JSON white space.
#[inline]
fn is_ws(b: u8) -> bool {
    matches!(b, b' ' | b'\n' | b'\t' | b'\r')
}

const ONES: u64 = 0x0101_0101_0101_0101;
const HIGH: u64 = 0x8080_8080_8080_8080;

/// The high bit of each byte of `word` that is `"`, `\` or below 0x20. Only the lowest set
/// bit is exact (a borrow can set bits above a match), which is all [`Walker::string`] reads:
/// below the first match no byte borrows, so no bit is set there.
#[inline]
fn specials(word: u64) -> u64 {
    let ctrl = word.wrapping_sub(ONES * 0x20) & !word;
    let q = word ^ (ONES * u64::from(b'"'));
    let quote = q.wrapping_sub(ONES) & !q;
    let s = word ^ (ONES * u64::from(b'\\'));
    let slash = s.wrapping_sub(ONES) & !s;
    (ctrl | quote | slash) & HIGH
}

/// Whether the 8 bytes of `word` (in input order, little-endian) are whole small integers,
/// each followed by its comma: digits and commas only, a digit first and a comma last, no
/// two commas together, no number with a leading zero before another digit (`0,` is one,
/// `01,` is not). Such a run, at the start of an array element, is that many plain integer
/// elements, each written as it came: the walk passes it 8 bytes at a time.
#[inline]
fn small_integers(word: u64) -> bool {
    if word & HIGH != 0 {
        return false;
    }
    // Below 0x80 each byte plus up to 0x7f stays within its byte (no carry).
    let at_least = |low: u8| word.wrapping_add(ONES * u64::from(0x80 - low)) & HIGH;
    let equal = |byte: u8| {
        let x = word ^ (ONES * u64::from(byte));
        !x.wrapping_add(ONES * 0x7f) & HIGH
    };
    let digits = at_least(b'0') & !at_least(b'9' + 1);
    let commas = equal(b',');
    let zeros = equal(b'0');
    let starts = (commas << 8) | 0x80;
    (digits | commas) == HIGH
        && commas >> 63 == 1
        && digits & 0x80 != 0
        && commas & (commas << 8) == 0
        && ((zeros & starts) << 8) & digits == 0
}

/// Where the plain integer at `start` (`c` there, a digit or `-`) ends: digits, no leading zero,
/// not `-0`, at most `max_digits` of them (short enough to be exact, or for a read that only
/// checks it, to be in range); `None` for any other number, which is [`Walker::number`]'s.
#[inline(always)]
fn plain_integer(bytes: &[u8], start: usize, c: u8, max_digits: usize) -> Option<usize> {
    let first = start + usize::from(c == b'-');
    let mut end = first;
    while let Some(b'0'..=b'9') = bytes.get(end) {
        end += 1;
    }
    let digits = end - first;
    let plain = digits != 0
        && digits <= max_digits
        && (bytes[first] != b'0' || end == start + 1)
        && !matches!(bytes.get(end), Some(b'.' | b'e' | b'E'));
    plain.then_some(end)
}

/// The 8 bytes at `pos`, little-endian, when there are 8.
#[inline]
fn word_at(bytes: &[u8], pos: usize) -> Option<u64> {
    let chunk: [u8; 8] = bytes.get(pos..pos + 8)?.try_into().ok()?;
    Some(u64::from_le_bytes(chunk))
}

/// The byte a JSON escape of one character after its `\\` stands for (`n`: a newline);
/// `None` for `u` (four hex digits follow) and for what is no escape.
#[inline]
pub(crate) fn simple_escape(c: u8) -> Option<u8> {
    Some(match c {
        b'"' => b'"',
        b'\\' => b'\\',
        b'/' => b'/',
        b'b' => 0x08,
        b'f' => 0x0c,
        b'n' => b'\n',
        b'r' => b'\r',
        b't' => b'\t',
        _ => return None,
    })
}

/// Where the string whose `"` is at `at` ends (right after its closing `"`), when that `"`
/// is among the 16 bytes after the opening one with no `\\` or control character before
/// it: a short string without escapes, which the walk passes without a call.
#[inline]
fn short_string(bytes: &[u8], at: usize) -> Option<usize> {
    let mut from = at + 1;
    let mut found = specials(word_at(bytes, from)?);
    if found == 0 {
        from += 8;
        found = specials(word_at(bytes, from)?);
    }
    let end = from + (found.trailing_zeros() / 8) as usize;
    (found != 0 && bytes.get(end) == Some(&b'"')).then_some(end + 1)
}

/// A key of an open object: its text is `bytes[start..end]` of the input, or of
/// `Walker::decoded` when it had escapes; `hash`: [`key_hash`] of that text, taken as the key
/// is read (the text is in the cache then).
#[derive(Clone, Copy)]
struct Key {
    hash: u64,
    start: u32,
    end: u32,
    decoded: bool,
}

/// Keys of the objects open on the path to the current value (`Strict` only), outermost
/// first; `starts` holds where each open object's keys begin. Each key's text is hashed as it
/// is read (64 bits, under a seed drawn per walk, so a client cannot pick keys that collide).
/// While an object has at most [`PAIRWISE`] keys each key is compared with the others as it
/// is read, by hash and then by text (so the walk refuses at a duplicate's second occurrence,
/// and stops there unless it is `soft`). A larger object is checked when it ends, in time
/// linear in its keys: the hashes are put into buckets by their top bits (a counting sort,
/// about 8 keys a bucket), each bucket is sorted (a few keys) and equal neighbours are
/// compared by text. Equal hashes of different texts cost only those comparisons, so
/// however the keys are picked the check is at most a sort of them. The buffers are the
/// walk's, reused by each object; the memory is at most the keys of one path plus 16 bytes
/// per key of the largest object.
#[derive(Default)]
struct Keys {
    keys: Vec<Key>,
    /// For each open object: where its keys begin in `keys`, and in `Walker::decoded`.
    starts: Vec<(usize, usize)>,
    /// The object's keys as `hash << INDEX_BITS | index` (the top bits of the hash), as
    /// read, then by bucket.
    hashed: Vec<u64>,
    bucketed: Vec<u64>,
    /// Keys per bucket, then where each bucket begins.
    counts: Vec<u32>,
    /// The hash's seed, drawn when the walk first reads a key in `Strict` (`None` before).
    seed: Option<[u64; 2]>,
}

/// Objects with at most this many keys are checked for duplicates pair by pair.
const PAIRWISE: usize = 8;

/// Low bits of a bucketed entry that hold the key's index in its object: an object with
/// more keys than that is sorted by text instead (it cannot be within any message size).
const INDEX_BITS: u32 = 24;

/// The high half of the 128-bit product of `a` and `b` folded onto its low half.
#[inline]
fn fold(a: u64, b: u64) -> u64 {
    let product = u128::from(a) * u128::from(b);
    (product as u64) ^ ((product >> 64) as u64)
}

/// A 64-bit hash of the text `base[start..end]` under `seed`, 16 bytes a product: a text of
/// at most 16 bytes costs two products (its first and last 8 bytes, overlapping, or fewer
/// bytes masked, the length mixed in). Words are read past the text within `base`, masked,
/// so a short text costs no loop.
#[inline(always)]
fn key_hash(base: &[u8], start: usize, end: usize, seed: [u64; 2]) -> u64 {
    const K: u64 = 0x9e37_79b9_7f4a_7c15;
    let len = end - start;
    // The word at `at`, within the text (`at + 8 <= end`).
    let word = |at: usize| word_at(base, at).unwrap_or_default();
    let (mut a, mut b) = (0, 0);
    let mut hash = seed[0] ^ len as u64;
    if len > 16 {
        let mut at = start;
        while end - at > 16 {
            hash = fold(word(at) ^ seed[0] ^ hash, word(at + 8) ^ seed[1]);
            at += 16;
        }
        (a, b) = (word(end - 16), word(end - 8));
    } else if len > 8 {
        (a, b) = (word(start), word(end - 8));
    } else if len > 0 {
        a = match word_at(base, start) {
            Some(w) => w & (u64::MAX >> (64 - 8 * len)),
            // Fewer than 8 bytes from `start` to the end of `base`.
            None => base[start..end]
                .iter()
                .rev()
                .fold(0u64, |word, &byte| (word << 8) | u64::from(byte)),
        };
    }
    hash = fold(a ^ seed[0] ^ hash, b ^ seed[1]);
    fold(hash ^ seed[1], K)
}

/// The text of `key`.
#[inline]
fn key_text<'t>(key: &Key, bytes: &'t [u8], decoded: &'t [u8]) -> &'t [u8] {
    let (start, end) = (key.start as usize, key.end as usize);
    if key.decoded {
        &decoded[start..end]
    } else {
        &bytes[start..end]
    }
}

impl Keys {
    /// The seed of [`key_hash`], drawn the first time.
    #[inline]
    fn seed(&mut self) -> [u64; 2] {
        *self.seed.get_or_insert_with(|| {
            use std::hash::BuildHasher;
            let state = std::collections::hash_map::RandomState::new();
            [state.hash_one(0x5eed_u64), state.hash_one(0x5eed_u64 + 1)]
        })
    }

    /// Add `key` to the innermost open object: `true` when that object has at most
    /// [`PAIRWISE`] keys and an equal one among them (compared by text only where the hashes
    /// are equal).
    #[inline]
    fn push(&mut self, key: Key, bytes: &[u8], decoded: &[u8]) -> bool {
        let object = self.starts.last().map_or(0, |s| s.0);
        let others = self.keys.get(object..).unwrap_or_default();
        let duplicate = others.len() < PAIRWISE
            && others.iter().any(|other| other.hash == key.hash)
            && Self::same_text(others, &key, bytes, decoded);
        self.keys.push(key);
        duplicate
    }

    /// Whether one of `others` has the text of `key`.
    #[cold]
    #[inline(never)]
    fn same_text(others: &[Key], key: &Key, bytes: &[u8], decoded: &[u8]) -> bool {
        let text = key_text(key, bytes, decoded);
        others
            .iter()
            .any(|other| other.hash == key.hash && key_text(other, bytes, decoded) == text)
    }

    /// The innermost open object ended: whether two of its keys are equal (checked here when
    /// it has more than [`PAIRWISE`]); its keys are dropped. Also returns where its decoded
    /// keys began in `Walker::decoded`.
    #[inline]
    fn close(&mut self, bytes: &[u8], decoded: &[u8]) -> (bool, usize) {
        let (object, decoded_at) = self.starts.pop().unwrap_or((0, 0));
        let duplicate =
            self.keys.len() - object > PAIRWISE && self.duplicate(object, bytes, decoded);
        self.keys.truncate(object);
        (duplicate, decoded_at)
    }

    /// Whether two of the keys from `object` on are equal, by buckets of their hashes.
    #[inline(never)]
    fn duplicate(&mut self, object: usize, bytes: &[u8], decoded: &[u8]) -> bool {
        let keys = &self.keys[object..];
        let n = keys.len();
        if n >= 1 << INDEX_BITS {
            let mut texts: Vec<&[u8]> = keys.iter().map(|k| key_text(k, bytes, decoded)).collect();
            texts.sort_unstable();
            return texts.windows(2).any(|p| p[0] == p[1]);
        }
        let same_hash = |a: u64, b: u64| (a ^ b) >> INDEX_BITS == 0;
        let index = |entry: u64| (entry & ((1 << INDEX_BITS) - 1)) as usize;
        let same = |a: u64, b: u64| {
            same_hash(a, b)
                && key_text(&keys[index(a)], bytes, decoded)
                    == key_text(&keys[index(b)], bytes, decoded)
        };
        // A bucket of a few keys pair by pair, a larger one sorted.
        let check = |run: &mut [u64]| {
            if run.len() <= 16 {
                return (1..run.len()).any(|i| run[..i].iter().any(|&e| same(e, run[i])));
            }
            run.sort_unstable();
            run.windows(2).any(|p| same(p[0], p[1]))
        };
        self.hashed.clear();
        self.hashed.extend(
            keys.iter()
                .enumerate()
                .map(|(i, key)| (key.hash & !((1 << INDEX_BITS) - 1)) | i as u64),
        );
        // About 8 keys a bucket.
        let bits = (usize::BITS - n.leading_zeros()).saturating_sub(3);
        if bits == 0 {
            return check(&mut self.hashed);
        }
        let shift = 64 - bits;
        self.counts.clear();
        self.counts.resize(1 << bits, 0);
        for &entry in &self.hashed {
            self.counts[(entry >> shift) as usize] += 1;
        }
        // `counts[b]`: where bucket `b` begins, then (moving on as it fills) where it ends.
        let mut sum = 0;
        for count in &mut self.counts {
            (*count, sum) = (sum, sum + *count);
        }
        self.bucketed.clear();
        self.bucketed.resize(n, 0);
        for &entry in &self.hashed {
            let next = &mut self.counts[(entry >> shift) as usize];
            self.bucketed[*next as usize] = entry;
            *next += 1;
        }
        let mut from = 0;
        self.counts.iter().any(|&end| {
            let run = &mut self.bucketed[from..end as usize];
            from = end as usize;
            run.len() > 1 && check(run)
        })
    }
}

/// A number as `serde_json` hands it to a visitor.
#[derive(Clone, Copy, Debug, PartialEq)]
enum Num {
    U(u64),
    I(i64),
    F(f64),
}

struct NumVisitor;

impl serde::de::Visitor<'_> for NumVisitor {
    type Value = Num;
    fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("a number")
    }
    fn visit_u64<E>(self, v: u64) -> Result<Num, E> {
        Ok(Num::U(v))
    }
    fn visit_i64<E>(self, v: i64) -> Result<Num, E> {
        Ok(Num::I(v))
    }
    fn visit_f64<E>(self, v: f64) -> Result<Num, E> {
        Ok(Num::F(v))
    }
}

/// The number token `token` (a whole number by the grammar) read as `serde_json` reads it
/// inside a larger text: its number reading looks at most one byte past the token, and only
/// for a digit, `.`, `e` or `E`, which cannot follow a whole token. `None` when it refuses
/// it, which for a token of the grammar is only for being out of range.
fn serde_number(token: &[u8]) -> Option<Num> {
    use serde::Deserializer as _;
    let mut de = serde_json::Deserializer::from_slice(token);
    (&mut de).deserialize_any(NumVisitor).ok()
}

/// The state of one walk over `bytes`.
struct Walker<'a, 'o> {
    bytes: &'a [u8],
    pos: usize,
    keys: Keys,
    /// Keys that had escapes, decoded one after the other (`Strict`).
    decoded: Vec<u8>,
    /// One decoded string (compact output, envelope fields).
    scratch: Vec<u8>,
    /// Kinds of the open containers, 1 bit each (1 = object), from level 64 on (the first
    /// word is a local of [`Walker::value`]).
    open: Vec<u64>,
    /// Compact output, when the walk writes it, and its budget.
    out: Option<&'o mut Vec<u8>>,
    max: usize,
    /// Whether a refusal of the reading (a lone surrogate, a number out of range, nesting
    /// too deep, a duplicate key) is kept in `refused` and the walk goes on, checking the
    /// grammar to the value's end (a member inside an envelope, where the grammar's refusals
    /// are the envelope's and the others the payload check's, or its depth's).
    soft: bool,
    /// The first refusal of the reading kept in `soft` mode.
    refused: Option<Refusal>,
    /// How many refusals of the reading `soft` mode has kept (the first in `refused`).
    kept: u32,
    /// Whether a nesting past the depth limit is noted in `deep` and the walk goes on (an
    /// envelope member's: the envelope refuses it, not its read), whether or not `soft`.
    depth_soft: bool,
    /// Whether a container passed the depth limit (noted in `depth_soft` mode).
    deep: bool,
    /// At a refusal of a [`compact`] walk, the bytes [`Compact`](super::compact::Compact)
    /// has written beyond (or short of) the walk's output there, which decide whether that
    /// read fails for its budget instead: it writes an array's `,` before it looks for the
    /// next element (+1), an object's `,` only with the key after it (-1 until then), and a
    /// key's `:` before it reads the colon (+1).
    lag: i8,
}

impl<'a, 'o> Walker<'a, 'o> {
    fn new(bytes: &'a [u8]) -> Self {
        Walker {
            bytes,
            pos: 0,
            keys: Keys::default(),
            decoded: Vec::new(),
            scratch: Vec::new(),
            open: Vec::new(),
            out: None,
            max: usize::MAX,
            soft: false,
            refused: None,
            kept: 0,
            depth_soft: false,
            deep: false,
            lag: 0,
        }
    }

    #[inline]
    fn peek(&self) -> Step<u8> {
        match self.bytes.get(self.pos) {
            Some(&b) => Ok(b),
            None => refuse(END, self.pos),
        }
    }

    /// A refusal of the reading (not of the grammar) at `at`: an error, or in `soft` mode
    /// kept (the first one) while the walk goes on.
    #[cold]
    #[inline(never)]
    fn reading(&mut self, what: &'static str, at: usize) -> Step {
        if !self.soft {
            return refuse(what, at);
        }
        self.refused.get_or_insert(Refusal { what, at });
        self.kept = self.kept.wrapping_add(1);
        Ok(())
    }

    #[inline]
    fn ws(&mut self) {
        while let Some(b' ' | b'\n' | b'\t' | b'\r') = self.bytes.get(self.pos) {
            self.pos += 1;
        }
    }

    #[inline]
    fn expect(&mut self, byte: u8, what: &'static str) -> Step {
        if self.peek()? == byte {
            self.pos += 1;
            Ok(())
        } else {
            refuse(what, self.pos)
        }
    }

    #[inline]
    fn emit(&mut self, text: &[u8]) {
        if let Some(out) = self.out.as_deref_mut() {
            out.extend_from_slice(text);
        }
    }

    /// The budget check that [`Compact`](super::compact::Compact) makes after each value and
    /// key it writes.
    #[inline]
    fn budget(&self) -> Step {
        match &self.out {
            Some(out) if out.len() > self.max => Err(Stop::TooLarge),
            _ => Ok(()),
        }
    }

    /// Four hex digits at `pos`, as a code unit.
    fn hex4(&mut self) -> Step<u16> {
        let mut n = 0u16;
        for i in 0..4 {
            let at = self.pos + i;
            let Some(&d) = self.bytes.get(at) else {
                return refuse(END, at);
            };
            let v = match d {
                b'0'..=b'9' => d - b'0',
                b'a'..=b'f' => d - b'a' + 10,
                b'A'..=b'F' => d - b'A' + 10,
                _ => return refuse(HEX, at),
            };
            n = (n << 4) | u16::from(v);
        }
        self.pos += 4;
        Ok(n)
    }

    /// One escape after its `\` (at `pos`), checked as `serde_json` does in `mode`
    /// (`Skip`: any `\uXXXX`; else surrogates paired), decoded into `scratch` when `decode`.
    fn escape(&mut self, mode: Mode, decode: bool) -> Step {
        let c = self.peek()?;
        self.pos += 1;
        let plain = match c {
            b'u' => {
                let at = self.pos - 2;
                let n = self.hex4()?;
                if mode == Mode::Skip {
                    return Ok(());
                }
                let code = match n {
                    0xDC00..=0xDFFF => return self.reading(SURROGATE, at),
                    0xD800..=0xDBFF => {
                        if self.bytes.get(self.pos..self.pos + 2) != Some(b"\\u") {
                            return self.reading(SURROGATE, at);
                        }
                        self.pos += 2;
                        let n2 = self.hex4()?;
                        if !(0xDC00..=0xDFFF).contains(&n2) {
                            return self.reading(SURROGATE, at);
                        }
                        (((u32::from(n) - 0xD800) << 10) | (u32::from(n2) - 0xDC00)) + 0x1_0000
                    }
                    _ => u32::from(n),
                };
                if decode {
                    let ch = char::from_u32(code).ok_or(Stop::Unsure)?;
                    let mut buf = [0; 4];
                    self.scratch
                        .extend_from_slice(ch.encode_utf8(&mut buf).as_bytes());
                }
                return Ok(());
            }
            _ => match simple_escape(c) {
                Some(plain) => plain,
                None => return refuse(ESCAPE, self.pos - 1),
            },
        };
        if decode {
            self.scratch.push(plain);
        }
        Ok(())
    }

    /// The string whose `"` is at `pos`; `pos` ends after its closing `"`. Returns whether it
    /// had escapes; when `decode`, its decoded text is appended to `scratch` (only when it
    /// had escapes: else the text is the input between the quotes).
    #[inline]
    fn string(&mut self, mode: Mode, decode: bool) -> Step<bool> {
        self.pos += 1;
        let bytes = self.bytes;
        let mut run = self.pos;
        let mut escaped = false;
        loop {
            // Eight bytes at a time to the first `"`, `\` or control character.
            let mut at = self.pos;
            for chunk in bytes.get(at..).unwrap_or_default().chunks_exact(8) {
                let word: [u8; 8] = chunk.try_into().unwrap_or_default();
                let found = specials(u64::from_le_bytes(word));
                if found != 0 {
                    at += (found.trailing_zeros() / 8) as usize;
                    break;
                }
                at += 8;
            }
            self.pos = at;
            let Some(&b) = bytes.get(self.pos) else {
                return refuse(END, self.pos);
            };
            match b {
                b'"' => {
                    if decode && escaped {
                        self.scratch.extend_from_slice(&bytes[run..self.pos]);
                    }
                    self.pos += 1;
                    return Ok(escaped);
                }
                b'\\' => {
                    if decode {
                        if !escaped {
                            self.scratch.clear();
                        }
                        self.scratch.extend_from_slice(&bytes[run..self.pos]);
                    }
                    escaped = true;
                    self.pos += 1;
                    self.escape(mode, decode)?;
                    run = self.pos;
                }
                0..=0x1f => return refuse(CONTROL, self.pos),
                _ => self.pos += 1,
            }
        }
    }

    /// A string value or key, written to the compact output when there is one.
    #[inline(never)]
    fn string_out(&mut self, mode: Mode) -> Step {
        let start = self.pos;
        let writing = self.out.is_some();
        let escaped = self.string(mode, writing)?;
        if let Some(out) = self.out.as_deref_mut() {
            if escaped {
                let text = std::str::from_utf8(&self.scratch).map_err(|_| Stop::Unsure)?;
                write_str(out, text);
            } else {
                out.extend_from_slice(&self.bytes[start..self.pos]);
            }
        }
        Ok(())
    }

    /// An object key at `pos` (after white space), then white space and the `:`; `first`
    /// when it is its object's first (for `lag`). A short key without escapes with its `:`
    /// right after it, in a walk that writes nothing, is read here; any other in
    /// [`Self::key_slow`].
    #[inline]
    fn key(&mut self, mode: Mode, first: bool) -> Step {
        let (bytes, start) = (self.bytes, self.pos);
        if self.out.is_none() && bytes.get(start) == Some(&b'"') {
            if let Some(end) = short_string(bytes, start) {
                if bytes.get(end) == Some(&b':') {
                    self.pos = end;
                    if mode == Mode::Strict {
                        let seed = self.keys.seed();
                        let key = Key {
                            hash: key_hash(bytes, start + 1, end - 1, seed),
                            start: (start + 1) as u32,
                            end: (end - 1) as u32,
                            decoded: false,
                        };
                        if self.keys.push(key, bytes, &self.decoded) {
                            let refused = self.reading(DUPLICATE, start);
                            if refused.is_err() {
                                if !first {
                                    self.lag = -1;
                                }
                                return refused;
                            }
                        }
                    }
                    // The `:`.
                    self.pos = end + 1;
                    return Ok(());
                }
            }
        }
        self.key_slow(mode, first)
    }

    /// [`Self::key`], any key.
    #[inline(never)]
    fn key_slow(&mut self, mode: Mode, first: bool) -> Step {
        if let Err(stop) = self.key_string(mode) {
            if !first {
                self.lag = -1;
            }
            return Err(stop);
        }
        self.budget()?;
        self.ws();
        if let Err(stop) = self.expect(b':', COLON) {
            self.lag = 1;
            return Err(stop);
        }
        self.emit(b":");
        Ok(())
    }

    /// The string of an object key at `pos` (kept for the duplicate check in `Strict`). In
    /// `Strict`, returns whether it had escapes (its decoded text then in `scratch`).
    fn key_string(&mut self, mode: Mode) -> Step<bool> {
        if self.peek()? != b'"' {
            return refuse(KEY, self.pos);
        }
        let start = self.pos;
        let escaped = match short_string(self.bytes, start) {
            Some(end) => {
                self.pos = end;
                false
            }
            None => self.string(mode, mode == Mode::Strict || self.out.is_some())?,
        };
        if mode == Mode::Strict {
            let seed = self.keys.seed();
            let key = if escaped {
                let at = self.decoded.len();
                self.decoded.extend_from_slice(&self.scratch);
                let end = self.decoded.len();
                Key {
                    hash: key_hash(&self.decoded, at, end, seed),
                    start: at as u32,
                    end: end as u32,
                    decoded: true,
                }
            } else {
                Key {
                    hash: key_hash(self.bytes, start + 1, self.pos - 1, seed),
                    start: (start + 1) as u32,
                    end: (self.pos - 1) as u32,
                    decoded: false,
                }
            };
            if self.keys.push(key, self.bytes, &self.decoded) {
                self.reading(DUPLICATE, start)?;
            }
        }
        if let Some(out) = self.out.as_deref_mut() {
            if escaped {
                let text = std::str::from_utf8(&self.scratch).map_err(|_| Stop::Unsure)?;
                write_str(out, text);
            } else {
                out.extend_from_slice(&self.bytes[start..self.pos]);
            }
        }
        Ok(escaped)
    }

    /// A refusal where a value ended inside a container (`object`: an object), no `,` or
    /// end byte after it.
    #[cold]
    #[inline(never)]
    fn after_value(&mut self, what: &'static str, at: usize, object: bool) -> Step {
        if !object {
            self.lag = 1;
        }
        refuse(what, at)
    }

    /// The innermost open object ended at its `}`, `at`: its keys are checked (when there
    /// are more than [`PAIRWISE`]) and dropped.
    #[inline]
    fn close_object(&mut self, at: usize) -> Step {
        let (duplicate, decoded) = self.keys.close(self.bytes, &self.decoded);
        self.decoded.truncate(decoded);
        if duplicate {
            return self.reading(DUPLICATE, at);
        }
        Ok(())
    }

    /// A number at `pos`, checked (and written) as in `mode`.
    #[inline(never)]
    fn number(&mut self, mode: Mode) -> Step {
        let bytes = self.bytes;
        let start = self.pos;
        let negative = bytes[start] == b'-';
        if negative {
            self.pos += 1;
        }
        let int_start = self.pos;
        match bytes.get(self.pos) {
            // `serde_json` refuses a digit after a leading `0` as part of the number.
            Some(b'0') => {
                self.pos += 1;
                if let Some(b'0'..=b'9') = bytes.get(self.pos) {
                    return refuse(NUMBER, self.pos);
                }
            }
            Some(b'1'..=b'9') => {
                self.pos += 1;
                while let Some(b'0'..=b'9') = bytes.get(self.pos) {
                    self.pos += 1;
                }
            }
            _ => return refuse(NUMBER, self.pos),
        }
        let int_digits = self.pos - int_start;
        let mut simple = true;
        if let Some(b'.') = bytes.get(self.pos) {
            simple = false;
            self.pos += 1;
            let at = self.pos;
            while let Some(b'0'..=b'9') = bytes.get(self.pos) {
                self.pos += 1;
            }
            if self.pos == at {
                return refuse(NUMBER, self.pos);
            }
        }
        // The decimal exponent of the first digit's place, bounded: the value is below
        // 10^(magnitude) (see the range check below).
        let mut magnitude: i64 = if bytes[int_start] == b'0' {
            0
        } else {
            int_digits as i64
        };
        if let Some(b'e' | b'E') = bytes.get(self.pos) {
            simple = false;
            self.pos += 1;
            let mut exp_negative = false;
            if let Some(&sign @ (b'+' | b'-')) = bytes.get(self.pos) {
                exp_negative = sign == b'-';
                self.pos += 1;
            }
            let at = self.pos;
            let mut exp: i64 = 0;
            while let Some(&d @ b'0'..=b'9') = bytes.get(self.pos) {
                exp = (exp * 10 + i64::from(d - b'0')).min(1 << 40);
                self.pos += 1;
            }
            if self.pos == at {
                return refuse(NUMBER, self.pos);
            }
            magnitude += if exp_negative { -exp } else { exp };
        }
        if mode == Mode::Skip {
            return Ok(());
        }
        let token = &bytes[start..self.pos];
        // At most 18 digits and not `-0`: an integer `serde_json` hands out as itself and
        // writes as it came.
        let plain = simple && int_digits <= 18 && !(negative && bytes[int_start] == b'0');
        if self.out.is_none() {
            // Below 10^308 is finite however it rounds (f64::MAX is 1.79e308); above,
            // `serde_json` decides.
            if plain || magnitude <= 308 {
                return Ok(());
            }
            return match serde_number(token) {
                Some(Num::F(f)) if f.is_infinite() => self.reading(RANGE, start),
                None => self.reading(RANGE, start),
                Some(_) => Ok(()),
            };
        }
        if plain {
            self.emit(token);
            return self.budget();
        }
        let Some(out) = self.out.as_deref_mut() else {
            return Ok(());
        };
        let Some(number) = serde_number(token) else {
            return refuse(RANGE, start);
        };
        match number {
            Num::U(n) => crate::core::wire::write_u64(out, n),
            Num::I(n) => {
                if n < 0 {
                    out.push(b'-');
                }
                crate::core::wire::write_u64(out, n.unsigned_abs());
            }
            Num::F(f) => {
                if !f.is_finite() || serde_json::to_writer(&mut *out, &f).is_err() {
                    return refuse(RANGE, start);
                }
            }
        }
        self.budget()
    }

    /// `true`, `false` or `null` at `pos`.
    #[inline(never)]
    fn literal(&mut self) -> Step {
        let word: &[u8] = match self.bytes[self.pos] {
            b't' => b"true",
            b'f' => b"false",
            _ => b"null",
        };
        if self.bytes.get(self.pos..self.pos + word.len()) != Some(word) {
            return refuse(LITERAL, self.pos);
        }
        self.pos += word.len();
        self.emit(word);
        self.budget()
    }

    /// Mark the 8 levels from `level` on as arrays in the bit stack, whose first word (the
    /// levels below 64) is `low`: returns that word.
    #[inline]
    fn mark_arrays(&mut self, low: u64, level: usize) -> u64 {
        let (word, bit) = (level / 64, level % 64);
        let mut low = low;
        if word == 0 {
            low &= !(0xff << bit);
        } else {
            self.open[word] &= !(0xff << bit);
        }
        if bit > 56 {
            self.open[word + 1] &= !(0xff >> (64 - bit));
        }
        low
    }

    /// Whether the 8 levels from `level` on are all arrays (`low`: as in [`Self::mark_arrays`]).
    #[inline]
    fn all_arrays(&self, low: u64, level: usize) -> bool {
        let (word, bit) = (level / 64, level % 64);
        let mut bits = if word == 0 { low } else { self.open[word] } >> bit;
        if bit > 56 {
            bits |= self.open[word + 1] << (64 - bit);
        }
        bits & 0xff == 0
    }

    /// Whether the container open at `level` is an object (`low`: as in
    /// [`Self::mark_arrays`]).
    #[inline]
    fn is_object(&self, low: u64, level: usize) -> bool {
        let word = if level < 64 {
            low
        } else {
            self.open[level / 64]
        };
        word & (1 << (level % 64)) != 0
    }

    /// One whole value at `pos` (white space first), read as in `mode`, with at most
    /// `max_depth` levels of objects and arrays (the value's own counted); `pos` ends
    /// right after it.
    ///
    /// The hot loop: it keeps the position in a local (written back to `self.pos` around
    /// the out-of-line steps: strings, keys, numbers other than plain integers), and the
    /// kind of the innermost open container in `object` (the bit stack is read only when a
    /// container closes).
    fn value(&mut self, mode: Mode, mut max_depth: usize) -> Step {
        let bytes = self.bytes;
        let writing = self.out.is_some();
        let strict = mode == Mode::Strict;
        // Room for the bit stack of the deepest nesting this value can have.
        let words = max_depth.min(bytes.len()) / 64 + 1;
        if self.open.len() < words {
            self.open.resize(words, 0);
        }
        let mut pos = self.pos;
        // Open containers of this value, and whether the innermost is an object. The bit
        // stack's first word (the levels below 64) is kept here, in `low`.
        let mut depth = 0usize;
        let mut object = false;
        let mut low = 0u64;
        // Whether the container closing next is an object that was empty (no keys pushed).
        let mut empty = false;
        loop {
            // A value is expected.
            let Some(&(mut c)) = bytes.get(pos) else {
                return refuse(END, pos);
            };
            while c <= b' ' && is_ws(c) {
                pos += 1;
                let Some(&next) = bytes.get(pos) else {
                    return refuse(END, pos);
                };
                c = next;
            }
            if c.is_ascii_digit() || c == b'-' {
                // A plain integer (digits, no leading zero, not `-0`, short enough to be
                // exact) here; anything else in `number`.
                let start = pos;
                let first = start + usize::from(c == b'-');
                let mut end = first;
                while let Some(b'0'..=b'9') = bytes.get(end) {
                    end += 1;
                }
                let digits = end - first;
                let plain = digits != 0
                    && digits <= if writing { 18 } else { 300 }
                    && (bytes[first] != b'0' || end == start + 1)
                    && !matches!(bytes.get(end), Some(b'.' | b'e' | b'E'));
                if plain {
                    pos = end;
                    if writing {
                        self.emit(&bytes[start..end]);
                        self.budget()?;
                    }
                } else {
                    self.pos = start;
                    self.number(mode)?;
                    pos = self.pos;
                }
            } else if c == b'"' {
                if let Some(end) = short_string(bytes, pos) {
                    if writing {
                        self.emit(&bytes[pos..end]);
                    }
                    pos = end;
                } else {
                    self.pos = pos;
                    self.string_out(mode)?;
                    pos = self.pos;
                }
                if writing {
                    self.budget()?;
                }
            } else if c == b'[' || c == b'{' {
                if depth >= max_depth {
                    // In `soft` mode the walk goes on to the value's end, at any depth.
                    self.deep = true;
                    if self.soft || !self.depth_soft {
                        self.reading(DEEP, pos)?;
                    }
                    max_depth = usize::MAX;
                    let words = bytes.len() / 64 + 1;
                    if self.open.len() < words {
                        self.open.resize(words, 0);
                    }
                }
                object = c == b'{';
                let (word, bit) = (depth / 64, depth % 64);
                if word == 0 {
                    low = (low & !(1 << bit)) | (u64::from(object) << bit);
                } else {
                    let kinds = &mut self.open[word];
                    *kinds = (*kinds & !(1 << bit)) | (u64::from(object) << bit);
                }
                depth += 1;
                pos += 1;
                if writing {
                    self.emit(&[c]);
                }
                if !object {
                    // Runs of `[`, 8 at a time.
                    while depth + 8 <= max_depth && word_at(bytes, pos) == Some(ONES * 0x5b) {
                        low = self.mark_arrays(low, depth);
                        depth += 8;
                        pos += 8;
                        if writing {
                            self.emit(b"[[[[[[[[");
                        }
                    }
                }
                let Some(&(mut c)) = bytes.get(pos) else {
                    return refuse(END, pos);
                };
                while c <= b' ' && is_ws(c) {
                    pos += 1;
                    let Some(&next) = bytes.get(pos) else {
                        return refuse(END, pos);
                    };
                    c = next;
                }
                if c != if object { b'}' } else { b']' } {
                    if object {
                        if strict {
                            let at = (self.keys.keys.len(), self.decoded.len());
                            self.keys.starts.push(at);
                        }
                        self.pos = pos;
                        self.key(mode, true)?;
                        pos = self.pos;
                    }
                    continue;
                }
                // Empty: closed below, at its end byte (an object without keys to check).
                empty = object;
            } else if c == b't' || c == b'f' || c == b'n' {
                self.pos = pos;
                self.literal()?;
                pos = self.pos;
            } else {
                return refuse(VALUE, pos);
            }
            // A value ended: close what ends here, up to the next value. An empty
            // container arrives here at its end byte, which the check below reads.
            loop {
                if depth == 0 {
                    self.pos = pos;
                    return Ok(());
                }
                let Some(&(mut c)) = bytes.get(pos) else {
                    return self.after_value(END, pos, object);
                };
                while c <= b' ' && is_ws(c) {
                    pos += 1;
                    let Some(&next) = bytes.get(pos) else {
                        return self.after_value(END, pos, object);
                    };
                    c = next;
                }
                if c == b',' {
                    pos += 1;
                    if writing {
                        self.emit(b",");
                    }
                    if object {
                        self.pos = pos;
                        self.ws();
                        self.key(mode, false)?;
                        pos = self.pos;
                    } else {
                        // Runs of small integers, 8 bytes at a time (looked for only at a digit).
                        let run = pos;
                        if bytes.get(pos).is_some_and(u8::is_ascii_digit) {
                            while let Some(word) = word_at(bytes, pos) {
                                if !small_integers(word) {
                                    break;
                                }
                                pos += 8;
                            }
                        }
                        if writing && pos > run {
                            self.emit(&bytes[run..pos]);
                            // The last comma is not a place where the budget is checked:
                            // the next value's check sees it.
                            if let Some(out) = &self.out {
                                if out.len() - 1 > self.max {
                                    return Err(Stop::TooLarge);
                                }
                            }
                        }
                    }
                    break;
                }
                if c != if object { b'}' } else { b']' } {
                    let what = if object { NEXT_MEMBER } else { NEXT_ELEMENT };
                    return self.after_value(what, pos, object);
                }
                // Runs of `]` closing 8 arrays, 8 at a time (the last close of a run is
                // a place the budget is checked, and the output only grew).
                if !object
                    && depth > 8
                    && word_at(bytes, pos) == Some(ONES * 0x5d)
                    && self.all_arrays(low, depth - 8)
                {
                    pos += 8;
                    depth -= 8;
                    if writing {
                        self.emit(b"]]]]]]]]");
                        self.budget()?;
                    }
                    object = self.is_object(low, depth - 1);
                    continue;
                }
                pos += 1;
                depth -= 1;
                if writing {
                    self.emit(&[c]);
                }
                if object && strict && !empty {
                    self.close_object(pos - 1)?;
                }
                empty = false;
                if writing {
                    self.budget()?;
                }
                object = depth > 0 && self.is_object(low, depth - 1);
            }
        }
    }

    /// White space to the end of the input.
    fn end(&mut self) -> Step {
        self.ws();
        if self.pos == self.bytes.len() {
            Ok(())
        } else {
            refuse(TRAILING, self.pos)
        }
    }
}

/// Deepest nesting [`strict::check`](super::strict::check) allows, the payload object counted
/// (its `MAX_DEPTH`; a test holds the two equal).
const STRICT_DEPTH: usize = 127;

/// `serde_json`'s own nesting limit, which a `Value` (and so [`compact`]) is read with: its
/// recursion counter starts at 128 and refuses the container that brings it to 0.
const SERDE_DEPTH: usize = 127;

/// Deepest nesting of an envelope member's value, its own container counted: with the
/// envelope around it a message nests at most 128 deep (PROTOCOL section 11).
const MEMBER_DEPTH: usize = 127;

/// The envelope member (its name as written, between the quotes) in which the JSON text of a
/// message, `data`, nests deeper than 128 levels (the envelope counted); `None` when it does
/// not. Text `serde_json` has read: the scan only passes strings and counts brackets.
pub(crate) fn too_deep(data: &[u8]) -> Option<&[u8]> {
    let mut depth = 0usize;
    let mut member: &[u8] = &[];
    // Whether the next string at depth 1 is a member name.
    let mut name_next = false;
    let mut pos = 0;
    while let Some(&b) = data.get(pos) {
        match b {
            b'"' => {
                let start = pos + 1;
                pos = start;
                while let Some(&c) = data.get(pos) {
                    match c {
                        b'\\' => pos += 2,
                        b'"' => break,
                        _ => pos += 1,
                    }
                }
                if depth == 1 && name_next {
                    member = data.get(start..pos).unwrap_or_default();
                    name_next = false;
                }
            }
            b'{' | b'[' => {
                depth += 1;
                if depth > MEMBER_DEPTH + 1 {
                    return Some(member);
                }
                name_next = depth == 1;
            }
            b'}' | b']' => depth = depth.saturating_sub(1),
            b',' => name_next = depth == 1,
            _ => {}
        }
        pos += 1;
    }
    None
}

/// Whether [`strict::check`](super::strict::check) passes `payload`: `Ok` only when it does,
/// [`Stop::Refused`] only when it refuses it (never [`Stop::Unsure`] today: text that is not
/// UTF-8 is refused too, as serde_json refuses it in a string and anywhere else it is not
/// JSON).
pub(crate) fn strict(payload: &[u8]) -> Step {
    if let Err(e) = std::str::from_utf8(payload) {
        return refuse(NOT_UTF8, e.valid_up_to());
    }
    let mut walker = Walker::new(payload);
    walker.value(Mode::Strict, STRICT_DEPTH)?;
    walker.end()
}

/// The compact text [`compact::compact`](super::compact::compact) appends for `raw`, appended
/// to `out`: `Ok` only when that read succeeds with this text; [`Stop::TooLarge`] only when
/// it fails for the budget `max`; [`Stop::Refused`] only when it fails otherwise (the walk
/// checks the budget where that read does, so the first of the two is the same).
/// [`Stop::Unsure`] for text that is not UTF-8 (where the budget may come first). On `Err`
/// `out` may hold part of the text.
pub(crate) fn compact(raw: &[u8], out: &mut Vec<u8>, max: usize) -> Step {
    std::str::from_utf8(raw).map_err(|_| Stop::Unsure)?;
    let mut walker = Walker::new(raw);
    walker.out = Some(out);
    walker.max = max;
    let result = walker
        .value(Mode::Read, SERDE_DEPTH)
        .and_then(|()| walker.end());
    if let Err(Stop::Refused(_)) = result {
        // Where that read fails it reports the budget when its output is past it.
        let written = walker.out.as_ref().map_or(0, |out| out.len());
        if written as i128 + i128::from(walker.lag) > max as i128 {
            return Err(Stop::TooLarge);
        }
    }
    result
}

/// [`compact`] with the checks of [`strict`] on the way (no key twice in one object): the
/// compaction of stored client JSON. `Ok` only when [`strict`] passes `raw` and [`compact`]
/// gives this text; [`Stop::Refused`] only when [`strict`] refuses it (found before the
/// output passed `max`), worded as [`strict`] words it; [`Stop::TooLarge`] when the output
/// passed `max` first. On `Err` `out` may hold part of the text.
pub(crate) fn compact_strict(raw: &[u8], out: &mut Vec<u8>, max: usize) -> Step {
    if let Err(e) = std::str::from_utf8(raw) {
        return refuse(NOT_UTF8, e.valid_up_to());
    }
    let mut walker = Walker::new(raw);
    walker.out = Some(out);
    walker.max = max;
    walker.value(Mode::Strict, STRICT_DEPTH)?;
    walker.end()
}

/// A member of an envelope the gateway reads, as `serde_json` reads it into an
/// `Option<Loose>`: `null` is `None`.
#[derive(Clone, Debug, PartialEq)]
pub(crate) enum Member<'a> {
    /// A string, borrowed when it had no escapes.
    Str(Cow<'a, str>),
    /// `true` or `false`.
    Bool(bool),
    /// A non-negative integer that fits in a `u64`.
    UInt(u64),
    /// Any other number.
    Number,
    /// An object.
    Object,
    /// An array.
    Array,
}

/// The names of the envelope members [`envelope`] reads, in the order of
/// [`Scanned::members`].
pub(crate) const MEMBERS: [&str; 5] = ["type", "id", "sessionId", "replyTo", "target"];

/// What [`envelope`] found in a message it accepted.
#[derive(Debug, Default)]
pub(crate) struct Scanned<'a> {
    /// The members named by [`MEMBERS`], `None` when absent or `null`.
    pub members: [Option<Member<'a>>; 5],
    /// The raw text of `payload`, `None` when absent or `null`.
    pub payload: Option<&'a [u8]>,
    /// What [`strict`] gives for `payload` when it was checked on the way (walked in the
    /// same pass, a refusal's offset counted from the payload's start); `None` when it was
    /// not checked.
    pub payload_check: Option<Result<(), Refusal>>,
    /// The first member (its name as written, between the quotes) whose value nests deeper
    /// than [`MEMBER_DEPTH`] (the message deeper than 128 levels, PROTOCOL section 11), the
    /// payload's by the count [`strict`] keeps; `None` when none does.
    pub deep: Option<&'a [u8]>,
    /// The members of the payload object whose names the caller asked for, in their order
    /// (see [`Noted`]); empty when the payload is absent, `null` or not an object.
    pub noted: Vec<Noted>,
}

/// A member of a payload object noted by [`envelope`]: one whose name (decoded) the caller
/// asked for, at most its first two times in the payload, or the first key that is not a
/// string as `serde_json` reads one (a lone surrogate escape, or in a checked payload any
/// refusal of the reading at that key), after which nothing more is noted. Offsets are in
/// bytes from the payload's start.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Noted {
    /// A member: its key from its `"` to after its closing `"`, and its value's span.
    Member {
        /// Where the key starts (its `"`).
        key: usize,
        /// Right after the key's closing `"`.
        key_end: usize,
        /// Where the value starts.
        value: usize,
        /// Right after the value.
        value_end: usize,
        /// Whether its value is read cleanly: no refusal of the reading in it (in a payload
        /// that is not checked: none in the keys of an object value's own members, which
        /// is all that `serde_json` reads of an object it keeps only the kind of).
        clean: bool,
    },
    /// A key that is not a string as `serde_json` reads one: where its `"` is.
    BadKey(usize),
}

/// The message of a duplicate envelope member, by its index in [`MEMBERS`] (5: `payload`).
const DUPLICATE_MEMBERS: [&str; 6] = [
    "duplicate field `type`",
    "duplicate field `id`",
    "duplicate field `sessionId`",
    "duplicate field `replyTo`",
    "duplicate field `target`",
    "duplicate field `payload`",
];

/// Read a whole message as [`parse_envelope`](super::parse_envelope) reads it with
/// `serde_json`: `Ok` only when that read succeeds, with the same members; [`Stop::Refused`]
/// only when it fails. [`Stop::Unsure`] for text that is not UTF-8 (that read does not
/// check the strings it skips; the gateway reads only UTF-8 messages).
///
/// The payload is checked as [`strict`] checks it on the way unless a `type` before it is
/// one for which `checked(type)` is `false` (a type whose payload is not forwarded unread).
/// Its refusals of the grammar are the message's; the others (a duplicate key, nesting,
/// a lone surrogate, a number out of range, which serde_json's read of the envelope skips)
/// are kept in [`Scanned::payload_check`] while the walk goes on to the payload's end. A
/// member nested deeper than [`MEMBER_DEPTH`] is not a refusal of the read (that read skips
/// it, or reads it all): it is noted in [`Scanned::deep`] and the walk goes on.
///
/// A payload object's members whose names `noted` maps to an index (below 64) are noted in
/// [`Scanned::noted`], in the same pass.
pub(crate) fn envelope(
    data: &[u8],
    checked: impl Fn(&str) -> bool,
    noted: impl Fn(&[u8]) -> Option<usize>,
) -> Step<Scanned<'_>> {
    std::str::from_utf8(data).map_err(|_| Stop::Unsure)?;
    let mut w = Walker::new(data);
    let mut scanned = Scanned::default();
    let mut seen = [false; 6];
    w.ws();
    w.expect(b'{', OBJECT)?;
    w.ws();
    if w.peek()? == b'}' {
        w.pos += 1;
        w.end()?;
        return Ok(scanned);
    }
    loop {
        w.ws();
        if w.peek()? != b'"' {
            return refuse(KEY, w.pos);
        }
        let start = w.pos;
        // Keys are read as strings (paired surrogates), and matched after decoding.
        let escaped = w.string(Mode::Read, true)?;
        // The name as written, between the quotes.
        let raw_name = &data[start + 1..w.pos - 1];
        let name: &[u8] = if escaped {
            &w.scratch
        } else {
            &data[start + 1..w.pos - 1]
        };
        let index = if name == b"payload" {
            Some(5)
        } else {
            MEMBERS.iter().position(|m| m.as_bytes() == name)
        };
        // serde_json's read refuses a member seen before as soon as it has its name.
        if let Some(i) = index {
            if seen[i] {
                return refuse(DUPLICATE_MEMBERS[i], start);
            }
        }
        w.ws();
        w.expect(b':', COLON)?;
        w.ws();
        match index {
            Some(5) => {
                seen[5] = true;
                if w.peek()? == b'n' {
                    w.literal()?;
                } else {
                    let at = w.pos;
                    let check = match &scanned.members[0] {
                        Some(Member::Str(msg_type)) => checked(msg_type),
                        _ => true,
                    };
                    let (mode, depth) = if check {
                        (Mode::Strict, STRICT_DEPTH)
                    } else {
                        (Mode::Skip, MEMBER_DEPTH)
                    };
                    let found = &mut scanned.noted;
                    found.clear();
                    w.soft(raw_name, &mut scanned.deep, check, |w| {
                        if w.peek()? == b'{' {
                            w.payload(mode, depth, &noted, found)
                        } else {
                            w.value(mode, depth)
                        }
                    })?;
                    if check {
                        scanned.payload_check = Some(match w.refused.take() {
                            None => Ok(()),
                            Some(r) => Err(Refusal {
                                what: r.what,
                                at: r.at - at,
                            }),
                        });
                    }
                    scanned.payload = Some(&data[at..w.pos]);
                }
            }
            Some(i) => {
                seen[i] = true;
                scanned.members[i] = w.soft(raw_name, &mut scanned.deep, false, Walker::member)?;
            }
            None => {
                w.soft(raw_name, &mut scanned.deep, false, |w| {
                    w.value(Mode::Skip, MEMBER_DEPTH)
                })?;
            }
        }
        w.ws();
        match w.peek()? {
            b',' => w.pos += 1,
            b'}' => {
                w.pos += 1;
                break;
            }
            _ => return refuse(NEXT_MEMBER, w.pos),
        }
    }
    w.end()?;
    Ok(scanned)
}

impl<'a> Walker<'a, '_> {
    /// The payload object whose `{` is at `pos`, read as [`Walker::value`] reads it in `mode`
    /// (the same refusals at the same bytes), member by member: the members `noted` names,
    /// and the first key that does not read cleanly, are pushed on `found` (see [`Noted`]).
    fn payload(
        &mut self,
        mode: Mode,
        max_depth: usize,
        noted: &impl Fn(&[u8]) -> Option<usize>,
        found: &mut Vec<Noted>,
    ) -> Step {
        let base = self.pos;
        let strict = mode == Mode::Strict;
        self.pos += 1;
        if strict {
            let at = (self.keys.keys.len(), self.decoded.len());
            self.keys.starts.push(at);
        }
        self.ws();
        if self.peek()? != b'}' {
            // Names noted once, and twice (then no more: a third changes nothing a read of
            // the payload gives).
            let (mut once, mut twice) = (0u64, 0u64);
            let mut noting = true;
            loop {
                let key = self.pos;
                let kept = self.kept;
                let escaped = self.payload_key(mode)?;
                let key_end = self.pos;
                let index = if !noting {
                    None
                } else if self.kept != kept {
                    found.push(Noted::BadKey(key - base));
                    noting = false;
                    None
                } else if escaped {
                    noted(&self.scratch)
                } else {
                    noted(&self.bytes[key + 1..key_end - 1])
                };
                self.ws();
                self.expect(b':', COLON)?;
                self.ws();
                let value = self.pos;
                match index.filter(|&i| i < 64 && twice & (1 << i) == 0) {
                    Some(i) => {
                        let kept = self.kept;
                        self.field(mode, max_depth - 1)?;
                        found.push(Noted::Member {
                            key: key - base,
                            key_end: key_end - base,
                            value: value - base,
                            value_end: self.pos - base,
                            clean: self.kept == kept,
                        });
                        if once & (1 << i) == 0 {
                            once |= 1 << i;
                        } else {
                            twice |= 1 << i;
                        }
                    }
                    None => self.member_value(mode, max_depth - 1)?,
                }
                self.ws();
                match self.peek()? {
                    b',' => {
                        self.pos += 1;
                        self.ws();
                    }
                    b'}' => break,
                    _ => return refuse(NEXT_MEMBER, self.pos),
                }
            }
        }
        self.pos += 1;
        if strict {
            self.close_object(self.pos - 1)?;
        }
        Ok(())
    }

    /// A member's value at `pos` (white space passed), as [`Walker::value`] reads it: a
    /// scalar by its own step, without that loop's setup (most members of a wide object are).
    #[inline]
    fn member_value(&mut self, mode: Mode, max_depth: usize) -> Step {
        match self.peek()? {
            b'"' => self.string(mode, false).map(|_| ()),
            c @ (b'-' | b'0'..=b'9') => match plain_integer(self.bytes, self.pos, c, 300) {
                Some(end) => {
                    self.pos = end;
                    Ok(())
                }
                None => self.number(mode),
            },
            b't' | b'f' | b'n' => self.literal(),
            _ => self.value(mode, max_depth),
        }
    }

    /// A key of the payload object (white space passed) as [`Walker::key_string`] reads it in
    /// `mode`; outside `Strict`, read as a string too, a refusal of that reading counted in
    /// `kept` and dropped. Returns whether it had escapes (its decoded text then in
    /// `scratch`).
    fn payload_key(&mut self, mode: Mode) -> Step<bool> {
        if mode == Mode::Strict {
            return self.key_string(mode);
        }
        self.object_key()
    }

    /// An object key at `pos` read as a string, outside `Strict`: a refusal of that reading
    /// (a lone surrogate) is counted in `kept` and dropped, the grammar's are refusals.
    /// Returns whether it had escapes (its decoded text then in `scratch`).
    fn object_key(&mut self) -> Step<bool> {
        if self.peek()? != b'"' {
            return refuse(KEY, self.pos);
        }
        let soft = std::mem::replace(&mut self.soft, true);
        let refused = self.refused.take();
        let escaped = self.string(Mode::Read, true);
        self.soft = soft;
        self.refused = refused;
        escaped
    }

    /// The value of a noted payload member, as [`Walker::value`] reads it in `mode`; outside
    /// `Strict`, the keys of an object value's own members are read as strings too
    /// ([`Walker::object_key`]), so that `kept` tells whether `serde_json` reads them.
    fn field(&mut self, mode: Mode, max_depth: usize) -> Step {
        if mode == Mode::Strict || self.peek()? != b'{' {
            return self.value(mode, max_depth);
        }
        self.pos += 1;
        self.ws();
        if self.peek()? != b'}' {
            loop {
                self.object_key()?;
                self.ws();
                self.expect(b':', COLON)?;
                self.value(mode, max_depth - 1)?;
                self.ws();
                match self.peek()? {
                    b',' => {
                        self.pos += 1;
                        self.ws();
                    }
                    b'}' => break,
                    _ => return refuse(NEXT_MEMBER, self.pos),
                }
            }
        }
        self.pos += 1;
        Ok(())
    }

    /// `read` (the value of the envelope member `name`) with a nesting past the depth limit
    /// noted in `deep` (`name`, unless a member before was noted) while the walk goes on;
    /// `payload`: in `soft` mode too (the refusals of the reading kept in `refused`, the
    /// payload check's), else those refusals are the message's.
    fn soft<T>(
        &mut self,
        name: &'a [u8],
        deep: &mut Option<&'a [u8]>,
        payload: bool,
        read: impl FnOnce(&mut Self) -> Step<T>,
    ) -> Step<T> {
        self.soft = payload;
        self.depth_soft = true;
        self.deep = false;
        let result = read(self);
        self.soft = false;
        self.depth_soft = false;
        if self.deep && deep.is_none() {
            *deep = Some(name);
        }
        result
    }

    /// One envelope member read as a `Loose` value (white space already passed): a string
    /// read as a string, a number as a number, an object's keys as strings and its values
    /// skipped, an array's elements skipped.
    fn member(&mut self) -> Step<Option<Member<'a>>> {
        let data = self.bytes;
        match self.peek()? {
            b'n' => {
                self.literal()?;
                Ok(None)
            }
            b't' | b'f' => {
                let yes = self.peek()? == b't';
                self.literal()?;
                Ok(Some(Member::Bool(yes)))
            }
            b'"' => {
                let start = self.pos;
                let escaped = self.string(Mode::Read, true)?;
                let text = if escaped {
                    let text = std::str::from_utf8(&self.scratch).map_err(|_| Stop::Unsure)?;
                    Cow::Owned(text.to_owned())
                } else {
                    let text = std::str::from_utf8(&data[start + 1..self.pos - 1])
                        .map_err(|_| Stop::Unsure)?;
                    Cow::Borrowed(text)
                };
                Ok(Some(Member::Str(text)))
            }
            b'-' | b'0'..=b'9' => {
                let start = self.pos;
                self.number(Mode::Read)?;
                let token = &data[start..self.pos];
                let plain = token.len() <= 18 && token.iter().all(u8::is_ascii_digit);
                let member = if plain {
                    std::str::from_utf8(token)
                        .ok()
                        .and_then(|t| t.parse().ok())
                        .map_or(Member::Number, Member::UInt)
                } else {
                    match serde_number(token) {
                        None => return refuse(RANGE, start),
                        Some(Num::U(n)) => Member::UInt(n),
                        Some(Num::I(n)) => u64::try_from(n).map_or(Member::Number, Member::UInt),
                        Some(Num::F(_)) => Member::Number,
                    }
                };
                Ok(Some(member))
            }
            b'[' => {
                self.pos += 1;
                self.ws();
                if self.peek()? != b']' {
                    loop {
                        self.value(Mode::Skip, MEMBER_DEPTH - 1)?;
                        self.ws();
                        match self.peek()? {
                            b',' => self.pos += 1,
                            b']' => break,
                            _ => return refuse(NEXT_ELEMENT, self.pos),
                        }
                    }
                }
                self.pos += 1;
                Ok(Some(Member::Array))
            }
            b'{' => {
                self.pos += 1;
                self.ws();
                if self.peek()? != b'}' {
                    loop {
                        self.ws();
                        self.key(Mode::Read, true)?;
                        self.value(Mode::Skip, MEMBER_DEPTH - 1)?;
                        self.ws();
                        match self.peek()? {
                            b',' => self.pos += 1,
                            b'}' => break,
                            _ => return refuse(NEXT_MEMBER, self.pos),
                        }
                    }
                }
                self.pos += 1;
                Ok(Some(Member::Object))
            }
            _ => refuse(VALUE, self.pos),
        }
    }
}

#[cfg(test)]
mod tests;

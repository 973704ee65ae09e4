//! The JSON the attacks send, each built to a size: the records and messages at the limits,
//! and the minimal ones of the baselines. Everything is compact JSON, so its length is the
//! "compact JSON size" the limits of PROTOCOL section 11 count.

/// `[0,0,...,0]` of at most `len` bytes (at least `[0]`): the JSON whose parsed tree costs
/// most per byte (one tree node per two bytes).
pub fn zeros(len: usize, digit: char) -> String {
    let n = (len.saturating_sub(1) / 2).max(1);
    let mut s = String::with_capacity(2 * n + 1);
    s.push('[');
    for i in 0..n {
        if i > 0 {
            s.push(',');
        }
        s.push(digit);
    }
    s.push(']');
    s
}

/// `{"m":[0,...]}` of at most `len` bytes.
pub fn metadata(len: usize, digit: char) -> String {
    format!(r#"{{"m":{}}}"#, zeros(len.saturating_sub(6), digit))
}

/// Capabilities with `names` distinct tool names, every field given, in the order the
/// record is written back, so that no default is added to what is stored.
pub fn capabilities(names: usize) -> String {
    let tools: Vec<String> = (0..names).map(|i| format!("\"t{i}\"")).collect();
    format!(
        r#"{{"chat":false,"tools":[{}],"streaming":false,"modes":[]}}"#,
        tools.join(",")
    )
}

/// An `agent_register` payload: `capabilities` and metadata of `meta_len` bytes (none when 0),
/// a `name` of `name_len` bytes.
pub fn agent(agent_id: &str, name_len: usize, capabilities: &str, meta_len: usize) -> String {
    let metadata = if meta_len > 0 {
        format!(r#","metadata":{}"#, metadata(meta_len, '0'))
    } else {
        String::new()
    };
    format!(
        r#"{{"agentId":"{agent_id}","type":"custom","name":"{}","capabilities":{capabilities}{metadata}}}"#,
        "n".repeat(name_len.max(1))
    )
}

/// `[[[...]]]` nested `depth` deep.
pub fn nested(depth: usize) -> String {
    let mut s = String::with_capacity(2 * depth);
    s.extend(std::iter::repeat('[').take(depth));
    s.extend(std::iter::repeat(']').take(depth));
    s
}

/// A message of `msg_type` whose payload is `payload`, with the `"id":"@"` that
/// [`crate::client::Frame`] fills in.
pub fn message(msg_type: &str, payload: &str) -> String {
    format!(r#"{{"type":"{msg_type}","id":"@","payload":{payload}}}"#)
}

/// Bytes an envelope adds around a payload (type up to 16 bytes, an 8-digit id, a
/// `sessionId` up to 16 bytes), to size a whole message within a limit.
pub const ENVELOPE: usize = 96;

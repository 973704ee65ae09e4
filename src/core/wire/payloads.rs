//! Payload shapes of PROTOCOL sections 3-6 and 12: the typed, borrowed structs incoming
//! payloads are read into, and the structs outgoing payloads are serialized from.
//!
//! Contract:
//! - Incoming structs read every scalar field as [`Loose`], so a field of the wrong type is
//!   reported by name (through the helpers of `envelope.rs`) instead of failing the whole
//!   payload; unknown fields are ignored. `allowUsers` is borrowed as its raw text ([`Raw`]) and
//!   read by [`AllowUsersIn::read`], which tells a list of ids from anything else in the
//!   same way and reads no further than its limit. Only `session_create`'s
//!   `metadata` is read as a `serde_json::Value`, once its compact size is known to fit; a
//!   `session_patch`'s `patch`, and an agent's `capabilities` and `metadata`, are borrowed as
//!   their raw text ([`Raw`]) and compacted or merged from it.
//! - [`parse`] reads a payload from the members the envelope's walk noted
//!   ([`fields`](crate::core::wire::fields)), so the members no struct reads cost nothing
//!   more; the result is `serde_json`'s read of the whole payload, and a serde failure
//!   (duplicate field, a lone surrogate, a number out of range) becomes an
//!   `INVALID_MESSAGE` about `payload` with `serde_json`'s text.
//! - Outgoing structs borrow everything and serialize to exactly the documented fields;
//!   [`SessionInfoOut`] is written by its own writer, since session metadata is stored as
//!   compact JSON text and copied verbatim.

use std::borrow::Cow;

use serde::{Deserialize, Serialize};

use crate::core::agents::{Agent, AgentStatus, AgentType};
use crate::core::errors::ErrorCode;
use crate::core::sessions::MAX_METADATA_BYTES;
use crate::core::wire::fields::{self, Raw};
use crate::core::wire::{write_str, write_u64, Envelope, FieldError, Loose, MAX_ID_BYTES};

/// Read the payload of `env` into `T`: from the members its walk noted
/// ([`fields::read`]), else the whole payload ([`parse_text`]); the same either way.
pub(crate) fn parse<'a, T: Deserialize<'a>>(env: &Envelope<'a>) -> Result<T, FieldError> {
    let read = env
        .noted
        .as_deref()
        .and_then(|noted| fields::read(env.payload, noted));
    match read {
        Some(Ok(value)) => Ok(value),
        Some(Err(error)) => Err(payload_error(error)),
        None => parse_text(env.payload),
    }
}

/// Read a payload (the raw JSON object text of an envelope) into `T` with `serde_json`.
pub(crate) fn parse_text<'a, T: Deserialize<'a>>(payload: &'a [u8]) -> Result<T, FieldError> {
    serde_json::from_slice(payload).map_err(|e| payload_error(e.to_string()))
}

fn payload_error(error: String) -> FieldError {
    FieldError::new("payload", format!("payload: {error}"))
}

/// `auth` `{"token"?,"password"?,"clientId"?,"clientType"?}`.
#[derive(Debug, Deserialize)]
pub(crate) struct AuthIn<'a> {
    /// `token`
    #[serde(borrow)]
    pub token: Option<Loose<'a>>,
    /// `password`
    #[serde(borrow)]
    pub password: Option<Loose<'a>>,
    /// `clientId`
    #[serde(borrow, rename = "clientId")]
    pub client_id: Option<Loose<'a>>,
    /// `clientType`
    #[serde(borrow, rename = "clientType")]
    pub client_type: Option<Loose<'a>>,
}

/// `connect` `{"deviceId","deviceName"?,"role","protocolVersion"}`.
#[derive(Debug, Deserialize)]
pub(crate) struct ConnectIn<'a> {
    /// `deviceId`
    #[serde(borrow, rename = "deviceId")]
    pub device_id: Option<Loose<'a>>,
    /// `deviceName`
    #[serde(borrow, rename = "deviceName")]
    pub device_name: Option<Loose<'a>>,
    /// `role`
    #[serde(borrow)]
    pub role: Option<Loose<'a>>,
    /// `protocolVersion`
    #[serde(borrow, rename = "protocolVersion")]
    pub protocol_version: Option<Loose<'a>>,
}

/// `session_create` `{"sessionId"?,"name"?,"metadata"?,"access"?,"allowUsers"?}`,
/// `metadata` read as `M`: its raw text ([`Raw`]), to measure it first, or a `Value`.
#[derive(Debug, Deserialize)]
pub(crate) struct SessionCreateIn<'a, M> {
    /// `sessionId`
    #[serde(borrow, rename = "sessionId")]
    pub session_id: Option<Loose<'a>>,
    /// `name`
    #[serde(borrow)]
    pub name: Option<Loose<'a>>,
    /// `metadata`
    pub metadata: Option<M>,
    /// `access`
    #[serde(borrow)]
    pub access: Option<Loose<'a>>,
    /// `allowUsers`, its text as sent (read by [`AllowUsersIn::read`])
    #[serde(borrow, rename = "allowUsers")]
    pub allow_users: Option<Raw<'a>>,
}

/// Most bytes of `allowUsers` ids read (each id's bytes plus 3, repeats included): a
/// session's metadata limit, which the ids count toward.
pub(crate) const MAX_ALLOW_BYTES: usize = MAX_METADATA_BYTES;

/// `allowUsers` (PROTOCOL section 12), read from its JSON text ([`AllowUsersIn::read`]): an
/// array of identifiers, or what is wrong with it.
#[derive(Debug, PartialEq)]
pub(crate) enum AllowUsersIn<'a> {
    /// `null`: as if absent.
    Null,
    /// Not an array of identifiers; the reason, for the error message.
    Wrong(&'static str),
    /// An array of identifiers (each non-empty, at most [`MAX_ID_BYTES`] bytes).
    Ids {
        /// The ids, in order, while `bytes` was within [`MAX_ALLOW_BYTES`].
        ids: Vec<Cow<'a, str>>,
        /// Each id's bytes plus 3, over the ids read: past [`MAX_ALLOW_BYTES`] when the
        /// array held more than that (the entries after were not read).
        bytes: usize,
    },
}

const NOT_STRINGS: &str = "allowUsers must be an array of strings";
const BAD_ID: &str = "allowUsers entries must be non-empty and at most 128 bytes";

impl<'a> AllowUsersIn<'a> {
    /// Read `allowUsers` from `raw`, its JSON text (which the envelope's walk, or
    /// `serde_json`, has found well formed), entry by entry, and only as far as it matters,
    /// so that the work is bounded by the limit, not by the message:
    /// - an entry that is not a string (or not one `serde_json` reads: a lone surrogate
    ///   escape) makes it [`AllowUsersIn::Wrong`] with [`NOT_STRINGS`], and ends the read;
    /// - an empty or longer than [`MAX_ID_BYTES`] entry makes it [`BAD_ID`], unless an entry
    ///   that is not a string follows;
    /// - the read also ends once the entries read count (each one's bytes plus 3) past
    ///   [`MAX_ALLOW_BYTES`]: then, with nothing wrong before, it is [`AllowUsersIn::Ids`]
    ///   with `bytes` past the limit, whatever the entries after it are.
    pub(crate) fn read(raw: Raw<'a>) -> AllowUsersIn<'a> {
        let text = raw.get();
        let bytes = text.as_bytes();
        let skip_ws = |mut at: usize| {
            while bytes.get(at).is_some_and(|b| b.is_ascii_whitespace()) {
                at += 1;
            }
            at
        };
        let mut at = skip_ws(0);
        match bytes.get(at) {
            Some(b'n') => return AllowUsersIn::Null,
            Some(b'[') => at += 1,
            _ => return AllowUsersIn::Wrong(NOT_STRINGS),
        }
        let (mut ids, mut read, mut wrong) = (Vec::new(), 0usize, None);
        loop {
            at = skip_ws(at);
            match bytes.get(at) {
                Some(b'"') => {}
                // Nothing read yet: `[]` (every entry counts at least 3).
                Some(b']') if read == 0 => break,
                _ => return AllowUsersIn::Wrong(NOT_STRINGS),
            }
            // The string's end: its closing quote (an escape's next byte is never one).
            let start = at;
            let mut end = start + 1;
            let mut escaped = false;
            loop {
                match bytes.get(end) {
                    Some(b'"') => break,
                    Some(b'\\') => {
                        escaped = true;
                        end += 2;
                    }
                    Some(_) => end += 1,
                    None => return AllowUsersIn::Wrong(NOT_STRINGS),
                }
            }
            let id: Cow<'a, str> = if escaped {
                match serde_json::from_str::<String>(&text[start..=end]) {
                    Ok(id) => Cow::Owned(id),
                    Err(_) => return AllowUsersIn::Wrong(NOT_STRINGS),
                }
            } else {
                Cow::Borrowed(&text[start + 1..end])
            };
            read = read.saturating_add(id.len() + 3);
            if id.is_empty() || id.len() > MAX_ID_BYTES {
                wrong = Some(BAD_ID);
            } else if wrong.is_none() && read <= MAX_ALLOW_BYTES {
                ids.push(id);
            }
            at = skip_ws(end + 1);
            match bytes.get(at) {
                Some(b',') if read <= MAX_ALLOW_BYTES => at += 1,
                Some(b',') => break, // past the limit: the rest is not read
                Some(b']') => break,
                _ => return AllowUsersIn::Wrong(NOT_STRINGS),
            }
        }
        match wrong {
            Some(reason) => AllowUsersIn::Wrong(reason),
            None => AllowUsersIn::Ids { ids, bytes: read },
        }
    }
}

/// `session_join` / `session_leave` `{"sessionId"}`.
#[derive(Debug, Deserialize)]
pub(crate) struct SessionRefIn<'a> {
    /// `sessionId`
    #[serde(borrow, rename = "sessionId")]
    pub session_id: Option<Loose<'a>>,
}

/// `session_patch` `{"sessionKey","patch"?,"access"?,"allowUsers"?}`.
#[derive(Debug, Deserialize)]
pub(crate) struct SessionPatchIn<'a> {
    /// `sessionKey`
    #[serde(borrow, rename = "sessionKey")]
    pub session_key: Option<Loose<'a>>,
    /// `patch`, its text as sent (merged as text: `wire/merge.rs`)
    #[serde(borrow)]
    pub patch: Option<Raw<'a>>,
    /// `access`
    #[serde(borrow)]
    pub access: Option<Loose<'a>>,
    /// `allowUsers`, its text as sent (read by [`AllowUsersIn::read`])
    #[serde(borrow, rename = "allowUsers")]
    pub allow_users: Option<Raw<'a>>,
}

/// `presence` `{"status","sessionKey"?}`.
#[derive(Debug, Deserialize)]
pub(crate) struct PresenceIn<'a> {
    /// `status`
    #[serde(borrow)]
    pub status: Option<Loose<'a>>,
    /// `sessionKey`
    #[serde(borrow, rename = "sessionKey")]
    pub session_key: Option<Loose<'a>>,
}

/// `presence_query` `{"limit"?,"cursor"?}`.
#[derive(Debug, Deserialize)]
pub(crate) struct PresenceQueryIn<'a> {
    /// `limit`
    #[serde(borrow)]
    pub limit: Option<Loose<'a>>,
    /// `cursor`
    #[serde(borrow)]
    pub cursor: Option<Loose<'a>>,
}

/// `admin_kick` `{"clientId","reason"?}`.
#[derive(Debug, Deserialize)]
pub(crate) struct AdminKickIn<'a> {
    /// `clientId`
    #[serde(borrow, rename = "clientId")]
    pub client_id: Option<Loose<'a>>,
    /// `reason`
    #[serde(borrow)]
    pub reason: Option<Loose<'a>>,
}

/// `admin_clients` `{"limit"?,"cursor"?}`.
#[derive(Debug, Deserialize)]
pub(crate) struct AdminClientsIn<'a> {
    /// `limit`
    #[serde(borrow)]
    pub limit: Option<Loose<'a>>,
    /// `cursor`
    #[serde(borrow)]
    pub cursor: Option<Loose<'a>>,
}

/// `agent_register` `{"agentId"?,"type","name","capabilities","metadata"?}`.
#[derive(Debug, Deserialize)]
pub(crate) struct AgentRegisterIn<'a> {
    /// `agentId`
    #[serde(borrow, rename = "agentId")]
    pub agent_id: Option<Loose<'a>>,
    /// `type`
    #[serde(borrow, rename = "type")]
    pub agent_type: Option<Loose<'a>>,
    /// `name`
    #[serde(borrow)]
    pub name: Option<Loose<'a>>,
    /// `capabilities`, its text as sent (compacted when it is read)
    #[serde(borrow)]
    pub capabilities: Option<Raw<'a>>,
    /// `metadata`, as `capabilities`
    #[serde(borrow)]
    pub metadata: Option<Raw<'a>>,
}

/// `agent_unregister` `{"agentId"}` and `agent_heartbeat` `{"agentId","status"?}`.
#[derive(Debug, Deserialize)]
pub(crate) struct AgentRefIn<'a> {
    /// `agentId`
    #[serde(borrow, rename = "agentId")]
    pub agent_id: Option<Loose<'a>>,
    /// `status`
    #[serde(borrow)]
    pub status: Option<Loose<'a>>,
}

/// `agent_query` `{"capability"?,"type"?,"onlineOnly"?,"limit"?,"cursor"?}`.
#[derive(Debug, Deserialize)]
pub(crate) struct AgentQueryIn<'a> {
    /// `capability`
    #[serde(borrow)]
    pub capability: Option<Loose<'a>>,
    /// `type`
    #[serde(borrow, rename = "type")]
    pub agent_type: Option<Loose<'a>>,
    /// `onlineOnly`
    #[serde(borrow, rename = "onlineOnly")]
    pub online_only: Option<Loose<'a>>,
    /// `limit`
    #[serde(borrow)]
    pub limit: Option<Loose<'a>>,
    /// `cursor`
    #[serde(borrow)]
    pub cursor: Option<Loose<'a>>,
}

/// The agent type named `name`.
pub(crate) fn agent_type(name: &str) -> Option<AgentType> {
    Some(match name {
        "pi" => AgentType::Pi,
        "cli" => AgentType::Cli,
        "webchat" => AgentType::Webchat,
        "companion" => AgentType::Companion,
        "channel" => AgentType::Channel,
        "custom" => AgentType::Custom,
        _ => return None,
    })
}

/// The status an `agent_heartbeat` may set: `online` or `busy`.
pub(crate) fn heartbeat_status(name: &str) -> Option<AgentStatus> {
    match name {
        "online" => Some(AgentStatus::Online),
        "busy" => Some(AgentStatus::Busy),
        _ => None,
    }
}

/// The `connect` role named `name`, as a static string.
pub(crate) fn role(name: &str) -> Option<&'static str> {
    match name {
        "control" => Some("control"),
        "node" => Some("node"),
        "webchat" => Some("webchat"),
        _ => None,
    }
}

/// The welcome `session_info` of PROTOCOL section 3.
#[derive(Debug, Serialize)]
pub(crate) struct WelcomeOut<'a> {
    /// The client id again.
    #[serde(rename = "sessionId")]
    pub session_id: &'a str,
    /// `clientId`
    #[serde(rename = "clientId")]
    pub client_id: &'a str,
    /// Always `connected`.
    pub status: &'static str,
    /// Whether `auth` is needed.
    #[serde(rename = "authRequired")]
    pub auth_required: bool,
}

/// `auth_success` `{"clientId","userId","expiresAt"?}`.
#[derive(Debug, Serialize)]
pub(crate) struct AuthSuccessOut<'a> {
    /// `clientId`
    #[serde(rename = "clientId")]
    pub client_id: &'a str,
    /// `userId`
    #[serde(rename = "userId")]
    pub user_id: &'a str,
    /// `expiresAt`: the JWT's `exp` in ms, in `auth_mode = jwt` only.
    #[serde(rename = "expiresAt", skip_serializing_if = "Option::is_none")]
    pub expires_at: Option<u64>,
}

/// One entry of `hello_ok.presence` and of `presence_list.devices`.
#[derive(Debug, Serialize)]
pub(crate) struct DevicePresenceOut<'a> {
    /// `deviceId`
    #[serde(rename = "deviceId")]
    pub device_id: &'a str,
    /// `role`
    pub role: &'a str,
    /// `connectedAt`
    #[serde(rename = "connectedAt")]
    pub connected_at: u64,
}

/// `hello_ok.health`.
#[derive(Debug, Serialize)]
pub(crate) struct HealthOut {
    /// Always `ok`.
    pub status: &'static str,
    /// When this was checked, ms since the Unix epoch.
    #[serde(rename = "checkedAt")]
    pub checked_at: u64,
}

/// The protocol version this gateway speaks, in `hello_ok`.
pub(crate) const PROTOCOL_VERSION: u32 = 1;

/// `hello_ok`.
#[derive(Debug, Serialize)]
pub(crate) struct HelloOkOut<'a> {
    /// `clientId`
    #[serde(rename = "clientId")]
    pub client_id: &'a str,
    /// Always true.
    pub paired: bool,
    /// Ms since the gateway started.
    pub uptime: u64,
    /// Changes to sessions and agents so far.
    #[serde(rename = "stateVersion")]
    pub state_version: u64,
    /// The gateway's protocol version, 1.
    #[serde(rename = "protocolVersion")]
    pub protocol_version: u32,
    /// Devices of authenticated connections that sent `connect`, one page.
    pub presence: Vec<DevicePresenceOut<'a>>,
    /// `{"status":"ok","checkedAt"}`.
    pub health: HealthOut,
    /// The gateway's auth setting.
    #[serde(rename = "authRequired")]
    pub auth_required: bool,
}

/// `presence_list` `{"devices","next"?}`.
#[derive(Debug, Serialize)]
pub(crate) struct PresenceListOut<'a> {
    /// One page of devices.
    pub devices: Vec<DevicePresenceOut<'a>>,
    /// The cursor of the following page, when there is one.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub next: Option<String>,
}

/// `admin_result` `{"status"}`.
#[derive(Debug, Serialize)]
pub(crate) struct AdminResultOut {
    /// `kicked`
    pub status: &'static str,
}

/// One entry of `client_list.clients`.
#[derive(Debug, Serialize)]
pub(crate) struct ClientOut<'a> {
    /// `clientId`
    #[serde(rename = "clientId")]
    pub client_id: &'a str,
    /// `userId`, `null` until it authenticates.
    #[serde(rename = "userId")]
    pub user_id: Option<&'a str>,
    /// Whether it has authenticated.
    pub authenticated: bool,
    /// When the connection opened, ms since the Unix epoch.
    #[serde(rename = "connectedAt")]
    pub connected_at: u64,
    /// The ids of the sessions it is in, in the order it entered them.
    pub sessions: Vec<&'a str>,
}

/// `client_list` `{"clients","next"?}`.
#[derive(Debug, Serialize)]
pub(crate) struct ClientListOut<'a> {
    /// One page of clients.
    pub clients: Vec<ClientOut<'a>>,
    /// The cursor of the following page, when there is one.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub next: Option<String>,
}

/// One entry of a `members` list.
#[derive(Debug, Serialize)]
pub(crate) struct MemberOut<'a> {
    /// `clientId`
    #[serde(rename = "clientId")]
    pub client_id: &'a str,
    /// `userId`
    #[serde(rename = "userId")]
    pub user_id: &'a str,
}

/// `session_info` about one session, written by [`SessionInfoOut::write`].
#[derive(Debug)]
pub(crate) struct SessionInfoOut<'a> {
    /// `sessionId`
    pub session_id: &'a str,
    /// `created`, `joined`, `left`, `patched` or `removed`.
    pub status: &'static str,
    /// The session's name, on `created` and `joined` when it has one.
    pub name: Option<&'a str>,
    /// Its owner's `userId`, on `created`, `joined` and `patched`.
    pub owner: Option<&'a str>,
    /// Its access (`open` or `private`), with `owner`.
    pub access: Option<&'static str>,
    /// Members in join order, on `created` and `joined`.
    pub members: Option<&'a [MemberOut<'a>]>,
    /// The metadata as stored (compact JSON text of an object), on `created`, `joined` and
    /// `patched`.
    pub metadata: Option<&'a str>,
}

impl SessionInfoOut<'_> {
    /// Append the payload object to `buf`: the fields that are set, `metadata` verbatim.
    pub(crate) fn write(&self, buf: &mut Vec<u8>) -> bool {
        buf.extend_from_slice(b"{\"sessionId\":");
        write_str(buf, self.session_id);
        buf.extend_from_slice(b",\"status\":");
        write_str(buf, self.status);
        if let Some(name) = self.name {
            buf.extend_from_slice(b",\"name\":");
            write_str(buf, name);
        }
        if let Some(owner) = self.owner {
            buf.extend_from_slice(b",\"owner\":");
            write_str(buf, owner);
        }
        if let Some(access) = self.access {
            buf.extend_from_slice(b",\"access\":");
            write_str(buf, access);
        }
        if let Some(members) = self.members {
            buf.extend_from_slice(b",\"members\":");
            if serde_json::to_writer(&mut *buf, members).is_err() {
                return false;
            }
        }
        if let Some(metadata) = self.metadata {
            buf.extend_from_slice(b",\"metadata\":");
            buf.extend_from_slice(metadata.as_bytes());
        }
        buf.push(b'}');
        true
    }
}

/// `presence` as fanned out.
#[derive(Debug, Serialize)]
pub(crate) struct PresenceOut<'a> {
    /// Whose presence.
    #[serde(rename = "clientId")]
    pub client_id: &'a str,
    /// Its `userId`.
    #[serde(rename = "userId")]
    pub user_id: &'a str,
    /// `joined`, `left` or the client's own status.
    pub status: &'a str,
    /// The session it concerns.
    #[serde(rename = "sessionId")]
    pub session_id: &'a str,
    /// Ms since the Unix epoch.
    pub timestamp: u64,
}

/// `error.details`.
#[derive(Debug, Serialize)]
pub(crate) struct ErrorDetailsOut<'a> {
    /// The payload or envelope field at fault.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub field: Option<&'a str>,
    /// The scope a `FORBIDDEN` request lacks.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub scope: Option<&'a str>,
}

/// `error` `{"code","message","details"?}`.
#[derive(Debug, Serialize)]
pub(crate) struct ErrorOut<'a> {
    /// The code's wire string.
    pub code: &'static str,
    /// What went wrong.
    pub message: &'a str,
    /// Extra facts, e.g. the field at fault.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub details: Option<ErrorDetailsOut<'a>>,
}

impl<'a> ErrorOut<'a> {
    /// An error payload.
    pub(crate) fn new(
        code: ErrorCode,
        message: &'a str,
        field: Option<&'a str>,
        scope: Option<&'a str>,
    ) -> Self {
        ErrorOut {
            code: code.as_str(),
            message,
            details: (field.is_some() || scope.is_some())
                .then_some(ErrorDetailsOut { field, scope }),
        }
    }
}

/// The fields of an agent's wire record (PROTOCOL section 6), borrowed: from a stored
/// [`Agent`], or from a registration about to be stored (to measure its reply first).
#[derive(Clone, Copy, Debug)]
pub(crate) struct AgentRecord<'a> {
    pub agent_id: &'a str,
    pub agent_type: AgentType,
    pub name: &'a str,
    /// Compact JSON, written verbatim.
    pub capabilities: &'a str,
    pub status: AgentStatus,
    pub client_id: Option<&'a str>,
    pub registered_at: u64,
    pub last_seen_at: u64,
    /// Compact JSON, written verbatim.
    pub metadata: Option<&'a str>,
}

impl<'a> From<&'a Agent> for AgentRecord<'a> {
    fn from(agent: &'a Agent) -> Self {
        AgentRecord {
            agent_id: agent.agent_id(),
            agent_type: agent.agent_type(),
            name: &agent.name,
            capabilities: agent.capabilities.json(),
            status: agent.status(),
            client_id: agent.client_id.as_deref(),
            registered_at: agent.registered_at,
            last_seen_at: agent.last_seen_at,
            metadata: agent.metadata.as_deref(),
        }
    }
}

/// Append the wire record `{"agentId","type","name","capabilities","status","clientId",
/// "registeredAt","lastSeenAt","metadata"?}`, capabilities and metadata verbatim.
pub(crate) fn write_agent(buf: &mut Vec<u8>, agent: &AgentRecord<'_>) {
    buf.extend_from_slice(b"{\"agentId\":");
    write_str(buf, agent.agent_id);
    buf.extend_from_slice(b",\"type\":\"");
    buf.extend_from_slice(agent.agent_type.as_str().as_bytes());
    buf.extend_from_slice(b"\",\"name\":");
    write_str(buf, agent.name);
    buf.extend_from_slice(b",\"capabilities\":");
    buf.extend_from_slice(agent.capabilities.as_bytes());
    buf.extend_from_slice(b",\"status\":\"");
    buf.extend_from_slice(agent.status.as_str().as_bytes());
    buf.extend_from_slice(b"\",\"clientId\":");
    match agent.client_id {
        Some(id) => write_str(buf, id),
        None => buf.extend_from_slice(b"null"),
    }
    buf.extend_from_slice(b",\"registeredAt\":");
    write_u64(buf, agent.registered_at);
    buf.extend_from_slice(b",\"lastSeenAt\":");
    write_u64(buf, agent.last_seen_at);
    if let Some(metadata) = agent.metadata {
        buf.extend_from_slice(b",\"metadata\":");
        buf.extend_from_slice(metadata.as_bytes());
    }
    buf.push(b'}');
}

/// The `agent_info` payload `{"status","agent"}`.
pub(crate) fn agent_info<'a>(
    status: &'static str,
    agent: AgentRecord<'a>,
) -> impl FnOnce(&mut Vec<u8>) -> bool + 'a {
    move |buf| {
        buf.extend_from_slice(b"{\"status\":");
        write_str(buf, status);
        buf.extend_from_slice(b",\"agent\":");
        write_agent(buf, &agent);
        buf.push(b'}');
        true
    }
}

/// The `next` of an `agent_list` page that ends with `agent_id`: the id's bytes in lowercase
/// hex (opaque to clients; [`read_cursor`] reads it back).
pub(crate) fn cursor(agent_id: &str) -> String {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    let mut text = String::with_capacity(agent_id.len() * 2);
    for b in agent_id.bytes() {
        text.push(char::from(HEX[usize::from(b >> 4)]));
        text.push(char::from(HEX[usize::from(b & 0xf)]));
    }
    text
}

/// The agent id an `agent_query` `cursor` resumes after; `None` when it is not a cursor
/// [`cursor`] could have written (empty, odd length, not hex, not UTF-8, too long).
pub(crate) fn read_cursor(text: &str) -> Option<String> {
    let digits = text.as_bytes();
    if digits.is_empty() || digits.len() % 2 != 0 || digits.len() > 2 * MAX_ID_BYTES {
        return None;
    }
    let nibble = |d: u8| {
        char::from(d)
            .to_digit(16)
            .filter(|_| !d.is_ascii_uppercase())
    };
    let bytes = digits
        .chunks(2)
        .map(|pair| Some((nibble(pair[0])? << 4 | nibble(pair[1])?) as u8))
        .collect::<Option<Vec<u8>>>()?;
    String::from_utf8(bytes).ok()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;
    use serde_json::Value;

    #[test]
    fn names_map_to_enums() {
        assert_eq!(agent_type("companion"), Some(AgentType::Companion));
        assert_eq!(agent_type("Pi"), None);
        assert_eq!(heartbeat_status("busy"), Some(AgentStatus::Busy));
        assert_eq!(heartbeat_status("offline"), None);
        assert_eq!(role("node"), Some("node"));
        assert_eq!(role("admin"), None);
    }

    #[test]
    fn parse_reports_payload_level_failures() {
        let ok: SessionRefIn<'_> = parse_text(br#"{"sessionId":"r","extra":[1]}"#).unwrap();
        assert_eq!(ok.session_id, Some(Loose::Str("r".into())));
        let err =
            parse_text::<SessionRefIn<'_>>(br#"{"sessionId":"a","sessionId":"b"}"#).unwrap_err();
        assert_eq!(err.field, "payload");
    }

    fn allow_users(payload: &str) -> Option<AllowUsersIn<'_>> {
        let read = parse_text::<SessionPatchIn<'_>>(payload.as_bytes()).unwrap();
        read.allow_users.map(AllowUsersIn::read)
    }

    #[test]
    fn allow_users_reads_ids_or_names_what_is_wrong() {
        assert_eq!(allow_users(r#"{}"#), None);
        assert_eq!(allow_users(r#"{"allowUsers":null}"#), None);
        let ids = |ids: &[&str], bytes| AllowUsersIn::Ids {
            ids: ids.iter().map(|id| Cow::Owned(id.to_string())).collect(),
            bytes,
        };
        assert_eq!(
            allow_users(r#"{"allowUsers":["bob","a\u0062","bob"]}"#),
            Some(ids(&["bob", "ab", "bob"], 6 + 5 + 6))
        );
        assert_eq!(allow_users(r#"{"allowUsers":[]}"#), Some(ids(&[], 0)));
        for wrong in [
            r#""bob""#,
            "{}",
            "1",
            "true",
            r#"["a",1]"#,
            r#"["a",["b"]]"#,
            r#"[{"a":1},"b"]"#,
            "[null]",
        ] {
            let payload = format!(r#"{{"allowUsers":{wrong},"sessionKey":"r"}}"#);
            assert_eq!(
                allow_users(&payload),
                Some(AllowUsersIn::Wrong(NOT_STRINGS)),
                "{wrong}"
            );
            // The rest of the payload is still read.
            let p: SessionPatchIn<'_> = parse_text(payload.as_bytes()).unwrap();
            assert_eq!(p.session_key, Some(Loose::Str("r".into())));
        }
        let long = format!(r#"{{"allowUsers":["{}"]}}"#, "x".repeat(MAX_ID_BYTES + 1));
        assert_eq!(allow_users(&long), Some(AllowUsersIn::Wrong(BAD_ID)));
        assert_eq!(
            allow_users(r#"{"allowUsers":["a",""]}"#),
            Some(AllowUsersIn::Wrong(BAD_ID))
        );
        let at = format!(r#"{{"allowUsers":["{}"]}}"#, "x".repeat(MAX_ID_BYTES));
        assert_eq!(
            allow_users(&at),
            Some(ids(&[&"x".repeat(MAX_ID_BYTES)], MAX_ID_BYTES + 3))
        );
    }

    #[test]
    fn allow_users_keeps_no_more_than_the_limit() {
        // Repeats count each time: 20 000 times "a" is 80 000 bytes, past the limit; the read
        // stops at the entry that passes it, whatever follows.
        for tail in ["\"a\"", "1", "\"\"", "\"\\ud800\""] {
            let many = format!(r#"{{"allowUsers":[{}{tail}]}}"#, r#""a","#.repeat(19_999));
            let Some(AllowUsersIn::Ids { ids, bytes }) = allow_users(&many) else {
                panic!("not ids: {tail}");
            };
            assert_eq!(bytes, MAX_ALLOW_BYTES + 4);
            assert_eq!(ids.len(), MAX_ALLOW_BYTES / 4);
        }
        // Before the limit, what is wrong is told: not a string (a lone surrogate escape
        // included) over a bad id.
        assert_eq!(
            allow_users(r#"{"allowUsers":["a","","\ud800"]}"#),
            Some(AllowUsersIn::Wrong(NOT_STRINGS))
        );
        assert_eq!(
            allow_users(r#"{"allowUsers":[ "a" , "\u0062" ]}"#),
            Some(AllowUsersIn::Ids {
                ids: vec![Cow::Borrowed("a"), Cow::Owned("b".into())],
                bytes: 8
            })
        );
    }

    #[test]
    fn outgoing_shapes() {
        let e = ErrorOut::new(ErrorCode::InvalidMessage, "bad", Some("sessionId"), None);
        assert_eq!(
            serde_json::to_value(&e).unwrap(),
            json!({"code":"INVALID_MESSAGE","message":"bad","details":{"field":"sessionId"}})
        );
        let e = ErrorOut::new(ErrorCode::Forbidden, "no", None, Some("route"));
        assert_eq!(
            serde_json::to_value(&e).unwrap(),
            json!({"code":"FORBIDDEN","message":"no","details":{"scope":"route"}})
        );
        let s = SessionInfoOut {
            session_id: "r",
            status: "left",
            name: None,
            owner: None,
            access: None,
            members: None,
            metadata: None,
        };
        assert_eq!(written(&s), json!({"sessionId":"r","status":"left"}));
        let members = [MemberOut {
            client_id: "c",
            user_id: "u\"",
        }];
        let s = SessionInfoOut {
            session_id: "r\n",
            status: "joined",
            name: Some("Room \"1\""),
            owner: Some("o\\"),
            access: Some("private"),
            members: Some(&members),
            metadata: Some(r#"{"a":[1,{"b":null}]}"#),
        };
        assert_eq!(
            written(&s),
            json!({"sessionId":"r\n","status":"joined","name":"Room \"1\"","owner":"o\\",
                   "access":"private","members":[{"clientId":"c","userId":"u\""}],
                   "metadata":{"a":[1,{"b":null}]}})
        );
        let list = PresenceListOut {
            devices: vec![DevicePresenceOut {
                device_id: "d",
                role: "node",
                connected_at: 5,
            }],
            next: None,
        };
        assert_eq!(
            serde_json::to_value(&list).unwrap(),
            json!({"devices":[{"deviceId":"d","role":"node","connectedAt":5}]})
        );
    }

    /// Pieces of generated JSON text: values, string contents, keys and white space, valid
    /// and not (lone surrogates, numbers out of range), for the typed read.
    const STRINGS: [&str; 10] = [
        "a",
        "",
        "\\u0041",
        "\\ud83d\\ude00",
        "\\ud800",
        "\\udc00x",
        "\\n",
        "\u{e9}",
        "x y",
        "\\\"",
    ];
    const SCALARS: [&str; 12] = [
        "0",
        "7",
        "-1",
        "1.5",
        "1e999",
        "-1e999",
        "123456789012345678901234567890",
        "true",
        "false",
        "null",
        "18446744073709551615",
        "1e-400",
    ];
    const WS: [&str; 5] = ["", "", " ", "\n", " \r\n\t"];

    fn json(rng: &mut crate::testkit::Rng, depth: usize, out: &mut String) {
        out.push_str(rng.pick::<&str>(&WS));
        match rng.below(if depth == 0 { 2 } else { 4 }) {
            0 => out.push_str(rng.pick::<&str>(&SCALARS)),
            1 => {
                out.push('"');
                out.push_str(rng.pick::<&str>(&STRINGS));
                out.push('"');
            }
            2 => {
                out.push('{');
                for i in 0..rng.below(4) {
                    if i > 0 {
                        out.push(',');
                    }
                    out.push_str(rng.pick::<&str>(&WS));
                    out.push('"');
                    out.push_str(rng.pick::<&str>(&STRINGS));
                    out.push_str("\":");
                    json(rng, depth - 1, out);
                }
                out.push_str(rng.pick::<&str>(&WS));
                out.push('}');
            }
            _ => {
                out.push('[');
                for i in 0..rng.below(4) {
                    if i > 0 {
                        out.push(',');
                    }
                    json(rng, depth - 1, out);
                }
                out.push(']');
            }
        }
        out.push_str(rng.pick::<&str>(&WS));
    }

    /// A payload object whose members are mostly ones the structs read, some twice, some
    /// with escaped or refused keys, among others.
    fn payload(rng: &mut crate::testkit::Rng) -> String {
        let mut out = String::from("{");
        for i in 0..rng.below(7) {
            if i > 0 {
                out.push(',');
            }
            out.push_str(rng.pick::<&str>(&WS));
            let name = *rng.pick(&fields::NAMES);
            let key = match rng.below(10) {
                0 => format!("\\u{:04x}{}", u32::from(name.as_bytes()[0]), &name[1..]),
                1 => "other".to_owned(),
                2 => (*rng.pick(&STRINGS)).to_owned(),
                _ => name.to_owned(),
            };
            out.push_str(&format!("\"{key}\""));
            out.push_str(rng.pick::<&str>(&WS));
            out.push(':');
            json(rng, 3, &mut out);
        }
        out.push('}');
        out
    }

    /// The typed read from the walk's noted members gives what `serde_json` gives for the
    /// whole payload (`fuzzing::json::typed`), on payloads whose members are mostly ones the
    /// structs read, in a payload checked on its way (`session_patch`) and one that is not.
    #[test]
    fn the_typed_read_from_noted_members_is_serde_jsons() {
        let mut rng = crate::testkit::Rng::new(0x7e57_f1e1d5);
        let (mut read, mut refused) = (0, 0);
        for _ in 0..20_000 {
            let payload = payload(&mut rng);
            for msg_type in ["agent_register", "session_patch"] {
                let message = format!(r#"{{"type":"{msg_type}","id":"1","payload":{payload}}}"#);
                if let Ok(env) = crate::core::wire::parse_envelope(message.as_bytes()) {
                    assert!(env.noted.is_some(), "{payload}");
                    let (r, e) = crate::fuzzing::json::typed(&env);
                    (read, refused) = (read + r, refused + e);
                }
            }
        }
        // Both outcomes are exercised.
        assert!(read > 10_000 && refused > 10_000, "{read} {refused}");
    }

    fn written(s: &SessionInfoOut<'_>) -> Value {
        let mut buf = Vec::new();
        assert!(s.write(&mut buf));
        serde_json::from_slice(&buf).expect("valid JSON")
    }
}

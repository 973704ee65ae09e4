//! `session_patch` in a cluster (PROTOCOL sections 5, 12 and 13): the metadata is merged
//! here, in Rust (Redis's Lua would rewrite `[]` as `{}`), between a read and a
//! compare-and-set of the session's version, tried again when another patch came between.
//!
//! Contract:
//! - The rules are the standalone gateway's, in its order, with its words (`SessionError`):
//!   a private session is not found by those it does not admit; a new `access` or
//!   `allowUsers` needs the owner or `admin`; a metadata patch needs a member; the merged
//!   metadata and the allow list fit the metadata limit together, and the `patched` reply
//!   then fits `max_message_size` (checked before the write, so a refused patch changes
//!   nothing).
//! - The members a private session no longer admits are removed by the script, each with a
//!   `removed` event before the `patch` event on the session's channel: each gets
//!   `session_info` `removed`, the other members presence `left`, then everyone but the
//!   patcher the `patched` notice, and the patcher its reply.
//! - The connection is held from the read to the reply; a patch that loses the race
//!   [`MAX_TRIES`] times is answered `INTERNAL_ERROR`.

use std::time::Instant;

use super::mirror::PendingPatch;
use super::node::{Cluster, Op};
use super::reply::{self, unavailable};
use crate::app::Actions;
use crate::cluster::resp::Reply;
use crate::cluster::scripts::{self, Refused};
use crate::core::auth::ANONYMOUS;
use crate::core::errors::ErrorCode;
use crate::core::events::Event;
use crate::core::outbound::{self, Reject};
use crate::core::requests::sessions::{opt_access, opt_allow, patched_room, session_ref};
use crate::core::sessions::SessionError;
use crate::core::state::{CoreState, Req};
use crate::core::wire::merge::merge;
use crate::core::wire::payloads::{self, SessionInfoOut, SessionPatchIn};
use crate::core::wire::{self, Envelope, FieldError, Head};

/// Reads and compare-and-sets of one patch at most.
const MAX_TRIES: u32 = 32;

fn json_str(text: &str) -> String {
    String::from_utf8(reply::json_str(text)).unwrap_or_default()
}

/// `session_patch` in a cluster.
pub(crate) fn patch(
    state: &mut CoreState,
    cl: &mut Cluster,
    req: &Req<'_>,
    env: &Envelope<'_>,
    out: &mut Actions<Event>,
) -> Result<(), Reject> {
    let p: SessionPatchIn<'_> = payloads::parse(env)?;
    let session_id = session_ref(&p.session_key, "sessionKey", &env.session_id)?.to_owned();
    let patch = match p.patch.map(|raw| raw.get()) {
        None => None,
        Some(text) if text.starts_with('{') => Some(text.to_owned()),
        Some(_) => return Err(FieldError::new("patch", "patch must be an object").into()),
    };
    let access = opt_access(&p.access)?;
    let allow = match opt_allow(p.allow_users)? {
        None => None,
        Some(Ok(allow)) => Some(allow),
        Some(Err(e)) => return Err(Reject::refused(&e, &session_id)),
    };
    if patch.is_none() && access.is_none() && allow.is_none() {
        return Err(FieldError::new("patch", "patch is required").into());
    }
    if !cl.is_serving() {
        return Err(unavailable());
    }
    let Some(client) = state.clients.get(req.conn) else {
        return Ok(());
    };
    let pending = PendingPatch {
        conn: req.conn,
        req_id: req.id.to_owned(),
        ts: req.ts,
        session_id,
        client_id: client.client_id.clone(),
        user: json_str(client.user_id.as_deref().unwrap_or(ANONYMOUS)),
        admin: client.scopes.is_admin(),
        patch,
        access: access.map(|a| a.name()),
        allow_bytes: allow.as_ref().map(|a| a.bytes()),
        allow: allow.map(|a| a.iter().map(json_str).collect()),
        tries: 0,
        read: None,
    };
    read(cl, pending, req.now, out)?;
    cl.hold(req.conn);
    Ok(())
}

fn read(
    cl: &mut Cluster,
    pending: PendingPatch,
    now: Instant,
    out: &mut Actions<Event>,
) -> Result<(), Reject> {
    let key = cl.session_channel(&pending.session_id);
    let admin: &[u8] = if pending.admin { b"1" } else { b"0" };
    let user = pending.user.clone();
    let tag = cl.tag(Op::PatchRead(pending));
    if !cl.broker.eval(
        tag,
        scripts::SESSION_READ_INDEX,
        &[&key],
        &[user.as_bytes(), admin],
        now,
        out,
    ) {
        cl.untag(tag);
        return Err(unavailable());
    }
    Ok(())
}

fn refused(reply: &Reply, session_id: &str) -> Option<Reject> {
    let fields = reply.as_array()?;
    if fields.first().and_then(Reply::as_bytes) != Some(b"err") {
        return None;
    }
    let error = match fields
        .get(1)
        .and_then(Reply::as_bytes)
        .and_then(Refused::from_word)
    {
        Some(Refused::NotFound) => SessionError::NotFound,
        Some(Refused::NotOwner) => SessionError::NotOwner,
        Some(Refused::NotMember) => SessionError::NotAMember,
        _ => {
            return Some(Reject::new(
                ErrorCode::InternalError,
                "The cluster's patch script failed",
            ))
        }
    };
    Some(Reject::refused(&error, session_id))
}

/// What the read found: merge, check the limit, and write if the version still holds.
pub(crate) fn read_answered(
    state: &mut CoreState,
    cl: &mut Cluster,
    mut p: PendingPatch,
    reply: Option<Reply>,
    now: Instant,
    out: &mut Actions<Event>,
) {
    let Some(reply) = reply else {
        return reply::fail(state, cl, p.conn, &p.req_id, p.ts, unavailable(), out);
    };
    if let Some(reject) = refused(&reply, &p.session_id) {
        return reply::fail(state, cl, p.conn, &p.req_id, p.ts, reject, out);
    }
    let fields = reply.as_array().unwrap_or(&[]);
    let text = |i: usize| reply::text(fields, i);
    let (version, stored, owner, access) = (text(0), text(1), text(2), text(3));
    let owner = serde_json::from_str::<String>(&owner).unwrap_or(owner);
    let limit = state.sessions.max_metadata_bytes();
    let merged = match &p.patch {
        Some(patch) => {
            let base = if stored.is_empty() {
                "{}"
            } else {
                stored.as_str()
            };
            match merge(base, patch.as_bytes(), limit) {
                Some(merged) => merged.into_string(),
                None => {
                    let reject = Reject::refused(&SessionError::MetadataTooLarge, &p.session_id);
                    return reply::fail(state, cl, p.conn, &p.req_id, p.ts, reject, out);
                }
            }
        }
        None => stored,
    };
    let allow_bytes = p
        .allow_bytes
        .unwrap_or_else(|| text(4).parse().unwrap_or(0));
    if merged.len() + allow_bytes > limit {
        let reject = Reject::refused(&SessionError::MetadataTooLarge, &p.session_id);
        return reply::fail(state, cl, p.conn, &p.req_id, p.ts, reject, out);
    }
    let room = patched_room(
        state.config.max_message_size,
        &owner,
        &p.session_id,
        &p.req_id,
        p.ts,
    );
    if merged.len() > room {
        let reject = Reject::refused(&SessionError::ReplyTooLarge, &p.session_id);
        return reply::fail(state, cl, p.conn, &p.req_id, p.ts, reject, out);
    }
    let new_access = p.access.unwrap_or(if access == "private" {
        "private"
    } else {
        "open"
    });
    let metadata = if merged.is_empty() {
        "{}"
    } else {
        merged.as_str()
    };
    let notice = SessionInfoOut {
        session_id: &p.session_id,
        status: "patched",
        name: None,
        owner: Some(&owner),
        access: Some(new_access),
        members: None,
        metadata: Some(metadata),
    };
    let mut event = b"{\"e\":\"patch\",\"c\":".to_vec();
    wire::write_str(&mut event, &p.client_id);
    event.extend_from_slice(b",\"a\":");
    wire::write_str(&mut event, new_access);
    event.extend_from_slice(b"}\n");
    let head = Head::new("session_info", p.ts).session(&p.session_id);
    wire::write_envelope(&mut event, &head, |buf| notice.write(buf));
    let skey = cl.session_channel(&p.session_id);
    let keys = [
        skey.clone(),
        [skey.as_slice(), b":m"].concat(),
        [skey.as_slice(), b":u"].concat(),
        cl.key(&[b"sessions"]),
    ];
    let keys: Vec<&[u8]> = keys.iter().map(Vec::as_slice).collect();
    let prefix = cl.setup.prefix.clone();
    let admin: &[u8] = if p.admin { b"1" } else { b"0" };
    let expected = if p.patch.is_some() {
        version.as_str()
    } else {
        ""
    };
    let replace: &[u8] = if p.allow.is_some() { b"1" } else { b"0" };
    let mut args: Vec<&[u8]> = vec![
        p.client_id.as_bytes(),
        p.user.as_bytes(),
        admin,
        expected.as_bytes(),
        merged.as_bytes(),
        p.access.unwrap_or("").as_bytes(),
        replace,
        &event,
        prefix.as_bytes(),
        b"{\"e\":\"removed\",\"c\":\"",
        p.session_id.as_bytes(),
    ];
    let allow = p.allow.clone().unwrap_or_default();
    args.extend(allow.iter().map(|id| id.as_bytes()));
    let written = (owner, new_access, metadata.to_owned());
    // The tag's op is set below, once `p` is no longer lent to the arguments.
    let tag = cl.tag(Op::Ignore);
    if !cl
        .broker
        .eval(tag, scripts::SESSION_PATCH_INDEX, &keys, &args, now, out)
    {
        cl.untag(tag);
        return reply::fail(state, cl, p.conn, &p.req_id, p.ts, unavailable(), out);
    }
    p.read = Some(written);
    cl.ops.insert(tag, Op::PatchWrite(p));
}

/// The compare-and-set answered: the reply, a refusal, or another try.
pub(crate) fn write_answered(
    state: &mut CoreState,
    cl: &mut Cluster,
    mut p: PendingPatch,
    reply: Option<Reply>,
    now: Instant,
    out: &mut Actions<Event>,
) {
    let Some(reply) = reply else {
        return reply::fail(state, cl, p.conn, &p.req_id, p.ts, unavailable(), out);
    };
    if let Some(reject) = refused(&reply, &p.session_id) {
        return reply::fail(state, cl, p.conn, &p.req_id, p.ts, reject, out);
    }
    let status = reply
        .as_array()
        .and_then(|f| f.first())
        .and_then(Reply::as_bytes)
        .unwrap_or(b"");
    if status == b"retry" {
        p.tries += 1;
        if p.tries >= MAX_TRIES {
            let reject = Reject::new(
                ErrorCode::InternalError,
                "The session's metadata changed too often to be patched",
            );
            return reply::fail(state, cl, p.conn, &p.req_id, p.ts, reject, out);
        }
        p.read = None;
        if let Err(reject) = read(cl, p.clone(), now, out) {
            return reply::fail(state, cl, p.conn, &p.req_id, p.ts, reject, out);
        }
        return;
    }
    let Some((owner, access, metadata)) = &p.read else {
        return reply::fail(state, cl, p.conn, &p.req_id, p.ts, unavailable(), out);
    };
    let payload = SessionInfoOut {
        session_id: &p.session_id,
        status: "patched",
        name: None,
        owner: Some(owner),
        access: Some(access),
        members: None,
        metadata: Some(metadata),
    };
    let head = Head::new("session_info", p.ts)
        .reply_to(&p.req_id)
        .session(&p.session_id);
    outbound::send(out, &mut state.metrics, p.conn, &head, |buf| {
        payload.write(buf)
    });
    state.state_version += 1;
    cl.release(p.conn);
}

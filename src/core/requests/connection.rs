//! A connection's life in the core: its opening (the welcome), the connection-level requests
//! `ping`, `auth` and `connect` (PROTOCOL sections 3 and 5, the three a connection may send
//! before it has authenticated), and what its close leaves behind.
//!
//! Contract:
//! - Opening sends `session_info` `{"sessionId","clientId","status":"connected",
//!   "authRequired"}` and, when auth is required, arms the auth deadline; without auth the
//!   connection is authenticated as `anonymous` from the start.
//! - A closed connection leaves every session (the others are told), turns its agents
//!   offline (arming their TTL) and drops its pending routes.
//! - `ping` → `pong` `{"clientId"}`; the payload is not read, nothing is allocated.
//! - `auth` after success replies `auth_success` again with the same identity, whatever it
//!   carries, except in `auth_mode = jwt`. Otherwise `AUTH_REQUIRED` when the mode's
//!   credential is missing or empty (not counted), `AUTH_FAILED` when wrong or over 4096
//!   bytes (`auth.rs`; counted; at `max_auth_failures`, 0 meaning no limit,
//!   the connection is closed with 1008 right after that reply). In password mode the
//!   `clientId` becomes the `userId` (at most 128 bytes; empty or absent: `anonymous`).
//! - In a cluster, a good credential of a user other than `anonymous` is counted toward
//!   `max_connections_per_user` in Redis first (`cluster/users.rs`): the reply comes with the
//!   answer, and the connection's later messages wait for it; while the broker is not
//!   serving, this node decides on its own count.
//! - In `auth_mode = jwt` the token's `sub` is the `userId` and its `scopes` claim, when
//!   present, the scopes; `auth_success` carries `expiresAt`. A repeated `auth` is a
//!   refresh: a valid token for the same `sub` replaces the expiry and the scopes, one for
//!   another `sub` is `AUTH_FAILED` (counted) and the identity stays. A connection still on
//!   a token past `exp` + `jwt_leeway_ms` is closed with 1008 `Token expired`, by a timer
//!   (at most one check in flight per connection, see `arm_expiry`).
//! - `connect` records the device and replies `hello_ok`; its `presence` is one page of the
//!   devices the sender may see (its own user's, every user's for `admin`), its own first
//!   (`devices.rs`), and is empty when the sender has not authenticated.

use std::time::{Duration, Instant};

use crate::app::{Actions, CloseReason, ConnId};
use crate::cluster::resp::Reply;
use crate::config::{AuthMode, Config};
use crate::core::auth::{self, Credentials, Via, ANONYMOUS};
use crate::core::clients::{Client, Device, Standing};
use crate::core::cluster::clients as cluster_clients;
use crate::core::cluster::devices as cluster_devices;
use crate::core::cluster::mirror::PendingDevices;
use crate::core::cluster::node::Cluster;
use crate::core::cluster::usage::{Count, PendingAuth};
use crate::core::cluster::users as cluster_users;
use crate::core::errors::ErrorCode;
use crate::core::escaped::Escaped;
use crate::core::events::Event;
use crate::core::outbound::{self, Reject};
use crate::core::ratelimit::TokenBucket;
use crate::core::requests::{agents, devices, routes, sessions};
use crate::core::scopes::Scopes;
use crate::core::state::{CoreState, Req, CLOSE_POLICY, REASON_AUTH_FAILURES};
use crate::core::timers;
use crate::core::users::{Resource, UserLimit};
use crate::core::wire::payloads::{
    self, AuthIn, AuthSuccessOut, ConnectIn, HealthOut, HelloOkOut, WelcomeOut,
};
use crate::core::wire::{self, Head};
use crate::core::wire::{
    check_ident, check_name, opt_str, req_str, Envelope, FieldError, Loose, MAX_ID_BYTES,
};

/// Close reason of a connection still on a JWT past its `exp` + leeway.
pub(crate) const REASON_TOKEN_EXPIRED: &str = "Token expired";

/// How far ahead a connection's JWT expiry check is armed at most, in ms.
pub(crate) const EXPIRY_CHECK_MS: u64 = 60_000;

/// A new connection: record it, send the welcome `session_info`, arm its auth deadline.
pub(crate) fn open(state: &mut CoreState, conn: ConnId, now: Instant, out: &mut Actions<Event>) {
    let ts = state.wall_ms(now);
    let auth_required = state.auth_required();
    let client_id = uuid::Uuid::new_v4().to_string();
    let deadline = if auth_required {
        Config::duration(state.config.auth_timeout_ms).and_then(|d| now.checked_add(d))
    } else {
        None
    };
    let bucket = (state.config.rate_limit_per_sec > 0).then(|| {
        TokenBucket::new(
            state.config.rate_limit_per_sec,
            state.config.rate_limit_burst,
            now,
        )
    });
    let mut client = Client {
        conn,
        client_id: client_id.clone(),
        user_id: (!auth_required).then(|| ANONYMOUS.to_owned()),
        auth_failures: 0,
        standing: Standing::Waiting(deadline),
        bucket,
        device: None,
        scopes: if auth_required {
            Scopes::NONE
        } else {
            Scopes::ALL_BUT_ADMIN
        },
        via: Via::Open,
        closing: false,
        connected_at: ts,
    };
    if !auth_required {
        // `anonymous` connections are each their own key: this never reaches a bound.
        if let Ok(user) = state
            .users
            .try_add(client.usage_key(), Resource::Connections)
        {
            client.standing = Standing::Counted(user);
        }
    }
    if let Some(old) = state.clients.insert(client) {
        log::warn!("connection slot {} reopened before it closed", conn.index);
        forget(state, old, CloseReason::Reset.label().to_owned(), now, out);
    }
    let welcome = WelcomeOut {
        session_id: &client_id,
        client_id: &client_id,
        status: "connected",
        auth_required,
    };
    outbound::send_ser(
        out,
        &mut state.metrics,
        conn,
        &Head::new("session_info", ts),
        &welcome,
    );
    if let Some(at) = deadline {
        out.set_timer(at, timers::auth_timeout(conn));
    }
    log::debug!("client {client_id} connected");
    out.emit(Event::ClientConnected {
        client_id: client_id.clone(),
    });
    if !auth_required {
        cluster_clients::authenticated(state, conn, now, out);
        out.emit(Event::ClientAuthenticated {
            client_id,
            user_id: ANONYMOUS.to_owned(),
        });
    }
}

/// Forget `client`, whose connection closed: leave its sessions, turn its agents offline,
/// drop its routes.
pub(crate) fn forget(
    state: &mut CoreState,
    client: Client,
    reason: String,
    now: Instant,
    out: &mut Actions<Event>,
) {
    let conn = client.conn;
    let ts = state.wall_ms(now);
    if client.is_authenticated() {
        state
            .users
            .release(client.usage_key(), Resource::Connections);
    }
    sessions::leave_all(state, &client, ts, out);
    agents::owner_gone(state, conn, now, ts, out);
    routes::conn_gone(state, &client);
    log::debug!("client {} disconnected ({reason})", client.client_id);
    out.emit(Event::ClientDisconnected {
        client_id: client.client_id,
        reason,
    });
}

/// `ping` → `pong`.
pub(crate) fn ping(state: &mut CoreState, req: &Req<'_>, out: &mut Actions<Event>) {
    let Some(client) = state.clients.get(req.conn) else {
        return;
    };
    let head = Head::new("pong", req.ts).reply_to(req.id);
    let payload = |buf: &mut Vec<u8>| {
        buf.extend_from_slice(b"{\"clientId\":");
        wire::write_str(buf, &client.client_id);
        buf.push(b'}');
        true
    };
    outbound::send(out, &mut state.metrics, req.conn, &head, payload);
}

/// `auth` → `auth_success`; in `auth_mode = jwt`, a repeated `auth` is a refresh.
pub(crate) fn auth(
    state: &mut CoreState,
    req: &Req<'_>,
    env: &Envelope<'_>,
    out: &mut Actions<Event>,
) -> Result<(), Reject> {
    let Some(client) = state.clients.get(req.conn) else {
        return Ok(());
    };
    let refresh = client.is_authenticated();
    if refresh && state.config.auth_mode != AuthMode::Jwt {
        send_auth_success(state, req, out);
        return Ok(());
    }
    let p: AuthIn<'_> = payloads::parse(env)?;
    let creds = Credentials {
        token: opt_str(&p.token, "token")?,
        password: opt_str(&p.password, "password")?,
        client_id: opt_str(&p.client_id, "clientId")?,
    };
    opt_str(&p.client_type, "clientType")?;
    let config = &state.config;
    if config.auth_mode == AuthMode::Password
        && creds.client_id.is_some_and(|c| c.len() > MAX_ID_BYTES)
    {
        return Err(FieldError::new(
            "clientId",
            format!("clientId must be at most {MAX_ID_BYTES} bytes"),
        )
        .into());
    }
    match state.auth.check(creds, req.ts) {
        auth::AuthOutcome::Success(grant) if refresh => {
            if client.user_id.as_deref() != Some(grant.user.as_str()) {
                log::debug!("refresh of {:?} names another user", req.conn);
                failed(state, req, out);
                return Ok(());
            }
            let scopes = granted_scopes(state, &grant);
            if let Some(client) = state.clients.get_mut(req.conn) {
                client.scopes = scopes;
                client.via = with_check(grant.via, client.via);
            }
            arm_expiry(state, req.conn, req.now, out);
            send_auth_success(state, req, out);
            Ok(())
        }
        auth::AuthOutcome::Success(grant) => {
            let mut cl = state.cluster.take();
            let result = match cl.as_deref_mut() {
                // In a cluster, the user's connections are counted in Redis first.
                Some(c) if grant.user != ANONYMOUS && c.is_serving() => {
                    let pending = PendingAuth {
                        conn: req.conn,
                        req_id: req.id.to_owned(),
                        ts: req.ts,
                        grant,
                        generation: c.usage.generation,
                    };
                    let bound = state.config.max_connections_per_user;
                    match cluster_users::take_connection(c, bound, pending, req.now, out) {
                        Ok(()) => Ok(()),
                        Err(p) => authenticate(state, Some(c), &p, false, req.now, out),
                    }
                }
                c => {
                    let pending = PendingAuth {
                        conn: req.conn,
                        req_id: req.id.to_owned(),
                        ts: req.ts,
                        grant,
                        generation: 0,
                    };
                    authenticate(state, c, &pending, false, req.now, out)
                }
            };
            state.cluster = cl;
            result
        }
        auth::AuthOutcome::Missing => Err(Reject::new(
            ErrorCode::AuthRequired,
            format!(
                "Authentication required: send {}",
                match config.auth_mode {
                    AuthMode::Password => "password",
                    _ => "token",
                }
            ),
        )),
        auth::AuthOutcome::Failed => {
            failed(state, req, out);
            Ok(())
        }
    }
}

/// Authenticate the connection of `p` with its grant, unless `max_connections_per_user`
/// (on this node's count) refuses it; `in_redis` when the cluster counted it already (it is
/// given back there on a refusal).
fn authenticate(
    state: &mut CoreState,
    mut cl: Option<&mut Cluster>,
    p: &PendingAuth,
    in_redis: bool,
    now: Instant,
    out: &mut Actions<Event>,
) -> Result<(), Reject> {
    let conn = p.conn;
    let Some(client) = state.clients.get(conn) else {
        return Ok(());
    };
    let user_id = p.grant.user.clone();
    let key = if user_id == ANONYMOUS {
        client.client_id.clone()
    } else {
        user_id.clone()
    };
    let user = match state.users.try_add(&key, Resource::Connections) {
        Ok(user) => user,
        Err(e) => {
            if let (Some(c), true) = (cl.as_deref_mut(), in_redis) {
                cluster_users::give_back(c, Count::Connections, &key, now, out);
            }
            return Err(Reject::refused(&e, &user_id));
        }
    };
    state.clients.authenticate(conn, user_id.clone(), user);
    let scopes = granted_scopes(state, &p.grant);
    if let Some(client) = state.clients.get_mut(conn) {
        client.scopes = scopes;
        client.via = p.grant.via;
    }
    arm_expiry(state, conn, now, out);
    match cl {
        Some(c) => {
            if user_id != ANONYMOUS {
                cluster_users::counted(c, Count::Connections, &key, in_redis, now, out);
            }
            cluster_clients::record(state, c, conn, now, out);
        }
        None => cluster_clients::authenticated(state, conn, now, out),
    }
    out.raise_limit(conn); // max_payload from now on, not max_preauth_message_size
                           // One share of each loop turn for all the connections of one user.
    out.share_turn(conn, user.serial());
    send_auth_success_to(state, conn, &p.req_id, p.ts, out);
    if let Some(client) = state.clients.get(conn) {
        log::debug!(
            "client {} authenticated as {}",
            client.client_id,
            Escaped(&user_id)
        );
        out.emit(Event::ClientAuthenticated {
            client_id: client.client_id.clone(),
            user_id,
        });
    }
    Ok(())
}

/// The cluster answered the count of an `auth`'s connection: authenticated, or
/// `LIMIT_EXCEEDED` (the connection stays unauthenticated); with no answer this node decides
/// alone. The connection's later messages go on.
pub(crate) fn auth_counted(
    state: &mut CoreState,
    cl: &mut Cluster,
    p: PendingAuth,
    reply: Option<Reply>,
    now: Instant,
    out: &mut Actions<Event>,
) {
    cl.release(p.conn);
    let taken = match &reply {
        Some(Reply::Integer(1)) => Some(true),
        Some(Reply::Integer(0)) => Some(false),
        _ => None,
    };
    let user = p.grant.user.clone();
    cluster_users::take_answered(cl, Count::Connections, &user, p.generation, taken, now, out);
    let waiting = state
        .clients
        .get(p.conn)
        .is_some_and(|c| !c.closing && !c.is_authenticated());
    let result = match reply {
        Some(Reply::Integer(1)) if waiting => authenticate(state, Some(cl), &p, true, now, out),
        Some(Reply::Integer(1)) => {
            cluster_users::give_back(cl, Count::Connections, &p.grant.user, now, out);
            Ok(())
        }
        Some(Reply::Integer(0)) if waiting => Err(Reject::refused(
            &UserLimit(Resource::Connections),
            &p.grant.user,
        )),
        Some(Reply::Integer(0)) => Ok(()),
        _ if waiting => {
            if let Some(Reply::Error(text)) = &reply {
                log::warn!(
                    "cluster: redis refused a count: {}",
                    String::from_utf8_lossy(text)
                );
            }
            authenticate(state, Some(cl), &p, false, now, out)
        }
        _ => Ok(()),
    };
    if let Err(reject) = result {
        outbound::send_error(
            out,
            &mut state.metrics,
            p.conn,
            Some(&p.req_id),
            p.ts,
            &reject,
        );
    }
}

/// A failed `auth`: `AUTH_FAILED`, counted; at `max_auth_failures` the connection is closed.
fn failed(state: &mut CoreState, req: &Req<'_>, out: &mut Actions<Event>) {
    let max = state.config.max_auth_failures;
    let failures = match state.clients.get_mut(req.conn) {
        Some(client) => {
            client.auth_failures = client.auth_failures.saturating_add(1);
            client.auth_failures
        }
        None => return,
    };
    log::debug!("auth failure {failures} on {:?}", req.conn);
    state.reject(
        out,
        req,
        Reject::new(ErrorCode::AuthFailed, "Authentication failed"),
    );
    if max > 0 && failures >= max {
        state.close(out, req.conn, CLOSE_POLICY, REASON_AUTH_FAILURES);
    }
}

/// The scopes of a grant: what its credential claims, else the configured lists.
fn granted_scopes(state: &CoreState, grant: &auth::Grant) -> Scopes {
    grant
        .via
        .claimed_scopes()
        .unwrap_or_else(|| state.policy.scopes_of(&grant.user))
}

/// `via` of a refresh, keeping the expiry check already in flight (`old`).
fn with_check(via: Via, old: Via) -> Via {
    match (via, old) {
        (
            Via::Jwt {
                expires_ms, scopes, ..
            },
            Via::Jwt { check_ms, .. },
        ) => Via::Jwt {
            expires_ms,
            scopes,
            check_ms,
        },
        (via, _) => via,
    }
}

/// The moment a connection on a JWT that expires at `expires_ms` is closed: `exp` + leeway.
fn expiry_deadline(state: &CoreState, expires_ms: u64) -> u64 {
    expires_ms.saturating_add(state.config.jwt_leeway_ms)
}

/// Arm the expiry check of `conn` when it is on a JWT and no check in flight comes at or
/// before its deadline.
///
/// One check is in flight per connection: it is armed at most [`EXPIRY_CHECK_MS`] ahead
/// (so the stale check a closed connection leaves in the timer wheel goes within that
/// time, whatever the token's lifetime), and a check that finds the token still valid arms
/// the next. A refresh that moves the deadline later arms nothing; one that moves it before
/// the check in flight arms an earlier one (the later one then finds that it is not the
/// connection's `check_ms` and ends).
fn arm_expiry(state: &mut CoreState, conn: ConnId, now: Instant, out: &mut Actions<Event>) {
    let now_ms = state.wall_ms(now);
    let Some(client) = state.clients.get(conn) else {
        return;
    };
    let Via::Jwt { expires_ms, .. } = client.via else {
        return;
    };
    let deadline = expiry_deadline(state, expires_ms);
    let Some(client) = state.clients.get_mut(conn) else {
        return;
    };
    let Via::Jwt { check_ms, .. } = &mut client.via else {
        return;
    };
    if *check_ms != 0 && *check_ms > now_ms && *check_ms <= deadline {
        return;
    }
    let at_ms = deadline.min(now_ms.saturating_add(EXPIRY_CHECK_MS));
    *check_ms = at_ms;
    if let Some(at) = now.checked_add(Duration::from_millis(at_ms.saturating_sub(now_ms))) {
        out.set_timer(at, timers::token_expiry(conn));
    }
}

/// An expiry check fired (`timers::Timer::TokenExpiry`): close the connection with 1008
/// `Token expired` when its JWT is past `exp` + leeway; otherwise, when this is the check in
/// flight, arm the next. Checks of closed connections, of reused slots and stale ones end.
pub(crate) fn expiry_check(
    state: &mut CoreState,
    index: u32,
    generation_bits: u32,
    now: Instant,
    out: &mut Actions<Event>,
) {
    let now_ms = state.wall_ms(now);
    let Some((conn, expires_ms, check_ms)) = state
        .clients
        .get_by_index(index)
        .filter(|c| timers::names(c.conn, index, generation_bits))
        .filter(|c| !c.closing)
        .and_then(|c| match c.via {
            Via::Jwt {
                expires_ms,
                check_ms,
                ..
            } => Some((c.conn, expires_ms, check_ms)),
            _ => None,
        })
    else {
        return;
    };
    if now_ms >= expiry_deadline(state, expires_ms) {
        log::debug!("token expired for {conn:?}");
        state.close(out, conn, CLOSE_POLICY, REASON_TOKEN_EXPIRED);
    } else if now_ms >= check_ms {
        arm_expiry(state, conn, now, out);
    }
}

fn send_auth_success(state: &mut CoreState, req: &Req<'_>, out: &mut Actions<Event>) {
    send_auth_success_to(state, req.conn, req.id, req.ts, out);
}

fn send_auth_success_to(
    state: &mut CoreState,
    conn: ConnId,
    req_id: &str,
    ts: u64,
    out: &mut Actions<Event>,
) {
    let Some(client) = state.clients.get(conn) else {
        return;
    };
    let payload = AuthSuccessOut {
        client_id: &client.client_id,
        user_id: client.user_id.as_deref().unwrap_or(auth::ANONYMOUS),
        expires_at: match client.via {
            Via::Jwt { expires_ms, .. } => Some(expires_ms),
            _ => None,
        },
    };
    let head = Head::new("auth_success", ts).reply_to(req_id);
    outbound::send_ser(out, &mut state.metrics, conn, &head, &payload);
}

/// `connect` → `hello_ok`.
pub(crate) fn connect(
    state: &mut CoreState,
    req: &Req<'_>,
    env: &Envelope<'_>,
    out: &mut Actions<Event>,
) -> Result<(), Reject> {
    let p: ConnectIn<'_> = payloads::parse(env)?;
    let device_id = check_ident(req_str(&p.device_id, "deviceId")?, "deviceId")?;
    let device_name = opt_str(&p.device_name, "deviceName")?
        .map(|name| check_name(name, "deviceName", state.config.max_name_bytes))
        .transpose()?;
    let role = payloads::role(req_str(&p.role, "role")?)
        .ok_or_else(|| FieldError::new("role", "role must be one of control, node, webchat"))?;
    match p.protocol_version {
        Some(Loose::UInt(n)) if n > 0 => {}
        None | Some(Loose::Null) => {
            return Err(FieldError::new("protocolVersion", "protocolVersion is required").into())
        }
        Some(_) => {
            return Err(FieldError::new(
                "protocolVersion",
                "protocolVersion must be a positive integer",
            )
            .into())
        }
    }
    let device = Device {
        device_id: device_id.to_owned(),
        device_name: device_name.map(str::to_owned),
        role,
        connected_at: req.ts,
        seq: 0,
    };
    if !state.clients.set_device(req.conn, device) {
        return Ok(());
    }
    // In a cluster the device is recorded there, and `hello_ok` lists the cluster's devices
    // when the page comes (on this node's alone while the broker is down).
    if let Some(mut cl) = state.cluster.take() {
        let pending = PendingDevices {
            conn: req.conn,
            req_id: req.id.to_owned(),
            ts: req.ts,
            now: req.now,
            limit: state.config.max_list_items,
            hello: true,
        };
        let waits = cluster_devices::record(state, &mut cl, req.conn, Some(pending), req.now, out);
        state.cluster = Some(cl);
        if waits {
            return Ok(());
        }
    }
    let Some(client) = state.clients.get(req.conn) else {
        return Ok(());
    };
    let mut payload = HelloOkOut {
        client_id: &client.client_id,
        paired: true,
        uptime: state.uptime_ms(req.now),
        state_version: state.shown_state_version(),
        protocol_version: payloads::PROTOCOL_VERSION,
        presence: Vec::new(),
        health: HealthOut {
            status: "ok",
            checked_at: req.ts,
        },
        auth_required: state.auth_required(),
    };
    let head = Head::new("hello_ok", req.ts).reply_to(req.id);
    let budget = devices::room(state.config.max_message_size, &head, &payload);
    let limit = state.config.max_list_items;
    payload.presence = devices::hello_presence(&state.clients, req.conn, limit, budget);
    outbound::send_ser(out, &mut state.metrics, req.conn, &head, &payload);
    Ok(())
}

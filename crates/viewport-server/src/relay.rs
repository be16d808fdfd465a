//! The relay WebSocket (`/ws`, SPEC sections 5, 6, 9 and 14).
//!
//! Handshake: the upgrade always completes when the request is a well-formed WebSocket
//! request; every refusal is then a close code (a bare HTTP 401 at upgrade would look
//! transient to the daemon). Order: relay token (4401 `invalid`/`expired`), workspace (4403),
//! runtime target revoked (4401 `revoked`), challenge → proof within the proof timeout
//! (4408), proof signature over [`proof_message`] with the key registered at pairing (4401
//! `invalid`), then `ready` with the resume map.
//!
//! Streaming: the connection task reads every message already available (up to a bound),
//! stores them in one transaction, and only after the commit sends one cumulative `ack` per
//! session. Protocol violations close with 4400 after what came before them is stored.
//!
//! One live connection per runtime target ([`Registry`]): a newer authenticated connection
//! replaces the older (4409). Revocation closes live connections with 4401 `revoked`: at once
//! from in-process revocations ([`crate::AppState::close_revoked`]) and within the poll
//! interval from other processes (the admin CLI), see [`spawn_revocation_poller`].

use crate::store::RelayOp;
use crate::{util, AppState};
use axum::extract::ws::{CloseFrame, Message, WebSocket, WebSocketUpgrade};
use axum::extract::{Query, State};
use axum::http::{header, HeaderMap};
use axum::response::Response;
use base64::Engine;
use futures_util::{FutureExt, SinkExt};
use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};
use tokio::sync::mpsc;
use vpd_proto::relay::{close, proof_message, DaemonMsg, FrameKind, RelayMsg, MAX_MESSAGE, ROLE};

/// Policy violation (rate limit exceeded).
pub const CLOSE_POLICY: u16 = 1008;
/// Internal error (the database failed): transient for the daemon.
pub const CLOSE_INTERNAL: u16 = 1011;
/// Most messages stored in one transaction.
const MAX_BATCH_MESSAGES: usize = 8192;
/// Most message bytes stored in one transaction.
const MAX_BATCH_BYTES: usize = 8 * 1024 * 1024;
/// Sessions ended longer ago than this are left out of the resume map.
const RESUME_WINDOW_SECS: i64 = 24 * 3600;
/// A connection that sends nothing (not even a ping or pong) for this long is dropped.
const IDLE_TIMEOUT: Duration = Duration::from_secs(90);
/// How often the relay pings (the daemon's pongs keep the connection from idling out).
const PING_EVERY: Duration = Duration::from_secs(30);

/// A request to close a live connection.
#[derive(Debug, Clone)]
pub struct CloseCmd {
    pub code: u16,
    pub reason: &'static str,
}

struct Live {
    conn_id: u64,
    workspace_id: String,
    tx: mpsc::UnboundedSender<CloseCmd>,
    /// The database names it as the live connection (see [`crate::store::Store::claim_live`]);
    /// until then, other instances' claims are older than this one's and are not acted on.
    claimed: bool,
}

/// The live, authenticated connections: runtime target id → connection.
#[derive(Default)]
pub struct Registry {
    conns: Mutex<HashMap<String, Live>>,
    next_id: AtomicU64,
}

impl Registry {
    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, Live>> {
        self.conns.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Registers a connection; an older one of the same runtime target is told to close
    /// with 4409. Returns the connection's id (for [`Registry::unregister`]).
    fn register(&self, runtime_target_id: &str, workspace_id: &str, tx: mpsc::UnboundedSender<CloseCmd>) -> u64 {
        let conn_id = self.next_id.fetch_add(1, Ordering::Relaxed) + 1;
        let old = self.lock().insert(runtime_target_id.to_string(), Live { conn_id, workspace_id: workspace_id.to_string(), tx, claimed: false });
        if let Some(old) = old {
            let _ = old.tx.send(CloseCmd { code: close::REPLACED, reason: "replaced" });
        }
        conn_id
    }

    /// Forgets the connection, unless a newer one has taken its place.
    fn unregister(&self, runtime_target_id: &str, conn_id: u64) {
        let mut conns = self.lock();
        if conns.get(runtime_target_id).is_some_and(|l| l.conn_id == conn_id) {
            conns.remove(runtime_target_id);
        }
    }

    /// Marks the connection as the one the database names live.
    fn set_claimed(&self, runtime_target_id: &str, conn_id: u64) {
        if let Some(l) = self.lock().get_mut(runtime_target_id).filter(|l| l.conn_id == conn_id) {
            l.claimed = true;
        }
    }

    /// `(runtime target, connection id)` of the claimed live connections.
    fn claimed(&self) -> Vec<(String, u64)> {
        self.lock().iter().filter(|(_, l)| l.claimed).map(|(k, l)| (k.clone(), l.conn_id)).collect()
    }

    /// Closes this connection (if it is still the one of its runtime target).
    fn close_conn(&self, runtime_target_id: &str, conn_id: u64, code: u16, reason: &'static str) -> bool {
        match self.lock().get(runtime_target_id).filter(|l| l.conn_id == conn_id) {
            Some(l) => l.tx.send(CloseCmd { code, reason }).is_ok(),
            None => false,
        }
    }

    pub fn is_online(&self, runtime_target_id: &str) -> bool {
        self.lock().contains_key(runtime_target_id)
    }

    /// Runtime target ids with a live connection.
    pub fn live_ids(&self) -> Vec<String> {
        self.lock().keys().cloned().collect()
    }

    /// Live runtime target ids of one workspace.
    pub fn live_in(&self, workspace_id: &str) -> Vec<String> {
        self.lock().iter().filter(|(_, l)| l.workspace_id == workspace_id).map(|(k, _)| k.clone()).collect()
    }

    pub fn len(&self) -> usize {
        self.lock().len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Tells the live connection of this runtime target (if any) to close.
    pub fn close(&self, runtime_target_id: &str, code: u16, reason: &'static str) -> bool {
        match self.lock().get(runtime_target_id) {
            Some(l) => l.tx.send(CloseCmd { code, reason }).is_ok(),
            None => false,
        }
    }

    /// Tells every live connection to close.
    pub fn close_all(&self, code: u16, reason: &'static str) {
        for l in self.lock().values() {
            let _ = l.tx.send(CloseCmd { code, reason });
        }
    }
}

/// Closes, with 4401 `revoked`, every live connection whose runtime target is revoked in the
/// database. Returns how many were closed.
pub async fn close_revoked(state: &AppState) -> usize {
    let ids = state.relay.live_ids();
    if ids.is_empty() {
        return 0;
    }
    match state.db(move |s| s.revoked_among(&ids)).await {
        Ok(revoked) => {
            for id in &revoked {
                tracing::info!(runtime_target = %id, "closing the relay connection of a revoked pairing");
                state.relay.close(id, close::INVALID_TOKEN, close::REASON_REVOKED);
            }
            revoked.len()
        }
        Err(e) => {
            tracing::warn!("checking live relay connections for revocations: {e}");
            0
        }
    }
}

/// The name of connection `conn_id` of this instance among every instance's.
fn conn_key(state: &AppState, conn_id: u64) -> String {
    format!("{}/{conn_id}", state.instance)
}

/// Another connection claimed this runtime target (on this or another instance): the one
/// here closes with 4409 unless the database still names it (its claim came later).
pub async fn another_is_live(state: &AppState, runtime_target_id: &str, conn: &str) {
    let Some((_, conn_id)) = state.relay.claimed().into_iter().find(|(t, _)| t == runtime_target_id) else { return };
    let mine = conn_key(state, conn_id);
    if mine == conn {
        return;
    }
    let rt = runtime_target_id.to_string();
    match state.db(move |s| s.live_conn(&rt)).await {
        Ok(Some(live)) if live != mine => {
            tracing::info!(runtime_target = %runtime_target_id, "a newer connection of this pairing is live elsewhere: closing this one");
            state.relay.close_conn(runtime_target_id, conn_id, close::REPLACED, "replaced");
        }
        Ok(_) => {}
        Err(e) => tracing::warn!("checking which connection is live: {e}"),
    }
}

/// After notifications may have been missed: every claimed connection here that the
/// database no longer names live closes with 4409; one it names nobody for is claimed again.
pub async fn check_live(state: &AppState) {
    for (rt, conn_id) in state.relay.claimed() {
        let mine = conn_key(state, conn_id);
        let (r, m, instance) = (rt.clone(), mine.clone(), state.instance.clone());
        let live = state
            .db(move |s| match s.live_conn(&r)? {
                None => s.claim_live(&r, &m, &instance, util::now()).map(|()| Some(m)),
                other => Ok(other),
            })
            .await;
        match live {
            Ok(Some(live)) if live != mine => {
                state.relay.close_conn(&rt, conn_id, close::REPLACED, "replaced");
            }
            Ok(_) => {}
            Err(e) => tracing::warn!("checking which connection is live: {e}"),
        }
    }
}

/// Polls the database for revocations made by other processes (the admin CLI) among the live
/// connections.
pub fn spawn_revocation_poller(state: AppState) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(state.config.revocation_poll);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tick.tick().await;
            close_revoked(&state).await;
        }
    })
}

/// Deletes sessions ended more than `retention_days` ago, now and then hourly.
pub fn spawn_retention(state: AppState) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(Duration::from_secs(3600));
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tick.tick().await;
            let cutoff = util::now() - i64::from(state.config.retention_days) * 86_400;
            match state.db(move |s| Ok((s.delete_sessions_ended_before(cutoff)?, s.purge_stale_sessions(cutoff, util::now())?))).await {
                Ok((0, 0)) => {}
                Ok((ended, stale)) => tracing::info!(
                    "retention: deleted {ended} session(s) ended before {}; removed the frames of {stale} session(s) silent since then (kept as tombstones)",
                    util::rfc3339(cutoff)
                ),
                Err(e) => tracing::warn!("retention: {e}"),
            }
        }
    })
}

/// `GET /ws`.
pub async fn ws_handler(
    State(state): State<AppState>,
    Query(q): Query<HashMap<String, String>>,
    headers: HeaderMap,
    ws: WebSocketUpgrade,
) -> Response {
    let bearer = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer ").or_else(|| v.strip_prefix("bearer ")))
        .map(|t| t.trim().to_string());
    ws.max_message_size(MAX_MESSAGE).max_frame_size(MAX_MESSAGE).on_upgrade(move |socket| async move {
        let mut conn = Conn { socket, closed: false };
        connection(&state, &mut conn, q, bearer).await;
        conn.finish().await;
    })
}

struct Conn {
    socket: WebSocket,
    closed: bool,
}

impl Conn {
    async fn close(&mut self, code: u16, reason: &str) {
        if self.closed {
            return;
        }
        self.closed = true;
        let frame = CloseFrame { code, reason: reason.into() };
        let _ = tokio::time::timeout(Duration::from_secs(2), self.socket.send(Message::Close(Some(frame)))).await;
    }

    async fn send(&mut self, msg: &RelayMsg) -> bool {
        let text = serde_json::to_string(msg).expect("relay messages serialize");
        self.socket.send(Message::Text(text.into())).await.is_ok()
    }

    /// After our close frame: wait briefly for the peer's, so it reads ours before the TCP
    /// connection goes away.
    async fn finish(mut self) {
        if !self.closed {
            return;
        }
        let _ = tokio::time::timeout(Duration::from_secs(1), async {
            while let Some(Ok(m)) = self.socket.recv().await {
                if matches!(m, Message::Close(_)) {
                    break;
                }
            }
        })
        .await;
    }
}

/// Everything the connection learned in the handshake.
struct Authed {
    workspace_id: String,
    runtime_target_id: String,
    machine_id: String,
    /// The daemon understands `throttle` and `session_refused` (SPEC A8); see
    /// [`vpd_proto::relay::FEATURES`].
    quota_aware: bool,
}

async fn connection(state: &AppState, conn: &mut Conn, q: HashMap<String, String>, bearer: Option<String>) {
    let Some(authed) = handshake(state, conn, q, bearer).await else { return };
    let (tx, mut rx) = mpsc::unbounded_channel();
    let conn_id = state.relay.register(&authed.runtime_target_id, &authed.workspace_id, tx);
    let rt = authed.runtime_target_id.clone();
    // The database names this connection live for every instance; a revocation committed
    // while the handshake ran (its event heard before this connection was registered) is
    // caught by looking once more.
    let (r, key, instance) = (rt.clone(), conn_key(state, conn_id), state.instance.clone());
    match state.db(move |s| Ok((s.claim_live(&r, &key, &instance, util::now())?, s.revoked_among(std::slice::from_ref(&r))?))).await {
        Ok(((), revoked)) => {
            state.relay.set_claimed(&rt, conn_id);
            if !revoked.is_empty() {
                state.relay.close_conn(&rt, conn_id, close::INVALID_TOKEN, close::REASON_REVOKED);
            }
        }
        Err(e) => {
            tracing::warn!(runtime_target = %rt, "recording the live connection: {e}");
            state.relay.unregister(&rt, conn_id);
            conn.close(CLOSE_INTERNAL, "database unavailable").await;
            return;
        }
    }
    tracing::info!(workspace = %authed.workspace_id, runtime_target = %rt, "relay connection ready");
    stream(state, conn, &authed, &mut rx).await;
    state.relay.unregister(&rt, conn_id);
    let (r, key) = (rt.clone(), conn_key(state, conn_id));
    let _ = state.db(move |s| s.release_live(&r, &key)).await;
    let (ws, m) = (authed.workspace_id.clone(), authed.machine_id.clone());
    let _ = state.db(move |s| s.touch_machine(&ws, &m, util::now())).await;
    tracing::info!(workspace = %authed.workspace_id, runtime_target = %rt, "relay connection ended");
}

/// Token, workspace, revocation, proof of key; then registration and `ready`.
async fn handshake(state: &AppState, conn: &mut Conn, q: HashMap<String, String>, bearer: Option<String>) -> Option<Authed> {
    let (Some(role), Some(ws), Some(rt)) = (q.get("role"), q.get("workspaceId"), q.get("runtimeTargetId")) else {
        conn.close(close::MALFORMED, "missing role, workspaceId or runtimeTargetId").await;
        return None;
    };
    if role != ROLE {
        conn.close(close::MALFORMED, "unknown role").await;
        return None;
    }
    let invalid = close::REASON_INVALID;
    let Some(token) = bearer else {
        conn.close(close::INVALID_TOKEN, invalid).await;
        return None;
    };
    let claims = match state.verify_relay_token(&token).await {
        Ok(c) => c,
        Err(crate::keys::TokenError::Expired) => {
            conn.close(close::INVALID_TOKEN, close::REASON_EXPIRED).await;
            return None;
        }
        Err(crate::keys::TokenError::Invalid) => {
            conn.close(close::INVALID_TOKEN, invalid).await;
            return None;
        }
    };
    if &claims.sub != rt || &claims.workspace_id != ws {
        conn.close(close::INVALID_TOKEN, invalid).await;
        return None;
    }
    let (w, r) = (ws.clone(), rt.clone());
    let looked = state
        .db(move |s| {
            let Some(_) = s.workspace_by_id(&w)? else { return Ok(None) };
            Ok(Some(s.runtime_target(&w, &r)?))
        })
        .await;
    let target = match looked {
        Ok(None) => {
            conn.close(close::WORKSPACE_NOT_FOUND, "workspace_not_found").await;
            return None;
        }
        Ok(Some(None)) => {
            conn.close(close::INVALID_TOKEN, invalid).await;
            return None;
        }
        Ok(Some(Some(t))) => t,
        Err(e) => {
            tracing::error!("relay handshake: {e}");
            conn.close(CLOSE_INTERNAL, "internal error").await;
            return None;
        }
    };
    if target.revoked_at.is_some() {
        conn.close(close::INVALID_TOKEN, close::REASON_REVOKED).await;
        return None;
    }

    // Proof of key.
    let nonce = util::b64url(&util::random_bytes::<32>());
    if !conn.send(&RelayMsg::Challenge { nonce: nonce.clone() }).await {
        return None;
    }
    let signature = match tokio::time::timeout(state.config.proof_timeout, first_message(conn)).await {
        Err(_) => {
            conn.close(close::NO_PROOF, "no proof in time").await;
            return None;
        }
        Ok(First::Gone) => return None,
        Ok(First::TooLarge) => {
            conn.close(close::TOO_LARGE, "message too large").await;
            return None;
        }
        Ok(First::Text(t)) => match serde_json::from_str::<DaemonMsg>(&t) {
            Ok(DaemonMsg::Proof { signature }) => signature,
            _ => {
                conn.close(close::MALFORMED, "expected a proof").await;
                return None;
            }
        },
        Ok(First::Other) => {
            conn.close(close::MALFORMED, "expected a proof").await;
            return None;
        }
    };
    let message = proof_message(ws, rt, &state.relay_endpoint(), &nonce);
    if !proof_ok(&target.public_key, &signature, message.as_bytes()) {
        conn.close(close::INVALID_TOKEN, invalid).await;
        return None;
    }

    let r = rt.clone();
    let since = util::now() - RESUME_WINDOW_SECS;
    let (w, m) = (ws.clone(), target.machine_id.clone());
    let resume = match state
        .db(move |s| {
            s.touch_machine(&w, &m, util::now())?;
            s.relay_resume(&r, since)
        })
        .await
    {
        Ok(r) => r,
        Err(e) => {
            tracing::error!("relay handshake: {e}");
            conn.close(CLOSE_INTERNAL, "internal error").await;
            return None;
        }
    };
    if !conn.send(&RelayMsg::Ready { resume }).await {
        return None;
    }
    let quota_aware = q.get("features").is_some_and(|f| f.split(',').any(|x| x == vpd_proto::relay::FEATURES));
    if !quota_aware {
        tracing::info!(runtime_target = %rt, "this daemon predates quotas: it is paced by acks alone and exempt from stored quotas; update vpd");
    }
    Some(Authed { workspace_id: ws.clone(), runtime_target_id: rt.clone(), machine_id: target.machine_id, quota_aware })
}

enum First {
    Text(String),
    TooLarge,
    Other,
    Gone,
}

/// The first data message (pings and pongs are skipped).
async fn first_message(conn: &mut Conn) -> First {
    loop {
        match conn.socket.recv().await {
            Some(Ok(Message::Text(t))) => return First::Text(t.as_str().to_string()),
            Some(Ok(Message::Ping(_) | Message::Pong(_))) => continue,
            Some(Ok(Message::Binary(_))) => return First::Other,
            Some(Ok(Message::Close(_))) | None => return First::Gone,
            Some(Err(e)) if is_too_large(&e) => return First::TooLarge,
            Some(Err(_)) => return First::Gone,
        }
    }
}

fn is_too_large(e: &axum::Error) -> bool {
    let s = e.to_string();
    s.contains("Message too long") || s.contains("Space limit exceeded")
}

fn proof_ok(public_key_b64: &str, signature_b64: &str, message: &[u8]) -> bool {
    let Some(pk) = util::b64url_decode(public_key_b64).and_then(|b| <[u8; 32]>::try_from(b).ok()) else {
        return false;
    };
    let Ok(vk) = ed25519_dalek::VerifyingKey::from_bytes(&pk) else { return false };
    let sig_bytes =
        util::b64url_decode(signature_b64.trim_end_matches('=')).or_else(|| base64::engine::general_purpose::STANDARD.decode(signature_b64).ok());
    let Some(sig) = sig_bytes.and_then(|b| <[u8; 64]>::try_from(b).ok()) else { return false };
    vk.verify_strict(message, &ed25519_dalek::Signature::from_bytes(&sig)).is_ok()
}

/// A token bucket: `rate` messages per second sustained, `burst` at once.
struct Bucket {
    rate: f64,
    burst: f64,
    tokens: f64,
    at: Instant,
}

impl Bucket {
    fn new(rate: u32, burst: u32) -> Bucket {
        Bucket { rate: f64::from(rate), burst: f64::from(burst.max(1)), tokens: f64::from(burst.max(1)), at: Instant::now() }
    }
    fn take(&mut self, n: usize) -> bool {
        let now = Instant::now();
        self.tokens = (self.tokens + now.duration_since(self.at).as_secs_f64() * self.rate).min(self.burst);
        self.at = now;
        self.tokens -= n as f64;
        self.tokens >= 0.0
    }
}

/// How reading a batch ended.
enum After {
    /// Keep going.
    More,
    /// The peer closed or the connection failed.
    Gone,
    /// Close with this code and reason (after storing what came before).
    Close(u16, String),
}

/// Data bytes: standard base64, padding optional.
const B64: base64::engine::GeneralPurpose = base64::engine::GeneralPurpose::new(
    &base64::alphabet::STANDARD,
    base64::engine::GeneralPurposeConfig::new().with_decode_padding_mode(base64::engine::DecodePaddingMode::Indifferent),
);

fn kind_str(k: FrameKind) -> &'static str {
    match k {
        FrameKind::Output => "output",
        FrameKind::Input => "input",
        FrameKind::Resize => "resize",
        FrameKind::Event => "event",
        FrameKind::Gap => "gap",
    }
}

/// Why a message was not taken.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Bad {
    /// Not a message of the protocol, or no session and seq to answer for: close 4400.
    Malformed(String),
    /// A field breaks a rule of `vpd_proto::limits` (SPEC A2, A11): refused for this session
    /// alone, and the connection stays open.
    Refused { session_id: String, seq: u64, why: String },
}

/// One text message → a store operation, or why it is not taken.
fn to_op(text: &str) -> Result<RelayOp, Bad> {
    use vpd_proto::limits::{self, check_text};
    let msg: DaemonMsg = serde_json::from_str(text).map_err(|e| Bad::Malformed(format!("malformed message: {e}")))?;
    let check_id = |id: &str| {
        if vpd_proto::is_ulid(id) {
            Ok(())
        } else {
            Err(Bad::Malformed("sessionId must be a ULID".to_string()))
        }
    };
    let check_seq = |seq: u64| {
        if seq == 0 || seq > i64::MAX as u64 {
            Err(Bad::Malformed(format!("seq {seq} out of range")))
        } else {
            Ok(())
        }
    };
    let refuse = |session_id: &str, seq: u64, why: String| Bad::Refused { session_id: session_id.to_string(), seq, why };
    match msg {
        DaemonMsg::Proof { .. } => Err(Bad::Malformed("unexpected proof".into())),
        DaemonMsg::SessionStart { session_id, agent, directory, started_at } => {
            check_id(&session_id)?;
            check_text(&agent, limits::AGENT).map_err(|e| refuse(&session_id, 0, format!("agent {e}")))?;
            check_text(&directory, limits::DIRECTORY).map_err(|e| refuse(&session_id, 0, format!("directory {e}")))?;
            let started = started_at.parse::<jiff::Timestamp>().map(|t| t.as_second()).unwrap_or_else(|_| util::now());
            Ok(RelayOp::Start { session_id, agent, directory, started_at: started })
        }
        DaemonMsg::Frame { session_id, seq, ts, kind, data } => {
            check_id(&session_id)?;
            check_seq(seq)?;
            check_text(&ts, limits::TS).map_err(|e| refuse(&session_id, seq, format!("ts {e}")))?;
            if data.len() > limits::FRAME_DATA.div_ceil(3) * 4 + 4 {
                return Err(refuse(&session_id, seq, format!("data is more than the {} bytes allowed", limits::FRAME_DATA)));
            }
            let data = B64.decode(data.as_bytes()).map_err(|_| refuse(&session_id, seq, "data is not base64".into()))?;
            if data.len() > limits::FRAME_DATA {
                return Err(refuse(&session_id, seq, format!("data is more than the {} bytes allowed", limits::FRAME_DATA)));
            }
            Ok(RelayOp::Frame { session_id, seq, ts, kind: kind_str(kind), data })
        }
        DaemonMsg::SessionEnd { session_id, seq, reason, exit_code } => {
            check_id(&session_id)?;
            check_seq(seq)?;
            check_text(&reason, limits::REASON).map_err(|e| refuse(&session_id, seq, format!("reason {e}")))?;
            Ok(RelayOp::End { session_id, seq, reason, exit_code })
        }
    }
}

/// Sessions with a refused message, and the seq each waits for: until that seq comes again
/// (cut down, or as a gap), the session's later messages are not taken — the daemon sends
/// them again after it — so a refusal never makes a hole or an out-of-order violation.
#[derive(Default)]
struct Held {
    waiting: HashMap<String, u64>,
    /// `refused` answers to send after the batch.
    answers: Vec<RelayMsg>,
}

impl Held {
    /// Whether to take `op`.
    fn admits(&mut self, op: &RelayOp) -> bool {
        let seq = match op {
            RelayOp::Start { .. } => 0,
            RelayOp::Frame { seq, .. } | RelayOp::End { seq, .. } => *seq,
        };
        // A gap covering the refused seq replaces it too (the daemon may have merged the
        // refused frame into an overflow gap since).
        let covers = |w: u64| match op {
            RelayOp::Frame { kind: "gap", data, seq, .. } => crate::store::gap_range(data).is_some_and(|(from, _)| from <= w && w <= *seq),
            _ => false,
        };
        match self.waiting.get(op.session_id()) {
            Some(&w) if seq == w || covers(w) => {
                self.waiting.remove(op.session_id());
                true
            }
            Some(&w) => seq < w,
            None => true,
        }
    }

    fn refuse(&mut self, session_id: String, seq: u64, why: String) {
        match self.waiting.get(&session_id) {
            // Behind an earlier refusal of the same session: it will come again after it.
            Some(&w) if w < seq => {}
            _ => {
                self.waiting.insert(session_id.clone(), seq);
                self.answers.push(RelayMsg::Refused { session_id, seq, reason: why });
            }
        }
    }
}

/// How often, at most, the relay goes without a word to a throttled daemon (below
/// [`vpd_proto::relay::THROTTLE_EVERY_SECS`], so the daemon hears one in time).
const THROTTLE_NOTE: Duration = Duration::from_secs(vpd_proto::relay::THROTTLE_EVERY_SECS - 1);

/// Sends `msgs` (one flush). False when the connection is gone.
async fn send_all(conn: &mut Conn, msgs: impl IntoIterator<Item = RelayMsg>) -> bool {
    let mut any = false;
    for m in msgs {
        let text = serde_json::to_string(&m).expect("relay messages serialize");
        if conn.socket.feed(Message::Text(text.into())).await.is_err() {
            return false;
        }
        any = true;
    }
    !any || conn.socket.flush().await.is_ok()
}

/// The streaming phase: batches in, acks out, until closed.
///
/// Write budgets (SPEC A8): a stored batch is charged to its machine and org; while either is
/// in debt, the acks wait (the highest per session is kept) and a `throttle` note goes out at
/// once and then at least every [`THROTTLE_NOTE`]. The socket is always read and every batch
/// stored — so pings are answered and a daemon never blocks writing — and a daemon that heeds
/// the notes holds back; one that does not only deepens its debt.
async fn stream(state: &AppState, conn: &mut Conn, a: &Authed, rx: &mut mpsc::UnboundedReceiver<CloseCmd>) {
    let mut bucket = Bucket::new(state.config.relay_rate_per_sec, state.config.relay_burst);
    let mut ping = tokio::time::interval(PING_EVERY);
    ping.reset();
    let mut last_rx = Instant::now();
    let mut held = Held::default();
    let budget = state.write_budget();
    // While in debt: the acks held back, and when to say `throttle` next.
    let mut debt: Option<(Vec<(String, u64)>, tokio::time::Instant)> = None;
    let acks = |list: Vec<(String, u64)>| list.into_iter().map(|(session_id, seq)| RelayMsg::Ack { session_id, seq }).collect::<Vec<_>>();
    loop {
        let note_at = debt.as_ref().map(|(_, at)| *at).unwrap_or_else(|| tokio::time::Instant::now() + Duration::from_secs(3600));
        let first = tokio::select! {
            biased;
            cmd = rx.recv() => {
                if let Some(cmd) = cmd {
                    conn.close(cmd.code, cmd.reason).await;
                }
                return;
            }
            _ = tokio::time::sleep_until(note_at), if debt.is_some() => {
                let wait = state.budgets.wait(&a.machine_id, &a.workspace_id, budget, Instant::now());
                let ok = if wait.is_zero() {
                    let (held_acks, _) = debt.take().expect("in debt");
                    send_all(conn, acks(held_acks)).await
                } else if !a.quota_aware {
                    // An older daemon knows no `throttle`: an ack is what keeps it connected.
                    let d = debt.as_mut().expect("in debt");
                    d.1 = tokio::time::Instant::now() + THROTTLE_NOTE;
                    send_all(conn, acks(std::mem::take(&mut d.0))).await
                } else {
                    debt.as_mut().expect("in debt").1 = tokio::time::Instant::now() + wait.min(THROTTLE_NOTE);
                    send_all(conn, [RelayMsg::Throttle { retry_after_ms: wait.as_millis() as u64 }]).await
                };
                if !ok {
                    return;
                }
                continue;
            }
            _ = ping.tick() => {
                if last_rx.elapsed() > IDLE_TIMEOUT {
                    return;
                }
                if conn.socket.send(Message::Ping(Default::default())).await.is_err() {
                    return;
                }
                continue;
            }
            m = conn.socket.recv() => m,
        };
        last_rx = Instant::now();
        let (mut ops, mut bytes) = (Vec::new(), 0usize);
        let mut after = take(first, &mut ops, &mut bytes, &mut bucket, &mut held);
        while matches!(after, After::More) && ops.len() < MAX_BATCH_MESSAGES && bytes < MAX_BATCH_BYTES {
            match conn.socket.recv().now_or_never() {
                Some(m) => after = take(m, &mut ops, &mut bytes, &mut bucket, &mut held),
                None => break,
            }
        }
        let mut violation = None;
        if !ops.is_empty() {
            let quota = if a.quota_aware { state.config.stored_quota } else { crate::store::StoredQuota::UNLIMITED };
            let (ws, rt, m) = (a.workspace_id.clone(), a.runtime_target_id.clone(), a.machine_id.clone());
            let outcome = match state.db(move |s| s.relay_store_batch(&ws, &rt, &m, &ops, quota, util::now())).await {
                Ok(o) => o,
                Err(e) => {
                    tracing::error!(runtime_target = %a.runtime_target_id, "storing frames: {e}");
                    conn.close(CLOSE_INTERNAL, "internal error").await;
                    return;
                }
            };
            let refusals: Vec<RelayMsg> = outcome
                .refused
                .iter()
                .map(|session_id| {
                    tracing::info!(runtime_target = %a.runtime_target_id, session = %session_id, "new session refused: stored-bytes quota used up");
                    RelayMsg::SessionRefused { session_id: session_id.clone(), error: vpd_proto::relay::QUOTA_EXCEEDED.into() }
                })
                .collect();
            if !send_all(conn, refusals).await {
                return;
            }
            let wait = state.budgets.charge(&a.machine_id, &a.workspace_id, outcome.bytes, budget, Instant::now());
            violation = outcome.violation;
            match &mut debt {
                Some((held_acks, _)) => merge_acks(held_acks, outcome.acks),
                None if !wait.is_zero() => {
                    tracing::debug!(runtime_target = %a.runtime_target_id, ?wait, "over the write budget: acks paced");
                    if a.quota_aware && !send_all(conn, [RelayMsg::Throttle { retry_after_ms: wait.as_millis() as u64 }]).await {
                        return;
                    }
                    debt = Some((outcome.acks, tokio::time::Instant::now() + wait.min(THROTTLE_NOTE)));
                }
                None => {
                    if !send_all(conn, acks(outcome.acks)).await {
                        return;
                    }
                }
            }
        }
        // Refusals after the acks of what came before them.
        if !held.answers.is_empty() && !send_all(conn, held.answers.drain(..).collect::<Vec<_>>()).await {
            return;
        }
        let close = match (violation, after) {
            (Some(v), _) => Some((close::MALFORMED, v)),
            (None, After::Close(code, reason)) => Some((code, reason)),
            (None, After::Gone) => return,
            (None, After::More) => None,
        };
        if let Some((code, reason)) = close {
            // The daemon takes a close as "everything acked before it is stored": say so first.
            if let Some((held_acks, _)) = debt.take() {
                if !send_all(conn, acks(held_acks)).await {
                    return;
                }
            }
            tracing::info!(runtime_target = %a.runtime_target_id, code, "closing relay connection: {reason}");
            conn.close(code, &truncate(&reason, 120)).await;
            return;
        }
    }
}

/// Adds a batch's acks to those held back: the highest seq per session, first-seen order.
fn merge_acks(held: &mut Vec<(String, u64)>, new: Vec<(String, u64)>) {
    for (session, seq) in new {
        match held.iter_mut().find(|(s, _)| *s == session) {
            Some((_, top)) => *top = (*top).max(seq),
            None => held.push((session, seq)),
        }
    }
}

/// Adds one received message to the batch.
fn take(m: Option<Result<Message, axum::Error>>, ops: &mut Vec<RelayOp>, bytes: &mut usize, bucket: &mut Bucket, held: &mut Held) -> After {
    match m {
        None | Some(Ok(Message::Close(_))) => After::Gone,
        Some(Err(e)) if is_too_large(&e) => After::Close(close::TOO_LARGE, "message too large".into()),
        Some(Err(_)) => After::Gone,
        Some(Ok(Message::Ping(_) | Message::Pong(_))) => After::More,
        Some(Ok(Message::Binary(_))) => After::Close(close::MALFORMED, "binary messages are not part of the protocol".into()),
        Some(Ok(Message::Text(t))) => {
            if !bucket.take(1) {
                return After::Close(CLOSE_POLICY, "rate limit exceeded".into());
            }
            if t.len() > MAX_MESSAGE {
                return After::Close(close::TOO_LARGE, "message too large".into());
            }
            match to_op(t.as_str()) {
                Ok(op) => {
                    if held.admits(&op) {
                        *bytes += t.len();
                        ops.push(op);
                    }
                    After::More
                }
                Err(Bad::Refused { session_id, seq, why }) => {
                    held.refuse(session_id, seq, why);
                    After::More
                }
                Err(Bad::Malformed(why)) => After::Close(close::MALFORMED, why),
            }
        }
    }
}

/// At most `n` bytes, on a character boundary (close reasons are limited to 123 bytes).
fn truncate(s: &str, n: usize) -> String {
    if s.len() <= n {
        return s.to_string();
    }
    let mut end = n;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    s[..end].to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messages_become_ops() {
        let id = ulid::Ulid::new().to_string();
        let op = to_op(&format!(r#"{{"type":"frame","sessionId":"{id}","seq":1,"ts":"t","kind":"output","data":"aGk="}}"#)).unwrap();
        assert_eq!(op, RelayOp::Frame { session_id: id.clone(), seq: 1, ts: "t".into(), kind: "output", data: b"hi".to_vec() });
        let refused = |text: &str| matches!(to_op(text), Err(Bad::Refused { .. }));
        assert!(refused(&format!(r#"{{"type":"frame","sessionId":"{id}","seq":1,"ts":"t","kind":"output","data":"!!"}}"#)));
        let agent = "€".repeat(100);
        assert!(refused(&format!(r#"{{"type":"session_start","sessionId":"{id}","agent":"{agent}","directory":"d","startedAt":"t"}}"#)));
        assert!(refused(&format!(r#"{{"type":"session_start","sessionId":"{id}","agent":"a\u001b[2J","directory":"d","startedAt":"t"}}"#)));
        assert!(refused(&format!(r#"{{"type":"session_start","sessionId":"{id}","agent":"a","directory":"d\u0000","startedAt":"t"}}"#)));
        let reason = "é".repeat(150);
        assert!(refused(&format!(r#"{{"type":"session_end","sessionId":"{id}","seq":3,"reason":"{reason}","exitCode":null}}"#)));
        let ok = "€".repeat(85);
        assert!(to_op(&format!(r#"{{"type":"session_start","sessionId":"{id}","agent":"{ok}","directory":"d","startedAt":"t"}}"#)).is_ok());
        assert!(to_op(r#"{"type":"frame","sessionId":"nope","seq":1,"ts":"t","kind":"output","data":""}"#).is_err());
        assert!(to_op(r#"{"type":"bogus"}"#).is_err());
        assert!(to_op("not json").is_err());
        assert!(to_op(&format!(r#"{{"type":"session_end","sessionId":"{id}","seq":0,"reason":"x","exitCode":null}}"#)).is_err());
    }

    #[test]
    fn a_refused_session_waits_for_its_seq_again_and_others_go_on() {
        let frame = |s: &str, seq: u64| RelayOp::Frame { session_id: s.into(), seq, ts: "t".into(), kind: "output", data: vec![] };
        let mut h = Held::default();
        h.refuse("A".into(), 2, "why".into());
        h.refuse("A".into(), 3, "behind it".into());
        assert_eq!(h.answers.len(), 1, "one answer: later messages come again after the replacement");
        assert!(h.admits(&frame("A", 1)), "before the refused one (a duplicate): acked as usual");
        assert!(!h.admits(&frame("A", 3)), "behind the refused one: not taken");
        assert!(h.admits(&frame("B", 7)), "another session goes on");
        assert!(h.admits(&frame("A", 2)), "the replacement");
        assert!(h.admits(&frame("A", 3)), "and then the rest");
        // A gap that covers the refused seq replaces it as well.
        h.refuse("B".into(), 5, "why".into());
        let gap = RelayOp::Frame { session_id: "B".into(), seq: 9, ts: "t".into(), kind: "gap", data: b"4-9".to_vec() };
        assert!(h.admits(&gap));
        assert!(h.admits(&frame("B", 10)));
    }

    #[test]
    fn bucket_limits() {
        let mut b = Bucket::new(10, 5);
        assert!((0..5).all(|_| b.take(1)));
        assert!(!b.take(1));
    }

    #[test]
    fn truncation_keeps_characters_whole() {
        assert_eq!(truncate("ééé", 3), "é");
        assert_eq!(truncate("abc", 10), "abc");
    }
}

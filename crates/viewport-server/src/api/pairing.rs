//! `POST /api/pairing-codes`, `GET /api/pairing-codes/{code}/status`,
//! `POST /api/pairing-codes/{code}/cancel`, `POST /api/pairing-codes/{code}/claim`.

use super::{ApiErr, ApiJson};
use crate::store::{Cancelled, CodeKind, CodeState, MachineInfo, Pairing, StoreError};
use crate::{util, AppState};
use axum::extract::{ConnectInfo, Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::IntoResponse;
use axum::Json;
use serde::Deserialize;
use std::net::SocketAddr;
use std::time::Duration;
use tokio::time::Instant;
use vpd_proto::pairing::{Approved, CreatePairingCode, PairingCodeCreated, PairingStatus, KEY_ALGORITHM, MAX_WAIT_SECS};
use vpd_proto::{paths, Secret};

/// How often a waiting long poll re-reads the database (approvals from the admin CLI).
const POLL_EVERY: Duration = Duration::from_millis(200);

/// Checks a daemon's self-description; the error message says what is wrong.
pub fn validate_machine(body: &CreatePairingCode) -> Result<MachineInfo, String> {
    if body.key_algorithm != KEY_ALGORITHM {
        return Err(format!("key_algorithm must be \"{KEY_ALGORITHM}\""));
    }
    let key = util::b64url_decode(&body.public_key).ok_or("public_key must be unpadded base64url")?;
    let key: [u8; 32] = key.try_into().map_err(|_| "public_key must be exactly 32 bytes")?;
    let vk = ed25519_dalek::VerifyingKey::from_bytes(&key).map_err(|_| "public_key is not a valid Ed25519 key")?;
    if vk.is_weak() {
        return Err("public_key is a weak (small-order) Ed25519 key".into());
    }
    util::validate_name("name", &body.name)?;
    for (what, v) in [("daemon_version", &body.daemon_version), ("platform.os", &body.platform.os), ("platform.arch", &body.platform.arch)] {
        if v.chars().count() > 64 || v.chars().any(char::is_control) {
            return Err(format!("{what} must be at most 64 characters without control characters"));
        }
    }
    if let Some(org) = &body.requested_org {
        if org.chars().count() > 100 || org.chars().any(char::is_control) {
            return Err("requested_org must be at most 100 characters without control characters".into());
        }
    }
    Ok(MachineInfo {
        name: body.name.clone(),
        public_key: body.public_key.clone(),
        daemon_version: body.daemon_version.clone(),
        os: body.platform.os.clone(),
        arch: body.platform.arch.clone(),
    })
}

pub async fn create(
    State(state): State<AppState>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    headers: axum::http::HeaderMap,
    ApiJson(body): ApiJson<CreatePairingCode>,
) -> Result<impl IntoResponse, ApiErr> {
    if !state.allow_pairing(state.client(peer.ip(), &headers)).await {
        return Err(ApiErr::rate_limited());
    }
    let machine = validate_machine(&body).map_err(ApiErr::bad_request)?;
    let requested_org = body.requested_org.clone().filter(|s| !s.is_empty());
    let status_token = util::random_token();
    let hash = util::sha256(status_token.as_bytes());
    let now = util::now();
    let expires = now + util::CODE_TTL_SECS;
    let code = state
        .db(move |s| {
            for _ in 0..8 {
                let code = util::random_code();
                match s.insert_device_code(&code, &hash, &machine, requested_org.as_deref(), now, expires) {
                    Ok(()) => return Ok(code),
                    Err(StoreError::Conflict(_)) => continue,
                    Err(e) => return Err(e),
                }
            }
            Err(StoreError::Conflict("no free pairing code".into()))
        })
        .await?;
    let shown = vpd_proto::format_code(&code);
    Ok((
        StatusCode::CREATED,
        Json(PairingCodeCreated {
            verification_url: format!("{}/pair?code={shown}", state.public_url()),
            code: shown,
            status_token: Secret::new(status_token),
            expires_at: util::rfc3339(expires),
        }),
    ))
}

#[derive(Deserialize)]
pub struct WaitQuery {
    wait: Option<String>,
}

pub async fn status(
    State(state): State<AppState>,
    Path(code): Path<String>,
    Query(q): Query<WaitQuery>,
    headers: HeaderMap,
) -> Result<Json<PairingStatus>, ApiErr> {
    let code = vpd_proto::normalize_code(&code).ok_or_else(ApiErr::not_found)?;
    let token = pairing_token(&headers);
    let wait = q.wait.as_deref().and_then(|w| w.parse::<u64>().ok()).unwrap_or(0).min(MAX_WAIT_SECS);
    let deadline = Instant::now() + Duration::from_secs(wait);

    // The token is checked once, up front; an unknown code and a wrong token look the same.
    check_status_token(&state, &code, &token).await?;

    loop {
        let notified = state.changes.notified();
        tokio::pin!(notified);
        notified.as_mut().enable();

        let c = code.clone();
        let pc = state.db(move |s| s.pairing_code(&c)).await?.ok_or_else(ApiErr::not_found)?;
        match pc.state {
            CodeState::Consumed => return Err(ApiErr::not_found()),
            CodeState::Denied => return Ok(Json(PairingStatus::Denied)),
            CodeState::Approved => {
                let issue_token = util::random_token();
                let hash = util::sha256(issue_token.as_bytes());
                let c = code.clone();
                return match state.db(move |s| s.deliver_approval(&c, &hash)).await? {
                    Some(p) => Ok(Json(approved(&state, p, issue_token))),
                    None => Err(ApiErr::not_found()),
                };
            }
            CodeState::Pending => {
                if pc.is_expired(util::now()) {
                    return Ok(Json(PairingStatus::Expired));
                }
                let now = Instant::now();
                if now >= deadline {
                    return Ok(Json(PairingStatus::Pending));
                }
                let nap = POLL_EVERY.min(deadline - now);
                tokio::select! {
                    _ = &mut notified => {}
                    _ = tokio::time::sleep(nap) => {}
                }
            }
        }
    }
}

/// `X-Viewport-Pairing-Token`, or empty.
fn pairing_token(headers: &HeaderMap) -> String {
    headers.get(paths::PAIRING_TOKEN_HEADER).and_then(|v| v.to_str().ok()).unwrap_or("").to_string()
}

/// 404 `not_found` unless `code` is a daemon's code and `token` its status token (compared in
/// constant time).
async fn check_status_token(state: &AppState, code: &str, token: &str) -> Result<(), ApiErr> {
    let c = code.to_string();
    let pc = state.db(move |s| s.pairing_code(&c)).await?.ok_or_else(ApiErr::not_found)?;
    let token_ok = pc.kind == CodeKind::Device && pc.status_token_hash.as_deref().is_some_and(|h| util::secret_matches(token, h));
    if token_ok {
        Ok(())
    } else {
        Err(ApiErr::not_found())
    }
}

/// The daemon gave up waiting (Ctrl-C). A pending code can no longer be approved; an approval
/// not yet handed out is revoked. Unknown, wrong token, denied, delivered or expired: the same
/// 404 as the status route.
pub async fn cancel(State(state): State<AppState>, Path(code): Path<String>, headers: HeaderMap) -> Result<Json<serde_json::Value>, ApiErr> {
    let code = vpd_proto::normalize_code(&code).ok_or_else(ApiErr::not_found)?;
    check_status_token(&state, &code, &pairing_token(&headers)).await?;
    let c = code.clone();
    let outcome = state.db(move |s| s.cancel_device_code(&c, util::now())).await?;
    // Long polls on this code answer at once (it is now consumed: 404).
    state.changes.notify_waiters();
    match outcome {
        Some(Cancelled::Pending) => tracing::info!("pairing code cancelled by the daemon"),
        Some(Cancelled::Approval { runtime_target_id }) => {
            tracing::info!(runtime_target = %runtime_target_id, "pairing cancelled by the daemon after approval; runtime target revoked")
        }
        None => return Err(ApiErr::not_found()),
    }
    Ok(Json(serde_json::json!({ "status": "cancelled" })))
}

pub async fn claim(
    State(state): State<AppState>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    headers: axum::http::HeaderMap,
    Path(code): Path<String>,
    ApiJson(body): ApiJson<CreatePairingCode>,
) -> Result<Json<PairingStatus>, ApiErr> {
    if !state.allow_pairing(state.client(peer.ip(), &headers)).await {
        return Err(ApiErr::rate_limited());
    }
    let code = vpd_proto::normalize_code(&code).ok_or_else(ApiErr::not_found)?;
    let machine = validate_machine(&body).map_err(ApiErr::bad_request)?;
    let issue_token = util::random_token();
    let hash = util::sha256(issue_token.as_bytes());
    match state.db(move |s| s.claim_minted_code(&code, &machine, &hash, util::now())).await {
        Ok(p) => Ok(Json(approved(&state, p, issue_token))),
        Err(StoreError::NotFound(_) | StoreError::Gone(_) | StoreError::Forbidden(_)) => Err(ApiErr::not_found()),
        Err(e) => Err(e.into()),
    }
}

fn approved(state: &AppState, p: Pairing, issue_token: String) -> PairingStatus {
    PairingStatus::Approved(Box::new(Approved {
        workspace_id: p.workspace.id,
        workspace_name: p.workspace.name,
        workspace_slug: p.workspace.slug,
        install_id: p.install_id,
        runtime_target_id: p.runtime_target_id,
        machine_id: p.machine_id,
        machine_name: p.machine_name,
        token: Secret::new(issue_token),
        relay_endpoint: state.relay_endpoint(),
        server_url: state.public_url().to_string(),
    }))
}

//! `POST /api/runtime/relay-token`, `POST /api/runtime/unpair`, `POST /api/runtime/rename`,
//! the JWKS and health.

use super::{ApiErr, ApiJson};
use crate::store::RuntimeTarget;
use crate::{util, AppState};
use axum::extract::State;
use axum::http::StatusCode;
use axum::Json;
use vpd_proto::runtime::{errors, RelayClaims, RelayToken, RenameMachine, RuntimeCredential, RELAY_AUDIENCE, RELAY_TOKEN_MAX_SECS};
use vpd_proto::{Health, Secret};

/// Checks a runtime credential. Unknown workspace → 404; unknown target in that workspace or
/// wrong credential → 401; valid credential of a revoked target → 403.
async fn authenticate(state: &AppState, cred: &RuntimeCredential) -> Result<RuntimeTarget, ApiErr> {
    let ws_missing = || ApiErr::new(StatusCode::NOT_FOUND, errors::WORKSPACE_NOT_FOUND, "no such workspace on this server");
    let invalid = || ApiErr::new(StatusCode::UNAUTHORIZED, errors::INVALID_CREDENTIAL, "unknown runtime target or wrong credential");
    if !vpd_proto::is_ulid(&cred.workspace_id) {
        return Err(ws_missing());
    }
    let ws = cred.workspace_id.clone();
    if state.db(move |s| s.workspace_by_id(&ws)).await?.is_none() {
        return Err(ws_missing());
    }
    let (ws, rt) = (cred.workspace_id.clone(), cred.runtime_target_id.clone());
    let target = state.db(move |s| s.runtime_target(&ws, &rt)).await?.ok_or_else(invalid)?;
    let ok = target.issue_token_hash.as_deref().is_some_and(|h| util::secret_matches(cred.credential.expose(), h));
    if !ok {
        return Err(invalid());
    }
    if target.revoked_at.is_some() {
        return Err(ApiErr::new(StatusCode::FORBIDDEN, errors::REVOKED, "this machine's pairing was revoked"));
    }
    Ok(target)
}

pub async fn relay_token(State(state): State<AppState>, ApiJson(cred): ApiJson<RuntimeCredential>) -> Result<Json<RelayToken>, ApiErr> {
    let target = authenticate(&state, &cred).await?;
    let now = util::now();
    let claims = RelayClaims {
        iss: state.public_url().to_string(),
        aud: RELAY_AUDIENCE.to_string(),
        sub: target.id.clone(),
        workspace_id: target.workspace_id.clone(),
        machine_id: target.machine_id.clone(),
        jti: ulid::Ulid::new().to_string(),
        iat: now,
        exp: now + state.config.relay_token_ttl_secs.clamp(1, RELAY_TOKEN_MAX_SECS),
        public_key: target.public_key.clone(),
    };
    let jwt = state.keys.sign(&claims).map_err(ApiErr::internal)?;
    let (ws, m) = (target.workspace_id, target.machine_id);
    state.db(move |s| s.touch_machine(&ws, &m, now)).await?;
    Ok(Json(RelayToken { relay_token: Secret::new(jwt), expires_at: util::rfc3339(claims.exp), relay_endpoint: state.relay_endpoint() }))
}

pub async fn unpair(State(state): State<AppState>, ApiJson(cred): ApiJson<RuntimeCredential>) -> Result<Json<serde_json::Value>, ApiErr> {
    let target = authenticate(&state, &cred).await?;
    let (ws, id) = (target.workspace_id, target.id);
    let actor = crate::roles::Actor::Machine { id: target.machine_id };
    state.revoke(&ws, &id, "unpaired", &actor).await?;
    Ok(Json(serde_json::json!({ "status": "unpaired" })))
}

/// A machine renames itself in this org: the Machines page shows the new name.
pub async fn rename(State(state): State<AppState>, ApiJson(body): ApiJson<RenameMachine>) -> Result<Json<serde_json::Value>, ApiErr> {
    let target = authenticate(&state, &body.credential).await?;
    let name = body.name.trim().to_string();
    util::validate_name("the machine name", &name).map_err(ApiErr::bad_request)?;
    // Nothing that reorders or hides text on the Machines page either.
    if !name.chars().all(vpd_proto::limits::allowed) {
        return Err(ApiErr::bad_request("the machine name must not contain invisible or direction-changing characters"));
    }
    let (ws, id, n) = (target.workspace_id, target.machine_id.clone(), name.clone());
    let actor = crate::roles::Actor::Machine { id: target.machine_id };
    state.db(move |s| s.rename_machine(&ws, &id, &n, &actor, util::now())).await?;
    Ok(Json(serde_json::json!({ "name": name })))
}

pub async fn jwks(State(state): State<AppState>) -> impl axum::response::IntoResponse {
    ([(axum::http::header::CACHE_CONTROL, "public, max-age=300")], Json(state.keys.jwks()))
}

pub async fn health() -> Json<Health> {
    Json(Health { status: "ok".into(), version: env!("CARGO_PKG_VERSION").into() })
}

//! The JSON API (SPEC sections 4 and 5). Every answer, errors included, is JSON.

pub mod pairing;
pub mod releases;
pub mod runtime;

use crate::AppState;
use axum::extract::rejection::JsonRejection;
use axum::extract::{FromRequest, Request};
use axum::http::{header, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use vpd_proto::{paths, ApiError};

pub fn routes() -> Router<AppState> {
    Router::new()
        .route(paths::PAIRING_CODES, post(pairing::create))
        .route("/api/pairing-codes/{code}/status", get(pairing::status))
        .route("/api/pairing-codes/{code}/claim", post(pairing::claim))
        .route("/api/pairing-codes/{code}/cancel", post(pairing::cancel))
        .route(paths::RELAY_TOKEN, post(runtime::relay_token))
        .route(paths::UNPAIR, post(runtime::unpair))
        .route(paths::RENAME, post(runtime::rename))
        .route(paths::JWKS, get(runtime::jwks))
        .route(paths::HEALTH, get(runtime::health))
        .route("/api/releases/latest", get(releases::latest))
        .route("/api/releases/{version}/{os}/{arch}/{file}", get(releases::file))
}

/// An API error: status + `ApiError` body.
#[derive(Debug)]
pub struct ApiErr(pub StatusCode, pub ApiError);

impl ApiErr {
    pub fn new(status: StatusCode, code: &str, message: impl Into<String>) -> ApiErr {
        ApiErr(status, ApiError::new(code, message))
    }
    pub fn bad_request(message: impl Into<String>) -> ApiErr {
        ApiErr::new(StatusCode::BAD_REQUEST, "invalid_request", message)
    }
    pub fn not_found() -> ApiErr {
        ApiErr::new(StatusCode::NOT_FOUND, "not_found", "unknown, expired or already used pairing code")
    }
    pub fn rate_limited() -> ApiErr {
        ApiErr::new(StatusCode::TOO_MANY_REQUESTS, "rate_limited", "too many requests; try again in a minute")
    }
    pub fn internal(e: impl std::fmt::Display) -> ApiErr {
        tracing::error!("internal error: {e}");
        ApiErr::new(StatusCode::INTERNAL_SERVER_ERROR, "internal", "internal server error")
    }
}

impl IntoResponse for ApiErr {
    fn into_response(self) -> Response {
        (self.0, Json(self.1)).into_response()
    }
}

impl From<crate::store::StoreError> for ApiErr {
    fn from(e: crate::store::StoreError) -> Self {
        ApiErr::internal(e)
    }
}

/// `Json<T>` whose rejections are `ApiError` bodies.
pub struct ApiJson<T>(pub T);

impl<T, S> FromRequest<S> for ApiJson<T>
where
    Json<T>: FromRequest<S, Rejection = JsonRejection>,
    S: Send + Sync,
{
    type Rejection = ApiErr;

    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        match Json::<T>::from_request(req, state).await {
            Ok(Json(v)) => Ok(ApiJson(v)),
            Err(rej) => {
                let status = rej.status();
                let code = if status == StatusCode::PAYLOAD_TOO_LARGE { "payload_too_large" } else { "invalid_request" };
                Err(ApiErr::new(status, code, rej.body_text()))
            }
        }
    }
}

/// Turns every non-JSON error answer under `/api/` (unknown route, wrong method, …) into an
/// `ApiError` body, so API clients never see HTML or plain text.
pub async fn json_errors(req: Request, next: Next) -> Response {
    let is_api = req.uri().path().starts_with("/api/") || req.uri().path() == "/api";
    let res = next.run(req).await;
    if !is_api || res.status().is_success() {
        return res;
    }
    let is_json = res.headers().get(header::CONTENT_TYPE).and_then(|v| v.to_str().ok()).is_some_and(|v| v.starts_with("application/json"));
    if is_json {
        return res;
    }
    let status = res.status();
    let code = match status {
        StatusCode::NOT_FOUND => "not_found",
        StatusCode::METHOD_NOT_ALLOWED => "method_not_allowed",
        StatusCode::PAYLOAD_TOO_LARGE => "payload_too_large",
        s if s.is_client_error() => "invalid_request",
        _ => "internal",
    };
    let reason = status.canonical_reason().unwrap_or("error").to_string();
    let mut out = ApiErr::new(status, code, reason).into_response();
    for (k, v) in res.headers() {
        if k == header::ALLOW {
            out.headers_mut().insert(k, v.clone());
        }
    }
    out
}

//! The loopback web UI (SPEC section 11; routes and JSON in docs/WEBUI.md): the pages of
//! `ui/` (embedded), a JSON state, Server-Sent Events for live updates, and the actions.
//! Every request passes [`guard`] first: Host allow-list, Origin, session cookie, CSRF, and
//! the security headers on every answer.

pub mod auth;
pub mod peer;

use crate::backend::Backend;
use crate::error::{ErrorCode, Result};
use crate::suggestions::Answer;
use auth::{Auth, COOKIE};
use axum::extract::{Query, Request, State as AxState};
use axum::http::{header, HeaderMap, HeaderValue, Method, StatusCode};
use axum::middleware::Next;
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::Deserialize;
use std::sync::Arc;
use std::time::Duration;

const INDEX: &str = include_str!("../../../../ui/index.html");
const APP_JS: &str = include_str!("../../../../ui/app.js");
const STYLE: &str = include_str!("../../../../ui/style.css");
const ICON: &str = include_str!("../../../../ui/icon.svg");

const CSP: &str = "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'; \
                   frame-ancestors 'none'; base-uri 'none'; form-action 'self'";

/// The running web UI.
pub struct Ui {
    pub auth: Auth,
    pub port: u16,
}

impl Ui {
    /// A one-time login link that lands on `next` (a path of the UI, e.g. `/#/directories`).
    pub fn login_link(&self, next: Option<&str>) -> String {
        let mut url = format!("http://127.0.0.1:{}/login?t={}", self.port, self.auth.issue_link());
        if let Some(next) = next.filter(|n| safe_next(n)) {
            url.push_str("&next=");
            url.push_str(&url::form_urlencoded::byte_serialize(next.as_bytes()).collect::<String>());
        }
        url
    }
}

/// Records why the UI could not listen on `port`, for `vpd ui` to explain.
fn ui_failed(backend: &Backend, home: &crate::home::Home, port: u16, e: std::io::Error) -> Option<Serving> {
    let why = format!(
        "the web UI cannot listen on 127.0.0.1:{port} ({e}); set another port in {} → daemon.uiPort (or remove it to take any free one) and restart the daemon",
        home.config().display()
    );
    tracing::error!("{why}");
    backend.ui_failed(why);
    None
}

/// What serves the web UI until it is dropped (the daemon's supervisor runs it).
pub type Serving = std::pin::Pin<Box<dyn std::future::Future<Output = ()> + Send>>;

/// Binds the UI's port and tells the backend its address; returns what serves it. A failure
/// (port taken) is logged and kept for `vpd ui` to explain; the daemon runs on without a UI.
pub async fn start(backend: Arc<Backend>) -> Option<Serving> {
    let home = backend.home().clone();
    let (want, chosen) = backend.ui_port();
    let bind = |port: u16| tokio::net::TcpListener::bind(("127.0.0.1", port));
    let listener = match bind(want).await {
        Ok(l) => l,
        // Every user of the machine gets a UI: the default port may be another user's.
        Err(e) if !chosen && e.kind() == std::io::ErrorKind::AddrInUse => match bind(0).await {
            Ok(l) => {
                tracing::info!("port {want} is taken (another user's vpd?); the web UI takes another loopback port");
                l
            }
            Err(e) => return ui_failed(&backend, &home, want, e),
        },
        Err(e) => return ui_failed(&backend, &home, want, e),
    };
    let port = listener.local_addr().map(|a| a.port()).unwrap_or(want);
    let auth = match tokio::task::block_in_place(|| Auth::load(&home, port)) {
        Ok(a) => a,
        Err(e) => {
            tracing::error!(error = %e, "the web UI is off");
            backend.ui_failed(e.message);
            return None;
        }
    };
    let ui = Arc::new(Ui { auth, port });
    let links = ui.clone();
    backend.ui_ready(port, Arc::new(move |next| links.login_link(next)));
    tracing::info!(port, "web UI on http://127.0.0.1:{port}/ (open it with `vpd ui`)");
    let app = router(backend, ui);
    let listener = peer::SameUser { inner: listener, user: crate::os::user::current() };
    Some(Box::pin(async move {
        if let Err(e) = axum::serve(listener, app).await {
            tracing::error!(error = %e, "the web UI stopped");
        }
    }))
}

#[derive(Clone)]
struct Ctx {
    backend: Arc<Backend>,
    ui: Arc<Ui>,
}

fn router(backend: Arc<Backend>, ui: Arc<Ui>) -> Router {
    let ctx = Ctx { backend, ui };
    Router::new()
        .route("/", get(index))
        .route("/login", get(login))
        .route("/app.js", get(|| async { asset("text/javascript; charset=utf-8", APP_JS) }))
        .route("/style.css", get(|| async { asset("text/css; charset=utf-8", STYLE) }))
        .route("/icon.svg", get(|| async { asset("image/svg+xml", ICON) }))
        .route("/api/state", get(api_state))
        .route("/api/events", get(events))
        .route("/api/pair", post(pair))
        .route("/api/pair/cancel", post(pair_cancel))
        .route("/api/pair/confirm", post(pair_confirm))
        .route("/api/unpair", post(unpair))
        .route("/api/reconnect", post(reconnect))
        .route("/api/rename", post(rename))
        .route("/api/bindings/resume", post(resume_bindings))
        .route("/api/unbind", post(unbind))
        .route("/api/folders/complete", get(folders_complete))
        .route("/api/folders/preview", post(folders_preview))
        .route("/api/bind", post(bind))
        .route("/api/suggestions/bind", post(|c: AxState<Ctx>, j: Json<SuggestionBody>| suggestion(c, j, Answer::Bind)))
        .route("/api/suggestions/dismiss", post(|c: AxState<Ctx>, j: Json<SuggestionBody>| suggestion(c, j, Answer::Dismiss)))
        .route("/api/suggestions/decline", post(|c: AxState<Ctx>, j: Json<SuggestionBody>| suggestion(c, j, Answer::Decline)))
        .route("/api/declines/undo", post(undo_decline))
        .route("/api/watched", post(watch_add))
        .route("/api/watched/remove", post(watch_remove))
        .route("/api/logout", post(logout))
        .layer(axum::middleware::from_fn_with_state(ctx.clone(), guard))
        .layer(axum::extract::DefaultBodyLimit::max(64 * 1024))
        .with_state(ctx)
}

fn asset(content_type: &'static str, body: &'static str) -> Response {
    ([(header::CONTENT_TYPE, content_type)], body).into_response()
}

/// An error answer: `{"error": {"code", "message"}}`.
fn fail(status: StatusCode, code: &str, message: impl Into<String>) -> Response {
    (status, Json(serde_json::json!({"error": {"code": code, "message": message.into()}}))).into_response()
}

fn page(status: StatusCode, title: &str, text: &str) -> Response {
    let esc = |s: &str| s.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;");
    let body = format!(
        "<!doctype html><html lang=\"en\"><meta charset=\"utf-8\"><meta name=\"viewport\" content=\"width=device-width\">\
         <title>{t}</title><link rel=\"stylesheet\" href=\"/style.css\"><main class=\"notice\"><h1>{t}</h1><p>{x}</p></main></html>",
        t = esc(title),
        x = esc(text)
    );
    (status, [(header::CONTENT_TYPE, "text/html; charset=utf-8")], body).into_response()
}

/// The cookie's name carries the port: browsers send cookies by host, not port, so two
/// daemons (two homes) on one machine must not overwrite each other's.
fn cookie_name(ui: &Ui) -> String {
    format!("{COOKIE}_{}", ui.port)
}

fn cookie_value(headers: &HeaderMap, name: &str) -> Option<String> {
    vpd_proto::cookie(headers.get_all(header::COOKIE).iter().filter_map(|v| v.to_str().ok()), name).map(str::to_string)
}

/// The session id of the request's cookie, if valid.
fn session(ctx: &Ctx, headers: &HeaderMap) -> Option<String> {
    cookie_value(headers, &cookie_name(&ctx.ui)).and_then(|c| ctx.ui.auth.session(&c))
}

/// Runs before every handler.
async fn guard(AxState(ctx): AxState<Ctx>, req: Request, next: Next) -> Response {
    let mut resp = match check(&ctx, &req) {
        Some(refused) => refused,
        None => next.run(req).await,
    };
    let h = resp.headers_mut();
    h.insert(header::CONTENT_SECURITY_POLICY, HeaderValue::from_static(CSP));
    h.insert(header::X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff"));
    h.insert(header::REFERRER_POLICY, HeaderValue::from_static("no-referrer"));
    h.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    h.insert("cross-origin-opener-policy", HeaderValue::from_static("same-origin"));
    h.insert("cross-origin-resource-policy", HeaderValue::from_static("same-origin"));
    resp
}

/// The refusal for a request that may not pass, if any.
fn check(ctx: &Ctx, req: &Request) -> Option<Response> {
    let headers = req.headers();
    let auth = &ctx.ui.auth;
    let host = headers.get(header::HOST).and_then(|h| h.to_str().ok()).unwrap_or("");
    if !auth.host_ok(host) {
        tracing::warn!(host, "web UI: refused a request for a foreign Host (DNS rebinding?)");
        return Some(page(StatusCode::MISDIRECTED_REQUEST, "Wrong address", "Open the Viewport UI with `vpd ui` or the tray's Open Viewport."));
    }
    let origin = headers.get(header::ORIGIN).map(|o| o.to_str().unwrap_or("invalid"));
    if origin.is_some_and(|o| !auth.origin_ok(o)) {
        tracing::warn!(origin = ?origin, path = %req.uri().path(), "web UI: refused a request from another origin");
        return Some(fail(StatusCode::FORBIDDEN, "foreign_origin", "requests from other sites are refused"));
    }
    if headers.get("sec-fetch-site").is_some_and(|v| v.as_bytes() == b"cross-site") {
        return Some(fail(StatusCode::FORBIDDEN, "foreign_origin", "requests from other sites are refused"));
    }
    if headers.get(header::UPGRADE).is_some() {
        return Some(fail(StatusCode::FORBIDDEN, "no_upgrade", "the Viewport UI serves no WebSocket; live updates are at /api/events"));
    }
    let path = req.uri().path();
    let public = matches!(path, "/" | "/login" | "/app.js" | "/style.css" | "/icon.svg");
    if req.method() == Method::GET || req.method() == Method::HEAD {
        let Some(sid) = session(ctx, headers) else {
            if public {
                return None;
            }
            return Some(fail(StatusCode::UNAUTHORIZED, "login_required", "log in through `vpd ui` or the tray's Open Viewport"));
        };
        // Folder names are the user's own data: even a GET for them needs the page's CSRF
        // token, so no other page (not even one that got past the cookie) can list them.
        if CSRF_GETS.contains(&path) && !auth.csrf_ok(&sid, headers.get("x-csrf-token").and_then(|v| v.to_str().ok()).unwrap_or("")) {
            return Some(fail(StatusCode::FORBIDDEN, "csrf", "missing or wrong CSRF token; reload the page"));
        }
        return None;
    }
    if req.method() != Method::POST {
        return Some(fail(StatusCode::METHOD_NOT_ALLOWED, "method", "only GET and POST are served"));
    }
    if origin.is_none() {
        return Some(fail(StatusCode::FORBIDDEN, "origin_required", "changes need an Origin header from the Viewport UI"));
    }
    let Some(sid) = session(ctx, headers) else {
        return Some(fail(StatusCode::UNAUTHORIZED, "login_required", "your UI session expired: run `vpd ui` or use the tray's Open Viewport"));
    };
    let csrf = headers.get("x-csrf-token").and_then(|v| v.to_str().ok()).unwrap_or("");
    if !auth.csrf_ok(&sid, csrf) {
        return Some(fail(StatusCode::FORBIDDEN, "csrf", "missing or wrong CSRF token; reload the page"));
    }
    None
}

/// GET routes that answer with the user's data beyond the state and so need the CSRF header.
const CSRF_GETS: &[&str] = &["/api/folders/complete"];

/// `next` must stay on this site: a path, not `//host` or `/\\host`.
fn safe_next(next: &str) -> bool {
    next.starts_with('/') && !next.starts_with("//") && !next.contains('\\') && !next.chars().any(char::is_control)
}

#[derive(Deserialize)]
struct LoginQuery {
    #[serde(default)]
    t: String,
    #[serde(default)]
    next: Option<String>,
}

async fn login(AxState(ctx): AxState<Ctx>, method: Method, Query(q): Query<LoginQuery>) -> Response {
    // A HEAD (a link preview, a prefetch) must not use the link up.
    if method == Method::HEAD {
        return StatusCode::OK.into_response();
    }
    if !ctx.ui.auth.redeem(&q.t) {
        return page(
            StatusCode::FORBIDDEN,
            "This login link was used or has expired",
            "Login links work once, for two minutes. Run `vpd ui` again, or use the tray's Open Viewport.",
        );
    }
    let cookie =
        format!("{}={}; Path=/; HttpOnly; SameSite=Strict; Max-Age={}", cookie_name(&ctx.ui), ctx.ui.auth.new_session(), auth::SESSION_TTL_SECS);
    let to = q.next.filter(|n| safe_next(n)).unwrap_or_else(|| "/".into());
    let mut resp = (StatusCode::SEE_OTHER, [(header::LOCATION, to)]).into_response();
    resp.headers_mut().insert(header::SET_COOKIE, HeaderValue::from_str(&cookie).expect("a valid cookie"));
    resp
}

async fn index(AxState(ctx): AxState<Ctx>, headers: HeaderMap) -> Response {
    match session(&ctx, &headers) {
        Some(sid) => {
            let html = INDEX.replace("{{CSRF}}", &ctx.ui.auth.csrf(&sid));
            ([(header::CONTENT_TYPE, "text/html; charset=utf-8")], html).into_response()
        }
        None => {
            page(StatusCode::UNAUTHORIZED, "Log in to Viewport", "This page needs a login link: run `vpd ui`, or choose Open Viewport in the tray.")
        }
    }
}

async fn api_state(AxState(ctx): AxState<Ctx>) -> Response {
    Json(ctx.backend.ui_state().await).into_response()
}

/// `event: state` with the whole state, at once and on every change (checked when the
/// daemon says something changed, and once a second for relay states).
async fn events(AxState(ctx): AxState<Ctx>) -> Response {
    let changed = ctx.backend.changes();
    let stream = futures_util::stream::unfold((ctx.backend.clone(), changed, String::new()), |(backend, mut changed, last)| async move {
        loop {
            let now = backend.ui_state().await.to_string();
            if now != last {
                let ev = Event::default().event("state").data(now.clone());
                return Some((Ok::<_, std::convert::Infallible>(ev), (backend, changed, now)));
            }
            tokio::select! {
                _ = changed.changed() => {}
                _ = tokio::time::sleep(Duration::from_secs(1)) => {}
            }
        }
    });
    Sse::new(stream).keep_alive(KeepAlive::new().interval(Duration::from_secs(20))).into_response()
}

fn answer<T: serde::Serialize>(r: Result<T>) -> Response {
    match r {
        Ok(v) => Json(v).into_response(),
        Err(e) => {
            let status = match e.code {
                ErrorCode::InvalidArgument | ErrorCode::NotBound | ErrorCode::BindingExists | ErrorCode::BindingUntrusted => StatusCode::BAD_REQUEST,
                ErrorCode::NotPaired => StatusCode::NOT_FOUND,
                ErrorCode::AlreadyPaired | ErrorCode::Busy => StatusCode::CONFLICT,
                ErrorCode::UiStarting => StatusCode::SERVICE_UNAVAILABLE,
                ErrorCode::ServerUnreachable | ErrorCode::BadServerResponse => StatusCode::BAD_GATEWAY,
                _ => StatusCode::INTERNAL_SERVER_ERROR,
            };
            fail(status, &e.code.to_string(), e.message)
        }
    }
}

#[derive(Deserialize, Default)]
#[serde(rename_all = "camelCase")]
struct PairBody {
    #[serde(default)]
    server: Option<String>,
    #[serde(default)]
    org: Option<String>,
    /// The machine's name in the org (default: the host name).
    #[serde(default)]
    name: Option<String>,
}

async fn pair(AxState(ctx): AxState<Ctx>, Json(b): Json<PairBody>) -> Response {
    let name = b.name.map(|n| n.trim().to_string()).filter(|n| !n.is_empty());
    let params = crate::api::protocol::PairParams { server: b.server, org: b.org, name, ..Default::default() };
    answer(ctx.backend.pair_job_start(params).map(|v| serde_json::json!({"pairing": v})))
}

async fn pair_cancel(AxState(ctx): AxState<Ctx>) -> Response {
    answer(ctx.backend.pair_job_cancel().map(|_| serde_json::json!({"ok": true})))
}

#[derive(Deserialize)]
struct ConfirmBody {
    replace: bool,
}

async fn pair_confirm(AxState(ctx): AxState<Ctx>, Json(b): Json<ConfirmBody>) -> Response {
    answer(ctx.backend.pair_job_confirm(b.replace).map(|_| serde_json::json!({"ok": true})))
}

#[derive(Deserialize)]
struct OrgBody {
    #[serde(default)]
    org: Option<String>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct UnpairBody {
    #[serde(default)]
    org: Option<String>,
    /// The dialog's "Also remove its directory bindings" (SPEC A3: else they stay, inert).
    #[serde(default)]
    forget_bindings: bool,
}

async fn unpair(AxState(ctx): AxState<Ctx>, Json(b): Json<UnpairBody>) -> Response {
    let Some(org) = b.org else { return fail(StatusCode::BAD_REQUEST, "invalid_argument", "say which org to unpair") };
    let after = if b.forget_bindings { crate::backend::AfterUnpair::Forget } else { crate::backend::AfterUnpair::Suspend };
    answer(ctx.backend.unpair(&org, after).await)
}

#[derive(Deserialize)]
struct RenameBody {
    org: String,
    name: String,
}

async fn rename(AxState(ctx): AxState<Ctx>, Json(b): Json<RenameBody>) -> Response {
    answer(ctx.backend.rename(Some(b.org), b.name).await)
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct ResumeBody {
    pairing_id: String,
}

async fn resume_bindings(AxState(ctx): AxState<Ctx>, Json(b): Json<ResumeBody>) -> Response {
    answer(ctx.backend.resume_bindings(b.pairing_id).await.map(|r| serde_json::json!({"resumed": r})))
}

async fn reconnect(AxState(ctx): AxState<Ctx>, Json(b): Json<OrgBody>) -> Response {
    answer(ctx.backend.reconnect(b.org.as_deref()).map(|names| serde_json::json!({"reconnecting": names})))
}

#[derive(Deserialize)]
struct DirBody {
    directory: String,
}

/// Only a directory bound here (listed in `directories.json`) can be unbound from the UI.
async fn unbind(AxState(ctx): AxState<Ctx>, Json(b): Json<DirBody>) -> Response {
    answer(ctx.backend.unbind_recorded(b.directory).await)
}

#[derive(Deserialize)]
struct CompleteQuery {
    #[serde(default)]
    path: String,
}

async fn folders_complete(AxState(ctx): AxState<Ctx>, Query(q): Query<CompleteQuery>) -> Response {
    answer(ctx.backend.complete_folder(q.path).await.map(|c| serde_json::json!({"completions": c})))
}

async fn folders_preview(AxState(ctx): AxState<Ctx>, Json(b): Json<DirBody>) -> Response {
    answer(ctx.backend.preview_folder(b.directory).await)
}

#[derive(Deserialize)]
struct BindBody {
    directory: String,
    #[serde(default)]
    org: Option<String>,
    #[serde(default)]
    recursive: bool,
    /// The person confirmed replacing a binding to another org.
    #[serde(default)]
    replace: bool,
}

async fn bind(AxState(ctx): AxState<Ctx>, Json(b): Json<BindBody>) -> Response {
    answer(ctx.backend.bind_folder(b.directory, b.org.filter(|o| !o.is_empty()), b.recursive, b.replace).await)
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct SuggestionBody {
    directory: String,
    org_id: String,
    /// The suggestion's kind as shown (`bind`, `trust`, `pair`): refused if it changed since.
    #[serde(default)]
    kind: Option<crate::states::SuggestionKind>,
}

async fn suggestion(AxState(ctx): AxState<Ctx>, Json(b): Json<SuggestionBody>, a: Answer) -> Response {
    answer(ctx.backend.answer_suggestion(&b.directory, &b.org_id, b.kind, a).await)
}

#[derive(Deserialize)]
struct PathBody {
    path: String,
}

async fn undo_decline(AxState(ctx): AxState<Ctx>, Json(b): Json<SuggestionBody>) -> Response {
    answer(ctx.backend.undo_decline(b.directory, b.org_id).await.map(|had| serde_json::json!({"undone": had})))
}

async fn watch_add(AxState(ctx): AxState<Ctx>, Json(b): Json<PathBody>) -> Response {
    answer(ctx.backend.watch_add(b.path).await)
}

async fn watch_remove(AxState(ctx): AxState<Ctx>, Json(b): Json<PathBody>) -> Response {
    answer(ctx.backend.watch_remove(b.path).await)
}

async fn logout(AxState(ctx): AxState<Ctx>, headers: HeaderMap) -> Response {
    if let Some(sid) = session(&ctx, &headers) {
        ctx.ui.auth.end_session(&sid);
    }
    let mut resp = Json(serde_json::json!({"ok": true})).into_response();
    let clear = format!("{}=; Path=/; HttpOnly; SameSite=Strict; Max-Age=0", cookie_name(&ctx.ui));
    resp.headers_mut().insert(header::SET_COOKIE, HeaderValue::from_str(&clear).expect("a valid cookie"));
    resp
}

#[cfg(test)]
mod tests {
    use super::safe_next;

    #[test]
    fn next_stays_on_this_site() {
        for ok in ["/", "/#/directories", "/#/directories?suggest=%2Fhome%2Fu"] {
            assert!(safe_next(ok), "{ok}");
        }
        for bad in ["//evil.example", "/\\evil.example", "https://evil.example", "evil", "", "/\n", "javascript:alert(1)"] {
            assert!(!safe_next(bad), "{bad:?}");
        }
    }
}

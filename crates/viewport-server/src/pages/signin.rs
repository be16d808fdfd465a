//! `/signin`, `/signout` and the first-run `/setup` page.

use super::layout::page;
use super::{safe_next, see_other, PageErr, PageResult};
use crate::auth::{self, MaybeSession};
use crate::store::StoreError;
use crate::{util, AppState};
use axum::extract::{ConnectInfo, Form, Query, State};
use axum::http::header::SET_COOKIE;
use axum::http::{HeaderMap, StatusCode};
use axum::response::IntoResponse;
use maud::html;
use serde::Deserialize;
use std::net::SocketAddr;

#[derive(Deserialize)]
pub struct NextQuery {
    next: Option<String>,
}

#[derive(Deserialize)]
pub struct SigninForm {
    #[serde(default)]
    csrf: String,
    #[serde(default)]
    email: String,
    #[serde(default)]
    password: String,
    next: Option<String>,
}

fn signin_page(csrf: &str, next: &str, email: &str, error: Option<&str>) -> maud::Markup {
    page(
        "Sign in",
        None,
        html! {
            h1 { "Sign in" }
            div.card {
                @if let Some(e) = error { p.error { (e) } }
                form method="post" action="/signin" {
                    input type="hidden" name="csrf" value=(csrf);
                    input type="hidden" name="next" value=(next);
                    label for="email" { "Email" }
                    input #email type="email" name="email" value=(email) required autofocus autocomplete="username";
                    label for="password" { "Password" }
                    input #password type="password" name="password" required autocomplete="current-password";
                    div.actions { button type="submit" { "Sign in" } }
                }
            }
        },
    )
}

pub async fn signin_form(State(state): State<AppState>, headers: HeaderMap, session: MaybeSession, Query(q): Query<NextQuery>) -> PageResult {
    let next = safe_next(q.next.as_deref());
    if session.0.is_some() {
        return Ok(see_other(&next));
    }
    let (csrf, set) = auth::anon_csrf(&headers, state.secure_cookies());
    let mut res = signin_page(&csrf, &next, "", None).into_response();
    if let Some((k, v)) = set {
        res.headers_mut().append(k, v);
    }
    Ok(res)
}

pub async fn signin_submit(
    State(state): State<AppState>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    Form(f): Form<SigninForm>,
) -> PageResult {
    if !auth::anon_csrf_ok(&headers, &f.csrf) {
        return Err(PageErr::csrf());
    }
    let next = safe_next(f.next.as_deref());
    let email = util::normalize_email(&f.email).unwrap_or_else(|_| f.email.trim().to_lowercase());
    let client = state.client(peer.ip(), &headers);
    let e = email.clone();
    let found = state.db(move |s| s.user_by_email(&e)).await?;
    let known = found.as_ref().is_some_and(|(u, _)| auth::known_device(&state, &headers, &u.id));
    if let Some(why) = state.login_blocked(&email, client, known).await {
        tracing::info!(?why, "sign-in slowed down");
        let body = signin_page(&f.csrf, &next, &email, Some("Too many failed sign-ins. Wait a minute and try again."));
        return Ok((StatusCode::TOO_MANY_REQUESTS, body).into_response());
    }
    let password = f.password;
    let (user, hash) = match found {
        Some((u, h)) => (Some(u), Some(h)),
        None => (None, None),
    };
    let ok = tokio::task::spawn_blocking(move || auth::verify_password(&password, hash.as_ref().map(|h| h.expose()))).await.unwrap_or(false);
    match user {
        Some(user) if ok => {
            let known_cookie = auth::known_device_cookie(&state, &user.id);
            let cookie = auth::start_session(&state, user.id).await.map_err(|e| StoreError::Conflict(e.to_string()))?;
            let mut res = see_other(&next);
            res.headers_mut().append(SET_COOKIE, cookie);
            res.headers_mut().append(SET_COOKIE, known_cookie);
            Ok(res)
        }
        _ => {
            state.login_failed(&email, client).await;
            let body = signin_page(&f.csrf, &next, &email, Some("Wrong email or password."));
            Ok((StatusCode::UNAUTHORIZED, body).into_response())
        }
    }
}

#[derive(Deserialize)]
pub struct CsrfOnly {
    #[serde(default)]
    csrf: String,
}

pub async fn signout(State(state): State<AppState>, session: MaybeSession, Form(f): Form<CsrfOnly>) -> PageResult {
    let Some(s) = session.0 else { return Ok(see_other("/signin")) };
    if !s.csrf_ok(&f.csrf) {
        return Err(PageErr::csrf());
    }
    let hash = s.token_hash();
    state.db(move |st| st.delete_web_session(&hash)).await?;
    let mut res = see_other("/signin");
    res.headers_mut().append(SET_COOKIE, auth::set_cookie(auth::SESSION_COOKIE, "", 0, state.secure_cookies()));
    Ok(res)
}

#[derive(Deserialize)]
pub struct SetupQuery {
    token: Option<String>,
}

#[derive(Deserialize, Default)]
pub struct SetupForm {
    #[serde(default)]
    csrf: String,
    #[serde(default)]
    token: String,
    #[serde(default)]
    email: String,
    #[serde(default)]
    password: String,
    #[serde(default)]
    org_name: String,
    #[serde(default)]
    org_slug: String,
}

fn setup_page(csrf: &str, f: &SetupForm, error: Option<&str>) -> maud::Markup {
    page(
        "Set up Viewport",
        None,
        html! {
            h1 { "Set up Viewport" }
            div.card {
                p.muted { "Create the first account and the first workspace. You can add more with " code { "viewport-server admin" } " later." }
                @if let Some(e) = error { p.error { (e) } }
                form method="post" action="/setup" {
                    input type="hidden" name="csrf" value=(csrf);
                    input type="hidden" name="token" value=(f.token);
                    label for="email" { "Your email" }
                    input #email type="email" name="email" value=(f.email) required autocomplete="username";
                    label for="password" { "Password (at least 8 characters)" }
                    input #password type="password" name="password" required minlength="8" autocomplete="new-password";
                    label for="org_name" { "Workspace name" }
                    input #org_name type="text" name="org_name" value=(f.org_name) required placeholder="Acme Engineering";
                    label for="org_slug" { "Workspace slug" }
                    input #org_slug type="text" name="org_slug" value=(f.org_slug) required placeholder="acme" pattern="[a-z0-9][a-z0-9\\-]*" title="Lower-case letters, digits and dashes, starting with a letter or digit";
                    div.actions { button type="submit" { "Create" } }
                }
            }
        },
    )
}

fn setup_unavailable() -> PageErr {
    PageErr::new(
        StatusCode::NOT_FOUND,
        "Setup is not available",
        "Setup is done, or this link is not the one the server printed at start. Sign in, or create users with `viewport-server admin user create`.",
    )
}

pub async fn setup_form(State(state): State<AppState>, headers: HeaderMap, Query(q): Query<SetupQuery>) -> PageResult {
    let token = q.token.unwrap_or_default();
    if !state.setup_token_matches(&token) || state.db(|s| s.user_count()).await? > 0 {
        return Err(setup_unavailable());
    }
    let (csrf, set) = auth::anon_csrf(&headers, state.secure_cookies());
    let form = SetupForm { token, ..Default::default() };
    let mut res = setup_page(&csrf, &form, None).into_response();
    if let Some((k, v)) = set {
        res.headers_mut().append(k, v);
    }
    Ok(res)
}

pub async fn setup_submit(State(state): State<AppState>, headers: HeaderMap, Form(f): Form<SetupForm>) -> PageResult {
    if !auth::anon_csrf_ok(&headers, &f.csrf) {
        return Err(PageErr::csrf());
    }
    if !state.setup_token_matches(&f.token) {
        return Err(setup_unavailable());
    }
    let email = util::normalize_email(&f.email);
    let slug = f.org_slug.trim().to_string();
    let name = f.org_name.trim().to_string();
    let problem = email
        .as_ref()
        .err()
        .cloned()
        .or_else(|| util::validate_password(&f.password).err())
        .or_else(|| util::validate_name("the workspace name", &name).err())
        .or_else(|| util::validate_slug(&slug).err());
    if let Some(p) = problem {
        return Ok((StatusCode::BAD_REQUEST, setup_page(&f.csrf, &f, Some(&p))).into_response());
    }
    let email = email.unwrap_or_default();
    let password = f.password.clone();
    let hash = tokio::task::spawn_blocking(move || auth::hash_password(&password))
        .await
        .map_err(|e| StoreError::Conflict(e.to_string()))?
        .map_err(|e| StoreError::Conflict(e.to_string()))?;
    let now = util::now();
    let (e, n, s) = (email.clone(), name.clone(), slug.clone());
    let (user, ws) = match state.db(move |st| st.create_first_admin(&e, &hash, &n, &s, now)).await {
        Ok(v) => v,
        Err(StoreError::Conflict(_)) => return Err(setup_unavailable()),
        Err(err) => return Err(err.into()),
    };
    state.end_setup();
    tracing::info!(workspace = %ws.id, "first user and workspace created through /setup");
    let cookie = auth::start_session(&state, user.id).await.map_err(|e| StoreError::Conflict(e.to_string()))?;
    let mut res = see_other("/");
    res.headers_mut().append(SET_COOKIE, cookie);
    Ok(res)
}

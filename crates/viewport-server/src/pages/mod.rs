//! Server-rendered pages (no JavaScript, except the session page's same-origin live-update
//! script, which the page does not need to render). Every POST form carries a CSRF token
//! (`name="csrf"`); the origin check lives in the router middleware.

pub mod add_machine;
pub mod audit;
pub mod home;
pub mod layout;
pub mod machines;
pub mod members;
pub mod pair;
pub mod sessions;
pub mod signin;

use crate::auth::{MaybeSession, Session};
use crate::roles::Role;
use crate::store::{StoreError, Workspace};
use crate::{util, AppState};
use axum::http::{StatusCode, Uri};
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use axum::Router;

pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/", get(home::home))
        .route("/style.css", get(layout::stylesheet))
        .route("/favicon.ico", get(layout::favicon))
        .route("/setup", get(signin::setup_form).post(signin::setup_submit))
        .route("/signin", get(signin::signin_form).post(signin::signin_submit))
        .route("/signout", post(signin::signout))
        .route("/pair", get(pair::show).post(pair::decide))
        .route("/orgs/{slug}", get(home::org_root))
        .route("/orgs/{slug}/machines", get(machines::list))
        .route("/orgs/{slug}/machines/revoke", post(machines::revoke))
        .route("/orgs/{slug}/members", get(members::list))
        .route("/orgs/{slug}/members/add", post(members::add))
        .route("/orgs/{slug}/members/remove", post(members::remove))
        .route("/orgs/{slug}/members/role", post(members::set_role))
        .route("/orgs/{slug}/audit", get(audit::list))
        .route("/orgs/{slug}/add-machine", get(add_machine::show).post(add_machine::mint))
        .route("/orgs/{slug}/sessions", get(sessions::list))
        .route("/orgs/{slug}/sessions/{id}", get(sessions::show))
        .route("/orgs/{slug}/sessions/{id}/frames", get(sessions::frames))
        .route("/session.js", get(sessions::script))
        .fallback(not_found)
}

/// A page answer that is not the happy path (redirect or error page).
pub struct PageErr(Box<Response>);

impl IntoResponse for PageErr {
    fn into_response(self) -> Response {
        *self.0
    }
}

impl From<StoreError> for PageErr {
    fn from(e: StoreError) -> Self {
        tracing::error!("page error: {e}");
        PageErr::new(StatusCode::INTERNAL_SERVER_ERROR, "Something went wrong", "The server could not complete this request. Try again.")
    }
}

impl PageErr {
    pub fn new(status: StatusCode, title: &str, message: &str) -> PageErr {
        PageErr(Box::new(layout::error_page(status, title, message)))
    }
    pub fn not_found() -> PageErr {
        PageErr::new(StatusCode::NOT_FOUND, "Not found", "There is nothing here, or you do not have access to it.")
    }
    pub fn set_header(&mut self, name: axum::http::HeaderName, value: axum::http::HeaderValue) {
        self.0.headers_mut().insert(name, value);
    }
    pub fn csrf() -> PageErr {
        PageErr::new(
            StatusCode::FORBIDDEN,
            "Request refused",
            "The form's security token was missing or stale. Go back, reload the page and try again.",
        )
    }
}

pub type PageResult = Result<Response, PageErr>;

async fn not_found() -> PageErr {
    PageErr::not_found()
}

/// The session, or a redirect to the sign-in page that comes back to `uri`.
pub fn require_session(s: MaybeSession, uri: &Uri) -> Result<Session, PageErr> {
    match s.0 {
        Some(s) => Ok(s),
        None => {
            let next = uri.path_and_query().map(|p| p.as_str()).unwrap_or("/");
            Err(PageErr(Box::new(Redirect::to(&format!("/signin?next={}", util::url_encode(next))).into_response())))
        }
    }
}

/// Only a local path may be a redirect target (no `//host`, no scheme, no backslash tricks).
pub fn safe_next(next: Option<&str>) -> String {
    match next {
        Some(n) if n.starts_with('/') && !n.starts_with("//") && !n.contains('\\') && !n.chars().any(char::is_control) && n.len() < 2048 => {
            n.to_string()
        }
        _ => "/".to_string(),
    }
}

/// The org named by `slug`, when the signed-in user is a member; 404 otherwise (a non-member
/// cannot tell an org exists).
pub async fn member_org(state: &AppState, session: &Session, slug: &str) -> Result<Workspace, PageErr> {
    Ok(member_org_role(state, session, slug).await?.0)
}

/// [`member_org`] with the user's role there.
pub async fn member_org_role(state: &AppState, session: &Session, slug: &str) -> Result<(Workspace, Role), PageErr> {
    let (u, s) = (session.user.id.clone(), slug.to_string());
    state.db(move |st| st.member_workspace_by_slug(&u, &s)).await?.ok_or_else(PageErr::not_found)
}

/// A signed-in form post to one of the org's pages: the session (or a sign-in redirect), its
/// CSRF token checked, the org (404 for a non-member) and the poster's role there.
pub async fn org_form(state: &AppState, session: MaybeSession, uri: &Uri, slug: &str, csrf: &str) -> Result<(Session, Workspace, Role), PageErr> {
    let s = require_session(session, uri)?;
    if !s.csrf_ok(csrf) {
        return Err(PageErr::csrf());
    }
    let (ws, role) = member_org_role(state, &s, slug).await?;
    Ok((s, ws, role))
}

/// The page for a change the user's role does not allow (or that would leave no owner).
pub fn refused_change(e: StoreError) -> PageErr {
    match e {
        StoreError::Forbidden(m) => PageErr::new(StatusCode::FORBIDDEN, "Not allowed", &format!("{m}. Ask an admin or an owner of this workspace.")),
        StoreError::Conflict(m) => PageErr::new(StatusCode::CONFLICT, "Nothing changed", &m),
        StoreError::NotFound(_) => PageErr::not_found(),
        other => other.into(),
    }
}

/// 303 See Other.
pub fn see_other(to: &str) -> Response {
    Redirect::to(to).into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn next_must_be_local() {
        assert_eq!(safe_next(Some("/pair?code=BCDF-GHJK")), "/pair?code=BCDF-GHJK");
        for bad in ["//evil.example", "https://evil.example", "/\\evil", "evil", ""] {
            assert_eq!(safe_next(Some(bad)), "/", "{bad}");
        }
        assert_eq!(safe_next(None), "/");
    }
}

//! `/orgs/{slug}/members`: list, add an existing user, remove (revokes their pairings there).

use super::layout::{org_tabs, page};
use super::{member_org, require_session, see_other, PageErr, PageResult};
use crate::auth::MaybeSession;
use crate::store::StoreError;
use crate::{util, AppState};
use axum::extract::{Form, Path, State};
use axum::http::{StatusCode, Uri};
use axum::response::IntoResponse;
use maud::html;
use serde::Deserialize;

pub async fn list(State(state): State<AppState>, session: MaybeSession, uri: Uri, Path(slug): Path<String>) -> PageResult {
    let s = require_session(session, &uri)?;
    let ws = member_org(&state, &s, &slug).await?;
    let wid = ws.id.clone();
    let members = state.db(move |st| st.members(&wid)).await?;
    Ok(page(
        &format!("Members · {}", ws.name),
        Some(&s),
        html! {
            h1 { (ws.name) }
            (org_tabs(&ws.slug, "members"))
            table {
                thead { tr { th { "Email" } th { "Member since" } th {} } }
                tbody {
                    @for m in &members {
                        tr {
                            td data-label="Email" { (m.email) @if m.user_id == s.user.id { span.muted { " (you)" } } }
                            td data-label="Member since" { (util::human_time(m.joined_at)) }
                            td {
                                form method="post" action=(format!("/orgs/{}/members/remove", ws.slug)) {
                                    input type="hidden" name="csrf" value=(s.csrf());
                                    input type="hidden" name="user_id" value=(m.user_id);
                                    button.danger type="submit" { "Remove" }
                                }
                            }
                        }
                    }
                }
            }
            p.muted { "Removing a member revokes every machine they paired in this workspace (only here)." }
            div.card {
                form method="post" action=(format!("/orgs/{}/members/add", ws.slug)) {
                    input type="hidden" name="csrf" value=(s.csrf());
                    label for="email" { "Add an existing user by email" }
                    input #email type="email" name="email" required;
                    div.actions { button type="submit" { "Add member" } }
                }
            }
        },
    )
    .into_response())
}

#[derive(Deserialize)]
pub struct AddForm {
    #[serde(default)]
    csrf: String,
    #[serde(default)]
    email: String,
}

pub async fn add(State(state): State<AppState>, session: MaybeSession, uri: Uri, Path(slug): Path<String>, Form(f): Form<AddForm>) -> PageResult {
    let s = require_session(session, &uri)?;
    if !s.csrf_ok(&f.csrf) {
        return Err(PageErr::csrf());
    }
    let ws = member_org(&state, &s, &slug).await?;
    let email = util::normalize_email(&f.email).map_err(|m| PageErr::new(StatusCode::BAD_REQUEST, "Invalid email", &m))?;
    let e = email.clone();
    let Some((user, _)) = state.db(move |st| st.user_by_email(&e)).await? else {
        return Err(PageErr::new(
            StatusCode::BAD_REQUEST,
            "No such user",
            &format!("There is no account for {email}. An admin can create it with `viewport-server admin user create {email} --password-stdin`."),
        ));
    };
    let wid = ws.id.clone();
    state.db(move |st| st.add_member(&wid, &user.id, util::now())).await?;
    Ok(see_other(&format!("/orgs/{}/members", ws.slug)))
}

#[derive(Deserialize)]
pub struct RemoveForm {
    #[serde(default)]
    csrf: String,
    #[serde(default)]
    user_id: String,
}

pub async fn remove(
    State(state): State<AppState>,
    session: MaybeSession,
    uri: Uri,
    Path(slug): Path<String>,
    Form(f): Form<RemoveForm>,
) -> PageResult {
    let s = require_session(session, &uri)?;
    if !s.csrf_ok(&f.csrf) {
        return Err(PageErr::csrf());
    }
    let ws = member_org(&state, &s, &slug).await?;
    let wid = ws.id.clone();
    let uid = f.user_id.clone();
    match state.remove_member(&wid, &uid).await {
        Ok(n) => tracing::info!(workspace = %ws.id, revoked = n, "member removed"),
        Err(StoreError::NotFound(_)) => return Err(PageErr::not_found()),
        Err(e) => return Err(e.into()),
    }
    if f.user_id == s.user.id {
        return Ok(see_other("/"));
    }
    Ok(see_other(&format!("/orgs/{}/members", ws.slug)))
}

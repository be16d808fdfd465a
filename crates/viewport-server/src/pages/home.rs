//! `/`: the signed-in user's workspaces.

use super::layout::page;
use super::{member_org, require_session, see_other, PageResult};
use crate::auth::MaybeSession;
use crate::AppState;
use axum::extract::{Path, State};
use axum::http::Uri;
use axum::response::IntoResponse;
use maud::html;

pub async fn home(State(state): State<AppState>, session: MaybeSession, uri: Uri) -> PageResult {
    let s = require_session(session, &uri)?;
    let uid = s.user.id.clone();
    let orgs = state.db(move |st| st.workspaces_of_user(&uid)).await?;
    Ok(page(
        "Workspaces",
        Some(&s),
        html! {
            h1 { "Your workspaces" }
            @if orgs.is_empty() {
                div.card { p { "You are not a member of any workspace yet. Ask an admin to add you." } }
            } @else {
                table {
                    thead { tr { th { "Name" } th { "Slug" } th { "Workspace id" } th {} } }
                    tbody {
                        @for o in &orgs {
                            tr {
                                td data-label="Name" { a href=(format!("/orgs/{}/machines", o.slug)) { (o.name) } }
                                td.mono data-label="Slug" { (o.slug) }
                                td.mono data-label="Workspace id" { (o.id) }
                                td {
                                    a href=(format!("/orgs/{}/sessions", o.slug)) { "Sessions" } " · "
                                    a href=(format!("/orgs/{}/members", o.slug)) { "Members" } " · "
                                    a href=(format!("/orgs/{}/add-machine", o.slug)) { "Add machine" }
                                }
                            }
                        }
                    }
                }
            }
            p.muted { "To pair a machine, run " code { "vpd pair" } " on it and open the link it prints." }
        },
    )
    .into_response())
}

pub async fn org_root(State(state): State<AppState>, session: MaybeSession, uri: Uri, Path(slug): Path<String>) -> PageResult {
    let s = require_session(session, &uri)?;
    let ws = member_org(&state, &s, &slug).await?;
    Ok(see_other(&format!("/orgs/{}/machines", ws.slug)))
}

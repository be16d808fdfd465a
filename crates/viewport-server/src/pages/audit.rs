//! `/orgs/{slug}/audit`: who did what and when in the workspace (admins and owners).

use super::layout::{org_tabs, page};
use super::{member_org_role, require_session, PageErr, PageResult};
use crate::auth::MaybeSession;
use crate::roles::{self, Cap};
use crate::{util, AppState};
use axum::extract::{Path, State};
use axum::http::{StatusCode, Uri};
use axum::response::IntoResponse;
use maud::html;

/// Most entries the page shows (the newest); `admin audit list` prints them all.
const PAGE_ENTRIES: usize = 500;

pub async fn list(State(state): State<AppState>, session: MaybeSession, uri: Uri, Path(slug): Path<String>) -> PageResult {
    let s = require_session(session, &uri)?;
    let (ws, role) = member_org_role(&state, &s, &slug).await?;
    if !roles::may(role, Cap::ViewAudit) {
        return Err(PageErr::new(StatusCode::FORBIDDEN, "Not allowed", "Only admins and owners of this workspace can read its audit log."));
    }
    let wid = ws.id.clone();
    let entries = state.db(move |st| st.audit_log(&wid, PAGE_ENTRIES)).await?;
    Ok(page(&format!("Audit · {}", ws.name), Some(&s), html! {
        h1 { (ws.name) }
        (org_tabs(&ws.slug, "audit", role))
        @if entries.is_empty() {
            div.card { p { "Nothing has happened here yet." } }
        } @else {
            table {
                thead { tr { th { "When" } th { "Who" } th { "What" } th { "Subject" } th { "Detail" } } }
                tbody {
                    @for e in &entries {
                        tr {
                            td data-label="When" { time datetime=(util::rfc3339(e.at)) { (util::human_time(e.at)) } }
                            td data-label="Who" { (e.actor) }
                            td.mono data-label="What" { (e.action) }
                            td data-label="Subject" { (e.subject) }
                            td data-label="Detail" { (e.detail) }
                        }
                    }
                }
            }
            @if entries.len() == PAGE_ENTRIES {
                p.muted { "Only the newest " (PAGE_ENTRIES) " entries are shown; " code { "viewport-server admin audit list --org " (ws.slug) } " prints all of them." }
            }
        }
    })
    .into_response())
}

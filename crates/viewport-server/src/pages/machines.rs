//! `/orgs/{slug}/machines`: the org's paired machines, with Revoke.

use super::layout::{org_tabs, page};
use super::{member_org_role, org_form, refused_change, require_session, see_other, PageResult};
use crate::auth::MaybeSession;
use crate::roles;
use crate::{util, AppState};
use axum::extract::{Form, Path, State};
use axum::http::Uri;
use axum::response::IntoResponse;
use maud::html;
use serde::Deserialize;

pub async fn list(State(state): State<AppState>, session: MaybeSession, uri: Uri, Path(slug): Path<String>) -> PageResult {
    let s = require_session(session, &uri)?;
    let (ws, role) = member_org_role(&state, &s, &slug).await?;
    let wid = ws.id.clone();
    let rows = state.db(move |st| st.machines(&wid)).await?;
    let online = state.online(rows.iter().map(|m| m.runtime_target_id.clone()).collect()).await;
    Ok(page(&format!("Machines · {}", ws.name), Some(&s), html! {
        h1 { (ws.name) }
        (org_tabs(&ws.slug, "machines", role))
        @if rows.is_empty() {
            div.card { p { "No machines yet. Run " code { "vpd pair --org " (ws.slug) } " on a machine, or use " a href=(format!("/orgs/{}/add-machine", ws.slug)) { "Add machine" } "." } }
        } @else {
            table {
                thead { tr { th { "Name" } th { "Machine id" } th { "Paired by" } th { "Paired at" } th { "Connection" } th { "Last seen" } th { "State" } th {} } }
                tbody {
                    @for m in &rows {
                        tr {
                            td data-label="Name" { (m.name) br; span.muted { (m.os) "/" (m.arch) " · " (m.daemon_version) } }
                            td.mono data-label="Machine id" { (m.machine_id) }
                            td data-label="Paired by" { (m.paired_by) }
                            td data-label="Paired at" { (util::human_time(m.paired_at)) }
                            td data-label="Connection" { @if online.contains(&m.runtime_target_id) { span.online { "online" } } @else { span.offline { "offline" } } }
                            td data-label="Last seen" { @if let Some(t) = m.last_seen_at { (util::human_time(t)) } @else { "never" } }
                            @if m.revoked_at.is_some() {
                                td.state-revoked data-label="State" { "revoked" @if let Some(r) = &m.revoked_reason { br; span.muted { (r.replace('_', " ")) } } }
                                td {}
                            } @else {
                                td.state-active data-label="State" { "active" }
                                td {
                                    @if roles::may(role, roles::cap_for_revoke(m.paired_by_id == s.user.id)) {
                                    form method="post" action=(format!("/orgs/{}/machines/revoke", ws.slug)) {
                                        input type="hidden" name="csrf" value=(s.csrf());
                                        input type="hidden" name="machine_id" value=(m.machine_id);
                                        button.danger type="submit" { "Revoke" }
                                    }
                                    }
                                }
                            }
                        }
                    }
                }
            }
        }
    })
    .into_response())
}

#[derive(Deserialize)]
pub struct RevokeForm {
    #[serde(default)]
    csrf: String,
    #[serde(default)]
    machine_id: String,
}

pub async fn revoke(
    State(state): State<AppState>,
    session: MaybeSession,
    uri: Uri,
    Path(slug): Path<String>,
    Form(f): Form<RevokeForm>,
) -> PageResult {
    let (s, ws, _) = org_form(&state, session, &uri, &slug, &f.csrf).await?;
    state.revoke(&ws.id, &f.machine_id, "revoked", &s.actor()).await.map_err(refused_change)?;
    tracing::info!(workspace = %ws.id, "machine revoked from the machines page");
    Ok(see_other(&format!("/orgs/{}/machines", ws.slug)))
}

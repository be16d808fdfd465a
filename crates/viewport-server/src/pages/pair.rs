//! `/pair?code=XXXX-XXXX`: approve or deny a daemon's pairing request.

use super::layout::page;
use super::{require_session, PageErr, PageResult};
use crate::auth::MaybeSession;
use crate::store::{CodeKind, CodeState, StoreError, Workspace};
use crate::{util, AppState};
use axum::extract::{Form, Query, State};
use axum::http::{header, HeaderValue, StatusCode, Uri};
use axum::response::IntoResponse;
use maud::html;
use serde::Deserialize;

#[derive(Deserialize)]
pub struct CodeQuery {
    code: Option<String>,
}

/// 429 with `Retry-After`, when the signed-in user opened or submitted `/pair` too often.
fn too_many() -> PageErr {
    let mut e = PageErr::new(
        StatusCode::TOO_MANY_REQUESTS,
        "Too many requests",
        "You opened or submitted the pairing page too often. Wait a minute and try again.",
    );
    e.set_header(header::RETRY_AFTER, HeaderValue::from_static("60"));
    e
}

fn code_unusable() -> PageErr {
    PageErr::new(
        StatusCode::NOT_FOUND,
        "This code cannot be used",
        "The pairing code is unknown, expired or already used. Run `vpd pair` again on the machine to get a new one.",
    )
}

/// Pre-selects the membership matching the daemon's `--org` (id, slug or name).
fn preselected<'a>(orgs: &'a [Workspace], requested: Option<&str>) -> Option<&'a Workspace> {
    let r = requested?.trim();
    orgs.iter().find(|o| o.id == r || o.slug == r).or_else(|| orgs.iter().find(|o| o.name.eq_ignore_ascii_case(r)))
}

pub async fn show(State(state): State<AppState>, session: MaybeSession, uri: Uri, Query(q): Query<CodeQuery>) -> PageResult {
    let s = require_session(session, &uri)?;
    if !state.allow_pair_page(&s.user.id).await {
        return Err(too_many());
    }
    let Some(raw) = q.code.filter(|c| !c.trim().is_empty()) else {
        return Ok(page(
            "Pair a machine",
            Some(&s),
            html! {
                h1 { "Pair a machine" }
                div.card {
                    form method="get" action="/pair" {
                        label for="code" { "Code shown by " code { "vpd pair" } }
                        input #code type="text" name="code" placeholder="XXXX-XXXX" required autofocus;
                        div.actions { button type="submit" { "Continue" } }
                    }
                }
            },
        )
        .into_response());
    };
    let code = vpd_proto::normalize_code(&raw).ok_or_else(code_unusable)?;
    let c = code.clone();
    let pc = state.db(move |st| st.pairing_code(&c)).await?.ok_or_else(code_unusable)?;
    let usable = pc.kind == CodeKind::Device && pc.state == CodeState::Pending && !pc.is_expired(util::now());
    let Some(machine) = pc.machine.as_ref().filter(|_| usable) else {
        return Err(code_unusable());
    };
    let uid = s.user.id.clone();
    let orgs = state.db(move |st| st.workspaces_of_user(&uid)).await?;
    let selected = preselected(&orgs, pc.requested_org.as_deref()).map(|o| o.id.clone());
    let fingerprint = util::b64url_decode(&machine.public_key).map(|k| vpd_proto::fingerprint(&k)).unwrap_or_default();
    let shown = vpd_proto::format_code(&code);
    Ok(page(
        "Approve pairing",
        Some(&s),
        html! {
            h1 { "Pair this machine?" }
            div.card {
                p { "Check that the code and fingerprint match what your terminal shows." }
                p.code { (shown) }
                dl {
                    dt { "Machine" } dd { (machine.name) }
                    dt { "OS / arch" } dd { (machine.os) " / " (machine.arch) }
                    dt { "Daemon version" } dd { (machine.daemon_version) }
                    dt { "Key fingerprint" } dd.mono { (fingerprint) }
                    dt { "Expires" } dd { (util::human_time(pc.expires_at)) }
                    @if let Some(r) = &pc.requested_org { dt { "Requested workspace" } dd { (r) } }
                }
                @if orgs.is_empty() {
                    p.error { "You are not a member of any workspace, so you cannot approve this machine. Ask an admin to add you." }
                } @else {
                    form method="post" action="/pair" {
                        input type="hidden" name="csrf" value=(s.csrf());
                        input type="hidden" name="code" value=(shown);
                        label for="workspace_id" { "Workspace" }
                        select #workspace_id name="workspace_id" {
                            @for o in &orgs {
                                option value=(o.id) selected[selected.as_deref() == Some(o.id.as_str())] { (o.name) " (" (o.slug) ")" }
                            }
                        }
                        div.actions {
                            button type="submit" name="action" value="approve" { "Approve" }
                            button.danger type="submit" name="action" value="deny" { "Deny" }
                        }
                    }
                }
            }
        },
    )
    .into_response())
}

#[derive(Deserialize)]
pub struct DecideForm {
    #[serde(default)]
    csrf: String,
    #[serde(default)]
    code: String,
    #[serde(default)]
    workspace_id: String,
    #[serde(default)]
    action: String,
}

pub async fn decide(State(state): State<AppState>, session: MaybeSession, uri: Uri, Form(f): Form<DecideForm>) -> PageResult {
    let s = require_session(session, &uri)?;
    if !state.allow_pair_page(&s.user.id).await {
        return Err(too_many());
    }
    if !s.csrf_ok(&f.csrf) {
        return Err(PageErr::csrf());
    }
    let code = vpd_proto::normalize_code(&f.code).ok_or_else(code_unusable)?;
    let shown = vpd_proto::format_code(&code);
    let refused = |e: StoreError| match e {
        StoreError::NotFound(_) => code_unusable(),
        StoreError::Gone(m) => PageErr::new(
            StatusCode::CONFLICT,
            "Nothing changed",
            &format!("{m}. Each code can be approved or denied once; run `vpd pair` again for a new one."),
        ),
        StoreError::Forbidden(_) => {
            PageErr::new(StatusCode::FORBIDDEN, "Not allowed", "You are not a member of that workspace, so you cannot pair machines with it.")
        }
        other => other.into(),
    };
    match f.action.as_str() {
        "approve" => {
            let p = state.approve_code(&code, &f.workspace_id, &s.user.id, &s.actor()).await.map_err(refused)?;
            tracing::info!(workspace = %p.workspace.id, machine = %p.machine_id, "pairing approved");
            Ok(page(
                "Approved",
                Some(&s),
                html! {
                    h1 { "Approved" }
                    div.card {
                        p { "The machine " strong { (p.machine_name) } " is now paired with " strong { (p.workspace.name) } "." }
                        p.muted { "Code " (shown) ". You can return to your terminal." }
                        p { a href=(format!("/orgs/{}/machines", p.workspace.slug)) { "See the machines of " (p.workspace.name) } }
                    }
                },
            )
            .into_response())
        }
        "deny" => {
            // Unknown, used, cancelled, decided or expired: all the same 404 page.
            state.deny_code(&code, &s.user.id).await.map_err(|e| match e {
                StoreError::NotFound(_) | StoreError::Gone(_) => code_unusable(),
                other => refused(other),
            })?;
            Ok(page(
                "Denied",
                Some(&s),
                html! {
                    h1 { "Denied" }
                    div.card { p { "The pairing request " (shown) " was denied. Nothing was paired." } }
                },
            )
            .into_response())
        }
        _ => Err(PageErr::new(StatusCode::BAD_REQUEST, "Bad request", "Choose Approve or Deny.")),
    }
}

//! `/orgs/{slug}/add-machine`: mint a code for `vpd pair CODE`.

use super::layout::{org_tabs, page};
use super::{member_org_role, org_form, require_session, PageResult};
use crate::auth::MaybeSession;
use crate::{util, AppState};
use axum::extract::{Form, Path, State};
use axum::http::Uri;
use axum::response::IntoResponse;
use maud::html;
use serde::Deserialize;

pub async fn show(State(state): State<AppState>, session: MaybeSession, uri: Uri, Path(slug): Path<String>) -> PageResult {
    let s = require_session(session, &uri)?;
    let (ws, role) = member_org_role(&state, &s, &slug).await?;
    Ok(page(&format!("Add machine · {}", ws.name), Some(&s), html! {
        h1 { (ws.name) }
        (org_tabs(&ws.slug, "add-machine", role))
        div.card {
            p { "Make a one-time code, then run " code { "vpd pair CODE" } " on the machine. The code is valid for 15 minutes and pairs the machine as you." }
            form method="post" action=(format!("/orgs/{}/add-machine", ws.slug)) {
                input type="hidden" name="csrf" value=(s.csrf());
                button type="submit" { "Make a code" }
            }
        }
    })
    .into_response())
}

#[derive(Deserialize)]
pub struct MintForm {
    #[serde(default)]
    csrf: String,
}

pub async fn mint(State(state): State<AppState>, session: MaybeSession, uri: Uri, Path(slug): Path<String>, Form(f): Form<MintForm>) -> PageResult {
    let (s, ws, role) = org_form(&state, session, &uri, &slug, &f.csrf).await?;
    let (code, expires) = state.mint_code(&ws.id, &s.user.id, &s.actor()).await?;
    let shown = vpd_proto::format_code(&code);
    Ok(page(
        &format!("Add machine · {}", ws.name),
        Some(&s),
        html! {
            h1 { (ws.name) }
            (org_tabs(&ws.slug, "add-machine", role))
            div.card {
                p { "Run this on the machine to pair it with " strong { (ws.name) } ":" }
                p.code { (shown) }
                pre.mono { "vpd pair " (shown) " --server " (state.public_url()) }
                p.muted { "Valid until " (util::human_time(expires)) ", once." }
            }
        },
    )
    .into_response())
}

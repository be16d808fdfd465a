//! `/orgs/{slug}/members`: list with roles; add an existing user, change a role, remove
//! (revokes their pairings there), leave. What a person sees and may press follows
//! [`crate::roles`]; the store checks it again inside the change.

use super::layout::{org_tabs, page};
use super::{member_org_role, org_form, refused_change, require_session, see_other, PageErr, PageResult};
use crate::auth::MaybeSession;
use crate::roles::{self, Role};
use crate::{util, AppState};
use axum::extract::{Form, Path, State};
use axum::http::{StatusCode, Uri};
use axum::response::IntoResponse;
use maud::{html, Markup};
use serde::Deserialize;

/// The roles `actor` may give to someone who now has `from` (`None`: a new member).
fn grantable(actor: Role, from: Option<Role>) -> Vec<Role> {
    Role::ALL
        .into_iter()
        .filter(|to| match from {
            None => roles::may(actor, roles::cap_for_add(*to)),
            Some(from) => roles::cap_for_role_change(from, *to).is_none_or(|cap| roles::may(actor, cap)),
        })
        .collect()
}

fn role_select(id: &str, label: &str, options: &[Role], selected: Role) -> Markup {
    html! {
        select id=(id) name="role" aria-label=(label) {
            @for r in options {
                option value=(r.as_str()) selected[*r == selected] { (r.as_str()) }
            }
        }
    }
}

pub async fn list(State(state): State<AppState>, session: MaybeSession, uri: Uri, Path(slug): Path<String>) -> PageResult {
    let s = require_session(session, &uri)?;
    let (ws, me) = member_org_role(&state, &s, &slug).await?;
    let wid = ws.id.clone();
    let members = state.db(move |st| st.members(&wid)).await?;
    let add_roles = grantable(me, None);
    Ok(page(
        &format!("Members · {}", ws.name),
        Some(&s),
        html! {
            h1 { (ws.name) }
            (org_tabs(&ws.slug, "members", me))
            p.muted { "You are " strong { (me.as_str()) } " here. " a href="#roles" { "What each role may do" } }
            table {
                thead { tr { th { "Email" } th { "Role" } th { "Member since" } th {} } }
                tbody {
                    @for (i, m) in members.iter().enumerate() {
                        @let is_me = m.user_id == s.user.id;
                        @let options = grantable(me, Some(m.role));
                        tr {
                            td data-label="Email" { (m.email) @if is_me { span.muted { " (you)" } } }
                            td data-label="Role" {
                                @if options.len() > 1 {
                                    form.inline method="post" action=(format!("/orgs/{}/members/role", ws.slug)) {
                                        input type="hidden" name="csrf" value=(s.csrf());
                                        input type="hidden" name="user_id" value=(m.user_id);
                                        (role_select(&format!("role-{i}"), &format!("Role of {}", m.email), &options, m.role))
                                        " "
                                        button type="submit" aria-label=(format!("Change the role of {}", m.email)) { "Change" }
                                    }
                                } @else {
                                    (m.role.as_str())
                                }
                            }
                            td data-label="Member since" { (util::human_time(m.joined_at)) }
                            td {
                                @if roles::may(me, roles::cap_for_remove(m.role, is_me)) {
                                    form method="post" action=(format!("/orgs/{}/members/remove", ws.slug)) {
                                        input type="hidden" name="csrf" value=(s.csrf());
                                        input type="hidden" name="user_id" value=(m.user_id);
                                        button.danger type="submit" { @if is_me { "Leave" } @else { "Remove" } }
                                    }
                                }
                            }
                        }
                    }
                }
            }
            p.muted { "Removing a member revokes every machine they paired in this workspace (only here). A workspace always keeps at least one owner." }
            @if !add_roles.is_empty() {
                div.card {
                    form method="post" action=(format!("/orgs/{}/members/add", ws.slug)) {
                        input type="hidden" name="csrf" value=(s.csrf());
                        label for="email" { "Add an existing user by email" }
                        input #email type="email" name="email" required;
                        label for="new-role" { "Role" }
                        (role_select("new-role", "Role", &add_roles, Role::Member))
                        div.actions { button type="submit" { "Add member" } }
                    }
                }
            }
            section #roles {
                h2 { "Roles" }
                table.permissions {
                    thead { tr { th { "A person with this role may …" } th { "member" } th { "admin" } th { "owner" } } }
                    tbody {
                        @for (_, what, holders) in roles::TABLE {
                            tr {
                                td data-label="May" { (what) }
                                @for r in [Role::Member, Role::Admin, Role::Owner] {
                                    td data-label=(r.as_str()) { @if holders.contains(&r) { "yes" } @else { "—" } }
                                }
                            }
                        }
                    }
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
    #[serde(default)]
    role: String,
}

fn parse_role(s: &str) -> Result<Role, PageErr> {
    if s.is_empty() {
        return Ok(Role::Member);
    }
    s.parse::<Role>().map_err(|m| PageErr::new(StatusCode::BAD_REQUEST, "Invalid role", &m))
}

pub async fn add(State(state): State<AppState>, session: MaybeSession, uri: Uri, Path(slug): Path<String>, Form(f): Form<AddForm>) -> PageResult {
    let (s, ws, me) = org_form(&state, session, &uri, &slug, &f.csrf).await?;
    let role = parse_role(&f.role)?;
    // Before looking the email up: a member must not learn which emails have accounts.
    if !roles::may(me, roles::cap_for_add(role)) {
        return Err(refused_change(crate::store::StoreError::Forbidden(format!("your role ({me}) may not add a {role}"))));
    }
    let email = util::normalize_email(&f.email).map_err(|m| PageErr::new(StatusCode::BAD_REQUEST, "Invalid email", &m))?;
    let e = email.clone();
    let Some((user, _)) = state.db(move |st| st.user_by_email(&e)).await? else {
        return Err(PageErr::new(
            StatusCode::BAD_REQUEST,
            "No such user",
            &format!("There is no account for {email}. An admin can create it with `viewport-server admin user create {email} --password-stdin`."),
        ));
    };
    let (wid, actor) = (ws.id.clone(), s.actor());
    state.db(move |st| st.add_member_as(&wid, &user.id, Some(role), &actor, util::now())).await.map_err(refused_change)?;
    Ok(see_other(&format!("/orgs/{}/members", ws.slug)))
}

#[derive(Deserialize)]
pub struct MemberForm {
    #[serde(default)]
    csrf: String,
    #[serde(default)]
    user_id: String,
    #[serde(default)]
    role: String,
}

pub async fn set_role(
    State(state): State<AppState>,
    session: MaybeSession,
    uri: Uri,
    Path(slug): Path<String>,
    Form(f): Form<MemberForm>,
) -> PageResult {
    let (s, ws, _) = org_form(&state, session, &uri, &slug, &f.csrf).await?;
    let role = parse_role(&f.role)?;
    let (wid, uid, actor) = (ws.id.clone(), f.user_id.clone(), s.actor());
    let from = state.db(move |st| st.set_role(&wid, &uid, role, &actor, util::now())).await.map_err(refused_change)?;
    tracing::info!(workspace = %ws.id, %from, to = %role, "role changed");
    Ok(see_other(&format!("/orgs/{}/members", ws.slug)))
}

pub async fn remove(
    State(state): State<AppState>,
    session: MaybeSession,
    uri: Uri,
    Path(slug): Path<String>,
    Form(f): Form<MemberForm>,
) -> PageResult {
    let (s, ws, _) = org_form(&state, session, &uri, &slug, &f.csrf).await?;
    let n = state.remove_member(&ws.id, &f.user_id, &s.actor()).await.map_err(refused_change)?;
    tracing::info!(workspace = %ws.id, revoked = n, "member removed");
    if f.user_id == s.user.id {
        return Ok(see_other("/"));
    }
    Ok(see_other(&format!("/orgs/{}/members", ws.slug)))
}

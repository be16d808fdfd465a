//! `/orgs/{slug}/sessions`: the org's recorded sessions; `/orgs/{slug}/sessions/{id}`: one
//! session's output as terminal text, complete without JavaScript and kept live by a small
//! same-origin script (`/session.js`) that polls `/orgs/{slug}/sessions/{id}/frames?after=SEQ`.

use super::layout::{org_tabs, page};
use super::{member_org, member_org_role, require_session, PageErr, PageResult};
use crate::auth::MaybeSession;
use crate::store::SessionRow;
use crate::terminal::Line;
use crate::{util, AppState};
use axum::extract::{Path, Query, State};
use axum::http::{header, Uri};
use axum::response::{IntoResponse, Response};
use axum::Json;
use maud::html;
use serde::Deserialize;

/// Most frames the session page renders (the newest ones).
const PAGE_FRAMES: u64 = 20_000;
/// Most frames one poll of the frames endpoint returns.
const POLL_FRAMES: usize = 2_000;

pub const SESSION_JS: &str = r#"// Keeps a session page's screen up to date (same origin, no inline script). The server
// runs the screen emulator; this only redraws what it sends, as text nodes.
(function () {
  "use strict";
  var pre = document.getElementById("output");
  if (!pre) return;
  var ended = pre.getAttribute("data-ended") === "true";
  var more = pre.getAttribute("data-more") === "true";
  if (ended && !more) return;
  var url = pre.getAttribute("data-frames");
  var from = Number(pre.getAttribute("data-from")) || 0;
  var next = Number(pre.getAttribute("data-next")) || 0;
  var state = document.getElementById("state");
  var frames = document.getElementById("frames");
  function atBottom() {
    return window.innerHeight + window.scrollY >= document.body.scrollHeight - 40;
  }
  function draw(lines) {
    var frag = document.createDocumentFragment();
    lines.forEach(function (line) {
      line.forEach(function (run) {
        if (run.c) {
          var span = document.createElement("span");
          span.className = run.c;
          span.textContent = run.text;
          frag.appendChild(span);
        } else {
          frag.appendChild(document.createTextNode(run.text));
        }
      });
      frag.appendChild(document.createTextNode("\n"));
    });
    pre.replaceChildren(frag);
  }
  function poll() {
    fetch(url + "?from=" + from + "&after=" + next, { credentials: "same-origin", headers: { Accept: "application/json" } })
      .then(function (r) { if (!r.ok) throw new Error(String(r.status)); return r.json(); })
      .then(function (j) {
        var stick = atBottom();
        if (j.changed && j.lines) {
          draw(j.lines);
          if (stick) window.scrollTo(0, document.body.scrollHeight);
        }
        next = j.next;
        if (state && j.state) state.textContent = j.state;
        if (frames && typeof j.frames === "number") frames.textContent = String(j.frames);
        if (j.ended && !j.more) return;
        setTimeout(poll, j.more ? 0 : 1000);
      })
      .catch(function () { setTimeout(poll, 5000); });
  }
  setTimeout(poll, more ? 0 : 1000);
})();
"#;

pub async fn script() -> Response {
    ([(header::CONTENT_TYPE, "text/javascript; charset=utf-8"), (header::CACHE_CONTROL, "public, max-age=3600")], SESSION_JS).into_response()
}

fn state_label(r: &SessionRow) -> String {
    match r.ended_at {
        None => "live".into(),
        Some(_) => {
            let mut s = format!("ended ({})", r.end_reason.as_deref().unwrap_or("?").replace('_', " "));
            if let Some(c) = r.exit_code {
                s.push_str(&format!(", exit {c}"));
            }
            s
        }
    }
}

pub async fn list(State(state): State<AppState>, session: MaybeSession, uri: Uri, Path(slug): Path<String>) -> PageResult {
    let s = require_session(session, &uri)?;
    let (ws, role) = member_org_role(&state, &s, &slug).await?;
    let wid = ws.id.clone();
    let rows = state.db(move |st| st.sessions(&wid)).await?;
    let online = state.online(rows.iter().filter(|r| r.ended_at.is_none()).map(|r| r.runtime_target_id.clone()).collect()).await;
    Ok(page(&format!("Sessions · {}", ws.name), Some(&s), html! {
        h1 { (ws.name) }
        (org_tabs(&ws.slug, "sessions", role))
        @if rows.is_empty() {
            div.card { p { "No sessions recorded yet. Sessions appear here when a machine paired with this workspace runs " code { "vpd run" } " in a bound directory." } }
        } @else {
            table {
                thead { tr { th { "Session" } th { "Machine" } th { "Agent" } th { "Directory" } th { "Started" } th { "Ended" } th { "Frames" } th { "Gaps" } th { "State" } } }
                tbody {
                    @for r in &rows {
                        tr {
                            td.mono data-label="Session" { a href=(format!("/orgs/{}/sessions/{}", ws.slug, r.id)) { (r.id) } }
                            td data-label="Machine" { (r.machine_name) }
                            td data-label="Agent" { (r.agent) }
                            td.mono data-label="Directory" { (r.directory) }
                            td data-label="Started" { (util::human_time(r.started_at)) }
                            td data-label="Ended" { @if let Some(t) = r.ended_at { (util::human_time(t)) } @else { "—" } }
                            td data-label="Frames" { (r.frame_count) }
                            td data-label="Gaps" { (r.gap_count) }
                            @if r.ended_at.is_none() {
                                td.state-active data-label="State" { "live" @if !online.contains(&r.runtime_target_id) { br; span.muted { "machine offline" } } }
                            } @else {
                                td data-label="State" { (state_label(r)) }
                            }
                        }
                    }
                }
            }
        }
    })
    .into_response())
}

async fn org_session(state: &AppState, s: &crate::auth::Session, slug: &str, id: &str) -> Result<SessionRow, PageErr> {
    let ws = member_org(state, s, slug).await?;
    if !vpd_proto::is_ulid(id) {
        return Err(PageErr::not_found());
    }
    let (wid, sid) = (ws.id.clone(), id.to_string());
    state.db(move |st| st.session(Some(&wid), &sid)).await?.ok_or_else(PageErr::not_found)
}

/// What the screen of a session shows now.
struct Rendered {
    lines: Vec<Line>,
    /// The last seq fed.
    next: u64,
    /// Frames are stored beyond what was fed (the byte budget ran out): poll again at once.
    more: bool,
    /// `false` when the screen had already fed everything up to the client's `after`.
    changed: bool,
}

/// Feeds the session's screen (kept across polls in `state.screens`) the frames stored after
/// what it has seen, reading at most `budget` bytes, and renders it when it moved past `after`.
async fn render(state: &AppState, r: &SessionRow, from: u64, after: Option<u64>, budget: usize) -> Result<Rendered, PageErr> {
    let screen = state.screens.get(&r.id, from);
    let (sid, last_seq) = (r.id.clone(), r.last_seq);
    Ok(state
        .db(move |st| {
            let mut screen = screen.lock().unwrap_or_else(|e| e.into_inner());
            let mut read = 0usize;
            while read < budget {
                let frames = st.session_frames_capped(&sid, screen.next(), None, POLL_FRAMES, 1 << 20)?;
                if frames.is_empty() {
                    break;
                }
                for f in &frames {
                    read += f.data.len();
                    screen.feed(f.seq, &f.kind, &f.data);
                }
            }
            let next = screen.next();
            let changed = after != Some(next);
            Ok(Rendered { lines: if changed { screen.lines() } else { Vec::new() }, next, more: next < last_seq, changed })
        })
        .await?)
}

pub async fn show(State(state): State<AppState>, session: MaybeSession, uri: Uri, Path((slug, id)): Path<(String, String)>) -> PageResult {
    let s = require_session(session, &uri)?;
    let (ws, role) = member_org_role(&state, &s, &slug).await?;
    let r = org_session(&state, &s, &slug, &id).await?;
    // Rounded, so that every viewer of a long session shares one screen.
    let from = r.last_seq.saturating_sub(PAGE_FRAMES) / 1000 * 1000;
    let shown = render(&state, &r, from, None, 4 << 20).await?;
    let online = !state.online(vec![r.runtime_target_id.clone()]).await.is_empty();
    Ok(page(&format!("Session {} · {}", r.id, ws.name), Some(&s), html! {
        h1 { (ws.name) }
        (org_tabs(&ws.slug, "sessions", role))
        div.card {
            dl {
                dt { "Session" } dd.mono { (r.id) }
                dt { "Machine" } dd { (r.machine_name) " " span.muted.mono { (r.machine_id) } @if !online && r.ended_at.is_none() { span.muted { " (offline)" } } }
                dt { "Agent" } dd { (r.agent) }
                dt { "Directory" } dd.mono { (r.directory) }
                dt { "Started" } dd { (util::human_time(r.started_at)) }
                dt { "State" } dd #state { (state_label(&r)) @if let Some(t) = r.ended_at { " at " (util::human_time(t)) } }
                dt { "Frames" } dd {
                    span #frames { (r.frame_count) }
                    @if let Some(t) = r.purged_at {
                        span.muted { " · older output was removed by retention on " (util::human_time(t)) }
                    }
                    @if r.gap_count > u64::from(r.purged_at.is_some()) {
                        span.error { " · " (r.gap_count - u64::from(r.purged_at.is_some())) " gap(s): some output was lost before it reached the relay" }
                    }
                }
            }
        }
        @if from > 0 {
            p.muted { "Earlier output is not shown here; an admin can print all of it with " code { "viewport-server admin session show " (r.id) } "." }
        }
        pre #output .terminal
            data-frames=(format!("/orgs/{}/sessions/{}/frames", ws.slug, r.id))
            data-next=(shown.next)
            data-from=(from)
            data-more=(if shown.more { "true" } else { "false" })
            data-ended=(if r.ended_at.is_some() { "true" } else { "false" }) {
            @for line in &shown.lines {
                @for run in line {
                    @if run.class.is_empty() { (run.text) } @else { span class=(run.class) { (run.text) } }
                }
                "\n"
            }
        }
        script src="/session.js" defer {}
    })
    .into_response())
}

#[derive(Deserialize)]
pub struct After {
    /// The last seq the page has shown.
    #[serde(default)]
    after: u64,
    /// Where the page's screen started (its `data-from`).
    #[serde(default)]
    from: u64,
}

/// `{"changed": false, …}` while nothing new arrived; otherwise the whole screen as `lines`
/// (each a list of `{"text", "c"}` runs, set with `textContent` by the page).
pub async fn frames(
    State(state): State<AppState>,
    session: MaybeSession,
    uri: Uri,
    Path((slug, id)): Path<(String, String)>,
    Query(q): Query<After>,
) -> Result<Response, PageErr> {
    let s = require_session(session, &uri)?;
    let r = org_session(&state, &s, &slug, &id).await?;
    let shown = render(&state, &r, q.from.min(r.last_seq), Some(q.after), 1 << 20).await?;
    let mut j = serde_json::json!({
        "changed": shown.changed,
        "next": shown.next,
        "more": shown.more,
        "ended": r.ended_at.is_some(),
        "state": state_label(&r),
        "frames": r.frame_count,
    });
    if shown.changed {
        j["lines"] = serde_json::json!(shown.lines);
    }
    Ok(Json(j).into_response())
}

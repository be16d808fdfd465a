//! The page shell, the stylesheet and error pages.

use crate::auth::Session;
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use maud::{html, Markup, DOCTYPE};

pub const STYLESHEET: &str = r#"
:root { --fg:#1d2330; --muted:#5b6475; --line:#dde1e8; --accent:#2f5bea; --bg:#f7f8fa; --bad:#b42318; --ok:#067647; }
* { box-sizing: border-box; }
body { margin:0; font:15px/1.5 system-ui,-apple-system,"Segoe UI",sans-serif; color:var(--fg); background:var(--bg); }
header { background:#fff; border-bottom:1px solid var(--line); padding:.6rem 1.5rem; display:flex; gap:1rem; align-items:center; }
header .brand { font-weight:700; color:var(--fg); text-decoration:none; margin-right:auto; }
header form { margin:0; }
main { max-width:880px; margin:2rem auto; padding:0 1.5rem; }
h1 { font-size:1.5rem; margin:.2rem 0 1rem; }
nav.tabs { display:flex; gap:1rem; margin-bottom:1rem; border-bottom:1px solid var(--line); }
nav.tabs a { padding:.4rem 0; text-decoration:none; color:var(--muted); }
nav.tabs a.here { color:var(--fg); border-bottom:2px solid var(--accent); }
.card { background:#fff; border:1px solid var(--line); border-radius:8px; padding:1.2rem 1.4rem; margin-bottom:1rem; }
table { width:100%; border-collapse:collapse; background:#fff; border:1px solid var(--line); }
th, td { text-align:left; padding:.5rem .7rem; border-bottom:1px solid var(--line); vertical-align:middle; }
th { font-size:.8rem; text-transform:uppercase; letter-spacing:.03em; color:var(--muted); }
td form { margin:0; }
code, .mono { font-family:ui-monospace,SFMono-Regular,Menlo,monospace; font-size:.9em; }
.code { font:700 2rem ui-monospace,monospace; letter-spacing:.15em; }
label { display:block; margin:.6rem 0 .2rem; font-weight:600; }
input[type=text], input[type=email], input[type=password], select { width:100%; max-width:26rem; padding:.45rem .6rem; border:1px solid var(--line); border-radius:6px; font:inherit; }
button { font:inherit; padding:.45rem 1rem; border-radius:6px; border:1px solid var(--accent); background:var(--accent); color:#fff; cursor:pointer; }
button.secondary { background:#fff; color:var(--fg); border-color:var(--line); }
button.danger { background:#fff; color:var(--bad); border-color:var(--bad); }
.actions { display:flex; gap:.6rem; margin-top:1rem; }
form.inline { display:flex; gap:.5rem; align-items:center; flex-wrap:wrap; }
form.inline select { width:auto; }
.muted { color:var(--muted); }
.error { color:var(--bad); }
.state-active { color:var(--ok); }
.state-revoked { color:var(--bad); }
dl { display:grid; grid-template-columns:max-content 1fr; gap:.3rem 1rem; }
dt { color:var(--muted); }
dd { margin:0; }
pre.terminal { background:#111418; color:#e6e6e6; padding:1rem; border-radius:8px; overflow-x:auto; white-space:pre-wrap; word-break:break-all; font:13px/1.4 ui-monospace,SFMono-Regular,Menlo,monospace; min-height:4rem; }
.online { color:var(--ok); font-weight:600; }
.mono, td.mono { overflow-wrap:anywhere; }
pre { white-space:pre-wrap; overflow-wrap:anywhere; }
:focus-visible { outline:3px solid var(--accent); outline-offset:2px; }
@media (max-width: 640px) {
  header { padding:.6rem 1rem; flex-wrap:wrap; }
  main { margin:1rem auto; padding:0 1rem; }
  nav.tabs { flex-wrap:wrap; gap:.2rem 1rem; }
  /* Tables become one card per row, each cell labelled: nothing scrolls sideways. */
  table, tbody, tr, td { display:block; width:100%; }
  table { border:none; background:none; }
  thead { position:absolute; width:1px; height:1px; overflow:hidden; clip:rect(0 0 0 0); }
  tr { background:#fff; border:1px solid var(--line); border-radius:8px; margin-bottom:.8rem; padding:.3rem 0; }
  td { border:none; padding:.25rem .9rem; }
  td[data-label]::before { content:attr(data-label); display:block; font-size:.75rem; text-transform:uppercase; letter-spacing:.03em; color:var(--muted); }
  td:empty { display:none; }
  .code { font-size:1.6rem; }
}
.offline { color:var(--muted); }
"#;

/// The app icon (browsers ask for `/favicon.ico` on every site).
pub async fn favicon() -> Response {
    const ICON: &[u8] = include_bytes!("../../../../icons/32x32.png");
    ([(header::CONTENT_TYPE, "image/png"), (header::CACHE_CONTROL, "public, max-age=86400")], ICON).into_response()
}

/// A full page.
pub fn page(title: &str, session: Option<&Session>, body: Markup) -> Markup {
    html! {
        (DOCTYPE)
        html lang="en" {
            head {
                meta charset="utf-8";
                meta name="viewport" content="width=device-width, initial-scale=1";
                title { (title) " · Viewport" }
                link rel="stylesheet" href="/style.css";
            }
            body {
                header {
                    a.brand href="/" { "Viewport" }
                    @if let Some(s) = session {
                        span.muted { (s.user.email) }
                        form method="post" action="/signout" {
                            input type="hidden" name="csrf" value=(s.csrf());
                            button.secondary type="submit" { "Sign out" }
                        }
                    }
                }
                main { (body) }
            }
        }
    }
}

/// A page with a status, a title and one explanatory sentence.
pub fn error_page(status: StatusCode, title: &str, message: &str) -> Response {
    let body = page(
        title,
        None,
        html! {
            h1 { (title) }
            div.card {
                p { (message) }
                p { a href="/" { "Back to Viewport" } }
            }
        },
    );
    (status, body).into_response()
}

pub async fn stylesheet() -> Response {
    static CSS: std::sync::LazyLock<String> = std::sync::LazyLock::new(|| format!("{STYLESHEET}{}", crate::terminal::palette_css()));
    ([(header::CONTENT_TYPE, "text/css; charset=utf-8"), (header::CACHE_CONTROL, "public, max-age=3600")], CSS.as_str()).into_response()
}

/// The org's tabs; Audit only for a role that may read it.
pub fn org_tabs(slug: &str, here: &str, role: crate::roles::Role) -> Markup {
    let mut tabs = vec![("machines", "Machines"), ("sessions", "Sessions"), ("members", "Members"), ("add-machine", "Add machine")];
    if crate::roles::may(role, crate::roles::Cap::ViewAudit) {
        tabs.push(("audit", "Audit"));
    }
    html! {
        nav.tabs {
            @for (path, label) in tabs {
                a class=@if path == here { "here" } href=(format!("/orgs/{slug}/{path}")) { (label) }
            }
        }
    }
}

//! The loopback web UI's security (SPEC section 11) against the real daemon, request by
//! request over raw HTTP, so every header is exactly what the test says: the Host
//! allow-list, Origin, CSRF, the cookie from a one-time link, the security headers, and no
//! live-update channel for another site.

mod support;

use serde_json::Value;
use std::io::{Read, Write};
use std::net::TcpStream;
use support::*;

struct Ui {
    port: u16,
}

struct Answer {
    status: u16,
    head: String,
    body: String,
}

impl Answer {
    fn header(&self, name: &str) -> Option<String> {
        self.head.lines().find_map(|l| {
            let (k, v) = l.split_once(':')?;
            k.trim().eq_ignore_ascii_case(name).then(|| v.trim().to_string())
        })
    }
}

impl Ui {
    /// One HTTP/1.1 request with exactly these headers (Connection: close added).
    fn raw(&self, method: &str, path: &str, headers: &[(&str, &str)], body: &str) -> Answer {
        let mut s = TcpStream::connect(("127.0.0.1", self.port)).unwrap();
        s.set_read_timeout(Some(std::time::Duration::from_secs(5))).unwrap();
        let mut req = format!("{method} {path} HTTP/1.1\r\n");
        for (k, v) in headers {
            req.push_str(&format!("{k}: {v}\r\n"));
        }
        if !body.is_empty() || method == "POST" {
            req.push_str(&format!("Content-Type: application/json\r\nContent-Length: {}\r\n", body.len()));
        }
        req.push_str("Connection: close\r\n\r\n");
        req.push_str(body);
        s.write_all(req.as_bytes()).unwrap();
        let mut out = Vec::new();
        let _ = s.read_to_end(&mut out);
        let text = String::from_utf8_lossy(&out).into_owned();
        let (head, body) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
        let status = head.split(' ').nth(1).and_then(|c| c.parse().ok()).unwrap_or(0);
        Answer { status, head: head.to_string(), body: body.to_string() }
    }

    fn host(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }
    fn origin(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }
}

/// Logs in through a fresh one-time link: (cookie header, CSRF token).
fn login(m: &Machine, ui: &Ui) -> (String, String) {
    let link = m.ok(&["ui", "--no-browser"])["url"].as_str().unwrap().to_string();
    let path = &link[link.find("/login").unwrap()..];
    let a = ui.raw("GET", path, &[("Host", &ui.host())], "");
    assert_eq!(a.status, 303, "{}", a.head);
    let cookie = a.header("set-cookie").unwrap();
    assert!(cookie.contains("HttpOnly") && cookie.contains("SameSite=Strict"), "{cookie}");
    let cookie = cookie.split(';').next().unwrap().to_string();
    let page = ui.raw("GET", "/", &[("Host", &ui.host()), ("Cookie", &cookie)], "");
    assert_eq!(page.status, 200);
    let needle = "name=\"csrf-token\" content=\"";
    let i = page.body.find(needle).unwrap() + needle.len();
    let csrf = page.body[i..i + page.body[i..].find('"').unwrap()].to_string();
    assert!(csrf.len() >= 40, "a CSRF token: {csrf:?}");
    (cookie, csrf)
}

#[test]
fn web_ui_security_matrix() {
    let m = Machine::new();
    let first = m.ok(&["ui", "--no-browser"]);
    let ui = Ui { port: first["port"].as_u64().unwrap() as u16 };
    let host = ui.host();
    let origin = ui.origin();
    let watched = m.mkdir("code");
    let body = format!("{{\"path\":\"{}\"}}", watched.display());

    // The one-time link works once.
    let link = first["url"].as_str().unwrap();
    let path = &link[link.find("/login").unwrap()..];
    assert_eq!(ui.raw("GET", path, &[("Host", &host)], "").status, 303);
    let replay = ui.raw("GET", path, &[("Host", &host)], "");
    assert_eq!(replay.status, 403, "a replayed link is refused");
    assert!(replay.body.contains("vpd ui"), "the refusal says what to do: {}", replay.body);
    assert_eq!(ui.raw("GET", "/login?t=forged", &[("Host", &host)], "").status, 403);
    assert_eq!(ui.raw("GET", "/login", &[("Host", &host)], "").status, 403);

    let (cookie, csrf) = login(&m, &ui);
    let ok_post = || -> Vec<(&str, &str)> { vec![("Host", &host), ("Origin", &origin), ("Cookie", &cookie), ("X-CSRF-Token", &csrf)] };

    // Security headers on every answer, refused or not.
    for a in [ui.raw("GET", "/", &[("Host", &host), ("Cookie", &cookie)], ""), ui.raw("GET", "/", &[("Host", "evil.example")], "")] {
        let csp = a.header("content-security-policy").unwrap_or_default();
        assert!(csp.contains("frame-ancestors 'none'") && csp.contains("default-src 'self'"), "{csp}");
        assert_eq!(a.header("x-content-type-options").as_deref(), Some("nosniff"));
        assert_eq!(a.header("referrer-policy").as_deref(), Some("no-referrer"));
    }

    // Host allow-list: loopback names with the right port only (DNS rebinding).
    let wrong_port = format!("127.0.0.1:{}", ui.port.wrapping_add(1));
    let rebind = format!("127.0.0.1.evil.example:{}", ui.port);
    for bad in ["evil.example", wrong_port.as_str(), rebind.as_str(), "127.0.0.1", ""] {
        let a = ui.raw("GET", "/api/state", &[("Host", bad), ("Cookie", &cookie)], "");
        assert_eq!(a.status, 421, "Host {bad:?} must be refused: {}", a.head);
        let p = ui.raw("POST", "/api/watched", &[("Host", bad), ("Origin", &origin), ("Cookie", &cookie), ("X-CSRF-Token", &csrf)], &body);
        assert_eq!(p.status, 421, "Host {bad:?} on a change");
    }
    let no_host = ui.raw("GET", "/api/state", &[("Cookie", &cookie)], "");
    assert_eq!(no_host.status, 421, "a request without Host");
    for good in [host.clone(), format!("localhost:{}", ui.port), format!("[::1]:{}", ui.port)] {
        assert_eq!(ui.raw("GET", "/api/state", &[("Host", &good), ("Cookie", &cookie)], "").status, 200, "Host {good}");
    }

    // No cookie, or a forged one: no state, no page.
    assert_eq!(ui.raw("GET", "/api/state", &[("Host", &host)], "").status, 401);
    assert_eq!(ui.raw("GET", "/api/state", &[("Host", &host), ("Cookie", "vpd_session=v1.1.x.y")], "").status, 401);
    let page = ui.raw("GET", "/", &[("Host", &host)], "");
    assert_eq!(page.status, 401);
    assert!(page.body.contains("vpd ui") && !page.body.contains("csrf-token"), "{}", page.body);
    let p = ui.raw("POST", "/api/watched", &[("Host", &host), ("Origin", &origin), ("X-CSRF-Token", &csrf)], &body);
    assert_eq!(p.status, 401, "a change without the cookie");

    // Changes: foreign or missing Origin, missing or wrong CSRF token: refused, nothing changed.
    let cases: Vec<(&str, Vec<(&str, &str)>)> = vec![
        ("foreign Origin", vec![("Host", &host), ("Origin", "http://evil.example"), ("Cookie", &cookie), ("X-CSRF-Token", &csrf)]),
        ("Origin on another port", vec![("Host", &host), ("Origin", "http://127.0.0.1:1"), ("Cookie", &cookie), ("X-CSRF-Token", &csrf)]),
        ("null Origin", vec![("Host", &host), ("Origin", "null"), ("Cookie", &cookie), ("X-CSRF-Token", &csrf)]),
        ("no Origin", vec![("Host", &host), ("Cookie", &cookie), ("X-CSRF-Token", &csrf)]),
        ("no CSRF token", vec![("Host", &host), ("Origin", &origin), ("Cookie", &cookie)]),
        ("wrong CSRF token", vec![("Host", &host), ("Origin", &origin), ("Cookie", &cookie), ("X-CSRF-Token", "AAAA")]),
        ("cross-site fetch", vec![("Host", &host), ("Origin", &origin), ("Cookie", &cookie), ("X-CSRF-Token", &csrf), ("Sec-Fetch-Site", "cross-site")]),
    ];
    for (what, headers) in &cases {
        let a = ui.raw("POST", "/api/watched", headers, &body);
        assert_eq!(a.status, 403, "{what} must be refused: {} {}", a.head, a.body);
        let err: Value = serde_json::from_str(&a.body).unwrap_or(Value::Null);
        assert!(err["error"]["message"].is_string(), "{what}: a JSON error with a message: {}", a.body);
    }
    let state: Value = serde_json::from_str(&ui.raw("GET", "/api/state", &[("Host", &host), ("Cookie", &cookie)], "").body).unwrap();
    assert_eq!(state["watched"], serde_json::json!([]), "no refused change went through");
    assert!(!std::fs::read_to_string(m.home().join("config.json")).unwrap_or_default().contains("watchedFolders"));

    // Another session's CSRF token does not fit this cookie.
    let (_, other_csrf) = login(&m, &ui);
    let a = ui.raw("POST", "/api/watched", &[("Host", &host), ("Origin", &origin), ("Cookie", &cookie), ("X-CSRF-Token", &other_csrf)], &body);
    assert_eq!(a.status, 403, "a CSRF token of another session");

    // Live updates from another site: refused (SSE with a foreign Origin, any WebSocket).
    let sse = ui.raw("GET", "/api/events", &[("Host", &host), ("Cookie", &cookie), ("Origin", "http://evil.example")], "");
    assert_eq!(sse.status, 403, "{}", sse.head);
    let ws = ui.raw(
        "GET",
        "/api/events",
        &[("Host", &host), ("Cookie", &cookie), ("Origin", "http://evil.example"), ("Upgrade", "websocket"), ("Connection", "Upgrade"),
          ("Sec-WebSocket-Key", "dGhlIHNhbXBsZSBub25jZQ=="), ("Sec-WebSocket-Version", "13")],
        "",
    );
    assert_eq!(ws.status, 403, "a WebSocket from another site: {}", ws.head);
    let ws_same = ui.raw(
        "GET",
        "/api/events",
        &[("Host", &host), ("Cookie", &cookie), ("Origin", &origin), ("Upgrade", "websocket"), ("Connection", "Upgrade"),
          ("Sec-WebSocket-Key", "dGhlIHNhbXBsZSBub25jZQ=="), ("Sec-WebSocket-Version", "13")],
        "",
    );
    assert_ne!(ws_same.status, 101, "no WebSocket is served at all");
    // The same-origin stream works: its first event is the whole state.
    let mut s = TcpStream::connect(("127.0.0.1", ui.port)).unwrap();
    s.set_read_timeout(Some(std::time::Duration::from_secs(5))).unwrap();
    write!(s, "GET /api/events HTTP/1.1\r\nHost: {host}\r\nCookie: {cookie}\r\nAccept: text/event-stream\r\n\r\n").unwrap();
    let mut buf = vec![0u8; 65536];
    let mut got = String::new();
    while !got.contains("\n\n") || !got.contains("event: state") {
        let n = s.read(&mut buf).unwrap();
        assert!(n > 0, "the event stream ended: {got}");
        got.push_str(&String::from_utf8_lossy(&buf[..n]));
    }
    assert!(got.starts_with("HTTP/1.1 200") && got.contains("text/event-stream") && got.contains("\"health\""), "{got}");

    // The right request is accepted.
    let a = ui.raw("POST", "/api/watched", &ok_post(), &body);
    assert_eq!(a.status, 200, "{} {}", a.head, a.body);
    wait_until("the watched folder in the state", std::time::Duration::from_secs(10), || {
        let state: Value = serde_json::from_str(&ui.raw("GET", "/api/state", &[("Host", &host), ("Cookie", &cookie)], "").body).unwrap();
        state["watched"][0]["path"] == watched.display().to_string().as_str()
    });

    // Bad input: a clear error, nothing changed.
    let a = ui.raw("POST", "/api/watched", &ok_post(), "{\"path\": \"relative/dir\"}");
    assert_eq!(a.status, 400, "{}", a.body);
    assert!(a.body.contains("not an absolute path"), "{}", a.body);
    let a = ui.raw("POST", "/api/watched", &ok_post(), "{not json");
    assert!(a.status == 400 || a.status == 422, "{}", a.head);
    let a = ui.raw("POST", "/api/unbind", &ok_post(), "{\"directory\": \"/nonexistent/x\"}");
    assert_eq!(a.status, 400, "{}", a.body);

    // Log out: the cookie is dead.
    assert_eq!(ui.raw("POST", "/api/logout", &ok_post(), "{}").status, 200);
    assert_eq!(ui.raw("GET", "/api/state", &[("Host", &host), ("Cookie", &cookie)], "").status, 401);

    // The UI secret is private.
    assert_eq!(mode(&m.home().join("ui-token")), 0o600);
}

#[test]
fn a_corrupt_ui_token_is_reported_not_replaced() {
    let m = Machine::new();
    std::fs::create_dir_all(m.home()).unwrap();
    std::fs::write(m.home().join("ui-token"), "not a secret\n").unwrap();
    std::fs::set_permissions(m.home().join("ui-token"), std::os::unix::fs::PermissionsExt::from_mode(0o600)).unwrap();
    let err = m.fails(&["ui", "--no-browser"]);
    let msg = err["message"].as_str().unwrap_or_default().to_string();
    assert!(msg.contains("ui-token") && msg.contains("delete it"), "{err}");
    assert_eq!(std::fs::read_to_string(m.home().join("ui-token")).unwrap(), "not a secret\n", "never silently replaced");
    // The rest of the daemon works.
    m.ok(&["status"]);
}

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
    assert_eq!(ui.raw("HEAD", path, &[("Host", &host)], "").status, 200, "a HEAD does not use the link up");
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
        (
            "cross-site fetch",
            vec![("Host", &host), ("Origin", &origin), ("Cookie", &cookie), ("X-CSRF-Token", &csrf), ("Sec-Fetch-Site", "cross-site")],
        ),
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
        &[
            ("Host", &host),
            ("Cookie", &cookie),
            ("Origin", "http://evil.example"),
            ("Upgrade", "websocket"),
            ("Connection", "Upgrade"),
            ("Sec-WebSocket-Key", "dGhlIHNhbXBsZSBub25jZQ=="),
            ("Sec-WebSocket-Version", "13"),
        ],
        "",
    );
    assert_eq!(ws.status, 403, "a WebSocket from another site: {}", ws.head);
    let ws_same = ui.raw(
        "GET",
        "/api/events",
        &[
            ("Host", &host),
            ("Cookie", &cookie),
            ("Origin", &origin),
            ("Upgrade", "websocket"),
            ("Connection", "Upgrade"),
            ("Sec-WebSocket-Key", "dGhlIHNhbXBsZSBub25jZQ=="),
            ("Sec-WebSocket-Version", "13"),
        ],
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

    // "Bind a folder…" completion (issue 11 items 1 and 9): the CSRF header even on GET,
    // directories only; binding with no org paired says what to do.
    let pick = m.mkdir("pick");
    for d in ["pick/alpha", "pick/beta/.git", "pick/.hidden"] {
        m.mkdir(d);
    }
    std::fs::write(pick.join("afile"), "a file").unwrap();
    let q = format!("/api/folders/complete?path={}/", pick.display());
    let no_csrf = ui.raw("GET", &q, &[("Host", &host), ("Cookie", &cookie)], "");
    assert_eq!(no_csrf.status, 403, "completion without the CSRF header: {}", no_csrf.body);
    let wrong = ui.raw("GET", &q, &[("Host", &host), ("Cookie", &cookie), ("X-CSRF-Token", &other_csrf)], "");
    assert_eq!(wrong.status, 403, "completion with another session's CSRF token");
    let a = ui.raw("GET", &q, &[("Host", &host), ("Cookie", &cookie), ("X-CSRF-Token", &csrf)], "");
    assert_eq!(a.status, 200, "{}", a.body);
    let listed: Value = serde_json::from_str(&a.body).unwrap();
    let p = pick.display();
    assert_eq!(
        listed["completions"],
        serde_json::json!([{"value": format!("{p}/alpha/"), "repository": false}, {"value": format!("{p}/beta/"), "repository": true}]),
        "directories only, hidden ones left out"
    );
    let preview = ui.raw("POST", "/api/folders/preview", &ok_post(), &format!("{{\"directory\": \"{p}\"}}"));
    assert_eq!(preview.status, 200, "{}", preview.body);
    let preview: Value = serde_json::from_str(&preview.body).unwrap();
    assert_eq!((preview["repositoriesBelow"].as_u64(), preview["recommendRecursive"].as_bool()), (Some(1), Some(true)), "{preview}");
    let a = ui.raw("POST", "/api/bind", &ok_post(), &format!("{{\"directory\": \"{p}\", \"recursive\": true}}"));
    assert_eq!(a.status, 404, "{}", a.body);
    assert!(a.body.contains("not paired with any org") && a.body.contains("vpd pair"), "{}", a.body);
    assert!(!pick.join(".viewport").exists(), "a refused bind writes nothing");
    let a = ui.raw("POST", "/api/bind", &ok_post(), "{\"directory\": \"relative/dir\"}");
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

/// GET /api/state with a fresh login.
fn state(m: &Machine, ui: &Ui, cookie: &str) -> Value {
    let _ = m;
    serde_json::from_str(&ui.raw("GET", "/api/state", &[("Host", &ui.host()), ("Cookie", cookie)], "").body).unwrap()
}

#[test]
fn suggestions_come_from_sessions_the_shell_hook_and_watched_folders() {
    let server = Server::start();
    let ws = server.org_with_member("Acme Engineering", "acme", "ann@example.com");
    let m = Machine::new();
    m.pair(&server, "acme", "ann@example.com");
    let first = m.ok(&["ui", "--no-browser"]);
    let ui = Ui { port: first["port"].as_u64().unwrap() as u16 };
    let (cookie, csrf) = login(&m, &ui);
    let hint = |rel: &str, org: &str| {
        let d = m.mkdir(rel);
        std::fs::create_dir_all(d.join(".viewport")).unwrap();
        std::fs::create_dir_all(d.join(".git")).unwrap();
        std::fs::write(d.join(".viewport/workspace.yaml"), format!("org_id: {org}\n")).unwrap();
        d
    };
    let find = |dir: &std::path::Path| {
        let s = state(&m, &ui, &cookie);
        s["suggestions"].as_array().unwrap().iter().find(|x| x["directory"] == dir.display().to_string()).cloned()
    };

    // A session started in a hinted, unbound repository: it runs local-only, and the daemon
    // offers the binding.
    let a = hint("work/a", &ws);
    let out = m.command().args(["session", "start", "--cwd"]).arg(&a).output().unwrap();
    assert!(out.status.success());
    let mut s = None;
    wait_until("the session-start suggestion", std::time::Duration::from_secs(10), || {
        s = find(&a);
        s.is_some()
    });
    let s = s.unwrap();
    assert_eq!((s["kind"].as_str(), s["source"].as_str(), s["orgName"].as_str()), (Some("bind"), Some("session"), Some("Acme Engineering")));
    let activity = m.ok(&["status"])["activity"].clone();
    assert!(
        activity.as_array().unwrap().iter().any(|e| e["kind"] == "suggestion"
            && e["message"].as_str().is_some_and(|m| m.starts_with("Bind ~/work/a to Acme Engineering on http://127.0.0.1:"))),
        "{activity}"
    );

    // "Never" goes to hint-declines.json: `vpd hint` stays quiet there afterwards.
    let post = |path: &str, body: String| {
        ui.raw("POST", path, &[("Host", &ui.host()), ("Origin", &ui.origin()), ("Cookie", &cookie), ("X-CSRF-Token", &csrf)], &body)
    };
    let body = serde_json::json!({"directory": a.display().to_string(), "orgId": ws}).to_string();
    assert_eq!(post("/api/suggestions/decline", body.clone()).status, 200);
    assert!(find(&a).is_none());
    let declines = std::fs::read_to_string(m.home().join("hint-declines.json")).unwrap();
    assert!(declines.contains(&a.display().to_string()), "{declines}");
    let quiet = m.command().current_dir(&a).args(["hint", "--json"]).output().unwrap();
    assert_eq!(serde_json::from_slice::<Value>(&quiet.stdout).unwrap()["action"], "quiet");
    // Answering it again: a clear error, nothing changed.
    let again = post("/api/suggestions/bind", body);
    assert_eq!(again.status, 400, "{}", again.body);
    assert!(again.body.contains("no longer suggests"), "{}", again.body);

    // The shell hook reports what the terminal did not settle; "Bind" binds it.
    let b = hint("work/b", &ws);
    m.command().current_dir(&b).args(["hint", "--no-prompt"]).output().unwrap();
    wait_until("the shell-hook suggestion", std::time::Duration::from_secs(10), || find(&b).is_some_and(|s| s["source"] == "shell"));
    let r = post("/api/suggestions/bind", serde_json::json!({"directory": b.display().to_string(), "orgId": ws}).to_string());
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(m.ok(&["resolve", b.to_str().unwrap()])["orgId"], ws.as_str());

    // A repository of an org this machine is not paired with: a "pair" suggestion that Bind refuses.
    let c = hint("work/c", "01J0000000000000000000000Z");
    m.command().current_dir(&c).args(["hint", "--no-prompt"]).output().unwrap();
    wait_until("the not-paired suggestion", std::time::Duration::from_secs(10), || find(&c).is_some_and(|s| s["kind"] == "pair"));
    let r =
        post("/api/suggestions/bind", serde_json::json!({"directory": c.display().to_string(), "orgId": "01J0000000000000000000000Z"}).to_string());
    assert_eq!(r.status, 404, "{}", r.body);
    // "Not now" hides it (until the daemon restarts) without remembering a "no".
    let r = post(
        "/api/suggestions/dismiss",
        serde_json::json!({"directory": c.display().to_string(), "orgId": "01J0000000000000000000000Z"}).to_string(),
    );
    assert_eq!(r.status, 200);
    assert!(find(&c).is_none());
    let declines: Value = serde_json::from_str(&std::fs::read_to_string(m.home().join("hint-declines.json")).unwrap()).unwrap();
    assert!(!declines["declines"].to_string().contains(&c.display().to_string()), "Not now is not a no: {declines}");

    // Watched folders: repositories already there, and a new one cloned later.
    let code = m.mkdir("code");
    hint("code/old", &ws);
    assert_eq!(post("/api/watched", serde_json::json!({"path": "~/code"}).to_string()).status, 200);
    wait_until("the existing repository suggested", std::time::Duration::from_secs(10), || {
        find(&code.join("old")).is_some_and(|s| s["source"] == "watched")
    });
    let fresh = code.join("new-clone");
    std::fs::create_dir(&fresh).unwrap();
    std::thread::sleep(std::time::Duration::from_millis(350));
    std::fs::create_dir(fresh.join(".viewport")).unwrap();
    std::thread::sleep(std::time::Duration::from_millis(350));
    std::fs::write(fresh.join(".viewport/workspace.yaml"), format!("org_id: {ws}\n")).unwrap();
    wait_until("the new clone suggested", std::time::Duration::from_secs(10), || find(&fresh).is_some());
    let s = state(&m, &ui, &cookie);
    assert_eq!(s["watched"][0]["repositories"], 2, "{}", s["watched"]);
    assert_eq!(s["watched"][0]["display"], "~/code");
}

/// Like the local API's peer-uid check: another user on this machine gets no answer from
/// the UI's port, not even for a valid login link (which they might have seen in `ps`).
#[test]
fn other_users_get_no_answer() {
    if unsafe { libc::geteuid() } != 0 {
        eprintln!("skipped: needs root to act as another user (CI runs as root)");
        return;
    }
    let m = Machine::new();
    let link = m.ok(&["ui", "--no-browser"]);
    let port = link["port"].as_u64().unwrap();
    let url = link["url"].as_str().unwrap();
    let path = &url[url.find("/login").unwrap()..];
    let script = format!(
        "import socket\ns=socket.create_connection(('127.0.0.1',{port}))\n\
         s.sendall(b'GET {path} HTTP/1.1\\r\\nHost: 127.0.0.1:{port}\\r\\nConnection: close\\r\\n\\r\\n')\n\
         try:\n  d=s.recv(1000)\nexcept OSError:\n  d=b''\nprint(len(d))\n"
    );
    let out = std::process::Command::new("setpriv")
        .args(["--reuid=65534", "--regid=65534", "--clear-groups", "/usr/bin/python3", "-c", &script])
        .output()
        .expect("setpriv (util-linux) and python3");
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), "0", "another user got an answer");
    // The log line may land a moment after the connection closes (a busy machine).
    wait_until("the refusal in the log", std::time::Duration::from_secs(10), || m.logs().contains("refused a connection from another user"));
    // The link was not used up: its owner can still log in.
    let ui = Ui { port: port as u16 };
    let a = ui.raw("GET", path, &[("Host", &ui.host())], "");
    assert_eq!(a.status, 303);
}

/// The web UI of a home whose port is not chosen (no `VPD_UI_PORT`, no `daemon.uiPort`).
fn default_port_machine() -> Machine {
    let mut m = Machine::new();
    // An empty VPD_UI_PORT is no choice: the daemon uses its default (7070, else any).
    m.env.push(("VPD_UI_PORT".into(), String::new()));
    m
}

/// SPEC A5: every user (every home) gets a web UI. The default port is taken by the first
/// daemon (or by anything else on this machine): the next takes another loopback port, and
/// `vpd ui` learns it from its own daemon over `vpd.sock`.
#[test]
fn two_homes_on_one_machine_both_get_a_web_ui() {
    let (a, b) = (default_port_machine(), default_port_machine());
    // Hold 7070 ourselves if it is free, so the fallback is exercised whatever else runs here.
    let _holder = std::net::TcpListener::bind(("127.0.0.1", 7070)).ok();
    let mut ports = Vec::new();
    for m in [&a, &b] {
        let ui = m.ok(&["ui", "--no-browser"]);
        let port = ui["port"].as_u64().unwrap() as u16;
        assert_ne!(port, 7070, "7070 is held by another: {ui}");
        let link = ui["url"].as_str().unwrap();
        assert!(link.starts_with(&format!("http://127.0.0.1:{port}/login?t=")), "{ui}");
        let page = Ui { port }.raw("GET", &link[link.find("/login").unwrap()..], &[("Host", &format!("127.0.0.1:{port}"))], "");
        assert_eq!(page.status, 303, "the link of each home works on its own port: {}", page.head);
        ports.push(port);
    }
    assert_ne!(ports[0], ports[1], "two homes, two UIs");
}

/// SPEC A5: a port someone chose (`daemon.uiPort`) that is taken is an error that says what
/// to do, not a silent move to another port.
#[test]
fn a_chosen_port_that_is_taken_is_an_error() {
    let m = default_port_machine();
    let taken = std::net::TcpListener::bind(("127.0.0.1", 0)).unwrap();
    let port = taken.local_addr().unwrap().port();
    std::fs::create_dir_all(m.home()).unwrap();
    let mut perms = std::fs::metadata(m.home()).unwrap().permissions();
    std::os::unix::fs::PermissionsExt::set_mode(&mut perms, 0o700);
    std::fs::set_permissions(m.home(), perms).unwrap();
    std::fs::write(m.home().join("config.json"), format!("{{\"version\":1,\"daemon\":{{\"uiPort\":{port}}},\"pairings\":[]}}\n")).unwrap();
    let mut perms = std::fs::metadata(m.home().join("config.json")).unwrap().permissions();
    std::os::unix::fs::PermissionsExt::set_mode(&mut perms, 0o600);
    std::fs::set_permissions(m.home().join("config.json"), perms).unwrap();
    let e = m.fails(&["ui", "--no-browser"]);
    let msg = e["message"].as_str().unwrap();
    assert!(msg.contains(&format!("127.0.0.1:{port}")) && msg.contains("daemon.uiPort"), "{e}");
}

//! One proxy rule set (issue 10 item 6): the platform calls and the relay's WebSocket go
//! through the same proxy — HTTP CONNECT, SOCKS5 and SOCKS5h proxies the test runs — `NO_PROXY`
//! with addresses, ranges and ports sends them direct, and the proxy recorded by `vpd pair` is
//! used by a daemon started without the shell's variables.

mod support;
use std::time::Duration;
use support::*;

fn connected(m: &Machine) {
    wait_until("connected", Duration::from_secs(20), || m.ok(&["status"])["pairings"][0]["state"] == "connected");
}

/// Pairs, binds, connects and streams one session with `env` set; returns the bound dir.
fn pair_bind_stream(server: &Server, m: &mut Machine, acme: &str, env: &[(&str, &str)]) -> std::path::PathBuf {
    m.env = env.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
    m.pair(server, acme, "alice@example.com");
    let api = m.mkdir("work/api");
    m.ok(&["bind", api.to_str().unwrap()]);
    connected(m);
    let out = m.command().args(["run", "--cwd", api.to_str().unwrap(), "--", "echo", "through"]).output().unwrap();
    assert!(out.status.success());
    wait_until("recorded", Duration::from_secs(10), || {
        server.admin(&["session", "list", "--org", "acme"]).as_array().is_some_and(|a| a.iter().any(|s| s["ended_at"].is_string()))
    });
    api
}

#[test]
fn platform_and_relay_go_through_http_connect_socks5_and_socks5h_proxies() {
    let target = |s: &Server| format!("127.0.0.1:{}", s.port);
    // HTTP proxy: platform requests in absolute form (plain http), the relay by CONNECT.
    {
        let server = Server::start();
        let acme = server.org_with_member("Acme Engineering", "acme", "alice@example.com");
        let proxy = HttpProxy::start();
        let mut m = Machine::new();
        pair_bind_stream(&server, &mut m, &acme, &[("HTTP_PROXY", &proxy.url), ("NO_PROXY", "")]);
        let log = proxy.log.lock().unwrap().clone();
        assert!(log.iter().any(|l| l.starts_with("POST http://") && l.contains("/api/pairing-codes")), "the platform through it: {log:?}");
        assert!(log.iter().any(|l| *l == format!("CONNECT {} HTTP/1.1", target(&server))), "the relay through it: {log:?}");
    }
    // SOCKS5h (the proxy resolves names) and SOCKS5 (resolved here): both HTTP and the relay.
    for scheme in ["socks5h", "socks5"] {
        let port = free_port();
        // `localhost` shows who resolves the name.
        let server = Server::start_as(port, format!("http://localhost:{port}"));
        let acme = server.org_with_member("Acme Engineering", "acme", "alice@example.com");
        let proxy = Socks5Proxy::start(scheme);
        let mut m = Machine::new();
        m.env = vec![("ALL_PROXY".into(), proxy.url.clone())];
        let (p, code) = m.start_pair(&["--server", &format!("http://localhost:{port}"), "--org", &acme]);
        server.approve(code["code"].as_str().unwrap(), &acme, "alice@example.com");
        assert_eq!(p.finish()["event"], "paired");
        connected(&m);
        let log = proxy.log.lock().unwrap().clone();
        let want = if scheme == "socks5h" { format!("CONNECT localhost:{port}") } else { format!("CONNECT 127.0.0.1:{port}") };
        assert!(log.len() >= 3 && log.iter().all(|l| *l == want), "{scheme}: platform calls and the relay, named as {want}: {log:?}");
    }
}

#[test]
fn no_proxy_ranges_and_ports_go_direct_and_a_recorded_proxy_outlives_the_shell() {
    let server = Server::start();
    let acme = server.org_with_member("Acme Engineering", "acme", "alice@example.com");
    let proxy = Socks5Proxy::start("socks5h");
    let mut m = Machine::new();
    // A range that holds the server: nothing goes through the proxy.
    pair_bind_stream(&server, &mut m, &acme, &[("ALL_PROXY", &proxy.url), ("NO_PROXY", "10.0.0.0/8,127.0.0.0/8")]);
    assert!(proxy.log.lock().unwrap().is_empty(), "{:?}", proxy.log.lock().unwrap());
    // A rule for another port does not: the next pairing records the proxy it used.
    m.ok(&["daemon", "stop"]);
    m.env = vec![("ALL_PROXY".into(), proxy.url.clone()), ("NO_PROXY".into(), "127.0.0.1:1".into())];
    let (p, code) = m.start_pair(&["--server", &server.url, "--org", &acme, "--force"]);
    server.approve(code["code"].as_str().unwrap(), &acme, "alice@example.com");
    assert_eq!(p.finish()["event"], "paired");
    connected(&m);
    assert!(!proxy.log.lock().unwrap().is_empty());
    let recorded = m.config()["daemon"]["proxy"].clone();
    assert_eq!(recorded["allProxy"], proxy.url.as_str(), "{recorded}");
    // A daemon started without the shell's variables (as at login) uses what was recorded.
    m.ok(&["daemon", "stop"]);
    m.env.clear();
    proxy.log.lock().unwrap().clear();
    m.ok(&["reconnect"]);
    connected(&m);
    assert!(!proxy.log.lock().unwrap().is_empty(), "the relay went through the recorded proxy");
    let doctor = m.ok(&["doctor"]);
    let line = doctor["checks"].as_array().unwrap().iter().find(|c| c["name"] == "proxy (the daemon's)").cloned().expect("doctor names the proxy");
    assert!(line["detail"].as_str().unwrap().contains("recorded"), "{line}");
}

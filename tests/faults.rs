//! Faults between the daemon and the relay, through a TCP proxy the test controls: relay
//! restarted mid-session, connection cut, connection stalled (no pong), platform down for a
//! minute. In each case the pairing survives and the org's record of the session ends up
//! complete, in order, without duplicates: byte for byte what the terminal showed.

mod support;
use serde_json::Value;
use std::process::Stdio;
use std::time::Duration;
use support::*;

struct Rig {
    server: Server,
    proxy: Proxy,
    m: Machine,
    org: String,
    dir: std::path::PathBuf,
}

fn rig() -> Rig {
    let port = free_port();
    let proxy = Proxy::start(port);
    let server = Server::start_as(port, proxy.url());
    let org = server.org_with_member("Acme Engineering", "acme", "alice@example.com");
    let mut m = Machine::new();
    m.env.push(("VPD_RELAY_PING_SECS".into(), "2".into()));
    let (p, code) = m.start_pair(&["--server", &proxy.url(), "--org", "acme"]);
    server.approve(code["code"].as_str().unwrap(), "acme", "alice@example.com");
    assert_eq!(p.finish()["event"], "paired");
    let dir = m.mkdir("api");
    m.ok(&["bind", dir.to_str().unwrap(), "--org", "acme"]);
    wait_connected(&m);
    Rig { server, proxy, m, org, dir }
}

fn state(m: &Machine) -> String {
    m.ok(&["status"])["pairings"][0]["state"].as_str().unwrap_or("").to_string()
}

fn wait_connected(m: &Machine) {
    wait_until("the pairing to be connected", Duration::from_secs(30), || state(m) == "connected");
}

fn sessions(server: &Server) -> Vec<Value> {
    server.admin(&["session", "list", "--org", "acme"]).as_array().cloned().unwrap_or_default()
}

/// Runs a session of 40 lines over 4 s, applies `fault` after 1 s, and checks the record.
fn survives(fault: impl FnOnce(&mut Rig)) {
    let mut r = rig();
    let script = "i=1; while [ $i -le 40 ]; do echo frame-$i; i=$((i+1)); sleep 0.1; done";
    let run =
        r.m.command()
            .args(["run", "--cwd", r.dir.to_str().unwrap(), "--", "sh", "-c", script])
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
    std::thread::sleep(Duration::from_secs(1));
    fault(&mut r);
    let out = run.wait_with_output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(String::from_utf8_lossy(&out.stdout).contains("frame-40"));
    assert_eq!(r.m.pairing_count(), 1, "a fault never revokes");
    wait_connected(&r.m);
    wait_until("the record to be complete", Duration::from_secs(30), || sessions(&r.server).first().is_some_and(|s| s["ended_at"].is_string()));
    let s = sessions(&r.server)[0].clone();
    let rec = r.server.admin_raw(&["session", "show", s["id"].as_str().unwrap(), "--raw"], None).stdout;
    assert_eq!(String::from_utf8_lossy(&rec), String::from_utf8_lossy(&out.stdout), "complete, in order, no duplicates");
    assert_eq!(s["gap_count"], 0);
    let _ = &r.org;
}

#[test]
fn relay_restarted_mid_session() {
    survives(|r| r.server.restart());
}

#[test]
fn connection_cut_mid_session() {
    survives(|r| r.proxy.cut());
}

#[test]
fn connection_stalled_without_pongs() {
    survives(|r| {
        r.proxy.stall(true);
        wait_until("the daemon to notice the dead connection", Duration::from_secs(20), || state(&r.m).starts_with("reconnecting"));
        r.proxy.stall(false);
    });
}

#[test]
fn platform_down_for_a_minute() {
    survives(|r| {
        r.server.stop();
        let deadline = std::time::Instant::now() + Duration::from_secs(60);
        let mut states = std::collections::BTreeSet::new();
        while std::time::Instant::now() < deadline {
            states.insert(state(&r.m).split(' ').next().unwrap_or("").to_string());
            assert_eq!(r.m.pairing_count(), 1, "the pairing survives an outage");
            std::thread::sleep(Duration::from_secs(2));
        }
        assert!(states.contains("reconnecting") && states.contains("offline"), "five quick retries, then offline: {states:?}");
        let st = r.m.ok(&["status"]);
        assert!(st["pairings"][0]["lastError"].is_string(), "{st}");
        assert!(st["pairings"][0]["nextRetryAt"].is_string(), "{st}");
        assert!(st["pairings"][0]["queuedBytes"].as_u64().unwrap() > 0, "frames wait for the relay: {st}");
        r.server.restart();
        r.m.ok(&["reconnect"]);
    });
}

#[test]
fn the_relay_connection_honours_the_proxy_variables() {
    let server = Server::start();
    let org = server.org_with_member("Acme Engineering", "acme", "alice@example.com");
    let proxy = HttpProxy::start();
    let mut m = Machine::new();
    m.env.push(("ALL_PROXY".into(), proxy.url.clone()));
    m.pair(&server, &org, "alice@example.com");
    let dir = m.mkdir("api");
    m.ok(&["bind", dir.to_str().unwrap(), "--org", "acme"]);
    wait_connected(&m);
    let out = m.command().args(["run", "--cwd", dir.to_str().unwrap(), "--", "echo", "via-proxy"]).output().unwrap();
    assert!(out.status.success());
    let log = proxy.log.lock().unwrap().clone();
    assert!(log.iter().any(|l| l == &format!("CONNECT 127.0.0.1:{} HTTP/1.1", server.port)), "the WebSocket went through the proxy: {log:?}");
    wait_until("the record", Duration::from_secs(10), || sessions(&server).first().is_some_and(|s| s["ended_at"].is_string()));
}

#[test]
fn overflow_while_the_relay_is_away_becomes_a_visible_gap() {
    let port = free_port();
    let proxy = Proxy::start(port);
    let mut server = Server::start_as(port, proxy.url());
    let org = server.org_with_member("Acme Engineering", "acme", "alice@example.com");
    let mut m = Machine::new();
    m.env.push(("VPD_OUTBOX_BYTES".into(), "20000".into()));
    m.pair(&server, &org, "alice@example.com");
    let dir = m.mkdir("api");
    m.ok(&["bind", dir.to_str().unwrap(), "--org", "acme"]);
    wait_connected(&m);
    server.stop();
    // About 60 KB of output in 300 frames while nothing is acked: more than the 20 KB kept.
    let script = "i=1; while [ $i -le 300 ]; do printf 'line-%04d-%0180d\\n' $i 0; i=$((i+1)); sleep 0.002; done";
    let out = m.command().args(["run", "--cwd", dir.to_str().unwrap(), "--", "sh", "-c", script]).output().unwrap();
    assert!(out.status.success());
    let st = m.ok(&["status"]);
    assert!(st["pairings"][0]["framesDropped"].as_u64().unwrap() > 0, "{st}");
    server.restart();
    m.ok(&["reconnect"]);
    wait_connected(&m);
    wait_until("the record", Duration::from_secs(30), || sessions(&server).first().is_some_and(|s| s["ended_at"].is_string()));
    let s = sessions(&server)[0].clone();
    assert_eq!(s["gap_count"], 1, "one visible gap: {s}");
    let rec = server.admin_raw(&["session", "show", s["id"].as_str().unwrap(), "--raw"], None).stdout;
    assert!(!rec.is_empty() && rec.len() < out.stdout.len(), "the oldest output gave way");
    assert!(out.stdout.ends_with(&rec), "what was kept is the newest output, in order");
}

#[test]
fn relay_tokens_expiring_during_a_session_are_renewed() {
    let port = free_port();
    let proxy = Proxy::start(port);
    let server = Server::start_with(port, proxy.url(), &["--relay-token-ttl", "1"]);
    let org = server.org_with_member("Acme Engineering", "acme", "alice@example.com");
    let mut m = Machine::new();
    m.env.push(("VPD_RELAY_PING_SECS".into(), "2".into()));
    m.pair(&server, &org, "alice@example.com");
    let dir = m.mkdir("api");
    m.ok(&["bind", dir.to_str().unwrap(), "--org", "acme"]);
    wait_connected(&m);
    let script = "i=1; while [ $i -le 40 ]; do echo frame-$i; i=$((i+1)); sleep 0.1; done";
    let run = m.command().args(["run", "--cwd", dir.to_str().unwrap(), "--", "sh", "-c", script]).stdout(Stdio::piped()).spawn().unwrap();
    // The token the bridge connected with expires within a second; cut the connection twice
    // so that every reconnect needs a fresh one.
    for _ in 0..2 {
        std::thread::sleep(Duration::from_millis(1500));
        proxy.cut();
    }
    let out = run.wait_with_output().unwrap();
    assert!(out.status.success());
    wait_connected(&m);
    assert_eq!(m.pairing_count(), 1, "an expired token is no revocation");
    wait_until("the record", Duration::from_secs(30), || sessions(&server).first().is_some_and(|s| s["ended_at"].is_string()));
    let s = sessions(&server)[0].clone();
    let rec = server.admin_raw(&["session", "show", s["id"].as_str().unwrap(), "--raw"], None).stdout;
    assert_eq!(String::from_utf8_lossy(&rec), String::from_utf8_lossy(&out.stdout));
}

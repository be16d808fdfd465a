//! Several processes at once, and the daemon dying in the middle of writes (at each step of
//! a re-pairing, deterministically, and with SIGKILL at arbitrary moments): no entry is lost,
//! every file stays valid, and each pairing keeps the key the platform registered for it.

mod support;
use base64::Engine;
use serde_json::Value;
use std::process::Stdio;
use std::time::Duration;
use support::*;

fn setup(n: usize) -> (Server, Vec<String>) {
    let server = Server::start();
    server.user("alice@example.com");
    let orgs: Vec<String> = (0..n).map(|i| server.org(&format!("Org {i}"), &format!("org{i}"))).collect();
    for i in 0..n {
        server.member(&format!("org{i}"), "alice@example.com");
    }
    (server, orgs)
}

/// Checks every invariant a crash must not break.
fn assert_consistent(m: &Machine, server: &Server, when: &str) {
    let st = m.ok(&["status"]); // (re)starts nothing, reads the files
    assert!(st["problems"].as_array().unwrap().is_empty(), "{when}: {st}");
    // Start the daemon: it finishes or drops what a crash left.
    m.ok(&["install"]);
    let leftovers: Vec<String> = std::fs::read_dir(m.home().join("relay-identities"))
        .unwrap()
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| !n.ends_with(".json"))
        .collect();
    assert!(leftovers.is_empty(), "{when}: left behind {leftovers:?}");
    for p in m.config()["pairings"].as_array().unwrap() {
        let ws = p["workspaceId"].as_str().unwrap();
        let id = m.identity(ws);
        // The platform's view of this pairing's key, from the relay token it issues.
        let (status, body) = server.relay_token(p);
        assert_eq!(status, 200, "{when}: {ws}: {body}");
        let jwt = body["relayToken"].as_str().unwrap();
        let claims: Value =
            serde_json::from_slice(&base64::engine::general_purpose::URL_SAFE_NO_PAD.decode(jwt.split('.').nth(1).unwrap()).unwrap()).unwrap();
        assert_eq!(claims["publicKey"], id["publicKey"], "{when}: {ws}: the identity on disk is not the key the platform registered");
    }
}

#[test]
fn concurrent_binds_and_pairs_lose_nothing() {
    let (server, orgs) = setup(3);
    let m = Machine::new();
    m.pair(&server, &orgs[0], "alice@example.com");
    let dirs: Vec<_> = (0..10).map(|i| m.mkdir(&format!("w/d{i}"))).collect();

    // Two pairings in flight while ten binds run.
    let pairs: Vec<_> = orgs[1..].iter().map(|o| (o.clone(), m.start_pair(&["--server", &server.url, "--org", o]))).collect();
    let binds: Vec<_> = dirs
        .iter()
        .map(|d| {
            m.command().args(["bind", d.to_str().unwrap(), "--org", "org0", "--json"]).stdout(Stdio::piped()).stderr(Stdio::piped()).spawn().unwrap()
        })
        .collect();
    for (org, (_, code)) in &pairs {
        server.approve(code["code"].as_str().unwrap(), org, "alice@example.com");
    }
    for b in binds {
        let out = b.wait_with_output().unwrap();
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    }
    for (_, (p, _)) in pairs {
        assert_eq!(p.finish()["event"], "paired");
    }
    let st = m.ok(&["status"]);
    assert_eq!(st["pairings"].as_array().unwrap().len(), 3, "{st}");
    assert_eq!(st["directories"].as_array().unwrap().len(), 10, "{st}");
    assert!(st["problems"].as_array().unwrap().is_empty());
    assert_consistent(&m, &server, "after concurrent work");
}

#[test]
fn a_crash_at_each_step_of_a_repairing_keeps_key_and_config_together() {
    let (server, orgs) = setup(1);
    let mut m = Machine::new();
    m.pair(&server, &orgs[0], "alice@example.com");
    for point in ["pair:after-identity", "pair:after-config"] {
        m.ok(&["daemon", "stop"]);
        m.env = vec![("VPD_FAILPOINT".into(), point.into())];
        let (p, code) = m.start_pair(&["--server", &server.url, "--org", &orgs[0], "--force"]);
        server.approve(code["code"].as_str().unwrap(), &orgs[0], "alice@example.com");
        let last = p.end();
        assert!(last.is_some_and(|l| l["event"] == "error"), "the daemon died at {point}");
        m.env.clear();
        wait_until("the daemon to be gone", Duration::from_secs(5), || m.daemon_pid().is_none_or(|pid| unsafe { libc::kill(pid as i32, 0) } != 0));
        assert_consistent(&m, &server, point);
        assert_eq!(m.pairing_count(), 1, "{point}");
    }
}

#[test]
fn daemon_killed_at_arbitrary_moments_leaves_valid_files() {
    let (server, orgs) = setup(3);
    let m = Machine::new();
    for o in &orgs {
        m.pair(&server, o, "alice@example.com");
    }
    for round in 0..8u64 {
        let org = &orgs[(round % 3) as usize];
        let (p, code) = m.start_pair(&["--server", &server.url, "--org", org, "--force"]);
        let pid = m.daemon_pid().expect("daemon running");
        server.approve(code["code"].as_str().unwrap(), org, "alice@example.com");
        // The daemon sees a cross-process approval within its poll interval (about 200 ms)
        // and writes within milliseconds after: spread the kills over that window.
        std::thread::sleep(Duration::from_millis(150 + round * 17 % 120));
        unsafe { libc::kill(pid as i32, libc::SIGKILL) };
        let _ = p.end();
        assert_consistent(&m, &server, &format!("round {round}"));
    }
    assert_eq!(m.pairing_count(), 3, "no pairing lost");
}

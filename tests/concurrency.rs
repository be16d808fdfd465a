//! Several processes at once, and a daemon killed with SIGKILL in the middle of writes:
//! no entry is lost and every file stays valid.

mod support;
use std::process::Stdio;
use support::*;

#[test]
fn concurrent_binds_and_pairs_lose_nothing() {
    let server = Server::start();
    server.user("alice@example.com");
    let orgs: Vec<String> = (0..3).map(|i| server.org(&format!("Org {i}"), &format!("org{i}"))).collect();
    for i in 0..3 {
        server.member(&format!("org{i}"), "alice@example.com");
    }
    let m = Machine::new();
    m.pair(&server, &orgs[0], "alice@example.com");
    let dirs: Vec<_> = (0..10).map(|i| m.mkdir(&format!("w/d{i}"))).collect();

    // Two pairings in flight while ten binds run.
    let pairs: Vec<_> = orgs[1..].iter().map(|o| (o.clone(), m.start_pair(&["--server", &server.url, "--org", o]))).collect();
    let binds: Vec<_> = dirs
        .iter()
        .map(|d| m.command().args(["bind", d.to_str().unwrap(), "--org", "org0", "--json"]).stdout(Stdio::piped()).stderr(Stdio::piped()).spawn().unwrap())
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
}

#[test]
fn daemon_killed_mid_write_leaves_valid_files() {
    let server = Server::start();
    server.user("alice@example.com");
    let orgs: Vec<String> = (0..3).map(|i| server.org(&format!("Org {i}"), &format!("org{i}"))).collect();
    for i in 0..3 {
        server.member(&format!("org{i}"), "alice@example.com");
    }
    let m = Machine::new();
    for o in &orgs {
        m.pair(&server, o, "alice@example.com");
    }
    for round in 0..8u64 {
        let org = &orgs[(round % 3) as usize];
        let (p, code) = m.start_pair(&["--server", &server.url, "--org", org, "--force"]);
        let pid = m.daemon_pid().expect("daemon running");
        server.approve(code["code"].as_str().unwrap(), org, "alice@example.com");
        // Somewhere between the approval and the end of the writes.
        std::thread::sleep(std::time::Duration::from_millis(round * 7 % 40));
        unsafe { libc::kill(pid as i32, libc::SIGKILL) };
        let mut child = p.child;
        let _ = child.wait();
        // Every file still parses; every pairing in config.json has its identity.
        let st = m.ok(&["status"]);
        assert!(st["problems"].as_array().unwrap().is_empty(), "round {round}: {st}");
        let cfg = m.config();
        for p in cfg["pairings"].as_array().unwrap() {
            let ws = p["workspaceId"].as_str().unwrap();
            assert!(m.home().join(format!("relay-identities/{ws}.json")).exists(), "round {round}: {ws} has no identity");
            let _ = m.identity(ws);
        }
        let leftovers: Vec<_> = std::fs::read_dir(m.home()).unwrap().flatten().filter(|e| e.file_name().to_string_lossy().starts_with(".tmp-")).collect();
        // Temporary files from the kill are swept by the next daemon start.
        m.ok(&["install"]);
        if !leftovers.is_empty() {
            assert!(std::fs::read_dir(m.home()).unwrap().flatten().all(|e| !e.file_name().to_string_lossy().starts_with(".tmp-")));
        }
    }
    assert_eq!(m.config()["pairings"].as_array().unwrap().len(), 3, "no pairing lost");
}

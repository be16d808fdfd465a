//! Streaming end to end: `vpd run` in bound, unbound and hint-only directories; two orgs on
//! two platforms that see nothing of each other; revocation while a session runs; sessions
//! pinned at start.

mod support;
use serde_json::Value;
use std::process::Stdio;
use std::time::Duration;
use support::*;

fn platform(org: &str, slug: &str) -> (Server, String) {
    let server = Server::start();
    let id = server.org_with_member(org, slug, "alice@example.com");
    (server, id)
}

fn wait_connected(m: &Machine, org: &str) {
    wait_until(&format!("{org} to be connected"), Duration::from_secs(20), || {
        m.ok(&["status"])["pairings"].as_array().unwrap().iter().any(|p| p["workspaceId"] == org && p["state"] == "connected")
    });
}

fn sessions(server: &Server, org: &str) -> Vec<Value> {
    server.admin(&["session", "list", "--org", org]).as_array().cloned().unwrap_or_default()
}

/// The recorded output of a session, byte for byte.
fn recorded(server: &Server, id: &str) -> Vec<u8> {
    let out = server.admin_raw(&["session", "show", id, "--raw"], None);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    out.stdout
}

#[test]
fn a_bound_session_streams_byte_exact_and_others_send_nothing() {
    let (server, acme) = platform("Acme Engineering", "acme");
    let m = Machine::new();
    m.pair(&server, &acme, "alice@example.com");
    let api = m.mkdir("work/api");
    m.ok(&["bind", api.to_str().unwrap(), "--org", "acme"]);
    wait_connected(&m, &acme);

    let out = m
        .command()
        .args(["run", "--cwd", api.to_str().unwrap(), "--", "sh", "-c", r"printf 'hello\n'; printf '\377\376 raw bytes\n'; exit 3"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(3), "the exit code passes through");
    assert_eq!(String::from_utf8_lossy(&out.stderr).trim(), "vpd: streaming to Acme Engineering");
    assert!(out.stdout.windows(5).any(|w| w == b"hello"), "the terminal shows the output");
    wait_until("the session to be recorded", Duration::from_secs(10), || {
        sessions(&server, "acme").first().is_some_and(|s| s["ended_at"].is_string())
    });
    let s = sessions(&server, "acme")[0].clone();
    assert_eq!(s["agent"], "sh");
    assert_eq!(s["directory"], "api", "never the full path");
    assert_eq!(s["exit_code"], 3);
    assert_eq!(recorded(&server, s["id"].as_str().unwrap()), out.stdout, "recorded byte-exact");

    // An unbound directory and a hint-only directory send nothing.
    let plain = m.mkdir("work/plain");
    let hinted = m.mkdir("work/hinted");
    std::fs::create_dir_all(hinted.join(".viewport")).unwrap();
    std::fs::write(hinted.join(".viewport/workspace.yaml"), format!("org_id: {acme}\n")).unwrap();
    for dir in [&plain, &hinted] {
        let out = m.command().args(["run", "--cwd", dir.to_str().unwrap(), "--", "echo", "secret"]).output().unwrap();
        assert!(out.status.success());
        assert_eq!(String::from_utf8_lossy(&out.stderr).trim(), "vpd: local only: no binding");
    }
    std::thread::sleep(Duration::from_millis(500));
    assert_eq!(sessions(&server, "acme").len(), 1, "the relay saw no other session");
    let list = m.ok(&["sessions"]);
    assert_eq!(list.as_array().unwrap().len(), 3);
    assert!(list.as_array().unwrap().iter().any(|s| s["state"] == "ended" && s["orgName"] == "Acme Engineering"));
}

#[test]
fn two_orgs_on_two_platforms_see_nothing_of_each_other() {
    let (a_server, acme) = platform("Acme Engineering", "acme");
    let (b_server, oss) = platform("OSS Maintainers", "oss");
    let m = Machine::new();
    m.pair(&a_server, &acme, "alice@example.com");
    m.pair(&b_server, &oss, "alice@example.com");
    let a_dir = m.mkdir("clients/acme-api");
    let b_dir = m.mkdir("oss/relay");
    m.ok(&["bind", a_dir.to_str().unwrap(), "--org", "acme"]);
    m.ok(&["bind", b_dir.to_str().unwrap(), "--org", "oss"]);
    wait_connected(&m, &acme);
    wait_connected(&m, &oss);
    for (dir, word) in [(&a_dir, "acme-only-output"), (&b_dir, "oss-only-output")] {
        let out = m.command().args(["run", "--cwd", dir.to_str().unwrap(), "--", "echo", word]).output().unwrap();
        assert!(out.status.success());
    }
    wait_until("both sessions recorded", Duration::from_secs(10), || {
        sessions(&a_server, "acme").iter().any(|s| s["ended_at"].is_string()) && sessions(&b_server, "oss").iter().any(|s| s["ended_at"].is_string())
    });
    let a_out = recorded(&a_server, sessions(&a_server, "acme")[0]["id"].as_str().unwrap());
    assert!(String::from_utf8_lossy(&a_out).contains("acme-only-output"));
    assert!(!String::from_utf8_lossy(&a_out).contains("oss-only-output"));

    // Everything each platform stored or logged holds nothing of the other pairing.
    m.ok(&["daemon", "stop"]);
    let (pa, pb) = (m.pairing(&acme), m.pairing(&oss));
    let (ia, ib) = (m.identity(&acme), m.identity(&oss));
    let secrets_of = |p: &Value, id: &Value, dir: &std::path::Path, word: &str| -> Vec<String> {
        vec![
            p["workspaceId"].as_str().unwrap().into(),
            p["installId"].as_str().unwrap().into(),
            p["runtimeTargetId"].as_str().unwrap().into(),
            p["machineId"].as_str().unwrap().into(),
            p["credential"]["issueToken"].as_str().unwrap().into(),
            id["publicKey"].as_str().unwrap().into(),
            dir.display().to_string(),
            word.into(),
        ]
    };
    for (server, other) in
        [(&a_server, secrets_of(&pb, &ib, &b_dir, "oss-only-output")), (&b_server, secrets_of(&pa, &ia, &a_dir, "acme-only-output"))]
    {
        let mut seen = Vec::new();
        for f in std::fs::read_dir(server.dir.path()).unwrap().flatten() {
            seen.extend(std::fs::read(f.path()).unwrap());
        }
        let seen = String::from_utf8_lossy(&seen);
        for v in &other {
            assert!(!seen.contains(v.as_str()), "{} holds {v:?} of the other org", server.url);
        }
    }
    // Not even this machine's home path.
    let home = m.dir.path().display().to_string();
    for server in [&a_server, &b_server] {
        let mut seen = Vec::new();
        for f in std::fs::read_dir(server.dir.path()).unwrap().flatten() {
            seen.extend(std::fs::read(f.path()).unwrap());
        }
        assert!(!String::from_utf8_lossy(&seen).contains(&home), "{} saw the home path", server.url);
    }
}

#[test]
fn revocation_cuts_a_running_session_which_goes_on_locally() {
    let (server, acme) = platform("Acme Engineering", "acme");
    let oss = server.org("OSS Maintainers", "oss");
    server.member("oss", "alice@example.com");
    let m = Machine::new();
    m.pair(&server, &acme, "alice@example.com");
    m.pair(&server, &oss, "alice@example.com");
    let a_dir = m.mkdir("acme");
    let b_dir = m.mkdir("oss");
    m.ok(&["bind", a_dir.to_str().unwrap(), "--org", "acme"]);
    m.ok(&["bind", b_dir.to_str().unwrap(), "--org", "oss"]);
    wait_connected(&m, &acme);
    wait_connected(&m, &oss);
    let script = |tag: &str| format!("i=1; while [ $i -le 30 ]; do echo {tag}-line-$i; i=$((i+1)); sleep 0.1; done");
    let a_run = m
        .command()
        .args(["run", "--cwd", a_dir.to_str().unwrap(), "--", "sh", "-c", &script("acme")])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let b_run = m
        .command()
        .args(["run", "--cwd", b_dir.to_str().unwrap(), "--", "sh", "-c", &script("oss")])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    wait_until("both sessions to start streaming", Duration::from_secs(10), || {
        !sessions(&server, "acme").is_empty() && !sessions(&server, "oss").is_empty()
    });
    std::thread::sleep(Duration::from_millis(800));
    let machine = m.pairing(&acme)["machineId"].as_str().unwrap().to_string();
    server.admin(&["machine", "revoke", "--org", "acme", &machine]);

    let a_out = a_run.wait_with_output().unwrap();
    let b_out = b_run.wait_with_output().unwrap();
    assert!(a_out.status.success() && b_out.status.success());
    let text = String::from_utf8_lossy(&a_out.stdout);
    assert!(text.contains("acme-line-1\r\n") && text.contains("acme-line-30\r\n"), "the local command ran to its end: {text}");

    wait_until("the pairing to be removed", Duration::from_secs(10), || m.pairing_count() == 1);
    // SPEC A3: the binding stays, inert, waiting for acme on this server.
    assert!(a_dir.join(".viewport/local.yaml").exists(), "the binding outlives the revoked pairing");
    assert_eq!(m.ok(&["resolve", a_dir.to_str().unwrap()])["reason"], "binding_waiting");
    let list = m.ok(&["sessions"]);
    let cut = list.as_array().unwrap().iter().find(|s| s["cwd"] == a_dir.to_str().unwrap()).unwrap().clone();
    assert_eq!(cut["state"], "cut (revoked)", "{cut}");
    // The acme record stops early; the oss one is complete.
    wait_until("the oss session to end", Duration::from_secs(10), || sessions(&server, "oss")[0]["ended_at"].is_string());
    let oss_rec = recorded(&server, sessions(&server, "oss")[0]["id"].as_str().unwrap());
    assert_eq!(oss_rec, b_out.stdout, "the other org keeps streaming, complete and only its own output");
    let acme_rec = String::from_utf8_lossy(&recorded(&server, sessions(&server, "acme")[0]["id"].as_str().unwrap())).into_owned();
    assert!(acme_rec.contains("acme-line-1\r\n") && !acme_rec.contains("acme-line-30"), "remote streaming stopped at the revocation");
    assert!(!acme_rec.contains("oss-"), "nothing of the other org");
    assert!(sessions(&server, "acme")[0]["ended_at"].is_null(), "no end was sent to a revoked org");
}

#[test]
fn sessions_stay_pinned_to_the_org_they_started_with() {
    let (server, acme) = platform("Acme Engineering", "acme");
    let oss = server.org("OSS Maintainers", "oss");
    server.member("oss", "alice@example.com");
    let m = Machine::new();
    m.pair(&server, &acme, "alice@example.com");
    m.pair(&server, &oss, "alice@example.com");
    let dir = m.mkdir("proj");
    m.ok(&["bind", dir.to_str().unwrap(), "--org", "acme"]);
    wait_connected(&m, &acme);
    let flag = m.path("stop-flag");
    let script = format!("while [ ! -f {} ]; do echo tick; sleep 0.1; done; echo done-ticking", flag.display());
    let run = m
        .command()
        .args(["run", "--cwd", dir.to_str().unwrap(), "--", "sh", "-c", &script])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    wait_until("the session to stream", Duration::from_secs(10), || !sessions(&server, "acme").is_empty());
    // Rebind the directory to the other org mid-session, then delete the binding.
    m.ok(&["bind", dir.to_str().unwrap(), "--org", "oss", "--yes"]);
    let new_run = m.command().args(["run", "--cwd", dir.to_str().unwrap(), "--", "echo", "new-session"]).output().unwrap();
    assert_eq!(String::from_utf8_lossy(&new_run.stderr).trim(), "vpd: streaming to OSS Maintainers", "a new session follows the new binding");
    m.ok(&["unbind", dir.to_str().unwrap()]);
    std::fs::write(&flag, "").unwrap();
    let out = run.wait_with_output().unwrap();
    assert!(out.status.success());
    wait_until("the pinned session to end", Duration::from_secs(10), || sessions(&server, "acme")[0]["ended_at"].is_string());
    let rec = recorded(&server, sessions(&server, "acme")[0]["id"].as_str().unwrap());
    assert_eq!(rec, out.stdout, "the running session kept streaming to its original org, complete");
    assert!(String::from_utf8_lossy(&rec).contains("done-ticking"));
    let oss_sessions = sessions(&server, "oss");
    assert_eq!(oss_sessions.len(), 1, "only the new session went to the new org");
    assert!(String::from_utf8_lossy(&recorded(&server, oss_sessions[0]["id"].as_str().unwrap())).contains("new-session"));
}

#[test]
fn unpair_and_member_removal_cut_running_sessions_of_that_org_only() {
    let (server, acme) = platform("Acme Engineering", "acme");
    let oss = server.org("OSS Maintainers", "oss");
    server.member("oss", "alice@example.com");
    let gx = server.org("Globex", "globex");
    // Globex's first member is its owner; alice is a member, so she can be removed.
    server.user("gx-owner@example.com");
    server.member("globex", "gx-owner@example.com");
    server.member("globex", "alice@example.com");
    let m = Machine::new();
    for o in [&acme, &oss, &gx] {
        m.pair(&server, o, "alice@example.com");
    }
    let dirs: Vec<_> = ["acme", "oss", "globex"].iter().map(|s| m.mkdir(s)).collect();
    for (d, slug) in dirs.iter().zip(["acme", "oss", "globex"]) {
        m.ok(&["bind", d.to_str().unwrap(), "--org", slug]);
    }
    for o in [&acme, &oss, &gx] {
        wait_connected(&m, o);
    }
    let runs: Vec<_> = dirs
        .iter()
        .zip(["acme", "oss", "globex"])
        .map(|(d, tag)| {
            let script = format!("i=1; while [ $i -le 25 ]; do echo {tag}-line-$i; i=$((i+1)); sleep 0.1; done");
            m.command().args(["run", "--cwd", d.to_str().unwrap(), "--", "sh", "-c", &script]).stdout(Stdio::piped()).spawn().unwrap()
        })
        .collect();
    wait_until("three sessions streaming", Duration::from_secs(10), || ["acme", "oss", "globex"].iter().all(|o| !sessions(&server, o).is_empty()));
    std::thread::sleep(Duration::from_millis(500));
    m.ok(&["unpair", "--org", "acme"]);
    server.admin(&["member", "remove", "--org", "globex", "--user", "alice@example.com"]);
    let outs: Vec<_> = runs.into_iter().map(|r| r.wait_with_output().unwrap()).collect();
    for o in &outs {
        assert!(o.status.success() && String::from_utf8_lossy(&o.stdout).contains("-line-25"), "every command ran to its end locally");
    }
    wait_until("globex to be dropped", Duration::from_secs(10), || m.pairing_count() == 1);
    let list = m.ok(&["sessions"]);
    let state_of = |d: &std::path::Path| list.as_array().unwrap().iter().find(|s| s["cwd"] == d.to_str().unwrap()).unwrap()["state"].clone();
    assert_eq!(state_of(&dirs[0]), "cut (unpaired)");
    assert_eq!(state_of(&dirs[2]), "cut (revoked)");
    assert_eq!(state_of(&dirs[1]), "ended");
    wait_until("oss record complete", Duration::from_secs(10), || sessions(&server, "oss")[0]["ended_at"].is_string());
    assert_eq!(recorded(&server, sessions(&server, "oss")[0]["id"].as_str().unwrap()), outs[1].stdout, "the other org kept streaming, complete");
    for (slug, i) in [("acme", 0), ("globex", 2)] {
        let rec = recorded(&server, sessions(&server, slug)[0]["id"].as_str().unwrap());
        assert!(rec.len() < outs[i].stdout.len(), "{slug}: remote streaming stopped");
    }
}

#[test]
fn integrations_stream_their_own_sessions_through_the_local_api() {
    let (server, acme) = platform("Acme Engineering", "acme");
    let m = Machine::new();
    m.pair(&server, &acme, "alice@example.com");
    let dir = m.mkdir("api/sub");
    m.ok(&["bind", m.path("api").to_str().unwrap(), "--org", "acme"]);
    wait_connected(&m, &acme);
    let s = m.ok(&["session", "start", "--cwd", dir.to_str().unwrap(), "--agent", "my-agent", "--name", "nightly"]);
    let id = s["sessionId"].as_str().unwrap().to_string();
    assert_eq!(s["state"], "streaming");
    assert_eq!(s["directory"], "api/sub");
    m.ok(&["session", "frame", &id, "--data", "first "]);
    let mut child = m.command().args(["session", "frame", &id, "--json"]).stdin(Stdio::piped()).stdout(Stdio::piped()).spawn().unwrap();
    use std::io::Write;
    child.stdin.take().unwrap().write_all(b"second\n").unwrap();
    assert!(child.wait().unwrap().success());
    let end = m.ok(&["session", "end", &id, "--exit-code", "0"]);
    assert_eq!(end["state"], "ended");
    wait_until("recorded", Duration::from_secs(10), || sessions(&server, "acme").first().is_some_and(|s| s["ended_at"].is_string()));
    let rec = sessions(&server, "acme")[0].clone();
    assert_eq!(rec["agent"], "my-agent");
    assert_eq!(recorded(&server, rec["id"].as_str().unwrap()), b"first second\n");
    // Many writers to one session at once: every frame arrives, none is refused as out of
    // order (the relay would close the connection), and the pairing stays connected.
    let s2 = m.ok(&["session", "start", "--cwd", dir.to_str().unwrap(), "--agent", "parallel"]);
    let id2 = s2["sessionId"].as_str().unwrap().to_string();
    let writers: Vec<_> = (0..12)
        .map(|i| m.command().args(["session", "frame", &id2, "--data", &format!("<{i}>"), "--json"]).stdout(Stdio::null()).spawn().unwrap())
        .collect();
    for mut w in writers {
        assert!(w.wait().unwrap().success());
    }
    m.ok(&["session", "end", &id2]);
    wait_until("the parallel session recorded", Duration::from_secs(10), || {
        sessions(&server, "acme").iter().any(|s| s["agent"] == "parallel" && s["ended_at"].is_string())
    });
    let p = sessions(&server, "acme").into_iter().find(|s| s["agent"] == "parallel").unwrap();
    let text = String::from_utf8(recorded(&server, p["id"].as_str().unwrap())).unwrap();
    for i in 0..12 {
        assert!(text.contains(&format!("<{i}>")), "frame {i} missing: {text}");
    }
    assert_eq!(text.len(), (0..12).map(|i| format!("<{i}>").len()).sum::<usize>(), "no duplicates: {text}");
    let e = m.fails(&["session", "frame", &id, "--data", "x", "--kind", "event"]);
    assert!(e["message"].as_str().unwrap().contains("has ended"), "{e}");
    let e = m.fails(&["session", "frame", &id, "--data", "late"]);
    assert!(e["message"].as_str().unwrap().contains("has ended"), "{e}");
    let e = m.fails(&["session", "frame", "../../x", "--data", "x"]);
    assert!(e["message"].as_str().unwrap().contains("not a session id"), "{e}");
}

/// Issue 10 item 3 (SPEC A2, A11): no message can stall a stream. An agent of 100 "€", an end
/// reason of 150 "é", a NUL and an escape sequence in an agent name and in a directory name
/// are cleaned and cut in bytes before they are sent, a 1 MiB output line arrives whole,
/// and the org's stream goes on (before: close 4400 on every reconnect, forever).
#[test]
fn text_and_size_limits_never_stall_an_orgs_stream() {
    use std::io::{BufRead, BufReader, Write};
    let (server, acme) = platform("Acme Engineering", "acme");
    let m = Machine::new();
    m.pair(&server, &acme, "alice@example.com");
    let dir = m.mkdir("work/re\u{1b}[2Jpo");
    let sub = m.mkdir("work/re\u{1b}[2Jpo/sub");
    m.ok(&["bind", dir.to_str().unwrap(), "--org", "acme"]);
    wait_connected(&m, &acme);

    let euro = "€".repeat(100);
    let s = m.ok(&["session", "start", "--cwd", dir.to_str().unwrap(), "--agent", &euro]);
    let first = s["sessionId"].as_str().unwrap().to_string();
    m.ok(&["session", "frame", &first, "--data", "one"]);
    m.ok(&["session", "end", &first, "--exit-code", "1", "--reason", &"é".repeat(150)]);

    // A NUL cannot be in a command-line argument: an integration sends it on the local API.
    let mut sock = std::os::unix::net::UnixStream::connect(m.home().join("vpd.sock")).unwrap();
    let req = serde_json::json!({"method": "session_start", "params": {"cwd": sub, "agent": "cl\u{0}aude\u{1b}[31m"}});
    writeln!(sock, "{req}").unwrap();
    let mut line = String::new();
    BufReader::new(sock.try_clone().unwrap()).read_line(&mut line).unwrap();
    let reply: Value = serde_json::from_str(&line).unwrap();
    let second = reply["result"]["sessionId"].as_str().unwrap_or_else(|| panic!("{reply}")).to_string();
    m.ok(&["session", "end", &second]);

    let out =
        m.command().args(["run", "--cwd", dir.to_str().unwrap(), "--", "sh", "-c", r"head -c 1048576 /dev/zero | tr '\0' a; echo"]).output().unwrap();
    assert!(out.status.success());
    wait_until("all three sessions recorded and ended", Duration::from_secs(20), || {
        let all = sessions(&server, "acme");
        all.len() == 3 && all.iter().all(|s| s["ended_at"].is_string())
    });
    let all = sessions(&server, "acme");
    let by_id = |id: &str| all.iter().find(|s| s["id"] == id).cloned().unwrap();
    let one = by_id(&first);
    assert_eq!(one["agent"], "€".repeat(85), "cut to 256 bytes on a character boundary");
    assert_eq!(one["directory"], "re[2Jpo", "no escape reaches the relay");
    assert_eq!(one["end_reason"], "é".repeat(128));
    assert_eq!(recorded(&server, &first), b"one");
    let two = by_id(&second);
    assert_eq!(two["agent"], "claude[31m");
    assert_eq!(two["directory"], "re[2Jpo/sub");
    let run = all.iter().find(|s| s["id"] != first && s["id"] != second).unwrap();
    let bytes = recorded(&server, run["id"].as_str().unwrap());
    let a = bytes.iter().filter(|b| **b == b'a').count();
    assert_eq!(a, 1 << 20, "the 1 MiB line arrived whole ({} bytes recorded)", bytes.len());
    let st = m.ok(&["status"]);
    assert_eq!(st["pairings"][0]["state"], "connected", "{st}");
    assert!(st["pairings"][0]["lastError"].is_null(), "{st}");
}

/// `vpd run` with its input from a pipe: the command reads it, and the end of it reaches the
/// command (a pseudo-terminal's EOF), so a command that reads to the end finishes.
#[test]
fn piped_input_reaches_the_command_and_its_end_ends_it() {
    let m = Machine::new();
    let dir = m.mkdir("work/plain");
    let mut child = m
        .command()
        .args(["run", "--cwd", dir.to_str().unwrap(), "--", "sh", "-c", r#"read a; echo "got $a"; cat >/dev/null; echo reached-the-end"#])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    {
        use std::io::Write;
        let mut input = child.stdin.take().unwrap();
        input.write_all(b"first\nmore\n").unwrap();
    }
    let started = std::time::Instant::now();
    while child.try_wait().unwrap().is_none() {
        if started.elapsed() > Duration::from_secs(60) {
            let _ = child.kill();
            panic!("vpd run never ended: the end of its input did not reach the command");
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("got first") && text.contains("reached-the-end"), "{text:?}");
}

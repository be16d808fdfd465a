//! Directory bindings outlive a pairing (issue 11 item 6, SPEC A3): `vpd unpair` and a
//! revocation leave them in place but inert, listed as waiting for that org on that server;
//! pairing again resumes them only after a yes; `--forget-bindings` removes them.

mod support;

use std::time::Duration;
use support::*;

fn dir_status(m: &Machine, dir: &std::path::Path) -> serde_json::Value {
    m.ok(&["status"])["directories"].as_array().unwrap().iter().find(|d| d["directory"] == dir.to_str().unwrap()).cloned().unwrap_or_default()
}

#[test]
fn unpair_keeps_bindings_inert_and_pairing_again_resumes_them_only_after_a_yes() {
    let server = Server::start();
    let acme = server.org_with_member("Acme Engineering", "acme", "alice@example.com");
    let m = Machine::new();
    m.pair(&server, &acme, "alice@example.com");
    let (api, web) = (m.mkdir("code/api"), m.mkdir("code/web"));
    for d in [&api, &web] {
        m.ok(&["bind", d.to_str().unwrap(), "--org", "acme"]);
    }
    assert_eq!(m.ok(&["resolve", api.to_str().unwrap()])["streaming"], true);

    // Unpair: the pairing goes, the bindings stay and stream nothing.
    let un = m.ok(&["unpair", "--org", "acme"]);
    assert_eq!(un["waiting"].as_array().unwrap().len(), 2, "{un}");
    assert_eq!(un["unbound"].as_array().unwrap().len(), 0);
    assert!(api.join(".viewport/local.yaml").exists());
    let st = dir_status(&m, &api);
    assert_eq!(st["state"], "waiting", "{st}");
    assert_eq!(st["server"], server.url.as_str(), "it names the server it waits for: {st}");
    let human = String::from_utf8(m.vpd(&["status"]).stdout).unwrap();
    assert!(human.contains("waiting") && human.contains(&server.url), "{human}");
    let r = m.ok(&["resolve", api.to_str().unwrap()]);
    assert_eq!((r["streaming"].as_bool(), r["reason"].as_str()), (Some(false), Some("binding_waiting")), "{r}");
    // The shell hook does not ask about it at every `cd`.
    let hint = m.command().args(["hint", "--no-prompt"]).current_dir(&api).output().unwrap();
    assert!(
        hint.status.success() && hint.stdout.is_empty() && hint.stderr.is_empty(),
        "{}{}",
        String::from_utf8_lossy(&hint.stdout),
        String::from_utf8_lossy(&hint.stderr)
    );

    // Pairing again without a yes (no terminal to ask on): they stay inert.
    let again = m.pair(&server, &acme, "alice@example.com");
    assert_eq!(again["waitingBindings"].as_array().unwrap().len(), 2, "{again}");
    assert_eq!(m.ok(&["resolve", web.to_str().unwrap()])["reason"], "binding_waiting");
    // A session there stays local.
    let id = String::from_utf8(m.vpd(&["session", "start", "--cwd", web.to_str().unwrap(), "--agent", "claude"]).stdout).unwrap().trim().to_string();
    let state = m.ok(&["sessions"]).as_array().unwrap().iter().find(|s| s["sessionId"] == id.as_str()).map(|s| s["state"].clone());
    assert_eq!(state, Some("local only".into()));
    m.vpd(&["session", "end", &id]);

    // Binding one again resumes that one.
    m.ok(&["bind", api.to_str().unwrap(), "--org", "acme"]);
    assert_eq!(m.ok(&["resolve", api.to_str().unwrap()])["streaming"], true);
    assert_eq!(dir_status(&m, &web)["state"], "waiting");

    // Revocation keeps them too; pairing again with --resume-bindings resumes them all.
    let machine = m.pairing(&acme)["machineId"].as_str().unwrap().to_string();
    server.admin(&["machine", "revoke", "--org", "acme", &machine]);
    wait_until("the daemon to drop the revoked pairing", Duration::from_secs(20), || m.pairing_count() == 0);
    assert_eq!(dir_status(&m, &api)["state"], "waiting");
    assert_eq!(dir_status(&m, &web)["state"], "waiting");
    let (p, code) = m.start_pair(&["--server", &server.url, "--org", &acme, "--resume-bindings"]);
    server.approve(code["code"].as_str().unwrap(), &acme, "alice@example.com");
    let done = p.finish();
    assert_eq!(done["resumedBindings"].as_array().unwrap().len(), 2, "{done}");
    for d in [&api, &web] {
        assert_eq!(m.ok(&["resolve", d.to_str().unwrap()])["streaming"], true, "{}", d.display());
        assert_eq!(dir_status(&m, d)["state"], "bound");
    }

    // --forget-bindings removes them as before.
    let un = m.ok(&["unpair", "--org", "acme", "--forget-bindings"]);
    assert_eq!(un["unbound"].as_array().unwrap().len(), 2, "{un}");
    assert!(!api.join(".viewport/local.yaml").exists() && !web.join(".viewport/local.yaml").exists());
    assert!(m.ok(&["status"])["directories"].as_array().unwrap().is_empty());
}

#[test]
fn a_crash_during_unpair_never_leaves_a_binding_that_streams_again_without_a_yes() {
    let server = Server::start();
    let acme = server.org_with_member("Acme Engineering", "acme", "alice@example.com");
    for point in ["unpair:after-bindings", "unpair:after-config"] {
        let mut m = Machine::new();
        m.pair(&server, &acme, "alice@example.com");
        let dir = m.mkdir("code/api");
        m.ok(&["bind", dir.to_str().unwrap(), "--org", "acme"]);
        m.ok(&["daemon", "stop"]);
        m.env = vec![("VPD_FAILPOINT".into(), point.into())];
        let _ = m.vpd(&["unpair", "--org", "acme"]);
        m.env.clear();
        wait_until("the daemon to be gone", Duration::from_secs(5), || m.daemon_pid().is_none_or(|pid| unsafe { libc::kill(pid as i32, 0) } != 0));
        // Whether or not the pairing was removed before the crash, the binding is inert.
        if m.pairing_count() == 1 {
            assert_eq!(m.ok(&["resolve", dir.to_str().unwrap()])["reason"], "binding_waiting", "{point}");
            m.ok(&["unpair", "--org", "acme"]);
        }
        m.pair(&server, &acme, "alice@example.com");
        let r = m.ok(&["resolve", dir.to_str().unwrap()]);
        assert_eq!((r["streaming"].as_bool(), r["reason"].as_str()), (Some(false), Some("binding_waiting")), "{point}: {r}");
    }
}

//! The command line as a person uses it: a terminal with a QR code and a spinner, the
//! browser opened, Ctrl-C, install / doctor / logs / uninstall, one daemon per home, the
//! local API refusing other users, help and completions.

mod support;
use std::io::BufRead;
use std::os::unix::fs::PermissionsExt;
use std::process::Stdio;
use std::time::Duration;
use support::*;

fn server_with_acme() -> (Server, String) {
    let server = Server::start();
    let acme = server.org_with_member("Acme Engineering", "acme", "alice@example.com");
    (server, acme)
}

#[test]
fn pairing_on_a_terminal_shows_code_qr_spinner_and_opens_the_browser() {
    let (server, acme) = server_with_acme();
    let m = Machine::new();
    let opened = m.path("opened-url");
    let browser = m.path("fake-browser.sh");
    std::fs::write(&browser, format!("#!/bin/sh\necho \"$1\" > {}\n", opened.display())).unwrap();
    std::fs::set_permissions(&browser, std::fs::Permissions::from_mode(0o755)).unwrap();
    let mut t = Term::spawn(&m, &["pair", "--server", &server.url, "--org", "acme"], &[("BROWSER", browser.to_str().unwrap())]);
    t.wait_for("Waiting for approval");
    let code = t.seen.split("Code:").nth(1).unwrap().split_whitespace().next().unwrap().to_string();
    assert!(t.seen.contains(&format!("Open:  {}/pair?code={code}", server.url)), "{}", t.seen);
    assert!(t.seen.contains('▀') || t.seen.contains('█'), "a QR code is drawn:\n{}", t.seen);
    wait_until("the browser to be opened", Duration::from_secs(10), || opened.exists());
    assert_eq!(std::fs::read_to_string(&opened).unwrap().trim(), format!("{}/pair?code={code}", server.url));
    server.approve(&code, "acme", "alice@example.com");
    let (ok, seen) = t.finish();
    assert!(ok, "{seen}");
    assert!(seen.contains(&format!("Paired with Acme Engineering ({acme})")), "{seen}");
    assert!(seen.contains("vpd bind DIR --org acme"), "says what to do next: {seen}");
}

#[test]
fn ctrl_c_cancels_pairing_cleanly() {
    let (server, _acme) = server_with_acme();
    let m = Machine::new();
    let mut child = m.command().args(["pair", "--server", &server.url, "--no-browser", "--json"]).stdout(Stdio::piped()).spawn().unwrap();
    let mut lines = std::io::BufReader::new(child.stdout.take().unwrap()).lines();
    let first: serde_json::Value = serde_json::from_str(&lines.next().unwrap().unwrap()).unwrap();
    assert_eq!(first["event"], "code");
    unsafe { libc::kill(child.id() as i32, libc::SIGINT) };
    let status = child.wait().unwrap();
    assert_eq!(status.code(), Some(130));
    let last: serde_json::Value = serde_json::from_str(&lines.next().unwrap().unwrap()).unwrap();
    assert_eq!(last["error"]["code"], "cancelled");
    // Once the daemon has told the platform (not merely heard the Ctrl-C): an approval racing
    // the cancellation is not what this test is about.
    wait_until("the daemon to drop the pairing", Duration::from_secs(20), || m.logs().contains("pairing cancelled: the platform was told"));
    // The code was cancelled on the platform too: nobody can approve it any more.
    let code = first["code"].as_str().unwrap();
    wait_until("the platform to refuse the code", Duration::from_secs(10), || {
        !server.admin_raw(&["pairing", "approve", code, "--org", "acme", "--user", "alice@example.com"], None).status.success()
    });
    assert!(server.admin(&["machine", "list", "--org", "acme"]).as_array().unwrap().is_empty(), "no orphan machine");
    assert_eq!(m.pairing_count(), 0);
    assert_eq!(m.ok(&["status"])["daemon"]["running"], true, "the daemon survives the client's Ctrl-C");
}

#[test]
fn install_doctor_logs_one_daemon_per_home_and_uninstall() {
    let (mut server, acme) = server_with_acme();
    let m = Machine::new();
    let inst = m.ok(&["install", "--server", &server.url]);
    let pid = inst["daemon"]["pid"].as_u64().unwrap();
    assert_eq!(m.config()["daemon"]["defaultServerUrl"], format!("{}/", server.url));
    assert_eq!(mode(&m.home()), 0o700);
    assert_eq!(mode(&m.home().join("vpd.sock")), 0o600);
    // The login item (XDG autostart): the tray when it sits next to vpd (a workspace build,
    // the bundle), else the headless daemon.
    let entry = m.dir.path().join(".config/autostart/Viewport.desktop");
    let desktop = std::fs::read_to_string(&entry).expect("vpd install registers the login item");
    let tray = bin("vpd").with_file_name("viewport-tray");
    let expected = if tray.exists() { tray.display().to_string() } else { format!("{} daemon", bin("vpd").display()) };
    assert!(desktop.contains(&format!("Exec={expected}")), "{desktop}");
    assert_eq!(inst["loginItem"], expected.as_str());

    // The saved default is used by `vpd pair` without --server.
    let (p, code) = m.start_pair(&["--org", "acme"]);
    assert_eq!(code["server_url"], format!("{}/", server.url));
    server.approve(code["code"].as_str().unwrap(), "acme", "alice@example.com");
    assert_eq!(p.finish()["workspaceId"], acme.as_str());

    // A second daemon for the same home refuses to start, and says why.
    let second = m.command().arg("daemon").output().unwrap();
    assert!(!second.status.success());
    let msg = String::from_utf8_lossy(&second.stderr);
    assert!(msg.contains("already running") && msg.contains(&format!("pid {pid}")), "{msg}");

    let doc = m.command().args(["doctor", "--json"]).output().unwrap();
    let report: serde_json::Value = serde_json::from_slice(&doc.stdout).unwrap();
    assert!(doc.status.success(), "{report}");
    let checks = report["checks"].as_array().unwrap();
    assert!(checks.iter().any(|c| c["name"].as_str().unwrap().starts_with("platform of Acme") && c["level"] == "ok"), "{report}");
    assert!(checks.iter().any(|c| c["name"].as_str().unwrap().starts_with("clock vs") && c["level"] == "ok"), "{report}");
    server.stop();
    let doc = m.command().args(["doctor"]).output().unwrap();
    assert_eq!(doc.status.code(), Some(1));
    let text = String::from_utf8_lossy(&doc.stdout);
    assert!(text.contains("[FAIL] platform of Acme Engineering") && text.contains("fix:"), "{text}");

    let logs = m.ok(&["logs", "--since", "1h"]);
    assert!(logs["lines"].as_array().unwrap().iter().any(|l| l.as_str().unwrap().contains("daemon started")), "{logs}");
    assert!(m.fails(&["logs", "--since", "yesterday-ish"])["message"].as_str().unwrap().contains("--since"));

    let un = m.ok(&["uninstall"]);
    assert_eq!(un["stopped"], true);
    assert!(!entry.exists(), "uninstall removes the login item");
    assert_eq!(m.pairing_count(), 1, "plain uninstall keeps pairings");
    assert_eq!(m.ok(&["status"])["daemon"]["running"], false);
    let e = m.fails(&["uninstall", "--purge"]);
    assert!(e["message"].as_str().unwrap().contains("--yes"), "{e}");
    let un = m.ok(&["uninstall", "--purge", "--yes"]);
    assert_eq!(un["purged"], true);
    assert!(!m.home().exists());
}

#[test]
fn the_local_api_answers_only_its_own_user() {
    if unsafe { libc::geteuid() } != 0 {
        eprintln!("skipped: needs root to act as another user");
        return;
    }
    let m = Machine::new();
    m.ok(&["install"]);
    // Open the file-system gates on purpose, so only the daemon's peer-uid check stands.
    std::fs::set_permissions(m.dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    std::fs::set_permissions(m.home(), std::fs::Permissions::from_mode(0o755)).unwrap();
    std::fs::set_permissions(m.home().join("vpd.sock"), std::fs::Permissions::from_mode(0o777)).unwrap();
    let script = "import socket,sys\ns=socket.socket(socket.AF_UNIX)\ns.connect(sys.argv[1])\ntry:\n  s.sendall(b'{\"method\":\"shutdown\"}\\n')\n  print(repr(s.recv(100)))\nexcept (ConnectionResetError, BrokenPipeError):\n  print('reset')";
    let out = std::process::Command::new("python3")
        .args(["-c", script, m.home().join("vpd.sock").to_str().unwrap()])
        .uid(65534)
        .gid(65534)
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let answer = String::from_utf8_lossy(&out.stdout).trim().to_string();
    assert!(answer == "b''" || answer == "reset", "another user got an answer: {answer}");
    std::thread::sleep(Duration::from_millis(200));
    assert_eq!(m.ok(&["status"])["daemon"]["running"], true, "another user stopped the daemon");
    assert!(m.logs().contains("refused a local API connection from another user"));
}

use std::os::unix::process::CommandExt;

#[test]
fn help_has_examples_and_completions_exist() {
    let m = Machine::new();
    for args in [vec!["--help"], vec!["pair", "--help"], vec!["bind", "--help"], vec!["hint", "--help"], vec!["status", "--help"]] {
        let out = m.vpd(&args);
        assert!(out.status.success());
        let text = String::from_utf8_lossy(&out.stdout);
        assert!(text.contains("Examples:"), "vpd {args:?}:\n{text}");
    }
    for shell in ["bash", "zsh", "fish"] {
        let out = m.vpd(&["completions", shell]);
        assert!(out.status.success() && String::from_utf8_lossy(&out.stdout).contains("unpair"), "{shell}");
    }
}

/// Issue 13 item 4: a daemon from before the local API's protocol version (it answers `ping`
/// without one) is named as older, with what to do, instead of being misread.
#[test]
fn an_older_daemon_is_named_with_what_to_do() {
    use std::io::Write;
    let m = Machine::new();
    let home = m.home();
    std::fs::create_dir_all(&home).unwrap();
    std::fs::set_permissions(&home, std::fs::Permissions::from_mode(0o700)).unwrap();
    let listener = std::os::unix::net::UnixListener::bind(home.join("vpd.sock")).unwrap();
    std::thread::spawn(move || {
        for conn in listener.incoming().take(5).flatten() {
            let mut line = String::new();
            let mut r = std::io::BufReader::new(&conn);
            if r.read_line(&mut line).is_ok() && line.contains("\"ping\"") {
                let mut w = &conn;
                let _ = writeln!(w, r#"{{"type":"result","result":{{"pid":4242,"version":"0.0.9","home":"old"}}}}"#);
            }
        }
    });
    let err = m.fails(&["ui", "--no-browser"]);
    assert_eq!(err["code"], "version_mismatch", "{err}");
    let msg = err["message"].as_str().unwrap();
    assert!(msg.contains("vpd 0.0.9") && msg.contains("older than this vpd") && msg.contains("vpd daemon stop"), "{msg}");
}

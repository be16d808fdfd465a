//! `vpd update` end to end (issue 13): a release signed offline with `viewport-server release
//! sign`, published on a local `viewport-server`, installed by a paired machine that trusted
//! its key on the terminal; the pairing reconnects and a session that ran across the update
//! arrives complete, byte for byte; `--rollback` goes back. And each refusal: another key, a
//! tampered file, a version lower or equal, another architecture, a source that answers HTML,
//! a download cut in the middle, a package's files, and no way to set the source but the
//! command line. The higher version is `target/next` (scripts/build-next.sh, run by
//! scripts/test.sh).

mod support;
use serde_json::Value;
use std::path::Path;
use std::process::Stdio;
use std::time::Duration;
use support::release::*;
use support::*;

fn wait_connected(m: &Machine) {
    wait_until("the pairing to be connected", Duration::from_secs(30), || {
        m.ok(&["status"])["pairings"].as_array().unwrap().iter().all(|p| p["state"] == "connected")
    });
}

fn recorded(server: &Server, id: &str) -> Vec<u8> {
    let out = server.admin_raw(&["session", "show", id, "--raw"], None);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    out.stdout
}

fn versions(m: &Machine) -> Vec<String> {
    let mut v: Vec<String> = std::fs::read_dir(m.path(".local/share/viewport/versions"))
        .unwrap()
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    v.sort();
    v
}

/// A session that prints a line every 20 ms until `stop` exists in its directory: it runs
/// across whatever the test does meanwhile. Returns the child (stdout piped: what the terminal
/// showed) and the session id.
fn long_session(m: &Machine, dir: &Path) -> (std::process::Child, String) {
    let script = "i=0; printf 'before\\n'; while [ ! -f stop ]; do i=$((i+1)); printf 'line %05d\\n' $i; sleep 0.02; done; printf 'after\\n'";
    let child = m
        .command()
        .args(["run", "--cwd", dir.to_str().unwrap(), "--", "sh", "-c", script])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut id = String::new();
    wait_until("the session to stream", Duration::from_secs(20), || {
        let list = m.ok(&["sessions"]);
        match list.as_array().unwrap().iter().find(|s| s["state"] == "streaming") {
            Some(s) => {
                id = s["sessionId"].as_str().unwrap().to_string();
                true
            }
            None => false,
        }
    });
    (child, id)
}

/// Ends the session and checks the relay has exactly what the terminal showed.
fn finish_session(server: &Server, org: &str, dir: &Path, child: std::process::Child, id: &str) {
    std::fs::write(dir.join("stop"), "").unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success(), "vpd run: {}", String::from_utf8_lossy(&out.stderr));
    let shown = out.stdout;
    assert!(shown.windows(5).any(|w| w == b"after"), "the command ran to its end");
    wait_until("the session to be recorded to its end", Duration::from_secs(30), || {
        server.admin(&["session", "list", "--org", org]).as_array().unwrap().iter().any(|s| s["id"] == id && s["ended_at"].is_string())
    });
    let got = recorded(server, id);
    let lines = |b: &[u8]| String::from_utf8_lossy(b).lines().count();
    assert_eq!(lines(&got), lines(&shown), "as many lines as the terminal showed");
    assert!(got == shown, "recorded byte for byte (recorded {} bytes, shown {})", got.len(), shown.len());
    let s = server.admin(&["session", "list", "--org", org]).as_array().unwrap().iter().find(|s| s["id"] == id).cloned().unwrap();
    assert_eq!(s["exit_code"], 0, "{s}");
}

#[test]
fn a_signed_release_installs_pairings_reconnect_and_a_running_session_arrives_whole() {
    let (next_dir, next) = next_build();
    let work = tempfile::tempdir().unwrap();
    let server = Server::start();
    let acme = server.org_with_member("Acme Engineering", "acme", "alice@example.com");
    let (m, installed) = installed_machine(work.path(), &["vpd", "vpd-daemon"]);
    assert_ne!(installed, next);
    m.pair(&server, &acme, "alice@example.com");
    let api = m.mkdir("work/api");
    m.ok(&["bind", api.to_str().unwrap(), "--org", "acme"]);
    wait_connected(&m);

    // The release manager signs the higher version offline and publishes it.
    let keys = keygen(&work.path().join("keys"));
    let archive = work.path().join(format!("viewport-{next}-linux-{ARCH}.tar.gz"));
    package(&next, &next_dir, &archive, ARCH, &["vpd", "vpd-daemon"]);
    sign(&archive, &keys, &next, ARCH);
    let published = server.admin(&["release", "publish", archive.to_str().unwrap(), "--signature", &format!("{}.minisig", archive.display())]);
    assert_eq!(published["version"], next);

    // Without a source it trusts, the machine says how to choose one.
    let e = m.fails(&["update", "--check"]);
    assert_eq!(e["code"], "not_updatable", "{e}");
    assert!(e["message"].as_str().unwrap().contains("--trust-key"), "{e}");

    let (child, session) = long_session(&m, &api);
    std::thread::sleep(Duration::from_millis(300));

    // On the terminal: the key's fingerprint is shown and asked about; then the update.
    let source = format!("{}/api/releases", server.url);
    let key = keys.join("release.pub");
    let seen = on_terminal(&m, &["update", "--source", &source, "--trust-key", key.to_str().unwrap()], &["y"]);
    let key_id = std::fs::read_to_string(&key).unwrap().lines().next().unwrap().rsplit(' ').next().unwrap().to_string();
    assert!(seen.contains(&key_id), "the fingerprint names the key id:\n{seen}");
    assert!(seen.contains(&format!("Updated vpd {installed} → {next}")), "{seen}");
    assert!(seen.contains("--rollback"), "{seen}");

    // The new version runs: the command, the daemon, and the pairing is connected again.
    assert_eq!(version_of(m.vpd.as_ref().unwrap()), next);
    let status = m.ok(&["status"]);
    assert_eq!(status["daemon"]["version"], next, "{status}");
    wait_connected(&m);
    assert_eq!(versions(&m), vec![installed.clone(), next.clone()], "the previous version is kept");
    let trust: Value = serde_json::from_slice(&std::fs::read(m.home().join("update.json")).unwrap()).unwrap();
    assert_eq!(trust["source"], format!("{source}/"));
    assert_eq!(mode(&m.home().join("update.json")), 0o600);

    // The session that ran across the update arrives complete.
    finish_session(&server, "acme", &api, child, &session);

    // Checking again: up to date.
    let check = m.ok(&["update", "--check"]);
    assert_eq!(check["updateAvailable"], false, "{check}");
    assert_eq!(check["installed"], next);

    // Rollback: back to the previous version and the configuration from before the update.
    let back = m.ok(&["update", "--rollback"]);
    assert_eq!(back["to"], installed, "{back}");
    assert_eq!(back["lostPairings"].as_array().unwrap().len(), 0);
    assert_eq!(version_of(m.vpd.as_ref().unwrap()), installed);
    assert_eq!(m.ok(&["status"])["daemon"]["version"], installed);
    wait_connected(&m);
}

#[test]
fn a_planned_daemon_restart_keeps_a_running_session_whole() {
    let server = Server::start();
    let acme = server.org_with_member("Acme Engineering", "acme", "alice@example.com");
    let m = Machine::new();
    m.pair(&server, &acme, "alice@example.com");
    let api = m.mkdir("work/api");
    m.ok(&["bind", api.to_str().unwrap(), "--org", "acme"]);
    wait_connected(&m);
    let (child, session) = long_session(&m, &api);
    std::thread::sleep(Duration::from_millis(300));
    // Stopped on purpose, while output keeps coming; it keeps the session in the home.
    m.ok(&["daemon", "stop"]);
    assert!(m.home().join("spool.json").exists() || m.logs().contains("kept the running sessions"), "the stop kept the session");
    std::thread::sleep(Duration::from_millis(800));
    // The next daemon takes it; `vpd run` reattaches and resends what the old one lacked.
    m.ok(&["reconnect"]);
    assert!(!m.home().join("spool.json").exists(), "the spool is taken once");
    wait_until("the session to stream again", Duration::from_secs(20), || {
        m.ok(&["sessions"]).as_array().unwrap().iter().any(|s| s["sessionId"] == session.as_str() && s["state"] == "streaming")
    });
    std::thread::sleep(Duration::from_millis(300));
    finish_session(&server, "acme", &api, child, &session);
}

/// A source that serves `manifest` at `latest` and `file` at `file` (or cuts it after `cut`
/// bytes).
fn fake_source(manifest: String, file: Vec<u8>, cut: Option<usize>) -> String {
    let url = fake_http(move |_, path| {
        if path.starts_with("/rel/latest") {
            http_answer("200 OK", "application/json", &manifest)
        } else if path == "/rel/file" {
            let body = match cut {
                Some(n) => &file[..n],
                None => &file[..],
            };
            let mut r =
                format!("HTTP/1.1 200 OK\r\ncontent-type: application/octet-stream\r\ncontent-length: {}\r\nconnection: close\r\n\r\n", file.len())
                    .into_bytes();
            r.extend_from_slice(body);
            r
        } else {
            http_answer("404 Not Found", "text/plain", "no")
        }
    });
    format!("{url}/rel")
}

fn manifest(version: &str, arch: &str, signature: &str) -> String {
    serde_json::json!({"format": 1, "version": version, "os": "linux", "arch": arch, "url": "file", "signature": signature}).to_string()
}

#[test]
fn every_refusal_leaves_the_installation_untouched() {
    let (next_dir, next) = next_build();
    let work = tempfile::tempdir().unwrap();
    let (m, installed) = installed_machine(work.path(), &["vpd", "vpd-daemon"]);
    let keys = keygen(&work.path().join("keys"));
    let other = keygen(&work.path().join("other"));
    let key = keys.join("release.pub");
    let archive = work.path().join("next.tar.gz");
    package(&next, &next_dir, &archive, ARCH, &["vpd", "vpd-daemon"]);
    let bytes = std::fs::read(&archive).unwrap();
    let before = versions(&m);
    let untouched = |m: &Machine, what: &str| {
        assert_eq!(versions(m), before, "{what}: no version added");
        assert_eq!(version_of(m.vpd.as_ref().unwrap()), installed, "{what}: still the installed version");
        assert!(!m.home().join("update-state.json").exists(), "{what}: no update recorded");
        let staging: Vec<_> = std::fs::read_dir(m.path(".local/share/viewport/versions"))
            .unwrap()
            .flatten()
            .filter(|e| e.file_name().to_string_lossy().starts_with('.'))
            .collect();
        assert!(staging.is_empty(), "{what}: nothing left half-unpacked");
    };
    let refuse = |m: &Machine, source: &str, what: &str, expect: &str| {
        let e = m.fails(&["update", "--source", source, "--trust-key", key.to_str().unwrap(), "--yes"]);
        assert!(e["message"].as_str().unwrap().contains(expect), "{what}: {e}");
        untouched(m, what);
        e
    };

    // Signed by another key.
    let sig_other = sign(&archive, &other, &next, ARCH);
    let e =
        refuse(&m, &fake_source(manifest(&next, ARCH, &sig_other), bytes.clone(), None), "another key", "not signed by the key this machine trusts");
    assert_eq!(e["code"], "update_refused");
    // A tampered file (signed properly, changed after).
    let sig = sign(&archive, &keys, &next, ARCH);
    let mut tampered = bytes.clone();
    let mid = tampered.len() / 2;
    tampered[mid] ^= 0xff;
    refuse(&m, &fake_source(manifest(&next, ARCH, &sig), tampered, None), "a tampered file", "not signed by the key");
    // A download cut in the middle.
    let e = refuse(&m, &fake_source(manifest(&next, ARCH, &sig), bytes.clone(), Some(bytes.len() / 3)), "a cut download", "nothing was changed");
    assert!(["server_unreachable", "update_refused"].contains(&e["code"].as_str().unwrap()), "{e}");
    // A lower version (a downgrade, or an older release replayed).
    let small = work.path().join("old.bin");
    std::fs::write(&small, b"an old vpd").unwrap();
    let old_sig = sign(&small, &keys, "0.0.1", ARCH);
    refuse(&m, &fake_source(manifest("0.0.1", ARCH, &old_sig), b"an old vpd".to_vec(), None), "a lower version", "downgrade");
    // The same version: up to date, nothing installed.
    let same_sig = sign(&small, &keys, &installed, ARCH);
    let same = fake_source(manifest(&installed, ARCH, &same_sig), b"an old vpd".to_vec(), None);
    let check = m.ok(&["update", "--source", &same, "--trust-key", key.to_str().unwrap(), "--yes"]);
    assert_eq!(check["updateAvailable"], false, "{check}");
    untouched(&m, "the same version");
    // Another architecture.
    let arch = if ARCH == "aarch64" { "x86_64" } else { "aarch64" };
    let arch_sig = sign(&archive, &keys, &next, arch);
    refuse(&m, &fake_source(manifest(&next, arch, &arch_sig), bytes.clone(), None), "another arch", "not for this machine");
    // A source that answers with a web page.
    let html = fake_http(|_, _| http_answer("200 OK", "text/html", "<!doctype html><html><body>Welcome</body></html>"));
    refuse(&m, &html, "an HTML answer", "web page");
    // The manifest lies about the version its signature names.
    refuse(&m, &fake_source(manifest("9.9.9", ARCH, &sig), bytes.clone(), None), "a lying manifest", "its signature says");
    // A plain-http source that is not this machine.
    let e = m.fails(&["update", "--source", "http://releases.example.com/", "--trust-key", key.to_str().unwrap(), "--yes"]);
    assert_eq!(e["code"], "insecure_url", "{e}");

    // A source that is refused is not trusted: the one trusted before stays.
    m.ok(&["update", "--source", &same, "--trust-key", key.to_str().unwrap(), "--yes", "--check"]);
    let trusted = std::fs::read(m.home().join("update.json")).unwrap();
    m.fails(&["update", "--source", &html, "--trust-key", key.to_str().unwrap(), "--yes"]);
    m.fails(&["update", "--source", &same, "--trust-key", other.join("release.pub").to_str().unwrap(), "--yes"]);
    assert_eq!(std::fs::read(m.home().join("update.json")).unwrap(), trusted, "a refused source or key replaces nothing");

    // The source and key are set only by the command line: no local-API request sets them,
    // and no environment variable is read at run time.
    let good = fake_source(manifest(&next, ARCH, &sig), bytes.clone(), None);
    let before_trust = std::fs::read(m.home().join("update.json")).unwrap();
    for method in ["update_trust", "set_update_source", "update"] {
        let reply = raw_api(&m, &format!("{{\"method\":\"{method}\",\"params\":{{\"source\":\"{good}\",\"key\":\"x\"}}}}"));
        assert!(reply.contains("\"error\""), "{method}: {reply}");
    }
    let v = check_with_source_in_env(&m, &good, &key);
    assert_eq!(v["source"], format!("{same}/"), "the trusted source, not one from the environment: {v}");
    assert_eq!(v["updateAvailable"], false, "{v}");
    assert_eq!(std::fs::read(m.home().join("update.json")).unwrap(), before_trust, "update.json is unchanged");
    untouched(&m, "the local API and the environment");

    // Trusting a key needs a yes: without a terminal and without --yes, nothing is written.
    let fresh = Machine { dir: tempfile::tempdir().unwrap(), env: vec![], keyring: false, vpd: m.vpd.clone() };
    // A home that trusts nothing yet: the environment does not make it trust anything.
    let v = check_with_source_in_env(&fresh, &good, &key);
    assert_eq!(v["error"]["code"], "not_updatable", "no source from the environment: {v}");
    let e = fresh.fails(&["update", "--source", &good, "--trust-key", key.to_str().unwrap()]);
    assert!(e["message"].as_str().unwrap().contains("--yes"), "{e}");
    assert!(!fresh.home().join("update.json").exists());
}

/// `vpd update --check --json` with `source` and `key` in every environment variable one
/// might try (the run-time one and the build-time ones): its answer.
fn check_with_source_in_env(m: &Machine, source: &str, key: &Path) -> Value {
    let out = m
        .command()
        .args(["update", "--check", "--json"])
        .env("VPD_UPDATE_SOURCE", source)
        .env("VPD_BUILD_UPDATE_SOURCE", source)
        .env("VPD_BUILD_UPDATE_KEY", std::fs::read_to_string(key).unwrap())
        .output()
        .unwrap();
    serde_json::from_slice(&out.stdout).unwrap()
}

/// One request on the daemon's local API, as any local program could send it.
fn raw_api(m: &Machine, line: &str) -> String {
    use std::io::{BufRead, Write};
    m.ok(&["status"]);
    let mut s = std::os::unix::net::UnixStream::connect(m.home().join("vpd.sock")).unwrap();
    s.write_all(format!("{line}\n").as_bytes()).unwrap();
    let mut reply = String::new();
    std::io::BufReader::new(s).read_line(&mut reply).unwrap();
    reply
}

#[test]
fn a_package_managers_installation_or_a_build_directory_is_never_overwritten() {
    let work = tempfile::tempdir().unwrap();
    // Installed by a package: the marker names the command.
    let pkg = work.path().join("usr/bin");
    std::fs::create_dir_all(&pkg).unwrap();
    for b in ["vpd", "vpd-daemon"] {
        std::fs::copy(bin(b), pkg.join(b)).unwrap();
    }
    std::fs::write(pkg.join("viewport-package.json"), r#"{"manager": "apt", "command": "sudo apt upgrade viewport"}"#).unwrap();
    let before = std::fs::read(pkg.join("vpd")).unwrap();
    let mut m = Machine::new();
    m.vpd = Some(pkg.join("vpd"));
    let out = m.vpd(&["update"]);
    assert!(!out.status.success());
    let text = String::from_utf8_lossy(&out.stderr);
    assert!(text.contains("sudo apt upgrade viewport"), "{text}");
    assert_eq!(std::fs::read(pkg.join("vpd")).unwrap(), before);
    let e = m.fails(&["update"]);
    assert_eq!(e["code"], "not_updatable");
    // A build directory.
    let dev = Machine::new();
    let e = dev.fails(&["update"]);
    assert_eq!(e["code"], "not_updatable");
    assert!(e["message"].as_str().unwrap().contains("not an installation"), "{e}");
}

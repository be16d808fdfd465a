//! Trying vpd leaves no trace: the quickstart touches nothing outside its own directory
//! (not HOME, not the keyring, no login item); `vpd install` registers a login item for the
//! home it installs and `vpd uninstall` removes exactly that; `--purge` leaves nothing; a
//! daemon whose home disappears stops itself.

mod support;

use serde_json::Value;
use std::collections::BTreeMap;
use std::io::{BufRead, BufReader};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;
use support::*;

/// Every entry below `root`: path → (kind, size, mode, modification time in ns). A directory's
/// time changes when anything is created or removed in it, so "the same" means untouched.
fn snapshot(root: &Path) -> BTreeMap<PathBuf, (char, u64, u32, i128)> {
    fn walk(root: &Path, dir: &Path, out: &mut BTreeMap<PathBuf, (char, u64, u32, i128)>) {
        for e in std::fs::read_dir(dir).unwrap().flatten() {
            let m = e.path().symlink_metadata().unwrap();
            let kind = if m.is_dir() {
                'd'
            } else if m.file_type().is_symlink() {
                'l'
            } else {
                'f'
            };
            let size = if m.is_dir() { 0 } else { m.len() };
            out.insert(
                e.path().strip_prefix(root).unwrap().to_path_buf(),
                (kind, size, m.mode(), m.mtime() as i128 * 1_000_000_000 + m.mtime_nsec() as i128),
            );
            if m.is_dir() {
                walk(root, &e.path(), out);
            }
        }
    }
    let mut out = BTreeMap::new();
    let m = root.symlink_metadata().unwrap();
    out.insert(PathBuf::from("."), ('d', 0, m.mode(), m.mtime() as i128 * 1_000_000_000 + m.mtime_nsec() as i128));
    walk(root, root, &mut out);
    out
}

/// Whether process `pid` is gone (or a zombie nobody reaped yet).
fn gone(pid: u32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Err(_) => true,
        Ok(s) => s.rsplit(')').next().is_some_and(|rest| rest.trim_start().starts_with('Z')),
    }
}

fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..").canonicalize().unwrap()
}

#[test]
fn the_quickstart_leaves_home_the_keyring_and_login_items_as_they_were() {
    let bus = KeyringBus::start();
    let user = tempfile::tempdir().unwrap();
    // A lived-in HOME: the quickstart must touch none of it.
    std::fs::write(user.path().join(".bashrc"), "export EDITOR=vi\n").unwrap();
    std::fs::create_dir_all(user.path().join(".config/autostart")).unwrap();
    std::fs::write(user.path().join(".config/autostart/other.desktop"), "[Desktop Entry]\n").unwrap();
    let before = snapshot(user.path());
    let place = tempfile::tempdir().unwrap();
    let qs = place.path().join("qs");
    let port = free_port();
    let bin_dir = bin("vpd").parent().unwrap().to_path_buf();
    let script = repo_root().join("scripts/quickstart.sh");
    let run = |args: &[&str]| {
        let out = Command::new("bash")
            .arg(&script)
            .args(args)
            .env_clear()
            .env("HOME", user.path())
            .env("PATH", std::env::var_os("PATH").unwrap_or_default())
            .env("DBUS_SESSION_BUS_ADDRESS", &bus.address)
            .env("VPD_QUICKSTART_DIR", &qs)
            .env("VPD_QUICKSTART_PORT", port.to_string())
            .env("VPD_QUICKSTART_UI_PORT", "0")
            .env("VPD_QUICKSTART_BIN", &bin_dir)
            .stdin(Stdio::null())
            .output()
            .unwrap();
        let text = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
        assert!(out.status.success(), "quickstart.sh {args:?} failed:\n{text}");
        text
    };

    let said = run(&[]);
    assert!(said.contains("Ready."), "{said}");
    assert!(said.contains("export VIEWPORT_HOME=") && said.contains("VPD_KEYRING=off"), "{said}");
    assert!(!said.contains("Start at login: registered"), "{said}");

    // Pair the way the printed steps say (in a shell with those exports), approved by the
    // admin command, so that a token is stored somewhere.
    let mut pair = Command::new(bin_dir.join("vpd"))
        .args(["pair", "--org", "demo", "--no-browser", "--json"])
        .env_clear()
        .env("HOME", user.path())
        .env("PATH", std::env::var_os("PATH").unwrap_or_default())
        .env("DBUS_SESSION_BUS_ADDRESS", &bus.address)
        .env("VIEWPORT_HOME", qs.join("home"))
        .env("VPD_KEYRING", "off")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(pair.stdout.take().unwrap()).lines();
    let code: Value = serde_json::from_str(&lines.next().unwrap().unwrap()).unwrap();
    let approve = Command::new(bin("viewport-server"))
        .args(["admin", "--db"])
        .arg(qs.join("viewport.db"))
        .args(["pairing", "approve", code["code"].as_str().unwrap(), "--org", "demo", "--user", "demo@localhost"])
        .output()
        .unwrap();
    assert!(approve.status.success(), "{}", String::from_utf8_lossy(&approve.stderr));
    let done: Value = serde_json::from_str(&lines.map_while(Result::ok).last().unwrap()).unwrap();
    assert_eq!(done["event"], "paired", "{done}");
    assert!(pair.wait().unwrap().success());
    assert_eq!(done["credentialStore"], "file", "the quickstart keeps tokens in its own home: {done}");
    let config = std::fs::read_to_string(qs.join("home/config.json")).unwrap();
    assert!(config.contains("issueToken"), "the token is in the quickstart's config.json");

    let daemon_pid: u32 = std::fs::read_to_string(qs.join("home/daemon.lock")).unwrap().trim().parse().unwrap();
    let server_pid: u32 = std::fs::read_to_string(qs.join("server.pid")).unwrap().trim().parse().unwrap();
    let said = run(&["stop"]);
    assert!(said.contains("vpd daemon stopped") && said.contains("viewport-server stopped"), "{said}");
    wait_until("the daemon and the server to exit", Duration::from_secs(20), || gone(daemon_pid) && gone(server_pid));

    assert_eq!(snapshot(user.path()), before, "HOME changed");
    assert_eq!(bus.vpd_secrets(), "", "the keyring holds a vpd entry");
    assert!(qs.join("viewport.db").exists(), "stop keeps the data");
    let said = run(&["clean"]);
    assert!(said.contains("Removed"), "{said}");
    assert!(!qs.exists(), "clean removes the quickstart's directory");
    assert_eq!(snapshot(user.path()), before, "HOME changed");
}

/// The login item's command line, as written in the XDG autostart entry.
fn autostart(m: &Machine) -> Option<String> {
    let text = std::fs::read_to_string(m.path(".config/autostart/Viewport.desktop")).ok()?;
    text.lines().find_map(|l| l.strip_prefix("Exec=")).map(str::to_string)
}

#[test]
fn install_registers_its_own_home_and_uninstall_removes_only_that() {
    let server = Server::start();
    let mut m = Machine::new();
    let first = m.path("first home");
    let second = m.path("second");
    m.env.push(("VIEWPORT_HOME".into(), first.display().to_string()));
    let a = m.ok(&["install", "--server", &server.url]);
    let cmd_a = a["loginItem"].as_str().unwrap().to_string();
    // The tray when it is built next to vpd, else `vpd daemon`; either way for this home.
    assert!(cmd_a.ends_with(&format!(" --home {}", first.display())), "{a}");
    assert!(a["loginItemReplaced"].is_null());
    let exec = autostart(&m).expect("an autostart entry");
    assert!(exec.ends_with(&format!(" --home \"{}\"", first.display())), "quoted for the desktop entry: {exec}");

    // A second install for another home says what it replaces.
    let a2 = m.command().args(["--home"]).arg(&second).args(["install", "--json"]).output().unwrap();
    assert!(a2.status.success(), "{}", String::from_utf8_lossy(&a2.stderr));
    let a2: Value = serde_json::from_slice(&a2.stdout).unwrap();
    assert_eq!(a2["home"], second.display().to_string());
    assert!(a2["loginItem"].as_str().unwrap().ends_with(&format!(" --home {}", second.display())), "{a2}");
    assert!(a2["loginItemReplaced"].as_str().unwrap().contains("first home"), "{a2}");
    let text = String::from_utf8(m.command().args(["--home"]).arg(&second).arg("install").output().unwrap().stdout).unwrap();
    assert!(text.contains("Start at login: registered"), "{text}");

    // Uninstalling the first home leaves the second home's entry alone, and says so.
    let u = m.ok(&["uninstall"]);
    assert!(u["loginItemRemoved"].is_null(), "{u}");
    assert!(u["loginItemKept"].as_str().unwrap().contains("second"), "{u}");
    assert!(autostart(&m).unwrap().contains("second"));
    // The second home's uninstall removes it.
    let out = m.command().args(["--home"]).arg(&second).arg("uninstall").output().unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success() && text.contains("Removed the login item"), "{text}");
    assert_eq!(autostart(&m), None);
    let u = m.ok(&["uninstall"]);
    assert!(u["loginItemRemoved"].is_null() && u["loginItemKept"].is_null(), "nothing to remove: {u}");
}

#[test]
fn uninstall_purge_leaves_nothing_behind() {
    let server = Server::start();
    let acme = server.org_with_member("Acme Engineering", "acme", "ann@example.com");
    let mut m = Machine::new();
    let home = m.path("vp");
    m.env.push(("VIEWPORT_HOME".into(), home.display().to_string()));
    // The user's own things: kept, untouched.
    std::fs::write(m.path(".bashrc"), "eval \"$(vpd hook bash)\"\n").unwrap();
    let repo = m.mkdir("code/api");
    std::fs::create_dir_all(repo.join(".git")).unwrap();
    std::fs::write(repo.join("README"), "hello\n").unwrap();
    let before = snapshot(m.dir.path());

    m.ok(&["install", "--server", &server.url]);
    assert!(autostart(&m).is_some());
    // Pairing and binding: what --purge must take back.
    let (p, first) = m.start_pair(&["--server", &server.url, "--org", "acme"]);
    server.approve(first["code"].as_str().unwrap(), &acme, "ann@example.com");
    let paired = p.finish();
    m.ok(&["bind", repo.to_str().unwrap(), "--org", "acme"]);
    assert!(repo.join(".viewport/local.yaml").exists());
    let pid = std::fs::read_to_string(home.join("daemon.lock")).unwrap().trim().parse::<u32>().unwrap();

    // Without --yes, and no terminal to ask on: refused, nothing changed.
    let r = m.fails(&["uninstall", "--purge"]);
    assert!(r["message"].as_str().unwrap().contains("--yes"), "{r}");
    assert!(home.join("config.json").exists());

    let u = m.ok(&["uninstall", "--purge", "--yes", "--remove-bindings"]);
    assert_eq!(u["unpaired"][0]["serverNotified"], true, "the platform is told: {u}");
    assert_eq!(u["unbound"][0], repo.display().to_string(), "{u}");
    assert!(u["loginItemRemoved"].as_str().is_some_and(|c| c.contains("--home")), "{u}");
    assert_eq!(u["shellHookLines"][0][1], "eval \"$(vpd hook bash)\"", "reported, not edited: {u}");
    assert_eq!(u["homeLeft"], serde_json::json!([]));
    wait_until("the daemon to exit", Duration::from_secs(10), || gone(pid));
    assert!(!home.exists(), "the home is removed");
    assert!(!repo.join(".viewport").exists(), "the binding files are removed");
    assert_eq!(autostart(&m), None);
    // The platform revoked that machine.
    let machines = server.admin(&["machine", "list", "--org", "acme"]);
    assert_eq!(machines[0]["machine_id"], paired["machineId"], "{machines}");
    assert!(machines[0]["revoked_at"].is_string(), "{machines}");
    // What is left of HOME is exactly what was there before, bar the empty autostart folder
    // auto-launch made for the login item.
    let mut after = snapshot(m.dir.path());
    after.retain(|p, _| !p.starts_with(".config"));
    let mut expected = before.clone();
    expected.remove(Path::new("."));
    after.remove(Path::new("."));
    // Directories whose listing changed (a file came and went) have a new time; compare names.
    assert_eq!(after.keys().collect::<Vec<_>>(), expected.keys().collect::<Vec<_>>(), "files left behind");
    assert_eq!(std::fs::read_dir(m.path(".config/autostart")).unwrap().count(), 0);
    assert_eq!(std::fs::read_to_string(m.path(".bashrc")).unwrap(), "eval \"$(vpd hook bash)\"\n");
}

#[test]
fn a_daemon_whose_home_is_removed_or_replaced_stops_itself() {
    for how in ["removed", "replaced"] {
        let m = Machine::new();
        m.ok(&["install", "--no-login-item"]);
        let pid = m.daemon_pid().unwrap();
        let ui = m.ok(&["ui", "--no-browser"]);
        let port: u16 = ui["url"].as_str().unwrap().split(':').nth(2).unwrap().split('/').next().unwrap().parse().unwrap();
        let moved = m.path("moved-away");
        match how {
            "removed" => std::fs::remove_dir_all(m.home()).unwrap(),
            _ => {
                std::fs::rename(m.home(), &moved).unwrap();
                std::fs::create_dir(m.home()).unwrap();
            }
        }
        wait_until(&format!("the daemon to stop when its home is {how}"), Duration::from_secs(10), || gone(pid));
        // The web UI's port is free again.
        std::net::TcpListener::bind(("127.0.0.1", port)).unwrap_or_else(|e| panic!("port {port} still held: {e}"));
        if how == "replaced" {
            let said = std::fs::read_to_string(moved.join("logs/daemon-stderr.log")).unwrap_or_default();
            assert!(said.contains("was removed; stopping") || said.contains("replaced by another file; stopping"), "{said}");
        }
    }
}

/// Issue 11 item 8: one mechanism per install. `--service systemd` writes a user unit and
/// removes the login item; `--service autostart` brings the login item back and removes the
/// unit; `--service none` leaves neither; each says what it replaced.
#[test]
fn install_service_kinds_replace_each_other() {
    let m = Machine::new();
    let unit = m.path(".config/systemd/user/vpd.service");
    let a = m.ok(&["install"]);
    assert_eq!(a["service"], "autostart");
    assert!(autostart(&m).is_some() && !unit.exists());

    let s = m.ok(&["install", "--service", "systemd"]);
    assert_eq!(s["service"], "systemd", "{s}");
    let text = std::fs::read_to_string(&unit).expect("the user unit");
    let exec = text.lines().find_map(|l| l.strip_prefix("ExecStart=")).unwrap();
    assert!(exec.contains("vpd") && exec.ends_with(" daemon"), "the default home needs no --home: {exec}");
    assert!(autostart(&m).is_none(), "the login item went: {s}");
    assert!(s["replaced"][0].as_str().unwrap().starts_with("the login item that started"), "{s}");
    // Enabled, or (no systemd user session, as in this test) it says what to run; the same
    // for starting at boot.
    match s["systemd"]["enabled"].as_bool() {
        Some(true) => assert!(s["systemd"]["enableCommand"].is_null(), "{s}"),
        _ => assert!(s["systemd"]["enableCommand"].as_str().unwrap().contains("systemctl --user enable --now vpd.service"), "{s}"),
    }
    match s["systemd"]["linger"].as_bool() {
        Some(true) => assert!(s["systemd"]["lingerCommand"].is_null(), "{s}"),
        _ => assert!(s["systemd"]["lingerCommand"].as_str().unwrap().starts_with("loginctl enable-linger "), "{s}"),
    }
    assert!(text.contains("RestartPreventExitStatus=3"), "no restart loop beside a running daemon: {text}");
    // The daemon runs (started by the unit, or here when systemd cannot).
    assert_eq!(m.ok(&["status"])["daemon"]["running"], true);
    let human = String::from_utf8(m.command().args(["install", "--service", "systemd"]).output().unwrap().stdout).unwrap();
    assert!(human.contains("Start at login: systemd user unit"), "{human}");

    let b = m.ok(&["install", "--service", "autostart"]);
    assert!(autostart(&m).is_some() && !unit.exists(), "{b}");
    assert!(b["replaced"].as_array().unwrap().iter().any(|r| r.as_str().unwrap().contains("systemd user unit")), "{b}");

    let n = m.ok(&["install", "--service", "none"]);
    assert!(autostart(&m).is_none() && !unit.exists(), "{n}");
    // Uninstall removes this home's unit too.
    m.ok(&["install", "--service", "systemd"]);
    assert!(unit.exists());
    let u = m.ok(&["uninstall"]);
    assert!(!unit.exists() && u["serviceRemoved"].as_str().unwrap().contains("vpd.service"), "{u}");
    m.ok(&["install", "--service", "none"]);
    let bad = m.command().args(["install", "--service", "launchd"]).output().unwrap();
    assert!(!bad.status.success());
    assert!(String::from_utf8_lossy(&bad.stderr).contains("autostart, systemd or none"));
    m.ok(&["daemon", "stop"]);
}

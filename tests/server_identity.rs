//! SPEC amendment A1 (issue 10, items 1 and 2): an org is (server, workspaceId). A second
//! server that claims the first one's org id is a second pairing and never takes over the
//! first; a home written by the release before (config.json version 1) upgrades in place,
//! with a backup, restartably, and keeps streaming.

mod support;
use serde_json::Value;
use std::path::{Path, PathBuf};
use std::time::Duration;
use support::*;

fn sessions(server: &Server, org: &str) -> Vec<Value> {
    server.admin(&["session", "list", "--org", org]).as_array().cloned().unwrap_or_default()
}

fn connected(m: &Machine, n: usize) {
    wait_until(&format!("{n} pairing(s) connected"), Duration::from_secs(20), || {
        let st = m.ok(&["status"]);
        st["pairings"].as_array().unwrap().iter().filter(|p| p["state"] == "connected").count() == n
    });
}

#[test]
fn a_second_server_claiming_the_same_org_id_is_a_second_pairing_and_never_takes_over() {
    let mut first = Server::start();
    let acme = first.org_with_member("Acme Engineering", "acme", "alice@example.com");
    let m = Machine::new();
    m.pair(&first, &acme, "alice@example.com");
    let api = m.mkdir("work/api");
    m.ok(&["bind", api.to_str().unwrap(), "--org", "acme"]);
    connected(&m, 1);

    // A copy of the first server's database on another port: the same org id, the same user.
    first.stop();
    let second = Server::start_from(&first.db());
    first.restart();
    connected(&m, 1);
    let (p, code) = m.start_pair(&["--server", &second.url, "--org", "acme", "--force"]);
    assert_eq!(code["event"], "code", "{code}");
    second.approve(code["code"].as_str().unwrap(), "acme", "alice@example.com");
    let done = p.finish();
    assert_eq!(done["event"], "paired", "{done}");
    assert_eq!(done["replaced"], false, "--force never replaces another server's pairing: {done}");

    // Two pairings of the same org id, told apart by server.
    let cfg = m.config();
    let pairings = cfg["pairings"].as_array().unwrap();
    assert_eq!(pairings.len(), 2, "{cfg}");
    assert!(pairings.iter().all(|p| p["workspaceId"] == acme.as_str()));
    let servers: Vec<&str> = pairings.iter().map(|p| p["server"].as_str().unwrap()).collect();
    assert!(servers.contains(&first.url.as_str()) && servers.contains(&second.url.as_str()), "{servers:?}");
    assert_ne!(pairings[0]["pairingId"], pairings[1]["pairingId"]);
    for p in pairings {
        let id: Value =
            serde_json::from_slice(&std::fs::read(m.home().join(format!("relay-identities/{}.json", p["pairingId"].as_str().unwrap()))).unwrap())
                .unwrap();
        assert_eq!(id["pairingId"], p["pairingId"], "each pairing has its own identity file");
    }
    connected(&m, 2);

    // The directory bound to the first server streams to the first server only.
    let out = m.command().args(["run", "--cwd", api.to_str().unwrap(), "--", "echo", "to the first only"]).output().unwrap();
    assert!(out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("streaming to Acme Engineering"), "{}", String::from_utf8_lossy(&out.stderr));
    wait_until("the session on the first server", Duration::from_secs(10), || sessions(&first, "acme").iter().any(|s| s["ended_at"].is_string()));
    std::thread::sleep(Duration::from_millis(300));
    assert!(sessions(&second, "acme").is_empty(), "the second server saw nothing");
    let r = m.ok(&["resolve", api.to_str().unwrap()]);
    assert_eq!(r["server"], first.url.as_str(), "{r}");

    // The org id alone is ambiguous now: asked to choose, with each server named.
    let e = m.fails(&["unpair", "--org", "acme"]);
    assert!(e["message"].as_str().unwrap().contains(&first.url) && e["message"].as_str().unwrap().contains(&second.url), "{e}");
    // A repository that suggests the org asks which server, never picks one.
    let repo = m.mkdir("src/genuine");
    std::fs::create_dir_all(repo.join(".viewport")).unwrap();
    std::fs::write(repo.join(".viewport/workspace.yaml"), format!("org_id: {acme}\n")).unwrap();
    let h = m.ok(&["hint", repo.to_str().unwrap()]);
    assert_eq!(h["action"], "choose", "{h}");
    // Naming its server in workspace.yaml settles it.
    std::fs::write(repo.join(".viewport/workspace.yaml"), format!("org_id: {acme}\nserver: {}\n", first.url)).unwrap();
    let h = m.ok(&["hint", repo.to_str().unwrap()]);
    assert_eq!((h["action"].as_str(), h["server"].as_str()), (Some("ask_bind"), Some(first.url.as_str())), "{h}");

    // Re-pairing the first server (same server, --force) replaces only that one.
    let (p, code) = m.start_pair(&["--server", &first.url, "--org", "acme", "--force"]);
    first.approve(code["code"].as_str().unwrap(), "acme", "alice@example.com");
    assert_eq!(p.finish()["replaced"], true);
    assert_eq!(m.pairing_count(), 2);
    assert_eq!(m.ok(&["resolve", api.to_str().unwrap()])["server"], first.url.as_str(), "re-pairing keeps the binding's server");

    // A company moving its platform moves the bindings explicitly, and only then.
    let (p, code) = m.start_pair(&["--server", &second.url, "--org", "acme", "--force", "--move-bindings-from", &first.url, "--yes"]);
    second.approve(code["code"].as_str().unwrap(), "acme", "alice@example.com");
    let done = p.finish();
    assert_eq!(done["movedBindings"], serde_json::json!([api.to_str().unwrap()]), "{done}");
    assert_eq!(m.ok(&["resolve", api.to_str().unwrap()])["server"], second.url.as_str());
    connected(&m, 2);
    let out = m.command().args(["run", "--cwd", api.to_str().unwrap(), "--", "echo", "to the second now"]).output().unwrap();
    assert!(out.status.success());
    wait_until("the session on the second server", Duration::from_secs(10), || sessions(&second, "acme").iter().any(|s| s["ended_at"].is_string()));
    assert_eq!(sessions(&first, "acme").len(), 1, "nothing more went to the first server");
}

/// Copies the fixture home (written by the version 1 release) into `m`, pointed at `port`,
/// and its bound directory into place. Returns the bound directory.
fn fixture_home(m: &Machine, port: u16) -> PathBuf {
    use std::os::unix::fs::PermissionsExt;
    let fx = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../tests/fixtures/v1-home");
    let old_port = std::fs::read_to_string(fx.join("port")).unwrap().trim().to_string();
    let home = m.home();
    std::fs::create_dir_all(home.join("relay-identities")).unwrap();
    std::fs::set_permissions(&home, std::fs::Permissions::from_mode(0o700)).unwrap();
    std::fs::set_permissions(home.join("relay-identities"), std::fs::Permissions::from_mode(0o700)).unwrap();
    let config = std::fs::read_to_string(fx.join("config.json")).unwrap().replace(&format!("127.0.0.1:{old_port}"), &format!("127.0.0.1:{port}"));
    let write = |p: PathBuf, text: &[u8]| {
        std::fs::write(&p, text).unwrap();
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o600)).unwrap();
    };
    write(home.join("config.json"), config.as_bytes());
    write(home.join("directories.json"), &std::fs::read(fx.join("directories.json")).unwrap());
    for e in std::fs::read_dir(fx.join("relay-identities")).unwrap() {
        let e = e.unwrap();
        write(home.join("relay-identities").join(e.file_name()), &std::fs::read(e.path()).unwrap());
    }
    let dirs: Value = serde_json::from_slice(&std::fs::read(fx.join("directories.json")).unwrap()).unwrap();
    let bound = PathBuf::from(dirs["bindings"][0]["directory"].as_str().unwrap());
    std::fs::create_dir_all(bound.join(".viewport")).unwrap();
    std::fs::write(bound.join(".viewport/local.yaml"), std::fs::read(fx.join("local.yaml")).unwrap()).unwrap();
    bound
}

fn fixture_server() -> Server {
    Server::start_from(&Path::new(env!("CARGO_MANIFEST_DIR")).join("../../tests/fixtures/v1-home/viewport.db"))
}

/// Everything the upgrade must leave: version 2 with each pairing's server and id, the
/// backup, the identity under its new name, the record naming its pairing, and streaming.
fn assert_upgraded(m: &Machine, server: &Server, bound: &Path, what: &str) {
    let cfg = m.config();
    assert_eq!(cfg["version"], 2, "{what}: {cfg}");
    let p = &cfg["pairings"][0];
    assert_eq!(p["server"], server.url.as_str(), "{what}");
    let pid = p["pairingId"].as_str().unwrap().to_string();
    let backup = m.home().join("config.json.v1.bak");
    assert_eq!(mode(&backup), 0o600, "{what}");
    let old: Value = serde_json::from_slice(&std::fs::read(&backup).unwrap()).unwrap();
    assert_eq!(old["version"], 1, "{what}: the backup is the version 1 file");
    let ws = p["workspaceId"].as_str().unwrap();
    assert!(!m.home().join(format!("relay-identities/{ws}.json")).exists(), "{what}: the old identity name is gone");
    assert_eq!(m.identity(ws)["pairingId"], pid.as_str(), "{what}");
    let dirs: Value = serde_json::from_slice(&std::fs::read(m.home().join("directories.json")).unwrap()).unwrap();
    assert_eq!(dirs["bindings"][0]["pairingId"], pid.as_str(), "{what}");
    connected(m, 1);
    let out = m.command().args(["run", "--cwd", bound.to_str().unwrap(), "--", "echo", "after the upgrade"]).output().unwrap();
    assert!(String::from_utf8_lossy(&out.stderr).contains("streaming to Acme Engineering"), "{what}: {}", String::from_utf8_lossy(&out.stderr));
    wait_until("the new session recorded", Duration::from_secs(10), || {
        sessions(server, "acme").iter().filter(|s| s["ended_at"].is_string()).count() == 2
    });
}

#[test]
fn a_home_written_by_the_version_1_release_upgrades_with_a_backup_and_keeps_streaming() {
    let server = fixture_server();
    let m = Machine::new();
    let bound = fixture_home(&m, server.port);
    // Written by the release before: a session of it is on the server already.
    assert_eq!(sessions(&server, "acme").len(), 1);
    m.ok(&["reconnect"]); // starts the daemon
    assert_upgraded(&m, &server, &bound, "first start");
    // Stopping and starting again changes nothing.
    m.ok(&["daemon", "stop"]);
    let before = std::fs::read(m.home().join("config.json")).unwrap();
    m.ok(&["reconnect"]);
    assert_eq!(std::fs::read(m.home().join("config.json")).unwrap(), before);
}

#[test]
fn the_upgrade_survives_a_crash_at_every_step() {
    for point in ["migrate:after-backup", "migrate:after-identity", "migrate:after-records"] {
        let server = fixture_server();
        let mut m = Machine::new();
        let bound = fixture_home(&m, server.port);
        m.env = vec![("VPD_FAILPOINT".into(), point.into())];
        let out = m.command().args(["daemon"]).output().unwrap();
        assert!(!out.status.success(), "{point}: the daemon died there");
        assert!(String::from_utf8_lossy(&out.stderr).contains(point), "{point}: {}", String::from_utf8_lossy(&out.stderr));
        m.env.clear();
        assert_eq!(m.config()["version"], 1, "{point}: config.json is the commit point");
        m.ok(&["reconnect"]);
        assert_upgraded(&m, &server, &bound, point);
        m.ok(&["daemon", "stop"]);
    }
}

#[test]
fn a_config_from_a_newer_version_is_still_refused() {
    let m = Machine::new();
    std::fs::create_dir_all(m.home()).unwrap();
    std::fs::write(m.home().join("config.json"), r#"{"version": 3, "pairings": []}"#).unwrap();
    let e = m.fails(&["bind", m.mkdir("x").to_str().unwrap()]);
    assert!(e["message"].as_str().unwrap().contains("newer vpd"), "{e}");
}

/// A version 1 home whose token is in the OS keyring under the runtime target id: the upgrade
/// moves it under the pairing id, and the pairing keeps streaming.
#[test]
fn the_upgrade_moves_a_keyring_entry_to_the_pairing_id() {
    let server = fixture_server();
    let bus = KeyringBus::start();
    let mut m = Machine::new();
    m.keyring = true;
    m.env.push(("DBUS_SESSION_BUS_ADDRESS".into(), bus.address.clone()));
    let bound = fixture_home(&m, server.port);
    let path = m.home().join("config.json");
    let mut cfg: Value = serde_json::from_slice(&std::fs::read(&path).unwrap()).unwrap();
    let token = cfg["pairings"][0]["credential"]["issueToken"].as_str().unwrap().to_string();
    let rt = cfg["pairings"][0]["runtimeTargetId"].as_str().unwrap().to_string();
    cfg["pairings"][0]["credential"] = serde_json::json!({"store": "keyring"});
    std::fs::write(&path, serde_json::to_vec_pretty(&cfg).unwrap()).unwrap();
    bus.store(&rt, &token);
    assert_eq!(bus.lookup(&rt).as_deref(), Some(token.as_str()));
    m.ok(&["reconnect"]);
    assert_upgraded(&m, &server, &bound, "keyring");
    let pid = m.config()["pairings"][0]["pairingId"].as_str().unwrap().to_string();
    assert_eq!(bus.lookup(&pid).as_deref(), Some(token.as_str()), "under the pairing id now");
    assert_eq!(bus.lookup(&rt), None, "and no longer under the server's id");
}

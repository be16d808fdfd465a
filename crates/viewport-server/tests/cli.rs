//! The built binary's admin commands against a temporary database.

mod common;

use std::process::Output;

fn run(db: &std::path::Path, args: &[&str], stdin: Option<&str>) -> Output {
    common::admin_cli(db, args, stdin.unwrap_or(""))
}

fn ok(o: Output) -> String {
    assert!(o.status.success(), "stderr: {}", String::from_utf8_lossy(&o.stderr));
    String::from_utf8(o.stdout).unwrap()
}

#[test]
fn admin_commands_work_on_a_temp_db() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("v.db");

    ok(run(&db, &["user", "create", "alice@example.com", "--password-stdin"], Some("correct horse battery\n")));
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        assert_eq!(std::fs::metadata(&db).unwrap().permissions().mode() & 0o777, 0o600);
    }
    // Duplicate user and short password: clear errors.
    let o = run(&db, &["user", "create", "alice@example.com", "--password-stdin"], Some("correct horse battery"));
    assert!(!o.status.success());
    assert!(String::from_utf8_lossy(&o.stderr).contains("already exists"));
    let o = run(&db, &["user", "create", "bob@example.com", "--password-stdin"], Some("short"));
    assert!(!o.status.success());

    let id = ok(run(&db, &["org", "create", "Acme Engineering", "--slug", "acme"], None));
    let id = id.trim();
    assert!(vpd_proto::is_ulid(id), "{id:?}");
    let j: serde_json::Value = serde_json::from_str(&ok(run(&db, &["org", "create", "Two", "--slug", "two", "--json"], None))).unwrap();
    assert_eq!(j["slug"], "two");
    assert_eq!(j["name"], "Two");

    // Approving/minting before membership names the fix.
    let o = run(&db, &["pairing", "mint", "--org", "acme", "--user", "alice@example.com"], None);
    assert!(String::from_utf8_lossy(&o.stderr).contains("member add"));

    ok(run(&db, &["member", "add", "--org", id, "--user", "alice@example.com"], None));
    let mint: serde_json::Value =
        serde_json::from_str(&ok(run(&db, &["pairing", "mint", "--org", "acme", "--user", "alice@example.com", "--json"], None))).unwrap();
    assert!(vpd_proto::normalize_code(mint["code"].as_str().unwrap()).is_some());

    // A machine paired through the store so the listing has a row.
    let store = viewport_server::store::Store::open(&db).unwrap();
    let m = viewport_server::store::MachineInfo {
        name: "box".into(),
        public_key: "k".into(),
        daemon_version: "0.1.0".into(),
        os: "linux".into(),
        arch: "x86_64".into(),
    };
    store.insert_device_code("BCDFGHJK", &[0; 32], &m, None, viewport_server::util::now(), viewport_server::util::now() + 900).unwrap();
    drop(store);
    ok(run(&db, &["pairing", "approve", "BCDF-GHJK", "--org", "acme", "--user", "alice@example.com"], None));
    let o = run(&db, &["pairing", "approve", "BCDF-GHJK", "--org", "acme", "--user", "alice@example.com"], None);
    assert!(!o.status.success(), "a second approval is refused");

    let list: serde_json::Value = serde_json::from_str(&ok(run(&db, &["machine", "list", "--org", "acme", "--json"], None))).unwrap();
    let rows = list.as_array().unwrap();
    assert_eq!(rows.len(), 1);
    let row = &rows[0];
    for k in ["machine_id", "runtime_target_id", "name", "os", "arch", "daemon_version", "paired_by", "paired_at", "revoked_at", "last_seen_at"] {
        assert!(row.get(k).is_some(), "{k} missing");
    }
    assert_eq!(row["paired_by"], "alice@example.com");
    assert!(row["revoked_at"].is_null());
    assert!(row["last_seen_at"].is_null(), "not seen until its first relay token");
    let human = ok(run(&db, &["machine", "list", "--org", "acme"], None));
    assert!(human.contains("last seen never"), "{human}");

    ok(run(&db, &["machine", "revoke", "--org", "acme", row["machine_id"].as_str().unwrap()], None));
    let list: serde_json::Value = serde_json::from_str(&ok(run(&db, &["machine", "list", "--org", "acme", "--json"], None))).unwrap();
    assert!(list[0]["revoked_at"].is_string());

    // A code the daemon cancelled (Ctrl-C) cannot be approved; the error says what to do.
    let store = viewport_server::store::Store::open(&db).unwrap();
    store.insert_device_code("BCDFGHJL", &[0; 32], &m, None, viewport_server::util::now(), viewport_server::util::now() + 900).unwrap();
    assert!(store.cancel_device_code("BCDFGHJL", viewport_server::util::now()).unwrap().is_some());
    drop(store);
    let o = run(&db, &["pairing", "approve", "BCDF-GHJL", "--org", "acme", "--user", "alice@example.com"], None);
    assert!(!o.status.success(), "a cancelled code cannot be approved");
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(err.contains("no pending pairing code") && err.contains("vpd pair"), "{err}");
    let list: serde_json::Value = serde_json::from_str(&ok(run(&db, &["machine", "list", "--org", "acme", "--json"], None))).unwrap();
    assert_eq!(list.as_array().unwrap().len(), 1, "nothing was created");

    // Unknown org: the error says how to find or create one.
    let o = run(&db, &["machine", "list", "--org", "nope"], None);
    assert!(!o.status.success());
    assert!(String::from_utf8_lossy(&o.stderr).contains("org create"));
    // Tenancy: the other org lists nothing.
    assert_eq!(ok(run(&db, &["machine", "list", "--org", "two", "--json"], None)).trim(), "[]");
}

/// Issue 13 item 5: `release keygen` and `release sign` run without a database; what they
/// sign is what vpd verifies; a key is never replaced; bad input writes nothing.
#[test]
fn release_keygen_and_sign_offline() {
    use std::os::unix::fs::PermissionsExt;
    use vpd_core::release::{verify, Expect, Version};
    let t = tempfile::tempdir().unwrap();
    let run = |args: &[&str]| std::process::Command::new(env!("CARGO_BIN_EXE_viewport-server")).args(args).current_dir(t.path()).output().unwrap();
    let keys = t.path().join("keys");
    let out = run(&["release", "keygen", "--out", keys.to_str().unwrap()]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let mode = |p: &std::path::Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode(&keys.join("release.key")), 0o600, "the secret key is private");
    let public = std::fs::read_to_string(keys.join("release.pub")).unwrap();
    let again = run(&["release", "keygen", "--out", keys.to_str().unwrap()]);
    assert!(!again.status.success() && String::from_utf8_lossy(&again.stderr).contains("never replaced"));
    assert_eq!(std::fs::read_to_string(keys.join("release.pub")).unwrap(), public, "the key is unchanged");

    let file = t.path().join("vpd");
    std::fs::write(&file, b"a release build of vpd").unwrap();
    let key = keys.join("release.key");
    let sign = |version: &str, arch: &str| {
        run(&["release", "sign", file.to_str().unwrap(), "--key", key.to_str().unwrap(), "--version", version, "--os", "linux", "--arch", arch])
    };
    for (version, arch) in [("0.2", "x86_64"), ("0.2.0", "X86 64")] {
        let bad = sign(version, arch);
        assert!(!bad.status.success(), "{version} {arch}");
        assert!(!t.path().join("vpd.minisig").exists(), "nothing written for bad input");
    }
    let ok = sign("0.2.0", "x86_64");
    assert!(ok.status.success(), "{}", String::from_utf8_lossy(&ok.stderr));
    let sig = std::fs::read_to_string(t.path().join("vpd.minisig")).unwrap();
    let here = Expect { os: "linux", arch: "x86_64", installed: Version(0, 1, 0) };
    let r = verify(b"a release build of vpd", &sig, &public, &here).unwrap();
    assert_eq!((r.version, r.size), (Version(0, 2, 0), 22));
    assert!(verify(b"a release build of vpd!", &sig, &public, &here).is_err());
}

/// `--db` with a URL scheme this build does not support is refused clearly, and nothing is
/// created (it once made a SQLite file under a directory named `postgres:`).
#[test]
fn an_unsupported_database_url_is_refused_and_creates_nothing() {
    let dir = tempfile::tempdir().unwrap();
    for db in ["mysql://u@h/viewport", "sqlite:viewport.db", "redis://h"] {
        for args in [vec!["admin", "--db", db, "doctor"], vec!["serve", "--listen", "127.0.0.1:0", "--db", db]] {
            let out = std::process::Command::new(env!("CARGO_BIN_EXE_viewport-server")).args(&args).current_dir(dir.path()).output().unwrap();
            assert!(!out.status.success(), "{args:?} succeeded");
            let err = String::from_utf8_lossy(&out.stderr);
            assert!(err.contains("postgres://") && err.contains("SQLite file path"), "{args:?}: {err}");
        }
    }
    assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 0, "nothing was created");
}

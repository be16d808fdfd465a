//! Issue 13 item 5: releases signed offline, published with `admin release publish`, offered
//! by `GET /api/releases/latest?os=&arch=` (the newest by version, not by name or date) and
//! downloaded from the manifest's relative `url`. The server checks that a signature
//! describes its file; whether the signer is trusted is the machine's decision.

mod common;

use vpd_core::release::{check_manifest, verify, Expect, Offer, Version};

fn cli(args: &[&str], dir: &std::path::Path) -> std::process::Output {
    std::process::Command::new(env!("CARGO_BIN_EXE_viewport-server")).args(args).current_dir(dir).output().unwrap()
}

fn signed(dir: &std::path::Path, name: &str, body: &[u8], version: &str, arch: &str) -> (String, String) {
    let file = dir.join(name);
    std::fs::write(&file, body).unwrap();
    let key = dir.join("keys/release.key");
    let o =
        cli(&["release", "sign", file.to_str().unwrap(), "--key", key.to_str().unwrap(), "--version", version, "--os", "linux", "--arch", arch], dir);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    (file.display().to_string(), format!("{}.minisig", file.display()))
}

#[tokio::test]
async fn published_releases_are_offered_newest_first_and_download_whole() {
    let s = common::start().await;
    let t = tempfile::tempdir().unwrap();
    assert!(cli(&["release", "keygen", "--out", t.path().join("keys").to_str().unwrap()], t.path()).status.success());
    let public = std::fs::read_to_string(t.path().join("keys/release.pub")).unwrap();

    // Nothing published yet: a JSON 404 that names the platform.
    let r = s.http.get(s.at("/api/releases/latest?os=linux&arch=x86_64")).send().await.unwrap();
    assert_eq!(r.status(), 404);
    assert_eq!(common::error_code(r).await, "no_release");
    let r = s.http.get(s.at("/api/releases/latest?os=Linux%20x&arch=x86_64")).send().await.unwrap();
    assert_eq!(r.status(), 400);

    for (name, version) in [("vpd-0.9.0.tar.gz", "0.9.0"), ("vpd-0.10.0.tar.gz", "0.10.0"), ("vpd-0.2.0.tar.gz", "0.2.0")] {
        let (file, sig) = signed(t.path(), name, format!("vpd {version}").as_bytes(), version, "x86_64");
        let o = common::admin_cli(&s.db_path, &["release", "publish", &file, "--signature", &sig, "--json"], "");
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    }
    let (arm, arm_sig) = signed(t.path(), "vpd-arm.tar.gz", b"vpd for arm", "0.11.0", "aarch64");
    assert!(common::admin_cli(&s.db_path, &["release", "publish", &arm, "--signature", &arm_sig], "").status.success());

    // The same version again, and a file that is not the one signed, are refused.
    let (file, sig) = signed(t.path(), "vpd-0.10.0.tar.gz", b"vpd 0.10.0", "0.10.0", "x86_64");
    let again = common::admin_cli(&s.db_path, &["release", "publish", &file, "--signature", &sig], "");
    assert!(!again.status.success() && String::from_utf8_lossy(&again.stderr).contains("already published"));
    std::fs::write(&file, b"vpd 0.10.0, changed").unwrap();
    let (_, sig11) = signed(t.path(), "other.tar.gz", b"x", "0.12.0", "x86_64");
    let wrong = common::admin_cli(&s.db_path, &["release", "publish", &file, "--signature", &sig11], "");
    assert!(!wrong.status.success() && String::from_utf8_lossy(&wrong.stderr).contains("does not match its signature"));
    let not_sig = common::admin_cli(&s.db_path, &["release", "publish", &file, "--signature", &file], "");
    assert!(!not_sig.status.success());

    // The newest for the platform, by version (0.10.0 > 0.9.0); the other arch's is its own.
    let r = s.http.get(s.at("/api/releases/latest?os=linux&arch=x86_64")).send().await.unwrap();
    assert_eq!(r.status(), 200);
    let url = r.url().clone();
    let body = r.bytes().await.unwrap();
    let here = Expect { os: "linux", arch: "x86_64", installed: Version(0, 1, 0) };
    let (m, offer) = check_manifest(&body, &public, &here).unwrap();
    assert!(matches!(offer, Offer::Newer(ref r) if r.version == Version(0, 10, 0)), "{offer:?}");
    let file_url = url.join(&m.url).unwrap();
    let bytes = s.http.get(file_url).send().await.unwrap().bytes().await.unwrap();
    assert_eq!(verify(&bytes, &m.signature, &public, &here).unwrap().version, Version(0, 10, 0));
    let arm: serde_json::Value = s.http.get(s.at("/api/releases/latest?os=linux&arch=aarch64")).send().await.unwrap().json().await.unwrap();
    assert_eq!(arm["version"], "0.11.0");

    // `admin release list` shows them all, newest first.
    let list = common::admin_cli(&s.db_path, &["release", "list", "--json"], "");
    let v: serde_json::Value = serde_json::from_slice(&list.stdout).unwrap();
    let versions: Vec<&str> = v.as_array().unwrap().iter().map(|r| r["version"].as_str().unwrap()).collect();
    assert_eq!(versions, ["0.11.0", "0.10.0", "0.9.0", "0.2.0"]);
    let r = s.http.get(s.at("/api/releases/0.10.0/linux/x86_64/nope.tar.gz")).send().await.unwrap();
    assert_eq!(r.status(), 404);
}

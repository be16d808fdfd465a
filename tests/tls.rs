//! TLS end to end (issue 8 item 4, issue 10 item 6): `viewport-server serve --tls-cert
//! --tls-key` serves HTTPS and WSS on one port, re-reads a renewed certificate without a
//! restart, and refuses a missing or mismatched pair clearly; `vpd pair --ca-file` makes a
//! pairing trust a server on an internal CA for both its platform calls and its relay.

mod support;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;
use support::*;

/// A CA and a certificate for 127.0.0.1 and localhost issued by it, as PEM files in `dir`
/// named `{name}-ca.pem`, `{name}-cert.pem`, `{name}-key.pem`. Returns (ca, cert, key) paths.
fn issue(dir: &Path, name: &str) -> (PathBuf, PathBuf, PathBuf) {
    let mut ca = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
    ca.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    ca.distinguished_name.push(rcgen::DnType::CommonName, format!("{name} test CA"));
    let ca_key = rcgen::KeyPair::generate().unwrap();
    let ca_cert = ca.self_signed(&ca_key).unwrap();
    let leaf = rcgen::CertificateParams::new(vec!["127.0.0.1".to_string(), "localhost".to_string()]).unwrap();
    let leaf_key = rcgen::KeyPair::generate().unwrap();
    let leaf_cert = leaf.signed_by(&leaf_key, &ca_cert, &ca_key).unwrap();
    let paths = (dir.join(format!("{name}-ca.pem")), dir.join(format!("{name}-cert.pem")), dir.join(format!("{name}-key.pem")));
    std::fs::write(&paths.0, ca_cert.pem()).unwrap();
    std::fs::write(&paths.1, leaf_cert.pem()).unwrap();
    std::fs::write(&paths.2, leaf_key.serialize_pem()).unwrap();
    paths
}

/// `curl --cacert CA URL`: whether it got a 2xx over a verified connection.
fn curl_ok(url: &str, ca: Option<&Path>) -> bool {
    let mut c = Command::new("curl");
    c.args(["-sS", "-f", "-o", "/dev/null", "--max-time", "5"]);
    if let Some(ca) = ca {
        c.arg("--cacert").arg(ca);
    }
    c.arg(url).status().map(|s| s.success()).unwrap_or(false)
}

#[test]
fn https_and_wss_on_one_port_with_a_ca_the_pairing_trusts_and_a_renewed_certificate_without_restart() {
    let dir = tempfile::tempdir().unwrap();
    let (ca, cert, key) = issue(dir.path(), "first");
    let live_cert = dir.path().join("server-cert.pem");
    let live_key = dir.path().join("server-key.pem");
    std::fs::copy(&cert, &live_cert).unwrap();
    std::fs::copy(&key, &live_key).unwrap();
    let server = Server::start_tls(&live_cert, &live_key, &std::fs::read_to_string(&ca).unwrap());
    let health = format!("{}/api/health", server.url);
    assert!(server.url.starts_with("https://"));
    assert!(curl_ok(&health, Some(&ca)), "curl trusts the server with the test's CA");
    assert!(!curl_ok(&health, None), "and not without it");
    let acme = server.org_with_member("Acme Engineering", "acme", "alice@example.com");

    // Without the CA, pairing fails and says why; nothing is stored.
    let m = Machine::new();
    let e = m.fails(&["pair", "--server", &server.url, "--org", "acme", "--no-browser"]);
    let msg = e["message"].as_str().unwrap();
    assert!(msg.contains("certificate is not trusted") && msg.contains("--ca-file"), "says why and what to do: {e}");
    assert_eq!(m.pairing_count(), 0);

    // With --ca-file: pairing, relay tokens and the relay's WSS all trust it.
    let (p, code) = m.start_pair(&["--server", &server.url, "--org", "acme", "--ca-file", ca.to_str().unwrap()]);
    assert_eq!(code["event"], "code", "{code}");
    server.approve(code["code"].as_str().unwrap(), &acme, "alice@example.com");
    let done = p.finish();
    assert_eq!(done["event"], "paired", "{done}");
    assert!(m.pairing(&acme)["caPem"].as_str().unwrap().contains("BEGIN CERTIFICATE"), "the CA is stored with the pairing");
    assert!(m.pairing(&acme)["relayEndpoint"].as_str().unwrap().starts_with("wss://"));
    let api = m.mkdir("work/api");
    m.ok(&["bind", api.to_str().unwrap()]);
    wait_until("connected over wss", Duration::from_secs(20), || m.ok(&["status"])["pairings"][0]["state"] == "connected");
    let out = m.command().args(["run", "--cwd", api.to_str().unwrap(), "--", "echo", "over tls"]).output().unwrap();
    assert!(out.status.success());
    wait_until("the session recorded", Duration::from_secs(10), || {
        server.admin(&["session", "list", "--org", "acme"]).as_array().is_some_and(|a| a.iter().any(|s| s["ended_at"].is_string()))
    });
    let doctor = m.ok(&["doctor"]);
    assert!(
        doctor["checks"].as_array().unwrap().iter().any(|c| c["name"].as_str().unwrap_or("").starts_with("platform of Acme") && c["level"] == "ok"),
        "doctor reaches the platform with the pairing's CA: {doctor}"
    );

    // A renewed certificate (here from another CA) is served without a restart.
    let (ca2, cert2, key2) = issue(dir.path(), "second");
    let tmp = dir.path().join("next.pem");
    std::fs::copy(&key2, &tmp).unwrap();
    std::fs::rename(&tmp, &live_key).unwrap();
    std::fs::copy(&cert2, &tmp).unwrap();
    std::fs::rename(&tmp, &live_cert).unwrap();
    wait_until("the renewed certificate to be served", Duration::from_secs(20), || curl_ok(&health, Some(&ca2)));
    assert!(!curl_ok(&health, Some(&ca)), "the old certificate is no longer served");
}

#[test]
fn a_missing_or_mismatched_certificate_is_a_clear_error() {
    let dir = tempfile::tempdir().unwrap();
    let (_, cert, _) = issue(dir.path(), "one");
    let (_, _, other_key) = issue(dir.path(), "two");
    let serve = |cert: &Path, key: &Path| {
        let out = Command::new(bin("viewport-server"))
            .args(["serve", "--listen", "127.0.0.1:0", "--db"])
            .arg(dir.path().join("db.sqlite"))
            .arg("--tls-cert")
            .arg(cert)
            .arg("--tls-key")
            .arg(key)
            .output()
            .unwrap();
        assert!(!out.status.success());
        String::from_utf8_lossy(&out.stderr).into_owned()
    };
    let err = serve(&cert, &other_key);
    assert!(err.contains("does not belong to the certificate"), "{err}");
    let err = serve(&dir.path().join("nope.pem"), &other_key);
    assert!(err.contains("reading the certificate") && err.contains("nope.pem"), "{err}");
    let err = serve(&other_key, &other_key);
    assert!(err.contains("certificate"), "a key given as the certificate: {err}");
    // One without the other is a usage error.
    let out = Command::new(bin("viewport-server")).args(["serve", "--tls-cert"]).arg(&cert).output().unwrap();
    assert!(!out.status.success() && String::from_utf8_lossy(&out.stderr).contains("--tls-key"), "{}", String::from_utf8_lossy(&out.stderr));
}

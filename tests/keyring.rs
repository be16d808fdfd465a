//! Issue tokens in the real OS keyring (gnome-keyring's Secret Service on a private D-Bus
//! session bus), and the file fallback, reported by status and doctor, when there is none.

mod support;
use support::*;

#[test]
fn issue_tokens_live_in_the_secret_service() {
    let server = Server::start();
    let acme = server.org_with_member("Acme Engineering", "acme", "alice@example.com");
    let bus = KeyringBus::start();
    let mut m = Machine::new();
    m.keyring = true;
    m.env.push(("DBUS_SESSION_BUS_ADDRESS".into(), bus.address.clone()));

    let done = m.pair(&server, &acme, "alice@example.com");
    assert_eq!(done["credentialStore"], "keyring", "{done}");
    let p = m.pairing(&acme);
    assert_eq!(p["credential"], serde_json::json!({"store": "keyring"}), "no token in config.json");
    let raw = std::fs::read_to_string(m.home().join("config.json")).unwrap();
    let token = bus.lookup(p["pairingId"].as_str().unwrap()).expect("the token is in the keyring");
    assert!(!raw.contains(&token));
    // It is the real credential.
    let mut with_token = p.clone();
    with_token["credential"] = serde_json::json!({"store": "file", "issueToken": token});
    assert_eq!(server.relay_token(&with_token).0, 200);

    let st = m.ok(&["status"]);
    assert_eq!(st["daemon"]["credentialStore"], "keyring");
    assert_eq!(st["pairings"][0]["credentialStore"], "keyring");

    // Unpair reads the token from the keyring to tell the platform, then deletes it.
    let un = m.ok(&["unpair", "--org", "acme"]);
    assert_eq!(un["serverNotified"], true, "{un}");
    assert_eq!(bus.lookup(p["pairingId"].as_str().unwrap()), None, "keyring entry removed");
    assert_eq!(server.relay_token(&with_token).0, 403);
}

#[test]
fn without_a_keyring_the_file_store_is_used_and_said() {
    let server = Server::start();
    let acme = server.org_with_member("Acme Engineering", "acme", "alice@example.com");
    let mut m = Machine::new();
    m.keyring = true; // probe it: there is no session bus in this environment
    let done = m.pair(&server, &acme, "alice@example.com");
    assert_eq!(done["credentialStore"], "file");
    assert!(m.pairing(&acme)["credential"]["issueToken"].is_string());
    let st = m.ok(&["status"]);
    assert_eq!(st["daemon"]["credentialStore"], "file");
    assert!(st["daemon"]["keyringError"].as_str().unwrap().contains("keyring unavailable"), "{st}");
    let text = String::from_utf8(m.vpd(&["status"]).stdout).unwrap();
    assert!(text.contains("Credentials: config.json (0600) — keyring unavailable"), "{text}");
    let doc = m.command().args(["doctor", "--json"]).output().unwrap();
    let doc: serde_json::Value = serde_json::from_slice(&doc.stdout).unwrap();
    let k = doc["checks"].as_array().unwrap().iter().find(|c| c["name"] == "keyring").unwrap().clone();
    assert_eq!(k["level"], "warning", "{k}");
    assert!(k["fix"].as_str().unwrap().contains("Secret Service"));
}

//! Revocation on the platform (Machines → Revoke, member removal) is visible through the
//! relay-token endpoint as `403 revoked`, for that pairing only. (The daemon's reaction
//! comes with the relay bridge.)

mod support;
use std::time::Duration;
use support::*;

#[test]
fn revoke_from_machines_page_and_member_removal() {
    let server = Server::start();
    server.user("alice@example.com");
    server.user("bob@example.com");
    let acme = server.org("Acme Engineering", "acme");
    let oss = server.org("OSS Maintainers", "oss");
    for (org, who) in [("acme", "alice@example.com"), ("oss", "alice@example.com"), ("acme", "bob@example.com"), ("oss", "bob@example.com")] {
        server.member(org, who);
    }
    let alice = Machine::new();
    alice.pair(&server, &acme, "alice@example.com");
    alice.pair(&server, &oss, "alice@example.com");
    let bob = Machine::new();
    bob.pair(&server, &acme, "bob@example.com");
    bob.pair(&server, &oss, "bob@example.com");
    let (a_acme, a_oss, b_acme, b_oss) = (alice.pairing(&acme), alice.pairing(&oss), bob.pairing(&acme), bob.pairing(&oss));
    for p in [&a_acme, &a_oss, &b_acme, &b_oss] {
        assert_eq!(server.relay_token(p).0, 200);
    }

    // Machines → Revoke, through the page, as a signed-in member.
    let web = server.web_login("alice@example.com");
    let (status, page) = web.get("/orgs/acme/machines");
    assert_eq!(status, 200);
    assert!(page.contains(a_acme["machineId"].as_str().unwrap()));
    assert!(!page.contains(a_oss["machineId"].as_str().unwrap()), "another org's ids never show");
    let (status, _) = web.post("/orgs/acme/machines", "/orgs/acme/machines/revoke", &[("machine_id", a_acme["machineId"].as_str().unwrap())]);
    assert!(status == 200 || status == 303, "revoke answered {status}");
    let (status, body) = server.relay_token(&a_acme);
    assert_eq!((status, body["error"].as_str()), (403, Some("revoked")), "{body}");
    assert_eq!(server.relay_token(&a_oss).0, 200, "alice's other org is untouched");
    assert_eq!(server.relay_token(&b_acme).0, 200, "bob's pairing in the same org is untouched");

    // Removing bob from acme revokes his acme pairing only.
    server.admin(&["member", "remove", "--org", "acme", "--user", "bob@example.com"]);
    let (status, body) = server.relay_token(&b_acme);
    assert_eq!((status, body["error"].as_str()), (403, Some("revoked")), "{body}");
    assert_eq!(server.relay_token(&b_oss).0, 200, "bob's oss pairing is untouched");

    // Each daemon hears it through its relay bridge and removes that pairing only.
    wait_until("alice's daemon to drop the revoked pairing", Duration::from_secs(40), || alice.pairing_count() == 1);
    wait_until("bob's daemon to drop the revoked pairing", Duration::from_secs(40), || bob.pairing_count() == 1);
    assert_eq!(alice.config()["pairings"][0]["workspaceId"], oss.as_str());
    assert!(!alice.home().join(format!("relay-identities/{acme}.json")).exists());
    let st = alice.ok(&["status"]);
    assert!(st["activity"].as_array().unwrap().iter().any(|a| a["message"] == "Acme Engineering revoked this machine's pairing"), "{st}");
}

#[test]
fn the_platform_tells_a_wrong_credential_from_a_revocation() {
    let server = Server::start();
    let acme = server.org_with_member("Acme Engineering", "acme", "alice@example.com");
    let m = Machine::new();
    m.pair(&server, &acme, "alice@example.com");
    let mut p = m.pairing(&acme);
    p["credential"]["issueToken"] = "not-the-token-at-all-xxxxxxxxxxxx".into();
    let (status, body) = server.relay_token(&p);
    assert_eq!((status, body["error"].as_str()), (401, Some("invalid_credential")));
    let mut p = m.pairing(&acme);
    p["workspaceId"] = "01J7M8N9P0Q1R2S3T4V5V6W7X8".into();
    let (status, body) = server.relay_token(&p);
    assert_eq!((status, body["error"].as_str()), (404, Some("workspace_not_found")));
}

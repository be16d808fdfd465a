//! Pairing end to end: the real `viewport-server` and `vpd` on loopback, approval through
//! the web page (form post with CSRF) and through the admin command, two orgs side by side,
//! bind / resolve / status / unbind, and unpair with the server down.

mod support;
use serde_json::Value;
use std::collections::HashSet;
use support::*;

fn setup() -> (Server, String, String) {
    two_orgs()
}

#[test]
fn pair_two_orgs_bind_status_and_unpair_offline() {
    let (mut server, acme, oss) = setup();
    let m = Machine::new();

    // First org: approved in the browser, like a person would.
    let (p, code) = m.start_pair(&["--server", &server.url, "--org", "acme", "--name", "dev-laptop"]);
    assert_eq!(code["event"], "code");
    let c = code["code"].as_str().unwrap();
    assert!(c.len() == 9 && c.as_bytes()[4] == b'-', "XXXX-XXXX: {c}");
    assert_eq!(code["url"], format!("{}/pair?code={c}", server.url));
    let web = server.web_login("alice@example.com");
    let (_, page) = web.get(&format!("/pair?code={c}"));
    assert!(page.contains(c) && page.contains("dev-laptop"), "the page shows the code and machine name");
    assert!(page.contains(code["fingerprint"].as_str().unwrap()), "the page shows the key fingerprint the terminal shows");
    let (status, _) = web.approve(c, &acme);
    assert_eq!(status, 200);
    let done = p.finish();
    assert_eq!(done["workspaceId"], acme.as_str());
    assert_eq!(done["workspaceName"], "Acme Engineering");
    assert_eq!(done["machineName"], "dev-laptop");

    // Second org: approved by the admin command; it adds a pairing beside the first.
    m.pair(&server, &oss, "alice@example.com");

    // Files: exactly as SPEC section 2, private.
    let home = m.home();
    assert_eq!(mode(&home), 0o700);
    assert_eq!(mode(&home.join("config.json")), 0o600);
    assert_eq!(mode(&home.join("relay-identities")), 0o700);
    let cfg = m.config();
    assert_eq!(cfg["version"], 2, "SPEC A1: config.json version 2");
    assert_eq!(cfg["pairings"].as_array().unwrap().len(), 2);
    for ws in [&acme, &oss] {
        let p = m.pairing(ws);
        for field in
            ["workspaceName", "workspaceSlug", "installId", "runtimeTargetId", "machineId", "machineName", "serverUrl", "relayEndpoint", "pairedAt"]
        {
            assert!(p[field].as_str().is_some_and(|s| !s.is_empty()), "{field} in {p}");
        }
        assert_eq!(p["credential"]["store"], "file", "no keyring in tests: the file fallback is used and said");
        assert_eq!(p["relayEndpoint"], format!("ws://127.0.0.1:{}/ws", server.port));
        // SPEC A1: named by the local pairing id, which belongs to this server and org.
        let pid = p["pairingId"].as_str().unwrap();
        assert!(pid.len() == 33 && pid.starts_with('p'), "{pid}");
        assert_eq!(p["server"], server.url.as_str());
        let idf = home.join(format!("relay-identities/{pid}.json"));
        assert_eq!(mode(&idf), 0o600);
        let id = m.identity(ws);
        assert_eq!(id["version"], 1);
        assert_eq!(id["workspaceId"], ws.as_str());
        assert_eq!(id["publicKey"].as_str().unwrap().len(), 43, "32 bytes, base64url");
        assert!(id["secretKey"].as_str().is_some() && id["createdAt"].as_str().is_some());
        // The platform knows this pairing's key.
        let machines = server.admin(&["machine", "list", "--org", ws]);
        assert_eq!(machines.as_array().unwrap().len(), 1);
        assert_eq!(machines[0]["machine_id"], p["machineId"]);
        assert_eq!(machines[0]["runtime_target_id"], p["runtimeTargetId"]);
    }

    // The two pairings share no key, id or token.
    let (a, b) = (m.pairing(&acme), m.pairing(&oss));
    let (ia, ib) = (m.identity(&acme), m.identity(&oss));
    let values = |p: &Value, id: &Value| -> Vec<String> {
        vec![
            p["installId"].as_str().unwrap().into(),
            p["runtimeTargetId"].as_str().unwrap().into(),
            p["machineId"].as_str().unwrap().into(),
            p["credential"]["issueToken"].as_str().unwrap().into(),
            id["publicKey"].as_str().unwrap().into(),
            id["secretKey"].as_str().unwrap().into(),
        ]
    };
    let all: Vec<String> = values(&a, &ia).into_iter().chain(values(&b, &ib)).collect();
    assert_eq!(all.iter().collect::<HashSet<_>>().len(), all.len(), "a value is shared between the two pairings");

    // Bind, resolve, status, unbind.
    let api = m.mkdir("work/api");
    m.mkdir("work/api/.git");
    let src = m.mkdir("work/api/src");
    let bound = m.ok(&["bind", api.to_str().unwrap(), "--org", "acme"]);
    assert_eq!(bound["orgId"], acme.as_str());
    let local = std::fs::read_to_string(api.join(".viewport/local.yaml")).unwrap();
    assert!(local.starts_with(&format!("org_id: {acme}\nstreaming: enabled\nbound_at: \"")), "{local}");
    assert_eq!(std::fs::read_to_string(api.join(".viewport/.gitignore")).unwrap(), "local.yaml\n");
    let r = m.ok(&["resolve", src.to_str().unwrap()]);
    assert_eq!((r["streaming"].as_bool(), r["orgId"].as_str()), (Some(true), Some(acme.as_str())), "{r}");
    let code_dir = m.mkdir("code");
    let relay = m.mkdir("code/relay");
    m.mkdir("code/relay/.git");
    m.ok(&["bind", code_dir.to_str().unwrap(), "--org", "OSS Maintainers", "--recursive"]);
    assert_eq!(m.ok(&["resolve", relay.to_str().unwrap()])["orgId"], oss.as_str());

    let st = m.ok(&["status"]);
    assert_eq!(st["daemon"]["running"], true);
    assert_eq!(st["daemon"]["credentialStore"], "file");
    assert_eq!(st["pairings"].as_array().unwrap().len(), 2);
    for p in st["pairings"].as_array().unwrap() {
        let state = p["state"].as_str().unwrap();
        assert!(state == "connected" || state == "connecting" || state.starts_with("reconnecting"), "{state}");
    }
    let dirs = st["directories"].as_array().unwrap();
    assert_eq!(dirs.len(), 2);
    assert!(dirs.iter().any(|d| d["display"] == "~/work/api" && d["orgName"] == "Acme Engineering" && d["state"] == "bound"));
    assert!(dirs.iter().any(|d| d["display"] == "~/code" && d["recursive"] == true));
    let text = String::from_utf8(m.vpd(&["status"]).stdout).unwrap();
    assert!(text.contains("Org bindings (2):") && text.contains("Bound directories (2):"), "{text}");
    assert!(text.contains("~/work/api  → Acme Engineering"), "{text}");
    assert!(text.contains(&format!("ws://127.0.0.1:{}/ws", server.port)), "{text}");

    m.ok(&["unbind", api.to_str().unwrap()]);
    assert!(!api.join(".viewport").exists(), "unbind removes local.yaml, our .gitignore and the empty .viewport");
    let r = m.ok(&["resolve", src.to_str().unwrap()]);
    assert_eq!((r["streaming"].as_bool(), r["reason"].as_str()), (Some(false), Some("no_binding")));

    // Unpair with the platform down: the local end state is complete anyway.
    let (acme_pid, oss_pid) =
        (m.pairing(&acme)["pairingId"].as_str().unwrap().to_string(), m.pairing(&oss)["pairingId"].as_str().unwrap().to_string());
    server.stop();
    let un = m.ok(&["unpair", "--org", "acme"]);
    assert_eq!(un["serverNotified"], false);
    // Behind a balancer with no instance left, the balancer takes the connection and then
    // closes it: the request fails instead of the connection.
    let down = if balanced_mode() { "error sending request" } else { "could not connect" };
    assert!(un["serverError"].as_str().unwrap().contains(down), "{un}");
    let cfg = m.config();
    assert_eq!(cfg["pairings"].as_array().unwrap().len(), 1);
    assert_eq!(cfg["pairings"][0]["workspaceId"], oss.as_str());
    assert!(!home.join(format!("relay-identities/{acme_pid}.json")).exists());
    assert!(home.join(format!("relay-identities/{oss_pid}.json")).exists(), "the other pairing is untouched");
    assert_eq!(m.ok(&["resolve", relay.to_str().unwrap()])["orgId"], oss.as_str());

    // And with the platform up, unpair tells it (the credential stops working).
    server.restart();
    let pairing = m.pairing(&oss);
    assert_eq!(server.relay_token(&pairing).0, 200);
    let un = m.ok(&["unpair", "--org", &oss]);
    assert_eq!(un["serverNotified"], true, "{un}");
    let (status, body) = server.relay_token(&pairing);
    assert_eq!((status, body["error"].as_str()), (403, Some("revoked")), "{body}");
    // SPEC A3: its bindings stay, inert, waiting for the org on that server.
    assert!(un["waiting"].as_array().unwrap().iter().any(|d| d.as_str() == Some(code_dir.to_str().unwrap())), "{un}");
    assert!(code_dir.join(".viewport/local.yaml").exists(), "the binding outlives the pairing");
    assert_eq!(m.ok(&["resolve", code_dir.to_str().unwrap()])["reason"], "binding_waiting");
}

#[test]
fn pair_with_an_add_machine_code_is_single_use() {
    let (server, acme, _) = setup();
    let minted = server.admin(&["pairing", "mint", "--org", "acme", "--user", "alice@example.com"]);
    let code = minted["code"].as_str().unwrap().to_string();
    let m = Machine::new();
    let done = m.ok(&["pair", &code, "--server", &server.url, "--no-browser"]);
    assert_eq!(done["event"], "paired");
    assert_eq!(done["workspaceId"], acme.as_str());
    let other = Machine::new();
    let err = other.fails(&["pair", &code, "--server", &server.url, "--no-browser"]);
    assert_eq!(err["code"], "pairing_code_invalid", "{err}");
    assert_eq!(other.pairing_count(), 0);
    let unknown = Machine::new().command().args(["pair", "BCDF-GHJK", "--server", &server.url]).output().unwrap();
    assert!(!unknown.status.success());
    let msg = String::from_utf8_lossy(&unknown.stderr);
    assert!(msg.contains("unknown, expired or already used"), "{msg}");
}

#[test]
fn approval_for_another_org_than_requested_is_refused_and_revoked() {
    let (server, _acme, oss) = setup();
    let m = Machine::new();
    let (p, code) = m.start_pair(&["--server", &server.url, "--org", "acme"]);
    server.approve(code["code"].as_str().unwrap(), "oss", "alice@example.com");
    let done = p.finish();
    assert_eq!(done["error"]["code"], "org_mismatch", "{done}");
    assert!(done["error"]["message"].as_str().unwrap().contains("--org acme"));
    assert_eq!(m.pairing_count(), 0, "nothing stored");
    assert_eq!(std::fs::read_dir(m.home().join("relay-identities")).map(|d| d.count()).unwrap_or(0), 0);
    let machines = server.admin(&["machine", "list", "--org", &oss]);
    assert!(machines[0]["revoked_at"].is_string(), "the unwanted pairing was revoked on the platform: {machines}");
}

#[test]
fn pairing_the_same_org_again_needs_force_and_replaces() {
    let (server, acme, _) = setup();
    let m = Machine::new();
    m.pair(&server, &acme, "alice@example.com");
    let old = m.pairing(&acme);
    let err = m.fails(&["pair", "--server", &server.url, "--org", "acme", "--no-browser"]);
    assert_eq!(err["code"], "already_paired", "{err}");
    assert!(err["message"].as_str().unwrap().contains("--force"));

    let (p, code) = m.start_pair(&["--server", &server.url, "--org", "acme", "--force"]);
    server.approve(code["code"].as_str().unwrap(), "acme", "alice@example.com");
    let done = p.finish();
    assert_eq!(done["replaced"], true);
    let new = m.pairing(&acme);
    assert_eq!(m.config()["pairings"].as_array().unwrap().len(), 1);
    assert_ne!(new["runtimeTargetId"], old["runtimeTargetId"]);
    assert_ne!(new["machineId"], old["machineId"]);
    assert_eq!(server.relay_token(&old).0, 403, "the replaced pairing was revoked on the platform");
    assert_eq!(server.relay_token(&new).0, 200);
}

#[test]
fn denied_in_the_browser() {
    let (server, acme, _) = setup();
    let m = Machine::new();
    let (p, code) = m.start_pair(&["--server", &server.url]);
    let c = code["code"].as_str().unwrap();
    let web = server.web_login("alice@example.com");
    let (status, _) = web.post(&format!("/pair?code={c}"), "/pair", &[("code", c), ("workspace_id", &acme), ("action", "deny")]);
    assert_eq!(status, 200);
    let done = p.finish();
    assert_eq!(done["error"]["code"], "pairing_denied", "{done}");
    // A replayed approval of the denied code changes nothing.
    // (The code's own page is gone, so take the CSRF token from the home page.)
    let (status, _) = web.post("/", "/pair", &[("code", c), ("workspace_id", &acme), ("action", "approve")]);
    assert!(status == 404 || status == 409, "replayed approval: {status}");
    assert!(server.admin(&["machine", "list", "--org", &acme]).as_array().unwrap().is_empty());
}

/// Issue 11 item 7: `vpd rename` renames this machine in one org; the platform's list shows
/// it and the other org keeps the old name; `--org` may be left out only with one org.
#[test]
fn rename_this_machine_in_one_org() {
    let (server, _, _) = setup();
    let m = Machine::new();
    m.pair(&server, "acme", "alice@example.com");
    let r = m.ok(&["rename", "build box 2"]);
    assert_eq!((r["name"].as_str(), r["workspaceName"].as_str()), (Some("build box 2"), Some("Acme Engineering")), "{r}");
    let machines = server.admin(&["machine", "list", "--org", "acme"]);
    assert_eq!(machines[0]["name"], "build box 2");
    assert_eq!(m.config()["pairings"][0]["machineName"], "build box 2");
    m.pair(&server, "oss", "alice@example.com");
    let err = m.fails(&["rename", "other"]);
    assert!(err["message"].as_str().unwrap().contains("--org"), "{err}");
    let err = m.fails(&["rename", "bad\u{7}name", "--org", "oss"]);
    assert_eq!(err["code"], "invalid_argument", "{err}");
    m.ok(&["rename", "oss box", "--org", "oss"]);
    assert_eq!(server.admin(&["machine", "list", "--org", "oss"])[0]["name"], "oss box");
    assert_eq!(server.admin(&["machine", "list", "--org", "acme"])[0]["name"], "build box 2", "the other org keeps its name");
    let human = m.command().args(["rename", "--help"]).output().unwrap();
    assert!(String::from_utf8_lossy(&human.stdout).contains("Examples:"));
}

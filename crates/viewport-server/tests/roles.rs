//! Roles and the audit log (issue 8 item 3, SPEC A6), through the real router as a browser
//! would post the forms, and through the built binary's admin CLI.

mod common;

use common::*;
use viewport_server::roles::Role;

struct Browser<'a> {
    s: &'a Server,
    cookie: String,
    csrf: String,
}

impl Browser<'_> {
    async fn new<'a>(s: &'a Server, email: &str) -> Browser<'a> {
        let cookie = sign_in(s, email).await;
        let html = s.http.get(s.at("/orgs/acme/machines")).header("cookie", &cookie).send().await.unwrap().text().await.unwrap();
        Browser { s, cookie, csrf: csrf_in(&html) }
    }

    async fn get(&self, path: &str) -> (u16, String) {
        let r = self.s.http.get(self.s.at(path)).header("cookie", &self.cookie).send().await.unwrap();
        (r.status().as_u16(), r.text().await.unwrap())
    }

    /// Posts a form the way the page does (same-origin); returns the status.
    async fn post(&self, path: &str, fields: &[(&str, &str)]) -> u16 {
        let mut form = vec![("csrf", self.csrf.as_str())];
        form.extend_from_slice(fields);
        let r = self
            .s
            .http
            .post(self.s.at(path))
            .header("cookie", &self.cookie)
            .header("sec-fetch-site", "same-origin")
            .form(&form)
            .send()
            .await
            .unwrap();
        r.status().as_u16()
    }
}

fn role(s: &Server, org: &str, user: &viewport_server::store::User) -> Option<Role> {
    s.store().role_of(org, &user.id).unwrap()
}

#[tokio::test]
async fn each_role_may_do_what_the_table_says_and_no_more() {
    let s = start().await;
    let acme = s.org("Acme Engineering", "acme");
    // The first member added becomes the owner; the others are members.
    let owner = s.user("owner@example.com", &[&acme]);
    let admin = s.user("admin@example.com", &[&acme]);
    let member = s.user("member@example.com", &[&acme]);
    let carol = s.user("carol@example.com", &[]);
    assert_eq!(role(&s, &acme.id, &owner), Some(Role::Owner));
    assert_eq!(role(&s, &acme.id, &admin), Some(Role::Member));
    s.store().set_role(&acme.id, &admin.id, Role::Admin, &as_user(&owner), 1).unwrap();

    let admins_machine = s.pair(&new_key(), &acme, &admin).await;
    let members_machine = s.pair(&new_key(), &acme, &member).await;

    // A member: sees machines and sessions, may not manage anyone, may revoke only their own.
    let m = Browser::new(&s, "member@example.com").await;
    let (st, html) = m.get("/orgs/acme/members").await;
    assert_eq!(st, 200);
    assert!(!html.contains("Add member"), "a member is not offered Add member");
    assert!(!html.contains("/members/role"), "a member is not offered role changes");
    assert!(!html.contains(">Audit<"), "no Audit tab for a member");
    assert_eq!(m.get("/orgs/acme/sessions").await.0, 200);
    let (_, machines) = m.get("/orgs/acme/machines").await;
    assert_eq!(machines.matches(">Revoke<").count(), 1, "a member sees Revoke only on their own machine");
    assert_eq!(m.post("/orgs/acme/members/add", &[("email", "carol@example.com"), ("role", "member")]).await, 403);
    assert_eq!(m.post("/orgs/acme/members/remove", &[("user_id", &admin.id)]).await, 403);
    assert_eq!(m.post("/orgs/acme/members/role", &[("user_id", &member.id), ("role", "admin")]).await, 403, "no promoting oneself");
    assert_eq!(m.post("/orgs/acme/machines/revoke", &[("machine_id", &admins_machine.machine_id)]).await, 403);
    assert_eq!(m.get("/orgs/acme/audit").await.0, 403);
    assert_eq!(s.relay_token(&admins_machine).await.status(), 200, "the refused revoke changed nothing");
    assert_eq!(role(&s, &acme.id, &carol), None);
    assert_eq!(m.post("/orgs/acme/machines/revoke", &[("machine_id", &members_machine.machine_id)]).await, 303);
    assert_eq!(s.relay_token(&members_machine).await.status(), 403, "a member revokes their own machine");

    // An admin: adds and removes members and admins, moves roles between them, revokes any
    // machine; never touches the owner role.
    let a = Browser::new(&s, "admin@example.com").await;
    let (_, html) = a.get("/orgs/acme/members").await;
    assert!(html.contains("Add member") && html.contains(">Audit<"));
    assert!(!html.contains(r#"<option value="owner""#), "an admin is not offered the owner role:\n{html}");
    assert_eq!(a.post("/orgs/acme/members/add", &[("email", "carol@example.com"), ("role", "owner")]).await, 403);
    assert_eq!(role(&s, &acme.id, &carol), None);
    assert_eq!(a.post("/orgs/acme/members/add", &[("email", "carol@example.com"), ("role", "member")]).await, 303);
    assert_eq!(role(&s, &acme.id, &carol), Some(Role::Member));
    assert_eq!(a.post("/orgs/acme/members/role", &[("user_id", &carol.id), ("role", "admin")]).await, 303);
    assert_eq!(role(&s, &acme.id, &carol), Some(Role::Admin));
    assert_eq!(a.post("/orgs/acme/members/role", &[("user_id", &carol.id), ("role", "owner")]).await, 403);
    assert_eq!(a.post("/orgs/acme/members/role", &[("user_id", &owner.id), ("role", "admin")]).await, 403);
    assert_eq!(a.post("/orgs/acme/members/remove", &[("user_id", &owner.id)]).await, 403);
    assert_eq!(role(&s, &acme.id, &owner), Some(Role::Owner));
    let carols_machine = s.pair(&new_key(), &acme, &carol).await;
    assert_eq!(a.post("/orgs/acme/machines/revoke", &[("machine_id", &carols_machine.machine_id)]).await, 303);
    assert_eq!(s.relay_token(&carols_machine).await.status(), 403, "an admin revokes any machine");
    assert_eq!(a.post("/orgs/acme/members/remove", &[("user_id", &carol.id)]).await, 303);
    assert_eq!(role(&s, &acme.id, &carol), None);
    assert_eq!(a.post("/orgs/acme/members/role", &[("user_id", &member.id), ("role", "bogus")]).await, 400);

    // The owner: grants and removes the owner role; the last owner stays.
    let o = Browser::new(&s, "owner@example.com").await;
    assert_eq!(o.post("/orgs/acme/members/role", &[("user_id", &owner.id), ("role", "admin")]).await, 409, "the last owner cannot step down");
    assert_eq!(o.post("/orgs/acme/members/remove", &[("user_id", &owner.id)]).await, 409, "the last owner cannot leave");
    assert_eq!(role(&s, &acme.id, &owner), Some(Role::Owner));
    assert_eq!(o.post("/orgs/acme/members/role", &[("user_id", &admin.id), ("role", "owner")]).await, 303);
    assert_eq!(o.post("/orgs/acme/members/role", &[("user_id", &owner.id), ("role", "member")]).await, 303, "with a second owner, one may step down");
    assert_eq!(role(&s, &acme.id, &owner), Some(Role::Member));
    // Now a member, the old owner leaves.
    assert_eq!(o.post("/orgs/acme/members/remove", &[("user_id", &owner.id)]).await, 303);
    assert_eq!(role(&s, &acme.id, &owner), None);

    // Everything above is in the audit log, named by who did it.
    let log = s.store().audit_log(&acme.id, 1000).unwrap();
    let has = |actor: &str, action: &str, subject: &str| log.iter().any(|e| e.actor == actor && e.action == action && e.subject.contains(subject));
    assert!(has("member@example.com", "machine.revoked", &members_machine.machine_id));
    assert!(has("admin@example.com", "member.added", "carol@example.com"));
    assert!(has("admin@example.com", "member.role_changed", "carol@example.com"));
    assert!(has("admin@example.com", "machine.revoked", &carols_machine.machine_id));
    assert!(has("admin@example.com", "member.removed", "carol@example.com"));
    assert!(has("owner@example.com", "member.role_changed", "admin@example.com"));
    assert!(has("owner@example.com", "member.removed", "owner@example.com"));
    assert!(has("carol@example.com", "machine.paired", &carols_machine.machine_id));
    let by_member: Vec<&str> = log.iter().filter(|e| e.actor == "member@example.com").map(|e| e.action.as_str()).collect();
    assert_eq!(by_member, ["machine.revoked", "machine.paired"], "refused attempts change nothing and log nothing");
    let (st, page) = a.get("/orgs/acme/audit").await;
    assert_eq!(st, 200);
    assert!(page.contains("member.role_changed") && page.contains("member → admin"), "{page}");
}

#[tokio::test]
async fn the_audit_page_escapes_what_it_shows() {
    let s = start().await;
    let acme = s.org("Acme Engineering", "acme");
    let owner = s.user("owner@example.com", &[&acme]);
    let mut body = body_for(&new_key(), "<img src=x onerror=alert(1)>");
    body.requested_org = Some("acme".into());
    let created = s.create_code(&body).await;
    let code = vpd_proto::normalize_code(&created.code).unwrap();
    s.state.approve_code(&code, &acme.id, &owner.id, &as_user(&owner)).await.unwrap();
    let b = Browser::new(&s, "owner@example.com").await;
    let (_, page) = b.get("/orgs/acme/audit").await;
    assert!(!page.contains("<img src=x"), "raw HTML from a machine name reached the page");
    assert!(page.contains("&lt;img src=x onerror=alert(1)&gt;"));
}

fn json(o: std::process::Output) -> serde_json::Value {
    assert!(o.status.success(), "stderr: {}", String::from_utf8_lossy(&o.stderr));
    serde_json::from_slice(&o.stdout).unwrap()
}

#[test]
fn the_admin_cli_manages_roles_and_lists_the_audit_log_as_cli_user() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("v.db");
    for u in ["ann@example.com", "bob@example.com", "cy@example.com"] {
        json(admin_cli(&db, &["user", "create", u, "--password-stdin", "--json"], "correct horse battery"));
    }
    // --owner makes the owner at creation; later members default to member.
    json(admin_cli(&db, &["org", "create", "Acme", "--slug", "acme", "--owner", "ann@example.com", "--json"], ""));
    let j = json(admin_cli(&db, &["member", "add", "--org", "acme", "--user", "bob@example.com", "--json"], ""));
    assert_eq!(j["role"], "member");
    let j = json(admin_cli(&db, &["member", "add", "--org", "acme", "--user", "cy@example.com", "--role", "admin", "--json"], ""));
    assert_eq!(j["role"], "admin");
    // Without --owner, the first member added becomes the owner.
    json(admin_cli(&db, &["org", "create", "Beta", "--slug", "beta", "--json"], ""));
    let j = json(admin_cli(&db, &["member", "add", "--org", "beta", "--user", "bob@example.com", "--json"], ""));
    assert_eq!(j["role"], "owner");

    let j = json(admin_cli(&db, &["member", "role", "--org", "acme", "--user", "bob@example.com", "owner", "--json"], ""));
    assert_eq!((j["role"].as_str(), j["previous_role"].as_str()), (Some("owner"), Some("member")));
    let list = json(admin_cli(&db, &["member", "list", "--org", "acme", "--json"], ""));
    let roles: Vec<(String, String)> =
        list.as_array().unwrap().iter().map(|m| (m["email"].as_str().unwrap().to_string(), m["role"].as_str().unwrap().to_string())).collect();
    assert!(roles.contains(&("ann@example.com".into(), "owner".into())), "{roles:?}");
    assert!(roles.contains(&("bob@example.com".into(), "owner".into())));
    assert!(roles.contains(&("cy@example.com".into(), "admin".into())));

    // The last owner of beta can be neither demoted nor removed, and the error says what to do.
    let o = admin_cli(&db, &["member", "role", "--org", "beta", "--user", "bob@example.com", "member"], "");
    assert!(!o.status.success());
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(err.contains("last owner") && err.contains("admin member role --org beta"), "{err}");
    let o = admin_cli(&db, &["member", "remove", "--org", "beta", "--user", "bob@example.com"], "");
    assert!(!o.status.success() && String::from_utf8_lossy(&o.stderr).contains("last owner"));
    let o = admin_cli(&db, &["member", "add", "--org", "beta", "--user", "cy@example.com", "--role", "root"], "");
    assert!(!o.status.success() && String::from_utf8_lossy(&o.stderr).contains("owner, admin or member"));

    json(admin_cli(&db, &["pairing", "mint", "--org", "acme", "--user", "cy@example.com", "--json"], ""));
    let log = json(admin_cli(&db, &["audit", "list", "--org", "acme", "--json"], ""));
    let entries = log.as_array().unwrap();
    let me = format!("cli:{}", viewport_server::util::os_user_name());
    let actions: Vec<&str> = entries.iter().filter(|e| e["actor"] == me.as_str()).map(|e| e["action"].as_str().unwrap()).collect();
    // Newest first.
    assert_eq!(actions, ["code.minted", "member.role_changed", "member.added", "member.added", "member.added", "org.created"], "{log:#}");
    assert!(entries.iter().all(|e| e["at"].as_str().is_some_and(|t| t.ends_with('Z'))));
    // The human form names the actor too.
    let o = admin_cli(&db, &["audit", "list", "--org", "acme"], "");
    assert!(String::from_utf8_lossy(&o.stdout).contains(&me));
}

//! The pages over real HTTP: sign-in, approve with CSRF, origin checks, tenancy, revoke.

mod common;

use common::*;
use vpd_proto::pairing::PairingStatus;

async fn get(s: &Server, path: &str, cookie: &str) -> reqwest::Response {
    s.http.get(s.at(path)).header("cookie", cookie).send().await.unwrap()
}

#[tokio::test]
async fn signed_out_pages_redirect_to_signin_with_next() {
    let s = start().await;
    let r = s.http.get(s.at("/pair?code=BCDF-GHJK")).send().await.unwrap();
    assert_eq!(r.status(), 303);
    assert_eq!(r.headers()["location"], "/signin?next=%2Fpair%3Fcode%3DBCDF-GHJK");
    for h in ["content-security-policy", "x-content-type-options", "referrer-policy"] {
        assert!(r.headers().contains_key(h), "{h} missing");
    }
    // next must stay local after sign-in.
    let org = s.org("Acme", "acme");
    s.user("a@example.com", &[&org]);
    let r = s.http.get(s.at("/signin")).send().await.unwrap();
    let csrf_cookie = set_cookie(&r, "vp_csrf").unwrap();
    let cookie_attrs = r.headers().get_all("set-cookie").iter().map(|v| v.to_str().unwrap().to_string()).collect::<Vec<_>>().join("|");
    assert!(cookie_attrs.contains("HttpOnly") && cookie_attrs.contains("SameSite=Lax"));
    let csrf = csrf_in(&r.text().await.unwrap());
    let r = s
        .http
        .post(s.at("/signin"))
        .header("cookie", &csrf_cookie)
        .form(&[("csrf", csrf.as_str()), ("email", "a@example.com"), ("password", "correct horse battery"), ("next", "//evil.example/x")])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 303);
    assert_eq!(r.headers()["location"], "/");
    // Wrong password: 401, no session.
    let r = s
        .http
        .post(s.at("/signin"))
        .header("cookie", &csrf_cookie)
        .form(&[("csrf", csrf.as_str()), ("email", "a@example.com"), ("password", "wrong password"), ("next", "/")])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401);
    assert!(set_cookie(&r, "vp_session").is_none());
    // Sign-in without the double-submit cookie is refused.
    let r = s
        .http
        .post(s.at("/signin"))
        .form(&[("csrf", csrf.as_str()), ("email", "a@example.com"), ("password", "correct horse battery")])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 403);
}

#[tokio::test]
async fn approve_through_the_page_with_csrf_and_origin_checks() {
    let s = start().await;
    let acme = s.org("Acme Engineering", "acme");
    let other = s.org("Other", "other");
    s.user("a@example.com", &[&acme]);
    let cookie = sign_in(&s, "a@example.com").await;

    let key = new_key();
    let mut body = body_for(&key, "mehr-mbp");
    body.requested_org = Some("acme".into());
    let created = s.create_code(&body).await;

    let r = get(&s, &format!("/pair?code={}", created.code), &cookie).await;
    assert_eq!(r.status(), 200);
    let html = r.text().await.unwrap();
    assert!(html.contains(&created.code));
    assert!(html.contains("mehr-mbp"));
    assert!(html.contains(&vpd_proto::fingerprint(key.verifying_key().as_bytes())));
    assert!(html.contains(&format!(r#"<option value="{}" selected>"#, acme.id)), "requested org pre-selected");
    let csrf = csrf_in(&html);

    let form = |csrf: &str| {
        vec![("csrf", csrf.to_string()), ("code", created.code.clone()), ("workspace_id", acme.id.clone()), ("action", "approve".to_string())]
    };
    // No CSRF, wrong CSRF, foreign Origin: refused, nothing changes.
    let r = s
        .http
        .post(s.at("/pair"))
        .header("cookie", &cookie)
        .form(&[("code", created.code.as_str()), ("workspace_id", acme.id.as_str()), ("action", "approve")])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 403);
    let r = s.http.post(s.at("/pair")).header("cookie", &cookie).form(&form("forged")).send().await.unwrap();
    assert_eq!(r.status(), 403);
    let r = s.http.post(s.at("/pair")).header("cookie", &cookie).header("origin", "https://evil.example").form(&form(&csrf)).send().await.unwrap();
    assert_eq!(r.status(), 403);
    // A workspace the user is not a member of.
    let mut f = form(&csrf);
    f[2].1 = other.id.clone();
    let r = s.http.post(s.at("/pair")).header("cookie", &cookie).form(&f).send().await.unwrap();
    assert_eq!(r.status(), 403);
    let r = s.status(&created.code, created.status_token.expose(), 0).await;
    assert_eq!(r.json::<PairingStatus>().await.unwrap(), PairingStatus::Pending, "nothing changed");

    // The real thing (same-origin Origin header is fine).
    let r = s.http.post(s.at("/pair")).header("cookie", &cookie).header("origin", &s.url).form(&form(&csrf)).send().await.unwrap();
    assert_eq!(r.status(), 200);
    assert!(r.text().await.unwrap().contains("Approved"));

    // Replay: refused with a clear page, still one machine.
    let r = s.http.post(s.at("/pair")).header("cookie", &cookie).form(&form(&csrf)).send().await.unwrap();
    assert_eq!(r.status(), 409);
    assert!(r.text().await.unwrap().contains("Nothing changed"));
    assert_eq!(s.store().machines(&acme.id).unwrap().len(), 1);

    // The daemon gets its approval; the page for the used code is now a 404.
    let r = s.status(&created.code, created.status_token.expose(), 0).await;
    let a = match r.json::<PairingStatus>().await.unwrap() {
        PairingStatus::Approved(a) => *a,
        other => panic!("{other:?}"),
    };
    assert_eq!(a.workspace_name, "Acme Engineering");
    assert_eq!(get(&s, &format!("/pair?code={}", created.code), &cookie).await.status(), 404);
    assert_eq!(get(&s, "/pair?code=BCDF-GHJK", &cookie).await.status(), 404);

    // Machines page lists it with a Revoke form; revoking cuts the credential.
    let r = get(&s, "/orgs/acme/machines", &cookie).await;
    assert_eq!(r.status(), 200);
    let html = r.text().await.unwrap();
    assert!(html.contains(&a.machine_id) && html.contains("a@example.com") && html.contains("active"));
    let csrf = csrf_in(&html);
    let r = s
        .http
        .post(s.at("/orgs/acme/machines/revoke"))
        .header("cookie", &cookie)
        .form(&[("csrf", "wrong"), ("machine_id", a.machine_id.as_str())])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 403);
    assert_eq!(s.relay_token(&a).await.status(), 200);
    let r = s
        .http
        .post(s.at("/orgs/acme/machines/revoke"))
        .header("cookie", &cookie)
        .form(&[("csrf", csrf.as_str()), ("machine_id", a.machine_id.as_str())])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 303);
    assert_eq!(s.relay_token(&a).await.status(), 403);
    assert!(get(&s, "/orgs/acme/machines", &cookie).await.text().await.unwrap().contains("revoked"));
}

#[tokio::test]
async fn deny_through_the_page() {
    let s = start().await;
    let acme = s.org("Acme", "acme");
    s.user("a@example.com", &[&acme]);
    let cookie = sign_in(&s, "a@example.com").await;
    let created = s.create_code(&body_for(&new_key(), "box")).await;
    let html = get(&s, &format!("/pair?code={}", created.code), &cookie).await.text().await.unwrap();
    let r = s
        .http
        .post(s.at("/pair"))
        .header("cookie", &cookie)
        .form(&[("csrf", csrf_in(&html).as_str()), ("code", created.code.as_str()), ("workspace_id", acme.id.as_str()), ("action", "deny")])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let r = s.status(&created.code, created.status_token.expose(), 0).await;
    assert_eq!(r.json::<PairingStatus>().await.unwrap(), PairingStatus::Denied);
    assert!(s.store().machines(&acme.id).unwrap().is_empty());
}

#[tokio::test]
async fn org_pages_are_404_for_non_members() {
    let s = start().await;
    let acme = s.org("Acme", "acme");
    let secret = s.org("Secret", "secret");
    s.user("a@example.com", &[&acme]);
    let cookie = sign_in(&s, "a@example.com").await;
    for p in ["machines", "members", "add-machine"] {
        assert_eq!(get(&s, &format!("/orgs/acme/{p}"), &cookie).await.status(), 200, "{p}");
        assert_eq!(get(&s, &format!("/orgs/secret/{p}"), &cookie).await.status(), 404, "{p}");
        assert_eq!(get(&s, &format!("/orgs/missing/{p}"), &cookie).await.status(), 404, "{p}");
    }
    let home = get(&s, "/", &cookie).await.text().await.unwrap();
    assert!(home.contains("/orgs/acme/machines"));
    assert!(!home.contains(&secret.id) && !home.contains("Secret"));
    // POSTs into a foreign org are refused too.
    let csrf = csrf_in(&get(&s, "/orgs/acme/members", &cookie).await.text().await.unwrap());
    let r = s.http.post(s.at("/orgs/secret/add-machine")).header("cookie", &cookie).form(&[("csrf", csrf.as_str())]).send().await.unwrap();
    assert_eq!(r.status(), 404);
}

#[tokio::test]
async fn members_page_removes_and_revokes_only_there_and_add_machine_mints() {
    let s = start().await;
    let acme = s.org("Acme", "acme");
    let two = s.org("Two", "two");
    let admin = s.user("admin@example.com", &[&acme]);
    let bob = s.user("bob@example.com", &[&acme, &two]);
    let bob_acme = s.pair(&new_key(), &acme, &bob).await;
    let bob_two = s.pair(&new_key(), &two, &bob).await;
    let admin_acme = s.pair(&new_key(), &acme, &admin).await;
    let cookie = sign_in(&s, "admin@example.com").await;

    let html = get(&s, "/orgs/acme/members", &cookie).await.text().await.unwrap();
    assert!(html.contains("bob@example.com"));
    let csrf = csrf_in(&html);
    let r = s
        .http
        .post(s.at("/orgs/acme/members/remove"))
        .header("cookie", &cookie)
        .form(&[("csrf", csrf.as_str()), ("user_id", bob.id.as_str())])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 303);
    assert_eq!(s.relay_token(&bob_acme).await.status(), 403);
    assert_eq!(s.relay_token(&bob_two).await.status(), 200);
    assert_eq!(s.relay_token(&admin_acme).await.status(), 200);

    // Add back by email.
    let r = s
        .http
        .post(s.at("/orgs/acme/members/add"))
        .header("cookie", &cookie)
        .form(&[("csrf", csrf.as_str()), ("email", "Bob@Example.com")])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 303);
    assert!(s.store().is_member(&acme.id, &bob.id).unwrap());

    // Add machine: a code that `vpd pair CODE` can claim.
    let r = s.http.post(s.at("/orgs/acme/add-machine")).header("cookie", &cookie).form(&[("csrf", csrf.as_str())]).send().await.unwrap();
    assert_eq!(r.status(), 200);
    let html = r.text().await.unwrap();
    let at = html.find("vpd pair ").unwrap() + "vpd pair ".len();
    let code = &html[at..at + 9];
    assert!(vpd_proto::normalize_code(code).is_some(), "{code}");
    let r = s.http.post(s.at(&format!("/api/pairing-codes/{code}/claim"))).json(&body_for(&new_key(), "new")).send().await.unwrap();
    assert_eq!(r.status(), 200);
}

#[tokio::test]
async fn setup_page_creates_the_first_user_once() {
    let s = start().await;
    let url = s.state.setup_url().expect("a setup link while there is no user");
    let token = url.split("token=").nth(1).unwrap().to_string();
    assert_eq!(s.http.get(s.at("/setup?token=wrong")).send().await.unwrap().status(), 404);
    let r = s.http.get(s.at(&format!("/setup?token={token}"))).send().await.unwrap();
    assert_eq!(r.status(), 200);
    let csrf_cookie = set_cookie(&r, "vp_csrf").unwrap();
    let csrf = csrf_in(&r.text().await.unwrap());
    let r = s
        .http
        .post(s.at("/setup"))
        .header("cookie", &csrf_cookie)
        .form(&[
            ("csrf", csrf.as_str()),
            ("token", token.as_str()),
            ("email", "root@example.com"),
            ("password", "correct horse battery"),
            ("org_name", "Acme"),
            ("org_slug", "acme"),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 303);
    let session = set_cookie(&r, "vp_session").unwrap();
    assert_eq!(get(&s, "/orgs/acme/machines", &session).await.status(), 200);
    assert!(s.state.setup_url().is_none());
    assert_eq!(s.http.get(s.at(&format!("/setup?token={token}"))).send().await.unwrap().status(), 404);
}

#[tokio::test]
async fn sign_in_is_rate_limited() {
    let s = start_with(|c| c.login_per_minute = 2).await;
    let org = s.org("Acme", "acme");
    s.user("a@example.com", &[&org]);
    let r = s.http.get(s.at("/signin")).send().await.unwrap();
    let csrf_cookie = set_cookie(&r, "vp_csrf").unwrap();
    let csrf = csrf_in(&r.text().await.unwrap());
    let mut codes = Vec::new();
    for _ in 0..3 {
        let r = s
            .http
            .post(s.at("/signin"))
            .header("cookie", &csrf_cookie)
            .form(&[("csrf", csrf.as_str()), ("email", "a@example.com"), ("password", "wrong password")])
            .send()
            .await
            .unwrap();
        codes.push(r.status().as_u16());
    }
    assert_eq!(codes, [401, 401, 429]);
}

async fn post_pair(s: &Server, cookie: &str, csrf: &str, code: &str, workspace_id: &str, action: &str) -> reqwest::Response {
    s.http
        .post(s.at("/pair"))
        .header("cookie", cookie)
        .form(&[("csrf", csrf), ("code", code), ("workspace_id", workspace_id), ("action", action)])
        .send()
        .await
        .unwrap()
}

async fn assert_unusable_page(r: reqwest::Response, what: &str) {
    assert_eq!(r.status(), 404, "{what}");
    assert!(r.text().await.unwrap().contains("This code cannot be used"), "{what}: the clear 404 page");
}

#[tokio::test]
async fn a_cancelled_code_is_a_404_on_the_pair_page() {
    let s = start().await;
    let acme = s.org("Acme", "acme");
    s.user("a@example.com", &[&acme]);
    let cookie = sign_in(&s, "a@example.com").await;
    let created = s.create_code(&body_for(&new_key(), "box")).await;
    let html = get(&s, &format!("/pair?code={}", created.code), &cookie).await.text().await.unwrap();
    let csrf = csrf_in(&html);

    // The daemon gives up (Ctrl-C) while the page is open.
    assert_eq!(s.cancel(&created.code, created.status_token.expose()).await.status(), 200);

    assert_unusable_page(get(&s, &format!("/pair?code={}", created.code), &cookie).await, "GET").await;
    assert_unusable_page(post_pair(&s, &cookie, &csrf, &created.code, &acme.id, "approve").await, "approve").await;
    assert_unusable_page(post_pair(&s, &cookie, &csrf, &created.code, &acme.id, "deny").await, "deny").await;
    assert!(s.store().machines(&acme.id).unwrap().is_empty());
}

#[tokio::test]
async fn deny_of_an_unknown_used_or_decided_code_is_the_same_404_page() {
    let s = start().await;
    let acme = s.org("Acme", "acme");
    let u = s.user("a@example.com", &[&acme]);
    let cookie = sign_in(&s, "a@example.com").await;
    let csrf = csrf_in(&get(&s, "/orgs/acme/members", &cookie).await.text().await.unwrap());

    // Unknown and malformed.
    assert_unusable_page(post_pair(&s, &cookie, &csrf, "BCDF-GHJK", &acme.id, "deny").await, "unknown").await;
    assert_unusable_page(post_pair(&s, &cookie, &csrf, "nope", &acme.id, "deny").await, "malformed").await;

    // Approved and delivered (used): the pairing stays.
    let a = s.pair(&new_key(), &acme, &u).await;
    let used = s.store().machines(&acme.id).unwrap();
    assert_eq!(used.len(), 1);
    let created = s.create_code(&body_for(&new_key(), "box")).await;
    let code = vpd_proto::normalize_code(&created.code).unwrap();
    s.state.approve_code(&code, &acme.id, &u.id, &as_user(&u)).await.unwrap();
    assert_eq!(s.status(&created.code, created.status_token.expose(), 0).await.status(), 200);
    assert_unusable_page(post_pair(&s, &cookie, &csrf, &created.code, &acme.id, "deny").await, "used").await;

    // Already denied: denying again is the same page, the daemon still sees "denied".
    let denied = s.create_code(&body_for(&new_key(), "box")).await;
    assert_eq!(post_pair(&s, &cookie, &csrf, &denied.code, &acme.id, "deny").await.status(), 200);
    assert_unusable_page(post_pair(&s, &cookie, &csrf, &denied.code, &acme.id, "deny").await, "denied twice").await;
    let r = s.status(&denied.code, denied.status_token.expose(), 0).await;
    assert_eq!(r.json::<PairingStatus>().await.unwrap(), PairingStatus::Denied);

    // A minted code is not a daemon's request.
    let (minted, _) = s.state.mint_code(&acme.id, &u.id, &as_user(&u)).await.unwrap();
    assert_unusable_page(post_pair(&s, &cookie, &csrf, &vpd_proto::format_code(&minted), &acme.id, "deny").await, "minted").await;
    assert_eq!(s.relay_token(&a).await.status(), 200);
}

#[tokio::test]
async fn pair_page_is_rate_limited_per_signed_in_user() {
    let s = start_with(|c| c.pair_page_per_minute = 3).await;
    let acme = s.org("Acme", "acme");
    s.user("a@example.com", &[&acme]);
    s.user("b@example.com", &[&acme]);
    let a = sign_in(&s, "a@example.com").await;
    let b = sign_in(&s, "b@example.com").await;
    let created = s.create_code(&body_for(&new_key(), "box")).await;
    let page = format!("/pair?code={}", created.code);

    let html = get(&s, &page, &a).await.text().await.unwrap();
    let csrf = csrf_in(&html);
    assert_eq!(get(&s, "/pair", &a).await.status(), 200);
    assert_eq!(get(&s, &page, &a).await.status(), 200);
    let r = get(&s, &page, &a).await;
    assert_eq!(r.status(), 429);
    assert_eq!(r.headers()["retry-after"], "60");
    assert!(r.text().await.unwrap().contains("Too many requests"));
    // POST counts against the same user and is refused before anything is decided.
    let r = post_pair(&s, &a, &csrf, &created.code, &acme.id, "approve").await;
    assert_eq!(r.status(), 429);
    let r = s.status(&created.code, created.status_token.expose(), 0).await;
    assert_eq!(r.json::<PairingStatus>().await.unwrap(), PairingStatus::Pending);
    // Another user is not affected, and can still approve.
    let html = get(&s, &page, &b).await.text().await.unwrap();
    let r = post_pair(&s, &b, &csrf_in(&html), &created.code, &acme.id, "approve").await;
    assert_eq!(r.status(), 200);
    // Signed-out visitors are sent to sign in, not counted against anyone.
    assert_eq!(s.http.get(s.at(&page)).send().await.unwrap().status(), 303);
}

#[tokio::test]
async fn machines_page_shows_never_until_the_first_relay_token() {
    let s = start().await;
    let acme = s.org("Acme", "acme");
    let u = s.user("a@example.com", &[&acme]);
    let cookie = sign_in(&s, "a@example.com").await;
    let a = s.pair(&new_key(), &acme, &u).await;
    let html = get(&s, "/orgs/acme/machines", &cookie).await.text().await.unwrap();
    assert!(html.contains(&a.machine_id));
    assert!(html.contains("<td data-label=\"Last seen\">never</td>"), "last seen must be never right after pairing");
    assert_eq!(s.relay_token(&a).await.status(), 200);
    let html = get(&s, "/orgs/acme/machines", &cookie).await.text().await.unwrap();
    assert!(!html.contains("<td data-label=\"Last seen\">never</td>"), "seen once it fetched a relay token");
}

/// What browsers send on a form post, against the real router: the page's own post (with the
/// `Sec-Fetch-Site` Chromium, Firefox and Safari send, even when `Origin` is `null` or names
/// another spelling of this host) passes; a sandboxed frame, another site and a same-site
/// sibling are refused; a client that sends no `Sec-Fetch-*` header falls back to an exact
/// `Origin` match, and with neither header the CSRF token still decides.
#[tokio::test]
async fn form_posts_are_judged_by_sec_fetch_site_then_exact_origin() {
    let s = start().await;
    let acme = s.org("Acme Engineering", "acme");
    s.user("a@example.com", &[&acme]);
    let cookie = sign_in(&s, "a@example.com").await;
    let r = get(&s, "/orgs/acme/add-machine", &cookie).await;
    assert_eq!(r.status(), 200);
    assert_eq!(r.headers()["referrer-policy"], "same-origin", "no-referrer makes Chromium send Origin: null");
    let csrf = csrf_in(&r.text().await.unwrap());

    let post = |headers: Vec<(&'static str, String)>, csrf: String| {
        let mut rb = s.http.post(s.at("/orgs/acme/add-machine")).header("cookie", &cookie);
        for (k, v) in headers {
            rb = rb.header(k, v);
        }
        rb.form(&[("csrf", csrf)]).send()
    };
    let refused = |what: &str, r: reqwest::Response| {
        assert_eq!(r.status(), 403, "{what} must be refused");
    };
    let passed = |what: &str, r: reqwest::Response| {
        assert_eq!(r.status(), 200, "{what} must pass");
    };

    // Chromium's own post from this page: Sec-Fetch-Site same-origin, Origin as it saw it.
    passed("same-origin post", post(vec![("sec-fetch-site", "same-origin".into()), ("origin", s.url.clone())], csrf.clone()).await.unwrap());
    // The same page opened as http://localhost:PORT while --public-url says 127.0.0.1.
    let localhost = s.url.replace("127.0.0.1", "localhost");
    passed(
        "same-origin post via another host name",
        post(vec![("sec-fetch-site", "same-origin".into()), ("origin", localhost)], csrf.clone()).await.unwrap(),
    );
    // A sandboxed iframe: Origin null, and the browser calls it cross-site.
    refused("sandboxed iframe", post(vec![("sec-fetch-site", "cross-site".into()), ("origin", "null".into())], csrf.clone()).await.unwrap());
    refused("Origin: null without Sec-Fetch-Site", post(vec![("origin", "null".into())], csrf.clone()).await.unwrap());
    // Another site, with a stolen token, and a sibling subdomain.
    refused(
        "cross-site post",
        post(vec![("sec-fetch-site", "cross-site".into()), ("origin", "https://evil.example".into())], csrf.clone()).await.unwrap(),
    );
    refused("same-site post", post(vec![("sec-fetch-site", "same-site".into()), ("origin", s.url.clone())], csrf.clone()).await.unwrap());
    refused("foreign Origin without Sec-Fetch-Site", post(vec![("origin", "https://evil.example".into())], csrf.clone()).await.unwrap());
    // No Sec-Fetch-* at all: exact Origin passes; no Origin either leaves it to the token.
    passed("exact Origin, no Sec-Fetch-*", post(vec![("origin", s.url.clone())], csrf.clone()).await.unwrap());
    passed("no Origin, no Sec-Fetch-*, right token", post(vec![], csrf.clone()).await.unwrap());
    refused("no Origin, no Sec-Fetch-*, wrong token", post(vec![], "forged".into()).await.unwrap());
}

/// One sign-in attempt as a browser at `client` (through a proxy the server trusts), with
/// `extra_cookie` (a known-device cookie) if any: the status and the response.
async fn sign_in_from(s: &Server, client: &str, email: &str, password: &str, extra_cookie: Option<&str>) -> reqwest::Response {
    let r = s.http.get(s.at("/signin")).send().await.unwrap();
    let mut cookie = set_cookie(&r, "vp_csrf").unwrap();
    if let Some(extra) = extra_cookie {
        cookie = format!("{cookie}; {extra}");
    }
    let csrf = csrf_in(&r.text().await.unwrap());
    s.http
        .post(s.at("/signin"))
        .header("cookie", cookie)
        .header("x-forwarded-for", client)
        .form(&[("csrf", csrf.as_str()), ("email", email), ("password", password), ("next", "/")])
        .send()
        .await
        .unwrap()
}

/// A server with `per_minute` failed sign-ins per (account, client), trusting the proxies
/// `trusted` (CIDRs), and the user a@example.com.
async fn limited_server(per_minute: u32, trusted: &[&str]) -> Server {
    let trusted: Vec<ipnet::IpNet> = trusted.iter().map(|t| t.parse().unwrap()).collect();
    let s = start_with(|c| {
        c.login_per_minute = per_minute;
        c.trusted_proxies = trusted;
    })
    .await;
    let org = s.org("Acme", "acme");
    s.user("a@example.com", &[&org]);
    s
}

/// Failed sign-ins slow down per (account, client): ten bad passwords from one address do not
/// stop the right password from another; an IPv6 client is one /64; the forwarded address
/// counts only behind a trusted proxy.
#[tokio::test]
async fn a_strangers_failures_never_lock_the_account_for_another_client() {
    let s = limited_server(10, &["127.0.0.1/32"]).await;
    for _ in 0..10 {
        assert_eq!(sign_in_from(&s, "203.0.113.5", "a@example.com", "wrong password", None).await.status(), 401);
    }
    // That client now waits, even with the right password…
    assert_eq!(sign_in_from(&s, "203.0.113.5", "a@example.com", "correct horse battery", None).await.status(), 429);
    // …the account's owner elsewhere does not.
    assert_eq!(sign_in_from(&s, "198.51.100.7", "a@example.com", "correct horse battery", None).await.status(), 303);

    // An IPv6 client is its /64: another address in it is the same client.
    for _ in 0..10 {
        sign_in_from(&s, "2001:db8:1:2::1", "a@example.com", "wrong password", None).await;
    }
    assert_eq!(sign_in_from(&s, "2001:db8:1:2::beef", "a@example.com", "correct horse battery", None).await.status(), 429);
    assert_eq!(sign_in_from(&s, "2001:db8:1:3::1", "a@example.com", "correct horse battery", None).await.status(), 303);
}

/// Without --trusted-proxy, X-Forwarded-For is anyone's to write: it is ignored, so a client
/// cannot dodge its limit by inventing addresses.
#[tokio::test]
async fn forwarded_addresses_from_an_untrusted_peer_are_ignored() {
    let s = limited_server(3, &[]).await;
    for i in 0..3 {
        sign_in_from(&s, &format!("192.0.2.{i}"), "a@example.com", "wrong password", None).await;
    }
    assert_eq!(sign_in_from(&s, "192.0.2.99", "a@example.com", "correct horse battery", None).await.status(), 429);
}

/// A spread of addresses is still slowed by the per-account ceiling (5 × the per-client
/// rate), except for a browser that signed in to that account recently.
#[tokio::test]
async fn distributed_guessing_is_slowed_but_not_for_a_known_browser() {
    let s = limited_server(2, &["127.0.0.0/8"]).await;
    // The owner signed in earlier: this browser keeps a known-device cookie.
    let r = sign_in_from(&s, "198.51.100.7", "a@example.com", "correct horse battery", None).await;
    assert_eq!(r.status(), 303);
    let known = set_cookie(&r, "vp_known").expect("a known-device cookie");
    let attrs = r.headers().get_all("set-cookie").iter().map(|v| v.to_str().unwrap().to_string()).collect::<Vec<_>>().join("|");
    assert!(attrs.contains("vp_known=") && attrs.contains("HttpOnly"), "{attrs}");
    // Ten failures from ten addresses: each client is under its own limit.
    for i in 0..10 {
        assert_eq!(sign_in_from(&s, &format!("192.0.2.{i}"), "a@example.com", "wrong password", None).await.status(), 401, "attempt {i}");
    }
    // A fresh address without the cookie waits; the owner's browser does not.
    assert_eq!(sign_in_from(&s, "192.0.2.200", "a@example.com", "correct horse battery", None).await.status(), 429);
    assert_eq!(sign_in_from(&s, "198.51.100.7", "a@example.com", "correct horse battery", Some(&known)).await.status(), 303);
    // A forged or another account's cookie does not count.
    let forged = known.replace(|c: char| c.is_ascii_hexdigit() && c != '.', "0");
    assert_eq!(sign_in_from(&s, "198.51.100.8", "a@example.com", "correct horse battery", Some(&forged)).await.status(), 429);
}

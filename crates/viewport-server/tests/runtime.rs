//! Relay tokens, JWKS, revocation, unpair and member removal.

mod common;

use common::*;
use jsonwebtoken::jwk::JwkSet;
use jsonwebtoken::{decode, decode_header, Algorithm, DecodingKey, Validation};
use viewport_server::util;
use vpd_proto::runtime::{RelayClaims, RelayToken};

#[tokio::test]
async fn relay_token_verifies_against_the_jwks() {
    let s = start().await;
    let org = s.org("Acme", "acme");
    let u = s.user("a@example.com", &[&org]);
    let key = new_key();
    let a = s.pair(&key, &org, &u).await;

    let r = s.relay_token(&a).await;
    assert_eq!(r.status(), 200);
    let t: RelayToken = r.json().await.unwrap();
    assert_eq!(t.relay_endpoint, a.relay_endpoint);

    let jwks: JwkSet = s.http.get(s.at("/api/.well-known/jwks.json")).send().await.unwrap().json().await.unwrap();
    let header = decode_header(t.relay_token.expose()).unwrap();
    assert_eq!(header.alg, Algorithm::EdDSA);
    let kid = header.kid.expect("kid in header");
    let jwk = jwks.find(&kid).expect("kid in JWKS");
    let mut v = Validation::new(Algorithm::EdDSA);
    v.set_audience(&["viewport-relay"]);
    v.set_issuer(&[&s.url]);
    let claims = decode::<RelayClaims>(t.relay_token.expose(), &DecodingKey::from_jwk(jwk).unwrap(), &v).unwrap().claims;
    assert_eq!(claims.sub, a.runtime_target_id);
    assert_eq!(claims.workspace_id, org.id);
    assert_eq!(claims.machine_id, a.machine_id);
    assert_eq!(claims.public_key, b64url(key.verifying_key().as_bytes()));
    assert!(claims.exp - claims.iat <= 600 && claims.exp > util::now());
    assert!((claims.iat - util::now()).abs() <= 5);
    assert_eq!(t.expires_at.parse::<jiff::Timestamp>().unwrap().as_second(), claims.exp);
    // jti is unique per token.
    let t2: RelayToken = s.relay_token(&a).await.json().await.unwrap();
    let c2 = decode::<RelayClaims>(t2.relay_token.expose(), &DecodingKey::from_jwk(jwk).unwrap(), &v).unwrap().claims;
    assert_ne!(c2.jti, claims.jti);
    // The token does not verify under any other key.
    let stranger = DecodingKey::from_ed_components(&b64url(new_key().verifying_key().as_bytes())).unwrap();
    assert!(decode::<RelayClaims>(t.relay_token.expose(), &stranger, &v).is_err());
    // last_seen_at is updated.
    assert!(s.store().machines(&org.id).unwrap()[0].last_seen_at.is_some());
}

#[tokio::test]
async fn the_signing_key_survives_a_restart() {
    let s = start().await;
    let before: serde_json::Value = s.http.get(s.at("/api/.well-known/jwks.json")).send().await.unwrap().json().await.unwrap();
    let again = viewport_server::store::Store::open(&s.db_path).unwrap();
    let keys = viewport_server::keys::Keys::load_or_create(&again).unwrap();
    assert_eq!(keys.jwks(), before);
    assert_eq!(before["keys"][0]["kty"], "OKP");
    assert_eq!(before["keys"][0]["crv"], "Ed25519");
    assert_eq!(before["keys"][0]["alg"], "EdDSA");
    assert_eq!(before["keys"][0]["use"], "sig");
}

#[tokio::test]
async fn credential_errors_map_to_401_403_404() {
    let s = start().await;
    let org = s.org("Acme", "acme");
    let u = s.user("a@example.com", &[&org]);
    let a = s.pair(&new_key(), &org, &u).await;

    let mut wrong = a.clone();
    wrong.token = vpd_proto::Secret::new("not-the-token");
    let r = s.relay_token(&wrong).await;
    assert_eq!((r.status().as_u16(), error_code(r).await.as_str()), (401, "invalid_credential"));

    let mut unknown_rt = a.clone();
    unknown_rt.runtime_target_id = ulid::Ulid::new().to_string();
    let r = s.relay_token(&unknown_rt).await;
    assert_eq!((r.status().as_u16(), error_code(r).await.as_str()), (401, "invalid_credential"));

    let mut unknown_ws = a.clone();
    unknown_ws.workspace_id = ulid::Ulid::new().to_string();
    let r = s.relay_token(&unknown_ws).await;
    assert_eq!((r.status().as_u16(), error_code(r).await.as_str()), (404, "workspace_not_found"));

    // A runtime target of one workspace presented with another (existing) workspace.
    let other = s.org("Other", "other");
    let mut cross = a.clone();
    cross.workspace_id = other.id.clone();
    let r = s.relay_token(&cross).await;
    assert_eq!((r.status().as_u16(), error_code(r).await.as_str()), (401, "invalid_credential"));

    // Revoke through the store (as the admin CLI does), by machine id.
    assert!(s.store().revoke(&org.id, &a.machine_id, "revoked", &viewport_server::roles::Actor::cli(), util::now()).unwrap());
    let r = s.relay_token(&a).await;
    assert_eq!((r.status().as_u16(), error_code(r).await.as_str()), (403, "revoked"));
    // A wrong credential for a revoked target still says 401, not 403.
    let r = s.relay_token(&wrong).await;
    assert_eq!(r.status(), 401);
}

#[tokio::test]
async fn unpair_revokes() {
    let s = start().await;
    let org = s.org("Acme", "acme");
    let u = s.user("a@example.com", &[&org]);
    let a = s.pair(&new_key(), &org, &u).await;
    let body = serde_json::json!({"workspaceId": a.workspace_id, "runtimeTargetId": a.runtime_target_id, "credential": a.token.expose()});
    let r = s.http.post(s.at("/api/runtime/unpair")).json(&body).send().await.unwrap();
    assert_eq!(r.status(), 200);
    let m = &s.store().machines(&org.id).unwrap()[0];
    assert!(m.revoked_at.is_some());
    assert_eq!(m.revoked_reason.as_deref(), Some("unpaired"));
    let r = s.relay_token(&a).await;
    assert_eq!(error_code(r).await, "revoked");
}

#[tokio::test]
async fn member_removal_revokes_only_their_pairings_in_that_org() {
    let s = start().await;
    let one = s.org("One", "one");
    let two = s.org("Two", "two");
    let alice = s.user("alice@example.com", &[&one, &two]);
    let bob = s.user("bob@example.com", &[&one]);
    let alice_one = s.pair(&new_key(), &one, &alice).await;
    let alice_two = s.pair(&new_key(), &two, &alice).await;
    let bob_one = s.pair(&new_key(), &one, &bob).await;

    // Alice, the first member, owns One; a second owner lets her be removed.
    s.store().set_role(&one.id, &bob.id, viewport_server::roles::Role::Owner, &viewport_server::roles::Actor::cli(), 0).unwrap();
    assert_eq!(s.store().remove_member(&one.id, &alice.id, util::now()).unwrap(), 1);
    assert_eq!(s.relay_token(&alice_one).await.status(), 403);
    assert_eq!(s.relay_token(&alice_two).await.status(), 200, "the other org is untouched");
    assert_eq!(s.relay_token(&bob_one).await.status(), 200, "other members are untouched");
    assert!(!s.store().is_member(&one.id, &alice.id).unwrap());
    assert!(s.store().is_member(&two.id, &alice.id).unwrap());
}

#[tokio::test]
async fn health_and_security_headers() {
    let s = start().await;
    let r = s.http.get(s.at("/api/health")).send().await.unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(r.headers()["content-security-policy"], "default-src 'self'; frame-ancestors 'none'");
    assert_eq!(r.headers()["x-content-type-options"], "nosniff");
    assert_eq!(r.headers()["referrer-policy"], "same-origin", "no-referrer makes Chromium send Origin: null on form posts");
    let h: vpd_proto::Health = r.json().await.unwrap();
    assert_eq!(h.status, "ok");
    assert_eq!(h.version, env!("CARGO_PKG_VERSION"));
}

#[tokio::test]
async fn last_seen_is_null_until_the_first_successful_relay_token() {
    let s = start().await;
    let org = s.org("Acme", "acme");
    let u = s.user("a@example.com", &[&org]);
    let a = s.pair(&new_key(), &org, &u).await;
    assert_eq!(s.store().machines(&org.id).unwrap()[0].last_seen_at, None, "not seen at pairing time");

    // Failed attempts do not count as seen.
    let mut wrong = a.clone();
    wrong.token = vpd_proto::Secret::new("not-the-token");
    assert_eq!(s.relay_token(&wrong).await.status(), 401);
    assert_eq!(s.store().machines(&org.id).unwrap()[0].last_seen_at, None);

    assert_eq!(s.relay_token(&a).await.status(), 200);
    let seen = s.store().machines(&org.id).unwrap()[0].last_seen_at.expect("seen after a relay token");
    assert!((seen - util::now()).abs() <= 5);

    // A claimed ("Add machine") code is not seen at pairing time either.
    let (code, _) = s.state.mint_code(&org.id, &u.id, &as_user(&u)).await.unwrap();
    let r = s.http.post(s.at(&vpd_proto::paths::pairing_claim(&code))).json(&body_for(&new_key(), "ci")).send().await.unwrap();
    assert_eq!(r.status(), 200);
    let ci = s.store().machines(&org.id).unwrap().into_iter().find(|m| m.name == "ci").unwrap();
    assert_eq!(ci.last_seen_at, None);
}

#[tokio::test]
async fn debug_output_never_shows_keys_tokens_or_password_hashes() {
    let s = start().await;
    let org = s.org("Acme", "acme");
    let u = s.user("a@example.com", &[&org]);
    let a = s.pair(&new_key(), &org, &u).await;
    // A relay token works, so the signing key in the database is the one in use.
    assert_eq!(s.relay_token(&a).await.status(), 200);

    let key = s.store().signing_key().unwrap().unwrap();
    let shown = format!("{key:?} {key:#?}");
    assert!(shown.contains(&key.kid) && shown.contains("redacted"), "{shown}");
    for needle in [format!("{:?}", key.pkcs8_der), format!("{:?}", &key.pkcs8_der[key.pkcs8_der.len() - 8..])] {
        assert!(!shown.contains(needle.trim_start_matches('[').trim_end_matches(']')), "private key bytes in Debug: {shown}");
    }

    let rt = s.store().runtime_target(&org.id, &a.runtime_target_id).unwrap().unwrap();
    let hash = rt.issue_token_hash.clone().expect("delivered");
    let shown = format!("{rt:?}");
    assert!(shown.contains(&rt.id) && shown.contains("redacted"), "{shown}");
    assert!(!shown.contains(format!("{hash:?}").trim_start_matches('[').trim_end_matches(']')), "issue token hash in Debug: {shown}");

    let created = s.create_code(&body_for(&new_key(), "box")).await;
    let pc = s.store().pairing_code(&vpd_proto::normalize_code(&created.code).unwrap()).unwrap().unwrap();
    let hash = pc.status_token_hash.clone().unwrap();
    let shown = format!("{pc:?}");
    assert!(shown.contains(&pc.code) && shown.contains("redacted"), "{shown}");
    assert!(!shown.contains(format!("{hash:?}").trim_start_matches('[').trim_end_matches(']')), "status token hash in Debug: {shown}");
    assert!(!shown.contains(created.status_token.expose()));

    let found = s.store().user_by_email("a@example.com").unwrap().unwrap();
    let shown = format!("{found:?}");
    assert!(found.1.expose().starts_with("$argon2"));
    assert!(shown.contains(&u.id) && !shown.contains("argon2"), "password hash in Debug: {shown}");
}

/// Issue 11 item 7: a machine renames itself; the Machines page and the audit log follow.
/// A bad name, a wrong credential and a revoked pairing change nothing.
#[tokio::test]
async fn a_machine_renames_itself() {
    let s = start().await;
    let org = s.org("Acme", "acme");
    let u = s.user("a@example.com", &[&org]);
    let a = s.pair(&new_key(), &org, &u).await;
    let rename = |name: &str, credential: &str| {
        let body = serde_json::json!({"workspaceId": a.workspace_id, "runtimeTargetId": a.runtime_target_id, "credential": credential, "name": name});
        s.http.post(s.at("/api/runtime/rename")).json(&body).send()
    };
    let r = rename("  Ann's <b>laptop</b>  ", a.token.expose()).await.unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(r.json::<serde_json::Value>().await.unwrap()["name"], "Ann's <b>laptop</b>");
    let m = &s.store().machines(&org.id).unwrap()[0];
    assert_eq!(m.name, "Ann's <b>laptop</b>");
    let cookie = sign_in(&s, "a@example.com").await;
    let html = s.http.get(s.at("/orgs/acme/machines")).header("cookie", &cookie).send().await.unwrap().text().await.unwrap();
    assert!(
        html.contains("Ann&#39;s &lt;b&gt;laptop&lt;/b&gt;") || html.contains("Ann's &lt;b&gt;laptop&lt;/b&gt;"),
        "the Machines page shows the new name, escaped"
    );
    let log = s.store().audit_log(&org.id, 10).unwrap();
    let row = log.iter().find(|e| e.action == "machine.renamed").expect("an audit row");
    assert_eq!(row.actor, format!("machine:{}", a.machine_id));
    assert!(row.detail.contains("was "), "{}", row.detail);

    for bad in ["", "   ", "a\u{7}b", &"x".repeat(101), "evil\u{202E}txt.exe"] {
        let r = rename(bad, a.token.expose()).await.unwrap();
        assert_eq!(r.status(), 400, "{bad:?}");
    }
    assert_eq!(error_code(rename("evil", "wrong-credential").await.unwrap()).await, "invalid_credential");
    assert_eq!(s.store().machines(&org.id).unwrap()[0].name, "Ann's <b>laptop</b>", "refused renames change nothing");
    let body = serde_json::json!({"workspaceId": a.workspace_id, "runtimeTargetId": a.runtime_target_id, "credential": a.token.expose()});
    s.http.post(s.at("/api/runtime/unpair")).json(&body).send().await.unwrap();
    assert_eq!(error_code(rename("after", a.token.expose()).await.unwrap()).await, "revoked");
}

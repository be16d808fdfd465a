//! The pairing API over real HTTP: codes, long polls, single delivery, claims, validation.

mod common;

use common::*;
use std::time::{Duration, Instant};
use viewport_server::store::{MachineInfo, Store, StoreError};
use viewport_server::util;
use vpd_proto::pairing::PairingStatus;

#[tokio::test]
async fn create_code_then_status_is_pending_and_token_is_stored_hashed() {
    let s = start().await;
    let created = s.create_code(&body_for(&new_key(), "laptop")).await;
    let code = &created.code;
    assert_eq!(code.len(), 9);
    assert_eq!(&code[4..5], "-");
    assert!(vpd_proto::normalize_code(code).is_some());
    assert_eq!(created.verification_url, format!("{}/pair?code={code}", s.url));
    assert_eq!(util::b64url_decode(created.status_token.expose()).unwrap().len(), 32);
    let expires = created.expires_at.parse::<jiff::Timestamp>().unwrap().as_second();
    assert!((expires - util::now() - 900).abs() <= 5, "15-minute TTL");

    let r = s.status(code, created.status_token.expose(), 0).await;
    assert_eq!(r.status(), 200);
    assert_eq!(r.json::<PairingStatus>().await.unwrap(), PairingStatus::Pending);

    // The status token itself is nowhere in the database files.
    let mut bytes = std::fs::read(&s.db_path).unwrap();
    bytes.extend(std::fs::read(s.db_path.with_extension("db-wal")).unwrap_or_default());
    let needle = created.status_token.expose().as_bytes();
    assert!(!bytes.windows(needle.len()).any(|w| w == needle), "status token stored in clear");
}

#[tokio::test]
async fn long_poll_returns_promptly_on_in_process_approval() {
    let s = start().await;
    let org = s.org("Acme", "acme");
    let u = s.user("a@example.com", &[&org]);
    let created = s.create_code(&body_for(&new_key(), "box")).await;
    let code = vpd_proto::normalize_code(&created.code).unwrap();

    let started = Instant::now();
    let poll = spawn_poll(&s, &created);
    tokio::time::sleep(Duration::from_millis(400)).await;
    s.state.approve_code(&code, &org.id, &u.id, &as_user(&u)).await.unwrap();
    let r = poll.await.unwrap();
    let elapsed = started.elapsed();
    assert!(elapsed >= Duration::from_millis(400), "answered before the approval");
    assert!(elapsed < Duration::from_secs(3), "long poll took {elapsed:?}");
    match r.json::<PairingStatus>().await.unwrap() {
        PairingStatus::Approved(a) => {
            assert_eq!(a.workspace_id, org.id);
            assert_eq!(a.workspace_slug, "acme");
            assert_eq!(a.machine_name, "box");
            assert!(vpd_proto::is_ulid(&a.machine_id) && vpd_proto::is_ulid(&a.install_id) && vpd_proto::is_ulid(&a.runtime_target_id));
            assert_eq!(a.relay_endpoint, format!("{}/ws", s.url.replace("http://", "ws://")));
            assert_eq!(a.server_url, s.url);
        }
        other => panic!("{other:?}"),
    }
}

#[tokio::test]
async fn long_poll_sees_an_approval_made_by_another_process() {
    let s = start().await;
    let org = s.org("Acme", "acme");
    let u = s.user("a@example.com", &[&org]);
    let created = s.create_code(&body_for(&new_key(), "box")).await;
    let code = vpd_proto::normalize_code(&created.code).unwrap();

    let started = Instant::now();
    let poll = spawn_poll(&s, &created);
    tokio::time::sleep(Duration::from_millis(400)).await;
    // A second connection on the same file, as the admin CLI would open: no in-process wake-up.
    let other = Store::open(&s.db_path).unwrap();
    other.approve_code(&code, &org.id, &u.id, &as_user(&u), util::now()).unwrap();
    let r = poll.await.unwrap();
    assert!(started.elapsed() < Duration::from_secs(3), "long poll took {:?}", started.elapsed());
    assert!(matches!(r.json::<PairingStatus>().await.unwrap(), PairingStatus::Approved(_)));
}

#[tokio::test]
async fn approval_is_delivered_exactly_once() {
    let s = start().await;
    let org = s.org("Acme", "acme");
    let u = s.user("a@example.com", &[&org]);
    let created = s.create_code(&body_for(&new_key(), "box")).await;
    let code = vpd_proto::normalize_code(&created.code).unwrap();
    s.state.approve_code(&code, &org.id, &u.id, &as_user(&u)).await.unwrap();

    let token = created.status_token.expose();
    let (a, b) = tokio::join!(s.status(&created.code, token, 0), s.status(&created.code, token, 0));
    let mut statuses = [a.status().as_u16(), b.status().as_u16()];
    statuses.sort();
    assert_eq!(statuses, [200, 404], "one poll gets the approval, the other a 404");
    let r = s.status(&created.code, token, 0).await;
    assert_eq!(r.status(), 404);
    assert_eq!(error_code(r).await, "not_found");
}

#[tokio::test]
async fn wrong_token_unknown_code_and_expired_code() {
    let s = start().await;
    let created = s.create_code(&body_for(&new_key(), "box")).await;

    for token in ["", "wrong-token"] {
        let r = s.status(&created.code, token, 0).await;
        assert_eq!(r.status(), 404, "token {token:?}");
        assert_eq!(error_code(r).await, "not_found");
    }
    let r = s.status("BCDF-GHJK", created.status_token.expose(), 0).await;
    assert_eq!(r.status(), 404);
    assert_eq!(error_code(r).await, "not_found");
    let r = s.status("not-a-code", created.status_token.expose(), 0).await;
    assert_eq!(r.status(), 404);

    // A code past its TTL: the right token learns it expired; it can no longer be approved.
    let token = "expired-code-status-token";
    let now = util::now();
    let m = MachineInfo {
        name: "old".into(),
        public_key: b64url(new_key().verifying_key().as_bytes()),
        daemon_version: "0.1.0".into(),
        os: "linux".into(),
        arch: "x86_64".into(),
    };
    s.store().insert_device_code("ZZZZXXXX", &util::sha256(token.as_bytes()), &m, None, now - 1000, now - 100).unwrap();
    let r = s.status("ZZZZ-XXXX", token, 5).await;
    assert_eq!(r.json::<PairingStatus>().await.unwrap(), PairingStatus::Expired);
    let r = s.status("ZZZZ-XXXX", "other", 0).await;
    assert_eq!(r.status(), 404);
    let org = s.org("Acme", "acme");
    let u = s.user("a@example.com", &[&org]);
    assert!(s.state.approve_code("ZZZZXXXX", &org.id, &u.id, &as_user(&u)).await.is_err());
}

#[tokio::test]
async fn denied_code_reports_denied() {
    let s = start().await;
    let org = s.org("Acme", "acme");
    let u = s.user("a@example.com", &[&org]);
    let created = s.create_code(&body_for(&new_key(), "box")).await;
    s.state.deny_code(&vpd_proto::normalize_code(&created.code).unwrap(), &u.id).await.unwrap();
    let r = s.status(&created.code, created.status_token.expose(), 10).await;
    assert_eq!(r.json::<PairingStatus>().await.unwrap(), PairingStatus::Denied);
}

#[tokio::test]
async fn claim_of_a_minted_code_pairs_once() {
    let s = start().await;
    let org = s.org("Acme", "acme");
    let u = s.user("a@example.com", &[&org]);
    let (code, _) = s.state.mint_code(&org.id, &u.id, &as_user(&u)).await.unwrap();
    let shown = vpd_proto::format_code(&code);
    let key = new_key();
    let r = s.http.post(s.at(&format!("/api/pairing-codes/{shown}/claim"))).json(&body_for(&key, "ci-runner")).send().await.unwrap();
    assert_eq!(r.status(), 200);
    let a = match r.json::<PairingStatus>().await.unwrap() {
        PairingStatus::Approved(a) => *a,
        other => panic!("{other:?}"),
    };
    assert_eq!(a.workspace_id, org.id);
    assert_eq!(a.machine_name, "ci-runner");
    assert_eq!(s.relay_token(&a).await.status(), 200, "the claimed credential works");
    let machines = s.store().machines(&org.id).unwrap();
    assert_eq!(machines.len(), 1);
    assert_eq!(machines[0].paired_by, "a@example.com");

    // Used, unknown, and status polling on a minted code: all the same 404.
    for path in [format!("/api/pairing-codes/{shown}/claim"), "/api/pairing-codes/BCDF-GHJK/claim".to_string()] {
        let r = s.http.post(s.at(&path)).json(&body_for(&new_key(), "again")).send().await.unwrap();
        assert_eq!(r.status(), 404);
        assert_eq!(error_code(r).await, "not_found");
    }
}

#[tokio::test]
async fn invalid_requests_are_rejected_with_json_400() {
    let s = start().await;
    let good = body_for(&new_key(), "box");
    // Find 32 bytes that are not a point on the curve.
    let not_a_point = (0u8..=255)
        .map(|i| {
            let mut b = [i; 32];
            b[31] &= 0x7f;
            b
        })
        .find(|b| ed25519_dalek::VerifyingKey::from_bytes(b).is_err())
        .expect("some pattern is not a point");
    let mut cases = Vec::new();
    let mut b = good.clone();
    b.public_key = "not base64!".into();
    cases.push(("bad base64", b));
    let mut b = good.clone();
    b.public_key = b64url(&[7u8; 31]);
    cases.push(("31 bytes", b));
    let mut b = good.clone();
    b.public_key = b64url(&[7u8; 33]);
    cases.push(("33 bytes", b));
    let mut b = good.clone();
    b.public_key = b64url(&not_a_point);
    cases.push(("not a point", b));
    let mut b = good.clone();
    b.public_key = format!("{}=", good.public_key);
    cases.push(("padded", b));
    let mut b = good.clone();
    b.key_algorithm = "rsa".into();
    cases.push(("algorithm", b));
    let mut b = good.clone();
    b.name = "".into();
    cases.push(("empty name", b));
    let mut b = good.clone();
    b.name = "x".repeat(101);
    cases.push(("long name", b));
    let mut b = good.clone();
    b.name = "evil\u{1b}[31m".into();
    cases.push(("control char", b));
    for (what, body) in cases {
        let r = s.http.post(s.at("/api/pairing-codes")).json(&body).send().await.unwrap();
        assert_eq!(r.status(), 400, "{what}");
        assert_eq!(error_code(r).await, "invalid_request", "{what}");
    }
    let r = s.http.post(s.at("/api/pairing-codes")).header("content-type", "application/json").body("{not json").send().await.unwrap();
    assert_eq!(r.status(), 400);
    assert_eq!(error_code(r).await, "invalid_request");
    let big = format!(r#"{{"name":"{}"}}"#, "x".repeat(100 * 1024));
    let r = s.http.post(s.at("/api/pairing-codes")).header("content-type", "application/json").body(big).send().await.unwrap();
    assert_eq!(r.status(), 413);
    assert_eq!(error_code(r).await, "payload_too_large");
    // Unknown API routes answer JSON too, never HTML.
    let r = s.http.get(s.at("/api/nope")).send().await.unwrap();
    assert_eq!(r.status(), 404);
    assert!(r.headers()["content-type"].to_str().unwrap().starts_with("application/json"));
    // The valid body still works.
    s.create_code(&good).await;
}

#[tokio::test]
async fn code_creation_is_rate_limited_per_ip() {
    let s = start_with(|c| c.pairing_per_minute = 3).await;
    let body = body_for(&new_key(), "box");
    for _ in 0..3 {
        s.create_code(&body).await;
    }
    let r = s.http.post(s.at("/api/pairing-codes")).json(&body).send().await.unwrap();
    assert_eq!(r.status(), 429);
    assert_eq!(error_code(r).await, "rate_limited");
}

#[tokio::test]
async fn machine_ids_differ_across_workspaces_for_the_same_key() {
    let s = start().await;
    let one = s.org("One", "one");
    let two = s.org("Two", "two");
    let u = s.user("a@example.com", &[&one, &two]);
    let key = new_key();
    let a = s.pair(&key, &one, &u).await;
    let b = s.pair(&key, &two, &u).await;
    assert_ne!(a.machine_id, b.machine_id);
    assert_ne!(a.runtime_target_id, b.runtime_target_id);
    assert_ne!(a.install_id, b.install_id);
    assert_ne!(a.token, b.token);
    // Tenancy: each workspace lists only its own machine.
    assert_eq!(s.store().machines(&one.id).unwrap().iter().map(|m| m.machine_id.clone()).collect::<Vec<_>>(), vec![a.machine_id]);
    assert_eq!(s.store().machines(&two.id).unwrap().iter().map(|m| m.machine_id.clone()).collect::<Vec<_>>(), vec![b.machine_id]);
}

#[tokio::test]
async fn cancel_makes_a_pending_code_unusable() {
    let s = start().await;
    let org = s.org("Acme", "acme");
    let u = s.user("a@example.com", &[&org]);
    let created = s.create_code(&body_for(&new_key(), "box")).await;
    let token = created.status_token.expose();
    let code = vpd_proto::normalize_code(&created.code).unwrap();

    // Wrong or missing token: the same 404 as the status route, and nothing changes.
    for bad in ["", "wrong-token"] {
        let r = s.cancel(&created.code, bad).await;
        assert_eq!(r.status(), 404, "token {bad:?}");
        assert_eq!(error_code(r).await, "not_found");
    }
    let r = s.http.post(s.at(&vpd_proto::paths::pairing_cancel(&created.code))).send().await.unwrap();
    assert_eq!(r.status(), 404, "no header at all");
    let r = s.status(&created.code, token, 0).await;
    assert_eq!(r.json::<PairingStatus>().await.unwrap(), PairingStatus::Pending);

    // A waiting long poll learns at once that the code is gone.
    let started = Instant::now();
    let poll = {
        let (http, url, token) = (s.http.clone(), s.at(&format!("/api/pairing-codes/{}/status?wait=25", created.code)), token.to_string());
        tokio::spawn(async move { http.get(url).header("X-Viewport-Pairing-Token", token).send().await.unwrap() })
    };
    tokio::time::sleep(Duration::from_millis(300)).await;

    let r = s.cancel(&created.code, token).await;
    assert_eq!(r.status(), 200);
    assert_eq!(r.json::<serde_json::Value>().await.unwrap(), serde_json::json!({"status": "cancelled"}));

    let r = poll.await.unwrap();
    assert!(started.elapsed() < Duration::from_secs(3), "long poll took {:?}", started.elapsed());
    assert_eq!(r.status(), 404);
    assert_eq!(error_code(r).await, "not_found");

    // Afterwards: status 404, a second cancel 404, approval refused as for an unknown code.
    let r = s.status(&created.code, token, 0).await;
    assert_eq!(r.status(), 404);
    assert_eq!(error_code(r).await, "not_found");
    let r = s.cancel(&code, token).await;
    assert_eq!(r.status(), 404, "cancelling twice (canonical form of the code)");
    assert_eq!(error_code(r).await, "not_found");
    assert!(matches!(s.state.approve_code(&code, &org.id, &u.id, &as_user(&u)).await, Err(StoreError::NotFound(_))));
    assert!(matches!(s.state.deny_code(&code, &u.id).await, Err(StoreError::NotFound(_))));
    assert!(s.store().machines(&org.id).unwrap().is_empty());
}

#[tokio::test]
async fn cancel_after_an_undelivered_approval_revokes_the_target() {
    let s = start().await;
    let org = s.org("Acme", "acme");
    let u = s.user("a@example.com", &[&org]);
    let created = s.create_code(&body_for(&new_key(), "box")).await;
    let code = vpd_proto::normalize_code(&created.code).unwrap();
    let p = s.state.approve_code(&code, &org.id, &u.id, &as_user(&u)).await.unwrap();

    let r = s.cancel(&created.code, created.status_token.expose()).await;
    assert_eq!(r.status(), 200);
    assert_eq!(r.json::<serde_json::Value>().await.unwrap()["status"], "cancelled");

    // No active machine is left behind, and the approval is never handed out.
    let machines = s.store().machines(&org.id).unwrap();
    assert_eq!(machines.len(), 1);
    assert_eq!(machines[0].runtime_target_id, p.runtime_target_id);
    assert!(machines[0].revoked_at.is_some(), "the approval's runtime target must be revoked");
    assert_eq!(machines[0].revoked_reason.as_deref(), Some("cancelled"));
    let rt = s.store().runtime_target(&org.id, &p.runtime_target_id).unwrap().unwrap();
    assert!(rt.revoked_at.is_some() && rt.issue_token_hash.is_none());
    let r = s.status(&created.code, created.status_token.expose(), 0).await;
    assert_eq!(r.status(), 404);
    assert_eq!(error_code(r).await, "not_found");
}

#[tokio::test]
async fn cancel_of_delivered_denied_expired_minted_or_unknown_codes_is_404() {
    let s = start().await;
    let org = s.org("Acme", "acme");
    let u = s.user("a@example.com", &[&org]);

    // Approved and delivered: the pairing stays active.
    let created = s.create_code(&body_for(&new_key(), "box")).await;
    let code = vpd_proto::normalize_code(&created.code).unwrap();
    s.state.approve_code(&code, &org.id, &u.id, &as_user(&u)).await.unwrap();
    let a = match s.status(&created.code, created.status_token.expose(), 0).await.json::<PairingStatus>().await.unwrap() {
        PairingStatus::Approved(a) => *a,
        other => panic!("{other:?}"),
    };
    let r = s.cancel(&created.code, created.status_token.expose()).await;
    assert_eq!(r.status(), 404);
    assert_eq!(error_code(r).await, "not_found");
    assert_eq!(s.relay_token(&a).await.status(), 200, "a delivered pairing is not revoked by cancel");
    assert!(s.store().machines(&org.id).unwrap()[0].revoked_at.is_none());

    // Denied: still reported as denied afterwards.
    let denied = s.create_code(&body_for(&new_key(), "box")).await;
    s.state.deny_code(&vpd_proto::normalize_code(&denied.code).unwrap(), &u.id).await.unwrap();
    let r = s.cancel(&denied.code, denied.status_token.expose()).await;
    assert_eq!(r.status(), 404);
    assert_eq!(error_code(r).await, "not_found");
    let r = s.status(&denied.code, denied.status_token.expose(), 0).await;
    assert_eq!(r.json::<PairingStatus>().await.unwrap(), PairingStatus::Denied);

    // Expired.
    let token = "expired-code-status-token";
    let now = util::now();
    let m = MachineInfo {
        name: "old".into(),
        public_key: b64url(new_key().verifying_key().as_bytes()),
        daemon_version: "0.1.0".into(),
        os: "linux".into(),
        arch: "x86_64".into(),
    };
    s.store().insert_device_code("ZZZZXXXX", &util::sha256(token.as_bytes()), &m, None, now - 1000, now - 100).unwrap();
    let r = s.cancel("ZZZZ-XXXX", token).await;
    assert_eq!(r.status(), 404);
    assert_eq!(error_code(r).await, "not_found");

    // Minted, unknown, malformed.
    let (minted, _) = s.state.mint_code(&org.id, &u.id, &as_user(&u)).await.unwrap();
    for c in [vpd_proto::format_code(&minted), "BCDF-GHJK".to_string(), "not-a-code".to_string()] {
        let r = s.cancel(&c, created.status_token.expose()).await;
        assert_eq!(r.status(), 404, "{c}");
        assert_eq!(error_code(r).await, "not_found", "{c}");
    }
    // The minted code is still claimable.
    let r =
        s.http.post(s.at(&vpd_proto::paths::pairing_claim(&vpd_proto::format_code(&minted)))).json(&body_for(&new_key(), "ci")).send().await.unwrap();
    assert_eq!(r.status(), 200);
}

/// Starts a 25 s status long poll for `created` in the background.
fn spawn_poll(s: &common::Server, created: &vpd_proto::pairing::PairingCodeCreated) -> tokio::task::JoinHandle<reqwest::Response> {
    let (http, url, token) =
        (s.http.clone(), s.at(&format!("/api/pairing-codes/{}/status?wait=25", created.code)), created.status_token.expose().to_string());
    tokio::spawn(async move { http.get(url).header("X-Viewport-Pairing-Token", token).send().await.unwrap() })
}

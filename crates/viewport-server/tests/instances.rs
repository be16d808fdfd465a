//! Several instances on one PostgreSQL (issue 14 item 3), in one process: two `AppState`s,
//! each with its own pool, LISTEN connection, relay registry and port, as two
//! `viewport-server serve` processes have. Deadlines are generous (a busy machine); the
//! 1-second figures are measured in the benchmarks.

mod common;
#[path = "../../../tests/support/pg.rs"]
mod pg;

use base64::Engine;
use common::*;
use ed25519_dalek::{Signer, SigningKey};
use futures_util::{SinkExt, StreamExt};
use std::time::Duration;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::Message;
use vpd_proto::pairing::{Approved, PairingStatus};
use vpd_proto::relay::{proof_message, DaemonMsg, RelayMsg};
use vpd_proto::runtime::RelayToken;

type Ws = tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

const DEADLINE: Duration = Duration::from_secs(15);

/// Runs `test` on a runtime of its own with a PostgreSQL that outlives it: the runtime's
/// blocking tasks (a pool waiting for a connection) end while the database is still up, so a
/// test's private cluster never makes them wait out the pool's connect timeout.
fn on_pg<F: std::future::Future<Output = ()>>(test: impl FnOnce(std::sync::Arc<pg::Pg>) -> F) {
    let pg = std::sync::Arc::new(pg::Pg::start());
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(4).enable_all().build().unwrap();
    rt.block_on(test(pg.clone()));
    drop(rt);
    drop(pg);
}

/// Two instances on a fresh database, an org with one member.
async fn two(pg: &pg::Pg) -> (Server, Server, viewport_server::store::Workspace, viewport_server::store::User) {
    let db = tokio::task::block_in_place(|| pg.database());
    let a = start_on(&db, |_| {}).await;
    // One public URL for both, as behind a load balancer: the daemon's proof names it.
    let public = a.url.clone();
    let b = start_on(&db, |c| c.public_url = public).await;
    let (org, user) = tokio::task::block_in_place(|| {
        let org = a.org("Acme", "acme");
        (org.clone(), a.user("a@example.com", &[&org]))
    });
    (a, b, org, user)
}

/// The daemon's relay handshake against `s` with a token `s` issued; returns the socket.
async fn connect(s: &Server, key: &SigningKey, a: &Approved) -> Ws {
    let r = s.relay_token(a).await;
    assert_eq!(r.status(), 200);
    let token = r.json::<RelayToken>().await.unwrap().relay_token.expose().to_string();
    connect_with(s, key, a, &token).await
}

async fn connect_with(s: &Server, key: &SigningKey, a: &Approved, token: &str) -> Ws {
    let endpoint = format!("{}/ws", s.url.replace("http://", "ws://"));
    let url = format!("{endpoint}?role=workspace-daemon&workspaceId={}&runtimeTargetId={}&features=quota", a.workspace_id, a.runtime_target_id);
    let mut req = url.into_client_request().unwrap();
    req.headers_mut().insert("authorization", format!("Bearer {token}").parse().unwrap());
    let (mut ws, _) = tokio_tungstenite::connect_async(req).await.unwrap();
    let RelayMsg::Challenge { nonce } = next(&mut ws).await else { panic!("expected a challenge") };
    // The proof names the endpoint the daemon was given at pairing (the public URL's).
    let sig = key.sign(proof_message(&a.workspace_id, &a.runtime_target_id, &a.relay_endpoint, &nonce).as_bytes());
    send(&mut ws, &DaemonMsg::Proof { signature: b64url(&sig.to_bytes()) }).await;
    match next(&mut ws).await {
        RelayMsg::Ready { .. } => ws,
        other => panic!("expected ready, got {other:?}"),
    }
}

async fn next(ws: &mut Ws) -> RelayMsg {
    loop {
        match tokio::time::timeout(DEADLINE, ws.next()).await.expect("a message in time") {
            Some(Ok(Message::Text(t))) => return serde_json::from_str(t.as_str()).unwrap(),
            Some(Ok(Message::Ping(_) | Message::Pong(_))) => continue,
            other => panic!("expected a relay message, got {other:?}"),
        }
    }
}

async fn send(ws: &mut Ws, m: &DaemonMsg) {
    ws.send(Message::Text(serde_json::to_string(m).unwrap().into())).await.unwrap();
}

async fn closed(ws: &mut Ws) -> u16 {
    loop {
        match tokio::time::timeout(DEADLINE, ws.next()).await.expect("closed in time") {
            Some(Ok(Message::Close(Some(f)))) => return u16::from(f.code),
            Some(Ok(_)) => continue,
            other => panic!("expected a close frame, got {other:?}"),
        }
    }
}

/// A session start and frames 1..=n, then the ack of n.
async fn stream(ws: &mut Ws, sid: &str, n: u64) {
    send(
        ws,
        &DaemonMsg::SessionStart {
            session_id: sid.into(),
            agent: "claude".into(),
            directory: "proj".into(),
            started_at: "2026-12-02T10:00:00.000Z".into(),
        },
    )
    .await;
    for seq in 1..=n {
        let data = base64::engine::general_purpose::STANDARD.encode(format!("line {seq}\r\n"));
        send(
            ws,
            &DaemonMsg::Frame { session_id: sid.into(), seq, ts: "2026-12-02T10:00:01.000Z".into(), kind: vpd_proto::relay::FrameKind::Output, data },
        )
        .await;
    }
    loop {
        if let RelayMsg::Ack { session_id, seq } = next(ws).await {
            if session_id == sid && seq == n {
                return;
            }
        }
    }
}

#[test]
fn an_approval_on_one_instance_answers_the_long_poll_waiting_on_another() {
    on_pg(|pg| async move {
        let (a, b, org, user) = two(&pg).await;
        let key = new_key();
        let created = a.create_code(&body_for(&key, "box")).await;
        let code = vpd_proto::normalize_code(&created.code).unwrap();
        let started = std::time::Instant::now();
        let poll = {
            let (http, url, token) =
                (a.http.clone(), a.at(&format!("/api/pairing-codes/{}/status?wait=25", created.code)), created.status_token.expose().to_string());
            tokio::spawn(async move { http.get(url).header("X-Viewport-Pairing-Token", token).send().await.unwrap() })
        };
        tokio::time::sleep(Duration::from_millis(300)).await;
        b.state.approve_code(&code, &org.id, &user.id, &as_user(&user)).await.unwrap();
        let r = poll.await.unwrap();
        assert_eq!(r.status(), 200);
        assert!(matches!(r.json::<PairingStatus>().await.unwrap(), PairingStatus::Approved(_)));
        assert!(started.elapsed() < Duration::from_secs(20), "answered by the approval, not by the long poll's end");
    });
}

#[test]
fn a_revocation_on_one_instance_closes_the_connection_held_by_another() {
    on_pg(|pg| async move {
        let (a, b, org, user) = two(&pg).await;
        let key = new_key();
        let approved = a.pair(&key, &org, &user).await;
        let mut ws = connect(&a, &key, &approved).await;
        stream(&mut ws, &ulid::Ulid::new().to_string(), 3).await;
        // B shows the machine online although A holds the connection.
        let machines = b.state.online(vec![approved.runtime_target_id.clone()]).await;
        assert!(machines.contains(&approved.runtime_target_id), "online on every instance");
        b.state.revoke(&org.id, &approved.runtime_target_id, "revoked", &as_user(&user)).await.unwrap();
        assert_eq!(closed(&mut ws).await, vpd_proto::relay::close::INVALID_TOKEN);
    });
}

#[test]
fn a_lost_listen_connection_is_noticed_and_every_live_connection_checked_again() {
    on_pg(|pg| async move {
        let (a, _b, org, user) = two(&pg).await;
        let key = new_key();
        let approved = a.pair(&key, &org, &user).await;
        let mut ws = connect(&a, &key, &approved).await;
        // Every instance's LISTEN connection is cut; a revocation made meanwhile (by the admin
        // CLI's kind of process: a store of its own, no listener) must still close it.
        let db = a.db_path.display().to_string();
        let cut =
            pg.psql(&db, "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity WHERE application_name = 'viewport-server listen'").unwrap();
        assert!(cut.parse::<u32>().unwrap() >= 1, "the listeners were found: {cut}");
        let (w, t) = (org.id.clone(), approved.runtime_target_id.clone());
        tokio::task::spawn_blocking(move || {
            let cli = viewport_server::store::Store::connect(&db).unwrap();
            cli.revoke(&w, &t, "revoked", &viewport_server::roles::Actor::cli(), viewport_server::util::now()).unwrap();
        })
        .await
        .unwrap();
        assert_eq!(closed(&mut ws).await, vpd_proto::relay::close::INVALID_TOKEN);
    });
}

#[test]
fn one_live_connection_per_runtime_target_across_instances() {
    on_pg(|pg| async move {
        let (a, b, org, user) = two(&pg).await;
        let key = new_key();
        let approved = a.pair(&key, &org, &user).await;
        let mut old = connect(&a, &key, &approved).await;
        let mut new = connect(&b, &key, &approved).await;
        assert_eq!(closed(&mut old).await, vpd_proto::relay::close::REPLACED);
        stream(&mut new, &ulid::Ulid::new().to_string(), 2).await;
    });
}

#[test]
fn relay_tokens_verify_on_every_instance_and_across_a_key_rotation() {
    on_pg(|pg| async move {
        let (a, b, org, user) = two(&pg).await;
        let key = new_key();
        let approved = a.pair(&key, &org, &user).await;
        let r = a.relay_token(&approved).await;
        let before = r.json::<RelayToken>().await.unwrap().relay_token.expose().to_string();
        // Issued by A, accepted by B.
        let ws = connect_with(&b, &key, &approved, &before).await;
        drop(ws);
        let old_kid = a.state.keys.kid();
        let store = b.state.store.clone();
        let new_kid = tokio::task::spawn_blocking(move || viewport_server::keys::rotate(&store).unwrap()).await.unwrap();
        assert_ne!(new_kid, old_kid);
        // A hears of the rotation and signs with the new key; both keys verify everywhere.
        let deadline = tokio::time::Instant::now() + DEADLINE;
        while a.state.keys.kid() != new_kid {
            assert!(tokio::time::Instant::now() < deadline, "instance A never loaded the new key");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        let jwks: serde_json::Value = a.http.get(a.at(vpd_proto::paths::JWKS)).send().await.unwrap().json().await.unwrap();
        let kids: Vec<&str> = jwks["keys"].as_array().unwrap().iter().map(|k| k["kid"].as_str().unwrap()).collect();
        assert_eq!(kids, [new_kid.as_str(), old_kid.as_str()]);
        let _old_token_still_works = connect_with(&a, &key, &approved, &before).await;
        let after = a.relay_token(&approved).await.json::<RelayToken>().await.unwrap().relay_token.expose().to_string();
        assert_eq!(viewport_server::keys::token_kid(&after).as_deref(), Some(new_kid.as_str()));
        let _new_token_on_b = connect_with(&b, &key, &approved, &after).await;
    });
}

#[test]
fn pairing_limits_are_counted_once_across_instances() {
    on_pg(|pg| async move {
        let db = tokio::task::block_in_place(|| pg.database());
        let a = start_on(&db, |c| c.pairing_per_minute = 4).await;
        let b = start_on(&db, |c| c.pairing_per_minute = 4).await;
        let key = new_key();
        // Counters are per minute: start early in one, so all six land in the same.
        let second = viewport_server::util::now() % 60;
        if second > 45 {
            tokio::time::sleep(Duration::from_secs((61 - second) as u64)).await;
        }
        let mut statuses = Vec::new();
        for i in 0..6 {
            let s = if i % 2 == 0 { &a } else { &b };
            statuses.push(s.http.post(s.at("/api/pairing-codes")).json(&body_for(&key, "box")).send().await.unwrap().status().as_u16());
        }
        assert_eq!(statuses, [201, 201, 201, 201, 429, 429], "the limit is shared, never doubled");
    });
}

//! The relay WebSocket over a real socket with a real WebSocket client: handshake, close
//! codes, storing and acking, resume, replacement, live revocation, admin and pages.

mod common;

use base64::Engine;
use common::*;
use ed25519_dalek::{Signer, SigningKey};
use futures_util::{SinkExt, StreamExt};
use std::collections::BTreeMap;
use std::time::{Duration, Instant};
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};
use viewport_server::util;
use vpd_proto::pairing::Approved;
use vpd_proto::relay::{proof_message, DaemonMsg, FrameKind, RelayMsg};
use vpd_proto::runtime::{RelayClaims, RelayToken};

type Ws = WebSocketStream<MaybeTlsStream<tokio::net::TcpStream>>;

fn b64(b: &[u8]) -> String {
    base64::engine::general_purpose::STANDARD.encode(b)
}

async fn token_for(s: &Server, a: &Approved) -> String {
    let r = s.relay_token(a).await;
    assert_eq!(r.status(), 200);
    let t: RelayToken = r.json().await.unwrap();
    t.relay_token.expose().to_string()
}

/// Opens the WebSocket (no handshake messages yet).
async fn open(endpoint: &str, ws_id: &str, rt_id: &str, token: Option<&str>) -> Ws {
    open_with(endpoint, ws_id, rt_id, token, "&features=quota").await
}

/// `extra`: more query parameters; a daemon from before quotas sends no `features`.
async fn open_with(endpoint: &str, ws_id: &str, rt_id: &str, token: Option<&str>, extra: &str) -> Ws {
    let url = format!("{endpoint}?role=workspace-daemon&workspaceId={ws_id}&runtimeTargetId={rt_id}{extra}");
    let mut req = url.into_client_request().unwrap();
    if let Some(t) = token {
        req.headers_mut().insert("authorization", format!("Bearer {t}").parse().unwrap());
    }
    let (ws, resp) = tokio_tungstenite::connect_async(req).await.expect("the upgrade completes");
    assert_eq!(resp.status(), 101);
    ws
}

/// The next relay message (pings skipped); panics on close.
async fn next_msg(ws: &mut Ws) -> RelayMsg {
    loop {
        let m = tokio::time::timeout(Duration::from_secs(10), ws.next()).await.expect("a message in time");
        match m {
            Some(Ok(Message::Text(t))) => return serde_json::from_str(t.as_str()).unwrap(),
            Some(Ok(Message::Ping(_) | Message::Pong(_))) => continue,
            other => panic!("expected a relay message, got {other:?}"),
        }
    }
}

/// Reads until the close frame: (code, reason).
async fn closed(ws: &mut Ws, within: Duration) -> (u16, String) {
    let deadline = tokio::time::Instant::now() + within;
    loop {
        let m = tokio::time::timeout_at(deadline, ws.next()).await.expect("closed in time");
        match m {
            Some(Ok(Message::Close(Some(f)))) => return (u16::from(f.code), f.reason.as_str().to_string()),
            Some(Ok(Message::Close(None))) => return (1005, String::new()),
            Some(Ok(_)) => continue,
            Some(Err(e)) => panic!("connection failed without a close frame: {e}"),
            None => panic!("connection ended without a close frame"),
        }
    }
}

async fn send(ws: &mut Ws, m: &DaemonMsg) {
    ws.send(Message::Text(serde_json::to_string(m).unwrap().into())).await.unwrap();
}

async fn challenge(ws: &mut Ws) -> String {
    match next_msg(ws).await {
        RelayMsg::Challenge { nonce } => {
            assert_eq!(util::b64url_decode(&nonce).unwrap().len(), 32);
            nonce
        }
        other => panic!("expected a challenge, got {other:?}"),
    }
}

fn sign(key: &SigningKey, ws_id: &str, rt_id: &str, endpoint: &str, nonce: &str) -> DaemonMsg {
    let sig = key.sign(proof_message(ws_id, rt_id, endpoint, nonce).as_bytes());
    DaemonMsg::Proof { signature: b64url(&sig.to_bytes()) }
}

/// A daemon's whole handshake; returns the socket and the resume map.
async fn connect(s: &Server, key: &SigningKey, a: &Approved) -> (Ws, BTreeMap<String, u64>) {
    let token = token_for(s, a).await;
    let mut ws = open(&a.relay_endpoint, &a.workspace_id, &a.runtime_target_id, Some(&token)).await;
    let nonce = challenge(&mut ws).await;
    send(&mut ws, &sign(key, &a.workspace_id, &a.runtime_target_id, &a.relay_endpoint, &nonce)).await;
    match next_msg(&mut ws).await {
        RelayMsg::Ready { resume } => (ws, resume),
        other => panic!("expected ready, got {other:?}"),
    }
}

fn start_msg(id: &str) -> DaemonMsg {
    DaemonMsg::SessionStart {
        session_id: id.into(),
        agent: "claude".into(),
        directory: "proj/sub".into(),
        started_at: "2026-05-11T14:42:00.000Z".into(),
    }
}

fn frame(id: &str, seq: u64, data: &[u8]) -> DaemonMsg {
    DaemonMsg::Frame { session_id: id.into(), seq, ts: "2026-05-11T14:42:01.000Z".into(), kind: vpd_proto::relay::FrameKind::Output, data: b64(data) }
}

/// Reads acks until `session_id` is acked at `seq` (acks are cumulative).
async fn acked_to(ws: &mut Ws, session_id: &str, seq: u64) {
    loop {
        match next_msg(ws).await {
            RelayMsg::Ack { session_id: s, seq: n } if s == session_id && n >= seq => {
                assert_eq!(n, seq, "acked beyond what was sent");
                return;
            }
            RelayMsg::Ack { .. } => continue,
            other => panic!("expected an ack, got {other:?}"),
        }
    }
}

struct Setup {
    s: Server,
    org: viewport_server::store::Workspace,
    user: viewport_server::store::User,
    key: SigningKey,
    a: Approved,
}

async fn setup() -> Setup {
    setup_with(|_| {}).await
}

async fn setup_with(tweak: impl FnOnce(&mut viewport_server::Config)) -> Setup {
    let s = start_with(tweak).await;
    let org = s.org("Acme", "acme");
    let user = s.user("a@example.com", &[&org]);
    let key = new_key();
    let a = s.pair(&key, &org, &user).await;
    Setup { s, org, user, key, a }
}

fn sid() -> String {
    ulid::Ulid::new().to_string()
}

#[tokio::test]
async fn handshake_store_ack_duplicates_and_resume() {
    let Setup { s, org, key, a, .. } = setup().await;
    let (mut ws, resume) = connect(&s, &key, &a).await;
    assert!(resume.is_empty());
    assert!(s.state.relay.is_online(&a.runtime_target_id));

    let id = sid();
    send(&mut ws, &start_msg(&id)).await;
    acked_to(&mut ws, &id, 0).await;
    for seq in 1..=3 {
        send(&mut ws, &frame(&id, seq, format!("line {seq}\n").as_bytes())).await;
    }
    acked_to(&mut ws, &id, 3).await;
    let row = s.store().session(Some(&org.id), &id).unwrap().unwrap();
    assert_eq!((row.last_seq, row.frame_count, row.gap_count), (3, 3, 0));
    assert_eq!(row.machine_id, a.machine_id);
    assert_eq!(row.directory, "proj/sub");

    // Duplicates (a resend after a lost ack): acked, not stored twice. A duplicate start too.
    send(&mut ws, &start_msg(&id)).await;
    send(&mut ws, &frame(&id, 2, b"DUP")).await;
    send(&mut ws, &frame(&id, 3, b"DUP")).await;
    acked_to(&mut ws, &id, 3).await;
    send(&mut ws, &frame(&id, 4, b"line 4\n")).await;
    acked_to(&mut ws, &id, 4).await;
    let frames = s.store().session_frames(&id, 0, None, 100).unwrap();
    assert_eq!(frames.iter().map(|f| f.seq).collect::<Vec<_>>(), vec![1, 2, 3, 4]);
    assert_eq!(frames[1].data, b"line 2\n");
    assert_eq!(s.store().session(None, &id).unwrap().unwrap().frame_count, 4);

    // A gap frame is stored and counted.
    send(&mut ws, &DaemonMsg::Frame { session_id: id.clone(), seq: 5, ts: "t".into(), kind: vpd_proto::relay::FrameKind::Gap, data: b64(b"9-12") })
        .await;
    acked_to(&mut ws, &id, 5).await;
    assert_eq!(s.store().session(None, &id).unwrap().unwrap().gap_count, 1);

    // A second session, ended.
    let id2 = sid();
    send(&mut ws, &start_msg(&id2)).await;
    send(&mut ws, &frame(&id2, 1, b"x")).await;
    send(&mut ws, &DaemonMsg::SessionEnd { session_id: id2.clone(), seq: 2, reason: "exited".into(), exit_code: Some(3) }).await;
    acked_to(&mut ws, &id2, 2).await;
    let row2 = s.store().session(None, &id2).unwrap().unwrap();
    assert!(row2.ended_at.is_some());
    assert_eq!((row2.end_reason.as_deref(), row2.exit_code), (Some("exited"), Some(3)));
    // An end resent: acked, nothing changes.
    send(&mut ws, &DaemonMsg::SessionEnd { session_id: id2.clone(), seq: 2, reason: "exited".into(), exit_code: Some(3) }).await;
    acked_to(&mut ws, &id2, 2).await;
    ws.close(None).await.unwrap();

    // Reconnect: the resume map reflects what is stored (ended sessions within 24 h too).
    let (mut ws, resume) = connect(&s, &key, &a).await;
    assert_eq!(resume, BTreeMap::from([(id.clone(), 5), (id2.clone(), 2)]));
    // Resending from the resume point works.
    send(&mut ws, &frame(&id, 6, b"after reconnect")).await;
    acked_to(&mut ws, &id, 6).await;
    // Last seen is set by the relay connection.
    let m = &s.store().machines(&org.id).unwrap()[0];
    assert!(m.last_seen_at.is_some());
}

#[tokio::test]
async fn many_frames_in_one_burst_are_all_stored_and_acked() {
    let Setup { s, key, a, .. } = setup().await;
    let (mut ws, _) = connect(&s, &key, &a).await;
    let id = sid();
    let n = 20_000u64;
    let payload = vec![b'x'; 256];
    let t0 = Instant::now();
    ws.feed(Message::Text(serde_json::to_string(&start_msg(&id)).unwrap().into())).await.unwrap();
    for seq in 1..=n {
        ws.feed(Message::Text(serde_json::to_string(&frame(&id, seq, &payload)).unwrap().into())).await.unwrap();
    }
    ws.flush().await.unwrap();
    acked_to(&mut ws, &id, n).await;
    let dt = t0.elapsed();
    let build = if cfg!(debug_assertions) { "debug" } else { "release" };
    eprintln!("{n} frames of 256 bytes stored and acked in {dt:?} ({:.0} frames/s, {build} build)", n as f64 / dt.as_secs_f64());
    let row = s.store().session(None, &id).unwrap().unwrap();
    assert_eq!((row.last_seq, row.frame_count), (n, n));
}

#[tokio::test]
async fn protocol_violations_close_4400() {
    let Setup { s, key, a, .. } = setup().await;
    let id = sid();

    // Out of order: what came before is stored and acked, then 4400.
    let (mut ws, _) = connect(&s, &key, &a).await;
    send(&mut ws, &start_msg(&id)).await;
    send(&mut ws, &frame(&id, 1, b"a")).await;
    acked_to(&mut ws, &id, 1).await;
    send(&mut ws, &frame(&id, 3, b"c")).await;
    assert_eq!(closed(&mut ws, Duration::from_secs(5)).await.0, 4400);
    assert_eq!(s.store().session(None, &id).unwrap().unwrap().last_seq, 1);

    let cases: Vec<String> = vec![
        "{not json".into(),
        r#"{"type":"teleport","sessionId":"x"}"#.into(),
        r#"{"type":"session_start","sessionId":"not-a-ulid","agent":"a","directory":"d","startedAt":"t"}"#.into(),
        // A frame for a session that was never started.
        format!(r#"{{"type":"frame","sessionId":"{}","seq":1,"ts":"t","kind":"output","data":""}}"#, sid()),
    ];
    for text in cases {
        let (mut ws, _) = connect(&s, &key, &a).await;
        ws.send(Message::Text(text.clone().into())).await.unwrap();
        assert_eq!(closed(&mut ws, Duration::from_secs(5)).await.0, 4400, "{text}");
    }
    assert_eq!(s.store().session(None, &id).unwrap().unwrap().last_seq, 1, "nothing bad was stored");
}

/// SPEC A2/A11: a message that breaks a text or size rule is refused for its session alone;
/// the connection stays open, other sessions go on, and the session continues once the
/// refused seq comes again (cut down, or as a gap).
#[tokio::test]
async fn rule_breaking_messages_are_refused_per_session_and_the_connection_stays() {
    let Setup { s, key, a, .. } = setup().await;
    let (x, y) = (sid(), sid());
    let (mut ws, _) = connect(&s, &key, &a).await;
    let start = |id: &str, agent: &str| DaemonMsg::SessionStart {
        session_id: id.into(),
        agent: agent.into(),
        directory: "api".into(),
        started_at: "2026-05-11T14:42:00Z".into(),
    };
    let refused = |m: RelayMsg, id: &str, want: u64| match m {
        RelayMsg::Refused { session_id, seq, reason } if session_id == id && seq == want => reason,
        other => panic!("expected refused {id} {want}, got {other:?}"),
    };
    // An agent of 100 "€" (300 bytes) and an escape sequence: refused, connection open.
    send(&mut ws, &start(&x, &"€".repeat(100))).await;
    assert!(refused(next_msg(&mut ws).await, &x, 0).contains("more than the 256"));
    send(&mut ws, &frame(&x, 1, b"held back")).await;
    send(&mut ws, &start(&y, "claude\u{1b}[2J")).await;
    assert!(refused(next_msg(&mut ws).await, &y, 0).contains("control"));
    // The replacement, then what came after it again.
    send(&mut ws, &start(&x, &"€".repeat(85))).await;
    acked_to(&mut ws, &x, 0).await;
    send(&mut ws, &frame(&x, 1, b"held back")).await;
    acked_to(&mut ws, &x, 1).await;
    // A frame that is not base64: refused; its gap goes in.
    let bad = DaemonMsg::Frame { session_id: x.clone(), seq: 2, ts: "t".into(), kind: FrameKind::Output, data: "***".into() };
    send(&mut ws, &bad).await;
    refused(next_msg(&mut ws).await, &x, 2);
    let gap = DaemonMsg::Frame { session_id: x.clone(), seq: 2, ts: "t".into(), kind: FrameKind::Gap, data: b64(b"2-2") };
    send(&mut ws, &gap).await;
    acked_to(&mut ws, &x, 2).await;
    // A reason of 150 "é" (300 bytes): refused; the end without it is stored.
    let end = |reason: String| DaemonMsg::SessionEnd { session_id: x.clone(), seq: 3, reason, exit_code: Some(0) };
    send(&mut ws, &end("é".repeat(150))).await;
    refused(next_msg(&mut ws).await, &x, 3);
    send(&mut ws, &end(String::new())).await;
    acked_to(&mut ws, &x, 3).await;
    let row = s.store().session(None, &x).unwrap().unwrap();
    assert_eq!((row.agent.as_str(), row.last_seq), ("€".repeat(85).as_str(), 3));
    assert!(s.store().session(None, &y).unwrap().is_none(), "nothing of the refused start was stored");
}

#[tokio::test]
async fn a_session_id_of_another_target_is_refused() {
    let Setup { s, org, user, key, a } = setup().await;
    let other = s.org("Other", "other");
    s.store().add_member(&other.id, &user.id, 0).unwrap();
    let key2 = new_key();
    let b = s.pair(&key2, &other, &user).await;
    let key3 = new_key();
    let c = s.pair(&key3, &org, &user).await;

    let id = sid();
    let (mut ws, _) = connect(&s, &key, &a).await;
    send(&mut ws, &start_msg(&id)).await;
    send(&mut ws, &frame(&id, 1, b"secret of acme")).await;
    acked_to(&mut ws, &id, 1).await;

    for (k, p) in [(&key2, &b), (&key3, &c)] {
        let (mut ws2, resume) = connect(&s, k, p).await;
        assert!(resume.is_empty(), "another target never sees this session");
        send(&mut ws2, &start_msg(&id)).await;
        assert_eq!(closed(&mut ws2, Duration::from_secs(5)).await.0, 4400);
        let (mut ws2, _) = connect(&s, k, p).await;
        send(&mut ws2, &frame(&id, 2, b"injected")).await;
        assert_eq!(closed(&mut ws2, Duration::from_secs(5)).await.0, 4400);
    }
    let row = s.store().session(None, &id).unwrap().unwrap();
    assert_eq!((row.workspace_id.as_str(), row.last_seq), (org.id.as_str(), 1));
    assert!(s.store().session(Some(&other.id), &id).unwrap().is_none());
}

#[tokio::test]
async fn handshake_refusals_are_close_codes() {
    let Setup { s, org, user, key, a } = setup_with(|c| c.proof_timeout = Duration::from_millis(300)).await;
    let token = token_for(&s, &a).await;
    let ep = a.relay_endpoint.clone();

    // Wrong signature (another key).
    let mut ws = open(&ep, &a.workspace_id, &a.runtime_target_id, Some(&token)).await;
    let nonce = challenge(&mut ws).await;
    send(&mut ws, &sign(&new_key(), &a.workspace_id, &a.runtime_target_id, &ep, &nonce)).await;
    assert_eq!(closed(&mut ws, Duration::from_secs(5)).await, (4401, "invalid".into()));

    // A proof made for another relay endpoint, and one for another org's target (replayed).
    let other = s.org("Other", "other");
    s.store().add_member(&other.id, &user.id, 0).unwrap();
    let b = s.pair(&key, &other, &user).await; // same key on purpose: only the message differs
    for (w, r, e) in [
        (a.workspace_id.as_str(), a.runtime_target_id.as_str(), "wss://elsewhere.example/ws"),
        (b.workspace_id.as_str(), b.runtime_target_id.as_str(), ep.as_str()),
    ] {
        let mut ws = open(&ep, &a.workspace_id, &a.runtime_target_id, Some(&token)).await;
        let nonce = challenge(&mut ws).await;
        send(&mut ws, &sign(&key, w, r, e, &nonce)).await;
        assert_eq!(closed(&mut ws, Duration::from_secs(5)).await, (4401, "invalid".into()));
    }
    // A proof for an older nonce (replayed from an earlier connection).
    let mut ws = open(&ep, &a.workspace_id, &a.runtime_target_id, Some(&token)).await;
    let old_nonce = challenge(&mut ws).await;
    drop(ws);
    let mut ws = open(&ep, &a.workspace_id, &a.runtime_target_id, Some(&token)).await;
    let _ = challenge(&mut ws).await;
    send(&mut ws, &sign(&key, &a.workspace_id, &a.runtime_target_id, &ep, &old_nonce)).await;
    assert_eq!(closed(&mut ws, Duration::from_secs(5)).await, (4401, "invalid".into()));

    // No proof in time.
    let mut ws = open(&ep, &a.workspace_id, &a.runtime_target_id, Some(&token)).await;
    let _ = challenge(&mut ws).await;
    assert_eq!(closed(&mut ws, Duration::from_secs(5)).await.0, 4408);

    // No token, garbage token, a token of org B's target used for org A's query.
    let mut ws = open(&ep, &a.workspace_id, &a.runtime_target_id, None).await;
    assert_eq!(closed(&mut ws, Duration::from_secs(5)).await, (4401, "invalid".into()));
    let mut ws = open(&ep, &a.workspace_id, &a.runtime_target_id, Some("abc.def.ghi")).await;
    assert_eq!(closed(&mut ws, Duration::from_secs(5)).await, (4401, "invalid".into()));
    let token_b = token_for(&s, &b).await;
    let mut ws = open(&ep, &a.workspace_id, &a.runtime_target_id, Some(&token_b)).await;
    assert_eq!(closed(&mut ws, Duration::from_secs(5)).await, (4401, "invalid".into()));

    // Expired beyond the leeway; just expired within the leeway still works.
    let claims = |exp: i64| RelayClaims {
        iss: s.url.clone(),
        aud: "viewport-relay".into(),
        sub: a.runtime_target_id.clone(),
        workspace_id: a.workspace_id.clone(),
        machine_id: a.machine_id.clone(),
        jti: sid(),
        iat: exp - 600,
        exp,
        public_key: b64url(key.verifying_key().as_bytes()),
    };
    let expired = s.state.keys.sign(&claims(util::now() - 120)).unwrap();
    let mut ws = open(&ep, &a.workspace_id, &a.runtime_target_id, Some(&expired)).await;
    assert_eq!(closed(&mut ws, Duration::from_secs(5)).await, (4401, "expired".into()));
    let lenient = s.state.keys.sign(&claims(util::now() - 20)).unwrap();
    let mut ws = open(&ep, &a.workspace_id, &a.runtime_target_id, Some(&lenient)).await;
    let _ = challenge(&mut ws).await;
    // A token with the wrong audience.
    let mut c = claims(util::now() + 300);
    c.aud = "something-else".into();
    let wrong_aud = s.state.keys.sign(&c).unwrap();
    let mut ws = open(&ep, &a.workspace_id, &a.runtime_target_id, Some(&wrong_aud)).await;
    assert_eq!(closed(&mut ws, Duration::from_secs(5)).await, (4401, "invalid".into()));

    // Unknown workspace: 4403.
    let ghost = sid();
    let mut c = claims(util::now() + 300);
    c.workspace_id = ghost.clone();
    let t = s.state.keys.sign(&c).unwrap();
    let mut ws = open(&ep, &ghost, &a.runtime_target_id, Some(&t)).await;
    assert_eq!(closed(&mut ws, Duration::from_secs(5)).await, (4403, "workspace_not_found".into()));

    // Revoked at connect (token minted before the revocation).
    s.store().revoke(&org.id, &a.machine_id, "revoked", &viewport_server::roles::Actor::cli(), util::now()).unwrap();
    let mut ws = open(&ep, &a.workspace_id, &a.runtime_target_id, Some(&token)).await;
    assert_eq!(closed(&mut ws, Duration::from_secs(5)).await, (4401, "revoked".into()));
    assert!(s.state.relay.is_empty());
}

#[tokio::test]
async fn revocation_closes_live_connections_within_a_second() {
    let Setup { s, org, user, key, a } = setup().await;

    // In-process (the Machines page's path).
    let (mut ws, _) = connect(&s, &key, &a).await;
    let t0 = Instant::now();
    assert!(s.state.revoke(&org.id, &a.machine_id, "revoked", &viewport_server::roles::Actor::cli()).await.unwrap());
    assert_eq!(closed(&mut ws, Duration::from_secs(1)).await, (4401, "revoked".into()));
    assert!(t0.elapsed() < Duration::from_secs(1));

    // Through the Machines page over HTTP (Revoke button with CSRF).
    let key3 = new_key();
    let c = s.pair(&key3, &org, &user).await;
    let (mut ws, _) = connect(&s, &key3, &c).await;
    let cookie = sign_in(&s, "a@example.com").await;
    let html = get(&s, "/orgs/acme/machines", &cookie).await.text().await.unwrap();
    let csrf = csrf_in(&html);
    let t0 = Instant::now();
    let r = s
        .http
        .post(s.at("/orgs/acme/machines/revoke"))
        .header("cookie", &cookie)
        .form(&[("csrf", csrf.as_str()), ("machine_id", c.machine_id.as_str())])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 303);
    assert_eq!(closed(&mut ws, Duration::from_secs(1)).await, (4401, "revoked".into()));
    assert!(t0.elapsed() < Duration::from_secs(1));

    // From another process's connection (the admin CLI): the poller notices.
    let key2 = new_key();
    let b = s.pair(&key2, &org, &user).await;
    let (mut ws, _) = connect(&s, &key2, &b).await;
    let cli = viewport_server::store::Store::open(&s.db_path).unwrap();
    let t0 = Instant::now();
    assert!(cli.revoke(&org.id, &b.runtime_target_id, "revoked", &viewport_server::roles::Actor::cli(), util::now()).unwrap());
    assert_eq!(closed(&mut ws, Duration::from_secs(1)).await, (4401, "revoked".into()));
    eprintln!("revoked from another connection → closed in {:?}", t0.elapsed());
}

#[tokio::test]
async fn member_removal_closes_only_that_members_connections() {
    let s = start().await;
    let one = s.org("One", "one");
    let two = s.org("Two", "two");
    let alice = s.user("alice@example.com", &[&one, &two]);
    let bob = s.user("bob@example.com", &[&one]);
    let (ka, kb, kc) = (new_key(), new_key(), new_key());
    let alice_one = s.pair(&ka, &one, &alice).await;
    let alice_two = s.pair(&kb, &two, &alice).await;
    let bob_one = s.pair(&kc, &one, &bob).await;
    let (mut w1, _) = connect(&s, &ka, &alice_one).await;
    let (mut w2, _) = connect(&s, &kb, &alice_two).await;
    let (mut w3, _) = connect(&s, &kc, &bob_one).await;

    // Alice, the first member, owns One; a second owner lets her be removed.
    s.store().set_role(&one.id, &bob.id, viewport_server::roles::Role::Owner, &viewport_server::roles::Actor::cli(), 0).unwrap();
    assert_eq!(s.state.remove_member(&one.id, &alice.id, &viewport_server::roles::Actor::cli()).await.unwrap(), 1);
    assert_eq!(closed(&mut w1, Duration::from_secs(1)).await, (4401, "revoked".into()));
    // The others stay connected and working.
    tokio::time::sleep(Duration::from_millis(700)).await;
    for (ws, _a) in [(&mut w2, &alice_two), (&mut w3, &bob_one)] {
        let id = sid();
        send(ws, &start_msg(&id)).await;
        acked_to(ws, &id, 0).await;
    }
    assert!(s.state.relay.is_online(&alice_two.runtime_target_id));
    assert!(s.state.relay.is_online(&bob_one.runtime_target_id));
    assert!(!s.state.relay.is_online(&alice_one.runtime_target_id));
}

#[tokio::test]
async fn a_newer_connection_replaces_the_older() {
    let Setup { s, key, a, .. } = setup().await;
    let (mut old, _) = connect(&s, &key, &a).await;
    let (mut new, _) = connect(&s, &key, &a).await;
    assert_eq!(closed(&mut old, Duration::from_secs(2)).await.0, 4409);
    let id = sid();
    send(&mut new, &start_msg(&id)).await;
    acked_to(&mut new, &id, 0).await;
    assert_eq!(s.state.relay.len(), 1);
    // An unauthenticated newcomer does not displace anyone.
    let mut bad = open(&a.relay_endpoint, &a.workspace_id, &a.runtime_target_id, Some("nope")).await;
    assert_eq!(closed(&mut bad, Duration::from_secs(2)).await.0, 4401);
    send(&mut new, &frame(&id, 1, b"still here")).await;
    acked_to(&mut new, &id, 1).await;
}

#[tokio::test]
async fn oversized_messages_close_1009() {
    let Setup { s, key, a, .. } = setup().await;
    let (mut ws, _) = connect(&s, &key, &a).await;
    let id = sid();
    send(&mut ws, &start_msg(&id)).await;
    acked_to(&mut ws, &id, 0).await;
    let big = frame(&id, 1, &vec![b'x'; vpd_proto::relay::MAX_MESSAGE]);
    let _ = ws.send(Message::Text(serde_json::to_string(&big).unwrap().into())).await;
    assert_eq!(closed(&mut ws, Duration::from_secs(5)).await.0, 1009);
    assert_eq!(s.store().session(None, &id).unwrap().unwrap().last_seq, 0);
}

#[tokio::test]
async fn the_rate_limit_closes_1008() {
    let Setup { s, key, a, .. } = setup_with(|c| {
        c.relay_rate_per_sec = 10;
        c.relay_burst = 20;
    })
    .await;
    let (mut ws, _) = connect(&s, &key, &a).await;
    let id = sid();
    send(&mut ws, &start_msg(&id)).await;
    for seq in 1..=100 {
        if ws.send(Message::Text(serde_json::to_string(&frame(&id, seq, b"x")).unwrap().into())).await.is_err() {
            break;
        }
    }
    assert_eq!(closed(&mut ws, Duration::from_secs(5)).await.0, 1008);
    let stored = s.store().session(None, &id).unwrap().unwrap().last_seq;
    assert!((15..=25).contains(&stored), "about the burst was stored: {stored}");
}

#[tokio::test]
async fn shutdown_closes_with_1001() {
    let Setup { s, key, a, .. } = setup().await;
    let (mut ws, _) = connect(&s, &key, &a).await;
    let st = s.state.clone();
    let stop = tokio::spawn(async move { st.shutdown_relay(Duration::from_secs(2)).await });
    assert_eq!(closed(&mut ws, Duration::from_secs(2)).await.0, 1001);
    stop.await.unwrap();
    assert!(s.state.relay.is_empty());
}

/// A session with output (including bytes that are not UTF-8) recorded through the relay.
async fn record(s: &Server, key: &SigningKey, a: &Approved, chunks: &[&[u8]]) -> String {
    let (mut ws, _) = connect(s, key, a).await;
    let id = sid();
    send(&mut ws, &start_msg(&id)).await;
    let mut seq = 0;
    for c in chunks {
        seq += 1;
        send(&mut ws, &frame(&id, seq, c)).await;
        // An input frame in between: not part of the output.
        seq += 1;
        send(
            &mut ws,
            &DaemonMsg::Frame { session_id: id.clone(), seq, ts: "t".into(), kind: vpd_proto::relay::FrameKind::Input, data: b64(b"INPUT") },
        )
        .await;
    }
    acked_to(&mut ws, &id, seq).await;
    id
}

fn admin(db: &std::path::Path, args: &[&str]) -> std::process::Output {
    std::process::Command::new(env!("CARGO_BIN_EXE_viewport-server")).arg("admin").args(args).arg("--db").arg(db).output().unwrap()
}

#[tokio::test]
async fn admin_session_list_and_show_raw_are_byte_exact() {
    let Setup { s, key, a, .. } = setup().await;
    let chunks: [&[u8]; 3] = [b"\x1b[32mhello\x1b[0m\r\n", b"\xff\xfe\x00raw\x80", "é\n".as_bytes()];
    let id = record(&s, &key, &a, &chunks).await;
    let expected: Vec<u8> = chunks.concat();

    let db = s.db_path.clone();
    let id2 = id.clone();
    let (list, list_human, raw, show, show_json, missing, other) = tokio::task::spawn_blocking(move || {
        (
            admin(&db, &["session", "list", "--org", "acme", "--json"]),
            admin(&db, &["session", "list", "--org", "acme"]),
            admin(&db, &["session", "show", &id2, "--raw"]),
            admin(&db, &["session", "show", &id2]),
            admin(&db, &["session", "show", &id2, "--json"]),
            admin(&db, &["session", "show", "01ARZ3NDEKTSV4RRFFQ69G5FAV"]),
            admin(&db, &["session", "list", "--org", "nope"]),
        )
    })
    .await
    .unwrap();
    assert!(list.status.success(), "{}", String::from_utf8_lossy(&list.stderr));
    let j: serde_json::Value = serde_json::from_slice(&list.stdout).unwrap();
    let row = &j[0];
    assert_eq!(row["id"], id);
    assert_eq!(row["machine_id"], a.machine_id);
    assert_eq!(row["machine_name"], "box");
    assert_eq!(row["agent"], "claude");
    assert_eq!(row["directory"], "proj/sub");
    assert_eq!(row["frame_count"], 6);
    assert_eq!(row["gap_count"], 0);
    assert!(row["ended_at"].is_null() && row["started_at"].is_string());
    for k in ["end_reason", "exit_code"] {
        assert!(row.get(k).is_some(), "{k}");
    }
    assert!(String::from_utf8_lossy(&list_human.stdout).contains(&id));

    assert!(raw.status.success());
    assert_eq!(raw.stdout, expected, "--raw is byte-exact");

    let text = String::from_utf8(show.stdout).unwrap();
    assert!(text.contains(&id) && text.contains("claude") && text.contains("hello"), "{text}");
    assert!(!text.contains('\x1b'), "escapes stripped in the readable view");
    let j: serde_json::Value = serde_json::from_slice(&show_json.stdout).unwrap();
    assert_eq!(j["session"]["id"], id);
    assert_eq!(base64::engine::general_purpose::STANDARD.decode(j["output_base64"].as_str().unwrap()).unwrap(), expected);

    assert!(!missing.status.success());
    assert!(String::from_utf8_lossy(&missing.stderr).contains("session list"));
    assert!(!other.status.success());
}

async fn get(s: &Server, path: &str, cookie: &str) -> reqwest::Response {
    s.http.get(s.at(path)).header("cookie", cookie).send().await.unwrap()
}

#[tokio::test]
async fn session_pages_show_output_to_members_only() {
    let Setup { s, org, key, a, .. } = setup().await;
    let other = s.org("Other", "other");
    s.user("stranger@example.com", &[&other]);
    let id = record(&s, &key, &a, &[b"\x1b[1mBold <script>alert(1)</script>\x1b[0m\r\n", b"second line\n"]).await;
    let member = sign_in(&s, "a@example.com").await;
    let stranger = sign_in(&s, "stranger@example.com").await;

    let r = get(&s, "/orgs/acme/sessions", &member).await;
    assert_eq!(r.status(), 200);
    let html = r.text().await.unwrap();
    assert!(html.contains(&id) && html.contains("box") && html.contains("claude") && html.contains("proj/sub"), "{html}");
    assert!(html.contains("live"));

    let r = get(&s, &format!("/orgs/acme/sessions/{id}"), &member).await;
    assert_eq!(r.status(), 200);
    let html = r.text().await.unwrap();
    assert!(html.contains(r#"<span class="tb">Bold &lt;script&gt;alert(1)&lt;/script&gt;</span>"#), "{html}");
    assert!(html.contains("</span>\nsecond line\n"), "{html}");
    assert!(!html.contains("<script>alert") && !html.contains('\x1b'));
    assert!(html.contains(r#"src="/session.js""#), "live updates by a same-origin script");
    assert!(!html.contains("INPUT"), "input frames are not shown as output");

    let js = s.http.get(s.at("/session.js")).send().await.unwrap();
    assert_eq!(js.status(), 200);
    assert!(js.headers()["content-type"].to_str().unwrap().starts_with("text/javascript"));

    // A page that has shown up to seq 1 gets the whole screen as styled runs; one that is up
    // to date gets "nothing changed".
    let r = get(&s, &format!("/orgs/acme/sessions/{id}/frames?from=0&after=1"), &member).await;
    assert_eq!(r.status(), 200);
    let j: serde_json::Value = r.json().await.unwrap();
    assert_eq!(j["changed"], true);
    assert_eq!(j["lines"][0][0]["text"], "Bold <script>alert(1)</script>", "JSON carries text; the page sets it with textContent");
    assert_eq!(j["lines"][0][0]["c"], "tb");
    assert_eq!(j["lines"][1][0]["text"], "second line");
    assert_eq!(j["next"], 4);
    assert_eq!(j["ended"], false);
    let r = get(&s, &format!("/orgs/acme/sessions/{id}/frames?from=0&after=4"), &member).await;
    let j: serde_json::Value = r.json().await.unwrap();
    assert_eq!((j["changed"].as_bool(), j["next"].as_u64(), j.get("lines")), (Some(false), Some(4), None));

    // Tenancy: 404 for a non-member, and for this session under another org.
    for path in ["/orgs/acme/sessions".to_string(), format!("/orgs/acme/sessions/{id}"), format!("/orgs/acme/sessions/{id}/frames?after=0")] {
        assert_eq!(get(&s, &path, &stranger).await.status(), 404, "{path}");
    }
    for path in [format!("/orgs/other/sessions/{id}"), format!("/orgs/other/sessions/{id}/frames?after=0")] {
        assert_eq!(get(&s, &path, &stranger).await.status(), 404, "{path}");
    }
    let r = get(&s, "/orgs/other/sessions", &stranger).await;
    assert!(!r.text().await.unwrap().contains(&id));

    // Machines page: online while connected, with last seen.
    let (_ws, _) = connect(&s, &key, &a).await;
    let html = get(&s, "/orgs/acme/machines", &member).await.text().await.unwrap();
    assert!(html.contains("online"), "{html}");
    let _ = org;
}

#[tokio::test]
async fn the_session_page_is_a_screen_fed_across_batches_and_resizes() {
    let Setup { s, key, a, .. } = setup().await;
    let member = sign_in(&s, "a@example.com").await;
    let (mut ws, _) = connect(&s, &key, &a).await;
    let id = sid();
    send(&mut ws, &start_msg(&id)).await;
    let resize = |seq: u64, size: &[u8]| DaemonMsg::Frame {
        session_id: id.clone(),
        seq,
        ts: "t".into(),
        kind: vpd_proto::relay::FrameKind::Resize,
        data: b64(size),
    };
    let long = "w".repeat(100);
    // A colour sequence split across frames, a progress line overwritten by carriage returns,
    // and a 100-column line on a screen resized to 120 columns.
    send(&mut ws, &resize(1, b"120x30")).await;
    send(&mut ws, &frame(&id, 2, b"build \x1b[3")).await;
    send(&mut ws, &frame(&id, 3, b"2mok\x1b[0m 10%\r")).await;
    acked_to(&mut ws, &id, 3).await;
    let page = get(&s, &format!("/orgs/acme/sessions/{id}"), &member).await.text().await.unwrap();
    assert!(page.contains(r#"build <span class="f2">ok</span> 10%"#), "{page}");
    assert!(page.contains(r#"data-next="3""#) && page.contains(r#"data-from="0""#));
    // The next poll continues the same screen: the carriage return lets "done" overwrite.
    send(&mut ws, &frame(&id, 4, format!("done        \r\n{long}\r\n").as_bytes())).await;
    acked_to(&mut ws, &id, 4).await;
    let j: serde_json::Value = get(&s, &format!("/orgs/acme/sessions/{id}/frames?from=0&after=3"), &member).await.json().await.unwrap();
    let lines: Vec<String> =
        j["lines"].as_array().unwrap().iter().map(|l| l.as_array().unwrap().iter().map(|r| r["text"].as_str().unwrap()).collect()).collect();
    assert_eq!(lines, vec!["done".to_string(), long.clone()], "one 100-column line at 120 columns");
    // The admin CLI prints the same screen as text.
    let o = admin(&s.db_path, &["session", "show", &id]);
    let text = String::from_utf8(o.stdout).unwrap();
    assert!(text.ends_with(&format!("done\n{long}\n")), "{text}");
}

#[tokio::test]
async fn the_admin_cli_escapes_stored_text_it_prints() {
    // Rows written before the text rules existed (or by hand) may hold escape sequences.
    let Setup { s, key, a, .. } = setup().await;
    let id = record(&s, &key, &a, &[b"out\r\n"]).await;
    let db = rusqlite::Connection::open(&s.db_path).unwrap();
    db.execute("UPDATE relay_sessions SET agent = ?1, directory = ?2", ["claude\x1b]0;pwned\x07", "/tmp/\x1b[2J\u{9b}x"]).unwrap();
    db.execute("UPDATE machines SET name = ?1", ["box\x1b[31m"]).unwrap();
    db.execute("UPDATE relay_sessions SET ended_at = 1, end_reason = ?1", ["exited\x1b[2J\u{202e}"]).unwrap();
    for args in [vec!["session", "list", "--org", "acme"], vec!["session", "show", id.as_str()], vec!["machine", "list", "--org", "acme"]] {
        let o = admin(&s.db_path, &args);
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
        let out = String::from_utf8(o.stdout).unwrap();
        assert!(!out.contains('\u{202e}'), "{args:?} printed a bidi override: {out:?}");
        assert!(!out.chars().any(|c| c.is_control() && c != '\n'), "{args:?} printed a control character: {out:?}");
        assert!(out.contains(r"\u{1b}"), "{args:?}: the escape is shown, not run: {out}");
    }
    // --raw alone prints frame bytes unchanged.
    let raw = admin(&s.db_path, &["session", "show", &id, "--raw"]);
    assert_eq!(raw.stdout, b"out\r\n");
}

// ---- quotas (issue 8 item 6, SPEC A8) -------------------------------------------------------

#[tokio::test]
async fn over_its_write_budget_a_machine_gets_paced_acks_and_throttle_notes_and_another_org_does_not() {
    use viewport_server::quota::WriteBudget;
    // 1 KiB per second for each machine; the org budgets are far away.
    let Setup { s, key, a, .. } = setup_with(|c| c.write_budget = WriteBudget { machine_per_min: 60 * 1024, org_per_min: 1 << 30 }).await;
    let other = s.org("Other", "other");
    let bob = s.user("b@example.com", &[&other]);
    let kb = new_key();
    let b = s.pair(&kb, &other, &bob).await;
    let (mut ws, _) = connect(&s, &key, &a).await;
    let (mut wb, _) = connect(&s, &kb, &b).await;

    // A minute's budget at once, then 5 KiB more: about five seconds of debt.
    let id = sid();
    send(&mut ws, &start_msg(&id)).await;
    for seq in 1..=4 {
        send(&mut ws, &frame(&id, seq, &[b'x'; 15 * 1024])).await;
    }
    acked_to(&mut ws, &id, 4).await;
    send(&mut ws, &frame(&id, 5, &[b'y'; 5 * 1024])).await;
    let first = next_msg(&mut ws).await;
    let RelayMsg::Throttle { retry_after_ms } = first else { panic!("expected a throttle note before the ack, got {first:?}") };
    assert!((1..=6000).contains(&retry_after_ms), "{retry_after_ms}");

    // Meanwhile another org's machine is acked at once, with no throttle.
    let other_id = sid();
    send(&mut wb, &start_msg(&other_id)).await;
    send(&mut wb, &frame(&other_id, 1, b"hello")).await;
    acked_to(&mut wb, &other_id, 1).await;

    // The ack of frame 5 comes once the debt is paid, with a note at least every 5 s before.
    let mut notes = 1;
    loop {
        match next_msg(&mut ws).await {
            RelayMsg::Throttle { .. } => notes += 1,
            RelayMsg::Ack { session_id, seq } if session_id == id => {
                assert_eq!(seq, 5);
                break;
            }
            other => panic!("unexpected {other:?}"),
        }
    }
    assert!(notes >= 2, "five seconds of debt means a note at once and another within four seconds ({notes})");
    // Everything was stored, nothing dropped.
    let frames = s.store().session_frames(&id, 0, None, 100).unwrap();
    assert_eq!(frames.iter().map(|f| f.seq).collect::<Vec<_>>(), vec![1, 2, 3, 4, 5]);
}

#[tokio::test]
async fn over_the_stored_quota_new_sessions_are_refused_one_by_one_and_the_rest_goes_on() {
    use viewport_server::store::StoredQuota;
    let Setup { s, org, user, key, a } = setup_with(|c| c.stored_quota = StoredQuota { machine_bytes: 1000, org_bytes: 1500 }).await;
    let (mut ws, _) = connect(&s, &key, &a).await;
    // Under the quota a session starts, and keeps going past it: the quota is checked when a
    // session starts.
    let running = sid();
    send(&mut ws, &start_msg(&running)).await;
    send(&mut ws, &frame(&running, 1, &[b'x'; 2000])).await;
    acked_to(&mut ws, &running, 1).await;

    let refused = sid();
    send(&mut ws, &start_msg(&refused)).await;
    assert_eq!(next_msg(&mut ws).await, RelayMsg::SessionRefused { session_id: refused.clone(), error: "quota_exceeded".into() });
    // A late frame of the refused session is ignored; the connection and the other session go on.
    send(&mut ws, &frame(&refused, 1, b"late")).await;
    send(&mut ws, &frame(&running, 2, b"more")).await;
    acked_to(&mut ws, &running, 2).await;
    // Also after a reconnect.
    drop(ws);
    let (mut ws, resume) = connect(&s, &key, &a).await;
    assert!(!resume.contains_key(&refused), "a refused session is not resumed");
    send(&mut ws, &frame(&refused, 2, b"later")).await;
    send(&mut ws, &frame(&running, 3, b"still")).await;
    acked_to(&mut ws, &running, 3).await;
    assert!(s.store().session(None, &refused).unwrap().is_none(), "nothing of it was stored");

    // The org's quota counts every machine: a second machine of the org is refused too.
    let k2 = new_key();
    let a2 = s.pair(&k2, &org, &user).await;
    let (mut w2, _) = connect(&s, &k2, &a2).await;
    let second = sid();
    send(&mut w2, &start_msg(&second)).await;
    assert!(matches!(next_msg(&mut w2).await, RelayMsg::SessionRefused { session_id, .. } if session_id == second));
}

#[tokio::test]
async fn retention_keeps_a_tombstone_so_a_late_frame_is_stored_after_a_gap() {
    let Setup { s, key, a, .. } = setup().await;
    let (mut ws, _) = connect(&s, &key, &a).await;
    let id = sid();
    send(&mut ws, &start_msg(&id)).await;
    for seq in 1..=3 {
        send(&mut ws, &frame(&id, seq, b"old output")).await;
    }
    acked_to(&mut ws, &id, 3).await;
    // The session never ended, and its last frame is older than the retention.
    assert_eq!(s.store().purge_stale_sessions(util::now() + 10, util::now()).unwrap(), 1);
    let frames = s.store().session_frames(&id, 0, None, 100).unwrap();
    assert_eq!(frames.len(), 1);
    assert_eq!((frames[0].seq, frames[0].kind.as_str(), frames[0].data.as_slice()), (3, "gap", b"1-3".as_slice()));
    // The daemon comes back with frame 4: stored after the gap, the connection stays.
    send(&mut ws, &frame(&id, 4, b"late output")).await;
    acked_to(&mut ws, &id, 4).await;
    let frames = s.store().session_frames(&id, 0, None, 100).unwrap();
    assert_eq!(frames.iter().map(|f| (f.seq, f.kind.clone())).collect::<Vec<_>>(), vec![(3, "gap".to_string()), (4, "output".to_string())]);
    let row = s.store().session(None, &id).unwrap().unwrap();
    assert_eq!((row.gap_count, row.frame_count, row.last_seq), (1, 2, 4));
    // A purged session is not purged again until it has new frames that grow old.
    assert_eq!(s.store().purge_stale_sessions(util::now() - 10, util::now()).unwrap(), 0);
}

// ---- benchmark (not a test: `scripts/bench-quota.sh` runs it, in release) ------------------

/// Milliseconds of `n` sequential GETs of `path`, sorted.
async fn page_latencies(s: &Server, path: &str, cookie: &str, n: usize) -> Vec<f64> {
    let mut out = Vec::with_capacity(n);
    for _ in 0..n {
        let t = Instant::now();
        let r = get(s, path, cookie).await;
        assert_eq!(r.status(), 200);
        let _ = r.bytes().await.unwrap();
        out.push(t.elapsed().as_secs_f64() * 1000.0);
    }
    out.sort_by(|a, b| a.partial_cmp(b).unwrap());
    out
}

fn pct(v: &[f64], q: f64) -> f64 {
    v[((v.len() - 1) as f64 * q).round() as usize]
}

/// One org's Sessions page, idle and while a machine of another org writes as fast as it can,
/// with the default write budget and with none (SPEC A8's goal: under 2× the idle median).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "a benchmark: scripts/bench-quota.sh"]
async fn bench_another_orgs_pages_while_one_machine_writes_flat_out() {
    use futures_util::StreamExt as _;
    use viewport_server::quota::WriteBudget;
    let n: usize = std::env::var("BENCH_REQUESTS").ok().and_then(|v| v.parse().ok()).unwrap_or(300);
    let mut rows = Vec::new();
    for (label, budget) in [
        ("default write budget (64 MiB/min per machine)", None),
        ("no write budget", Some(WriteBudget { machine_per_min: u64::MAX >> 4, org_per_min: u64::MAX >> 4 })),
    ] {
        let Setup { s, key, a, .. } = setup_with(|c| {
            if let Some(b) = budget {
                c.write_budget = b;
            }
        })
        .await;
        // The quiet org: a member, and a recorded session of a few hundred lines.
        let quiet = s.org("Quiet", "quiet");
        let q_user = s.user("q@example.com", &[&quiet]);
        let qk = new_key();
        let qa = s.pair(&qk, &quiet, &q_user).await;
        let lines: Vec<Vec<u8>> = (0..300).map(|i| format!("line {i} of the quiet session\r\n").into_bytes()).collect();
        let refs: Vec<&[u8]> = lines.iter().map(|l| l.as_slice()).collect();
        let quiet_session = record(&s, &qk, &qa, &refs).await;
        let cookie = sign_in(&s, "q@example.com").await;
        let page = format!("/orgs/quiet/sessions/{quiet_session}");
        let _ = page_latencies(&s, &page, &cookie, 20).await;
        let idle = page_latencies(&s, &page, &cookie, n).await;

        // The busy org's machine: 64 KiB frames, as fast as the socket takes them.
        let (ws, _) = connect(&s, &key, &a).await;
        let (mut tx, mut rx) = ws.split();
        let id = sid();
        tx.send(Message::Text(serde_json::to_string(&start_msg(&id)).unwrap().into())).await.unwrap();
        let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let (acks, notes) = (std::sync::Arc::new(std::sync::atomic::AtomicU64::new(0)), std::sync::Arc::new(std::sync::atomic::AtomicU64::new(0)));
        let reader = {
            let (acks, notes) = (acks.clone(), notes.clone());
            tokio::spawn(async move {
                while let Some(Ok(m)) = rx.next().await {
                    if let Message::Text(t) = m {
                        match serde_json::from_str::<RelayMsg>(t.as_str()) {
                            Ok(RelayMsg::Ack { seq, .. }) => acks.store(seq, std::sync::atomic::Ordering::Relaxed),
                            Ok(RelayMsg::Throttle { .. }) => {
                                notes.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                            }
                            _ => {}
                        }
                    }
                }
            })
        };
        let writer = {
            let stop = stop.clone();
            let id = id.clone();
            tokio::spawn(async move {
                let data = vec![b'z'; 64 * 1024];
                let mut seq = 0u64;
                while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                    seq += 1;
                    let text = serde_json::to_string(&frame(&id, seq, &data)).unwrap();
                    if tx.send(Message::Text(text.into())).await.is_err() {
                        break;
                    }
                }
                seq
            })
        };
        tokio::time::sleep(Duration::from_secs(2)).await;
        let t = Instant::now();
        let loaded = page_latencies(&s, &page, &cookie, n).await;
        let secs = t.elapsed().as_secs_f64();
        let acked_before = acks.load(std::sync::atomic::Ordering::Relaxed);
        stop.store(true, std::sync::atomic::Ordering::Relaxed);
        let sent = tokio::time::timeout(Duration::from_secs(30), writer).await.map(|r| r.unwrap_or(0)).unwrap_or(0);
        reader.abort();
        rows.push(format!(
            "| {label} | {:.2} | {:.2} | {:.2} | {:.2} | {:.2}× | {:.1} MiB/s stored ({} frames sent, {} throttle notes) |",
            pct(&idle, 0.5),
            pct(&idle, 0.9),
            pct(&loaded, 0.5),
            pct(&loaded, 0.9),
            pct(&loaded, 0.5) / pct(&idle, 0.5),
            acked_before as f64 * 64.0 / 1024.0 / (secs + 2.0),
            sent,
            notes.load(std::sync::atomic::Ordering::Relaxed),
        ));
    }
    println!("\n| busy machine | idle p50 ms | idle p90 ms | loaded p50 ms | loaded p90 ms | p50 ratio | busy machine |");
    println!("|---|---|---|---|---|---|---|");
    for r in rows {
        println!("{r}");
    }
}

#[tokio::test]
async fn a_daemon_from_before_quotas_is_paced_by_acks_alone_and_exempt_from_stored_quotas() {
    use viewport_server::quota::WriteBudget;
    use viewport_server::store::StoredQuota;
    let Setup { s, key, a, .. } = setup_with(|c| {
        c.write_budget = WriteBudget { machine_per_min: 60 * 1024, org_per_min: 1 << 30 };
        c.stored_quota = StoredQuota { machine_bytes: 10, org_bytes: 10 };
    })
    .await;
    // The handshake as an older vpd makes it: no `features`.
    let token = token_for(&s, &a).await;
    let mut ws = open_with(&a.relay_endpoint, &a.workspace_id, &a.runtime_target_id, Some(&token), "").await;
    let nonce = challenge(&mut ws).await;
    send(&mut ws, &sign(&key, &a.workspace_id, &a.runtime_target_id, &a.relay_endpoint, &nonce)).await;
    assert!(matches!(next_msg(&mut ws).await, RelayMsg::Ready { .. }));
    let id = sid();
    send(&mut ws, &start_msg(&id)).await;
    for seq in 1..=5 {
        send(&mut ws, &frame(&id, seq, &[b'x'; 15 * 1024])).await;
    }
    // Over budget and over quota, it hears only acks (an unknown message would break it).
    let second = sid();
    send(&mut ws, &start_msg(&second)).await;
    send(&mut ws, &frame(&second, 1, b"also stored")).await;
    let mut acked = BTreeMap::new();
    while acked.get(&id) != Some(&5) || acked.get(&second) != Some(&1) {
        match next_msg(&mut ws).await {
            RelayMsg::Ack { session_id, seq } => {
                acked.insert(session_id, seq);
            }
            other => panic!("an older daemon must hear only acks, got {other:?}"),
        }
    }
    assert!(s.store().session(None, &second).unwrap().is_some(), "exempt from the stored quota");
}

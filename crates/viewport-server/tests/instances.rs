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

#[test]
fn an_orgs_write_budget_is_divided_between_the_live_instances() {
    on_pg(|pg| async move {
        let (a, b, _org, _user) = two(&pg).await;
        let whole = a.state.config.write_budget;
        // Each instance counts the other through the heartbeats (every 5 s).
        let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
        while a.state.write_budget().org_per_min != whole.org_per_min / 2 || b.state.write_budget().org_per_min != whole.org_per_min / 2 {
            assert!(tokio::time::Instant::now() < deadline, "the instances never counted each other: {:?}", a.state.write_budget());
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        // A machine has one live connection, on one instance: its own budget stays whole.
        assert_eq!(a.state.write_budget().machine_per_min, whole.machine_per_min);
    });
}

/// The several-instances benchmark (docs/BENCHMARKS.md; `scripts/bench-instances.sh` runs it
/// in release): 100 simulated daemons × 3 sessions on SQLite, on PostgreSQL with one instance,
/// and with two (daemons split between them); ack latency at a steady rate and flat out;
/// database transactions per second with the 100 connections idle; an approval answering a
/// long poll, single revocations, and a member removal closing 90 connections at once.
mod bench {
    use super::*;
    use std::collections::VecDeque;
    use std::time::Instant;
    use viewport_server::quota::WriteBudget;
    use viewport_server::store::StoredQuota;

    const MACHINES: usize = 100;
    const SESSIONS: usize = 3;

    fn quantile(v: &mut [Duration], q: f64) -> f64 {
        v.sort();
        v.get(((v.len() as f64 - 1.0) * q).round() as usize).map_or(f64::NAN, |d| d.as_secs_f64() * 1000.0)
    }

    /// Streams 3 sessions on `ws` for `dur`: a frame per session every `period`, or (with
    /// `window`) as many as keep `window` frames per session unacked. Returns the socket, the
    /// frames acked and each frame's send-to-ack time.
    async fn drive(mut ws: Ws, window: Option<usize>, period: Duration, dur: Duration) -> (Ws, u64, Vec<Duration>) {
        let sids: Vec<String> = (0..SESSIONS).map(|_| ulid::Ulid::new().to_string()).collect();
        for sid in &sids {
            let start = DaemonMsg::SessionStart {
                session_id: sid.clone(),
                agent: "claude".into(),
                directory: "proj".into(),
                started_at: "2026-12-02T10:00:00.000Z".into(),
            };
            send(&mut ws, &start).await;
        }
        let data = base64::engine::general_purpose::STANDARD.encode(format!("{:<118}\r\n", "cargo test: running 312 tests ... ok"));
        let mut inflight: Vec<VecDeque<(u64, Instant)>> = vec![VecDeque::new(); SESSIONS];
        let mut seq = [0u64; SESSIONS];
        let (mut acked, mut lat) = (0u64, Vec::new());
        let end = Instant::now() + dur;
        let mut tick = tokio::time::interval(period);
        // Sessions (by index) owed a frame: each tick's, or what tops up the window.
        let mut due: Vec<usize> = Vec::new();
        loop {
            let sending = Instant::now() < end;
            if !sending && inflight.iter().all(|q| q.is_empty()) {
                return (ws, acked, lat);
            }
            if let (Some(w), true) = (window, sending) {
                for (k, q) in inflight.iter().enumerate() {
                    due.extend(std::iter::repeat_n(k, w.saturating_sub(q.len())));
                }
            }
            for k in due.drain(..) {
                seq[k] += 1;
                let f = DaemonMsg::Frame {
                    session_id: sids[k].clone(),
                    seq: seq[k],
                    ts: "2026-12-02T10:00:01.000Z".into(),
                    kind: vpd_proto::relay::FrameKind::Output,
                    data: data.clone(),
                };
                send(&mut ws, &f).await;
                inflight[k].push_back((seq[k], Instant::now()));
            }
            tokio::select! {
                _ = tick.tick(), if window.is_none() && sending => due.extend(0..SESSIONS),
                m = ws.next() => match m {
                    Some(Ok(Message::Text(t))) => {
                        if let Ok(RelayMsg::Ack { session_id, seq: upto }) = serde_json::from_str(t.as_str()) {
                            let now = Instant::now();
                            if let Some(k) = sids.iter().position(|s| *s == session_id) {
                                while inflight[k].front().is_some_and(|(s, _)| *s <= upto) {
                                    let (_, at) = inflight[k].pop_front().unwrap();
                                    lat.push(now - at);
                                    acked += 1;
                                }
                            }
                        }
                    }
                    Some(Ok(Message::Close(c))) => panic!("the relay closed the connection: {c:?}"),
                    Some(Ok(_)) => {}
                    other => panic!("the relay connection ended: {other:?}"),
                },
                _ = tokio::time::sleep_until((end + Duration::from_secs(30)).into()) => panic!("acks stopped coming"),
            }
        }
    }

    /// All connections at once; (sockets, frames acked per second, p50 ms, p99 ms).
    async fn load(wss: Vec<Ws>, window: Option<usize>, period: Duration, dur: Duration) -> (Vec<Ws>, f64, f64, f64) {
        let started = Instant::now();
        let tasks: Vec<_> = wss.into_iter().map(|ws| tokio::spawn(drive(ws, window, period, dur))).collect();
        let (mut socks, mut frames, mut lat) = (Vec::new(), 0, Vec::new());
        for t in tasks {
            let (ws, n, l) = t.await.unwrap();
            socks.push(ws);
            frames += n;
            lat.extend(l);
        }
        let secs = started.elapsed().as_secs_f64();
        (socks, frames as f64 / secs, quantile(&mut lat, 0.5), quantile(&mut lat, 0.99))
    }

    /// Resolves when `ws` is closed by the relay: the time it happened.
    fn watch_close(mut ws: Ws) -> tokio::task::JoinHandle<Instant> {
        tokio::spawn(async move {
            loop {
                match ws.next().await {
                    Some(Ok(Message::Close(_))) | None | Some(Err(_)) => return Instant::now(),
                    Some(Ok(_)) => {}
                }
            }
        })
    }

    /// Transactions committed or rolled back in database `db` so far.
    fn xacts(pg: &pg::Pg, db: &str) -> u64 {
        let name = db.rsplit('/').next().unwrap();
        let q = format!("SELECT xact_commit + xact_rollback FROM pg_stat_database WHERE datname = '{name}'");
        pg.psql(db, &q).unwrap().parse().unwrap()
    }

    async fn variant(pg: &pg::Pg, label: &str, on_pg: bool, n: usize) {
        let tweak = |c: &mut viewport_server::Config| {
            c.write_budget = WriteBudget { machine_per_min: u64::MAX >> 4, org_per_min: u64::MAX >> 4 };
            c.stored_quota = StoredQuota::UNLIMITED;
        };
        let db = if on_pg { Some(tokio::task::block_in_place(|| pg.database())) } else { None };
        let first = match &db {
            Some(db) => start_on(db, tweak).await,
            None => start_with(tweak).await,
        };
        // Behind one balancer, every instance has the same public URL.
        let public = first.url.clone();
        let mut servers = vec![first];
        for _ in 1..n {
            let p = public.clone();
            let more = start_on(db.as_deref().unwrap(), move |c| {
                tweak(c);
                c.public_url = p;
            });
            servers.push(more.await);
        }
        let a = &servers[0];
        let last = &servers[n - 1];
        let (org, fleet) = tokio::task::block_in_place(|| {
            let org = a.org("Acme", "acme");
            a.user("owner@example.com", &[&org]);
            (org.clone(), a.user("fleet@example.com", &[&org]))
        });
        let mut wss = Vec::new();
        let mut approved = Vec::new();
        for i in 0..MACHINES {
            let key = new_key();
            let ap = a.pair(&key, &org, &fleet).await;
            wss.push(connect(&servers[i % n], &key, &ap).await);
            approved.push(ap);
        }
        // 100 open, idle connections (before any traffic, so no autovacuum either): what they
        // cost the database.
        let idle = match &db {
            Some(db) => {
                // Backends report their counts when idle, up to 10 s late: let the pairing
                // traffic's arrive first.
                tokio::time::sleep(Duration::from_secs(15)).await;
                let (x0, t0) = (tokio::task::block_in_place(|| xacts(pg, db)), Instant::now());
                tokio::time::sleep(Duration::from_secs(30)).await;
                let x1 = tokio::task::block_in_place(|| xacts(pg, db));
                format!("{:.2}", (x1 - x0 - 1) as f64 / t0.elapsed().as_secs_f64())
            }
            None => "—".into(),
        };

        let (wss, _, steady50, steady99) = load(wss, None, Duration::from_millis(200), Duration::from_secs(8)).await;
        let (wss, flat, flat50, flat99) = load(wss, Some(16), Duration::from_secs(1), Duration::from_secs(8)).await;

        // An approval on the last instance answers a long poll held by the first.
        let mut answer = Vec::new();
        for _ in 0..10 {
            let created = a.create_code(&body_for(&new_key(), "box")).await;
            let code = vpd_proto::normalize_code(&created.code).unwrap();
            let (http, url, token) =
                (a.http.clone(), a.at(&format!("/api/pairing-codes/{}/status?wait=25", created.code)), created.status_token.expose().to_string());
            let poll = tokio::spawn(async move {
                http.get(url).header("X-Viewport-Pairing-Token", token).send().await.unwrap();
                Instant::now()
            });
            tokio::time::sleep(Duration::from_millis(300)).await;
            let t0 = Instant::now();
            last.state.approve_code(&code, &org.id, &fleet.id, &as_user(&fleet)).await.unwrap();
            answer.push(poll.await.unwrap() - t0);
        }

        // Revocations on the last instance, of connections held by every instance: ten one by
        // one, then the other 90 at once by removing their member.
        let mut watchers: Vec<_> = wss.into_iter().map(watch_close).collect();
        let mut single = Vec::new();
        for (ap, w) in approved.iter().zip(watchers.drain(..10)) {
            let t0 = Instant::now();
            last.state.revoke(&org.id, &ap.runtime_target_id, "revoked", &viewport_server::roles::Actor::cli()).await.unwrap();
            single.push(w.await.unwrap() - t0);
        }
        let t0 = Instant::now();
        let removed = last.state.remove_member(&org.id, &fleet.id, &viewport_server::roles::Actor::cli()).await.unwrap();
        assert!(removed >= MACHINES - 10, "the member's other pairings were revoked: {removed}");
        let mut fan = Vec::new();
        for w in watchers {
            fan.push(w.await.unwrap() - t0);
        }
        println!(
            "| {label} | {:.0} | {steady50:.1} | {steady99:.1} | {flat:.0} | {flat50:.1} | {flat99:.1} | {idle} | {:.1} / {:.1} | {:.1} / {:.1} | {:.1} |",
            (MACHINES * SESSIONS) as f64 * 5.0,
            quantile(&mut answer, 0.5),
            quantile(&mut answer, 1.0),
            quantile(&mut single, 0.5),
            quantile(&mut single, 1.0),
            quantile(&mut fan, 1.0),
        );
    }

    #[test]
    #[ignore = "a benchmark: scripts/bench-instances.sh"]
    fn bench_several_instances() {
        // The relay's errors, if any, on stderr.
        let _ = tracing_subscriber::fmt().with_max_level(tracing_subscriber::filter::LevelFilter::ERROR).with_writer(std::io::stderr).try_init();
        println!(
            "| store | offered frames/s | steady p50 ms | steady p99 ms | flat-out frames/s | flat-out p50 ms | flat-out p99 ms | idle DB xacts/s | approval → long poll p50 / max ms | revoke → close p50 / max ms | 90 closed by a member removal, ms |"
        );
        println!("|---|---|---|---|---|---|---|---|---|---|---|");
        on_pg(|pg| async move {
            variant(&pg, "SQLite, 1 instance", false, 1).await;
            variant(&pg, "PostgreSQL, 1 instance", true, 1).await;
            variant(&pg, "PostgreSQL, 2 instances", true, 2).await;
        });
    }
}

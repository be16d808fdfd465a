//! Several `viewport-server` instances on one real PostgreSQL, behind a round-robin load
//! balancer (issue 14), with the real `vpd` pairing, binding and streaming through it:
//! - an instance killed (SIGKILL) while it holds a machine's relay connection: the daemon
//!   reconnects through the balancer to another instance and resumes; the org's record of
//!   the session is what the terminal showed, every frame once;
//! - an instance whose host vanishes without a reset: the daemon notices within its ping
//!   timeout and moves on the same way;
//! - what any instance does is seen by the others: an approval on one answers the long poll
//!   held by another, a relay token one issued opens the relay on another, a Sessions page on
//!   one shows the frames arriving on another, a revocation on one closes the connection
//!   another holds, and the daemon loses that pairing.
//!
//! - a limit (pairing codes per client address) holds across the instances, not per instance.
//!
//! - one live connection per machine: a second connection of the daemon's pairing on another
//!   instance replaces the daemon's (4409), and the daemon's next one replaces it.
//!
//! Key rotation across instances is checked in crates/viewport-server/tests/instances.rs.
//!
//! Deadlines are generous (the machine may be busy); the 1 s and 2 s figures of the issue are
//! measured by scripts/bench-instances.sh (docs/BENCHMARKS.md).

mod support;
use serde_json::Value;
use std::process::Stdio;
use std::time::Duration;
use support::balancer::Balancer;
use support::pg::Pg;
use support::*;

/// Instances on one database behind a balancer. Fields drop in order: the instances stop
/// before the database does.
struct Cluster {
    servers: Vec<Server>,
    lb: Balancer,
    _pg: Pg,
}

fn cluster(n: usize) -> Cluster {
    cluster_with(n, &[])
}

/// `n` instances, each run with the `serve` arguments `extra`.
fn cluster_with(n: usize, extra: &[&str]) -> Cluster {
    let pg = Pg::start();
    let db = pg.database();
    let ports: Vec<u16> = (0..n).map(|_| free_port()).collect();
    let lb = Balancer::start(&ports);
    let servers = ports.iter().map(|&port| Server::start_pg(port, lb.url(), &db, extra)).collect();
    Cluster { servers, lb, _pg: pg }
}

impl Cluster {
    /// Any instance: the admin CLI talks to the database, not to a process.
    fn admin(&self) -> &Server {
        &self.servers[0]
    }

    fn sessions(&self) -> Vec<Value> {
        self.admin().admin(&["session", "list", "--org", "acme"]).as_array().cloned().unwrap_or_default()
    }

    /// The raw record of session `id`, as stored.
    fn record(&self, id: &str) -> Vec<u8> {
        let out = self.admin().admin_raw(&["session", "show", id, "--raw"], None);
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        out.stdout
    }

    /// The instance holding the machine's relay WebSocket, once there is one.
    fn holder(&self) -> usize {
        let mut at = None;
        wait_until("a relay connection through the balancer", Duration::from_secs(30), || {
            at = self.lb.relay_backend();
            at.is_some()
        });
        at.unwrap()
    }
}

fn state(m: &Machine) -> String {
    m.ok(&["status"])["pairings"][0]["state"].as_str().unwrap_or("").to_string()
}

fn wait_connected(m: &Machine) {
    wait_until("the pairing to be connected", Duration::from_secs(30), || state(m) == "connected");
}

/// A machine paired with Acme through the balancer (approved by the admin CLI), with `api`
/// bound and the relay connected; its relay ping every `ping_secs` (or SPEC's 20 s).
fn paired_machine(c: &Cluster, ping_secs: Option<&str>) -> (Machine, std::path::PathBuf) {
    let mut m = Machine::new();
    if let Some(secs) = ping_secs {
        m.env.push(("VPD_RELAY_PING_SECS".into(), secs.into()));
    }
    let (p, code) = m.start_pair(&["--server", &c.lb.url(), "--org", "acme"]);
    c.admin().approve(code["code"].as_str().unwrap(), "acme", "alice@example.com");
    assert_eq!(p.finish()["event"], "paired");
    let dir = m.mkdir("api");
    m.ok(&["bind", dir.to_str().unwrap(), "--org", "acme"]);
    wait_connected(&m);
    (m, dir)
}

/// Runs a 60-line session over about 6 s through `vpd run`, applies `fault` to the instance
/// holding the relay connection after 1.5 s, and checks that the record is complete: byte for
/// byte what the terminal showed, no gap, every frame once.
fn survives(fault: impl FnOnce(&mut Cluster, usize)) {
    let mut c = cluster(2);
    c.admin().org_with_member("Acme Engineering", "acme", "alice@example.com");
    let (m, dir) = paired_machine(&c, Some("2"));
    let script = "i=1; while [ $i -le 60 ]; do echo frame-$i; i=$((i+1)); sleep 0.1; done";
    let run = m
        .command()
        .args(["run", "--cwd", dir.to_str().unwrap(), "--", "sh", "-c", script])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    std::thread::sleep(Duration::from_millis(1500));
    let hit = c.holder();
    fault(&mut c, hit);
    let out = run.wait_with_output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(String::from_utf8_lossy(&out.stdout).contains("frame-60"));
    assert_eq!(m.pairing_count(), 1, "losing an instance never revokes");
    wait_until("the relay connection on another instance", Duration::from_secs(30), || c.lb.relay_backend().is_some_and(|i| i != hit));
    wait_connected(&m);
    wait_until("the record to be complete", Duration::from_secs(30), || c.sessions().first().is_some_and(|s| s["ended_at"].is_string()));
    let s = c.sessions()[0].clone();
    let rec = c.record(s["id"].as_str().unwrap());
    assert_eq!(String::from_utf8_lossy(&rec), String::from_utf8_lossy(&out.stdout), "complete, in order, every frame once");
    assert_eq!(s["gap_count"], 0, "{s}");
}

#[test]
fn an_instance_killed_mid_session_loses_nothing() {
    survives(|c, hit| c.servers[hit].kill());
}

#[test]
fn an_instance_whose_host_vanishes_is_left_within_the_ping_timeout() {
    // No reset, no close: only the daemon's pings (every 2 s here) can tell.
    survives(|c, hit| c.lb.vanish(hit));
}

/// What one instance does, the others see at once: approval, frames, revocation.
#[test]
fn every_instance_sees_what_another_does() {
    let c = cluster(2);
    let acme = c.admin().org_with_member("Acme Engineering", "acme", "alice@example.com");

    // 1. `vpd pair` waits on whichever instance the balancer picked; alice approves on the
    // other one, on its own page.
    let mut m = Machine::new();
    m.env.push(("VPD_RELAY_PING_SECS".into(), "2".into()));
    let (p, code) = m.start_pair(&["--server", &c.lb.url(), "--org", "acme"]);
    let code = code["code"].as_str().unwrap().to_string();
    // The instance holding the long poll: the one whose open connection carries the pending
    // `GET …/status?wait=` (sent, not answered yet: the code is not approved).
    let mut polling = None;
    wait_until("the long poll through the balancer", Duration::from_secs(30), || {
        polling =
            c.lb.connections().iter().find(|conn| conn.open && conn.requests.iter().any(|r| r.contains("/status?wait="))).map(|conn| conn.backend);
        polling.is_some()
    });
    let polling = polling.unwrap();
    let other = 1 - polling;
    let web = c.servers[other].web_login("alice@example.com");
    let (status, _) = web.approve(&code, &acme);
    assert!(status == 200 || status == 303, "approve answered {status}");
    assert_eq!(p.finish()["event"], "paired", "the approval on one instance answered the long poll on the other");
    let dir = m.mkdir("api");
    m.ok(&["bind", dir.to_str().unwrap(), "--org", "acme"]);
    wait_connected(&m);

    // 2. The relay token the daemon holds was issued by one instance; that instance is
    // drained and its connections cut, so the daemon reconnects to the other with the same
    // token, which verifies there.
    let token_from =
        c.lb.connections().iter().rev().find(|conn| conn.request().starts_with("POST /api/runtime/relay-token")).map(|conn| conn.backend);
    let token_from = token_from.expect("the relay token came through the balancer");
    let tokens_before = c.lb.connections().iter().filter(|conn| conn.request().starts_with("POST /api/runtime/relay-token")).count();
    c.lb.set_down(token_from, true);
    let before_cut = c.lb.connections().len();
    c.lb.cut(token_from);
    c.lb.cut(1 - token_from);
    wait_until("a new relay connection on the instance that did not issue the token", Duration::from_secs(30), || {
        let new_ws =
            c.lb.connections()[before_cut..].iter().any(|conn| conn.open && conn.request().starts_with("GET /ws") && conn.backend == 1 - token_from);
        new_ws && state(&m) == "connected"
    });
    let tokens_after = c.lb.connections().iter().filter(|conn| conn.request().starts_with("POST /api/runtime/relay-token")).count();
    assert_eq!(tokens_after, tokens_before, "the daemon kept its token, and the other instance took it");
    c.lb.set_down(token_from, false);

    // 3. A session streamed to the instance holding the connection is on the other's
    // Sessions page, and new output reaches that page's live view.
    let holder = c.holder();
    let elsewhere = 1 - holder;
    let id = String::from_utf8(m.vpd(&["session", "start", "--cwd", dir.to_str().unwrap(), "--agent", "claude", "--name", "balanced"]).stdout)
        .unwrap()
        .trim()
        .to_string();
    assert!(!id.is_empty(), "vpd session start printed no id");
    m.vpd(&["session", "frame", &id, "--data", "first line via one instance\r\n"]);
    let web = c.servers[elsewhere].web_login("alice@example.com");
    wait_until("the session on the other instance's Sessions page", Duration::from_secs(30), || web.get("/orgs/acme/sessions").1.contains(&id));
    let page = format!("/orgs/acme/sessions/{id}");
    wait_until("the first line on the other instance's session page", Duration::from_secs(30), || {
        web.get(&page).1.contains("first line via one instance")
    });
    m.vpd(&["session", "frame", &id, "--data", "second line, live\r\n"]);
    wait_until("the live view on the other instance", Duration::from_secs(30), || {
        let r = web.client.get(format!("{}{page}/frames?from=0&after=0", web.base)).header("Accept", "application/json").send().unwrap();
        r.text().unwrap().contains("second line, live")
    });
    m.vpd(&["session", "end", &id, "--exit-code", "0"]);

    // 4. Machines → Revoke on the instance that does not hold the connection: the holder
    // closes it, and the daemon drops the pairing.
    let machine_id = m.config()["pairings"][0]["machineId"].as_str().unwrap().to_string();
    let target = m.config()["pairings"][0]["runtimeTargetId"].as_str().unwrap().to_string();
    let (status, _) = web.post("/orgs/acme/machines", "/orgs/acme/machines/revoke", &[("machine_id", &machine_id)]);
    assert!(status == 200 || status == 303, "revoke answered {status}");
    wait_until("the daemon to drop the revoked pairing", Duration::from_secs(40), || m.pairing_count() == 0);
    wait_until("the holder to close the relay connection", Duration::from_secs(20), || c.lb.relay_backend().is_none());
    // The holder closed it (4401), having heard of the revocation from the other instance.
    let holder_log = std::fs::read_to_string(c.servers[holder].log()).unwrap();
    assert!(
        holder_log.lines().any(|l| l.contains("closing the relay connection of a revoked pairing") && l.contains(&target)),
        "the holder closed the revoked pairing's connection:\n{holder_log}"
    );
    let st = m.ok(&["status"]);
    assert!(st["activity"].as_array().unwrap().iter().any(|a| a["message"] == "Acme Engineering revoked this machine's pairing"), "{st}");
}

/// The daemon's pairing as a second relay connection would make it, from its own files: a
/// relay token, then the handshake with its key. The open socket.
fn second_connection(c: &Cluster, m: &Machine) -> tungstenite::WebSocket<tungstenite::stream::MaybeTlsStream<std::net::TcpStream>> {
    use base64::Engine;
    use ed25519_dalek::Signer;
    let b64 = base64::engine::general_purpose::URL_SAFE_NO_PAD;
    let pairing = m.config()["pairings"][0].clone();
    let (ws_id, target) = (pairing["workspaceId"].as_str().unwrap(), pairing["runtimeTargetId"].as_str().unwrap());
    let (status, token) = c.admin().relay_token(&pairing);
    assert_eq!(status, 200, "{token}");
    let key = b64.decode(m.identity(ws_id)["secretKey"].as_str().expect("the key in the identity file")).unwrap();
    let key = ed25519_dalek::SigningKey::from_bytes(&key.try_into().unwrap());
    let url = format!("ws://127.0.0.1:{}/ws?role=workspace-daemon&workspaceId={ws_id}&runtimeTargetId={target}&features=quota", c.lb.port);
    let mut req = tungstenite::client::IntoClientRequest::into_client_request(url).unwrap();
    req.headers_mut().insert("authorization", format!("Bearer {}", token["relayToken"].as_str().unwrap()).parse().unwrap());
    let (mut ws, _) = tungstenite::connect(req).unwrap();
    let text = |ws: &mut tungstenite::WebSocket<_>| loop {
        match ws.read().unwrap() {
            tungstenite::Message::Text(t) => break serde_json::from_str::<Value>(t.as_str()).unwrap(),
            tungstenite::Message::Ping(_) | tungstenite::Message::Pong(_) => continue,
            other => panic!("expected a relay message, got {other:?}"),
        }
    };
    let challenge = text(&mut ws);
    let nonce = challenge["nonce"].as_str().unwrap_or_else(|| panic!("a challenge: {challenge}"));
    let proof = vpd_proto::relay::proof_message(ws_id, target, pairing["relayEndpoint"].as_str().unwrap(), nonce);
    let signature = b64.encode(key.sign(proof.as_bytes()).to_bytes());
    let msg = serde_json::to_string(&vpd_proto::relay::DaemonMsg::Proof { signature }).unwrap();
    ws.send(tungstenite::Message::Text(msg.into())).unwrap();
    let ready = text(&mut ws);
    assert!(ready.get("resume").is_some(), "ready: {ready}");
    ws
}

/// One live connection per machine across instances: a second connection of the daemon's
/// pairing on the other instance closes the daemon's (4409) on the first; the daemon's next
/// one closes it in turn.
#[test]
fn a_newer_connection_on_another_instance_replaces_the_older() {
    let c = cluster(2);
    c.admin().org_with_member("Acme Engineering", "acme", "alice@example.com");
    let (m, _dir) = paired_machine(&c, Some("2"));
    let holder = c.holder();
    let target = m.config()["pairings"][0]["runtimeTargetId"].as_str().unwrap().to_string();
    c.lb.set_down(holder, true);
    let mut second = second_connection(&c, &m);
    wait_until("the daemon's connection closed by the instance holding it", Duration::from_secs(30), || {
        std::fs::read_to_string(c.servers[holder].log())
            .unwrap()
            .lines()
            .any(|l| l.contains("a newer connection of this pairing is live elsewhere: closing this one") && l.contains(&target))
    });
    // The daemon reconnects (to the other instance: the first is out of rotation) and is the
    // newest in its turn.
    if let tungstenite::stream::MaybeTlsStream::Plain(s) = second.get_mut() {
        s.set_read_timeout(Some(Duration::from_secs(60))).unwrap();
    }
    let code = loop {
        match second.read() {
            Ok(tungstenite::Message::Close(Some(f))) => break u16::from(f.code),
            Ok(_) => continue,
            Err(e) => panic!("no close frame: {e}"),
        }
    };
    assert_eq!(code, vpd_proto::relay::close::REPLACED);
    wait_connected(&m);
    c.lb.set_down(holder, false);
}

/// A limit holds for the whole service, not per instance: with 4 pairing codes a minute per
/// client address, the balancer's alternating requests get 4, not 4 from each instance.
#[test]
fn limits_hold_across_instances_behind_the_balancer() {
    let c = cluster_with(2, &["--pairing-rate-per-minute", "4"]);
    // Counters are per minute: start early in one, so that all six land in the same.
    let second = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs() % 60;
    if second > 45 {
        std::thread::sleep(Duration::from_secs(61 - second));
    }
    let body = serde_json::json!({
        "name": "box", "public_key": "11qYAYKxCrfVS_7TyWQHOg7hcvPapiMlrwIaaPcHURo", "key_algorithm": "ed25519",
        "daemon_version": "0.1.0", "platform": {"os": "linux", "arch": "x86_64"}
    });
    let minute = || std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs() / 60;
    let burst = || -> Vec<u16> {
        (0..6)
            .map(|_| {
                // A connection of its own each time: the balancer alternates between the instances.
                let r = reqwest::blocking::Client::new().post(format!("{}/api/pairing-codes", c.lb.url())).json(&body).send().unwrap();
                r.status().as_u16()
            })
            .collect()
    };
    let mut before = c.lb.connections().len();
    let mut started = minute();
    let mut statuses = burst();
    if minute() != started {
        // A very slow machine crossed into the next minute mid-burst: once more, in a fresh one.
        std::thread::sleep(Duration::from_secs(61 - std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs() % 60));
        (before, started) = (c.lb.connections().len(), minute());
        statuses = burst();
        assert_eq!(minute(), started, "six requests took over 15 s, twice");
    }
    assert_eq!(statuses, [201, 201, 201, 201, 429, 429], "the limit is shared, never doubled");
    let backends: std::collections::BTreeSet<usize> = c.lb.connections()[before..].iter().map(|conn| conn.backend).collect();
    assert_eq!(backends.len(), 2, "both instances answered");
}

/// The failover figures for docs/BENCHMARKS.md (`scripts/bench-instances.sh`, release): how
/// long the real `vpd` takes to be connected again, through the balancer, to another
/// instance after the one holding its relay connection is killed (5 runs), and after that
/// instance's host vanishes with the daemon's default ping (20 s, pong within 10 s; 2 runs).
#[test]
#[ignore = "a benchmark: scripts/bench-instances.sh"]
fn bench_failover() {
    let run = |vanish: bool| -> Duration {
        let mut c = cluster(2);
        c.admin().org_with_member("Acme Engineering", "acme", "alice@example.com");
        let (m, _dir) = paired_machine(&c, None);
        let hit = c.holder();
        let t0 = std::time::Instant::now();
        if vanish {
            c.lb.vanish(hit);
        } else {
            c.servers[hit].kill();
        }
        wait_until("the relay connection on the other instance", Duration::from_secs(90), || {
            c.lb.relay_backend().is_some_and(|i| i != hit) && state(&m) == "connected"
        });
        t0.elapsed()
    };
    let kills: Vec<f64> = (0..5).map(|_| run(false).as_secs_f64()).collect();
    let vanished: Vec<f64> = (0..2).map(|_| run(true).as_secs_f64()).collect();
    let fmt = |v: &[f64]| v.iter().map(|s| format!("{s:.2}")).collect::<Vec<_>>().join(", ");
    println!("| instance holding the connection | runs | seconds until connected to another instance |");
    println!("|---|---|---|");
    println!("| killed (SIGKILL: the balancer resets the connection) | {} | {} |", kills.len(), fmt(&kills));
    println!("| host vanished (no reset; default ping 20 s, pong timeout 10 s) | {} | {} |", vanished.len(), fmt(&vanished));
}

//! A hostile or broken relay, seen from the daemon: malformed messages, the wrong first
//! message, an oversized message, a relay that accepts the upgrade and never speaks, an
//! unexplained close. Each is a clear error in `vpd status`, nothing crashes, and the pairing
//! is never deleted.

mod support;
use serde_json::json;
use std::net::TcpListener;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use support::*;

const ORG: &str = "01J7M8N9P0Q1R2S3T4V5V6W7X8";

/// A fake platform that approves at once and hands out relay tokens, plus a WebSocket relay
/// that behaves as `mode` says.
fn fake(mode: Arc<Mutex<&'static str>>) -> String {
    let relay = TcpListener::bind("127.0.0.1:0").unwrap();
    let relay_url = format!("ws://{}/ws", relay.local_addr().unwrap());
    std::thread::spawn(move || {
        for stream in relay.incoming().flatten() {
            let mode = *mode.lock().unwrap();
            std::thread::spawn(move || {
                let Ok(mut ws) = tungstenite::accept(stream) else { return };
                let text = |s: String| tungstenite::Message::Text(s.into());
                match mode {
                    "silent" => std::thread::sleep(Duration::from_secs(30)),
                    "malformed" => {
                        let _ = ws.send(text("{not json".into()));
                    }
                    "wrong-first" => {
                        let _ = ws.send(text(json!({"type": "ready", "resume": {}}).to_string()));
                    }
                    "oversized" => {
                        let _ = ws.send(text(format!("{{\"type\":\"challenge\",\"nonce\":\"{}\"}}", "A".repeat(3 << 20))));
                    }
                    "refusing" => refusing(ws),
                    "close-invalid" => {
                        let _ = ws.close(Some(tungstenite::protocol::CloseFrame { code: 4401.into(), reason: "invalid".into() }));
                    }
                    _ => {}
                }
                std::thread::sleep(Duration::from_millis(200));
            });
        }
    });
    fake_http(move |_, path| {
        let (status, body) = if path == "/api/pairing-codes" {
            (
                "201 Created",
                json!({"code": "BCDF-GHJK", "status_token": "st", "expires_at": "2099-01-01T00:00:00Z", "verification_url": "http://x/pair"}),
            )
        } else if path.contains("/status") {
            (
                "200 OK",
                json!({"status": "approved", "workspace_id": ORG, "workspace_name": "Evil Relay", "workspace_slug": "evil",
                "install_id": "01J7M8N9P0Q1R2S3T4V5V6W7X1", "runtime_target_id": "01J7M8N9P0Q1R2S3T4V5V6W7X2",
                "machine_id": "01J7M8N9P0Q1R2S3T4V5V6W7X3", "machine_name": "m", "token": "a-long-enough-issue-token",
                "relay_endpoint": relay_url, "server_url": "http://x"}),
            )
        } else if path.contains("/relay-token") {
            ("200 OK", json!({"relayToken": "header.payload.sig", "expiresAt": "2099-01-01T00:00:00Z", "relayEndpoint": relay_url}))
        } else {
            ("404 Not Found", json!({"error": "not_found"}))
        };
        http_answer(status, "application/json", &body.to_string())
    })
}

/// What the "refusing" relay received, in order (one JSON text per message).
static RECEIVED: Mutex<Vec<String>> = Mutex::new(Vec::new());

/// A relay that completes the handshake, then refuses each session's start and any frame
/// whose data is `REFUSE` the first time it sees them, closes 4400 the first time a frame's
/// data is `CLOSE` (as a relay with other rules would), and acks everything else.
fn refusing(mut ws: tungstenite::WebSocket<std::net::TcpStream>) {
    use base64::Engine;
    let text = |s: String| tungstenite::Message::Text(s.into());
    let _ = ws.send(text(json!({"type": "challenge", "nonce": "A".repeat(43)}).to_string()));
    let _ = ws.read(); // the proof, not checked here
    let _ = ws.send(text(json!({"type": "ready", "resume": {}}).to_string()));
    loop {
        let Ok(tungstenite::Message::Text(t)) = ws.read() else { return };
        let m: serde_json::Value = serde_json::from_str(&t).unwrap();
        let first_time = !RECEIVED.lock().unwrap().iter().any(|r| r.as_str() == t.as_str());
        RECEIVED.lock().unwrap().push(t.to_string());
        let (sid, seq) = (m["sessionId"].clone(), m["seq"].as_u64().unwrap_or(0));
        let data = m["data"].as_str().map(|d| base64::engine::general_purpose::STANDARD.decode(d).unwrap()).unwrap_or_default();
        let starts = RECEIVED.lock().unwrap().iter().filter(|r| r.contains("session_start") && r.contains(sid.as_str().unwrap())).count();
        let answer = if m["type"] == "session_start" && starts == 1 {
            json!({"type": "refused", "sessionId": sid, "seq": 0, "reason": "agent is not allowed here"})
        } else if data == b"REFUSE" && first_time {
            json!({"type": "refused", "sessionId": sid, "seq": seq, "reason": "data is not allowed here"})
        } else if data == b"CLOSE" && first_time {
            let _ = ws.close(Some(tungstenite::protocol::CloseFrame { code: 4400.into(), reason: format!("frame {seq}: no").into() }));
            let _ = ws.flush();
            return;
        } else {
            json!({"type": "ack", "sessionId": sid, "seq": seq})
        };
        let _ = ws.send(text(answer.to_string()));
    }
}

/// SPEC A2: a message the relay refuses (a `refused` answer, or a close 4400 at it) is never
/// sent as is again: the start goes again cut down, a frame becomes a gap of its seq, the
/// stream goes on, and activity says what happened.
#[test]
fn a_refused_message_is_replaced_never_resent_and_the_stream_goes_on() {
    use std::io::{BufRead, BufReader, Write};
    let mode = Arc::new(Mutex::new("refusing"));
    let url = fake(mode.clone());
    let m = Machine::new();
    assert_eq!(m.ok(&["pair", "--server", &url, "--no-browser"])["event"], "paired");
    let dir = m.mkdir("work/api");
    m.ok(&["bind", dir.to_str().unwrap(), "--org", ORG]);
    wait_until("connected", Duration::from_secs(20), || m.ok(&["status"])["pairings"][0]["state"] == "connected");
    let s = m.ok(&["session", "start", "--cwd", dir.to_str().unwrap(), "--agent", "clé"]);
    let id = s["sessionId"].as_str().unwrap().to_string();
    for data in ["a", "REFUSE", "b", "CLOSE", "c"] {
        m.ok(&["session", "frame", &id, "--data", data]);
    }
    m.ok(&["session", "end", &id, "--exit-code", "0"]);
    let received = || RECEIVED.lock().unwrap().iter().map(|t| serde_json::from_str::<serde_json::Value>(t).unwrap()).collect::<Vec<_>>();
    wait_until("the end to reach the relay", Duration::from_secs(30), || received().iter().any(|m| m["type"] == "session_end"));
    let got = received();
    let data_of = |m: &serde_json::Value| {
        use base64::Engine;
        m["data"].as_str().map(|d| String::from_utf8(base64::engine::general_purpose::STANDARD.decode(d).unwrap()).unwrap())
    };
    let starts: Vec<_> = got.iter().filter(|m| m["type"] == "session_start").collect();
    assert_eq!(starts[0]["agent"], "clé");
    assert!(starts.iter().skip(1).all(|m| m["agent"] == "cl_"), "after the refusal, only the cut-down start: {starts:?}");
    let count = |d: &str| got.iter().filter(|m| data_of(m).as_deref() == Some(d)).count();
    assert_eq!(count("REFUSE"), 1, "a refused frame is never sent again");
    assert_eq!(count("CLOSE"), 1, "the frame a 4400 stopped at is never sent again");
    let gaps: Vec<u64> = got.iter().filter(|m| m["kind"] == "gap").filter_map(|m| m["seq"].as_u64()).collect();
    assert!(gaps.contains(&2) && gaps.contains(&4), "gaps in their place: {gaps:?}");
    assert!(count("c") >= 1, "the stream went on");
    // Activity says so (what the web UI and the tray read).
    let mut sock = std::os::unix::net::UnixStream::connect(m.home().join("vpd.sock")).unwrap();
    sock.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    writeln!(sock, "{}", json!({"method": "events", "params": {"since": 0}})).unwrap();
    let mut refused = Vec::new();
    for line in BufReader::new(sock).lines() {
        let Ok(line) = line else { break };
        if line.contains("\"refused\"") {
            refused.push(line);
        }
        if refused.len() == 3 {
            break;
        }
    }
    assert_eq!(refused.len(), 3, "start, frame 2 and frame 4: {refused:?}");
    assert!(refused.iter().any(|l| l.contains("frame 4: no")), "{refused:?}");
    assert_eq!(m.ok(&["status"])["pairings"][0]["state"], "connected");
}

#[test]
fn a_hostile_relay_is_an_error_never_a_revocation() {
    let mode = Arc::new(Mutex::new("silent"));
    let url = fake(mode.clone());
    let m = Machine::new();
    let done = m.ok(&["pair", "--server", &url, "--no-browser"]);
    assert_eq!(done["event"], "paired", "{done}");
    let cases: &[(&str, &str)] = &[
        ("malformed", "malformed message"),
        ("wrong-first", "instead of a challenge"),
        ("oversized", "too long"),
        ("close-invalid", "4401 invalid"),
        ("silent", "handshake in time"),
    ];
    for (case, want) in cases {
        *mode.lock().unwrap() = case;
        m.ok(&["reconnect"]);
        wait_until(&format!("the {case} relay's error to show"), Duration::from_secs(40), || {
            let st = m.ok(&["status"]);
            let p = &st["pairings"][0];
            let state = p["state"].as_str().unwrap_or("");
            (state.starts_with("reconnecting") || state.starts_with("offline")) && p["lastError"].as_str().is_some_and(|e| e.contains(want))
        });
        assert_eq!(m.pairing_count(), 1, "{case}: the pairing is kept");
        let code = m.ok(&["status"])["pairings"][0]["lastErrorCode"].as_str().unwrap_or("").to_string();
        let want_code = if *case == "close-invalid" { "close_4401" } else { "connection_failed" };
        assert_eq!(code, want_code, "{case}");
        assert_eq!(m.ok(&["status"])["daemon"]["running"], true, "{case}: the daemon is alive");
    }
    let text = String::from_utf8(m.vpd(&["status"]).stdout).unwrap();
    assert!(text.contains("last error:"), "{text}");
}

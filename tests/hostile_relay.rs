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

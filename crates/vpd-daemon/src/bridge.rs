//! One relay bridge per pairing (SPEC section 5): its own task, its own reconnect logic and
//! state, so a pairing that cannot connect never delays another.
//!
//! The task fetches a relay token, opens the WebSocket, proves the pairing's key, then sends
//! the pairing's session messages and collects acks. Unacked messages stay in its
//! [`Outbox`] and are resent from the relay's resume point after a reconnect. Only the
//! explicit answers of SPEC section 6 end it as revoked (see `vpd_core::relay_policy`).

use crate::config::Pairing;
use crate::identity::Identity;
use crate::pairing::credential_of;
use crate::platform::{CallError, Platform};
use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64;
use base64::Engine;
use futures_util::{SinkExt, StreamExt};
use serde::{Deserialize, Serialize};
use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::mpsc;
use tokio_tungstenite::tungstenite::{self, client::IntoClientRequest, protocol::CloseFrame, Message};
use vpd_core::outbox::{Outbox, Refusal, DEFAULT_LIMIT};
use vpd_core::relay_policy::{self, Verdict, RECONNECT_ATTEMPTS};
use vpd_proto::relay::{proof_message, DaemonMsg, RelayMsg, MAX_MESSAGE, ROLE};
use vpd_proto::runtime::RuntimeCredential;

/// WebSocket ping interval (SPEC: 20 s). `VPD_RELAY_PING_SECS` changes it, for tests and
/// for networks whose middleboxes drop idle connections sooner.
fn ping_every() -> Duration {
    std::env::var("VPD_RELAY_PING_SECS")
        .ok()
        .and_then(|v| v.parse().ok())
        .filter(|s| *s > 0)
        .map(Duration::from_secs)
        .unwrap_or(Duration::from_secs(20))
}
/// No pong within this (or the ping interval, if shorter) → the connection is dead.
fn pong_timeout() -> Duration {
    ping_every().min(Duration::from_secs(10))
}
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// What a bridge is doing, as `vpd status` shows it.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Default)]
#[serde(rename_all = "camelCase")]
pub struct BridgeStatus {
    /// `connecting`, `connected`, `reconnecting (n/5)`, `offline (next try HH:MM:SS)`, `revoked`.
    pub state: crate::states::BridgeState,
    pub last_error: Option<String>,
    /// Stable code of the last error: `close_<code>` (the relay closed the connection with
    /// that code), `token_<status>` (the platform refused a relay token), `connection_failed`.
    pub last_error_code: Option<String>,
    pub connected_since: Option<String>,
    pub next_retry_at: Option<String>,
    pub frames_sent: u64,
    pub frames_acked: u64,
    pub queued_bytes: u64,
    pub frames_dropped: u64,
    /// The relay is pacing this machine's writes (over its write budget, SPEC A8): new
    /// messages wait in the buffer, which turns the oldest into gap frames when full.
    pub throttled: bool,
    /// Send → ack time of recent messages (median, 99th percentile), in milliseconds.
    pub ack_latency_p50_ms: Option<f64>,
    pub ack_latency_p99_ms: Option<f64>,
}

/// Data for a bridge (bounded: senders wait when the relay is slow).
#[derive(Debug)]
pub enum Command {
    /// Queue a session message (kept until acked).
    Send(DaemonMsg),
    /// Forget a session's unsent messages (its pairing was cut).
    DropSession(String),
}

/// Control of a bridge, on a channel of its own so it is heard even while data waits.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Control {
    /// Retry now (`vpd reconnect`, a network change, a wall-clock jump).
    Reconnect,
    Stop,
}

/// Why a bridge ended for good.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Ended {
    Revoked { pairing_id: String, workspace_id: String, runtime_target_id: String, reason: String },
    Stopped,
}

/// What a bridge tells the backend.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Event {
    /// It stopped for good.
    Ended(Ended),
    /// The relay refused message `seq` of a session (SPEC A2). The bridge sent its cut-down
    /// form instead, or — `dropped` — that was refused too, and the session stops streaming.
    Refused { pairing_id: String, workspace_id: String, session_id: String, seq: u64, reason: String, dropped: bool },
    /// The relay does not take a new session (`error`: `quota_exceeded`, SPEC A8). The bridge
    /// forgot its messages; it runs local-only from now on.
    SessionRefused { pairing_id: String, workspace_id: String, session_id: String, error: String },
}

/// A running bridge.
#[derive(Clone)]
pub struct Bridge {
    pub tx: mpsc::Sender<Command>,
    pub ctl: mpsc::UnboundedSender<Control>,
    /// The pairing this bridge serves: sessions pinned to another (a replaced pairing of the
    /// same org) are never routed here.
    pub runtime_target_id: String,
    pub status: Arc<Mutex<BridgeStatus>>,
    latencies: Arc<Mutex<VecDeque<u32>>>,
    /// Once stopped: the messages the relay has not acked (see [`Bridge::stop_and_keep`]).
    left: Arc<Mutex<Option<tokio::sync::oneshot::Receiver<Vec<DaemonMsg>>>>>,
    /// Set to stop the task even while it connects (a token request, a TCP or TLS
    /// handshake), so a planned stop never waits out a slow relay and loses the outbox.
    stop: Arc<tokio::sync::watch::Sender<bool>>,
}

const LATENCY_SAMPLES: usize = 4096;

/// Bytes of unacked messages kept per pairing: 16 MiB, or `VPD_OUTBOX_BYTES`.
fn outbox_limit() -> usize {
    std::env::var("VPD_OUTBOX_BYTES").ok().and_then(|v| v.parse().ok()).filter(|n| *n >= 4096).unwrap_or(DEFAULT_LIMIT)
}

impl Bridge {
    /// Starts the bridge of `pairing`; `events` hears refusals, and when it stops for good.
    /// `queued` are messages a previous daemon left unacked (a planned restart): they go
    /// first, resent from the relay's resume point like any others.
    pub fn spawn(pairing: Pairing, identity: Identity, events: mpsc::Sender<Event>, queued: Vec<DaemonMsg>) -> Bridge {
        let (tx, rx) = mpsc::channel(128);
        let (ctl, ctl_rx) = mpsc::unbounded_channel();
        let runtime_target_id = pairing.runtime_target_id.clone();
        let status = Arc::new(Mutex::new(BridgeStatus { state: crate::states::BridgeState::Connecting, ..Default::default() }));
        let latencies = Arc::new(Mutex::new(VecDeque::with_capacity(LATENCY_SAMPLES)));
        let mut outbox = Outbox::new(outbox_limit());
        for m in queued {
            outbox.push(m);
        }
        let (left_tx, left_rx) = tokio::sync::oneshot::channel();
        let (stop, stopped) = tokio::sync::watch::channel(false);
        let mut task = Task {
            stopped,
            pairing,
            identity,
            status: status.clone(),
            outbox,
            rx,
            ctl: ctl_rx,
            healthy: false,
            renewals: 0,
            highest_sent: HashMap::new(),
            last_code: None,
            failures: 0,
            token: None,
            inflight: HashMap::new(),
            refused_sessions: std::collections::HashSet::new(),
            latencies: latencies.clone(),
            events: events.clone(),
        };
        tokio::spawn(async move {
            let why = task.run().await;
            if why == Ended::Stopped {
                let _ = left_tx.send(task.left_over());
            }
            let _ = events.send(Event::Ended(why)).await;
        });
        Bridge { tx, ctl, runtime_target_id, status, latencies, left: Arc::new(Mutex::new(Some(left_rx))), stop: Arc::new(stop) }
    }

    /// Stops the bridge and returns what the relay has not acked, in order (waiting at most
    /// `wait` for the task to let go of them).
    pub async fn stop_and_keep(&self, wait: Duration) -> Vec<DaemonMsg> {
        let _ = self.stop.send(true);
        let _ = self.ctl.send(Control::Stop);
        let rx = self.left.lock().unwrap().take();
        match rx {
            Some(rx) => tokio::time::timeout(wait, rx).await.ok().and_then(|r| r.ok()).unwrap_or_default(),
            None => Vec::new(),
        }
    }

    pub fn status(&self) -> BridgeStatus {
        let mut s = self.status.lock().unwrap().clone();
        let mut l: Vec<u32> = self.latencies.lock().unwrap().iter().copied().collect();
        if !l.is_empty() {
            l.sort_unstable();
            let at = |q: f64| l[((l.len() - 1) as f64 * q).round() as usize] as f64 / 1000.0;
            s.ack_latency_p50_ms = Some(at(0.5));
            s.ack_latency_p99_ms = Some(at(0.99));
        }
        s
    }
}

struct Task {
    /// True once the bridge is stopped (see [`Bridge::stop_and_keep`]).
    stopped: tokio::sync::watch::Receiver<bool>,
    events: mpsc::Sender<Event>,
    pairing: Pairing,
    identity: Identity,
    status: Arc<Mutex<BridgeStatus>>,
    outbox: Outbox,
    rx: mpsc::Receiver<Command>,
    ctl: mpsc::UnboundedReceiver<Control>,
    /// The current connection has been acked or ponged: a failure after that starts the
    /// backoff afresh.
    healthy: bool,
    /// Token renewals in a row without a healthy connection.
    renewals: u32,
    /// Highest seq written to the relay, per session: acks and resume points above it are
    /// not believed.
    highest_sent: HashMap<String, u64>,
    failures: u32,
    /// The code of the current connection attempt's failure, when it has one.
    last_code: Option<String>,
    token: Option<(vpd_proto::Secret, jiff::Timestamp)>,
    /// Send times of unacked messages, per session, in seq order.
    inflight: HashMap<String, VecDeque<(u64, std::time::Instant)>>,
    /// Sessions the relay did not take (quota): their later messages are dropped here.
    refused_sessions: std::collections::HashSet<String>,
    latencies: Arc<Mutex<VecDeque<u32>>>,
}

/// How one connection ended.
enum Outcome {
    Verdict(Verdict, String),
    /// The relay closed the connection with this code.
    Closed(u16, Verdict, String),
    Stopped,
}

impl Task {
    /// Everything not acked: the outbox, then what still waits in the channel.
    fn left_over(&mut self) -> Vec<DaemonMsg> {
        while let Ok(cmd) = self.rx.try_recv() {
            match cmd {
                Command::Send(m) if !self.is_refused(&m) => self.outbox.push(m),
                Command::Send(_) => {}
                Command::DropSession(s) => self.outbox.drop_session(&s),
            }
        }
        self.outbox.drain()
    }

    /// A message of a session the relay refused for good (quota).
    fn is_refused(&self, m: &DaemonMsg) -> bool {
        m.position().is_some_and(|(session, _)| self.refused_sessions.contains(session))
    }

    fn set(&self, f: impl FnOnce(&mut BridgeStatus)) {
        let mut s = self.status.lock().unwrap();
        f(&mut s);
        s.queued_bytes = self.outbox.queued_bytes() as u64;
        s.frames_dropped = self.outbox.dropped;
    }

    async fn run(&mut self) -> Ended {
        loop {
            self.last_code = None;
            let mut stopped = self.stopped.clone();
            let outcome = tokio::select! {
                o = self.connect_once() => o,
                _ = stopped.wait_for(|s| *s) => Outcome::Stopped,
            };
            // Whatever the relay said about pacing ended with the connection.
            self.set(|s| s.throttled = false);
            let mut code = self.last_code.take().unwrap_or_else(|| "connection_failed".to_string());
            let (verdict, why) = match outcome {
                Outcome::Stopped => return Ended::Stopped,
                Outcome::Verdict(v, why) => (v, why),
                Outcome::Closed(close, v, why) => {
                    code = format!("close_{close}");
                    if close == vpd_proto::relay::close::MALFORMED {
                        // The relay stored and acked everything before the message it choked
                        // on: that one is never sent as is again (SPEC A2).
                        if let Some((session, seq)) = self.outbox.oldest() {
                            self.refused(session, seq, why.clone()).await;
                        }
                    }
                    (v, why)
                }
            };
            match verdict {
                Verdict::Revoked => {
                    self.set(|s| {
                        s.state = crate::states::BridgeState::Revoked;
                        s.last_error = Some(why.clone());
                        s.last_error_code = Some(code.clone());
                    });
                    tracing::warn!(workspace = %self.pairing.workspace_id, %why, "the org revoked this machine's pairing");
                    return Ended::Revoked {
                        pairing_id: self.pairing.pairing_id.clone(),
                        workspace_id: self.pairing.workspace_id.clone(),
                        runtime_target_id: self.pairing.runtime_target_id.clone(),
                        reason: why,
                    };
                }
                Verdict::RenewToken if self.renewals < 3 => {
                    self.renewals += 1;
                    self.token = None;
                    tracing::info!(workspace = %self.pairing.workspace_id, "relay token expired; renewing");
                    continue;
                }
                Verdict::RenewToken | Verdict::Transient => {
                    if verdict == Verdict::RenewToken {
                        // Renewed three times in a row and still refused: back off.
                        self.token = None;
                    }
                    if self.healthy {
                        self.failures = 0;
                    }
                    self.healthy = false;
                    self.failures += 1;
                    let jitter = {
                        let mut b = [0u8; 2];
                        let _ = getrandom::fill(&mut b);
                        u16::from_le_bytes(b) as f64 / 65536.0
                    };
                    let delay = Duration::from_millis(relay_policy::retry_delay_ms(self.failures, jitter));
                    let next = jiff::Timestamp::now() + jiff::SignedDuration::from_millis(delay.as_millis() as i64);
                    let failures = self.failures;
                    self.set(|s| {
                        s.last_error = Some(why.clone());
                        s.last_error_code = Some(code.clone());
                        s.connected_since = None;
                        s.next_retry_at = Some(next.round(jiff::Unit::Second).unwrap_or(next).to_string());
                        s.state = if failures <= RECONNECT_ATTEMPTS {
                            crate::states::BridgeState::Reconnecting { attempt: failures, of: RECONNECT_ATTEMPTS }
                        } else {
                            let local = next.to_zoned(jiff::tz::TimeZone::system()).strftime("%H:%M:%S").to_string();
                            crate::states::BridgeState::Offline { next_try: local }
                        };
                    });
                    tracing::info!(workspace = %self.pairing.workspace_id, %why, ?delay, "relay connection failed; retrying");
                    if !self.wait(delay).await {
                        return Ended::Stopped;
                    }
                }
            }
        }
    }

    /// Waits `delay`, queueing messages meanwhile; returns early on `Reconnect`, false on `Stop`.
    async fn wait(&mut self, delay: Duration) -> bool {
        let sleep = tokio::time::sleep(delay);
        tokio::pin!(sleep);
        loop {
            tokio::select! {
                _ = &mut sleep => return true,
                c = self.ctl.recv() => match c {
                    None | Some(Control::Stop) => return false,
                    Some(Control::Reconnect) => return true,
                },
                cmd = self.rx.recv() => match cmd {
                    None => return false,
                    Some(Command::Send(m)) if self.is_refused(&m) => {}
                    Some(Command::Send(m)) => { self.outbox.push(m); self.set(|_| {}); }
                    Some(Command::DropSession(s)) => self.outbox.drop_session(&s),
                },
            }
        }
    }

    async fn relay_token(&mut self) -> Result<vpd_proto::Secret, (Verdict, String)> {
        if let Some((t, exp)) = &self.token {
            if *exp > jiff::Timestamp::now() + jiff::SignedDuration::from_secs(30) {
                return Ok(t.clone());
            }
        }
        let credential = credential_of(&self.pairing).map_err(|e| (Verdict::Transient, e.message))?;
        let platform = Platform::new(&self.pairing.server_url, self.pairing.insecure_http, self.pairing.ca_pem.as_deref())
            .map_err(|e| (Verdict::Transient, e.message))?;
        let body = RuntimeCredential {
            workspace_id: self.pairing.workspace_id.clone(),
            runtime_target_id: self.pairing.runtime_target_id.clone(),
            credential,
        };
        match platform.relay_token(&body).await {
            Ok(t) => {
                let exp = t.expires_at.parse().unwrap_or_else(|_| jiff::Timestamp::now() + jiff::SignedDuration::from_secs(300));
                self.token = Some((t.relay_token.clone(), exp));
                Ok(t.relay_token)
            }
            Err(CallError::Refused { status, error, message }) => {
                self.last_code = Some(format!("token_{status}"));
                Err((relay_policy::on_token_error(status, &error), message))
            }
            Err(e) => Err((Verdict::Transient, e.into_error().message)),
        }
    }

    async fn connect_once(&mut self) -> Outcome {
        let token = match self.relay_token().await {
            Ok(t) => t,
            Err((v, why)) => return Outcome::Verdict(v, why),
        };
        let p = &self.pairing;
        let mut url = match url::Url::parse(&p.relay_endpoint) {
            Ok(u) => u,
            Err(e) => return Outcome::Verdict(Verdict::Transient, format!("relay endpoint {:?}: {e}", p.relay_endpoint)),
        };
        url.query_pairs_mut()
            .append_pair("role", ROLE)
            .append_pair("features", vpd_proto::relay::FEATURES)
            .append_pair("workspaceId", &p.workspace_id)
            .append_pair("runtimeTargetId", &p.runtime_target_id);
        let mut request = match url.as_str().into_client_request() {
            Ok(r) => r,
            Err(e) => return Outcome::Verdict(Verdict::Transient, e.to_string()),
        };
        let bearer = match format!("Bearer {}", token.expose()).parse() {
            Ok(h) => h,
            Err(_) => {
                self.token = None;
                return Outcome::Verdict(Verdict::Transient, "the platform sent a relay token that is not a valid header value".into());
            }
        };
        request.headers_mut().insert("Authorization", bearer);
        let config = tungstenite::protocol::WebSocketConfig::default().max_message_size(Some(MAX_MESSAGE)).max_frame_size(Some(MAX_MESSAGE));
        let connect = async {
            let host = url.host_str().unwrap_or_default().trim_start_matches('[').trim_end_matches(']').to_string();
            let port = url.port_or_known_default().unwrap_or(443);
            // The same TLS configuration and proxy rules as the platform's HTTP client.
            let tls = crate::tls::client_config(p.ca_pem.as_deref()).map_err(|e| std::io::Error::other(e.message))?;
            let stream: Box<dyn crate::proxy::Io> = match crate::proxy::Proxies::current().for_url(&url) {
                Some(proxy) => crate::proxy::connect(&proxy, &host, port, tls.clone()).await?,
                None => {
                    let s = tokio::net::TcpStream::connect((host.as_str(), port)).await?;
                    let _ = s.set_nodelay(true);
                    Box::new(s)
                }
            };
            tokio_tungstenite::client_async_tls_with_config(request, stream, Some(config), Some(tokio_tungstenite::Connector::Rustls(tls)))
                .await
                .map_err(|e| std::io::Error::other(e.to_string()))
        };
        let (mut ws, _) = match tokio::time::timeout(HANDSHAKE_TIMEOUT, connect).await {
            Err(_) => return Outcome::Verdict(Verdict::Transient, format!("{}: connection timed out", p.relay_endpoint)),
            Ok(Err(e)) => return Outcome::Verdict(Verdict::Transient, format!("{}: {e}", p.relay_endpoint)),
            Ok(Ok(c)) => c,
        };

        // Challenge → proof → ready.
        let resume = match tokio::time::timeout(HANDSHAKE_TIMEOUT, self.handshake(&mut ws)).await {
            Err(_) => return Outcome::Verdict(Verdict::Transient, "the relay did not complete the handshake in time".into()),
            Ok(Err(o)) => return o,
            Ok(Ok(r)) => r,
        };
        self.inflight.clear();
        let since = crate::now_rfc3339();
        self.set(|s| {
            s.state = crate::states::BridgeState::Connected;
            s.connected_since = Some(since);
            s.next_retry_at = None;
        });
        tracing::info!(workspace = %self.pairing.workspace_id, "relay connected");
        // A resume point above what was ever sent is not believed.
        let resume: std::collections::BTreeMap<String, u64> = resume
            .into_iter()
            .map(|(s, q)| {
                let top = self.highest_sent.get(&s).copied().unwrap_or(0);
                (s, q.min(top))
            })
            .collect();
        for m in self.outbox.resume(&resume) {
            if let Err(e) = send(&mut ws, &m).await {
                return Outcome::Verdict(Verdict::Transient, e);
            }
            self.count_sent(&m);
        }
        self.set(|_| {});
        self.serve(ws).await
    }

    async fn handshake<S>(&mut self, ws: &mut tokio_tungstenite::WebSocketStream<S>) -> Result<std::collections::BTreeMap<String, u64>, Outcome>
    where
        S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
    {
        let nonce = match next_msg(ws).await? {
            RelayMsg::Challenge { nonce } => nonce,
            other => return Err(Outcome::Verdict(Verdict::Transient, format!("the relay sent {other:?} instead of a challenge"))),
        };
        if nonce.len() < 16 || nonce.len() > 256 {
            return Err(Outcome::Verdict(Verdict::Transient, "the relay's challenge is not a nonce".into()));
        }
        let p = &self.pairing;
        let msg = proof_message(&p.workspace_id, &p.runtime_target_id, &p.relay_endpoint, &nonce);
        let proof = DaemonMsg::Proof { signature: B64.encode(self.identity.sign(msg.as_bytes())) };
        send(ws, &proof).await.map_err(|e| Outcome::Verdict(Verdict::Transient, e))?;
        match next_msg(ws).await? {
            RelayMsg::Ready { resume } => Ok(resume),
            other => Err(Outcome::Verdict(Verdict::Transient, format!("the relay sent {other:?} instead of ready"))),
        }
    }

    /// Replaces a message the relay refused (see [`Outbox::refused`]) and tells the backend.
    /// Returns what to send now, if anything.
    async fn refused(&mut self, session_id: String, seq: u64, reason: String) -> Option<Vec<DaemonMsg>> {
        let reason = vpd_proto::limits::clean(&reason, 200);
        let (resend, dropped) = match self.outbox.refused(&session_id, seq)? {
            Refusal::Replaced { resend } => (Some(resend), false),
            Refusal::Dropped { dropped } => {
                self.set(|s| s.frames_dropped += dropped as u64);
                (None, true)
            }
        };
        tracing::warn!(workspace = %self.pairing.workspace_id, session = %session_id, seq, %reason, dropped, "the relay refused a message");
        let (pairing_id, workspace_id) = (self.pairing.pairing_id.clone(), self.pairing.workspace_id.clone());
        let _ = self.events.send(Event::Refused { pairing_id, workspace_id, session_id, seq, reason, dropped }).await;
        resend
    }

    fn count_sent(&mut self, m: &DaemonMsg) {
        if let Some((session, seq)) = m.position() {
            self.status.lock().unwrap().frames_sent += 1;
            let top = self.highest_sent.entry(session.to_string()).or_insert(0);
            *top = (*top).max(seq);
            self.inflight.entry(session.to_string()).or_default().push_back((seq, std::time::Instant::now()));
        }
    }

    fn count_acked(&mut self, session: &str, seq: u64) {
        let now = std::time::Instant::now();
        let mut lat = self.latencies.lock().unwrap();
        if let Some(q) = self.inflight.get_mut(session) {
            while q.front().is_some_and(|(s, _)| *s <= seq) {
                let (_, at) = q.pop_front().unwrap();
                if lat.len() == LATENCY_SAMPLES {
                    lat.pop_front();
                }
                lat.push_back(now.duration_since(at).as_micros().min(u32::MAX as u128) as u32);
            }
            if q.is_empty() {
                self.inflight.remove(session);
            }
        }
    }

    async fn serve<S>(&mut self, mut ws: tokio_tungstenite::WebSocketStream<S>) -> Outcome
    where
        S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
    {
        let mut ping = tokio::time::interval(ping_every());
        ping.tick().await;
        let mut pong_due: Option<tokio::time::Instant> = None;
        let mut last_ack = tokio::time::Instant::now();
        // While the relay throttles: until when, and whether messages wait unsent.
        let mut throttled_until: Option<tokio::time::Instant> = None;
        let mut holding = false;
        loop {
            // Waiting for acks with a full buffer: a relay that stops acknowledging for 10 s
            // is treated as dead, so senders are never held up longer than that.
            if self.outbox.is_filling() && last_ack.elapsed() > Duration::from_secs(10) {
                let _ = ws.close(None).await;
                return Outcome::Verdict(Verdict::Transient, "the relay stopped acknowledging frames".into());
            }
            let deadline = pong_due.unwrap_or_else(|| tokio::time::Instant::now() + Duration::from_secs(3600));
            tokio::select! {
                incoming = ws.next() => match incoming {
                    None => return Outcome::Verdict(Verdict::Transient, "the relay closed the connection".into()),
                    Some(Err(e)) => return Outcome::Verdict(Verdict::Transient, format!("relay connection: {e}")),
                    Some(Ok(Message::Close(frame))) => return closed(frame),
                    Some(Ok(Message::Pong(_))) => {
                        pong_due = None;
                        self.healthy = true;
                        self.renewals = 0;
                    }
                    Some(Ok(Message::Text(t))) => match serde_json::from_str::<RelayMsg>(&t) {
                        Ok(RelayMsg::Ack { session_id, seq }) => {
                            // An ack above what was sent would drop unsent frames silently.
                            let seq = seq.min(self.highest_sent.get(&session_id).copied().unwrap_or(0));
                            self.healthy = true;
                            self.renewals = 0;
                            last_ack = tokio::time::Instant::now();
                            let before = self.outbox.len();
                            self.count_acked(&session_id, seq);
                            self.outbox.ack(&session_id, seq);
                            let acked = (before - self.outbox.len()) as u64;
                            self.set(|s| s.frames_acked += acked);
                        }
                        Ok(RelayMsg::Throttle { retry_after_ms }) => {
                            // The relay is alive and pacing: hold new messages back (they
                            // wait in the buffer) rather than pile them onto the socket.
                            last_ack = tokio::time::Instant::now();
                            throttled_until = Some(last_ack + Duration::from_millis(retry_after_ms.clamp(50, 60_000)));
                            self.set(|s| s.throttled = true);
                        }
                        Ok(RelayMsg::SessionRefused { session_id, error }) => {
                            let error = vpd_proto::limits::clean(&error, 100);
                            tracing::warn!(workspace = %self.pairing.workspace_id, session = %session_id, %error, "the relay refused a new session; it runs local-only");
                            self.outbox.drop_session(&session_id);
                            self.refused_sessions.insert(session_id.clone());
                            self.highest_sent.remove(&session_id);
                            self.inflight.remove(&session_id);
                            self.set(|_| {});
                            let (pairing_id, workspace_id) = (self.pairing.pairing_id.clone(), self.pairing.workspace_id.clone());
                            let _ = self.events.send(Event::SessionRefused { pairing_id, workspace_id, session_id, error }).await;
                        }
                        Ok(RelayMsg::Refused { session_id, seq, reason }) => {
                            if let Some(resend) = self.refused(session_id, seq, reason).await {
                                for m in &resend {
                                    if let Err(e) = send(&mut ws, m).await {
                                        return Outcome::Verdict(Verdict::Transient, e);
                                    }
                                    self.count_sent(m);
                                }
                                self.set(|_| {});
                            }
                        }
                        Ok(other) => tracing::debug!(?other, "unexpected relay message"),
                        Err(e) => {
                            let _ = ws.close(Some(CloseFrame { code: 4400.into(), reason: "malformed".into() })).await;
                            return Outcome::Verdict(Verdict::Transient, format!("the relay sent a malformed message: {e}"));
                        }
                    },
                    Some(Ok(_)) => {}
                },
                c = self.ctl.recv() => match c {
                    None | Some(Control::Stop) => {
                        let _ = ws.close(Some(CloseFrame { code: 1000.into(), reason: "".into() })).await;
                        return Outcome::Stopped;
                    }
                    Some(Control::Reconnect) => {
                        let _ = ws.close(None).await;
                        return Outcome::Verdict(Verdict::RenewToken, "reconnect requested".into());
                    }
                },
                _ = tokio::time::sleep_until(throttled_until.unwrap_or(deadline)), if throttled_until.is_some() => {
                    throttled_until = None;
                    self.set(|s| s.throttled = false);
                }
                // After a throttle: send what waited, about 1 MiB at a time, back to this loop
                // between chunks so acks, notes and pings are heard; gaps trimmed to what is
                // already on the wire. New messages queue behind it until it is all out.
                _ = std::future::ready(()), if holding && throttled_until.is_none() => {
                    let sent = &self.highest_sent;
                    let chunk = self.outbox.unsent(|session| sent.get(session).copied(), 1 << 20);
                    if chunk.is_empty() {
                        holding = false;
                        continue;
                    }
                    let mut result = Ok(());
                    for m in &chunk {
                        let text = serde_json::to_string(m).expect("messages serialize");
                        if let Err(e) = ws.feed(Message::Text(text.into())).await {
                            result = Err(format!("sending to the relay: {e}"));
                            break;
                        }
                        self.count_sent(m);
                    }
                    if result.is_ok() {
                        result = ws.flush().await.map_err(|e| format!("sending to the relay: {e}"));
                    }
                    self.set(|_| {});
                    if let Err(e) = result {
                        return Outcome::Verdict(Verdict::Transient, e);
                    }
                }
                _ = tokio::time::sleep(Duration::from_millis(500)), if self.outbox.is_filling() && throttled_until.is_none() => {}
                // Throttled, messages are taken even with a filling buffer (see below).
                cmd = self.rx.recv(), if !self.outbox.is_filling() || throttled_until.is_some() => match cmd {
                    None => {
                        let _ = ws.close(Some(CloseFrame { code: 1000.into(), reason: "".into() })).await;
                        return Outcome::Stopped;
                    }
                    Some(Command::DropSession(s)) => self.outbox.drop_session(&s),
                    // A session the relay refused (quota): nothing of it is sent again.
                    Some(Command::Send(m)) if self.is_refused(&m) => {}
                    // Throttled (or still sending what waited): keep taking messages into the
                    // buffer without sending, so the sessions that make them are never held
                    // up (a full buffer makes gaps).
                    Some(Command::Send(m)) if throttled_until.is_some() || holding => {
                        self.outbox.push(m);
                        holding = true;
                        self.set(|_| {});
                    }
                    Some(Command::Send(m)) => {
                        // Write this message and whatever else is already waiting (up to
                        // 512, and only while the buffer has room), then flush once: one
                        // system call for a burst of frames.
                        let mut result = Ok(());
                        let mut next = Some(m);
                        let mut written = 0;
                        while let Some(m) = next.take() {
                            if result.is_ok() {
                                let text = serde_json::to_string(&m).expect("messages serialize");
                                result = ws.feed(Message::Text(text.into())).await.map_err(|e| format!("sending to the relay: {e}"));
                            }
                            self.count_sent(&m);
                            self.outbox.push(m);
                            written += 1;
                            if written >= 512 || self.outbox.is_filling() {
                                break;
                            }
                            match self.rx.try_recv() {
                                Ok(Command::Send(m)) if self.is_refused(&m) => {}
                                Ok(Command::Send(m)) => next = Some(m),
                                Ok(Command::DropSession(s)) => self.outbox.drop_session(&s),
                                Err(_) => {}
                            }
                        }
                        if result.is_ok() {
                            result = ws.flush().await.map_err(|e| format!("sending to the relay: {e}"));
                        }
                        self.set(|_| {});
                        if let Err(e) = result {
                            return Outcome::Verdict(Verdict::Transient, e);
                        }
                    }
                },
                _ = ping.tick() => {
                    if ws.send(Message::Ping(Vec::new().into())).await.is_err() {
                        return Outcome::Verdict(Verdict::Transient, "ping failed".into());
                    }
                    pong_due.get_or_insert(tokio::time::Instant::now() + pong_timeout());
                }
                _ = tokio::time::sleep_until(deadline), if pong_due.is_some() => {
                    return Outcome::Verdict(Verdict::Transient, format!("no pong from the relay within {} s", pong_timeout().as_secs()));
                }
            }
        }
    }
}

fn closed(frame: Option<CloseFrame>) -> Outcome {
    match frame {
        Some(f) => {
            let code = u16::from(f.code);
            let reason = f.reason.to_string();
            Outcome::Closed(code, relay_policy::on_close(code, &reason), format!("the relay closed the connection ({code} {reason})"))
        }
        None => Outcome::Verdict(Verdict::Transient, "the relay closed the connection".into()),
    }
}

async fn send<S>(ws: &mut tokio_tungstenite::WebSocketStream<S>, m: &DaemonMsg) -> Result<(), String>
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
{
    let text = serde_json::to_string(m).expect("messages serialize");
    ws.send(Message::Text(text.into())).await.map_err(|e| format!("sending to the relay: {e}"))
}

async fn next_msg<S>(ws: &mut tokio_tungstenite::WebSocketStream<S>) -> Result<RelayMsg, Outcome>
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
{
    loop {
        match ws.next().await {
            None => return Err(Outcome::Verdict(Verdict::Transient, "the relay closed the connection during the handshake".into())),
            Some(Err(e)) => return Err(Outcome::Verdict(Verdict::Transient, format!("relay handshake: {e}"))),
            Some(Ok(Message::Close(f))) => return Err(closed(f)),
            Some(Ok(Message::Text(t))) => {
                return serde_json::from_str(&t).map_err(|e| Outcome::Verdict(Verdict::Transient, format!("the relay sent a malformed message: {e}")))
            }
            Some(Ok(_)) => continue,
        }
    }
}

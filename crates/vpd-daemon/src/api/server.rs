//! The daemon side of the local API. Every connection is checked first: the peer's uid must
//! be ours (SO_PEERCRED), otherwise it is closed without reading a byte.

use super::protocol::{Confirm, PairEvent, Pong, Reply, Request, SessionStartParams, StreamItem, MAX_LINE};
use crate::daemon::State;
use crate::error::{Error, ErrorCode, Result};
use crate::home::Home;
use crate::pairing::{self, PairUi};
use crate::sessions::{self, SessionInfo};
use std::os::unix::fs::PermissionsExt;
use std::sync::Arc;
use std::time::Duration;
use tokio::io::{AsyncBufRead, AsyncBufReadExt, AsyncReadExt, AsyncWrite, AsyncWriteExt, BufReader};
use tokio::net::{UnixListener, UnixStream};
use tokio::sync::mpsc;

/// Binds `vpd.sock` (0600). Call only while holding the daemon lock: a leftover socket of a
/// dead daemon is removed first.
pub fn bind(home: &Home) -> Result<UnixListener> {
    let path = home.socket();
    let _ = std::fs::remove_file(&path);
    let listener = UnixListener::bind(&path).map_err(|e| Error::io(format!("listening on {}", path.display()), e))?;
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).map_err(|e| Error::io(path.display(), e))?;
    Ok(listener)
}

pub async fn serve(listener: UnixListener, state: Arc<State>) {
    let uid = unsafe { libc::geteuid() };
    loop {
        let stream = match listener.accept().await {
            Ok((s, _)) => s,
            Err(e) => {
                tracing::warn!(error = %e, "accept failed");
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        match stream.peer_cred() {
            Ok(cred) if cred.uid() == uid => {}
            Ok(cred) => {
                tracing::warn!(peer_uid = cred.uid(), "refused a local API connection from another user");
                continue;
            }
            Err(e) => {
                tracing::warn!(error = %e, "refused a local API connection without peer credentials");
                continue;
            }
        }
        let state = state.clone();
        tokio::spawn(async move {
            if let Err(e) = handle(stream, state).await {
                tracing::debug!(error = %e, "local API connection ended with an error");
            }
        });
    }
}

async fn write_reply<W: AsyncWrite + Unpin>(w: &mut W, reply: &Reply) -> std::io::Result<()> {
    let mut line = serde_json::to_vec(reply).expect("replies serialize");
    line.push(b'\n');
    w.write_all(&line).await?;
    w.flush().await
}

/// Reads one line of at most MAX_LINE bytes; `None` at end of stream.
pub(crate) async fn read_line<R: AsyncBufRead + Unpin>(r: &mut R) -> std::io::Result<Option<String>> {
    let mut buf = Vec::new();
    let n = (&mut *r).take(MAX_LINE as u64 + 1).read_until(b'\n', &mut buf).await?;
    if n == 0 {
        return Ok(None);
    }
    if buf.len() > MAX_LINE {
        return Err(std::io::Error::new(std::io::ErrorKind::InvalidData, "line too long"));
    }
    Ok(Some(String::from_utf8_lossy(&buf).into_owned()))
}

fn to_reply<T: serde::Serialize>(r: Result<T>) -> Reply {
    match r {
        Ok(v) => Reply::Result { result: serde_json::to_value(v).expect("results serialize") },
        Err(e) => Reply::Error { code: e.code, message: e.message },
    }
}

async fn handle(stream: UnixStream, state: Arc<State>) -> std::io::Result<()> {
    let (read, mut write) = stream.into_split();
    let mut read = BufReader::new(read);
    let line = match tokio::time::timeout(Duration::from_secs(10), read_line(&mut read)).await {
        Ok(Ok(Some(l))) => l,
        _ => return Ok(()),
    };
    let request: Request = match serde_json::from_str(&line) {
        Ok(r) => r,
        Err(e) => {
            let reply = Reply::Error { code: ErrorCode::InvalidArgument, message: format!("not a local API request: {e}") };
            return write_reply(&mut write, &reply).await;
        }
    };
    let reply = match request {
        Request::Ping => to_reply(Ok(Pong { pid: state.pid, version: crate::VERSION.into(), home: state.home.root().display().to_string() })),
        Request::Status => {
            let (home, rt) = (state.home.clone(), state.runtime());
            let report = tokio::task::spawn_blocking(move || crate::status::collect(&home, Some(&rt))).await;
            to_reply(report.map_err(|e| Error::new(ErrorCode::Internal, e.to_string())))
        }
        Request::Unpair(p) => to_reply(state.unpair(&p.org, p.keep_bindings).await),
        Request::UiLink(p) => to_reply(ui_link(&state, p.next.as_deref())),
        Request::Events(p) => return events(&state, p.since, write).await,
        Request::HintReport(p) => {
            let dir = std::path::PathBuf::from(p.dir);
            if !dir.is_absolute() {
                to_reply::<()>(Err(Error::new(ErrorCode::InvalidArgument, "hint_report needs an absolute directory")))
            } else {
                // Answer at once: the shell hook must not wait for the check.
                let st = state.clone();
                tokio::spawn(async move { st.check_hint(dir, "shell").await });
                to_reply(Ok(serde_json::json!({"ok": true})))
            }
        }
        Request::PairJobStart(p) => to_reply(crate::pair_job::start(&state, p)),
        Request::PairJob => to_reply(Ok(state.pair_view())),
        Request::PairJobCancel => to_reply(crate::pair_job::cancel(&state).map(|_| serde_json::json!({"ok": true}))),
        Request::SuggestionAnswer(p) => to_reply(state.answer_suggestion(&p.directory, &p.org_id, p.kind.as_deref(), p.answer).await),
        Request::Reconnect(p) => to_reply(reconnect(&state, p.org.as_deref())),
        Request::SessionStart(p) => to_reply(session_start(&state, p).await),
        Request::SessionFrame(p) => to_reply(session_frame(&state, &p.session_id, p.kind, p.data).await),
        Request::SessionEnd(p) => to_reply(session_end(&state, &p.session_id, p.exit_code, p.reason.as_deref()).await),
        Request::Sessions => {
            let mut list: Vec<SessionInfo> = state.sessions.lock().unwrap().values().map(|s| s.info.clone()).collect();
            list.sort_by(|a, b| a.started_at.cmp(&b.started_at));
            to_reply(Ok(list))
        }
        Request::SessionStream(r) => return session_stream(&state, r.session_id, read, write).await,
        Request::Shutdown => {
            write_reply(&mut write, &to_reply(Ok(serde_json::json!({"stopping": true})))).await?;
            state.shutdown.notify_one();
            return Ok(());
        }
        Request::Pair(params) => return pair(params, read, write, state).await,
    };
    write_reply(&mut write, &reply).await
}

/// Runs a pairing for this connection: events go out as they happen, a `confirm` line comes
/// back after `confirm_replace`, and the client closing the connection (Ctrl-C) cancels it.
async fn pair(
    params: super::protocol::PairParams,
    mut read: BufReader<tokio::net::unix::OwnedReadHalf>,
    mut write: tokio::net::unix::OwnedWriteHalf,
    state: Arc<State>,
) -> std::io::Result<()> {
    let (ev_tx, mut ev_rx) = mpsc::channel::<PairEvent>(8);
    let (cf_tx, cf_rx) = mpsc::channel::<bool>(1);
    let (closed_tx, mut closed_rx) = tokio::sync::oneshot::channel::<()>();
    let (cancel_tx, cancel_rx) = tokio::sync::watch::channel(false);
    tokio::spawn(async move {
        while let Ok(Some(line)) = read_line(&mut read).await {
            if let Ok(c) = serde_json::from_str::<Confirm>(&line) {
                let _ = cf_tx.send(c.confirm).await;
            }
        }
        let _ = closed_tx.send(());
    });
    let store = state.credential_store().await;
    let ui = PairUi { events: ev_tx, confirms: cf_rx, cancelled: cancel_rx };
    let flow = pairing::run(&state.home, &store, params, ui);
    tokio::pin!(flow);
    loop {
        tokio::select! {
            biased;
            Some(event) = ev_rx.recv() => write_reply(&mut write, &Reply::Event { event }).await?,
            result = &mut flow => {
                while let Ok(event) = ev_rx.try_recv() {
                    write_reply(&mut write, &Reply::Event { event }).await?;
                }
                match &result {
                    Err(e) => tracing::warn!(code = %e.code, error = %e.message, "pairing failed"),
                    Ok(p) => state.paired(p),
                }
                return write_reply(&mut write, &to_reply(result)).await;
            }
            _ = &mut closed_rx => {
                tracing::info!("pairing cancelled: the client went away");
                let _ = cancel_tx.send(true);
                // Let the flow cancel the code (or revoke an approval) on the platform.
                let drain = async {
                    loop {
                        tokio::select! {
                            Some(_) = ev_rx.recv() => {}
                            _ = &mut flow => return,
                        }
                    }
                };
                let _ = tokio::time::timeout(Duration::from_secs(15), drain).await;
                return Ok(());
            }
        }
    }
}

fn ui_link(state: &State, next: Option<&str>) -> Result<super::protocol::UiLink> {
    let ui = state.ui.lock().unwrap().clone();
    match ui {
        Some(ui) => Ok(super::protocol::UiLink { url: ui.login_link(next), port: ui.port }),
        None => {
            let why = state.ui_error.lock().unwrap().clone().unwrap_or_else(|| "it is still starting; try again in a moment".into());
            Err(Error::new(ErrorCode::DaemonUnavailable, format!("the web UI is not running: {why}")))
        }
    }
}

/// Writes each new activity entry as a JSON line until the client goes away.
async fn events(state: &State, since: Option<u64>, mut write: tokio::net::unix::OwnedWriteHalf) -> std::io::Result<()> {
    // Subscribe before reading the backlog, so nothing falls between the two; an entry in
    // both is sent once (ids only grow).
    let mut rx = state.notices.subscribe();
    let backlog: Vec<_> = match since {
        Some(n) => state.activity.lock().unwrap().iter().filter(|a| a.id > n).cloned().collect(),
        None => Vec::new(),
    };
    let mut last = backlog.last().map(|a| a.id).or(since).unwrap_or(0);
    write_reply(&mut write, &to_reply(Ok(serde_json::json!({"subscribed": true})))).await?;
    for entry in backlog {
        let mut line = serde_json::to_vec(&entry).expect("activity serializes");
        line.push(b'\n');
        write.write_all(&line).await?;
    }
    loop {
        match rx.recv().await {
            Ok(entry) if since.is_some() && entry.id <= last => {}
            Ok(entry) => {
                last = entry.id;
                let mut line = serde_json::to_vec(&entry).expect("activity serializes");
                line.push(b'\n');
                write.write_all(&line).await?;
            }
            Err(tokio::sync::broadcast::error::RecvError::Lagged(n)) => tracing::warn!(missed = n, "an events listener fell behind"),
            Err(tokio::sync::broadcast::error::RecvError::Closed) => return Ok(()),
        }
    }
}

pub(crate) fn reconnect(state: &State, org: Option<&str>) -> Result<Vec<String>> {
    let config = crate::config::load(&state.home)?;
    let targets: Vec<String> = match org {
        Some(q) => vec![config.select(q)?.workspace_id.clone()],
        None => config.pairings.iter().map(|p| p.workspace_id.clone()).collect(),
    };
    let bridges = state.bridges.lock().unwrap();
    let mut names = Vec::new();
    for ws in targets {
        if let Some(b) = bridges.get(&ws) {
            let _ = b.ctl.send(crate::bridge::Control::Reconnect);
            names.push(config.pairing(&ws).map(|p| p.workspace_name.clone()).unwrap_or(ws));
        }
    }
    Ok(names)
}

async fn session_start(state: &Arc<State>, p: SessionStartParams) -> Result<SessionInfo> {
    let home = state.home.clone();
    let (session, start) = tokio::task::spawn_blocking(move || sessions::start(&home, std::path::Path::new(&p.cwd), &p.agent, p.name))
        .await
        .map_err(|e| Error::new(ErrorCode::Internal, e.to_string()))??;
    let info = session.info.clone();
    let rt = session.runtime_target_id.clone();
    {
        let mut all = state.sessions.lock().unwrap();
        prune(&mut all);
        all.insert(info.session_id.clone(), session);
    }
    if let (Some(msg), Some(org), Some(rt)) = (start, &info.org_id, &rt) {
        if !route(state, org, rt, msg).await {
            state.cut_session(&info.session_id, "no pairing");
        }
    }
    tracing::info!(session = %info.session_id, state = %info.state, org = ?info.org_name, "session started");
    if info.org_id.is_none() {
        // SPEC section 8: the daemon checks for a hint at session start.
        let st = state.clone();
        let dir = std::path::PathBuf::from(&info.cwd);
        tokio::spawn(async move { st.check_hint(dir, "session").await });
    }
    Ok(info)
}

/// Keeps at most 1,000 ended sessions (the oldest go first).
fn prune(all: &mut std::collections::HashMap<String, sessions::Session>) {
    let mut ended: Vec<(String, String)> = all.values().filter_map(|s| s.info.ended_at.clone().map(|e| (e, s.info.session_id.clone()))).collect();
    if ended.len() > 1000 {
        ended.sort();
        for (_, id) in &ended[..ended.len() - 1000] {
            all.remove(id);
        }
    }
}

/// Hands a message to the bridge of exactly the pairing its session is pinned to. False
/// when that pairing has no bridge any more (unpaired, revoked or replaced).
async fn route(state: &State, org: &str, runtime_target_id: &str, msg: vpd_proto::relay::DaemonMsg) -> bool {
    let tx = state.bridges.lock().unwrap().get(org).filter(|b| b.runtime_target_id == runtime_target_id).map(|b| b.tx.clone());
    match tx {
        Some(tx) => tx.send(crate::bridge::Command::Send(msg)).await.is_ok(),
        None => false,
    }
}

/// Largest frame the local API takes (raw bytes): a relay message stays well under 1 MiB.
const MAX_FRAME: usize = 256 * 1024;

fn check_frame(kind: vpd_proto::relay::FrameKind, data: &str) -> Result<()> {
    use base64::Engine;
    if kind == vpd_proto::relay::FrameKind::Gap {
        return Err(Error::new(ErrorCode::InvalidArgument, "gap frames are made by the daemon, not sent to it"));
    }
    if data.len() > MAX_FRAME / 3 * 4 + 4 || base64::engine::general_purpose::STANDARD.decode(data).is_err() {
        return Err(Error::new(ErrorCode::InvalidArgument, "frame data must be base64 (standard) of at most 256 KiB; split larger output"));
    }
    Ok(())
}

/// Numbers and routes one message of a session, in order with its other messages.
async fn session_message(
    state: &State,
    id: &str,
    make: impl FnOnce(&mut sessions::Session) -> Result<Option<vpd_proto::relay::DaemonMsg>>,
) -> Result<SessionInfo> {
    sessions::check_id(id)?;
    let order = state.sessions.lock().unwrap().get(id).map(|s| s.order.clone());
    let order = order.ok_or_else(|| Error::new(ErrorCode::InvalidArgument, format!("no session {id}")))?;
    let _turn = order.lock().await;
    let (msg, org, rt, info) = {
        let mut all = state.sessions.lock().unwrap();
        let s = all.get_mut(id).ok_or_else(|| Error::new(ErrorCode::InvalidArgument, format!("no session {id}")))?;
        let msg = make(s)?;
        (msg, s.info.org_id.clone(), s.runtime_target_id.clone(), s.info.clone())
    };
    if let (Some(msg), Some(org), Some(rt)) = (msg, org, rt) {
        if !route(state, &org, &rt, msg).await {
            state.cut_session(id, "no pairing");
        }
    }
    Ok(info)
}

async fn session_frame(state: &State, id: &str, kind: vpd_proto::relay::FrameKind, data: String) -> Result<serde_json::Value> {
    check_frame(kind, &data)?;
    session_message(state, id, |s| {
        if s.info.ended_at.is_some() {
            return Err(Error::new(ErrorCode::InvalidArgument, format!("session {} has ended", s.info.session_id)));
        }
        Ok(s.frame(kind, data))
    })
    .await?;
    Ok(serde_json::json!({"ok": true}))
}

async fn session_end(state: &State, id: &str, exit_code: Option<i32>, reason: Option<&str>) -> Result<SessionInfo> {
    let info =
        session_message(state, id, |s| Ok(if s.info.ended_at.is_some() { None } else { s.end(exit_code, reason.unwrap_or("exited")) })).await?;
    tracing::info!(session = %id, ?exit_code, "session ended");
    Ok(state.sessions.lock().unwrap().get(id).map(|s| s.info.clone()).unwrap_or(info))
}

/// `vpd run`'s connection: frame lines until an `end` line (or the connection's end, which
/// ends the session as `disconnected`).
async fn session_stream(
    state: &State,
    id: String,
    mut read: BufReader<tokio::net::unix::OwnedReadHalf>,
    mut write: tokio::net::unix::OwnedWriteHalf,
) -> std::io::Result<()> {
    if let Err(e) = sessions::check_id(&id) {
        return write_reply(&mut write, &to_reply::<()>(Err(e))).await;
    }
    loop {
        let item = match read_line(&mut read).await {
            Ok(Some(line)) => match serde_json::from_str::<StreamItem>(&line) {
                Ok(i) => i,
                Err(e) => {
                    let err = Error::new(ErrorCode::InvalidArgument, format!("not a session stream item: {e}"));
                    return write_reply(&mut write, &to_reply::<()>(Err(err))).await;
                }
            },
            _ => {
                let _ = session_end(state, &id, None, Some("disconnected")).await;
                return Ok(());
            }
        };
        match item {
            StreamItem::Frame { kind, data } => {
                if let Err(e) = session_frame(state, &id, kind, data).await {
                    return write_reply(&mut write, &to_reply::<()>(Err(e))).await;
                }
            }
            StreamItem::End { end } => {
                let r = session_end(state, &id, end.exit_code, end.reason.as_deref()).await;
                return write_reply(&mut write, &to_reply(r)).await;
            }
        }
    }
}

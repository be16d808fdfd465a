//! The daemon side of the local API: a transport over [`Backend`], nothing more. Every
//! connection is checked first: the peer must be this user (`os::ipc`: the socket's
//! credentials, the pipe client's token), otherwise it is closed without reading a byte. Each request is decoded, handed to the backend, and its
//! answer written back.

use super::protocol::{Confirm, PairEvent, Reply, Request, StreamItem, MAX_LINE};
use crate::backend::Backend;
use crate::error::{Error, ErrorCode, Result};
use crate::home::Home;
use crate::pairing::PairUi;
use std::sync::Arc;
use std::time::Duration;
use tokio::io::{AsyncBufRead, AsyncBufReadExt, AsyncReadExt, AsyncWrite, AsyncWriteExt, BufReader};
use tokio::io::{ReadHalf, WriteHalf};
use tokio::sync::mpsc;

type Conn = crate::os::ipc::Conn;
type Read = BufReader<ReadHalf<Conn>>;
type Write = WriteHalf<Conn>;

/// Listens for the local API (`vpd.sock`, 0600; a named pipe only this user can open). Call
/// only while holding the daemon lock.
pub fn bind(home: &Home) -> Result<crate::os::ipc::Listener> {
    crate::os::ipc::Listener::bind(home).map_err(|e| Error::io(format!("listening on {}", crate::os::ipc::address(home)), e))
}

pub async fn serve(mut listener: crate::os::ipc::Listener, backend: Arc<Backend>) {
    loop {
        let stream = match listener.accept().await {
            Ok((s, Ok(()))) => s,
            Ok((_, Err(who))) => {
                tracing::warn!(peer = %who, "refused a local API connection from another user");
                continue;
            }
            Err(e) => {
                tracing::warn!(error = %e, "accept failed");
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        let backend = backend.clone();
        tokio::spawn(async move {
            if let Err(e) = handle(stream, backend).await {
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

/// The reply to a [`super::calls::Call`]: its result must be that call's response type.
fn answer<C: super::calls::Call>(r: Result<C::Response>) -> Reply {
    to_reply(r)
}

fn to_reply<T: serde::Serialize>(r: Result<T>) -> Reply {
    match r {
        Ok(v) => Reply::Result { result: serde_json::to_value(v).expect("results serialize") },
        Err(e) => Reply::Error { code: e.code, message: e.message },
    }
}

async fn handle(stream: Conn, backend: Arc<Backend>) -> std::io::Result<()> {
    let (read, mut write) = tokio::io::split(stream);
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
    use super::calls::{self as c, Ack};
    use super::protocol as p;
    let reply = match request {
        Request::Ping => answer::<c::Ping>(Ok(backend.ping())),
        Request::Status => answer::<c::GetStatus>(backend.status().await),
        Request::Unpair(q) => answer::<p::UnpairParams>(backend.unpair(&q.org, q.after()).await),
        Request::Rename(q) => answer::<p::RenameParams>(backend.rename(q.org, q.name).await),
        Request::WatchedChanged => {
            backend.watched_changed();
            answer::<c::WatchedChanged>(Ok(c::Ack::OK))
        }
        Request::ResumeBindings(q) => answer::<p::ResumeBindingsParams>(backend.resume_bindings(q.pairing_id).await),
        Request::UiLink(q) => answer::<p::UiLinkParams>(backend.ui_link(q.next.as_deref())),
        Request::Events(q) => return events(&backend, q.since, write).await,
        Request::HintReport(q) => answer::<p::HintReportParams>(backend.hint_report(std::path::PathBuf::from(q.dir)).map(|_| Ack::OK)),
        Request::PairJobStart(q) => answer::<c::StartPairJob>(backend.pair_job_start(q)),
        Request::PairJob => answer::<c::GetPairJob>(Ok(backend.pair_job_view())),
        Request::PairJobCancel => answer::<c::CancelPairJob>(backend.pair_job_cancel().map(|_| Ack::OK)),
        Request::SuggestionAnswer(q) => {
            answer::<p::SuggestionAnswerParams>(backend.answer_suggestion(&q.directory, &q.org_id, q.kind, q.answer).await)
        }
        Request::Reconnect(q) => answer::<p::ReconnectParams>(backend.reconnect(q.org.as_deref())),
        Request::SessionStart(q) => answer::<p::SessionStartParams>(backend.session_start(q).await),
        Request::SessionFrame(q) => answer::<p::SessionFrameParams>(backend.session_frame(&q.session_id, q.kind, q.data).await.map(|_| Ack::OK)),
        Request::SessionEnd(q) => answer::<p::SessionEndParams>(backend.session_end(&q.session_id, q.exit_code, q.reason.as_deref()).await),
        Request::Sessions => answer::<c::ListSessions>(Ok(backend.sessions())),
        Request::SessionStream(r) => return session_stream(&backend, r.session_id, read, write).await,
        Request::SessionReattach(r) => {
            match backend.reattach(&r.session_id) {
                Ok(received) => write_reply(&mut write, &to_reply(Ok(super::protocol::Reattached { received }))).await?,
                Err(e) => return write_reply(&mut write, &to_reply::<()>(Err(e))).await,
            }
            return session_stream(&backend, r.session_id, read, write).await;
        }
        Request::Shutdown => {
            write_reply(&mut write, &answer::<c::Shutdown>(Ok(c::Stopping { stopping: true }))).await?;
            backend.request_shutdown();
            return Ok(());
        }
        Request::Pair(params) => return pair(params, read, write, backend).await,
    };
    write_reply(&mut write, &reply).await
}

/// Runs a pairing for this connection: events go out as they happen, a `confirm` line comes
/// back after `confirm_replace`, and the client closing the connection (Ctrl-C) cancels it.
async fn pair(params: super::protocol::PairParams, mut read: Read, mut write: Write, backend: Arc<Backend>) -> std::io::Result<()> {
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
    let ui = PairUi { events: ev_tx, confirms: cf_rx, cancelled: cancel_rx };
    let flow = backend.pair(params, ui);
    tokio::pin!(flow);
    loop {
        tokio::select! {
            biased;
            Some(event) = ev_rx.recv() => write_reply(&mut write, &Reply::Event { event }).await?,
            result = &mut flow => {
                while let Ok(event) = ev_rx.try_recv() {
                    write_reply(&mut write, &Reply::Event { event }).await?;
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
                tracing::info!("pairing cancelled: the platform was told");
                return Ok(());
            }
        }
    }
}

/// Writes each new activity entry as a JSON line until the client goes away.
async fn events(backend: &Backend, since: Option<u64>, mut write: Write) -> std::io::Result<()> {
    // Subscribe before reading the backlog, so nothing falls between the two; an entry in
    // both is sent once (ids only grow).
    let mut rx = backend.subscribe_activity();
    let backlog: Vec<_> = match since {
        Some(n) => backend.activity_since(n),
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

/// `vpd run`'s connection: frame lines until an `end` line (or the connection's end, which
/// ends the session as `disconnected`).
async fn session_stream(backend: &Backend, id: String, mut read: Read, mut write: Write) -> std::io::Result<()> {
    if let Err(e) = crate::sessions::check_id(&id) {
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
                // At a planned stop the session is kept for its client to reattach.
                if !backend.is_stopping() {
                    let _ = backend.session_end(&id, None, Some("disconnected")).await;
                }
                return Ok(());
            }
        };
        match item {
            StreamItem::Frame { kind, data } => {
                if let Err(e) = backend.session_frame(&id, kind, data).await {
                    return write_reply(&mut write, &to_reply::<()>(Err(e))).await;
                }
            }
            StreamItem::End { end } => {
                let r = backend.session_end(&id, end.exit_code, end.reason.as_deref()).await;
                return write_reply(&mut write, &to_reply(r)).await;
            }
        }
    }
}

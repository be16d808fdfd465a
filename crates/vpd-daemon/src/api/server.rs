//! The daemon side of the local API. Every connection is checked first: the peer's uid must
//! be ours (SO_PEERCRED), otherwise it is closed without reading a byte.

use super::protocol::{Confirm, PairEvent, Pong, Reply, Request, MAX_LINE};
use crate::daemon::State;
use crate::error::{Error, ErrorCode, Result};
use crate::home::Home;
use crate::pairing::{self, PairUi};
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
        Request::Ping => to_reply(Ok(Pong {
            pid: state.pid,
            version: crate::VERSION.into(),
            home: state.home.root().display().to_string(),
        })),
        Request::Status => {
            let (home, rt) = (state.home.clone(), state.runtime());
            let report = tokio::task::spawn_blocking(move || crate::status::collect(&home, Some(&rt))).await;
            to_reply(report.map_err(|e| Error::new(ErrorCode::Internal, e.to_string())))
        }
        Request::Unpair(p) => to_reply(pairing::unpair(&state.home, &p.org).await),
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
                if let Err(e) = &result {
                    tracing::warn!(code = %e.code, error = %e.message, "pairing failed");
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

//! `vpd run -- CMD`: runs a command as a session under a pseudo-terminal. The terminal works
//! as usual (raw mode, window size, Ctrl-C reaches the command, its exit code is ours); the
//! output is also streamed, through the daemon, to the org the directory is bound to — or
//! nowhere, and one line on stderr says which. `vpd sessions`, `vpd session …`.

use crate::install::exe;
use crate::output::{show, Out};
use base64::Engine;
use serde_json::json;
use std::io::{IsTerminal, Read, Write};
use std::path::Path;
use std::process::ExitCode;
use std::sync::mpsc;
use std::time::Duration;
use vpd_daemon::api::client;
use vpd_daemon::api::protocol::{Request, SessionEndItem, SessionEndParams, SessionFrameParams, SessionRef, SessionStartParams, StreamItem};
use vpd_daemon::sessions::SessionInfo;
use vpd_daemon::states::SessionState;
use vpd_daemon::{Error, ErrorCode, Home};
use vpd_proto::relay::FrameKind;

const B64: base64::engine::GeneralPurpose = base64::engine::general_purpose::STANDARD;

pub fn run(home: &Home, cwd: &Path, name: Option<String>, command: Vec<String>, no_pty: bool, out: &Out) -> Result<ExitCode, Error> {
    let program = command.first().ok_or_else(|| Error::new(ErrorCode::InvalidArgument, "nothing to run: vpd run -- COMMAND [ARGS…]"))?;
    let cwd = dunce::canonicalize(cwd).map_err(|e| Error::io(cwd.display(), e))?;
    let agent = Path::new(program).file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_else(|| program.clone());

    // The session (and its binding, resolved once, now). Without a daemon the command still
    // runs, locally.
    let session: Option<SessionInfo> = client::ensure_daemon(home, &exe()?).ok().and_then(|_| {
        client::ask(home, SessionStartParams { cwd: cwd.display().to_string(), agent: agent.clone(), name: name.clone() }, Duration::from_secs(10))
            .ok()
    });
    let line = match &session {
        Some(s) if s.state == SessionState::Streaming => format!("vpd: streaming to {}", s.org_name.clone().unwrap_or_default()),
        Some(s) => format!("vpd: local only: {}", local_reason(s.local_reason.as_deref())),
        None => "vpd: local only: the vpd daemon is not available".to_string(),
    };
    if out.json {
        out.json(&json!({"event": "session", "session": session}));
    } else {
        eprintln!("{line}");
    }

    if no_pty {
        return run_piped(home, &cwd, &command, session.as_ref());
    }

    let (cols, rows) = vpd_daemon::os::terminal::size().unwrap_or((80, 24));
    let mut pty = match vpd_daemon::os::pty::Pty::spawn(program, &command[1..], &cwd, cols, rows) {
        Ok(p) => p,
        Err(e) => {
            // The session started for it ends at once, saying why.
            if let Some(s) = &session {
                let end = SessionEndParams { session_id: s.session_id.clone(), exit_code: None, reason: Some("failed_to_start".into()) };
                let _ = client::ask(home, end, Duration::from_secs(10));
            }
            return Err(Error::new(ErrorCode::InvalidArgument, format!("cannot run {program}: {e}")));
        }
    };
    let mut reader = pty.reader().map_err(|e| Error::new(ErrorCode::Internal, e.to_string()))?;
    let mut writer = pty.writer().map_err(|e| Error::new(ErrorCode::Internal, e.to_string()))?;
    let raw = vpd_daemon::os::terminal::RawMode::enter();

    // Frames go to the daemon over one connection, in order, from one thread.
    let (tx, rx) = mpsc::sync_channel::<StreamItem>(1024);
    let streamer = session.as_ref().map(|s| {
        let (home, id) = (home.clone(), s.session_id.clone());
        std::thread::spawn(move || stream(&home, &id, rx))
    });

    // Keyboard → command; at the end of our input, the writer's drop tells the command.
    std::thread::spawn(move || {
        let mut buf = [0u8; 4096];
        let mut stdin = std::io::stdin();
        while let Ok(n) = stdin.read(&mut buf) {
            if n == 0 || writer.write_all(&buf[..n]).is_err() {
                break;
            }
            let _ = writer.flush();
        }
    });

    // Window size changes.
    let resizer = pty.resizer();
    let resize_tx = tx.clone();
    if std::io::stdout().is_terminal() {
        vpd_daemon::os::terminal::on_resize(move || {
            if let Some((cols, rows)) = vpd_daemon::os::terminal::size() {
                resizer.resize(cols, rows);
                let _ = resize_tx.try_send(StreamItem::Frame { kind: FrameKind::Resize, data: B64.encode(format!("{cols}x{rows}")) });
            }
        });
    }

    // Command → terminal (and the session).
    let output_tx = tx.clone();
    let pump = std::thread::spawn(move || {
        let mut buf = [0u8; 16 * 1024];
        let mut stdout = std::io::stdout();
        loop {
            match reader.read(&mut buf) {
                Ok(0) | Err(_) => break,
                Ok(n) => {
                    let _ = stdout.write_all(&buf[..n]);
                    let _ = stdout.flush();
                    let _ = output_tx.send(StreamItem::Frame { kind: FrameKind::Output, data: B64.encode(&buf[..n]) });
                }
            }
        }
    });

    // The exit lets the terminal go; the pump then reads what is left, to the end.
    let code = pty.wait().map_err(|e| Error::io("waiting for the command", e))?;
    let _ = pump.join();
    drop(raw);
    Ok(finish(code, tx, streamer))
}

/// The session's end, once its command exited with `code`: the end item sent, the stream
/// drained; `code` as ours.
fn finish(code: i32, tx: mpsc::SyncSender<StreamItem>, streamer: Option<std::thread::JoinHandle<()>>) -> ExitCode {
    let _ = tx.send(StreamItem::End { end: SessionEndItem { exit_code: Some(code), reason: Some("exited".into()) } });
    drop(tx);
    if let Some(s) = streamer {
        let _ = s.join();
    }
    // A Windows status beyond a byte (a crash, 0xC0000005; Ctrl-C, 0xC000013A) is a failure,
    // never the 0 that clamping a negative number would make of it.
    ExitCode::from(u8::try_from(code).unwrap_or(1))
}

/// `vpd run --no-pty`: the command's output through plain pipes, streamed byte for byte (what
/// a terminal would show is then exactly what the org sees; no pseudo-terminal re-renders
/// it). Standard error is streamed too, and both are passed through; stdin is the command's.
fn run_piped(home: &Home, cwd: &Path, command: &[String], session: Option<&SessionInfo>) -> Result<ExitCode, Error> {
    let program = &command[0];
    let mut child = std::process::Command::new(program)
        .args(&command[1..])
        .current_dir(cwd)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .map_err(|e| Error::new(ErrorCode::InvalidArgument, format!("cannot run {program}: {e}")))?;
    let (tx, rx) = mpsc::sync_channel::<StreamItem>(1024);
    let streamer = session.map(|s| {
        let (home, id) = (home.clone(), s.session_id.clone());
        std::thread::spawn(move || stream(&home, &id, rx))
    });
    let pump = |mut from: Box<dyn Read + Send>, mut to: Box<dyn Write + Send>, tx: mpsc::SyncSender<StreamItem>| {
        std::thread::spawn(move || {
            let mut buf = [0u8; 16 * 1024];
            while let Ok(n) = from.read(&mut buf) {
                if n == 0 {
                    break;
                }
                let _ = to.write_all(&buf[..n]);
                let _ = to.flush();
                let _ = tx.send(StreamItem::Frame { kind: FrameKind::Output, data: B64.encode(&buf[..n]) });
            }
        })
    };
    let out_pump = pump(Box::new(child.stdout.take().expect("piped")), Box::new(std::io::stdout()), tx.clone());
    let err_pump = pump(Box::new(child.stderr.take().expect("piped")), Box::new(std::io::stderr()), tx.clone());
    let status = child.wait().map_err(|e| Error::io("waiting for the command", e))?;
    let _ = (out_pump.join(), err_pump.join());
    Ok(finish(status.code().unwrap_or(1), tx, streamer))
}

fn local_reason(code: Option<&str>) -> String {
    match code {
        Some("no_binding") | None => "no binding".into(),
        Some("streaming_disabled") => "streaming: disabled here".into(),
        Some("binding_untrusted") => "the binding file was not made on this machine (`vpd trust` to trust it)".into(),
        Some("not_paired") => "bound to an org this machine is not paired with".into(),
        Some("binding_invalid") => "the binding file cannot be used (`vpd resolve` says why)".into(),
        Some("binding_waiting") => "the binding waits for its org to be paired again and resumed (`vpd status` lists it)".into(),
        Some("hint_names_another_org") => {
            "warning: this repository's .viewport/workspace.yaml names another org than the folder bound around it; bind it (`vpd bind` here) to stream".into()
        }
        Some(other) => other.into(),
    }
}

/// Sends the session's items to the daemon, in order, over one connection. When the daemon
/// goes away on purpose (a planned restart: `vpd update`), the next one has kept the session:
/// this reattaches, learns how many items it has, and resends the rest, so the stream goes
/// on without a lost or doubled frame.
fn stream(home: &Home, id: &str, rx: mpsc::Receiver<StreamItem>) {
    let mut kept = Kept::default();
    let Ok(mut conn) = client::Connection::open(home) else { return };
    if conn.send(&Request::SessionStream(SessionRef { session_id: id.to_string() })).is_err() {
        return;
    }
    loop {
        let item = match rx.recv_timeout(Duration::from_millis(500)) {
            Ok(item) => item,
            Err(mpsc::RecvTimeoutError::Timeout) => {
                // Idle: notice a daemon that went away now, not at the next output.
                if conn.peer_closed() {
                    match reattach(home, id, &kept) {
                        Some(c) => conn = c,
                        None => return,
                    }
                }
                continue;
            }
            Err(mpsc::RecvTimeoutError::Disconnected) => return,
        };
        let end = matches!(item, StreamItem::End { .. });
        kept.push(item.clone());
        if conn.send(&item).is_err() {
            match reattach(home, id, &kept) {
                Some(c) => conn = c,
                None => return,
            }
        }
        if end {
            // The end's answer; a daemon that stopped before taking it gets it again.
            loop {
                match conn.read_reply() {
                    Ok(vpd_daemon::api::protocol::Reply::Error { code: ErrorCode::DaemonUnavailable, .. }) | Err(_) => {
                        match reattach(home, id, &kept) {
                            Some(c) => conn = c,
                            None => return,
                        }
                    }
                    Ok(_) => return,
                }
            }
        }
    }
}

/// The items sent on the current stream, newest last, bounded: what a reattach may resend.
#[derive(Default)]
struct Kept {
    items: std::collections::VecDeque<StreamItem>,
    /// Items sent in all (the last one in `items` is number `total`).
    total: u64,
    bytes: usize,
}

const KEPT_BYTES: usize = 16 * 1024 * 1024;

impl Kept {
    fn push(&mut self, item: StreamItem) {
        self.bytes += item_size(&item);
        self.items.push_back(item);
        self.total += 1;
        while self.bytes > KEPT_BYTES && self.items.len() > 1 {
            if let Some(old) = self.items.pop_front() {
                self.bytes -= item_size(&old);
            }
        }
    }

    /// The items after the daemon's `received`, and how many are no longer kept.
    fn after(&self, received: u64) -> (Vec<&StreamItem>, u64) {
        let first = self.total - self.items.len() as u64; // items before the kept ones
        let lost = first.saturating_sub(received);
        let skip = received.saturating_sub(first) as usize;
        (self.items.iter().skip(skip).collect(), lost)
    }
}

fn item_size(item: &StreamItem) -> usize {
    match item {
        StreamItem::Frame { data, .. } => data.len() + 32,
        StreamItem::End { .. } => 64,
    }
}

/// Waits (at most a minute) for a daemon that has the session, and resends what it lacks.
fn reattach(home: &Home, id: &str, kept: &Kept) -> Option<client::Connection> {
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    while std::time::Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(200));
        let Ok(mut conn) = client::Connection::open(home) else { continue };
        if conn.send(&Request::SessionReattach(SessionRef { session_id: id.to_string() })).is_err() {
            continue;
        }
        conn.set_timeout(Some(Duration::from_secs(10)));
        let received = match conn.read_reply() {
            Ok(vpd_daemon::api::protocol::Reply::Result { result }) => {
                match serde_json::from_value::<vpd_daemon::api::protocol::Reattached>(result) {
                    Ok(r) => r.received,
                    Err(_) => return None,
                }
            }
            // Still the old daemon on its way out, or the new one starting.
            Ok(vpd_daemon::api::protocol::Reply::Error { code: ErrorCode::DaemonUnavailable, .. }) | Err(_) => continue,
            Ok(vpd_daemon::api::protocol::Reply::Error { message, .. }) => {
                eprintln!("\r\nvpd: the session no longer streams: {message}\r");
                return None;
            }
            Ok(_) => return None,
        };
        conn.set_timeout(None);
        let (rest, lost) = kept.after(received);
        if lost > 0 {
            eprintln!("\r\nvpd: {lost} item(s) of this session were lost while the daemon restarted\r");
        }
        if rest.iter().all(|item| conn.send(item).is_ok()) {
            return Some(conn);
        }
    }
    eprintln!("\r\nvpd: the daemon did not come back within a minute; this session goes on locally only\r");
    None
}

pub fn sessions(home: &Home, out: &Out) -> Result<ExitCode, Error> {
    let list: Vec<SessionInfo> = match client::ask(home, vpd_daemon::api::calls::ListSessions, Duration::from_secs(5)) {
        Ok(l) => l,
        Err(e) if e.code == ErrorCode::DaemonUnavailable => Vec::new(),
        Err(e) => return Err(e),
    };
    out.emit(&list, || {
        if list.is_empty() {
            return "No sessions.".into();
        }
        let mut s = String::new();
        for x in &list {
            let org = x.org_name.clone().map(|o| format!(" → {o}")).unwrap_or_default();
            s.push_str(&format!("{}  {:<12} {:<16} {}{org}  [{}]\n", x.session_id, x.agent, x.started_at, show(Path::new(&x.cwd)), x.state));
        }
        s.trim_end().to_string()
    });
    Ok(ExitCode::SUCCESS)
}

/// `vpd session start|frame|end`: the same API for scripts and integrations.
pub fn session_start(home: &Home, cwd: &Path, agent: String, name: Option<String>, out: &Out) -> Result<ExitCode, Error> {
    let cwd = dunce::canonicalize(cwd).map_err(|e| Error::io(cwd.display(), e))?;
    client::ensure_daemon(home, &exe()?)?;
    let s: SessionInfo = client::ask(home, SessionStartParams { cwd: cwd.display().to_string(), agent, name }, Duration::from_secs(10))?;
    out.emit(&s, || s.session_id.clone());
    if !out.json {
        eprintln!(
            "{}",
            match s.org_name.as_deref() {
                Some(o) if s.state == SessionState::Streaming => format!("vpd: streaming to {o}"),
                _ => format!("vpd: local only: {}", local_reason(s.local_reason.as_deref())),
            }
        );
    }
    Ok(ExitCode::SUCCESS)
}

pub fn session_frame(home: &Home, id: String, kind: FrameKind, data: Option<String>, out: &Out) -> Result<ExitCode, Error> {
    let bytes = match data {
        Some(d) => d.into_bytes(),
        None => {
            let mut b = Vec::new();
            std::io::stdin().read_to_end(&mut b).map_err(|e| Error::io("reading stdin", e))?;
            b
        }
    };
    let v = client::ask(home, SessionFrameParams { session_id: id, kind, data: B64.encode(bytes) }, Duration::from_secs(30))?;
    out.emit(&v, String::new);
    Ok(ExitCode::SUCCESS)
}

pub fn session_end(home: &Home, id: String, exit_code: Option<i32>, reason: Option<String>, out: &Out) -> Result<ExitCode, Error> {
    let s: SessionInfo = client::ask(home, SessionEndParams { session_id: id, exit_code, reason }, Duration::from_secs(30))?;
    out.emit(&s, || format!("session {} ended", s.session_id));
    Ok(ExitCode::SUCCESS)
}

pub fn reconnect(home: &Home, org: Option<String>, out: &Out) -> Result<ExitCode, Error> {
    client::ensure_daemon(home, &exe()?)?;
    let names: Vec<String> = client::ask(home, vpd_daemon::api::protocol::ReconnectParams { org }, Duration::from_secs(10))?;
    out.emit(&json!({"reconnecting": names}), || {
        if names.is_empty() {
            "No pairing to reconnect.".into()
        } else {
            format!("Reconnecting {}.", names.join(", "))
        }
    });
    Ok(ExitCode::SUCCESS)
}

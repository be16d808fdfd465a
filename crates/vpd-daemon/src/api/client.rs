//! The blocking client of the local API (what `vpd` uses: no async runtime needed for a
//! status call), and starting the daemon on demand.

use super::protocol::{Confirm, PairEvent, PairParams, Paired, Reply, Request, MAX_LINE};
use crate::error::{Error, ErrorCode, Result};
use crate::home::Home;
use crate::os::ipc::Client;
use serde::de::DeserializeOwned;
use std::io::{BufRead, BufReader, Read, Write};
use std::path::Path;
use std::time::{Duration, Instant};

fn unavailable(home: &Home, e: std::io::Error) -> Error {
    Error::new(
        ErrorCode::DaemonUnavailable,
        format!("the vpd daemon is not running for {} ({e}); start it with `vpd daemon` (or any command that needs it)", home.root().display()),
    )
}

/// An open connection carrying one request.
pub struct Connection {
    reader: BufReader<Client>,
    writer: Client,
}

impl Connection {
    pub fn open(home: &Home) -> Result<Connection> {
        let s = Client::connect(home).map_err(|e| unavailable(home, e))?;
        let writer = s.try_clone().map_err(|e| Error::io("local API", e))?;
        Ok(Connection { reader: BufReader::new(s), writer })
    }

    pub fn send<T: serde::Serialize>(&mut self, msg: &T) -> Result<()> {
        let mut line = serde_json::to_vec(msg).expect("requests serialize");
        line.push(b'\n');
        self.writer.write_all(&line).map_err(|e| Error::io("writing to the daemon", e))
    }

    pub fn read_reply(&mut self) -> Result<Reply> {
        let mut buf = Vec::new();
        let n = (&mut self.reader).take(MAX_LINE as u64 + 1).read_until(b'\n', &mut buf).map_err(|e| Error::io("reading from the daemon", e))?;
        if n == 0 {
            return Err(Error::new(ErrorCode::DaemonUnavailable, "the daemon closed the connection without answering; see `vpd logs`"));
        }
        serde_json::from_slice(&buf).map_err(|e| Error::new(ErrorCode::Internal, format!("the daemon answered something unexpected: {e}")))
    }

    pub fn set_timeout(&mut self, t: Option<Duration>) {
        self.reader.get_mut().set_read_timeout(t);
    }

    /// Whether the daemon closed its end, or wrote something on a connection that expects
    /// nothing yet (an error it sends before closing). Does not wait.
    pub fn peer_closed(&mut self) -> bool {
        !self.reader.buffer().is_empty() || self.writer.peer_closed()
    }
}

fn result<T: DeserializeOwned>(reply: Reply) -> Result<T> {
    match reply {
        Reply::Result { result } => {
            serde_json::from_value(result).map_err(|e| Error::new(ErrorCode::Internal, format!("the daemon's answer has an unexpected shape: {e}")))
        }
        Reply::Error { code, message } => Err(Error::new(code, message)),
        Reply::Event { .. } => Err(Error::new(ErrorCode::Internal, "unexpected event from the daemon")),
    }
}

/// Subscribes to the daemon's activity entries as they happen (the tray's notifications);
/// the iterator ends when the daemon goes away.
pub fn events(home: &Home, since: Option<u64>) -> Result<impl Iterator<Item = crate::activity::Activity>> {
    let mut c = Connection::open(home)?;
    c.send(&Request::Events(super::protocol::EventsParams { since }))?;
    result::<serde_json::Value>(c.read_reply()?)?;
    Ok(c.reader.lines().map_while(|l| l.ok()).filter_map(|l| serde_json::from_str(&l).ok()))
}

/// Sends one request and returns its answer, typed by the request.
pub fn ask<C: super::calls::Call>(home: &Home, call: C, timeout: Duration) -> Result<C::Response> {
    self::call(home, &call.into_request(), timeout)
}

/// Sends one request and returns its result.
fn call<T: DeserializeOwned>(home: &Home, request: &Request, timeout: Duration) -> Result<T> {
    let mut c = Connection::open(home)?;
    c.set_timeout(Some(timeout));
    c.send(request)?;
    result(c.read_reply()?)
}

/// Runs a pairing. `on_event` sees each event; for `ConfirmReplace` its answer is sent back
/// (`None` counts as no).
pub fn pair(home: &Home, params: PairParams, mut on_event: impl FnMut(&PairEvent) -> Option<bool>) -> Result<Paired> {
    let mut c = Connection::open(home)?;
    c.send(&Request::Pair(params))?;
    loop {
        match c.read_reply()? {
            Reply::Event { event } => {
                let answer = on_event(&event);
                if matches!(event, PairEvent::ConfirmReplace { .. }) {
                    c.send(&Confirm { confirm: answer.unwrap_or(false) })?;
                }
            }
            other => return result(other),
        }
    }
}

/// Asks the daemon of `home` to stop (a planned stop: it keeps running sessions and unacked
/// messages for the next one) and waits until it has released the home. `false` if none ran.
pub fn stop_daemon(home: &Home) -> Result<bool> {
    let Some(pid) = crate::daemon::running_pid(home) else { return Ok(false) };
    let asked = ask(home, super::calls::Shutdown, Duration::from_secs(5)).is_ok();
    if !asked {
        crate::os::process::terminate(pid);
    }
    let deadline = Instant::now() + Duration::from_secs(10);
    while Instant::now() < deadline {
        if crate::daemon::running_pid(home).is_none() {
            return Ok(true);
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    Err(Error::new(ErrorCode::DaemonUnavailable, format!("the daemon (pid {pid}) did not stop within 10 s; see `vpd logs`")))
}

/// The daemon binary that ships beside the `vpd` binary `vpd_exe` (`vpd-daemon`).
pub fn daemon_exe(vpd_exe: &Path) -> Result<std::path::PathBuf> {
    let exe = vpd_exe.with_file_name(format!("vpd-daemon{}", std::env::consts::EXE_SUFFIX));
    if exe.is_file() {
        Ok(exe)
    } else {
        Err(Error::new(ErrorCode::DaemonUnavailable, format!("{} is missing: vpd and vpd-daemon ship together; reinstall vpd", exe.display())))
    }
}

/// Pings the daemon of `home`, starting it (the `vpd-daemon` beside `exe`, the `vpd` binary)
/// in the background when none answers.
pub fn ensure_daemon(home: &Home, exe: &Path) -> Result<super::protocol::Pong> {
    if let Ok(p) = call::<super::protocol::Pong>(home, &Request::Ping, Duration::from_secs(2)) {
        super::protocol::check_protocol(&p)?;
        return Ok(p);
    }
    home.ensure()?;
    crate::home::ensure_private_dir(&home.logs())?;
    let stderr_path = home.logs().join("daemon-stderr.log");
    let mut o = crate::os::files::private_options();
    o.create(true).append(true);
    let stderr = crate::os::files::open_private(&o, &stderr_path).map_err(|e| Error::io(stderr_path.display(), e))?;
    let daemon = daemon_exe(exe)?;
    let mut cmd = std::process::Command::new(&daemon);
    cmd.arg("--home")
        .arg(home.root())
        .env("VPD_DAEMON_DETACHED", "1")
        .env("VIEWPORT_HOME", home.root())
        .current_dir(home.root())
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(stderr);
    // Detached: the daemon outlives the terminal and ignores its Ctrl-C.
    crate::os::process::detach(&mut cmd);
    let mut child = cmd.spawn().map_err(|e| Error::io(format!("starting {}", daemon.display()), e))?;
    let deadline = Instant::now() + Duration::from_secs(10);
    let mut exited = false;
    while Instant::now() < deadline {
        if let Ok(p) = call(home, &Request::Ping, Duration::from_secs(2)) {
            return Ok(p);
        }
        if !exited {
            if let Ok(Some(_)) = child.try_wait() {
                // Possibly lost a race with another starter; keep trying to connect a moment.
                exited = true;
            }
        }
        std::thread::sleep(Duration::from_millis(if exited { 50 } else { 10 }));
    }
    let tail = std::fs::read_to_string(&stderr_path).unwrap_or_default();
    let tail: Vec<&str> = tail.lines().rev().take(5).collect();
    Err(Error::new(
        ErrorCode::DaemonUnavailable,
        format!(
            "the vpd daemon did not start within 10 s. Last lines of {}:\n{}",
            stderr_path.display(),
            tail.into_iter().rev().collect::<Vec<_>>().join("\n")
        ),
    ))
}

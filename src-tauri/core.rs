//! The daemon core the tray talks to: started in this process (a thread running
//! `vpd_daemon::daemon::run`), or, when a `vpd daemon` already holds the home, that one
//! (SPEC section 1: "a second tray attaches"). Either way the tray speaks the local API over
//! `vpd.sock`, so both cases run the same code.

use std::thread::JoinHandle;
use std::time::{Duration, Instant};
use vpd_daemon::api::{calls, client, protocol};
use vpd_daemon::{Error, ErrorCode, Home};

pub struct Core {
    pub home: Home,
    /// The in-process daemon's thread; `None` when attached to another process's daemon.
    pub thread: Option<JoinHandle<vpd_daemon::Result<()>>>,
}

impl Core {
    /// Starts the core in this process, or attaches to the running daemon of the home.
    pub fn start(home: Home) -> vpd_daemon::Result<Core> {
        let h = home.clone();
        let thread = std::thread::Builder::new()
            .name("vpd-core".into())
            .spawn(move || vpd_daemon::daemon::run(h, true))
            .map_err(|e| Error::io("starting the daemon core", e))?;
        let deadline = Instant::now() + Duration::from_secs(10);
        let me = std::process::id();
        loop {
            if thread.is_finished() {
                return match thread.join() {
                    Ok(Err(e)) if e.code == ErrorCode::DaemonRunning => {
                        let pong = ping(&home)?;
                        tracing::info!(pid = pong.pid, "attached to the running vpd daemon");
                        Ok(Core { home, thread: None })
                    }
                    Ok(Err(e)) => Err(e),
                    Ok(Ok(())) => Err(Error::new(ErrorCode::Internal, "the daemon core stopped at once; see `vpd logs`")),
                    Err(_) => Err(Error::new(ErrorCode::Internal, "the daemon core panicked; see `vpd logs`")),
                };
            }
            if let Ok(p) = ping(&home) {
                if p.pid == me {
                    return Ok(Core { home, thread: Some(thread) });
                }
            }
            if Instant::now() > deadline {
                // Slow, not dead: keep it (it is ours to stop); the menu says "not running"
                // until it answers.
                tracing::warn!("the daemon core has not answered within 10 s; see `vpd logs`");
                return Ok(Core { home, thread: Some(thread) });
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// False once the in-process core has stopped (SIGTERM, `vpd daemon stop`).
    pub fn alive(&self) -> bool {
        self.thread.as_ref().is_none_or(|t| !t.is_finished())
    }

    /// Stops the in-process core (an attached daemon keeps running).
    pub fn stop(&mut self) {
        if let Some(t) = self.thread.take() {
            let _ = client::ask(&self.home, calls::Shutdown, Duration::from_secs(3));
            let deadline = Instant::now() + Duration::from_secs(5);
            while !t.is_finished() && Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(20));
            }
            if t.is_finished() {
                let _ = t.join();
            }
        }
    }
}

fn ping(home: &Home) -> vpd_daemon::Result<protocol::Pong> {
    client::ask(home, calls::Ping, Duration::from_secs(2))
}

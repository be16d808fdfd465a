//! The daemon process: one per home (an exclusive lock on `daemon.lock`), private files
//! (umask 077), logs in `logs/`, the local API on `vpd.sock`, and a clean stop on SIGTERM,
//! SIGINT or a `shutdown` request.

use crate::api::server;
use crate::error::{Error, ErrorCode, Result};
use crate::home::{ensure_private_dir, Home};
use crate::secrets;
use crate::status::Runtime;
use crate::store::{self, Lock};
use std::io::Write;
use std::sync::Arc;
use tokio::sync::{watch, Notify};

/// Shared by every connection of the local API.
pub struct State {
    pub home: Home,
    pub pid: u32,
    pub started_at: String,
    /// The credential store, once the keyring probe has finished (it may take seconds, so it
    /// runs after the API is up).
    pub store: watch::Receiver<Option<secrets::Store>>,
    pub shutdown: Notify,
}

impl State {
    pub fn runtime(&self) -> Runtime {
        Runtime { pid: self.pid, started_at: self.started_at.clone(), credential_store: self.store.borrow().clone() }
    }

    /// Waits for the keyring probe.
    pub async fn credential_store(&self) -> secrets::Store {
        let mut rx = self.store.clone();
        let found = rx.wait_for(Option::is_some).await.map(|s| s.clone());
        match found {
            Ok(Some(s)) => s,
            _ => secrets::Store::File { reason: "keyring probe did not finish".into() },
        }
    }
}

/// `vpd daemon`: runs until stopped. `detached` (started by the CLI in the background) logs
/// only to files.
pub fn run(home: Home, detached: bool) -> Result<()> {
    // Everything the daemon creates is private.
    unsafe { libc::umask(0o077) };
    home.ensure()?;
    ensure_private_dir(&home.logs())?;
    // Another process may hold the lock for a moment to ask whether a daemon runs: retry
    // briefly before concluding that one does.
    let mut lock = None;
    for _ in 0..20 {
        lock = Lock::try_acquire(&home.daemon_lock())?;
        if lock.is_some() {
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(25));
    }
    let lock = match lock {
        Some(l) => l,
        None => {
            let pid = running_pid(&home).map(|p| format!(" (pid {p})")).unwrap_or_default();
            return Err(Error::new(
                ErrorCode::DaemonRunning,
                format!("a vpd daemon is already running for {}{pid}; use `vpd status`, or stop it with `vpd daemon stop`", home.root().display()),
            ));
        }
    };
    {
        let mut f = lock.file();
        let _ = f.set_len(0);
        let _ = writeln!(f, "{}", std::process::id());
    }
    let _log_guard = init_logging(&home, detached);
    {
        let _l = Lock::acquire(&home.lock_file())?;
        store::sweep_temporaries(home.root());
        store::sweep_temporaries(&home.identities());
        if let Err(e) = crate::identity::recover(&home) {
            tracing::error!(error = %e, "could not finish an interrupted pairing");
        }
    }
    if let Err(e) = crate::config::load(&home) {
        tracing::error!(error = %e, "config.json cannot be read; pairing commands will fail until it is fixed");
    }

    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .thread_name("vpd")
        .build()
        .map_err(|e| Error::new(ErrorCode::Internal, format!("starting the runtime: {e}")))?;
    let result = rt.block_on(async move {
        let (store_tx, store_rx) = watch::channel(None);
        let state = Arc::new(State {
            home: home.clone(),
            pid: std::process::id(),
            started_at: crate::now_rfc3339(),
            store: store_rx,
            shutdown: Notify::new(),
        });
        let listener = server::bind(&home)?;
        tracing::info!(pid = state.pid, home = %home.root().display(), version = crate::VERSION, "daemon started");
        if !detached {
            eprintln!("vpd daemon {} running (pid {}), home {}", crate::VERSION, state.pid, home.root().display());
        }
        tokio::task::spawn_blocking(move || {
            let s = secrets::probe();
            match &s {
                secrets::Store::Keyring => tracing::info!("issue tokens are kept in the OS keyring"),
                secrets::Store::File { reason } => tracing::warn!(%reason, "issue tokens are kept in config.json (0600)"),
            }
            let _ = store_tx.send(Some(s));
        });
        let serve = tokio::spawn(server::serve(listener, state.clone()));
        wait_for_stop(&state).await;
        serve.abort();
        let _ = std::fs::remove_file(home.socket());
        tracing::info!("daemon stopped");
        Ok::<_, Error>(())
    });
    rt.shutdown_timeout(std::time::Duration::from_secs(2));
    drop(lock);
    result
}

async fn wait_for_stop(state: &State) {
    use tokio::signal::unix::{signal, SignalKind};
    let mut term = signal(SignalKind::terminate()).expect("SIGTERM handler");
    let mut int = signal(SignalKind::interrupt()).expect("SIGINT handler");
    tokio::select! {
        _ = term.recv() => tracing::info!("SIGTERM"),
        _ = int.recv() => tracing::info!("SIGINT"),
        _ = state.shutdown.notified() => tracing::info!("shutdown requested"),
    }
}

/// The pid written in `daemon.lock` by the daemon holding it, if any holds it.
pub fn running_pid(home: &Home) -> Option<u32> {
    if Lock::try_acquire(&home.daemon_lock()).ok()?.is_some() {
        return None; // nobody holds it
    }
    std::fs::read_to_string(home.daemon_lock()).ok()?.trim().parse().ok()
}

fn init_logging(home: &Home, detached: bool) -> Option<tracing_appender::non_blocking::WorkerGuard> {
    use tracing_subscriber::prelude::*;
    let filter = || tracing_subscriber::EnvFilter::try_from_env("VPD_LOG").unwrap_or_else(|_| "info".into());
    let appender = tracing_appender::rolling::Builder::new()
        .rotation(tracing_appender::rolling::Rotation::DAILY)
        .filename_prefix("vpd")
        .filename_suffix("log")
        .max_log_files(7)
        .build(home.logs())
        .ok();
    let (file_layer, guard) = match appender {
        Some(a) => {
            let (w, g) = tracing_appender::non_blocking(a);
            (Some(tracing_subscriber::fmt::layer().with_ansi(false).with_writer(w).with_filter(filter())), Some(g))
        }
        None => (None, None),
    };
    let stderr_layer = (!detached).then(|| tracing_subscriber::fmt::layer().with_writer(std::io::stderr).with_filter(filter()));
    let _ = tracing_subscriber::registry().with(file_layer).with(stderr_layer).try_init();
    guard
}

//! The daemon process: one per home (an exclusive lock on `daemon.lock`), private files
//! (umask 077), logs in `logs/`, and the wiring: one [`Backend`] and the long-running parts
//! — the local API on `vpd.sock`, the web UI, watched folders, revocations, the clock and
//! network watch, the home watch — started under one supervisor (a `JoinSet` and a
//! cancellation token) and stopped together on SIGTERM, SIGINT or a `shutdown` request.

use crate::api::server;
use crate::backend::Backend;
use crate::error::{Error, ErrorCode, Result};
use crate::home::{ensure_private_dir, Home};
use crate::secrets;
use crate::store::{self, Lock};
use std::future::Future;
use std::io::Write;
use std::sync::Arc;
use tokio::sync::{mpsc, watch};
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

/// The supervisor: every long-running part of the daemon, stopped together.
struct Supervisor {
    tasks: JoinSet<()>,
    cancel: CancellationToken,
}

impl Supervisor {
    fn new() -> Self {
        Supervisor { tasks: JoinSet::new(), cancel: CancellationToken::new() }
    }

    /// Runs `part` until it ends or the supervisor stops.
    fn spawn(&mut self, name: &'static str, part: impl Future<Output = ()> + Send + 'static) {
        let cancel = self.cancel.clone();
        self.tasks.spawn(async move {
            tokio::select! {
                _ = cancel.cancelled() => {}
                _ = part => tracing::debug!(part = name, "ended"),
            }
        });
    }

    /// Stops every part and waits (at most `wait`) until they are gone.
    async fn stop(mut self, wait: std::time::Duration) {
        self.cancel.cancel();
        let _ = tokio::time::timeout(wait, async { while self.tasks.join_next().await.is_some() {} }).await;
        self.tasks.abort_all();
    }
}

/// `vpd daemon`: runs until stopped. `detached` (started by the CLI in the background) logs
/// only to files.
pub fn run(home: Home, detached: bool) -> Result<()> {
    // Everything the daemon creates is private.
    crate::os::process::private_by_default();
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
    let identity = home.identity()?;
    let _log_guard = init_logging(&home, detached);
    {
        let _l = Lock::acquire(&home.lock_file())?;
        store::sweep_temporaries(home.root());
        store::sweep_temporaries(&home.identities());
        // A version 1 home becomes version 2 before anything else reads it (SPEC A1).
        if let Err(e) = crate::migrate::run(&home) {
            tracing::error!(error = %e, "could not upgrade the home to version 2; it was left as it is and will be tried again at the next start");
        }
        if let Err(e) = crate::identity::recover(&home) {
            tracing::error!(error = %e, "could not finish an interrupted pairing");
        }
    }
    match crate::config::load(&home) {
        Ok(c) => crate::proxy::set_recorded(c.daemon.proxy),
        Err(e) => tracing::error!(error = %e, "config.json cannot be read; pairing commands will fail until it is fixed"),
    }
    tracing::info!("proxies: {}", crate::proxy::Proxies::current().describe());

    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .thread_name("vpd")
        .build()
        .map_err(|e| Error::new(ErrorCode::Internal, format!("starting the runtime: {e}")))?;
    let result = rt.block_on(async move {
        let (store_tx, store_rx) = watch::channel(None);
        let (events_tx, mut events_rx) = mpsc::channel(16);
        let backend = Arc::new(Backend::new(home.clone(), store_rx, events_tx));
        let listener = server::bind(&home)?;
        tracing::info!(pid = std::process::id(), home = %home.root().display(), version = crate::VERSION, "daemon started");
        if !detached {
            eprintln!("vpd daemon {} running (pid {}), home {}", crate::VERSION, std::process::id(), home.root().display());
        }
        tokio::task::spawn_blocking(move || {
            let s = secrets::probe();
            match &s {
                secrets::Store::Keyring => tracing::info!("issue tokens are kept in the OS keyring"),
                secrets::Store::File { reason } => tracing::warn!(%reason, "issue tokens are kept in config.json (0600)"),
            }
            let _ = store_tx.send(Some(s));
        });
        // What a previous daemon kept at a planned stop, then the bridges (which send its
        // unacked messages first), so the first session routed through the API finds its bridge.
        backend.restore_kept();
        backend.start_bridges();
        backend.drop_unclaimed_queues();
        let mut parts = Supervisor::new();
        parts.spawn("local API", server::serve(listener, backend.clone()));
        if let Some(ui) = crate::webui::start(backend.clone()).await {
            parts.spawn("web UI", ui);
        }
        parts.spawn("watched folders", backend.clone().run_watched());
        let b = backend.clone();
        parts.spawn("bridge events", async move {
            while let Some(event) = events_rx.recv().await {
                b.on_bridge_event(event).await;
            }
        });
        parts.spawn("clock and network", watch_clock(backend.clone()));
        tokio::select! {
            _ = wait_for_stop(&backend) => {}
            why = watch_home(home.clone(), identity) => {
                // The logs may be gone with the home: say it where a person can see it.
                eprintln!("vpd daemon: {why}; stopping (nothing is left that could stop this daemon otherwise)");
                tracing::warn!("{why}; stopping");
            }
        }
        backend.stop_keeping().await;
        parts.stop(std::time::Duration::from_secs(1)).await;
        crate::os::ipc::remove(&home);
        tracing::info!("daemon stopped");
        Ok::<_, Error>(())
    });
    rt.shutdown_timeout(std::time::Duration::from_secs(2));
    drop(lock);
    result
}

/// Returns once the home this daemon runs in is gone: deleted, moved away, or its lock file
/// replaced (a removed test home, a wiped `VIEWPORT_HOME`). Nothing could stop such a daemon
/// any more (`vpd daemon stop` finds no socket), so it stops itself, releasing its socket and
/// the web UI's port. Checked every 3 s; a passing I/O error is not a reason.
async fn watch_home(home: Home, identity: crate::home::HomeIdentity) -> String {
    loop {
        tokio::time::sleep(std::time::Duration::from_secs(3)).await;
        let h = home.clone();
        if let Ok(Some(why)) = tokio::task::spawn_blocking(move || h.gone(&identity)).await {
            return why;
        }
    }
}

/// A wall-clock jump (sleep and wake) or a change of the machine's network addresses makes
/// every bridge retry at once.
async fn watch_clock(backend: Arc<Backend>) {
    let tick = std::time::Duration::from_secs(5);
    let mut wall = std::time::SystemTime::now();
    let mut mono = tokio::time::Instant::now();
    let mut net = network_fingerprint();
    loop {
        tokio::time::sleep(tick).await;
        let (w, m) = (std::time::SystemTime::now(), tokio::time::Instant::now());
        let wall_d = w.duration_since(wall).unwrap_or_default().as_secs_f64();
        let mono_d = m.duration_since(mono).as_secs_f64();
        let now_net = network_fingerprint();
        let why = if (wall_d - mono_d).abs() > 10.0 {
            Some("the wall clock jumped (sleep/wake?)")
        } else if now_net != net {
            Some("the network changed")
        } else {
            None
        };
        if let Some(why) = why {
            tracing::info!("{why}: reconnecting every pairing");
            backend.reconnect_all();
        }
        (wall, mono, net) = (w, m, now_net);
    }
}

/// The sorted addresses of the interfaces that are up: changes when a network comes or goes.
fn network_fingerprint() -> Vec<(String, Vec<u8>)> {
    crate::os::net::addresses()
}

async fn wait_for_stop(backend: &Backend) {
    tokio::select! {
        why = crate::os::signals::stop_requested() => tracing::info!("{why}"),
        _ = backend.shutdown_requested() => tracing::info!("shutdown requested"),
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

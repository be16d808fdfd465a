//! The daemon process: one per home (an exclusive lock on `daemon.lock`), private files
//! (umask 077), logs in `logs/`, the local API on `vpd.sock`, and a clean stop on SIGTERM,
//! SIGINT or a `shutdown` request.

use crate::api::server;
use crate::bridge::{Bridge, Ended};
use crate::error::{Error, ErrorCode, Result};
use crate::home::{ensure_private_dir, Home};
use crate::secrets;
use crate::sessions::Session;
use crate::status::Runtime;
use crate::store::{self, Lock};
use std::collections::HashMap;
use std::io::Write;
use std::sync::{Arc, Mutex};
use tokio::sync::{broadcast, mpsc, watch, Notify};

/// Shared by every connection of the local API.
pub struct State {
    pub home: Home,
    pub pid: u32,
    pub started_at: String,
    /// The credential store, once the keyring probe has finished (it may take seconds, so it
    /// runs after the API is up).
    pub store: watch::Receiver<Option<secrets::Store>>,
    pub shutdown: Notify,
    /// One relay bridge per pairing, by workspace id.
    pub bridges: Mutex<HashMap<String, Bridge>>,
    /// Sessions by id (running and recently ended).
    pub sessions: Mutex<HashMap<String, Session>>,
    /// What happened that a person should hear about (revocations), newest last.
    pub activity: Mutex<Vec<Activity>>,
    /// Bridges report here when they end for good.
    pub ended: mpsc::Sender<Ended>,
    /// Every new activity entry, as it happens (the tray's notifications).
    pub notices: broadcast::Sender<Activity>,
    /// Bumped when something the UI shows changed (so it need not wait for its next look).
    pub changed: watch::Sender<u64>,
    /// Hint suggestions waiting for an answer.
    pub suggestions: Mutex<crate::suggestions::Suggestions>,
    /// The pairing started from the web UI or the tray, if any.
    pub pair_job: Mutex<Option<crate::pair_job::PairJob>>,
    /// The web UI, once it listens; or why it does not.
    pub ui: Mutex<Option<Arc<crate::webui::Ui>>>,
    pub ui_error: Mutex<Option<String>>,
    /// The watched folders as last scanned.
    pub watched: Mutex<Vec<crate::watched::WatchedFolder>>,
    pub watched_changed: Notify,
}

/// An entry of the activity list (and, with the tray, a notification).
#[derive(Debug, Clone, Default, serde::Serialize, serde::Deserialize, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct Activity {
    /// Increasing within one daemon run.
    #[serde(default)]
    pub id: u64,
    pub at: String,
    /// `paired`, `unpaired`, `revoked`, `suggestion`.
    pub kind: String,
    pub message: String,
    /// The directory a suggestion is about.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub directory: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub org_id: Option<String>,
    /// A suggestion's kind: `bind`, `trust` or `pair`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub suggestion: Option<String>,
}

impl State {
    pub fn new(home: Home, store: watch::Receiver<Option<secrets::Store>>, ended: mpsc::Sender<Ended>) -> Self {
        State {
            home,
            pid: std::process::id(),
            started_at: crate::now_rfc3339(),
            store,
            shutdown: Notify::new(),
            bridges: Mutex::new(HashMap::new()),
            sessions: Mutex::new(HashMap::new()),
            activity: Mutex::new(Vec::new()),
            ended,
            notices: broadcast::channel(64).0,
            changed: watch::channel(0).0,
            suggestions: Mutex::default(),
            pair_job: Mutex::new(None),
            ui: Mutex::new(None),
            ui_error: Mutex::new(None),
            watched: Mutex::default(),
            watched_changed: Notify::new(),
        }
    }

    /// Something the UI shows changed.
    pub fn touch(&self) {
        self.changed.send_modify(|n| *n += 1);
    }

    pub fn runtime(&self) -> Runtime {
        let bridges = self.bridges.lock().unwrap().iter().map(|(k, b)| (k.clone(), b.status())).collect();
        let mut streaming: HashMap<String, u32> = HashMap::new();
        for s in self.sessions.lock().unwrap().values() {
            if let (true, Some(org)) = (s.streaming(), &s.info.org_id) {
                *streaming.entry(org.clone()).or_default() += 1;
            }
        }
        Runtime {
            pid: self.pid,
            started_at: self.started_at.clone(),
            credential_store: self.store.borrow().clone(),
            bridges,
            sessions_streaming: streaming,
            activity: self.activity.lock().unwrap().clone(),
        }
    }

    /// Starts (or restarts) the bridge of a pairing from the files.
    pub fn start_bridge(&self, workspace_id: &str) {
        match crate::config::load(&self.home).map(|c| c.pairing(workspace_id).cloned()) {
            Ok(Some(p)) => self.start_bridge_for(p),
            Ok(None) => {}
            Err(e) => tracing::error!(error = %e, "cannot start a relay bridge"),
        }
    }

    /// Starts the bridge of `pairing`, replacing a running one of the same org.
    fn start_bridge_for(&self, pairing: crate::config::Pairing) {
        let workspace_id = pairing.workspace_id.clone();
        let workspace_id = workspace_id.as_str();
        match crate::identity::load(&self.home, workspace_id) {
            Ok(Some(id)) => {
                let b = Bridge::spawn(pairing, id, self.ended.clone());
                let new_rt = b.runtime_target_id.clone();
                let old = self.bridges.lock().unwrap().insert(workspace_id.to_string(), b);
                if let Some(old) = old {
                    let _ = old.ctl.send(crate::bridge::Control::Stop);
                    if old.runtime_target_id != new_rt {
                        // Sessions pinned to the replaced pairing never move to the new one.
                        for s in self.sessions.lock().unwrap().values_mut() {
                            if s.runtime_target_id.as_deref() == Some(old.runtime_target_id.as_str()) {
                                s.cut("re-paired");
                            }
                        }
                    }
                }
            }
            Ok(None) => tracing::error!(workspace = workspace_id, "no identity file: this pairing cannot connect; run `vpd pair --force`"),
            Err(e) => tracing::error!(workspace = workspace_id, error = %e, "cannot read the identity: this pairing cannot connect"),
        }
    }

    pub fn stop_bridge(&self, workspace_id: &str) {
        if let Some(b) = self.bridges.lock().unwrap().remove(workspace_id) {
            let _ = b.ctl.send(crate::bridge::Control::Stop);
        }
    }

    /// Cuts one session: remote streaming stops for good.
    pub fn cut_session(&self, id: &str, why: &str) {
        if let Some(s) = self.sessions.lock().unwrap().get_mut(id) {
            s.cut(why);
        }
    }

    /// Cuts every session pinned to `workspace_id`: remote streaming stops for good.
    pub fn cut_sessions(&self, workspace_id: &str, why: &str) {
        for s in self.sessions.lock().unwrap().values_mut() {
            if s.info.org_id.as_deref() == Some(workspace_id) {
                s.cut(why);
            }
        }
    }

    /// Adds to the activity list (the last 200 are kept) and tells the listeners (the tray).
    pub fn record_activity(&self, mut entry: Activity) {
        {
            let mut a = self.activity.lock().unwrap();
            entry.id = a.last().map(|l| l.id + 1).unwrap_or(1);
            entry.at = crate::now_rfc3339();
            a.push(entry.clone());
            let excess = a.len().saturating_sub(200);
            a.drain(..excess);
        }
        let _ = self.notices.send(entry);
        self.touch();
    }

    /// A pairing was stored (from `vpd pair`, the UI or the tray): connect it and say so.
    pub fn paired(&self, p: &crate::api::protocol::Paired) {
        self.start_bridge(&p.workspace_id);
        let entry = Activity {
            kind: "paired".into(),
            message: format!("Paired with {} as {}", p.workspace_name, p.machine_name),
            org_id: Some(p.workspace_id.clone()),
            ..Default::default()
        };
        self.record_activity(entry);
    }

    /// `vpd unpair` (and the UI's Unpair): streaming stops first, then the files and the
    /// platform.
    pub async fn unpair(&self, org: &str, keep_bindings: bool) -> Result<crate::api::protocol::Unpaired> {
        // Stop the bridge first, so the platform's own revocation of it is not mistaken
        // for news.
        if let Ok(pairing) = crate::config::read(&self.home).and_then(|c| c.select(org).cloned()) {
            self.cut_sessions(&pairing.workspace_id, "unpaired");
            self.stop_bridge(&pairing.workspace_id);
        }
        let r = crate::pairing::unpair(&self.home, org, keep_bindings).await;
        if let Ok(u) = &r {
            self.record_activity(Activity {
                kind: "unpaired".into(),
                message: format!("Unpaired from {}", u.workspace_name),
                org_id: Some(u.workspace_id.clone()),
                ..Default::default()
            });
        }
        r
    }

    /// Offers a hint suggestion; a new one is announced (activity, and the tray notifies).
    pub fn offer_suggestion(&self, s: crate::suggestions::Suggestion) {
        let fresh = self.suggestions.lock().unwrap().offer(s.clone());
        if fresh {
            tracing::info!(directory = %s.directory, org = %s.org_id, kind = %s.kind, source = %s.source, "hint suggestion");
            self.record_activity(Activity {
                kind: "suggestion".into(),
                message: crate::suggestions::message(&s),
                directory: Some(s.directory),
                org_id: Some(s.org_id),
                suggestion: Some(s.kind),
                ..Default::default()
            });
        }
    }

    /// Checks a directory for a hint (a session started there, the shell hook reported it).
    pub async fn check_hint(self: &Arc<Self>, dir: std::path::PathBuf, source: &'static str) {
        let home = self.home.clone();
        match tokio::task::spawn_blocking(move || crate::suggestions::check(&home, &dir, source)).await {
            Ok(Ok(Some(s))) => self.offer_suggestion(s),
            Ok(Ok(None)) => {}
            Ok(Err(e)) => tracing::debug!(error = %e, "hint check failed"),
            Err(e) => tracing::debug!(error = %e, "hint check failed"),
        }
    }

    /// Bind / Not now / Never for a suggestion.
    pub async fn answer_suggestion(
        &self,
        directory: &str,
        org_id: &str,
        kind: Option<&str>,
        answer: crate::suggestions::Answer,
    ) -> Result<serde_json::Value> {
        let (home, d, o, k) = (self.home.clone(), directory.to_string(), org_id.to_string(), kind.map(String::from));
        let r = tokio::task::spawn_blocking(move || crate::suggestions::answer(&home, &d, &o, k.as_deref(), answer))
            .await
            .map_err(|e| Error::new(ErrorCode::Internal, e.to_string()))?;
        if r.is_ok() || answer == crate::suggestions::Answer::Dismiss {
            self.suggestions.lock().unwrap().remove(directory, org_id);
        }
        self.touch();
        r
    }

    /// SPEC section 6: the org revoked this pairing.
    async fn on_revoked(&self, workspace_id: &str, runtime_target_id: &str) {
        // Only if that pairing is still the current one (a re-pairing replaces it, and the
        // platform then revokes the old one).
        let current = crate::config::read(&self.home)
            .ok()
            .and_then(|c| c.pairing(workspace_id).map(|p| p.runtime_target_id == runtime_target_id))
            .unwrap_or(false);
        if !current {
            return;
        }
        self.cut_sessions(workspace_id, "revoked");
        self.bridges.lock().unwrap().remove(workspace_id);
        let home = self.home.clone();
        let ws = workspace_id.to_string();
        match tokio::task::spawn_blocking(move || crate::pairing::remove_local(&home, &ws, false)).await {
            Ok(Ok((p, _, _, _))) => {
                let msg = format!("{} revoked this machine's pairing", p.workspace_name);
                tracing::warn!("{msg}");
                self.record_activity(Activity { kind: "revoked".into(), message: msg, org_id: Some(p.workspace_id.clone()), ..Default::default() });
            }
            Ok(Err(e)) => tracing::error!(error = %e, "could not remove a revoked pairing"),
            Err(e) => tracing::error!(error = %e, "could not remove a revoked pairing"),
        }
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
    let identity = home.identity()?;
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
        let (ended_tx, mut ended_rx) = mpsc::channel(16);
        let state = Arc::new(State::new(home.clone(), store_rx, ended_tx));
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
        // Bridges first, so the first session routed through the API finds its bridge.
        if let Ok(cfg) = crate::config::load(&home) {
            for p in cfg.pairings {
                state.start_bridge_for(p);
            }
        }
        let serve = tokio::spawn(server::serve(listener, state.clone()));
        crate::webui::start(state.clone()).await;
        tokio::spawn(crate::watched::run(state.clone()));
        let st = state.clone();
        tokio::spawn(async move {
            while let Some(ended) = ended_rx.recv().await {
                if let Ended::Revoked { workspace_id, runtime_target_id, .. } = ended {
                    st.on_revoked(&workspace_id, &runtime_target_id).await;
                }
            }
        });
        tokio::spawn(watch_clock(state.clone()));
        tokio::select! {
            _ = wait_for_stop(&state) => {}
            why = watch_home(home.clone(), identity) => {
                // The logs may be gone with the home: say it where a person can see it.
                eprintln!("vpd daemon: {why}; stopping (nothing is left that could stop this daemon otherwise)");
                tracing::warn!("{why}; stopping");
            }
        }
        serve.abort();
        for b in state.bridges.lock().unwrap().values() {
            let _ = b.ctl.send(crate::bridge::Control::Stop);
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
        let _ = std::fs::remove_file(home.socket());
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
async fn watch_clock(state: Arc<State>) {
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
            for b in state.bridges.lock().unwrap().values() {
                let _ = b.ctl.send(crate::bridge::Control::Reconnect);
            }
        }
        (wall, mono, net) = (w, m, now_net);
    }
}

/// The sorted addresses of the interfaces that are up: changes when a network comes or goes.
fn network_fingerprint() -> Vec<(String, Vec<u8>)> {
    let mut out = Vec::new();
    let mut ifap: *mut libc::ifaddrs = std::ptr::null_mut();
    // SAFETY: getifaddrs fills a list we only read and then free.
    unsafe {
        if libc::getifaddrs(&mut ifap) != 0 {
            return out;
        }
        let mut p = ifap;
        while !p.is_null() {
            let ifa = &*p;
            let up = ifa.ifa_flags & (libc::IFF_UP as u32) != 0 && ifa.ifa_flags & (libc::IFF_LOOPBACK as u32) == 0;
            if up && !ifa.ifa_addr.is_null() {
                let family = (*ifa.ifa_addr).sa_family as i32;
                let bytes = match family {
                    libc::AF_INET => (*(ifa.ifa_addr as *const libc::sockaddr_in)).sin_addr.s_addr.to_ne_bytes().to_vec(),
                    libc::AF_INET6 => (*(ifa.ifa_addr as *const libc::sockaddr_in6)).sin6_addr.s6_addr.to_vec(),
                    _ => Vec::new(),
                };
                if !bytes.is_empty() {
                    out.push((std::ffi::CStr::from_ptr(ifa.ifa_name).to_string_lossy().into_owned(), bytes));
                }
            }
            p = ifa.ifa_next;
        }
        libc::freeifaddrs(ifap);
    }
    out.sort();
    out
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

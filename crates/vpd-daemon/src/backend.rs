//! The daemon's one facade (tailscale's LocalBackend, in spirit). It owns the components —
//! relay bridges, sessions, the activity list, the pair job, suggestions, watched folders,
//! the web UI's address — each with its own state and lock, and offers the operations that
//! the transports (the local API on `vpd.sock`, the web UI; later the Windows named pipe)
//! call. The transports hold no domain logic and reach no component directly; the process
//! wiring (`daemon.rs`) starts and stops the long-running parts through one supervisor.

use crate::activity::{Activity, ActivityLog, Changes};
use crate::api::protocol::{Paired, Pong, SessionStartParams, UiLink, Unpaired};
/// What becomes of a removed pairing's bindings (the transports name it through here).
pub use crate::binding::AfterUnpair;
use crate::bridge::{Ended, Event};
use crate::bridges::Bridges;
use crate::error::{Error, ErrorCode, Result};
use crate::facts_cache::FactsCache;
use crate::home::Home;
use crate::pair_job::{PairJobs, PairView};
use crate::pairing::{self, PairUi};
use crate::secrets;
use crate::sessions::{self, SessionInfo, Sessions};
use crate::states::{ActivityKind, CutReason, PairJobState, SuggestionKind};
use crate::status::{Runtime, StatusReport};
use crate::suggestions::{Answer, Suggestion, Suggestions};
use crate::watched::Watched;
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::{broadcast, mpsc, watch, Notify};

/// Makes one-time login links for the web UI (the web UI registers it once it listens).
pub type LinkMaker = Arc<dyn Fn(Option<&str>) -> String + Send + Sync>;

/// The web UI as the rest of the daemon sees it.
enum UiState {
    Starting,
    Ready { port: u16, links: LinkMaker },
    Failed(String),
}

pub struct Backend {
    home: Home,
    pid: u32,
    started_at: String,
    /// The credential store, once the keyring probe has finished (it may take seconds, so it
    /// runs after the API is up).
    store: watch::Receiver<Option<secrets::Store>>,
    shutdown: Notify,
    bridges: Bridges,
    sessions: Sessions,
    activity: ActivityLog,
    changes: Changes,
    suggestions: Mutex<Suggestions>,
    pair_jobs: PairJobs,
    ui: Mutex<UiState>,
    watched: Watched,
    /// What session starts resolve from (see [`FactsCache`]).
    facts: Arc<FactsCache>,
    /// A planned stop is keeping sessions and unacked messages (`spool.json`): no new
    /// message is taken.
    stopping: std::sync::atomic::AtomicBool,
    /// Unacked messages a previous daemon kept, by pairing id, until its bridge starts.
    kept: Mutex<HashMap<String, Vec<vpd_proto::relay::DaemonMsg>>>,
    /// Sessions a previous daemon kept whose client has not reattached yet.
    unclaimed: Mutex<std::collections::HashSet<String>>,
}

/// How long a kept session waits for its `vpd run` to reattach before it ends as
/// disconnected (the client went away with the old daemon).
const REATTACH_WAIT: std::time::Duration = std::time::Duration::from_secs(60);

impl Backend {
    /// `events` hears what the bridges report (see [`Backend::on_bridge_event`]).
    pub fn new(home: Home, store: watch::Receiver<Option<secrets::Store>>, events: mpsc::Sender<Event>) -> Self {
        Backend {
            home,
            pid: std::process::id(),
            started_at: crate::now_rfc3339(),
            store,
            shutdown: Notify::new(),
            bridges: Bridges::new(events),
            sessions: Sessions::default(),
            activity: ActivityLog::default(),
            changes: Changes::default(),
            suggestions: Mutex::default(),
            pair_jobs: PairJobs::default(),
            ui: Mutex::new(UiState::Starting),
            watched: Watched::default(),
            facts: Arc::new(FactsCache::new()),
            stopping: Default::default(),
            kept: Mutex::default(),
            unclaimed: Mutex::default(),
        }
    }

    pub fn home(&self) -> &Home {
        &self.home
    }

    pub fn ping(&self) -> Pong {
        Pong {
            pid: self.pid,
            version: crate::VERSION.into(),
            protocol: crate::api::protocol::PROTOCOL,
            home: self.home.root().display().to_string(),
            proxy: Some(crate::proxy::Proxies::current().describe()),
        }
    }

    // ---- the process ----------------------------------------------------------------

    /// Asks the daemon to stop (the local API's `shutdown`).
    pub fn request_shutdown(&self) {
        self.shutdown.notify_one();
    }

    pub async fn shutdown_requested(&self) {
        self.shutdown.notified().await
    }

    /// Something a person can see changed (the web UI's event stream wakes up).
    pub fn touch(&self) {
        self.changes.touch();
    }

    pub fn changes(&self) -> watch::Receiver<u64> {
        self.changes.subscribe()
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

    // ---- status ---------------------------------------------------------------------

    fn runtime(&self) -> Runtime {
        Runtime {
            pid: self.pid,
            started_at: self.started_at.clone(),
            credential_store: self.store.borrow().clone(),
            bridges: self.bridges.statuses(),
            sessions_streaming: self.sessions.streaming_by_pairing(),
            activity: self.activity.list(),
        }
    }

    /// `vpd status`: the files and the running daemon. Reads files: runs on a blocking thread.
    pub async fn status(&self) -> Result<StatusReport> {
        let (home, rt) = (self.home.clone(), self.runtime());
        tokio::task::spawn_blocking(move || crate::status::collect(&home, Some(&rt)))
            .await
            .map_err(|e| Error::new(ErrorCode::Internal, e.to_string()))
    }

    /// The web UI's whole state (docs/WEBUI.md).
    pub async fn ui_state(self: &Arc<Self>) -> serde_json::Value {
        let me = self.clone();
        tokio::task::spawn_blocking(move || {
            let report = crate::status::collect(&me.home, Some(&me.runtime()));
            let health = crate::status::health(&report);
            let (mut suggestions, changed) = crate::suggestions::revalidate(&me.suggestions, &me.home);
            if !changed.is_empty() {
                for c in changed {
                    me.offer_suggestion(c);
                }
                suggestions = me.suggestions.lock().unwrap().pending();
            }
            let mut sessions = me.sessions.list();
            sessions.reverse();
            let name = |org: &str| report.pairings.iter().find(|p| p.workspace_id == org).map(|p| p.workspace_name.clone());
            let declines = crate::suggestions::declines(&me.home, &name);
            serde_json::json!({
                "status": report,
                "health": health,
                "sessions": sessions,
                "suggestions": suggestions,
                "declines": declines,
                "watched": me.watched.list(),
                "pairing": me.pair_jobs.view(),
            })
        })
        .await
        .unwrap_or_default()
    }

    // ---- activity -------------------------------------------------------------------

    /// Adds to the activity list and tells the listeners (the tray).
    fn record(&self, entry: Activity) {
        self.activity.record(entry);
        self.touch();
    }

    /// The entries after `id`.
    pub fn activity_since(&self, id: u64) -> Vec<Activity> {
        self.activity.since(id)
    }

    /// Every entry recorded from now on.
    pub fn subscribe_activity(&self) -> broadcast::Receiver<Activity> {
        self.activity.subscribe()
    }

    // ---- bridges and pairings ---------------------------------------------------------

    /// Starts one bridge per pairing in `config.json` (at start, before the API serves).
    pub fn start_bridges(&self) {
        if let Ok(cfg) = crate::config::load(&self.home) {
            for p in cfg.pairings {
                self.start_bridge_for(p);
            }
        }
    }

    /// Starts (or restarts) the bridge of a pairing from the files.
    fn start_bridge(&self, pairing_id: &str) {
        match crate::config::load(&self.home).map(|c| c.by_id(pairing_id).cloned()) {
            Ok(Some(p)) => self.start_bridge_for(p),
            Ok(None) => {}
            Err(e) => tracing::error!(error = %e, "cannot start a relay bridge"),
        }
    }

    /// Starts the bridge of `pairing`, replacing a running one of the same org.
    fn start_bridge_for(&self, pairing: crate::config::Pairing) {
        let (workspace_id, pairing_id) = (pairing.workspace_id.clone(), pairing.pairing_id.clone());
        let queued = self.kept.lock().unwrap().remove(&pairing_id).unwrap_or_default();
        match crate::identity::load(&self.home, &pairing_id) {
            Ok(Some(id)) => {
                if let Some(replaced) = self.bridges.start(pairing, id, queued) {
                    // Sessions pinned to the replaced pairing never move to the new one.
                    self.sessions.cut_runtime_target(&pairing_id, &replaced, CutReason::RePaired);
                }
            }
            Ok(None) => tracing::error!(workspace = %workspace_id, "no identity file: this pairing cannot connect; run `vpd pair --force`"),
            Err(e) => tracing::error!(workspace = %workspace_id, error = %e, "cannot read the identity: this pairing cannot connect"),
        }
    }

    /// Stops every bridge (the daemon is stopping).
    pub fn stop_bridges(&self) {
        self.bridges.stop_all();
    }

    /// A planned stop (`vpd update`, `vpd daemon stop`, SIGTERM): takes no new message, keeps
    /// the running sessions and every pairing's unacked messages in `spool.json`, and stops
    /// the bridges. The next daemon picks them up ([`Backend::restore_kept`]).
    pub async fn stop_keeping(&self) {
        self.stopping.store(true, std::sync::atomic::Ordering::SeqCst);
        // A message being numbered and handed to its bridge right now finishes first.
        for id in self.sessions.running() {
            if let Some(order) = self.sessions.order(&id) {
                let _turn = order.lock().await;
            }
        }
        let sessions = self.sessions.keep_running();
        let mut unacked = self.bridges.stop_all_and_keep(std::time::Duration::from_secs(3)).await;
        // Kept for a pairing whose bridge never started this time (config.json unreadable):
        // kept again, not dropped.
        for (pairing, msgs) in self.kept.lock().unwrap().drain() {
            unacked.entry(pairing).or_default().extend(msgs);
        }
        let spool = crate::spool::Spool::new(sessions, unacked.into_iter().collect());
        if spool.is_empty() {
            return;
        }
        let queued: usize = spool.unacked.values().map(Vec::len).sum();
        match crate::spool::save(&self.home, &spool) {
            Ok(()) => tracing::info!(sessions = spool.sessions.len(), queued, "kept the running sessions and unacked messages for the next daemon"),
            Err(e) => tracing::error!(error = %e, sessions = spool.sessions.len(), queued, "could not keep the running sessions for the next daemon"),
        }
    }

    /// At start, before the bridges: the sessions and unacked messages a previous daemon
    /// kept. A kept session whose `vpd run` does not reattach within a minute ends as
    /// disconnected.
    pub fn restore_kept(self: &Arc<Self>) {
        let Some(spool) = crate::spool::take(&self.home) else { return };
        let ids: Vec<String> = spool.sessions.iter().map(|k| k.info.session_id.clone()).collect();
        for k in spool.sessions {
            self.sessions.insert(sessions::Session::from_kept(k));
        }
        let queued: usize = spool.unacked.values().map(Vec::len).sum();
        tracing::info!(sessions = ids.len(), queued, "took the sessions and unacked messages the previous daemon kept");
        *self.kept.lock().unwrap() = spool.unacked.into_iter().collect();
        self.unclaimed.lock().unwrap().extend(ids);
        let me = self.clone();
        tokio::spawn(async move {
            tokio::time::sleep(REATTACH_WAIT).await;
            let left: Vec<String> = me.unclaimed.lock().unwrap().drain().collect();
            for id in left {
                let _ = me.session_end(&id, None, Some("disconnected")).await;
            }
        });
    }

    /// Unacked messages kept for pairings that are gone (no bridge took them). Only when
    /// `config.json` was read: otherwise they are kept for the next stop to keep again.
    pub fn drop_unclaimed_queues(&self) {
        if crate::config::load(&self.home).is_err() {
            return;
        }
        for (pairing, msgs) in self.kept.lock().unwrap().drain() {
            tracing::warn!(pairing = %pairing, dropped = msgs.len(), "messages kept for a pairing that no longer exists were dropped");
        }
    }

    fn restarting() -> Error {
        Error::new(ErrorCode::DaemonUnavailable, "the daemon is restarting; try again in a moment")
    }

    pub fn is_stopping(&self) -> bool {
        self.stopping.load(std::sync::atomic::Ordering::SeqCst)
    }

    /// A client reattaching to a session after a restart: how many of its items (frames and
    /// the end) this daemon has, so it resends the rest.
    pub fn reattach(&self, id: &str) -> Result<u64> {
        sessions::check_id(id)?;
        if self.is_stopping() {
            return Err(Self::restarting());
        }
        self.unclaimed.lock().unwrap().remove(id);
        self.sessions.with(id, |s| {
            if s.info.ended_at.is_some() {
                return Err(Error::new(ErrorCode::InvalidArgument, format!("session {id} has ended")));
            }
            Ok(s.received)
        })
    }

    /// Every bridge retries now (a wall-clock jump, a network change).
    pub fn reconnect_all(&self) {
        self.bridges.reconnect_all();
    }

    /// `vpd reconnect [--org]`: the names of the pairings asked to retry.
    pub fn reconnect(&self, org: Option<&str>) -> Result<Vec<String>> {
        let config = crate::config::load(&self.home)?;
        let targets: Vec<String> = match org {
            Some(q) => vec![config.select(q)?.pairing_id.clone()],
            None => config.pairings.iter().map(|p| p.pairing_id.clone()).collect(),
        };
        Ok(targets
            .into_iter()
            .filter(|id| self.bridges.reconnect(id))
            .map(|id| config.by_id(&id).map(|p| p.workspace_name.clone()).unwrap_or(id))
            .collect())
    }

    /// A pairing was stored (from `vpd pair`, the UI or the tray): connect it and say so.
    fn paired(&self, p: &Paired) {
        self.start_bridge(&p.pairing_id);
        // Suggestions are looked at again: a "not paired" repository now asks "Bind".
        self.pairings_changed();
        self.record(Activity {
            kind: ActivityKind::Paired,
            message: format!("Paired with {} as {}", p.workspace_name, p.machine_name),
            org_id: Some(p.workspace_id.clone()),
            ..Default::default()
        });
    }

    /// `vpd pair`: runs the pairing flow with `ui` (events out, answers in, cancellation),
    /// and connects the new pairing.
    pub async fn pair(&self, params: crate::api::protocol::PairParams, ui: PairUi) -> Result<Paired> {
        let store = self.credential_store().await;
        let r = pairing::run(&self.home, &store, params, ui).await;
        match &r {
            Err(e) => tracing::warn!(code = %e.code, error = %e.message, "pairing failed"),
            Ok(p) => self.paired(p),
        }
        r
    }

    /// Renames this machine in one org (the platform first, then `config.json`).
    pub async fn rename(&self, org: Option<String>, name: String) -> Result<crate::api::protocol::Renamed> {
        let r = crate::pairing::rename(&self.home, org.as_deref(), &name).await;
        self.touch();
        r
    }

    /// `vpd unpair` (and the UI's Unpair): streaming stops first, then the files and the
    /// platform.
    pub async fn unpair(&self, org: &str, after: AfterUnpair) -> Result<Unpaired> {
        // Stop the bridge first, so the platform's own revocation of it is not mistaken
        // for news.
        if let Ok(pairing) = crate::config::read(&self.home).and_then(|c| c.select(org).cloned()) {
            self.sessions.cut_pairing(&pairing.pairing_id, CutReason::Unpaired);
            self.bridges.stop(&pairing.pairing_id);
        }
        let r = crate::pairing::unpair(&self.home, org, after).await;
        self.pairings_changed();
        if let Ok(u) = &r {
            self.record(Activity {
                kind: ActivityKind::Unpaired,
                message: format!("Unpaired from {}", u.workspace_name),
                org_id: Some(u.workspace_id.clone()),
                ..Default::default()
            });
        }
        self.touch();
        r
    }

    /// What a bridge reports: a refused message (recorded in activity; a session whose
    /// message could not be sent even cut down stops streaming), or its end.
    pub async fn on_bridge_event(&self, event: Event) {
        match event {
            Event::Ended(ended) => self.on_ended(ended).await,
            Event::Refused { workspace_id, session_id, seq, reason, dropped, .. } => {
                if dropped {
                    self.sessions.cut(&session_id, CutReason::Refused);
                }
                let what = if seq == 0 { "its start".to_string() } else { format!("message {seq}") };
                let instead = if dropped {
                    ", even cut down; the session stopped streaming".to_string()
                } else if seq == 0 {
                    "; sent again with a plain-ASCII agent and directory".to_string()
                } else {
                    "; a gap (or an end without its reason) was sent in its place".to_string()
                };
                let message = format!("The relay refused {what} of session {session_id} ({reason}){instead}.");
                self.record(Activity { kind: ActivityKind::Refused, message, org_id: Some(workspace_id), ..Default::default() });
            }
            Event::SessionRefused { workspace_id, session_id, error, .. } => {
                self.sessions.refuse(&session_id);
                let why = if error == vpd_proto::relay::QUOTA_EXCEEDED {
                    "this machine's or the org's stored-output quota on the relay is used up".to_string()
                } else {
                    error
                };
                let message = format!("The relay did not take session {session_id} ({why}); it runs local-only. Ask an org admin to raise the quota or shorten retention.");
                self.record(Activity { kind: ActivityKind::Refused, message, org_id: Some(workspace_id), ..Default::default() });
            }
        }
    }

    /// A bridge ended for good. SPEC section 6: when the org revoked this pairing, its
    /// sessions are cut and the pairing removed.
    async fn on_ended(&self, ended: Ended) {
        let Ended::Revoked { pairing_id, runtime_target_id, .. } = ended else { return };
        // Only if that pairing is still the current one (a re-pairing replaces it, and the
        // platform then revokes the old one).
        let current = crate::config::read(&self.home)
            .ok()
            .and_then(|c| c.by_id(&pairing_id).map(|p| p.runtime_target_id == runtime_target_id))
            .unwrap_or(false);
        if !current {
            return;
        }
        self.sessions.cut_pairing(&pairing_id, CutReason::Revoked);
        self.bridges.forget(&pairing_id);
        let home = self.home.clone();
        match tokio::task::spawn_blocking(move || crate::pairing::remove_local(&home, &pairing_id, crate::binding::AfterUnpair::Suspend)).await {
            Ok(Ok((p, _, _, _))) => {
                let msg = format!("{} revoked this machine's pairing", p.workspace_name);
                tracing::warn!("{msg}");
                self.record(Activity { kind: ActivityKind::Revoked, message: msg, org_id: Some(p.workspace_id.clone()), ..Default::default() });
            }
            Ok(Err(e)) => tracing::error!(error = %e, "could not remove a revoked pairing"),
            Err(e) => tracing::error!(error = %e, "could not remove a revoked pairing"),
        }
        self.pairings_changed();
    }

    /// The set of pairings changed: every suggestion may be announced again as it now is, and
    /// the watched folders are scanned again.
    fn pairings_changed(&self) {
        self.suggestions.lock().unwrap().pairings_changed();
        self.watched.changed();
    }

    // ---- the pair job (the web UI's and the tray's pairing) ---------------------------

    /// Starts a pairing run by the daemon, unless one is running.
    pub fn pair_job_start(self: &Arc<Self>, params: crate::api::protocol::PairParams) -> Result<PairView> {
        let (cancel, confirms) = self.pair_jobs.begin()?;
        self.touch();
        let me = self.clone();
        tokio::spawn(async move {
            let (ev_tx, mut ev_rx) = mpsc::channel(8);
            let store = me.credential_store().await;
            let ui = PairUi { events: ev_tx, confirms, cancelled: cancel };
            let flow = pairing::run(&me.home, &store, params, ui);
            tokio::pin!(flow);
            let result = loop {
                tokio::select! {
                    Some(ev) = ev_rx.recv() => { me.pair_jobs.apply(ev); me.touch(); }
                    r = &mut flow => break r,
                }
            };
            while let Ok(ev) = ev_rx.try_recv() {
                me.pair_jobs.apply(ev);
            }
            match result {
                Ok(p) => {
                    me.paired(&p);
                    // SPEC A3: bindings kept from an earlier pairing with this org on this
                    // server wait for the person's yes (the UI and the tray ask).
                    let (home, id) = (me.home.clone(), p.pairing_id.clone());
                    let waiting = tokio::task::spawn_blocking(move || crate::binding::waiting_bindings(&home, &id))
                        .await
                        .ok()
                        .and_then(|r| r.ok())
                        .map_or(0, |w| w.len());
                    me.pair_jobs.update(|v| {
                        v.set_state(PairJobState::Done);
                        v.workspace_name = Some(p.workspace_name.clone());
                        v.pairing_id = Some(p.pairing_id.clone());
                        v.waiting_bindings = waiting;
                    });
                }
                Err(e) => {
                    let cancelled = e.code == ErrorCode::Cancelled;
                    tracing::warn!(code = %e.code, error = %e.message, "pairing from the UI ended without a pairing");
                    me.pair_jobs.update(|v| {
                        v.set_state(if cancelled { PairJobState::Cancelled } else { PairJobState::Failed });
                        v.error = Some(e.message.clone());
                    });
                }
            }
            me.touch();
        });
        Ok(self.pair_jobs.view().unwrap_or_default())
    }

    /// "Resume N directory bindings of …?" answered yes (SPEC A3): they stream again, for new
    /// sessions only. Returns the directories resumed.
    pub async fn resume_bindings(&self, pairing_id: String) -> Result<Vec<String>> {
        let id = pairing_id.clone();
        let resumed = self
            .blocking(move |home| {
                crate::config::load(home)?.select(&id)?;
                crate::binding::resume_bindings(home, &id)
            })
            .await?;
        self.pair_jobs.update(|v| {
            if v.pairing_id.as_deref() == Some(pairing_id.as_str()) {
                v.waiting_bindings = 0;
                v.resumed_bindings = Some(resumed.len());
            }
        });
        self.touch();
        tracing::info!(pairing = %pairing_id, resumed = resumed.len(), "resumed directory bindings");
        Ok(resumed.iter().map(|d| d.display().to_string()).collect())
    }

    pub fn pair_job_view(&self) -> Option<PairView> {
        self.pair_jobs.view()
    }

    pub fn pair_job_cancel(&self) -> Result<()> {
        self.pair_jobs.cancel()
    }

    pub fn pair_job_confirm(&self, replace: bool) -> Result<()> {
        self.pair_jobs.confirm(replace)?;
        self.touch();
        Ok(())
    }

    // ---- suggestions and watched folders ----------------------------------------------

    /// Offers a hint suggestion; a new one is announced (activity, and the tray notifies).
    fn offer_suggestion(&self, s: Suggestion) {
        let fresh = self.suggestions.lock().unwrap().offer(s.clone());
        // A "not paired" repository is announced once until the pairings change, across
        // restarts too (issue 11 item 5); the window lists it all the same.
        let announce = || {
            s.kind != SuggestionKind::Pair
                || crate::binding::say_not_paired_once(&self.home, Path::new(&s.directory), &s.org_id, "notification").unwrap_or(true)
        };
        if fresh && announce() {
            tracing::info!(directory = %s.directory, org = %s.org_id, kind = %s.kind, source = %s.source, "hint suggestion");
            self.record(Activity {
                kind: ActivityKind::Suggestion,
                message: crate::suggestions::message(&s),
                directory: Some(s.directory),
                org_id: Some(s.org_id),
                suggestion: Some(s.kind),
                ..Default::default()
            });
        }
    }

    /// Checks a directory for a hint (a session started there, the shell hook reported it).
    async fn check_hint(&self, dir: PathBuf, source: &'static str) {
        let home = self.home.clone();
        match tokio::task::spawn_blocking(move || crate::suggestions::check(&home, &dir, source)).await {
            Ok(Ok(Some(s))) => self.offer_suggestion(s),
            Ok(Ok(None)) => {}
            Ok(Err(e)) => tracing::debug!(error = %e, "hint check failed"),
            Err(e) => tracing::debug!(error = %e, "hint check failed"),
        }
    }

    /// The shell hook reports a directory whose hint the terminal did not settle; answered at
    /// once, checked in the background.
    pub fn hint_report(self: &Arc<Self>, dir: PathBuf) -> Result<()> {
        if !dir.is_absolute() {
            return Err(Error::new(ErrorCode::InvalidArgument, "hint_report needs an absolute directory"));
        }
        let me = self.clone();
        tokio::spawn(async move { me.check_hint(dir, "shell").await });
        Ok(())
    }

    /// Bind / Not now / Never for a suggestion.
    pub async fn answer_suggestion(&self, directory: &str, org_id: &str, kind: Option<SuggestionKind>, answer: Answer) -> Result<serde_json::Value> {
        let (home, d, o) = (self.home.clone(), directory.to_string(), org_id.to_string());
        let r = tokio::task::spawn_blocking(move || crate::suggestions::answer(&home, &d, &o, kind, answer))
            .await
            .map_err(|e| Error::new(ErrorCode::Internal, e.to_string()))?;
        if answer == Answer::Dismiss {
            self.suggestions.lock().unwrap().dismiss(directory, org_id);
        } else if r.is_ok() {
            self.suggestions.lock().unwrap().remove(directory, org_id);
        }
        self.touch();
        r
    }

    /// Runs file work off the async threads.
    async fn off_thread<T: Send + 'static>(&self, f: impl FnOnce(&Home) -> Result<T> + Send + 'static) -> Result<T> {
        let home = self.home.clone();
        tokio::task::spawn_blocking(move || f(&home)).await.map_err(|e| Error::new(ErrorCode::Internal, e.to_string()))?
    }

    /// Runs file work off the async threads and tells the UI something changed.
    async fn blocking<T: Send + 'static>(&self, f: impl FnOnce(&Home) -> Result<T> + Send + 'static) -> Result<T> {
        let r = self.off_thread(f).await;
        self.touch();
        r
    }

    /// Unbinds a directory bound on this machine (listed in `directories.json`): the web UI
    /// cannot unbind anything else.
    pub async fn unbind_recorded(&self, directory: String) -> Result<crate::binding::UnbindOutcome> {
        self.blocking(move |home| {
            let known = crate::records::load_directories(home)?.bindings.iter().any(|r| r.directory.as_os_str() == directory.as_str());
            if !known {
                return Err(Error::new(ErrorCode::NotBound, format!("{directory} is not a directory bound on this machine")));
            }
            crate::binding::unbind(home, std::path::Path::new(&directory))
        })
        .await
    }

    /// "Bind a folder…": the directories a typed path may complete to.
    pub async fn complete_folder(&self, typed: String) -> Result<Vec<crate::folders::Completion>> {
        self.off_thread(move |_| crate::folders::complete(&typed)).await
    }

    /// "Bind a folder…": what binding it would cover, before anything is written.
    pub async fn preview_folder(&self, directory: String) -> Result<crate::folders::Preview> {
        self.off_thread(move |home| crate::folders::preview(home, &directory)).await
    }

    /// "Bind a folder…": binds it (`org` left out when exactly one is paired); a suggestion
    /// for that directory is settled by it.
    pub async fn bind_folder(&self, directory: String, org: Option<String>, recursive: bool, replace: bool) -> Result<crate::binding::BindOutcome> {
        let outcome = self.blocking(move |home| crate::folders::bind(home, &directory, org.as_deref(), recursive, replace)).await?;
        self.suggestions.lock().unwrap().remove(&outcome.directory.display().to_string(), &outcome.org_id);
        Ok(outcome)
    }

    /// The window's Undo of a "Never": the directory may be suggested again, at once.
    pub async fn undo_decline(&self, directory: String, org_id: String) -> Result<bool> {
        let (d, o) = (directory.clone(), org_id.clone());
        let had = self.blocking(move |home| crate::binding::undo_decline(home, Path::new(&d), &o)).await?;
        self.suggestions.lock().unwrap().forget(&directory, &org_id);
        self.check_hint(PathBuf::from(directory), "watched").await;
        Ok(had)
    }

    /// `config.json`'s watched folders changed elsewhere: scan them again.
    pub fn watched_changed(&self) {
        self.watched.changed();
    }

    pub async fn watch_add(&self, path: String) -> Result<Vec<String>> {
        let r = self.blocking(move |home| crate::watched::add(home, &path)).await;
        self.watched.changed();
        r
    }

    pub async fn watch_remove(&self, path: String) -> Result<Vec<String>> {
        let r = self.blocking(move |home| crate::watched::remove(home, &path)).await;
        self.watched.changed();
        r
    }

    /// The watched folders' task: scans them, offers their suggestions, and rescans on
    /// changes. Idle (no wake-ups) while nothing changes.
    pub async fn run_watched(self: Arc<Self>) {
        let (tx, mut rx) = mpsc::channel::<()>(1);
        let mut watcher = None;
        loop {
            let folders = crate::config::load(&self.home).map(|c| c.daemon.watched_folders).unwrap_or_default();
            // Watches first, then the scan: whatever appears after a point is watched raises
            // an event, whatever appeared before is found by the scan. (A new watcher each
            // time: the set of children changes.)
            drop(watcher.take());
            let (f, events) = (folders.clone(), tx.clone());
            watcher = tokio::task::spawn_blocking(move || crate::watched::watcher(&f, events)).await.ok().flatten();
            let home = self.home.clone();
            let scanned = tokio::task::spawn_blocking(move || crate::watched::scan_all(&home, &folders)).await.unwrap_or_default();
            let mut list = Vec::new();
            for (folder, suggestions) in scanned {
                for s in suggestions {
                    self.offer_suggestion(s);
                }
                list.push(folder);
            }
            // The other suggestions (sessions, the shell hook) are looked at again too: what a
            // directory asks changes with the pairings.
            // (The watched folders' own were just checked by the scan.)
            let (home, pending) = (self.home.clone(), self.suggestions.lock().unwrap().pending());
            let now = tokio::task::spawn_blocking(move || {
                pending
                    .iter()
                    .filter(|s| s.source != "watched")
                    .filter_map(|s| crate::suggestions::check(&home, Path::new(&s.directory), &s.source).ok().flatten())
                    .collect::<Vec<_>>()
            })
            .await
            .unwrap_or_default();
            for s in now {
                self.offer_suggestion(s);
            }
            self.watched.set(list);
            self.touch();
            // Wait for a change, then let a burst (a clone) settle.
            tokio::select! {
                Some(()) = rx.recv() => {}
                _ = self.watched.wait_changed() => {}
            }
            tokio::time::sleep(Duration::from_millis(300)).await;
            while rx.try_recv().is_ok() {}
        }
    }

    // ---- the web UI's address ---------------------------------------------------------

    /// The web UI's port, and whether someone chose it: `VPD_UI_PORT` (tests; `0` picks one)
    /// or a `daemon.uiPort` in config.json other than the default are chosen (taken → an
    /// error); the default 7070 is not (taken → any free loopback port; SPEC A5).
    pub fn ui_port(&self) -> (u16, bool) {
        if let Some(p) = std::env::var("VPD_UI_PORT").ok().and_then(|v| v.parse().ok()) {
            return (p, true);
        }
        let port = crate::config::load(&self.home).map(|c| c.daemon.ui_port).unwrap_or(crate::config::DEFAULT_UI_PORT);
        (port, port != crate::config::DEFAULT_UI_PORT)
    }

    /// The web UI listens on `port`; `links` makes its one-time login links.
    pub fn ui_ready(&self, port: u16, links: LinkMaker) {
        *self.ui.lock().unwrap() = UiState::Ready { port, links };
    }

    /// The web UI could not start, and why (`vpd ui` explains it).
    pub fn ui_failed(&self, why: String) {
        *self.ui.lock().unwrap() = UiState::Failed(why);
    }

    /// `vpd ui`: a one-time login link that lands on `next`.
    pub fn ui_link(&self, next: Option<&str>) -> Result<UiLink> {
        match &*self.ui.lock().unwrap() {
            UiState::Ready { port, links } => Ok(UiLink { url: links(next), port: *port }),
            UiState::Failed(why) => Err(Error::new(ErrorCode::DaemonUnavailable, format!("the web UI is not running: {why}"))),
            UiState::Starting => Err(Error::new(ErrorCode::UiStarting, "the web UI is not running: it is still starting; try again in a moment")),
        }
    }

    // ---- sessions ---------------------------------------------------------------------

    /// Starts a session: its binding is resolved now, once.
    pub async fn session_start(self: &Arc<Self>, p: SessionStartParams) -> Result<SessionInfo> {
        if self.is_stopping() {
            return Err(Self::restarting());
        }
        let (home, facts) = (self.home.clone(), self.facts.clone());
        let resolved = tokio::task::spawn_blocking(move || facts.resolve(&home, std::path::Path::new(&p.cwd)))
            .await
            .map_err(|e| Error::new(ErrorCode::Internal, e.to_string()))??;
        let (session, start) = sessions::start(resolved, &p.agent, p.name);
        let info = session.info.clone();
        let rt = session.runtime_target_id.clone();
        self.sessions.insert(session);
        if let (Some(msg), Some(pairing), Some(rt)) = (start, &info.pairing_id, &rt) {
            if !self.bridges.route(pairing, rt, msg).await {
                self.sessions.cut(&info.session_id, CutReason::NoPairing);
            }
        }
        tracing::info!(session = %info.session_id, state = %info.state, org = ?info.org_name, "session started");
        if info.org_id.is_none() {
            // SPEC section 8: the daemon checks for a hint at session start.
            let me = self.clone();
            let dir = PathBuf::from(&info.cwd);
            tokio::spawn(async move { me.check_hint(dir, "session").await });
        }
        Ok(info)
    }

    /// Numbers and routes one message of a session, in order with its other messages.
    async fn session_message(
        &self,
        id: &str,
        make: impl FnOnce(&mut sessions::Session) -> Result<Option<vpd_proto::relay::DaemonMsg>>,
    ) -> Result<SessionInfo> {
        sessions::check_id(id)?;
        let order = self.sessions.order(id).ok_or_else(|| Error::new(ErrorCode::InvalidArgument, format!("no session {id}")))?;
        let _turn = order.lock().await;
        if self.is_stopping() {
            return Err(Self::restarting());
        }
        let (msg, org, rt, info) = self.sessions.with(id, |s| {
            let msg = make(s)?;
            s.received += 1;
            Ok((msg, s.info.pairing_id.clone(), s.runtime_target_id.clone(), s.info.clone()))
        })?;
        if let (Some(msg), Some(org), Some(rt)) = (msg, org, rt) {
            if !self.bridges.route(&org, &rt, msg).await {
                self.sessions.cut(id, CutReason::NoPairing);
            }
        }
        Ok(info)
    }

    /// Appends one frame (base64 `data`) to a running session.
    pub async fn session_frame(&self, id: &str, kind: vpd_proto::relay::FrameKind, data: String) -> Result<()> {
        check_frame(kind, &data)?;
        self.session_message(id, |s| {
            if s.info.ended_at.is_some() {
                return Err(Error::new(ErrorCode::InvalidArgument, format!("session {} has ended", s.info.session_id)));
            }
            Ok(s.frame(kind, data))
        })
        .await?;
        Ok(())
    }

    /// Ends a session (again: nothing more is sent).
    pub async fn session_end(&self, id: &str, exit_code: Option<i32>, reason: Option<&str>) -> Result<SessionInfo> {
        let info =
            self.session_message(id, |s| Ok(if s.info.ended_at.is_some() { None } else { s.end(exit_code, reason.unwrap_or("exited")) })).await?;
        tracing::info!(session = %id, ?exit_code, "session ended");
        Ok(self.sessions.info(id).unwrap_or(info))
    }

    /// Every session, oldest first.
    pub fn sessions(&self) -> Vec<SessionInfo> {
        self.sessions.list()
    }
}

fn check_frame(kind: vpd_proto::relay::FrameKind, data: &str) -> Result<()> {
    use base64::Engine;
    if kind == vpd_proto::relay::FrameKind::Gap {
        return Err(Error::new(ErrorCode::InvalidArgument, "gap frames are made by the daemon, not sent to it"));
    }
    let max = vpd_proto::limits::FRAME_DATA;
    let ok = data.len() <= max.div_ceil(3) * 4 && base64::engine::general_purpose::STANDARD.decode(data).is_ok_and(|b| b.len() <= max);
    if !ok {
        return Err(Error::new(
            ErrorCode::InvalidArgument,
            format!("frame data must be base64 (standard) of at most {} KiB; split larger output", max / 1024),
        ));
    }
    Ok(())
}

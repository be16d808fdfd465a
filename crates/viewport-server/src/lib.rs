//! `viewport-server`: the self-hostable Viewport platform (SPEC section 14): pairing codes,
//! the approval page, machines, members, relay tokens and the JWKS, and the relay itself
//! (`/ws`, see [`relay`]) with its per-org session records.
//!
//! [`app`] builds the router, [`serve`] runs it on a listener; tests run both in-process.

pub mod api;
pub mod auth;
pub mod cli;
pub mod client;
pub mod keys;
pub mod limits;
pub mod pages;
pub mod quota;
pub mod relay;
pub mod roles;
pub mod store;
pub mod terminal;
pub mod tls;
pub mod util;

use axum::extract::{DefaultBodyLimit, Request, State};
use axum::http::{header, HeaderValue, Method, StatusCode};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::Router;
use roles::Actor;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use store::{Pairing, Store, StoreError};
use tokio::net::TcpListener;
use tokio::sync::Notify;

/// Largest request body accepted.
pub const BODY_LIMIT: usize = 64 * 1024;

#[derive(Debug, Clone)]
pub struct Config {
    /// Where users and daemons reach this server, e.g. `https://viewport.example.com`.
    pub public_url: String,
    /// Pairing codes created or claimed per client IP and minute.
    pub pairing_per_minute: u32,
    /// Failed sign-ins per (account, client) and minute (×3 per client, ×5 per account).
    pub login_per_minute: u32,
    /// Proxies whose `X-Forwarded-For` / `Forwarded` are believed (`serve --trusted-proxy`).
    pub trusted_proxies: Vec<ipnet::IpNet>,
    /// Views and submissions of the `/pair` page per signed-in user and minute.
    pub pair_page_per_minute: u32,
    /// How long the relay waits for the daemon's proof of key (then closes with 4408).
    pub proof_timeout: std::time::Duration,
    /// How often the relay checks the database for revocations made by other processes
    /// (the admin CLI) among its live connections.
    pub revocation_poll: std::time::Duration,
    /// Recorded sessions are deleted this many days after they ended.
    pub retention_days: u32,
    /// Relay messages per second and connection, sustained; beyond → close 1008.
    pub relay_rate_per_sec: u32,
    /// Relay messages a connection may send at once above the sustained rate.
    pub relay_burst: u32,
    /// Lifetime of relay tokens, seconds (at most 600).
    pub relay_token_ttl_secs: i64,
    /// Bytes per minute per machine and per org (SPEC A8).
    pub write_budget: quota::WriteBudget,
    /// Stored bytes per machine and per org before new sessions are refused (SPEC A8).
    pub stored_quota: store::StoredQuota,
}

impl Config {
    pub fn new(public_url: impl Into<String>) -> Config {
        Config {
            public_url: public_url.into().trim_end_matches('/').to_string(),
            pairing_per_minute: 30,
            login_per_minute: 10,
            trusted_proxies: Vec::new(),
            pair_page_per_minute: 30,
            proof_timeout: std::time::Duration::from_secs(vpd_proto::relay::PROOF_TIMEOUT_SECS),
            revocation_poll: std::time::Duration::from_millis(300),
            relay_token_ttl_secs: vpd_proto::runtime::RELAY_TOKEN_MAX_SECS,
            retention_days: 30,
            relay_rate_per_sec: 100_000,
            relay_burst: 200_000,
            write_budget: quota::WriteBudget { machine_per_min: 64 << 20, org_per_min: 512 << 20 },
            stored_quota: store::StoredQuota { machine_bytes: 4 << 30, org_bytes: 64 << 30 },
        }
    }
}

#[derive(Clone)]
pub struct AppState(Arc<Inner>);

pub struct Inner {
    pub store: Store,
    pub config: Config,
    pub keys: keys::Keys,
    pub limits: limits::Limits,
    /// Woken on every in-process approval or denial (long polls also re-check the database,
    /// because the admin CLI approves from another process).
    pub changes: Notify,
    /// The live relay connections.
    pub relay: relay::Registry,
    /// Screens of the sessions being watched on their pages.
    pub screens: terminal::Screens,
    /// Write budgets of machines and orgs (in this process).
    pub budgets: quota::Budgets,
    /// This process's name among the instances on one database (relay connections are
    /// `{instance}/{n}`).
    pub instance: String,
    /// Instances seen alive on the database, this one included (1 on SQLite): an org's
    /// write budget is divided between them.
    pub instances_alive: std::sync::atomic::AtomicU64,
    /// When the keys were last reloaded for a token with an unknown `kid` (Unix seconds).
    keys_reloaded_at: std::sync::atomic::AtomicI64,
    setup_token: Mutex<Option<String>>,
    public_origin: String,
}

impl std::ops::Deref for AppState {
    type Target = Inner;
    fn deref(&self) -> &Inner {
        &self.0
    }
}

impl AppState {
    /// Loads (or creates) the signing key; when the database has no user yet, makes the
    /// one-time setup token (see [`AppState::setup_url`]).
    pub fn new(store: Store, config: Config) -> anyhow::Result<AppState> {
        let keys = keys::Keys::load_or_create(&store)?;
        let setup_token = (store.user_count()? == 0).then(util::random_token);
        let public_origin = origin_of(&config.public_url);
        Ok(AppState(Arc::new(Inner {
            limits: limits::Limits::new(config.pairing_per_minute, config.login_per_minute, config.pair_page_per_minute),
            store,
            config,
            keys,
            changes: Notify::new(),
            relay: relay::Registry::default(),
            screens: terminal::Screens::default(),
            budgets: quota::Budgets::default(),
            instance: ulid::Ulid::new().to_string(),
            instances_alive: std::sync::atomic::AtomicU64::new(1),
            keys_reloaded_at: std::sync::atomic::AtomicI64::new(0),
            setup_token: Mutex::new(setup_token),
            public_origin,
        })))
    }

    /// Runs a blocking store call off the async executor.
    pub async fn db<T, F>(&self, f: F) -> Result<T, StoreError>
    where
        T: Send + 'static,
        F: FnOnce(&Store) -> Result<T, StoreError> + Send + 'static,
    {
        let store = self.store.clone();
        match tokio::task::spawn_blocking(move || f(&store)).await {
            Ok(r) => r,
            Err(e) => Err(StoreError::Conflict(format!("database task failed: {e}"))),
        }
    }

    pub fn public_url(&self) -> &str {
        &self.config.public_url
    }

    /// `ws(s)://…/ws` of this server.
    pub fn relay_endpoint(&self) -> String {
        relay_endpoint_for(&self.config.public_url)
    }

    /// The key every per-client limit counts by: the client's address (behind a trusted
    /// proxy, the one it forwarded for), IPv6 by /64.
    pub fn client(&self, peer: std::net::IpAddr, headers: &axum::http::HeaderMap) -> std::net::IpAddr {
        client::key(client::address(peer, headers, &self.config.trusted_proxies))
    }

    pub fn secure_cookies(&self) -> bool {
        self.config.public_url.starts_with("https://")
    }

    /// `{public}/setup?token=…` while no user exists.
    pub fn setup_url(&self) -> Option<String> {
        let t = self.setup_token.lock().unwrap_or_else(|e| e.into_inner());
        t.as_ref().map(|t| format!("{}/setup?token={t}", self.config.public_url))
    }

    pub(crate) fn setup_token_matches(&self, candidate: &str) -> bool {
        let t = self.setup_token.lock().unwrap_or_else(|e| e.into_inner());
        t.as_deref().is_some_and(|t| util::ct_str_eq(t, candidate))
    }

    pub(crate) fn end_setup(&self) {
        *self.setup_token.lock().unwrap_or_else(|e| e.into_inner()) = None;
    }

    /// Approves a device code (as the page does) and wakes the long polls.
    pub async fn approve_code(&self, code: &str, workspace_id: &str, user_id: &str, actor: &Actor) -> Result<Pairing, StoreError> {
        let (c, w, u, a) = (code.to_string(), workspace_id.to_string(), user_id.to_string(), actor.clone());
        let r = self.db(move |s| s.approve_code(&c, &w, &u, &a, util::now())).await;
        self.changes.notify_waiters();
        r
    }

    pub async fn deny_code(&self, code: &str, user_id: &str) -> Result<(), StoreError> {
        let (c, u) = (code.to_string(), user_id.to_string());
        let r = self.db(move |s| s.deny_code(&c, &u, util::now())).await;
        self.changes.notify_waiters();
        r
    }

    /// Revokes a machine's pairing (by machine or runtime target id) in a workspace and closes
    /// its live relay connection at once. `Ok(false)` when it was already revoked.
    pub async fn revoke(&self, workspace_id: &str, machine_or_target_id: &str, reason: &str, actor: &Actor) -> Result<bool, StoreError> {
        let (w, m, r, a) = (workspace_id.to_string(), machine_or_target_id.to_string(), reason.to_string(), actor.clone());
        let changed = self.db(move |s| s.revoke(&w, &m, &r, &a, util::now())).await?;
        self.close_revoked().await;
        Ok(changed)
    }

    /// Removes a member (revoking their pairings in that workspace) and closes those pairings'
    /// live relay connections at once. Returns how many pairings were revoked.
    pub async fn remove_member(&self, workspace_id: &str, user_id: &str, actor: &Actor) -> Result<usize, StoreError> {
        let (w, u, a) = (workspace_id.to_string(), user_id.to_string(), actor.clone());
        let n = self.db(move |s| s.remove_member_as(&w, &u, &a, util::now())).await?;
        self.close_revoked().await;
        Ok(n)
    }

    /// Closes (4401 `revoked`) every live relay connection whose pairing is revoked.
    pub async fn close_revoked(&self) -> usize {
        relay::close_revoked(self).await
    }

    /// Closes every relay connection with 1001 and waits (at most `wait`) until they are gone.
    pub async fn shutdown_relay(&self, wait: std::time::Duration) {
        self.relay.close_all(vpd_proto::relay::close::GOING_AWAY, "relay shutting down");
        let deadline = tokio::time::Instant::now() + wait;
        while !self.relay.is_empty() && tokio::time::Instant::now() < deadline {
            tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        }
    }

    /// Starts the background tasks; they stop when the returned guard is dropped: retention,
    /// the consumer of the store's events, and either (SQLite) the poller for what the admin
    /// CLI changes from another process, or (PostgreSQL) the listener for every instance's
    /// changes and this instance's heartbeat.
    pub fn spawn_background(&self) -> Background {
        let mut tasks = vec![relay::spawn_retention(self.clone()), spawn_events(self.clone())];
        match self.store.listen() {
            Some(listener) => {
                tasks.push(listener);
                tasks.push(spawn_heartbeat(self.clone()));
            }
            None => tasks.push(relay::spawn_revocation_poller(self.clone())),
        }
        Background(tasks)
    }

    /// The runtime targets among `ids` with a live relay connection: here, or on any other
    /// live instance on the same database.
    pub async fn online(&self, ids: Vec<String>) -> std::collections::HashSet<String> {
        let mut out: std::collections::HashSet<String> = ids.iter().filter(|id| self.relay.is_online(id)).cloned().collect();
        if self.store.shared() {
            let rest: Vec<String> = ids.into_iter().filter(|id| !out.contains(id)).collect();
            if !rest.is_empty() {
                match self.db(move |s| s.online_among(&rest, util::now() - INSTANCE_DEAD_SECS)).await {
                    Ok(v) => out.extend(v),
                    Err(e) => tracing::warn!("reading which machines are online on other instances: {e}"),
                }
            }
        }
        out
    }

    /// The write budget this instance applies: an org's is divided between the live
    /// instances (a machine has one live connection, so its own budget is whole).
    pub fn write_budget(&self) -> quota::WriteBudget {
        let n = self.instances_alive.load(std::sync::atomic::Ordering::Relaxed).max(1);
        let b = self.config.write_budget;
        quota::WriteBudget { machine_per_min: b.machine_per_min, org_per_min: (b.org_per_min / n).max(1) }
    }

    /// Verifies a relay token; a token signed by a key this instance has not loaded yet (a
    /// rotation on another instance) makes it read the keys again, at most once a second.
    pub async fn verify_relay_token(&self, token: &str) -> Result<vpd_proto::runtime::RelayClaims, keys::TokenError> {
        let first = self.keys.verify_relay_token(token);
        let unknown = keys::token_kid(token).is_some_and(|k| !self.keys.knows(&k));
        if first.is_ok() || !unknown {
            return first;
        }
        let now = util::now();
        let last = self.keys_reloaded_at.load(std::sync::atomic::Ordering::Relaxed);
        if now > last
            && self.keys_reloaded_at.compare_exchange(last, now, std::sync::atomic::Ordering::Relaxed, std::sync::atomic::Ordering::Relaxed).is_ok()
        {
            self.reload_keys().await;
            return self.keys.verify_relay_token(token);
        }
        first
    }

    /// Reads the signing keys again (a rotation).
    pub async fn reload_keys(&self) {
        let s = self.clone();
        match tokio::task::spawn_blocking(move || s.keys.reload(&s.store)).await {
            Ok(Ok(())) => tracing::debug!("signing keys reloaded"),
            Ok(Err(e)) => tracing::warn!("reloading the signing keys: {e:#}"),
            Err(e) => tracing::warn!("reloading the signing keys: {e}"),
        }
    }

    // ---- limits: in this process on SQLite, in the database with several instances ----

    /// A hit on a per-minute limit counted in the database: `false` when over `max`.
    async fn shared_hit(&self, key: String, max: u32) -> bool {
        let (now, key) = (util::now(), limit_key(&key));
        let window = now / 60 * 60;
        match self.db(move |s| s.count_add(&key, window, 1, window - 120)).await {
            Ok(n) => n <= i64::from(max),
            Err(e) => {
                tracing::warn!("counting a rate limit in the database: {e}; refusing");
                false
            }
        }
    }

    async fn shared_count(&self, key: &str) -> i64 {
        let (now, key) = (util::now(), limit_key(key));
        let window = now / 60 * 60;
        self.db(move |s| s.count_of(&key, window)).await.unwrap_or(i64::MAX)
    }

    /// Pairing codes created or claimed by this client, per minute.
    pub async fn allow_pairing(&self, client: std::net::IpAddr) -> bool {
        if !self.store.shared() {
            return self.limits.allow_pairing(client);
        }
        self.shared_hit(format!("pairing {client}"), self.config.pairing_per_minute).await
    }

    /// Views and submissions of `/pair` by this user, per minute.
    pub async fn allow_pair_page(&self, user_id: &str) -> bool {
        if !self.store.shared() {
            return self.limits.allow_pair_page(user_id);
        }
        self.shared_hit(format!("pair-page {user_id}"), self.config.pair_page_per_minute).await
    }

    /// Whether sign-in is blocked for this account and client (see [`limits::Limits`]).
    pub async fn login_blocked(&self, email: &str, client: std::net::IpAddr, known_device: bool) -> Option<limits::LoginBlock> {
        if !self.store.shared() {
            return self.limits.login_blocked(email, client, known_device);
        }
        let max = i64::from(self.config.login_per_minute.max(1));
        if self.shared_count(&format!("login-pair {email} {client}")).await >= max {
            Some(limits::LoginBlock::ClientAndAccount)
        } else if self.shared_count(&format!("login-client {client}")).await >= max * 3 {
            Some(limits::LoginBlock::Client)
        } else if !known_device && self.shared_count(&format!("login-account {email}")).await >= max * 5 {
            Some(limits::LoginBlock::Account)
        } else {
            None
        }
    }

    /// Counts a failed sign-in.
    pub async fn login_failed(&self, email: &str, client: std::net::IpAddr) {
        if !self.store.shared() {
            return self.limits.login_failed(email, client);
        }
        for key in [format!("login-pair {email} {client}"), format!("login-client {client}"), format!("login-account {email}")] {
            self.shared_hit(key, u32::MAX).await;
        }
    }

    /// Mints an "Add machine" code for `workspace_id` as `user_id`; returns the canonical
    /// code and its expiry (Unix seconds).
    pub async fn mint_code(&self, workspace_id: &str, user_id: &str, actor: &Actor) -> Result<(String, i64), StoreError> {
        let (w, u, a) = (workspace_id.to_string(), user_id.to_string(), actor.clone());
        self.db(move |s| mint_code(s, &w, &u, &a)).await
    }
}

/// An instance not heard from for this long is taken for dead: its relay connections no
/// longer count as online, and the write budget is divided between fewer instances.
pub const INSTANCE_DEAD_SECS: i64 = 30;
/// How often an instance says it is alive.
const HEARTBEAT_EVERY: std::time::Duration = std::time::Duration::from_secs(5);

/// A rate-limit counter's name as stored: hashed, so the database holds no email addresses
/// or client addresses for it.
fn limit_key(key: &str) -> String {
    util::b64url(&util::sha256(key.as_bytes()))
}

/// Acts on the store's events (this process's, and with PostgreSQL every instance's).
fn spawn_events(state: AppState) -> tokio::task::JoinHandle<()> {
    use store::sql::Event;
    let mut rx = state.store.subscribe();
    tokio::spawn(async move {
        loop {
            let event = match rx.recv().await {
                Ok(e) => e,
                // Events were dropped (a burst): look at everything again.
                Err(tokio::sync::broadcast::error::RecvError::Lagged(_)) => Event::Resync,
                Err(tokio::sync::broadcast::error::RecvError::Closed) => return,
            };
            match event {
                Event::Pairing => state.changes.notify_waiters(),
                Event::Revoked { ids } => {
                    for id in ids {
                        if state.relay.close(&id, vpd_proto::relay::close::INVALID_TOKEN, vpd_proto::relay::close::REASON_REVOKED) {
                            tracing::info!(runtime_target = %id, "closing the relay connection of a revoked pairing");
                        }
                    }
                }
                Event::Live { runtime_target_id, conn } => relay::another_is_live(&state, &runtime_target_id, &conn).await,
                Event::Keys => state.reload_keys().await,
                Event::Resync => {
                    state.changes.notify_waiters();
                    relay::close_revoked(&state).await;
                    relay::check_live(&state).await;
                    state.reload_keys().await;
                }
            }
        }
    })
}

/// Says every few seconds that this instance is alive, and counts the live instances.
fn spawn_heartbeat(state: AppState) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(HEARTBEAT_EVERY);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tick.tick().await;
            let (id, now) = (state.instance.clone(), util::now());
            match state.db(move |s| s.instance_heartbeat(&id, now, now - INSTANCE_DEAD_SECS)).await {
                Ok(alive) => state.instances_alive.store(alive.max(1), std::sync::atomic::Ordering::Relaxed),
                Err(e) => tracing::warn!("instance heartbeat: {e}"),
            }
        }
    })
}

/// Background tasks; aborted on drop.
pub struct Background(Vec<tokio::task::JoinHandle<()>>);

impl Drop for Background {
    fn drop(&mut self) {
        for t in &self.0 {
            t.abort();
        }
    }
}

/// Mints an "Add machine" code (shared by the page and `admin pairing mint`).
pub fn mint_code(store: &Store, workspace_id: &str, user_id: &str, actor: &Actor) -> Result<(String, i64), StoreError> {
    let now = util::now();
    let expires = now + util::CODE_TTL_SECS;
    for _ in 0..8 {
        let code = util::random_code();
        match store.insert_minted_code(&code, workspace_id, user_id, actor, now, expires) {
            Ok(()) => return Ok((code, expires)),
            Err(StoreError::Conflict(_)) => continue,
            Err(e) => return Err(e),
        }
    }
    Err(StoreError::Conflict("could not find a free pairing code".into()))
}

/// `http://h:p/x` → `ws://h:p/x/ws`, `https` → `wss`.
pub fn relay_endpoint_for(public_url: &str) -> String {
    let base = public_url.trim_end_matches('/');
    if let Some(rest) = base.strip_prefix("https://") {
        format!("wss://{rest}/ws")
    } else if let Some(rest) = base.strip_prefix("http://") {
        format!("ws://{rest}/ws")
    } else {
        format!("{base}/ws")
    }
}

/// `scheme://host[:port]` of a URL.
fn origin_of(url: &str) -> String {
    match url.split_once("://") {
        Some((scheme, rest)) => {
            let host = rest.split(['/', '?', '#']).next().unwrap_or("");
            format!("{}://{}", scheme.to_ascii_lowercase(), host.to_ascii_lowercase())
        }
        None => url.to_string(),
    }
}

/// The router with every route and middleware.
pub fn app(state: AppState) -> Router {
    Router::new()
        .route("/ws", axum::routing::get(relay::ws_handler))
        .merge(api::routes())
        .merge(pages::routes())
        .layer(middleware::from_fn_with_state(state.clone(), origin_check))
        .layer(middleware::from_fn(api::json_errors))
        .layer(middleware::from_fn(security_headers))
        .layer(DefaultBodyLimit::max(BODY_LIMIT))
        .with_state(state)
}

/// Only `/ws` (for `serve --relay-listen`).
pub fn relay_app(state: AppState) -> Router {
    Router::new().route("/ws", axum::routing::get(relay::ws_handler)).layer(middleware::from_fn(security_headers)).with_state(state)
}

/// Serves `app(state)` on `listener`, with the relay's background tasks, until the task is
/// dropped.
pub async fn serve(listener: TcpListener, state: AppState) -> std::io::Result<()> {
    let _background = state.spawn_background();
    let app = app(state).into_make_service_with_connect_info::<SocketAddr>();
    axum::serve(listener, app).await
}

async fn security_headers(req: Request, next: Next) -> Response {
    let mut res = next.run(req).await;
    let h = res.headers_mut();
    h.insert(header::CONTENT_SECURITY_POLICY, HeaderValue::from_static("default-src 'self'; frame-ancestors 'none'"));
    h.insert(header::X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff"));
    // `same-origin`, not `no-referrer`: under `no-referrer` Chromium sends `Origin: null` on
    // form posts, which no origin check can tell from a sandboxed frame's.
    h.insert(header::REFERRER_POLICY, HeaderValue::from_static("same-origin"));
    h.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    h.entry(header::CACHE_CONTROL).or_insert(HeaderValue::from_static("no-store"));
    res
}

/// Where a state-changing page request came from, as the browser tells it.
#[derive(Debug, PartialEq, Eq)]
enum Provenance {
    /// From one of this server's own pages.
    SameOrigin,
    /// From another site, a sandboxed frame (`Origin: null`) or a browser extension.
    Foreign,
    /// No `Sec-Fetch-Site` and no `Origin`: not a browser, or a very old one. The CSRF token
    /// (and, for pages, the session cookie) still decides.
    Unknown,
}

/// Decides from `Sec-Fetch-Site` (sent by Chromium, Firefox and Safari), falling back to an
/// exact `Origin` match when it is absent. `Sec-Fetch-Site` is what the browser knows: a page
/// served as `http://localhost:8080` posts `same-origin` even when `--public-url` names
/// `127.0.0.1`, and a page under any referrer policy still says where it came from.
fn provenance(headers: &axum::http::HeaderMap, public_origin: &str) -> Provenance {
    if let Some(site) = headers.get("sec-fetch-site") {
        return match site.to_str() {
            Ok(s) if s.eq_ignore_ascii_case("same-origin") => Provenance::SameOrigin,
            _ => Provenance::Foreign,
        };
    }
    match headers.get(header::ORIGIN) {
        Some(origin) => match origin.to_str() {
            Ok(o) if o.eq_ignore_ascii_case(public_origin) => Provenance::SameOrigin,
            _ => Provenance::Foreign,
        },
        None => Provenance::Unknown,
    }
}

/// Refuses state-changing page requests that a browser says came from elsewhere.
async fn origin_check(State(state): State<AppState>, req: Request, next: Next) -> Response {
    let safe = matches!(*req.method(), Method::GET | Method::HEAD | Method::OPTIONS);
    if !safe && !req.uri().path().starts_with("/api/") && provenance(req.headers(), &state.public_origin) == Provenance::Foreign {
        return pages::layout::error_page(
            StatusCode::FORBIDDEN,
            "Request refused",
            "This form was submitted from another site. Go back to the page and try again.",
        )
        .into_response();
    }
    next.run(req).await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls() {
        assert_eq!(relay_endpoint_for("http://127.0.0.1:8080"), "ws://127.0.0.1:8080/ws");
        assert_eq!(relay_endpoint_for("https://v.example.com/"), "wss://v.example.com/ws");
        assert_eq!(origin_of("https://V.example.com:8443/x?y"), "https://v.example.com:8443");
    }

    #[test]
    fn provenance_prefers_sec_fetch_site_then_exact_origin() {
        let me = "http://127.0.0.1:8080";
        let h = |pairs: &[(&'static str, &str)]| {
            let mut m = axum::http::HeaderMap::new();
            for (k, v) in pairs {
                m.insert(*k, HeaderValue::from_str(v).unwrap());
            }
            m
        };
        assert_eq!(provenance(&h(&[("sec-fetch-site", "same-origin")]), me), Provenance::SameOrigin);
        // The browser's word wins over an Origin that does not name --public-url (a page
        // opened as localhost instead of 127.0.0.1).
        assert_eq!(provenance(&h(&[("sec-fetch-site", "same-origin"), ("origin", "http://localhost:8080")]), me), Provenance::SameOrigin);
        for site in ["cross-site", "same-site", "none", "bogus"] {
            assert_eq!(provenance(&h(&[("sec-fetch-site", site), ("origin", me)]), me), Provenance::Foreign, "{site}");
        }
        assert_eq!(provenance(&h(&[("origin", me)]), me), Provenance::SameOrigin);
        assert_eq!(provenance(&h(&[("origin", "HTTP://127.0.0.1:8080")]), me), Provenance::SameOrigin);
        for o in ["null", "http://127.0.0.1:8081", "https://evil.example", "http://127.0.0.1:8080.evil.example"] {
            assert_eq!(provenance(&h(&[("origin", o)]), me), Provenance::Foreign, "{o}");
        }
        assert_eq!(provenance(&h(&[]), me), Provenance::Unknown);
    }
}

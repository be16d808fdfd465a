//! Test harness: the real router on 127.0.0.1:0 with a temporary SQLite file.
#![allow(dead_code)]

use base64::Engine;
use ed25519_dalek::SigningKey;
use std::path::PathBuf;
use viewport_server::store::{Store, User, Workspace};
use viewport_server::{AppState, Config};
use vpd_proto::pairing::{CreatePairingCode, PairingCodeCreated, Platform};

pub struct Server {
    pub url: String,
    pub state: AppState,
    pub db_path: PathBuf,
    pub http: reqwest::Client,
    _dir: tempfile::TempDir,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for Server {
    fn drop(&mut self) {
        self.task.abort();
    }
}

pub async fn start() -> Server {
    start_with(|_| {}).await
}

/// An instance on the database `db` (a postgres:// URL: several instances share it). Its
/// store is reached only off the async executor (`state.db`), as the server does.
pub async fn start_on(db: &str, tweak: impl FnOnce(&mut Config)) -> Server {
    start_db(Some(db), tweak).await
}

/// An instance on a SQLite file of its own.
pub async fn start_with(tweak: impl FnOnce(&mut Config)) -> Server {
    start_db(None, tweak).await
}

async fn start_db(db: Option<&str>, tweak: impl FnOnce(&mut Config)) -> Server {
    let dir = tempfile::tempdir().unwrap();
    let db_path = db.map_or_else(|| dir.path().join("viewport.db"), PathBuf::from);
    let spec = db_path.display().to_string();
    let store = tokio::task::spawn_blocking(move || Store::connect(&spec)).await.unwrap().unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let mut config = Config::new(url.clone());
    config.pairing_per_minute = 10_000;
    config.login_per_minute = 10_000;
    config.pair_page_per_minute = 10_000;
    tweak(&mut config);
    let state = tokio::task::spawn_blocking(move || AppState::new(store, config)).await.unwrap().unwrap();
    let s = state.clone();
    let task = tokio::spawn(async move {
        viewport_server::serve(listener, s).await.unwrap();
    });
    let http = reqwest::Client::builder().redirect(reqwest::redirect::Policy::none()).build().unwrap();
    Server { url, state, db_path, http, _dir: dir, task }
}

/// The actor of a change made as `u` (as the pages make it).
pub fn as_user(u: &User) -> viewport_server::roles::Actor {
    viewport_server::roles::Actor::User { id: u.id.clone(), email: u.email.clone() }
}

pub fn b64url(b: &[u8]) -> String {
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(b)
}

pub fn new_key() -> SigningKey {
    SigningKey::from_bytes(&viewport_server::util::random_bytes::<32>())
}

pub fn body_for(key: &SigningKey, name: &str) -> CreatePairingCode {
    CreatePairingCode {
        name: name.to_string(),
        public_key: b64url(key.verifying_key().as_bytes()),
        key_algorithm: "ed25519".into(),
        daemon_version: "0.1.0".into(),
        platform: Platform { os: "linux".into(), arch: "x86_64".into() },
        requested_org: None,
    }
}

impl Server {
    pub fn at(&self, path: &str) -> String {
        format!("{}{}", self.url, path)
    }

    pub fn store(&self) -> &Store {
        &self.state.store
    }

    /// A user (password "correct horse battery") who is a member of the given orgs.
    pub fn user(&self, email: &str, orgs: &[&Workspace]) -> User {
        static HASH: std::sync::OnceLock<String> = std::sync::OnceLock::new();
        let hash = HASH.get_or_init(|| viewport_server::auth::hash_password("correct horse battery").unwrap());
        let u = self.store().create_user(email, hash, 0).unwrap();
        for o in orgs {
            self.store().add_member(&o.id, &u.id, 0).unwrap();
        }
        u
    }

    pub fn org(&self, name: &str, slug: &str) -> Workspace {
        self.store().create_workspace(name, slug, 0).unwrap()
    }

    pub async fn create_code(&self, body: &CreatePairingCode) -> PairingCodeCreated {
        let r = self.http.post(self.at("/api/pairing-codes")).json(body).send().await.unwrap();
        assert_eq!(r.status(), 201, "{}", r.text().await.unwrap());
        r.json().await.unwrap()
    }

    pub async fn status(&self, code: &str, token: &str, wait: u64) -> reqwest::Response {
        self.http
            .get(self.at(&format!("/api/pairing-codes/{code}/status?wait={wait}")))
            .header("X-Viewport-Pairing-Token", token)
            .send()
            .await
            .unwrap()
    }

    /// Creates a code, approves it for `org` as `user` through the store, and collects the
    /// approval: a working pairing.
    pub async fn pair(&self, key: &SigningKey, org: &Workspace, user: &User) -> vpd_proto::pairing::Approved {
        let created = self.create_code(&body_for(key, "box")).await;
        let code = vpd_proto::normalize_code(&created.code).unwrap();
        self.state.approve_code(&code, &org.id, &user.id, &as_user(user)).await.unwrap();
        let r = self.status(&created.code, created.status_token.expose(), 0).await;
        assert_eq!(r.status(), 200);
        match r.json().await.unwrap() {
            vpd_proto::pairing::PairingStatus::Approved(a) => *a,
            other => panic!("expected approved, got {other:?}"),
        }
    }

    /// `POST /api/pairing-codes/{code}/cancel` with the given status token.
    pub async fn cancel(&self, code: &str, token: &str) -> reqwest::Response {
        self.http.post(self.at(&vpd_proto::paths::pairing_cancel(code))).header("X-Viewport-Pairing-Token", token).send().await.unwrap()
    }

    pub async fn relay_token(&self, a: &vpd_proto::pairing::Approved) -> reqwest::Response {
        self.http
            .post(self.at("/api/runtime/relay-token"))
            .json(&serde_json::json!({
                "workspaceId": a.workspace_id,
                "runtimeTargetId": a.runtime_target_id,
                "credential": a.token.expose(),
            }))
            .send()
            .await
            .unwrap()
    }
}

pub async fn error_code(r: reqwest::Response) -> String {
    let v: serde_json::Value = r.json().await.expect("a JSON error body");
    v["error"].as_str().unwrap_or_default().to_string()
}

/// The value of the first `name="csrf"` hidden input.
pub fn csrf_in(html: &str) -> String {
    let start = html.find(r#"name="csrf" value=""#).expect("a csrf input") + r#"name="csrf" value=""#.len();
    html[start..].split('"').next().unwrap().to_string()
}

/// `name=value` of a Set-Cookie header with that cookie name.
pub fn set_cookie(r: &reqwest::Response, name: &str) -> Option<String> {
    r.headers()
        .get_all("set-cookie")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .find(|v| v.starts_with(&format!("{name}=")))
        .map(|v| v.split(';').next().unwrap().to_string())
}

/// Signs in through the page and returns the `vp_session=…` cookie.
pub async fn sign_in(s: &Server, email: &str) -> String {
    let r = s.http.get(s.at("/signin")).send().await.unwrap();
    assert_eq!(r.status(), 200);
    let csrf_cookie = set_cookie(&r, "vp_csrf").expect("csrf cookie");
    let csrf = csrf_in(&r.text().await.unwrap());
    let r = s
        .http
        .post(s.at("/signin"))
        .header("cookie", &csrf_cookie)
        .form(&[("csrf", csrf.as_str()), ("email", email), ("password", "correct horse battery"), ("next", "/")])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 303, "sign-in failed");
    set_cookie(&r, "vp_session").expect("session cookie")
}

/// Runs the built binary's `admin ARGS --db DB`, with `stdin` on its standard input.
pub fn admin_cli(db: &std::path::Path, args: &[&str], stdin: &str) -> std::process::Output {
    use std::io::Write;
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_viewport-server"))
        .arg("admin")
        .args(args)
        .arg("--db")
        .arg(db)
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    child.stdin.take().unwrap().write_all(stdin.as_bytes()).unwrap();
    child.wait_with_output().unwrap()
}

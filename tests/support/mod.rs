//! The end-to-end harness: each test gets its own temporary HOME, a real `viewport-server`
//! on a loopback port with its own SQLite file, and the real `vpd` binary. On failure it
//! prints the home's listing, the server's log and the daemon's log.
#![allow(dead_code)]

pub mod balancer;
pub mod pg;
pub mod release;

use serde_json::Value;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpListener;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

pub const PASSWORD: &str = "correct horse battery staple";

/// A binary built by `cargo build --workspace --bins` next to this test's target directory.
pub fn bin(name: &str) -> PathBuf {
    let env = format!("{}_BIN", name.to_uppercase().replace('-', "_"));
    if let Some(p) = std::env::var_os(&env) {
        return PathBuf::from(p);
    }
    let exe = std::env::current_exe().unwrap();
    let dir = exe.parent().unwrap().parent().unwrap();
    let p = dir.join(name);
    assert!(p.exists(), "{} not found: run `cargo build --workspace --bins` first (or set {env})", p.display());
    p
}

pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

pub fn wait_until(what: &str, timeout: Duration, mut f: impl FnMut() -> bool) {
    let deadline = Instant::now() + timeout;
    while Instant::now() < deadline {
        if f() {
            return;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    panic!("timed out waiting for {what}");
}

pub fn mode(p: &Path) -> u32 {
    std::fs::metadata(p).unwrap_or_else(|e| panic!("{}: {e}", p.display())).permissions().mode() & 0o777
}

/// A running `viewport-server`.
pub struct Server {
    pub dir: tempfile::TempDir,
    pub port: u16,
    pub url: String,
    pub public_url: String,
    extra: Vec<String>,
    /// The running processes: one, or one per instance of a [`Balanced`] server.
    children: Vec<Child>,
    /// The CA of its TLS certificate, when it serves TLS.
    tls_ca: Option<Vec<u8>>,
    /// `--db`: a PostgreSQL URL, when not the SQLite file in `dir`.
    db_url: Option<String>,
    /// With `VPD_TEST_BALANCED=1`: the instances behind the balancer on `port`.
    balanced: Option<Balanced>,
}

/// `VPD_TEST_BALANCED=1` (scripts/test.sh runs part of the end-to-end suite so): every
/// [`Server::start_with`] is two `viewport-server` instances on one PostgreSQL database, with
/// the harness's round-robin balancer on the test's port in front of them. Fields drop in
/// order: the balancer, then the database (the instances are stopped before).
pub struct Balanced {
    pub ports: Vec<u16>,
    pub balancer: balancer::Balancer,
    _pg: pg::Pg,
}

/// Whether this run puts every server behind a balancer (see [`Balanced`]).
pub fn balanced_mode() -> bool {
    std::env::var_os("VPD_TEST_BALANCED").is_some_and(|v| v == "1")
}

impl Server {
    pub fn start() -> Server {
        let port = free_port();
        Self::start_as(port, format!("http://127.0.0.1:{port}"))
    }

    /// A server on `port` whose public URL (and so relay endpoint) is `public_url`, e.g. a
    /// [`Proxy`] in front of it.
    pub fn start_as(port: u16, public_url: String) -> Server {
        Self::start_with(port, public_url, &[])
    }

    /// Like [`Server::start_as`], with more `serve` arguments.
    pub fn start_with(port: u16, public_url: String, extra: &[&str]) -> Server {
        let mut s = Self::new(format!("http://127.0.0.1:{port}"), port, public_url, extra.iter().map(|s| s.to_string()).collect());
        if balanced_mode() {
            let pg = pg::Pg::start();
            s.db_url = Some(pg.database());
            let ports = vec![free_port(), free_port()];
            let balancer = balancer::Balancer::start_on(port, &ports);
            s.balanced = Some(Balanced { ports, balancer, _pg: pg });
        }
        s.restart();
        s
    }

    /// Not started yet: on a SQLite file in a directory of its own, without TLS.
    fn new(url: String, port: u16, public_url: String, extra: Vec<String>) -> Server {
        let dir = tempfile::tempdir().unwrap();
        Server { dir, port, url, public_url, extra, children: Vec::new(), tls_ca: None, db_url: None, balanced: None }
    }

    /// A server on a fresh port whose database starts as a copy of `db` (with its WAL).
    pub fn start_from(db: &Path) -> Server {
        let port = free_port();
        let url = format!("http://127.0.0.1:{port}");
        let mut s = Self::new(url.clone(), port, url, vec![]);
        for ext in ["", "-wal", "-shm"] {
            let from = PathBuf::from(format!("{}{ext}", db.display()));
            if from.exists() {
                std::fs::copy(&from, s.dir.path().join(format!("viewport.db{ext}"))).unwrap();
            }
        }
        s.restart();
        s
    }

    /// One of several instances on the PostgreSQL database `db_url`, on `port`, whose public
    /// URL is `public_url` (a [`balancer::Balancer`] in front of them all).
    /// `extra`: more `serve` arguments.
    pub fn start_pg(port: u16, public_url: String, db_url: &str, extra: &[&str]) -> Server {
        let mut s = Self::new(format!("http://127.0.0.1:{port}"), port, public_url, extra.iter().map(|s| s.to_string()).collect());
        s.db_url = Some(db_url.to_string());
        s.restart();
        s
    }

    pub fn db(&self) -> PathBuf {
        self.dir.path().join("viewport.db")
    }
    /// What `--db` says: the PostgreSQL URL, or the SQLite file.
    fn db_arg(&self) -> std::ffi::OsString {
        self.db_url.clone().map(Into::into).unwrap_or_else(|| self.db().into())
    }
    pub fn log(&self) -> PathBuf {
        self.dir.path().join("server.log")
    }

    /// (Re)starts on the same port and database (every instance, when balanced).
    pub fn restart(&mut self) {
        self.stop();
        let ports = self.balanced.as_ref().map_or_else(|| vec![self.port], |b| b.ports.clone());
        for port in &ports {
            let log = std::fs::OpenOptions::new().create(true).append(true).open(self.log()).unwrap();
            let child = Command::new(bin("viewport-server"))
                .args(["serve", "--listen", &format!("127.0.0.1:{port}"), "--public-url", &self.public_url, "--db"])
                .arg(self.db_arg())
                .args(&self.extra)
                .env("RUST_LOG", "info")
                .stdin(Stdio::null())
                .stdout(log.try_clone().unwrap())
                .stderr(log)
                .spawn()
                .unwrap();
            self.children.push(child);
        }
        // Over TLS (serve --tls-cert), the CA the test made is the one to trust.
        let mut client = reqwest::blocking::Client::builder();
        if let Some(ca) = &self.tls_ca {
            client = client.add_root_certificate(reqwest::Certificate::from_pem(ca).unwrap());
        }
        let client = client.build().unwrap();
        for port in ports {
            // Each instance itself, not whichever one the balancer picks.
            let url = format!("{}:{port}/api/health", self.url.rsplit_once(':').unwrap().0);
            wait_until("viewport-server to answer", Duration::from_secs(20), || {
                client.get(&url).send().map(|r| r.status().is_success()).unwrap_or(false)
            });
        }
    }

    /// A server serving HTTPS and WSS with `cert`/`key` (PEM files), whose certificate is
    /// issued by the CA `ca_pem`.
    pub fn start_tls(cert: &Path, key: &Path, ca_pem: &str) -> Server {
        let port = free_port();
        let url = format!("https://127.0.0.1:{port}");
        let extra = vec!["--tls-cert".into(), cert.display().to_string(), "--tls-key".into(), key.display().to_string()];
        let mut s = Self::new(url.clone(), port, url, extra);
        s.tls_ca = Some(ca_pem.as_bytes().to_vec());
        s.restart();
        s
    }

    /// Kills the processes at once (SIGKILL): no goodbye to anyone connected.
    pub fn kill(&mut self) {
        for mut c in self.children.drain(..) {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    pub fn stop(&mut self) {
        for c in &self.children {
            unsafe { libc::kill(c.id() as i32, libc::SIGTERM) };
        }
        for mut c in self.children.drain(..) {
            let deadline = Instant::now() + Duration::from_secs(5);
            while Instant::now() < deadline && c.try_wait().unwrap().is_none() {
                std::thread::sleep(Duration::from_millis(20));
            }
            if c.try_wait().unwrap().is_none() {
                let _ = c.kill();
                let _ = c.wait();
            }
        }
    }

    /// `viewport-server admin --db … --json ARGS`, which must succeed; its JSON output.
    pub fn admin(&self, args: &[&str]) -> Value {
        let out = self.admin_raw(args, None);
        assert!(out.status.success(), "admin {args:?} failed: {}", String::from_utf8_lossy(&out.stderr));
        serde_json::from_slice(&out.stdout).unwrap_or(Value::Null)
    }

    pub fn admin_raw(&self, args: &[&str], stdin: Option<&str>) -> Output {
        let mut c = Command::new(bin("viewport-server"));
        c.arg("admin").arg("--db").arg(self.db_arg()).arg("--json").args(args);
        c.stdin(Stdio::piped()).stdout(Stdio::piped()).stderr(Stdio::piped());
        let mut child = c.spawn().unwrap();
        let mut input = child.stdin.take().unwrap();
        if let Some(s) = stdin {
            input.write_all(s.as_bytes()).unwrap();
        }
        drop(input);
        child.wait_with_output().unwrap()
    }

    pub fn user(&self, email: &str) {
        let out = self.admin_raw(&["user", "create", email, "--password-stdin"], Some(PASSWORD));
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    }

    /// Creates an org and returns its id.
    pub fn org(&self, name: &str, slug: &str) -> String {
        self.admin(&["org", "create", name, "--slug", slug])["id"].as_str().unwrap().to_string()
    }

    /// A new user who is the one member of a new org; returns the org's id.
    pub fn org_with_member(&self, name: &str, slug: &str, email: &str) -> String {
        self.user(email);
        let id = self.org(name, slug);
        self.member(slug, email);
        id
    }

    pub fn member(&self, org: &str, email: &str) {
        self.admin(&["member", "add", "--org", org, "--user", email]);
    }

    pub fn approve(&self, code: &str, org: &str, email: &str) {
        self.admin(&["pairing", "approve", code, "--org", org, "--user", email]);
    }

    /// `POST /api/runtime/relay-token` with a pairing's credential: (status, body).
    pub fn relay_token(&self, pairing: &Value) -> (u16, Value) {
        let cred = pairing["credential"]["issueToken"].as_str().expect("file-store credential");
        let r = reqwest::blocking::Client::new()
            .post(format!("{}/api/runtime/relay-token", self.url))
            .json(&serde_json::json!({
                "workspaceId": pairing["workspaceId"], "runtimeTargetId": pairing["runtimeTargetId"], "credential": cred
            }))
            .send()
            .unwrap();
        let status = r.status().as_u16();
        (status, r.json().unwrap_or(Value::Null))
    }

    /// Signs in through the web form and returns a client holding the session cookie.
    pub fn web_login(&self, email: &str) -> Web {
        let client = reqwest::blocking::Client::builder().cookie_store(true).redirect(reqwest::redirect::Policy::none()).build().unwrap();
        let page = client.get(format!("{}/signin", self.url)).send().unwrap().text().unwrap();
        let csrf = csrf_of(&page);
        let r = client
            .post(format!("{}/signin", self.url))
            .header("Origin", origin(&self.public_url))
            .form(&[("csrf", csrf.as_str()), ("email", email), ("password", PASSWORD), ("next", "/")])
            .send()
            .unwrap();
        assert!(r.status().is_redirection(), "sign-in failed: {} {}", r.status(), r.text().unwrap_or_default());
        Web { client, base: self.url.clone(), origin: origin(&self.public_url) }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.stop();
        if std::thread::panicking() {
            eprintln!("---- viewport-server log ({}) ----\n{}", self.log().display(), std::fs::read_to_string(self.log()).unwrap_or_default());
        }
    }
}

/// `scheme://host:port` of a URL: what a browser sends as `Origin`.
fn origin(url: &str) -> String {
    let (scheme, rest) = url.split_once("://").unwrap_or(("http", url));
    format!("{scheme}://{}", rest.split('/').next().unwrap_or(""))
}

pub fn csrf_of(html: &str) -> String {
    let i = html.find("name=\"csrf\"").unwrap_or_else(|| panic!("no csrf field in:\n{html}"));
    let rest = &html[i..];
    let v = rest.find("value=\"").unwrap() + 7;
    rest[v..v + rest[v..].find('"').unwrap()].to_string()
}

/// A signed-in browser.
pub struct Web {
    pub client: reqwest::blocking::Client,
    pub base: String,
    /// The server's public origin, which a browser on its pages sends (`--public-url`: not
    /// `base` when the pages are reached past a proxy or balancer).
    pub origin: String,
}

impl Web {
    pub fn get(&self, path: &str) -> (u16, String) {
        let r = self.client.get(format!("{}{path}", self.base)).send().unwrap();
        (r.status().as_u16(), r.text().unwrap())
    }

    /// Posts a form found on `page_path` (its CSRF token added).
    pub fn post(&self, page_path: &str, action: &str, fields: &[(&str, &str)]) -> (u16, String) {
        let (_, page) = self.get(page_path);
        let csrf = csrf_of(&page);
        let mut form: Vec<(&str, &str)> = vec![("csrf", &csrf)];
        form.extend_from_slice(fields);
        let r = self.client.post(format!("{}{action}", self.base)).header("Origin", &self.origin).form(&form).send().unwrap();
        (r.status().as_u16(), r.text().unwrap())
    }

    /// Approves a pairing code on `/pair?code=` for `workspace_id`, like a person would.
    pub fn approve(&self, code: &str, workspace_id: &str) -> (u16, String) {
        self.post(&format!("/pair?code={code}"), "/pair", &[("code", code), ("workspace_id", workspace_id), ("action", "approve")])
    }
}

/// A user's machine: a temporary HOME with `vpd`'s home inside.
pub struct Machine {
    pub dir: tempfile::TempDir,
    /// Extra environment for every `vpd` run (the environment is otherwise scrubbed).
    pub env: Vec<(String, String)>,
    /// `VPD_KEYRING=off` unless a test wants the keyring probed.
    pub keyring: bool,
    /// The `vpd` this machine runs (an installed one), instead of the build's.
    pub vpd: Option<PathBuf>,
}

impl Machine {
    pub fn new() -> Machine {
        Machine { dir: tempfile::tempdir().unwrap(), env: Vec::new(), keyring: false, vpd: None }
    }
    pub fn home(&self) -> PathBuf {
        self.dir.path().join(".viewport")
    }
    pub fn path(&self, rel: &str) -> PathBuf {
        self.dir.path().join(rel)
    }
    pub fn mkdir(&self, rel: &str) -> PathBuf {
        let p = self.path(rel);
        std::fs::create_dir_all(&p).unwrap();
        std::fs::canonicalize(p).unwrap()
    }

    pub fn command(&self) -> Command {
        let mut c = Command::new(self.vpd.clone().unwrap_or_else(|| bin("vpd")));
        c.env_clear()
            .env("HOME", self.dir.path())
            .env("PATH", std::env::var_os("PATH").unwrap_or_default())
            .env("VPD_LOG", "debug")
            .env("VPD_UI_PORT", "0")
            .current_dir(self.dir.path())
            .stdin(Stdio::null());
        if !self.keyring {
            c.env("VPD_KEYRING", "off");
        }
        c.envs(self.env.iter().map(|(k, v)| (k, v)));
        c
    }

    /// Runs `vpd ARGS`.
    pub fn vpd(&self, args: &[&str]) -> Output {
        self.command().args(args).output().unwrap()
    }

    /// Runs `vpd ARGS --json`, which must succeed, and parses stdout.
    pub fn ok(&self, args: &[&str]) -> Value {
        let out = self.command().args(args).arg("--json").output().unwrap();
        assert!(
            out.status.success(),
            "vpd {args:?} failed ({}):\nstdout: {}\nstderr: {}",
            out.status,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        // `pair` prints one line per event: the result is the last one.
        let text = String::from_utf8_lossy(&out.stdout);
        let last = text.lines().rfind(|l| !l.trim().is_empty()).unwrap_or("");
        serde_json::from_str(last).unwrap_or_else(|e| panic!("vpd {args:?}: not JSON ({e}): {text}"))
    }

    /// Runs `vpd ARGS --json`, which must fail; returns the error object.
    pub fn fails(&self, args: &[&str]) -> Value {
        let out = self.command().args(args).arg("--json").output().unwrap();
        assert!(!out.status.success(), "vpd {args:?} should have failed: {}", String::from_utf8_lossy(&out.stdout));
        // `pair` prints one line per event; the error is the last one.
        let text = String::from_utf8_lossy(&out.stdout);
        let last = text.lines().rfind(|l| !l.trim().is_empty()).unwrap_or("");
        let v: Value = serde_json::from_str(last).unwrap_or_else(|e| panic!("vpd {args:?}: error not JSON ({e}): {text}"));
        assert!(v["error"]["code"].is_string(), "vpd {args:?}: no error object in {v}");
        v["error"].clone()
    }

    /// Starts `vpd pair ARGS --no-browser --json` and returns it with the code event.
    pub fn start_pair(&self, args: &[&str]) -> (Pairing, Value) {
        let mut child =
            self.command().arg("pair").args(args).args(["--no-browser", "--json"]).stdout(Stdio::piped()).stderr(Stdio::piped()).spawn().unwrap();
        let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
        let first = lines.next().expect("a first line").unwrap();
        let code: Value = serde_json::from_str(&first).unwrap();
        (Pairing { child, lines }, code)
    }

    /// Pairs with `org` on `server`, approved by `email` through the admin command.
    pub fn pair(&self, server: &Server, org: &str, email: &str) -> Value {
        let (p, code) = self.start_pair(&["--server", &server.url, "--org", org]);
        assert_eq!(code["event"], "code", "{code}");
        server.approve(code["code"].as_str().unwrap(), org, email);
        let done = p.finish();
        assert_eq!(done["event"], "paired", "{done}");
        done
    }

    /// How many pairings config.json holds (0 when there is no config.json).
    pub fn pairing_count(&self) -> usize {
        if !self.home().join("config.json").exists() {
            return 0;
        }
        self.config()["pairings"].as_array().unwrap().len()
    }

    pub fn config(&self) -> Value {
        serde_json::from_slice(&std::fs::read(self.home().join("config.json")).unwrap()).unwrap()
    }

    pub fn pairing(&self, workspace_id: &str) -> Value {
        self.config()["pairings"]
            .as_array()
            .unwrap()
            .iter()
            .find(|p| p["workspaceId"] == workspace_id)
            .cloned()
            .unwrap_or_else(|| panic!("no pairing {workspace_id}"))
    }

    /// The identity file of the pairing with `workspace_id` (named by its local pairing id).
    pub fn identity(&self, workspace_id: &str) -> Value {
        let pid = self.pairing(workspace_id)["pairingId"].as_str().expect("a pairing id").to_string();
        serde_json::from_slice(&std::fs::read(self.home().join(format!("relay-identities/{pid}.json"))).unwrap()).unwrap()
    }

    pub fn daemon_pid(&self) -> Option<u32> {
        std::fs::read_to_string(self.home().join("daemon.lock")).ok()?.trim().parse().ok()
    }

    pub fn logs(&self) -> String {
        let mut s = String::new();
        if let Ok(d) = std::fs::read_dir(self.home().join("logs")) {
            for e in d.flatten() {
                s.push_str(&std::fs::read_to_string(e.path()).unwrap_or_default());
            }
        }
        s
    }
}

impl Drop for Machine {
    fn drop(&mut self) {
        let _ = self.command().args(["daemon", "stop"]).output();
        if std::thread::panicking() {
            let listing = Command::new("ls").arg("-laR").arg(self.home()).output().map(|o| String::from_utf8_lossy(&o.stdout).into_owned());
            eprintln!("---- vpd home ----\n{}", listing.unwrap_or_default());
            eprintln!("---- vpd daemon log ----\n{}", self.logs());
        }
    }
}

/// A `vpd pair` in progress.
pub struct Pairing {
    pub child: Child,
    lines: std::io::Lines<BufReader<std::process::ChildStdout>>,
}

impl Pairing {
    /// Waits for the final JSON line.
    pub fn finish(mut self) -> Value {
        let last = self.lines.by_ref().map_while(Result::ok).last().expect("a final line");
        let status = self.child.wait().unwrap();
        let mut err = String::new();
        let _ = self.child.stderr.take().unwrap().read_to_string(&mut err);
        let v: Value = serde_json::from_str(&last).unwrap_or_else(|e| panic!("{e}: {last}\n{err}"));
        assert_eq!(status.success(), v["event"] == "paired", "exit status {status} vs {v}\n{err}");
        v
    }

    /// Waits for the command to end, whatever happened; its last JSON line, if any.
    pub fn end(mut self) -> Option<Value> {
        let last = self.lines.by_ref().map_while(Result::ok).last();
        let _ = self.child.wait();
        last.and_then(|l| serde_json::from_str(&l).ok())
    }

    /// The next JSON line.
    pub fn next(&mut self) -> Value {
        serde_json::from_str(&self.lines.next().expect("another line").unwrap()).unwrap()
    }
}

/// A command on a real pseudo-terminal.
pub struct Term {
    child: Box<dyn portable_pty::Child + Send + Sync>,
    rx: std::sync::mpsc::Receiver<Vec<u8>>,
    writer: Box<dyn Write + Send>,
    pub seen: String,
    _master: Box<dyn portable_pty::MasterPty + Send>,
}

impl Term {
    pub fn spawn(m: &Machine, args: &[&str], env: &[(&str, &str)]) -> Term {
        Self::spawn_typed_ahead(m, args, env, "")
    }

    /// Like [`Term::spawn`], with `typed` already typed on the terminal before the command
    /// starts (keys pressed, or text pasted, ahead of any question).
    pub fn spawn_typed_ahead(m: &Machine, args: &[&str], env: &[(&str, &str)], typed: &str) -> Term {
        use portable_pty::{native_pty_system, CommandBuilder, PtySize};
        let pty = native_pty_system().openpty(PtySize { rows: 50, cols: 200, pixel_width: 0, pixel_height: 0 }).unwrap();
        let mut writer = pty.master.take_writer().unwrap();
        if !typed.is_empty() {
            writer.write_all(typed.as_bytes()).unwrap();
            writer.flush().unwrap();
        }
        let mut cmd = CommandBuilder::new(m.vpd.clone().unwrap_or_else(|| bin("vpd")));
        cmd.args(args);
        cmd.env_clear();
        cmd.env("HOME", m.dir.path());
        cmd.env("PATH", std::env::var_os("PATH").unwrap_or_default());
        cmd.env("VPD_KEYRING", "off");
        cmd.env("TERM", "xterm-256color");
        for (k, v) in env {
            cmd.env(k, v);
        }
        cmd.cwd(m.dir.path());
        let child = pty.slave.spawn_command(cmd).unwrap();
        drop(pty.slave);
        let mut reader = pty.master.try_clone_reader().unwrap();
        let (tx, rx) = std::sync::mpsc::channel::<Vec<u8>>();
        std::thread::spawn(move || {
            let mut buf = [0u8; 4096];
            while let Ok(n) = reader.read(&mut buf) {
                if n == 0 || tx.send(buf[..n].to_vec()).is_err() {
                    break;
                }
            }
        });
        Term { child, rx, writer, seen: String::new(), _master: pty.master }
    }

    fn pump(&mut self, wait: Duration) {
        if let Ok(chunk) = self.rx.recv_timeout(wait) {
            self.seen.push_str(&String::from_utf8_lossy(&chunk));
        }
    }

    /// Waits until the screen so far contains `text`.
    pub fn wait_for(&mut self, text: &str) {
        let deadline = Instant::now() + Duration::from_secs(20);
        while !self.seen.contains(text) {
            assert!(Instant::now() < deadline, "timed out waiting for {text:?} on the terminal:\n{}", self.seen);
            self.pump(Duration::from_millis(50));
        }
    }

    /// Types a line.
    pub fn send_line(&mut self, line: &str) {
        self.writer.write_all(format!("{line}\r").as_bytes()).unwrap();
        self.writer.flush().unwrap();
    }

    /// Waits for the command to exit; its success and everything it showed.
    pub fn finish(mut self) -> (bool, String) {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                while let Ok(chunk) = self.rx.recv_timeout(Duration::from_millis(100)) {
                    self.seen.push_str(&String::from_utf8_lossy(&chunk));
                }
                return (status.success(), self.seen);
            }
            assert!(Instant::now() < deadline, "the command hung on the terminal:\n{}", self.seen);
            self.pump(Duration::from_millis(50));
        }
    }
}

/// Runs `vpd ARGS` on a terminal, answering each `[Y/n]` / `[y/N]` question in turn.
pub fn on_terminal(m: &Machine, args: &[&str], answers: &[&str]) -> String {
    let mut t = Term::spawn(m, args, &[]);
    let mut answered = 0;
    let deadline = Instant::now() + Duration::from_secs(20);
    while answered < answers.len() {
        assert!(Instant::now() < deadline, "no question {answered} on the terminal:\n{}", t.seen);
        t.pump(Duration::from_millis(50));
        if t.seen.matches("[Y/n]").count() + t.seen.matches("[y/N]").count() > answered {
            t.send_line(answers[answered]);
            answered += 1;
        }
    }
    let (ok, seen) = t.finish();
    assert!(ok, "vpd {args:?} failed on the terminal:\n{seen}");
    seen
}

/// A TCP proxy a test controls, between the daemon and the platform/relay: it can cut every
/// connection, or stall them (accept bytes, forward nothing).
pub struct Proxy {
    pub port: u16,
    stalled: std::sync::Arc<std::sync::atomic::AtomicBool>,
    conns: std::sync::Arc<std::sync::Mutex<Vec<std::net::TcpStream>>>,
}

impl Proxy {
    pub fn start(target_port: u16) -> Proxy {
        use std::sync::atomic::Ordering;
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let stalled = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let conns: std::sync::Arc<std::sync::Mutex<Vec<std::net::TcpStream>>> = Default::default();
        let (st, cs) = (stalled.clone(), conns.clone());
        std::thread::spawn(move || {
            for client in listener.incoming().flatten() {
                let Ok(upstream) = std::net::TcpStream::connect(("127.0.0.1", target_port)) else { continue };
                cs.lock().unwrap().extend([client.try_clone().unwrap(), upstream.try_clone().unwrap()]);
                for (mut from, mut to) in [(client.try_clone().unwrap(), upstream.try_clone().unwrap()), (upstream, client)] {
                    let st = st.clone();
                    std::thread::spawn(move || {
                        forward(&mut from, &mut to, || st.load(Ordering::SeqCst), |_| {});
                        let _ = to.shutdown(std::net::Shutdown::Both);
                    });
                }
            }
        });
        Proxy { port, stalled, conns }
    }

    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// Drops every open connection at once (like a network cut).
    pub fn cut(&self) {
        for c in self.conns.lock().unwrap().drain(..) {
            let _ = c.shutdown(std::net::Shutdown::Both);
        }
    }

    /// Stops forwarding on the connections that exist now (new ones still pass once unstalled).
    pub fn stall(&self, on: bool) {
        self.stalled.store(on, std::sync::atomic::Ordering::SeqCst);
    }
}

/// An HTTP proxy (CONNECT tunnels and absolute-form requests) that records what it was asked.
pub struct HttpProxy {
    pub url: String,
    pub log: std::sync::Arc<std::sync::Mutex<Vec<String>>>,
}

/// A loopback proxy for tests: a thread per client runs `handle(client, log)`. Returns its
/// URL (`{scheme}://127.0.0.1:PORT`) and the log its handler writes.
type ProxyLog = std::sync::Arc<std::sync::Mutex<Vec<String>>>;
fn serve_proxy(scheme: &str, handle: fn(std::net::TcpStream, ProxyLog)) -> (String, ProxyLog) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("{scheme}://{}", listener.local_addr().unwrap());
    let log: ProxyLog = Default::default();
    let l = log.clone();
    std::thread::spawn(move || {
        for client in listener.incoming().flatten() {
            let l = l.clone();
            std::thread::spawn(move || handle(client, l));
        }
    });
    (url, log)
}

impl HttpProxy {
    pub fn start() -> HttpProxy {
        let (url, log) = serve_proxy("http", |client, l| {
            let mut reader = BufReader::new(client.try_clone().unwrap());
            let mut first = String::new();
            if reader.read_line(&mut first).is_err() {
                return;
            }
            let mut headers = Vec::new();
            loop {
                let mut h = String::new();
                if reader.read_line(&mut h).unwrap_or(0) == 0 || h == "\r\n" {
                    break;
                }
                headers.push(h);
            }
            l.lock().unwrap().push(first.trim().to_string());
            let mut parts = first.split_whitespace();
            let (method, target) = (parts.next().unwrap_or(""), parts.next().unwrap_or(""));
            let mut client_w = client.try_clone().unwrap();
            let (hostport, rewritten) = if method == "CONNECT" {
                (target.to_string(), None)
            } else {
                let rest = target.strip_prefix("http://").unwrap_or(target);
                let (hp, path) = rest.split_at(rest.find('/').unwrap_or(rest.len()));
                let path = if path.is_empty() { "/" } else { path };
                (hp.to_string(), Some(format!("{method} {path} HTTP/1.1\r\n{}\r\n", headers.concat())))
            };
            let Ok(mut upstream) = std::net::TcpStream::connect(&hostport) else {
                let _ = client_w.write_all(b"HTTP/1.1 502 Bad Gateway\r\ncontent-length: 0\r\n\r\n");
                return;
            };
            match rewritten {
                None => {
                    let _ = client_w.write_all(b"HTTP/1.1 200 Connection established\r\n\r\n");
                }
                Some(head) => {
                    let _ = upstream.write_all(head.as_bytes());
                }
            }
            // Bytes the reader buffered past the head belong to the tunnel.
            let buffered = reader.buffer().to_vec();
            let _ = upstream.write_all(&buffered);
            drop(client_w);
            pipe(client, upstream);
        });
        HttpProxy { url, log }
    }
}

/// A fake HTTP server on loopback: `respond(method, path)` returns the raw answer bytes,
/// written as they are (so a test can lie about lengths or hang up mid-body). Its URL.
pub fn fake_http(respond: impl Fn(&str, &str) -> Vec<u8> + Send + Sync + 'static) -> String {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    std::thread::spawn(move || {
        for stream in listener.incoming().flatten() {
            let mut reader = BufReader::new(stream.try_clone().unwrap());
            let mut request_line = String::new();
            if reader.read_line(&mut request_line).is_err() {
                continue;
            }
            let mut len = 0usize;
            loop {
                let mut h = String::new();
                if reader.read_line(&mut h).unwrap_or(0) == 0 || h == "\r\n" {
                    break;
                }
                if let Some(v) = h.to_ascii_lowercase().strip_prefix("content-length:") {
                    len = v.trim().parse().unwrap_or(0);
                }
            }
            let mut body = vec![0; len];
            let _ = reader.read_exact(&mut body);
            let mut parts = request_line.split_whitespace();
            let (method, path) = (parts.next().unwrap_or(""), parts.next().unwrap_or(""));
            let mut s = stream;
            let _ = s.write_all(&respond(method, path));
        }
    });
    url
}

/// `HTTP/1.1 {status}` with a body of `ctype`.
pub fn http_answer(status: &str, ctype: &str, body: &str) -> Vec<u8> {
    format!("HTTP/1.1 {status}\r\ncontent-type: {ctype}\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}", body.len()).into_bytes()
}

/// A server with alice@example.com in two orgs, Acme Engineering (`acme`) and OSS
/// Maintainers (`oss`); their ids.
pub fn two_orgs() -> (Server, String, String) {
    let server = Server::start();
    server.user("alice@example.com");
    let acme = server.org("Acme Engineering", "acme");
    let oss = server.org("OSS Maintainers", "oss");
    server.member("acme", "alice@example.com");
    server.member("oss", "alice@example.com");
    (server, acme, oss)
}

/// A private session bus with an unlocked gnome-keyring on it; both die with the value.
pub struct KeyringBus {
    daemon: Child,
    pub address: String,
    /// The keyring's own HOME, so a keyring of the user running the tests is never touched.
    _home: tempfile::TempDir,
}

impl KeyringBus {
    pub fn start() -> KeyringBus {
        let mut daemon = Command::new("dbus-daemon")
            .args(["--session", "--nofork", "--print-address=1"])
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("dbus-daemon (Debian package dbus; scripts/test.sh installs it)");
        let mut line = String::new();
        BufReader::new(daemon.stdout.take().unwrap()).read_line(&mut line).unwrap();
        let address = line.trim().to_string();
        let home = tempfile::tempdir().unwrap();
        let mut keyring = Command::new("gnome-keyring-daemon")
            .args(["--unlock", "--components=secrets"])
            .env("DBUS_SESSION_BUS_ADDRESS", &address)
            .env("HOME", home.path())
            .env("XDG_DATA_HOME", home.path().join("data"))
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("gnome-keyring-daemon (Debian package gnome-keyring; scripts/test.sh installs it)");
        keyring.stdin.take().unwrap().write_all(b"test-password").unwrap();
        keyring.wait().unwrap();
        KeyringBus { daemon, address, _home: home }
    }

    pub fn lookup(&self, runtime_target_id: &str) -> Option<String> {
        let out = Command::new("secret-tool")
            .args(["lookup", "service", "dev.viewport.vpd", "username", runtime_target_id])
            .env("DBUS_SESSION_BUS_ADDRESS", &self.address)
            .output()
            .expect("secret-tool (Debian package libsecret-tools)");
        out.status.success().then(|| String::from_utf8_lossy(&out.stdout).trim().to_string()).filter(|s| !s.is_empty())
    }
}

impl KeyringBus {
    /// Stores `secret` as vpd's entry named `username` (as an older vpd would have).
    pub fn store(&self, username: &str, secret: &str) {
        let mut c = Command::new("secret-tool")
            .args(["store", "--label", "vpd", "service", "dev.viewport.vpd", "username", username, "target", "default"])
            .env("DBUS_SESSION_BUS_ADDRESS", &self.address)
            .stdin(Stdio::piped())
            .spawn()
            .expect("secret-tool (Debian package libsecret-tools)");
        c.stdin.take().unwrap().write_all(secret.as_bytes()).unwrap();
        assert!(c.wait().unwrap().success());
    }

    /// Every secret vpd stored on this bus's keyring (`secret-tool search --all`).
    pub fn vpd_secrets(&self) -> String {
        let out = Command::new("secret-tool")
            .args(["search", "--all", "service", "dev.viewport.vpd"])
            .env("DBUS_SESSION_BUS_ADDRESS", &self.address)
            .output()
            .expect("secret-tool (Debian package libsecret-tools)");
        format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr)).trim().to_string()
    }
}

impl Drop for KeyringBus {
    fn drop(&mut self) {
        let _ = self.daemon.kill();
        let _ = self.daemon.wait();
    }
}

/// A SOCKS5 proxy (no authentication, CONNECT only) that logs each target as
/// `CONNECT name:port` (the client sent a name: socks5h) or `CONNECT ip:port` (socks5).
pub struct Socks5Proxy {
    pub url: String,
    pub log: std::sync::Arc<std::sync::Mutex<Vec<String>>>,
}

impl Socks5Proxy {
    pub fn start(scheme: &str) -> Socks5Proxy {
        let (url, log) = serve_proxy(scheme, |client, l| {
            let mut c = client;
            let mut b = [0u8; 262];
            // Greeting: version, methods; we take "no authentication".
            if c.read_exact(&mut b[..2]).is_err() || b[0] != 5 {
                return;
            }
            let methods = b[1] as usize;
            if c.read_exact(&mut b[..methods]).is_err() {
                return;
            }
            let _ = c.write_all(&[5, 0]);
            if c.read_exact(&mut b[..4]).is_err() || b[1] != 1 {
                return;
            }
            let host = match b[3] {
                1 => {
                    let mut a = [0u8; 4];
                    let _ = c.read_exact(&mut a);
                    std::net::Ipv4Addr::from(a).to_string()
                }
                3 => {
                    let mut n = [0u8; 1];
                    let _ = c.read_exact(&mut n);
                    let mut name = vec![0u8; n[0] as usize];
                    let _ = c.read_exact(&mut name);
                    String::from_utf8_lossy(&name).into_owned()
                }
                _ => {
                    let mut a = [0u8; 16];
                    let _ = c.read_exact(&mut a);
                    format!("[{}]", std::net::Ipv6Addr::from(a))
                }
            };
            let mut p = [0u8; 2];
            let _ = c.read_exact(&mut p);
            let target = format!("{host}:{}", u16::from_be_bytes(p));
            l.lock().unwrap().push(format!("CONNECT {target}"));
            let Ok(upstream) = std::net::TcpStream::connect(&target) else {
                let _ = c.write_all(&[5, 5, 0, 1, 0, 0, 0, 0, 0, 0]);
                return;
            };
            let _ = c.write_all(&[5, 0, 0, 1, 0, 0, 0, 0, 0, 0]);
            pipe(c, upstream);
        });
        Socks5Proxy { url, log }
    }
}

/// Copies bytes both ways between a proxy's client and its upstream until either closes.
/// Copies `from` to `to` until either ends, showing each chunk to `seen` first and holding
/// it back while `held()` (a stalled link: bytes are taken, none passed on).
pub fn forward(from: &mut std::net::TcpStream, to: &mut std::net::TcpStream, held: impl Fn() -> bool, mut seen: impl FnMut(&[u8])) {
    let mut buf = [0u8; 16384];
    loop {
        let n = match from.read(&mut buf) {
            Ok(0) | Err(_) => return,
            Ok(n) => n,
        };
        seen(&buf[..n]);
        while held() {
            std::thread::sleep(Duration::from_millis(20));
        }
        if to.write_all(&buf[..n]).is_err() {
            return;
        }
    }
}

fn pipe(client: std::net::TcpStream, upstream: std::net::TcpStream) {
    let (mut up_r, mut up_w) = (upstream.try_clone().unwrap(), upstream);
    let (mut c_r, mut c_w) = (client.try_clone().unwrap(), client);
    std::thread::spawn(move || {
        let _ = std::io::copy(&mut up_r, &mut c_w);
        let _ = c_w.shutdown(std::net::Shutdown::Both);
    });
    let _ = std::io::copy(&mut c_r, &mut up_w);
    let _ = up_w.shutdown(std::net::Shutdown::Both);
}

//! A real PostgreSQL for tests (issue 14), shared by the end-to-end tests and the server
//! crate's tests (`#[path]`).
//!
//! The server `scripts/test.sh` started (`VIEWPORT_TEST_PG`: the URL of its maintenance
//! database), or else a private cluster: `initdb` into a temporary directory (as `nobody`
//! when the tests run as root: PostgreSQL refuses to run as root), on a free loopback port,
//! stopped and removed on drop. Each caller gets databases of its own
//! ([`Pg::database`]), so tests never see each other's rows.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

pub struct Pg {
    /// `postgres://…/postgres`: where databases are created.
    base: String,
    cluster: Option<Cluster>,
}

struct Cluster {
    dir: tempfile::TempDir,
    child: Child,
}

impl Drop for Cluster {
    fn drop(&mut self) {
        // SIGQUIT: immediate shutdown (nothing here needs to survive).
        unsafe { libc::kill(self.child.id() as i32, libc::SIGQUIT) };
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            if self.child.try_wait().ok().flatten().is_some() {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A PostgreSQL program (`initdb`, `postgres`, `psql`): on PATH, or in Debian's
/// `/usr/lib/postgresql/VERSION/bin`.
pub fn program(name: &str) -> PathBuf {
    if let Some(paths) = std::env::var_os("PATH") {
        for dir in std::env::split_paths(&paths) {
            let p = dir.join(name);
            if p.is_file() {
                return p;
            }
        }
    }
    let mut versions: Vec<PathBuf> = std::fs::read_dir("/usr/lib/postgresql")
        .map(|d| d.flatten().map(|e| e.path().join("bin").join(name)).filter(|p| p.is_file()).collect())
        .unwrap_or_default();
    versions.sort();
    versions.pop().unwrap_or_else(|| panic!("{name} not found: install PostgreSQL (Debian: apt-get install postgresql), or run ./scripts/test.sh"))
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

/// Runs `cmd` as `nobody` when this process is root.
fn as_unprivileged(program: &Path) -> Command {
    if unsafe { libc::geteuid() } == 0 {
        let mut c = Command::new("setpriv");
        c.args(["--reuid=nobody", "--regid=nogroup", "--clear-groups", "--"]).arg(program);
        c
    } else {
        Command::new(program)
    }
}

impl Pg {
    pub fn start() -> Pg {
        if let Ok(base) = std::env::var("VIEWPORT_TEST_PG") {
            return Pg { base, cluster: None };
        }
        Pg::private(&[], &[])
    }

    /// A cluster of its own (never the script's), with `settings` (`-c NAME=VALUE`) and
    /// `files` written into its data directory, readable by the server only (a TLS key).
    pub fn private(settings: &[(&str, &str)], files: &[(&str, &[u8])]) -> Pg {
        let dir = tempfile::Builder::new().prefix("vpd-pg-").tempdir().unwrap();
        let root = unsafe { libc::geteuid() } == 0;
        if root {
            let c = std::ffi::CString::new(dir.path().as_os_str().as_encoded_bytes()).unwrap();
            assert_eq!(unsafe { libc::chown(c.as_ptr(), 65534, 65534) }, 0, "chown {} to nobody", dir.path().display());
        }
        let data = dir.path().join("data");
        let out = as_unprivileged(&program("initdb"))
            .arg("-D")
            .arg(&data)
            .args(["-U", "postgres", "-A", "trust", "-E", "UTF8", "--locale=C", "--no-sync"])
            .stdin(Stdio::null())
            .output()
            .unwrap();
        assert!(out.status.success(), "initdb failed: {}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
        for (name, bytes) in files {
            let p = data.join(name);
            std::fs::write(&p, bytes).unwrap();
            std::fs::set_permissions(&p, std::os::unix::fs::PermissionsExt::from_mode(0o600)).unwrap();
            if root {
                let c = std::ffi::CString::new(p.as_os_str().as_encoded_bytes()).unwrap();
                unsafe { libc::chown(c.as_ptr(), 65534, 65534) };
            }
        }
        let port = free_port();
        let log = std::fs::File::create(dir.path().join("postgres.log")).unwrap();
        if root {
            let c = std::ffi::CString::new(dir.path().join("postgres.log").as_os_str().as_encoded_bytes()).unwrap();
            unsafe { libc::chown(c.as_ptr(), 65534, 65534) };
        }
        let child = as_unprivileged(&program("postgres"))
            .arg("-D")
            .arg(&data)
            .args(["-p", &port.to_string(), "-c", "listen_addresses=127.0.0.1", "-c", "fsync=off", "-c", "max_connections=300"])
            .args(settings.iter().flat_map(|(k, v)| ["-c".to_string(), format!("{k}={v}")]))
            .arg("-k")
            .arg(dir.path())
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .unwrap();
        let pg = Pg { base: format!("postgres://postgres@127.0.0.1:{port}/postgres"), cluster: Some(Cluster { dir, child }) };
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            if pg.psql(&pg.base, "SELECT 1").is_ok() {
                return pg;
            }
            assert!(Instant::now() < deadline, "PostgreSQL did not start: {}", pg.log());
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// The server's log (a private cluster's), for failure messages.
    pub fn log(&self) -> String {
        self.cluster.as_ref().map(|c| std::fs::read_to_string(c.dir.path().join("postgres.log")).unwrap_or_default()).unwrap_or_default()
    }

    /// Runs one statement with psql against `url`; its output (unaligned, tuples only).
    pub fn psql(&self, url: &str, sql: &str) -> Result<String, String> {
        let out = Command::new(program("psql"))
            .args(["-X", "-q", "-At", "-v", "ON_ERROR_STOP=1", "-d", url, "-c", sql])
            .stdin(Stdio::null())
            .output()
            .map_err(|e| e.to_string())?;
        if out.status.success() {
            Ok(String::from_utf8_lossy(&out.stdout).trim().to_string())
        } else {
            Err(String::from_utf8_lossy(&out.stderr).into_owned())
        }
    }

    /// A new, empty database; its URL.
    pub fn database(&self) -> String {
        let name = format!("vp_{}", ulid_like());
        self.psql(&self.base, &format!("CREATE DATABASE {name}")).unwrap_or_else(|e| panic!("CREATE DATABASE: {e}"));
        match self.base.rsplit_once('/') {
            Some((server, _)) => format!("{server}/{name}"),
            None => panic!("VIEWPORT_TEST_PG must end in /DATABASE"),
        }
    }
}

/// A name no other test picks: time and process id.
fn ulid_like() -> String {
    let t = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_nanos();
    format!("{}_{t}", std::process::id())
}

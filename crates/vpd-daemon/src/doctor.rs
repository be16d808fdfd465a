//! `vpd doctor`: checks home permissions, the keyring, the files, the daemon, each
//! platform's and relay's reachability and the clock; prints a fix for each problem and
//! repairs nothing.

use crate::config;
use crate::home::Home;
use crate::platform::Platform;
use crate::records;
use crate::secrets;
use crate::states::{CheckLevel, StoreKind};
use serde::{Deserialize, Serialize};
use std::path::Path;
use std::time::Duration;

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct Check {
    pub name: String,
    /// `ok`, `warning` or `error`.
    pub level: CheckLevel,
    pub detail: String,
    pub fix: Option<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct DoctorReport {
    pub ok: bool,
    pub checks: Vec<Check>,
}

fn check(name: impl Into<String>, level: CheckLevel, detail: impl Into<String>, fix: Option<String>) -> Check {
    Check { name: name.into(), level, detail: detail.into(), fix }
}

/// A private file or directory: this user's, nobody else let in, not a link.
fn mode_check(path: &Path, what: &str, out: &mut Vec<Check>) {
    use crate::os::{files, user};
    let Ok(m) = std::fs::symlink_metadata(path) else { return };
    let name = format!("{what} {}", path.display());
    if files::is_link_meta(&m) {
        out.push(check(name, CheckLevel::Error, "is a link", Some(format!("replace {} with a regular file", path.display()))));
        return;
    }
    let Ok(a) = files::access(path) else { return };
    let me = user::current();
    if a.owner != me {
        out.push(check(
            name,
            CheckLevel::Error,
            format!("owned by {}, not you ({me})", a.owner),
            Some(format!("give {} back to {me}", path.display())),
        ));
    } else if a.others {
        out.push(check(name, CheckLevel::Warning, format!("{}, expected only you", a.shown), Some(a.fix)));
    }
}

/// Runs every check. `store` is the running daemon's credential store, if known.
pub async fn run(home: &Home, daemon_running: Option<u32>, store: Option<secrets::Store>) -> DoctorReport {
    let mut checks = Vec::new();
    let root = home.root();
    match std::fs::symlink_metadata(root) {
        Err(_) => checks.push(check("home", CheckLevel::Warning, format!("{} does not exist yet", root.display()), Some("run `vpd install`".into()))),
        Ok(m) if !m.is_dir() => checks.push(check(
            "home",
            CheckLevel::Error,
            format!("{} is not a directory", root.display()),
            Some(format!("move {} away", root.display())),
        )),
        Ok(_) => {
            let before = checks.len();
            mode_check(root, "home", &mut checks);
            for f in [home.config(), home.directories(), home.hint_declines()] {
                mode_check(&f, "file", &mut checks);
            }
            mode_check(&home.identities(), "directory", &mut checks);
            if let Ok(entries) = std::fs::read_dir(home.identities()) {
                for e in entries.flatten() {
                    mode_check(&e.path(), "identity", &mut checks);
                }
            }
            if checks.len() == before {
                checks.push(check("permissions", CheckLevel::Ok, format!("{} and its files are yours alone", root.display()), None));
            }
        }
    }

    let cfg = match config::read(home) {
        Ok(c) => {
            checks.push(check("config", CheckLevel::Ok, format!("{} pairing(s)", c.pairings.len()), None));
            Some(c)
        }
        Err(e) => {
            checks.push(check("config", CheckLevel::Error, e.message, Some("fix or move config.json away; vpd never overwrites it".into())));
            None
        }
    };
    for (name, r) in
        [("directories.json", records::load_directories(home).map(|_| ())), ("hint-declines.json", records::load_declines(home).map(|_| ()))]
    {
        if let Err(e) = r {
            checks.push(check(name, CheckLevel::Error, e.message, Some(format!("fix or move {name} away"))));
        }
    }

    let store = match store {
        Some(s) => s,
        None => tokio::task::spawn_blocking(secrets::probe).await.unwrap_or(secrets::Store::File { reason: "probe failed".into() }),
    };
    match &store {
        secrets::Store::Keyring => checks.push(check("keyring", CheckLevel::Ok, "issue tokens go to the OS keyring", None)),
        secrets::Store::File { reason } => checks.push(check(
            "keyring",
            CheckLevel::Warning,
            format!("{reason}; issue tokens are kept in config.json (0600)"),
            Some("start a Secret Service (e.g. gnome-keyring) and unlock it, then restart the daemon".into()),
        )),
    }
    match daemon_running {
        Some(pid) => checks.push(check("daemon", CheckLevel::Ok, format!("running (pid {pid})"), None)),
        None => checks.push(check("daemon", CheckLevel::Warning, "not running", Some("run `vpd daemon`, or any command that needs it".into()))),
    }

    if let Some(cfg) = &cfg {
        for p in &cfg.pairings {
            let id_path = home.identities().join(format!("{}.json", p.pairing_id));
            if !id_path.is_file() {
                checks.push(check(
                    format!("identity of {}", p.workspace_name),
                    CheckLevel::Error,
                    format!("{} is missing", id_path.display()),
                    Some(format!("this pairing cannot prove its key; run `vpd pair --org {} --force`", p.workspace_slug)),
                ));
            }
            if let Some(c) = reachability(&p.workspace_name, &p.server_url, p.insecure_http, p.ca_pem.as_deref()).await {
                checks.extend(c);
            }
            checks.push(relay_reachability(&p.workspace_name, &p.relay_endpoint).await);
        }
        if cfg.pairings.is_empty() {
            if let Some(server) = &cfg.daemon.default_server_url {
                if let Some(c) = reachability("default server", server, false, None).await {
                    checks.extend(c);
                }
            }
        }
    }
    let ok = !checks.iter().any(|c| c.level == CheckLevel::Error);
    DoctorReport { ok, checks }
}

async fn reachability(label: &str, server: &str, insecure: bool, ca_pem: Option<&str>) -> Option<Vec<Check>> {
    let platform = match Platform::new(server, insecure, ca_pem) {
        Ok(p) => p,
        Err(e) => return Some(vec![check(format!("platform of {label}"), CheckLevel::Error, e.message, None)]),
    };
    let name = format!("platform of {label} ({server})");
    Some(match platform.health().await {
        Ok((h, date)) => {
            let mut v = vec![check(name.clone(), CheckLevel::Ok, format!("reachable, version {}", h.version), None)];
            if let Some(skew) =
                date.and_then(|d| jiff::fmt::rfc2822::parse(&d).ok()).map(|z| (jiff::Timestamp::now().as_second() - z.timestamp().as_second()).abs())
            {
                if skew > 60 {
                    v.push(check(
                        format!("clock vs {server}"),
                        CheckLevel::Error,
                        format!("this clock is {skew} s off the server's"),
                        Some("enable time synchronisation (NTP)".into()),
                    ));
                } else {
                    v.push(check(format!("clock vs {server}"), CheckLevel::Ok, format!("{skew} s skew"), None));
                }
            }
            v
        }
        Err(e) => {
            vec![check(name, CheckLevel::Error, e.into_error().message, Some("check the network, the URL, or whether the server is up".into()))]
        }
    })
}

async fn relay_reachability(label: &str, relay: &str) -> Check {
    let name = format!("relay of {label} ({relay})");
    let Ok(url) = url::Url::parse(relay) else { return check(name, CheckLevel::Error, "not a URL", None) };
    let (Some(host), Some(port)) = (url.host_str(), url.port_or_known_default()) else {
        return check(name, CheckLevel::Error, "no host or port", None);
    };
    let host = host.trim_start_matches('[').trim_end_matches(']').to_string();
    match tokio::time::timeout(Duration::from_secs(5), tokio::net::TcpStream::connect((host.as_str(), port))).await {
        Ok(Ok(_)) => check(name, CheckLevel::Ok, "TCP reachable", None),
        Ok(Err(e)) => check(name, CheckLevel::Error, format!("cannot connect: {e}"), Some("check the network or whether the relay is up".into())),
        Err(_) => check(name, CheckLevel::Error, "connection timed out", Some("check the network or a firewall".into())),
    }
}
/// `vpd doctor`, run by the `vpd-daemon` binary: asks a running daemon for its pid and
/// credential store (starting none), then runs the checks.
pub fn run_here(home: &Home) -> Result<DoctorReport, crate::Error> {
    use crate::status::StatusReport;
    let running: Option<StatusReport> = crate::api::client::ask(home, crate::api::calls::GetStatus, std::time::Duration::from_secs(5)).ok();
    let pid = running.as_ref().and_then(|r| r.daemon.pid);
    let store = running.as_ref().and_then(|r| match r.daemon.credential_store {
        StoreKind::Keyring => Some(secrets::Store::Keyring),
        StoreKind::File => Some(secrets::Store::File { reason: r.daemon.keyring_error.clone().unwrap_or_default() }),
        StoreKind::Unknown => None,
    });
    // The proxies the daemon itself uses (its environment, or what `vpd pair` recorded) —
    // not this process's, which has the shell's variables.
    let daemon_proxy = running
        .as_ref()
        .and_then(|_| crate::api::client::ask(home, crate::api::calls::Ping, std::time::Duration::from_secs(5)).ok())
        .and_then(|p| p.proxy);
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().map_err(|e| crate::Error::io("runtime", e))?;
    let mut report = rt.block_on(run(home, pid, store));
    let (detail, whose) = match daemon_proxy {
        Some(d) => (d, "proxy (the daemon's)"),
        None => {
            crate::proxy::set_recorded(crate::config::read(home).ok().and_then(|c| c.daemon.proxy));
            (crate::proxy::Proxies::current().describe(), "proxy (a daemon started now)")
        }
    };
    report.checks.push(check(whose, CheckLevel::Ok, detail, None));
    Ok(report)
}

impl DoctorReport {
    /// The text `vpd doctor` prints.
    pub fn render(&self) -> String {
        let mut s = String::new();
        for c in &self.checks {
            let mark = match c.level {
                CheckLevel::Ok => "ok  ",
                CheckLevel::Warning => "warn",
                CheckLevel::Error => "FAIL",
            };
            s.push_str(&format!("[{mark}] {}: {}\n", c.name, c.detail));
            if let Some(fix) = &c.fix {
                s.push_str(&format!("       fix: {fix}\n"));
            }
        }
        s.push_str(if self.ok { "No problems found." } else { "Problems found; see the fixes above." });
        s
    }
}

//! `vpd status` and `vpd doctor`.

use crate::output::Out;
use std::process::ExitCode;
use std::time::Duration;
use vpd_daemon::api::client;
use vpd_daemon::states::{DirectoryState, LinkHealth, StoreKind};
use vpd_daemon::status::{self, StatusReport};
use vpd_daemon::{Error, Home};

/// The daemon's report, or one built from the files when no daemon runs (status never starts
/// one).
fn report(home: &Home) -> StatusReport {
    match client::ask(home, vpd_daemon::api::calls::GetStatus, Duration::from_secs(5)) {
        Ok(r) => r,
        Err(_) => status::collect(home, None),
    }
}

pub fn status(home: &Home, out: &Out) -> Result<ExitCode, Error> {
    let r = report(home);
    out.emit(&r, || render(&r));
    Ok(ExitCode::SUCCESS)
}

fn render(r: &StatusReport) -> String {
    let mut s = String::new();
    let d = &r.daemon;
    let state = if d.running { "running".to_string() } else { "not running (start it with `vpd install` or `vpd daemon`)".to_string() };
    s.push_str(&format!("Daemon: {} · v{} · {state}\n", d.machine_name, d.version));
    s.push_str(&format!("Org bindings ({}):\n", r.pairings.len()));
    let name_w = r.pairings.iter().map(|p| p.workspace_name.chars().count()).max().unwrap_or(0);
    let relay_w = r.pairings.iter().map(|p| p.relay_endpoint.len()).max().unwrap_or(0);
    for p in &r.pairings {
        let mut state = p.state.to_string();
        if p.throttled {
            state.push_str(" · throttled by the relay (write budget; output waits, and shows as a gap if the buffer fills)");
        }
        if p.insecure_http {
            state.push_str(" · insecure http");
        }
        if p.credential_store == StoreKind::File && d.credential_store == StoreKind::Keyring {
            state.push_str(" · token in config.json");
        }
        s.push_str(&format!("  {:name_w$}   {:relay_w$}   {state}\n", p.workspace_name, p.relay_endpoint));
        if let (false, Some(err)) = (p.state.health() == LinkHealth::Connected, &p.last_error) {
            s.push_str(&format!("  {:name_w$}   last error: {err}\n", ""));
        }
    }
    if r.pairings.is_empty() {
        s.push_str("  none — run `vpd pair` to pair with an org\n");
    }
    s.push_str(&format!("Bound directories ({}):\n", r.directories.len()));
    let dir_w = r.directories.iter().map(|x| x.display.chars().count()).max().unwrap_or(0);
    for x in &r.directories {
        let org = x.org_name.clone().unwrap_or_else(|| x.org_id.clone());
        let rec = if x.recursive { " (recursive)" } else { "" };
        let note = match x.state {
            DirectoryState::Bound => "",
            DirectoryState::Changed => "   [file changed: grants nothing until `vpd trust`]",
            DirectoryState::Missing => "   [local.yaml missing]",
            DirectoryState::OrgNotPaired => "   [org not paired]",
            DirectoryState::Waiting => "   [waiting: kept from a removed pairing; `vpd bind DIR` resumes it]",
        };
        let on = match (&x.server, x.state) {
            (Some(server), DirectoryState::Waiting) => format!(" on {server}"),
            _ => String::new(),
        };
        s.push_str(&format!("  {:dir_w$}  → {org}{on}{rec}{note}\n", x.display));
    }
    let streaming: u32 = r.pairings.iter().map(|p| p.sessions_streaming).sum();
    if streaming > 0 {
        s.push_str(&format!("Sessions streaming: {streaming} (`vpd sessions` lists them)\n"));
    }
    match d.credential_store {
        StoreKind::File => {
            s.push_str(&format!("Credentials: config.json (0600){}\n", d.keyring_error.as_deref().map(|e| format!(" — {e}")).unwrap_or_default()))
        }
        StoreKind::Keyring => s.push_str("Credentials: OS keyring (new pairings)\n"),
        StoreKind::Unknown => {}
    }
    for a in r.activity.iter().rev().take(5) {
        s.push_str(&format!("Activity: {} {}\n", a.at, a.message));
    }
    for p in &r.problems {
        s.push_str(&format!("Problem: {p}\n"));
    }
    s.trim_end().to_string()
}

/// `vpd doctor`: the checks need the HTTP client and the keyring, which `vpd` does not carry;
/// the `vpd-daemon` binary beside it runs them (and prints the same text or JSON).
pub fn doctor(home: &Home, out: &Out) -> Result<ExitCode, Error> {
    let daemon = client::daemon_exe(&crate::install::exe()?)?;
    let mut cmd = std::process::Command::new(&daemon);
    cmd.arg("doctor").arg("--home").arg(home.root());
    if out.json {
        cmd.arg("--json");
    }
    let e = vpd_daemon::os::process::replace_with(cmd);
    Err(Error::io(format!("starting {}", daemon.display()), e))
}

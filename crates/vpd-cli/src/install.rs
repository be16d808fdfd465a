//! `vpd install`, `vpd uninstall`, `vpd daemon [run|stop]`.

use crate::output::Out;
use crate::prompt;
use serde_json::json;
use std::process::ExitCode;
use std::time::{Duration, Instant};
use vpd_daemon::api::{client, protocol::Request};
use vpd_daemon::{config, Error, ErrorCode, Home};

#[derive(Clone, Copy, clap::ValueEnum)]
pub enum DaemonAction {
    /// Run in the foreground until stopped.
    Run,
    /// Stop the running daemon.
    Stop,
}

pub fn exe() -> Result<std::path::PathBuf, Error> {
    std::env::current_exe().map_err(|e| Error::io("finding the vpd binary", e))
}

pub fn daemon(home: Home, action: DaemonAction, out: &Out) -> Result<ExitCode, Error> {
    match action {
        DaemonAction::Run => {
            let detached = std::env::var_os("VPD_DAEMON_DETACHED").is_some();
            vpd_daemon::daemon::run(home, detached)?;
            Ok(ExitCode::SUCCESS)
        }
        DaemonAction::Stop => {
            let stopped = stop(&home)?;
            out.emit(&json!({"stopped": stopped}), || {
                if stopped { "vpd daemon stopped".into() } else { "vpd daemon was not running".into() }
            });
            Ok(ExitCode::SUCCESS)
        }
    }
}

/// Asks the daemon to stop and waits until it has released the home. `false` if none ran.
pub fn stop(home: &Home) -> Result<bool, Error> {
    let Some(pid) = vpd_daemon::daemon::running_pid(home) else { return Ok(false) };
    let asked = client::call::<serde_json::Value>(home, &Request::Shutdown, Duration::from_secs(5)).is_ok();
    if !asked {
        unsafe { libc::kill(pid as i32, libc::SIGTERM) };
    }
    let deadline = Instant::now() + Duration::from_secs(10);
    while Instant::now() < deadline {
        if vpd_daemon::daemon::running_pid(home).is_none() {
            return Ok(true);
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    Err(Error::new(ErrorCode::DaemonUnavailable, format!("the daemon (pid {pid}) did not stop within 10 s; see `vpd logs`")))
}

pub fn install(home: &Home, server: Option<String>, login_item: bool, out: &Out) -> Result<ExitCode, Error> {
    home.ensure()?;
    if let Some(s) = &server {
        let url = vpd_daemon::platform::check_url(s, false)?;
        config::update(home, |c| {
            c.daemon.default_server_url = Some(url.to_string());
            Ok(())
        })?;
    }
    let pong = client::ensure_daemon(home, &exe()?)?;
    let cfg = config::load(home)?;
    let server = cfg.daemon.default_server_url.clone();
    let (item_path, item_args) = vpd_daemon::login_item::target_for(&exe()?);
    let item = if login_item {
        vpd_daemon::login_item::enable(&item_path, &item_args)?;
        let cmd = std::iter::once(item_path.display().to_string()).chain(item_args).collect::<Vec<_>>().join(" ");
        Some(cmd)
    } else {
        None
    };
    let item_line = match &item {
        Some(cmd) => format!("Start at login: registered ({cmd})."),
        None => "Start at login: not registered (--no-login-item).".to_string(),
    };
    out.emit(
        &json!({"home": home.root(), "daemon": {"pid": pong.pid, "version": pong.version}, "defaultServerUrl": server, "loginItem": item}),
        || {
            format!(
                "vpd is installed: daemon running (pid {}), home {}.\n\
                 Nothing leaves this machine until you pair (`vpd pair{}`) and bind a directory (`vpd bind`).\n\
                 Shell hints: add `eval \"$(vpd hook bash)\"` (or zsh/fish) to your shell's rc file.\n\
                 {item_line}",
                pong.pid,
                home.root().display(),
                server.map(|s| format!(" --server {s}")).unwrap_or_default()
            )
        },
    );
    Ok(ExitCode::SUCCESS)
}

pub fn uninstall(home: &Home, purge: bool, yes: bool, out: &Out) -> Result<ExitCode, Error> {
    let mut unpaired = Vec::new();
    if purge {
        let cfg = config::read(home)?;
        if !yes {
            let q = format!(
                "Unpair {} org(s) and delete {}?",
                cfg.pairings.len(),
                home.root().display()
            );
            match prompt::ask(&q, false) {
                Some(true) => {}
                Some(false) => return Err(Error::new(ErrorCode::Cancelled, "nothing was changed")),
                None => return Err(Error::new(ErrorCode::InvalidArgument, "--purge deletes every pairing; pass --yes to confirm")),
            }
        }
        if !cfg.pairings.is_empty() {
            client::ensure_daemon(home, &exe()?)?;
            for p in &cfg.pairings {
                let r: vpd_daemon::api::protocol::Unpaired = client::call(
                    home,
                    &Request::Unpair(vpd_daemon::api::protocol::UnpairParams { org: p.workspace_id.clone() }),
                    Duration::from_secs(30),
                )?;
                unpaired.push(r);
            }
        }
    }
    let stopped = stop(home)?;
    let login_item_error = vpd_daemon::login_item::disable().err().map(|e| e.message);
    if purge {
        purge_home(home)?;
    }
    out.emit(&json!({"stopped": stopped, "purged": purge, "unpaired": unpaired, "loginItemError": login_item_error}), || {
        let mut s = if stopped { "vpd daemon stopped.".to_string() } else { "vpd daemon was not running.".to_string() };
        match &login_item_error {
            None => s.push_str(" The login item is removed."),
            Some(e) => s.push_str(&format!("\nwarning: {e}; remove ~/.config/autostart/Viewport.desktop yourself")),
        }
        for u in &unpaired {
            s.push_str(&format!("\nUnpaired {}{}", u.workspace_name, if u.server_notified { "" } else { " (the platform could not be told)" }));
        }
        if purge {
            s.push_str(&format!("\nRemoved {}.", home.root().display()));
        } else {
            s.push_str(&format!("\nPairings and bindings are kept in {}; `vpd uninstall --purge` removes them.", home.root().display()));
        }
        s
    });
    Ok(ExitCode::SUCCESS)
}

/// Deletes vpd's own files from the home, then the home if that leaves it empty (a home that
/// is shared with other files keeps them).
fn purge_home(home: &Home) -> Result<(), Error> {
    let root = home.root();
    for f in ["config.json", "directories.json", "hint-declines.json", "ui-token", "vpd.sock", "daemon.lock", ".lock"] {
        match std::fs::remove_file(root.join(f)) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(Error::io(format!("removing {}", root.join(f).display()), e)),
        }
    }
    for d in [home.identities(), home.logs()] {
        match std::fs::remove_dir_all(&d) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(Error::io(format!("removing {}", d.display()), e)),
        }
    }
    let _ = std::fs::remove_dir(root);
    Ok(())
}

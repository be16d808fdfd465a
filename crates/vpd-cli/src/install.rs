//! `vpd install`, `vpd uninstall`, `vpd daemon [run|stop]`.

use crate::output::Out;
use crate::prompt;
use serde_json::json;
use std::process::ExitCode;
use std::time::Duration;
use vpd_daemon::api::client;
use vpd_daemon::service::Service;
use vpd_daemon::{config, login_item, Error, ErrorCode, Home};

#[derive(Clone, Copy, clap::ValueEnum)]
pub enum DaemonAction {
    /// Run in the foreground until stopped.
    Run,
    /// Stop the running daemon.
    Stop,
}

/// The `vpd` binary as the login item, the service and a started daemon should name it:
/// through the installation's `current` link when it has one, so they follow updates (a
/// `vpd` still running from the previous version starts the new daemon).
pub fn exe() -> Result<std::path::PathBuf, Error> {
    let exe = std::env::current_exe().map_err(|e| Error::io("finding the vpd binary", e))?;
    Ok(vpd_daemon::update::stable_exe(&exe))
}

pub fn daemon(home: Home, action: DaemonAction, out: &Out) -> Result<ExitCode, Error> {
    match action {
        DaemonAction::Run => {
            // `vpd` carries no daemon: become the `vpd-daemon` that ships beside it.
            let daemon = client::daemon_exe(&exe()?)?;
            let mut cmd = std::process::Command::new(&daemon);
            cmd.arg("--home").arg(home.root());
            if out.json {
                cmd.arg("--json");
            }
            let e = vpd_daemon::os::process::replace_with(cmd);
            Err(Error::io(format!("starting {}", daemon.display()), e))
        }
        DaemonAction::Stop => {
            let stopped = stop(&home)?;
            out.emit(&json!({"stopped": stopped}), || if stopped { "vpd daemon stopped".into() } else { "vpd daemon was not running".into() });
            Ok(ExitCode::SUCCESS)
        }
    }
}

/// Asks the daemon to stop and waits until it has released the home. `false` if none ran.
pub fn stop(home: &Home) -> Result<bool, Error> {
    client::stop_daemon(home)
}

pub fn install(home: &Home, server: Option<String>, service: Service, out: &Out) -> Result<ExitCode, Error> {
    home.ensure()?;
    // Run from an unpacked release: it is copied into the user's installation first, and
    // everything below names that copy (so `vpd update` can replace it later).
    let (vpd, installed) = match from_release()? {
        Some((root, version, linked)) => (root.join("current").join(format!("vpd{}", std::env::consts::EXE_SUFFIX)), Some((root, version, linked))),
        None => (exe()?, None),
    };
    if let Some(s) = &server {
        let url = vpd_daemon::platform::check_url(s, false)?;
        config::update(home, |c| {
            c.daemon.default_server_url = Some(url.to_string());
            Ok(())
        })?;
    }
    // A daemon started at login has no shell variables: record the proxies in effect now.
    let proxy = vpd_daemon::proxy::ProxyEnv::from_env();
    if !proxy.is_empty() {
        vpd_daemon::proxy::Proxies::new(proxy.clone(), vpd_daemon::proxy::Source::Recorded)?;
        config::update(home, |c| {
            c.daemon.proxy = Some(proxy);
            Ok(())
        })?;
    }
    // One mechanism per install: whichever is chosen, the others go (so two daemons are
    // never started at login). The service is switched before the daemon is made sure of:
    // removing the systemd unit stops its daemon, and the unit starts its own.
    let mut replaced: Vec<String> = Vec::new();
    let entry = login_item::entry_for(&vpd, home);
    let registered = login_item::current();
    let ours = registered.clone().filter(|c| login_item::starts_home(c, home) || login_item::registers(c, &entry));
    let mut item = None;
    let mut systemd = None;
    // The replaced login item's command line (`loginItemReplaced`, kept for scripts).
    let mut item_replaced = None;
    match service {
        Service::Autostart => {
            // Another home's entry (or another binary's) is replaced: say which.
            if let Some(old) = registered.filter(|b| !login_item::registers(b, &entry)) {
                replaced.push(format!("the login item that started `{old}`"));
                item_replaced = Some(old);
            }
            replaced.extend(vpd_daemon::service::disable_systemd_unit(home)?);
            login_item::enable(&entry)?;
            item = Some(entry.command_line());
        }
        Service::Systemd => {
            if let Some(old) = ours {
                login_item::disable()?;
                replaced.push(format!("the login item that started `{old}`"));
            }
            // The unit runs the daemon from now on: one started otherwise makes way.
            stop(home)?;
            systemd = Some(vpd_daemon::service::install_systemd_unit(&vpd, home)?);
        }
        Service::None => {
            if let Some(old) = ours {
                login_item::disable()?;
                replaced.push(format!("the login item that started `{old}`"));
            }
            replaced.extend(vpd_daemon::service::disable_systemd_unit(home)?);
        }
    }
    // Started by the unit, or (without systemd, or for the other kinds) here.
    let pong = client::ensure_daemon(home, &vpd)?;
    let cfg = config::load(home)?;
    let server = cfg.daemon.default_server_url.clone();
    let removed = if replaced.is_empty() { String::new() } else { format!(", replacing {}", replaced.join(" and ")) };
    let item_line = match (&item, &systemd) {
        (Some(cmd), _) => format!("Start at login: registered ({cmd}){removed}."),
        (None, Some(s)) => {
            let mut l = format!("Start at login: systemd user unit {}{removed}", s.unit.display());
            match &s.enable_command {
                None => l.push_str(", enabled."),
                Some(cmd) => l.push_str(&format!(", not enabled yet (no systemd user session here): run `{cmd}`.")),
            }
            if let Some(cmd) = &s.linger_command {
                l.push_str(&format!(" To start it at boot, before you log in (a headless machine): `{cmd}`."));
            }
            l
        }
        (None, None) => format!("Start at login: nothing registered (--service none){removed}."),
    };
    let installed_line = match &installed {
        Some((root, v, Some(link))) => {
            format!("Installed vpd {v} in {} (`{}` runs it; `vpd update` keeps it current).\n", root.display(), link.display())
        }
        Some((root, v, None)) => {
            format!("Installed vpd {v} in {} (`vpd update` keeps it current); add {}/current to your PATH.\n", root.display(), root.display())
        }
        None => String::new(),
    };
    out.emit(
        &json!({"home": home.root(), "daemon": {"pid": pong.pid, "version": pong.version}, "defaultServerUrl": server,
                "service": format!("{service:?}").to_lowercase(), "loginItem": item, "loginItemReplaced": item_replaced, "replaced": replaced,
                "loginItemLocation": item.as_ref().map(|_| login_item::location()), "systemd": systemd,
                "installedTo": installed.as_ref().map(|(r, _, _)| r), "installedVersion": installed.as_ref().map(|(_, v, _)| v.to_string()),
                "command": installed.as_ref().and_then(|(_, _, l)| l.clone())}),
        || {
            format!(
                "{installed_line}vpd is installed: daemon running (pid {}), home {}.\n\
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

/// When this `vpd` runs from an unpacked release archive (its `viewport-release.json` beside
/// it, outside any installation): installs it for this user and links `~/.local/bin/vpd`.
/// Returns the installation's root, the version and the link (when it could be made).
fn from_release() -> Result<Option<(std::path::PathBuf, vpd_core::release::Version, Option<std::path::PathBuf>)>, Error> {
    use vpd_daemon::update;
    let running = std::env::current_exe().map_err(|e| Error::io("finding the vpd binary", e))?;
    let Some(dir) = running.parent() else { return Ok(None) };
    if !dir.join(update::RELEASE_MARKER).is_file() || !matches!(update::find_install(&running), update::Install::Plain { .. }) {
        return Ok(None);
    }
    let root = update::default_root().ok_or_else(|| Error::new(ErrorCode::Io, "cannot tell where to install: set HOME"))?;
    let version = update::install_release(dir, &root)?;
    let link = vpd_daemon::home::user_home().map(|h| h.join(".local/bin").join(format!("vpd{}", std::env::consts::EXE_SUFFIX)));
    let linked = match link {
        Some(l) if update::link_command(&root, &l)? => Some(l),
        _ => None,
    };
    Ok(Some((root, version, linked)))
}

/// What `vpd uninstall` was asked to do.
pub struct Uninstall {
    pub purge: bool,
    pub yes: bool,
    /// With purge: remove the binding files (`Some(true)`), keep them (`Some(false)`), or ask.
    pub remove_bindings: Option<bool>,
}

pub fn uninstall(home: &Home, how: Uninstall, out: &Out) -> Result<ExitCode, Error> {
    let mut unpaired = Vec::new();
    let mut unbound: Vec<String> = Vec::new();
    if how.purge {
        let cfg = config::read(home)?;
        let bound = vpd_daemon::records::load_directories(home)?.bindings.len();
        if !how.yes {
            let q = format!(
                "Unpair {} org(s) (telling each platform), delete their keyring entries and remove {}?",
                cfg.pairings.len(),
                home.root().display()
            );
            match prompt::ask(&q, false) {
                Some(true) => {}
                Some(false) => return Err(Error::new(ErrorCode::Cancelled, "nothing was changed")),
                None => return Err(Error::new(ErrorCode::InvalidArgument, "--purge deletes every pairing; pass --yes to confirm")),
            }
        }
        let remove_bindings = match how.remove_bindings {
            Some(r) => r,
            None if bound == 0 => false,
            None if how.yes => false,
            None => prompt::ask(
                &format!(
                    "Also remove the binding files vpd wrote in {bound} director{} (.viewport/local.yaml)?",
                    if bound == 1 { "y" } else { "ies" }
                ),
                false,
            )
            .unwrap_or(false),
        };
        if remove_bindings {
            unbound = vpd_daemon::binding::remove_all_bindings(home)?.iter().map(|d| d.display().to_string()).collect();
        }
        if !cfg.pairings.is_empty() {
            client::ensure_daemon(home, &exe()?)?;
            for p in &cfg.pairings {
                let r = client::ask(
                    home,
                    vpd_daemon::api::protocol::UnpairParams {
                        org: p.pairing_id.clone(),
                        keep_bindings: !remove_bindings,
                        forget_bindings: remove_bindings,
                    },
                    Duration::from_secs(30),
                )?;
                unpaired.push(r);
            }
        }
    }
    // The systemd unit of this home goes first (its daemon stops with it).
    let unit_removed = vpd_daemon::service::disable_systemd_unit(home)?;
    let stopped = stop(home)? || unit_removed.is_some();
    // Only the entry that starts this home is ours to remove.
    let registered = login_item::current();
    let (login_item_removed, login_item_kept, login_item_error) = match &registered {
        Some(cmd) if login_item::starts_home(cmd, home) => match login_item::disable() {
            Ok(()) => (Some(cmd.clone()), None, None),
            Err(e) => (None, None, Some(e.message)),
        },
        Some(cmd) => (None, Some(cmd.clone()), None),
        None => (None, None, None),
    };
    let hook_lines = if how.purge { shell_hook_lines() } else { Vec::new() };
    let left = if how.purge { purge_home(home)? } else { Vec::new() };
    out.emit(
        &json!({"stopped": stopped, "purged": how.purge, "unpaired": unpaired, "unbound": unbound,
                "loginItemRemoved": login_item_removed, "loginItemKept": login_item_kept, "loginItemError": login_item_error,
                "serviceRemoved": unit_removed, "shellHookLines": hook_lines, "homeLeft": left}),
        || {
            let mut s = if stopped { "vpd daemon stopped.".to_string() } else { "vpd daemon was not running.".to_string() };
            match (&login_item_removed, &login_item_kept, &login_item_error) {
                (Some(cmd), _, _) => s.push_str(&format!("\nRemoved the login item ({cmd}).")),
                (_, Some(cmd), _) => s.push_str(&format!("\nThe login item starts another home ({cmd}); left in place.")),
                (_, _, Some(e)) => s.push_str(&format!("\nwarning: {e}; remove {} yourself", login_item::location())),
                _ => s.push_str("\nNo login item was registered."),
            }
            if let Some(u) = &unit_removed {
                s.push_str(&format!("\nRemoved {u}."));
            }
            for u in &unpaired {
                s.push_str(&format!("\nUnpaired {}{}", u.workspace_name, if u.server_notified { "" } else { " (the platform could not be told)" }));
            }
            for d in &unbound {
                s.push_str(&format!("\nRemoved the binding files in {d}"));
            }
            for (file, line) in &hook_lines {
                s.push_str(&format!("\nvpd did not add it, so it is left for you: {file} runs `{line}`"));
            }
            if how.purge {
                if left.is_empty() {
                    s.push_str(&format!("\nRemoved {}.", home.root().display()));
                } else {
                    s.push_str(&format!("\nRemoved vpd's files; {} is kept because it also holds: {}", home.root().display(), left.join(", ")));
                }
            } else {
                s.push_str(&format!("\nPairings and bindings are kept in {}; `vpd uninstall --purge` removes them.", home.root().display()));
            }
            s
        },
    );
    Ok(ExitCode::SUCCESS)
}

/// The lines of the user's shell start-up files that load vpd's shell hook (`vpd hook …`).
/// vpd never writes them (install prints the line to add), so they are reported, not edited.
fn shell_hook_lines() -> Vec<(String, String)> {
    let Some(user) = vpd_daemon::home::user_home() else { return Vec::new() };
    let mut found = Vec::new();
    for rc in [".bashrc", ".bash_profile", ".zshrc", ".config/fish/config.fish"] {
        let path = user.join(rc);
        if let Ok(text) = std::fs::read_to_string(&path) {
            for line in text.lines().filter(|l| l.contains("vpd hook") && !l.trim_start().starts_with('#')) {
                found.push((path.display().to_string(), line.trim().to_string()));
            }
        }
    }
    found
}

/// Deletes vpd's own files from the home, then the home. A home that also holds files vpd
/// did not make keeps them (and is not removed): their names are returned.
fn purge_home(home: &Home) -> Result<Vec<String>, Error> {
    let root = home.root();
    for f in ["config.json", "config.json.v1.bak", "directories.json", "hint-declines.json", "ui-token", "vpd.sock", "daemon.lock", ".lock"] {
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
    // Temporary files of interrupted atomic writes are vpd's too.
    vpd_daemon::store::sweep_temporaries(root);
    let mut left: Vec<String> = match std::fs::read_dir(root) {
        Ok(entries) => entries.flatten().map(|e| e.file_name().to_string_lossy().into_owned()).collect(),
        Err(_) => Vec::new(),
    };
    left.sort();
    if left.is_empty() {
        match std::fs::remove_dir(root) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(Error::io(format!("removing {}", root.display()), e)),
        }
    }
    Ok(left)
}

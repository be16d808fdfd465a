//! How the daemon starts at login, one mechanism per install (issue 11 item 8): the login
//! item ([`crate::login_item`]: the tray on a desktop, else `vpd daemon`), a systemd user
//! unit for headless Linux machines (`vpd install --service systemd`), or nothing. Choosing
//! one removes the other, so two daemons are never started at login. The systemd part is
//! Linux-only; elsewhere asking for it is an error that says so.

use crate::error::{Error, ErrorCode, Result};
use crate::home::Home;
use std::path::{Path, PathBuf};

/// The exit status of `vpd daemon` when another daemon already runs for the home: the unit
/// does not restart on it (`RestartPreventExitStatus`).
pub const EXIT_ALREADY_RUNNING: u8 = 3;

/// The unit's name for `home`: `vpd.service` for the default home, `vpd-<8 hex>.service`
/// (from the home's path) for another, so two homes never share one unit.
pub fn unit_name(home: &Home) -> String {
    if Home::default_root().is_some_and(|d| d == home.root()) {
        return "vpd.service".into();
    }
    let hash = vpd_core::file_hash(home.root().display().to_string().as_bytes());
    let hex = hash.trim_start_matches("sha256:");
    format!("vpd-{}.service", &hex[..8])
}

/// `vpd install --service …`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Service {
    /// The login item (the default).
    Autostart,
    /// A systemd user unit.
    Systemd,
    /// Nothing starts at login.
    None,
}

impl std::str::FromStr for Service {
    type Err = String;
    fn from_str(s: &str) -> std::result::Result<Self, String> {
        match s {
            "autostart" => Ok(Service::Autostart),
            "systemd" => Ok(Service::Systemd),
            "none" => Ok(Service::None),
            other => Err(format!("{other:?} is not a service kind: use autostart, systemd or none")),
        }
    }
}

/// Where the user unit of `home` lives.
pub fn unit_path(home: &Home) -> Option<PathBuf> {
    let config = std::env::var_os("XDG_CONFIG_HOME")
        .filter(|v| !v.is_empty())
        .map(PathBuf::from)
        .or_else(|| crate::home::user_home().map(|h| h.join(".config")))?;
    Some(config.join("systemd/user").join(unit_name(home)))
}

/// The unit's text: `vpd daemon` for `home` (named unless it is the default home).
pub fn unit_text(vpd_exe: &Path, home: &Home) -> String {
    // The same words, and quoting, as the login item of `vpd daemon` for this home.
    let words = [vpd_exe.display().to_string(), "daemon".to_string()].into_iter().chain(crate::login_item::home_args(home));
    let exec = words.map(|w| crate::login_item::quote(&w)).collect::<Vec<_>>().join(" ");
    format!(
        "# Written by `vpd install --service systemd`; `vpd install --service none` removes it.\n\
         [Unit]\nDescription=Viewport machine daemon (vpd)\nAfter=network-online.target\n\n\
         [Service]\nExecStart={exec}\nRestart=on-failure\nRestartSec=5\nRestartPreventExitStatus={EXIT_ALREADY_RUNNING}\n\n\
         [Install]\nWantedBy=default.target\n"
    )
}

/// What installing the unit did.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "camelCase")]
pub struct SystemdInstalled {
    pub unit: PathBuf,
    /// `systemctl --user enable` worked.
    pub enabled: bool,
    /// What to run when it did not (no user session bus, no systemd).
    pub enable_command: Option<String>,
    /// Lingering is on (the unit starts at boot, before anyone logs in).
    pub linger: bool,
    /// What to run to turn lingering on, when it is off.
    pub linger_command: Option<String>,
}

fn run(cmd: &str, args: &[&str]) -> bool {
    std::process::Command::new(cmd)
        .args(args)
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

fn user_name() -> String {
    std::env::var("USER").ok().filter(|u| !u.is_empty()).unwrap_or_else(|| "$USER".into())
}

/// Writes and enables the user unit for `vpd_exe` and `home`. The caller stops a daemon
/// started otherwise first: the unit starts its own (`--now`).
pub fn install_systemd_unit(vpd_exe: &Path, home: &Home) -> Result<SystemdInstalled> {
    if !cfg!(target_os = "linux") {
        return Err(Error::new(ErrorCode::InvalidArgument, "--service systemd is for Linux; use --service autostart on this system"));
    }
    let unit = unit_path(home).ok_or_else(|| Error::new(ErrorCode::InvalidArgument, "no home directory for the systemd user unit"))?;
    let name = unit_name(home);
    let dir = unit.parent().expect("a unit path has a folder");
    std::fs::create_dir_all(dir).map_err(|e| Error::io(format!("creating {}", dir.display()), e))?;
    crate::store::write_atomic(&unit, unit_text(vpd_exe, home).as_bytes())?;
    let enabled = run("systemctl", &["--user", "daemon-reload"]) && run("systemctl", &["--user", "enable", "--now", &name]);
    let user = user_name();
    let linger = std::process::Command::new("loginctl")
        .args(["show-user", &user, "--property=Linger"])
        .output()
        .is_ok_and(|o| String::from_utf8_lossy(&o.stdout).trim() == "Linger=yes");
    Ok(SystemdInstalled {
        unit,
        enabled,
        enable_command: (!enabled).then(|| format!("systemctl --user daemon-reload && systemctl --user enable --now {name}")),
        linger,
        linger_command: (!linger).then(|| format!("loginctl enable-linger {user}")),
    })
}

/// Starts the daemon of `home` through its systemd user unit, when `vpd install --service
/// systemd` wrote one and systemd takes the request (so `vpd update`'s new daemon stays under
/// the unit). False otherwise: the caller starts the daemon itself.
pub fn start_unit(home: &Home) -> bool {
    unit_path(home).is_some_and(|u| u.is_file()) && run("systemctl", &["--user", "restart", &unit_name(home)])
}

/// Stops, disables and removes the user unit of `home`, if `vpd install --service systemd`
/// wrote one; says what it removed. (Its daemon stops with it.)
pub fn disable_systemd_unit(home: &Home) -> Result<Option<String>> {
    let Some(unit) = unit_path(home).filter(|u| u.is_file()) else { return Ok(None) };
    let _ = run("systemctl", &["--user", "disable", "--now", &unit_name(home)]);
    std::fs::remove_file(&unit).map_err(|e| Error::io(format!("removing {}", unit.display()), e))?;
    let _ = run("systemctl", &["--user", "daemon-reload"]);
    Ok(Some(format!("the systemd user unit {}", unit.display())))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_unit_starts_vpd_daemon_for_its_home() {
        let t = unit_text(Path::new("/opt/my apps/vpd"), &Home::at("/tmp/a home"));
        assert!(t.contains("ExecStart=\"/opt/my apps/vpd\" daemon --home \"/tmp/a home\"\n"), "{t}");
        assert!(t.contains("WantedBy=default.target") && t.contains("Restart=on-failure") && t.contains("RestartPreventExitStatus=3"), "{t}");
        let (a, b) = (unit_name(&Home::at("/tmp/a home")), unit_name(&Home::at("/tmp/b home")));
        assert!(a.starts_with("vpd-") && a.ends_with(".service") && a != b, "one unit per home: {a} {b}");
        assert_eq!("systemd".parse::<Service>(), Ok(Service::Systemd));
        assert!("launchd".parse::<Service>().unwrap_err().contains("autostart, systemd or none"));
    }
}

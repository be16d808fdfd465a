//! How the daemon starts at login, one mechanism per install (issue 11 item 8): the login
//! item ([`crate::login_item`]: the tray on a desktop, else `vpd daemon`), a systemd user
//! unit for headless Linux machines (`vpd install --service systemd`), or nothing. Choosing
//! one removes the other, so two daemons are never started at login. The systemd part is
//! Linux-only; elsewhere asking for it is an error that says so.

use crate::error::{Error, ErrorCode, Result};
use crate::home::Home;
use std::path::{Path, PathBuf};

/// The unit's name.
pub const UNIT: &str = "vpd.service";

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

/// Where the user unit lives.
pub fn unit_path() -> Option<PathBuf> {
    let config = std::env::var_os("XDG_CONFIG_HOME")
        .filter(|v| !v.is_empty())
        .map(PathBuf::from)
        .or_else(|| crate::home::user_home().map(|h| h.join(".config")))?;
    Some(config.join("systemd/user").join(UNIT))
}

/// The unit's text: `vpd daemon` for `home` (named unless it is the default home).
pub fn unit_text(vpd_exe: &Path, home: &Home) -> String {
    let quote = |s: &str| {
        if s.chars().any(|c| c.is_whitespace() || c == '"' || c == '\\') {
            format!("\"{}\"", s.replace('\\', "\\\\").replace('"', "\\\""))
        } else {
            s.to_string()
        }
    };
    let mut exec = format!("{} daemon", quote(&vpd_exe.display().to_string()));
    if Home::default_root().is_none_or(|d| d != home.root()) {
        exec.push_str(&format!(" --home {}", quote(&home.root().display().to_string())));
    }
    format!(
        "# Written by `vpd install --service systemd`; `vpd install --service none` removes it.\n\
         [Unit]\nDescription=Viewport machine daemon (vpd)\nAfter=network-online.target\n\n\
         [Service]\nExecStart={exec}\nRestart=on-failure\nRestartSec=5\n\n\
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

/// Writes and enables the user unit for `vpd_exe` and `home`.
pub fn install_systemd_unit(vpd_exe: &Path, home: &Home) -> Result<SystemdInstalled> {
    if !cfg!(target_os = "linux") {
        return Err(Error::new(ErrorCode::InvalidArgument, "--service systemd is for Linux; use --service autostart on this system"));
    }
    let unit = unit_path().ok_or_else(|| Error::new(ErrorCode::InvalidArgument, "no home directory for the systemd user unit"))?;
    let dir = unit.parent().expect("a unit path has a folder");
    std::fs::create_dir_all(dir).map_err(|e| Error::io(format!("creating {}", dir.display()), e))?;
    crate::store::write_atomic(&unit, unit_text(vpd_exe, home).as_bytes())?;
    let enabled = run("systemctl", &["--user", "daemon-reload"]) && run("systemctl", &["--user", "enable", "--now", UNIT]);
    let user = user_name();
    let linger = std::process::Command::new("loginctl")
        .args(["show-user", &user, "--property=Linger"])
        .output()
        .is_ok_and(|o| String::from_utf8_lossy(&o.stdout).trim() == "Linger=yes");
    Ok(SystemdInstalled {
        unit,
        enabled,
        enable_command: (!enabled).then(|| format!("systemctl --user daemon-reload && systemctl --user enable --now {UNIT}")),
        linger,
        linger_command: (!linger).then(|| format!("loginctl enable-linger {user}")),
    })
}

/// Stops, disables and removes the user unit, if `vpd install --service systemd` wrote one;
/// says what it removed.
pub fn disable_systemd_unit() -> Result<Option<String>> {
    let Some(unit) = unit_path().filter(|u| u.is_file()) else { return Ok(None) };
    let _ = run("systemctl", &["--user", "disable", "--now", UNIT]);
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
        assert!(t.contains("WantedBy=default.target") && t.contains("Restart=on-failure"), "{t}");
        assert_eq!("systemd".parse::<Service>(), Ok(Service::Systemd));
        assert!("launchd".parse::<Service>().unwrap_err().contains("autostart, systemd or none"));
    }
}

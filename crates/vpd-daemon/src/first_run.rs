//! The tray app's first start in a home (issue 11 items 4 and 8), once per home: the common
//! code folders that exist become watched folders (nothing leaves the machine: they are only
//! looked at for `.viewport/workspace.yaml`), and — only for the default home, never one
//! named by `VIEWPORT_HOME` or `--home` (the quickstart's, a test's) — the tray starts at
//! login, replacing whatever else started this home at login. Done once: what the person
//! removes or turns off afterwards stays so.

use crate::error::Result;
use crate::home::Home;
use crate::{config, login_item, watched};
use std::path::Path;

/// What the first start did, for the tray to say.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct FirstRun {
    /// Folders now watched (canonical paths).
    pub watched: Vec<String>,
    /// The login item registered, where (`~/.config/autostart/Viewport.desktop`).
    pub login_item: Option<String>,
    /// What it replaced (an older entry's command line, the systemd unit).
    pub replaced: Vec<String>,
}

/// Sets up a home on the tray's first start there; `None` when it was set up before.
/// `default_home`: the home is the default one (no `VIEWPORT_HOME`, no `--home`).
pub fn set_up(home: &Home, tray_exe: &Path, default_home: bool) -> Result<Option<FirstRun>> {
    // Only a home the tray starts fresh: a home already used (by `vpd`, or by an older tray
    // before this flag existed) keeps what its person chose — their login item, their
    // systemd unit, their watched folders.
    if home.config().exists() {
        if !config::load(home)?.daemon.tray_set_up {
            config::update(home, |c| {
                c.daemon.tray_set_up = true;
                Ok(())
            })?;
        }
        return Ok(None);
    }
    let mut done = FirstRun::default();
    if let Some(user_home) = crate::home::user_home() {
        let found = watched::common_folders(&user_home);
        if !found.is_empty() {
            watched::add_all(home, &found)?;
        }
        done.watched = found;
    }
    if default_home {
        let entry = login_item::tray_entry(tray_exe, home);
        if let Some(old) = login_item::current().filter(|c| !login_item::registers(c, &entry)) {
            done.replaced.push(old);
        }
        if let Some(unit) = crate::service::disable_systemd_unit(home)? {
            done.replaced.push(unit);
        }
        login_item::enable(&entry)?;
        done.login_item = Some(login_item::location());
    }
    // Marked last: a start that failed half-way is tried again next time.
    config::update(home, |c| {
        c.daemon.tray_set_up = true;
        Ok(())
    })?;
    Ok(Some(done))
}

impl FirstRun {
    /// The notification's text.
    pub fn message(&self) -> String {
        let mut parts = Vec::new();
        if !self.watched.is_empty() {
            let shown: Vec<String> =
                self.watched.iter().map(|f| vpd_core::resolve::display_dir(Path::new(f), crate::home::user_home().as_deref())).collect();
            parts.push(format!("Watching {} for repositories that suggest an org (nothing leaves this machine).", shown.join(", ")));
        }
        if let Some(at) = &self.login_item {
            let replacing = if self.replaced.is_empty() { String::new() } else { format!(", replacing {}", self.replaced.join(" and ")) };
            parts.push(format!("Viewport starts at login ({at}{replacing}); turn it off with Start at login in the menu."));
        }
        parts.join(" ")
    }
}

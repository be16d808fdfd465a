//! "Start at login" (SPEC section 3 and 12) through auto-launch: an XDG autostart entry on
//! Linux, a launch agent on macOS, the Run key on Windows. One entry per OS user, named
//! "Viewport", that starts the tray app when it is installed next to `vpd` (the desktop
//! bundle), else the headless `vpd daemon`, always for one home: a home other than the
//! default is named on the command line (`--home DIR`), so a `VIEWPORT_HOME` set in a shell
//! is honoured at login too. The tray's checkbox and `vpd install` / `uninstall` share it.
//!
//! What is registered is read back from the system ([`current`]), never remembered, so
//! `uninstall` removes only an entry that starts its own home, and `install` can say which
//! entry it replaces.

use crate::error::{Error, ErrorCode, Result};
use crate::Home;
use std::path::{Path, PathBuf};

pub const APP_NAME: &str = "Viewport";
/// The tray binary's file name (next to `vpd` in the bundle).
pub const TRAY_BINARY: &str = if cfg!(windows) { "viewport-tray.exe" } else { "viewport-tray" };

/// A command that starts at login.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    pub program: PathBuf,
    pub args: Vec<String>,
}

impl Entry {
    /// The command as the system shows it (`program arg…`).
    pub fn command_line(&self) -> String {
        std::iter::once(self.program.display().to_string()).chain(self.args.iter().cloned()).collect::<Vec<_>>().join(" ")
    }
}

/// `--home DIR` for a home other than the default one (none for the default).
pub(crate) fn home_args(home: &Home) -> Vec<String> {
    match Home::default_root() {
        Some(default) if default == home.root() => Vec::new(),
        _ => vec!["--home".to_string(), home.root().display().to_string()],
    }
}

/// What starts at login for the `vpd` binary at `vpd_exe` and `home`: the tray beside it, if
/// any, else `vpd daemon`.
pub fn entry_for(vpd_exe: &Path, home: &Home) -> Entry {
    let tray = vpd_exe.with_file_name(TRAY_BINARY);
    let (program, mut args) = if tray.is_file() { (tray, Vec::new()) } else { (vpd_exe.to_path_buf(), vec!["daemon".to_string()]) };
    args.extend(home_args(home));
    Entry { program, args }
}

/// What starts at login for the tray binary at `tray_exe` and `home`.
pub fn tray_entry(tray_exe: &Path, home: &Home) -> Entry {
    Entry { program: tray_exe.to_path_buf(), args: home_args(home) }
}

/// Whether the registered command line starts the daemon (or tray) for `home`.
pub fn starts_home(command_line: &str, home: &Home) -> bool {
    let words = split_words(command_line);
    let named = words.iter().position(|w| w == "--home").and_then(|i| words.get(i + 1)).map(PathBuf::from);
    match named {
        Some(dir) => dir == home.root(),
        None => Home::default_root().is_some_and(|d| d == home.root()),
    }
}

/// Whether the registered command line starts exactly `entry` (read as the system quotes it:
/// a path with a space is one word).
pub fn registers(command_line: &str, entry: &Entry) -> bool {
    let words = split_words(command_line);
    words.split_first().is_some_and(|(program, args)| std::path::Path::new(program) == entry.program && args == entry.args.as_slice())
}

/// Splits a registered command line into words, honouring double quotes (as the desktop
/// entry spec and the Windows Run key quote).
fn split_words(s: &str) -> Vec<String> {
    let mut out = Vec::new();
    let (mut cur, mut quoted, mut any) = (String::new(), false, false);
    let mut chars = s.chars();
    while let Some(c) = chars.next() {
        match c {
            '"' => {
                quoted = !quoted;
                any = true;
            }
            '\\' if quoted => {
                if let Some(n) = chars.next() {
                    cur.push(n);
                }
            }
            c if c.is_whitespace() && !quoted => {
                if any || !cur.is_empty() {
                    out.push(std::mem::take(&mut cur));
                }
                any = false;
            }
            c => cur.push(c),
        }
    }
    if any || !cur.is_empty() {
        out.push(cur);
    }
    out
}

/// A word as the system's command line needs it: quoted when it holds white space or quotes
/// (auto-launch writes the words as given; a systemd unit's ExecStart reads them the same
/// way). Launch agents take each word as it is.
pub(crate) fn quote(word: &str) -> String {
    if cfg!(target_os = "macos") || !word.chars().any(|c| c.is_whitespace() || c == '"' || c == '\\') {
        return word.to_string();
    }
    format!("\"{}\"", word.replace('\\', "\\\\").replace('"', "\\\""))
}

fn launcher(program: &Path, args: &[String]) -> Result<auto_launch::AutoLaunch> {
    let path = program.to_str().ok_or_else(|| Error::new(ErrorCode::InvalidArgument, format!("{} is not valid UTF-8", program.display())))?;
    let args: Vec<String> = args.iter().map(|a| quote(a)).collect();
    auto_launch::AutoLaunchBuilder::new()
        .set_app_name(APP_NAME)
        .set_app_path(&quote(path))
        .set_args(&args)
        .build()
        .map_err(|e| Error::new(ErrorCode::Io, format!("the login item: {e}")))
}

/// Registers `entry` to start at login (replacing any older entry).
pub fn enable(entry: &Entry) -> Result<()> {
    launcher(&entry.program, &entry.args)?
        .enable()
        .map_err(|e| Error::new(ErrorCode::Io, format!("registering the login item: {e}; check that {} is writable", platform::location())))
}

/// Removes the login item, if registered.
pub fn disable() -> Result<()> {
    let l = launcher(Path::new("/"), &[])?;
    if l.is_enabled().unwrap_or(false) {
        l.disable().map_err(|e| Error::new(ErrorCode::Io, format!("removing the login item: {e}")))?;
    }
    Ok(())
}

/// Whether a login item is registered (read from the system, not remembered).
pub fn is_enabled() -> bool {
    launcher(Path::new("/"), &[]).and_then(|l| l.is_enabled().map_err(|e| Error::new(ErrorCode::Io, e.to_string()))).unwrap_or(false)
}

/// The registered login item's command line, read from the system; `None` when there is none.
pub fn current() -> Option<String> {
    if !is_enabled() {
        return None;
    }
    platform::registered_command()
}

/// Where the login item lives, for messages.
pub fn location() -> String {
    platform::location()
}

#[cfg(target_os = "linux")]
mod platform {
    fn file() -> Option<std::path::PathBuf> {
        crate::home::user_home().map(|h| h.join(".config/autostart").join(format!("{}.desktop", super::APP_NAME)))
    }
    pub fn location() -> String {
        file().map(|f| f.display().to_string()).unwrap_or_else(|| "~/.config/autostart".into())
    }
    /// The `Exec=` line of the autostart entry.
    pub fn registered_command() -> Option<String> {
        let text = std::fs::read_to_string(file()?).ok()?;
        text.lines().find_map(|l| l.strip_prefix("Exec=")).map(|s| s.trim().to_string())
    }
}

#[cfg(target_os = "macos")]
mod platform {
    fn file() -> Option<std::path::PathBuf> {
        crate::home::user_home().map(|h| h.join("Library/LaunchAgents").join(format!("{}.plist", super::APP_NAME)))
    }
    pub fn location() -> String {
        file().map(|f| f.display().to_string()).unwrap_or_else(|| "~/Library/LaunchAgents".into())
    }
    /// The launch agent's `ProgramArguments`, joined (words with spaces quoted).
    pub fn registered_command() -> Option<String> {
        let text = std::fs::read_to_string(file()?).ok()?;
        let args = text.split("<key>ProgramArguments</key>").nth(1)?.split("</array>").next()?;
        let words: Vec<String> = args
            .split("<string>")
            .skip(1)
            .filter_map(|w| w.split("</string>").next())
            .map(|w| if w.contains(' ') { format!("\"{w}\"") } else { w.to_string() })
            .collect();
        (!words.is_empty()).then(|| words.join(" "))
    }
}

#[cfg(windows)]
mod platform {
    const RUN: &str = r"SOFTWARE\Microsoft\Windows\CurrentVersion\Run";
    pub fn location() -> String {
        format!(r"HKEY_CURRENT_USER\{RUN}")
    }
    /// The Run key's value.
    pub fn registered_command() -> Option<String> {
        windows_registry::CURRENT_USER.open(RUN).ok()?.get_string(super::APP_NAME).ok()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_tray_next_to_vpd_starts_at_login_else_the_daemon_for_that_home() {
        let dir = tempfile::tempdir().unwrap();
        let vpd = dir.path().join("vpd");
        std::fs::write(&vpd, "").unwrap();
        let home = Home::at(dir.path().join("my home"));
        let e = entry_for(&vpd, &home);
        assert_eq!(e, Entry { program: vpd.clone(), args: vec!["daemon".into(), "--home".into(), home.root().display().to_string()] });
        std::fs::write(dir.path().join(TRAY_BINARY), "").unwrap();
        let e = entry_for(&vpd, &home);
        assert_eq!(e.program, dir.path().join(TRAY_BINARY));
        assert_eq!(e.args, vec!["--home".to_string(), home.root().display().to_string()]);
    }

    #[test]
    #[cfg(not(target_os = "macos"))]
    fn a_registered_line_is_recognised_with_its_quotes() {
        let e = Entry { program: PathBuf::from("/opt/my apps/vpd"), args: vec!["daemon".into(), "--home".into(), "/tmp/a home".into()] };
        let registered = std::iter::once(quote("/opt/my apps/vpd")).chain(e.args.iter().map(|a| quote(a))).collect::<Vec<_>>().join(" ");
        assert!(registers(&registered, &e), "{registered}");
        assert!(!registers(&registered.replace("a home", "b home"), &e));
    }

    #[test]
    fn a_command_line_names_its_home() {
        let home = Home::at("/tmp/a home");
        assert!(starts_home(r#"/usr/bin/vpd daemon --home "/tmp/a home""#, &home));
        assert!(!starts_home(r#"/usr/bin/vpd daemon --home "/tmp/a home2""#, &home));
        assert!(!starts_home("/usr/bin/vpd daemon --home /tmp/a", &home));
        // No --home: the default home, which this one is not.
        assert!(!starts_home("/usr/bin/vpd daemon", &home));
        if let Some(d) = Home::default_root() {
            assert!(starts_home("/usr/bin/vpd daemon", &Home::at(d)));
        }
    }

    #[test]
    #[cfg(not(target_os = "macos"))]
    fn words_round_trip_through_quoting() {
        for w in ["plain", "with space", r#"with "quotes""#, r"back\slash"] {
            assert_eq!(split_words(&format!("prog {}", quote(w))), vec!["prog".to_string(), w.to_string()], "{w}");
        }
        assert_eq!(split_words(r#"a "" b"#), vec!["a", "", "b"]);
    }
}

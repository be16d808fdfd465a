//! "Start at login" (SPEC section 3 and 12) through auto-launch: an XDG autostart entry on
//! Linux, a launch agent on macOS, the Run key on Windows. One entry named "Viewport" that
//! starts the tray app when it is installed next to `vpd` (the desktop bundle), else the
//! headless `vpd daemon`. The tray's checkbox and `vpd install` / `uninstall` share it.

use crate::error::{Error, ErrorCode, Result};
use std::path::{Path, PathBuf};

pub const APP_NAME: &str = "Viewport";
/// The tray binary's file name (next to `vpd` in the bundle).
pub const TRAY_BINARY: &str = if cfg!(windows) { "viewport-tray.exe" } else { "viewport-tray" };

/// What starts at login for the `vpd` binary at `vpd_exe`: the tray beside it, if any.
pub fn target_for(vpd_exe: &Path) -> (PathBuf, Vec<String>) {
    let tray = vpd_exe.with_file_name(TRAY_BINARY);
    if tray.is_file() {
        (tray, Vec::new())
    } else {
        (vpd_exe.to_path_buf(), vec!["daemon".to_string()])
    }
}

fn launcher(path: &Path, args: &[String]) -> Result<auto_launch::AutoLaunch> {
    let path = path.to_str().ok_or_else(|| Error::new(ErrorCode::InvalidArgument, format!("{} is not valid UTF-8", path.display())))?;
    auto_launch::AutoLaunchBuilder::new()
        .set_app_name(APP_NAME)
        .set_app_path(path)
        .set_args(args)
        .build()
        .map_err(|e| Error::new(ErrorCode::Io, format!("the login item: {e}")))
}

/// Registers `path args` to start at login (replacing an older entry).
pub fn enable(path: &Path, args: &[String]) -> Result<()> {
    launcher(path, args)?.enable().map_err(|e| Error::new(ErrorCode::Io, format!("registering the login item: {e}; check that ~/.config/autostart is writable")))
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_tray_next_to_vpd_starts_at_login_else_the_daemon() {
        let dir = tempfile::tempdir().unwrap();
        let vpd = dir.path().join("vpd");
        std::fs::write(&vpd, "").unwrap();
        assert_eq!(target_for(&vpd), (vpd.clone(), vec!["daemon".to_string()]));
        std::fs::write(dir.path().join(TRAY_BINARY), "").unwrap();
        assert_eq!(target_for(&vpd), (dir.path().join(TRAY_BINARY), vec![]));
    }
}

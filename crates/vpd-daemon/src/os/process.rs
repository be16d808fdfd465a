//! Processes: what the daemon creates is private, a started daemon outlives the terminal,
//! a daemon that does not answer is stopped, and `vpd daemon` becomes `vpd-daemon`.

use std::process::Command;

/// Everything this process creates from now on is private to its user (umask 077). On
/// Windows files inherit the home's owner-only DACL instead, so there is nothing to set.
pub fn private_by_default() {
    imp::private_by_default()
}

/// `cmd` starts detached: its own session (Unix) or a detached process group without a
/// console (Windows), so it outlives the terminal and ignores its Ctrl-C.
pub fn detach(cmd: &mut Command) {
    imp::detach(cmd)
}

/// Asks process `pid` to stop (SIGTERM), or ends it (Windows has no such request for a
/// process without a window). Returns whether the request was made.
pub fn terminate(pid: u32) -> bool {
    imp::terminate(pid)
}

/// Becomes `cmd` (exec on Unix); on Windows runs it and exits with its status. Returns only
/// when it could not be started.
pub fn replace_with(cmd: Command) -> std::io::Error {
    imp::replace_with(cmd)
}

#[cfg(unix)]
mod imp {
    use super::*;
    use std::os::unix::process::CommandExt;

    pub fn private_by_default() {
        // SAFETY: umask cannot fail.
        unsafe { libc::umask(0o077) };
    }

    pub fn detach(cmd: &mut Command) {
        // SAFETY: setsid is async-signal-safe, the only call between fork and exec.
        unsafe {
            cmd.pre_exec(|| {
                libc::setsid();
                Ok(())
            });
        }
    }

    pub fn terminate(pid: u32) -> bool {
        // SAFETY: a signal to a process id.
        unsafe { libc::kill(pid as i32, libc::SIGTERM) == 0 }
    }

    pub fn replace_with(mut cmd: Command) -> std::io::Error {
        cmd.exec()
    }
}

#[cfg(windows)]
mod imp {
    use super::*;
    use std::os::windows::process::CommandExt;
    use windows_sys::Win32::Foundation::CloseHandle;
    use windows_sys::Win32::System::Threading::{
        OpenProcess, TerminateProcess, CREATE_NEW_PROCESS_GROUP, CREATE_NO_WINDOW, DETACHED_PROCESS, PROCESS_TERMINATE,
    };

    pub fn private_by_default() {}

    pub fn detach(cmd: &mut Command) {
        cmd.creation_flags(DETACHED_PROCESS | CREATE_NEW_PROCESS_GROUP | CREATE_NO_WINDOW);
    }

    pub fn terminate(pid: u32) -> bool {
        // SAFETY: the handle opened here is closed here.
        unsafe {
            let h = OpenProcess(PROCESS_TERMINATE, 0, pid);
            if h.is_null() {
                return false;
            }
            let ok = TerminateProcess(h, 1) != 0;
            CloseHandle(h);
            ok
        }
    }

    pub fn replace_with(mut cmd: Command) -> std::io::Error {
        match cmd.status() {
            Ok(s) => std::process::exit(s.code().unwrap_or(1)),
            Err(e) => e,
        }
    }
}

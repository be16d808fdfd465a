//! Questions on the terminal. They are asked on `/dev/tty`, so they work inside the shell
//! hook and when stdout is piped; with no terminal there is no question and the caller says
//! what to run instead.

/// Asks `question`; `default` is the answer to a bare Enter. `None` when there is no
/// terminal to ask on.
pub fn ask(question: &str, default: bool) -> Option<bool> {
    vpd_daemon::os::terminal::ask(question, default)
}

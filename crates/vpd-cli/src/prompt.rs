//! Questions on the terminal. They are asked on `/dev/tty`, so they work inside the shell
//! hook and when stdout is piped; with no terminal there is no question and the caller says
//! what to run instead.

use std::io::{BufRead, BufReader, IsTerminal, Write};

/// Asks `question`; `default` is the answer to a bare Enter. `None` when there is no
/// terminal to ask on.
pub fn ask(question: &str, default: bool) -> Option<bool> {
    if !std::io::stdin().is_terminal() {
        return None;
    }
    let file = std::fs::OpenOptions::new().read(true).write(true).open("/dev/tty").ok()?;
    // Whatever was typed (or pasted) before the question was asked is not its answer: a
    // pasted Enter must not bind a fresh clone.
    // SAFETY: tcflush on a descriptor we own; it only discards pending input.
    unsafe { libc::tcflush(std::os::fd::AsRawFd::as_raw_fd(&file), libc::TCIFLUSH) };
    let mut w = file.try_clone().ok()?;
    let suffix = if default { "[Y/n]" } else { "[y/N]" };
    write!(w, "{question} {suffix} ").ok()?;
    w.flush().ok()?;
    let mut line = String::new();
    BufReader::new(file).read_line(&mut line).ok()?;
    Some(match line.trim().to_ascii_lowercase().as_str() {
        "" => default,
        "y" | "yes" => true,
        _ => false,
    })
}

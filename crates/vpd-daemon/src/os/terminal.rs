//! The terminal `vpd run` and the questions use: its size and the changes of it, raw mode
//! (keys go to the command as typed), and a question asked on the terminal itself (so it
//! works inside the shell hook and when stdout is piped), with what was typed ahead thrown
//! away. termios and SIGWINCH on Unix; console modes (with VT input) and the screen buffer,
//! polled for size changes, on Windows.

/// The terminal's size on stdout: `(columns, rows)`.
pub fn size() -> Option<(u16, u16)> {
    imp::size()
}

/// Both stdin and stdout are the terminal (a person at a console, not a pipe or a file).
pub fn is_console() -> bool {
    use std::io::IsTerminal;
    std::io::stdin().is_terminal() && std::io::stdout().is_terminal()
}

/// Raw mode on stdin until dropped (nothing when stdin is not a terminal); on Windows the
/// console also reads escape sequences on stdout (VT processing), as a Unix terminal does.
pub struct RawMode(Option<imp::Saved>);

impl RawMode {
    pub fn enter() -> RawMode {
        RawMode(imp::enter_raw())
    }
}

impl Drop for RawMode {
    fn drop(&mut self) {
        if let Some(s) = self.0.take() {
            imp::restore(s);
        }
    }
}

/// Calls `f` whenever the terminal's size changes, from a thread of its own, for as long as
/// the process runs.
pub fn on_resize(f: impl FnMut() + Send + 'static) {
    imp::on_resize(f)
}

/// Asks `question` on the terminal; `default` is a bare Enter's answer. `None` when there is
/// no terminal to ask on.
pub fn ask(question: &str, default: bool) -> Option<bool> {
    use std::io::{BufRead, BufReader, IsTerminal, Write};
    if !std::io::stdin().is_terminal() {
        return None;
    }
    let (input, mut output) = imp::open_terminal()?;
    // What was typed (or pasted) before the question was asked is not its answer: a pasted
    // Enter must not bind a fresh clone.
    imp::discard_typed_ahead(&input);
    let suffix = if default { "[Y/n]" } else { "[y/N]" };
    write!(output, "{question} {suffix} ").ok()?;
    output.flush().ok()?;
    let mut line = String::new();
    BufReader::new(input).read_line(&mut line).ok()?;
    Some(match line.trim().to_ascii_lowercase().as_str() {
        "" => default,
        "y" | "yes" => true,
        _ => false,
    })
}

#[cfg(unix)]
mod imp {
    pub type Saved = libc::termios;

    pub fn size() -> Option<(u16, u16)> {
        let mut ws: libc::winsize = unsafe { std::mem::zeroed() };
        // SAFETY: TIOCGWINSZ fills `ws`.
        (unsafe { libc::ioctl(libc::STDOUT_FILENO, libc::TIOCGWINSZ, &mut ws) } == 0 && ws.ws_col > 0).then_some((ws.ws_col, ws.ws_row))
    }

    pub fn enter_raw() -> Option<Saved> {
        use std::io::IsTerminal;
        if !std::io::stdin().is_terminal() {
            return None;
        }
        let mut t: libc::termios = unsafe { std::mem::zeroed() };
        // SAFETY: termios calls on stdin with a struct we own.
        unsafe {
            if libc::tcgetattr(libc::STDIN_FILENO, &mut t) != 0 {
                return None;
            }
            let saved = t;
            libc::cfmakeraw(&mut t);
            libc::tcsetattr(libc::STDIN_FILENO, libc::TCSANOW, &t);
            Some(saved)
        }
    }

    pub fn restore(s: Saved) {
        // SAFETY: restores what tcgetattr returned.
        unsafe { libc::tcsetattr(libc::STDIN_FILENO, libc::TCSANOW, &s) };
    }

    pub fn on_resize(mut f: impl FnMut() + Send + 'static) {
        if let Ok(mut signals) = signal_hook::iterator::Signals::new([libc::SIGWINCH]) {
            std::thread::spawn(move || {
                for _ in signals.forever() {
                    f();
                }
            });
        }
    }

    pub fn open_terminal() -> Option<(std::fs::File, std::fs::File)> {
        let file = std::fs::OpenOptions::new().read(true).write(true).open("/dev/tty").ok()?;
        let out = file.try_clone().ok()?;
        Some((file, out))
    }

    pub fn discard_typed_ahead(input: &std::fs::File) {
        // SAFETY: tcflush on a descriptor we own; it only discards pending input.
        unsafe { libc::tcflush(std::os::fd::AsRawFd::as_raw_fd(input), libc::TCIFLUSH) };
    }
}

#[cfg(windows)]
mod imp {
    use std::os::windows::io::AsRawHandle;
    use windows_sys::Win32::System::Console::{
        FlushConsoleInputBuffer, GetConsoleMode, GetConsoleScreenBufferInfo, GetStdHandle, SetConsoleMode, CONSOLE_MODE, CONSOLE_SCREEN_BUFFER_INFO,
        ENABLE_ECHO_INPUT, ENABLE_LINE_INPUT, ENABLE_PROCESSED_INPUT, ENABLE_VIRTUAL_TERMINAL_INPUT, ENABLE_VIRTUAL_TERMINAL_PROCESSING,
        STD_INPUT_HANDLE, STD_OUTPUT_HANDLE,
    };

    /// The input's mode, and the output's when it is a console.
    pub type Saved = (CONSOLE_MODE, Option<CONSOLE_MODE>);

    pub fn size() -> Option<(u16, u16)> {
        let mut info: CONSOLE_SCREEN_BUFFER_INFO = unsafe { std::mem::zeroed() };
        // SAFETY: fills `info` for the process's stdout console.
        if unsafe { GetConsoleScreenBufferInfo(GetStdHandle(STD_OUTPUT_HANDLE), &mut info) } == 0 {
            return None;
        }
        let w = info.srWindow;
        let (cols, rows) = ((w.Right - w.Left + 1) as u16, (w.Bottom - w.Top + 1) as u16);
        (cols > 0).then_some((cols, rows))
    }

    pub fn enter_raw() -> Option<Saved> {
        let mut mode: CONSOLE_MODE = 0;
        // SAFETY: console mode calls on the process's stdin handle.
        unsafe {
            let h = GetStdHandle(STD_INPUT_HANDLE);
            if GetConsoleMode(h, &mut mode) == 0 {
                return None;
            }
            let raw = (mode & !(ENABLE_ECHO_INPUT | ENABLE_LINE_INPUT | ENABLE_PROCESSED_INPUT)) | ENABLE_VIRTUAL_TERMINAL_INPUT;
            SetConsoleMode(h, raw);
            let out = GetStdHandle(STD_OUTPUT_HANDLE);
            let mut out_mode: CONSOLE_MODE = 0;
            let saved_out = (GetConsoleMode(out, &mut out_mode) != 0).then(|| {
                SetConsoleMode(out, out_mode | ENABLE_VIRTUAL_TERMINAL_PROCESSING);
                out_mode
            });
            Some((mode, saved_out))
        }
    }

    pub fn restore(s: Saved) {
        // SAFETY: restores the modes GetConsoleMode returned.
        unsafe {
            SetConsoleMode(GetStdHandle(STD_INPUT_HANDLE), s.0);
            if let Some(out) = s.1 {
                SetConsoleMode(GetStdHandle(STD_OUTPUT_HANDLE), out);
            }
        }
    }

    pub fn on_resize(mut f: impl FnMut() + Send + 'static) {
        // The console reports size changes only as input records, which the command reads:
        // look every quarter second instead.
        std::thread::spawn(move || {
            let mut last = size();
            loop {
                std::thread::sleep(std::time::Duration::from_millis(250));
                let now = size();
                if now != last {
                    last = now;
                    f();
                }
            }
        });
    }

    pub fn open_terminal() -> Option<(std::fs::File, std::fs::File)> {
        let input = std::fs::OpenOptions::new().read(true).write(true).open("CONIN$").ok()?;
        let output = std::fs::OpenOptions::new().read(true).write(true).open("CONOUT$").ok()?;
        Some((input, output))
    }

    pub fn discard_typed_ahead(input: &std::fs::File) {
        // SAFETY: a console input handle we own.
        unsafe { FlushConsoleInputBuffer(input.as_raw_handle().cast()) };
    }
}

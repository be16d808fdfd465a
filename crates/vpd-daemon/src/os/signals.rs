//! A request to stop the daemon from the OS: SIGTERM or SIGINT on Unix; Ctrl-C, Ctrl-Break,
//! the console closing, logoff or shutdown on Windows (what a service manager sends).

/// Returns when a stop is requested, naming it.
pub async fn stop_requested() -> &'static str {
    imp::stop_requested().await
}

#[cfg(unix)]
mod imp {
    use tokio::signal::unix::{signal, SignalKind};

    pub async fn stop_requested() -> &'static str {
        let (Ok(mut term), Ok(mut int)) = (signal(SignalKind::terminate()), signal(SignalKind::interrupt())) else {
            return std::future::pending().await;
        };
        tokio::select! {
            _ = term.recv() => "SIGTERM",
            _ = int.recv() => "SIGINT",
        }
    }
}

#[cfg(windows)]
mod imp {
    use tokio::signal::windows::{ctrl_break, ctrl_c, ctrl_close, ctrl_logoff, ctrl_shutdown};

    pub async fn stop_requested() -> &'static str {
        let (Ok(mut c), Ok(mut b), Ok(mut close), Ok(mut logoff), Ok(mut shutdown)) =
            (ctrl_c(), ctrl_break(), ctrl_close(), ctrl_logoff(), ctrl_shutdown())
        else {
            return std::future::pending().await;
        };
        tokio::select! {
            _ = c.recv() => "Ctrl-C",
            _ = b.recv() => "Ctrl-Break",
            _ = close.recv() => "the console closed",
            _ = logoff.recv() => "logoff",
            _ = shutdown.recv() => "shutdown",
        }
    }
}

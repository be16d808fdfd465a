//! The tray's main-thread loop (issue 12 item 3: the tray event loop, one per OS). The thread
//! that owns the tray icon waits for the next menu to show, and looks again every `tick`
//! while the icon could not be shown yet.
//!
//! - Linux: the icon lives on D-Bus (tray-icon's ksni backend runs its own thread), so a
//!   plain channel is the whole loop and no GUI toolkit is loaded (the tray stays small).
//! - Windows and macOS: the icon needs the OS's event loop on this thread (Win32 messages;
//!   the NSApplication run loop, on the main thread), so tao — the event loop Tauri itself
//!   uses — runs it, and the channel's messages arrive as its user events.

use std::sync::mpsc;
use std::time::Duration;

/// Runs until `step` returns false, then calls `done` and exits the process. `step` gets
/// `Some(message)` for each message, `None` when `tick` passed without one (or the channel
/// closed: it then returns false).
pub fn run<T: Send + 'static>(
    rx: mpsc::Receiver<T>,
    tick: Duration,
    step: impl FnMut(Option<T>) -> bool + 'static,
    done: impl FnOnce() + 'static,
) -> ! {
    imp::run(rx, tick, step, done)
}

#[cfg(target_os = "linux")]
mod imp {
    use super::*;

    pub fn run<T: Send + 'static>(rx: mpsc::Receiver<T>, tick: Duration, mut step: impl FnMut(Option<T>) -> bool, done: impl FnOnce()) -> ! {
        loop {
            let go = match rx.recv_timeout(tick) {
                Ok(m) => step(Some(m)),
                Err(mpsc::RecvTimeoutError::Timeout) => step(None),
                Err(mpsc::RecvTimeoutError::Disconnected) => false,
            };
            if !go {
                done();
                std::process::exit(0);
            }
        }
    }
}

#[cfg(not(target_os = "linux"))]
mod imp {
    use super::*;
    use tao::event::{Event, StartCause};
    use tao::event_loop::{ControlFlow, EventLoopBuilder};

    pub fn run<T: Send + 'static>(
        rx: mpsc::Receiver<T>,
        tick: Duration,
        mut step: impl FnMut(Option<T>) -> bool + 'static,
        done: impl FnOnce() + 'static,
    ) -> ! {
        let event_loop = EventLoopBuilder::<Option<T>>::with_user_event().build();
        let proxy = event_loop.create_proxy();
        std::thread::spawn(move || {
            for m in rx {
                if proxy.send_event(Some(m)).is_err() {
                    return;
                }
            }
            let _ = proxy.send_event(None);
        });
        let mut done = Some(done);
        event_loop.run(move |event, _, flow| {
            *flow = ControlFlow::WaitUntil(std::time::Instant::now() + tick);
            let go = match event {
                Event::UserEvent(Some(m)) => step(Some(m)),
                Event::UserEvent(None) => false,
                Event::NewEvents(StartCause::ResumeTimeReached { .. }) => step(None),
                _ => true,
            };
            if !go {
                if let Some(d) = done.take() {
                    d();
                }
                *flow = ControlFlow::Exit;
            }
        })
    }
}

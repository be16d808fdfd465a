//! `vpd ui`: opens the daemon's web UI through a one-time login link.

use crate::output::Out;
use serde_json::json;
use std::process::ExitCode;
use std::time::Duration;
use vpd_daemon::api::{client, protocol};
use vpd_daemon::{Error, Home};

pub fn open(home: &Home, no_browser: bool, out: &Out) -> Result<ExitCode, Error> {
    client::ensure_daemon(home, &crate::install::exe()?)?;
    // The UI starts right after the local API; give it a moment on a fresh daemon.
    let mut link = None;
    for attempt in 0..20 {
        match client::ask(home, protocol::UiLinkParams::default(), Duration::from_secs(5)) {
            Ok(l) => {
                link = Some(l);
                break;
            }
            Err(e) if e.code == vpd_daemon::ErrorCode::UiStarting && attempt < 19 => std::thread::sleep(Duration::from_millis(50)),
            Err(e) => return Err(e),
        }
    }
    let link = link.expect("the loop returns or sets it");
    let opened = if no_browser {
        false
    } else {
        match webbrowser::open(&link.url) {
            Ok(()) => true,
            Err(e) => {
                if !out.json {
                    eprintln!("Could not open a browser ({e}); open this link yourself (it works once, for two minutes):");
                }
                false
            }
        }
    };
    out.emit(&json!({"url": link.url, "port": link.port, "opened": opened}), || {
        if opened {
            format!("Opened the Viewport UI in your browser (http://127.0.0.1:{}/).", link.port)
        } else {
            link.url.clone()
        }
    });
    Ok(ExitCode::SUCCESS)
}

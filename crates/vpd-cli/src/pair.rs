//! `vpd pair` and `vpd unpair`: the daemon does the work; this shows the code, the URL, a QR
//! code and a spinner, opens the browser, asks before replacing a pairing, and cancels
//! cleanly on Ctrl-C.

use crate::install::exe;
use crate::output::Out;
use crate::prompt;
use serde_json::json;
use std::io::IsTerminal;
use std::process::ExitCode;
use std::time::Duration;
use vpd_daemon::api::client;
use vpd_daemon::api::protocol::{PairEvent, PairParams, UnpairParams, Unpaired};
use vpd_daemon::{config, Error, Home};

pub fn pair(home: &Home, params: PairParams, no_browser: bool, out: &Out) -> Result<ExitCode, Error> {
    match run_pair(home, params, no_browser, out) {
        // With --json every outcome is an event line, including errors before the code.
        Err(e) if out.json => {
            out.json(&json!({"event": "error", "error": {"code": e.code, "message": e.message}}));
            Ok(ExitCode::from(1))
        }
        r => r,
    }
}

fn run_pair(home: &Home, mut params: PairParams, no_browser: bool, out: &Out) -> Result<ExitCode, Error> {
    // Ask before replacing an existing pairing with the same org, when we can tell up front.
    if let (Some(org), false) = (&params.org, params.force) {
        if let Ok(cfg) = config::read(home) {
            if let Ok(p) = cfg.select(org) {
                if !out.json {
                    let q = format!("This machine is already paired with {} ({}). Pair again and replace it?", p.workspace_name, p.workspace_id);
                    match prompt::ask(&q, false) {
                        Some(true) => params.force = true,
                        Some(false) => return Err(Error::new(vpd_daemon::ErrorCode::Cancelled, "kept the existing pairing")),
                        None => {}
                    }
                }
            }
        }
    }
    client::ensure_daemon(home, &exe()?)?;

    let json = out.json;
    let _ = ctrlc::set_handler(move || {
        if json {
            println!("{}", json!({"event": "error", "error": {"code": "cancelled", "message": "cancelled"}}));
        } else {
            eprintln!("\nPairing cancelled; nothing was stored.");
        }
        std::process::exit(130);
    });

    let spinner = indicatif::ProgressBar::new_spinner();
    spinner.set_draw_target(if out.json { indicatif::ProgressDrawTarget::hidden() } else { indicatif::ProgressDrawTarget::stderr() });
    let result = client::pair(home, params, |event| match event {
        PairEvent::Code { code, url, expires_at, fingerprint, server_url } => {
            if out.json {
                out.json(&json!({"event": "code", "code": code, "url": url, "expires_at": expires_at, "fingerprint": fingerprint, "server_url": server_url}));
            } else {
                eprintln!("Pairing with {server_url}");
                eprintln!("  Code:  {code}");
                eprintln!("  Open:  {url}");
                eprintln!("  Key:   {fingerprint}");
                if std::io::stderr().is_terminal() {
                    if let Ok(qr) = qrcode::QrCode::new(url.as_bytes()) {
                        eprintln!("{}", qr.render::<qrcode::render::unicode::Dense1x2>().quiet_zone(true).build());
                    }
                }
                let until =
                    expires_at.parse::<jiff::Timestamp>().ok().map(|t| t.to_zoned(jiff::tz::TimeZone::system()).strftime("%H:%M:%S").to_string());
                spinner.set_message(format!(
                    "Waiting for approval in the browser (code expires {}; Ctrl-C cancels)",
                    until.unwrap_or_else(|| expires_at.clone())
                ));
                spinner.enable_steady_tick(Duration::from_millis(100));
                if !std::io::stderr().is_terminal() {
                    eprintln!("Waiting for approval in the browser (Ctrl-C cancels)…");
                }
            }
            let (openable, note) = approval_link(url, server_url);
            if let (Some(note), false) = (&note, out.json) {
                spinner.suspend(|| eprintln!("{note}"));
            }
            if !no_browser && openable {
                if let Err(e) = webbrowser::open(url) {
                    if !out.json {
                        spinner.suspend(|| eprintln!("Could not open a browser ({e}); open the URL above yourself."));
                    }
                }
            }
            None
        }
        PairEvent::ConfirmReplace { workspace_id, workspace_name, old_server, new_server } => {
            if out.json {
                out.json(&json!({"event": "confirm_replace", "workspace_id": workspace_id, "workspace_name": workspace_name,
                    "old_server": old_server, "new_server": new_server}));
                return None;
            }
            spinner.suspend(|| {
                prompt::ask(
                    &format!(
                        "This machine is already paired with {workspace_name} ({workspace_id}) on {old_server}. Replace that pairing with the one just approved on {new_server}?"
                    ),
                    false,
                )
            })
        }
    });
    spinner.finish_and_clear();
    match result {
        Ok(p) => {
            if out.json {
                let mut v = serde_json::to_value(&p).expect("serializable");
                v["event"] = json!("paired");
                out.json(&v);
            } else {
                println!("Paired with {} ({}){}", p.workspace_name, p.workspace_id, if p.replaced { ", replacing the previous pairing" } else { "" });
                println!(
                    "  machine id {} · relay {} · credentials in {}",
                    p.machine_id,
                    p.relay_endpoint,
                    match p.credential_store {
                        vpd_daemon::states::StoreKind::Keyring => "the OS keyring",
                        _ => "config.json (0600)",
                    }
                );
                println!("Nothing streams yet. Bind a directory: vpd bind DIR --org {}", p.workspace_slug);
            }
            Ok(ExitCode::SUCCESS)
        }
        Err(e) => Err(e),
    }
}

/// Whether the approval link the server sent may be opened in the browser, and what to say
/// about it first: only `http`/`https` links are opened (a server could send `file://` or a
/// custom scheme), and a link to another host than the server's is pointed out.
fn approval_link(url: &str, server_url: &str) -> (bool, Option<String>) {
    let host = |u: &url::Url| format!("{}{}", u.host_str().unwrap_or(""), u.port().map(|p| format!(":{p}")).unwrap_or_default());
    let Ok(link) = url::Url::parse(url) else {
        return (false, Some("The server sent an approval link that is not a URL; it was not opened.".into()));
    };
    if !matches!(link.scheme(), "http" | "https") {
        return (false, Some(format!("Not opening {url}: only http and https links are opened, and the server sent a {} link.", link.scheme())));
    }
    match url::Url::parse(server_url) {
        Ok(server) if host(&server) != host(&link) => {
            (true, Some(format!("Note: the approval page is on {}, not on the server you are pairing with ({}).", host(&link), host(&server))))
        }
        _ => (true, None),
    }
}

pub fn unpair(home: &Home, org: &str, out: &Out) -> Result<ExitCode, Error> {
    // Fail fast, without starting a daemon, when nothing matches.
    config::read(home)?.select(org)?;
    client::ensure_daemon(home, &exe()?)?;
    let r: Unpaired = client::ask(home, UnpairParams { org: org.to_string(), keep_bindings: false }, Duration::from_secs(60))?;
    out.emit(&r, || {
        let mut s = format!("Unpaired {} ({}): credentials, key and bindings removed.", r.workspace_name, r.workspace_id);
        for d in &r.unbound {
            s.push_str(&format!("\n  unbound {}", crate::output::show(std::path::Path::new(d))));
        }
        for w in &r.warnings {
            s.push_str(&format!("\nwarning: {w}"));
        }
        match (&r.server_notified, &r.server_error) {
            (true, _) => s.push_str("\nThe platform was told."),
            (false, Some(e)) => {
                s.push_str(&format!("\nThe platform could not be told ({e}); an admin can revoke this machine on its Machines page."))
            }
            (false, None) => {}
        }
        s
    });
    Ok(ExitCode::SUCCESS)
}

#[cfg(test)]
mod tests {
    use super::approval_link;

    #[test]
    fn only_web_links_are_opened_and_another_host_is_pointed_out() {
        assert_eq!(approval_link("https://v.example/pair?code=X", "https://v.example"), (true, None));
        assert_eq!(approval_link("http://127.0.0.1:8080/pair", "http://127.0.0.1:8080/"), (true, None));
        let (open, note) = approval_link("file:///etc/passwd", "https://v.example");
        assert!(!open && note.unwrap().contains("only http and https"));
        let (open, _) = approval_link("javascript:alert(1)", "https://v.example");
        assert!(!open);
        let (open, note) = approval_link("https://evil.example/pair", "https://v.example");
        assert!(open && note.unwrap().contains("evil.example"));
        assert!(!approval_link("not a url", "https://v.example").0);
    }
}

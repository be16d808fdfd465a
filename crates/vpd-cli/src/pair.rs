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

/// Moving a company's bindings to its new server: `vpd pair --move-bindings-from OLD`.
pub struct Move {
    pub from: String,
    pub yes: bool,
}

pub fn pair(home: &Home, params: PairParams, no_browser: bool, moving: Option<Move>, resume: bool, out: &Out) -> Result<ExitCode, Error> {
    match run_pair(home, params, no_browser, moving, resume, out) {
        // With --json every outcome is an event line, including errors before the code.
        Err(e) if out.json => {
            out.json(&json!({"event": "error", "error": {"code": e.code, "message": e.message}}));
            Ok(ExitCode::from(1))
        }
        r => r,
    }
}

fn run_pair(home: &Home, mut params: PairParams, no_browser: bool, moving: Option<Move>, resume: bool, out: &Out) -> Result<ExitCode, Error> {
    let old_origin = match &moving {
        Some(m) => Some(
            vpd_core::origin::server_origin(&m.from)
                .map_err(|e| Error::new(vpd_daemon::ErrorCode::InvalidArgument, format!("--move-bindings-from: {e}")))?,
        ),
        None => None,
    };
    // Ask before replacing an existing pairing with the same org on the same server (SPEC
    // A1: another server's pairing is never replaced), when we can tell up front.
    if let (Some(org), false) = (&params.org, params.force) {
        if let Ok(cfg) = config::read(home) {
            let target = params.server.clone().or(cfg.daemon.default_server_url.clone()).unwrap_or_else(|| config::HOSTED_SERVER.to_string());
            let origin = vpd_core::origin::server_origin(&target).ok();
            if let Some(p) = origin.as_deref().and_then(|o| cfg.select_on(o, org)) {
                if !out.json {
                    let q = format!(
                        "This machine is already paired with {} ({}) on {}. Pair again and replace it?",
                        p.workspace_name, p.workspace_id, p.server
                    );
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
            let moved = match (&moving, &old_origin) {
                (Some(m), Some(old)) => Some(move_bindings(home, &p, old, m.yes, out)?),
                _ => None,
            };
            // The pairing is made; a failure here is a warning, not a failed pairing.
            let (resumed, waiting) = resume_bindings(home, &p, resume, out).unwrap_or_else(|e| {
                if !out.json {
                    eprintln!("warning: could not resume the waiting directory bindings: {}", e.message);
                }
                (Vec::new(), Vec::new())
            });
            if out.json {
                let mut v = serde_json::to_value(&p).expect("serializable");
                v["event"] = json!("paired");
                if let Some(moved) = &moved {
                    v["movedBindings"] = json!(moved);
                }
                v["resumedBindings"] = json!(resumed);
                v["waitingBindings"] = json!(waiting);
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

/// SPEC A3: bindings kept from an earlier pairing with this org on this server resume only
/// after a yes — `--resume-bindings`, or the question on a terminal. Returns the directories
/// resumed and those left waiting.
fn resume_bindings(home: &Home, p: &vpd_daemon::api::protocol::Paired, yes: bool, out: &Out) -> Result<(Vec<String>, Vec<String>), Error> {
    let waiting = vpd_daemon::binding::waiting_bindings(home, &p.pairing_id)?;
    if waiting.is_empty() {
        return Ok((Vec::new(), Vec::new()));
    }
    let n = waiting.len();
    let q = format!("Resume {n} directory binding{} of {}?", if n == 1 { "" } else { "s" }, p.workspace_name);
    let go = yes || (!out.json && prompt::ask(&q, false) == Some(true));
    let shown = |v: &[std::path::PathBuf]| v.iter().map(|d| d.display().to_string()).collect::<Vec<_>>();
    if !go {
        if !out.json {
            println!("{n} directory binding(s) of {} stay inert (nothing streams from them); `vpd bind DIR` resumes one:", p.workspace_name);
            for d in &waiting {
                println!("  waiting {}", crate::output::show(d));
            }
        }
        return Ok((Vec::new(), shown(&waiting)));
    }
    let resumed = vpd_daemon::binding::resume_bindings(home, &p.pairing_id)?;
    if !out.json {
        println!("Resumed {} directory binding(s) of {}: new sessions there stream.", resumed.len(), p.workspace_name);
    }
    Ok((shown(&resumed), Vec::new()))
}

/// Moves the bindings made for the same org on `old_origin` to the new pairing `p`, after a
/// confirmation naming both servers (`--yes` for scripts). Returns the directories moved.
fn move_bindings(home: &Home, p: &vpd_daemon::api::protocol::Paired, old_origin: &str, yes: bool, out: &Out) -> Result<Vec<String>, Error> {
    let old = vpd_core::origin::pairing_id(old_origin, &p.workspace_id);
    if old == p.pairing_id {
        return Err(Error::new(vpd_daemon::ErrorCode::InvalidArgument, "--move-bindings-from names the server just paired with; nothing to move"));
    }
    let n = vpd_daemon::records::load_directories(home)?.bindings.iter().filter(|b| b.pairing_id.as_deref() == Some(old.as_str())).count();
    if n == 0 {
        if !out.json {
            println!("No directory of {} is bound on {old_origin}; nothing to move.", p.workspace_name);
        }
        return Ok(Vec::new());
    }
    let q = format!(
        "Move {n} directory binding(s) of {} from {old_origin} to {}? Sessions there will stream to the new server.",
        p.workspace_name, p.server
    );
    let go = yes || (!out.json && prompt::ask(&q, false) == Some(true));
    if !go {
        return Err(Error::new(
            vpd_daemon::ErrorCode::Cancelled,
            format!("paired, but the bindings stay with {old_origin} (pass --yes to move them without asking)"),
        ));
    }
    let moved = vpd_daemon::binding::move_bindings(home, &old, &p.pairing_id)?;
    if !out.json {
        println!("Moved {} binding(s) from {old_origin} to {}.", moved.len(), p.server);
    }
    Ok(moved.iter().map(|d| d.display().to_string()).collect())
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

pub fn rename(home: &Home, org: &str, name: String, out: &Out) -> Result<ExitCode, Error> {
    config::read(home)?.select(org)?;
    client::ensure_daemon(home, &exe()?)?;
    let params = vpd_daemon::api::protocol::RenameParams { org: Some(org.to_string()), name };
    let r: vpd_daemon::api::protocol::Renamed = client::ask(home, params, Duration::from_secs(30))?;
    out.emit(&r, || format!("This machine is now \"{}\" in {} on {} (was \"{}\").", r.name, r.workspace_name, r.server, r.previous));
    Ok(ExitCode::SUCCESS)
}

pub fn unpair(home: &Home, org: &str, forget_bindings: bool, out: &Out) -> Result<ExitCode, Error> {
    // Fail fast, without starting a daemon, when nothing matches.
    config::read(home)?.select(org)?;
    client::ensure_daemon(home, &exe()?)?;
    let params = UnpairParams { org: org.to_string(), keep_bindings: false, forget_bindings };
    let r: Unpaired = client::ask(home, params, Duration::from_secs(60))?;
    out.emit(&r, || {
        let mut s = format!(
            "Unpaired {} ({}) on {}: credentials and key removed{}.",
            r.workspace_name,
            r.workspace_id,
            r.server,
            if forget_bindings { ", bindings removed" } else { "" }
        );
        for d in &r.unbound {
            s.push_str(&format!("\n  unbound {}", crate::output::show(std::path::Path::new(d))));
        }
        if !r.waiting.is_empty() {
            s.push_str(&format!(
                "\n{} directory binding(s) stay, inert, waiting for {} on {}: pairing again asks to resume them (`vpd unbind DIR` removes one):",
                r.waiting.len(),
                r.workspace_name,
                r.server
            ));
            for d in &r.waiting {
                s.push_str(&format!("\n  waiting {}", crate::output::show(std::path::Path::new(d))));
            }
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

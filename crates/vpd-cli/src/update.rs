//! `vpd update [--check] [--rollback] [--source URL --trust-key FILE]` (issue 13, SPEC A10).
//! The checks and the swap are `vpd_daemon::update`; this is the command a person runs: the
//! fingerprint question, progress while downloading, the daemon restarted into the new
//! version and its pairings seen connected again, and what happened, in one sentence.

use crate::install::stop;
use crate::output::Out;
use crate::prompt;
use serde_json::json;
use std::io::{IsTerminal, Write};
use std::process::ExitCode;
use std::time::{Duration, Instant};
use vpd_core::release::{Offer, Version};
use vpd_daemon::update::{self, Install, Trust};
use vpd_daemon::{Error, ErrorCode, Home};

pub struct Args {
    pub check: bool,
    pub rollback: bool,
    pub source: Option<String>,
    pub trust_key: Option<std::path::PathBuf>,
    pub yes: bool,
}

fn this_version() -> Version {
    vpd_daemon::VERSION.parse().unwrap_or(Version(0, 0, 0))
}

fn running_exe() -> Result<std::path::PathBuf, Error> {
    std::env::current_exe().map_err(|e| Error::io("finding the vpd binary", e))
}

pub fn update(home: &Home, a: Args, out: &Out) -> Result<ExitCode, Error> {
    let install = update::find_install(&running_exe()?);
    let installed = match &install {
        Install::Versioned { current: Some(v), .. } => *v,
        _ => this_version(),
    };
    if let Some(source) = &a.source {
        let key_file = a
            .trust_key
            .as_ref()
            .ok_or_else(|| Error::new(ErrorCode::InvalidArgument, "--source needs --trust-key FILE (the source's release.pub)"))?;
        set_trust(home, source, key_file, a.yes, installed, out)?;
    }
    if a.rollback {
        return rollback(home, a.yes, out);
    }
    if !a.check {
        // A package's files, another user's, a build directory: said before anything is fetched.
        update::updatable(&install)?;
    }
    let trust = update::trust(home)?;
    if !out.json {
        eprintln!("Checking {} for a release newer than {installed}…", trust.source);
    }
    let found = update::find(&trust, installed)?;
    let available = match &found.offer {
        Offer::Newer(r) => Some(r.version),
        Offer::UpToDate(_) => None,
    };
    if a.check || available.is_none() {
        let can = update::updatable(&install).err().map(|e| e.message);
        out.emit(
            &json!({"installed": installed.to_string(), "available": available.map(|v| v.to_string()), "updateAvailable": available.is_some(),
                    "source": trust.source.as_str(), "customSource": trust.custom, "notUpdatable": can}),
            || match available {
                Some(v) => {
                    let mut s = format!("vpd {v} is available (installed: {installed}) from {}. Run `vpd update` to install it.", trust.source);
                    if let Some(why) = &can {
                        s.push_str(&format!("\nNote: {why}."));
                    }
                    s
                }
                None => format!("vpd {installed} is up to date ({}).", trust.source),
            },
        );
        return Ok(ExitCode::SUCCESS);
    }
    let (root, _) = update::updatable(&install)?;
    apply(home, &trust, &root, &found, installed, out)
}

/// Shows the key's fingerprint and the source, and records them once the person says yes and
/// the source answered with a release signed by that key (a mistyped URL or the wrong key
/// replaces nothing).
fn set_trust(home: &Home, source: &str, key_file: &std::path::Path, yes: bool, installed: Version, out: &Out) -> Result<(), Error> {
    let url = update::check_source(source)?;
    let key = std::fs::read_to_string(key_file)
        .map_err(|e| Error::new(ErrorCode::InvalidArgument, format!("cannot read the key {}: {e}", key_file.display())))?;
    let fp = vpd_core::release::key_fingerprint(&key).map_err(|e| Error::new(ErrorCode::InvalidArgument, format!("{}: {e}", key_file.display())))?;
    let question = format!(
        "Trust releases from {url} signed by the key in {}?\n  {fp}\nCompare this with what the release's publisher gave you: whoever holds this key can make this machine run new code.\nTrust it?",
        key_file.display()
    );
    if !yes {
        if !out.json {
            // Shown even when there is no terminal to answer on.
            eprintln!("Key {}: {fp}", key_file.display());
        }
        match prompt::ask(&question, false) {
            Some(true) => {}
            Some(false) => return Err(Error::new(ErrorCode::Cancelled, "the key was not trusted; nothing was changed")),
            None => {
                return Err(Error::new(
                    ErrorCode::InvalidArgument,
                    "trusting a release key needs a yes: run this in a terminal, or pass --yes once you have compared the fingerprint",
                ))
            }
        }
    }
    let candidate = Trust { source: url.clone(), key: key.clone(), custom: true };
    update::find(&candidate, installed)
        .map_err(|e| Error::new(e.code, format!("{}; the source was not trusted (the one trusted before stays)", e.message)))?;
    update::save_trust(home, &url, &key)?;
    if !out.json {
        eprintln!("This machine now takes updates from {url}, signed by {fp}.");
    }
    Ok(())
}

/// A progress line on a terminal (nothing when stderr is not one).
struct Progress {
    tty: bool,
    last: Instant,
}

impl Progress {
    fn show(&mut self, what: &str, done: u64, of: u64) {
        if !self.tty || (self.last.elapsed() < Duration::from_millis(100) && done < of) {
            return;
        }
        self.last = Instant::now();
        let mb = |b: u64| b as f64 / 1_048_576.0;
        eprint!("\r{what}: {:.1} of {:.1} MB ({}%)  ", mb(done), mb(of), (done * 100).checked_div(of).unwrap_or(100));
        let _ = std::io::stderr().flush();
    }
    fn done(&self) {
        if self.tty {
            eprintln!();
        }
    }
}

fn say(out: &Out, line: &str) {
    if !out.json {
        eprintln!("{line}");
    }
}

fn apply(home: &Home, trust: &Trust, root: &std::path::Path, found: &update::Found, from: Version, out: &Out) -> Result<ExitCode, Error> {
    let Offer::Newer(claimed) = &found.offer else { unreachable!("checked by the caller") };
    let mut progress = Progress { tty: !out.json && std::io::stderr().is_terminal(), last: Instant::now() - Duration::from_secs(1) };
    say(out, &format!("Downloading vpd {} ({} bytes) from {}…", claimed.version, claimed.size, found.file_url));
    let fingerprint = vpd_core::release::key_fingerprint(&trust.key).unwrap_or_default();
    let u = update::install(home, trust, root, found, from, update::Restart::Daemon, &mut |step| match step {
        update::Step::Downloading { done, of } => progress.show("Downloading", done, of),
        update::Step::Checked => {
            progress.done();
            say(out, &format!("Signature checked ({fingerprint}). Unpacking and checking the new binaries…"));
        }
        update::Step::Restarting => say(out, "Restarting the daemon into the new version (running sessions carry on)…"),
    })?;
    let (from, to) = (u.from, u.to);
    let connected = u.pairings.iter().filter(|(_, c)| *c).count();
    out.emit(
        &json!({"from": from.to_string(), "to": to.to_string(), "daemon": u.daemon.as_ref().map(|p| json!({"pid": p.pid, "version": p.version})),
                "pairings": u.pairings.iter().map(|(n, c)| json!({"org": n, "connected": c})).collect::<Vec<_>>(),
                "removedVersions": u.removed.iter().map(|v| v.to_string()).collect::<Vec<_>>(),
                "configBackup": u.config_backup, "rollback": "vpd update --rollback"}),
        || {
            let mut s = format!("Updated vpd {from} → {to}.");
            if !u.pairings.is_empty() {
                s.push_str(&format!(" {connected} of {} pairing(s) connected again.", u.pairings.len()));
                for (n, _) in u.pairings.iter().filter(|(_, c)| !c) {
                    s.push_str(&format!("\n  {n}: not connected yet (`vpd status` shows why)"));
                }
            }
            s.push_str(&format!("\n{from} is kept: `vpd update --rollback` goes back to it (and to the configuration from before the update)."));
            s
        },
    );
    Ok(ExitCode::SUCCESS)
}

fn rollback(home: &Home, yes: bool, out: &Out) -> Result<ExitCode, Error> {
    let install = update::find_install(&running_exe()?);
    let (root, _) = update::updatable(&install)?;
    let state = update::load_state(home)?.ok_or_else(|| {
        Error::new(ErrorCode::InvalidArgument, "there is no update to roll back (`vpd update --rollback` undoes the last `vpd update`)")
    })?;
    let (from, to): (Version, Version) = (
        state.from.parse().map_err(|e: String| Error::new(ErrorCode::FileInvalid, e))?,
        state.to.parse().map_err(|e: String| Error::new(ErrorCode::FileInvalid, e))?,
    );
    if !root.join("versions").join(from.to_string()).is_dir() {
        return Err(Error::new(
            ErrorCode::FileInvalid,
            format!("{} is gone: vpd {from} cannot be restored", root.join("versions").join(from.to_string()).display()),
        ));
    }
    let lost = update::pairings_since(home, &state)?;
    if !lost.is_empty() && !yes {
        let q = format!(
            "Rolling back to {from} restores the configuration from before the update: the pairing(s) made since would be lost ({}). Roll back?",
            lost.join(", ")
        );
        match prompt::ask(&q, false) {
            Some(true) => {}
            Some(false) => return Err(Error::new(ErrorCode::Cancelled, "nothing was changed")),
            None => return Err(Error::new(ErrorCode::InvalidArgument, format!("a rollback would lose {}; pass --yes to confirm", lost.join(", ")))),
        }
    }
    let was_running = vpd_daemon::daemon::running_pid(home).is_some();
    if was_running {
        stop(home)?;
    }
    update::switch(&root, from)?;
    update::restore(home, &state)?;
    let pong = if was_running { Some(update::start_daemon(home, &root, from)?) } else { None };
    out.emit(
        &json!({"from": to.to_string(), "to": from.to_string(), "lostPairings": lost, "daemon": pong.as_ref().map(|p| json!({"pid": p.pid, "version": p.version}))}),
        || {
            let mut s = format!("Rolled back vpd {to} → {from}, with the configuration from before the update.");
            if !lost.is_empty() {
                s.push_str(&format!(" Pairings made since are gone: {} (pair again with `vpd pair`).", lost.join(", ")));
            }
            s
        },
    );
    Ok(ExitCode::SUCCESS)
}

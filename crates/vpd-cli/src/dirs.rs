//! `vpd bind`, `unbind`, `trust`, `hint`, `resolve`: directory bindings, on the files, in
//! this process (no daemon needed, so `vpd hint` stays cheap enough for every prompt).

use crate::output::{show, Out};
use crate::prompt;
use serde_json::json;
use std::path::Path;
use std::process::ExitCode;
use vpd_core::hint::{HintAction, Question};
use vpd_core::{LocalReason, Resolution};
use vpd_daemon::{binding, config, Error, ErrorCode, Home};

pub fn bind(home: &Home, dir: &Path, org: String, recursive: bool, yes: bool, out: &Out) -> Result<ExitCode, Error> {
    let outcome = match binding::bind(home, dir, &org, recursive, yes) {
        Err(e) if e.code == ErrorCode::BindingExists && !out.json => {
            let bound = binding::bound_org(home, dir).unwrap_or_else(|| "another org".into());
            match prompt::ask(&format!("{} is already bound to {bound}. Replace it?", show(dir)), false) {
                Some(true) => binding::bind(home, dir, &org, recursive, true)?,
                Some(false) => return Err(Error::new(ErrorCode::Cancelled, "kept the existing binding")),
                None => return Err(e),
            }
        }
        r => r?,
    };
    if !out.json {
        for w in &outcome.warnings {
            eprintln!("vpd: warning: {w}");
        }
    }
    out.emit(&outcome, || outcome.summary.clone());
    Ok(ExitCode::SUCCESS)
}

pub fn unbind(home: &Home, dir: &Path, out: &Out) -> Result<ExitCode, Error> {
    let r = binding::unbind(home, dir)?;
    out.emit(&r, || format!("Unbound {}: sessions started there run local-only.", show(&r.directory)));
    Ok(ExitCode::SUCCESS)
}

pub fn trust(home: &Home, dir: &Path, yes: bool, out: &Out) -> Result<ExitCode, Error> {
    if !yes {
        let r = binding::resolve(home, dir)?;
        if let Resolution::LocalOnly { reason: LocalReason::Untrusted { org_id }, binding_dir: Some(d) } = &r.resolution {
            // The question names the server the sessions would stream to (SPEC A1).
            let name = match r.config.of_org(org_id).as_slice() {
                [one] => one.label(),
                _ => r.org_name(org_id).unwrap_or(org_id).to_string(),
            };
            match prompt::ask(&format!("Trust {}/.viewport/local.yaml and stream sessions there to {name}?", show(d)), false) {
                Some(true) => {}
                Some(false) => return Err(Error::new(ErrorCode::Cancelled, "not trusted")),
                None => return Err(Error::new(ErrorCode::InvalidArgument, "pass --yes to trust without a terminal to ask on")),
            }
        }
    }
    let rec = binding::trust(home, dir)?;
    out.emit(&rec, || format!("Trusted {}/.viewport/local.yaml.", show(&rec.directory)));
    Ok(ExitCode::SUCCESS)
}

pub fn resolve(home: &Home, dir: &Path, out: &Out) -> Result<ExitCode, Error> {
    let r = binding::resolve(home, dir)?;
    let value = match &r.resolution {
        Resolution::Pinned { org_id, pairing_id, binding_dir, recursive } => json!({
            "directory": r.dir, "streaming": true, "orgId": org_id, "orgName": r.pinned_pairing().map(|p| p.workspace_name.clone()),
            "pairingId": pairing_id, "server": r.pinned_pairing().map(|p| p.server.clone()),
            "bindingDir": binding_dir, "recursive": recursive, "reason": null, "message": null,
        }),
        Resolution::LocalOnly { reason, binding_dir } => json!({
            "directory": r.dir, "streaming": false, "orgId": null, "orgName": null,
            "bindingDir": binding_dir, "recursive": null, "reason": reason.code(), "message": reason_text(&r, reason),
        }),
    };
    let passed = vpd_core::resolve::passed_over(&r.facts);
    let why = |binding: &Path, repo: &Path| {
        format!(
            "the binding at {} does not apply here: it is not recursive, and this directory is inside the repository {} below it (bind it again with --recursive, or bind {})",
            show(binding),
            show(repo),
            show(repo)
        )
    };
    let mut value = value;
    value["passedOver"] = json!(passed.iter().map(|(b, repo)| json!({"bindingDir": b, "repository": repo, "why": why(b, repo)})).collect::<Vec<_>>());
    out.emit(&value, || {
        let mut s = match &r.resolution {
            Resolution::Pinned { org_id, binding_dir, .. } => {
                let to = r.pinned_pairing().map(|p| p.label()).unwrap_or_else(|| org_id.clone());
                format!("streaming to {to} (binding {})", show(binding_dir))
            }
            Resolution::LocalOnly { reason, .. } => format!("local only: {}", reason_text(&r, reason)),
        };
        for (b, repo) in &passed {
            s.push_str(&format!("\nnote: {}", why(b, repo)));
        }
        s
    });
    Ok(ExitCode::SUCCESS)
}

fn reason_text(r: &binding::Resolved, reason: &LocalReason) -> String {
    match reason {
        LocalReason::NoBinding => "no binding".into(),
        LocalReason::StreamingDisabled => "streaming: disabled".into(),
        LocalReason::Untrusted { org_id } => {
            format!("the binding file (org {}) was not made on this machine; run `vpd trust` to trust it", r.org_name(org_id).unwrap_or(org_id))
        }
        LocalReason::NotPaired { org_id } => format!("bound to org {org_id}, which this machine is not paired with"),
        LocalReason::Waiting { org_id } => format!(
            "bound to {} by an earlier pairing that was removed; it waits: `vpd bind` here resumes it (pairing with that org on that server again asks too)",
            r.org_name(org_id).unwrap_or(org_id)
        ),
        LocalReason::HintNamesAnotherOrg { org_id, binding_org } => format!(
            "its .viewport/workspace.yaml names org {}, not {} that the folder around it is bound to; sessions here stay local until you bind this repository (`vpd bind` here)",
            r.org_name(org_id).unwrap_or(org_id),
            r.org_name(binding_org).unwrap_or(binding_org)
        ),
        LocalReason::Invalid { message } => format!("the binding file cannot be used: {message}"),
    }
}

pub fn hint(home: &Home, dir: &Path, reset: bool, all: bool, no_prompt: bool, out: &Out) -> Result<ExitCode, Error> {
    if reset {
        let n = binding::reset_declines(home, if all { None } else { Some(dir) })?;
        out.emit(&json!({"forgotten": n}), || format!("Forgot {n} remembered answer(s)."));
        return Ok(ExitCode::SUCCESS);
    }
    let r = binding::resolve(home, dir)?;
    let action = r.hint(home)?;
    if out.json {
        out.json(&action_json(&action));
        return Ok(ExitCode::SUCCESS);
    }
    let ask = |q: &str, default: bool| if no_prompt { None } else { prompt::ask(q, default) };
    match action {
        HintAction::Quiet => {}
        HintAction::Warn { dir, message } => {
            eprintln!("vpd: ignoring {}/.viewport ({message}); sessions here run local-only.", show(&dir))
        }
        // Said once per repository until the pairings change, not on every `cd`, here or by
        // the tray (SPEC A4).
        HintAction::NotPaired { label, dir, org_id } => {
            if binding::say_not_paired_once(home, &dir, &org_id, "terminal").unwrap_or(true) {
                eprintln!("vpd: {}", not_paired_message(&label, &org_id));
            }
            report_to_daemon(home, &dir);
        }
        HintAction::Choose { dir, org_id, label, choices } => {
            // SPEC A1: the same org on several servers — never pick one.
            let list: Vec<_> =
                choices.iter().map(|c| format!("  vpd bind {} --org {}    ({} on {})", show(&dir), c.pairing_id, c.org_name, c.server)).collect();
            eprintln!(
                "vpd: This repo suggests org {label:?} ({org_id}), which this machine is paired with on {} servers. To stream sessions here, bind it to one:\n{}",
                choices.len(),
                list.join("\n")
            );
        }
        HintAction::AskBind { dir, org_id, org_name, pairing_id, server } => {
            // Every bind question names the server it would stream to (SPEC A1).
            let q =
                format!("vpd: {} suggests org {org_name} (.viewport/workspace.yaml).\nBind this directory to {org_name} on {server}?", show(&dir));
            match ask(&q, true) {
                Some(true) => {
                    let o = binding::bind(home, &dir, &pairing_id, false, false)?;
                    eprintln!("vpd: Bound {} → {}. Sessions started there stream to its relay.", show(&o.directory), o.org_name);
                }
                Some(false) => {
                    binding::decline(home, &dir, &org_id, Some(&pairing_id), Question::Bind)?;
                    eprintln!("vpd: OK, not asking again for {} (`vpd hint --reset` to undo).", show(&dir));
                }
                None => {
                    report_to_daemon(home, &dir);
                    // The slug when it names one pairing, else the pairing id.
                    let flag = config::read(home)
                        .ok()
                        .and_then(|c| {
                            c.by_id(&pairing_id).map(|p| if c.of_org(&org_id).len() == 1 { p.workspace_slug.clone() } else { pairing_id.clone() })
                        })
                        .unwrap_or(pairing_id);
                    eprintln!(
                        "vpd: This repo suggests org {org_name} on {server}. Run `vpd bind {} --org {flag}` to stream sessions here.",
                        show(&dir)
                    );
                }
            }
        }
        HintAction::AskTrust { dir, org_id, org_name } => {
            let server = config::read(home).ok().and_then(|c| c.of_org(&org_id).first().map(|p| format!(" on {}", p.server))).unwrap_or_default();
            let q = format!(
                "vpd: {}/.viewport/local.yaml binds this directory to {org_name}{server}, but the file was not made on this machine. Trust it?",
                show(&dir)
            );
            match ask(&q, false) {
                Some(true) => {
                    binding::trust(home, &dir)?;
                    eprintln!("vpd: Trusted. Sessions started there stream to {org_name}.");
                }
                Some(false) => {
                    binding::decline(home, &dir, &org_id, None, Question::Trust)?;
                    eprintln!("vpd: Not trusted; sessions there run local-only (`vpd trust` to change your mind).");
                }
                None => {
                    report_to_daemon(home, &dir);
                    eprintln!(
                        "vpd: {}/.viewport/local.yaml was not made on this machine, so it grants nothing. Run `vpd trust {}` to trust it.",
                        show(&dir),
                        show(&dir)
                    )
                }
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// The not-paired hint. The label comes from a repository's file: it is shown quoted and
/// escaped, and the command to run names the org by its id, never by that label.
fn not_paired_message(label: &str, org_id: &str) -> String {
    format!("This repo suggests org {label:?}, but you're not paired to it. Run `vpd pair --org {org_id}`.")
}

fn action_json(a: &HintAction) -> serde_json::Value {
    match a {
        HintAction::Quiet => json!({"action": "quiet"}),
        HintAction::AskBind { dir, org_id, org_name, pairing_id, server } => {
            json!({"action": "ask_bind", "dir": dir, "orgId": org_id, "orgName": org_name, "pairingId": pairing_id, "server": server})
        }
        HintAction::Choose { dir, org_id, label, choices } => json!({
            "action": "choose", "dir": dir, "orgId": org_id, "label": label,
            "choices": choices.iter().map(|c| json!({"pairingId": c.pairing_id, "orgName": c.org_name, "server": c.server})).collect::<Vec<_>>(),
        }),
        HintAction::AskTrust { dir, org_id, org_name } => json!({"action": "ask_trust", "dir": dir, "orgId": org_id, "orgName": org_name}),
        HintAction::NotPaired { dir, org_id, label } => json!({
            "action": "not_paired", "dir": dir, "orgId": org_id, "label": label,
            "message": not_paired_message(label, org_id),
        }),
        HintAction::Warn { dir, message } => json!({"action": "warn", "dir": dir, "message": message}),
    }
}

/// Tells a running daemon (the tray) about a hint the terminal did not settle, so it can
/// notify and list it. Never starts a daemon; never waits long; silent on failure.
fn report_to_daemon(home: &Home, dir: &Path) {
    if !home.socket().exists() {
        return;
    }
    let report = vpd_daemon::api::protocol::HintReportParams { dir: dir.display().to_string() };
    let _ = vpd_daemon::api::client::ask(home, report, std::time::Duration::from_millis(500));
}

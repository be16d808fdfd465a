//! `vpd-daemon`: the daemon process (SPEC section 1's `vpd daemon`), a binary of its own so
//! that `vpd`, which the shell hook runs on every prompt, carries no daemon. `vpd daemon`
//! replaces itself with this sibling binary; the CLI starts it in the background when a verb
//! needs it; the desktop app runs the same core in-process instead.
//!
//! `vpd-daemon [run] [--home DIR] [--json]`: runs until SIGTERM, SIGINT, a `shutdown`
//! request or the loss of its home. `VPD_DAEMON_DETACHED=1` (set by the CLI) logs to files
//! only. `vpd-daemon doctor [--home DIR] [--json]` is `vpd doctor` (its checks need the HTTP
//! client and the keyring, which `vpd` does not carry).

use std::path::PathBuf;
use std::process::ExitCode;

const USAGE: &str = "usage: vpd-daemon [run|doctor] [--home DIR] [--json]\n\
Runs the vpd daemon for one home (default: $VIEWPORT_HOME, else $VPD_HOME, else ~/.viewport) until stopped.\n\
People start it with `vpd install` or `vpd daemon`; `vpd daemon stop` stops it.";

fn main() -> ExitCode {
    let mut args = std::env::args_os().skip(1);
    let (mut home, mut json, mut doctor) = (None, false, false);
    while let Some(a) = args.next() {
        match a.to_str() {
            Some("run") => {}
            Some("doctor") => doctor = true,
            Some("--json") => json = true,
            Some("--home") => match args.next() {
                Some(dir) => home = Some(PathBuf::from(dir)),
                None => return usage("--home needs a directory"),
            },
            Some("--version" | "-V") => {
                println!("vpd-daemon {}", vpd_daemon::VERSION);
                return ExitCode::SUCCESS;
            }
            Some("--help" | "-h") => {
                println!("{USAGE}");
                return ExitCode::SUCCESS;
            }
            _ => return usage(&format!("unexpected argument {}", a.to_string_lossy())),
        }
    }
    if doctor {
        return match vpd_daemon::Home::resolve(home.as_deref()).and_then(|h| vpd_daemon::doctor::run_here(&h)) {
            Ok(report) => {
                if json {
                    println!("{}", serde_json::to_string(&report).expect("the report serializes"));
                } else {
                    println!("{}", report.render());
                }
                if report.ok {
                    ExitCode::SUCCESS
                } else {
                    ExitCode::from(1)
                }
            }
            Err(e) => fail(&e, json),
        };
    }
    let detached = std::env::var_os("VPD_DAEMON_DETACHED").is_some();
    let r = vpd_daemon::Home::resolve(home.as_deref()).and_then(|home| vpd_daemon::daemon::run(home, detached));
    match r {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => fail(&e, json),
    }
}

/// Says what went wrong as `vpd` would (`error: …`, or the JSON error object).
fn fail(e: &vpd_daemon::Error, json: bool) -> ExitCode {
    if json {
        println!("{}", serde_json::json!({"error": {"code": e.code, "message": e.message}}));
    } else {
        eprintln!("error: {}", e.message);
    }
    // A service manager must not keep restarting a daemon whose home already has one.
    if e.code == vpd_daemon::ErrorCode::DaemonRunning {
        return ExitCode::from(vpd_daemon::service::EXIT_ALREADY_RUNNING);
    }
    ExitCode::from(1)
}

fn usage(problem: &str) -> ExitCode {
    eprintln!("error: {problem}\n{USAGE}");
    ExitCode::from(2)
}

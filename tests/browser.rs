//! Real headless Chromium (driven by playwright-core) against the real daemon and a real
//! `viewport-server`:
//! - the daemon's web UI (tests/browser/ui.test.mjs): log in through the one-time link, pair,
//!   bind from a suggestion, see a session, see a revocation; screenshots in
//!   target/artifacts/ui/;
//! - the server's own pages (tests/browser/server.test.mjs), walked from a fresh database as
//!   a person would: setup link, sign in, approve what `vpd pair` printed, Add machine, a live
//!   session, members, revoke, sign out; screenshots in target/artifacts/server/.

mod support;

use std::process::Command;
use support::*;

/// tests/browser, checked to have playwright-core and Chromium.
fn browser_dir() -> std::path::PathBuf {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../tests/browser");
    assert!(
        dir.join("node_modules/playwright-core").exists(),
        "playwright-core is not installed: run `npm ci --prefix tests/browser` (scripts/test.sh does)"
    );
    assert!(std::path::Path::new("/usr/bin/chromium").exists(), "Chromium is missing: apt-get install chromium (scripts/test.sh does)");
    dir
}

/// Runs `node --test SCRIPT` in tests/browser with `env`; its output, or a panic with it.
fn node_test(script: &str, env: &[(&str, &std::ffi::OsStr)], on_failure: impl FnOnce() -> String) {
    let out = Command::new("node")
        .arg("--test")
        .arg("--test-reporter=spec")
        .arg(script)
        .current_dir(browser_dir())
        .envs(env.iter().map(|(k, v)| (*k, *v)))
        .output()
        .expect("node (apt: nodejs)");
    let text = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    println!("{text}");
    assert!(out.status.success(), "the browser test {script} failed:\n{text}\n{}", on_failure());
}

fn artifacts(name: &str) -> std::path::PathBuf {
    bin("vpd").parent().unwrap().parent().unwrap().join("artifacts").join(name)
}

#[test]
fn web_ui_in_headless_chromium() {
    let server = Server::start();
    let ws = server.org_with_member("Acme Engineering", "acme", "ann@example.com");

    let m = Machine::new();
    let code_dir = m.mkdir("code");
    let repo = m.mkdir("code/api");
    std::fs::create_dir_all(repo.join(".viewport")).unwrap();
    std::fs::write(repo.join(".viewport/workspace.yaml"), format!("org_id: {ws}\norg_name: Acme Engineering\n")).unwrap();
    std::fs::create_dir_all(repo.join(".git")).unwrap();
    // A second hinted repository, for Never and Undo.
    let web = m.mkdir("code/web");
    std::fs::create_dir_all(web.join(".viewport")).unwrap();
    std::fs::write(web.join(".viewport/workspace.yaml"), format!("org_id: {ws}\norg_name: Acme Engineering\n")).unwrap();
    // A folder of repositories for "Bind a folder…", and a file beside them.
    let folder_repo = m.mkdir("clients/acme/web");
    std::fs::create_dir_all(folder_repo.join(".git")).unwrap();
    std::fs::create_dir_all(m.mkdir("clients/acme/mobile").join(".git")).unwrap();
    std::fs::write(m.path("clients/acme/notes.txt"), "not a folder").unwrap();

    let artifacts = artifacts("ui");
    let (vpd, server_bin, db, home) = (bin("vpd"), bin("viewport-server"), server.db(), m.dir.path().to_path_buf());
    node_test(
        "ui.test.mjs",
        &[
            ("VPD_BIN", vpd.as_os_str()),
            ("SERVER_BIN", server_bin.as_os_str()),
            ("SERVER_DB", db.as_os_str()),
            ("SERVER_URL", server.url.as_ref()),
            ("MACHINE_HOME", home.as_os_str()),
            ("ORG_SLUG", "acme".as_ref()),
            ("EMAIL", "ann@example.com".as_ref()),
            ("CODE_DIR", code_dir.as_os_str()),
            ("REPO_DIR", repo.as_os_str()),
            ("FOLDER_REPO", folder_repo.as_os_str()),
            ("NEVER_DIR", web.as_os_str()),
            ("ARTIFACTS", artifacts.as_os_str()),
        ],
        || format!("---- daemon log ----\n{}", m.logs()),
    );
    for page in [
        "01-overview-unpaired",
        "03-overview-connected",
        "04-pairing",
        "05-directories-suggestion",
        "07-sessions",
        "07b-bind-folder",
        "07c-bind-folder-bound",
        "08-activity",
    ] {
        assert!(artifacts.join(format!("{page}.png")).exists(), "screenshot {page}");
    }
}

/// The server's pages, from a fresh database (no user yet: the setup link is in its log).
#[test]
fn server_pages_in_headless_chromium() {
    let server = Server::start();
    let m = Machine::new();
    let repo = m.mkdir("code/api");
    std::fs::create_dir_all(repo.join(".git")).unwrap();
    let artifacts = artifacts("server");
    let (vpd, server_bin, db, log, home) = (bin("vpd"), bin("viewport-server"), server.db(), server.log(), m.dir.path().to_path_buf());
    node_test(
        "server.test.mjs",
        &[
            ("VPD_BIN", vpd.as_os_str()),
            ("SERVER_BIN", server_bin.as_os_str()),
            ("SERVER_DB", db.as_os_str()),
            ("SERVER_URL", server.url.as_ref()),
            ("SERVER_LOG", log.as_os_str()),
            ("MACHINE_HOME", home.as_os_str()),
            ("REPO_DIR", repo.as_os_str()),
            ("ARTIFACTS", artifacts.as_os_str()),
        ],
        || format!("---- server log ----\n{}\n---- daemon log ----\n{}", std::fs::read_to_string(server.log()).unwrap_or_default(), m.logs()),
    );
    for page in ["server-01-setup-400", "server-04-approve-1280", "server-09-session-live-400", "server-12-revoked-1280"] {
        assert!(artifacts.join(format!("{page}.png")).exists(), "screenshot {page}");
    }
}

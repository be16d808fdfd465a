//! The web UI in headless Chromium (tests/browser/ui.test.mjs, driven by playwright-core)
//! against the real daemon and a real `viewport-server`: log in through the one-time link,
//! pair, bind from a suggestion, see a session, see a revocation. Screenshots of each page
//! go to target/artifacts/ui/.

mod support;

use std::process::Command;
use support::*;

#[test]
fn web_ui_in_headless_chromium() {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    let dir = root.join("tests/browser");
    assert!(
        dir.join("node_modules/playwright-core").exists(),
        "playwright-core is not installed: run `npm ci --prefix tests/browser` (scripts/test.sh does)"
    );
    assert!(std::path::Path::new("/usr/bin/chromium").exists(), "Chromium is missing: apt-get install chromium (scripts/test.sh does)");
    let server = Server::start();
    let ws = server.org_with_member("Acme Engineering", "acme", "ann@example.com");

    let m = Machine::new();
    let code_dir = m.mkdir("code");
    let repo = m.mkdir("code/api");
    std::fs::create_dir_all(repo.join(".viewport")).unwrap();
    std::fs::write(repo.join(".viewport/workspace.yaml"), format!("org_id: {ws}\norg_name: Acme Engineering\n")).unwrap();
    std::fs::create_dir_all(repo.join(".git")).unwrap();

    let artifacts = bin("vpd").parent().unwrap().parent().unwrap().join("artifacts/ui");
    let out = Command::new("node")
        .arg("--test")
        .arg("--test-reporter=spec")
        .arg("ui.test.mjs")
        .current_dir(&dir)
        .env("VPD_BIN", bin("vpd"))
        .env("SERVER_BIN", bin("viewport-server"))
        .env("SERVER_DB", server.db())
        .env("SERVER_URL", &server.url)
        .env("MACHINE_HOME", m.dir.path())
        .env("ORG_SLUG", "acme")
        .env("EMAIL", "ann@example.com")
        .env("CODE_DIR", &code_dir)
        .env("REPO_DIR", &repo)
        .env("ARTIFACTS", &artifacts)
        .output()
        .expect("node (apt: nodejs)");
    let text = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    println!("{text}");
    assert!(out.status.success(), "the browser test failed:\n{text}\n---- daemon log ----\n{}", m.logs());
    for page in ["01-overview-unpaired", "03-overview-connected", "04-pairing", "05-directories-suggestion", "07-sessions", "08-activity"] {
        assert!(artifacts.join(format!("{page}.png")).exists(), "screenshot {page}");
    }
}

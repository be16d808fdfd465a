//! The tray app under Xvfb (scripts/test.sh runs this under `xvfb-run -a`), each test with
//! its own private D-Bus session bus: a status-notifier watcher on the bus, a fake
//! notification service served by this test, a fake browser that records the URLs it is
//! asked to open, a real `viewport-server` and the real `viewport-tray` binary.
//!
//! The menu is read and clicked over D-Bus (`com.canonical.dbusmenu`), as a desktop panel
//! does: Linux tray icons get no clicks, so every action is a menu item.

mod support;
mod tray_bus;

use std::process::{Command, Stdio};
use std::time::Duration;
use support::*;
use tray_bus::*;

#[test]
fn tray_menu_pairing_notifications_login_item_window_and_quit() {
    let tb = bus_with_watcher();
    let (conn, sent) = (tb.conn.clone(), tb.sent.clone());

    let server = Server::start();
    let ws = server.org_with_member("Acme Engineering", "acme", "ann@example.com");

    let m = Machine::new();
    let opened = fake_browser(m.dir.path());
    // Code folders where people keep them, and a repository that suggests the org before
    // this machine is paired with it (issue 11 item 4).
    m.mkdir("code");
    m.mkdir("projects");
    let early = m.mkdir("code/early");
    std::fs::create_dir_all(early.join(".git")).unwrap();
    std::fs::create_dir_all(early.join(".viewport")).unwrap();
    std::fs::write(early.join(".viewport/workspace.yaml"), format!("org_id: {ws}\norg_name: Acme Engineering\n")).unwrap();
    let mut tray = tray_command(&bin("viewport-tray"), m.dir.path(), &tb);
    tray.env("VIEWPORT_SERVER_URL", &server.url)
        .env("VPD_LOG", "debug")
        .stdout(Stdio::from(std::fs::File::create(m.dir.path().join("tray.out")).unwrap()))
        .stderr(Stdio::from(std::fs::File::create(m.dir.path().join("tray.err")).unwrap()));
    let mut tray = Kill(tray.spawn().unwrap());
    let tray_pid = tray.0.id();
    let _log = ShowOnPanic(m.dir.path().join("tray.err"));

    let mut bus = Bus { conn: conn.clone(), menu: None };
    wait_until("the tray's item on the bus", Duration::from_secs(30), || bus.find_menu());
    // SPEC section 12: status line, Pair, (pairings), Open Viewport, Start at login, Quit.
    wait_until("the first menu", Duration::from_secs(10), || bus.layout().labels().iter().any(|l| l == "Viewport: not paired"));
    let menu = bus.layout();
    let labels: Vec<String> = menu.labels().into_iter().filter(|l| !l.is_empty()).collect();
    assert_eq!(
        labels,
        ["Viewport: not paired", "Pair with workspace…", "Bind a folder…", "Install command line tool", "Open Viewport", "Start at login", "Quit"],
        "{menu:#?}"
    );
    assert!(!menu.find(&|i| i.label.starts_with("Viewport:")).unwrap().enabled, "the status line is not clickable");
    // The first start in the default home (issue 11 items 4 and 8): the code folders are
    // watched, the tray starts at login, and a notification says both.
    assert_eq!(menu.find(&|i| i.label == "Start at login").unwrap().toggle, Some(1), "on by default on the first start");
    let entry = m.dir.path().join(".config/autostart/Viewport.desktop");
    assert!(std::fs::read_to_string(&entry).is_ok_and(|t| t.contains("viewport-tray")), "the tray's login item");
    let watched: Vec<String> = m.config()["daemon"]["watchedFolders"].as_array().unwrap().iter().map(|v| v.as_str().unwrap().to_string()).collect();
    assert_eq!(watched, [m.path("code").display().to_string(), m.path("projects").display().to_string()]);
    wait_until("the first-start notification", Duration::from_secs(10), || {
        sent.lock().unwrap().iter().any(|n| {
            n.summary == "Viewport is set up" && n.body.contains("Watching ~/code, ~/projects") && n.body.contains("Viewport starts at login (")
        })
    });
    // The repository that suggests an unpaired org: said once, as "not paired".
    wait_until("the early not-paired notification", Duration::from_secs(20), || {
        sent.lock().unwrap().iter().any(|n| n.body.contains("\"Acme Engineering\", but you're not paired to it"))
    });

    // `vpd` ships beside the tray but no shell finds it: "Install command line tool" links it
    // into ~/.local/bin (issue 12 item 2), says so, and goes from the menu.
    bus.click_label("Install command line tool");
    wait_until("the command line tool notification", Duration::from_secs(10), || {
        sent.lock().unwrap().iter().any(|n| n.summary == "Command line tool installed" && n.body.contains(".local/bin/vpd"))
    });
    assert_eq!(std::fs::read_link(m.path(".local/bin/vpd")).unwrap(), bin("vpd"));
    wait_until("the item gone", Duration::from_secs(10), || !bus.layout().labels().iter().any(|l| l == "Install command line tool"));

    // Pair with workspace…: the menu shows the code, "Open approval page again" (which opens
    // it) and "Cancel pairing" (which cancels it). Issue 11 item 7.
    let last_url = || std::fs::read_to_string(&opened).unwrap_or_default().lines().last().unwrap_or("").trim().to_string();
    bus.click_label("Pair with workspace…");
    wait_until("the code in the menu", Duration::from_secs(20), || bus.layout().labels().iter().any(|l| l.starts_with("Pairing: code ")));
    let labels: Vec<String> = bus.layout().labels().into_iter().filter(|l| !l.is_empty()).collect();
    let line = labels.iter().find(|l| l.starts_with("Pairing: code ")).unwrap().clone();
    let shown_code = line.trim_start_matches("Pairing: code ").split(' ').next().unwrap().to_string();
    assert!(labels.contains(&"Open approval page again".to_string()) && labels.contains(&"Cancel pairing".to_string()), "{labels:?}");
    assert!(!bus.layout().find(&|i| i.label == line).unwrap().enabled, "the code line is not clickable");
    wait_until("the approval page in the browser", Duration::from_secs(20), || last_url().contains(&format!("code={shown_code}")));
    let opened_once = std::fs::read_to_string(&opened).unwrap().lines().count();
    bus.click_label("Open approval page again");
    wait_until("the approval page opened again", Duration::from_secs(20), || {
        std::fs::read_to_string(&opened).unwrap().lines().count() > opened_once && last_url().contains(&format!("code={shown_code}"))
    });
    bus.click_label("Cancel pairing");
    wait_until("the pairing cancelled", Duration::from_secs(20), || bus.layout().labels().iter().any(|l| l == "Pair with workspace…"));
    let paired = m.home().join("config.json").exists() && m.config()["pairings"].as_array().is_some_and(|p| !p.is_empty());
    assert!(!paired, "a cancelled pairing pairs nothing");

    // Pair with workspace… again: the approval page opens in the (fake) browser; approve it.
    let before = std::fs::read_to_string(&opened).unwrap_or_default().lines().count();
    bus.click_label("Pair with workspace…");
    let mut url = String::new();
    wait_until("the approval URL in the browser", Duration::from_secs(20), || {
        url = last_url();
        std::fs::read_to_string(&opened).unwrap_or_default().lines().count() > before
    });
    assert!(url.starts_with(&server.public_url) && url.contains("/pair?code="), "{url}");
    let code = url.split("code=").nth(1).unwrap().split('&').next().unwrap().to_string();
    server.approve(&code, "acme", "ann@example.com");
    wait_until("the pairing connected in the menu", Duration::from_secs(20), || {
        bus.layout().labels().iter().any(|l| l == "Acme Engineering — connected")
    });
    let menu = bus.layout();
    let sub = menu.find(&|i| i.label == "Acme Engineering — connected").unwrap();
    assert_eq!(sub.labels(), ["State: connected", "Open in browser", "Unpair…"]);
    assert!(menu.find(&|i| i.label.starts_with("Viewport: connected")).is_some(), "{:?}", menu.labels());
    wait_until("the pairing notification", Duration::from_secs(10), || {
        sent.lock().unwrap().iter().any(|n| n.summary == "Pairing completed" && n.body.contains("Acme Engineering"))
    });
    // Pairing changed: the early repository now asks "Bind" (issue 11 item 4).
    wait_until("the early repository's bind notification", Duration::from_secs(20), || {
        sent.lock().unwrap().iter().any(|n| n.body.starts_with("Bind ~/code/early to Acme Engineering on "))
    });
    // A repository cloned into a watched folder announces itself.
    let fresh = m.path("projects/fresh");
    std::fs::create_dir_all(fresh.join(".git")).unwrap();
    std::fs::create_dir_all(fresh.join(".viewport")).unwrap();
    std::fs::write(fresh.join(".viewport/workspace.yaml"), format!("org_id: {ws}\n")).unwrap();
    wait_until("the cloned repository's notification", Duration::from_secs(20), || {
        sent.lock().unwrap().iter().any(|n| n.body.starts_with("Bind ~/projects/fresh to Acme Engineering on "))
    });

    // "Open in browser" opens the org's page on its platform.
    bus.click_label("Open in browser");
    wait_until("the org page in the browser", Duration::from_secs(10), || {
        std::fs::read_to_string(&opened).unwrap_or_default().contains("/orgs/acme/sessions")
    });

    // A repository that suggests the org, reported by the shell hook: a notification with
    // Bind / Not now / Never; choosing Bind binds it.
    let repo = m.mkdir("code/api");
    std::fs::create_dir_all(repo.join(".viewport")).unwrap();
    std::fs::write(repo.join(".viewport/workspace.yaml"), format!("org_id: {ws}\n")).unwrap();
    let out = m.command().current_dir(&repo).args(["hint", "--no-prompt"]).output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let mut hint = None;
    wait_until("the hint notification", Duration::from_secs(10), || {
        hint = sent.lock().unwrap().iter().find(|n| n.body.starts_with("Bind ~/code/api to Acme Engineering on http://127.0.0.1:")).cloned();
        hint.is_some()
    });
    let hint = hint.unwrap();
    let pairs: Vec<(&str, &str)> = hint.actions.chunks(2).map(|c| (c[0].as_str(), c[1].as_str())).collect();
    assert_eq!(pairs, [("default", "Open Viewport"), ("bind", "Bind"), ("not_now", "Not now"), ("never", "Never")]);
    // The notification server answers with a D-Bus signal; on a busy machine it can be sent
    // before the tray has subscribed to the notification's signals (a real user clicks
    // later), so it is sent again each second until the bind shows, as a user clicks again.
    let bound =
        || m.ok(&["status"])["directories"].as_array().unwrap().iter().any(|d| d["directory"] == repo.display().to_string() && d["state"] == "bound");
    let mut last = std::time::Instant::now() - Duration::from_secs(2);
    wait_until("the directory bound from the notification", Duration::from_secs(45), || {
        if last.elapsed() >= Duration::from_secs(1) {
            bus.invoke_action(hint.id, "bind");
            last = std::time::Instant::now();
        }
        bound()
    });
    // An unpaired org's hint: the "not paired" notification, without Bind.
    let other = m.mkdir("code/other");
    std::fs::create_dir_all(other.join(".viewport")).unwrap();
    std::fs::write(other.join(".viewport/workspace.yaml"), "org_id: 01J0000000000000000000000Z\norg_slug: globex\n").unwrap();
    // (Found by the watched folder: no shell said it first, so the tray says it, once: A4.)
    wait_until("the not-paired notification", Duration::from_secs(10), || {
        sent.lock()
            .unwrap()
            .iter()
            .any(|n| n.body.contains("suggests org") && n.body.contains("but you're not paired to it") && !n.actions.iter().any(|a| a == "bind"))
    });

    // Start at login: removes, then writes again, the autostart entry; the checkbox follows.
    bus.click_label("Start at login");
    wait_until("the autostart entry removed", Duration::from_secs(10), || !entry.exists());
    wait_until("the checkbox cleared", Duration::from_secs(10), || bus.layout().find(&|i| i.label == "Start at login").unwrap().toggle == Some(0));
    bus.click_label("Start at login");
    // (auto-launch writes the file in place: wait for its content, not just the file)
    wait_until("the autostart entry starting the tray", Duration::from_secs(10), || {
        std::fs::read_to_string(&entry).is_ok_and(|t| t.contains("Exec=") && t.contains("viewport-tray"))
    });
    wait_until("the checkbox checked", Duration::from_secs(10), || bus.layout().find(&|i| i.label == "Start at login").unwrap().toggle == Some(1));

    // No webview process until the window is opened.
    assert_eq!(children_named(tray_pid, "WebKit"), 0, "an idle tray carries no webview processes");
    bus.click_label("Open Viewport");
    wait_until("the window's page loaded", Duration::from_secs(30), || m.logs().contains("window page loaded"));
    assert!(children_named(tray_pid, "WebKit") > 0, "the window runs a webview");
    // The login link never sits in a process's arguments, where other users could read it
    // (issue 12 item 2): the window gets it on its standard input.
    let leaked: Vec<String> = std::fs::read_dir("/proc")
        .unwrap()
        .flatten()
        .filter_map(|e| std::fs::read(e.path().join("cmdline")).ok())
        .map(|c| String::from_utf8_lossy(&c).replace('\0', " "))
        .filter(|c| c.contains("/login?t="))
        .collect();
    assert!(leaked.is_empty(), "a login link in a command line: {leaked:?}");
    std::thread::sleep(Duration::from_secs(2));
    let shot = artifacts().join("tray-window.png");
    let status = Command::new("import").args(["-window", "root"]).arg(&shot).status().expect("imagemagick's import");
    assert!(status.success() && std::fs::metadata(&shot).unwrap().len() > 1000, "screenshot at {}", shot.display());

    // "Bind a folder…" (issue 11 item 1): the window goes to its Directories page, on the
    // "Bind a folder" form (tests/browser/ui.test.mjs walks that form).
    bus.click_label("Bind a folder…");
    wait_until("the window on the bind form", Duration::from_secs(30), || m.logs().contains("path=\"/#/directories?bind=1\""));
    std::thread::sleep(Duration::from_secs(1));
    let shot = artifacts().join("tray-window-bind.png");
    let status = Command::new("import").args(["-window", "root"]).arg(&shot).status().expect("imagemagick's import");
    assert!(status.success(), "screenshot at {}", shot.display());
    // Its "Choose…" opens the native folder picker (the form's path field has the focus;
    // Choose… is the next control). A folder typed into the picker comes back in the form.
    let picked = m.mkdir("clients/acme");
    xdotool(&["key", "Tab", "Return"]);
    let mut picker = String::new();
    wait_until("the native folder picker", Duration::from_secs(20), || {
        let out = Command::new("xdotool").args(["search", "--onlyvisible", "--name", "Bind a folder to a Viewport organization"]).output().unwrap();
        picker = String::from_utf8_lossy(&out.stdout).lines().next().unwrap_or("").to_string();
        !picker.is_empty()
    });
    std::thread::sleep(Duration::from_secs(1));
    let _ = Command::new("import").args(["-window", "root"]).arg(artifacts().join("tray-folder-picker.png")).status();
    xdotool(&["windowfocus", "--sync", &picker]);
    xdotool(&["key", "--clearmodifiers", "ctrl+l"]);
    xdotool(&["type", "--delay", "20", &picked.display().to_string()]);
    std::thread::sleep(Duration::from_millis(500));
    let _ = Command::new("import").args(["-window", "root"]).arg(artifacts().join("tray-folder-picker-typed.png")).status();
    // Alt+O is the picker's Open (pressed until the picker goes, as a person would on a
    // slow machine).
    let mut last = std::time::Instant::now() - Duration::from_secs(2);
    wait_until("the picker closed", Duration::from_secs(20), || {
        if last.elapsed() >= Duration::from_secs(1) {
            xdotool(&["key", "alt+o"]);
            last = std::time::Instant::now();
        }
        Command::new("xdotool")
            .args(["search", "--onlyvisible", "--name", "Bind a folder to a Viewport organization"])
            .output()
            .unwrap()
            .stdout
            .is_empty()
    });
    std::thread::sleep(Duration::from_secs(1));
    // The form has the folder, with the focus in its field: Return binds it.
    let window = String::from_utf8_lossy(&Command::new("xdotool").args(["search", "--onlyvisible", "--name", "^Viewport$"]).output().unwrap().stdout)
        .lines()
        .next()
        .unwrap_or("")
        .to_string();
    xdotool(&["windowfocus", "--sync", &window]);
    xdotool(&["key", "Return"]);
    wait_until("the picked folder bound", Duration::from_secs(20), || {
        m.ok(&["status"])["directories"].as_array().unwrap().iter().any(|d| d["directory"] == picked.display().to_string().as_str())
    });
    let _ = Command::new("import").args(["-window", "root"]).arg(artifacts().join("tray-folder-picked.png")).status();

    // Revocation on the platform: the pairing leaves the menu and a notification says so.
    let machine = m.config()["pairings"][0]["machineId"].as_str().unwrap().to_string();
    server.admin(&["machine", "revoke", "--org", "acme", &machine]);
    wait_until("the revocation notification", Duration::from_secs(15), || {
        sent.lock().unwrap().iter().any(|n| n.body == "Acme Engineering revoked this machine's pairing")
    });
    wait_until("the menu without the pairing", Duration::from_secs(10), || bus.layout().labels().iter().any(|l| l == "Viewport: not paired"));

    // Pairing again from the tray (SPEC A3): the two bindings kept from the revoked pairing
    // wait; a notification asks to resume them, and its Resume does.
    let waiting = || m.ok(&["status"])["directories"].as_array().unwrap().iter().filter(|d| d["state"] == "waiting").count();
    assert_eq!(waiting(), 2, "{}", m.ok(&["status"])["directories"]);
    let server_origin = server.url.trim_end_matches('/').to_string();
    wait_until("the waiting bindings in the menu", Duration::from_secs(10), || {
        bus.layout().labels().iter().any(|l| l.starts_with("2 folders wait for Acme Engineering on ") && l.contains(&server_origin))
    });
    let before = std::fs::read_to_string(&opened).unwrap_or_default().lines().count();
    bus.click_label("Pair with workspace…");
    wait_until("the second approval URL", Duration::from_secs(20), || {
        std::fs::read_to_string(&opened).unwrap_or_default().lines().count() > before && last_url().contains("/pair?code=")
    });
    let code = last_url().split("code=").nth(1).unwrap().split('&').next().unwrap().to_string();
    server.approve(&code, "acme", "ann@example.com");
    let mut ask = None;
    wait_until("the resume question", Duration::from_secs(20), || {
        ask = sent.lock().unwrap().iter().find(|n| n.body.starts_with("Resume 2 directory bindings of Acme Engineering?")).cloned();
        ask.is_some()
    });
    let ask = ask.unwrap();
    assert!(ask.actions.iter().any(|a| a == "resume") && ask.actions.iter().any(|a| a == "not_now"), "{:?}", ask.actions);
    assert_eq!(waiting(), 2, "nothing resumes without a yes");
    let mut last = std::time::Instant::now() - Duration::from_secs(2);
    wait_until("the bindings resumed", Duration::from_secs(45), || {
        if last.elapsed() >= Duration::from_secs(1) {
            bus.invoke_action(ask.id, "resume");
            last = std::time::Instant::now();
        }
        waiting() == 0
    });

    // Quit: the tray and its daemon core stop cleanly.
    bus.click_label("Quit");
    let mut status = None;
    wait_until("the tray to exit", Duration::from_secs(15), || {
        status = tray.0.try_wait().unwrap();
        status.is_some()
    });
    assert!(status.unwrap().success(), "exit status {:?}", status);
    assert!(!m.home().join("vpd.sock").exists(), "the daemon core removed its socket");
}

/// SPEC section 1: a tray started while `vpd daemon` runs attaches to it instead of starting
/// a second core, shows its pairings, and leaves it running on Quit. This desktop has no
/// notification service: a revocation is logged and listed, and the tray carries on.
#[test]
fn tray_attaches_to_a_running_daemon_and_leaves_it_running() {
    let tb = bus(false);
    let conn = tb.conn.clone();
    let server = Server::start();
    server.org_with_member("Acme Engineering", "acme", "ann@example.com");
    let m = Machine::new();
    m.pair(&server, "acme", "ann@example.com");
    let daemon_pid = m.daemon_pid().expect("vpd pair started the daemon");

    let mut tray = Kill(
        tray_command(&bin("viewport-tray"), m.dir.path(), &tb)
            .stdout(Stdio::null())
            .stderr(Stdio::from(std::fs::File::create(m.dir.path().join("tray.err")).unwrap()))
            .spawn()
            .unwrap(),
    );
    let _log = ShowOnPanic(m.dir.path().join("tray.err"));
    let mut bus = Bus { conn, menu: None };
    wait_until("the tray's item on the bus", Duration::from_secs(30), || bus.find_menu());
    wait_until("the daemon's pairing in the menu", Duration::from_secs(20), || {
        bus.layout().labels().iter().any(|l| l == "Acme Engineering — connected")
    });
    assert_eq!(m.daemon_pid(), Some(daemon_pid), "no second core took the home");

    // Revoked while no notification service exists: never fatal.
    let machine = m.config()["pairings"][0]["machineId"].as_str().unwrap().to_string();
    server.admin(&["machine", "revoke", "--org", "acme", &machine]);
    wait_until("the menu without the pairing", Duration::from_secs(15), || bus.layout().labels().iter().any(|l| l == "Viewport: not paired"));
    let activity = m.ok(&["status"])["activity"].clone();
    assert!(activity.as_array().unwrap().iter().any(|a| a["kind"] == "revoked"), "{activity}");
    wait_until("the missing notification service logged", Duration::from_secs(10), || {
        std::fs::read_to_string(m.dir.path().join("tray.err")).unwrap_or_default().contains("no notification service")
    });
    assert!(tray.0.try_wait().unwrap().is_none(), "the tray still runs");

    bus.click_label("Quit");
    let mut status = None;
    wait_until("the tray to exit", Duration::from_secs(15), || {
        status = tray.0.try_wait().unwrap();
        status.is_some()
    });
    assert!(status.unwrap().success());
    assert_eq!(m.daemon_pid(), Some(daemon_pid), "Quit left the attached daemon running");
    assert_eq!(m.ok(&["status"])["daemon"]["running"], true);
}

/// Prints a file (the tray's stderr) if the test fails.
struct ShowOnPanic(std::path::PathBuf);
impl Drop for ShowOnPanic {
    fn drop(&mut self) {
        if std::thread::panicking() {
            eprintln!("---- {} ----\n{}", self.0.display(), std::fs::read_to_string(&self.0).unwrap_or_default());
        }
    }
}

fn xdotool(args: &[&str]) {
    let st = Command::new("xdotool").args(args).status().expect("xdotool (apt: xdotool)");
    assert!(st.success(), "xdotool {args:?}");
}

/// Issue 13: a tray installed from a release, whose user trusts an update source, shows
/// "Update available: install vpd V" when the source has a newer release; clicking it runs
/// `vpd update`'s code, and the tray restarts into the new version (the same process, its
/// binary now `versions/V/viewport-tray`), with the pairing connected again. (The release's
/// tray and window are this build's: only `vpd` and `vpd-daemon` are built at the higher
/// version, scripts/build-next.sh.)
#[test]
fn tray_offers_an_update_installs_it_and_restarts_into_it() {
    use support::release::*;
    let (next_dir, next) = next_build();
    let tb = bus(true);
    let conn = tb.conn.clone();
    let server = Server::start();
    server.org_with_member("Acme Engineering", "acme", "ann@example.com");
    let work = tempfile::tempdir().unwrap();
    let all = ["vpd", "vpd-daemon", "viewport-tray", "viewport-window"];
    let (m, installed) = installed_machine(work.path(), &all);
    m.pair(&server, "acme", "ann@example.com");
    m.ok(&["daemon", "stop"]);
    // The release manager publishes the higher version; the user trusts its key.
    let keys = keygen(&work.path().join("keys"));
    let staging = work.path().join("next");
    std::fs::create_dir_all(&staging).unwrap();
    for b in all {
        let from = if b.starts_with("vpd") { next_dir.join(b) } else { bin(b) };
        std::fs::copy(from, staging.join(b)).unwrap();
    }
    let archive = work.path().join(format!("viewport-{next}-linux-{ARCH}.tar.gz"));
    package(&next, &staging, &archive, ARCH, &all);
    sign(&archive, &keys, &next, ARCH);
    server.admin(&["release", "publish", archive.to_str().unwrap(), "--signature", &format!("{}.minisig", archive.display())]);
    let source = format!("{}/api/releases", server.url);
    let check = m.ok(&["update", "--check", "--source", &source, "--trust-key", keys.join("release.pub").to_str().unwrap(), "--yes"]);
    assert_eq!(check["available"], next, "{check}");
    m.ok(&["daemon", "stop"]);

    let root = m.path(".local/share/viewport");
    let mut tray = Kill(
        tray_command(&root.join("current/viewport-tray"), m.dir.path(), &tb)
            .stdout(Stdio::null())
            .stderr(Stdio::from(std::fs::File::create(m.dir.path().join("tray.err")).unwrap()))
            .spawn()
            .unwrap(),
    );
    let pid = tray.0.id();
    let _log = ShowOnPanic(m.dir.path().join("tray.err"));
    assert_eq!(std::fs::read_link(format!("/proc/{pid}/exe")).unwrap(), root.join(format!("versions/{installed}/viewport-tray")));
    let mut bus = Bus { conn: conn.clone(), menu: None };
    wait_until("the tray's item on the bus", Duration::from_secs(30), || bus.find_menu());
    let item = format!("Update available: install vpd {next}");
    wait_until("the update in the menu", Duration::from_secs(30), || bus.layout().labels().contains(&item));
    bus.click_label(&item);

    // The same process, now the new version's tray, with the pairing connected again.
    wait_until("the tray to restart into the new version", Duration::from_secs(60), || {
        std::fs::read_link(format!("/proc/{pid}/exe")).is_ok_and(|e| e == root.join(format!("versions/{next}/viewport-tray")))
    });
    assert!(tray.0.try_wait().unwrap().is_none(), "the tray runs");
    assert_eq!(version_of(&m.path(".local/bin/vpd")), next);
    let mut bus = Bus { conn, menu: None };
    wait_until("the new tray's item on the bus", Duration::from_secs(30), || bus.find_menu() && bus.try_layout().is_ok());
    wait_until("the pairing connected in the new tray's menu", Duration::from_secs(30), || {
        bus.try_layout().is_ok_and(|l| l.labels().iter().any(|l| l == "Acme Engineering — connected"))
    });
    assert!(!bus.layout().labels().iter().any(|l| l.starts_with("Update available")), "nothing newer now");
    bus.click_label("Quit");
    wait_until("the tray to exit", Duration::from_secs(15), || tray.0.try_wait().unwrap().is_some());
}

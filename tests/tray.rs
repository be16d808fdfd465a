//! The tray app under Xvfb with a private D-Bus session (scripts/test.sh runs this under
//! `xvfb-run -a dbus-run-session`): a status-notifier watcher on the bus, a fake
//! notification service served by this test, a fake browser that records the URLs it is
//! asked to open, a real `viewport-server` and the real `viewport-tray` binary.
//!
//! The menu is read and clicked over D-Bus (`com.canonical.dbusmenu`), as a desktop panel
//! does: Linux tray icons get no clicks, so every action is a menu item.

mod support;

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use support::*;
use zbus::zvariant::{OwnedValue, Value as ZValue};

/// A notification the tray sent.
#[derive(Debug, Clone)]
struct Sent {
    id: u32,
    summary: String,
    body: String,
    actions: Vec<String>,
}

/// `org.freedesktop.Notifications`, recording what arrives.
struct FakeNotifications {
    sent: Arc<Mutex<Vec<Sent>>>,
}

#[zbus::interface(name = "org.freedesktop.Notifications")]
impl FakeNotifications {
    fn get_capabilities(&self) -> Vec<String> {
        vec!["body".into(), "actions".into()]
    }
    #[allow(clippy::too_many_arguments)]
    fn notify(
        &self,
        _app_name: String,
        _replaces_id: u32,
        _app_icon: String,
        summary: String,
        body: String,
        actions: Vec<String>,
        _hints: HashMap<String, OwnedValue>,
        _expire_timeout: i32,
    ) -> u32 {
        let mut sent = self.sent.lock().unwrap();
        let id = sent.len() as u32 + 1;
        sent.push(Sent { id, summary, body, actions });
        id
    }
    fn close_notification(&self, _id: u32) {}
    fn get_server_information(&self) -> (String, String, String, String) {
        ("fake".into(), "vpd tests".into(), "1".into(), "1.2".into())
    }
}

/// A menu entry read over D-Bus.
#[derive(Debug, Clone)]
struct Item {
    id: i32,
    label: String,
    enabled: bool,
    toggle: Option<i32>,
    children: Vec<Item>,
}

impl Item {
    fn find(&self, f: &dyn Fn(&Item) -> bool) -> Option<Item> {
        if f(self) {
            return Some(self.clone());
        }
        self.children.iter().find_map(|c| c.find(f))
    }
    fn labels(&self) -> Vec<String> {
        self.children.iter().map(|c| c.label.clone()).collect()
    }
}

fn item_from(id: i32, props: HashMap<String, OwnedValue>, children: Vec<Item>) -> Item {
    let mut item = Item { id, label: String::new(), enabled: true, toggle: None, children };
    for (k, v) in props {
        match (k.as_str(), &*v) {
            ("label", ZValue::Str(s)) => item.label = s.to_string().replace('_', ""),
            ("enabled", ZValue::Bool(b)) => item.enabled = *b,
            ("toggle-state", ZValue::I32(t)) => item.toggle = Some(*t),
            _ => {}
        }
    }
    item
}

/// A child of a dbusmenu layout: a variant holding `(ia{sv}av)`.
fn parse_child(v: &ZValue) -> Item {
    match v {
        ZValue::Value(inner) => parse_child(inner),
        ZValue::Structure(s) => {
            let f = s.fields();
            let ZValue::I32(id) = &f[0] else { panic!("id: {:?}", f[0]) };
            let props: HashMap<String, OwnedValue> = match &f[1] {
                ZValue::Dict(d) => d.try_clone().unwrap().try_into().unwrap(),
                _ => HashMap::new(),
            };
            let children = match &f[2] {
                ZValue::Array(a) => a.iter().map(parse_child).collect(),
                _ => Vec::new(),
            };
            item_from(*id, props, children)
        }
        other => panic!("a menu item is a structure: {other:?}"),
    }
}

struct Bus {
    conn: zbus::blocking::Connection,
    menu: Option<(String, String)>,
}

impl Bus {
    /// The tray's menu (bus name, object path), once its item has registered.
    fn find_menu(&mut self) -> bool {
        let watcher = zbus::blocking::Proxy::new(&self.conn, "org.kde.StatusNotifierWatcher", "/StatusNotifierWatcher", "org.kde.StatusNotifierWatcher").unwrap();
        let items = match watcher.get_property::<Vec<String>>("RegisteredStatusNotifierItems") {
            Ok(i) => i,
            Err(_) => return false,
        };

        for item in items {
            let (name, path) = match item.split_once('/') {
                Some((n, p)) => (n.to_string(), format!("/{p}")),
                None => (item.clone(), String::new()),
            };
            let path = if path.is_empty() || path == "/" { self.item_path(&name) } else { Some(path) };
            let Some(path) = path else { continue };
            let Ok(sni) = zbus::blocking::Proxy::new(&self.conn, name.as_str(), path.as_str(), "org.kde.StatusNotifierItem") else { continue };
            let menu = sni.get_property::<zbus::zvariant::OwnedObjectPath>("Menu");
            drop(sni);
            if let Ok(menu) = menu {
                self.menu = Some((name, menu.to_string()));
                return true;
            }
        }
        false
    }

    /// libayatana-appindicator puts its item below /org/ayatana/NotificationItem/.
    fn item_path(&self, name: &str) -> Option<String> {
        let base = "/org/ayatana/NotificationItem";
        let p = zbus::blocking::fdo::IntrospectableProxy::builder(&self.conn).destination(name).ok()?.path(base).ok()?.build().ok()?;
        let xml = p.introspect().ok()?;
        let child = xml.split("<node name=\"").nth(1)?.split('"').next()?.to_string();
        Some(format!("{base}/{child}"))
    }

    fn layout(&self) -> Item {
        let (name, path) = self.menu.clone().expect("menu found");
        let p = zbus::blocking::Proxy::new(&self.conn, name.as_str(), path.as_str(), "com.canonical.dbusmenu").unwrap();
        type Layout = (u32, (i32, HashMap<String, OwnedValue>, Vec<OwnedValue>));
        let (_rev, (id, props, children)): Layout = p.call("GetLayout", &(0i32, -1i32, Vec::<String>::new())).unwrap();
        item_from(id, props, children.iter().map(|c| parse_child(c)).collect())
    }

    fn click(&self, id: i32) -> zbus::Result<()> {
        let (name, path) = self.menu.clone().expect("menu found");
        let p = zbus::blocking::Proxy::new(&self.conn, name.as_str(), path.as_str(), "com.canonical.dbusmenu").unwrap();
        p.call("Event", &(id, "clicked", ZValue::I32(0), 0u32))
    }

    /// Clicks the item with this label (the menu is rebuilt when the state changes, so a
    /// click can miss an item that was just replaced: look again then).
    fn click_label(&self, label: &str) {
        for _ in 0..50 {
            let item = self.layout().find(&|i| i.label == label).unwrap_or_else(|| panic!("no menu item {label:?} in {:?}", self.layout().labels()));
            if self.click(item.id).is_ok() {
                return;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        panic!("could not click {label:?}");
    }

    fn invoke_action(&self, id: u32, key: &str) {
        self.conn.emit_signal(None::<&str>, "/org/freedesktop/Notifications", "org.freedesktop.Notifications", "ActionInvoked", &(id, key)).unwrap();
    }
}

fn artifacts() -> PathBuf {
    let exe = std::env::current_exe().unwrap();
    let dir = exe.parent().unwrap().parent().unwrap().parent().unwrap().join("artifacts/tray");
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// A fake browser for xdg-open: a desktop entry whose script appends each URL to a file.
fn fake_browser(home: &Path) -> PathBuf {
    let record = home.join("opened-urls");
    let script = home.join("fake-browser.sh");
    std::fs::write(&script, format!("#!/bin/sh\necho \"$1\" >> '{}'\n", record.display())).unwrap();
    Command::new("chmod").arg("755").arg(&script).status().unwrap();
    let apps = home.join(".local/share/applications");
    std::fs::create_dir_all(&apps).unwrap();
    std::fs::write(
        apps.join("fake-browser.desktop"),
        format!("[Desktop Entry]\nType=Application\nName=Fake browser\nExec={} %u\nMimeType=x-scheme-handler/http;x-scheme-handler/https;\n", script.display()),
    )
    .unwrap();
    std::fs::create_dir_all(home.join(".config")).unwrap();
    std::fs::write(
        home.join(".config/mimeapps.list"),
        "[Default Applications]\nx-scheme-handler/http=fake-browser.desktop\nx-scheme-handler/https=fake-browser.desktop\ntext/html=fake-browser.desktop\n",
    )
    .unwrap();
    record
}

fn children_named(pid: u32, prefix: &str) -> usize {
    let mut n = 0;
    for e in std::fs::read_dir("/proc").unwrap().flatten() {
        let Ok(status) = std::fs::read_to_string(e.path().join("status")) else { continue };
        let name = status.lines().find_map(|l| l.strip_prefix("Name:")).unwrap_or("").trim().to_string();
        let ppid = status.lines().find_map(|l| l.strip_prefix("PPid:")).unwrap_or("").trim().to_string();
        if ppid == pid.to_string() && name.starts_with(prefix) {
            n += 1;
        }
    }
    n
}

struct Kill(Child);
impl Drop for Kill {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[test]
fn tray_menu_pairing_notifications_login_item_window_and_quit() {
    for var in ["DISPLAY", "DBUS_SESSION_BUS_ADDRESS"] {
        assert!(std::env::var_os(var).is_some(), "{var} is not set: run this test under `xvfb-run -a dbus-run-session` (scripts/test.sh does)");
    }
    let _watcher = Kill(Command::new("status-notifier-watcher").stdout(Stdio::null()).stderr(Stdio::null()).spawn().expect("status-notifier-watcher (apt: haskell-status-notifier-item-utils)"));
    let sent = Arc::new(Mutex::new(Vec::<Sent>::new()));
    let conn = zbus::blocking::connection::Builder::session()
        .unwrap()
        .name("org.freedesktop.Notifications")
        .unwrap()
        .serve_at("/org/freedesktop/Notifications", FakeNotifications { sent: sent.clone() })
        .unwrap()
        .build()
        .unwrap();
    let dbus = zbus::blocking::fdo::DBusProxy::new(&conn).unwrap();
    wait_until("the status-notifier watcher", Duration::from_secs(10), || {
        dbus.name_has_owner("org.kde.StatusNotifierWatcher".try_into().unwrap()).unwrap_or(false)
    });

    let server = Server::start();
    server.user("ann@example.com");
    let ws = server.org("Acme Engineering", "acme");
    server.member("acme", "ann@example.com");

    let m = Machine::new();
    let opened = fake_browser(m.dir.path());
    let mut tray = Command::new(bin("viewport-tray"));
    tray.env_clear()
        .env("HOME", m.dir.path())
        .env("PATH", std::env::var_os("PATH").unwrap_or_default())
        .env("DISPLAY", std::env::var_os("DISPLAY").unwrap())
        .env("DBUS_SESSION_BUS_ADDRESS", std::env::var_os("DBUS_SESSION_BUS_ADDRESS").unwrap())
        .envs(["XAUTHORITY", "XDG_RUNTIME_DIR"].into_iter().filter_map(|k| std::env::var_os(k).map(|v| (k, v))))
        .env("VIEWPORT_SERVER_URL", &server.url)
        .env("VPD_KEYRING", "off")
        .env("VPD_UI_PORT", "0")
        .env("VPD_LOG", "debug")
        .stdout(Stdio::from(std::fs::File::create(m.dir.path().join("tray.out")).unwrap()))
        .stderr(Stdio::from(std::fs::File::create(m.dir.path().join("tray.err")).unwrap()));
    let mut tray = Kill(tray.spawn().unwrap());
    let tray_pid = tray.0.id();

    let mut bus = Bus { conn: conn.clone(), menu: None };
    wait_until("the tray's item on the bus", Duration::from_secs(30), || bus.find_menu());
    // SPEC section 12: status line, Pair, (pairings), Open Viewport, Start at login, Quit.
    wait_until("the first menu", Duration::from_secs(10), || bus.layout().labels().iter().any(|l| l == "Viewport: not paired"));
    let menu = bus.layout();
    let labels: Vec<String> = menu.labels().into_iter().filter(|l| !l.is_empty()).collect();
    assert_eq!(labels, ["Viewport: not paired", "Pair with workspace…", "Open Viewport", "Start at login", "Quit"], "{menu:#?}");
    assert!(!menu.find(&|i| i.label.starts_with("Viewport:")).unwrap().enabled, "the status line is not clickable");
    assert_eq!(menu.find(&|i| i.label == "Start at login").unwrap().toggle, Some(0));

    // Pair with workspace…: the approval page opens in the (fake) browser; approve it.
    bus.click_label("Pair with workspace…");
    let mut url = String::new();
    wait_until("the approval URL in the browser", Duration::from_secs(20), || {
        url = std::fs::read_to_string(&opened).unwrap_or_default().trim().to_string();
        !url.is_empty()
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
        hint = sent.lock().unwrap().iter().find(|n| n.body.starts_with("Bind ~/code/api to Acme Engineering?")).cloned();
        hint.is_some()
    });
    let hint = hint.unwrap();
    let pairs: Vec<(&str, &str)> = hint.actions.chunks(2).map(|c| (c[0].as_str(), c[1].as_str())).collect();
    assert_eq!(pairs, [("default", "Open Viewport"), ("bind", "Bind"), ("not_now", "Not now"), ("never", "Never")]);
    bus.invoke_action(hint.id, "bind");
    wait_until("the directory bound from the notification", Duration::from_secs(10), || {
        m.ok(&["status"])["directories"].as_array().unwrap().iter().any(|d| d["directory"] == repo.display().to_string() && d["state"] == "bound")
    });
    // An unpaired org's hint: the "not paired" notification, without Bind.
    let other = m.mkdir("code/other");
    std::fs::create_dir_all(other.join(".viewport")).unwrap();
    std::fs::write(other.join(".viewport/workspace.yaml"), "org_id: 01J0000000000000000000000Z\norg_slug: globex\n").unwrap();
    m.command().current_dir(&other).args(["hint", "--no-prompt"]).output().unwrap();
    wait_until("the not-paired notification", Duration::from_secs(10), || {
        sent.lock().unwrap().iter().any(|n| n.body.contains("suggests org") && n.body.contains("but you're not paired to it") && !n.actions.iter().any(|a| a == "bind"))
    });

    // Start at login: writes, then removes, the autostart entry; the checkbox follows.
    let entry = m.dir.path().join(".config/autostart/Viewport.desktop");
    bus.click_label("Start at login");
    wait_until("the autostart entry", Duration::from_secs(10), || entry.exists());
    let text = std::fs::read_to_string(&entry).unwrap();
    assert!(text.contains("viewport-tray"), "{text}");
    wait_until("the checkbox checked", Duration::from_secs(10), || bus.layout().find(&|i| i.label == "Start at login").unwrap().toggle == Some(1));
    bus.click_label("Start at login");
    wait_until("the autostart entry removed", Duration::from_secs(10), || !entry.exists());
    wait_until("the checkbox cleared", Duration::from_secs(10), || bus.layout().find(&|i| i.label == "Start at login").unwrap().toggle == Some(0));

    // No webview process until the window is opened.
    assert_eq!(children_named(tray_pid, "WebKit"), 0, "an idle tray carries no webview processes");
    bus.click_label("Open Viewport");
    wait_until("the window's page loaded", Duration::from_secs(30), || {
        m.logs().contains("window page loaded")
    });
    assert!(children_named(tray_pid, "WebKit") > 0, "the window runs a webview");
    std::thread::sleep(Duration::from_secs(2));
    let shot = artifacts().join("tray-window.png");
    let status = Command::new("import").args(["-window", "root"]).arg(&shot).status().expect("imagemagick's import");
    assert!(status.success() && std::fs::metadata(&shot).unwrap().len() > 1000, "screenshot at {}", shot.display());

    // Revocation on the platform: the pairing leaves the menu and a notification says so.
    let machine = m.config()["pairings"][0]["machineId"].as_str().unwrap().to_string();
    server.admin(&["machine", "revoke", "--org", "acme", &machine]);
    wait_until("the revocation notification", Duration::from_secs(15), || {
        sent.lock().unwrap().iter().any(|n| n.body == "Acme Engineering revoked this machine's pairing")
    });
    wait_until("the menu without the pairing", Duration::from_secs(10), || bus.layout().labels().iter().any(|l| l == "Viewport: not paired"));

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

//! What the tray's test and benchmark share: a fake notification service, the tray menu
//! read and clicked over D-Bus (`com.canonical.dbusmenu`, as a desktop panel does), a fake
//! browser for xdg-open, and process-tree helpers.
#![allow(dead_code)]

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::{Child, Command};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use zbus::zvariant::{OwnedValue, Value as ZValue};

/// A notification the tray sent.
#[derive(Debug, Clone)]
pub struct Sent {
    pub id: u32,
    pub summary: String,
    pub body: String,
    pub actions: Vec<String>,
}

/// `org.freedesktop.Notifications`, recording what arrives.
pub struct FakeNotifications {
    pub sent: Arc<Mutex<Vec<Sent>>>,
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
pub struct Item {
    pub id: i32,
    pub label: String,
    pub enabled: bool,
    pub toggle: Option<i32>,
    pub children: Vec<Item>,
}

impl Item {
    pub fn find(&self, f: &dyn Fn(&Item) -> bool) -> Option<Item> {
        if f(self) {
            return Some(self.clone());
        }
        self.children.iter().find_map(|c| c.find(f))
    }
    pub fn labels(&self) -> Vec<String> {
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

pub struct Bus {
    pub conn: zbus::blocking::Connection,
    pub menu: Option<(String, String)>,
}

impl Bus {
    /// The tray's menu (bus name, object path), once its item has registered.
    pub fn find_menu(&mut self) -> bool {
        self.menu = self.current_menu();
        self.menu.is_some()
    }

    /// The menu of the item registered now (looked up afresh: an item that registers again
    /// gets a new name).
    pub fn current_menu(&self) -> Option<(String, String)> {
        let watcher =
            zbus::blocking::Proxy::new(&self.conn, "org.kde.StatusNotifierWatcher", "/StatusNotifierWatcher", "org.kde.StatusNotifierWatcher")
                .unwrap();
        let items = watcher.get_property::<Vec<String>>("RegisteredStatusNotifierItems").ok()?;
        for item in items {
            let (name, path) = match item.split_once('/') {
                Some((n, p)) => (n.to_string(), format!("/{p}")),
                None => (item.clone(), String::new()),
            };
            let path = if path.is_empty() || path == "/" { self.item_path(&name).or(Some("/StatusNotifierItem".into())) } else { Some(path) };
            let Some(path) = path else { continue };
            let Ok(sni) = zbus::blocking::Proxy::new(&self.conn, name.as_str(), path.as_str(), "org.kde.StatusNotifierItem") else { continue };
            let menu = sni.get_property::<zbus::zvariant::OwnedObjectPath>("Menu");
            drop(sni);
            if let Ok(menu) = menu {
                return Some((name, menu.to_string()));
            }
        }
        None
    }

    /// libayatana-appindicator puts its item below /org/ayatana/NotificationItem/.
    fn item_path(&self, name: &str) -> Option<String> {
        let base = "/org/ayatana/NotificationItem";
        let p = zbus::blocking::fdo::IntrospectableProxy::builder(&self.conn).destination(name).ok()?.path(base).ok()?.build().ok()?;
        let xml = p.introspect().ok()?;
        let child = xml.split("<node name=\"").nth(1)?.split('"').next()?.to_string();
        Some(format!("{base}/{child}"))
    }

    pub fn layout(&self) -> Item {
        let mut last = None;
        for _ in 0..50 {
            match self.try_layout() {
                Ok(item) => return item,
                Err(e) => last = Some(e),
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        panic!("the tray's menu cannot be read: {last:?}");
    }

    /// The menu once, or why it cannot be read (the item is gone, …).
    pub fn try_layout(&self) -> zbus::Result<Item> {
        type Layout = (u32, (i32, HashMap<String, OwnedValue>, Vec<OwnedValue>));
        let (name, path) = self.current_menu().or_else(|| self.menu.clone()).ok_or(zbus::Error::Failure("no tray item".into()))?;
        let p = zbus::blocking::Proxy::new(&self.conn, name.as_str(), path.as_str(), "com.canonical.dbusmenu")?;
        let (_rev, (id, props, children)): Layout = p.call("GetLayout", &(0i32, -1i32, Vec::<String>::new()))?;
        Ok(item_from(id, props, children.iter().map(|c| parse_child(c)).collect()))
    }

    pub fn click(&self, id: i32) -> zbus::Result<()> {
        let (name, path) = self.current_menu().or_else(|| self.menu.clone()).expect("menu found");
        let p = zbus::blocking::Proxy::new(&self.conn, name.as_str(), path.as_str(), "com.canonical.dbusmenu").unwrap();
        p.call("Event", &(id, "clicked", ZValue::I32(0), 0u32))
    }

    /// Clicks the item with this label (the menu is rebuilt when the state changes, so a
    /// click can miss an item that was just replaced: look again then).
    pub fn click_label(&self, label: &str) {
        for _ in 0..50 {
            let item = self.layout().find(&|i| i.label == label).unwrap_or_else(|| panic!("no menu item {label:?} in {:?}", self.layout().labels()));
            if self.click(item.id).is_ok() {
                return;
            }
            std::thread::sleep(Duration::from_millis(100));
            // A click that ends the app (Quit) may lose its reply: the item is gone then.
            if self.try_layout().is_err() {
                return;
            }
        }
        panic!("could not click {label:?}");
    }

    pub fn invoke_action(&self, id: u32, key: &str) {
        self.conn.emit_signal(None::<&str>, "/org/freedesktop/Notifications", "org.freedesktop.Notifications", "ActionInvoked", &(id, key)).unwrap();
    }
}

pub fn artifacts() -> PathBuf {
    let exe = std::env::current_exe().unwrap();
    let dir = exe.parent().unwrap().parent().unwrap().parent().unwrap().join("artifacts/tray");
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// A fake browser for xdg-open: a desktop entry whose script appends each URL to a file.
pub fn fake_browser(home: &Path) -> PathBuf {
    let record = home.join("opened-urls");
    let script = home.join("fake-browser.sh");
    std::fs::write(&script, format!("#!/bin/sh\necho \"$1\" >> '{}'\n", record.display())).unwrap();
    Command::new("chmod").arg("755").arg(&script).status().unwrap();
    let apps = home.join(".local/share/applications");
    std::fs::create_dir_all(&apps).unwrap();
    std::fs::write(
        apps.join("fake-browser.desktop"),
        format!(
            "[Desktop Entry]\nType=Application\nName=Fake browser\nExec={} %u\nMimeType=x-scheme-handler/http;x-scheme-handler/https;\n",
            script.display()
        ),
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

/// How many descendants of `pid` have a name starting with `prefix`.
pub fn children_named(pid: u32, prefix: &str) -> usize {
    let procs: Vec<(u32, u32, String)> = std::fs::read_dir("/proc")
        .unwrap()
        .flatten()
        .filter_map(|e| {
            let status = std::fs::read_to_string(e.path().join("status")).ok()?;
            let field = |k: &str| status.lines().find_map(|l| l.strip_prefix(k)).map(|v| v.trim().to_string());
            Some((field("Pid:")?.parse().ok()?, field("PPid:")?.parse().ok()?, field("Name:")?))
        })
        .collect();
    let mut tree = vec![pid];
    let mut i = 0;
    while i < tree.len() {
        let parent = tree[i];
        tree.extend(procs.iter().filter(|p| p.1 == parent).map(|p| p.0));
        i += 1;
    }
    procs.iter().filter(|p| tree[1..].contains(&p.0) && p.2.starts_with(prefix)).count()
}

pub struct Kill(pub Child);
impl Drop for Kill {
    fn drop(&mut self) {
        if std::thread::panicking() {
            eprintln!("---- process {} at the failure: {:?} (None: still running)", self.0.id(), self.0.try_wait());
        }
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Proportional set size of `pid` and all its descendants, in KiB (shared pages split
/// between the processes that share them, so GTK/WebKit libraries are not counted twice).
pub fn tree_pss_kib(pid: u32) -> u64 {
    let mut total = 0;
    let mut todo = vec![pid];
    while let Some(p) = todo.pop() {
        let rollup = std::fs::read_to_string(format!("/proc/{p}/smaps_rollup")).unwrap_or_default();
        total +=
            rollup.lines().find_map(|l| l.strip_prefix("Pss:")).and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok()).unwrap_or(0);
        for e in std::fs::read_dir("/proc").unwrap().flatten() {
            let Ok(status) = std::fs::read_to_string(e.path().join("status")) else { continue };
            if status.lines().find_map(|l| l.strip_prefix("PPid:")).map(str::trim) == Some(p.to_string().as_str()) {
                if let Ok(child) = e.file_name().to_string_lossy().parse() {
                    todo.push(child);
                }
            }
        }
    }
    total
}

/// A private session bus for one test (so tests can run in parallel): its own
/// `dbus-daemon`, a status-notifier watcher on it, and a fake notification service.
pub struct TestBus {
    pub address: String,
    pub conn: zbus::blocking::Connection,
    pub sent: Arc<Mutex<Vec<Sent>>>,
    _watcher: Kill,
    _daemon: Kill,
}

pub fn bus_with_watcher() -> TestBus {
    bus(true)
}

/// A test bus; `notifications: false` leaves out the notification service (a desktop
/// without one).
pub fn bus(notifications: bool) -> TestBus {
    assert!(std::env::var_os("DISPLAY").is_some(), "DISPLAY is not set: run under `xvfb-run -a` (scripts/test.sh does)");
    let mut daemon = Command::new("dbus-daemon")
        .args(["--session", "--nofork", "--print-address=1"])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("dbus-daemon (apt: dbus)");
    let mut line = String::new();
    std::io::BufRead::read_line(&mut std::io::BufReader::new(daemon.stdout.take().unwrap()), &mut line).unwrap();
    let address = line.trim().to_string();
    let daemon = Kill(daemon);
    let watcher = Kill(
        Command::new("status-notifier-watcher")
            .env("DBUS_SESSION_BUS_ADDRESS", &address)
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .expect("status-notifier-watcher (apt: haskell-status-notifier-item-utils)"),
    );
    let sent = Arc::new(Mutex::new(Vec::<Sent>::new()));
    let mut builder = zbus::blocking::connection::Builder::address(address.as_str()).unwrap();
    if notifications {
        builder = builder
            .name("org.freedesktop.Notifications")
            .unwrap()
            .serve_at("/org/freedesktop/Notifications", FakeNotifications { sent: sent.clone() })
            .unwrap();
    }
    let conn = builder.build().unwrap();
    let dbus = zbus::blocking::fdo::DBusProxy::new(&conn).unwrap();
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    while !dbus.name_has_owner("org.kde.StatusNotifierWatcher".try_into().unwrap()).unwrap_or(false) {
        assert!(std::time::Instant::now() < deadline, "the status-notifier watcher did not start");
        std::thread::sleep(Duration::from_millis(20));
    }
    // Be the panel: a StatusNotifierHost that the watcher knows about (what a desktop's
    // tray area registers), so items are shown.
    let host = format!("org.kde.StatusNotifierHost-{}", std::process::id());
    conn.request_name(host.as_str()).unwrap();
    let sn_watcher =
        zbus::blocking::Proxy::new(&conn, "org.kde.StatusNotifierWatcher", "/StatusNotifierWatcher", "org.kde.StatusNotifierWatcher").unwrap();
    // The watcher owns its name a moment before it serves its object (UnknownObject until
    // then, on a busy machine): ask again until it answers.
    loop {
        match sn_watcher.call::<_, _, ()>("RegisterStatusNotifierHost", &(host.as_str(),)) {
            Ok(()) => break,
            Err(e) => {
                assert!(std::time::Instant::now() < deadline, "the status-notifier watcher did not take the host: {e}");
                std::thread::sleep(Duration::from_millis(20));
            }
        }
    }
    TestBus { address, conn, sent, _watcher: watcher, _daemon: daemon }
}

/// The tray binary's command for a temporary HOME: only the environment it needs.
pub fn tray_command(exe: &Path, home: &Path, bus: &TestBus) -> Command {
    let mut c = Command::new(exe);
    c.env_clear()
        .env("HOME", home)
        .env("PATH", std::env::var_os("PATH").unwrap_or_default())
        .env("DBUS_SESSION_BUS_ADDRESS", &bus.address)
        .envs(["DISPLAY", "XAUTHORITY", "XDG_RUNTIME_DIR"].into_iter().filter_map(|k| std::env::var_os(k).map(|v| (k, v))))
        .env("VPD_KEYRING", "off")
        .env("VPD_UI_PORT", "0");
    c
}

//! Tray benchmarks (docs/BENCHMARKS.md): start to first menu, idle memory of the whole
//! process tree with the window closed and open, and window open time. Run with
//! `scripts/bench-tray.sh` (a release build under `xvfb-run`).

mod support;
mod tray_bus;

use std::time::{Duration, Instant};
use support::*;
use tray_bus::*;

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(|a, b| a.partial_cmp(b).unwrap());
    v[v.len() / 2]
}

fn wait<T>(what: &str, timeout: Duration, mut f: impl FnMut() -> Option<T>) -> T {
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(v) = f() {
            return v;
        }
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(2));
    }
}

fn registered(conn: &zbus::blocking::Connection) -> usize {
    let w = zbus::blocking::Proxy::new(conn, "org.kde.StatusNotifierWatcher", "/StatusNotifierWatcher", "org.kde.StatusNotifierWatcher").unwrap();
    w.get_property::<Vec<String>>("RegisteredStatusNotifierItems").map(|v| v.len()).unwrap_or(0)
}

fn quit(bus: &Bus, tray: &mut Kill) {
    bus.click_label("Quit");
    wait("the tray to exit", Duration::from_secs(15), || tray.0.try_wait().unwrap());
}

fn main() {
    let exe = bin("viewport-tray");
    let tb = bus_with_watcher();
    let conn = tb.conn.clone();
    println!("tray binary: {} ({:.1} MB)", exe.display(), std::fs::metadata(&exe).unwrap().len() as f64 / 1e6);

    // Start to first menu (the item registered on the bus and its menu readable, with the
    // daemon core's state in it), fresh home each time.
    let mut starts = Vec::new();
    for _ in 0..7 {
        wait("no tray item left", Duration::from_secs(10), || (registered(&conn) == 0).then_some(()));
        let home = tempfile::tempdir().unwrap();
        let t0 = Instant::now();
        let mut tray = Kill(tray_command(&exe, home.path(), &tb).spawn().unwrap());
        let mut bus = Bus { conn: conn.clone(), menu: None };
        wait("the first menu", Duration::from_secs(30), || {
            (bus.menu.is_some() || bus.find_menu()).then_some(())?;
            bus.layout().labels().iter().any(|l| l == "Viewport: not paired").then_some(())
        });
        starts.push(t0.elapsed().as_secs_f64() * 1e3);
        quit(&bus, &mut tray);
    }
    println!("start to first menu: median {:.0} ms (runs: {:?})", median(starts.clone()), starts.iter().map(|v| v.round()).collect::<Vec<_>>());

    // One org paired and connected (through the `vpd` next to it, talking to the tray's core).
    wait("no tray item left", Duration::from_secs(10), || (registered(&conn) == 0).then_some(()));
    let server = Server::start();
    server.org_with_member("Acme Engineering", "acme", "ann@example.com");
    let m = Machine::new();
    let mut tray = Kill(tray_command(&exe, m.dir.path(), &tb).env("VPD_LOG", "info").spawn().unwrap());
    let pid = tray.0.id();
    let mut bus = Bus { conn: conn.clone(), menu: None };
    wait("the menu", Duration::from_secs(30), || bus.find_menu().then_some(()));
    m.pair(&server, "acme", "ann@example.com");
    wait("connected", Duration::from_secs(20), || bus.layout().labels().iter().any(|l| l == "Acme Engineering — connected").then_some(()));
    std::thread::sleep(Duration::from_secs(10));
    let closed = tree_pss_kib(pid);
    assert_eq!(children_named(pid, "WebKit"), 0);
    println!("idle, 1 org connected, window closed: {:.1} MB PSS (whole process tree)", closed as f64 / 1024.0);

    // Window open time: click → the page has loaded (logged by the window's page-load hook).
    let mut opens = Vec::new();
    let mut open_pss = 0;
    for i in 0..3 {
        let before = m.logs().matches("window page loaded").count();
        let t0 = Instant::now();
        bus.click_label("Open Viewport");
        wait("the page loaded", Duration::from_secs(30), || (m.logs().matches("window page loaded").count() > before).then_some(()));
        opens.push(t0.elapsed().as_secs_f64() * 1e3);
        if i == 0 {
            std::thread::sleep(Duration::from_secs(5));
            open_pss = tree_pss_kib(pid);
        }
    }
    println!("window open (first, then again while open): {:?} ms", opens.iter().map(|v| v.round()).collect::<Vec<_>>());
    println!("window open, idle: {:.1} MB PSS (whole process tree, {} WebKit processes)", open_pss as f64 / 1024.0, children_named(pid, "WebKit"));
    quit(&bus, &mut tray);
}

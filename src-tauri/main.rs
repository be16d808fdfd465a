//! The Viewport tray app (SPEC section 12): runs the vpd daemon core in-process (or attaches
//! to a running `vpd daemon`), shows a menu with the state of each pairing, sends OS
//! notifications, and opens the web UI in a window.
//!
//! The tray process does not link WebKit: its icon and menu are Tauri's own tray crates
//! (tray-icon and muda; on Linux the StatusNotifierItem and dbusmenu protocols over D-Bus),
//! and "Open Viewport" starts `viewport-window` (src-tauri/window.rs, the Tauri app with the
//! webview), which exits when its window closes. An idle tray is the daemon core plus a
//! D-Bus connection.
//!
//! Layout: `core.rs` starts or attaches to the daemon; `menu.rs` is the pure menu model;
//! `notifications.rs` turns activity into notifications; `event_loop.rs` is the main thread's
//! loop on each OS; this file is the glue.

// A release tray on Windows opens no console window (at login, from the Start menu).
#![cfg_attr(not(debug_assertions), windows_subsystem = "windows")]

mod core;
mod event_loop;
mod menu;
mod notifications;

use menu::{MenuModel, PairingWait};
use std::io::{BufRead, Write};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{mpsc, Arc, Mutex};
use std::time::{Duration, Instant};
use tray_icon::menu::{CheckMenuItem, Menu, MenuEvent, MenuItem, PredefinedMenuItem, Submenu};
use tray_icon::{Icon, TrayIconBuilder};
use vpd_daemon::api::{calls, protocol};
use vpd_daemon::states::{Health, PairJobState};
use vpd_daemon::suggestions::Answer;

fn icon(health: Health) -> Icon {
    let bytes: &'static [u8] = match health {
        Health::Connected => include_bytes!("../icons/tray-connected@2x.png"),
        Health::Degraded => include_bytes!("../icons/tray-degraded@2x.png"),
        Health::Offline => include_bytes!("../icons/tray-offline@2x.png"),
        Health::Unpaired => include_bytes!("../icons/tray-unpaired@2x.png"),
    };
    let mut decoder = png::Decoder::new(std::io::Cursor::new(bytes));
    decoder.set_transformations(png::Transformations::EXPAND | png::Transformations::ALPHA);
    let mut reader = decoder.read_info().expect("the tray icons are valid PNGs");
    let mut buf = vec![0; reader.output_buffer_size().expect("a small icon")];
    let info = reader.next_frame(&mut buf).expect("the tray icons are valid PNGs");
    buf.truncate(info.buffer_size());
    Icon::from_rgba(buf, info.width, info.height).expect("RGBA icons")
}

/// What the main thread (which owns the tray icon) is asked to do.
enum Ui {
    Show(MenuModel),
    Quit,
}

/// What every thread of the tray shares.
struct Tray {
    core: Mutex<core::Core>,
    home: vpd_daemon::Home,
    shown: Mutex<Option<MenuModel>>,
    /// Wakes the refresher (after an action) so the menu need not wait for its next look.
    wake: Mutex<mpsc::Sender<()>>,
    ui: Mutex<mpsc::Sender<Ui>>,
    /// The window process, while it runs; its stdin takes URLs to show.
    window: Mutex<Option<Child>>,
    quitting: AtomicBool,
    started: Instant,
    /// The newer release the update source offers, once checked (`vpd update`'s code).
    update: Mutex<Option<vpd_daemon::update::Found>>,
    /// An update runs: the core's stop is part of it, not a reason to exit.
    updating: AtomicBool,
}

impl Tray {
    fn call<C: calls::Call>(&self, call: C) -> vpd_daemon::Result<C::Response> {
        vpd_daemon::api::client::ask(&self.home, call, Duration::from_secs(30))
    }
    fn refresh_soon(&self) {
        let _ = self.wake.lock().unwrap().send(());
    }
    fn quit(&self) {
        self.quitting.store(true, Ordering::SeqCst);
        let _ = self.ui.lock().unwrap().send(Ui::Quit);
    }
}

fn main() {
    // GTK 3 (in the window process) probes OpenGL, and so loads Mesa with LLVM (~30 MB),
    // only to pick visuals; WebKit renders in its own process. Inherited by the window.
    if std::env::var_os("GDK_GL").is_none() {
        std::env::set_var("GDK_GL", "disable");
    }
    // `--home DIR` (what a login item for a non-default home passes), else the environment.
    let args: Vec<std::ffi::OsString> = std::env::args_os().skip(1).collect();
    let explicit = match args.as_slice() {
        [] => None,
        [flag, dir] if flag == "--home" => Some(std::path::PathBuf::from(dir)),
        _ => {
            eprintln!("usage: viewport-tray [--home DIR]");
            std::process::exit(2);
        }
    };
    let home = match vpd_daemon::Home::resolve(explicit.as_deref()) {
        Ok(h) => h,
        Err(e) => {
            eprintln!("viewport-tray: {}", e.message);
            std::process::exit(1);
        }
    };
    let started = Instant::now();
    // The first start in this home: the common code folders become watched, and for the
    // default home the tray starts at login (issue 11 items 4 and 8); said in a notification.
    let default_home = explicit.is_none() && std::env::var_os("VIEWPORT_HOME").is_none_or(|v| v.is_empty());
    let first_run = tray_exe().and_then(|exe| vpd_daemon::first_run::set_up(&home, &exe, default_home));
    let core = match core::Core::start(home.clone()) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("viewport-tray: {}", e.message);
            std::process::exit(1);
        }
    };
    if core.thread.is_none() {
        // Attached: the daemon logs to its own files; the tray's own lines go to stderr.
        let filter = tracing_subscriber::EnvFilter::try_from_env("VPD_LOG").unwrap_or_else(|_| "info".into());
        let _ = tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr).try_init();
    }
    match first_run {
        Ok(Some(done)) => {
            // A daemon this tray attached to reads the new watched folders now.
            if !done.watched.is_empty() {
                if let Err(e) = vpd_daemon::api::client::ask(&home, calls::WatchedChanged, Duration::from_secs(5)) {
                    tracing::debug!(error = %e.message, "telling the daemon about the watched folders");
                }
            }
            tracing::info!(watched = ?done.watched, login_item = ?done.login_item, replaced = ?done.replaced, "first start in this home");
            let text = done.message();
            if !text.is_empty() {
                std::thread::spawn(move || {
                    let note = notifications::Note { summary: "Viewport is set up".into(), body: text, actions: vec![], open: None };
                    if let Err(e) = notifications::show(&note) {
                        tracing::warn!(error = %e, "no notification service");
                    }
                });
            }
        }
        Ok(None) => {}
        Err(e) => tracing::warn!(error = %e.message, "setting up the first start"),
    }
    let (wake_tx, wake_rx) = mpsc::channel();
    let (ui_tx, ui_rx) = mpsc::channel();
    let tray = Arc::new(Tray {
        core: Mutex::new(core),
        home,
        shown: Mutex::new(None),
        wake: Mutex::new(wake_tx),
        ui: Mutex::new(ui_tx),
        window: Mutex::new(None),
        quitting: AtomicBool::new(false),
        started,
        update: Mutex::new(None),
        updating: AtomicBool::new(false),
    });

    let t = tray.clone();
    MenuEvent::set_event_handler(Some(move |e: MenuEvent| on_menu(&t, e.id.0.as_str())));
    let t = tray.clone();
    std::thread::Builder::new().name("tray-refresh".into()).spawn(move || refresher(t, wake_rx)).expect("a thread");
    let t = tray.clone();
    std::thread::Builder::new().name("tray-events".into()).spawn(move || listen(t)).expect("a thread");
    let t = tray.clone();
    std::thread::Builder::new().name("tray-update".into()).spawn(move || check_updates(t)).expect("a thread");

    // The main thread owns the tray icon: it applies menu models until Quit. Without a
    // panel that shows StatusNotifierItems (a "host") the icon cannot be shown yet: the
    // core runs on (`vpd ui` works) and the icon is tried again every few seconds.
    let mut model = menu::unreachable(vpd_daemon::login_item::is_enabled());
    let mut icon_handle: Option<tray_icon::TrayIcon> = None;
    let mut warned = false;
    let t = tray.clone();
    let mut show = move |m: Option<MenuModel>| {
        if icon_handle.is_none() {
            let built = TrayIconBuilder::new()
                .with_id("viewport")
                .with_title("Viewport")
                .with_tooltip(&model.status_line)
                .with_icon(icon(model.health))
                .with_menu(Box::new(build_menu(&model)))
                .build();
            match built {
                Ok(i) => {
                    tracing::info!(ms = t.started.elapsed().as_millis() as u64, "tray icon shown");
                    icon_handle = Some(i);
                }
                Err(e) if !warned => {
                    warned = true;
                    tracing::warn!(error = %e, "cannot show the tray icon yet (no panel hosts StatusNotifierItems); trying again; meanwhile `vpd ui` opens the window and `vpd daemon stop` stops the tray");
                }
                Err(_) => {}
            }
        }
        if let Some(m) = m {
            if let Some(i) = &icon_handle {
                i.set_menu(Some(Box::new(build_menu(&m))));
                let _ = i.set_icon(Some(icon(m.health)));
                let _ = i.set_tooltip(Some(&m.status_line));
            }
            model = m;
        }
    };
    show(None);
    let t = tray.clone();
    event_loop::run(
        ui_rx,
        Duration::from_secs(3),
        move |next| match next {
            Some(Ui::Show(m)) => {
                show(Some(m));
                true
            }
            Some(Ui::Quit) => false,
            // A look again for a panel that hosts the icon.
            None => {
                show(None);
                true
            }
        },
        move || {
            if let Some(mut w) = t.window.lock().unwrap().take() {
                // Closing its stdin ends the window cleanly; kill it only if it does not go.
                drop(w.stdin.take());
                let deadline = Instant::now() + Duration::from_secs(2);
                while w.try_wait().ok().flatten().is_none() && Instant::now() < deadline {
                    std::thread::sleep(Duration::from_millis(20));
                }
                let _ = w.kill();
                let _ = w.wait();
            }
            t.core.lock().unwrap().stop();
        },
    )
}

/// What starts this tray again at login: the AppImage itself when it runs from one (its
/// binary lives in a mount that is gone after it quits), else this binary.
fn tray_exe() -> vpd_daemon::Result<std::path::PathBuf> {
    if let Some(image) = std::env::var_os("APPIMAGE").filter(|v| !v.is_empty()) {
        return Ok(image.into());
    }
    std::env::current_exe().map_err(|e| vpd_daemon::Error::io("finding the tray binary", e))
}

fn build_menu(m: &MenuModel) -> Menu {
    let menu = Menu::new();
    let add = |item: &dyn tray_icon::menu::IsMenuItem| {
        let _ = menu.append(item);
    };
    add(&MenuItem::with_id("status", &m.status_line, false, None));
    add(&PredefinedMenuItem::separator());
    match &m.pairing {
        Some(wait) => {
            add(&MenuItem::with_id("pair", wait.line(), false, None));
            if wait.confirm {
                add(&MenuItem::with_id("pair_window", "Open Viewport to confirm", true, None));
            } else if wait.url.is_some() {
                add(&MenuItem::with_id("pair_reopen", "Open approval page again", true, None));
            }
            add(&MenuItem::with_id("pair_cancel", "Cancel pairing", true, None));
        }
        None => add(&MenuItem::with_id("pair", "Pair with workspace…", true, None)),
    }
    for p in &m.pairings {
        let sub = Submenu::with_id(format!("org:{}", p.id), format!("{} — {}", p.name, p.state), true);
        let _ = sub.append(&MenuItem::with_id(format!("state:{}", p.id), format!("State: {}", p.state), false, None));
        let _ = sub.append(&MenuItem::with_id(format!("open:{}", p.id), "Open in browser", true, None));
        let _ = sub.append(&MenuItem::with_id(format!("unpair:{}", p.id), "Unpair…", true, None));
        add(&sub);
    }
    for (i, line) in m.waiting.iter().enumerate() {
        add(&MenuItem::with_id(format!("waiting:{i}"), line, false, None));
    }
    add(&PredefinedMenuItem::separator());
    if m.updating {
        add(&MenuItem::with_id("update", "Updating…", false, None));
    } else if let Some(v) = &m.update {
        add(&MenuItem::with_id("update", format!("Update available: install vpd {v}"), true, None));
    }
    add(&MenuItem::with_id("bind", "Bind a folder…", true, None));
    if m.install_cli {
        add(&MenuItem::with_id("install_cli", "Install command line tool", true, None));
    }
    add(&MenuItem::with_id("open_ui", "Open Viewport", true, None));
    add(&CheckMenuItem::with_id("autostart", "Start at login", true, m.start_at_login, None));
    add(&PredefinedMenuItem::separator());
    add(&MenuItem::with_id("quit", "Quit", true, None));
    menu
}

fn refresher(tray: Arc<Tray>, wake: mpsc::Receiver<()>) {
    let mut first = true;
    loop {
        if !tray.core.lock().unwrap().alive() {
            if tray.updating.load(Ordering::SeqCst) {
                // Stopped by the update, which restarts this tray into the new version.
                let _ = wake.recv_timeout(Duration::from_millis(200));
                continue;
            }
            if let Some(newer) = updated_tray() {
                // `vpd update` in a terminal stopped this tray's core: the new version takes over.
                restart_into(&tray, &newer);
            }
            tracing::info!("the daemon core stopped: the tray exits");
            tray.quit();
            return;
        }
        let login = vpd_daemon::login_item::is_enabled();
        let model = match tray.call(calls::GetStatus) {
            Ok(report) => {
                let wait = tray.call(calls::GetPairJob).ok().flatten().and_then(|v| menu::PairingWait::from_view(&v));
                menu::model(&report, login, wait)
            }
            Err(_) => {
                // An attached daemon went away: run the core here instead.
                let attached = tray.core.lock().unwrap().thread.is_none();
                if attached && !tray.quitting.load(Ordering::SeqCst) {
                    if let Ok(core) = core::Core::start(tray.home.clone()) {
                        tracing::info!(embedded = core.thread.is_some(), "the daemon went away; the tray started its own core");
                        *tray.core.lock().unwrap() = core;
                        continue;
                    }
                }
                menu::unreachable(login)
            }
        };
        let mut model = model;
        model.update = tray.update.lock().unwrap().as_ref().and_then(|f| match &f.offer {
            vpd_core::release::Offer::Newer(r) => Some(r.version.to_string()),
            _ => None,
        });
        model.updating = tray.updating.load(Ordering::SeqCst);
        model.install_cli = bundled_vpd().is_some_and(|v| !vpd_daemon::update::command_line_tool_installed(&v));
        let changed = tray.shown.lock().unwrap().as_ref() != Some(&model);
        if changed {
            let _ = tray.ui.lock().unwrap().send(Ui::Show(model.clone()));
            *tray.shown.lock().unwrap() = Some(model);
            if first {
                tracing::info!(ms = tray.started.elapsed().as_millis() as u64, "tray menu ready");
                first = false;
            }
        }
        // Reap a window process whose window was closed.
        {
            let mut w = tray.window.lock().unwrap();
            if w.as_mut().is_some_and(|c| c.try_wait().ok().flatten().is_some()) {
                *w = None;
            }
        }
        let _ = wake.recv_timeout(Duration::from_secs(2));
        while wake.try_recv().is_ok() {}
    }
}

/// Notifications for the daemon's activity, for as long as the tray runs.
fn listen(tray: Arc<Tray>) {
    // The in-process core started with this tray: everything it recorded is news (a watched
    // folder may have found suggestions before this thread subscribed). An attached daemon's
    // past is not.
    let mut since = tray.core.lock().unwrap().thread.is_some().then_some(0);
    loop {
        let Ok(events) = vpd_daemon::api::client::events(&tray.home, since) else {
            std::thread::sleep(Duration::from_secs(1));
            continue;
        };
        for activity in events {
            since = Some(activity.id);
            tray.refresh_soon();
            let Some(note) = notifications::note_for(&activity) else { continue };
            let tray = tray.clone();
            std::thread::spawn(move || match notifications::show(&note) {
                Ok(Some(action)) => on_notification_action(&tray, &activity, &note, &action),
                Ok(None) => {}
                Err(e) => tracing::warn!(error = %e, message = %note.body, "no notification service; the event is in the activity list"),
            });
        }
        if tray.quitting.load(Ordering::SeqCst) {
            return;
        }
        std::thread::sleep(Duration::from_millis(500));
    }
}

fn on_notification_action(tray: &Tray, a: &vpd_daemon::activity::Activity, note: &notifications::Note, action: &str) {
    let answer = match action {
        "bind" => Answer::Bind,
        "not_now" => Answer::Dismiss,
        "never" => Answer::Decline,
        _ => {
            open_window(tray, note.open.as_deref());
            return;
        }
    };
    let (Some(directory), Some(org_id)) = (a.directory.clone(), a.org_id.clone()) else { return };
    if let Err(e) = tray.call(protocol::SuggestionAnswerParams { directory, org_id, kind: a.suggestion, answer }) {
        tracing::warn!(error = %e.message, "answering a suggestion failed; opening the window");
        open_window(tray, note.open.as_deref());
    }
    tray.refresh_soon();
}

fn on_menu(tray: &Arc<Tray>, id: &str) {
    let tray = tray.clone();
    let id = id.to_string();
    // Menu events arrive on the tray protocol's thread: do the work elsewhere.
    std::thread::spawn(move || match id.as_str() {
        "pair" => pair(&tray),
        "open_ui" => open_window(&tray, None),
        // The window's Directories page, on its "Bind a folder" form.
        "bind" => open_window(&tray, Some("/#/directories?bind=1")),
        "pair_reopen" => {
            let wait = tray.shown.lock().unwrap().as_ref().and_then(|m| m.pairing.clone());
            if let Some(PairingWait { url: Some(url), code, .. }) = wait {
                if !open_browser(&url) {
                    browser_failed(&tray, &url, code.as_deref().unwrap_or_default());
                }
            }
        }
        "pair_window" => open_window(&tray, Some("/#/")),
        "pair_cancel" => {
            if let Err(e) = tray.call(calls::CancelPairJob) {
                tracing::warn!(error = %e.message, "cancelling the pairing");
            }
            tray.refresh_soon();
        }
        "autostart" => {
            let r = if vpd_daemon::login_item::is_enabled() {
                vpd_daemon::login_item::disable()
            } else {
                tray_exe().and_then(|exe| vpd_daemon::login_item::enable(&vpd_daemon::login_item::tray_entry(&exe, &tray.home)))
            };
            if let Err(e) = r {
                tracing::warn!(error = %e.message, "Start at login");
            }
            // Show the real state, whatever happened.
            *tray.shown.lock().unwrap() = None;
            tray.refresh_soon();
        }
        "update" => install_update(&tray),
        "install_cli" => {
            match bundled_vpd()
                .ok_or_else(|| "no vpd beside the tray".to_string())
                .and_then(|v| vpd_daemon::update::install_command_line_tool(&v).map_err(|e| e.message))
            {
                Ok(link) => {
                    tracing::info!(link = %link.display(), "installed the command line tool");
                    let note = notifications::Note {
                        summary: "Command line tool installed".into(),
                        body: format!("`vpd` is now {} (open a new terminal if it is not found yet)", link.display()),
                        actions: vec![],
                        open: None,
                    };
                    let _ = notifications::show(&note);
                }
                Err(e) => notify_error("The command line tool was not installed", &e),
            }
            *tray.shown.lock().unwrap() = None;
            tray.refresh_soon();
        }
        "quit" => tray.quit(),
        other => {
            if let Some(ws) = other.strip_prefix("open:") {
                let url = tray.shown.lock().unwrap().as_ref().and_then(|m| m.pairings.iter().find(|p| p.id == ws).map(|p| p.url.clone()));
                if let Some(url) = url {
                    open_browser(&url);
                }
            } else if let Some(ws) = other.strip_prefix("unpair:") {
                // The confirmation is the window's Unpair dialog, opened on this pairing.
                let ws = url::form_urlencoded::byte_serialize(ws.as_bytes()).collect::<String>();
                open_window(&tray, Some(&format!("/#/pairing/{ws}?unpair=1")));
            }
        }
    });
}

/// Opens a web page in the system browser; false when it could not.
fn open_browser(url: &str) -> bool {
    // Only a web page is opened (never another scheme).
    if !(url.starts_with("https://") || url.starts_with("http://")) {
        tracing::warn!(url, "not opening a non-web URL");
        return false;
    }
    match webbrowser::open(url) {
        Ok(()) => true,
        Err(e) => {
            tracing::warn!(error = %e, "cannot open the browser");
            false
        }
    }
}

/// The approval page could not be opened: a notification and the window give its address
/// and the code, to open by hand (or on another device).
fn browser_failed(tray: &Tray, url: &str, code: &str) {
    notify_error("Open this page to approve the pairing", &format!("{url}\nCode: {code}"));
    open_window(tray, Some("/#/"));
}

/// "Pair with workspace…": the daemon runs the pairing; the tray opens the approval page.
fn pair(tray: &Tray) {
    let server = std::env::var("VIEWPORT_SERVER_URL").ok().filter(|s| !s.is_empty());
    let params = protocol::PairParams { server, ..Default::default() };
    if let Err(e) = tray.call(calls::StartPairJob(params)) {
        notify_error("Pairing could not start", &e.message);
        return;
    }
    tray.refresh_soon();
    let deadline = Instant::now() + Duration::from_secs(20 * 60);
    let mut opened = false;
    while Instant::now() < deadline {
        let view = match tray.call(calls::GetPairJob) {
            Ok(Some(v)) => v,
            _ => return,
        };
        match view.state {
            PairJobState::Waiting if !opened => {
                if let Some(url) = &view.url {
                    opened = true;
                    tray.refresh_soon();
                    if !open_browser(url) {
                        browser_failed(tray, url, view.code.as_deref().unwrap_or_default());
                    }
                }
            }
            PairJobState::ConfirmReplace => {
                open_window(tray, Some("/#/"));
                while tray.call(calls::GetPairJob).ok().flatten().is_some_and(|v| v.state == PairJobState::ConfirmReplace) {
                    std::thread::sleep(Duration::from_millis(500));
                }
            }
            PairJobState::Failed => {
                notify_error("Pairing failed", view.error.as_deref().unwrap_or("unknown error"));
                break;
            }
            PairJobState::Done => {
                if view.waiting_bindings > 0 {
                    ask_resume(tray, &view);
                }
                break;
            }
            PairJobState::Cancelled => break,
            _ => {}
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    tray.refresh_soon();
}

/// SPEC A3: "Resume N directory bindings of …?" after a pairing made here, as a notification
/// with Resume / Not now (its click opens the window, which asks the same); without a yes
/// they stay inert.
fn ask_resume(tray: &Tray, view: &vpd_daemon::pair_job::PairView) {
    let (Some(pairing_id), n) = (view.pairing_id.clone(), view.waiting_bindings) else { return };
    let org = view.workspace_name.clone().unwrap_or_else(|| "the org".into());
    let note = notifications::Note {
        summary: "Resume directory bindings?".into(),
        body: format!("Resume {n} directory binding{} of {org}? Until you do, nothing streams from them.", if n == 1 { "" } else { "s" }),
        actions: vec![("resume", "Resume"), ("not_now", "Not now")],
        open: Some("/#/".into()),
    };
    match notifications::show(&note) {
        Ok(Some(a)) if a == "resume" => match tray.call(protocol::ResumeBindingsParams { pairing_id }) {
            Ok(resumed) => tracing::info!(resumed = resumed.len(), "resumed directory bindings"),
            Err(e) => notify_error("The directory bindings were not resumed", &e.message),
        },
        Ok(Some(a)) if a == "default" => open_window(tray, note.open.as_deref()),
        Ok(_) => {}
        // No notification service: the window asks instead.
        Err(_) => open_window(tray, Some("/#/")),
    }
    tray.refresh_soon();
}

fn notify_error(summary: &str, body: &str) {
    tracing::warn!("{summary}: {body}");
    let note = notifications::Note { summary: summary.into(), body: body.into(), actions: vec![], open: None };
    if let Err(e) = notifications::show(&note) {
        tracing::warn!(error = %e, "no notification service");
    }
}

/// Shows the web UI window on `next` (a UI path like `/#/activity`): tells a running window
/// process to go there, or starts one (`viewport-window`, next to this binary).
fn open_window(tray: &Tray, next: Option<&str>) {
    let t0 = Instant::now();
    let link = match tray.call(protocol::UiLinkParams { next: next.map(String::from) }) {
        Ok(l) => l,
        Err(e) => {
            notify_error("The Viewport window cannot open", &e.message);
            return;
        }
    };
    let mut window = tray.window.lock().unwrap();
    if let Some(child) = window.as_mut() {
        if child.try_wait().ok().flatten().is_none() {
            if let Some(stdin) = child.stdin.as_mut() {
                if writeln!(stdin, "{}", link.url).and_then(|_| stdin.flush()).is_ok() {
                    return;
                }
            }
        }
        let _ = child.kill();
        let _ = child.wait();
    }
    let window_binary = format!("viewport-window{}", std::env::consts::EXE_SUFFIX);
    let exe = std::env::current_exe().map(|e| e.with_file_name(&window_binary)).unwrap_or_else(|_| window_binary.into());
    // The login link goes on the window's stdin: process arguments are readable by other
    // local users (issue 12 item 2).
    let spawned = Command::new(&exe).stdin(Stdio::piped()).stdout(Stdio::piped()).spawn();
    match spawned {
        Ok(mut child) => {
            if let Some(stdin) = child.stdin.as_mut() {
                if let Err(e) = writeln!(stdin, "{}", link.url).and_then(|_| stdin.flush()) {
                    tracing::warn!(error = %e, "cannot hand the login link to the window");
                }
            }
            if let Some(out) = child.stdout.take() {
                std::thread::spawn(move || {
                    for line in std::io::BufReader::new(out).lines().map_while(Result::ok) {
                        if let Some(loaded) = line.strip_prefix("loaded ") {
                            let path = loaded.split(" (").next().unwrap_or(loaded);
                            tracing::info!(ms = t0.elapsed().as_millis() as u64, path, "window page loaded");
                        } else if let Some(url) = line.strip_prefix("open ") {
                            open_browser(url);
                        }
                    }
                });
            }
            *window = Some(child);
        }
        Err(e) => notify_error("The Viewport window cannot open", &format!("starting {}: {e}", exe.display())),
    }
}

/// The installation this tray runs from, when `vpd update` manages it: its root and the
/// version running.
fn installation() -> Option<(std::path::PathBuf, vpd_core::release::Version)> {
    match vpd_daemon::update::find_install(&std::env::current_exe().ok()?) {
        vpd_daemon::update::Install::Versioned { root, running, .. } => Some((root, running)),
        _ => None,
    }
}

/// The tray of a newer version `current` points at now (an update happened), if any.
fn updated_tray() -> Option<std::path::PathBuf> {
    let (root, running) = installation()?;
    let current = vpd_daemon::update::current_version(&root)?;
    let bin = vpd_daemon::update::current_bin(&root, "viewport-tray");
    (current != running && bin.is_file()).then_some(bin)
}

/// Looks for a newer release at the trusted source: at start, then every six hours. Only an
/// installation `vpd update` manages looks, and only with a source its user trusts.
fn check_updates(tray: Arc<Tray>) {
    let Some((_, running)) = installation() else { return };
    loop {
        match vpd_daemon::update::trust(&tray.home).and_then(|t| vpd_daemon::update::find(&t, running)) {
            Ok(found) => {
                if let vpd_core::release::Offer::Newer(r) = &found.offer {
                    tracing::info!(version = %r.version, "an update is available");
                }
                *tray.update.lock().unwrap() = Some(found);
                tray.refresh_soon();
            }
            Err(e) => tracing::debug!(error = %e.message, "no update check"),
        }
        std::thread::sleep(Duration::from_secs(6 * 3600));
    }
}

/// "Update available": the same code as `vpd update`; then this tray restarts into the new
/// version, whose core takes over the sessions the old one kept.
fn install_update(tray: &Arc<Tray>) {
    let Some(found) = tray.update.lock().unwrap().clone() else { return };
    let Some((root, running)) = installation() else { return };
    if tray.updating.swap(true, Ordering::SeqCst) {
        return;
    }
    tray.refresh_soon();
    let result = vpd_daemon::update::trust(&tray.home)
        .and_then(|trust| vpd_daemon::update::install(&tray.home, &trust, &root, &found, running, vpd_daemon::update::Restart::Caller, &mut |_| {}));
    match result {
        Ok(u) => {
            tracing::info!(from = %u.from, to = %u.to, "updated; restarting the tray into the new version");
            let bin = vpd_daemon::update::current_bin(&root, "viewport-tray");
            restart_into(tray, &bin);
            // Only if the new tray could not be started: run the daemon from the installation.
            let _ = vpd_daemon::update::start_daemon(&tray.home, &root, u.to);
            notify_error("Viewport was updated", &format!("vpd {} is installed; the tray could not restart: start it again", u.to));
            tray.quit();
        }
        Err(e) => {
            tray.updating.store(false, Ordering::SeqCst);
            // An update that failed after the core stopped: start it again here.
            if !tray.core.lock().unwrap().alive() {
                if let Ok(core) = core::Core::start(tray.home.clone()) {
                    *tray.core.lock().unwrap() = core;
                }
            }
            notify_error("The update was not installed", &e.message);
            tray.refresh_soon();
        }
    }
}

/// Replaces this process with `bin` (the tray of the new version), with the same arguments,
/// after closing the window. Returns only if that failed.
fn restart_into(tray: &Tray, bin: &std::path::Path) {
    if let Some(mut w) = tray.window.lock().unwrap().take() {
        drop(w.stdin.take());
        let _ = w.kill();
        let _ = w.wait();
    }
    tray.core.lock().unwrap().stop();
    let mut cmd = Command::new(bin);
    cmd.args(std::env::args_os().skip(1));
    let e = vpd_daemon::os::process::replace_with(cmd);
    tracing::error!(error = %e, bin = %bin.display(), "cannot start the updated tray");
}

/// The `vpd` that ships beside this tray (in the app bundle, the AppImage, the package).
fn bundled_vpd() -> Option<std::path::PathBuf> {
    let exe = std::env::current_exe().ok()?;
    let vpd = exe.with_file_name(format!("vpd{}", std::env::consts::EXE_SUFFIX));
    vpd.is_file().then_some(vpd)
}

//! The Viewport tray app (SPEC section 12): runs the vpd daemon core in-process (or attaches
//! to a running `vpd daemon`), shows a menu with the state of each pairing, sends OS
//! notifications, and shows the web UI in a window created on demand and destroyed when
//! closed (so an idle tray carries no webview processes).
//!
//! Layout: `core.rs` starts or attaches to the daemon; `menu.rs` is the pure menu model;
//! `notifications.rs` turns activity into notifications; this file is the Tauri glue.

#![cfg_attr(not(debug_assertions), windows_subsystem = "windows")]

mod core;
mod menu;
mod notifications;

use menu::MenuModel;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{mpsc, Arc, Mutex};
use std::time::{Duration, Instant};
use tauri::image::Image;
use tauri::menu::{CheckMenuItemBuilder, Menu, MenuBuilder, MenuItemBuilder, SubmenuBuilder};
use tauri::{AppHandle, Manager, RunEvent, WebviewUrl, WebviewWindowBuilder, Wry};
use tauri_plugin_dialog::{DialogExt, MessageDialogButtons, MessageDialogKind};
use tauri_plugin_opener::OpenerExt;
use vpd_daemon::api::protocol::{self, Request};
use vpd_daemon::pair_job::PairView;
use vpd_daemon::status::StatusReport;
use vpd_daemon::suggestions::Answer;

const TRAY_ID: &str = "viewport";
const WINDOW: &str = "main";

fn icon(health: &str) -> Image<'static> {
    let bytes: &'static [u8] = match health {
        "connected" => include_bytes!("../icons/tray-connected@2x.png"),
        "degraded" => include_bytes!("../icons/tray-degraded@2x.png"),
        "offline" => include_bytes!("../icons/tray-offline@2x.png"),
        _ => include_bytes!("../icons/tray-unpaired@2x.png"),
    };
    Image::from_bytes(bytes).expect("the tray icons are valid PNGs")
}

/// What every thread of the tray shares.
struct Tray {
    core: Mutex<core::Core>,
    home: vpd_daemon::Home,
    shown: Mutex<Option<MenuModel>>,
    /// Wakes the refresher (after an action) so the menu need not wait for its next look.
    wake: Mutex<mpsc::Sender<()>>,
    quitting: AtomicBool,
    started: Instant,
}

impl Tray {
    fn call<T: serde::de::DeserializeOwned>(&self, req: &Request) -> vpd_daemon::Result<T> {
        vpd_daemon::api::client::call(&self.home, req, Duration::from_secs(30))
    }
    fn refresh_soon(&self) {
        let _ = self.wake.lock().unwrap().send(());
    }
}

fn main() {
    // GTK 3 probes OpenGL (and so loads Mesa, with LLVM: ~30 MB) when it opens the X display,
    // only to pick visuals. The tray draws nothing with GL and WebKit renders in its own
    // process, so skip it unless the user asked otherwise. Set before any thread starts.
    if std::env::var_os("GDK_GL").is_none() {
        std::env::set_var("GDK_GL", "disable");
    }
    let home = match vpd_daemon::Home::from_env() {
        Ok(h) => h,
        Err(e) => {
            eprintln!("viewport-tray: {}", e.message);
            std::process::exit(1);
        }
    };
    let started = Instant::now();
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
    let (wake_tx, wake_rx) = mpsc::channel();
    let tray = Arc::new(Tray {
        core: Mutex::new(core),
        home,
        shown: Mutex::new(None),
        wake: Mutex::new(wake_tx),
        quitting: AtomicBool::new(false),
        started,
    });
    let context: tauri::Context<Wry> = tauri::generate_context!("tauri.conf.json");
    let app = tauri::Builder::default()
        .plugin(tauri_plugin_opener::init())
        .plugin(tauri_plugin_dialog::init())
        .manage(tray.clone())
        .setup(move |app| {
            let handle = app.handle().clone();
            let model = menu::unreachable(vpd_daemon::login_item::is_enabled());
            let m = build_menu(&handle, &model)?;
            tauri::tray::TrayIconBuilder::with_id(TRAY_ID)
                .icon(icon(model.health))
                .tooltip("Viewport")
                .menu(&m)
                .show_menu_on_left_click(true)
                .on_menu_event(|app, event| on_menu(app, event.id().as_ref()))
                .build(app)?;
            let t = tray.clone();
            std::thread::Builder::new().name("tray-refresh".into()).spawn(move || refresher(handle, t, wake_rx))?;
            let (handle, t) = (app.handle().clone(), tray.clone());
            std::thread::Builder::new().name("tray-events".into()).spawn(move || listen(handle, t))?;
            Ok(())
        })
        .build(context)
        .expect("the tray app starts");
    app.run(|app, event| {
        match event {
            // Closing the window must not end the tray; only Quit (an explicit exit code) does.
            RunEvent::ExitRequested { api, code: None, .. } if !app.state::<Arc<Tray>>().quitting.load(Ordering::SeqCst) => {
                api.prevent_exit();
            }
            RunEvent::Exit => app.state::<Arc<Tray>>().core.lock().unwrap().stop(),
            _ => {}
        }
    });
}

fn build_menu(app: &AppHandle, m: &MenuModel) -> tauri::Result<Menu<Wry>> {
    let status = MenuItemBuilder::with_id("status", &m.status_line).enabled(false).build(app)?;
    let mut b = MenuBuilder::new(app).item(&status).separator();
    b = if m.pairing_busy {
        b.item(&MenuItemBuilder::with_id("pair", "Pairing… (approve in the browser)").enabled(false).build(app)?)
    } else {
        b.text("pair", "Pair with workspace…")
    };
    for p in &m.pairings {
        let state = MenuItemBuilder::with_id(format!("state:{}", p.workspace_id), format!("State: {}", p.state)).enabled(false).build(app)?;
        let sub = SubmenuBuilder::new(app, format!("{} — {}", p.name, p.state))
            .item(&state)
            .text(format!("open:{}", p.workspace_id), "Open in browser")
            .text(format!("unpair:{}", p.workspace_id), "Unpair…")
            .build()?;
        b = b.item(&sub);
    }
    let login = CheckMenuItemBuilder::with_id("autostart", "Start at login").checked(m.start_at_login).build(app)?;
    b.separator().text("open_ui", "Open Viewport").item(&login).separator().text("quit", "Quit").build()
}

/// Keeps the menu and icon in step with the daemon: a look every 2 s (or at once when
/// woken), and a rebuild only when something shown changed.
fn refresher(app: AppHandle, tray: Arc<Tray>, wake: mpsc::Receiver<()>) {
    let mut first = true;
    loop {
        if !tray.core.lock().unwrap().alive() {
            tracing::info!("the daemon core stopped: the tray exits");
            tray.quitting.store(true, Ordering::SeqCst);
            app.exit(0);
            return;
        }
        let login = vpd_daemon::login_item::is_enabled();
        let model = match tray.call::<StatusReport>(&Request::Status) {
            Ok(report) => {
                let busy = tray.call::<Option<PairView>>(&Request::PairJob).ok().flatten().is_some_and(|v| {
                    matches!(v.state.as_str(), "starting" | "waiting" | "confirm_replace")
                });
                menu::model(&report, login, busy)
            }
            Err(_) => {
                // An attached daemon went away: run the core here instead.
                let attached = tray.core.lock().unwrap().thread.is_none();
                if attached {
                    if let Ok(core) = core::Core::start(tray.home.clone()) {
                        tracing::info!(embedded = core.thread.is_some(), "the daemon went away; the tray started its own core");
                        *tray.core.lock().unwrap() = core;
                        continue;
                    }
                }
                menu::unreachable(login)
            }
        };
        let changed = tray.shown.lock().unwrap().as_ref() != Some(&model);
        if changed {
            let (a, m) = (app.clone(), model.clone());
            let _ = app.run_on_main_thread(move || {
                if let (Some(t), Ok(menu)) = (a.tray_by_id(TRAY_ID), build_menu(&a, &m)) {
                    let _ = t.set_menu(Some(menu));
                    let _ = t.set_icon(Some(icon(m.health)));
                    let _ = t.set_tooltip(Some(&m.status_line));
                }
            });
            *tray.shown.lock().unwrap() = Some(model);
            if first {
                tracing::info!(ms = tray.started.elapsed().as_millis() as u64, "tray menu ready");
                first = false;
            }
        }
        let _ = wake.recv_timeout(Duration::from_secs(2));
        while wake.try_recv().is_ok() {}
    }
}

/// Notifications for the daemon's activity, for as long as the tray runs.
fn listen(app: AppHandle, tray: Arc<Tray>) {
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
            let (app, tray) = (app.clone(), tray.clone());
            std::thread::spawn(move || match notifications::show(&note) {
                Ok(Some(action)) => on_notification_action(&app, &tray, &activity, &note, &action),
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

fn on_notification_action(app: &AppHandle, tray: &Tray, a: &vpd_daemon::daemon::Activity, note: &notifications::Note, action: &str) {
    let answer = match action {
        "bind" => Answer::Bind,
        "not_now" => Answer::Dismiss,
        "never" => Answer::Decline,
        _ => {
            open_window(app, tray, note.open.as_deref());
            return;
        }
    };
    let (Some(directory), Some(org_id)) = (a.directory.clone(), a.org_id.clone()) else { return };
    let req = Request::SuggestionAnswer(protocol::SuggestionAnswerParams { directory, org_id, kind: a.suggestion.clone(), answer });
    if let Err(e) = tray.call::<serde_json::Value>(&req) {
        tracing::warn!(error = %e.message, "answering a suggestion failed; opening the window");
        open_window(app, tray, note.open.as_deref());
    }
    tray.refresh_soon();
}

fn on_menu(app: &AppHandle, id: &str) {
    let tray = app.state::<Arc<Tray>>().inner().clone();
    let app = app.clone();
    match id {
        "pair" => {
            std::thread::spawn(move || pair(&app, &tray));
        }
        "open_ui" => {
            std::thread::spawn(move || open_window(&app, &tray, None));
        }
        "autostart" => {
            std::thread::spawn(move || {
            let r = if vpd_daemon::login_item::is_enabled() {
                vpd_daemon::login_item::disable()
            } else {
                std::env::current_exe().map_err(|e| vpd_daemon::Error::io("finding the tray binary", e)).and_then(|exe| vpd_daemon::login_item::enable(&exe, &[]))
            };
            if let Err(e) = r {
                tracing::warn!(error = %e.message, "Start at login");
            }
            // Show the real state, whatever happened.
            *tray.shown.lock().unwrap() = None;
            tray.refresh_soon();
            });
        }
        "quit" => {
            tray.quitting.store(true, Ordering::SeqCst);
            std::thread::spawn(move || {
                tray.core.lock().unwrap().stop();
                app.exit(0);
            });
        }
        other => {
            if let Some(ws) = other.strip_prefix("open:") {
                let url = tray.shown.lock().unwrap().as_ref().and_then(|m| m.pairings.iter().find(|p| p.workspace_id == ws).map(|p| p.url.clone()));
                if let Some(url) = url {
                    if let Err(e) = app.opener().open_url(&url, None::<&str>) {
                        tracing::warn!(error = %e, "cannot open the browser");
                    }
                }
            } else if let Some(ws) = other.strip_prefix("unpair:") {
                let ws = ws.to_string();
                std::thread::spawn(move || unpair(&app, &tray, &ws));
            }
        }
    }
}

/// "Pair with workspace…": the daemon runs the pairing; the tray opens the approval page.
fn pair(app: &AppHandle, tray: &Tray) {
    let server = std::env::var("VIEWPORT_SERVER_URL").ok().filter(|s| !s.is_empty());
    let params = protocol::PairParams { server, ..Default::default() };
    if let Err(e) = tray.call::<PairView>(&Request::PairJobStart(params)) {
        notify_error("Pairing could not start", &e.message);
        return;
    }
    tray.refresh_soon();
    let deadline = Instant::now() + Duration::from_secs(20 * 60);
    let mut opened = false;
    while Instant::now() < deadline {
        let view = match tray.call::<Option<PairView>>(&Request::PairJob) {
            Ok(Some(v)) => v,
            _ => return,
        };
        match view.state.as_str() {
            "waiting" if !opened => {
                // Only a web page of the platform is opened (never another scheme).
                if let Some(url) = view.url.as_ref().filter(|u| u.starts_with("https://") || u.starts_with("http://")) {
                    opened = true;
                    if let Err(e) = app.opener().open_url(url, None::<&str>) {
                        tracing::warn!(error = %e, "cannot open the browser; showing the code in the window");
                        open_window(app, tray, Some("/#/"));
                    }
                }
            }
            "confirm_replace" => {
                open_window(app, tray, Some("/#/"));
                while tray.call::<Option<PairView>>(&Request::PairJob).ok().flatten().is_some_and(|v| v.state == "confirm_replace") {
                    std::thread::sleep(Duration::from_millis(500));
                }
            }
            "failed" => {
                notify_error("Pairing failed", view.error.as_deref().unwrap_or("unknown error"));
                break;
            }
            "done" | "cancelled" => break,
            _ => {}
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    tray.refresh_soon();
}

fn unpair(app: &AppHandle, tray: &Tray, workspace_id: &str) {
    let name = tray.shown.lock().unwrap().as_ref().and_then(|m| m.pairings.iter().find(|p| p.workspace_id == workspace_id).map(|p| p.name.clone()));
    let Some(name) = name else { return };
    let yes = app
        .dialog()
        .message(format!(
            "Unpair {name}?\n\nSessions streaming to it stop, directories bound to it are unbound, and the platform is told to revoke this machine."
        ))
        .title("Unpair")
        .kind(MessageDialogKind::Warning)
        .buttons(MessageDialogButtons::OkCancelCustom("Unpair".into(), "Cancel".into()))
        .blocking_show();
    if !yes {
        return;
    }
    if let Err(e) = tray.call::<protocol::Unpaired>(&Request::Unpair(protocol::UnpairParams { org: workspace_id.to_string() })) {
        notify_error("Unpair failed", &e.message);
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

/// Shows the web UI window (created now if needed) on `next` (a UI path like `/#/activity`).
fn open_window(app: &AppHandle, tray: &Tray, next: Option<&str>) {
    let t0 = Instant::now();
    let link = match tray.call::<protocol::UiLink>(&Request::UiLink(protocol::UiLinkParams { next: next.map(String::from) })) {
        Ok(l) => l,
        Err(e) => {
            notify_error("The Viewport window cannot open", &e.message);
            return;
        }
    };
    let Ok(url) = link.url.parse::<tauri::Url>() else { return };
    let app2 = app.clone();
    let _ = app.run_on_main_thread(move || {
        if let Some(w) = app2.get_webview_window(WINDOW) {
            let _ = w.navigate(url);
            let _ = w.show();
            let _ = w.set_focus();
            return;
        }
        let built = WebviewWindowBuilder::new(&app2, WINDOW, WebviewUrl::External(url))
            .title("Viewport")
            .inner_size(480.0, 720.0)
            .min_inner_size(360.0, 420.0)
            .on_page_load(move |_, payload| {
                if matches!(payload.event(), tauri::webview::PageLoadEvent::Finished) {
                    tracing::info!(ms = t0.elapsed().as_millis() as u64, url = %payload.url().path(), "window page loaded");
                }
            })
            .build();
        if let Err(e) = built {
            tracing::warn!(error = %e, "cannot open the window");
        }
    });
}

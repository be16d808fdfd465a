//! `viewport-window`: the Viewport window, a Tauri app showing the daemon's web UI at a
//! one-time login link, which the tray writes on its standard input (never in its
//! arguments, which other local users can read). The tray starts it on "Open Viewport" and
//! writes further URLs to its stdin (one per line) to show another page; it exits when its window is closed (or
//! when the tray goes away), so no webview process outlives the window.
//!
//! It prints `loaded <path>` on stdout each time a page has loaded (the tray logs it).
//!
//! "Bind a folder…" in the window offers a native folder picker (Tauri's dialog plugin):
//! the page, told by the user agent that it runs here, visits `/pick-folder`; the window
//! keeps that visit for itself, shows the picker, and brings the page back to
//! `#/directories?bind=1&path=…`. The page gets no IPC bridge and no injected script.

#![cfg_attr(not(debug_assertions), windows_subsystem = "windows")]

use std::io::{BufRead, Write};
use std::time::Instant;
use tauri::{Manager, WebviewUrl, WebviewWindowBuilder, Wry};
use tauri_plugin_dialog::DialogExt;

/// What the window's user agent carries so the page offers the native folder picker.
const UA_MARK: &str = concat!("ViewportWindow/", env!("CARGO_PKG_VERSION"));

/// The page the web UI visits to ask for the folder picker (never loaded).
const PICK_PATH: &str = "/pick-folder";

/// Where the page goes back to with the picked folder.
fn picked_url(home_origin: &str, folder: &std::path::Path) -> Option<tauri::Url> {
    let path = url::form_urlencoded::byte_serialize(folder.to_str()?.as_bytes()).collect::<String>();
    tauri::Url::parse(&format!("{home_origin}/#/directories?bind=1&path={path}")).ok()
}

/// Shows the native folder picker; a picked folder fills the page's "Bind a folder" form.
fn pick_folder(app: &tauri::AppHandle, home_origin: String) {
    let h = app.clone();
    let mut dialog = app.dialog().file().set_title("Bind a folder to a Viewport organization");
    if let Some(home) = std::env::var_os("HOME").filter(|h| !h.is_empty()) {
        dialog = dialog.set_directory(home);
    }
    dialog.pick_folder(move |picked| {
        let Some(folder) = picked.and_then(|p| p.into_path().ok()) else { return };
        let Some(u) = picked_url(&home_origin, &folder) else { return };
        let w = h.clone();
        let _ = h.run_on_main_thread(move || {
            if let Some(win) = w.get_webview_window("main") {
                let _ = win.navigate(u);
            }
        });
    });
}

/// `scheme://host:port` of a URL.
fn origin(u: &tauri::Url) -> String {
    format!("{}://{}:{}", u.scheme(), u.host_str().unwrap_or(""), u.port_or_known_default().unwrap_or(0))
}

/// Asks the tray to open a web page in the system browser (it opens http(s) only).
fn open_outside(u: &tauri::Url) {
    if matches!(u.scheme(), "http" | "https") {
        let mut out = std::io::stdout();
        let _ = writeln!(out, "open {u}");
        let _ = out.flush();
    }
}

/// Only the daemon's own loopback UI is ever shown in this window.
fn loopback_ui(url: &str) -> Option<tauri::Url> {
    let u = tauri::Url::parse(url).ok()?;
    let host_ok = matches!(u.host_str(), Some("127.0.0.1") | Some("localhost") | Some("[::1]"));
    (u.scheme() == "http" && host_ok && u.port().is_some()).then_some(u)
}

fn main() {
    if std::env::var_os("GDK_GL").is_none() {
        std::env::set_var("GDK_GL", "disable");
    }
    // The one-time login link arrives on standard input, never in the arguments: another
    // local user can read a process's arguments (`ps`), and on a system without the web UI's
    // same-user check the link alone would let them in.
    if std::env::args_os().len() > 1 {
        eprintln!("usage: viewport-window (started by the Viewport tray; it reads the login link on its standard input, never from its arguments)");
        std::process::exit(2);
    }
    let mut first = String::new();
    let _ = std::io::stdin().lock().read_line(&mut first);
    let Some(url) = loopback_ui(first.trim()) else {
        eprintln!("viewport-window: expected the Viewport UI's login link (http://127.0.0.1:PORT/login?t=…) on standard input");
        std::process::exit(2);
    };
    let t0 = Instant::now();
    let home_origin = origin(&url);
    let (nav_origin, new_origin, stdin_origin) = (home_origin.clone(), home_origin.clone(), home_origin.clone());
    let context: tauri::Context<Wry> = tauri::generate_context!("tauri.conf.json");
    tauri::Builder::default()
        .plugin(tauri_plugin_dialog::init())
        .setup(move |app| {
            let picker = app.handle().clone();
            WebviewWindowBuilder::new(app, "main", WebviewUrl::External(url))
                .title("Viewport")
                .user_agent(&format!("Mozilla/5.0 AppleWebKit/605.1.15 (KHTML, like Gecko) {UA_MARK}"))
                .inner_size(480.0, 720.0)
                .min_inner_size(360.0, 420.0)
                // The UI's own pages only; any other link (the platform's approval page) opens
                // in the system browser instead.
                .on_navigation(move |u| {
                    if origin(u) == nav_origin && u.path() == PICK_PATH {
                        pick_folder(&picker, home_origin.clone());
                        return false;
                    }
                    let inside = origin(u) == nav_origin;
                    if !inside {
                        open_outside(u);
                    }
                    inside
                })
                .on_new_window(move |u, _| {
                    if origin(&u) != new_origin {
                        open_outside(&u);
                    }
                    tauri::webview::NewWindowResponse::Deny
                })
                .on_page_load(move |_, payload| {
                    if matches!(payload.event(), tauri::webview::PageLoadEvent::Finished) {
                        let mut out = std::io::stdout();
                        let u = payload.url();
                        let fragment = u.fragment().map(|f| format!("#{f}")).unwrap_or_default();
                        let _ = writeln!(out, "loaded {}{fragment} ({} ms since start)", u.path(), t0.elapsed().as_millis());
                        let _ = out.flush();
                    }
                })
                .build()?;
            // More pages from the tray; the tray gone (stdin closed) ends the window.
            let handle = app.handle().clone();
            std::thread::spawn(move || {
                for line in std::io::stdin().lock().lines().map_while(Result::ok) {
                    let Some(u) = loopback_ui(line.trim()).filter(|u| origin(u) == stdin_origin) else { continue };
                    let h = handle.clone();
                    let _ = handle.run_on_main_thread(move || {
                        if let Some(w) = h.get_webview_window("main") {
                            let _ = w.navigate(u);
                            let _ = w.show();
                            let _ = w.unminimize();
                            let _ = w.set_focus();
                        }
                    });
                }
                handle.exit(0);
            });
            Ok(())
        })
        .run(context)
        .expect("the Viewport window starts");
}

#[cfg(test)]
mod tests {
    use super::{loopback_ui, picked_url};

    #[test]
    fn a_picked_folder_comes_back_as_the_bind_route() {
        let u = picked_url("http://127.0.0.1:7070", std::path::Path::new("/home/ann/clients/acme & co")).unwrap();
        assert_eq!(u.as_str(), "http://127.0.0.1:7070/#/directories?bind=1&path=%2Fhome%2Fann%2Fclients%2Facme+%26+co");
    }

    #[test]
    fn shows_only_the_loopback_ui() {
        assert!(loopback_ui("http://127.0.0.1:7070/login?t=x").is_some());
        assert!(loopback_ui("http://localhost:7070/").is_some());
        for bad in ["https://evil.example/", "http://127.0.0.1/", "file:///etc/passwd", "javascript:alert(1)", "http://127.0.0.1.evil.example:7070/"]
        {
            assert!(loopback_ui(bad).is_none(), "{bad}");
        }
    }
}

//! `viewport-window URL`: the Viewport window, a Tauri app showing the daemon's web UI at a
//! one-time login link. The tray starts it on "Open Viewport" and writes further URLs to
//! its stdin (one per line) to show another page; it exits when its window is closed (or
//! when the tray goes away), so no webview process outlives the window.
//!
//! It prints `loaded <path>` on stdout each time a page has loaded (the tray logs it).

#![cfg_attr(not(debug_assertions), windows_subsystem = "windows")]

use std::io::{BufRead, Write};
use std::time::Instant;
use tauri::{Manager, WebviewUrl, WebviewWindowBuilder, Wry};

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
    let Some(url) = std::env::args().nth(1).as_deref().and_then(loopback_ui) else {
        eprintln!("usage: viewport-window http://127.0.0.1:PORT/login?t=… (started by the Viewport tray)");
        std::process::exit(2);
    };
    let t0 = Instant::now();
    let context: tauri::Context<Wry> = tauri::generate_context!("tauri.conf.json");
    tauri::Builder::default()
        .setup(move |app| {
            WebviewWindowBuilder::new(app, "main", WebviewUrl::External(url))
                .title("Viewport")
                .inner_size(480.0, 720.0)
                .min_inner_size(360.0, 420.0)
                .on_page_load(move |_, payload| {
                    if matches!(payload.event(), tauri::webview::PageLoadEvent::Finished) {
                        let mut out = std::io::stdout();
                        let _ = writeln!(out, "loaded {} ({} ms since start)", payload.url().path(), t0.elapsed().as_millis());
                        let _ = out.flush();
                    }
                })
                .build()?;
            // More pages from the tray; the tray gone (stdin closed) ends the window.
            let handle = app.handle().clone();
            std::thread::spawn(move || {
                for line in std::io::stdin().lock().lines().map_while(Result::ok) {
                    let Some(u) = loopback_ui(line.trim()) else { continue };
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
    use super::loopback_ui;

    #[test]
    fn shows_only_the_loopback_ui() {
        assert!(loopback_ui("http://127.0.0.1:7070/login?t=x").is_some());
        assert!(loopback_ui("http://localhost:7070/").is_some());
        for bad in ["https://evil.example/", "http://127.0.0.1/", "file:///etc/passwd", "javascript:alert(1)", "http://127.0.0.1.evil.example:7070/"] {
            assert!(loopback_ui(bad).is_none(), "{bad}");
        }
    }
}

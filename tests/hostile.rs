//! Bad input from the platform and from the file system: each gives a clear error naming
//! the endpoint or file, and nothing is written, corrupted or deleted.

mod support;
use serde_json::json;
use std::time::{Duration, Instant};
use support::*;

fn created() -> String {
    json!({"code": "BCDF-GHJK", "status_token": "st", "expires_at": "2099-01-01T00:00:00Z",
           "verification_url": "http://127.0.0.1/pair?code=BCDF-GHJK"})
    .to_string()
}

fn approved(workspace_id: &str) -> String {
    json!({"status": "approved", "workspace_id": workspace_id, "workspace_name": "Evil", "workspace_slug": "evil",
           "install_id": "01J7M8N9P0Q1R2S3T4V5V6W7X1", "runtime_target_id": "01J7M8N9P0Q1R2S3T4V5V6W7X2",
           "machine_id": "01J7M8N9P0Q1R2S3T4V5V6W7X3", "machine_name": "m", "token": "a-long-enough-issue-token",
           "relay_endpoint": "ws://127.0.0.1:1/ws", "server_url": "http://127.0.0.1:1"})
    .to_string()
}

fn assert_nothing_written(m: &Machine) {
    assert_eq!(m.pairing_count(), 0, "no pairing stored");
    let ids = std::fs::read_dir(m.home().join("relay-identities")).map(|d| d.count()).unwrap_or(0);
    assert_eq!(ids, 0, "no identity stored");
}

fn pair_error(m: &Machine, url: &str) -> serde_json::Value {
    let e = m.fails(&["pair", "--server", url, "--no-browser"]);
    assert!(e["message"].as_str().unwrap().contains(url.trim_start_matches("http://")), "the error names the endpoint: {e}");
    e
}

#[test]
fn hostile_platform_answers() {
    let m = Machine::new();

    let url = fake_http(|_, _| http_answer("200 OK", "text/html", "<!doctype html><html><body>Viewport app</body></html>"));
    let e = pair_error(&m, &url);
    assert_eq!(e["code"], "bad_server_response");
    assert!(e["message"].as_str().unwrap().contains("HTML page"), "{e}");

    let url = fake_http(|_, _| http_answer("201 Created", "application/json", r#"{"code":"BCDF-GHJK","status_tok"#));
    let e = pair_error(&m, &url);
    assert!(e["message"].as_str().unwrap().contains("truncated JSON"), "{e}");

    let url = fake_http(|_, _| b"HTTP/1.1 201 Created\r\ncontent-type: application/json\r\ncontent-length: 500\r\n\r\n{\"code\":\"BC".to_vec());
    let e = pair_error(&m, &url);
    assert!(e["message"].as_str().unwrap().contains("dropped"), "relay drops mid-body: {e}");

    let url = fake_http(|_, _| http_answer("201 Created", "application/json", &format!("{{\"pad\":\"{}\"}}", "x".repeat(2 << 20))));
    let e = pair_error(&m, &url);
    assert!(e["message"].as_str().unwrap().contains("more than 1024 KiB"), "{e}");

    let url = fake_http(|_, _| http_answer("201 Created", "application/json", r#"{"code":"BCDF-GHJK"}"#));
    let e = pair_error(&m, &url);
    assert!(e["message"].as_str().unwrap().contains("missing field"), "missing fields: {e}");

    // An approval whose workspace id would escape the identities directory.
    let url = fake_http(|method, path| {
        if method == "POST" {
            http_answer("201 Created", "application/json", &created())
        } else if path.contains("/status") {
            http_answer("200 OK", "application/json", &approved("../../x"))
        } else {
            http_answer("404 Not Found", "application/json", r#"{"error":"not_found"}"#)
        }
    });
    let e = m.fails(&["pair", "--server", &url, "--no-browser"]);
    assert_eq!(e["code"], "bad_server_response");
    assert!(e["message"].as_str().unwrap().contains("not a ULID"), "{e}");
    assert!(!m.dir.path().join("x").exists() && !m.home().join("x").exists());

    // A relay endpoint on plain HTTP to a non-loopback host is refused.
    let url = fake_http(|method, _| {
        if method == "POST" {
            http_answer("201 Created", "application/json", &created())
        } else {
            http_answer(
                "200 OK",
                "application/json",
                &approved("01J7M8N9P0Q1R2S3T4V5V6W7X8").replace("ws://127.0.0.1:1/ws", "ws://relay.example.com/ws"),
            )
        }
    });
    let e = m.fails(&["pair", "--server", &url, "--no-browser"]);
    assert!(e["message"].as_str().unwrap().contains("refusing plain ws"), "{e}");

    // A 404 during the long poll ends it (the code is gone).
    let url = fake_http(|method, _| {
        if method == "POST" {
            http_answer("201 Created", "application/json", &created())
        } else {
            http_answer("404 Not Found", "application/json", r#"{"error":"not_found"}"#)
        }
    });
    let e = m.fails(&["pair", "--server", &url, "--no-browser"]);
    assert_eq!(e["code"], "pairing_code_invalid", "{e}");

    // Nothing listening.
    let port = free_port();
    let e = m.fails(&["pair", "--server", &format!("http://127.0.0.1:{port}"), "--no-browser"]);
    assert_eq!(e["code"], "server_unreachable");
    assert!(e["message"].as_str().unwrap().contains("could not connect"), "{e}");

    // Plain HTTP to a remote host is refused before anything is sent.
    let e = m.fails(&["pair", "--server", "http://viewport.example.com", "--no-browser"]);
    assert_eq!(e["code"], "insecure_url");

    assert_nothing_written(&m);
}

#[test]
fn hostile_binding_files_mean_local_only() {
    let m = Machine::new();
    let org = "01J7M8N9P0Q1R2S3T4V5V6W7X8";
    let cases: Vec<(&str, Vec<u8>, &str)> = vec![
        (
            "bomb",
            {
                let mut s = String::from("a: &a [x,x,x,x,x,x,x,x,x]\n");
                for i in 1..12u8 {
                    let (p, c) = ((b'a' + i - 1) as char, (b'a' + i) as char);
                    s.push_str(&format!("{c}: &{c} [*{p},*{p},*{p},*{p},*{p},*{p},*{p},*{p},*{p}]\n"));
                }
                s.push_str(&format!("org_id: {org}\nstreaming: enabled\n"));
                s.into_bytes()
            },
            "YAML",
        ),
        (
            "huge",
            {
                let mut v = format!("org_id: {org}\nstreaming: enabled\n").into_bytes();
                v.extend(std::iter::repeat_n(b'#', 10 << 20));
                v
            },
            "bytes",
        ),
        ("types", b"org_id: [1, 2]\nstreaming: {a: b}\n".to_vec(), "org_id must be a string"),
        ("streaming", format!("org_id: {org}\nstreaming: 1\n").into_bytes(), "streaming must be"),
        ("binary", vec![0xff, 0x00, 0xfe, 0x01], "UTF-8"),
    ];
    for (name, bytes, want) in cases {
        let d = m.mkdir(&format!("hostile/{name}"));
        std::fs::create_dir_all(d.join(".viewport")).unwrap();
        std::fs::write(d.join(".viewport/local.yaml"), &bytes).unwrap();
        let started = Instant::now();
        let r = m.ok(&["resolve", d.to_str().unwrap()]);
        assert!(started.elapsed() < Duration::from_secs(5), "{name} took {:?}", started.elapsed());
        assert_eq!((r["streaming"].as_bool(), r["reason"].as_str()), (Some(false), Some("binding_invalid")), "{name}: {r}");
        assert!(r["message"].as_str().unwrap().contains(want), "{name}: {r}");
        // The hint path says so too, without prompting.
        let h = m.ok(&["hint", d.to_str().unwrap()]);
        assert_eq!(h["action"], "warn", "{name}: {h}");
        assert_eq!(std::fs::read(d.join(".viewport/local.yaml")).unwrap(), bytes, "never rewritten");
    }
    // A huge workspace.yaml hint is refused unread too.
    let d = m.mkdir("hostile/hint");
    std::fs::create_dir_all(d.join(".viewport")).unwrap();
    std::fs::write(d.join(".viewport/workspace.yaml"), vec![b'a'; 10 << 20]).unwrap();
    assert_eq!(m.ok(&["hint", d.to_str().unwrap()])["action"], "warn");
}

#[test]
fn symlink_loops_and_odd_files() {
    let m = Machine::new();
    let base = m.mkdir("links");
    std::os::unix::fs::symlink(base.join("l1"), base.join("l2")).unwrap();
    std::os::unix::fs::symlink(base.join("l2"), base.join("l1")).unwrap();
    let e = m.fails(&["resolve", base.join("l1/sub").to_str().unwrap()]);
    assert!(e["message"].as_str().unwrap().contains("symlink loop"), "{e}");
    let d = m.mkdir("links/d");
    std::fs::create_dir_all(d.join(".viewport")).unwrap();
    std::os::unix::fs::symlink(d.join(".viewport/local.yaml"), d.join(".viewport/local.yaml")).unwrap();
    let r = m.ok(&["resolve", d.to_str().unwrap()]);
    assert_eq!(r["reason"], "binding_invalid", "{r}");
    let e2 = m.mkdir("links/e");
    std::os::unix::fs::symlink("/etc", e2.join(".viewport")).unwrap();
    assert_eq!(m.ok(&["resolve", e2.to_str().unwrap()])["reason"], "binding_invalid");
}

#[test]
fn corrupt_foreign_and_newer_config_is_refused_and_kept() {
    let m = Machine::new();
    std::fs::create_dir_all(m.home()).unwrap();
    let dir = m.mkdir("p");
    for (text, want) in [
        ("{\"version\": 1, \"pairings\": [", "config.json is not valid"),
        ("{\"version\": 7, \"pairings\": []}", "newer vpd"),
        ("<html>not json</html>", "config.json is not valid"),
    ] {
        std::fs::write(m.home().join("config.json"), text).unwrap();
        let e = m.fails(&["bind", dir.to_str().unwrap(), "--org", "acme"]);
        assert!(e["message"].as_str().unwrap().contains(want), "{e}");
        let st = m.ok(&["status"]);
        assert!(st["problems"][0].as_str().unwrap().contains(want), "{st}");
        let e = m.fails(&["unpair", "--org", "acme"]);
        assert!(e["message"].as_str().unwrap().contains("config.json"), "{e}");
        assert_eq!(std::fs::read_to_string(m.home().join("config.json")).unwrap(), text, "left untouched");
    }
    std::fs::remove_file(m.home().join("config.json")).unwrap();
    // A loose home is tightened, a symlinked config refused.
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(m.home(), std::fs::Permissions::from_mode(0o755)).unwrap();
    std::os::unix::fs::symlink("/etc/hostname", m.home().join("config.json")).unwrap();
    let e = m.fails(&["bind", dir.to_str().unwrap(), "--org", "acme"]);
    assert!(e["message"].as_str().unwrap().contains("not a regular file"), "{e}");
    assert_eq!(mode(&m.home()), 0o700, "home tightened to 0700");
}

#[test]
fn transient_failures_while_waiting_are_retried() {
    use std::sync::atomic::{AtomicUsize, Ordering};
    let m = Machine::new();
    let polls = std::sync::Arc::new(AtomicUsize::new(0));
    let seen = polls.clone();
    // Two 503s and a hang-up mid-answer, then the approval: the pairing completes.
    let url = fake_http(move |method, _| {
        if method == "POST" {
            return http_answer("201 Created", "application/json", &created());
        }
        match seen.fetch_add(1, Ordering::SeqCst) {
            0 | 1 => http_answer("503 Service Unavailable", "text/plain", "down for maintenance"),
            2 => b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: 900\r\n\r\n{\"status\":".to_vec(),
            _ => http_answer("200 OK", "application/json", &approved("01J7M8N9P0Q1R2S3T4V5V6W7X8")),
        }
    });
    let done = m.ok(&["pair", "--server", &url, "--no-browser"]);
    assert_eq!(done["event"], "paired", "{done}");
    assert!(polls.load(Ordering::SeqCst) >= 4);
    assert!(m.logs().contains("pairing status poll failed; retrying"));
    assert_eq!(m.pairing_count(), 1);
}

/// A server's approval link is opened only when it is http(s); anything else (`file://`) is
/// printed with a warning, never handed to the browser.
#[test]
fn only_web_approval_links_are_opened() {
    let m = Machine::new();
    let opened = m.path("opened.txt");
    let browser = m.path("fake-browser.sh");
    std::fs::write(&browser, format!("#!/bin/sh\necho \"$@\" >> {}\n", opened.display())).unwrap();
    std::fs::set_permissions(&browser, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
    let web = "http://127.0.0.1/pair?code=BCDF-GHJK";
    // The file link first, then a web link: the browser is started in the background, so
    // wait for the web link to arrive; anything the first pairing opened would be there too.
    for link in ["file:///etc/passwd", web] {
        let body = json!({"code": "BCDF-GHJK", "status_token": "st", "expires_at": "2099-01-01T00:00:00Z", "verification_url": link}).to_string();
        let url = fake_http(move |method, _| {
            if method == "POST" {
                http_answer("201 Created", "application/json", &body)
            } else {
                http_answer("200 OK", "application/json", r#"{"status":"denied"}"#)
            }
        });
        let out = m.command().env("BROWSER", &browser).args(["pair", "--server", &url]).output().unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains(link), "the link is printed: {err}");
        if link.starts_with("file:") {
            assert!(err.contains("only http and https links are opened"), "{err}");
        }
    }
    wait_until("the web link to reach the browser", Duration::from_secs(30), || std::fs::read_to_string(&opened).unwrap_or_default().contains(web));
    let was_opened = std::fs::read_to_string(&opened).unwrap();
    assert!(!was_opened.contains("file:"), "a file link reached the browser: {was_opened:?}");
}

/// A paired machine (one org, "acme") to bind with.
fn paired() -> (Server, Machine) {
    let server = Server::start();
    let org = server.org_with_member("Acme Engineering", "acme", "alice@example.com");
    let m = Machine::new();
    m.pair(&server, &org, "alice@example.com");
    (server, m)
}

fn mode_of(p: &std::path::Path) -> u32 {
    use std::os::unix::fs::PermissionsExt;
    std::fs::symlink_metadata(p).unwrap().permissions().mode() & 0o7777
}

fn is_root() -> bool {
    std::fs::metadata("/proc/self").map(|m| std::os::unix::fs::MetadataExt::uid(&m) == 0).unwrap_or(false)
}

/// Issue 10, item 4: what `vpd bind` writes inside a directory never goes through a link,
/// and a directory others may write is refused (or, for a group, warned about).
#[test]
fn binding_writes_never_follow_links_and_refuse_shared_directories() {
    use std::os::unix::fs::{symlink, PermissionsExt};
    let (_server, m) = paired();
    let victim = m.mkdir("victim");
    std::fs::write(victim.join("secret"), "s3cret").unwrap();
    std::fs::set_permissions(victim.join("secret"), std::fs::Permissions::from_mode(0o600)).unwrap();
    let untouched = |what: &str| {
        assert_eq!(mode_of(&victim.join("secret")), 0o600, "{what}: the victim's file keeps its mode");
        assert_eq!(std::fs::read_to_string(victim.join("secret")).unwrap(), "s3cret", "{what}");
        assert_eq!(std::fs::read_dir(&victim).unwrap().count(), 1, "{what}: nothing written into the victim's directory");
    };

    // `.viewport` is a link to another directory: refused, nothing written there.
    let a = m.mkdir("a");
    symlink(&victim, a.join(".viewport")).unwrap();
    let e = m.fails(&["bind", a.to_str().unwrap()]);
    assert!(e["message"].as_str().unwrap().contains("not a directory (a symlink or a file)"), "{e}");
    untouched(".viewport link");

    // `.viewport/.gitignore` is a link to the victim's file: refused with what to do, never
    // followed, and no binding file is left behind.
    let b = m.mkdir("b");
    std::fs::create_dir(b.join(".viewport")).unwrap();
    symlink(victim.join("secret"), b.join(".viewport/.gitignore")).unwrap();
    let e = m.fails(&["bind", b.to_str().unwrap()]);
    assert!(e["message"].as_str().unwrap().contains(".gitignore: is a symlink; vpd does not follow it — move it away"), "{e}");
    assert!(!b.join(".viewport/local.yaml").exists());
    untouched(".gitignore link");
    std::fs::remove_file(b.join(".viewport/.gitignore")).unwrap();
    m.ok(&["bind", b.to_str().unwrap()]);
    assert_eq!(mode_of(&b.join(".viewport/.gitignore")), 0o644, "set on the open file, whatever the umask");
    assert_eq!(mode_of(&b.join(".viewport/local.yaml")), 0o600);
    // A local.yaml swapped for a link: unbind removes the link, never what it points to.
    std::fs::remove_file(b.join(".viewport/local.yaml")).unwrap();
    symlink(victim.join("secret"), b.join(".viewport/local.yaml")).unwrap();
    let _ = m.vpd(&["unbind", b.to_str().unwrap()]);
    untouched("unbind of a link");

    // Writable by everyone without the sticky bit: refused, with what to do.
    let c = m.mkdir("c");
    std::fs::set_permissions(&c, std::fs::Permissions::from_mode(0o777)).unwrap();
    let e = m.fails(&["bind", c.to_str().unwrap()]);
    assert!(e["message"].as_str().unwrap().contains("can be written by every user") && e["message"].as_str().unwrap().contains("chmod o-w"), "{e}");
    assert!(!c.join(".viewport").exists(), "nothing written");
    // With the sticky bit (as /tmp): nobody can swap another's files.
    std::fs::set_permissions(&c, std::fs::Permissions::from_mode(0o1777)).unwrap();
    m.ok(&["bind", c.to_str().unwrap()]);

    if !is_root() {
        eprintln!("not root: the other-owner and other-group cases need chown; skipped");
        return;
    }
    // Owned by another user: refused. Writable by another group: bound, with a warning.
    let d = m.mkdir("d");
    std::os::unix::fs::chown(&d, Some(65534), Some(65534)).unwrap();
    let e = m.fails(&["bind", d.to_str().unwrap()]);
    assert!(e["message"].as_str().unwrap().contains("belongs to another user (uid 65534)"), "{e}");
    assert!(!d.join(".viewport").exists());
    let g = m.mkdir("g");
    std::os::unix::fs::chown(&g, None, Some(65534)).unwrap();
    std::fs::set_permissions(&g, std::fs::Permissions::from_mode(0o775)).unwrap();
    let out = m.vpd(&["bind", g.to_str().unwrap()]);
    assert!(out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("can be written by its group"), "{err}");
    let j = m.ok(&["bind", g.to_str().unwrap()]);
    assert!(j["warning"].as_str().unwrap().contains("its group"), "{j}");
}

/// Issue 10, item 4: another local user who may write the directory (its group) swaps
/// `.viewport` for links to the victim's directory, and for a directory of theirs whose files
/// are links to the victim's file, as fast as it can while the victim binds and unbinds; no
/// write and no mode change ever reaches the victim's files. The attacker is a thread of
/// this test that dropped to uid/gid 65534 (raw system calls change only the calling thread).
#[test]
fn another_user_racing_symlink_swaps_never_redirects_a_write() {
    use std::os::unix::fs::{symlink, PermissionsExt};
    use std::sync::atomic::{AtomicBool, Ordering};
    if !is_root() {
        eprintln!("needs root to run the attacker as another uid; skipped");
        return;
    }
    let (_server, m) = paired();
    // A place the other user can reach: the test's own directory is private.
    let open = tempfile::tempdir().unwrap();
    std::fs::set_permissions(open.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    let victim = open.path().join("victim");
    std::fs::create_dir(&victim).unwrap();
    std::fs::write(victim.join("secret"), "s3cret").unwrap();
    std::fs::set_permissions(victim.join("secret"), std::fs::Permissions::from_mode(0o600)).unwrap();
    let shared = open.path().join("shared");
    std::fs::create_dir(&shared).unwrap();
    std::os::unix::fs::chown(&shared, None, Some(65534)).unwrap();
    std::fs::set_permissions(&shared, std::fs::Permissions::from_mode(0o775)).unwrap();

    let stop = std::sync::Arc::new(AtomicBool::new(false));
    let attacker = {
        let (stop, shared, victim) = (stop.clone(), shared.clone(), victim.clone());
        std::thread::spawn(move || {
            // SAFETY: plain system calls on this thread's credentials.
            unsafe {
                assert_eq!(libc::syscall(libc::SYS_setgroups, 0, std::ptr::null::<libc::gid_t>()), 0);
                assert_eq!(libc::syscall(libc::SYS_setresgid, 65534, 65534, 65534), 0);
                assert_eq!(libc::syscall(libc::SYS_setresuid, 65534, 65534, 65534), 0);
            }
            let vp = shared.join(".viewport");
            let mut n = 0u64;
            while !stop.load(Ordering::Relaxed) {
                n += 1;
                let _ = std::fs::rename(&vp, shared.join(format!("stolen-{n}")));
                let _ = symlink(&victim, &vp);
                std::hint::spin_loop();
                let _ = std::fs::remove_file(&vp);
                if std::fs::create_dir(&vp).is_ok() {
                    let _ = symlink(victim.join("secret"), vp.join(".gitignore"));
                    let _ = symlink(victim.join("secret"), vp.join("local.yaml"));
                }
                let _ = std::fs::rename(&vp, shared.join(format!("own-{n}")));
                // A pause with nothing in the way now and then, so binds also get through
                // and the attack lands mid-bind.
                if n.is_multiple_of(2) {
                    std::thread::sleep(std::time::Duration::from_micros(300));
                }
            }
            n
        })
    };
    let (mut bound, mut refused) = (0, 0);
    let mut errors = std::collections::BTreeSet::new();
    for _ in 0..150 {
        let out = m.vpd(&["bind", shared.to_str().unwrap(), "--yes", "--json"]);
        if out.status.success() {
            bound += 1;
            let _ = m.vpd(&["unbind", shared.to_str().unwrap(), "--json"]);
        } else {
            refused += 1;
            let err: serde_json::Value = serde_json::from_slice(&out.stdout).expect("a JSON error");
            let msg = err["error"]["message"].as_str().expect("a clear error").to_string();
            errors.insert(msg.split(": ").last().unwrap_or(&msg).to_string());
        }
    }
    stop.store(true, Ordering::Relaxed);
    let swaps = attacker.join().unwrap();
    eprintln!("{bound} binds completed, {refused} refused while the other user made {swaps} rounds of swaps; errors: {errors:#?}");
    assert_eq!(mode_of(&victim.join("secret")), 0o600, "the victim's file keeps its mode");
    assert_eq!(std::fs::read_to_string(victim.join("secret")).unwrap(), "s3cret");
    let names: Vec<_> = std::fs::read_dir(&victim).unwrap().map(|e| e.unwrap().file_name()).collect();
    assert_eq!(names.len(), 1, "nothing written into the victim's directory: {names:?}");
}

//! The architecture's invariants, checked (in the manner of rust-analyzer's `tidy`): what
//! docs/ARCHITECTURE.md promises about who may do what is read off the source, so a change
//! that breaks a promise fails here instead of drifting silently. Each check says which
//! promise it keeps and where it is written down.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..").canonicalize().unwrap()
}

/// Every `.rs` file below `dir`, with its module path (`api/server.rs` → `api::server`).
fn modules(dir: &Path) -> BTreeMap<String, PathBuf> {
    fn walk(base: &Path, dir: &Path, out: &mut BTreeMap<String, PathBuf>) {
        for e in std::fs::read_dir(dir).unwrap().flatten() {
            let p = e.path();
            if p.is_dir() {
                walk(base, &p, out);
            } else if p.extension().is_some_and(|x| x == "rs") {
                let rel = p.strip_prefix(base).unwrap().with_extension("");
                let mut name = rel.to_string_lossy().replace('/', "::");
                if let Some(parent) = name.strip_suffix("::mod") {
                    name = parent.to_string();
                }
                out.insert(name, p);
            }
        }
    }
    let mut out = BTreeMap::new();
    walk(dir, dir, &mut out);
    out
}

/// A file's code: no comments, and nothing from its first `#[cfg(test)]` on.
fn code(path: &Path) -> String {
    let text = std::fs::read_to_string(path).unwrap();
    let text = text.split("#[cfg(test)]").next().unwrap_or("");
    text.lines().filter(|l| !l.trim_start().starts_with("//")).map(|l| l.split(" // ").next().unwrap_or(l)).collect::<Vec<_>>().join("\n")
}

/// The crate modules `module` (in `mods`) refers to through `crate::…` or `super::…` paths.
fn uses(module: &str, src: &str, mods: &BTreeMap<String, PathBuf>) -> BTreeSet<String> {
    let parent = module.rsplit_once("::").map(|(p, _)| p.to_string());
    let mut paths: Vec<String> = Vec::new();
    let mut rest = src;
    while let Some(i) = rest.find("crate::") {
        rest = &rest[i + 7..];
        if rest.starts_with('{') {
            let group = &rest[1..rest.find('}').unwrap_or(rest.len())];
            paths.extend(group.split(',').map(|s| s.split_whitespace().next().unwrap_or("").to_string()));
        } else {
            paths.push(rest.chars().take_while(|c| c.is_alphanumeric() || *c == '_' || *c == ':').collect());
        }
    }
    if let Some(parent) = &parent {
        let mut rest = src;
        while let Some(i) = rest.find("super::") {
            rest = &rest[i + 7..];
            let p: String = rest.chars().take_while(|c| c.is_alphanumeric() || *c == '_' || *c == ':').collect();
            paths.push(format!("{parent}::{p}"));
        }
    }
    let mut out = BTreeSet::new();
    for p in paths {
        let parts: Vec<&str> = p.split("::").filter(|s| !s.is_empty()).collect();
        for n in (1..=parts.len()).rev() {
            let cand = parts[..n].join("::");
            if mods.contains_key(&cand) {
                if cand != module && !module.starts_with(&format!("{cand}::")) {
                    out.insert(cand);
                }
                break;
            }
        }
    }
    out
}

/// The module graph of a crate's `src/`.
fn graph(src_dir: &Path) -> BTreeMap<String, BTreeSet<String>> {
    let mods = modules(src_dir);
    mods.iter().filter(|(m, _)| m.as_str() != "lib" && m.as_str() != "main").map(|(m, p)| (m.clone(), uses(m, &code(p), &mods))).collect()
}

/// The cycles of a graph (Tarjan's strongly connected components of more than one node).
fn cycles(g: &BTreeMap<String, BTreeSet<String>>) -> Vec<Vec<String>> {
    struct T<'a> {
        g: &'a BTreeMap<String, BTreeSet<String>>,
        index: BTreeMap<String, usize>,
        low: BTreeMap<String, usize>,
        stack: Vec<String>,
        on: BTreeSet<String>,
        out: Vec<Vec<String>>,
    }
    fn visit(t: &mut T, v: &str) {
        let i = t.index.len();
        t.index.insert(v.into(), i);
        t.low.insert(v.into(), i);
        t.stack.push(v.into());
        t.on.insert(v.into());
        for w in t.g.get(v).into_iter().flatten() {
            if !t.index.contains_key(w) {
                visit(t, w);
                let l = t.low[w].min(t.low[v]);
                t.low.insert(v.into(), l);
            } else if t.on.contains(w) {
                let l = t.index[w].min(t.low[v]);
                t.low.insert(v.into(), l);
            }
        }
        if t.low[v] == t.index[v] {
            let mut comp = Vec::new();
            while let Some(w) = t.stack.pop() {
                t.on.remove(&w);
                let done = w == v;
                comp.push(w);
                if done {
                    break;
                }
            }
            if comp.len() > 1 {
                comp.sort();
                t.out.push(comp);
            }
        }
    }
    let mut t = T { g, index: BTreeMap::new(), low: BTreeMap::new(), stack: Vec::new(), on: BTreeSet::new(), out: Vec::new() };
    for v in g.keys() {
        if !t.index.contains_key(v) {
            visit(&mut t, v);
        }
    }
    t.out
}

fn daemon_src() -> PathBuf {
    root().join("crates/vpd-daemon/src")
}

/// ARCHITECTURE.md: "no module imports in a circle inside vpd-daemon" — the facade sits above
/// the components, the transports above the facade, the process wiring on top.
#[test]
fn no_module_cycle_in_the_daemon() {
    let g = graph(&daemon_src());
    assert!(g.len() > 20, "the module scan found too little: {:?}", g.keys());
    assert_eq!(cycles(&g), Vec::<Vec<String>>::new(), "modules of vpd-daemon that import each other in a circle");
}

/// The scan itself finds a cycle when there is one (a test that cannot fail proves nothing).
#[test]
fn the_cycle_check_sees_a_cycle() {
    let mut g = BTreeMap::new();
    g.insert("a".to_string(), BTreeSet::from(["b".to_string()]));
    g.insert("b".to_string(), BTreeSet::from(["c".to_string()]));
    g.insert("c".to_string(), BTreeSet::from(["a".to_string()]));
    g.insert("d".to_string(), BTreeSet::from(["a".to_string()]));
    assert_eq!(cycles(&g), vec![vec!["a".to_string(), "b".to_string(), "c".to_string()]]);
    let mods: BTreeMap<String, PathBuf> = ["x", "y", "y::z"].iter().map(|m| (m.to_string(), PathBuf::new())).collect();
    assert_eq!(uses("x", "use crate::{y::z::Thing, error};\nfn f() { crate::y::f() }", &mods), BTreeSet::from(["y::z".to_string(), "y".to_string()]));
}

/// ARCHITECTURE.md: "the transports contain no domain logic": the local API and the web UI
/// call the backend; they reach no component and no file layer.
#[test]
fn transports_only_call_the_backend() {
    let g = graph(&daemon_src());
    let components = [
        "activity", "bridge", "bridges", "binding", "config", "identity", "pair_job", "records", "status", "watched", "platform", "store", "secrets",
    ];
    for transport in ["api::server", "webui"] {
        let reached: Vec<_> = g[transport].iter().filter(|m| components.contains(&m.as_str())).collect();
        assert!(reached.is_empty(), "{transport} reaches {reached:?} directly; go through backend::Backend");
        assert!(g[transport].contains("backend"), "{transport} does not use the backend");
    }
    // And the backend never knows its transports.
    for m in ["api::server", "webui", "daemon"] {
        assert!(!g["backend"].contains(m), "the backend imports {m}");
    }
}

/// ARCHITECTURE.md: "only `platform.rs` speaks HTTP to the platform".
#[test]
fn only_platform_rs_speaks_http() {
    for (m, p) in modules(&daemon_src()) {
        if m != "platform" {
            assert!(!code(&p).contains("reqwest::"), "{} uses reqwest; HTTP to the platform goes through platform.rs", p.display());
        }
    }
}

/// ARCHITECTURE.md: "nothing vpd writes inside a user's directory goes through a path":
/// the binding code writes, removes and changes modes only through `userdir.rs`.
#[test]
fn binding_writes_go_through_userdir() {
    let p = daemon_src().join("binding.rs");
    let src = code(&p);
    for needle in ["std::fs::write", "fs::create_dir", "fs::remove_file", "fs::remove_dir", "set_permissions", "store::write_atomic", "OpenOptions"] {
        assert!(!src.contains(needle), "{} uses {needle}; write inside users' directories through userdir.rs", p.display());
    }
    assert!(src.contains("UserDir::open"), "binding.rs writes through userdir.rs");
}

/// ARCHITECTURE.md: "only `walk.rs` reads binding files" (`.viewport/local.yaml` and
/// `.viewport/workspace.yaml`): everyone else asks walk.rs, so the bounded, link-refusing
/// read is the only one.
#[test]
fn only_walk_rs_reads_binding_files() {
    for (m, p) in modules(&daemon_src()) {
        if m == "walk" {
            continue;
        }
        let src = code(&p);
        for needle in
            ["join(\"local.yaml", "join(\".viewport/local.yaml", "join(\"workspace.yaml", "join(\".viewport/workspace.yaml", "MAX_BINDING_FILE"]
        {
            assert!(!src.contains(needle), "{} names a binding file ({needle}); use walk::local_file / walk::read_local", p.display());
        }
    }
}

/// ARCHITECTURE.md: "`vpd-core` has no I/O": no file system, network, process, clock or
/// async runtime, in its code or its dependencies.
#[test]
fn vpd_core_does_no_io() {
    let dir = root().join("crates/vpd-core");
    for (_, p) in modules(&dir.join("src")) {
        let src = code(&p);
        for banned in ["std::fs", "std::net", "std::process", "std::env", "SystemTime", "Instant::now", "tokio", "std::io::stdin", "File::"] {
            assert!(!src.contains(banned), "{} uses {banned}: vpd-core is pure policy", p.display());
        }
    }
    assert!(!code(&dir.join("src/release.rs")).contains("from_file"), "release.rs reads no file: it verifies the bytes it is given");
    let manifest = std::fs::read_to_string(dir.join("Cargo.toml")).unwrap();
    let deps = manifest.split("[dependencies]").nth(1).unwrap().split("\n[").next().unwrap();
    let names: Vec<&str> =
        deps.lines().filter_map(|l| l.split(['=', '.']).next()).map(str::trim).filter(|l| !l.is_empty() && !l.starts_with('#')).collect();
    for n in &names {
        // url: parsing only (server origins, SPEC A1). minisign-verify: release.rs verifies
        // bytes it is given (the crate's `from_file` readers are never called: the scan above
        // refuses `std::fs` and `File::` here, and release.rs is checked for `from_file`).
        // ed25519-dalek: release::describe checks a signature's description; serde_json:
        // the release manifest's shape.
        assert!(
            ["serde", "serde_yaml", "sha2", "base64", "url", "vpd-proto", "minisign-verify", "ed25519-dalek", "serde_json"].contains(n),
            "vpd-core depends on {n}: is it pure?"
        );
    }
}

/// ARCHITECTURE.md: "the tray binary never links the webview": the tray's modules do not use
/// tauri (its window is the separate `viewport-window`).
#[test]
fn the_tray_does_not_use_the_webview() {
    let dir = root().join("src-tauri");
    for f in ["main.rs", "core.rs", "menu.rs", "notifications.rs"] {
        let src = code(&dir.join(f));
        assert!(!src.contains("tauri::") && !src.contains("use tauri"), "src-tauri/{f} uses tauri: the tray must not link WebKit");
    }
    let main = std::fs::read_to_string(dir.join("main.rs")).unwrap();
    assert!(!main.contains("mod window"), "the window is its own binary");
}

/// docs/ARCHITECTURE.md's code map names every module of the daemon, and every file the code
/// map names exists.
#[test]
fn the_code_map_lists_every_daemon_module() {
    let doc = std::fs::read_to_string(root().join("docs/ARCHITECTURE.md")).unwrap();
    let section = doc.split("### `crates/vpd-daemon`").nth(1).unwrap().split("\n### ").next().unwrap();
    for (m, p) in modules(&daemon_src()) {
        if m == "lib" {
            continue;
        }
        let file = p.file_name().unwrap().to_string_lossy().to_string();
        let top = m.split("::").next().unwrap();
        let named = section.contains(&format!("`{file}`")) || section.contains(&format!("`{top}/`")) || section.contains(&format!("`{top}.rs`"));
        assert!(named, "docs/ARCHITECTURE.md's vpd-daemon code map does not mention {m} ({file})");
    }
    let mut rest = section;
    while let Some(i) = rest.find('`') {
        rest = &rest[i + 1..];
        let Some(j) = rest.find('`') else { break };
        let name = &rest[..j];
        rest = &rest[j + 1..];
        if name.ends_with(".rs") && !name.contains('/') && !name.contains(' ') {
            let found = modules(&daemon_src()).values().any(|p| p.file_name().is_some_and(|f| f == name));
            assert!(found, "docs/ARCHITECTURE.md names {name}, which vpd-daemon does not have");
        }
    }
}

/// Every `docs/….md` that the code or the docs point to exists.
#[test]
fn every_doc_named_exists() {
    let mut named = BTreeSet::new();
    let mut scan = |text: &str| {
        let mut rest = text;
        while let Some(i) = rest.find("docs/") {
            rest = &rest[i + 5..];
            let name: String = rest.chars().take_while(|c| c.is_ascii_alphanumeric() || *c == '_' || *c == '-' || *c == '.').collect();
            if let Some(n) = name.strip_suffix('.').map(str::to_string).or(Some(name)) {
                if n.ends_with(".md") {
                    named.insert(n);
                }
            }
        }
    };
    for dir in ["crates", "src-tauri", "docs", "scripts"] {
        fn each(p: &Path, f: &mut dyn FnMut(&str)) {
            for e in std::fs::read_dir(p).unwrap().flatten() {
                let p = e.path();
                if p.is_dir() {
                    each(&p, f);
                } else if p.extension().is_some_and(|x| x == "rs" || x == "md" || x == "sh") {
                    f(&std::fs::read_to_string(&p).unwrap_or_default());
                }
            }
        }
        each(&root().join(dir), &mut scan);
    }
    scan(&std::fs::read_to_string(root().join("README.md")).unwrap());
    assert!(!named.is_empty());
    for n in named {
        assert!(root().join("docs").join(&n).exists(), "docs/{n} is named but does not exist");
    }
}

/// ARCHITECTURE.md: "states and kinds are closed enums (`vpd_daemon::states`)": no Rust code
/// of the client compares a state, kind or level with a string literal.
#[test]
fn states_are_never_compared_with_strings() {
    let mut dirs = vec![daemon_src(), root().join("crates/vpd-cli/src")];
    dirs.push(root().join("src-tauri"));
    for dir in dirs {
        for (_, p) in modules(&dir) {
            let src = code(&p);
            for (n, line) in src.lines().enumerate() {
                let l = line.replace(' ', "");
                for field in ["state", "kind", "level", "credential_store", "health", "suggestion"] {
                    for op in ["==\"", "!=\""] {
                        assert!(!l.contains(&format!(".{field}{op}")), "{}:{}: compares {field} with a string: {line}", p.display(), n + 1);
                    }
                    assert!(!l.contains(&format!(".{field}.as_str()")), "{}:{}: matches {field} as a string: {line}", p.display(), n + 1);
                    assert!(!l.contains(&format!(".{field}.starts_with(")), "{}:{}: parses {field} text: {line}", p.display(), n + 1);
                }
            }
        }
    }
}

/// ARCHITECTURE.md (SPEC A10): "the update source and its key are set only by `vpd update
/// --source --trust-key` on the command line": `update::save_trust` is called from the CLI's
/// `update.rs` and nowhere else (no transport, no tray), `update.json` is named only by
/// `update.rs`, and the trust is never read from an environment variable at run time.
#[test]
fn only_the_command_line_sets_the_update_source() {
    let mut files: Vec<PathBuf> = Vec::new();
    for dir in ["crates/vpd-daemon/src", "crates/vpd-cli/src", "src-tauri"] {
        files.extend(modules(&root().join(dir)).into_values());
    }
    let setter = root().join("crates/vpd-cli/src/update.rs");
    let module = daemon_src().join("update.rs");
    for p in &files {
        let src = code(p);
        if *p != setter && *p != module {
            assert!(!src.contains("save_trust"), "{} sets the update source; only `vpd update --source` may", p.display());
            assert!(!src.contains("TRUST_FILE") && !src.contains("\"update.json\""), "{} touches update.json", p.display());
        }
    }
    let src = code(&module);
    let trust = &src[src.find("pub fn trust(").unwrap()..src.find("pub fn save_trust(").unwrap()];
    assert!(!trust.contains("env::var"), "update::trust reads the environment");
    assert!(src.contains("pub const TRUST_FILE: &str = \"update.json\""));
}

/// ARCHITECTURE.md (issue 12 item 3): "platform differences live in one module per concern":
/// outside the platform layer (`vpd-daemon/src/os/`) only the modules of the concerns that
/// are one OS's own — the login item (`login_item.rs`), the systemd unit (`service.rs`), the
/// inotify-backed facts cache (`facts_cache.rs`), the tray's notifications and its event
/// loop — choose code by OS or call the OS directly.
#[test]
fn platform_code_lives_in_the_platform_layer() {
    let allowed = [
        "crates/vpd-daemon/src/login_item.rs",
        "crates/vpd-daemon/src/service.rs",
        "crates/vpd-daemon/src/facts_cache.rs",
        "src-tauri/notifications.rs",
        "src-tauri/event_loop.rs",
    ];
    let needles =
        ["cfg(unix", "cfg(windows", "cfg(target_os", "cfg(all(", "cfg(not(", "cfg!(", "std::os::unix", "std::os::windows", "libc::", "windows_sys::"];
    for dir in ["crates/vpd-daemon/src", "crates/vpd-cli/src", "src-tauri"] {
        for p in modules(&root().join(dir)).into_values() {
            let rel = p.strip_prefix(root()).unwrap().to_string_lossy().to_string();
            if rel.starts_with("crates/vpd-daemon/src/os/") || allowed.contains(&rel.as_str()) {
                continue;
            }
            let src = code(&p);
            for n in needles {
                assert!(!src.contains(n), "{rel} uses {n}: platform code goes in vpd-daemon's os/ layer (docs/ARCHITECTURE.md)");
            }
        }
    }
}

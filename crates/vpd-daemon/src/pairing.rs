//! The pairing flow (SPEC section 4), as the daemon runs it: a fresh keypair, a code, the
//! long poll, checks on the approval, then storing the pairing. Nothing is written until an
//! approval has been checked, and once it has, storing runs to the end even if the client
//! goes away.

use crate::api::protocol::{PairEvent, PairParams, Paired};
use crate::config::{self, Credential, PairedOrg, Pairing, HOSTED_SERVER};
use crate::error::{Error, ErrorCode, Result};
use crate::home::Home;
use crate::identity::{self, Identity};
use crate::platform::{check_url, CallError, Platform};
use crate::secrets;
use std::time::Duration;
use tokio::sync::mpsc;
use vpd_proto::pairing::{Approved, CreatePairingCode, PairingStatus, Platform as PlatformInfo, KEY_ALGORITHM, MAX_WAIT_SECS};
use vpd_proto::runtime::RuntimeCredential;
use vpd_proto::{is_ulid, normalize_code, Secret};

/// How the flow talks to whoever asked for it (CLI, tray, web UI).
pub struct PairUi {
    pub events: mpsc::Sender<PairEvent>,
    /// Answers to `ConfirmReplace`; a closed channel means "no".
    pub confirms: mpsc::Receiver<bool>,
    /// Becomes `true` when the asker goes away (Ctrl-C): the code is cancelled on the
    /// platform, or an approval that already arrived is revoked.
    pub cancelled: tokio::sync::watch::Receiver<bool>,
}

/// Runs a pairing to its end. Once an approval has arrived, the rest (checks, the
/// replace question, storing or revoking) runs in a task of its own, so a caller that goes
/// away cannot leave an approved but unrevoked pairing behind.
pub async fn run(home: &Home, store: &secrets::Store, params: PairParams, mut ui: PairUi) -> Result<Paired> {
    let current = config::load(home)?;
    let server = params
        .server
        .clone()
        .filter(|s| !s.trim().is_empty())
        .or_else(|| current.daemon.default_server_url.clone())
        .unwrap_or_else(|| HOSTED_SERVER.to_string());
    if let Some(pem) = &params.ca_pem {
        crate::tls::parse_ca(pem)?;
    }
    // The shell's proxy settings, recorded before the first call goes out so it uses them.
    if let Some(env) = params.proxy.clone().filter(|e| !e.is_empty()) {
        crate::proxy::Proxies::new(env.clone(), crate::proxy::Source::Recorded)?;
        let recorded = env.clone();
        config::update(home, move |c| {
            c.daemon.proxy = Some(recorded);
            Ok(())
        })?;
        crate::proxy::set_recorded(Some(env));
    }
    let platform = Platform::new(&server, params.insecure_http, params.ca_pem.as_deref())?;
    let origin = vpd_core::origin::server_origin(platform.base().as_str()).map_err(|e| Error::new(ErrorCode::InvalidArgument, e))?;
    if let (Some(org), false) = (&params.org, params.force) {
        // SPEC A1: only a pairing with this same server is "already paired"; the same org on
        // another server is another pairing.
        if let Some(p) = current.select_on(&origin, org) {
            return Err(already_paired(p));
        }
    }

    let id = Identity::generate()?;
    let request = CreatePairingCode {
        name: params.name.clone().filter(|n| !n.trim().is_empty()).unwrap_or_else(crate::home::machine_name),
        public_key: id.public_key_b64(),
        key_algorithm: KEY_ALGORITHM.into(),
        daemon_version: crate::VERSION.into(),
        platform: PlatformInfo { os: std::env::consts::OS.into(), arch: std::env::consts::ARCH.into() },
        requested_org: params.org.clone(),
    };
    tracing::info!(server = %platform.base(), fingerprint = %id.fingerprint(), "pairing started");

    let approved = match &params.code {
        Some(code) => {
            let code = normalize_code(code)
                .ok_or_else(|| Error::new(ErrorCode::InvalidArgument, format!("{code:?} is not a pairing code (8 letters like BCDF-GHJK)")))?;
            match platform.claim(&code, &request).await.map_err(|e| code_error(e, "claiming the code"))? {
                PairingStatus::Approved(a) => *a,
                other => return Err(Error::new(ErrorCode::BadServerResponse, format!("claiming a code answered {other:?} instead of an approval"))),
            }
        }
        None => wait_for_approval(&platform, &request, &id, &mut ui).await?,
    };
    let task = tokio::spawn(finish(home.clone(), store.clone(), params, platform, approved, id, ui));
    task.await.map_err(|e| Error::new(ErrorCode::Internal, format!("pairing task: {e}")))?
}

async fn finish(
    home: Home,
    store: secrets::Store,
    params: PairParams,
    platform: Platform,
    approved: Approved,
    id: Identity,
    mut ui: PairUi,
) -> Result<Paired> {
    let home = &home;
    let approved = match check_approval(approved.clone(), params.insecure_http) {
        Ok(a) => a,
        Err(e) => {
            if is_ulid(&approved.workspace_id) && is_ulid(&approved.runtime_target_id) {
                revoke_quietly(&platform, &approved).await;
            }
            return Err(e);
        }
    };
    let server_url = platform.base().as_str().trim_end_matches('/').to_string();
    // The origin the daemon itself contacted (SPEC A1) — never one from the server's answer.
    let origin = vpd_core::origin::server_origin(&server_url).map_err(|e| Error::new(ErrorCode::InvalidArgument, e))?;
    let pairing_id = vpd_core::origin::pairing_id(&origin, &approved.workspace_id);

    if let Some(org) = &params.org {
        let matches = approved.workspace_id == *org || approved.workspace_slug == *org || approved.workspace_name.eq_ignore_ascii_case(org);
        if !matches {
            revoke_quietly(&platform, &approved).await;
            return Err(Error::new(
                ErrorCode::OrgMismatch,
                format!(
                    "this machine was approved for {} ({}), but you asked for --org {org}. That pairing was not kept (and was revoked on the server). Run `vpd pair --org {org}` again and pick {org} in the browser.",
                    approved.workspace_name, approved.workspace_slug
                ),
            ));
        }
    }

    // Only a pairing with the same org on the same server is replaced; `--force` never
    // crosses servers.
    let existing = config::load(home)?.by_id(&pairing_id).cloned();
    if let Some(old) = &existing {
        if !params.force {
            let _ = ui
                .events
                .send(PairEvent::ConfirmReplace {
                    workspace_id: old.workspace_id.clone(),
                    workspace_name: old.workspace_name.clone(),
                    old_server: old.server.clone(),
                    new_server: origin.clone(),
                })
                .await;
            if !ui.confirms.recv().await.unwrap_or(false) {
                revoke_quietly(&platform, &approved).await;
                return Err(already_paired(old));
            }
        }
    }

    if *ui.cancelled.borrow() {
        revoke_quietly(&platform, &approved).await;
        return Err(Error::new(ErrorCode::Cancelled, "cancelled; the approval that had arrived was revoked"));
    }
    let (home2, store2) = (home.clone(), store.clone());
    let ca_pem = params.ca_pem.clone();
    let stored =
        tokio::task::spawn_blocking(move || store_pairing(&home2, &store2, &approved, &id, &origin, &server_url, params.insecure_http, ca_pem))
            .await
            .map_err(|e| Error::new(ErrorCode::Internal, format!("storing the pairing: {e}")))??;

    let replaced = existing.is_some();
    if let Some(old) = existing {
        // The old pairing is replaced locally; tell the platform it is gone.
        if let Ok(cred) = credential_of(&old) {
            if let Err(e) = tell_platform_unpaired(&old, cred).await {
                tracing::warn!(workspace = %old.workspace_id, error = %e, "could not tell the platform about the replaced pairing");
            }
        }
        // The keyring entry is the pairing's (same pairing id): the new token replaced it.
    }
    tracing::info!(workspace = %stored.workspace_id, "paired");
    Ok(Paired { credential_store: stored.credential.store_kind(), org: stored.org, replaced })
}

fn already_paired(p: &Pairing) -> Error {
    Error::new(
        ErrorCode::AlreadyPaired,
        format!(
            "this machine is already paired with {} ({}) on {}. To replace that pairing, run `vpd pair --server {} --org {} --force`.",
            p.workspace_name, p.workspace_id, p.server, p.server, p.workspace_slug
        ),
    )
}

fn code_error(e: CallError, what: &str) -> Error {
    match e {
        CallError::Refused { status: 404, .. } => Error::new(
            ErrorCode::PairingCodeInvalid,
            format!("{what}: the pairing code is unknown, expired or already used. Get a new one (\"Add machine\" on the platform, or `vpd pair`)."),
        ),
        CallError::Refused { status: 429, .. } => {
            Error::new(ErrorCode::ServerRefused, format!("{what}: too many attempts; wait a minute and try again"))
        }
        other => other.into_error(),
    }
}

async fn wait_for_approval(platform: &Platform, request: &CreatePairingCode, id: &Identity, ui: &mut PairUi) -> Result<Approved> {
    let created = platform.create_code(request).await.map_err(|e| code_error(e, "creating a pairing code"))?;
    let code = normalize_code(&created.code)
        .ok_or_else(|| Error::new(ErrorCode::BadServerResponse, format!("the server sent {:?}, which is not a pairing code", created.code)))?;
    let expires: jiff::Timestamp = created
        .expires_at
        .parse()
        .map_err(|_| Error::new(ErrorCode::BadServerResponse, format!("the server sent expires_at {:?}, which is not a time", created.expires_at)))?;
    let _ = ui
        .events
        .send(PairEvent::Code {
            code: vpd_proto::format_code(&code),
            url: created.verification_url.clone(),
            expires_at: created.expires_at.clone(),
            fingerprint: id.fingerprint(),
            server_url: platform.base().to_string(),
        })
        .await;
    let mut backoff = Duration::from_secs(1);
    loop {
        let left = expires.duration_since(jiff::Timestamp::now()).as_secs();
        if left <= 0 {
            return Err(expired());
        }
        let poll = tokio::select! {
            r = platform.status(&code, &created.status_token, (left as u64).min(MAX_WAIT_SECS)) => r,
            _ = cancelled(&mut ui.cancelled) => {
                if let Err(e) = platform.cancel(&code, &created.status_token).await {
                    tracing::warn!(error = ?e, "could not cancel the pairing code on the platform");
                }
                return Err(Error::new(ErrorCode::Cancelled, "pairing cancelled; the code can no longer be approved"));
            }
        };
        match poll {
            Ok(PairingStatus::Pending) => backoff = Duration::from_secs(1),
            Ok(PairingStatus::Approved(a)) => return Ok(*a),
            Ok(PairingStatus::Denied) => {
                return Err(Error::new(ErrorCode::PairingDenied, "the pairing was denied in the browser; nothing was stored"))
            }
            Ok(PairingStatus::Expired) => return Err(expired()),
            Err(CallError::Transient(why)) => {
                tracing::warn!(%why, "pairing status poll failed; retrying");
                tokio::select! {
                    _ = tokio::time::sleep(backoff) => {}
                    _ = cancelled(&mut ui.cancelled) => return Err(Error::new(ErrorCode::Cancelled, "pairing cancelled")),
                }
                backoff = (backoff * 2).min(Duration::from_secs(10));
            }
            Err(e) => return Err(code_error(e, "waiting for approval")),
        }
    }
}

/// Resolves once the asker has gone away (or can no longer say so).
async fn cancelled(rx: &mut tokio::sync::watch::Receiver<bool>) {
    let _ = rx.wait_for(|c| *c).await;
}

fn expired() -> Error {
    Error::new(ErrorCode::PairingExpired, "the pairing code expired before it was approved; run `vpd pair` again")
}

/// Checks an approval before anything is written: ids are ULIDs, URLs are acceptable.
fn check_approval(a: Approved, insecure_http: bool) -> Result<Approved> {
    let bad = |m: String| Error::new(ErrorCode::BadServerResponse, format!("the approval from the server is not usable: {m}; nothing was stored"));
    for (name, v) in
        [("workspace_id", &a.workspace_id), ("install_id", &a.install_id), ("runtime_target_id", &a.runtime_target_id), ("machine_id", &a.machine_id)]
    {
        if !is_ulid(v) {
            return Err(bad(format!("{name} {v:?} is not a ULID")));
        }
    }
    for (name, v) in [("workspace_name", &a.workspace_name), ("workspace_slug", &a.workspace_slug), ("machine_name", &a.machine_name)] {
        if v.is_empty() || v.len() > 200 || v.chars().any(char::is_control) {
            return Err(bad(format!("{name} is empty, too long or has control characters")));
        }
    }
    if a.token.expose().len() < 16 || a.token.expose().len() > 4096 {
        return Err(bad("the issue token has an implausible length".into()));
    }
    let relay = check_url(&a.relay_endpoint, insecure_http).map_err(|e| bad(format!("relay_endpoint: {}", e.message)))?;
    if !matches!(relay.scheme(), "ws" | "wss") {
        return Err(bad(format!("relay_endpoint {:?} is not a ws:// or wss:// URL", a.relay_endpoint)));
    }
    Ok(a)
}

#[allow(clippy::too_many_arguments)]
fn store_pairing(
    home: &Home,
    store: &secrets::Store,
    a: &Approved,
    id: &Identity,
    origin: &str,
    server_url: &str,
    insecure_http: bool,
    ca_pem: Option<String>,
) -> Result<Pairing> {
    let org = PairedOrg::approved(a, origin, server_url);
    let credential = match store {
        secrets::Store::Keyring => match secrets::put(&org.pairing_id, &a.token) {
            Ok(()) => Credential::Keyring,
            Err(e) => {
                tracing::warn!(error = %e, "keyring write failed; keeping the issue token in config.json (0600)");
                Credential::File { issue_token: a.token.clone() }
            }
        },
        secrets::Store::File { .. } => Credential::File { issue_token: a.token.clone() },
    };
    // The key is committed together with config.json: a pending file first, then the config
    // entry, then the rename (identity::recover finishes or drops it after a crash).
    let owner = identity::Owner { pairing_id: &org.pairing_id, workspace_id: &org.workspace_id };
    identity::save_pending(home, owner, &a.runtime_target_id, id)?;
    crate::failpoint("pair:after-identity");
    let pairing = Pairing { org, credential, ca_pem, insecure_http };
    let p = pairing.clone();
    let server = server_url.to_string();
    config::update(home, move |c| {
        c.pairings.retain(|x| x.pairing_id != p.pairing_id);
        c.pairings.push(p);
        c.daemon.default_server_url = Some(server);
        Ok(())
    })?;
    crate::failpoint("pair:after-config");
    if !identity::commit_pending(home, &pairing.pairing_id, &a.runtime_target_id)? {
        return Err(Error::new(ErrorCode::Internal, "another pairing with the same org finished at the same time; run `vpd status`"));
    }
    Ok(pairing)
}

/// The issue token of a pairing, wherever it lives.
pub fn credential_of(p: &Pairing) -> Result<Secret> {
    match &p.credential {
        Credential::File { issue_token } => Ok(issue_token.clone()),
        // Under the pairing id; a version 1 home kept it under the runtime target id, where
        // it stays readable if the upgrade could not move it (crate::migrate).
        Credential::Keyring => secrets::get(&p.pairing_id).or_else(|e| secrets::get(&p.runtime_target_id).map_err(|_| e)),
    }
}

/// `POST /api/runtime/unpair` for a pairing this machine gives up (best-effort, 5 s). A
/// pairing the platform already revoked or no longer knows counts as told.
async fn tell_platform_unpaired(p: &Pairing, credential: Secret) -> std::result::Result<(), String> {
    let platform = Platform::new(&p.server_url, p.insecure_http, p.ca_pem.as_deref()).map_err(|e| e.message)?;
    let body = RuntimeCredential { workspace_id: p.workspace_id.clone(), runtime_target_id: p.runtime_target_id.clone(), credential };
    match platform.unpair(&body, Duration::from_secs(5)).await {
        Ok(()) => Ok(()),
        Err(CallError::Refused { error, .. }) if error == "revoked" || error == "workspace_not_found" => Ok(()),
        Err(e) => Err(e.into_error().message),
    }
}

async fn revoke_quietly(platform: &Platform, a: &Approved) {
    let body =
        RuntimeCredential { workspace_id: a.workspace_id.clone(), runtime_target_id: a.runtime_target_id.clone(), credential: a.token.clone() };
    if let Err(e) = platform.unpair(&body, Duration::from_secs(5)).await {
        tracing::warn!(error = ?e, "could not revoke an unwanted approval on the platform");
    }
}

/// `vpd rename NAME [--org ORG]`: the platform first (it must accept the name), then
/// `config.json`, so what this machine shows is what the org's Machines page shows.
pub async fn rename(home: &Home, org: Option<&str>, name: &str) -> Result<crate::api::protocol::Renamed> {
    let name = name.trim().to_string();
    if name.is_empty() || name.chars().count() > 100 || name.chars().any(|c| !vpd_proto::limits::allowed(c)) {
        return Err(Error::new(ErrorCode::InvalidArgument, "a machine name is 1-100 characters, without control or invisible characters"));
    }
    let home2 = home.clone();
    let org = org.map(str::to_string);
    let (pairing, credential) = tokio::task::spawn_blocking(move || -> Result<(Pairing, Secret)> {
        let p = config::load(&home2)?.select_or_only(org.as_deref())?.clone();
        let c = credential_of(&p)?;
        Ok((p, c))
    })
    .await
    .map_err(|e| Error::new(ErrorCode::Internal, e.to_string()))??;
    let platform = Platform::new(&pairing.server_url, pairing.insecure_http, pairing.ca_pem.as_deref())?;
    let cred = RuntimeCredential { workspace_id: pairing.workspace_id.clone(), runtime_target_id: pairing.runtime_target_id.clone(), credential };
    platform.rename(&vpd_proto::runtime::RenameMachine { credential: cred, name: name.clone() }).await.map_err(CallError::into_error)?;
    let (home2, id, n) = (home.clone(), pairing.pairing_id.clone(), name.clone());
    tokio::task::spawn_blocking(move || {
        config::update(&home2, |c| {
            if let Some(p) = c.pairings.iter_mut().find(|p| p.pairing_id == id) {
                p.org.machine_name = n;
            }
            Ok(())
        })
    })
    .await
    .map_err(|e| Error::new(ErrorCode::Internal, e.to_string()))??;
    tracing::info!(workspace = %pairing.workspace_id, "renamed this machine");
    let o = pairing.org;
    Ok(crate::api::protocol::Renamed {
        pairing_id: o.pairing_id,
        workspace_name: o.workspace_name,
        server: o.server,
        machine_id: o.machine_id,
        name,
        previous: o.machine_name,
    })
}

/// `vpd unpair --org ORG`: removes the pairing from `config.json` (the one step that must
/// succeed), then — best-effort, each failure reported — its identity, keyring entry and
/// directory bindings, and always tells the platform when the credential could be read
/// (works offline: the platform is told best-effort).
pub async fn unpair(home: &Home, org: &str, after: crate::binding::AfterUnpair) -> Result<crate::api::protocol::Unpaired> {
    let home2 = home.clone();
    let org = org.to_string();
    let (pairing, cred, affected, warnings) = tokio::task::spawn_blocking(move || remove_local(&home2, &org, after))
        .await
        .map_err(|e| Error::new(ErrorCode::Internal, e.to_string()))??;

    let (server_notified, server_error) = match cred {
        None => (false, Some("the issue token could not be read".to_string())),
        Some(credential) => match tell_platform_unpaired(&pairing, credential).await {
            Ok(()) => (true, None),
            Err(e) => (false, Some(e)),
        },
    };
    tracing::info!(workspace = %pairing.workspace_id, server_notified, "unpaired");
    let shown: Vec<String> = affected.iter().map(|d| d.display().to_string()).collect();
    Ok(crate::api::protocol::Unpaired {
        pairing_id: pairing.org.pairing_id,
        server: pairing.org.server,
        workspace_id: pairing.org.workspace_id,
        workspace_name: pairing.org.workspace_name,
        unbound: if after == crate::binding::AfterUnpair::Forget { shown.clone() } else { Vec::new() },
        waiting: if after == crate::binding::AfterUnpair::Suspend { shown } else { Vec::new() },
        server_notified,
        server_error,
        warnings,
    })
}

/// What [`remove_local`] removed: the pairing, its credential (if it could be read), the
/// directories whose bindings it suspended or removed, and the clean-up steps that failed.
pub type Removed = (Pairing, Option<Secret>, Vec<std::path::PathBuf>, Vec<String>);

/// Removes a pairing from this machine: the config entry (must succeed), then best-effort its
/// identity and keyring entry, and applies `after` to its directory bindings (SPEC A3: by
/// default they stay, inert). Used by unpair and revocation.
pub fn remove_local(home: &Home, org: &str, after: crate::binding::AfterUnpair) -> Result<Removed> {
    // The bindings first (SPEC A3): suspended before the pairing leaves config.json, so no
    // crash in between can leave live records that the next pairing of the same org on the
    // same server (the same pairing id) would make stream without a yes.
    let target = config::load(home)?.select(org)?.clone();
    let mut warnings = Vec::new();
    let unbound = match crate::binding::after_unpair(home, &target, after) {
        Ok(u) => u,
        Err(e) => {
            warnings.push(format!("the org's directory bindings were not updated: {}", e.message));
            Vec::new()
        }
    };
    crate::failpoint("unpair:after-bindings");
    let removed = config::update(home, |c| {
        let p = c.select(&target.pairing_id)?.clone();
        c.pairings.retain(|x| x.pairing_id != p.pairing_id);
        Ok(p)
    })?;
    let cred = match credential_of(&removed) {
        Ok(c) => Some(c),
        Err(e) => {
            warnings.push(format!("the issue token could not be read ({}), so the platform cannot be told", e.message));
            None
        }
    };
    crate::failpoint("unpair:after-config");
    if let Err(e) = identity::delete(home, &removed.pairing_id) {
        warnings.push(e.message);
    }
    if matches!(removed.credential, Credential::Keyring) {
        if let Err(e) = secrets::delete(&removed.pairing_id) {
            warnings.push(e.message);
        }
    }
    for w in &warnings {
        tracing::warn!(workspace = %removed.workspace_id, "{w}");
    }
    Ok((removed, cred, unbound, warnings))
}

//! Upgrading a version 1 home to `config.json` version 2 (SPEC A1, issue 10 item 2). Run by
//! the daemon at start, under the home lock, before anything else reads the home.
//!
//! Every step can be repeated, and `config.json` is written last: a crash anywhere (each
//! step has a failpoint) leaves a version 1 `config.json`, and the next start goes through
//! the steps again and finishes.
//!
//! 1. `config.json.v1.bak` (0600): the version 1 file as it was, written once.
//! 2. Identity files: `relay-identities/{workspaceId}.json` → `{pairingId}.json`.
//! 3. Keyring entries: the issue token under the runtime target id → under the pairing id.
//! 4. `directories.json`: each record names its pairing.
//! 5. `config.json` version 2.

use crate::config::{self, Credential};
use crate::error::{Error, Result};
use crate::home::Home;
use crate::{identity, records, secrets, store};

fn backup_path(home: &Home) -> std::path::PathBuf {
    home.root().join("config.json.v1.bak")
}

fn move_identity(home: &Home, p: &config::Pairing) -> Result<()> {
    let Some(old) = identity::v1_path(home, &p.workspace_id) else { return Ok(()) };
    let pending = home.identities().join(format!("{}.{}.pending", p.workspace_id, p.runtime_target_id));
    let source = if pending.exists() { &pending } else { &old };
    if let Some(id) = identity::load_file(source, None)? {
        identity::save(home, identity::Owner { pairing_id: &p.pairing_id, workspace_id: &p.workspace_id }, &id)?;
        crate::failpoint("migrate:after-identity");
        for f in [&pending, &old] {
            match std::fs::remove_file(f) {
                Ok(()) => {}
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => return Err(Error::io(format!("removing {}", f.display()), e)),
            }
        }
    }
    Ok(())
}

/// Upgrades the home if it is version 1; the caller holds the home lock. Returns whether it
/// did.
pub fn run(home: &Home) -> Result<bool> {
    let path = home.config();
    let Some(bytes) = store::read_bounded(&path, 4 * 1024 * 1024)? else { return Ok(false) };
    if !config::is_version_1(&bytes) {
        return Ok(false);
    }
    tracing::info!("upgrading {} from version 1 to version 2", path.display());
    // 1. The backup, once: a later attempt must not overwrite it (it is the same file anyway).
    let backup = backup_path(home);
    if store::read_bounded(&backup, 4 * 1024 * 1024)?.is_none() {
        store::write_atomic(&backup, &bytes)?;
    }
    crate::failpoint("migrate:after-backup");
    // Parsing upgrades in memory: each pairing's origin and local id.
    let mut config = config::read(home)?;
    for p in &config.pairings {
        // 2. The identity file, under its new name with its owner recorded. A version 1
        // re-pairing that crashed after writing config.json left the registered key as
        // `{workspaceId}.{runtimeTargetId}.pending`: that one is the pairing's key.
        if let Err(e) = move_identity(home, p) {
            // One unreadable file must not stop the others: this pairing stays without a
            // key under its new name (doctor says so; `vpd pair --force` fixes it).
            tracing::error!(pairing = %p.pairing_id, error = %e.message, "could not move this pairing's identity file");
        }
        // 3. The keyring entry. The old key stays readable (`pairing::credential_of` falls
        // back to it), so a keyring that cannot be reached now loses nothing.
        if matches!(p.credential, Credential::Keyring) && secrets::get(&p.pairing_id).is_err() {
            match secrets::get(&p.runtime_target_id) {
                Ok(token) => {
                    secrets::put(&p.pairing_id, &token)?;
                    crate::failpoint("migrate:after-keyring");
                    let _ = secrets::delete(&p.runtime_target_id);
                }
                Err(e) => {
                    tracing::warn!(pairing = %p.pairing_id, error = %e.message, "the keyring entry could not be moved now; it stays readable under its old name")
                }
            }
        }
    }
    // 4. Binding records name their pairing (a version 1 home has one pairing per org).
    records::update_directories_locked(home, |dirs| {
        for b in dirs.bindings.iter_mut().filter(|b| b.pairing_id.is_none()) {
            if let [only] = config.of_org(&b.org_id).as_slice() {
                b.pairing_id = Some(only.pairing_id.clone());
            }
        }
        Ok(())
    })?;
    crate::failpoint("migrate:after-records");
    // 5. The commit point.
    config.version = config::CONFIG_VERSION;
    config::save_locked(home, &config)?;
    tracing::info!(pairings = config.pairings.len(), backup = %backup.display(), "upgraded the home to version 2");
    Ok(true)
}

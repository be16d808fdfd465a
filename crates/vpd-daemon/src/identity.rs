//! `relay-identities/{pairingId}.json`: one Ed25519 keypair per pairing, never shared
//! between pairings, named by the local pairing id (SPEC A1) — never by an id a server chose.
//! **Only the daemon process reads these files**; the CLI never does.

use crate::error::{Error, ErrorCode, Result};
use crate::home::{ensure_private_dir, Home};
use crate::store;
use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64;
use base64::Engine;
use ed25519_dalek::{Signer, SigningKey, VerifyingKey};
use serde::{Deserialize, Serialize};
use std::fmt;
use std::path::PathBuf;
use vpd_core::origin::is_pairing_id;
use vpd_proto::is_ulid;

/// A pairing's keypair. `Debug` shows only the public half.
#[derive(Clone)]
pub struct Identity {
    key: SigningKey,
    pub created_at: String,
}

impl fmt::Debug for Identity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Identity").field("public_key", &self.public_key_b64()).finish_non_exhaustive()
    }
}

#[derive(Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
struct IdentityFile {
    version: u32,
    /// The local pairing id this key belongs to (absent in files written before SPEC A1,
    /// which were named by the workspace id; `crate::migrate` renames them).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pairing_id: Option<String>,
    workspace_id: String,
    /// The pairing this key was registered for (an addition to SPEC's fields: it lets a
    /// re-pairing commit its new key atomically with `config.json`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    runtime_target_id: Option<String>,
    public_key: String,
    secret_key: String,
    created_at: String,
}

impl Identity {
    /// A fresh keypair from the OS's random source.
    pub fn generate() -> Result<Identity> {
        let mut seed = [0u8; 32];
        getrandom::fill(&mut seed).map_err(|e| Error::new(ErrorCode::Internal, format!("no randomness: {e}")))?;
        Ok(Identity { key: SigningKey::from_bytes(&seed), created_at: crate::now_rfc3339() })
    }

    pub fn public_key(&self) -> VerifyingKey {
        self.key.verifying_key()
    }
    pub fn public_key_b64(&self) -> String {
        B64.encode(self.public_key().as_bytes())
    }
    pub fn fingerprint(&self) -> String {
        vpd_proto::fingerprint(self.public_key().as_bytes())
    }
    pub fn sign(&self, message: &[u8]) -> Vec<u8> {
        self.key.sign(message).to_bytes().to_vec()
    }
}

fn path_for(home: &Home, pairing_id: &str) -> Result<PathBuf> {
    if !is_pairing_id(pairing_id) {
        return Err(Error::new(
            ErrorCode::InvalidArgument,
            format!("pairing id {pairing_id:?} is not a local pairing id; refusing to use it in a path"),
        ));
    }
    Ok(home.identities().join(format!("{pairing_id}.json")))
}

/// Where a version 1 home kept the identity of `workspace_id` (for [`crate::migrate`]).
pub(crate) fn v1_path(home: &Home, workspace_id: &str) -> Option<PathBuf> {
    is_ulid(workspace_id).then(|| home.identities().join(format!("{workspace_id}.json")))
}

/// The pairing an identity is written for.
#[derive(Debug, Clone, Copy)]
pub struct Owner<'a> {
    pub pairing_id: &'a str,
    pub workspace_id: &'a str,
}

/// Writes the identity of a pairing (0600 in a 0700 directory), replacing any older one.
pub fn save(home: &Home, owner: Owner<'_>, id: &Identity) -> Result<()> {
    write(&path_for(home, owner.pairing_id)?, home, owner, None, id)
}

fn pending_path(home: &Home, pairing_id: &str, runtime_target_id: &str) -> Result<PathBuf> {
    if !is_ulid(runtime_target_id) {
        return Err(Error::new(ErrorCode::InvalidArgument, format!("runtime target id {runtime_target_id:?} is not a ULID")));
    }
    path_for(home, pairing_id)?; // checks the pairing id
    Ok(home.identities().join(format!("{pairing_id}.{runtime_target_id}.pending")))
}

/// First step of storing a new pairing's key: a pending file next to the current identity,
/// which stays in place until `config.json` names the new pairing ([`commit_pending`]).
pub fn save_pending(home: &Home, owner: Owner<'_>, runtime_target_id: &str, id: &Identity) -> Result<()> {
    write(&pending_path(home, owner.pairing_id, runtime_target_id)?, home, owner, Some(runtime_target_id), id)
}

/// Last step: if `config.json` now names this runtime target for the pairing, the pending
/// key becomes the identity; otherwise (another pairing won, or the config write never
/// happened) it is dropped. Takes the home lock. Returns whether it was committed.
pub fn commit_pending(home: &Home, pairing_id: &str, runtime_target_id: &str) -> Result<bool> {
    let _lock = store::Lock::acquire(&home.lock_file())?;
    commit_locked(home, &crate::config::read(home)?, pairing_id, runtime_target_id)
}

fn commit_locked(home: &Home, config: &crate::config::Config, pairing_id: &str, runtime_target_id: &str) -> Result<bool> {
    let pending = pending_path(home, pairing_id, runtime_target_id)?;
    let current = config.by_id(pairing_id).is_some_and(|p| p.runtime_target_id == runtime_target_id);
    let result = if current { std::fs::rename(&pending, path_for(home, pairing_id)?) } else { std::fs::remove_file(&pending) };
    match result {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(Error::io(format!("finishing {}", pending.display()), e)),
    }
    if let Ok(d) = std::fs::File::open(home.identities()) {
        let _ = d.sync_all();
    }
    Ok(current)
}

/// At daemon start, with the home lock held: finishes or drops what a crash left between
/// [`save_pending`] and [`commit_pending`].
pub fn recover(home: &Home) -> Result<()> {
    let Ok(entries) = std::fs::read_dir(home.identities()) else { return Ok(()) };
    let config = crate::config::read(home)?;
    for e in entries.flatten() {
        let name = e.file_name().to_string_lossy().into_owned();
        let Some(stem) = name.strip_suffix(".pending") else { continue };
        match stem.split_once('.') {
            Some((pid, rt)) if is_pairing_id(pid) && is_ulid(rt) => {
                let committed = commit_locked(home, &config, pid, rt)?;
                tracing::warn!(pairing = pid, committed, "finished a pairing a crash interrupted");
            }
            // Left by a version 1 home ({workspaceId}.{runtimeTargetId}.pending): the pairing
            // it belonged to never completed; nothing refers to it.
            Some((ws, rt)) if is_ulid(ws) && is_ulid(rt) => {
                let _ = std::fs::remove_file(e.path());
            }
            _ => {}
        }
    }
    Ok(())
}

fn write(path: &std::path::Path, home: &Home, owner: Owner<'_>, runtime_target_id: Option<&str>, id: &Identity) -> Result<()> {
    ensure_private_dir(&home.identities())?;
    let file = IdentityFile {
        version: 1,
        pairing_id: Some(owner.pairing_id.to_string()),
        runtime_target_id: runtime_target_id.map(String::from),
        workspace_id: owner.workspace_id.to_string(),
        public_key: id.public_key_b64(),
        secret_key: B64.encode(id.key.to_bytes()),
        created_at: id.created_at.clone(),
    };
    let mut bytes = serde_json::to_vec_pretty(&file).map_err(|e| Error::new(ErrorCode::Internal, e.to_string()))?;
    bytes.push(b'\n');
    store::write_atomic(path, &bytes)
}

/// Loads the identity of a pairing; checks that the file is that pairing's and that the
/// public key matches the secret one.
pub fn load(home: &Home, pairing_id: &str) -> Result<Option<Identity>> {
    load_file(&path_for(home, pairing_id)?, Some(pairing_id))
}

/// Loads an identity file; `pairing_id` is the owner it must name (`None`: a version 1 file,
/// which names none).
pub(crate) fn load_file(path: &std::path::Path, pairing_id: Option<&str>) -> Result<Option<Identity>> {
    store::check_private_file(path)?;
    let Some(bytes) = store::read_bounded(path, 16 * 1024)? else { return Ok(None) };
    let file: IdentityFile = store::parse_json(path, &bytes)?;
    if file.pairing_id.as_deref() != pairing_id {
        return Err(Error::file(path, format!("belongs to pairing {:?}, not {pairing_id:?}", file.pairing_id)));
    }
    let seed: [u8; 32] = B64
        .decode(&file.secret_key)
        .ok()
        .and_then(|b| b.try_into().ok())
        .ok_or_else(|| Error::file(path, "secretKey is not 32 bytes of base64url"))?;
    let key = SigningKey::from_bytes(&seed);
    if B64.encode(key.verifying_key().as_bytes()) != file.public_key {
        return Err(Error::file(path, "publicKey does not match secretKey; the file is corrupt"));
    }
    Ok(Some(Identity { key, created_at: file.created_at }))
}

/// Deletes the identity of a pairing (missing is fine).
pub fn delete(home: &Home, pairing_id: &str) -> Result<()> {
    let path = path_for(home, pairing_id)?;
    match std::fs::remove_file(&path) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(Error::io(format!("removing {}", path.display()), e)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn save_load_delete() {
        use std::os::unix::fs::PermissionsExt;
        let d = tempfile::tempdir().unwrap();
        let home = Home::at(d.path());
        let ws = "01J7M8N9P0Q1R2S3T4V5V6W7X8";
        let pid = vpd_core::origin::pairing_id("https://a.example", ws);
        let id = Identity::generate().unwrap();
        save(&home, Owner { pairing_id: &pid, workspace_id: ws }, &id).unwrap();
        let back = load(&home, &pid).unwrap().unwrap();
        assert_eq!(back.public_key_b64(), id.public_key_b64());
        let p = home.identities().join(format!("{pid}.json"));
        assert_eq!(std::fs::metadata(&p).unwrap().permissions().mode() & 0o777, 0o600);
        assert_eq!(std::fs::metadata(home.identities()).unwrap().permissions().mode() & 0o777, 0o700);
        assert!(!format!("{id:?}").contains(&B64.encode(id.key.to_bytes())));
        // Another pairing's file under this name is refused.
        let other = vpd_core::origin::pairing_id("https://b.example", ws);
        std::fs::copy(&p, home.identities().join(format!("{other}.json"))).unwrap();
        assert!(load(&home, &other).is_err());
        delete(&home, &pid).unwrap();
        assert!(load(&home, &pid).unwrap().is_none());
    }

    #[test]
    fn ids_that_would_escape_are_refused() {
        let d = tempfile::tempdir().unwrap();
        let home = Home::at(d.path());
        let id = Identity::generate().unwrap();
        for bad in ["../../x", "/etc/passwd", "..", "01J7M8N9P0Q1R2S3T4V5V6W7X8/../../x"] {
            assert!(save(&home, Owner { pairing_id: bad, workspace_id: bad }, &id).is_err());
            assert!(load(&home, bad).is_err());
            assert!(delete(&home, bad).is_err());
        }
        assert!(!d.path().join("x").exists());
    }

    #[test]
    fn two_identities_differ() {
        assert_ne!(Identity::generate().unwrap().public_key_b64(), Identity::generate().unwrap().public_key_b64());
    }
}

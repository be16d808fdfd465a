//! `relay-identities/{workspaceId}.json`: one Ed25519 keypair per pairing, never shared
//! between orgs. **Only the daemon process reads these files**; the CLI never does.

use crate::error::{Error, ErrorCode, Result};
use crate::home::{ensure_private_dir, Home};
use crate::store;
use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64;
use base64::Engine;
use ed25519_dalek::{Signer, SigningKey, VerifyingKey};
use serde::{Deserialize, Serialize};
use std::fmt;
use std::path::PathBuf;
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

fn path_for(home: &Home, workspace_id: &str) -> Result<PathBuf> {
    if !is_ulid(workspace_id) {
        return Err(Error::new(ErrorCode::InvalidArgument, format!("workspace id {workspace_id:?} is not a ULID; refusing to use it in a path")));
    }
    Ok(home.identities().join(format!("{workspace_id}.json")))
}

/// Writes the identity of `workspace_id` (0600 in a 0700 directory), replacing any older one.
pub fn save(home: &Home, workspace_id: &str, id: &Identity) -> Result<()> {
    write(&path_for(home, workspace_id)?, home, workspace_id, None, id)
}

fn pending_path(home: &Home, workspace_id: &str, runtime_target_id: &str) -> Result<PathBuf> {
    if !is_ulid(runtime_target_id) {
        return Err(Error::new(ErrorCode::InvalidArgument, format!("runtime target id {runtime_target_id:?} is not a ULID")));
    }
    path_for(home, workspace_id)?; // checks the workspace id
    Ok(home.identities().join(format!("{workspace_id}.{runtime_target_id}.pending")))
}

/// First step of storing a new pairing's key: a pending file next to the current identity,
/// which stays in place until `config.json` names the new pairing ([`commit_pending`]).
pub fn save_pending(home: &Home, workspace_id: &str, runtime_target_id: &str, id: &Identity) -> Result<()> {
    write(&pending_path(home, workspace_id, runtime_target_id)?, home, workspace_id, Some(runtime_target_id), id)
}

/// Last step: if `config.json` now names this runtime target for the workspace, the pending
/// key becomes the identity; otherwise (another pairing won, or the config write never
/// happened) it is dropped. Takes the home lock. Returns whether it was committed.
pub fn commit_pending(home: &Home, workspace_id: &str, runtime_target_id: &str) -> Result<bool> {
    let _lock = store::Lock::acquire(&home.lock_file())?;
    commit_locked(home, &crate::config::read(home)?, workspace_id, runtime_target_id)
}

fn commit_locked(home: &Home, config: &crate::config::Config, workspace_id: &str, runtime_target_id: &str) -> Result<bool> {
    let pending = pending_path(home, workspace_id, runtime_target_id)?;
    let current = config.pairing(workspace_id).is_some_and(|p| p.runtime_target_id == runtime_target_id);
    let result = if current { std::fs::rename(&pending, path_for(home, workspace_id)?) } else { std::fs::remove_file(&pending) };
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
        if let Some((ws, rt)) = stem.split_once('.') {
            if is_ulid(ws) && is_ulid(rt) {
                let committed = commit_locked(home, &config, ws, rt)?;
                tracing::warn!(workspace = ws, committed, "finished a pairing a crash interrupted");
            }
        }
    }
    Ok(())
}

fn write(path: &std::path::Path, home: &Home, workspace_id: &str, runtime_target_id: Option<&str>, id: &Identity) -> Result<()> {
    ensure_private_dir(&home.identities())?;
    let file = IdentityFile {
        version: 1,
        runtime_target_id: runtime_target_id.map(String::from),
        workspace_id: workspace_id.to_string(),
        public_key: id.public_key_b64(),
        secret_key: B64.encode(id.key.to_bytes()),
        created_at: id.created_at.clone(),
    };
    let mut bytes = serde_json::to_vec_pretty(&file).map_err(|e| Error::new(ErrorCode::Internal, e.to_string()))?;
    bytes.push(b'\n');
    store::write_atomic(path, &bytes)
}

/// Loads the identity of `workspace_id`; checks that the public key matches the secret one.
pub fn load(home: &Home, workspace_id: &str) -> Result<Option<Identity>> {
    let path = path_for(home, workspace_id)?;
    store::check_private_file(&path)?;
    let Some(bytes) = store::read_bounded(&path, 16 * 1024)? else { return Ok(None) };
    let file: IdentityFile = store::parse_json(&path, &bytes)?;
    if file.workspace_id != workspace_id {
        return Err(Error::file(&path, format!("belongs to workspace {:?}, not {workspace_id}", file.workspace_id)));
    }
    let seed: [u8; 32] = B64
        .decode(&file.secret_key)
        .ok()
        .and_then(|b| b.try_into().ok())
        .ok_or_else(|| Error::file(&path, "secretKey is not 32 bytes of base64url"))?;
    let key = SigningKey::from_bytes(&seed);
    if B64.encode(key.verifying_key().as_bytes()) != file.public_key {
        return Err(Error::file(&path, "publicKey does not match secretKey; the file is corrupt"));
    }
    Ok(Some(Identity { key, created_at: file.created_at }))
}

/// Deletes the identity of `workspace_id` (missing is fine).
pub fn delete(home: &Home, workspace_id: &str) -> Result<()> {
    let path = path_for(home, workspace_id)?;
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
        let id = Identity::generate().unwrap();
        save(&home, ws, &id).unwrap();
        let back = load(&home, ws).unwrap().unwrap();
        assert_eq!(back.public_key_b64(), id.public_key_b64());
        let p = home.identities().join(format!("{ws}.json"));
        assert_eq!(std::fs::metadata(&p).unwrap().permissions().mode() & 0o777, 0o600);
        assert_eq!(std::fs::metadata(home.identities()).unwrap().permissions().mode() & 0o777, 0o700);
        assert!(!format!("{id:?}").contains(&B64.encode(id.key.to_bytes())));
        delete(&home, ws).unwrap();
        assert!(load(&home, ws).unwrap().is_none());
    }

    #[test]
    fn ids_that_would_escape_are_refused() {
        let d = tempfile::tempdir().unwrap();
        let home = Home::at(d.path());
        let id = Identity::generate().unwrap();
        for bad in ["../../x", "/etc/passwd", "..", "01J7M8N9P0Q1R2S3T4V5V6W7X8/../../x"] {
            assert!(save(&home, bad, &id).is_err());
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

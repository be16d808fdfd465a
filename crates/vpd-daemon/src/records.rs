//! `directories.json` (bindings made on this machine) and `hint-declines.json` (questions the
//! user said no to). Both are versioned, written atomically under the home lock.

use crate::error::{Error, ErrorCode, Result};
use crate::home::Home;
use crate::store;
use serde::{de::DeserializeOwned, Deserialize, Serialize};
use std::path::{Path, PathBuf};
use vpd_core::hint::{Decline, Question};
use vpd_core::BindingRecord;

const MAX_FILE: u64 = 8 * 1024 * 1024;

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct Directories {
    pub version: u32,
    #[serde(default)]
    pub bindings: Vec<DirectoryRecord>,
}

impl Default for Directories {
    fn default() -> Self {
        Self { version: RECORDS_VERSION, bindings: Vec::new() }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct DirectoryRecord {
    /// Canonical directory holding `.viewport/local.yaml`.
    pub directory: PathBuf,
    pub org_id: String,
    /// The pairing (server and org) it was made for (SPEC A1); absent only in records a
    /// version 1 home wrote, which the upgrade fills in.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pairing_id: Option<String>,
    /// `sha256:<hex>` of the `local.yaml` written or trusted.
    pub file_hash: String,
    pub bound_at: String,
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub recursive: bool,
    /// Kept when its pairing was removed (unpair or revocation, SPEC A3): inert until the
    /// user says yes to resuming it after pairing that org on that server again.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub suspended: bool,
    /// The server (origin) of the pairing it waits for, recorded when it was suspended.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub server: Option<String>,
    /// The org's name then, so what waits can be named while the org is not paired.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub org_name: Option<String>,
}

impl Directories {
    pub fn records(&self) -> Vec<BindingRecord> {
        self.bindings
            .iter()
            .map(|b| BindingRecord {
                directory: b.directory.clone(),
                org_id: b.org_id.clone(),
                file_hash: b.file_hash.clone(),
                pairing_id: b.pairing_id.clone(),
                suspended: b.suspended,
            })
            .collect()
    }
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct Declines {
    pub version: u32,
    #[serde(default)]
    pub declines: Vec<DeclineRecord>,
    /// "This repo suggests org X, but you're not paired to it" already said, for the
    /// pairings of the time: said again only once they change (issue 11 item 5).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub notices: Vec<NoticeRecord>,
}

impl Default for Declines {
    fn default() -> Self {
        Self { version: RECORDS_VERSION, declines: Vec::new(), notices: Vec::new() }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct NoticeRecord {
    pub directory: PathBuf,
    pub org_id: String,
    /// The pairing ids of the time, sorted and joined.
    pub pairings: String,
    /// Where it was said: `terminal` (`vpd hint`) or `notification` (the tray).
    #[serde(default = "terminal")]
    pub surface: String,
    pub said_at: String,
}

fn terminal() -> String {
    "terminal".into()
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct DeclineRecord {
    pub directory: PathBuf,
    pub org_id: String,
    /// The pairing the declined question named (SPEC A1), when it named one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pairing_id: Option<String>,
    #[serde(default = "bind_question")]
    pub question: String,
    pub declined_at: String,
}

fn bind_question() -> String {
    "bind".into()
}

impl Declines {
    pub fn to_core(&self) -> Vec<Decline> {
        self.declines
            .iter()
            .map(|d| Decline {
                directory: d.directory.clone(),
                org_id: d.org_id.clone(),
                kind: if d.question == "trust" { Question::Trust } else { Question::Bind },
                pairing_id: d.pairing_id.clone(),
            })
            .collect()
    }
}

/// The version of `directories.json` and `hint-declines.json` this vpd reads and writes.
const RECORDS_VERSION: u32 = 1;

/// Reads without changing anything (status, doctor and `vpd hint` on every prompt read these).
fn load<T: DeserializeOwned + Default>(path: &Path) -> Result<T> {
    match store::read_bounded(path, MAX_FILE)? {
        None => Ok(T::default()),
        Some(bytes) => store::parse_versioned(path, &bytes, RECORDS_VERSION),
    }
}

fn update<T: DeserializeOwned + Serialize + Default, R>(home: &Home, path: &Path, f: impl FnOnce(&mut T) -> Result<R>) -> Result<R> {
    home.ensure()?;
    let _lock = store::Lock::acquire(&home.lock_file())?;
    update_locked(home, path, f)
}

fn update_locked<T: DeserializeOwned + Serialize + Default, R>(_home: &Home, path: &Path, f: impl FnOnce(&mut T) -> Result<R>) -> Result<R> {
    store::check_private_file(path)?;
    let mut value: T = load(path)?;
    let out = f(&mut value)?;
    let mut bytes = serde_json::to_vec_pretty(&value).map_err(|e| Error::new(ErrorCode::Internal, e.to_string()))?;
    bytes.push(b'\n');
    store::write_atomic(path, &bytes)?;
    Ok(out)
}

pub fn load_directories(home: &Home) -> Result<Directories> {
    load(&home.directories())
}

pub fn update_directories<R>(home: &Home, f: impl FnOnce(&mut Directories) -> Result<R>) -> Result<R> {
    update(home, &home.directories(), f)
}

/// [`update_directories`] for a caller that already holds the home lock.
pub(crate) fn update_directories_locked<R>(home: &Home, f: impl FnOnce(&mut Directories) -> Result<R>) -> Result<R> {
    update_locked(home, &home.directories(), f)
}

pub fn load_declines(home: &Home) -> Result<Declines> {
    load(&home.hint_declines())
}

pub fn update_declines<R>(home: &Home, f: impl FnOnce(&mut Declines) -> Result<R>) -> Result<R> {
    update(home, &home.hint_declines(), f)
}

//! `config.json` (SPEC section 2): daemon settings and one entry per pairing.
//!
//! Read-modify-write happens only through [`update`], under the home lock, with an atomic
//! write; so concurrent `vpd` processes and the daemon never lose an entry, and a crash leaves
//! either the old or the new file. A file that cannot be understood is an error naming the
//! file and is never replaced.

use crate::error::{Error, ErrorCode, Result};
use crate::home::Home;
use crate::store;
use serde::{Deserialize, Serialize};
use vpd_proto::{is_ulid, Secret};

/// Version 2 (SPEC A1): each pairing records its server's origin and its local pairing id.
/// Version 1 files are read (upgraded in memory) and upgraded on disk by the daemon at start
/// ([`crate::migrate`]).
pub const CONFIG_VERSION: u32 = 2;
const MAX_CONFIG: u64 = 4 * 1024 * 1024;
/// Where pairing goes when nothing else names a server.
pub const HOSTED_SERVER: &str = "https://api.getviewport.com";
pub const DEFAULT_UI_PORT: u16 = 7070;

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct Config {
    pub version: u32,
    #[serde(default)]
    pub daemon: DaemonSettings,
    #[serde(default)]
    pub pairings: Vec<Pairing>,
}

impl Default for Config {
    fn default() -> Self {
        Self { version: CONFIG_VERSION, daemon: DaemonSettings::default(), pairings: Vec::new() }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct DaemonSettings {
    /// Saved by `vpd install --server URL` or by the last successful pairing.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub default_server_url: Option<String>,
    /// Loopback port of the web UI. The default (7070) falls back to any free loopback port
    /// when taken (another user's daemon holds it); a port set here is an error when taken.
    #[serde(default = "default_ui_port", skip_serializing_if = "is_default_ui_port")]
    pub ui_port: u16,
    /// Folders scanned for repositories with a `.viewport/workspace.yaml` (canonical paths).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub watched_folders: Vec<String>,
    /// The proxy variables in effect when `vpd pair` or `vpd install` last ran, for a daemon
    /// started without them (at login).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub proxy: Option<crate::proxy::ProxyEnv>,
    /// The tray app's first start in this home was set up (common code folders watched,
    /// start at login): never again, so what the person removes stays removed.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub tray_set_up: bool,
}

fn default_ui_port() -> u16 {
    DEFAULT_UI_PORT
}

fn is_default_ui_port(p: &u16) -> bool {
    *p == DEFAULT_UI_PORT
}

impl Default for DaemonSettings {
    fn default() -> Self {
        Self { default_server_url: None, ui_port: DEFAULT_UI_PORT, watched_folders: Vec::new(), proxy: None, tray_set_up: false }
    }
}

/// Who a pairing is: the org, this machine's names there, where the server and relay are,
/// and when. The one definition of these fields, flattened into each pairing of
/// `config.json`, into the pair call's answer ([`crate::api::protocol::Paired`]) and into
/// `vpd status` ([`crate::status::PairingInfo`]); the server's approval (snake_case on the
/// wire) converts into it ([`PairedOrg::approved`]).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct PairedOrg {
    /// The local pairing id (SPEC A1, `vpd_core::origin::pairing_id`): names the identity
    /// file, the keyring entry and the binding records. Never an id the server chose.
    #[serde(default)]
    pub pairing_id: String,
    /// The origin of the server the daemon contacted to pair (never one from its answer).
    #[serde(default)]
    pub server: String,
    pub workspace_id: String,
    pub workspace_name: String,
    pub workspace_slug: String,
    pub install_id: String,
    pub runtime_target_id: String,
    pub machine_id: String,
    pub machine_name: String,
    pub server_url: String,
    pub relay_endpoint: String,
    pub paired_at: String,
}

impl PairedOrg {
    /// What an approval says, from the server at `origin` (the one contacted, normalised)
    /// reached as `server_url`, paired now.
    pub fn approved(a: &vpd_proto::pairing::Approved, origin: &str, server_url: &str) -> PairedOrg {
        PairedOrg {
            pairing_id: vpd_core::origin::pairing_id(origin, &a.workspace_id),
            server: origin.to_string(),
            workspace_id: a.workspace_id.clone(),
            workspace_name: a.workspace_name.clone(),
            workspace_slug: a.workspace_slug.clone(),
            install_id: a.install_id.clone(),
            runtime_target_id: a.runtime_target_id.clone(),
            machine_id: a.machine_id.clone(),
            machine_name: a.machine_name.clone(),
            server_url: server_url.to_string(),
            relay_endpoint: a.relay_endpoint.clone(),
            paired_at: crate::now_rfc3339(),
        }
    }
}

/// One pairing: the trust relation between this install and one org.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct Pairing {
    #[serde(flatten)]
    pub org: PairedOrg,
    pub credential: Credential,
    /// A CA trusted for this pairing's server and relay besides the system's (PEM, from
    /// `vpd pair --ca-file`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ca_pem: Option<String>,
    /// Paired with `--insecure-http` (plain HTTP to a non-loopback host).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub insecure_http: bool,
}

/// Where the issue token lives.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[serde(tag = "store", rename_all = "lowercase")]
pub enum Credential {
    Keyring,
    File {
        #[serde(rename = "issueToken")]
        issue_token: Secret,
    },
}

impl Credential {
    pub fn store_kind(&self) -> crate::states::StoreKind {
        match self {
            Credential::Keyring => crate::states::StoreKind::Keyring,
            Credential::File { .. } => crate::states::StoreKind::File,
        }
    }
}

/// A pairing reads as the org it is with (`pairing.workspace_id`).
impl std::ops::Deref for Pairing {
    type Target = PairedOrg;
    fn deref(&self) -> &PairedOrg {
        &self.org
    }
}

impl Pairing {
    pub fn as_ref(&self) -> vpd_core::PairingRef<'_> {
        vpd_core::PairingRef {
            id: &self.pairing_id,
            org_id: &self.workspace_id,
            name: &self.workspace_name,
            slug: &self.workspace_slug,
            server: &self.server,
        }
    }

    /// "Acme Engineering on https://viewport.example" — what questions and lists name.
    pub fn label(&self) -> String {
        format!("{} on {}", self.workspace_name, self.server)
    }
}

impl Config {
    /// The pairing with this local pairing id.
    pub fn by_id(&self, pairing_id: &str) -> Option<&Pairing> {
        self.pairings.iter().find(|p| p.pairing_id == pairing_id)
    }

    /// Every pairing with org `workspace_id` (one per server).
    pub fn of_org(&self, workspace_id: &str) -> Vec<&Pairing> {
        self.pairings.iter().filter(|p| p.workspace_id == workspace_id).collect()
    }

    pub fn refs(&self) -> Vec<vpd_core::PairingRef<'_>> {
        self.pairings.iter().map(Pairing::as_ref).collect()
    }

    /// The pairing an `--org` argument (ULID, slug or name) names.
    pub fn select(&self, query: &str) -> Result<&Pairing> {
        let refs = self.refs();
        match vpd_core::resolve::select_pairing(&refs, query) {
            Ok(r) => Ok(self.by_id(r.id).expect("selected from this config")),
            Err(vpd_core::resolve::SelectError::Ambiguous(found)) => {
                let flags: Vec<_> = found.iter().map(|p| format!("--org {} ({} on {})", p.id, p.name, p.server)).collect();
                Err(Error::new(ErrorCode::InvalidArgument, format!("{query:?} names {} pairings; say which one: {}", found.len(), flags.join(", "))))
            }
            Err(vpd_core::resolve::SelectError::NotFound) => {
                let known: Vec<_> = self.pairings.iter().map(|p| format!("{} ({})", p.workspace_name, p.workspace_slug)).collect();
                Err(Error::new(
                    ErrorCode::NotPaired,
                    if known.is_empty() {
                        format!("this machine is not paired with any org, so not with {query:?}. Run `vpd pair --org {query}` first.")
                    } else {
                        format!("this machine is not paired with {query:?} (paired: {}). Run `vpd pair --org {query}` first.", known.join(", "))
                    },
                ))
            }
        }
    }

    /// The pairing with the server at `origin` that an `--org` value names, if one does (the
    /// rules of [`Config::select`], among that server's pairings only).
    pub fn select_on(&self, origin: &str, query: &str) -> Option<&Pairing> {
        let refs: Vec<_> = self.refs().into_iter().filter(|r| r.server == origin).collect();
        vpd_core::resolve::select_pairing(&refs, query).ok().and_then(|r| self.by_id(r.id))
    }

    /// `--org` when given ([`Config::select`]), else the only pairing. With none, or with
    /// several, the error says what to do (the several listed with the flag for each).
    pub fn select_or_only(&self, query: Option<&str>) -> Result<&Pairing> {
        match (query, self.pairings.as_slice()) {
            (Some(q), _) => self.select(q),
            (None, [only]) => Ok(only),
            (None, []) => Err(Error::new(ErrorCode::NotPaired, "this machine is not paired with any org: run `vpd pair` first")),
            (None, several) => {
                let same_slug = |p: &Pairing| several.iter().filter(|q| q.workspace_slug == p.workspace_slug).count() > 1;
                let flags: Vec<_> = several
                    .iter()
                    .map(|p| {
                        let flag = if same_slug(p) { &p.pairing_id } else { &p.workspace_slug };
                        format!("--org {flag} ({} on {})", p.workspace_name, p.server)
                    })
                    .collect();
                Err(Error::new(
                    ErrorCode::InvalidArgument,
                    format!("this machine is paired with {} orgs; say which one: {}", several.len(), flags.join(", ")),
                ))
            }
        }
    }

    fn validate(&self, path: &std::path::Path) -> Result<()> {
        let mut seen = std::collections::HashSet::new();
        for (i, p) in self.pairings.iter().enumerate() {
            for (field, v) in [
                ("workspaceId", &p.workspace_id),
                ("runtimeTargetId", &p.runtime_target_id),
                ("installId", &p.install_id),
                ("machineId", &p.machine_id),
            ] {
                if !is_ulid(v) {
                    return Err(Error::file(
                        path,
                        format!("pairing {} has {field} {v:?}, which is not a ULID; the file was edited by hand or is corrupt. It was left untouched: fix or remove that entry.", i + 1),
                    ));
                }
            }
            if !vpd_core::origin::is_pairing_id(&p.pairing_id) || p.pairing_id != vpd_core::origin::pairing_id(&p.server, &p.workspace_id) {
                return Err(Error::file(
                    path,
                    format!("pairing {} has pairingId {:?}, which does not belong to its server and workspace; the file was edited by hand or is corrupt. It was left untouched: fix or remove that entry.", i + 1, p.pairing_id),
                ));
            }
            if !seen.insert(&p.pairing_id) {
                return Err(Error::file(path, format!("workspace {} on {} appears twice; remove one entry", p.workspace_id, p.server)));
            }
        }
        Ok(())
    }
}

/// Loads `config.json`; a missing file is an empty config. Tightens a loose mode.
pub fn load(home: &Home) -> Result<Config> {
    store::check_private_file(&home.config())?;
    read(home)
}

/// Like [`load`], but changes nothing (for `vpd doctor`).
pub fn read(home: &Home) -> Result<Config> {
    let path = home.config();
    let Some(bytes) = store::read_bounded(&path, MAX_CONFIG)? else {
        return Ok(Config::default());
    };
    parse(&path, &bytes)
}

fn parse(path: &std::path::Path, bytes: &[u8]) -> Result<Config> {
    let config: Config = match store::parse_versioned(path, bytes, CONFIG_VERSION) {
        Ok(c) => c,
        Err(e) if e.code != ErrorCode::ConfigTooNew && is_version_1(bytes) => {
            let mut c: Config = store::parse_versioned(path, bytes, 1)?;
            c.upgrade_in_memory(path)?;
            c
        }
        Err(e) => return Err(e),
    };
    // A version 1 file keeps `version: 1` in memory: `update` refuses to write it back.
    config.validate(path)?;
    Ok(config)
}

impl Config {
    /// A version 1 config as version 2 says it (SPEC A1): each pairing's server origin from
    /// the URL it was paired through, and its local pairing id. On disk, [`crate::migrate`]
    /// does this together with moving the files named after the old ids.
    pub(crate) fn upgrade_in_memory(&mut self, path: &std::path::Path) -> Result<()> {
        for p in &mut self.pairings {
            let origin = vpd_core::origin::server_origin(&p.server_url)
                .map_err(|e| Error::file(path, format!("pairing {}: serverUrl: {e}", p.workspace_id)))?;
            p.org.pairing_id = vpd_core::origin::pairing_id(&origin, &p.workspace_id);
            p.org.server = origin;
        }
        Ok(())
    }
}

/// Whether `bytes` are a version 1 `config.json`.
pub fn is_version_1(bytes: &[u8]) -> bool {
    serde_json::from_slice::<serde_json::Value>(bytes).ok().and_then(|v| v.get("version").and_then(|v| v.as_u64())) == Some(1)
}

/// Runs `f` on the current config under the home lock and writes the result atomically if
/// `f` succeeds. Returns what `f` returned.
pub fn update<T>(home: &Home, f: impl FnOnce(&mut Config) -> Result<T>) -> Result<T> {
    home.ensure()?;
    let _lock = store::Lock::acquire(&home.lock_file())?;
    let mut config = load(home)?;
    // For writers other than the daemon: a version 1 home is the daemon's to upgrade first
    // ([`crate::migrate`] moves the files named after the old ids).
    if config.version != CONFIG_VERSION {
        return Err(Error::new(
            ErrorCode::DaemonUnavailable,
            format!(
                "{} was written by an older vpd; the daemon upgrades it when it starts. Start it (`vpd reconnect` does, when it is not running), then try again.",
                home.config().display()
            ),
        ));
    }
    let out = f(&mut config)?;
    save_locked(home, &config)?;
    Ok(out)
}

pub(crate) fn save_locked(home: &Home, config: &Config) -> Result<()> {
    let mut bytes = serde_json::to_vec_pretty(config).map_err(|e| Error::new(ErrorCode::Internal, e.to_string()))?;
    bytes.push(b'\n');
    store::write_atomic(&home.config(), &bytes)
}

/// A pairing for tests (no server behind it).
#[cfg(test)]
pub(crate) fn test_pairing(ws: &str) -> Pairing {
    Pairing {
        org: PairedOrg {
            pairing_id: vpd_core::origin::pairing_id("http://127.0.0.1:1", ws),
            server: "http://127.0.0.1:1".into(),
            workspace_id: ws.into(),
            workspace_name: "Acme".into(),
            workspace_slug: "acme".into(),
            install_id: "01J7M8N9P0Q1R2S3T4V5V6W7X1".into(),
            runtime_target_id: "01J7M8N9P0Q1R2S3T4V5V6W7X2".into(),
            machine_id: "01J7M8N9P0Q1R2S3T4V5V6W7X3".into(),
            machine_name: "box".into(),
            server_url: "http://127.0.0.1:1".into(),
            relay_endpoint: "ws://127.0.0.1:1/ws".into(),
            paired_at: "2026-01-01T00:00:00Z".into(),
        },
        credential: Credential::File { issue_token: Secret::new("tok-secret") },
        ca_pem: None,
        insecure_http: false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    use crate::config::test_pairing as pairing;

    #[test]
    fn org_may_be_left_out_when_one_is_paired() {
        let mut c = Config::default();
        assert_eq!(c.select_or_only(None).unwrap_err().code, ErrorCode::NotPaired);
        c.pairings.push(pairing("01J7M8N9P0Q1R2S3T4V5V6W7X8"));
        assert_eq!(c.select_or_only(None).unwrap().workspace_id, "01J7M8N9P0Q1R2S3T4V5V6W7X8");
        let mut beta = pairing("01J7M8N9P0Q1R2S3T4V5V6W7X9");
        (beta.org.workspace_name, beta.org.workspace_slug) = ("Beta".into(), "beta".into());
        c.pairings.push(beta);
        let e = c.select_or_only(None).unwrap_err();
        assert_eq!(e.code, ErrorCode::InvalidArgument);
        assert!(
            e.message.contains("--org acme (Acme on http://127.0.0.1:1)") && e.message.contains("--org beta (Beta on http://127.0.0.1:1)"),
            "{}",
            e.message
        );
        assert_eq!(c.select_or_only(Some("beta")).unwrap().workspace_slug, "beta");
    }

    #[test]
    fn round_trip_and_modes() {
        use std::os::unix::fs::PermissionsExt;
        let d = tempfile::tempdir().unwrap();
        let home = Home::at(d.path().join("h"));
        update(&home, |c| {
            c.pairings.push(pairing("01J7M8N9P0Q1R2S3T4V5V6W7X8"));
            Ok(())
        })
        .unwrap();
        let c = load(&home).unwrap();
        assert_eq!(c.pairings.len(), 1);
        assert_eq!(std::fs::metadata(home.config()).unwrap().permissions().mode() & 0o777, 0o600);
        assert_eq!(std::fs::metadata(home.root()).unwrap().permissions().mode() & 0o777, 0o700);
        assert!(!format!("{c:?}").contains("tok-secret"), "secrets never in Debug");
    }

    #[test]
    fn bad_files_are_refused_and_kept() {
        let d = tempfile::tempdir().unwrap();
        let home = Home::at(d.path());
        let cases: &[(&str, &str)] = &[
            ("{\"version\": 1, \"pairings\": [", "is not valid"),
            ("<html>oops</html>", "is not valid"),
            ("{\"pairings\": []}", "no valid \"version\""),
            ("{\"version\": 99}", "newer vpd"),
            ("{\"version\": 1, \"pairings\": 7}", "is not valid"),
        ];
        for (text, want) in cases {
            std::fs::write(home.config(), text).unwrap();
            let err = load(&home).unwrap_err();
            assert!(err.message.contains(want), "{text}: {err}");
            assert!(err.message.contains("config.json"), "names the file: {err}");
            let err = update(&home, |_| Ok(())).unwrap_err();
            assert!(err.message.contains(want));
            assert_eq!(std::fs::read_to_string(home.config()).unwrap(), *text, "left untouched");
        }
        let mut c = Config::default();
        let mut p = pairing("01J7M8N9P0Q1R2S3T4V5V6W7X8");
        p.org.workspace_id = "../../x".into();
        c.pairings.push(p);
        std::fs::write(home.config(), serde_json::to_string(&c).unwrap()).unwrap();
        assert!(load(&home).unwrap_err().message.contains("not a ULID"));
    }
}

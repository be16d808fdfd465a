//! All persistence. Every SQL statement of the server lives in this module, one file per
//! aggregate, written once for both databases:
//!
//! - `mod.rs`: users and web sessions, workspaces, pairing codes, machines and runtime
//!   targets, releases, signing keys;
//! - `relay.rs`: the relay's records (sessions, frames, acks, gaps, retention, quotas) and the
//!   live connection of each runtime target;
//! - `members.rs`: memberships, roles and the audit log;
//! - `limits.rs`: rate-limit counters shared by every process on the database.
//!
//! They run through [`sql::Backend`], implemented by `sqlite.rs` (the zero-setup default, a
//! file) and `pg.rs` (`postgres://…`, any number of instances); what the shared code assumes
//! of a backend is written there. The methods speak in domain operations (approve a code,
//! deliver an approval, revoke a machine) rather than in rows. Times are Unix seconds (UTC).
//! Secrets (status tokens, issue tokens, session tokens) are only ever stored as SHA-256
//! hashes, handed in by the caller.

use std::path::Path;
use std::sync::Arc;
use ulid::Ulid;

mod limits;
mod members;
pub mod pg;
mod pg_tls;
mod relay;
pub mod sql;
mod sqlite;
use crate::roles::{Actor, Role};
use members::audit;
pub use members::AuditEntry;
pub use relay::gap_range;
use sql::{p, Backend, Event, Isolation, Row, Tx};

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("database error: {0}")]
    Db(String),
    /// A write lost a race with another (PostgreSQL's serialization failure): run it again.
    #[error("database contention: {0}")]
    Retry(String),
    /// `--db` names something this build cannot open.
    #[error("{0}")]
    Unsupported(String),
    #[error("cannot open the database file {path}: {source}")]
    Io { path: String, source: std::io::Error },
    /// A unique value is taken (email, slug, code).
    #[error("{0}")]
    Conflict(String),
    /// The thing does not exist (or is not visible in this workspace).
    #[error("{0}")]
    NotFound(String),
    /// The thing exists but is no longer in a state that allows this (used, expired, decided).
    #[error("{0}")]
    Gone(String),
    /// The user may not do this (not a member of the workspace).
    #[error("{0}")]
    Forbidden(String),
}

pub type Result<T, E = StoreError> = std::result::Result<T, E>;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct User {
    pub id: String,
    pub email: String,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Workspace {
    pub id: String,
    pub name: String,
    pub slug: String,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Member {
    pub user_id: String,
    pub email: String,
    pub role: Role,
    pub joined_at: i64,
}

/// What a daemon tells about itself when it asks for (or claims) a code.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MachineInfo {
    pub name: String,
    /// Base64url (unpadded) of the 32-byte Ed25519 key, already validated.
    pub public_key: String,
    pub daemon_version: String,
    pub os: String,
    pub arch: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CodeKind {
    /// Asked for by a daemon (`vpd pair`); approved on the page or by the admin CLI.
    Device,
    /// Minted on the "Add machine" page (or `admin pairing mint`); claimed by `vpd pair CODE`.
    Minted,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CodeState {
    Pending,
    Approved,
    Denied,
    Consumed,
}

impl CodeState {
    pub fn as_str(self) -> &'static str {
        match self {
            CodeState::Pending => "pending",
            CodeState::Approved => "approved",
            CodeState::Denied => "denied",
            CodeState::Consumed => "consumed",
        }
    }
    fn parse(s: &str) -> CodeState {
        match s {
            "pending" => CodeState::Pending,
            "approved" => CodeState::Approved,
            "denied" => CodeState::Denied,
            _ => CodeState::Consumed,
        }
    }
}

#[derive(Clone)]
pub struct PairingCode {
    /// 8 canonical characters, no dash.
    pub code: String,
    pub kind: CodeKind,
    pub state: CodeState,
    /// SHA-256 of the status token (device codes only).
    pub status_token_hash: Option<Vec<u8>>,
    /// Device codes only.
    pub machine: Option<MachineInfo>,
    pub requested_org: Option<String>,
    pub created_at: i64,
    pub expires_at: i64,
    /// Set once approved (device) or at mint time (minted).
    pub workspace_id: Option<String>,
    pub approved_by: Option<String>,
}

impl std::fmt::Debug for PairingCode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PairingCode")
            .field("code", &self.code)
            .field("kind", &self.kind)
            .field("state", &self.state)
            .field("status_token_hash", &redacted(&self.status_token_hash))
            .field("machine", &self.machine)
            .field("requested_org", &self.requested_org)
            .field("created_at", &self.created_at)
            .field("expires_at", &self.expires_at)
            .field("workspace_id", &self.workspace_id)
            .field("approved_by", &self.approved_by)
            .finish()
    }
}

impl PairingCode {
    pub fn is_expired(&self, now: i64) -> bool {
        now >= self.expires_at
    }
}

/// The rows an approval created, as handed to the daemon.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Pairing {
    pub workspace: Workspace,
    pub install_id: String,
    pub runtime_target_id: String,
    pub machine_id: String,
    pub machine_name: String,
}

/// What the runtime endpoints need to check a credential.
#[derive(Clone)]
pub struct RuntimeTarget {
    pub id: String,
    pub workspace_id: String,
    pub machine_id: String,
    pub public_key: String,
    pub issue_token_hash: Option<Vec<u8>>,
    pub revoked_at: Option<i64>,
}

impl std::fmt::Debug for RuntimeTarget {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RuntimeTarget")
            .field("id", &self.id)
            .field("workspace_id", &self.workspace_id)
            .field("machine_id", &self.machine_id)
            .field("public_key", &self.public_key)
            .field("issue_token_hash", &redacted(&self.issue_token_hash))
            .field("revoked_at", &self.revoked_at)
            .finish()
    }
}

/// One line of the machines table.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MachineRow {
    pub machine_id: String,
    pub runtime_target_id: String,
    pub name: String,
    pub os: String,
    pub arch: String,
    pub daemon_version: String,
    /// The email of the member who paired it, and their user id.
    pub paired_by: String,
    pub paired_by_id: String,
    pub paired_at: i64,
    pub revoked_at: Option<i64>,
    pub revoked_reason: Option<String>,
    pub last_seen_at: Option<i64>,
}

/// One decoded daemon message for [`Store::relay_store_batch`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RelayOp {
    Start { session_id: String, agent: String, directory: String, started_at: i64 },
    Frame { session_id: String, seq: u64, ts: String, kind: &'static str, data: Vec<u8> },
    End { session_id: String, seq: u64, reason: String, exit_code: Option<i32> },
}

impl RelayOp {
    pub fn session_id(&self) -> &str {
        match self {
            RelayOp::Start { session_id, .. } | RelayOp::Frame { session_id, .. } | RelayOp::End { session_id, .. } => session_id,
        }
    }
}

/// What storing a batch did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RelayBatchOutcome {
    /// Per session (in first-seen order): the highest seq of this batch that is now stored
    /// (newly or before: duplicates are acked too).
    pub acks: Vec<(String, u64)>,
    /// The first message that broke the protocol (everything before it was stored).
    pub violation: Option<String>,
    /// New sessions not taken because a stored-bytes quota is used up (answer each with
    /// `session_refused`); their later messages are ignored.
    pub refused: Vec<String>,
    /// Frame data bytes newly stored (what the write budget counts).
    pub bytes: u64,
}

/// Stored-bytes quotas (SPEC A8): a new session is refused once its machine, or its org,
/// holds this many bytes of frame data.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StoredQuota {
    pub machine_bytes: u64,
    pub org_bytes: u64,
}

impl StoredQuota {
    pub const UNLIMITED: StoredQuota = StoredQuota { machine_bytes: u64::MAX, org_bytes: u64::MAX };
}

/// One recorded session.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SessionRow {
    pub id: String,
    pub workspace_id: String,
    pub workspace_slug: String,
    pub runtime_target_id: String,
    pub machine_id: String,
    pub machine_name: String,
    pub agent: String,
    pub directory: String,
    pub started_at: i64,
    pub ended_at: Option<i64>,
    pub end_reason: Option<String>,
    pub exit_code: Option<i32>,
    pub last_seq: u64,
    pub frame_count: u64,
    pub gap_count: u64,
    /// When retention removed its frames (a tombstone: one gap stands for them).
    pub purged_at: Option<i64>,
}

/// One stored frame.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FrameRow {
    pub seq: u64,
    pub ts: String,
    pub kind: String,
    pub data: Vec<u8>,
}

/// The platform's private JWT signing key. `Debug` prints the key id only.
#[derive(Clone)]
pub struct SigningKeyRow {
    pub kid: String,
    pub pkcs8_der: Vec<u8>,
    pub created_at: i64,
    /// When a newer key replaced it; it verifies for a token lifetime after that.
    pub retired_at: Option<i64>,
}

impl std::fmt::Debug for SigningKeyRow {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SigningKeyRow").field("kid", &self.kid).field("pkcs8_der", &REDACTED).finish()
    }
}

/// A user's Argon2 password hash (PHC string). `Debug` never prints it.
#[derive(Clone, PartialEq, Eq)]
pub struct PasswordHash(String);

impl PasswordHash {
    pub fn new(phc: impl Into<String>) -> PasswordHash {
        PasswordHash(phc.into())
    }
    /// The PHC string, for verification.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Debug for PasswordHash {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("PasswordHash(<redacted>)")
    }
}

/// What `Debug` shows in place of a secret (or of a secret's hash).
struct Redacted;
const REDACTED: Redacted = Redacted;

impl std::fmt::Debug for Redacted {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("<redacted>")
    }
}

fn redacted<T>(v: &Option<T>) -> Option<Redacted> {
    v.as_ref().map(|_| Redacted)
}

/// What cancelling a daemon's code (`POST /api/pairing-codes/{code}/cancel`) did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Cancelled {
    /// The code was pending; nothing had been created.
    Pending,
    /// The code was approved but not yet handed out: the runtime target the approval made is
    /// now revoked (reason `cancelled`).
    Approval { runtime_target_id: String },
}

/// A published release (its bytes apart).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct ReleaseRow {
    pub os: String,
    pub arch: String,
    pub version: String,
    pub file_name: String,
    pub size: i64,
    pub signature: String,
    pub published_at: i64,
}

/// The one handle on the database. Cheap to clone; calls are blocking (run them off the async
/// executor, see `AppState::db`).
#[derive(Clone)]
pub struct Store {
    db: Arc<dyn Backend>,
    /// Committed changes, as [`Event`]s: this process's, and on PostgreSQL every instance's.
    events: tokio::sync::broadcast::Sender<Event>,
}

fn new_id() -> String {
    Ulid::new().to_string()
}

/// A database written by a newer build is refused, never migrated down or half-read.
pub(crate) fn check_schema(version: i64, known: usize) -> Result<()> {
    if version > known as i64 {
        return Err(StoreError::Conflict(format!(
            "the database was written by a newer viewport-server (schema {version}, this build knows {known}); upgrade viewport-server"
        )));
    }
    Ok(())
}

/// What `--db` names: a SQLite file, or a PostgreSQL URL.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DbSpec {
    Sqlite(std::path::PathBuf),
    Postgres(String),
}

impl DbSpec {
    /// `postgres://…` / `postgresql://…` is PostgreSQL; any other `scheme://` (or
    /// `sqlite:`-style prefix this build does not know) is refused; anything else is a path.
    pub fn parse(s: &str) -> Result<DbSpec> {
        let t = s.trim();
        if t.is_empty() {
            return Err(StoreError::Unsupported("--db is empty: give a SQLite file path or a postgres:// URL".into()));
        }
        if let Some((scheme, _)) = t.split_once("://") {
            let scheme = scheme.to_ascii_lowercase();
            if scheme == "postgres" || scheme == "postgresql" {
                return Ok(DbSpec::Postgres(t.to_string()));
            }
            if scheme.chars().all(|c| c.is_ascii_alphanumeric() || "+-.".contains(c)) {
                return Err(StoreError::Unsupported(format!(
                    "--db {scheme}://… is not a database this build can use: give a SQLite file path (e.g. /var/lib/viewport/viewport.db) or a postgres:// URL"
                )));
            }
        }
        if let Some((scheme, _)) = t.split_once(':') {
            if ["sqlite", "sqlite3", "file", "mysql", "mariadb"].contains(&scheme.to_ascii_lowercase().as_str()) {
                return Err(StoreError::Unsupported(format!(
                    "--db {scheme}:… is not understood: give a SQLite file path without a prefix, or a postgres:// URL"
                )));
            }
        }
        Ok(DbSpec::Sqlite(t.into()))
    }

    /// For messages: the path, or the URL without its password.
    pub fn display(&self) -> String {
        match self {
            DbSpec::Sqlite(p) => p.display().to_string(),
            DbSpec::Postgres(u) => pg::redact(u),
        }
    }
}

impl Store {
    fn with(db: Arc<dyn Backend>) -> Store {
        Store { db, events: tokio::sync::broadcast::channel(4096).0 }
    }

    /// Opens (creating with mode 0600) and migrates a SQLite database file.
    pub fn open(path: &Path) -> Result<Store> {
        Ok(Store::with(Arc::new(sqlite::Sqlite::open(path)?)))
    }

    /// Opens what `--db` names (see [`DbSpec::parse`]) and migrates it.
    pub fn connect(db: &str) -> Result<Store> {
        match DbSpec::parse(db)? {
            DbSpec::Sqlite(path) => Store::open(&path),
            DbSpec::Postgres(url) => Ok(Store::with(Arc::new(pg::Postgres::connect(&url)?))),
        }
    }

    /// An in-memory SQLite database (unit tests).
    pub fn open_in_memory() -> Result<Store> {
        Ok(Store::with(Arc::new(sqlite::Sqlite::open_in_memory()?)))
    }

    /// `sqlite` or `postgres`.
    pub fn kind(&self) -> &'static str {
        self.db.kind()
    }

    /// Whether changes made by other processes arrive as events (PostgreSQL); without it
    /// (SQLite) the server polls for what the admin CLI changes.
    pub fn shared(&self) -> bool {
        self.kind() == "postgres"
    }

    /// Committed changes (see [`Event`]).
    pub fn subscribe(&self) -> tokio::sync::broadcast::Receiver<Event> {
        self.events.subscribe()
    }

    /// Starts delivering other processes' events (PostgreSQL's LISTEN); `None` on SQLite.
    pub fn listen(&self) -> Option<tokio::task::JoinHandle<()>> {
        self.db.listen(self.events.clone())
    }

    /// How many writes of this handle ran again after losing a race with another writer.
    pub fn write_retries(&self) -> u64 {
        self.db.retries()
    }

    /// Facts for `doctor`.
    pub fn describe(&self) -> Result<Vec<(String, String)>> {
        self.db.describe()
    }

    /// Runs `f` in one write transaction (see [`Backend::write`]: it may run again after a
    /// lost race, so `f` has no effect outside the transaction), then publishes its events.
    fn write<T>(&self, f: impl FnMut(&Tx) -> Result<T>) -> Result<T> {
        self.write_as(Isolation::Serializable, f)
    }

    /// A write ordered only by the rows it locks and the unique keys ([`Isolation::RowLocks`]).
    fn write_row_locked<T>(&self, f: impl FnMut(&Tx) -> Result<T>) -> Result<T> {
        self.write_as(Isolation::RowLocks, f)
    }

    fn write_as<T>(&self, isolation: Isolation, mut f: impl FnMut(&Tx) -> Result<T>) -> Result<T> {
        let mut out = None;
        let events = self.db.write(isolation, &mut |tx| {
            out = Some(f(tx)?);
            Ok(())
        })?;
        for e in events {
            let _ = self.events.send(e);
        }
        out.ok_or_else(|| StoreError::Db("the transaction produced no result".into()))
    }

    /// Runs `f` on a connection (no transaction: each statement sees what is committed).
    fn read<T>(&self, mut f: impl FnMut(&Tx) -> Result<T>) -> Result<T> {
        let mut out = None;
        self.db.read(&mut |tx| {
            out = Some(f(tx)?);
            Ok(())
        })?;
        out.ok_or_else(|| StoreError::Db("the query produced no result".into()))
    }

    // ---- releases ---------------------------------------------------------------------

    /// Stores a signed release; publishing the same version for the same platform again is
    /// refused (a published release never changes under the machines that checked it).
    pub fn publish_release(&self, r: &vpd_core::release::Release, file_name: &str, signature: &str, bytes: &[u8], now: i64) -> Result<()> {
        let v = r.version;
        let n = self.write(|tx| {
            tx.execute(
                "INSERT INTO releases (os, arch, version, major, minor, patch, file_name, size, signature, bytes, published_at)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11) ON CONFLICT DO NOTHING",
                p![r.os, r.arch, v.to_string(), v.0 as i64, v.1 as i64, v.2 as i64, file_name, bytes.len() as i64, signature, bytes, now],
            )
        })?;
        if n == 0 {
            return Err(StoreError::Conflict(format!("{} {} {v} is already published; publish a new version instead", r.os, r.arch)));
        }
        Ok(())
    }

    fn release_row(r: &Row) -> Result<ReleaseRow> {
        Ok(ReleaseRow {
            os: r.get(0)?,
            arch: r.get(1)?,
            version: r.get(2)?,
            file_name: r.get(3)?,
            size: r.get(4)?,
            signature: r.get(5)?,
            published_at: r.get(6)?,
        })
    }

    /// The newest release for a platform.
    pub fn latest_release(&self, os: &str, arch: &str) -> Result<Option<ReleaseRow>> {
        self.read(|tx| {
            tx.query_opt(
                "SELECT os, arch, version, file_name, size, signature, published_at FROM releases WHERE os = ?1 AND arch = ?2
                 ORDER BY major DESC, minor DESC, patch DESC LIMIT 1",
                p![os, arch],
                Self::release_row,
            )
        })
    }

    /// Every release, newest first.
    pub fn releases(&self) -> Result<Vec<ReleaseRow>> {
        self.read(|tx| {
            tx.query_map(
                "SELECT os, arch, version, file_name, size, signature, published_at FROM releases ORDER BY major DESC, minor DESC, patch DESC, os, arch",
                p![],
                Self::release_row,)
        })
    }

    /// A release's file, by platform, version and file name.
    pub fn release_file(&self, os: &str, arch: &str, version: &str, file_name: &str) -> Result<Option<Vec<u8>>> {
        self.read(|tx| {
            tx.query_opt(
                "SELECT bytes FROM releases WHERE os = ?1 AND arch = ?2 AND version = ?3 AND file_name = ?4",
                p![os, arch, version, file_name],
                |r| r.get(0),
            )
        })
    }

    // ---- users ------------------------------------------------------------------------

    pub fn user_count(&self) -> Result<i64> {
        self.read(|tx| tx.query_one("SELECT COUNT(*) FROM users", p![], |r| r.get(0)))
    }

    pub fn create_user(&self, email: &str, password_hash: &str, now: i64) -> Result<User> {
        let id = new_id();
        let n = self.write(|tx| {
            tx.execute(
                "INSERT INTO users (id, email, password_hash, created_at) VALUES (?1, ?2, ?3, ?4)
                 ON CONFLICT(email) DO NOTHING",
                p![id, email, password_hash, now],
            )
        })?;
        if n == 0 {
            return Err(StoreError::Conflict(format!("a user with email {email} already exists")));
        }
        Ok(User { id, email: email.to_string() })
    }

    /// The user and their password hash.
    pub fn user_by_email(&self, email: &str) -> Result<Option<(User, PasswordHash)>> {
        self.read(|tx| {
            tx.query_opt("SELECT id, email, password_hash FROM users WHERE email = ?1", p![email], |r| {
                Ok((User { id: r.get(0)?, email: r.get(1)? }, PasswordHash(r.get(2)?)))
            })
        })
    }

    /// Creates the first user, the first workspace and the membership at once (setup page).
    /// Fails with `Conflict` when a user already exists.
    pub fn create_first_admin(&self, email: &str, password_hash: &str, org_name: &str, org_slug: &str, now: i64) -> Result<(User, Workspace)> {
        self.write(|tx| {
            let users: i64 = tx.query_one("SELECT COUNT(*) FROM users", p![], |r| r.get(0))?;
            if users > 0 {
                return Err(StoreError::Conflict("setup is already done".into()));
            }
            let user = User { id: new_id(), email: email.to_string() };
            tx.execute("INSERT INTO users (id, email, password_hash, created_at) VALUES (?1, ?2, ?3, ?4)", p![user.id, email, password_hash, now])?;
            let ws = insert_workspace(tx, org_name, org_slug, now)?;
            let actor = Actor::User { id: user.id.clone(), email: user.email.clone() };
            audit(tx, &ws.id, now, &actor, "org.created", &format!("{} ({})", ws.name, ws.slug), "first-run setup")?;
            members::put_member(tx, &ws.id, &user.id, Role::Owner, &actor, now)?;
            Ok((user, ws))
        })
    }

    // ---- workspaces and memberships -----------------------------------------------------

    pub fn create_workspace(&self, name: &str, slug: &str, now: i64) -> Result<Workspace> {
        self.create_workspace_as(name, slug, None, &Actor::cli(), now)
    }

    /// Creates a workspace as `actor`, with `owner` (a user id) as its owner when given;
    /// otherwise the first member added becomes owner.
    pub fn create_workspace_as(&self, name: &str, slug: &str, owner: Option<&str>, actor: &Actor, now: i64) -> Result<Workspace> {
        self.write(|tx| {
            let ws = insert_workspace(tx, name, slug, now)?;
            audit(tx, &ws.id, now, actor, "org.created", &format!("{} ({})", ws.name, ws.slug), "")?;
            if let Some(owner) = owner {
                members::put_member(tx, &ws.id, owner, Role::Owner, actor, now)?;
            }
            Ok(ws)
        })
    }

    pub fn workspace_by_id(&self, id: &str) -> Result<Option<Workspace>> {
        self.read(|tx| tx.query_opt("SELECT id, name, slug FROM workspaces WHERE id = ?1", p![id], ws_row))
    }

    pub fn all_workspaces(&self) -> Result<Vec<Workspace>> {
        self.read(|tx| tx.query_map("SELECT id, name, slug FROM workspaces ORDER BY name, id", p![], ws_row))
    }

    /// By ULID or slug.
    pub fn find_workspace(&self, id_or_slug: &str) -> Result<Option<Workspace>> {
        self.read(|tx| tx.query_opt("SELECT id, name, slug FROM workspaces WHERE id = ?1 OR slug = ?1", p![id_or_slug], ws_row))
    }

    /// The workspace with this slug, only when `user_id` is a member (tenancy for pages).
    /// With the user's role there.
    pub fn member_workspace_by_slug(&self, user_id: &str, slug: &str) -> Result<Option<(Workspace, Role)>> {
        let row = self.read(|tx| {
            tx.query_opt(
                "SELECT w.id, w.name, w.slug, m.role FROM workspaces w
                 JOIN memberships m ON m.workspace_id = w.id
                 WHERE w.slug = ?1 AND m.user_id = ?2",
                p![slug, user_id],
                |r| Ok((ws_row(r)?, r.get::<String>(3)?)),
            )
        })?;
        row.map(|(w, role)| Ok((w, members::stored_role(&role)?))).transpose()
    }

    pub fn workspaces_of_user(&self, user_id: &str) -> Result<Vec<Workspace>> {
        self.read(|tx| {
            tx.query_map(
                "SELECT w.id, w.name, w.slug FROM workspaces w
                 JOIN memberships m ON m.workspace_id = w.id
                 WHERE m.user_id = ?1 ORDER BY w.name, w.id",
                p![user_id],
                ws_row,
            )
        })
    }

    pub fn is_member(&self, workspace_id: &str, user_id: &str) -> Result<bool> {
        self.read(|tx| is_member(tx, workspace_id, user_id))
    }

    // ---- web sessions -----------------------------------------------------------------

    pub fn create_web_session(&self, token_hash: &[u8], user_id: &str, now: i64, expires_at: i64) -> Result<()> {
        self.write(|tx| {
            tx.execute("DELETE FROM web_sessions WHERE expires_at <= ?1", p![now])?;
            tx.execute(
                "INSERT INTO web_sessions (token_hash, user_id, created_at, expires_at) VALUES (?1, ?2, ?3, ?4)",
                p![token_hash, user_id, now, expires_at],
            )?;
            Ok(())
        })
    }

    pub fn web_session_user(&self, token_hash: &[u8], now: i64) -> Result<Option<User>> {
        self.read(|tx| {
            tx.query_opt(
                "SELECT u.id, u.email FROM web_sessions s JOIN users u ON u.id = s.user_id
                 WHERE s.token_hash = ?1 AND s.expires_at > ?2",
                p![token_hash, now],
                |r| Ok(User { id: r.get(0)?, email: r.get(1)? }),
            )
        })
    }

    pub fn delete_web_session(&self, token_hash: &[u8]) -> Result<()> {
        self.write(|tx| tx.execute("DELETE FROM web_sessions WHERE token_hash = ?1", p![token_hash]).map(drop))
    }

    // ---- pairing codes ----------------------------------------------------------------

    /// Stores a daemon's code. `Conflict` when the code is already taken (pick another).
    pub fn insert_device_code(
        &self,
        code: &str,
        status_token_hash: &[u8],
        machine: &MachineInfo,
        requested_org: Option<&str>,
        now: i64,
        expires_at: i64,
    ) -> Result<()> {
        let n = self.write(|tx| {
            tx.execute(
                "INSERT INTO pairing_codes (code, kind, state, status_token_hash, name, public_key,
                 daemon_version, os, arch, requested_org, created_at, expires_at)
             VALUES (?1, 'device', 'pending', ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10)
             ON CONFLICT(code) DO NOTHING",
                p![
                    code,
                    status_token_hash,
                    machine.name,
                    machine.public_key,
                    machine.daemon_version,
                    machine.os,
                    machine.arch,
                    requested_org,
                    now,
                    expires_at
                ],
            )
        })?;
        if n == 0 {
            return Err(StoreError::Conflict("code taken".into()));
        }
        Ok(())
    }

    /// Stores an "Add machine" code minted by `user_id` (who must be a member) for a workspace.
    pub fn insert_minted_code(&self, code: &str, workspace_id: &str, user_id: &str, actor: &Actor, now: i64, expires_at: i64) -> Result<()> {
        self.write(|tx| {
            if !is_member(tx, workspace_id, user_id)? {
                return Err(StoreError::Forbidden("that user is not a member of this workspace".into()));
            }
            members::require(tx, workspace_id, actor, crate::roles::Cap::MintOwnCode)?;
            if actor.user_id().is_some_and(|a| a != user_id) {
                return Err(StoreError::Forbidden("a code can be made only for oneself".into()));
            }
            let n = tx.execute(
                "INSERT INTO pairing_codes (code, kind, state, created_at, expires_at, workspace_id, approved_by)
             VALUES (?1, 'minted', 'pending', ?2, ?3, ?4, ?5)
             ON CONFLICT(code) DO NOTHING",
                p![code, now, expires_at, workspace_id, user_id],
            )?;
            if n == 0 {
                return Err(StoreError::Conflict("code taken".into()));
            }
            let email = members::email_of(tx, user_id)?;
            audit(
                tx,
                workspace_id,
                now,
                actor,
                "code.minted",
                &email,
                &format!("Add machine code, valid until {}", crate::util::rfc3339(expires_at)),
            )?;
            Ok(())
        })
    }

    pub fn pairing_code(&self, code: &str) -> Result<Option<PairingCode>> {
        self.read(|tx| load_code(tx, code))
    }

    /// Approves a pending device code for `workspace_id` as `user_id`: creates the install,
    /// machine and runtime target rows (the issue token comes later, at delivery).
    /// `actor` is who decided (the user on the page, or the admin CLI approving as `user_id`).
    pub fn approve_code(&self, code: &str, workspace_id: &str, user_id: &str, actor: &Actor, now: i64) -> Result<Pairing> {
        self.write(|tx| {
            let pc =
                load_code(tx, code)?.filter(|c| c.kind == CodeKind::Device).ok_or_else(|| StoreError::NotFound("no such pairing code".into()))?;
            check_pending(&pc, now)?;
            let ws = tx
                .query_opt("SELECT id, name, slug FROM workspaces WHERE id = ?1", p![workspace_id], ws_row)?
                .ok_or_else(|| StoreError::Forbidden("that user is not a member of this workspace".into()))?;
            if !is_member(tx, &ws.id, user_id)? {
                return Err(StoreError::Forbidden("that user is not a member of this workspace".into()));
            }
            let machine = pc.machine.as_ref().ok_or_else(|| StoreError::NotFound("no such pairing code".into()))?;
            members::require(tx, &ws.id, actor, crate::roles::Cap::ApproveOwnPairing)?;
            let pairing = insert_pairing(tx, &ws, machine, user_id, None, now)?;
            let email = members::email_of(tx, user_id)?;
            audit(
                tx,
                &ws.id,
                now,
                actor,
                "machine.paired",
                &format!("{} ({})", pairing.machine_name, pairing.machine_id),
                &format!("approved as {email}"),
            )?;
            tx.execute(
                "UPDATE pairing_codes SET state = 'approved', workspace_id = ?2, approved_by = ?3,
                 runtime_target_id = ?4, decided_at = ?5
             WHERE code = ?1 AND state = 'pending'",
                p![code, ws.id, user_id, pairing.runtime_target_id, now],
            )?;
            tx.publish(Event::Pairing);
            Ok(pairing)
        })
    }

    /// Denies a pending device code.
    pub fn deny_code(&self, code: &str, user_id: &str, now: i64) -> Result<()> {
        self.write(|tx| {
            let pc =
                load_code(tx, code)?.filter(|c| c.kind == CodeKind::Device).ok_or_else(|| StoreError::NotFound("no such pairing code".into()))?;
            check_pending(&pc, now)?;
            tx.execute(
                "UPDATE pairing_codes SET state = 'denied', approved_by = ?2, decided_at = ?3
             WHERE code = ?1 AND state = 'pending'",
                p![code, user_id, now],
            )?;
            tx.publish(Event::Pairing);
            Ok(())
        })
    }

    /// Hands out an approved device code exactly once: stores the issue token's hash on the
    /// runtime target and marks the code consumed, in one transaction. `Ok(None)` when the
    /// code is not (or no longer) approved — a concurrent poll got it first.
    pub fn deliver_approval(&self, code: &str, issue_token_hash: &[u8]) -> Result<Option<Pairing>> {
        self.write(|tx| {
            let rt: Option<String> = tx
                .query_opt(
                    "SELECT runtime_target_id FROM pairing_codes
                 WHERE code = ?1 AND kind = 'device' AND state = 'approved'",
                    p![code],
                    |r| r.get(0),
                )?
                .flatten();
            let Some(rt) = rt else { return Ok(None) };
            let n = tx.execute("UPDATE pairing_codes SET state = 'consumed' WHERE code = ?1 AND state = 'approved'", p![code])?;
            if n != 1 {
                return Ok(None);
            }
            tx.execute("UPDATE runtime_targets SET issue_token_hash = ?2 WHERE id = ?1 AND issue_token_hash IS NULL", p![rt, issue_token_hash])?;
            let pairing = load_pairing(tx, &rt)?;
            tx.publish(Event::Pairing);
            Ok(Some(pairing))
        })
    }

    /// Cancels a daemon's code (the daemon gave up waiting). A pending, unexpired code becomes
    /// consumed; an approved code that was not handed out yet becomes consumed and the runtime
    /// target its approval created is revoked with reason `cancelled`, so no active machine is
    /// left behind. `Ok(None)` when there is nothing to cancel: unknown, minted, denied,
    /// delivered or expired. The caller checks the status token first.
    pub fn cancel_device_code(&self, code: &str, now: i64) -> Result<Option<Cancelled>> {
        self.write(|tx| {
            let Some(pc) = load_code(tx, code)?.filter(|c| c.kind == CodeKind::Device) else {
                return Ok(None);
            };
            let outcome = match pc.state {
                CodeState::Pending if !pc.is_expired(now) => Cancelled::Pending,
                CodeState::Approved => {
                    let rt: Option<String> = tx.query_one("SELECT runtime_target_id FROM pairing_codes WHERE code = ?1", p![code], |r| r.get(0))?;
                    let Some(rt) = rt else { return Ok(None) };
                    tx.execute(
                        "UPDATE runtime_targets SET revoked_at = ?2, revoked_reason = 'cancelled'
                     WHERE id = ?1 AND revoked_at IS NULL",
                        p![rt, now],
                    )?;
                    if let (Some(ws), Some(m)) = (pc.workspace_id.as_deref(), pc.machine.as_ref()) {
                        let machine_id: String = tx.query_one("SELECT machine_id FROM runtime_targets WHERE id = ?1", p![&rt], |r| r.get(0))?;
                        let actor = Actor::Machine { id: machine_id.clone() };
                        audit(
                            tx,
                            ws,
                            now,
                            &actor,
                            "machine.revoked",
                            &format!("{} ({machine_id})", m.name),
                            "the daemon cancelled before it received the approval",
                        )?;
                    }
                    tx.publish(Event::Revoked { ids: vec![rt.clone()] });
                    Cancelled::Approval { runtime_target_id: rt }
                }
                _ => return Ok(None),
            };
            let n = tx.execute(
                "UPDATE pairing_codes SET state = 'consumed', cancelled_at = ?2,
                 decided_at = COALESCE(decided_at, ?2)
             WHERE code = ?1 AND state IN ('pending', 'approved')",
                p![code, now],
            )?;
            if n != 1 {
                // Another process decided first: undo the revocation above.
                tx.abandon();
                return Ok(None);
            }
            tx.publish(Event::Pairing);
            Ok(Some(outcome))
        })
    }

    /// Claims a minted code: creates the rows with the minter as approver and the issue
    /// token's hash, marks the code consumed. `NotFound`/`Gone` when it cannot be claimed.
    pub fn claim_minted_code(&self, code: &str, machine: &MachineInfo, issue_token_hash: &[u8], now: i64) -> Result<Pairing> {
        self.write(|tx| {
            let pc =
                load_code(tx, code)?.filter(|c| c.kind == CodeKind::Minted).ok_or_else(|| StoreError::NotFound("no such pairing code".into()))?;
            check_pending(&pc, now)?;
            let (Some(ws_id), Some(user_id)) = (pc.workspace_id.as_deref(), pc.approved_by.as_deref()) else {
                return Err(StoreError::NotFound("no such pairing code".into()));
            };
            if !is_member(tx, ws_id, user_id)? {
                return Err(StoreError::Gone("the member who made this code has left the workspace".into()));
            }
            let ws = tx.query_one("SELECT id, name, slug FROM workspaces WHERE id = ?1", p![ws_id], ws_row)?;
            let pairing = insert_pairing(tx, &ws, machine, user_id, Some(issue_token_hash), now)?;
            let email = members::email_of(tx, user_id)?;
            let actor = Actor::Machine { id: pairing.machine_id.clone() };
            audit(
                tx,
                &ws.id,
                now,
                &actor,
                "machine.paired",
                &format!("{} ({})", pairing.machine_name, pairing.machine_id),
                &format!("claimed a code made by {email}"),
            )?;
            tx.execute(
                "UPDATE pairing_codes SET state = 'consumed', runtime_target_id = ?2, decided_at = ?3,
                 name = ?4, public_key = ?5, daemon_version = ?6, os = ?7, arch = ?8
             WHERE code = ?1",
                p![code, pairing.runtime_target_id, now, machine.name, machine.public_key, machine.daemon_version, machine.os, machine.arch],
            )?;
            Ok(pairing)
        })
    }

    // ---- runtime targets and machines ---------------------------------------------------

    /// The runtime target `id` in workspace `workspace_id` (never one of another workspace).
    pub fn runtime_target(&self, workspace_id: &str, id: &str) -> Result<Option<RuntimeTarget>> {
        self.read(|tx| {
            tx.query_opt(
                "SELECT id, workspace_id, machine_id, public_key, issue_token_hash, revoked_at
                 FROM runtime_targets WHERE id = ?1 AND workspace_id = ?2",
                p![id, workspace_id],
                |r| {
                    Ok(RuntimeTarget {
                        id: r.get(0)?,
                        workspace_id: r.get(1)?,
                        machine_id: r.get(2)?,
                        public_key: r.get(3)?,
                        issue_token_hash: r.get(4)?,
                        revoked_at: r.get(5)?,
                    })
                },
            )
        })
    }

    pub fn touch_machine(&self, workspace_id: &str, machine_id: &str, now: i64) -> Result<()> {
        self.write(|tx| tx.execute("UPDATE machines SET last_seen_at = ?3 WHERE id = ?1 AND workspace_id = ?2", p![machine_id, workspace_id, now]))?;
        Ok(())
    }

    /// Renames a machine of this workspace (the machine itself asks), with an audit row.
    pub fn rename_machine(&self, workspace_id: &str, machine_id: &str, name: &str, actor: &Actor, now: i64) -> Result<()> {
        self.write(|tx| {
            let old: String =
                tx.query_one("SELECT name FROM machines WHERE id = ?1 AND workspace_id = ?2", p![machine_id, workspace_id], |r| r.get(0))?;
            if old != name {
                tx.execute("UPDATE machines SET name = ?3 WHERE id = ?1 AND workspace_id = ?2", p![machine_id, workspace_id, name])?;
                audit(tx, workspace_id, now, actor, "machine.renamed", &format!("{name} ({machine_id})"), &format!("was {old}"))?;
            }
            Ok(())
        })
    }

    /// Revokes the pairing named by its machine id or runtime target id, in this workspace, as
    /// `actor` (a user needs to have paired it, or the role to revoke any machine).
    /// `Ok(false)` when it was already revoked; `NotFound` when there is no such machine here.
    pub fn revoke(&self, workspace_id: &str, machine_or_target_id: &str, reason: &str, actor: &Actor, now: i64) -> Result<bool> {
        self.write(|tx| {
            let found: Option<(String, String, String)> = tx.query_opt(
                "SELECT t.approved_by, m.id, m.name FROM runtime_targets t JOIN machines m ON m.id = t.machine_id
                 WHERE t.workspace_id = ?1 AND (t.id = ?2 OR t.machine_id = ?2)",
                p![workspace_id, machine_or_target_id],
                |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
            )?;
            let Some((approved_by, machine_id, machine_name)) = found else {
                return Err(StoreError::NotFound(format!("no machine {machine_or_target_id} in this workspace")));
            };
            members::require(tx, workspace_id, actor, crate::roles::cap_for_revoke(actor.user_id() == Some(approved_by.as_str())))?;
            let n = tx.execute(
                "UPDATE runtime_targets SET revoked_at = ?3, revoked_reason = ?4
             WHERE workspace_id = ?1 AND (id = ?2 OR machine_id = ?2) AND revoked_at IS NULL",
                p![workspace_id, machine_or_target_id, now, reason],
            )?;
            if n > 0 {
                audit(tx, workspace_id, now, actor, "machine.revoked", &format!("{machine_name} ({machine_id})"), reason)?;
                let ids = tx.query_map(
                    "SELECT id FROM runtime_targets WHERE workspace_id = ?1 AND (id = ?2 OR machine_id = ?2)",
                    p![workspace_id, machine_or_target_id],
                    |r| r.get(0),
                )?;
                tx.publish(Event::Revoked { ids });
            }
            Ok(n > 0)
        })
    }

    pub fn machines(&self, workspace_id: &str) -> Result<Vec<MachineRow>> {
        self.read(|tx| {
            tx.query_map(
                "SELECT m.id, t.id, m.name, m.os, m.arch, m.daemon_version, u.email, t.created_at,
                        t.revoked_at, t.revoked_reason, m.last_seen_at, t.approved_by
                 FROM runtime_targets t
                 JOIN machines m ON m.id = t.machine_id AND m.workspace_id = t.workspace_id
                 JOIN users u ON u.id = t.approved_by
                 WHERE t.workspace_id = ?1
                 ORDER BY t.revoked_at IS NOT NULL, t.created_at DESC, t.id",
                p![workspace_id],
                |r| {
                    Ok(MachineRow {
                        machine_id: r.get(0)?,
                        runtime_target_id: r.get(1)?,
                        name: r.get(2)?,
                        os: r.get(3)?,
                        arch: r.get(4)?,
                        daemon_version: r.get(5)?,
                        paired_by: r.get(6)?,
                        paired_at: r.get(7)?,
                        revoked_at: r.get(8)?,
                        revoked_reason: r.get(9)?,
                        last_seen_at: r.get(10)?,
                        paired_by_id: r.get(11)?,
                    })
                },
            )
        })
    }

    // ---- signing keys -----------------------------------------------------------------

    /// The signing keys that verify relay tokens at `now`, newest (the one that signs) first:
    /// the current key, and keys retired less than `keep_secs` ago (a token signed just
    /// before a rotation stays valid for its lifetime).
    pub fn signing_keys(&self, now: i64, keep_secs: i64) -> Result<Vec<SigningKeyRow>> {
        self.read(|tx| {
            tx.query_map(
                "SELECT kid, pkcs8_der, created_at, retired_at FROM signing_keys
                 WHERE retired_at IS NULL OR retired_at > ?1
                 ORDER BY retired_at IS NOT NULL, created_at DESC, kid",
                p![now - keep_secs],
                |r| Ok(SigningKeyRow { kid: r.get(0)?, pkcs8_der: r.get(1)?, created_at: r.get(2)?, retired_at: r.get(3)? }),
            )
        })
    }

    /// The key that signs (the newest that is not retired).
    pub fn signing_key(&self) -> Result<Option<SigningKeyRow>> {
        Ok(self.signing_keys(0, 0)?.into_iter().find(|k| k.retired_at.is_none()))
    }

    /// Stores a key unless one exists already, then returns the key in use (so two processes
    /// racing at first start agree on one key).
    pub fn ensure_signing_key(&self, candidate: &SigningKeyRow, now: i64) -> Result<SigningKeyRow> {
        self.write(|tx| {
            let n: i64 = tx.query_one("SELECT COUNT(*) FROM signing_keys WHERE retired_at IS NULL", p![], |r| r.get(0))?;
            if n == 0 {
                tx.execute("INSERT INTO signing_keys (kid, pkcs8_der, created_at) VALUES (?1, ?2, ?3)", p![candidate.kid, candidate.pkcs8_der, now])?;
            }
            Ok(())
        })?;
        self.signing_key()?.ok_or_else(|| StoreError::NotFound("signing key".into()))
    }

    /// Makes `candidate` the signing key: the current one is retired at `now` (it still
    /// verifies for the token lifetime), keys retired more than `forget_secs` ago are
    /// deleted, and every instance reloads its keys.
    pub fn rotate_signing_key(&self, candidate: &SigningKeyRow, now: i64, forget_secs: i64) -> Result<()> {
        self.write(|tx| {
            tx.execute("UPDATE signing_keys SET retired_at = ?1 WHERE retired_at IS NULL", p![now])?;
            tx.execute("DELETE FROM signing_keys WHERE retired_at IS NOT NULL AND retired_at < ?1", p![now - forget_secs])?;
            tx.execute("INSERT INTO signing_keys (kid, pkcs8_der, created_at) VALUES (?1, ?2, ?3)", p![candidate.kid, candidate.pkcs8_der, now])?;
            tx.publish(Event::Keys);
            Ok(())
        })
    }
}

fn ws_row(r: &Row) -> Result<Workspace> {
    Ok(Workspace { id: r.get(0)?, name: r.get(1)?, slug: r.get(2)? })
}

fn insert_workspace(tx: &Tx, name: &str, slug: &str, now: i64) -> Result<Workspace> {
    let id = new_id();
    let n = tx.execute(
        "INSERT INTO workspaces (id, name, slug, created_at) VALUES (?1, ?2, ?3, ?4)
         ON CONFLICT(slug) DO NOTHING",
        p![id, name, slug, now],
    )?;
    if n == 0 {
        return Err(StoreError::Conflict(format!("the slug {slug} is already taken")));
    }
    Ok(Workspace { id, name: name.to_string(), slug: slug.to_string() })
}

fn is_member(tx: &Tx, workspace_id: &str, user_id: &str) -> Result<bool> {
    Ok(tx.query_opt("SELECT 1 FROM memberships WHERE workspace_id = ?1 AND user_id = ?2", p![workspace_id, user_id], |_| Ok(()))?.is_some())
}

/// `NotFound` for a consumed code (delivered, claimed or cancelled: it looks unknown, as on the
/// status route); `Gone` for one that was decided but not handed out yet, or that expired.
fn check_pending(pc: &PairingCode, now: i64) -> Result<()> {
    if pc.state == CodeState::Consumed {
        return Err(StoreError::NotFound("no such pairing code".into()));
    }
    if pc.state != CodeState::Pending {
        return Err(StoreError::Gone("this pairing code was already used or decided".into()));
    }
    if pc.is_expired(now) {
        return Err(StoreError::Gone("this pairing code has expired".into()));
    }
    Ok(())
}

fn load_code(tx: &Tx, code: &str) -> Result<Option<PairingCode>> {
    tx.query_opt(
        "SELECT code, kind, state, status_token_hash, name, public_key, daemon_version, os, arch,
                    requested_org, created_at, expires_at, workspace_id, approved_by
             FROM pairing_codes WHERE code = ?1",
        p![code],
        |r| {
            let kind: String = r.get(1)?;
            let kind = if kind == "minted" { CodeKind::Minted } else { CodeKind::Device };
            let state: String = r.get(2)?;
            let name: Option<String> = r.get(4)?;
            let machine = match (kind, name) {
                (CodeKind::Device, Some(name)) => Some(MachineInfo {
                    name,
                    public_key: r.get::<Option<String>>(5)?.unwrap_or_default(),
                    daemon_version: r.get::<Option<String>>(6)?.unwrap_or_default(),
                    os: r.get::<Option<String>>(7)?.unwrap_or_default(),
                    arch: r.get::<Option<String>>(8)?.unwrap_or_default(),
                }),
                _ => None,
            };
            Ok(PairingCode {
                code: r.get(0)?,
                kind,
                state: CodeState::parse(&state),
                status_token_hash: r.get(3)?,
                machine,
                requested_org: r.get(9)?,
                created_at: r.get(10)?,
                expires_at: r.get(11)?,
                workspace_id: r.get(12)?,
                approved_by: r.get(13)?,
            })
        },
    )
}

fn insert_pairing(tx: &Tx, ws: &Workspace, machine: &MachineInfo, approved_by: &str, issue_token_hash: Option<&[u8]>, now: i64) -> Result<Pairing> {
    let install_id = new_id();
    let machine_id = new_id();
    let runtime_target_id = new_id();
    tx.execute("INSERT INTO installs (id, workspace_id, created_at) VALUES (?1, ?2, ?3)", p![install_id, ws.id, now])?;
    tx.execute(
        // `last_seen_at` stays NULL until the first relay token (the machine has not been seen).
        "INSERT INTO machines (id, workspace_id, name, os, arch, daemon_version, created_at)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
        p![machine_id, ws.id, machine.name, machine.os, machine.arch, machine.daemon_version, now],
    )?;
    tx.execute(
        "INSERT INTO runtime_targets (id, workspace_id, install_id, machine_id, public_key,
             approved_by, created_at, issue_token_hash)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
        p![runtime_target_id, ws.id, install_id, machine_id, machine.public_key, approved_by, now, issue_token_hash],
    )?;
    Ok(Pairing { workspace: ws.clone(), install_id, runtime_target_id, machine_id, machine_name: machine.name.clone() })
}

fn load_pairing(tx: &Tx, runtime_target_id: &str) -> Result<Pairing> {
    tx.query_one(
        "SELECT w.id, w.name, w.slug, t.install_id, t.id, m.id, m.name
         FROM runtime_targets t JOIN workspaces w ON w.id = t.workspace_id
         JOIN machines m ON m.id = t.machine_id
         WHERE t.id = ?1",
        p![runtime_target_id],
        |r| {
            Ok(Pairing {
                workspace: Workspace { id: r.get(0)?, name: r.get(1)?, slug: r.get(2)? },
                install_id: r.get(3)?,
                runtime_target_id: r.get(4)?,
                machine_id: r.get(5)?,
                machine_name: r.get(6)?,
            })
        },
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_database_from_before_roles_makes_each_orgs_earliest_member_its_owner() {
        let conn = rusqlite::Connection::open_in_memory().unwrap();
        for m in &sqlite::MIGRATIONS[..3] {
            conn.execute_batch(m).unwrap();
        }
        conn.execute_batch(
            "PRAGMA user_version = 3;
             INSERT INTO users VALUES ('u1', 'late@example.com', 'h', 0), ('u2', 'early@example.com', 'h', 0), ('u3', 'solo@example.com', 'h', 0);
             INSERT INTO workspaces VALUES ('w1', 'One', 'one', 0), ('w2', 'Two', 'two', 0), ('w3', 'Empty', 'empty', 0);
             INSERT INTO memberships VALUES ('w1', 'u1', 50), ('w1', 'u2', 10), ('w2', 'u3', 70), ('w2', 'u1', 70);",
        )
        .unwrap();
        let s = Store::with(Arc::new(sqlite::Sqlite::init(conn).unwrap()));
        assert_eq!(s.role_of("w1", "u2").unwrap(), Some(Role::Owner), "the earliest member of One");
        assert_eq!(s.role_of("w1", "u1").unwrap(), Some(Role::Member));
        // A tie goes to the row inserted first.
        assert_eq!(s.role_of("w2", "u3").unwrap(), Some(Role::Owner));
        assert_eq!(s.role_of("w2", "u1").unwrap(), Some(Role::Member));
        // An org without members gets its owner from the first member added.
        s.add_member("w3", "u1", 80).unwrap();
        assert_eq!(s.role_of("w3", "u1").unwrap(), Some(Role::Owner));
        s.add_member("w3", "u2", 90).unwrap();
        assert_eq!(s.role_of("w3", "u2").unwrap(), Some(Role::Member));
    }
}

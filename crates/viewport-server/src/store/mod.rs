//! All persistence. Every SQL statement of the server lives in this module (`mod.rs`, and
//! `members.rs` for memberships, roles and the audit log), migrations included.
//!
//! The methods speak in domain operations (approve a code, deliver an approval, revoke a
//! machine) rather than in rows, so a PostgreSQL backend could implement the same surface.
//! Times are Unix seconds (UTC). Secrets (status tokens, issue tokens, session tokens) are only
//! ever stored as SHA-256 hashes, handed in by the caller.
//!
//! The admin CLI opens the same SQLite file while the server runs, so the connection uses WAL
//! and a busy timeout, and every multi-row change is one `BEGIN IMMEDIATE` transaction.

use rusqlite::{params, Connection, OptionalExtension, TransactionBehavior};
use std::path::Path;
use std::sync::{Arc, Mutex, MutexGuard};
use ulid::Ulid;

mod members;
use crate::roles::{Actor, Role};
use members::audit;
pub use members::AuditEntry;

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("database error: {0}")]
    Db(#[from] rusqlite::Error),
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

const MIGRATIONS: &[&str] = &[
    // 1: everything.
    r#"
    CREATE TABLE users (
        id TEXT PRIMARY KEY,
        email TEXT NOT NULL UNIQUE,
        password_hash TEXT NOT NULL,
        created_at INTEGER NOT NULL
    );
    CREATE TABLE workspaces (
        id TEXT PRIMARY KEY,
        name TEXT NOT NULL,
        slug TEXT NOT NULL UNIQUE,
        created_at INTEGER NOT NULL
    );
    CREATE TABLE memberships (
        workspace_id TEXT NOT NULL REFERENCES workspaces(id),
        user_id TEXT NOT NULL REFERENCES users(id),
        created_at INTEGER NOT NULL,
        PRIMARY KEY (workspace_id, user_id)
    );
    CREATE TABLE web_sessions (
        token_hash BLOB PRIMARY KEY,
        user_id TEXT NOT NULL REFERENCES users(id),
        created_at INTEGER NOT NULL,
        expires_at INTEGER NOT NULL
    );
    CREATE TABLE pairing_codes (
        code TEXT PRIMARY KEY,
        kind TEXT NOT NULL CHECK (kind IN ('device', 'minted')),
        state TEXT NOT NULL CHECK (state IN ('pending', 'approved', 'denied', 'consumed')),
        status_token_hash BLOB,
        name TEXT, public_key TEXT, daemon_version TEXT, os TEXT, arch TEXT,
        requested_org TEXT,
        created_at INTEGER NOT NULL,
        expires_at INTEGER NOT NULL,
        workspace_id TEXT REFERENCES workspaces(id),
        approved_by TEXT REFERENCES users(id),
        runtime_target_id TEXT,
        decided_at INTEGER
    );
    CREATE TABLE installs (
        id TEXT PRIMARY KEY,
        workspace_id TEXT NOT NULL REFERENCES workspaces(id),
        created_at INTEGER NOT NULL
    );
    CREATE TABLE machines (
        id TEXT PRIMARY KEY,
        workspace_id TEXT NOT NULL REFERENCES workspaces(id),
        name TEXT NOT NULL,
        os TEXT NOT NULL,
        arch TEXT NOT NULL,
        daemon_version TEXT NOT NULL,
        created_at INTEGER NOT NULL,
        last_seen_at INTEGER
    );
    CREATE TABLE runtime_targets (
        id TEXT PRIMARY KEY,
        workspace_id TEXT NOT NULL REFERENCES workspaces(id),
        install_id TEXT NOT NULL REFERENCES installs(id),
        machine_id TEXT NOT NULL REFERENCES machines(id),
        public_key TEXT NOT NULL,
        approved_by TEXT NOT NULL REFERENCES users(id),
        created_at INTEGER NOT NULL,
        revoked_at INTEGER,
        revoked_reason TEXT,
        issue_token_hash BLOB
    );
    CREATE INDEX runtime_targets_ws ON runtime_targets(workspace_id, approved_by);
    CREATE TABLE signing_keys (
        kid TEXT PRIMARY KEY,
        pkcs8_der BLOB NOT NULL,
        created_at INTEGER NOT NULL
    );
    "#,
    // 2: when a daemon cancelled its code (Ctrl-C while waiting).
    r#"
    ALTER TABLE pairing_codes ADD COLUMN cancelled_at INTEGER;
    "#,
    // 3: the relay's records: sessions and their frames (SPEC sections 9 and 14).
    // `relay_frames` has no foreign key on purpose (the hot insert path); retention and the
    // session's own delete remove frames explicitly.
    r#"
    CREATE TABLE relay_sessions (
        id TEXT PRIMARY KEY,
        workspace_id TEXT NOT NULL REFERENCES workspaces(id),
        runtime_target_id TEXT NOT NULL REFERENCES runtime_targets(id),
        machine_id TEXT NOT NULL,
        agent TEXT NOT NULL,
        directory TEXT NOT NULL,
        started_at INTEGER NOT NULL,
        ended_at INTEGER,
        end_reason TEXT,
        exit_code INTEGER,
        last_seq INTEGER NOT NULL DEFAULT 0,
        gap_count INTEGER NOT NULL DEFAULT 0,
        frame_count INTEGER NOT NULL DEFAULT 0
    );
    CREATE INDEX relay_sessions_target ON relay_sessions(runtime_target_id, ended_at);
    CREATE INDEX relay_sessions_ws ON relay_sessions(workspace_id, started_at);
    CREATE INDEX relay_sessions_ended ON relay_sessions(ended_at);
    CREATE TABLE relay_frames (
        session_id TEXT NOT NULL,
        seq INTEGER NOT NULL,
        ts TEXT NOT NULL,
        kind TEXT NOT NULL,
        data BLOB NOT NULL,
        PRIMARY KEY (session_id, seq)
    ) WITHOUT ROWID;
    "#,
    // 4: roles (SPEC A6) and the audit log. Each org's earliest member becomes its owner.
    r#"
    ALTER TABLE memberships ADD COLUMN role TEXT NOT NULL DEFAULT 'member'
        CHECK (role IN ('owner', 'admin', 'member'));
    UPDATE memberships SET role = 'owner' WHERE rowid IN (
        SELECT (SELECT m.rowid FROM memberships m WHERE m.workspace_id = w.id
                ORDER BY m.created_at, m.rowid LIMIT 1)
        FROM workspaces w);
    CREATE TABLE audit_log (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        workspace_id TEXT NOT NULL REFERENCES workspaces(id),
        at INTEGER NOT NULL,
        actor TEXT NOT NULL,
        action TEXT NOT NULL,
        subject TEXT NOT NULL DEFAULT '',
        detail TEXT NOT NULL DEFAULT ''
    );
    CREATE INDEX audit_log_ws ON audit_log(workspace_id, id);
    "#,
    // 5: quotas (SPEC A8): the bytes each session holds, when its last frame came (retention
    // of sessions that never ended), and the sessions refused for a used-up quota.
    r#"
    ALTER TABLE relay_sessions ADD COLUMN bytes INTEGER NOT NULL DEFAULT 0;
    ALTER TABLE relay_sessions ADD COLUMN last_frame_at INTEGER;
    ALTER TABLE relay_sessions ADD COLUMN purged_at INTEGER;
    UPDATE relay_sessions SET
        bytes = (SELECT COALESCE(SUM(length(f.data)), 0) FROM relay_frames f WHERE f.session_id = relay_sessions.id),
        last_frame_at = COALESCE(ended_at, CAST(strftime('%s', 'now') AS INTEGER));
    CREATE INDEX relay_sessions_machine ON relay_sessions(machine_id);
    CREATE INDEX relay_sessions_open ON relay_sessions(ended_at, last_frame_at);
    CREATE TABLE relay_refused_sessions (
        id TEXT PRIMARY KEY,
        runtime_target_id TEXT NOT NULL,
        reason TEXT NOT NULL,
        at INTEGER NOT NULL
    );
    "#,
    // 2: signed releases for `vpd update` (issue 13 item 5). The signature is stored as the
    // release manager made it; the server never holds a release key.
    r#"
    CREATE TABLE releases (
        os TEXT NOT NULL,
        arch TEXT NOT NULL,
        version TEXT NOT NULL,
        major INTEGER NOT NULL,
        minor INTEGER NOT NULL,
        patch INTEGER NOT NULL,
        file_name TEXT NOT NULL,
        size INTEGER NOT NULL,
        signature TEXT NOT NULL,
        bytes BLOB NOT NULL,
        published_at INTEGER NOT NULL,
        PRIMARY KEY (os, arch, version)
    );
    "#,
];

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
    conn: Arc<Mutex<Connection>>,
}

fn new_id() -> String {
    Ulid::new().to_string()
}

impl Store {
    /// Opens (creating with mode 0600) and migrates the database file.
    pub fn open(path: &Path) -> Result<Store> {
        create_private_file(path).map_err(|source| StoreError::Io { path: path.display().to_string(), source })?;
        let conn = Connection::open(path)?;
        Self::init(conn)
    }

    /// An in-memory database (unit tests).
    pub fn open_in_memory() -> Result<Store> {
        Self::init(Connection::open_in_memory()?)
    }

    fn init(mut conn: Connection) -> Result<Store> {
        conn.busy_timeout(std::time::Duration::from_secs(5))?;
        // `journal_mode` answers with a row, so it is queried rather than executed.
        let _mode: String = conn.query_row("PRAGMA journal_mode = WAL", [], |r| r.get(0))?;
        conn.execute_batch("PRAGMA foreign_keys = ON; PRAGMA synchronous = NORMAL;")?;
        let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
        let version: i64 = tx.query_row("PRAGMA user_version", [], |r| r.get(0))?;
        if version > MIGRATIONS.len() as i64 {
            return Err(StoreError::Conflict(format!(
                "the database was written by a newer viewport-server (schema {version}, this build knows {}); upgrade viewport-server",
                MIGRATIONS.len()
            )));
        }
        for (i, m) in MIGRATIONS.iter().enumerate().skip(version as usize) {
            tx.execute_batch(m)?;
            tx.execute_batch(&format!("PRAGMA user_version = {}", i + 1))?;
        }
        tx.commit()?;
        Ok(Store { conn: Arc::new(Mutex::new(conn)) })
    }

    fn conn(&self) -> MutexGuard<'_, Connection> {
        self.conn.lock().unwrap_or_else(|e| e.into_inner())
    }

    // ---- releases ---------------------------------------------------------------------

    /// Stores a signed release; publishing the same version for the same platform again is
    /// refused (a published release never changes under the machines that checked it).
    pub fn publish_release(&self, r: &vpd_core::release::Release, file_name: &str, signature: &str, bytes: &[u8], now: i64) -> Result<()> {
        let v = r.version;
        let n = self.conn().execute(
            "INSERT INTO releases (os, arch, version, major, minor, patch, file_name, size, signature, bytes, published_at)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11) ON CONFLICT DO NOTHING",
            params![r.os, r.arch, v.to_string(), v.0 as i64, v.1 as i64, v.2 as i64, file_name, bytes.len() as i64, signature, bytes, now],
        )?;
        if n == 0 {
            return Err(StoreError::Conflict(format!("{} {} {v} is already published; publish a new version instead", r.os, r.arch)));
        }
        Ok(())
    }

    fn release_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<ReleaseRow> {
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
        Ok(self
            .conn()
            .query_row(
                "SELECT os, arch, version, file_name, size, signature, published_at FROM releases WHERE os = ?1 AND arch = ?2
                 ORDER BY major DESC, minor DESC, patch DESC LIMIT 1",
                params![os, arch],
                Self::release_row,
            )
            .optional()?)
    }

    /// Every release, newest first.
    pub fn releases(&self) -> Result<Vec<ReleaseRow>> {
        let conn = self.conn();
        let mut st = conn.prepare(
            "SELECT os, arch, version, file_name, size, signature, published_at FROM releases ORDER BY major DESC, minor DESC, patch DESC, os, arch",
        )?;
        let rows = st.query_map([], Self::release_row)?.collect::<rusqlite::Result<Vec<_>>>()?;
        Ok(rows)
    }

    /// A release's file, by platform, version and file name.
    pub fn release_file(&self, os: &str, arch: &str, version: &str, file_name: &str) -> Result<Option<Vec<u8>>> {
        Ok(self
            .conn()
            .query_row(
                "SELECT bytes FROM releases WHERE os = ?1 AND arch = ?2 AND version = ?3 AND file_name = ?4",
                params![os, arch, version, file_name],
                |r| r.get(0),
            )
            .optional()?)
    }

    // ---- users ------------------------------------------------------------------------

    pub fn user_count(&self) -> Result<i64> {
        Ok(self.conn().query_row("SELECT COUNT(*) FROM users", [], |r| r.get(0))?)
    }

    pub fn create_user(&self, email: &str, password_hash: &str, now: i64) -> Result<User> {
        let id = new_id();
        let n = self.conn().execute(
            "INSERT INTO users (id, email, password_hash, created_at) VALUES (?1, ?2, ?3, ?4)
             ON CONFLICT(email) DO NOTHING",
            params![id, email, password_hash, now],
        )?;
        if n == 0 {
            return Err(StoreError::Conflict(format!("a user with email {email} already exists")));
        }
        Ok(User { id, email: email.to_string() })
    }

    /// The user and their password hash.
    pub fn user_by_email(&self, email: &str) -> Result<Option<(User, PasswordHash)>> {
        Ok(self
            .conn()
            .query_row("SELECT id, email, password_hash FROM users WHERE email = ?1", [email], |r| {
                Ok((User { id: r.get(0)?, email: r.get(1)? }, PasswordHash(r.get(2)?)))
            })
            .optional()?)
    }

    /// Creates the first user, the first workspace and the membership at once (setup page).
    /// Fails with `Conflict` when a user already exists.
    pub fn create_first_admin(&self, email: &str, password_hash: &str, org_name: &str, org_slug: &str, now: i64) -> Result<(User, Workspace)> {
        let mut conn = self.conn();
        let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
        let users: i64 = tx.query_row("SELECT COUNT(*) FROM users", [], |r| r.get(0))?;
        if users > 0 {
            return Err(StoreError::Conflict("setup is already done".into()));
        }
        let user = User { id: new_id(), email: email.to_string() };
        tx.execute("INSERT INTO users (id, email, password_hash, created_at) VALUES (?1, ?2, ?3, ?4)", params![user.id, email, password_hash, now])?;
        let ws = insert_workspace(&tx, org_name, org_slug, now)?;
        let actor = Actor::User { id: user.id.clone(), email: user.email.clone() };
        audit(&tx, &ws.id, now, &actor, "org.created", &format!("{} ({})", ws.name, ws.slug), "first-run setup")?;
        members::put_member(&tx, &ws.id, &user.id, Role::Owner, &actor, now)?;
        tx.commit()?;
        Ok((user, ws))
    }

    // ---- workspaces and memberships -----------------------------------------------------

    pub fn create_workspace(&self, name: &str, slug: &str, now: i64) -> Result<Workspace> {
        self.create_workspace_as(name, slug, None, &Actor::cli(), now)
    }

    /// Creates a workspace as `actor`, with `owner` (a user id) as its owner when given;
    /// otherwise the first member added becomes owner.
    pub fn create_workspace_as(&self, name: &str, slug: &str, owner: Option<&str>, actor: &Actor, now: i64) -> Result<Workspace> {
        let mut conn = self.conn();
        let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
        let ws = insert_workspace(&tx, name, slug, now)?;
        audit(&tx, &ws.id, now, actor, "org.created", &format!("{} ({})", ws.name, ws.slug), "")?;
        if let Some(owner) = owner {
            members::put_member(&tx, &ws.id, owner, Role::Owner, actor, now)?;
        }
        tx.commit()?;
        Ok(ws)
    }

    pub fn workspace_by_id(&self, id: &str) -> Result<Option<Workspace>> {
        Ok(self.conn().query_row("SELECT id, name, slug FROM workspaces WHERE id = ?1", [id], ws_row).optional()?)
    }

    pub fn all_workspaces(&self) -> Result<Vec<Workspace>> {
        let conn = self.conn();
        let mut st = conn.prepare("SELECT id, name, slug FROM workspaces ORDER BY name, id")?;
        let rows = st.query_map([], ws_row)?.collect::<Result<Vec<_>, _>>()?;
        Ok(rows)
    }

    /// By ULID or slug.
    pub fn find_workspace(&self, id_or_slug: &str) -> Result<Option<Workspace>> {
        Ok(self.conn().query_row("SELECT id, name, slug FROM workspaces WHERE id = ?1 OR slug = ?1", [id_or_slug], ws_row).optional()?)
    }

    /// The workspace with this slug, only when `user_id` is a member (tenancy for pages).
    /// With the user's role there.
    pub fn member_workspace_by_slug(&self, user_id: &str, slug: &str) -> Result<Option<(Workspace, Role)>> {
        let row = self
            .conn()
            .query_row(
                "SELECT w.id, w.name, w.slug, m.role FROM workspaces w
                 JOIN memberships m ON m.workspace_id = w.id
                 WHERE w.slug = ?1 AND m.user_id = ?2",
                [slug, user_id],
                |r| Ok((ws_row(r)?, r.get::<_, String>(3)?)),
            )
            .optional()?;
        row.map(|(w, role)| Ok((w, members::stored_role(&role)?))).transpose()
    }

    pub fn workspaces_of_user(&self, user_id: &str) -> Result<Vec<Workspace>> {
        let conn = self.conn();
        let mut st = conn.prepare(
            "SELECT w.id, w.name, w.slug FROM workspaces w
             JOIN memberships m ON m.workspace_id = w.id
             WHERE m.user_id = ?1 ORDER BY w.name, w.id",
        )?;
        let rows = st.query_map([user_id], ws_row)?.collect::<Result<Vec<_>, _>>()?;
        Ok(rows)
    }

    pub fn is_member(&self, workspace_id: &str, user_id: &str) -> Result<bool> {
        let conn = self.conn();
        is_member(&conn, workspace_id, user_id)
    }

    // ---- web sessions -----------------------------------------------------------------

    pub fn create_web_session(&self, token_hash: &[u8], user_id: &str, now: i64, expires_at: i64) -> Result<()> {
        let conn = self.conn();
        conn.execute("DELETE FROM web_sessions WHERE expires_at <= ?1", [now])?;
        conn.execute(
            "INSERT INTO web_sessions (token_hash, user_id, created_at, expires_at) VALUES (?1, ?2, ?3, ?4)",
            params![token_hash, user_id, now, expires_at],
        )?;
        Ok(())
    }

    pub fn web_session_user(&self, token_hash: &[u8], now: i64) -> Result<Option<User>> {
        Ok(self
            .conn()
            .query_row(
                "SELECT u.id, u.email FROM web_sessions s JOIN users u ON u.id = s.user_id
                 WHERE s.token_hash = ?1 AND s.expires_at > ?2",
                params![token_hash, now],
                |r| Ok(User { id: r.get(0)?, email: r.get(1)? }),
            )
            .optional()?)
    }

    pub fn delete_web_session(&self, token_hash: &[u8]) -> Result<()> {
        self.conn().execute("DELETE FROM web_sessions WHERE token_hash = ?1", [token_hash])?;
        Ok(())
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
        let n = self.conn().execute(
            "INSERT INTO pairing_codes (code, kind, state, status_token_hash, name, public_key,
                 daemon_version, os, arch, requested_org, created_at, expires_at)
             VALUES (?1, 'device', 'pending', ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10)
             ON CONFLICT(code) DO NOTHING",
            params![
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
        )?;
        if n == 0 {
            return Err(StoreError::Conflict("code taken".into()));
        }
        Ok(())
    }

    /// Stores an "Add machine" code minted by `user_id` (who must be a member) for a workspace.
    pub fn insert_minted_code(&self, code: &str, workspace_id: &str, user_id: &str, actor: &Actor, now: i64, expires_at: i64) -> Result<()> {
        let mut conn = self.conn();
        let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
        if !is_member(&tx, workspace_id, user_id)? {
            return Err(StoreError::Forbidden("that user is not a member of this workspace".into()));
        }
        members::require(&tx, workspace_id, actor, crate::roles::Cap::MintOwnCode)?;
        if actor.user_id().is_some_and(|a| a != user_id) {
            return Err(StoreError::Forbidden("a code can be made only for oneself".into()));
        }
        let n = tx.execute(
            "INSERT INTO pairing_codes (code, kind, state, created_at, expires_at, workspace_id, approved_by)
             VALUES (?1, 'minted', 'pending', ?2, ?3, ?4, ?5)
             ON CONFLICT(code) DO NOTHING",
            params![code, now, expires_at, workspace_id, user_id],
        )?;
        if n == 0 {
            return Err(StoreError::Conflict("code taken".into()));
        }
        let email = members::email_of(&tx, user_id)?;
        audit(&tx, workspace_id, now, actor, "code.minted", &email, &format!("Add machine code, valid until {}", crate::util::rfc3339(expires_at)))?;
        tx.commit()?;
        Ok(())
    }

    pub fn pairing_code(&self, code: &str) -> Result<Option<PairingCode>> {
        let conn = self.conn();
        load_code(&conn, code)
    }

    /// Approves a pending device code for `workspace_id` as `user_id`: creates the install,
    /// machine and runtime target rows (the issue token comes later, at delivery).
    /// `actor` is who decided (the user on the page, or the admin CLI approving as `user_id`).
    pub fn approve_code(&self, code: &str, workspace_id: &str, user_id: &str, actor: &Actor, now: i64) -> Result<Pairing> {
        let mut conn = self.conn();
        let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
        let pc = load_code(&tx, code)?.filter(|c| c.kind == CodeKind::Device).ok_or_else(|| StoreError::NotFound("no such pairing code".into()))?;
        check_pending(&pc, now)?;
        let ws = tx
            .query_row("SELECT id, name, slug FROM workspaces WHERE id = ?1", [workspace_id], ws_row)
            .optional()?
            .ok_or_else(|| StoreError::Forbidden("that user is not a member of this workspace".into()))?;
        if !is_member(&tx, &ws.id, user_id)? {
            return Err(StoreError::Forbidden("that user is not a member of this workspace".into()));
        }
        let machine = pc.machine.as_ref().ok_or_else(|| StoreError::NotFound("no such pairing code".into()))?;
        members::require(&tx, &ws.id, actor, crate::roles::Cap::ApproveOwnPairing)?;
        let pairing = insert_pairing(&tx, &ws, machine, user_id, None, now)?;
        let email = members::email_of(&tx, user_id)?;
        audit(
            &tx,
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
            params![code, ws.id, user_id, pairing.runtime_target_id, now],
        )?;
        tx.commit()?;
        Ok(pairing)
    }

    /// Denies a pending device code.
    pub fn deny_code(&self, code: &str, user_id: &str, now: i64) -> Result<()> {
        let mut conn = self.conn();
        let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
        let pc = load_code(&tx, code)?.filter(|c| c.kind == CodeKind::Device).ok_or_else(|| StoreError::NotFound("no such pairing code".into()))?;
        check_pending(&pc, now)?;
        tx.execute(
            "UPDATE pairing_codes SET state = 'denied', approved_by = ?2, decided_at = ?3
             WHERE code = ?1 AND state = 'pending'",
            params![code, user_id, now],
        )?;
        tx.commit()?;
        Ok(())
    }

    /// Hands out an approved device code exactly once: stores the issue token's hash on the
    /// runtime target and marks the code consumed, in one transaction. `Ok(None)` when the
    /// code is not (or no longer) approved — a concurrent poll got it first.
    pub fn deliver_approval(&self, code: &str, issue_token_hash: &[u8]) -> Result<Option<Pairing>> {
        let mut conn = self.conn();
        let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
        let rt: Option<String> = tx
            .query_row(
                "SELECT runtime_target_id FROM pairing_codes
                 WHERE code = ?1 AND kind = 'device' AND state = 'approved'",
                [code],
                |r| r.get(0),
            )
            .optional()?
            .flatten();
        let Some(rt) = rt else { return Ok(None) };
        let n = tx.execute("UPDATE pairing_codes SET state = 'consumed' WHERE code = ?1 AND state = 'approved'", [code])?;
        if n != 1 {
            return Ok(None);
        }
        tx.execute("UPDATE runtime_targets SET issue_token_hash = ?2 WHERE id = ?1 AND issue_token_hash IS NULL", params![rt, issue_token_hash])?;
        let pairing = load_pairing(&tx, &rt)?;
        tx.commit()?;
        Ok(Some(pairing))
    }

    /// Cancels a daemon's code (the daemon gave up waiting). A pending, unexpired code becomes
    /// consumed; an approved code that was not handed out yet becomes consumed and the runtime
    /// target its approval created is revoked with reason `cancelled`, so no active machine is
    /// left behind. `Ok(None)` when there is nothing to cancel: unknown, minted, denied,
    /// delivered or expired. The caller checks the status token first.
    pub fn cancel_device_code(&self, code: &str, now: i64) -> Result<Option<Cancelled>> {
        let mut conn = self.conn();
        let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
        let Some(pc) = load_code(&tx, code)?.filter(|c| c.kind == CodeKind::Device) else {
            return Ok(None);
        };
        let outcome = match pc.state {
            CodeState::Pending if !pc.is_expired(now) => Cancelled::Pending,
            CodeState::Approved => {
                let rt: Option<String> = tx.query_row("SELECT runtime_target_id FROM pairing_codes WHERE code = ?1", [code], |r| r.get(0))?;
                let Some(rt) = rt else { return Ok(None) };
                tx.execute(
                    "UPDATE runtime_targets SET revoked_at = ?2, revoked_reason = 'cancelled'
                     WHERE id = ?1 AND revoked_at IS NULL",
                    params![rt, now],
                )?;
                if let (Some(ws), Some(m)) = (pc.workspace_id.as_deref(), pc.machine.as_ref()) {
                    let machine_id: String = tx.query_row("SELECT machine_id FROM runtime_targets WHERE id = ?1", [&rt], |r| r.get(0))?;
                    let actor = Actor::Machine { id: machine_id.clone() };
                    audit(
                        &tx,
                        ws,
                        now,
                        &actor,
                        "machine.revoked",
                        &format!("{} ({machine_id})", m.name),
                        "the daemon cancelled before it received the approval",
                    )?;
                }
                Cancelled::Approval { runtime_target_id: rt }
            }
            _ => return Ok(None),
        };
        let n = tx.execute(
            "UPDATE pairing_codes SET state = 'consumed', cancelled_at = ?2,
                 decided_at = COALESCE(decided_at, ?2)
             WHERE code = ?1 AND state IN ('pending', 'approved')",
            params![code, now],
        )?;
        if n != 1 {
            return Ok(None);
        }
        tx.commit()?;
        Ok(Some(outcome))
    }

    /// Claims a minted code: creates the rows with the minter as approver and the issue
    /// token's hash, marks the code consumed. `NotFound`/`Gone` when it cannot be claimed.
    pub fn claim_minted_code(&self, code: &str, machine: &MachineInfo, issue_token_hash: &[u8], now: i64) -> Result<Pairing> {
        let mut conn = self.conn();
        let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
        let pc = load_code(&tx, code)?.filter(|c| c.kind == CodeKind::Minted).ok_or_else(|| StoreError::NotFound("no such pairing code".into()))?;
        check_pending(&pc, now)?;
        let (Some(ws_id), Some(user_id)) = (pc.workspace_id.as_deref(), pc.approved_by.as_deref()) else {
            return Err(StoreError::NotFound("no such pairing code".into()));
        };
        if !is_member(&tx, ws_id, user_id)? {
            return Err(StoreError::Gone("the member who made this code has left the workspace".into()));
        }
        let ws = tx.query_row("SELECT id, name, slug FROM workspaces WHERE id = ?1", [ws_id], ws_row)?;
        let pairing = insert_pairing(&tx, &ws, machine, user_id, Some(issue_token_hash), now)?;
        let email = members::email_of(&tx, user_id)?;
        let actor = Actor::Machine { id: pairing.machine_id.clone() };
        audit(
            &tx,
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
            params![code, pairing.runtime_target_id, now, machine.name, machine.public_key, machine.daemon_version, machine.os, machine.arch],
        )?;
        tx.commit()?;
        Ok(pairing)
    }

    // ---- runtime targets and machines ---------------------------------------------------

    /// The runtime target `id` in workspace `workspace_id` (never one of another workspace).
    pub fn runtime_target(&self, workspace_id: &str, id: &str) -> Result<Option<RuntimeTarget>> {
        Ok(self
            .conn()
            .query_row(
                "SELECT id, workspace_id, machine_id, public_key, issue_token_hash, revoked_at
                 FROM runtime_targets WHERE id = ?1 AND workspace_id = ?2",
                [id, workspace_id],
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
            .optional()?)
    }

    pub fn touch_machine(&self, workspace_id: &str, machine_id: &str, now: i64) -> Result<()> {
        self.conn().execute("UPDATE machines SET last_seen_at = ?3 WHERE id = ?1 AND workspace_id = ?2", params![machine_id, workspace_id, now])?;
        Ok(())
    }

    /// Renames a machine of this workspace (the machine itself asks), with an audit row.
    pub fn rename_machine(&self, workspace_id: &str, machine_id: &str, name: &str, actor: &Actor, now: i64) -> Result<()> {
        let mut conn = self.conn();
        let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
        let old: String = tx.query_row("SELECT name FROM machines WHERE id = ?1 AND workspace_id = ?2", [machine_id, workspace_id], |r| r.get(0))?;
        if old != name {
            tx.execute("UPDATE machines SET name = ?3 WHERE id = ?1 AND workspace_id = ?2", params![machine_id, workspace_id, name])?;
            audit(&tx, workspace_id, now, actor, "machine.renamed", &format!("{name} ({machine_id})"), &format!("was {old}"))?;
        }
        tx.commit()?;
        Ok(())
    }

    /// Revokes the pairing named by its machine id or runtime target id, in this workspace, as
    /// `actor` (a user needs to have paired it, or the role to revoke any machine).
    /// `Ok(false)` when it was already revoked; `NotFound` when there is no such machine here.
    pub fn revoke(&self, workspace_id: &str, machine_or_target_id: &str, reason: &str, actor: &Actor, now: i64) -> Result<bool> {
        let mut conn = self.conn();
        let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
        let found: Option<(String, String, String)> = tx
            .query_row(
                "SELECT t.approved_by, m.id, m.name FROM runtime_targets t JOIN machines m ON m.id = t.machine_id
                 WHERE t.workspace_id = ?1 AND (t.id = ?2 OR t.machine_id = ?2)",
                [workspace_id, machine_or_target_id],
                |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
            )
            .optional()?;
        let Some((approved_by, machine_id, machine_name)) = found else {
            return Err(StoreError::NotFound(format!("no machine {machine_or_target_id} in this workspace")));
        };
        members::require(&tx, workspace_id, actor, crate::roles::cap_for_revoke(actor.user_id() == Some(approved_by.as_str())))?;
        let n = tx.execute(
            "UPDATE runtime_targets SET revoked_at = ?3, revoked_reason = ?4
             WHERE workspace_id = ?1 AND (id = ?2 OR machine_id = ?2) AND revoked_at IS NULL",
            params![workspace_id, machine_or_target_id, now, reason],
        )?;
        if n > 0 {
            audit(&tx, workspace_id, now, actor, "machine.revoked", &format!("{machine_name} ({machine_id})"), reason)?;
        }
        tx.commit()?;
        Ok(n > 0)
    }

    pub fn machines(&self, workspace_id: &str) -> Result<Vec<MachineRow>> {
        let conn = self.conn();
        let mut st = conn.prepare(
            "SELECT m.id, t.id, m.name, m.os, m.arch, m.daemon_version, u.email, t.created_at,
                    t.revoked_at, t.revoked_reason, m.last_seen_at, t.approved_by
             FROM runtime_targets t
             JOIN machines m ON m.id = t.machine_id AND m.workspace_id = t.workspace_id
             JOIN users u ON u.id = t.approved_by
             WHERE t.workspace_id = ?1
             ORDER BY t.revoked_at IS NOT NULL, t.created_at DESC, t.id",
        )?;
        let rows = st
            .query_map([workspace_id], |r| {
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
            })?
            .collect::<Result<Vec<_>, _>>()?;
        Ok(rows)
    }

    // ---- relay: sessions and frames -----------------------------------------------------

    /// Stores a batch of daemon messages of one runtime target in ONE transaction (see
    /// [`RelayOp`]): `session_start` creates the session (a duplicate start is fine), a frame
    /// or end with `seq <= last_seq` is a duplicate (acked, not stored again), `last_seq + 1`
    /// is stored, anything else is a violation. A session id that belongs to another runtime
    /// target is a violation (orgs never mix). Processing stops at the first violation; what
    /// came before it is committed.
    pub fn relay_store_batch(
        &self,
        workspace_id: &str,
        runtime_target_id: &str,
        machine_id: &str,
        ops: &[RelayOp],
        quota: StoredQuota,
        now: i64,
    ) -> Result<RelayBatchOutcome> {
        struct S {
            bytes: u64,
            last_seq: u64,
            ended: bool,
            frames: u64,
            gaps: u64,
            end: Option<(u64, String, Option<i32>)>,
            dirty: bool,
            ack: u64,
            /// Some message of this batch was stored or found a duplicate: ack it.
            touched: bool,
        }
        let mut conn = self.conn();
        let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
        let mut order: Vec<String> = Vec::new();
        let mut states: std::collections::HashMap<String, S> = std::collections::HashMap::new();
        let mut violation = None;
        let mut refused: Vec<String> = Vec::new();
        let mut stored_bytes = 0u64;
        // (machine, org) bytes held, read once per batch when a new session needs it.
        let mut held: Option<(u64, u64)> = None;
        {
            let mut load = tx.prepare_cached("SELECT runtime_target_id, last_seq, ended_at FROM relay_sessions WHERE id = ?1")?;
            let mut was_refused = tx.prepare_cached("SELECT 1 FROM relay_refused_sessions WHERE id = ?1 AND runtime_target_id = ?2")?;
            let mut insert_frame = tx.prepare_cached("INSERT INTO relay_frames (session_id, seq, ts, kind, data) VALUES (?1, ?2, ?3, ?4, ?5)")?;
            for op in ops {
                let sid = op.session_id();
                if refused.iter().any(|r| r == sid) {
                    continue;
                }
                if !states.contains_key(sid) {
                    let row: Option<(String, i64, Option<i64>)> = load.query_row([sid], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?))).optional()?;
                    match row {
                        Some((rt, _, _)) if rt != runtime_target_id => {
                            violation = Some(format!("session {sid} belongs to another runtime target"));
                            break;
                        }
                        Some((_, last, ended)) => {
                            states.insert(
                                sid.to_string(),
                                S {
                                    bytes: 0,
                                    last_seq: last as u64,
                                    ended: ended.is_some(),
                                    frames: 0,
                                    gaps: 0,
                                    end: None,
                                    dirty: false,
                                    ack: 0,
                                    touched: false,
                                },
                            );
                        }
                        None => match op {
                            RelayOp::Start { session_id, .. } if over_quota(&tx, &mut held, machine_id, workspace_id, quota)? => {
                                tx.execute(
                                    "INSERT INTO relay_refused_sessions (id, runtime_target_id, reason, at) VALUES (?1, ?2, ?3, ?4)
                                     ON CONFLICT(id) DO NOTHING",
                                    params![session_id, runtime_target_id, vpd_proto::relay::QUOTA_EXCEEDED, now],
                                )?;
                                refused.push(session_id.clone());
                                continue;
                            }
                            RelayOp::Start { session_id, agent, directory, started_at } => {
                                tx.execute(
                                    "INSERT INTO relay_sessions (id, workspace_id, runtime_target_id, machine_id, agent,
                                         directory, started_at)
                                     VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
                                    params![session_id, workspace_id, runtime_target_id, machine_id, agent, directory, started_at],
                                )?;
                                states.insert(
                                    sid.to_string(),
                                    S { bytes: 0, last_seq: 0, ended: false, frames: 0, gaps: 0, end: None, dirty: false, ack: 0, touched: false },
                                );
                            }
                            // A late message of a session refused earlier (the daemon may not
                            // have heard yet): nothing to store, nothing to answer.
                            _ if was_refused.exists(params![sid, runtime_target_id])? => continue,
                            _ => {
                                violation = Some(format!("session {sid} was never started"));
                                break;
                            }
                        },
                    }
                    order.push(sid.to_string());
                }
                let st = states.get_mut(sid).expect("loaded above");
                match op {
                    RelayOp::Start { .. } => st.touched = true,
                    RelayOp::Frame { seq, ts, kind, data, .. } => {
                        if *seq <= st.last_seq {
                            st.ack = st.ack.max(*seq);
                            st.touched = true;
                        } else if (*seq == st.last_seq + 1 || (*kind == "gap" && gap_starts_at(data, st.last_seq + 1, *seq))) && !st.ended {
                            // A gap frame stands for the frames FROM..=TO the daemon had to
                            // drop: it carries seq TO and data "FROM-TO" (vpd_proto::relay).
                            insert_frame.execute(params![sid, *seq as i64, ts, kind, data])?;
                            st.last_seq = *seq;
                            st.bytes += data.len() as u64;
                            stored_bytes += data.len() as u64;
                            st.frames += 1;
                            if *kind == "gap" {
                                st.gaps += 1;
                            }
                            st.dirty = true;
                            st.ack = *seq;
                            st.touched = true;
                        } else if st.ended {
                            violation = Some(format!("frame {seq} of session {sid} after its end"));
                            break;
                        } else {
                            violation = Some(format!("frame {seq} of session {sid} out of order (expected {})", st.last_seq + 1));
                            break;
                        }
                    }
                    RelayOp::End { seq, reason, exit_code, .. } => {
                        if *seq <= st.last_seq {
                            st.ack = st.ack.max(*seq);
                            st.touched = true;
                        } else if *seq == st.last_seq + 1 && !st.ended {
                            st.last_seq = *seq;
                            st.ended = true;
                            st.end = Some((*seq, reason.clone(), *exit_code));
                            st.dirty = true;
                            st.ack = *seq;
                            st.touched = true;
                        } else {
                            violation = Some(format!("end {seq} of session {sid} out of order (expected {})", st.last_seq + 1));
                            break;
                        }
                    }
                }
            }
        }
        {
            let mut update = tx.prepare_cached(
                "UPDATE relay_sessions SET last_seq = ?2, frame_count = frame_count + ?3, gap_count = gap_count + ?4,
                     bytes = bytes + ?5, last_frame_at = ?6
                 WHERE id = ?1",
            )?;
            let mut end =
                tx.prepare_cached("UPDATE relay_sessions SET ended_at = ?2, end_reason = ?3, exit_code = ?4 WHERE id = ?1 AND ended_at IS NULL")?;
            for sid in &order {
                let st = &states[sid];
                if st.dirty {
                    update.execute(params![sid, st.last_seq as i64, st.frames as i64, st.gaps as i64, st.bytes as i64, now])?;
                }
                if let Some((_, reason, code)) = &st.end {
                    end.execute(params![sid, now, reason, code])?;
                }
            }
        }
        tx.commit()?;
        let acks = order.into_iter().filter(|sid| states[sid].touched).map(|sid| {
            let ack = states[&sid].ack;
            (sid, ack)
        });
        Ok(RelayBatchOutcome { acks: acks.collect(), violation, refused, bytes: stored_bytes })
    }

    /// `sessionId → last stored seq` of this runtime target's sessions that are running or
    /// ended after `ended_after` (the `ready` message's resume map).
    pub fn relay_resume(&self, runtime_target_id: &str, ended_after: i64) -> Result<std::collections::BTreeMap<String, u64>> {
        let conn = self.conn();
        let mut st = conn.prepare_cached(
            "SELECT id, last_seq FROM relay_sessions
             WHERE runtime_target_id = ?1 AND (ended_at IS NULL OR ended_at > ?2)",
        )?;
        let rows = st
            .query_map(params![runtime_target_id, ended_after], |r| Ok((r.get::<_, String>(0)?, r.get::<_, i64>(1)? as u64)))?
            .collect::<Result<_, _>>()?;
        Ok(rows)
    }

    /// Which of these runtime target ids are revoked.
    pub fn revoked_among(&self, ids: &[String]) -> Result<Vec<String>> {
        if ids.is_empty() {
            return Ok(Vec::new());
        }
        let list = serde_json::to_string(ids).unwrap_or_else(|_| "[]".into());
        let conn = self.conn();
        let mut st =
            conn.prepare_cached("SELECT id FROM runtime_targets WHERE revoked_at IS NOT NULL AND id IN (SELECT value FROM json_each(?1))")?;
        let rows = st.query_map([list], |r| r.get(0))?.collect::<Result<_, _>>()?;
        Ok(rows)
    }

    /// The sessions of a workspace, newest first.
    pub fn sessions(&self, workspace_id: &str) -> Result<Vec<SessionRow>> {
        let conn = self.conn();
        let mut st = conn.prepare(&format!("{SESSION_SELECT} WHERE s.workspace_id = ?1 ORDER BY s.started_at DESC, s.id DESC"))?;
        let rows = st.query_map([workspace_id], session_row)?.collect::<Result<_, _>>()?;
        Ok(rows)
    }

    /// One session; with `workspace_id`, only when it belongs to that workspace (tenancy).
    pub fn session(&self, workspace_id: Option<&str>, id: &str) -> Result<Option<SessionRow>> {
        let conn = self.conn();
        let row = match workspace_id {
            Some(w) => conn.query_row(&format!("{SESSION_SELECT} WHERE s.id = ?1 AND s.workspace_id = ?2"), [id, w], session_row).optional()?,
            None => conn.query_row(&format!("{SESSION_SELECT} WHERE s.id = ?1"), [id], session_row).optional()?,
        };
        Ok(row)
    }

    /// Up to `limit` frames of a session with `seq > after`, in seq order; only `kinds` when
    /// given.
    pub fn session_frames(&self, session_id: &str, after: u64, kind: Option<&str>, limit: usize) -> Result<Vec<FrameRow>> {
        self.session_frames_capped(session_id, after, kind, limit, usize::MAX)
    }

    /// Like [`Store::session_frames`], stopping once `max_bytes` of data are loaded (at least
    /// one frame), so a page view never loads a whole huge session into memory.
    pub fn session_frames_capped(&self, session_id: &str, after: u64, kind: Option<&str>, limit: usize, max_bytes: usize) -> Result<Vec<FrameRow>> {
        let conn = self.conn();
        let mut st = conn.prepare_cached(
            "SELECT seq, ts, kind, data FROM relay_frames
             WHERE session_id = ?1 AND seq > ?2 AND (?3 IS NULL OR kind = ?3)
             ORDER BY seq LIMIT ?4",
        )?;
        let mut rows = st.query(params![session_id, after.min(i64::MAX as u64) as i64, kind, limit.min(i64::MAX as usize) as i64])?;
        let mut out = Vec::new();
        let mut bytes = 0usize;
        while let Some(r) = rows.next()? {
            let row = FrameRow { seq: r.get::<_, i64>(0)? as u64, ts: r.get(1)?, kind: r.get(2)?, data: r.get(3)? };
            bytes += row.data.len();
            out.push(row);
            if bytes >= max_bytes {
                break;
            }
        }
        Ok(out)
    }

    /// Calls `f` with each frame of a session (seq, kind, data), in seq order, without loading
    /// them all at once.
    pub fn for_each_frame(&self, session_id: &str, mut f: impl FnMut(u64, &str, &[u8]) -> std::io::Result<()>) -> Result<()> {
        let conn = self.conn();
        let mut st = conn.prepare("SELECT seq, kind, data FROM relay_frames WHERE session_id = ?1 ORDER BY seq")?;
        let mut rows = st.query([session_id])?;
        while let Some(r) = rows.next()? {
            let seq = r.get::<_, i64>(0)? as u64;
            let kind = r.get_ref(1)?.as_str().map_err(rusqlite::Error::from)?;
            let data = r.get_ref(2)?.as_blob().map_err(rusqlite::Error::from)?;
            f(seq, kind, data).map_err(|e| StoreError::Io { path: "standard output".into(), source: e })?;
        }
        Ok(())
    }

    /// Deletes the sessions (and their frames) that ended before `cutoff`; returns how many.
    pub fn delete_sessions_ended_before(&self, cutoff: i64) -> Result<usize> {
        let mut conn = self.conn();
        let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
        tx.execute(
            "DELETE FROM relay_frames WHERE session_id IN
                 (SELECT id FROM relay_sessions WHERE ended_at IS NOT NULL AND ended_at < ?1)",
            [cutoff],
        )?;
        let n = tx.execute("DELETE FROM relay_sessions WHERE ended_at IS NOT NULL AND ended_at < ?1", [cutoff])?;
        tx.execute("DELETE FROM relay_refused_sessions WHERE at < ?1", [cutoff])?;
        tx.commit()?;
        Ok(n)
    }

    /// Retention for sessions that never ended (SPEC A8): a session whose last frame is older
    /// than `cutoff` loses its frames but keeps a tombstone — its row, and one gap frame
    /// `1-LAST` standing for what was removed — so a late frame (`LAST + 1`) is stored after
    /// that gap instead of breaking the protocol. Returns how many sessions were purged.
    pub fn purge_stale_sessions(&self, cutoff: i64, now: i64) -> Result<usize> {
        let mut conn = self.conn();
        let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
        let stale: Vec<(String, i64)> = {
            let mut st = tx.prepare(
                "SELECT id, last_seq FROM relay_sessions
                 WHERE ended_at IS NULL AND last_seq > 0 AND COALESCE(last_frame_at, started_at) < ?1
                   AND (purged_at IS NULL OR purged_at < COALESCE(last_frame_at, started_at))",
            )?;
            let rows = st.query_map([cutoff], |r| Ok((r.get(0)?, r.get(1)?)))?.collect::<Result<Vec<_>, _>>()?;
            rows
        };
        for (id, last) in &stale {
            tx.execute("DELETE FROM relay_frames WHERE session_id = ?1", [id])?;
            tx.execute(
                "INSERT INTO relay_frames (session_id, seq, ts, kind, data) VALUES (?1, ?2, ?3, 'gap', ?4)",
                params![id, last, crate::util::rfc3339(now), format!("1-{last}").into_bytes()],
            )?;
            tx.execute("UPDATE relay_sessions SET bytes = 0, frame_count = 1, gap_count = 1, purged_at = ?2 WHERE id = ?1", params![id, now])?;
        }
        tx.commit()?;
        Ok(stale.len())
    }

    // ---- signing key ------------------------------------------------------------------

    pub fn signing_key(&self) -> Result<Option<SigningKeyRow>> {
        Ok(self
            .conn()
            .query_row("SELECT kid, pkcs8_der FROM signing_keys ORDER BY created_at, kid LIMIT 1", [], |r| {
                Ok(SigningKeyRow { kid: r.get(0)?, pkcs8_der: r.get(1)? })
            })
            .optional()?)
    }

    /// Stores a key unless one exists already, then returns the key in use (so two processes
    /// racing at first start agree on one key).
    pub fn ensure_signing_key(&self, candidate: &SigningKeyRow, now: i64) -> Result<SigningKeyRow> {
        {
            let mut conn = self.conn();
            let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
            let n: i64 = tx.query_row("SELECT COUNT(*) FROM signing_keys", [], |r| r.get(0))?;
            if n == 0 {
                tx.execute(
                    "INSERT INTO signing_keys (kid, pkcs8_der, created_at) VALUES (?1, ?2, ?3)",
                    params![candidate.kid, candidate.pkcs8_der, now],
                )?;
            }
            tx.commit()?;
        }
        self.signing_key()?.ok_or_else(|| StoreError::NotFound("signing key".into()))
    }
}

const SESSION_SELECT: &str = "SELECT s.id, s.workspace_id, w.slug, s.runtime_target_id, s.machine_id,
        COALESCE(m.name, ''), s.agent, s.directory, s.started_at, s.ended_at, s.end_reason, s.exit_code,
        s.last_seq, s.frame_count, s.gap_count, s.purged_at
    FROM relay_sessions s
    JOIN workspaces w ON w.id = s.workspace_id
    LEFT JOIN machines m ON m.id = s.machine_id";

fn session_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<SessionRow> {
    Ok(SessionRow {
        id: r.get(0)?,
        workspace_id: r.get(1)?,
        workspace_slug: r.get(2)?,
        runtime_target_id: r.get(3)?,
        machine_id: r.get(4)?,
        machine_name: r.get(5)?,
        agent: r.get(6)?,
        directory: r.get(7)?,
        started_at: r.get(8)?,
        ended_at: r.get(9)?,
        end_reason: r.get(10)?,
        exit_code: r.get(11)?,
        last_seq: r.get::<_, i64>(12)? as u64,
        frame_count: r.get::<_, i64>(13)? as u64,
        gap_count: r.get::<_, i64>(14)? as u64,
        purged_at: r.get(15)?,
    })
}

/// Whether the machine's or the org's stored bytes reach their quota (read once per batch).
fn over_quota(conn: &Connection, held: &mut Option<(u64, u64)>, machine_id: &str, workspace_id: &str, quota: StoredQuota) -> Result<bool> {
    let (m, o) = match *held {
        Some(h) => h,
        None => {
            let sum = |sql: &str, id: &str| -> Result<u64> { Ok(conn.query_row(sql, [id], |r| r.get::<_, i64>(0))?.max(0) as u64) };
            let m = sum("SELECT COALESCE(SUM(bytes), 0) FROM relay_sessions WHERE machine_id = ?1", machine_id)?;
            let o = sum("SELECT COALESCE(SUM(bytes), 0) FROM relay_sessions WHERE workspace_id = ?1", workspace_id)?;
            *held.insert((m, o))
        }
    };
    Ok(m >= quota.machine_bytes || o >= quota.org_bytes)
}

fn ws_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<Workspace> {
    Ok(Workspace { id: r.get(0)?, name: r.get(1)?, slug: r.get(2)? })
}

fn insert_workspace(conn: &Connection, name: &str, slug: &str, now: i64) -> Result<Workspace> {
    let id = new_id();
    let n = conn.execute(
        "INSERT INTO workspaces (id, name, slug, created_at) VALUES (?1, ?2, ?3, ?4)
         ON CONFLICT(slug) DO NOTHING",
        params![id, name, slug, now],
    )?;
    if n == 0 {
        return Err(StoreError::Conflict(format!("the slug {slug} is already taken")));
    }
    Ok(Workspace { id, name: name.to_string(), slug: slug.to_string() })
}

fn is_member(conn: &Connection, workspace_id: &str, user_id: &str) -> Result<bool> {
    Ok(conn
        .query_row("SELECT 1 FROM memberships WHERE workspace_id = ?1 AND user_id = ?2", [workspace_id, user_id], |_| Ok(()))
        .optional()?
        .is_some())
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

fn load_code(conn: &Connection, code: &str) -> Result<Option<PairingCode>> {
    Ok(conn
        .query_row(
            "SELECT code, kind, state, status_token_hash, name, public_key, daemon_version, os, arch,
                    requested_org, created_at, expires_at, workspace_id, approved_by
             FROM pairing_codes WHERE code = ?1",
            [code],
            |r| {
                let kind: String = r.get(1)?;
                let kind = if kind == "minted" { CodeKind::Minted } else { CodeKind::Device };
                let state: String = r.get(2)?;
                let name: Option<String> = r.get(4)?;
                let machine = match (kind, name) {
                    (CodeKind::Device, Some(name)) => Some(MachineInfo {
                        name,
                        public_key: r.get::<_, Option<String>>(5)?.unwrap_or_default(),
                        daemon_version: r.get::<_, Option<String>>(6)?.unwrap_or_default(),
                        os: r.get::<_, Option<String>>(7)?.unwrap_or_default(),
                        arch: r.get::<_, Option<String>>(8)?.unwrap_or_default(),
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
        .optional()?)
}

fn insert_pairing(
    conn: &Connection,
    ws: &Workspace,
    machine: &MachineInfo,
    approved_by: &str,
    issue_token_hash: Option<&[u8]>,
    now: i64,
) -> Result<Pairing> {
    let install_id = new_id();
    let machine_id = new_id();
    let runtime_target_id = new_id();
    conn.execute("INSERT INTO installs (id, workspace_id, created_at) VALUES (?1, ?2, ?3)", params![install_id, ws.id, now])?;
    conn.execute(
        // `last_seen_at` stays NULL until the first relay token (the machine has not been seen).
        "INSERT INTO machines (id, workspace_id, name, os, arch, daemon_version, created_at)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
        params![machine_id, ws.id, machine.name, machine.os, machine.arch, machine.daemon_version, now],
    )?;
    conn.execute(
        "INSERT INTO runtime_targets (id, workspace_id, install_id, machine_id, public_key,
             approved_by, created_at, issue_token_hash)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
        params![runtime_target_id, ws.id, install_id, machine_id, machine.public_key, approved_by, now, issue_token_hash],
    )?;
    Ok(Pairing { workspace: ws.clone(), install_id, runtime_target_id, machine_id, machine_name: machine.name.clone() })
}

fn load_pairing(conn: &Connection, runtime_target_id: &str) -> Result<Pairing> {
    Ok(conn.query_row(
        "SELECT w.id, w.name, w.slug, t.install_id, t.id, m.id, m.name
         FROM runtime_targets t JOIN workspaces w ON w.id = t.workspace_id
         JOIN machines m ON m.id = t.machine_id
         WHERE t.id = ?1",
        [runtime_target_id],
        |r| {
            Ok(Pairing {
                workspace: Workspace { id: r.get(0)?, name: r.get(1)?, slug: r.get(2)? },
                install_id: r.get(3)?,
                runtime_target_id: r.get(4)?,
                machine_id: r.get(5)?,
                machine_name: r.get(6)?,
            })
        },
    )?)
}

#[cfg(unix)]
fn create_private_file(path: &Path) -> std::io::Result<()> {
    use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir)?;
    }
    let f = std::fs::OpenOptions::new().create(true).append(true).mode(0o600).open(path)?;
    let meta = f.metadata()?;
    if !meta.is_file() {
        return Err(std::io::Error::other("not a regular file"));
    }
    if meta.permissions().mode() & 0o077 != 0 {
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600))?;
    }
    Ok(())
}

#[cfg(not(unix))]
fn create_private_file(path: &Path) -> std::io::Result<()> {
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir)?;
    }
    std::fs::OpenOptions::new().create(true).append(true).open(path).map(|_| ())
}

/// Whether a gap frame's data `FROM-TO` starts right after what is stored and ends at `seq`.
fn gap_starts_at(data: &[u8], expected_from: u64, seq: u64) -> bool {
    gap_range(data).is_some_and(|(from, to)| from == expected_from && to == seq && to >= from)
}

/// The seqs `FROM-TO` a gap frame's (decoded) data names.
pub fn gap_range(data: &[u8]) -> Option<(u64, u64)> {
    let text = String::from_utf8_lossy(data);
    let mut it = text.split('-').map(|n| n.trim().parse::<u64>().ok());
    match (it.next(), it.next(), it.next()) {
        (Some(Some(from)), Some(Some(to)), None) => Some((from, to)),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn machine() -> MachineInfo {
        MachineInfo { name: "box".into(), public_key: "k".into(), daemon_version: "0.1.0".into(), os: "linux".into(), arch: "x86_64".into() }
    }

    #[test]
    fn approval_is_delivered_once_and_remove_member_is_scoped() {
        let s = Store::open_in_memory().unwrap();
        let u = s.create_user("a@example.com", "h", 0).unwrap();
        let w1 = s.create_workspace("One", "one", 0).unwrap();
        let w2 = s.create_workspace("Two", "two", 0).unwrap();
        // w1's owner, so that `u` (a member there) can be removed.
        let owner = s.create_user("o@example.com", "h", 0).unwrap();
        s.add_member(&w1.id, &owner.id, 0).unwrap();
        s.add_member(&w1.id, &u.id, 0).unwrap();
        s.add_member(&w2.id, &u.id, 0).unwrap();
        s.insert_device_code("BCDFGHJK", b"h", &machine(), None, 0, 900).unwrap();
        s.insert_device_code("BCDFGHJL", b"h", &machine(), None, 0, 900).unwrap();
        let p1 = s.approve_code("BCDFGHJK", &w1.id, &u.id, &Actor::cli(), 1).unwrap();
        let p2 = s.approve_code("BCDFGHJL", &w2.id, &u.id, &Actor::cli(), 1).unwrap();
        assert_ne!(p1.machine_id, p2.machine_id);
        assert!(matches!(s.approve_code("BCDFGHJK", &w1.id, &u.id, &Actor::cli(), 2), Err(StoreError::Gone(_))));
        assert!(s.deliver_approval("BCDFGHJK", b"t").unwrap().is_some());
        assert!(s.deliver_approval("BCDFGHJK", b"t").unwrap().is_none());
        assert_eq!(s.remove_member(&w1.id, &u.id, 3).unwrap(), 1);
        assert!(s.runtime_target(&w1.id, &p1.runtime_target_id).unwrap().unwrap().revoked_at.is_some());
        assert!(s.runtime_target(&w2.id, &p2.runtime_target_id).unwrap().unwrap().revoked_at.is_none());
        // Tenancy: a target is invisible from another workspace.
        assert!(s.runtime_target(&w2.id, &p1.runtime_target_id).unwrap().is_none());
    }

    #[test]
    fn a_database_from_before_roles_makes_each_orgs_earliest_member_its_owner() {
        let conn = Connection::open_in_memory().unwrap();
        for m in &MIGRATIONS[..3] {
            conn.execute_batch(m).unwrap();
        }
        conn.execute_batch(
            "PRAGMA user_version = 3;
             INSERT INTO users VALUES ('u1', 'late@example.com', 'h', 0), ('u2', 'early@example.com', 'h', 0), ('u3', 'solo@example.com', 'h', 0);
             INSERT INTO workspaces VALUES ('w1', 'One', 'one', 0), ('w2', 'Two', 'two', 0), ('w3', 'Empty', 'empty', 0);
             INSERT INTO memberships VALUES ('w1', 'u1', 50), ('w1', 'u2', 10), ('w2', 'u3', 70), ('w2', 'u1', 70);",
        )
        .unwrap();
        let s = Store::init(conn).unwrap();
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

    /// A store with one org, one member and one approved pairing.
    fn paired_store() -> (Store, Workspace, Pairing) {
        let s = Store::open_in_memory().unwrap();
        let u = s.create_user("a@example.com", "h", 0).unwrap();
        let w = s.create_workspace("One", "one", 0).unwrap();
        s.add_member(&w.id, &u.id, 0).unwrap();
        s.insert_device_code("BCDFGHJK", b"h", &machine(), None, 0, 900).unwrap();
        let p = s.approve_code("BCDFGHJK", &w.id, &u.id, &Actor::cli(), 1).unwrap();
        (s, w, p)
    }

    fn frame(sid: &str, seq: u64, data: &[u8]) -> RelayOp {
        RelayOp::Frame { session_id: sid.into(), seq, ts: "t".into(), kind: "output", data: data.to_vec() }
    }

    #[test]
    fn gap_frames_and_byte_capped_reads() {
        let (s, w, p) = paired_store();
        let rt = &p.runtime_target_id;
        let a = new_id();
        let start = RelayOp::Start { session_id: a.clone(), agent: "x".into(), directory: "d".into(), started_at: 5 };
        let gap = |seq: u64, data: &[u8]| RelayOp::Frame { session_id: a.clone(), seq, ts: "t".into(), kind: "gap", data: data.to_vec() };
        // A gap must start right after what is stored and end at its own seq.
        let out =
            s.relay_store_batch(&w.id, rt, &p.machine_id, &[start, frame(&a, 1, &[b'x'; 1000]), gap(5, b"3-5")], StoredQuota::UNLIMITED, 10).unwrap();
        assert!(out.violation.unwrap().contains("out of order"));
        let out = s
            .relay_store_batch(
                &w.id,
                rt,
                &p.machine_id,
                &[gap(5, b"2-5"), frame(&a, 6, &[b'y'; 1000]), frame(&a, 7, &[b'z'; 1000])],
                StoredQuota::UNLIMITED,
                10,
            )
            .unwrap();
        assert!(out.violation.is_none(), "{:?}", out.violation);
        assert_eq!(out.acks, vec![(a.clone(), 7)]);
        assert_eq!(s.session(Some(&w.id), &a).unwrap().unwrap().gap_count, 1);
        // Reads stop at the byte budget (but always return one frame).
        assert_eq!(s.session_frames_capped(&a, 0, Some("output"), 100, 1500).unwrap().len(), 2);
        assert_eq!(s.session_frames_capped(&a, 0, Some("output"), 100, 1).unwrap().len(), 1);
        assert_eq!(s.session_frames(&a, 0, None, 100).unwrap().len(), 4);
    }

    #[test]
    fn relay_batches_store_in_order_ack_duplicates_and_retention_deletes() {
        let (s, w, p) = paired_store();
        let rt = &p.runtime_target_id;
        let (a, b) = (new_id(), new_id());
        let start = |id: &str| RelayOp::Start { session_id: id.into(), agent: "x".into(), directory: "d".into(), started_at: 5 };
        let ops = vec![start(&a), frame(&a, 1, b"1"), frame(&a, 2, b"2"), start(&b), frame(&a, 1, b"dup")];
        let out = s.relay_store_batch(&w.id, rt, &p.machine_id, &ops, StoredQuota::UNLIMITED, 10).unwrap();
        assert_eq!(out.acks, vec![(a.clone(), 2), (b.clone(), 0)]);
        assert!(out.violation.is_none());
        // Out of order stops the batch; what came before is kept.
        let ops = vec![frame(&b, 1, b"b1"), frame(&a, 4, b"gap")];
        let out = s.relay_store_batch(&w.id, rt, &p.machine_id, &ops, StoredQuota::UNLIMITED, 10).unwrap();
        assert_eq!(out.acks, vec![(b.clone(), 1)]);
        assert!(out.violation.unwrap().contains("out of order"));
        // Another runtime target cannot touch these sessions.
        let out = s.relay_store_batch(&w.id, "OTHER", &p.machine_id, &[start(&a)], StoredQuota::UNLIMITED, 10).unwrap();
        assert!(out.violation.unwrap().contains("another runtime target"));
        // End, then resume and retention.
        let end = RelayOp::End { session_id: a.clone(), seq: 3, reason: "exited".into(), exit_code: Some(0) };
        s.relay_store_batch(&w.id, rt, &p.machine_id, &[end], StoredQuota::UNLIMITED, 100).unwrap();
        assert_eq!(s.relay_resume(rt, 50).unwrap().len(), 2);
        assert_eq!(s.relay_resume(rt, 100).unwrap().len(), 1, "ended before the window");
        assert_eq!(s.delete_sessions_ended_before(100).unwrap(), 0);
        assert_eq!(s.delete_sessions_ended_before(101).unwrap(), 1);
        assert!(s.session(None, &a).unwrap().is_none());
        assert!(s.session_frames(&a, 0, None, 10).unwrap().is_empty(), "frames go with the session");
        assert_eq!(s.session(Some(&w.id), &b).unwrap().unwrap().frame_count, 1, "running sessions stay");
    }

    #[test]
    fn expired_codes_cannot_be_approved() {
        let s = Store::open_in_memory().unwrap();
        let u = s.create_user("a@example.com", "h", 0).unwrap();
        let w = s.create_workspace("One", "one", 0).unwrap();
        s.add_member(&w.id, &u.id, 0).unwrap();
        s.insert_device_code("BCDFGHJK", b"h", &machine(), None, 0, 900).unwrap();
        assert!(matches!(s.approve_code("BCDFGHJK", &w.id, &u.id, &Actor::cli(), 900), Err(StoreError::Gone(_))));
        let stranger = s.create_user("b@example.com", "h", 0).unwrap();
        assert!(matches!(s.approve_code("BCDFGHJK", &w.id, &stranger.id, &Actor::cli(), 1), Err(StoreError::Forbidden(_))));
    }
}

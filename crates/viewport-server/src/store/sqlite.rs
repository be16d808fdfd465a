//! The SQLite backend: one connection (WAL, busy timeout) behind a mutex; every write is one
//! `BEGIN IMMEDIATE` transaction, which also serializes it with the admin CLI's writes from
//! another process. Migrations by `PRAGMA user_version`.

use super::sql::{Backend, Conn, Event, Isolation, Row, Tx, Value};
use super::{Result, StoreError};
use rusqlite::types::{ToSqlOutput, ValueRef};
use rusqlite::{Connection, TransactionBehavior};
use std::path::Path;
use std::sync::Mutex;

impl From<rusqlite::Error> for StoreError {
    fn from(e: rusqlite::Error) -> StoreError {
        StoreError::Db(e.to_string())
    }
}

impl rusqlite::ToSql for Value {
    fn to_sql(&self) -> rusqlite::Result<ToSqlOutput<'_>> {
        Ok(match self {
            Value::Null => ToSqlOutput::Borrowed(ValueRef::Null),
            Value::Int(i) => ToSqlOutput::Borrowed(ValueRef::Integer(*i)),
            Value::Text(s) => ToSqlOutput::Borrowed(ValueRef::Text(s.as_bytes())),
            Value::Blob(b) => ToSqlOutput::Borrowed(ValueRef::Blob(b)),
        })
    }
}

fn value(v: ValueRef<'_>) -> Value {
    match v {
        ValueRef::Null => Value::Null,
        ValueRef::Integer(i) => Value::Int(i),
        // No column holds reals; an expression that makes one is read as its integer part.
        ValueRef::Real(f) => Value::Int(f as i64),
        ValueRef::Text(t) => Value::Text(String::from_utf8_lossy(t).into_owned()),
        ValueRef::Blob(b) => Value::Blob(b.to_vec()),
    }
}

impl Conn for Connection {
    fn execute(&self, sql: &str, params: &[Value]) -> Result<usize> {
        Ok(self.prepare_cached(sql)?.execute(rusqlite::params_from_iter(params))?)
    }

    fn each(&self, sql: &str, params: &[Value], f: &mut dyn FnMut(Row) -> Result<bool>) -> Result<()> {
        let mut st = self.prepare_cached(sql)?;
        let n = st.column_count();
        let mut rows = st.query(rusqlite::params_from_iter(params))?;
        while let Some(r) = rows.next()? {
            let row = Row((0..n).map(|i| r.get_ref(i).map(value)).collect::<rusqlite::Result<_>>()?);
            if !f(row)? {
                break;
            }
        }
        Ok(())
    }
}

pub struct Sqlite {
    conn: Mutex<Connection>,
}

/// The migrations, in order; `PRAGMA user_version` is how many ran.
pub(super) const MIGRATIONS: &[&str] = &[
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
    // 6: signed releases for `vpd update` (issue 13 item 5). The signature is stored as the
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
    // 7: several instances (issue 14): the live relay connection of each runtime target,
    // rate-limit counters shared by every process, and signing keys that retire.
    r#"
    CREATE TABLE relay_live (
        runtime_target_id TEXT PRIMARY KEY,
        conn TEXT NOT NULL,
        instance TEXT NOT NULL,
        since INTEGER NOT NULL
    );
    CREATE TABLE instances (
        id TEXT PRIMARY KEY,
        seen_at INTEGER NOT NULL
    );
    CREATE TABLE rate_counters (
        key TEXT NOT NULL,
        window_start INTEGER NOT NULL,
        count INTEGER NOT NULL,
        PRIMARY KEY (key, window_start)
    );
    ALTER TABLE signing_keys ADD COLUMN retired_at INTEGER;
    "#,
];

impl Sqlite {
    /// Opens (creating with mode 0600) and migrates the database file.
    pub fn open(path: &Path) -> Result<Sqlite> {
        create_private_file(path).map_err(|source| StoreError::Io { path: path.display().to_string(), source })?;
        Sqlite::init(Connection::open(path)?)
    }

    pub fn open_in_memory() -> Result<Sqlite> {
        Sqlite::init(Connection::open_in_memory()?)
    }

    pub(super) fn init(mut conn: Connection) -> Result<Sqlite> {
        conn.busy_timeout(std::time::Duration::from_secs(5))?;
        conn.set_prepared_statement_cache_capacity(128);
        // `journal_mode` answers with a row, so it is queried rather than executed.
        let _mode: String = conn.query_row("PRAGMA journal_mode = WAL", [], |r| r.get(0))?;
        conn.execute_batch("PRAGMA foreign_keys = ON; PRAGMA synchronous = NORMAL;")?;
        let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
        let version: i64 = tx.query_row("PRAGMA user_version", [], |r| r.get(0))?;
        super::check_schema(version, MIGRATIONS.len())?;
        for (i, m) in MIGRATIONS.iter().enumerate().skip(version as usize) {
            tx.execute_batch(m)?;
            tx.execute_batch(&format!("PRAGMA user_version = {}", i + 1))?;
        }
        tx.commit()?;
        Ok(Sqlite { conn: Mutex::new(conn) })
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Connection> {
        self.conn.lock().unwrap_or_else(|e| e.into_inner())
    }
}

impl Backend for Sqlite {
    /// Every write excludes all others (`BEGIN IMMEDIATE`), whatever the isolation asked.
    fn write(&self, _isolation: Isolation, f: &mut dyn FnMut(&Tx) -> Result<()>) -> Result<Vec<Event>> {
        let mut conn = self.lock();
        let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
        let handle = Tx::new(&*tx);
        f(&handle)?;
        let (events, abandon) = handle.into_parts();
        if abandon {
            tx.rollback()?;
            return Ok(Vec::new());
        }
        tx.commit()?;
        Ok(events)
    }

    fn read(&self, f: &mut dyn FnMut(&Tx) -> Result<()>) -> Result<()> {
        let conn = self.lock();
        f(&Tx::new(&*conn))
    }

    fn kind(&self) -> &'static str {
        "sqlite"
    }

    fn listen(&self, _events: tokio::sync::broadcast::Sender<Event>) -> Option<tokio::task::JoinHandle<()>> {
        None
    }

    fn describe(&self) -> Result<Vec<(String, String)>> {
        let conn = self.lock();
        let version: i64 = conn.query_row("PRAGMA user_version", [], |r| r.get(0))?;
        let mode: String = conn.query_row("PRAGMA journal_mode", [], |r| r.get(0))?;
        let check: String = conn.query_row("PRAGMA quick_check", [], |r| r.get(0))?;
        Ok(vec![
            ("database".into(), format!("SQLite {}", rusqlite::version())),
            ("schema".into(), format!("{version} of {}", MIGRATIONS.len())),
            ("journal".into(), mode),
            ("integrity".into(), check),
        ])
    }
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

//! The PostgreSQL backend (`--db postgres://…`): any number of `viewport-server` instances
//! on one database.
//!
//! - A pool of connections (r2d2), each with its own cache of prepared statements.
//! - Every write is a `SERIALIZABLE` transaction, run again (a fresh attempt, up to
//!   [`ATTEMPTS`]) when PostgreSQL reports that it lost a race with another: that is what
//!   makes the store's read-check-write code, written for SQLite's one writer at a time,
//!   correct with many instances writing at once. The exception is storing frames
//!   ([`Isolation::RowLocks`]: `READ COMMITTED`, each session's row locked), so that
//!   machines never abort each other's batches.
//! - Events of a committed write are sent with `pg_notify` inside the transaction, so they
//!   reach every instance's `LISTEN` exactly when the change is visible, and never for a
//!   rolled-back change. A listener that lost its connection reconnects and announces
//!   [`Event::Resync`], so nothing published meanwhile is missed.
//! - Migrations are numbered in `viewport_schema`, applied under an advisory lock, so
//!   instances starting together migrate once.
//!
//! The connection is plain TCP, a Unix socket (`host=/run/postgresql`), or TLS with the
//! server's certificate verified (`sslmode=require`: see `pg_tls`). A URL without a password
//! takes it from `PGPASSWORD`, as libpq does (`.pgpass` is not read).

use super::sql::{dollar_params, Backend, Conn, Event, Isolation, Row, Tx, Value};
use super::{Result, StoreError};
use postgres::error::SqlState;
use postgres::types::{to_sql_checked, IsNull, ToSql, Type};
use postgres::{GenericClient, IsolationLevel, NoTls};
use std::cell::RefCell;
use std::collections::HashMap;
use std::time::Duration;

/// Tries of one write before its contention is reported as an error.
pub const ATTEMPTS: usize = 30;
/// The channel every instance listens on.
const CHANNEL: &str = "viewport";
/// PostgreSQL's limit on one notification's payload is 8000 bytes; stay well below.
const MAX_PAYLOAD: usize = 7000;

/// The migrations, in order; `viewport_schema.version` is how many ran. The first is the
/// whole schema of SQLite's migrations 1 to 7, in PostgreSQL's types.
const MIGRATIONS: &[&str] = &[r#"
    CREATE TABLE users (
        id TEXT PRIMARY KEY,
        email TEXT NOT NULL UNIQUE,
        password_hash TEXT NOT NULL,
        created_at BIGINT NOT NULL
    );
    CREATE TABLE workspaces (
        id TEXT PRIMARY KEY,
        name TEXT NOT NULL,
        slug TEXT NOT NULL UNIQUE,
        created_at BIGINT NOT NULL
    );
    CREATE TABLE memberships (
        workspace_id TEXT NOT NULL REFERENCES workspaces(id),
        user_id TEXT NOT NULL REFERENCES users(id),
        created_at BIGINT NOT NULL,
        role TEXT NOT NULL DEFAULT 'member' CHECK (role IN ('owner', 'admin', 'member')),
        PRIMARY KEY (workspace_id, user_id)
    );
    CREATE TABLE web_sessions (
        token_hash BYTEA PRIMARY KEY,
        user_id TEXT NOT NULL REFERENCES users(id),
        created_at BIGINT NOT NULL,
        expires_at BIGINT NOT NULL
    );
    CREATE TABLE pairing_codes (
        code TEXT PRIMARY KEY,
        kind TEXT NOT NULL CHECK (kind IN ('device', 'minted')),
        state TEXT NOT NULL CHECK (state IN ('pending', 'approved', 'denied', 'consumed')),
        status_token_hash BYTEA,
        name TEXT, public_key TEXT, daemon_version TEXT, os TEXT, arch TEXT,
        requested_org TEXT,
        created_at BIGINT NOT NULL,
        expires_at BIGINT NOT NULL,
        workspace_id TEXT REFERENCES workspaces(id),
        approved_by TEXT REFERENCES users(id),
        runtime_target_id TEXT,
        decided_at BIGINT,
        cancelled_at BIGINT
    );
    CREATE TABLE installs (
        id TEXT PRIMARY KEY,
        workspace_id TEXT NOT NULL REFERENCES workspaces(id),
        created_at BIGINT NOT NULL
    );
    CREATE TABLE machines (
        id TEXT PRIMARY KEY,
        workspace_id TEXT NOT NULL REFERENCES workspaces(id),
        name TEXT NOT NULL,
        os TEXT NOT NULL,
        arch TEXT NOT NULL,
        daemon_version TEXT NOT NULL,
        created_at BIGINT NOT NULL,
        last_seen_at BIGINT
    );
    CREATE TABLE runtime_targets (
        id TEXT PRIMARY KEY,
        workspace_id TEXT NOT NULL REFERENCES workspaces(id),
        install_id TEXT NOT NULL REFERENCES installs(id),
        machine_id TEXT NOT NULL REFERENCES machines(id),
        public_key TEXT NOT NULL,
        approved_by TEXT NOT NULL REFERENCES users(id),
        created_at BIGINT NOT NULL,
        revoked_at BIGINT,
        revoked_reason TEXT,
        issue_token_hash BYTEA
    );
    CREATE INDEX runtime_targets_ws ON runtime_targets(workspace_id, approved_by);
    CREATE TABLE signing_keys (
        kid TEXT PRIMARY KEY,
        pkcs8_der BYTEA NOT NULL,
        created_at BIGINT NOT NULL,
        retired_at BIGINT
    );
    CREATE TABLE relay_sessions (
        id TEXT PRIMARY KEY,
        workspace_id TEXT NOT NULL REFERENCES workspaces(id),
        runtime_target_id TEXT NOT NULL REFERENCES runtime_targets(id),
        machine_id TEXT NOT NULL,
        agent TEXT NOT NULL,
        directory TEXT NOT NULL,
        started_at BIGINT NOT NULL,
        ended_at BIGINT,
        end_reason TEXT,
        exit_code BIGINT,
        last_seq BIGINT NOT NULL DEFAULT 0,
        gap_count BIGINT NOT NULL DEFAULT 0,
        frame_count BIGINT NOT NULL DEFAULT 0,
        bytes BIGINT NOT NULL DEFAULT 0,
        last_frame_at BIGINT,
        purged_at BIGINT
    );
    CREATE INDEX relay_sessions_target ON relay_sessions(runtime_target_id, ended_at);
    CREATE INDEX relay_sessions_ws ON relay_sessions(workspace_id, started_at);
    CREATE INDEX relay_sessions_ended ON relay_sessions(ended_at);
    CREATE INDEX relay_sessions_machine ON relay_sessions(machine_id);
    CREATE INDEX relay_sessions_open ON relay_sessions(ended_at, last_frame_at);
    -- A frame's (session, seq) is stored once, whichever instance races to store it.
    CREATE TABLE relay_frames (
        session_id TEXT NOT NULL,
        seq BIGINT NOT NULL,
        ts TEXT NOT NULL,
        kind TEXT NOT NULL,
        data BYTEA NOT NULL,
        PRIMARY KEY (session_id, seq)
    );
    CREATE TABLE relay_refused_sessions (
        id TEXT PRIMARY KEY,
        runtime_target_id TEXT NOT NULL,
        reason TEXT NOT NULL,
        at BIGINT NOT NULL
    );
    CREATE TABLE audit_log (
        id BIGINT GENERATED BY DEFAULT AS IDENTITY PRIMARY KEY,
        workspace_id TEXT NOT NULL REFERENCES workspaces(id),
        at BIGINT NOT NULL,
        actor TEXT NOT NULL,
        action TEXT NOT NULL,
        subject TEXT NOT NULL DEFAULT '',
        detail TEXT NOT NULL DEFAULT ''
    );
    CREATE INDEX audit_log_ws ON audit_log(workspace_id, id);
    CREATE TABLE releases (
        os TEXT NOT NULL,
        arch TEXT NOT NULL,
        version TEXT NOT NULL,
        major BIGINT NOT NULL,
        minor BIGINT NOT NULL,
        patch BIGINT NOT NULL,
        file_name TEXT NOT NULL,
        size BIGINT NOT NULL,
        signature TEXT NOT NULL,
        bytes BYTEA NOT NULL,
        published_at BIGINT NOT NULL,
        PRIMARY KEY (os, arch, version)
    );
    CREATE TABLE relay_live (
        runtime_target_id TEXT PRIMARY KEY,
        conn TEXT NOT NULL,
        instance TEXT NOT NULL,
        since BIGINT NOT NULL
    );
    CREATE TABLE instances (
        id TEXT PRIMARY KEY,
        seen_at BIGINT NOT NULL
    );
    CREATE TABLE rate_counters (
        key TEXT NOT NULL,
        window_start BIGINT NOT NULL,
        count BIGINT NOT NULL,
        PRIMARY KEY (key, window_start)
    );
"#];

impl From<postgres::Error> for StoreError {
    fn from(e: postgres::Error) -> StoreError {
        let retry = e
            .code()
            .is_some_and(|c| *c == SqlState::T_R_SERIALIZATION_FAILURE || *c == SqlState::T_R_DEADLOCK_DETECTED || *c == SqlState::UNIQUE_VIOLATION);
        let text = match e.as_db_error() {
            Some(db) => format!("{}: {}", db.severity(), db.message()),
            None => e.to_string(),
        };
        if retry {
            StoreError::Retry(text)
        } else {
            StoreError::Db(text)
        }
    }
}

impl From<r2d2::Error> for StoreError {
    fn from(e: r2d2::Error) -> StoreError {
        StoreError::Db(format!("no database connection: {e}"))
    }
}

impl ToSql for Value {
    fn to_sql(&self, ty: &Type, out: &mut bytes::BytesMut) -> std::result::Result<IsNull, Box<dyn std::error::Error + Sync + Send>> {
        match self {
            Value::Null => Ok(IsNull::Yes),
            Value::Int(i) => match *ty {
                Type::INT8 => i.to_sql(ty, out),
                Type::INT4 => i32::try_from(*i)?.to_sql(ty, out),
                Type::INT2 => i16::try_from(*i)?.to_sql(ty, out),
                Type::BOOL => (*i != 0).to_sql(ty, out),
                Type::TEXT | Type::VARCHAR => i.to_string().to_sql(ty, out),
                _ => Err(format!("an integer cannot be bound to a parameter of type {ty}").into()),
            },
            Value::Text(s) => match *ty {
                Type::BYTEA => s.as_bytes().to_sql(ty, out),
                _ => s.to_sql(ty, out),
            },
            Value::Blob(b) => match *ty {
                Type::BYTEA => b.to_sql(ty, out),
                _ => Err(format!("bytes cannot be bound to a parameter of type {ty}").into()),
            },
        }
    }

    fn accepts(_: &Type) -> bool {
        true
    }

    to_sql_checked!();
}

fn row(r: &postgres::Row) -> Result<Row> {
    let mut out = Vec::with_capacity(r.len());
    for (i, c) in r.columns().iter().enumerate() {
        let v = match *c.type_() {
            Type::INT8 => r.try_get::<_, Option<i64>>(i)?.map(Value::Int),
            Type::INT4 => r.try_get::<_, Option<i32>>(i)?.map(|v| Value::Int(v.into())),
            Type::INT2 => r.try_get::<_, Option<i16>>(i)?.map(|v| Value::Int(v.into())),
            Type::BOOL => r.try_get::<_, Option<bool>>(i)?.map(|v| Value::Int(v.into())),
            Type::BYTEA => r.try_get::<_, Option<Vec<u8>>>(i)?.map(Value::Blob),
            Type::TEXT | Type::VARCHAR | Type::BPCHAR | Type::NAME => r.try_get::<_, Option<String>>(i)?.map(Value::Text),
            ref other => return Err(StoreError::Db(format!("column {} has type {other}, which the store does not read", c.name()))),
        };
        out.push(v.unwrap_or(Value::Null));
    }
    Ok(Row(out))
}

/// A pooled connection and the statements prepared on it.
pub struct PgConn {
    client: postgres::Client,
    statements: RefCell<HashMap<String, postgres::Statement>>,
}

struct Manager {
    config: postgres::Config,
    tls: Option<tokio_postgres_rustls::MakeRustlsConnect>,
}

impl r2d2::ManageConnection for Manager {
    type Connection = PgConn;
    type Error = postgres::Error;

    fn connect(&self) -> std::result::Result<PgConn, postgres::Error> {
        let client = match &self.tls {
            Some(tls) => self.config.connect(tls.clone())?,
            None => self.config.connect(NoTls)?,
        };
        Ok(PgConn { client, statements: RefCell::new(HashMap::new()) })
    }

    fn is_valid(&self, conn: &mut PgConn) -> std::result::Result<(), postgres::Error> {
        conn.client.simple_query("").map(drop)
    }

    fn has_broken(&self, conn: &mut PgConn) -> bool {
        conn.client.is_closed()
    }
}

/// Statements through a client or a transaction, with the connection's statement cache.
struct On<'a, C: GenericClient> {
    client: RefCell<&'a mut C>,
    statements: &'a RefCell<HashMap<String, postgres::Statement>>,
    /// In a write: a query stopped early is still read to its end, so that an error the
    /// server sends after the rows read (a serialization failure) is seen, not left to
    /// abort the transaction unnoticed.
    drain: bool,
}

impl<C: GenericClient> On<'_, C> {
    fn statement(&self, sql: &str) -> Result<postgres::Statement> {
        if let Some(s) = self.statements.borrow().get(sql) {
            return Ok(s.clone());
        }
        let s = self.client.borrow_mut().prepare(&dollar_params(sql))?;
        self.statements.borrow_mut().insert(sql.to_string(), s.clone());
        Ok(s)
    }
}

impl<C: GenericClient> Conn for On<'_, C> {
    fn execute(&self, sql: &str, params: &[Value]) -> Result<usize> {
        let st = self.statement(sql)?;
        let refs: Vec<&(dyn ToSql + Sync)> = params.iter().map(|v| v as &(dyn ToSql + Sync)).collect();
        Ok(self.client.borrow_mut().execute(&st, &refs)? as usize)
    }

    fn each(&self, sql: &str, params: &[Value], f: &mut dyn FnMut(Row) -> Result<bool>) -> Result<()> {
        use postgres::fallible_iterator::FallibleIterator;
        let st = self.statement(sql)?;
        let mut client = self.client.borrow_mut();
        let mut rows = client.query_raw(&st, params.iter())?;
        let mut wanted = true;
        while let Some(r) = rows.next()? {
            if wanted && !f(row(&r)?)? {
                wanted = false;
                if !self.drain {
                    break;
                }
            }
        }
        Ok(())
    }

    fn row_lock(&self) -> &'static str {
        " FOR UPDATE"
    }

    fn lock_key(&self, key: &str) -> Result<()> {
        self.execute("SELECT pg_advisory_xact_lock(hashtextextended(?1, 0))", &[Value::Text(key.to_string())]).map(drop)
    }
}

pub struct Postgres {
    /// Taken on drop (see below).
    pool: std::mem::ManuallyDrop<r2d2::Pool<Manager>>,
    /// The URL as tokio-postgres reads it (see `pg_tls`), and its TLS connector.
    url: String,
    tls: Option<tokio_postgres_rustls::MakeRustlsConnect>,
    /// Writes run again after a lost race, since connecting.
    retries: std::sync::atomic::AtomicU64,
}

impl Drop for Postgres {
    /// A client's drop blocks (it says goodbye to the server), which the async executor
    /// forbids; the last handle may go away on it (at shutdown), so the pool is dropped on
    /// a thread of its own.
    fn drop(&mut self) {
        // SAFETY: `pool` is not used after this.
        let pool = unsafe { std::mem::ManuallyDrop::take(&mut self.pool) };
        let _ = std::thread::spawn(move || drop(pool)).join();
    }
}

/// The URL with its password replaced by `***`, for messages and logs.
pub fn redact(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else { return url.to_string() };
    let (authority, tail) = match rest.find(['/', '?']) {
        Some(i) => rest.split_at(i),
        None => (rest, ""),
    };
    let authority = match authority.rsplit_once('@') {
        Some((userinfo, host)) => match userinfo.split_once(':') {
            Some((user, _)) => format!("{user}:***@{host}"),
            None => format!("{userinfo}@{host}"),
        },
        None => authority.to_string(),
    };
    let tail = match tail.split_once('?') {
        Some((path, query)) => {
            let query: Vec<String> = query
                .split('&')
                .map(|kv| if kv.to_ascii_lowercase().starts_with("password=") { "password=***".to_string() } else { kv.to_string() })
                .collect();
            format!("{path}?{}", query.join("&"))
        }
        None => tail.to_string(),
    };
    format!("{scheme}://{authority}{tail}")
}

/// `url` (as tokio-postgres reads it) as a connection config; without a password in it, the
/// one in `PGPASSWORD`. `shown` is the URL to name in an error.
fn parse_config(url: &str, shown: &str) -> Result<tokio_postgres::Config> {
    let mut config: tokio_postgres::Config = url.parse().map_err(|e| StoreError::Unsupported(format!("--db {}: {e}", redact(shown))))?;
    if config.get_password().is_none() {
        if let Some(password) = std::env::var_os("PGPASSWORD") {
            config.password(password.as_encoded_bytes());
        }
    }
    Ok(config)
}

/// "cannot connect: why" (the caller names the database), with what to do when TLS is
/// the cause.
fn connect_error(e: &postgres::Error) -> String {
    let mut why = e.to_string();
    if let Some(source) = std::error::Error::source(e) {
        if !why.contains(&source.to_string()) {
            why = format!("{why}: {source}");
        }
    }
    let hint = if why.contains("does not support TLS") {
        "; turn TLS on in the database (ssl = on in postgresql.conf), or leave sslmode out of --db on a network you trust"
    } else if why.contains("certificate") {
        "; name the CA that issued the database's certificate with sslrootcert=FILE in --db, and connect by a host name the certificate carries"
    } else {
        ""
    };
    format!("cannot connect: {why}{hint}")
}

impl Postgres {
    /// Connects (the pool's first connection must succeed) and migrates.
    pub fn connect(url: &str) -> Result<Postgres> {
        let tls = super::pg_tls::from_url(url)?;
        let mut config = postgres::Config::from(parse_config(&tls.url, url)?);
        if config.get_connect_timeout().is_none() {
            config.connect_timeout(Duration::from_secs(10));
        }
        config.keepalives(true).keepalives_idle(Duration::from_secs(30));
        if config.get_application_name().is_none() {
            config.application_name("viewport-server");
        }
        let manager = Manager { config: config.clone(), tls: tls.connector.clone() };
        // One connection first, so that a wrong password, host or certificate is said at
        // once: the pool would try again until its timeout and then say only that it timed out.
        let first = r2d2::ManageConnection::connect(&manager).map_err(|e| StoreError::Db(connect_error(&e)))?;
        drop(first);
        let pool = r2d2::Pool::builder()
            .max_size(16)
            .min_idle(Some(1))
            .connection_timeout(Duration::from_secs(15))
            .error_handler(Box::new(r2d2::LoggingErrorHandler))
            .build(manager)
            .map_err(|e| StoreError::Db(format!("cannot connect: {e}")))?;
        let pg = Postgres { pool: std::mem::ManuallyDrop::new(pool), url: tls.url, tls: tls.connector, retries: Default::default() };
        pg.migrate()?;
        Ok(pg)
    }

    fn migrate(&self) -> Result<()> {
        let mut conn = self.pool.get()?;
        let mut tx = conn.client.transaction()?;
        // One instance migrates; the others wait here, then find nothing left to do.
        tx.execute("SELECT pg_advisory_xact_lock(7301837464)", &[])?;
        tx.batch_execute("CREATE TABLE IF NOT EXISTS viewport_schema (version BIGINT NOT NULL)")?;
        let version: i64 = match tx.query_opt("SELECT version FROM viewport_schema", &[])? {
            Some(r) => r.get(0),
            None => {
                tx.execute("INSERT INTO viewport_schema (version) VALUES (0)", &[])?;
                0
            }
        };
        super::check_schema(version, MIGRATIONS.len())?;
        for (i, m) in MIGRATIONS.iter().enumerate().skip(version as usize) {
            tx.batch_execute(m)?;
            tx.execute("UPDATE viewport_schema SET version = $1", &[&(i as i64 + 1)])?;
        }
        tx.commit()?;
        Ok(())
    }
}

fn notify_all(on: &dyn Conn, events: &[Event]) -> Result<()> {
    for e in events {
        for payload in payloads(e) {
            on.execute("SELECT pg_notify(?1, ?2)", &[Value::Text(CHANNEL.into()), Value::Text(payload)])?;
        }
    }
    Ok(())
}

/// An event as notification payloads (a long revocation list is split to fit).
fn payloads(e: &Event) -> Vec<String> {
    match e {
        Event::Revoked { ids } if serde_json::to_string(e).map_or(0, |s| s.len()) > MAX_PAYLOAD => {
            ids.chunks(100).map(|c| serde_json::to_string(&Event::Revoked { ids: c.to_vec() }).unwrap_or_default()).collect()
        }
        e => vec![serde_json::to_string(e).unwrap_or_default()],
    }
}

impl Backend for Postgres {
    fn write(&self, isolation: Isolation, f: &mut dyn FnMut(&Tx) -> Result<()>) -> Result<Vec<Event>> {
        let level = match isolation {
            Isolation::Serializable => IsolationLevel::Serializable,
            Isolation::RowLocks => IsolationLevel::ReadCommitted,
        };
        let mut last = String::new();
        for attempt in 0..ATTEMPTS {
            if attempt > 0 {
                self.retries.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                // Back off a little, more each time, with jitter so racers spread out.
                let ms = (1u64 << attempt.min(6)) + u64::from(crate::util::random_bytes::<1>()[0] % 8);
                std::thread::sleep(Duration::from_millis(ms));
            }
            let mut conn = self.pool.get()?;
            let PgConn { client, statements } = &mut *conn;
            let mut tx = client.build_transaction().isolation_level(level).start()?;
            let outcome = {
                let on = On { client: RefCell::new(&mut tx), statements, drain: true };
                let handle = Tx::new(&on);
                match f(&handle) {
                    Ok(()) => {
                        let (events, abandon) = handle.into_parts();
                        if abandon {
                            Ok(None)
                        } else {
                            notify_all(&on, &events).map(|()| Some(events))
                        }
                    }
                    Err(e) => Err(e),
                }
            };
            match outcome {
                Ok(None) => {
                    tx.rollback()?;
                    return Ok(Vec::new());
                }
                Ok(Some(_events)) => match tx.commit() {
                    // Delivered by NOTIFY to every instance, this one included.
                    Ok(()) => return Ok(Vec::new()),
                    Err(e) => match StoreError::from(e) {
                        StoreError::Retry(m) => last = m,
                        e => return Err(e),
                    },
                },
                Err(StoreError::Retry(m)) => last = m,
                Err(e) => return Err(e),
            }
        }
        Err(StoreError::Db(format!("a write lost its race with other writers {ATTEMPTS} times: {last}")))
    }

    fn read(&self, f: &mut dyn FnMut(&Tx) -> Result<()>) -> Result<()> {
        let mut conn = self.pool.get()?;
        let PgConn { client, statements } = &mut *conn;
        let on = On { client: RefCell::new(client), statements, drain: false };
        f(&Tx::new(&on))
    }

    fn kind(&self) -> &'static str {
        "postgres"
    }

    fn retries(&self) -> u64 {
        self.retries.load(std::sync::atomic::Ordering::Relaxed)
    }

    fn listen(&self, events: tokio::sync::broadcast::Sender<Event>) -> Option<tokio::task::JoinHandle<()>> {
        let mut config = parse_config(&self.url, &self.url).ok()?;
        config.application_name("viewport-server listen");
        config.keepalives(true).keepalives_idle(Duration::from_secs(10));
        if config.get_connect_timeout().is_none() {
            config.connect_timeout(Duration::from_secs(10));
        }
        Some(match self.tls.clone() {
            Some(tls) => tokio::spawn(listen(config, tls, events)),
            None => tokio::spawn(listen(config, tokio_postgres::NoTls, events)),
        })
    }

    fn describe(&self) -> Result<Vec<(String, String)>> {
        let mut conn = self.pool.get()?;
        let version: String = conn.client.query_one("SHOW server_version", &[])?.get(0);
        let schema: i64 = conn.client.query_one("SELECT version FROM viewport_schema", &[])?.get(0);
        let isolation: String = conn.client.query_one("SHOW default_transaction_isolation", &[])?.get(0);
        let ssl = conn.client.query_opt("SELECT version FROM pg_stat_ssl WHERE pid = pg_backend_pid() AND ssl", &[])?;
        // TLS only ever comes from the verifying connector (`pg_tls`).
        let tls = match ssl {
            Some(r) => format!("{}, the server's certificate verified", r.get::<_, Option<String>>(0).unwrap_or_else(|| "TLS".into())),
            None => "off (sslmode=require in --db turns it on)".into(),
        };
        let state = self.pool.state();
        Ok(vec![
            ("database".into(), format!("PostgreSQL {version}")),
            ("schema".into(), format!("{schema} of {}", MIGRATIONS.len())),
            ("writes".into(), format!("serializable; frames under row locks, read committed (the database's default: {isolation})")),
            ("pool".into(), format!("{} connections, {} idle", state.connections, state.idle_connections)),
            ("tls".into(), tls),
        ])
    }
}

/// Forwards every instance's notifications to `events`, reconnecting for as long as the
/// server runs; after each (re)connection, [`Event::Resync`].
async fn listen<T>(config: tokio_postgres::Config, tls: T, events: tokio::sync::broadcast::Sender<Event>)
where
    T: tokio_postgres::tls::MakeTlsConnect<tokio_postgres::Socket> + Clone + Send + 'static,
    T::Stream: Send + 'static,
    T::TlsConnect: Send,
    <T::TlsConnect as tokio_postgres::tls::TlsConnect<tokio_postgres::Socket>>::Future: Send,
{
    use futures_util::StreamExt;
    let mut backoff = Duration::from_millis(200);
    loop {
        match config.connect(tls.clone()).await {
            Ok((client, mut connection)) => {
                let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
                let driver = tokio::spawn(async move {
                    let mut stream = futures_util::stream::poll_fn(move |cx| connection.poll_message(cx));
                    while let Some(m) = stream.next().await {
                        match m {
                            Ok(tokio_postgres::AsyncMessage::Notification(n)) => {
                                let _ = tx.send(n.payload().to_string());
                            }
                            Ok(_) => {}
                            Err(e) => {
                                tracing::warn!("the database connection for notifications failed: {e}");
                                break;
                            }
                        }
                    }
                });
                match client.batch_execute(&format!("LISTEN {CHANNEL}")).await {
                    Ok(()) => {
                        backoff = Duration::from_millis(200);
                        tracing::debug!("listening for other instances' changes");
                        let _ = events.send(Event::Resync);
                        while let Some(payload) = rx.recv().await {
                            match serde_json::from_str::<Event>(&payload) {
                                Ok(e) => {
                                    let _ = events.send(e);
                                }
                                Err(e) => tracing::warn!("an unreadable notification from the database ({e}): ignored"),
                            }
                        }
                        tracing::warn!("lost the database connection for notifications; reconnecting");
                    }
                    Err(e) => tracing::warn!("LISTEN failed: {e}"),
                }
                driver.abort();
            }
            Err(e) => tracing::warn!("cannot connect for notifications: {e}; retrying"),
        }
        tokio::time::sleep(backoff).await;
        backoff = (backoff * 2).min(Duration::from_secs(5));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_lose_their_password_in_messages() {
        assert_eq!(redact("postgres://vp:s3cret@db.example:5432/viewport"), "postgres://vp:***@db.example:5432/viewport");
        assert_eq!(redact("postgres://vp@db/viewport?password=s3cret&sslmode=disable"), "postgres://vp@db/viewport?password=***&sslmode=disable");
        assert_eq!(redact("postgresql://localhost/viewport"), "postgresql://localhost/viewport");
    }

    #[test]
    fn a_long_revocation_is_split_into_payloads_that_fit() {
        let ids: Vec<String> = (0..1000).map(|i| format!("{i:026}")).collect();
        let p = payloads(&Event::Revoked { ids: ids.clone() });
        assert!(p.len() > 1 && p.iter().all(|s| s.len() <= MAX_PAYLOAD));
        let back: Vec<String> = p
            .iter()
            .flat_map(|s| match serde_json::from_str::<Event>(s).unwrap() {
                Event::Revoked { ids } => ids,
                _ => panic!(),
            })
            .collect();
        assert_eq!(back, ids);
    }
}

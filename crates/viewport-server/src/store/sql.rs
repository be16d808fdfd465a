//! The seam between the store's domain code and a database: [`Backend`], with one
//! implementation per database (`sqlite.rs`, `pg.rs`), and [`Tx`], the handle the domain code
//! runs its statements through.
//!
//! The domain code (every other module of `store/`) is written once, in the SQL both
//! databases accept: numbered parameters `?1`, `ON CONFLICT`, `COALESCE`, `CAST(… AS BIGINT)`
//! around sums. What it assumes of a backend is written on [`Backend`].

use super::{Result, StoreError};
use std::cell::{Cell, RefCell};

/// A value bound to a parameter or read from a column.
#[derive(Debug, Clone, PartialEq)]
pub enum Value {
    Null,
    Int(i64),
    Text(String),
    Blob(Vec<u8>),
}

/// What can be bound to a parameter (`p![…]` builds the list).
pub trait ToValue {
    fn to_value(&self) -> Value;
}

impl ToValue for i64 {
    fn to_value(&self) -> Value {
        Value::Int(*self)
    }
}
impl ToValue for i32 {
    fn to_value(&self) -> Value {
        Value::Int(i64::from(*self))
    }
}
impl ToValue for u32 {
    fn to_value(&self) -> Value {
        Value::Int(i64::from(*self))
    }
}
impl ToValue for bool {
    fn to_value(&self) -> Value {
        Value::Int(i64::from(*self))
    }
}
impl ToValue for str {
    fn to_value(&self) -> Value {
        Value::Text(self.to_string())
    }
}
impl ToValue for String {
    fn to_value(&self) -> Value {
        Value::Text(self.clone())
    }
}
impl ToValue for [u8] {
    fn to_value(&self) -> Value {
        Value::Blob(self.to_vec())
    }
}
impl ToValue for Vec<u8> {
    fn to_value(&self) -> Value {
        Value::Blob(self.clone())
    }
}
impl<T: ToValue + ?Sized> ToValue for &T {
    fn to_value(&self) -> Value {
        (**self).to_value()
    }
}
impl<T: ToValue> ToValue for Option<T> {
    fn to_value(&self) -> Value {
        self.as_ref().map_or(Value::Null, ToValue::to_value)
    }
}

/// The parameters of one statement: `p![a, b]`.
macro_rules! p {
    () => { &[] as &[$crate::store::sql::Value] };
    ($($e:expr),+ $(,)?) => { &[$($crate::store::sql::ToValue::to_value(&$e)),+] as &[$crate::store::sql::Value] };
}
pub(crate) use p;

/// One result row, its values owned.
#[derive(Debug, Clone)]
pub struct Row(pub Vec<Value>);

impl Row {
    /// Column `i` as a `T`; a NULL or a value of another type is an error unless `T` is an
    /// `Option`.
    pub fn get<T: FromValue>(&self, i: usize) -> Result<T> {
        let v = self.0.get(i).ok_or_else(|| StoreError::Db(format!("no column {i} in the result")))?;
        T::from_value(v).ok_or_else(|| StoreError::Db(format!("column {i} holds {v:?}, not a {}", std::any::type_name::<T>())))
    }
}

/// What a column can be read as.
pub trait FromValue: Sized {
    fn from_value(v: &Value) -> Option<Self>;
}

impl FromValue for i64 {
    fn from_value(v: &Value) -> Option<i64> {
        match v {
            Value::Int(i) => Some(*i),
            _ => None,
        }
    }
}
impl FromValue for i32 {
    fn from_value(v: &Value) -> Option<i32> {
        i64::from_value(v).and_then(|i| i32::try_from(i).ok())
    }
}
impl FromValue for bool {
    fn from_value(v: &Value) -> Option<bool> {
        i64::from_value(v).map(|i| i != 0)
    }
}
impl FromValue for String {
    fn from_value(v: &Value) -> Option<String> {
        match v {
            Value::Text(s) => Some(s.clone()),
            _ => None,
        }
    }
}
impl FromValue for Vec<u8> {
    fn from_value(v: &Value) -> Option<Vec<u8>> {
        match v {
            Value::Blob(b) => Some(b.clone()),
            _ => None,
        }
    }
}
impl<T: FromValue> FromValue for Option<T> {
    fn from_value(v: &Value) -> Option<Option<T>> {
        match v {
            Value::Null => Some(None),
            v => T::from_value(v).map(Some),
        }
    }
}

/// One open connection or transaction: what a backend implements.
pub trait Conn {
    /// Runs a statement; returns the rows it changed.
    fn execute(&self, sql: &str, params: &[Value]) -> Result<usize>;
    /// Runs a query and hands each row to `f`, in order, without collecting them.
    fn each(&self, sql: &str, params: &[Value], f: &mut dyn FnMut(Row) -> Result<bool>) -> Result<()>;
    /// What follows a `SELECT` to lock the rows it returns until the transaction ends
    /// (PostgreSQL: ` FOR UPDATE`); empty where a write transaction already excludes every
    /// other writer (SQLite).
    fn row_lock(&self) -> &'static str {
        ""
    }
    /// Takes a lock named `key` until the transaction ends, so that writes naming the same
    /// key take turns (PostgreSQL: an advisory lock); nothing where writers always take turns
    /// (SQLite).
    fn lock_key(&self, _key: &str) -> Result<()> {
        Ok(())
    }
}

/// A change to announce once the transaction that made it commits (see [`Event`]).
pub type Events = RefCell<Vec<Event>>;

/// What other parts of the server (in this process and, on PostgreSQL, in every instance)
/// must hear about once it is committed.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(tag = "event", rename_all = "snake_case")]
pub enum Event {
    /// A pairing code was decided, delivered or cancelled: long polls look again.
    Pairing,
    /// These runtime targets were revoked (revocation, member removal): close their live
    /// relay connections.
    Revoked { ids: Vec<String> },
    /// A relay connection for this runtime target became the live one (`conn` names it);
    /// any other connection for it closes with 4409.
    Live { runtime_target_id: String, conn: String },
    /// The signing keys changed (rotation).
    Keys,
    /// Notifications may have been missed (a lost LISTEN connection): look at everything
    /// again.
    Resync,
}

/// The handle the domain code runs statements through: a connection (reads) or a
/// transaction (writes), plus the events to publish after the commit.
pub struct Tx<'a> {
    conn: &'a dyn Conn,
    events: Events,
    abandon: Cell<bool>,
}

impl<'a> Tx<'a> {
    pub fn new(conn: &'a dyn Conn) -> Tx<'a> {
        Tx { conn, events: RefCell::new(Vec::new()), abandon: Cell::new(false) }
    }

    pub fn execute(&self, sql: &str, params: &[Value]) -> Result<usize> {
        self.conn.execute(sql, params)
    }

    /// Every row, each turned into a `T` by `f`.
    pub fn query_map<T>(&self, sql: &str, params: &[Value], mut f: impl FnMut(&Row) -> Result<T>) -> Result<Vec<T>> {
        let mut out = Vec::new();
        self.conn.each(sql, params, &mut |r| {
            out.push(f(&r)?);
            Ok(true)
        })?;
        Ok(out)
    }

    /// The first row, if any.
    pub fn query_opt<T>(&self, sql: &str, params: &[Value], f: impl FnOnce(&Row) -> Result<T>) -> Result<Option<T>> {
        let mut first = None;
        self.conn.each(sql, params, &mut |r| {
            first = Some(r);
            Ok(false)
        })?;
        first.map(|r| f(&r)).transpose()
    }

    /// The first row; none is an error.
    pub fn query_one<T>(&self, sql: &str, params: &[Value], f: impl FnOnce(&Row) -> Result<T>) -> Result<T> {
        self.query_opt(sql, params, f)?.ok_or_else(|| StoreError::Db("the query returned no row".into()))
    }

    /// ` FOR UPDATE` or nothing: see [`Conn::row_lock`]. For a [`Isolation::RowLocks`] write.
    pub fn row_lock(&self) -> &'static str {
        self.conn.row_lock()
    }

    /// Writes naming `key` take turns from here to the end of the transaction: see
    /// [`Conn::lock_key`]. For a [`Isolation::RowLocks`] write that reads more than its rows.
    pub fn lock_key(&self, key: &str) -> Result<()> {
        self.conn.lock_key(key)
    }

    /// Rows handed to `f` one at a time until it returns `false`.
    pub fn each(&self, sql: &str, params: &[Value], mut f: impl FnMut(Row) -> Result<bool>) -> Result<()> {
        self.conn.each(sql, params, &mut f)
    }

    /// Announces `e` once this transaction commits.
    pub fn publish(&self, e: Event) {
        self.events.borrow_mut().push(e);
    }

    /// Rolls the transaction back even though the closure returns `Ok`.
    pub fn abandon(&self) {
        self.abandon.set(true);
    }

    pub(super) fn into_parts(self) -> (Vec<Event>, bool) {
        (self.events.into_inner(), self.abandon.get())
    }
}

/// How a write is kept consistent with the others.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Isolation {
    /// Serializable with every other write: the default, for everything but the relay's
    /// frames.
    Serializable,
    /// Consistent through the rows it locks (its `SELECT`s end in [`Tx::row_lock`]) and the
    /// unique keys only. For storing frames: each batch touches one runtime target's
    /// sessions, so batches of different machines never abort each other, however many run
    /// at once (under `SERIALIZABLE`, hundreds of sessions starting together in one org kept
    /// failing each other's commits). PostgreSQL: `READ COMMITTED`; SQLite: its one writer.
    RowLocks,
}

/// A database the store runs on.
///
/// What the domain code assumes of every backend:
/// - `write` with [`Isolation::Serializable`] runs `f` in a transaction that is serializable
///   with every other `write` of any process on the same database (SQLite: `BEGIN
///   IMMEDIATE`; PostgreSQL: `SERIALIZABLE`, with `f` run again after a serialization
///   failure, a deadlock or a lost unique-key race, so `f` must not have effects outside the
///   transaction). `f` returning an error, or calling [`Tx::abandon`], rolls it back. With
///   [`Isolation::RowLocks`] the same, except that only the rows `f` locks and the unique keys
///   order it against other writes.
/// - An error of any statement reaches `f` (PostgreSQL: rows a query stops reading early
///   are still read to their end in a write, so an error after them is not lost).
/// - A `(session_id, seq)` frame is stored at most once (a primary key on both), so two
///   instances racing on one session cannot both store a seq.
/// - Events published in a committed transaction reach [`Backend::subscribe`]rs of this
///   process, and on PostgreSQL of every instance; none of a rolled-back one does.
/// - `read` sees every committed write.
pub trait Backend: Send + Sync {
    fn write(&self, isolation: Isolation, f: &mut dyn FnMut(&Tx) -> Result<()>) -> Result<Vec<Event>>;
    fn read(&self, f: &mut dyn FnMut(&Tx) -> Result<()>) -> Result<()>;
    /// `sqlite` or `postgres`.
    fn kind(&self) -> &'static str;
    /// Where events of other processes arrive (PostgreSQL: every instance's); `None` when
    /// this database has no such channel (SQLite: other processes are polled for).
    fn listen(&self, events: tokio::sync::broadcast::Sender<Event>) -> Option<tokio::task::JoinHandle<()>>;
    /// Facts for `doctor`: the schema version, what the database says about itself.
    fn describe(&self) -> Result<Vec<(String, String)>>;
    /// How many times a write of this handle ran again after losing a race (0 on SQLite,
    /// where writers take turns).
    fn retries(&self) -> u64 {
        0
    }
}

/// Runs `sql` through a translator that turns `?N` into `$N` (PostgreSQL's spelling),
/// leaving quoted text alone.
pub fn dollar_params(sql: &str) -> String {
    let mut out = String::with_capacity(sql.len());
    let mut quote: Option<char> = None;
    let mut chars = sql.chars().peekable();
    while let Some(c) = chars.next() {
        match quote {
            Some(q) => {
                out.push(c);
                if c == q {
                    quote = None;
                }
            }
            None if c == '\'' || c == '"' => {
                quote = Some(c);
                out.push(c);
            }
            None if c == '?' && chars.peek().is_some_and(|d| d.is_ascii_digit()) => out.push('$'),
            None => out.push(c),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parameters_are_renumbered_outside_quotes_only() {
        assert_eq!(dollar_params("SELECT a FROM t WHERE a = ?1 AND b = '?2' AND c = ?12"), "SELECT a FROM t WHERE a = $1 AND b = '?2' AND c = $12");
        assert_eq!(dollar_params("SELECT \"?3\", ?"), "SELECT \"?3\", ?");
    }

    #[test]
    fn values_read_back_as_their_types_and_mismatches_are_errors() {
        let r = Row(vec![Value::Int(3), Value::Null, Value::Text("x".into()), Value::Blob(vec![1])]);
        assert_eq!(r.get::<i64>(0).unwrap(), 3);
        assert_eq!(r.get::<Option<String>>(1).unwrap(), None);
        assert_eq!(r.get::<String>(2).unwrap(), "x");
        assert_eq!(r.get::<Vec<u8>>(3).unwrap(), vec![1]);
        assert!(r.get::<String>(0).is_err());
        assert!(r.get::<i64>(1).is_err(), "NULL is not an i64");
        assert!(r.get::<i64>(9).is_err());
    }
}

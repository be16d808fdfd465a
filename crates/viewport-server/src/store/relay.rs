//! The relay's records (SPEC sections 9 and 14): sessions, frames in seq order, acks,
//! gap frames, retention and stored quotas; and which connection is the live one of each
//! runtime target, across every instance on the database.
//!
//! The protocol rules are here once, for both databases; what they rely on is written on
//! [`super::sql::Backend`] (serializable writes, except that frames are stored under their
//! sessions' row locks; a frame's `(session, seq)` stored once).

use super::sql::{p, Event, Row, ToValue, Tx, Value};
use super::{FrameRow, RelayBatchOutcome, RelayOp, Result, SessionRow, Store, StoreError, StoredQuota};

/// Frames inserted by one statement (one round trip on PostgreSQL).
const FRAMES_PER_INSERT: usize = 64;

/// Inserts `(session, seq, ts, kind, data)` rows, [`FRAMES_PER_INSERT`] per statement.
fn insert_frames(tx: &Tx, rows: &mut Vec<[Value; 5]>) -> Result<()> {
    for chunk in rows.chunks(FRAMES_PER_INSERT) {
        let mut sql = String::from("INSERT INTO relay_frames (session_id, seq, ts, kind, data) VALUES ");
        for i in 0..chunk.len() {
            let b = i * 5;
            if i > 0 {
                sql.push_str(", ");
            }
            sql.push_str(&format!("(?{}, ?{}, ?{}, ?{}, ?{})", b + 1, b + 2, b + 3, b + 4, b + 5));
        }
        let params: Vec<Value> = chunk.iter().flat_map(|r| r.iter().cloned()).collect();
        tx.execute(&sql, &params)?;
    }
    rows.clear();
    Ok(())
}

impl Store {
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
        // Ordered by the lock on each session's row (and the frames' primary key), not by
        // serializable isolation: batches of different machines never abort each other.
        self.write_row_locked(|tx| {
            let mut order: Vec<String> = Vec::new();
            let mut states: std::collections::HashMap<String, S> = std::collections::HashMap::new();
            let mut violation = None;
            let mut refused: Vec<String> = Vec::new();
            let mut stored_bytes = 0u64;
            // (machine, org) bytes held, read once per batch when a new session needs it.
            let mut held: Option<(u64, u64)> = None;
            let mut frames: Vec<[Value; 5]> = Vec::new();
            {
                // The session's row stays locked until the batch commits: another instance
                // storing the same session (a connection handed over) waits, then reads what
                // this one stored.
                let load = |sid: &str| -> Result<Option<(String, i64, Option<i64>)>> {
                    let sql = format!("SELECT runtime_target_id, last_seq, ended_at FROM relay_sessions WHERE id = ?1{}", tx.row_lock());
                    tx.query_opt(&sql, p![sid], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))
                };
                let was_refused = |sid: &str| -> Result<bool> {
                    Ok(tx
                        .query_opt(
                            "SELECT 1 FROM relay_refused_sessions WHERE id = ?1 AND runtime_target_id = ?2",
                            p![sid, runtime_target_id],
                            |_| Ok(()),
                        )?
                        .is_some())
                };
                for op in ops {
                    let sid = op.session_id();
                    if refused.iter().any(|r| r == sid) {
                        continue;
                    }
                    if !states.contains_key(sid) {
                        let row: Option<(String, i64, Option<i64>)> = load(sid)?;
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
                                RelayOp::Start { session_id, .. } if over_quota(tx, &mut held, machine_id, workspace_id, quota)? => {
                                    tx.execute(
                                        "INSERT INTO relay_refused_sessions (id, runtime_target_id, reason, at) VALUES (?1, ?2, ?3, ?4)
                                     ON CONFLICT(id) DO NOTHING",
                                        p![session_id, runtime_target_id, vpd_proto::relay::QUOTA_EXCEEDED, now],
                                    )?;
                                    refused.push(session_id.clone());
                                    continue;
                                }
                                RelayOp::Start { session_id, agent, directory, started_at } => {
                                    tx.execute(
                                        "INSERT INTO relay_sessions (id, workspace_id, runtime_target_id, machine_id, agent,
                                         directory, started_at)
                                     VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
                                        p![session_id, workspace_id, runtime_target_id, machine_id, agent, directory, started_at],
                                    )?;
                                    states.insert(
                                        sid.to_string(),
                                        S {
                                            bytes: 0,
                                            last_seq: 0,
                                            ended: false,
                                            frames: 0,
                                            gaps: 0,
                                            end: None,
                                            dirty: false,
                                            ack: 0,
                                            touched: false,
                                        },
                                    );
                                }
                                // A late message of a session refused earlier (the daemon may not
                                // have heard yet): nothing to store, nothing to answer.
                                _ if was_refused(sid)? => continue,
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
                                frames.push([sid.to_value(), Value::Int(*seq as i64), ts.to_value(), kind.to_value(), data.to_value()]);
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
            insert_frames(tx, &mut frames)?;
            for sid in &order {
                let st = &states[sid];
                if st.dirty {
                    tx.execute(
                        "UPDATE relay_sessions SET last_seq = ?2, frame_count = frame_count + ?3, gap_count = gap_count + ?4,
                         bytes = bytes + ?5, last_frame_at = ?6
                     WHERE id = ?1",
                        p![sid, st.last_seq as i64, st.frames as i64, st.gaps as i64, st.bytes as i64, now],
                    )?;
                }
                if let Some((_, reason, code)) = &st.end {
                    tx.execute(
                        "UPDATE relay_sessions SET ended_at = ?2, end_reason = ?3, exit_code = ?4 WHERE id = ?1 AND ended_at IS NULL",
                        p![sid, now, reason, code],
                    )?;
                }
            }
            let acks = order.iter().filter(|sid| states[*sid].touched).map(|sid| (sid.clone(), states[sid].ack));
            Ok(RelayBatchOutcome { acks: acks.collect(), violation, refused, bytes: stored_bytes })
        })
    }

    /// `sessionId → last stored seq` of this runtime target's sessions that are running or
    /// ended after `ended_after` (the `ready` message's resume map).
    pub fn relay_resume(&self, runtime_target_id: &str, ended_after: i64) -> Result<std::collections::BTreeMap<String, u64>> {
        let rows = self.read(|tx| {
            tx.query_map(
                "SELECT id, last_seq FROM relay_sessions
                 WHERE runtime_target_id = ?1 AND (ended_at IS NULL OR ended_at > ?2)",
                p![runtime_target_id, ended_after],
                |r| Ok((r.get::<String>(0)?, r.get::<i64>(1)? as u64)),
            )
        })?;
        Ok(rows.into_iter().collect())
    }

    /// Which of these runtime target ids are revoked.
    pub fn revoked_among(&self, ids: &[String]) -> Result<Vec<String>> {
        self.ids_among(ids, &[], |list| format!("SELECT id FROM runtime_targets WHERE revoked_at IS NOT NULL AND id IN ({list})"))
    }

    /// The sessions of a workspace, newest first.
    pub fn sessions(&self, workspace_id: &str) -> Result<Vec<SessionRow>> {
        let sql = format!("{SESSION_SELECT} WHERE s.workspace_id = ?1 ORDER BY s.started_at DESC, s.id DESC");
        self.read(|tx| tx.query_map(&sql, p![workspace_id], session_row))
    }

    /// One session; with `workspace_id`, only when it belongs to that workspace (tenancy).
    pub fn session(&self, workspace_id: Option<&str>, id: &str) -> Result<Option<SessionRow>> {
        self.read(|tx| match workspace_id {
            Some(w) => tx.query_opt(&format!("{SESSION_SELECT} WHERE s.id = ?1 AND s.workspace_id = ?2"), p![id, w], session_row),
            None => tx.query_opt(&format!("{SESSION_SELECT} WHERE s.id = ?1"), p![id], session_row),
        })
    }

    /// Up to `limit` frames of a session with `seq > after`, in seq order; only `kinds` when
    /// given.
    pub fn session_frames(&self, session_id: &str, after: u64, kind: Option<&str>, limit: usize) -> Result<Vec<FrameRow>> {
        self.session_frames_capped(session_id, after, kind, limit, usize::MAX)
    }

    /// Like [`Store::session_frames`], stopping once `max_bytes` of data are loaded (at least
    /// one frame), so a page view never loads a whole huge session into memory.
    pub fn session_frames_capped(&self, session_id: &str, after: u64, kind: Option<&str>, limit: usize, max_bytes: usize) -> Result<Vec<FrameRow>> {
        self.read(|tx| {
            let mut out = Vec::new();
            let mut bytes = 0usize;
            tx.each(
                "SELECT seq, ts, kind, data FROM relay_frames
                 WHERE session_id = ?1 AND seq > ?2 AND (CAST(?3 AS TEXT) IS NULL OR kind = ?3)
                 ORDER BY seq LIMIT ?4",
                p![session_id, after.min(i64::MAX as u64) as i64, kind, limit.min(i64::MAX as usize) as i64],
                |r| {
                    let row = FrameRow { seq: r.get::<i64>(0)? as u64, ts: r.get(1)?, kind: r.get(2)?, data: r.get(3)? };
                    bytes += row.data.len();
                    out.push(row);
                    Ok(bytes < max_bytes)
                },
            )?;
            Ok(std::mem::take(&mut out))
        })
    }

    /// Calls `f` with each frame of a session (seq, kind, data), in seq order, without loading
    /// them all at once.
    pub fn for_each_frame(&self, session_id: &str, mut f: impl FnMut(u64, &str, &[u8]) -> std::io::Result<()>) -> Result<()> {
        self.read(|tx| {
            tx.each("SELECT seq, kind, data FROM relay_frames WHERE session_id = ?1 ORDER BY seq", p![session_id], |r| {
                let seq = r.get::<i64>(0)? as u64;
                let (Some(Value::Text(kind)), Some(Value::Blob(data))) = (r.0.get(1), r.0.get(2)) else {
                    return Err(StoreError::Db(format!("frame {seq} of session {session_id} is malformed")));
                };
                f(seq, kind, data).map_err(|e| StoreError::Io { path: "standard output".into(), source: e })?;
                Ok(true)
            })
        })
    }

    // ---- the live connection of each runtime target ----------------------------------

    /// Records `conn` (of instance `instance`) as the live relay connection of a runtime
    /// target — the newest wins — and tells every instance, so the one holding an older
    /// connection closes it with 4409.
    pub fn claim_live(&self, runtime_target_id: &str, conn: &str, instance: &str, now: i64) -> Result<()> {
        self.write(|tx| {
            tx.execute(
                "INSERT INTO relay_live (runtime_target_id, conn, instance, since) VALUES (?1, ?2, ?3, ?4)
                 ON CONFLICT (runtime_target_id) DO UPDATE SET conn = excluded.conn, instance = excluded.instance, since = excluded.since",
                p![runtime_target_id, conn, instance, now],
            )?;
            tx.publish(Event::Live { runtime_target_id: runtime_target_id.to_string(), conn: conn.to_string() });
            Ok(())
        })
    }

    /// The connection that is live for this runtime target, if any.
    pub fn live_conn(&self, runtime_target_id: &str) -> Result<Option<String>> {
        self.read(|tx| tx.query_opt("SELECT conn FROM relay_live WHERE runtime_target_id = ?1", p![runtime_target_id], |r| r.get(0)))
    }

    /// Forgets `conn` as live (it closed); a newer connection's record stays.
    pub fn release_live(&self, runtime_target_id: &str, conn: &str) -> Result<()> {
        self.write(|tx| tx.execute("DELETE FROM relay_live WHERE runtime_target_id = ?1 AND conn = ?2", p![runtime_target_id, conn]).map(drop))
    }

    /// Records that `instance` is alive at `now` (each instance every few seconds), and
    /// forgets the live connections of instances silent since `dead_before`. Returns how
    /// many instances are alive.
    pub fn instance_heartbeat(&self, instance: &str, now: i64, dead_before: i64) -> Result<u64> {
        self.write(|tx| {
            tx.execute(
                "INSERT INTO instances (id, seen_at) VALUES (?1, ?2) ON CONFLICT (id) DO UPDATE SET seen_at = excluded.seen_at",
                p![instance, now],
            )?;
            tx.execute("DELETE FROM relay_live WHERE instance IN (SELECT id FROM instances WHERE seen_at < ?1)", p![dead_before])?;
            tx.execute("DELETE FROM instances WHERE seen_at < ?1", p![dead_before])?;
            Ok(tx.query_one("SELECT COUNT(*) FROM instances", p![], |r| r.get::<i64>(0))?.max(1) as u64)
        })
    }

    /// The runtime targets among `ids` with a live connection on an instance seen since
    /// `alive_since` (any instance: the Machines and Sessions pages of every instance agree).
    pub fn online_among(&self, ids: &[String], alive_since: i64) -> Result<Vec<String>> {
        self.ids_among(ids, &[Value::Int(alive_since)], |list| {
            format!(
                "SELECT l.runtime_target_id FROM relay_live l JOIN instances i ON i.id = l.instance
                 WHERE i.seen_at >= ?1 AND l.runtime_target_id IN ({list})"
            )
        })
    }

    /// The ids among `ids` that a query selects: `sql` gets the `IN` list (parameters after
    /// `lead`'s), run 500 ids at a time; its first column is the id.
    fn ids_among(&self, ids: &[String], lead: &[Value], sql: impl Fn(&str) -> String) -> Result<Vec<String>> {
        let mut out = Vec::new();
        for chunk in ids.chunks(500) {
            let first = lead.len() + 1;
            let list = (first..first + chunk.len()).map(|i| format!("?{i}")).collect::<Vec<_>>().join(", ");
            let params: Vec<Value> = lead.iter().cloned().chain(chunk.iter().map(|id| id.to_value())).collect();
            let sql = sql(&list);
            out.extend(self.read(|tx| tx.query_map(&sql, &params, |r| r.get::<String>(0)))?);
        }
        Ok(out)
    }

    /// Deletes the sessions (and their frames) that ended before `cutoff`; returns how many.
    pub fn delete_sessions_ended_before(&self, cutoff: i64) -> Result<usize> {
        self.write(|tx| {
            tx.execute(
                "DELETE FROM relay_frames WHERE session_id IN
                 (SELECT id FROM relay_sessions WHERE ended_at IS NOT NULL AND ended_at < ?1)",
                p![cutoff],
            )?;
            let n = tx.execute("DELETE FROM relay_sessions WHERE ended_at IS NOT NULL AND ended_at < ?1", p![cutoff])?;
            tx.execute("DELETE FROM relay_refused_sessions WHERE at < ?1", p![cutoff])?;
            Ok(n)
        })
    }

    /// Retention for sessions that never ended (SPEC A8): a session whose last frame is older
    /// than `cutoff` loses its frames but keeps a tombstone — its row, and one gap frame
    /// `1-LAST` standing for what was removed — so a late frame (`LAST + 1`) is stored after
    /// that gap instead of breaking the protocol. Returns how many sessions were purged.
    pub fn purge_stale_sessions(&self, cutoff: i64, now: i64) -> Result<usize> {
        self.write(|tx| {
            let stale: Vec<(String, i64)> = tx.query_map(
                "SELECT id, last_seq FROM relay_sessions
             WHERE ended_at IS NULL AND last_seq > 0 AND COALESCE(last_frame_at, started_at) < ?1
               AND (purged_at IS NULL OR purged_at < COALESCE(last_frame_at, started_at))",
                p![cutoff],
                |r| Ok((r.get(0)?, r.get(1)?)),
            )?;
            for (id, last) in &stale {
                tx.execute("DELETE FROM relay_frames WHERE session_id = ?1", p![id])?;
                tx.execute(
                    "INSERT INTO relay_frames (session_id, seq, ts, kind, data) VALUES (?1, ?2, ?3, 'gap', ?4)",
                    p![id, last, crate::util::rfc3339(now), format!("1-{last}").into_bytes()],
                )?;
                tx.execute("UPDATE relay_sessions SET bytes = 0, frame_count = 1, gap_count = 1, purged_at = ?2 WHERE id = ?1", p![id, now])?;
            }
            Ok(stale.len())
        })
    }
}

const SESSION_SELECT: &str = "SELECT s.id, s.workspace_id, w.slug, s.runtime_target_id, s.machine_id,
        COALESCE(m.name, ''), s.agent, s.directory, s.started_at, s.ended_at, s.end_reason, s.exit_code,
        s.last_seq, s.frame_count, s.gap_count, s.purged_at
    FROM relay_sessions s
    JOIN workspaces w ON w.id = s.workspace_id
    LEFT JOIN machines m ON m.id = s.machine_id";

fn session_row(r: &Row) -> Result<SessionRow> {
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
        last_seq: r.get::<i64>(12)? as u64,
        frame_count: r.get::<i64>(13)? as u64,
        gap_count: r.get::<i64>(14)? as u64,
        purged_at: r.get(15)?,
    })
}

/// Whether the machine's or the org's stored bytes reach their quota (read once per batch).
fn over_quota(tx: &Tx, held: &mut Option<(u64, u64)>, machine_id: &str, workspace_id: &str, quota: StoredQuota) -> Result<bool> {
    let (m, o) = match *held {
        Some(h) => h,
        None => {
            // Sessions of one org starting at once take turns here, so each sums what the one
            // before stored (frame batches are ordered only by their own sessions' rows).
            tx.lock_key(&format!("stored-quota:{workspace_id}"))?;
            let sum = |sql: &str, id: &str| -> Result<u64> { Ok(tx.query_one(sql, p![id], |r| r.get::<i64>(0))?.max(0) as u64) };
            let m = sum("SELECT CAST(COALESCE(SUM(bytes), 0) AS BIGINT) FROM relay_sessions WHERE machine_id = ?1", machine_id)?;
            let o = sum("SELECT CAST(COALESCE(SUM(bytes), 0) AS BIGINT) FROM relay_sessions WHERE workspace_id = ?1", workspace_id)?;
            *held.insert((m, o))
        }
    };
    Ok(m >= quota.machine_bytes || o >= quota.org_bytes)
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

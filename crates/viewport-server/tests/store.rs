//! One suite for both databases (issue 14): every scenario runs on SQLite and on a real
//! PostgreSQL, and two handles on one database (two instances) racing to store the same
//! frames store each seq once.

#[path = "../../../tests/support/pg.rs"]
mod pg;

use viewport_server::roles::{Actor, Role};
use viewport_server::store::{MachineInfo, Pairing, RelayOp, Store, StoreError, StoredQuota, Workspace};

/// Every scenario, once per backend: `sqlite::NAME` and `postgres::NAME`.
macro_rules! both {
    ($($name:ident),* $(,)?) => {
        mod sqlite {
            $( #[test] fn $name() { let dir = tempfile::tempdir().unwrap(); super::$name(&|| super::on_sqlite(&dir)) } )*
        }
        mod postgres {
            $( #[test] fn $name() { let pg = super::pg::Pg::start(); super::$name(&|| super::on_postgres(&pg)) } )*
        }
    };
}

both!(
    approval_is_delivered_once_and_remove_member_is_scoped,
    gap_frames_and_byte_capped_reads,
    relay_batches_store_in_order_ack_duplicates_and_retention_deletes,
    expired_codes_cannot_be_approved,
    two_instances_racing_on_one_session_store_each_frame_once,
    many_machines_starting_sessions_at_once_never_fail_each_other,
    the_stored_quota_holds_when_sessions_start_together,
    roles_audit_and_keys_agree,
    counters_are_shared_by_every_handle,
);

/// A new SQLite file in `dir`, or a second handle on it (another process).
fn on_sqlite(dir: &tempfile::TempDir) -> Store {
    Store::open(&dir.path().join("viewport.db")).unwrap()
}

/// A new PostgreSQL database, or a second handle on the last one made (another instance).
fn on_postgres(pg: &pg::Pg) -> Store {
    thread_local! { static LAST: std::cell::RefCell<Option<String>> = const { std::cell::RefCell::new(None) }; }
    let url = LAST.with(|l| l.borrow_mut().get_or_insert_with(|| pg.database()).clone());
    Store::connect(&url).unwrap_or_else(|e| panic!("{e}\n{}", pg.log()))
}

fn machine() -> MachineInfo {
    MachineInfo { name: "box".into(), public_key: "k".into(), daemon_version: "0.1.0".into(), os: "linux".into(), arch: "x86_64".into() }
}

fn approval_is_delivered_once_and_remove_member_is_scoped(fresh: &dyn Fn() -> Store) {
    let s = fresh();
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

/// A store with one org, one member and one approved pairing.
fn paired_store(s: Store) -> (Store, Workspace, Pairing) {
    let u = s.create_user("a@example.com", "h", 0).unwrap();
    let w = s.create_workspace("One", "one", 0).unwrap();
    s.add_member(&w.id, &u.id, 0).unwrap();
    s.insert_device_code("BCDFGHJK", b"h", &machine(), None, 0, 900).unwrap();
    let p = s.approve_code("BCDFGHJK", &w.id, &u.id, &Actor::cli(), 1).unwrap();
    (s, w, p)
}

/// A store with one org, one member and `n` machines paired in it (at most 400).
fn org_with_machines(s: Store, n: usize) -> (Store, Workspace, Vec<Pairing>) {
    let u = s.create_user("a@example.com", "h", 0).unwrap();
    let w = s.create_workspace("One", "one", 0).unwrap();
    s.add_member(&w.id, &u.id, 0).unwrap();
    let alphabet = vpd_proto::CODE_ALPHABET;
    let pairings = (0..n)
        .map(|i| {
            let code = format!("BCDFGH{}{}", alphabet[i / 20] as char, alphabet[i % 20] as char);
            s.insert_device_code(&code, b"h", &machine(), None, 0, 900).unwrap();
            s.approve_code(&code, &w.id, &u.id, &Actor::cli(), 1).unwrap()
        })
        .collect();
    (s, w, pairings)
}

/// Runs `f` for each pairing at the same moment, each on a thread with a store handle of its
/// own (another instance); what each returned.
fn at_once<T: Send>(fresh: &dyn Fn() -> Store, pairings: Vec<Pairing>, f: impl Fn(Store, Pairing) -> T + Sync) -> Vec<T> {
    let barrier = std::sync::Barrier::new(pairings.len());
    let stores: Vec<Store> = pairings.iter().map(|_| fresh()).collect();
    std::thread::scope(|scope| {
        let threads: Vec<_> = stores
            .into_iter()
            .zip(pairings)
            .map(|(store, p)| {
                let (barrier, f) = (&barrier, &f);
                scope.spawn(move || {
                    barrier.wait();
                    f(store, p)
                })
            })
            .collect();
        threads.into_iter().map(|t| t.join().expect("a machine's batch failed")).collect()
    })
}

fn frame(sid: &str, seq: u64, data: &[u8]) -> RelayOp {
    RelayOp::Frame { session_id: sid.into(), seq, ts: "t".into(), kind: "output", data: data.to_vec() }
}

fn gap_frames_and_byte_capped_reads(fresh: &dyn Fn() -> Store) {
    let (s, w, p) = paired_store(fresh());
    let rt = &p.runtime_target_id;
    let a = ulid::Ulid::new().to_string();
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

fn relay_batches_store_in_order_ack_duplicates_and_retention_deletes(fresh: &dyn Fn() -> Store) {
    let (s, w, p) = paired_store(fresh());
    let rt = &p.runtime_target_id;
    let (a, b) = (ulid::Ulid::new().to_string(), ulid::Ulid::new().to_string());
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

fn expired_codes_cannot_be_approved(fresh: &dyn Fn() -> Store) {
    let s = fresh();
    let u = s.create_user("a@example.com", "h", 0).unwrap();
    let w = s.create_workspace("One", "one", 0).unwrap();
    s.add_member(&w.id, &u.id, 0).unwrap();
    s.insert_device_code("BCDFGHJK", b"h", &machine(), None, 0, 900).unwrap();
    assert!(matches!(s.approve_code("BCDFGHJK", &w.id, &u.id, &Actor::cli(), 900), Err(StoreError::Gone(_))));
    let stranger = s.create_user("b@example.com", "h", 0).unwrap();
    assert!(matches!(s.approve_code("BCDFGHJK", &w.id, &stranger.id, &Actor::cli(), 1), Err(StoreError::Forbidden(_))));
}

/// Two handles (instances) store the same frames of one session at once: each seq is stored
/// once, both batches are acked to the end, and nothing is out of order.
fn two_instances_racing_on_one_session_store_each_frame_once(fresh: &dyn Fn() -> Store) {
    let (a, w, p) = paired_store(fresh());
    let b = fresh();
    let sid = ulid::Ulid::new().to_string();
    let start = RelayOp::Start { session_id: sid.clone(), agent: "x".into(), directory: "d".into(), started_at: 5 };
    a.relay_store_batch(&w.id, &p.runtime_target_id, &p.machine_id, &[start], StoredQuota::UNLIMITED, 10).unwrap();
    let ops: Vec<RelayOp> = (1..=200).map(|seq| frame(&sid, seq, format!("frame {seq}").as_bytes())).collect();
    let run = |s: Store, ops: Vec<RelayOp>, w: Workspace, p: Pairing| {
        std::thread::spawn(move || {
            let mut acked = 0;
            for chunk in ops.chunks(20) {
                let out = s.relay_store_batch(&w.id, &p.runtime_target_id, &p.machine_id, chunk, StoredQuota::UNLIMITED, 10).unwrap();
                assert!(out.violation.is_none(), "{:?}", out.violation);
                acked = out.acks.iter().map(|(_, n)| *n).max().unwrap_or(acked);
            }
            acked
        })
    };
    let t1 = run(a.clone(), ops.clone(), w.clone(), p.clone());
    let t2 = run(b, ops, w.clone(), p.clone());
    assert_eq!((t1.join().unwrap(), t2.join().unwrap()), (200, 200));
    let frames = a.session_frames(&sid, 0, None, 1000).unwrap();
    assert_eq!(frames.iter().map(|f| f.seq).collect::<Vec<_>>(), (1..=200).collect::<Vec<_>>());
    assert!(frames.iter().all(|f| f.data == format!("frame {}", f.seq).into_bytes()));
    let row = a.session(Some(&w.id), &sid).unwrap().unwrap();
    assert_eq!((row.last_seq, row.frame_count), (200, 200));
}

/// Many machines of one org, each through a handle of its own (connections spread over
/// instances), start sessions and store frames at once, each new session checking the org's
/// stored quota: none fails or even delays another's batch (no write runs twice). Under
/// `SERIALIZABLE` they did: the quota's sums over the org's sessions conflict with every
/// other session's insert, and 300 sessions starting at once exhausted the retries. Frames
/// are stored under row locks instead.
fn many_machines_starting_sessions_at_once_never_fail_each_other(fresh: &dyn Fn() -> Store) {
    const MACHINES: usize = 24;
    let (s, w, pairings) = org_with_machines(fresh(), MACHINES);
    // Large enough never to refuse, small enough that every new session sums the org's bytes.
    let quota = StoredQuota { machine_bytes: 1 << 40, org_bytes: 1 << 40 };
    let retries: u64 = at_once(fresh, pairings, |store, p| {
        for _ in 0..8 {
            let sid = ulid::Ulid::new().to_string();
            let mut ops = vec![RelayOp::Start { session_id: sid.clone(), agent: "x".into(), directory: "d".into(), started_at: 5 }];
            ops.extend((1..=5).map(|seq| frame(&sid, seq, b"output")));
            let out = store.relay_store_batch(&w.id, &p.runtime_target_id, &p.machine_id, &ops, quota, 10).unwrap();
            assert!(out.violation.is_none() && out.refused.is_empty(), "{:?} {:?}", out.violation, out.refused);
            assert_eq!(out.acks, [(sid, 5)]);
        }
        store.write_retries()
    })
    .into_iter()
    .sum();
    assert_eq!(retries, 0, "no machine's batch lost a race to another's (they lock different rows)");
    let sessions = s.sessions(&w.id).unwrap();
    assert_eq!(sessions.len(), MACHINES * 8);
    assert!(sessions.iter().all(|r| r.last_seq == 5 && r.frame_count == 5));
}

/// An org's stored quota is checked as sessions start: with room for one session, 12
/// sessions starting at once on 12 machines (through handles of their own) store one, and
/// the other 11 are refused, however they interleave.
fn the_stored_quota_holds_when_sessions_start_together(fresh: &dyn Fn() -> Store) {
    const MACHINES: usize = 12;
    let (s, w, pairings) = org_with_machines(fresh(), MACHINES);
    let quota = StoredQuota { machine_bytes: 1 << 40, org_bytes: 1000 };
    let refused: usize = at_once(fresh, pairings, |store, p| {
        let sid = ulid::Ulid::new().to_string();
        let ops =
            [RelayOp::Start { session_id: sid.clone(), agent: "x".into(), directory: "d".into(), started_at: 5 }, frame(&sid, 1, &[b'x'; 1000])];
        store.relay_store_batch(&w.id, &p.runtime_target_id, &p.machine_id, &ops, quota, 10).unwrap().refused.len()
    })
    .into_iter()
    .sum();
    assert_eq!(refused, MACHINES - 1, "one session fits the quota, and only one was let in");
    assert_eq!(s.sessions(&w.id).unwrap().len(), 1);
}

/// Roles, the audit log and signing keys read the same on both databases.
fn roles_audit_and_keys_agree(fresh: &dyn Fn() -> Store) {
    let s = fresh();
    let w = s.create_workspace("One", "one", 0).unwrap();
    let o = s.create_user("o@example.com", "h", 0).unwrap();
    let m = s.create_user("m@example.com", "h", 0).unwrap();
    assert!(s.add_member(&w.id, &o.id, 1).unwrap());
    assert!(s.add_member(&w.id, &m.id, 2).unwrap());
    assert_eq!(s.role_of(&w.id, &o.id).unwrap(), Some(Role::Owner));
    assert!(matches!(s.set_role(&w.id, &o.id, Role::Member, &Actor::cli(), 3), Err(StoreError::Conflict(_))), "the last owner stays");
    assert!(matches!(s.create_workspace("Again", "one", 4), Err(StoreError::Conflict(_))));
    assert!(matches!(s.create_user("o@example.com", "h", 4), Err(StoreError::Conflict(_))));
    let log = s.audit_log(&w.id, 10).unwrap();
    assert_eq!(log.iter().map(|e| e.action.as_str()).collect::<Vec<_>>(), ["member.added", "member.added", "org.created"]);
    assert!(log.windows(2).all(|p| p[0].id > p[1].id), "newest first");
    let members = s.members(&w.id).unwrap();
    assert_eq!(members.iter().map(|m| m.email.as_str()).collect::<Vec<_>>(), ["o@example.com", "m@example.com"]);
    // Keys: one signs; after a rotation the old one still verifies, then is forgotten.
    let k1 = viewport_server::keys::new_key_row(100).unwrap();
    let first = s.ensure_signing_key(&k1, 100).unwrap();
    assert_eq!(first.kid, k1.kid);
    assert_eq!(s.ensure_signing_key(&viewport_server::keys::new_key_row(101).unwrap(), 101).unwrap().kid, k1.kid, "one key at first start");
    let k2 = viewport_server::keys::new_key_row(200).unwrap();
    s.rotate_signing_key(&k2, 200, 1000).unwrap();
    assert_eq!(s.signing_key().unwrap().unwrap().kid, k2.kid);
    let valid: Vec<String> = s.signing_keys(300, 660).unwrap().into_iter().map(|k| k.kid).collect();
    assert_eq!(valid, [k2.kid.clone(), k1.kid.clone()]);
    assert_eq!(s.signing_keys(900, 660).unwrap().len(), 1, "retired past the token lifetime");
    let bytes = vec![7u8; 3000];
    assert_eq!(s.user_by_email("m@example.com").unwrap().unwrap().0.id, m.id);
    s.create_web_session(&bytes[..32], &m.id, 10, 20).unwrap();
    assert_eq!(s.web_session_user(&bytes[..32], 15).unwrap().unwrap().id, m.id);
    assert!(s.web_session_user(&bytes[..32], 25).unwrap().is_none());
}

/// Rate-limit counters: every handle adds to the same count.
fn counters_are_shared_by_every_handle(fresh: &dyn Fn() -> Store) {
    let a = fresh();
    let b = fresh();
    assert_eq!(a.count_add("k", 60, 1, 0).unwrap(), 1);
    assert_eq!(b.count_add("k", 60, 2, 0).unwrap(), 3);
    assert_eq!(a.count_of("k", 60).unwrap(), 3);
    assert_eq!(a.count_of("k", 120).unwrap(), 0, "another window");
}

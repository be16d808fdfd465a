//! The unacked messages of one pairing (SPEC section 9): kept until the relay acks them,
//! resent from the relay's resume point after a reconnect, bounded in bytes. When the bound
//! is exceeded the oldest frames of a session give way to one `gap` frame covering them, so
//! loss is always visible. Pure data structure: no I/O, no clock.

use std::collections::{BTreeMap, VecDeque};
use vpd_proto::limits;
use vpd_proto::relay::{DaemonMsg, FrameKind};

/// 16 MiB per pairing by default.
pub const DEFAULT_LIMIT: usize = 16 * 1024 * 1024;

#[derive(Debug)]
struct Entry {
    msg: DaemonMsg,
    size: usize,
    /// Already the cut-down form of a refused message.
    cut_down: bool,
}

/// What became of a message the relay refused (SPEC amendment A2): never the same message
/// again.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Refusal {
    /// Replaced by its cut-down form — a `session_start` with an ASCII-only agent and
    /// directory, a `session_end` without a reason, a gap in place of a frame — and these
    /// are the messages to send now, in order: it and the session's later ones.
    Replaced { resend: Vec<DaemonMsg> },
    /// The cut-down form was refused too: the session's `dropped` messages are forgotten,
    /// and it stops streaming.
    Dropped { dropped: usize },
}

/// `s` with only printable ASCII, others as `_`, at most `max` bytes.
fn ascii_only(s: &str, max: usize) -> String {
    s.chars().map(|c| if c.is_ascii_graphic() || c == ' ' { c } else { '_' }).take(max).collect()
}

#[derive(Debug)]
pub struct Outbox {
    queue: VecDeque<Entry>,
    bytes: usize,
    limit: usize,
    /// Frames dropped for overflow, per session.
    pub dropped: u64,
}

fn size_of(msg: &DaemonMsg) -> usize {
    match msg {
        DaemonMsg::Frame { data, session_id, ts, .. } => data.len() + session_id.len() + ts.len() + 64,
        DaemonMsg::SessionStart { agent, directory, .. } => agent.len() + directory.len() + 96,
        _ => 96,
    }
}

impl Outbox {
    pub fn new(limit: usize) -> Self {
        Self { queue: VecDeque::new(), bytes: 0, limit, dropped: 0 }
    }

    pub fn queued_bytes(&self) -> usize {
        self.bytes
    }

    /// Whether more than three quarters of the bound is in use: while the relay is
    /// connected, the bridge then waits for acks before taking more (back-pressure), so
    /// frames are dropped only while the relay cannot be reached.
    pub fn is_filling(&self) -> bool {
        self.bytes > self.limit / 4 * 3
    }
    pub fn len(&self) -> usize {
        self.queue.len()
    }
    pub fn is_empty(&self) -> bool {
        self.queue.is_empty()
    }

    /// Takes every queued message, oldest first, leaving the outbox empty (a planned restart
    /// keeps them in the home, and the next daemon queues them again).
    pub fn drain(&mut self) -> Vec<DaemonMsg> {
        self.bytes = 0;
        self.queue.drain(..).map(|e| e.msg).collect()
    }

    /// Queues a message; makes room by turning the oldest frames into gap frames.
    pub fn push(&mut self, msg: DaemonMsg) {
        let size = size_of(&msg);
        self.queue.push_back(Entry { msg, size, cut_down: false });
        self.bytes += size;
        while self.bytes > self.limit && self.evict_oldest_frames() {}
    }

    /// Drops the oldest run of frames of one session (never a start or an end) and puts one
    /// gap frame in their place; a gap at the start of the run is merged, so each hole has
    /// one gap. Returns false when nothing can be dropped.
    fn evict_oldest_frames(&mut self) -> bool {
        // The first run (oldest first) that holds at least one plain frame: a leading gap
        // followed by another session's message must not stop eviction for good.
        let mut start = 0;
        while let Some(first) = (start..self.queue.len()).find(|&i| matches!(self.queue[i].msg, DaemonMsg::Frame { .. })) {
            match self.evict_run(first) {
                Ok(()) => return true,
                Err(next) => start = next,
            }
        }
        false
    }

    /// Replaces the run of one session's frames starting at `first` by one gap, or returns
    /// where to look next when that run has no plain frame.
    fn evict_run(&mut self, first: usize) -> Result<(), usize> {
        let DaemonMsg::Frame { session_id, ts, .. } = self.queue[first].msg.clone() else { unreachable!() };
        let target = self.limit - self.limit / 8;
        let (mut from, mut to) = (0u64, 0u64);
        let mut end = first;
        let mut freed = 0;
        let mut plain = 0;
        while end < self.queue.len() && (self.bytes - freed > target || plain == 0) {
            let (s, lo, hi, is_gap) = match &self.queue[end].msg {
                DaemonMsg::Frame { session_id: s, seq, kind: FrameKind::Gap, data, .. } => (s, gap_range(data).0, *seq, true),
                DaemonMsg::Frame { session_id: s, seq, .. } => (s, *seq, *seq, false),
                _ => break,
            };
            if *s != session_id || (end > first && lo != to + 1) {
                break;
            }
            if end == first {
                from = lo;
            }
            to = hi;
            plain += usize::from(!is_gap);
            freed += self.queue[end].size;
            end += 1;
        }
        if plain == 0 {
            return Err(end.max(first + 1));
        }
        self.dropped += plain as u64;
        for e in self.queue.drain(first..end) {
            self.bytes -= e.size;
        }
        let gap = DaemonMsg::Frame { session_id, seq: to, ts, kind: FrameKind::Gap, data: encode_gap(from, to) };
        let size = size_of(&gap);
        self.bytes += size;
        self.queue.insert(first, Entry { msg: gap, size, cut_down: true });
        Ok(())
    }

    /// The relay stored everything of `session_id` up to `seq`.
    pub fn ack(&mut self, session_id: &str, seq: u64) {
        let mut freed = 0;
        self.queue.retain(|e| match e.msg.position() {
            Some((s, q)) if s == session_id && q <= seq => {
                freed += e.size;
                false
            }
            _ => true,
        });
        self.bytes -= freed;
    }

    /// After `ready`: forget what the relay already has, and return what to send, in order.
    /// A gap that overlaps what the relay stored is trimmed to start right after it.
    pub fn resume(&mut self, stored: &BTreeMap<String, u64>) -> Vec<DaemonMsg> {
        for (s, q) in stored {
            self.ack(s, *q);
            for e in self.queue.iter_mut() {
                if let DaemonMsg::Frame { session_id, kind: FrameKind::Gap, data, .. } = &mut e.msg {
                    let (from, to) = gap_range(data);
                    if session_id == s && from <= *q && *q < to {
                        *data = encode_gap(*q + 1, to);
                    }
                }
            }
        }
        self.queue.iter().map(|e| e.msg.clone()).collect()
    }

    /// What was queued but not sent yet, in order, at most about `max_bytes` (at least one
    /// message): while the relay throttles, the bridge queues without sending, then sends
    /// this in chunks. `sent` gives the highest seq sent of a session (`None`: nothing of it
    /// was sent). A gap that starts at or before what was sent — frames on the wire merged
    /// into it when the buffer was full — is sent trimmed to start right after it; the queued
    /// gap itself keeps its range, because the relay may not have stored what was sent (a
    /// reconnect resumes from what it stored, see [`Outbox::resume`]).
    pub fn unsent(&self, sent: impl Fn(&str) -> Option<u64>, max_bytes: usize) -> Vec<DaemonMsg> {
        let mut out = Vec::new();
        let mut bytes = 0;
        for e in &self.queue {
            let Some((session, seq)) = e.msg.position() else { continue };
            let top = sent(session);
            if top.is_some_and(|t| seq <= t) {
                continue;
            }
            if !out.is_empty() && bytes + e.size > max_bytes {
                break;
            }
            bytes += e.size;
            let mut msg = e.msg.clone();
            if let (Some(t), DaemonMsg::Frame { kind: FrameKind::Gap, data, .. }) = (top, &mut msg) {
                let (from, to) = gap_range(data);
                if from <= t {
                    *data = encode_gap(t + 1, to);
                }
            }
            out.push(msg);
        }
        out
    }

    /// Drops everything of a session (revocation cuts it: unsent frames go nowhere else).
    pub fn drop_session(&mut self, session_id: &str) {
        let mut freed = 0;
        self.queue.retain(|e| match e.msg.position() {
            Some((s, _)) if s == session_id => {
                freed += e.size;
                false
            }
            _ => true,
        });
        self.bytes -= freed;
    }

    /// The relay refused message `seq` of `session_id` (`None` when it is not here, e.g.
    /// already acked). See [`Refusal`].
    pub fn refused(&mut self, session_id: &str, seq: u64) -> Option<Refusal> {
        // The message itself, or the overflow gap it was merged into since.
        let covers = |m: &DaemonMsg| match m {
            DaemonMsg::Frame { session_id: s, kind: FrameKind::Gap, data, seq: to, .. } => s == session_id && gap_range(data).0 <= seq && seq <= *to,
            _ => false,
        };
        let i = self.queue.iter().position(|e| e.msg.position() == Some((session_id, seq)) || covers(&e.msg))?;
        let resend_from = |q: &VecDeque<Entry>, i: usize| -> Vec<DaemonMsg> {
            q.iter().skip(i).filter(|e| e.msg.position().is_some_and(|(s, _)| s == session_id)).map(|e| e.msg.clone()).collect()
        };
        if self.queue[i].msg.position() != Some((session_id, seq)) {
            // Already a gap that covers it: sending that gap is the replacement.
            return Some(Refusal::Replaced { resend: resend_from(&self.queue, i) });
        }
        let e = &mut self.queue[i];
        if e.cut_down {
            let before = self.queue.len();
            self.drop_session(session_id);
            return Some(Refusal::Dropped { dropped: before - self.queue.len() });
        }
        e.msg = match std::mem::replace(&mut e.msg, DaemonMsg::Proof { signature: String::new() }) {
            DaemonMsg::SessionStart { session_id, agent, directory, started_at } => DaemonMsg::SessionStart {
                session_id,
                agent: ascii_only(&agent, 64),
                directory: ascii_only(&directory, 255),
                started_at: ascii_only(&started_at, limits::TS),
            },
            DaemonMsg::Frame { session_id, seq, ts, .. } => {
                DaemonMsg::Frame { session_id, seq, ts: ascii_only(&ts, limits::TS), kind: FrameKind::Gap, data: encode_gap(seq, seq) }
            }
            DaemonMsg::SessionEnd { session_id, seq, exit_code, .. } => DaemonMsg::SessionEnd { session_id, seq, reason: String::new(), exit_code },
            proof @ DaemonMsg::Proof { .. } => proof,
        };
        e.cut_down = true;
        let size = size_of(&e.msg);
        self.bytes = self.bytes - e.size + size;
        e.size = size;
        Some(Refusal::Replaced { resend: resend_from(&self.queue, i) })
    }

    /// The oldest message waiting for an ack: after the relay closed the connection as
    /// malformed (4400), the one it stopped at (it acks everything before it first).
    pub fn oldest(&self) -> Option<(String, u64)> {
        self.queue.iter().find_map(|e| e.msg.position().map(|(s, q)| (s.to_string(), q)))
    }

    pub fn clear(&mut self) {
        self.queue.clear();
        self.bytes = 0;
    }
}

/// `data` of a gap frame.
pub fn encode_gap(from: u64, to: u64) -> String {
    use base64::Engine;
    base64::engine::general_purpose::STANDARD.encode(format!("{from}-{to}"))
}

/// The range of a gap frame's `data` (`(0, 0)` when unreadable).
pub fn gap_range(data: &str) -> (u64, u64) {
    use base64::Engine;
    let text = base64::engine::general_purpose::STANDARD.decode(data).ok().and_then(|b| String::from_utf8(b).ok()).unwrap_or_default();
    let mut it = text.split('-').map(|n| n.parse::<u64>().unwrap_or(0));
    (it.next().unwrap_or(0), it.next().unwrap_or(0))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unsent_is_what_lies_past_what_was_sent_with_straddling_gaps_trimmed() {
        // A small buffer: frames 1-4 of A were sent, then the relay throttled and 5-40 were
        // queued; the oldest were merged into a gap to make room.
        let mut o = Outbox::new(4096);
        o.push(DaemonMsg::SessionStart { session_id: "A".into(), agent: "a".into(), directory: "d".into(), started_at: "t".into() });
        for i in 1..=40 {
            o.push(frame("A", i, 200));
        }
        o.push(DaemonMsg::SessionStart { session_id: "B".into(), agent: "a".into(), directory: "d".into(), started_at: "t".into() });
        let first_gap = o.queue.iter().find_map(|e| match &e.msg {
            DaemonMsg::Frame { kind: FrameKind::Gap, data, .. } => Some(gap_range(data)),
            _ => None,
        });
        let (from, to) = first_gap.expect("the buffer overflowed into a gap");
        assert!(from <= 4 && to > 4, "the gap covers frames on the wire and queued ones: {from}-{to}");
        let sent = |s: &str| (s == "A").then_some(4);
        let out = o.unsent(sent, usize::MAX);
        let positions: Vec<(String, u64)> = out.iter().filter_map(|m| m.position().map(|(s, q)| (s.to_string(), q))).collect();
        assert!(positions.iter().all(|(s, q)| s == "B" || *q > 4), "{positions:?}");
        assert_eq!(positions.last(), Some(&("B".to_string(), 0)), "a session that sent nothing goes whole");
        match &out[0] {
            DaemonMsg::Frame { kind: FrameKind::Gap, data, seq, .. } => {
                assert_eq!(gap_range(data), (5, *seq), "trimmed to start after what was sent")
            }
            other => panic!("expected the trimmed gap first, got {other:?}"),
        }
        // Asked again with nothing more sent: the same messages; the queued gap kept its
        // range (the relay may not have stored frames 1-4: a reconnect resumes from there).
        assert_eq!(o.unsent(sent, usize::MAX), out);
        assert!(o.queue.iter().any(|e| matches!(&e.msg, DaemonMsg::Frame { kind: FrameKind::Gap, data, .. } if gap_range(data).0 == from)));
        let resent = o.resume(&BTreeMap::from([("A".to_string(), 2)]));
        assert!(
            matches!(&resent[0], DaemonMsg::Frame { kind: FrameKind::Gap, data, .. } if gap_range(data).0 == 3),
            "after a reconnect the gap starts right after what the relay stored: {:?}",
            resent[0]
        );
        // In chunks: at least one message, then about the byte bound.
        assert_eq!(o.unsent(sent, 0).len(), 1);
        assert!(o.unsent(sent, 500).len() < out.len());
    }

    #[test]
    fn a_refused_message_is_cut_down_once_then_its_session_dropped() {
        let mut o = Outbox::new(DEFAULT_LIMIT);
        let start =
            DaemonMsg::SessionStart { session_id: "A".into(), agent: "cl€ude".into(), directory: "api/ünï".into(), started_at: "t".into() };
        o.push(start);
        for i in 1..=3 {
            o.push(frame("A", i, 10));
        }
        o.push(frame("B", 1, 10));
        o.push(DaemonMsg::SessionEnd { session_id: "A".into(), seq: 4, reason: "é".repeat(10), exit_code: Some(0) });
        // The start: ASCII only, resent with the rest of its session (not B's frame).
        let Some(Refusal::Replaced { resend }) = o.refused("A", 0) else { panic!() };
        assert_eq!(resend.len(), 5);
        assert!(matches!(&resend[0], DaemonMsg::SessionStart { agent, directory, .. } if agent == "cl_ude" && directory == "api/_n_"));
        // A frame becomes a gap of its own seq; what follows is resent.
        let Some(Refusal::Replaced { resend }) = o.refused("A", 2) else { panic!() };
        assert_eq!(resend.iter().filter_map(DaemonMsg::position).map(|p| p.1).collect::<Vec<_>>(), vec![2, 3, 4]);
        assert!(matches!(&resend[0], DaemonMsg::Frame { kind: FrameKind::Gap, seq: 2, data, .. } if gap_range(data) == (2, 2)));
        // An end loses its reason.
        let Some(Refusal::Replaced { resend }) = o.refused("A", 4) else { panic!() };
        assert!(matches!(&resend[0], DaemonMsg::SessionEnd { reason, exit_code: Some(0), .. } if reason.is_empty()));
        // Refused again in its cut-down form: the session goes, B stays.
        assert_eq!(o.refused("A", 2), Some(Refusal::Dropped { dropped: 5 }));
        assert_eq!(o.len(), 1);
        assert_eq!(o.oldest(), Some(("B".to_string(), 1)));
        assert_eq!(o.refused("A", 9), None);
        // A refused frame merged into an overflow gap since: the gap is sent again in its place.
        let mut c = Outbox::new(DEFAULT_LIMIT);
        c.push(DaemonMsg::Frame { session_id: "C".into(), seq: 7, ts: "t".into(), kind: FrameKind::Gap, data: encode_gap(3, 7) });
        c.push(frame("C", 8, 10));
        let Some(Refusal::Replaced { resend }) = c.refused("C", 5) else { panic!() };
        assert_eq!(resend.len(), 2);
        assert!(matches!(&resend[0], DaemonMsg::Frame { kind: FrameKind::Gap, seq: 7, .. }));
        let before = o.queued_bytes();
        o.ack("B", 1);
        assert!(o.queued_bytes() < before && o.is_empty() && o.queued_bytes() == 0);
    }

    fn frame(s: &str, seq: u64, n: usize) -> DaemonMsg {
        DaemonMsg::Frame { session_id: s.into(), seq, ts: "t".into(), kind: FrameKind::Output, data: "x".repeat(n) }
    }

    #[test]
    fn ack_and_resume() {
        let mut o = Outbox::new(DEFAULT_LIMIT);
        o.push(DaemonMsg::SessionStart { session_id: "A".into(), agent: "sh".into(), directory: "api".into(), started_at: "t".into() });
        for i in 1..=5 {
            o.push(frame("A", i, 10));
        }
        o.push(frame("B", 1, 10));
        o.ack("A", 2);
        assert_eq!(o.len(), 4);
        let mut stored = BTreeMap::new();
        stored.insert("A".to_string(), 4);
        let again = o.resume(&stored);
        let pos: Vec<_> = again.iter().map(|m| m.position().unwrap()).map(|(s, q)| (s.to_string(), q)).collect();
        assert_eq!(pos, vec![("A".into(), 5), ("B".into(), 1)]);
        o.drop_session("B");
        assert_eq!(o.len(), 1);
        o.ack("A", 5);
        assert!(o.is_empty() && o.queued_bytes() == 0);
    }

    #[test]
    fn eviction_goes_on_past_a_gap_and_other_sessions() {
        let mut o = Outbox::new(20_000);
        o.push(DaemonMsg::SessionStart { session_id: "A".into(), agent: "sh".into(), directory: "a".into(), started_at: "t".into() });
        for i in 1..=30 {
            o.push(frame("A", i, 500));
        }
        o.push(DaemonMsg::SessionEnd { session_id: "A".into(), seq: 31, reason: "exited".into(), exit_code: Some(0) });
        o.push(DaemonMsg::SessionStart { session_id: "B".into(), agent: "sh".into(), directory: "b".into(), started_at: "t".into() });
        for i in 1..=200 {
            o.push(frame("B", i, 500));
            assert!(o.queued_bytes() <= 20_000, "bounded at B{i}: {}", o.queued_bytes());
        }
        let gaps = o.resume(&BTreeMap::new()).iter().filter(|m| matches!(m, DaemonMsg::Frame { kind: FrameKind::Gap, .. })).count();
        assert_eq!(gaps, 2, "one gap per session's hole");
    }

    #[test]
    fn a_gap_overlapping_stored_frames_is_trimmed_on_resume() {
        let mut o = Outbox::new(5_000);
        for i in 1..=40 {
            o.push(frame("A", i, 500));
        }
        let msgs = o.resume(&BTreeMap::new());
        let DaemonMsg::Frame { data, seq: to, .. } = &msgs[0] else { panic!() };
        assert_eq!(gap_range(data), (1, *to));
        // The relay had stored up to 3 (acks lost): the gap now starts at 4.
        let mut stored = BTreeMap::new();
        stored.insert("A".to_string(), 3);
        let msgs = o.resume(&stored);
        let DaemonMsg::Frame { data, .. } = &msgs[0] else { panic!() };
        assert_eq!(gap_range(data), (4, *to));
    }

    #[test]
    fn overflow_becomes_a_visible_gap() {
        let mut o = Outbox::new(10_000);
        o.push(DaemonMsg::SessionStart { session_id: "A".into(), agent: "sh".into(), directory: "api".into(), started_at: "t".into() });
        for i in 1..=100 {
            o.push(frame("A", i, 500));
        }
        assert!(o.queued_bytes() <= 10_000, "{}", o.queued_bytes());
        let msgs = o.resume(&BTreeMap::new());
        assert!(matches!(msgs[0], DaemonMsg::SessionStart { .. }), "the start is kept");
        let DaemonMsg::Frame { kind: FrameKind::Gap, seq, data, .. } = &msgs[1] else { panic!("{:?}", msgs[1]) };
        let (from, to) = gap_range(data);
        assert_eq!((from, to), (1, *seq));
        // What follows the gap continues exactly after it: the relay sees no hole.
        let DaemonMsg::Frame { seq: next, .. } = &msgs[2] else { panic!() };
        assert_eq!(*next, to + 1);
        assert_eq!(msgs.last().unwrap().position().unwrap().1, 100, "the newest frames are kept");
        assert_eq!(o.dropped, to, "every dropped frame is counted");
        // Only one gap per hole, even after more overflow.
        for i in 101..=200 {
            o.push(frame("A", i, 500));
        }
        let msgs = o.resume(&BTreeMap::new());
        let gaps = msgs.iter().filter(|m| matches!(m, DaemonMsg::Frame { kind: FrameKind::Gap, .. })).count();
        assert_eq!(gaps, 1, "{msgs:?}");
        let mut expect = 0;
        for m in &msgs {
            let (_, q) = m.position().unwrap();
            if let DaemonMsg::Frame { kind: FrameKind::Gap, data, .. } = m {
                assert_eq!(gap_range(data).0, expect + 1);
            } else if q != 0 {
                assert_eq!(q, expect + 1, "contiguous");
            }
            expect = q;
        }
    }
}

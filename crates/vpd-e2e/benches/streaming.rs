//! Streaming benchmarks (SPEC section 13) with the real release binaries on loopback:
//! frames/s and ack latency on one pairing, bulk MB/s, reconnect after a relay restart,
//! revoke-to-stop, idle memory of the headless daemon with 3 pairings, `vpd status` with 100
//! pairings and 1,000 sessions, daemon cold start. Run by scripts/bench.sh; prints a table.

#[path = "../../../tests/support/mod.rs"]
mod support;

use base64::Engine;
use serde_json::{json, Value};
use std::io::{BufRead, BufReader, Write};
use std::os::unix::net::UnixStream;
use std::time::{Duration, Instant};
use support::*;

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(|a, b| a.partial_cmp(b).unwrap());
    v[v.len() / 2]
}

fn status(m: &Machine) -> Value {
    m.ok(&["status"])
}

fn pairing_status(m: &Machine, org: &str) -> Value {
    status(m)["pairings"].as_array().unwrap().iter().find(|p| p["workspaceId"] == org).cloned().unwrap_or(Value::Null)
}

fn wait_connected(m: &Machine, org: &str) {
    wait_until("connected", Duration::from_secs(30), || pairing_status(m, org)["state"] == "connected");
}

/// A session stream on the local API, as `vpd run` uses it.
struct Stream {
    w: UnixStream,
    r: BufReader<UnixStream>,
}

impl Stream {
    fn open(m: &Machine, dir: &std::path::Path) -> Stream {
        let s: Value = m.ok(&["session", "start", "--cwd", dir.to_str().unwrap(), "--agent", "bench"]);
        assert_eq!(s["state"], "streaming", "{s}");
        let w = UnixStream::connect(m.home().join("vpd.sock")).unwrap();
        let r = BufReader::new(w.try_clone().unwrap());
        let mut st = Stream { w, r };
        st.line(&json!({"method": "session_stream", "params": {"sessionId": s["sessionId"]}}));
        st
    }
    fn line(&mut self, v: &Value) {
        let mut b = serde_json::to_vec(v).unwrap();
        b.push(b'\n');
        self.w.write_all(&b).unwrap();
    }
    fn end(mut self) {
        self.line(&json!({"end": {"exitCode": 0}}));
        let mut l = String::new();
        self.r.read_line(&mut l).unwrap();
    }
}

fn acked(m: &Machine, org: &str) -> u64 {
    pairing_status(m, org)["framesAcked"].as_u64().unwrap_or(0)
}

fn main() {
    if std::env::args().any(|a| a == "--list") {
        return; // `cargo bench -- --list`
    }
    let mut rows = Rows;
    let port = free_port();
    let server = Server::start_with(port, format!("http://127.0.0.1:{port}"), &["--pairing-rate-per-minute", "1000"]);
    server.user("alice@example.com");
    let acme = server.org("Acme Engineering", "acme");
    server.member("acme", "alice@example.com");
    let m = Machine::new();
    m.pair(&server, &acme, "alice@example.com");
    let dir = m.mkdir("api");
    m.ok(&["bind", dir.to_str().unwrap(), "--org", "acme"]);
    wait_connected(&m, &acme);
    let b64 = base64::engine::general_purpose::STANDARD;
    let payload = b64.encode([b'x'; 256]);

    // 1. Throughput: 100,000 frames of 256 bytes as fast as the local API takes them, until
    //    the relay has stored and acked the last one.
    let n = 100_000u64;
    let before = acked(&m, &acme);
    let mut s = Stream::open(&m, &dir);
    let t0 = Instant::now();
    let line = serde_json::to_vec(&json!({"kind": "output", "data": payload})).unwrap();
    let mut buf = Vec::with_capacity(line.len() * 1000 + 1000);
    for i in 0..n {
        buf.extend_from_slice(&line);
        buf.push(b'\n');
        if i % 1000 == 999 {
            s.w.write_all(&buf).unwrap();
            buf.clear();
        }
    }
    s.w.write_all(&buf).unwrap();
    wait_until("all frames acked", Duration::from_secs(300), || acked(&m, &acme) > before + n);
    let secs = t0.elapsed().as_secs_f64();
    s.end();
    rows.push((
        "frames daemon → relay → stored → acked, 256 B, one pairing".into(),
        format!("{:.0} frames/s ({n} in {secs:.2} s)", n as f64 / secs),
        "≥ 50,000/s".into(),
    ));

    // 2. Latency at 1,000 frames/s (5,000 frames; the daemon keeps the last 4,096 send→ack times).
    let mut s = Stream::open(&m, &dir);
    let start = Instant::now();
    for i in 0..5000u32 {
        let due = start + Duration::from_micros(1000 * i as u64);
        if let Some(wait) = due.checked_duration_since(Instant::now()) {
            std::thread::sleep(wait);
        }
        s.w.write_all(&line).unwrap();
        s.w.write_all(b"\n").unwrap();
    }
    std::thread::sleep(Duration::from_millis(500));
    s.end();
    let p = pairing_status(&m, &acme);
    rows.push((
        "ack latency at 1,000 frames/s (send → stored → ack)".into(),
        format!("p50 {:.2} ms, p99 {:.2} ms", p["ackLatencyP50Ms"].as_f64().unwrap_or(f64::NAN), p["ackLatencyP99Ms"].as_f64().unwrap_or(f64::NAN)),
        "p99 ≤ 5 ms".into(),
    ));

    // 3. Bulk: 400 frames of 64 KiB.
    let big = serde_json::to_vec(&json!({"kind": "output", "data": b64.encode(vec![b'y'; 64 * 1024])})).unwrap();
    let before = acked(&m, &acme);
    let mut s = Stream::open(&m, &dir);
    let t0 = Instant::now();
    for _ in 0..400 {
        s.w.write_all(&big).unwrap();
        s.w.write_all(b"\n").unwrap();
    }
    wait_until("bulk acked", Duration::from_secs(300), || acked(&m, &acme) > before + 400);
    let secs = t0.elapsed().as_secs_f64();
    s.end();
    rows.push(("bulk output, 64 KiB frames".into(), format!("{:.1} MB/s", 400.0 * 65536.0 / secs / 1e6), "—".into()));

    // 4. Reconnect after a relay restart: from the relay answering again to connected.
    let mut server = server;
    let mut samples = Vec::new();
    for _ in 0..5 {
        server.restart(); // returns once the server answers
        let t0 = Instant::now();
        wait_until("reconnected", Duration::from_secs(30), || pairing_status(&m, &acme)["state"] == "connected");
        samples.push(t0.elapsed().as_secs_f64());
    }
    rows.push((
        "relay restart → binding connected again".into(),
        format!("median {:.2} s, max {:.2} s (5 restarts)", median(samples.clone()), samples.iter().cloned().fold(0.0, f64::max)),
        "≤ 2 s".into(),
    ));

    // 5. Revoke on the platform → remote streaming stopped (pairing removed by the daemon).
    let mut page = Vec::new();
    let mut cli = Vec::new();
    server.user("bob@example.com");
    server.member("acme", "bob@example.com");
    for round in 0..6 {
        let mm = Machine::new();
        mm.pair(&server, &acme, "bob@example.com");
        wait_connected(&mm, &acme);
        let machine = mm.pairing(&acme)["machineId"].as_str().unwrap().to_string();
        let t0 = Instant::now();
        if round % 2 == 0 {
            let web = server.web_login("bob@example.com");
            web.post("/orgs/acme/machines", "/orgs/acme/machines/revoke", &[("machine_id", &machine)]);
        } else {
            server.admin(&["machine", "revoke", "--org", "acme", &machine]);
        }
        wait_until("revoked", Duration::from_secs(10), || mm.pairing_count() == 0);
        if round % 2 == 0 {
            page.push(t0.elapsed().as_secs_f64())
        } else {
            cli.push(t0.elapsed().as_secs_f64())
        }
    }
    rows.push((
        "revoke → remote streaming stopped".into(),
        format!("Machines page: median {:.0} ms; admin CLI: median {:.0} ms", median(page) * 1000.0, median(cli) * 1000.0),
        "≤ 1 s".into(),
    ));

    // 6. Idle headless daemon with 3 pairings connected.
    let idle = Machine::new();
    let orgs: Vec<String> = (0..3).map(|i| server.org(&format!("Idle {i}"), &format!("idle{i}"))).collect();
    for (i, o) in orgs.iter().enumerate() {
        server.member(&format!("idle{i}"), "alice@example.com");
        idle.pair(&server, o, "alice@example.com");
    }
    for o in &orgs {
        wait_connected(&idle, o);
    }
    std::thread::sleep(Duration::from_secs(3));
    let pid = idle.daemon_pid().unwrap();
    let proc_status = || std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let field = |s: &str, k: &str| -> u64 {
        s.lines().find(|l| l.starts_with(k)).and_then(|l| l.split_whitespace().nth(1)).and_then(|v| v.parse().ok()).unwrap_or(0)
    };
    // Wake-ups: context switches summed over every thread of the daemon.
    let ctx_all = || -> std::collections::HashMap<String, u64> {
        std::fs::read_dir(format!("/proc/{pid}/task"))
            .unwrap()
            .flatten()
            .map(|t| {
                let s = std::fs::read_to_string(t.path().join("status")).unwrap_or_default();
                (t.file_name().to_string_lossy().into_owned(), field(&s, "voluntary_ctxt_switches:") + field(&s, "nonvoluntary_ctxt_switches:"))
            })
            .collect()
    };
    let c0 = ctx_all();
    std::thread::sleep(Duration::from_secs(10));
    let after = ctx_all();
    // Threads that exited in between are not counted; new ones count from zero.
    let wakeups: u64 = after.iter().map(|(tid, n)| n.saturating_sub(*c0.get(tid).unwrap_or(&0))).sum();
    let s1 = proc_status();
    let cpu = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap();
    let f: Vec<&str> = cpu.split_whitespace().collect();
    rows.push((
        "headless daemon, 3 pairings connected, idle".into(),
        format!(
            "RSS {:.1} MB; {} wake-ups in 10 s over {} threads; CPU so far {} ticks",
            field(&s1, "VmRSS:") as f64 / 1024.0,
            wakeups,
            field(&s1, "Threads:"),
            f[13].parse::<u64>().unwrap_or(0) + f[14].parse::<u64>().unwrap_or(0)
        ),
        "≤ 15 MB, no busy wake-ups".into(),
    ));

    // 7. One daemon with 100 pairings and 1,000 sessions: `vpd status`, whole process.
    let big_m = Machine::new();
    for i in 0..100 {
        let slug = format!("many{i}");
        let o = server.org(&format!("Many {i}"), &slug);
        server.member(&slug, "alice@example.com");
        let code = server.admin(&["pairing", "mint", "--org", &slug, "--user", "alice@example.com"])["code"].as_str().unwrap().to_string();
        let done = big_m.ok(&["pair", &code, "--server", &server.url, "--no-browser"]);
        assert_eq!(done["workspaceId"], o.as_str());
    }
    let d = big_m.mkdir("w");
    big_m.ok(&["bind", d.to_str().unwrap(), "--org", "many0"]);
    for _ in 0..1000 {
        let mut c = UnixStream::connect(big_m.home().join("vpd.sock")).unwrap();
        writeln!(c, "{}", json!({"method": "session_start", "params": {"cwd": d, "agent": "bench"}})).unwrap();
        let mut l = String::new();
        BufReader::new(c).read_line(&mut l).unwrap();
    }
    let mut times = Vec::new();
    for _ in 0..30 {
        let t0 = Instant::now();
        let out = big_m.vpd(&["status"]);
        times.push(t0.elapsed().as_secs_f64() * 1000.0);
        assert!(out.status.success());
    }
    let st = big_m.ok(&["status"]);
    rows.push((
        format!(
            "`vpd status`, 100 pairings, 1,000 sessions ({} pairings connected)",
            st["pairings"].as_array().unwrap().iter().filter(|p| p["state"] == "connected").count()
        ),
        format!("median {:.1} ms (30 runs, whole process)", median(times)),
        "≤ 20 ms".into(),
    ));
    let pid = big_m.daemon_pid().unwrap();
    let s = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    rows.push(("daemon RSS with 100 pairings, 1,000 sessions".into(), format!("{:.1} MB", field(&s, "VmRSS:") as f64 / 1024.0), "—".into()));

    // 8. `vpd status` with 1 pairing, and daemon cold start to the API answering.
    let mut times = Vec::new();
    for _ in 0..50 {
        let t0 = Instant::now();
        m.vpd(&["status"]);
        times.push(t0.elapsed().as_secs_f64() * 1000.0);
    }
    rows.push(("`vpd status`, whole CLI process against a running daemon".into(), format!("median {:.1} ms", median(times)), "≤ 20 ms".into()));
    let mut cold = Vec::new();
    for _ in 0..10 {
        m.ok(&["daemon", "stop"]);
        let t0 = Instant::now();
        let mut child = m.command().arg("daemon").stderr(std::process::Stdio::null()).spawn().unwrap();
        wait_until("the API", Duration::from_secs(10), || {
            UnixStream::connect(m.home().join("vpd.sock"))
                .and_then(|mut c| {
                    writeln!(c, "{{\"method\":\"ping\"}}")?;
                    let mut l = String::new();
                    BufReader::new(c).read_line(&mut l)?;
                    Ok(l.contains("pid"))
                })
                .unwrap_or(false)
        });
        cold.push(t0.elapsed().as_secs_f64() * 1000.0);
        unsafe { libc::kill(child.id() as i32, libc::SIGTERM) };
        let _ = child.wait();
    }
    rows.push(("daemon cold start → local API answering".into(), format!("median {:.1} ms", median(cold)), "≤ 100 ms".into()));
}

/// Prints each result as soon as it is measured.
struct Rows;

impl Rows {
    fn push(&mut self, (what, result, target): (String, String, String)) {
        use std::sync::Once;
        static HEADER: Once = Once::new();
        HEADER.call_once(|| println!("\n| what | result | target |\n|---|---|---|"));
        println!("| {what} | {result} | {target} |");
    }
}

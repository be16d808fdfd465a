//! `vpd logs [--follow] [--since]`: the daemon's log files in `{home}/logs/`, oldest first.

use crate::output::Out;
use std::io::{BufRead, BufReader, Seek, SeekFrom};
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;
use vpd_daemon::{Error, ErrorCode, Home};

fn files(home: &Home) -> Vec<PathBuf> {
    let mut v: Vec<PathBuf> = std::fs::read_dir(home.logs())
        .map(|d| d.flatten().map(|e| e.path()).filter(|p| p.file_name().is_some_and(|n| n.to_string_lossy().starts_with("vpd"))).collect())
        .unwrap_or_default();
    v.sort();
    v
}

fn parse_since(s: &str) -> Result<jiff::Timestamp, Error> {
    let bad = || Error::new(ErrorCode::InvalidArgument, format!("--since {s:?}: use a duration like 30m, 2h or 1d, or an RFC 3339 time"));
    if let Ok(t) = s.parse::<jiff::Timestamp>() {
        return Ok(t);
    }
    let (num, unit) = s.split_at(s.find(|c: char| !c.is_ascii_digit()).ok_or_else(bad)?);
    let n: i64 = num.parse().map_err(|_| bad())?;
    let secs = match unit {
        "s" => n,
        "m" => n * 60,
        "h" => n * 3600,
        "d" => n * 86400,
        _ => return Err(bad()),
    };
    jiff::Timestamp::now().checked_sub(jiff::SignedDuration::from_secs(secs)).map_err(|_| bad())
}

/// Lines start with the RFC 3339 time tracing writes; keep a line without one (a
/// continuation) if the previous line was kept.
fn keep(line: &str, since: Option<jiff::Timestamp>, last: &mut bool) -> bool {
    let Some(since) = since else { return true };
    if let Some(ts) = line.split_whitespace().next().and_then(|w| w.parse::<jiff::Timestamp>().ok()) {
        *last = ts >= since;
    }
    *last
}

pub fn logs(home: &Home, follow: bool, since: Option<String>, out: &Out) -> Result<ExitCode, Error> {
    let since = since.as_deref().map(parse_since).transpose()?;
    let list = files(home);
    if list.is_empty() && !follow {
        let msg = format!("no logs yet in {}", home.logs().display());
        out.emit(&serde_json::json!({"lines": [], "message": msg}), || msg.clone());
        return Ok(ExitCode::SUCCESS);
    }
    let mut kept = Vec::new();
    let mut last = false;
    for f in &list {
        let Ok(file) = std::fs::File::open(f) else { continue };
        for line in BufReader::new(file).lines().map_while(Result::ok) {
            if keep(&line, since, &mut last) {
                if out.json {
                    kept.push(line);
                } else {
                    println!("{line}");
                }
            }
        }
    }
    if out.json && !follow {
        out.json(&serde_json::json!({"files": list, "lines": kept}));
        return Ok(ExitCode::SUCCESS);
    }
    if follow {
        // Follow the newest file, moving on when the daily rotation starts another.
        let mut current = list.last().cloned();
        let mut pos = current.as_ref().and_then(|f| std::fs::metadata(f).ok()).map(|m| m.len()).unwrap_or(0);
        loop {
            std::thread::sleep(Duration::from_millis(250));
            let newest = files(home).last().cloned();
            if newest != current {
                current = newest;
                pos = 0;
            }
            let Some(f) = &current else { continue };
            let Ok(mut file) = std::fs::File::open(f) else { continue };
            if file.seek(SeekFrom::Start(pos)).is_err() {
                continue;
            }
            let mut reader = BufReader::new(file);
            let mut line = String::new();
            while reader.read_line(&mut line).unwrap_or(0) > 0 {
                if !line.ends_with('\n') {
                    break;
                }
                pos += line.len() as u64;
                let l = line.trim_end();
                if out.json {
                    out.json(&serde_json::json!({"line": l}));
                } else {
                    println!("{l}");
                }
                line.clear();
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}

//! The two per-directory files.
//!
//! `local.yaml` (written by `vpd bind`, gitignored) grants streaming; `workspace.yaml`
//! (committed) only hints. Both are untrusted input: size-capped by the reader, parsed here
//! into a small model, unknown keys ignored, anything doubtful reported as an error so that
//! the caller falls back to local-only.

use serde_yaml::Value;
use sha2::{Digest, Sha256};
use vpd_proto::is_ulid;

/// Binding and hint files larger than this are refused unread.
pub const MAX_BINDING_FILE: u64 = 64 * 1024;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Streaming {
    Enabled,
    Disabled,
}

/// A parsed `.viewport/local.yaml`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LocalFile {
    pub org_id: String,
    pub streaming: Streaming,
    pub recursive: bool,
    pub bound_at: Option<String>,
}

/// A parsed `.viewport/workspace.yaml`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WorkspaceHint {
    pub org_id: String,
    pub org_name: Option<String>,
    pub org_slug: Option<String>,
    /// The server's origin, when the file names one (`server:`, SPEC A1), normalised.
    pub server: Option<String>,
}

impl WorkspaceHint {
    /// What to call the org in a message: slug, else name, else id.
    pub fn label(&self) -> &str {
        self.org_slug.as_deref().or(self.org_name.as_deref()).unwrap_or(&self.org_id)
    }
}

/// `sha256:<hex>` of a file's exact bytes: what `directories.json` records.
pub fn file_hash(bytes: &[u8]) -> String {
    let digest = Sha256::digest(bytes);
    let mut s = String::with_capacity(7 + 64);
    s.push_str("sha256:");
    for b in digest {
        s.push(char::from_digit((b >> 4) as u32, 16).unwrap());
        s.push(char::from_digit((b & 15) as u32, 16).unwrap());
    }
    s
}

fn mapping(bytes: &[u8]) -> Result<serde_yaml::Mapping, String> {
    if bytes.len() as u64 > MAX_BINDING_FILE {
        return Err(format!("larger than {} KiB", MAX_BINDING_FILE / 1024));
    }
    let text = std::str::from_utf8(bytes).map_err(|_| "not UTF-8 text".to_string())?;
    // serde_yaml refuses alias expansion past a fixed repetition limit, so an alias bomb is an
    // error here, not an allocation.
    match serde_yaml::from_str::<Value>(text) {
        Ok(Value::Mapping(m)) => Ok(m),
        Ok(Value::Null) => Err("empty file".into()),
        Ok(_) => Err("not a YAML mapping of keys to values".into()),
        Err(e) => Err(format!("not valid YAML: {e}")),
    }
}

fn get<'a>(m: &'a serde_yaml::Mapping, key: &str) -> Option<&'a Value> {
    m.get(Value::String(key.to_string()))
}

fn org_id(m: &serde_yaml::Mapping) -> Result<String, String> {
    // The reference daemon wrote `organization_id`; ours writes `org_id`.
    let v = get(m, "org_id").or_else(|| get(m, "organization_id"));
    match v {
        None => Err("missing org_id".into()),
        Some(Value::String(s)) if is_ulid(s) => Ok(s.clone()),
        Some(Value::String(s)) => Err(format!("org_id {s:?} is not a workspace ULID")),
        Some(_) => Err("org_id must be a string (a workspace ULID)".into()),
    }
}

fn opt_string(m: &serde_yaml::Mapping, key: &str) -> Option<String> {
    match get(m, key) {
        Some(Value::String(s)) if !s.is_empty() && s.len() <= 200 && !s.chars().any(char::is_control) => Some(s.clone()),
        _ => None,
    }
}

/// Parses a `local.yaml`. Any error means: local-only, with this message as the warning.
pub fn parse_local(bytes: &[u8]) -> Result<LocalFile, String> {
    let m = mapping(bytes)?;
    let org_id = org_id(&m)?;
    let streaming = match (get(&m, "streaming"), get(&m, "remote")) {
        (Some(Value::String(s)), _) if s == "enabled" => Streaming::Enabled,
        (Some(Value::String(s)), _) if s == "disabled" => Streaming::Disabled,
        (Some(other), _) => return Err(format!("streaming must be `enabled` or `disabled`, found {}", describe(other))),
        // Reference format: `remote: { stream: true|false }`.
        (None, Some(Value::Mapping(remote))) => match get(remote, "stream") {
            Some(Value::Bool(true)) => Streaming::Enabled,
            Some(Value::Bool(false)) => Streaming::Disabled,
            Some(other) => return Err(format!("remote.stream must be true or false, found {}", describe(other))),
            None => return Err("missing streaming".into()),
        },
        (None, _) => return Err("missing streaming".into()),
    };
    let recursive = match get(&m, "recursive") {
        None | Some(Value::Null) => false,
        Some(Value::Bool(b)) => *b,
        Some(other) => return Err(format!("recursive must be true or false, found {}", describe(other))),
    };
    Ok(LocalFile { org_id, streaming, recursive, bound_at: opt_string(&m, "bound_at") })
}

/// Parses a `workspace.yaml` hint.
pub fn parse_hint(bytes: &[u8]) -> Result<WorkspaceHint, String> {
    let m = mapping(bytes)?;
    let server = match opt_string(&m, "server") {
        Some(s) => Some(crate::origin::server_origin(&s).map_err(|e| format!("server: {e}"))?),
        None => None,
    };
    Ok(WorkspaceHint { org_id: org_id(&m)?, org_name: opt_string(&m, "org_name"), org_slug: opt_string(&m, "org_slug"), server })
}

/// The exact text `vpd bind` writes (SPEC section 7).
pub fn render_local(org_id: &str, bound_at: &str, recursive: bool) -> String {
    let mut s = format!("org_id: {org_id}\nstreaming: enabled\nbound_at: \"{bound_at}\"\n");
    if recursive {
        s.push_str("recursive: true\n");
    }
    s
}

fn describe(v: &Value) -> String {
    match v {
        Value::String(s) => format!("{s:?}"),
        Value::Bool(b) => b.to_string(),
        Value::Number(n) => n.to_string(),
        Value::Null => "nothing".into(),
        Value::Sequence(_) => "a list".into(),
        Value::Mapping(_) => "a mapping".into(),
        Value::Tagged(_) => "a tagged value".into(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    const ORG: &str = "01J7M8N9P0Q1R2S3T4V5V6W7X8";

    #[test]
    fn written_file_parses_back() {
        let text = render_local(ORG, "2026-05-11T14:42:00Z", true);
        let f = parse_local(text.as_bytes()).unwrap();
        assert_eq!(f.org_id, ORG);
        assert_eq!(f.streaming, Streaming::Enabled);
        assert!(f.recursive);
        assert_eq!(f.bound_at.as_deref(), Some("2026-05-11T14:42:00Z"));
        assert!(!parse_local(render_local(ORG, "x", false).as_bytes()).unwrap().recursive);
    }

    #[test]
    fn reference_format_is_read() {
        let f = parse_local(format!("organization_id: {ORG}\nremote:\n  stream: true\n").as_bytes()).unwrap();
        assert_eq!((f.org_id.as_str(), f.streaming), (ORG, Streaming::Enabled));
        let f = parse_local(format!("organization_id: {ORG}\nremote: {{stream: false}}\n").as_bytes()).unwrap();
        assert_eq!(f.streaming, Streaming::Disabled);
    }

    #[test]
    fn doubtful_files_are_errors() {
        let cases: &[(&str, &str)] = &[
            ("", "empty"),
            ("- a\n- b\n", "mapping"),
            ("streaming: enabled\n", "missing org_id"),
            ("org_id: ../../x\nstreaming: enabled\n", "not a workspace ULID"),
            ("org_id: 12\nstreaming: enabled\n", "must be a string"),
            (&format!("org_id: {ORG}\n"), "missing streaming"),
            (&format!("org_id: {ORG}\nstreaming: yes-please\n"), "enabled` or `disabled"),
            (&format!("org_id: {ORG}\nstreaming: true\n"), "found true"),
            (&format!("org_id: {ORG}\nstreaming: enabled\nrecursive: maybe\n"), "recursive"),
            (&format!("org_id: {ORG}\nremote: {{stream: 1}}\n"), "remote.stream"),
            ("org_id: [unclosed\n", "not valid YAML"),
        ];
        for (text, want) in cases {
            let err = parse_local(text.as_bytes()).expect_err(text);
            assert!(err.contains(want), "{text:?}: {err}");
        }
        assert!(parse_local(&[0xff, 0xfe]).unwrap_err().contains("UTF-8"));
    }

    #[test]
    fn unknown_keys_are_ignored() {
        let f = parse_local(format!("org_id: {ORG}\nstreaming: disabled\nfuture: [1,2]\n").as_bytes()).unwrap();
        assert_eq!(f.streaming, Streaming::Disabled);
    }

    #[test]
    fn alias_bomb_is_refused_quickly() {
        let mut s = String::from("a: &a [\"lol\",\"lol\",\"lol\",\"lol\",\"lol\",\"lol\",\"lol\",\"lol\",\"lol\"]\n");
        for i in 1..10 {
            let prev = (b'a' + i - 1) as char;
            let cur = (b'a' + i) as char;
            s.push_str(&format!("{cur}: &{cur} [*{prev},*{prev},*{prev},*{prev},*{prev},*{prev},*{prev},*{prev},*{prev}]\n"));
        }
        s.push_str(&format!("org_id: {ORG}\nstreaming: enabled\n"));
        let err = parse_local(s.as_bytes()).unwrap_err();
        assert!(err.contains("YAML"), "{err}");
    }

    #[test]
    fn oversized_is_refused_unparsed() {
        let big = vec![b'#'; MAX_BINDING_FILE as usize + 1];
        assert!(parse_local(&big).unwrap_err().contains("larger than 64 KiB"));
    }

    #[test]
    fn hint_label_prefers_slug() {
        let h = parse_hint(format!("org_id: {ORG}\norg_name: Acme\norg_slug: acme\n").as_bytes()).unwrap();
        assert_eq!(h.label(), "acme");
        let h = parse_hint(format!("org_id: {ORG}\n").as_bytes()).unwrap();
        assert_eq!(h.label(), ORG);
    }

    #[test]
    fn hash_is_sha256_hex() {
        assert_eq!(file_hash(b""), "sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855");
    }
}

//! The daemon's side of "Bind a folder…" (issue 11 items 1 and 2): completing a typed
//! path (directories only), and saying before anything is written what a binding of a
//! folder would cover, so the dialog can default to recursive for a folder of repositories.
//! Reads only; the binding itself is [`crate::binding::bind`].

use crate::error::{Error, ErrorCode, Result};
use crate::home::Home;
use crate::{config, walk};
use std::path::{Path, PathBuf};

/// At most this many completions are listed.
pub const MAX_COMPLETIONS: usize = 50;

/// `~/code` or `/home/you/code` → an absolute path (not yet checked to exist).
pub fn expand(input: &str, example: &str) -> Result<PathBuf> {
    let input = input.trim();
    if input.is_empty() {
        return Err(Error::new(ErrorCode::InvalidArgument, format!("give a folder, for example {example}")));
    }
    let path = match input.strip_prefix("~/").or(if input == "~" { Some("") } else { None }) {
        Some(rest) => {
            crate::home::user_home().ok_or_else(|| Error::new(ErrorCode::InvalidArgument, "cannot expand ~: no home directory"))?.join(rest)
        }
        None => PathBuf::from(input),
    };
    if !path.is_absolute() {
        return Err(Error::new(ErrorCode::InvalidArgument, format!("{input} is not an absolute path; write it as {example} or /home/you/…")));
    }
    Ok(path)
}

/// One completion: what to put in the field (as the person typed it, `~/` kept) and
/// whether it is itself a repository.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Completion {
    pub value: String,
    pub repository: bool,
}

/// The directories whose path starts with `input` (`~/co` → `~/code/`, `~/config/`):
/// directories only (never a file, never a link, never the inside of a folder typed as a
/// link), hidden ones only when the typed name starts with a dot; sorted, at most
/// [`MAX_COMPLETIONS`].
pub fn complete(input: &str) -> Result<Vec<Completion>> {
    let typed = if input.trim().is_empty() { "~/" } else { input.trim_start() };
    let (parent_typed, partial) = match typed.rfind('/') {
        Some(i) => (&typed[..=i], &typed[i + 1..]),
        None if typed == "~" => ("~/", ""),
        None => return Err(Error::new(ErrorCode::InvalidArgument, format!("{typed} is not an absolute path; start with / or ~/"))),
    };
    let parent = expand(parent_typed, "~/code")?;
    // Never the inside of a folder named by a link (its last step; `~` itself may be one).
    if parent_typed != "~/" && !std::fs::symlink_metadata(&parent).is_ok_and(|m| m.is_dir()) {
        return Ok(Vec::new());
    }
    let entries = match std::fs::read_dir(&parent) {
        Ok(e) => e,
        // A folder that does not exist (yet) or cannot be read has nothing to offer.
        Err(_) => return Ok(Vec::new()),
    };
    let mut out: Vec<Completion> = entries
        .flatten()
        .filter(|e| e.file_type().is_ok_and(|t| t.is_dir()))
        .filter_map(|e| e.file_name().into_string().ok())
        .filter(|name| name.starts_with(partial) && (partial.starts_with('.') || !name.starts_with('.')))
        .map(|name| {
            let repository = std::fs::symlink_metadata(parent.join(&name).join(".git")).is_ok();
            Completion { value: format!("{parent_typed}{name}/"), repository }
        })
        .collect();
    out.sort_by(|a, b| a.value.cmp(&b.value));
    out.truncate(MAX_COMPLETIONS);
    Ok(out)
}

/// What binding a folder would do.
#[derive(Debug, Clone, serde::Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Preview {
    pub directory: PathBuf,
    pub display: String,
    /// The folder or a parent of it is a repository: its sessions are covered either way.
    pub inside_repository: bool,
    /// Repositories below a folder that is not inside one (none when it is).
    pub repositories_below: usize,
    /// What "include every repository below" should start as.
    pub recommend_recursive: bool,
    /// Why, in a sentence the dialog shows.
    pub explanation: String,
    /// The org name it is bound to now, if it is. (The orgs to choose from are the state's
    /// pairings: the form preselects the only one.)
    pub bound_to: Option<String>,
}

pub fn preview(home: &Home, input: &str) -> Result<Preview> {
    let dir = walk::canonical(&expand(input, "~/code")?)?;
    if !dir.is_dir() {
        return Err(Error::new(ErrorCode::InvalidArgument, format!("{} is not a folder", dir.display())));
    }
    let config = config::load(home)?;
    let inside = walk::inside_repository(&dir);
    let repos = if inside { 0 } else { walk::repositories_below(&dir).len() };
    let explanation = match (inside, repos) {
        (true, _) => "This folder is in a repository: sessions started anywhere in it stream.".to_string(),
        (false, 0) => "No repositories below this folder yet. With \"include every repository below\", any cloned here later stream too.".to_string(),
        (false, n) => format!(
            "This folder is not a repository and holds {n} repositor{} below it: include them so their sessions stream (repositories cloned here later are included too).",
            if n == 1 { "y" } else { "ies" }
        ),
    };
    let bound_to = crate::binding::bound_org(home, &dir).map(|org| config.of_org(&org).first().map(|p| p.workspace_name.clone()).unwrap_or(org));
    Ok(Preview {
        display: vpd_core::resolve::display_dir(&dir, crate::home::user_home().as_deref()),
        directory: dir,
        inside_repository: inside,
        repositories_below: repos,
        recommend_recursive: !inside && repos > 0,
        explanation,
        bound_to,
    })
}

/// Binds a folder picked in the UI: `org` may be left out when exactly one org is paired.
pub fn bind(home: &Home, input: &str, org: Option<&str>, recursive: bool, replace: bool) -> Result<crate::binding::BindOutcome> {
    let dir = expand(input, "~/code")?;
    let pairing_id = config::load(home)?.select_or_only(org)?.pairing_id.clone();
    crate::binding::bind(home, Path::new(&dir), &pairing_id, recursive, replace)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn completes_directories_only_and_hides_dot_folders() {
        let t = tempfile::tempdir().unwrap();
        for d in ["code", "config", ".cache", "code/api/.git", "other"] {
            std::fs::create_dir_all(t.path().join(d)).unwrap();
        }
        std::fs::write(t.path().join("commands.txt"), "not a folder").unwrap();
        #[cfg(unix)]
        std::os::unix::fs::symlink(t.path().join("other"), t.path().join("colink")).unwrap();
        let base = t.path().display().to_string();
        let values = |input: &str| complete(input).unwrap().into_iter().map(|c| c.value).collect::<Vec<_>>();
        assert_eq!(values(&format!("{base}/co")), [format!("{base}/code/"), format!("{base}/config/")]);
        assert_eq!(values(&format!("{base}/.c")), [format!("{base}/.cache/")]);
        assert_eq!(values(&format!("{base}/nothing")), Vec::<String>::new());
        assert_eq!(values(&format!("{base}/missing/")), Vec::<String>::new());
        let api = complete(&format!("{base}/code/")).unwrap();
        assert_eq!(api, [Completion { value: format!("{base}/code/api/"), repository: true }]);
        assert!(complete("code/").is_err(), "a relative path is an error");
        #[cfg(unix)]
        assert_eq!(values(&format!("{base}/colink/")), Vec::<String>::new(), "not through a link");
    }

    #[test]
    fn expand_says_what_to_type() {
        assert!(expand("", "~/code").unwrap_err().message.contains("~/code"));
        assert!(expand("relative/dir", "~/code").unwrap_err().message.contains("not an absolute path"));
        assert_eq!(expand("/srv/x", "~/code").unwrap(), PathBuf::from("/srv/x"));
    }
}

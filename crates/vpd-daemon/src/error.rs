//! Errors with stable codes. The CLI prints `error: <message>` (and the code with `--json`),
//! the UI shows the message, docs/CLI.md ("Error codes") explains each code.

use std::fmt;

#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ErrorCode {
    /// A file under the home is corrupt, too large, of the wrong kind or owner.
    FileInvalid,
    /// `config.json` was written by a newer vpd.
    ConfigTooNew,
    /// Reading or writing a file failed.
    Io,
    /// A command-line argument or API parameter is wrong.
    InvalidArgument,
    /// No pairing matches the `--org` given.
    NotPaired,
    /// Already paired with that org (use `--force` to replace).
    AlreadyPaired,
    /// The approval was for another org than `--org`.
    OrgMismatch,
    PairingDenied,
    PairingExpired,
    /// Unknown, expired or used pairing code.
    PairingCodeInvalid,
    Cancelled,
    /// The platform could not be reached.
    ServerUnreachable,
    /// The platform answered with something that is not its API (HTML, truncated JSON, …).
    BadServerResponse,
    /// The platform refused the request (4xx with an error body).
    ServerRefused,
    /// A plain-HTTP URL to a non-loopback host without `--insecure-http`.
    InsecureUrl,
    /// The daemon is not running and could not be started.
    DaemonUnavailable,
    /// Another daemon holds the home.
    DaemonRunning,
    /// The running daemon speaks another version of the local API than this vpd (one of
    /// them was updated and the other not yet restarted).
    VersionMismatch,
    /// The daemon runs but its web UI is still starting (try again in a moment).
    UiStarting,
    /// A pairing started from the UI or the tray is running already, or none is running
    /// that an answer could go to.
    Busy,
    /// A binding file exists but was not made on this machine.
    BindingUntrusted,
    /// A binding to another org exists (use `--yes` to replace).
    BindingExists,
    NotBound,
    /// The keyring failed for a credential that lives there.
    Keyring,
    /// `vpd update` refused a release: not signed by the trusted key, not newer, for another
    /// machine, or not the file its signature describes. Nothing was changed.
    UpdateRefused,
    /// `vpd update` cannot update this installation: a package manager's (it names the
    /// command), another user's, a build directory, or no update source is set.
    NotUpdatable,
    Internal,
}

impl fmt::Display for ErrorCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match serde_json::to_value(self) {
            Ok(serde_json::Value::String(s)) => f.write_str(&s),
            _ => f.write_str("internal"),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub struct Error {
    pub code: ErrorCode,
    pub message: String,
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl Error {
    pub fn new(code: ErrorCode, message: impl Into<String>) -> Self {
        Self { code, message: message.into() }
    }
    pub fn io(what: impl fmt::Display, e: std::io::Error) -> Self {
        Self::new(ErrorCode::Io, format!("{what}: {e}"))
    }
    pub fn file(path: &std::path::Path, why: impl fmt::Display) -> Self {
        Self::new(ErrorCode::FileInvalid, format!("{}: {why}", path.display()))
    }
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

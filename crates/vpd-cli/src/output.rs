//! Text or JSON. With `--json` every command prints JSON on stdout (one document, or one line
//! per event for `pair`) and errors as `{"error":{"code","message"}}`; otherwise text, with
//! errors on stderr.

use serde::Serialize;
use vpd_daemon::Error;

pub struct Out {
    pub json: bool,
}

impl Out {
    pub fn json<T: Serialize>(&self, value: &T) {
        println!("{}", serde_json::to_string(value).expect("serializable"));
    }

    /// Prints `value` as JSON, or `text` otherwise.
    pub fn emit<T: Serialize>(&self, value: &T, text: impl FnOnce() -> String) {
        if self.json {
            self.json(value);
        } else {
            let t = text();
            if !t.is_empty() {
                println!("{t}");
            }
        }
    }

    pub fn error(&self, e: &Error) {
        if self.json {
            self.json(&serde_json::json!({"error": {"code": e.code, "message": e.message}}));
        } else {
            eprintln!("error: {}", e.message);
        }
    }
}

/// `~/x` for paths under the user's home.
pub fn show(path: &std::path::Path) -> String {
    vpd_core::resolve::display_dir(path, vpd_daemon::home::user_home().as_deref())
}

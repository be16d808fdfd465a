//! The vpd daemon core, without any GUI: everything the `vpd daemon` process (and later the
//! tray, in-process) runs, plus the file-level operations the `vpd` CLI performs itself.
//!
//! Map (one file per concern):
//! - [`home`]: where the files are (`VIEWPORT_HOME` / `VPD_HOME` / `~/.viewport`), modes.
//! - [`store`]: atomic 0600 writes, bounded reads, the advisory home lock.
//! - [`config`]: `config.json`, the pairings.
//! - [`migrate`]: upgrading a version 1 home (SPEC A1), restartably.
//! - [`identity`]: `relay-identities/{pairingId}.json`, one Ed25519 keypair per pairing.
//! - [`secrets`]: where issue tokens live: the OS keyring, or `config.json` as a fallback.
//! - [`records`]: `directories.json` (bindings made here) and `hint-declines.json`.
//! - [`walk`]: gathers the directory facts that `vpd_core::resolve` decides on.
//! - [`facts_cache`]: the daemon's cache of those facts, kept true by change notification.
//! - [`binding`]: `vpd bind` / `unbind` / `trust` / hint declines, on the files.
//! - [`os`]: the platform layer, one module per concern (files, the local API's transport,
//!   processes, signals, the terminal, …): the only code chosen by operating system.
//! - [`platform`]: the HTTP client of the platform API (the only code that speaks it).
//! - [`proxy`]: the one proxy rule set (HTTP(S)/SOCKS5, NO_PROXY) for HTTP and the relay.
//! - [`tls`]: the one TLS configuration (system roots plus a pairing's CA) for HTTP and the relay.
//! - [`pairing`]: the pairing flow (SPEC section 4) as the daemon runs it.
//! - [`api`]: the local API over `vpd.sock` — protocol, server, client.
//! - [`status`], [`doctor`]: the status model and the health checks.
//! - [`daemon`]: the daemon process: lock, logging, serving, shutdown.
//! - [`suggestions`], [`watched`]: hint suggestions for the tray and web UI, and the
//!   watched folders they also come from.
//! - [`pair_job`]: the pairing the web UI and the tray start (one at a time).
//! - [`webui`]: the loopback web UI: security checks, JSON state, live events, actions.
//! - [`spool`]: `spool.json`, what a planned stop keeps for the next daemon.
//! - [`update`]: `vpd update`: the trusted source, the installation's versions, the swap.

pub mod activity;
pub mod api;
pub mod backend;
pub mod binding;
pub mod bridge;
pub mod bridges;
pub mod config;
pub mod daemon;
pub mod doctor;
pub mod error;
pub mod facts_cache;
pub mod first_run;
pub mod folders;
pub mod home;
pub mod identity;
pub mod login_item;
pub mod migrate;
pub mod os;
pub mod pair_job;
pub mod pairing;
pub mod platform;
pub mod proxy;
pub mod records;
pub mod secrets;
pub mod service;
pub mod sessions;
pub mod spool;
pub mod states;
pub mod status;
pub mod store;
pub mod suggestions;
pub mod tls;
pub mod update;
pub mod walk;
pub mod watched;
pub mod webui;

pub use error::{Error, ErrorCode, Result};
pub use home::Home;

/// This build's version, shown by `vpd status`, sent when pairing and compared by `vpd
/// update`. `VPD_BUILD_VERSION` at build time overrides the crate's (a release build's
/// version; the update tests build a higher one), and only the crates that read it rebuild.
pub const VERSION: &str = match option_env!("VPD_BUILD_VERSION") {
    Some(v) => v,
    None => env!("CARGO_PKG_VERSION"),
};

/// A crash point for tests: when `VPD_FAILPOINT` names this point, the process aborts here,
/// as a power cut or `kill -9` would. Used to prove that every write sequence survives a
/// crash at each step (tests/concurrency.rs).
pub fn failpoint(name: &str) {
    if std::env::var_os("VPD_FAILPOINT").is_some_and(|v| v == name) {
        eprintln!("vpd: failpoint {name}: aborting");
        std::process::abort();
    }
}

/// RFC 3339 "now", second precision.
pub fn now_rfc3339() -> String {
    jiff::Timestamp::now().round(jiff::Unit::Second).unwrap_or_else(|_| jiff::Timestamp::now()).to_string()
}

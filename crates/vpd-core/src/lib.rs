//! The pure policy of vpd.
//!
//! **Invariant: nothing in this crate does I/O** — no file system, no network, no clock, no
//! tokio. Callers gather facts (file bytes, which directories are repository roots, the
//! pairings, the binding records) and this crate decides. That keeps every rule table-testable
//! and means a rule can never fail on I/O.
//!
//! - [`files`]: parsing `.viewport/local.yaml` and `.viewport/workspace.yaml`.
//! - [`resolve`]: SPEC section 7, which binding a session started in a directory is pinned to.
//! - [`hint`]: SPEC section 8, what `vpd hint` says or asks.

pub mod files;
pub mod hint;
pub mod origin;
pub mod outbox;
pub mod relay_policy;
pub mod release;
pub mod resolve;

pub use files::{file_hash, LocalFile, Streaming, WorkspaceHint, MAX_BINDING_FILE};
pub use resolve::{resolve, BindingRecord, DirFacts, FileRead, LocalReason, PairingRef, Resolution};

//! The local API over `vpd.sock`: newline-delimited JSON, one request per connection.
//!
//! - [`protocol`]: the messages (the only module that knows this wire format).
//! - [`calls`]: each request type with its answer's type, for typed clients and replies.
//! - [`server`]: the daemon side; checks the peer's uid before reading a byte.
//! - [`client`]: the blocking client the CLI uses, and starting the daemon on demand.

pub mod calls;
pub mod client;
pub mod protocol;
pub mod server;

//! The local API checks its peer's user (SPEC section 11); the web UI's loopback TCP port gets
//! the same check where the OS can tell who is behind a connection (`os::tcp`): connections
//! of other users are closed before a byte is read. (Other users could otherwise redeem a
//! login link they saw, or replay a cookie.)

use crate::os::user::UserId;
use std::net::SocketAddr;

/// A listener that hands axum only connections of this user.
pub struct SameUser {
    pub inner: tokio::net::TcpListener,
    pub user: UserId,
}

impl axum::serve::Listener for SameUser {
    type Io = tokio::net::TcpStream;
    type Addr = SocketAddr;

    async fn accept(&mut self) -> (Self::Io, Self::Addr) {
        loop {
            let (stream, peer) = axum::serve::Listener::accept(&mut self.inner).await;
            if crate::os::tcp::CHECKED {
                let owner = stream.local_addr().ok().and_then(|local| crate::os::tcp::owner(peer, local));
                if owner.as_ref() != Some(&self.user) {
                    tracing::warn!(owner = ?owner.map(|o| o.to_string()), %peer, "web UI: refused a connection from another user");
                    continue;
                }
            }
            return (stream, peer);
        }
    }

    fn local_addr(&self) -> std::io::Result<Self::Addr> {
        self.inner.local_addr()
    }
}

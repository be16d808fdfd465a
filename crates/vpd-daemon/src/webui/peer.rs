//! The local API checks its peer's uid on the Unix socket (SPEC section 11); the web UI's
//! loopback TCP port gets the same check: on Linux the owner of the connecting socket is read
//! from `/proc/net/tcp`, and connections of other users are closed before a byte is read.
//! (Other users could otherwise redeem a login link they saw in `ps`, or replay a cookie.)

use std::net::{IpAddr, SocketAddr};

/// `127.0.0.1:8080` as `/proc/net/tcp` writes it: `0100007F:1F90`.
fn proc_form(a: SocketAddr) -> Option<String> {
    match a.ip() {
        IpAddr::V4(ip) => Some(format!("{:08X}:{:04X}", u32::from_ne_bytes(ip.octets()), a.port())),
        IpAddr::V6(_) => None,
    }
}

/// The uid of the socket at `peer` connected to `local`, from a `/proc/net/tcp` table.
pub fn uid_in(table: &str, peer: SocketAddr, local: SocketAddr) -> Option<u32> {
    let (p, l) = (proc_form(peer)?, proc_form(local)?);
    table.lines().skip(1).find_map(|line| {
        let f: Vec<&str> = line.split_whitespace().collect();
        (f.len() > 7 && f[1] == p && f[2] == l).then(|| f[7].parse().ok()).flatten()
    })
}

/// The uid of the process side of a loopback connection, if it can be found.
#[cfg(target_os = "linux")]
pub fn uid_of(peer: SocketAddr, local: SocketAddr) -> Option<u32> {
    uid_in(&std::fs::read_to_string("/proc/net/tcp").ok()?, peer, local)
}

/// A listener that hands axum only connections of this user.
pub struct SameUser {
    pub inner: tokio::net::TcpListener,
    pub uid: u32,
}

impl axum::serve::Listener for SameUser {
    type Io = tokio::net::TcpStream;
    type Addr = SocketAddr;

    async fn accept(&mut self) -> (Self::Io, Self::Addr) {
        loop {
            let (stream, peer) = axum::serve::Listener::accept(&mut self.inner).await;
            #[cfg(target_os = "linux")]
            {
                let owner = stream.local_addr().ok().and_then(|local| uid_of(peer, local));
                if owner != Some(self.uid) {
                    tracing::warn!(?owner, %peer, "web UI: refused a connection from another user");
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_the_owner_of_a_loopback_connection() {
        let table = "  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode\n   \
            0: 0100007F:1B9E 00000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 1 1 0 100 0 0 10 0\n   \
            1: 0100007F:D431 0100007F:1B9E 01 00000000:00000000 00:00000000 00000000  1000        0 2 1 0 20 4 30 10 -1\n   \
            2: 0100007F:1B9E 0100007F:D431 01 00000000:00000000 00:00000000 00000000     0        0 3 1 0 20 4 30 10 -1\n";
        let server: SocketAddr = "127.0.0.1:7070".parse().unwrap();
        let client: SocketAddr = "127.0.0.1:54321".parse().unwrap();
        assert_eq!(uid_in(table, client, server), Some(1000));
        assert_eq!(uid_in(table, "127.0.0.1:1".parse().unwrap(), server), None);
        assert_eq!(uid_in(table, "[::1]:54321".parse().unwrap(), server), None);
    }

    #[cfg(target_os = "linux")]
    #[test]
    fn reads_the_real_table() {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let c = std::net::TcpStream::connect(l.local_addr().unwrap()).unwrap();
        let (s, peer) = l.accept().unwrap();
        assert_eq!(uid_of(peer, s.local_addr().unwrap()), Some(unsafe { libc::geteuid() }));
        drop(c);
    }
}

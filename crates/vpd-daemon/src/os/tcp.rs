//! The user behind a loopback TCP connection to the web UI (SPEC section 11's same-user rule
//! for a port any local user can reach): on Linux the owner of the connecting socket, from
//! `/proc/net/tcp`; on Windows the owning process of the connection (`GetExtendedTcpTable`)
//! and its token's user. macOS has no way to ask (the login link never passes through
//! process arguments there, issue 12 item 2): [`CHECKED`] is false.

use super::user::UserId;
use std::net::SocketAddr;

/// Whether this OS can tell who is behind a connection.
pub const CHECKED: bool = imp::CHECKED;

/// The user of the process side of the loopback connection from `peer` to `local`.
pub fn owner(peer: SocketAddr, local: SocketAddr) -> Option<UserId> {
    imp::owner(peer, local)
}

/// `127.0.0.1:8080` as `/proc/net/tcp` writes it: `0100007F:1F90`.
fn proc_form(a: SocketAddr) -> Option<String> {
    match a.ip() {
        std::net::IpAddr::V4(ip) => Some(format!("{:08X}:{:04X}", u32::from_ne_bytes(ip.octets()), a.port())),
        std::net::IpAddr::V6(_) => None,
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

/// One row of Windows' TCP table as `GetExtendedTcpTable` gives it: addresses in network
/// order as read from memory, ports in network order in the low 16 bits, and the owner's pid.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Row {
    pub local_addr: u32,
    pub local_port: u32,
    pub remote_addr: u32,
    pub remote_port: u32,
    pub pid: u32,
}

/// The pid owning the client side of the connection from `peer` to `local`: the row whose
/// local end is `peer` and remote end is `local` (IPv4).
pub fn owning_pid(rows: &[Row], peer: SocketAddr, local: SocketAddr) -> Option<u32> {
    let (std::net::IpAddr::V4(p), std::net::IpAddr::V4(l)) = (peer.ip(), local.ip()) else { return None };
    let port = |n: u16| u32::from(n.to_be());
    rows.iter()
        .find(|r| {
            r.local_addr == u32::from_ne_bytes(p.octets())
                && r.local_port == port(peer.port())
                && r.remote_addr == u32::from_ne_bytes(l.octets())
                && r.remote_port == port(local.port())
        })
        .map(|r| r.pid)
}

#[cfg(target_os = "linux")]
mod imp {
    use super::*;
    pub const CHECKED: bool = true;
    pub fn owner(peer: SocketAddr, local: SocketAddr) -> Option<UserId> {
        uid_in(&std::fs::read_to_string("/proc/net/tcp").ok()?, peer, local).map(crate::os::user::from_raw)
    }
}

#[cfg(all(unix, not(target_os = "linux")))]
mod imp {
    use super::*;
    pub const CHECKED: bool = false;
    pub fn owner(_peer: SocketAddr, _local: SocketAddr) -> Option<UserId> {
        None
    }
}

#[cfg(windows)]
mod imp {
    use super::*;
    use windows_sys::Win32::NetworkManagement::IpHelper::{GetExtendedTcpTable, MIB_TCPROW_OWNER_PID, TCP_TABLE_OWNER_PID_ALL};
    use windows_sys::Win32::Networking::WinSock::AF_INET;

    pub const CHECKED: bool = true;

    /// The TCP table (IPv4) with the owning process of each connection.
    fn rows() -> Option<Vec<Row>> {
        let mut size = 0u32;
        // SAFETY: the first call asks for the size; the second fills a buffer of that size.
        unsafe {
            GetExtendedTcpTable(std::ptr::null_mut(), &mut size, 0, AF_INET as u32, TCP_TABLE_OWNER_PID_ALL, 0);
            let mut buf = vec![0u8; size as usize + 1024];
            size = buf.len() as u32;
            if GetExtendedTcpTable(buf.as_mut_ptr().cast(), &mut size, 0, AF_INET as u32, TCP_TABLE_OWNER_PID_ALL, 0) != 0 {
                return None;
            }
            let n = u32::from_ne_bytes(buf[..4].try_into().ok()?) as usize;
            let first = buf.as_ptr().add(4) as *const MIB_TCPROW_OWNER_PID;
            Some(
                (0..n)
                    .map(|i| {
                        let r = &*first.add(i);
                        Row {
                            local_addr: r.dwLocalAddr,
                            local_port: r.dwLocalPort,
                            remote_addr: r.dwRemoteAddr,
                            remote_port: r.dwRemotePort,
                            pid: r.dwOwningPid,
                        }
                    })
                    .collect(),
            )
        }
    }

    pub fn owner(peer: SocketAddr, local: SocketAddr) -> Option<UserId> {
        let pid = owning_pid(&rows()?, peer, local)?;
        crate::os::win::process_user(pid).ok().map(crate::os::user::from_raw)
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

    #[test]
    fn finds_the_owning_process_in_a_windows_table() {
        let server: SocketAddr = "127.0.0.1:7070".parse().unwrap();
        let client: SocketAddr = "127.0.0.1:54321".parse().unwrap();
        let lo = u32::from_ne_bytes([127, 0, 0, 1]);
        let port = |n: u16| u32::from(n.to_be());
        let rows = [
            Row { local_addr: lo, local_port: port(7070), remote_addr: 0, remote_port: 0, pid: 4 },
            Row { local_addr: lo, local_port: port(7070), remote_addr: lo, remote_port: port(54321), pid: 100 },
            Row { local_addr: lo, local_port: port(54321), remote_addr: lo, remote_port: port(7070), pid: 4242 },
        ];
        assert_eq!(owning_pid(&rows, client, server), Some(4242), "the client's side, not the server's");
        assert_eq!(owning_pid(&rows, "127.0.0.1:1".parse().unwrap(), server), None);
        assert_eq!(owning_pid(&rows, "[::1]:54321".parse().unwrap(), server), None);
    }

    #[cfg(target_os = "linux")]
    #[test]
    fn reads_the_real_table() {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let c = std::net::TcpStream::connect(l.local_addr().unwrap()).unwrap();
        let (s, peer) = l.accept().unwrap();
        assert_eq!(owner(peer, s.local_addr().unwrap()), Some(crate::os::user::current()));
        drop(c);
    }
}

//! The local API's transport (SPEC section 11): `vpd.sock` (0600) on Unix, a named pipe on
//! Windows whose security descriptor lets only the current user open it. Either way the
//! server checks the peer's user on every connection before reading a byte (the socket's
//! credentials; the pipe client's process token), so another local user is refused even
//! where the first barrier failed. The client side is blocking (what `vpd` uses).

use crate::home::Home;
use std::io::{self, Read, Write};
use std::time::Duration;

/// A connection the server accepted: read and written as a tokio stream.
pub type Conn = imp::Conn;

/// Where the local API of `home` listens: the socket's path, or the pipe's name.
pub fn address(home: &Home) -> String {
    imp::address(home)
}

/// The named pipe of the home at `root` on Windows:
/// `\\.\pipe\viewport-vpd-<16 hex digits of SHA-256 of the path, lowercased>`, one per home
/// (Windows paths are case-insensitive). Pure: tested on every OS.
pub fn pipe_name(root: &std::path::Path) -> String {
    let key = root.to_string_lossy().to_lowercase();
    let h = vpd_core::file_hash(key.as_bytes());
    format!(r"\\.\pipe\viewport-vpd-{}", &h.trim_start_matches("sha256:")[..16])
}

/// The server's listener.
pub struct Listener(imp::Listener);

impl Listener {
    /// Listens for `home`. Call only while holding the daemon lock (a leftover socket of a
    /// dead daemon is removed; on Windows a pipe another process already serves is refused).
    pub fn bind(home: &Home) -> io::Result<Listener> {
        imp::Listener::bind(home).map(Listener)
    }

    /// The next connection, and whether its peer is this user (`Err` says who it was).
    pub async fn accept(&mut self) -> io::Result<(Conn, Result<(), String>)> {
        self.0.accept().await
    }
}

/// Removes what the listener left behind (the socket file; nothing for a pipe).
pub fn remove(home: &Home) {
    imp::remove(home)
}

/// A blocking client connection.
pub struct Client(imp::Client);

impl Client {
    pub fn connect(home: &Home) -> io::Result<Client> {
        imp::Client::connect(home).map(Client)
    }
    pub fn try_clone(&self) -> io::Result<Client> {
        self.0.try_clone().map(Client)
    }
    /// Reads wait at most `t` (`None`: no limit).
    pub fn set_read_timeout(&mut self, t: Option<Duration>) {
        self.0.set_read_timeout(t)
    }
    /// Whether the server closed its end or sent something unasked. Does not wait.
    pub fn peer_closed(&self) -> bool {
        self.0.peer_closed()
    }
}

impl Read for Client {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        self.0.read(buf)
    }
}

impl Write for Client {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.0.write(buf)
    }
    fn flush(&mut self) -> io::Result<()> {
        self.0.flush()
    }
}

#[cfg(unix)]
mod imp {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    pub type Conn = tokio::net::UnixStream;

    pub fn address(home: &Home) -> String {
        home.socket().display().to_string()
    }

    pub struct Listener(tokio::net::UnixListener);

    impl Listener {
        pub fn bind(home: &Home) -> io::Result<Listener> {
            let path = home.socket();
            let _ = std::fs::remove_file(&path);
            let l = tokio::net::UnixListener::bind(&path)?;
            std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600))?;
            Ok(Listener(l))
        }

        pub async fn accept(&mut self) -> io::Result<(Conn, Result<(), String>)> {
            let (s, _) = self.0.accept().await?;
            let me = crate::os::user::raw(&crate::os::user::current());
            let peer = match s.peer_cred() {
                Ok(c) if c.uid() == me => Ok(()),
                Ok(c) => Err(format!("uid {}", c.uid())),
                Err(e) => Err(format!("unknown ({e})")),
            };
            Ok((s, peer))
        }
    }

    pub fn remove(home: &Home) {
        let _ = std::fs::remove_file(home.socket());
    }

    pub struct Client(std::os::unix::net::UnixStream);

    impl Client {
        pub fn connect(home: &Home) -> io::Result<Client> {
            std::os::unix::net::UnixStream::connect(home.socket()).map(Client)
        }
        pub fn try_clone(&self) -> io::Result<Client> {
            self.0.try_clone().map(Client)
        }
        pub fn set_read_timeout(&mut self, t: Option<Duration>) {
            let _ = self.0.set_read_timeout(t);
        }
        pub fn peer_closed(&self) -> bool {
            let mut b = [0u8; 1];
            // SAFETY: a peek of one byte into a local buffer on a socket we own; it never blocks.
            let n = unsafe { libc::recv(std::os::fd::AsRawFd::as_raw_fd(&self.0), b.as_mut_ptr().cast(), 1, libc::MSG_PEEK | libc::MSG_DONTWAIT) };
            n >= 0 || io::Error::last_os_error().kind() != io::ErrorKind::WouldBlock
        }
    }

    impl Read for Client {
        fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
            self.0.read(buf)
        }
    }

    impl Write for Client {
        fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
            self.0.write(buf)
        }
        fn flush(&mut self) -> io::Result<()> {
            self.0.flush()
        }
    }
}

#[cfg(windows)]
mod imp {
    use super::*;
    use crate::os::win;
    use std::os::windows::io::AsRawHandle;
    use tokio::net::windows::named_pipe::{NamedPipeServer, ServerOptions};
    use windows_sys::Win32::System::Pipes::{GetNamedPipeClientProcessId, PeekNamedPipe, WaitNamedPipeW};

    pub type Conn = NamedPipeServer;

    pub fn address(home: &Home) -> String {
        super::pipe_name(home.root())
    }

    pub struct Listener {
        name: String,
        sd: win::OwnerOnly,
        next: NamedPipeServer,
    }

    fn create(name: &str, sd: &win::OwnerOnly, first: bool) -> io::Result<NamedPipeServer> {
        let mut attributes = sd.attributes;
        // SAFETY: the attributes and their descriptor live until the call returns.
        unsafe {
            ServerOptions::new()
                .first_pipe_instance(first)
                .reject_remote_clients(true)
                .create_with_security_attributes_raw(name, (&mut attributes as *mut windows_sys::Win32::Security::SECURITY_ATTRIBUTES).cast())
        }
    }

    impl Listener {
        pub fn bind(home: &Home) -> io::Result<Listener> {
            let name = address(home);
            let sd = win::OwnerOnly::new(&crate::os::user::current().to_string(), false)?;
            // The first instance: if another process (another user squatting the name) holds
            // it, this fails rather than serving beside it.
            let next = create(&name, &sd, true)?;
            Ok(Listener { name, sd, next })
        }

        pub async fn accept(&mut self) -> io::Result<(Conn, Result<(), String>)> {
            self.next.connect().await?;
            let fresh = create(&self.name, &self.sd, false)?;
            let conn = std::mem::replace(&mut self.next, fresh);
            let mut pid = 0u32;
            // SAFETY: a connected pipe handle we own.
            let peer = if unsafe { GetNamedPipeClientProcessId(conn.as_raw_handle().cast(), &mut pid) } == 0 {
                Err(format!("unknown ({})", io::Error::last_os_error()))
            } else {
                match win::process_user(pid) {
                    Ok(sid) if sid == crate::os::user::current().to_string() => Ok(()),
                    Ok(sid) => Err(sid),
                    Err(e) => Err(format!("unknown (process {pid}: {e})")),
                }
            };
            Ok((conn, peer))
        }
    }

    pub fn remove(_home: &Home) {}

    pub struct Client {
        file: std::fs::File,
        timeout: Option<Duration>,
    }

    /// Bytes waiting in the pipe; `Err` once the server closed it.
    fn available(file: &std::fs::File) -> io::Result<u32> {
        let mut avail = 0u32;
        // SAFETY: a peek that copies nothing, on a pipe handle we own.
        let ok =
            unsafe { PeekNamedPipe(file.as_raw_handle().cast(), std::ptr::null_mut(), 0, std::ptr::null_mut(), &mut avail, std::ptr::null_mut()) };
        if ok == 0 {
            Err(io::Error::last_os_error())
        } else {
            Ok(avail)
        }
    }

    impl Client {
        pub fn connect(home: &Home) -> io::Result<Client> {
            let name = address(home);
            for _ in 0..3 {
                match std::fs::OpenOptions::new().read(true).write(true).open(&name) {
                    Ok(file) => return Ok(Client { file, timeout: None }),
                    // ERROR_PIPE_BUSY: every instance is taken for a moment.
                    Err(e) if e.raw_os_error() == Some(231) => {
                        let w = win::wide(&name);
                        // SAFETY: a valid pipe name.
                        unsafe { WaitNamedPipeW(w.as_ptr(), 2000) };
                    }
                    Err(e) => return Err(e),
                }
            }
            Err(io::Error::new(io::ErrorKind::TimedOut, "the daemon's pipe stayed busy"))
        }
        pub fn try_clone(&self) -> io::Result<Client> {
            Ok(Client { file: self.file.try_clone()?, timeout: self.timeout })
        }
        pub fn set_read_timeout(&mut self, t: Option<Duration>) {
            self.timeout = t;
        }
        pub fn peer_closed(&self) -> bool {
            available(&self.file).map_or(true, |n| n > 0)
        }
    }

    impl Read for Client {
        fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
            if let Some(t) = self.timeout {
                // A synchronous pipe has no read timeout: wait for bytes, then read them.
                let deadline = std::time::Instant::now() + t;
                loop {
                    match available(&self.file) {
                        Ok(0) if std::time::Instant::now() < deadline => std::thread::sleep(Duration::from_millis(5)),
                        Ok(0) => return Err(io::Error::new(io::ErrorKind::TimedOut, "the daemon did not answer in time")),
                        Ok(_) => break,
                        // ERROR_BROKEN_PIPE: the end of the stream.
                        Err(e) if e.raw_os_error() == Some(109) => return Ok(0),
                        Err(e) => return Err(e),
                    }
                }
            }
            match self.file.read(buf) {
                Err(e) if e.raw_os_error() == Some(109) => Ok(0),
                r => r,
            }
        }
    }

    impl Write for Client {
        fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
            self.file.write(buf)
        }
        fn flush(&mut self) -> io::Result<()> {
            self.file.flush()
        }
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn one_pipe_per_home_whatever_the_case_of_its_path() {
        let a = super::pipe_name(std::path::Path::new(r"C:\Users\Ann\.viewport"));
        assert!(a.starts_with(r"\\.\pipe\viewport-vpd-") && a.len() == r"\\.\pipe\viewport-vpd-".len() + 16, "{a}");
        assert_eq!(a, super::pipe_name(std::path::Path::new(r"c:\users\ann\.viewport")));
        assert_ne!(a, super::pipe_name(std::path::Path::new(r"C:\Users\Bob\.viewport")));
    }
}

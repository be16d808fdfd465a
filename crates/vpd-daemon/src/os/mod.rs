//! The platform layer (issue 12 item 3): one module per concern, each with the same
//! interface on Linux, macOS and Windows. It is the only place in the crate where code is
//! chosen by operating system; the rest calls these functions and never asks which OS runs.
//!
//! | concern | Linux | macOS | Windows |
//! |---|---|---|---|
//! | [`user`] who the user is | uid | uid | the token's SID |
//! | [`files`] private files | 0700/0600, `O_NOFOLLOW` | the same | an owner-only protected DACL, reparse points refused |
//! | [`ipc`] the local API | `vpd.sock`, `SO_PEERCRED` | `vpd.sock`, `getpeereid` | a named pipe with an owner-only security descriptor, the client's token checked |
//! | [`tcp`] the web UI's peer | `/proc/net/tcp` | none possible (no secret in arguments instead) | `GetExtendedTcpTable` → the owner's token |
//! | [`process`] detach, stop, replace | `setsid`, `SIGTERM`, `exec` | the same | detached process, `TerminateProcess`, run and exit |
//! | [`signals`] a stop request | SIGTERM, SIGINT | the same | Ctrl-C, close, logoff, shutdown |
//! | [`net`] network addresses | `getifaddrs` | `getifaddrs` | `GetAdaptersAddresses` (if-addrs) |
//! | [`terminal`] raw mode, size | termios, `TIOCGWINSZ`, SIGWINCH | the same | console modes (VT input), the screen buffer, polled |
//! | [`pty`] `vpd run`'s pseudo-terminal | a Unix pty (portable-pty) | the same | ConPTY (our own: the cursor inherited only in a console, empty standard handles, closed after the exit) |
//! | [`pointer`] an installation's `current` | a symlink, one rename | the same | a junction, two renames (recovered at the next start) |
//! | [`userdir`] writing in users' folders | `openat`, never following a link | the same | reparse points refused on every handle |

pub mod files;
pub mod ipc;
pub mod net;
pub mod pointer;
pub mod process;
pub mod pty;
pub mod sddl;
pub mod signals;
pub mod tcp;
pub mod terminal;
pub mod user;
pub mod userdir;

#[cfg(windows)]
pub(crate) mod win;

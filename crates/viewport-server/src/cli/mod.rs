//! The command line: `serve` and `admin …`.

pub mod admin;
pub mod release;
pub mod serve;

use clap::{Args, Parser, Subcommand};
use std::net::SocketAddr;
use std::path::PathBuf;

#[derive(Parser, Debug)]
#[command(name = "viewport-server", version, about = "Self-hostable Viewport platform: pairing, machines, members, relay tokens")]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Subcommand, Debug)]
pub enum Command {
    /// Run the server (creates and migrates the database on start).
    Serve(ServeArgs),
    /// Manage users, workspaces, members, machines and pairing codes in the database.
    Admin(AdminArgs),
    /// Sign releases offline, on the release manager's machine: no database, and the server
    /// never holds the private key.
    #[command(subcommand)]
    Release(ReleaseCommand),
}

#[derive(Subcommand, Debug)]
pub enum ReleaseCommand {
    /// Make a release signing key: DIR/release.key (secret, 0600) and DIR/release.pub (what
    /// machines trust with `vpd update --trust-key`). Never overwrites a key.
    #[command(after_help = "Example:\n  viewport-server release keygen --out ~/viewport-release-key")]
    Keygen {
        #[arg(long, value_name = "DIR")]
        out: PathBuf,
    },
    /// Sign FILE as release VERSION for OS/ARCH: writes FILE.minisig (minisign format, the
    /// one Tauri's updater reads), whose signed comment names the version, OS, architecture,
    /// SHA-256 and size.
    #[command(
        after_help = "Example:\n  viewport-server release sign vpd --key ~/viewport-release-key/release.key --version 0.2.0 --os linux --arch x86_64"
    )]
    Sign {
        file: PathBuf,
        #[arg(long, value_name = "FILE")]
        key: PathBuf,
        /// MAJOR.MINOR.PATCH.
        #[arg(long)]
        version: String,
        /// linux, macos or windows.
        #[arg(long)]
        os: String,
        /// x86_64 or aarch64.
        #[arg(long)]
        arch: String,
    },
}

#[derive(Args, Debug)]
pub struct ServeArgs {
    /// Address to listen on.
    #[arg(long, default_value = "127.0.0.1:8080")]
    pub listen: SocketAddr,
    /// The database: a SQLite file (created with mode 0600 when missing), or
    /// `postgres://USER[:PASSWORD]@HOST[:PORT]/DB` for several instances on one database
    /// (docs/SELF-HOSTING.md). The password can come from PGPASSWORD instead.
    #[arg(long, default_value = "viewport.db", env = "VIEWPORT_DB", value_name = "FILE|URL")]
    pub db: String,
    /// The URL users and daemons reach this server at (default: http://{listen}).
    #[arg(long, env = "VIEWPORT_PUBLIC_URL")]
    pub public_url: Option<String>,
    /// Delete recorded sessions (and their frames) this many days after they ended.
    #[arg(long, default_value_t = 30, value_parser = clap::value_parser!(u32).range(1..=36500))]
    pub retention_days: u32,
    /// Also serve the relay (`/ws` only) on this second address. `/ws` on --listen keeps working;
    /// daemons are told the endpoint derived from --public-url.
    #[arg(long)]
    pub relay_listen: Option<SocketAddr>,
    /// Pairing codes created or claimed per client IP and minute.
    #[arg(long, default_value_t = 30, value_parser = clap::value_parser!(u32).range(1..=100_000))]
    pub pairing_rate_per_minute: u32,
    /// Lifetime of relay tokens in seconds (at most 600, the default).
    #[arg(long, default_value_t = 600, value_parser = clap::value_parser!(i64).range(1..=600))]
    pub relay_token_ttl: i64,
    /// A reverse proxy (address or CIDR) whose X-Forwarded-For / Forwarded header names the
    /// client; repeatable. Without it, limits count the socket's address.
    #[arg(long = "trusted-proxy", value_name = "CIDR", value_parser = parse_cidr)]
    pub trusted_proxies: Vec<ipnet::IpNet>,
    /// Serve HTTPS and WSS on --listen with this PEM certificate chain (with --tls-key). The
    /// files are re-read when they change: a renewed certificate needs no restart.
    #[arg(long, value_name = "FILE", requires = "tls_key")]
    pub tls_cert: Option<PathBuf>,
    /// The PEM private key of --tls-cert.
    #[arg(long, value_name = "FILE", requires = "tls_cert")]
    pub tls_key: Option<PathBuf>,
    /// Bytes of session output one machine may send per minute (e.g. 64MiB). Over it the relay
    /// paces its acks and tells the daemon to hold back; nothing is dropped by the relay.
    #[arg(long, value_name = "SIZE", default_value = "64MiB", value_parser = parse_size)]
    pub write_budget_machine: u64,
    /// Bytes of session output all machines of one org may send per minute together.
    #[arg(long, value_name = "SIZE", default_value = "512MiB", value_parser = parse_size)]
    pub write_budget_org: u64,
    /// Bytes of recorded output one machine may keep; beyond it new sessions are refused
    /// (they run local-only on the machine) until retention frees room.
    #[arg(long, value_name = "SIZE", default_value = "4GiB", value_parser = parse_size)]
    pub stored_quota_machine: u64,
    /// Bytes of recorded output one org may keep.
    #[arg(long, value_name = "SIZE", default_value = "64GiB", value_parser = parse_size)]
    pub stored_quota_org: u64,
}

/// `4096`, `500k`/`500KiB`, `64M`/`64MiB`, `4G`/`4GiB` (powers of 1024; `KB`/`MB`/`GB` too).
pub fn parse_size(s: &str) -> Result<u64, String> {
    let t = s.trim();
    let split = t.find(|c: char| !c.is_ascii_digit()).unwrap_or(t.len());
    let (num, unit) = t.split_at(split);
    let n: u64 = num.parse().map_err(|_| format!("{s:?} is not a size (for example 64MiB, 500k or 4096)"))?;
    let mult: u64 = match unit.trim().to_ascii_lowercase().as_str() {
        "" | "b" => 1,
        "k" | "kb" | "kib" => 1 << 10,
        "m" | "mb" | "mib" => 1 << 20,
        "g" | "gb" | "gib" => 1 << 30,
        "t" | "tb" | "tib" => 1 << 40,
        _ => return Err(format!("{s:?}: unknown unit {unit:?} (use k, M, G or T, powers of 1024)")),
    };
    let v = n.checked_mul(mult).ok_or_else(|| format!("{s:?} is too large"))?;
    if v == 0 {
        return Err("a size of 0 would refuse everything; give at least 1 byte".into());
    }
    Ok(v)
}

/// `10.0.0.0/8`, `192.0.2.7` (one host), `2001:db8::/32`.
fn parse_cidr(s: &str) -> Result<ipnet::IpNet, String> {
    s.parse::<ipnet::IpNet>()
        .or_else(|_| s.parse::<std::net::IpAddr>().map(ipnet::IpNet::from))
        .map_err(|_| format!("{s:?} is not an address or CIDR (for example 10.0.0.0/8 or 192.0.2.7)"))
}

#[derive(Args, Debug)]
pub struct AdminArgs {
    /// The server's database: its SQLite file, or its postgres:// URL.
    #[arg(long, global = true, default_value = "viewport.db", env = "VIEWPORT_DB", value_name = "FILE|URL")]
    pub db: String,
    /// Print JSON instead of text.
    #[arg(long, global = true)]
    pub json: bool,
    #[command(subcommand)]
    pub command: AdminCommand,
}

#[derive(Subcommand, Debug)]
pub enum AdminCommand {
    /// Users (accounts that sign in to the web pages).
    #[command(subcommand)]
    User(UserCommand),
    /// Workspaces (orgs).
    #[command(subcommand)]
    Org(OrgCommand),
    /// Workspace memberships.
    #[command(subcommand)]
    Member(MemberCommand),
    /// Paired machines of a workspace.
    #[command(subcommand)]
    Machine(MachineCommand),
    /// Pairing codes.
    #[command(subcommand)]
    Pairing(PairingCommand),
    /// Recorded sessions (what the relay stored).
    #[command(subcommand)]
    Session(SessionCommand),
    /// The audit log: who did what and when in a workspace.
    #[command(subcommand)]
    Audit(AuditCommand),
    /// Releases `vpd update` finds here (signed offline with `viewport-server release sign`).
    #[command(subcommand)]
    Release(AdminReleaseCommand),
    /// The relay-token signing keys every instance on this database shares.
    #[command(subcommand)]
    Keys(KeysCommand),
    /// Check the database: reachable, schema version, what it says about itself, the keys.
    #[command(after_help = "Example:\n  viewport-server admin doctor --db postgres://viewport@db.internal/viewport")]
    Doctor,
}

#[derive(Subcommand, Debug)]
pub enum KeysCommand {
    /// List the keys that verify relay tokens (the newest signs).
    List,
    /// Make a new signing key for every instance; the previous one keeps verifying for a
    /// relay token's lifetime (11 minutes), so no machine is cut off.
    #[command(after_help = "Example:\n  viewport-server admin keys rotate --db postgres://viewport@db.internal/viewport")]
    Rotate,
}

#[derive(Subcommand, Debug)]
pub enum AdminReleaseCommand {
    /// Store a signed release; `GET /api/releases/latest?os=&arch=` offers the newest.
    #[command(
        after_help = "Example:\n  viewport-server release sign viewport-0.2.0-linux-x86_64.tar.gz --key keys/release.key --version 0.2.0 --os linux --arch x86_64\n  viewport-server admin release publish viewport-0.2.0-linux-x86_64.tar.gz --signature viewport-0.2.0-linux-x86_64.tar.gz.minisig\n\nMachines use it with `vpd update --source https://HOST/api/releases --trust-key release.pub`."
    )]
    Publish {
        /// The release archive.
        file: PathBuf,
        /// Its signature (`FILE.minisig`, from `viewport-server release sign`).
        #[arg(long)]
        signature: PathBuf,
    },
    /// List the published releases, newest first.
    List,
}

#[derive(Subcommand, Debug)]
pub enum AuditCommand {
    /// List a workspace's audit log, newest first (admin-CLI actions show as `cli:<os user>`).
    #[command(after_help = "Example:\n  viewport-server admin audit list --org acme --json")]
    List {
        /// Workspace id or slug.
        #[arg(long)]
        org: String,
    },
}

fn parse_role(s: &str) -> Result<crate::roles::Role, String> {
    s.parse()
}

#[derive(Subcommand, Debug)]
pub enum SessionCommand {
    /// List a workspace's recorded sessions, newest first.
    List {
        /// Workspace id or slug.
        #[arg(long)]
        org: String,
    },
    /// Show one session (found in any workspace): a header and its output as text.
    Show {
        session_id: String,
        /// Write only the session's output bytes, exactly as recorded, to standard output.
        #[arg(long)]
        raw: bool,
    },
}

#[derive(Subcommand, Debug)]
pub enum UserCommand {
    /// Create a user; the password is read from standard input.
    Create {
        email: String,
        /// Read the password from standard input (required; keeps it out of the process list).
        #[arg(long)]
        password_stdin: bool,
    },
}

#[derive(Subcommand, Debug)]
pub enum OrgCommand {
    /// Create a workspace; prints its id.
    #[command(after_help = "Example:\n  viewport-server admin org create 'Acme Engineering' --slug acme --owner ann@example.com")]
    Create {
        name: String,
        #[arg(long)]
        slug: String,
        /// An existing user who becomes the workspace's owner (else the first member added).
        #[arg(long, value_name = "EMAIL")]
        owner: Option<String>,
    },
    /// List every workspace.
    List,
}

#[derive(Subcommand, Debug)]
pub enum MemberCommand {
    /// Add an existing user to a workspace.
    #[command(after_help = "Example:\n  viewport-server admin member add --org acme --user bob@example.com --role admin")]
    Add {
        /// Workspace id or slug.
        #[arg(long)]
        org: String,
        /// The user's email.
        #[arg(long)]
        user: String,
        /// owner, admin or member (default: member; owner for a workspace that has none yet).
        #[arg(long, value_parser = parse_role)]
        role: Option<crate::roles::Role>,
    },
    /// Change a member's role (a workspace always keeps an owner).
    #[command(after_help = "Example:\n  viewport-server admin member role --org acme --user bob@example.com owner")]
    Role {
        #[arg(long)]
        org: String,
        #[arg(long)]
        user: String,
        /// owner, admin or member.
        #[arg(value_parser = parse_role)]
        role: crate::roles::Role,
    },
    /// Remove a user from a workspace; revokes every machine they paired there.
    Remove {
        #[arg(long)]
        org: String,
        #[arg(long)]
        user: String,
    },
    /// List a workspace's members.
    List {
        #[arg(long)]
        org: String,
    },
}

#[derive(Subcommand, Debug)]
pub enum MachineCommand {
    /// List a workspace's machines.
    List {
        #[arg(long)]
        org: String,
    },
    /// Revoke a machine's pairing (by machine id or runtime target id).
    Revoke {
        #[arg(long)]
        org: String,
        machine_id: String,
    },
}

#[derive(Subcommand, Debug)]
pub enum PairingCommand {
    /// Approve a pending code (from `vpd pair`) as a member of the workspace.
    Approve {
        code: String,
        #[arg(long)]
        org: String,
        #[arg(long)]
        user: String,
    },
    /// Make an "add machine" code for `vpd pair CODE`, paired as USER.
    Mint {
        #[arg(long)]
        org: String,
        #[arg(long)]
        user: String,
    },
}

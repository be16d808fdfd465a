//! `vpd`: the command line of the Viewport machine daemon. A thin client: pairing, unpairing
//! and status go through the daemon's local API (started on demand); binding commands edit
//! the binding files directly under the home lock, so `vpd hint` stays fast enough for every
//! shell prompt.

mod dirs;
mod hook;
mod install;
mod logs;
mod output;
mod pair;
mod prompt;
mod run;
mod status;
mod ui;
mod update;

use clap::{Parser, Subcommand};
use output::Out;
use std::path::PathBuf;
use std::process::ExitCode;
use vpd_daemon::{Error, Home};

const EXAMPLES: &str = "\
Examples:
  vpd install                              start the daemon (nothing leaves this machine)
  vpd pair --org acme                      pair with an org through the browser
  vpd bind ~/work/api --org acme           stream sessions started in ~/work/api
  vpd bind ~/code --org acme --recursive   ... in every repository below ~/code
  vpd status                               pairings, their state, bound directories
  eval \"$(vpd hook bash)\"                   ask about .viewport/workspace.yaml hints on cd

Files live in $VIEWPORT_HOME (else $VPD_HOME, else ~/.viewport); logs in its logs/ folder.";

#[derive(Parser)]
#[command(name = "vpd", version = vpd_daemon::VERSION, about = "Viewport machine daemon: pair with orgs, bind directories, stream agent sessions", after_help = EXAMPLES)]
struct Cli {
    /// Print machine-readable JSON on stdout instead of text.
    #[arg(long, global = true)]
    json: bool,
    /// Use this home instead of $VIEWPORT_HOME (else $VPD_HOME, else ~/.viewport).
    #[arg(long, global = true, value_name = "DIR")]
    home: Option<PathBuf>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Create the home, save a default server and start the daemon. Nothing leaves the machine.
    #[command(
        after_help = "Registers a login item (XDG autostart): the desktop app when it is installed next to vpd, else `vpd daemon`.\n\nExamples:\n  vpd install\n  vpd install --server https://viewport.example.com\n  vpd install --no-login-item   (start the daemon yourself, e.g. from a user service)"
    )]
    Install {
        /// Platform URL to pair with by default.
        #[arg(long, value_name = "URL")]
        server: Option<String>,
        /// What starts the daemon at login: `autostart` (the login item: the tray app when it
        /// is installed beside vpd, else `vpd daemon`), `systemd` (a user unit, for headless
        /// Linux machines) or `none`. One of them: choosing one removes the other.
        #[arg(long, value_name = "KIND", default_value = "autostart")]
        service: vpd_daemon::service::Service,
        /// The same as --service none.
        #[arg(long)]
        no_login_item: bool,
    },
    /// Stop the daemon and remove the login item install registered for this home; with
    /// --purge also unpair every org and delete the home.
    #[command(after_help = "--purge tells each platform it is leaving (best effort), deletes the keyring entries, \
offers to remove the binding files vpd wrote in bound directories, and removes the home. \
A login item that starts another home is left in place.\n\n\
Examples:\n  vpd uninstall\n  vpd uninstall --purge\n  vpd uninstall --purge --yes --remove-bindings   (scripts)")]
    Uninstall {
        /// Unpair every org (telling each platform) and delete the home directory.
        #[arg(long)]
        purge: bool,
        /// Do not ask for confirmation.
        #[arg(long)]
        yes: bool,
        /// With --purge: also remove the binding files (.viewport/local.yaml) vpd wrote.
        #[arg(long, requires = "purge", conflicts_with = "keep_bindings")]
        remove_bindings: bool,
        /// With --purge: leave the binding files in bound directories (they grant nothing
        /// once the home is gone).
        #[arg(long, requires = "purge")]
        keep_bindings: bool,
    },
    /// Pair this machine with an org: approve a code in the browser (or use a code from "Add machine").
    #[command(
        after_help = "The server is --server, else $VIEWPORT_SERVER_URL, else the default saved by `vpd install --server` or the last pairing, else https://api.getviewport.com.\n\nExamples:\n  vpd pair\n  vpd pair --org acme --server https://viewport.example.com\n  vpd pair --server https://viewport.internal --ca-file company-ca.pem\n  vpd pair --server https://new.example --org acme --move-bindings-from https://old.example\n  vpd pair BCDF-GHJK            (a code from the platform's \"Add machine\" page)\n  vpd pair --no-browser --json  (scripts: first line has the code and URL)"
    )]
    Pair {
        /// A code minted by the platform's "Add machine" page.
        code: Option<String>,
        /// Platform URL.
        #[arg(long, value_name = "URL", env = "VIEWPORT_SERVER_URL")]
        server: Option<String>,
        /// Only accept an approval for this org (workspace ULID, slug or name); pre-selects it.
        #[arg(long)]
        org: Option<String>,
        /// Machine name shown to the approver (default: the host name).
        #[arg(long)]
        name: Option<String>,
        /// Do not open the browser; just print the URL.
        #[arg(long)]
        no_browser: bool,
        /// Replace an existing pairing with the same org without asking.
        #[arg(long)]
        force: bool,
        /// Allow plain HTTP to a non-loopback server (kept on the pairing, shown in status).
        #[arg(long)]
        insecure_http: bool,
        /// Also trust this CA (PEM) for the server and its relay, besides the system's
        /// certificates: a self-hosted server on an internal CA. Stored with the pairing.
        #[arg(long, value_name = "FILE")]
        ca_file: Option<std::path::PathBuf>,
        /// After pairing, move the bindings made for the same org on this other server to the
        /// new pairing (a company moving its platform); asks first.
        #[arg(long, value_name = "URL")]
        move_bindings_from: Option<String>,
        /// With --move-bindings-from: move without asking.
        #[arg(long, requires = "move_bindings_from")]
        yes: bool,
        /// Directory bindings kept from an earlier pairing with this org on this server
        /// resume without asking (else `vpd pair` asks; without a yes they stay inert).
        #[arg(long)]
        resume_bindings: bool,
    },
    /// Remove a pairing: its credentials and key. Tells the platform if it can. Its directory
    /// bindings stay, inert, until the org is paired again and you resume them.
    #[command(
        after_help = "Works offline: the pairing is removed locally even when the platform cannot be reached.\n\nExamples:\n  vpd unpair --org acme\n  vpd unpair --org acme --forget-bindings   (also remove the bindings)\n  vpd unpair --org 01J7M8N9P0Q1R2S3T4V5V6W7X8"
    )]
    Unpair {
        /// Workspace ULID, slug or name (default: the only one paired).
        #[arg(long)]
        org: Option<String>,
        /// Also remove the org's directory bindings (records and unchanged local.yaml files).
        #[arg(long)]
        forget_bindings: bool,
    },
    /// Rename this machine in an org: the org's Machines page shows the new name.
    #[command(
        after_help = "--org may be left out when exactly one org is paired.\n\nExamples:\n  vpd rename \"Ann's laptop\"\n  vpd rename build-box-2 --org acme"
    )]
    Rename {
        /// The new name (1-100 characters).
        name: String,
        /// Workspace ULID, slug or name (default: the only one paired).
        #[arg(long)]
        org: Option<String>,
    },
    /// Let sessions started in DIR (default: here) stream to an org. Writes DIR/.viewport/local.yaml.
    #[command(
        after_help = "--org may be left out when exactly one org is paired.\n\nExamples:\n  vpd bind --org acme\n  vpd bind ~/work/api --org acme\n  vpd bind ~/code --recursive   (every repository below ~/code; one org paired)"
    )]
    Bind {
        dir: Option<PathBuf>,
        /// Workspace ULID, slug or name of a current pairing (default: the only one paired).
        #[arg(long)]
        org: Option<String>,
        /// Also apply inside repositories below DIR.
        #[arg(long)]
        recursive: bool,
        /// Replace a binding to another org without asking.
        #[arg(long)]
        yes: bool,
    },
    /// Stop sessions in DIR (default: here) from streaming. Removes DIR/.viewport/local.yaml.
    #[command(after_help = "Examples:\n  vpd unbind\n  vpd unbind ~/work/api")]
    Unbind { dir: Option<PathBuf> },
    /// Trust a .viewport/local.yaml that was not made on this machine (committed, copied or edited).
    #[command(after_help = "Examples:\n  vpd trust\n  vpd trust ~/src/cloned-repo --yes")]
    Trust {
        dir: Option<PathBuf>,
        /// Do not ask for confirmation.
        #[arg(long)]
        yes: bool,
    },
    /// Check DIR (default: here) for a workspace.yaml hint or an untrusted binding and ask about it.
    #[command(
        after_help = "Run by the shell hook on every directory change; fast enough for every prompt.\n\nExamples:\n  vpd hint\n  vpd hint --reset          (ask again about this directory)\n  vpd hint --reset --all    (forget every \"no\")"
    )]
    Hint {
        dir: Option<PathBuf>,
        /// Forget the remembered "no" for DIR (and below).
        #[arg(long)]
        reset: bool,
        /// With --reset: forget every remembered "no".
        #[arg(long, requires = "reset")]
        all: bool,
        /// Never ask; only print.
        #[arg(long)]
        no_prompt: bool,
    },
    /// Print the shell hook that runs `vpd hint` when the directory changes.
    #[command(
        after_help = "Examples:\n  echo 'eval \"$(vpd hook bash)\"' >> ~/.bashrc\n  echo 'eval \"$(vpd hook zsh)\"' >> ~/.zshrc\n  echo 'vpd hook fish | source' >> ~/.config/fish/config.fish"
    )]
    Hook { shell: hook::Shell },
    /// Show which org a session started in DIR (default: here) would stream to, and why.
    #[command(after_help = "Examples:\n  vpd resolve\n  vpd resolve ~/work/api --json")]
    Resolve { dir: Option<PathBuf> },
    /// Daemon, pairings and their state, bound directories.
    #[command(after_help = "Examples:\n  vpd status\n  vpd status --json")]
    Status,
    /// Check permissions, keyring, files, servers, relays and the clock; print a fix for each problem.
    #[command(after_help = "Repairs nothing. Exit status 1 when a check fails.\n\nExamples:\n  vpd doctor\n  vpd doctor --json")]
    Doctor,
    /// Print the daemon's logs.
    #[command(after_help = "Examples:\n  vpd logs\n  vpd logs --since 1h\n  vpd logs --follow")]
    Logs {
        /// Keep printing new lines.
        #[arg(long, short)]
        follow: bool,
        /// Only lines newer than this (e.g. 30m, 2h, 1d).
        #[arg(long, value_name = "DURATION")]
        since: Option<String>,
    },
    /// Run the daemon in the foreground (`vpd daemon stop` stops a running one).
    #[command(after_help = "Examples:\n  vpd daemon\n  vpd daemon stop")]
    Daemon {
        #[arg(value_enum, default_value = "run")]
        action: install::DaemonAction,
    },
    /// Run a command as a session: under a pseudo-terminal, streamed if its directory is bound.
    #[command(
        after_help = "One line on stderr says where the session streams. The exit code is the command's.\n\nExamples:\n  vpd run -- claude\n  vpd run --cwd ~/work/api --name fix-tests -- aider --yes\n  vpd run -- sh -c 'make test'\n  vpd run --no-pty -- make test   (no terminal: the output streamed byte for byte)"
    )]
    Run {
        /// Directory to run in (default: here). The binding is resolved here, once.
        #[arg(long)]
        cwd: Option<PathBuf>,
        /// A name for the session.
        #[arg(long)]
        name: Option<String>,
        /// Run without a pseudo-terminal: the output goes through plain pipes and is streamed
        /// byte for byte (scripts, CI logs; on Windows the console re-renders what a
        /// pseudo-console shows).
        #[arg(long)]
        no_pty: bool,
        /// The command and its arguments.
        #[arg(last = true, required = true)]
        command: Vec<String>,
    },
    /// List sessions with their pinned org and streaming state.
    #[command(after_help = "Examples:\n  vpd sessions\n  vpd sessions --json")]
    Sessions,
    /// Stream a session an integration runs itself: start, frame, end.
    #[command(
        subcommand,
        after_help = "Examples:\n  id=$(vpd session start --agent my-agent)\n  echo hello | vpd session frame $id\n  vpd session end $id --exit-code 0"
    )]
    Session(SessionCmd),
    /// Retry the relay connection now (all pairings, or one).
    #[command(after_help = "Examples:\n  vpd reconnect\n  vpd reconnect --org acme")]
    Reconnect {
        #[arg(long)]
        org: Option<String>,
    },
    /// Open the web UI in the browser through a one-time login link.
    #[command(
        after_help = "The link works once, for two minutes; the UI is served on 127.0.0.1 only.\n\nExamples:\n  vpd ui\n  vpd ui --no-browser          (print the link instead)\n  vpd ui --no-browser --json   (scripts and tests)"
    )]
    Ui {
        /// Print the link instead of opening the browser.
        #[arg(long)]
        no_browser: bool,
    },
    /// Install the newest release from the update source this machine trusts (or --check).
    #[command(after_help = "Releases must be signed by the key that goes with the source: the one built into vpd, or the one you \
trusted with --source/--trust-key (its fingerprint is shown and asked about; no org, server or setting elsewhere can change it). \
The whole set of binaries is swapped at once; pairings, bindings and running sessions carry on. An installation made by a \
package manager is never overwritten: vpd names its command.\n\n\
Examples:\n  vpd update --check\n  vpd update\n  vpd update --source https://viewport.example.com/api/releases --trust-key release.pub\n  vpd update --rollback   (back to the previous version and its configuration)")]
    Update {
        /// Only say whether a newer release is available.
        #[arg(long, conflicts_with = "rollback")]
        check: bool,
        /// Go back to the version before the last update, with the configuration from then.
        #[arg(long)]
        rollback: bool,
        /// Take updates from this source from now on (https; http only on loopback).
        #[arg(long, value_name = "URL", requires = "trust_key")]
        source: Option<String>,
        /// The source's release key (`release.pub`): only releases it signed are installed.
        #[arg(long, value_name = "FILE", requires = "source")]
        trust_key: Option<PathBuf>,
        /// Do not ask (trusting a key: only after comparing its fingerprint yourself).
        #[arg(long)]
        yes: bool,
    },
    /// Print shell completions.
    #[command(
        after_help = "Examples:\n  vpd completions bash > ~/.local/share/bash-completion/completions/vpd\n  vpd completions zsh > ~/.zfunc/_vpd"
    )]
    Completions { shell: clap_complete::Shell },
}

#[derive(Subcommand)]
enum SessionCmd {
    /// Start a session in DIR (default: here); prints its id.
    Start {
        #[arg(long)]
        cwd: Option<PathBuf>,
        /// The agent's name, shown to the org.
        #[arg(long, default_value = "script")]
        agent: String,
        #[arg(long)]
        name: Option<String>,
    },
    /// Append a frame (the bytes of --data, else stdin).
    Frame {
        id: String,
        #[arg(long, value_enum, default_value = "output")]
        kind: FrameKindArg,
        #[arg(long)]
        data: Option<String>,
    },
    /// End a session.
    End {
        id: String,
        #[arg(long)]
        exit_code: Option<i32>,
        #[arg(long)]
        reason: Option<String>,
    },
}

#[derive(Clone, Copy, clap::ValueEnum)]
enum FrameKindArg {
    Output,
    Input,
    Resize,
    Event,
}

impl From<FrameKindArg> for vpd_proto::relay::FrameKind {
    fn from(k: FrameKindArg) -> Self {
        match k {
            FrameKindArg::Output => Self::Output,
            FrameKindArg::Input => Self::Input,
            FrameKindArg::Resize => Self::Resize,
            FrameKindArg::Event => Self::Event,
        }
    }
}

/// `--home DIR`, when given.
static HOME_FLAG: std::sync::OnceLock<Option<PathBuf>> = std::sync::OnceLock::new();

fn main() -> ExitCode {
    // The shell hook runs a bare `vpd hint` at every prompt: answer it without building the
    // whole command-line parser (the rest of `vpd hint …` goes through clap as usual).
    let mut args = std::env::args_os().skip(1);
    if let (Some(verb), None) = (args.next(), args.next()) {
        if verb == "hint" {
            let out = Out { json: false };
            let r = home().and_then(|h| cwd_or(None).and_then(|cwd| dirs::hint(&h, &cwd, false, false, false, &out)));
            return r.unwrap_or_else(|e| {
                out.error(&e);
                ExitCode::from(1)
            });
        }
    }
    let cli = Cli::parse();
    let _ = HOME_FLAG.set(cli.home.clone());
    let out = Out { json: cli.json };
    match run(cli.command, &out) {
        Ok(code) => code,
        Err(e) => {
            out.error(&e);
            ExitCode::from(1)
        }
    }
}

fn home() -> Result<Home, Error> {
    Home::resolve(HOME_FLAG.get().and_then(|h| h.as_deref()))
}

/// `--org` as given, else the only org paired (SPEC A4); several or none is an error that
/// says what to pass.
fn the_org(home: &Home, org: Option<String>) -> Result<String, Error> {
    match org {
        Some(o) => Ok(o),
        None => Ok(vpd_daemon::config::read(home)?.select_or_only(None)?.workspace_id.clone()),
    }
}

fn cwd_or(dir: Option<PathBuf>) -> Result<PathBuf, Error> {
    match dir {
        Some(d) => Ok(d),
        None => std::env::current_dir().map_err(|e| Error::io("the current directory", e)),
    }
}

fn run(command: Command, out: &Out) -> Result<ExitCode, Error> {
    match command {
        Command::Install { server, service, no_login_item } => {
            let service = if no_login_item { vpd_daemon::service::Service::None } else { service };
            install::install(&home()?, server, service, out)
        }
        Command::Ui { no_browser } => ui::open(&home()?, no_browser, out),
        Command::Uninstall { purge, yes, remove_bindings, keep_bindings } => {
            let bindings = match (remove_bindings, keep_bindings) {
                (true, _) => Some(true),
                (_, true) => Some(false),
                _ => None,
            };
            install::uninstall(&home()?, install::Uninstall { purge, yes, remove_bindings: bindings }, out)
        }
        Command::Daemon { action } => install::daemon(home()?, action, out),
        Command::Pair { code, server, org, name, no_browser, force, insecure_http, ca_file, move_bindings_from, yes, resume_bindings } => {
            let ca_pem = match ca_file {
                Some(f) => Some(
                    std::fs::read_to_string(&f)
                        .map_err(|e| Error::new(vpd_daemon::ErrorCode::InvalidArgument, format!("cannot read the CA file {}: {e}", f.display())))?,
                ),
                None => None,
            };
            let proxy = Some(vpd_daemon::proxy::ProxyEnv::from_env()).filter(|p| !p.is_empty());
            let params = vpd_daemon::api::protocol::PairParams { server, org, name, code, force, insecure_http, ca_pem, proxy };
            pair::pair(&home()?, params, no_browser, move_bindings_from.map(|from| pair::Move { from, yes }), resume_bindings, out)
        }
        Command::Unpair { org, forget_bindings } => {
            let home = home()?;
            let org = the_org(&home, org)?;
            pair::unpair(&home, &org, forget_bindings, out)
        }
        Command::Rename { name, org } => {
            let home = home()?;
            let org = the_org(&home, org)?;
            pair::rename(&home, &org, name, out)
        }
        Command::Bind { dir, org, recursive, yes } => {
            let home = home()?;
            let org = the_org(&home, org)?;
            dirs::bind(&home, &cwd_or(dir)?, org, recursive, yes, out)
        }
        Command::Unbind { dir } => dirs::unbind(&home()?, &cwd_or(dir)?, out),
        Command::Trust { dir, yes } => dirs::trust(&home()?, &cwd_or(dir)?, yes, out),
        Command::Hint { dir, reset, all, no_prompt } => dirs::hint(&home()?, &cwd_or(dir)?, reset, all, no_prompt, out),
        Command::Resolve { dir } => dirs::resolve(&home()?, &cwd_or(dir)?, out),
        Command::Hook { shell } => hook::print(shell),
        Command::Status => status::status(&home()?, out),
        Command::Run { cwd, name, no_pty, command } => run::run(&home()?, &cwd_or(cwd)?, name, command, no_pty, out),
        Command::Sessions => run::sessions(&home()?, out),
        Command::Session(SessionCmd::Start { cwd, agent, name }) => run::session_start(&home()?, &cwd_or(cwd)?, agent, name, out),
        Command::Session(SessionCmd::Frame { id, kind, data }) => run::session_frame(&home()?, id, kind.into(), data, out),
        Command::Session(SessionCmd::End { id, exit_code, reason }) => run::session_end(&home()?, id, exit_code, reason, out),
        Command::Reconnect { org } => run::reconnect(&home()?, org, out),
        Command::Doctor => status::doctor(&home()?, out),
        Command::Update { check, rollback, source, trust_key, yes } => {
            update::update(&home()?, update::Args { check, rollback, source, trust_key, yes }, out)
        }
        Command::Logs { follow, since } => logs::logs(&home()?, follow, since, out),
        Command::Completions { shell } => {
            clap_complete::generate(shell, &mut <Cli as clap::CommandFactory>::command(), "vpd", &mut std::io::stdout());
            Ok(ExitCode::SUCCESS)
        }
    }
}

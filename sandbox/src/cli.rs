//! Command line of `burrow`, modelled on bwrap's and podman's flags.

use std::ffi::OsString;
use std::path::PathBuf;

use clap::{ArgAction, Args, Parser, Subcommand, ValueEnum};

#[derive(Debug, Parser)]
#[command(name = "burrow", version, about = "A rootless Linux sandbox")]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run COMMAND (default /bin/sh) in a new sandbox.
    Run(RunArgs),
}

/// How the sandbox's users and groups are mapped to the host's.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum MapUsers {
    /// Also map the caller's subordinate ranges (/etc/subuid, /etc/subgid) with newuidmap/newgidmap when available.
    Auto,
    /// Map only the caller's own uid and gid.
    None,
}

/// The sandbox's network.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum NetMode {
    /// A new network namespace with only `lo`, up.
    None,
    /// Share the host's network namespace.
    Host,
}

#[derive(Debug, Args)]
pub struct RunArgs {
    /// Map the caller to the same uid/gid inside instead of root.
    #[arg(long)]
    pub keep_id: bool,

    /// Map subordinate id ranges too.
    #[arg(long, value_enum, default_value_t = MapUsers::Auto)]
    pub map_users: MapUsers,

    /// Network of the sandbox.
    #[arg(long, value_enum, default_value_t = NetMode::None)]
    pub net: NetMode,

    /// Use DIR as the root filesystem's bottom layer instead of the host's /.
    #[arg(long, value_name = "DIR")]
    pub rootfs: Option<PathBuf>,

    /// Add DIR as a read-only layer above the rootfs (later layers on top).
    #[arg(long, value_name = "DIR", action = ArgAction::Append)]
    pub layer: Vec<PathBuf>,

    /// Keep the sandbox's writes in DIR (the union's upper layer) instead of
    /// a private tmpfs that vanishes with the sandbox.
    #[arg(long, value_name = "DIR", conflicts_with = "read_only")]
    pub upper: Option<PathBuf>,

    /// Make the root filesystem read-only (no upper layer).
    #[arg(long)]
    pub read_only: bool,

    /// Bind-mount SRC on DST, read-write.
    #[arg(long, num_args = 2, value_names = ["SRC", "DST"], action = ArgAction::Append)]
    pub bind: Vec<PathBuf>,

    /// Bind-mount SRC on DST, read-only.
    #[arg(long, num_args = 2, value_names = ["SRC", "DST"], action = ArgAction::Append)]
    pub ro_bind: Vec<PathBuf>,

    /// Mount a fresh tmpfs on DST.
    #[arg(long, value_name = "DST", action = ArgAction::Append)]
    pub tmpfs: Vec<PathBuf>,

    /// Working directory inside (default: the current one if it exists there, else $HOME, else /).
    #[arg(long, value_name = "DIR")]
    pub chdir: Option<PathBuf>,

    /// Set an environment variable.
    #[arg(long, num_args = 2, value_names = ["VAR", "VALUE"], action = ArgAction::Append)]
    pub setenv: Vec<OsString>,

    /// Unset an environment variable.
    #[arg(long, value_name = "VAR", action = ArgAction::Append)]
    pub unsetenv: Vec<OsString>,

    /// Start from an empty environment.
    #[arg(long)]
    pub clearenv: bool,

    /// Hostname inside the sandbox.
    #[arg(long, value_name = "NAME")]
    pub hostname: Option<String>,

    /// Kill the sandbox when the process that started burrow dies.
    #[arg(long)]
    pub die_with_parent: bool,

    /// Run the command in a new session (default unless stdin is a terminal; blocks TIOCSTI).
    #[arg(long, overrides_with = "no_new_session")]
    pub new_session: bool,

    /// Keep the command in the caller's session even when stdin is not a terminal.
    #[arg(long, overrides_with = "new_session")]
    pub no_new_session: bool,

    /// Write JSON lines (child pid, namespace ids, exit code) to file descriptor FD.
    #[arg(long, value_name = "FD")]
    pub json_status: Option<i32>,

    /// The command and its arguments.
    #[arg(
        trailing_var_arg = true,
        allow_hyphen_values = true,
        value_name = "COMMAND"
    )]
    pub command: Vec<OsString>,
}

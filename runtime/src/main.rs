//! `burrow-runtime`: an OCI runtime with runc's command line. Each
//! container is a burrow sandbox: the bundle's config.json becomes the
//! arguments of `burrow run` (see [`spec`]), and the launcher builds it.
//!
//! `create` leaves the container's command waiting before its exec until
//! `start` (see [`lifecycle`]); `run` is both, in the foreground. State is
//! kept under `--root` (see [`container`]).

mod annotations;
mod container;
mod exec;
mod hooks;
mod lifecycle;
mod report;
mod resources;
mod spec;

use std::io::{Read, Write};
use std::path::PathBuf;

use clap::{CommandFactory, Parser, Subcommand, ValueEnum};

use container::StateRoot;

/// An OCI runtime over burrow's rootless sandbox (runc's command line).
#[derive(Debug, Parser)]
#[command(name = "burrow-runtime", version, disable_version_flag = true)]
struct Args {
    /// Where containers' state is kept (default: $XDG_RUNTIME_DIR/burrow-runtime, else
    /// /tmp/burrow-runtime-UID).
    #[arg(long, global = true, value_name = "DIR")]
    root: Option<PathBuf>,
    /// Errors are also written to FILE (as runc's --log).
    #[arg(long, global = true, value_name = "FILE")]
    log: Option<PathBuf>,
    #[arg(long, global = true, value_enum, default_value_t = LogFormat::Text)]
    log_format: LogFormat,
    /// Accepted for runc's command line; burrow-runtime says nothing more.
    #[arg(long, global = true)]
    debug: bool,
    /// runc's: accepted; burrow-runtime makes each container's cgroup
    /// itself, in the cgroup v2 subtree delegated to the caller, whichever
    /// manager is named.
    #[arg(long, global = true)]
    systemd_cgroup: bool,
    /// crun's: disabled places containers in no cgroup of their own (and
    /// ignores config.json's limits, with a warning); cgroupfs and systemd
    /// are as --systemd-cgroup says.
    #[arg(long, global = true, value_enum)]
    cgroup_manager: Option<CgroupManager>,
    /// Print the version (runc's format).
    #[arg(long, short = 'v')]
    version: bool,
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Debug, Clone, Copy, ValueEnum)]
enum LogFormat {
    Text,
    Json,
}

#[derive(Debug, Clone, Copy, ValueEnum)]
enum CgroupManager {
    Cgroupfs,
    Systemd,
    Disabled,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum Format {
    Table,
    Json,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Create and start container ID from a bundle; in the foreground,
    /// wait for it, delete it and exit with its status.
    Run {
        #[command(flatten)]
        create: lifecycle::CreateArgs,
        /// Return once the command runs (as create and start); else wait
        /// for it, then delete the container.
        #[arg(long, short = 'd')]
        detach: bool,
        id: String,
    },
    /// Create container ID from a bundle; its command waits for `start`.
    Create {
        #[command(flatten)]
        create: lifecycle::CreateArgs,
        id: String,
    },
    /// Let a created container's command run.
    Start { id: String },
    /// Print a container's state (runtime-spec JSON).
    State { id: String },
    /// Send a signal (default SIGTERM) to a container's process.
    Kill {
        /// To every process of the container.
        #[arg(long, short = 'a')]
        all: bool,
        id: String,
        #[arg(default_value = "SIGTERM")]
        signal: String,
    },
    /// Remove a container's state; --force ends a running one first.
    Delete {
        #[arg(long, short = 'f')]
        force: bool,
        id: String,
    },
    /// List the containers under --root.
    List {
        #[arg(long, short = 'f', value_enum, default_value_t = Format::Table)]
        format: Format,
        /// Only their IDs.
        #[arg(long, short = 'q')]
        quiet: bool,
    },
    /// The processes of a container (ps(1)'s table, or their pids as JSON).
    Ps {
        #[arg(long, short = 'f', value_enum, default_value_t = Format::Table)]
        format: Format,
        id: String,
        /// Options for ps(1) (default -ef).
        #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
        ps_args: Vec<String>,
    },
    /// What this runtime recognises (runtime-spec features.json).
    Features,
    /// Run another process in a running container.
    Exec(Box<exec::ExecArgs>),
    /// Freeze every process of a container (its cgroup's freezer).
    Pause { id: String },
    /// Thaw a paused container.
    Resume { id: String },
    /// Change a container's limits (its cgroup's).
    Update(Box<UpdateArgs>),
}

/// runc's `update`: runtime-spec's resources object from a file (`-` for
/// stdin), and the flags for the limits burrow sets.
#[derive(Debug, clap::Args)]
struct UpdateArgs {
    #[arg(long, short = 'r', value_name = "FILE")]
    resources: Option<PathBuf>,
    /// Memory limit in bytes (-1: none).
    #[arg(long, allow_hyphen_values = true)]
    memory: Option<i64>,
    /// Memory plus swap, in bytes (-1: no swap limit).
    #[arg(long, allow_hyphen_values = true)]
    memory_swap: Option<i64>,
    /// Most processes (-1: no limit).
    #[arg(long, allow_hyphen_values = true)]
    pids_limit: Option<i64>,
    /// CPU time per period, in microseconds (-1: no limit).
    #[arg(long, allow_hyphen_values = true)]
    cpu_quota: Option<i64>,
    #[arg(long)]
    cpu_period: Option<u64>,
    /// cgroup v1's shares (2 to 262144), as v2's weight.
    #[arg(long)]
    cpu_share: Option<u64>,
    /// cgroup v1's blkio weight (10 to 1000), as v2's io.weight.
    #[arg(long)]
    blkio_weight: Option<u16>,
    id: String,
}

impl UpdateArgs {
    /// The resources asked for: the file's, with the flags' over them.
    fn resources(&self) -> anyhow::Result<oci_spec::runtime::LinuxResources> {
        use anyhow::Context;
        let mut r: serde_json::Value = match &self.resources {
            None => serde_json::json!({}),
            Some(path) => {
                let text = if path.as_os_str() == "-" {
                    std::io::read_to_string(std::io::stdin().lock().take(1 << 20))?
                } else {
                    burrow_sandbox::sys::read_bounded(path, 1 << 20)
                        .map_err(|e| anyhow::anyhow!("--resources {}: {e}", path.display()))?
                };
                serde_json::from_str(&text)
                    .with_context(|| format!("--resources {}", path.display()))?
            }
        };
        let mut set = |section: &str, key: &str, value: serde_json::Value| {
            if !r[section].is_object() {
                r[section] = serde_json::json!({});
            }
            r[section][key] = value;
        };
        for (section, key, value) in [
            ("memory", "limit", self.memory.map(Into::into)),
            ("memory", "swap", self.memory_swap.map(Into::into)),
            ("pids", "limit", self.pids_limit.map(Into::into)),
            ("cpu", "quota", self.cpu_quota.map(Into::into)),
            ("cpu", "period", self.cpu_period.map(Into::into)),
            ("cpu", "shares", self.cpu_share.map(Into::into)),
            ("blockIO", "weight", self.blkio_weight.map(Into::into)),
        ] {
            if let Some(v) = value {
                set(section, key, v);
            }
        }
        serde_json::from_value(r).context("update: the resources")
    }
}

fn main() {
    let args = Args::parse();
    let code = match real_main(&args) {
        Ok(code) => code,
        Err(e) => {
            let msg = burrow_sandbox::error::one_line(&format!("{e:#}"));
            eprintln!("burrow-runtime: {msg}");
            log_error(&args, &msg);
            1
        }
    };
    std::process::exit(code);
}

fn real_main(args: &Args) -> anyhow::Result<i32> {
    if args.version {
        println!(
            "burrow-runtime version {}\nspec: {}",
            env!("CARGO_PKG_VERSION"),
            oci_spec::runtime::VERSION
        );
        return Ok(0);
    }
    let Some(command) = &args.command else {
        Args::command().print_help()?;
        return Ok(2);
    };
    let root = || StateRoot::open(args.root.as_deref());
    let cgroups = !matches!(args.cgroup_manager, Some(CgroupManager::Disabled));
    match command {
        Command::Run { create, detach, id } => {
            return lifecycle::run(&root()?, id, create, cgroups, *detach);
        }
        Command::Create { create, id } => {
            lifecycle::create(&root()?, id, create, cgroups)?;
        }
        Command::Start { id } => lifecycle::start(&root()?, id)?,
        Command::State { id } => report::state(&root()?, id)?,
        Command::Kill { all, id, signal } => {
            let sig = lifecycle::parse_signal(signal)?;
            lifecycle::kill(&root()?, id, sig, *all)?;
        }
        Command::Delete { force, id } => lifecycle::delete(&root()?, id, *force)?,
        Command::List { format, quiet } => report::list(&root()?, *format == Format::Json, *quiet)?,
        Command::Ps {
            format,
            id,
            ps_args,
        } => report::ps(&root()?, id, *format == Format::Json, ps_args)?,
        Command::Features => report::features()?,
        Command::Exec(args) => return exec::exec(&root()?, args),
        Command::Pause { id } => lifecycle::freeze(&root()?, id, true)?,
        Command::Resume { id } => lifecycle::freeze(&root()?, id, false)?,
        Command::Update(u) => lifecycle::update(&root()?, &u.id, &u.resources()?)?,
    }
    Ok(0)
}

/// Appends `msg` to --log, as runc writes its errors there (engines read
/// them back from it).
fn log_error(args: &Args, msg: &str) {
    let Some(path) = &args.log else { return };
    let line = match args.log_format {
        LogFormat::Text => format!("level=error msg={msg:?}\n"),
        LogFormat::Json => format!("{}\n", serde_json::json!({ "level": "error", "msg": msg })),
    };
    if let Ok(mut f) = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
    {
        let _ = f.write_all(line.as_bytes());
    }
}

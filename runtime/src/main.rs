//! `burrow-runtime`: an OCI runtime with runc's command line. Each
//! container is a burrow sandbox: the bundle's config.json becomes the
//! arguments of `burrow run` (see [`spec`]), and the launcher builds it.
//!
//! This first slice runs a bundle in the foreground (`run`), as `runc run`
//! does; `create`/`start`/`state`/`kill`/`delete` come next.

mod spec;

use std::ffi::OsString;
use std::io::{IsTerminal, Write};
use std::path::{Path, PathBuf};

use burrow_sandbox::cli::{Cli, Command as BurrowCommand};
use burrow_sandbox::config::SandboxConfig;
use clap::{CommandFactory, FromArgMatches, Parser, Subcommand, ValueEnum};

/// An OCI runtime over burrow's rootless sandbox (runc's command line).
#[derive(Debug, Parser)]
#[command(name = "burrow-runtime", version, disable_version_flag = true)]
struct Args {
    /// Where containers' state is kept (default: $XDG_RUNTIME_DIR/burrow-runtime).
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

#[derive(Debug, Subcommand)]
enum Command {
    /// Create and run container ID from a bundle, in the foreground; exit
    /// with its status.
    Run {
        /// The bundle: config.json and the root it names.
        #[arg(long, short = 'b', value_name = "DIR", default_value = ".")]
        bundle: PathBuf,
        id: String,
    },
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
    match &args.command {
        Some(Command::Run { bundle, id }) => run(bundle, id),
        None => {
            Args::command().print_help()?;
            Ok(2)
        }
    }
}

/// A container ID as runc takes them: letters, digits, `_`, `+`, `-`, `.`.
fn check_id(id: &str) -> anyhow::Result<()> {
    let ok = |c: char| c.is_ascii_alphanumeric() || matches!(c, '_' | '+' | '-' | '.');
    if id.is_empty() || id == "." || id == ".." || !id.chars().all(ok) {
        anyhow::bail!("invalid container id {id:?}: letters, digits, '_', '+', '-' and '.'");
    }
    Ok(())
}

fn run(bundle: &Path, id: &str) -> anyhow::Result<i32> {
    check_id(id)?;
    let (spec, bundle) = spec::load(bundle)?;
    let run_args = spec::run_args(&spec, &bundle)?;
    let mut argv: Vec<OsString> = vec!["burrow".into(), "run".into()];
    argv.extend(run_args);
    // The one description of a sandbox: parsed as `burrow run` parses it.
    let matches = Cli::command()
        .try_get_matches_from(&argv)
        .map_err(|e| anyhow::anyhow!("the sandbox's arguments: {e}"))?;
    let cli = Cli::from_arg_matches(&matches)?;
    let BurrowCommand::Run(run) = cli.command else {
        unreachable!("the arguments name the run subcommand");
    };
    let sub = matches
        .subcommand_matches("run")
        .expect("clap matched the run subcommand");
    let cfg = SandboxConfig::from_args(*run, sub, std::io::stdin().is_terminal())?;
    Ok(burrow_sandbox::launch::run(&cfg)?)
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

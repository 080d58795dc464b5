//! `burrow`: run a command in a rootless sandbox.

use std::io::IsTerminal;

use burrow_sandbox::cli::{Cli, Command, ImageCommand};
use burrow_sandbox::config::SandboxConfig;
use burrow_sandbox::error::EXIT_SETUP;
use clap::{CommandFactory, FromArgMatches};

fn main() {
    let code = match real_main() {
        Ok(code) => code,
        Err(e) => {
            eprintln!(
                "burrow: {}",
                burrow_sandbox::error::one_line(&format!("{e:#}"))
            );
            e.downcast_ref::<burrow_sandbox::Error>()
                .map_or(EXIT_SETUP, |e| e.exit_code())
        }
    };
    std::process::exit(code);
}

fn real_main() -> anyhow::Result<i32> {
    let args = burrow_sandbox::profile::expand(std::env::args_os().collect())
        .map_err(burrow_sandbox::Error::usage)?;
    let matches = Cli::command().get_matches_from(args);
    let cli = Cli::from_arg_matches(&matches).unwrap_or_else(|e| e.exit());
    match cli.command {
        Command::Run(args) => {
            let sub = matches
                .subcommand_matches("run")
                .expect("clap matched the run subcommand");
            let cfg = SandboxConfig::from_args(*args, sub, std::io::stdin().is_terminal())?;
            Ok(burrow_sandbox::launch::run(&cfg)?)
        }
        Command::Gc => {
            let n = burrow_sandbox::cgroup::gc();
            println!("removed {n} stale cgroup{}", if n == 1 { "" } else { "s" });
            Ok(0)
        }
        Command::Pull(args) => {
            println!("{}", burrow_sandbox::image::pull(&args)?);
            Ok(0)
        }
        Command::Images {
            inspect: true,
            references,
        } => {
            println!("{}", burrow_sandbox::image::inspect(&references)?);
            Ok(0)
        }
        Command::Images { .. } => {
            print!("{}", burrow_sandbox::image::images()?);
            Ok(0)
        }
        Command::Rmi { references } => {
            print!("{}", burrow_sandbox::image::rmi(&references)?);
            Ok(0)
        }
        Command::Commit(args) => {
            println!("{}", burrow_sandbox::image::commit(&args)?);
            Ok(0)
        }
        Command::Save(args) => {
            println!("{}", burrow_sandbox::image::save(&args)?);
            Ok(0)
        }
        Command::Image(ImageCommand::Prune) => {
            print!("{}", burrow_sandbox::image::prune()?);
            Ok(0)
        }
    }
}

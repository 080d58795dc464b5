//! `burrow run --profile FILE`: run options kept in a file, so that an
//! application has a reusable policy. Each key is a long flag of `burrow
//! run` (`cap-add`, `ro-bind`, `seccomp`, ...) and `command` is the
//! command; TOML, or JSON for a `.json` file. The file's flags are put
//! before the command line's, so the command line wins: its values replace
//! single-valued options and add to repeatable ones.
//!
//! ```toml
//! seccomp = "strict"
//! landlock = true
//! ro-bind = [["/srv/data", "/data"]]
//! setenv = { LANG = "C.UTF-8" }
//! rlimit = ["nofile=256"]
//! command = ["python3", "/data/job.py"]
//! ```

use std::ffi::OsString;
use std::path::Path;

use clap::parser::ValueSource;
use clap::{ArgAction, CommandFactory};
use serde_json::Value;

use crate::cli::Cli;

/// `args` (as the process got them) with the profile's flags put in, or
/// unchanged without `--profile`. An error is one line naming the file,
/// the key and the problem.
pub fn expand(args: Vec<OsString>) -> Result<Vec<OsString>, String> {
    // Most starts have no profile: no second parse of the command line.
    if !args.iter().any(|a| {
        let a = a.as_encoded_bytes();
        a.starts_with(b"--profile") || a == b"--hpc"
    }) {
        return Ok(args);
    }
    // Errors are left for the full parse: an option the profile supplies
    // (`vm = true` for a command line's `--vm-accel`) may be missing here.
    let Ok(matches) = Cli::command()
        .mut_subcommand("run", |run| run.ignore_errors(true))
        .try_get_matches_from(&args)
    else {
        return Ok(args); // clap reports it when the caller parses
    };
    let Some(("run", sub)) = matches.subcommand() else {
        return Ok(args);
    };
    let file = sub.get_one::<std::path::PathBuf>("profile");
    let hpc = sub.get_flag("hpc");
    if file.is_none() && !hpc {
        return Ok(args);
    }
    let has_command = sub.get_many::<OsString>("command").is_some();
    // Options the command line sets itself: a single-valued one replaces
    // the profile's (repeating one on the command line is clap's error).
    let given: Vec<String> = sub
        .ids()
        .filter(|id| sub.value_source(id.as_str()) == Some(ValueSource::CommandLine))
        .map(|id| id.as_str().to_string())
        .collect();
    let (mut flags, command) = match file {
        Some(file) => read(file, &given)?,
        None => (Vec::new(), None),
    };
    if hpc {
        // (After the profile's: a profile's single-valued flags win too.)
        let mut taken = given.clone();
        taken.extend(profile_ids(&flags));
        // (A network namespace given is the network: not --net host.)
        if taken.iter().any(|id| id == "netns") {
            taken.push("net".into());
        }
        // (Nor a variable the profile or the command line sets or unsets.)
        let named = env_names(flags.iter().chain(args.iter()));
        flags.extend(flags_of(&hpc_preset(&named), "--hpc", &taken)?);
    }
    let run_at = args
        .iter()
        .position(|a| a == "run")
        .expect("clap matched the run subcommand");
    let mut out: Vec<OsString> = args[..=run_at].to_vec();
    out.extend(flags);
    out.extend_from_slice(&args[run_at + 1..]);
    if let (false, Some(command)) = (has_command, command) {
        if out.last().is_none_or(|a| a != "--") {
            out.push("--".into());
        }
        out.extend(command);
    }
    Ok(out)
}

/// The most a profile file may hold.
const MAX_PROFILE: u64 = 1 << 20;

/// The flags a profile file stands for (less the single-valued ones whose
/// ids are in `given`), and its command.
fn read(file: &Path, given: &[String]) -> Result<(Vec<OsString>, Option<Vec<OsString>>), String> {
    let name = file.display();
    let text = crate::sys::read_bounded(file, MAX_PROFILE)
        .map_err(|why| format!("profile {name}: {why}"))?;
    let doc: Value = if file.extension().is_some_and(|e| e == "json") {
        serde_json::from_str(&text).map_err(|e| format!("profile {name}: {e}"))?
    } else {
        toml::from_str(&text)
            .map_err(|e| format!("profile {name}: {}", one_line(&e.to_string())))?
    };
    let Value::Object(table) = doc else {
        return Err(format!("profile {name}: expected a table of options"));
    };
    let command =
        match table.get("command") {
            Some(v) => Some(command_words(v).ok_or_else(|| {
                format!("profile {name}: key 'command': expected a list of strings")
            })?),
            None => None,
        };
    let flags = flags_of(&table, &format!("profile {name}"), given)?;
    Ok((flags, command))
}

/// `--hpc`: the options it stands for, as a profile's table.
/// The variables `--setenv NAME VALUE` and `--unsetenv NAME` in `args` name.
fn env_names<'a>(args: impl Iterator<Item = &'a OsString>) -> Vec<OsString> {
    let mut out = Vec::new();
    let mut args = args.take_while(|a| *a != "--").peekable();
    while let Some(a) = args.next() {
        if a == "--setenv" || a == "--unsetenv" {
            if let Some(name) = args.peek() {
                out.push((*name).clone());
            }
        }
    }
    out
}

fn hpc_preset(named: &[OsString]) -> serde_json::Map<String, Value> {
    let mut binds: Vec<Value> = Vec::new();
    let mut bind = |p: &std::path::Path| {
        if p.is_absolute() && p.is_dir() && p != Path::new("/") {
            let s = p.to_string_lossy().into_owned();
            binds.push(Value::from(vec![s.clone(), s]));
        }
    };
    for var in ["HOME", "SCRATCH"] {
        if let Some(dir) = std::env::var_os(var) {
            bind(Path::new(&dir));
        }
    }
    bind(Path::new("/tmp"));
    bind(Path::new("/dev/shm"));
    let mut t = serde_json::Map::new();
    t.insert("net".into(), "host".into());
    t.insert("pid".into(), "host".into());
    t.insert("ipc".into(), "host".into());
    t.insert("bind".into(), binds.into());
    t.insert("keep-id".into(), true.into());
    // Each rank is in a user namespace of its own, so a peer's
    // /proc/PID/fd and memory are out of its reach: UCX (MPICH's transport,
    // and Open MPI's where built with it) must share memory through named
    // files and not through cma (process_vm_readv), or MPI_Init fails or a
    // large message hangs; Open MPI's vader falls back by itself, with a
    // warning. Without cma, UCX would send a large message between ranks
    // on one node over TCP (its zero-copy put), whose end-of-job cleanup
    // can hang when one rank finishes first: no TCP puts, so the message
    // goes through the shared memory. Unless the job set them.
    let mut env: Vec<Value> = Vec::new();
    for (name, value) in [
        ("UCX_POSIX_USE_PROC_LINK", "n"),
        ("UCX_TLS", "^cma"),
        ("UCX_TCP_PUT_ENABLE", "n"),
        ("OMPI_MCA_btl_vader_single_copy_mechanism", "none"),
    ] {
        if std::env::var_os(name).is_none() && !named.iter().any(|n| n == name) {
            env.push(Value::from(vec![name, value]));
        }
    }
    if !env.is_empty() {
        t.insert("setenv".into(), env.into());
    }
    // A PMI launcher's descriptor (srun --mpi=pmi2, MPICH's Hydra): kept
    // open for the task, with those below it.
    if let Some(fd) = std::env::var("PMI_FD")
        .ok()
        .and_then(|v| v.parse::<u32>().ok())
        .filter(|fd| *fd >= 3)
    {
        t.insert("preserve-fds".into(), (fd - 2).into());
    }
    t
}

/// The ids of the single-valued options `flags` sets.
fn profile_ids(flags: &[OsString]) -> Vec<String> {
    let cmd = Cli::command();
    let run = cmd
        .find_subcommand("run")
        .expect("burrow has a run command");
    flags
        .iter()
        .filter_map(|f| f.to_str()?.strip_prefix("--"))
        .filter_map(|long| run.get_arguments().find(|a| a.get_long() == Some(long)))
        .map(|a| a.get_id().as_str().to_string())
        .collect()
}

/// The flags `table` stands for (less the single-valued ones whose ids are
/// in `given`, and `command`), checked as the command line's are; errors
/// name `name` and the key.
fn flags_of(
    table: &serde_json::Map<String, Value>,
    name: &str,
    given: &[String],
) -> Result<Vec<OsString>, String> {
    let cmd = Cli::command();
    let run = cmd
        .find_subcommand("run")
        .expect("burrow has a run command");
    let mut flags: Vec<OsString> = Vec::new();
    for (key, value) in table {
        let bad = |why: &str| format!("{name}: key '{key}': {why}");
        if key == "command" {
            continue;
        }
        let long = key.replace('_', "-");
        let arg = run
            .get_arguments()
            .find(|a| {
                a.get_long() == Some(long.as_str()) && !["profile", "help", "hpc"].contains(&&*long)
            })
            .ok_or_else(|| bad("not an option of burrow run"))?;
        let flag = OsString::from(format!("--{long}"));
        let single = !matches!(arg.get_action(), ArgAction::Append);
        if single && given.iter().any(|id| id == arg.get_id().as_str()) {
            continue;
        }
        // (A flag that conflicts with one given, as --keep-id with
        // --uidmap, is left out too: whichever of the two declares it.)
        let id = arg.get_id().as_str();
        let conflicting = given.iter().any(|g| {
            run.get_arg_conflicts_with(arg)
                .iter()
                .any(|c| c.get_id().as_str() == g)
                || run
                    .get_arguments()
                    .find(|a| a.get_id().as_str() == g)
                    .is_some_and(|a| {
                        run.get_arg_conflicts_with(a)
                            .iter()
                            .any(|c| c.get_id().as_str() == id)
                    })
        });
        if conflicting {
            continue;
        }
        match arg.get_action() {
            ArgAction::SetTrue => match value {
                Value::Bool(true) => flags.push(flag),
                Value::Bool(false) => {}
                _ => return Err(bad("expected true or false")),
            },
            _ if arg.get_num_args().is_some_and(|n| n.min_values() == 2) => {
                for (a, b) in pairs(value)
                    .ok_or_else(|| bad("expected a list of [A, B] pairs (or a table of A = B)"))?
                {
                    flags.extend([flag.clone(), a, b]);
                }
            }
            ArgAction::Append => {
                let values = match value {
                    Value::Array(_) => strings(value),
                    v => scalar(v).map(|s| vec![s]),
                }
                .ok_or_else(|| bad("expected a value or a list of values"))?;
                for v in values {
                    flags.extend([flag.clone(), v]);
                }
            }
            _ => {
                let v = scalar(value).ok_or_else(|| bad("expected a single value"))?;
                flags.extend([flag, v]);
            }
        }
    }
    // The values themselves are checked as the command line's are, but
    // named as the profile's.
    let mut alone: Vec<OsString> = vec!["burrow".into(), "run".into()];
    alone.extend(flags.iter().cloned());
    if let Err(e) = Cli::command().try_get_matches_from(alone) {
        let msg = e.to_string();
        return Err(format!(
            "{name}: {}",
            one_line(msg.trim_start_matches("error: "))
        ));
    }
    Ok(flags)
}

/// `command`: a list of strings (or one string), nothing else.
fn command_words(v: &Value) -> Option<Vec<OsString>> {
    match v {
        Value::Array(items) => items
            .iter()
            .map(|i| i.as_str().map(OsString::from))
            .collect(),
        Value::String(s) => Some(vec![s.into()]),
        _ => None,
    }
}

fn one_line(s: &str) -> String {
    s.lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .collect::<Vec<_>>()
        .join(" ")
}

fn scalar(v: &Value) -> Option<OsString> {
    match v {
        Value::String(s) => Some(s.into()),
        Value::Number(n) => Some(n.to_string().into()),
        _ => None,
    }
}

fn strings(v: &Value) -> Option<Vec<OsString>> {
    match v {
        Value::Array(items) => items.iter().map(scalar).collect(),
        Value::String(s) => Some(vec![s.into()]),
        _ => None,
    }
}

fn pairs(v: &Value) -> Option<Vec<(OsString, OsString)>> {
    match v {
        Value::Array(items) => items
            .iter()
            .map(|p| match strings(p)?.as_slice() {
                [a, b] => Some((a.clone(), b.clone())),
                _ => None,
            })
            .collect(),
        Value::Object(map) => map
            .iter()
            .map(|(k, v)| Some((k.into(), scalar(v)?)))
            .collect(),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write(name: &str, text: &str) -> std::path::PathBuf {
        let dir = std::env::temp_dir().join(format!("burrow-profile-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join(name);
        std::fs::write(&path, text).unwrap();
        path
    }

    fn args(list: &[&str]) -> Vec<OsString> {
        list.iter().map(OsString::from).collect()
    }

    #[test]
    fn profile_flags_come_first_and_the_command_line_wins() {
        let p = write(
            "app.toml",
            r#"
seccomp = "strict"
keep-id = true
ro_bind = [["/usr", "/mnt"]]
setenv = { A = "1" }
rlimit = "nofile=64"
command = ["echo", "from-profile"]
"#,
        );
        let p = p.to_str().unwrap();
        let out = expand(args(&[
            "burrow",
            "run",
            "--profile",
            p,
            "--seccomp",
            "none",
        ]))
        .unwrap();
        let want = args(&[
            "burrow",
            "run",
            "--keep-id",
            "--rlimit",
            "nofile=64",
            "--ro-bind",
            "/usr",
            "/mnt",
            "--setenv",
            "A",
            "1",
            "--profile",
            p,
            "--seccomp",
            "none",
            "--",
            "echo",
            "from-profile",
        ]);
        assert_eq!(out, want);
        // A command on the command line replaces the profile's.
        let out = expand(args(&["burrow", "run", "--profile", p, "--", "true"])).unwrap();
        assert_eq!(out.last().unwrap(), "true");
        assert!(!out.iter().any(|a| a == "from-profile"));
    }

    /// --hpc's flags, less those the command line (or a profile) sets or
    /// conflicts with, whichever of the two declares the conflict.
    #[test]
    fn hpc_expands_to_its_flags_and_gives_way() {
        let flags = |list: &[&str]| -> Vec<String> {
            expand(args(list))
                .unwrap()
                .iter()
                .map(|a| a.to_string_lossy().into_owned())
                .collect()
        };
        let out = flags(&["burrow", "run", "--hpc", "--", "true"]);
        for f in ["--keep-id", "--net", "--pid", "--ipc", "--bind"] {
            assert!(out.iter().any(|a| a == f), "{f}: {out:?}");
        }
        assert!(
            out.windows(3).any(|w| w == ["--bind", "/tmp", "/tmp"]),
            "{out:?}"
        );
        // --net given wins; --uidmap (which declares the conflict) and
        // --netns leave out --keep-id and --net.
        let out = flags(&["burrow", "run", "--hpc", "--net", "none", "--", "true"]);
        assert_eq!(out.iter().filter(|a| *a == "--net").count(), 1, "{out:?}");
        let out = flags(&[
            "burrow",
            "run",
            "--hpc",
            "--uidmap",
            "0:1:1",
            "--gidmap",
            "0:1:1",
            "--netns",
            "/proc/self/ns/net",
            "--",
            "true",
        ]);
        assert!(
            !out.iter().any(|a| a == "--keep-id" || a == "--net"),
            "{out:?}"
        );
        assert!(out.iter().any(|a| a == "--pid"), "{out:?}");
    }

    #[test]
    fn bad_profiles_name_the_key_and_the_problem() {
        for (text, want) in [
            ("colour = true", "key 'colour': not an option of burrow run"),
            ("keep-id = 3", "key 'keep-id': expected true or false"),
            (
                "bind = [\"/a\"]",
                "key 'bind': expected a list of [A, B] pairs",
            ),
            ("net = \"sideways\"", "invalid value 'sideways'"),
            ("seccomp = [", "profile "),
            (
                "command = [1, 2]",
                "key 'command': expected a list of strings",
            ),
            // (A preset, not a flag a profile may hold.)
            ("hpc = true", "key 'hpc': not an option of burrow run"),
        ] {
            let p = write("bad.toml", text);
            let e = expand(args(&["burrow", "run", "--profile", p.to_str().unwrap()])).unwrap_err();
            assert!(e.contains(want), "{text}: {e}");
            assert!(!e.contains('\n'), "{text}: more than one line: {e}");
        }
        let e = expand(args(&["burrow", "run", "--profile", "/nonexistent.toml"])).unwrap_err();
        assert_eq!(e, "profile /nonexistent.toml: No such file or directory");
        let e = expand(args(&["burrow", "run", "--profile", "/dev/zero"])).unwrap_err();
        assert_eq!(e, "profile /dev/zero: not a regular file");
        let big = write("big.toml", &"#".repeat(2 << 20));
        let e = expand(args(&["burrow", "run", "--profile", big.to_str().unwrap()])).unwrap_err();
        assert!(e.ends_with("larger than 1024 KiB"), "{e}");
    }
}

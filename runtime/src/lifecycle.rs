//! create, start, kill and delete: a container's life as the runtime
//! spec tells it. `create` builds the sandbox up to its command's exec and
//! leaves the command waiting on the container's FIFO; `start` opens the
//! FIFO, and the command goes on to exec.

use std::ffi::OsString;
use std::io::IsTerminal;
use std::os::fd::AsFd;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{anyhow, bail, Context, Result};
use burrow_sandbox::cli::{Cli, Command as BurrowCommand};
use burrow_sandbox::config::{Console, Hold, SandboxConfig};
use clap::{CommandFactory, FromArgMatches};
use nix::sys::signal::Signal;
use nix::unistd::Pid;

use crate::container::{Container, Proc, Record, StateRoot, Status};
use crate::spec;
use oci_spec::runtime::LinuxNamespaceType;

/// How long `delete` waits for a killed container's processes to end.
const END_TIMEOUT: Duration = Duration::from_secs(10);

/// The sandbox a bundle describes, built by the launcher from the
/// arguments of `burrow run` (the one description of a sandbox); the spec
/// too, for what the runtime itself reads from it.
pub fn sandbox_of(
    bundle: &Path,
    console_socket: Option<&Path>,
) -> Result<(SandboxConfig, oci_spec::runtime::Spec, std::path::PathBuf)> {
    let (spec, bundle) = spec::load(bundle)?;
    let cfg = sandbox_of_spec(&spec, &bundle, console_socket)?;
    Ok((cfg, spec, bundle))
}

/// The sandbox `spec` (of bundle `bundle`, its canonical path) describes.
pub fn sandbox_of_spec(
    spec: &oci_spec::runtime::Spec,
    bundle: &Path,
    console_socket: Option<&Path>,
) -> Result<SandboxConfig> {
    let console = match (spec::terminal(spec), console_socket) {
        (None, None) => None,
        (Some(_), None) => {
            bail!("config.json: process.terminal: a terminal needs create --console-socket")
        }
        (None, Some(_)) => bail!("--console-socket: config.json's process.terminal is not true"),
        (Some(size), Some(path)) => {
            let sock = std::os::unix::net::UnixStream::connect(path).map_err(|e| {
                anyhow!(
                    "--console-socket {}: {}",
                    path.display(),
                    burrow_sandbox::sys::errno_text(&e)
                )
            })?;
            Some(Console {
                socket: std::sync::Arc::new(sock.into()),
                size,
            })
        }
    };
    let run_args = spec::run_args(spec, bundle)?;
    let mut argv: Vec<OsString> = vec!["burrow".into(), "run".into()];
    // The spec's seccomp filter: a profile in a memfd, read by the
    // launcher as a file (as it reads --seccomp FILE) while it parses.
    let _profile = match spec::seccomp(spec)? {
        None => None,
        Some(text) => {
            let mut file = burrow_sandbox::sys::memfd("burrow-runtime-seccomp")
                .context("config.json: linux.seccomp")?;
            std::io::Write::write_all(&mut file, text.as_bytes())
                .context("config.json: linux.seccomp")?;
            let fd = std::os::fd::AsRawFd::as_raw_fd(&file);
            argv.push(format!("--seccomp=/proc/self/fd/{fd}").into());
            Some(file)
        }
    };
    argv.extend(run_args);
    let matches = Cli::command()
        .try_get_matches_from(&argv)
        .map_err(|e| anyhow!("the sandbox's arguments: {e}"))?;
    let cli = Cli::from_arg_matches(&matches)?;
    let BurrowCommand::Run(run) = cli.command else {
        unreachable!("the arguments name the run subcommand");
    };
    let sub = matches
        .subcommand_matches("run")
        .expect("clap matched the run subcommand");
    let mut cfg = SandboxConfig::from_args(*run, sub, std::io::stdin().is_terminal())?;
    cfg.console = console;
    Ok(cfg)
}

/// What `create` and `run` take besides the ID (runc's flags).
#[derive(Debug, clap::Args)]
pub struct CreateArgs {
    /// The bundle: config.json and the root it names.
    #[arg(long, short = 'b', value_name = "DIR", default_value = ".")]
    pub bundle: PathBuf,
    /// Write the container's pid here.
    #[arg(long, value_name = "FILE")]
    pub pid_file: Option<PathBuf>,
    /// The Unix socket to send the container's terminal to (the pty's
    /// master, SCM_RIGHTS), with process.terminal.
    #[arg(long, value_name = "SOCKET")]
    pub console_socket: Option<PathBuf>,
    /// Pass descriptors 3 to 3+N-1 on to the command.
    #[arg(long, value_name = "N", default_value_t = 0)]
    pub preserve_fds: u32,
    /// Accepted: burrow makes no session keyring.
    #[arg(long)]
    pub no_new_keyring: bool,
    /// Accepted: burrow always enters the root with pivot_root (runc's
    /// --no-pivot moves it instead, which is weaker).
    #[arg(long)]
    pub no_pivot: bool,
}

/// Creates container `id`; returns its pid 1 (this process's child).
/// With `cgroups` (not `--cgroup-manager disabled`), the container gets a
/// cgroup of its own where one can be had (see [`crate::resources`]).
pub fn create(root: &StateRoot, id: &str, opts: &CreateArgs, cgroups: bool) -> Result<Pid> {
    crate::container::check_id(id)?;
    // The bundle is read before the ID is claimed: a bad one leaves nothing.
    let (mut cfg, spec, bundle) = sandbox_of(&opts.bundle, opts.console_socket.as_deref())?;
    cfg.preserve_fds = opts.preserve_fds;
    let limits = match spec.linux().as_ref().and_then(|l| l.resources().as_ref()) {
        Some(r) => crate::resources::limits(
            r,
            crate::resources::Use::Create,
            &crate::spec::device_nodes(&spec),
        )?,
        None => Default::default(),
    };
    if !cgroups {
        if !limits.is_empty() {
            eprintln!(
                "burrow-runtime: warning: config.json: linux.resources ignored                  (--cgroup-manager disabled)"
            );
        }
    } else if let Some(placement) = crate::resources::placement(&limits)? {
        cfg.limits = limits;
        cfg.cgroup_subtree = Some(placement);
        cfg.cgroup_name = Some(format!("burrow-runtime-{}-{id}", root.tag()));
    }
    let cgroup_path = cfg
        .cgroup_subtree
        .as_ref()
        .zip(cfg.cgroup_name.as_ref())
        .map(|(p, name)| p.parent().join(name));
    cfg.hooks = crate::hooks::for_sandbox(&spec, id, &bundle)?.map(Box::new);
    // (Before the launcher joins an engine's namespaces.)
    let hook_runner = crate::hooks::Runner::spawn(&spec)?;
    let (mut container, hold) = Container::claim(root, id)?;
    // (Where the cgroup will be, before it is: a create killed before its
    // record leaves the name for `delete --force`.)
    let saved = container
        .save_spec(&spec)
        .and_then(|()| match &cgroup_path {
            Some(path) => container.save_pending_cgroup(path),
            None => Ok(()),
        });
    if let Err(e) = saved {
        container.remove();
        return Err(e);
    }
    cfg.hold = Some(hold);
    let created = match burrow_sandbox::launch::create(&cfg) {
        Ok(c) => c,
        Err(e) => {
            container.remove();
            return Err(e.into());
        }
    };
    let (init_pid, helper_pids) = (created.init, created.helpers.clone());
    let cgroup = created.cgroup.clone();
    let recorded = Proc::of(created.init).and_then(|init| {
        if let Some(runner) = hook_runner {
            let state = crate::hooks::state(&spec, id, &bundle, "creating", init.pid);
            runner.run(&state).map_err(|e| anyhow!(e))?;
        }
        let record = Record {
            oci_version: spec.version().clone(),
            id: id.to_string(),
            init,
            helpers: created
                .helpers
                .iter()
                .filter_map(|&pid| Proc::of(pid).ok())
                .collect(),
            // Held before its exec, the command is pid 1's one child.
            command: crate::report::processes(&init, None).get(1).copied(),
            hooks: spec.hooks().is_some(),
            shares_pids: crate::spec::joins(&spec, LinuxNamespaceType::Pid),
            cgroup: created.cgroup.clone(),
            rootfs: cfg.rootfs.clone(),
            bundle: bundle.clone(),
            created: chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Nanos, true),
            annotations: spec.annotations().clone().unwrap_or_default(),
        };
        container.save(record)?;
        if let Some(path) = &opts.pid_file {
            write_pid_file(path, init.pid)?;
        }
        // Recorded: the sandbox may outlive this process now.
        Ok(created.commit()?)
    });
    if let Err(e) = recorded {
        // Still this process's children: their pids cannot have been
        // reused.
        for pid in std::iter::once(init_pid).chain(helper_pids) {
            let _ = nix::sys::signal::kill(pid, Signal::SIGKILL);
            let _ = nix::sys::wait::waitpid(pid, None);
        }
        if let Some(cg) = &cgroup {
            let _ = burrow_sandbox::cgroup::remove(cg);
        }
        container.remove();
        return Err(e);
    }
    Ok(init_pid)
}

/// `run`: create and start; unless detached, wait for the container's
/// pid 1 (this process's child), passing signals on to it as `burrow run`
/// does, then delete the container. Its status is the command's.
pub fn run(
    root: &StateRoot,
    id: &str,
    opts: &CreateArgs,
    cgroups: bool,
    detach: bool,
) -> Result<i32> {
    let init = create(root, id, opts, cgroups)?;
    if let Err(e) = start(root, id) {
        let _ = delete(root, id, true);
        return Err(e);
    }
    if detach {
        return Ok(0);
    }
    let code = burrow_sandbox::launch::wait_for(init);
    delete(root, id, false)?;
    Ok(code)
}

/// `--pid-file`: the pid alone, written whole (renamed into place), as
/// runc writes it.
pub fn write_pid_file(path: &Path, pid: i32) -> Result<()> {
    let name = path
        .file_name()
        .ok_or_else(|| anyhow!("--pid-file {}: not a file name", path.display()))?;
    let mut tmp_name = OsString::from(".");
    tmp_name.push(name);
    tmp_name.push(".tmp");
    let tmp = path.with_file_name(tmp_name);
    std::fs::write(&tmp, pid.to_string())
        .and_then(|()| std::fs::rename(&tmp, path))
        .with_context(|| format!("--pid-file {}", path.display()))
}

pub fn start(root: &StateRoot, id: &str) -> Result<()> {
    let container = Container::load(root, id)?;
    let status = container.status();
    if status != Status::Created {
        bail!(
            "container {id:?} cannot be started: it is {}",
            status.name()
        );
    }
    let record = container.record()?;
    let fifo_path = container.dir.join(Hold::FIFO);
    // Non-blocking: the open itself is what lets the command's open of the
    // other end return; then its byte (or its end) is waited for.
    let fifo = nix::fcntl::open(
        &fifo_path,
        nix::fcntl::OFlag::O_RDONLY
            | nix::fcntl::OFlag::O_NONBLOCK
            | nix::fcntl::OFlag::O_CLOEXEC
            | nix::fcntl::OFlag::O_NOFOLLOW,
        nix::sys::stat::Mode::empty(),
    )
    .map_err(|e| match e {
        // Another start took it first.
        nix::errno::Errno::ENOENT => anyhow!("container {id:?} cannot be started: it is running"),
        e => anyhow!("container {id:?}: {}: {}", Hold::FIFO, e.desc()),
    })?;
    // Its name goes first: a second start finds none, and the status is
    // "running" from here on, whatever becomes of this process.
    std::fs::remove_file(&fifo_path)
        .with_context(|| format!("container {id:?}: {}", Hold::FIFO))?;
    let pidfd = record
        .init
        .pidfd()
        .ok_or_else(|| anyhow!("container {id:?} ended before it started"))?;
    use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
    loop {
        let mut fds = [
            PollFd::new(fifo.as_fd(), PollFlags::POLLIN),
            PollFd::new(pidfd.as_fd(), PollFlags::POLLIN),
        ];
        match poll(&mut fds, PollTimeout::NONE) {
            Err(nix::errno::Errno::EINTR) => continue,
            Err(e) => bail!("container {id:?}: waiting for its command: {}", e.desc()),
            Ok(_) => {}
        }
        let mut byte = [0u8; 1];
        if fds[0].any() == Some(true) {
            match nix::unistd::read(&fifo, &mut byte) {
                Ok(1) => break,
                // The writer came and went without a word: it failed.
                Ok(_) => bail!("container {id:?}: its command failed at start"),
                Err(_) => {}
            }
        }
        if fds[1].any() == Some(true) {
            bail!("container {id:?} ended before it started");
        }
    }
    if record.hooks {
        let spec = container.spec()?;
        let state = crate::hooks::state(&spec, id, &record.bundle, "running", record.init.pid);
        crate::hooks::run_warning(&spec, "poststart", &state);
    }
    Ok(())
}

/// A signal as `kill` takes it: a number, or a name with or without SIG,
/// or RTMIN+N (podman's stop signal for systemd is SIGRTMIN+3), read as
/// the launcher reads `--stop-signal`.
pub fn parse_signal(text: &str) -> Result<i32> {
    burrow_sandbox::signals::parse(text).map_err(|e| anyhow!("unknown signal {e}"))
}

pub fn kill(root: &StateRoot, id: &str, sig: i32, all: bool) -> Result<()> {
    let container = Container::load(root, id)?;
    let status = container.status();
    if !matches!(status, Status::Created | Status::Running | Status::Paused) {
        bail!("container {id:?} is not running: it is {}", status.name());
    }
    let record = container.record()?;
    let init = record.init;
    // In a pod's pid namespace, nothing ends the container's processes
    // with its pid 1: SIGKILL goes to every one (as runc kills a
    // container's cgroup where its pid namespace is shared).
    if record.shares_pids && sig == libc::SIGKILL {
        if let Some(cg) = &record.cgroup {
            let _ = burrow_sandbox::cgroup::kill(cg);
        }
    }
    if all || (record.shares_pids && sig == libc::SIGKILL) {
        // Every process of the container; pid 1 last, whose end ends the
        // others.
        let every = crate::report::processes(&init, record.own_pid_ns());
        for p in every.into_iter().rev() {
            let _ = p.signal(sig);
        }
        return Ok(());
    }
    if !init.signal(sig)? {
        bail!("container {id:?} is not running: it is stopped");
    }
    Ok(())
}

pub fn delete(root: &StateRoot, id: &str, force: bool) -> Result<()> {
    let container = match Container::load(root, id) {
        Ok(c) => c,
        Err(e) if force => {
            // Nothing the state names can be found: what is left of it
            // goes (as runc's --force of a broken state does).
            let dir = root.dir_of(id);
            if crate::container::check_id(id).is_ok() && dir.is_dir() {
                eprintln!("burrow-runtime: warning: {e:#}; its state is removed");
                let _ = std::fs::remove_dir_all(dir);
            }
            return Ok(());
        }
        Err(e) => return Err(e),
    };
    match container.status() {
        Status::Stopped => {}
        Status::Created => {}
        Status::Running | Status::Paused if force => {}
        Status::Creating if force => {}
        status => bail!(
            "cannot delete container {id:?} that is not stopped: it is {}",
            status.name()
        ),
    }
    let spec = container
        .record
        .as_ref()
        .filter(|r| r.hooks)
        .and_then(|_| container.spec().ok());
    destroy(&container);
    if let (Some(spec), Some(r)) = (spec, &container.record) {
        let state = crate::hooks::state(&spec, id, &r.bundle, "stopped", r.init.pid);
        crate::hooks::run_warning(&spec, "poststop", &state);
    }
    Ok(())
}

/// Ends what is left of a container (its pid 1, then its helpers, each
/// waited for) and removes its state.
fn destroy(container: &Container) {
    if let Some(r) = &container.record {
        // Every process of its cgroup, where it has one (also what left
        // pid 1's tree).
        if let Some(cg) = &r.cgroup {
            let _ = burrow_sandbox::cgroup::kill(cg);
        }
        if r.shares_pids {
            // (See kill: pid 1's tree, pid 1 last.)
            for p in crate::report::processes(&r.init, None).into_iter().rev() {
                let _ = p.signal(libc::SIGKILL);
            }
        }
        let _ = r.init.signal(libc::SIGKILL);
        // (A paused container's processes end once thawed.)
        if let Some(cg) = &r.cgroup {
            let _ = burrow_sandbox::cgroup::freeze(cg, false);
        }
        r.init.wait_end(END_TIMEOUT);
        for h in &r.helpers {
            // They end with pid 1; a stuck one is ended.
            if !h.wait_end(END_TIMEOUT) {
                let _ = h.signal(libc::SIGKILL);
                h.wait_end(END_TIMEOUT);
            }
        }
    }
    let cgroup = match &container.record {
        Some(r) => r.cgroup.clone(),
        // Still being created (or its create was killed): the cgroup it
        // was to have, if nothing runs there (a create still at work, or
        // another container's of the same name).
        None => container
            .pending_cgroup()
            .filter(|cg| burrow_sandbox::cgroup::is_empty(cg)),
    };
    if let Some(cg) = &cgroup {
        if let Err(e) = burrow_sandbox::cgroup::remove(cg) {
            eprintln!(
                "burrow-runtime: warning: removing the cgroup {}: {}",
                cg.display(),
                burrow_sandbox::sys::errno_text(&e)
            );
        }
    }
    container.remove();
}

/// The cgroup of container `id`, whose status is `want`; `doing` names
/// the command for errors.
fn cgroup_of(root: &StateRoot, id: &str, want: &[Status], doing: &str) -> Result<PathBuf> {
    let container = Container::load(root, id)?;
    let status = container.status();
    if !want.contains(&status) {
        bail!("cannot {doing} container {id:?}: it is {}", status.name());
    }
    container.record()?.cgroup.clone().ok_or_else(|| {
        anyhow!(
            "cannot {doing} container {id:?}: it has no cgroup of its own (none was delegated \
             to this user when it was created, or --cgroup-manager was disabled)"
        )
    })
}

/// `pause` (freeze every process of the container) and `resume`.
pub fn freeze(root: &StateRoot, id: &str, frozen: bool) -> Result<()> {
    let (want, doing): (&[Status], _) = if frozen {
        (&[Status::Created, Status::Running], "pause")
    } else {
        (&[Status::Paused], "resume")
    };
    let cg = cgroup_of(root, id, want, doing)?;
    Ok(burrow_sandbox::cgroup::freeze(&cg, frozen)?)
}

/// `update`: writes the limits `r` sets into the container's cgroup.
pub fn update(root: &StateRoot, id: &str, r: &oci_spec::runtime::LinuxResources) -> Result<()> {
    let limits = crate::resources::limits(r, crate::resources::Use::Update, &[])
        .map_err(|e| anyhow!("update: {}: {}", e.field, e.why))?;
    let cg = cgroup_of(
        root,
        id,
        &[Status::Created, Status::Running, Status::Paused],
        "update",
    )?;
    Ok(burrow_sandbox::cgroup::write_limits(&cg, &limits)?)
}

//! `exec`: another process in a running container. Its description is
//! the container's own config.json (kept by `create`) with `process`
//! replaced, by `--process FILE` (runtime-spec's process object, as
//! conmon and containerd's shim write it) or by the command line; the
//! launcher builds the sandbox's settings from it as for `create`, and
//! joins the container's namespaces to run it (see
//! [`burrow_sandbox::join`]).

use std::path::{Path, PathBuf};

use anyhow::{anyhow, bail, Context, Result};
use nix::unistd::Pid;
use oci_spec::runtime::{Process, Spec};

use crate::container::{Container, StateRoot, Status};
use crate::lifecycle;

/// `exec`'s command line (runc's).
#[derive(Debug, clap::Args)]
pub struct ExecArgs {
    /// The process, as runtime-spec's process object (JSON); else
    /// the container's own with the options below.
    #[arg(long, short = 'p', value_name = "FILE")]
    pub process: Option<PathBuf>,
    /// A terminal for it (needs --console-socket).
    #[arg(long, short = 't')]
    pub tty: bool,
    /// The Unix socket to send its terminal's master to.
    #[arg(long, value_name = "SOCKET")]
    pub console_socket: Option<PathBuf>,
    /// Return once it runs; it is left to the caller's subreaper.
    #[arg(long, short = 'd')]
    pub detach: bool,
    /// Write its pid here.
    #[arg(long, value_name = "FILE")]
    pub pid_file: Option<PathBuf>,
    /// Its working directory in the container.
    #[arg(long, value_name = "DIR")]
    pub cwd: Option<PathBuf>,
    /// NAME=VALUE added to its environment (repeatable).
    #[arg(long, short = 'e', value_name = "NAME=VALUE")]
    pub env: Vec<String>,
    /// UID[:GID] to run it as.
    #[arg(long, short = 'u', value_name = "UID[:GID]")]
    pub user: Option<String>,
    /// Supplementary groups (repeatable).
    #[arg(long, short = 'g', value_name = "GID")]
    pub additional_gids: Vec<u32>,
    /// A capability to give it besides the container's (repeatable).
    #[arg(long, short = 'c', value_name = "CAP")]
    pub cap: Vec<String>,
    /// Set no_new_privs (burrow always does).
    #[arg(long)]
    pub no_new_privs: bool,
    /// Pass descriptors 3 to 3+N-1 on to it.
    #[arg(long, value_name = "N", default_value_t = 0)]
    pub preserve_fds: u32,
    /// Refused: burrow applies no SELinux label.
    #[arg(long, value_name = "LABEL")]
    pub process_label: Option<String>,
    /// Refused: burrow applies no AppArmor profile.
    #[arg(long, value_name = "PROFILE")]
    pub apparmor: Option<String>,
    /// Refused: the process joins the container's own cgroup.
    #[arg(long, value_name = "PATH")]
    pub cgroup: Option<String>,
    pub id: String,
    /// The command and its arguments (without --process).
    #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
    pub command: Vec<String>,
}

/// Runs the process; returns its status (0 when detached).
pub fn exec(root: &StateRoot, opts: &ExecArgs) -> Result<i32> {
    let id = opts.id.as_str();
    if opts.process_label.is_some() {
        bail!("exec --process-label: burrow applies no SELinux label");
    }
    if opts.apparmor.is_some() {
        bail!("exec --apparmor: burrow applies no AppArmor profile");
    }
    if opts.cgroup.is_some() {
        bail!("exec --cgroup: the process joins the container's own cgroup, not one under it");
    }
    let container = Container::load(root, id)?;
    let status = container.status();
    if status != Status::Running {
        bail!(
            "cannot exec in container {id:?}: it is {}, not running",
            status.name()
        );
    }
    let record = container.record()?;
    let command = record.command.ok_or_else(|| {
        anyhow!("cannot exec in container {id:?}: its state names no process to join")
    })?;
    let mut spec = container.spec()?;
    let process = match &opts.process {
        Some(path) => {
            if !opts.command.is_empty() {
                bail!("exec: --process and a command on the command line: one or the other");
            }
            read_process(path)?
        }
        None => from_command_line(&spec, opts)?,
    };
    spec.set_process(Some(process));
    // The process joins the command's namespaces: those the spec names by
    // path (a pod's, which may be gone by now) are not opened again.
    if let Some(linux) = spec.linux_mut() {
        if let Some(list) = linux.namespaces_mut() {
            for ns in list.iter_mut() {
                ns.set_path(None);
            }
        }
    }
    let mut cfg =
        lifecycle::sandbox_of_spec(&spec, &record.bundle, opts.console_socket.as_deref())?;
    cfg.preserve_fds = opts.preserve_fds;
    let pidfd = command
        .pidfd()
        .ok_or_else(|| anyhow!("cannot exec in container {id:?}: its process has ended"))?;
    let pid_file = opts.pid_file.as_deref();
    let started = |pid: Pid| match pid_file {
        Some(path) => lifecycle::write_pid_file(path, pid.as_raw()).map_err(|e| format!("{e:#}")),
        None => Ok(()),
    };
    use std::os::fd::AsFd;
    Ok(burrow_sandbox::join::exec(
        Pid::from_raw(command.pid),
        pidfd.as_fd(),
        record.cgroup.as_deref(),
        &cfg,
        opts.detach,
        started,
    )?)
}

/// runtime-spec's process object, from `--process FILE`.
fn read_process(path: &Path) -> Result<Process> {
    let text = burrow_sandbox::sys::read_bounded(path, 1 << 20)
        .map_err(|e| anyhow!("--process {}: {e}", path.display()))?;
    serde_json::from_str(&text).with_context(|| format!("--process {}", path.display()))
}

/// The container's own process with the command line's changes: its
/// arguments, and --cwd, --env, --user, --tty, --cap and --no-new-privs.
fn from_command_line(spec: &Spec, opts: &ExecArgs) -> Result<Process> {
    if opts.command.is_empty() {
        bail!("exec: no command: give one, or --process FILE");
    }
    let mut p = spec
        .process()
        .clone()
        .ok_or_else(|| anyhow!("the container's config.json has no process"))?;
    p.set_args(Some(opts.command.clone()));
    p.set_terminal(Some(opts.tty));
    p.set_console_size(None);
    if let Some(cwd) = &opts.cwd {
        p.set_cwd(cwd.clone());
    }
    if !opts.env.is_empty() {
        let mut env = p.env().clone().unwrap_or_default();
        for e in &opts.env {
            let name = e.split_once('=').map_or(e.as_str(), |(n, _)| n);
            env.retain(|old| old.split_once('=').map_or(old.as_str(), |(n, _)| n) != name);
            env.push(e.clone());
        }
        p.set_env(Some(env));
    }
    if let Some(user) = &opts.user {
        let (uid, gid) = match user.split_once(':') {
            Some((u, g)) => (u, Some(g)),
            None => (user.as_str(), None),
        };
        let num = |v: &str| {
            v.parse::<u32>()
                .map_err(|_| anyhow!("--user {user}: a uid[:gid], in numbers"))
        };
        let mut u = p.user().clone();
        u.set_uid(num(uid)?);
        // (Without a gid, the container's process's, as runc keeps it.)
        if let Some(g) = gid {
            u.set_gid(num(g)?);
        }
        p.set_user(u);
    }
    if !opts.additional_gids.is_empty() {
        let mut u = p.user().clone();
        u.set_additional_gids(Some(opts.additional_gids.clone()));
        p.set_user(u);
    }
    if !opts.cap.is_empty() {
        let mut caps = p.capabilities().clone().unwrap_or_default();
        let mut bounding = caps.bounding().clone().unwrap_or_default();
        for name in &opts.cap {
            let cap = name
                .parse()
                .map_err(|_| anyhow!("--cap {name}: not a capability"))?;
            bounding.insert(cap);
        }
        caps.set_bounding(Some(bounding.clone()));
        caps.set_effective(Some(bounding.clone()));
        caps.set_permitted(Some(bounding));
        p.set_capabilities(Some(caps));
    }
    if opts.no_new_privs {
        p.set_no_new_privileges(Some(true));
    }
    Ok(p)
}

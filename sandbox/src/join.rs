//! Entering a running sandbox (the OCI runtime's `exec`): a new process
//! joins the namespaces of the sandbox's command and runs another command
//! there, set up and confined as the sandbox's own command is (its working
//! directory resolved in the root, its user, terminal, capabilities,
//! seccomp filter, Landlock policy and limits, from `cfg`).
//!
//! The caller forks an intermediate process that joins the namespaces
//! (through a pidfd of the command: all at once, the user namespace first)
//! and forks the new process into the sandbox's pid namespace. Both are
//! not dumpable until the exec: code in the sandbox, whose user is the
//! caller's, cannot trace them or open their descriptors while they still
//! hold the caller's.

use std::os::fd::{BorrowedFd, OwnedFd};

use nix::fcntl::OFlag;
use nix::sched::CloneFlags;
use nix::sys::signal::Signal;
use nix::sys::wait::waitpid;
use nix::unistd::Pid;

use crate::config::SandboxConfig;
use crate::error::{Context, Error, Result, EXIT_SETUP};
use crate::{init, launch, signals, sys};

/// The namespaces a joining process takes from the command, and the names
/// of their files under /proc/PID/ns.
const NAMESPACES: [(&str, libc::c_int); 8] = [
    ("user", libc::CLONE_NEWUSER),
    ("mnt", libc::CLONE_NEWNS),
    ("pid", libc::CLONE_NEWPID),
    ("ipc", libc::CLONE_NEWIPC),
    ("uts", libc::CLONE_NEWUTS),
    ("net", libc::CLONE_NEWNET),
    ("cgroup", libc::CLONE_NEWCGROUP),
    ("time", libc::CLONE_NEWTIME),
];

/// Runs `cfg`'s command in the sandbox whose command is `target` (its pid
/// and a pidfd of it). `started` is given the new process's pid once it
/// has exec'd. Detached, returns 0 then, and the process is re-parented
/// to the caller's subreaper (an engine's monitor); else this process
/// becomes its subreaper, relays signals to it and returns its status.
/// With `cgroup` (the sandbox's own), the new process is placed in it.
pub fn exec(
    target: Pid,
    target_fd: BorrowedFd,
    cgroup: Option<&std::path::Path>,
    cfg: &SandboxConfig,
    detach: bool,
    started: impl FnOnce(Pid) -> std::result::Result<(), String>,
) -> Result<i32> {
    if cfg.vm.is_some() {
        return Err(Error::usage(
            "exec: the container's command runs in a micro-VM (--vm), which has no way in",
        ));
    }
    if cfg.hold.is_some() {
        return Err(Error::usage("exec: a joining process has no hold point"));
    }
    let flags = namespaces_to_join(target, target_fd)?;
    // The sandbox's cgroup; where the sandbox manages it itself (it
    // enabled controllers there, so no process may be in it: EBUSY), the
    // cgroup its command is in now, as runc falls back, if that is within
    // the sandbox's.
    let cgroups: Vec<std::path::PathBuf> = cgroup
        .into_iter()
        .flat_map(|cg| {
            let theirs =
                crate::cgroup::of_process(target.as_raw()).filter(|p| p.starts_with(cg) && p != cg);
            std::iter::once(cg.to_path_buf()).chain(theirs)
        })
        .collect();
    // Whether this process's ids are left out of the container's maps
    // (then the new process becomes the namespace's root, as pid 1 did):
    // read here, from the host's /proc, not from the container's.
    let unmapped = (
        !maps_own_id(target, "uid_map", nix::unistd::getuid().as_raw()),
        !maps_own_id(target, "gid_map", nix::unistd::getgid().as_raw()),
    );
    // Whether the container could write this binary, judged here too: in
    // its namespaces its code could fake /proc and the overflow ids.
    let mut cfg = cfg.clone();
    cfg.security.binary_exposed = Some(binary_exposed_to(target));
    let cfg = &cfg;
    let waited = signals::waited_set();
    if !detach {
        signals::block(&waited).ctx(|| "blocking signals")?;
        // The new process is the intermediate one's child; when that ends,
        // it becomes this process's, to wait for.
        nix::sys::prctl::set_child_subreaper(true).ctx(|| "becoming a subreaper")?;
    }
    let (report_r, report_w) = nix::unistd::pipe2(OFlag::O_CLOEXEC).ctx(|| "pipe")?;
    let (pid_r, pid_w) = nix::unistd::pipe2(OFlag::O_CLOEXEC).ctx(|| "pipe")?;
    let middle = match sys::fork().ctx(|| "fork")? {
        Some(pid) => pid,
        None => {
            drop(report_r);
            drop(pid_r);
            join_and_fork(target_fd, flags, &cgroups, unmapped, cfg, report_w, pid_w)
        }
    };
    drop(report_w);
    drop(pid_w);
    let mut raw = [0u8; 4];
    let got = nix::unistd::read(&pid_r, &mut raw);
    let _ = waitpid(middle, None);
    let report = launch::read_all(&report_r);
    if !report.is_empty() {
        return Err(launch::parse_report(&report));
    }
    let pid = match got {
        Ok(4) => Pid::from_raw(i32::from_ne_bytes(raw)),
        _ => return Err(Error::usage("exec: the process could not be made")),
    };
    if let Err(msg) = started(pid) {
        let _ = sys::kill_raw(pid, libc::SIGKILL);
        if !detach {
            let _ = waitpid(pid, None);
        }
        return Err(Error::usage(msg));
    }
    if detach {
        return Ok(0);
    }
    Ok(launch::supervise(pid, &waited))
}

/// The namespaces of `target` that are not this process's own already
/// (joining one's own user namespace is an error).
fn namespaces_to_join(target: Pid, target_fd: BorrowedFd) -> Result<CloneFlags> {
    use std::os::unix::fs::MetadataExt;
    let mut flags = 0;
    for (name, flag) in NAMESPACES {
        let theirs = std::fs::metadata(format!("/proc/{target}/ns/{name}"));
        let ours = std::fs::metadata(format!("/proc/self/ns/{name}"));
        match (theirs, ours) {
            (Ok(t), Ok(o)) if (t.dev(), t.ino()) == (o.dev(), o.ino()) => {}
            (Ok(_), Ok(_)) => flags |= flag,
            // A kernel without this kind of namespace.
            (Err(e), Err(_)) if e.kind() == std::io::ErrorKind::NotFound => {}
            (Err(e), _) => {
                let why = match e.raw_os_error() {
                    Some(libc::EACCES | libc::EPERM) => {
                        "it is not dumpable (it ran a set-id program or turned it off), \
                         so this user may not enter its namespaces"
                            .to_string()
                    }
                    _ => sys::errno_text(&e),
                };
                return Err(Error::usage(format!(
                    "exec: the container's process {target}: {why}"
                )));
            }
            (_, Err(e)) => {
                return Err(Error::usage(format!(
                    "exec: /proc/self/ns/{name}: {}",
                    sys::errno_text(&e)
                )))
            }
        }
    }
    // The names were read by pid: the pidfd says the process they named
    // is still the one it refers to (not ended, its pid not reused).
    sys::pidfd_send_signal(target_fd, 0)
        .map_err(|_| Error::usage("exec: the container's process has ended"))?;
    Ok(CloneFlags::from_bits_retain(flags))
}

/// In the intermediate process: joins the namespaces and forks the new
/// process into the pid namespace; tells the caller its pid and exits.
fn join_and_fork(
    target_fd: BorrowedFd,
    flags: CloneFlags,
    cgroups: &[std::path::PathBuf],
    unmapped: (bool, bool),
    cfg: &SandboxConfig,
    report_w: OwnedFd,
    pid_w: OwnedFd,
) -> ! {
    let fail = |msg: String| -> ! {
        let _ = nix::unistd::write(&report_w, format!("{EXIT_SETUP}\t{msg}").as_bytes());
        sys::exit_now(EXIT_SETUP)
    };
    // Into the sandbox's cgroup first (its limits, and the root of the
    // cgroup namespace about to be joined, unless the sandbox joined one
    // by path); the new process inherits it.
    // (The next is tried only where the first is busy: see exec.)
    let mut joined = Ok(());
    for cg in cgroups {
        joined = std::fs::write(cg.join("cgroup.procs"), "0");
        if !joined
            .as_ref()
            .is_err_and(|e| e.raw_os_error() == Some(libc::EBUSY))
        {
            break;
        }
    }
    if let (Err(e), Some(cg)) = (joined, cgroups.first()) {
        fail(format!(
            "exec: joining the cgroup {}: {}",
            cg.display(),
            sys::errno_text(&e)
        ));
    }
    // (Inherited by the new process; writable only while dumpable.)
    if let Some(n) = cfg.oom_score_adj {
        if let Err(msg) = sys::set_oom_score_adj(n) {
            fail(msg);
        }
    }
    // From here to the new process's exec, nothing in the sandbox may
    // trace these processes or reach their descriptors through /proc.
    if let Err(e) = sys::set_not_dumpable() {
        fail(format!("exec: not dumpable: {}", e.desc()));
    }
    let _ = sys::set_parent_death_signal(Signal::SIGKILL);
    if let Err(e) = nix::sched::setns(target_fd, flags) {
        fail(format!(
            "exec: joining the container's namespaces: {}",
            e.desc()
        ));
    }
    // (Joining a user namespace changes credentials, which may have made
    // it dumpable again: where fs.suid_dumpable is 1.)
    if let Err(e) = sys::set_not_dumpable() {
        fail(format!("exec: not dumpable: {}", e.desc()));
    }
    let child = match sys::fork() {
        Ok(Some(pid)) => pid,
        Ok(None) => {
            drop(pid_w);
            in_sandbox(cfg, unmapped, report_w)
        }
        Err(e) => fail(format!("exec: fork: {}", e.desc())),
    };
    let _ = nix::unistd::write(&pid_w, &child.as_raw().to_ne_bytes());
    sys::exit_now(0)
}

/// In the new process, in the sandbox's namespaces (its root and working
/// directory the root's, as joining the mount namespace leaves them).
fn in_sandbox(cfg: &SandboxConfig, (uid, gid): (bool, bool), report_w: OwnedFd) -> ! {
    let report = init::Report::new(report_w);
    let root = |unmapped: bool, set: fn() -> nix::Result<()>| if unmapped { set() } else { Ok(()) };
    let became = root(gid, || {
        let g = nix::unistd::Gid::from_raw(0);
        nix::unistd::setresgid(g, g, g)
    })
    .and_then(|()| {
        root(uid, || {
            let u = nix::unistd::Uid::from_raw(0);
            nix::unistd::setresuid(u, u, u)
        })
    });
    if let Err(e) = became {
        report.fail(
            EXIT_SETUP,
            &format!("exec: becoming root in the sandbox: {}", e.desc()),
        );
    }
    let cwd = match init::enter_working_dir(cfg) {
        Ok(cwd) => cwd,
        Err(e) => report.fail(e.exit_code(), &e.to_string()),
    };
    init::exec_command(cfg, &cwd, report)
}

/// Whether `target`'s user namespace maps `id` (its
/// `uid_map` or `gid_map` read through the host's /proc, in this
/// process's terms).
fn maps_own_id(target: Pid, file: &str, id: u32) -> bool {
    std::fs::read_to_string(format!("/proc/{target}/{file}"))
        .is_ok_and(|text| crate::idmap::maps_outer(&text, id))
}

/// Whether code in `target`'s user namespace could write this process's
/// binary: its owner mapped there (who may chmod it), or a mapped group
/// or anyone may write it, on a filesystem mounted writable.
fn binary_exposed_to(target: Pid) -> bool {
    crate::security::binary_exposed(
        |uid| maps_own_id(target, "uid_map", uid),
        |gid| maps_own_id(target, "gid_map", gid),
    )
}

//! The host side of `burrow run`: creates the namespaces, writes the id
//! maps, reports status, relays signals and returns the command's status.

use std::os::fd::{AsFd, AsRawFd, OwnedFd};

use nix::errno::Errno;
use nix::fcntl::{FcntlArg, FdFlag, OFlag};
use nix::sched::CloneFlags;
use nix::sys::signal::{kill, SigSet, Signal};
use nix::sys::wait::{waitpid, WaitPidFlag, WaitStatus};
use nix::unistd::Pid;

use crate::cli::{MapUsers, NetMode};
use crate::config::{MountOp, SandboxConfig};
use crate::error::{Context, Error, Result, EXIT_SETUP};
use crate::idmap::IdMaps;
use crate::{init, signals, status, sys, union};
use nix::sys::socket::{socketpair, AddressFamily, SockFlag, SockType};

/// Runs the sandbox described by `cfg`; returns the command's exit status.
pub fn run(cfg: &SandboxConfig) -> Result<i32> {
    if cfg.hold.is_some() {
        return Err(Error::usage(
            "run: the sandbox has a hold point (see create)",
        ));
    }
    let started = start(cfg)?;
    let (child, cgroup, json) = (started.child, &started.cgroup, &started.json);
    let mut code = supervise(child, &started.waited);
    if let Some(cg) = cgroup {
        if let Some(msg) = cg.oom_report() {
            eprintln!("burrow: {msg}");
            code = 137;
        }
        if let Some(path) = &cfg.limits.stats {
            if let Err(e) = cg.write_stats(path) {
                eprintln!(
                    "burrow: --stats {}: {}",
                    path.display(),
                    sys::errno_text(&e)
                );
            }
        }
    }
    if let Some(fd) = json {
        status::write_exit(fd.as_fd(), code);
    }
    Ok(code)
}

/// A sandbox made for the OCI runtime's `create`: its pid 1, and the
/// helpers (the union root's server, the network stack) that end with it.
/// pid 1 still dies with this process until [`Created::commit`].
#[derive(Debug)]
pub struct Created {
    pub init: Pid,
    pub helpers: Vec<Pid>,
    /// The sandbox's cgroup, which the caller removes
    /// ([`crate::cgroup::remove`]) once the sandbox has ended.
    pub cgroup: Option<std::path::PathBuf>,
    commit: OwnedFd,
}

impl Created {
    /// Once the caller has recorded the sandbox: pid 1 stops dying with
    /// this process (and has said so when this returns). Before that, the
    /// caller's death takes the sandbox with it, so that nothing is left
    /// that no record names.
    pub fn commit(self) -> Result<()> {
        let fail = || Error::usage("create: the sandbox ended before it was handed over");
        nix::unistd::write(&self.commit, b"1").map_err(|_| fail())?;
        let mut ack = [0u8; 1];
        match nix::unistd::read(&self.commit, &mut ack) {
            Ok(1) => Ok(()),
            _ => Err(fail()),
        }
    }
}

/// Builds the sandbox of `cfg` (which must have [`SandboxConfig::hold`])
/// up to its command's exec, and returns with the command waiting there.
/// Nothing is left that needs this process: pid 1 and the helpers outlive
/// it, and pid 1 is re-parented to the caller's subreaper (the engine's
/// monitor), which reaps it and gets the command's status.
pub fn create(cfg: &SandboxConfig) -> Result<Created> {
    let refuse = |what: &str| {
        Err(Error::usage(format!(
            "{what}: not with a held start (create)"
        )))
    };
    if cfg.hold.is_none() {
        return Err(Error::usage("create: no hold point was given"));
    }
    if cfg.json_status_fd.is_some() {
        return refuse("--json-status");
    }
    if matches!(cfg.net, NetMode::Slirp4netns | NetMode::Pasta) {
        return refuse("--net slirp4netns or pasta");
    }
    if cfg.console.is_some() && cfg.vm.is_some() {
        return refuse("a terminal with --vm");
    }
    let mut started = start(cfg)?;
    let helpers = [started.server.0.take(), started.stack.0.take()]
        .into_iter()
        .flatten()
        .collect();
    let commit = started
        .commit
        .take()
        .expect("a held sandbox has a commit socket");
    Ok(Created {
        init: started.child,
        helpers,
        cgroup: started.cgroup.take().map(crate::cgroup::Cgroup::keep),
        commit,
    })
}

/// What [`start`] left running: pid 1 of the sandbox, whose command has
/// exec'd (or, held, waits to), and what ends with the launcher.
struct Started {
    child: Pid,
    waited: SigSet,
    json: Option<std::os::fd::BorrowedFd<'static>>,
    cgroup: Option<crate::cgroup::Cgroup>,
    server: ServerGuard,
    stack: ServerGuard,
    _external: Option<crate::net::ExternalGuard>,
    commit: Option<OwnedFd>,
}

/// Everything up to the command's exec: the namespaces, the id maps, the
/// helpers, pid 1's set-up (reported back through a pipe that closes
/// without a word at exec, or at the hold point).
fn start(cfg: &SandboxConfig) -> Result<Started> {
    if cfg.die_with_parent {
        let parent = nix::unistd::getppid();
        sys::set_parent_death_signal(Signal::SIGKILL).ctx(|| "--die-with-parent")?;
        if nix::unistd::getppid() != parent {
            return Err(Error::usage(
                "--die-with-parent: the parent has already exited",
            ));
        }
    }
    let maps = cfg
        .id_maps
        .clone()
        .unwrap_or_else(|| IdMaps::for_caller(cfg.keep_id, cfg.map_users == MapUsers::Auto));
    let json = cfg.json_status_fd.map(borrow_status_fd);
    if let Some(fd) = json.filter(|fd| fd.as_raw_fd() > 2) {
        // Keep the status descriptor out of the command (unless it is one
        // of the standard streams the command needs anyway).
        nix::fcntl::fcntl(fd, FcntlArg::F_SETFD(FdFlag::FD_CLOEXEC)).ctx(|| "--json-status")?;
    }

    if let Some(w) = &cfg.limits_warning {
        eprintln!("burrow: warning: {}", crate::error::one_line(w));
    }
    // The sandbox's cgroup, limits written, before anything runs in it.
    let mut cgroup = match &cfg.cgroup_subtree {
        Some(top) => Some(crate::cgroup::Cgroup::create(
            top,
            &cfg.limits,
            cfg.cgroup_name.as_deref(),
        )?),
        None => None,
    };
    let (sync_r, sync_w) = nix::unistd::pipe2(OFlag::O_CLOEXEC).ctx(|| "pipe")?;
    let (report_r, report_w) = nix::unistd::pipe2(OFlag::O_CLOEXEC).ctx(|| "pipe")?;
    // Sockets to hand descriptors from pid 1 to the helpers: the union
    // root's FUSE device to its server, --net slirp's tap to the stack.
    let pair = |wanted: bool| -> Result<Option<(OwnedFd, OwnedFd)>> {
        if !wanted {
            return Ok(None);
        }
        socketpair(
            AddressFamily::Unix,
            SockType::SeqPacket,
            None,
            SockFlag::SOCK_CLOEXEC,
        )
        .ctx(|| "socketpair")
        .map(Some)
    };
    let fs_socks = pair(!cfg.root.bound)?;
    let net_socks = pair(cfg.slirp.is_some())?;
    // With a hold point: how the runtime tells pid 1 it has recorded the
    // sandbox (see init::run).
    let commit_socks = pair(cfg.hold.is_some())?;
    let waited = signals::waited_set();
    signals::block(&waited).ctx(|| "blocking signals")?;

    if let Some(ns) = &cfg.netns {
        // Joined here, before the sandbox's own user namespace exists:
        // inside it burrow would have no privileges over this namespace.
        nix::sched::setns(ns.as_fd(), CloneFlags::CLONE_NEWNET).map_err(|e| {
            Error::usage(format!(
                "--netns: cannot join it: {} (burrow needs privileges over its user namespace)",
                e.desc()
            ))
        })?;
        // The command's capabilities are its own user namespace's, not
        // the joined network namespace's owner's: one that keeps
        // CAP_NET_BIND_SERVICE (an engine's root, as podman's default)
        // binds low ports through this namespace's setting instead.
        let bind = crate::caps::Cap::from(caps::Capability::CAP_NET_BIND_SERVICE);
        if cfg.security.caps.contains(&bind) {
            std::fs::write("/proc/sys/net/ipv4/ip_unprivileged_port_start", "0").map_err(|e| {
                Error::usage(format!(
                    "--netns: letting the command bind ports below 1024: {}",
                    sys::errno_text(&e)
                ))
            })?;
        }
        // The caller's own settings of that namespace, after burrow's.
        let here = nix::fcntl::open(
            "/",
            OFlag::O_PATH | OFlag::O_DIRECTORY | OFlag::O_CLOEXEC,
            nix::sys::stat::Mode::empty(),
        )
        .ctx(|| "opening /")?;
        for s in cfg.sysctls.iter().filter(|s| s.of_joined_netns(true)) {
            s.write_in_root(here.as_fd())?;
        }
    }
    // IPC, UTS and cgroup namespaces to join (a pod's): as the network's,
    // before the sandbox's user namespace exists. (The sandbox's own
    // cgroup, if any, takes pid 1 through a file opened before.)
    for (ns, flag, name) in [
        (&cfg.ipcns, CloneFlags::CLONE_NEWIPC, "--ipcns"),
        (&cfg.utsns, CloneFlags::CLONE_NEWUTS, "--utsns"),
        (&cfg.cgroupns, CloneFlags::CLONE_NEWCGROUP, "--cgroupns"),
    ] {
        if let Some(ns) = ns {
            nix::sched::setns(ns.as_fd(), flag).map_err(|e| {
                Error::usage(format!(
                    "{name}: cannot join it: {} (burrow needs privileges over its user namespace)",
                    e.desc()
                ))
            })?;
        }
    }
    let mut flags = CloneFlags::CLONE_NEWUSER | CloneFlags::CLONE_NEWNS;
    if cfg.own_pid_ns() {
        flags |= CloneFlags::CLONE_NEWPID;
    }
    if cfg.own_ipc_ns() {
        flags |= CloneFlags::CLONE_NEWIPC;
    }
    if cfg.utsns.is_none() {
        flags |= CloneFlags::CLONE_NEWUTS;
    }
    if cgroup.is_none() && cfg.cgroupns.is_none() {
        // (With a cgroup of its own, pid 1 makes its cgroup namespace once
        // it is in it, so that the namespace is rooted there.)
        flags |= CloneFlags::CLONE_NEWCGROUP;
    }
    if cfg.net != NetMode::Host {
        flags |= CloneFlags::CLONE_NEWNET;
    }
    // (In a pid or user namespace joined by path: see inside.rs. The user
    // namespace after the namespaces above: inside it, burrow has no
    // privileges over those, owned by its parent.)
    let cloned = match (&cfg.pidns, &cfg.userns) {
        (None, None) => sys::clone_into(flags)
            .map(|c| c.map(|pid| (pid, None)))
            .map_err(namespace_error),
        (pidns, userns) => crate::inside::clone_inside(
            pidns.as_ref().map(|n| n.as_fd()),
            userns.as_ref().map(|n| n.as_fd()),
            &maps,
            flags,
            cfg.oom_score_adj,
        )
        .map(|c| c.map(|(pid, ns)| (pid, Some(ns)))),
    };
    let (child, namespaces) = match cloned {
        Err(e) => return Err(e),
        Ok(None) => {
            drop(sync_w);
            drop(report_r);
            init::run(
                cfg,
                sync_r,
                report_w,
                fs_socks.map(|(_, inner)| inner),
                net_socks.map(|(_, inner)| inner),
                commit_socks.map(|(_, inner)| inner),
            )
        }
        Ok(Some(made)) => made,
    };
    drop(sync_r);
    drop(report_w);
    let commit = commit_socks.map(|(outer, _)| outer);
    // Helpers end with burrow, or, when the sandbox is handed over, with
    // its pid 1.
    let life = match &cfg.hold {
        None => sys::HelperLife::Launcher,
        Some(hold) => sys::HelperLife::Sandbox {
            init: child,
            close: [
                Some(hold.fifo.as_raw_fd()),
                cfg.console.as_ref().map(|c| c.socket.as_raw_fd()),
                cfg.netns.as_ref().map(|n| n.as_raw_fd()),
                cfg.ipcns.as_ref().map(|n| n.as_raw_fd()),
                cfg.utsns.as_ref().map(|n| n.as_raw_fd()),
                cfg.cgroupns.as_ref().map(|n| n.as_raw_fd()),
                cfg.userns.as_ref().map(|n| n.as_raw_fd()),
                cfg.pidns.as_ref().map(|n| n.as_raw_fd()),
                cfg.proc_mount.as_ref().map(|n| n.as_raw_fd()),
                commit.as_ref().map(|c| c.as_raw_fd()),
            ],
            quiet: cfg.console.is_some(),
        },
    };
    let server_sock = fs_socks.map(|(outer, _)| outer);
    let net_sock = net_socks.map(|(outer, _)| outer);

    if let Some(cg) = &mut cgroup {
        cg.add(child).map_err(|e| abort(child, e))?;
    }
    // (Written already where the sandbox is made inside namespaces
    // joined.)
    let applied = match (&cfg.userns, &cfg.pidns) {
        (None, None) => maps.apply(child),
        _ => Ok(()),
    };
    if let Err(e) = applied {
        let _ = kill(child, Signal::SIGKILL);
        let _ = waitpid(child, None);
        return Err(e);
    }
    let server = match server_sock {
        Some(sock) => {
            let root = &cfg.root;
            // What the sandbox can write behind the union's back.
            let hidden = cfg
                .mounts
                .iter()
                .filter_map(|m| match m {
                    MountOp::Bind {
                        src,
                        read_only: false,
                        ..
                    } => Some(src.clone()),
                    _ => None,
                })
                .collect();
            Some(
                union::spawn_server(root, hidden, child, namespaces.as_ref(), sock, life)
                    .map_err(|e| abort(child, e))?,
            )
        }
        _ => None,
    };
    let server = ServerGuard(server);
    let stack = match (&cfg.slirp, net_sock) {
        (Some(net), Some(sock)) => Some(
            crate::net::spawn_helper(
                net.clone(),
                &cfg.publish,
                child,
                namespaces.as_ref(),
                sock,
                life,
            )
            .map_err(|e| abort(child, e))?,
        ),
        _ => None,
    };
    let stack = ServerGuard(stack);
    let external = match cfg.net {
        NetMode::Slirp4netns | NetMode::Pasta => {
            Some(crate::net::start_external(cfg.net, child).map_err(|e| abort(child, e))?)
        }
        _ => None,
    };

    let started = json.map(|_| status::started(child));
    nix::unistd::write(&sync_w, b"1").ctx(|| "starting the sandbox")?;
    drop(sync_w);

    // The report pipe closes without a word once the command has exec'd.
    let report = read_all(&report_r);
    if !report.is_empty() {
        // (pid 1 may wait for the commit that will not come: its end.)
        drop(commit);
        let _ = waitpid(child, None);
        return Err(parse_report(&report));
    }
    if let (Some(fd), Some(line)) = (&json, &started) {
        status::write(fd.as_fd(), line);
    }
    Ok(Started {
        child,
        waited,
        json,
        cgroup,
        server,
        stack,
        _external: external,
        commit,
    })
}

/// Ends the sandbox that failed to start, and passes the error on.
fn abort(child: Pid, e: Error) -> Error {
    let _ = kill(child, Signal::SIGKILL);
    let _ = waitpid(child, None);
    e
}

/// Stops a helper (the union root's server, the network stack) when burrow
/// is done with the sandbox.
struct ServerGuard(Option<Pid>);

impl Drop for ServerGuard {
    fn drop(&mut self) {
        if let Some(pid) = self.0 {
            let _ = kill(pid, Signal::SIGKILL);
            let _ = waitpid(pid, None);
        }
    }
}

fn borrow_status_fd(fd: i32) -> std::os::fd::BorrowedFd<'static> {
    // SAFETY: config validation checked that the descriptor is open; the
    // user handed it to burrow for the whole run.
    unsafe { std::os::fd::BorrowedFd::borrow_raw(fd) }
}

/// Waits for `init`, pid 1 of a sandbox [`create`] made (this process's
/// child), relaying the signals this process gets to it, as `run` does;
/// returns its status.
pub fn wait_for(init: Pid) -> i32 {
    supervise(init, &signals::waited_set())
}

/// Waits for pid 1 of the sandbox, relaying signals sent to burrow.
pub(crate) fn supervise(child: Pid, waited: &SigSet) -> i32 {
    loop {
        let (signo, code) = sys::wait_signal(waited);
        if signo == libc::SIGCHLD {
            match waitpid(child, Some(WaitPidFlag::WNOHANG)) {
                Ok(WaitStatus::Exited(_, status)) => return status,
                Ok(WaitStatus::Signaled(_, sig, _)) => return signals::status_from_signal(sig),
                Ok(_) => {}
                Err(_) => return EXIT_SETUP,
            }
        } else if signals::should_relay(code, true) {
            if let Ok(sig) = Signal::try_from(signo) {
                let _ = kill(child, sig);
            }
        }
    }
}

pub(crate) fn read_all(fd: &OwnedFd) -> Vec<u8> {
    let mut out = Vec::new();
    let mut buf = [0u8; 1024];
    loop {
        match nix::unistd::read(fd, &mut buf) {
            Ok(0) => return out,
            Ok(n) => out.extend_from_slice(&buf[..n]),
            Err(Errno::EINTR) => {}
            Err(_) => return out,
        }
    }
}

pub(crate) fn parse_report(report: &[u8]) -> Error {
    let text = String::from_utf8_lossy(report);
    let (code, msg) = text.split_once('\t').unwrap_or(("125", &text));
    Error::Sandbox {
        code: code.parse().unwrap_or(EXIT_SETUP),
        msg: msg.to_string(),
    }
}

fn namespace_error(e: Errno) -> Error {
    let hint = match e {
        Errno::EPERM | Errno::ENOSPC | Errno::EUSERS | Errno::EINVAL => {
            ": unprivileged user namespaces are disabled or exhausted here \
             (check sysctls user.max_user_namespaces, kernel.unprivileged_userns_clone \
             and kernel.apparmor_restrict_unprivileged_userns)"
        }
        _ => "",
    };
    Error::usage(format!(
        "cannot create the sandbox's user namespace: {}{hint}",
        e.desc()
    ))
}

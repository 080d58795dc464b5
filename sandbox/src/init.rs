//! The sandbox side: pid 1 of the new pid namespace. It waits for the id
//! maps, builds the root, forks the command, then reaps every process that
//! ends in the namespace and relays signals to the command until the
//! command exits, whose status it exits with.

use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::PathBuf;

use nix::errno::Errno;
use nix::fcntl::OFlag;
use nix::sys::signal::Signal;
use nix::sys::wait::{waitpid, WaitPidFlag, WaitStatus};
use nix::unistd::Pid;

use crate::cli::NetMode;
use crate::config::SandboxConfig;
use crate::error::{Context, Result, EXIT_CANNOT_EXEC, EXIT_NOT_FOUND, EXIT_SETUP};
use crate::signals;
use crate::sys;

/// Runs as pid 1 of the sandbox; never returns.
pub fn run(
    cfg: &SandboxConfig,
    sync: OwnedFd,
    report_fd: OwnedFd,
    fs_server: Option<OwnedFd>,
    net_stack: Option<OwnedFd>,
    commit: Option<OwnedFd>,
) -> ! {
    // Every signal pid 1 can relay is taken, none left to be lost.
    let _ = signals::block(&signals::init_set());
    // If burrow dies, so does pid 1, and with it the whole pid namespace.
    let _ = sys::set_parent_death_signal(Signal::SIGKILL);
    // In a pid namespace joined (a pod's) or the host's, pid 1 is not its
    // init: what its tree leaves behind comes to it rather than to that
    // namespace's.
    if !cfg.own_pid_ns() {
        let _ = nix::sys::prctl::set_child_subreaper(true);
    }
    let mut byte = [0u8; 1];
    if !matches!(nix::unistd::read(&sync, &mut byte), Ok(1)) {
        sys::exit_now(EXIT_SETUP); // burrow died or could not write the id maps
    }
    drop(sync);
    if cfg.hooks.is_some() {
        crate::hooks::note_container_pid();
    }
    // (burrow's own maps always map the caller: only given ones may not.)
    if let Err(e) = cfg
        .id_maps
        .as_ref()
        .map_or(Ok(()), |_| become_root_if_unmapped())
    {
        fail(
            &report_fd,
            EXIT_SETUP,
            &format!("becoming root in the sandbox: {}", e.desc()),
        );
    }
    if cfg.cgroup_subtree.is_some() && cfg.cgroupns.is_none() {
        // Now in the sandbox's cgroup: a cgroup namespace rooted there.
        if let Err(e) = nix::sched::unshare(nix::sched::CloneFlags::CLONE_NEWCGROUP) {
            fail(
                &report_fd,
                EXIT_SETUP,
                &format!("cgroup namespace: {}", e.desc()),
            );
        }
    }
    // (Its own /proc file, writable while it is dumpable; the command
    // inherits the value.)
    // (Made inside namespaces joined, pid 1 inherits it from the process
    // that made it: see inside.rs.)
    let made_inside = cfg.pidns.is_some() || cfg.userns.is_some();
    if let Some(n) = cfg.oom_score_adj.filter(|_| !made_inside) {
        if let Err(msg) = sys::set_oom_score_adj(n) {
            fail(&report_fd, EXIT_SETUP, &msg);
        }
    }
    // From here on the sandbox cannot ptrace pid 1 or open its /proc
    // files (/proc/1/exe is burrow's binary). Not before: burrow writes
    // the id maps through /proc of this process.
    let _ = sys::set_not_dumpable();

    let cwd = match setup(cfg, fs_server.as_ref(), net_stack.as_ref()) {
        Ok(cwd) => cwd,
        Err(e) => fail(&report_fd, e.exit_code(), &e.to_string()),
    };
    drop(fs_server);
    drop(net_stack);
    // In a pod's pid namespace or the host's: its /proc, as mounted, for
    // ending pid 1's tree later (the command may mount over the path).
    let proc_dir = match !cfg.own_pid_ns() {
        true => match nix::fcntl::open(
            "/proc",
            OFlag::O_RDONLY | OFlag::O_DIRECTORY | OFlag::O_CLOEXEC,
            nix::sys::stat::Mode::empty(),
        ) {
            Ok(fd) => Some(fd),
            Err(e) => fail(&report_fd, EXIT_SETUP, &format!("/proc: {}", e.desc())),
        },
        false => None,
    };
    let child = match sys::fork() {
        Ok(Some(pid)) => pid,
        Ok(None) => exec_command(cfg, &cwd, Report(Some(report_fd))),
        Err(e) => fail(&report_fd, EXIT_SETUP, &format!("fork: {}", e.desc())),
    };
    // pid 1 keeps nothing the runtime handed over for the command.
    close_handed_over(cfg);
    drop(report_fd);
    if let Some(commit) = commit {
        // Handed over: once the runtime has recorded the sandbox (the
        // command is at its hold point), pid 1 stops dying with it, and
        // says so; had the runtime died first, so would pid 1.
        let mut byte = [0u8; 1];
        if !matches!(nix::unistd::read(&commit, &mut byte), Ok(1))
            || sys::clear_parent_death_signal().is_err()
            || nix::unistd::write(&commit, b"1") != Ok(1)
        {
            sys::exit_now(EXIT_SETUP);
        }
        drop(commit);
    }
    // With --vm the command here is the relay, which translates SIGTERM
    // for the guest's command itself.
    let stop = if cfg.vm.is_some() {
        libc::SIGTERM
    } else {
        cfg.stop_signal
    };
    let code = reap_until_exit(child, cfg.new_session, stop);
    if let Some(proc) = &proc_dir {
        // Nothing of the sandbox's outlives it in the pod's namespace.
        end_own_tree(proc.as_fd());
    }
    sys::exit_now(code)
}

/// Kills and reaps every process of this one's tree (it is their
/// subreaper: orphans come to it), until none is left; `proc` is the
/// namespace's /proc.
fn end_own_tree(proc: BorrowedFd) {
    let me = nix::unistd::getpid().as_raw();
    let parent_of = |pid: i32| -> Option<i32> {
        let fd = nix::fcntl::openat(
            proc,
            format!("{pid}/stat").as_str(),
            OFlag::O_RDONLY | OFlag::O_CLOEXEC | OFlag::O_NOFOLLOW,
            nix::sys::stat::Mode::empty(),
        )
        .ok()?;
        let text = std::io::read_to_string(std::fs::File::from(fd)).ok()?;
        let (_, rest) = text.rsplit_once(')')?;
        rest.split_whitespace().nth(1)?.parse().ok()
    };
    for _ in 0..10_000 {
        let Ok(mut dir) = nix::dir::Dir::openat(
            proc,
            ".",
            OFlag::O_RDONLY | OFlag::O_DIRECTORY | OFlag::O_CLOEXEC,
            nix::sys::stat::Mode::empty(),
        ) else {
            return;
        };
        let kids: Vec<i32> = dir
            .iter()
            .flatten()
            .filter_map(|e| e.file_name().to_str().ok()?.parse::<i32>().ok())
            .filter(|&pid| parent_of(pid) == Some(me))
            .collect();
        if kids.is_empty() {
            return;
        }
        for &kid in &kids {
            let _ = sys::kill_raw(Pid::from_raw(kid), libc::SIGKILL);
        }
        // (Their own children come to this process as they die: the next
        // look finds them.)
        for kid in kids {
            let _ = waitpid(Pid::from_raw(kid), None);
        }
    }
}

fn setup(
    cfg: &SandboxConfig,
    fs_server: Option<&OwnedFd>,
    net_stack: Option<&OwnedFd>,
) -> Result<PathBuf> {
    if let Some(name) = &cfg.hostname {
        nix::unistd::sethostname(name).ctx(|| "setting the hostname")?;
    }
    if cfg.net != NetMode::Host {
        burrow_netstack::netns::interface_up("lo").ctx(|| "bringing up lo")?;
    }
    if let (Some(net), Some(sock)) = (&cfg.slirp, net_stack) {
        crate::net::setup_inside(net, sock)?;
    }
    crate::rootfs::enter(cfg, fs_server)?;
    enter_working_dir(cfg)
}

/// Enters the command's working directory in the root (`--chdir`, else
/// the first fallback that exists, else /); returns it.
pub(crate) fn enter_working_dir(cfg: &SandboxConfig) -> Result<PathBuf> {
    if cfg.vm.is_some() {
        // The guest's init enters the working directory.
        nix::unistd::chdir("/").ctx(|| "entering /")?;
        return Ok(PathBuf::from("/"));
    }
    if let Some(dir) = &cfg.chdir {
        enter_dir(dir).ctx(|| format!("--chdir {}", dir.display()))?;
        return Ok(dir.clone());
    }
    for dir in &cfg.fallback_dirs {
        if enter_dir(dir).is_ok() {
            return Ok(dir.clone());
        }
    }
    nix::unistd::chdir("/").ctx(|| "entering /")?;
    Ok(PathBuf::from("/"))
}

/// When the maps leave the caller's own ids out (OCI maps of subordinate
/// ids only), pid 1 is nobody in its namespace and could create nothing:
/// it becomes the namespace's root, as runc's init does. (When the caller
/// is mapped, pid 1 stays what it maps to.)
fn become_root_if_unmapped() -> nix::Result<()> {
    let covered = |file: &str, id: u32| {
        std::fs::read_to_string(file).is_ok_and(|text| crate::idmap::maps_inner(&text, id))
    };
    let root_uid = nix::unistd::Uid::from_raw(0);
    let root_gid = nix::unistd::Gid::from_raw(0);
    if !covered("/proc/self/gid_map", nix::unistd::getgid().as_raw()) {
        nix::unistd::setresgid(root_gid, root_gid, root_gid)?;
    }
    if !covered("/proc/self/uid_map", nix::unistd::getuid().as_raw()) {
        nix::unistd::setresuid(root_uid, root_uid, root_uid)?;
    }
    Ok(())
}

/// Enters `dir` of the new root, resolved within it and through no
/// magic link: a working directory such as /proc/self/fd/N (an image's
/// WorkingDir, or a symlink to it) would lead through a descriptor pid 1
/// holds to wherever it points, outside the root.
fn enter_dir(dir: &std::path::Path) -> nix::Result<()> {
    let root = nix::fcntl::open(
        "/",
        nix::fcntl::OFlag::O_PATH | nix::fcntl::OFlag::O_DIRECTORY | nix::fcntl::OFlag::O_CLOEXEC,
        nix::sys::stat::Mode::empty(),
    )?;
    let rel = dir.strip_prefix("/").unwrap_or(dir);
    let rel = if rel.as_os_str().is_empty() {
        std::path::Path::new(".")
    } else {
        rel
    };
    use std::os::fd::AsFd;
    let fd = sys::open_in_root(root.as_fd(), rel, libc::O_PATH | libc::O_DIRECTORY)?;
    nix::unistd::fchdir(&fd)
}

/// Closes what the runtime handed over for the command's process (the
/// hold FIFO, the console socket, a network namespace to join), in pid 1,
/// which needs none of it.
fn close_handed_over(cfg: &SandboxConfig) {
    use std::os::fd::AsRawFd;
    let fds = [
        cfg.hold.as_ref().map(|h| h.fifo.as_raw_fd()),
        cfg.console.as_ref().map(|c| c.socket.as_raw_fd()),
        cfg.netns.as_ref().map(|n| n.as_raw_fd()),
        cfg.ipcns.as_ref().map(|n| n.as_raw_fd()),
        cfg.utsns.as_ref().map(|n| n.as_raw_fd()),
        cfg.cgroupns.as_ref().map(|n| n.as_raw_fd()),
        cfg.userns.as_ref().map(|n| n.as_raw_fd()),
        cfg.pidns.as_ref().map(|n| n.as_raw_fd()),
        cfg.proc_mount.as_ref().map(|n| n.as_raw_fd()),
    ];
    for fd in fds.into_iter().flatten() {
        sys::close_handed_over(fd);
    }
    if cfg.console.is_some() {
        // The command has the terminal; the runtime's streams (which an
        // engine reads to their end) are not pid 1's to hold.
        if let Ok(null) = nix::fcntl::open(
            "/dev/null",
            nix::fcntl::OFlag::O_RDWR | nix::fcntl::OFlag::O_CLOEXEC,
            nix::sys::stat::Mode::empty(),
        ) {
            use std::os::fd::AsFd;
            for stream in 0..=2 {
                let _ = sys::dup_onto(null.as_fd(), stream);
            }
        }
    }
}

/// Tells burrow what failed (it prints the message) and exits.
fn fail(report_fd: &OwnedFd, code: i32, msg: &str) -> ! {
    let line = format!("{code}\t{msg}");
    let _ = nix::unistd::write(report_fd, line.as_bytes());
    sys::exit_now(code)
}

/// Where the command's process tells what failed: burrow, through the
/// report pipe, until the pipe is closed (at a hold point: burrow has
/// gone by the time anything fails); then its own stderr.
pub(crate) struct Report(Option<OwnedFd>);

impl Report {
    pub(crate) fn new(fd: OwnedFd) -> Report {
        Report(Some(fd))
    }

    pub(crate) fn fail(&self, code: i32, msg: &str) -> ! {
        match &self.0 {
            Some(fd) => fail(fd, code, msg),
            None => {
                eprintln!("burrow: {msg}");
                sys::exit_now(code)
            }
        }
    }
}

/// The hold point of a sandbox made by `create`: burrow is told all went
/// well (the report pipe closes), and the command waits until `start`
/// opens the FIFO for reading. Returns the FIFO, open: [`go_on`] writes
/// the byte `start` waits for once the startContainer hooks have run (a
/// command that fails before closes the FIFO without one).
fn hold(hold: &crate::config::Hold, report: &mut Report) -> OwnedFd {
    use std::os::fd::AsRawFd;
    // The sandbox's own /proc, of this process: no path of the host's.
    let path = format!("/proc/self/fd/{}", hold.fifo.as_raw_fd());
    if let Err(e) = nix::sys::stat::stat(path.as_str()) {
        report.fail(EXIT_SETUP, &format!("the start FIFO: {}", e.desc()));
    }
    report.0 = None;
    let opened = nix::fcntl::open(
        path.as_str(),
        nix::fcntl::OFlag::O_WRONLY | nix::fcntl::OFlag::O_CLOEXEC,
        nix::sys::stat::Mode::empty(),
    );
    // Nothing of the runtime's state but the open FIFO is left.
    sys::close_handed_over(hold.fifo.as_raw_fd());
    match opened {
        Ok(fd) => fd,
        Err(e) => report.fail(EXIT_SETUP, &format!("waiting for start: {}", e.desc())),
    }
}

/// After the hold: the startContainer hooks, then the byte that tells
/// `start` the command goes on.
fn go_on(fifo: Option<OwnedFd>, cfg: &SandboxConfig, report: &Report) {
    start_container_hooks(cfg, report);
    if let Some(fifo) = fifo {
        if let Err(e) = nix::unistd::write(&fifo, b"0") {
            report.fail(EXIT_SETUP, &format!("telling start: {}", e.desc()));
        }
    }
}

/// In the forked child: become the command (or, with `--vm`, the VM
/// supervisor that runs it).
pub(crate) fn exec_command(cfg: &SandboxConfig, cwd: &std::path::Path, mut report: Report) -> ! {
    if let Some(vm) = &cfg.vm {
        // The supervisor takes the signals burrow's launcher does (pid 1
        // blocks more, to relay them).
        let _ = nix::sys::signal::pthread_sigmask(
            nix::sys::signal::SigmaskHow::SIG_SETMASK,
            Some(&signals::waited_set()),
            None,
        );
        let fifo = cfg.hold.as_ref().map(|h| hold(h, &mut report));
        go_on(fifo, cfg, &report);
        // The supervisor reports its own errors on stderr.
        drop(report);
        // Nothing the caller left open reaches QEMU or virtiofsd (the
        // kernel and initramfs are handed to QEMU on purpose).
        let _ = sys::cloexec_from(3);
        if cfg.new_session {
            let _ = nix::unistd::setsid();
        }
        crate::vm::supervise(vm);
    }
    // Signals reach the command from here on (a held one too: a signal
    // ends it as it would end the command).
    let _ = signals::unblock_all();
    sys::reset_sigpipe();
    // Descriptors the caller left open beyond 0, 1, 2 (and
    // --preserve-fds) do not reach the command: an open directory of the
    // host's would be a way out of the new root.
    if let Err(e) = sys::cloexec_from(3 + cfg.preserve_fds) {
        report.fail(
            EXIT_SETUP,
            &format!("closing inherited descriptors: {}", e.desc()),
        );
    }
    if cfg.new_session {
        let _ = nix::unistd::setsid();
    }
    let mut env = burrow_vm_init::exec::with_pwd(&cfg.env, cwd.as_os_str().as_bytes());
    let user = match cfg
        .user
        .as_deref()
        .map(burrow_vm_init::user::resolve_in_root)
    {
        Some(Ok(mut id)) => {
            for &g in &cfg.group_add {
                if !id.groups.contains(&g) {
                    id.groups.push(g);
                }
            }
            Some(id)
        }
        Some(Err(msg)) => report.fail(EXIT_SETUP, &msg),
        None => None,
    };
    if let Some(console) = &cfg.console {
        let owner = user.as_ref().map(|id| (id.uid, id.gid));
        if let Err(msg) = crate::console::attach(console, owner) {
            report.fail(EXIT_SETUP, &msg);
        }
        sys::close_handed_over(std::os::fd::AsRawFd::as_raw_fd(&*console.socket));
    }
    if cfg.home_if_unset {
        let home = user.as_ref().map_or(&b"/root"[..], |id| &id.home);
        env = burrow_vm_init::user::with_home(env, home);
    }

    let fifo = cfg.hold.as_ref().map(|h| {
        // A command that is not there is told by create, not after start.
        match burrow_vm_init::exec::find_executable(&cfg.argv, &env) {
            0 => {}
            e => cannot_exec(cfg, e, &report),
        }
        hold(h, &mut report)
    });
    if let Some(mask) = cfg.umask {
        nix::sys::stat::umask(nix::sys::stat::Mode::from_bits_truncate(mask));
    }
    // Last, so that nothing burrow still does is confined by it.
    let user = cfg.user.as_deref().zip(user.as_ref());
    match cfg.security.apply(user, &cfg.group_add) {
        Ok(warnings) => {
            for w in warnings {
                eprintln!("burrow: warning: {w}");
            }
        }
        Err(msg) => report.fail(EXIT_SETUP, &msg),
    }
    // (Changing credentials may have made it dumpable again, where
    // fs.suid_dumpable is 1: not before the exec, which decides anew.)
    let _ = sys::set_not_dumpable();
    // The startContainer hooks run confined as the command is (their
    // paths the container's): what they leave behind is no more than it.
    go_on(fifo, cfg, &report);
    cannot_exec(
        cfg,
        burrow_vm_init::exec::exec_search(&cfg.argv, &env),
        &report,
    )
}

/// The spec's startContainer hooks, in the command's process after the
/// start and its confinement (in the container: their paths are the
/// container's).
fn start_container_hooks(cfg: &SandboxConfig, report: &Report) {
    if let Some(hooks) = &cfg.hooks {
        if let Err(msg) = hooks.run_start_container() {
            report.fail(EXIT_SETUP, &msg);
        }
    }
}

/// Says why the command cannot run (errno `e` of its exec) and exits
/// with the status that tells it (127 not found, 126 cannot run).
fn cannot_exec(cfg: &SandboxConfig, e: i32, report: &Report) -> ! {
    let errno = Errno::from_raw(e);
    let code = match errno {
        Errno::ENOENT | Errno::ENOTDIR => EXIT_NOT_FOUND,
        _ => EXIT_CANNOT_EXEC,
    };
    let name = cfg.argv[0].to_string_lossy();
    let exists = std::path::Path::new(name.as_ref()).is_file();
    let hint = if errno == Errno::ENOENT && exists {
        " (its interpreter or dynamic loader is missing)"
    } else {
        ""
    };
    report.fail(
        code,
        &format!("cannot run '{name}' in the sandbox: {}{hint}", errno.desc()),
    )
}

/// Reaps children until the command exits; returns its exit status
/// (128+N when killed by signal N). A SIGTERM is relayed as `stop`; when
/// that is another signal, a second SIGTERM kills the command (as podman
/// stop ends with SIGKILL what its stop signal did not end).
fn reap_until_exit(command: Pid, own_session: bool, stop: i32) -> i32 {
    let set = signals::init_set();
    let mut stopping = false;
    loop {
        let (signo, code) = sys::wait_signal(&set);
        if signo == libc::SIGCHLD {
            loop {
                match waitpid(None::<Pid>, Some(WaitPidFlag::WNOHANG)) {
                    Ok(WaitStatus::Exited(pid, status)) if pid == command => return status,
                    Ok(WaitStatus::Signaled(pid, sig, _)) if pid == command => {
                        return signals::status_from_signal(sig)
                    }
                    Ok(WaitStatus::StillAlive) | Err(_) => break,
                    Ok(_) => {} // an orphan re-parented to us: reaped
                }
            }
        } else if signals::should_relay(code, !own_session) {
            let sig = match signo {
                libc::SIGTERM if stopping && stop != libc::SIGTERM => libc::SIGKILL,
                libc::SIGTERM => {
                    stopping = true;
                    stop
                }
                other => other,
            };
            let _ = sys::kill_raw(command, sig);
        }
    }
}

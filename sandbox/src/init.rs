//! The sandbox side: pid 1 of the new pid namespace. It waits for the id
//! maps, builds the root, forks the command, then reaps every process that
//! ends in the namespace and relays signals to the command until the
//! command exits, whose status it exits with.

use std::os::fd::OwnedFd;
use std::os::unix::ffi::OsStrExt;
use std::path::PathBuf;

use nix::errno::Errno;
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
) -> ! {
    // If burrow dies, so does pid 1, and with it the whole pid namespace.
    let _ = sys::set_parent_death_signal(Signal::SIGKILL);
    let mut byte = [0u8; 1];
    if !matches!(nix::unistd::read(&sync, &mut byte), Ok(1)) {
        sys::exit_now(EXIT_SETUP); // burrow died or could not write the id maps
    }
    drop(sync);
    if cfg.cgroup_subtree.is_some() {
        // Now in the sandbox's cgroup: a cgroup namespace rooted there.
        if let Err(e) = nix::sched::unshare(nix::sched::CloneFlags::CLONE_NEWCGROUP) {
            fail(
                &report_fd,
                EXIT_SETUP,
                &format!("cgroup namespace: {}", e.desc()),
            );
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
    let child = match sys::fork() {
        Ok(Some(pid)) => pid,
        Ok(None) => exec_command(cfg, &cwd, Report(Some(report_fd))),
        Err(e) => fail(&report_fd, EXIT_SETUP, &format!("fork: {}", e.desc())),
    };
    if cfg.hold.is_some() {
        // Handed over: burrow exits once the command is at its hold point
        // (this pipe closed on both sides), and the sandbox lives on.
        if let Err(e) = sys::clear_parent_death_signal() {
            fail(&report_fd, EXIT_SETUP, &format!("prctl: {}", e.desc()));
        }
    }
    drop(report_fd);
    // With --vm the command here is the relay, which translates SIGTERM
    // for the guest's command itself.
    let stop = if cfg.vm.is_some() {
        libc::SIGTERM
    } else {
        cfg.stop_signal
    };
    sys::exit_now(reap_until_exit(child, cfg.new_session, stop))
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
    if cfg.vm.is_some() {
        // The guest's init enters the working directory.
        nix::unistd::chdir("/").ctx(|| "entering /")?;
        return Ok(PathBuf::from("/"));
    }
    if let Some(dir) = &cfg.chdir {
        nix::unistd::chdir(dir.as_path()).ctx(|| format!("--chdir {}", dir.display()))?;
        return Ok(dir.clone());
    }
    for dir in &cfg.fallback_dirs {
        if nix::unistd::chdir(dir.as_path()).is_ok() {
            return Ok(dir.clone());
        }
    }
    nix::unistd::chdir("/").ctx(|| "entering /")?;
    Ok(PathBuf::from("/"))
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
struct Report(Option<OwnedFd>);

impl Report {
    fn fail(&self, code: i32, msg: &str) -> ! {
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
/// opens the FIFO for reading.
fn hold(hold: &crate::config::Hold, report: &mut Report) {
    use std::os::fd::AsFd;
    let fifo = std::path::Path::new(crate::config::Hold::FIFO);
    if let Err(e) = sys::open_beneath(hold.dir.as_fd(), fifo) {
        report.fail(EXIT_SETUP, &format!("the start FIFO: {}", e.desc()));
    }
    report.0 = None;
    let opened = sys::open_beneath_with(hold.dir.as_fd(), fifo, libc::O_WRONLY);
    match opened.and_then(|fd| nix::unistd::write(&fd, b"0")) {
        Ok(_) => {}
        Err(e) => report.fail(EXIT_SETUP, &format!("waiting for start: {}", e.desc())),
    }
}

/// In the forked child: become the command (or, with `--vm`, the VM
/// supervisor that runs it).
fn exec_command(cfg: &SandboxConfig, cwd: &std::path::Path, mut report: Report) -> ! {
    if let Some(vm) = &cfg.vm {
        if let Some(h) = &cfg.hold {
            hold(h, &mut report);
        }
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
    if let Some(console) = &cfg.console {
        if let Err(msg) = crate::console::attach(console) {
            report.fail(EXIT_SETUP, &msg);
        }
    }
    let mut env = burrow_vm_init::exec::with_pwd(&cfg.env, cwd.as_os_str().as_bytes());
    let user = match cfg
        .user
        .as_deref()
        .map(burrow_vm_init::user::resolve_in_root)
    {
        Some(Ok(mut id)) => {
            for &g in &cfg.group_add {
                if g != id.gid && !id.groups.contains(&g) {
                    id.groups.push(g);
                }
            }
            Some(id)
        }
        Some(Err(msg)) => report.fail(EXIT_SETUP, &msg),
        None => None,
    };
    if cfg.home_if_unset {
        let home = user.as_ref().map_or(&b"/root"[..], |id| &id.home);
        env = burrow_vm_init::user::with_home(env, home);
    }

    if let Some(h) = &cfg.hold {
        // A command that is not there is told by create, not after start.
        match burrow_vm_init::exec::find_executable(&cfg.argv, &env) {
            0 => {}
            e => cannot_exec(cfg, e, &report),
        }
        hold(h, &mut report);
    }
    if let Some(mask) = cfg.umask {
        nix::sys::stat::umask(nix::sys::stat::Mode::from_bits_truncate(mask));
    }
    // Last, so that nothing burrow still does is confined by it.
    let user = cfg.user.as_deref().zip(user.as_ref());
    match cfg.security.apply(user) {
        Ok(warnings) => {
            for w in warnings {
                eprintln!("burrow: warning: {w}");
            }
        }
        Err(msg) => report.fail(EXIT_SETUP, &msg),
    }
    cannot_exec(
        cfg,
        burrow_vm_init::exec::exec_search(&cfg.argv, &env),
        &report,
    )
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
    let set = signals::waited_set();
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

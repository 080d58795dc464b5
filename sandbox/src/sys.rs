//! The syscall edge: thin wrappers over calls nix does not cover (clone into
//! namespaces, the new mount API, openat2, sigwaitinfo, interface flags).
//! Every `unsafe` block of the launcher lives here.

use std::ffi::{CStr, CString};
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, FromRawFd, OwnedFd, RawFd};
use std::path::Path;

use nix::errno::Errno;
use nix::sched::CloneFlags;
use nix::sys::signal::{SigSet, Signal};
use nix::unistd::Pid;

/// Text of an I/O error without Rust's "(os error N)" suffix.
pub fn errno_text(e: &std::io::Error) -> String {
    match e.raw_os_error() {
        Some(n) => Errno::from_raw(n).desc().to_string(),
        None => e.to_string(),
    }
}

fn path_cstr(p: &Path) -> nix::Result<CString> {
    use std::os::unix::ffi::OsStrExt;
    CString::new(p.as_os_str().as_bytes()).map_err(|_| Errno::EINVAL)
}

fn check(r: libc::c_long) -> nix::Result<libc::c_long> {
    if r < 0 {
        Err(Errno::last())
    } else {
        Ok(r)
    }
}

fn owned(r: libc::c_long) -> nix::Result<OwnedFd> {
    let fd = check(r)? as RawFd;
    // SAFETY: the kernel just returned `fd` as a new descriptor that nothing else owns.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

/// Forks into new namespaces. Returns `None` in the child.
pub fn clone_into(flags: CloneFlags) -> nix::Result<Option<Pid>> {
    let all = flags.bits() as libc::c_ulong | libc::SIGCHLD as libc::c_ulong;
    // SAFETY: with a null stack, clone behaves like fork. burrow is
    // single-threaded at this point, so the child inherits no locks held by
    // other threads.
    let r = unsafe { libc::syscall(libc::SYS_clone, all, 0usize, 0usize, 0usize, 0usize) };
    match check(r)? {
        0 => Ok(None),
        pid => Ok(Some(Pid::from_raw(pid as i32))),
    }
}

/// Asks the kernel to send `sig` to this process when its parent dies.
pub fn set_parent_death_signal(sig: Signal) -> nix::Result<()> {
    // SAFETY: PR_SET_PDEATHSIG takes a signal number and touches no memory.
    check(unsafe { libc::prctl(libc::PR_SET_PDEATHSIG, sig as libc::c_ulong, 0, 0, 0) } as _)
        .map(drop)
}

/// Waits for one of `set` (which must be blocked); returns the signal and
/// its `si_code` (SI_KERNEL for signals the terminal sends).
pub fn wait_signal(set: &SigSet) -> (i32, i32) {
    loop {
        // SAFETY: siginfo_t is plain data; the kernel fills it in.
        let mut info: libc::siginfo_t = unsafe { std::mem::zeroed() };
        // SAFETY: both pointers are valid for the duration of the call.
        let r = unsafe { libc::sigwaitinfo(set.as_ref(), &mut info) };
        if r > 0 {
            return (r, info.si_code);
        }
    }
}

/// `open_tree(2)`: a detached copy of the mount tree at `path`.
pub fn open_tree_clone(path: &Path, recursive: bool) -> nix::Result<OwnedFd> {
    let c = path_cstr(path)?;
    let mut flags = libc::OPEN_TREE_CLONE | libc::OPEN_TREE_CLOEXEC;
    if recursive {
        flags |= libc::AT_RECURSIVE as libc::c_uint;
    }
    // SAFETY: `c` is a valid NUL-terminated path; the result is a new fd.
    owned(unsafe { libc::syscall(libc::SYS_open_tree, libc::AT_FDCWD, c.as_ptr(), flags) })
}

/// As [`open_tree_clone`] of one file, not following `path` if it is a
/// symlink (an error then).
pub fn open_tree_clone_nofollow(path: &Path) -> nix::Result<OwnedFd> {
    let c = path_cstr(path)?;
    let flags =
        libc::OPEN_TREE_CLONE | libc::OPEN_TREE_CLOEXEC | libc::AT_SYMLINK_NOFOLLOW as libc::c_uint;
    // SAFETY: `c` is a valid NUL-terminated path; the result is a new fd.
    let fd =
        owned(unsafe { libc::syscall(libc::SYS_open_tree, libc::AT_FDCWD, c.as_ptr(), flags) })?;
    // (open_tree of a symlink with AT_SYMLINK_NOFOLLOW binds the link
    // itself: refused, as a device was asked for.)
    let kind = nix::sys::stat::fstat(&fd)?.st_mode & libc::S_IFMT;
    if kind != libc::S_IFCHR && kind != libc::S_IFBLK {
        return Err(nix::errno::Errno::ENODEV);
    }
    Ok(fd)
}

/// A detached copy of the mount at `dir` (open_tree with AT_EMPTY_PATH): a
/// bind of that directory or file alone, or with `recursive` with the
/// mounts below it too.
pub fn open_tree_clone_fd(dir: BorrowedFd, recursive: bool) -> nix::Result<OwnedFd> {
    let mut flags =
        libc::OPEN_TREE_CLONE | libc::OPEN_TREE_CLOEXEC | libc::AT_EMPTY_PATH as libc::c_uint;
    if recursive {
        flags |= libc::AT_RECURSIVE as libc::c_uint;
    }
    // SAFETY: `dir` is an open descriptor and the path is the empty string.
    owned(unsafe { libc::syscall(libc::SYS_open_tree, dir.as_raw_fd(), c"".as_ptr(), flags) })
}

/// `mount_setattr(2)` on the detached or attached mount `fd` (and, with
/// `recursive`, everything below it).
pub fn mount_setattr(fd: BorrowedFd, set: u64, recursive: bool) -> nix::Result<()> {
    let mut attr = libc::mount_attr {
        attr_set: set,
        attr_clr: 0,
        propagation: 0,
        userns_fd: 0,
    };
    let mut flags = libc::AT_EMPTY_PATH as libc::c_uint;
    if recursive {
        flags |= libc::AT_RECURSIVE as libc::c_uint;
    }
    // SAFETY: `attr` is a valid mount_attr of the size passed; "" is a valid C string.
    check(unsafe {
        libc::syscall(
            libc::SYS_mount_setattr,
            fd.as_raw_fd(),
            c"".as_ptr(),
            flags,
            &mut attr as *mut libc::mount_attr,
            std::mem::size_of::<libc::mount_attr>(),
        )
    })
    .map(drop)
}

/// `move_mount(2)` of the detached mount `from` onto the object `to`.
pub fn move_mount_onto(from: BorrowedFd, to: BorrowedFd) -> nix::Result<()> {
    let flags = libc::MOVE_MOUNT_F_EMPTY_PATH | libc::MOVE_MOUNT_T_EMPTY_PATH;
    // SAFETY: both fds are valid for the call; the paths are empty C strings.
    check(unsafe {
        libc::syscall(
            libc::SYS_move_mount,
            from.as_raw_fd(),
            c"".as_ptr(),
            to.as_raw_fd(),
            c"".as_ptr(),
            flags,
        )
    })
    .map(drop)
}

/// `move_mount(2)` of the detached mount `from` onto `path`.
pub fn move_mount_to_path(from: BorrowedFd, path: &Path) -> nix::Result<()> {
    let c = path_cstr(path)?;
    // SAFETY: `from` is valid, the paths are valid C strings.
    check(unsafe {
        libc::syscall(
            libc::SYS_move_mount,
            from.as_raw_fd(),
            c"".as_ptr(),
            libc::AT_FDCWD,
            c.as_ptr(),
            libc::MOVE_MOUNT_F_EMPTY_PATH,
        )
    })
    .map(drop)
}

/// One option for a new filesystem context.
pub enum FsOption<'a> {
    Flag(&'a CStr),
    Value(&'a CStr, &'a CStr),
}

/// A new, detached mount of filesystem `fstype` (fsopen, fsconfig, fsmount).
/// Its source (the name mountinfo shows) is `fstype` unless `options` name
/// one, as `mount -t proc proc /proc` and engines name theirs.
pub fn new_mount(fstype: &CStr, options: &[FsOption], attr: u64) -> nix::Result<OwnedFd> {
    // SAFETY: `fstype` is a valid C string.
    let fs =
        owned(unsafe { libc::syscall(libc::SYS_fsopen, fstype.as_ptr(), libc::FSOPEN_CLOEXEC) })?;
    let config = |cmd: libc::c_uint, key: *const libc::c_char, value: *const libc::c_char| {
        // SAFETY: `fs` is a valid fs context; key and value are null or valid C strings.
        check(unsafe { libc::syscall(libc::SYS_fsconfig, fs.as_raw_fd(), cmd, key, value, 0) })
    };
    if !options
        .iter()
        .any(|o| matches!(o, FsOption::Value(k, _) if k.to_bytes() == b"source"))
    {
        config(
            libc::FSCONFIG_SET_STRING,
            c"source".as_ptr(),
            fstype.as_ptr(),
        )?;
    }
    for opt in options {
        match opt {
            FsOption::Flag(k) => config(libc::FSCONFIG_SET_FLAG, k.as_ptr(), std::ptr::null())?,
            FsOption::Value(k, v) => config(libc::FSCONFIG_SET_STRING, k.as_ptr(), v.as_ptr())?,
        };
    }
    config(
        libc::FSCONFIG_CMD_CREATE,
        std::ptr::null(),
        std::ptr::null(),
    )?;
    // SAFETY: `fs` is a configured fs context; the result is a new fd.
    owned(unsafe {
        libc::syscall(
            libc::SYS_fsmount,
            fs.as_raw_fd(),
            libc::FSMOUNT_CLOEXEC,
            attr as libc::c_uint,
        )
    })
}

/// `openat2(2)` with RESOLVE_IN_ROOT: `path` is looked up as if `root` were `/`,
/// so symlinks in the sandbox cannot point outside it.
pub fn open_in_root(root: BorrowedFd, path: &Path, flags: libc::c_int) -> nix::Result<OwnedFd> {
    openat2(
        root.as_raw_fd(),
        path,
        flags,
        libc::RESOLVE_IN_ROOT | libc::RESOLVE_NO_MAGICLINKS,
    )
}

/// Opens `path` (O_PATH) beneath `dir`, with no symlink followed.
pub fn open_beneath(dir: BorrowedFd, path: &Path) -> nix::Result<OwnedFd> {
    openat2(
        dir.as_raw_fd(),
        path,
        libc::O_PATH,
        libc::RESOLVE_BENEATH | libc::RESOLVE_NO_SYMLINKS,
    )
}

/// Opens `path` (O_PATH) only if no component of it is a symlink.
pub fn open_without_symlinks(path: &Path) -> nix::Result<OwnedFd> {
    openat2(
        libc::AT_FDCWD,
        path,
        libc::O_PATH,
        libc::RESOLVE_NO_SYMLINKS,
    )
}

fn openat2(dir: RawFd, path: &Path, flags: libc::c_int, resolve: u64) -> nix::Result<OwnedFd> {
    let c = path_cstr(path)?;
    let mut how: libc::open_how = {
        // SAFETY: open_how is plain data; zero is a valid value for every field.
        unsafe { std::mem::zeroed() }
    };
    how.flags = (flags | libc::O_CLOEXEC) as u64;
    how.mode = if flags & libc::O_CREAT != 0 { 0o644 } else { 0 };
    how.resolve = resolve;
    // With RESOLVE_IN_ROOT or RESOLVE_BENEATH the kernel answers EAGAIN
    // when a rename or mount anywhere on the machine raced a `..` of the
    // walk (a symlink's target such as /etc/os-release's): asked again, as
    // openat2(2) says to.
    let mut tries = 0;
    loop {
        // SAFETY: `how` and `c` are valid for the call; the result is a new fd.
        let res = owned(unsafe {
            libc::syscall(
                libc::SYS_openat2,
                dir,
                c.as_ptr(),
                &mut how as *mut libc::open_how,
                std::mem::size_of::<libc::open_how>(),
            )
        });
        match res {
            Err(nix::errno::Errno::EAGAIN) if tries < 1000 => tries += 1,
            other => return other,
        }
    }
}

/// Ends the process at once, without running destructors or atexit handlers
/// (used in forked children).
pub fn exit_now(code: i32) -> ! {
    // SAFETY: _exit is always safe to call.
    unsafe { libc::_exit(code) }
}

/// Sends signal number `signo` (realtime ones too, which nix's `Signal`
/// does not name) to `pid`.
pub fn kill_raw(pid: Pid, signo: i32) -> nix::Result<()> {
    // SAFETY: kill(2) takes plain integers and touches no memory.
    Errno::result(unsafe { libc::kill(pid.as_raw(), signo) }).map(drop)
}

/// Forks the calling process. Returns `None` in the child.
pub fn fork() -> nix::Result<Option<Pid>> {
    // SAFETY: burrow's processes are single-threaded, so the child
    // inherits no lock held by another thread.
    match unsafe { nix::unistd::fork() }? {
        nix::unistd::ForkResult::Child => Ok(None),
        nix::unistd::ForkResult::Parent { child } => Ok(Some(child)),
    }
}

/// Whether the file `fd` is on one of the kernel's special filesystems a
/// sandbox's isolation rests on: procfs, sysfs, devpts or mqueue.
pub fn on_special_fs(fd: BorrowedFd) -> nix::Result<bool> {
    const MQUEUE_MAGIC: i64 = 0x1980_0202;
    let t = nix::sys::statfs::fstatfs(fd)?.filesystem_type().0 as i64;
    Ok([
        libc::PROC_SUPER_MAGIC,
        libc::SYSFS_MAGIC,
        libc::DEVPTS_SUPER_MAGIC,
        MQUEUE_MAGIC,
    ]
    .contains(&t))
}

/// The text of `path`, a regular file of at most `max` bytes of UTF-8: a
/// device or FIFO named by mistake is refused, not read forever.
pub fn read_bounded(path: &Path, max: u64) -> std::result::Result<String, String> {
    use std::io::Read;
    let f = std::fs::File::open(path).map_err(|e| errno_text(&e))?;
    if !f.metadata().map_err(|e| errno_text(&e))?.is_file() {
        return Err("not a regular file".into());
    }
    let mut bytes = Vec::new();
    f.take(max + 1)
        .read_to_end(&mut bytes)
        .map_err(|e| errno_text(&e))?;
    if bytes.len() as u64 > max {
        return Err(format!("larger than {} KiB", max >> 10));
    }
    String::from_utf8(bytes).map_err(|_| "not UTF-8 text".into())
}

/// A forked helper of burrow's (the union's server, the network stack).
pub enum Helper {
    Parent(Pid),
    /// In the child; with [`HelperLife::Sandbox`], a pidfd of the
    /// sandbox's pid 1 to hand to [`exit_when_ended`] once the helper may
    /// start threads.
    Child(Option<OwnedFd>),
}

/// How long a helper lives.
#[derive(Clone, Copy)]
pub enum HelperLife {
    /// As long as burrow (`burrow run`).
    Launcher,
    /// As long as the sandbox whose pid 1 is `init`: burrow hands it over
    /// (the OCI runtime's `create`) and exits. The helper closes `close`
    /// (what was handed over for the command, and burrow's end of the
    /// socket that hands pid 1 over, whose end pid 1 waits for when
    /// create fails), and keeps none of the
    /// runtime's streams but stderr (not even that with `quiet`: a
    /// terminal's engine waits for the end of the runtime's output).
    Sandbox {
        init: Pid,
        close: [Option<RawFd>; 10],
        quiet: bool,
    },
}

/// Forks a helper. With [`HelperLife::Launcher`] the child has SIGKILL as
/// its parent-death signal and has checked that its parent is still the
/// process that forked it: had burrow died before the signal was set, the
/// helper would be an orphan no signal reaches, so it exits at once. With
/// [`HelperLife::Sandbox`] it holds a pidfd of pid 1 (opened before the
/// fork, while pid 1 waits for its id maps, so it is that process).
/// The helper is not dumpable: it joins the sandbox's user namespace, and
/// a command that sees its pid (`--pid host`) could otherwise trace it,
/// or reach the host's root and its descriptors through its /proc files.
pub fn fork_helper(life: HelperLife) -> nix::Result<Helper> {
    let parent = nix::unistd::getpid();
    let sandbox = match life {
        HelperLife::Launcher => None,
        HelperLife::Sandbox { init, .. } => Some(pidfd_open(init)?),
    };
    Ok(match fork()? {
        Some(pid) => Helper::Parent(pid),
        None => {
            if set_not_dumpable().is_err() {
                exit_now(1);
            }
            match life {
                HelperLife::Launcher => die_with(parent),
                HelperLife::Sandbox { close, quiet, .. } => {
                    for fd in close.into_iter().flatten() {
                        close_handed_over(fd);
                    }
                    if let Ok(null) = nix::fcntl::open(
                        "/dev/null",
                        nix::fcntl::OFlag::O_RDWR | nix::fcntl::OFlag::O_CLOEXEC,
                        nix::sys::stat::Mode::empty(),
                    ) {
                        let last = if quiet { 2 } else { 1 };
                        for stream in 0..=last {
                            let _ = dup_onto(null.as_fd(), stream);
                        }
                    }
                }
            }
            Helper::Child(sandbox)
        }
    })
}

/// `pidfd_open(2)`: a descriptor that stays this process's, and becomes
/// readable when it ends.
pub fn pidfd_open(pid: Pid) -> nix::Result<OwnedFd> {
    // SAFETY: pidfd_open takes a pid and flags and returns a new fd.
    owned(unsafe { libc::syscall(libc::SYS_pidfd_open, pid.as_raw(), 0) })
}

/// The user namespace that owns the namespace `ns` (ioctl NS_GET_USERNS).
pub fn ns_owner(ns: BorrowedFd) -> nix::Result<OwnedFd> {
    const NS_GET_USERNS: libc::c_ulong = 0xb701;
    // SAFETY: the ioctl takes no argument and returns a new descriptor.
    owned(unsafe { libc::ioctl(ns.as_raw_fd(), NS_GET_USERNS) } as libc::c_long)
}

/// `pidfd_send_signal(2)` of signal number `signo` (real-time ones too).
pub fn pidfd_send_signal(pidfd: BorrowedFd, signo: i32) -> nix::Result<()> {
    // SAFETY: a valid pidfd, a signal number, no siginfo, no flags.
    check(unsafe {
        libc::syscall(
            libc::SYS_pidfd_send_signal,
            pidfd.as_raw_fd(),
            signo,
            std::ptr::null::<libc::siginfo_t>(),
            0,
        )
    })
    .map(drop)
}

/// Waits until the process of `pidfd` ends, for at most `timeout` (none:
/// for ever); whether it ended.
pub fn wait_pidfd(pidfd: BorrowedFd, timeout: Option<std::time::Duration>) -> bool {
    use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
    let deadline = timeout.map(|t| std::time::Instant::now() + t);
    loop {
        let left = match deadline {
            None => PollTimeout::NONE,
            Some(d) => {
                let ms = d
                    .saturating_duration_since(std::time::Instant::now())
                    .as_millis();
                PollTimeout::try_from(ms.min(i32::MAX as u128) as i32).unwrap_or(PollTimeout::MAX)
            }
        };
        let mut fds = [PollFd::new(pidfd, PollFlags::POLLIN)];
        match poll(&mut fds, left) {
            Ok(n) if n > 0 => return true,
            Ok(_) => return false,
            Err(Errno::EINTR) => {}
            Err(_) => return false,
        }
    }
}

/// In a helper that outlives burrow: a thread that ends the process when
/// the sandbox's pid 1 has ended. (Started once the helper is done with
/// setns(CLONE_NEWUSER), which needs a single thread.)
pub fn exit_when_ended(sandbox: OwnedFd) {
    std::thread::spawn(move || {
        wait_pidfd(sandbox.as_fd(), None);
        exit_now(0);
    });
}

/// Clears the parent-death signal (pid 1 of a sandbox burrow hands over).
pub fn clear_parent_death_signal() -> nix::Result<()> {
    // SAFETY: PR_SET_PDEATHSIG with 0 clears it and touches no memory.
    check(unsafe { libc::prctl(libc::PR_SET_PDEATHSIG, 0, 0, 0, 0) } as _).map(drop)
}

/// In a child of `parent`: SIGKILL when `parent` dies, and exit now when it
/// already has (the child was re-parented before the signal was set).
fn die_with(parent: Pid) {
    if set_parent_death_signal(Signal::SIGKILL).is_err() || nix::unistd::getppid() != parent {
        exit_now(125);
    }
}

/// Restores SIGPIPE's default action, which Rust's runtime sets to ignore
/// and which exec would otherwise pass on to the command.
pub fn reset_sigpipe() {
    use nix::sys::signal::{signal, SigHandler};
    // SAFETY: installs the default disposition, no handler code runs.
    let _ = unsafe { signal(Signal::SIGPIPE, SigHandler::SigDfl) };
}

/// Sends `fds` over the unix socket `sock` (SCM_RIGHTS).
pub fn send_fds(sock: BorrowedFd, fds: &[RawFd]) -> nix::Result<()> {
    send_fds_with(sock, b"f", fds)
}

/// Sends `fds` with `payload` as the message's bytes (a console socket's
/// peer gets the terminal's name, as runc sends it).
pub fn send_fds_with(sock: BorrowedFd, payload: &[u8], fds: &[RawFd]) -> nix::Result<()> {
    use nix::sys::socket::{sendmsg, ControlMessage, MsgFlags};
    let iov = [std::io::IoSlice::new(payload)];
    sendmsg::<()>(
        sock.as_raw_fd(),
        &iov,
        &[ControlMessage::ScmRights(fds)],
        MsgFlags::empty(),
        None,
    )
    .map(drop)
}

/// Receives the descriptors sent with [`send_fds`]; empty when the peer
/// closed the socket without sending any.
pub fn recv_fds(sock: BorrowedFd) -> nix::Result<Vec<OwnedFd>> {
    use nix::sys::socket::{recvmsg, ControlMessageOwned, MsgFlags};
    let mut buf = [0u8; 1];
    let mut iov = [std::io::IoSliceMut::new(&mut buf)];
    let mut space = nix::cmsg_space!([RawFd; 4]);
    let msg = recvmsg::<()>(
        sock.as_raw_fd(),
        &mut iov,
        Some(&mut space),
        MsgFlags::MSG_CMSG_CLOEXEC,
    )?;
    let mut out = Vec::new();
    for c in msg.cmsgs()? {
        if let ControlMessageOwned::ScmRights(fds) = c {
            for fd in fds {
                // SAFETY: SCM_RIGHTS just installed `fd` in this process;
                // nothing else owns it.
                out.push(unsafe { OwnedFd::from_raw_fd(fd) });
            }
        }
    }
    Ok(out)
}

/// Makes every mount of this process's mount namespace private
/// (recursively), so that nothing it mounts reaches the namespace it was
/// copied from, nor the other way.
pub fn make_mounts_private() -> nix::Result<()> {
    use nix::mount::{mount, MsFlags};
    mount(
        None::<&str>,
        "/",
        None::<&str>,
        MsFlags::MS_REC | MsFlags::MS_PRIVATE,
        None::<&str>,
    )
}

/// Sets no_new_privs: exec can no longer grant privileges (setuid bits,
/// file capabilities), and unprivileged seccomp and Landlock are allowed.
pub fn set_no_new_privs() -> nix::Result<()> {
    // SAFETY: PR_SET_NO_NEW_PRIVS takes integers only.
    check(unsafe { libc::prctl(libc::PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) } as _).map(drop)
}

/// Makes the calling process non-dumpable: processes of the same user
/// can then neither ptrace it nor open its /proc files (exe, mem, fds).
pub fn set_not_dumpable() -> nix::Result<()> {
    // SAFETY: PR_SET_DUMPABLE takes integers only.
    check(unsafe { libc::prctl(libc::PR_SET_DUMPABLE, 0, 0, 0, 0) } as _).map(drop)
}

/// Installs a seccomp filter program (an array of `struct sock_filter`,
/// as libseccomp exports it). Needs no_new_privs or CAP_SYS_ADMIN.
pub fn load_seccomp(prog: &[u8]) -> nix::Result<()> {
    const INSN: usize = std::mem::size_of::<libc::sock_filter>();
    if prog.is_empty() || !prog.len().is_multiple_of(INSN) || prog.len() / INSN > u16::MAX as usize
    {
        return Err(Errno::EINVAL);
    }
    // Copied into properly aligned instructions.
    let insns: Vec<libc::sock_filter> = prog
        .chunks_exact(INSN)
        .map(|c| libc::sock_filter {
            code: u16::from_ne_bytes([c[0], c[1]]),
            jt: c[2],
            jf: c[3],
            k: u32::from_ne_bytes([c[4], c[5], c[6], c[7]]),
        })
        .collect();
    let fprog = libc::sock_fprog {
        len: insns.len() as u16,
        filter: insns.as_ptr() as *mut libc::sock_filter,
    };
    // SAFETY: `fprog` points at `insns`, which outlives the call; the
    // kernel copies the program.
    check(unsafe {
        libc::syscall(
            libc::SYS_seccomp,
            libc::SECCOMP_SET_MODE_FILTER,
            0,
            &fprog as *const libc::sock_fprog,
        )
    })
    .map(drop)
}

/// An anonymous in-memory file.
pub fn memfd(name: &str) -> std::io::Result<std::fs::File> {
    let c = std::ffi::CString::new(name).map_err(std::io::Error::other)?;
    // SAFETY: `c` is a valid C string for the duration of the call.
    let fd = unsafe { libc::memfd_create(c.as_ptr(), libc::MFD_CLOEXEC) };
    if fd < 0 {
        return Err(std::io::Error::last_os_error());
    }
    // SAFETY: memfd_create returned a new descriptor that nothing else owns.
    Ok(unsafe { std::fs::File::from_raw_fd(fd) })
}

/// Makes the program `cmd` runs get SIGKILL when burrow (its parent) dies,
/// and not start at all when burrow died before it was forked.
pub fn killed_with_parent(cmd: &mut std::process::Command) -> &mut std::process::Command {
    use std::os::unix::process::CommandExt;
    let parent = nix::unistd::getpid().as_raw();
    // SAFETY: the closure runs between fork and exec and only makes the
    // async-signal-safe prctl, getppid and _exit calls.
    unsafe {
        cmd.pre_exec(move || {
            if libc::prctl(
                libc::PR_SET_PDEATHSIG,
                libc::SIGKILL as libc::c_ulong,
                0,
                0,
                0,
            ) < 0
            {
                return Err(std::io::Error::last_os_error());
            }
            if libc::getppid() != parent {
                libc::_exit(125);
            }
            Ok(())
        })
    }
}

/// Closes every descriptor from 3 up but those in `keep`.
pub fn close_all_but(keep: &[RawFd]) -> nix::Result<()> {
    let mut keep: Vec<u32> = keep
        .iter()
        .filter_map(|&fd| u32::try_from(fd).ok())
        .collect();
    keep.sort_unstable();
    let mut from = 3u32;
    for fd in keep.into_iter().chain(std::iter::once(u32::MAX)) {
        if fd > from {
            let last = if fd == u32::MAX { u32::MAX } else { fd - 1 };
            // SAFETY: close_range takes integers only; the descriptors
            // it closes are not used again by this process.
            check(unsafe { libc::syscall(libc::SYS_close_range, from, last, 0) })?;
        }
        from = from.max(fd.saturating_add(1));
    }
    Ok(())
}

/// Whether the namespace `ns` is this process's own of `kind` (a name
/// under /proc/self/ns).
pub fn same_ns(ns: BorrowedFd, kind: &str) -> bool {
    use std::os::unix::fs::MetadataExt;
    let Ok(own) = std::fs::metadata(format!("/proc/self/ns/{kind}")) else {
        return false;
    };
    nix::sys::stat::fstat(ns).is_ok_and(|st| st.st_dev == own.dev() && st.st_ino == own.ino())
}

/// Marks every descriptor from `first` up close-on-exec.
pub fn cloexec_from(first: u32) -> nix::Result<()> {
    // SAFETY: close_range takes integers only; with CLOSE_RANGE_CLOEXEC it
    // closes nothing now.
    check(unsafe {
        libc::syscall(
            libc::SYS_close_range,
            first,
            u32::MAX,
            libc::CLOSE_RANGE_CLOEXEC,
        )
    })
    .map(drop)
}

/// TIOCSWINSZ: a terminal's size in rows and columns.
pub fn set_window_size(tty: BorrowedFd, rows: u16, cols: u16) -> nix::Result<()> {
    let size = libc::winsize {
        ws_row: rows,
        ws_col: cols,
        ws_xpixel: 0,
        ws_ypixel: 0,
    };
    // SAFETY: TIOCSWINSZ reads one winsize from the valid pointer given.
    check(unsafe { libc::ioctl(tty.as_raw_fd(), libc::TIOCSWINSZ, &size) } as _).map(drop)
}

/// TIOCSCTTY: `tty` becomes the controlling terminal of this process's
/// session (it must lead one).
pub fn set_controlling_terminal(tty: BorrowedFd) -> nix::Result<()> {
    // SAFETY: TIOCSCTTY takes an integer argument (0: do not steal).
    check(unsafe { libc::ioctl(tty.as_raw_fd(), libc::TIOCSCTTY, 0) } as _).map(drop)
}

/// dup2(2): `target` (a standard stream) becomes a copy of `fd`.
pub fn dup_onto(fd: BorrowedFd, target: RawFd) -> nix::Result<()> {
    // SAFETY: dup2 on two descriptor numbers; whatever `target` was is
    // closed and replaced, which is what the caller asks.
    check(unsafe { libc::dup2(fd.as_raw_fd(), target) } as _).map(drop)
}

/// NS_GET_NSTYPE: the CLONE_NEW* type of a namespace file.
pub fn namespace_type(ns: BorrowedFd) -> nix::Result<libc::c_int> {
    // SAFETY: NS_GET_NSTYPE takes no argument and returns the type.
    check(unsafe { libc::ioctl(ns.as_raw_fd(), libc::NS_GET_NSTYPE) } as _)
        .map(|t| t as libc::c_int)
}

/// Closes descriptor `fd`, which an `Arc<OwnedFd>` of the configuration
/// owns, in a forked process that will never drop that configuration (it
/// ends with [`exit_now`]): what was handed over for another process.
pub fn close_handed_over(fd: RawFd) {
    // SAFETY: the owner is never dropped in this process (see above), so
    // the number is not closed twice; nothing here uses it afterwards.
    unsafe { libc::close(fd) };
}

/// Sets this process's OOM score adjustment (its children inherit it),
/// through its own /proc file, which it may write only while dumpable.
pub fn set_oom_score_adj(n: i32) -> std::result::Result<(), String> {
    std::fs::write("/proc/self/oom_score_adj", n.to_string()).map_err(|e| {
        let why = match e.raw_os_error() {
            Some(libc::EACCES | libc::EPERM) => {
                "below the caller's own it needs privileges burrow does not have".to_string()
            }
            _ => errno_text(&e),
        };
        format!("--oom-score-adj {n}: {why}")
    })
}

/// Whether `fd` is on a devpts filesystem.
pub fn on_devpts(fd: BorrowedFd) -> nix::Result<bool> {
    let t = nix::sys::statfs::fstatfs(fd)?.filesystem_type().0 as i64;
    Ok(t == libc::DEVPTS_SUPER_MAGIC)
}

/// TIOCGPTPEER: the terminal at the other end of pty master `master`,
/// opened read-write, no controlling terminal, close-on-exec.
pub fn pty_peer(master: BorrowedFd) -> nix::Result<OwnedFd> {
    const TIOCGPTPEER: libc::c_ulong = 0x5441;
    // SAFETY: the ioctl takes open flags as its argument and returns a new
    // descriptor.
    owned(unsafe {
        libc::ioctl(
            master.as_raw_fd(),
            TIOCGPTPEER as _,
            libc::O_RDWR | libc::O_NOCTTY | libc::O_CLOEXEC,
        )
    } as libc::c_long)
}

//! Builds the sandbox's root filesystem inside the new mount namespace.
//!
//! A scratch tmpfs becomes the root first, with the host's root at
//! /oldroot, so every source path (even one under the host's /tmp) stays
//! reachable. The rootfs is cloned with open_tree, made read-only in one
//! recursive mount_setattr, and moved to /newroot; /proc, /dev and /tmp are
//! fresh mounts; user mounts follow in command-line order, their targets
//! resolved with RESOLVE_IN_ROOT so symlinks in the rootfs cannot redirect
//! them. Finally /newroot becomes the root and the rest is detached.

use std::ffi::CStr;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

use nix::errno::Errno;
use nix::fcntl::OFlag;
use nix::mount::{mount, umount2, MntFlags, MsFlags};
use nix::sys::stat::Mode;

use crate::config::{MountOp, SandboxConfig};
use crate::error::{Context, Error, Result};
use crate::storage::Store;
use crate::sys::{self, FsOption};
use crate::union;

const SCRATCH: &str = "/tmp";
const OLDROOT: &str = "/oldroot";
const NEWROOT: &str = "/newroot";
/// Where the sandbox's tmpfs store is mounted in the scratch root.
const STORE: &str = "/store";

/// Device nodes bound from the host into the sandbox's /dev.
const DEVICES: [&str; 6] = ["null", "zero", "full", "random", "urandom", "tty"];

const RO: u64 = libc::MOUNT_ATTR_RDONLY;
const NOSUID: u64 = libc::MOUNT_ATTR_NOSUID;
const NODEV: u64 = libc::MOUNT_ATTR_NODEV;
const NOEXEC: u64 = libc::MOUNT_ATTR_NOEXEC;

/// Builds the root described by `cfg` and pivots into it. `fs_server` is
/// the socket to the union's server when the root is a union.
pub fn enter(cfg: &SandboxConfig, fs_server: Option<&OwnedFd>) -> Result<()> {
    sys::make_mounts_private().map_err(|e| {
        let hint = if e == Errno::EPERM {
            ": the sandbox's user namespace has no privileges here (restricted, e.g. by \
             AppArmor's kernel.apparmor_restrict_unprivileged_userns)"
        } else {
            ""
        };
        Error::usage(format!(
            "cannot set up the sandbox's mounts: {}{hint}",
            e.desc()
        ))
    })?;

    // 1. A scratch root holding the old root and the new one.
    mount(
        Some("tmpfs"),
        SCRATCH,
        Some("tmpfs"),
        MsFlags::MS_NOSUID | MsFlags::MS_NODEV,
        Some("mode=0755,size=64k"),
    )
    .ctx(|| format!("mounting a scratch tmpfs on {SCRATCH}"))?;
    nix::unistd::chdir(SCRATCH).ctx(|| format!("entering {SCRATCH}"))?;
    for dir in ["oldroot", "newroot"] {
        nix::unistd::mkdir(dir, Mode::from_bits_truncate(0o755))
            .ctx(|| format!("creating {dir}"))?;
    }
    nix::unistd::pivot_root(".", "oldroot").ctx(|| "pivot_root into the scratch tmpfs")?;
    nix::unistd::chdir("/").ctx(|| "entering /")?;
    // Every tmpfs of the sandbox is a directory of this one, of one budget.
    let store = Store::mount(
        cfg.storage.store_bytes,
        cfg.storage.inodes,
        Path::new(STORE),
    )?;

    // 2. The root itself: a burrowfs union, or (--bind-rootfs) the rootfs
    //    bound writable, nosuid, nodev.
    if cfg.root.bound {
        bind_root(&cfg.rootfs)?;
    } else {
        let sock = fs_server.ok_or_else(|| Error::usage("no root filesystem server"))?;
        union::mount_root(
            cfg.root.upper.as_ref(),
            &store,
            Path::new(OLDROOT),
            Path::new(NEWROOT),
            sock,
        )?;
    }
    let root = nix::fcntl::open(
        NEWROOT,
        OFlag::O_PATH | OFlag::O_DIRECTORY | OFlag::O_CLOEXEC,
        Mode::empty(),
    )
    .ctx(|| "opening the new root")?;

    // With --vm the guest's kernel makes its own /proc, /sys and /dev,
    // and the resolver is the VMM's.
    if cfg.vm.is_some() {
        // /tmp is the sandbox's (the user's mounts may be under it), shared
        // with the rest of the root.
        mount_tmp(&store, &root)?;
        for op in &cfg.mounts {
            apply(&store, &root, op)?;
        }
        create_container_hooks(cfg)?;
        return enter_vmm_root(cfg, &store, root);
    }

    // 3. Kernel filesystems and scratch space.
    mount_proc(cfg, &root)?;
    if cfg.own_ipc_ns() {
        // (A joined IPC namespace is its owner's to limit.)
        limit_sysv_shm(&root, cfg.storage.store_bytes)?;
    }
    let joined = cfg.netns.is_some();
    for s in cfg.sysctls.iter().filter(|s| !s.of_joined_netns(joined)) {
        s.write_in_root(root.as_fd())?;
    }
    if cfg.rootfs == Path::new("/") {
        // The host's /sys, as the read-only bind of / would show it (not
        // through the union).
        let sys_tree =
            sys::open_tree_clone(&host_path(Path::new("/sys")), true).ctx(|| "cloning /sys")?;
        sys::mount_setattr(sys_tree.as_fd(), RO | NOSUID | NODEV | NOEXEC, true)
            .ctx(|| "making /sys read-only")?;
        let target = mount_point(root.as_fd(), Path::new("/sys"), true)?;
        sys::move_mount_onto(sys_tree.as_fd(), target.as_fd()).ctx(|| "binding /sys")?;
    }
    // (A joined IPC namespace's message queues are not this user
    // namespace's to mount.)
    build_dev(&store, &root, cfg.storage.shm, cfg.own_ipc_ns())?;
    bind_devices(&root, &cfg.devices)?;
    if !cfg.root.bound {
        mount_tmp(&store, &root)?;
    }
    // (A read-only host root without /run has nothing there to hide.)
    let has_run = || sys::open_in_root(root.as_fd(), Path::new("run"), libc::O_PATH).is_ok();
    if cfg.rootfs == Path::new("/") && (cfg.root.upper.is_some() || has_run()) {
        mount_run(&store, &root, &cfg.env)?;
    }

    resolver(cfg, &root)?;

    // 4. The user's mounts, in order; then what they make read-only or hide.
    for op in &cfg.mounts {
        apply(&store, &root, op)?;
    }
    // A sandbox with a cgroup of its own sees that cgroup (the root of its
    // cgroup namespace) at /sys/fs/cgroup, read-only, as engines show a
    // container its limits: not the host's tree, where the caller's other
    // cgroups are. (In one joined, burrow has no privileges over its
    // owner to mount it.)
    if cfg.cgroup_subtree.is_some()
        && cfg.cgroupns.is_none()
        && sys::open_in_root(root.as_fd(), Path::new("sys/fs/cgroup"), libc::O_PATH).is_ok()
    {
        mount_fresh(
            &root,
            "/sys/fs/cgroup",
            c"cgroup2",
            &[],
            RO | NOSUID | NODEV | NOEXEC,
        )?;
    }
    for dst in &cfg.remount_ro {
        crate::masks::remount_ro(&root, dst)?;
    }
    for dst in &cfg.remount_noexec {
        crate::masks::remount_noexec(&root, dst)?;
    }
    for dst in &cfg.masks {
        crate::masks::mask(&root, dst, &host_path(Path::new("/dev/null")))?;
    }

    // 5. Make /newroot the root and drop everything else.
    create_container_hooks(cfg)?;
    pivot_into(root)
}

/// The spec's createContainer hooks: in the sandbox's namespaces, the
/// root built, before it is entered (their paths are the host's).
fn create_container_hooks(cfg: &SandboxConfig) -> Result<()> {
    let Some(hooks) = cfg
        .hooks
        .as_ref()
        .filter(|h| !h.create_container.is_empty())
    else {
        return Ok(());
    };
    // (What they leave behind could not be ended in a pod's pid namespace,
    // where it would be the pod's: see below.)
    if !cfg.own_pid_ns() {
        return Err(Error::usage(
            "createContainer hooks: not in a pid namespace joined (--pidns) or the host's",
        ));
    }
    let ran = hooks.run_create_container(Path::new(OLDROOT));
    // Nothing a hook left behind stays in the sandbox (it would hold the
    // host's root): pid 1 ends every other process of its namespace and
    // reaps them, before the command exists.
    let _ = nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(-1),
        nix::sys::signal::Signal::SIGKILL,
    );
    while let Ok(_) | Err(Errno::EINTR) = nix::sys::wait::waitpid(None::<nix::unistd::Pid>, None) {}
    ran.map_err(Error::usage)
}

/// `--bind-rootfs`: the rootfs (with what is mounted below it) on
/// /newroot, writable, nosuid, nodev.
fn bind_root(rootfs: &Path) -> Result<()> {
    let what = || format!("binding {} as the root", rootfs.display());
    let tree = sys::open_tree_clone(&host_path(rootfs), true).ctx(what)?;
    sys::mount_setattr(tree.as_fd(), NOSUID | NODEV, true).ctx(what)?;
    sys::move_mount_to_path(tree.as_fd(), Path::new(NEWROOT)).ctx(what)
}

/// Makes `root` the root and drops everything else.
fn pivot_into(root: OwnedFd) -> Result<()> {
    umount2(OLDROOT, MntFlags::MNT_DETACH).ctx(|| "detaching the host root")?;
    nix::unistd::fchdir(&root).ctx(|| "entering the new root")?;
    nix::unistd::pivot_root(".", ".").ctx(|| "pivot_root into the new root")?;
    umount2(".", MntFlags::MNT_DETACH).ctx(|| "detaching the scratch root")?;
    nix::unistd::chdir("/").ctx(|| "entering /")?;
    Ok(())
}

/// The network's resolver, as a read-only file from the scratch root
/// (pasta's namespace uses the host's resolvers as they are).
fn resolver(cfg: &SandboxConfig, root: &OwnedFd) -> Result<()> {
    let resolver = match (&cfg.slirp, cfg.net) {
        (Some(net), _) => Some(crate::net::resolv_conf(net)),
        (None, crate::cli::NetMode::Slirp4netns) => Some("nameserver 10.0.2.3\n".to_string()),
        (None, crate::cli::NetMode::Host) => host_resolver(cfg),
        _ => None,
    };
    if let Some(text) = resolver {
        let what = || "--net: /etc/resolv.conf";
        std::fs::write("/resolv.conf", text).ctx(what)?;
        let file = sys::open_tree_clone(Path::new("/resolv.conf"), false).ctx(what)?;
        sys::mount_setattr(file.as_fd(), RO | NOSUID | NODEV, false).ctx(what)?;
        let target = mount_point(root.as_fd(), Path::new("/etc/resolv.conf"), false)?;
        sys::move_mount_onto(file.as_fd(), target.as_fd()).ctx(what)?;
    }
    Ok(())
}

/// With `--net host` on the host's / as a union: the host's resolver file
/// when /etc/resolv.conf is a symlink (systemd-resolved's points into
/// /run, which the union shows empty), read with the host's / as root.
fn host_resolver(cfg: &SandboxConfig) -> Option<String> {
    if cfg.rootfs != Path::new("/") {
        return None;
    }
    let link = host_path(Path::new("/etc/resolv.conf"));
    if !link.symlink_metadata().ok()?.file_type().is_symlink() {
        return None;
    }
    let host = nix::fcntl::open(
        Path::new(OLDROOT),
        OFlag::O_PATH | OFlag::O_DIRECTORY | OFlag::O_CLOEXEC,
        Mode::empty(),
    )
    .ok()?;
    let file =
        sys::open_in_root(host.as_fd(), Path::new("etc/resolv.conf"), libc::O_RDONLY).ok()?;
    let mut text = String::new();
    std::io::Read::read_to_string(&mut std::fs::File::from(file), &mut text).ok()?;
    Some(text)
}

/// `--vm`: the VM supervisor's root is the host's tree, read-only, with
/// fresh /proc, /dev (and /dev/kvm), /tmp and /run; the sandbox's root
/// (`guest`, with the user's mounts) moves to [`crate::vm::GUEST_ROOT`].
fn enter_vmm_root(cfg: &SandboxConfig, store: &Store, guest: OwnedFd) -> Result<()> {
    const VMM: &str = "/vmm";
    nix::unistd::mkdir(VMM, Mode::from_bits_truncate(0o755)).ctx(|| "creating /vmm")?;
    let tree = sys::open_tree_clone(Path::new(OLDROOT), true).ctx(|| "cloning the host root")?;
    sys::mount_setattr(tree.as_fd(), RO | NOSUID | NODEV, true)
        .ctx(|| "making the host root read-only")?;
    sys::move_mount_to_path(tree.as_fd(), Path::new(VMM)).ctx(|| "attaching the host root")?;
    let root = nix::fcntl::open(
        VMM,
        OFlag::O_PATH | OFlag::O_DIRECTORY | OFlag::O_CLOEXEC,
        Mode::empty(),
    )
    .ctx(|| "opening the VMM's root")?;
    mount_proc(cfg, &root)?;
    build_dev(store, &root, cfg.storage.shm, true)?;
    let kvm = Path::new(OLDROOT).join("dev/kvm");
    if let Ok(node) = sys::open_tree_clone(&kvm, false) {
        let target = mount_point(root.as_fd(), Path::new("/dev/kvm"), false)?;
        sys::move_mount_onto(node.as_fd(), target.as_fd()).ctx(|| "binding /dev/kvm")?;
    }
    for dir in ["/tmp", "/run"] {
        store_onto(store, &root, dir, 0o755, NOSUID | NODEV)?;
    }
    resolver(cfg, &root)?;
    let target = mount_point(root.as_fd(), Path::new(crate::vm::GUEST_ROOT), true)?;
    sys::move_mount_onto(guest.as_fd(), target.as_fd())
        .ctx(|| "moving the sandbox's root under the VMM's")?;
    pivot_into(root)
}

/// Where host path `p` is reachable while the scratch root is in place.
fn host_path(p: &Path) -> PathBuf {
    Path::new(OLDROOT).join(p.strip_prefix("/").unwrap_or(p))
}

fn rel(p: &Path) -> &Path {
    p.strip_prefix("/").unwrap_or(p)
}

/// Mounts a new instance of `fstype` on `dst` inside the new root.
fn mount_fresh(
    root: &OwnedFd,
    dst: &str,
    fstype: &CStr,
    opts: &[FsOption],
    attr: u64,
) -> Result<()> {
    let what = || format!("mounting {} on {dst}", fstype.to_string_lossy());
    let target = mount_point(root.as_fd(), Path::new(dst), true)?;
    let mnt = sys::new_mount(fstype, opts, attr).ctx(what)?;
    sys::move_mount_onto(mnt.as_fd(), target.as_fd()).ctx(what)
}

/// A proc of the sandbox's pid namespace on /proc (one made for a pod's
/// namespace by a helper, with --pidns; with --pid host the host's own,
/// and what is mounted below it, which a user namespace may not mount
/// anew).
fn mount_proc(cfg: &SandboxConfig, root: &OwnedFd) -> Result<()> {
    match &cfg.proc_mount {
        None if cfg.pid_host => {
            let what = || "binding the host's /proc (--pid host)";
            let tree = sys::open_tree_clone(&host_path(Path::new("/proc")), true).ctx(what)?;
            sys::mount_setattr(tree.as_fd(), NOSUID | NODEV | NOEXEC, true).ctx(what)?;
            let target = mount_point(root.as_fd(), Path::new("/proc"), true)?;
            sys::move_mount_onto(tree.as_fd(), target.as_fd()).ctx(what)
        }
        None => mount_fresh(root, "/proc", c"proc", &[], NOSUID | NODEV | NOEXEC),
        Some(m) => {
            let target = mount_point(root.as_fd(), Path::new("/proc"), true)?;
            sys::move_mount_onto(m.as_fd(), target.as_fd()).ctx(|| "attaching --pidns's /proc")
        }
    }
}

/// A directory of the store, with `mode`, on `dst` in the new root.
fn store_onto(store: &Store, root: &OwnedFd, dst: &str, mode: u32, attr: u64) -> Result<()> {
    let target = mount_point(root.as_fd(), Path::new(dst), true)?;
    store.mount_onto(
        target.as_fd(),
        mode,
        None,
        attr,
        &format!("mounting tmpfs on {dst}"),
    )
}

/// A tmpfs of its own `size` (taken out of the budget) on `target`, the
/// mount point of `dst`.
fn sized_onto(target: &OwnedFd, dst: &Path, size: u64, mode: u32, attr: u64) -> Result<()> {
    let what = || format!("mounting tmpfs on {}", dst.display());
    let inodes = crate::storage::inodes_for(size);
    // (Named as engines name theirs.)
    let source = if dst == Path::new("/dev/shm") {
        c"shm"
    } else {
        c"tmpfs"
    };
    let mnt =
        crate::storage::new_tmpfs(source, Some(size), Some(inodes), &format!("{mode:o}"), attr)
            .ctx(what)?;
    sys::move_mount_onto(mnt.as_fd(), target.as_fd()).ctx(what)
}

/// SysV shared memory lives in a tmpfs of the kernel's own, outside the
/// store: the sandbox's IPC namespace gets at most `bytes` of it in all
/// (`kernel.shmall`, in pages; the namespace's default is unlimited).
///
/// Only the namespace's root (uid 0 inside) may write it: with `--keep-id`
/// a child of pid 1 becomes uid 0 for the write (pid 1 itself must not
/// change ids, which would clear its parent-death signal); without a
/// mapped uid 0 (`--keep-id --map-users none`) it stays unbounded.
fn limit_sysv_shm(root: &OwnedFd, bytes: u64) -> Result<()> {
    let what = || "limiting SysV shared memory (kernel.shmall)";
    let fd = match sys::open_in_root(
        root.as_fd(),
        Path::new("proc/sys/kernel/shmall"),
        libc::O_WRONLY,
    ) {
        Ok(fd) => Some(fd),
        Err(Errno::EACCES) => None,
        Err(e) => return Err(e).ctx(what),
    };
    let pages = (bytes / 4096).to_string();
    if let Some(fd) = fd {
        return nix::unistd::write(&fd, pages.as_bytes())
            .map(drop)
            .ctx(what);
    }
    match sys::fork().ctx(what)? {
        None => {
            let wrote = nix::unistd::setresuid(0.into(), 0.into(), 0.into())
                .and_then(|()| {
                    sys::open_in_root(
                        root.as_fd(),
                        Path::new("proc/sys/kernel/shmall"),
                        libc::O_WRONLY,
                    )
                })
                .and_then(|fd| nix::unistd::write(&fd, pages.as_bytes()));
            sys::exit_now(i32::from(wrote.is_err()))
        }
        Some(child) => {
            let _ = nix::sys::wait::waitpid(child, None);
            Ok(())
        }
    }
}

/// A private /tmp.
fn mount_tmp(store: &Store, root: &OwnedFd) -> Result<()> {
    store_onto(store, root, "/tmp", 0o1777, NOSUID | NODEV)
}

/// A private /run (the host's, with its sockets, is never shown), holding
/// an empty `$XDG_RUNTIME_DIR` when the command's environment names one
/// under /run: apps find the directory they expect, owned by the command's
/// user (whose id pid 1 has), and none of the host's sockets in it.
fn mount_run(store: &Store, root: &OwnedFd, env: &[std::ffi::CString]) -> Result<()> {
    store_onto(store, root, "/run", 0o755, NOSUID | NODEV)?;
    let runtime = env
        .iter()
        .filter_map(|kv| kv.to_bytes().strip_prefix(b"XDG_RUNTIME_DIR="))
        .map(|v| Path::new(std::ffi::OsStr::from_bytes(v)))
        .find(|p| {
            // Below /run, never /run itself (which must stay 0755).
            p.strip_prefix("/run").is_ok_and(|below| {
                below.components().count() > 0
                    && below
                        .components()
                        .all(|c| matches!(c, std::path::Component::Normal(_)))
            })
        });
    if let Some(dir) = runtime {
        let made = mount_point(root.as_fd(), dir, true)?;
        nix::sys::stat::fchmod(
            &nix::fcntl::openat(
                made.as_fd(),
                ".",
                OFlag::O_RDONLY | OFlag::O_DIRECTORY | OFlag::O_CLOEXEC,
                Mode::empty(),
            )
            .ctx(|| format!("opening {}", dir.display()))?,
            Mode::from_bits_truncate(0o700),
        )
        .ctx(|| format!("making {} private", dir.display()))?;
    }
    Ok(())
}

/// A minimal /dev: a tmpfs with the harmless character devices bound from
/// the host, a private devpts, shm and (`mqueue`) the message queues.
/// `--device`: each host node (checked a device when the options were
/// read) bound at its path, not followed if it became a link since.
fn bind_devices(root: &OwnedFd, devices: &[PathBuf]) -> Result<()> {
    for dst in devices {
        let what = || format!("--device {}", dst.display());
        let node = sys::open_tree_clone_nofollow(&host_path(dst)).ctx(what)?;
        let target = mount_point(root.as_fd(), dst, false)?;
        sys::move_mount_onto(node.as_fd(), target.as_fd()).ctx(what)?;
    }
    Ok(())
}

fn build_dev(store: &Store, root: &OwnedFd, shm: Option<u64>, mqueue: bool) -> Result<()> {
    store_onto(store, root, "/dev", 0o755, NOSUID | NOEXEC)?;
    let dev = sys::open_in_root(
        root.as_fd(),
        Path::new("dev"),
        libc::O_PATH | libc::O_DIRECTORY,
    )
    .ctx(|| "opening /dev")?;
    for name in DEVICES {
        let host = Path::new(OLDROOT).join("dev").join(name);
        let Ok(node) = sys::open_tree_clone(&host, false) else {
            continue; // the host lacks it (e.g. no /dev/tty without a terminal driver)
        };
        let target = mount_point(root.as_fd(), &Path::new("/dev").join(name), false)?;
        sys::move_mount_onto(node.as_fd(), target.as_fd())
            .ctx(|| format!("binding /dev/{name}"))?;
    }
    for (link, target) in [
        ("fd", "/proc/self/fd"),
        ("stdin", "/proc/self/fd/0"),
        ("stdout", "/proc/self/fd/1"),
        ("stderr", "/proc/self/fd/2"),
        ("core", "/proc/kcore"),
        ("ptmx", "pts/ptmx"),
    ] {
        nix::unistd::symlinkat(target, dev.as_fd(), link)
            .ctx(|| format!("creating /dev/{link}"))?;
    }
    // Terminals owned by group tty (5) where the sandbox maps that group,
    // as in every container; else by the caller's group (as crun falls
    // back).
    let pts = [
        FsOption::Flag(c"newinstance"),
        FsOption::Value(c"ptmxmode", c"0666"),
        FsOption::Value(c"mode", c"0620"),
        FsOption::Value(c"gid", c"5"),
    ];
    mount_fresh(root, "/dev/pts", c"devpts", &pts, NOSUID | NOEXEC)
        .or_else(|_| mount_fresh(root, "/dev/pts", c"devpts", &pts[..3], NOSUID | NOEXEC))?;
    match shm {
        Some(size) => {
            let shm = Path::new("/dev/shm");
            let target = mount_point(root.as_fd(), shm, true)?;
            sized_onto(&target, shm, size, 0o1777, NOSUID | NODEV | NOEXEC)?
        }
        None => store_onto(store, root, "/dev/shm", 0o1777, NOSUID | NODEV | NOEXEC)?,
    }
    if !mqueue {
        return Ok(());
    }
    mount_fresh(root, "/dev/mqueue", c"mqueue", &[], NOSUID | NODEV | NOEXEC)
}

fn apply(store: &Store, root: &OwnedFd, op: &MountOp) -> Result<()> {
    match op {
        MountOp::Tmpfs {
            dst,
            size,
            mode,
            like_dst,
        } => match size {
            Some(size) => {
                let target = user_target(root, op, dst, true)?;
                sized_onto(&target, dst, *size, *mode, NOSUID | NODEV)
            }
            None => {
                let target = user_target(root, op, dst, true)?;
                let what = format!("mounting tmpfs on {}", dst.display());
                let (mode, owner) = if *like_dst {
                    // As the union shows it: the image's owner and mode.
                    let st = nix::sys::stat::fstat(&target).ctx(|| what.clone())?;
                    (st.st_mode & 0o7777, Some((st.st_uid, st.st_gid)))
                } else {
                    (*mode, None)
                };
                store.mount_onto(target.as_fd(), mode, owner, NOSUID | NODEV, &what)
            }
        },
        MountOp::Bind {
            src,
            dst,
            read_only,
            id,
            covers,
        } => {
            let flag = if *read_only { "--ro-bind" } else { "--bind" };
            let what = || format!("{flag} {} {}", src.display(), dst.display());
            let tree = sys::open_tree_clone(&host_path(src), true).ctx(what)?;
            // The path was checked (and, for a read-write bind, left out of
            // the union) before the sandbox existed: if it now leads
            // somewhere else, someone swapped it in between.
            let st = nix::sys::stat::fstat(&tree).ctx(what)?;
            if (st.st_dev, st.st_ino) != *id {
                return Err(Error::usage(format!(
                    "{flag} {}: the source changed while the sandbox was being set up",
                    src.display()
                )));
            }
            let attr = NOSUID | NODEV | if *read_only { RO } else { 0 };
            sys::mount_setattr(tree.as_fd(), attr, true).ctx(what)?;
            let target = user_target(root, op, dst, host_path(src).is_dir())?;
            sys::move_mount_onto(tree.as_fd(), target.as_fd()).ctx(what)?;
            for c in covers {
                cover(&tree, c)?;
            }
            Ok(())
        }
    }
}

/// Binds `c.src` read-only over its place in the bind mounted from `bind`,
/// reached from the mounted bind itself with no symlink followed, and only
/// if that place is the same directory.
fn cover(bind: &OwnedFd, c: &crate::guard::Cover) -> Result<()> {
    let swapped = || {
        Error::usage(format!(
            "{}: changed while the sandbox was being set up",
            c.src.display()
        ))
    };
    let what = || format!("covering {} read-only", c.src.display());
    let tree = sys::open_tree_clone(&host_path(&c.src), true).ctx(what)?;
    let place = sys::open_beneath(bind.as_fd(), &c.inside).map_err(|_| swapped())?;
    for fd in [&tree, &place] {
        let st = nix::sys::stat::fstat(fd).ctx(what)?;
        if (st.st_dev, st.st_ino) != c.id {
            return Err(swapped());
        }
    }
    sys::mount_setattr(tree.as_fd(), RO | NOSUID | NODEV, true).ctx(what)?;
    sys::move_mount_onto(tree.as_fd(), place.as_fd()).ctx(what)
}

/// The mount point of a user's mount: refused when, resolved (symlinks in
/// the root followed within it, such as /dev/fd or /etc/mtab into /proc),
/// it lies on the sandbox's /proc, /sys, /dev/pts or /dev/mqueue.
fn user_target(root: &OwnedFd, op: &MountOp, dst: &Path, dir: bool) -> Result<OwnedFd> {
    let target = mount_point(root.as_fd(), dst, dir)?;
    let special = sys::on_special_fs(target.as_fd()).unwrap_or(true);
    if special && !crate::config::special_exception(op) {
        return Err(Error::usage(format!(
            "mount onto {}: it leads into the sandbox's /proc, /sys, /dev/pts or /dev/mqueue",
            dst.display()
        )));
    }
    Ok(target)
}

/// Opens `dst` in the new root (O_PATH), creating it and missing parents
/// as directories (or, for the last component, an empty file when `dir`
/// is false).
fn mount_point(root: BorrowedFd, dst: &Path, dir: bool) -> Result<OwnedFd> {
    open_or_create(root, dst, dir).map_err(|e| mount_point_error(dst, e))
}

fn open_or_create(root: BorrowedFd, dst: &Path, dir: bool) -> nix::Result<OwnedFd> {
    open_or_create_at_depth(root, dst, dir, 0)
}

/// A dangling symlink at `dst` (systemd-resolved's /etc/resolv.conf, into
/// the /run the union shows empty) is followed to where it points, which
/// is made there, within the root: at most this many links deep.
const LINKS_FOLLOWED: usize = 8;

fn open_or_create_at_depth(
    root: BorrowedFd,
    dst: &Path,
    dir: bool,
    depth: usize,
) -> nix::Result<OwnedFd> {
    let relative = match rel(dst) {
        p if p.as_os_str().is_empty() => Path::new("."),
        p => p,
    };
    match sys::open_in_root(root, relative, libc::O_PATH) {
        Err(Errno::ENOENT) => {}
        other => return other,
    }
    let (Some(parent), Some(name)) = (dst.parent(), dst.file_name()) else {
        return Err(Errno::ENOENT);
    };
    let parent_fd = open_or_create(root, parent, true)?;
    let made = if dir {
        nix::sys::stat::mkdirat(&parent_fd, name, Mode::from_bits_truncate(0o755))
    } else {
        nix::fcntl::openat(
            &parent_fd,
            name,
            OFlag::O_CREAT | OFlag::O_EXCL | OFlag::O_WRONLY | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC,
            Mode::from_bits_truncate(0o644),
        )
        .map(drop)
    };
    match made {
        Ok(()) => sys::open_in_root(root, relative, libc::O_PATH),
        Err(Errno::EEXIST) => match sys::open_in_root(root, relative, libc::O_PATH) {
            Err(Errno::ENOENT) if depth < LINKS_FOLLOWED => {
                let link = nix::fcntl::readlinkat(&parent_fd, name)?;
                let target = normalize(&parent.join(link));
                open_or_create_at_depth(root, &target, dir, depth + 1)
            }
            other => other,
        },
        Err(e) => Err(e),
    }
}

/// `path` as an absolute path without `.` and `..` (which stop at `/`, as
/// they do in the root).
fn normalize(path: &Path) -> PathBuf {
    let mut out = PathBuf::from("/");
    for c in path.components() {
        match c {
            std::path::Component::ParentDir => {
                out.pop();
            }
            std::path::Component::Normal(n) => out.push(n),
            _ => {}
        }
    }
    out
}

fn mount_point_error(dst: &Path, e: Errno) -> Error {
    let hint = if e == Errno::EROFS {
        " (the rootfs is read-only: mount onto a path that exists, or under a --tmpfs)"
    } else {
        ""
    };
    Error::usage(format!(
        "cannot create mount point {} in the sandbox: {}{hint}",
        dst.display(),
        e.desc()
    ))
}

//! The validated description of one sandbox, built from the command line
//! before any namespace exists, so bad input fails early with a clear line.

use std::collections::BTreeMap;
use std::ffi::{CString, OsStr, OsString};
use std::os::unix::ffi::{OsStrExt, OsStringExt};
use std::os::unix::fs::FileTypeExt;
use std::path::{Component, Path, PathBuf};

use clap::ArgMatches;

use crate::cli::{MapUsers, NetMode, RunArgs, Share};
use crate::error::{Error, Result};
use burrow_unionfs::layers::Lower;

/// One mount requested on the command line, applied in command-line order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MountOp {
    /// Bind `src` (absolute, host view, symlinks resolved) on `dst` (absolute, sandbox view).
    Bind {
        src: PathBuf,
        dst: PathBuf,
        read_only: bool,
        /// Device and inode of `src` when it was checked: what gets
        /// mounted must be the same directory or file.
        id: (u64, u64),
        /// Read-only binds of directories inside `src` the sandbox must not
        /// write, over their places in this bind (see [`crate::guard`]).
        covers: Vec<crate::guard::Cover>,
    },
    /// A fresh tmpfs on `dst`: a directory of the sandbox's store, or a
    /// tmpfs of its own `size` (taken out of the budget).
    Tmpfs {
        dst: PathBuf,
        size: Option<u64>,
        mode: u32,
        /// Owned and moded as the directory it covers (an image's Volume,
        /// as podman makes a volume), instead of root's with `mode`.
        like_dst: bool,
    },
}

/// Where the sandbox's writes to its root filesystem go.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum UpperLayer {
    /// A private tmpfs, gone with the sandbox.
    Ephemeral,
    /// A directory of the host (and its work directory beside it).
    Dir { upper: PathBuf, work: PathBuf },
}

/// How the root filesystem is built: a burrowfs union of `lowers` (top
/// first), read-only without an upper layer. Even `--read-only` is served,
/// not bound: the union's socket files are not the host's, so no host unix
/// socket can be reached through the root. Only `--bind-rootfs` binds (the
/// caller hands over a directory to be the root, as an OCI engine does).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Root {
    pub lowers: Vec<Lower>,
    pub upper: Option<UpperLayer>,
    /// Whether files show as their `user.containers.override_stat` xattrs
    /// say (an image's owners, set-id bits and device nodes).
    pub override_stat: bool,
    /// With `--image` and `--upper DIR`: what `burrow commit DIR` needs,
    /// written into DIR's work directory by the union's server once it
    /// holds that directory's lock (without `--image`, an old one is
    /// removed there).
    pub commit_base: Option<burrow_images::Base>,
    /// `--bind-rootfs`: no union at all; the one lower, bound writable.
    pub bound: bool,
}

#[derive(Debug, Clone)]
pub struct SandboxConfig {
    pub argv: Vec<CString>,
    pub env: Vec<CString>,
    /// An image's command gets HOME from its user's `/etc/passwd` entry
    /// when neither the image nor the command line sets it (`/root` for
    /// root), as podman gives it.
    pub home_if_unset: bool,
    /// `--user` or the image's User: who the command runs as, resolved in
    /// the sandbox's root just before exec (see [`burrow_vm_init::user`]).
    pub user: Option<String>,
    /// `--group-add`: supplementary groups besides the user's.
    pub group_add: Vec<u32>,
    /// `--umask`: the command's, else the caller's.
    pub umask: Option<u32>,
    /// `--oom-score-adj`: the command's, else the caller's.
    pub oom_score_adj: Option<i32>,
    pub keep_id: bool,
    pub map_users: MapUsers,
    /// `--uidmap` and `--gidmap`, instead of the maps `keep_id` and
    /// `map_users` make.
    pub id_maps: Option<crate::idmap::IdMaps>,
    /// What a SIGTERM to burrow reaches the command as (`--stop-signal`,
    /// the image's StopSignal, else SIGTERM itself).
    pub stop_signal: i32,
    pub net: NetMode,
    /// Host path of the root filesystem's bottom layer (canonical).
    pub rootfs: PathBuf,
    pub root: Root,
    pub mounts: Vec<MountOp>,
    /// `--remount-ro` and `--mask`: applied after every mount, in order.
    pub remount_ro: Vec<PathBuf>,
    /// `--remount-noexec`: after `remount_ro`.
    pub remount_noexec: Vec<PathBuf>,
    pub masks: Vec<PathBuf>,
    /// `--device`: host device nodes under /dev, bound at the same path.
    pub devices: Vec<PathBuf>,
    /// `--sysctl`: in pid 1 once /proc is mounted, or (net.* of a
    /// namespace joined with --netns) by the launcher.
    pub sysctls: Vec<crate::sysctl::Sysctl>,
    pub chdir: Option<PathBuf>,
    /// Directories to try, in order, when `chdir` is not given.
    pub fallback_dirs: Vec<PathBuf>,
    pub hostname: Option<String>,
    pub die_with_parent: bool,
    pub new_session: bool,
    pub json_status_fd: Option<i32>,
    /// Descriptors 3.. passed on to the command.
    pub preserve_fds: u32,
    /// `--netns`: the network namespace to join (then `net` is `Host`:
    /// no new one is made).
    pub netns: Option<std::sync::Arc<std::os::fd::OwnedFd>>,
    /// `--ipcns` and `--utsns`: IPC and UTS namespaces to join, as
    /// `netns`.
    pub ipcns: Option<std::sync::Arc<std::os::fd::OwnedFd>>,
    /// `--pid host` and `--ipc host`: the caller's pid and IPC namespaces.
    pub pid_host: bool,
    pub ipc_host: bool,
    /// `--cgroupns`: the cgroup namespace to join, as `netns`.
    pub cgroupns: Option<std::sync::Arc<std::os::fd::OwnedFd>>,
    /// `--userns`: the user namespace the sandbox's own is made in.
    pub userns: Option<std::sync::Arc<std::os::fd::OwnedFd>>,
    /// `--pidns`: the pid namespace to join, and a proc mount of it
    /// (detached) for the sandbox's /proc.
    pub pidns: Option<std::sync::Arc<std::os::fd::OwnedFd>>,
    pub proc_mount: Option<std::sync::Arc<std::os::fd::OwnedFd>>,
    pub utsns: Option<std::sync::Arc<std::os::fd::OwnedFd>>,
    /// The userspace stack's settings with `--net slirp`.
    pub slirp: Option<burrow_netstack::Config>,
    /// `--publish`: host address, port inside, UDP (else TCP).
    pub publish: Vec<(std::net::SocketAddr, u16, bool)>,
    /// Capabilities, seccomp, Landlock and limits for the command.
    pub security: crate::security::Security,
    /// cgroup limits, and the delegated subtree they go in (none: no
    /// cgroup; with limits, best effort as rlimits).
    pub limits: crate::cgroup::Limits,
    pub cgroup_subtree: Option<crate::cgroup::Placement>,
    /// Set by the OCI runtime: its container's cgroup is named so (see
    /// [`crate::cgroup::Cgroup::create`]), and outlives `create`.
    pub cgroup_name: Option<String>,
    /// Said once at start when limits fall back to rlimits.
    pub limits_warning: Option<String>,
    /// `--vm`: the command runs in a micro-VM.
    pub vm: Option<Box<crate::vm::VmConfig>>,
    /// The one budget of the sandbox's tmpfs mounts.
    pub storage: Storage,
    /// With `--image`: its layers claimed in use (against `burrow rmi` and
    /// `burrow image prune`) while this configuration lives.
    pub image_in_use: Option<std::sync::Arc<burrow_images::InUse>>,
    /// Set by the OCI runtime's `create` (see [`crate::launch::create`]).
    pub hold: Option<Hold>,
    /// Set by the OCI runtime for a spec's `process.terminal`.
    pub console: Option<Console>,
    /// Set by the OCI runtime: the spec's hooks that run in the sandbox.
    pub hooks: Option<Box<crate::hooks::SandboxHooks>>,
}

/// A terminal for the command (the OCI runtime's `--console-socket`): a
/// pty of the sandbox's own devpts, whose master is sent over `socket` (a
/// connected Unix socket, SCM_RIGHTS, as runc sends it) and whose other
/// end becomes the command's stdin, stdout, stderr and controlling
/// terminal.
#[derive(Debug, Clone)]
pub struct Console {
    pub socket: std::sync::Arc<std::os::fd::OwnedFd>,
    /// Rows and columns.
    pub size: Option<(u16, u16)>,
}

/// Where the command waits before its exec until a `start`: the FIFO
/// [`Hold::FIFO`] of the container's state, held as an O_PATH descriptor
/// (never a directory: through /proc/self/fd a directory of the host's
/// would be a way out of the root). The command reopens it for writing
/// through its own /proc/self/fd; the open returns when `start` opens it
/// for reading; the command writes a byte and goes on.
#[derive(Debug, Clone)]
pub struct Hold {
    pub fifo: std::sync::Arc<std::os::fd::OwnedFd>,
}

impl Hold {
    pub const FIFO: &'static str = "exec.fifo";
}

/// The default command when none is given.
pub const DEFAULT_COMMAND: &str = "/bin/sh";

impl SandboxConfig {
    /// Whether the sandbox has a pid namespace of its own (not `--pidns`,
    /// not `--pid host`): pid 1 is then its init.
    pub fn own_pid_ns(&self) -> bool {
        self.pidns.is_none() && !self.pid_host
    }

    /// Whether the sandbox has an IPC namespace of its own.
    pub fn own_ipc_ns(&self) -> bool {
        self.ipcns.is_none() && !self.ipc_host
    }

    /// Validates `args`; `matches` gives the command-line positions so that
    /// mounts and environment edits apply in the order the user wrote them.
    pub fn from_args(mut args: RunArgs, matches: &ArgMatches, stdin_is_tty: bool) -> Result<Self> {
        let netns = match &args.netns {
            None => None,
            Some(path) => {
                if args.net != NetMode::None {
                    return Err(Error::usage(
                        "--netns: the sandbox joins that namespace, so --net cannot also be given",
                    ));
                }
                Some(std::sync::Arc::new(open_ns(
                    path,
                    "--netns",
                    libc::CLONE_NEWNET,
                )?))
            }
        };
        let joined = |path: &Option<PathBuf>, flag: &str, kind| -> Result<_> {
            match path {
                None => Ok(None),
                Some(_) if args.vm => Err(Error::usage(format!(
                    "{flag} is not available with --vm: the guest's kernel has its own"
                ))),
                Some(p) => Ok(Some(std::sync::Arc::new(open_ns(p, flag, kind)?))),
            }
        };
        let ipcns = joined(&args.ipcns, "--ipcns", libc::CLONE_NEWIPC)?;
        let utsns = joined(&args.utsns, "--utsns", libc::CLONE_NEWUTS)?;
        let cgroupns = joined(&args.cgroupns, "--cgroupns", libc::CLONE_NEWCGROUP)?;
        let (pid_host, ipc_host) = (args.pid == Share::Host, args.ipc == Share::Host);
        if args.vm && (pid_host || ipc_host) {
            return Err(Error::usage(
                "--pid host and --ipc host are not available with --vm: the guest's kernel has its own",
            ));
        }
        let userns = joined(&args.userns, "--userns", libc::CLONE_NEWUSER)?;
        let pidns = joined(&args.pidns, "--pidns", libc::CLONE_NEWPID)?;
        if (pidns.is_some() || userns.is_some())
            && matches!(args.net, NetMode::Slirp4netns | NetMode::Pasta)
        {
            return Err(Error::usage(
                "--net slirp4netns or pasta: not with --pidns or --userns (their helper reaches \
                 the sandbox through its /proc files, closed to it there)",
            ));
        }
        // Its /proc, made now by a helper with privileges over its owner.
        let proc_mount = match &pidns {
            Some(ns) => Some(std::sync::Arc::new(crate::pidns::proc_mount(
                std::os::fd::AsFd::as_fd(&**ns),
            )?)),
            None => None,
        };
        let id_maps = match args.uidmap.is_empty() {
            true => None,
            false => Some(crate::idmap::IdMaps::explicit(&args.uidmap, &args.gidmap)?),
        };
        if let Some(file) = args.image.as_deref().filter(|r| Lower::parse(r).is_image()) {
            // An image file is a root filesystem, with nothing else to apply.
            if args.entrypoint.is_some() {
                return Err(Error::usage(format!(
                    "--entrypoint: {file} is an image file, with no entrypoint to replace"
                )));
            }
            args.rootfs = Some(PathBuf::from(file));
            args.image = None;
        }
        let image = crate::image::resolve(&mut args)?;
        let rootfs = match &args.rootfs {
            None => Lower::Dir(PathBuf::from("/")),
            Some(dir) => lower_of(dir, "--rootfs")?,
        };
        if args.bind_rootfs && rootfs.is_image() {
            return Err(Error::usage(format!(
                "--bind-rootfs: {rootfs} is an image file, not a directory to bind"
            )));
        }
        let rootfs_layer = rootfs.clone();
        let rootfs = rootfs.path().to_path_buf();

        if args.bind_rootfs && rootfs == Path::new("/") {
            // The host's root writable, its sockets and files reachable:
            // never; only a directory handed over to be a root.
            return Err(Error::usage(
                "--bind-rootfs: not with the host's / as the rootfs",
            ));
        }
        let mut root = root_layout(&args, rootfs_layer)?;
        root.override_stat = image.is_some();

        let mut ordered: Vec<(usize, MountOp)> = Vec::new();
        for (flag, id, read_only) in [("--bind", "bind", false), ("--ro-bind", "ro_bind", true)] {
            let values = if read_only { &args.ro_bind } else { &args.bind };
            for (idx, pair) in pairs(matches, id).into_iter().zip(values.chunks(2)) {
                let src = canonical(&pair[0], flag)?;
                let dst = sandbox_path(&pair[1], flag)?;
                // The identity of what the canonical path names now, with
                // no symlink followed: had a component been swapped for one
                // since it was resolved, this fails.
                let st = crate::sys::open_without_symlinks(&src)
                    .and_then(nix::sys::stat::fstat)
                    .map_err(|e| {
                        Error::usage(format!(
                            "{flag} {}: {}",
                            pair[0].display(),
                            if e == nix::errno::Errno::ELOOP {
                                "the source changed while it was checked"
                            } else {
                                e.desc()
                            }
                        ))
                    })?;
                let id = (st.st_dev, st.st_ino);
                ordered.push((
                    idx,
                    MountOp::Bind {
                        src,
                        dst,
                        read_only,
                        id,
                        covers: Vec::new(),
                    },
                ));
            }
        }
        for (idx, spec) in singles(matches, "tmpfs").into_iter().zip(&args.tmpfs) {
            let (dst, size, mode) = parse_tmpfs(spec)?;
            ordered.push((
                idx,
                MountOp::Tmpfs {
                    dst,
                    size,
                    mode,
                    like_dst: false,
                },
            ));
        }
        ordered.sort_by_key(|(idx, _)| *idx);
        let mut mounts: Vec<MountOp> = ordered.into_iter().map(|(_, op)| op).collect();
        if let Some(image) = &image {
            // The image's Volumes: a private tmpfs each, first (so binds
            // inside them land on them), unless a mount is given there.
            const MAX_VOLUMES: usize = 256;
            let wanted = image.volumes();
            if wanted.len() > MAX_VOLUMES {
                return Err(Error::usage(format!(
                    "--image: the image names {} Volumes; burrow mounts at most {MAX_VOLUMES}",
                    wanted.len()
                )));
            }
            let given: std::collections::HashSet<PathBuf> = mounts
                .iter()
                .map(|op| {
                    let (MountOp::Bind { dst, .. } | MountOp::Tmpfs { dst, .. }) = op;
                    dst.clone()
                })
                .collect();
            let mut dsts = Vec::new();
            for v in wanted {
                let dst = sandbox_path(Path::new(&v), "--image: the image's Volume")?;
                if !given.contains(&dst) {
                    dsts.push(dst);
                }
            }
            // Parents first, so a volume inside another lands on it.
            dsts.sort_by_key(|d| (d.components().count(), d.clone()));
            dsts.dedup();
            let mut volumes: Vec<MountOp> = dsts
                .into_iter()
                .map(|dst| MountOp::Tmpfs {
                    dst,
                    size: None,
                    mode: 0o755,
                    like_dst: true,
                })
                .collect();
            volumes.append(&mut mounts);
            mounts = volumes;
        }
        for op in &mounts {
            check_special_target(op)?;
        }
        let mut security = crate::security::Security::from_args(&args, &root, &rootfs, &mounts)?;
        let mut guarded = Vec::new();
        if let Some(UpperLayer::Dir { upper, work }) = &root.upper {
            guarded.extend(crate::guard::Guarded::new(upper, "the upper layer"));
            guarded.extend(crate::guard::Guarded::new(
                work,
                "the upper layer's work directory",
            ));
        }
        if let Some(store) = image.as_ref().map(|i| i.store.as_path()) {
            guarded.extend(crate::guard::Guarded::new(store, "the image store"));
        }
        let sys_admin = security
            .caps
            .contains(&crate::caps::Cap::from(caps::Capability::CAP_SYS_ADMIN));
        crate::guard::cover(&mut mounts, &guarded, sys_admin)?;
        if let (Some(UpperLayer::Dir { .. }), Some(i)) = (&root.upper, &image) {
            let maps = id_maps.clone().unwrap_or_else(|| {
                crate::idmap::IdMaps::for_caller(args.keep_id, args.map_users == MapUsers::Auto)
            });
            root.commit_base = Some(burrow_images::Base {
                keep_id: args.keep_id,
                subids: args.map_users == MapUsers::Auto,
                maps: maps.describe(),
                ..i.base.clone()
            });
        }
        let mut limits = crate::cgroup::Limits::from_args(&args)?;
        if args.vm {
            // --memory and --cpus size the VM instead.
            limits.memory = None;
            limits.cpus = None;
        }
        let mut limits_warning = None;
        let cgroup_subtree = if limits.is_empty() {
            None
        } else {
            let found = crate::cgroup::find_subtree(&limits)?;
            if found.is_none() {
                let (rlimits, warning) = limits.as_rlimits();
                security.rlimits.extend(rlimits);
                limits_warning = Some(warning);
            }
            found
        };
        // In a cgroup namespace of its own, rooted at its cgroup, the
        // kernel (nsdelegate) keeps the sandbox from writing its own limits;
        // in one joined, only /sys's read-only mount does, which
        // CAP_SYS_ADMIN could undo.
        let admin = crate::caps::Cap::from(caps::Capability::CAP_SYS_ADMIN);
        if cgroupns.is_some() && cgroup_subtree.is_some() && security.caps.contains(&admin) {
            return Err(Error::usage(
                "--cgroupns: not with limits and CAP_SYS_ADMIN (the sandbox could remount \
                 /sys/fs/cgroup and raise its own limits: in a cgroup namespace of its own the \
                 kernel keeps it from that)",
            ));
        }
        let storage = Storage::from_args(&args, &mounts)?;
        let slirp = slirp_config(&args)?;
        let publish = args
            .publish
            .iter()
            .map(|spec| parse_publish(spec))
            .collect::<Result<Vec<_>>>()?;

        let env = build_env(&args, matches, image.as_ref().map(|i| i.env()))?;
        let home_if_unset =
            image.is_some() && !env.iter().any(|kv| kv.as_bytes().starts_with(b"HOME="));
        let user = args
            .user
            .clone()
            .or_else(|| image.as_ref().and_then(|i| i.user()));
        if let Some(u) = &user {
            if u.chars().any(|c| c.is_control()) || u.matches(':').count() > 1 {
                let what = if args.user.is_some() {
                    "--user"
                } else {
                    "the image's User"
                };
                return Err(Error::usage(format!(
                    "{what} {u:?}: not USER[:GROUP] (a name or number, then optionally ':' and a group)"
                )));
            }
        }

        let chdir = match &args.chdir {
            Some(dir) if !dir.is_absolute() => {
                return Err(Error::usage(format!(
                    "--chdir {}: must be an absolute path",
                    dir.display()
                )))
            }
            other => other.clone(),
        };
        let mut fallback_dirs = Vec::new();
        if let Ok(cwd) = std::env::current_dir() {
            fallback_dirs.push(cwd);
        }
        if let Some(home) = std::env::var_os("HOME").filter(|h| Path::new(h).is_absolute()) {
            fallback_dirs.push(PathBuf::from(home));
        }

        if let Some(name) = &args.hostname {
            let allowed = |c: char| c.is_ascii_alphanumeric() || matches!(c, '-' | '.' | '_');
            if name.is_empty() || name.len() > 64 || !name.chars().all(allowed) {
                return Err(Error::usage(format!(
                    "--hostname {name:?}: must be 1 to 64 letters, digits, '-', '.' or '_'"
                )));
            }
        }

        let command = if let Some(image) = &image {
            image.command(args.entrypoint.as_deref(), &args.command)?
        } else if args.command.is_empty() {
            vec![OsString::from(DEFAULT_COMMAND)]
        } else {
            args.command.clone()
        };
        let argv = command
            .into_iter()
            .map(|a| cstring(a.into_vec(), "command argument"))
            .collect::<Result<Vec<_>>>()?;
        if argv[0].as_bytes().is_empty() {
            return Err(Error::usage("the command is empty"));
        }

        let new_session = if args.new_session {
            true
        } else if args.no_new_session {
            false
        } else {
            !stdin_is_tty
        };

        if let Some(fd) = args.json_status {
            if fd < 0 || nix::fcntl::fcntl(unsafe_borrow(fd), nix::fcntl::F_GETFD).is_err() {
                return Err(Error::usage(format!(
                    "--json-status {fd}: file descriptor is not open"
                )));
            }
        }

        let paths = |list: &[PathBuf], flag: &str| -> Result<Vec<PathBuf>> {
            list.iter().map(|p| sandbox_path(p, flag)).collect()
        };
        let umask = args
            .umask
            .as_deref()
            .map(|m| {
                u32::from_str_radix(m, 8)
                    .ok()
                    .filter(|&v| v <= 0o777)
                    .ok_or_else(|| {
                        Error::usage(format!("--umask {m}: expected an octal mode like 0022"))
                    })
            })
            .transpose()?;
        let remount_ro = paths(&args.remount_ro, "--remount-ro")?;
        let remount_noexec = paths(&args.remount_noexec, "--remount-noexec")?;
        let masks = paths(&args.mask, "--mask")?;
        let devices = paths(&args.device, "--device")?
            .into_iter()
            .map(|p| device_node(p, args.vm))
            .collect::<Result<Vec<_>>>()?;
        let sysctls =
            crate::sysctl::parse(&args.sysctl, netns.is_some() || args.net != NetMode::Host)?;
        if ipcns.is_some() || ipc_host {
            if let Some(s) = sysctls.iter().find(|s| !s.name.starts_with("net.")) {
                return Err(Error::usage(format!(
                    "--sysctl {}: the IPC namespace is not the sandbox's (--ipcns, --ipc host): its owner sets it",
                    s.name
                )));
            }
        }
        if args.vm {
            let umask_set = umask.is_some();
            let own = ": the guest's kernel makes its own /proc and /sys";
            if let Some((flag, why)) = [
                (args.bind_rootfs, "--bind-rootfs", " yet"),
                (!remount_ro.is_empty(), "--remount-ro", own),
                (!remount_noexec.is_empty(), "--remount-noexec", " yet"),
                (!masks.is_empty(), "--mask", own),
                (!sysctls.is_empty(), "--sysctl", " yet"),
                (umask_set, "--umask", " yet"),
                (args.oom_score_adj.is_some(), "--oom-score-adj", " yet"),
            ]
            .iter()
            .find_map(|(set, f, why)| set.then_some((f, why)))
            {
                return Err(Error::usage(format!(
                    "{flag} is not available with --vm{why}"
                )));
            }
            // The guest mounts its own kernel filesystems over these.
            for op in &mounts {
                let (MountOp::Bind { dst, .. } | MountOp::Tmpfs { dst, .. }) = op;
                if ["/proc", "/sys", "/dev"].iter().any(|k| dst.starts_with(k)) {
                    return Err(Error::usage(format!(
                        "--vm: a mount on {} would be hidden by the guest's own /proc, /sys or /dev",
                        dst.display()
                    )));
                }
            }
        }
        let stop_signal = match (
            &args.stop_signal,
            image.as_ref().and_then(|i| i.stop_signal()),
        ) {
            (Some(s), _) => {
                crate::signals::parse(s).map_err(|e| Error::usage(format!("--stop-signal {e}")))?
            }
            (None, Some(s)) => crate::signals::parse(&s)
                .map_err(|e| Error::usage(format!("--image: the image's StopSignal {e}")))?,
            (None, None) => libc::SIGTERM,
        };
        let vm = if args.vm {
            let mut vm = crate::vm::VmConfig::from_args(
                &args,
                &argv,
                &env,
                crate::security::Security::for_vmm(&args)?,
            )?;
            vm.guest.confine = security.for_guest();
            vm.guest.user = user.clone();
            vm.guest.home_if_unset = home_if_unset;
            vm.stop_signal = stop_signal;
            vm.guest.fallback_dirs = fallback_dirs
                .iter()
                .map(|d| d.as_os_str().as_bytes().to_vec())
                .collect();
            crate::vm::finish_config(&mut vm, &publish)?;
            Some(Box::new(vm))
        } else {
            None
        };

        Ok(SandboxConfig {
            argv,
            env,
            home_if_unset,
            user,
            group_add: args.group_add.clone(),
            umask,
            oom_score_adj: args.oom_score_adj,
            keep_id: args.keep_id,
            map_users: args.map_users,
            id_maps,
            stop_signal,
            net: if netns.is_some() {
                NetMode::Host
            } else {
                args.net
            },
            netns,
            ipcns,
            cgroupns,
            pid_host,
            ipc_host,
            userns,
            pidns,
            proc_mount,
            utsns,
            rootfs,
            root,
            mounts,
            remount_ro,
            remount_noexec,
            masks,
            devices,
            sysctls,
            chdir,
            fallback_dirs,
            hostname: args.hostname,
            die_with_parent: args.die_with_parent,
            new_session,
            json_status_fd: args.json_status,
            preserve_fds: args.preserve_fds,
            slirp,
            publish,
            security,
            limits,
            cgroup_subtree,
            limits_warning,
            cgroup_name: None,
            vm,
            storage,
            image_in_use: image.and_then(|i| i.in_use),
            hold: None,
            console: None,
            hooks: None,
        })
    }
}

/// The sandbox's in-memory storage (see [`crate::storage`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Storage {
    /// The store's size and inodes: the budget less the sized mounts.
    pub store_bytes: u64,
    pub inodes: u64,
    /// `--shm-size`: /dev/shm as a tmpfs of its own.
    pub shm: Option<u64>,
}

impl Storage {
    fn from_args(args: &RunArgs, mounts: &[MountOp]) -> Result<Storage> {
        let budget = crate::storage::Budget::new(args.tmpfs_budget.as_deref())?;
        let shm = match &args.shm_size {
            None => None,
            Some(text) => Some(
                crate::cgroup::parse_size(text)
                    .filter(|&s| s > 0)
                    .ok_or_else(|| {
                        Error::usage(format!("--shm-size {text}: not a size (e.g. 64M)"))
                    })?,
            ),
        };
        let mut sized: Vec<(String, u64)> = shm
            .map(|s| ("--shm-size".to_string(), s))
            .into_iter()
            .collect();
        for op in mounts {
            if let MountOp::Tmpfs {
                dst, size: Some(s), ..
            } = op
            {
                sized.push((format!("--tmpfs {}", dst.display()), *s));
            }
        }
        let store_bytes = budget.store_bytes(&sized)?;
        Ok(Storage {
            store_bytes,
            inodes: crate::storage::inodes_for(store_bytes),
            shm,
        })
    }
}

/// `--tmpfs DST[:size=SIZE][,mode=MODE]` (podman's form; `rw` is taken
/// as said, anything else is refused).
fn parse_tmpfs(spec: &Path) -> Result<(PathBuf, Option<u64>, u32)> {
    let text = spec.as_os_str().as_bytes();
    let (dst, opts) = match text.iter().position(|&b| b == b':') {
        Some(i) => (&text[..i], Some(&text[i + 1..])),
        None => (text, None),
    };
    let dst = sandbox_path(Path::new(OsStr::from_bytes(dst)), "--tmpfs")?;
    let (mut size, mut mode) = (None, 0o755);
    for opt in opts
        .unwrap_or_default()
        .split(|&b| b == b',')
        .filter(|o| !o.is_empty())
    {
        let opt = String::from_utf8_lossy(opt);
        let bad = |why: &str| Error::usage(format!("--tmpfs {}: {opt}: {why}", spec.display()));
        match opt.split_once('=') {
            Some(("size", v)) => {
                size = Some(
                    crate::cgroup::parse_size(v)
                        .filter(|&s| s > 0)
                        .ok_or_else(|| bad("not a size (e.g. 64M)"))?,
                )
            }
            Some(("mode", v)) => {
                mode = u32::from_str_radix(v, 8)
                    .ok()
                    .filter(|&m| m <= 0o7777)
                    .ok_or_else(|| bad("not an octal mode"))?
            }
            None if opt == "rw" => {}
            _ => return Err(bad("not a tmpfs option burrow takes (size=, mode=, rw)")),
        }
    }
    Ok((dst, size, mode))
}

/// `--net slirp`'s settings; its options without it are an error.
fn slirp_config(args: &RunArgs) -> Result<Option<burrow_netstack::Config>> {
    if args.net != NetMode::Slirp {
        for (given, flag) in [
            (args.allow_host_loopback, "--allow-host-loopback"),
            (args.dns_upstream.is_some(), "--dns-upstream"),
            (!args.publish.is_empty(), "--publish"),
        ] {
            if given {
                return Err(Error::usage(format!("{flag} needs --net slirp")));
            }
        }
        return Ok(None);
    }
    let upstream = match &args.dns_upstream {
        None => None,
        Some(text) => Some(burrow_netstack::parse_upstream(text).ok_or_else(|| {
            Error::usage(format!(
                "--dns-upstream {text}: not an IP address or IP:PORT"
            ))
        })?),
    };
    Ok(Some(crate::net::stack_config(
        args.allow_host_loopback,
        upstream,
    )))
}

/// `--publish [IP:]HOSTPORT:SANDBOXPORT[/tcp|/udp]`.
fn parse_publish(spec: &str) -> Result<(std::net::SocketAddr, u16, bool)> {
    let bad = |why: &str| Error::usage(format!("--publish {spec}: {why}"));
    let (ports, proto) = spec.split_once('/').unwrap_or((spec, "tcp"));
    let udp = match proto {
        "tcp" => false,
        "udp" => true,
        _ => return Err(bad("the protocol must be tcp or udp")),
    };
    let (host, inside) = ports
        .rsplit_once(':')
        .ok_or_else(|| bad("expected [IP:]HOSTPORT:SANDBOXPORT"))?;
    let port = |p: &str| p.parse::<u16>().ok().filter(|&p| p != 0);
    let inside = port(inside).ok_or_else(|| bad("not a port number inside"))?;
    let host = match host.rsplit_once(':') {
        Some((ip, hp)) => {
            let ip: std::net::IpAddr = ip
                .trim_matches(['[', ']'])
                .parse()
                .map_err(|_| bad("not an IP address"))?;
            std::net::SocketAddr::new(ip, port(hp).ok_or_else(|| bad("not a host port number"))?)
        }
        None => std::net::SocketAddr::from((
            [0, 0, 0, 0],
            port(host).ok_or_else(|| bad("not a host port number"))?,
        )),
    };
    Ok((host, inside, udp))
}

/// A namespace to join (`flag` PATH), opened and checked to be of `kind`
/// (CLONE_NEWNET, ...).
fn open_ns(path: &Path, flag: &str, kind: libc::c_int) -> Result<std::os::fd::OwnedFd> {
    let bad = |why: String| Error::usage(format!("{flag} {}: {why}", path.display()));
    let fd = nix::fcntl::open(
        path,
        nix::fcntl::OFlag::O_RDONLY | nix::fcntl::OFlag::O_CLOEXEC,
        nix::sys::stat::Mode::empty(),
    )
    .map_err(|e| bad(e.desc().to_string()))?;
    match crate::sys::namespace_type(std::os::fd::AsFd::as_fd(&fd)) {
        Ok(t) if t == kind => Ok(fd),
        Ok(_) => Err(bad("a namespace of another kind".into())),
        Err(_) => Err(bad("not a namespace file".into())),
    }
}

/// A layer named on the command line: a directory, or (squashfs:FILE,
/// sif:FILE) an image file; canonical.
fn lower_of(given: &Path, flag: &str) -> Result<Lower> {
    let lower = Lower::parse(given);
    let canon = canonical(lower.path(), flag)?;
    let (fits, what) = match lower {
        Lower::Dir(_) => (canon.is_dir(), "not a directory"),
        _ => (canon.is_file(), "not an image file"),
    };
    if !fits {
        return Err(Error::usage(format!("{flag} {}: {what}", given.display())));
    }
    let lower = lower.at(canon);
    lower
        .check()
        .map_err(|e| Error::usage(format!("{flag} {e}")))?;
    Ok(lower)
}

/// The union's layers from --rootfs, --layer, --upper and --read-only.
fn root_layout(args: &RunArgs, rootfs: Lower) -> Result<Root> {
    let mut lowers = Vec::new();
    for layer in args.layer.iter().rev() {
        lowers.push(lower_of(layer, "--layer")?);
    }
    lowers.push(rootfs);
    let upper = match (&args.upper, args.read_only) {
        _ if args.bind_rootfs => None,
        (_, true) => None,
        (None, false) => Some(UpperLayer::Ephemeral),
        (Some(dir), false) => Some(upper_dir(dir, &lowers)?),
    };
    Ok(Root {
        commit_base: None,
        lowers,
        upper,
        override_stat: false,
        bound: args.bind_rootfs,
    })
}

/// `--upper DIR`: DIR (created when missing) and its work directory, a
/// hidden sibling on the same filesystem.
fn upper_dir(dir: &Path, lowers: &[Lower]) -> Result<UpperLayer> {
    let fail = |e: std::io::Error| {
        Error::usage(format!(
            "--upper {}: {}",
            dir.display(),
            crate::sys::errno_text(&e)
        ))
    };
    std::fs::create_dir_all(dir).map_err(fail)?;
    let upper = std::fs::canonicalize(dir).map_err(fail)?;
    let work = work_dir_of(&upper);
    for image in lowers.iter().filter(|l| l.is_image()).map(Lower::path) {
        // The sandbox's writes could change the layer below them.
        if image.starts_with(&upper) || image.starts_with(&work) {
            return Err(Error::usage(format!(
                "--upper {}: holds the image file {}",
                dir.display(),
                image.display()
            )));
        }
    }
    for lower in lowers.iter().filter_map(|l| match l {
        Lower::Dir(d) => Some(d),
        _ => None,
    }) {
        // The host root holds everything; only refuse a real nesting.
        if lower != Path::new("/") && (upper.starts_with(lower) || lower.starts_with(&upper)) {
            return Err(Error::usage(format!(
                "--upper {}: overlaps the layer {}",
                dir.display(),
                lower.display()
            )));
        }
    }
    std::fs::create_dir_all(&work).map_err(|e| {
        Error::usage(format!(
            "--upper {}: cannot create its work directory {}: {}",
            dir.display(),
            work.display(),
            crate::sys::errno_text(&e)
        ))
    })?;
    let dev = |p: &Path| {
        std::fs::metadata(p)
            .map(|m| std::os::unix::fs::MetadataExt::dev(&m))
            .ok()
    };
    if dev(&upper) != dev(&work) {
        return Err(Error::usage(format!(
            "--upper {}: its work directory {} is on another filesystem (is {} a mount point?)",
            dir.display(),
            work.display(),
            upper.display()
        )));
    }
    Ok(UpperLayer::Dir { upper, work })
}

/// The work directory burrow keeps beside the upper layer `upper`.
pub fn work_dir_of(upper: &Path) -> PathBuf {
    let name = upper
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    upper.with_file_name(format!(".{name}.burrow-work"))
}

/// Files of /proc that a read-only bind of a regular file may replace, as
/// runc allows (lxcfs' per-container views).
const PROC_FILES: [&str; 8] = [
    "/proc/cpuinfo",
    "/proc/diskstats",
    "/proc/loadavg",
    "/proc/meminfo",
    "/proc/slabinfo",
    "/proc/stat",
    "/proc/swaps",
    "/proc/uptime",
];

/// The sandbox's own /proc, /sys, /dev and its terminals are not mounted
/// over: a bind there would hide or replace what the sandbox's isolation
/// rests on (its pid namespace's /proc, the read-only /sys, the private
/// /dev and devpts). Allowed: a read-only file on one of [`PROC_FILES`],
/// `--ro-bind /sys /sys` (what the default root shows anyway), and devices
/// or directories under /dev other than its pty and mqueue parts.
fn check_special_target(op: &MountOp) -> Result<()> {
    let file_or_sys = |src: &Path| src.is_file() || src == Path::new("/sys");
    if matches!(op, MountOp::Bind { src, .. } if file_or_sys(src)) && special_exception(op) {
        return Ok(());
    }
    let (dst, what) = match op {
        MountOp::Bind { dst, read_only, .. } => {
            (dst, if *read_only { "--ro-bind" } else { "--bind" })
        }
        MountOp::Tmpfs {
            dst,
            like_dst: true,
            ..
        } => (dst, "--image: the image's Volume"),
        MountOp::Tmpfs { dst, .. } => (dst, "--tmpfs"),
    };
    if let MountOp::Bind { src, .. } = op {
        // The host's procfs (its pids' root and cwd links lead out) or
        // sysfs as a directory: only `--ro-bind /sys /sys`.
        let special_dir = src.is_dir()
            && crate::sys::open_without_symlinks(src)
                .and_then(|fd| crate::sys::on_special_fs(std::os::fd::AsFd::as_fd(&fd)))
                .unwrap_or(false);
        if special_dir {
            return Err(Error::usage(format!(
                "{what} {}: the host's /proc and /sys are not bound (only --ro-bind /sys /sys)",
                src.display()
            )));
        }
    }
    let refuse = |why: &str| {
        Err(Error::usage(format!(
            "{what} onto {}: {why}",
            dst.display()
        )))
    };
    if dst.starts_with("/proc") {
        return refuse("the sandbox's /proc is its own (only a read-only file bind onto /proc/cpuinfo, meminfo, stat, uptime, loadavg, diskstats, swaps or slabinfo is allowed)");
    }
    if dst.starts_with("/sys") {
        return refuse("/sys is the host's, read-only (only --ro-bind /sys /sys is allowed)");
    }
    if dst == Path::new("/dev")
        || ["/dev/pts", "/dev/ptmx", "/dev/mqueue", "/dev/console"]
            .iter()
            .any(|d| dst.starts_with(d))
    {
        return refuse("the sandbox's /dev, its terminals and message queues are its own (bind single devices, e.g. --bind /dev/kvm /dev/kvm)");
    }
    Ok(())
}

/// The mounts onto the sandbox's special filesystems that are allowed: a
/// read-only bind (of a regular file: checked at validation) onto one of
/// [`PROC_FILES`], and `--ro-bind /sys /sys`. (rootfs.rs checks the
/// resolved target too: a symlink in the root must not turn another mount
/// into one onto /proc, /sys or /dev/pts.)
pub fn special_exception(op: &MountOp) -> bool {
    match op {
        MountOp::Bind {
            src,
            dst,
            read_only: true,
            ..
        } => {
            PROC_FILES.iter().any(|f| dst == Path::new(f))
                || (src == Path::new("/sys") && dst == Path::new("/sys"))
        }
        _ => false,
    }
}

/// Borrows a raw descriptor number the user named for a quick `fcntl` probe.
fn unsafe_borrow(fd: i32) -> std::os::fd::BorrowedFd<'static> {
    // SAFETY: the descriptor is only used for an F_GETFD probe, which fails
    // harmlessly with EBADF when `fd` is not open.
    unsafe { std::os::fd::BorrowedFd::borrow_raw(fd) }
}

/// Command-line positions of each occurrence of a two-value flag.
fn pairs(matches: &ArgMatches, id: &str) -> Vec<usize> {
    matches
        .indices_of(id)
        .map(|it| it.step_by(2).collect())
        .unwrap_or_default()
}

fn singles(matches: &ArgMatches, id: &str) -> Vec<usize> {
    matches
        .indices_of(id)
        .map(|it| it.collect())
        .unwrap_or_default()
}

/// The command's environment: none with --clearenv, else the image's with
/// --image, else the caller's; then --setenv and --unsetenv applied in
/// command-line order.
fn build_env(
    args: &RunArgs,
    matches: &ArgMatches,
    image_env: Option<Vec<(OsString, OsString)>>,
) -> Result<Vec<CString>> {
    let mut env: BTreeMap<OsString, OsString> = if args.clearenv {
        BTreeMap::new()
    } else if let Some(env) = image_env {
        let mut env: BTreeMap<_, _> = env.into_iter().collect();
        if args.hpc {
            // The job's own, over the image's: how its task finds its rank
            // and its launcher.
            env.extend(std::env::vars_os().filter(|(k, _)| {
                let k = k.as_encoded_bytes();
                [&b"SLURM_"[..], b"PMI", b"PMIX_", b"OMPI_", b"UCX_"]
                    .iter()
                    .any(|p| k.starts_with(p))
            }));
        }
        env
    } else {
        std::env::vars_os().collect()
    };
    let mut edits: Vec<(usize, OsString, Option<OsString>)> = Vec::new();
    for (idx, kv) in pairs(matches, "setenv")
        .into_iter()
        .zip(args.setenv.chunks(2))
    {
        check_var_name(&kv[0], "--setenv")?;
        edits.push((idx, kv[0].clone(), Some(kv[1].clone())));
    }
    for (idx, k) in singles(matches, "unsetenv").into_iter().zip(&args.unsetenv) {
        check_var_name(k, "--unsetenv")?;
        edits.push((idx, k.clone(), None));
    }
    edits.sort_by_key(|(idx, _, _)| *idx);
    for (_, k, v) in edits {
        match v {
            Some(v) => env.insert(k, v),
            None => env.remove(&k),
        };
    }
    env.into_iter()
        .map(|(k, v)| {
            let mut kv = k.into_vec();
            kv.push(b'=');
            kv.extend(v.into_vec());
            cstring(kv, "environment variable")
        })
        .collect()
}

fn check_var_name(name: &OsStr, flag: &str) -> Result<()> {
    let b = name.as_bytes();
    if b.is_empty() || b.contains(&b'=') || b.contains(&0) {
        return Err(Error::usage(format!(
            "{flag} {}: not a valid variable name",
            name.to_string_lossy()
        )));
    }
    Ok(())
}

fn cstring(bytes: Vec<u8>, what: &str) -> Result<CString> {
    CString::new(bytes).map_err(|_| Error::usage(format!("{what} contains a NUL byte")))
}

/// A host path that must exist, resolved to its canonical form.
fn canonical(path: &Path, flag: &str) -> Result<PathBuf> {
    std::fs::canonicalize(path).map_err(|e| {
        Error::usage(format!(
            "{flag} {}: {}",
            path.display(),
            crate::sys::errno_text(&e)
        ))
    })
}

/// A path inside the sandbox: absolute, normalised, not `/` itself.
/// A `--device` path (normalised): a character or block device under
/// /dev on the host, not reached through a symlink.
fn device_node(path: PathBuf, vm: bool) -> Result<PathBuf> {
    let bad = |why: &str| Err(Error::usage(format!("--device {}: {why}", path.display())));
    if vm {
        return bad("not with --vm (the guest's kernel has its own devices)");
    }
    if !path.starts_with("/dev") || path == Path::new("/dev") {
        return bad("not under /dev");
    }
    match std::fs::symlink_metadata(&path) {
        Err(e) => bad(&crate::sys::errno_text(&e)),
        Ok(m) if m.file_type().is_char_device() || m.file_type().is_block_device() => Ok(path),
        Ok(_) => bad("not a device node"),
    }
}

fn sandbox_path(path: &Path, flag: &str) -> Result<PathBuf> {
    if !path.is_absolute() {
        return Err(Error::usage(format!(
            "{flag} {}: destination must be an absolute path",
            path.display()
        )));
    }
    if path.as_os_str().as_bytes().iter().any(u8::is_ascii_control) {
        return Err(Error::usage(format!(
            "{flag} {:?}: destination contains a control character",
            path
        )));
    }
    let mut out = PathBuf::from("/");
    for comp in path.components() {
        match comp {
            Component::RootDir | Component::CurDir => {}
            Component::Normal(c) => out.push(c),
            Component::ParentDir | Component::Prefix(_) => {
                return Err(Error::usage(format!(
                    "{flag} {}: destination must not contain '..'",
                    path.display()
                )))
            }
        }
    }
    if out == Path::new("/") {
        return Err(Error::usage(format!(
            "{flag} /: cannot mount over the sandbox root (use --rootfs)"
        )));
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sandbox_paths_are_normalised_and_checked() {
        assert_eq!(
            sandbox_path(Path::new("/a/./b/"), "--tmpfs").unwrap(),
            PathBuf::from("/a/b")
        );
        assert!(sandbox_path(Path::new("rel"), "--tmpfs").is_err());
        assert!(sandbox_path(Path::new("/a/../b"), "--tmpfs").is_err());
        assert!(sandbox_path(Path::new("/"), "--tmpfs").is_err());
        assert!(sandbox_path(Path::new("/tmp/a\nb"), "--bind").is_err());
    }

    #[test]
    fn variable_names_are_checked() {
        assert!(check_var_name(OsStr::new("A_B"), "--setenv").is_ok());
        assert!(check_var_name(OsStr::new("A=B"), "--setenv").is_err());
        assert!(check_var_name(OsStr::new(""), "--unsetenv").is_err());
    }
}

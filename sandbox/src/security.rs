//! What confines the command, applied in this order after the mounts and
//! just before exec: resource limits, the user-namespace ban,
//! capabilities, no_new_privs, Landlock, seccomp.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use crate::caps::{self, Cap};
use crate::cli::RunArgs;
use crate::config::{MountOp, Root};
use crate::error::{Error, Result};
use crate::landlock_policy::{self, Policy as Landlock};
use crate::rlimits::Rlimit;
use crate::seccomp;

#[derive(Debug, Clone, Default)]
pub struct Security {
    /// Capabilities the command keeps (see [`caps::kept`]).
    pub caps: BTreeSet<Cap>,
    /// Those it keeps when `--user` (or an image's User) makes it a uid
    /// other than 0: only what `--cap-add` gives, as podman keeps them.
    pub user_caps: BTreeSet<Cap>,
    /// The seccomp programs (`struct sock_filter`s), unless `--seccomp none`.
    pub seccomp: Vec<Vec<u8>>,
    pub landlock: Option<Landlock>,
    pub rlimits: Vec<Rlimit>,
    pub disable_userns: bool,
    /// Whether burrow's own binary can be written from the sandbox (see
    /// [`confine_exec_to_root`]): decided by the command's process from
    /// the sandbox's view when None, or beforehand from the host's, by a
    /// process that joins a running sandbox whose code could fake that
    /// view.
    pub binary_exposed: Option<bool>,
}

impl Security {
    pub fn from_args(
        args: &RunArgs,
        root: &Root,
        rootfs: &Path,
        mounts: &[MountOp],
    ) -> Result<Self> {
        // Root inside unless the caller keeps its own (non-root) id.
        let root_inside = !args.keep_id || nix::unistd::getuid().is_root();
        let caps = caps::kept(root_inside, &args.cap_add, &args.cap_drop).map_err(Error::usage)?;
        let user_caps = caps::kept(false, &args.cap_add, &args.cap_drop).map_err(Error::usage)?;
        let seccomp = seccomp_programs(args, &caps)?;
        let rlimits = args
            .rlimit
            .iter()
            .map(|s| s.parse::<Rlimit>().map_err(Error::usage))
            .collect::<Result<Vec<_>>>()?;
        let wants_landlock = args.landlock
            || args.landlock_strict
            || !args.allow_read.is_empty()
            || !args.allow_write.is_empty()
            || !args.allow_exec.is_empty()
            || !args.allow_bind.is_empty()
            || !args.allow_connect.is_empty();
        let landlock = if wants_landlock {
            Some(landlock_for(args, root, rootfs, mounts)?)
        } else {
            None
        };
        Ok(Security {
            caps,
            user_caps,
            seccomp,
            landlock,
            rlimits,
            disable_userns: args.disable_userns,
            binary_exposed: None,
        })
    }

    /// What confines `--vm`'s VMM and virtiofsd: the `--seccomp` profile
    /// with the capabilities virtiofsd needs to serve the guest's users
    /// (only over the sandbox's own ids), and Landlock allowing writes
    /// only to /run (the guest's root and the sockets), /tmp and /dev.
    pub fn for_vmm(args: &RunArgs) -> Result<Self> {
        let caps = caps::parse_list(&[
            "CHOWN,DAC_OVERRIDE,DAC_READ_SEARCH,FOWNER,FSETID,SETUID,SETGID,SETPCAP,MKNOD,SETFCAP,SYS_CHROOT,SYS_RESOURCE,NET_BIND_SERVICE",
        ])
        .map_err(Error::usage)?;
        let seccomp = seccomp_programs(args, &caps)?;
        let landlock = Landlock {
            read: vec![PathBuf::from("/")],
            exec: vec![PathBuf::from("/")],
            write: ["/run", "/tmp", "/dev"].map(PathBuf::from).to_vec(),
            // The VMM's user-mode network opens the guest's connections.
            unrestricted_net: true,
            ..Landlock::default()
        };
        Ok(Security {
            user_caps: caps.clone(),
            caps,
            seccomp,
            landlock: Some(landlock),
            rlimits: Vec::new(),
            disable_userns: false,
            binary_exposed: None,
        })
    }

    /// The same confinement, for the guest's init to apply to the command
    /// in `--vm`'s guest.
    pub fn for_guest(&self) -> burrow_vm_init::Confinement {
        burrow_vm_init::Confinement {
            caps: self.caps.iter().map(|c| c.number()).collect(),
            user_caps: self.user_caps.iter().map(|c| c.number()).collect(),
            seccomp: self.seccomp.clone(),
            landlock: self.landlock.clone(),
            rlimits: self
                .rlimits
                .iter()
                .map(|r| (r.name.to_string(), r.resource_number(), r.soft, r.hard))
                .collect(),
            disable_userns: self.disable_userns,
        }
    }

    /// In the command's process, just before exec, which becomes `user`
    /// when given. Returns warnings to print; an error is one line for the
    /// user.
    pub fn apply(
        &self,
        user: Option<(&str, &burrow_vm_init::user::Identity)>,
        required_groups: &[u32],
    ) -> std::result::Result<Vec<String>, String> {
        for r in &self.rlimits {
            r.apply()
                .map_err(|e| format!("--rlimit {}: {}", r.name, e.desc()))?;
        }
        if self.disable_userns {
            // The limit counts namespaces made inside the sandbox's own
            // user namespace, clone3 included; only CAP_SYS_RESOURCE there
            // could raise it again, and the command does not keep it.
            std::fs::write("/proc/sys/user/max_user_namespaces", "0")
                .map_err(|e| format!("--disable-userns: {e}"))?;
        }
        let keep = match user {
            Some((_, id)) if id.uid != 0 => &self.user_caps,
            _ => &self.caps,
        };
        let dropping = |e| format!("dropping capabilities: {e}");
        caps::limit_bounding(keep).map_err(dropping)?;
        let mut warnings = Vec::new();
        if let Some((spec, id)) = user {
            warnings.extend(become_user(spec, id, required_groups)?);
        }
        caps::limit_to(keep).map_err(dropping)?;
        crate::sys::set_no_new_privs().map_err(|e| format!("no_new_privs: {}", e.desc()))?;
        if let Some(policy) = &self.landlock {
            warnings.extend(policy.restrict_self()?);
        }
        if self.binary_exposed.unwrap_or_else(own_binary_exposed) {
            warnings.extend(confine_exec_to_root(keep)?);
        }
        for prog in &self.seccomp {
            crate::sys::load_seccomp(prog).map_err(|e| format!("seccomp: {}", e.desc()))?;
        }
        Ok(warnings)
    }
}

/// Whether code in the sandbox could replace burrow's own binary, the
/// file of `/proc/self/exe` (seen from the sandbox: ids it does not map
/// show as the overflow ids): its owner is mapped (who may chmod it), or
/// a mapped group or anyone may write it, on a filesystem mounted
/// writable.
fn own_binary_exposed() -> bool {
    // (Ids the namespace does not map show as the overflow ids.)
    let overflow = |file: &str| {
        std::fs::read_to_string(file)
            .ok()
            .and_then(|v| v.trim().parse::<u32>().ok())
            .unwrap_or(65534)
    };
    binary_exposed(
        |uid| uid != overflow("/proc/sys/kernel/overflowuid"),
        |gid| gid != overflow("/proc/sys/kernel/overflowgid"),
    )
}

/// Whether this process's binary (`/proc/self/exe`) can be written by
/// users of a namespace where `uid_mapped` and `gid_mapped` say which of
/// its owner's ids have an id: the owner mapped (who may chmod it), or a
/// mapped group or anyone may write it, on a filesystem mounted writable.
/// Seen from inside the sandbox (pid 1's command) or from the host with
/// the sandbox's maps (`exec`, whose container could fake its own view).
pub fn binary_exposed(uid_mapped: impl Fn(u32) -> bool, gid_mapped: impl Fn(u32) -> bool) -> bool {
    use std::os::unix::fs::MetadataExt;
    let Ok(meta) = std::fs::metadata("/proc/self/exe") else {
        return true;
    };
    if nix::sys::statvfs::statvfs("/proc/self/exe")
        .is_ok_and(|v| v.flags().contains(nix::sys::statvfs::FsFlags::ST_RDONLY))
    {
        return false;
    }
    meta.mode() & 0o002 != 0
        || uid_mapped(meta.uid())
        || (meta.mode() & 0o020 != 0 && gid_mapped(meta.gid()))
}

/// Where [`own_binary_exposed`]: lets the command (and all it starts)
/// execute only files within the sandbox's root, with a Landlock ruleset
/// that handles nothing else (Landlock also keeps a confined process from
/// mounting: install burrow as a file the sandbox cannot write, owned by
/// root, to keep mounts inside with CAP_SYS_ADMIN). A
/// file reached through a magic link instead, such as `/proc/self/exe`
/// while burrow's own binary is that (a script whose interpreter line is
/// `#!/proc/self/exe`, the class of runc's CVE-2019-5736), is not the
/// sandbox's, and its exec fails with EACCES. Were it run, the code in
/// the sandbox could open that binary, the host's, through
/// `/proc/PID/exe` and, where its user may write it, replace it. Reads
/// and writes are left alone (a script may still write to /dev/stdout,
/// a descriptor of the host's). Where the kernel has no Landlock this
/// does nothing.
fn confine_exec_to_root(keep: &BTreeSet<Cap>) -> std::result::Result<Vec<String>, String> {
    use landlock::{
        AccessFs, PathBeneath, PathFd, Ruleset, RulesetAttr, RulesetCreatedAttr, RulesetStatus,
    };
    let fail = |e: &dyn std::fmt::Display| format!("landlock (exec within the root): {e}");
    // Refer too (moves and links between directories), which a Landlock
    // domain denies unless it handles and allows it: allowed beneath the
    // root, as execution is.
    let rights = AccessFs::Execute | AccessFs::Refer;
    let root = PathFd::new("/").map_err(|e| fail(&e))?;
    let status = Ruleset::default()
        .handle_access(rights)
        .map_err(|e| fail(&e))?
        .create()
        .map_err(|e| fail(&e))?
        .add_rule(PathBeneath::new(root, rights))
        .map_err(|e| fail(&e))?
        .restrict_self()
        .map_err(|e| fail(&e))?;
    let mut warnings = Vec::new();
    if status.ruleset == RulesetStatus::NotEnforced {
        warnings.push(
            "burrow's binary can be written from the sandbox and this kernel has no Landlock to \
             keep it from running there: install burrow owned by root"
                .to_string(),
        );
    } else if keep.contains(&Cap::from(::caps::Capability::CAP_SYS_ADMIN)) {
        warnings.push(
            "burrow's binary can be written from the sandbox, so the command may execute only \
             files within it (Landlock), which also denies mounts: install burrow owned by root \
             to mount inside"
                .to_string(),
        );
    }
    Ok(warnings)
}

/// Switches to `id`'s uid, gid and groups, keeping the permitted
/// capabilities for [`caps::limit_to`] to choose from. Supplementary groups
/// the sandbox cannot set (not mapped, or `setgroups` denied without
/// newgidmap) are a warning, unless they include `required` ones
/// (`--group-add`'s, OCI's additionalGids: runc refuses to start without
/// them); the uid and gid not being mapped is an error.
fn become_user(
    spec: &str,
    id: &burrow_vm_init::user::Identity,
    required: &[u32],
) -> std::result::Result<Vec<String>, String> {
    use nix::unistd::{Gid, Uid};
    let mut warnings = Vec::new();
    nix::sys::prctl::set_keepcaps(true).map_err(|e| format!("--user {spec}: {}", e.desc()))?;
    let groups: Vec<Gid> = id.groups.iter().map(|&g| Gid::from_raw(g)).collect();
    if let Err(e) = nix::unistd::setgroups(&groups) {
        if required.iter().any(|g| id.groups.contains(g)) {
            return Err(format!(
                "--group-add: supplementary groups {:?} cannot be set: {}",
                id.groups,
                e.desc()
            ));
        }
        if !groups.is_empty() {
            warnings.push(format!(
                "--user {spec}: supplementary groups {:?} not set: {}",
                id.groups,
                e.desc()
            ));
            let _ = nix::unistd::setgroups(&[]);
        }
    }
    let unmapped = |what: &str, n: u32, e: nix::errno::Errno| {
        let why = if e == nix::errno::Errno::EINVAL {
            "is not mapped in the sandbox (map subordinate ids: /etc/subuid and /etc/subgid with newuidmap, or run as root inside)".to_string()
        } else {
            e.desc().to_string()
        };
        format!("--user {spec}: {what} {n} {why}")
    };
    let gid = Gid::from_raw(id.gid);
    nix::unistd::setresgid(gid, gid, gid).map_err(|e| unmapped("gid", id.gid, e))?;
    let uid = Uid::from_raw(id.uid);
    nix::unistd::setresuid(uid, uid, uid).map_err(|e| unmapped("uid", id.uid, e))?;
    Ok(warnings)
}

/// The `--seccomp` profile compiled for a process keeping `caps` (none
/// for `--seccomp none`).
fn seccomp_programs(args: &RunArgs, caps: &BTreeSet<Cap>) -> Result<Vec<Vec<u8>>> {
    match args.seccomp.as_str() {
        "none" => Ok(Vec::new()),
        value => {
            let (text, what) = seccomp::profile_text(value)?;
            let target = seccomp::Target {
                caps,
                log: args.seccomp_log,
            };
            seccomp::programs(&text, &target, &what)
        }
    }
}

/// `--landlock`'s rules for this sandbox (paths as the sandbox sees them).
fn landlock_for(
    args: &RunArgs,
    root: &Root,
    rootfs: &Path,
    mounts: &[MountOp],
) -> Result<Landlock> {
    let mut p = Landlock {
        strict: args.landlock_strict,
        bind_ports: args.allow_bind.clone(),
        connect_ports: args.allow_connect.clone(),
        ..Landlock::default()
    };
    // burrow's own paths are left out where the sandbox lacks them.
    let mut optional_paths: Vec<PathBuf> = Vec::new();
    let mut add = |list: &mut Vec<PathBuf>, path: &str| {
        list.push(PathBuf::from(path));
        optional_paths.push(PathBuf::from(path));
    };
    if rootfs == Path::new("/") {
        for path in [
            "/usr", "/bin", "/sbin", "/lib", "/lib32", "/lib64", "/libx32", "/opt",
        ] {
            add(&mut p.exec, path);
        }
        for path in landlock_policy::SYSTEM_READ {
            if !p.exec.iter().any(|e| e == Path::new(path)) {
                add(&mut p.read, path);
            }
        }
    } else {
        // A rootfs image is the command's own system: all of it.
        add(&mut p.exec, "/");
    }
    for path in landlock_policy::SCRATCH_WRITE
        .iter()
        .chain(&landlock_policy::DEVICE_WRITE)
    {
        add(&mut p.read, path);
        add(&mut p.write, path);
    }
    // The union's upper layer takes the root's writes: they never reach
    // the host, so the root stays writable (though not readable beyond
    // the rules above).
    if root.upper.is_some() || root.bound {
        add(&mut p.write, "/");
    }
    p.optional = optional_paths;
    for op in mounts {
        match op {
            MountOp::Bind {
                dst,
                read_only: true,
                ..
            } => p.read.push(dst.clone()),
            MountOp::Bind { dst, .. } | MountOp::Tmpfs { dst, .. } => {
                p.read.push(dst.clone());
                p.write.push(dst.clone());
            }
        }
    }
    for (flag, list) in [
        ("--allow-read", &args.allow_read),
        ("--allow-write", &args.allow_write),
        ("--allow-exec", &args.allow_exec),
    ] {
        for path in list {
            if !path.is_absolute() {
                return Err(Error::usage(format!(
                    "{flag} {}: must be an absolute path (as the sandbox sees it)",
                    path.display()
                )));
            }
            match flag {
                "--allow-read" => p.read.push(path.clone()),
                "--allow-exec" => p.exec.push(path.clone()),
                _ => {
                    p.read.push(path.clone());
                    p.write.push(path.clone());
                }
            }
        }
    }
    Ok(p)
}

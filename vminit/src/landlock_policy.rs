//! Landlock (`--landlock`): which paths the command may read, write and
//! execute (applied by burrow to the command, and by the guest's init to
//! the command in `--vm`'s guest), which TCP ports it may bind and connect to, and no abstract
//! unix sockets or signals across the sandbox's edge. Best effort up to
//! the running kernel's ABI, saying what it could not enforce;
//! `--landlock-strict` makes that an error.

use std::path::{Path, PathBuf};

use landlock::{
    Access, AccessFs, AccessNet, BitFlags, CompatLevel, Compatible, LandlockStatus, NetPort,
    PathBeneath, PathFd, Ruleset, RulesetAttr, RulesetCreatedAttr, RulesetStatus, Scope, ABI,
};

/// The newest ABI whose rights burrow asks for (6: signal and abstract
/// socket scoping; 7 only adds audit logging).
const TARGET: ABI = ABI::V6;

/// System paths readable and executable under `--landlock` on the host's
/// root (a `--rootfs` image is readable whole): homes, /root, /run, /var
/// and /mnt are not.
pub const SYSTEM_READ: [&str; 12] = [
    "/usr", "/bin", "/sbin", "/lib", "/lib32", "/lib64", "/libx32", "/etc", "/opt", "/proc",
    "/sys", "/dev",
];

/// Writable under `--landlock` whatever the root.
pub const SCRATCH_WRITE: [&str; 5] = ["/tmp", "/var/tmp", "/dev/shm", "/dev/pts", "/dev/null"];

/// Device files the command may write (/dev itself is only readable).
pub const DEVICE_WRITE: [&str; 5] = [
    "/dev/zero",
    "/dev/full",
    "/dev/tty",
    "/dev/ptmx",
    "/dev/random",
];

#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Policy {
    /// Readable (and listable).
    pub read: Vec<PathBuf>,
    /// Readable and executable.
    pub exec: Vec<PathBuf>,
    /// Writable (create, remove, rename, truncate), not readable unless
    /// also in `read`.
    pub write: Vec<PathBuf>,
    /// Paths burrow added itself, left out when they do not exist inside.
    pub optional: Vec<PathBuf>,
    pub bind_ports: Vec<u16>,
    pub connect_ports: Vec<u16>,
    /// Fail instead of enforcing less than asked.
    pub strict: bool,
    /// Leave TCP bind and connect alone (the ports above are ignored).
    pub unrestricted_net: bool,
}

fn read_rights() -> BitFlags<AccessFs> {
    AccessFs::ReadFile | AccessFs::ReadDir
}

fn write_rights() -> BitFlags<AccessFs> {
    AccessFs::from_write(TARGET)
}

impl Policy {
    /// Applies the policy to the calling process (after no_new_privs).
    /// Returns a warning when the kernel enforces only part of it.
    pub fn restrict_self(&self) -> Result<Option<String>, String> {
        let level = if self.strict {
            CompatLevel::HardRequirement
        } else {
            CompatLevel::BestEffort
        };
        let fail = |e: &dyn std::fmt::Display| format!("landlock: {e}");
        let mut ruleset = Ruleset::default()
            .set_compatibility(level)
            .handle_access(AccessFs::from_all(TARGET))
            .map_err(|e| fail(&e))?;
        if !self.unrestricted_net {
            ruleset = ruleset
                .handle_access(AccessNet::from_all(TARGET))
                .map_err(|e| fail(&e))?;
        }
        let mut ruleset = ruleset
            .scope(Scope::from_all(TARGET))
            .map_err(|e| fail(&e))?
            .create()
            .map_err(|e| fail(&e))?;
        let sets = [
            (&self.read, read_rights()),
            (&self.exec, read_rights() | AccessFs::Execute),
            (&self.write, write_rights()),
        ];
        for (paths, rights) in sets {
            for path in paths {
                let fd = match PathFd::new(path) {
                    Ok(fd) => fd,
                    Err(_) if self.optional.contains(path) => continue,
                    Err(e) => return Err(format!("landlock: {}: {e}", path.display())),
                };
                // A file (not a directory) takes only the rights that
                // apply to files.
                let rights = if Path::new(path).is_dir() {
                    rights
                } else {
                    rights & AccessFs::from_file(TARGET)
                };
                ruleset = ruleset
                    .add_rule(PathBeneath::new(fd, rights))
                    .map_err(|e| fail(&e))?;
            }
        }
        for port in &self.bind_ports {
            ruleset = ruleset
                .add_rule(NetPort::new(*port, AccessNet::BindTcp))
                .map_err(|e| fail(&e))?;
        }
        for port in &self.connect_ports {
            ruleset = ruleset
                .add_rule(NetPort::new(*port, AccessNet::ConnectTcp))
                .map_err(|e| fail(&e))?;
        }
        let status = ruleset.restrict_self().map_err(|e| fail(&e))?;
        Ok(match status.ruleset {
            RulesetStatus::FullyEnforced => None,
            RulesetStatus::PartiallyEnforced => Some(format!(
                "landlock: {}; not enforced: {}",
                describe(&status.landlock),
                missing(&status.landlock)
            )),
            RulesetStatus::NotEnforced => Some(format!(
                "landlock: {}; nothing is enforced",
                describe(&status.landlock)
            )),
        })
    }
}

fn describe(status: &LandlockStatus) -> String {
    match status {
        LandlockStatus::NotEnabled => "disabled in this kernel".into(),
        LandlockStatus::NotImplemented => "not in this kernel".into(),
        LandlockStatus::Available {
            kernel_abi: Some(abi),
            ..
        } => format!("kernel ABI {abi}"),
        LandlockStatus::Available { effective_abi, .. } => format!("kernel ABI {effective_abi:?}"),
    }
}

/// The rights of [`TARGET`] that the running kernel's ABI lacks.
fn missing(status: &LandlockStatus) -> String {
    let have = match status {
        LandlockStatus::Available { effective_abi, .. } => *effective_abi,
        _ => ABI::Unsupported,
    };
    let mut out: Vec<String> = Vec::new();
    out.extend(
        (AccessFs::from_all(TARGET) & !AccessFs::from_all(have))
            .iter()
            .map(|a| format!("{a:?}")),
    );
    out.extend(
        (AccessNet::from_all(TARGET) & !AccessNet::from_all(have))
            .iter()
            .map(|a| format!("{a:?}")),
    );
    out.extend(
        (Scope::from_all(TARGET) & !Scope::from_all(have))
            .iter()
            .map(|a| format!("{a:?}")),
    );
    if out.is_empty() {
        "some rules".into()
    } else {
        out.join(", ")
    }
}

//! The sandbox's in-memory storage under one budget.
//!
//! Every tmpfs the sandbox writes to (the private upper layer of its root,
//! /tmp, /run, /dev, /dev/shm and each `--tmpfs`) is a directory of one
//! tmpfs, the store, bind-mounted where it belongs. Without a delegated
//! cgroup a tmpfs is charged to no limit and, without swap, pinned in RAM:
//! one store with one `size=` and one `nr_inodes=` is what bounds what a
//! sandbox can pin, however it spreads its files. Past the budget, writes anywhere get ENOSPC and the
//! host is untouched. A mount given a size of its own (`--shm-size`,
//! `--tmpfs DST:size=S`) is a tmpfs apart whose size is taken out of the
//! budget, so the total still holds.

use std::cell::Cell;
use std::ffi::{CStr, CString};
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::path::Path;

use nix::fcntl::OFlag;
use nix::sys::stat::Mode;

use crate::error::{Context, Error, Result};
use crate::sys::{self, FsOption};

/// The default budget's share of the host's RAM: a quarter, so that a
/// sandbox that fills its storage leaves three quarters to the host and to
/// its own processes (the kernel's own default is half of RAM for each
/// tmpfs, which four of them turn into twice the RAM).
pub const DEFAULT_SHARE: u64 = 4;

/// Bytes of budget per inode: tmpfs inodes are kernel memory outside
/// `size=` (about 1 KiB each with their dentry), so one per 8 KiB keeps
/// them within about 12% of the budget (the kernel's default is one per
/// 4 KiB page; small-file trees such as node_modules average more).
pub const BYTES_PER_INODE: u64 = 8 << 10;

/// The fewest inodes a store gets, however small its budget.
const MIN_INODES: u64 = 16 << 10;

/// How much the sandbox's tmpfs mounts may hold in all.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Budget {
    /// Bytes in all, the store's and the sized mounts' together.
    pub bytes: u64,
}

/// The inodes of a tmpfs of `bytes`.
pub fn inodes_for(bytes: u64) -> u64 {
    (bytes / BYTES_PER_INODE).max(MIN_INODES)
}

impl Budget {
    /// `--tmpfs-budget SIZE`, or a quarter of the host's RAM.
    pub fn new(given: Option<&str>) -> Result<Budget> {
        let bytes = match given {
            Some(text) => crate::cgroup::parse_size(text)
                .filter(|&b| b >= 1 << 20)
                .ok_or_else(|| {
                    Error::usage(format!(
                        "--tmpfs-budget {text}: not a size of at least 1M (e.g. 512M, 4G)"
                    ))
                })?,
            None => host_ram()? / DEFAULT_SHARE,
        };
        Ok(Budget { bytes })
    }

    /// What is left for the store once the mounts of their own size
    /// (`sized`: each flag and its size) are taken out.
    pub fn store_bytes(&self, sized: &[(String, u64)]) -> Result<u64> {
        // (Checked: sizes the user wrote could add up past 2^64.)
        let total = sized
            .iter()
            .try_fold(0u64, |sum, (_, s)| sum.checked_add(*s))
            .unwrap_or(u64::MAX);
        if total >= self.bytes {
            let names: Vec<&str> = sized.iter().map(|(n, _)| n.as_str()).collect();
            return Err(Error::usage(format!(
                "{}: their sizes add up to {} bytes, not less than the sandbox's tmpfs budget \
                 of {} bytes (raise --tmpfs-budget)",
                names.join(", "),
                total,
                self.bytes
            )));
        }
        Ok(self.bytes - total)
    }
}

/// MemTotal of /proc/meminfo, in bytes.
fn host_ram() -> Result<u64> {
    let text = std::fs::read_to_string("/proc/meminfo").ctx(|| "reading /proc/meminfo")?;
    text.lines()
        .find_map(|l| l.strip_prefix("MemTotal:"))
        .and_then(|v| v.trim().strip_suffix("kB"))
        .and_then(|kb| kb.trim().parse::<u64>().ok())
        .map(|kb| kb << 10)
        .ok_or_else(|| Error::usage("/proc/meminfo: no MemTotal line"))
}

/// The store: one tmpfs, mounted in the scratch root, whose directories
/// are handed out as the sandbox's tmpfs mounts.
pub struct Store {
    root: OwnedFd,
    next: Cell<u32>,
}

impl Store {
    /// Mounts the store of `bytes` and `inodes` on `at` (a directory of
    /// the scratch root, detached with it at the end).
    pub fn mount(bytes: u64, inodes: u64, at: &Path) -> Result<Store> {
        let what = || "mounting the sandbox's tmpfs store";
        let mnt = new_tmpfs(c"tmpfs", Some(bytes), Some(inodes), "0755", 0).ctx(what)?;
        nix::unistd::mkdir(at, Mode::from_bits_truncate(0o755)).ctx(what)?;
        sys::move_mount_to_path(mnt.as_fd(), at).ctx(what)?;
        let root = nix::fcntl::open(
            at,
            OFlag::O_PATH | OFlag::O_DIRECTORY | OFlag::O_CLOEXEC,
            Mode::empty(),
        )
        .ctx(what)?;
        Ok(Store {
            root,
            next: Cell::new(0),
        })
    }

    /// A new empty directory of the store, with `mode`, opened read-only.
    pub fn new_dir(&self, mode: u32) -> Result<OwnedFd> {
        let n = self.next.get();
        self.next.set(n + 1);
        let name = format!("{n}");
        let what = || "making a directory in the sandbox's tmpfs store";
        nix::sys::stat::mkdirat(&self.root, name.as_str(), Mode::from_bits_truncate(0o700))
            .ctx(what)?;
        let dir = nix::fcntl::openat(
            &self.root,
            name.as_str(),
            OFlag::O_RDONLY | OFlag::O_DIRECTORY | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC,
            Mode::empty(),
        )
        .ctx(what)?;
        // (mkdir's mode is masked by the umask; fchmod's is not.)
        nix::sys::stat::fchmod(&dir, Mode::from_bits_truncate(mode)).ctx(what)?;
        Ok(dir)
    }

    /// Mounts a new directory of the store (with `mode`) onto `target`,
    /// with mount attributes `attr`.
    /// A new directory of the store, with `mode` (and `owner`, where it
    /// is mapped here), bound onto `target`.
    pub fn mount_onto(
        &self,
        target: BorrowedFd,
        mode: u32,
        owner: Option<(u32, u32)>,
        attr: u64,
        what: &str,
    ) -> Result<()> {
        let dir = self.new_dir(mode)?;
        if let Some((uid, gid)) = owner {
            let ids = (Some(uid.into()), Some(gid.into()));
            match nix::unistd::fchown(&dir, ids.0, ids.1) {
                // (An owner with no id here stays root's.)
                Ok(()) | Err(nix::errno::Errno::EINVAL) => {}
                Err(e) => return Err(e).ctx(|| what.to_string()),
            }
        }
        let tree = sys::open_tree_clone_fd(dir.as_fd(), false).ctx(|| what.to_string())?;
        sys::mount_setattr(tree.as_fd(), attr, false).ctx(|| what.to_string())?;
        sys::move_mount_onto(tree.as_fd(), target).ctx(|| what.to_string())
    }
}

/// A new, detached tmpfs named `source`.
pub fn new_tmpfs(
    source: &CStr,
    bytes: Option<u64>,
    inodes: Option<u64>,
    mode: &str,
    attr: u64,
) -> nix::Result<OwnedFd> {
    let number = |n: u64| CString::new(n.to_string()).expect("digits have no NUL");
    let (size, nr) = (bytes.map(number), inodes.map(number));
    let mode = CString::new(mode).expect("a mode has no NUL");
    let mut opts = vec![
        FsOption::Value(c"source", source),
        FsOption::Value(c"mode", &mode),
    ];
    if let Some(s) = &size {
        opts.push(FsOption::Value(c"size", s));
    }
    if let Some(n) = &nr {
        opts.push(FsOption::Value(c"nr_inodes", n));
    }
    sys::new_mount(c"tmpfs", &opts, attr)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_budget_is_a_quarter_of_ram_or_the_given_size() {
        let ram = host_ram().unwrap();
        let b = Budget::new(None).unwrap();
        assert_eq!(b.bytes, ram / 4);
        assert_eq!(inodes_for(ram / 4), ram / 4 / BYTES_PER_INODE);
        let b = Budget::new(Some("64M")).unwrap();
        assert_eq!((b.bytes, inodes_for(b.bytes)), (64 << 20, MIN_INODES));
        let huge = 8u64 << 60;
        assert!(b
            .store_bytes(&[("--tmpfs /a".into(), huge), ("--tmpfs /b".into(), huge)])
            .is_err());
        assert!(Budget::new(Some("12k")).is_err());
        assert!(Budget::new(Some("lots")).is_err());
        assert_eq!(
            b.store_bytes(&[("--shm-size".into(), 16 << 20)]).unwrap(),
            48 << 20
        );
        let e = b
            .store_bytes(&[
                ("--shm-size".into(), 32 << 20),
                ("--tmpfs /x".into(), 32 << 20),
            ])
            .unwrap_err();
        assert!(e.to_string().contains("--shm-size, --tmpfs /x"), "{e}");
    }
}

//! `--remount-ro`, `--remount-noexec` and `--mask` (OCI's readonlyPaths
//! and maskedPaths, podman's `--security-opt mask=`, a noexec bind): paths
//! of the new root made read-only, noexec, or hidden, after every other
//! mount is in place. A path that does not
//! exist is left alone, as runc does; one that leads through a symlink is
//! followed within the new root, never out of it.

use std::os::fd::{AsFd, OwnedFd};
use std::path::Path;

use nix::errno::Errno;

use crate::error::{Context, Result};
use crate::sys;

const RO: u64 = libc::MOUNT_ATTR_RDONLY;
const NOSUID: u64 = libc::MOUNT_ATTR_NOSUID;
const NODEV: u64 = libc::MOUNT_ATTR_NODEV;
const NOEXEC: u64 = libc::MOUNT_ATTR_NOEXEC;

/// `dst` in the new root `root`, if it exists there.
fn existing(root: &OwnedFd, dst: &Path, what: &dyn Fn() -> String) -> Result<Option<OwnedFd>> {
    let rel = dst.strip_prefix("/").unwrap_or(dst);
    match sys::open_in_root(root.as_fd(), rel, libc::O_PATH | libc::O_CLOEXEC) {
        Ok(fd) => Ok(Some(fd)),
        Err(Errno::ENOENT) => Ok(None),
        Err(e) => Err(e).ctx(what),
    }
}

/// Makes `dst`, and every mount below it, read-only.
pub fn remount_ro(root: &OwnedFd, dst: &Path) -> Result<()> {
    remount(root, dst, RO, "--remount-ro")
}

/// Makes `dst`, and every mount below it, noexec.
pub fn remount_noexec(root: &OwnedFd, dst: &Path) -> Result<()> {
    remount(root, dst, NOEXEC, "--remount-noexec")
}

/// A copy of the mounts at `dst` with `attr` set, over them.
fn remount(root: &OwnedFd, dst: &Path, attr: u64, flag: &str) -> Result<()> {
    let what = || format!("{flag} {}", dst.display());
    let Some(at) = existing(root, dst, &what)? else {
        return Ok(());
    };
    let tree = sys::open_tree_clone_fd(at.as_fd(), true).ctx(what)?;
    sys::mount_setattr(tree.as_fd(), attr, true).ctx(what)?;
    sys::move_mount_onto(tree.as_fd(), at.as_fd()).ctx(what)
}

/// Hides `dst`: a directory shows empty and read-only (a tmpfs of no
/// size), anything else reads as empty (`host_null`, the host's /dev/null,
/// bound over it).
pub fn mask(root: &OwnedFd, dst: &Path, host_null: &Path) -> Result<()> {
    let what = || format!("--mask {}", dst.display());
    let Some(at) = existing(root, dst, &what)? else {
        return Ok(());
    };
    let st = nix::sys::stat::fstat(&at).ctx(what)?;
    let cover = if st.st_mode & libc::S_IFMT == libc::S_IFDIR {
        crate::storage::new_tmpfs(
            c"tmpfs",
            Some(4096),
            Some(1),
            "555",
            RO | NOSUID | NODEV | NOEXEC,
        )
        .ctx(what)?
    } else {
        let null = sys::open_tree_clone(host_null, false).ctx(what)?;
        sys::mount_setattr(null.as_fd(), RO | NOSUID | NOEXEC, false).ctx(what)?;
        null
    };
    sys::move_mount_onto(cover.as_fd(), at.as_fd()).ctx(what)
}

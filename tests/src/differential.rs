//! The differential harness for burrowfs: the same operations on a
//! burrowfs mount and a kernel overlayfs mount over the same lower layers,
//! compared result by result and tree by tree, then each upper layer read
//! back by the other implementation. Needs a user namespace with a mount
//! namespace of its own (see the union_differential test and the fuzz
//! target).
//!
//! Deliberate difference: renaming a directory that comes from a lower
//! layer works on burrowfs (it copies the tree up), where kernel overlayfs
//! without redirect_dir (never available with `userxattr`) says EXDEV; for
//! that case the kernel side does what `mv` does (copy, then delete), and
//! the trees are compared as usual (but for link counts, as a copy loses
//! the hard links a rename keeps, and a case with hard links ends right
//! after such a copy); where burrowfs refuses such a rename
//! (ENOTEMPTY, ENOTDIR, ...) that error stands. RENAME_EXCHANGE involving a
//! directory is skipped. An open for writing that writes nothing (a Write
//! of no bytes that does not truncate an existing file) is skipped too:
//! burrowfs sees no opens and copies a file up at its first write, where
//! kernel overlayfs copies it up at the open (which breaks a lower hard
//! link).
//!
//! Kernel overlayfs quirks tolerated (burrowfs does what a plain filesystem
//! does): a name of an upper hard link keeps the size it had when the other
//! name was written (so the kernel side is remounted before an `mv`-style
//! copy in a case that made a hard link); rename(2) between two names of
//! one upper file gives ESTALE there
//! (burrowfs: success, nothing changes); and after a hard link in the upper
//! layer each name is its own overlay inode with its own idea of the mode,
//! so a truncate through one name may miss the setuid bit set through the
//! other and keep it (burrowfs clears it, as ext4 and tmpfs do), so
//! setuid/setgid bits are not compared once a case has made a hard link.

use std::path::Path;
use std::process::Command;

use crate::unionops::{self, Op};
use crate::TempDir;

macro_rules! check_eq {
    ($ours:expr, $theirs:expr, $($what:tt)+) => {
        if $ours != $theirs {
            return Err(format!(
                "{}\n  burrowfs: {:?}\n  kernel:   {:?}",
                format!($($what)+),
                $ours,
                $theirs
            ));
        }
    };
}

pub struct Mounts {
    base: TempDir,
    burrowfs: std::path::PathBuf,
}

/// Which upper layer a mount uses: the kernel's ("k") or burrowfs' ("b").
type Side = &'static str;

impl Mounts {
    fn kernel(&self) -> std::path::PathBuf {
        self.base.join("k/m")
    }
    fn burrow(&self) -> std::path::PathBuf {
        self.base.join("b/m")
    }

    fn options(&self, side: Side) -> String {
        format!(
            "lowerdir={}:{},upperdir={},workdir={}",
            self.base.join("l1").display(),
            self.base.join("l2").display(),
            self.base.join(side).join("u").display(),
            self.base.join(side).join("w").display()
        )
    }

    /// Kernel overlayfs over `side`'s upper layer, on `target`.
    fn mount_kernel(&self, side: Side, target: &Path) -> Result<(), String> {
        nix::mount::mount(
            Some("overlay"),
            target,
            Some("overlay"),
            nix::mount::MsFlags::empty(),
            Some(format!("{},userxattr", self.options(side)).as_str()),
        )
        .map_err(|e| format!("SKIPPED: kernel overlayfs cannot be mounted here: {e}"))
    }

    /// burrowfs over `side`'s upper layer, on `target`.
    fn mount_burrowfs(&self, side: Side, target: &Path) -> Result<(), String> {
        let st = Command::new(&self.burrowfs)
            .args(["-o", &self.options(side)])
            .arg(target)
            .status()
            .map_err(|e| e.to_string())?;
        if !st.success() {
            return Err(format!("burrowfs failed to mount: {st}"));
        }
        Ok(())
    }

    pub fn new(burrowfs: &Path) -> Result<Mounts, String> {
        let base = TempDir::new("diff");
        unionops::make_lowers(&base.join("l1"), &base.join("l2")).map_err(|e| e.to_string())?;
        for side in ["k", "b"] {
            for d in ["u", "w", "m"] {
                std::fs::create_dir_all(base.join(side).join(d)).unwrap();
            }
        }
        let m = Mounts {
            base,
            burrowfs: burrowfs.to_path_buf(),
        };
        m.mount_kernel("k", &m.kernel())?;
        m.mount_burrowfs("b", &m.burrow())?;
        Ok(m)
    }

    /// Unmounts both, then mounts each upper layer with the other
    /// implementation: kernel overlayfs over burrowfs' upper on b/m,
    /// burrowfs over the kernel's upper on k/m.
    fn swap(&self) -> Result<(), String> {
        nix::mount::umount(&self.burrow()).map_err(|e| format!("unmounting burrowfs: {e}"))?;
        nix::mount::umount(&self.kernel()).map_err(|e| format!("unmounting overlayfs: {e}"))?;
        self.mount_kernel("b", &self.burrow())?;
        self.mount_burrowfs("k", &self.kernel())
    }
}

impl Drop for Mounts {
    fn drop(&mut self) {
        let _ = nix::mount::umount(&self.burrow());
        let _ = nix::mount::umount(&self.kernel());
    }
}

pub fn run_case(burrowfs: &Path, ops: &[Op]) -> Result<(), String> {
    let m = Mounts::new(burrowfs)?;
    let (k, b) = (m.kernel(), m.burrow());
    let mut moved_by_copy = false;
    let mut linked = false;
    for (i, op) in ops.iter().enumerate() {
        if let Op::Rename { from, to, flags } = *op {
            if flags % 3 == 2 && (unionops::is_dir(&k, from) || unionops::is_dir(&k, to)) {
                continue;
            }
        }
        if let Op::Write {
            path,
            len: 0,
            append,
            truncate,
            ..
        } = *op
        {
            // (a truncate happens only without append)
            if (append || !truncate) && unionops::is_file(&k, path) {
                continue;
            }
        }
        let ours = unionops::apply(&b, op);
        linked |= matches!(op, Op::Link { .. }) && ours.is_ok();
        let mut theirs = unionops::apply(&k, op);
        if let (Op::Rename { .. }, Err(libc::ESTALE), Ok(_)) = (op, &theirs, &ours) {
            // Two names of one upper file: kernel overlayfs says ESTALE,
            // burrowfs does nothing, as rename(2) specifies.
            continue;
        }
        if let (Op::Rename { from, to, .. }, Err(libc::EXDEV)) = (op, &theirs) {
            theirs = match ours {
                // burrowfs moved it: do what mv does on EXDEV.
                Ok(_) => {
                    moved_by_copy = true;
                    if linked {
                        // Kernel overlayfs keeps one overlay inode per name
                        // of an upper hard link, each with its own cached
                        // size: a copy through a name the other was written
                        // through reads short. A fresh mount reads the
                        // upper layer as it is.
                        nix::mount::umount(&k).map_err(|e| format!("unmounting overlayfs: {e}"))?;
                        m.mount_kernel("k", &k)?;
                    }
                    unionops::move_by_copy(&k, *from, *to)
                }
                .map(|()| String::new())
                .map_err(|e| e.raw_os_error().unwrap_or(-1)),
                // burrowfs refused it for a reason the kernel checks after
                // EXDEV; neither side changed (the snapshot checks that).
                Err(_) => ours.clone(),
            };
        }
        check_eq!(
            &ours,
            &theirs,
            "op #{} {:?} differs (burrowfs left, kernel right)",
            i,
            op
        );
        if moved_by_copy && linked {
            // The copy split hard links that the rename kept: later changes
            // through one name would differ for a reason of the emulation.
            break;
        }
    }
    let (mut ours, mut theirs) = (unionops::snapshot(&b), unionops::snapshot(&k));
    if moved_by_copy {
        // A copied tree loses the hard links a rename keeps.
        unionops::forget_link_counts(&mut ours);
        unionops::forget_link_counts(&mut theirs);
    }
    if linked {
        unionops::forget_setid_bits(&mut ours);
        unionops::forget_setid_bits(&mut theirs);
    }
    check_eq!(&ours, &theirs, "merged trees differ after {:?}", ops);

    // Format compatibility, both ways: each upper layer, mounted by the
    // other implementation, shows the tree its writer showed.
    m.swap()?;
    let (mut kernel_reads_ours, mut burrowfs_reads_theirs) =
        (unionops::snapshot(&b), unionops::snapshot(&k));
    if moved_by_copy {
        unionops::forget_link_counts(&mut kernel_reads_ours);
        unionops::forget_link_counts(&mut burrowfs_reads_theirs);
    }
    if linked {
        unionops::forget_setid_bits(&mut kernel_reads_ours);
        unionops::forget_setid_bits(&mut burrowfs_reads_theirs);
    }
    check_eq!(
        &kernel_reads_ours,
        &ours,
        "kernel overlayfs reads burrowfs' upper differently after {:?}",
        ops
    );
    check_eq!(
        &burrowfs_reads_theirs,
        &theirs,
        "burrowfs reads the kernel's upper differently after {:?}",
        ops
    );
    Ok(())
}

/// Moves this (single-threaded) process into a new user namespace, as
/// root mapped to its own uid and gid, with a private mount namespace:
/// where both kernel overlayfs and burrowfs can be mounted.
pub fn enter_private_namespaces() -> Result<(), String> {
    use nix::sched::CloneFlags;
    let (uid, gid) = (nix::unistd::getuid(), nix::unistd::getgid());
    nix::sched::unshare(CloneFlags::CLONE_NEWUSER | CloneFlags::CLONE_NEWNS)
        .map_err(|e| format!("unshare: {e}"))?;
    let write = |file: &str, text: String| {
        std::fs::write(format!("/proc/self/{file}"), text).map_err(|e| format!("{file}: {e}"))
    };
    write("setgroups", "deny".into())?;
    write("uid_map", format!("0 {uid} 1"))?;
    write("gid_map", format!("0 {gid} 1"))?;
    nix::mount::mount(
        None::<&str>,
        "/",
        None::<&str>,
        nix::mount::MsFlags::MS_REC | nix::mount::MsFlags::MS_PRIVATE,
        None::<&str>,
    )
    .map_err(|e| format!("making mounts private: {e}"))
}

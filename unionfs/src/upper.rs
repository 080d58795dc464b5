//! The writable layer: copy-up, whiteouts and opaque directories, made
//! atomic by building every new object in the work directory and renaming
//! it into place (so a crash leaves only garbage in `workdir/work`, never a
//! half-copied file in the upper layer).

use std::ffi::OsStr;
use std::fs::{File, Metadata};
use std::io;
use std::os::fd::AsFd;
use std::os::unix::fs::{FileTypeExt, MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use nix::errno::Errno;
use nix::fcntl::{renameat2, RenameFlags, AT_FDCWD};
use nix::sys::stat::{utimensat, Mode, SFlag, UtimensatFlags};
use nix::sys::time::TimeSpec;
use nix::unistd::{fchownat, Gid, Uid};

use crate::format::{self, DirMark};

/// Name of burrowfs' (and kernel overlayfs') scratch directory in `workdir`.
pub const WORK_SUBDIR: &str = "work";

/// The upper layer and its work directory.
#[derive(Debug)]
pub struct Upper {
    dir: PathBuf,
    work: PathBuf,
    next: AtomicU64,
    /// Whether 0/0 character-device whiteouts can be made here.
    device_whiteouts: std::sync::atomic::AtomicBool,
    /// A 0/0 device in the work directory that new whiteouts are hard
    /// links of (as kernel overlayfs does): a link costs no inode
    /// allocation, a mknod does.
    shared_whiteout: std::sync::Mutex<Option<PathBuf>>,
}

fn errno(e: Errno) -> io::Error {
    io::Error::from_raw_os_error(e as i32)
}

impl Upper {
    /// Prepares `workdir/work` (emptied of leftovers from a crash).
    pub fn new(dir: PathBuf, workdir: &Path) -> io::Result<Upper> {
        // One mount per upper layer at a time: a second one would wipe the
        // first one's work in progress.
        let lock = File::open(workdir)?;
        nix::fcntl::Flock::lock(lock, nix::fcntl::FlockArg::LockExclusiveNonblock)
            .map_err(|(_, e)| {
                if e == Errno::EWOULDBLOCK {
                    io::Error::other(format!("{} is in use by another mount", workdir.display()))
                } else {
                    errno(e)
                }
            })
            .map(|held| {
                // Held for the life of the process.
                std::mem::forget(held);
            })?;
        let work = workdir.join(WORK_SUBDIR);
        if work.symlink_metadata().is_ok() {
            std::fs::remove_dir_all(&work)?;
        }
        std::fs::create_dir(&work)?;
        Ok(Upper {
            dir,
            work,
            next: AtomicU64::new(0),
            device_whiteouts: std::sync::atomic::AtomicBool::new(true),
            shared_whiteout: std::sync::Mutex::new(None),
        })
    }

    /// Whether whiteouts are 0/0 devices (else xattr whiteouts, which mark
    /// their parent directory).
    pub fn device_whiteouts(&self) -> bool {
        self.device_whiteouts.load(Ordering::Relaxed)
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Path of `rel` in the upper layer.
    pub fn path(&self, rel: &Path) -> PathBuf {
        self.dir.join(rel)
    }

    /// A fresh name in the work directory.
    pub fn temp(&self) -> PathBuf {
        let n = self.next.fetch_add(1, Ordering::Relaxed);
        self.work.join(format!("#{:x}-{n}", std::process::id()))
    }

    /// Moves a finished object from the work directory to `rel`, which
    /// must not exist.
    pub fn install(&self, temp: &Path, rel: &Path) -> io::Result<()> {
        renameat2(
            AT_FDCWD,
            temp,
            AT_FDCWD,
            &self.path(rel),
            RenameFlags::RENAME_NOREPLACE,
        )
        .map_err(errno)
    }

    /// Copies the entry at `src` (with metadata `meta`) to `rel` in the
    /// upper layer, whose parent directory must already exist there.
    pub fn copy_up(&self, src: &Path, meta: &Metadata, rel: &Path) -> io::Result<()> {
        let tmp = self.temp();
        let res = self
            .build_copy(src, meta, &tmp)
            .and_then(|()| self.install(&tmp, rel));
        if res.is_err() {
            let _ = remove_any(&tmp);
        }
        res
    }

    fn build_copy(&self, src: &Path, meta: &Metadata, tmp: &Path) -> io::Result<()> {
        let ft = meta.file_type();
        if ft.is_file() {
            copy_file_data(src, tmp, meta)?;
        } else if ft.is_dir() {
            std::fs::create_dir(tmp)?;
        } else if ft.is_symlink() {
            std::os::unix::fs::symlink(std::fs::read_link(src)?, tmp)?;
        } else {
            let kind = if ft.is_fifo() {
                SFlag::S_IFIFO
            } else if ft.is_socket() {
                SFlag::S_IFSOCK
            } else if ft.is_char_device() {
                SFlag::S_IFCHR
            } else {
                SFlag::S_IFBLK
            };
            nix::sys::stat::mknod(
                tmp,
                kind,
                Mode::from_bits_truncate(meta.mode()),
                meta.rdev(),
            )
            .map_err(errno)?;
        }
        copy_xattrs(src, tmp)?;
        copy_metadata(meta, tmp)
    }

    /// Makes a whiteout at `rel` (which must not exist in the upper layer):
    /// a 0/0 character device, or where mknod is refused, an empty file
    /// with the `user.overlay.whiteout` xattr in a directory marked "x".
    pub fn make_whiteout(&self, rel: &Path) -> io::Result<()> {
        if self.link_whiteout(&self.path(rel))? {
            return Ok(());
        }
        let tmp = self.temp();
        File::create(&tmp)?;
        xattr::set(&tmp, "user.overlay.whiteout", b"")?;
        let parent = self.path(rel.parent().unwrap_or(Path::new("")));
        if format::dir_mark(&parent) == DirMark::Transparent {
            xattr::set(&parent, "user.overlay.opaque", b"x")?;
        }
        self.install(&tmp, rel)
            .inspect_err(|_| drop(remove_any(&tmp)))
    }

    /// Puts a 0/0 device whiteout at `at` (which must not exist) as a hard
    /// link of the shared one. `false` when device whiteouts cannot be
    /// made here.
    fn link_whiteout(&self, at: &Path) -> io::Result<bool> {
        let mut shared = self
            .shared_whiteout
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        for _ in 0..2 {
            if !self.device_whiteouts() {
                return Ok(false);
            }
            let source = match &*shared {
                Some(source) => source.clone(),
                None => {
                    let source = self.temp();
                    match nix::sys::stat::mknod(&source, SFlag::S_IFCHR, Mode::empty(), 0) {
                        Ok(()) => {}
                        Err(Errno::EPERM) => {
                            self.device_whiteouts.store(false, Ordering::Relaxed);
                            return Ok(false);
                        }
                        Err(e) => return Err(errno(e)),
                    }
                    *shared = Some(source.clone());
                    source
                }
            };
            match std::fs::hard_link(&source, at) {
                Ok(()) => return Ok(true),
                // Out of links (or the file went): start a new one.
                Err(e) if matches!(e.raw_os_error(), Some(libc::EMLINK | libc::ENOENT)) => {
                    *shared = None;
                }
                Err(e) => return Err(e),
            }
        }
        Err(io::Error::other("cannot link a whiteout"))
    }

    /// Atomically replaces the upper entry `rel` with a whiteout and
    /// deletes what was there: a whiteout made in the work directory
    /// trades places with it (renameat2 RENAME_EXCHANGE), so a crash
    /// cannot bring the lower entry back. `false` when device whiteouts
    /// cannot be made here, so the caller falls back.
    pub fn replace_with_whiteout(&self, rel: &Path) -> io::Result<bool> {
        let tmp = self.temp();
        if !self.link_whiteout(&tmp)? {
            return Ok(false);
        }
        if let Err(e) = renameat2(
            AT_FDCWD,
            &tmp,
            AT_FDCWD,
            &self.path(rel),
            RenameFlags::RENAME_EXCHANGE,
        ) {
            let _ = std::fs::remove_file(&tmp);
            return Err(errno(e));
        }
        remove_any(&tmp)?;
        Ok(true)
    }

    /// Marks upper directory `rel` opaque.
    pub fn set_opaque(&self, rel: &Path) -> io::Result<()> {
        xattr::set(self.path(rel), "user.overlay.opaque", b"y")
    }

    /// Replaces whatever non-directory is at `rel` with the prepared `temp`.
    pub fn replace(&self, temp: &Path, rel: &Path) -> io::Result<()> {
        let target = self.path(rel);
        let temp_is_dir = temp.symlink_metadata()?.is_dir();
        if temp_is_dir {
            // A directory cannot be renamed over a non-directory: swap, then
            // drop what was there.
            renameat2(
                AT_FDCWD,
                temp,
                AT_FDCWD,
                &target,
                RenameFlags::RENAME_EXCHANGE,
            )
            .map_err(errno)?;
            remove_any(temp)
        } else {
            std::fs::rename(temp, &target)
        }
    }
}

/// Removes a file, or a directory with everything in it.
pub fn remove_any(path: &Path) -> io::Result<()> {
    match path.symlink_metadata() {
        Ok(m) if m.is_dir() => std::fs::remove_dir_all(path),
        Ok(_) => std::fs::remove_file(path),
        Err(e) => Err(e),
    }
}

/// Copies a regular file's data, keeping holes.
fn copy_file_data(src: &Path, dst: &Path, meta: &Metadata) -> io::Result<()> {
    use std::os::unix::fs::OpenOptionsExt;
    let from = File::open(src)?;
    let to = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(dst)?;
    let size = meta.len() as i64;
    let mut pos: i64 = 0;
    while pos < size {
        let data = match nix::unistd::lseek(from.as_fd(), pos, nix::unistd::Whence::SeekData) {
            Ok(d) => d,
            Err(Errno::ENXIO) => break, // only a hole remains
            Err(_) => pos,              // no SEEK_DATA: copy everything
        };
        let hole = nix::unistd::lseek(from.as_fd(), data, nix::unistd::Whence::SeekHole)
            .unwrap_or(size)
            .min(size);
        copy_range(&from, &to, data, hole - data)?;
        pos = hole;
    }
    to.set_len(size as u64)?;
    Ok(())
}

/// Copies `len` bytes at `off` from one file to the same offset of another.
fn copy_range(from: &File, to: &File, off: i64, len: i64) -> io::Result<()> {
    let (mut off_in, mut off_out, mut left) = (off, off, len);
    while left > 0 {
        match nix::fcntl::copy_file_range(
            from.as_fd(),
            Some(&mut off_in),
            to.as_fd(),
            Some(&mut off_out),
            left as usize,
        ) {
            Ok(0) => break,
            Ok(n) => left -= n as i64,
            Err(Errno::EXDEV | Errno::EINVAL | Errno::ENOSYS | Errno::EOPNOTSUPP) => {
                return copy_range_slow(from, to, off_in, left)
            }
            Err(e) => return Err(errno(e)),
        }
    }
    Ok(())
}

fn copy_range_slow(from: &File, to: &File, mut off: i64, mut left: i64) -> io::Result<()> {
    use std::os::unix::fs::FileExt;
    let mut buf = vec![0u8; 1 << 20];
    while left > 0 {
        let want = (left as usize).min(buf.len());
        let n = from.read_at(&mut buf[..want], off as u64)?;
        if n == 0 {
            break;
        }
        to.write_all_at(&buf[..n], off as u64)?;
        off += n as i64;
        left -= n as i64;
    }
    Ok(())
}

/// Whether xattr `name` is overlayfs' own (never copied, never shown).
pub fn is_overlay_xattr(name: &OsStr) -> bool {
    let b = name.as_encoded_bytes();
    b.starts_with(b"user.overlay.") || b.starts_with(b"trusted.overlay.")
}

fn copy_xattrs(src: &Path, dst: &Path) -> io::Result<()> {
    let Ok(names) = xattr::list(src) else {
        return Ok(()); // no xattr support on the lower: nothing to copy
    };
    for name in names.filter(|n| !is_overlay_xattr(n)) {
        if let Ok(Some(value)) = xattr::get(src, &name) {
            match xattr::set(dst, &name, &value) {
                Ok(()) => {}
                // security.* and trusted.* may be refused without privilege.
                Err(e) if matches!(e.raw_os_error(), Some(libc::EPERM | libc::ENOTSUP)) => {}
                Err(e) => return Err(e),
            }
        }
    }
    Ok(())
}

/// Owner (when permitted), mode and timestamps of `meta` onto `dst`.
fn copy_metadata(meta: &Metadata, dst: &Path) -> io::Result<()> {
    let owner = fchownat(
        AT_FDCWD,
        dst,
        Some(Uid::from_raw(meta.uid())),
        Some(Gid::from_raw(meta.gid())),
        nix::fcntl::AtFlags::AT_SYMLINK_NOFOLLOW,
    );
    match owner {
        Ok(()) | Err(Errno::EPERM) | Err(Errno::EINVAL) => {}
        Err(e) => return Err(errno(e)),
    }
    if !meta.file_type().is_symlink() {
        std::fs::set_permissions(dst, std::fs::Permissions::from_mode(meta.mode() & 0o7777))?;
    }
    let atime = TimeSpec::new(meta.atime(), meta.atime_nsec());
    let mtime = TimeSpec::new(meta.mtime(), meta.mtime_nsec());
    utimensat(
        AT_FDCWD,
        dst,
        &atime,
        &mtime,
        UtimensatFlags::NoFollowSymlink,
    )
    .map_err(errno)
}

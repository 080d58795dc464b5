//! The writable layer: copy-up, whiteouts and opaque directories, made
//! atomic by building every new object in the work directory and renaming
//! it into place (so a crash leaves only garbage in `workdir/work`, never a
//! half-copied file in the upper layer).

use std::ffi::{OsStr, OsString};
use std::fs::File;
use std::io;
use std::os::fd::AsFd;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use nix::errno::Errno;
use nix::fcntl::{OFlag, RenameFlags};
use nix::sys::stat::SFlag;
use nix::sys::time::TimeSpec;

use crate::format::{self, DirMark};
use crate::layer_dir::{Dir, Object, Place};
use crate::layer_file::LayerFile;
use crate::layers::{Attrs, Kind, Stat};

/// Name of burrowfs' (and kernel overlayfs') scratch directory in `workdir`.
pub const WORK_SUBDIR: &str = "work";

/// The upper layer and its work directory, as descriptors: every object
/// is made by name in one of them (see [`crate::layer_dir`]).
#[derive(Debug)]
pub struct Upper {
    /// The upper layer as named, for messages.
    path: PathBuf,
    root: Dir,
    work: Dir,
    /// The work directory's parent, held locked.
    _workdir: Dir,
    next: AtomicU64,
    /// Whether 0/0 character-device whiteouts can be made here.
    device_whiteouts: std::sync::atomic::AtomicBool,
    /// A 0/0 device in the work directory that new whiteouts are hard
    /// links of (as kernel overlayfs does): a link costs no inode
    /// allocation, a mknod does.
    shared_whiteout: std::sync::Mutex<Option<OsString>>,
}

fn errno(e: Errno) -> io::Error {
    io::Error::from_raw_os_error(e as i32)
}

impl Upper {
    /// The upper layer `root` (named `path`, the stack's own descriptor of
    /// it) with `workdir`, whose `work` is prepared (emptied of leftovers
    /// from a crash; one too deep to empty is set aside).
    pub fn new(root: Dir, path: PathBuf, workdir: &Path) -> io::Result<Upper> {
        // One mount per upper layer at a time: a second one would wipe the
        // first one's work in progress. The lock lives with the descriptor.
        let workdir_fd = Dir::open_locked(workdir).map_err(|e| {
            if e.raw_os_error() == Some(libc::EWOULDBLOCK) {
                io::Error::other(format!("{} is in use by another mount", workdir.display()))
            } else {
                e
            }
        })?;
        let sub = OsStr::new(WORK_SUBDIR);
        match workdir_fd.remove_any(sub) {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            // Deeper than burrowfs removes (only a writer behind its back
            // makes such a tree): out of the way, under a name of its own.
            Err(e) if e.raw_os_error() == Some(libc::ELOOP) => {
                let aside = OsString::from(format!("{WORK_SUBDIR}.stale-{}", std::process::id()));
                workdir_fd.rename(sub, &workdir_fd, &aside, RenameFlags::RENAME_NOREPLACE)?;
            }
            Err(e) => return Err(e),
        }
        workdir_fd.mkdir(sub, 0o755)?;
        Ok(Upper {
            root,
            path,
            work: workdir_fd.child(sub)?,
            _workdir: workdir_fd,
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

    /// The upper layer as it was named.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The upper layer's root directory.
    pub fn root(&self) -> &Dir {
        &self.root
    }

    /// The work directory.
    pub fn work(&self) -> &Dir {
        &self.work
    }

    /// Directory `rel` of the upper layer.
    pub fn dir(&self, rel: &Path) -> io::Result<Dir> {
        self.root.sub_crossing(rel, false)
    }

    /// Where `rel` is in the upper layer.
    pub fn place(&self, rel: &Path) -> io::Result<Place> {
        self.root.place_of(rel, false)
    }

    /// A fresh name in the work directory.
    pub fn temp(&self) -> OsString {
        let n = self.next.fetch_add(1, Ordering::Relaxed);
        OsString::from(format!("#{:x}-{n}", std::process::id()))
    }

    /// Moves the finished object `temp` from the work directory to `at`,
    /// which must not exist.
    pub fn install(&self, temp: &OsStr, at: &Place) -> io::Result<()> {
        self.work
            .rename(temp, &at.dir, &at.name, RenameFlags::RENAME_NOREPLACE)
    }

    /// Copies the entry at `src` (with attributes `meta`) to `at` in the
    /// upper layer, whose directory must already exist.
    pub fn copy_up(&self, src: &Place, meta: &Stat, at: &Place) -> io::Result<()> {
        let tmp = self.temp();
        let res = self
            .build_copy(src, meta, &tmp)
            .and_then(|()| self.install(&tmp, at));
        if res.is_err() {
            let _ = self.work.remove_any(&tmp);
        }
        res
    }

    fn build_copy(&self, src: &Place, meta: &Stat, tmp: &OsStr) -> io::Result<()> {
        let w = &self.work;
        let mut made = None;
        match meta.kind() {
            Kind::File => made = Some(copy_file_data(src, meta, w, tmp)?),
            Kind::Dir => w.mkdir(tmp, 0o700)?,
            Kind::Symlink => w.symlink(&src.read_link()?, tmp)?,
            kind => {
                let flag = match kind {
                    Kind::Fifo => SFlag::S_IFIFO,
                    Kind::Socket => SFlag::S_IFSOCK,
                    Kind::CharDevice => SFlag::S_IFCHR,
                    _ => SFlag::S_IFBLK,
                };
                w.mknod(tmp, flag, meta.mode & 0o7777, meta.rdev)?;
            }
        }
        // Attributes go to the copy itself, held: not to whatever someone
        // writing the work directory puts at its name.
        let copy = w.place(tmp)?.hold_new(meta.mode, made)?;
        copy_xattrs(src, &copy)?;
        copy_metadata(meta, &copy)
    }

    /// A copy of `from`, a lower layer's file whose last name is gone but
    /// which the sandbox still has open, as a file of the work directory
    /// that has no name either: its data (its first `up_to` bytes: a
    /// truncate copies no more than it keeps), mode, owner (when permitted)
    /// and xattrs, for the writes that only the open descriptors can still
    /// make.
    pub fn copy_orphan(&self, from: &LayerFile, up_to: u64) -> io::Result<File> {
        use xattr::FileExt;
        let tmp = self.temp();
        let to =
            self.work
                .open_file(&tmp, OFlag::O_CREAT | OFlag::O_EXCL | OFlag::O_RDWR, 0o600)?;
        if let Err(e) = self.work.unlink(&tmp) {
            let _ = self.work.remove_any(&tmp);
            return Err(e);
        }
        copy_data(from, &to, up_to)?;
        let copy = Object::of_file(&to)?;
        if let Ok(from) = from.os() {
            let names = from.list_xattr().map(|n| n.collect());
            copy_xattrs_of(names, |n| from.get_xattr(n), &copy)?;
        }
        copy_metadata(&from.stat()?, &copy)?;
        Ok(to)
    }

    /// Makes a whiteout at `at` (which must not exist in the upper layer):
    /// a 0/0 character device, or where mknod is refused, an empty file
    /// with the `user.overlay.whiteout` xattr in a directory marked "x".
    pub fn make_whiteout(&self, at: &Place) -> io::Result<()> {
        if self.link_whiteout(&at.dir, &at.name)? {
            return Ok(());
        }
        let tmp = self.temp();
        let file = self.work.open_file(
            &tmp,
            OFlag::O_CREAT | OFlag::O_EXCL | OFlag::O_WRONLY,
            0o600,
        )?;
        let res = (|| {
            crate::sys::set_xattr_object(
                file.as_fd(),
                OsStr::new("user.overlay.whiteout"),
                b"",
                0,
            )?;
            if format::dir_mark(&at.dir, OsStr::new(""), false) == DirMark::Transparent {
                at.dir
                    .set_xattr(OsStr::new(""), "user.overlay.opaque", b"x")?;
            }
            self.install(&tmp, at)
        })();
        if res.is_err() {
            let _ = self.work.remove_any(&tmp);
        }
        res
    }

    /// Puts a 0/0 device whiteout at `name` in `dir` (which must not exist)
    /// as a hard link of the shared one. `false` when device whiteouts
    /// cannot be made here.
    fn link_whiteout(&self, dir: &Dir, name: &OsStr) -> io::Result<bool> {
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
                    match self.work.mknod(&source, SFlag::S_IFCHR, 0, 0) {
                        Ok(()) => {}
                        Err(e) if e.raw_os_error() == Some(libc::EPERM) => {
                            self.device_whiteouts.store(false, Ordering::Relaxed);
                            return Ok(false);
                        }
                        Err(e) => return Err(e),
                    }
                    *shared = Some(source.clone());
                    source
                }
            };
            match self.work.hard_link(&source, dir, name) {
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

    /// Atomically replaces the upper entry at `at` with a whiteout and
    /// deletes what was there: a whiteout made in the work directory
    /// trades places with it (renameat2 RENAME_EXCHANGE), so a crash
    /// cannot bring the lower entry back. `false` when device whiteouts
    /// cannot be made here, so the caller falls back.
    pub fn replace_with_whiteout(&self, at: &Place) -> io::Result<bool> {
        let tmp = self.temp();
        if !self.link_whiteout(&self.work, &tmp)? {
            return Ok(false);
        }
        if let Err(e) = self
            .work
            .rename(&tmp, &at.dir, &at.name, RenameFlags::RENAME_EXCHANGE)
        {
            let _ = self.work.unlink(&tmp);
            return Err(e);
        }
        self.work.remove_any(&tmp)?;
        Ok(true)
    }

    /// Marks upper directory `at` opaque.
    pub fn set_opaque(&self, at: &Place) -> io::Result<()> {
        let dir = at.hold_new(libc::S_IFDIR, None)?;
        dir.set_xattr(OsStr::new("user.overlay.opaque"), b"y", 0)
    }

    /// Replaces whatever non-directory is at `at` with the prepared `temp`
    /// of the work directory.
    pub fn replace(&self, temp: &OsStr, at: &Place) -> io::Result<()> {
        let temp_is_dir = self.work.stat(temp)?.kind() == Kind::Dir;
        if temp_is_dir {
            // A directory cannot be renamed over a non-directory: swap, then
            // drop what was there.
            self.work
                .rename(temp, &at.dir, &at.name, RenameFlags::RENAME_EXCHANGE)?;
            self.work.remove_any(temp)
        } else {
            self.work
                .rename(temp, &at.dir, &at.name, RenameFlags::empty())
        }
    }
}

/// [`copy_data`] from an image layer's file: read and written.
fn copy_read(from: &LayerFile, to: &File, up_to: u64) -> io::Result<()> {
    use std::os::unix::fs::FileExt;
    let size = from.stat()?.size.min(up_to);
    let mut buf = vec![0u8; 1 << 17];
    let mut at = 0;
    while at < size {
        // Holes stay holes: sparse blocks, and data that is all zeros.
        if let Some(end) = from.hole_at(at) {
            at = end;
            continue;
        }
        let want = (size - at).min(buf.len() as u64) as usize;
        let n = from.read_at(&mut buf[..want], at)?;
        if n == 0 {
            break;
        }
        if buf[..n].iter().any(|&b| b != 0) {
            to.write_all_at(&buf[..n], at)?;
        }
        at += n as u64;
    }
    to.set_len(size)
}

/// Copies a regular file's data to `tmp` in the work directory, keeping
/// holes. Returns the copy's device and inode.
/// A `meta` of size 0 copies no data and opens nothing (an empty file
/// this process may not read, such as dpkg's lock files, mode 0640 root's
/// on the host; or one about to be truncated).
fn copy_file_data(src: &Place, meta: &Stat, work: &Dir, tmp: &OsStr) -> io::Result<(u64, u64)> {
    let to = work.open_file(tmp, OFlag::O_CREAT | OFlag::O_EXCL | OFlag::O_WRONLY, 0o600)?;
    let made = to.metadata()?;
    if meta.size == 0 {
        return Ok((made.dev(), made.ino()));
    }
    // The file opened must be the one looked up, not one swapped in since.
    let from = src
        .dir
        .open_regular(&src.name, OFlag::O_RDONLY, Some((meta.dev, meta.ino)))?;
    copy_data(&from, &to, u64::MAX)?;
    Ok((made.dev(), made.ino()))
}

/// Copies the data of `from` (its first `up_to` bytes at most) into the
/// empty file `to`, leaving holes where `from` has them.
fn copy_data(from: &LayerFile, to: &File, up_to: u64) -> io::Result<()> {
    let from = match from {
        LayerFile::Os(f) => f,
        LayerFile::Image(_) => return copy_read(from, to, up_to),
    };
    let size = from.metadata()?.len().min(up_to) as i64;
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
        copy_range(from, to, data, hole - data)?;
        pos = hole;
    }
    to.set_len(size as u64)
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

fn copy_xattrs(src: &Place, dst: &Object) -> io::Result<()> {
    copy_xattrs_of(src.list_xattrs(), |n| src.get_xattr(n), dst)
}

/// The xattrs `names` (read with `get`) onto `dst`, but overlayfs' own.
fn copy_xattrs_of(
    names: io::Result<Vec<OsString>>,
    get: impl Fn(&OsStr) -> io::Result<Option<Vec<u8>>>,
    dst: &Object,
) -> io::Result<()> {
    let Ok(names) = names else {
        return Ok(()); // no xattr support on the lower: nothing to copy
    };
    for name in names.iter().filter(|n| !is_overlay_xattr(n)) {
        if let Ok(Some(value)) = get(name) {
            match dst.set_xattr(name, &value, 0) {
                Ok(()) => {}
                // security.* and trusted.* may be refused without privilege,
                // and user.* on a symlink or device.
                Err(e) if matches!(e.raw_os_error(), Some(libc::EPERM | libc::ENOTSUP)) => {}
                Err(e) => return Err(e),
            }
        }
    }
    Ok(())
}

/// Owner (when permitted), mode and timestamps of `meta` onto `dst`.
fn copy_metadata(meta: &Stat, dst: &Object) -> io::Result<()> {
    match dst.chown(Some(meta.uid), Some(meta.gid)) {
        Ok(()) => {}
        Err(e) if matches!(e.raw_os_error(), Some(libc::EPERM | libc::EINVAL)) => {}
        Err(e) => return Err(e),
    }
    if meta.kind() != Kind::Symlink {
        dst.chmod(meta.mode & 0o7777)?;
    }
    let [a, m, _] = meta.times;
    dst.set_times(&TimeSpec::new(a.0, a.1), &TimeSpec::new(m.0, m.1))
}

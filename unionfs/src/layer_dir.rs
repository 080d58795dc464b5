//! The one way burrowfs reaches into a layer: from the layer's root
//! descriptor, a directory is opened with `openat2(RESOLVE_BENEATH |
//! RESOLVE_NO_SYMLINKS | RESOLVE_NO_MAGICLINKS)` (so neither a symlink nor
//! `..` is followed on the way, and the walk cannot leave the layer), and
//! everything in it is then acted on by name relative to that descriptor,
//! never following a symlink at the name either. Whatever can write to a
//! layer (the sandbox through a bind of it, or another process beside a
//! `mount -t fuse.burrowfs`) can swap a directory for a symlink at any
//! moment: the walk then fails (ELOOP) instead of going where it points.
//! Host paths are never built, so there is no PATH_MAX limit of burrowfs'
//! own: a long path is walked a piece at a time. (A directory so walked
//! may be kept open for reading the files in it; a file found through it
//! later is used only when it is the file its node was found as: see
//! `fs/dir_fds.rs`.)

use std::ffi::{OsStr, OsString};
use std::fs::File;
use std::io;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::{Component, Path, PathBuf};
use std::sync::Arc;

use nix::fcntl::{OFlag, OpenHow, ResolveFlag};
use nix::sys::stat::{Mode, SFlag};
use nix::unistd::{Gid, Uid};

use crate::layer_file::{ImageFile, LayerFile};
use crate::layers::{Kind, Stat};
use crate::squashfs::Image;
use crate::sys;

fn errno(e: nix::errno::Errno) -> io::Error {
    io::Error::from_raw_os_error(e as i32)
}

/// Bytes of path given to one openat2 call: well under PATH_MAX, so a path
/// of any length inside the union can be walked.
const WALK_PIECE: usize = 3072;

fn os_err(n: i32) -> io::Error {
    io::Error::from_raw_os_error(n)
}

/// A directory of a layer: open as an O_PATH descriptor, or a directory of
/// an image layer (read-only: every change is EROFS).
#[derive(Debug)]
pub struct Dir {
    at: At,
}

#[derive(Debug)]
enum At {
    Fd(OwnedFd),
    Image(Arc<Image>, u32),
}

impl Dir {
    fn of_fd(fd: OwnedFd) -> Dir {
        Dir { at: At::Fd(fd) }
    }

    /// The root directory of image layer `image`.
    pub fn image_root(image: Arc<Image>) -> Dir {
        Dir {
            at: At::Image(image, Image::ROOT),
        }
    }

    /// The image and node, for a directory of an image layer.
    pub fn image(&self) -> Option<(&Arc<Image>, u32)> {
        match &self.at {
            At::Image(image, n) => Some((image, *n)),
            At::Fd(_) => None,
        }
    }

    /// The descriptor: EROFS for a directory of an image layer, which
    /// nothing changes.
    fn fd(&self) -> io::Result<&OwnedFd> {
        match &self.at {
            At::Fd(fd) => Ok(fd),
            At::Image(..) => Err(os_err(libc::EROFS)),
        }
    }

    /// The id of the mount the directory is on; None in an image layer.
    pub fn mount_id(&self) -> Option<u64> {
        sys::mount_id(self.borrowed().ok()?).ok()
    }

    fn borrowed(&self) -> io::Result<BorrowedFd<'_>> {
        Ok(self.fd()?.as_fd())
    }

    /// The node `name` names in image directory `n`.
    fn image_child(image: &Image, n: u32, name: &OsStr) -> io::Result<u32> {
        if name == "." {
            return Ok(n); // (a place for the directory itself)
        }
        image.child(n, name).ok_or_else(|| os_err(libc::ENOENT))
    }

    /// The directory `rel` below node `n` of `image`, as an O_PATH walk
    /// would find it: ELOOP at a symlink, ENOTDIR at another non-directory.
    fn image_walk(image: &Arc<Image>, mut n: u32, rel: &Path) -> io::Result<Dir> {
        for c in rel.components() {
            let name = match c {
                Component::Normal(name) => name,
                Component::RootDir | Component::CurDir => continue,
                _ => return Err(os_err(libc::EINVAL)),
            };
            n = Self::image_child(image, n, name)?;
            match image.kind(n) {
                Kind::Dir => {}
                Kind::Symlink => return Err(os_err(libc::ELOOP)),
                _ => return Err(os_err(libc::ENOTDIR)),
            }
        }
        Ok(Dir {
            at: At::Image(image.clone(), n),
        })
    }

    /// Opens the directory `path` names: a layer's root, as the user gave
    /// it (symlinks on the way there are the user's own, followed once).
    pub fn open(path: &Path) -> io::Result<Dir> {
        let fd = nix::fcntl::open(
            path,
            OFlag::O_PATH | OFlag::O_DIRECTORY | OFlag::O_CLOEXEC,
            Mode::empty(),
        )
        .map_err(errno)?;
        Ok(Dir::of_fd(fd))
    }

    /// Opens directory `path` (as [`Dir::open`]) for reading too, and takes
    /// an exclusive lock on it for as long as the descriptor lives:
    /// `EWOULDBLOCK` when another holds it.
    pub fn open_locked(path: &Path) -> io::Result<Dir> {
        let fd = nix::fcntl::open(
            path,
            OFlag::O_RDONLY | OFlag::O_DIRECTORY | OFlag::O_CLOEXEC,
            Mode::empty(),
        )
        .map_err(errno)?;
        // SAFETY: flock(2) on a descriptor this function owns.
        let r = unsafe {
            libc::flock(
                std::os::fd::AsRawFd::as_raw_fd(&fd),
                libc::LOCK_EX | libc::LOCK_NB,
            )
        };
        if r < 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(Dir::of_fd(fd))
    }

    /// The directory `rel` below this one, reached without following any
    /// symlink and without leaving this directory (ELOOP, EXDEV, ENOTDIR
    /// when something on the way was swapped).
    pub fn sub(&self, rel: &Path) -> io::Result<Dir> {
        self.sub_crossing(rel, true)
    }

    /// [`Dir::sub`]; without `cross`, no mount is crossed on the way either
    /// (EXDEV).
    pub fn sub_crossing(&self, rel: &Path, cross: bool) -> io::Result<Dir> {
        if let At::Image(image, n) = &self.at {
            return Self::image_walk(image, *n, rel);
        }
        let mut cur: Option<Dir> = None;
        let mut piece: Vec<u8> = Vec::new();
        for c in rel.components() {
            let name = match c {
                Component::Normal(n) => n.as_bytes(),
                Component::RootDir | Component::CurDir => continue,
                _ => return Err(io::Error::from_raw_os_error(libc::EINVAL)),
            };
            if !piece.is_empty() && piece.len() + 1 + name.len() > WALK_PIECE {
                let from = cur.as_ref().unwrap_or(self);
                cur = Some(from.beneath(OsStr::from_bytes(&piece), cross)?);
                piece.clear();
            }
            if !piece.is_empty() {
                piece.push(b'/');
            }
            piece.extend_from_slice(name);
        }
        let from = cur.as_ref().unwrap_or(self);
        if piece.is_empty() {
            return from.beneath(OsStr::new("."), cross);
        }
        from.beneath(OsStr::from_bytes(&piece), cross)
    }

    /// The directory `name` in this one.
    pub fn child(&self, name: &OsStr) -> io::Result<Dir> {
        if let At::Image(image, n) = &self.at {
            return Self::image_walk(image, *n, Path::new(name));
        }
        self.beneath(name, true)
    }

    fn beneath(&self, rel: &OsStr, cross: bool) -> io::Result<Dir> {
        let mut resolve = ResolveFlag::RESOLVE_BENEATH
            | ResolveFlag::RESOLVE_NO_SYMLINKS
            | ResolveFlag::RESOLVE_NO_MAGICLINKS;
        if !cross {
            resolve |= ResolveFlag::RESOLVE_NO_XDEV;
        }
        let how = OpenHow::new()
            .flags(OFlag::O_PATH | OFlag::O_DIRECTORY | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC)
            .resolve(resolve);
        let fd = nix::fcntl::openat2(self.fd()?, rel, how).map_err(errno)?;
        Ok(Dir::of_fd(fd))
    }

    /// Whether `rel` (a relative path of several names) exists below this
    /// directory, found without following a symlink.
    pub fn has(&self, rel: &OsStr) -> bool {
        if let At::Image(image, n) = &self.at {
            let rel = Path::new(rel);
            let (Some(parent), Some(name)) = (rel.parent(), rel.file_name()) else {
                return false;
            };
            return Self::image_walk(image, *n, parent)
                .is_ok_and(|d| d.image().and_then(|(i, p)| i.child(p, name)).is_some());
        }
        let Ok(fd) = self.fd() else { return false };
        let how = OpenHow::new()
            .flags(OFlag::O_PATH | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC)
            .resolve(
                ResolveFlag::RESOLVE_BENEATH
                    | ResolveFlag::RESOLVE_NO_SYMLINKS
                    | ResolveFlag::RESOLVE_NO_MAGICLINKS,
            );
        nix::fcntl::openat2(fd, rel, how).is_ok()
    }

    /// Where `rel` (below this directory) is: its parent directory and its
    /// name; for `rel` empty, this directory itself as `.`.
    pub fn place_of(&self, rel: &Path, cross: bool) -> io::Result<Place> {
        match (rel.parent(), rel.file_name()) {
            (Some(parent), Some(name)) => Ok(Place {
                dir: self.sub_crossing(parent, cross)?,
                name: name.to_os_string(),
            }),
            _ => self.place(OsStr::new(".")),
        }
    }

    /// `name` in this directory.
    pub fn place(&self, name: &OsStr) -> io::Result<Place> {
        Ok(Place {
            dir: self.try_clone()?,
            name: name.to_os_string(),
        })
    }

    pub fn try_clone(&self) -> io::Result<Dir> {
        Ok(Dir {
            at: match &self.at {
                At::Fd(fd) => At::Fd(fd.try_clone()?),
                At::Image(image, n) => At::Image(image.clone(), *n),
            },
        })
    }

    /// The directory's own attributes.
    pub fn stat_self(&self) -> io::Result<Stat> {
        match &self.at {
            At::Image(image, n) => Ok(image.stat(*n)),
            At::Fd(fd) => sys::stat_at(fd.as_fd(), OsStr::new("")),
        }
    }

    /// The attributes of `name` (a symlink's own).
    pub fn stat(&self, name: &OsStr) -> io::Result<Stat> {
        match &self.at {
            At::Image(image, n) => Ok(image.stat(Self::image_child(image, *n, name)?)),
            At::Fd(fd) => sys::stat_at(fd.as_fd(), name),
        }
    }

    /// Opens `name` with `flags` (O_NOFOLLOW always: a symlink put there
    /// is refused, ELOOP).
    pub fn open_file(&self, name: &OsStr, flags: OFlag, mode: u32) -> io::Result<File> {
        let fd = nix::fcntl::openat(
            self.fd()?,
            name,
            flags | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC,
            Mode::from_bits_truncate(mode),
        )
        .map_err(errno)?;
        Ok(File::from(fd))
    }

    /// Opens `name`, which must be a regular file: opened without blocking
    /// (a FIFO or device put in its place cannot hold burrowfs up), then
    /// checked, and ESTALE when it is not a regular file or not the file
    /// `expect` (device, inode) names.
    pub fn open_regular(
        &self,
        name: &OsStr,
        flags: OFlag,
        expect: Option<(u64, u64)>,
    ) -> io::Result<LayerFile> {
        if let At::Image(..) = self.at {
            let f = self.open_read(name, flags)?;
            let st = f.stat()?;
            if expect.is_some_and(|id| id != (st.dev, st.ino)) {
                return Err(os_err(libc::ESTALE));
            }
            return Ok(f);
        }
        let f = self.open_file(name, flags | OFlag::O_NONBLOCK | OFlag::O_NOCTTY, 0)?;
        let st = sys::stat_at(f.as_fd(), OsStr::new(""))?;
        if st.mode & libc::S_IFMT != libc::S_IFREG
            || expect.is_some_and(|id| id != (st.dev, st.ino))
        {
            return Err(io::Error::from_raw_os_error(libc::ESTALE));
        }
        // (O_NONBLOCK changes nothing for a regular file: it stays.)
        Ok(f.into())
    }

    /// Opens `name` for reading (as [`Dir::open_file`]; in an image layer,
    /// a regular file only, and EROFS for any access that could write).
    pub fn open_read(&self, name: &OsStr, flags: OFlag) -> io::Result<LayerFile> {
        let At::Image(image, n) = &self.at else {
            return Ok(self.open_file(name, flags, 0)?.into());
        };
        let writes = OFlag::O_WRONLY | OFlag::O_RDWR | OFlag::O_CREAT | OFlag::O_TRUNC;
        if flags.intersects(writes) {
            return Err(os_err(libc::EROFS));
        }
        let node = Self::image_child(image, *n, name)?;
        match image.kind(node) {
            Kind::File => Ok(LayerFile::Image(ImageFile::open(image.clone(), node)?)),
            Kind::Symlink => Err(os_err(libc::ELOOP)),
            Kind::Dir => Err(os_err(libc::EISDIR)),
            _ => Err(os_err(libc::ENXIO)),
        }
    }

    /// statvfs(2) of the directory's filesystem (of an image layer's: of
    /// the filesystem holding the image file).
    pub fn statvfs(&self) -> nix::Result<nix::sys::statvfs::Statvfs> {
        match &self.at {
            At::Fd(fd) => nix::sys::statvfs::fstatvfs(fd),
            At::Image(image, _) => nix::sys::statvfs::fstatvfs(image.file()),
        }
    }

    /// The names in this directory (without `.` and `..`).
    pub fn names(&self) -> io::Result<Vec<OsString>> {
        if let At::Image(image, n) = &self.at {
            return Ok(image.names_in(*n).map(OsStr::to_os_string).collect());
        }
        let mut out = Vec::new();
        for e in self.list()?.iter() {
            let e = e.map_err(errno)?;
            let name = OsStr::from_bytes(e.file_name().to_bytes());
            if name != "." && name != ".." {
                out.push(name.to_os_string());
            }
        }
        Ok(out)
    }

    /// This directory opened for listing.
    fn list(&self) -> io::Result<nix::dir::Dir> {
        nix::dir::Dir::openat(
            self.fd()?,
            ".",
            OFlag::O_RDONLY | OFlag::O_DIRECTORY | OFlag::O_CLOEXEC,
            Mode::empty(),
        )
        .map_err(errno)
    }

    pub fn mkdir(&self, name: &OsStr, mode: u32) -> io::Result<()> {
        nix::sys::stat::mkdirat(self.fd()?, name, Mode::from_bits_truncate(mode)).map_err(errno)
    }

    pub fn mknod(&self, name: &OsStr, kind: SFlag, mode: u32, rdev: u64) -> io::Result<()> {
        nix::sys::stat::mknodat(self.fd()?, name, kind, Mode::from_bits_truncate(mode), rdev)
            .map_err(errno)
    }

    pub fn symlink(&self, target: &Path, name: &OsStr) -> io::Result<()> {
        nix::unistd::symlinkat(target, self.fd()?, name).map_err(errno)
    }

    pub fn read_link(&self, name: &OsStr) -> io::Result<PathBuf> {
        if let At::Image(image, n) = &self.at {
            return image.link_target(Self::image_child(image, *n, name)?);
        }
        nix::fcntl::readlinkat(self.fd()?, name)
            .map(PathBuf::from)
            .map_err(errno)
    }

    /// A new name `to_name` in `to` for the file `name` (a symlink itself,
    /// not its target).
    pub fn hard_link(&self, name: &OsStr, to: &Dir, to_name: &OsStr) -> io::Result<()> {
        nix::unistd::linkat(
            self.fd()?,
            name,
            to.fd()?,
            to_name,
            nix::fcntl::AtFlags::empty(),
        )
        .map_err(errno)
    }

    pub fn unlink(&self, name: &OsStr) -> io::Result<()> {
        nix::unistd::unlinkat(self.fd()?, name, nix::unistd::UnlinkatFlags::NoRemoveDir)
            .map_err(errno)
    }

    pub fn rmdir(&self, name: &OsStr) -> io::Result<()> {
        nix::unistd::unlinkat(self.fd()?, name, nix::unistd::UnlinkatFlags::RemoveDir)
            .map_err(errno)
    }

    /// renameat2(2) of `name` to `to_name` in `to`.
    pub fn rename(
        &self,
        name: &OsStr,
        to: &Dir,
        to_name: &OsStr,
        flags: nix::fcntl::RenameFlags,
    ) -> io::Result<()> {
        nix::fcntl::renameat2(self.fd()?, name, to.fd()?, to_name, flags).map_err(errno)
    }

    /// Xattr `key` of `name` (empty: of this directory).
    pub fn get_xattr(&self, name: &OsStr, key: &str) -> io::Result<Option<Vec<u8>>> {
        if let At::Image(image, n) = &self.at {
            // (An image layer has no xattrs: see crate::squashfs.)
            if !name.is_empty() {
                Self::image_child(image, *n, name)?;
            }
            return Ok(None);
        }
        sys::get_xattr_at(self.borrowed()?, name, OsStr::new(key))
    }

    pub fn set_xattr(&self, name: &OsStr, key: &str, value: &[u8]) -> io::Result<()> {
        sys::set_xattr_at(self.borrowed()?, name, OsStr::new(key), value, 0)
    }

    /// Removes `name`, and for a directory everything in it, without
    /// following a symlink anywhere. At most [`REMOVE_DEPTH`] levels deep
    /// (one descriptor each): a deeper tree (only someone writing the layer
    /// behind burrowfs' back makes one) is ELOOP and left in place.
    pub fn remove_any(&self, name: &OsStr) -> io::Result<()> {
        self.remove_at_depth(name, 0)
    }

    fn remove_at_depth(&self, name: &OsStr, depth: usize) -> io::Result<()> {
        match self.unlink(name) {
            Err(e) if e.raw_os_error() == Some(libc::EISDIR) => {}
            // POSIX lets unlink(2) of a directory say EPERM too.
            Err(e)
                if e.raw_os_error() == Some(libc::EPERM)
                    && self
                        .stat(name)
                        .is_ok_and(|s| s.mode & libc::S_IFMT == libc::S_IFDIR) => {}
            other => return other,
        }
        if depth >= REMOVE_DEPTH {
            return Err(io::Error::from_raw_os_error(libc::ELOOP));
        }
        let sub = self.child(name)?;
        for n in sub.names()? {
            sub.remove_at_depth(&n, depth + 1)?;
        }
        self.rmdir(name)
    }
}

/// How deep [`Dir::remove_any`] goes.
pub const REMOVE_DEPTH: usize = 128;

/// One object of a layer, held by an O_PATH descriptor: its owner, mode,
/// times and xattrs are changed on this inode, whatever is put at its name
/// meanwhile.
#[derive(Debug)]
pub struct Object {
    fd: OwnedFd,
}

impl Object {
    /// The file `f` is open on, as an object.
    pub fn of_file(f: &File) -> io::Result<Object> {
        Ok(Object {
            fd: f.try_clone()?.into(),
        })
    }

    pub fn stat(&self) -> io::Result<Stat> {
        sys::stat_at(self.fd.as_fd(), OsStr::new(""))
    }

    pub fn chown(&self, uid: Option<u32>, gid: Option<u32>) -> io::Result<()> {
        nix::unistd::fchownat(
            &self.fd,
            "",
            uid.map(Uid::from_raw),
            gid.map(Gid::from_raw),
            nix::fcntl::AtFlags::AT_EMPTY_PATH | nix::fcntl::AtFlags::AT_SYMLINK_NOFOLLOW,
        )
        .map_err(errno)
    }

    /// The mode (not of a symlink: EOPNOTSUPP).
    pub fn chmod(&self, mode: u32) -> io::Result<()> {
        sys::chmod_object(self.fd.as_fd(), mode & 0o7777)
    }

    pub fn set_times(
        &self,
        atime: &nix::sys::time::TimeSpec,
        mtime: &nix::sys::time::TimeSpec,
    ) -> io::Result<()> {
        sys::set_times_object(self.fd.as_fd(), atime, mtime)
    }

    pub fn set_xattr(&self, key: &OsStr, value: &[u8], flags: i32) -> io::Result<()> {
        sys::set_xattr_object(self.fd.as_fd(), key, value, flags)
    }
}

/// A name in a layer directory: where one file of a layer is.
#[derive(Debug)]
pub struct Place {
    pub dir: Dir,
    pub name: OsString,
}

impl Place {
    pub fn stat(&self) -> io::Result<Stat> {
        self.dir.stat(&self.name)
    }

    /// The object at this place, held (a symlink itself, not its target).
    pub fn hold(&self) -> io::Result<Object> {
        let fd = nix::fcntl::openat(
            self.dir.fd()?,
            self.name.as_os_str(),
            OFlag::O_PATH | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC,
            Mode::empty(),
        )
        .map_err(errno)?;
        Ok(Object { fd })
    }

    /// [`Place::hold`] for an object burrowfs has just made here, of any
    /// type: ESTALE for a non-directory with a second link (a hard link of
    /// a file outside the layers put in its place).
    pub fn hold_made(&self) -> io::Result<Object> {
        let object = self.hold()?;
        let st = object.stat()?;
        if st.mode & libc::S_IFMT != libc::S_IFDIR && st.nlink != 1 {
            return Err(io::Error::from_raw_os_error(libc::ESTALE));
        }
        Ok(object)
    }

    /// [`Place::hold`] for an object burrowfs has just made here, of type
    /// `mode & S_IFMT` (and the file `expect` names, when given): ESTALE
    /// when something else was put here since, such as a hard link of a
    /// file outside the layers (it would have a second link).
    pub fn hold_new(&self, mode: u32, expect: Option<(u64, u64)>) -> io::Result<Object> {
        let object = self.hold()?;
        let st = object.stat()?;
        let dir = st.mode & libc::S_IFMT == libc::S_IFDIR;
        if st.mode & libc::S_IFMT != mode & libc::S_IFMT
            || (!dir && st.nlink != 1)
            || expect.is_some_and(|id| id != (st.dev, st.ino))
        {
            return Err(io::Error::from_raw_os_error(libc::ESTALE));
        }
        Ok(object)
    }

    pub fn open(&self, flags: OFlag, mode: u32) -> io::Result<File> {
        self.dir.open_file(&self.name, flags, mode)
    }

    /// The file here, open for reading (see [`Dir::open_read`]).
    pub fn open_read(&self, flags: OFlag) -> io::Result<LayerFile> {
        self.dir.open_read(&self.name, flags)
    }

    pub fn read_link(&self) -> io::Result<PathBuf> {
        self.dir.read_link(&self.name)
    }

    pub fn get_xattr(&self, key: &OsStr) -> io::Result<Option<Vec<u8>>> {
        if self.dir.image().is_some() {
            return self.dir.get_xattr(&self.name, "");
        }
        sys::get_xattr_at(self.dir.borrowed()?, &self.name, key)
    }

    /// The names of the file's xattrs.
    pub fn list_xattrs(&self) -> io::Result<Vec<OsString>> {
        if self.dir.image().is_some() {
            self.dir.get_xattr(&self.name, "")?;
            return Ok(Vec::new());
        }
        let raw = sys::list_xattr_at(self.dir.borrowed()?, &self.name)?;
        Ok(raw
            .split(|b| *b == 0)
            .filter(|n| !n.is_empty())
            .map(|n| OsStr::from_bytes(n).to_os_string())
            .collect())
    }

    pub fn set_xattr(&self, key: &OsStr, value: &[u8], flags: i32) -> io::Result<()> {
        sys::set_xattr_at(self.dir.borrowed()?, &self.name, key, value, flags)
    }

    pub fn remove_xattr(&self, key: &OsStr) -> io::Result<()> {
        sys::remove_xattr_at(self.dir.borrowed()?, &self.name, key)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn scratch(tag: &str) -> PathBuf {
        let d = std::env::temp_dir().join(format!("burrowfs-dir-{tag}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&d);
        std::fs::create_dir_all(&d).unwrap();
        d
    }

    #[test]
    fn a_symlink_on_the_way_is_refused_not_followed() {
        let d = scratch("swap");
        std::fs::create_dir_all(d.join("layer/a")).unwrap();
        std::fs::create_dir_all(d.join("outside")).unwrap();
        std::os::unix::fs::symlink(d.join("outside"), d.join("layer/b")).unwrap();
        std::os::unix::fs::symlink("../outside", d.join("layer/c")).unwrap();
        let root = Dir::open(&d.join("layer")).unwrap();
        assert!(root.sub(Path::new("a")).is_ok());
        for rel in ["b", "c", "b/x", "../outside", "a/../../outside"] {
            let e = root.sub(Path::new(rel)).unwrap_err();
            assert!(
                matches!(
                    e.raw_os_error(),
                    Some(libc::ELOOP | libc::EXDEV | libc::EINVAL | libc::ENOTDIR)
                ),
                "{rel}: {e}"
            );
        }
        // A name that is a symlink is acted on as the symlink.
        let e = root
            .open_file(OsStr::new("b"), OFlag::O_RDONLY, 0)
            .unwrap_err();
        assert_eq!(e.raw_os_error(), Some(libc::ELOOP));
        assert!(root.stat(OsStr::new("b")).unwrap().mode & libc::S_IFMT == libc::S_IFLNK);
        std::fs::remove_dir_all(&d).unwrap();
    }

    #[test]
    fn paths_longer_than_path_max_are_walked_in_pieces() {
        let d = scratch("long");
        let name = "d".repeat(200);
        let root = Dir::open(&d).unwrap();
        let mut rel = PathBuf::new();
        let mut cur = root.try_clone().unwrap();
        for _ in 0..30 {
            cur.mkdir(OsStr::new(&name), 0o755).unwrap();
            cur = cur.child(OsStr::new(&name)).unwrap();
            rel.push(&name);
        }
        assert!(rel.as_os_str().len() > 4096);
        cur.mkdir(OsStr::new("leaf"), 0o755).unwrap();
        let deep = root.sub(&rel).unwrap();
        assert!(deep.stat(OsStr::new("leaf")).is_ok());
        root.remove_any(OsStr::new(&name)).unwrap();
        std::fs::remove_dir_all(&d).unwrap();
    }
}

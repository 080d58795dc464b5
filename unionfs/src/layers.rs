//! How the layers merge: lookup walks a path through the stack top-down,
//! stopping at whiteouts, non-directories and opaque directories, as
//! kernel overlayfs does; readdir merges the contributing directories.

use std::collections::HashSet;
use std::ffi::{OsStr, OsString};
use std::fs::Metadata;
use std::io;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::MetadataExt;
use std::path::{Component, Path, PathBuf};

use crate::format::{self, DirMark};
use crate::layer_dir::{Dir, Place};

/// The type of a file.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Kind {
    File,
    Dir,
    Symlink,
    Fifo,
    Socket,
    CharDevice,
    BlockDevice,
}

/// A file's attributes as a layer holds them, from either stat(2) form
/// (std's `Metadata`, or [`Stat`] from a listing's `fstatat`).
pub trait Attrs {
    fn st_dev(&self) -> u64;
    fn st_ino(&self) -> u64;
    fn st_mode(&self) -> u32;
    fn st_nlink(&self) -> u64;
    fn st_uid(&self) -> u32;
    fn st_gid(&self) -> u32;
    fn st_rdev(&self) -> u64;
    fn st_size(&self) -> u64;
    fn st_blksize(&self) -> u64;
    fn st_blocks(&self) -> u64;
    /// atime, mtime, ctime: seconds and nanoseconds.
    fn st_times(&self) -> [(i64, i64); 3];

    fn kind(&self) -> Kind {
        Kind::of_mode(self.st_mode())
    }
}

impl Attrs for Metadata {
    fn st_dev(&self) -> u64 {
        self.dev()
    }
    fn st_ino(&self) -> u64 {
        self.ino()
    }
    fn st_mode(&self) -> u32 {
        self.mode()
    }
    fn st_nlink(&self) -> u64 {
        self.nlink()
    }
    fn st_uid(&self) -> u32 {
        self.uid()
    }
    fn st_gid(&self) -> u32 {
        self.gid()
    }
    fn st_rdev(&self) -> u64 {
        self.rdev()
    }
    fn st_size(&self) -> u64 {
        self.size()
    }
    fn st_blksize(&self) -> u64 {
        self.blksize()
    }
    fn st_blocks(&self) -> u64 {
        self.blocks()
    }
    fn st_times(&self) -> [(i64, i64); 3] {
        [
            (self.atime(), self.atime_nsec()),
            (self.mtime(), self.mtime_nsec()),
            (self.ctime(), self.ctime_nsec()),
        ]
    }
}

/// What `fstatat(2)` says of a file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Stat {
    pub dev: u64,
    pub ino: u64,
    pub mode: u32,
    pub nlink: u64,
    pub uid: u32,
    pub gid: u32,
    pub rdev: u64,
    pub size: u64,
    pub blksize: u64,
    pub blocks: u64,
    pub times: [(i64, i64); 3],
    /// Whether it is the root of a mount (a mount point as seen from above).
    pub mount_root: bool,
}

impl Stat {
    pub fn from_raw(st: &libc::stat) -> Stat {
        Stat {
            dev: st.st_dev,
            ino: st.st_ino,
            mode: st.st_mode,
            nlink: st.st_nlink,
            uid: st.st_uid,
            gid: st.st_gid,
            rdev: st.st_rdev,
            size: st.st_size as u64,
            blksize: st.st_blksize as u64,
            blocks: st.st_blocks as u64,
            times: [
                (st.st_atime, st.st_atime_nsec),
                (st.st_mtime, st.st_mtime_nsec),
                (st.st_ctime, st.st_ctime_nsec),
            ],
            mount_root: false,
        }
    }
}

impl Attrs for Stat {
    fn st_dev(&self) -> u64 {
        self.dev
    }
    fn st_ino(&self) -> u64 {
        self.ino
    }
    fn st_mode(&self) -> u32 {
        self.mode
    }
    fn st_nlink(&self) -> u64 {
        self.nlink
    }
    fn st_uid(&self) -> u32 {
        self.uid
    }
    fn st_gid(&self) -> u32 {
        self.gid
    }
    fn st_rdev(&self) -> u64 {
        self.rdev
    }
    fn st_size(&self) -> u64 {
        self.size
    }
    fn st_blksize(&self) -> u64 {
        self.blksize
    }
    fn st_blocks(&self) -> u64 {
        self.blocks
    }
    fn st_times(&self) -> [(i64, i64); 3] {
        self.times
    }
}

impl Kind {
    /// The kind a `st_mode` names.
    pub fn of_mode(mode: u32) -> Kind {
        match mode & libc::S_IFMT {
            libc::S_IFDIR => Kind::Dir,
            libc::S_IFLNK => Kind::Symlink,
            libc::S_IFIFO => Kind::Fifo,
            libc::S_IFSOCK => Kind::Socket,
            libc::S_IFCHR => Kind::CharDevice,
            libc::S_IFBLK => Kind::BlockDevice,
            _ => Kind::File,
        }
    }

    pub fn of(ft: std::fs::FileType) -> Kind {
        use std::os::unix::fs::FileTypeExt;
        if ft.is_dir() {
            Kind::Dir
        } else if ft.is_symlink() {
            Kind::Symlink
        } else if ft.is_fifo() {
            Kind::Fifo
        } else if ft.is_socket() {
            Kind::Socket
        } else if ft.is_char_device() {
            Kind::CharDevice
        } else if ft.is_block_device() {
            Kind::BlockDevice
        } else {
            Kind::File
        }
    }
}

/// Why a stack of layers cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum StackError {
    #[error("no lower layer given (lowerdir= is empty)")]
    NoLower,
    #[error("{role} {path}: {source}")]
    Unusable {
        role: &'static str,
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("{role} {path}: not a directory")]
    NotDir { role: &'static str, path: PathBuf },
}

/// One layer: its directory as named (for messages and for telling which
/// lower directory holds the upper one) and the descriptor every access
/// to it starts from.
#[derive(Debug)]
struct Layer {
    path: PathBuf,
    root: Dir,
}

/// The layers, top first: the upper (when writable) then the lowers in
/// `lowerdir=` order (leftmost on top).
#[derive(Debug)]
pub struct Stack {
    layers: Vec<Layer>,
    has_upper: bool,
    /// The layers merging into the root (fixed: lower layers never change).
    root: Vec<usize>,
    /// Files and directories left out of the lower layers, by device and
    /// inode (see [`Stack::hide`]).
    hidden: HashSet<(u64, u64)>,
    /// Top-level directories of the bottom layer shown empty (see
    /// [`Stack::seal_top`]).
    sealed_top: HashSet<OsString>,
}

/// What a path resolves to.
#[derive(Debug, Clone)]
pub struct Entry {
    /// Index of the layer the entry comes from (the topmost one holding it).
    pub layer: usize,
    pub kind: Kind,
    pub meta: Stat,
    /// For a directory: every layer whose directory merges into it, top
    /// first, ending at the first opaque one. Empty for a mount point of a
    /// lower layer that the union does not cross (an empty directory).
    pub dir_layers: Vec<usize>,
}

/// One name of a merged directory listing.
#[derive(Debug, Clone)]
pub struct DirEntry {
    pub name: OsString,
    pub kind: Kind,
    pub layer: usize,
    /// Device and inode number of the entry in its layer.
    pub dev_ino: (u64, u64),
    /// Its link count in its layer.
    pub nlink: u64,
    /// Its attributes in its layer, as the listing found them.
    pub meta: Stat,
}

/// What a lower layer shows of a mount below its root.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum MountView {
    /// Its contents, as part of the layer.
    Crossed,
    /// An empty directory (or, for a file mounted there, nothing).
    Sealed,
}

/// Filesystems a lower layer's tree is walked into when one is mounted
/// below its root (`statfs` magic numbers): files stored on a local disk.
const DISK_FILESYSTEMS: &[i64] = &[
    0xEF53,      // ext2, ext3, ext4
    0x5846_5342, // xfs
    0x9123_683E, // btrfs
    0xF2F5_2010, // f2fs
    0xCA45_1A4E, // bcachefs
    0x2FC1_2FC1, // zfs
    0x7371_7368, // squashfs
    0xE0F5_E1E2, // erofs
];

/// Top-level directories whose mounts a lower layer never shows, whatever
/// their filesystem: removable media and other users' mounts (`media`,
/// `mnt`) and per-boot state (`run`).
const SEALED_TOP: &[&str] = &["media", "mnt", "run"];

impl Stack {
    /// Opens every layer, which must be a readable directory.
    pub fn new(lowers: Vec<PathBuf>, upper: Option<PathBuf>) -> Result<Stack, StackError> {
        if lowers.is_empty() {
            return Err(StackError::NoLower);
        }
        let has_upper = upper.is_some();
        let mut layers = Vec::with_capacity(lowers.len() + 1);
        let roles = upper
            .into_iter()
            .map(|u| ("upperdir", u))
            .chain(lowers.into_iter().map(|l| ("lowerdir", l)));
        for (role, path) in roles {
            let unusable = |source| StackError::Unusable {
                role,
                path: path.clone(),
                source,
            };
            let meta = std::fs::metadata(&path).map_err(unusable)?;
            if !meta.is_dir() {
                return Err(StackError::NotDir { role, path });
            }
            let root = Dir::open(&path).map_err(unusable)?;
            root.list().map_err(unusable)?;
            layers.push(Layer { path, root });
        }
        let mut stack = Stack {
            layers,
            has_upper,
            root: Vec::new(),
            hidden: Default::default(),
            sealed_top: Default::default(),
        };
        stack.root = stack.root_layers();
        Ok(stack)
    }

    /// Leaves `paths` (files or directories, as they are now) out of the
    /// lower layers: the union shows nothing there. burrow hides what the
    /// sandbox can change behind the union's back (its read-write bind
    /// sources, the upper and work directories) where the host's / is a
    /// lower layer. They are told apart by device and inode, so renaming
    /// them later changes nothing.
    pub fn hide(&mut self, paths: impl IntoIterator<Item = PathBuf>) {
        for p in paths {
            if let Ok(m) = p.symlink_metadata() {
                self.hidden.insert((m.dev(), m.ino()));
            }
        }
    }

    /// Shows the bottom layer's top-level directories `names` as empty
    /// directories. burrow seals `proc`, `sys`, `dev`, `tmp` and `run` when
    /// the bottom layer is the host's /, so that the sandbox's own
    /// replacements are the only ones it can reach, even through a bind
    /// mount of the union's root.
    pub fn seal_top(&mut self, names: impl IntoIterator<Item = OsString>) {
        self.sealed_top.extend(names);
    }

    /// Whether `name` in directory `parent` of layer `layer` is a sealed
    /// top-level directory.
    fn is_sealed_top(&self, layer: usize, parent: &Path, name: &OsStr) -> bool {
        !self.sealed_top.is_empty()
            && layer + 1 == self.layers.len()
            && parent.as_os_str().is_empty()
            && self.sealed_top.contains(name)
    }

    fn is_hidden(&self, layer: usize, meta: &Stat) -> bool {
        !self.hidden.is_empty()
            && Some(layer) != self.upper()
            && self.hidden.contains(&(meta.dev, meta.ino))
    }

    /// Directory of layer `idx`, as it was named.
    pub fn layer_dir(&self, idx: usize) -> &Path {
        &self.layers[idx].path
    }

    /// The root descriptor of layer `idx`.
    pub fn layer_root(&self, idx: usize) -> &Dir {
        &self.layers[idx].root
    }

    /// Directory `rel` (relative to the union's root) in layer `idx`,
    /// reached from the layer's root without following a symlink.
    pub fn dir(&self, idx: usize, rel: &Path) -> io::Result<Dir> {
        self.layers[idx].root.sub(rel)
    }

    /// Where `rel` is in layer `idx`: its parent directory there, and its
    /// name.
    pub fn place(&self, idx: usize, rel: &Path) -> io::Result<Place> {
        self.layers[idx].root.place_of(rel)
    }

    /// Where `name` in `parent` must be if it exists, when `dirs` (the
    /// layers merging into `parent`) is a single layer: nothing above can
    /// hide it and nothing below can show through.
    pub fn only_place(&self, dirs: &[usize], parent: &Path, name: &OsStr) -> Option<Place> {
        let [l] = dirs else { return None };
        if !self.hidden.is_empty() && Some(*l) != self.upper() {
            return None; // the name may be hidden: a lookup decides
        }
        Some(Place {
            dir: self.dir(*l, parent).ok()?,
            name: name.to_os_string(),
        })
    }

    /// Number of layers.
    pub fn len(&self) -> usize {
        self.layers.len()
    }

    pub fn is_empty(&self) -> bool {
        self.layers.is_empty()
    }

    /// Index of the upper layer, when there is one.
    pub fn upper(&self) -> Option<usize> {
        self.has_upper.then_some(0)
    }

    /// Whether a layer below the upper shows an entry at `rel`: removing
    /// `rel` from the union then needs a whiteout.
    pub fn lower_has(&self, rel: &Path) -> bool {
        let (Some(parent), Some(name)) = (rel.parent(), rel.file_name()) else {
            return false;
        };
        let Ok(dir) = self.lookup(parent) else {
            return false;
        };
        dir.kind == Kind::Dir && self.lower_has_in(&dir.dir_layers, parent, name)
    }

    /// [`Stack::lower_has`] for `name` in directory `parent`, which merges
    /// the layers `dirs`.
    pub fn lower_has_in(&self, dirs: &[usize], parent: &Path, name: &OsStr) -> bool {
        let lowers: Vec<usize> = dirs
            .iter()
            .copied()
            .filter(|&l| Some(l) != self.upper())
            .collect();
        let Ok(opened) = self.open_dirs(&lowers, parent) else {
            return false;
        };
        self.lower_shows(&opened, parent, name)
    }

    /// [`Stack::lower_has_in`] for directories already open.
    pub fn lower_shows(&self, opened: &[(usize, Dir)], parent: &Path, name: &OsStr) -> bool {
        let mut lowers = opened.iter().filter(|(l, _)| Some(*l) != self.upper());
        let Some(first) = lowers.next() else {
            return false;
        };
        // (The first lower and those below it: they are contiguous.)
        let at = opened.iter().position(|(l, _)| *l == first.0).unwrap_or(0);
        matches!(
            self.resolve_in(&opened[at..], parent, name),
            Ok((Some(_), _))
        )
    }

    /// Layers `dirs`' directories at `rel`; a layer that has none there
    /// (gone since) is left out.
    pub fn open_dirs(&self, dirs: &[usize], rel: &Path) -> io::Result<Vec<(usize, Dir)>> {
        let mut out = Vec::with_capacity(dirs.len());
        for &l in dirs {
            match self.dir(l, rel) {
                Ok(d) => out.push((l, d)),
                Err(e) if gone(&e) => {}
                Err(e) => return Err(e),
            }
        }
        Ok(out)
    }

    /// Resolves `rel` (relative to the union's root) to the entry that the
    /// union shows there, walking every layer one name at a time.
    pub fn lookup(&self, rel: &Path) -> io::Result<Entry> {
        let names = normal_components(rel)?;
        let mut dirs: Vec<(usize, Dir)> = Vec::with_capacity(self.root.len());
        for &l in &self.root {
            dirs.push((l, self.layers[l].root.try_clone()?));
        }
        let mut cur = PathBuf::new();
        for (i, name) in names.iter().enumerate() {
            let (top, below) = self.resolve_in(&dirs, &cur, name)?;
            let Some((layer, meta)) = top else {
                return Err(io::Error::from_raw_os_error(libc::ENOENT));
            };
            let kind = meta.kind();
            if i + 1 == names.len() {
                let dir_layers = if kind == Kind::Dir { below } else { Vec::new() };
                return Ok(Entry {
                    layer,
                    kind,
                    meta,
                    dir_layers,
                });
            }
            if kind != Kind::Dir {
                return Err(io::Error::from_raw_os_error(libc::ENOTDIR));
            }
            let mut next = Vec::with_capacity(below.len());
            for l in below {
                let parent = &dirs.iter().find(|(k, _)| *k == l).expect("merged layer").1;
                match parent.child(name) {
                    Ok(d) => next.push((l, d)),
                    Err(e) if gone(&e) => {}
                    Err(e) => return Err(e),
                }
            }
            dirs = next;
            cur.push(name);
        }
        let meta = self.layers[self.root[0]].root.stat_self()?;
        Ok(Entry {
            layer: self.root[0],
            kind: Kind::Dir,
            meta,
            dir_layers: self.root.clone(),
        })
    }

    /// Resolves `name` in directory `parent_rel`, given the layers `dirs`
    /// that merge into that directory (its [`Entry::dir_layers`]): one step
    /// of [`Stack::lookup`], for callers that keep directories' layers.
    pub fn lookup_child(
        &self,
        dirs: &[usize],
        parent_rel: &Path,
        name: &OsStr,
    ) -> io::Result<Entry> {
        let opened = self.open_dirs(dirs, parent_rel)?;
        self.entry_in(&opened, parent_rel, name)
    }

    /// [`Stack::lookup_child`] in directories already open (from
    /// [`Stack::open_dirs`]).
    pub fn entry_in(
        &self,
        opened: &[(usize, Dir)],
        parent_rel: &Path,
        name: &OsStr,
    ) -> io::Result<Entry> {
        let (top, below) = self.resolve_in(opened, parent_rel, name)?;
        let Some((layer, meta)) = top else {
            return Err(io::Error::from_raw_os_error(libc::ENOENT));
        };
        let kind = meta.kind();
        let dir_layers = if kind == Kind::Dir { below } else { Vec::new() };
        Ok(Entry {
            layer,
            kind,
            meta,
            dir_layers,
        })
    }

    /// The layers merging into the root: all of them down to the first
    /// whose root is opaque.
    fn root_layers(&self) -> Vec<usize> {
        let mut out = Vec::new();
        for (i, layer) in self.layers.iter().enumerate() {
            out.push(i);
            if i > 0 && format::dir_mark(&layer.root, OsStr::new(""), true) == DirMark::Opaque {
                break;
            }
        }
        out
    }

    /// What lower layer `layer` shows of `name` in `dir` (at `parent` in
    /// the union), which is the root of a mount: see [`DISK_FILESYSTEMS`]
    /// and [`SEALED_TOP`].
    fn mount_view(&self, dir: &Dir, parent: &Path, name: &OsStr) -> MountView {
        let top = parent.components().next().map_or(name, |c| c.as_os_str());
        if SEALED_TOP.iter().any(|t| top == *t) {
            return MountView::Sealed;
        }
        let disk = dir
            .child(name)
            .ok()
            .and_then(|d| nix::sys::statfs::fstatfs(&d).ok())
            .is_some_and(|fs| DISK_FILESYSTEMS.contains(&fs.filesystem_type().0));
        if disk {
            MountView::Crossed
        } else {
            MountView::Sealed
        }
    }

    /// Looks `name` up in each directory of `dirs` (the layers merging into
    /// directory `parent`, top down). Returns the visible entry and, when
    /// it is a directory, the layers whose directories merge into it.
    #[allow(clippy::type_complexity)]
    fn resolve_in(
        &self,
        dirs: &[(usize, Dir)],
        parent: &Path,
        name: &OsStr,
    ) -> io::Result<(Option<(usize, Stat)>, Vec<usize>)> {
        let mut top: Option<(usize, Stat)> = None;
        let mut merged = Vec::new();
        for (l, pdir) in dirs {
            let l = *l;
            let lower = Some(l) != self.upper();
            let meta = match pdir.stat(name) {
                Err(e) if e.kind() == io::ErrorKind::NotFound => {
                    if lower && has_oci_whiteout(pdir, name) {
                        break;
                    }
                    continue;
                }
                Err(e) => return Err(e),
                Ok(meta) => meta,
            };
            if self.is_hidden(l, &meta) {
                continue;
            }
            if format::is_whiteout(pdir, name, &meta, || {
                format::dir_mark(pdir, OsStr::new(""), false)
            }) {
                break;
            }
            let sealed = lower
                && (self.is_sealed_top(l, parent, name)
                    || meta.mount_root && self.mount_view(pdir, parent, name) == MountView::Sealed);
            if meta.kind() != Kind::Dir {
                // A non-directory hides everything below it, and a
                // directory above hides it.
                if top.is_none() && !sealed {
                    top = Some((l, meta));
                }
                break;
            }
            if top.is_none() {
                top = Some((l, meta));
            }
            if sealed {
                // An empty directory, and nothing below shows through.
                break;
            }
            merged.push(l);
            if format::dir_mark(pdir, name, lower) == DirMark::Opaque {
                break;
            }
        }
        Ok((top, merged))
    }

    /// The merged listing of directory `rel`, sorted by name, without `.`,
    /// `..`, whiteouts and the names they hide.
    pub fn read_dir(&self, rel: &Path) -> io::Result<Vec<DirEntry>> {
        let entry = self.lookup(rel)?;
        if entry.kind != Kind::Dir {
            return Err(io::Error::from_raw_os_error(libc::ENOTDIR));
        }
        self.read_dir_in(&entry.dir_layers, rel)
    }

    /// [`Stack::read_dir`] for a directory whose merging layers are known.
    pub fn read_dir_in(&self, dir_layers: &[usize], rel: &Path) -> io::Result<Vec<DirEntry>> {
        let mut seen: HashSet<OsString> = HashSet::new();
        let mut out = Vec::new();
        for (l, dir) in self.open_dirs(dir_layers, rel)? {
            let oci = Some(l) != self.upper();
            // (Only asked for an empty file: whether it is an xattr whiteout.)
            let mark = || format::dir_mark(&dir, OsStr::new(""), false);
            let mut hidden_below = Vec::new();
            // The directory open, its entries stat'ed relative to it.
            let mut handle = dir.list()?;
            let fd = std::os::fd::AsRawFd::as_raw_fd(&handle);
            // SAFETY: `handle` owns the descriptor and outlives `dirfd`.
            let dirfd = unsafe { std::os::fd::BorrowedFd::borrow_raw(fd) };
            for item in handle.iter() {
                let item = item.map_err(io::Error::from)?;
                let name = OsStr::from_bytes(item.file_name().to_bytes());
                if name == "." || name == ".." {
                    continue;
                }
                let text = name.to_string_lossy();
                if oci && text == format::OCI_OPAQUE_MARKER {
                    continue;
                }
                if let Some(hidden) = format::oci_hidden_name(&text).filter(|_| oci) {
                    hidden_below.push(OsString::from(hidden));
                    continue;
                }
                if seen.contains(name) {
                    continue;
                }
                let meta = match crate::sys::stat_at(dirfd, name) {
                    Ok(m) => m,
                    // Gone between getdents and lstat (a live lower layer).
                    Err(e) if e.kind() == io::ErrorKind::NotFound => continue,
                    Err(e) => return Err(e),
                };
                if self.is_hidden(l, &meta) {
                    continue;
                }
                if oci
                    && meta.mount_root
                    && meta.kind() != Kind::Dir
                    && self.mount_view(&dir, rel, name) == MountView::Sealed
                {
                    continue;
                }
                let name = name.to_os_string();
                seen.insert(name.clone());
                if format::is_whiteout(&dir, &name, &meta, mark) {
                    continue;
                }
                out.push(DirEntry {
                    name,
                    kind: meta.kind(),
                    layer: l,
                    dev_ino: (meta.dev, meta.ino),
                    nlink: meta.nlink,
                    meta,
                });
            }
            seen.extend(hidden_below);
        }
        out.sort_by(|a, b| a.name.cmp(&b.name));
        Ok(out)
    }
}

/// Whether a layer's directory is no longer there to walk into: gone, or
/// replaced by a symlink or a non-directory since it was looked up. That
/// layer then adds nothing to the directory, as when it never had it.
fn gone(e: &io::Error) -> bool {
    matches!(
        e.raw_os_error(),
        Some(libc::ENOENT | libc::ELOOP | libc::ENOTDIR)
    )
}

fn has_oci_whiteout(dir: &Dir, name: &OsStr) -> bool {
    let mut marker = OsString::from(format::OCI_WHITEOUT_PREFIX);
    marker.push(name);
    dir.stat(&marker).is_ok()
}

/// The names of `rel`, refusing `..` and absolute prefixes beyond `/`.
fn normal_components(rel: &Path) -> io::Result<Vec<&OsStr>> {
    let mut out = Vec::new();
    for c in rel.components() {
        match c {
            Component::Normal(n) => out.push(n),
            Component::RootDir | Component::CurDir => {}
            _ => return Err(io::Error::from_raw_os_error(libc::EINVAL)),
        }
    }
    Ok(out)
}

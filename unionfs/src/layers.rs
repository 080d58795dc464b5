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
use crate::idmap::OVERFLOW_ID;
use crate::layer_dir::{Dir, Place};
use crate::mounts::{self, MountView, MountWatch};
use crate::override_stat::{self, Override};

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
    pub fn from_metadata(m: &Metadata) -> Stat {
        Stat {
            dev: m.dev(),
            ino: m.ino(),
            mode: m.mode(),
            nlink: m.nlink(),
            uid: m.uid(),
            gid: m.gid(),
            rdev: m.rdev(),
            size: m.size(),
            blksize: m.blksize(),
            blocks: m.blocks(),
            times: [
                (m.atime(), m.atime_nsec()),
                (m.mtime(), m.mtime_nsec()),
                (m.ctime(), m.ctime_nsec()),
            ],
            mount_root: false,
        }
    }

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
    #[error(transparent)]
    Image(#[from] crate::squashfs::ImageError),
    #[error(transparent)]
    Sif(#[from] crate::sif::SifError),
}

/// A lower layer as named: a directory, or an image file read in place
/// (`squashfs:FILE`, or `sif:FILE` for the squashfs partition of an
/// Apptainer SIF).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Lower {
    Dir(PathBuf),
    Squashfs(PathBuf),
    Sif(PathBuf),
}

impl Lower {
    /// `squashfs:FILE`, `sif:FILE`, or a directory.
    pub fn parse(s: impl Into<PathBuf>) -> Lower {
        let s: PathBuf = s.into();
        let bytes = s.as_os_str().as_bytes();
        if let Some(rest) = bytes.strip_prefix(b"squashfs:") {
            Lower::Squashfs(PathBuf::from(OsStr::from_bytes(rest)))
        } else if let Some(rest) = bytes.strip_prefix(b"sif:") {
            Lower::Sif(PathBuf::from(OsStr::from_bytes(rest)))
        } else {
            Lower::Dir(s)
        }
    }

    /// The directory or image file.
    pub fn path(&self) -> &Path {
        match self {
            Lower::Dir(p) | Lower::Squashfs(p) | Lower::Sif(p) => p,
        }
    }

    /// The same kind of layer at `path`.
    pub fn at(&self, path: PathBuf) -> Lower {
        match self {
            Lower::Dir(_) => Lower::Dir(path),
            Lower::Squashfs(_) => Lower::Squashfs(path),
            Lower::Sif(_) => Lower::Sif(path),
        }
    }

    /// Whether it is an image file.
    pub fn is_image(&self) -> bool {
        !matches!(self, Lower::Dir(_))
    }
}

impl Lower {
    /// For an image file: that it holds an image the union can read (its
    /// SIF header, the squashfs superblock), to refuse a wrong file early.
    pub fn check(&self) -> Result<(), StackError> {
        match self {
            Lower::Dir(_) => Ok(()),
            Lower::Squashfs(p) => Ok(crate::squashfs::Image::check(p, 0, None)?),
            Lower::Sif(p) => {
                let (offset, end) = crate::sif::squashfs_partition(p)?;
                Ok(crate::squashfs::Image::check(p, offset, Some(end))?)
            }
        }
    }
}

impl From<PathBuf> for Lower {
    fn from(p: PathBuf) -> Lower {
        Lower::Dir(p)
    }
}

impl std::fmt::Display for Lower {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Lower::Dir(p) => write!(f, "{}", p.display()),
            Lower::Squashfs(p) => write!(f, "squashfs:{}", p.display()),
            Lower::Sif(p) => write!(f, "sif:{}", p.display()),
        }
    }
}

/// One layer: its directory as named (for messages and for telling which
/// lower directory holds the upper one) and the descriptor every access
/// to it starts from.
#[derive(Debug)]
struct Layer {
    path: PathBuf,
    root: Dir,
    image: bool,
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
    /// The filesystems mounted below the lower layers.
    mounts: std::sync::Arc<MountWatch>,
    /// Whether lower-layer owners without an id here show as root (see
    /// [`Stack::show_unmapped_as_root`]): for uids, for gids.
    unmapped_as_root: (bool, bool),
    /// The upper layer's device, read once.
    upper_dev: Option<u64>,
    /// Whether files' `user.containers.override_stat` xattrs say how they
    /// show (see [`Stack::present_override_stat`]).
    override_stat: bool,
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

impl Stack {
    /// Opens every layer, which must be a readable directory.
    pub fn new<L: Into<Lower>>(
        lowers: impl IntoIterator<Item = L>,
        upper: Option<PathBuf>,
    ) -> Result<Stack, StackError> {
        let mut stack = Stack::lowers(lowers)?;
        if let Some(upper) = upper {
            stack.add_upper(upper)?;
        }
        Ok(stack)
    }

    /// The lower layers alone (read-only), to which [`Stack::add_upper`]
    /// may add the upper one: a caller that learns its upper layer late
    /// opens the lowers, and reads the mount table, before.
    pub fn lowers<L: Into<Lower>>(
        lowers: impl IntoIterator<Item = L>,
    ) -> Result<Stack, StackError> {
        let lowers: Vec<Lower> = lowers.into_iter().map(Into::into).collect();
        if lowers.is_empty() {
            return Err(StackError::NoLower);
        }
        let mut layers = Vec::with_capacity(lowers.len() + 1);
        for lower in lowers {
            let lower_is_sif = matches!(lower, Lower::Sif(_));
            let path = match lower {
                Lower::Dir(path) => path,
                Lower::Squashfs(path) | Lower::Sif(path) => {
                    // A SIF's squashfs is one partition of the file.
                    let (offset, end) = match lower_is_sif {
                        true => {
                            let (offset, end) = crate::sif::squashfs_partition(&path)?;
                            (offset, Some(end))
                        }
                        false => (0, None),
                    };
                    let image = crate::squashfs::Image::open(&path, offset, end)?;
                    layers.push(Layer {
                        root: Dir::image_root(image),
                        path,
                        image: true,
                    });
                    continue;
                }
            };
            let root = Self::open_dir("lowerdir", &path)?;
            layers.push(Layer {
                path,
                root,
                image: false,
            });
        }
        let roots = layers
            .iter()
            .map(|l| (!l.image).then(|| l.path.clone()))
            .collect();
        let mut stack = Stack {
            layers,
            has_upper: false,
            root: Vec::new(),
            hidden: Default::default(),
            sealed_top: Default::default(),
            mounts: std::sync::Arc::new(MountWatch::new(roots)),
            unmapped_as_root: (false, false),
            upper_dev: None,
            override_stat: false,
        };
        stack.root = stack.root_layers();
        Ok(stack)
    }

    /// Puts the writable layer `upper` on top of the lowers, once, before
    /// the union is served.
    pub fn add_upper(&mut self, upper: PathBuf) -> Result<(), StackError> {
        assert!(!self.has_upper, "a stack has one upper layer");
        let root = Self::open_dir("upperdir", &upper)?;
        let dev = root
            .stat_self()
            .map_err(|source| StackError::Unusable {
                role: "upperdir",
                path: upper.clone(),
                source,
            })?
            .dev;
        self.mounts.add_top_layer();
        self.layers.insert(
            0,
            Layer {
                path: upper,
                root,
                image: false,
            },
        );
        self.has_upper = true;
        self.upper_dev = Some(dev);
        self.root = self.root_layers();
        Ok(())
    }

    /// The directory `path`, which must be one and readable, opened as a
    /// layer's root.
    fn open_dir(role: &'static str, path: &Path) -> Result<Dir, StackError> {
        let unusable = |source| StackError::Unusable {
            role,
            path: path.to_path_buf(),
            source,
        };
        let meta = std::fs::metadata(path).map_err(unusable)?;
        if !meta.is_dir() {
            return Err(StackError::NotDir {
                role,
                path: path.to_path_buf(),
            });
        }
        let root = Dir::open(path).map_err(unusable)?;
        root.names().map_err(unusable)?;
        Ok(root)
    }

    /// Leaves `paths` (files or directories, as they are now) out of the
    /// lower layers: the union shows nothing of a file there, and a
    /// directory as an empty one. burrow hides what the
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

    /// Shows the lower layers' objects whose owner (uid, gid: each as
    /// asked) has no id in this process's user namespace as root's. The
    /// kernel reports such an owner as [`OVERFLOW_ID`] (the
    /// default overflowuid and overflowgid); burrow's server
    /// runs in the sandbox's user namespace, where the host's root (and
    /// every host user but the caller) has no id, so that the host's
    /// system shows as root's inside, as on an ordinary machine. It
    /// changes only what is shown and what a copy-up is given: reading a
    /// lower object still takes this process's own access on the host.
    /// A lower object owned by an id that this namespace does map to 65534
    /// cannot be told apart, and shows as root's too.
    pub fn show_unmapped_as_root(&mut self, uid: bool, gid: bool) {
        self.unmapped_as_root = (uid, gid);
    }

    /// Shows files as their `user.containers.override_stat` xattr says
    /// (fuse-overlayfs' `xattr_permissions=2`), in every layer: the owners,
    /// modes and device nodes of an image that its unprivileged unpacker
    /// could not make on disk. Copy-up keeps the xattr, and a chown or
    /// chmod of a file that has one changes the xattr.
    pub fn present_override_stat(&mut self, on: bool) {
        self.override_stat = on;
    }

    /// Whether [`Stack::present_override_stat`] is on.
    pub fn presents_override_stat(&self) -> bool {
        self.override_stat
    }

    /// `meta` of `name` in `dir` (empty: `dir` itself), of layer `l`, with
    /// its owner, mode and type as the union shows them.
    pub fn owned(&self, l: usize, dir: &Dir, name: &OsStr, mut meta: Stat) -> Stat {
        // (An image's owners are its own: no kernel mapped them.)
        if Some(l) != self.upper() && !self.layers[l].image {
            (meta.uid, meta.gid) = self.lower_owner(meta.uid, meta.gid);
        }
        if self.override_stat && !meta.mount_root && meta.kind() != Kind::Symlink {
            if let Some(o) = self.override_of(dir, name) {
                o.apply(&mut meta);
            }
        }
        meta
    }

    /// The override xattr of `name` in `dir`, when presented and valid.
    pub fn override_of(&self, dir: &Dir, name: &OsStr) -> Option<Override> {
        if !self.override_stat {
            return None;
        }
        let value = dir.get_xattr(name, override_stat::XATTR).ok()??;
        Override::parse(&value)
    }

    /// [`Stack::override_of`] for an open file.
    pub fn override_of_file(&self, file: &std::fs::File) -> Option<Override> {
        use xattr::FileExt;
        if !self.override_stat {
            return None;
        }
        Override::parse(&file.get_xattr(override_stat::XATTR).ok()??)
    }

    /// A lower-layer owner as the union shows it.
    pub fn lower_owner(&self, uid: u32, gid: u32) -> (u32, u32) {
        let (u, g) = self.unmapped_as_root;
        (
            if u && uid == OVERFLOW_ID { 0 } else { uid },
            if g && gid == OVERFLOW_ID { 0 } else { gid },
        )
    }

    /// A lower-layer owner as the union shows it, for an open file on
    /// device `dev` whose layer is not known: taken as a lower one's unless
    /// it is on the upper layer's device (a lower layer on that device, as
    /// with `--upper` beside its lowers, then shows its own ids).
    pub fn file_owner(&self, dev: u64, uid: u32, gid: u32) -> (u32, u32) {
        if self.unmapped_as_root == (false, false)
            || self.upper_dev == Some(dev)
            || crate::squashfs::is_image_dev(dev)
        {
            (uid, gid)
        } else {
            self.lower_owner(uid, gid)
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

    /// Whether layer `idx` is an image file's.
    pub fn is_image(&self, idx: usize) -> bool {
        self.layers[idx].image
    }

    /// Directory (or image file) of layer `idx`, as it was named.
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
        self.layers[idx].root.sub_crossing(rel, self.may_cross(idx))
    }

    /// Whether walks in layer `idx` may cross into mounted filesystems:
    /// only in a lower layer that shows one (the upper layer and every
    /// other lower are walked with RESOLVE_NO_XDEV, so a mount made later
    /// below them is never entered).
    fn may_cross(&self, idx: usize) -> bool {
        Some(idx) != self.upper() && self.mounts.has_any(idx).1
    }

    /// Where `rel` is in layer `idx`: its parent directory there, and its
    /// name.
    pub fn place(&self, idx: usize, rel: &Path) -> io::Result<Place> {
        self.layers[idx].root.place_of(rel, self.may_cross(idx))
    }

    /// The one layer where every name in a directory merging the layers
    /// `dirs` must be if it exists, when that is a single layer: nothing
    /// above can hide a name and nothing below can show through.
    pub fn sole_layer(&self, dirs: &[usize]) -> Option<usize> {
        let [l] = dirs else { return None };
        if !self.hidden.is_empty() && Some(*l) != self.upper() {
            return None; // the name may be hidden: a lookup decides
        }
        Some(*l)
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
                match parent.sub_crossing(Path::new(name), self.may_cross(l)) {
                    Ok(d) => next.push((l, d)),
                    Err(e) if gone(&e) => {}
                    Err(e) => return Err(e),
                }
            }
            dirs = next;
            cur.push(name);
        }
        let root = &self.layers[self.root[0]].root;
        let meta = self.owned(self.root[0], root, OsStr::new(""), root.stat_self()?);
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

    /// What lower layer `l` shows at `name` in `parent` when a filesystem
    /// is mounted there (see [`crate::mounts`]).
    fn mount_at(&self, l: usize, parent: &Path, name: &OsStr) -> Option<MountView> {
        if Some(l) == self.upper() || !self.mounts.has_any(l).0 {
            return None;
        }
        self.mounts.at(l, &mounts::child_path(parent, name))
    }

    /// The entry an untouched mount stands for: an empty directory of
    /// root's, with the mount's id for an identity (on no real device).
    fn untouched_mount(id: u64) -> Stat {
        Stat {
            dev: 0,
            ino: id,
            mode: libc::S_IFDIR | 0o755,
            nlink: 2,
            uid: 0,
            gid: 0,
            rdev: 0,
            size: 0,
            blksize: 4096,
            blocks: 0,
            times: [(0, 0); 3],
            mount_root: true,
        }
    }

    /// Changes whenever the mounts below the lower layers do.
    pub fn mounts_generation(&self) -> u64 {
        self.mounts.generation()
    }

    /// Follows the mount table from now on (once the process will not fork
    /// again); a second call does nothing.
    pub fn watch_mounts(&self) {
        self.mounts.watch();
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
            let mount = self.mount_at(l, parent, name);
            if let Some(MountView::Untouched(id)) = mount {
                // Never asked: an empty directory, hiding what is below.
                if top.is_none() {
                    top = Some((l, Self::untouched_mount(id)));
                }
                break;
            }
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
                if meta.kind() != Kind::Dir {
                    continue;
                }
                // A hidden directory is an empty one, so that it can still
                // be a mount point on a read-only root.
                if top.is_none() {
                    top = Some((l, meta));
                }
                break;
            }
            if format::is_whiteout(pdir, name, &meta, || {
                format::dir_mark(pdir, OsStr::new(""), false)
            }) {
                break;
            }
            // A mount the table does not know yet (made a moment ago) is
            // sealed until it does.
            let sealed = lower
                && (self.is_sealed_top(l, parent, name)
                    || mount == Some(MountView::Sealed)
                    || meta.mount_root && mount.is_none());
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
        let top = top.map(|(l, m)| {
            let dir = &dirs
                .iter()
                .find(|(k, _)| *k == l)
                .expect("a layer looked in")
                .1;
            (l, self.owned(l, dir, name, m))
        });
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
            for name in dir.names()? {
                let name = name.as_os_str();
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
                let mount = self.mount_at(l, rel, name);
                let stat = match mount {
                    Some(MountView::Untouched(id)) => Ok(Self::untouched_mount(id)),
                    _ => dir.stat(name),
                };
                let meta = match stat {
                    Ok(m) => m,
                    // Gone between getdents and lstat (a live lower layer).
                    Err(e) if e.kind() == io::ErrorKind::NotFound => continue,
                    Err(e) => return Err(e),
                };
                if self.is_hidden(l, &meta) && meta.kind() != Kind::Dir {
                    continue;
                }
                // A file mounted here and sealed shows nothing.
                let sealed = mount == Some(MountView::Sealed) || meta.mount_root && mount.is_none();
                if oci && sealed && meta.kind() != Kind::Dir {
                    continue;
                }
                let name = name.to_os_string();
                seen.insert(name.clone());
                if format::is_whiteout(&dir, &name, &meta, mark) {
                    continue;
                }
                let shown = self.owned(l, &dir, &name, meta);
                out.push(DirEntry {
                    name,
                    kind: shown.kind(),
                    layer: l,
                    dev_ino: (meta.dev, meta.ino),
                    nlink: meta.nlink,
                    meta: shown,
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

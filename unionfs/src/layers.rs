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

/// The layers, top first: the upper (when writable) then the lowers in
/// `lowerdir=` order (leftmost on top).
#[derive(Debug, Clone)]
pub struct Stack {
    layers: Vec<PathBuf>,
    has_upper: bool,
    /// The layers merging into the root (fixed: lower layers never change).
    root: Vec<usize>,
    /// Paths left out of the lower layers (see [`Stack::hide`]).
    hidden: std::collections::HashSet<PathBuf>,
}

/// What a path resolves to.
#[derive(Debug, Clone)]
pub struct Entry {
    /// Index of the layer the entry comes from (the topmost one holding it).
    pub layer: usize,
    pub kind: Kind,
    pub meta: Metadata,
    /// For a directory: every layer whose directory merges into it, top
    /// first, ending at the first opaque one.
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
    /// Checks that every layer is a readable directory.
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
            let meta = std::fs::metadata(&path).map_err(|source| StackError::Unusable {
                role,
                path: path.clone(),
                source,
            })?;
            if !meta.is_dir() {
                return Err(StackError::NotDir { role, path });
            }
            std::fs::read_dir(&path).map_err(|source| StackError::Unusable {
                role,
                path: path.clone(),
                source,
            })?;
            layers.push(path);
        }
        let mut stack = Stack {
            layers,
            has_upper,
            root: Vec::new(),
            hidden: Default::default(),
        };
        stack.root = stack.root_layers();
        Ok(stack)
    }

    /// Leaves `paths` (absolute, canonical) out of the lower layers: the
    /// union shows nothing there. burrow hides what the sandbox can change
    /// behind the union's back (its read-write bind sources, the upper and
    /// work directories) where the host's / is a lower layer, so that no
    /// lower path the server walks can be swapped for a symlink from inside.
    pub fn hide(&mut self, paths: impl IntoIterator<Item = PathBuf>) {
        self.hidden.extend(paths);
    }

    fn is_hidden(&self, layer: usize, path: &Path) -> bool {
        !self.hidden.is_empty() && Some(layer) != self.upper() && self.hidden.contains(path)
    }

    /// Where `name` in `parent` must be if it exists, when `dirs` (the
    /// layers merging into `parent`) is a single layer: nothing above can
    /// hide it and nothing below can show through.
    pub fn only_place(&self, dirs: &[usize], parent: &Path, name: &OsStr) -> Option<PathBuf> {
        let [l] = dirs else { return None };
        let path = self.layers[*l].join(parent).join(name);
        (!self.is_hidden(*l, &path)).then_some(path)
    }

    /// Directory of layer `idx`.
    pub fn layer_dir(&self, idx: usize) -> &Path {
        &self.layers[idx]
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
        matches!(self.resolve_in(&lowers, parent, name), Ok((Some(_), _)))
    }

    /// Resolves `rel` (relative to the union's root) to the entry that the
    /// union shows there.
    pub fn lookup(&self, rel: &Path) -> io::Result<Entry> {
        let names = normal_components(rel)?;
        let mut dirs = self.root.clone();
        let mut cur = PathBuf::new();
        for (i, name) in names.iter().enumerate() {
            let parent = cur.clone();
            cur.push(name);
            let (top, below) = self.resolve_in(&dirs, &parent, name)?;
            let Some((layer, meta)) = top else {
                return Err(io::Error::from_raw_os_error(libc::ENOENT));
            };
            let kind = Kind::of(meta.file_type());
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
            dirs = below;
        }
        let meta = std::fs::metadata(&self.layers[dirs[0]])?;
        Ok(Entry {
            layer: dirs[0],
            kind: Kind::Dir,
            meta,
            dir_layers: dirs,
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
        let (top, below) = self.resolve_in(dirs, parent_rel, name)?;
        let Some((layer, meta)) = top else {
            return Err(io::Error::from_raw_os_error(libc::ENOENT));
        };
        let kind = Kind::of(meta.file_type());
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
        for (i, dir) in self.layers.iter().enumerate() {
            out.push(i);
            if i > 0 && format::dir_mark(dir) == DirMark::Opaque {
                break;
            }
        }
        out
    }

    /// Looks `name` up in directory `parent` of each layer in `dirs`, top
    /// down. Returns the visible entry and, when it is a directory, the
    /// layers whose directories merge into it.
    #[allow(clippy::type_complexity)]
    fn resolve_in(
        &self,
        dirs: &[usize],
        parent: &Path,
        name: &OsStr,
    ) -> io::Result<(Option<(usize, Metadata)>, Vec<usize>)> {
        let mut top: Option<(usize, Metadata)> = None;
        let mut merged = Vec::new();
        for &l in dirs {
            let pdir = self.layers[l].join(parent);
            let path = pdir.join(name);
            if self.is_hidden(l, &path) {
                continue;
            }
            match path.symlink_metadata() {
                Err(e) if e.kind() == io::ErrorKind::NotFound => {
                    if Some(l) != self.upper() && has_oci_whiteout(&pdir, name) {
                        break;
                    }
                }
                Err(e) => return Err(e),
                Ok(meta) => {
                    if format::is_whiteout(|| path.clone(), &meta, || format::dir_mark(&pdir)) {
                        break;
                    }
                    if !meta.is_dir() {
                        // A non-directory hides everything below it, and a
                        // directory above hides it.
                        if top.is_none() {
                            top = Some((l, meta));
                        }
                        break;
                    }
                    merged.push(l);
                    let opaque =
                        format::dir_mark_in(&path, Some(l) != self.upper()) == DirMark::Opaque;
                    if top.is_none() {
                        top = Some((l, meta));
                    }
                    if opaque {
                        break;
                    }
                }
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
        for &l in dir_layers {
            let dir = self.layers[l].join(rel);
            let oci = Some(l) != self.upper();
            let mark = format::dir_mark_in(&dir, oci);
            let mut hidden_below = Vec::new();
            // The directory open, its entries stat'ed relative to it.
            let mut handle = nix::dir::Dir::open(
                &dir,
                nix::fcntl::OFlag::O_RDONLY | nix::fcntl::OFlag::O_DIRECTORY,
                nix::sys::stat::Mode::empty(),
            )
            .map_err(io::Error::from)?;
            let fd = std::os::fd::AsRawFd::as_raw_fd(&handle);
            // SAFETY: `handle` owns the descriptor and outlives `dirfd`.
            let dirfd = unsafe { std::os::fd::BorrowedFd::borrow_raw(fd) };
            for item in handle.iter() {
                let item = item.map_err(io::Error::from)?;
                let name = OsStr::from_bytes(item.file_name().to_bytes());
                if name == "." || name == ".." {
                    continue;
                }
                if !self.hidden.is_empty() && self.is_hidden(l, &dir.join(name)) {
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
                let name = name.to_os_string();
                seen.insert(name.clone());
                if format::is_whiteout(|| dir.join(&name), &meta, || mark) {
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

fn has_oci_whiteout(dir: &Path, name: &OsStr) -> bool {
    let mut marker = OsString::from(format::OCI_WHITEOUT_PREFIX);
    marker.push(name);
    dir.join(marker).symlink_metadata().is_ok()
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

//! The FUSE side of burrowfs: node numbers, handles, and each request
//! mapped onto the layer stack and the upper layer.
//!
//! Node numbers are burrowfs' own, handed out once per file identity (the
//! device and inode number of the file in its layer) and never reused, so
//! hard links share a number and a file keeps its number when it is copied
//! up. A node remembers the names it is known by; paths are rebuilt from
//! those names, so renaming a directory is a constant-time update.
//!
//! Here: the filesystem's state and how a node resolves to an entry of the
//! union; `nodes` holds the node and handle tables, `ops` the union's
//! changes (copy-up, creation, removal, renames, opens, attributes) and
//! `requests` the FUSE requests, answered with those. Every layer is
//! reached through [`crate::layer_dir`].

use std::ffi::OsStr;
use std::fs::File;
use std::io;
use std::os::unix::fs::{FileExt, MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::{Mutex, MutexGuard};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use fuser::{
    Errno, FileAttr, FileHandle, FileType, Filesystem, FopenFlags, Generation, INodeNo,
    KernelConfig, LockOwner, OpenFlags, RenameFlags, ReplyAttr, ReplyCreate, ReplyData,
    ReplyDirectory, ReplyEmpty, ReplyEntry, ReplyOpen, ReplyStatfs, ReplyWrite, ReplyXattr,
    Request, TimeOrNow, WriteFlags,
};
use nix::fcntl::OFlag;
use nix::sys::stat::SFlag;

use crate::idmap::Ids;
use crate::layer_dir::{Dir, Place};
use crate::layer_file::LayerFile;
use crate::layers::{Attrs, Entry, Kind, Stack, Stat};
use crate::node_files::NodeFiles;
use crate::upper::{self, Upper};

mod dir_fds;
mod nodes;
mod ops;
mod requests;
mod spliced_read;

use nodes::{Handles, Key, State};

/// How long the kernel may cache names and attributes. Every change goes
/// through burrowfs, and the kernel drops what a change touches.
const TTL: Duration = Duration::from_secs(60);

const ROOT: u64 = 1;

/// Threads serving requests, each on its own /dev/fuse descriptor.
pub const WORKERS: usize = 4;

/// Cache lifetime for attributes: none for a multiply-linked file, whose
/// link count changes when one of its names is copied up or linked.
fn ttl(attr: &FileAttr) -> Duration {
    if attr.nlink > 1 && attr.kind != FileType::Directory {
        Duration::ZERO
    } else {
        TTL
    }
}

/// The union filesystem served over FUSE.
pub struct UnionFs {
    stack: Stack,
    upper: Option<Upper>,
    /// Whether burrowfs runs as root (of its user namespace): new files are
    /// then given to the requesting user.
    as_root: bool,
    ids: Ids,
    state: Mutex<State>,
    handles: Mutex<Handles>,
    /// Without passthrough the kernel opens files without asking (FUSE
    /// "no open"): each node's file for its reads and writes. Locked after
    /// the state, never together with the handles.
    node_files: Mutex<NodeFiles>,
    /// What it learns of its session once the session is made: see
    /// [`SessionSlots`].
    session: SessionSlots,
    /// Writes to one file take turns here, by inode: in the kernel they
    /// would contend on the inode's lock by spinning, which on a small
    /// machine steals the CPU that the copy itself needs.
    write_turns: [Mutex<()>; 16],
    /// Ask for FUSE passthrough (it needs CAP_SYS_ADMIN in the initial user
    /// namespace), and whether the kernel granted it.
    want_passthrough: bool,
    passthrough: bool,
}

/// What a [`UnionFs`] learns of its session once the session is made (it
/// takes the filesystem, so it comes after).
#[derive(Clone, Default)]
pub struct SessionSlots {
    /// Tells the kernel what burrowfs changed of its own accord.
    notifier: std::sync::Arc<std::sync::OnceLock<fuser::Notifier>>,
    /// The session's /dev/fuse descriptor (a duplicate), on which READs
    /// are answered by splicing. The session's workers must all read this
    /// one descriptor (fuser's `clone_fd` off): the kernel takes a reply
    /// only on the descriptor its request was read from.
    dev: std::sync::Arc<std::sync::OnceLock<std::os::fd::OwnedFd>>,
}

impl SessionSlots {
    /// Fills the slots from `session`, made from the filesystem they
    /// came from.
    pub fn fill(&self, session: &fuser::Session<UnionFs>) -> io::Result<()> {
        use std::os::fd::AsFd;
        let _ = self.notifier.set(session.notifier());
        let _ = self.dev.set(session.as_fd().try_clone_to_owned()?);
        Ok(())
    }
}

fn err(e: io::Error) -> Errno {
    match e.raw_os_error() {
        Some(code) => Errno::from_i32(code),
        None => Errno::from(e.kind()),
    }
}

fn nix_err(e: nix::errno::Errno) -> io::Error {
    io::Error::from_raw_os_error(e as i32)
}

fn os_err(code: i32) -> io::Error {
    io::Error::from_raw_os_error(code)
}

fn system_time(secs: i64, nsecs: i64) -> SystemTime {
    if secs >= 0 {
        UNIX_EPOCH + Duration::new(secs as u64, nsecs as u32)
    } else {
        UNIX_EPOCH - Duration::from_secs(secs.unsigned_abs()) + Duration::from_nanos(nsecs as u64)
    }
}

fn file_type(kind: Kind) -> FileType {
    match kind {
        Kind::File => FileType::RegularFile,
        Kind::Dir => FileType::Directory,
        Kind::Symlink => FileType::Symlink,
        Kind::Fifo => FileType::NamedPipe,
        Kind::Socket => FileType::Socket,
        Kind::CharDevice => FileType::CharDevice,
        Kind::BlockDevice => FileType::BlockDevice,
    }
}

/// The mode bits a write or truncate by someone without CAP_FSETID leaves:
/// set-user-ID goes, and set-group-ID where the group may execute.
fn without_suidgid(mode: u32) -> u32 {
    let mut mode = mode & 0o7777;
    mode &= !libc::S_ISUID;
    if mode & (libc::S_ISGID | libc::S_IXGRP) == libc::S_ISGID | libc::S_IXGRP {
        mode &= !libc::S_ISGID;
    }
    mode
}

fn attr_of(ino: u64, m: &impl Attrs) -> FileAttr {
    let [atime, mtime, ctime] = m.st_times();
    FileAttr {
        ino: INodeNo(ino),
        size: m.st_size(),
        blocks: m.st_blocks(),
        atime: system_time(atime.0, atime.1),
        mtime: system_time(mtime.0, mtime.1),
        ctime: system_time(ctime.0, ctime.1),
        crtime: UNIX_EPOCH,
        kind: file_type(m.kind()),
        perm: (m.st_mode() & 0o7777) as u16,
        nlink: m.st_nlink() as u32,
        uid: m.st_uid(),
        gid: m.st_gid(),
        rdev: m.st_rdev() as u32,
        blksize: m.st_blksize() as u32,
        flags: 0,
    }
}

/// Whether this process may give files to other users (CAP_CHOWN in its
/// user namespace): then new files get the requesting user's ids.
fn has_cap_chown() -> bool {
    effective_caps() & 1 != 0 // bit 0 is CAP_CHOWN
}

/// This process's effective capabilities, as /proc/self/status shows them.
fn effective_caps() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("CapEff:"))
                .and_then(|hex| u64::from_str_radix(hex.trim(), 16).ok())
        })
        .unwrap_or(0)
}

/// Whether this process holds CAP_SYS_ADMIN in the initial user namespace
/// (what FUSE passthrough's backing files need).
fn admin_of_initial_namespace() -> bool {
    let admin = effective_caps() & (1 << 21) != 0; // CAP_SYS_ADMIN
    admin && crate::sys::in_initial_user_namespace()
}

/// The attributes of a negative lookup reply (node 0: "no such name").
fn negative_attr() -> FileAttr {
    FileAttr {
        ino: INodeNo(0),
        size: 0,
        blocks: 0,
        atime: UNIX_EPOCH,
        mtime: UNIX_EPOCH,
        ctime: UNIX_EPOCH,
        crtime: UNIX_EPOCH,
        kind: FileType::RegularFile,
        perm: 0,
        nlink: 0,
        uid: 0,
        gid: 0,
        rdev: 0,
        blksize: 0,
        flags: 0,
    }
}

/// Attributes of a union entry: a directory merged from several layers
/// reports one link, as kernel overlayfs does (its real count is unknown).
fn union_attr(ino: u64, e: &Entry) -> FileAttr {
    let mut attr = attr_of(ino, &e.meta);
    if e.dir_layers.len() > 1 {
        attr.nlink = 1;
    }
    attr
}

impl UnionFs {
    pub fn new(stack: Stack, upper: Option<Upper>) -> UnionFs {
        let root = stack.lookup(Path::new(""));
        let state = State::new(root.ok().map(|r| Key::Inode(r.meta.dev, r.meta.ino)));
        UnionFs {
            stack,
            upper,
            as_root: has_cap_chown(),
            ids: Ids::default(),
            state: Mutex::new(state),
            handles: Mutex::default(),
            node_files: Mutex::default(),
            session: SessionSlots::default(),
            write_turns: Default::default(),
            want_passthrough: admin_of_initial_namespace(),
            passthrough: false,
        }
    }

    /// Where what it learns of its session goes: fill them once the
    /// session is made.
    pub fn session_slots(&self) -> SessionSlots {
        self.session.clone()
    }

    /// Refuses FUSE passthrough even where it is available.
    pub fn without_passthrough(mut self) -> UnionFs {
        self.want_passthrough = false;
        self
    }

    /// The backing file for a passthrough open of `node` as `file`, made
    /// with `make` (the reply's FUSE_DEV_IOC_BACKING_OPEN), or None for an
    /// open this server serves. The kernel wants one backing file for all
    /// of an inode's opens: passthrough opens share it, and an inode with
    /// served opens gets served ones. A lower file still open through
    /// passthrough cannot be opened again once copied up (the new open
    /// would need the upper file): EBUSY until the old opens close.
    fn backing_for(
        &self,
        st: &mut State,
        node: u64,
        file: &LayerFile,
        make: impl FnOnce(&File) -> io::Result<fuser::BackingId>,
    ) -> Result<Option<std::sync::Arc<fuser::BackingId>>, Errno> {
        if !self.passthrough {
            return Ok(None);
        }
        let io = st.node_io.entry(node).or_default();
        let LayerFile::Os(file) = file else {
            // An image's file has no descriptor to pass through.
            io.served += 1;
            return Ok(None);
        };
        let meta = file.metadata().map_err(err)?;
        let id = (meta.dev(), meta.ino());
        if io.served == 0 {
            if let Some((weak, was)) = &io.backing {
                if let Some(b) = weak.upgrade() {
                    return if *was == id {
                        Ok(Some(b))
                    } else {
                        Err(Errno::EBUSY)
                    };
                }
            }
            if let Ok(b) = make(file) {
                let b = std::sync::Arc::new(b);
                io.backing = Some((std::sync::Arc::downgrade(&b), id));
                return Ok(Some(b));
            }
        }
        io.served += 1;
        Ok(None)
    }

    /// Registers handle `fh`: a passthrough one keeps its backing file
    /// alive.
    fn note_handle(
        &self,
        st: &mut State,
        fh: u64,
        backing: Option<&std::sync::Arc<fuser::BackingId>>,
    ) {
        if let Some(b) = backing {
            st.backings.insert(fh, b.clone());
        }
    }

    /// Forgets the passthrough bookkeeping of handle `fh` of `node`
    /// (released).
    fn drop_handle_io(&self, st: &mut State, node: u64, fh: u64) {
        if st.backings.remove(&fh).is_none() {
            if let Some(io) = st.node_io.get_mut(&node) {
                io.served = io.served.saturating_sub(1);
            }
        }
        if let Some(io) = st.node_io.get(&node) {
            let live = io
                .backing
                .as_ref()
                .is_some_and(|(w, _)| w.strong_count() > 0);
            if io.served == 0 && !live {
                st.node_io.remove(&node);
            }
        }
    }

    /// Shows and stores owners through `ids` (fuse-overlayfs' uidmapping=,
    /// gidmapping= and squash options).
    pub fn with_ids(mut self, ids: Ids) -> UnionFs {
        self.ids = ids;
        self
    }

    fn shown(&self, mut attr: FileAttr) -> FileAttr {
        (attr.uid, attr.gid) = self.ids.shown(attr.uid, attr.gid);
        attr
    }

    /// [`UnionFs::shown`] for an open file's own attributes, whose layer
    /// is not known.
    fn shown_file(&self, node: u64, f: &LayerFile) -> io::Result<FileAttr> {
        use std::os::unix::fs::MetadataExt;
        let f = match f {
            LayerFile::Os(f) => f,
            LayerFile::Image(_) => {
                let m = f.stat()?;
                let mut attr = attr_of(node, &m);
                (attr.uid, attr.gid) = self.stack.file_owner(m.dev, attr.uid, attr.gid);
                return Ok(self.shown(attr));
            }
        };
        let m = f.metadata()?;
        let mut attr = attr_of(node, &m);
        (attr.uid, attr.gid) = self.stack.file_owner(m.dev(), attr.uid, attr.gid);
        if let Some(o) = self.stack.override_of_file(f) {
            let mut meta = crate::layers::Stat::from_metadata(&m);
            o.apply(&mut meta);
            attr = attr_of(node, &meta);
        }
        Ok(self.shown(attr))
    }

    /// The open file behind handle `fh`.
    fn open_file_of(&self, fh: FileHandle) -> Option<std::sync::Arc<LayerFile>> {
        self.handles().file(fh.0).cloned()
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        let mut st = self.state.lock().unwrap_or_else(|p| p.into_inner());
        let mounts = self.stack.mounts_generation();
        if mounts != st.mounts_seen {
            // Directories' cached layers may now meet a mount (or lose one).
            st.mounts_seen = mounts;
            st.layers_gen += 1;
        }
        st
    }

    /// The handle table; with the state locked too, lock the state first.
    fn handles(&self) -> MutexGuard<'_, Handles> {
        self.handles.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn node_files(&self) -> MutexGuard<'_, NodeFiles> {
        self.node_files.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Whether the kernel opens and closes files without telling burrowfs
    /// (FUSE "no open": an OPEN answered ENOSYS). Passthrough needs the
    /// opens, to hand each its backing file.
    fn no_open(&self) -> bool {
        !self.passthrough
    }

    /// The file a READ, WRITE or FSYNC of `node` goes to: the handle's, or
    /// without FUSE opens (handle 0) the node's own, opened for `write`
    /// (copied up first) when it is not open that way yet.
    fn io_file(
        &self,
        node: u64,
        fh: FileHandle,
        write: bool,
    ) -> Result<std::sync::Arc<LayerFile>, Errno> {
        if fh.0 != 0 {
            return self.open_file_of(fh).ok_or(Errno::EBADF);
        }
        if let Some(f) = self.node_files().get(node, write) {
            return Ok(f);
        }
        let mut st = self.lock();
        if write && self.no_open() && st.name_count(node) == 0 {
            return self.writable_orphan(&mut st, node, u64::MAX).map_err(err);
        }
        let flags = if write {
            libc::O_WRONLY
        } else {
            libc::O_RDONLY
        };
        let file = std::sync::Arc::new(self.open_file(&mut st, node, flags).map_err(err)?);
        // Opened for writing, it may have been opened for reading too.
        let (read, write) = if write { file.access() } else { (true, false) };
        let closing = self.node_files().insert(node, file.clone(), read, write);
        drop(st);
        drop(closing);
        Ok(file)
    }

    /// Without FUSE opens the sandbox may have `name` in `parent` open
    /// unseen: before a regular file loses its last name, its node's file
    /// (`name` in `dir`, the directory of entry `e`'s layer) is opened (for
    /// writing too where it is an upper file) and kept until the kernel
    /// forgets the node, so that reads and writes through the open file go
    /// on working.
    fn keep_open_unnamed(&self, st: &mut State, parent: u64, name: &OsStr, e: &Entry, dir: &Dir) {
        if !self.no_open() || e.kind != Kind::File {
            return;
        }
        let Some(node) = st.by_name(parent, name) else {
            return; // never looked up: nothing can have it open
        };
        if st.name_count(node) > 1 {
            return;
        }
        let write = self.is_upper(e);
        if self.node_files().get(node, write).is_none() {
            // The file must still be the entry's.
            let id = Some((e.meta.dev, e.meta.ino));
            let read_only = || {
                dir.open_regular(name, OFlag::O_RDONLY, id)
                    .map(|f| (f, false))
            };
            let opened = if write {
                dir.open_regular(name, OFlag::O_RDWR, id)
                    .map(|f| (f, true))
                    .or_else(|_| read_only())
            } else {
                read_only()
            };
            // O_RDWR and O_RDONLY opens are what they say (no write-only
            // fallback without O_WRONLY).
            if let Ok((f, write)) = opened {
                let closing = self
                    .node_files()
                    .insert(node, std::sync::Arc::new(f), true, write);
                drop(closing);
            }
        }
        self.node_files().pin(node, !write);
    }

    /// The file of `node`, whose last name is gone, for writing. A lower
    /// layer's file pinned by [`UnionFs::keep_open_unnamed`] is copied
    /// first (its first `up_to` bytes) into a nameless file of the work
    /// directory, which becomes the node's: kernel overlayfs copies up at
    /// an open for writing, but without FUSE opens burrowfs first hears of
    /// a write at the WRITE (or the truncate), which may come after the
    /// unlink. (Under the state's lock: two writers get one copy.)
    fn writable_orphan(
        &self,
        _st: &mut State,
        node: u64,
        up_to: u64,
    ) -> io::Result<std::sync::Arc<LayerFile>> {
        if let Some(f) = self.node_files().get(node, true) {
            return Ok(f);
        }
        let (lower, kept) = {
            let files = self.node_files();
            (files.pinned_lower(node), files.any(node).is_some())
        };
        // An upper file kept read-only may not be written; with nothing
        // kept, the node is no file any more.
        let lower = lower.ok_or_else(|| os_err(if kept { libc::EACCES } else { libc::ENOENT }))?;
        let copy = std::sync::Arc::new(LayerFile::from(self.upper()?.copy_orphan(&lower, up_to)?));
        let closing = self.node_files().insert(node, copy.clone(), true, true);
        drop(closing);
        Ok(copy)
    }

    fn upper(&self) -> io::Result<&Upper> {
        self.upper.as_ref().ok_or_else(|| os_err(libc::EROFS))
    }

    fn is_upper(&self, e: &Entry) -> bool {
        self.stack.upper() == Some(e.layer)
    }

    /// Where entry `e`, at `rel` in the union, is in its layer.
    fn place_of(&self, e: &Entry, rel: &Path) -> io::Result<Place> {
        self.stack.place(e.layer, rel)
    }

    fn identity(m: &Stat) -> Key {
        Key::Inode(m.dev, m.ino)
    }

    /// The key of an entry found as `name` in `parent`.
    fn key(&self, layer: usize, m: &Stat, parent: u64, name: &OsStr) -> Key {
        if Some(layer) != self.stack.upper() && m.kind() != Kind::Dir && m.nlink > 1 {
            Key::Name(Box::new((parent, name.to_owned())))
        } else {
            Self::identity(m)
        }
    }

    /// Looks `name` up in `parent` and registers the node.
    fn entry_attr(&self, st: &mut State, parent: u64, name: &OsStr) -> io::Result<FileAttr> {
        let (parent_rel, layers) = self.dir_layers(st, parent)?;
        let e = self.stack.lookup_child(&layers, &parent_rel, name)?;
        let node = st.node_for(self.key(e.layer, &e.meta, parent, name), parent, name);
        Ok(self.shown(union_attr(node, &e)))
    }

    /// The path and union entry of `node`, resolved one step from its
    /// parent's (cached) layers rather than from the root.
    fn resolve(&self, st: &mut State, node: u64) -> io::Result<(PathBuf, Entry)> {
        if node == ROOT {
            return Ok((PathBuf::new(), self.stack.lookup(Path::new(""))?));
        }
        let (parent, name) = st
            .first_name(node)
            .map(|(p, n)| (p, n.to_owned()))
            .ok_or_else(|| os_err(libc::ENOENT))?;
        let (parent_rel, layers) = self.dir_layers(st, parent)?;
        let e = self.stack.lookup_child(&layers, &parent_rel, &name)?;
        Ok((parent_rel.join(name), e))
    }

    /// Where `node`'s file must be, and in which layer, when its directory
    /// is made of a single layer (see [`Stack::sole_layer`]).
    fn only_place(&self, st: &mut State, node: u64) -> io::Result<Option<(usize, Place)>> {
        let Some((parent, name)) = st.first_name(node).map(|(p, n)| (p, n.to_owned())) else {
            return Ok(None);
        };
        let (parent_rel, layers) = self.dir_layers(st, parent)?;
        let Some(layer) = self.stack.sole_layer(&layers) else {
            return Ok(None);
        };
        Ok(self.stack.dir(layer, &parent_rel).ok().map(|dir| {
            let name = name.to_os_string();
            (layer, Place { dir, name })
        }))
    }

    /// The single layer `node`'s directory is made of, by the layers cached
    /// for it; with the directory.
    fn parent_in_one_layer(st: &State, node: u64) -> Option<(u64, usize)> {
        let (parent, _) = st.first_name(node)?;
        match st.cached_layers(parent)? {
            (gen, [layer]) if gen == st.layers_gen => Some((parent, *layer)),
            _ => None,
        }
    }

    /// `node`'s file opened for reading (with `flags`) in the directory
    /// kept for its own, where that is made of a single layer and the file
    /// there is the node's own (see [`dir_fds`]).
    fn open_in_kept_dir(&self, st: &mut State, node: u64, flags: OFlag) -> Option<LayerFile> {
        let (parent, layer) = Self::parent_in_one_layer(st, node)?;
        let id = st.inode_identity(node)?;
        let name = st.first_name(node)?.1.to_owned();
        let gen = st.layers_gen;
        match st
            .dir_fds
            .get(gen, parent, layer)?
            .open_regular(&name, flags, Some(id))
        {
            Ok(f) => Some(f),
            Err(_) => {
                st.dir_fds.forget(parent, layer);
                None
            }
        }
    }

    /// Keeps `dir`, where `node`'s file was just opened in `layer`, for
    /// opening the files beside it (see [`dir_fds`]): not for a node
    /// without an identity to check, nor on a mount other than the layer
    /// root's (a mount burrowfs merely shows, which a kept descriptor
    /// would hold busy against its unmount).
    fn keep_dir(&self, st: &mut State, node: u64, layer: usize, dir: Dir) {
        let Some((parent, only)) = Self::parent_in_one_layer(st, node) else {
            return;
        };
        if only != layer || st.inode_identity(node).is_none() {
            return;
        }
        if dir.mount_id() != self.stack.layer_root(layer).mount_id() {
            return;
        }
        st.dir_fds.keep(st.layers_gen, parent, layer, dir);
    }

    /// The path of directory `dir` and the layers merging into it.
    fn dir_layers(&self, st: &mut State, dir: u64) -> io::Result<(PathBuf, Vec<usize>)> {
        let gen = st.layers_gen;
        if let Some((g, layers)) = st.cached_layers(dir) {
            if g == gen {
                let layers = layers.to_vec();
                return Ok((st.path(dir)?, layers));
            }
        }
        let (rel, e) = self.resolve(st, dir)?;
        if e.kind != Kind::Dir {
            return Err(os_err(libc::ENOTDIR));
        }
        st.cache_layers(dir, gen, e.dir_layers.clone());
        Ok((rel, e.dir_layers))
    }

    /// Directory `node` from its cached layers: one stat of its top
    /// layer's directory instead of a lookup in every layer. (Unlinking
    /// makes the kernel ask for the parent's attributes every time.)
    fn cached_dir(&self, st: &State, node: u64) -> Option<Entry> {
        let (gen, layers) = st.cached_layers(node)?;
        if gen != st.layers_gen {
            return None;
        }
        let top = *layers.first()?;
        let dir = self.stack.dir(top, &st.path(node).ok()?).ok()?;
        let meta = dir.stat_self().ok()?;
        let meta = self.stack.owned(top, &dir, OsStr::new(""), meta);
        Some(Entry {
            layer: top,
            kind: Kind::Dir,
            meta,
            dir_layers: layers.to_vec(),
        })
    }

    fn node_attr(&self, st: &mut State, node: u64) -> io::Result<FileAttr> {
        let e = match self.cached_dir(st, node) {
            Some(e) => e,
            None => self.resolve(st, node)?.1,
        };
        if self.is_upper(&e) && st.by_identity(&Self::identity(&e.meta)).is_none() {
            st.alias(node, Self::identity(&e.meta));
        }
        Ok(self.shown(union_attr(node, &e)))
    }
}

/// Serves `fs` on a /dev/fuse descriptor that someone else has already
/// mounted (burrow mounts it inside the sandbox and hands the descriptor
/// over). Returns when the filesystem is unmounted.
pub fn serve_mounted(fs: UnionFs, fd: std::os::fd::OwnedFd) -> io::Result<()> {
    raise_open_file_limit();
    let mut config = fuser::Config::default();
    config.acl = fuser::SessionACL::All;
    config.n_threads = Some(WORKERS);
    let slots = fs.session_slots();
    let session = fuser::Session::from_fd(fs, fd, fuser::SessionACL::All, config)?;
    slots.fill(&session)?;
    session.run()
}

/// Every file open in the union holds one descriptor here: raise the soft
/// limit on open files to the hard one.
pub fn raise_open_file_limit() {
    use nix::sys::resource::{getrlimit, setrlimit, Resource};
    if let Ok((_, hard)) = getrlimit(Resource::RLIMIT_NOFILE) {
        let _ = setrlimit(Resource::RLIMIT_NOFILE, hard, hard);
    }
}

//! The FUSE side of burrowfs: node numbers, handles, and each request
//! mapped onto the layer stack and the upper layer.
//!
//! Node numbers are burrowfs' own, handed out once per file identity (the
//! device and inode number of the file in its layer) and never reused, so
//! hard links share a number and a file keeps its number when it is copied
//! up. A node remembers the names it is known by; paths are rebuilt from
//! those names, so renaming a directory is a constant-time update.

use std::collections::HashMap;
use std::ffi::{OsStr, OsString};
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
use crate::layers::{Attrs, Entry, Kind, Stack, Stat};
use crate::node_files::NodeFiles;
use crate::upper::{self, Upper};

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

/// What makes two lookups the same file: its device and inode number in
/// its layer, except for a hard-linked file of a lower layer, whose names
/// each become a file of their own when copied up (kernel overlayfs
/// breaks such links too), so each name is its own file.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
enum Key {
    Inode(u64, u64),
    /// (Boxed: rare, and it would double the size of every key.)
    Name(Box<(u64, OsString)>),
}

/// A file known to the kernel.
#[derive(Debug, Default)]
struct Node {
    /// (parent node, name) for each name of the file; the first builds paths.
    names: Vec<(u64, OsString)>,
    /// Layer identities (device, inode) that resolve to this node.
    identities: Vec<Key>,
    /// For a directory: the layers merging into it, as of `State::layers_gen`.
    /// (Boxed: only directories have it, and every node pays for the
    /// field's size in the node table.)
    dir_layers: Option<Box<(u64, Vec<usize>)>>,
}

enum Handle {
    /// An open file, and the node it was opened as. Shared so that reads
    /// and writes run without the state lock.
    File(std::sync::Arc<File>, u64),
    /// An open directory's listing, taken when it was opened.
    Dir(std::sync::Arc<Vec<DirItem>>),
}

/// One name of an open directory.
struct DirItem {
    node: u64,
    kind: FileType,
    name: OsString,
    /// For a name that is not a directory: the attributes a lookup would
    /// give, from the listing's own stat (READDIRPLUS sends them without
    /// a second look). A directory's depend on the layers below it.
    attr: Option<FileAttr>,
}

/// How the kernel does a file's I/O, for FUSE passthrough: every open of
/// an inode must agree (one backing file for all, or no passthrough).
#[derive(Default)]
struct NodeIo {
    /// Opens served by this server (no passthrough).
    served: usize,
    /// The backing file the passthrough opens share, and its identity.
    backing: Option<(std::sync::Weak<fuser::BackingId>, (u64, u64))>,
}

#[derive(Default)]
struct State {
    nodes: HashMap<u64, Node>,
    by_identity: HashMap<Key, u64>,
    /// Which node each (parent, name) names.
    by_name: HashMap<(u64, OsString), u64>,
    /// Bumped whenever some directory's layers may change (a directory
    /// copied up or renamed, a directory removed, a parent marked for xattr
    /// whiteouts): cached `Node::dir_layers` older than this are stale.
    layers_gen: u64,
    next_node: u64,
    /// With passthrough: each open node's I/O mode, and the backing file
    /// each passthrough handle holds.
    node_io: HashMap<u64, NodeIo>,
    backings: HashMap<u64, std::sync::Arc<fuser::BackingId>>,
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
    /// Tells the kernel what burrowfs changed of its own accord (set once
    /// the session exists: see [`UnionFs::notifier_slot`]).
    notifier: std::sync::Arc<std::sync::OnceLock<fuser::Notifier>>,
    /// Writes to one file take turns here, by inode: in the kernel they
    /// would contend on the inode's lock by spinning, which on a small
    /// machine steals the CPU that the copy itself needs.
    write_turns: [Mutex<()>; 16],
    /// Ask for FUSE passthrough (it needs CAP_SYS_ADMIN in the initial user
    /// namespace), and whether the kernel granted it.
    want_passthrough: bool,
    passthrough: bool,
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

/// Whether `f` was opened for reading and for writing.
fn access_of(f: &File) -> (bool, bool) {
    match nix::fcntl::fcntl(f, nix::fcntl::FcntlArg::F_GETFL) {
        Ok(fl) => match fl & libc::O_ACCMODE {
            libc::O_RDONLY => (true, false),
            libc::O_WRONLY => (false, true),
            _ => (true, true),
        },
        Err(_) => (false, false),
    }
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
    let initial = std::fs::read_to_string("/proc/self/uid_map")
        .is_ok_and(|m| m.split_whitespace().collect::<Vec<_>>() == ["0", "0", "4294967295"]);
    let admin = effective_caps() & (1 << 21) != 0; // CAP_SYS_ADMIN
    initial && admin
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

impl State {
    fn path(&self, node: u64) -> io::Result<PathBuf> {
        let mut names = Vec::new();
        let mut cur = node;
        while cur != ROOT {
            let n = self.nodes.get(&cur).ok_or_else(|| os_err(libc::ENOENT))?;
            let (parent, name) = n.names.first().ok_or_else(|| os_err(libc::ENOENT))?;
            names.push(name.as_os_str());
            cur = *parent;
            if names.len() > 4096 {
                return Err(os_err(libc::ELOOP));
            }
        }
        Ok(names.iter().rev().collect())
    }

    /// The node for a file with layer identity `id`, known as `name` in `parent`.
    fn node_for(&mut self, id: Key, parent: u64, name: &OsStr) -> u64 {
        let node = match self.by_identity.get(&id) {
            Some(&n) => n,
            None => {
                self.next_node += 1;
                let n = self.next_node;
                self.by_identity.insert(id.clone(), n);
                self.nodes.insert(
                    n,
                    Node {
                        identities: vec![id],
                        ..Node::default()
                    },
                );
                n
            }
        };
        if node != ROOT {
            let key = (parent, name.to_owned());
            match self.by_name.get(&key) {
                Some(&known) if known == node => {}
                Some(_) => {
                    // The name now means another file.
                    self.unname(parent, name);
                    self.add_name(node, key);
                }
                None => self.add_name(node, key),
            }
        }
        node
    }

    /// Adds another layer identity (a copy-up) to `node`.
    fn alias(&mut self, node: u64, id: Key) {
        self.by_identity.insert(id.clone(), node);
        if let Some(n) = self.nodes.get_mut(&node) {
            n.identities.push(id);
        }
    }

    /// Drops the name `name` in `parent` from whichever node has it; a node
    /// left without names forgets its identities, so that a recycled inode
    /// number in a layer never maps to it.
    fn add_name(&mut self, node: u64, key: (u64, OsString)) {
        let names = &mut self.nodes.entry(node).or_default().names;
        // Most files have one name: room for one, not the four a first
        // push would make (an eighth of burrowfs' memory over a big tree).
        names.reserve_exact(1);
        names.push(key.clone());
        self.by_name.insert(key, node);
    }

    fn unname(&mut self, parent: u64, name: &OsStr) {
        let Some(id) = self.by_name.remove(&(parent, name.to_owned())) else {
            return;
        };
        let Some(node) = self.nodes.get_mut(&id) else {
            return;
        };
        node.names.retain(|(p, n)| !(*p == parent && n == name));
        if node.names.is_empty() {
            for key in std::mem::take(&mut node.identities) {
                self.by_identity.remove(&key);
            }
        }
    }

    fn rename_name(&mut self, from: (u64, &OsStr), to: (u64, &OsStr)) {
        let Some(id) = self.by_name.remove(&(from.0, from.1.to_owned())) else {
            return;
        };
        if let Some(node) = self.nodes.get_mut(&id) {
            for (p, n) in node.names.iter_mut() {
                if *p == from.0 && n == from.1 {
                    *p = to.0;
                    *n = to.1.to_owned();
                }
            }
        }
        self.by_name.insert((to.0, to.1.to_owned()), id);
    }
}

/// The open files and directories the kernel holds handles to. They have a
/// lock of their own, taken after the state's when both are needed (never
/// the other way round): a RELEASE, which the kernel sends in the
/// background as the next file is being opened, then never waits for that
/// open.
#[derive(Default)]
struct Handles {
    map: HashMap<u64, Handle>,
    next: u64,
}

impl Handles {
    fn add(&mut self, h: Handle) -> u64 {
        self.next += 1;
        self.map.insert(self.next, h);
        self.next
    }

    fn file(&self, fh: u64) -> Option<&std::sync::Arc<File>> {
        match self.map.get(&fh) {
            Some(Handle::File(f, _)) => Some(f),
            _ => None,
        }
    }

    /// An open file of `node` that `pick` accepts.
    fn file_of_node(
        &self,
        node: u64,
        pick: impl Fn(&File) -> bool,
    ) -> Option<std::sync::Arc<File>> {
        self.map.values().find_map(|h| match h {
            Handle::File(f, n) if *n == node && pick(f) => Some(f.clone()),
            _ => None,
        })
    }

    fn dir(&self, fh: u64) -> Option<std::sync::Arc<Vec<DirItem>>> {
        match self.map.get(&fh) {
            Some(Handle::Dir(list)) => Some(list.clone()),
            _ => None,
        }
    }
}

impl UnionFs {
    pub fn new(stack: Stack, upper: Option<Upper>) -> UnionFs {
        let mut state = State {
            next_node: ROOT,
            ..State::default()
        };
        if let Ok(root) = stack.lookup(Path::new("")) {
            state
                .by_identity
                .insert(Key::Inode(root.meta.dev, root.meta.ino), ROOT);
        }
        state.nodes.insert(ROOT, Node::default());
        UnionFs {
            stack,
            upper,
            as_root: has_cap_chown(),
            ids: Ids::default(),
            state: Mutex::new(state),
            handles: Mutex::default(),
            node_files: Mutex::default(),
            notifier: Default::default(),
            write_turns: Default::default(),
            want_passthrough: admin_of_initial_namespace(),
            passthrough: false,
        }
    }

    /// Where the session's notifier goes once the session is made (it
    /// takes the filesystem, so the notifier comes after).
    pub fn notifier_slot(&self) -> std::sync::Arc<std::sync::OnceLock<fuser::Notifier>> {
        self.notifier.clone()
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
        file: &File,
        make: impl FnOnce(&File) -> io::Result<fuser::BackingId>,
    ) -> Result<Option<std::sync::Arc<fuser::BackingId>>, Errno> {
        if !self.passthrough {
            return Ok(None);
        }
        let io = st.node_io.entry(node).or_default();
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

    /// The open file behind handle `fh`.
    fn open_file_of(&self, fh: FileHandle) -> Option<std::sync::Arc<File>> {
        self.handles().file(fh.0).cloned()
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
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
    ) -> Result<std::sync::Arc<File>, Errno> {
        if fh.0 != 0 {
            return self.open_file_of(fh).ok_or(Errno::EBADF);
        }
        if let Some(f) = self.node_files().get(node, write) {
            return Ok(f);
        }
        let mut st = self.lock();
        let flags = if write {
            libc::O_WRONLY
        } else {
            libc::O_RDONLY
        };
        let file = std::sync::Arc::new(self.open_file(&mut st, node, flags).map_err(err)?);
        // Opened for writing, it may have been opened for reading too.
        let (read, write) = if write {
            access_of(&file)
        } else {
            (true, false)
        };
        let closing = self.node_files().insert(node, file.clone(), read, write);
        drop(st);
        drop(closing);
        Ok(file)
    }

    /// Without FUSE opens the sandbox may have `name` in `parent` open
    /// unseen: before a regular file loses its last name, its node's file
    /// is opened (for writing too where it is an upper file) and kept until
    /// the kernel forgets the node, so that reads and writes through the
    /// open file go on working.
    fn keep_open_unnamed(&self, st: &mut State, parent: u64, name: &OsStr, e: &Entry) {
        if !self.no_open() || e.kind != Kind::File {
            return;
        }
        let Some(&node) = st.by_name.get(&(parent, name.to_owned())) else {
            return; // never looked up: nothing can have it open
        };
        if st.nodes.get(&node).is_some_and(|n| n.names.len() > 1) {
            return;
        }
        let write = self.is_upper(e);
        if self.node_files().get(node, write).is_none() {
            let read_only =
                |st: &mut State| self.open_file(st, node, libc::O_RDONLY).map(|f| (f, false));
            let opened = if write {
                self.open_file(st, node, libc::O_RDWR)
                    .map(|f| (f, true))
                    .or_else(|_| read_only(st))
            } else {
                read_only(st)
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
        self.node_files().pin(node);
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
            .nodes
            .get(&node)
            .and_then(|n| n.names.first().cloned())
            .ok_or_else(|| os_err(libc::ENOENT))?;
        let (parent_rel, layers) = self.dir_layers(st, parent)?;
        let e = self.stack.lookup_child(&layers, &parent_rel, &name)?;
        Ok((parent_rel.join(name), e))
    }

    /// Where `node`'s file must be when its directory is made of a single
    /// layer (see [`Stack::only_place`]).
    fn only_place(&self, st: &mut State, node: u64) -> io::Result<Option<Place>> {
        let Some((parent, name)) = st.nodes.get(&node).and_then(|n| n.names.first().cloned())
        else {
            return Ok(None);
        };
        let (parent_rel, layers) = self.dir_layers(st, parent)?;
        Ok(self.stack.only_place(&layers, &parent_rel, &name))
    }

    /// The path of directory `dir` and the layers merging into it.
    fn dir_layers(&self, st: &mut State, dir: u64) -> io::Result<(PathBuf, Vec<usize>)> {
        let gen = st.layers_gen;
        if let Some((g, layers)) = st.nodes.get(&dir).and_then(|n| n.dir_layers.as_deref()) {
            if *g == gen {
                let layers = layers.clone();
                return Ok((st.path(dir)?, layers));
            }
        }
        let (rel, e) = self.resolve(st, dir)?;
        if e.kind != Kind::Dir {
            return Err(os_err(libc::ENOTDIR));
        }
        if let Some(n) = st.nodes.get_mut(&dir) {
            n.dir_layers = Some(Box::new((gen, e.dir_layers.clone())));
        }
        Ok((rel, e.dir_layers))
    }

    /// Directory `node` from its cached layers: one stat of its top
    /// layer's directory instead of a lookup in every layer. (Unlinking
    /// makes the kernel ask for the parent's attributes every time.)
    fn cached_dir(&self, st: &State, node: u64) -> Option<Entry> {
        let (gen, layers) = st.nodes.get(&node)?.dir_layers.as_deref()?;
        if *gen != st.layers_gen {
            return None;
        }
        let top = *layers.first()?;
        let meta = self
            .stack
            .dir(top, &st.path(node).ok()?)
            .and_then(|d| d.stat_self())
            .ok()?;
        Some(Entry {
            layer: top,
            kind: Kind::Dir,
            meta,
            dir_layers: layers.clone(),
        })
    }

    fn node_attr(&self, st: &mut State, node: u64) -> io::Result<FileAttr> {
        let e = match self.cached_dir(st, node) {
            Some(e) => e,
            None => self.resolve(st, node)?.1,
        };
        if self.is_upper(&e) && !st.by_identity.contains_key(&Self::identity(&e.meta)) {
            st.alias(node, Self::identity(&e.meta));
        }
        Ok(self.shown(union_attr(node, &e)))
    }

    /// Makes sure `rel` is in the upper layer, copying it (and its parents)
    /// up when it is only in a lower one. Returns where it is there.
    fn copy_up(&self, st: &mut State, rel: &Path) -> io::Result<Place> {
        let upper = self.upper()?;
        let e = self.stack.lookup(rel)?;
        if self.is_upper(&e) {
            return upper.place(rel);
        }
        if let Some(parent) = rel.parent() {
            if !parent.as_os_str().is_empty() {
                self.copy_up(st, parent)?;
            }
        }
        let at = upper.place(rel)?;
        upper.copy_up(&self.place_of(&e, rel)?, &e.meta, &at)?;
        if e.kind == Kind::Dir {
            st.layers_gen += 1;
        }
        let copied = at.stat()?;
        let node = match (rel.parent(), rel.file_name()) {
            (Some(parent), Some(name)) if e.meta.nlink > 1 && e.kind != Kind::Dir => self
                .node_of_path(st, parent)
                .map(|p| Key::Name(Box::new((p, name.to_owned())))),
            _ => Some(Self::identity(&e.meta)),
        }
        .and_then(|key| st.by_identity.get(&key).copied());
        if let Some(node) = node {
            st.alias(node, Self::identity(&copied));
            // The lower file is no longer the node's data.
            let lower = self.node_files().remove(node);
            drop(lower);
        }
        Ok(at)
    }

    /// [`UnionFs::copy_up`] for a node: resolved one step from its
    /// parent's cached layers, so a node already in the upper layer costs
    /// one stat instead of a walk from the root.
    fn copy_up_node(&self, st: &mut State, node: u64) -> io::Result<Place> {
        let (rel, e) = self.resolve(st, node)?;
        if self.is_upper(&e) {
            return self.upper()?.place(&rel);
        }
        self.copy_up(st, &rel)
    }

    /// Upper directory `rel`, which merges `layers`: copied up first when
    /// only a lower layer has it.
    fn upper_dir(&self, st: &mut State, rel: &Path, layers: &[usize]) -> io::Result<Dir> {
        let upper = self.upper()?;
        if layers.first().copied() != self.stack.upper() && !rel.as_os_str().is_empty() {
            self.copy_up(st, rel)?;
        }
        upper.dir(rel)
    }

    /// The node already known for directory `rel`, if any.
    fn node_of_path(&self, st: &State, rel: &Path) -> Option<u64> {
        let e = self.stack.lookup(rel).ok()?;
        st.by_identity.get(&Self::identity(&e.meta)).copied()
    }

    /// Copies `rel` and, for a directory, everything visible below it.
    fn copy_up_tree(&self, st: &mut State, rel: &Path) -> io::Result<()> {
        // A lower directory that holds the upper layer itself (the host's
        // / under an upper in $HOME) would copy into itself without end.
        if let (Some(upper), Ok(e)) = (&self.upper, self.stack.lookup(rel)) {
            if !self.is_upper(&e)
                && upper
                    .path()
                    .starts_with(self.stack.layer_dir(e.layer).join(rel))
            {
                return Err(os_err(libc::EXDEV));
            }
        }
        self.copy_up(st, rel)?;
        if self.stack.lookup(rel)?.kind == Kind::Dir {
            for child in self.stack.read_dir(rel)? {
                self.copy_up_tree(st, &rel.join(&child.name))?;
            }
        }
        Ok(())
    }

    /// Owner for a new object in `parent_upper`, as the kernel would give it.
    fn new_owner(&self, req: &Request, parent_upper: &Dir) -> Option<(u32, u32, bool)> {
        if !self.as_root {
            return None;
        }
        let pm = parent_upper.stat_self().ok()?;
        let sgid = pm.mode & libc::S_ISGID != 0;
        let uid = self.ids.stored_uid(req.uid()).ok()?;
        let gid = if sgid {
            pm.gid
        } else {
            self.ids.stored_gid(req.gid()).ok()?
        };
        Some((uid, gid, sgid))
    }

    /// Creates a new object named `name` in `parent` with `build` (given
    /// the directory and the name to make it at), given to the requester
    /// (unless it is a new name of an existing file). As in kernel
    /// overlayfs, it is made in place where nothing is there in the upper
    /// layer, and in the work directory where it must replace a whiteout
    /// in one step. (Making every new file in the one work directory also
    /// had ext4 search that directory's block group for a free inode each
    /// time, among inodes just freed there.)
    fn create_object(
        &self,
        req: &Request,
        st: &mut State,
        parent: u64,
        name: &OsStr,
        new_inode: bool,
        build: impl FnOnce(&Dir, &OsStr) -> io::Result<()>,
    ) -> io::Result<FileAttr> {
        let (parent_rel, layers) = self.dir_layers(st, parent)?;
        match self.stack.lookup_child(&layers, &parent_rel, name) {
            Ok(_) => return Err(os_err(libc::EEXIST)),
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(e) => return Err(e),
        }
        let upper = self.upper()?;
        let parent_upper = self.upper_dir(st, &parent_rel, &layers)?;
        let in_place = match parent_upper.stat(name) {
            Err(e) if e.kind() == io::ErrorKind::NotFound => true,
            Err(e) => return Err(e),
            Ok(_) => false, // only a whiteout can be there
        };
        let tmp = if in_place {
            parent_upper.place(name)?
        } else {
            upper.work().place(&upper.temp())?
        };
        build(&tmp.dir, &tmp.name)?;
        let res = self.finish_new(req, &tmp, &parent_upper, name, in_place, new_inode);
        if res.is_err() {
            let _ = tmp.dir.remove_any(&tmp.name);
        }
        res?;
        self.entry_attr(st, parent, name)
    }

    fn finish_new(
        &self,
        req: &Request,
        tmp: &Place,
        parent_upper: &Dir,
        name: &OsStr,
        in_place: bool,
        new_inode: bool,
    ) -> io::Result<()> {
        let upper = self.upper()?;
        let meta = tmp.stat()?;
        let is_dir = meta.kind() == Kind::Dir;
        let owner = new_inode
            .then(|| self.new_owner(req, parent_upper))
            .flatten();
        if let Some((uid, gid, sgid)) = owner {
            tmp.chown(Some(uid), Some(gid))?;
            if sgid && is_dir {
                tmp.chmod((meta.mode | libc::S_ISGID) & 0o7777)?;
            }
        }
        if in_place {
            return Ok(());
        }
        // The new object replaces a whiteout, and a directory must not show
        // what the lower layers had.
        if is_dir {
            tmp.dir.set_xattr(&tmp.name, "user.overlay.opaque", b"y")?;
        }
        upper.replace(&tmp.name, &parent_upper.place(name)?)
    }

    /// Removes `name` from `parent`, leaving a whiteout when a lower layer
    /// still has it.
    fn remove(&self, st: &mut State, parent: u64, name: &OsStr, dir: bool) -> io::Result<()> {
        let (parent_rel, layers) = self.dir_layers(st, parent)?;
        let rel = parent_rel.join(name);
        let e = self.stack.lookup_child(&layers, &parent_rel, name)?;
        match (dir, e.kind == Kind::Dir) {
            (true, false) => return Err(os_err(libc::ENOTDIR)),
            (false, true) => return Err(os_err(libc::EISDIR)),
            _ => {}
        }
        if dir && !self.stack.read_dir_in(&e.dir_layers, &rel)?.is_empty() {
            return Err(os_err(libc::ENOTEMPTY));
        }
        let upper = self.upper()?;
        self.keep_open_unnamed(st, parent, name, &e);
        let needs_whiteout =
            !self.is_upper(&e) || self.stack.lower_has_in(&layers, &parent_rel, name);
        let at = self.upper_dir(st, &parent_rel, &layers)?.place(name)?;
        let mut whited_out = false;
        if self.is_upper(&e) {
            if needs_whiteout {
                // One step: the upper entry leaves for the work directory
                // and a whiteout takes its place, so a crash cannot bring
                // the lower entry back.
                whited_out = upper.replace_with_whiteout(&at)?;
            }
            if !whited_out {
                if dir {
                    // Only whiteouts can be left in it: it is empty in the union.
                    at.dir.remove_any(&at.name)?;
                } else {
                    at.dir.unlink(&at.name)?;
                }
            }
        }
        if needs_whiteout && !whited_out {
            upper.make_whiteout(&at)?;
        }
        if dir || !upper.device_whiteouts() {
            st.layers_gen += 1;
        }
        st.unname(parent, name);
        Ok(())
    }

    fn do_rename(
        &self,
        st: &mut State,
        from: (u64, &OsStr),
        to: (u64, &OsStr),
        flags: RenameFlags,
    ) -> io::Result<()> {
        st.layers_gen += 1;
        let src_rel = st.path(from.0)?.join(from.1);
        let dst_rel = st.path(to.0)?.join(to.1);
        let src = self.stack.lookup(&src_rel)?;
        let dst = match self.stack.lookup(&dst_rel) {
            Ok(e) => Some(e),
            Err(e) if e.kind() == io::ErrorKind::NotFound => None,
            Err(e) => return Err(e),
        };
        let exchange = flags.contains(RenameFlags::RENAME_EXCHANGE);
        if flags.contains(RenameFlags::RENAME_NOREPLACE) && dst.is_some() {
            return Err(os_err(libc::EEXIST));
        }
        if exchange && dst.is_none() {
            return Err(os_err(libc::ENOENT));
        }
        // Two names of one upper file (a lower hard link counts as two
        // files, as its copy-up would separate them).
        let same_file = dst.as_ref().is_some_and(|d| {
            self.is_upper(d)
                && self.is_upper(&src)
                && (d.meta.dev, d.meta.ino) == (src.meta.dev, src.meta.ino)
        });
        if src_rel == dst_rel || (same_file && !exchange) {
            // rename(2) between names of one file does nothing and succeeds.
            return Ok(());
        }
        if !exchange {
            if let Some(d) = &dst {
                match (src.kind == Kind::Dir, d.kind == Kind::Dir) {
                    (true, false) => return Err(os_err(libc::ENOTDIR)),
                    (false, true) => return Err(os_err(libc::EISDIR)),
                    (true, true) if !self.stack.read_dir(&dst_rel)?.is_empty() => {
                        return Err(os_err(libc::ENOTEMPTY))
                    }
                    _ => {}
                }
                self.keep_open_unnamed(st, to.0, to.1, d);
            }
        }
        let upper = self.upper()?;
        // Full copy-up: a directory moves as a complete upper tree (no
        // redirect xattrs), marked opaque at its new place.
        self.copy_up_tree(st, &src_rel)?;
        if let Some(p) = dst_rel.parent().filter(|p| !p.as_os_str().is_empty()) {
            self.copy_up(st, p)?;
        }
        let (src_at, dst_at) = (upper.place(&src_rel)?, upper.place(&dst_rel)?);
        if exchange {
            self.copy_up_tree(st, &dst_rel)?;
            src_at.dir.rename(
                &src_at.name,
                &dst_at.dir,
                &dst_at.name,
                nix::fcntl::RenameFlags::RENAME_EXCHANGE,
            )?;
            for (at, kind) in [
                (&src_at, dst.as_ref().map(|d| d.kind)),
                (&dst_at, Some(src.kind)),
            ] {
                if kind == Some(Kind::Dir) {
                    upper.set_opaque(at)?;
                }
            }
            let tmp_name = OsString::from("\0exchange");
            st.rename_name(from, (0, &tmp_name));
            st.rename_name(to, from);
            st.rename_name((0, &tmp_name), to);
            return Ok(());
        }
        let src_needs_whiteout = self.stack.lower_has(&src_rel);
        if let Ok(m) = dst_at.stat() {
            if m.kind() == Kind::Dir || src.kind == Kind::Dir {
                // An emptied directory (whiteouts only) or a whiteout under
                // a directory: clear it so that rename(2) can land.
                dst_at.dir.remove_any(&dst_at.name)?;
            }
        }
        src_at.dir.rename(
            &src_at.name,
            &dst_at.dir,
            &dst_at.name,
            nix::fcntl::RenameFlags::empty(),
        )?;
        if src.kind == Kind::Dir {
            upper.set_opaque(&dst_at)?;
        }
        if src_needs_whiteout {
            upper.make_whiteout(&src_at)?;
        }
        st.unname(to.0, to.1);
        st.rename_name(from, to);
        Ok(())
    }

    fn open_file(&self, st: &mut State, node: u64, flags: i32) -> io::Result<File> {
        let writes = flags & libc::O_ACCMODE != libc::O_RDONLY || flags & libc::O_TRUNC != 0;
        if let Err(e) = st.path(node) {
            // Unlinked but still open (reopened through /proc/PID/fd):
            // reopen the file an existing handle holds. Writing needs a
            // handle that writes already (so an upper file): a read-only
            // handle may be a lower layer's file, which must never be
            // written.
            use std::os::fd::AsRawFd;
            let writable = |f: &File| {
                nix::fcntl::fcntl(f, nix::fcntl::FcntlArg::F_GETFL)
                    .is_ok_and(|fl| fl & libc::O_ACCMODE != libc::O_RDONLY)
            };
            // Held (not just its number) while reopened: a release may
            // close the handle meanwhile.
            let held = self
                .handles()
                .file_of_node(node, |f| !writes || writable(f));
            let held = held.ok_or(if writes { os_err(libc::EACCES) } else { e })?;
            let fd = held.as_raw_fd();
            return std::fs::OpenOptions::new()
                .read(flags & libc::O_ACCMODE != libc::O_WRONLY)
                .write(flags & libc::O_ACCMODE != libc::O_RDONLY)
                .open(format!("/proc/self/fd/{fd}"));
        }
        let at = if writes {
            self.copy_up_node(st, node)?
        } else if let Some(at) = self.only_place(st, node)? {
            // Opened as it is, without a stat first: a READ is only ever
            // for a regular file, and O_NOFOLLOW keeps it one.
            at
        } else {
            let (rel, e) = self.resolve(st, node)?;
            self.place_of(&e, &rel)?
        };
        // With the writeback cache the kernel picks every write's offset
        // (O_APPEND included) and may read to fill a partial page, so a
        // file opened for writing is opened for reading too where allowed.
        let keep = libc::O_TRUNC | libc::O_SYNC | libc::O_DSYNC | libc::O_NOATIME;
        let write =
            writes && flags & libc::O_ACCMODE != libc::O_RDONLY || flags & libc::O_TRUNC != 0; // O_RDONLY|O_TRUNC truncates on Linux
        let read_asked = flags & libc::O_ACCMODE != libc::O_WRONLY;
        let open = |read: bool| {
            let access = match (read, write) {
                (true, true) => OFlag::O_RDWR,
                (false, true) => OFlag::O_WRONLY,
                _ => OFlag::O_RDONLY,
            };
            at.open(access | OFlag::from_bits_truncate(flags & keep), 0)
        };
        match open(true) {
            Err(e) if !read_asked && e.raw_os_error() == Some(libc::EACCES) => open(false),
            other => other,
        }
    }

    fn set_times(at: &Place, atime: Option<TimeOrNow>, mtime: Option<TimeOrNow>) -> io::Result<()> {
        use nix::sys::time::TimeSpec;
        let spec = |t: Option<TimeOrNow>| match t {
            None => TimeSpec::UTIME_OMIT,
            Some(TimeOrNow::Now) => TimeSpec::UTIME_NOW,
            Some(TimeOrNow::SpecificTime(t)) => match t.duration_since(UNIX_EPOCH) {
                Ok(d) => TimeSpec::from_duration(d),
                Err(e) => {
                    let d = e.duration();
                    let ns = d.subsec_nanos();
                    let secs = -(d.as_secs() as i64) - i64::from(ns > 0);
                    let nsec = if ns > 0 { 1_000_000_000 - ns } else { 0 };
                    TimeSpec::new(secs, nsec as i64)
                }
            },
        };
        at.dir.set_times(&at.name, &spec(atime), &spec(mtime))
    }

    #[allow(clippy::too_many_arguments)]
    fn do_setattr(
        &self,
        st: &mut State,
        node: u64,
        mode: Option<u32>,
        uid: Option<u32>,
        gid: Option<u32>,
        size: Option<u64>,
        atime: Option<TimeOrNow>,
        mtime: Option<TimeOrNow>,
        fh: Option<FileHandle>,
    ) -> io::Result<FileAttr> {
        let at = match st.path(node) {
            Ok(_) => Some(self.copy_up_node(st, node)?),
            Err(_) => None, // unlinked: only the open handle is left
        };
        if let Some(size) = size {
            let held = self.held_file(node, fh, at.is_none());
            match held {
                Some(f) if at.is_none() || f.set_len(size).is_ok() => {
                    f.set_len(size)?;
                }
                _ => {
                    let at = at.as_ref().ok_or_else(|| os_err(libc::ENOENT))?;
                    at.open(OFlag::O_WRONLY, 0)?.set_len(size)?;
                }
            }
        }
        let Some(at) = at else {
            return self.handle_attr(st, node, fh);
        };
        if uid.is_some() || gid.is_some() {
            at.chown(
                uid.map(|u| self.ids.stored_uid(u)).transpose()?,
                gid.map(|g| self.ids.stored_gid(g)).transpose()?,
            )?;
        }
        if let Some(mode) = mode {
            // Never through a symlink: that would change its target's mode.
            if at.stat()?.kind() != Kind::Symlink {
                at.chmod(mode & 0o7777)?;
            }
        }
        if atime.is_some() || mtime.is_some() {
            Self::set_times(&at, atime, mtime)?;
        }
        self.node_attr(st, node)
    }

    /// The open file `fh` names, or (handle 0, no FUSE opens) the node's
    /// own file when `unlinked` (the only way left to it).
    fn held_file(
        &self,
        node: u64,
        fh: Option<FileHandle>,
        unlinked: bool,
    ) -> Option<std::sync::Arc<File>> {
        match fh {
            Some(fh) if fh.0 != 0 => self.handles().file(fh.0).cloned(),
            _ if unlinked => self.node_files().any(node),
            _ => None,
        }
    }

    fn handle_attr(
        &self,
        st: &mut State,
        node: u64,
        fh: Option<FileHandle>,
    ) -> io::Result<FileAttr> {
        let held = fh.and_then(|fh| self.handles().file(fh.0).cloned());
        match held {
            Some(f) => Ok(self.shown(attr_of(node, &f.metadata()?))),
            None => match self.node_attr(st, node) {
                // Unlinked while open: what the open file says (nlink 0),
                // through a handle or the node's kept file (no FUSE opens).
                Err(e) if e.raw_os_error() == Some(libc::ENOENT) => {
                    let kept = self.handles().file_of_node(node, |_| true);
                    kept.or_else(|| self.node_files().any(node))
                        .and_then(|f| f.metadata().ok())
                        .map(|m| self.shown(attr_of(node, &m)))
                        .ok_or(e)
                }
                other => other,
            },
        }
    }

    fn list_dir(&self, st: &mut State, node: u64) -> io::Result<Vec<DirItem>> {
        let (rel, layers) = self.dir_layers(st, node)?;
        let parent = st
            .nodes
            .get(&node)
            .and_then(|n| n.names.first())
            .map_or(ROOT, |(p, _)| *p);
        let dir = |node, name: &str| DirItem {
            node,
            kind: FileType::Directory,
            name: OsString::from(name),
            attr: None,
        };
        let mut out = vec![dir(node, "."), dir(parent, "..")];
        for e in self.stack.read_dir_in(&layers, &rel)? {
            let key = if Some(e.layer) != self.stack.upper() && e.kind != Kind::Dir && e.nlink > 1 {
                Key::Name(Box::new((node, e.name.clone())))
            } else {
                Key::Inode(e.dev_ino.0, e.dev_ino.1)
            };
            let ino = st.node_for(key, node, &e.name);
            let attr = (e.kind != Kind::Dir).then(|| self.shown(attr_of(ino, &e.meta)));
            out.push(DirItem {
                node: ino,
                kind: file_type(e.kind),
                name: e.name,
                attr,
            });
        }
        Ok(out)
    }

    /// Where `node`'s file is now, in whichever layer shows it.
    fn xattr_target(&self, st: &mut State, node: u64) -> io::Result<Place> {
        let (rel, e) = self.resolve(st, node)?;
        self.place_of(&e, &rel)
    }
}

/// Answers a request that makes or finds a name.
fn reply_entry(reply: ReplyEntry, res: io::Result<FileAttr>) {
    match res {
        Ok(attr) => reply.entry(&ttl(&attr), &attr, Generation(0)),
        Err(e) => reply.error(err(e)),
    }
}

fn reply_xattr(reply: ReplyXattr, size: u32, data: &[u8]) {
    if size == 0 {
        reply.size(data.len() as u32);
    } else if data.len() > size as usize {
        reply.error(Errno::ERANGE);
    } else {
        reply.data(data);
    }
}

impl Filesystem for UnionFs {
    fn init(&mut self, _req: &Request, config: &mut KernelConfig) -> io::Result<()> {
        let _ = config.set_max_readahead(1 << 20);
        // Passthrough (reads and writes straight to the layer's file) and
        // the writeback cache exclude each other: decided here, before the
        // reply, by whether the kernel offers it and burrowfs may use it.
        self.passthrough = self.want_passthrough
            && config
                .add_capabilities(fuser::InitFlags::FUSE_PASSTHROUGH)
                .is_ok()
            && config.set_max_stack_depth(1).is_ok();
        let _ = config.add_capabilities(fuser::InitFlags::FUSE_PARALLEL_DIROPS);
        if !self.passthrough {
            let _ = config.add_capabilities(fuser::InitFlags::FUSE_WRITEBACK_CACHE);
            // burrowfs clears set-user-ID on writes and truncates itself, so
            // the kernel need not ask for security.capability before every
            // write (it remembers a file has none: SB_NOSEC).
            let _ = config.add_capabilities(fuser::InitFlags::FUSE_HANDLE_KILLPRIV_V2);
        }
        let _ = config.add_capabilities(
            fuser::InitFlags::FUSE_DO_READDIRPLUS | fuser::InitFlags::FUSE_READDIRPLUS_AUTO,
        );
        Ok(())
    }

    fn lookup(&self, _req: &Request, parent: INodeNo, name: &OsStr, reply: ReplyEntry) {
        let mut st = self.lock();
        match self.entry_attr(&mut st, parent.0, name) {
            Ok(attr) => reply.entry(&ttl(&attr), &attr, Generation(0)),
            // A negative entry: the kernel remembers the name is absent
            // (every change to it comes through this mount).
            Err(e) if e.raw_os_error() == Some(libc::ENOENT) => {
                reply.entry(&TTL, &negative_attr(), Generation(0))
            }
            Err(e) => reply.error(err(e)),
        }
    }

    fn getattr(&self, _req: &Request, ino: INodeNo, fh: Option<FileHandle>, reply: ReplyAttr) {
        let mut st = self.lock();
        match self.handle_attr(&mut st, ino.0, fh) {
            Ok(attr) => reply.attr(&ttl(&attr), &attr),
            Err(e) => reply.error(err(e)),
        }
    }

    fn setattr(
        &self,
        _req: &Request,
        ino: INodeNo,
        mode: Option<u32>,
        uid: Option<u32>,
        gid: Option<u32>,
        size: Option<u64>,
        atime: Option<TimeOrNow>,
        mtime: Option<TimeOrNow>,
        _ctime: Option<SystemTime>,
        fh: Option<FileHandle>,
        _crtime: Option<SystemTime>,
        _chgtime: Option<SystemTime>,
        _bkuptime: Option<SystemTime>,
        _flags: Option<fuser::BsdFileFlags>,
        reply: ReplyAttr,
    ) {
        let mut st = self.lock();
        let mut res = self.do_setattr(&mut st, ino.0, mode, uid, gid, size, atime, mtime, fh);
        // The kernel leaves clearing set-user-ID on a truncate to burrowfs
        // (FUSE_HANDLE_KILLPRIV_V2), but fuser does not pass on whether the
        // caller may keep it (FATTR_KILL_SUIDGID): burrowfs clears it on
        // every truncate, also where a caller with CAP_FSETID would keep it.
        if let Ok(attr) = &res {
            let perm = u32::from(attr.perm);
            if size.is_some() && without_suidgid(perm) != perm & 0o7777 {
                res = self.do_setattr(
                    &mut st,
                    ino.0,
                    Some(without_suidgid(perm)),
                    None,
                    None,
                    None,
                    None,
                    None,
                    fh,
                );
            }
        }
        match res {
            Ok(attr) => reply.attr(&ttl(&attr), &attr),
            Err(e) => reply.error(err(e)),
        }
    }

    fn readlink(&self, _req: &Request, ino: INodeNo, reply: ReplyData) {
        let mut st = self.lock();
        match self
            .xattr_target(&mut st, ino.0)
            .and_then(|at| at.read_link())
        {
            Ok(target) => reply.data(target.as_os_str().as_encoded_bytes()),
            Err(e) => reply.error(err(e)),
        }
    }

    fn mknod(
        &self,
        req: &Request,
        parent: INodeNo,
        name: &OsStr,
        mode: u32,
        _umask: u32,
        rdev: u32,
        reply: ReplyEntry,
    ) {
        if mode & libc::S_IFMT == libc::S_IFCHR && rdev == 0 {
            // 0/0 is the whiteout device: it cannot be a file of the union.
            return reply.error(Errno::EPERM);
        }
        let mut st = self.lock();
        let build = |dir: &Dir, name: &OsStr| {
            let kind = SFlag::from_bits_truncate(mode & libc::S_IFMT);
            dir.mknod(name, kind, mode & 0o7777, rdev as u64)
        };
        reply_entry(
            reply,
            self.create_object(req, &mut st, parent.0, name, true, build),
        );
    }

    fn mkdir(
        &self,
        req: &Request,
        parent: INodeNo,
        name: &OsStr,
        mode: u32,
        _umask: u32,
        reply: ReplyEntry,
    ) {
        let mut st = self.lock();
        let build = |dir: &Dir, name: &OsStr| {
            dir.mkdir(name, mode & 0o7777)?;
            dir.chmod(name, mode & 0o7777)
        };
        reply_entry(
            reply,
            self.create_object(req, &mut st, parent.0, name, true, build),
        );
    }

    fn unlink(&self, _req: &Request, parent: INodeNo, name: &OsStr, reply: ReplyEmpty) {
        let mut st = self.lock();
        match self.remove(&mut st, parent.0, name, false) {
            Ok(()) => reply.ok(),
            Err(e) => reply.error(err(e)),
        }
    }

    fn rmdir(&self, _req: &Request, parent: INodeNo, name: &OsStr, reply: ReplyEmpty) {
        let mut st = self.lock();
        match self.remove(&mut st, parent.0, name, true) {
            Ok(()) => reply.ok(),
            Err(e) => reply.error(err(e)),
        }
    }

    fn symlink(
        &self,
        req: &Request,
        parent: INodeNo,
        link_name: &OsStr,
        target: &Path,
        reply: ReplyEntry,
    ) {
        let mut st = self.lock();
        let build = |dir: &Dir, name: &OsStr| dir.symlink(target, name);
        reply_entry(
            reply,
            self.create_object(req, &mut st, parent.0, link_name, true, build),
        );
    }

    fn rename(
        &self,
        _req: &Request,
        parent: INodeNo,
        name: &OsStr,
        newparent: INodeNo,
        newname: &OsStr,
        flags: RenameFlags,
        reply: ReplyEmpty,
    ) {
        let mut st = self.lock();
        match self.do_rename(&mut st, (parent.0, name), (newparent.0, newname), flags) {
            Ok(()) => reply.ok(),
            Err(e) => reply.error(err(e)),
        }
    }

    fn link(
        &self,
        req: &Request,
        ino: INodeNo,
        newparent: INodeNo,
        newname: &OsStr,
        reply: ReplyEntry,
    ) {
        let mut st = self.lock();
        let res = st.path(ino.0).and_then(|rel| {
            let src = self.copy_up(&mut st, &rel)?;
            self.create_object(req, &mut st, newparent.0, newname, false, |dir, name| {
                src.dir.hard_link(&src.name, dir, name)
            })
        });
        reply_entry(reply, res);
    }

    fn open(&self, _req: &Request, ino: INodeNo, flags: OpenFlags, reply: ReplyOpen) {
        if self.no_open() {
            // From now on the kernel opens and closes files by itself: a
            // read names the node, and its file is opened here once.
            return reply.error(Errno::ENOSYS);
        }
        let mut st = self.lock();
        let mut tries = 0;
        match self.open_file(&mut st, ino.0, flags.0) {
            Ok(mut file) => {
                let backing = loop {
                    match self.backing_for(&mut st, ino.0, &file, |f| reply.open_backing(f)) {
                        Ok(b) => break b,
                        // The kernel drops a closed file's backing at once
                        // but tells this server later (RELEASE comes in the
                        // background): give that release a moment.
                        Err(Errno::EBUSY) if tries < 100 => {
                            tries += 1;
                            drop(st);
                            std::thread::sleep(Duration::from_millis(1));
                            st = self.lock();
                            file = match self.open_file(&mut st, ino.0, flags.0) {
                                Ok(f) => f,
                                Err(e) => return reply.error(err(e)),
                            };
                        }
                        Err(e) => return reply.error(e),
                    }
                };
                let fh = self
                    .handles()
                    .add(Handle::File(std::sync::Arc::new(file), ino.0));
                self.note_handle(&mut st, fh, backing.as_ref());
                match backing {
                    Some(b) => {
                        reply.opened_passthrough(FileHandle(fh), FopenFlags::FOPEN_NOFLUSH, &b)
                    }
                    // Contents change only through this mount, so the page
                    // cache stays valid from one open to the next.
                    None => reply.opened(
                        FileHandle(fh),
                        FopenFlags::FOPEN_KEEP_CACHE | FopenFlags::FOPEN_NOFLUSH,
                    ),
                }
            }
            Err(e) => reply.error(err(e)),
        }
    }

    fn read(
        &self,
        _req: &Request,
        ino: INodeNo,
        fh: FileHandle,
        offset: u64,
        size: u32,
        _flags: OpenFlags,
        _lock_owner: Option<LockOwner>,
        reply: ReplyData,
    ) {
        let file = match self.io_file(ino.0, fh, false) {
            Ok(f) => f,
            Err(e) => return reply.error(e),
        };
        thread_local! {
            // One buffer per worker, reused: a fresh megabyte per request
            // would cost an mmap and its page faults every time.
            static BUF: std::cell::RefCell<Vec<u8>> = const { std::cell::RefCell::new(Vec::new()) };
        }
        BUF.with_borrow_mut(|buf| {
            if buf.len() < size as usize {
                buf.resize(size as usize, 0);
            }
            let buf = &mut buf[..size as usize];
            let mut filled = 0;
            while filled < buf.len() {
                match file.read_at(&mut buf[filled..], offset + filled as u64) {
                    Ok(0) => break,
                    Ok(n) => filled += n,
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                    Err(e) => return reply.error(err(e)),
                }
            }
            reply.data(&buf[..filled]);
        });
    }

    fn write(
        &self,
        _req: &Request,
        ino: INodeNo,
        fh: FileHandle,
        offset: u64,
        data: &[u8],
        write_flags: WriteFlags,
        _flags: OpenFlags,
        _lock_owner: Option<LockOwner>,
        reply: ReplyWrite,
    ) {
        // The writer may not keep set-user-ID (FUSE_HANDLE_KILLPRIV_V2):
        // burrowfs writes with CAP_FSETID, so it clears the bits itself.
        let kill = write_flags.contains(WriteFlags::FUSE_WRITE_KILL_SUIDGID);
        let file = match self.io_file(ino.0, fh, true) {
            Ok(f) => f,
            Err(e) => return reply.error(e),
        };
        let _turn = self.write_turns[ino.0 as usize % 16]
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        if kill {
            let cleared = file.metadata().and_then(|m| {
                let keep = without_suidgid(m.mode());
                if keep == m.mode() & 0o7777 {
                    return Ok(false);
                }
                file.set_permissions(std::fs::Permissions::from_mode(keep))
                    .map(|()| true)
            });
            match cleared {
                // The kernel still has the old mode: drop its attributes.
                Ok(true) => {
                    if let Some(n) = self.notifier.get() {
                        let _ = n.inval_inode(ino, -1, 0);
                    }
                }
                Ok(false) => {}
                Err(e) => return reply.error(err(e)),
            }
        }
        match file.write_all_at(data, offset) {
            Ok(()) => reply.written(data.len() as u32),
            Err(e) => reply.error(err(e)),
        }
    }

    fn flush(
        &self,
        _req: &Request,
        _ino: INodeNo,
        _fh: FileHandle,
        _lock_owner: LockOwner,
        reply: ReplyEmpty,
    ) {
        // Nothing to do at a close (locks are the kernel's): ENOSYS tells
        // the kernel not to send FLUSH again.
        reply.error(Errno::ENOSYS);
    }

    fn forget(&self, _req: &Request, ino: INodeNo, _nlookup: u64) {
        // The kernel has dropped the inode, so nothing has the file open:
        // a pinned file of an unlinked node can go.
        let file = self.node_files().remove(ino.0);
        drop(file);
    }

    fn release(
        &self,
        _req: &Request,
        ino: INodeNo,
        fh: FileHandle,
        _flags: OpenFlags,
        _lock_owner: Option<LockOwner>,
        _flush: bool,
        reply: ReplyEmpty,
    ) {
        let handle = self.handles().map.remove(&fh.0);
        if self.passthrough {
            self.drop_handle_io(&mut self.lock(), ino.0, fh.0);
        }
        reply.ok();
        // The file closes here, outside every lock.
        drop(handle);
    }

    fn fsync(
        &self,
        _req: &Request,
        ino: INodeNo,
        fh: FileHandle,
        datasync: bool,
        reply: ReplyEmpty,
    ) {
        // Any descriptor of the file syncs it.
        let file = match self.io_file(ino.0, fh, false) {
            Ok(f) => f,
            Err(e) => return reply.error(e),
        };
        let res = if datasync {
            file.sync_data()
        } else {
            file.sync_all()
        };
        match res {
            Ok(()) => reply.ok(),
            Err(e) => reply.error(err(e)),
        }
    }

    fn opendir(&self, _req: &Request, ino: INodeNo, _flags: OpenFlags, reply: ReplyOpen) {
        let listed = self.list_dir(&mut self.lock(), ino.0);
        match listed {
            Ok(list) => {
                let fh = self.handles().add(Handle::Dir(std::sync::Arc::new(list)));
                reply.opened(FileHandle(fh), FopenFlags::empty());
            }
            Err(e) => reply.error(err(e)),
        }
    }

    fn readdir(
        &self,
        _req: &Request,
        _ino: INodeNo,
        fh: FileHandle,
        offset: u64,
        mut reply: ReplyDirectory,
    ) {
        let Some(list) = self.handles().dir(fh.0) else {
            return reply.error(Errno::EBADF);
        };
        for (i, item) in list.iter().enumerate().skip(offset as usize) {
            if reply.add(INodeNo(item.node), (i + 1) as u64, item.kind, &item.name) {
                break;
            }
        }
        reply.ok();
    }

    fn readdirplus(
        &self,
        _req: &Request,
        ino: INodeNo,
        fh: FileHandle,
        offset: u64,
        mut reply: fuser::ReplyDirectoryPlus,
    ) {
        let Some(list) = self.handles().dir(fh.0) else {
            return reply.error(Errno::EBADF);
        };
        let mut st = self.lock();
        // "." and ".." come first: the directory's own attributes only for them.
        let dir_attr = (offset < 2)
            .then(|| self.node_attr(&mut st, ino.0).ok())
            .flatten();
        for (i, item) in list.iter().enumerate().skip(offset as usize) {
            // The attributes a lookup would give, sent along with the name.
            let attr = match item.name.as_encoded_bytes() {
                b"." | b".." => dir_attr.map(|a| FileAttr {
                    ino: INodeNo(item.node),
                    ..a
                }),
                _ => item
                    .attr
                    .or_else(|| self.entry_attr(&mut st, ino.0, &item.name).ok()),
            };
            let Some(attr) = attr else { continue };
            if reply.add(
                INodeNo(attr.ino.0),
                (i + 1) as u64,
                &item.name,
                &ttl(&attr),
                &attr,
                Generation(0),
            ) {
                break;
            }
        }
        reply.ok();
    }

    fn releasedir(
        &self,
        _req: &Request,
        _ino: INodeNo,
        fh: FileHandle,
        _flags: OpenFlags,
        reply: ReplyEmpty,
    ) {
        let handle = self.handles().map.remove(&fh.0);
        reply.ok();
        drop(handle);
    }

    fn statfs(&self, _req: &Request, _ino: INodeNo, reply: ReplyStatfs) {
        let dir = match &self.upper {
            Some(u) => u.root(),
            None => self.stack.layer_root(0),
        };
        match nix::sys::statvfs::fstatvfs(dir) {
            Ok(s) => reply.statfs(
                s.blocks(),
                s.blocks_free(),
                s.blocks_available(),
                s.files(),
                s.files_free(),
                s.block_size() as u32,
                s.name_max() as u32,
                s.fragment_size() as u32,
            ),
            Err(e) => reply.error(err(nix_err(e))),
        }
    }

    fn setxattr(
        &self,
        _req: &Request,
        ino: INodeNo,
        name: &OsStr,
        value: &[u8],
        flags: i32,
        _position: u32,
        reply: ReplyEmpty,
    ) {
        if upper::is_overlay_xattr(name) {
            return reply.error(Errno::EPERM);
        }
        let mut st = self.lock();
        let res = st
            .path(ino.0)
            .and_then(|rel| self.copy_up(&mut st, &rel))
            .and_then(|at| at.set_xattr(name, value, flags));
        match res {
            Ok(()) => reply.ok(),
            Err(e) => reply.error(err(e)),
        }
    }

    fn getxattr(&self, _req: &Request, ino: INodeNo, name: &OsStr, size: u32, reply: ReplyXattr) {
        if upper::is_overlay_xattr(name) {
            return reply.error(Errno::NO_XATTR);
        }
        let mut st = self.lock();
        match self
            .xattr_target(&mut st, ino.0)
            .and_then(|at| at.get_xattr(name))
        {
            Ok(Some(value)) => reply_xattr(reply, size, &value),
            Ok(None) => reply.error(Errno::NO_XATTR),
            Err(e) => reply.error(err(e)),
        }
    }

    fn listxattr(&self, _req: &Request, ino: INodeNo, size: u32, reply: ReplyXattr) {
        let mut st = self.lock();
        match self
            .xattr_target(&mut st, ino.0)
            .and_then(|at| at.list_xattrs())
        {
            Ok(names) => {
                let mut data = Vec::new();
                for n in names.iter().filter(|n| !upper::is_overlay_xattr(n)) {
                    data.extend_from_slice(n.as_encoded_bytes());
                    data.push(0);
                }
                reply_xattr(reply, size, &data);
            }
            Err(e) => reply.error(err(e)),
        }
    }

    fn removexattr(&self, _req: &Request, ino: INodeNo, name: &OsStr, reply: ReplyEmpty) {
        if upper::is_overlay_xattr(name) {
            return reply.error(Errno::NO_XATTR);
        }
        let mut st = self.lock();
        let res = st
            .path(ino.0)
            .and_then(|rel| {
                let e = self.stack.lookup(&rel)?;
                if self.place_of(&e, &rel)?.get_xattr(name)?.is_none() {
                    return Err(os_err(libc::ENODATA));
                }
                self.copy_up(&mut st, &rel)
            })
            .and_then(|at| at.remove_xattr(name));
        match res {
            Ok(()) => reply.ok(),
            Err(e) => reply.error(err(e)),
        }
    }

    fn create(
        &self,
        req: &Request,
        parent: INodeNo,
        name: &OsStr,
        mode: u32,
        _umask: u32,
        _flags: i32, // O_APPEND is the kernel's to apply (writeback cache)
        reply: ReplyCreate,
    ) {
        let mut st = self.lock();
        let mut opened: Option<File> = None;
        let build = |dir: &Dir, name: &OsStr| {
            let f = dir.open_file(
                name,
                OFlag::O_RDWR | OFlag::O_CREAT | OFlag::O_EXCL,
                mode & 0o7777,
            )?;
            // The mode is applied as given (the kernel already masked it).
            f.set_permissions(std::fs::Permissions::from_mode(mode & 0o7777))?;
            opened = Some(f);
            Ok(())
        };
        match self.create_object(req, &mut st, parent.0, name, true, build) {
            Ok(attr) => {
                let file = opened.expect("created file");
                if self.no_open() {
                    // Handle 0, as for every open: the new file becomes
                    // the node's own.
                    let closing =
                        self.node_files()
                            .insert(attr.ino.0, std::sync::Arc::new(file), true, true);
                    drop(st);
                    drop(closing);
                    let flags = FopenFlags::FOPEN_NOFLUSH | FopenFlags::FOPEN_KEEP_CACHE;
                    return reply.created(&TTL, &attr, Generation(0), FileHandle(0), flags);
                }
                // A new inode: nothing else has it open.
                let backing = self
                    .backing_for(&mut st, attr.ino.0, &file, |f| reply.open_backing(f))
                    .unwrap_or(None);
                let fh = self
                    .handles()
                    .add(Handle::File(std::sync::Arc::new(file), attr.ino.0));
                self.note_handle(&mut st, fh, backing.as_ref());
                let flags = FopenFlags::FOPEN_NOFLUSH;
                match backing {
                    Some(b) => reply.created_passthrough(
                        &TTL,
                        &attr,
                        Generation(0),
                        FileHandle(fh),
                        flags,
                        &b,
                    ),
                    None => reply.created(
                        &TTL,
                        &attr,
                        Generation(0),
                        FileHandle(fh),
                        flags | FopenFlags::FOPEN_KEEP_CACHE,
                    ),
                }
            }
            Err(e) => reply.error(err(e)),
        }
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
    config.clone_fd = true;
    let slot = fs.notifier_slot();
    let session = fuser::Session::from_fd(fs, fd, fuser::SessionACL::All, config)?;
    let _ = slot.set(session.notifier());
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

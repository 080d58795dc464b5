//! The node table: burrowfs' own node numbers for the files the kernel
//! knows, the names each is known by (paths are rebuilt from them), and
//! the open files and directories the kernel holds handles to.

use crate::layer_file::LayerFile;
use std::collections::HashMap;
use std::ffi::{OsStr, OsString};
use std::hash::{BuildHasher, RandomState};
use std::io;
use std::path::PathBuf;

use fuser::{FileAttr, FileType};
use hashbrown::HashTable;
use smallvec::SmallVec;

use super::{os_err, ROOT};

/// What makes two lookups the same file: its device and inode number in
/// its layer, except for a hard-linked file of a lower layer, whose names
/// each become a file of their own when copied up (kernel overlayfs
/// breaks such links too), so each name is its own file.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub(super) enum Key {
    Inode(u64, u64),
    /// (Boxed: rare, and it would double the size of every key.)
    Name(Box<(u64, OsString)>),
}

/// A file known to the kernel. Node numbers index the node table and are
/// never reused, so the kernel's cached inodes and symlink targets can
/// never meet another file under the same number.
#[derive(Debug, Default)]
pub(super) struct Node {
    /// (parent node, name) for each name of the file; the first builds
    /// paths. One is kept inline: most files have one name.
    names: SmallVec<[(u64, Box<OsStr>); 1]>,
    /// Layer identities (device, inode) that resolve to this node: one,
    /// or two once a lower file is copied up.
    identities: SmallVec<[Key; 1]>,
    /// For a directory: the layers merging into it, as of `State::layers_gen`.
    /// (Boxed: only directories have it, and every node pays for the
    /// field's size in the node table.)
    dir_layers: Option<Box<(u64, Vec<usize>)>>,
    /// The kernel's references: one for each entry sent to it (a lookup,
    /// a creation, a READDIRPLUS entry), less those it has forgotten.
    lookups: u64,
}

impl Node {
    fn has_name(&self, parent: u64, name: &OsStr) -> bool {
        self.names.iter().any(|(p, n)| *p == parent && **n == *name)
    }
}

/// Node `node` of table `nodes`.
fn get(nodes: &[Node], node: u64) -> Option<&Node> {
    nodes.get(usize::try_from(node).ok()?)
}

/// An index of the node table by a key each node holds (one of its names,
/// or one of its identities): the key's hash and the node number, so that
/// no key is stored twice. A node with several keys has an entry for each.
#[derive(Default)]
struct Index {
    table: HashTable<(u64, u64)>,
}

impl Index {
    fn find(&self, hash: u64, is: impl Fn(u64) -> bool) -> Option<u64> {
        self.table
            .find(hash, |&(h, n)| h == hash && is(n))
            .map(|&(_, n)| n)
    }

    fn insert(&mut self, hash: u64, node: u64) {
        self.table.insert_unique(hash, (hash, node), |&(h, _)| h);
    }

    fn remove(&mut self, hash: u64, is: impl Fn(u64) -> bool) -> Option<u64> {
        match self.table.find_entry(hash, |&(h, n)| h == hash && is(n)) {
            Ok(entry) => Some(entry.remove().0 .1),
            Err(_) => None,
        }
    }
}

pub(super) enum Handle {
    /// An open file, and the node it was opened as. Shared so that reads
    /// and writes run without the state lock.
    File(std::sync::Arc<LayerFile>, u64),
    /// An open directory's listing, taken when it was opened.
    Dir(std::sync::Arc<Vec<DirItem>>),
}

/// One name of an open directory.
pub(super) struct DirItem {
    pub(super) node: u64,
    pub(super) kind: FileType,
    pub(super) name: OsString,
    /// For a name that is not a directory: the attributes a lookup would
    /// give, from the listing's own stat (READDIRPLUS sends them without
    /// a second look). A directory's depend on the layers below it.
    pub(super) attr: Option<FileAttr>,
}

/// How the kernel does a file's I/O, for FUSE passthrough: every open of
/// an inode must agree (one backing file for all, or no passthrough).
#[derive(Default)]
pub(super) struct NodeIo {
    /// Opens served by this server (no passthrough).
    pub(super) served: usize,
    /// The backing file the passthrough opens share, and its identity.
    pub(super) backing: Option<(std::sync::Weak<fuser::BackingId>, (u64, u64))>,
}

pub(super) struct State {
    /// Indexed by node number; 0 is no node.
    nodes: Vec<Node>,
    by_identity: Index,
    /// Which node each (parent, name) names.
    by_name: Index,
    /// Hashes the indexes' keys (keyed per process: names come from the
    /// sandbox, which must not choose collisions).
    hasher: RandomState,
    /// Bumped whenever some directory's layers may change (a directory
    /// copied up or renamed, a directory removed, a parent marked for xattr
    /// whiteouts): cached `Node::dir_layers` older than this are stale.
    pub(super) layers_gen: u64,
    /// The mount table's generation that `layers_gen` takes into account
    /// (a mount below a lower layer changes what its directories show).
    pub(super) mounts_seen: u64,
    /// With passthrough: each open node's I/O mode, and the backing file
    /// each passthrough handle holds.
    pub(super) node_io: HashMap<u64, NodeIo>,
    pub(super) backings: HashMap<u64, std::sync::Arc<fuser::BackingId>>,
    /// Layer directories kept open for reading files in them.
    pub(super) dir_fds: super::dir_fds::DirFds,
}

impl State {
    /// A table holding the root, with layer identity `root` if known.
    pub(super) fn new(root: Option<Key>) -> State {
        let mut st = State {
            nodes: vec![Node::default(), Node::default()],
            by_identity: Index::default(),
            by_name: Index::default(),
            hasher: RandomState::new(),
            layers_gen: 0,
            mounts_seen: 0,
            node_io: HashMap::new(),
            backings: HashMap::new(),
            dir_fds: Default::default(),
        };
        if let Some(key) = root {
            st.alias(ROOT, key);
        }
        st
    }

    /// The (device, inode) `node` was last found as in a layer: its copy
    /// in the upper layer once copied up. None for a file known by name
    /// (a lower file with several links).
    pub(super) fn inode_identity(&self, node: u64) -> Option<(u64, u64)> {
        match self.node(node)?.identities.last()? {
            Key::Inode(dev, ino) => Some((*dev, *ino)),
            Key::Name(_) => None,
        }
    }

    fn node(&self, node: u64) -> Option<&Node> {
        get(&self.nodes, node)
    }

    fn node_mut(&mut self, node: u64) -> Option<&mut Node> {
        self.nodes.get_mut(usize::try_from(node).ok()?)
    }

    fn name_hash(&self, parent: u64, name: &OsStr) -> u64 {
        self.hasher.hash_one((parent, name))
    }

    /// The node that layer identity `id` resolves to.
    pub(super) fn by_identity(&self, id: &Key) -> Option<u64> {
        let hash = self.hasher.hash_one(id);
        self.by_identity.find(hash, |n| {
            self.node(n).is_some_and(|n| n.identities.contains(id))
        })
    }

    /// The node `name` in `parent` names.
    pub(super) fn by_name(&self, parent: u64, name: &OsStr) -> Option<u64> {
        let hash = self.name_hash(parent, name);
        self.by_name.find(hash, |n| {
            self.node(n).is_some_and(|n| n.has_name(parent, name))
        })
    }

    /// Takes `name` in `parent` out of the name index: the node it named.
    fn take_name(&mut self, parent: u64, name: &OsStr) -> Option<u64> {
        let hash = self.name_hash(parent, name);
        let nodes = &self.nodes;
        self.by_name.remove(hash, |n| {
            get(nodes, n).is_some_and(|n| n.has_name(parent, name))
        })
    }

    /// The first name of `node`: its parent and its name there.
    pub(super) fn first_name(&self, node: u64) -> Option<(u64, &OsStr)> {
        self.node(node)?.names.first().map(|(p, n)| (*p, &**n))
    }

    /// The kernel is sent an entry of `node`: one more reference.
    pub(super) fn looked_up(&mut self, node: u64) {
        if let Some(n) = self.node_mut(node) {
            n.lookups += 1;
        }
    }

    /// The kernel drops `count` references to `node`; whether it holds
    /// none now. (A FORGET may come after a later lookup has handed the
    /// node out again: the kernel then still holds it.)
    pub(super) fn forgotten(&mut self, node: u64, count: u64) -> bool {
        self.node_mut(node).is_none_or(|n| {
            n.lookups = n.lookups.saturating_sub(count);
            n.lookups == 0
        })
    }

    pub(super) fn name_count(&self, node: u64) -> usize {
        self.node(node).map_or(0, |n| n.names.len())
    }

    /// `node`'s cached layers and the `layers_gen` they were taken at.
    pub(super) fn cached_layers(&self, node: u64) -> Option<(u64, &[usize])> {
        let (gen, layers) = self.node(node)?.dir_layers.as_deref()?;
        Some((*gen, layers))
    }

    pub(super) fn cache_layers(&mut self, node: u64, gen: u64, layers: Vec<usize>) {
        if let Some(n) = self.node_mut(node) {
            n.dir_layers = Some(Box::new((gen, layers)));
        }
    }

    pub(super) fn path(&self, node: u64) -> io::Result<PathBuf> {
        let mut names = Vec::new();
        let mut cur = node;
        while cur != ROOT {
            let (parent, name) = self.first_name(cur).ok_or_else(|| os_err(libc::ENOENT))?;
            names.push(name);
            cur = parent;
            if names.len() > 4096 {
                return Err(os_err(libc::ELOOP));
            }
        }
        Ok(names.iter().rev().collect())
    }

    /// The node for a file with layer identity `id`, known as `name` in `parent`.
    pub(super) fn node_for(&mut self, id: Key, parent: u64, name: &OsStr) -> u64 {
        let node = match self.by_identity(&id) {
            Some(n) => n,
            None => {
                let n = self.nodes.len() as u64;
                self.by_identity.insert(self.hasher.hash_one(&id), n);
                self.nodes.push(Node {
                    identities: SmallVec::from_buf([id]),
                    ..Node::default()
                });
                n
            }
        };
        if node != ROOT {
            match self.by_name(parent, name) {
                Some(known) if known == node => {}
                Some(_) => {
                    // The name now means another file.
                    self.unname(parent, name);
                    self.add_name(node, parent, name);
                }
                None => self.add_name(node, parent, name),
            }
        }
        node
    }

    /// Adds another layer identity (a copy-up) to `node`.
    pub(super) fn alias(&mut self, node: u64, id: Key) {
        let hash = self.hasher.hash_one(&id);
        let nodes = &self.nodes;
        if let Some(old) = self.by_identity.remove(hash, |n| {
            get(nodes, n).is_some_and(|n| n.identities.contains(&id))
        }) {
            if let Some(n) = self.node_mut(old) {
                n.identities.retain(|k| *k != id);
            }
        }
        if let Some(n) = self.node_mut(node) {
            n.identities.push(id);
            self.by_identity.insert(hash, node);
        }
    }

    fn add_name(&mut self, node: u64, parent: u64, name: &OsStr) {
        let hash = self.name_hash(parent, name);
        if let Some(n) = self.node_mut(node) {
            n.names.push((parent, name.into()));
            self.by_name.insert(hash, node);
        }
    }

    /// Drops the name `name` in `parent` from whichever node has it; a node
    /// left without names forgets its identities, so that a recycled inode
    /// number in a layer never maps to it.
    pub(super) fn unname(&mut self, parent: u64, name: &OsStr) {
        let Some(id) = self.take_name(parent, name) else {
            return;
        };
        let Some(node) = self.nodes.get_mut(id as usize) else {
            return;
        };
        node.names.retain(|(p, n)| !(*p == parent && **n == *name));
        if node.names.is_empty() {
            for key in std::mem::take(&mut node.identities) {
                let hash = self.hasher.hash_one(&key);
                self.by_identity.remove(hash, |n| n == id);
            }
        }
    }

    pub(super) fn rename_name(&mut self, from: (u64, &OsStr), to: (u64, &OsStr)) {
        let Some(id) = self.take_name(from.0, from.1) else {
            return;
        };
        // Whatever `to` named loses the name.
        self.unname(to.0, to.1);
        let hash = self.name_hash(to.0, to.1);
        if let Some(node) = self.nodes.get_mut(id as usize) {
            for (p, n) in node.names.iter_mut() {
                if *p == from.0 && **n == *from.1 {
                    *p = to.0;
                    *n = to.1.into();
                }
            }
        }
        self.by_name.insert(hash, id);
    }
}

/// The open files and directories the kernel holds handles to. They have a
/// lock of their own, taken after the state's when both are needed (never
/// the other way round): a RELEASE, which the kernel sends in the
/// background as the next file is being opened, then never waits for that
/// open.
#[derive(Default)]
pub(super) struct Handles {
    pub(super) map: HashMap<u64, Handle>,
    pub(super) next: u64,
}

impl Handles {
    pub(super) fn add(&mut self, h: Handle) -> u64 {
        self.next += 1;
        self.map.insert(self.next, h);
        self.next
    }

    pub(super) fn file(&self, fh: u64) -> Option<&std::sync::Arc<LayerFile>> {
        match self.map.get(&fh) {
            Some(Handle::File(f, _)) => Some(f),
            _ => None,
        }
    }

    /// An open file of `node` that `pick` accepts.
    pub(super) fn file_of_node(
        &self,
        node: u64,
        pick: impl Fn(&LayerFile) -> bool,
    ) -> Option<std::sync::Arc<LayerFile>> {
        self.map.values().find_map(|h| match h {
            Handle::File(f, n) if *n == node && pick(f) => Some(f.clone()),
            _ => None,
        })
    }

    pub(super) fn dir(&self, fh: u64) -> Option<std::sync::Arc<Vec<DirItem>>> {
        match self.map.get(&fh) {
            Some(Handle::Dir(list)) => Some(list.clone()),
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn name(s: &str) -> &OsStr {
        OsStr::new(s)
    }

    #[test]
    fn names_and_identities_find_their_node() {
        let mut st = State::new(Some(Key::Inode(1, 2)));
        assert_eq!(st.by_identity(&Key::Inode(1, 2)), Some(ROOT));
        let d = st.node_for(Key::Inode(1, 10), ROOT, name("d"));
        let f = st.node_for(Key::Inode(1, 11), d, name("f"));
        assert_ne!(d, f);
        assert_eq!(st.node_for(Key::Inode(1, 11), d, name("f")), f);
        assert_eq!(st.by_name(d, name("f")), Some(f));
        assert_eq!(st.path(f).unwrap(), PathBuf::from("d/f"));
        // A second name (a hard link), then a copy-up's identity.
        assert_eq!(st.node_for(Key::Inode(1, 11), ROOT, name("g")), f);
        assert_eq!(st.name_count(f), 2);
        st.alias(f, Key::Inode(9, 99));
        assert_eq!(st.by_identity(&Key::Inode(9, 99)), Some(f));
        // Losing one name keeps the file; losing the last forgets its
        // identities, and a recycled inode number is a new node.
        st.unname(d, name("f"));
        assert_eq!(st.by_name(d, name("f")), None);
        assert_eq!(st.path(f).unwrap(), PathBuf::from("g"));
        st.unname(ROOT, name("g"));
        assert_eq!(st.by_identity(&Key::Inode(1, 11)), None);
        assert_eq!(st.by_identity(&Key::Inode(9, 99)), None);
        assert!(st.path(f).is_err());
        let again = st.node_for(Key::Inode(1, 11), d, name("f"));
        assert!(again > f);
    }

    #[test]
    fn renames_move_names_and_replace_the_target() {
        let mut st = State::new(None);
        let a = st.node_for(Key::Inode(1, 1), ROOT, name("a"));
        let b = st.node_for(Key::Inode(1, 2), ROOT, name("b"));
        let d = st.node_for(Key::Inode(1, 3), ROOT, name("d"));
        // Over an existing name: b loses it (and its identity).
        st.rename_name((ROOT, name("a")), (d, name("b")));
        st.rename_name((ROOT, name("b")), (d, name("b")));
        assert_eq!(st.by_name(d, name("b")), Some(b));
        assert_eq!(st.by_name(ROOT, name("a")), None);
        assert_eq!(st.by_identity(&Key::Inode(1, 1)), None);
        assert!(st.path(a).is_err());
        assert_eq!(st.path(b).unwrap(), PathBuf::from("d/b"));
        // An exchange through a temporary name, as RENAME_EXCHANGE does.
        let c = st.node_for(Key::Inode(1, 4), ROOT, name("c"));
        st.rename_name((ROOT, name("c")), (0, name("tmp")));
        st.rename_name((d, name("b")), (ROOT, name("c")));
        st.rename_name((0, name("tmp")), (d, name("b")));
        assert_eq!(st.by_name(ROOT, name("c")), Some(b));
        assert_eq!(st.by_name(d, name("b")), Some(c));
        // A name that now means another file moves to it.
        let e = st.node_for(Key::Inode(1, 5), ROOT, name("c"));
        assert_eq!(st.by_name(ROOT, name("c")), Some(e));
        assert_eq!(st.by_identity(&Key::Inode(1, 2)), None);
    }
}

//! The node table: burrowfs' own node numbers for the files the kernel
//! knows, the names each is known by (paths are rebuilt from them), and
//! the open files and directories the kernel holds handles to.

use std::collections::HashMap;
use std::ffi::{OsStr, OsString};
use std::fs::File;
use std::io;
use std::path::PathBuf;

use fuser::{FileAttr, FileType};

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

/// A file known to the kernel.
#[derive(Debug, Default)]
pub(super) struct Node {
    /// (parent node, name) for each name of the file; the first builds paths.
    pub(super) names: Vec<(u64, OsString)>,
    /// Layer identities (device, inode) that resolve to this node.
    pub(super) identities: Vec<Key>,
    /// For a directory: the layers merging into it, as of `State::layers_gen`.
    /// (Boxed: only directories have it, and every node pays for the
    /// field's size in the node table.)
    pub(super) dir_layers: Option<Box<(u64, Vec<usize>)>>,
}

pub(super) enum Handle {
    /// An open file, and the node it was opened as. Shared so that reads
    /// and writes run without the state lock.
    File(std::sync::Arc<File>, u64),
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

#[derive(Default)]
pub(super) struct State {
    pub(super) nodes: HashMap<u64, Node>,
    pub(super) by_identity: HashMap<Key, u64>,
    /// Which node each (parent, name) names.
    pub(super) by_name: HashMap<(u64, OsString), u64>,
    /// Bumped whenever some directory's layers may change (a directory
    /// copied up or renamed, a directory removed, a parent marked for xattr
    /// whiteouts): cached `Node::dir_layers` older than this are stale.
    pub(super) layers_gen: u64,
    /// The mount table's generation that `layers_gen` takes into account
    /// (a mount below a lower layer changes what its directories show).
    pub(super) mounts_seen: u64,
    pub(super) next_node: u64,
    /// With passthrough: each open node's I/O mode, and the backing file
    /// each passthrough handle holds.
    pub(super) node_io: HashMap<u64, NodeIo>,
    pub(super) backings: HashMap<u64, std::sync::Arc<fuser::BackingId>>,
}

impl State {
    pub(super) fn path(&self, node: u64) -> io::Result<PathBuf> {
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
    pub(super) fn node_for(&mut self, id: Key, parent: u64, name: &OsStr) -> u64 {
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
    pub(super) fn alias(&mut self, node: u64, id: Key) {
        self.by_identity.insert(id.clone(), node);
        if let Some(n) = self.nodes.get_mut(&node) {
            n.identities.push(id);
        }
    }

    /// Drops the name `name` in `parent` from whichever node has it; a node
    /// left without names forgets its identities, so that a recycled inode
    /// number in a layer never maps to it.
    pub(super) fn add_name(&mut self, node: u64, key: (u64, OsString)) {
        let names = &mut self.nodes.entry(node).or_default().names;
        // Most files have one name: room for one, not the four a first
        // push would make (an eighth of burrowfs' memory over a big tree).
        names.reserve_exact(1);
        names.push(key.clone());
        self.by_name.insert(key, node);
    }

    pub(super) fn unname(&mut self, parent: u64, name: &OsStr) {
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

    pub(super) fn rename_name(&mut self, from: (u64, &OsStr), to: (u64, &OsStr)) {
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

    pub(super) fn file(&self, fh: u64) -> Option<&std::sync::Arc<File>> {
        match self.map.get(&fh) {
            Some(Handle::File(f, _)) => Some(f),
            _ => None,
        }
    }

    /// An open file of `node` that `pick` accepts.
    pub(super) fn file_of_node(
        &self,
        node: u64,
        pick: impl Fn(&File) -> bool,
    ) -> Option<std::sync::Arc<File>> {
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

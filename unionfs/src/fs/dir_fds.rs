//! Layer directories kept open for opening files to read: the first READ
//! of a file in a directory then costs an `openat` in the kept directory
//! instead of a walk from the layer's root (an `openat2`) and a `close`.
//!
//! A kept descriptor follows its directory wherever it is moved (by
//! whatever can write to the layer, even out of it), so it is trusted for
//! one thing only: a file opened through it is used when it is the very
//! file (device and inode) that its node was found as, by a walk from the
//! layer's root. Anything else (the name gone, another file there, a node
//! without such an identity) goes back to that walk. The node's own file
//! is what the kernel holds the node's attributes for, wherever its
//! directory went: kernel overlayfs, holding the layer's dentries, reads
//! the same file.

use std::collections::HashMap;

use crate::layer_dir::Dir;

/// How many directories stay open at most: enough for a walk that reads
/// directory after directory, few beside the node table's descriptors
/// (and a quarter of those where the descriptor limit makes them few).
const KEPT: usize = 256;

fn kept_at_most() -> usize {
    (crate::node_files::cached_at_most() / 4).clamp(4, KEPT)
}

/// Kept directories, by (union directory node, layer), valid for one
/// generation of the directories' layers (`State::layers_gen`).
#[derive(Default)]
pub(super) struct DirFds {
    gen: u64,
    map: HashMap<(u64, usize), Dir>,
}

impl DirFds {
    /// Forgets every kept directory unless `gen` is the generation they
    /// were kept in.
    fn at_gen(&mut self, gen: u64) -> &mut HashMap<(u64, usize), Dir> {
        if gen != self.gen {
            self.map.clear();
            self.gen = gen;
        }
        &mut self.map
    }

    /// The kept directory of union directory `dir` in `layer`.
    pub(super) fn get(&mut self, gen: u64, dir: u64, layer: usize) -> Option<&Dir> {
        self.at_gen(gen).get(&(dir, layer))
    }

    /// Keeps `opened` as union directory `dir` in `layer` (all are let go
    /// when the table is full).
    pub(super) fn keep(&mut self, gen: u64, dir: u64, layer: usize, opened: Dir) {
        let map = self.at_gen(gen);
        if map.len() >= kept_at_most() && !map.contains_key(&(dir, layer)) {
            map.clear();
        }
        map.insert((dir, layer), opened);
    }

    /// Lets go of the kept directory of `dir` in `layer`.
    pub(super) fn forget(&mut self, dir: u64, layer: usize) {
        self.map.remove(&(dir, layer));
    }
}

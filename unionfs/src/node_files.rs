//! The file behind each node's reads and writes when the kernel does not
//! open files through burrowfs (FUSE "no open": an open or a close costs no
//! round trip, and a READ or WRITE names only the node).
//!
//! A node's file is opened at its first read or write and kept for the
//! next; a copy-up drops it (the lower file is no longer the node's data).
//! Files of nodes that still have a name are a cache, closed when the
//! kernel forgets the node or when there are too many. A file whose last
//! name goes away may still be open in the sandbox, so it is pinned: kept
//! until the kernel forgets the node, which it does only once nothing has
//! the file open.

use crate::layer_file::LayerFile;
use std::collections::HashMap;
use std::sync::Arc;

/// How many unpinned files stay open at most: 4096, or a quarter of the
/// descriptors this process may have where that is fewer.
const CACHED: usize = 4096;

pub(crate) fn cached_at_most() -> usize {
    static AT_MOST: std::sync::OnceLock<usize> = std::sync::OnceLock::new();
    *AT_MOST.get_or_init(|| {
        let soft = nix::sys::resource::getrlimit(nix::sys::resource::Resource::RLIMIT_NOFILE)
            .map_or(1024, |(soft, _)| soft);
        (soft / 4).clamp(16, CACHED as u64) as usize
    })
}

struct NodeFile {
    file: Arc<LayerFile>,
    read: bool,
    write: bool,
    pinned: bool,
    /// Pinned as a lower layer's file (never to be written).
    lower: bool,
}

/// The open files, by node.
#[derive(Default)]
pub(crate) struct NodeFiles {
    map: HashMap<u64, NodeFile>,
    unpinned: usize,
}

/// Files taken out of the table, to be closed once its lock is released.
pub(crate) type Closing = Vec<Arc<LayerFile>>;

impl NodeFiles {
    /// `node`'s file if it was opened for what is asked.
    pub(crate) fn get(&self, node: u64, write: bool) -> Option<Arc<LayerFile>> {
        let f = self.map.get(&node)?;
        let fits = if write { f.write } else { f.read };
        fits.then(|| f.file.clone())
    }

    /// `node`'s file, however it was opened.
    pub(crate) fn any(&self, node: u64) -> Option<Arc<LayerFile>> {
        self.map.get(&node).map(|f| f.file.clone())
    }

    /// Makes `file` `node`'s file (keeping a pin the node had).
    pub(crate) fn insert(
        &mut self,
        node: u64,
        file: Arc<LayerFile>,
        read: bool,
        write: bool,
    ) -> Closing {
        let mut closing = Closing::new();
        let pinned = match self.map.remove(&node) {
            Some(old) => {
                closing.push(old.file);
                if !old.pinned {
                    self.unpinned -= 1;
                }
                old.pinned
            }
            None => false,
        };
        if !pinned {
            self.unpinned += 1;
        }
        self.map.insert(
            node,
            NodeFile {
                file,
                read,
                write,
                pinned,
                lower: false,
            },
        );
        let at_most = cached_at_most();
        if self.unpinned > at_most {
            // Half of the cache goes, in no particular order: reopening by
            // name is cheap next to a round trip.
            let victims: Vec<u64> = self
                .map
                .iter()
                .filter(|(n, f)| !f.pinned && **n != node)
                .map(|(n, _)| *n)
                .take(at_most / 2)
                .collect();
            for n in victims {
                closing.extend(self.remove(n));
            }
        }
        closing
    }

    /// Keeps `node`'s file (a lower layer's when `lower`) until the kernel
    /// forgets the node.
    pub(crate) fn pin(&mut self, node: u64, lower: bool) {
        if let Some(f) = self.map.get_mut(&node) {
            f.lower = lower;
            if !f.pinned {
                f.pinned = true;
                self.unpinned -= 1;
            }
        }
    }

    /// `node`'s file if it is a lower layer's, pinned once its last name
    /// went.
    pub(crate) fn pinned_lower(&self, node: u64) -> Option<Arc<LayerFile>> {
        let f = self.map.get(&node)?;
        (f.pinned && f.lower).then(|| f.file.clone())
    }

    /// Drops `node`'s file, pinned or not.
    pub(crate) fn remove(&mut self, node: u64) -> Option<Arc<LayerFile>> {
        let f = self.map.remove(&node)?;
        if !f.pinned {
            self.unpinned -= 1;
        }
        Some(f.file)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn file() -> Arc<LayerFile> {
        Arc::new(std::fs::File::open("/dev/null").unwrap().into())
    }

    #[test]
    fn a_read_only_file_does_not_serve_writes() {
        let mut t = NodeFiles::default();
        drop(t.insert(7, file(), true, false));
        assert!(t.get(7, false).is_some());
        assert!(t.get(7, true).is_none());
        drop(t.insert(7, file(), true, true));
        assert!(t.get(7, true).is_some());
    }

    #[test]
    fn the_cache_is_bounded_but_pinned_files_stay() {
        let mut t = NodeFiles::default();
        drop(t.insert(1, file(), true, false));
        t.pin(1, true);
        assert!(t.pinned_lower(1).is_some());
        for n in 2..(cached_at_most() as u64 + 10) {
            drop(t.insert(n, file(), true, false));
        }
        assert!(t.unpinned <= cached_at_most());
        assert!(t.any(1).is_some(), "a pinned file was closed");
        // A file replaced by its reopening (or by its copy) keeps the pin,
        // and is no longer the lower layer's.
        drop(t.insert(1, file(), true, true));
        assert!(t.pinned_lower(1).is_none());
        let before = t.unpinned;
        assert!(t.remove(1).is_some());
        assert_eq!(t.unpinned, before);
    }
}

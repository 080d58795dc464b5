//! burrow's image store, `$XDG_DATA_HOME/burrow` (by default
//! `~/.local/share/burrow`): each layer unpacked once, under its diff ID,
//! and shared read-only by every image and sandbox that uses it.
//!
//! A layer is unpacked into a temporary directory and renamed into place
//! whole, so a layer directory is never partly written; a process that
//! loses the race to another one unpacking the same layer uses the
//! other's.

use std::fs::File;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use crate::blob::sha256_hex;
use crate::scratch::Scratch;
use crate::unpack::unpack;
use crate::{io_err, Error, Result};

#[derive(Debug, Clone)]
pub struct Store {
    root: PathBuf,
    /// What the store's layers may take in all (`BURROW_STORE_BUDGET`).
    budget: Option<u64>,
}

/// The share of the store's filesystem (at most [`FLOOR_MAX`]) that
/// unpacking never takes: a hostile layer cannot fill the disk.
const FLOOR_PERCENT: u64 = 5;
const FLOOR_MAX: u64 = 1 << 30;

/// What one entry of a layer is counted as taking beyond its data (an
/// inode, a directory entry): a block.
pub(crate) const ENTRY_COST: u64 = 4096;

/// `text` as a size: bytes, or with a k/m/g/t suffix (powers of 1024).
pub fn parse_size(text: &str) -> Option<u64> {
    let t = text.trim();
    let (digits, unit) = match t.find(|c: char| !c.is_ascii_digit()) {
        Some(i) => t.split_at(i),
        None => (t, ""),
    };
    let shift = match unit.to_ascii_lowercase().trim_end_matches(['b', 'i']) {
        "" => 0,
        "k" => 10,
        "m" => 20,
        "g" => 30,
        "t" => 40,
        _ => return None,
    };
    digits.parse::<u64>().ok()?.checked_mul(1 << shift)
}

impl Store {
    /// The store of the calling user.
    pub fn from_env() -> Result<Store> {
        let abs = |v: std::ffi::OsString| Some(PathBuf::from(v)).filter(|p| p.is_absolute());
        let data = std::env::var_os("XDG_DATA_HOME")
            .and_then(abs)
            .or_else(|| {
                std::env::var_os("HOME")
                    .and_then(abs)
                    .map(|h| h.join(".local/share"))
            })
            .ok_or_else(|| {
                Error::Invalid(
                    "no image store: neither XDG_DATA_HOME nor HOME is an absolute path".into(),
                )
            })?;
        let mut store = Store::at(data.join("burrow"));
        if let Some(v) = std::env::var_os("BURROW_STORE_BUDGET") {
            let text = v.to_string_lossy();
            store.budget = Some(parse_size(&text).ok_or_else(|| {
                Error::Invalid(format!(
                    "BURROW_STORE_BUDGET={text:?}: not a size (e.g. 20G, 512M)"
                ))
            })?);
        }
        Ok(store)
    }

    pub fn at(root: impl Into<PathBuf>) -> Store {
        Store {
            root: root.into(),
            budget: None,
        }
    }

    /// This store with a budget for its layers.
    pub fn with_budget(mut self, budget: Option<u64>) -> Store {
        self.budget = budget;
        self
    }

    /// What one more layer may take: what is left of the budget after the
    /// layers in the store (as counted when each was unpacked), and what
    /// the filesystem has free above its floor.
    pub(crate) fn room(&self) -> Result<(u64, &'static str)> {
        let what = || format!("image store {}", self.root.display());
        let fs = nix::sys::statvfs::statvfs(&self.root)
            .map_err(|e| io_err(what())(std::io::Error::from(e)))?;
        let block = fs.fragment_size();
        let total = fs.blocks().saturating_mul(block);
        let floor = (total / 100 * FLOOR_PERCENT).min(FLOOR_MAX);
        let free = fs
            .blocks_available()
            .saturating_mul(block)
            .saturating_sub(floor);
        let Some(budget) = self.budget else {
            return Ok((free, "the free space of its filesystem"));
        };
        let mut used = 0u64;
        if let Ok(entries) = std::fs::read_dir(self.sizes()) {
            for e in entries.flatten() {
                let n = crate::blob::read_bounded(&e.path(), 32)
                    .ok()
                    .and_then(|d| String::from_utf8(d).ok()?.trim().parse::<u64>().ok());
                used = used.saturating_add(n.unwrap_or(0));
            }
        }
        let left = budget.saturating_sub(used);
        Ok(if left <= free {
            (left, "the store's budget (BURROW_STORE_BUDGET)")
        } else {
            (free, "the free space of its filesystem")
        })
    }

    /// Where each layer's counted size is kept (`sizes/HEX`).
    pub(crate) fn sizes(&self) -> PathBuf {
        self.root.join("sizes")
    }

    /// A fresh private scratch directory in the store, removed when
    /// dropped (or, if this process is killed, by the next one's).
    pub(crate) fn scratch(&self) -> Result<Scratch> {
        crate::scratch::make(&self.root.join("tmp"))
    }

    fn layers(&self) -> PathBuf {
        self.root.join("layers/sha256")
    }

    /// The store's directory.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// Makes `dir` (and its parents) in the store, private to the caller.
    pub(crate) fn private_dir(&self, dir: &Path) -> Result<()> {
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(dir)
            .map_err(io_err(format!("image store {}", dir.display())))
    }

    /// The layer with `diff_id` when it is unpacked in the store.
    pub fn has_layer(&self, diff_id: &str) -> Result<Option<PathBuf>> {
        let done = self.layers().join(sha256_hex(diff_id)?);
        Ok(done.is_dir().then_some(done))
    }

    /// Keeps a small blob (a manifest or configuration) under its digest,
    /// which `data` is checked to have.
    pub fn put_blob(&self, digest: &str, data: &[u8]) -> Result<()> {
        let got = format!("sha256:{:x}", <sha2::Sha256 as sha2::Digest>::digest(data));
        if got != digest {
            return Err(Error::Invalid(format!(
                "blob {digest}: its content's digest is {got}"
            )));
        }
        let dir = self.root.join("blobs/sha256");
        let path = dir.join(sha256_hex(digest)?);
        if path.is_file() {
            return Ok(());
        }
        self.private_dir(&dir)?;
        write_atomically(self, &path, data)
    }

    /// A blob kept by `put_blob`, verified again as it is read.
    pub fn read_blob(&self, digest: &str, size: u64, limit: u64) -> Result<Vec<u8>> {
        let path = self.root.join("blobs/sha256").join(sha256_hex(digest)?);
        crate::blob::read_small(&path, digest, size, limit)
    }

    /// The directory of the layer with `diff_id`, unpacked from the blob
    /// `open_blob` gives when it is not in the store yet.
    pub fn layer(
        &self,
        diff_id: &str,
        open_blob: impl FnOnce() -> Result<File>,
    ) -> Result<PathBuf> {
        let hex = sha256_hex(diff_id)?;
        let layers = self.layers();
        let done = layers.join(hex);
        if done.is_dir() {
            return Ok(done);
        }
        // Private to the caller, as podman keeps its storage: layers hold
        // the images' set-id files and whatever else they ship.
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(&layers)
            .map_err(io_err(format!("image store {}", layers.display())))?;
        // Unpacked in a scratch directory, so what a killed process left
        // half-unpacked is swept with it.
        let scratch = self.scratch()?;
        let tmp = scratch.join("layer");
        std::fs::create_dir(&tmp).map_err(io_err(format!("image store {}", tmp.display())))?;
        let (room, of) = self.room()?;
        let unpacked = open_blob()
            .and_then(|blob| unpack(blob, &tmp, room))
            .map_err(|e| match e {
                Error::Layer(m) if m.ends_with(crate::unpack::PAST_ROOM) => Error::Layer(format!(
                    "layer {diff_id}: unpacking stopped at {of} ({room} bytes were left)"
                )),
                e => e,
            })?;
        if unpacked.diff_id != diff_id {
            return Err(Error::Invalid(format!(
                "layer {diff_id}: its uncompressed content's digest is {}",
                unpacked.diff_id
            )));
        }
        match std::fs::rename(&tmp, &done) {
            Ok(()) => {
                self.private_dir(&self.sizes())?;
                let size = unpacked.size.to_string();
                write_atomically(self, &self.sizes().join(hex), size.as_bytes())?;
                Ok(done)
            }
            // Another burrow put the same layer in place first.
            Err(_) if done.is_dir() => Ok(done),
            Err(e) => Err(io_err(format!("image store {}", done.display()))(e)),
        }
    }
}

/// Writes `data` to `path` (in the store) whole or not at all: a file of a
/// scratch directory, synced, then renamed over it; a process killed
/// midway leaves its scratch directory for the next sweep.
pub(crate) fn write_atomically(store: &Store, path: &Path, data: &[u8]) -> Result<()> {
    use std::io::Write;
    let scratch = store.scratch()?;
    let tmp = scratch.join("file");
    (|| {
        let mut f = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&tmp)?;
        f.write_all(data)?;
        f.sync_all()?;
        std::fs::rename(&tmp, path)
    })()
    .map_err(io_err(format!("image store {}", path.display())))
}

/// Removes a tree the caller owns, even where the image made directories
/// read-only. Symlinks are removed, never followed.
pub fn remove_tree(path: &Path) -> Result<()> {
    fn writable(path: &Path) -> std::io::Result<()> {
        let meta = std::fs::symlink_metadata(path)?;
        if meta.is_dir() {
            std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o700))?;
            for entry in std::fs::read_dir(path)? {
                writable(&entry?.path())?;
            }
        }
        Ok(())
    }
    let what = || format!("removing {}", path.display());
    writable(path).map_err(io_err(what()))?;
    std::fs::remove_dir_all(path).map_err(io_err(what()))
}

//! What may be removed from the store, and when: `burrow rmi` drops an
//! image's name, `burrow image prune` the layers and blobs no image names,
//! and neither removes a layer a running sandbox uses.
//!
//! A sandbox registers the layers it runs on in `using/PID-N`, a file it
//! holds locked (`flock`) for as long as it lives; one left by a killed
//! sandbox is unlocked and counts for nothing. Registering, pulling and
//! unpacking take the store's lock (`lock`) shared; removing takes it
//! exclusive, so a layer cannot go between being found and being
//! registered, nor between being unpacked and being recorded.

use std::collections::HashSet;
use std::fs::File;
use std::io::Write as _;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU32, Ordering};

use nix::fcntl::{Flock, FlockArg};

use crate::blob::sha256_hex;
use crate::store::{remove_tree, Store};
use crate::{catalog, io_err, Error, Result};

/// The store's lock, taken shared or exclusive (waiting for it).
pub(crate) fn lock(store: &Store, exclusive: bool) -> Result<Flock<File>> {
    let path = store.root().join("lock");
    store.private_dir(store.root())?;
    let what = || format!("image store {}", path.display());
    let file = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .mode(0o600)
        .custom_flags(libc::O_NOFOLLOW)
        .open(&path)
        .map_err(io_err(what()))?;
    let (now, wait) = if exclusive {
        (FlockArg::LockExclusiveNonblock, FlockArg::LockExclusive)
    } else {
        (FlockArg::LockSharedNonblock, FlockArg::LockShared)
    };
    match Flock::lock(file, now) {
        Ok(l) => Ok(l),
        Err((file, nix::errno::Errno::EWOULDBLOCK)) => {
            eprintln!(
                "burrow: waiting for another burrow using the image store {}",
                store.root().display()
            );
            Flock::lock(file, wait).map_err(|(_, e)| io_err(what())(e.into()))
        }
        Err((_, e)) => Err(io_err(what())(e.into())),
    }
}

/// A running sandbox's claim on its layers, dropped when it ends.
#[derive(Debug)]
pub struct InUse {
    path: PathBuf,
    _lock: Flock<File>,
}

impl Drop for InUse {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.path);
    }
}

/// Registers `diff_ids` as in use, the caller holding the store's lock
/// (shared) and every layer checked to be there.
pub(crate) fn register(store: &Store, diff_ids: &[String]) -> Result<InUse> {
    static N: AtomicU32 = AtomicU32::new(0);
    let dir = store.root().join("using");
    store.private_dir(&dir)?;
    let path = dir.join(format!(
        "{}-{}",
        std::process::id(),
        N.fetch_add(1, Ordering::Relaxed)
    ));
    let what = || format!("image store {}", path.display());
    let _ = std::fs::remove_file(&path); // a killed process's, of our pid
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(&path)
        .map_err(io_err(what()))?;
    file.write_all(diff_ids.join("\n").as_bytes())
        .map_err(io_err(what()))?;
    // Read-only from here: the descriptor a sandbox keeps can change
    // nothing.
    let file = File::open(&path).map_err(io_err(what()))?;
    let lock = Flock::lock(file, FlockArg::LockExclusiveNonblock)
        .map_err(|(_, e)| io_err(what())(e.into()))?;
    Ok(InUse { path, _lock: lock })
}

/// The diff IDs running sandboxes use; stale claims are removed. The
/// caller holds the store's lock exclusive.
fn in_use(store: &Store) -> Result<HashSet<String>> {
    let dir = store.root().join("using");
    let what = |p: &Path| format!("image store {}", p.display());
    let mut used = HashSet::new();
    // Only a missing directory or claim means nothing is in use there: any
    // other error stops the removal.
    let entries = match std::fs::read_dir(&dir) {
        Ok(e) => e,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(used),
        Err(e) => return Err(io_err(what(&dir))(e)),
    };
    for entry in entries {
        let path = entry.map_err(io_err(what(&dir)))?.path();
        let file = match File::open(&path) {
            Ok(f) => f,
            // Its sandbox ended meanwhile.
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
            Err(e) => return Err(io_err(what(&path))(e)),
        };
        match Flock::lock(file, FlockArg::LockExclusiveNonblock) {
            // Its sandbox is gone.
            Ok(_) => {
                let _ = std::fs::remove_file(&path);
            }
            Err(_) => {
                let data = crate::blob::read_bounded(&path, catalog::JSON_LIMIT)
                    .map_err(io_err(format!("image store {}", path.display())))?;
                let text = String::from_utf8_lossy(&data);
                used.extend(text.lines().map(str::to_string));
            }
        }
    }
    Ok(used)
}

/// What a removal took away.
#[derive(Debug, Default)]
pub struct Removed {
    /// Diff IDs of the layers removed.
    pub layers: Vec<String>,
    /// Blobs (manifests, configurations) removed.
    pub blobs: usize,
}

/// Removes the layers (of `only`, or all) and blobs that no image names
/// and no running sandbox uses. The caller holds the store's lock
/// exclusive.
fn remove_unused(store: &Store, only: Option<&[String]>) -> Result<Removed> {
    let (records, _) = catalog::list(store)?;
    let mut keep: HashSet<String> = in_use(store)?;
    let mut keep_blobs = HashSet::new();
    for r in &records {
        keep.extend(r.diff_ids.iter().cloned());
        keep_blobs.insert(sha256_hex(&r.digest)?.to_string());
        keep_blobs.insert(sha256_hex(&r.config_digest)?.to_string());
    }
    let keep: HashSet<String> = keep
        .iter()
        .filter_map(|d| sha256_hex(d).ok().map(str::to_string))
        .collect();
    let wanted: Option<HashSet<String>> = only.map(|ids| {
        ids.iter()
            .filter_map(|d| sha256_hex(d).ok().map(str::to_string))
            .collect()
    });
    let mut removed = Removed::default();
    let layers = store.root().join("layers/sha256");
    for hex in names(&layers)? {
        if keep.contains(&hex) || wanted.as_ref().is_some_and(|w| !w.contains(&hex)) {
            continue;
        }
        // Out of sight at once (a rename), then removed.
        let scratch = store.scratch()?;
        let gone = scratch.join("layer");
        std::fs::rename(layers.join(&hex), &gone).map_err(io_err(format!(
            "image store {}",
            layers.join(&hex).display()
        )))?;
        remove_tree(&gone)?;
        let _ = std::fs::remove_file(store.sizes().join(&hex));
        removed.layers.push(format!("sha256:{hex}"));
    }
    if only.is_none() {
        let blobs = store.root().join("blobs/sha256");
        for hex in names(&blobs)? {
            if !keep_blobs.contains(&hex) {
                std::fs::remove_file(blobs.join(&hex)).map_err(io_err(format!(
                    "image store {}",
                    blobs.join(&hex).display()
                )))?;
                removed.blobs += 1;
            }
        }
    }
    Ok(removed)
}

/// The digest-named entries of `dir` (others, such as temporary files, are
/// left alone).
fn names(dir: &Path) -> Result<Vec<String>> {
    let entries = match std::fs::read_dir(dir) {
        Ok(e) => e,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(io_err(format!("image store {}", dir.display()))(e)),
    };
    let mut all = Vec::new();
    for entry in entries {
        let entry = entry.map_err(io_err(format!("image store {}", dir.display())))?;
        if let Some(name) = entry.file_name().to_str() {
            if name.len() == 64 && name.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f')) {
                all.push(name.to_string());
            }
        }
    }
    Ok(all)
}

/// `burrow image prune`: every layer and blob no image names and no
/// running sandbox uses.
pub fn prune(store: &Store) -> Result<Removed> {
    let _lock = lock(store, true)?;
    remove_unused(store, None)
}

/// `burrow rmi NAME`: the name's record, then those of its layers no other
/// image names and no running sandbox uses.
pub fn rmi(store: &Store, name: &str, shown: &str) -> Result<Removed> {
    let _lock = lock(store, true)?;
    let record = match catalog::get(store, name) {
        Ok(Some(r)) => r,
        Ok(None) => {
            return Err(Error::Reference(format!(
                "image {shown:?}: not in the store"
            )))
        }
        // An unreadable record names no layers it could keep: it goes, and
        // `prune` takes what it held.
        Err(Error::Invalid(_)) => {
            catalog::remove(store, name)?;
            return Ok(Removed::default());
        }
        Err(e) => return Err(e),
    };
    catalog::remove(store, name)?;
    remove_unused(store, Some(&record.diff_ids))
}

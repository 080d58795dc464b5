//! Private scratch directories of the store (`tmp/PID-N`): where a pull
//! downloads, an archive is read and a layer is unpacked before it is
//! renamed into place. Each is locked (`flock`) by the process using it
//! for as long as that process lives and removed when dropped; one whose
//! process was killed is unlocked, and the next process that makes a
//! scratch directory removes it.

use std::fs::File;
use std::os::unix::fs::{DirBuilderExt, MetadataExt};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU32, Ordering};

use nix::fcntl::{Flock, FlockArg};

use crate::store::remove_tree;
use crate::{io_err, Result};

pub(crate) struct Scratch {
    path: PathBuf,
    /// Holds the directory's lock.
    _lock: Flock<File>,
}

impl Scratch {
    pub fn path(&self) -> &Path {
        &self.path
    }

    pub fn join(&self, name: impl AsRef<Path>) -> PathBuf {
        self.path.join(name)
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = remove_tree(&self.path);
    }
}

/// Whether `file` (opened from `path`) is still what `path` names.
fn same(file: &File, path: &Path) -> bool {
    match (file.metadata(), std::fs::symlink_metadata(path)) {
        (Ok(a), Ok(b)) => a.dev() == b.dev() && a.ino() == b.ino(),
        _ => false,
    }
}

/// Removes the directories in `base` that no live process holds locked.
fn sweep(base: &Path) {
    let Ok(entries) = std::fs::read_dir(base) else {
        return;
    };
    for entry in entries.flatten() {
        let path = entry.path();
        if !entry.file_type().is_ok_and(|t| t.is_dir()) {
            continue;
        }
        let Ok(dir) = File::open(&path) else {
            continue;
        };
        // Our own scratch directories are locked through other open
        // files, so they fail here as other processes' do.
        if let Ok(dir) = Flock::lock(dir, FlockArg::LockExclusiveNonblock) {
            if same(&dir, &path) {
                let _ = remove_tree(&path);
            }
        }
    }
}

/// A fresh scratch directory under `base` (made private to the caller),
/// after removing those that killed processes left there.
pub(crate) fn make(base: &Path) -> Result<Scratch> {
    static N: AtomicU32 = AtomicU32::new(0);
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(base)
        .map_err(io_err(format!("image store {}", base.display())))?;
    sweep(base);
    loop {
        let path = base.join(format!(
            "{}-{}",
            std::process::id(),
            N.fetch_add(1, Ordering::Relaxed)
        ));
        let what = || format!("image store {}", path.display());
        if std::fs::symlink_metadata(&path).is_ok() {
            // A name of a process that had our pid and was killed.
            remove_tree(&path)?;
        }
        std::fs::DirBuilder::new()
            .mode(0o700)
            .create(&path)
            .map_err(io_err(what()))?;
        let dir = File::open(&path).map_err(io_err(what()))?;
        let lock =
            Flock::lock(dir, FlockArg::LockExclusive).map_err(|(_, e)| io_err(what())(e.into()))?;
        // Another process's sweep may have taken the directory between
        // its making and its locking: then make another.
        if same(&lock, &path) {
            return Ok(Scratch { path, _lock: lock });
        }
    }
}

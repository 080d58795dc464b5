//! Private scratch directories of the store (`tmp/PID-N`): where a pull
//! downloads, an archive is read and a layer is unpacked before it is
//! renamed into place. Each is locked (`flock`) by the process using it
//! for as long as that process lives and removed when dropped; one whose
//! process was killed is unlocked, and the next process that makes a
//! scratch directory removes it.

use std::fs::File;
use std::os::unix::fs::{DirBuilderExt, MetadataExt};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};

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

/// A name in the scratch directory no other process or thread uses.
fn fresh_name(base: &Path, tag: &str) -> PathBuf {
    static N: AtomicU32 = AtomicU32::new(0);
    base.join(format!(
        "{tag}{}-{}",
        std::process::id(),
        N.fetch_add(1, Ordering::Relaxed)
    ))
}

/// Removes the directories in `base` that no live process holds locked.
/// Each is locked, checked to be what its name still names, and renamed
/// to a name of our own before it is removed, so only what was locked is
/// removed; killed midway, the renamed one is swept next time.
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
            let gone = fresh_name(base, ".gone-");
            if same(&dir, &path) && std::fs::rename(&path, &gone).is_ok() {
                let _ = remove_tree(&gone);
            }
        }
    }
}

/// A fresh scratch directory under `base` (made private to the caller);
/// the first in each process removes those that killed processes left.
pub(crate) fn make(base: &Path) -> Result<Scratch> {
    static SWEPT: AtomicBool = AtomicBool::new(false);
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(base)
        .map_err(io_err(format!("image store {}", base.display())))?;
    if !SWEPT.swap(true, Ordering::Relaxed) {
        sweep(base);
    }
    let mut last = None;
    for _ in 0..100 {
        let path = fresh_name(base, "");
        // A name taken (by a killed process of our pid) is skipped; one
        // another process's sweep removes between its making and its
        // locking is made again under another name.
        if let Err(e) = std::fs::DirBuilder::new().mode(0o700).create(&path) {
            last = Some(io_err(format!("image store {}", path.display()))(e));
            continue;
        }
        let Ok(dir) = File::open(&path) else {
            continue;
        };
        let Ok(lock) = Flock::lock(dir, FlockArg::LockExclusiveNonblock) else {
            continue;
        };
        if same(&lock, &path) {
            return Ok(Scratch { path, _lock: lock });
        }
    }
    Err(last.unwrap_or_else(|| {
        io_err(format!("image store {}", base.display()))(std::io::Error::other(
            "no scratch directory could be made and locked",
        ))
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The only test of this binary that makes scratch directories: the
    /// sweep runs once per process.
    #[test]
    fn the_first_scratch_sweeps_unlocked_directories_and_spares_locked_ones() {
        let base = std::env::temp_dir().join(format!("burrow-scratch-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&base);
        std::fs::create_dir_all(base.join("1-0/deep")).unwrap();
        std::fs::write(base.join("1-0/deep/file"), b"left by a killed pull").unwrap();
        std::fs::create_dir(base.join("2-0")).unwrap();
        // Held as a live process holds its own.
        let held = File::open(base.join("2-0")).unwrap();
        let held = Flock::lock(held, FlockArg::LockExclusive).unwrap();

        let a = make(&base).unwrap();
        let b = make(&base).unwrap();
        assert!(!base.join("1-0").exists(), "the unlocked one is swept");
        assert!(base.join("2-0").is_dir(), "the locked one is spared");
        assert!(a.path().is_dir() && b.path().is_dir() && a.path() != b.path());
        let (pa, pb) = (a.path().to_path_buf(), b.path().to_path_buf());
        drop((a, b));
        assert!(!pa.exists() && !pb.exists(), "removed when dropped");
        drop(held);
        let mut left: Vec<_> = std::fs::read_dir(&base)
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        left.sort();
        assert_eq!(left, ["2-0"]);
        std::fs::remove_dir_all(&base).unwrap();
    }
}

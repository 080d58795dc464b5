//! One layer's tar stream (plain, gzip or zstd) written into a directory
//! as the unprivileged caller, with the image spec's rules (layer.md):
//! whiteouts stay as the `.wh.` entries burrowfs reads in lower layers,
//! and nothing is written outside the directory.
//!
//! The `tar` crate keeps every entry inside the destination: it refuses
//! to write through a symlink that leads out, and checks hard links'
//! targets. Entries it would skip silently (a `..` in the path) are an
//! error here, as is a bare `.wh.`.

use std::io::{BufRead, BufReader, Read};
use std::os::unix::fs::PermissionsExt;
use std::path::{Component, Path, PathBuf};

use tar::EntryType;

use crate::blob::Hashing;
use crate::{io_err, Error, Result};

/// What unpacking found.
#[derive(Debug)]
pub struct Unpacked {
    /// `sha256:` digest of the uncompressed tar stream (the diff ID).
    pub diff_id: String,
    /// Device nodes in the layer, which the caller cannot create.
    pub devices: u64,
}

fn decompressed(blob: impl Read + 'static) -> std::io::Result<Box<dyn Read>> {
    let mut r = BufReader::with_capacity(1 << 16, blob);
    let head = r.fill_buf()?;
    Ok(if head.starts_with(&[0x1f, 0x8b]) {
        Box::new(flate2::read::MultiGzDecoder::new(r))
    } else if head.starts_with(&[0x28, 0xb5, 0x2f, 0xfd]) {
        Box::new(zstd::stream::read::Decoder::with_buffer(r)?)
    } else {
        Box::new(r)
    })
}

/// Unpacks `blob` into `dst`, an empty directory.
pub fn unpack(blob: impl Read + 'static, dst: &Path) -> Result<Unpacked> {
    let bad = |path: &Path, why: &str| Error::Layer(format!("layer entry {path:?}: {why}"));
    let stream = Hashing::new(decompressed(blob).map_err(io_err("layer"))?);
    let mut archive = tar::Archive::new(stream);
    archive.set_preserve_permissions(true);
    archive.set_preserve_mtime(true);
    archive.set_overwrite(true);
    let mut devices = 0;
    // Directories are made writable for the entries that follow and get
    // their own modes at the end.
    let mut dirs: Vec<(PathBuf, u32)> = Vec::new();
    for entry in archive.entries().map_err(io_err("layer"))? {
        let mut entry = entry.map_err(io_err("layer entry"))?;
        let path = entry.path().map_err(io_err("layer entry"))?.into_owned();
        if path.components().any(|c| c == Component::ParentDir) {
            return Err(bad(&path, "'..' leads outside the layer"));
        }
        if path.file_name().is_some_and(|n| n == ".wh.") {
            return Err(bad(&path, "a whiteout naming nothing"));
        }
        let kind = entry.header().entry_type();
        if matches!(kind, EntryType::Char | EntryType::Block) {
            devices += 1;
            continue;
        }
        let mode = entry.header().mode().unwrap_or(0o755);
        if kind == EntryType::Fifo {
            // The tar crate would write a FIFO as a regular file.
            make_fifo(dst, &path, mode).map_err(|e| bad(&path, &e.to_string()))?;
            continue;
        }
        let written = entry
            .unpack_in(dst)
            .map_err(|e| bad(&path, &with_causes(&e)))?;
        if !written {
            return Err(bad(&path, "outside the layer"));
        }
        if kind == EntryType::Directory {
            // Where unpack_in put it: the name's plain components under
            // `dst` (a leading '/' is not the host's root).
            let at = dst.join(inside(&path));
            set_dir_mode(&at, (mode & 0o7777) | 0o700).map_err(|e| bad(&path, &e.to_string()))?;
            dirs.push((at, mode & 0o7777));
        }
    }
    // Deepest first, so a parent's mode never stops a child's change.
    dirs.sort_by_key(|(dir, _)| std::cmp::Reverse(dir.components().count()));
    for (dir, mode) in &dirs {
        set_dir_mode(dir, *mode).map_err(io_err(format!("layer directory {dir:?}")))?;
    }
    let (diff_id, _) = archive.into_inner().finish().map_err(io_err("layer"))?;
    Ok(Unpacked { diff_id, devices })
}

/// An entry's name relative to the layer: its plain components.
fn inside(path: &Path) -> PathBuf {
    path.components()
        .filter(|c| matches!(c, Component::Normal(_)))
        .collect()
}

/// Sets the mode of the directory `dir`, never through a symlink.
fn set_dir_mode(dir: &Path, mode: u32) -> std::io::Result<()> {
    if !std::fs::symlink_metadata(dir)?.is_dir() {
        return Err(std::io::Error::other("not a directory"));
    }
    std::fs::set_permissions(dir, std::fs::Permissions::from_mode(mode))
}

/// An error and its causes, on one line.
pub(crate) fn with_causes(e: &std::io::Error) -> String {
    let mut msg = e.to_string();
    let mut cause = std::error::Error::source(e);
    while let Some(c) = cause {
        msg = format!("{msg}: {c}");
        cause = c.source();
    }
    msg.replace(['\n', '\r'], " ")
}

/// A FIFO at `path` (no `..` in it) under `dst`, whose parent must
/// resolve inside `dst`; an earlier entry of that name is replaced.
fn make_fifo(dst: &Path, path: &Path, mode: u32) -> std::io::Result<()> {
    let rel = inside(path);
    let at = dst.join(&rel);
    let parent = at.parent().unwrap_or(dst).canonicalize()?;
    if rel.as_os_str().is_empty() || !parent.starts_with(dst.canonicalize()?) {
        return Err(std::io::Error::other("outside the layer"));
    }
    let at = parent.join(rel.file_name().unwrap_or_default());
    if std::fs::symlink_metadata(&at).is_ok_and(|m| !m.is_dir()) {
        std::fs::remove_file(&at)?;
    }
    let mode = nix::sys::stat::Mode::from_bits_truncate(mode & 0o7777);
    nix::unistd::mkfifo(&at, mode).map_err(std::io::Error::from)?;
    // mkfifo's mode passed through the umask.
    std::fs::set_permissions(&at, std::fs::Permissions::from_mode(mode.bits()))
}

//! One layer's tar stream (plain, gzip or zstd) written into a directory
//! as the unprivileged caller, with the image spec's rules (layer.md):
//! whiteouts stay as the `.wh.` entries burrowfs reads in lower layers,
//! and nothing is written outside the directory. What the caller cannot
//! give a file on disk (another owner, set-id bits, a device node, a FIFO
//! of another owner) is recorded in its `user.containers.override_stat`
//! xattr, which burrowfs presents (a device node is an empty file there).
//!
//! The `tar` crate keeps every entry inside the destination: it refuses
//! to write through a symlink that leads out, and checks hard links'
//! targets. Entries it would skip silently (a `..` in the path) are an
//! error here, as is a bare `.wh.`.

use std::ffi::OsString;
use std::io::{BufRead, BufReader, Read};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::PermissionsExt;
use std::path::{Component, Path, PathBuf};

use tar::EntryType;

use burrow_unionfs::layer_dir::Dir;
use burrow_unionfs::override_stat::{self, Override};

use crate::blob::Hashing;
use crate::{io_err, Error, Result};

/// What unpacking found.
#[derive(Debug)]
pub struct Unpacked {
    /// `sha256:` digest of the uncompressed tar stream (the diff ID).
    pub diff_id: String,
    /// What the layer takes, as counted against the room it was given:
    /// each entry's data in 4 KiB blocks, and a block for the entry.
    pub size: u64,
}

/// How the error of a layer that outgrew its room ends.
pub(crate) const PAST_ROOM: &str = "the layer outgrows the room it has in the store";

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

/// Unpacks `blob` into `dst`, an empty directory, stopping with an error
/// before it takes more than `room` bytes (as [`Unpacked::size`] counts).
pub fn unpack(blob: impl Read + 'static, dst: &Path, room: u64) -> Result<Unpacked> {
    let mut size = 0u64;
    let bad = |path: &Path, why: &str| Error::Layer(format!("layer entry {path:?}: {why}"));
    let stream = Hashing::new(decompressed(blob).map_err(io_err("layer"))?);
    let mut archive = tar::Archive::new(stream);
    archive.set_preserve_permissions(true);
    archive.set_preserve_mtime(true);
    archive.set_overwrite(true);
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
        if entry.header().entry_type() == EntryType::XGlobalHeader {
            continue; // (global PAX records name no file of their own)
        }
        let xattrs = layer_xattrs(&mut entry).map_err(|e| bad(&path, &e.to_string()))?;
        // Counted before anything is written: a size bomb stops here. The
        // data's size as the entry has it (a PAX `size` record overrides
        // the header's), its xattrs, and a block for the entry itself.
        let data = entry.size();
        let xattr_bytes = xattrs.iter().fold(0u64, |n, (k, v)| {
            n.saturating_add((k.len() + v.len()) as u64)
        });
        size = size
            .saturating_add(data.div_ceil(4096).saturating_mul(4096))
            .saturating_add(xattr_bytes)
            .saturating_add(crate::store::ENTRY_COST);
        let kind = entry.header().entry_type();
        let header = entry.header();
        if size > room {
            return Err(bad(&path, PAST_ROOM));
        }
        let mode = header.mode().unwrap_or(0o755) & 0o7777;
        // (An empty field is 0, as tar(1) reads it.)
        let id = |v: std::io::Result<u64>| {
            u32::try_from(v.unwrap_or(0)).map_err(|_| bad(&path, "an owner id past 2^32"))
        };
        let (uid, gid) = (id(header.uid())?, id(header.gid())?);
        let mut told = Override {
            uid,
            gid,
            perm: mode,
            kind: None,
        };
        // What the caller cannot make: another owner, set-id bits.
        let recorded = uid != 0 || gid != 0 || mode & 0o6000 != 0;
        let stand_in = match kind {
            EntryType::Char | EntryType::Block => {
                let number = |v: std::io::Result<Option<u32>>| v.ok().flatten().unwrap_or(0);
                let rdev =
                    libc::makedev(number(header.device_major()), number(header.device_minor()));
                let fmt = if kind == EntryType::Char {
                    libc::S_IFCHR
                } else {
                    libc::S_IFBLK
                };
                Some((fmt, rdev))
            }
            // A FIFO of another owner has nowhere to keep its override.
            EntryType::Fifo if recorded => Some((libc::S_IFIFO, 0)),
            _ => None,
        };
        if let Some(kind) = stand_in {
            told.kind = Some(kind);
            make_stand_in(dst, &path, &told).map_err(|e| bad(&path, &e.to_string()))?;
            if !xattrs.is_empty() {
                annotate(dst, &path, None, &xattrs, Some(0o600))
                    .map_err(|e| bad(&path, &format!("setting its xattrs: {e}")))?;
            }
            continue;
        }
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
        // On disk without set-id bits: they are the override's to show.
        let on_disk = if recorded { mode & !0o6000 } else { mode };
        if kind == EntryType::Directory {
            // Writable for its own xattrs and the entries that follow; its
            // mode is set at the end. Where unpack_in put it: the name's
            // plain components under `dst` (a leading '/' is not the
            // host's root).
            let at = dst.join(inside(&path));
            set_dir_mode(&at, on_disk | 0o700).map_err(|e| bad(&path, &e.to_string()))?;
            dirs.push((at, on_disk));
        }
        if (recorded || !xattrs.is_empty())
            // Whatever the tar crate wrote as a file or directory (sparse
            // and unknown types too); a link's inode has its target's, and
            // a symlink can carry no user xattr.
            && !matches!(kind, EntryType::Symlink | EntryType::Link)
        {
            annotate(
                dst,
                &path,
                recorded.then_some(&told),
                &xattrs,
                (kind != EntryType::Directory).then_some(on_disk),
            )
            .map_err(|e| bad(&path, &format!("recording its owner, mode and xattrs: {e}")))?;
        }
    }
    // Deepest first, so a parent's mode never stops a child's change.
    dirs.sort_by_key(|(dir, _)| std::cmp::Reverse(dir.components().count()));
    for (dir, mode) in &dirs {
        set_dir_mode(dir, *mode).map_err(io_err(format!("layer directory {dir:?}")))?;
    }
    let (diff_id, _) = archive.into_inner().finish().map_err(io_err("layer"))?;
    Ok(Unpacked { diff_id, size })
}

/// The directory holding entry `path` in the layer `dst` and the entry's
/// name there, reached from `dst` without following a symlink or leaving
/// it (an earlier entry of the layer may have put one on the way).
fn parent_of(dst: &Path, path: &Path) -> std::io::Result<(Dir, std::ffi::OsString)> {
    let rel = inside(path);
    let name = rel
        .file_name()
        .ok_or_else(|| std::io::Error::other("names no file"))?
        .to_os_string();
    let mut parent = Dir::open(dst)?;
    for c in rel.parent().unwrap_or(Path::new("")).components() {
        // Made when missing, as tar(1) makes an entry's directories.
        parent = match parent.child(c.as_os_str()) {
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                parent.mkdir(c.as_os_str(), 0o755)?;
                parent.child(c.as_os_str())?
            }
            other => other?,
        };
    }
    Ok((parent, name))
}

/// What the entry at `path` (a file or directory) carries beyond its
/// data: the override `told` and `xattrs`. A file gets mode `file_mode`,
/// after them (writable meanwhile: setting a user xattr needs it).
fn annotate(
    dst: &Path,
    path: &Path,
    told: Option<&Override>,
    xattrs: &[(OsString, Vec<u8>)],
    file_mode: Option<u32>,
) -> std::io::Result<()> {
    let (parent, name) = parent_of(dst, path)?;
    let object = parent.place(&name)?.hold()?;
    if let Some(mode) = file_mode {
        object.chmod(mode | 0o200)?;
    }
    if let Some(told) = told {
        object.set_xattr(
            std::ffi::OsStr::new(override_stat::XATTR),
            told.encode().as_bytes(),
            0,
        )?;
    }
    for (key, value) in xattrs {
        object.set_xattr(key, value, 0)?;
    }
    if let Some(mode) = file_mode {
        object.chmod(mode)?;
    }
    Ok(())
}

/// The entry's xattrs (PAX `SCHILY.xattr.NAME`), named as the layer keeps
/// them: `user.` ones as they are, the rest (`security.capability`,
/// `trusted.*`, ACLs) as burrow's records. burrow's and overlayfs' own
/// names are dropped: a layer does not get to forge owners or whiteouts.
fn layer_xattrs<R: Read>(entry: &mut tar::Entry<R>) -> std::io::Result<Vec<(OsString, Vec<u8>)>> {
    let mut out = Vec::new();
    let Some(exts) = entry.pax_extensions()? else {
        return Ok(out);
    };
    for ext in exts {
        let ext = ext?;
        let Some(name) = ext.key_bytes().strip_prefix(b"SCHILY.xattr.") else {
            continue;
        };
        let name = std::ffi::OsStr::from_bytes(name);
        if name.is_empty()
            || burrow_unionfs::upper::is_overlay_xattr(name)
            || override_stat::is_override_xattr(name)
            || override_stat::is_burrow_xattr(name)
        {
            continue;
        }
        let key = if name.as_bytes().starts_with(b"user.") {
            name.to_os_string()
        } else if let Some(recorded) = override_stat::recorded_name(name) {
            recorded
        } else {
            continue; // (a namespace no filesystem takes)
        };
        out.push((key, ext.value_bytes().to_vec()));
    }
    Ok(out)
}

/// What the caller cannot create (a device node, a FIFO of another
/// owner): an empty file of its own at `path` that burrowfs shows as
/// `told` says. An earlier entry of that name is replaced.
fn make_stand_in(dst: &Path, path: &Path, told: &Override) -> std::io::Result<()> {
    let (parent, name) = parent_of(dst, path)?;
    if parent
        .stat(&name)
        .is_ok_and(|m| m.mode & libc::S_IFMT != libc::S_IFDIR)
    {
        parent.unlink(&name)?;
    }
    let flags =
        nix::fcntl::OFlag::O_CREAT | nix::fcntl::OFlag::O_EXCL | nix::fcntl::OFlag::O_WRONLY;
    drop(parent.open_file(&name, flags, 0o600)?);
    parent.set_xattr(&name, override_stat::XATTR, told.encode().as_bytes())
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

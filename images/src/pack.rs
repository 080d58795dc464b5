//! A directory written as one layer's tar stream, the inverse of
//! `unpack`: owners, modes and file types from each file's
//! `user.containers.override_stat` record where it has one (else from the
//! file itself), hard links as links, and whiteouts as OCI's `.wh.`
//! entries.
//!
//! Two kinds of directory are packed. An upper layer (`--upper DIR`) holds
//! kernel overlayfs' markers: a 0/0 character device (or an xattr
//! whiteout) becomes `.wh.NAME`, an opaque directory gets `.wh..wh..opq`
//! first. A layer of the store already holds OCI's `.wh.` names, written
//! as they are.
//!
//! The tree is walked from directory descriptors, never through a symlink
//! (a symlink is an entry, its target only text), so a tree changed during
//! the walk cannot lead the packing outside it. Entries are sorted, so the
//! same tree packs to the same bytes.

use std::collections::HashMap;
use std::ffi::{OsStr, OsString};
use std::io::{Read, Write};
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

use nix::fcntl::OFlag;
use tar::{EntryType, Header};

use burrow_unionfs::format::{self, DirMark};
use burrow_unionfs::layer_dir::Dir;
use burrow_unionfs::layers::Stat;
use burrow_unionfs::override_stat::{self, Override};

use crate::{io_err, Error, Result};

/// What kind of directory is packed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Markers {
    /// An upper layer: overlayfs' whiteouts and opaque directories.
    Overlay,
    /// A layer of the store: `.wh.` names, packed as they are.
    Oci,
}

/// One PAX record, `LEN KEY=VALUE\n`, LEN counting the whole record
/// (its own digits too).
fn pax_record(out: &mut Vec<u8>, key: &[u8], value: &[u8]) {
    let rest = 1 + key.len() + 1 + value.len() + 1;
    let mut len = rest + 1;
    while len.to_string().len() + rest != len {
        len = len.to_string().len() + rest;
    }
    out.extend_from_slice(format!("{len} ").as_bytes());
    out.extend_from_slice(key);
    out.push(b'=');
    out.extend_from_slice(value);
    out.push(b'\n');
}

/// How deep a tree may be (a descriptor is held for each level).
const MAX_DEPTH: usize = 512;

/// Packs the tree at `root` into `out` as a tar stream; gives `out` back.
/// Stops with an error once the files' data passes `limit` bytes (a
/// sparse file is written whole).
pub fn pack<W: Write>(root: &Path, markers: Markers, out: W, limit: u64) -> Result<W> {
    let dir = Dir::open(root).map_err(io_err(format!("layer {}", root.display())))?;
    let mut packer = Packer {
        out: tar::Builder::new(out),
        markers,
        seen: HashMap::new(),
        left: limit,
    };
    packer.dir(&dir, Path::new(""), 0)?;
    packer
        .out
        .into_inner()
        .and_then(|mut w| w.flush().map(|()| w))
        .map_err(io_err("writing the layer"))
}

struct Packer<W: Write> {
    out: tar::Builder<W>,
    markers: Markers,
    /// Files with more than one link already written: (device, inode) to
    /// their name in the layer.
    seen: HashMap<(u64, u64), PathBuf>,
    /// What the files' data may still take.
    left: u64,
}

/// Where an entry goes among its siblings: the opaque marker, then
/// whiteouts (layer.md: before the entries they sit beside), then the rest,
/// each by name.
fn rank(name: &OsStr) -> u8 {
    let b = name.as_bytes();
    if b == format::OCI_OPAQUE_MARKER.as_bytes() {
        0
    } else if b.starts_with(format::OCI_WHITEOUT_PREFIX.as_bytes()) {
        1
    } else {
        2
    }
}

/// An entry of a directory: its name and attributes as the layer means
/// them (the override applied).
struct Item {
    name: OsString,
    disk: Stat,
    shown: Stat,
}

impl<W: Write> Packer<W> {
    fn dir(&mut self, dir: &Dir, at: &Path, depth: usize) -> Result<()> {
        if depth > MAX_DEPTH {
            return Err(Error::Layer(format!(
                "layer entry {at:?}: deeper than {MAX_DEPTH} directories"
            )));
        }
        let fail = |name: &OsStr| io_err(format!("layer entry {:?}", at.join(name)));
        let named = |name: &OsStr, why: &str| {
            Error::Layer(format!("layer entry {:?}: {why}", at.join(name)))
        };
        let mut items = Vec::new();
        for name in dir.names().map_err(fail(OsStr::new("")))? {
            let name = name.as_os_str();
            // In an upper layer `.wh.` names are a user's files; in an OCI
            // layer they would hide what lies below.
            if self.markers == Markers::Overlay && rank(name) < 2 {
                return Err(named(
                    name,
                    "a name starting with .wh. would be a whiteout in an image; rename it",
                ));
            }
            let disk = dir.stat(name).map_err(fail(name))?;
            let mut shown = disk;
            if let Some(o) = dir
                .get_xattr(name, override_stat::XATTR)
                .ok()
                .flatten()
                .and_then(|v| Override::parse(&v))
            {
                o.apply(&mut shown);
            }
            items.push(Item {
                name: name.to_os_string(),
                disk,
                shown,
            });
        }
        // Whiteouts first (layer.md: before their siblings), then by name.
        let mark = std::cell::OnceCell::new();
        let mark = || *mark.get_or_init(|| format::dir_mark(dir, OsStr::new(""), false));
        let mut whiteouts = Vec::new();
        if self.markers == Markers::Overlay {
            items.retain(|i| {
                let gone = format::is_whiteout(dir, &i.name, &i.disk, mark);
                if gone {
                    whiteouts.push(i.name.clone());
                }
                !gone
            });
        }
        whiteouts.sort();
        items.sort_by(|a, b| (rank(&a.name), &a.name).cmp(&(rank(&b.name), &b.name)));
        for name in whiteouts {
            let mut hidden = OsString::from(format::OCI_WHITEOUT_PREFIX);
            hidden.push(&name);
            self.marker(&at.join(hidden))?;
        }
        for item in items {
            self.item(dir, at, &item, depth)?;
        }
        Ok(())
    }

    /// An empty `.wh.` file.
    fn marker(&mut self, path: &Path) -> Result<()> {
        let mut h = Header::new_gnu();
        h.set_entry_type(EntryType::Regular);
        h.set_mode(0o644);
        h.set_uid(0);
        h.set_gid(0);
        h.set_size(0);
        h.set_mtime(0);
        self.out
            .append_data(&mut h, path, std::io::empty())
            .map_err(io_err(format!("layer entry {path:?}")))
    }

    /// The xattrs of `name` in `dir` an image carries, as PAX records:
    /// `user.` ones as they are, burrow's records as the names they stand
    /// for; burrow's and overlayfs' own, and the host's `security.`
    /// labels on disk, are not the image's.
    fn pax_xattrs(dir: &Dir, name: &OsStr) -> Vec<u8> {
        let mut pax = Vec::new();
        let Ok(place) = dir.place(name) else {
            return pax;
        };
        let mut names = place.list_xattrs().unwrap_or_default();
        names.sort();
        for key in names {
            let shown = match override_stat::recorded_for(&key) {
                Some(original) => original.to_os_string(),
                None if key.as_bytes().starts_with(b"user.")
                    && !override_stat::is_burrow_xattr(&key)
                    && !override_stat::is_override_xattr(&key)
                    && !burrow_unionfs::upper::is_overlay_xattr(&key) =>
                {
                    key.clone()
                }
                None => continue,
            };
            if let Ok(Some(value)) = place.get_xattr(&key) {
                let mut k = b"SCHILY.xattr.".to_vec();
                k.extend_from_slice(shown.as_bytes());
                pax_record(&mut pax, &k, &value);
            }
        }
        pax
    }

    /// A PAX extended header for the entry that follows.
    fn pax_header(&mut self, path: &Path, records: &[u8]) -> Result<()> {
        let mut h = Header::new_ustar();
        h.set_entry_type(EntryType::XHeader);
        h.set_path("PaxHeaders/xattrs")
            .map_err(io_err(format!("layer entry {path:?}")))?;
        h.set_mode(0o644);
        h.set_uid(0);
        h.set_gid(0);
        h.set_mtime(0);
        h.set_size(records.len() as u64);
        h.set_cksum();
        self.out
            .append(&h, records)
            .map_err(io_err(format!("layer entry {path:?}")))
    }

    fn item(&mut self, dir: &Dir, at: &Path, item: &Item, depth: usize) -> Result<()> {
        let path = at.join(&item.name);
        let written = match item.shown.mode & libc::S_IFMT {
            libc::S_IFDIR | libc::S_IFLNK | libc::S_IFCHR | libc::S_IFBLK | libc::S_IFIFO => true,
            libc::S_IFSOCK => false,
            _ => item.disk.mode & libc::S_IFMT == libc::S_IFREG,
        };
        if written {
            let pax = Self::pax_xattrs(dir, &item.name);
            if !pax.is_empty() {
                self.pax_header(&path, &pax)?;
            }
        }
        let fail = io_err(format!("layer entry {path:?}"));
        let s = &item.shown;
        let mut h = Header::new_gnu();
        h.set_mode(s.mode & 0o7777);
        h.set_uid(s.uid.into());
        h.set_gid(s.gid.into());
        h.set_mtime(u64::try_from(item.disk.times[1].0).unwrap_or(0));
        h.set_size(0);
        let disk_kind = item.disk.mode & libc::S_IFMT;
        match s.mode & libc::S_IFMT {
            libc::S_IFDIR => {
                h.set_entry_type(EntryType::Directory);
                self.out
                    .append_data(&mut h, &path, std::io::empty())
                    .map_err(fail)?;
                let sub = dir
                    .child(&item.name)
                    .map_err(io_err(format!("layer entry {path:?}")))?;
                if self.markers == Markers::Overlay
                    && format::dir_mark(&sub, OsStr::new(""), false) == DirMark::Opaque
                {
                    self.marker(&path.join(format::OCI_OPAQUE_MARKER))?;
                }
                return self.dir(&sub, &path, depth + 1);
            }
            libc::S_IFLNK => {
                h.set_entry_type(EntryType::Symlink);
                let target = dir.read_link(&item.name).map_err(fail)?;
                let what = io_err(format!("layer entry {path:?}"));
                // A short target byte for byte (set_link_name would
                // normalise `a//b/`); a long one as a GNU long link.
                if target.as_os_str().len() < 100 {
                    h.set_link_name_literal(target.as_os_str().as_bytes())
                        .map_err(io_err(format!("layer entry {path:?}")))?;
                    return self
                        .out
                        .append_data(&mut h, &path, std::io::empty())
                        .map_err(what);
                }
                return self.out.append_link(&mut h, &path, target).map_err(what);
            }
            libc::S_IFCHR | libc::S_IFBLK => {
                h.set_entry_type(if s.mode & libc::S_IFMT == libc::S_IFCHR {
                    EntryType::Char
                } else {
                    EntryType::Block
                });
                h.set_device_major(libc::major(s.rdev)).map_err(fail)?;
                let fail = io_err(format!("layer entry {path:?}"));
                h.set_device_minor(libc::minor(s.rdev)).map_err(fail)?;
            }
            libc::S_IFIFO => h.set_entry_type(EntryType::Fifo),
            // A socket has no tar entry (docker and podman leave them out).
            libc::S_IFSOCK => return Ok(()),
            _ if disk_kind == libc::S_IFREG => {
                let id = (item.disk.dev, item.disk.ino);
                if item.disk.nlink > 1 {
                    if let Some(first) = self.seen.get(&id) {
                        h.set_entry_type(EntryType::Link);
                        let first = first.clone();
                        return self
                            .out
                            .append_link(&mut h, &path, first)
                            .map_err(io_err(format!("layer entry {path:?}")));
                    }
                    self.seen.insert(id, path.clone());
                }
                h.set_entry_type(EntryType::Regular);
                if item.disk.size > self.left {
                    return Err(Error::Layer(format!(
                        "layer entry {path:?}: the layer's files outgrow the room there is \
                         for them ({} bytes)",
                        self.left
                    )));
                }
                self.left -= item.disk.size;
                let file = dir
                    .open_regular(&item.name, OFlag::O_RDONLY, Some(id))
                    .and_then(burrow_unionfs::layer_file::LayerFile::into_file)
                    .map_err(io_err(format!("layer entry {path:?}")))?;
                h.set_size(item.disk.size);
                // Exactly the size the header says, however the file
                // changes while it is read.
                let data = file
                    .take(item.disk.size)
                    .chain(std::io::repeat(0))
                    .take(item.disk.size);
                return self
                    .out
                    .append_data(&mut h, &path, data)
                    .map_err(io_err(format!("layer entry {path:?}")));
            }
            _ => return Ok(()),
        }
        self.out
            .append_data(&mut h, &path, std::io::empty())
            .map_err(io_err(format!("layer entry {path:?}")))
    }
}

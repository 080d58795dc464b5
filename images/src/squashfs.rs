//! `burrow save REF --format squashfs FILE`: an image as one squashfs file,
//! what `burrow run --image squashfs:FILE`, Apptainer, enroot and the
//! kernel mount. The image's layers are merged as the union shows them
//! (whiteouts applied, owners, set-id bits and devices from the override
//! records) and written by backhand's writer, gzip-compressed (squashfs-
//! tools' default, which every kernel and squashfuse read).

use std::ffi::OsString;
use std::io::Read;
use std::path::{Path, PathBuf};

use backhand::compression::Compressor;
use backhand::{FilesystemCompressor, FilesystemWriter, NodeHeader};
use burrow_unionfs::layer_file::LayerFile;
use burrow_unionfs::layers::{Kind, Stat};
use burrow_unionfs::Stack;
use nix::fcntl::OFlag;

use crate::store::Store;
use crate::{io_err, Error, Options, Result};

/// Directories deeper than this are refused (as a layer's pack does).
const MAX_DEPTH: usize = 256;
/// What a squashfs inode as backhand writes it holds, at most: a symlink's
/// target (bytes), and a file's size (less than 2 TiB).
const MAX_TARGET: usize = 255;
const MAX_FILE: u64 = (2 << 40) - 1;

/// Writes `reference`'s image (or with `dir:PATH`, the directory PATH, its
/// owners as this process sees them) to `out` as a squashfs file, whole or
/// not at all; gives the file's digest.
pub fn save_squashfs(reference: &str, opts: &Options, store: &Store, out: &Path) -> Result<String> {
    let fail = |e: &dyn std::fmt::Display| Error::Invalid(format!("{reference}: {e}"));
    let dir = reference.strip_prefix("dir:").map(PathBuf::from);
    // (An image's claim on its layers is held until the file is written.)
    let image = match dir {
        Some(_) => None,
        None => Some(crate::open(reference, opts, store)?),
    };
    // The union's layers are top first; an image lists them bottom first.
    let layers: Vec<PathBuf> = match (&dir, &image) {
        (Some(dir), _) => vec![dir.clone()],
        (_, Some(image)) => image.layers.iter().rev().cloned().collect(),
        (None, None) => Vec::new(),
    };
    let mut stack = Stack::new(layers, None).map_err(|e| fail(&e))?;
    stack.present_override_stat(image.is_some());
    let root = stack.lookup(Path::new("")).map_err(|e| fail(&e))?;
    let mut w = FilesystemWriter::default();
    w.set_compressor(FilesystemCompressor::new(Compressor::Gzip, None).map_err(|e| fail(&e))?);
    w.set_root_mode((root.meta.mode & 0o7777) as u16);
    w.set_root_uid(root.meta.uid);
    w.set_root_gid(root.meta.gid);
    w.set_time(mtime(&root.meta));
    walk(&stack, &mut w, Path::new(""), &root.dir_layers, 0).map_err(|e| match e {
        Walk::Io(what, e) => io_err(what)(e),
        Walk::Squashfs(what, e) => Error::Layer(format!("{what}: {e:?}")),
        Walk::Refused(what) => {
            Error::Layer(format!("{what}: squashfs as written here cannot hold it"))
        }
    })?;
    let name = out.file_name().unwrap_or_default();
    let mut tmp_name = OsString::from(".");
    tmp_name.push(name);
    tmp_name.push(format!(".burrow-{}", std::process::id()));
    let tmp = out.with_file_name(tmp_name);
    let written = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(&tmp)
        .map_err(io_err(tmp.display()))
        .and_then(|f| {
            w.write(std::io::BufWriter::new(f))
                .map_err(|e| Error::Layer(format!("writing {}: {e:?}", out.display())))
        })
        .and_then(|_| std::fs::rename(&tmp, out).map_err(io_err(out.display())));
    if written.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    written?;
    drop(image);
    let mut file = std::fs::File::open(out).map_err(io_err(out.display()))?;
    let mut hash = sha2::Sha256::default();
    std::io::copy(&mut file, &mut hash).map_err(io_err(out.display()))?;
    Ok(format!("sha256:{:x}", sha2::Digest::finalize(hash)))
}

enum Walk {
    Io(String, std::io::Error),
    Squashfs(String, backhand::BackhandError),
    Refused(String),
}

fn mtime(meta: &Stat) -> u32 {
    u32::try_from(meta.times[1].0.max(0)).unwrap_or(u32::MAX)
}

fn header(meta: &Stat) -> NodeHeader {
    NodeHeader::new((meta.mode & 0o7777) as u16, meta.uid, meta.gid, mtime(meta))
}

/// A device number as squashfs stores it (Linux's `new_encode_dev`).
fn encode_dev(rdev: u64) -> u32 {
    let (major, minor) = (libc::major(rdev), libc::minor(rdev));
    (minor & 0xff) | (major << 8) | ((minor & !0xff) << 12)
}

/// Adds what directory `rel` (merging `dirs`) shows, below it first.
fn walk<'s>(
    stack: &'s Stack,
    w: &mut FilesystemWriter<'_, '_, 's>,
    rel: &Path,
    dirs: &[usize],
    depth: usize,
) -> std::result::Result<(), Walk> {
    let at = |name: &dyn AsRef<Path>| Path::new("/").join(rel).join(name);
    let io = |what: &Path| {
        let what = what.display().to_string();
        move |e| Walk::Io(what, e)
    };
    if depth > MAX_DEPTH {
        let e = std::io::Error::from_raw_os_error(libc::ELOOP);
        return Err(io(&at(&""))(e));
    }
    for e in stack.read_dir_in(dirs, rel).map_err(io(&at(&"")))? {
        let path = at(&e.name);
        // What backhand's writer would abort on, and its reader refuse.
        let refuse = |why: &str| Walk::Refused(format!("{}: {why}", path.display()));
        if e.name.to_str().is_none() {
            return Err(refuse("a name that is not UTF-8"));
        }
        if e.kind == Kind::File && e.meta.size > MAX_FILE {
            return Err(refuse("a file of 2 TiB or more"));
        }
        let item = rel.join(&e.name);
        let h = header(&e.meta);
        let sq = |r: std::result::Result<(), backhand::BackhandError>| {
            r.map_err(|err| Walk::Squashfs(path.display().to_string(), err))
        };
        match e.kind {
            Kind::Dir => {
                sq(w.push_dir(&path, h))?;
                let entry = stack.lookup_child(dirs, rel, &e.name).map_err(io(&path))?;
                walk(stack, w, &item, &entry.dir_layers, depth + 1)?;
            }
            Kind::File => {
                let file = Lazy {
                    stack,
                    layer: e.layer,
                    rel: item,
                    expect: e.dev_ino,
                    file: None,
                    at: 0,
                };
                sq(w.push_file(file, &path, h))?;
            }
            Kind::Symlink => {
                let target = stack
                    .place(e.layer, &item)
                    .and_then(|p| p.read_link())
                    .map_err(io(&path))?;
                if target.as_os_str().len() > MAX_TARGET {
                    return Err(refuse("a symlink target of 256 bytes or more"));
                }
                sq(w.push_symlink(target, &path, h))?;
            }
            Kind::CharDevice => sq(w.push_char_device(encode_dev(e.meta.rdev), &path, h))?,
            Kind::BlockDevice => sq(w.push_block_device(encode_dev(e.meta.rdev), &path, h))?,
            Kind::Fifo => sq(w.push_fifo(&path, h))?,
            Kind::Socket => sq(w.push_socket(&path, h))?,
        }
    }
    Ok(())
}

/// A layer's file, opened when backhand first reads it (at the write, one
/// at a time) and closed at its end: an image's thousands of files never
/// hold a descriptor each.
struct Lazy<'s> {
    stack: &'s Stack,
    layer: usize,
    rel: PathBuf,
    /// The file listed (device, inode): another put in its place is refused.
    expect: (u64, u64),
    file: Option<LayerFile>,
    at: u64,
}

impl Read for Lazy<'_> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        if self.file.is_none() {
            let place = self.stack.place(self.layer, &self.rel)?;
            let f = place
                .dir
                .open_regular(&place.name, OFlag::O_RDONLY, Some(self.expect))?;
            self.file = Some(f);
        }
        let n = self
            .file
            .as_ref()
            .map_or(Ok(0), |f| f.read_at(buf, self.at))?;
        self.at += n as u64;
        if n == 0 {
            self.file = None;
        }
        Ok(n)
    }
}

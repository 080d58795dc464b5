//! A squashfs image file as a read-only layer, read in place: no unpacking,
//! no kernel mount, no privilege. The `backhand` crate parses the image's
//! tables once, at start, in a child process ([`index`]); burrowfs keeps a
//! compact index of them (names,
//! attributes, each directory's children sorted by name, each file's block
//! list) and reads file data itself, with positioned reads of the image
//! file and backhand's decompressors, so that every worker thread reads
//! and decompresses at once (backhand's own file reader takes one lock for
//! every block). A small cache of decompressed blocks serves the small
//! files packed together in one fragment block, and reads smaller than a
//! block.
//!
//! A corrupt or truncated image is refused at start when its tables do not
//! parse; a bad data block is EIO for the file that reads it.
//!
//! squashfs' extended attributes are not read (backhand does not expose
//! them): an image layer has no xattrs. Whiteouts as kernel overlayfs
//! writes them (character devices 0/0) and OCI's `.wh.` names work in an
//! image layer; an opaque directory there needs OCI's `.wh..wh..opq`.

use std::collections::VecDeque;
use std::ffi::OsStr;
use std::fs::File;
use std::io;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use backhand::compression::{CompressionAction, Compressor, DefaultCompressor};
use backhand::{DataSize, Fragment};

use crate::layers::{Kind, Stat};

mod index;
mod wire;

/// Why an image cannot be used as a layer.
#[derive(Debug, thiserror::Error)]
pub enum ImageError {
    #[error("{path}: {source}")]
    Open {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("{path}: not a squashfs image, or a corrupt one ({reason})")]
    Corrupt { path: PathBuf, reason: String },
}

/// Decompressed blocks kept, at most (bytes; each counted as at least
/// [`CACHE_MIN_CHARGE`]).
const CACHE_BYTES: usize = 8 << 20;
const CACHE_MIN_CHARGE: usize = 4096;

/// One object of the image.
#[derive(Debug, Clone, Copy)]
struct Node {
    /// Its name: a range of [`Image::names`].
    name: (u32, u32),
    mode: u32,
    uid: u32,
    gid: u32,
    mtime: u32,
    size: u64,
    nlink: u32,
    /// A directory: its children, a range of [`Image::children`]. A file:
    /// its index in [`Image::files`] (`.0`). A symlink: its target, a range
    /// of [`Image::names`]. A device: its number as squashfs encodes it.
    data: (u32, u32),
}

/// Where a file's data is.
#[derive(Debug)]
struct FileData {
    blocks_start: u64,
    frag_index: u32,
    block_offset: u32,
    blocks: Box<[DataSize]>,
    /// Where each block starts in the image file (and the last ends),
    /// worked out at the file's first open and shared by every open.
    starts: std::sync::OnceLock<Arc<[u64]>>,
}

/// Blocks read lately, decompressed, by their place in the image file.
#[derive(Default)]
struct BlockCache {
    entries: VecDeque<(u64, Arc<[u8]>)>,
    bytes: usize,
}

/// A squashfs image, indexed.
pub struct Image {
    path: PathBuf,
    file: File,
    /// Where the squashfs starts in the file (a SIF's partition).
    offset: u64,
    /// The device number its objects show (not a real device's).
    dev: u64,
    block_size: u32,
    compressor: Compressor,
    fragments: Vec<Fragment>,
    nodes: Vec<Node>,
    names: Vec<u8>,
    children: Vec<u32>,
    files: Vec<FileData>,
    zeros: Arc<[u8]>,
    cache: Mutex<BlockCache>,
}

impl std::fmt::Debug for Image {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Image")
            .field("path", &self.path)
            .field("offset", &self.offset)
            .field("nodes", &self.nodes.len())
            .finish()
    }
}

/// Device numbers for images: above any real device's (majors are 12 bits).
static NEXT_DEV: AtomicU64 = AtomicU64::new(FIRST_DEV);
const FIRST_DEV: u64 = 1 << 44;

/// Whether `dev` is an image's (see [`Image::stat`]).
pub fn is_image_dev(dev: u64) -> bool {
    dev >= FIRST_DEV
}

fn open_file(path: &Path) -> Result<File, ImageError> {
    crate::sys::open_image_file(path).map_err(|source| ImageError::Open {
        path: path.to_path_buf(),
        source,
    })
}

fn eio() -> io::Error {
    io::Error::from_raw_os_error(libc::EIO)
}

/// A backhand error as words (its Display is empty without its
/// `error-strings` feature).
pub(crate) fn reason(e: backhand::BackhandError) -> String {
    format!("{e:?}")
}

impl Image {
    /// Checks that file `path` holds a squashfs image at `offset` whose
    /// superblock reads and which the file holds whole, up to `end` when
    /// given (a SIF partition's end): a quick look, for an error before the
    /// image is indexed.
    pub fn check(path: &Path, offset: u64, end: Option<u64>) -> Result<(), ImageError> {
        Self::check_file(path, &open_file(path)?, offset, end)
    }

    fn check_file(
        path: &Path,
        file: &File,
        offset: u64,
        end: Option<u64>,
    ) -> Result<(), ImageError> {
        use std::io::Seek;
        let corrupt = |reason: String| ImageError::Corrupt {
            path: path.to_path_buf(),
            reason,
        };
        let len = file.metadata().map(|m| m.len()).unwrap_or(0);
        let len = end.map_or(len, |end| end.min(len));
        let mut magic = [0u8; 4];
        file.read_exact_at(&mut magic, offset)
            .map_err(|_| corrupt("shorter than a superblock".into()))?;
        if &magic != b"hsqs" {
            return Err(corrupt(format!("no squashfs magic at offset {offset}")));
        }
        let mut reader = io::BufReader::new(file);
        reader
            .seek(io::SeekFrom::Start(offset))
            .map_err(|e| corrupt(e.to_string()))?;
        let kind = backhand::kind::Kind::from_target("le_v4_0").map_err(corrupt)?;
        let (superblock, _) =
            backhand::Squashfs::superblock_and_compression_options(&mut reader, &kind)
                .map_err(|e| corrupt(reason(e)))?;
        if offset.saturating_add(superblock.bytes_used) > len {
            return Err(corrupt(format!(
                "truncated: {} bytes of {} are there",
                len.saturating_sub(offset),
                superblock.bytes_used
            )));
        }
        Ok(())
    }

    /// Opens and indexes the squashfs image at `offset` in file `path`
    /// (which holds it up to `end`, when given).
    pub fn open(path: &Path, offset: u64, end: Option<u64>) -> Result<Arc<Image>, ImageError> {
        let file = open_file(path)?;
        Self::check_file(path, &file, offset, end)?;
        let len = file.metadata().map(|m| m.len()).unwrap_or(0);
        let parsed = index::index(&file, offset, len).map_err(|reason| ImageError::Corrupt {
            path: path.to_path_buf(),
            reason,
        })?;
        // The parser's tree is gone: give its memory back.
        // SAFETY: malloc_trim only returns free heap memory to the system.
        unsafe { libc::malloc_trim(0) };
        Ok(Arc::new(Image {
            path: path.to_path_buf(),
            file,
            offset,
            dev: NEXT_DEV.fetch_add(1, Ordering::Relaxed),
            block_size: parsed.block_size,
            compressor: parsed.compressor,
            fragments: parsed.fragments,
            nodes: parsed.nodes,
            names: parsed.names,
            children: parsed.children,
            files: parsed.files,
            zeros: vec![0u8; parsed.block_size as usize].into(),
            cache: Mutex::new(BlockCache::default()),
        }))
    }

    /// The image file, open.
    pub fn file(&self) -> &File {
        &self.file
    }

    /// The image file, as named.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The root directory's node.
    pub const ROOT: u32 = 0;

    fn node(&self, n: u32) -> &Node {
        &self.nodes[n as usize]
    }

    fn bytes(&self, (at, len): (u32, u32)) -> &[u8] {
        &self.names[at as usize..(at + len) as usize]
    }

    fn name(&self, n: u32) -> &OsStr {
        OsStr::from_bytes(self.bytes(self.node(n).name))
    }

    pub fn kind(&self, n: u32) -> Kind {
        Kind::of_mode(self.node(n).mode)
    }

    /// The children of directory `n`, sorted by name.
    pub fn children(&self, n: u32) -> &[u32] {
        let node = self.node(n);
        if self.kind(n) != Kind::Dir {
            return &[];
        }
        let (at, len) = node.data;
        &self.children[at as usize..(at + len) as usize]
    }

    /// The names in directory `n`.
    pub fn names_in(&self, n: u32) -> impl Iterator<Item = &OsStr> {
        self.children(n).iter().map(|&c| self.name(c))
    }

    /// `name` in directory `n`.
    pub fn child(&self, n: u32, name: &OsStr) -> Option<u32> {
        let kids = self.children(n);
        kids.binary_search_by(|&c| self.name(c).as_bytes().cmp(name.as_bytes()))
            .ok()
            .map(|i| kids[i])
    }

    /// The attributes of node `n`.
    pub fn stat(&self, n: u32) -> Stat {
        let node = self.node(n);
        let rdev = match self.kind(n) {
            Kind::CharDevice | Kind::BlockDevice => decode_dev(node.data.0),
            _ => 0,
        };
        let t = (i64::from(node.mtime), 0);
        Stat {
            dev: self.dev,
            ino: u64::from(n) + 1,
            mode: node.mode,
            nlink: u64::from(node.nlink),
            uid: node.uid,
            gid: node.gid,
            rdev,
            size: node.size,
            blksize: u64::from(self.block_size),
            blocks: node.size.div_ceil(512),
            times: [t; 3],
            mount_root: false,
        }
    }

    /// A symlink's target.
    pub fn link_target(&self, n: u32) -> io::Result<PathBuf> {
        if self.kind(n) != Kind::Symlink {
            return Err(io::Error::from_raw_os_error(libc::EINVAL));
        }
        Ok(PathBuf::from(OsStr::from_bytes(
            self.bytes(self.node(n).data),
        )))
    }

    /// Where each block of file `n` starts in the image file (and where
    /// the last ends): kept by the file's opens.
    pub fn block_starts(&self, n: u32) -> io::Result<Arc<[u64]>> {
        if self.kind(n) != Kind::File {
            return Err(io::Error::from_raw_os_error(libc::EISDIR));
        }
        let f = &self.files[self.node(n).data.0 as usize];
        if let Some(starts) = f.starts.get() {
            return Ok(starts.clone());
        }
        let mut at = self.offset.checked_add(f.blocks_start).ok_or_else(eio)?;
        let mut out = Vec::with_capacity(f.blocks.len() + 1);
        out.push(at);
        for b in f.blocks.iter() {
            at = at.checked_add(u64::from(b.size())).ok_or_else(eio)?;
            out.push(at);
        }
        Ok(f.starts.get_or_init(|| out.into()).clone())
    }

    /// Whether the byte at `pos` of file `n` is in a hole (a sparse block):
    /// then the end of that block.
    pub fn hole_at(&self, n: u32, pos: u64) -> Option<u64> {
        let f = &self.files[self.node(n).data.0 as usize];
        let bs = u64::from(self.block_size);
        let index = usize::try_from(pos / bs).ok()?;
        (f.blocks.get(index)?.size() == 0).then(|| (pos / bs + 1) * bs)
    }

    /// Reads file `n` (whose [`Image::block_starts`] are `starts`) at
    /// `off` into `buf`: the bytes read, short only at the end of the file.
    pub fn read_at(&self, n: u32, starts: &[u64], buf: &mut [u8], off: u64) -> io::Result<usize> {
        let node = self.node(n);
        let f = &self.files[node.data.0 as usize];
        let bs = u64::from(self.block_size);
        let mut done = 0;
        while done < buf.len() {
            let pos = off + done as u64;
            if pos >= node.size {
                break;
            }
            let index = (pos / bs) as usize;
            let within = (pos % bs) as usize;
            // The bytes of the file in this block (or in its fragment).
            let len = (node.size - index as u64 * bs).min(bs) as usize;
            let (data, from) = if index < f.blocks.len() {
                let block = self.block(starts[index], f.blocks[index])?;
                (block, 0)
            } else if index == f.blocks.len() {
                let frag = self.fragments.get(f.frag_index as usize).ok_or_else(eio)?;
                let at = self.offset.checked_add(frag.start).ok_or_else(eio)?;
                (self.block(at, frag.size)?, f.block_offset as usize)
            } else {
                return Err(eio()); // a file longer than its blocks
            };
            let end = from.checked_add(len).ok_or_else(eio)?;
            let bytes = data.get(from..end).ok_or_else(eio)?;
            let take = (len - within).min(buf.len() - done);
            buf[done..done + take].copy_from_slice(&bytes[within..within + take]);
            done += take;
        }
        Ok(done)
    }

    /// The block at `at` in the image file, of stored size `size`,
    /// decompressed.
    fn block(&self, at: u64, size: DataSize) -> io::Result<Arc<[u8]>> {
        let stored = size.size() as usize;
        if stored == 0 {
            return Ok(self.zeros.clone()); // a hole of a sparse file
        }
        if stored > self.block_size as usize {
            return Err(eio());
        }
        if let Some(hit) = self.cached(at) {
            return Ok(hit);
        }
        let mut raw = vec![0u8; stored];
        // (Cut short, or out of range: the image is bad here.)
        self.file.read_exact_at(&mut raw, at).map_err(|_| eio())?;
        let data: Arc<[u8]> = if size.uncompressed() {
            raw.into()
        } else {
            let limit = self.block_size as usize;
            let compressor = self.compressor;
            let out = std::panic::catch_unwind(move || {
                let mut out = Vec::with_capacity(limit);
                DefaultCompressor
                    .decompress(&raw, &mut out, compressor)
                    .ok()
                    .filter(|_| out.len() <= limit)
                    .map(|_| out)
            });
            out.ok().flatten().ok_or_else(eio)?.into()
        };
        self.remember(at, data.clone());
        Ok(data)
    }

    fn cached(&self, at: u64) -> Option<Arc<[u8]>> {
        let cache = self.cache.lock().unwrap_or_else(|p| p.into_inner());
        cache
            .entries
            .iter()
            .find(|(k, _)| *k == at)
            .map(|(_, d)| d.clone())
    }

    fn remember(&self, at: u64, data: Arc<[u8]>) {
        let mut cache = self.cache.lock().unwrap_or_else(|p| p.into_inner());
        if cache.entries.iter().any(|(k, _)| *k == at) {
            return;
        }
        cache.bytes += data.len().max(CACHE_MIN_CHARGE);
        cache.entries.push_front((at, data));
        while cache.bytes > CACHE_BYTES {
            match cache.entries.pop_back() {
                Some((_, old)) => cache.bytes -= old.len().max(CACHE_MIN_CHARGE),
                None => break,
            }
        }
    }
}

/// A device number as squashfs stores it (Linux's `new_encode_dev`).
fn decode_dev(dev: u32) -> u64 {
    let major = (dev & 0xfff00) >> 8;
    let minor = (dev & 0xff) | ((dev >> 12) & 0xfff00);
    libc::makedev(major, minor)
}

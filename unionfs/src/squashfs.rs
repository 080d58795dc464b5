//! A squashfs image file as a read-only layer, read in place: no unpacking,
//! no kernel mount, no privilege. The `backhand` crate parses the image's
//! tables once, at start; burrowfs keeps a compact index of it (names,
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
use backhand::{DataSize, FilesystemReader, Fragment, InnerNode};

use crate::layers::{Kind, Stat};

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

/// Decompressed blocks kept, at most (bytes).
const CACHE_BYTES: usize = 8 << 20;

/// Stack reserved for parsing an image: backhand walks directories
/// recursively, and an image may nest them deep.
const PARSE_STACK: usize = 256 << 20;

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
static NEXT_DEV: AtomicU64 = AtomicU64::new(1 << 44);

fn eio() -> io::Error {
    io::Error::from_raw_os_error(libc::EIO)
}

/// A backhand error as words (its Display is empty without its
/// `error-strings` feature).
fn reason(e: backhand::BackhandError) -> String {
    format!("{e:?}")
}

impl Image {
    /// Checks that file `path` holds a squashfs image at `offset` whose
    /// superblock reads and which the file holds whole (a quick look, for
    /// an error before the image is indexed).
    pub fn check(path: &Path, offset: u64) -> Result<(), ImageError> {
        use std::io::Seek;
        let corrupt = |reason: String| ImageError::Corrupt {
            path: path.to_path_buf(),
            reason,
        };
        let file = File::open(path).map_err(|source| ImageError::Open {
            path: path.to_path_buf(),
            source,
        })?;
        let len = file.metadata().map(|m| m.len()).unwrap_or(0);
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

    /// Opens and indexes the squashfs image at `offset` in file `path`.
    pub fn open(path: &Path, offset: u64) -> Result<Arc<Image>, ImageError> {
        let open_err = |source| ImageError::Open {
            path: path.to_path_buf(),
            source,
        };
        let file = File::open(path).map_err(open_err)?;
        if !file.metadata().map_err(open_err)?.is_file() {
            return Err(open_err(io::Error::other("not a regular file")));
        }
        Self::check(path, offset)?;
        let corrupt = |reason: String| ImageError::Corrupt {
            path: path.to_path_buf(),
            reason,
        };
        let reader = io::BufReader::new(file.try_clone().map_err(open_err)?);
        // Parsed on a thread of its own: a deep image cannot overflow this
        // one's stack, and a panic in the parser is an error, not a crash.
        let parsed = std::thread::Builder::new()
            .name("squashfs-index".into())
            .stack_size(PARSE_STACK)
            .spawn(move || -> Result<Index, String> {
                let fs =
                    FilesystemReader::from_reader_with_offset(reader, offset).map_err(reason)?;
                Index::of(&fs)
            })
            .map_err(open_err)?
            .join()
            .map_err(|_| corrupt("its tables could not be read".into()))?
            .map_err(corrupt)?;
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

    /// Where each full block of file `n` starts in the image file (plus
    /// where the last ends): kept by an open file.
    pub fn block_starts(&self, n: u32) -> io::Result<Box<[u64]>> {
        if self.kind(n) != Kind::File {
            return Err(io::Error::from_raw_os_error(libc::EISDIR));
        }
        let f = &self.files[self.node(n).data.0 as usize];
        let mut at = self.offset.checked_add(f.blocks_start).ok_or_else(eio)?;
        let mut out = Vec::with_capacity(f.blocks.len() + 1);
        out.push(at);
        for b in f.blocks.iter() {
            at = at.checked_add(u64::from(b.size())).ok_or_else(eio)?;
            out.push(at);
        }
        Ok(out.into())
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
            } else {
                let frag = self.fragments.get(f.frag_index as usize).ok_or_else(eio)?;
                let at = self.offset.checked_add(frag.start).ok_or_else(eio)?;
                (self.block(at, frag.size)?, f.block_offset as usize)
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
        self.file.read_exact_at(&mut raw, at).map_err(|e| {
            if e.kind() == io::ErrorKind::UnexpectedEof {
                eio() // a truncated image
            } else {
                e
            }
        })?;
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
        cache.bytes += data.len();
        cache.entries.push_front((at, data));
        while cache.bytes > CACHE_BYTES {
            match cache.entries.pop_back() {
                Some((_, old)) => cache.bytes -= old.len(),
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

/// What [`Image::open`] builds from backhand's tree.
struct Index {
    block_size: u32,
    compressor: Compressor,
    fragments: Vec<Fragment>,
    nodes: Vec<Node>,
    names: Vec<u8>,
    children: Vec<u32>,
    files: Vec<FileData>,
}

impl Index {
    fn of(fs: &FilesystemReader) -> Result<Index, String> {
        let all = &fs.root.nodes;
        if all.is_empty() || all.len() > u32::MAX as usize / 2 {
            return Err("no root directory".into());
        }
        if !fs.block_size.is_power_of_two() || !(4096..=1 << 20).contains(&fs.block_size) {
            return Err(format!("block size {}", fs.block_size));
        }
        let compressor: Compressor = fs.compressor.ok_or("no compressor recorded")?.into();
        // Each node's parent: the nodes are sorted by path, a directory's
        // descendants right after it, so the parent is on the stack of
        // directories above.
        let mut parents = vec![0u32; all.len()];
        let mut counts = vec![0u32; all.len()];
        let mut above: Vec<usize> = vec![0];
        for (i, n) in all.iter().enumerate().skip(1) {
            let parent = n.fullpath.parent().ok_or("a node without a parent")?;
            while let Some(&top) = above.last() {
                if all[top].fullpath == parent {
                    break;
                }
                above.pop();
            }
            let &p = above.last().ok_or("a node outside the tree")?;
            parents[i] = p as u32;
            counts[p] += 1;
            if matches!(n.inner, InnerNode::Dir(_)) {
                above.push(i);
            }
        }
        // Each directory's children, in path order (so by name), in one array.
        let mut starts = vec![0u32; all.len()];
        let mut total = 0u32;
        for (i, c) in counts.iter().enumerate() {
            starts[i] = total;
            total += c;
        }
        let mut children = vec![0u32; total as usize];
        let mut filled = vec![0u32; all.len()];
        for (i, &p) in parents.iter().enumerate().skip(1) {
            let p = p as usize;
            children[(starts[p] + filled[p]) as usize] = i as u32;
            filled[p] += 1;
        }
        let mut subdirs = vec![0u32; all.len()];
        for (i, n) in all.iter().enumerate().skip(1) {
            if matches!(n.inner, InnerNode::Dir(_)) {
                subdirs[parents[i] as usize] += 1;
            }
        }
        let mut names = Vec::new();
        let mut push = |b: &[u8]| -> Result<(u32, u32), String> {
            let at = u32::try_from(names.len()).map_err(|_| "too many names")?;
            names.extend_from_slice(b);
            Ok((at, b.len() as u32))
        };
        let mut nodes = Vec::with_capacity(all.len());
        let mut files = Vec::new();
        for (i, n) in all.iter().enumerate() {
            let name = match n.fullpath.file_name() {
                Some(name) => push(name.as_bytes())?,
                None => (0, 0),
            };
            let perm = u32::from(n.header.permissions) & 0o7777;
            let (kind, size, nlink, data) = match &n.inner {
                InnerNode::Dir(_) => (libc::S_IFDIR, 0, 2 + subdirs[i], (starts[i], counts[i])),
                InnerNode::File(f) => {
                    files.push(FileData {
                        blocks_start: f.blocks_start(),
                        frag_index: f.frag_index() as u32,
                        block_offset: f.block_offset(),
                        blocks: f.block_sizes().into(),
                    });
                    let index = files.len() as u32 - 1;
                    (libc::S_IFREG, f.file_len() as u64, 1, (index, 0))
                }
                InnerNode::Symlink(s) => {
                    let target = push(s.link.as_os_str().as_bytes())?;
                    (libc::S_IFLNK, u64::from(target.1), 1, target)
                }
                InnerNode::CharacterDevice(d) => (libc::S_IFCHR, 0, 1, (d.device_number, 0)),
                InnerNode::BlockDevice(d) => (libc::S_IFBLK, 0, 1, (d.device_number, 0)),
                InnerNode::NamedPipe => (libc::S_IFIFO, 0, 1, (0, 0)),
                InnerNode::Socket => (libc::S_IFSOCK, 0, 1, (0, 0)),
            };
            nodes.push(Node {
                name,
                mode: kind | perm,
                uid: n.header.uid,
                gid: n.header.gid,
                mtime: n.header.mtime,
                size,
                nlink,
                data,
            });
        }
        if !matches!(all[0].inner, InnerNode::Dir(_)) {
            return Err("the root is not a directory".into());
        }
        Ok(Index {
            block_size: fs.block_size,
            compressor,
            fragments: fs.fragments.clone().unwrap_or_default(),
            nodes,
            names,
            children,
            files,
        })
    }
}

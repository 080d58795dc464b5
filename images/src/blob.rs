//! Content-addressed blobs, read only after their digest and size match
//! what the descriptor that names them says.

use std::fs::File;
use std::io::{Read, Seek};
use std::path::{Path, PathBuf};

use sha2::{Digest as _, Sha256};

use crate::{io_err, Error, Result};

/// The hex part of a `sha256:` digest, checked to be one (the only
/// algorithm burrow accepts, as the image spec requires it be supported).
pub fn sha256_hex(digest: &str) -> Result<&str> {
    let hex = digest
        .strip_prefix("sha256:")
        .ok_or_else(|| Error::Invalid(format!("digest {digest:?}: not sha256")))?;
    if hex.len() != 64 || !hex.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f')) {
        return Err(Error::Invalid(format!("digest {digest:?}: malformed")));
    }
    Ok(hex)
}

/// Where a layout keeps blob `digest`.
pub fn path_in(layout: &Path, digest: &str) -> Result<PathBuf> {
    Ok(layout.join("blobs/sha256").join(sha256_hex(digest)?))
}

/// A reader that hashes and counts what passes through it.
pub struct Hashing<R> {
    inner: R,
    hasher: Sha256,
    count: u64,
}

impl<R: Read> Hashing<R> {
    pub fn new(inner: R) -> Self {
        Hashing {
            inner,
            hasher: Sha256::new(),
            count: 0,
        }
    }

    /// Reads what is left, then gives `sha256:HEX` and the byte count.
    pub fn finish(mut self) -> std::io::Result<(String, u64)> {
        std::io::copy(&mut self, &mut std::io::sink())?;
        Ok((format!("sha256:{:x}", self.hasher.finalize()), self.count))
    }
}

impl<R: Read> Read for Hashing<R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.hasher.update(&buf[..n]);
        self.count += n as u64;
        Ok(n)
    }
}

/// `sha256:HEX` of `data`.
pub fn digest_of(data: &[u8]) -> String {
    format!("sha256:{:x}", Sha256::digest(data))
}

/// A writer that hashes what passes through it: the digest of a blob as
/// it is written.
pub struct HashingWriter<W> {
    inner: W,
    hasher: Sha256,
    count: u64,
}

impl<W: std::io::Write> HashingWriter<W> {
    pub fn new(inner: W) -> Self {
        HashingWriter {
            inner,
            hasher: Sha256::new(),
            count: 0,
        }
    }

    /// `sha256:HEX` of what was written, its length, and the writer.
    pub fn finish(self) -> (String, u64, W) {
        (
            format!("sha256:{:x}", self.hasher.finalize()),
            self.count,
            self.inner,
        )
    }
}

impl<W: std::io::Write> std::io::Write for HashingWriter<W> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let n = self.inner.write(buf)?;
        self.hasher.update(&buf[..n]);
        self.count += n as u64;
        Ok(n)
    }

    fn flush(&mut self) -> std::io::Result<()> {
        self.inner.flush()
    }
}

fn check(what: &Path, want: &str, size: u64, got: (String, u64)) -> Result<()> {
    if got.1 != size {
        return Err(Error::Invalid(format!(
            "blob {}: {} bytes where its descriptor says {size}",
            what.display(),
            got.1
        )));
    }
    if got.0 != want {
        return Err(Error::Invalid(format!(
            "blob {}: its content's digest is {}, not {want}",
            what.display(),
            got.0
        )));
    }
    Ok(())
}

/// `path` opened for reading if it is a regular file: never through a
/// symlink, and never blocking on a FIFO.
pub fn open_regular(path: &Path) -> std::io::Result<File> {
    use std::os::unix::fs::OpenOptionsExt;
    let file = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NOFOLLOW | libc::O_NONBLOCK)
        .open(path)?;
    if !file.metadata()?.is_file() {
        return Err(std::io::Error::other("not a regular file"));
    }
    Ok(file)
}

/// At most `limit` bytes of the regular file `path`.
pub fn read_bounded(path: &Path, limit: u64) -> std::io::Result<Vec<u8>> {
    let mut data = Vec::new();
    open_regular(path)?.take(limit + 1).read_to_end(&mut data)?;
    if data.len() as u64 > limit {
        return Err(std::io::Error::other(format!("more than {limit} bytes")));
    }
    Ok(data)
}

/// A small blob (a manifest, index or configuration) read whole and
/// verified; at most `limit` bytes are read.
pub fn read_small(path: &Path, digest: &str, size: u64, limit: u64) -> Result<Vec<u8>> {
    if size > limit {
        return Err(Error::Invalid(format!(
            "blob {}: {size} bytes, more than the {limit} allowed",
            path.display()
        )));
    }
    let file = open_regular(path).map_err(io_err(format!("blob {}", path.display())))?;
    let mut data = Vec::new();
    let mut r = Hashing::new(file.take(limit + 1));
    r.read_to_end(&mut data)
        .map_err(io_err(format!("blob {}", path.display())))?;
    check(
        path,
        digest,
        size,
        (format!("sha256:{:x}", r.hasher.clone().finalize()), r.count),
    )?;
    Ok(data)
}

/// A blob whose digest was checked as it was written: opened as a regular
/// file of exactly `size` bytes.
pub fn open_sized(path: &Path, digest: &str, size: u64) -> Result<File> {
    let file = open_regular(path).map_err(io_err(format!("blob {}", path.display())))?;
    let len = file
        .metadata()
        .map_err(io_err(format!("blob {}", path.display())))?
        .len();
    if len != size {
        return Err(Error::Invalid(format!(
            "blob {digest}: {len} bytes where its descriptor says {size}"
        )));
    }
    Ok(file)
}

/// A blob opened, verified whole, and rewound for reading.
pub fn open_verified(path: &Path, digest: &str, size: u64) -> Result<File> {
    let what = || format!("blob {}", path.display());
    let file = open_regular(path).map_err(io_err(what()))?;
    // One byte past the size is enough to tell it is too long.
    let got = Hashing::new((&file).take(size.saturating_add(1)))
        .finish()
        .map_err(io_err(what()))?;
    check(path, digest, size, got)?;
    let mut file = file;
    file.rewind().map_err(io_err(what()))?;
    Ok(file)
}

//! A file of a layer, open: a descriptor of a directory layer's file, or a
//! file of an image layer (read in place from the image).

use std::fs::File;
use std::io;
use std::os::unix::fs::FileExt;
use std::sync::Arc;

use crate::layers::Stat;
use crate::squashfs::Image;

/// An open file of an image layer.
#[derive(Debug, Clone)]
pub struct ImageFile {
    image: Arc<Image>,
    node: u32,
    starts: Arc<[u64]>,
}

impl ImageFile {
    /// File `node` of `image`, which must be a regular file.
    pub fn open(image: Arc<Image>, node: u32) -> io::Result<ImageFile> {
        let starts = image.block_starts(node)?;
        Ok(ImageFile {
            image,
            node,
            starts,
        })
    }
}

/// Reads a [`LayerFile`] from the start.
pub struct Reader<'a> {
    file: &'a LayerFile,
    at: u64,
}

impl io::Read for Reader<'_> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.file.read_at(buf, self.at)?;
        self.at += n as u64;
        Ok(n)
    }
}

/// An open file of a layer.
#[derive(Debug)]
pub enum LayerFile {
    Os(File),
    Image(ImageFile),
}

impl From<File> for LayerFile {
    fn from(f: File) -> LayerFile {
        LayerFile::Os(f)
    }
}

impl LayerFile {
    /// Reads at `off`, as pread(2).
    pub fn read_at(&self, buf: &mut [u8], off: u64) -> io::Result<usize> {
        match self {
            LayerFile::Os(f) => f.read_at(buf, off),
            LayerFile::Image(f) => f.image.read_at(f.node, &f.starts, buf, off),
        }
    }

    /// The descriptor, for what only a file on disk does (writing,
    /// syncing, passthrough): EBADF for an image's file, which is never
    /// open for writing.
    pub fn os(&self) -> io::Result<&File> {
        match self {
            LayerFile::Os(f) => Ok(f),
            LayerFile::Image(_) => Err(io::Error::from_raw_os_error(libc::EBADF)),
        }
    }

    /// A reader from the start (std::io::Read).
    pub fn reader(&self) -> Reader<'_> {
        Reader { file: self, at: 0 }
    }

    /// The file on disk (EBADF for an image's file, as [`LayerFile::os`]).
    pub fn into_file(self) -> io::Result<File> {
        match self {
            LayerFile::Os(f) => Ok(f),
            LayerFile::Image(_) => Err(io::Error::from_raw_os_error(libc::EBADF)),
        }
    }

    /// For an image's file, when the byte at `pos` is in a hole: the end
    /// of the hole's block.
    pub fn hole_at(&self, pos: u64) -> Option<u64> {
        match self {
            LayerFile::Os(_) => None,
            LayerFile::Image(f) => f.image.hole_at(f.node, pos),
        }
    }

    /// Its attributes, as its layer holds them.
    pub fn stat(&self) -> io::Result<Stat> {
        match self {
            LayerFile::Os(f) => Ok(Stat::from_metadata(&f.metadata()?)),
            LayerFile::Image(f) => Ok(f.image.stat(f.node)),
        }
    }

    /// Whether it was opened for (reading, writing).
    pub fn access(&self) -> (bool, bool) {
        match self {
            LayerFile::Os(f) => {
                match nix::fcntl::fcntl(f, nix::fcntl::FcntlArg::F_GETFL)
                    .map(|fl| fl & libc::O_ACCMODE)
                {
                    Ok(libc::O_RDONLY) => (true, false),
                    Ok(libc::O_WRONLY) => (false, true),
                    Ok(_) => (true, true),
                    Err(_) => (false, false),
                }
            }
            LayerFile::Image(_) => (true, false),
        }
    }
}

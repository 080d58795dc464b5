//! Where the root filesystem is in an Apptainer/Singularity SIF file: its
//! global header names a table of descriptors, and the primary system
//! partition's descriptor says where its squashfs starts. Integers are
//! little-endian; the structures are packed.

use std::io;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

/// Why a SIF file's squashfs cannot be found.
#[derive(Debug, thiserror::Error)]
pub enum SifError {
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("{path}: not a SIF file ({reason})")]
    Bad { path: PathBuf, reason: &'static str },
}

const MAGIC: &[u8] = b"SIF_MAGIC\0";
/// The global header's size and its fields' places.
const HEADER_LEN: usize = 128;
const MAGIC_AT: usize = 32;
const DESCRIPTORS_TOTAL_AT: usize = 88;
const DESCRIPTORS_AT: usize = 96;
/// One descriptor's size and its fields' places.
const DESCRIPTOR_LEN: usize = 585;
const TYPE_AT: usize = 0;
const USED_AT: usize = 4;
const OFFSET_AT: usize = 17;
const SIZE_AT: usize = 25;
const EXTRA_AT: usize = 201;
/// A partition; its file system squashfs; a system or the primary one.
const DATA_PARTITION: i32 = 0x4004;
const FS_SQUASHFS: i32 = 1;
const PART_SYSTEM: i32 = 1;
const PART_PRIMARY_SYSTEM: i32 = 2;
/// Descriptors read, at most (Apptainer makes 48).
const MAX_DESCRIPTORS: u64 = 4096;

fn i32_at(b: &[u8], at: usize) -> i32 {
    i32::from_le_bytes(b[at..at + 4].try_into().expect("4 bytes"))
}

fn i64_at(b: &[u8], at: usize) -> i64 {
    i64::from_le_bytes(b[at..at + 8].try_into().expect("8 bytes"))
}

/// Where the squashfs of the SIF file `path`'s primary system partition
/// (or else its first system partition) is: its offset and its end.
pub fn squashfs_partition(path: &Path) -> Result<(u64, u64), SifError> {
    let io_err = |source| SifError::Io {
        path: path.to_path_buf(),
        source,
    };
    let bad = |reason| SifError::Bad {
        path: path.to_path_buf(),
        reason,
    };
    let file = crate::sys::open_image_file(path).map_err(io_err)?;
    let len = file.metadata().map_err(io_err)?.len();
    let mut header = [0u8; HEADER_LEN];
    file.read_exact_at(&mut header, 0)
        .map_err(|_| bad("shorter than its header"))?;
    if &header[MAGIC_AT..MAGIC_AT + MAGIC.len()] != MAGIC {
        return Err(bad("no SIF_MAGIC"));
    }
    let total = u64::try_from(i64_at(&header, DESCRIPTORS_TOTAL_AT))
        .ok()
        .filter(|n| (1..=MAX_DESCRIPTORS).contains(n))
        .ok_or(bad("a bad descriptor count"))?;
    let at = u64::try_from(i64_at(&header, DESCRIPTORS_AT)).map_err(|_| bad("a bad offset"))?;
    let mut table = vec![0u8; total as usize * DESCRIPTOR_LEN];
    file.read_exact_at(&mut table, at)
        .map_err(|_| bad("its descriptor table is cut short"))?;
    let mut found: Option<(bool, u64, u64)> = None;
    for d in table.chunks_exact(DESCRIPTOR_LEN) {
        if d[USED_AT] == 0
            || i32_at(d, TYPE_AT) != DATA_PARTITION
            || i32_at(d, EXTRA_AT) != FS_SQUASHFS
        {
            continue;
        }
        let primary = match i32_at(d, EXTRA_AT + 4) {
            PART_PRIMARY_SYSTEM => true,
            PART_SYSTEM => false,
            _ => continue,
        };
        let (offset, size) = (i64_at(d, OFFSET_AT), i64_at(d, SIZE_AT));
        let (Ok(offset), Ok(size)) = (u64::try_from(offset), u64::try_from(size)) else {
            return Err(bad("a partition with a negative offset or size"));
        };
        let Some(end) = offset.checked_add(size).filter(|&end| end <= len) else {
            return Err(bad("a partition beyond the end of the file"));
        };
        if found.is_none_or(|(p, ..)| primary && !p) {
            found = Some((primary, offset, end));
        }
    }
    found
        .map(|(_, offset, end)| (offset, end))
        .ok_or(bad("no squashfs system partition"))
}

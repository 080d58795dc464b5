//! burrowfs: a union filesystem in kernel overlayfs' on-disk format.
//!
//! This crate holds the layer logic (how read-only lower layers and a
//! writable upper merge, with whiteouts and opaque directories) apart from
//! the FUSE glue, so that the merge rules can be tested on plain
//! directories and against kernel overlayfs.

pub mod format;
pub mod fs;
pub mod idmap;
pub mod layer_dir;
pub mod layer_file;
pub mod layers;
pub mod mounts;
mod node_files;
pub mod options;
pub mod override_stat;
pub mod sif;
pub mod squashfs;
mod sys;
pub mod upper;

pub use layers::{DirEntry, Entry, Kind, Stack};

//! burrowfs: a FUSE union filesystem (read-only lowers, a writable upper,
//! kernel overlayfs' on-disk format). Built out in the union fs issue.

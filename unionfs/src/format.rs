//! The on-disk markers of kernel overlayfs and of OCI image layers.
//!
//! - whiteout: a character device 0/0, or (kernel 6.7+) an empty regular
//!   file with the `overlay.whiteout` xattr inside a directory whose
//!   `overlay.opaque` xattr is "x";
//! - opaque directory: `overlay.opaque` = "y";
//! - OCI layers: `.wh.NAME` hides NAME, `.wh..wh..opq` makes its directory
//!   opaque.
//!
//! The xattrs live in the `user.` namespace for overlayfs mounted with
//! `userxattr` (unprivileged), and in `trusted.` otherwise; both are read.

use std::ffi::OsStr;
use std::path::Path;

use crate::layer_dir::Dir;

/// Prefix of OCI whiteout names.
pub const OCI_WHITEOUT_PREFIX: &str = ".wh.";
/// OCI marker that makes its directory opaque.
pub const OCI_OPAQUE_MARKER: &str = ".wh..wh..opq";

/// Whether this process can read `trusted.*` xattrs at all: only with
/// CAP_SYS_ADMIN in the initial user namespace. Elsewhere asking would only
/// cost a system call that always fails.
fn trusted_readable() -> bool {
    static READABLE: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
    *READABLE
        .get_or_init(|| crate::sys::in_initial_user_namespace() && nix::unistd::geteuid().is_root())
}

/// The value of overlay xattr `name` ("opaque", "whiteout", ...) of `entry`
/// in `dir` (empty: `dir` itself), from the user namespace first, then
/// trusted (when readable).
pub fn overlay_xattr(dir: &Dir, entry: &OsStr, name: &str) -> Option<Vec<u8>> {
    if let Ok(Some(v)) = dir.get_xattr(entry, &format!("user.overlay.{name}")) {
        return Some(v);
    }
    if trusted_readable() {
        return dir
            .get_xattr(entry, &format!("trusted.overlay.{name}"))
            .ok()
            .flatten();
    }
    None
}

/// How a directory in one layer affects the layers below it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DirMark {
    /// Lower layers' contents show through.
    Transparent,
    /// Lower layers' contents are hidden.
    Opaque,
    /// Transparent, and may hold xattr whiteouts (`overlay.opaque` = "x").
    HasXattrWhiteouts,
}

/// The overlay mark of directory `entry` in `dir` (empty: `dir` itself),
/// honouring OCI's opaque marker only when `oci` (in lower layers: in the
/// upper layer `.wh..wh..opq` is just a name).
pub fn dir_mark(dir: &Dir, entry: &OsStr, oci: bool) -> DirMark {
    match overlay_xattr(dir, entry, "opaque").as_deref() {
        Some(b"y") => DirMark::Opaque,
        Some(b"x") => DirMark::HasXattrWhiteouts,
        _ if oci && dir.has(&Path::new(entry).join(OCI_OPAQUE_MARKER).into_os_string()) => {
            DirMark::Opaque
        }
        _ => DirMark::Transparent,
    }
}

/// Whether `entry` in `dir` (with attributes `meta`) is a whiteout;
/// `parent` gives the mark of `dir`, asked only for an empty regular file.
pub fn is_whiteout(
    dir: &Dir,
    entry: &OsStr,
    meta: &impl crate::layers::Attrs,
    parent: impl FnOnce() -> DirMark,
) -> bool {
    use crate::layers::Kind;
    match meta.kind() {
        Kind::CharDevice => meta.st_rdev() == 0,
        Kind::File => {
            meta.st_size() == 0
                && parent() == DirMark::HasXattrWhiteouts
                && overlay_xattr(dir, entry, "whiteout").is_some()
        }
        _ => false,
    }
}

/// The name an OCI whiteout file hides, if `name` is one.
pub fn oci_hidden_name(name: &str) -> Option<&str> {
    if name == OCI_OPAQUE_MARKER {
        return None;
    }
    name.strip_prefix(OCI_WHITEOUT_PREFIX)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn oci_names() {
        assert_eq!(oci_hidden_name(".wh.foo"), Some("foo"));
        assert_eq!(oci_hidden_name(".wh..wh..opq"), None);
        assert_eq!(oci_hidden_name("foo"), None);
    }
}

//! The syscall edge of burrowfs: calls the safe crates do not cover.

use std::ffi::{CString, OsStr};
use std::io;
use std::os::unix::ffi::OsStrExt;
use std::path::Path;

fn cstr(b: &[u8]) -> io::Result<CString> {
    CString::new(b).map_err(|_| io::Error::from_raw_os_error(libc::EINVAL))
}

/// `lsetxattr(2)` with the caller's flags (XATTR_CREATE, XATTR_REPLACE).
pub fn set_xattr(path: &Path, name: &OsStr, value: &[u8], flags: i32) -> io::Result<()> {
    let p = cstr(path.as_os_str().as_bytes())?;
    let n = cstr(name.as_bytes())?;
    // SAFETY: both strings are NUL-terminated and outlive the call; the
    // value pointer and length describe a live slice.
    let r = unsafe {
        libc::lsetxattr(
            p.as_ptr(),
            n.as_ptr(),
            value.as_ptr().cast(),
            value.len(),
            flags,
        )
    };
    if r < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(())
    }
}

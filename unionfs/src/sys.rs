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

/// `fstatat(2)` of `name` in directory `dir`, not following a symlink:
/// one path component to walk instead of the whole path.
pub fn stat_at(dir: std::os::fd::BorrowedFd, name: &OsStr) -> io::Result<crate::layers::Stat> {
    use std::os::fd::AsRawFd;
    let n = cstr(name.as_bytes())?;
    let mut st = std::mem::MaybeUninit::<libc::stat>::uninit();
    // SAFETY: `n` is NUL-terminated and outlives the call; `st` has room
    // for the struct fstatat fills.
    let r = unsafe {
        libc::fstatat(
            dir.as_raw_fd(),
            n.as_ptr(),
            st.as_mut_ptr(),
            libc::AT_SYMLINK_NOFOLLOW,
        )
    };
    if r < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: fstatat succeeded, so it filled the struct.
    Ok(crate::layers::Stat::from_raw(&unsafe { st.assume_init() }))
}

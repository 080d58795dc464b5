//! The syscall edge of burrowfs: calls the safe crates do not cover, each
//! relative to a directory descriptor and never following a symlink.

use std::ffi::{CString, OsStr};
use std::io;
use std::os::fd::{AsRawFd, BorrowedFd};
use std::os::unix::ffi::OsStrExt;
use std::sync::atomic::{AtomicBool, Ordering};

use crate::layers::Stat;

/// Whether this process is in the initial user namespace (its uid map is
/// the whole range, unshifted).
pub fn in_initial_user_namespace() -> bool {
    std::fs::read_to_string("/proc/self/uid_map")
        .is_ok_and(|m| m.split_whitespace().eq(["0", "0", "4294967295"]))
}

fn cstr(b: &[u8]) -> io::Result<CString> {
    CString::new(b).map_err(|_| io::Error::from_raw_os_error(libc::EINVAL))
}

fn check(r: libc::c_long) -> io::Result<usize> {
    if r < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(r as usize)
    }
}

/// The `*at` flags for `name` in a directory: the directory itself when
/// `name` is empty, and never through a symlink.
fn at_flags(name: &OsStr) -> libc::c_int {
    if name.is_empty() {
        libc::AT_EMPTY_PATH | libc::AT_SYMLINK_NOFOLLOW
    } else {
        libc::AT_SYMLINK_NOFOLLOW
    }
}

/// `statx(2)` of `name` in `dir` (the directory itself when `name` is
/// empty), not following a symlink, with whether it is the root of a mount.
pub fn stat_at(dir: BorrowedFd, name: &OsStr) -> io::Result<Stat> {
    let n = cstr(name.as_bytes())?;
    let mut st = std::mem::MaybeUninit::<libc::statx>::zeroed();
    // SAFETY: `n` is NUL-terminated and outlives the call; `st` has room
    // for the struct statx fills.
    let r = unsafe {
        libc::statx(
            dir.as_raw_fd(),
            n.as_ptr(),
            // Never triggering an automount: what is there is shown as it is.
            at_flags(name) | libc::AT_STATX_SYNC_AS_STAT | libc::AT_NO_AUTOMOUNT,
            libc::STATX_BASIC_STATS,
            st.as_mut_ptr(),
        )
    };
    check(r.into())?;
    // SAFETY: statx succeeded, so it filled the struct (zeroed before).
    let st = unsafe { st.assume_init() };
    let dev = libc::makedev(st.stx_dev_major, st.stx_dev_minor);
    let rdev = libc::makedev(st.stx_rdev_major, st.stx_rdev_minor);
    let t = |t: libc::statx_timestamp| (t.tv_sec, i64::from(t.tv_nsec));
    let mount_root = st.stx_attributes_mask & libc::STATX_ATTR_MOUNT_ROOT as u64 != 0
        && st.stx_attributes & libc::STATX_ATTR_MOUNT_ROOT as u64 != 0;
    Ok(Stat {
        dev,
        ino: st.stx_ino,
        mode: u32::from(st.stx_mode),
        nlink: u64::from(st.stx_nlink),
        uid: st.stx_uid,
        gid: st.stx_gid,
        rdev,
        size: st.stx_size,
        blksize: u64::from(st.stx_blksize),
        blocks: st.stx_blocks,
        times: [t(st.stx_atime), t(st.stx_mtime), t(st.stx_ctime)],
        mount_root,
    })
}

/// The mode of the object `fd` (an O_PATH descriptor) holds: fchmodat2
/// with AT_EMPTY_PATH, or chmod through /proc/self/fd on older kernels.
/// The id of the mount `fd` is on.
pub fn mount_id(fd: BorrowedFd) -> io::Result<u64> {
    let mut st = std::mem::MaybeUninit::<libc::statx>::zeroed();
    // SAFETY: the path is a NUL-terminated literal; `st` has room for the
    // struct statx fills.
    let r = unsafe {
        libc::statx(
            fd.as_raw_fd(),
            c"".as_ptr(),
            libc::AT_EMPTY_PATH | libc::AT_STATX_SYNC_AS_STAT,
            libc::STATX_MNT_ID,
            st.as_mut_ptr(),
        )
    };
    check(r.into())?;
    // SAFETY: statx succeeded, so it filled the struct (zeroed before).
    let st = unsafe { st.assume_init() };
    if st.stx_mask & libc::STATX_MNT_ID == 0 {
        return Err(io::Error::from_raw_os_error(libc::EOPNOTSUPP));
    }
    Ok(st.stx_mnt_id)
}

pub fn chmod_object(fd: BorrowedFd, mode: u32) -> io::Result<()> {
    const SYS_FCHMODAT2: libc::c_long = 452;
    let st = stat_at(fd, OsStr::new(""))?;
    if st.mode & libc::S_IFMT == libc::S_IFLNK {
        return Err(io::Error::from_raw_os_error(libc::EOPNOTSUPP));
    }
    // SAFETY: the path is a NUL-terminated empty string, a static.
    let r = unsafe {
        libc::syscall(
            SYS_FCHMODAT2,
            fd.as_raw_fd(),
            c"".as_ptr(),
            mode,
            libc::AT_EMPTY_PATH | libc::AT_SYMLINK_NOFOLLOW,
        )
    };
    match check(r) {
        Err(e) if e.raw_os_error() == Some(libc::ENOSYS) => std::fs::set_permissions(
            format!("/proc/self/fd/{}", fd.as_raw_fd()),
            std::os::unix::fs::PermissionsExt::from_mode(mode),
        ),
        other => other.map(drop),
    }
}

/// Access and modification times of the object `fd` (an O_PATH
/// descriptor) holds.
pub fn set_times_object(
    fd: BorrowedFd,
    atime: &nix::sys::time::TimeSpec,
    mtime: &nix::sys::time::TimeSpec,
) -> io::Result<()> {
    let times = [*atime.as_ref(), *mtime.as_ref()];
    // SAFETY: the path is a static empty string and `times` two timespecs,
    // both live for the call.
    let r = unsafe {
        libc::utimensat(
            fd.as_raw_fd(),
            c"".as_ptr(),
            times.as_ptr(),
            libc::AT_EMPTY_PATH | libc::AT_SYMLINK_NOFOLLOW,
        )
    };
    check(r.into()).map(drop)
}

/// Sets xattr `key` of the object `fd` (an O_PATH descriptor) holds,
/// through /proc/self/fd (which names that inode, not a path).
pub fn set_xattr_object(fd: BorrowedFd, key: &OsStr, value: &[u8], flags: i32) -> io::Result<()> {
    let p = cstr(format!("/proc/self/fd/{}", fd.as_raw_fd()).as_bytes())?;
    let k = cstr(key.as_bytes())?;
    // SAFETY: both strings are NUL-terminated and outlive the call; the
    // value pointer and length describe a live slice.
    let r = unsafe {
        libc::setxattr(
            p.as_ptr(),
            k.as_ptr(),
            value.as_ptr().cast(),
            value.len(),
            flags,
        )
    };
    check(r.into()).map(drop)
}

fn fd_of(fd: &std::os::fd::OwnedFd) -> BorrowedFd<'_> {
    std::os::fd::AsFd::as_fd(fd)
}

/// An O_PATH descriptor of `name` in `dir` (not following a symlink) and
/// its /proc/self/fd path, for calls that have no `*at` form here.
fn by_descriptor(
    dir: BorrowedFd,
    name: &OsStr,
) -> io::Result<(std::os::fd::OwnedFd, std::path::PathBuf)> {
    use nix::fcntl::OFlag;
    let target = if name.is_empty() {
        OsStr::new(".")
    } else {
        name
    };
    let fd = nix::fcntl::openat(
        dir,
        target,
        OFlag::O_PATH | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC,
        nix::sys::stat::Mode::empty(),
    )
    .map_err(|e| io::Error::from_raw_os_error(e as i32))?;
    let path = format!("/proc/self/fd/{}", fd.as_raw_fd()).into();
    Ok((fd, path))
}

/// `name`, or `.` for the directory itself (the `*xattrat` calls take no
/// O_PATH descriptor for AT_EMPTY_PATH, and every descriptor here is one).
fn itself(name: &OsStr) -> &OsStr {
    if name.is_empty() {
        OsStr::new(".")
    } else {
        name
    }
}

/// The `*xattrat` system calls (Linux 6.13): extended attributes of a name
/// in a directory, never through a symlink.
const SYS_SETXATTRAT: libc::c_long = 463;
const SYS_GETXATTRAT: libc::c_long = 464;
const SYS_LISTXATTRAT: libc::c_long = 465;
const SYS_REMOVEXATTRAT: libc::c_long = 466;

/// Set once the kernel says it has no `*xattrat` calls.
static NO_XATTRAT: AtomicBool = AtomicBool::new(false);

#[repr(C)]
struct XattrArgs {
    value: u64,
    size: u32,
    flags: u32,
}

/// Runs `at` (an `*xattrat` call) unless the kernel lacks them; `None`
/// then, and the caller goes through /proc/self/fd instead.
fn try_at(at: impl FnOnce() -> libc::c_long) -> Option<io::Result<usize>> {
    if NO_XATTRAT.load(Ordering::Relaxed) {
        return None;
    }
    match check(at()) {
        Err(e) if e.raw_os_error() == Some(libc::ENOSYS) => {
            NO_XATTRAT.store(true, Ordering::Relaxed);
            None
        }
        other => Some(other),
    }
}

fn no_data(e: &io::Error) -> bool {
    e.raw_os_error() == Some(libc::ENODATA)
}

/// The value of xattr `key` of `name` in `dir`, `None` when it has none.
pub fn get_xattr_at(dir: BorrowedFd, name: &OsStr, key: &OsStr) -> io::Result<Option<Vec<u8>>> {
    let name = itself(name);
    let (n, k) = (cstr(name.as_bytes())?, cstr(key.as_bytes())?);
    let mut buf: Vec<u8> = Vec::new();
    loop {
        let mut args = XattrArgs {
            value: buf.as_mut_ptr() as u64,
            size: buf.len() as u32,
            flags: 0,
        };
        // SAFETY: the strings are NUL-terminated and outlive the call;
        // `args` describes `buf` (room for `size` bytes) and outlives it.
        let res = try_at(|| unsafe {
            libc::syscall(
                SYS_GETXATTRAT,
                dir.as_raw_fd(),
                n.as_ptr(),
                at_flags(name),
                k.as_ptr(),
                &mut args as *mut XattrArgs,
                std::mem::size_of::<XattrArgs>(),
            )
        });
        let Some(res) = res else {
            return get_xattr_by_descriptor(dir, name, key);
        };
        match res {
            Ok(len) if buf.is_empty() && len > 0 => buf.resize(len, 0),
            Ok(len) => {
                buf.truncate(len);
                return Ok(Some(buf));
            }
            // Grown between the two calls: ask its size again.
            Err(e) if e.raw_os_error() == Some(libc::ERANGE) => buf.clear(),
            Err(e) if no_data(&e) => return Ok(None),
            Err(e) => return Err(e),
        }
    }
}

/// [`get_xattr_at`] through /proc/self/fd (kernels before 6.13).
pub fn get_xattr_by_descriptor(
    dir: BorrowedFd,
    name: &OsStr,
    key: &OsStr,
) -> io::Result<Option<Vec<u8>>> {
    let (_fd, path) = by_descriptor(dir, name)?;
    xattr::get_deref(path, key)
}

/// The names of `name`'s xattrs, NUL-separated as listxattr(2) gives them.
pub fn list_xattr_at(dir: BorrowedFd, name: &OsStr) -> io::Result<Vec<u8>> {
    let name = itself(name);
    let n = cstr(name.as_bytes())?;
    let mut buf: Vec<u8> = Vec::new();
    loop {
        let (ptr, len) = (buf.as_mut_ptr(), buf.len());
        // SAFETY: `n` is NUL-terminated and outlives the call; `ptr` and
        // `len` describe `buf`.
        let res = try_at(|| unsafe {
            libc::syscall(
                SYS_LISTXATTRAT,
                dir.as_raw_fd(),
                n.as_ptr(),
                at_flags(name),
                ptr,
                len,
            )
        });
        let Some(res) = res else {
            let (_fd, path) = by_descriptor(dir, name)?;
            let mut out = Vec::new();
            for k in xattr::list_deref(path)? {
                out.extend_from_slice(k.as_bytes());
                out.push(0);
            }
            return Ok(out);
        };
        match res {
            Ok(got) if buf.is_empty() && got > 0 => buf.resize(got, 0),
            Ok(got) => {
                buf.truncate(got);
                return Ok(buf);
            }
            Err(e) if e.raw_os_error() == Some(libc::ERANGE) => buf.clear(),
            Err(e) => return Err(e),
        }
    }
}

/// Sets xattr `key` of `name` with the caller's flags (XATTR_CREATE,
/// XATTR_REPLACE).
pub fn set_xattr_at(
    dir: BorrowedFd,
    name: &OsStr,
    key: &OsStr,
    value: &[u8],
    flags: i32,
) -> io::Result<()> {
    let name = itself(name);
    let (n, k) = (cstr(name.as_bytes())?, cstr(key.as_bytes())?);
    let args = XattrArgs {
        value: value.as_ptr() as u64,
        size: value.len() as u32,
        flags: flags as u32,
    };
    // SAFETY: the strings are NUL-terminated, `args` describes `value`,
    // and all outlive the call.
    let res = try_at(|| unsafe {
        libc::syscall(
            SYS_SETXATTRAT,
            dir.as_raw_fd(),
            n.as_ptr(),
            at_flags(name),
            k.as_ptr(),
            &args as *const XattrArgs,
            std::mem::size_of::<XattrArgs>(),
        )
    });
    match res {
        Some(r) => r.map(drop),
        None => {
            let (fd, _) = by_descriptor(dir, name)?;
            set_xattr_object(fd_of(&fd), key, value, flags)
        }
    }
}

/// Removes xattr `key` of `name`.
pub fn remove_xattr_at(dir: BorrowedFd, name: &OsStr, key: &OsStr) -> io::Result<()> {
    let name = itself(name);
    let (n, k) = (cstr(name.as_bytes())?, cstr(key.as_bytes())?);
    // SAFETY: the strings are NUL-terminated and outlive the call.
    let res = try_at(|| unsafe {
        libc::syscall(
            SYS_REMOVEXATTRAT,
            dir.as_raw_fd(),
            n.as_ptr(),
            at_flags(name),
            k.as_ptr(),
        )
    });
    match res {
        Some(r) => r.map(drop),
        None => {
            let (_fd, path) = by_descriptor(dir, name)?;
            xattr::remove_deref(path, key)
        }
    }
}

/// Opens the image file `path` (a squashfs or SIF file) for reading
/// without blocking (a FIFO put in its place cannot hold burrowfs up), as
/// a regular file only.
pub fn open_image_file(path: &std::path::Path) -> io::Result<std::fs::File> {
    use std::os::unix::fs::OpenOptionsExt;
    let file = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NONBLOCK | libc::O_NOCTTY)
        .open(path)?;
    if !file.metadata()?.is_file() {
        return Err(io::Error::other("not a regular file"));
    }
    Ok(file)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::fd::AsFd;

    #[test]
    fn xattrs_through_a_descriptor_agree_with_the_at_calls() {
        let dir = std::env::temp_dir().join(format!("burrowfs-sys-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join("f"), b"").unwrap();
        let d = std::fs::File::open(&dir).unwrap();
        let key = OsStr::new("user.burrowfs.test");
        match set_xattr_at(d.as_fd(), OsStr::new("f"), key, b"v", 0) {
            Err(e) if e.raw_os_error() == Some(libc::EOPNOTSUPP) => {
                eprintln!("SKIPPED: no user xattrs on {}", dir.display());
                return;
            }
            other => other.unwrap(),
        }
        let at = get_xattr_at(d.as_fd(), OsStr::new("f"), key).unwrap();
        let by_fd = get_xattr_by_descriptor(d.as_fd(), OsStr::new("f"), key).unwrap();
        assert_eq!(at.as_deref(), Some(&b"v"[..]));
        assert_eq!(at, by_fd);
        assert_eq!(
            get_xattr_at(d.as_fd(), OsStr::new("f"), OsStr::new("user.none")).unwrap(),
            None
        );
        std::os::unix::fs::symlink("/etc/passwd", dir.join("l")).unwrap();
        let (link, _) = by_descriptor(d.as_fd(), OsStr::new("l")).unwrap();
        assert!(chmod_object(fd_of(&link), 0o777).is_err());
        std::fs::remove_dir_all(&dir).unwrap();
    }
}

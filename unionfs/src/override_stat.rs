//! Owners, modes and file types a layer records but its unprivileged
//! writer could not give the file on disk: the `user.containers.override_stat`
//! xattr of containers-storage and fuse-overlayfs (`xattr_permissions=2`).
//!
//! Its value is `UID:GID:MODE[:TYPE]`: decimal ids, the permission bits
//! (07777) in octal, and a type of `file`, `dir`, `symlink`, `pipe`,
//! `socket`, `char-MAJOR-MINOR` or `block-MAJOR-MINOR`. An image's device
//! node is stored as an empty regular file with a `char-`/`block-` type.
//!
//! The sandbox never reads, writes or lists this xattr: a file it could
//! mark would show as anyone's, set-user-ID included.

use crate::layers::Stat;

/// The xattr's name.
pub const XATTR: &str = "user.containers.override_stat";

/// What one override says.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Override {
    pub uid: u32,
    pub gid: u32,
    /// Permission bits (07777).
    pub perm: u32,
    /// The file type (`S_IFMT` bits) and device number, when given.
    pub kind: Option<(u32, u64)>,
}

impl Override {
    pub fn parse(value: &[u8]) -> Option<Override> {
        let text = std::str::from_utf8(value).ok()?;
        let mut fields = text.trim_end_matches('\0').splitn(4, ':');
        let uid = fields.next()?.parse().ok()?;
        let gid = fields.next()?.parse().ok()?;
        let perm = u32::from_str_radix(fields.next()?, 8).ok()?;
        if perm > 0o7777 {
            return None;
        }
        let kind = match fields.next() {
            None => None,
            Some(t) => Some(parse_type(t)?),
        };
        Some(Override {
            uid,
            gid,
            perm,
            kind,
        })
    }

    /// The xattr's value.
    pub fn encode(&self) -> String {
        let head = format!("{}:{}:0{:o}", self.uid, self.gid, self.perm);
        match self.kind {
            None => head,
            Some((fmt, rdev)) => format!("{head}:{}", type_name(fmt, rdev)),
        }
    }

    /// `meta` (of the file carrying this override) as the layer means it.
    /// A type is taken only where the file on disk could stand for it: a
    /// regular file for a device, FIFO or socket; a directory or symlink
    /// only for itself. Otherwise the file keeps its own type.
    pub fn apply(&self, meta: &mut Stat) {
        let real = meta.mode & libc::S_IFMT;
        let mut fmt = real;
        if let Some((want, rdev)) = self.kind {
            if want == real || real == libc::S_IFREG && stands_in(want) {
                fmt = want;
                meta.rdev = if matches!(want, libc::S_IFCHR | libc::S_IFBLK) {
                    rdev
                } else {
                    0
                };
                if fmt != libc::S_IFREG {
                    meta.size = 0;
                    meta.blocks = 0;
                }
            }
        }
        meta.uid = self.uid;
        meta.gid = self.gid;
        meta.mode = fmt | (self.perm & 0o7777);
    }

    /// This override with owner and permissions changed as asked (a chown
    /// or chmod of the file it describes).
    pub fn changed(mut self, uid: Option<u32>, gid: Option<u32>, perm: Option<u32>) -> Override {
        self.uid = uid.unwrap_or(self.uid);
        self.gid = gid.unwrap_or(self.gid);
        self.perm = perm.map_or(self.perm, |p| p & 0o7777);
        self
    }
}

/// Types an empty regular file on disk may stand for.
fn stands_in(fmt: u32) -> bool {
    matches!(
        fmt,
        libc::S_IFCHR | libc::S_IFBLK | libc::S_IFIFO | libc::S_IFSOCK
    )
}

fn parse_type(t: &str) -> Option<(u32, u64)> {
    let device = |rest: &str| {
        let (major, minor) = rest.split_once('-')?;
        Some(libc::makedev(major.parse().ok()?, minor.parse().ok()?))
    };
    Some(match t {
        "file" => (libc::S_IFREG, 0),
        "dir" => (libc::S_IFDIR, 0),
        "symlink" => (libc::S_IFLNK, 0),
        "pipe" => (libc::S_IFIFO, 0),
        "socket" => (libc::S_IFSOCK, 0),
        _ => match (t.strip_prefix("char-"), t.strip_prefix("block-")) {
            (Some(rest), _) => (libc::S_IFCHR, device(rest)?),
            (_, Some(rest)) => (libc::S_IFBLK, device(rest)?),
            _ => return None,
        },
    })
}

fn type_name(fmt: u32, rdev: u64) -> String {
    let (major, minor) = (libc::major(rdev), libc::minor(rdev));
    match fmt {
        libc::S_IFDIR => "dir".into(),
        libc::S_IFLNK => "symlink".into(),
        libc::S_IFIFO => "pipe".into(),
        libc::S_IFSOCK => "socket".into(),
        libc::S_IFCHR => format!("char-{major}-{minor}"),
        libc::S_IFBLK => format!("block-{major}-{minor}"),
        _ => "file".into(),
    }
}

/// Whether `name` is the override xattr (never the sandbox's to see or set).
pub fn is_override_xattr(name: &std::ffi::OsStr) -> bool {
    name.as_encoded_bytes() == XATTR.as_bytes()
}

/// Where a layer keeps an xattr its unprivileged writer could not set
/// (`security.capability`, `trusted.*`): `user.burrow.xattr.NAME`, as
/// crosvm's virtiofs keeps `security.*` under `user.virtiofs.`. burrowfs
/// presents it as NAME; the sandbox never sees or sets the record itself.
pub const RECORDED_PREFIX: &str = "user.burrow.xattr.";

/// Whether `name` is under burrow's own `user.burrow.` prefix.
pub fn is_burrow_xattr(name: &std::ffi::OsStr) -> bool {
    name.as_encoded_bytes().starts_with(b"user.burrow.")
}

/// The record's name for xattr `name`, when `name` is one an
/// unprivileged writer cannot set on disk and a layer may carry:
/// `security.*`, `trusted.*` (not overlayfs' own) and the POSIX ACLs.
pub fn recorded_name(name: &std::ffi::OsStr) -> Option<std::ffi::OsString> {
    let b = name.as_encoded_bytes();
    let kept = (b.starts_with(b"security.") || b.starts_with(b"trusted."))
        && !b.starts_with(b"trusted.overlay.")
        || b == b"system.posix_acl_access"
        || b == b"system.posix_acl_default";
    if !kept {
        return None;
    }
    let mut r = std::ffi::OsString::from(RECORDED_PREFIX);
    r.push(name);
    Some(r)
}

/// The xattr a record stands for, when `name` is a record of one that
/// may be recorded.
pub fn recorded_for(name: &std::ffi::OsStr) -> Option<&std::ffi::OsStr> {
    name.as_encoded_bytes()
        .strip_prefix(RECORDED_PREFIX.as_bytes())
        .map(<std::ffi::OsStr as std::os::unix::ffi::OsStrExt>::from_bytes)
        .filter(|n| recorded_name(n).is_some())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn stat(mode: u32) -> Stat {
        Stat {
            dev: 1,
            ino: 2,
            mode,
            nlink: 1,
            uid: 1000,
            gid: 1000,
            rdev: 0,
            size: 7,
            blksize: 4096,
            blocks: 8,
            times: [(0, 0); 3],
            mount_root: false,
        }
    }

    #[test]
    fn parses_and_encodes_containers_storage_values() {
        let o = Override::parse(b"33:34:0640").unwrap();
        assert_eq!((o.uid, o.gid, o.perm, o.kind), (33, 34, 0o640, None));
        assert_eq!(o.encode(), "33:34:0640");
        let d = Override::parse(b"0:0:0666:char-1-3").unwrap();
        assert_eq!(d.kind, Some((libc::S_IFCHR, libc::makedev(1, 3))));
        assert_eq!(d.encode(), "0:0:0666:char-1-3");
        assert_eq!(
            Override::parse(b"0:0:04755:file").unwrap().encode(),
            "0:0:04755:file"
        );
        for bad in [
            &b""[..],
            b"1:2",
            b"a:2:0644",
            b"1:2:0999",
            b"1:2:017777",
            b"1:2:0644:fifo",
            b"1:2:0644:char-1",
            b"-1:2:0644",
        ] {
            assert_eq!(
                Override::parse(bad),
                None,
                "{:?}",
                String::from_utf8_lossy(bad)
            );
        }
    }

    #[test]
    fn a_regular_file_stands_for_a_device_but_not_for_a_directory() {
        let mut m = stat(libc::S_IFREG | 0o600);
        Override::parse(b"0:0:0666:char-1-3").unwrap().apply(&mut m);
        assert_eq!(m.mode, libc::S_IFCHR | 0o666);
        assert_eq!((m.rdev, m.size, m.uid), (libc::makedev(1, 3), 0, 0));

        let mut m = stat(libc::S_IFREG | 0o600);
        Override::parse(b"5:6:04755:dir").unwrap().apply(&mut m);
        assert_eq!(m.mode, libc::S_IFREG | 0o4755);
        assert_eq!((m.uid, m.gid, m.size), (5, 6, 7));

        let mut m = stat(libc::S_IFDIR | 0o700);
        Override::parse(b"0:0:0644:char-1-3").unwrap().apply(&mut m);
        assert_eq!((m.mode, m.rdev), (libc::S_IFDIR | 0o644, 0));
    }

    #[test]
    fn chown_and_chmod_change_the_override() {
        let o = Override::parse(b"33:33:0640:file").unwrap();
        assert_eq!(o.changed(Some(5), None, None).encode(), "5:33:0640:file");
        assert_eq!(
            o.changed(None, Some(7), Some(0o104755)).encode(),
            "33:7:04755:file"
        );
    }
}

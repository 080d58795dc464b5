//! Stand-ins for the password files the caller cannot read.
//!
//! The host's `/etc/shadow` and `/etc/gshadow` are root's, mode 0640: an
//! unprivileged caller's server cannot read them, so neither can the
//! sandbox (never their contents). But useradd, groupadd, passwd and the
//! maintainer scripts that call them must read the old file to write the
//! new one. So where the root's lower layers hold one the caller cannot
//! read, the private upper layer starts with a stand-in: an entry for every
//! user (group) of the union's `/etc/passwd` (`/etc/group`) with a locked
//! password and no aging, the same mode, and nothing of the host's file.
//! Changes go to the upper layer, as every write does.

use std::ffi::OsStr;
use std::io::Read;
use std::path::Path;

use burrow_unionfs::layers::Kind;
use burrow_unionfs::Stack;
use nix::fcntl::OFlag;
use nix::sys::stat::Mode;

use crate::error::{Context, Result};

/// The most a password or group file may hold to be read here.
const MAX_FILE: u64 = 16 << 20;

/// A locked entry for every name of a passwd or group file's `text`:
/// shadow's `name:*::0:99999:7:::` or gshadow's `name:*::MEMBERS`.
pub fn stand_in(text: &str, gshadow: bool) -> String {
    let mut out = String::new();
    for line in text.lines() {
        let fields: Vec<&str> = line.split(':').collect();
        let Some(name) = fields
            .first()
            .filter(|n| !n.is_empty() && !n.starts_with('#'))
        else {
            continue;
        };
        if gshadow {
            let members = fields.get(3).copied().unwrap_or("");
            out.push_str(&format!("{name}:*::{members}\n"));
        } else {
            out.push_str(&format!("{name}:*::0:99999:7:::\n"));
        }
    }
    out
}

/// In the server, before it serves: writes the stand-ins into the empty
/// upper layer at `upper` (a directory of the sandbox's own store) for the
/// union `stack`.
pub fn write_stand_ins(stack: &Stack, upper: &Path) -> Result<()> {
    let etc = Path::new("etc");
    let Ok(etc_entry) = stack.lookup(etc) else {
        return Ok(());
    };
    if etc_entry.kind != Kind::Dir {
        return Ok(());
    }
    let mut made_etc = false;
    for (file, source, gshadow) in [("shadow", "passwd", false), ("gshadow", "group", true)] {
        let Ok(entry) = stack.lookup(&etc.join(file)) else {
            continue;
        };
        if entry.kind != Kind::File || readable(stack, entry.layer, file, &entry.meta) {
            continue;
        }
        let Some(names) = read_small(stack, &etc.join(source)) else {
            continue;
        };
        // Owned as the lower's are shown (root's), or not made at all: a
        // stand-in the command's own user could read and write is not one.
        let owner = (entry.meta.uid, entry.meta.gid);
        if !made_etc {
            let dir = upper.join("etc");
            std::fs::create_dir(&dir).ctx(|| "making the upper layer's /etc")?;
            let (uid, gid) = (etc_entry.meta.uid, etc_entry.meta.gid);
            if give(&dir, (uid, gid), etc_entry.meta.mode).is_err() {
                std::fs::remove_dir(&dir).ctx(|| "making the upper layer's /etc")?;
                return Ok(());
            }
            made_etc = true;
        }
        let path = upper.join("etc").join(file);
        std::fs::write(&path, stand_in(&names, gshadow))
            .ctx(|| format!("writing a stand-in /etc/{file}"))?;
        if give(&path, owner, entry.meta.mode).is_err() {
            std::fs::remove_file(&path).ctx(|| format!("writing a stand-in /etc/{file}"))?;
        }
    }
    Ok(())
}

/// `path` (in the fresh upper layer, which nothing else reaches yet) given
/// to `owner` with `mode`'s permission bits.
fn give(path: &Path, owner: (u32, u32), mode: u32) -> nix::Result<()> {
    use nix::unistd::{Gid, Uid};
    nix::unistd::chown(
        path,
        Some(Uid::from_raw(owner.0)),
        Some(Gid::from_raw(owner.1)),
    )?;
    nix::sys::stat::fchmodat(
        nix::fcntl::AT_FDCWD,
        path,
        Mode::from_bits_truncate(mode & 0o7777),
        nix::sys::stat::FchmodatFlags::FollowSymlink,
    )
}

/// Whether `etc/NAME` of layer `layer` (the file `meta` describes) opens
/// for reading here.
fn readable(stack: &Stack, layer: usize, name: &str, meta: &burrow_unionfs::layers::Stat) -> bool {
    let Ok(dir) = stack.dir(layer, Path::new("etc")) else {
        return true;
    };
    match dir.open_regular(
        OsStr::new(name),
        OFlag::O_RDONLY,
        Some((meta.dev, meta.ino)),
    ) {
        Ok(_) => true,
        Err(e) => e.raw_os_error() != Some(libc::EACCES),
    }
}

/// The union's file at `rel` (at most [`MAX_FILE`] bytes), if it reads.
fn read_small(stack: &Stack, rel: &Path) -> Option<String> {
    let entry = stack.lookup(rel).ok()?;
    let dir = stack.dir(entry.layer, rel.parent()?).ok()?;
    let file = dir
        .open_regular(
            rel.file_name()?,
            OFlag::O_RDONLY,
            Some((entry.meta.dev, entry.meta.ino)),
        )
        .ok()?;
    let mut text = String::new();
    file.reader()
        .take(MAX_FILE)
        .read_to_string(&mut text)
        .ok()?;
    Some(text)
}

#[cfg(test)]
mod tests {
    use super::stand_in;

    #[test]
    fn every_name_gets_a_locked_entry() {
        let passwd = "root:x:0:0:root:/root:/bin/bash\n\nbin:x:2:2::/bin:/usr/sbin/nologin\n";
        assert_eq!(
            stand_in(passwd, false),
            "root:*::0:99999:7:::\nbin:*::0:99999:7:::\n"
        );
        let group = "root:x:0:\nsudo:x:27:alice,bob\nodd\n";
        assert_eq!(
            stand_in(group, true),
            "root:*::\nsudo:*::alice,bob\nodd:*::\n"
        );
    }
}

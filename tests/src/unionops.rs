//! An operation model for union filesystems: random sequences of file
//! operations applied to two mounts (burrowfs and kernel overlayfs) whose
//! results and final trees must match. Shared by the differential tests and
//! the fuzz target.

use std::collections::BTreeMap;
use std::fs::{self, OpenOptions};
use std::io::{Read, Write};
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};

/// Paths the operations pick from: names in both lowers, in one, and new.
pub const PATHS: [&str; 14] = [
    "a", "b", "c", "d", "d/x", "d/y", "d/new", "e", "e/z", "e/f", "e/f/g", "h1", "h2", "n/m",
];

/// One file operation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Op {
    Write {
        path: usize,
        byte: u8,
        len: u16,
        append: bool,
        truncate: bool,
    },
    Truncate {
        path: usize,
        len: u16,
    },
    Chmod {
        path: usize,
        mode: u32,
    },
    Rename {
        from: usize,
        to: usize,
        flags: u8,
    },
    Link {
        from: usize,
        to: usize,
    },
    Symlink {
        target: usize,
        path: usize,
    },
    Unlink {
        path: usize,
    },
    Rmdir {
        path: usize,
    },
    Mkdir {
        path: usize,
    },
    SetXattr {
        path: usize,
        value: u8,
    },
    RemoveXattr {
        path: usize,
    },
    Read {
        path: usize,
    },
}

/// What an operation returned: its output, or the errno it failed with.
pub type Outcome = Result<String, i32>;

fn errno(e: std::io::Error) -> i32 {
    e.raw_os_error().unwrap_or(-1)
}

/// Builds the two lower layers every run starts from.
pub fn make_lowers(l1: &Path, l2: &Path) -> std::io::Result<()> {
    let file = |p: PathBuf, text: &str| -> std::io::Result<()> {
        fs::create_dir_all(p.parent().unwrap())?;
        fs::write(p, text)
    };
    file(l1.join("a"), "l1 a\n")?;
    file(l1.join("d/x"), "l1 d/x\n")?;
    file(l1.join("e/z"), "l1 e/z\n")?;
    std::os::unix::fs::symlink("a", l1.join("s"))?;
    file(l2.join("a"), "l2 a\n")?;
    file(l2.join("b"), "l2 b\n")?;
    file(l2.join("d/y"), "l2 d/y\n")?;
    file(l2.join("e/f/g"), "l2 e/f/g\n")?;
    file(l2.join("h1"), "l2 hard link\n")?;
    fs::hard_link(l2.join("h1"), l2.join("h2"))?;
    xattr::set(l2.join("b"), "user.origin", b"l2")?;
    fs::set_permissions(l2.join("b"), fs::Permissions::from_mode(0o640))?;
    Ok(())
}

/// Whether `path` is a directory on `root` (without following symlinks).
/// Whether `path` under `root` is a regular file (following a symlink).
pub fn is_file(root: &Path, path: usize) -> bool {
    root.join(PATHS[path]).metadata().is_ok_and(|m| m.is_file())
}

pub fn is_dir(root: &Path, path: usize) -> bool {
    root.join(PATHS[path])
        .symlink_metadata()
        .is_ok_and(|m| m.is_dir())
}

/// Applies `op` under `root`.
pub fn apply(root: &Path, op: &Op) -> Outcome {
    let p = |i: usize| root.join(PATHS[i]);
    let ok = |r: std::io::Result<()>| r.map(|()| String::new()).map_err(errno);
    match *op {
        Op::Write {
            path,
            byte,
            len,
            append,
            truncate,
        } => ok((|| {
            let mut f = OpenOptions::new()
                .write(true)
                .create(true)
                .append(append)
                .truncate(truncate && !append)
                .open(p(path))?;
            f.write_all(&vec![byte; len as usize])
        })()),
        Op::Truncate { path, len } => ok(OpenOptions::new()
            .write(true)
            .open(p(path))
            .and_then(|f| f.set_len(len as u64))),
        Op::Chmod { path, mode } => ok(fs::set_permissions(
            p(path),
            fs::Permissions::from_mode(mode),
        )),
        Op::Rename { from, to, flags } => {
            let flags = match flags % 3 {
                0 => nix::fcntl::RenameFlags::empty(),
                1 => nix::fcntl::RenameFlags::RENAME_NOREPLACE,
                _ => nix::fcntl::RenameFlags::RENAME_EXCHANGE,
            };
            nix::fcntl::renameat2(
                nix::fcntl::AT_FDCWD,
                &p(from),
                nix::fcntl::AT_FDCWD,
                &p(to),
                flags,
            )
            .map(|()| String::new())
            .map_err(|e| e as i32)
        }
        Op::Link { from, to } => ok(fs::hard_link(p(from), p(to))),
        Op::Symlink { target, path } => ok(std::os::unix::fs::symlink(PATHS[target], p(path))),
        Op::Unlink { path } => ok(fs::remove_file(p(path))),
        Op::Rmdir { path } => ok(fs::remove_dir(p(path))),
        Op::Mkdir { path } => ok(fs::create_dir(p(path))),
        Op::SetXattr { path, value } => ok(xattr::set(p(path), "user.test", &[value])),
        Op::RemoveXattr { path } => ok(xattr::remove(p(path), "user.test")),
        Op::Read { path } => {
            let mut s = Vec::new();
            fs::File::open(p(path))
                .and_then(|mut f| f.read_to_end(&mut s))
                .map(|_| String::from_utf8_lossy(&s).into_owned())
                .map_err(errno)
        }
    }
}

/// Everything a user sees of a tree, as sorted lines.
pub fn snapshot(root: &Path) -> BTreeMap<String, String> {
    let mut out = BTreeMap::new();
    walk(root, Path::new(""), &mut out);
    out
}

fn walk(root: &Path, rel: &Path, out: &mut BTreeMap<String, String>) {
    let dir = match fs::read_dir(root.join(rel)) {
        Ok(d) => d,
        Err(e) => {
            out.insert(format!("{}/<readdir error>", rel.display()), e.to_string());
            return;
        }
    };
    for entry in dir.flatten() {
        let rel = rel.join(entry.file_name());
        let path = root.join(&rel);
        let Ok(m) = path.symlink_metadata() else {
            continue;
        };
        let mut xattrs: Vec<String> = xattr::list(&path)
            .map(|names| {
                names
                    .filter(|n| n.to_string_lossy().starts_with("user."))
                    .map(|n| {
                        let v = xattr::get(&path, &n).ok().flatten().unwrap_or_default();
                        format!("{}={:?}", n.to_string_lossy(), v)
                    })
                    .collect()
            })
            .unwrap_or_default();
        xattrs.sort();
        let mode = m.mode() & 0o7777;
        let desc = if m.is_dir() {
            format!("dir mode={mode:o} xattrs={xattrs:?}")
        } else if m.file_type().is_symlink() {
            format!("symlink -> {:?}", fs::read_link(&path).unwrap_or_default())
        } else {
            let content = fs::read(&path).unwrap_or_default();
            format!(
                "file mode={mode:o} nlink={} size={} content={:?} xattrs={xattrs:?}",
                m.nlink(),
                m.len(),
                String::from_utf8_lossy(&content)
            )
        };
        out.insert(rel.to_string_lossy().into_owned(), desc);
        if m.is_dir() {
            walk(root, &rel, out);
        }
    }
}

/// Drops the setuid and setgid bits of files from a snapshot.
pub fn forget_setid_bits(snap: &mut BTreeMap<String, String>) {
    for desc in snap.values_mut() {
        if let Some(rest) = desc.strip_prefix("file mode=") {
            let (mode, tail) = rest.split_once(' ').unwrap_or((rest, ""));
            if let Ok(m) = u32::from_str_radix(mode, 8) {
                *desc = format!("file mode={:o} {tail}", m & 0o1777);
            }
        }
    }
}

/// Drops link counts from a snapshot.
pub fn forget_link_counts(snap: &mut BTreeMap<String, String>) {
    for desc in snap.values_mut() {
        if let Some(start) = desc.find(" nlink=") {
            let end = desc[start + 1..]
                .find(' ')
                .map_or(desc.len(), |e| start + 1 + e);
            desc.replace_range(start..end, "");
        }
    }
}

/// What `mv` does when rename(2) says EXDEV: copy the tree, then remove it.
pub fn move_by_copy(root: &Path, from: usize, to: usize) -> std::io::Result<()> {
    let (src, dst) = (root.join(PATHS[from]), root.join(PATHS[to]));
    if dst.symlink_metadata().is_ok_and(|m| m.is_dir()) {
        fs::remove_dir(&dst)?;
    }
    copy_tree(&src, &dst)?;
    fs::remove_dir_all(&src)
}

fn copy_tree(src: &Path, dst: &Path) -> std::io::Result<()> {
    let m = src.symlink_metadata()?;
    if m.is_dir() {
        fs::create_dir(dst)?;
        for e in fs::read_dir(src)? {
            let e = e?;
            copy_tree(&e.path(), &dst.join(e.file_name()))?;
        }
    } else if m.file_type().is_symlink() {
        std::os::unix::fs::symlink(fs::read_link(src)?, dst)?;
    } else {
        fs::copy(src, dst)?;
    }
    if let Ok(names) = xattr::list(src) {
        for n in names {
            if let Ok(Some(v)) = xattr::get(src, &n) {
                let _ = xattr::set(dst, &n, &v);
            }
        }
    }
    if !m.file_type().is_symlink() {
        fs::set_permissions(dst, fs::Permissions::from_mode(m.mode() & 0o7777))?;
    }
    Ok(())
}

/// Decodes fuzzer input into operations, six bytes each (at most 40).
pub fn decode(data: &[u8]) -> Vec<Op> {
    let p = |b: u8| b as usize % PATHS.len();
    data.chunks_exact(6)
        .take(40)
        .map(|c| match c[0] % 12 {
            0 => Op::Write {
                path: p(c[1]),
                byte: c[2],
                len: u16::from_le_bytes([c[3], c[4] & 0x0f]),
                append: c[5] & 1 != 0,
                truncate: c[5] & 2 != 0,
            },
            1 => Op::Truncate {
                path: p(c[1]),
                len: u16::from_le_bytes([c[2], c[3] & 0x1f]),
            },
            2 => Op::Chmod {
                path: p(c[1]),
                mode: [0o644, 0o600, 0o755, 0o4755, 0o700, 0o2755][c[2] as usize % 6],
            },
            3 => Op::Rename {
                from: p(c[1]),
                to: p(c[2]),
                flags: c[3] % 3,
            },
            4 => Op::Link {
                from: p(c[1]),
                to: p(c[2]),
            },
            5 => Op::Symlink {
                target: p(c[1]),
                path: p(c[2]),
            },
            6 => Op::Unlink { path: p(c[1]) },
            7 => Op::Rmdir { path: p(c[1]) },
            8 => Op::Mkdir { path: p(c[1]) },
            9 => Op::SetXattr {
                path: p(c[1]),
                value: c[2],
            },
            10 => Op::RemoveXattr { path: p(c[1]) },
            _ => Op::Read { path: p(c[1]) },
        })
        .collect()
}

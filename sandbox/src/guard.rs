//! Read-write binds that would let the sandbox change what the union
//! serves behind its back: the image store (layers other sandboxes share,
//! override xattrs that say who owns a file) and the `--upper` layer with
//! its work directory (the server's own scratch space).
//!
//! A bind whose source lies inside such a directory is refused. A bind
//! whose source holds one (`--bind $HOME ...` with the store in
//! `~/.local/share/burrow`) gets a read-only bind of that directory over
//! its place inside the bind, mounted right after it; since a process that
//! keeps CAP_SYS_ADMIN could unmount that cover, such a bind is refused
//! when the command keeps it.

use std::path::{Path, PathBuf};

use crate::config::MountOp;
use crate::error::{Error, Result};

/// A directory the sandbox must not write behind the union's back.
#[derive(Debug, Clone)]
pub struct Guarded {
    /// Canonical host path.
    pub path: PathBuf,
    /// What it is, for messages: "the image store", ...
    pub what: &'static str,
}

impl Guarded {
    /// `path` canonicalised; `None` when it does not exist (nothing to
    /// guard yet).
    pub fn new(path: &Path, what: &'static str) -> Option<Guarded> {
        let path = std::fs::canonicalize(path).ok()?;
        Some(Guarded { path, what })
    }
}

/// A guarded directory inside a read-write bind's source, bound read-only
/// over its own place in the bind once the bind is mounted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Cover {
    /// Canonical host path of the guarded directory.
    pub src: PathBuf,
    /// Its path relative to the bind's source (no symlink in it: both are
    /// canonical), walked from the mounted bind with no symlink followed.
    pub inside: PathBuf,
    /// Device and inode of `src` when checked: both what is bound and the
    /// place it covers must be this directory.
    pub id: (u64, u64),
}

/// Fills in the covers of each read-write bind that holds a guarded
/// directory; an error for one that lies inside a guarded directory, or
/// holds one while `keeps_sys_admin`.
pub fn cover(mounts: &mut [MountOp], guarded: &[Guarded], keeps_sys_admin: bool) -> Result<()> {
    for op in mounts {
        let MountOp::Bind {
            src,
            read_only: false,
            covers,
            ..
        } = op
        else {
            continue;
        };
        for g in guarded {
            if src.starts_with(&g.path) {
                return Err(Error::usage(format!(
                    "--bind {}: lies in {} {}, which the sandbox must not write \
                     behind the union's back; use --ro-bind",
                    src.display(),
                    g.what,
                    g.path.display()
                )));
            }
            let Ok(inside) = g.path.strip_prefix(&*src) else {
                continue;
            };
            if keeps_sys_admin {
                return Err(Error::usage(format!(
                    "--bind {}: holds {} {}, and with CAP_SYS_ADMIN kept the sandbox \
                     could unmount the read-only cover burrow puts over it; bind a \
                     narrower directory or drop the capability",
                    src.display(),
                    g.what,
                    g.path.display()
                )));
            }
            let st = crate::sys::open_without_symlinks(&g.path)
                .and_then(nix::sys::stat::fstat)
                .map_err(|e| {
                    Error::usage(format!("{} {}: {}", g.what, g.path.display(), e.desc()))
                })?;
            covers.push(Cover {
                src: g.path.clone(),
                inside: inside.to_path_buf(),
                id: (st.st_dev, st.st_ino),
            });
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn bind(src: &str, read_only: bool) -> MountOp {
        MountOp::Bind {
            src: src.into(),
            dst: "/mnt".into(),
            read_only,
            id: (0, 0),
            covers: Vec::new(),
        }
    }

    fn covers(op: &MountOp) -> &[Cover] {
        match op {
            MountOp::Bind { covers, .. } => covers,
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn binds_holding_or_inside_a_guarded_directory() {
        let tmp = std::env::temp_dir().join(format!("burrow-guard-{}", std::process::id()));
        let store = tmp.join("home/.local/share/burrow");
        std::fs::create_dir_all(&store).unwrap();
        let g = vec![Guarded::new(&store, "the image store").unwrap()];
        let home = std::fs::canonicalize(tmp.join("home")).unwrap();
        let home = home.to_str().unwrap();

        // Holding it: covered at its place inside.
        let mut ops = vec![bind(home, false)];
        cover(&mut ops, &g, false).unwrap();
        let c = covers(&ops[0]);
        assert_eq!(c.len(), 1);
        assert_eq!(c[0].src, g[0].path);
        assert_eq!(c[0].inside, Path::new(".local/share/burrow"));
        // ... refused when the cover could be unmounted.
        let e = cover(&mut [bind(home, false)], &g, true).unwrap_err();
        assert!(e.to_string().contains("CAP_SYS_ADMIN"), "{e}");
        // Inside it: refused. Read-only, unrelated or a sibling whose name
        // starts the same: as given.
        let inside = format!("{}/layers", g[0].path.display());
        let e = cover(&mut [bind(&inside, false)], &g, false).unwrap_err();
        assert!(e.to_string().contains("the image store"), "{e}");
        let sibling = format!("{}-x", g[0].path.display());
        for src in [home, "/usr", sibling.as_str()] {
            let mut ops = vec![bind(src, src == home)];
            cover(&mut ops, &g, false).unwrap();
            assert!(covers(&ops[0]).is_empty(), "{src}");
        }
        std::fs::remove_dir_all(&tmp).unwrap();
    }
}

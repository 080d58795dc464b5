//! burrowfs' command line, compatible with fuse-overlayfs':
//! `burrowfs [SOURCE] MOUNTPOINT -o lowerdir=A:B,upperdir=U,workdir=W[,...] [-f]`.

use std::path::{Path, PathBuf};

use crate::layers::Lower;

/// A parsed command line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Options {
    pub source: String,
    pub mountpoint: PathBuf,
    /// Top first (the leftmost of `lowerdir=`). An entry `squashfs` or
    /// `sif` makes the next one an image file: `lowerdir=squashfs:/i.sqfs:/d`
    /// (write `./squashfs` for a directory of that name).
    pub lowers: Vec<Lower>,
    pub upper: Option<PathBuf>,
    pub work: Option<PathBuf>,
    pub foreground: bool,
    /// Mount options that do not apply to burrowfs (rw, dev, suid, ...),
    /// accepted with a warning.
    pub ignored: Vec<String>,
    /// Options burrowfs does not know, accepted with a warning.
    pub unknown: Vec<String>,
    pub read_only: bool,
    /// uidmapping=, gidmapping=, squash_to_root, squash_to_uid=, squash_to_gid=.
    pub ids: crate::idmap::Ids,
    /// `passthrough=off` refuses FUSE passthrough even where it is
    /// available (`auto`, the default, uses it then).
    pub passthrough: bool,
    /// `xattr_permissions=2` (fuse-overlayfs' option): files show the
    /// owners, modes and types their `user.containers.override_stat`
    /// xattrs record.
    pub override_stat: bool,
}

/// Options fuse-overlayfs users and mount(8) pass that burrowfs accepts
/// without acting on them (flags FUSE sets itself, or that do not apply).
const HARMLESS: &[&str] = &[
    "rw",
    "dev",
    "nodev",
    "suid",
    "nosuid",
    "exec",
    "noexec",
    "atime",
    "noatime",
    "relatime",
    "strictatime",
    "nodiratime",
    "lazytime",
    "nolazytime",
    "sync",
    "async",
    "dirsync",
    "auto",
    "noauto",
    "user",
    "nouser",
    "users",
    "_netdev",
    "nofail",
    "default_permissions",
    "allow_other",
    "allow_root",
    "noacl",
    "xattr",
    "index=off",
    "redirect_dir=off",
    "metacopy=off",
    "userxattr",
    "volatile",
    "fast_ino=off",
];

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum OptionsError {
    #[error("usage: burrowfs [SOURCE] MOUNTPOINT -o lowerdir=DIR[:DIR...][,upperdir=DIR,workdir=DIR] [-f]")]
    Usage,
    #[error("missing lowerdir= option")]
    NoLower,
    #[error("upperdir= needs workdir= (and the other way round)")]
    UpperWithoutWork,
    #[error("option {0} is not supported yet")]
    Unsupported(String),
    #[error("unknown argument {0}")]
    UnknownArg(String),
    #[error("option {0}: {1}")]
    BadValue(String, String),
}

fn parse_mapping(key: &str, value: &str) -> Result<crate::idmap::IdMapping, OptionsError> {
    crate::idmap::IdMapping::parse(value).map_err(|e| OptionsError::BadValue(key.into(), e))
}

fn parse_id(key: &str, value: &str) -> Result<u32, OptionsError> {
    value
        .parse()
        .map_err(|_| OptionsError::BadValue(key.into(), format!("{value:?} is not a number")))
}

impl Options {
    pub fn parse<I: IntoIterator<Item = String>>(args: I) -> Result<Options, OptionsError> {
        let mut positional = Vec::new();
        let mut opts = Vec::new();
        let mut foreground = false;
        let mut it = args.into_iter();
        while let Some(arg) = it.next() {
            match arg.as_str() {
                "-o" => opts.push(it.next().ok_or(OptionsError::Usage)?),
                "-f" | "-d" | "--foreground" => foreground = true,
                s if s.starts_with("-o") => opts.push(s[2..].to_string()),
                s if s.starts_with('-') && s.len() > 1 => {
                    return Err(OptionsError::UnknownArg(s.to_string()))
                }
                _ => positional.push(arg),
            }
        }
        let (source, mountpoint) = match positional.len() {
            1 => ("burrowfs".to_string(), positional.remove(0)),
            2 => {
                let m = positional.remove(1);
                (positional.remove(0), m)
            }
            _ => return Err(OptionsError::Usage),
        };
        let mut out = Options {
            source,
            mountpoint: PathBuf::from(mountpoint),
            lowers: Vec::new(),
            upper: None,
            work: None,
            foreground,
            ignored: Vec::new(),
            unknown: Vec::new(),
            read_only: false,
            ids: crate::idmap::Ids::default(),
            passthrough: true,
            override_stat: false,
        };
        for opt in opts.iter().flat_map(|o| split_options(o)) {
            let (key, value) = match opt.split_once('=') {
                Some((k, v)) => (k, Some(v)),
                None => (opt.as_str(), None),
            };
            match (key, value) {
                ("lowerdir", Some(v)) => out.lowers = split_lowers(v),
                ("upperdir", Some(v)) => out.upper = Some(PathBuf::from(v)),
                ("workdir", Some(v)) => out.work = Some(PathBuf::from(v)),
                ("ro", None) => out.read_only = true,
                ("passthrough", Some("auto" | "on")) => out.passthrough = true,
                ("passthrough", Some("off")) => out.passthrough = false,
                ("passthrough", Some(v)) => {
                    return Err(OptionsError::BadValue(
                        key.into(),
                        format!("{v:?}: expected auto or off"),
                    ))
                }
                ("xattr_permissions", Some("0")) => out.override_stat = false,
                ("xattr_permissions", Some("2")) => out.override_stat = true,
                ("xattr_permissions", Some(v)) => {
                    return Err(OptionsError::BadValue(
                        key.into(),
                        format!(
                            "{v:?}: burrowfs reads user.containers.override_stat (2) or nothing (0)"
                        ),
                    ))
                }
                ("uidmapping", Some(v)) => out.ids.uid = parse_mapping(key, v)?,
                ("gidmapping", Some(v)) => out.ids.gid = parse_mapping(key, v)?,
                ("squash_to_root", None) => {
                    out.ids.squash_uid = Some(0);
                    out.ids.squash_gid = Some(0);
                }
                ("squash_to_uid", Some(v)) => out.ids.squash_uid = Some(parse_id(key, v)?),
                ("squash_to_gid", Some(v)) => out.ids.squash_gid = Some(parse_id(key, v)?),
                ("static_nlink" | "plugins", _) => {
                    return Err(OptionsError::Unsupported(key.to_string()))
                }
                (
                    "fsname" | "subtype" | "context" | "fscontext" | "defcontext" | "rootcontext"
                    | "max_read" | "blksize",
                    Some(_),
                ) => out.ignored.push(opt.clone()),
                _ if HARMLESS.contains(&opt.as_str()) => out.ignored.push(opt.clone()),
                _ => out.unknown.push(opt.clone()),
            }
        }
        if out.lowers.is_empty() {
            return Err(OptionsError::NoLower);
        }
        if out.upper.is_some() != out.work.is_some() {
            return Err(OptionsError::UpperWithoutWork);
        }
        if out.read_only {
            out.upper = None;
            out.work = None;
        }
        Ok(out)
    }
}

/// Splits a comma-separated option list; `\,` is a comma inside a value
/// (other backslashes stay, for `lowerdir=`'s `\:`).
fn split_options(s: &str) -> Vec<String> {
    let mut out = vec![String::new()];
    let mut chars = s.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '\\' if chars.peek() == Some(&',') => {
                chars.next();
                out.last_mut().unwrap().push(',');
            }
            ',' => out.push(String::new()),
            c => out.last_mut().unwrap().push(c),
        }
    }
    out.retain(|o| !o.is_empty());
    out
}

/// `A:B:C`, with `\:` for a colon inside a name; `squashfs:FILE` and
/// `sif:FILE` name image files.
fn split_lowers(s: &str) -> Vec<Lower> {
    let mut out = vec![String::new()];
    let mut chars = s.chars();
    while let Some(c) = chars.next() {
        match c {
            '\\' => {
                if let Some(n) = chars.next() {
                    out.last_mut().unwrap().push(n);
                }
            }
            ':' => out.push(String::new()),
            c => out.last_mut().unwrap().push(c),
        }
    }
    let mut lowers = Vec::new();
    let mut names = out.into_iter().filter(|p| !p.is_empty());
    while let Some(name) = names.next() {
        let image = match name.as_str() {
            "squashfs" => Lower::Squashfs,
            "sif" => Lower::Sif,
            _ => {
                lowers.push(Lower::Dir(PathBuf::from(name)));
                continue;
            }
        };
        match names.next() {
            Some(file) => lowers.push(image(PathBuf::from(file))),
            None => lowers.push(Lower::Dir(PathBuf::from(name))),
        }
    }
    lowers
}

/// Whether `inner` is `outer` or lies below it (both canonical).
pub fn is_within(inner: &Path, outer: &Path) -> bool {
    inner.starts_with(outer)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(args: &[&str]) -> Result<Options, OptionsError> {
        Options::parse(args.iter().map(|s| s.to_string()))
    }

    #[test]
    fn fuse_overlayfs_command_line() {
        let o = parse(&["-o", "lowerdir=/a:/b,upperdir=/u,workdir=/w", "/m"]).unwrap();
        assert_eq!(o.lowers, [dir("/a"), dir("/b")]);
        assert_eq!(o.upper.as_deref(), Some(Path::new("/u")));
        assert_eq!(o.mountpoint, PathBuf::from("/m"));
        assert!(!o.foreground);
    }

    #[test]
    fn mount_fuse3_command_line() {
        // mount.fuse3 passes SOURCE MOUNTPOINT -o rw,...,dev,suid
        let o = parse(&[
            "src",
            "/m",
            "-o",
            "rw,lowerdir=/a,upperdir=/u,workdir=/w,dev,suid,lazytime,weird",
        ])
        .unwrap();
        assert_eq!(o.source, "src");
        assert_eq!(o.ignored, ["rw", "dev", "suid", "lazytime"]);
        assert_eq!(o.unknown, ["weird"]);
    }

    #[test]
    fn errors() {
        assert_eq!(parse(&["/m"]), Err(OptionsError::NoLower));
        assert_eq!(
            parse(&["-o", "lowerdir=/a,upperdir=/u", "/m"]),
            Err(OptionsError::UpperWithoutWork)
        );
        assert_eq!(
            parse(&["-o", "lowerdir=/a,plugins=x", "/m"]),
            Err(OptionsError::Unsupported("plugins".into()))
        );
        assert!(matches!(
            parse(&["-o", "lowerdir=/a,uidmapping=0:1", "/m"]),
            Err(OptionsError::BadValue(..))
        ));
        assert_eq!(
            parse(&["-o", "lowerdir=/a,squash_to_root", "/m"])
                .unwrap()
                .ids
                .squash_uid,
            Some(0)
        );
        assert_eq!(parse(&["-o", "lowerdir=/a"]), Err(OptionsError::Usage));
        assert_eq!(
            parse(&["-x", "-o", "lowerdir=/a", "/m"]),
            Err(OptionsError::UnknownArg("-x".into()))
        );
    }

    #[test]
    fn escapes() {
        assert_eq!(split_lowers(r"/a\:b:/c"), [dir("/a:b"), dir("/c")]);
        assert_eq!(split_options(r"a\,b,c"), ["a,b", "c"]);
        let o = parse(&["-o", r"lowerdir=/a\:b:/c", "/m"]).unwrap();
        assert_eq!(o.lowers, [dir("/a:b"), dir("/c")]);
    }

    fn dir(p: &str) -> Lower {
        Lower::Dir(PathBuf::from(p))
    }

    #[test]
    fn image_files_are_marked_in_lowerdir() {
        assert_eq!(
            split_lowers("squashfs:/i.sqfs:/d:sif:/c.sif:./squashfs:squashfs"),
            [
                Lower::Squashfs(PathBuf::from("/i.sqfs")),
                dir("/d"),
                Lower::Sif(PathBuf::from("/c.sif")),
                dir("./squashfs"),
                dir("squashfs"),
            ]
        );
    }
}

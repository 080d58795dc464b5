//! What a lower layer shows of the filesystems mounted below its root,
//! decided from the mount table without touching them: a mounted
//! filesystem is only asked anything once the union has decided to show
//! it, so a hung network filesystem or a stopped FUSE server (burrowfs'
//! own mount inside its lower layer among them) cannot hold the union up.
//!
//! Shown ("crossed"): disk filesystems outside the layer's `media`, `mnt`
//! and `run`. Every other mount is an empty directory in the union. The
//! table is read again whenever the kernel says it changed
//! (/proc/self/mountinfo polls with POLLPRI).

use std::collections::HashMap;
use std::ffi::{OsStr, OsString};
use std::os::unix::ffi::OsStringExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, RwLock};

/// Filesystems a lower layer's tree goes on into when one is mounted below
/// its root: files stored on a local disk.
pub const DISK_FILESYSTEMS: &[&str] = &[
    "ext2", "ext3", "ext4", "xfs", "btrfs", "f2fs", "bcachefs", "zfs", "squashfs", "erofs",
];

/// Filesystems that live in this kernel's memory: a sealed mount of one
/// may be looked at (its root's attributes shown), as nothing can hold the
/// answer up. Every other sealed one (FUSE, network filesystems, autofs,
/// anything unknown) is shown as an empty directory without a look.
pub const IN_KERNEL_FILESYSTEMS: &[&str] = &[
    "tmpfs",
    "ramfs",
    "proc",
    "sysfs",
    "devtmpfs",
    "devpts",
    "cgroup",
    "cgroup2",
    "mqueue",
    "hugetlbfs",
    "debugfs",
    "tracefs",
    "securityfs",
    "pstore",
    "bpf",
    "configfs",
    "efivarfs",
    "binfmt_misc",
    "fusectl",
    "nsfs",
    "overlay",
];

/// Top-level directories of a lower layer whose mounts it never shows,
/// whatever their filesystem: removable media and other users' mounts
/// (`media`, `mnt`) and per-boot state (`run`).
pub const SEALED_TOP: &[&str] = &["media", "mnt", "run"];

/// What a lower layer shows of a mount below its root.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MountView {
    /// Its contents, as part of the layer.
    Crossed,
    /// An empty directory (or, for a file mounted there, nothing); its
    /// root may be looked at for its attributes.
    Sealed,
    /// An empty directory that is not even looked at; the number is the
    /// mount's id, which stands for its identity.
    Untouched(u64),
}

/// One line of /proc/self/mountinfo: the mount's id, where it is, and its
/// filesystem type.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Mount {
    pub id: u64,
    pub point: PathBuf,
    pub fstype: String,
}

/// mountinfo's octal escapes (`\040` for a space) undone.
fn unescape(field: &str) -> PathBuf {
    let b = field.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        let oct = |j: usize| {
            b.get(j)
                .filter(|c| (b'0'..=b'7').contains(c))
                .map(|c| c - b'0')
        };
        if b[i] == b'\\' {
            if let (Some(x), Some(y), Some(z)) = (oct(i + 1), oct(i + 2), oct(i + 3)) {
                out.push(x << 6 | y << 3 | z);
                i += 4;
                continue;
            }
        }
        out.push(b[i]);
        i += 1;
    }
    PathBuf::from(OsString::from_vec(out))
}

/// The mounts /proc/self/mountinfo lists.
pub fn parse(text: &str) -> Vec<Mount> {
    text.lines()
        .filter_map(|line| {
            let fields: Vec<&str> = line.split(' ').collect();
            let sep = fields.iter().position(|f| *f == "-")?;
            Some(Mount {
                id: fields.first()?.parse().ok()?,
                point: unescape(fields.get(4)?),
                fstype: (*fields.get(sep + 1)?).to_string(),
            })
        })
        .collect()
}

/// The view of the mounts below one lower layer, by path in the layer.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct LayerMounts {
    by_path: HashMap<PathBuf, MountView>,
    /// Whether any mount below is crossed (walks of a layer with none may
    /// refuse to cross any mount at all).
    pub crosses: bool,
}

impl LayerMounts {
    /// What the layer shows at `rel` (relative to its root), when a mount
    /// is there.
    pub fn at(&self, rel: &Path) -> Option<MountView> {
        self.by_path.get(rel).copied()
    }

    pub fn is_empty(&self) -> bool {
        self.by_path.is_empty()
    }
}

/// The mounts below `root` (a lower layer's directory) as that layer shows
/// them. Of a point mounted over more than once, the last mount listed
/// (the one on top) counts.
pub fn below(root: &Path, mounts: &[Mount]) -> LayerMounts {
    let mut out = LayerMounts::default();
    for m in mounts {
        let Ok(rel) = m.point.strip_prefix(root) else {
            continue;
        };
        if rel.as_os_str().is_empty() {
            continue;
        }
        let top = rel.components().next().map(|c| c.as_os_str());
        let sealed = top.is_some_and(|t| SEALED_TOP.iter().any(|s| OsStr::new(s) == t))
            || !DISK_FILESYSTEMS.contains(&m.fstype.as_str());
        let view = match (
            sealed,
            DISK_FILESYSTEMS.contains(&m.fstype.as_str())
                || IN_KERNEL_FILESYSTEMS.contains(&m.fstype.as_str()),
        ) {
            (false, _) => MountView::Crossed,
            (true, true) => MountView::Sealed,
            (true, false) => MountView::Untouched(m.id),
        };
        out.by_path.insert(rel.to_path_buf(), view);
    }
    out.crosses = out.by_path.values().any(|v| *v == MountView::Crossed);
    out
}

/// The mount table as the lower layers see it, kept up to date.
#[derive(Debug)]
pub struct MountWatch {
    /// Each layer's directory, when it is a lower one (locked before
    /// `layers` where both are).
    roots: RwLock<Vec<Option<PathBuf>>>,
    layers: RwLock<Vec<LayerMounts>>,
    /// Bumped whenever the table changed.
    generation: AtomicU64,
    /// /proc/self/mountinfo, opened before the table was first read: it
    /// polls ready for any change since, which the watch then reads.
    table: std::sync::Mutex<Option<std::fs::File>>,
}

fn read_table() -> Vec<Mount> {
    std::fs::read_to_string("/proc/self/mountinfo")
        .map(|t| parse(&t))
        .unwrap_or_default()
}

impl MountWatch {
    /// For each layer, its directory when it is a lower one (the upper's
    /// mounts are burrowfs' own business: none).
    pub fn new(roots: Vec<Option<PathBuf>>) -> MountWatch {
        let watch = MountWatch {
            layers: RwLock::new(Vec::new()),
            roots: RwLock::new(roots),
            generation: AtomicU64::new(0),
            table: std::sync::Mutex::new(std::fs::File::open("/proc/self/mountinfo").ok()),
        };
        watch.refresh();
        watch
    }

    /// Puts a layer without lower mounts (an upper one) above the others,
    /// which move down one.
    pub fn add_top_layer(&self) {
        let mut roots = self.roots.write().unwrap_or_else(|e| e.into_inner());
        roots.insert(0, None);
        let mut layers = self.layers.write().unwrap_or_else(|e| e.into_inner());
        layers.insert(0, LayerMounts::default());
        self.generation.fetch_add(1, Ordering::Release);
    }

    fn refresh(&self) {
        let table = read_table();
        let roots = self.roots.read().unwrap_or_else(|e| e.into_inner());
        let layers = roots
            .iter()
            .map(|r| r.as_deref().map(|r| below(r, &table)).unwrap_or_default())
            .collect();
        *self.layers.write().unwrap_or_else(|e| e.into_inner()) = layers;
        self.generation.fetch_add(1, Ordering::Release);
    }

    /// What layer `layer` shows at `rel`, when a mount is there.
    pub fn at(&self, layer: usize, rel: &Path) -> Option<MountView> {
        let layers = self.layers.read().unwrap_or_else(|e| e.into_inner());
        let l = layers.get(layer)?;
        if l.is_empty() {
            return None;
        }
        l.at(rel)
    }

    /// Whether layer `layer` has mounts below it at all, and whether it
    /// crosses into any.
    pub fn has_any(&self, layer: usize) -> (bool, bool) {
        let layers = self.layers.read().unwrap_or_else(|e| e.into_inner());
        layers
            .get(layer)
            .map_or((false, false), |l| (!l.is_empty(), l.crosses))
    }

    /// Changes with every change of the mount table.
    pub fn generation(&self) -> u64 {
        self.generation.load(Ordering::Acquire)
    }

    /// Follows the mount table from a thread of its own (started once the
    /// process will not fork again); once, a second call does nothing.
    pub fn watch(self: &Arc<Self>) {
        let me = self.clone();
        let Some(file) = self.table.lock().unwrap_or_else(|e| e.into_inner()).take() else {
            return;
        };
        let spawned = std::thread::Builder::new()
            .name("burrowfs-mounts".into())
            .spawn(move || {
                loop {
                    let mut fds = [nix::poll::PollFd::new(
                        std::os::fd::AsFd::as_fd(&file),
                        nix::poll::PollFlags::POLLPRI,
                    )];
                    match nix::poll::poll(&mut fds, nix::poll::PollTimeout::NONE) {
                        Ok(_) => me.refresh(),
                        Err(nix::errno::Errno::EINTR) => {}
                        Err(_) => return,
                    }
                    // The event stays until the file is read again.
                    let _ = std::io::Read::read(&mut &file, &mut [0u8; 4096]);
                    let _ = nix::unistd::lseek(&file, 0, nix::unistd::Whence::SeekSet);
                }
            });
        drop(spawned);
    }
}

/// `rel` joined with `name`, for looking a mount up.
pub fn child_path(parent: &Path, name: &OsStr) -> PathBuf {
    let mut p = PathBuf::from(parent);
    p.push(name);
    p
}

#[cfg(test)]
mod tests {
    use super::*;

    const TABLE: &str = "\
22 1 8:1 / / rw,relatime shared:1 - ext4 /dev/sda1 rw
23 22 0:5 / /proc rw - proc proc rw
24 22 8:2 / /home rw shared:2 - ext4 /dev/sda2 rw
25 24 0:40 / /home/u/my\\040mnt rw,nosuid - fuse.sshfs u@h: rw
26 22 8:3 / /mnt/disk rw - ext4 /dev/sdb1 rw
27 22 0:41 / /srv/nfs rw - nfs4 h:/x rw
28 22 8:1 /etc/hosts /srv/hosts rw - ext4 /dev/sda1 rw
";

    #[test]
    fn disk_filesystems_are_crossed_the_rest_sealed() {
        let m = below(Path::new("/"), &parse(TABLE));
        assert_eq!(m.at(Path::new("proc")), Some(MountView::Sealed));
        assert_eq!(m.at(Path::new("home")), Some(MountView::Crossed));
        assert_eq!(
            m.at(Path::new("home/u/my mnt")),
            Some(MountView::Untouched(25))
        );
        // A disk under /mnt is someone's media: sealed all the same.
        assert_eq!(m.at(Path::new("mnt/disk")), Some(MountView::Sealed));
        assert_eq!(m.at(Path::new("srv/nfs")), Some(MountView::Untouched(27)));
        assert_eq!(m.at(Path::new("srv/hosts")), Some(MountView::Crossed));
        assert_eq!(m.at(Path::new("etc")), None);
        assert!(m.crosses);
        // Below another layer root, paths are relative to it.
        let h = below(Path::new("/home/u"), &parse(TABLE));
        assert_eq!(h.at(Path::new("my mnt")), Some(MountView::Untouched(25)));
        assert!(!h.crosses);
    }

    /// This process's own table: /proc is mounted below the lower layer
    /// `/`; an upper layer put on top later shows no mounts, and the lower
    /// keeps its view one index down.
    #[test]
    fn a_top_layer_added_later_moves_the_lowers_views_down() {
        let watch = MountWatch::new(vec![Some(PathBuf::from("/"))]);
        assert_eq!(watch.at(0, Path::new("proc")), Some(MountView::Sealed));
        let before = watch.generation();
        watch.add_top_layer();
        assert_eq!(watch.at(0, Path::new("proc")), None);
        assert_eq!(watch.has_any(0), (false, false));
        assert_eq!(watch.at(1, Path::new("proc")), Some(MountView::Sealed));
        assert!(watch.generation() > before);
        // A refresh keeps the order.
        watch.refresh();
        assert_eq!(watch.at(0, Path::new("proc")), None);
        assert_eq!(watch.at(1, Path::new("proc")), Some(MountView::Sealed));
    }

    /// A mount made after the table was first read but before the watch
    /// starts is seen once it starts (the table's file was opened before
    /// the read). In a child process, in a user and mount namespace of its
    /// own, which may mount.
    #[test]
    fn a_mount_made_before_the_watch_starts_is_seen() {
        let dir = std::env::temp_dir().join(format!("burrowfs-watch-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let rel = dir.strip_prefix("/").unwrap().to_path_buf();
        // SAFETY: the child only makes system calls, allocates (glibc's
        // allocator works after fork) and ends with _exit.
        let code = match unsafe { nix::unistd::fork() }.unwrap() {
            nix::unistd::ForkResult::Child => {
                let code = (|| -> Result<i32, String> {
                    let (uid, gid) = (nix::unistd::getuid(), nix::unistd::getgid());
                    use nix::sched::CloneFlags as F;
                    if nix::sched::unshare(F::CLONE_NEWUSER | F::CLONE_NEWNS).is_err() {
                        return Ok(77);
                    }
                    let write =
                        |f: &str, v: String| std::fs::write(f, v).map_err(|e| e.to_string());
                    write("/proc/self/setgroups", "deny".into())?;
                    write("/proc/self/uid_map", format!("0 {uid} 1"))?;
                    write("/proc/self/gid_map", format!("0 {gid} 1"))?;
                    let watch = Arc::new(MountWatch::new(vec![Some(PathBuf::from("/"))]));
                    if watch.at(0, &rel).is_some() {
                        return Err("mounted before the test mounted".into());
                    }
                    nix::mount::mount(
                        Some("tmpfs"),
                        &dir,
                        Some("tmpfs"),
                        nix::mount::MsFlags::empty(),
                        None::<&str>,
                    )
                    .map_err(|e| e.to_string())?;
                    watch.watch();
                    for _ in 0..1000 {
                        if watch.at(0, &rel) == Some(MountView::Sealed) {
                            return Ok(0);
                        }
                        std::thread::sleep(std::time::Duration::from_millis(10));
                    }
                    Err("the mount made before the watch was never seen".into())
                })();
                let code = code.unwrap_or_else(|e| {
                    eprintln!("{e}");
                    1
                });
                // SAFETY: ends the child at once, running nothing of the
                // test harness's.
                unsafe { libc::_exit(code) }
            }
            nix::unistd::ForkResult::Parent { child } => {
                match nix::sys::wait::waitpid(child, None).unwrap() {
                    nix::sys::wait::WaitStatus::Exited(_, code) => code,
                    other => panic!("{other:?}"),
                }
            }
        };
        let _ = std::fs::remove_dir(&dir);
        if code == 77 {
            println!("SKIPPED: no unprivileged user namespaces here");
            return;
        }
        assert_eq!(code, 0, "see the child's line above");
    }
}

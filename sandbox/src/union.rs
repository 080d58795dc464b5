//! The sandbox's root as a burrowfs union: pid 1 mounts FUSE on the new
//! root inside the sandbox and hands the /dev/fuse descriptor (and, for an
//! ephemeral upper layer, a tmpfs made inside the sandbox) to a server
//! process. The server runs outside the sandbox's pid and mount
//! namespaces, so nothing in the sandbox can see or signal it, but inside
//! its user namespace, so that it can give files to the sandbox's ids.

use std::os::fd::{AsFd, AsRawFd, OwnedFd};
use std::path::{Path, PathBuf};

use burrow_unionfs::fs::{serve_mounted, UnionFs};
use burrow_unionfs::layers::Lower;
use burrow_unionfs::upper::Upper;
use burrow_unionfs::Stack;
use nix::fcntl::OFlag;
use nix::mount::MsFlags;
use nix::sched::CloneFlags;
use nix::sys::stat::Mode;
use nix::unistd::Pid;

use crate::config::{Root, UpperLayer};
use crate::error::{Context, Error, Result};
use crate::sys;

/// The host's top-level directories the union shows empty when its bottom
/// layer is the host's /: the sandbox has its own /proc, /sys (the host's,
/// read-only, mounted apart from the union), /dev, /tmp and /run.
pub const SEALED: [&str; 5] = ["proc", "sys", "dev", "tmp", "run"];

/// Inside the sandbox (pid 1, after pivoting into the scratch root with the
/// host's root at `oldroot`): mounts the union on `newroot` and sends the
/// server what it needs.
pub fn mount_root(
    upper: Option<&UpperLayer>,
    store: &crate::storage::Store,
    oldroot: &Path,
    newroot: &Path,
    sock: &OwnedFd,
) -> Result<()> {
    let mut fds: Vec<OwnedFd> = Vec::new();
    let fuse = nix::fcntl::open(
        &oldroot.join("dev/fuse"),
        OFlag::O_RDWR | OFlag::O_CLOEXEC,
        Mode::empty(),
    )
    .map_err(|e| {
        Error::usage(format!(
            "cannot open /dev/fuse for the sandbox's root filesystem: {} (burrow serves every \
             root through FUSE: make /dev/fuse mode 0666)",
            e.desc()
        ))
    })?;
    if upper == Some(&UpperLayer::Ephemeral) {
        // In the sandbox's tmpfs store, under its one budget.
        let dir = store.new_dir(0o755)?;
        for sub in ["upper", "work"] {
            nix::sys::stat::mkdirat(&dir, sub, Mode::from_bits_truncate(0o755))
                .ctx(|| format!("creating the upper layer's {sub}"))?;
        }
        fds.push(dir);
    }
    let data = format!(
        "fd={},rootmode=40000,user_id={},group_id={},allow_other,default_permissions",
        fuse.as_raw_fd(),
        nix::unistd::getuid(),
        nix::unistd::getgid()
    );
    let mut flags = MsFlags::MS_NOSUID | MsFlags::MS_NODEV;
    if upper.is_none() {
        flags |= MsFlags::MS_RDONLY;
    }
    nix::mount::mount(
        Some("burrow"),
        newroot,
        Some("fuse.burrowfs"),
        flags,
        Some(data.as_str()),
    )
    .ctx(|| "mounting the union root filesystem")?;
    let mut raw = vec![fuse.as_raw_fd()];
    raw.extend(fds.iter().map(|f| f.as_raw_fd()));
    sys::send_fds(sock.as_fd(), &raw).ctx(|| "handing the root filesystem to its server")?;
    // The server alone holds the connection now: if it dies, requests fail
    // instead of hanging.
    drop(fuse);
    Ok(())
}

/// On the host: forks the server for the sandbox whose pid 1 is `init`.
pub fn spawn_server(
    root: &Root,
    hidden: Vec<PathBuf>,
    init: Pid,
    namespaces: Option<&crate::inside::Namespaces>,
    sock: OwnedFd,
    life: sys::HelperLife,
) -> Result<Pid> {
    // Opened now, while pid 1 waits for its id maps: once it runs it makes
    // itself non-dumpable, and its /proc files are closed to us. (Made
    // inside namespaces joined, it never was dumpable: they were handed
    // over.)
    let userns = match namespaces {
        Some(ns) => ns.user.try_clone().map(std::fs::File::from),
        None => std::fs::File::open(format!("/proc/{init}/ns/user")),
    }
    .map_err(|e| Error::usage(format!("opening the sandbox's user namespace: {e}")))?;
    match sys::fork_helper(life).ctx(|| "fork")? {
        sys::Helper::Parent(pid) => Ok(pid),
        sys::Helper::Child(sandbox) => sys::exit_now(serve(root, hidden, userns, sock, sandbox)),
    }
}

/// The server's life: its exit status. A failure is told while the FUSE
/// descriptor is still open: once it closes, pid 1's next step fails and
/// the launcher ends this process, which must have said why by then.
fn serve(
    root: &Root,
    hidden: Vec<PathBuf>,
    userns: std::fs::File,
    sock: OwnedFd,
    sandbox: Option<OwnedFd>,
) -> i32 {
    if let Err(e) = nix::sched::setns(userns, CloneFlags::CLONE_NEWUSER)
        .ctx(|| "joining the sandbox's user namespace")
    {
        return report(&e);
    }
    if let Some(sandbox) = sandbox {
        sys::exit_when_ended(sandbox);
    }
    // The layers are opened while pid 1 sets up and mounts: the kernel's
    // INIT, and with it every request of pid 1's, waits for this server.
    let lowers = open_layers(root, hidden);
    let mut fds = match sys::recv_fds(sock.as_fd()).ctx(|| "receiving the root filesystem") {
        Ok(fds) => fds.into_iter(),
        Err(e) => return report(&e),
    };
    let Some(fuse) = fds.next() else {
        return 0; // the sandbox failed before mounting: nothing to serve
    };
    match lowers.and_then(|stack| prepare(root, stack, fds)) {
        Ok(fs) => match serve_mounted(fs, fuse) {
            Ok(()) => 0,
            Err(e) => report(&Error::usage(format!("serving the root filesystem: {e}"))),
        },
        Err(e) => {
            let code = report(&e);
            drop(fuse);
            code
        }
    }
}

/// Says `e` in one write (another process's line cannot land inside it);
/// the exit status of a failed server.
fn report(e: &Error) -> i32 {
    use std::io::Write;
    let line = format!("burrow: root filesystem server: {e}\n");
    let _ = std::io::stderr().write_all(line.as_bytes());
    1
}

/// The union's layers as far as they are known before pid 1 has mounted
/// it (all but an ephemeral upper layer), and what they hide and show.
fn open_layers(root: &Root, mut hidden: Vec<PathBuf>) -> Result<Stack> {
    let lowers = &root.lowers;
    let upper_dir = match &root.upper {
        Some(UpperLayer::Dir { upper, work }) => {
            hidden.extend([upper.clone(), work.clone()]);
            Some(upper.clone())
        }
        _ => None,
    };
    let mut stack = Stack::new(lowers.to_vec(), upper_dir)
        .map_err(|e| Error::usage(format!("root filesystem layers: {e}")))?;
    stack.hide(hidden);
    stack.present_override_stat(root.override_stat);
    if lowers
        .last()
        .is_some_and(|l| *l == Lower::Dir(PathBuf::from("/")))
    {
        // The sandbox gets its own of these: the host's are not shown.
        stack.seal_top(SEALED.iter().map(std::ffi::OsString::from));
    }
    // This process forks no more: the mount table is followed from now on
    // (and not in the INIT exchange, which pid 1 waits for).
    stack.watch_mounts();
    Ok(stack)
}

/// The union the server will serve: `stack` with the upper layer (from
/// the descriptors pid 1 sent after the FUSE device's).
fn prepare(
    root: &Root,
    mut stack: Stack,
    mut fds: impl Iterator<Item = OwnedFd>,
) -> Result<UnionFs> {
    let upper = root.upper.as_ref();
    let (upper_dir, work_dir) = match upper {
        None => (None, None),
        Some(UpperLayer::Dir { upper, work }) => (Some(upper.clone()), Some(work.clone())),
        Some(UpperLayer::Ephemeral) => {
            let dir = fds
                .next()
                .ok_or_else(|| Error::usage("no upper layer was sent"))?;
            let base = PathBuf::from(format!("/proc/self/fd/{}", dir.as_raw_fd()));
            // Keep the descriptor open for the server's lifetime.
            std::mem::forget(dir);
            let upper = base.join("upper");
            stack
                .add_upper(upper.clone())
                .map_err(|e| Error::usage(format!("root filesystem layers: {e}")))?;
            (Some(upper), Some(base.join("work")))
        }
    };
    // The host's root has no id here unless the caller is root: then the
    // host's system shows as root's inside (see Stack::show_unmapped_as_root).
    let unmapped = |file: &str| {
        std::fs::read_to_string(format!("/proc/self/{file}"))
            .map(|map| !crate::idmap::maps_outer(&map, 0))
            .unwrap_or(false)
    };
    stack.show_unmapped_as_root(unmapped("uid_map"), unmapped("gid_map"));
    if let (Some(UpperLayer::Ephemeral), Some(dir)) = (upper, &upper_dir) {
        crate::shadow::write_stand_ins(&stack, dir)?;
    }
    let upper = match (upper_dir, work_dir) {
        (Some(u), Some(w)) => Some(
            stack
                .layer_root(0)
                .try_clone()
                .and_then(|root| Upper::new(root, u, &w))
                .map_err(|e| Error::usage(format!("preparing the upper layer: {e}")))?,
        ),
        _ => None,
    };
    if let Some(UpperLayer::Dir { work, .. }) = root.upper.as_ref() {
        // Under the work directory's lock (Upper::new took it): a second
        // sandbox refused this upper cannot have changed it.
        let noted = match &root.commit_base {
            Some(base) => base.write(work),
            None => burrow_images::Base::remove(work),
        };
        noted.map_err(|e| Error::usage(format!("--upper: {e}")))?;
    }
    nix::sys::stat::umask(Mode::empty());
    Ok(UnionFs::new(stack, upper))
}

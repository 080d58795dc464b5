//! `burrowfs [SOURCE] MOUNTPOINT -o lowerdir=..,upperdir=..,workdir=..[,..] [-f]`
//!
//! Mounts the union and serves it. Without `-f` it returns once the mount
//! is in place and keeps serving in the background (what podman's
//! `mount_program` and mount.fuse3 expect); with `-f` it stays in the
//! foreground. Either way it exits when the filesystem is unmounted, and
//! unmounts cleanly on SIGTERM, SIGINT or SIGHUP.

use std::io::{Read, Write};
use std::os::fd::{AsRawFd, OwnedFd};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use burrow_unionfs::fs::UnionFs;
use burrow_unionfs::options::{is_within, Options};
use burrow_unionfs::upper::Upper;
use burrow_unionfs::Stack;
use nix::mount::MsFlags;
use nix::sys::signal::{SigSet, Signal};

fn main() {
    if std::env::args()
        .skip(1)
        .any(|a| a == "--version" || a == "-V")
    {
        // fuse-overlayfs' first line, which podman shows in `podman info`.
        println!("burrowfs: version {}", env!("CARGO_PKG_VERSION"));
        return;
    }
    if let Err(e) = run(std::env::args().skip(1).collect()) {
        eprintln!("burrowfs: {e:#}");
        std::process::exit(1);
    }
}

fn canonical(path: &Path, what: &str) -> Result<PathBuf> {
    std::fs::canonicalize(path).map_err(|e| {
        let reason = e.raw_os_error().map_or_else(
            || e.to_string(),
            |n| nix::errno::Errno::from_raw(n).desc().to_string(),
        );
        anyhow::anyhow!("{what} {}: {reason}", path.display())
    })
}

fn run(args: Vec<String>) -> Result<()> {
    let opts = Options::parse(args)?;
    if !opts.ignored.is_empty() {
        eprintln!(
            "burrowfs: warning: ignoring options that do not apply: {}",
            opts.ignored.join(",")
        );
    }
    for o in &opts.unknown {
        eprintln!("burrowfs: warning: ignoring unknown option {o}");
    }
    let mountpoint = canonical(&opts.mountpoint, "mountpoint")?;
    let lowers = opts
        .lowers
        .iter()
        .map(|l| Ok(l.at(canonical(l.path(), "lowerdir")?)))
        .collect::<Result<Vec<_>>>()?;
    let (upper, work) = match (&opts.upper, &opts.work) {
        (Some(u), Some(w)) => (
            Some(canonical(u, "upperdir")?),
            Some(canonical(w, "workdir")?),
        ),
        _ => (None, None),
    };
    if let (Some(u), Some(w)) = (&upper, &work) {
        for l in lowers.iter().filter(|l| l.is_image()).map(|l| l.path()) {
            // What the union writes could change the layer below it.
            if is_within(l, u) || is_within(l, w) {
                bail!(
                    "lowerdir {} is inside upperdir {} or workdir {}",
                    l.display(),
                    u.display(),
                    w.display()
                );
            }
        }
        for l in lowers.iter().filter(|l| !l.is_image()).map(|l| l.path()) {
            if is_within(u, l) || is_within(l, u) {
                bail!(
                    "upperdir {} and lowerdir {} overlap",
                    u.display(),
                    l.display()
                );
            }
        }
        if is_within(w, u) || is_within(u, w) {
            bail!(
                "upperdir {} and workdir {} overlap",
                u.display(),
                w.display()
            );
        }
        let (ud, wd) = (std::fs::metadata(u)?.dev(), std::fs::metadata(w)?.dev());
        if ud != wd {
            bail!(
                "workdir {} is not on the same filesystem as upperdir {}",
                w.display(),
                u.display()
            );
        }
    }
    // Every open file in the union holds a descriptor here.
    burrow_unionfs::fs::raise_open_file_limit();
    let mut stack = Stack::new(lowers, upper.clone())?;
    stack.present_override_stat(opts.override_stat);
    let upper = match (upper, work) {
        (Some(u), Some(w)) => {
            let root = stack.layer_root(0).try_clone()?;
            Some(
                Upper::new(root, u, &w)
                    .with_context(|| format!("preparing workdir {}", w.display()))?,
            )
        }
        _ => None,
    };
    // Modes arrive already masked by the kernel.
    nix::sys::stat::umask(nix::sys::stat::Mode::empty());

    let mut config = fuser::Config::default();
    // Workers share the session's descriptor (no clones): READs are
    // answered on it by splicing (see `SessionSlots`).
    config.n_threads = Some(burrow_unionfs::fs::WORKERS);
    config.mount_options = vec![
        fuser::MountOption::FSName(opts.source.clone()),
        fuser::MountOption::Subtype("burrowfs".into()),
        fuser::MountOption::DefaultPermissions,
    ];
    if upper.is_none() {
        config.mount_options.push(fuser::MountOption::RO);
    }
    if nix::unistd::geteuid().is_root() {
        // Root (of the host or of a user namespace) serves other users too.
        config.acl = fuser::SessionACL::All;
    }
    let mut fs = UnionFs::new(stack, upper).with_ids(opts.ids.clone());
    if !opts.passthrough {
        fs = fs.without_passthrough();
    }
    if opts.foreground {
        serve(fs, &opts, &mountpoint, &config, || {})
    } else {
        daemonize(|ready| serve(fs, &opts, &mountpoint, &config, ready))
    }
}

/// Signals that unmount burrowfs cleanly.
fn stop_signals() -> SigSet {
    let mut stop = SigSet::empty();
    for s in [Signal::SIGTERM, Signal::SIGINT, Signal::SIGHUP] {
        stop.add(s);
    }
    stop
}

/// Mounts, calls `ready`, then serves until unmounted or signalled.
fn serve(
    fs: UnionFs,
    opts: &Options,
    mountpoint: &Path,
    config: &fuser::Config,
    ready: impl FnOnce(),
) -> Result<()> {
    let stop = stop_signals();
    stop.thread_block().context("blocking signals")?;
    let allow_other = config.acl == fuser::SessionACL::All;
    if let Some(fd) = mount_direct(&opts.source, mountpoint, opts.upper.is_none(), allow_other)? {
        let slots = fs.session_slots();
        let session = fuser::Session::from_fd(fs, fd, config.acl, config.clone())
            .context("starting the FUSE session")?;
        slots.fill(&session).context("duplicating /dev/fuse")?;
        let target = mountpoint.to_path_buf();
        std::thread::spawn(move || {
            if stop.wait().is_ok() {
                let _ = nix::mount::umount2(&target, nix::mount::MntFlags::MNT_DETACH);
            }
        });
        ready();
        return session.run().context("serving the filesystem");
    }
    // Not allowed to mount here: let fusermount3 do it.
    let slots = fs.session_slots();
    let mut session = fuser::Session::new(fs, mountpoint, config)
        .with_context(|| format!("mounting on {}", mountpoint.display()))?;
    slots.fill(&session).context("duplicating /dev/fuse")?;
    let mut unmounter = session.unmount_callable();
    std::thread::spawn(move || {
        if stop.wait().is_ok() {
            let _ = unmounter.unmount();
        }
    });
    ready();
    session.run().context("serving the filesystem")
}

/// Mounts FUSE on `mountpoint` with mount(2), as root of the host or of a
/// user namespace can; `None` when this process may not.
fn mount_direct(
    source: &str,
    mountpoint: &Path,
    read_only: bool,
    allow_other: bool,
) -> Result<Option<OwnedFd>> {
    let dev = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open("/dev/fuse")
        .context("opening /dev/fuse")?;
    let root_mode = std::fs::metadata(mountpoint)?.mode() & libc::S_IFMT;
    let mut data = format!(
        "fd={},rootmode={root_mode:o},user_id={},group_id={},default_permissions",
        dev.as_raw_fd(),
        nix::unistd::getuid(),
        nix::unistd::getgid()
    );
    if allow_other {
        data.push_str(",allow_other");
    }
    let mut flags = MsFlags::MS_NOSUID | MsFlags::MS_NODEV;
    if read_only {
        flags |= MsFlags::MS_RDONLY;
    }
    match nix::mount::mount(
        Some(source),
        mountpoint,
        Some("fuse.burrowfs"),
        flags,
        Some(data.as_str()),
    ) {
        Ok(()) => Ok(Some(OwnedFd::from(dev))),
        Err(nix::errno::Errno::EPERM) => Ok(None),
        Err(e) => bail!("mounting on {}: {}", mountpoint.display(), e.desc()),
    }
}

/// Runs `work` in a detached child; returns once it reports the mount ready
/// (exit 0) or fails (its error, exit 1).
fn daemonize(work: impl FnOnce(Box<dyn FnOnce()>) -> Result<()>) -> Result<()> {
    let (mut rx, tx) = std::io::pipe().context("pipe")?;
    // SAFETY: burrowfs is still single-threaded here.
    match unsafe { nix::unistd::fork() }.context("fork")? {
        nix::unistd::ForkResult::Parent { .. } => {
            drop(tx);
            let mut msg = String::new();
            let _ = rx.read_to_string(&mut msg);
            match msg.strip_prefix("ok") {
                Some(_) => Ok(()),
                None if msg.is_empty() => bail!("the filesystem process died before mounting"),
                None => bail!("{}", msg.trim_end()),
            }
        }
        nix::unistd::ForkResult::Child => {
            drop(rx);
            let _ = nix::unistd::setsid();
            let tx = std::sync::Arc::new(std::sync::Mutex::new(Some(tx)));
            let tx_ready = tx.clone();
            let ready = Box::new(move || {
                if let Some(mut tx) = tx_ready.lock().unwrap().take() {
                    let _ = tx.write_all(b"ok");
                }
                detach_stdio();
            });
            let res = work(ready);
            if let Err(e) = &res {
                if let Some(mut tx) = tx.lock().unwrap().take() {
                    let _ = write!(tx, "{e:#}");
                }
            }
            std::process::exit(i32::from(res.is_err()));
        }
    }
}

fn detach_stdio() {
    if let Ok(null) = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open("/dev/null")
    {
        let _ = nix::unistd::dup2_stdin(&null);
        let _ = nix::unistd::dup2_stdout(&null);
        let _ = nix::unistd::dup2_stderr(&null);
    }
}

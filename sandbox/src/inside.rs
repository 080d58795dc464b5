//! The sandbox made inside namespaces joined by path: `--pidns` (a pod's
//! pid namespace) and `--userns` (its user namespace, inside which the
//! sandbox's own is made). An intermediate process of burrow's does it,
//! so that the launcher itself, and the helpers it makes after, stay where
//! they were (a process cannot go back to its own pid namespace without
//! privileges over its owner, and a helper in the pod's could not see the
//! launcher):
//!
//! 1. with `--userns`, it joins that namespace and becomes its root (the
//!    sandbox's namespace is then owned by the pod's root, as the
//!    sandbox's own root would be there, not by whichever id the caller
//!    has in it); the maps are every id it maps, each to itself;
//! 2. it forks a mapper, which stays where it is;
//! 3. with `--pidns`, it joins the pid namespace (for what it makes);
//! 4. it makes the sandbox's namespaces (unshare), the user namespace
//!    first, which the mapper maps from outside;
//! 5. it hands the launcher descriptors of the sandbox's user and network
//!    namespaces (for its helpers: pid 1's /proc files will be closed to
//!    them);
//! 6. it makes itself not dumpable, and clones pid 1 into those
//!    namespaces as the launcher's own child (CLONE_PARENT).
//!
//! So pid 1 appears in the pod's pid namespace already mapped and not
//! dumpable: another process of the pod cannot trace it or reach its
//! descriptors and root (the host's, until it pivots) through /proc.

use std::os::fd::{AsFd, BorrowedFd, OwnedFd};

use nix::fcntl::OFlag;
use nix::sched::CloneFlags;
use nix::unistd::Pid;

use crate::error::{Context, Error, Result};
use crate::idmap::IdMaps;
use crate::sys;

/// The sandbox's user namespace, and its network namespace when it has
/// one of its own.
#[derive(Debug)]
pub struct Namespaces {
    pub user: OwnedFd,
    pub net: Option<OwnedFd>,
}

/// As [`sys::clone_into`] with `flags` (which include CLONE_NEWUSER), from
/// inside the pid namespace `pidns` and the user namespace `userns`, with
/// `maps` (unless `userns` gives its own): `None` in the sandbox's process;
/// in the caller's, its pid (its maps written) and its namespaces.
pub fn clone_inside(
    pidns: Option<BorrowedFd>,
    userns: Option<BorrowedFd>,
    maps: &IdMaps,
    flags: CloneFlags,
    oom_score_adj: Option<i32>,
) -> Result<Option<(Pid, Namespaces)>> {
    let (r, w) = nix::unistd::pipe2(OFlag::O_CLOEXEC).ctx(|| "pipe")?;
    let (sock, theirs) = nix::sys::socket::socketpair(
        nix::sys::socket::AddressFamily::Unix,
        nix::sys::socket::SockType::SeqPacket,
        None,
        nix::sys::socket::SockFlag::SOCK_CLOEXEC,
    )
    .ctx(|| "socketpair")?;
    let middle = match sys::fork().ctx(|| "fork")? {
        Some(pid) => pid,
        None => {
            drop(r);
            drop(sock);
            return intermediate(pidns, userns, maps, (flags, oom_score_adj), w, theirs)
                .map(|_| None);
        }
    };
    drop(w);
    drop(theirs);
    let said = String::from_utf8_lossy(&crate::launch::read_all(&r)).into_owned();
    let _ = nix::sys::wait::waitpid(middle, None);
    let pid_of = |text: &str| text.parse::<i32>().ok().map(Pid::from_raw);
    match said.split_once('\t') {
        Some(("ok", pid)) => {
            let pid = pid_of(pid)
                .ok_or_else(|| Error::usage("no sandbox was made in the namespaces joined"))?;
            let mut fds = sys::recv_fds(sock.as_fd()).unwrap_or_default().into_iter();
            let Some(user) = fds.next() else {
                // (pid 1 ends at the end of its sync pipe; reaped here.)
                let _ = sys::kill_raw(pid, libc::SIGKILL);
                let _ = nix::sys::wait::waitpid(pid, None);
                return Err(Error::usage(
                    "the sandbox's namespaces were not handed over",
                ));
            };
            Ok(Some((
                pid,
                Namespaces {
                    user,
                    net: fds.next(),
                },
            )))
        }
        Some((_, msg)) => Err(Error::usage(msg.to_string())),
        None => Err(Error::usage(if said.is_empty() {
            "the process joining the namespaces ended".to_string()
        } else {
            said
        })),
    }
}

/// The intermediate process: returns only in the sandbox's.
fn intermediate(
    pidns: Option<BorrowedFd>,
    userns: Option<BorrowedFd>,
    maps: &IdMaps,
    (flags, oom_score_adj): (CloneFlags, Option<i32>),
    w: OwnedFd,
    to: OwnedFd,
) -> Result<()> {
    let fail = |msg: String| -> ! {
        let _ = nix::unistd::write(&w, format!("-\t{msg}").as_bytes());
        sys::exit_now(1)
    };
    // 1.
    let joined = match userns.map(join_as_root).transpose() {
        Ok(maps) => maps,
        Err(msg) => fail(msg),
    };
    let maps = joined.as_ref().unwrap_or(maps);
    // 2. The mapper waits for the namespace, maps it and says how it went.
    let pipes = nix::unistd::pipe2(OFlag::O_CLOEXEC)
        .and_then(|go| nix::unistd::pipe2(OFlag::O_CLOEXEC).map(|done| (go, done)));
    let ((go_r, go_w), (done_r, done_w)) = match pipes {
        Ok(p) => p,
        Err(e) => fail(format!("pipe: {}", e.desc())),
    };
    let me = nix::unistd::getpid();
    match sys::fork() {
        Err(e) => fail(format!("fork: {}", e.desc())),
        Ok(None) => {
            drop(go_w);
            drop(done_r);
            let mut byte = [0u8; 1];
            if nix::unistd::read(&go_r, &mut byte) != Ok(1) {
                sys::exit_now(1);
            }
            let said = match maps.apply(me) {
                Ok(()) => String::new(),
                Err(e) => e.to_string(),
            };
            let _ = nix::unistd::write(&done_w, said.as_bytes());
            sys::exit_now(0)
        }
        Ok(Some(mapper)) => {
            drop(go_r);
            drop(done_w);
            // 3.
            if let Some(ns) = pidns {
                if let Err(e) = nix::sched::setns(ns, CloneFlags::CLONE_NEWPID) {
                    fail(format!(
                        "--pidns: cannot join it: {} (burrow needs privileges over its user \
                         namespace)",
                        e.desc()
                    ))
                }
            }
            // 4.
            if let Err(e) = nix::sched::unshare(flags) {
                fail(format!(
                    "making the sandbox's namespaces in those joined: {}",
                    e.desc()
                ))
            }
            let _ = nix::unistd::write(&go_w, b"1");
            let said = crate::launch::read_all(&done_r);
            let _ = nix::sys::wait::waitpid(mapper, None);
            if !said.is_empty() {
                fail(String::from_utf8_lossy(&said).into_owned())
            }
        }
    }
    // 5.
    let open = |kind: &str| {
        std::fs::File::open(format!("/proc/self/ns/{kind}"))
            .map(OwnedFd::from)
            .unwrap_or_else(|e| fail(format!("its {kind} namespace: {e}")))
    };
    let mut handed = vec![open("user")];
    if flags.contains(CloneFlags::CLONE_NEWNET) {
        handed.push(open("net"));
    }
    let raw: Vec<i32> = handed.iter().map(std::os::fd::AsRawFd::as_raw_fd).collect();
    if let Err(e) = sys::send_fds(to.as_fd(), &raw) {
        fail(format!(
            "handing the sandbox's namespaces over: {}",
            e.desc()
        ))
    }
    drop(handed);
    drop(to);
    // 6. (pid 1 inherits the OOM score; once not dumpable, its own file
    // may be closed to it.)
    if let Some(n) = oom_score_adj {
        if let Err(msg) = sys::set_oom_score_adj(n) {
            fail(msg)
        }
    }
    if let Err(e) = sys::set_not_dumpable() {
        fail(format!("not dumpable: {}", e.desc()))
    }
    match sys::clone_into(CloneFlags::CLONE_PARENT) {
        Ok(None) => {
            drop(w);
            Ok(())
        }
        Ok(Some(pid)) => {
            let _ = nix::unistd::write(&w, format!("ok\t{pid}").as_bytes());
            sys::exit_now(0)
        }
        Err(e) => fail(format!(
            "making the sandbox's namespaces in those joined: {}",
            e.desc()
        )),
    }
}

/// Joins `ns` and becomes its root; the maps of a namespace inside it.
fn join_as_root(ns: BorrowedFd) -> std::result::Result<IdMaps, String> {
    nix::sched::setns(ns.as_fd(), CloneFlags::CLONE_NEWUSER).map_err(|e| {
        format!(
            "--userns: cannot join it: {} (burrow must own it, and run single-threaded)",
            e.desc()
        )
    })?;
    let maps = IdMaps::identity_of_own_ns();
    let maps_root = |m: &[crate::idmap::IdRange]| m.iter().any(|r| r.inner == 0);
    if !maps_root(&maps.uid) || !maps_root(&maps.gid) {
        return Err("--userns: the namespace maps no root (uid and gid 0) to be".into());
    }
    let root = nix::unistd::Gid::from_raw(0);
    nix::unistd::setresgid(root, root, root)
        .and_then(|()| {
            let root = nix::unistd::Uid::from_raw(0);
            nix::unistd::setresuid(root, root, root)
        })
        .map_err(|e| format!("--userns: becoming its root: {}", e.desc()))?;
    Ok(maps)
}

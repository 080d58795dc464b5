//! The sandbox made inside namespaces joined by path: `--pidns` (a pod's
//! pid namespace) and `--userns` (its user namespace, inside which the
//! sandbox's own is made). An intermediate process joins them and clones
//! the sandbox from there as the launcher's own child (CLONE_PARENT), then
//! exits: the launcher itself, and the helpers it makes after, stay where
//! they were (a process cannot go back to its own pid namespace without
//! privileges over its owner, and a helper in the pod's could not see the
//! launcher). In a joined user namespace the intermediate becomes its
//! root first, and writes the sandbox's maps (every id the namespace maps,
//! each to itself): the new namespace is so owned by the joined one's
//! root, as the sandbox's own root would be there, not by whichever id
//! the caller happens to have in it.

use std::os::fd::{AsFd, BorrowedFd, OwnedFd};

use nix::fcntl::OFlag;
use nix::sched::CloneFlags;
use nix::unistd::Pid;

use crate::error::{Context, Error, Result};
use crate::idmap::IdMaps;
use crate::sys;

/// As [`sys::clone_into`] with `flags` (which make a new user namespace),
/// from inside the pid namespace `pidns` and the user namespace `userns`:
/// `None` in the sandbox's process, its pid in the caller's (with
/// `userns`, once its maps are written).
pub fn clone_inside(
    pidns: Option<BorrowedFd>,
    userns: Option<BorrowedFd>,
    flags: CloneFlags,
) -> Result<Option<Pid>> {
    let (r, w) = nix::unistd::pipe2(OFlag::O_CLOEXEC).ctx(|| "pipe")?;
    let middle = match sys::fork().ctx(|| "fork")? {
        Some(pid) => pid,
        None => {
            drop(r);
            return intermediate(pidns, userns, flags, w);
        }
    };
    drop(w);
    let said = String::from_utf8_lossy(&crate::launch::read_all(&r)).into_owned();
    let _ = nix::sys::wait::waitpid(middle, None);
    let pid_of = |text: &str| text.parse::<i32>().ok().map(Pid::from_raw);
    match said.split_once('\t') {
        Some(("ok", pid)) => pid_of(pid)
            .map(Some)
            .ok_or_else(|| Error::usage("--userns: no sandbox was made")),
        Some((pid, msg)) => {
            // A sandbox made and then killed is the caller's child to reap.
            if let Some(pid) = pid_of(pid) {
                let _ = nix::sys::wait::waitpid(pid, None);
            }
            Err(Error::usage(msg.to_string()))
        }
        None => Err(Error::usage(if said.is_empty() {
            "the process joining the namespaces ended".to_string()
        } else {
            said
        })),
    }
}

/// The intermediate process: returns (`None`) only in the sandbox's.
fn intermediate(
    pidns: Option<BorrowedFd>,
    userns: Option<BorrowedFd>,
    flags: CloneFlags,
    w: OwnedFd,
) -> Result<Option<Pid>> {
    let tell = |text: String| {
        let _ = nix::unistd::write(&w, text.as_bytes());
    };
    if let Some(ns) = pidns {
        // (For the processes this one makes.)
        if let Err(e) = nix::sched::setns(ns, CloneFlags::CLONE_NEWPID) {
            tell(format!(
                "-\t--pidns: cannot join it: {} (burrow needs privileges over its user \
                 namespace)",
                e.desc()
            ));
            sys::exit_now(1)
        }
    }
    let maps = match userns.map(join_as_root).transpose() {
        Ok(maps) => maps,
        Err(msg) => {
            tell(format!("-\t{msg}"));
            sys::exit_now(1)
        }
    };
    match sys::clone_into(flags | CloneFlags::CLONE_PARENT) {
        Ok(None) => {
            drop(w);
            Ok(None)
        }
        Ok(Some(pid)) => {
            match maps.map_or(Ok(()), |m| m.apply(pid)) {
                Ok(()) => tell(format!("ok\t{pid}")),
                Err(e) => {
                    let _ = sys::kill_raw(pid, libc::SIGKILL);
                    tell(format!("{pid}\t{e}"));
                }
            }
            sys::exit_now(0)
        }
        Err(e) => {
            tell(format!(
                "-\tmaking the sandbox's namespaces inside those joined: {}",
                e.desc()
            ));
            sys::exit_now(1)
        }
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

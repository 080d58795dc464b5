//! `--pidns PATH`: the sandbox in a pid namespace it did not make (a
//! pod's, which its containers share). burrow's pid 1 is then one process
//! of that namespace, not its init: it reaps its own descendants (a
//! subreaper) and ends what is left of its tree when the command ends.
//!
//! Its /proc must show that namespace. The kernel lets only a process
//! with privileges over the namespace's owner mount such a proc, which
//! the sandbox (in a user namespace of its own) has not: a helper joins
//! the owner, makes the mount there, detached, and hands it over; pid 1
//! attaches it in the new root.

use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd};

use nix::fcntl::OFlag;
use nix::sched::CloneFlags;
use nix::sys::socket::{socketpair, AddressFamily, SockFlag, SockType};

use crate::error::{Context, Error, Result};
use crate::sys;

/// A detached proc mount (nosuid, nodev, noexec) of the pid namespace
/// `ns`.
pub fn proc_mount(ns: BorrowedFd) -> Result<OwnedFd> {
    let owner = sys::ns_owner(ns).map_err(|e| {
        Error::usage(format!(
            "--pidns: its user namespace: {} (burrow needs privileges over it)",
            e.desc()
        ))
    })?;
    let (sock, theirs) = socketpair(
        AddressFamily::Unix,
        SockType::SeqPacket,
        None,
        SockFlag::SOCK_CLOEXEC,
    )
    .ctx(|| "socketpair")?;
    let (err_r, err_w) = nix::unistd::pipe2(OFlag::O_CLOEXEC).ctx(|| "pipe")?;
    let helper = match sys::fork().ctx(|| "fork")? {
        Some(pid) => pid,
        None => {
            drop(sock);
            drop(err_r);
            make(owner.as_fd(), ns, theirs.as_fd(), err_w)
        }
    };
    drop(theirs);
    drop(err_w);
    // (A helper stopped by another process of the pod is not waited for
    // for ever.)
    let mut ready = [nix::poll::PollFd::new(
        sock.as_fd(),
        nix::poll::PollFlags::POLLIN,
    )];
    let fds = match nix::poll::poll(&mut ready, nix::poll::PollTimeout::from(10_000u16)) {
        Ok(n) if n > 0 => sys::recv_fds(sock.as_fd()),
        _ => {
            let _ = nix::sys::signal::kill(helper, nix::sys::signal::Signal::SIGKILL);
            Err(nix::errno::Errno::ETIMEDOUT)
        }
    };
    let said = String::from_utf8_lossy(&crate::launch::read_all(&err_r)).into_owned();
    let _ = nix::sys::wait::waitpid(helper, None);
    match fds.ok().and_then(|f| f.into_iter().next()) {
        Some(fd) => Ok(fd),
        None if said.is_empty() => Err(Error::usage("--pidns: no /proc was made for it")),
        None => Err(Error::usage(format!("--pidns: {said}"))),
    }
}

/// In the helper: joins the owner of `ns` (a mount namespace of its own
/// there), then from a child in `ns` makes the proc mount and sends it
/// over `to`; a failure is said on `err`. Does not return.
fn make(owner: BorrowedFd, ns: BorrowedFd, to: BorrowedFd, err: OwnedFd) -> ! {
    let fail = |what: &str, e: nix::errno::Errno| -> ! {
        let _ = nix::unistd::write(&err, format!("{what}: {}", e.desc()).as_bytes());
        sys::exit_now(1)
    };
    // Nothing of the caller's for the pod to reach here: not dumpable,
    // and (below) an empty root and no descriptor but those it needs.
    if let Err(e) = sys::set_not_dumpable() {
        fail("not dumpable", e)
    }
    if !sys::same_ns(owner, "user") {
        if let Err(e) = nix::sched::setns(owner, CloneFlags::CLONE_NEWUSER) {
            fail("joining its user namespace", e)
        }
    }
    if let Err(e) = nix::sched::unshare(CloneFlags::CLONE_NEWNS) {
        fail("a mount namespace of its user namespace", e)
    }
    if let Err(e) = empty_root() {
        fail("an empty root", e)
    }
    if let Err(e) = sys::close_all_but(&[to.as_raw_fd(), err.as_raw_fd(), ns.as_raw_fd()]) {
        fail("closing descriptors", e)
    }
    // (Only a child of this process is in the namespace joined.)
    if let Err(e) = nix::sched::setns(ns, CloneFlags::CLONE_NEWPID) {
        fail("joining it", e)
    }
    match sys::fork() {
        Err(e) => fail("fork", e),
        Ok(Some(child)) => {
            let _ = nix::sys::wait::waitpid(child, None);
            sys::exit_now(0)
        }
        Ok(None) => {
            // Ends with the helper, even stopped by the pod (the launcher
            // waits for its pipes to close).
            let _ = sys::set_parent_death_signal(nix::sys::signal::Signal::SIGKILL);
            let attr = libc::MOUNT_ATTR_NOSUID | libc::MOUNT_ATTR_NODEV | libc::MOUNT_ATTR_NOEXEC;
            match sys::new_mount(c"proc", &[], attr) {
                Err(e) => fail("mounting proc for it", e),
                Ok(m) => {
                    if let Err(e) = sys::send_fds(to, &[m.as_raw_fd()]) {
                        fail("handing its /proc over", e)
                    }
                }
            }
            sys::exit_now(0)
        }
    }
}

/// Makes an empty tmpfs this process's root and working directory (in a
/// mount namespace of its own).
fn empty_root() -> nix::Result<()> {
    use nix::mount::{mount, MsFlags};
    sys::make_mounts_private()?;
    mount(
        Some("tmpfs"),
        "/tmp",
        Some("tmpfs"),
        MsFlags::MS_NOSUID | MsFlags::MS_NODEV | MsFlags::MS_NOEXEC,
        Some("size=4k,mode=0500"),
    )?;
    nix::unistd::chdir("/tmp")?;
    nix::unistd::chroot(".")
}

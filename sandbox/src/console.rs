//! The command's terminal when the OCI runtime is given a console socket:
//! made in the sandbox (its `/dev/ptmx` is the sandbox's own devpts
//! instance), the master sent to the engine, the other end the command's.

use std::os::fd::{AsFd, AsRawFd};

use nix::fcntl::OFlag;

use crate::config::Console;
use crate::sys;

/// In the command's process, before its exec: makes the pty (owned by
/// `owner`, the command's user, if not root), sends its master, and makes
/// the other end stdin, stdout, stderr and the controlling terminal of a
/// new session.
pub fn attach(console: &Console, owner: Option<(u32, u32)>) -> Result<(), String> {
    let err = |what: &str, e: nix::Error| format!("the terminal: {what}: {}", e.desc());
    // The sandbox's devpts, reached within its root and through no magic
    // link (its /dev is the sandbox's to change: /dev/ptmx could lead to a
    // descriptor of this process's), and checked to be a devpts.
    let root = nix::fcntl::open(
        "/",
        OFlag::O_PATH | OFlag::O_DIRECTORY | OFlag::O_CLOEXEC,
        nix::sys::stat::Mode::empty(),
    )
    .map_err(|e| err("/", e))?;
    let ptmx = std::path::Path::new("dev/pts/ptmx");
    let master = sys::open_in_root(root.as_fd(), ptmx, libc::O_RDWR | libc::O_NOCTTY)
        .map_err(|e| err("/dev/pts/ptmx", e))?;
    if !sys::on_devpts(master.as_fd()).map_err(|e| err("/dev/pts/ptmx", e))? {
        return Err("the terminal: /dev/pts/ptmx is not the sandbox's devpts".to_string());
    }
    // SAFETY: `master` was opened on the devpts' ptmx just above: a pty
    // master, which is what PtyMaster asks for.
    let master = unsafe { nix::pty::PtyMaster::from_owned_fd(master) };
    nix::pty::grantpt(&master).map_err(|e| err("grantpt", e))?;
    nix::pty::unlockpt(&master).map_err(|e| err("unlockpt", e))?;
    let name = nix::pty::ptsname_r(&master).map_err(|e| err("ptsname", e))?;
    // The other end by the master itself (TIOCGPTPEER), not by its name.
    let tty = sys::pty_peer(master.as_fd()).map_err(|e| err(&name, e))?;
    if let Some((uid, gid)) = owner {
        // The command's user owns its terminal (as runc gives it), or
        // programs such as screen and script cannot use it.
        nix::unistd::fchown(
            &tty,
            Some(nix::unistd::Uid::from_raw(uid)),
            Some(nix::unistd::Gid::from_raw(gid)),
        )
        .map_err(|e| err("giving it to the command's user", e))?;
    }
    if let Some((rows, cols)) = console.size {
        sys::set_window_size(tty.as_fd(), rows, cols).map_err(|e| err("its size", e))?;
    }
    sys::send_fds_with(
        console.socket.as_fd(),
        name.as_bytes(),
        &[master.as_fd().as_raw_fd()],
    )
    .map_err(|e| err("sending it to the console socket", e))?;
    drop(master);
    // (Already a session leader with a session of its own: fine.)
    let _ = nix::unistd::setsid();
    sys::set_controlling_terminal(tty.as_fd()).map_err(|e| err("TIOCSCTTY", e))?;
    for stream in 0..=2 {
        sys::dup_onto(tty.as_fd(), stream).map_err(|e| err("dup2", e))?;
    }
    Ok(())
}

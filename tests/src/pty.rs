//! A pseudo-terminal for burrow, as a user at a terminal gives it.

use std::os::fd::{AsFd, OwnedFd};
use std::os::unix::process::CommandExt;
use std::process::{Child, Stdio};
use std::time::Instant;

use crate::{burrow_run, RUN_TIMEOUT};
use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
use nix::pty::{openpty, Winsize};

nix::ioctl_write_ptr_bad!(
    /// TIOCSWINSZ on a terminal.
    set_winsize, libc::TIOCSWINSZ, Winsize);

/// Spawns `burrow run ARGS` as the session leader of a new pseudo-terminal.
pub fn spawn_on_pty(args: &[&str]) -> (Child, OwnedFd) {
    let size = Winsize {
        ws_row: 24,
        ws_col: 80,
        ws_xpixel: 0,
        ws_ypixel: 0,
    };
    let pty = openpty(Some(&size), None).expect("openpty");
    let slave = pty.slave;
    let mut cmd = burrow_run();
    cmd.args(args)
        .stdin(Stdio::from(slave.try_clone().unwrap()))
        .stdout(Stdio::from(slave.try_clone().unwrap()))
        .stderr(Stdio::from(slave));
    // SAFETY: setsid and ioctl are async-signal-safe; nothing is allocated.
    unsafe {
        cmd.pre_exec(|| {
            nix::unistd::setsid()?;
            if libc::ioctl(0, libc::TIOCSCTTY, 0) < 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
    let child = cmd.spawn().expect("spawn burrow on a pty");
    (child, pty.master)
}

/// Reads the terminal until `needle` shows up; returns everything read.
pub fn read_until(master: &OwnedFd, seen: &mut String, needle: &str) {
    let deadline = Instant::now() + RUN_TIMEOUT;
    while !seen.contains(needle) {
        assert!(
            Instant::now() < deadline,
            "never saw {needle:?}; terminal showed {seen:?}"
        );
        let mut fds = [PollFd::new(master.as_fd(), PollFlags::POLLIN)];
        if poll(&mut fds, PollTimeout::from(200u16)).unwrap() == 0 {
            continue;
        }
        let mut buf = [0u8; 4096];
        match nix::unistd::read(master, &mut buf) {
            Ok(0) | Err(_) => panic!("terminal closed before {needle:?}; it showed {seen:?}"),
            Ok(n) => seen.push_str(&String::from_utf8_lossy(&buf[..n])),
        }
    }
}

/// Resizes the terminal to 40x100, waits for the command to say so (its
/// WINCH trap prints "resized to 40 100"), then types Ctrl-C and returns
/// burrow's exit status.
pub fn resize_then_interrupt(child: &mut Child, master: &OwnedFd, seen: &mut String) -> i32 {
    let size = Winsize {
        ws_row: 40,
        ws_col: 100,
        ws_xpixel: 0,
        ws_ypixel: 0,
    };
    // SAFETY: TIOCSWINSZ reads one Winsize from the pointer.
    unsafe { set_winsize(std::os::fd::AsRawFd::as_raw_fd(master), &size) }.expect("TIOCSWINSZ");
    read_until(master, seen, "resized to 40 100");
    nix::unistd::write(master, b"\x03").unwrap(); // Ctrl-C
    crate::exit_code(crate::wait_timeout(child, RUN_TIMEOUT))
}

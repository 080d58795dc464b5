//! Interactive use on a terminal: the command gets the terminal, sees
//! resizes, and Ctrl-C reaches it exactly as it would outside.

use std::os::fd::{AsFd, AsRawFd, OwnedFd};
use std::os::unix::process::CommandExt;
use std::process::{Child, Stdio};
use std::time::Instant;

use burrow_tests::*;
use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
use nix::pty::{openpty, Winsize};

nix::ioctl_write_ptr_bad!(set_winsize, libc::TIOCSWINSZ, Winsize);

/// Spawns `burrow run ARGS` as the session leader of a new pseudo-terminal.
fn spawn_on_pty(args: &[&str]) -> (Child, OwnedFd) {
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
fn read_until(master: &OwnedFd, seen: &mut String, needle: &str) {
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

#[test]
fn terminal_resize_and_ctrl_c_reach_the_command() {
    let (mut child, master) = spawn_on_pty(&[
        "--",
        "bash",
        "-c",
        r#"trap 'echo "resized to $(stty size)"' WINCH; echo "ready $(stty size)"; while :; do sleep 0.05; done"#,
    ]);
    let mut seen = String::new();
    read_until(&master, &mut seen, "ready 24 80");
    let size = Winsize {
        ws_row: 40,
        ws_col: 100,
        ws_xpixel: 0,
        ws_ypixel: 0,
    };
    // SAFETY: TIOCSWINSZ reads one Winsize from the pointer.
    unsafe { set_winsize(master.as_raw_fd(), &size) }.expect("TIOCSWINSZ");
    read_until(&master, &mut seen, "resized to 40 100");
    nix::unistd::write(&master, b"\x03").unwrap(); // Ctrl-C
    let status = wait_timeout(&mut child, RUN_TIMEOUT);
    assert_eq!(exit_code(status), 130, "terminal showed {seen:?}");
}

#[test]
fn interactive_shell_is_usable() {
    let (mut child, master) = spawn_on_pty(&["--", "bash", "--norc", "--noprofile", "-i"]);
    let mut seen = String::new();
    nix::unistd::write(&master, b"echo \"answer=$((6*7))\"; tty\n").unwrap();
    read_until(&master, &mut seen, "answer=42");
    nix::unistd::write(&master, b"exit 5\n").unwrap();
    let status = wait_timeout(&mut child, RUN_TIMEOUT);
    assert_eq!(exit_code(status), 5, "terminal showed {seen:?}");
}

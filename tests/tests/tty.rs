//! Interactive use on a terminal: the command gets the terminal, sees
//! resizes, and Ctrl-C reaches it exactly as it would outside.

use std::os::fd::AsRawFd;

use burrow_tests::pty::{read_until, set_winsize, spawn_on_pty};
use burrow_tests::*;
use nix::pty::Winsize;

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

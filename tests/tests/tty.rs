//! Interactive use on a terminal: the command gets the terminal, sees
//! resizes, and Ctrl-C reaches it exactly as it would outside.

use burrow_tests::pty::{read_until, resize_then_interrupt, spawn_on_pty};
use burrow_tests::*;

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
    let status = resize_then_interrupt(&mut child, &master, &mut seen);
    assert_eq!(status, 130, "terminal showed {seen:?}");
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

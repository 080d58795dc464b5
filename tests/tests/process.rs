//! pid 1, reaping, exit statuses, signals and process lifetime.

use std::io::{BufRead, BufReader};
use std::process::Stdio;
use std::time::Duration;

use burrow_tests::*;
use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;

#[test]
fn burrow_is_pid_1_and_the_command_is_its_child() {
    let out = sh(
        &[],
        "echo $$; cat /proc/1/comm; ls /proc | grep -c '^[0-9]'",
    );
    let lines: Vec<&str> = out.ok().lines().collect();
    assert_eq!(lines[0], "2", "the command is not pid 2: {lines:?}");
    assert_eq!(lines[1], "burrow");
    // pid 1, sh, ls and grep: nothing of the host is visible.
    let visible: usize = lines[2].parse().unwrap();
    assert!(visible <= 4, "{visible} processes visible in the sandbox");
}

#[test]
fn orphans_are_reaped() {
    // The inner sh exits at once; its background sleep is re-parented to
    // pid 1 and exits soon after. Without reaping it would stay a zombie.
    let script = r#"sh -c 'sleep 0.1 &'; sleep 0.6
        for s in /proc/[0-9]*/stat; do read -r l < "$s" 2>/dev/null || continue; set -- $l; [ "$3" = Z ] && echo "zombie $1"; done; echo done"#;
    let out = sh(&[], script);
    assert_eq!(out.ok().trim(), "done", "{out:?}");
}

#[test]
fn exit_status_is_the_commands() {
    assert_eq!(sh(&[], "exit 42").code, 42);
    assert_eq!(sh(&[], "exit 0").code, 0);
}

#[test]
fn death_by_signal_exits_128_plus_n() {
    assert_eq!(sh(&[], "kill -KILL $$").code, 137);
    assert_eq!(sh(&[], "kill -TERM $$").code, 143);
}

#[test]
fn signals_to_burrow_reach_the_command() {
    let mut child = burrow_run()
        .args(["--", "sh", "-c"])
        .arg(r#"trap 'echo got-term; exit 3' TERM; echo ready; while :; do sleep 0.05; done"#)
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    assert_eq!(lines.next().unwrap().unwrap(), "ready");
    kill(Pid::from_raw(child.id() as i32), Signal::SIGTERM).unwrap();
    assert_eq!(lines.next().unwrap().unwrap(), "got-term");
    assert_eq!(exit_code(wait_timeout(&mut child, RUN_TIMEOUT)), 3);
}

#[test]
fn sigint_to_burrow_ends_an_untrapping_command() {
    let token = unique_token();
    let mut child = burrow_run().args(["--", "sleep", &token]).spawn().unwrap();
    assert!(eventually(RUN_TIMEOUT, || processes_with_arg(&token).len() >= 3));
    kill(Pid::from_raw(child.id() as i32), Signal::SIGINT).unwrap();
    assert_eq!(exit_code(wait_timeout(&mut child, RUN_TIMEOUT)), 130);
}

const SESSION_CHECK: &str = r#"read -r l < /proc/self/stat; set -- $l; if [ "$1" = "$6" ]; then echo leader; else echo member; fi"#;

#[test]
fn new_session_by_default_without_a_terminal() {
    assert_eq!(sh(&[], SESSION_CHECK).ok().trim(), "leader");
    assert_eq!(
        sh(&["--no-new-session"], SESSION_CHECK).ok().trim(),
        "member"
    );
    assert_eq!(sh(&["--new-session"], SESSION_CHECK).ok().trim(), "leader");
}

#[test]
fn kill_9_of_burrow_leaves_nothing_running() {
    let token = unique_token();
    let mut child = burrow_run().args(["--", "sleep", &token]).spawn().unwrap();
    // burrow, its pid 1 and sleep all carry the token.
    assert!(eventually(RUN_TIMEOUT, || processes_with_arg(&token).len() >= 3));
    child.kill().unwrap();
    child.wait().unwrap();
    assert!(
        eventually(Duration::from_secs(5), || processes_with_arg(&token)
            .is_empty()),
        "left running after kill -9 of burrow: {:?}",
        processes_with_arg(&token)
    );
}

/// Starts `sh -c 'burrow run FLAGS -- sleep TOKEN & wait'`, kills the sh
/// with SIGKILL and reports whether the sandbox went with it.
fn sandbox_dies_with_parent(flags: &str) -> bool {
    assert_unprivileged();
    let token = unique_token();
    let script = format!("\"$0\" run {flags} -- sleep {token} </dev/null & wait");
    let mut parent = std::process::Command::new("sh")
        .args(["-c", &script])
        .arg(burrow_bin())
        .spawn()
        .unwrap();
    assert!(eventually(RUN_TIMEOUT, || processes_with_arg(&token).len() >= 3));
    parent.kill().unwrap();
    parent.wait().unwrap();
    let gone = eventually(Duration::from_secs(3), || {
        processes_with_arg(&token).is_empty()
    });
    for pid in processes_with_arg(&token) {
        let _ = kill(Pid::from_raw(pid), Signal::SIGKILL);
    }
    gone
}

#[test]
fn die_with_parent_kills_the_sandbox_with_its_parent() {
    assert!(sandbox_dies_with_parent("--die-with-parent"));
    // Control: without the flag the sandbox outlives its parent.
    assert!(!sandbox_dies_with_parent(""));
}

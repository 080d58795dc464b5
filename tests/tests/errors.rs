//! Bad input and unusable environments: one clear line, a non-zero exit,
//! nothing left mounted.

use burrow_tests::*;

#[track_caller]
fn one_line_error(out: &Output, code: i32, needle: &str) {
    assert_eq!(out.code, code, "{out:?}");
    let lines: Vec<&str> = out.stderr.lines().collect();
    assert_eq!(lines.len(), 1, "expected one line: {out:?}");
    assert!(lines[0].starts_with("burrow: "), "{out:?}");
    assert!(
        lines[0].contains(needle),
        "{needle:?} not in {:?}",
        lines[0]
    );
}

#[test]
fn missing_bind_source() {
    let before = host_mount_count();
    let out = output(burrow_run().args(["--bind", "/nonexistent/src", "/tmp/x", "--", "true"]));
    one_line_error(
        &out,
        125,
        "--bind /nonexistent/src: No such file or directory",
    );
    assert_eq!(host_mount_count(), before);
}

#[test]
fn relative_destination() {
    let out = output(burrow_run().args(["--ro-bind", "/usr", "usr", "--", "true"]));
    one_line_error(&out, 125, "destination must be an absolute path");
}

#[test]
fn mount_point_on_the_read_only_root() {
    let out = output(burrow_run().args([
        "--read-only",
        "--bind",
        "/usr",
        "/no-such-dir-here",
        "--",
        "true",
    ]));
    one_line_error(&out, 125, "cannot create mount point /no-such-dir-here");
}

#[test]
fn command_not_found_and_not_executable() {
    let out = output(burrow_run().args(["--", "no-such-command-anywhere"]));
    one_line_error(
        &out,
        127,
        "cannot run 'no-such-command-anywhere' in the sandbox",
    );
    let dir = TempDir::new("noexec");
    std::fs::write(dir.join("script"), "#!/bin/sh\necho ran\n").unwrap(); // mode 0644
    let out = output(burrow_run().args(["--ro-bind", dir.s(), "/tmp/d", "--", "/tmp/d/script"]));
    one_line_error(
        &out,
        126,
        "cannot run '/tmp/d/script' in the sandbox: Permission denied",
    );
}

#[test]
fn rootfs_without_the_command() {
    let root = TempDir::new("rootfs");
    for d in ["proc", "dev", "tmp"] {
        std::fs::create_dir(root.join(d)).unwrap();
    }
    let out = output(burrow_run().args(["--rootfs", root.s(), "--", "/bin/sh", "-c", "true"]));
    one_line_error(
        &out,
        127,
        "cannot run '/bin/sh' in the sandbox: No such file or directory",
    );
}

#[test]
fn rootfs_that_is_not_a_directory() {
    let out = output(burrow_run().args(["--rootfs", "/etc/hostname", "--", "true"]));
    one_line_error(&out, 125, "not a directory");
}

#[test]
fn bad_json_status_fd() {
    let out = output(burrow_run().args(["--json-status", "97", "--", "true"]));
    one_line_error(&out, 125, "--json-status 97: file descriptor is not open");
}

#[test]
fn no_user_namespaces_left() {
    assert_unprivileged();
    // Inside a user namespace of our own, its root may lower the limit on
    // nested user namespaces to 0: burrow must then say so clearly.
    let script = "echo 0 > /proc/sys/user/max_user_namespaces || exit 99; exec \"$0\" run -- true";
    let out = output(
        std::process::Command::new("unshare")
            .args(["--user", "--map-root-user", "sh", "-c", script])
            .arg(burrow_bin()),
    );
    if out.code == 99 {
        skipped("cannot lower user.max_user_namespaces in a user namespace on this kernel");
        return;
    }
    one_line_error(&out, 125, "cannot create the sandbox's user namespace");
    assert!(out.stderr.contains("user.max_user_namespaces"), "{out:?}");
}

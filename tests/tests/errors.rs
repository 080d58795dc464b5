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
fn masks_and_read_only_paths_must_be_absolute_and_not_in_a_vm() {
    let out = output(burrow_run().args(["--mask", "proc/kcore", "--", "true"]));
    one_line_error(
        &out,
        125,
        "--mask proc/kcore: destination must be an absolute path",
    );
    let out = output(burrow_run().args(["--remount-ro", "/a/../b", "--", "true"]));
    one_line_error(&out, 125, "--remount-ro /a/../b");
    let out = output(burrow_run().args(["--umask", "0999", "--", "true"]));
    one_line_error(&out, 125, "--umask 0999: expected an octal mode like 0022");
    let out = output(burrow_run().args(["--vm", "--mask", "/proc/kcore", "--", "true"]));
    one_line_error(&out, 125, "--mask is not available with --vm");
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

/// Input that used to be taken: each is refused with one line and exit 125
/// (or clap's 2), and the command never runs.
#[test]
fn input_that_must_be_refused() {
    let dir = TempDir::new("refused");
    let marker = dir.join("ran");
    let ran = format!("touch {}", marker.display());
    let run = |flags: &[&str]| {
        let mut cmd = burrow_run();
        cmd.args(["--bind", dir.s(), dir.s()]).args(flags);
        cmd.args(["--", "sh", "-c", &ran]);
        output(&mut cmd)
    };
    let zero = dir.join("zero.toml");
    std::os::unix::fs::symlink("/dev/zero", &zero).unwrap();
    let ints = dir.join("ints.toml");
    std::fs::write(&ints, "command = [1, 2]\n").unwrap();
    let cases: Vec<(Vec<&str>, i32, &str)> = vec![
        (vec!["--rlimit", "nofile=-1"], 125, "\"-1\" is not a number"),
        (vec!["--hostname", "a\nb"], 125, "--hostname"),
        (
            vec!["--bind", "/no/such\nsrc", "/tmp/x"],
            125,
            "--bind /no/such\\nsrc",
        ),
        (
            vec!["--bind", "/tmp", "/tmp/a\nb"],
            125,
            "control character",
        ),
        (vec!["--bind", "/tmp", "/proc"], 125, "--bind onto /proc:"),
        (
            vec!["--bind", "/tmp", "/proc/sys"],
            125,
            "--bind onto /proc/sys:",
        ),
        (
            vec!["--tmpfs", "/sys/kernel"],
            125,
            "--tmpfs onto /sys/kernel:",
        ),
        (vec!["--bind", "/dev", "/dev"], 125, "--bind onto /dev:"),
        (
            vec!["--bind", "/tmp", "/dev/pts"],
            125,
            "--bind onto /dev/pts:",
        ),
        (
            vec!["--profile", zero.to_str().unwrap()],
            125,
            "not a regular file",
        ),
        (vec!["--seccomp", "/dev/zero"], 125, "not a regular file"),
        // Through symlinks of the root: /dev/fd -> /proc/self/fd,
        // /etc/mtab -> /proc/mounts (Debian's).
        (
            vec!["--tmpfs", "/dev/fd"],
            125,
            "mount onto /dev/fd: it leads into the sandbox's /proc",
        ),
        (
            vec!["--ro-bind", "/etc/hostname", "/etc/mtab"],
            125,
            "mount onto /etc/mtab: it leads into",
        ),
        (
            vec!["--ro-bind", "/proc", "/tmp/p"],
            125,
            "the host's /proc and /sys are not bound",
        ),
        (
            vec!["--tmpfs", "/x:size=8388608T", "--tmpfs", "/y:size=8388608T"],
            125,
            "their sizes add up to",
        ),
        (
            vec!["--profile", ints.to_str().unwrap()],
            125,
            "key 'command': expected a list of strings",
        ),
    ];
    for (flags, code, needle) in cases {
        let out = run(&flags);
        assert_eq!(out.code, code, "{flags:?}: {out:?}");
        let lines: Vec<&str> = out.stderr.lines().collect();
        assert_eq!(lines.len(), 1, "{flags:?}: expected one line: {out:?}");
        assert!(
            lines[0].contains(needle),
            "{flags:?}: {needle:?} not in {out:?}"
        );
        assert!(!marker.exists(), "{flags:?}: the command ran");
    }
    // clap's errors (exit 2): an unknown option before the command, and a
    // single-valued option given twice.
    for flags in [
        vec!["--bogus"],
        vec!["--net", "slirp", "--net", "host"],
        vec!["--hostname", "a", "--hostname", "b"],
    ] {
        let out = run(&flags);
        assert_eq!(out.code, 2, "{flags:?}: {out:?}");
        assert!(!marker.exists(), "{flags:?}: the command ran");
    }
    // After `--` everything is the command; allowed special targets work.
    let out = output(burrow_run().args(["--", "--bogus"]));
    assert_eq!(out.code, 127, "{out:?}");
    let out = output(burrow_run().args([
        "--ro-bind",
        "/etc/hostname",
        "/proc/uptime",
        "--ro-bind",
        "/sys",
        "/sys",
        "--tmpfs",
        "/dev/shm",
        "--",
        "cat",
        "/proc/uptime",
    ]));
    assert_eq!(out.ok(), std::fs::read_to_string("/etc/hostname").unwrap());
}

/// A seccomp profile naming a syscall this system does not know: one
/// warning naming it; the rest of the profile applies.
#[test]
fn unknown_syscall_in_a_profile_is_named() {
    let dir = TempDir::new("seccomp-unknown");
    let file = dir.join("p.json");
    std::fs::write(
        &file,
        r#"{"defaultAction":"SCMP_ACT_ALLOW","syscalls":[{"names":["mkdirat","mkdir","no_such_call"],"action":"SCMP_ACT_ERRNO"}]}"#,
    )
    .unwrap();
    let out = output(burrow_run().args([
        "--seccomp",
        file.to_str().unwrap(),
        "--",
        "sh",
        "-c",
        "mkdir /tmp/x 2>/dev/null || echo refused",
    ]));
    assert_eq!(out.ok(), "refused\n");
    assert_eq!(
        out.stderr.trim(),
        format!(
            "burrow: warning: seccomp profile {}: left out syscall this system does not know: no_such_call",
            file.display()
        )
    );
}

//! The sandbox's root: fresh /proc, /dev and /tmp, bind mounts in both
//! modes, and a read-only root on request.

use burrow_tests::*;

#[test]
fn read_only_root_refuses_writes() {
    let out = sh(&["--read-only"], "touch /etc/burrow-should-not-exist");
    assert_ne!(out.code, 0);
    assert!(out.stderr.contains("Read-only file system"), "{out:?}");
    assert!(!std::path::Path::new("/etc/burrow-should-not-exist").exists());
}

#[test]
fn tmp_is_private_and_writable() {
    let name = format!("burrow-private-{}", unique_token());
    let out = sh(
        &[],
        &format!("echo hi > /tmp/{name} && cat /tmp/{name} && ls -A /tmp | wc -l"),
    );
    assert_eq!(out.ok().lines().collect::<Vec<_>>(), ["hi", "1"]);
    assert!(
        !std::path::Path::new("/tmp").join(&name).exists(),
        "leaked to the host's /tmp"
    );
}

#[test]
fn bind_is_writable_and_writes_reach_the_host() {
    let dir = TempDir::new("rw");
    std::fs::write(dir.join("old"), "from host").unwrap();
    let out = sh(
        &["--bind", dir.s(), "/tmp/rw"],
        "cat /tmp/rw/old; echo from sandbox > /tmp/rw/new; rm /tmp/rw/old",
    );
    assert_eq!(out.ok().trim(), "from host");
    assert_eq!(
        std::fs::read_to_string(dir.join("new")).unwrap(),
        "from sandbox\n"
    );
    assert!(!dir.join("old").exists());
}

#[test]
fn ro_bind_refuses_writes_with_erofs_and_leaves_host_files_alone() {
    let dir = TempDir::new("ro");
    std::fs::write(dir.join("keep"), "precious").unwrap();
    let out = sh(
        &["--ro-bind", dir.s(), "/tmp/ro"],
        "cat /tmp/ro/keep; echo x > /tmp/ro/keep; rm -f /tmp/ro/keep; touch /tmp/ro/new; true",
    );
    assert_eq!(out.ok().trim(), "precious");
    assert_eq!(
        out.stderr.matches("Read-only file system").count(),
        3,
        "{out:?}"
    );
    assert_eq!(
        std::fs::read_to_string(dir.join("keep")).unwrap(),
        "precious"
    );
    assert!(!dir.join("new").exists());
}

#[test]
fn mounts_apply_in_command_line_order() {
    let a = TempDir::new("order-a");
    std::fs::write(a.join("f"), "a").unwrap();
    // A tmpfs after the bind hides it; before it, the bind lands inside.
    let hidden = sh(
        &["--bind", a.s(), "/tmp/x", "--tmpfs", "/tmp/x"],
        "ls -A /tmp/x | wc -l",
    );
    assert_eq!(hidden.ok().trim(), "0");
    let shown = sh(
        &["--tmpfs", "/tmp/x", "--bind", a.s(), "/tmp/x/a"],
        "cat /tmp/x/a/f",
    );
    assert_eq!(shown.ok().trim(), "a");
}

#[test]
fn tmpfs_covers_an_existing_directory() {
    let out = sh(
        &["--tmpfs", "/var"],
        "ls -A /var | wc -l; touch /var/new && echo written",
    );
    assert_eq!(out.ok().lines().collect::<Vec<_>>(), ["0", "written"]);
}

#[test]
fn dev_is_minimal_and_works() {
    let out = sh(
        &[],
        "ls /dev | tr '\\n' ' '; echo; echo discard > /dev/null && head -c 4 /dev/zero | wc -c",
    );
    let stdout = out.ok();
    for want in [
        "null", "zero", "full", "random", "urandom", "pts", "shm", "ptmx", "mqueue",
    ] {
        assert!(
            stdout.split_whitespace().any(|n| n == want),
            "/dev lacks {want}: {stdout}"
        );
    }
    for host_only in ["fuse", "kvm", "mem", "kmsg"] {
        assert!(
            !stdout.split_whitespace().any(|n| n == host_only),
            "/dev shows {host_only}"
        );
    }
    assert_eq!(stdout.lines().last().unwrap(), "4");
}

#[test]
fn proc_shows_only_the_sandbox() {
    let host_pid = std::process::id();
    let out = sh(
        &[],
        &format!("test -e /proc/{host_pid}/status && echo visible || echo hidden"),
    );
    // Our pid on the host is large; in the sandbox only pids 1..few exist.
    assert_eq!(out.ok().trim(), "hidden");
}

#[test]
fn chdir_and_default_working_directory() {
    assert_eq!(
        sh(&["--chdir", "/usr"], "pwd; echo $PWD").ok(),
        "/usr\n/usr\n"
    );
    let dir = TempDir::new("cwd");
    let out = output(burrow_run().current_dir(dir.path()).args([
        "--bind",
        dir.s(),
        dir.s(),
        "--",
        "pwd",
    ]));
    assert_eq!(out.ok().trim(), dir.s());
}

#[test]
fn environment_flags() {
    let out = output(
        burrow_run()
            .env("BURROW_T1", "one")
            .env("BURROW_T2", "two")
            .args([
                "--setenv",
                "BURROW_T3",
                "three",
                "--unsetenv",
                "BURROW_T2",
                "--",
                "sh",
                "-c",
                "echo ${BURROW_T1:-unset} ${BURROW_T2:-unset} ${BURROW_T3:-unset}",
            ]),
    );
    assert_eq!(out.ok().trim(), "one unset three");
    let out = output(burrow_run().env("BURROW_T1", "one").args([
        "--clearenv",
        "--chdir",
        "/",
        "--setenv",
        "A",
        "b",
        "--",
        "/usr/bin/env",
    ]));
    let mut vars: Vec<&str> = out.ok().lines().collect();
    vars.sort();
    assert_eq!(vars, ["A=b", "PWD=/"], "{out:?}");
}

/// `--mask` hides a file (it reads as empty) and a directory (empty, and
/// read-only even for root inside), on the sandbox's /proc as in the root,
/// as OCI's maskedPaths; a path that does not exist is skipped, not made.
#[test]
fn masked_paths_show_nothing() {
    let out = sh(
        &[
            AS_ROOT[0],
            AS_ROOT[1],
            "--mask",
            "/proc/cpuinfo",
            "--mask",
            "/proc/sys/dev",
            "--mask",
            "/etc/os-release",
            "--mask",
            "/no/such/path",
        ],
        "wc -c < /proc/cpuinfo; wc -c < /etc/os-release; ls -A /proc/sys/dev | wc -l; \
         touch /proc/sys/dev/x 2>/dev/null || echo refused; \
         test -e /no/such/path || echo absent; grep -q MemTotal /proc/meminfo && echo the-rest-shows",
    );
    assert_eq!(out.ok(), "0\n0\n0\nrefused\nabsent\nthe-rest-shows\n");
}

/// `--remount-ro` makes a path and the mounts below it read-only (OCI's
/// readonlyPaths), for root inside too, and leaves the rest writable.
#[test]
fn remount_ro_covers_the_mounts_below() {
    let out = sh(
        &[
            AS_ROOT[0],
            AS_ROOT[1],
            "--tmpfs",
            "/data",
            "--tmpfs",
            "/data/sub",
            "--remount-ro",
            "/data",
            "--remount-ro",
            "/proc/sys",
            "--remount-ro",
            "/no/such/path",
        ],
        "touch /data/f 2>/dev/null || echo data-refused; \
         touch /data/sub/f 2>/dev/null || echo sub-refused; \
         grep -q ' /proc/sys ro,' /proc/self/mountinfo && echo proc-sys-ro; \
         test -e /no/such/path || echo absent; touch /tmp/f && echo tmp-writable",
    );
    assert_eq!(
        out.ok(),
        "data-refused\nsub-refused\nproc-sys-ro\nabsent\ntmp-writable\n"
    );
}

/// `--umask` is the command's file mode creation mask (podman's flag).
#[test]
fn umask_sets_the_commands_mask() {
    let out = sh(
        &["--umask", "077"],
        "umask; touch /tmp/f; mkdir /tmp/d; stat -c %a /tmp/f /tmp/d",
    );
    assert_eq!(out.ok(), "0077\n600\n700\n");
}

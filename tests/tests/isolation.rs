//! Namespaces: every kind is new, hostname and network are the sandbox's own.

use burrow_tests::*;

const KINDS: [&str; 7] = ["user", "mnt", "pid", "ipc", "uts", "net", "cgroup"];

fn host_ns(kind: &str) -> String {
    std::fs::read_link(format!("/proc/self/ns/{kind}"))
        .unwrap()
        .to_string_lossy()
        .into_owned()
}

fn sandbox_ns(flags: &[&str]) -> Vec<String> {
    let script = KINDS
        .map(|k| format!("readlink /proc/self/ns/{k}"))
        .join("; ");
    sh(flags, &script)
        .ok()
        .lines()
        .map(str::to_string)
        .collect()
}

#[test]
fn every_namespace_is_new() {
    let inside = sandbox_ns(&[]);
    assert_eq!(inside.len(), KINDS.len());
    for (kind, ns) in KINDS.iter().zip(&inside) {
        assert_ne!(ns, &host_ns(kind), "{kind} namespace is the host's");
    }
}

#[test]
fn net_host_shares_only_the_network() {
    let inside = sandbox_ns(&["--net", "host"]);
    for (kind, ns) in KINDS.iter().zip(&inside) {
        if *kind == "net" {
            assert_eq!(ns, &host_ns(kind));
        } else {
            assert_ne!(ns, &host_ns(kind), "{kind} namespace is the host's");
        }
    }
}

#[test]
fn only_loopback_and_it_is_up() {
    let out = sh(&[], "ip -o link show; ip -o addr show lo");
    let stdout = out.ok();
    let links: Vec<&str> = stdout.lines().filter(|l| l.contains("link/")).collect();
    assert_eq!(links.len(), 1, "{stdout}");
    assert!(
        links[0].contains(": lo:") && links[0].contains("UP"),
        "{stdout}"
    );
    assert!(stdout.contains("inet 127.0.0.1/8"), "{stdout}");
}

#[test]
fn hostname_is_private() {
    let host = nix::unistd::gethostname().unwrap();
    let out = sh(&["--hostname", "sandbox-name"], "hostname");
    assert_eq!(out.ok().trim(), "sandbox-name");
    assert_eq!(nix::unistd::gethostname().unwrap(), host);
    // Without --hostname the sandbox starts with the host's name.
    assert_eq!(sh(&[], "hostname").ok().trim(), host.to_string_lossy());
}

#[test]
fn the_sandbox_cannot_undo_its_mounts() {
    // Root inside keeps podman's default set, without CAP_SYS_ADMIN (and
    // seccomp refuses mount calls): it can neither remount the read-only
    // root writable nor uncover what the sandbox's own mounts hide.
    let out = sh(
        &["--read-only"],
        "mount -o remount,bind,rw / 2>/dev/null && echo remounted; \
         umount /tmp 2>/dev/null && echo unmounted-tmp; \
         umount /proc 2>/dev/null && echo unmounted-proc; \
         mount -t tmpfs none /mnt 2>/dev/null && echo mounted; \
         grep CapBnd /proc/self/status",
    );
    assert_eq!(out.ok(), "CapBnd:\t00000000800405fb\n");
    let out = sh(&[], "umount /proc 2>/dev/null && echo unmounted; umount / 2>/dev/null && echo unmounted-root; echo done");
    assert_eq!(out.ok(), "done\n");
}

/// --sysctl sets what belongs to the sandbox's own IPC and network
/// namespaces, and leaves the host's values alone; a setting of the
/// host's (or net.* with the host's network) is refused by name.
#[test]
fn sysctls_are_the_sandboxes_own() {
    let read = |p: &str| std::fs::read_to_string(p).unwrap();
    let host = (
        read("/proc/sys/kernel/msgmax"),
        read("/proc/sys/fs/mqueue/msg_max"),
        read("/proc/sys/net/ipv4/ip_forward"),
    );
    let out = sh(
        &[
            "--sysctl",
            "kernel.msgmax=4321",
            "--sysctl",
            "fs.mqueue.msg_max=17",
            "--sysctl",
            "net.ipv4.ip_forward=1",
        ],
        "cat /proc/sys/kernel/msgmax /proc/sys/fs/mqueue/msg_max /proc/sys/net/ipv4/ip_forward",
    );
    assert_eq!(out.ok(), "4321\n17\n1\n");
    assert_eq!(
        host,
        (
            read("/proc/sys/kernel/msgmax"),
            read("/proc/sys/fs/mqueue/msg_max"),
            read("/proc/sys/net/ipv4/ip_forward"),
        )
    );
    for (args, why) in [
        (
            &["--sysctl", "kernel.pid_max=100"][..],
            "not a setting of the sandbox's own",
        ),
        (
            &["--sysctl", "vm.swappiness=1"][..],
            "not a setting of the sandbox's own",
        ),
        (
            &["--sysctl", "kernel.shm/../../x=1"][..],
            "not a sysctl name",
        ),
        (
            &["--sysctl", "net.ipv4.ip_forward=1", "--net", "host"][..],
            "--net host",
        ),
        (&["--sysctl", "kernel.msgmax"][..], "NAME=VALUE"),
    ] {
        let out = sh(args, "true");
        assert_eq!(out.code, 125, "{args:?}: {out:?}");
        assert!(
            out.stderr.contains("--sysctl") && out.stderr.contains(why),
            "{args:?}: {out:?}"
        );
    }
}

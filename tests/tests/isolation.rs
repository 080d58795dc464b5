//! Namespaces: every kind is new, hostname and network are the sandbox's own.

use burrow_tests::*;

const KINDS: [&str; 7] = ["user", "mnt", "pid", "ipc", "uts", "net", "cgroup"];

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

/// --userns: the sandbox's user namespace is made inside the one at PATH
/// (here one the user made with `unshare --user --map-root-user`, so
/// theirs), mapping its ids each to itself: the sandbox's ids are that
/// namespace's (its root, the user), setgroups stays as that namespace
/// has it (denied), and the kernel names it as the sandbox's parent. The namespace burrow runs in cannot be joined; it
/// does not go with the flags that give burrow's own maps.
#[test]
fn a_user_namespace_is_joined_by_path() {
    let t = TempDir::new("join-userns");
    let (owner_token, token) = (unique_token(), unique_token());
    let script = format!(
        r#"set -e
b={burrow}; d={dir}
unshare --user --map-root-user sleep 1000 {owner_token} &
owner=$!
trap 'kill $owner $sandbox 2>/dev/null' EXIT
while ! pid=$(pgrep -f "^sleep 1000 {owner_token}$"); do sleep 0.05; done
readlink /proc/$pid/ns/user | tr -dc 0-9; echo
$b run --die-with-parent --userns /proc/$pid/ns/user --bind $d $d -- sh -c   "cat /proc/self/uid_map /proc/self/gid_map /proc/self/setgroups; id -u; touch $d/made; > $d/ready; exec sleep 1000 {token}" &
sandbox=$!
while [ ! -e $d/ready ]; do sleep 0.05; done
lsns -t user -n -o PNS -p $(pgrep -f "^sleep 1000 {token}$")
stat -c %u $d/made"#,
        burrow = burrow_bin().display(),
        dir = t.s(),
    );
    assert_unprivileged();
    let out = output_within(
        std::process::Command::new("sh")
            .args(["-c", &script])
            .stdin(std::process::Stdio::null()),
        std::time::Duration::from_secs(60),
    );
    let lines: Vec<String> = out
        .stdout
        .lines()
        .map(|l| l.split_whitespace().collect::<Vec<_>>().join(" "))
        .collect();
    let me = nix::unistd::getuid().to_string();
    assert_eq!(lines.len(), 7, "{out:?}");
    // (setgroups stays denied, as `unshare` set it in the namespace
    // joined: the sandbox cannot shed the user's groups.)
    assert_eq!(lines[1..5], ["0 0 1", "0 0 1", "deny", "0"], "{out:?}");
    assert_eq!(lines[5], lines[0], "the parent user namespace: {out:?}");
    assert_eq!(lines[6], me, "{out:?}");

    // The one burrow runs in; not with burrow's own maps.
    let own = format!("/proc/{}/ns/user", std::process::id());
    let out = sh(&["--userns", &own], "true");
    assert_eq!(out.code, 125, "{out:?}");
    assert!(out.stderr.contains("--userns: cannot join it"), "{out:?}");
    let out = sh(&["--userns", &own, "--keep-id"], "true");
    assert_ne!(out.code, 0, "{out:?}");
    assert!(out.stderr.contains("--keep-id"), "{out:?}");
}

/// --pidns joins another sandbox's pid namespace by path: each sees the
/// other's processes, in one namespace; what the second's command leaves
/// running ends with it (its pid 1 is not the namespace's init, but ends
/// its own tree), and the first goes on. As --ipcns, joining needs
/// privileges over the namespace's owner: both run in a namespace made
/// by `unshare --map-root-user`. Its /proc is the namespace's, also for
/// one owned by the user namespace burrow runs in.
#[test]
fn a_pid_namespace_is_joined_by_path() {
    let t = TempDir::new("join-pidns");
    let (first_token, left_token, own_token) = (unique_token(), unique_token(), unique_token());
    let script = format!(
        r#"set -e
b={burrow}; d={dir}
$b run --die-with-parent --bind $d $d -- sh -c "> $d/ready; exec sleep 1000 {first_token}" &
first=$!
trap 'kill $first 2>/dev/null' EXIT
while [ ! -e $d/ready ]; do sleep 0.05; done
pid=$(pgrep -f "^sleep 1000 {first_token}$")
readlink /proc/$pid/ns/pid
$b run --pidns /proc/$pid/ns/pid --oom-score-adj 500 -- sh -c \
  'readlink /proc/self/ns/pid; cat /proc/self/oom_score_adj; for f in /proc/[0-9]*/cmdline; do tr "\0" " " < $f; echo; done | grep -c "^sleep 1000 {first_token} $"; sleep 1000 {left_token} & echo started'
pgrep -f "^sleep 1000 {left_token}$" | wc -l
pgrep -f "^sleep 1000 {first_token}$" | wc -l
unshare --pid --fork sleep 1000 {own_token} &
while ! other=$(pgrep -f "^sleep 1000 {own_token}$"); do sleep 0.05; done
$b run --pidns /proc/$other/ns/pid -- sh -c \
  'for f in /proc/[0-9]*/cmdline; do tr "\0" " " < $f; echo; done | grep -c "^sleep 1000 {own_token} $"'
kill -9 $other"#,
        burrow = burrow_bin().display(),
        dir = t.s(),
    );
    let out = in_unshared_userns(&script);
    let lines: Vec<&str> = out.stdout.lines().collect();
    assert_eq!(lines.len(), 8, "{out:?}");
    assert_eq!(lines[0], lines[1], "the pid namespace: {out:?}");
    // (The OOM score is set before pid 1 exists, which is never dumpable.)
    assert_eq!(lines[2..7], ["500", "1", "started", "0", "1"], "{out:?}");
    // One whose owner is the user namespace burrow runs in (made by
    // `unshare --pid` there).
    assert_eq!(lines[7], "1", "{out:?}");

    // As the user alone: not its to join.
    let own = format!("/proc/{}/ns/pid", std::process::id());
    let out = sh(&["--pidns", &own], "true");
    assert_eq!(out.code, 125, "{out:?}");
    assert!(out.stderr.contains("--pidns"), "{out:?}");
}

/// --ipcns, --utsns and --cgroupns join another sandbox's IPC, UTS and
/// cgroup namespaces by path (its command's /proc/PID/ns files), its
/// others still the sandbox's own. Joining needs privileges over the namespaces' owner, as
/// a rootless podman's runtime has in podman's user namespace: here both
/// sandboxes run in one made by `unshare --map-root-user`. As the user
/// alone, burrow says why it cannot; a file of another kind, or
/// --hostname with --utsns, is refused.
#[test]
fn ipc_uts_and_cgroup_namespaces_are_joined_by_path() {
    let t = TempDir::new("join-ns");
    let token = unique_token();
    let script = format!(
        r#"set -e
b={burrow}; d={dir}
$b run --die-with-parent --hostname first --bind $d $d -- sh -c \
  "readlink /proc/self/ns/ipc /proc/self/ns/cgroup > $d/ns.new; mv $d/ns.new $d/ns; exec sleep 1000 {token}" &
first=$!
trap 'kill $first 2>/dev/null' EXIT
while [ ! -e $d/ns ]; do sleep 0.05; done
pid=$(pgrep -f "^sleep 1000 {token}$")
cat $d/ns
readlink /proc/self/ns/cgroup
$b run --ipcns /proc/$pid/ns/ipc --utsns /proc/$pid/ns/uts --cgroupns /proc/$pid/ns/cgroup -- \
  sh -c 'readlink /proc/self/ns/ipc /proc/self/ns/cgroup; hostname; readlink /proc/self/ns/mnt'"#,
        burrow = burrow_bin().display(),
        dir = t.s(),
    );
    let out = in_unshared_userns(&script);
    let lines: Vec<&str> = out.stdout.lines().collect();
    assert_eq!(lines.len(), 7, "{out:?}");
    assert_eq!(lines[0], lines[3], "the IPC namespace: {out:?}");
    // (The first sandbox's cgroup namespace is its own.)
    assert_ne!(lines[1], lines[2], "{out:?}");
    assert_eq!(lines[1], lines[4], "the cgroup namespace: {out:?}");
    assert_eq!(lines[5], "first", "{out:?}");
    assert_ne!(lines[6], host_ns("mnt"));

    // As the user alone, and bad arguments.
    let own_net = format!("/proc/{}/ns/net", std::process::id());
    let out = sh(&["--ipcns", &own_net], "true");
    assert_eq!(out.code, 125, "{out:?}");
    assert!(
        out.stderr.contains("--ipcns") && out.stderr.contains("another kind"),
        "{out:?}"
    );
    let own_ipc = format!("/proc/{}/ns/ipc", std::process::id());
    let out = sh(&["--ipcns", &own_ipc], "true");
    assert_eq!(out.code, 125, "{out:?}");
    assert!(out.stderr.contains("--ipcns: cannot join it"), "{out:?}");
    let own_cgroup = format!("/proc/{}/ns/cgroup", std::process::id());
    let out = sh(&["--cgroupns", &own_cgroup], "true");
    assert_eq!(out.code, 125, "{out:?}");
    assert!(out.stderr.contains("--cgroupns: cannot join it"), "{out:?}");
    let own_uts = format!("/proc/{}/ns/uts", std::process::id());
    let out = sh(&["--utsns", &own_uts, "--hostname", "x"], "true");
    assert_ne!(out.code, 0, "{out:?}");
    assert!(out.stderr.contains("--hostname"), "{out:?}");
}

/// Runs `script` as the unprivileged account, as root of a user namespace
/// of its own (`unshare --map-root-user`): where joining another
/// sandbox's namespaces needs privileges over their owner.
fn in_unshared_userns(script: &str) -> Output {
    assert_unprivileged();
    output_within(
        std::process::Command::new("unshare")
            .args(["--user", "--map-root-user", "--", "sh", "-c", script])
            .stdin(std::process::Stdio::null()),
        std::time::Duration::from_secs(60),
    )
}

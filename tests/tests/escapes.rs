//! The escape catalogue: things untrusted code tries in order to get out
//! of the sandbox or to reach the host. Each test says what blocks the
//! attempt and, where a mechanism can be switched off, shows that the
//! attempt works without it (so that the test can fail).

use std::path::Path;
use std::process::Command;

use burrow_tests::*;

/// The raw system call numbers below are x86-64's.
fn x86_64() -> bool {
    let yes = std::env::consts::ARCH == "x86_64";
    if !yes {
        skipped("raw system call numbers in this test are x86-64's");
    }
    yes
}

/// Runs a Python snippet in the sandbox; it prints what happened.
fn py(flags: &[&str], code: &str) -> Output {
    output(burrow_run().args(flags).args(["--", "python3", "-c", code]))
}

/// `errno_of(call)`: a Python expression calling libc's `syscall` and
/// printing the errno name, or "ok".
const SYSCALL_PRELUDE: &str = "import ctypes, errno\n\
libc = ctypes.CDLL(None, use_errno=True)\n\
def sys(*a):\n    r = libc.syscall(*a)\n    return 'ok' if r >= 0 else errno.errorcode[ctypes.get_errno()]\n";

#[test]
fn mounting_a_filesystem_is_refused() {
    if !x86_64() {
        return;
    }
    // No CAP_SYS_ADMIN: the kernel refuses.
    let out = sh(
        &["--seccomp", "none"],
        "mount -t tmpfs none /mnt 2>&1; echo rc=$?",
    );
    assert!(
        out.ok().contains("rc=32") || out.ok().contains("rc=1"),
        "{out:?}"
    );
    assert!(
        out.ok().to_lowercase().contains("permission denied"),
        "{out:?}"
    );
    // With CAP_SYS_ADMIN kept, the strict profile still refuses mount(2).
    let out = py(
        &["--cap-add", "SYS_ADMIN", "--seccomp", "strict"],
        &format!("{SYSCALL_PRELUDE}print(sys(165, b'none', b'/mnt', b'tmpfs', 0, None))"),
    );
    assert_eq!(out.ok(), "EPERM\n");
    // Without seccomp the same call works: the profile is what blocks it.
    let out = py(
        &["--cap-add", "SYS_ADMIN", "--seccomp", "none"],
        &format!("{SYSCALL_PRELUDE}print(sys(165, b'none', b'/mnt', b'tmpfs', 0, None))"),
    );
    assert_eq!(out.ok(), "ok\n");
}

#[test]
fn disable_userns_forbids_new_user_namespaces() {
    // Blocked by the sandbox's user.max_user_namespaces = 0, which covers
    // clone3 too; seccomp is off here to show that it is not seccomp.
    let out = sh(&["--seccomp", "none"], "unshare -U true && echo created");
    assert_eq!(
        out.ok(),
        "created\n",
        "control: nested user namespaces work"
    );
    let out = sh(
        &["--seccomp", "none", "--disable-userns"],
        "unshare -U true 2>&1; echo rc=$?",
    );
    assert!(out.ok().contains("No space left on device"), "{out:?}");
    assert!(out.ok().ends_with("rc=1\n"), "{out:?}");
    // The default profile refuses CLONE_NEWUSER on its own.
    let out = sh(&[], "unshare -U true 2>&1; echo rc=$?");
    assert!(out.ok().contains("Operation not permitted"), "{out:?}");
}

#[test]
fn host_processes_cannot_be_signalled_or_traced() {
    if !x86_64() {
        return;
    }
    // The pid namespace: host processes do not exist inside.
    let me = std::process::id();
    let out = py(
        &["--seccomp", "none"],
        &format!(
            "{SYSCALL_PRELUDE}import os\n\
             try:\n    os.kill({me}, 0); print('signalled')\nexcept OSError as e: print(errno.errorcode[e.errno])\n\
             print(sys(101, 16, {me}, 0, 0))"
        ),
    );
    assert_eq!(out.ok(), "ESRCH\nESRCH\n");
}

#[test]
fn proc_sys_and_sysrq_trigger_are_not_writable() {
    // Owned by the host's root, who is not mapped: no write permission.
    let before = std::fs::read_to_string("/proc/sys/vm/swappiness").unwrap();
    let out = sh(
        &AS_ROOT,
        "echo 7 > /proc/sys/vm/swappiness 2>/dev/null && echo wrote-sysctl; \
         echo h > /proc/sysrq-trigger 2>/dev/null && echo wrote-sysrq; echo done",
    );
    assert_eq!(out.ok(), "done\n");
    assert_eq!(
        std::fs::read_to_string("/proc/sys/vm/swappiness").unwrap(),
        before
    );
}

#[test]
fn raw_sockets_need_a_capability_the_command_lacks() {
    let code = "import socket\n\
try:\n    socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_ICMP); print('raw')\n\
except PermissionError as e: print('refused', e.errno)";
    assert_eq!(py(&[], code).ok(), "refused 1\n");
    // Kept on purpose, it works (in the sandbox's own network namespace).
    assert_eq!(py(&["--cap-add", "NET_RAW"], code).ok(), "raw\n");
}

#[test]
fn tiocsti_cannot_type_into_the_terminal() {
    // The command runs on a terminal (no new session): seccomp refuses the
    // ioctl; without seccomp the kernel here lets it through.
    let script = |seccomp: &str| {
        let cmd = format!(
            "{} run --seccomp {seccomp} -- python3 -c \"import fcntl, termios\n\
             try:\n    fcntl.ioctl(0, termios.TIOCSTI, b'#'); print('INJECTED')\n\
             except OSError as e: print('REFUSED', e.errno)\"",
            burrow_bin().display()
        );
        let out = output(Command::new("script").args(["-qec", &cmd, "/dev/null"]));
        out.stdout
    };
    let refused = script("default");
    assert!(refused.contains("REFUSED 1"), "{refused:?}");
    let control = script("none");
    if control.contains("REFUSED") {
        skipped("this kernel refuses TIOCSTI itself (dev.tty.legacy_tiocsti = 0)");
    } else {
        assert!(control.contains("INJECTED"), "{control:?}");
    }
}

#[test]
fn keyrings_bpf_and_open_by_handle_at_are_refused() {
    if !x86_64() {
        return;
    }
    let calls = format!(
        "{SYSCALL_PRELUDE}\
         print('add_key', sys(248, b'user', b'k', b'v', 1, -2))\n\
         print('keyctl', sys(250, 0, -2, 0, 0, 0))\n\
         print('bpf', sys(321, 0, None, 0))\n\
         print('open_by_handle_at', sys(304, -100, None, 0))\n"
    );
    let out = py(&[], &calls);
    assert_eq!(
        out.ok(),
        "add_key EPERM\nkeyctl EPERM\nbpf EPERM\nopen_by_handle_at EPERM\n"
    );
    // Without the profile the keyring calls go through.
    let out = py(&["--seccomp", "none"], &calls);
    assert!(out.ok().starts_with("add_key ok\nkeyctl ok\n"), "{out:?}");
}

#[test]
fn vsock_is_refused_even_with_high_bits_in_the_family() {
    if !x86_64() {
        return;
    }
    // The family is an int: the filter must look at its low 32 bits only.
    let code = r#"
import ctypes, errno
libc = ctypes.CDLL(None, use_errno=True)
for fam in (40, 0x100000028, 1):
    r = libc.syscall(41, ctypes.c_long(fam), 1, 0)
    print(hex(fam), "ok" if r >= 0 else errno.errorcode[ctypes.get_errno()])
"#;
    assert_eq!(
        py(&[], code).ok(),
        "0x28 EPERM\n0x100000028 EPERM\n0x1 ok\n"
    );
}

#[test]
fn landlock_keeps_files_outside_the_allowed_set_unreadable() {
    assert_unprivileged();
    let home = std::env::var("HOME").expect("HOME");
    let secret = Path::new(&home).join(format!("burrow-secret-{}", unique_token()));
    std::fs::write(&secret, "secret\n").unwrap();
    let s = secret.display();
    let script = format!(
        "cat {s} 2>&1; ln -s {s} /tmp/link; cat /tmp/link 2>&1; cat /etc/hostname >/dev/null && echo system-readable"
    );
    let plain = sh(&[], &script);
    let locked = sh(&["--landlock"], &script);
    let allowed = sh(&["--landlock", "--allow-read", &home], &script);
    let _ = std::fs::remove_file(&secret);
    assert_eq!(plain.ok(), "secret\nsecret\nsystem-readable\n");
    assert_eq!(
        locked.ok(),
        format!(
            "cat: {s}: Permission denied\ncat: /tmp/link: Permission denied\nsystem-readable\n"
        )
    );
    assert_eq!(allowed.ok(), "secret\nsecret\nsystem-readable\n");
}

#[test]
fn landlock_refuses_tcp_ports_not_allowed() {
    // Nothing listens in the sandbox's network namespace: an allowed port
    // is refused by the peer (ECONNREFUSED), another one by Landlock
    // (EACCES) before any packet.
    let code = r#"
import socket, errno
for port in (1, 2):
    s = socket.socket()
    try:
        s.connect(("127.0.0.1", port)); print(port, "connected")
    except OSError as e:
        print(port, errno.errorcode[e.errno])
s = socket.socket()
try:
    s.bind(("127.0.0.1", 8080)); print("bound")
except OSError as e:
    print(errno.errorcode[e.errno])
"#;
    assert_eq!(
        py(&["--landlock", "--allow-connect", "1"], code).ok(),
        "1 ECONNREFUSED\n2 EACCES\nEACCES\n"
    );
    assert_eq!(
        py(
            &["--landlock", "--allow-connect", "1", "--allow-bind", "8080"],
            code
        )
        .ok(),
        "1 ECONNREFUSED\n2 EACCES\nbound\n"
    );
    assert_eq!(
        py(&[], code).ok(),
        "1 ECONNREFUSED\n2 ECONNREFUSED\nbound\n"
    );
}

#[test]
fn the_burrow_binary_cannot_be_reached_through_proc() {
    // CVE-2019-5736's way out: pid 1 is burrow's own binary. pid 1 is not
    // dumpable, so /proc/1/exe cannot be opened or followed, and a binary
    // being run cannot be written anyway. A copy the test user owns makes
    // sure it is not plain file permissions that stop the write.
    let dir = TempDir::new("exe");
    let copy = dir.join("burrow");
    std::fs::copy(burrow_bin(), &copy).unwrap();
    let before = std::fs::read(&copy).unwrap();
    let out = output(Command::new(&copy).args([
        "run",
        "--cap-add",
        "ALL",
        "--seccomp",
        "none",
        "--",
        "sh",
        "-c",
        "readlink /proc/1/exe || echo no-link; cat /proc/1/exe > /dev/null 2>&1 || echo no-read; \
         echo evil 2>/dev/null >> /proc/1/exe || echo no-write; \
         ls /proc/1/fd 2>/dev/null || echo no-fds",
    ]));
    assert_eq!(out.ok(), "no-link\nno-read\nno-write\nno-fds\n");
    assert_eq!(std::fs::read(&copy).unwrap(), before);
}

#[test]
fn device_nodes_cannot_be_made() {
    // The kernel refuses device nodes in a user namespace, even with
    // CAP_MKNOD kept.
    for flags in [&[][..], &["--cap-add", "MKNOD", "--seccomp", "none"][..]] {
        let out = sh(
            flags,
            "mknod /tmp/mem c 1 1 2>&1; test -e /tmp/mem && echo made; true",
        );
        assert!(
            out.ok().contains("Operation not permitted"),
            "{flags:?}: {out:?}"
        );
        assert!(!out.ok().contains("made"), "{flags:?}: {out:?}");
    }
}

#[test]
fn chown_to_an_unmapped_id_fails() {
    let out = sh(
        &["--cap-add", "CHOWN"],
        "touch /tmp/f && chown 4000000000 /tmp/f 2>&1; stat -c %u /tmp/f",
    );
    assert!(out.ok().contains("Invalid argument"), "{out:?}");
    assert!(out.ok().ends_with("0\n"), "{out:?}");
}

#[test]
fn a_bind_destination_swapped_for_a_symlink_stays_inside_the_root() {
    // The destination is resolved inside the new root (openat2
    // RESOLVE_IN_ROOT): a symlink to an absolute host path points into
    // the sandbox's own tree, so a race between check and mount can at
    // worst move the bind inside the sandbox, never onto the host.
    assert_unprivileged();
    let home = std::env::var("HOME").expect("HOME");
    let base = Path::new(&home).join(format!("burrow-race-{}", unique_token()));
    let (src, dst, target) = (base.join("src"), base.join("dst"), base.join("target"));
    for d in [&src, &dst, &target] {
        std::fs::create_dir_all(d).unwrap();
    }
    std::fs::write(src.join("from-src"), "").unwrap();
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let flipper = {
        let (dst, target, stop) = (dst.clone(), target.clone(), stop.clone());
        std::thread::spawn(move || {
            let tmp = dst.with_extension("tmp");
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                let _ = std::os::unix::fs::symlink(&target, &tmp);
                let _ = std::fs::remove_dir(&dst);
                let _ = std::fs::rename(&tmp, &dst); // a symlink now
                let _ = std::fs::remove_file(&dst);
                let _ = std::fs::create_dir(&dst); // a directory again
            }
        })
    };
    let mounts_before = host_mount_count();
    let mut outcomes = std::collections::BTreeSet::new();
    for _ in 0..15 {
        let out = sh(
            &["--bind", src.to_str().unwrap(), dst.to_str().unwrap()],
            &format!(
                "echo x > {t}/written 2>/dev/null; ls {d} 2>/dev/null | head -1",
                t = target.display(),
                d = dst.display()
            ),
        );
        // A run that fails says why in one line.
        if out.code != 0 {
            assert_eq!(out.stderr.lines().count(), 1, "{out:?}");
        }
        outcomes.insert(out.code);
    }
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    flipper.join().unwrap();
    let host_target: Vec<_> = std::fs::read_dir(&target).unwrap().collect();
    let _ = std::fs::remove_dir_all(&base);
    assert!(
        host_target.is_empty(),
        "a write meant for the sandbox reached the host's target: {outcomes:?}"
    );
    // Every run ran or failed cleanly because the destination was gone
    // at that moment.
    assert!(
        outcomes.iter().all(|c| *c == 0 || *c == 125),
        "{outcomes:?}"
    );
    assert_eq!(
        host_mount_count(),
        mounts_before,
        "a mount was left on the host"
    );
}

#[test]
fn a_bind_source_swapped_for_a_symlink_is_not_mounted() {
    // burrow checks a read-write bind's source before the sandbox exists
    // (and leaves it out of the union, so the sandbox cannot change the
    // union's files behind its server's back), then mounts it from inside.
    // A source swapped for a symlink in between would bind another
    // directory while that one stayed in the union: burrow compares what
    // it mounts with what it checked and refuses instead. The sign of the
    // swap getting through: B bound and B still in the union.
    assert_unprivileged();
    let home = std::env::var("HOME").expect("HOME");
    let base = Path::new(&home).join(format!("burrow-srcrace-{}", unique_token()));
    let (src, b) = (base.join("src"), base.join("b"));
    for d in [&src, &b] {
        std::fs::create_dir_all(d).unwrap();
    }
    std::fs::write(src.join("a-marker"), "").unwrap();
    std::fs::write(b.join("b-marker"), "").unwrap();
    // `src` and `other` trade places atomically: a directory one moment,
    // a (relative, so that it resolves wherever burrow looks) symlink to B
    // the next. Without burrow's check about a quarter of the runs here
    // bind B while B stays in the union.
    let other = base.join("src.other");
    std::os::unix::fs::symlink("b", &other).unwrap();
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let flipper = {
        let (src, other, stop) = (src.clone(), other.clone(), stop.clone());
        std::thread::spawn(move || {
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                nix::fcntl::renameat2(
                    nix::fcntl::AT_FDCWD,
                    &src,
                    nix::fcntl::AT_FDCWD,
                    &other,
                    nix::fcntl::RenameFlags::RENAME_EXCHANGE,
                )
                .unwrap();
                std::thread::sleep(std::time::Duration::from_micros(500));
            }
        })
    };
    let mut seen = std::collections::BTreeMap::new();
    for _ in 0..40 {
        let out = sh(
            &["--bind", src.to_str().unwrap(), "/tmp/mnt"],
            &format!(
                "ls /tmp/mnt; test -e {}/b-marker && echo b-in-union; true",
                b.display()
            ),
        );
        if out.code != 0 {
            assert_eq!(out.stderr.lines().count(), 1, "{out:?}");
        }
        let key = if out.stdout.contains("b-marker") && out.stdout.contains("b-in-union") {
            "SWAPPED SOURCE MOUNTED".to_string()
        } else {
            format!(
                "{}:{}{}",
                out.code,
                out.stdout.replace('\n', " "),
                out.stderr.trim()
            )
        };
        *seen.entry(key).or_insert(0) += 1;
    }
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    flipper.join().unwrap();
    let _ = std::fs::remove_dir_all(&base);
    assert!(!seen.contains_key("SWAPPED SOURCE MOUNTED"), "{seen:?}");
}

#[test]
fn ordinary_programs_run_under_the_default_profile() {
    let out = sh(
        &[],
        "python3 -c 'import threading, subprocess, json, socket, tempfile, multiprocessing as m\n\
t = threading.Thread(target=print, args=(\"thread\",)); t.start(); t.join()\n\
print(subprocess.run([\"echo\", \"child\"], capture_output=True, text=True).stdout.strip())\n\
a, b = socket.socketpair(); a.send(b\"pair\"); print(b.recv(4).decode())\n\
with m.Pool(2) as p: print(sum(p.map(abs, [-1, -2])))' && \
         cd /tmp && mkdir d && echo data > d/f && cp -r d e && tar cf t.tar e && rm -r e && tar xf t.tar && \
         cat e/f | sort | uniq | wc -l && ls /usr/bin | head -1 >/dev/null && date +%Y >/dev/null && echo coreutils-ok",
    );
    assert_eq!(out.ok(), "thread\nchild\npair\n3\n1\ncoreutils-ok\n");
    let strict = sh(
        &["--seccomp", "strict"],
        "cd /tmp && echo x > f && cat f && ls | wc -l",
    );
    assert_eq!(strict.ok(), "x\n1\n");
}

#[test]
fn inherited_descriptors_do_not_reach_the_command() {
    // A directory of the host's left open by the caller would let the
    // command out of its root (openat(fd, "..")): such descriptors are
    // closed for it unless --preserve-fds passes them on.
    let burrow = burrow_bin();
    let run = |flags: &str| {
        output(Command::new("bash").arg("-c").arg(format!(
            "exec 5</; {} run {flags} -- sh -c 'test -e /proc/self/fd/5 && echo has-5 || echo no-5'",
            burrow.display()
        )))
    };
    assert_eq!(run("").ok(), "no-5\n");
    assert_eq!(run("--preserve-fds 3").ok(), "has-5\n");
}

// What podman's default capability set (kept by root inside) could reach,
// and what stops it.

#[test]
fn chroot_escapes_end_at_the_sandbox_root() {
    // CAP_SYS_CHROOT: the classic escape (chroot into a subdirectory while
    // holding a descriptor above it, climb, chroot ".") climbs at most to
    // the sandbox's own root: the host's root is not in its mount
    // namespace at all. The marker is in the host's /tmp, which the
    // sandbox does not show.
    let dir = TempDir::new("chroot");
    let marker = dir.join("host-marker");
    std::fs::write(&marker, "host").unwrap();
    let code = format!(
        "import os\n\
         os.mkdir('/tmp/jail'); fd = os.open('/', os.O_RDONLY)\n\
         os.chroot('/tmp/jail'); os.fchdir(fd)\n\
         for _ in range(64): os.chdir('..')\n\
         os.chroot('.')\n\
         print('escaped' if os.path.exists({m:?}) else 'inside', sorted(os.listdir('/tmp')))",
        m = marker.to_str().unwrap()
    );
    let out = py(&[], &code);
    assert_eq!(out.ok(), "inside ['jail']\n");
    // The same climb without the chroot capability is refused outright.
    let out = py(
        &["--cap-drop", "SYS_CHROOT"],
        "import os\ntry:\n    os.chroot('/')\nexcept OSError as e: print(e.strerror)",
    );
    assert_eq!(out.ok(), "Operation not permitted\n");
}

#[test]
fn dac_override_does_not_open_the_hosts_files() {
    // CAP_DAC_OVERRIDE and CAP_FOWNER count only for files whose owner has
    // an id in the sandbox's user namespace: the host's root-owned files,
    // bound in directly (not through the union), stay closed to root
    // inside, as do the union's (its server reads as the caller).
    let mut flags = vec!["--ro-bind", "/etc", "/mnt", "--ro-bind", "/root", "/srv"];
    flags.extend(["--cap-add", "DAC_READ_SEARCH"]);
    let out = sh(
        &flags,
        "for f in /mnt/shadow- /mnt/gshadow- /etc/shadow- /etc/gshadow-; do \
           test -e $f && { head -c 1 $f >/dev/null 2>&1 && echo \"read $f\" || echo denied; }; done; \
         ls /srv >/dev/null 2>&1 && echo listed-root || echo denied; \
         chmod 644 /mnt/hostname 2>&1 | grep -c 'Read-only'; \
         touch /srv/x 2>/dev/null && echo wrote || echo denied",
    );
    let text = out.ok();
    assert!(
        !text.contains("read ") && !text.contains("listed") && !text.contains("wrote"),
        "{out:?}"
    );
    assert!(text.matches("denied").count() >= 3, "{out:?}");
}

#[test]
fn kill_and_setuid_reach_only_the_sandbox() {
    // CAP_KILL inside: `kill -9 -1` reaches the sandbox's own processes
    // only; the host's (the caller's own, same uid) live on.
    let token = unique_token();
    let mut host = Command::new("sleep").arg(&token).spawn().unwrap();
    let out = sh(&[], "sleep 1000 & kill -9 -1; wait; echo survived");
    assert_eq!(out.ok(), "survived\n");
    assert!(
        host.try_wait().unwrap().is_none(),
        "a host process was killed"
    );
    host.kill().unwrap();
    host.wait().unwrap();
    // CAP_SETUID/CAP_SETGID: only to ids the namespace maps.
    let out = py(
        &[],
        "import os\n\
         for call in (lambda: os.setuid(4000000000), lambda: os.setgid(4000000000),\n\
                      lambda: os.setgroups([4000000000])):\n\
         \x20   try:\n        call(); print('changed')\n    except OSError as e: print(e.strerror)",
    );
    assert_eq!(
        out.ok(),
        "Invalid argument\nInvalid argument\nInvalid argument\n"
    );
}

#[test]
fn file_capabilities_give_a_program_nothing() {
    // CAP_SETFCAP: root inside can give a program file capabilities, but
    // the root is mounted nosuid, no_new_privs is set, and root's
    // inheritable set is empty: a non-root process that runs it gets no
    // capability.
    let code = "import os, struct, subprocess\n\
        os.system('cp /usr/bin/cat /usr/local/bin/capcat')\n\
        # VFS_CAP_REVISION_2 with the effective bit: CAP_NET_RAW permitted.\n\
        os.setxattr('/usr/local/bin/capcat', 'security.capability', struct.pack('<IIIII', 0x02000001, 1 << 13, 0, 0, 0))\n\
        print(len(os.getxattr('/usr/local/bin/capcat', 'security.capability')) > 0)\n\
        out = subprocess.run(['setpriv', '--reuid', '1', '--regid', '1', '--clear-groups',\n\
            '/usr/local/bin/capcat', '/proc/self/status'], capture_output=True, text=True).stdout\n\
        print(' '.join(l.split()[1] for l in out.splitlines() if l.startswith(('CapInh', 'CapPrm', 'CapEff', 'CapAmb'))))";
    let out = py(&[], code);
    assert_eq!(
        out.ok(),
        "True\n0000000000000000 0000000000000000 0000000000000000 0000000000000000\n"
    );
}

/// Whether the kernel enforces Landlock (else says SKIPPED).
fn landlock_enforced() -> bool {
    // SAFETY: with LANDLOCK_CREATE_RULESET_VERSION (1) and no attributes
    // the call only returns the ABI version.
    let abi = unsafe {
        libc::syscall(
            libc::SYS_landlock_create_ruleset,
            std::ptr::null::<u8>(),
            0usize,
            1u32,
        )
    };
    if abi < 1 {
        skipped("Landlock is not enabled in this kernel");
    }
    abi >= 1
}

/// A script whose interpreter is `/proc/self/exe` (runc's CVE-2019-5736)
/// would have the process that execs it, burrow's own, run burrow's host
/// binary inside the sandbox, where `/proc/PID/exe` hands it to the
/// sandbox to open and, as here where the binary is the user's own (a
/// copy this account owns, as `cargo install` leaves it), overwrite.
/// Then the command may execute only files within its root: that exec
/// fails with EACCES, burrow's binary never runs there, and the file is
/// unchanged. The sandbox's own programs still run, and may still
/// re-execute themselves through /proc/self/exe.
#[test]
fn burrows_binary_cannot_be_run_inside_through_proc_self_exe() {
    assert_unprivileged();
    if !landlock_enforced() {
        return;
    }
    let t = TempDir::new("self-exe");
    let own = t.join("bin");
    std::fs::create_dir(&own).unwrap();
    for b in ["burrow", "burrowfs"] {
        std::fs::copy(burrow_bin().with_file_name(b), own.join(b)).unwrap();
    }
    let before = std::fs::read(own.join("burrow")).unwrap();
    let script = t.join("x");
    std::fs::write(&script, "#!/proc/self/exe\n").unwrap();
    std::fs::set_permissions(&script, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
    let run = |args: &[&str]| {
        output(
            Command::new(own.join("burrow"))
                .arg("run")
                .args(args)
                .stdin(std::process::Stdio::null()),
        )
    };
    let out = run(&["--bind", t.s(), "/w", "--", "/w/x"]);
    assert_eq!(out.code, 126, "{out:?}");
    assert!(
        out.stderr
            .contains("cannot run '/w/x' in the sandbox: Permission denied"),
        "{out:?}"
    );
    assert!(
        !out.stderr.to_lowercase().contains("usage"),
        "burrow ran inside: {out:?}"
    );
    // (Moves and links between directories still work: Landlock denies
    // them to a domain that does not allow them.)
    let out = run(&[
        "--",
        "sh",
        "-c",
        "mkdir /tmp/a /tmp/b && echo x > /tmp/a/f && mv /tmp/a/f /tmp/b/f && \
         ln /tmp/b/f /tmp/a/g && exec /proc/self/exe -c 'echo again'",
    ]);
    assert_eq!((out.code, out.stdout.as_str()), (0, "again\n"), "{out:?}");
    assert!(std::fs::read(own.join("burrow")).unwrap() == before);
}

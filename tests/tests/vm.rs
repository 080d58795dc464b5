//! `burrow run --vm`: the command in a QEMU micro-VM with its own kernel,
//! the sandbox's root shared over virtio-fs. Here KVM cannot boot stock
//! kernels (nested virtualisation), so these guests run under software
//! emulation: seconds each, one at a time.

use std::io::{Read, Write};
use std::net::TcpListener;
use std::path::Path;
use std::process::Stdio;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use burrow_tests::*;

/// One guest at a time: two emulated guests on two cores slow each other
/// past the boot watchdog.
static ONE_GUEST: Mutex<()> = Mutex::new(());

/// Holds the guest lock, or says SKIPPED when a VM cannot run here.
fn vm_or_skip() -> Option<std::sync::MutexGuard<'static, ()>> {
    let guard = ONE_GUEST.lock().unwrap_or_else(|e| e.into_inner());
    let cache = Path::new("/var/cache/burrow-guest");
    if !cache.join("vmlinuz").exists() || !cache.join("vm-modules/order").exists() {
        skipped("no guest kernel and modules (scripts/setup-host.sh --vm caches them)");
        return None;
    }
    if std::process::Command::new("qemu-system-x86_64")
        .arg("--version")
        .output()
        .is_err()
    {
        skipped("qemu-system-x86_64 is not installed");
        return None;
    }
    if !has_subordinate_ids() {
        skipped("--vm needs subordinate id ranges for this user");
        return None;
    }
    Some(guard)
}

fn vm_sh(flags: &[&str], script: &str) -> Output {
    output(
        burrow_run()
            .arg("--vm")
            .args(flags)
            .args(["--", "sh", "-c", script]),
    )
}

#[test]
fn output_and_exit_status_come_back_from_the_guest() {
    let Some(_g) = vm_or_skip() else { return };
    let out = vm_sh(&[], "echo hi; echo oops >&2; exit 7");
    assert_eq!(out.code, 7, "{out:?}");
    assert_eq!(out.stdout, "hi\n", "{out:?}");
    assert!(out.stderr.contains("oops"), "{out:?}");
}

#[test]
fn the_guest_runs_its_own_kernel() {
    let Some(_g) = vm_or_skip() else { return };
    let host = std::fs::read_to_string("/proc/sys/kernel/osrelease").unwrap();
    let out = vm_sh(&[], "uname -r; cat /proc/1/comm");
    let lines: Vec<&str> = out.ok().lines().collect();
    assert_eq!(lines.len(), 2, "{out:?}");
    assert_ne!(
        lines[0],
        host.trim(),
        "the guest reports the host's kernel: {out:?}"
    );
    // pid 1 is burrow's guest init, not the host's.
    assert_eq!(lines[1], "init", "{out:?}");
}

#[test]
fn a_file_written_in_the_guest_lands_in_the_upper_layer() {
    let Some(_g) = vm_or_skip() else { return };
    let dir = TempDir::new("vm-upper");
    let upper = dir.join("upper");
    // Root inside acts on the host's root-owned tree with the capabilities
    // it would need in a sandbox without a VM.
    let mut flags = AS_ROOT.to_vec();
    flags.extend(["--upper", upper.to_str().unwrap()]);
    let out = vm_sh(
        &flags,
        "echo from-the-vm > /etc/burrow-vm-test && mkdir -p /opt/made && cat /etc/burrow-vm-test",
    );
    assert_eq!(out.ok(), "from-the-vm\n");
    let written = upper.join("etc/burrow-vm-test");
    assert_eq!(std::fs::read_to_string(&written).unwrap(), "from-the-vm\n");
    assert!(upper.join("opt/made").is_dir());
    // Owned by the user who ran burrow (root in the guest is them).
    use std::os::unix::fs::MetadataExt;
    assert_eq!(
        std::fs::metadata(&written).unwrap().uid(),
        nix::unistd::getuid().as_raw()
    );
    // Nothing of it reached the host's /etc.
    assert!(!Path::new("/etc/burrow-vm-test").exists());
}

#[test]
fn stdin_reaches_the_command_and_its_end_is_seen() {
    let Some(_g) = vm_or_skip() else { return };
    let mut child = burrow_run()
        .args(["--vm", "--", "sh", "-c", "tr a-z A-Z; echo end"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stdin = child.stdin.take().unwrap();
    stdin.write_all(b"hello guest\n").unwrap();
    drop(stdin); // end of file: tr must finish
    let status = wait_timeout(&mut child, RUN_TIMEOUT);
    let mut out = String::new();
    child
        .stdout
        .take()
        .unwrap()
        .read_to_string(&mut out)
        .unwrap();
    assert_eq!(exit_code(status), 0);
    assert_eq!(out, "HELLO GUEST\nend\n");
}

#[test]
fn working_directory_environment_and_user_follow_the_flags() {
    let Some(_g) = vm_or_skip() else { return };
    let out = vm_sh(
        &[
            "--keep-id",
            "--chdir",
            "/usr",
            "--setenv",
            "BURROW_T",
            "x y",
            "--hostname",
            "guesty",
        ],
        "pwd; echo \"$BURROW_T\"; id -u; hostname",
    );
    let uid = nix::unistd::getuid().as_raw().to_string();
    assert_eq!(out.ok(), format!("/usr\nx y\n{uid}\nguesty\n"));
}

#[test]
fn a_missing_command_is_reported_with_127() {
    let Some(_g) = vm_or_skip() else { return };
    let out = output(burrow_run().args(["--vm", "--", "/no/such/program"]));
    assert_eq!(out.code, 127, "{out:?}");
    assert!(
        out.stderr.contains("cannot run '/no/such/program'"),
        "{out:?}"
    );
}

#[test]
fn the_guest_reaches_a_server_on_the_hosts_loopback() {
    let Some(_g) = vm_or_skip() else { return };
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    std::thread::spawn(move || {
        if let Ok((mut conn, _)) = listener.accept() {
            let _ = conn.write_all(b"hello from host\n");
        }
    });
    let code = format!(
        "import socket\n\
         s = socket.create_connection(('10.0.2.2', {port}), timeout=10)\n\
         print(s.recv(100).decode().strip())"
    );
    let out = output(burrow_run().args([
        "--vm",
        "--net",
        "slirp",
        "--allow-host-loopback",
        "--",
        "python3",
        "-c",
        &code,
    ]));
    assert_eq!(out.ok(), "hello from host\n");
}

#[test]
fn a_published_port_reaches_a_server_in_the_guest() {
    let Some(_g) = vm_or_skip() else { return };
    let port = {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    // The guest says when it listens; only then does the test connect, so
    // a slow software-emulated boot cannot outlast a fixed polling window.
    let code = "import socket\n\
                s = socket.socket(); s.bind(('0.0.0.0', 8000)); s.listen()\n\
                print('listening', flush=True)\n\
                c, _ = s.accept(); c.sendall(b'hello from guest\\n'); c.close()";
    let mut child = burrow_run()
        .args(["--vm", "--net", "slirp", "-p"])
        .arg(format!("127.0.0.1:{port}:8000"))
        .args(["--", "python3", "-c", code])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let mut line = String::new();
        let _ = std::io::BufRead::read_line(&mut std::io::BufReader::new(stdout), &mut line);
        let _ = tx.send(line);
    });
    let ready = rx.recv_timeout(Duration::from_secs(120));
    if ready.as_deref() != Ok("listening\n") {
        let _ = child.kill();
        let _ = child.wait();
        panic!("the guest never said it listens: {ready:?}");
    }
    let mut s = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
    s.set_read_timeout(Some(RUN_TIMEOUT)).unwrap();
    let mut got = String::new();
    let _ = s.read_to_string(&mut got);
    let status = wait_timeout(&mut child, RUN_TIMEOUT);
    assert_eq!(
        got, "hello from guest\n",
        "the greeting through the published port"
    );
    assert_eq!(exit_code(status), 0);
}

#[test]
fn a_guest_that_never_boots_is_reported_within_30_seconds() {
    let Some(_g) = vm_or_skip() else { return };
    // No serial port for its console and no init: the guest stays silent
    // for ever, as a KVM that cannot run it leaves it.
    let start = Instant::now();
    let out = output_within(
        burrow_run().args([
            "--vm",
            "--vm-kernel-args",
            "8250.nr_uarts=0 rdinit=/nonexistent panic=0",
            "--",
            "true",
        ]),
        Duration::from_secs(60),
    );
    let took = start.elapsed();
    assert_eq!(out.code, 125, "{out:?}");
    assert!(out.stderr.contains("the guest did not start"), "{out:?}");
    // Booted again in case it was a stuck timer calibration, then given up.
    assert!(out.stderr.contains("3 boots"), "{out:?}");
    assert!(out.stderr.contains("was silent for 3 s"), "{out:?}");
    assert!(took < Duration::from_secs(30), "reported after {took:?}");
}

#[test]
fn a_guest_kernel_panic_is_reported_at_once() {
    let Some(_g) = vm_or_skip() else { return };
    let start = Instant::now();
    let out = output(burrow_run().args([
        "--vm",
        "--vm-kernel-args",
        "rdinit=/nonexistent panic=0",
        "--",
        "true",
    ]));
    assert_eq!(out.code, 125, "{out:?}");
    assert!(out.stderr.contains("the guest kernel panicked"), "{out:?}");
    assert!(out.stderr.contains("Unable to mount root fs"), "{out:?}");
    // Not booted again once it panicked (a boot stuck before may have
    // been).
    assert!(start.elapsed() < Duration::from_secs(20), "{out:?}");
}

#[test]
fn kvm_is_used_or_its_failure_reported_quickly() {
    let Some(_g) = vm_or_skip() else { return };
    // Where KVM works this boots with it; where it cannot boot the guest
    // (here), burrow says so at once instead of hanging.
    let start = Instant::now();
    let out = vm_sh(&["--vm-accel", "kvm"], "echo up");
    if out.code == 0 {
        assert_eq!(out.stdout, "up\n");
    } else {
        assert_eq!(out.code, 125, "{out:?}");
        assert!(out.stderr.contains("kvm"), "{out:?}");
        assert!(start.elapsed() < Duration::from_secs(15), "{out:?}");
    }
    // And `auto` (the default) runs the guest either way.
    let out = vm_sh(&[], "echo up");
    assert_eq!(out.ok(), "up\n");
}

#[test]
fn bad_vm_settings_fail_before_anything_starts() {
    let out = output(burrow_run().args(["--vm", "--vm-kernel", "/no/kernel", "--", "true"]));
    assert_eq!(out.code, 125, "{out:?}");
    assert!(
        out.stderr.contains("no guest kernel at /no/kernel"),
        "{out:?}"
    );
    let out = output(burrow_run().args(["--vm", "--map-users", "none", "--", "true"]));
    assert_ne!(out.code, 0, "{out:?}");
    assert!(
        out.stderr.contains("--vm needs the subordinate id ranges"),
        "{out:?}"
    );
    let out = output(burrow_run().args(["--vm-accel", "tcg", "--", "true"]));
    assert_ne!(out.code, 0, "{out:?}");
    assert!(out.stderr.contains("--vm"), "{out:?}");
    let out = output(burrow_run().args(["--vm", "--vm-boot-timeout", "99999999999", "--", "true"]));
    assert_eq!(out.code, 125, "{out:?}");
    assert!(out.stderr.contains("between 1 and 3600"), "{out:?}");
    let out = output(burrow_run().args(["--vm", "--tmpfs", "/dev/x", "--", "true"]));
    assert_eq!(out.code, 125, "{out:?}");
    assert!(out.stderr.contains("hidden by the guest's own"), "{out:?}");
}

#[test]
fn a_signal_to_burrow_reaches_the_command_in_the_guest() {
    let Some(_g) = vm_or_skip() else { return };
    sigterm_to_burrow(&[], "TERM");
}

#[test]
fn a_sigterm_reaches_the_guest_command_as_the_stop_signal() {
    let Some(_g) = vm_or_skip() else { return };
    sigterm_to_burrow(&["--stop-signal", "SIGUSR1"], "USR1");
}

/// SIGTERM to `burrow run --vm FLAGS` once the guest's command has set a
/// trap for `trapped`: the trap runs and sets the status.
fn sigterm_to_burrow(flags: &[&str], trapped: &str) {
    let mut child = burrow_run()
        .arg("--vm")
        .args(flags)
        .args(["--", "sh", "-c"])
        .arg(format!(
            "trap 'echo got-{trapped}; exit 3' {trapped}; echo ready; sleep 60 & wait"
        ))
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let pid = nix::unistd::Pid::from_raw(child.id() as i32);
    let mut stdout = child.stdout.take().unwrap();
    // SIGTERM to burrow once the command has set its trap.
    let reader = std::thread::spawn(move || {
        let mut seen = Vec::new();
        let mut buf = [0u8; 256];
        while let Ok(n) = stdout.read(&mut buf) {
            if n == 0 {
                break;
            }
            let before = seen.starts_with(b"ready\n");
            seen.extend_from_slice(&buf[..n]);
            if !before && seen.starts_with(b"ready\n") {
                let _ = nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGTERM);
            }
        }
        String::from_utf8_lossy(&seen).into_owned()
    });
    let status = wait_timeout(&mut child, RUN_TIMEOUT);
    let out = reader.join().unwrap();
    assert_eq!(out, format!("ready\ngot-{trapped}\n"));
    assert_eq!(exit_code(status), 3);
}

#[test]
fn on_a_terminal_the_guest_command_gets_one_that_resizes_and_takes_ctrl_c() {
    use burrow_tests::pty::{read_until, resize_then_interrupt, spawn_on_pty};
    let Some(_g) = vm_or_skip() else { return };
    let (mut child, master) = spawn_on_pty(&[
        "--vm",
        "--",
        "bash",
        "-c",
        r#"trap 'echo "resized to $(stty size)"' WINCH; echo "ready $(stty size) on $(tty)"; read -r line; echo "read $line"; while :; do sleep 0.05; done"#,
    ]);
    let mut seen = String::new();
    read_until(&master, &mut seen, "ready 24 80 on /dev/pts/");
    // Line editing is the guest terminal's: the backspace erases.
    nix::unistd::write(&master, b"abcd\x7fe\r").unwrap();
    read_until(&master, &mut seen, "read abce");
    let status = resize_then_interrupt(&mut child, &master, &mut seen);
    assert_eq!(status, 130, "terminal showed {seen:?}");
}

#[test]
fn binds_and_tmpfs_reach_the_guest_as_they_reach_a_sandbox() {
    let Some(_g) = vm_or_skip() else { return };
    let dir = TempDir::new("vm-bind");
    std::fs::write(dir.join("in"), "from host\n").unwrap();
    let out = vm_sh(
        &[
            "--bind",
            dir.s(),
            "/mnt/rw",
            "--ro-bind",
            dir.s(),
            "/mnt/ro",
            "--tmpfs",
            "/mnt/scratch",
            "--ro-bind",
            dir.s(),
            "/tmp/work",
        ],
        "cat /mnt/rw/in; echo out > /mnt/rw/out; \
         echo no > /mnt/ro/refused 2>/dev/null || echo refused; \
         echo s > /mnt/scratch/s && cat /mnt/scratch/s; cat /tmp/work/in",
    );
    assert_eq!(out.ok(), "from host\nrefused\ns\nfrom host\n");
    assert_eq!(std::fs::read_to_string(dir.join("out")).unwrap(), "out\n");
    assert!(!dir.join("refused").exists());
}

#[test]
fn memory_and_cpus_size_the_vm() {
    let Some(_g) = vm_or_skip() else { return };
    let out = vm_sh(
        &["--memory", "256M", "--cpus", "2"],
        "nproc; sed -n 's/^MemTotal: *\\([0-9]*\\) kB/\\1/p' /proc/meminfo",
    );
    let text = out.ok();
    let mut lines = text.lines();
    assert_eq!(lines.next(), Some("2"), "{out:?}");
    let kb: u64 = lines.next().unwrap().parse().unwrap();
    // The kernel keeps some for itself: between 150 and 256 MiB remain.
    assert!((150 * 1024..=256 * 1024).contains(&kb), "MemTotal {kb} kB");
}

#[test]
fn the_command_in_the_guest_is_confined_as_in_a_sandbox() {
    let Some(_g) = vm_or_skip() else { return };
    let status = "grep -E '^(CapEff|CapBnd|CapAmb|NoNewPrivs|Seccomp):' /proc/self/status | tr -s '\\t ' ' '";
    // By default: podman's set for root, none ambient, no_new_privs,
    // seccomp filters.
    let out = vm_sh(&[], status);
    assert_eq!(
        out.ok(),
        "CapEff: 00000000800405fb\nCapBnd: 00000000800405fb\nCapAmb: 0000000000000000\n\
         NoNewPrivs: 1\nSeccomp: 2\n"
    );
    // Just one (CAP_NET_RAW is bit 13); --seccomp none loads none.
    let flags = [
        "--cap-drop",
        "ALL",
        "--cap-add",
        "NET_RAW",
        "--seccomp",
        "none",
    ];
    let out = vm_sh(&flags, status);
    assert_eq!(
        out.ok(),
        "CapEff: 0000000000002000\nCapBnd: 0000000000002000\nCapAmb: 0000000000000000\n\
         NoNewPrivs: 1\nSeccomp: 0\n"
    );
    // A command that is not root keeps it ambient.
    let out = vm_sh(&["--keep-id", "--cap-add", "NET_RAW"], status);
    assert!(
        out.ok().starts_with(
            "CapEff: 0000000000002000\nCapBnd: 0000000000002000\nCapAmb: 0000000000002000\n"
        ),
        "{out:?}"
    );
    // The default profile refuses what it refuses outside a VM (a new user
    // namespace without CAP_SYS_ADMIN); without seccomp the guest kernel
    // lets an unprivileged user make one.
    let userns = "unshare -U true 2>/dev/null && echo made || echo refused";
    assert_eq!(vm_sh(&[], userns).ok(), "refused\n");
    assert_eq!(vm_sh(&["--seccomp", "none"], userns).ok(), "made\n");
    // Landlock: a home directory is not among the readable paths.
    let home = std::env::var("HOME").unwrap();
    let script = format!("ls {home} >/dev/null 2>&1 && echo listed || echo denied");
    assert_eq!(vm_sh(&[], &script).ok(), "listed\n");
    let out = vm_sh(&["--landlock"], &script);
    assert_eq!(out.ok(), "denied\n", "{out:?}");
}

#[test]
fn nothing_is_left_running_after_burrow_is_killed() {
    let Some(_g) = vm_or_skip() else { return };
    let token = unique_token();
    // The token reaches the VMM's command line through the kernel's.
    let mut child = burrow_run()
        .args(["--vm", "--vm-kernel-args"])
        .arg(format!("burrow.test={token}"))
        .args(["--", "sh", "-c", "echo up; sleep 60"])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut first = [0u8; 3];
    child.stdout.take().unwrap().read_exact(&mut first).unwrap();
    assert_eq!(&first, b"up\n");
    // This user's VMM and virtiofsd processes (the VM tests run one at a
    // time), and the processes with the token on their command line.
    let uid = nix::unistd::getuid().as_raw();
    let count = || {
        let (mut vm, mut token_seen) = (0, 0);
        for e in std::fs::read_dir("/proc").unwrap().flatten() {
            use std::os::unix::fs::MetadataExt;
            if e.metadata().map(|m| m.uid()).ok() != Some(uid) {
                continue;
            }
            let comm = std::fs::read_to_string(e.path().join("comm")).unwrap_or_default();
            vm += usize::from(comm.starts_with("qemu-system") || comm.trim() == "virtiofsd");
            let cmdline = std::fs::read(e.path().join("cmdline")).unwrap_or_default();
            token_seen += usize::from(String::from_utf8_lossy(&cmdline).contains(&token));
        }
        (vm, token_seen)
    };
    assert_eq!(count().0, 2, "the VMM and virtiofsd run");
    assert!(count().1 >= 2, "burrow and the VMM carry the token");
    child.kill().unwrap(); // SIGKILL
    child.wait().unwrap();
    assert!(
        eventually(Duration::from_secs(5), || count() == (0, 0)),
        "the VMM outlived burrow"
    );
}

#[test]
fn megabytes_of_input_and_output_pass_without_a_stall() {
    let Some(_g) = vm_or_skip() else { return };
    let mut child = burrow_run()
        .args(["--vm", "--", "cat"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let data: Vec<u8> = (0..6u32 << 20).map(|i| (i % 251) as u8).collect();
    let mut stdin = child.stdin.take().unwrap();
    let input = data.clone();
    // Written while the output is read: neither side waits for the other.
    let writer = std::thread::spawn(move || stdin.write_all(&input));
    let mut out = Vec::new();
    child.stdout.take().unwrap().read_to_end(&mut out).unwrap();
    writer.join().unwrap().unwrap();
    let status = wait_timeout(&mut child, RUN_TIMEOUT);
    assert_eq!(exit_code(status), 0);
    assert!(
        out == data,
        "{} bytes came back of {}",
        out.len(),
        data.len()
    );
}

#[test]
fn a_reader_that_goes_away_ends_the_writer_with_sigpipe() {
    let Some(_g) = vm_or_skip() else { return };
    // `yes | head -1`, with burrow in the middle.
    let mut child = burrow_run()
        .args(["--vm", "--", "yes"])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut stdout = child.stdout.take().unwrap();
    let mut first = [0u8; 2];
    stdout.read_exact(&mut first).unwrap();
    assert_eq!(&first, b"y\n");
    drop(stdout);
    let status = wait_timeout(&mut child, RUN_TIMEOUT);
    assert_eq!(exit_code(status), 128 + libc::SIGPIPE);
}

#[test]
fn keep_id_with_limits_and_the_userns_ban() {
    let Some(_g) = vm_or_skip() else { return };
    let out = vm_sh(
        &["--keep-id", "--rlimit", "nofile=100", "--disable-userns"],
        "ulimit -n; id -u; cat /proc/sys/user/max_user_namespaces",
    );
    let uid = nix::unistd::getuid().as_raw();
    assert_eq!(out.ok(), format!("100\n{uid}\n0\n"));
}

//! Harness for burrow's integration tests.
//!
//! Every test drives the real `burrow` binary, which creates real
//! namespaces. The tests refuse to run as root: `make test` runs them as
//! the unprivileged `burrow-test` account (see scripts/run-tests.sh), so a
//! pass never rests on host root's privileges.

pub mod bundle;
pub mod differential;
pub mod oci;
pub mod overrun;
pub mod podman;
pub mod pty;
pub mod registry;
pub mod token;
pub mod unionops;

use overrun::Capture;
use std::os::fd::FromRawFd;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

/// How long any one sandbox run may take before the test fails.
pub const RUN_TIMEOUT: Duration = Duration::from_secs(30);

/// Path of the `burrow` binary under test: $BURROW_BIN, else the one cargo
/// built next to this test binary.
pub fn burrow_bin() -> PathBuf {
    if let Some(p) = std::env::var_os("BURROW_BIN") {
        return PathBuf::from(p);
    }
    let exe = std::env::current_exe().expect("current_exe");
    // target/<profile>/deps/<test> -> target/<profile>/burrow
    exe.parent()
        .and_then(Path::parent)
        .map(|d| d.join("burrow"))
        .expect("test binary lives in target/<profile>/deps")
}

/// Fails the test when running as root: the point is to test rootless use.
pub fn assert_unprivileged() {
    assert!(
        !nix::unistd::geteuid().is_root(),
        "integration tests must not run as root: use `make test`, which runs them as the \
         unprivileged burrow-test account"
    );
}

/// `burrow run` with stdin closed, ready for more arguments.
pub fn burrow_run() -> Command {
    assert_unprivileged();
    let mut cmd = Command::new(burrow_bin());
    cmd.arg("run").stdin(Stdio::null());
    cmd
}

/// What a finished run printed and returned.
#[derive(Debug)]
pub struct Output {
    pub code: i32,
    pub stdout: String,
    pub stderr: String,
}

impl Output {
    /// Asserts exit status 0 and returns stdout.
    #[track_caller]
    pub fn ok(&self) -> &str {
        assert_eq!(self.code, 0, "burrow failed: {self:?}");
        &self.stdout
    }
}

/// Exit code, or 128+N for a signal, as a shell reports it.
pub fn exit_code(status: ExitStatus) -> i32 {
    use std::os::unix::process::ExitStatusExt;
    status
        .code()
        .or_else(|| status.signal().map(|s| 128 + s))
        .unwrap_or(-1)
}

/// Runs `cmd` to completion, failing the test after RUN_TIMEOUT.
pub fn output(cmd: &mut Command) -> Output {
    output_within(cmd, RUN_TIMEOUT)
}

/// [`output`] with a time limit of its own. On overrunning it, the test
/// fails with what the command had printed so far and the processes it
/// had left (which are killed).
pub fn output_within(cmd: &mut Command, limit: Duration) -> Output {
    cmd.stdout(Stdio::piped()).stderr(Stdio::piped());
    let mut child = cmd.spawn().expect("spawn burrow");
    let out = Capture::start(child.stdout.take().unwrap());
    let err = Capture::start(child.stderr.take().unwrap());
    let Some(status) = overrun::wait_until(&mut child, limit) else {
        let tree = overrun::kill_tree(&mut child);
        let grace = Duration::from_secs(2);
        panic!(
            "burrow did not finish within {limit:?}\nprocesses (pid, state, wait channel, \
             command):\n{tree}\nstdout so far: {:?}\nstderr so far: {:?}",
            out.so_far(grace),
            err.so_far(grace)
        );
    };
    Output {
        code: exit_code(status),
        stdout: out.finish(),
        stderr: err.finish(),
    }
}

/// Waits for `child`, killing it (and what it started) and failing the
/// test after `limit`.
pub fn wait_timeout(child: &mut Child, limit: Duration) -> ExitStatus {
    match overrun::wait_until(child, limit) {
        Some(status) => status,
        None => {
            let tree = overrun::kill_tree(child);
            panic!("burrow did not finish within {limit:?}\nprocesses:\n{tree}");
        }
    }
}

/// Flags for a command that acts as the owner of the sandbox's files: a
/// part of the default set root inside keeps, named where a test relies
/// on it.
pub const AS_ROOT: [&str; 2] = [
    "--cap-add",
    "CHOWN,DAC_OVERRIDE,FOWNER,FSETID,SETUID,SETGID",
];

/// `burrow run [flags] -- sh -c script`.
pub fn sh(flags: &[&str], script: &str) -> Output {
    output(burrow_run().args(flags).args(["--", "sh", "-c", script]))
}

/// The test process's own namespace of `kind` (/proc/self/ns/KIND's
/// link, `kind:[inode]`): the host's, as the sandbox's are compared with.
pub fn host_ns(kind: &str) -> String {
    std::fs::read_link(format!("/proc/self/ns/{kind}"))
        .unwrap()
        .to_string_lossy()
        .into_owned()
}

/// Prints the skip line the test runner counts; the test then returns
/// without asserting.
pub fn skipped(reason: &str) {
    println!("SKIPPED: {reason}");
}

/// A token unique to this test process and call, for finding processes.
pub fn unique_token() -> String {
    static NEXT: AtomicU32 = AtomicU32::new(1);
    let n = NEXT.fetch_add(1, Ordering::Relaxed);
    // A valid `sleep` argument: 100000.<pid><n>
    format!("100000.{}{:03}", std::process::id(), n)
}

/// Host pids of processes whose command line contains `token` as an argument.
pub fn processes_with_arg(token: &str) -> Vec<i32> {
    let mut found = Vec::new();
    let Ok(dir) = std::fs::read_dir("/proc") else {
        return found;
    };
    for entry in dir.flatten() {
        let Ok(pid) = entry.file_name().to_string_lossy().parse::<i32>() else {
            continue;
        };
        let Ok(cmdline) = std::fs::read(entry.path().join("cmdline")) else {
            continue;
        };
        if cmdline
            .split(|&b| b == 0)
            .any(|arg| arg == token.as_bytes())
        {
            found.push(pid);
        }
    }
    found
}

/// A TCP port on 127.0.0.1 that was free a moment ago.
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free port")
        .port()
}

/// Polls `cond` every 20 ms until it holds or `limit` passes.
pub fn eventually(limit: Duration, mut cond: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + limit;
    loop {
        if cond() {
            return true;
        }
        if Instant::now() > deadline {
            return false;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// The burrowfs server whose working directory is `dir` (a mount made
/// from there, daemonized).
pub fn burrowfs_server_in(dir: &Path) -> Option<nix::unistd::Pid> {
    std::fs::read_dir("/proc").ok()?.flatten().find_map(|e| {
        let pid: i32 = e.file_name().to_str()?.parse().ok()?;
        let exe = std::fs::read_link(e.path().join("exe")).ok()?;
        let cwd = std::fs::read_link(e.path().join("cwd")).ok()?;
        (exe.file_name()? == "burrowfs" && cwd == dir).then(|| nix::unistd::Pid::from_raw(pid))
    })
}

/// `fusermount3 -u MOUNT`, then the wait for `server` to have exited (its
/// pidfd becoming readable): a mount made at once after an unmount would
/// otherwise race the old server's own clean-up there.
pub fn unmount_and_wait(mount: &Path, server: nix::unistd::Pid) {
    // SAFETY: pidfd_open takes plain integers; the descriptor it returns
    // is owned below.
    let raw = unsafe { libc::syscall(libc::SYS_pidfd_open, server.as_raw(), 0) };
    let out = output(Command::new("fusermount3").arg("-u").arg(mount));
    assert_eq!(out.code, 0, "fusermount3 -u: {out:?}");
    if raw < 0 {
        return; // already gone
    }
    // SAFETY: a new descriptor, owned here alone.
    let pidfd = unsafe { std::os::fd::OwnedFd::from_raw_fd(raw as i32) };
    let mut fds = [nix::poll::PollFd::new(
        std::os::fd::AsFd::as_fd(&pidfd),
        nix::poll::PollFlags::POLLIN,
    )];
    let n = nix::poll::poll(&mut fds, nix::poll::PollTimeout::from(30_000u16)).unwrap_or(0);
    assert_eq!(
        n, 1,
        "the burrowfs server {server} did not exit after its unmount"
    );
}

/// A fresh directory under $TMPDIR (or /tmp), removed on drop.
pub struct TempDir(PathBuf);

impl TempDir {
    pub fn new(tag: &str) -> TempDir {
        let base = std::env::var_os("TMPDIR").map_or_else(|| PathBuf::from("/tmp"), PathBuf::from);
        let dir = base.join(format!("burrow-{tag}-{}", unique_token()));
        std::fs::create_dir_all(&dir).expect("create temp dir");
        TempDir(dir)
    }

    /// A temporary directory in `base` instead of $TMPDIR.
    pub fn in_dir(base: &Path, tag: &str) -> TempDir {
        let dir = base.join(format!("burrow-{tag}-{}", unique_token()));
        std::fs::create_dir_all(&dir).expect("create temp dir");
        TempDir(dir)
    }

    pub fn path(&self) -> &Path {
        &self.0
    }

    pub fn join(&self, p: &str) -> PathBuf {
        self.0.join(p)
    }

    /// The path as a &str, for command lines.
    pub fn s(&self) -> &str {
        self.0.to_str().expect("utf-8 temp path")
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// The user this test runs as, and whether /etc/subuid grants it a range.
pub fn has_subordinate_ids() -> bool {
    let uid = nix::unistd::getuid();
    let name = nix::unistd::User::from_uid(uid)
        .ok()
        .flatten()
        .map(|u| u.name);
    let granted = |file: &str| {
        std::fs::read_to_string(file)
            .unwrap_or_default()
            .lines()
            .any(|l| {
                let who = l.split(':').next().unwrap_or("");
                Some(who) == name.as_deref() || who == uid.to_string()
            })
    };
    granted("/etc/subuid") && granted("/etc/subgid") && Path::new("/usr/bin/newuidmap").exists()
}

/// Number of mounts in this process's (host) mount namespace.
pub fn host_mount_count() -> usize {
    std::fs::read_to_string("/proc/self/mountinfo")
        .expect("read mountinfo")
        .lines()
        .count()
}

/// Runs `script` (sh) in a QEMU guest as an unprivileged user owning a
/// delegated cgroup v2 subtree, with burrow's binaries on its PATH
/// (tests/guest/boot.sh). `None` (after saying SKIPPED) when the harness,
/// QEMU or the cached guest kernel is missing.
pub fn in_guest(script: &str) -> Option<Output> {
    let boot = std::env::var_os("BURROW_GUEST_BOOT").map(PathBuf::from);
    let Some(boot) = boot.filter(|b| b.exists()) else {
        skipped("the guest harness is not staged (BURROW_GUEST_BOOT)");
        return None;
    };
    let kernel = std::env::var_os("BURROW_GUEST_CACHE")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("/var/cache/burrow-guest"))
        .join("vmlinuz");
    if !kernel.exists() {
        skipped("no cached guest kernel (scripts/setup-host.sh --tests fetches it)");
        return None;
    }
    if Command::new("qemu-system-x86_64")
        .arg("--version")
        .output()
        .is_err()
    {
        skipped("qemu-system-x86_64 is not installed");
        return None;
    }
    let dir = TempDir::new("guest");
    let file = dir.join("test.sh");
    std::fs::write(&file, script).unwrap();
    let bindir = burrow_bin().parent().unwrap().to_path_buf();
    // Software emulation: seconds to boot, more on a busy machine.
    Some(output_within(
        Command::new("bash").arg(&boot).arg(&bindir).arg(&file),
        Duration::from_secs(240),
    ))
}

/// A DNS server answering every A query with 192.0.2.99 (and no records
/// for other types).
pub fn serve_dns() -> u16 {
    let sock = std::net::UdpSocket::bind((std::net::Ipv4Addr::LOCALHOST, 0)).unwrap();
    let port = sock.local_addr().unwrap().port();
    std::thread::spawn(move || {
        let mut q = [0u8; 512];
        while let Ok((n, from)) = sock.recv_from(&mut q) {
            let q = &q[..n];
            let Some(zero) = q.iter().skip(12).position(|&b| b == 0) else {
                continue;
            };
            let end = 12 + zero + 5;
            let a_query = q.get(end - 4..end - 2) == Some(&[0, 1]);
            let mut r = Vec::new();
            r.extend(&q[0..2]);
            r.extend([0x81, 0x80, 0, 1, 0, a_query as u8, 0, 0, 0, 0]);
            r.extend(&q[12..end]);
            if a_query {
                r.extend([0xc0, 0x0c, 0, 1, 0, 1, 0, 0, 0, 60, 0, 4, 192, 0, 2, 99]);
            }
            let _ = sock.send_to(&r, from);
        }
    });
    port
}

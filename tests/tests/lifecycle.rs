//! Nothing survives burrow: `kill -9` of burrow at a random moment of its
//! start-up leaves no process of the caller (no union server, no network
//! helper, no VMM), no mount and no cgroup behind. One test in this binary,
//! since it looks at every process of the caller.

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use burrow_tests::*;

/// Kills per mode.
const KILLS: usize = 100;

/// A small xorshift generator: the kill times only need to be spread.
struct Rng(u64);

impl Rng {
    fn below(&mut self, n: u64) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0 % n
    }
}

/// Pids and command lines of this user's live processes other than this
/// one.
fn my_processes() -> Vec<(i32, String)> {
    let me = std::process::id() as i32;
    let uid = nix::unistd::getuid().as_raw().to_string();
    let mut out = Vec::new();
    for entry in std::fs::read_dir("/proc").unwrap().flatten() {
        let Ok(pid) = entry.file_name().to_string_lossy().parse::<i32>() else {
            continue;
        };
        let Ok(status) = std::fs::read_to_string(entry.path().join("status")) else {
            continue;
        };
        let real = status
            .lines()
            .find_map(|l| l.strip_prefix("Uid:"))
            .and_then(|v| v.split_whitespace().next().map(str::to_string));
        // A zombie is dead already: it only waits for the host's init
        // (which here reaps it seconds later) to collect its status.
        let zombie = status
            .lines()
            .find_map(|l| l.strip_prefix("State:"))
            .is_some_and(|v| v.trim_start().starts_with('Z'));
        if pid == me || zombie || real.as_deref() != Some(uid.as_str()) {
            continue;
        }
        let cmdline = std::fs::read(entry.path().join("cmdline")).unwrap_or_default();
        let text = String::from_utf8_lossy(&cmdline).replace('\0', " ");
        out.push((pid, text));
    }
    out
}

/// The cgroups burrow made in a delegated subtree, if this user has one.
fn burrow_cgroups() -> usize {
    let mut n = 0;
    let mut stack = vec![std::path::PathBuf::from("/sys/fs/cgroup/unified")];
    while let Some(dir) = stack.pop() {
        let Ok(list) = std::fs::read_dir(&dir) else {
            continue;
        };
        for e in list.flatten() {
            if e.file_type().is_ok_and(|t| t.is_dir()) {
                if e.file_name().to_string_lossy().starts_with("burrow-") {
                    n += 1;
                }
                stack.push(e.path());
            }
        }
    }
    n
}

fn vm_available() -> bool {
    let cache = Path::new("/var/cache/burrow-guest");
    cache.join("vmlinuz").exists()
        && cache.join("vm-modules/order").exists()
        && Command::new("qemu-system-x86_64")
            .arg("--version")
            .output()
            .is_ok()
        && has_subordinate_ids()
}

/// Starts `burrow run FLAGS -- sleep TOKEN`, kills it with SIGKILL after a
/// random delay below `window`, and waits until nothing of it is left.
/// Returns what was left after the wait, if anything.
fn kill_once(flags: &[String], window: Duration, rng: &mut Rng) -> Option<String> {
    let token = unique_token();
    let mut child = burrow_run()
        .args(flags)
        .args(["--", "sleep", &token])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    std::thread::sleep(Duration::from_micros(
        rng.below(window.as_micros() as u64 + 1),
    ));
    let _ = child.kill();
    let _ = child.wait();
    // Helpers die on their parent's death and pid 1 takes the sandbox
    // with it; QEMU's teardown can take a moment under emulation.
    if eventually(Duration::from_secs(20), || my_processes().is_empty()) {
        return None;
    }
    Some(format!("{:?}", my_processes()))
}

#[test]
fn nothing_survives_kill_9_at_any_moment_of_start_up() {
    let before = my_processes();
    if !before.is_empty() {
        // Not this test's to judge, but nothing it checks could be told
        // apart from them.
        panic!("processes of this user were running before the test: {before:?}");
    }
    let mounts = host_mount_count();
    let cgroups = burrow_cgroups();
    let seed = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_nanos() as u64
        | 1;
    eprintln!("kill times seeded with {seed}");
    let mut rng = Rng(seed);
    let ms = Duration::from_millis;
    let mut modes: Vec<(&str, Duration)> = vec![
        ("default", ms(50)),
        ("--net slirp", ms(50)),
        ("--net slirp --publish", ms(50)),
    ];
    if vm_available() {
        // The VMM, virtiofsd and QEMU start within the first second.
        modes.push(("--vm", ms(1000)));
    } else {
        skipped("--vm kill loop: no guest kernel, QEMU or subordinate ids here");
    }
    let mut report = Vec::new();
    for (mode, window) in modes {
        let mut left = Vec::new();
        for _ in 0..KILLS {
            let flags: Vec<String> = match mode {
                "default" => vec![],
                "--net slirp" => vec!["--net".into(), "slirp".into()],
                "--net slirp --publish" => vec![
                    "--net".into(),
                    "slirp".into(),
                    "--publish".into(),
                    format!("127.0.0.1:{}:80", free_port()),
                ],
                _ => vec!["--vm".into()],
            };
            if let Some(what) = kill_once(&flags, window, &mut rng) {
                left.push(what);
                // Clean up, so that the next rounds are judged alone.
                for (pid, _) in my_processes() {
                    let _ = nix::sys::signal::kill(
                        nix::unistd::Pid::from_raw(pid),
                        nix::sys::signal::Signal::SIGKILL,
                    );
                }
            }
        }
        eprintln!("{mode}: {KILLS} kills, {} left something", left.len());
        report.push((mode, left));
    }
    assert_eq!(
        host_mount_count(),
        mounts,
        "mounts left in the host's namespace"
    );
    assert_eq!(burrow_cgroups(), cgroups, "cgroups left behind");
    for (mode, left) in &report {
        assert!(
            left.is_empty(),
            "{mode}: {} kills left: {:?}",
            left.len(),
            left
        );
    }
}

//! The sandbox's in-memory filesystems share one budget: writing past it
//! anywhere (the root's private upper layer, /tmp, /dev/shm, /run, a
//! --tmpfs) is ENOSPC inside, and the host's shared memory grows by no
//! more than the budget. (The only test in this binary that
//! writes: it reads the host's Shmem, which another sandbox would move.)

use std::io::{BufRead, BufReader, Write};
use std::process::Stdio;

use burrow_tests::*;

fn host_shmem_kib() -> u64 {
    std::fs::read_to_string("/proc/meminfo")
        .unwrap()
        .lines()
        .find_map(|l| l.strip_prefix("Shmem:"))
        .and_then(|v| v.trim().strip_suffix("kB"))
        .and_then(|v| v.trim().parse().ok())
        .expect("Shmem in /proc/meminfo")
}

#[test]
fn tmpfs_mounts_share_one_budget_and_the_host_is_untouched() {
    let home = std::env::var("HOME").expect("HOME");
    // 96 MiB in all; 200 MiB asked for in each of five places.
    let script = format!(
        r#"
for f in /tmp/a /dev/shm/b /run/c {home}/burrow-storage-d /scratch/e /small/f; do
  err=$(dd if=/dev/zero of=$f bs=1M count=200 2>&1) && echo "$f: fit" && continue
  case "$err" in *"No space left on device"*) echo "$f: ENOSPC" ;; *) echo "$f: $err" ;; esac
done
echo full
read _
"#
    );
    let before = host_shmem_kib();
    let mut child = burrow_run()
        .args([
            "--tmpfs-budget",
            "96M",
            "--tmpfs",
            "/scratch",
            "--tmpfs",
            "/small:size=8M",
            "--",
            "sh",
            "-c",
            &script,
        ])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut lines = Vec::new();
    let mut out = BufReader::new(child.stdout.take().unwrap());
    loop {
        let mut line = String::new();
        if out.read_line(&mut line).unwrap() == 0 || line == "full\n" {
            break;
        }
        lines.push(line.trim().to_string());
    }
    // The sandbox still holds everything it wrote.
    let grown_mib = host_shmem_kib().saturating_sub(before) / 1024;
    child.stdin.take().unwrap().write_all(b"\n").unwrap();
    let status = wait_timeout(&mut child, RUN_TIMEOUT);
    let mut err = String::new();
    std::io::Read::read_to_string(&mut child.stderr.take().unwrap(), &mut err).unwrap();
    assert_eq!(exit_code(status), 0, "{lines:?} {err}");
    assert_eq!(lines.len(), 6, "{lines:?}");
    assert!(lines.iter().all(|l| l.ends_with(": ENOSPC")), "{lines:?}");
    assert!(
        grown_mib <= 96 + 8,
        "host shared memory grew by {grown_mib} MiB with a 96 MiB budget"
    );
    // (Something was written: the budget is not just refusing everything.)
    assert!(
        grown_mib >= 64,
        "host shared memory grew by only {grown_mib} MiB"
    );
}

#[test]
fn sizes_that_do_not_fit_the_budget_are_refused() {
    for (flags, needle) in [
        (
            &[
                "--tmpfs-budget",
                "64M",
                "--shm-size",
                "48M",
                "--tmpfs",
                "/x:size=32M",
            ][..],
            "--shm-size, --tmpfs /x: their sizes add up to",
        ),
        (
            &["--tmpfs", "/x:size=lots"],
            "--tmpfs /x:size=lots: size=lots: not a size",
        ),
        (
            &["--tmpfs", "/x:uid=0"],
            "--tmpfs /x:uid=0: uid=0: not a tmpfs option",
        ),
    ] {
        let out = output(burrow_run().args(flags).args(["--", "true"]));
        assert_eq!(out.code, 125, "{flags:?}: {out:?}");
        assert!(out.stderr.contains(needle), "{flags:?}: {out:?}");
    }
}

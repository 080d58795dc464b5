//! Who the command is inside the sandbox, and who burrow is on the host.

use burrow_tests::*;

fn host_ids() -> (u32, u32) {
    (
        nix::unistd::getuid().as_raw(),
        nix::unistd::getgid().as_raw(),
    )
}

#[test]
fn launcher_runs_unprivileged_on_the_host() {
    assert_unprivileged();
    let token = unique_token();
    let mut child = burrow_run()
        .args(["--", "sleep", &token])
        .spawn()
        .expect("spawn burrow");
    let burrow_pid = child.id();
    let seen = eventually(RUN_TIMEOUT, || processes_with_arg(&token).len() >= 3);
    let status = std::fs::read_to_string(format!("/proc/{burrow_pid}/status")).unwrap();
    let mut sandbox_status = Vec::new();
    for pid in processes_with_arg(&token) {
        if let Ok(s) = std::fs::read_to_string(format!("/proc/{pid}/status")) {
            sandbox_status.push(s);
        }
    }
    let _ = child.kill();
    let _ = child.wait();
    assert!(seen, "the sandbox never started");
    for s in std::iter::once(&status).chain(&sandbox_status) {
        let uids: Vec<u32> = s
            .lines()
            .find_map(|l| l.strip_prefix("Uid:"))
            .unwrap()
            .split_whitespace()
            .map(|v| v.parse().unwrap())
            .collect();
        assert!(
            uids.iter().all(|&u| u != 0),
            "a burrow process runs with host uid 0: {uids:?}"
        );
    }
}

#[test]
fn default_maps_the_caller_to_root() {
    let (uid, gid) = host_ids();
    let out = sh(&[], "id -u; id -g; cat /proc/self/uid_map");
    let lines: Vec<&str> = out.ok().lines().collect();
    assert_eq!(lines[0], "0");
    assert_eq!(lines[1], "0");
    let first: Vec<&str> = lines[2].split_whitespace().collect();
    assert_eq!(first, ["0", &uid.to_string(), "1"], "uid_map: {lines:?}");
    let _ = gid;
}

#[test]
fn keep_id_maps_the_caller_to_itself() {
    let (uid, gid) = host_ids();
    let out = sh(
        &["--keep-id"],
        "id -u; id -g; touch /tmp/f; stat -c %u:%g /tmp/f",
    );
    assert_eq!(
        out.ok().lines().collect::<Vec<_>>(),
        [uid.to_string(), gid.to_string(), format!("{uid}:{gid}")]
    );
}

#[test]
fn subordinate_ranges_make_chown_work() {
    if !has_subordinate_ids() {
        skipped("no /etc/subuid and /etc/subgid range for this user, or no newuidmap");
        return;
    }
    let out = sh(
        &["--cap-add", "CAP_CHOWN"],
        "touch /tmp/f && chown 1000:1000 /tmp/f && stat -c %u:%g /tmp/f",
    );
    assert_eq!(out.ok().trim(), "1000:1000");
    let map = sh(&[], "cat /proc/self/uid_map");
    assert!(
        map.ok().lines().count() >= 2,
        "no subordinate range mapped: {map:?}"
    );
}

#[test]
fn without_subordinate_ranges_chown_to_another_id_fails() {
    let out = sh(
        &["--map-users", "none", "--cap-add", "CAP_CHOWN"],
        "touch /tmp/f && chown 1000 /tmp/f",
    );
    assert_ne!(out.code, 0, "chown to an unmapped id succeeded: {out:?}");
    assert!(out.stderr.contains("Invalid argument"), "{out:?}");
    let map = sh(&["--map-users", "none"], "cat /proc/self/uid_map");
    assert_eq!(map.ok().lines().count(), 1);
}

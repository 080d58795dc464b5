//! Tests that need a kernel of their own: a QEMU guest (tests/guest) with
//! cgroup v2 and every controller, where an unprivileged user owns a
//! delegated subtree — which these build machines do not have.

use burrow_tests::*;

#[test]
fn the_guest_runs_burrow_as_a_user_with_a_delegated_cgroup() {
    let Some(out) = in_guest(
        "id -u\n\
         cat /proc/self/cgroup\n\
         cat /sys/fs/cgroup/cgroup.controllers\n\
         stat -c %U /sys/fs/cgroup/user.slice\n\
         burrow run --read-only --map-users none -- sh -c 'echo inside as $(id -u)'\n",
    ) else {
        return;
    };
    assert_eq!(
        out.ok(),
        "1000\n0::/user.slice/session\ncpuset cpu io memory hugetlb pids rdma misc\nuser\ninside as 0\n"
    );
}

/// The lines of `out` after the line `== name`, up to the next `==`.
fn section<'a>(out: &'a str, name: &str) -> Vec<&'a str> {
    out.lines()
        .skip_while(|l| *l != format!("== {name}"))
        .skip(1)
        .take_while(|l| !l.starts_with("== "))
        .collect()
}

fn json_number(json: &str, key: &str) -> Option<f64> {
    let at = json.find(&format!("\"{key}\": "))? + key.len() + 4;
    json[at..].split([',', '}']).next()?.trim().parse().ok()
}

#[test]
fn cgroup_limits_hold_in_a_delegated_subtree() {
    let Some(out) = in_guest(
        r#"B="timeout 60 burrow run --read-only --map-users none"
echo "== oom"
$B --memory 64M -- dd if=/dev/zero of=/dev/null bs=200M count=1 2>&1; echo "rc=$?"
echo "== pids"
$B --pids 20 --stats /tmp/pids.json -- sh -c 'for i in $(seq 60); do sleep 1 & done; wait' 2>/dev/null; echo "rc=$?"
cat /tmp/pids.json
echo responsive
echo "== cpus"
$B --cpus 0.2 --stats /tmp/cpu.json -- timeout 2 sh -c 'while :; do :; done'; echo "rc=$?"
cat /tmp/cpu.json
echo "== namespace"
$B --memory 1G -- cat /proc/self/cgroup
echo "== left"
ls /sys/fs/cgroup/user.slice | grep -c burrow-
$B --memory 1G -- sleep 30 &
sleep 2
kill -9 $(pidof burrow | tr ' ' '\n' | sort -n | head -n 1)
sleep 1
ls /sys/fs/cgroup/user.slice | grep -c burrow-
burrow gc
ls /sys/fs/cgroup/user.slice | grep -c burrow-
echo "== leaf"
mkdir /sys/fs/cgroup/user.slice/scope
sh -c 'echo $$ > /sys/fs/cgroup/user.slice/scope/cgroup.procs; exec burrow run --read-only --map-users none --memory 32M -- sleep 4' &
sleep 2
ls /sys/fs/cgroup/user.slice/scope | grep burrow- | sed 's/[0-9]//g'
cat /sys/fs/cgroup/user.slice/scope/burrow-*[0-9]/memory.max
wait
ls /sys/fs/cgroup/user.slice/scope | grep -c burrow-
cat /sys/fs/cgroup/user.slice/scope/cgroup.subtree_control | wc -w
true
"#,
    ) else {
        return;
    };
    let text = out.ok();
    // A memory hog is OOM-killed, and burrow says so.
    let oom = section(text, "oom");
    assert!(
        oom.contains(&"burrow: the command was killed by the OOM killer (memory.max=64M)"),
        "{oom:?}"
    );
    assert_eq!(oom.last(), Some(&"rc=137"));
    // A fork bomb stops at the limit; the guest goes on.
    let pids = section(text, "pids");
    assert_ne!(pids[0], "rc=0", "{pids:?}");
    assert_eq!(json_number(pids[1], "pids_peak"), Some(20.0), "{pids:?}");
    assert_eq!(pids[2], "responsive");
    // A fifth of a CPU for a busy loop of 2 s: about 0.4 s of CPU time,
    // where an unlimited loop takes 2 s. Under emulation the guest's 100 ms
    // bandwidth periods overrun by a few tens of milliseconds each (with
    // --cpus 0.5, 1.27 s and 1.53 s were seen for the 1 s expected), so the
    // bound is loose: what is asserted is that the limit holds, far from
    // the unlimited 2 s, not CFS's precision in a TCG guest.
    let cpus = section(text, "cpus");
    let used = json_number(cpus[1], "cpu_usage_usec").expect("cpu time") / 1e6;
    println!("--cpus 0.2: {used} s of CPU for a 2 s busy loop");
    assert!((0.2..=1.3).contains(&used), "{used} s of CPU: {cpus:?}");
    assert!(
        json_number(cpus[1], "memory_peak_bytes").is_some_and(|m| m > 0.0),
        "{cpus:?}"
    );
    assert_eq!(json_number(cpus[1], "oom_kills"), Some(0.0));
    // The sandbox's cgroup namespace is rooted at its own cgroup.
    assert_eq!(section(text, "namespace"), ["0::/"]);
    // None left after a normal exit; after kill -9, until `burrow gc`.
    assert_eq!(
        section(text, "left"),
        ["0", "1", "removed 1 stale cgroup", "0"],
        "{text}"
    );
    // burrow alone in a delegated cgroup (a systemd scope) steps down to a
    // leaf of it, puts the sandbox beside, and leaves it as it found it.
    assert_eq!(
        section(text, "leaf"),
        ["burrow-", "burrow-.supervisor", "33554432", "0", "0"],
        "{text}"
    );
}

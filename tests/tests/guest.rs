//! Tests that need a kernel of their own: a QEMU guest (tests/guest) with
//! cgroup v2 and every controller, where an unprivileged user owns a
//! delegated subtree — which these build machines do not have.

use burrow_tests::bundle::*;
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
$B --memory 1G -- sh -c 'cat /sys/fs/cgroup/memory.max; ls /sys/fs/cgroup | grep -c burrow-; touch /sys/fs/cgroup/x 2>&1 | grep -c Read-only'
echo "== joined"
mkdir /tmp/j
unshare --user --map-root-user sh -c '
$0 --memory 1G --bind /tmp/j /tmp/j -- sh -c "readlink /proc/self/ns/cgroup > /tmp/j/ns.new; mv /tmp/j/ns.new /tmp/j/ns; exec sleep 1000" &
for i in $(seq 300); do [ -e /tmp/j/ns ] && break; sleep 0.1; done
cat /tmp/j/ns
$0 --memory 1G --cgroupns /proc/$(pidof sleep)/ns/cgroup -- \
  sh -c "readlink /proc/self/ns/cgroup; sed s/[0-9]//g /proc/self/cgroup; cat /sys/fs/cgroup/memory.max 2>&1 | grep -c No.such"
$0 --memory 1G --cap-add SYS_ADMIN --cgroupns /proc/$(pidof sleep)/ns/cgroup -- true 2>&1 | grep -c "not with limits and CAP_SYS_ADMIN"
kill $(pidof sleep); wait' "$B"
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
    // It sees that cgroup at /sys/fs/cgroup, read-only: its own limits,
    // not the user's other cgroups.
    assert_eq!(section(text, "namespace"), ["0::/", "1073741824", "0", "1"]);
    // One joined (--cgroupns; both sandboxes in one user namespace, as an
    // engine's pod, where burrow has privileges over the namespace's
    // owner): the sandbox in a cgroup of its own, beside the namespace's
    // root (moved there by a file opened before joining, as nsdelegate
    // requires), and /sys/fs/cgroup not one of its own. Not with
    // CAP_SYS_ADMIN, which could remount it writable: no namespace root
    // of its own guards its limits there.
    let joined = section(text, "joined");
    assert_eq!(joined.len(), 5, "{text}");
    assert_eq!(joined[0], joined[1], "{text}");
    assert_eq!(joined[2..], ["::/../burrow-", "1", "1"], "{text}");
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

/// burrow-runtime where a cgroup v2 subtree is delegated to its user: a
/// container's `linux.resources` become its own cgroup's limits; `exec`
/// joins that cgroup; `pause` freezes it and `resume` thaws it (state
/// says "paused" between); `update` changes the limits of a running
/// container (from flags, and runtime-spec JSON on stdin, where -1 lifts
/// one); a memory hog is OOM-killed; `delete` of a paused container with
/// --force ends it and removes its cgroup.
#[test]
fn runtime_limits_pause_and_update_in_a_delegated_subtree() {
    // runc's rootless config.json, made here, for the guest's user 1000.
    let t = TempDir::new("guest-runtime");
    bundle(t.path(), |c| {
        c["root"]["readonly"] = true.into();
        c["process"]["args"] = serde_json::json!(["sh", "-c", "sleep 1000 & wait"]);
        c["linux"]["uidMappings"] =
            serde_json::json!([{ "containerID": 0, "hostID": 1000, "size": 1 }]);
        c["linux"]["gidMappings"] =
            serde_json::json!([{ "containerID": 0, "hostID": 1000, "size": 1 }]);
        c["linux"]["resources"] = serde_json::json!({
            "memory": { "limit": 67108864, "swap": 67108864 },
            "pids": { "limit": 30 },
            "cpu": { "quota": 50000, "period": 100000 },
        });
    });
    let config = std::fs::read_to_string(t.join("config.json")).unwrap();
    // The same, with a createRuntime hook that says it runs and waits:
    // the container's cgroup is made, its record not yet written.
    let mut held: serde_json::Value = serde_json::from_str(&config).unwrap();
    held["root"]["path"] = "/tmp/b/rootfs".into();
    held["hooks"] = serde_json::json!({ "createRuntime": [{
        "path": "/bin/sh", "args": ["sh", "-c", "touch /tmp/hooked; exec sleep 100"]
    }]});
    let Some(out) = in_guest(&format!(
        r#"mkdir -p /tmp/b/rootfs/bin /tmp/b/rootfs/proc /tmp/b/rootfs/dev /tmp/b/rootfs/sys /tmp/b/rootfs/tmp
cp /bin/busybox /tmp/b/rootfs/bin/
for a in sh sleep cat true dd; do ln -s busybox /tmp/b/rootfs/bin/$a; done
cat > /tmp/b/config.json <<'CONFIG'
{config}
CONFIG
mkdir /tmp/b3
cat > /tmp/b3/config.json <<'CONFIG'
{held}
CONFIG
R="timeout 60 burrow-runtime --root /tmp/state"
status() {{ $R state c1 | tr -d ' \n' | grep -o '"status":"[a-z]*"'; }}
echo "== create"
$R create --bundle /tmp/b --pid-file /tmp/c1.pid c1; echo "rc=$?"
CG=$(echo /sys/fs/cgroup/user.slice/burrow-runtime-*-c1)
cat $CG/memory.max $CG/memory.swap.max $CG/pids.max $CG/cpu.max $CG/cgroup.max.depth
$R start c1; echo "rc=$?"
$R exec c1 cat /proc/self/cgroup
$R exec c1 cat /sys/fs/cgroup/pids.max
grep -qx "$(cat /tmp/c1.pid)" $CG/cgroup.procs && echo "pid 1 is in it"
echo "== pause"
$R pause c1; echo "rc=$?"
status
grep frozen $CG/cgroup.events
$R exec c1 true 2>&1; echo "rc=$?"
$R resume c1; echo "rc=$?"
status
grep frozen $CG/cgroup.events
echo "== update"
$R update --memory 33554432 --pids-limit 10 c1; echo "rc=$?"
cat $CG/memory.max $CG/pids.max
echo '{{"memory": {{"limit": -1}}, "cpu": {{"quota": 25000}}}}' | $R update --resources - c1; echo "rc=$?"
cat $CG/memory.max $CG/cpu.max $CG/pids.max
echo "== own"
mkdir $CG/inner
for p in $(cat $CG/cgroup.procs); do echo $p > $CG/inner/cgroup.procs; done
echo +pids > $CG/cgroup.subtree_control
$R exec c1 cat /proc/self/cgroup
timeout 60 burrow-runtime --root /tmp/state2 create --bundle /tmp/b c1; echo "rc=$?"
ls -d /sys/fs/cgroup/user.slice/burrow-runtime-*-c1 | wc -l
timeout 60 burrow-runtime --root /tmp/state2 delete c1; echo "rc=$?"
echo "== delete"
$R pause c1
$R delete --force c1; echo "rc=$?"
ls /sys/fs/cgroup/user.slice | grep -c burrow-runtime
$R list -q | grep -c .
echo "== killed"
burrow-runtime --root /tmp/state create --bundle /tmp/b3 c3 &
while [ ! -e /tmp/hooked ]; do sleep 0.1; done
$R state c3 | tr -d ' \n' | grep -o '"status":"[a-z]*"'
ls -d /sys/fs/cgroup/user.slice/burrow-runtime-*-c3 | wc -l
kill -9 $!
wait
$R delete --force c3; echo "rc=$?"
ls -d /sys/fs/cgroup/user.slice/burrow-runtime-*-c3 2>/dev/null | wc -l
echo "== oom"
sed 's/"sleep 1000 & wait"/"dd if=\/dev\/zero of=\/dev\/null bs=200M count=1"/' /tmp/b/config.json > /tmp/b/oom.json
mv /tmp/b/oom.json /tmp/b/config.json
$R run --bundle /tmp/b c2 >/dev/null 2>&1; echo "rc=$?"
ls /sys/fs/cgroup/user.slice | grep -c burrow-runtime
true
"#
    )) else {
        return;
    };
    let text = out.ok();
    assert_eq!(
        section(text, "create"),
        [
            "rc=0",
            "67108864",
            "0",
            "30",
            "50000 100000",
            "32",
            "rc=0",
            "0::/",
            "30",
            "pid 1 is in it"
        ],
        "{text}"
    );
    assert_eq!(
        section(text, "pause"),
        [
            "rc=0",
            "\"status\":\"paused\"",
            "frozen 1",
            "burrow-runtime: cannot exec in container \"c1\": it is paused, not running",
            "rc=1",
            "rc=0",
            "\"status\":\"running\"",
            "frozen 0"
        ],
        "{text}"
    );
    assert_eq!(
        section(text, "update"),
        [
            "rc=0",
            "33554432",
            "10",
            "rc=0",
            "max",
            "25000 100000",
            "10"
        ],
        "{text}"
    );
    // A container that manages its cgroup itself (its processes in a
    // cgroup under its own, a controller enabled for it): exec joins the
    // command's. Another --root's container of the same ID has a cgroup
    // of its own.
    assert_eq!(
        section(text, "own"),
        ["0::/inner", "rc=0", "2", "rc=0"],
        "{text}"
    );
    assert_eq!(section(text, "delete"), ["rc=0", "0", "0"], "{text}");
    // A create killed before its record (in a createRuntime hook): the
    // cgroup made for it goes with `delete --force`.
    assert_eq!(
        section(text, "killed"),
        ["\"status\":\"creating\"", "1", "rc=0", "0"],
        "{text}"
    );
    assert_eq!(section(text, "oom"), ["rc=137", "0"], "{text}");
}

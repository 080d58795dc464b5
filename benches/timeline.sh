#!/usr/bin/env bash
# Where the milliseconds of `burrow run -- true` go, beside bwrap: RUNS
# traced runs of each (as the unprivileged account), kernel tracepoints
# recorded with `perf record -a`, and the medians of each phase printed:
# the launcher's exec to its clone of the namespaces, the FUSE server's
# INIT exchange, pivot_root, the command's exec, its exit and the
# launcher's exit; then the FUSE requests of one run by opcode and their
# round trips. Needs root (system-wide tracepoints) and perf.
#   benches/timeline.sh [RUNS] [-- BURROW-RUN-OPTIONS...]   (default 20, --map-users none)
# Tracing slows everything down a little: compare phases, not totals, with
# benches/startup.sh.
set -euo pipefail
cd "$(dirname "$0")/.."
RUNS=${1:-20}
shift || true
[ "${1:-}" = "--" ] && shift
OPTS=("$@")
[ ${#OPTS[@]} -gt 0 ] || OPTS=(--map-users none)
[ "$(id -u)" -eq 0 ] || { echo "timeline.sh: needs root for system-wide tracepoints" >&2; exit 1; }
if ! command -v perf >/dev/null || ! perf list 2>/dev/null | grep 'fuse:fuse_request_send' >/dev/null; then
  echo "timeline.sh: SKIPPED: perf or the kernel's fuse tracepoints are missing (apt-get install linux-perf)"
  exit 0
fi
. benches/common.sh
# The account's own PATH (as a login gives it), not the caller's: root's
# PATH holds directories the account may not search, each a FUSE lookup.
ENVV=(env "PATH=/usr/local/bin:/usr/bin:/bin")
EVENTS=sched:sched_process_exec,sched:sched_process_exit,fuse:fuse_request_send,fuse:fuse_request_end
EVENTS+=,syscalls:sys_enter_clone,syscalls:sys_enter_clone3,syscalls:sys_enter_pivot_root
EVENTS+=,syscalls:sys_enter_exit_group
trace() { # NAME COMMAND...
  local name=$1; shift
  for _ in $(seq "$RUNS"); do
    perf record -q -o "$STAGE/$name.data" -e "$EVENTS" -a -- "${RUNAS[@]}" "${ENVV[@]}" "$@" >/dev/null 2>&1
    perf script -i "$STAGE/$name.data" -F comm,pid,tid,cpu,time,event,trace 2>/dev/null
    echo "=== end of run"
  done > "$STAGE/$name.txt"
}
trace burrow "$STAGE/burrow" run "${OPTS[@]}" -- true
trace bwrap bwrap --unshare-all --ro-bind / / --dev /dev --proc /proc true

python3 - "$STAGE/burrow.txt" "$STAGE/bwrap.txt" "${OPTS[*]}" <<'PY'
import re, sys, statistics
LINE = re.compile(r'\s*(.+?)\s+(\d+)/(\d+)\s+\[(\d+)\]\s+([\d.]+):\s+(\S+?):?\s+(.*)')

def runs(path):
    run = []
    for l in open(path):
        if l.startswith("=== end of run"):
            yield run; run = []
            continue
        m = LINE.match(l)
        if m:
            comm, pid, tid, cpu, t, ev, rest = m.groups()
            run.append((float(t) * 1e3, comm, int(pid), int(tid), ev.split(":")[-1], rest))

def phases(run, launcher):
    """Milliseconds from the launcher's exec to each phase."""
    t0 = lpid = None; p = {}
    reqs = {}; ops = {}
    for t, comm, pid, tid, ev, rest in run:
        if ev == "sched_process_exec" and f"filename=" in rest and rest.split()[0].endswith("/" + launcher) and t0 is None:
            t0, lpid = t, pid
            continue
        if t0 is None:
            continue
        t -= t0
        if ev == "sys_enter_clone" and "clone_flags: 0x7e" in rest and "clone" not in p:
            p["clone"] = t  # CLONE_NEWUSER and the other namespaces
        elif ev == "fuse_request_send":
            m = re.search(r"req (\d+) opcode \d+ \((\w+)\)", rest)
            if m:
                reqs[m.group(1)] = (t, m.group(2))
                if m.group(2) == "FUSE_INIT":
                    p["INIT sent"] = t
        elif ev == "fuse_request_end":
            m = re.search(r"req (\d+)", rest)
            if m and m.group(1) in reqs:
                s, op = reqs.pop(m.group(1))
                ops.setdefault(op, []).append(t - s)
                if op == "FUSE_INIT":
                    p["INIT answered"] = t
        elif ev == "sys_enter_pivot_root":
            p["pivot_root"] = t  # the last one
        elif ev == "sched_process_exec" and rest.split()[0] == "filename=/usr/bin/true":
            p["command exec"] = t
        elif ev == "sched_process_exit" and comm == "true":
            p["command exit"] = t
        elif ev == "sched_process_exit" and pid == lpid and "group_dead=true" in rest:
            p["launcher exit"] = t
    return p, ops

order = ["clone", "INIT sent", "INIT answered", "pivot_root", "command exec", "command exit", "launcher exit"]
res = {}
for name, path in (("burrow", sys.argv[1]), ("bwrap", sys.argv[2])):
    ps, allops = [], []
    for run in runs(path):
        p, ops = phases(run, name)
        if "launcher exit" in p:
            ps.append(p); allops.append(ops)
    res[name] = (ps, allops)

print(f"\nmedians over {len(res['burrow'][0])} traced runs of `burrow run {sys.argv[3]} -- true` "
      f"and {len(res['bwrap'][0])} of bwrap, ms from the launcher's exec:")
print(f"  {'phase':16s} {'burrow':>8s} {'bwrap':>8s}")
for ph in order:
    cells = []
    for name in ("burrow", "bwrap"):
        v = [p[ph] for p in res[name][0] if ph in p]
        cells.append(f"{statistics.median(v):8.2f}" if v else f"{'':>8s}")
    print(f"  {ph:16s} {cells[0]} {cells[1]}")
ps, allops = res["burrow"]
if allops:
    print("\nFUSE requests per run (median count, median round trip in µs, send to answer):")
    names = sorted({op for ops in allops for op in ops}, key=lambda op: -statistics.median([len(o.get(op, [])) for o in allops]))
    total_n, total_t = [], []
    for ops in allops:
        total_n.append(sum(len(v) for v in ops.values()))
        total_t.append(sum(sum(v) for v in ops.values()))
    for op in names:
        n = statistics.median([len(o.get(op, [])) for o in allops])
        lat = [x for o in allops for x in o.get(op, [])]
        print(f"  {op:22s} {n:5.0f} {statistics.median(lat)*1e3:8.1f}")
    print(f"  {'all':22s} {statistics.median(total_n):5.0f}   waited {statistics.median(total_t):.2f} ms in all")
PY

#!/usr/bin/env bash
# seccomp's start-up cost: `burrow run --read-only --map-users none -- true`
# with the default profile (compiled once, then loaded from the cache) and
# with --seccomp none, interleaved run by run so that the machine's drift
# hits both alike, as an unprivileged user (burrow-test when run as root).
#   benches/seccomp.sh [RUNS]        (default 500 of each)
set -euo pipefail
cd "$(dirname "$0")/.."
RUNS=${1:-500}
. benches/common.sh

"${RUNAS[@]}" python3 - "$STAGE/burrow" "$RUNS" <<'PY'
import statistics, subprocess, sys, time
burrow, runs = sys.argv[1], int(sys.argv[2])
cmds = {
    "default": [burrow, "run", "--read-only", "--map-users", "none", "--", "true"],
    "strict": [burrow, "run", "--read-only", "--map-users", "none", "--seccomp", "strict", "--", "true"],
    "none": [burrow, "run", "--read-only", "--map-users", "none", "--seccomp", "none", "--", "true"],
}
times = {k: [] for k in cmds}
for i in range(runs + 20):
    for name, cmd in cmds.items():
        t = time.perf_counter()
        subprocess.run(cmd, check=True)
        if i >= 20:  # warm-up: the first run compiles and caches the profile
            times[name].append(time.perf_counter() - t)
base = statistics.median(times["none"])
print(f"\nseccomp start-up cost, {runs} interleaved runs each, median ms")
for name, ts in times.items():
    m = statistics.median(ts)
    print(f"  --seccomp {name:8s} {m*1e3:6.2f}   {m/base:.3f}x of none")
PY

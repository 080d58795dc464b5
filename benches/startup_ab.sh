#!/usr/bin/env bash
# `burrow run -- true` of two builds side by side: the working tree's and
# git revision REV's, run by run alternated (so that the machine's drift
# falls on both alike), as the unprivileged account; medians and the
# difference. For a change of a fraction of a millisecond, which separate
# hyperfine runs of each cannot tell from the drift between them.
#   benches/startup_ab.sh REV [RUNS] [-- BURROW-RUN-OPTIONS...]   (default 300)
set -euo pipefail
cd "$(dirname "$0")/.."
REV=${1:?usage: benches/startup_ab.sh REV [RUNS] [-- BURROW-RUN-OPTIONS...]}
shift
RUNS=300
if [ $# -gt 0 ] && [ "$1" != "--" ]; then RUNS=$1; shift; fi
[[ $RUNS =~ ^[1-9][0-9]*$ ]] || { echo "startup_ab.sh: RUNS must be a positive number, not $RUNS (options for burrow run go after --)" >&2; exit 2; }
[ "${1:-}" = "--" ] && shift
OPTS=("$@")
git rev-parse --verify -q "$REV^{commit}" >/dev/null || { echo "startup_ab.sh: no such revision: $REV" >&2; exit 2; }
. benches/common.sh
mv "$STAGE/burrow" "$STAGE/burrow-new"
# REV built in a worktree of its own, at a fixed path, into a target
# directory of its own (target/ab, kept for the next run, whose build
# reuses its dependencies; burrow's own crates are built again, their
# files being new): cargo names a workspace's crates by their path in it,
# so the two trees' builds must not share one.
WT=$PWD/target/ab-src
git worktree remove --force "$WT" >/dev/null 2>&1 || rm -rf "$WT"
git worktree prune
trap 'git worktree remove --force "$WT" >/dev/null 2>&1 || rm -rf "$WT"; git worktree prune; rm -rf "$STAGE"' EXIT
git worktree add -q --detach "$WT" "$REV"
(cd "$WT" && CARGO_TARGET_DIR="$OLDPWD/target/ab" cargo build --release --quiet -p burrow-sandbox)
cp target/ab/release/burrow "$STAGE/burrow-old"
chmod -R a+rX "$STAGE"
echo "REV $(git rev-parse --short "$REV") against the working tree ($(git rev-parse --short HEAD)$(git diff HEAD --quiet || echo ', modified')), burrow run ${OPTS[*]} -- true, $RUNS runs each"
"${RUNAS[@]}" env PATH=/usr/local/bin:/usr/bin:/bin python3 - "$STAGE" "$RUNS" "${OPTS[@]}" <<'PY'
import statistics, subprocess, sys, time
stage, runs, opts = sys.argv[1], int(sys.argv[2]), sys.argv[3:]
times = {"old": [], "new": []}
for i in range(runs + 20):
    for v in ("old", "new") if i % 2 else ("new", "old"):
        t = time.perf_counter()
        subprocess.run([f"{stage}/burrow-{v}", "run", *opts, "--", "true"], check=True)
        if i >= 20:  # the first 20 of each warm the caches
            times[v].append((time.perf_counter() - t) * 1e3)
for v, name in (("old", "REV"), ("new", "working tree")):
    t = times[v]
    print(f"  {name:13s} median {statistics.median(t):6.2f} ms  (mean {statistics.mean(t):.2f} ± {statistics.stdev(t):.2f})")
d = statistics.median(times["new"]) - statistics.median(times["old"])
print(f"  difference    {d:+6.2f} ms ({d / statistics.median(times['old']) * 100:+.1f}%)")
PY

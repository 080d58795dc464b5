#!/usr/bin/env bash
# Union filesystem benchmark: ../shared/bench/unionfs-bench.sh on kernel
# overlayfs, burrowfs and fuse-overlayfs, interleaved, ROUNDS rounds, as an
# unprivileged user (the burrow-test account when run as root). Prints each
# op's median in seconds and the ratios to kernel overlayfs.
#   benches/unionfs.sh [ROUNDS]        (default 3)
# PIN_CPU=N runs everything (the filesystems' servers and the operations) on
# CPU N alone: a FUSE round trip then needs no wake-up of another CPU.
set -euo pipefail
cd "$(dirname "$0")/.."
ROUNDS=${1:-3}
SHARED_BENCH=${SHARED_BENCH:-$(cd .. && pwd)/shared/bench/unionfs-bench.sh}
[ -f "$SHARED_BENCH" ] || { echo "unionfs.sh: $SHARED_BENCH not found (set SHARED_BENCH)" >&2; exit 1; }

WORK=/var/tmp/burrow-unionfs-bench
. benches/common-unionfs.sh
cp "$SHARED_BENCH" "$WORK/"
chmod a+rx "$WORK/unionfs-bench.sh"
if [ -n "${PIN_CPU:-}" ]; then RUNAS=(taskset -c "$PIN_CPU" "${RUNAS[@]}"); fi

declare -A CMD=(
  [overlay]=""
  [burrowfs]="$WORK/burrowfs"' -o lowerdir=$LOWER,upperdir=$UPPER,workdir=$WORK $MERGED'
  [fuse-overlayfs]='fuse-overlayfs -o lowerdir=$LOWER,upperdir=$UPPER,workdir=$WORK $MERGED'
)
RESULTS="$WORK/results.txt"; : > "$RESULTS"
for round in $(seq "$ROUNDS"); do
  for fs in overlay burrowfs fuse-overlayfs; do
    echo "round $round: $fs" >&2
    if [ "$fs" = overlay ]; then
      out=$("${RUNAS[@]}" bash "$WORK/unionfs-bench.sh" "$WORK/tree" overlay)
    else
      out=$("${RUNAS[@]}" bash "$WORK/unionfs-bench.sh" "$WORK/tree" fuse "${CMD[$fs]}")
    fi
    echo "$out" | awk -v fs="$fs" 'NF == 2 { print fs, $1, $2 }' >> "$RESULTS"
  done
done

python3 - "$RESULTS" <<'PY'
import sys, statistics
rows = [l.split() for l in open(sys.argv[1]) if l.strip()]
ops, data = [], {}
for fs, op, t in rows:
    if op not in ops: ops.append(op)
    data.setdefault((fs, op), []).append(float(t))
med = {k: statistics.median(v) for k, v in data.items()}
print(f"\n{'op':14s} {'overlay':>9s} {'burrowfs':>9s} {'fuse-ovl':>9s} {'bfs/ovl':>8s} {'fo/ovl':>7s} {'fo/bfs':>7s}")
for op in ops:
    o, b, f = med.get(("overlay", op)), med.get(("burrowfs", op)), med.get(("fuse-overlayfs", op))
    print(f"{op:14s} {o:9.3f} {b:9.3f} {f:9.3f} {b/o:8.2f} {f/o:7.2f} {f/b:7.2f}")
print(f"(medians of {len(data[('overlay', ops[0])])} interleaved rounds, seconds)")
PY

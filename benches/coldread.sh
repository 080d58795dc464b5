#!/usr/bin/env bash
# Reading every file of a 10k-file lower tree on a fresh mount: kernel
# overlayfs, burrowfs and fuse-overlayfs, interleaved, ROUNDS rounds, as an
# unprivileged user (the burrow-test account when run as root).
#   benches/coldread.sh [ROUNDS]       (default 5)
# Two cases per round: "cold", after the kernel's caches are dropped (as
# root only: echo 3 > /proc/sys/vm/drop_caches; without root the case is
# reported as SKIPPED), and "fresh", a new mount over a tree the host has
# cached (what a container's first read of its image costs on a warm host).
# Prints each case's median in seconds and the ratios.
set -euo pipefail
cd "$(dirname "$0")/.."
ROUNDS=${1:-5}
WORK=/var/tmp/burrow-coldread-bench
. benches/common-unionfs.sh
ROOT=0
[ "$(id -u)" -ne 0 ] || ROOT=1

# The tree: 100 directories of 100 files, sizes spread from 512 bytes to
# 64 KiB as in a system image (most small, some large), 10,000 files.
cat > "$WORK/make-tree.sh" <<'MAKE'
set -euo pipefail
cd "$1"
[ -e lower/.ready ] && exit 0
rm -rf lower; mkdir -p lower/usr
python3 - lower/usr <<'PY'
import os, random, sys
random.seed(18)
root = sys.argv[1]
for d in range(100):
    p = os.path.join(root, f"d{d}")
    os.mkdir(p)
    for f in range(100):
        size = int(512 * 2 ** random.uniform(0, 7))
        with open(os.path.join(p, f"f{f}"), "wb") as out:
            out.write(os.urandom(size))
PY
touch lower/.ready
MAKE
"${RUNAS[@]}" bash "$WORK/make-tree.sh" "$WORK"

# One read of every file through FS on a new mount; prints the seconds.
READ_ALL='s=$(date +%s.%N)
n=$(find $MERGED/usr -type f -print0 | xargs -0 cat | wc -c)
e=$(date +%s.%N)
[ "$n" -gt 0 ]
echo "$e - $s" | bc'

RESULTS="$WORK/results.txt"; : > "$RESULTS"
for round in $(seq "$ROUNDS"); do
  for fs in overlay burrowfs fuse-overlayfs; do
    echo "round $round: $fs" >&2
    if [ "$ROOT" = 1 ]; then
      sync; echo 3 > /proc/sys/vm/drop_caches
      echo "cold $fs $("${RUNAS[@]}" bash "$WORK/fresh-mount.sh" "$WORK" "$fs" "$READ_ALL")" >> "$RESULTS"
    fi
    echo "fresh $fs $("${RUNAS[@]}" bash "$WORK/fresh-mount.sh" "$WORK" "$fs" "$READ_ALL")" >> "$RESULTS"
  done
done
[ "$ROOT" = 1 ] || echo "cold: SKIPPED (dropping the kernel's caches needs root)"

python3 - "$RESULTS" "$ROUNDS" <<'PY'
import sys, statistics
med = {}
for line in open(sys.argv[1]):
    case, fs, t = line.split()
    med.setdefault((case, fs), []).append(float(t))
med = {k: statistics.median(v) for k, v in med.items()}
print(f"\n{'case':8s} {'overlay':>9s} {'burrowfs':>9s} {'fuse-ovl':>9s} {'bfs/ovl':>8s} {'fo/ovl':>7s} {'fo/bfs':>7s}")
for case in ("cold", "fresh"):
    if (case, "overlay") not in med:
        continue
    o, b, f = (med[(case, fs)] for fs in ("overlay", "burrowfs", "fuse-overlayfs"))
    print(f"{case:8s} {o:9.3f} {b:9.3f} {f:9.3f} {b/o:8.2f} {f/o:7.2f} {f/b:7.2f}")
print(f"(reading all 10,000 files, medians of {sys.argv[2]} interleaved rounds, seconds)")
PY

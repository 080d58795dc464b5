#!/usr/bin/env bash
# Reading one 512 MiB lower file on a fresh mount, twice (the second from
# the mount's page cache): kernel overlayfs, burrowfs and fuse-overlayfs,
# interleaved, ROUNDS rounds, as an unprivileged user (the burrow-test
# account when run as root). unionfs.sh's read-big and read-big-2 alone,
# with rounds enough for a spread of ±15% run to run on this VM.
#   benches/readbig.sh [ROUNDS]        (default 15)
# Prints each read's median in seconds and the ratios.
set -euo pipefail
cd "$(dirname "$0")/.."
ROUNDS=${1:-15}
[[ $ROUNDS =~ ^[1-9][0-9]*$ ]] || { echo "readbig.sh: ROUNDS must be a positive number, not $ROUNDS" >&2; exit 2; }
WORK=/var/tmp/burrow-readbig-bench
. benches/common-unionfs.sh

"${RUNAS[@]}" bash -c 'cd "$1"; [ -s lower/big ] && exit 0; mkdir -p lower
  head -c $((512 * 1024 * 1024)) /dev/urandom > lower/big.new && mv lower/big.new lower/big' sh "$WORK"

# Both reads through FS on a new mount; prints their seconds.
READ_BIG='for i in 1 2; do
  s=$(date +%s.%N); cat $MERGED/big > /dev/null; e=$(date +%s.%N)
  echo -n "$(echo "$e - $s" | bc) "
done; echo'

RESULTS="$WORK/results.txt"; : > "$RESULTS"
for round in $(seq "$ROUNDS"); do
  for fs in overlay burrowfs fuse-overlayfs; do
    echo "round $round: $fs" >&2
    echo "$fs $("${RUNAS[@]}" bash "$WORK/fresh-mount.sh" "$WORK" "$fs" "$READ_BIG")" >> "$RESULTS"
  done
done

python3 - "$RESULTS" "$ROUNDS" <<'PY'
import sys, statistics
runs = {}
for line in open(sys.argv[1]):
    fs, first, second = line.split()
    runs.setdefault(fs, []).append((float(first), float(second)))
print(f"\n{'read':10s} {'overlay':>9s} {'burrowfs':>9s} {'fuse-ovl':>9s} {'bfs/ovl':>8s} {'fo/ovl':>7s} {'fo/bfs':>7s}")
for i, name in enumerate(("read-big", "read-big-2")):
    o, b, f = (statistics.median(r[i] for r in runs[fs]) for fs in ("overlay", "burrowfs", "fuse-overlayfs"))
    print(f"{name:10s} {o:9.3f} {b:9.3f} {f:9.3f} {b/o:8.2f} {f/o:7.2f} {f/b:7.2f}")
for fs in ("burrowfs", "fuse-overlayfs"):
    q = statistics.quantiles([r[0] for r in runs[fs]], n=4)
    print(f"read-big quartiles, {fs}: {q[0]:.3f}-{q[2]:.3f}")
print(f"(medians of {sys.argv[2]} interleaved rounds, seconds)")
PY

#!/usr/bin/env bash
# burrowfs with FUSE passthrough (real root: CAP_SYS_ADMIN in the initial
# user namespace) beside kernel overlayfs and burrowfs without it: a
# 512 MiB lower file read through a fresh mount (the lower file in the page
# cache), then again. Interleaved rounds, medians, seconds.
#   benches/passthrough.sh [ROUNDS]    (as root; default 5)
set -euo pipefail
cd "$(dirname "$0")/.."
ROUNDS=${1:-5}
[ "$(id -u)" -eq 0 ] || { echo "passthrough.sh: needs real root (FUSE passthrough does)" >&2; exit 1; }
cargo build --release --quiet -p burrow-unionfs
W=${BENCH_DIR:-/var/tmp/burrow-passthrough-bench}
mkdir -p "$W/lower"
[ -s "$W/lower/big" ] || head -c $((512 * 1024 * 1024)) /dev/urandom > "$W/lower/big"
cat "$W/lower/big" > /dev/null
BFS=target/release/burrowfs
mount_fs() { # NAME MERGED
  rm -rf "$W/u" "$W/w"; mkdir -p "$W/u" "$W/w" "$2"
  case $1 in
    overlay) mount -t overlay overlay -o "lowerdir=$W/lower,upperdir=$W/u,workdir=$W/w" "$2" ;;
    burrowfs) "$BFS" -o "lowerdir=$W/lower,upperdir=$W/u,workdir=$W/w" "$2" ;;
    burrowfs-nopt) "$BFS" -o "lowerdir=$W/lower,upperdir=$W/u,workdir=$W/w,passthrough=off" "$2" ;;
  esac
}
t() { local s e; sync; s=$(date +%s.%N); cat "$1" > /dev/null; e=$(date +%s.%N); echo "$e - $s" | bc; }
RES="$W/results.txt"; : > "$RES"
for round in $(seq "$ROUNDS"); do
  for fs in overlay burrowfs burrowfs-nopt; do
    M="$W/m"
    mount_fs "$fs" "$M"
    echo "$fs read-big $(t "$M/big")" >> "$RES"
    echo "$fs read-big-2 $(t "$M/big")" >> "$RES"
    umount "$M"
  done
done
python3 - "$RES" <<'PY'
import sys, statistics
d = {}
for l in open(sys.argv[1]):
    fs, op, t = l.split(); d.setdefault((fs, op), []).append(float(t))
m = {k: statistics.median(v) for k, v in d.items()}
print(f"{'op':12s} {'overlay':>9s} {'burrowfs':>9s} {'no-pt':>9s} {'bfs/ovl':>8s} {'no-pt/ovl':>9s}")
for op in ("read-big", "read-big-2"):
    o, b, n = m[("overlay", op)], m[("burrowfs", op)], m[("burrowfs-nopt", op)]
    print(f"{op:12s} {o:9.3f} {b:9.3f} {n:9.3f} {b/o:8.2f} {n/o:9.2f}")
print(f"(medians of {len(d[('overlay', 'read-big')])} interleaved rounds, seconds, as root)")
PY

# Sourced by the union filesystem benchmarks, with WORK set to their
# working directory (BENCH_DIR overrides it): the machine set up, burrowfs
# built in release mode and staged in WORK, owned by the unprivileged
# account (burrow-test when run as root). Sets TEST_USER and RUNAS (the
# prefix that runs a command as that account). BURROWFS=PATH stages that
# binary instead (another build, for a before/after).
TEST_USER=${BURROW_TEST_USER:-burrow-test}
bash scripts/setup-host.sh --tests
cargo build --release --quiet -p burrow-unionfs
WORK=${BENCH_DIR:-$WORK}
mkdir -p "$WORK"
cp "${BURROWFS:-target/release/burrowfs}" "$WORK/burrowfs"
chmod a+rx "$WORK/burrowfs"
RUNAS=()
if [ "$(id -u)" -eq 0 ]; then RUNAS=(runuser -u "$TEST_USER" --); chown "$TEST_USER" "$WORK"; fi

# $WORK/fresh-mount.sh DIR FS SCRIPT: in DIR (which holds lower/), new
# upper, work and merged directories, FS (overlay, burrowfs or
# fuse-overlayfs; burrowfs is DIR/burrowfs) mounted on merged in a user
# and mount namespace of its own, SCRIPT run there by bash with $MERGED
# set, then the unmount; exits with SCRIPT's status.
cat > "$WORK/fresh-mount.sh" <<'MOUNT'
set -euo pipefail
cd "$1"
export FS=$2 SCRIPT=$3 LOWER=$PWD/lower UPPER=$PWD/upper WORK=$PWD/work MERGED=$PWD/merged
unshare -Ur rm -rf upper work merged; mkdir -p upper work merged
unshare -Urm bash -c '
  set -e
  case $FS in
    overlay) mount -t overlay overlay -o lowerdir=$LOWER,upperdir=$UPPER,workdir=$WORK,userxattr $MERGED ;;
    burrowfs) ./burrowfs -o lowerdir=$LOWER,upperdir=$UPPER,workdir=$WORK $MERGED ;;
    fuse-overlayfs) fuse-overlayfs -o lowerdir=$LOWER,upperdir=$UPPER,workdir=$WORK $MERGED 2>/dev/null ;;
    *) echo "fresh-mount.sh: no such filesystem: $FS" >&2; exit 2 ;;
  esac
  status=0; bash -ec "$SCRIPT" || status=$?
  fusermount3 -u $MERGED 2>/dev/null || umount $MERGED
  exit $status'
MOUNT
chmod a+r "$WORK/fresh-mount.sh"

# two_reads NAME1 NAME2 SETUP SCRIPT: SETUP run once in $WORK (as the
# unprivileged account, to make lower/ unless there), then ROUNDS rounds
# of SCRIPT on a fresh mount of kernel overlayfs, burrowfs and
# fuse-overlayfs in turn (fresh-mount.sh); SCRIPT prints two times in
# seconds, NAME1's and NAME2's. Prints each time's median, the ratios, and
# the quartiles of NAME1's.
two_reads() {
  local name1=$1 name2=$2 setup=$3 script=$4 results="$WORK/results.txt" round fs
  "${RUNAS[@]}" bash -c "cd \"\$1\"; $setup" sh "$WORK"
  : > "$results"
  for round in $(seq "$ROUNDS"); do
    for fs in overlay burrowfs fuse-overlayfs; do
      echo "round $round: $fs" >&2
      echo "$fs $("${RUNAS[@]}" bash "$WORK/fresh-mount.sh" "$WORK" "$fs" "$script")" >> "$results"
    done
  done
  python3 - "$results" "$ROUNDS" "$name1" "$name2" <<'PY'
import sys, statistics
runs = {}
for line in open(sys.argv[1]):
    fs, first, second = line.split()
    runs.setdefault(fs, []).append((float(first), float(second)))
print(f"\n{'read':12s} {'overlay':>9s} {'burrowfs':>9s} {'fuse-ovl':>9s} {'bfs/ovl':>8s} {'fo/ovl':>7s} {'fo/bfs':>7s}")
for i, name in enumerate(sys.argv[3:5]):
    o, b, f = (statistics.median(r[i] for r in runs[fs]) for fs in ("overlay", "burrowfs", "fuse-overlayfs"))
    print(f"{name:12s} {o:9.3f} {b:9.3f} {f:9.3f} {b/o:8.2f} {f/o:7.2f} {f/b:7.2f}")
for fs in ("burrowfs", "fuse-overlayfs") if int(sys.argv[2]) > 1 else ():
    q = statistics.quantiles([r[0] for r in runs[fs]], n=4)
    print(f"{sys.argv[3]} quartiles, {fs}: {q[0]:.3f}-{q[2]:.3f}")
print(f"(medians of {sys.argv[2]} interleaved rounds, seconds)")
PY
}

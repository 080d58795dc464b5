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

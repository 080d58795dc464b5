#!/usr/bin/env bash
# What one FUSE round trip costs on this machine, and how much of it is the
# wake-up of another CPU: as an unprivileged user (burrow-test when run as
# root), prints
#   - a pipe ping-pong between two processes on different CPUs and on one
#     CPU (the same two wake-ups a FUSE request and its reply need);
#   - reading an extended attribute the file does not have, N times, on
#     kernel overlayfs and on burrowfs (one GETXATTR round trip each: the
#     kernel caches no attributes of that kind), free to run anywhere and
#     with everything on CPU 0;
#   - reading 4 KiB of a file the server holds open, after dropping the
#     mount's cached page, N times, on burrowfs and fuse-overlayfs (one
#     READ round trip each, with the server's read of the layer's file:
#     the least a first read of a small file costs beyond its open).
#   benches/roundtrip.sh [N]      (default 20000)
set -euo pipefail
cd "$(dirname "$0")/.."
N=${1:-20000}
. benches/common.sh
cargo build --release --quiet -p burrow-unionfs
WORK=$STAGE
cp target/release/burrowfs "$WORK/"
mkdir -p "$WORK/lower"
echo data > "$WORK/lower/file"
head -c 4096 /dev/urandom > "$WORK/lower/page"
chmod -R a+rX "$WORK"
if [ "$(id -u)" -eq 0 ]; then chown -R "$TEST_USER" "$WORK"; fi

cat > "$WORK/pingpong.py" <<'PY'
import os, sys, time
n = int(sys.argv[1])
def pingpong(a, b):
    r1, w1 = os.pipe(); r2, w2 = os.pipe()
    pid = os.fork()
    if pid == 0:
        if b is not None: os.sched_setaffinity(0, {b})
        for _ in range(n):
            os.read(r1, 1); os.write(w2, b"x")
        os._exit(0)
    if a is not None: os.sched_setaffinity(0, {a})
    t = time.perf_counter()
    for _ in range(n):
        os.write(w1, b"x"); os.read(r2, 1)
    dt = time.perf_counter() - t
    os.waitpid(pid, 0)
    return dt / n * 1e6
cpus = sorted(os.sched_getaffinity(0))
if len(cpus) > 1:
    print(f"pipe round trip, CPUs {cpus[0]} and {cpus[1]}   {pingpong(cpus[0], cpus[1]):7.1f} us")
print(f"pipe round trip, both on CPU {cpus[0]}      {pingpong(cpus[0], cpus[0]):7.1f} us")
PY
# timed.py getxattr|read PATH N: microseconds per request, N of them.
cat > "$WORK/timed.py" <<'PY'
import os, sys, time
what, path, n = sys.argv[1], sys.argv[2], int(sys.argv[3])
fd = os.open(path, os.O_RDONLY)
def getxattr():
    try:
        os.getxattr(path, "user.burrow-absent")
    except OSError:
        pass
def read():
    os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
    assert len(os.pread(fd, 4096, 0)) == 4096
once = {"getxattr": getxattr, "read": read}[what]
for _ in range(100):
    once()
t = time.perf_counter()
for _ in range(n):
    once()
print(f"{(time.perf_counter() - t) / n * 1e6:.1f}")
PY
cat > "$WORK/inner.sh" <<'SH'
set -eu
W=$1 FS=$2 N=$3 TEST=$4
cd "$W"; rm -rf upper work merged; mkdir -p upper work merged
case $FS in
  overlay) mount -t overlay overlay -o lowerdir=$W/lower,upperdir=$W/upper,workdir=$W/work,userxattr merged ;;
  burrowfs) ./burrowfs -o lowerdir=$W/lower,upperdir=$W/upper,workdir=$W/work merged ;;
  fuse-overlayfs) fuse-overlayfs -o lowerdir=$W/lower,upperdir=$W/upper,workdir=$W/work merged 2>/dev/null ;;
esac
case $TEST in
  getxattr) python3 timed.py getxattr merged/file "$N" ;;
  read) python3 timed.py read merged/page "$N" ;;
esac
fusermount3 -u merged 2>/dev/null || umount merged
SH

"${RUNAS[@]}" python3 "$WORK/pingpong.py" "$N"
hp=/sys/module/haltpoll/parameters/guest_halt_poll_ns
[ -r "$hp" ] && echo "(guest halt polling: $(cat "$hp") ns)"
echo
# table TITLE TEST FS1 FS2: TEST on FS1 and FS2, free and all on CPU 0.
table() {
  local title=$1 test=$2 pin fs row label
  shift 2
  printf '%-28s %10s %10s\n' "$title" "$@"
  for pin in "" 0; do
    row=()
    for fs in "$@"; do
      PIN=(); [ -n "$pin" ] && PIN=(taskset -c "$pin")
      row+=("$("${PIN[@]}" "${RUNAS[@]}" unshare -Urm bash "$WORK/inner.sh" "$WORK" "$fs" "$N" "$test")")
    done
    label="any CPU"; [ -n "$pin" ] && label="all on CPU $pin"
    printf '%-28s %10s %10s\n' "$label" "${row[@]}"
  done
}
table "getxattr of one file, us" getxattr overlay burrowfs
echo
table "4 KiB READ, page dropped, us" read burrowfs fuse-overlayfs

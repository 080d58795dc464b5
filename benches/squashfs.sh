#!/usr/bin/env bash
# A squashfs image read in place. burrowfs (lowerdir=squashfs:IMG) beside
# the same tree unpacked on disk, Debian's squashfuse_ll and, as root, the
# kernel's squashfs (a loop mount: the floor), ROUNDS interleaved rounds,
# every read as the unprivileged account (burrow-test when run as root).
#   benches/squashfs.sh [ROUNDS]        (default 5)
# 1. Reading every file of a 10,000-file image: "cold" after the kernel's
#    caches are dropped (root only, else SKIPPED), "warm" on a new mount of
#    an image the host has cached; and `find -xdev` stat'ing every entry.
# 2. `burrow run --image squashfs:IMG -- /bin/true` beside `--rootfs DIR`
#    of the same tree unpacked (hyperfine).
# 3. Peak memory of burrowfs and squashfuse_ll after `find` over an image
#    of 300,000 files.
# Medians in seconds (ms for start-up, MB for memory) and ratios.
set -euo pipefail
cd "$(dirname "$0")/.."
ROUNDS=${1:-5}
BIG_FILES=${BIG_FILES:-300000}
WORK=/var/tmp/burrow-squashfs-bench
. benches/common-unionfs.sh
cargo build --release --quiet -p burrow-sandbox
cp target/release/burrow "$WORK/"
chmod a+rx "$WORK/burrow"
ROOT=0
[ "$(id -u)" -ne 0 ] || ROOT=1
command -v squashfuse_ll >/dev/null || { echo "squashfuse_ll missing (apt install squashfuse)" >&2; exit 1; }

# The image: 100 directories of 100 files (512 bytes to 64 KiB, as text
# that compresses about 2:1) plus a static busybox root, 10,000+ files;
# zstd, mksquashfs' default block size. Unpacked beside it.
cat > "$WORK/make.sh" <<'MAKE'
set -euo pipefail
cd "$1"; BIG_FILES=$2
if [ ! -e img.sqfs ]; then
  rm -rf tree; mkdir -p tree/usr tree/bin tree/etc tree/proc tree/dev tree/sys tree/tmp
  python3 - tree/usr <<'PY'
import os, random, sys
random.seed(21)
for d in range(100):
    p = os.path.join(sys.argv[1], f"d{d}")
    os.mkdir(p)
    for f in range(100):
        size = int(512 * 2 ** random.uniform(0, 7))
        with open(os.path.join(p, f"f{f}"), "w") as out:
            out.write(os.urandom(size // 2).hex())
PY
  cp /bin/busybox tree/bin/
  ln -s busybox tree/bin/true; ln -s busybox tree/bin/sh
  echo "root:x:0:0:root:/root:/bin/sh" > tree/etc/passwd
  mksquashfs tree img.sqfs -comp zstd -quiet -no-progress -noappend
fi
if [ ! -e big.sqfs ]; then
  rm -rf bigtree; mkdir bigtree
  python3 - bigtree "$BIG_FILES" <<'PY'
import os, sys
root, n = sys.argv[1], int(sys.argv[2])
for i in range(n):
    d = os.path.join(root, f"{i // 1000:03d}")
    if i % 1000 == 0:
        os.mkdir(d)
    with open(os.path.join(d, f"file-{i}"), "w") as out:
        out.write(f"{i}\n")
PY
  # (-no-duplicates: its duplicate check of 300k files of a few bytes
  # each is quadratic.)
  mksquashfs bigtree big.sqfs -comp zstd -quiet -no-progress -noappend -no-duplicates
  rm -rf bigtree
fi
mkdir -p m
MAKE
"${RUNAS[@]}" bash "$WORK/make.sh" "$WORK" "$BIG_FILES"

# mount.sh DIR FS: mounts the image on DIR/m through FS (as this user).
cat > "$WORK/mount.sh" <<'INNER'
set -euo pipefail
cd "$1"
case $2 in
  burrowfs) ./burrowfs m -o lowerdir=squashfs:$PWD/img.sqfs ;;
  squashfuse_ll) squashfuse_ll img.sqfs m ;;
esac
INNER
# read.sh DIR TREE WHAT: seconds to read every file of TREE, or to stat
# every entry (find).
cat > "$WORK/read.sh" <<'INNER'
set -euo pipefail
cd "$1"; T=$2
s=$(date +%s.%N)
case $3 in
  read) n=$(find "$T/usr" -type f -print0 | xargs -0 cat | wc -c); [ "$n" -gt 0 ] ;;
  find) n=$(find "$T" -xdev -printf '%s %m\n' | wc -l); [ "$n" -gt 10000 ] ;;
esac
e=$(date +%s.%N)
echo "$e - $s" | bc
INNER
chmod a+r "$WORK"/*.sh

# One measurement: FS, CASE (cold/warm), WHAT (read/find).
measure() {
  local fs=$1 case=$2 what=$3 tree="$WORK/m"
  if [ "$case" = cold ]; then sync; echo 3 > /proc/sys/vm/drop_caches; fi
  case $fs in
    unpacked) tree="$WORK/tree" ;;
    kernel) mount -t squashfs -o loop,ro "$WORK/img.sqfs" "$WORK/m" ;;
    *) "${RUNAS[@]}" bash "$WORK/mount.sh" "$WORK" "$fs" ;;
  esac
  local t
  t=$("${RUNAS[@]}" bash "$WORK/read.sh" "$WORK" "$tree" "$what")
  case $fs in
    unpacked) ;;
    kernel) umount "$WORK/m" ;;
    *) "${RUNAS[@]}" fusermount3 -u "$WORK/m" ;;
  esac
  echo "$what $case $fs $t" >> "$RESULTS"
}

RESULTS="$WORK/results.txt"; : > "$RESULTS"
FSES=(burrowfs unpacked squashfuse_ll)
[ "$ROOT" = 0 ] || FSES+=(kernel)
for round in $(seq "$ROUNDS"); do
  for fs in "${FSES[@]}"; do
    echo "round $round: $fs" >&2
    [ "$ROOT" = 0 ] || measure "$fs" cold read
    measure "$fs" warm read
    measure "$fs" warm find
  done
done
[ "$ROOT" = 1 ] || echo "cold, kernel: SKIPPED (dropping caches and loop mounts need root)"

python3 - "$RESULTS" "$ROUNDS" <<'PY'
import sys, statistics
med = {}
for line in open(sys.argv[1]):
    what, case, fs, t = line.split()
    med.setdefault((what, case, fs), []).append(float(t))
med = {k: statistics.median(v) for k, v in med.items()}
fses = ["burrowfs", "unpacked", "squashfuse_ll", "kernel"]
print(f"\n{'':12s}" + "".join(f"{f:>14s}" for f in fses) + "   burrowfs / each")
for what, case in (("read", "cold"), ("read", "warm"), ("find", "warm")):
    row = [med.get((what, case, f)) for f in fses]
    if row[0] is None:
        continue
    cells = "".join(f"{x:14.3f}" if x else f"{'-':>14s}" for x in row)
    ratios = " ".join(f"{row[0] / x:.2f}" if x else "-" for x in row[1:])
    print(f"{what + ' ' + case:12s}{cells}   {ratios}")
print(f"(10,000-file image, seconds, medians of {sys.argv[2]} interleaved rounds;"
      " ratios: burrowfs' time over unpacked, squashfuse_ll, kernel)")
PY

# 2. Start-up on the image and on the same tree unpacked.
hyperfine -N --warmup 5 --runs 40 --export-json "$WORK/startup.json" \
  -n "image squashfs:IMG" "${RUNAS[*]} $WORK/burrow run --image squashfs:$WORK/img.sqfs -- /bin/true" \
  -n "rootfs DIR" "${RUNAS[*]} $WORK/burrow run --rootfs $WORK/tree -- /bin/true" >/dev/null
python3 - "$WORK/startup.json" <<'PY'
import json, sys
r = json.load(open(sys.argv[1]))["results"]
img, d = r[0]["median"] * 1e3, r[1]["median"] * 1e3
print(f"\nburrow run -- /bin/true: --image squashfs:IMG {img:.2f} ms, --rootfs DIR {d:.2f} ms: {img / d:.2f}x")
PY

# 3. Peak memory after a find over the large image.
peak() {
  local fs=$1 pid
  case $fs in
    burrowfs) "${RUNAS[@]}" "$WORK/burrowfs" "$WORK/m" -o "lowerdir=squashfs:$WORK/big.sqfs" ;;
    squashfuse_ll) "${RUNAS[@]}" squashfuse_ll "$WORK/big.sqfs" "$WORK/m" ;;
  esac
  "${RUNAS[@]}" find "$WORK/m" -xdev -printf '%s\n' | wc -l > /dev/null
  pid=$(pgrep -n -f "$fs.*big.sqfs")
  awk '/VmHWM/ {printf "%.1f", $2 / 1024}' "/proc/$pid/status"
  "${RUNAS[@]}" fusermount3 -u "$WORK/m"
}
b=$(peak burrowfs); s=$(peak squashfuse_ll)
echo
echo "peak RSS after find over $BIG_FILES files: burrowfs $b MB, squashfuse_ll $s MB ($(echo "scale=2; $b / $s" | bc)x)"

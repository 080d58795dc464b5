#!/usr/bin/env bash
# Peak memory (VmHWM) of burrowfs and fuse-overlayfs after `find` walks a
# 100k-file lower layer, same run, as an unprivileged user.
#   benches/memory.sh
set -euo pipefail
cd "$(dirname "$0")/.."
WORK=/var/tmp/burrow-memory-bench
. benches/common-unionfs.sh
cat > "$WORK/inner.sh" <<'INNER'
set -euo pipefail
cd "$1"
if [ ! -e lower/.ready ]; then
  rm -rf lower; mkdir lower
  for d in $(seq 1 1000); do mkdir lower/d$d; (cd lower/d$d && touch $(seq -f f%g 1 100)); done
  touch lower/.ready
fi
measure() {
  local name=$1; shift
  rm -rf upper work merged; mkdir -p upper work merged
  "$@" & local pid=$!
  for i in $(seq 200); do grep -q " $PWD/merged " /proc/self/mountinfo && break; sleep 0.05; done
  find merged -type f | wc -l > /dev/null
  printf '%-16s %8s kB peak RSS after find over %s files\n' "$name" \
    "$(awk '/VmHWM/ {print $2}' /proc/$pid/status)" "$(find lower -type f | wc -l)"
  umount merged; wait $pid || true
}
measure burrowfs ./burrowfs -f -o lowerdir=lower,upperdir=upper,workdir=work merged
measure fuse-overlayfs fuse-overlayfs -f -o lowerdir=lower,upperdir=upper,workdir=work merged
INNER
"${RUNAS[@]}" unshare --user --map-root-user --mount bash "$WORK/inner.sh" "$WORK"

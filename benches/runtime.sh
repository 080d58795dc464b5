#!/usr/bin/env bash
# The OCI runtimes side by side, same run, as an unprivileged user (the
# burrow-test account when run as root): `run` of a bundle whose command
# is `true` (busybox root, config.json from `runc spec --rootless`), and
# create + start + delete --force of it as an engine drives them, and
# exec of `true` into a running container, by burrow-runtime, crun and runc.
#   benches/runtime.sh [RUNS]
# crun refuses a hybrid host ("cgroups in hybrid mode not supported"), so
# there, as root, the script runs itself again in a mount namespace of its
# own in which /sys/fs/cgroup is the host's cgroup v2 tree, and all three
# runtimes run in that view (the host's mounts are not changed).
set -euo pipefail
cd "$(dirname "$0")/.."
RUNS=${1:-200}
if [ "$(id -u)" -eq 0 ] && [ -z "${BURROW_BENCH_VIEW:-}" ] &&
  [ "$(stat -f -c %T /sys/fs/cgroup)" != cgroup2fs ] &&
  [ "$(stat -f -c %T /sys/fs/cgroup/unified 2>/dev/null)" = cgroup2fs ]; then
  exec env BURROW_BENCH_VIEW=1 unshare -m --propagation private \
    sh -c 'mount --bind /sys/fs/cgroup/unified /sys/fs/cgroup && exec bash "$0" "$@"' "$0" "$@"
fi
command -v crun >/dev/null || { echo "benches/runtime.sh: crun is not installed (apt-get install crun)" >&2; exit 1; }
. benches/common.sh
cargo build --release --quiet -p burrow-runtime
cp target/release/burrow-runtime "$STAGE/"
chmod a+rx "$STAGE/burrow-runtime"
B="$STAGE/bundle"
mkdir -p "$B/rootfs/bin"
for d in proc dev sys tmp etc; do mkdir -p "$B/rootfs/$d"; done
cp /bin/busybox "$B/rootfs/bin/"
for a in sh true; do ln -s busybox "$B/rootfs/bin/$a"; done
chown -R "$(stat -c %u "$STAGE")" "$B"
cd "$B"
"${RUNAS[@]}" runc spec --rootless
python3 - "$B/config.json" <<'PY'
import json, sys
c = json.load(open(sys.argv[1]))
c["process"]["terminal"] = False
c["process"]["args"] = ["true"]
json.dump(c, open(sys.argv[1], "w"))
PY
"${RUNAS[@]}" env PATH=/usr/local/bin:/usr/bin:/usr/sbin:/bin XDG_RUNTIME_DIR="$STAGE" \
  hyperfine -N --warmup 20 --runs "$RUNS" --export-json "$STAGE/runtime.json" \
  -n "burrow-runtime run" "$STAGE/burrow-runtime --root $STAGE/state run -b $B bench" \
  -n "crun run" "crun --root $STAGE/crun run -b $B bench" \
  -n "runc run" "runc --root $STAGE/runc run -b $B bench"
summary "$STAGE/runtime.json" 'run of a `true` bundle' "crun run"
summary "$STAGE/runtime.json" 'run of a `true` bundle' "runc run"

cycle() { echo "$1 create -b $B cycle && $1 start cycle && $1 delete --force cycle"; }
"${RUNAS[@]}" env PATH=/usr/local/bin:/usr/bin:/usr/sbin:/bin XDG_RUNTIME_DIR="$STAGE" \
  hyperfine -N --warmup 20 --runs "$RUNS" --export-json "$STAGE/cycle.json" \
  -n "burrow-runtime create+start+delete" "sh -c '$(cycle "$STAGE/burrow-runtime --root $STAGE/state")'" \
  -n "crun create+start+delete" "sh -c '$(cycle "crun --root $STAGE/crun")'" \
  -n "runc create+start+delete" "sh -c '$(cycle "runc --root $STAGE/runc")'"
summary "$STAGE/cycle.json" 'create, start and delete --force of a `true` bundle' "crun create+start+delete"
summary "$STAGE/cycle.json" 'create, start and delete --force of a `true` bundle' "runc create+start+delete"

# exec of `true` into a running container (a second bundle whose command
# sleeps), as `podman exec` and `ctr task exec` have the runtime do it.
S="$STAGE/sleeper"
mkdir -p "$S"
cp -a "$B/rootfs" "$S/"
ln -sf busybox "$S/rootfs/bin/sleep"
python3 - "$B/config.json" "$S/config.json" <<'PY'
import json, sys
c = json.load(open(sys.argv[1]))
c["process"]["args"] = ["sleep", "100000"]
json.dump(c, open(sys.argv[2], "w"))
PY
chown -R "$(stat -c %u "$STAGE")" "$S"
as_user() { "${RUNAS[@]}" env PATH=/usr/local/bin:/usr/bin:/usr/sbin:/bin XDG_RUNTIME_DIR="$STAGE" "$@"; }
as_user "$STAGE/burrow-runtime" --root "$STAGE/state" create -b "$S" sleeper
as_user "$STAGE/burrow-runtime" --root "$STAGE/state" start sleeper
as_user crun --root "$STAGE/crun" create -b "$S" sleeper
as_user crun --root "$STAGE/crun" start sleeper
as_user runc --root "$STAGE/runc" create -b "$S" sleeper
as_user runc --root "$STAGE/runc" start sleeper
# (Both ended before the stage is removed, which common.sh's trap did.)
trap 'as_user "$STAGE/burrow-runtime" --root "$STAGE/state" delete --force sleeper || true
      as_user crun --root "$STAGE/crun" delete --force sleeper || true
      as_user runc --root "$STAGE/runc" delete --force sleeper || true
      rm -rf "$STAGE"' EXIT
as_user hyperfine -N --warmup 20 --runs "$RUNS" --export-json "$STAGE/exec.json" \
  -n "burrow-runtime exec" "$STAGE/burrow-runtime --root $STAGE/state exec sleeper true" \
  -n "crun exec" "crun --root $STAGE/crun exec sleeper true" \
  -n "runc exec" "runc --root $STAGE/runc exec sleeper true"
summary "$STAGE/exec.json" 'exec of `true` into a running container' "crun exec"
summary "$STAGE/exec.json" 'exec of `true` into a running container' "runc exec"

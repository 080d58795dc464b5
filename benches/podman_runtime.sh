#!/usr/bin/env bash
# podman with burrow-runtime beside podman with runc (its runtime on this
# machine; crun refuses the hybrid cgroups), rootless, cgroupfs, native
# overlay storage, the same busybox-static image made with `podman import`:
# `podman run --rm --network none IMAGE true`, one hyperfine run, as the
# unprivileged account.
#   benches/podman_runtime.sh [RUNS]        (default 30)
set -euo pipefail
cd "$(dirname "$0")/.."
RUNS=${1:-30}
. benches/common.sh
cargo build --release --quiet -p burrow-runtime
cp target/release/burrow-runtime "$STAGE/"
chmod a+rx "$STAGE/burrow-runtime"
W="$STAGE/pr"
# (conmon's socket lives under XDG_RUNTIME_DIR: a short path, or podman
# learns of a container's end only by polling.)
X=$(mktemp -d /tmp/bpr.XXXXXX)
mkdir -p "$W/rootfs/bin" "$W/rootfs/etc" "$W/rootfs/tmp"
cp /bin/busybox "$W/rootfs/bin/"
for app in sh true; do ln -s busybox "$W/rootfs/bin/$app"; done
chmod 1777 "$W/rootfs/tmp"; chmod 700 "$X"
cat > "$W/storage.conf" <<CONF
[storage]
driver = "overlay"
runroot = "$W/run"
graphroot = "$W/graph"
CONF
cat > "$W/containers.conf" <<CONF
[engine]
runtime = "runc"
cgroup_manager = "cgroupfs"
events_logger = "file"
runtime_supports_json = ["burrow", "runc", "crun"]
runtime_supports_nocgroups = ["burrow", "crun"]
[engine.runtimes]
burrow = ["$STAGE/burrow-runtime"]
CONF
if [ "$(id -u)" -eq 0 ]; then chown -R "$TEST_USER" "$W" "$X"; fi
ENV=(env CONTAINERS_STORAGE_CONF="$W/storage.conf" CONTAINERS_CONF="$W/containers.conf"
  XDG_RUNTIME_DIR="$X" XDG_CONFIG_HOME="$W/config" XDG_DATA_HOME="$W/data"
  PATH=/usr/local/bin:/usr/bin:/usr/sbin:/bin)
cleanup() {
  "${RUNAS[@]}" "${ENV[@]}" podman unshare rm -rf "$W/graph" "$W/run" >/dev/null 2>&1 || true
  if [ -f "$X/libpod/tmp/pause.pid" ]; then kill -9 "$(cat "$X/libpod/tmp/pause.pid")" 2>/dev/null || true; fi
  for _ in $(seq 100); do pgrep -u "$TEST_USER" >/dev/null || break; sleep 0.1; done
  rm -rf "$STAGE" "$X"
}
trap cleanup EXIT
"${RUNAS[@]}" tar --owner=0 --group=0 -C "$W/rootfs" -cf "$W/rootfs.tar" .
"${RUNAS[@]}" "${ENV[@]}" podman import -q "$W/rootfs.tar" localhost/bench:1 >/dev/null
run() { echo "podman --runtime $1 run --rm --network none localhost/bench:1 true"; }
"${RUNAS[@]}" "${ENV[@]}" hyperfine -N --warmup 3 --runs "$RUNS" --export-json "$STAGE/podman.json" \
  -n "podman --runtime burrow" "$(run burrow)" -n "podman --runtime runc" "$(run runc)"
summary "$STAGE/podman.json" 'podman run --rm --network none IMAGE true' "podman --runtime runc"

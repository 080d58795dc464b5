#!/usr/bin/env bash
# `burrow run --image X -- true` beside `podman run --rm X true`, rootless
# (runc, cgroupfs, as this machine needs; and with --network none, as burrow
# has no network by default), the same image (busybox-static,
# made with `podman import` and given to burrow with `podman save --format
# oci-dir`), in one hyperfine run, as the unprivileged account.
#   benches/image.sh [RUNS]        (default 30)
set -euo pipefail
cd "$(dirname "$0")/.."
RUNS=${1:-30}
. benches/common.sh
W="$STAGE/img"
mkdir -p "$W/rootfs/bin" "$W/rootfs/etc" "$W/rootfs/tmp" "$W/xdg"
cp /bin/busybox "$W/rootfs/bin/"
for app in sh true cat; do ln -s busybox "$W/rootfs/bin/$app"; done
chmod 1777 "$W/rootfs/tmp"; chmod 700 "$W/xdg"
cat > "$W/storage.conf" <<CONF
[storage]
driver = "overlay"
runroot = "$W/run"
graphroot = "$W/graph"
CONF
printf '[engine]\nruntime = "runc"\ncgroup_manager = "cgroupfs"\nevents_logger = "file"\n' > "$W/containers.conf"
if [ "$(id -u)" -eq 0 ]; then chown -R "$TEST_USER" "$W"; fi
ENV=(env CONTAINERS_STORAGE_CONF="$W/storage.conf" CONTAINERS_CONF="$W/containers.conf"
  XDG_RUNTIME_DIR="$W/xdg" XDG_CONFIG_HOME="$W/config" XDG_DATA_HOME="$W/data")
cleanup() {
  "${RUNAS[@]}" "${ENV[@]}" podman unshare rm -rf "$W/graph" "$W/run" >/dev/null 2>&1 || true
  if [ -f "$W/xdg/libpod/tmp/pause.pid" ]; then kill -9 "$(cat "$W/xdg/libpod/tmp/pause.pid")" 2>/dev/null || true; fi
  # podman's --rm clean-up (conmon, slirp4netns) ends on its own, shortly.
  for _ in $(seq 100); do pgrep -u "$TEST_USER" >/dev/null || break; sleep 0.1; done
  rm -rf "$STAGE"
}
trap cleanup EXIT
"${RUNAS[@]}" tar --owner=0 --group=0 -C "$W/rootfs" -cf "$W/rootfs.tar" .
"${RUNAS[@]}" "${ENV[@]}" podman import -q "$W/rootfs.tar" localhost/bench:1 >/dev/null
"${RUNAS[@]}" "${ENV[@]}" podman save -q --format oci-dir -o "$W/oci" localhost/bench:1
"${RUNAS[@]}" "${ENV[@]}" podman info --format 'podman {{.Version.Version}}, graph driver {{.Store.GraphDriverName}}, native overlay diff: {{index .Store.GraphStatus "Native Overlay Diff"}}'
# The layer is unpacked by the first run (and the warm-up), not timed.
"${RUNAS[@]}" "${ENV[@]}" "$STAGE/burrow" run --image "oci:$W/oci" -- true
"${RUNAS[@]}" "${ENV[@]}" hyperfine -N --warmup 3 --runs "$RUNS" --export-json "$W/image.json" \
  -n "burrow run --image" "$STAGE/burrow run --image oci:$W/oci -- true" \
  -n "podman run --rm" "podman run --rm localhost/bench:1 true" \
  -n "podman run --rm --network none" "podman run --rm --network none localhost/bench:1 true"
python3 - "$W/image.json" <<'PY'
import json, sys
r = {x["command"]: x for x in json.load(open(sys.argv[1]))["results"]}
b = r["burrow run --image"]
print("\nimage start-up, median ms (mean ± sd)      ratio to burrow (median)")
for name, x in r.items():
    print(f"  {name:34s} {x['median']*1e3:7.1f} ({x['mean']*1e3:.1f} ± {x['stddev']*1e3:.1f})   {x['median']/b['median']:.1f}x")
PY

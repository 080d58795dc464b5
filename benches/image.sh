#!/usr/bin/env bash
# `burrow run --image X -- true` beside `podman run --rm X true`, rootless
# (runc, cgroupfs, as this machine needs; and with --network none, as burrow
# has no network by default), the same image (busybox-static,
# made with `podman import` and given to burrow with `podman save --format
# oci-dir`), in one hyperfine run, as the unprivileged account.
#   benches/image.sh [ROUNDS [RUNS]]        (default 5 rounds of 10 runs)
set -euo pipefail
cd "$(dirname "$0")/.."
ROUNDS=${1:-5}
RUNS=${2:-10}
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
# Rounds of RUNS runs per command, the commands taking turns round by round
# (hyperfine runs one command's runs together; this VM's noise comes in
# spells, which interleaving spreads over all three).
declare -A CMD=(
  [burrow]="$STAGE/burrow run --image oci:$W/oci -- true"
  [podman]="podman run --rm localhost/bench:1 true"
  [podman-nonet]="podman run --rm --network none localhost/bench:1 true"
)
for round in $(seq "$ROUNDS"); do
  for name in burrow podman podman-nonet; do
    "${RUNAS[@]}" "${ENV[@]}" hyperfine -N --warmup 2 --runs "$RUNS" --style none \
      --export-json "$W/$name.$round.json" "${CMD[$name]}" >/dev/null
  done
done
python3 - "$W" "$ROUNDS" <<'PY'
import json, statistics, sys
w, rounds = sys.argv[1], int(sys.argv[2])
names = {"burrow": "burrow run --image", "podman": "podman run --rm",
         "podman-nonet": "podman run --rm --network none"}
times = {n: [] for n in names}
for n in names:
    for r in range(1, rounds + 1):
        times[n] += json.load(open(f"{w}/{n}.{r}.json"))["results"][0]["times"]
b = statistics.median(times["burrow"])
print(f"\nimage start-up, median ms of {len(times['burrow'])} runs in {rounds} interleaved rounds   ratio to burrow")
for n, label in names.items():
    m = statistics.median(times[n])
    q = statistics.quantiles(times[n], n=4)
    print(f"  {label:34s} {m*1e3:7.1f} (quartiles {q[0]*1e3:.1f}-{q[2]*1e3:.1f})   {m/b:.1f}x")
PY

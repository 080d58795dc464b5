#!/usr/bin/env bash
# Pull and unpack of one image from a local registry into an empty store:
# `burrow pull` beside `podman pull` (rootless, native overlay) and
# `skopeo copy` + `umoci unpack --rootless`, interleaved rounds of
# hyperfine runs, then each once more under /usr/bin/time for peak RSS;
# the 10k-file image of benches/common-image.sh, as the unprivileged
# account.
#   benches/pull.sh [ROUNDS [RUNS]]        (default 3 rounds of 3 runs)
set -euo pipefail
cd "$(dirname "$0")/.."
ROUNDS=${1:-3}
RUNS=${2:-3}
. benches/common.sh
. benches/common-image.sh
STORES+=(pull)
podman_store pull
B="$STAGE/burrow"
declare -A CMD PREP
CMD[burrow]="env XDG_DATA_HOME=$W/bdata $B pull -q --tls-verify=false docker://$IMAGE"
PREP[burrow]="rm -rf $W/bdata"
CMD[podman]="$PODMAN pull -q --tls-verify=false $IMAGE"
PREP[podman]="$PODMAN rmi -i -f $IMAGE"
CMD[skopeo-umoci]="sh -c 'skopeo copy -q --src-tls-verify=false docker://$IMAGE oci:$W/sk:1 && umoci unpack --rootless --image $W/sk:1 $W/bundle'"
PREP[skopeo-umoci]="rm -rf $W/sk $W/bundle"
NAMES=(burrow podman skopeo-umoci)
for round in $(seq "$ROUNDS"); do
  for name in "${NAMES[@]}"; do
    "${RUNAS[@]}" "${PODMAN_ENV[@]}" hyperfine --warmup 1 --runs "$RUNS" --style none \
      --prepare "${PREP[$name]}" --export-json "$W/$name.$round.json" "${CMD[$name]}" >/dev/null
  done
done
for name in "${NAMES[@]}"; do
  "${RUNAS[@]}" "${PODMAN_ENV[@]}" sh -c "${PREP[$name]}" >/dev/null
  "${RUNAS[@]}" "${PODMAN_ENV[@]}" /usr/bin/time -f %M -o "$W/$name.rss" sh -c "exec ${CMD[$name]}" >/dev/null
done
python3 - "$W" "$ROUNDS" "${NAMES[@]}" <<'PY'
import json, statistics, sys
w, rounds, names = sys.argv[1], int(sys.argv[2]), sys.argv[3:]
labels = {"burrow": "burrow pull", "podman": "podman pull (native overlay)",
          "skopeo-umoci": "skopeo copy + umoci unpack --rootless"}
times = {n: sum((json.load(open(f"{w}/{n}.{r}.json"))["results"][0]["times"]
                 for r in range(1, rounds + 1)), []) for n in names}
b = statistics.median(times["burrow"])
print(f"\npull + unpack into an empty store, median s of {len(times['burrow'])} runs in {rounds} interleaved rounds; peak RSS")
for n in names:
    m = statistics.median(times[n])
    q = statistics.quantiles(times[n], n=4) if len(times[n]) > 1 else [m, m, m]
    rss = int(open(f"{w}/{n}.rss").read().split()[-1]) / 1024
    print(f"  {labels[n]:40s} {m:6.2f} s (quartiles {q[0]:.2f}-{q[2]:.2f})  {m/b:4.1f}x   {rss:6.1f} MB")
PY

#!/usr/bin/env bash
# A 10k-file image (benches/common-image.sh) run on a fresh root each time:
# `find / -xdev | wc -l` and reading every file, in `burrow run --image`
# beside `podman run --rm` with native overlay and with fuse-overlayfs as
# its mount program (rootless, runc, cgroupfs), each image pulled from the
# same local registry first; interleaved rounds of hyperfine runs, as the
# unprivileged account. The host's page cache holds the layers (warm).
#   benches/image_files.sh [ROUNDS [RUNS]]        (default 3 rounds of 5 runs)
set -euo pipefail
cd "$(dirname "$0")/.."
ROUNDS=${1:-3}
RUNS=${2:-5}
. benches/common.sh
. benches/common-image.sh
B="$STAGE/burrow"
BENV="XDG_DATA_HOME=$W/bdata"
"${RUNAS[@]}" env "$BENV" "$B" pull -q --tls-verify=false "docker://$IMAGE" >/dev/null
STORES+=(native fuse)
podman_store native; NATIVE=$PODMAN
podman_store fuse /usr/bin/fuse-overlayfs; FUSE=$PODMAN
for p in "$NATIVE" "$FUSE"; do
  "${RUNAS[@]}" "${PODMAN_ENV[@]}" $p pull -q --tls-verify=false "$IMAGE" >/dev/null
done
declare -A SCRIPT=(
  [find]='find / -xdev | wc -l'
  [read]='find / -xdev -type f -exec cat {} + | wc -c'
)
declare -A RUNNER=(
  [burrow]="env $BENV $B run --image $IMAGE --"
  [podman-native]="$NATIVE run --rm --network none $IMAGE"
  [podman-fuse]="$FUSE run --rm --network none $IMAGE"
)
NAMES=(burrow podman-native podman-fuse)
for op in find read; do
  for name in "${NAMES[@]}"; do
    echo "$op $name: $("${RUNAS[@]}" "${PODMAN_ENV[@]}" ${RUNNER[$name]} sh -c "${SCRIPT[$op]}")"
  done
done
for round in $(seq "$ROUNDS"); do
  for op in find read; do
    for name in "${NAMES[@]}"; do
      "${RUNAS[@]}" "${PODMAN_ENV[@]}" hyperfine --warmup 1 --runs "$RUNS" --style none \
        --export-json "$W/$op.$name.$round.json" "${RUNNER[$name]} sh -c '${SCRIPT[$op]}'" >/dev/null
    done
  done
done
python3 - "$W" "$ROUNDS" "${NAMES[@]}" <<'PY'
import json, statistics, sys
w, rounds, names = sys.argv[1], int(sys.argv[2]), sys.argv[3:]
labels = {"burrow": "burrow run --image", "podman-native": "podman run (native overlay)",
          "podman-fuse": "podman run (fuse-overlayfs)"}
for op, what in (("find", "find / -xdev | wc -l"), ("read", "reading every file")):
    times = {n: sum((json.load(open(f"{w}/{op}.{n}.{r}.json"))["results"][0]["times"]
                     for r in range(1, rounds + 1)), []) for n in names}
    b = statistics.median(times["burrow"])
    print(f"\n{what}: median s of {len(times['burrow'])} runs in {rounds} interleaved rounds   ratio to burrow")
    for n in names:
        m = statistics.median(times[n])
        q = statistics.quantiles(times[n], n=4)
        print(f"  {labels[n]:32s} {m:6.3f} (quartiles {q[0]:.3f}-{q[2]:.3f})   {m/b:.2f}x")
PY

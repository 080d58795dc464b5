#!/usr/bin/env bash
# Boot-to-exit of `burrow run --vm -- true` beside the same command in
# namespaces only, same run, as an unprivileged user (burrow-test when run
# as root), and where the time goes (BURROW_VM_TIMING).
#   benches/vm.sh [RUNS] [ACCEL]
# ACCEL is tcg (default: KVM cannot boot stock guest kernels on nested
# virtualisation like these machines) or kvm on a host with hardware KVM.
set -euo pipefail
cd "$(dirname "$0")/.."
RUNS=${1:-10}
ACCEL=${2:-tcg}
. benches/common.sh
make --no-print-directory vm-init >/dev/null
cp target/x86_64-unknown-linux-gnu/release/burrow-vm-init "$STAGE/"
chmod a+rx "$STAGE/burrow-vm-init"
cd "$STAGE"
"${RUNAS[@]}" hyperfine -N --warmup 2 --runs "$RUNS" --export-json "$STAGE/vm.json" \
  -n "burrow --vm ($ACCEL)" "$STAGE/burrow run --vm --vm-accel $ACCEL -- true" \
  -n "burrow (namespaces)" "$STAGE/burrow run -- true" >/dev/null

summary "$STAGE/vm.json" 'boot-to-exit of `true`'
echo "phases (5 runs):"
for _ in 1 2 3 4 5; do
  "${RUNAS[@]}" env BURROW_VM_TIMING=1 "$STAGE/burrow" run --vm --vm-accel "$ACCEL" -- true 2>&1 |
    grep 'vm timing' | sed 's/^burrow: /  /'
done

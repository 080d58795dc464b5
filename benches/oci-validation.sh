#!/usr/bin/env bash
# The OCI runtime-tools validation programs against burrow-runtime and
# runc, in one run, as root (as the suite is run for runc, crun and youki).
#   benches/oci-validation.sh SUITE [NAME ...]
# SUITE: a build of the suite (opencontainers/runtime-tools' validation/
# and cmd/runtimetest, which Debian's golang-github-opencontainers-
# runtime-tools-dev does not ship: it is built outside this repository)
# holding bin/runtimetest, bin/validation/NAME.t and run/rootfs-amd64.tar.gz
# (a busybox-static root). Each program runs from SUITE/run with RUNTIME
# set, 120 s at most; it passes with exit status 0, some "ok" and no
# "not ok" line (TODO aside). TAP logs go to SUITE/logs/RUNTIME/NAME.tap.
set -euo pipefail
cd "$(dirname "$0")/.."
SUITE=$(realpath "${1:?usage: benches/oci-validation.sh SUITE [NAME ...]}")
shift
[ "$(id -u)" -eq 0 ] || { echo "oci-validation.sh: the suite runs as root" >&2; exit 2; }
for f in bin/runtimetest run/rootfs-amd64.tar.gz; do
  [ -e "$SUITE/$f" ] || { echo "oci-validation.sh: $SUITE/$f is missing" >&2; exit 2; }
done
cargo build --release --quiet -p burrow-runtime
STAGE=$(mktemp -d /tmp/burrow-oci-validation.XXXXXX)
trap 'rm -rf "$STAGE"' EXIT
cp target/release/burrow-runtime "$STAGE/"
# (Copied into each bundle as it is: a file, not a link.)
cp -f "$SUITE/bin/runtimetest" "$SUITE/run/runtimetest"
names=("$@")
[ ${#names[@]} -gt 0 ] || mapfile -t names < <(cd "$SUITE/bin/validation" && ls -- *.t | sed 's/\.t$//')

# one RUNTIME NAME: "pass" or "fail (N ok / M not ok[, exit S])".
one() {
  local log="$SUITE/logs/$(basename "$1")/$2.tap" rc=0
  mkdir -p "$(dirname "$log")"
  (cd "$SUITE/run" && RUNTIME=$1 timeout -k 10 120 "$SUITE/bin/validation/$2.t") \
    >"$log" 2>"${log%.tap}.stderr" || rc=$?
  local ok notok
  ok=$(grep -c '^ok' "$log" || true)
  notok=$(grep '^not ok' "$log" | grep -vc '# TODO' || true)
  if [ "$rc" -eq 0 ] && [ "$ok" -gt 0 ] && [ "$notok" -eq 0 ]; then
    echo pass
  else
    echo "fail ($ok ok / $notok not ok$([ "$rc" -eq 0 ] || echo ", exit $rc"))"
  fi
}

declare -A passed
printf '%-34s %-34s %s\n' program burrow-runtime runc
for n in "${names[@]}"; do
  line=$(printf '%-34s' "$n")
  for rt in "$STAGE/burrow-runtime" "$(command -v runc)"; do
    r=$(one "$rt" "$n")
    [ "$r" = pass ] && passed[$rt]=$((${passed[$rt]:-0} + 1))
    line+=$(printf ' %-34s' "$r")
  done
  echo "$line"
done
echo "passing: burrow-runtime ${passed[$STAGE/burrow-runtime]:-0} of ${#names[@]}," \
  "runc ${passed[$(command -v runc)]:-0} of ${#names[@]}"

#!/usr/bin/env bash
# Start-up cost of `burrow run -- true` beside bubblewrap, same run,
# as an unprivileged user (the burrow-test account when run as root).
#   benches/startup.sh [RUNS]
set -euo pipefail
cd "$(dirname "$0")/.."
RUNS=${1:-300}
. benches/common.sh
cd "$STAGE"
# The account's own PATH (as a login gives it), not the caller's: root's
# PATH holds directories the account may not search, and in the union each
# is a FUSE lookup the command's search pays (bwrap's host dentries are warm).
"${RUNAS[@]}" env PATH=/usr/local/bin:/usr/bin:/bin hyperfine -N --warmup 30 --runs "$RUNS" --export-json "$STAGE/startup.json" \
  -n "burrow (union root)" "$STAGE/burrow run -- true" \
  -n "burrow --map-users none" "$STAGE/burrow run --map-users none -- true" \
  -n "burrow --read-only" "$STAGE/burrow run --read-only -- true" \
  -n "burrow --read-only --map-users none" "$STAGE/burrow run --read-only --map-users none -- true" \
  -n bwrap "bwrap --unshare-all --ro-bind / / --dev /dev --proc /proc true"

summary "$STAGE/startup.json" "start-up" "bwrap"

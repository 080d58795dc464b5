#!/usr/bin/env bash
# Reading 11,100 lower files of 4 KiB on a fresh mount, twice (the second
# from the mount's page cache, so with no request to the server where it
# keeps that cache): kernel overlayfs, burrowfs and fuse-overlayfs,
# interleaved, ROUNDS rounds, as an unprivileged user (the burrow-test
# account when run as root). unionfs.sh's read-small alone, on a tree of
# the same shape, after the same walk (so the kernel knows every entry).
#   benches/readsmall.sh [ROUNDS]        (default 15)
# Prints each read's median in seconds and the ratios.
set -euo pipefail
cd "$(dirname "$0")/.."
ROUNDS=${1:-15}
[[ $ROUNDS =~ ^[1-9][0-9]*$ ]] || { echo "readsmall.sh: ROUNDS must be a positive number, not $ROUNDS" >&2; exit 2; }
WORK=/var/tmp/burrow-readsmall-bench
. benches/common-unionfs.sh

# 200 directories of 100 files; d1* is 111 of them.
TREE='[ -e lower/.ready ] && exit 0; rm -rf lower
python3 -c "
import os
for d in range(1, 201):
    os.makedirs(f\"lower/tree/d{d}\")
    for f in range(1, 101):
        with open(f\"lower/tree/d{d}/f{f}\", \"wb\") as out:
            out.write(bytes(4096))
"
touch lower/.ready'

READ_SMALL='find $MERGED/tree -type f -size +1k > /dev/null
for i in 1 2; do
  s=$(date +%s.%N); sh -c "cat $MERGED/tree/d1*/f* > /dev/null"; e=$(date +%s.%N)
  echo -n "$(echo "$e - $s" | bc) "
done; echo'

two_reads read-small read-small-2 "$TREE" "$READ_SMALL"

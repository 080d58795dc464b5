#!/usr/bin/env bash
# Reading one 512 MiB lower file on a fresh mount, twice (the second from
# the mount's page cache): kernel overlayfs, burrowfs and fuse-overlayfs,
# interleaved, ROUNDS rounds, as an unprivileged user (the burrow-test
# account when run as root). unionfs.sh's read-big and read-big-2 alone,
# with rounds enough for a spread of ±15% run to run on this VM.
#   benches/readbig.sh [ROUNDS]        (default 15)
# Prints each read's median in seconds and the ratios.
set -euo pipefail
cd "$(dirname "$0")/.."
ROUNDS=${1:-15}
[[ $ROUNDS =~ ^[1-9][0-9]*$ ]] || { echo "readbig.sh: ROUNDS must be a positive number, not $ROUNDS" >&2; exit 2; }
WORK=/var/tmp/burrow-readbig-bench
. benches/common-unionfs.sh

# Both reads through FS on a new mount; prints their seconds.
READ_BIG='for i in 1 2; do
  s=$(date +%s.%N); cat $MERGED/big > /dev/null; e=$(date +%s.%N)
  echo -n "$(echo "$e - $s" | bc) "
done; echo'

two_reads read-big read-big-2 '[ -s lower/big ] && exit 0; mkdir -p lower
  head -c $((512 * 1024 * 1024)) /dev/urandom > lower/big.new && mv lower/big.new lower/big' "$READ_BIG"

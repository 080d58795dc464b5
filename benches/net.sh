#!/usr/bin/env bash
# Sandbox-to-host TCP throughput (iperf3, 5 s per run) through
# `burrow run --net slirp`, slirp4netns (--mtu 65520) and pasta, ROUNDS
# interleaved rounds, medians, as an unprivileged user (burrow-test when
# run as root). The iperf3 server listens on this machine; nothing leaves it.
#   benches/net.sh [ROUNDS]        (default 3)
set -euo pipefail
cd "$(dirname "$0")/.."
ROUNDS=${1:-3}
. benches/common.sh
cat > "$STAGE/slirp4netns-run.sh" <<'SH'
# slirp4netns-run.sh CMD...: CMD in a new user and network namespace served by slirp4netns
d=$(mktemp -d)
unshare --user --map-root-user --net --fork sh -c "echo \$\$ > $d/pid; while [ ! -e $d/go ]; do sleep 0.05; done; exec \"\$@\"" sh "$@" &
inner=$!
while [ ! -s $d/pid ]; do sleep 0.05; done
slirp4netns --configure --mtu 65520 --disable-host-loopback "$(cat $d/pid)" tap0 >/dev/null 2>&1 &
s=$!
sleep 0.5; touch $d/go
wait $inner; rc=$?
kill $s 2>/dev/null; wait $s 2>/dev/null; rm -rf "$d"; exit $rc
SH
cat > "$STAGE/slirp4netns-fwd.sh" <<'SH'
# slirp4netns-fwd.sh HOSTPORT PORT CMD...: CMD in a new namespace served by
# slirp4netns, with HOSTPORT on the host's 127.0.0.1 forwarded to PORT inside
hp=$1 gp=$2; shift 2
d=$(mktemp -d)
unshare --user --map-root-user --net --fork sh -c "echo \$\$ > $d/pid; while [ ! -e $d/go ]; do sleep 0.05; done; exec \"\$@\"" sh "$@" &
inner=$!
while [ ! -s $d/pid ]; do sleep 0.05; done
slirp4netns --configure --mtu 65520 --disable-host-loopback --api-socket $d/api "$(cat $d/pid)" tap0 >/dev/null 2>&1 &
s=$!
while [ ! -S $d/api ]; do sleep 0.05; done
python3 -c "import socket, json, sys; c = socket.socket(socket.AF_UNIX); c.connect('$d/api'); c.sendall(json.dumps({'execute': 'add_hostfwd', 'arguments': {'proto': 'tcp', 'host_addr': '127.0.0.1', 'host_port': $hp, 'guest_port': $gp}}).encode()); c.recv(1000)"
touch $d/go
wait $inner; rc=$?
kill $s 2>/dev/null; wait $s 2>/dev/null; rm -rf "$d"; exit $rc
SH
chmod -R a+rX "$STAGE"

HOST=$(ip -4 -o addr show scope global | awk '{print $4}' | cut -d/ -f1 | head -n 1)
[ -n "$HOST" ] || { echo "net.sh: no global IPv4 address to run the iperf3 server on" >&2; exit 1; }
"${RUNAS[@]}" iperf3 -s -D -p 5299 -I "$STAGE/iperf3.pid"
trap '"${RUNAS[@]}" kill "$(cat "$STAGE/iperf3.pid")" 2>/dev/null; rm -rf "$STAGE"' EXIT
sleep 0.5

run() { # name, command...: prints "name Gbit/s"
  local name=$1; shift
  "${RUNAS[@]}" "$@" 2>/dev/null | python3 -c "import json, sys; print('$name', json.load(sys.stdin)['end']['sum_received']['bits_per_second'] / 1e9)"
}
RESULTS="$STAGE/results.txt"
for round in $(seq "$ROUNDS"); do
  echo "round $round" >&2
  run burrow "$STAGE/burrow" run --net slirp -- iperf3 -c "$HOST" -p 5299 -t 5 -J >> "$RESULTS"
  run slirp4netns bash "$STAGE/slirp4netns-run.sh" iperf3 -c "$HOST" -p 5299 -t 5 -J >> "$RESULTS"
  # pasta, given slirp's layout, so that the host's address is not its own.
  run pasta pasta --config-net -a 10.0.2.100 -n 24 -g 10.0.2.2 -- iperf3 -c "$HOST" -p 5299 -t 5 -J >> "$RESULTS"
done
# Host to sandbox through a published port: iperf3's server inside, the
# client on the host's 127.0.0.1.
inbound() { # name, host port, command that serves it...
  local name=$1 port=$2; shift 2
  "${RUNAS[@]}" "$@" >/dev/null 2>&1 &
  local server=$!
  local out=""
  for _ in $(seq 50); do
    sleep 0.2
    out=$("${RUNAS[@]}" iperf3 -c 127.0.0.1 -p "$port" -t 5 -J 2>/dev/null) && break
  done
  wait $server 2>/dev/null || true
  echo "$out" | python3 -c "import json, sys; print('$name', json.load(sys.stdin)['end']['sum_received']['bits_per_second'] / 1e9)"
}
IN="$STAGE/inbound.txt"
for round in $(seq "$ROUNDS"); do
  echo "inbound round $round" >&2
  inbound burrow 15201 "$STAGE/burrow" run --net slirp -p 127.0.0.1:15201:5201 -- iperf3 -s -1 -p 5201 >> "$IN"
  inbound slirp4netns 15202 bash "$STAGE/slirp4netns-fwd.sh" 15202 5201 iperf3 -s -1 -p 5201 >> "$IN"
  inbound pasta 15203 pasta --config-net -t 15203:5201 -- iperf3 -s -1 -p 5201 >> "$IN"
done

python3 - "$RESULTS" "$IN" <<'PY'
import statistics, sys
for path, title in [(sys.argv[1], "sandbox -> host TCP"), (sys.argv[2], "host -> sandbox TCP, published port")]:
    data = {}
    for line in open(path):
        name, v = line.split()
        data.setdefault(name, []).append(float(v))
    med = {k: statistics.median(v) for k, v in data.items()}
    print(f"\n{title}, iperf3, medians of {len(data['burrow'])} interleaved runs")
    for name, m in med.items():
        print(f"  {name:12s} {m:6.2f} Gbit/s   burrow / {name}: {med['burrow'] / m:.2f}x")
PY

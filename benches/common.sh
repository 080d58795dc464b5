# Sourced by the benchmark scripts: the machine set up, burrow built in
# release mode and staged where the unprivileged account (burrow-test when
# run as root) can run it. Sets TEST_USER, STAGE (removed at exit) and
# RUNAS (the prefix that runs a command as that account).
TEST_USER=${BURROW_TEST_USER:-burrow-test}
bash scripts/setup-host.sh --tests
cargo build --release --quiet -p burrow-sandbox
STAGE=$(mktemp -d /tmp/burrow-bench.XXXXXX)
trap 'rm -rf "$STAGE"' EXIT
cp target/release/burrow "$STAGE/"
chmod -R a+rX "$STAGE"
RUNAS=()
if [ "$(id -u)" -eq 0 ]; then
  chown "$TEST_USER" "$STAGE"
  RUNAS=(runuser -u "$TEST_USER" --)
fi

# summary JSON TITLE [BASELINE]: hyperfine's results in JSON as one line a
# command (median ms, mean ± sd), with each median's ratio to BASELINE's.
summary() {
  python3 - "$@" <<'PY'
import json, sys
r = {x["command"]: x for x in json.load(open(sys.argv[1]))["results"]}
base = r[sys.argv[3]] if len(sys.argv) > 3 else None
width = max(len(n) for n in r) + 2
print(f"\n{sys.argv[2]}, median ms (mean ± sd)" + (f", ratio to {sys.argv[3]}" if base else ""))
for name, x in r.items():
    ratio = f"   {x['median'] / base['median']:.2f}x" if base else ""
    print(f"  {name:{width}s} {x['median']*1e3:8.2f} ({x['mean']*1e3:.2f} ± {x['stddev']*1e3:.2f}){ratio}")
PY
}

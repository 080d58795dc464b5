# Sourced by the union filesystem benchmarks, with WORK set to their
# working directory (BENCH_DIR overrides it): the machine set up, burrowfs
# built in release mode and staged in WORK, owned by the unprivileged
# account (burrow-test when run as root). Sets TEST_USER and RUNAS (the
# prefix that runs a command as that account). BURROWFS=PATH stages that
# binary instead (another build, for a before/after).
TEST_USER=${BURROW_TEST_USER:-burrow-test}
bash scripts/setup-host.sh --tests
cargo build --release --quiet -p burrow-unionfs
WORK=${BENCH_DIR:-$WORK}
mkdir -p "$WORK"
cp "${BURROWFS:-target/release/burrowfs}" "$WORK/burrowfs"
chmod a+rx "$WORK/burrowfs"
RUNAS=()
if [ "$(id -u)" -eq 0 ]; then RUNAS=(runuser -u "$TEST_USER" --); chown "$TEST_USER" "$WORK"; fi

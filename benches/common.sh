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

#!/usr/bin/env bash
# Builds burrow and runs the whole test suite (the test harness binaries
# cargo puts in target/debug/deps) as an unprivileged account.
# As root (CI) the tests run as $BURROW_TEST_USER (created by setup-host.sh);
# as any other user they run as that user.
set -euo pipefail
cd "$(dirname "$0")/.."
TEST_USER=${BURROW_TEST_USER:-burrow-test}
# BURROW_TEST_ONLY=REGEX (for developers): only the test binaries whose
# names match, and no lint or fuzz smoke. CI runs everything.
ONLY=${BURROW_TEST_ONLY:-}

bash scripts/setup-host.sh --tests

if [ -z "$ONLY" ]; then
  echo "== lint"
  cargo fmt --all -- --check
  cargo clippy --workspace --all-targets --quiet -- -D warnings
fi

echo "== build"
cargo build --workspace --bins --quiet
make --no-print-directory vm-init
# Built first on its own, so that a test that does not compile fails the run
# (the listing below would just leave it out).
cargo test --workspace --no-run --quiet
mapfile -t EXES < <(cargo test --workspace --no-run --message-format=json --quiet 2>/dev/null |
  grep -o '"executable":"[^"]*/deps/[^"]*"' | sed 's/"executable":"\(.*\)"/\1/' | sort -u)
if [ -n "$ONLY" ]; then
  mapfile -t EXES < <(printf '%s\n' "${EXES[@]}" | grep -E "/($ONLY)[^/]*$")
fi
[ ${#EXES[@]} -gt 0 ] || { echo "run-tests: no test executables were built" >&2; exit 1; }

# As root, install burrowfs where mount.fuse3 finds it (mount -t fuse.burrowfs).
if [ "$(id -u)" -eq 0 ]; then
  install -m 0755 target/debug/burrowfs /usr/local/bin/burrowfs
fi

# Stage everything where the unprivileged account can execute it.
STAGE=$(mktemp -d /tmp/burrow-tests.XXXXXX)
trap 'rm -rf "$STAGE"' EXIT
mkdir -p "$STAGE/bin" "$STAGE/tmp"
cp target/debug/burrow target/debug/burrowfs target/debug/burrow-net target/debug/burrow-runtime "$STAGE/bin/"
cp target/x86_64-unknown-linux-gnu/release/burrow-vm-init "$STAGE/bin/"
for exe in "${EXES[@]}"; do cp "$exe" "$STAGE/bin/"; done
cp -r tests/guest "$STAGE/guest"
chmod -R a+rX "$STAGE"; chmod 1777 "$STAGE/tmp"

RUNAS=() AS=$(id -un)
if [ "$(id -u)" -eq 0 ]; then RUNAS=(runuser -u "$TEST_USER" --) AS=$TEST_USER; fi
ENV=(env -i PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin
  HOME="$(getent passwd "$AS" | cut -d: -f6)"
  TMPDIR="$STAGE/tmp" LANG=C.UTF-8 BURROW_BIN="$STAGE/bin/burrow"
  BURROW_GUEST_BOOT="$STAGE/guest/boot.sh")

passed=0 failed=0 skipped=0 broken=0
for exe in "${EXES[@]}"; do
  name=$(basename "$exe")
  echo "== $name (as $AS)"
  log="$STAGE/$name.log"
  set +e
  (cd "$STAGE" && "${RUNAS[@]}" "${ENV[@]}" "$STAGE/bin/$name" --show-output \
    --skip _as_real_root) 2>&1 | tee "$log"
  rc=${PIPESTATUS[0]}
  set -e
  read -r p f < <(sed -n 's/^test result: [a-zA-Z]*\. \([0-9]*\) passed; \([0-9]*\) failed.*/\1 \2/p' "$log" |
    awk '{p+=$1; f+=$2} END {print p+0, f+0}')
  s=$(grep -c '^SKIPPED:' "$log" || true)
  passed=$((passed + p - s)); failed=$((failed + f)); skipped=$((skipped + s))
  if [ "$rc" -ne 0 ] && [ "$f" -eq 0 ]; then broken=$((broken + 1)); echo "run-tests: $name exited $rc" >&2; fi
done

# A bounded smoke of the burrowfs fuzz target (same operation model as the
# differential test), as the unprivileged account.
if [ -z "$ONLY" ]; then
echo "== fuzz smoke: union_ops (as $AS)"
FUZZ_BIN=$(bash fuzz/smoke.sh | tail -n 1)
cp "$FUZZ_BIN" "$STAGE/bin/union_ops"; chmod a+rx "$STAGE/bin/union_ops"
mkdir -p "$STAGE/tmp/corpus"; chmod 1777 "$STAGE/tmp/corpus"
set +e
(cd "$STAGE/tmp" && "${RUNAS[@]}" "${ENV[@]}" BURROWFS_BIN="$STAGE/bin/burrowfs" \
  "$STAGE/bin/union_ops" -runs="${BURROW_FUZZ_RUNS:-1000}" -max_total_time=120 -max_len=240 \
  -len_control=0 -seed=1 "$STAGE/tmp/corpus") > "$STAGE/fuzz.log" 2>&1
rc=$?
set -e
tail -n 3 "$STAGE/fuzz.log"
if [ "$rc" -eq 0 ]; then passed=$((passed + 1)); else failed=$((failed + 1)); cat "$STAGE/fuzz.log" | tail -n 40; fi
fi

# Tests named *_as_real_root need real root (FUSE passthrough; containerd,
# which runs as root): left out of the unprivileged pass above, each is
# run here as root, and must pass without a skip.
ROOT_TESTS=()
for exe in "${EXES[@]}"; do
  name=$(basename "$exe")
  while read -r t; do ROOT_TESTS+=("$name $t"); done < <("$exe" --list 2>/dev/null |
    sed -n 's/^\(.*_as_real_root\): test$/\1/p')
done
for entry in "${ROOT_TESTS[@]}"; do
  read -r name t <<< "$entry"
  if [ "$(id -u)" -ne 0 ]; then
    echo "SKIPPED: $t needs real root (make test as root runs it)" | tee -a "$STAGE/root-skips.log"
    skipped=$((skipped + 1))
    continue
  fi
  echo "== $name $t (as root)"
  set +e
  (cd "$STAGE" && env -i PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin \
    TMPDIR="$STAGE/tmp" LANG=C.UTF-8 BURROW_BIN="$STAGE/bin/burrow" \
    "$STAGE/bin/$name" --exact "$t" --show-output) > "$STAGE/root.log" 2>&1
  rc=$?
  set -e
  cat "$STAGE/root.log"
  if [ "$rc" -eq 0 ] && grep -q '^test result: ok. 1 passed' "$STAGE/root.log" &&
    ! grep -q '^SKIPPED:' "$STAGE/root.log"; then
    passed=$((passed + 1))
  else
    failed=$((failed + 1))
  fi
done
rm -f "$STAGE/root.log"

echo
grep -h '^SKIPPED:' "$STAGE"/*.log | sort | uniq -c | sed 's/^/  /' || true
echo "tests: $passed passed, $((failed + broken)) failed, $skipped skipped"
[ "$failed" -eq 0 ] && [ "$broken" -eq 0 ]

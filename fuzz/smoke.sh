#!/usr/bin/env bash
# A bounded run of the union_ops fuzz target, built with stable Rust and
# libFuzzer's coverage instrumentation (no sanitizer), as cargo fuzz does
# with --sanitizer none. `cargo fuzz run union_ops` works too where
# cargo-fuzz is installed.
#   fuzz/smoke.sh          builds it and prints the binary's path
# scripts/run-tests.sh runs it as the unprivileged account.
set -euo pipefail
cd "$(dirname "$0")"
export RUSTFLAGS="-Cpasses=sancov-module -Cllvm-args=-sanitizer-coverage-level=4 \
  -Cllvm-args=-sanitizer-coverage-inline-8bit-counters -Cllvm-args=-sanitizer-coverage-pc-table \
  -Cllvm-args=-sanitizer-coverage-trace-compares --cfg fuzzing -Cdebug-assertions -Coverflow-checks"
# --target keeps the instrumentation off build scripts and proc macros.
TARGET=$(rustc -vV | sed -n 's/^host: //p')
cargo build --release --quiet --target "$TARGET" --bin union_ops
echo "$PWD/target/$TARGET/release/union_ops"

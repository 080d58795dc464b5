//! Differential test of burrowfs against kernel overlayfs: random
//! sequences of operations over the same lower layers must give the same
//! result (or errno) on both mounts, and the same merged tree at the end.
//!
//! Both mounts need a user namespace with a mount namespace, so the test
//! re-runs this binary's `inner_differential` under `unshare -Urm`.
//!
//! What is compared, and the deliberate differences, are described in
//! `burrow_tests::differential`.

use std::path::Path;
use std::process::Command;

use burrow_tests::differential::{self, Mounts};
use burrow_tests::unionops::{Op, PATHS};
use burrow_tests::*;
use proptest::prelude::*;
use proptest::test_runner::{Config, TestRunner};

const INNER_ENV: &str = "BURROW_DIFF_INNER";

fn op_strategy() -> impl Strategy<Value = Op> {
    let path = 0..PATHS.len();
    prop_oneof![
        3 => (path.clone(), any::<u8>(), 0u16..3000, any::<bool>(), any::<bool>())
            .prop_map(|(path, byte, len, append, truncate)| Op::Write { path, byte, len, append, truncate }),
        1 => (path.clone(), 0u16..5000).prop_map(|(path, len)| Op::Truncate { path, len }),
        1 => (path.clone(), prop::sample::select(vec![0o644u32, 0o600, 0o755, 0o4755, 0o700]))
            .prop_map(|(path, mode)| Op::Chmod { path, mode }),
        2 => (path.clone(), path.clone(), 0u8..3).prop_map(|(from, to, flags)| Op::Rename { from, to, flags }),
        1 => (path.clone(), path.clone()).prop_map(|(from, to)| Op::Link { from, to }),
        1 => (path.clone(), path.clone()).prop_map(|(target, path)| Op::Symlink { target, path }),
        2 => path.clone().prop_map(|path| Op::Unlink { path }),
        1 => path.clone().prop_map(|path| Op::Rmdir { path }),
        2 => path.clone().prop_map(|path| Op::Mkdir { path }),
        1 => (path.clone(), any::<u8>()).prop_map(|(path, value)| Op::SetXattr { path, value }),
        1 => path.clone().prop_map(|path| Op::RemoveXattr { path }),
        2 => path.prop_map(|path| Op::Read { path }),
    ]
}

#[test]
fn burrowfs_matches_kernel_overlayfs_on_random_operations() {
    assert_unprivileged();
    let exe = std::env::current_exe().unwrap();
    let out = output(
        Command::new("unshare")
            .args(["--user", "--map-root-user", "--mount"])
            .arg(&exe)
            .args([
                "--exact",
                "inner_differential",
                "--ignored",
                "--nocapture",
                "--test-threads=1",
            ])
            .env(INNER_ENV, "1")
            .env("BURROWFS_BIN", burrow_bin().with_file_name("burrowfs")),
    );
    print!("{}", out.stdout);
    if out.stdout.contains("SKIPPED:") {
        return;
    }
    assert_eq!(
        out.code, 0,
        "differential run failed:\n{}\n{}",
        out.stdout, out.stderr
    );
    assert!(out.stdout.contains("cases passed"), "{}", out.stdout);
}

fn run_case(burrowfs: &Path, ops: &[Op]) -> Result<(), TestCaseError> {
    differential::run_case(burrowfs, ops).map_err(TestCaseError::fail)
}

#[test]
#[ignore = "run by burrowfs_matches_kernel_overlayfs_on_random_operations"]
fn inner_differential() {
    if std::env::var_os(INNER_ENV).is_none() {
        return;
    }
    let burrowfs = std::path::PathBuf::from(std::env::var_os("BURROWFS_BIN").unwrap());
    if let Err(e) = Mounts::new(&burrowfs) {
        if e.starts_with("SKIPPED:") {
            println!("{e}");
            return;
        }
        panic!("{e}");
    }
    // Cases random runs have found, kept so that every run checks them.
    let regressions: [&[Op]; 1] = [&[
        // A name of a hard link written through, then its directory moved
        // (the kernel's stale per-name size, see `differential`).
        Op::Link { from: 10, to: 2 },
        Op::Write {
            path: 2,
            byte: 0,
            len: 10,
            append: false,
            truncate: false,
        },
        Op::Rename {
            from: 7,
            to: 6,
            flags: 0,
        },
    ]];
    for ops in regressions {
        if let Err(e) = differential::run_case(&burrowfs, ops) {
            panic!("regression case {ops:?}: {e}");
        }
    }
    let cases = std::env::var("BURROW_DIFF_CASES")
        .ok()
        .and_then(|c| c.parse().ok())
        .unwrap_or(64);
    let mut runner = TestRunner::new(Config {
        cases,
        ..Config::default()
    });
    let result = runner.run(&prop::collection::vec(op_strategy(), 1..30), |ops| {
        run_case(&burrowfs, &ops)
    });
    if let Err(e) = result {
        panic!("{e}");
    }
    println!("{cases} cases passed");
}

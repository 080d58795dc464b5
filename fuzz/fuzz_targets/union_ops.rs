//! Fuzzes burrowfs with the differential operation model: each input is a
//! sequence of file operations, applied to burrowfs and to kernel overlayfs
//! over the same layers; any difference in results or trees is a crash.
//! Needs BURROWFS_BIN (the burrowfs binary) and unprivileged user
//! namespaces with overlayfs (`userxattr`).

#![no_main]

use std::path::PathBuf;
use std::sync::OnceLock;

use libfuzzer_sys::fuzz_target;

static BURROWFS: OnceLock<PathBuf> = OnceLock::new();

fuzz_target!(
    init: {
        burrow_tests::differential::enter_private_namespaces()
            .expect("a user namespace with a mount namespace");
        let bin = std::env::var_os("BURROWFS_BIN").expect("BURROWFS_BIN names the burrowfs binary");
        BURROWFS.set(PathBuf::from(bin)).expect("set once");
    },
    |data: &[u8]| {
        let ops = burrow_tests::unionops::decode(data);
        if ops.is_empty() {
            return;
        }
        if let Err(e) = burrow_tests::differential::run_case(BURROWFS.get().unwrap(), &ops) {
            panic!("{e}");
        }
    }
);

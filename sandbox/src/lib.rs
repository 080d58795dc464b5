//! burrow's sandbox launcher: user namespace first, then mount, pid, ipc,
//! uts, net and cgroup namespaces, a read-only root built with the new mount
//! API, and a tiny pid 1 that reaps and forwards signals.

pub mod caps;
pub mod cgroup;
pub mod cli;
pub mod config;
pub mod console;
pub mod error;
pub mod guard;
pub mod hooks;
pub mod idmap;
pub mod image;
pub mod init;
pub mod inside;
pub mod join;
pub use burrow_vm_init::landlock_policy;
pub mod launch;
pub mod mapped;
pub mod masks;
pub mod net;
pub mod pidns;
pub mod profile;
pub mod rlimits;
pub mod rootfs;
pub mod seccomp;
pub mod security;
pub mod shadow;
pub mod signals;
pub mod status;
pub mod storage;
pub mod sys;
pub mod sysctl;
pub mod union;
pub mod vm;

pub use error::{Error, Result};

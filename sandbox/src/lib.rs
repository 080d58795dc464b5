//! burrow's sandbox launcher: user namespace first, then mount, pid, ipc,
//! uts, net and cgroup namespaces, a read-only root built with the new mount
//! API, and a tiny pid 1 that reaps and forwards signals.

pub mod cli;
pub mod config;
pub mod error;
pub mod idmap;
pub mod init;
pub mod launch;
pub mod rootfs;
pub mod signals;
pub mod status;
pub mod sys;
pub mod union;

pub use error::{Error, Result};

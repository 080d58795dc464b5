//! `--sysctl NAME=VALUE` (OCI's linux.sysctl, podman's --sysctl): kernel
//! settings of the sandbox's own namespaces only. Those of its IPC
//! namespace (kernel.shm*, kernel.msg*, kernel.sem, fs.mqueue.*) and of its
//! network namespace (net.*) are pid 1's to write, in the sandbox's own
//! /proc; the net.* of a namespace joined with `--netns` are written by
//! the launcher once it has joined it, before the sandbox's user namespace
//! exists (inside it, burrow has no privileges over that namespace).
//! Anything else would change the host and is refused.

use std::os::fd::BorrowedFd;
use std::path::PathBuf;

use crate::error::{Context, Error, Result};
use crate::sys;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Sysctl {
    pub name: String,
    pub value: String,
}

impl Sysctl {
    /// Whether the launcher writes it, in a network namespace joined by
    /// path, rather than pid 1.
    pub fn of_joined_netns(&self, joined: bool) -> bool {
        joined && self.name.starts_with("net.")
    }

    /// Its file, relative to a root with /proc mounted.
    fn path(&self) -> PathBuf {
        PathBuf::from("proc/sys").join(self.name.replace('.', "/"))
    }

    /// Writes it in the /proc of the root `root` (pid 1: the sandbox's,
    /// before it enters it), or of the launcher's own root with `/`.
    pub fn write_in_root(&self, root: BorrowedFd) -> Result<()> {
        let what = || format!("--sysctl {}", self.name);
        let fd = sys::open_in_root(root, &self.path(), libc::O_WRONLY).ctx(what)?;
        nix::unistd::write(&fd, self.value.as_bytes())
            .map(drop)
            .ctx(what)
    }
}

/// Parses `--sysctl` values; `own_net`: the sandbox has a network
/// namespace (its own or one joined with --netns).
pub fn parse(specs: &[String], own_net: bool) -> Result<Vec<Sysctl>> {
    specs
        .iter()
        .map(|spec| {
            let bad = |why: &str| Error::usage(format!("--sysctl {spec}: {why}"));
            let (name, value) = spec
                .split_once('=')
                .ok_or_else(|| bad("expected NAME=VALUE"))?;
            if name.is_empty()
                || name
                    .split('.')
                    .any(|p| p.is_empty() || p == ".." || p.contains('/'))
            {
                return Err(bad("not a sysctl name"));
            }
            if value.contains('\n') {
                return Err(bad("the value holds a newline"));
            }
            let ipc = ["kernel.shm", "kernel.msg", "kernel.sem"]
                .iter()
                .any(|p| name.starts_with(p))
                || name.starts_with("fs.mqueue.");
            let net = name.starts_with("net.");
            if net && !own_net {
                return Err(bad(
                    "the sandbox shares the host's network namespace (--net host)",
                ));
            }
            if !ipc && !net {
                return Err(bad(
                    "not a setting of the sandbox's own namespaces (kernel.shm*, kernel.msg*, \
                     kernel.sem, fs.mqueue.*, net.*)",
                ));
            }
            Ok(Sysctl {
                name: name.to_string(),
                value: value.to_string(),
            })
        })
        .collect()
}

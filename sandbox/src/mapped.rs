//! Work done as root of a user namespace with the sandbox's id maps, as
//! `podman unshare` does: what a sandbox wrote (an `--upper` layer whose
//! files belong to subordinate ids, modes the caller alone could not
//! read) and what the store holds are read with the owners the sandbox
//! saw, and files written are still the caller's on the host.

use std::io::{Read, Write};

use nix::fcntl::OFlag;
use serde::{de::DeserializeOwned, Serialize};

use crate::error::{Context, Error, Result};
use crate::idmap::IdMaps;

/// Runs `work` in a child process that is root (with every capability)
/// in a new user namespace mapped by `maps`; gives what it returned. The
/// caller must be single-threaded (the child is forked).
pub fn run<T: Serialize + DeserializeOwned>(
    maps: &IdMaps,
    work: impl FnOnce() -> std::result::Result<T, String>,
) -> Result<T> {
    let (ready_r, ready_w) = nix::unistd::pipe2(OFlag::O_CLOEXEC).ctx(|| "pipe")?;
    let (go_r, go_w) = nix::unistd::pipe2(OFlag::O_CLOEXEC).ctx(|| "pipe")?;
    let (out_r, out_w) = nix::unistd::pipe2(OFlag::O_CLOEXEC).ctx(|| "pipe")?;
    let Some(child) = crate::sys::fork().ctx(|| "fork")? else {
        drop((ready_r, go_w, out_r));
        let result = (|| {
            nix::sched::unshare(nix::sched::CloneFlags::CLONE_NEWUSER)
                .map_err(|e| format!("a user namespace: {}", e.desc()))?;
            let mut ready = std::fs::File::from(ready_w);
            ready.write_all(b"1").map_err(|e| e.to_string())?;
            let mut go = [0u8; 1];
            match std::fs::File::from(go_r).read_exact(&mut go) {
                Ok(()) => work(),
                // The parent could not map us and has said why.
                Err(_) => crate::sys::exit_now(125),
            }
        })();
        let text = serde_json::to_vec(&result).unwrap_or_default();
        let code = i32::from(std::fs::File::from(out_w).write_all(&text).is_err());
        crate::sys::exit_now(code);
    };
    drop((ready_w, go_r, out_w));
    let reap = || nix::sys::wait::waitpid(child, None);
    let mut ready = [0u8; 1];
    let unshared = std::fs::File::from(ready_r).read_exact(&mut ready).is_ok();
    if unshared {
        if let Err(e) = maps.apply(child) {
            drop(go_w);
            let _ = reap();
            return Err(e);
        }
        let _ = std::fs::File::from(go_w).write_all(b"1");
    } else {
        drop(go_w);
    }
    let mut text = Vec::new();
    let _ = std::fs::File::from(out_r).read_to_end(&mut text);
    let status = reap();
    let result: std::result::Result<T, String> = serde_json::from_slice(&text).map_err(|_| {
        use nix::sys::wait::WaitStatus;
        let how = match status {
            Ok(WaitStatus::Signaled(_, sig, _)) => format!("was killed by {sig}"),
            Ok(WaitStatus::Exited(_, code)) => format!("exited with status {code}"),
            _ => "ended".to_string(),
        };
        Error::usage(format!(
            "the worker in the user namespace {how} without an answer"
        ))
    })?;
    result.map_err(Error::usage)
}

//! OCI hooks: programs an engine has the runtime run at points of a
//! container's life, each given the container's state (runtime-spec's
//! JSON) on its standard input. The OCI runtime runs those of the
//! runtime's namespaces itself; the two that run inside the sandbox are
//! the launcher's: createContainer, by pid 1 once the new root is built
//! and before it enters it (so the hook's path is the host's), and
//! startContainer, by the command's process after `start` and before its
//! exec (the hook's path is the container's).

use std::io::{Read, Seek, Write};
use std::os::fd::AsFd;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;
use std::time::Duration;

use crate::sys;

/// One hook: runtime-spec's `path`, `args` (argv, its first the name the
/// program sees), `env` (all of it) and `timeout`.
#[derive(Debug, Clone)]
pub struct Hook {
    pub path: PathBuf,
    pub args: Vec<String>,
    pub env: Vec<String>,
    pub timeout: Option<Duration>,
}

/// The hooks the sandbox's own processes run, and the container's state
/// for them (its `pid` is filled in by pid 1, which knows it).
#[derive(Debug, Clone, Default)]
pub struct SandboxHooks {
    pub create_container: Vec<Hook>,
    pub start_container: Vec<Hook>,
    pub state: serde_json::Value,
}

/// The most of a failed hook's output an error quotes.
const OUTPUT_QUOTED: usize = 400;

/// pid 1's pid where the runtime runs (read by pid 1 from the host's
/// /proc before it leaves it; inherited by the command's process).
static CONTAINER_PID: OnceLock<i32> = OnceLock::new();

/// In pid 1, while /proc is still the host's: notes its pid there.
pub fn note_container_pid() {
    let pid = std::fs::read_link("/proc/self")
        .ok()
        .and_then(|p| p.to_str()?.parse().ok());
    if let Some(pid) = pid {
        let _ = CONTAINER_PID.set(pid);
    }
}

impl SandboxHooks {
    /// The state the hooks of stage `status` are given.
    fn state(&self, status: &str) -> String {
        let mut s = self.state.clone();
        s["status"] = status.into();
        s["pid"] = CONTAINER_PID.get().copied().unwrap_or(0).into();
        s.to_string()
    }

    /// In pid 1, whose own root is a scratch directory by then: the
    /// hooks' root is `host_root`, where pid 1 holds the host's.
    pub fn run_create_container(&self, host_root: &Path) -> Result<(), String> {
        let state = self.state("created");
        for (i, h) in self.create_container.iter().enumerate() {
            run_in(
                h,
                &state,
                &format!("hooks.createContainer[{i}]"),
                Some(host_root),
            )?;
        }
        Ok(())
    }

    pub fn run_start_container(&self) -> Result<(), String> {
        let state = self.state("created");
        for (i, h) in self.start_container.iter().enumerate() {
            run(h, &state, &format!("hooks.startContainer[{i}]"))?;
        }
        Ok(())
    }
}

/// Runs `hook` with `state` on its stdin and waits for it (at most its
/// timeout: then it is killed). Its output goes into the error when it
/// fails, which names it as `what`.
pub fn run(hook: &Hook, state: &str, what: &str) -> Result<(), String> {
    run_in(hook, state, what, None)
}

/// [`run`], the hook's root `root` when given (its path resolved there).
fn run_in(hook: &Hook, state: &str, what: &str, root: Option<&Path>) -> Result<(), String> {
    let name = format!("{what} {}", hook.path.display());
    let out = sys::memfd("burrow-hook-output").map_err(|e| format!("{name}: {e}"))?;
    let err_out = out.try_clone().map_err(|e| format!("{name}: {e}"))?;
    // The state from a file, not a pipe: a hook that reads none of a
    // large one cannot block the runtime.
    let mut input = sys::memfd("burrow-hook-state").map_err(|e| format!("{name}: {e}"))?;
    input
        .write_all(state.as_bytes())
        .and_then(|()| input.rewind())
        .map_err(|e| format!("{name}: {e}"))?;
    let mut cmd = Command::new(&hook.path);
    // A group of its own, so that a timeout ends all it started.
    std::os::unix::process::CommandExt::process_group(&mut cmd, 0);
    if let Some((first, rest)) = hook.args.split_first() {
        std::os::unix::process::CommandExt::arg0(&mut cmd, first);
        cmd.args(rest);
    }
    cmd.env_clear();
    for e in &hook.env {
        let (k, v) = e.split_once('=').unwrap_or((e, ""));
        cmd.env(k, v);
    }
    if let Some(root) = root {
        let root = std::ffi::CString::new(root.as_os_str().as_encoded_bytes())
            .map_err(|e| format!("{name}: {e}"))?;
        // SAFETY: between fork and exec the closure makes two system calls
        // on memory it owns (no allocation, no lock): async-signal-safe.
        unsafe {
            std::os::unix::process::CommandExt::pre_exec(&mut cmd, move || {
                if libc::chroot(root.as_ptr()) != 0 || libc::chdir(c"/".as_ptr()) != 0 {
                    return Err(std::io::Error::last_os_error());
                }
                Ok(())
            });
        }
    }
    // (std resets the signal mask and SIGPIPE in the child: pid 1's
    // blocked signals do not reach the hook.)
    let mut child = cmd
        .stdin(input)
        .stdout(out.try_clone().map_err(|e| format!("{name}: {e}"))?)
        .stderr(err_out)
        .spawn()
        .map_err(|e| format!("{name}: {}", sys::errno_text(&e)))?;
    let pid = nix::unistd::Pid::from_raw(child.id() as i32);
    let ended = match sys::pidfd_open(pid) {
        Ok(fd) => sys::wait_pidfd(fd.as_fd(), hook.timeout),
        Err(_) => true,
    };
    if !ended {
        let _ = nix::sys::signal::killpg(pid, nix::sys::signal::Signal::SIGKILL);
        let _ = child.wait();
        return Err(format!(
            "{name}: still running after its timeout of {} s",
            hook.timeout.unwrap_or_default().as_secs()
        ));
    }
    let status = child.wait().map_err(|e| format!("{name}: {e}"))?;
    if status.success() {
        return Ok(());
    }
    let mut text = String::new();
    let mut out = out;
    let _ = out.rewind();
    let _ = out.take(OUTPUT_QUOTED as u64).read_to_string(&mut text);
    let said = text.split_whitespace().collect::<Vec<_>>().join(" ");
    let said = if said.is_empty() {
        String::new()
    } else {
        format!(": {said}")
    };
    Err(format!("{name} failed ({status}){said}"))
}

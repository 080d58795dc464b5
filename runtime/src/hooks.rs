//! The spec's hooks: createRuntime and prestart (run by `create` once the
//! sandbox is made, before it is recorded; a failure ends it), poststart
//! (by `start`, once the command goes on to its exec) and poststop (by
//! `delete`, once the container is gone): failures of those two are
//! warnings, as runtime-spec says. createContainer and startContainer run
//! in the sandbox, by the launcher (see [`burrow_sandbox::hooks`]).
//!
//! createRuntime and prestart hooks run where the runtime was called: the
//! launcher joins the namespaces an engine names by path (a pod's network,
//! IPC and UTS namespaces) in the runtime's own process, so they are run by
//! a [`Runner`] forked before it does.
//!
//! burrow builds a sandbox's root in one pass, so its createContainer
//! hooks run before the runtime's createRuntime and prestart ones: a spec
//! with both is refused rather than run out of order.

use std::path::Path;
use std::time::Duration;

use burrow_sandbox::hooks::{Hook, SandboxHooks};
use oci_spec::runtime::LinuxNamespaceType;
use oci_spec::runtime::Spec;
use serde_json::{json, Value};

use crate::spec::{refuse, Refused};

/// The container's state as hooks are given it (runtime-spec's state).
pub fn state(spec: &Spec, id: &str, bundle: &Path, status: &str, pid: i32) -> Value {
    let mut v = json!({
        "ociVersion": spec.version(),
        "id": id,
        "status": status,
        "pid": pid,
        "bundle": bundle,
    });
    if let Some(a) = spec.annotations().as_ref().filter(|a| !a.is_empty()) {
        v["annotations"] = json!(a);
    }
    v
}

fn convert(list: &Option<Vec<oci_spec::runtime::Hook>>) -> Vec<Hook> {
    list.iter()
        .flatten()
        .map(|h| Hook {
            path: h.path().clone(),
            args: h.args().clone().unwrap_or_default(),
            env: h.env().clone().unwrap_or_default(),
            timeout: h
                .timeout()
                .map(|t| Duration::from_secs(u64::try_from(t).unwrap_or(0))),
        })
        .collect()
}

/// What runtime-spec requires of every hook: an absolute path, a timeout
/// greater than zero.
pub fn check(spec: &Spec) -> Result<(), Refused> {
    let Some(h) = spec.hooks() else {
        return Ok(());
    };
    let stages = [
        ("prestart", h.prestart()),
        ("createRuntime", h.create_runtime()),
        ("createContainer", h.create_container()),
        ("startContainer", h.start_container()),
        ("poststart", h.poststart()),
        ("poststop", h.poststop()),
    ];
    for (stage, list) in stages {
        for (i, hook) in list.iter().flatten().enumerate() {
            let field = || format!("hooks.{stage}[{i}]");
            if !hook.path().is_absolute() {
                return Err(refuse(field(), "path: not absolute"));
            }
            if hook.timeout().is_some_and(|t| t <= 0) {
                return Err(refuse(field(), "timeout: not greater than zero"));
            }
        }
    }
    Ok(())
}

/// The hooks the sandbox runs, with the state they are given (its pid
/// filled in by pid 1); None when the spec has none of them. Refuses
/// what cannot be run as the spec orders it.
pub fn for_sandbox(spec: &Spec, id: &str, bundle: &Path) -> Result<Option<SandboxHooks>, Refused> {
    check(spec)?;
    let Some(h) = spec.hooks() else {
        return Ok(None);
    };
    let create_container = convert(h.create_container());
    let start_container = convert(h.start_container());
    let runtime_first =
        !convert(h.create_runtime()).is_empty() || !convert(h.prestart()).is_empty();
    if !create_container.is_empty() && runtime_first {
        return Err(refuse(
            "hooks.createContainer",
            "with createRuntime or prestart hooks too: burrow builds the root in one pass, \
             so it cannot run createContainer after them",
        ));
    }
    if !create_container.is_empty() && crate::spec::joins(spec, LinuxNamespaceType::Pid) {
        return Err(refuse(
            "hooks.createContainer",
            "with a pid namespace joined by path: what they leave running would be the pod's, \
             beyond the container's reach",
        ));
    }
    if create_container.is_empty() && start_container.is_empty() {
        return Ok(None);
    }
    Ok(Some(SandboxHooks {
        create_container,
        start_container,
        state: state(spec, id, bundle, "created", 0),
    }))
}

/// The runtime's own hooks of `stage` (createRuntime, prestart, poststart
/// or poststop), in order; the first failure is the error.
pub fn run(spec: &Spec, stage: &str, state: &Value) -> Result<(), String> {
    let Some(h) = spec.hooks() else {
        return Ok(());
    };
    let list = match stage {
        "createRuntime" => h.create_runtime(),
        "prestart" => h.prestart(),
        "poststart" => h.poststart(),
        "poststop" => h.poststop(),
        _ => unreachable!("a stage the runtime runs"),
    };
    let text = state.to_string();
    for (i, hook) in convert(list).iter().enumerate() {
        burrow_sandbox::hooks::run(hook, &text, &format!("hooks.{stage}[{i}]"))?;
    }
    Ok(())
}

/// Runs `stage`'s hooks, whose failures are warnings (poststart and
/// poststop).
pub fn run_warning(spec: &Spec, stage: &str, state: &Value) {
    if let Err(msg) = run(spec, stage, state) {
        eprintln!("burrow-runtime: warning: {msg}");
    }
}

/// What a [`Runner`] says when every hook succeeded.
const OK: &str = "ok";

/// A process forked before the sandbox is made, in the runtime's own
/// namespaces, that runs the createRuntime and prestart hooks once it is
/// given the state (and exits without running them if never given it).
pub struct Runner {
    pid: nix::unistd::Pid,
    to: Option<std::fs::File>,
    from: std::fs::File,
}

impl Runner {
    /// None when the spec has no such hooks.
    pub fn spawn(spec: &Spec) -> anyhow::Result<Option<Runner>> {
        let h = spec.hooks().as_ref();
        if h.is_none_or(|h| {
            convert(h.create_runtime()).is_empty() && convert(h.prestart()).is_empty()
        }) {
            return Ok(None);
        }
        let (state_r, state_w) = nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC)?;
        let (result_r, result_w) = nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC)?;
        match burrow_sandbox::sys::fork()? {
            Some(pid) => Ok(Some(Runner {
                pid,
                to: Some(state_w.into()),
                from: result_r.into(),
            })),
            None => {
                drop((state_w, result_r));
                // One line: the sandbox's processes (forked from the
                // runtime after this) hold the pipe's other end too.
                let mut text = String::new();
                let mut input = std::io::BufReader::new(std::fs::File::from(state_r));
                let given = std::io::BufRead::read_line(&mut input, &mut text).is_ok()
                    && text.ends_with('\n');
                let mut output = std::fs::File::from(result_w);
                if given {
                    let result = serde_json::from_str(&text)
                        .map_err(|e| e.to_string())
                        .and_then(|state: Value| {
                            ["createRuntime", "prestart"]
                                .iter()
                                .try_for_each(|stage| run(spec, stage, &state))
                        });
                    // "ok", or what failed: never nothing, which is what a
                    // runner killed before it finished leaves.
                    let said = result.err().unwrap_or_else(|| OK.to_string());
                    let _ = std::io::Write::write_all(&mut output, said.as_bytes());
                }
                burrow_sandbox::sys::exit_now(0)
            }
        }
    }

    /// Runs the hooks with `state`; their first failure is the error.
    pub fn run(mut self, state: &Value) -> Result<(), String> {
        if let Some(mut to) = self.to.take() {
            std::io::Write::write_all(&mut to, format!("{state}\n").as_bytes())
                .map_err(|e| format!("hooks: {e}"))?;
        }
        let mut said = String::new();
        std::io::Read::read_to_string(&mut self.from, &mut said)
            .map_err(|e| format!("hooks: {e}"))?;
        match said.as_str() {
            OK => Ok(()),
            "" => Err("hooks: the process running them ended before they were done".to_string()),
            _ => Err(said),
        }
    }
}

impl Drop for Runner {
    fn drop(&mut self) {
        drop(self.to.take());
        let _ = nix::sys::wait::waitpid(self.pid, None);
    }
}

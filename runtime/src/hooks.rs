//! The spec's hooks: createRuntime and prestart (run by `create` once the
//! sandbox is made, before it is recorded; a failure ends it), poststart
//! (by `start`, once the command goes on to its exec) and poststop (by
//! `delete`, once the container is gone): failures of those two are
//! warnings, as runtime-spec says. createContainer and startContainer run
//! in the sandbox, by the launcher (see [`burrow_sandbox::hooks`]).
//!
//! burrow builds a sandbox's root in one pass, so its createContainer
//! hooks run before the runtime's createRuntime and prestart ones: a spec
//! with both is refused rather than run out of order.

use std::path::Path;
use std::time::Duration;

use burrow_sandbox::hooks::{Hook, SandboxHooks};
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
                .map(|t| Duration::from_secs(u64::try_from(t.max(1)).unwrap_or(1))),
        })
        .collect()
}

/// The hooks the sandbox runs, with the state they are given (its pid
/// filled in by pid 1); None when the spec has none of them. Refuses
/// what cannot be run as the spec orders it.
pub fn for_sandbox(spec: &Spec, id: &str, bundle: &Path) -> Result<Option<SandboxHooks>, Refused> {
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

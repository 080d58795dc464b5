//! Annotations that select burrow's own features for a container, as an
//! engine passes them (`podman run --annotation run.burrow.vm=true`):
//! each `run.burrow.KEY` is the `burrow run` flag of that name. A key
//! burrow does not know, or a value it cannot take, is refused by name.
//! None weakens what the spec itself asks (`--seccomp-log`, which would
//! turn the spec's seccomp filter into a log, is not offered).

use std::ffi::OsString;

use oci_spec::runtime::Spec;

use crate::spec::{refuse, Refused};

/// How a key's value becomes arguments.
#[derive(Clone, Copy)]
enum Kind {
    /// "true" or "false": the flag, or nothing.
    Switch,
    /// Comma-separated values: the flag once for each.
    List,
    /// `run.burrow.net`: "slirp", burrow's userspace network in the
    /// container's new network namespace.
    Net,
}

const KEYS: [(&str, Kind); 11] = [
    ("vm", Kind::Switch),
    ("landlock", Kind::Switch),
    ("landlock-strict", Kind::Switch),
    ("disable-userns", Kind::Switch),
    ("allow-read", Kind::List),
    ("allow-write", Kind::List),
    ("allow-exec", Kind::List),
    ("allow-bind", Kind::List),
    ("allow-connect", Kind::List),
    ("net", Kind::Net),
    ("allow-host-loopback", Kind::Switch),
];

/// The annotations' arguments of `burrow run`; `new_netns`: the spec
/// asks for a new network namespace (not one joined by path).
pub fn args(spec: &Spec, new_netns: bool) -> Result<Vec<OsString>, Refused> {
    let mut out = Vec::new();
    let mut given: Vec<(&String, &String)> = spec
        .annotations()
        .iter()
        .flatten()
        .filter(|(k, _)| k.starts_with("run.burrow."))
        .collect();
    given.sort();
    for (key, value) in given {
        let field = || format!("annotations.{key}");
        let name = &key["run.burrow.".len()..];
        let Some(&(_, kind)) = KEYS.iter().find(|(k, _)| *k == name) else {
            return Err(refuse(field(), "not a burrow setting"));
        };
        match kind {
            Kind::Switch => match value.as_str() {
                "true" => out.push(format!("--{name}").into()),
                "false" => {}
                v => return Err(refuse(field(), format!("{v:?}: true or false"))),
            },
            Kind::List => {
                for v in value.split(',').filter(|v| !v.is_empty()) {
                    out.push(format!("--{name}={v}").into());
                }
            }
            Kind::Net => {
                if value != "slirp" {
                    return Err(refuse(field(), format!("{value:?}: only slirp")));
                }
                if !new_netns {
                    return Err(refuse(
                        field(),
                        "needs a new network namespace in linux.namespaces",
                    ));
                }
                out.push("--net=slirp".into());
            }
        }
    }
    Ok(out)
}

//! What the runtime tells about containers: `state`, `list`, `ps` and
//! `features`, in runc's formats.

use std::collections::{HashMap, HashSet};
use std::io::Write;

use anyhow::{bail, Context, Result};
use oci_spec::runtime::{
    ApparmorBuilder, CgroupBuilder, FeaturesBuilder, LinuxFeatureBuilder, LinuxNamespaceType,
    LinuxSeccompAction, SeccompBuilder, SelinuxBuilder,
};
use serde_json::{json, Value};

use crate::container::{Container, Proc, ProcStat, StateRoot, Status};

/// runtime-spec's state of a container, with runc's additions (rootfs,
/// created, owner). A stopped container's pid is 0, as runc gives it.
fn state_json(c: &Container) -> Value {
    let status = c.status();
    let Some(r) = &c.record else {
        return json!({"ociVersion": oci_spec::runtime::VERSION, "id": c.id,
                      "pid": 0, "status": status.name(), "bundle": "", "rootfs": "",
                      "created": "", "owner": owner(c)});
    };
    let pid = if status == Status::Stopped {
        0
    } else {
        r.init.pid
    };
    let mut v = json!({
        "ociVersion": r.oci_version,
        "id": r.id,
        "pid": pid,
        "status": status.name(),
        "bundle": r.bundle,
        "rootfs": r.rootfs,
        "created": r.created,
        "owner": owner(c),
    });
    if !r.annotations.is_empty() {
        v["annotations"] = json!(r.annotations);
    }
    v
}

/// The name of the state directory's owner (runc's OWNER column).
fn owner(c: &Container) -> String {
    use std::os::unix::fs::MetadataExt;
    let uid = std::fs::metadata(&c.dir).map(|m| m.uid()).unwrap_or(0);
    nix::unistd::User::from_uid(nix::unistd::Uid::from_raw(uid))
        .ok()
        .flatten()
        .map_or_else(|| uid.to_string(), |u| u.name)
}

pub fn state(root: &StateRoot, id: &str) -> Result<()> {
    let c = Container::load(root, id)?;
    print_out(&serde_json::to_string_pretty(&state_json(&c))?)
}

pub fn list(root: &StateRoot, json_format: bool, quiet: bool) -> Result<()> {
    let containers: Vec<Container> = root
        .ids()?
        .iter()
        .filter_map(|id| Container::load(root, id).ok())
        .collect();
    let mut out = std::io::stdout().lock();
    if quiet {
        for c in &containers {
            writeln!(out, "{}", c.id)?;
        }
        return Ok(());
    }
    if json_format {
        let all: Vec<Value> = containers.iter().map(state_json).collect();
        writeln!(out, "{}", serde_json::to_string(&all)?)?;
        return Ok(());
    }
    let mut rows = vec![["ID", "PID", "STATUS", "BUNDLE", "CREATED", "OWNER"].map(String::from)];
    for c in &containers {
        let s = state_json(c);
        let text = |k: &str| match &s[k] {
            Value::String(v) => v.clone(),
            other => other.to_string(),
        };
        rows.push(["id", "pid", "status", "bundle", "created", "owner"].map(text));
    }
    // Columns as runc's tabwriter lays them: at least 12 wide, one space
    // between.
    let widths: Vec<usize> = (0..6)
        .map(|i| {
            rows.iter()
                .map(|r| r[i].len() + 1)
                .max()
                .unwrap_or(0)
                .max(12)
        })
        .collect();
    for row in &rows {
        let mut line = String::new();
        for (i, cell) in row.iter().enumerate() {
            if i + 1 == row.len() {
                line.push_str(cell);
            } else {
                line.push_str(&format!("{cell:<w$}", w = widths[i]));
            }
        }
        writeln!(out, "{line}")?;
    }
    Ok(())
}

/// The processes of the container whose pid 1 is `init`: it and every
/// descendant, parents before children; then those `exec` started that
/// have left the tree (re-parented to an engine's subreaper), known by
/// their pid namespace, the command's.
pub fn processes(init: &Proc, command: Option<&Proc>) -> Vec<Proc> {
    if !init.alive() {
        return Vec::new();
    }
    let mut children: HashMap<i32, Vec<Proc>> = HashMap::new();
    let mut every = Vec::new();
    for pid in std::fs::read_dir("/proc")
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| e.file_name().to_str()?.parse::<i32>().ok())
    {
        if let Some(s) = ProcStat::read(pid) {
            let p = Proc {
                pid,
                start_time: s.start_time,
            };
            children.entry(s.ppid).or_default().push(p);
            every.push(p);
        }
    }
    let mut all = vec![*init];
    let mut i = 0;
    while i < all.len() {
        if let Some(kids) = children.get(&all[i].pid) {
            // A child cannot be older than its parent: an older one is a
            // reused pid's.
            let parent_start = all[i].start_time;
            all.extend(kids.iter().filter(|k| k.start_time >= parent_start));
        }
        i += 1;
    }
    let ns = |p: &Proc| {
        use std::os::unix::fs::MetadataExt;
        std::fs::metadata(format!("/proc/{}/ns/pid", p.pid))
            .ok()
            .map(|m| (m.dev(), m.ino()))
    };
    if let Some(theirs) = command.filter(|c| c.alive()).and_then(ns) {
        let known: HashSet<i32> = all.iter().map(|p| p.pid).collect();
        all.extend(
            every
                .into_iter()
                .filter(|p| !known.contains(&p.pid) && p.start_time >= init.start_time)
                .filter(|p| ns(p) == Some(theirs)),
        );
    }
    all
}

pub fn ps(root: &StateRoot, id: &str, json_format: bool, ps_args: &[String]) -> Result<()> {
    let c = Container::load(root, id)?;
    if c.status() == Status::Stopped {
        bail!("container {id:?} is not running: it is stopped");
    }
    let pids: Vec<i32> = match &c.record {
        Some(r) => processes(&r.init, r.own_pid_ns())
            .iter()
            .map(|p| p.pid)
            .collect(),
        None => Vec::new(),
    };
    if json_format {
        return print_out(&serde_json::to_string(&pids)?);
    }
    // As runc: ps(1)'s own table, only the container's lines.
    let args: Vec<&str> = if ps_args.is_empty() {
        vec!["-ef"]
    } else {
        ps_args.iter().map(String::as_str).collect()
    };
    let out = std::process::Command::new("ps")
        .args(&args)
        .output()
        .context("running ps")?;
    if !out.status.success() {
        bail!(
            "ps {}: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    let text = String::from_utf8_lossy(&out.stdout);
    let mut lines = text.lines();
    let header = lines.next().unwrap_or_default();
    let Some(col) = header.split_whitespace().position(|h| h == "PID") else {
        bail!("ps {}: its output has no PID column", args.join(" "));
    };
    let wanted: HashSet<i32> = pids.into_iter().collect();
    let mut table = header.to_string();
    for line in lines {
        let pid = line
            .split_whitespace()
            .nth(col)
            .and_then(|p| p.parse().ok());
        if pid.is_some_and(|p| wanted.contains(&p)) {
            table.push('\n');
            table.push_str(line);
        }
    }
    print_out(&table)
}

/// runtime-spec's features.json: what this runtime recognises.
pub fn features() -> Result<()> {
    let namespaces = vec![
        LinuxNamespaceType::User,
        LinuxNamespaceType::Mount,
        LinuxNamespaceType::Pid,
        LinuxNamespaceType::Ipc,
        LinuxNamespaceType::Uts,
        LinuxNamespaceType::Cgroup,
        LinuxNamespaceType::Network,
    ];
    let mut capabilities: Vec<String> = caps::all().iter().map(|c| c.to_string()).collect();
    capabilities.sort();
    let linux = LinuxFeatureBuilder::default()
        .namespaces(namespaces)
        .capabilities(capabilities)
        .cgroup(
            CgroupBuilder::default()
                .v1(false)
                .v2(true)
                .systemd(false)
                .systemd_user(false)
                .rdma(false)
                .build()?,
        )
        .seccomp(
            SeccompBuilder::default()
                .enabled(true)
                .actions(vec![
                    LinuxSeccompAction::ScmpActAllow,
                    LinuxSeccompAction::ScmpActErrno,
                    LinuxSeccompAction::ScmpActKill,
                    LinuxSeccompAction::ScmpActKillProcess,
                    LinuxSeccompAction::ScmpActKillThread,
                    LinuxSeccompAction::ScmpActLog,
                    LinuxSeccompAction::ScmpActTrace,
                    LinuxSeccompAction::ScmpActTrap,
                ])
                .build()?,
        )
        .apparmor(ApparmorBuilder::default().enabled(false).build()?)
        .selinux(SelinuxBuilder::default().enabled(false).build()?)
        .build()?;
    let mount_options: Vec<String> = [
        "bind",
        "rbind",
        "ro",
        "rw",
        "nosuid",
        "nodev",
        "noexec",
        "private",
        "rprivate",
        "relatime",
        "strictatime",
        "noatime",
    ]
    .map(String::from)
    .to_vec();
    let features = FeaturesBuilder::default()
        .oci_version_min("1.0.0")
        .oci_version_max(oci_spec::runtime::VERSION)
        .hooks(
            [
                "prestart",
                "createRuntime",
                "createContainer",
                "startContainer",
                "poststart",
                "poststop",
            ]
            .map(String::from)
            .to_vec(),
        )
        .mount_options(mount_options)
        .linux(linux)
        .annotations(HashMap::from([(
            "run.burrow.version".to_string(),
            env!("CARGO_PKG_VERSION").to_string(),
        )]))
        .build()?;
    print_out(&serde_json::to_string_pretty(&features)?)
}

/// Writes `text` and a newline to stdout; a reader gone is an error, not a
/// panic.
fn print_out(text: &str) -> Result<()> {
    let mut out = std::io::stdout().lock();
    writeln!(out, "{text}")
        .and_then(|()| out.flush())
        .context("writing to stdout")
}

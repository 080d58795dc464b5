//! Resource limits in a delegated cgroup v2 subtree (`--memory`,
//! `--pids`, `--cpus`, ...). burrow finds the highest cgroup above its own
//! that the caller owns (the delegation systemd makes for user sessions
//! with `Delegate=yes`), enables the controllers the limits need there,
//! and gives the sandbox a child cgroup of its own: `burrow-PID`. It is
//! removed when the sandbox ends; ones left by a killed burrow go at the
//! next run with limits (or with `burrow gc`). Without such a subtree,
//! limits are an error naming what is missing, or with `--limits
//! best-effort` become resource limits (rlimits) with a warning.

use std::io::Write;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use crate::cli::RunArgs;
use crate::error::{Error, Result};
use crate::rlimits::Rlimit;

/// What the user asked for.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Limits {
    pub memory: Option<u64>,
    /// Memory plus swap. Without it, `--memory` allows no swap, unless
    /// `keep_swap`.
    pub memory_swap: Option<u64>,
    /// The OCI runtime's: without `memory_swap`, the swap limit is left
    /// as it is (runc's), not set to none.
    pub keep_swap: bool,
    pub pids: Option<u64>,
    pub cpus: Option<f64>,
    /// The period `cpus` is measured over, in microseconds (default
    /// 100000).
    pub cpu_period: Option<u64>,
    pub cpu_weight: Option<u32>,
    pub io_weight: Option<u32>,
    /// `MAJ:MIN key=value...` lines for io.max.
    pub io_max: Vec<String>,
    pub stats: Option<PathBuf>,
    pub best_effort: bool,
}

/// `64M`, `1G`, `512k`, or bytes.
pub fn parse_size(text: &str) -> Option<u64> {
    let t = text.trim();
    let (num, mult) = match t.char_indices().last()? {
        (i, 'k' | 'K') => (&t[..i], 1u64 << 10),
        (i, 'm' | 'M') => (&t[..i], 1 << 20),
        (i, 'g' | 'G') => (&t[..i], 1 << 30),
        (i, 't' | 'T') => (&t[..i], 1 << 40),
        (i, 'b' | 'B') => (&t[..i], 1),
        _ => (t, 1),
    };
    num.parse::<u64>().ok()?.checked_mul(mult)
}

impl Limits {
    pub fn from_args(args: &RunArgs) -> Result<Limits> {
        let size = |flag: &str, v: &Option<String>| -> Result<Option<u64>> {
            v.as_deref()
                .map(|s| {
                    parse_size(s).filter(|&n| n > 0).ok_or_else(|| {
                        Error::usage(format!("{flag} {s}: expected a size like 64M or 2G"))
                    })
                })
                .transpose()
        };
        let memory = size("--memory", &args.memory)?;
        let memory_swap = size("--memory-swap", &args.memory_swap)?;
        if let (Some(m), Some(s)) = (memory, memory_swap) {
            if s < m {
                return Err(Error::usage(
                    "--memory-swap is memory plus swap: it cannot be below --memory",
                ));
            }
        }
        if memory_swap.is_some() && memory.is_none() {
            return Err(Error::usage("--memory-swap needs --memory"));
        }
        if let Some(c) = args.cpus {
            if !(c > 0.0 && c <= 1024.0) {
                return Err(Error::usage(format!(
                    "--cpus {c}: expected a number of CPUs above 0"
                )));
            }
        }
        for (flag, w) in [
            ("--cpu-weight", args.cpu_weight),
            ("--io-weight", args.io_weight),
        ] {
            if w.is_some_and(|w| !(1..=10000).contains(&w)) {
                return Err(Error::usage(format!("{flag}: expected 1 to 10000")));
            }
        }
        let io_max = args
            .io_max
            .iter()
            .map(|spec| io_max_line(spec))
            .collect::<Result<Vec<_>>>()?;
        let best_effort = match args.limits.as_str() {
            "strict" => false,
            "best-effort" => true,
            other => {
                return Err(Error::usage(format!(
                    "--limits {other}: expected strict or best-effort"
                )))
            }
        };
        Ok(Limits {
            memory,
            memory_swap,
            keep_swap: false,
            pids: args.pids,
            cpus: args.cpus,
            cpu_period: None,
            cpu_weight: args.cpu_weight,
            io_weight: args.io_weight,
            io_max,
            stats: args.stats.clone(),
            best_effort,
        })
    }

    pub fn is_empty(&self) -> bool {
        self.memory.is_none()
            && self.pids.is_none()
            && self.cpus.is_none()
            && self.cpu_weight.is_none()
            && self.io_weight.is_none()
            && self.io_max.is_empty()
            && self.stats.is_none()
    }

    /// The controllers these limits need, with the flag that needs each.
    fn controllers(&self) -> Vec<(&'static str, &'static str)> {
        // Each controller, and the flags that need it, first named first.
        let wanted = [
            (
                "memory",
                [
                    ("--memory", self.memory.is_some()),
                    ("--stats", self.stats.is_some()),
                ],
            ),
            (
                "pids",
                [
                    ("--pids", self.pids.is_some()),
                    ("--stats", self.stats.is_some()),
                ],
            ),
            (
                "cpu",
                [
                    ("--cpus", self.cpus.is_some()),
                    ("--cpu-weight", self.cpu_weight.is_some()),
                ],
            ),
            (
                "io",
                [
                    ("--io-weight", self.io_weight.is_some()),
                    ("--io-max", !self.io_max.is_empty()),
                ],
            ),
        ];
        wanted
            .into_iter()
            .filter_map(|(controller, flags)| {
                let (flag, _) = flags.into_iter().find(|(_, given)| *given)?;
                Some((controller, flag))
            })
            .collect()
    }

    /// What `--limits best-effort` applies without cgroups, and a warning
    /// naming what it could not.
    pub fn as_rlimits(&self) -> (Vec<Rlimit>, String) {
        let mut out = Vec::new();
        if let Some(m) = self.memory {
            out.extend(format!("as={m}").parse::<Rlimit>());
        }
        if let Some(p) = self.pids {
            out.extend(format!("nproc={p}").parse::<Rlimit>());
        }
        let mut lost = Vec::new();
        for (given, flag) in [
            (self.cpus.is_some(), "--cpus"),
            (self.cpu_weight.is_some(), "--cpu-weight"),
            (self.io_weight.is_some(), "--io-weight"),
            (!self.io_max.is_empty(), "--io-max"),
            (self.stats.is_some(), "--stats"),
            (self.memory_swap.is_some(), "--memory-swap"),
        ] {
            if given {
                lost.push(flag);
            }
        }
        let mut warning = String::from(
            "no delegated cgroup v2 subtree: --memory applies as RLIMIT_AS and --pids as RLIMIT_NPROC (per user)",
        );
        if !lost.is_empty() {
            warning.push_str(&format!("; not applied: {}", lost.join(", ")));
        }
        if self.pids.is_none() {
            warning.push_str(
                "; nothing bounds the number of processes without a cgroup: use --rlimit nproc=N",
            );
        }
        (out, warning)
    }
}

/// `--io-max DEV:rbps=N,wbps=N,riops=N,wiops=N` (DEV a device path or
/// MAJ:MIN) as an io.max line.
fn io_max_line(spec: &str) -> Result<String> {
    let bad = |why: &str| Error::usage(format!("--io-max {spec}: {why}"));
    let (dev, settings) = spec
        .rsplit_once(':')
        .filter(|(_, s)| s.contains('='))
        .ok_or_else(|| bad("expected DEV:rbps=N[,wbps=N,riops=N,wiops=N]"))?;
    let devno = if dev.starts_with('/') {
        let m = std::fs::metadata(dev).map_err(|e| bad(&crate::sys::errno_text(&e)))?;
        let rdev = m.rdev();
        format!(
            "{}:{}",
            nix::sys::stat::major(rdev),
            nix::sys::stat::minor(rdev)
        )
    } else {
        dev.to_string()
    };
    let mut parts = vec![devno];
    for kv in settings.split(',') {
        let (k, v) = kv
            .split_once('=')
            .ok_or_else(|| bad("expected key=value"))?;
        if !["rbps", "wbps", "riops", "wiops"].contains(&k) {
            return Err(bad(&format!("unknown key {k}")));
        }
        let n = if k.ends_with("bps") {
            parse_size(v)
        } else {
            v.parse().ok()
        };
        let n = n.ok_or_else(|| bad(&format!("{v} is not a number")))?;
        parts.push(format!("{k}={n}"));
    }
    Ok(parts.join(" "))
}

/// The cgroup v2 mount point and this process's cgroup path in it.
fn own_cgroup() -> Option<(PathBuf, PathBuf)> {
    let rel = std::fs::read_to_string("/proc/self/cgroup")
        .ok()?
        .lines()
        .find_map(|l| l.strip_prefix("0::").map(|p| p.trim().to_string()))?;
    let mounts = std::fs::read_to_string("/proc/self/mountinfo").ok()?;
    let mount = mounts.lines().find_map(|l| {
        let (left, right) = l.split_once(" - ")?;
        let fields: Vec<&str> = left.split(' ').collect();
        let point = fields.get(4)?;
        (right.split(' ').next() == Some("cgroup2") && fields.get(3) == Some(&"/"))
            .then(|| PathBuf::from(point))
    })?;
    Some((mount, PathBuf::from(rel.trim_start_matches('/'))))
}

fn owned_by_me(dir: &Path) -> bool {
    let me = nix::unistd::geteuid().as_raw();
    std::fs::metadata(dir).is_ok_and(|m| m.uid() == me)
        && nix::unistd::access(dir, nix::unistd::AccessFlags::W_OK).is_ok()
}

/// The sandbox's cgroup, made and limited; removed on drop.
#[derive(Debug)]
pub struct Cgroup {
    pub path: PathBuf,
    memory_max: Option<u64>,
    /// With a leaf placement: burrow's own cgroup and the controllers
    /// enabled there, to put back as they were.
    restore: Option<(PathBuf, Vec<String>)>,
    /// Its `cgroup.procs`, opened where the cgroup was made: the kernel
    /// checks a move against the cgroup namespace of the file's opener,
    /// and the launcher may join another (`--cgroupns`) before the move.
    procs: Option<std::fs::File>,
    /// With a leaf placement, burrow's own cgroup's `cgroup.procs`, opened
    /// as `procs` is, to step back into it.
    own_procs: Option<std::fs::File>,
}

/// Where limits cannot be had: one line saying what is missing.
fn no_delegation(flag: &str, what: String) -> Error {
    Error::usage(format!(
        "{flag}: {what}; limits need a delegated cgroup v2 subtree (for example: \
         systemd-run --user --scope -p Delegate=yes burrow run ...), or use --limits best-effort"
    ))
}

/// Where the sandbox's cgroup goes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Placement {
    /// burrow's own cgroup, which holds burrow alone (a delegated scope):
    /// burrow moves itself to a leaf under it, so that it may enable
    /// controllers there, and puts the sandbox beside it.
    Leaf(PathBuf),
    /// The highest cgroup above burrow's that the caller owns, which holds
    /// no process itself (a delegated service).
    Top(PathBuf),
}

impl Placement {
    /// The cgroup the sandbox's goes in.
    pub fn parent(&self) -> &Path {
        match self {
            Placement::Leaf(dir) | Placement::Top(dir) => dir,
        }
    }
}

/// Whether burrow is the only process in cgroup `dir`.
fn only_me(dir: &Path) -> bool {
    let me = std::process::id().to_string();
    std::fs::read_to_string(dir.join("cgroup.procs"))
        .is_ok_and(|p| p.split_whitespace().all(|q| q == me))
}

fn has_controllers(dir: &Path, needed: &[(&str, &str)]) -> bool {
    let available = std::fs::read_to_string(dir.join("cgroup.controllers")).unwrap_or_default();
    needed
        .iter()
        .all(|(c, _)| available.split_whitespace().any(|a| a == *c))
}

/// The delegated subtree the sandbox's cgroup goes in, with the
/// controllers `limits` need. `Ok(None)` when there is none and `--limits
/// best-effort` allows doing without.
pub fn find_subtree(limits: &Limits) -> Result<Option<Placement>> {
    match locate(limits) {
        Ok(p) => Ok(Some(p)),
        Err(_) if limits.best_effort => Ok(None),
        Err(u) => Err(no_delegation(u.flag, u.why)),
    }
}

/// Why no delegated subtree can hold the limits: the flag that first
/// needs what is missing, and what is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Undelegated {
    pub flag: &'static str,
    pub why: String,
}

/// Where a cgroup with `limits` can go, or why nowhere (for front ends
/// that word the error their own way).
pub fn locate(limits: &Limits) -> std::result::Result<Placement, Undelegated> {
    if let Some((mount, rel)) = own_cgroup() {
        let own = mount.join(&rel);
        if own != mount
            && owned_by_me(&own)
            && only_me(&own)
            && has_controllers(&own, &limits.controllers())
        {
            return Ok(Placement::Leaf(own));
        }
    }
    find_top(limits).map(Placement::Top)
}

fn find_top(limits: &Limits) -> std::result::Result<PathBuf, Undelegated> {
    let needed = limits.controllers();
    let flag = needed.first().map_or("--stats", |(_, f)| *f);
    let missing = |flag: &'static str, why: String| Err(Undelegated { flag, why });
    let Some((mount, rel)) = own_cgroup() else {
        return missing(flag, "no cgroup v2 hierarchy holds this process".into());
    };
    let mut top: Option<PathBuf> = None;
    let mut dir = mount.join(&rel);
    while dir.starts_with(&mount) && dir != mount && owned_by_me(&dir) {
        top = Some(dir.clone());
        dir = match dir.parent() {
            Some(p) => p.to_path_buf(),
            None => break,
        };
    }
    let Some(top) = top else {
        return missing(
            flag,
            format!(
                "this process's cgroup {} is not yours to manage",
                mount.join(&rel).display()
            ),
        );
    };
    let available = std::fs::read_to_string(top.join("cgroup.controllers")).unwrap_or_default();
    if let Some((c, f)) = needed
        .iter()
        .find(|(c, _)| !available.split_whitespace().any(|a| a == *c))
    {
        return missing(
            f,
            format!("the {c} controller is not delegated to {}", top.display()),
        );
    }
    Ok(top)
}

impl Cgroup {
    /// Makes the sandbox's cgroup where `placement` says and writes the
    /// limits.
    ///
    /// `name`: the OCI runtime's container cgroup, named for the container
    /// instead of this process. Every delegated controller of the four is
    /// enabled for it (so that `update` may set any limit later), and an
    /// empty one of that name, left by a create that was killed, is
    /// removed first.
    pub fn create(placement: &Placement, limits: &Limits, name: Option<&str>) -> Result<Cgroup> {
        let needed = limits.controllers();
        let flag = needed.first().map_or("--stats", |(_, f)| *f);
        let sys_err = |what: String, e: std::io::Error| {
            Error::usage(format!("{what}: {}", crate::sys::errno_text(&e)))
        };
        let top = match placement {
            Placement::Top(top) => top.clone(),
            Placement::Leaf(own) => {
                // burrow steps down to a leaf of its own cgroup: a cgroup
                // that holds processes cannot pass controllers on.
                let leaf = own.join(format!("burrow-{}.supervisor", std::process::id()));
                std::fs::create_dir(&leaf)
                    .map_err(|e| sys_err(format!("creating {}", leaf.display()), e))?;
                std::fs::write(leaf.join("cgroup.procs"), std::process::id().to_string())
                    .map_err(|e| sys_err(format!("moving burrow into {}", leaf.display()), e))?;
                // (And what it forked since it looked: the OCI runtime's
                // hook runner.)
                let procs = std::fs::read_to_string(own.join("cgroup.procs")).unwrap_or_default();
                for pid in procs.split_whitespace() {
                    let _ = std::fs::write(leaf.join("cgroup.procs"), pid);
                }
                own.clone()
            }
        };
        let top = top.as_path();
        gc_in(top);
        let before =
            std::fs::read_to_string(top.join("cgroup.subtree_control")).unwrap_or_default();
        let enable: Vec<String> = needed.iter().map(|(c, _)| format!("+{c}")).collect();
        if !enable.is_empty() {
            std::fs::write(top.join("cgroup.subtree_control"), enable.join(" ")).map_err(|e| {
                no_delegation(
                    flag,
                    format!(
                        "cannot enable controllers in {} ({}; it must hold no processes itself)",
                        top.display(),
                        crate::sys::errno_text(&e)
                    ),
                )
            })?;
        }
        if name.is_some() {
            let available =
                std::fs::read_to_string(top.join("cgroup.controllers")).unwrap_or_default();
            for c in CONTROLLERS {
                if available.split_whitespace().any(|a| a == c) {
                    let _ = std::fs::write(top.join("cgroup.subtree_control"), format!("+{c}"));
                }
            }
        }
        let added: Vec<String> = needed
            .iter()
            .filter(|(c, _)| !before.split_whitespace().any(|b| b == *c))
            .map(|(c, _)| c.to_string())
            .collect();
        let restore = matches!(placement, Placement::Leaf(_)).then(|| (top.to_path_buf(), added));
        let own_procs = restore.as_ref().and_then(|(own, _)| {
            std::fs::OpenOptions::new()
                .write(true)
                .open(own.join("cgroup.procs"))
                .ok()
        });
        let path = match name {
            Some(name) => {
                let path = top.join(name);
                let _ = std::fs::remove_dir(&path);
                path
            }
            None => top.join(format!("burrow-{}", std::process::id())),
        };
        std::fs::create_dir(&path).map_err(|e| {
            Error::usage(format!(
                "creating {}: {}",
                path.display(),
                crate::sys::errno_text(&e)
            ))
        })?;
        let procs = std::fs::OpenOptions::new()
            .write(true)
            .open(path.join("cgroup.procs"))
            .map_err(|e| {
                let _ = std::fs::remove_dir(&path);
                Error::usage(format!(
                    "opening {}/cgroup.procs: {}",
                    path.display(),
                    crate::sys::errno_text(&e)
                ))
            })?;
        let cg = Cgroup {
            path,
            memory_max: limits.memory,
            restore,
            procs: Some(procs),
            own_procs,
        };
        // The sandbox may make cgroups of its own under it (with nsdelegate
        // it cannot change these bounds, on its namespace's root): a tree
        // `remove` walks in bounded depth and breadth.
        for (file, bound) in [
            ("cgroup.max.depth", MAX_DEPTH),
            ("cgroup.max.descendants", MAX_DESCENDANTS),
        ] {
            std::fs::write(cg.path.join(file), bound.to_string())
                .map_err(|e| sys_err(format!("{file} in {}", cg.path.display()), e))?;
        }
        write_limits(&cg.path, limits)?;
        Ok(cg)
    }

    /// Leaves the cgroup in place when this is dropped (the OCI runtime's
    /// container outlives the launcher; `delete` removes it with
    /// [`remove`]); its path.
    pub fn keep(mut self) -> PathBuf {
        self.restore = None;
        drop(self.procs.take());
        drop(self.own_procs.take());
        let path = std::mem::take(&mut self.path);
        std::mem::forget(self);
        path
    }

    /// Puts process `pid` in the cgroup.
    /// Once: the descriptor used is closed then, so that the helpers forked
    /// after do not hold it.
    pub fn add(&mut self, pid: nix::unistd::Pid) -> Result<()> {
        let mut procs = self
            .procs
            .take()
            .ok_or_else(|| Error::usage("the sandbox's cgroup took its process already"))?;
        procs.write_all(pid.to_string().as_bytes()).map_err(|e| {
            Error::usage(format!(
                "moving the sandbox into {}: {}",
                self.path.display(),
                crate::sys::errno_text(&e)
            ))
        })
    }

    fn read(&self, file: &str) -> String {
        std::fs::read_to_string(self.path.join(file)).unwrap_or_default()
    }

    fn field(text: &str, key: &str) -> Option<u64> {
        text.lines().find_map(|l| {
            let (k, v) = l.split_once(' ')?;
            (k == key).then(|| v.trim().parse().ok()).flatten()
        })
    }

    /// After the sandbox ended: the OOM report, if the OOM killer acted.
    pub fn oom_report(&self) -> Option<String> {
        let kills = Self::field(&self.read("memory.events"), "oom_kill").unwrap_or(0);
        (kills > 0).then(|| {
            let limit = self.memory_max.map_or("?".into(), human);
            format!("the command was killed by the OOM killer (memory.max={limit})")
        })
    }

    /// `--stats`: JSON with peak memory, CPU time and peak pids.
    pub fn stats_json(&self) -> String {
        let cpu = self.read("cpu.stat");
        let num = |v: Option<u64>| v.map_or("null".to_string(), |n| n.to_string());
        let peak = self.read("memory.peak").trim().parse::<u64>().ok();
        let pids_peak = self.read("pids.peak").trim().parse::<u64>().ok();
        format!(
            "{{\"memory_peak_bytes\": {}, \"cpu_usage_usec\": {}, \"cpu_user_usec\": {}, \"cpu_system_usec\": {}, \"pids_peak\": {}, \"oom_kills\": {}}}\n",
            num(peak),
            num(Self::field(&cpu, "usage_usec")),
            num(Self::field(&cpu, "user_usec")),
            num(Self::field(&cpu, "system_usec")),
            num(pids_peak),
            Self::field(&self.read("memory.events"), "oom_kill").unwrap_or(0)
        )
    }

    pub fn write_stats(&self, to: &Path) -> std::io::Result<()> {
        std::fs::File::create(to)?.write_all(self.stats_json().as_bytes())
    }
}

impl Drop for Cgroup {
    fn drop(&mut self) {
        let _ = remove(&self.path);
        // Put burrow's own cgroup back as it was: the controllers off
        // again, burrow back in it, its leaf gone.
        if let Some((own, added)) = self.restore.take() {
            if !added.is_empty() {
                let off: Vec<String> = added.iter().map(|c| format!("-{c}")).collect();
                let _ = std::fs::write(own.join("cgroup.subtree_control"), off.join(" "));
            }
            let me = std::process::id().to_string();
            let back = match self.own_procs.take() {
                Some(mut f) => f.write_all(me.as_bytes()),
                None => std::fs::write(own.join("cgroup.procs"), &me),
            };
            if back.is_ok() {
                let _ = std::fs::remove_dir(
                    own.join(format!("burrow-{}.supervisor", std::process::id())),
                );
            }
        }
    }
}

/// How deep and how many cgroups a sandbox may make under its own.
const MAX_DEPTH: u32 = 32;
const MAX_DESCENDANTS: u32 = 4096;

/// The controllers burrow sets limits with.
const CONTROLLERS: [&str; 4] = ["memory", "pids", "cpu", "io"];

/// A limit's value: `u64::MAX` is none ("max": how the OCI runtime's
/// `update` lifts a limit).
fn amount(n: u64) -> String {
    if n == u64::MAX {
        "max".into()
    } else {
        n.to_string()
    }
}

/// Writes the limits `l` sets into the cgroup at `path` (the others are
/// left as they are).
pub fn write_limits(path: &Path, l: &Limits) -> Result<()> {
    let set = |file: &str, value: String| -> Result<()> {
        std::fs::write(path.join(file), &value).map_err(|e| {
            Error::usage(format!(
                "cgroup {file} = {value}: {}",
                crate::sys::errno_text(&e)
            ))
        })
    };
    if let Some(m) = l.memory {
        set("memory.max", amount(m))?;
        let swap = match l.memory_swap {
            Some(s) if s == u64::MAX || m == u64::MAX => Some(u64::MAX),
            Some(s) => Some(s.saturating_sub(m)),
            None if l.keep_swap => None,
            None => Some(0),
        };
        // Without swap accounting the file is missing: nothing to cap.
        if let Some(swap) = swap.filter(|_| path.join("memory.swap.max").exists()) {
            set("memory.swap.max", amount(swap))?;
        }
    }
    if let Some(p) = l.pids {
        set("pids.max", amount(p))?;
    }
    if let Some(c) = l.cpus {
        let period = l.cpu_period.unwrap_or(100_000);
        let quota = if c.is_finite() {
            ((c * period as f64).round() as u64).to_string()
        } else {
            "max".into()
        };
        set("cpu.max", format!("{quota} {period}"))?;
    }
    if let Some(w) = l.cpu_weight {
        set("cpu.weight", w.to_string())?;
    }
    if let Some(w) = l.io_weight {
        set("io.weight", format!("default {w}"))?;
    }
    for line in &l.io_max {
        set("io.max", line.clone())?;
    }
    Ok(())
}

/// Removes the cgroup at `path` and every cgroup under it (code in the
/// sandbox may have made some in its own), deepest first, once the
/// kernel has seen their processes go. The tree is walked from directory
/// descriptors (a tree nested deeper than a path can name is removed
/// too); an error is the first met, after everything that could go went.
pub fn remove(path: &Path) -> std::io::Result<()> {
    use nix::fcntl::OFlag;
    use nix::sys::stat::Mode;
    use std::os::fd::AsFd;
    const DIR: OFlag = OFlag::O_RDONLY
        .union(OFlag::O_DIRECTORY)
        .union(OFlag::O_NOFOLLOW)
        .union(OFlag::O_CLOEXEC);
    fn empty(dir: &mut nix::dir::Dir) -> std::io::Result<()> {
        let names: Vec<std::ffi::CString> = dir
            .iter()
            .flatten()
            .filter(|e| e.file_type() == Some(nix::dir::Type::Directory))
            .map(|e| e.file_name().to_owned())
            .filter(|n| n.as_bytes() != b"." && n.as_bytes() != b"..")
            .collect();
        let mut first = Ok(());
        for name in names {
            let fd = dir.as_fd();
            let done = nix::dir::Dir::openat(fd, name.as_c_str(), DIR, Mode::empty())
                .map_err(std::io::Error::from)
                .and_then(|mut child| empty(&mut child))
                .and_then(|()| {
                    retry(|| {
                        nix::unistd::unlinkat(
                            fd,
                            name.as_c_str(),
                            nix::unistd::UnlinkatFlags::RemoveDir,
                        )
                    })
                });
            if first.is_ok() {
                first = done;
            }
        }
        first
    }
    // Every process in it is gone with the pid namespace; the kernel may
    // take a moment to notice.
    fn retry(f: impl Fn() -> nix::Result<()>) -> std::io::Result<()> {
        let mut last = Ok(());
        for _ in 0..100 {
            last = f();
            match last {
                Ok(()) | Err(nix::errno::Errno::ENOENT) => return Ok(()),
                Err(_) => std::thread::sleep(std::time::Duration::from_millis(10)),
            }
        }
        last.map_err(std::io::Error::from)
    }
    let mut dir = match nix::dir::Dir::open(path, DIR, Mode::empty()) {
        Ok(d) => d,
        Err(nix::errno::Errno::ENOENT) => return Ok(()),
        Err(e) => return Err(e.into()),
    };
    let inner = empty(&mut dir);
    let own = retry(|| {
        std::fs::remove_dir(path)
            .map_err(|e| nix::errno::Errno::from_raw(e.raw_os_error().unwrap_or(libc::EIO)))
    });
    inner.and(own)
}

/// Freezes (`true`) or thaws the cgroup at `path` and everything under
/// it, and waits until the kernel says it is done (`cgroup.events`).
pub fn freeze(path: &Path, frozen: bool) -> Result<()> {
    let fail = |what: &str, e: std::io::Error| {
        Error::usage(format!(
            "{what} {}: {}",
            path.display(),
            crate::sys::errno_text(&e)
        ))
    };
    std::fs::write(path.join("cgroup.freeze"), if frozen { "1" } else { "0" })
        .map_err(|e| fail("cgroup.freeze in", e))?;
    let waited = wait_frozen(path, frozen);
    if waited.is_err() && frozen {
        // Not left half paused.
        let _ = std::fs::write(path.join("cgroup.freeze"), "0");
    }
    waited
}

fn wait_frozen(path: &Path, frozen: bool) -> Result<()> {
    let fail = |what: &str, e: std::io::Error| {
        Error::usage(format!(
            "{what} {}: {}",
            path.display(),
            crate::sys::errno_text(&e)
        ))
    };
    let events =
        std::fs::File::open(path.join("cgroup.events")).map_err(|e| fail("cgroup.events in", e))?;
    let want = if frozen { "frozen 1" } else { "frozen 0" };
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    loop {
        let mut text = String::new();
        std::io::Read::read_to_string(&mut &events, &mut text)
            .map_err(|e| fail("reading cgroup.events in", e))?;
        if text.lines().any(|l| l == want) {
            return Ok(());
        }
        let left = deadline.saturating_duration_since(std::time::Instant::now());
        if left.is_zero() {
            return Err(Error::usage(format!(
                "{} did not become {} within 10 s",
                path.display(),
                if frozen { "frozen" } else { "thawed" }
            )));
        }
        // The kernel flags a change of cgroup.events as POLLPRI.
        use std::os::fd::AsFd;
        let mut fds = [nix::poll::PollFd::new(
            events.as_fd(),
            nix::poll::PollFlags::POLLPRI,
        )];
        let ms = u16::try_from(left.as_millis()).unwrap_or(u16::MAX);
        let _ = nix::poll::poll(&mut fds, nix::poll::PollTimeout::from(ms));
        std::io::Seek::rewind(&mut &events).map_err(|e| fail("reading cgroup.events in", e))?;
    }
}

/// The cgroup of process `pid`, as a path under the cgroup v2 mount.
pub fn of_process(pid: i32) -> Option<PathBuf> {
    let (mount, _) = own_cgroup()?;
    let rel = std::fs::read_to_string(format!("/proc/{pid}/cgroup"))
        .ok()?
        .lines()
        .find_map(|l| l.strip_prefix("0::").map(|p| p.trim().to_string()))?;
    Some(mount.join(rel.trim_start_matches('/')))
}

/// Kills every process in the cgroup at `path` and under it
/// (`cgroup.kill`): what has left a sandbox's process tree too.
pub fn kill(path: &Path) -> std::io::Result<()> {
    std::fs::write(path.join("cgroup.kill"), "1")
}

/// Whether the cgroup at `path` holds no process, in it or under it.
pub fn is_empty(path: &Path) -> bool {
    std::fs::read_to_string(path.join("cgroup.events"))
        .is_ok_and(|e| e.lines().any(|l| l == "populated 0"))
}

/// Whether the cgroup at `path` is frozen (asked to be, by `pause`).
pub fn is_frozen(path: &Path) -> bool {
    std::fs::read_to_string(path.join("cgroup.freeze")).is_ok_and(|v| v.trim() == "1")
}

fn human(n: u64) -> String {
    for (unit, shift) in [("G", 30), ("M", 20), ("K", 10)] {
        if n >= 1 << shift && n.is_multiple_of(1 << shift) {
            return format!("{}{unit}", n >> shift);
        }
    }
    n.to_string()
}

/// Removes `burrow-PID` cgroups under `top` whose burrow is gone and
/// which hold no process; returns how many.
fn gc_in(top: &Path) -> usize {
    let mut removed = 0;
    for entry in std::fs::read_dir(top).into_iter().flatten().flatten() {
        let name = entry.file_name();
        let Some(pid) = name
            .to_str()
            .and_then(|n| n.strip_prefix("burrow-"))
            .map(|p| p.trim_end_matches(".supervisor"))
            .and_then(|p| p.parse::<i32>().ok())
        else {
            continue;
        };
        let alive = nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), None).is_ok();
        if !alive && std::fs::remove_dir(entry.path()).is_ok() {
            removed += 1;
        }
    }
    removed
}

/// `burrow gc`: removes cgroups left by burrows that were killed.
pub fn gc() -> usize {
    let Some((mount, rel)) = own_cgroup() else {
        return 0;
    };
    let mut removed = 0;
    let mut dir = mount.join(rel);
    while dir.starts_with(&mount) && dir != mount && owned_by_me(&dir) {
        removed += gc_in(&dir);
        dir = match dir.parent() {
            Some(p) => p.to_path_buf(),
            None => break,
        };
    }
    removed
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_controller_is_named_with_the_first_flag_that_needs_it() {
        let limits = Limits {
            stats: Some(PathBuf::from("/s")),
            cpu_weight: Some(100),
            io_max: vec!["8:0 rbps=1".into()],
            ..Limits::default()
        };
        assert_eq!(
            limits.controllers(),
            [
                ("memory", "--stats"),
                ("pids", "--stats"),
                ("cpu", "--cpu-weight"),
                ("io", "--io-max")
            ]
        );
        let limits = Limits {
            memory: Some(1 << 20),
            stats: Some(PathBuf::from("/s")),
            ..Limits::default()
        };
        assert_eq!(
            limits.controllers(),
            [("memory", "--memory"), ("pids", "--stats")]
        );
        assert!(Limits::default().controllers().is_empty());
    }

    #[test]
    fn sizes_parse() {
        assert_eq!(parse_size("64M"), Some(64 << 20));
        assert_eq!(parse_size("2g"), Some(2 << 30));
        assert_eq!(parse_size("512k"), Some(512 << 10));
        assert_eq!(parse_size("1000"), Some(1000));
        assert_eq!(parse_size("x"), None);
        assert_eq!(human(64 << 20), "64M");
        assert_eq!(human(1000), "1000");
    }

    #[test]
    fn io_max_lines() {
        assert_eq!(
            io_max_line("8:0:rbps=1M,wiops=100").unwrap(),
            "8:0 rbps=1048576 wiops=100"
        );
        assert!(io_max_line("8:0:speed=1")
            .unwrap_err()
            .to_string()
            .contains("unknown key speed"));
    }
}

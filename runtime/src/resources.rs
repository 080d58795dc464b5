//! `linux.resources` as the launcher's cgroup limits (`--memory`,
//! `--pids`, `--cpus`, ...): what `create` places the container under,
//! in a cgroup v2 subtree delegated to the caller, and what `update`
//! writes later. Each field burrow cannot set is refused by name.

use anyhow::{bail, Result};
use burrow_sandbox::cgroup::{Limits, Placement};
use oci_spec::runtime::{LinuxDeviceCgroup, LinuxResources, LinuxThrottleDevice};

use crate::spec::{refuse, Refused};

/// The launcher's flag for a limit, and the field of the spec it comes
/// from (to name in errors).
const FIELDS: [(&str, &str); 6] = [
    ("--memory", "linux.resources.memory.limit"),
    ("--pids", "linux.resources.pids.limit"),
    ("--cpus", "linux.resources.cpu.quota"),
    ("--cpu-weight", "linux.resources.cpu.shares"),
    ("--io-weight", "linux.resources.blockIO.weight"),
    ("--io-max", "linux.resources.blockIO.throttle"),
];

/// Whether the limits are for a new container (`-1`, "no limit", is
/// left unset) or an update of a running one (`-1` lifts the limit).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Use {
    Create,
    Update,
}

/// A device node the container is given (`linux.devices`): its type
/// and numbers, which its cgroup's rules may allow.
pub type Node = (oci_spec::runtime::LinuxDeviceType, i64, i64);

/// The limits `r` sets. A field burrow cannot set is refused by name.
/// `nodes`: the devices the spec gives beyond burrow's own.
pub fn limits(r: &LinuxResources, usage: Use, nodes: &[Node]) -> Result<Limits, Refused> {
    let field = |f: &str| format!("linux.resources.{f}");
    let unsupported = |f: &str| refuse(field(f), "not supported");
    // -1 (or another negative): no limit.
    let amount = |v: i64| match (v < 0, usage) {
        (true, Use::Create) => None,
        (true, Use::Update) => Some(u64::MAX),
        (false, _) => Some(v as u64),
    };
    let mut l = Limits {
        keep_swap: true,
        ..Limits::default()
    };
    if r.devices()
        .as_ref()
        .is_some_and(|d| !devices_are_burrows(d, nodes))
    {
        return Err(refuse(
            field("devices"),
            "only the standard devices and linux.devices may be allowed (burrow's /dev has no others)",
        ));
    }
    if let Some(m) = r.memory() {
        for (name, set) in [
            ("memory.reservation", m.reservation().is_some()),
            ("memory.kernel", m.kernel().is_some()),
            ("memory.kernelTCP", m.kernel_tcp().is_some()),
            ("memory.swappiness", m.swappiness().is_some()),
            (
                "memory.disableOOMKiller",
                m.disable_oom_killer() == Some(true),
            ),
            (
                "memory.checkBeforeUpdate",
                m.check_before_update() == Some(true),
            ),
        ] {
            if set {
                return Err(unsupported(name));
            }
        }
        // (0 is no limit too, as runc reads it.)
        l.memory = m.limit().filter(|&v| v != 0).and_then(amount);
        // (-1: no swap limit, written as such.)
        l.memory_swap = m
            .swap()
            .filter(|&v| v != 0)
            .map(|v| u64::try_from(v).unwrap_or(u64::MAX));
        match (l.memory, l.memory_swap) {
            (None, Some(s)) if s != u64::MAX => {
                return Err(refuse(field("memory.swap"), "needs memory.limit"));
            }
            (Some(m), Some(s)) if s < m && m != u64::MAX => {
                return Err(refuse(
                    field("memory.swap"),
                    "memory plus swap: it cannot be below memory.limit",
                ));
            }
            _ => {}
        }
    }
    if let Some(p) = r.pids() {
        l.pids = amount(p.limit()).filter(|&n| n > 0);
    }
    if let Some(c) = r.cpu() {
        for (name, set) in [
            ("cpu.cpus", c.cpus().as_ref().is_some_and(|v| !v.is_empty())),
            ("cpu.mems", c.mems().as_ref().is_some_and(|v| !v.is_empty())),
            ("cpu.realtimeRuntime", c.realtime_runtime().is_some()),
            ("cpu.realtimePeriod", c.realtime_period().is_some()),
            ("cpu.idle", c.idle().is_some_and(|i| i != 0)),
            ("cpu.burst", c.burst().is_some_and(|b| b != 0)),
        ] {
            if set {
                return Err(unsupported(name));
            }
        }
        let period = c.period().filter(|&p| p > 0);
        l.cpus = match c.quota() {
            Some(q) if q > 0 => Some(q as f64 / period.unwrap_or(100_000) as f64),
            Some(q) if q < 0 && usage == Use::Update => Some(f64::INFINITY),
            _ => None,
        };
        if period.is_some() && c.quota().is_none() && usage == Use::Update {
            return Err(refuse(field("cpu.period"), "give cpu.quota with it"));
        }
        l.cpu_period = period;
        // cgroup v1's shares (2 to 262144) as v2's weight (1 to 10000),
        // as runc converts them; 1024, the kernel's default, is v2's
        // default weight (left as it is by a create).
        l.cpu_weight = match c.shares() {
            None | Some(0) => None,
            Some(1024) if usage == Use::Create => None,
            Some(1024) => Some(100),
            Some(s) => Some((1 + (s.clamp(2, 262_144) - 2) * 9999 / 262_142) as u32),
        };
    }
    if let Some(b) = r.block_io() {
        for (name, set) in [
            ("blockIO.leafWeight", b.leaf_weight().is_some()),
            (
                "blockIO.weightDevice",
                b.weight_device().as_ref().is_some_and(|v| !v.is_empty()),
            ),
        ] {
            if set {
                return Err(unsupported(name));
            }
        }
        // v1's blkio weight (10 to 1000) as v2's io.weight (1 to 10000).
        l.io_weight = b
            .weight()
            .filter(|&w| w != 0)
            .map(|w| 1 + (u32::from(w.clamp(10, 1000)) - 10) * 9999 / 990);
        let throttles: [(&str, &Option<Vec<LinuxThrottleDevice>>); 4] = [
            ("rbps", b.throttle_read_bps_device()),
            ("wbps", b.throttle_write_bps_device()),
            ("riops", b.throttle_read_iops_device()),
            ("wiops", b.throttle_write_iops_device()),
        ];
        for (key, devices) in throttles {
            for d in devices.iter().flatten() {
                let rate = if d.rate() == 0 {
                    "max".to_string()
                } else {
                    d.rate().to_string()
                };
                l.io_max
                    .push(format!("{}:{} {key}={rate}", d.major(), d.minor()));
            }
        }
    }
    for (name, set) in [
        (
            "hugepageLimits",
            r.hugepage_limits().as_ref().is_some_and(|v| !v.is_empty()),
        ),
        ("network", r.network().is_some()),
        ("rdma", r.rdma().as_ref().is_some_and(|v| !v.is_empty())),
        (
            "unified",
            r.unified().as_ref().is_some_and(|v| !v.is_empty()),
        ),
    ] {
        if set {
            return Err(unsupported(name));
        }
    }
    Ok(l)
}

/// Where `create` places a container with `limits`: a cgroup of its own in
/// the subtree delegated to the caller. None where there is none and no
/// limit is asked for (the container runs in the caller's cgroup, as
/// with `--cgroup-manager disabled`), or where cgroup v2 is not the
/// host's only hierarchy (a cgroup for pause and update alone is not
/// made in a hybrid host's tree, which its init manages). Limits without a
/// subtree are an error naming the field.
pub fn placement(limits: &Limits) -> Result<Option<Placement>> {
    // (No search where no cgroup would be made.)
    if limits.is_empty() && !unified_host() {
        return Ok(None);
    }
    match burrow_sandbox::cgroup::locate(limits) {
        Ok(p) if !limits.is_empty() || unified_host() => Ok(Some(p)),
        Ok(_) => Ok(None),
        Err(_) if limits.is_empty() => Ok(None),
        Err(u) => {
            let field = FIELDS
                .iter()
                .find(|(flag, _)| *flag == u.flag)
                .map_or("linux.resources", |(_, f)| f);
            bail!(
                "config.json: {field}: {}; limits need a cgroup v2 subtree delegated to this user \
                 (or --cgroup-manager disabled, which ignores them)",
                u.why
            )
        }
    }
}

/// cgroup v2 alone, at /sys/fs/cgroup.
fn unified_host() -> bool {
    std::path::Path::new("/sys/fs/cgroup/cgroup.controllers").exists()
}

/// Whether a device cgroup's rules allow no more than burrow's minimal
/// /dev has: all denied first (runc spec's default), then at most the
/// devices every runtime gives (null, zero, full, random, urandom, tty,
/// console, ptmx and the pty slaves, as containerd's and Docker's rules
/// allow them), and the `nodes` the spec gives (bound from the host).
/// burrow makes no other device node, and a user namespace can make none,
/// so those rules are what the sandbox is already.
fn devices_are_burrows(rules: &[LinuxDeviceCgroup], nodes: &[Node]) -> bool {
    use oci_spec::runtime::LinuxDeviceType;
    const STANDARD: [(i64, Option<i64>); 9] = [
        (1, Some(3)),
        (1, Some(5)),
        (1, Some(7)),
        (1, Some(8)),
        (1, Some(9)),
        (5, Some(0)),
        (5, Some(1)),
        (5, Some(2)),
        (136, None),
    ];
    let Some((first, rest)) = rules.split_first() else {
        return true;
    };
    let denies_all = |d: &LinuxDeviceCgroup| {
        !d.allow()
            && matches!(d.typ(), None | Some(LinuxDeviceType::A))
            && d.major().is_none()
            && d.minor().is_none()
    };
    denies_all(first)
        && rest.iter().all(|d| {
            !d.allow()
                || (d.typ() == Some(LinuxDeviceType::C)
                    && d.major()
                        .is_some_and(|major| STANDARD.contains(&(major, d.minor()))))
                || nodes.iter().any(|&(t, major, minor)| {
                    d.typ() == Some(t) && d.major() == Some(major) && d.minor() == Some(minor)
                })
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn resources(json: serde_json::Value) -> LinuxResources {
        serde_json::from_value(json).unwrap()
    }

    #[test]
    fn engines_limits_become_the_launchers() {
        // What podman sends for --memory 64m --memory-swap 128m
        // --pids-limit 50 --cpus 0.5 --cpu-shares 512 --blkio-weight 500.
        let r = resources(serde_json::json!({
            "memory": { "limit": 67108864, "swap": 134217728 },
            "pids": { "limit": 50 },
            "cpu": { "quota": 50000, "period": 100000, "shares": 512 },
            "blockIO": { "weight": 500, "throttleReadBpsDevice": [{ "major": 8, "minor": 0, "rate": 1048576 }] },
            "devices": [{ "allow": false, "access": "rwm" }]
        }));
        let l = limits(&r, Use::Create, &[]).unwrap();
        assert_eq!(l.memory, Some(64 << 20));
        assert_eq!(l.memory_swap, Some(128 << 20));
        assert_eq!(l.pids, Some(50));
        assert_eq!((l.cpus, l.cpu_period), (Some(0.5), Some(100_000)));
        assert!(l.keep_swap);
        assert_eq!(l.cpu_weight, Some(20));
        assert_eq!(l.io_weight, Some(4950));
        assert_eq!(l.io_max, ["8:0 rbps=1048576"]);
    }

    #[test]
    fn no_limit_is_unset_at_create_and_lifted_by_update() {
        let r = resources(serde_json::json!({
            "memory": { "limit": -1, "swap": -1 }, "pids": { "limit": -1 }, "cpu": { "quota": -1, "shares": 1024 }
        }));
        assert!(limits(&r, Use::Create, &[]).unwrap().is_empty());
        let l = limits(&r, Use::Update, &[]).unwrap();
        assert_eq!(
            (l.memory, l.memory_swap, l.pids, l.cpus, l.cpu_weight),
            (
                Some(u64::MAX),
                Some(u64::MAX),
                Some(u64::MAX),
                Some(f64::INFINITY),
                Some(100)
            )
        );
    }

    #[test]
    fn what_burrow_cannot_set_is_refused_by_name() {
        for (json, field) in [
            (
                serde_json::json!({ "memory": { "reservation": 1 } }),
                "linux.resources.memory.reservation",
            ),
            (
                serde_json::json!({ "memory": { "swap": 1048576 } }),
                "linux.resources.memory.swap",
            ),
            (
                serde_json::json!({ "memory": { "limit": 2097152, "swap": 1048576 } }),
                "linux.resources.memory.swap",
            ),
            (
                serde_json::json!({ "cpu": { "cpus": "0-1" } }),
                "linux.resources.cpu.cpus",
            ),
            (
                serde_json::json!({ "hugepageLimits": [{ "pageSize": "2MB", "limit": 0 }] }),
                "linux.resources.hugepageLimits",
            ),
            (
                serde_json::json!({ "unified": { "memory.high": "1" } }),
                "linux.resources.unified",
            ),
            (
                serde_json::json!({ "devices": [{ "allow": true, "access": "rwm" }] }),
                "linux.resources.devices",
            ),
        ] {
            let e = limits(&resources(json.clone()), Use::Create, &[]).unwrap_err();
            assert_eq!(e.field, field, "{json}");
        }
    }
}

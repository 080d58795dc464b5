//! User and group id maps of the sandbox's user namespace: the caller's own
//! id, plus its subordinate ranges through the setuid helpers
//! newuidmap/newgidmap when the system grants any.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use nix::unistd::Pid;

use crate::error::{Context, Error, Result};

/// One line of /proc/PID/uid_map: `count` ids from `inner` map to `outer`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct IdRange {
    pub inner: u32,
    pub outer: u32,
    pub count: u32,
}

/// The ranges of a uid_map or gid_map's text (`inner outer count` a
/// line, as /proc/PID/uid_map shows them to the reader).
pub fn parse_map(text: &str) -> Vec<(u64, u64, u64)> {
    text.lines()
        .filter_map(|line| {
            let f: Vec<u64> = line
                .split_whitespace()
                .filter_map(|v| v.parse().ok())
                .collect();
            match f[..] {
                [inner, outer, count] => Some((inner, outer, count)),
                _ => None,
            }
        })
        .collect()
}

/// Whether a map's text gives `id` of the namespace inside an id.
pub fn maps_inner(text: &str, id: u32) -> bool {
    let id = u64::from(id);
    parse_map(text)
        .iter()
        .any(|&(inner, _, count)| inner <= id && id < inner + count)
}

/// Whether a map's text gives `id` of the reader's namespace (outside)
/// an id inside.
pub fn maps_outer(text: &str, id: u32) -> bool {
    let id = u64::from(id);
    parse_map(text)
        .iter()
        .any(|&(_, outer, count)| outer <= id && id < outer + count)
}

/// A subordinate id range granted in /etc/subuid or /etc/subgid.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SubRange {
    pub start: u32,
    pub count: u32,
}

/// Ranges granted to the user named `name` (or numbered `id`) in the
/// contents of /etc/subuid or /etc/subgid.
pub fn parse_subids(content: &str, name: Option<&str>, id: u32) -> Vec<SubRange> {
    let id_text = id.to_string();
    content
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .filter_map(|line| {
            let mut parts = line.split(':');
            let who = parts.next()?;
            let start = parts.next()?.trim().parse::<u32>().ok()?;
            let count = parts.next()?.trim().parse::<u32>().ok()?;
            let matches = Some(who) == name || who == id_text;
            (matches && count > 0).then_some(SubRange { start, count })
        })
        .collect()
}

/// Highest id a user namespace can map (u32::MAX is the invalid id).
const ID_LIMIT: u64 = u32::MAX as u64;

/// The map for one kind of id. The caller's `outer` id appears inside as 0,
/// or as itself with `keep_id`; subordinate ranges fill the other inner ids
/// from 0 upwards, skipping the caller's inner id (podman's layout).
pub fn build_map(outer: u32, keep_id: bool, subs: &[SubRange]) -> Vec<IdRange> {
    let own_inner = if keep_id { outer } else { 0 };
    let mut map = vec![IdRange {
        inner: own_inner,
        outer,
        count: 1,
    }];
    let mut next: u64 = 0;
    for sub in subs {
        let (start, end) = (sub.start as u64, sub.start as u64 + sub.count as u64);
        if (start..end).contains(&(outer as u64)) || end > ID_LIMIT {
            continue; // never hand out the caller's own id twice
        }
        let mut cursor = start;
        while cursor < end && next < ID_LIMIT {
            if next == own_inner as u64 {
                next += 1;
                continue;
            }
            let room = if next < own_inner as u64 {
                own_inner as u64 - next
            } else {
                ID_LIMIT - next
            };
            let n = (end - cursor).min(room);
            map.push(IdRange {
                inner: next as u32,
                outer: cursor as u32,
                count: n as u32,
            });
            next += n;
            cursor += n;
        }
    }
    map.sort_by_key(|r| r.inner);
    map
}

/// Both maps for the sandbox, and how to write them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IdMaps {
    pub uid: Vec<IdRange>,
    pub gid: Vec<IdRange>,
    /// newuidmap and newgidmap, when subordinate ranges are used.
    pub helpers: Option<(PathBuf, PathBuf)>,
    /// Written by the root of the parent namespace (`--userns`), which
    /// has CAP_SETGID there: setgroups is left as the parent has it (a
    /// namespace inherits its parent's "deny", which cannot be undone).
    pub owner: bool,
}

impl IdMaps {
    /// Maps for the calling user. Subordinate ranges are used when
    /// `use_subids`, the caller is not root, ranges exist for both kinds and
    /// the helpers are installed.
    pub fn for_caller(keep_id: bool, use_subids: bool) -> IdMaps {
        let uid = nix::unistd::getuid().as_raw();
        let gid = nix::unistd::getgid().as_raw();
        let single = |outer| build_map(outer, keep_id, &[]);
        let mut maps = IdMaps {
            uid: single(uid),
            gid: single(gid),
            helpers: None,
            owner: false,
        };
        if !use_subids || nix::unistd::geteuid().is_root() {
            return maps;
        }
        let name = nix::unistd::User::from_uid(nix::unistd::getuid())
            .ok()
            .flatten()
            .map(|u| u.name);
        let read = |p: &str| std::fs::read_to_string(p).unwrap_or_default();
        let subuids = parse_subids(&read("/etc/subuid"), name.as_deref(), uid);
        let subgids = parse_subids(&read("/etc/subgid"), name.as_deref(), uid);
        if subuids.is_empty() || subgids.is_empty() {
            return maps;
        }
        if let (Some(u), Some(g)) = (find_helper("newuidmap"), find_helper("newgidmap")) {
            maps.uid = build_map(uid, keep_id, &subuids);
            maps.gid = build_map(gid, keep_id, &subgids);
            maps.helpers = Some((u, g));
        }
        maps
    }

    /// `--uidmap` and `--gidmap`: the maps given. Written directly when
    /// this process is root where it runs (it may map any id it has), or
    /// when each is the caller's own id alone; else by the helpers, which
    /// allow only the caller's subordinate ranges.
    pub fn explicit(uid_specs: &[String], gid_specs: &[String]) -> Result<IdMaps> {
        let parse = |flag: &str, specs: &[String]| -> Result<Vec<IdRange>> {
            specs
                .iter()
                .map(|spec| {
                    let n: Vec<Option<u32>> = spec.split(':').map(|v| v.parse().ok()).collect();
                    match n.as_slice() {
                        [Some(inner), Some(outer), Some(count)] if *count > 0 => Ok(IdRange {
                            inner: *inner,
                            outer: *outer,
                            count: *count,
                        }),
                        _ => Err(Error::usage(format!(
                            "{flag} {spec}: expected INSIDE:OUTSIDE:COUNT (numbers, COUNT > 0)"
                        ))),
                    }
                })
                .collect()
        };
        let (uid, gid) = (parse("--uidmap", uid_specs)?, parse("--gidmap", gid_specs)?);
        let own = |m: &[IdRange], id: u32| matches!(m, [r] if r.outer == id && r.count == 1);
        let direct = nix::unistd::geteuid().is_root()
            || (own(&uid, nix::unistd::getuid().as_raw())
                && own(&gid, nix::unistd::getgid().as_raw()));
        let helpers = if direct {
            None
        } else {
            // What newuidmap would refuse, told here by flag and range.
            let name = nix::unistd::User::from_uid(nix::unistd::getuid())
                .ok()
                .flatten()
                .map(|u| u.name);
            let read = |p: &str| std::fs::read_to_string(p).unwrap_or_default();
            for (flag, file, map, own, specs) in [
                (
                    "--uidmap",
                    "/etc/subuid",
                    &uid,
                    nix::unistd::getuid().as_raw(),
                    uid_specs,
                ),
                (
                    "--gidmap",
                    "/etc/subgid",
                    &gid,
                    nix::unistd::getgid().as_raw(),
                    gid_specs,
                ),
            ] {
                let subs =
                    parse_subids(&read(file), name.as_deref(), nix::unistd::getuid().as_raw());
                for (r, spec) in map.iter().zip(specs) {
                    let (start, end) =
                        (u64::from(r.outer), u64::from(r.outer) + u64::from(r.count));
                    let granted = (r.outer == own && r.count == 1)
                        || subs.iter().any(|s| {
                            u64::from(s.start) <= start
                                && end <= u64::from(s.start) + u64::from(s.count)
                        });
                    if !granted {
                        return Err(Error::usage(format!(
                            "{flag} {spec}: neither the caller's own id nor within its \
                             subordinate ids ({file})"
                        )));
                    }
                }
            }
            match (find_helper("newuidmap"), find_helper("newgidmap")) {
                (Some(u), Some(g)) => Some((u, g)),
                _ => {
                    return Err(Error::usage(
                        "--uidmap/--gidmap: newuidmap and newgidmap are needed to map ranges \
                         other than the caller's own id (Debian's uidmap package)",
                    ))
                }
            }
        };
        Ok(IdMaps {
            uid,
            gid,
            helpers,
            owner: false,
        })
    }

    /// Every id this process's user namespace maps, each to itself (for a
    /// namespace made inside one joined with `--userns`, whose owner this
    /// process is).
    pub fn identity_of_own_ns() -> IdMaps {
        let identity = |file: &str| {
            let text = std::fs::read_to_string(file).unwrap_or_default();
            parse_map(&text)
                .into_iter()
                .filter_map(|(inner, _, count)| {
                    Some(IdRange {
                        inner: u32::try_from(inner).ok()?,
                        outer: u32::try_from(inner).ok()?,
                        count: u32::try_from(count).ok()?,
                    })
                })
                .collect()
        };
        IdMaps {
            uid: identity("/proc/self/uid_map"),
            gid: identity("/proc/self/gid_map"),
            helpers: None,
            owner: true,
        }
    }

    /// The maps as one line: `uid INNER:OUTER:COUNT,... gid ...`.
    pub fn describe(&self) -> String {
        let one = |m: &[IdRange]| {
            m.iter()
                .map(|r| format!("{}:{}:{}", r.inner, r.outer, r.count))
                .collect::<Vec<_>>()
                .join(",")
        };
        format!("uid {} gid {}", one(&self.uid), one(&self.gid))
    }

    /// Writes the maps of the user namespace of `pid`.
    pub fn apply(&self, pid: Pid) -> Result<()> {
        match &self.helpers {
            Some((newuidmap, newgidmap)) => {
                // The helpers are independent, and spawning one blocks
                // until its (slow, setuid) exec is under way: run each
                // from its own thread so that both execs overlap.
                std::thread::scope(|scope| {
                    let uid = scope.spawn(|| run_helper(newuidmap, pid, &self.uid));
                    let gid = run_helper(newgidmap, pid, &self.gid);
                    let uid = uid.join().unwrap_or_else(|_| {
                        Err(Error::usage(format!("{} panicked", newuidmap.display())))
                    });
                    uid.and(gid)
                })
            }
            None => {
                let proc = PathBuf::from(format!("/proc/{pid}"));
                // Without newgidmap an unprivileged gid_map needs setgroups
                // denied; root (where it runs) may leave setgroups to the
                // sandbox.
                if !self.owner && !nix::unistd::geteuid().is_root() {
                    write_proc(&proc.join("setgroups"), "deny")?;
                }
                write_proc(&proc.join("gid_map"), &map_text(&self.gid))?;
                write_proc(&proc.join("uid_map"), &map_text(&self.uid))
            }
        }
    }
}

fn map_text(map: &[IdRange]) -> String {
    let mut s = String::new();
    for r in map {
        let _ = writeln!(s, "{} {} {}", r.inner, r.outer, r.count);
    }
    s
}

fn write_proc(path: &Path, text: &str) -> Result<()> {
    std::fs::write(path, text).map_err(|e| {
        Error::usage(format!(
            "cannot write {}: {} (user namespaces may be restricted, e.g. by AppArmor's \
             kernel.apparmor_restrict_unprivileged_userns)",
            path.display(),
            crate::sys::errno_text(&e)
        ))
    })
}

fn find_helper(name: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH").unwrap_or_default();
    ["/usr/bin", "/usr/sbin", "/bin"]
        .map(PathBuf::from)
        .into_iter()
        .chain(std::env::split_paths(&path))
        .map(|d| d.join(name))
        .find(|p| p.is_file())
}

fn run_helper(helper: &Path, pid: Pid, map: &[IdRange]) -> Result<()> {
    let mut cmd = Command::new(helper);
    cmd.arg(pid.to_string());
    for r in map {
        cmd.args([
            r.inner.to_string(),
            r.outer.to_string(),
            r.count.to_string(),
        ]);
    }
    let out = cmd
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .output()
        .ctx(|| format!("cannot run {}", helper.display()))?;
    if out.status.success() {
        return Ok(());
    }
    let stderr = String::from_utf8_lossy(&out.stderr);
    let reason = stderr.lines().last().unwrap_or("no message").trim();
    Err(Error::usage(format!(
        "{} failed ({}): {reason} (check /etc/subuid and /etc/subgid, or use --map-users none)",
        helper.display(),
        out.status
    )))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn maps_are_read_from_either_side() {
        let podman = "         0       1001          1\n         1     100000      65536\n";
        assert!(maps_outer(podman, 1001) && maps_outer(podman, 165535));
        assert!(!maps_outer(podman, 0) && !maps_outer(podman, 165536));
        assert!(maps_inner(podman, 0) && maps_inner(podman, 65536));
        assert!(!maps_inner(podman, 65537));
        assert!(maps_outer("         0          0 4294967295\n", 0));
        assert!(maps_outer("1000 1001 1\n0 0 1\n", 0));
        assert!(!maps_outer("", 0));
        assert_eq!(parse_map("bad\n1 2 3\n"), vec![(1, 2, 3)]);
    }

    #[test]
    fn parses_by_name_and_by_number() {
        let text = "# comment\nalice:100000:65536\n1001:300000:10\nbob:200000:65536\nbad line\nalice:500000:0\n";
        assert_eq!(
            parse_subids(text, Some("alice"), 1000),
            vec![SubRange {
                start: 100000,
                count: 65536
            }]
        );
        assert_eq!(
            parse_subids(text, Some("carol"), 1001),
            vec![SubRange {
                start: 300000,
                count: 10
            }]
        );
        assert!(parse_subids(text, None, 7).is_empty());
    }

    #[test]
    fn root_inside_with_subordinate_ranges() {
        let map = build_map(
            1000,
            false,
            &[SubRange {
                start: 100000,
                count: 65536,
            }],
        );
        assert_eq!(
            map,
            vec![
                IdRange {
                    inner: 0,
                    outer: 1000,
                    count: 1
                },
                IdRange {
                    inner: 1,
                    outer: 100000,
                    count: 65536
                },
            ]
        );
    }

    #[test]
    fn keep_id_splits_ranges_around_the_caller() {
        let map = build_map(
            1000,
            true,
            &[SubRange {
                start: 100000,
                count: 65536,
            }],
        );
        assert_eq!(
            map,
            vec![
                IdRange {
                    inner: 0,
                    outer: 100000,
                    count: 1000
                },
                IdRange {
                    inner: 1000,
                    outer: 1000,
                    count: 1
                },
                IdRange {
                    inner: 1001,
                    outer: 101000,
                    count: 64536
                },
            ]
        );
    }

    #[test]
    fn single_mapping_without_ranges() {
        assert_eq!(
            build_map(1000, false, &[]),
            vec![IdRange {
                inner: 0,
                outer: 1000,
                count: 1
            }]
        );
        assert_eq!(map_text(&build_map(7, true, &[])), "7 7 1\n");
    }

    #[test]
    fn a_range_holding_the_caller_is_skipped() {
        let map = build_map(
            1000,
            false,
            &[SubRange {
                start: 900,
                count: 200,
            }],
        );
        assert_eq!(map.len(), 1);
    }
}

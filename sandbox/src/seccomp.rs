//! seccomp profiles in the OCI/Docker format: parsed, compiled to a BPF
//! program with libseccomp, and cached by content hash so that a sandbox's
//! start pays for a file read, not for a compile.
//!
//! The profiles shipped in `seccomp-profiles/` are built into the binary.

use std::collections::BTreeSet;
use std::io::{Read, Seek, Write};
use std::path::{Path, PathBuf};

use libseccomp::{
    ScmpAction, ScmpArch, ScmpArgCompare, ScmpCompareOp, ScmpFilterContext, ScmpSyscall,
};
use serde::Deserialize;
use sha2::{Digest, Sha256};

use crate::caps::Cap;
use crate::error::{Error, Result};

/// The shipped profiles, by the name `--seccomp` takes.
pub const SHIPPED: [(&str, &str); 2] = [
    (
        "default",
        include_str!("../../seccomp-profiles/default.json"),
    ),
    ("strict", include_str!("../../seccomp-profiles/strict.json")),
];

/// A profile in the OCI/Docker format.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Profile {
    default_action: String,
    default_errno_ret: Option<u32>,
    #[serde(default)]
    architectures: Vec<String>,
    #[serde(default)]
    arch_map: Vec<ArchMap>,
    #[serde(default)]
    syscalls: Vec<Rule>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct ArchMap {
    architecture: String,
    #[serde(default)]
    sub_architectures: Vec<String>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct Rule {
    #[serde(default)]
    names: Vec<String>,
    name: Option<String>,
    action: String,
    errno_ret: Option<u32>,
    #[serde(default)]
    args: Vec<Arg>,
    #[serde(default)]
    includes: Condition,
    #[serde(default)]
    excludes: Condition,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct Arg {
    index: u32,
    value: u64,
    #[serde(default)]
    value_two: u64,
    op: String,
}

/// When a rule applies: `includes` needs all of it, `excludes` any of it.
#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
struct Condition {
    #[serde(default)]
    caps: Vec<String>,
    #[serde(default)]
    arches: Vec<String>,
    min_kernel: Option<String>,
}

/// What a profile is compiled for.
#[derive(Debug, Clone)]
pub struct Target<'a> {
    /// Capabilities the command keeps (rules include/exclude by them).
    pub caps: &'a BTreeSet<Cap>,
    /// Log what the profile would refuse instead of refusing it.
    pub log: bool,
}

impl Profile {
    pub fn parse(text: &str, what: &str) -> Result<Profile> {
        serde_json::from_str(text).map_err(|e| Error::usage(format!("seccomp profile {what}: {e}")))
    }

    /// The syscall names this libseccomp does not know on any
    /// architecture: left out of the filter (a Docker profile names calls
    /// newer than an older system's libseccomp), but said once, since a
    /// typo would otherwise quietly leave a call to the default action.
    pub fn unknown_names(&self) -> Vec<&str> {
        let mut out: Vec<&str> = self
            .syscalls
            .iter()
            .flat_map(|r| r.name.iter().chain(&r.names))
            .map(String::as_str)
            .filter(|n| ScmpSyscall::from_name(n).is_err())
            .collect();
        out.sort_unstable();
        out.dedup();
        out
    }

    /// Compiles the profile to BPF programs (`struct sock_filter`s) to
    /// install in order. Usually one; a second when the profile carves an
    /// exception back to its default action out of a broader rule (ioctl
    /// allowed, but not TIOCSTI): libseccomp cannot express a rule whose
    /// action is the default, so those go in a filter of their own, which
    /// allows everything else. The kernel applies the strictest answer.
    pub fn compile(&self, target: &Target, what: &str) -> Result<Vec<Vec<u8>>> {
        let bad = |msg: String| Error::usage(format!("seccomp profile {what}: {msg}"));
        let default = action(
            &self.default_action,
            self.default_errno_ret,
            None,
            target.log,
        )
        .map_err(bad)?;
        let native = ScmpArch::native();
        let arches = self.arches(native);
        let new_filter = |act: ScmpAction| -> Result<ScmpFilterContext> {
            let mut ctx = ScmpFilterContext::new(act)
                .map_err(|e| bad(format!("cannot start a filter: {e}")))?;
            // A binary search over syscall numbers rather than a list: each
            // call walks a few dozen instructions instead of hundreds.
            ctx.set_ctl_optimize(2)
                .map_err(|e| bad(format!("cannot set the filter's layout: {e}")))?;
            for &arch in &arches {
                if arch != native {
                    ctx.add_arch(arch)
                        .map_err(|e| bad(format!("cannot add architecture {arch:?}: {e}")))?;
                }
            }
            Ok(ctx)
        };
        let mut main = new_filter(default)?;
        let mut carve_outs: Option<ScmpFilterContext> = None;
        let kernel = kernel_version();
        for rule in &self.syscalls {
            if !rule.applies(target.caps, native, kernel) {
                continue;
            }
            let act = action(
                &rule.action,
                rule.errno_ret,
                self.default_errno_ret,
                target.log,
            )
            .map_err(bad)?;
            let ctx = match (act == default, rule.args.is_empty()) {
                (true, true) => continue, // the default already says so
                (true, false) => match &mut carve_outs {
                    Some(ctx) => ctx,
                    none => none.insert(new_filter(ScmpAction::Allow)?),
                },
                (false, _) => &mut main,
            };
            let cmps = rule.comparators().map_err(bad)?;
            for name in rule.name.iter().chain(&rule.names) {
                // Names this libseccomp or architecture does not know are
                // left out, as Docker does.
                let Ok(sys) = ScmpSyscall::from_name(name) else {
                    continue;
                };
                for group in &cmps {
                    ctx.add_rule_conditional(act, sys, group)
                        .map_err(|e| bad(format!("rule for {name}: {e}")))?;
                }
            }
        }
        std::iter::once(main)
            .chain(carve_outs)
            .map(|ctx| export(&ctx).map_err(|e| bad(format!("cannot export the filter: {e}"))))
            .collect()
    }

    /// The architectures to filter for: the native one and those it runs
    /// (x86 and x32 on x86-64, arm on aarch64), when the profile lists them.
    fn arches(&self, native: ScmpArch) -> Vec<ScmpArch> {
        let family: &[ScmpArch] = match native {
            ScmpArch::X8664 => &[ScmpArch::X8664, ScmpArch::X86, ScmpArch::X32],
            ScmpArch::Aarch64 => &[ScmpArch::Aarch64, ScmpArch::Arm],
            _ => &[],
        };
        let listed: Vec<ScmpArch> = self
            .architectures
            .iter()
            .chain(
                self.arch_map
                    .iter()
                    .flat_map(|m| std::iter::once(&m.architecture).chain(&m.sub_architectures)),
            )
            .filter_map(|a| a.parse().ok())
            .collect();
        let mut out = vec![native];
        out.extend(
            family
                .iter()
                .copied()
                .filter(|a| *a != native && listed.contains(a)),
        );
        out
    }
}

impl Rule {
    fn applies(&self, caps: &BTreeSet<Cap>, native: ScmpArch, kernel: (u32, u32)) -> bool {
        let has_cap = |name: &String| name.parse::<Cap>().is_ok_and(|c| caps.contains(&c));
        let is_arch = |name: &String| name.parse::<ScmpArch>().is_ok_and(|a| a == native);
        let kernel_at_least = |v: &String| parse_version(v).is_some_and(|v| kernel >= v);
        let inc = &self.includes;
        let exc = &self.excludes;
        inc.caps.iter().all(has_cap)
            && (inc.arches.is_empty() || inc.arches.iter().any(is_arch))
            && inc.min_kernel.as_ref().is_none_or(kernel_at_least)
            && !exc.caps.iter().any(has_cap)
            && !exc.arches.iter().any(is_arch)
            && !exc.min_kernel.as_ref().is_some_and(kernel_at_least)
    }

    /// The argument checks, as groups that are each one libseccomp rule:
    /// checks on different arguments must all hold (one rule), several
    /// checks on the same argument are alternatives (one rule each), as
    /// runc reads them.
    fn comparators(&self) -> std::result::Result<Vec<Vec<ScmpArgCompare>>, String> {
        let mut cmps = Vec::new();
        for a in &self.args {
            if a.index > 5 {
                return Err(format!("argument index {} is not 0 to 5", a.index));
            }
            let op: ScmpCompareOp =
                a.op.parse()
                    .map_err(|_| format!("unknown comparison {:?}", a.op))?;
            cmps.push(match op {
                ScmpCompareOp::MaskedEqual(_) => {
                    ScmpArgCompare::new(a.index, ScmpCompareOp::MaskedEqual(a.value), a.value_two)
                }
                op => ScmpArgCompare::new(a.index, op, a.value),
            });
        }
        let indexes: BTreeSet<u32> = self.args.iter().map(|a| a.index).collect();
        Ok(if indexes.len() == self.args.len() {
            vec![cmps]
        } else {
            cmps.into_iter().map(|c| vec![c]).collect()
        })
    }
}

/// An OCI action name as a libseccomp action; with `log`, everything that
/// would stop a call is logged instead.
fn action(
    name: &str,
    errno: Option<u32>,
    default_errno: Option<u32>,
    log: bool,
) -> std::result::Result<ScmpAction, String> {
    let act = match name {
        "SCMP_ACT_ALLOW" => return Ok(ScmpAction::Allow),
        "SCMP_ACT_LOG" => return Ok(ScmpAction::Log),
        "SCMP_ACT_ERRNO" => {
            ScmpAction::Errno(errno.or(default_errno).unwrap_or(libc::EPERM as u32) as i32)
        }
        "SCMP_ACT_KILL" | "SCMP_ACT_KILL_THREAD" => ScmpAction::KillThread,
        "SCMP_ACT_KILL_PROCESS" => ScmpAction::KillProcess,
        "SCMP_ACT_TRAP" => ScmpAction::Trap,
        "SCMP_ACT_TRACE" => ScmpAction::Trace(errno.unwrap_or(0) as u16),
        other => return Err(format!("unknown action {other:?}")),
    };
    Ok(if log { ScmpAction::Log } else { act })
}

/// libseccomp 2.5 exports only to a file descriptor: a memfd.
fn export(ctx: &ScmpFilterContext) -> std::io::Result<Vec<u8>> {
    let mut file = crate::sys::memfd("burrow-seccomp")?;
    ctx.export_bpf(&file).map_err(std::io::Error::other)?;
    file.rewind()?;
    let mut out = Vec::new();
    file.read_to_end(&mut out)?;
    if out.is_empty() || !out.len().is_multiple_of(8) {
        return Err(std::io::Error::other("libseccomp exported no program"));
    }
    Ok(out)
}

fn parse_version(v: &str) -> Option<(u32, u32)> {
    let mut parts = v.split(['.', '-']);
    Some((parts.next()?.parse().ok()?, parts.next()?.parse().ok()?))
}

fn kernel_version() -> (u32, u32) {
    nix::sys::utsname::uname()
        .ok()
        .and_then(|u| parse_version(&u.release().to_string_lossy()))
        .unwrap_or((0, 0))
}

/// Where compiled programs are kept: `$XDG_CACHE_HOME/burrow/seccomp`, or
/// `~/.cache/burrow/seccomp`, a directory of mode 0700. (A sandbox given
/// write access to it, by binding it read-write, could change what later
/// sandboxes load: do not.)
fn cache_dir() -> Option<PathBuf> {
    let base = std::env::var_os("XDG_CACHE_HOME")
        .map(PathBuf::from)
        .filter(|p| p.is_absolute())
        .or_else(|| {
            std::env::var_os("HOME")
                .map(|h| PathBuf::from(h).join(".cache"))
                .filter(|p| p.is_absolute())
        })?;
    Some(base.join("burrow").join("seccomp"))
}

/// The BPF programs for profile `text`, from the cache when it holds them
/// for the same text, target, libseccomp, kernel and burrow binary.
pub fn programs(text: &str, target: &Target, what: &str) -> Result<Vec<Vec<u8>>> {
    let mut key = Sha256::new();
    key.update(text.as_bytes());
    let v = libseccomp::ScmpVersion::current().ok();
    key.update(
        format!(
            "\0{:?}\0{}\0{:?}\0{:?}\0{}\0{:?}",
            target.caps,
            target.log,
            v.map(|v| (v.major, v.minor, v.micro)),
            kernel_version(),
            env!("CARGO_PKG_VERSION"),
            this_binary()
        )
        .as_bytes(),
    );
    let name = format!("{:x}.bpf", key.finalize());
    let cached = cache_dir().map(|d| d.join(name));
    if let Some(progs) = cached
        .as_ref()
        .and_then(|path| read_private(path).ok())
        .and_then(|bytes| unpack(&bytes))
    {
        return Ok(progs);
    }
    let progs = Profile::parse(text, what)?.compile(target, what)?;
    if let Some(path) = &cached {
        // A cache that cannot be written only costs the next start a compile.
        let _ = store(path, &pack(&progs));
    }
    Ok(progs)
}

/// Cache file format: each program as a little-endian u32 byte length and
/// its bytes.
fn pack(progs: &[Vec<u8>]) -> Vec<u8> {
    let mut out = Vec::new();
    for p in progs {
        out.extend((p.len() as u32).to_le_bytes());
        out.extend(p);
    }
    out
}

fn unpack(mut bytes: &[u8]) -> Option<Vec<Vec<u8>>> {
    let mut out = Vec::new();
    while !bytes.is_empty() {
        let (len, rest) = bytes.split_first_chunk::<4>()?;
        let len = u32::from_le_bytes(*len) as usize;
        if len == 0 || !len.is_multiple_of(8) || rest.len() < len {
            return None;
        }
        out.push(rest[..len].to_vec());
        bytes = &rest[len..];
    }
    (!out.is_empty()).then_some(out)
}

/// Which burrow binary this is (a rebuild may compile differently).
fn this_binary() -> Option<(u64, u64, i64, i64)> {
    use std::os::unix::fs::MetadataExt;
    let m = std::fs::metadata("/proc/self/exe").ok()?;
    Some((m.dev(), m.ino(), m.mtime(), m.mtime_nsec()))
}

/// Whether `dir` is a directory only its owner, the caller, may change:
/// a program loaded from anywhere else could have been put there by
/// someone else.
fn private_dir(dir: &Path) -> bool {
    use std::os::unix::fs::MetadataExt;
    std::fs::symlink_metadata(dir).is_ok_and(|m| {
        m.is_dir() && m.uid() == nix::unistd::geteuid().as_raw() && m.mode() & 0o022 == 0
    })
}

/// A cached program: a regular file (not a symlink) in a private directory.
fn read_private(path: &Path) -> std::io::Result<Vec<u8>> {
    use std::os::unix::fs::OpenOptionsExt;
    let dir = path.parent().expect("cache file has a directory");
    if !private_dir(dir) {
        return Err(std::io::Error::other("the cache directory is not private"));
    }
    let mut f = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NOFOLLOW)
        .open(path)?;
    let mut out = Vec::new();
    f.read_to_end(&mut out)?;
    Ok(out)
}

fn store(path: &Path, prog: &[u8]) -> std::io::Result<()> {
    use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
    let dir = path.parent().expect("cache file has a directory");
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)?;
    if !private_dir(dir) {
        return Err(std::io::Error::other("the cache directory is not private"));
    }
    let tmp = dir.join(format!(".{}.tmp", std::process::id()));
    let _ = std::fs::remove_file(&tmp);
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true) // O_EXCL: never through a planted symlink
        .mode(0o600)
        .custom_flags(libc::O_NOFOLLOW)
        .open(&tmp)?;
    f.write_all(prog)?;
    f.sync_data()?;
    std::fs::rename(&tmp, path)
}

/// The text of `--seccomp VALUE`: a shipped profile's name or a file.
pub fn profile_text(value: &str) -> Result<(String, String)> {
    if let Some((_, text)) = SHIPPED.iter().find(|(n, _)| *n == value) {
        return Ok((text.to_string(), value.to_string()));
    }
    let text = crate::sys::read_bounded(std::path::Path::new(value), MAX_PROFILE)
        .map_err(|why| Error::usage(format!("--seccomp {value}: {why}")))?;
    if let Ok(profile) = Profile::parse(&text, value) {
        let unknown = profile.unknown_names();
        if !unknown.is_empty() {
            eprintln!(
                "burrow: warning: seccomp profile {value}: left out syscall{} this system does not know: {}",
                if unknown.len() == 1 { "" } else { "s" },
                crate::error::one_line(&unknown.join(", "))
            );
        }
    }
    Ok((text, value.to_string()))
}

/// The most a seccomp profile file may hold (Docker's is about 20 KiB).
const MAX_PROFILE: u64 = 4 << 20;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_shipped_profile_parses_and_compiles() {
        let none = BTreeSet::new();
        let all: BTreeSet<Cap> = crate::caps::all_caps().into_iter().collect();
        for (name, text) in SHIPPED {
            let p = Profile::parse(text, name).unwrap();
            for caps in [&none, &all] {
                for log in [false, true] {
                    let progs = p.compile(&Target { caps, log }, name).unwrap();
                    assert!(progs[0].len() >= 8 * 10, "{name}: program too short");
                    assert_eq!(unpack(&pack(&progs)), Some(progs));
                }
            }
        }
    }

    #[test]
    fn names_libseccomp_does_not_know_are_found() {
        // (The shipped profiles may name calls newer than this system's
        // libseccomp, as Docker's does: they are not warned about.)
        let p = Profile::parse(
            r#"{"defaultAction":"SCMP_ACT_ALLOW","syscalls":[{"names":["getpid","no_such_call"],"action":"SCMP_ACT_ERRNO"}]}"#,
            "x",
        )
        .unwrap();
        assert_eq!(p.unknown_names(), vec!["no_such_call"]);
    }

    #[test]
    fn bad_profiles_name_the_problem() {
        let t = Target {
            caps: &BTreeSet::new(),
            log: false,
        };
        let e = Profile::parse("{\"defaultAction\": 3}", "x").unwrap_err();
        assert!(e.to_string().starts_with("seccomp profile x: "), "{e}");
        let p = Profile::parse(r#"{"defaultAction": "SCMP_ACT_NOPE"}"#, "x").unwrap();
        assert!(p
            .compile(&t, "x")
            .unwrap_err()
            .to_string()
            .contains("SCMP_ACT_NOPE"));
        let p = Profile::parse(
            r#"{"defaultAction": "SCMP_ACT_ERRNO", "syscalls": [{"names": ["read"], "action": "SCMP_ACT_ALLOW", "args": [{"index": 0, "value": 1, "op": "SCMP_CMP_SOMETIMES"}]}]}"#,
            "x",
        )
        .unwrap();
        assert!(p
            .compile(&t, "x")
            .unwrap_err()
            .to_string()
            .contains("SCMP_CMP_SOMETIMES"));
    }
}

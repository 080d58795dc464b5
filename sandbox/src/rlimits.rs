//! `--rlimit NAME=SOFT[:HARD]`: resource limits for the command.

use nix::sys::resource::{setrlimit, Resource, RLIM_INFINITY};

/// One limit to set; `SOFT` alone sets both limits, as `docker --ulimit`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Rlimit {
    pub name: &'static str,
    resource: Resource,
    pub soft: u64,
    pub hard: u64,
}

const NAMES: [(&str, Resource); 16] = [
    ("as", Resource::RLIMIT_AS),
    ("core", Resource::RLIMIT_CORE),
    ("cpu", Resource::RLIMIT_CPU),
    ("data", Resource::RLIMIT_DATA),
    ("fsize", Resource::RLIMIT_FSIZE),
    ("locks", Resource::RLIMIT_LOCKS),
    ("memlock", Resource::RLIMIT_MEMLOCK),
    ("msgqueue", Resource::RLIMIT_MSGQUEUE),
    ("nice", Resource::RLIMIT_NICE),
    ("nofile", Resource::RLIMIT_NOFILE),
    ("nproc", Resource::RLIMIT_NPROC),
    ("rss", Resource::RLIMIT_RSS),
    ("rtprio", Resource::RLIMIT_RTPRIO),
    ("rttime", Resource::RLIMIT_RTTIME),
    ("sigpending", Resource::RLIMIT_SIGPENDING),
    ("stack", Resource::RLIMIT_STACK),
];

impl std::str::FromStr for Rlimit {
    type Err = String;

    fn from_str(spec: &str) -> Result<Rlimit, String> {
        let bad = |why: String| format!("--rlimit {spec}: {why}");
        let (name, values) = spec
            .split_once('=')
            .ok_or_else(|| bad("expected NAME=SOFT[:HARD]".into()))?;
        let key = name.trim().to_ascii_lowercase();
        let key = key.strip_prefix("rlimit_").unwrap_or(&key);
        let (name, resource) = NAMES
            .iter()
            .find(|(n, _)| *n == key)
            .copied()
            .ok_or_else(|| {
                let known: Vec<&str> = NAMES.iter().map(|(n, _)| *n).collect();
                bad(format!(
                    "unknown limit {name:?} (known: {})",
                    known.join(", ")
                ))
            })?;
        let value = |v: &str| -> Result<u64, String> {
            match v.trim() {
                "unlimited" | "infinity" => Ok(RLIM_INFINITY),
                n => n
                    .parse()
                    .map_err(|_| bad(format!("{n:?} is not a number or \"unlimited\""))),
            }
        };
        let (soft, hard) = match values.split_once(':') {
            Some((s, h)) => (value(s)?, value(h)?),
            None => (value(values)?, value(values)?),
        };
        if soft > hard {
            return Err(bad("the soft limit is above the hard one".into()));
        }
        Ok(Rlimit {
            name,
            resource,
            soft,
            hard,
        })
    }
}

impl Rlimit {
    /// Sets the limit on the calling process (raising a hard limit needs
    /// CAP_SYS_RESOURCE, which the sandbox's root has until it execs).
    pub fn apply(&self) -> nix::Result<()> {
        setrlimit(self.resource, self.soft, self.hard)
    }

    /// The kernel's number for the resource (RLIMIT_*).
    pub fn resource_number(&self) -> u32 {
        self.resource as u32
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn specs_parse() {
        let r: Rlimit = "nofile=64:128".parse().unwrap();
        assert_eq!((r.name, r.soft, r.hard), ("nofile", 64, 128));
        let r: Rlimit = "RLIMIT_CORE=0".parse().unwrap();
        assert_eq!((r.name, r.soft, r.hard), ("core", 0, 0));
        let r: Rlimit = "as=unlimited".parse().unwrap();
        assert_eq!(r.hard, RLIM_INFINITY);
        for bad in ["nofile", "files=3", "nofile=x", "nofile=9:3"] {
            let e = bad.parse::<Rlimit>().unwrap_err();
            assert!(e.starts_with(&format!("--rlimit {bad}: ")), "{e}");
        }
    }
}

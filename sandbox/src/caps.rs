//! Capabilities: a command that is root inside keeps podman's default set
//! inside the sandbox's user namespace (and only there), a command that is
//! not keeps none; `--cap-add` and `--cap-drop` change that as podman's
//! options do.

use std::collections::BTreeSet;
use std::fmt;
use std::str::FromStr;

use caps::{CapSet, Capability, CapsHashSet};

/// One capability, ordered by its number.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Cap(u8);

impl Cap {
    /// The kernel's number for the capability (CAP_*).
    pub fn number(self) -> u8 {
        self.0
    }

    fn capability(self) -> Capability {
        caps::all()
            .into_iter()
            .find(|c| c.index() == self.0)
            .expect("a Cap is built from a known capability")
    }
}

impl From<Capability> for Cap {
    fn from(c: Capability) -> Cap {
        Cap(c.index())
    }
}

impl FromStr for Cap {
    type Err = String;

    /// `CAP_NET_RAW`, `cap_net_raw` or `NET_RAW`.
    fn from_str(name: &str) -> Result<Cap, String> {
        caps::to_canonical(name)
            .parse::<Capability>()
            .map(Cap::from)
            .map_err(|_| format!("unknown capability {name:?}"))
    }
}

impl fmt::Display for Cap {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.capability())
    }
}

/// Every capability this build knows.
pub fn all_caps() -> Vec<Cap> {
    caps::all().into_iter().map(Cap::from).collect()
}

/// What a command that is root inside keeps by default: podman's set.
pub const ROOT_DEFAULT: [Capability; 11] = [
    Capability::CAP_CHOWN,
    Capability::CAP_DAC_OVERRIDE,
    Capability::CAP_FOWNER,
    Capability::CAP_FSETID,
    Capability::CAP_KILL,
    Capability::CAP_NET_BIND_SERVICE,
    Capability::CAP_SETFCAP,
    Capability::CAP_SETGID,
    Capability::CAP_SETPCAP,
    Capability::CAP_SETUID,
    Capability::CAP_SYS_CHROOT,
];

/// Capability names or comma-separated lists, and whether `ALL` was one.
fn parse_names<S: AsRef<str>>(option: &str, values: &[S]) -> Result<(BTreeSet<Cap>, bool), String> {
    let mut out = BTreeSet::new();
    let mut all = false;
    for name in values.iter().flat_map(|v| v.as_ref().split(',')) {
        let name = name.trim();
        if name.eq_ignore_ascii_case("ALL") {
            all = true;
        } else {
            out.insert(name.parse().map_err(|e| format!("{option}: {e}"))?);
        }
    }
    Ok((out, all))
}

/// `--cap-add` values: names, comma-separated lists, or `ALL`.
pub fn parse_list<S: AsRef<str>>(values: &[S]) -> Result<BTreeSet<Cap>, String> {
    let (mut out, all) = parse_names("--cap-add", values)?;
    if all {
        out.extend(all_caps());
    }
    Ok(out)
}

/// The set a command keeps: podman's default for one that is root inside
/// (none otherwise), then `--cap-add` and `--cap-drop` as podman merges
/// them: `--cap-drop ALL` keeps just what is added, `--cap-add ALL` keeps
/// all but what is dropped, and one capability both added and dropped is
/// an error.
pub fn kept<S: AsRef<str>>(
    root_inside: bool,
    add: &[S],
    drop: &[S],
) -> Result<BTreeSet<Cap>, String> {
    let (add, add_all) = parse_names("--cap-add", add)?;
    let (drop, drop_all) = parse_names("--cap-drop", drop)?;
    if add_all && drop_all {
        return Err(
            "--cap-add ALL and --cap-drop ALL together keep nothing certain: give one".into(),
        );
    }
    if let Some(both) = add.intersection(&drop).next() {
        return Err(format!(
            "{both} is both added (--cap-add) and dropped (--cap-drop)"
        ));
    }
    if drop_all {
        return Ok(add);
    }
    let mut out: BTreeSet<Cap> = if add_all {
        all_caps().into_iter().collect()
    } else if root_inside {
        ROOT_DEFAULT.iter().map(|&c| Cap::from(c)).collect()
    } else {
        BTreeSet::new()
    };
    out.extend(add);
    out.retain(|c| !drop.contains(c));
    Ok(out)
}

/// In the command's process, first: the bounding set limited to `keep`
/// (that needs CAP_SETPCAP, so before any switch of user).
pub fn limit_bounding(keep: &BTreeSet<Cap>) -> Result<(), caps::errors::CapsError> {
    let keep: CapsHashSet = keep.iter().map(|c| c.capability()).collect();
    for cap in caps::runtime::thread_all_supported() {
        if !keep.contains(&cap) {
            caps::drop(None, CapSet::Bounding, cap)?;
        }
    }
    Ok(())
}

/// Then, just before exec (after [`limit_bounding`] and the switch of
/// user, which kept the permitted set): every other set but `keep` is
/// cleared. For a command that is not root inside the inheritable and
/// ambient sets carry `keep` across exec; for root the bounding set caps
/// what exec gives it.
pub fn limit_to(keep: &BTreeSet<Cap>) -> Result<(), caps::errors::CapsError> {
    let keep: CapsHashSet = keep.iter().map(|c| c.capability()).collect();
    caps::clear(None, CapSet::Ambient)?;
    // Root's exec keeps the bounding set by itself. Its inheritable set
    // stays empty, so that a program with file capabilities gets none from
    // it (CVE-2022-27652's lesson), and nothing is ambient, which would
    // pass to its non-root children.
    if nix::unistd::geteuid().is_root() {
        caps::clear(None, CapSet::Inheritable)?;
    } else {
        caps::set(None, CapSet::Inheritable, &keep)?;
        for cap in &keep {
            caps::raise(None, CapSet::Ambient, *cap)?;
        }
    }
    caps::set(None, CapSet::Effective, &keep)?;
    caps::set(None, CapSet::Permitted, &keep)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_parse_in_every_spelling() {
        let want: Cap = Capability::CAP_NET_RAW.into();
        for name in ["CAP_NET_RAW", "cap_net_raw", "NET_RAW", "net_raw"] {
            assert_eq!(name.parse::<Cap>().unwrap(), want, "{name}");
        }
        assert_eq!(want.to_string(), "CAP_NET_RAW");
        assert!("CAP_FLY".parse::<Cap>().unwrap_err().contains("CAP_FLY"));
        let set = parse_list(&["chown,CAP_FOWNER", "kill"]).unwrap();
        assert_eq!(set.len(), 3);
        assert_eq!(parse_list(&["ALL"]).unwrap().len(), all_caps().len());
    }

    fn names(set: &BTreeSet<Cap>) -> Vec<String> {
        set.iter().map(|c| c.to_string()).collect()
    }

    #[test]
    fn kept_sets_merge_as_podman_does() {
        let none: [&str; 0] = [];
        let root = kept(true, &none, &none).unwrap();
        assert_eq!(root.len(), 11);
        assert!(root.contains(&"SYS_CHROOT".parse().unwrap()));
        assert!(!root.contains(&"SYS_ADMIN".parse().unwrap()));
        assert!(kept(false, &none, &none).unwrap().is_empty());
        assert_eq!(
            names(&kept(false, &["net_raw"], &none).unwrap()),
            ["CAP_NET_RAW"]
        );
        let less = kept(true, &["NET_RAW"], &["chown,CAP_KILL"]).unwrap();
        assert_eq!(less.len(), 10);
        assert!(!less.contains(&"CHOWN".parse().unwrap()));
        assert!(less.contains(&"NET_RAW".parse().unwrap()));
        assert_eq!(
            names(&kept(true, &["SETUID"], &["ALL"]).unwrap()),
            ["CAP_SETUID"]
        );
        assert_eq!(
            kept(true, &["ALL"], &["SYS_ADMIN"]).unwrap().len(),
            all_caps().len() - 1
        );
        let both = kept(true, &["kill"], &["CAP_KILL"]).unwrap_err();
        assert!(both.contains("CAP_KILL is both added"), "{both}");
        assert!(kept(true, &["ALL"], &["ALL"]).is_err());
        let bad = kept(true, &none, &["CAP_FLY"]).unwrap_err();
        assert!(bad.starts_with("--cap-drop: unknown capability"), "{bad}");
    }
}

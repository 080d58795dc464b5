//! Capabilities: by default the command keeps none; `--cap-add` keeps the
//! named ones inside the sandbox's user namespace (and only there).

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

/// `--cap-add` values: names, comma-separated lists, or `ALL`.
pub fn parse_list<S: AsRef<str>>(values: &[S]) -> Result<BTreeSet<Cap>, String> {
    let mut out = BTreeSet::new();
    for name in values.iter().flat_map(|v| v.as_ref().split(',')) {
        let name = name.trim();
        if name.eq_ignore_ascii_case("ALL") {
            out.extend(all_caps());
        } else {
            out.insert(name.parse().map_err(|e| format!("--cap-add: {e}"))?);
        }
    }
    Ok(out)
}

/// In the command's process just before exec: every set but `keep` is
/// cleared. The bounding set goes first (that needs CAP_SETPCAP); the
/// inheritable and ambient sets then carry `keep` across exec for a
/// command that is not root inside, and the bounding set caps what exec
/// gives root.
pub fn limit_to(keep: &BTreeSet<Cap>) -> Result<(), caps::errors::CapsError> {
    let keep: CapsHashSet = keep.iter().map(|c| c.capability()).collect();
    for cap in caps::runtime::thread_all_supported() {
        if !keep.contains(&cap) {
            caps::drop(None, CapSet::Bounding, cap)?;
        }
    }
    caps::set(None, CapSet::Inheritable, &keep)?;
    caps::clear(None, CapSet::Ambient)?;
    for cap in &keep {
        caps::raise(None, CapSet::Ambient, *cap)?;
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
}

//! fuse-overlayfs' id options: `uidmapping=`/`gidmapping=` translate the
//! ids stored in the layers to the ids the mount shows (and back, for new
//! files and chown); `squash_to_root`, `squash_to_uid=`, `squash_to_gid=`
//! show every file as owned by one id.

use std::io;

/// Ids shown for a stored id the mapping does not cover.
pub const OVERFLOW_ID: u32 = 65534;

/// `STORED:SHOWN:COUNT[:STORED:SHOWN:COUNT...]`, as fuse-overlayfs reads
/// it: COUNT ids from STORED (as the layers hold them) are shown from
/// SHOWN (in the namespace burrowfs runs in). podman passes its user
/// namespace's map this way, with a leading colon. Empty means identity.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct IdMapping {
    /// (shown, stored, count).
    ranges: Vec<(u32, u32, u32)>,
}

impl IdMapping {
    pub fn parse(text: &str) -> Result<IdMapping, String> {
        let nums = text
            .strip_prefix(':')
            .unwrap_or(text)
            .split(':')
            .map(|n| {
                n.trim()
                    .parse::<u32>()
                    .map_err(|_| format!("{text:?}: {n:?} is not a number"))
            })
            .collect::<Result<Vec<_>, _>>()?;
        if nums.is_empty() || nums.len() % 3 != 0 {
            return Err(format!("{text:?}: expected STORED:SHOWN:COUNT triples"));
        }
        let ranges: Vec<_> = nums.chunks(3).map(|c| (c[1], c[0], c[2])).collect();
        if ranges.iter().any(|&(c, h, n)| {
            n == 0 || c.checked_add(n - 1).is_none() || h.checked_add(n - 1).is_none()
        }) {
            return Err(format!("{text:?}: empty or overflowing range"));
        }
        Ok(IdMapping { ranges })
    }

    /// The shown id for stored id `host`.
    pub fn to_container(&self, host: u32) -> Option<u32> {
        if self.ranges.is_empty() {
            return Some(host);
        }
        self.ranges
            .iter()
            .find(|&&(_, h, n)| host >= h && host - h < n)
            .map(|&(c, h, _)| c + (host - h))
    }

    /// The stored id for shown id `container`.
    pub fn to_host(&self, container: u32) -> Option<u32> {
        if self.ranges.is_empty() {
            return Some(container);
        }
        self.ranges
            .iter()
            .find(|&&(c, _, n)| container >= c && container - c < n)
            .map(|&(c, h, _)| h + (container - c))
    }
}

/// Everything that changes how owners are shown and stored.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Ids {
    pub uid: IdMapping,
    pub gid: IdMapping,
    pub squash_uid: Option<u32>,
    pub squash_gid: Option<u32>,
}

impl Ids {
    /// Owner shown for a stored owner.
    pub fn shown(&self, uid: u32, gid: u32) -> (u32, u32) {
        (
            self.squash_uid
                .or_else(|| self.uid.to_container(uid))
                .unwrap_or(OVERFLOW_ID),
            self.squash_gid
                .or_else(|| self.gid.to_container(gid))
                .unwrap_or(OVERFLOW_ID),
        )
    }

    /// Stored uid for a shown uid (EINVAL when the mapping has none).
    pub fn stored_uid(&self, uid: u32) -> io::Result<u32> {
        self.uid
            .to_host(uid)
            .ok_or_else(|| io::Error::from_raw_os_error(libc::EINVAL))
    }

    /// Stored gid for a shown gid (EINVAL when the mapping has none).
    pub fn stored_gid(&self, gid: u32) -> io::Result<u32> {
        self.gid
            .to_host(gid)
            .ok_or_else(|| io::Error::from_raw_os_error(libc::EINVAL))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mapping_both_ways() {
        // fuse-overlayfs' man page: stored 0 and 1 shown as 1000 and 110000.
        let m = IdMapping::parse("0:1000:1:1:110000:65536").unwrap();
        assert_eq!(m.to_container(0), Some(1000));
        assert_eq!(m.to_container(5), Some(110004));
        assert_eq!(m.to_container(70000), None);
        assert_eq!(m.to_host(1000), Some(0));
        assert_eq!(m.to_host(175535), Some(65536));
        assert_eq!(m.to_host(7), None);
        // podman's keep-id for uid 1003, with its leading colon.
        let k = IdMapping::parse(":0:1:1003:1003:0:1:1004:1004:64533").unwrap();
        assert_eq!(k.to_container(0), Some(1));
        assert_eq!(k.to_container(1003), Some(0));
        assert_eq!(k.to_host(1), Some(0));
        assert_eq!(IdMapping::default().to_host(42), Some(42));
    }

    #[test]
    fn bad_mappings() {
        assert!(IdMapping::parse("0:1000").is_err());
        assert!(IdMapping::parse("0:x:1").is_err());
        assert!(IdMapping::parse("0:1:0").is_err());
        assert!(IdMapping::parse("4294967295:0:2").is_err());
    }

    #[test]
    fn squash_wins() {
        let ids = Ids {
            squash_uid: Some(0),
            squash_gid: Some(0),
            ..Ids::default()
        };
        assert_eq!(ids.shown(1234, 99), (0, 0));
        let mapped = Ids {
            uid: IdMapping::parse("0:1000:1").unwrap(),
            ..Ids::default()
        };
        assert_eq!(mapped.shown(0, 5), (1000, 5));
        assert_eq!(mapped.shown(3, 5), (OVERFLOW_ID, 5));
    }
}

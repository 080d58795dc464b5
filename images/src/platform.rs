//! The platform an image is chosen for from an index (or a Docker manifest
//! list): `--platform OS/ARCH[/VARIANT]`, by default this machine's.

use oci_spec::image::{Arch, Descriptor, ImageConfiguration, Os};

use crate::{Error, Result};

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Platform {
    pub os: String,
    pub architecture: String,
    pub variant: Option<String>,
}

impl Default for Platform {
    /// This machine's, in the image spec's (Go's) names.
    fn default() -> Self {
        Platform {
            os: Os::default().to_string(),
            architecture: Arch::default().to_string(),
            variant: None,
        }
    }
}

impl std::fmt::Display for Platform {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", self.os, self.architecture)?;
        if let Some(v) = &self.variant {
            write!(f, "/{v}")?;
        }
        Ok(())
    }
}

impl std::str::FromStr for Platform {
    type Err = Error;

    /// `OS/ARCH[/VARIANT]`, as podman's `--platform` takes it.
    fn from_str(s: &str) -> Result<Platform> {
        let parts: Vec<&str> = s.split('/').collect();
        let ok = |p: &&str| !p.is_empty();
        match parts[..] {
            [os, arch] if [os, arch].iter().all(ok) => Ok(Platform {
                os: os.into(),
                architecture: arch.into(),
                variant: None,
            }),
            [os, arch, variant] if [os, arch, variant].iter().all(ok) => Ok(Platform {
                os: os.into(),
                architecture: arch.into(),
                variant: Some(variant.into()),
            }),
            _ => Err(Error::Reference(format!(
                "platform {s:?}: write it as OS/ARCH[/VARIANT], e.g. linux/arm64/v8"
            ))),
        }
    }
}

impl Platform {
    /// The platform an image's configuration says it is for.
    pub fn of_config(config: &ImageConfiguration) -> Platform {
        Platform {
            os: config.os().to_string(),
            architecture: config.architecture().to_string(),
            variant: config.variant().clone(),
        }
    }

    /// Whether an image for `os`/`arch`/`variant` serves this platform:
    /// os and architecture equal, and the variant if one is asked for.
    pub fn accepts(&self, os: &str, arch: &str, variant: Option<&str>) -> bool {
        os == self.os
            && arch == self.architecture
            && self.variant.as_deref().is_none_or(|v| variant == Some(v))
    }

    /// The entry of an index's `manifests` for this platform: os and
    /// architecture equal; a variant asked for must be the entry's, and
    /// without one an entry with no variant is preferred.
    pub fn choose<'a>(&self, manifests: &'a [Descriptor], index: &str) -> Result<&'a Descriptor> {
        let fits = |d: &&Descriptor| {
            d.platform().as_ref().is_some_and(|p| {
                self.accepts(
                    &p.os().to_string(),
                    &p.architecture().to_string(),
                    p.variant().as_deref(),
                )
            })
        };
        let mut found: Vec<&Descriptor> = manifests.iter().filter(fits).collect();
        found.sort_by_key(|d| {
            d.platform()
                .as_ref()
                .and_then(|p| p.variant().clone())
                .is_some()
        });
        found.first().copied().ok_or_else(|| {
            let all: Vec<String> = manifests
                .iter()
                .filter_map(|d| d.platform().as_ref())
                .map(|p| {
                    let mut s = format!("{}/{}", p.os(), p.architecture());
                    if let Some(v) = p.variant() {
                        s = format!("{s}/{v}");
                    }
                    s
                })
                .collect();
            Error::Reference(format!(
                "{index}: no image for {self} (it has {}); choose one with --platform",
                if all.is_empty() {
                    "none".into()
                } else {
                    all.join(", ")
                }
            ))
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(digest_byte: char, platform: &str) -> Descriptor {
        let p: Platform = platform.parse().unwrap();
        let mut plat = serde_json::json!({"os": p.os, "architecture": p.architecture});
        if let Some(v) = p.variant {
            plat["variant"] = v.into();
        }
        serde_json::from_value(serde_json::json!({
            "mediaType": "application/vnd.oci.image.manifest.v1+json",
            "digest": format!("sha256:{}", digest_byte.to_string().repeat(64)),
            "size": 1,
            "platform": plat,
        }))
        .unwrap()
    }

    #[test]
    fn os_architecture_and_variant_choose_the_entry() {
        let index = [
            entry('a', "linux/arm64/v8"),
            entry('b', "linux/amd64"),
            entry('c', "linux/arm/v7"),
            entry('d', "linux/arm/v6"),
        ];
        let pick = |p: &str| {
            p.parse::<Platform>()
                .unwrap()
                .choose(&index, "i")
                .map(|d| d.digest().to_string().chars().nth(7).unwrap())
        };
        assert_eq!(pick("linux/amd64").unwrap(), 'b');
        assert_eq!(pick("linux/arm64").unwrap(), 'a');
        assert_eq!(pick("linux/arm/v6").unwrap(), 'd');
        let e = pick("linux/s390x").unwrap_err().to_string();
        assert!(e.contains("no image for linux/s390x"), "{e}");
        assert!(e.contains("linux/arm/v7, linux/arm/v6"), "{e}");
        assert!("linux".parse::<Platform>().is_err());
        assert!("linux//v1".parse::<Platform>().is_err());
    }
}

//! Image references in containers-transports(5) syntax.

use std::path::PathBuf;

use crate::{Error, Result};

/// Where an image comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Reference {
    /// `oci:DIR[:TAG]`: an OCI image layout directory.
    OciLayout { dir: PathBuf, tag: Option<String> },
}

/// Transports of containers-transports(5) that burrow will read and does
/// not yet.
const NOT_YET: [&str; 4] = [
    "oci-archive:",
    "docker-archive:",
    "docker://",
    "containers-storage:",
];

impl Reference {
    pub fn parse(s: &str) -> Result<Reference> {
        if let Some(rest) = s.strip_prefix("oci:") {
            // As skopeo reads it: the tag (any ref.name, which may hold
            // ':' and '/') follows the first ':'.
            let (dir, tag) = match rest.split_once(':') {
                Some((dir, tag)) if !tag.is_empty() => (dir, Some(tag.to_string())),
                Some((dir, _)) => (dir, None),
                None => (rest, None),
            };
            if dir.is_empty() {
                return Err(Error::Reference(format!(
                    "image {s:?}: no directory after oci:"
                )));
            }
            return Ok(Reference::OciLayout {
                dir: PathBuf::from(dir),
                tag,
            });
        }
        if let Some(t) = NOT_YET.iter().find(|t| s.starts_with(*t)) {
            return Err(Error::Reference(format!(
                "image {s:?}: the {} transport is not supported yet (use oci:DIR[:TAG])",
                t.trim_end_matches(['/', ':'])
            )));
        }
        Err(Error::Reference(format!(
            "image {s:?}: not a reference burrow knows; write oci:DIR[:TAG] (an OCI layout, as `skopeo copy` or `podman save --format oci-dir` write)"
        )))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn oci_layouts_with_and_without_tags() {
        assert_eq!(
            Reference::parse("oci:/x/y:v1").unwrap(),
            Reference::OciLayout {
                dir: "/x/y".into(),
                tag: Some("v1".into())
            }
        );
        assert_eq!(
            Reference::parse("oci:/x/y").unwrap(),
            Reference::OciLayout {
                dir: "/x/y".into(),
                tag: None
            }
        );
        assert_eq!(
            Reference::parse("oci:rel/a:localhost/b:1").unwrap(),
            Reference::OciLayout {
                dir: "rel/a".into(),
                tag: Some("localhost/b:1".into())
            }
        );
        assert!(Reference::parse("oci:").is_err());
    }

    #[test]
    fn short_names_and_other_transports_are_refused_with_the_way_to_write_them() {
        let e = Reference::parse("alpine").unwrap_err().to_string();
        assert!(e.contains("oci:DIR"), "{e}");
        let e = Reference::parse("docker://localhost/x")
            .unwrap_err()
            .to_string();
        assert!(e.contains("docker transport is not supported yet"), "{e}");
    }
}

//! Image references in containers-transports(5) syntax.

use std::path::PathBuf;

use crate::{Error, Result};

/// Where an image comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Reference {
    /// `oci:DIR[:TAG]`: an OCI image layout directory.
    OciLayout { dir: PathBuf, tag: Option<String> },
    /// `oci-archive:FILE[:TAG]`: an OCI layout in a tar file.
    OciArchive { file: PathBuf, tag: Option<String> },
    /// `docker-archive:FILE[:NAME:TAG]`: what `docker save` writes.
    DockerArchive { file: PathBuf, name: Option<String> },
    /// `docker://HOST[:PORT]/NAME[:TAG|@DIGEST]`: a registry's image.
    Registry(Name),
    /// `HOST[:PORT]/NAME[:TAG|@DIGEST]`: an image pulled into the store.
    Stored(Name),
}

/// An image's full name: the registry, the repository and a tag (`latest`
/// when none is given) or a digest.
pub type Name = oci_spec::distribution::Reference;

/// `s` as a full name, refused when it names no registry: a short name
/// would be resolved through a search list, and so could be someone
/// else's image.
pub fn full_name(s: &str, shown: &str) -> Result<Name> {
    let host = s.split_once('/').map(|(h, _)| h);
    if !host.is_some_and(|h| h.contains(['.', ':']) || h == "localhost") {
        return Err(Error::Reference(format!(
            "image {shown:?}: a short name, which burrow does not resolve; name the registry, as docker://docker.io/library/{s} or docker://HOST[:PORT]/NAME[:TAG] (or oci:DIR, oci-archive:FILE, docker-archive:FILE)"
        )));
    }
    Name::try_from(s).map_err(|e| Error::Reference(format!("image {shown:?}: {e}")))
}

/// `PATH[:REST]` as skopeo reads it: REST (which may hold ':' and '/')
/// follows the first ':'.
fn path_and_rest(s: &str, rest: &str) -> Result<(PathBuf, Option<String>)> {
    let (path, tail) = match rest.split_once(':') {
        Some((path, tail)) if !tail.is_empty() => (path, Some(tail.to_string())),
        Some((path, _)) => (path, None),
        None => (rest, None),
    };
    if path.is_empty() {
        return Err(Error::Reference(format!("image {s:?}: no path in it")));
    }
    Ok((PathBuf::from(path), tail))
}

/// Transports of containers-transports(5) that burrow will read and does
/// not yet.
const NOT_YET: [&str; 1] = ["containers-storage:"];

impl Reference {
    pub fn parse(s: &str) -> Result<Reference> {
        if let Some(rest) = s.strip_prefix("oci:") {
            let (dir, tag) = path_and_rest(s, rest)?;
            return Ok(Reference::OciLayout { dir, tag });
        }
        if let Some(rest) = s.strip_prefix("oci-archive:") {
            let (file, tag) = path_and_rest(s, rest)?;
            return Ok(Reference::OciArchive { file, tag });
        }
        if let Some(rest) = s.strip_prefix("docker-archive:") {
            let (file, name) = path_and_rest(s, rest)?;
            return Ok(Reference::DockerArchive { file, name });
        }
        if let Some(rest) = s.strip_prefix("docker://") {
            return Ok(Reference::Registry(full_name(rest, s)?));
        }
        if let Some(t) = NOT_YET.iter().find(|t| s.starts_with(*t)) {
            return Err(Error::Reference(format!(
                "image {s:?}: the {} transport is not supported yet (use docker://, oci:, oci-archive: or docker-archive:)",
                t.trim_end_matches(['/', ':'])
            )));
        }
        Ok(Reference::Stored(full_name(s, s)?))
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
    fn archives_with_and_without_names() {
        assert_eq!(
            Reference::parse("docker-archive:/x/img.tar:localhost/bb:1").unwrap(),
            Reference::DockerArchive {
                file: "/x/img.tar".into(),
                name: Some("localhost/bb:1".into())
            }
        );
        assert_eq!(
            Reference::parse("oci-archive:img.tar").unwrap(),
            Reference::OciArchive {
                file: "img.tar".into(),
                tag: None
            }
        );
        assert!(Reference::parse("docker-archive::x").is_err());
    }

    #[test]
    fn short_names_and_other_transports_are_refused_with_the_way_to_write_them() {
        let e = Reference::parse("alpine").unwrap_err().to_string();
        assert!(e.contains("docker://docker.io/library/alpine"), "{e}");
        let e = Reference::parse("docker://library/alpine:3")
            .unwrap_err()
            .to_string();
        assert!(e.contains("a short name"), "{e}");
        let e = Reference::parse("containers-storage:x")
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("containers-storage transport is not supported yet"),
            "{e}"
        );
    }

    #[test]
    fn registry_names_get_a_tag_and_keep_their_port() {
        let Reference::Registry(n) = Reference::parse("docker://127.0.0.1:5000/a/b").unwrap()
        else {
            panic!("not a registry reference");
        };
        assert_eq!(n.whole(), "127.0.0.1:5000/a/b:latest");
        assert_eq!(n.registry(), "127.0.0.1:5000");
        let Reference::Stored(n) = Reference::parse("localhost/bb:2").unwrap() else {
            panic!("not a stored name");
        };
        assert_eq!(n.whole(), "localhost/bb:2");
        assert!(Reference::parse("docker://localhost/UPPER").is_err());
    }
}

//! Images that come as one tar file: `oci-archive:` (an OCI layout, tarred,
//! as `podman save --format oci-archive` writes) and `docker-archive:`
//! (`docker save` and `podman save`: `manifest.json` naming each image's
//! configuration and layer tars; Docker 25 and later also put an OCI
//! layout in it, which is read when present).
//!
//! The archive is unpacked into a private directory of the store for the
//! time it is read (the `tar` crate keeps every entry inside it), then
//! removed; its layers go into the store as any other.

use std::path::{Component, Path, PathBuf};

use oci_spec::image::ImageConfiguration;
use serde_json::Value;

use crate::blob;
use crate::platform::Platform;
use crate::scratch::Scratch;
use crate::store::Store;
use crate::{io_err, layout, Error, Image, Result};

/// `manifest.json` and configurations are small.
const JSON_LIMIT: u64 = 8 << 20;

fn unpacked(file: &Path, shown: &str, store: &Store) -> Result<Scratch> {
    let dir = store.scratch()?;
    let tar = blob::open_regular(file).map_err(io_err(shown))?;
    let mut archive = tar::Archive::new(std::io::BufReader::new(tar));
    archive.set_preserve_permissions(false);
    archive
        .unpack(dir.path())
        .map_err(|e| Error::Invalid(format!("{shown}: {}", crate::unpack::with_causes(&e))))?;
    Ok(dir)
}

pub fn open_oci(
    file: &Path,
    tag: Option<&str>,
    platform: &Platform,
    store: &Store,
) -> Result<Image> {
    let shown = format!("oci-archive:{}", file.display());
    let dir = unpacked(file, &shown, store)?;
    layout::open(dir.path(), &shown, tag, platform, store)
}

pub fn open_docker(file: &Path, name: Option<&str>, store: &Store) -> Result<Image> {
    let shown = format!("docker-archive:{}", file.display());
    let dir = unpacked(file, &shown, store)?;
    let root = dir.path();
    let manifest = blob::read_bounded(&root.join("manifest.json"), JSON_LIMIT).map_err(io_err(
        format!("{shown}: not a docker archive (manifest.json)"),
    ))?;
    let manifest: Vec<Value> = serde_json::from_slice(&manifest)
        .map_err(|e| Error::Invalid(format!("{shown}/manifest.json: {e}")))?;
    let tags = |m: &Value| -> Vec<String> {
        m["RepoTags"]
            .as_array()
            .map(|a| {
                a.iter()
                    .filter_map(|t| t.as_str().map(String::from))
                    .collect()
            })
            .unwrap_or_default()
    };
    let chosen = crate::choose(
        &manifest,
        tags,
        name,
        &shown,
        ("named", "names", ":NAME:TAG"),
    )?;
    let member = |v: &Value, what: &str| -> Result<PathBuf> {
        let rel = v
            .as_str()
            .ok_or_else(|| Error::Invalid(format!("{shown}/manifest.json: no {what}")))?;
        inside(root, rel).map_err(|why| Error::Invalid(format!("{shown}: {what} {rel:?}: {why}")))
    };
    let config_path = member(&chosen["Config"], "Config")?;
    let config_data = blob::read_bounded(&config_path, JSON_LIMIT)
        .map_err(io_err(format!("{shown}: its configuration")))?;
    let config = ImageConfiguration::from_reader(&config_data[..])
        .map_err(|e| Error::Invalid(format!("{shown}: its configuration: {e}")))?;
    let layer_names = chosen["Layers"].as_array().cloned().unwrap_or_default();
    let diff_ids = config.rootfs().diff_ids();
    if diff_ids.len() != layer_names.len() {
        return Err(Error::Invalid(format!(
            "{shown}: {} layers but {} diff_ids in its configuration",
            layer_names.len(),
            diff_ids.len()
        )));
    }
    let mut layers = Vec::new();
    let mut size = 0u64;
    for (name, diff_id) in layer_names.iter().zip(diff_ids) {
        let path = member(name, "layer")?;
        size = size.saturating_add(std::fs::metadata(&path).map_or(0, |m| m.len()));
        // A layer here has no digest of its own: what it unpacks to is
        // checked against its diff ID.
        layers.push(store.layer(diff_id, || {
            blob::open_regular(&path).map_err(io_err(format!("{shown}: layer {}", path.display())))
        })?);
    }
    use sha2::Digest as _;
    Ok(Image {
        digest: format!("sha256:{:x}", sha2::Sha256::digest(&config_data)),
        layers,
        config: layout::run_config(&config),
        config_json: config_data,
        size,
        in_use: None,
    })
}

/// `rel` (a name from `manifest.json`) under `root`, resolved: neither
/// absolute nor with `..`, and still inside `root` after its symlinks
/// (`docker save` links a layer shared by two images).
fn inside(root: &Path, rel: &str) -> std::result::Result<PathBuf, &'static str> {
    let rel = Path::new(rel);
    if rel
        .components()
        .any(|c| !matches!(c, Component::Normal(_) | Component::CurDir))
    {
        return Err("not a plain name inside the archive");
    }
    let root = root
        .canonicalize()
        .map_err(|_| "the archive's directory is gone")?;
    let found = root
        .join(rel)
        .canonicalize()
        .map_err(|_| "not in the archive")?;
    if !found.starts_with(&root) {
        return Err("leads outside the archive");
    }
    Ok(found)
}

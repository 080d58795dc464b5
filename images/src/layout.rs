//! OCI image layouts (`oci-layout`, `index.json`, `blobs/`), as
//! `skopeo copy ... oci:DIR` and `podman save --format oci-dir` write them.

use std::path::Path;

use oci_spec::image::{
    Descriptor, ImageConfiguration, ImageIndex, ImageManifest, MediaType, ANNOTATION_REF_NAME,
};

use crate::blob;
use crate::platform::Platform;
use crate::store::Store;
use crate::{io_err, Error, Image, Result, RunConfig};

/// Manifests, indexes and configurations are small; a larger one is not
/// read.
const JSON_LIMIT: u64 = 8 << 20;

/// How deep indexes may nest before the layout is refused.
const MAX_NESTING: usize = 4;

/// The image tagged `tag` (or the only one) of the layout in `dir`;
/// messages call the layout `shown` (`oci:DIR`, or the archive it came in).
pub fn open(
    dir: &Path,
    shown: &str,
    tag: Option<&str>,
    platform: &Platform,
    store: &Store,
) -> Result<Image> {
    let marker = blob::read_bounded(&dir.join("oci-layout"), JSON_LIMIT)
        .map_err(io_err(format!("{shown}: not an OCI layout (oci-layout)")))?;
    let marker: serde_json::Value = serde_json::from_slice(&marker)
        .map_err(|e| Error::Invalid(format!("{shown}/oci-layout: {e}")))?;
    if marker["imageLayoutVersion"] != "1.0.0" {
        return Err(Error::Invalid(format!(
            "{shown}: layout version {} (burrow reads 1.0.0)",
            marker["imageLayoutVersion"]
        )));
    }
    let index = blob::read_bounded(&dir.join("index.json"), JSON_LIMIT)
        .map_err(io_err(format!("{shown}/index.json")))?;
    let index = ImageIndex::from_reader(&index[..])
        .map_err(|e| Error::Invalid(format!("{shown}/index.json: {e}")))?;
    let chosen = by_tag(&index, tag, shown)?;
    let manifest_desc = manifest_for_platform(dir, chosen, platform, 0)?;
    let digest = manifest_desc.digest().to_string();
    let manifest = read_json(dir, &manifest_desc)?;
    let manifest = ImageManifest::from_reader(&manifest[..])
        .map_err(|e| Error::Invalid(format!("manifest {digest}: {e}")))?;
    let config_json = read_json(dir, manifest.config())?;
    let config = ImageConfiguration::from_reader(&config_json[..])
        .map_err(|e| Error::Invalid(format!("config {}: {e}", manifest.config().digest())))?;
    let diff_ids = config.rootfs().diff_ids();
    if diff_ids.len() != manifest.layers().len() {
        return Err(Error::Invalid(format!(
            "image {digest}: {} layers but {} diff_ids in its configuration",
            manifest.layers().len(),
            diff_ids.len()
        )));
    }
    let mut layers = Vec::new();
    for (desc, diff_id) in manifest.layers().iter().zip(diff_ids) {
        let want = desc.digest().to_string();
        let path = blob::path_in(dir, &want)?;
        layers.push(store.layer(diff_id, || blob::open_verified(&path, &want, desc.size()))?);
    }
    Ok(Image {
        digest,
        layers,
        config: run_config(&config),
        config_json,
        size: manifest
            .layers()
            .iter()
            .fold(0u64, |n, l| n.saturating_add(l.size())),
        in_use: None,
    })
}

/// The manifest named `tag` in the index, or its only one.
fn by_tag<'a>(index: &'a ImageIndex, tag: Option<&str>, shown: &str) -> Result<&'a Descriptor> {
    let name = |d: &Descriptor| {
        d.annotations()
            .as_ref()
            .and_then(|a| a.get(ANNOTATION_REF_NAME))
            .cloned()
    };
    crate::choose(
        index.manifests(),
        |d| name(d).into_iter().collect(),
        tag,
        shown,
        ("tagged", "tags", ":TAG"),
    )
}

/// `desc` itself when it is a manifest; in an index, the manifest for
/// `platform`.
fn manifest_for_platform(
    dir: &Path,
    desc: &Descriptor,
    platform: &Platform,
    depth: usize,
) -> Result<Descriptor> {
    let is_index = matches!(desc.media_type(), MediaType::ImageIndex)
        || desc.media_type().to_string()
            == "application/vnd.docker.distribution.manifest.list.v2+json";
    if !is_index {
        return Ok(desc.clone());
    }
    if depth >= MAX_NESTING {
        return Err(Error::Invalid(format!(
            "index {}: nested more than {MAX_NESTING} deep",
            desc.digest()
        )));
    }
    let data = read_json(dir, desc)?;
    let index = ImageIndex::from_reader(&data[..])
        .map_err(|e| Error::Invalid(format!("index {}: {e}", desc.digest())))?;
    let m = platform.choose(index.manifests(), &format!("index {}", desc.digest()))?;
    manifest_for_platform(dir, m, platform, depth + 1)
}

fn read_json(dir: &Path, desc: &Descriptor) -> Result<Vec<u8>> {
    let digest = desc.digest().to_string();
    blob::read_small(
        &blob::path_in(dir, &digest)?,
        &digest,
        desc.size(),
        JSON_LIMIT,
    )
}

pub(crate) fn run_config(config: &ImageConfiguration) -> RunConfig {
    let Some(c) = config.config() else {
        return RunConfig::default();
    };
    RunConfig {
        entrypoint: c.entrypoint().clone().unwrap_or_default(),
        cmd: c.cmd().clone().unwrap_or_default(),
        env: c.env().clone().unwrap_or_default(),
        working_dir: c.working_dir().clone().filter(|d| !d.is_empty()),
        user: c.user().clone().filter(|u| !u.is_empty()),
        stop_signal: c.stop_signal().clone().filter(|s| !s.is_empty()),
        volumes: c.volumes().clone().unwrap_or_default(),
        exposed_ports: c.exposed_ports().clone().unwrap_or_default(),
        labels: c.labels().clone().unwrap_or_default().into_iter().collect(),
    }
}

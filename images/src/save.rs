//! `burrow save REF FILE`: an image as an `oci-archive` (an OCI image
//! layout in one tar file), which `podman load`, `skopeo` and
//! `burrow run --image oci-archive:FILE` read.
//!
//! The store keeps layers unpacked, not their original blobs, so each
//! layer is packed anew from its directory (owners, set-id bits and
//! devices from the override records) as an uncompressed tar; the
//! configuration's `diff_ids` name those, and so the saved image has a
//! manifest and configuration digest of its own.

use std::collections::HashMap;
use std::fs::File;
use std::io::{Seek, Write};
use std::path::{Path, PathBuf};

use oci_spec::image::{
    DescriptorBuilder, ImageIndexBuilder, ImageManifestBuilder, MediaType, ANNOTATION_REF_NAME,
};

use crate::blob::{digest_of, sha256_hex, HashingWriter};
use crate::pack::{pack, Markers};
use crate::reference::Reference;
use crate::store::Store;
use crate::{io_err, Error, Options, Result};

/// A blob to put in the archive: its digest and where its bytes are.
enum Blob {
    File(String, PathBuf),
    Bytes(String, Vec<u8>),
}

/// What `save` writes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    /// An OCI image layout in a tar file.
    OciArchive,
    /// What `docker save` writes: `manifest.json`, the configuration and
    /// each layer's `layer.tar`.
    DockerArchive,
}

/// An archive entry: its path and what it holds.
enum Member<'a> {
    Dir(String),
    Bytes(String, &'a [u8]),
    File(String, &'a Path),
}

/// Writes `reference`'s image to `out` as `format` says; the file is
/// written whole or not at all. The archive's entries are owned by
/// `owner` (uid, gid): containers/image's untar (skopeo, podman load)
/// gives each file its entry's owner, which only the caller's own ids
/// allow a caller without root. Gives the manifest's digest (an
/// oci-archive) or the configuration's (a docker-archive, which has no
/// manifest of that kind).
pub fn save(
    reference: &str,
    opts: &Options,
    store: &Store,
    out: &Path,
    format: Format,
    owner: (u32, u32),
) -> Result<String> {
    let ref_name = match Reference::parse(reference)? {
        Reference::Registry(n) | Reference::Stored(n) => Some(n.whole()),
        Reference::OciLayout { tag, .. } | Reference::OciArchive { tag, .. } => tag,
        Reference::DockerArchive { name, .. } => name,
    };
    let image = crate::open(reference, opts, store)?;
    // Edited as JSON, so fields oci-spec does not model stay.
    let mut config: serde_json::Value = serde_json::from_slice(&image.config_json)
        .map_err(|e| Error::Invalid(format!("{reference}: its configuration: {e}")))?;
    let scratch = store.scratch()?;
    let (mut room, _) = store.room()?;
    let mut blobs = Vec::new();
    let mut layers = Vec::new();
    let mut diff_ids = Vec::new();
    // The same layer twice in an image is packed and stored once.
    let mut packed: HashMap<&Path, (String, u64)> = HashMap::new();
    for (i, dir) in image.layers.iter().enumerate() {
        let (digest, size) = match packed.get(dir.as_path()) {
            Some(done) => done.clone(),
            None => {
                let path = scratch.join(format!("layer-{i}.tar"));
                let file = File::create(&path).map_err(io_err(path.display()))?;
                let (digest, size, _) =
                    pack(dir, Markers::Oci, HashingWriter::new(file), room)?.finish();
                room = room.saturating_sub(size);
                blobs.push(Blob::File(digest.clone(), path));
                packed.insert(dir, (digest.clone(), size));
                (digest, size)
            }
        };
        layers.push(
            DescriptorBuilder::default()
                .media_type(MediaType::ImageLayer)
                .digest(parse_digest(&digest)?)
                .size(size)
                .build()
                .map_err(invalid)?,
        );
        diff_ids.push(digest);
    }
    config["rootfs"] = serde_json::json!({"type": "layers", "diff_ids": diff_ids});
    let config = serde_json::to_vec(&config).map_err(invalid)?;
    let config_digest = digest_of(&config);
    let manifest = ImageManifestBuilder::default()
        .schema_version(2u32)
        .media_type(MediaType::ImageManifest)
        .config(
            DescriptorBuilder::default()
                .media_type(MediaType::ImageConfig)
                .digest(parse_digest(&config_digest)?)
                .size(config.len() as u64)
                .build()
                .map_err(invalid)?,
        )
        .layers(layers)
        .build()
        .map_err(invalid)?
        .to_string()
        .map_err(invalid)?
        .into_bytes();
    let manifest_digest = digest_of(&manifest);
    let mut desc = DescriptorBuilder::default()
        .media_type(MediaType::ImageManifest)
        .digest(parse_digest(&manifest_digest)?)
        .size(manifest.len() as u64);
    if let Some(n) = ref_name.clone() {
        desc = desc.annotations([(ANNOTATION_REF_NAME.to_string(), n)]);
    }
    let index = ImageIndexBuilder::default()
        .schema_version(2u32)
        .media_type(MediaType::ImageIndex)
        .manifests(vec![desc.build().map_err(invalid)?])
        .build()
        .map_err(invalid)?
        .to_string()
        .map_err(invalid)?
        .into_bytes();
    if format == Format::DockerArchive {
        return docker_archive(out, ref_name, &config_digest, &config, &blobs, owner)
            .map(|()| config_digest);
    }
    blobs.push(Blob::Bytes(config_digest, config));
    blobs.push(Blob::Bytes(manifest_digest.clone(), manifest));
    let layout = br#"{"imageLayoutVersion":"1.0.0"}"#;
    let mut members = vec![
        Member::Bytes("oci-layout".into(), &layout[..]),
        Member::Bytes("index.json".into(), &index[..]),
        Member::Dir("blobs/".into()),
        Member::Dir("blobs/sha256/".into()),
    ];
    for blob in &blobs {
        members.push(match blob {
            Blob::Bytes(d, b) => Member::Bytes(format!("blobs/sha256/{}", sha256_hex(d)?), b),
            Blob::File(d, p) => Member::File(format!("blobs/sha256/{}", sha256_hex(d)?), p),
        });
    }
    write_archive(out, &members, owner)?;
    Ok(manifest_digest)
}

/// `docker save`'s layout: `HEX.json` (the configuration), `HEX/layer.tar`
/// for each layer (HEX its diff ID), and `manifest.json` naming them with
/// the image's name as its `RepoTags`.
fn docker_archive(
    out: &Path,
    name: Option<String>,
    config_digest: &str,
    config: &[u8],
    layers: &[Blob],
    owner: (u32, u32),
) -> Result<()> {
    let config_name = format!("{}.json", sha256_hex(config_digest)?);
    let mut members = vec![Member::Bytes(config_name.clone(), config)];
    let mut paths = Vec::new();
    for blob in layers {
        if let Blob::File(d, p) = blob {
            let hex = sha256_hex(d)?;
            members.push(Member::Dir(format!("{hex}/")));
            members.push(Member::File(format!("{hex}/layer.tar"), p));
        }
    }
    // Each layer of the image in order (a repeated one named again).
    let config_json: serde_json::Value = serde_json::from_slice(config).map_err(invalid)?;
    for d in config_json["rootfs"]["diff_ids"]
        .as_array()
        .into_iter()
        .flatten()
    {
        let d = d.as_str().unwrap_or_default();
        paths.push(format!("{}/layer.tar", sha256_hex(d)?));
    }
    let manifest = serde_json::to_vec(&serde_json::json!([{
        "Config": config_name,
        "RepoTags": name.into_iter().collect::<Vec<_>>(),
        "Layers": paths,
    }]))
    .map_err(invalid)?;
    members.push(Member::Bytes("manifest.json".into(), &manifest));
    write_archive(out, &members, owner)
}

fn invalid(e: impl std::fmt::Display) -> Error {
    Error::Invalid(format!("writing the image: {e}"))
}

fn parse_digest(d: &str) -> Result<oci_spec::image::Digest> {
    d.parse().map_err(invalid)
}

/// The archive of `members`, written beside `out` and renamed over it
/// when complete.
fn write_archive(out: &Path, members: &[Member], owner: (u32, u32)) -> Result<()> {
    let name = out
        .file_name()
        .ok_or_else(|| Error::Invalid(format!("{}: not a file name", out.display())))?;
    let mut tmp_name = std::ffi::OsString::from(".");
    tmp_name.push(name);
    tmp_name.push(format!(".burrow-{}", std::process::id()));
    let tmp = out.with_file_name(tmp_name);
    let result = (|| -> Result<()> {
        let file = File::create(&tmp).map_err(io_err(tmp.display()))?;
        let mut ar = tar::Builder::new(std::io::BufWriter::new(file));
        let fail = || io_err(format!("writing {}", out.display()));
        for member in members {
            let mut h = tar::Header::new_ustar();
            h.set_uid(owner.0.into());
            h.set_gid(owner.1.into());
            h.set_mode(0o644);
            let (path, mut data, size): (&str, Box<dyn std::io::Read>, u64) = match member {
                Member::Dir(p) => {
                    h.set_entry_type(tar::EntryType::Directory);
                    h.set_mode(0o755);
                    (p, Box::new(std::io::empty()), 0)
                }
                Member::Bytes(p, b) => (p, Box::new(*b), b.len() as u64),
                Member::File(p, f) => {
                    let mut file = File::open(f).map_err(io_err(f.display()))?;
                    let size = file.seek(std::io::SeekFrom::End(0)).map_err(fail())?;
                    file.rewind().map_err(fail())?;
                    (p, Box::new(file), size)
                }
            };
            h.set_size(size);
            ar.append_data(&mut h, path, &mut data).map_err(fail())?;
        }
        let mut w = ar.into_inner().map_err(fail())?;
        w.flush().map_err(fail())?;
        let file = w.into_inner().map_err(|e| fail()(e.into_error()))?;
        file.sync_all().map_err(fail())?;
        std::fs::rename(&tmp, out).map_err(fail())
    })();
    if result.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    result
}

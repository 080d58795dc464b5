//! Images by name in the store: `images/HEX.json` for each name (HEX the
//! sha256 of the name, so no name is a path), naming the manifest, the
//! configuration (kept under `blobs/`) and the layers' diff IDs. A record
//! is written whole, after every layer it names is in place, so a pull cut
//! short leaves no record and a later pull completes it.

use std::path::PathBuf;

use oci_spec::image::ImageConfiguration;
use serde::{Deserialize, Serialize};
use sha2::{Digest as _, Sha256};

use crate::store::{write_atomically, Store};
use crate::{io_err, layout, Error, Image, Platform, Result};

/// Configurations are small; a larger one is not read.
pub(crate) const JSON_LIMIT: u64 = 8 << 20;

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct Record {
    /// `HOST[:PORT]/NAME:TAG` or `HOST[:PORT]/NAME@DIGEST`.
    pub name: String,
    /// The manifest's digest.
    pub digest: String,
    pub config_digest: String,
    pub config_size: u64,
    /// Bottom first.
    pub diff_ids: Vec<String>,
    /// The layers' compressed sizes, added up.
    pub size: u64,
    /// The configuration's `created`, if it says.
    pub created: Option<String>,
    /// `OS/ARCH[/VARIANT]`, as the configuration says.
    #[serde(default)]
    pub platform: String,
}

impl Record {
    /// Whether this image serves `wanted` (a record without a platform
    /// does not).
    pub fn serves(&self, wanted: &Platform) -> bool {
        self.platform
            .parse::<Platform>()
            .is_ok_and(|p| wanted.accepts(&p.os, &p.architecture, p.variant.as_deref()))
    }
}

fn path_of(store: &Store, name: &str) -> PathBuf {
    let hex = format!("{:x}", Sha256::digest(name.as_bytes()));
    store.root().join("images").join(format!("{hex}.json"))
}

/// Records `record` under its name, replacing what the name had.
pub fn put(store: &Store, record: &Record) -> Result<()> {
    let path = path_of(store, &record.name);
    store.private_dir(path.parent().expect("images/ has a parent"))?;
    let data = serde_json::to_vec_pretty(record).expect("a record serializes");
    write_atomically(store, &path, &data)
}

/// Drops the record of `name`.
pub(crate) fn remove(store: &Store, name: &str) -> Result<()> {
    let path = path_of(store, name);
    std::fs::remove_file(&path).map_err(io_err(format!("image store {}", path.display())))
}

/// The record of `name`, if the store has one.
pub fn get(store: &Store, name: &str) -> Result<Option<Record>> {
    let path = path_of(store, name);
    let data = match crate::blob::read_bounded(&path, JSON_LIMIT) {
        Ok(d) => d,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(io_err(format!("image store {}", path.display()))(e)),
    };
    let record: Record = serde_json::from_slice(&data)
        .map_err(|e| Error::Invalid(format!("image store {}: {e}", path.display())))?;
    if record.name != name {
        return Err(Error::Invalid(format!(
            "image store {}: records {:?}, not {name:?}",
            path.display(),
            record.name
        )));
    }
    Ok(Some(record))
}

/// Every image in the store, by name, and a line for each record that
/// cannot be read (which `burrow rmi NAME` removes).
pub fn list(store: &Store) -> Result<(Vec<Record>, Vec<String>)> {
    let dir = store.root().join("images");
    let entries = match std::fs::read_dir(&dir) {
        Ok(e) => e,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok((Vec::new(), Vec::new())),
        Err(e) => return Err(io_err(format!("image store {}", dir.display()))(e)),
    };
    let mut all = Vec::new();
    let mut bad = Vec::new();
    for entry in entries {
        let entry = entry.map_err(io_err(format!("image store {}", dir.display())))?;
        let path = entry.path();
        if path.extension().is_none_or(|e| e != "json") {
            continue;
        }
        let data = crate::blob::read_bounded(&path, JSON_LIMIT)
            .map_err(io_err(format!("image store {}", path.display())))?;
        match serde_json::from_slice::<Record>(&data) {
            Ok(record) => all.push(record),
            Err(e) => bad.push(format!(
                "image store {}: an unreadable record ({e})",
                path.display()
            )),
        }
    }
    all.sort_by(|a, b| a.name.cmp(&b.name));
    Ok((all, bad))
}

/// The record and configuration of the stored image `reference`
/// (`HOST[:PORT]/NAME[:TAG]`, or `docker://` before it).
pub fn inspect(store: &Store, reference: &str) -> Result<(Record, crate::RunConfig)> {
    let name = match crate::Reference::parse(reference)? {
        crate::Reference::Registry(n) | crate::Reference::Stored(n) => n.whole(),
        _ => {
            return Err(Error::Reference(format!(
                "{reference:?}: --inspect takes the name of an image in the store"
            )))
        }
    };
    let record = get(store, &name)?
        .ok_or_else(|| Error::Reference(format!("image {reference:?}: not in the store")))?;
    let data = store.read_blob(&record.config_digest, record.config_size, JSON_LIMIT)?;
    let config = ImageConfiguration::from_reader(&data[..])
        .map_err(|e| Error::Invalid(format!("config {}: {e}", record.config_digest)))?;
    Ok((record, layout::run_config(&config)))
}

/// The stored image of `record`, ready to run.
pub fn open(store: &Store, record: &Record) -> Result<Image> {
    let data = store.read_blob(&record.config_digest, record.config_size, JSON_LIMIT)?;
    let config = ImageConfiguration::from_reader(&data[..])
        .map_err(|e| Error::Invalid(format!("config {}: {e}", record.config_digest)))?;
    let mut layers = Vec::new();
    for diff_id in &record.diff_ids {
        layers.push(store.has_layer(diff_id)?.ok_or_else(|| {
            Error::Invalid(format!(
                "image {}: its layer {diff_id} is not in the store; pull the image again",
                record.name
            ))
        })?);
    }
    Ok(Image {
        digest: record.digest.clone(),
        layers,
        config: layout::run_config(&config),
        config_json: data,
        size: record.size,
        in_use: None,
    })
}

//! `burrow commit UPPER-DIR NAME`: the container layer a sandbox left in
//! its `--upper` directory, as a new image on top of the image it ran
//! (docker's and podman's `commit`).
//!
//! `burrow run --image REF --upper DIR` leaves [`Base`] in DIR's work
//! directory: which image the upper layer was written over and how the
//! sandbox's ids were mapped. Commit packs the upper layer as an OCI layer
//! (whiteouts as `.wh.` entries), unpacks it into the store like any
//! other layer, and records under NAME a configuration that is the base's
//! with the new layer and a history entry added.

use std::fs::File;
use std::path::Path;

use oci_spec::image::ImageConfiguration;
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};

use crate::blob::HashingWriter;
use crate::catalog::{self, Record, JSON_LIMIT};
use crate::pack::{pack, Markers};
use crate::platform::Platform;
use crate::store::Store;
use crate::{gc, io_err, Error, Result};

/// The name of [`Base`]'s file in the upper layer's work directory.
pub const BASE_FILE: &str = "image.json";

/// The image an upper layer was written over, and how.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct Base {
    /// The reference it was run as.
    pub reference: String,
    /// Its manifest's digest.
    pub digest: String,
    /// Its configuration, as the image has it (JSON text).
    pub config: String,
    /// The layers' sizes as the image gives them, added up.
    pub size: u64,
    /// How the sandbox mapped ids (`--keep-id`, subordinate ranges): the
    /// owners on disk are read back through the same map.
    pub keep_id: bool,
    pub subids: bool,
    /// The maps themselves, as the launcher wrote them: a commit refuses
    /// maps that have changed since (another /etc/subuid, say).
    #[serde(default)]
    pub maps: String,
}

impl Base {
    /// The base recorded in the work directory `work`, if any.
    pub fn read(work: &Path) -> Result<Option<Base>> {
        let path = work.join(BASE_FILE);
        let data = match crate::blob::read_bounded(&path, JSON_LIMIT * 2) {
            Ok(d) => d,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(io_err(path.display())(e)),
        };
        serde_json::from_slice(&data)
            .map(Some)
            .map_err(|e| Error::Invalid(format!("{}: {e}", path.display())))
    }

    /// Records this base in the work directory `work`.
    pub fn write(&self, work: &Path) -> Result<()> {
        let path = work.join(BASE_FILE);
        let tmp = work.join(format!(".{BASE_FILE}.{}", std::process::id()));
        let data = serde_json::to_vec(self).expect("a base serializes");
        std::fs::write(&tmp, data)
            .and_then(|()| std::fs::rename(&tmp, &path))
            .map_err(io_err(path.display()))
    }

    /// Forgets the base of the work directory `work` (its upper layer is
    /// now written over something else).
    pub fn remove(work: &Path) -> Result<()> {
        let path = work.join(BASE_FILE);
        match std::fs::remove_file(&path) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(io_err(path.display())(e)),
            _ => Ok(()),
        }
    }
}

/// NAME as the store records it: podman's `localhost/` before a name
/// that names no registry, `:latest` when it has no tag.
pub fn image_name(name: &str) -> Result<String> {
    let first = name.split_once('/').map(|(h, _)| h);
    let full = if first.is_some_and(|h| h.contains(['.', ':']) || h == "localhost") {
        name.to_string()
    } else {
        format!("localhost/{name}")
    };
    let parsed = crate::reference::full_name(&full, name)?;
    if parsed.digest().is_some() {
        return Err(Error::Reference(format!(
            "image name {name:?}: a digest is what an image is, not a name to give it"
        )));
    }
    Ok(parsed.whole())
}

/// Commits the upper layer `upper` (written over `base`) as the image
/// `name`; gives its record. The upper layer must not be in use.
pub fn commit(
    store: &Store,
    upper: &Path,
    base: &Base,
    name: &str,
    message: Option<&str>,
) -> Result<Record> {
    let name = image_name(name)?;
    // Edited as JSON, so fields oci-spec does not model (Healthcheck,
    // Shell, OnBuild, ...) stay as the base has them.
    let mut config: Value = serde_json::from_str(&base.config)
        .map_err(|e| Error::Invalid(format!("the base image's configuration: {e}")))?;
    let parsed = ImageConfiguration::from_reader(base.config.as_bytes())
        .map_err(|e| Error::Invalid(format!("the base image's configuration: {e}")))?;
    let _lock = gc::lock(store, false)?;
    for diff_id in parsed.rootfs().diff_ids() {
        if store.has_layer(diff_id)?.is_none() {
            return Err(Error::Invalid(format!(
                "the base image {}: its layer {diff_id} is no longer in the store (pruned?); \
                 run `burrow run --image {}` once to unpack it again",
                base.reference, base.reference
            )));
        }
    }
    let scratch = store.scratch()?;
    let tar = scratch.join("layer.tar");
    let file = File::create(&tar).map_err(io_err(tar.display()))?;
    let (room, _) = store.room()?;
    let written = pack(upper, Markers::Overlay, HashingWriter::new(file), room)?;
    let (diff_id, size, file) = written.finish();
    file.sync_all().map_err(io_err(tar.display()))?;
    drop(file);
    store.layer(&diff_id, || File::open(&tar).map_err(io_err(tar.display())))?;

    let now = chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true);
    let layers = parsed.rootfs().diff_ids().len();
    let mut history: Vec<Value> = config["history"].as_array().cloned().unwrap_or_default();
    // One history entry per layer (docker load checks): entries the base
    // lacks are filled in before ours.
    let filled = history
        .iter()
        .filter(|h| h["empty_layer"] != Value::Bool(true))
        .count();
    for _ in filled..layers {
        history.push(json!({"created": now, "comment": "(no history for this layer)"}));
    }
    let mut entry = json!({
        "created": now,
        "created_by": format!("burrow commit (from {})", base.reference),
    });
    if let Some(m) = message {
        entry["comment"] = json!(m);
    }
    history.push(entry);
    config["history"] = Value::Array(history);
    config["created"] = json!(now);
    let mut diff_ids = parsed.rootfs().diff_ids().clone();
    diff_ids.push(diff_id);
    config["rootfs"] = json!({"type": "layers", "diff_ids": diff_ids});
    let data = serde_json::to_vec(&config).expect("JSON serializes");
    let config_digest = crate::blob::digest_of(&data);
    store.put_blob(&config_digest, &data)?;
    let record = Record {
        name,
        // An image made here has no manifest until it is saved or pushed:
        // its configuration's digest names it (podman's image ID).
        digest: config_digest.clone(),
        config_digest,
        config_size: data.len() as u64,
        diff_ids,
        size: base.size.saturating_add(size),
        created: Some(now),
        platform: Platform::of_config(&parsed).to_string(),
    };
    catalog::put(store, &record)?;
    Ok(record)
}

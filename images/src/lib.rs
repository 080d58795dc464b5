//! OCI images for burrow: a reference (containers-transports(5) syntax)
//! resolved to its layers, each verified against its digest and unpacked
//! once, without root, into a store shared by every image and sandbox that
//! uses it; and the image's configuration for the sandbox's command.
//!
//! `reference` parses references, `layout` reads OCI image layouts,
//! `archive` the tar files `podman save` and `docker save` write,
//! `registry` pulls from registries (with `auth`'s credentials and
//! `platform`'s choice from an index), `blob` reads verified blobs,
//! `store` keeps unpacked layers and blobs, `catalog` the images pulled by
//! name, and `unpack` writes one layer's tar stream into a directory;
//! `pack` is its inverse, for `commit` (an upper layer as a new image) and
//! `save` (an image as an oci-archive).

mod archive;
mod auth;
mod blob;
pub mod catalog;
pub mod commit;
mod gc;
mod layout;
mod pack;
mod platform;
mod reference;
mod registry;
mod save;
mod scratch;
mod squashfs;
mod store;
mod unpack;

use std::path::PathBuf;

pub use catalog::Record;
pub use commit::{commit, Base};
pub use gc::{prune, InUse, Removed};
pub use pack::{pack, Markers};
pub use platform::Platform;
pub use reference::{Name, Reference};
pub use save::{save, Format as SaveFormat};
pub use squashfs::save_squashfs;
pub use store::{parse_size, remove_tree, Store};

/// Why an image could not be used; each message is one line naming the
/// reference, blob or entry at fault.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("{0}")]
    Reference(String),
    #[error("{what}: {source}")]
    Io {
        what: String,
        #[source]
        source: std::io::Error,
    },
    #[error("{0}")]
    Invalid(String),
    #[error("{0}")]
    Layer(String),
    #[error("{0}")]
    Registry(String),
}

/// How an image is fetched and chosen.
#[derive(Debug, Clone)]
pub struct Options {
    /// The platform chosen from an index.
    pub platform: Platform,
    /// HTTPS with the system's CA store; `false` speaks plain HTTP (a local
    /// registry) and accepts any certificate.
    pub tls_verify: bool,
    /// Progress bars on stderr while layers download.
    pub progress: bool,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            platform: Platform::default(),
            tls_verify: true,
            progress: false,
        }
    }
}

pub type Result<T> = std::result::Result<T, Error>;

pub(crate) fn io_err(what: impl std::fmt::Display) -> impl FnOnce(std::io::Error) -> Error {
    move |source| Error::Io {
        what: what.to_string(),
        source,
    }
}

/// The item of `items` that `names` gives `wanted` as one of its names, or
/// without `wanted` the only item; messages say which names there are and
/// how to write one (`{shown}{form}`).
pub(crate) fn choose<'a, T>(
    items: &'a [T],
    names: impl Fn(&T) -> Vec<String>,
    wanted: Option<&str>,
    shown: &str,
    (kind, plural, form): (&str, &str, &str),
) -> Result<&'a T> {
    match wanted {
        Some(w) => items
            .iter()
            .find(|i| names(i).iter().any(|n| n == w))
            .ok_or_else(|| {
                let all: Vec<String> = items
                    .iter()
                    .flat_map(&names)
                    .map(|n| format!("{n:?}"))
                    .collect();
                let all = if all.is_empty() {
                    "none".into()
                } else {
                    all.join(", ")
                };
                Error::Reference(format!("{shown}: no image {kind} {w:?} ({plural}: {all})"))
            }),
        None if items.len() == 1 => Ok(&items[0]),
        None => Err(Error::Reference(format!(
            "{shown}: {} images; name one as {shown}{form}",
            items.len()
        ))),
    }
}

/// What the image's configuration says about running it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RunConfig {
    pub entrypoint: Vec<String>,
    pub cmd: Vec<String>,
    /// `NAME=VALUE` entries.
    pub env: Vec<String>,
    pub working_dir: Option<String>,
    pub user: Option<String>,
    /// The signal that asks the command to stop (`SIGTERM` when unset).
    pub stop_signal: Option<String>,
    /// Directories the image means to be volumes.
    pub volumes: Vec<String>,
    /// `PORT/PROTO` the image's command listens on (published only when
    /// asked).
    pub exposed_ports: Vec<String>,
    pub labels: std::collections::BTreeMap<String, String>,
}

/// An image ready to run: its unpacked layers, bottom first.
#[derive(Debug)]
pub struct Image {
    /// The manifest's digest (`sha256:...`).
    pub digest: String,
    pub layers: Vec<PathBuf>,
    pub config: RunConfig,
    /// The configuration as the image has it (JSON).
    pub config_json: Vec<u8>,
    /// The layers' sizes as the image gives them, added up.
    pub size: u64,
    /// The layers' claim against `rmi` and `prune`: keep it for as long as
    /// they are in use.
    pub in_use: Option<InUse>,
}

/// Resolves `reference` and unpacks what is not yet in `store`. A
/// registry's image already pulled is taken from the store (podman's
/// `missing` pull policy); `pull` fetches it anew. The image's layers are
/// claimed in use until it is dropped.
pub fn open(reference: &str, opts: &Options, store: &Store) -> Result<Image> {
    let parsed = Reference::parse(reference)?;
    let _lock = gc::lock(store, false)?;
    let mut image = open_unlocked(reference, parsed, opts, store)?;
    let mut ids = Vec::new();
    for layer in &image.layers {
        let hex = layer.file_name().and_then(|n| n.to_str()).unwrap_or("");
        ids.push(format!("sha256:{hex}"));
    }
    image.in_use = Some(gc::register(store, &ids)?);
    Ok(image)
}

fn open_unlocked(
    reference: &str,
    parsed: Reference,
    opts: &Options,
    store: &Store,
) -> Result<Image> {
    match parsed {
        Reference::OciLayout { dir, tag } => {
            let shown = format!("oci:{}", dir.display());
            layout::open(&dir, &shown, tag.as_deref(), &opts.platform, store)
        }
        Reference::OciArchive { file, tag } => {
            archive::open_oci(&file, tag.as_deref(), &opts.platform, store)
        }
        Reference::DockerArchive { file, name } => {
            archive::open_docker(&file, name.as_deref(), store)
        }
        Reference::Registry(name) => {
            let record = match catalog::get(store, &name.whole())? {
                Some(r) if r.serves(&opts.platform) => r,
                _ => registry::pull(&name, opts, store)?,
            };
            catalog::open(store, &record)
        }
        Reference::Stored(name) => {
            let pull = format!(
                "burrow pull --platform {} docker://{}",
                opts.platform,
                name.whole()
            );
            let record = catalog::get(store, &name.whole())?.ok_or_else(|| {
                Error::Reference(format!(
                    "image {reference:?}: not in the store; pull it with `{pull}`"
                ))
            })?;
            if !record.serves(&opts.platform) {
                return Err(Error::Reference(format!(
                    "image {reference:?}: the stored image is for {}, not {}; pull it with `{pull}`",
                    record.platform, opts.platform
                )));
            }
            catalog::open(store, &record)
        }
    }
}

/// `burrow pull REF`: a registry's image fetched (what the store lacks)
/// and recorded under its name.
pub fn pull(reference: &str, opts: &Options, store: &Store) -> Result<Record> {
    match Reference::parse(reference)? {
        Reference::Registry(name) => {
            let _lock = gc::lock(store, false)?;
            registry::pull(&name, opts, store)
        }
        _ => Err(Error::Reference(format!(
            "pull {reference:?}: pull takes docker://HOST[:PORT]/NAME[:TAG|@DIGEST]; other references are read where they are by `burrow run --image`"
        ))),
    }
}

/// `burrow rmi REF`: a pulled image's name dropped from the store, and
/// those of its layers no other image names and no sandbox uses.
pub fn rmi(reference: &str, store: &Store) -> Result<Removed> {
    match Reference::parse(reference)? {
        Reference::Registry(name) | Reference::Stored(name) => {
            gc::rmi(store, &name.whole(), reference)
        }
        _ => Err(Error::Reference(format!(
            "rmi {reference:?}: rmi takes the name of a pulled image (HOST[:PORT]/NAME[:TAG] or docker://...); what oci: and archives unpack goes with `burrow image prune`"
        ))),
    }
}

//! `docker://HOST[:PORT]/NAME[:TAG|@DIGEST]`: the distribution spec's pull
//! flow, spoken by `oci-client` (anonymous or Bearer-token auth from the
//! registry's challenge, basic credentials from the login files, digests
//! checked as blobs stream in). burrow chooses the platform's manifest from
//! an index itself (`--platform`), bounds every blob by its descriptor's
//! size, and checks each layer's digest once more as it is unpacked.
//!
//! Layers are fetched at once (a few at a time) into a private scratch
//! directory of the store, then unpacked in order; those already in the
//! store are not fetched. The image's record is written last, so an
//! interrupted pull leaves the layers it finished and no record, and the
//! next pull fetches only the rest.

use std::io::Write;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use futures_util::StreamExt as _;
use indicatif::{MultiProgress, ProgressBar, ProgressStyle};
use oci_client::client::{ClientConfig, ClientProtocol};
use oci_client::errors::OciDistributionError;
use oci_client::secrets::RegistryAuth;
use oci_client::Client;
use oci_spec::image::{ImageConfiguration, ImageIndex, ImageManifest};

use crate::catalog::{self, Record, JSON_LIMIT};
use crate::reference::Name;
use crate::store::Store;
use crate::{auth, blob, Error, Options, Platform, Result};

/// What a manifest request accepts: OCI and Docker v2 schema 2 manifests,
/// indexes and manifest lists.
const ACCEPT: &[&str] = &[
    "application/vnd.oci.image.manifest.v1+json",
    "application/vnd.oci.image.index.v1+json",
    "application/vnd.docker.distribution.manifest.v2+json",
    "application/vnd.docker.distribution.manifest.list.v2+json",
];

/// The distribution spec's limit on a manifest's size.
const MANIFEST_LIMIT: usize = 4 << 20;

/// Layers fetched at once.
const CONCURRENT: usize = 3;

/// Pulls `name` into `store` and records it under its full name.
pub fn pull(name: &Name, opts: &Options, store: &Store) -> Result<Record> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(crate::io_err("starting the registry client"))?;
    let result = rt.block_on(Pull::new(name, opts, store)?.run());
    // No thread of the client may outlive the pull: the sandbox's
    // namespaces are made by this process next.
    rt.shutdown_timeout(Duration::from_secs(5));
    result
}

struct Pull<'a> {
    name: &'a Name,
    shown: String,
    opts: &'a Options,
    store: &'a Store,
    client: Client,
    auth: RegistryAuth,
}

/// A registry's error as one line naming the image, with its causes
/// ("error sending request" says little without "connection refused").
fn failed(shown: &str, e: OciDistributionError) -> Error {
    let mut text = e.to_string();
    let mut cause = std::error::Error::source(&e);
    while let Some(c) = cause {
        let more = c.to_string();
        if !text.contains(&more) {
            text = format!("{text}: {more}");
        }
        cause = c.source();
    }
    // A registry's error body is copied into the message: cut it short.
    let mut text: String = text
        .chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect();
    if text.len() > 400 {
        let cut = (0..=400)
            .rev()
            .find(|&i| text.is_char_boundary(i))
            .unwrap_or(0);
        text.truncate(cut);
        text.push_str(" (…)");
    }
    Error::Registry(format!("{shown}: {text}"))
}

impl<'a> Pull<'a> {
    fn new(name: &'a Name, opts: &'a Options, store: &'a Store) -> Result<Pull<'a>> {
        // rustls with ring, set once per process (a second set is refused
        // and changes nothing). rustls now steers to aws-lc-rs for its
        // post-quantum key exchange; ring is kept for now because AWS-LC
        // is a C library of its own to build on every machine.
        #[allow(deprecated)]
        let _ = rustls::crypto::ring::default_provider().install_default();
        let config = ClientConfig {
            protocol: if opts.tls_verify {
                ClientProtocol::Https
            } else {
                ClientProtocol::Http
            },
            accept_invalid_certificates: !opts.tls_verify,
            platform_resolver: None,
            connect_timeout: Some(Duration::from_secs(30)),
            read_timeout: Some(Duration::from_secs(120)),
            ..Default::default()
        };
        let auth = match auth::credentials(name.resolve_registry(), name.repository())? {
            Some(c) => RegistryAuth::Basic(c.username, c.password),
            None => RegistryAuth::Anonymous,
        };
        Ok(Pull {
            name,
            shown: format!("docker://{}", name.whole()),
            opts,
            store,
            client: Client::new(config),
            auth,
        })
    }

    async fn manifest(&self, name: &Name) -> Result<(Vec<u8>, String)> {
        let (body, digest) = self
            .client
            .pull_manifest_raw(name, &self.auth, ACCEPT)
            .await
            .map_err(|e| failed(&self.shown, e))?;
        if body.len() > MANIFEST_LIMIT {
            return Err(Error::Registry(format!(
                "{}: a manifest of {} bytes, more than the {MANIFEST_LIMIT} allowed",
                self.shown,
                body.len()
            )));
        }
        Ok((body.to_vec(), digest))
    }

    /// The image manifest for the platform, and its digest.
    async fn image_manifest(&self) -> Result<(Vec<u8>, String)> {
        let (body, digest) = self.manifest(self.name).await?;
        let doc: serde_json::Value = serde_json::from_slice(&body)
            .map_err(|e| Error::Invalid(format!("{}: manifest {digest}: {e}", self.shown)))?;
        if doc.get("manifests").is_none() {
            return Ok((body, digest));
        }
        let index = ImageIndex::from_reader(&body[..])
            .map_err(|e| Error::Invalid(format!("{}: index {digest}: {e}", self.shown)))?;
        let shown = format!("{}: index {digest}", self.shown);
        let chosen = self.opts.platform.choose(index.manifests(), &shown)?;
        let child = self.name.clone_with_digest(chosen.digest().to_string());
        // The client checks the body against the digest asked for.
        let (body, digest) = self.manifest(&child).await?;
        if body.len() as u64 != chosen.size() {
            return Err(Error::Invalid(format!(
                "{shown}: manifest {digest} is {} bytes where the index says {}",
                body.len(),
                chosen.size()
            )));
        }
        Ok((body, digest))
    }

    /// Blob `digest` of `size` bytes into `out`; a blob longer than its
    /// descriptor says is cut off with an error, not stored.
    async fn blob(
        &self,
        digest: &str,
        size: u64,
        out: impl Write + Unpin,
        bar: Option<ProgressBar>,
    ) -> Result<()> {
        let mut w = Bounded {
            out,
            left: size,
            bar,
        };
        self.client
            .pull_blob(self.name, digest, &mut w)
            .await
            .map_err(|e| failed(&self.shown, e))?;
        if w.left != 0 {
            return Err(Error::Invalid(format!(
                "{}: blob {digest} ended {} bytes short of its {size}",
                self.shown, w.left
            )));
        }
        Ok(())
    }

    async fn run(self) -> Result<Record> {
        let (manifest_data, digest) = self.image_manifest().await?;
        let manifest = ImageManifest::from_reader(&manifest_data[..])
            .map_err(|e| Error::Invalid(format!("{}: manifest {digest}: {e}", self.shown)))?;
        let cdesc = manifest.config();
        let (cdigest, csize) = (cdesc.digest().to_string(), cdesc.size());
        if csize > JSON_LIMIT {
            return Err(Error::Invalid(format!(
                "{}: config {cdigest}: {csize} bytes, more than the {JSON_LIMIT} allowed",
                self.shown
            )));
        }
        let config_data = match self.store.read_blob(&cdigest, csize, JSON_LIMIT) {
            Ok(d) => d,
            Err(_) => {
                let mut data = Vec::new();
                self.blob(&cdigest, csize, &mut data, None).await?;
                data
            }
        };
        let config = ImageConfiguration::from_reader(&config_data[..])
            .map_err(|e| Error::Invalid(format!("{}: config {cdigest}: {e}", self.shown)))?;
        let diff_ids = config.rootfs().diff_ids();
        if diff_ids.len() != manifest.layers().len() {
            return Err(Error::Invalid(format!(
                "{}: {} layers but {} diff_ids in its configuration",
                self.shown,
                manifest.layers().len(),
                diff_ids.len()
            )));
        }
        let mut missing = Vec::new();
        for (desc, diff_id) in manifest.layers().iter().zip(diff_ids) {
            if self.store.has_layer(diff_id)?.is_none() {
                missing.push((desc.digest().to_string(), desc.size(), diff_id.clone()));
            }
        }
        // The downloads land in the store first: all of them must fit the
        // room it has (each is also cut off at its descriptor's size).
        let downloads = missing
            .iter()
            .fold(0u64, |n, (_, size, _)| n.saturating_add(*size));
        let (room, of) = self.store.room()?;
        if downloads > room {
            return Err(Error::Layer(format!(
                "{}: its layers to download take {downloads} bytes, past {of} ({room} bytes left)",
                self.shown
            )));
        }
        if !missing.is_empty() {
            self.layers(&missing).await?;
        }
        self.store.put_blob(&digest, &manifest_data)?;
        self.store.put_blob(&cdigest, &config_data)?;
        let record = Record {
            name: self.name.whole(),
            digest,
            config_digest: cdigest,
            config_size: csize,
            diff_ids: diff_ids.clone(),
            size: manifest
                .layers()
                .iter()
                .fold(0u64, |n, l| n.saturating_add(l.size())),
            created: config.created().clone(),
            platform: Platform::of_config(&config).to_string(),
        };
        catalog::put(self.store, &record)?;
        Ok(record)
    }

    /// Fetches the layers `(digest, size, diff_id)` and unpacks them.
    async fn layers(&self, missing: &[(String, u64, String)]) -> Result<()> {
        let scratch = self.store.scratch()?;
        let bars = self.opts.progress.then(MultiProgress::new);
        let style = ProgressStyle::with_template(
            "{prefix:.bold} [{bar:30}] {bytes}/{total_bytes} {bytes_per_sec}",
        )
        .expect("a valid template")
        .progress_chars("=> ");
        let fetches = missing
            .iter()
            .enumerate()
            .map(|(i, (digest, size, diff_id))| {
                let path = scratch.join(i.to_string());
                let bar = bars.as_ref().map(|m| {
                    let short = digest.trim_start_matches("sha256:");
                    m.add(
                        ProgressBar::new(*size)
                            .with_style(style.clone())
                            .with_prefix(format!("blob {}", &short[..short.len().min(12)])),
                    )
                });
                async move {
                    let file = std::fs::File::create(&path)
                        .map_err(crate::io_err(format!("image store {}", path.display())))?;
                    self.blob(digest, *size, file, bar.clone()).await?;
                    if let Some(b) = bar {
                        b.finish();
                    }
                    // Unpacked on a thread of its own while the other layers
                    // download. The client checked the blob's digest as it
                    // streamed in; its size and its content's diff ID are
                    // checked again as it is unpacked.
                    let (store, digest, size, diff_id) =
                        (self.store.clone(), digest.clone(), *size, diff_id.clone());
                    tokio::task::spawn_blocking(move || {
                        let layer =
                            store.layer(&diff_id, || blob::open_sized(&path, &digest, size));
                        let _ = std::fs::remove_file(&path);
                        layer
                    })
                    .await
                    .map_err(|e| Error::Invalid(format!("unpacking a layer: {e}")))??;
                    Ok::<_, Error>(())
                }
            });
        // Every fetch is seen to its end, so no unpacking thread outlives a
        // failed pull; then the first error.
        let results: Vec<Result<()>> = futures_util::stream::iter(fetches)
            .buffer_unordered(CONCURRENT)
            .collect()
            .await;
        results.into_iter().collect::<Result<Vec<()>>>()?;
        Ok(())
    }
}

/// A writer that takes at most `left` more bytes.
struct Bounded<W> {
    out: W,
    left: u64,
    bar: Option<ProgressBar>,
}

impl<W: Write + Unpin> tokio::io::AsyncWrite for Bounded<W> {
    fn poll_write(
        self: Pin<&mut Self>,
        _: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        let this = self.get_mut();
        if buf.len() as u64 > this.left {
            return Poll::Ready(Err(std::io::Error::other(
                "the blob is longer than its descriptor says",
            )));
        }
        this.out.write_all(buf)?;
        this.left -= buf.len() as u64;
        if let Some(b) = &this.bar {
            b.inc(buf.len() as u64);
        }
        Poll::Ready(Ok(buf.len()))
    }

    fn poll_flush(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Poll::Ready(self.get_mut().out.flush())
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        self.poll_flush(cx)
    }
}

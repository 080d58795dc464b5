//! `--image REF`: the image's layers become the union's lower layers (the
//! rootfs at the bottom, `--layer`s above them) and its configuration the
//! command's defaults. The sandbox is the one `burrow run` builds; the
//! image only fills in what the command line leaves out.

use std::ffi::OsString;
use std::io::IsTerminal;
use std::path::PathBuf;

use crate::cli::{CommitArgs, FetchArgs, PullArgs, RunArgs, SaveArgs};
use crate::error::{Error, Result};
use crate::idmap::IdMaps;

/// The images crate's messages name the reference or the blob.
fn fail(flag: &str) -> impl Fn(burrow_images::Error) -> Error + '_ {
    move |e| Error::usage(format!("{flag}: {e}"))
}

/// How the image is fetched; progress bars only on a terminal.
fn options(fetch: &FetchArgs, quiet: bool) -> Result<burrow_images::Options> {
    let platform = match &fetch.platform {
        Some(p) => p.parse().map_err(fail("--platform"))?,
        None => burrow_images::Platform::default(),
    };
    Ok(burrow_images::Options {
        platform,
        tls_verify: fetch.tls_verify,
        progress: !quiet && std::io::stderr().is_terminal(),
    })
}

/// `burrow pull REF`: the manifest digest of what is now in the store.
pub fn pull(args: &PullArgs) -> Result<String> {
    let opts = options(&args.fetch, args.quiet)?;
    let store = burrow_images::Store::from_env().map_err(fail("pull"))?;
    let record = burrow_images::pull(&args.reference, &opts, &store).map_err(fail("pull"))?;
    Ok(record.digest)
}

/// `burrow commit UPPER-DIR NAME`: the new image's ID (its
/// configuration's digest, as podman prints it).
pub fn commit(args: &CommitArgs) -> Result<String> {
    let shown = args.upper.display();
    let upper = std::fs::canonicalize(&args.upper)
        .map_err(|e| Error::usage(format!("commit {shown}: {}", crate::sys::errno_text(&e))))?;
    let work = crate::config::work_dir_of(&upper);
    // The lock a sandbox's union holds on it (and under which it writes
    // the base): none may run on it while it is read and packed.
    let _lock = burrow_unionfs::layer_dir::Dir::open_locked(&work).map_err(|e| {
        if e.raw_os_error() == Some(libc::EWOULDBLOCK) {
            Error::usage(format!(
                "commit {shown}: a running sandbox uses it; commit it once that sandbox has exited"
            ))
        } else if e.raw_os_error() == Some(libc::ENOENT) {
            Error::usage(format!(
                "commit {shown}: no sandbox has run with it as --upper ({} is missing)",
                work.display()
            ))
        } else {
            Error::usage(format!("commit {shown}: {}", crate::sys::errno_text(&e)))
        }
    })?;
    let base = burrow_images::Base::read(&work)
        .map_err(fail("commit"))?
        .ok_or_else(|| {
            Error::usage(format!(
                "commit {shown}: no image was run over it (what `burrow run --image REF --upper DIR` \
                 leaves in {} is missing)",
                work.display()
            ))
        })?;
    let store = burrow_images::Store::from_env().map_err(fail("commit"))?;
    let maps = IdMaps::for_caller(base.keep_id, base.subids);
    if !base.maps.is_empty() && base.maps != maps.describe() {
        return Err(Error::usage(format!(
            "commit {shown}: the sandbox's ids were mapped as {:?}, and would now be {:?} \
             (/etc/subuid, /etc/subgid or newuidmap changed): its owners cannot be read back",
            base.maps,
            maps.describe()
        )));
    }
    let record = crate::mapped::run(&maps, || {
        burrow_images::commit(&store, &upper, &base, &args.name, args.message.as_deref())
            .map_err(|e| format!("commit {shown}: {e}"))
    })?;
    Ok(record.digest.trim_start_matches("sha256:").to_string())
}

/// `burrow save REF FILE`: the saved manifest's digest.
pub fn save(args: &SaveArgs) -> Result<String> {
    let format = match args.format.as_str() {
        "oci-archive" => Some(burrow_images::SaveFormat::OciArchive),
        "docker-archive" => Some(burrow_images::SaveFormat::DockerArchive),
        "squashfs" => None,
        other => {
            return Err(Error::usage(format!(
                "save --format {other}: burrow writes oci-archive, docker-archive or squashfs"
            )))
        }
    };
    let opts = options(&args.fetch, false)?;
    let store = burrow_images::Store::from_env().map_err(fail("save"))?;
    // Root of a namespace of the caller alone: layers the caller owns but
    // whose modes shut even the owner out are read all the same.
    let maps = IdMaps::for_caller(false, false);
    let owner = (
        nix::unistd::getuid().as_raw(),
        nix::unistd::getgid().as_raw(),
    );
    crate::mapped::run(&maps, || {
        match format {
            Some(format) => {
                burrow_images::save(&args.reference, &opts, &store, &args.file, format, owner)
            }
            None => burrow_images::save_squashfs(&args.reference, &opts, &store, &args.file),
        }
        .map_err(|e| format!("save {}: {e}", args.reference))
    })
}

/// `burrow rmi REF...`: what was removed, podman's way.
pub fn rmi(references: &[String]) -> Result<String> {
    let store = burrow_images::Store::from_env().map_err(fail("rmi"))?;
    let mut out = String::new();
    for r in references {
        let removed = burrow_images::rmi(r, &store).map_err(fail("rmi"))?;
        out += &format!("Untagged: {r}\n");
        for layer in removed.layers {
            out += &format!("Deleted: {layer}\n");
        }
    }
    Ok(out)
}

/// `burrow image prune`: what was removed.
pub fn prune() -> Result<String> {
    let store = burrow_images::Store::from_env().map_err(fail("image prune"))?;
    let removed = burrow_images::prune(&store).map_err(fail("image prune"))?;
    let mut out = String::new();
    for layer in &removed.layers {
        out += &format!("Deleted: {layer}\n");
    }
    Ok(out)
}

/// `burrow images`: a table of the images pulled into the store.
pub fn images() -> Result<String> {
    let store = burrow_images::Store::from_env().map_err(fail("images"))?;
    let (all, bad) = burrow_images::catalog::list(&store).map_err(fail("images"))?;
    for line in bad {
        eprintln!("burrow: images: {}", printable(&line));
    }
    let width = all.iter().map(|r| r.name.len()).max().unwrap_or(0).max(4);
    let mut out = format!(
        "{:width$}  {:19}  {:>9}  CREATED\n",
        "NAME", "DIGEST", "SIZE"
    );
    for r in all {
        let hex = r.digest.trim_start_matches("sha256:");
        out += &format!(
            "{:width$}  sha256:{:12}  {:>9}  {}\n",
            r.name,
            &hex[..hex.len().min(12)],
            human_size(r.size),
            printable(r.created.as_deref().unwrap_or("-"))
        );
    }
    Ok(out)
}

/// `burrow images --inspect REF...`: a JSON array, an object per image.
pub fn inspect(references: &[String]) -> Result<String> {
    let store = burrow_images::Store::from_env().map_err(fail("images --inspect"))?;
    let mut all = Vec::new();
    for r in references {
        let (record, c) =
            burrow_images::catalog::inspect(&store, r).map_err(fail("images --inspect"))?;
        all.push(serde_json::json!({
            "Name": record.name,
            "Id": record.config_digest,
            "Digest": record.digest,
            "Created": record.created,
            "Size": record.size,
            "Platform": record.platform,
            "Layers": record.diff_ids,
            "Config": {
                "Entrypoint": c.entrypoint,
                "Cmd": c.cmd,
                "Env": c.env,
                "WorkingDir": c.working_dir,
                "User": c.user,
                "StopSignal": c.stop_signal,
                "Volumes": c.volumes,
                "ExposedPorts": c.exposed_ports,
                "Labels": c.labels,
            },
        }));
    }
    Ok(serde_json::to_string_pretty(&all).expect("JSON values serialize"))
}

/// What an image says, fit for a terminal: no control characters.
fn printable(s: &str) -> String {
    s.chars()
        .map(|c| if c.is_control() { '?' } else { c })
        .collect()
}

fn human_size(n: u64) -> String {
    let units = ["B", "kB", "MB", "GB", "TB"];
    let mut v = n as f64;
    let mut u = 0;
    while v >= 1000.0 && u + 1 < units.len() {
        v /= 1000.0;
        u += 1;
    }
    if u == 0 {
        format!("{n} B")
    } else {
        format!("{v:.1} {}", units[u])
    }
}

/// What the image says about running it.
pub struct ImageDefaults {
    reference: String,
    config: burrow_images::RunConfig,
    /// The layers' claim against `rmi`/`prune`, for the sandbox's life.
    pub in_use: Option<std::sync::Arc<burrow_images::InUse>>,
    /// The store's directory: the sandbox must not write it.
    pub store: PathBuf,
    /// What `burrow commit` needs to know of the image (the id maps are
    /// filled in by the sandbox's configuration).
    pub base: burrow_images::Base,
}

/// Unpacks what the image needs into the store and puts its layers in
/// `args`; `None` without `--image`.
pub fn resolve(args: &mut RunArgs) -> Result<Option<ImageDefaults>> {
    let Some(reference) = args.image.clone() else {
        return Ok(None);
    };
    let opts = options(&args.fetch, false)?;
    let store = burrow_images::Store::from_env().map_err(fail("--image"))?;
    let image = burrow_images::open(&reference, &opts, &store).map_err(fail("--image"))?;
    let Some((bottom, above)) = image.layers.split_first() else {
        return Err(Error::usage(format!(
            "--image {reference}: the image has no layers"
        )));
    };
    args.rootfs = Some(bottom.clone());
    let mut layers: Vec<PathBuf> = above.to_vec();
    layers.append(&mut args.layer);
    args.layer = layers;
    if args.chdir.is_none() {
        // As if given on the command line, so --vm's guest has it too.
        args.chdir = Some(PathBuf::from(
            image.config.working_dir.as_deref().unwrap_or("/"),
        ));
    }
    let base = burrow_images::Base {
        reference: reference.clone(),
        digest: image.digest.clone(),
        config: String::from_utf8_lossy(&image.config_json).into_owned(),
        size: image.size,
        keep_id: false,
        subids: false,
        maps: String::new(),
    };
    Ok(Some(ImageDefaults {
        reference,
        base,
        config: image.config,
        in_use: image.in_use.map(std::sync::Arc::new),
        store: store.root().to_path_buf(),
    }))
}

impl ImageDefaults {
    /// Entrypoint (or `--entrypoint`), then COMMAND, or else the image's
    /// Cmd unless `--entrypoint` named one (podman's rules: a JSON array
    /// for several words, anything else one word; `''` and `[""]` none).
    pub fn command(&self, entrypoint: Option<&str>, given: &[OsString]) -> Result<Vec<OsString>> {
        let c = &self.config;
        let chosen: Option<Vec<String>> = entrypoint.map(|e| {
            serde_json::from_str::<Vec<String>>(e).unwrap_or_else(|_| vec![e.to_string()])
        });
        let mut argv: Vec<OsString> = match &chosen {
            None => c.entrypoint.iter().map(OsString::from).collect(),
            Some(words) if words.len() == 1 && words[0].is_empty() => Vec::new(),
            Some(words) => words.iter().map(OsString::from).collect(),
        };
        if !given.is_empty() {
            argv.extend(given.iter().cloned());
        } else if chosen.as_ref().is_none_or(|w| w.is_empty()) {
            argv.extend(c.cmd.iter().map(OsString::from));
        }
        if argv.is_empty() {
            return Err(Error::usage(format!(
                "--image {}: the image has no Entrypoint or Cmd; give a COMMAND",
                self.reference
            )));
        }
        Ok(argv)
    }

    /// The image's Volumes.
    pub fn volumes(&self) -> Vec<String> {
        self.config.volumes.clone()
    }

    /// The image's StopSignal, when it names one.
    pub fn stop_signal(&self) -> Option<String> {
        self.config.stop_signal.clone()
    }

    /// The image's User, when it names one.
    pub fn user(&self) -> Option<String> {
        self.config.user.clone().filter(|u| !u.is_empty())
    }

    /// The image's Env, with PATH when it sets none (HOME, when it sets
    /// none either, is the user's: see [`SandboxConfig::home_if_unset`]).
    ///
    /// [`SandboxConfig::home_if_unset`]: crate::config::SandboxConfig::home_if_unset
    pub fn env(&self) -> Vec<(OsString, OsString)> {
        let mut env: Vec<(OsString, OsString)> = self
            .config
            .env
            .iter()
            .filter_map(|kv| kv.split_once('='))
            .map(|(k, v)| (k.into(), v.into()))
            .collect();
        // What podman adds when the image leaves it out.
        if !env.iter().any(|(name, _)| name == "PATH") {
            env.push((
                "PATH".into(),
                "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin".into(),
            ));
        }
        env
    }
}

//! `burrow pull` and `burrow run --image docker://...` against a real
//! registry: Debian's `docker-registry` on 127.0.0.1 with htpasswd auth,
//! images pushed by `skopeo copy` (which compresses the layers) and
//! credentials written by `skopeo login`, all as the unprivileged account;
//! and the same registry behind a token server (Bearer tokens, the
//! distribution spec's token flow).

use std::path::{Path, PathBuf};
use std::process::Command;

use burrow_tests::oci::{put_blob, write_image, write_index, write_layout};
use burrow_tests::registry::{RedirectingProxy, Registry, StallingProxy};
use burrow_tests::token::TokenServer;
use burrow_tests::*;

/// `burrow ARGS` with the store in `data` and credentials looked up under
/// `run` (as $XDG_RUNTIME_DIR); HOME points at an empty directory so no
/// login file of the account is read.
fn burrow(data: &Path, run: &Path, args: &[&str]) -> Output {
    burrow_env(data, run, &[], args)
}

/// [`burrow`] with more of the environment.
fn burrow_env(data: &Path, run: &Path, env: &[(&str, &str)], args: &[&str]) -> Output {
    assert_unprivileged();
    output(
        Command::new(burrow_bin())
            .envs(env.iter().copied())
            .env("XDG_DATA_HOME", data)
            .env("XDG_RUNTIME_DIR", run)
            .env("HOME", run)
            .env_remove("XDG_CONFIG_HOME")
            .env_remove("REGISTRY_AUTH_FILE")
            .args(args)
            .stdin(std::process::Stdio::null()),
    )
}

struct Case {
    reg: Registry,
    t: TempDir,
}

impl Case {
    fn new(tag: &str) -> Option<Case> {
        Self::on(Registry::start()?, tag)
    }

    fn on(reg: Registry, tag: &str) -> Option<Case> {
        let t = TempDir::new(tag);
        std::fs::create_dir(t.join("run")).unwrap();
        Some(Case { reg, t })
    }

    fn burrow(&self, args: &[&str]) -> Output {
        burrow(&self.t.join("data"), &self.t.join("run"), args)
    }

    fn login(&self) {
        let out = self.reg.login(&self.t.join("run"));
        assert_eq!(out.code, 0, "skopeo login: {out:?}");
        assert!(self.t.join("run/containers/auth.json").is_file());
    }

    fn url(&self, name: &str) -> String {
        format!("docker://{}/{name}", self.reg.host)
    }

    fn pull(&self, name: &str) -> Output {
        self.burrow(&["pull", "--tls-verify=false", &self.url(name)])
    }

    /// Unpacked layers and recorded images in the store.
    fn stored(&self) -> (usize, usize) {
        let count = |p: PathBuf| std::fs::read_dir(p).map_or(0, |d| d.count());
        let data = self.t.join("data/burrow");
        (
            count(data.join("layers/sha256")),
            count(data.join("images")),
        )
    }

    /// Whatever a pull left in the store's scratch directory.
    fn scratch(&self) -> Vec<PathBuf> {
        std::fs::read_dir(self.t.join("data/burrow/tmp"))
            .map(|d| d.map(|e| e.unwrap().path()).collect())
            .unwrap_or_default()
    }
}

/// A busybox image whose Cmd prints `/marker`, as an OCI layout's blobs.
fn busybox_layers(marker: &str) -> Vec<Vec<(&'static str, Vec<u8>)>> {
    let busybox = std::fs::read("/bin/busybox").unwrap();
    vec![
        vec![
            ("bin/", vec![]),
            ("bin/busybox", busybox),
            ("bin/sh", b"->busybox".to_vec()),
            ("bin/cat", b"->busybox".to_vec()),
        ],
        vec![("marker", marker.as_bytes().to_vec())],
    ]
}

fn cmd_config() -> serde_json::Value {
    serde_json::json!({"created": "2026-12-04T00:00:00Z", "config": {"Cmd": ["cat", "/marker"]}})
}

fn push_busybox(c: &Case, name: &str, marker: &str) {
    let oci = c.t.join("oci");
    write_layout(&oci, &busybox_layers(marker), cmd_config());
    c.reg
        .push(&format!("oci:{}:v1", oci.display()), name, false);
}

#[test]
fn a_pulled_image_runs_by_name_and_a_second_pull_fetches_nothing() {
    let Some(c) = Case::new("reg-pull") else {
        return;
    };
    push_busybox(&c, "burrow/bb:1", "from the registry\n");

    // Without credentials the registry says no, in one line, and the
    // store records nothing.
    let out = c.pull("burrow/bb:1");
    assert_eq!(out.code, 125, "{out:?}");
    assert_eq!(out.stderr.lines().count(), 1, "{out:?}");
    assert!(out.stderr.contains("Not authorized"), "{out:?}");
    assert!(out.stderr.contains("burrow/bb:1"), "{out:?}");
    assert_eq!(c.stored(), (0, 0));

    c.login();
    // Downloads that would pass the store's budget are not started.
    let out = burrow_env(
        &c.t.join("data"),
        &c.t.join("run"),
        &[("BURROW_STORE_BUDGET", "64K")],
        &["pull", "--tls-verify=false", &c.url("burrow/bb:1")],
    );
    assert_eq!(out.code, 125, "{out:?}");
    assert!(out.stderr.contains("the store's budget"), "{out:?}");
    assert_eq!(out.stderr.lines().count(), 1, "{out:?}");
    assert_eq!(c.stored(), (0, 0));
    assert_eq!(c.reg.blob_gets(), 1, "only the config: {}", c.reg.log());
    let out = c.pull("burrow/bb:1");
    assert_eq!(out.code, 0, "{out:?}");
    assert_eq!(out.stdout.trim(), c.reg.digest("burrow/bb:1"));
    assert_eq!(out.stderr, "", "not a terminal: no progress");
    assert_eq!(c.stored(), (2, 1));
    assert!(c.scratch().is_empty(), "{:?}", c.scratch());
    let fetched = c.reg.blob_gets();
    assert!(fetched >= 3, "config and two layers: {}", c.reg.log());

    let listed = c.burrow(&["images"]);
    let name = format!("{}/burrow/bb:1", c.reg.host);
    let short = &out.stdout.trim()["sha256:".len()..][..12];
    let line = listed
        .ok()
        .lines()
        .find(|l| l.starts_with(&name))
        .unwrap_or_else(|| panic!("{name} in {listed:?}"));
    assert!(line.contains(short), "{line}");
    assert!(line.contains("2026-12-04"), "{line}");

    // Run by its stored name and by its docker:// reference: both from the
    // store, without a download.
    for reference in [name.clone(), c.url("burrow/bb:1")] {
        let out = c.burrow(&["run", "--tls-verify=false", "--image", &reference]);
        assert_eq!(out.ok(), "from the registry\n", "{reference}");
    }
    let again = c.pull("burrow/bb:1");
    assert_eq!(again.stdout, out.stdout, "{again:?}");
    assert_eq!(c.reg.blob_gets(), fetched, "{}", c.reg.log());

    // A name the store does not have is refused, with how to pull it.
    let out = c.burrow(&["run", "--image", &format!("{}/burrow/other:1", c.reg.host)]);
    assert_eq!(out.code, 125, "{out:?}");
    assert!(out.stderr.contains("burrow pull"), "{out:?}");

    // rmi drops the name and the layers no other image names.
    let out = c.burrow(&["rmi", &name]);
    let text = out.ok();
    assert!(text.starts_with(&format!("Untagged: {name}\n")), "{text}");
    assert_eq!(text.matches("Deleted: sha256:").count(), 2, "{text}");
    assert_eq!(c.stored(), (0, 0));
    assert_eq!(
        c.burrow(&["images"]).ok().lines().count(),
        1,
        "only the header"
    );
    let out = c.burrow(&["run", "--image", &name]);
    assert_eq!(out.code, 125, "{out:?}");
    assert!(out.stderr.contains("not in the store"), "{out:?}");
    let out = c.burrow(&["rmi", &name]);
    assert_eq!(out.code, 125, "{out:?}");
    assert_eq!(out.stderr.lines().count(), 1, "{out:?}");
}

#[test]
fn a_corrupted_or_truncated_blob_is_refused_and_a_later_pull_completes() {
    let Some(c) = Case::new("reg-corrupt") else {
        return;
    };
    push_busybox(&c, "burrow/bb:1", "intact\n");
    c.login();
    let manifest = c.reg.manifest("burrow/bb:1");
    let digest = manifest["layers"][0]["digest"]
        .as_str()
        .unwrap()
        .to_string();
    let blob = c.reg.blob_file(&digest);
    let good = std::fs::read(&blob).unwrap();

    let mut flipped = good.clone();
    let mid = flipped.len() / 2;
    flipped[mid] ^= 0xff;
    let truncated = good[..good.len() / 2].to_vec();
    for (what, bad) in [("corrupted", flipped), ("truncated", truncated)] {
        std::fs::write(&blob, &bad).unwrap();
        let out = c.pull("burrow/bb:1");
        assert_eq!(out.code, 125, "{what}: {out:?}");
        assert_eq!(out.stderr.lines().count(), 1, "{what}: {out:?}");
        assert!(
            out.stderr.contains(&digest),
            "{what}: names the blob: {out:?}"
        );
        let (layers, images) = c.stored();
        assert_eq!(images, 0, "{what}: no record of a failed pull");
        // The other (intact) layer may have been unpacked; the bad one not.
        assert!(layers <= 1, "{what}: {layers} layers stored");
        assert!(c.scratch().is_empty(), "{what}: {:?}", c.scratch());
        let out = c.burrow(&["run", "--image", &format!("{}/burrow/bb:1", c.reg.host)]);
        assert_eq!(out.code, 125, "{what}: {out:?}");
    }

    std::fs::write(&blob, &good).unwrap();
    let out = c.pull("burrow/bb:1");
    assert_eq!(out.code, 0, "{out:?}");
    assert_eq!(c.stored(), (2, 1));
    let out = c.burrow(&["run", "--image", &format!("{}/burrow/bb:1", c.reg.host)]);
    assert_eq!(out.ok(), "intact\n");
}

#[test]
fn the_platform_is_chosen_from_a_multi_arch_index() {
    let Some(c) = Case::new("reg-multi") else {
        return;
    };
    // Both images carry this machine's busybox, so either runs here; each
    // says which one it is.
    let oci = c.t.join("oci");
    let (amd64, _) = write_image(&oci, &busybox_layers("amd64\n"), cmd_config(), "amd64");
    let (arm64, _) = write_image(&oci, &busybox_layers("arm64\n"), cmd_config(), "arm64");
    let index = serde_json::json!({
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.index.v1+json",
        "manifests": [arm64, amd64],
    });
    let (digest, size) = put_blob(&oci, &serde_json::to_vec(&index).unwrap());
    write_index(
        &oci,
        vec![serde_json::json!({
            "mediaType": "application/vnd.oci.image.index.v1+json",
            "digest": digest, "size": size,
            "annotations": {"org.opencontainers.image.ref.name": "v1"},
        })],
    );
    c.reg
        .push(&format!("oci:{}:v1", oci.display()), "burrow/multi:1", true);
    c.login();
    let url = c.url("burrow/multi:1");
    let stored = format!("{}/burrow/multi:1", c.reg.host);

    let run = |extra: &[&str], reference: &str| {
        let mut args = vec!["run", "--tls-verify=false"];
        args.extend_from_slice(extra);
        args.extend_from_slice(&["--image", reference]);
        c.burrow(&args)
    };
    assert_eq!(run(&[], &url).ok(), "amd64\n");
    // The stored amd64 image does not serve arm64: it is pulled.
    assert_eq!(run(&["--platform", "linux/arm64"], &url).ok(), "arm64\n");
    assert_eq!(run(&["--platform", "linux/arm64"], &stored).ok(), "arm64\n");

    // The name now holds the arm64 image; for this machine's platform the
    // stored name is refused with how to pull it.
    let out = run(&[], &stored);
    assert_eq!(out.code, 125, "{out:?}");
    assert_eq!(out.stderr.lines().count(), 1, "{out:?}");
    assert!(out.stderr.contains("linux/arm64"), "{out:?}");
    assert!(out.stderr.contains("burrow pull"), "{out:?}");

    // A platform the index lacks: the ones it has are named.
    let out = run(&["--platform", "linux/s390x"], &url);
    assert_eq!(out.code, 125, "{out:?}");
    assert_eq!(out.stderr.lines().count(), 1, "{out:?}");
    assert!(out.stderr.contains("no image for linux/s390x"), "{out:?}");
    assert!(out.stderr.contains("linux/arm64, linux/amd64"), "{out:?}");
}

#[test]
fn two_pulls_at_once_share_the_store() {
    let Some(c) = Case::new("reg-two") else {
        return;
    };
    push_busybox(&c, "burrow/bb:1", "shared\n");
    c.login();
    let spawn = || {
        Command::new(burrow_bin())
            .env("XDG_DATA_HOME", c.t.join("data"))
            .env("XDG_RUNTIME_DIR", c.t.join("run"))
            .env("HOME", c.t.join("run"))
            .args(["pull", "--tls-verify=false", &c.url("burrow/bb:1")])
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap()
    };
    let (a, b) = (spawn(), spawn());
    for child in [a, b] {
        let out = child.wait_with_output().unwrap();
        assert!(out.status.success(), "{out:?}");
    }
    assert_eq!(c.stored(), (2, 1));
    assert!(c.scratch().is_empty(), "{:?}", c.scratch());
    let out = c.burrow(&["run", "--image", &format!("{}/burrow/bb:1", c.reg.host)]);
    assert_eq!(out.ok(), "shared\n");
}

/// `len` bytes no compressor shrinks (xorshift64).
fn incompressible(len: usize) -> Vec<u8> {
    let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u8
        })
        .collect()
}

#[test]
fn a_pull_killed_midway_leaves_no_record_and_the_next_pull_completes_it() {
    let Some(c) = Case::new("reg-kill") else {
        return;
    };
    let mut layers = busybox_layers("resumed\n");
    layers.push(vec![("big", incompressible(24 << 20))]);
    let oci = c.t.join("oci");
    write_layout(&oci, &layers, cmd_config());
    c.reg
        .push(&format!("oci:{}:v1", oci.display()), "burrow/big:1", false);

    // Through a proxy that stalls each connection after 4 MiB: the pull
    // is killed while the big layer is half downloaded.
    let proxy = StallingProxy::start(&c.reg.host, 4 << 20);
    let out = c.reg.login_at(&proxy.host, &c.t.join("run"));
    assert_eq!(out.code, 0, "skopeo login: {out:?}");
    let mut pull = Command::new(burrow_bin())
        .env("XDG_DATA_HOME", c.t.join("data"))
        .env("XDG_RUNTIME_DIR", c.t.join("run"))
        .env("HOME", c.t.join("run"))
        .args(["pull", "--tls-verify=false"])
        .arg(format!("docker://{}/burrow/big:1", proxy.host))
        .stdin(std::process::Stdio::null())
        .spawn()
        .unwrap();
    assert!(
        proxy.wait_stalled(std::time::Duration::from_secs(60)),
        "the pull never got 4 MiB into a blob"
    );
    assert_eq!(
        pull.try_wait().unwrap(),
        None,
        "the pull ended before its kill"
    );
    pull.kill().unwrap();
    pull.wait().unwrap();
    let (_, images) = c.stored();
    assert_eq!(images, 0, "a killed pull records nothing");
    assert!(
        !c.scratch().is_empty(),
        "the killed pull's downloads are left"
    );

    // The next pull (straight from the registry) completes the store and
    // sweeps what the killed one left.
    c.login();
    let out = c.pull("burrow/big:1");
    assert_eq!(out.code, 0, "{out:?}");
    assert_eq!(c.stored(), (3, 1));
    assert!(c.scratch().is_empty(), "{:?}", c.scratch());
    let out = c.burrow(&["run", "--image", &format!("{}/burrow/big:1", c.reg.host)]);
    assert_eq!(out.ok(), "resumed\n");
}

#[test]
fn an_unreadable_record_is_reported_and_rmi_removes_it() {
    use sha2::{Digest, Sha256};
    let Some(c) = Case::new("reg-bad") else {
        return;
    };
    push_busybox(&c, "burrow/bb:1", "one\n");
    c.reg.push(
        &format!("oci:{}:v1", c.t.join("oci").display()),
        "burrow/bb:2",
        false,
    );
    c.login();
    for tag in ["burrow/bb:1", "burrow/bb:2"] {
        assert_eq!(c.pull(tag).code, 0);
    }
    let data = c.t.join("data/burrow");
    let second = format!("{}/burrow/bb:2", c.reg.host);
    let hex = format!("{:x}", Sha256::digest(second.as_bytes()));
    std::fs::write(data.join(format!("images/{hex}.json")), b"{garbage").unwrap();

    let out = c.burrow(&["images"]);
    assert_eq!(out.code, 0, "{out:?}");
    assert!(out.stdout.contains("/burrow/bb:1"), "{out:?}");
    assert!(!out.stdout.contains("/burrow/bb:2"), "{out:?}");
    assert!(out.stderr.contains("unreadable record"), "{out:?}");
    assert_eq!(out.stderr.lines().count(), 1, "{out:?}");

    let out = c.burrow(&["rmi", &second]);
    assert_eq!(out.ok(), format!("Untagged: {second}\n"));
    let out = c.burrow(&["images"]);
    assert_eq!(out.stderr, "", "{out:?}");
    // bb:1 still names both layers: prune keeps them.
    assert_eq!(c.burrow(&["image", "prune"]).ok(), "");
    assert_eq!(c.stored(), (2, 1));
    let out = c.burrow(&["run", "--image", &format!("{}/burrow/bb:1", c.reg.host)]);
    assert_eq!(out.ok(), "one\n");
}

#[test]
fn a_token_registry_serves_anonymous_and_logged_in_pulls_with_bearer_tokens() {
    let tokens = TokenServer::start("public/");
    let Some(reg) = Registry::start_with_tokens(&tokens) else {
        return;
    };
    let Some(c) = Case::on(reg, "reg-token") else {
        return;
    };
    push_busybox(&c, "public/bb:1", "public\n");
    push_busybox(&c, "private/bb:1", "private\n");
    let asked_by = |from: usize, scope: &str| {
        tokens.asked()[from..]
            .iter()
            .filter(|a| a.scopes.iter().any(|s| s == scope))
            .cloned()
            .collect::<Vec<_>>()
    };

    // No login: a token without credentials, which pulls the public
    // repository.
    let from = tokens.asked().len();
    let out = c.pull("public/bb:1");
    assert_eq!(out.code, 0, "{out:?} {}", c.reg.log());
    let asked = asked_by(from, "repository:public/bb:pull");
    assert!(!asked.is_empty(), "{:?}", tokens.asked());
    assert!(asked.iter().all(|a| !a.with_credentials), "{asked:?}");
    let out = c.burrow(&["run", "--image", &format!("{}/public/bb:1", c.reg.host)]);
    assert_eq!(out.ok(), "public\n");

    // ... and not the private one: refused in one line, nothing stored.
    let out = c.pull("private/bb:1");
    assert_eq!(out.code, 125, "{out:?}");
    assert_eq!(out.stderr.lines().count(), 1, "{out:?}");
    assert!(out.stderr.contains("private/bb"), "{out:?}");
    assert_eq!(c.stored().1, 1, "only the public image is recorded");

    // Logged in (skopeo login through the same token flow): the token is
    // asked for with the account's credentials, and the pull succeeds.
    c.login();
    let from = tokens.asked().len();
    let out = c.pull("private/bb:1");
    assert_eq!(out.code, 0, "{out:?}");
    let asked = asked_by(from, "repository:private/bb:pull");
    assert!(!asked.is_empty(), "{:?}", tokens.asked());
    assert!(
        asked.iter().all(|a| a.user.as_deref() == Some("alice")),
        "{asked:?}"
    );
    assert_eq!(out.stdout.trim(), c.reg.digest("private/bb:1"));
    let out = c.burrow(&["run", "--image", &format!("{}/private/bb:1", c.reg.host)]);
    assert_eq!(out.ok(), "private\n");
}

#[test]
fn a_blob_redirected_to_another_host_is_fetched_without_the_credentials() {
    let Some(c) = Case::new("reg-redirect") else {
        return;
    };
    push_busybox(&c, "burrow/bb:1", "redirected\n");
    // The registry, as burrow sees it, sends every blob to 127.0.0.2 (a
    // CDN); the credentials are for 127.0.0.1 alone.
    let proxy = RedirectingProxy::start(&c.reg);
    let out = c.reg.login_at(&proxy.host, &c.t.join("run"));
    assert_eq!(out.code, 0, "skopeo login: {out:?}");
    let reference = format!("docker://{}/burrow/bb:1", proxy.host);
    let out = c.burrow(&["pull", "--tls-verify=false", &reference]);
    assert_eq!(out.code, 0, "{out:?}");
    let served = proxy.served.lock().unwrap().clone();
    assert!(served.len() >= 3, "config and two layers: {served:?}");
    assert!(
        served.iter().all(|(_, auth)| !auth),
        "Authorization went to the other host: {served:?}"
    );
    // (The registry itself asks for the credentials on every request, so
    // the manifest came with them: they were sent where they belong.)
    assert_eq!(c.reg.blob_gets(), 0, "blobs went only to the other host");
    let name = format!("{}/burrow/bb:1", proxy.host);
    assert_eq!(c.burrow(&["run", "--image", &name]).ok(), "redirected\n");
}

#[test]
fn an_https_registry_is_checked_against_the_trusted_certificates() {
    let Some(reg) = Registry::start_with_tls() else {
        return;
    };
    let Some(c) = Case::on(reg, "reg-tls") else {
        return;
    };
    push_busybox(&c, "burrow/bb:1", "over tls\n");
    c.login();
    let url = c.url("burrow/bb:1");
    // The test's CA is in no store burrow trusts: refused in one line that
    // says why, nothing recorded.
    let out = c.burrow(&["pull", &url]);
    assert_eq!(out.code, 125, "{out:?}");
    assert_eq!(out.stderr.lines().count(), 1, "{out:?}");
    assert!(out.stderr.to_lowercase().contains("certificate"), "{out:?}");
    assert_eq!(c.stored(), (0, 0));
    // Trusted the way the system's store is read (SSL_CERT_FILE, which
    // OpenSSL honours too): pulled over HTTPS, and it runs.
    let out = output(
        Command::new(burrow_bin())
            .env("XDG_DATA_HOME", c.t.join("data"))
            .env("XDG_RUNTIME_DIR", c.t.join("run"))
            .env("HOME", c.t.join("run"))
            .env("SSL_CERT_FILE", c.reg.ca())
            .args(["pull", &url])
            .stdin(std::process::Stdio::null()),
    );
    assert_eq!(out.code, 0, "{out:?}");
    assert_eq!(out.stdout.trim(), c.reg.digest("burrow/bb:1"));
    let name = format!("{}/burrow/bb:1", c.reg.host);
    assert_eq!(c.burrow(&["run", "--image", &name]).ok(), "over tls\n");
}

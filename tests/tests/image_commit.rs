//! `burrow commit` and `burrow save`, as the unprivileged account: the
//! container layer of a `run --image --upper` recorded as a new image
//! (whiteouts, an opaque directory, owners and set-id bits of
//! subordinate ids), run again by burrow, saved as an oci-archive and read
//! by the real clients: `skopeo inspect` and `podman load` + `podman run`;
//! and the configuration that rides along: StopSignal, Volumes,
//! ExposedPorts and Labels, through `burrow images --inspect`.

use std::io::{BufRead, BufReader, Write};
use std::path::Path;
use std::process::{Command, Stdio};

use burrow_tests::oci::{three_layers, write_layout};
use burrow_tests::podman::{podman_usable, Podman};
use burrow_tests::*;

fn burrow(data: &Path, args: &[&str]) -> Output {
    output(
        Command::new(burrow_bin())
            .env("XDG_DATA_HOME", data)
            .args(args),
    )
}

fn run_image(data: &Path, args: &[&str]) -> Output {
    output(burrow_run().env("XDG_DATA_HOME", data).args(args))
}

/// What the sandbox changes over the three-layer image: a file removed
/// (a whiteout), a directory replaced (opaque), a new file given another
/// owner and set-user-ID, a hard link, a FIFO.
const CHANGES: &str = "set -e; b=busybox; $b rm /keep; $b rm -r /d; $b mkdir /d; \
    echo fresh > /d/only; echo hi > /new; $b chown 33:44 /new; $b chmod 4750 /new; \
    $b ln /new /newlink; $b mkfifo -m 640 /fifo";

/// What LOOK prints of a committed image: /d holds only `only`, /new and
/// /a, /new as 33:44 4750 with two links, /fifo a FIFO, /keep gone.
const SEEN: &str = "only\nhi\nagain\n33:44 4750 2\nfifo\n1\n";

/// What a sandbox of the committed image shows of those changes.
const LOOK: &str = "b=busybox; $b ls -A /d; $b cat /new /a; $b stat -c '%u:%g %a %h' /new; \
    $b stat -c %F /fifo; $b ls /keep 2>&1 | $b grep -c 'No such'";

#[test]
fn a_committed_upper_layer_runs_again_and_saves_for_podman_and_skopeo() {
    assert_unprivileged();
    if !has_subordinate_ids() {
        skipped("chown 33 in the sandbox needs subordinate ids for this user");
        return;
    }
    let t = TempDir::new("commit");
    let oci = t.join("oci");
    three_layers(&oci);
    let data = t.join("data");
    let up = t.join("up");
    let base = base_ref(&oci);
    let out = run_image(
        &data,
        &[
            "--image",
            &base,
            "--upper",
            up.to_str().unwrap(),
            "--",
            CHANGES,
        ],
    );
    assert_eq!(out.code, 0, "{out:?}");

    let out = burrow(
        &data,
        &["commit", "-m", "the test's", up.to_str().unwrap(), "mine:1"],
    );
    let id = out.ok().trim().to_string();
    assert_eq!(id.len(), 64, "{out:?}");
    let listed = burrow(&data, &["images"]);
    assert!(listed.ok().contains("localhost/mine:1"), "{listed:?}");

    // burrow runs it: the base's files under the committed layer.
    let out = run_image(&data, &["--image", "localhost/mine:1", "--", LOOK]);
    assert_eq!(out.ok(), SEEN, "{out:?}");

    // Saved, and read by skopeo: four layers, the base's command.
    let archive = t.join("mine.tar");
    let out = burrow(
        &data,
        &["save", "localhost/mine:1", archive.to_str().unwrap()],
    );
    let digest = out.ok().trim().to_string();
    assert!(digest.starts_with("sha256:"), "{out:?}");
    let oa = format!("oci-archive:{}", archive.display());
    let out = output(Command::new("skopeo").args(["inspect", &oa]));
    assert_eq!(out.code, 0, "skopeo inspect: {out:?}");
    let inspect: serde_json::Value = serde_json::from_str(&out.stdout).unwrap();
    assert_eq!(inspect["Digest"], digest.as_str(), "{inspect}");
    assert_eq!(inspect["Layers"].as_array().unwrap().len(), 4, "{inspect}");
    let out = output(Command::new("skopeo").args(["inspect", "--config", &oa]));
    let config: serde_json::Value = serde_json::from_str(&out.stdout).unwrap();
    assert_eq!(config["config"]["Entrypoint"][0], "/bin/sh", "{config}");
    let history = config["history"].as_array().unwrap();
    assert_eq!(history.last().unwrap()["comment"], "the test's", "{config}");

    // burrow reads its own archive back.
    let out = run_image(
        &data,
        &["--image", &format!("{oa}:localhost/mine:1"), "--", LOOK],
    );
    assert_eq!(out.ok(), SEEN);

    // As docker save writes it: skopeo reads the name and the layers, and
    // burrow runs it as a docker-archive.
    let docker = t.join("mine-docker.tar");
    let out = burrow(
        &data,
        &[
            "save",
            "--format",
            "docker-archive",
            "localhost/mine:1",
            docker.to_str().unwrap(),
        ],
    );
    let config_id = out.ok().trim().to_string();
    assert!(config_id.starts_with("sha256:"), "{out:?}");
    let da = format!("docker-archive:{}", docker.display());
    let out = output(Command::new("skopeo").args(["inspect", "--config", &da]));
    let docker_config: serde_json::Value = serde_json::from_str(out.ok()).unwrap();
    assert_eq!(
        docker_config["rootfs"]["diff_ids"]
            .as_array()
            .unwrap()
            .len(),
        4
    );
    let out = run_image(
        &data,
        &["--image", &format!("{da}:localhost/mine:1"), "--", LOOK],
    );
    assert_eq!(out.ok(), SEEN);

    // podman loads it and runs it with runc, rootless.
    if !podman_usable() {
        return;
    }
    let p = Podman::new(&t);
    let out = p.cmd(&["load", "-i", archive.to_str().unwrap()]);
    assert_eq!(out.code, 0, "podman load: {out:?}");
    assert!(out.stdout.contains("localhost/mine:1"), "{out:?}");
    let out = p.cmd(&["run", "--rm", "localhost/mine:1", LOOK]);
    assert_eq!(out.code, 0, "podman run: {out:?}");
    assert_eq!(out.stdout, SEEN, "{out:?}");
    // And the docker-archive, under the same name, run again.
    assert_eq!(p.cmd(&["rmi", "localhost/mine:1"]).code, 0);
    let out = p.cmd(&["load", "-i", docker.to_str().unwrap()]);
    assert_eq!(out.code, 0, "podman load: {out:?}");
    assert!(out.stdout.contains("localhost/mine:1"), "{out:?}");
    let out = p.cmd(&["run", "--rm", "localhost/mine:1", LOOK]);
    assert_eq!(out.stdout, SEEN, "{out:?}");
}

fn base_ref(oci: &Path) -> String {
    format!("oci:{}:v1", oci.display())
}

#[test]
fn commit_refuses_an_upper_in_use_one_without_an_image_and_bad_names() {
    assert_unprivileged();
    let t = TempDir::new("commit-refused");
    let oci = t.join("oci");
    three_layers(&oci);
    let data = t.join("data");
    let up = t.join("up");
    let ups = up.to_str().unwrap();
    let base = base_ref(&oci);

    // While a sandbox runs on it: refused, and nothing recorded.
    let mut running = burrow_run()
        .env("XDG_DATA_HOME", &data)
        .args([
            "--image",
            &base,
            "--upper",
            ups,
            "--",
            "echo started; read x",
        ])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut line = String::new();
    BufReader::new(running.stdout.as_mut().unwrap())
        .read_line(&mut line)
        .unwrap();
    assert_eq!(line, "started\n");
    let out = burrow(&data, &["commit", ups, "busy:1"]);
    assert_eq!(out.code, 125, "{out:?}");
    assert!(out.stderr.contains("a running sandbox uses it"), "{out:?}");
    // A second sandbox of another image on the same upper is refused, and
    // leaves the first one's base as it was.
    let other = t.join("other");
    configured_image(&other);
    let out = run_image(
        &data,
        &["--image", &base_ref(&other), "--upper", ups, "--", "true"],
    );
    assert_ne!(out.code, 0, "{out:?}");
    assert!(out.stderr.contains("in use"), "{out:?}");
    running.stdin.as_mut().unwrap().write_all(b"\n").unwrap();
    assert!(running.wait().unwrap().success());
    assert!(!burrow(&data, &["images"]).ok().contains("busy"));
    assert_eq!(burrow(&data, &["commit", ups, "first:1"]).code, 0);
    let out = burrow(&data, &["images", "--inspect", "localhost/first:1"]);
    let v: serde_json::Value = serde_json::from_str(out.ok()).unwrap();
    assert_eq!(
        v[0]["Layers"].as_array().unwrap().len(),
        4,
        "three_layers + 1: {v}"
    );

    // Ids mapped otherwise than at the run (here: its record edited) are
    // not read back as if they were the same.
    let note = t.join(".up.burrow-work/image.json");
    let mut base: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&note).unwrap()).unwrap();
    assert!(
        base["maps"].as_str().unwrap().starts_with("uid 0:"),
        "{base}"
    );
    base["maps"] = "uid 0:1:1 gid 0:1:1".into();
    std::fs::write(&note, base.to_string()).unwrap();
    let out = burrow(&data, &["commit", ups, "remapped:1"]);
    assert_eq!(out.code, 125, "{out:?}");
    assert!(out.stderr.contains("were mapped as"), "{out:?}");
    assert_eq!(
        run_image(
            &data,
            &["--image", &base_ref(&oci), "--upper", ups, "--", "true"]
        )
        .code,
        0
    );

    // Names: a digest is refused; NAME gets localhost/ and :latest.
    let out = burrow(
        &data,
        &["commit", ups, &format!("x@sha256:{}", "a".repeat(64))],
    );
    assert_eq!(out.code, 125, "{out:?}");
    assert!(out.stderr.contains("a digest"), "{out:?}");
    assert_eq!(burrow(&data, &["commit", ups, "plain"]).code, 0);
    assert!(burrow(&data, &["images"])
        .ok()
        .contains("localhost/plain:latest"));

    // An upper layer written over the host's root has no image under it,
    // and a directory that is not there is said to be missing.
    let host = t.join("host-up");
    assert_eq!(sh(&["--upper", host.to_str().unwrap()], "true").code, 0);
    for (dir, says) in [
        (host.to_str().unwrap(), "no image was run over it"),
        ("/nonexistent/up", "No such file or directory"),
    ] {
        let out = burrow(&data, &["commit", dir, "never:1"]);
        assert_eq!(out.code, 125, "{out:?}");
        assert!(out.stderr.contains(says), "{out:?}");
        assert_eq!(out.stderr.lines().count(), 1, "{out:?}");
    }
    // An upper run over an image, then over the host: its base is gone.
    assert_eq!(sh(&["--upper", ups], "true").code, 0);
    let out = burrow(&data, &["commit", ups, "never:1"]);
    assert!(out.stderr.contains("no image was run over it"), "{out:?}");
    let out = burrow(
        &data,
        &[
            "save",
            "--format",
            "tarball",
            "localhost/plain:latest",
            t.join("x").to_str().unwrap(),
        ],
    );
    assert_eq!(out.code, 125, "{out:?}");
    assert!(out.stderr.contains("docker-archive"), "{out:?}");
    assert!(!t.join("x").exists());
}

/// A one-layer image of busybox-static as /bin/sh and `more` entries,
/// with `/bin/sh -c` as Entrypoint and `config` beside it.
fn busybox_image(dir: &Path, more: &[(&'static str, &[u8])], config: serde_json::Value) {
    let mut layer = vec![
        ("bin/", vec![]),
        ("bin/busybox", std::fs::read("/bin/busybox").unwrap()),
        ("bin/sh", b"->busybox".to_vec()),
    ];
    layer.extend(more.iter().map(|(p, d)| (*p, d.to_vec())));
    let mut config = config;
    config["Entrypoint"] = serde_json::json!(["/bin/sh", "-c"]);
    write_layout(dir, &[layer], serde_json::json!({ "config": config }));
}

/// An image whose configuration says StopSignal SIGUSR1, a volume at
/// /data, port 8080/tcp and a label.
fn configured_image(dir: &Path) {
    busybox_image(
        dir,
        &[("data/@33:33:0750", b""), ("data/from-image", b"x")],
        serde_json::json!({
            "StopSignal": "SIGUSR1",
            "Volumes": {"/data": {}},
            "ExposedPorts": {"8080/tcp": {}},
            "Labels": {"org.example.role": "test"},
        }),
    );
}

/// SIGTERM to burrow once the command has trapped USR1 and TERM: which
/// trap ran, and the status.
fn sigterm_to(data: &Path, args: &[&str]) -> (String, i32) {
    let mut child = burrow_run()
        .env("XDG_DATA_HOME", data)
        .args(args)
        .arg("--")
        .arg(
            "trap 'echo got-usr1; exit 7' USR1; trap 'echo got-term; exit 8' TERM; \
             echo ready; while :; do busybox sleep 0.1; done",
        )
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stdout = BufReader::new(child.stdout.take().unwrap());
    let mut line = String::new();
    stdout.read_line(&mut line).unwrap();
    assert_eq!(line, "ready\n");
    let pid = nix::unistd::Pid::from_raw(child.id() as i32);
    nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGTERM).unwrap();
    let mut rest = String::new();
    std::io::Read::read_to_string(&mut stdout, &mut rest).unwrap();
    let status = wait_timeout(&mut child, std::time::Duration::from_secs(60));
    (rest, exit_code(status))
}

#[test]
fn stop_signal_volumes_and_exposed_ports_are_the_images() {
    assert_unprivileged();
    let t = TempDir::new("img-config");
    let oci = t.join("oci");
    configured_image(&oci);
    let data = t.join("data");
    let image = base_ref(&oci);

    // SIGTERM to burrow reaches the command as the image's StopSignal;
    // --stop-signal says otherwise.
    let (out, code) = sigterm_to(&data, &["--image", &image]);
    assert_eq!((out.as_str(), code), ("got-usr1\n", 7));
    let (out, code) = sigterm_to(&data, &["--image", &image, "--stop-signal", "TERM"]);
    assert_eq!((out.as_str(), code), ("got-term\n", 8));
    // A stop signal the command ignores: the second SIGTERM kills it.
    let mut child = burrow_run()
        .env("XDG_DATA_HOME", &data)
        .args(["--image", &image, "--"])
        .arg("trap 'echo ignored' USR1; echo ready; while :; do busybox sleep 0.1; done")
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let pid = nix::unistd::Pid::from_raw(child.id() as i32);
    let mut stdout = BufReader::new(child.stdout.take().unwrap());
    for expect in ["ready\n", "ignored\n"] {
        let mut line = String::new();
        stdout.read_line(&mut line).unwrap();
        assert_eq!(line, expect);
        nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGTERM).unwrap();
    }
    let status = wait_timeout(&mut child, std::time::Duration::from_secs(60));
    assert_eq!(exit_code(status), 137);
    let out = run_image(
        &data,
        &["--image", &image, "--stop-signal", "SIGNOPE", "--", "true"],
    );
    assert_eq!(out.code, 125, "{out:?}");
    assert!(out.stderr.contains("--stop-signal"), "{out:?}");

    // The volume is a private tmpfs (the image's files there hidden, as
    // an empty volume would); a --bind there replaces it.
    let look = "busybox awk '$2 == \"/data\" {print $3}' /proc/mounts; busybox ls -A /data; \
                echo v > /data/written";
    let out = run_image(&data, &["--image", &image, "--", look]);
    assert_eq!(out.ok(), "tmpfs\n");
    // Owned and moded as the image's directory, as podman makes a volume
    // (uid 33 has an id only with subordinate ranges).
    let out = run_image(
        &data,
        &["--image", &image, "--", "busybox stat -c '%u:%g %a' /data"],
    );
    let owner = if has_subordinate_ids() {
        "33:33"
    } else {
        "0:0"
    };
    assert_eq!(out.ok(), format!("{owner} 750\n"));
    let host = t.join("host-data");
    std::fs::create_dir(&host).unwrap();
    let bind = format!("{}", host.display());
    let out = run_image(
        &data,
        &["--image", &image, "--bind", &bind, "/data", "--", look],
    );
    assert_eq!(out.code, 0, "{out:?}");
    assert_eq!(
        std::fs::read_to_string(host.join("written")).unwrap(),
        "v\n"
    );

    // Volumes an image may not have: refused in one line naming them.
    for (i, bad) in ["/proc", "../x", "/dev/pts"].iter().enumerate() {
        let dir = t.join(&format!("bad-volume-{i}"));
        busybox_image(&dir, &[], serde_json::json!({ "Volumes": { *bad: {} } }));
        let out = run_image(&data, &["--image", &base_ref(&dir), "--", "true"]);
        assert_eq!(out.code, 125, "{bad}: {out:?}");
        assert!(out.stderr.contains("the image's Volume"), "{bad}: {out:?}");
        assert_eq!(out.stderr.lines().count(), 1, "{out:?}");
    }

    // Committed (so the store names it), inspected: the configuration
    // carried over. The port is listed, not published.
    let up = t.join("up");
    let ups = up.to_str().unwrap();
    assert_eq!(
        run_image(&data, &["--image", &image, "--upper", ups, "--", "true"]).code,
        0
    );
    assert_eq!(burrow(&data, &["commit", ups, "cfg:1"]).code, 0);
    let out = burrow(&data, &["images", "--inspect", "localhost/cfg:1"]);
    let v: serde_json::Value = serde_json::from_str(out.ok()).unwrap();
    let c = &v[0]["Config"];
    assert_eq!(v[0]["Name"], "localhost/cfg:1", "{v}");
    assert_eq!(c["StopSignal"], "SIGUSR1", "{v}");
    assert_eq!(c["Volumes"], serde_json::json!(["/data"]), "{v}");
    assert_eq!(c["ExposedPorts"], serde_json::json!(["8080/tcp"]), "{v}");
    assert_eq!(c["Labels"]["org.example.role"], "test", "{v}");
    assert_eq!(v[0]["Layers"].as_array().unwrap().len(), 2, "{v}");
    let out = burrow(&data, &["images", "--inspect", "localhost/absent:1"]);
    assert_eq!(out.code, 125, "{out:?}");
    assert!(out.stderr.contains("not in the store"), "{out:?}");
}

/// A busybox image whose `lib` and `lib64` lead into `/usr`, so that the
/// host's `/usr` bound there brings python3 in.
fn image_for_host_usr(dir: &Path) {
    busybox_image(
        dir,
        &[
            ("usr/", b""),
            ("lib", b"->usr/lib"),
            ("lib64", b"->usr/lib64"),
            ("tmp/", b""),
        ],
        serde_json::json!({}),
    );
}

/// The xattrs of `name` in the layer tars of an oci-archive.
fn archived_xattrs(archive: &Path, name: &str) -> Vec<(String, Vec<u8>)> {
    let mut found = Vec::new();
    let mut outer = tar::Archive::new(std::fs::File::open(archive).unwrap());
    for blob in outer.entries().unwrap() {
        let mut blob = blob.unwrap();
        let mut data = Vec::new();
        std::io::Read::read_to_end(&mut blob, &mut data).unwrap();
        let mut inner = tar::Archive::new(&data[..]);
        let Ok(entries) = inner.entries() else {
            continue;
        };
        for e in entries {
            let Ok(mut e) = e else { break };
            if e.path().is_ok_and(|p| p == Path::new(name)) {
                if let Ok(Some(exts)) = e.pax_extensions() {
                    for x in exts.flatten() {
                        found.push((x.key().unwrap_or("").to_string(), x.value_bytes().to_vec()));
                    }
                }
            }
        }
    }
    found
}

#[test]
fn a_file_capability_set_in_the_sandbox_is_committed_and_saved() {
    // security.capability set by root inside (the kernel passes it to
    // burrowfs, which keeps it as its record), read back, committed,
    // shown again by a sandbox of the new image and written by save as
    // the PAX xattr an image carries.
    assert_unprivileged();
    let t = TempDir::new("commit-caps");
    let oci = t.join("oci");
    image_for_host_usr(&oci);
    let data = t.join("data");
    let up = t.join("up");
    let ups = up.to_str().unwrap();
    let py = "import os; cap = bytes([1,0,0,2, 0,32,0,0]) + bytes(12); \
              open('/ping', 'w').write('x'); \
              os.setxattr('/ping', 'security.capability', cap); \
              print(os.getxattr('/ping', 'security.capability') == cap, \
                    sorted(os.listxattr('/ping')))";
    let base = base_ref(&oci);
    let out = run_image(
        &data,
        &[
            "--image",
            &base,
            "--upper",
            ups,
            "--ro-bind",
            "/usr",
            "/usr",
            "--",
            &format!("python3 -c \"{py}\""),
        ],
    );
    assert_eq!(out.ok(), "True ['security.capability']\n", "{out:?}");
    // On disk, the upper holds burrow's record, not a real capability.
    let record = xattr::get(up.join("ping"), "user.burrow.xattr.security.capability").unwrap();
    assert_eq!(record.as_deref().map(<[u8]>::len), Some(20));
    assert!(xattr::list(up.join("ping"))
        .unwrap()
        .all(|n| !n.to_string_lossy().starts_with("security.")));

    assert_eq!(burrow(&data, &["commit", ups, "caps:1"]).code, 0);
    let look = "python3 -c \"import os; print(os.getxattr('/ping', 'security.capability').hex())\"";
    let out = run_image(
        &data,
        &[
            "--image",
            "localhost/caps:1",
            "--ro-bind",
            "/usr",
            "/usr",
            "--",
            look,
        ],
    );
    assert_eq!(
        out.ok(),
        "0100000200200000000000000000000000000000\n",
        "{out:?}"
    );
    let archive = t.join("caps.tar");
    let out = burrow(
        &data,
        &["save", "localhost/caps:1", archive.to_str().unwrap()],
    );
    assert_eq!(out.code, 0, "{out:?}");
    let found = archived_xattrs(&archive, "ping");
    assert_eq!(found.len(), 1, "{found:?}");
    assert_eq!(found[0].0, "SCHILY.xattr.security.capability");
    assert_eq!(found[0].1.len(), 20);
}

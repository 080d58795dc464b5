//! `burrow run --image`: OCI layouts written by podman itself (`podman
//! import` of a busybox-static rootfs, `podman save --format oci-dir`) and
//! by this test's own writer (three layers with whiteouts and an opaque
//! directory), unpacked into the caller's store and run, as the
//! unprivileged account.

use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use burrow_tests::oci::{three_layers, write_layout};
use burrow_tests::podman::{podman_usable, Podman};
use burrow_tests::*;

fn run_image(store: &Path, reference: &str, args: &[&str]) -> Output {
    output(
        burrow_run()
            .env("XDG_DATA_HOME", store)
            .args(["--image", reference])
            .args(args)
            .stdin(std::process::Stdio::null()),
    )
}

/// The unpacked layers in the store under `data`.
fn stored_layers(data: &Path) -> Vec<PathBuf> {
    std::fs::read_dir(data.join("burrow/layers/sha256"))
        .map(|d| d.map(|e| e.unwrap().path()).collect())
        .unwrap_or_default()
}

#[test]
fn an_image_podman_saved_runs_with_its_cmd_env_and_working_dir() {
    if !podman_usable() {
        return;
    }
    let t = TempDir::new("img-podman");
    let p = Podman::new(&t);
    p.import_busybox_as(
        "localhost/bb:2",
        &[
            "ENV GREETING=hello from env",
            "WORKDIR /etc",
            "CMD [\"cat\", \"image-file\"]",
        ],
    );
    let oci = t.join("oci");
    let out = p.cmd(&[
        "save",
        "--format",
        "oci-dir",
        "-o",
        oci.to_str().unwrap(),
        "localhost/bb:2",
    ]);
    assert_eq!(out.code, 0, "podman save: {out:?}");
    let store = t.join("store");
    let reference = format!("oci:{}:localhost/bb:2", oci.display());

    // The image's Cmd, in its WorkingDir.
    assert_eq!(run_image(&store, &reference, &[]).ok(), "from the image\n");
    let layers = stored_layers(&store);
    assert_eq!(layers.len(), 1, "{layers:?}");
    let layer_ino = std::fs::metadata(&layers[0]).unwrap().ino();

    // A COMMAND replaces Cmd; the image's Env, then --setenv; root inside.
    let out = run_image(
        &store,
        &reference,
        &[
            "--setenv",
            "OTHER",
            "x",
            "--",
            "sh",
            "-c",
            "pwd; echo $GREETING; echo $OTHER; id -u",
        ],
    );
    assert_eq!(out.ok(), "/etc\nhello from env\nx\n0\n");

    // Writes stay in the sandbox's private upper layer: the next sandbox
    // and the store see the image as it was.
    let out = run_image(
        &store,
        &reference,
        &[
            "--",
            "sh",
            "-c",
            "echo changed > /etc/image-file && cat /etc/image-file && rm /etc/image-file && ls /etc",
        ],
    );
    assert_eq!(out.ok(), "changed\n");
    assert_eq!(run_image(&store, &reference, &[]).ok(), "from the image\n");
    assert_eq!(
        std::fs::read_to_string(layers[0].join("etc/image-file")).unwrap(),
        "from the image\n"
    );
    // Unpacked once: the same directory serves every run.
    assert_eq!(stored_layers(&store), layers);
    assert_eq!(std::fs::metadata(&layers[0]).unwrap().ino(), layer_ino);
}

#[test]
fn whiteouts_and_opaque_directories_apply_across_three_layers() {
    let t = TempDir::new("img-layers");
    let oci = t.join("oci");
    three_layers(&oci);
    let store = t.join("store");
    let out = run_image(&store, &format!("oci:{}:v1", oci.display()), &[]);
    assert_eq!(out.ok(), "/d:\nnew\n\n/e:\nagain\nkeep\n");
    assert_eq!(stored_layers(&store).len(), 3);
    // An Entrypoint stays; the COMMAND takes Cmd's place.
    let out = run_image(&store, &format!("oci:{}", oci.display()), &["echo given"]);
    assert_eq!(out.ok(), "given\n");
    // --entrypoint (podman's): one word, a JSON array, or none; the
    // image's Cmd then no longer applies.
    let image = format!("oci:{}", oci.display());
    for (flags, want) in [
        (vec!["--entrypoint", "/bin/cat", "--", "/a"], "again\n"),
        (
            vec!["--entrypoint", r#"["/bin/sh", "-c", "echo $0"]"#, "--", "x"],
            "x\n",
        ),
        (
            vec!["--entrypoint", "", "--", "/bin/cat", "/keep"],
            "keep\n",
        ),
        // (cat of an empty stdin: Cmd would have been a file it lacks)
        (vec!["--entrypoint", "/bin/cat"], ""),
    ] {
        let out = run_image(&store, &image, &flags);
        assert_eq!(out.ok(), want, "{flags:?}");
    }
    // '[""]' is none too; what is not a JSON array of strings is one word.
    let out = run_image(
        &store,
        &image,
        &["--entrypoint", r#"[""]"#, "--", "/bin/cat", "/keep"],
    );
    assert_eq!(out.ok(), "keep\n");
    let out = run_image(&store, &image, &["--entrypoint", "[1]", "--", "x"]);
    assert_eq!(out.code, 127, "{out:?}");
    assert!(out.stderr.contains("[1]"), "{out:?}");
}

/// The attack: `--bind $HOME` with the store (and `--upper`) in $HOME
/// would let the sandbox rewrite layers every sandbox shares, or the
/// upper layer behind the union's back. They show read-only there.
#[test]
fn a_read_write_bind_holding_the_store_or_the_upper_cannot_write_them() {
    assert_unprivileged();
    let t = TempDir::new("img-guard");
    let oci = t.join("oci");
    three_layers(&oci);
    let reference = format!("oci:{}:v1", oci.display());
    let home = t.join("home");
    let data = home.join(".local/share");
    std::fs::create_dir_all(&data).unwrap();
    let upper = home.join("up");
    let home_s = home.to_str().unwrap();
    let attack = "for f in /h/.local/share/burrow/layers/sha256/*/keep; do \
                    echo evil > $f && echo WROTE $f; done; \
                  echo x > /h/.local/share/burrow/planted && echo PLANTED; \
                  echo x > /h/up/planted && echo PLANTED-UPPER; \
                  echo x > /h/.up.burrow-work/planted && echo PLANTED-WORK; \
                  busybox umount /h/.local/share/burrow 2>/dev/null && echo UNMOUNTED; \
                  echo free > /h/free; cat /keep";
    let out = run_image(
        &data,
        &reference,
        &[
            "--upper",
            upper.to_str().unwrap(),
            "--bind",
            home_s,
            "/h",
            "--",
            attack,
        ],
    );
    assert_eq!(out.ok(), "keep\n", "{out:?}");
    // The bind itself stays writable; the layers and upper are untouched.
    assert_eq!(
        std::fs::read_to_string(home.join("free")).unwrap(),
        "free\n"
    );
    let layers = stored_layers(&data);
    assert_eq!(layers.len(), 3);
    let keep = layers.iter().filter(|l| l.join("keep").exists()).count();
    assert_eq!(keep, 1);
    for l in &layers {
        if let Ok(text) = std::fs::read_to_string(l.join("keep")) {
            assert_eq!(text, "keep\n");
        }
    }
    assert!(!data.join("burrow/planted").exists());
    assert!(!upper.join("planted").exists());

    // A bind of the store's own parts: refused, as is a holding bind when
    // the command keeps CAP_SYS_ADMIN (it could unmount the cover).
    let layers_dir = data.join("burrow/layers");
    for (args, says) in [
        (
            vec!["--bind", layers_dir.to_str().unwrap(), "/l"],
            "lies in the image store",
        ),
        (
            vec!["--cap-add", "SYS_ADMIN", "--bind", home_s, "/h"],
            "CAP_SYS_ADMIN",
        ),
    ] {
        let mut all = args.clone();
        all.extend(["--", "echo ran"]);
        let out = run_image(&data, &reference, &all);
        assert_ne!(out.code, 0, "{out:?}");
        assert!(out.stderr.contains(says), "{args:?}: {out:?}");
        assert!(!out.stdout.contains("ran"), "{out:?}");
    }
}

#[test]
fn prune_keeps_the_layers_a_running_sandbox_uses_and_removes_them_after() {
    use std::io::{BufRead, Write};
    let t = TempDir::new("img-prune");
    let oci = t.join("oci");
    three_layers(&oci);
    let store = t.join("store");
    let reference = format!("oci:{}:v1", oci.display());
    let prune = || {
        output(
            std::process::Command::new(burrow_bin())
                .env("XDG_DATA_HOME", &store)
                .args(["image", "prune"]),
        )
    };
    let mut running = burrow_run()
        .env("XDG_DATA_HOME", &store)
        .args(["--image", &reference, "--"])
        .arg("echo ready; read line; cat /keep")
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut stdout = std::io::BufReader::new(running.stdout.take().unwrap());
    let mut line = String::new();
    stdout.read_line(&mut line).unwrap();
    assert_eq!(line, "ready\n");

    // No image names the layers, but the sandbox runs on them.
    let out = prune();
    assert_eq!(out.ok(), "", "nothing removed while in use");
    assert_eq!(stored_layers(&store).len(), 3);

    running.stdin.take().unwrap().write_all(b"go\n").unwrap();
    let mut rest = String::new();
    std::io::Read::read_to_string(&mut stdout, &mut rest).unwrap();
    assert!(wait_timeout(&mut running, RUN_TIMEOUT).success());
    assert_eq!(rest, "keep\n", "the layers were intact to the end");

    let out = prune();
    assert_eq!(
        out.ok()
            .lines()
            .filter(|l| l.starts_with("Deleted: sha256:"))
            .count(),
        3
    );
    assert!(stored_layers(&store).is_empty());
    let claims = std::fs::read_dir(store.join("burrow/using"))
        .unwrap()
        .count();
    assert_eq!(claims, 0, "the sandbox's claim went with it");
    // The next run unpacks them again.
    assert_eq!(run_image(&store, &reference, &["cat /keep"]).ok(), "keep\n");
}

#[test]
fn a_corrupted_layer_is_refused_and_nothing_is_unpacked() {
    let t = TempDir::new("img-corrupt");
    let oci = t.join("oci");
    let blobs = three_layers(&oci);
    // One byte of the top layer changed, its size kept.
    let mut data = std::fs::read(&blobs[2]).unwrap();
    data[600] ^= 1;
    std::fs::write(&blobs[2], data).unwrap();
    let store = t.join("store");
    let out = run_image(&store, &format!("oci:{}:v1", oci.display()), &["true"]);
    assert_eq!(out.code, 125, "{out:?}");
    assert!(out.stderr.contains("digest is sha256:"), "{out:?}");
    assert_eq!(out.stderr.lines().count(), 1, "{out:?}");
    // The layers below it were verified and kept; the bad one is nowhere,
    // not even half-unpacked.
    let kept = stored_layers(&store);
    assert_eq!(kept.len(), 2, "{kept:?}");
    assert!(kept
        .iter()
        .all(|p| !p.file_name().unwrap().to_string_lossy().starts_with('.')));
}

#[test]
fn references_burrow_cannot_read_are_refused_in_one_line() {
    let t = TempDir::new("img-refs");
    for (reference, says) in [
        ("alpine", "as docker://docker.io/library/alpine"),
        (
            "docker://busybox:1",
            "as docker://docker.io/library/busybox",
        ),
        ("containers-storage:x", "not supported yet"),
        (
            "localhost:5000/x:1",
            "not in the store; pull it with `burrow pull",
        ),
        ("oci:/nonexistent/layout", "not an OCI layout"),
    ] {
        let out = run_image(&t.join("store"), reference, &["true"]);
        assert_eq!(out.code, 125, "{reference}: {out:?}");
        assert!(out.stderr.contains(says), "{reference}: {out:?}");
        assert_eq!(out.stderr.lines().count(), 1, "{reference}: {out:?}");
    }
    let oci = t.join("oci");
    three_layers(&oci);
    let out = run_image(
        &t.join("store"),
        &format!("oci:{}:v2", oci.display()),
        &["true"],
    );
    assert_eq!(out.code, 125, "{out:?}");
    assert!(
        out.stderr.contains("no image tagged \"v2\" (tags: \"v1\")"),
        "{out:?}"
    );
}

#[test]
fn archives_podman_saves_run_as_oci_and_docker_archives() {
    if !podman_usable() {
        return;
    }
    let t = TempDir::new("img-archives");
    let p = Podman::new(&t);
    p.import_busybox_as("localhost/bb:3", &["CMD [\"cat\", \"/etc/image-file\"]"]);
    let store = t.join("store");
    for format in ["oci-archive", "docker-archive"] {
        let file = t.join(&format!("{format}.tar"));
        let out = p.cmd(&[
            "save",
            "--format",
            format,
            "-o",
            file.to_str().unwrap(),
            "localhost/bb:3",
        ]);
        assert_eq!(out.code, 0, "podman save --format {format}: {out:?}");
        for reference in [
            format!("{format}:{}", file.display()),
            format!("{format}:{}:localhost/bb:3", file.display()),
        ] {
            assert_eq!(
                run_image(&store, &reference, &[]).ok(),
                "from the image\n",
                "{reference}"
            );
        }
        let out = run_image(
            &store,
            &format!("{format}:{}:localhost/other:1", file.display()),
            &["true"],
        );
        assert_eq!(out.code, 125, "{out:?}");
        assert!(out.stderr.contains("localhost/bb:3"), "{out:?}");
    }
    // The same layer, whichever archive brought it, is stored once; the
    // archives' scratch directories are gone.
    assert_eq!(stored_layers(&store).len(), 1);
    let scratch = std::fs::read_dir(store.join("burrow/tmp")).unwrap().count();
    assert_eq!(scratch, 0);
}

#[test]
fn a_docker_archive_naming_files_outside_it_is_refused() {
    let t = TempDir::new("img-docker-hostile");
    let secret = t.join("secret.json");
    std::fs::write(&secret, "{}").unwrap();
    for config in ["../secret.json".to_string(), secret.display().to_string()] {
        let manifest = serde_json::json!([{"Config": config, "RepoTags": ["x:1"], "Layers": []}]);
        let data = serde_json::to_vec(&manifest).unwrap();
        let mut b = tar::Builder::new(Vec::new());
        let mut h = tar::Header::new_gnu();
        h.set_size(data.len() as u64);
        h.set_mode(0o644);
        b.append_data(&mut h, "manifest.json", &data[..]).unwrap();
        let file = t.join("hostile.tar");
        std::fs::write(&file, b.into_inner().unwrap()).unwrap();
        let out = run_image(
            &t.join("store"),
            &format!("docker-archive:{}", file.display()),
            &["true"],
        );
        assert_eq!(out.code, 125, "{config}: {out:?}");
        assert!(
            out.stderr.contains("not a plain name inside the archive"),
            "{config}: {out:?}"
        );
        assert_eq!(out.stderr.lines().count(), 1, "{out:?}");
    }
}

/// Owners, set-id bits and device nodes the unprivileged caller cannot
/// create are recorded at unpacking and shown by burrowfs as the image
/// says: a file of uid 33 is 33's inside where 33 is mapped (subordinate
/// ranges) and nobody's where it is not; a chown inside changes what it
/// shows. On disk the store keeps the caller's files without set-id bits.
#[test]
fn image_owners_modes_and_device_nodes_show_as_the_image_says() {
    use std::os::unix::fs::PermissionsExt;
    assert_unprivileged();
    let t = TempDir::new("image-owners");
    let busybox = std::fs::read("/bin/busybox").unwrap();
    let s = |t: &str| t.as_bytes().to_vec();
    write_layout(
        &t.join("img"),
        &[
            vec![
                ("bin/", vec![]),
                ("bin/busybox", busybox),
                ("bin/sh", s("->busybox")),
                ("bin/stat", s("->busybox")),
                ("bin/chown", s("->busybox")),
                ("bin/chmod", s("->busybox")),
            ],
            vec![
                ("srv/www@33:33:0640", s("site\n")),
                ("usr/bin/su@0:0:4755", s("#!/bin/sh\n")),
                ("devs/null@0:0:0666:c1,3", vec![]),
                ("home/alice/@1000:1000:0700", vec![]),
            ],
        ],
        serde_json::json!({"config": {}}),
    );
    let reference = format!("oci:{}:v1", t.join("img").display());
    let show = "stat -c '%n %u:%g %a %F %t,%T' /srv/www /usr/bin/su /devs/null /home/alice";
    let data = t.join("data");

    let unmapped = run_image(
        &data,
        &reference,
        &["--map-users", "none", "--", "sh", "-c", show],
    );
    assert_eq!(
        unmapped.ok().lines().next(),
        Some("/srv/www 65534:65534 640 regular file 0,0"),
        "{unmapped:?}"
    );
    // On disk: the caller's own files, no set-id bit anywhere.
    for layer in stored_layers(&data) {
        for rel in ["usr/bin/su", "srv/www", "devs/null"] {
            if let Ok(m) = std::fs::symlink_metadata(layer.join(rel)) {
                assert!(m.is_file(), "{rel}: {m:?}");
                assert_eq!(m.permissions().mode() & 0o6000, 0, "{rel}");
                assert_eq!(m.uid(), nix::unistd::getuid().as_raw(), "{rel}");
            }
        }
    }

    if !has_subordinate_ids() {
        skipped("showing uid 33 as 33 needs subordinate ids mapped");
        return;
    }
    let script = format!(
        "{show}; chown 5:6 /srv/www && chmod 4711 /srv/www && stat -c '%u:%g %a' /srv/www; \
         chown 7 /usr/bin/su && stat -c '%u:%g %a' /usr/bin/su"
    );
    let mapped = run_image(&data, &reference, &["--", "sh", "-c", &script]);
    assert_eq!(
        mapped.ok(),
        "/srv/www 33:33 640 regular file 0,0\n\
         /usr/bin/su 0:0 4755 regular file 0,0\n\
         /devs/null 0:0 666 character special file 1,3\n\
         /home/alice 1000:1000 700 directory 0,0\n\
         5:6 4711\n\
         7:0 755\n",
        "{mapped:?}"
    );
}

/// An image's User, by name, resolved in the image's own /etc/passwd and
/// /etc/group: the command runs as that uid, its groups and its HOME, with
/// no capabilities and no way into root's files; `--user` overrides it; an
/// unknown name or an id the sandbox does not map is a one-line error.
#[test]
fn an_image_user_runs_the_command_as_that_user() {
    assert_unprivileged();
    let t = TempDir::new("image-user");
    let busybox = std::fs::read("/bin/busybox").unwrap();
    let s = |t: &str| t.as_bytes().to_vec();
    write_layout(
        &t.join("img"),
        &[vec![
            ("bin/", vec![]),
            ("bin/busybox", busybox),
            ("bin/sh", s("->busybox")),
            ("bin/id", s("->busybox")),
            ("bin/cat", s("->busybox")),
            ("bin/grep", s("->busybox")),
            (
                "etc/passwd",
                s("root:x:0:0:root:/root:/bin/sh\napp:x:1000:1000::/home/app:/bin/sh\n"),
            ),
            ("etc/group", s("root:x:0:\napp:x:1000:\nstaff:x:50:app\n")),
            ("root/@0:0:0700", vec![]),
            ("root/secret@0:0:0600", s("secret\n")),
            ("home/app/@1000:1000:0700", vec![]),
            ("home/app/mine@1000:1000:0600", s("mine\n")),
        ]],
        serde_json::json!({"config": {"User": "app", "Entrypoint": ["/bin/sh"]}}),
    );
    let reference = format!("oci:{}:v1", t.join("img").display());
    let data = t.join("data");
    let script = "id -u; id -g; id -G; echo $HOME; cat /home/app/mine; \
                  grep CapEff /proc/self/status; cat /root/secret || echo denied";

    // Refusals first: they need no subordinate ids.
    for (args, says) in [
        (
            vec!["--user", "nobody-here"],
            "\"nobody-here\" is not in the sandbox's /etc/passwd",
        ),
        (
            vec!["--user", "app:nogroup"],
            "\"nogroup\" is not in the sandbox's /etc/group",
        ),
        (vec!["--user", "a:b:c"], "not USER[:GROUP]"),
        (
            vec!["--map-users", "none"],
            "1000 is not mapped in the sandbox",
        ),
    ] {
        let mut all = args.clone();
        all.extend(["--", "-c", "echo ran"]);
        let out = run_image(&data, &reference, &all);
        assert_ne!(out.code, 0, "{args:?}: {out:?}");
        assert!(out.stderr.contains(says), "{args:?}: {out:?}");
        assert_eq!(out.stderr.lines().count(), 1, "{args:?}: {out:?}");
        assert!(!out.stdout.contains("ran"), "{out:?}");
    }
    // --user 0 overrides the image's: root inside, with HOME=/root.
    let out = run_image(
        &data,
        &reference,
        &[
            "--user",
            "0",
            "--",
            "-c",
            "id -u; echo $HOME; cat /root/secret",
        ],
    );
    assert_eq!(out.ok(), "0\n/root\nsecret\n", "{out:?}");

    if !has_subordinate_ids() {
        skipped("running as uid 1000 inside needs subordinate ids mapped");
        return;
    }
    let out = run_image(&data, &reference, &["--", "-c", script]);
    assert_eq!(
        out.ok(),
        "1000\n1000\n1000 50\n/home/app\nmine\nCapEff:\t0000000000000000\ndenied\n",
        "{out:?}"
    );
    // An explicit group: that one, no supplementary groups; HOME as set.
    let out = run_image(
        &data,
        &reference,
        &[
            "--user",
            "app:staff",
            "--setenv",
            "HOME",
            "/x",
            "--",
            "-c",
            "id -u; id -G; echo $HOME",
        ],
    );
    assert_eq!(out.ok(), "1000\n50\n/x\n", "{out:?}");
}

#[test]
fn the_stores_budget_stops_an_image_that_does_not_fit() {
    assert_unprivileged();
    let t = TempDir::new("img-budget");
    let oci = t.join("oci");
    three_layers(&oci);
    let reference = format!("oci:{}:v1", oci.display());
    let data = t.join("data");
    // The bottom layer holds busybox (about 2 MB): past a 1 MiB budget.
    for (budget, says) in [
        (
            "1M",
            "unpacking stopped at the store's budget (BURROW_STORE_BUDGET)",
        ),
        ("lots", "BURROW_STORE_BUDGET=\"lots\": not a size"),
    ] {
        let out = output(
            burrow_run()
                .env("XDG_DATA_HOME", &data)
                .env("BURROW_STORE_BUDGET", budget)
                .args(["--image", &reference, "--", "echo ran"]),
        );
        assert_eq!(out.code, 125, "{out:?}");
        assert!(out.stderr.contains(says), "{out:?}");
        assert_eq!(out.stderr.lines().count(), 1, "{out:?}");
        assert!(stored_layers(&data).is_empty());
    }
    let out = output(
        burrow_run()
            .env("XDG_DATA_HOME", &data)
            .env("BURROW_STORE_BUDGET", "64M")
            .args(["--image", &reference, "--", "echo ran"]),
    );
    assert_eq!(out.ok(), "ran\n");
    assert_eq!(stored_layers(&data).len(), 3);
}

//! burrow-runtime, the OCI front end: bundles written by runc's own `spec
//! --rootless` (the real client of the format), run as the unprivileged
//! account; what burrow cannot honour is refused by name.

use burrow_tests::*;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

fn runtime_bin() -> PathBuf {
    burrow_bin().with_file_name("burrow-runtime")
}

/// A bundle in `dir`: a busybox root (with the mount points a read-only
/// root needs) and runc's rootless config.json, edited by `edit`.
fn bundle(dir: &Path, edit: impl FnOnce(&mut serde_json::Value)) {
    let bin = dir.join("rootfs/bin");
    std::fs::create_dir_all(&bin).unwrap();
    for d in ["proc", "dev", "sys", "tmp", "etc", "data"] {
        std::fs::create_dir_all(dir.join("rootfs").join(d)).unwrap();
    }
    std::fs::copy("/bin/busybox", bin.join("busybox")).expect("busybox-static (setup-host.sh)");
    for applet in [
        "sh", "echo", "hostname", "id", "wc", "grep", "touch", "ls", "readlink", "test",
    ] {
        std::os::unix::fs::symlink("busybox", bin.join(applet)).unwrap();
    }
    let out = Command::new("runc")
        .args(["spec", "--rootless"])
        .current_dir(dir)
        .output()
        .expect("runc (setup-host.sh)");
    assert!(out.status.success(), "runc spec: {out:?}");
    let path = dir.join("config.json");
    let mut c: serde_json::Value = serde_json::from_slice(&std::fs::read(&path).unwrap()).unwrap();
    c["process"]["terminal"] = false.into();
    edit(&mut c);
    std::fs::write(&path, serde_json::to_vec_pretty(&c).unwrap()).unwrap();
}

fn run(dir: &Path, id: &str) -> Output {
    assert_unprivileged();
    output(
        Command::new(runtime_bin())
            .args([
                "--log",
                dir.join("log.json").to_str().unwrap(),
                "--log-format",
                "json",
            ])
            .args(["run", "--bundle", dir.to_str().unwrap(), id])
            .stdin(Stdio::null()),
    )
}

/// runc's rootless spec, as it comes (but for the terminal and the
/// command): its hostname, the caller as root, its three capabilities and
/// open-file limit, a read-only root, /proc/sys read-only and /proc/keys
/// masked, the host's network namespace (it asks for none), a umask, /dev/shm
/// noexec and of its size; environment values that look like flags stay
/// values; a relative bind source is the bundle's; the exit status is the
/// command's.
#[test]
fn a_bundle_of_runc_spec_runs_as_its_config_says() {
    let t = TempDir::new("runtime-run");
    std::fs::create_dir(t.join("data")).unwrap();
    bundle(t.path(), |c| {
        c["process"]["args"] = serde_json::json!([
            "sh",
            "-c",
            "echo hello; hostname; id -u; test -c /proc/keys && echo keys-masked; \
             grep -c ' /proc/sys ro,' /proc/self/mountinfo; touch /x 2>/dev/null || echo root-ro; \
             ulimit -n; grep CapEff /proc/self/status; readlink /proc/self/ns/net; \
             echo from-the-bundle > /data/out; echo \"$A $B\"; \
             grep ' /dev/shm ' /proc/self/mountinfo | grep -q 'noexec.*size=65536k' && echo shm-as-asked; \
             umask; \
             exit 3"
        ]);
        c["process"]["user"]["umask"] = 0o027.into();
        // Values that look like flags stay values.
        c["process"]["env"]
            .as_array_mut()
            .unwrap()
            .extend(["A=-x".into(), "B=--".into()]);
        // A bind mount whose source is relative: the bundle's.
        c["mounts"].as_array_mut().unwrap().push(serde_json::json!(
            { "destination": "/data", "type": "bind", "source": "data", "options": ["rbind", "rw"] }
        ));
    });
    let out = run(t.path(), "c1");
    let host_net = std::fs::read_link("/proc/self/ns/net").unwrap();
    assert_eq!(out.code, 3, "{out:?}");
    assert_eq!(
        out.stdout,
        format!(
            "hello\nrunc\n0\nkeys-masked\n1\nroot-ro\n1024\nCapEff:\t0000000020000420\n{}\n\
             -x --\nshm-as-asked\n0027\n",
            host_net.display()
        ),
        "{out:?}"
    );
    assert_eq!(
        std::fs::read_to_string(t.join("data/out")).unwrap(),
        "from-the-bundle\n"
    );
}

/// Each field burrow cannot honour is an error naming it (one line, also
/// in --log, exit status 1), before anything runs.
#[test]
fn fields_burrow_cannot_honour_are_refused_by_name() {
    type Edit = fn(&mut serde_json::Value);
    let cases: [(&str, Edit); 8] = [
        ("linux.sysctl", |c| {
            c["linux"]["sysctl"] = serde_json::json!({ "net.ipv4.ip_forward": "1" })
        }),
        ("root.readonly", |c| c["root"]["readonly"] = false.into()),
        ("process.terminal", |c| {
            c["process"]["terminal"] = true.into()
        }),
        ("linux.uidMappings", |c| {
            c["linux"]["uidMappings"][0]["hostID"] = 4242.into()
        }),
        ("linux.gidMappings", |c| {
            c["linux"]["gidMappings"][0]["size"] = 2.into()
        }),
        ("mounts[2] (/dev/pts)", |c| {
            c["mounts"][2]["options"]
                .as_array_mut()
                .unwrap()
                .push("gid=5".into())
        }),
        ("mounts[7] (/data)", |c| {
            c["mounts"].as_array_mut().unwrap().push(serde_json::json!(
                { "destination": "/data", "type": "bind", "source": "/tmp", "options": ["rbind", "noexec"] }
            ))
        }),
        ("mounts[", |c| {
            c["mounts"].as_array_mut().unwrap().push(serde_json::json!(
                { "destination": "/mnt", "type": "nfs", "source": "host:/x" }
            ))
        }),
    ];
    for (field, edit) in cases {
        let t = TempDir::new("runtime-refused");
        bundle(t.path(), |c| {
            c["process"]["args"] = serde_json::json!(["touch", "/tmp/ran"]);
            edit(c);
        });
        let out = run(t.path(), "c2");
        assert_eq!(out.code, 1, "{field}: {out:?}");
        let lines: Vec<&str> = out.stderr.lines().collect();
        assert_eq!(lines.len(), 1, "{field}: {out:?}");
        assert!(
            lines[0].starts_with("burrow-runtime: config.json: ") && lines[0].contains(field),
            "{field}: {out:?}"
        );
        let log = std::fs::read_to_string(t.join("log.json")).unwrap();
        let entry: serde_json::Value = serde_json::from_str(log.trim()).unwrap();
        assert_eq!(entry["level"], "error");
        assert!(entry["msg"].as_str().unwrap().contains(field), "{log}");
    }
}

#[test]
fn a_bad_container_id_is_refused() {
    let t = TempDir::new("runtime-id");
    bundle(t.path(), |_| {});
    let out = run(t.path(), "../x");
    assert_eq!(out.code, 1, "{out:?}");
    assert!(out.stderr.contains("invalid container id"), "{out:?}");
}

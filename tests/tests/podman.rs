//! burrowfs as podman's `mount_program`, driven by Debian's podman itself
//! as the unprivileged account: a local image made from busybox-static with
//! `podman import`, containers with `--userns=keep-id` and with `--uidmap`,
//! whose root filesystems burrowfs serves with podman's id mappings.

use std::process::Command;
use std::time::Duration;

use burrow_tests::*;

/// podman with its own storage (burrowfs as the overlay driver's mount
/// program), configuration and runtime directory, all under `t`.
struct Podman<'a> {
    t: &'a TempDir,
}

impl<'a> Podman<'a> {
    fn new(t: &'a TempDir) -> Podman<'a> {
        let burrowfs = burrow_bin().with_file_name("burrowfs");
        std::fs::write(
            t.join("storage.conf"),
            format!(
                "[storage]\ndriver = \"overlay\"\nrunroot = \"{}\"\ngraphroot = \"{}\"\n\
                 [storage.options.overlay]\nmount_program = \"{}\"\n",
                t.join("run").display(),
                t.join("graph").display(),
                burrowfs.display()
            ),
        )
        .unwrap();
        // runc: crun refuses this host's hybrid cgroups; no cgroup manager
        // but plain files, as nothing is delegated here.
        std::fs::write(
            t.join("containers.conf"),
            "[engine]\nruntime = \"runc\"\ncgroup_manager = \"cgroupfs\"\n\
             events_logger = \"file\"\n",
        )
        .unwrap();
        let xdg = t.join("xdg");
        std::fs::create_dir(&xdg).unwrap();
        std::fs::set_permissions(&xdg, std::os::unix::fs::PermissionsExt::from_mode(0o700))
            .unwrap();
        Podman { t }
    }

    fn cmd(&self, args: &[&str]) -> Output {
        let t = self.t;
        output_within(
            Command::new("podman")
                .args(args)
                .env("CONTAINERS_STORAGE_CONF", t.join("storage.conf"))
                .env("CONTAINERS_CONF", t.join("containers.conf"))
                .env("XDG_RUNTIME_DIR", t.join("xdg"))
                .env("XDG_CONFIG_HOME", t.join("config"))
                .env("XDG_DATA_HOME", t.join("data"))
                .stdin(std::process::Stdio::null()),
            Duration::from_secs(180),
        )
    }

    /// `localhost/bb:1`: busybox-static as /bin, files owned by root, a
    /// world-writable /tmp.
    fn import_busybox(&self) {
        let t = self.t;
        let root = t.join("rootfs");
        for d in ["bin", "tmp", "etc"] {
            std::fs::create_dir_all(root.join(d)).unwrap();
        }
        std::fs::copy("/bin/busybox", root.join("bin/busybox")).unwrap();
        for app in ["sh", "id", "stat", "touch", "cat", "grep", "awk", "ls"] {
            std::os::unix::fs::symlink("busybox", root.join("bin").join(app)).unwrap();
        }
        std::fs::write(root.join("etc/image-file"), "from the image\n").unwrap();
        std::fs::set_permissions(
            root.join("tmp"),
            std::os::unix::fs::PermissionsExt::from_mode(0o1777),
        )
        .unwrap();
        let tar = t.join("rootfs.tar");
        let out = output(
            Command::new("tar")
                .args(["--owner=0", "--group=0", "-C"])
                .arg(&root)
                .arg("-cf")
                .arg(&tar)
                .arg("."),
        );
        assert_eq!(out.code, 0, "{out:?}");
        let out = self.cmd(&["import", tar.to_str().unwrap(), "localhost/bb:1"]);
        assert_eq!(out.code, 0, "podman import: {out:?}");
    }
}

impl Drop for Podman<'_> {
    fn drop(&mut self) {
        // Containers wrote files as subordinate ids: only podman's own
        // namespace may remove them.
        let _ = self.cmd(&[
            "unshare",
            "rm",
            "-rf",
            self.t.join("data").to_str().unwrap(),
        ]);
        // podman's pause process keeps its user namespace for the next
        // podman command: there is none.
        let out = output(
            Command::new("find")
                .arg(self.t.join("xdg"))
                .args(["-name", "pause.pid"]),
        );
        for file in out.stdout.lines() {
            if let Some(pid) = std::fs::read_to_string(file)
                .ok()
                .and_then(|p| p.trim().parse::<i32>().ok())
            {
                let _ = nix::sys::signal::kill(
                    nix::unistd::Pid::from_raw(pid),
                    nix::sys::signal::Signal::SIGKILL,
                );
            }
        }
    }
}

/// What each container reports: its uid, the owner of the image's files,
/// whether it can write where its user may, and the root's filesystem.
const PROBE: &str = "id -u; stat -c %u:%g /bin/busybox /etc/image-file; cat /etc/image-file; \
    touch /tmp/new && stat -c 'new %u' /tmp/new; \
    awk '$5 == \"/\" { for (i = 7; i <= NF; i++) if ($i == \"-\") print $(i + 1) }' /proc/self/mountinfo";

fn podman_usable() -> bool {
    if Command::new("podman").arg("--version").output().is_err() {
        skipped("podman is not installed (scripts/setup-host.sh installs it)");
        return false;
    }
    if !has_subordinate_ids() {
        skipped("rootless podman needs subordinate ids for this user");
        return false;
    }
    true
}

#[test]
fn podman_runs_containers_on_burrowfs_with_keep_id_and_uidmap() {
    assert_unprivileged();
    if !podman_usable() {
        return;
    }
    let t = TempDir::new("podman");
    let podman = Podman::new(&t);
    podman.import_busybox();
    let uid = nix::unistd::getuid().as_raw();

    // --userns=keep-id: the container runs as this user; the image's files
    // are still root's, inside.
    let out = podman.cmd(&[
        "run",
        "--rm",
        "--pull=never",
        "--network=none",
        "--userns=keep-id",
        "localhost/bb:1",
        "sh",
        "-c",
        PROBE,
    ]);
    assert_eq!(
        out.stdout,
        format!("{uid}\n0:0\n0:0\nfrom the image\nnew {uid}\nfuse.burrowfs\n"),
        "{out:?}"
    );

    // --uidmap 0:1:65536: root inside is a subordinate id of this user and
    // owns the image's files; it can write anywhere in its root.
    let out = podman.cmd(&[
        "run",
        "--rm",
        "--pull=never",
        "--network=none",
        "--uidmap",
        "0:1:65536",
        "--gidmap",
        "0:1:65536",
        "localhost/bb:1",
        "sh",
        "-c",
        &format!("{PROBE}; touch /made-by-root && stat -c 'root made %u:%g' /made-by-root"),
    ]);
    assert_eq!(
        out.stdout, "0\n0:0\n0:0\nfrom the image\nnew 0\nfuse.burrowfs\nroot made 0:0\n",
        "{out:?}"
    );

    // podman shows the mount program's version.
    let out = podman.cmd(&["info"]);
    assert_eq!(out.code, 0, "{out:?}");
    assert!(out.stdout.contains("burrowfs: version"), "{}", out.stdout);
}

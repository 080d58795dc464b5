//! Debian's podman as the unprivileged account, with its storage,
//! configuration and runtime directory under a test's own directory; shared
//! by the tests that drive burrow with podman or read what podman writes.

use std::process::Command;
use std::time::Duration;

use crate::*;

/// podman with its own storage (burrowfs as the overlay driver's mount
/// program), configuration and runtime directory, all under `t`.
pub struct Podman<'a> {
    pub t: &'a TempDir,
    /// More environment for podman (and so for its network helper).
    pub env: Vec<(String, String)>,
    /// Its runtime directory (`XDG_RUNTIME_DIR`), of a short path, removed
    /// when done.
    pub xdg: std::path::PathBuf,
}

impl<'a> Podman<'a> {
    pub fn new(t: &'a TempDir) -> Podman<'a> {
        Self::with_engine(t, "")
    }

    /// podman whose slirp4netns is burrow-net (`network_cmd_path`), which
    /// forwards DNS to `dns_upstream`.
    pub fn with_burrow_net(t: &'a TempDir, dns_upstream: &str) -> Podman<'a> {
        let net = burrow_bin().with_file_name("burrow-net");
        let mut p = Self::with_engine(t, &format!("network_cmd_path = \"{}\"\n", net.display()));
        p.env
            .push(("BURROW_NET_DNS_UPSTREAM".into(), dns_upstream.into()));
        p
    }

    /// `engine` is more of containers.conf's [engine] table.
    pub fn with_engine(t: &'a TempDir, engine: &str) -> Podman<'a> {
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
            format!(
                "[engine]\nruntime = \"runc\"\ncgroup_manager = \"cgroupfs\"\n\
                 events_logger = \"file\"\n{engine}"
            ),
        )
        .unwrap();
        // Sockets live under XDG_RUNTIME_DIR: conmon's attach socket and
        // the port handler's API socket (XDG_RUNTIME_DIR/libpod/tmp/ID.net,
        // 64 hex digits of ID), and a socket path holds 108 bytes at most.
        // Under a test's long directory conmon cannot make its socket, and
        // podman notices a container's end only by polling, 20 s later: a
        // short directory of its own.
        static NEXT: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
        let n = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let xdg = std::path::PathBuf::from(format!("/tmp/bp{}.{n}", std::process::id()));
        std::fs::create_dir(&xdg).unwrap();
        std::fs::set_permissions(&xdg, std::os::unix::fs::PermissionsExt::from_mode(0o700))
            .unwrap();
        Podman {
            t,
            env: Vec::new(),
            xdg,
        }
    }

    pub fn cmd(&self, args: &[&str]) -> Output {
        output_within(self.command("podman").args(args), Duration::from_secs(180))
    }

    /// `program` (podman, or what runs it) with this podman's environment.
    pub fn command(&self, program: &str) -> Command {
        let t = self.t;
        let mut c = Command::new(program);
        c.env("CONTAINERS_STORAGE_CONF", t.join("storage.conf"))
            .env("CONTAINERS_CONF", t.join("containers.conf"))
            .env("XDG_RUNTIME_DIR", &self.xdg)
            .env("XDG_CONFIG_HOME", t.join("config"))
            .env("XDG_DATA_HOME", t.join("data"))
            .envs(self.env.iter().map(|(k, v)| (k, v)))
            .stdin(std::process::Stdio::null());
        c
    }

    /// `localhost/bb:1`: busybox-static as /bin, files owned by root, a
    /// world-writable /tmp.
    pub fn import_busybox(&self) {
        self.import_busybox_as("localhost/bb:1", &[]);
    }

    /// The same rootfs as image `name`, with `podman import --change`s.
    pub fn import_busybox_as(&self, name: &str, changes: &[&str]) {
        let t = self.t;
        let root = t.join("rootfs");
        for d in ["bin", "tmp", "etc"] {
            std::fs::create_dir_all(root.join(d)).unwrap();
        }
        std::fs::copy("/bin/busybox", root.join("bin/busybox")).unwrap();
        for app in [
            "sh", "id", "stat", "touch", "cat", "grep", "awk", "ls", "httpd", "wget", "nslookup",
            "ip", "sleep", "tty", "stty",
        ] {
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
        let mut args = vec!["import"];
        for c in changes {
            args.extend(["--change", c]);
        }
        args.extend([tar.to_str().unwrap(), name]);
        let out = self.cmd(&args);
        assert_eq!(out.code, 0, "podman import: {out:?}");
    }
}

impl Drop for Podman<'_> {
    fn drop(&mut self) {
        // Containers a failed test left running (with their conmon and
        // root filesystem server) end first.
        let _ = self.cmd(&["rm", "--all", "--force", "--time", "0"]);
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
                .arg(&self.xdg)
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
                // Gone, reaped too, before the next test counts this
                // user's processes.
                let proc_dir = std::path::PathBuf::from(format!("/proc/{pid}"));
                eventually(Duration::from_secs(10), || !proc_dir.exists());
            }
        }
        let _ = std::fs::remove_dir_all(&self.xdg);
    }
}

/// Whether rootless podman can run here (else says SKIPPED why).
pub fn podman_usable() -> bool {
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

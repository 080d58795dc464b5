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
    /// More environment for podman (and so for its network helper).
    env: Vec<(String, String)>,
    /// Its runtime directory (`XDG_RUNTIME_DIR`).
    xdg: std::path::PathBuf,
    /// Whether `xdg` is a directory of its own (with a short path), to
    /// remove when done.
    own_xdg: bool,
}

impl<'a> Podman<'a> {
    fn new(t: &'a TempDir) -> Podman<'a> {
        Self::with_engine(t, "")
    }

    /// podman whose slirp4netns is burrow-net (`network_cmd_path`), which
    /// forwards DNS to `dns_upstream`.
    fn with_burrow_net(t: &'a TempDir, dns_upstream: &str) -> Podman<'a> {
        let net = burrow_bin().with_file_name("burrow-net");
        let mut p = Self::with_engine(t, &format!("network_cmd_path = \"{}\"\n", net.display()));
        p.env
            .push(("BURROW_NET_DNS_UPSTREAM".into(), dns_upstream.into()));
        // The port handler's API socket is XDG_RUNTIME_DIR/libpod/tmp/ID.net
        // (64 hex digits of ID): a socket path (108 bytes at most, for
        // slirp4netns and podman alike) leaves 26 for the directory.
        let short = std::path::PathBuf::from(format!("/tmp/bn{}", std::process::id()));
        std::fs::create_dir(&short).unwrap();
        std::fs::set_permissions(&short, std::os::unix::fs::PermissionsExt::from_mode(0o700))
            .unwrap();
        p.xdg = short;
        p.own_xdg = true;
        p
    }

    /// `engine` is more of containers.conf's [engine] table.
    fn with_engine(t: &'a TempDir, engine: &str) -> Podman<'a> {
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
        let xdg = t.join("xdg");
        std::fs::create_dir(&xdg).unwrap();
        std::fs::set_permissions(&xdg, std::os::unix::fs::PermissionsExt::from_mode(0o700))
            .unwrap();
        Podman {
            t,
            env: Vec::new(),
            xdg,
            own_xdg: false,
        }
    }

    fn cmd(&self, args: &[&str]) -> Output {
        let t = self.t;
        output_within(
            Command::new("podman")
                .args(args)
                .env("CONTAINERS_STORAGE_CONF", t.join("storage.conf"))
                .env("CONTAINERS_CONF", t.join("containers.conf"))
                .env("XDG_RUNTIME_DIR", &self.xdg)
                .env("XDG_CONFIG_HOME", t.join("config"))
                .env("XDG_DATA_HOME", t.join("data"))
                .envs(self.env.iter().map(|(k, v)| (k, v)))
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
        for app in [
            "sh", "id", "stat", "touch", "cat", "grep", "awk", "ls", "httpd", "wget", "nslookup",
            "ip",
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
            }
        }
        if self.own_xdg {
            let _ = std::fs::remove_dir_all(&self.xdg);
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

/// An HTTP server on `addr` answering every request with the peer's
/// address; returns its port.
fn serve_peer_address(addr: &str) -> u16 {
    let listener = std::net::TcpListener::bind(addr).unwrap();
    let port = listener.local_addr().unwrap().port();
    std::thread::spawn(move || {
        for conn in listener.incoming().flatten() {
            let mut conn = conn;
            let peer = conn
                .peer_addr()
                .map(|a| a.ip().to_string())
                .unwrap_or_default();
            let mut buf = [0u8; 1024];
            let _ = std::io::Read::read(&mut conn, &mut buf);
            let _ = std::io::Write::write_all(
                &mut conn,
                format!(
                    "HTTP/1.0 200 OK\r\nContent-Length: {}\r\n\r\n{peer}",
                    peer.len()
                )
                .as_bytes(),
            );
        }
    });
    port
}

/// The machine's first global IPv4 address.
fn global_ipv4() -> Option<String> {
    let out = output(Command::new("ip").args(["-4", "-o", "addr", "show", "scope", "global"]));
    out.stdout.lines().find_map(|l| {
        let cidr = l.split_whitespace().skip_while(|w| *w != "inet").nth(1)?;
        Some(cidr.split('/').next()?.to_string())
    })
}

#[test]
fn podman_drives_burrow_net_as_its_slirp4netns() {
    assert_unprivileged();
    if !podman_usable() {
        return;
    }
    let t = TempDir::new("podman-net");
    let dns = serve_dns();
    let podman = Podman::with_burrow_net(&t, &format!("127.0.0.1:{dns}"));
    podman.import_busybox();
    let run = |network: &str, script: &str| {
        let out = podman.cmd(&[
            "run",
            "--rm",
            "--pull=never",
            "--network",
            network,
            "localhost/bb:1",
            "sh",
            "-c",
            script,
        ]);
        assert!(!out.stderr.contains("Error"), "{network}: {out:?}");
        out.stdout
    };

    // The namespace as slirp4netns would configure it (IPv6 asked for).
    let addrs = run(
        "slirp4netns:enable_ipv6=true",
        "ip -o addr show tap0 | awk '{print $4}' | grep -v fe80",
    );
    assert_eq!(addrs, "10.0.2.100/24\nfd00::100/64\n");

    // -p with both port handlers: a server in the container, reached on
    // the host's 127.0.0.1.
    for handler in ["rootlesskit", "slirp4netns"] {
        let port = free_port();
        let name = format!("web-{handler}");
        let out = podman.cmd(&[
            "run",
            "-d",
            "--pull=never",
            "--name",
            &name,
            "--network",
            &format!("slirp4netns:port_handler={handler}"),
            "-p",
            &format!("127.0.0.1:{port}:80"),
            "localhost/bb:1",
            "httpd",
            "-f",
            "-p",
            "80",
            "-h",
            "/etc",
        ]);
        assert_eq!(out.code, 0, "{handler}: {out:?}");
        let mut got = String::new();
        let served = eventually(Duration::from_secs(30), || {
            let Ok(mut s) = std::net::TcpStream::connect(("127.0.0.1", port)) else {
                return false;
            };
            let _ = s.set_read_timeout(Some(Duration::from_secs(5)));
            let _ = std::io::Write::write_all(&mut s, b"GET /image-file HTTP/1.0\r\n\r\n");
            got.clear();
            let _ = std::io::Read::read_to_string(&mut s, &mut got);
            got.ends_with("from the image\n")
        });
        let _ = podman.cmd(&["rm", "-f", &name]);
        assert!(served, "{handler}: no page through -p: {got:?}");
    }

    // allow_host_loopback: the gateway's address reaches the host's
    // loopback, over IPv4 and IPv6; without it, it is refused.
    let port4 = serve_peer_address("127.0.0.1:0");
    let port6 = serve_peer_address("[::1]:0");
    let fetch = |url: String| format!("echo $(wget -q -O - {url} || echo refused)");
    let out = run(
        "slirp4netns:allow_host_loopback=true,enable_ipv6=true",
        &format!(
            "{}; {}",
            fetch(format!("http://10.0.2.2:{port4}/")),
            fetch(format!("http://[fd00::2]:{port6}/"))
        ),
    );
    assert_eq!(out, "127.0.0.1\n::1\n");
    let out = run("slirp4netns", &fetch(format!("http://10.0.2.2:{port4}/")));
    assert_eq!(out, "refused\n");

    // outbound_addr: where connections to the host's own global address
    // come from.
    if let Some(host) = global_ipv4() {
        let port = serve_peer_address("0.0.0.0:0");
        let url = format!("http://{host}:{port}/");
        assert_eq!(run("slirp4netns", &fetch(url.clone())), format!("{host}\n"));
        assert_eq!(
            run("slirp4netns:outbound_addr=127.0.0.1", &fetch(url.clone())),
            "127.0.0.1\n"
        );
        assert_eq!(
            run("slirp4netns:outbound_addr=lo", &fetch(url)),
            "127.0.0.1\n"
        );
    } else {
        skipped("outbound_addr: this machine has no global IPv4 address");
    }

    // DNS: podman points the container at 10.0.2.3, which forwards to the
    // upstream given (a server of this test's answering 192.0.2.99).
    let out = run(
        "slirp4netns",
        "grep -m1 ^nameserver /etc/resolv.conf; nslookup burrow.test | grep -c 192.0.2.99",
    );
    assert_eq!(out, "nameserver 10.0.2.3\n1\n");
}

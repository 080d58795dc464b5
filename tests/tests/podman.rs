//! burrowfs as podman's `mount_program`, driven by Debian's podman itself
//! as the unprivileged account: a local image made from busybox-static with
//! `podman import`, containers with `--userns=keep-id` and with `--uidmap`,
//! whose root filesystems burrowfs serves with podman's id mappings.

use std::process::Command;
use std::time::Duration;

use burrow_tests::bundle::first_subordinate;
use burrow_tests::podman::{podman_usable, Podman};
use burrow_tests::*;

/// What each container reports: its uid, the owner of the image's files,
/// whether it can write where its user may, and the root's filesystem.
const PROBE: &str = "id -u; stat -c %u:%g /bin/busybox /etc/image-file; cat /etc/image-file; \
    touch /tmp/new && stat -c 'new %u' /tmp/new; \
    awk '$5 == \"/\" { for (i = 7; i <= NF; i++) if ($i == \"-\") print $(i + 1) }' /proc/self/mountinfo";

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

/// What a terminal session printed, without the echo of the control
/// characters script(1) may pass in when its input ends (`^@`, `^D`),
/// which the container's terminal echoes wherever its output then is.
fn echo_free(text: &str) -> String {
    text.replace("^@", "").replace("^D", "")
}

/// burrow-runtime as podman's OCI runtime, by path (`--runtime PATH`) and
/// by name (a containers.conf `[engine.runtimes]` entry, in
/// runtime_supports_json and runtime_supports_nocgroups): podman, conmon
/// and burrow-runtime as they are installed, as the unprivileged account.
#[test]
fn podman_runs_containers_with_burrow_runtime() {
    assert_unprivileged();
    if !podman_usable() {
        return;
    }
    let t = TempDir::new("podman-runtime");
    let runtime = burrow_bin().with_file_name("burrow-runtime");
    let podman = Podman::with_engine(
        &t,
        &format!(
            "runtime_supports_json = [\"burrow\", \"runc\", \"crun\"]\n\
             runtime_supports_nocgroups = [\"burrow\", \"crun\"]\n\
             [engine.runtimes]\nburrow = [\"{}\"]\n",
            runtime.display()
        ),
    );
    podman.import_busybox();
    let path = runtime.to_str().unwrap();
    let run = |runtime: &str, args: &[&str]| {
        let mut all = vec![
            "--runtime",
            runtime,
            "run",
            "--pull=never",
            "--network=none",
        ];
        all.extend(args);
        podman.cmd(&all)
    };

    // The container's pid 1 is burrow's (its command line is the
    // runtime's create), by path and by name; its status is podman's.
    for rt in [path, "burrow"] {
        let out = run(
            rt,
            &[
                "--rm",
                "localhost/bb:1",
                "sh",
                "-c",
                "echo hi; grep -c burrow-runtime /proc/1/cmdline; exit 42",
            ],
        );
        assert_eq!(
            (out.code, out.stdout.as_str()),
            (42, "hi\n1\n"),
            "{rt}: {out:?}"
        );
    }

    // --userns=keep-id: podman's id maps, written by burrow in podman's
    // user namespace; the caller inside as itself, with no capabilities.
    let uid = nix::unistd::getuid().as_raw();
    let out = run(
        "burrow",
        &[
            "--rm",
            "--userns=keep-id",
            "localhost/bb:1",
            "sh",
            "-c",
            "id -u; stat -c %u /bin/busybox; grep CapEff /proc/self/status",
        ],
    );
    assert_eq!(
        out.stdout,
        format!("{uid}\n0\nCapEff:\t0000000000000000\n"),
        "{out:?}"
    );

    // Podman's own user namespace (no user namespace in the spec): every
    // id it maps is the container's, so --user names one of them.
    let out = run(
        "burrow",
        &[
            "--rm",
            "--user",
            "1000:1000",
            "localhost/bb:1",
            "sh",
            "-c",
            "id; grep Groups /proc/self/status",
        ],
    );
    assert_eq!(
        out.stdout, "uid=1000 gid=1000 groups=1000\nGroups:\t1000 \n",
        "{out:?}"
    );

    // An OCI hook of --hooks-dir (podman puts its prestart hooks in the
    // spec) is run by burrow-runtime, given the container's state, in the
    // runtime's namespaces.
    let hooks = t.join("hooks.d");
    std::fs::create_dir(&hooks).unwrap();
    let hook_out = t.join("hook.out");
    std::fs::write(
        hooks.join("state.json"),
        serde_json::json!({
            "version": "1.0.0",
            "hook": { "path": "/bin/sh",
                      "args": ["sh", "-c", format!("cat > {0}; readlink /proc/self/ns/net > {0}.net",
                                                   hook_out.display())] },
            "when": { "always": true },
            "stages": ["prestart"],
        })
        .to_string(),
    )
    .unwrap();
    let cidfile = t.join("hooked.cid");
    let out = podman.cmd(&[
        "--runtime",
        "burrow",
        "--hooks-dir",
        hooks.to_str().unwrap(),
        "run",
        "--rm",
        "--pull=never",
        "--cidfile",
        cidfile.to_str().unwrap(),
        "localhost/bb:1",
        "id",
    ]);
    assert_eq!(out.code, 0, "{out:?}");
    let state: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&hook_out).unwrap()).unwrap();
    assert_eq!(state["status"], "creating", "{state}");
    assert_eq!(
        state["id"].as_str(),
        Some(std::fs::read_to_string(&cidfile).unwrap().trim()),
        "{state}"
    );
    assert!(state["pid"].as_i64().unwrap() > 0, "{state}");
    // In the runtime's network namespace, not the one podman gave the
    // container (by path, which the launcher joins).
    assert_eq!(
        std::fs::read_to_string(hook_out.with_extension("out.net"))
            .unwrap()
            .trim(),
        std::fs::read_link("/proc/self/ns/net")
            .unwrap()
            .to_str()
            .unwrap()
    );

    // Detached: ps, logs, and stop's SIGTERM reaching the command, whose
    // status podman records.
    let out = run(
        "burrow",
        &[
            "-d",
            "--name",
            "d1",
            "localhost/bb:1",
            "sh",
            "-c",
            "trap 'echo bye; exit 3' TERM; echo started; while :; do sleep 0.1; done",
        ],
    );
    assert_eq!(out.code, 0, "{out:?}");
    assert!(
        eventually(Duration::from_secs(60), || podman
            .cmd(&["logs", "d1"])
            .stdout
            == "started\n"),
        "{:?}",
        podman.cmd(&["logs", "d1"])
    );
    let ps = podman.cmd(&["ps", "--format", "{{.Names}}"]);
    assert_eq!(ps.stdout, "d1\n", "{ps:?}");
    let state = podman.cmd(&["inspect", "d1", "--format", "{{.State.Status}}"]);
    assert_eq!(state.stdout, "running\n", "{state:?}");

    // exec: another process in the running container (conmon calls the
    // runtime's exec with --process), its output and status podman's;
    // with the user, environment and working directory asked for; -d
    // leaves one running there; -it gets a terminal of its own.
    let out = podman.cmd(&[
        "exec",
        "d1",
        "sh",
        "-c",
        "echo in; id -u; ps | grep -c '[t]rap'; exit 5",
    ]);
    assert_eq!(
        (out.code, out.stdout.as_str()),
        (5, "in\n0\n1\n"),
        "{out:?}"
    );
    let out = podman.cmd(&[
        "exec",
        "--user",
        "1000:1000",
        "--env",
        "X=y",
        "--workdir",
        "/tmp",
        "d1",
        "sh",
        "-c",
        "echo $(id -u):$(id -g) $X $(pwd)",
    ]);
    assert_eq!(out.stdout, "1000:1000 y /tmp\n", "{out:?}");
    let out = podman.cmd(&[
        "exec",
        "-d",
        "d1",
        "sh",
        "-c",
        "echo $$ > /tmp/bg; exec sleep 1000",
    ]);
    assert_eq!(out.code, 0, "{out:?}");
    assert!(
        eventually(Duration::from_secs(30), || podman
            .cmd(&["exec", "d1", "sh", "-c", "kill -0 $(cat /tmp/bg)"])
            .code
            == 0),
        "exec -d: nothing left running"
    );
    let out = podman.cmd(&["exec", "d1", "no-such-command"]);
    assert_eq!(out.code, 127, "{out:?}");
    let out = output_within(
        podman.command("script").args([
            "-qec",
            "stty rows 20 cols 70; podman exec -it d1 sh -c 'tty; stty size; exit 6'",
            "/dev/null",
        ]),
        Duration::from_secs(180),
    );
    assert_eq!(out.code, 6, "{out:?}");
    assert!(
        echo_free(&out.stdout).contains("/dev/pts/0\r\n20 70\r\n"),
        "{out:?}"
    );
    assert_eq!(podman.cmd(&["stop", "-t", "20", "d1"]).code, 0);
    let state = podman.cmd(&[
        "inspect",
        "d1",
        "--format",
        "{{.State.ExitCode}} {{.State.Status}}",
    ]);
    assert_eq!(state.stdout, "3 exited\n", "{state:?}");
    assert_eq!(podman.cmd(&["logs", "d1"]).stdout, "started\nbye\n");
    assert_eq!(podman.cmd(&["rm", "d1"]).code, 0);

    // -it: conmon's console socket gets the terminal burrow-runtime makes
    // (script(1) gives podman a terminal of the size set), the window's
    // size comes through consoleSize, the status through conmon.
    let out = output_within(
        podman.command("script").args([
            "-qec",
            "stty rows 33 cols 101; podman --runtime burrow run --rm -it --pull=never \
             --network none localhost/bb:1 sh -c 'tty; stty size; exit 4'",
            "/dev/null",
        ]),
        Duration::from_secs(180),
    );
    assert_eq!(out.code, 4, "{out:?}");
    assert!(
        echo_free(&out.stdout).contains("/dev/pts/0\r\n33 101\r\n"),
        "{out:?}"
    );

    // podman's default network (its namespace, joined by path, served by
    // slirp4netns; a sysctl of it set) and -p through its port handler to
    // a server inside.
    let out = podman.cmd(&[
        "--runtime",
        "burrow",
        "run",
        "--rm",
        "--pull=never",
        "--sysctl",
        "net.ipv4.ip_forward=1",
        "localhost/bb:1",
        "sh",
        "-c",
        "ip -o -4 addr show tap0 | awk '{print $4}'; cat /proc/sys/net/ipv4/ip_forward",
    ]);
    assert_eq!(out.stdout, "10.0.2.100/24\n1\n", "{out:?}");
    let port = free_port();
    let out = podman.cmd(&[
        "--runtime",
        "burrow",
        "run",
        "-d",
        "--pull=never",
        "--name",
        "web",
        "-p",
        &format!("127.0.0.1:{port}:80"),
        "localhost/bb:1",
        "sh",
        "-c",
        "echo served > /tmp/index.html; exec httpd -f -p 80 -h /tmp",
    ]);
    assert_eq!(out.code, 0, "{out:?}");
    let fetch = || {
        let mut conn = std::net::TcpStream::connect(("127.0.0.1", port)).ok()?;
        std::io::Write::write_all(&mut conn, b"GET /index.html HTTP/1.0\r\n\r\n").ok()?;
        let mut reply = String::new();
        std::io::Read::read_to_string(&mut conn, &mut reply).ok()?;
        reply.ends_with("served\n").then_some(())
    };
    assert!(
        eventually(Duration::from_secs(30), || fetch().is_some()),
        "-p {port}: nothing served"
    );
    assert_eq!(podman.cmd(&["rm", "-f", "web"]).code, 0);

    // A pod: its members join the infra container's network, IPC and UTS
    // namespaces by path (its pid 1's), as Kubernetes' pods do; each has
    // its own pid and mount namespaces.
    assert_eq!(
        podman
            .cmd(&["--runtime", "burrow", "pod", "create", "--name", "p1"])
            .code,
        0
    );
    let ns = "hostname; for n in ipc uts net pid mnt; do readlink /proc/self/ns/$n; done";
    let out = podman.cmd(&[
        "--runtime",
        "burrow",
        "run",
        "-d",
        "--pull=never",
        "--pod",
        "p1",
        "--name",
        "m1",
        "localhost/bb:1",
        "sleep",
        "1000",
    ]);
    assert_eq!(out.code, 0, "{out:?}");
    let first = podman.cmd(&["exec", "m1", "sh", "-c", ns]);
    let second = podman.cmd(&[
        "--runtime",
        "burrow",
        "run",
        "--rm",
        "--pull=never",
        "--pod",
        "p1",
        "localhost/bb:1",
        "sh",
        "-c",
        ns,
    ]);
    let (a, b): (Vec<&str>, Vec<&str>) = (
        first.stdout.lines().collect(),
        second.stdout.lines().collect(),
    );
    assert_eq!((a.len(), b.len()), (6, 6), "{first:?} {second:?}");
    assert_eq!(
        a[..4],
        b[..4],
        "hostname, ipc, uts, net: {first:?} {second:?}"
    );
    assert_eq!(a[0], "p1");
    assert_ne!(a[4..], b[4..], "pid, mnt: {first:?} {second:?}");
    assert_eq!(podman.cmd(&["pod", "rm", "-f", "-t", "0", "p1"]).code, 0);

    // A pod with a user namespace of its own (--userns keep-id): its
    // members join it by path. Each member's user namespace is made inside
    // the infra container's, mapping its ids each to itself: a file each
    // writes in a shared volume is the caller's on the host.
    let vol = t.join("vol");
    std::fs::create_dir(&vol).unwrap();
    let volume = format!("{}:/data", vol.display());
    let rt_pod = |args: &[&str]| {
        let mut all = vec!["--runtime", "burrow"];
        all.extend_from_slice(args);
        podman.cmd(&all)
    };
    let out = rt_pod(&["pod", "create", "--userns", "keep-id", "--name", "p2"]);
    assert_eq!(out.code, 0, "{out:?}");
    let out = rt_pod(&[
        "run",
        "-d",
        "--pull=never",
        "--pod",
        "p2",
        "--name",
        "u1",
        "-v",
        &volume,
        "localhost/bb:1",
        "sleep",
        "1000",
    ]);
    assert_eq!(out.code, 0, "{out:?}");
    assert_eq!(podman.cmd(&["exec", "u1", "touch", "/data/a"]).code, 0);
    let out = rt_pod(&[
        "run",
        "--rm",
        "--pull=never",
        "--pod",
        "p2",
        "-v",
        &volume,
        "localhost/bb:1",
        "sh",
        "-c",
        "touch /data/b; cat /proc/self/uid_map",
    ]);
    assert_eq!(out.code, 0, "{out:?}");
    let identity = out.stdout.lines().all(|l| {
        let f: Vec<&str> = l.split_whitespace().collect();
        f.len() == 3 && f[0] == f[1]
    });
    assert!(identity && !out.stdout.is_empty(), "{out:?}");
    let me = nix::unistd::getuid().as_raw();
    for f in ["a", "b"] {
        use std::os::unix::fs::MetadataExt;
        assert_eq!(std::fs::metadata(vol.join(f)).unwrap().uid(), me, "{f}");
    }
    // (The kernel's word for where u1's user namespace is: inside the
    // infra container's.)
    let pid_of = |name: &str| {
        podman
            .cmd(&["inspect", name, "--format", "{{.State.Pid}}"])
            .stdout
            .trim()
            .to_string()
    };
    let infra = podman
        .cmd(&["pod", "inspect", "p2", "--format", "{{.InfraContainerID}}"])
        .stdout
        .trim()
        .to_string();
    let userns = |pid: &str| {
        let out = podman
            .command("lsns")
            .args(["-t", "user", "-n", "-o", "NS,PNS", "-p", pid])
            .output()
            .unwrap();
        String::from_utf8_lossy(&out.stdout)
            .split_whitespace()
            .map(str::to_string)
            .collect::<Vec<_>>()
    };
    let (member, pod) = (userns(&pid_of("u1")), userns(&pid_of(&infra)));
    assert_eq!(member.get(1), pod.first(), "{member:?} {pod:?}");
    // Made by the pod's root (its uid 0 is podman's 1, the first
    // subordinate uid), not by the user's uid there: the kernel's
    // NS_GET_OWNER_UID of the member's user namespace.
    let owner = Command::new("python3")
        .args([
            "-c",
            "import fcntl, os, struct, sys\n\
             fd = os.open('/proc/%s/ns/user' % sys.argv[1], os.O_RDONLY)\n\
             print(struct.unpack('I', fcntl.ioctl(fd, 0xb704, bytes(4)))[0])",
            &pid_of("u1"),
        ])
        .output()
        .unwrap();
    assert_eq!(
        String::from_utf8_lossy(&owner.stdout).trim(),
        first_subordinate("/etc/subuid").to_string(),
        "{owner:?}"
    );
    assert_eq!(podman.cmd(&["pod", "rm", "-f", "-t", "0", "p2"]).code, 0);

    // A pod sharing its pid namespace too (--share pid, as Kubernetes'
    // shareProcessNamespace): a member sees the infra container's
    // catatonit and the other member's command; stopping a member ends its
    // processes alone, the pod goes on.
    let out = rt_pod(&[
        "pod",
        "create",
        "--share",
        "pid,ipc,net,uts",
        "--name",
        "p3",
    ]);
    assert_eq!(out.code, 0, "{out:?}");
    let token = unique_token();
    let out = rt_pod(&[
        "run",
        "-d",
        "--pull=never",
        "--pod",
        "p3",
        "--name",
        "s1",
        "localhost/bb:1",
        "sleep",
        &token,
    ]);
    assert_eq!(out.code, 0, "{out:?}");
    let seen = rt_pod(&[
        "run",
        "--rm",
        "--pull=never",
        "--pod",
        "p3",
        "localhost/bb:1",
        "sh",
        "-c",
        "cat /proc/[0-9]*/cmdline | tr '\\0' ' '",
    ]);
    assert_eq!(seen.code, 0, "{seen:?}");
    assert!(
        seen.stdout.contains(&format!("sleep {token}")) && seen.stdout.contains("catatonit"),
        "{seen:?}"
    );
    assert_eq!(podman.cmd(&["stop", "-t", "0", "s1"]).code, 0);
    // (SIGKILLed by the runtime with its pid 1: gone once the kernel is
    // done with it.)
    assert!(
        eventually(Duration::from_secs(10), || processes_with_arg(&token)
            .is_empty()),
        "s1's sleep outlived it"
    );
    let infra = podman.cmd(&["pod", "inspect", "p3", "--format", "{{.InfraContainerID}}"]);
    let infra_state = podman.cmd(&[
        "inspect",
        infra.stdout.trim(),
        "--format",
        "{{.State.Status}}",
    ]);
    assert_eq!(infra_state.stdout.trim(), "running", "{infra_state:?}");
    assert_eq!(podman.cmd(&["pod", "rm", "-f", "-t", "0", "p3"]).code, 0);

    // kill, then rm -f of a running one.
    run(
        "burrow",
        &["-d", "--name", "d2", "localhost/bb:1", "sleep", "1000"],
    );
    assert_eq!(podman.cmd(&["kill", "d2"]).code, 0);
    assert_eq!(podman.cmd(&["wait", "d2"]).stdout, "137\n");
    run(
        "burrow",
        &["-d", "--name", "d3", "localhost/bb:1", "sleep", "1000"],
    );
    assert_eq!(podman.cmd(&["rm", "-f", "d2", "d3"]).code, 0);
    assert_eq!(podman.cmd(&["ps", "-aq"]).stdout, "");
}

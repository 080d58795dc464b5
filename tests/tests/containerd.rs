//! burrow-runtime driven by Debian's containerd 1.6 and its runc shim
//! (`ctr run --runc-binary`, the shim's BinaryName option): run, exec,
//! kill and delete. containerd runs as root, so this test does too:
//! scripts/run-tests.sh runs the tests named `*_as_real_root` as root,
//! after the unprivileged pass that leaves them out.

use burrow_tests::*;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

/// A containerd of this test's own: its root, state and sockets in `dir`,
/// no CRI plugin; ended (with its shims, and its mounts undone) on drop.
struct Containerd {
    dir: PathBuf,
    daemon: Child,
}

impl Containerd {
    fn start(dir: &Path) -> Containerd {
        std::fs::write(
            dir.join("config.toml"),
            format!(
                "version = 2\nroot = \"{d}/root\"\nstate = \"{d}/state\"\n\
                 disabled_plugins = [\"io.containerd.grpc.v1.cri\"]\n\
                 [grpc]\naddress = \"{d}/c.sock\"\n[ttrpc]\naddress = \"{d}/t.sock\"\n",
                d = dir.display()
            ),
        )
        .unwrap();
        let daemon = Command::new("containerd")
            .arg("--config")
            .arg(dir.join("config.toml"))
            .stdin(Stdio::null())
            .stdout(std::fs::File::create(dir.join("containerd.log")).unwrap())
            .stderr(std::fs::File::create(dir.join("containerd.err")).unwrap())
            .spawn()
            .expect("containerd (setup-host.sh installs it)");
        let c = Containerd {
            dir: dir.to_path_buf(),
            daemon,
        };
        assert!(
            eventually(Duration::from_secs(60), || c.ctr(&["version"]).code == 0),
            "containerd did not answer: {}",
            std::fs::read_to_string(dir.join("containerd.err")).unwrap_or_default()
        );
        c
    }

    fn command(&self, program: &str) -> Command {
        let mut cmd = Command::new(program);
        cmd.stdin(Stdio::null());
        cmd
    }

    fn ctr_args(&self) -> Vec<String> {
        vec![
            "ctr".into(),
            "--address".into(),
            self.dir.join("c.sock").display().to_string(),
            "--namespace".into(),
            "burrow".into(),
        ]
    }

    fn ctr(&self, args: &[&str]) -> Output {
        let base = self.ctr_args();
        output_within(
            self.command(&base[0]).args(&base[1..]).args(args),
            Duration::from_secs(120),
        )
    }

    /// `ctr ARGS` as one line of shell, for script(1).
    fn ctr_line(&self, args: &str) -> String {
        format!("{} {args}", self.ctr_args().join(" "))
    }
}

impl Drop for Containerd {
    fn drop(&mut self) {
        let address = self.dir.join("c.sock").display().to_string();
        let _ = self.daemon.kill();
        let _ = self.daemon.wait();
        // Shims of containers a failed test left, by their daemon's address.
        for pid in processes_with_arg(&address) {
            let _ = nix::sys::signal::kill(
                nix::unistd::Pid::from_raw(pid),
                nix::sys::signal::Signal::SIGKILL,
            );
        }
        let mounts = std::fs::read_to_string("/proc/self/mountinfo").unwrap_or_default();
        let dir = self.dir.display().to_string();
        let mut below: Vec<&str> = mounts
            .lines()
            .filter_map(|l| l.split(' ').nth(4))
            .filter(|m| m.starts_with(&dir))
            .collect();
        below.sort_by_key(|m| std::cmp::Reverse(m.len()));
        for m in below {
            let _ = nix::mount::umount2(m, nix::mount::MntFlags::MNT_DETACH);
        }
    }
}

/// An image of busybox-static, imported from an OCI archive made here.
fn import_busybox(c: &Containerd, dir: &Path) {
    let layout = dir.join("layout");
    let busybox = std::fs::read("/bin/busybox").unwrap();
    let mut files = vec![
        ("bin/", vec![]),
        ("bin/busybox", busybox),
        ("tmp/", vec![]),
        ("etc/", vec![]),
        ("etc/from-the-image", b"yes\n".to_vec()),
    ];
    let applets = [
        "sh", "echo", "cat", "ps", "grep", "sleep", "tty", "id", "hostname",
    ];
    for a in applets {
        files.push((a, b"->busybox".to_vec()));
    }
    let files: Vec<(String, Vec<u8>)> = files
        .into_iter()
        .map(|(p, d)| {
            if applets.contains(&p) {
                (format!("bin/{p}"), d)
            } else {
                (p.to_string(), d)
            }
        })
        .collect();
    let refs: Vec<(&str, Vec<u8>)> = files.iter().map(|(p, d)| (p.as_str(), d.clone())).collect();
    burrow_tests::oci::write_layout(
        &layout,
        &[refs],
        serde_json::json!({"architecture": "amd64", "os": "linux",
                           "config": {"Env": ["PATH=/bin"], "Cmd": ["sh"]}}),
    );
    let tar = dir.join("image.tar");
    let out = output(
        Command::new("tar")
            .arg("-C")
            .arg(&layout)
            .arg("-cf")
            .arg(&tar)
            .arg("."),
    );
    assert_eq!(out.code, 0, "{out:?}");
    let out = c.ctr(&[
        "images",
        "import",
        "--base-name",
        "localhost/bb",
        tar.to_str().unwrap(),
    ]);
    assert_eq!(out.code, 0, "ctr images import: {out:?}");
}

/// How many containers' state files are under the runtime's --root.
fn states(root: &Path) -> usize {
    let out = output(Command::new("find").arg(root).args(["-name", "state.json"]));
    out.stdout.lines().count()
}

#[test]
fn containerd_drives_burrow_runtime_as_real_root() {
    if !nix::unistd::geteuid().is_root() {
        skipped("containerd runs as root: scripts/run-tests.sh runs this test as root");
        return;
    }
    if Command::new("containerd")
        .arg("--version")
        .output()
        .is_err()
    {
        skipped("containerd is not installed (scripts/setup-host.sh installs it)");
        return;
    }
    // (A short directory: containerd's socket paths hold 108 bytes.)
    let base = PathBuf::from(format!("/tmp/bc{}", std::process::id()));
    std::fs::create_dir_all(&base).unwrap();
    let t = TempDir::in_dir(&base, "ctd");
    let c = Containerd::start(t.path());
    import_busybox(&c, t.path());
    let runtime = burrow_bin().with_file_name("burrow-runtime");
    let rt = runtime.to_str().unwrap();
    let runc_root = t.join("runc");
    let run = |args: &[&str]| {
        let mut all = vec![
            "run",
            "--runc-binary",
            rt,
            "--runc-root",
            runc_root.to_str().unwrap(),
        ];
        all.extend(args);
        c.ctr(&all)
    };

    // run: the image's root, burrow's pid 1, the command's status.
    let out = run(&[
        "--rm",
        "localhost/bb:v1",
        "c1",
        "sh",
        "-c",
        "cat /etc/from-the-image /proc/1/comm; exit 3",
    ]);
    assert_eq!(
        (out.code, out.stdout.as_str()),
        (3, "yes\nburrow-runtime\n"),
        "{out:?}"
    );

    // Detached; exec (the shim's --process and --detach) and ps; exec
    // with a terminal (its console socket) under script(1); kill's
    // SIGTERM reaching the command's trap, whose status the shim reports.
    let out = run(&[
        "-d",
        "localhost/bb:v1",
        "c2",
        "sh",
        "-c",
        "trap 'exit 7' TERM; while :; do sleep 0.1; done",
    ]);
    assert_eq!(out.code, 0, "{out:?}");
    let out = c.ctr(&[
        "task",
        "exec",
        "--exec-id",
        "e1",
        "c2",
        "sh",
        "-c",
        "echo in; ps | grep -c '[t]rap'; exit 5",
    ]);
    assert_eq!((out.code, out.stdout.as_str()), (5, "in\n1\n"), "{out:?}");
    let ps = c.ctr(&["task", "ps", "c2"]);
    assert!(ps.stdout.lines().count() >= 3, "{ps:?}");
    assert_eq!(states(&runc_root), 1, "the runtime's state of c2");

    // A pod as Kubernetes makes one through containerd: another container
    // joins c2's network, IPC, UTS and cgroup namespaces by path (its pid
    // 1's), then one its pid namespace.
    let pid: i32 = c
        .ctr(&["task", "ls"])
        .stdout
        .lines()
        .find_map(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            (f.first() == Some(&"c2")).then(|| f[1].parse().ok())?
        })
        .expect("c2's pid in task ls");
    let ns = |kind: &str, file: &str| format!("{kind}:/proc/{pid}/ns/{file}");
    let link = |kind: &str| std::fs::read_link(format!("/proc/{pid}/ns/{kind}")).unwrap();
    let out = run(&[
        "--rm",
        "--with-ns",
        &ns("network", "net"),
        "--with-ns",
        &ns("ipc", "ipc"),
        "--with-ns",
        &ns("uts", "uts"),
        "--with-ns",
        &ns("cgroup", "cgroup"),
        "localhost/bb:v1",
        "c3",
        "sh",
        "-c",
        "for n in net ipc uts cgroup pid; do readlink /proc/self/ns/$n; done",
    ]);
    let lines: Vec<&str> = out.stdout.lines().collect();
    assert_eq!(lines.len(), 5, "{out:?}");
    for (line, kind) in lines.iter().zip(["net", "ipc", "uts", "cgroup"]) {
        assert_eq!(*line, link(kind).to_str().unwrap(), "{kind}: {out:?}");
    }
    assert_ne!(lines[4], link("pid").to_str().unwrap(), "{out:?}");
    // And its pid namespace too (Kubernetes' shareProcessNamespace): the
    // new container sees c2's command.
    let out = run(&[
        "--rm",
        "--with-ns",
        &ns("pid", "pid"),
        "localhost/bb:v1",
        "c4",
        "sh",
        "-c",
        "readlink /proc/self/ns/pid; for f in /proc/[0-9]*/cmdline; do tr '\\0' ' ' < $f; echo; done | grep -c \"^sh -c trap 'exit 7'\"",
    ]);
    assert_eq!(
        out.stdout,
        format!("{}\n1\n", link("pid").display()),
        "{out:?}"
    );
    let out = output_within(
        c.command("script").args([
            "-qec",
            &c.ctr_line("task exec --exec-id e2 -t c2 sh -c 'tty; exit 6'"),
            "/dev/null",
        ]),
        Duration::from_secs(120),
    );
    assert_eq!(out.code, 6, "{out:?}");
    assert!(out.stdout.contains("/dev/pts/0"), "{out:?}");
    assert_eq!(c.ctr(&["task", "kill", "c2"]).code, 0);
    assert!(
        eventually(Duration::from_secs(30), || c
            .ctr(&["task", "ls"])
            .stdout
            .contains("STOPPED")),
        "{:?}",
        c.ctr(&["task", "ls"])
    );
    let out = c.ctr(&["task", "delete", "c2"]);
    assert!(out.stderr.contains("exit code 7"), "{out:?}");
    assert_eq!(c.ctr(&["container", "delete", "c2"]).code, 0);

    // Nothing is left: no container in the runtime's state, no process of
    // the runtime's running.
    assert_eq!(
        states(&runc_root),
        0,
        "the runtime's state names containers"
    );
    assert_eq!(c.ctr(&["task", "ls", "-q"]).stdout, "");
    assert!(processes_with_arg(&runc_root.display().to_string()).is_empty());
    drop(c);
    drop(t);
    let _ = std::fs::remove_dir(&base);
}

//! The host's pathname unix sockets (the D-Bus session bus in
//! $XDG_RUNTIME_DIR, sockets in the caller's home and in /var/tmp) cannot
//! be reached from inside, in any root mode, unless the user binds them.
//! The root is always served by burrowfs, whose socket files are not the
//! host's sockets.

use std::os::unix::net::{UnixDatagram, UnixListener};
use std::path::{Path, PathBuf};

use burrow_tests::*;

/// Sockets the caller listens on, in the three places the issue names.
struct HostSockets {
    paths: Vec<PathBuf>,
    _listeners: Vec<UnixListener>,
    _datagram: UnixDatagram,
    dirs: Vec<TempDir>,
}

impl HostSockets {
    fn new() -> Option<HostSockets> {
        let uid = nix::unistd::getuid();
        let runtime = PathBuf::from(format!("/run/user/{uid}"));
        if !runtime.is_dir() {
            skipped(&format!(
                "{} does not exist (scripts/setup-host.sh --tests makes it)",
                runtime.display()
            ));
            return None;
        }
        let home = PathBuf::from(std::env::var("HOME").expect("HOME"));
        let dirs = vec![
            TempDir::in_dir(&runtime, "sock"),
            TempDir::in_dir(&home, "sock"),
            TempDir::in_dir(Path::new("/var/tmp"), "sock"),
        ];
        let mut paths = Vec::new();
        let mut listeners = Vec::new();
        for d in &dirs {
            let p = d.join("bus");
            listeners.push(UnixListener::bind(&p).expect("bind a unix socket"));
            paths.push(p);
        }
        // A datagram socket too, as journald's and syslog's are.
        let dgram = dirs[2].join("log");
        let datagram = UnixDatagram::bind(&dgram).expect("bind a datagram socket");
        paths.push(dgram);
        Some(HostSockets {
            paths,
            _listeners: listeners,
            _datagram: datagram,
            dirs,
        })
    }

    /// What a client inside says of each socket: "connected" or "refused".
    fn try_from_inside(&self, flags: &[&str]) -> Vec<String> {
        let mut cmd = burrow_run();
        cmd.args(flags)
            .args(["--", "perl", "-MIO::Socket::UNIX", "-e", CLIENT]);
        cmd.args(&self.paths);
        let out = output(&mut cmd);
        assert_eq!(out.code, 0, "{flags:?}: {out:?}");
        out.stdout.lines().map(str::to_string).collect()
    }
}

/// Connects (stream, then datagram) to each path given; one word a path.
const CLIENT: &str = r#"
for my $p (@ARGV) {
    my $ok = 0;
    for my $type (SOCK_STREAM(), SOCK_DGRAM()) {
        my $s = IO::Socket::UNIX->new(Type => $type, Peer => $p);
        if ($s) { $ok = 1; last }
    }
    print $ok ? "connected\n" : "refused\n";
}
"#;

#[test]
fn host_unix_sockets_are_out_of_reach_in_every_root_mode() {
    let Some(socks) = HostSockets::new() else {
        return;
    };
    let upper = TempDir::new("sock-upper");
    let layer = TempDir::new("sock-layer");
    let upper_dir = upper.join("u");
    let modes: Vec<Vec<&str>> = vec![
        vec![],
        vec!["--read-only"],
        vec!["--read-only", "--landlock"],
        vec!["--read-only", "--landlock-strict"],
        vec!["--read-only", "--seccomp", "strict"],
        vec!["--read-only", "--keep-id"],
        vec!["--keep-id", "--landlock"],
        vec!["--upper", upper_dir.to_str().unwrap()],
        vec!["--layer", layer.s()],
        vec!["--read-only", "--layer", layer.s()],
        vec!["--rootfs", "/", "--read-only"],
        vec!["--net", "host", "--read-only"],
    ];
    let refused = vec!["refused".to_string(); socks.paths.len()];
    for flags in &modes {
        assert_eq!(socks.try_from_inside(flags), refused, "{flags:?}");
    }
}

#[test]
fn a_bound_socket_or_its_directory_is_reachable() {
    let Some(socks) = HostSockets::new() else {
        return;
    };
    // The client must be able to tell: with the directories bound (read-
    // write and read-only) and the socket file itself bound, it connects.
    let dirs: Vec<&str> = socks.dirs.iter().map(|d| d.s()).collect();
    for ro in [false, true] {
        for root in [&[][..], &["--read-only"][..]] {
            let mut flags: Vec<&str> = root.to_vec();
            for d in &dirs {
                flags.extend([if ro { "--ro-bind" } else { "--bind" }, d, d]);
            }
            let want = vec!["connected".to_string(); socks.paths.len()];
            assert_eq!(socks.try_from_inside(&flags), want, "{flags:?}");
        }
    }
    let file = socks.paths[0].to_str().unwrap();
    let got = socks.try_from_inside(&["--read-only", "--ro-bind", file, file]);
    assert_eq!(got[0], "connected");
    assert!(got[1..].iter().all(|w| w == "refused"), "{got:?}");
}

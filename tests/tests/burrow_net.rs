//! `burrow-net`: the userspace stack on its own, driven as slirp4netns is
//! (a pid and a tap name, `--configure`, the JSON API socket), against a
//! network namespace this test makes with `unshare`.

use std::io::{Read, Write};
use std::net::{Ipv4Addr, TcpListener, TcpStream};
use std::os::unix::net::UnixStream;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use burrow_tests::*;

fn burrow_net() -> std::path::PathBuf {
    burrow_bin().with_file_name("burrow-net")
}

/// A process in a new user and network namespace serving TCP port 8000
/// there ("inside got " + what it reads), and its pid.
fn namespace_with_server() -> (Child, u32) {
    let server = "import os, socket, sys\n\
print(os.getpid(), flush=True)\n\
s = socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)\n\
s.bind(('0.0.0.0', 8000)); s.listen()\n\
while True:\n    c, _ = s.accept(); c.sendall(b'inside got ' + c.recv(100)); c.close()";
    let mut child = Command::new("unshare")
        .args([
            "--user",
            "--map-root-user",
            "--net",
            "python3",
            "-c",
            server,
        ])
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut line = String::new();
    let mut out = child.stdout.take().unwrap();
    let mut b = [0u8; 1];
    while out.read(&mut b).unwrap_or(0) == 1 && b[0] != b'\n' {
        line.push(b[0] as char);
    }
    (child, line.trim().parse().expect("the namespace's pid"))
}

fn call(api: &std::path::Path, req: &str) -> String {
    let mut c = UnixStream::connect(api).unwrap();
    c.write_all(req.as_bytes()).unwrap();
    let mut reply = String::new();
    c.read_to_string(&mut reply).unwrap();
    reply
}

#[test]
fn burrow_net_serves_a_namespace_like_slirp4netns() {
    assert_unprivileged();
    let dir = TempDir::new("burrow-net");
    let api = dir.join("api");
    let (mut ns, pid) = namespace_with_server();
    let mut net = Command::new(burrow_net())
        .args([
            "--configure",
            "--mtu",
            "65520",
            "--disable-host-loopback",
            "--api-socket",
        ])
        .arg(&api)
        .arg(pid.to_string())
        .arg("tap0")
        .spawn()
        .unwrap();
    assert!(
        // Listening, not only bound (the name appears before listen()).
        eventually(Duration::from_secs(10), || UnixStream::connect(&api)
            .is_ok()),
        "no API socket"
    );

    // The namespace got slirp4netns' layout.
    let addr = output(Command::new("nsenter").args([
        "-t",
        &pid.to_string(),
        "-U",
        "-n",
        "--preserve-credentials",
        "ip",
        "-4",
        "-o",
        "addr",
        "show",
        "tap0",
    ]));
    assert!(addr.ok().contains("inet 10.0.2.100/24"), "{addr:?}");

    // A host port forwarded into it.
    let port = free_port();
    let added = call(
        &api,
        &format!(
            r#"{{"execute": "add_hostfwd", "arguments": {{"proto": "tcp", "host_addr": "127.0.0.1", "host_port": {port}, "guest_port": 8000}}}}"#
        ),
    );
    assert_eq!(added, r#"{"return":{"id":1}}"#);
    let listed = call(&api, r#"{"execute": "list_hostfwd"}"#);
    assert_eq!(
        listed,
        format!(
            r#"{{"entries":[{{"guest_addr":"10.0.2.100","guest_port":8000,"host_addr":"127.0.0.1","host_port":{port},"id":1,"proto":"tcp"}}]}}"#
        )
    );
    let mut c = TcpStream::connect((Ipv4Addr::LOCALHOST, port)).unwrap();
    c.write_all(b"hi").unwrap();
    let mut got = String::new();
    c.read_to_string(&mut got).unwrap();
    assert_eq!(got, "inside got hi");

    // Removed, it no longer answers; bad requests get an error.
    assert_eq!(
        call(
            &api,
            r#"{"execute": "remove_hostfwd", "arguments": {"id": 1}}"#
        ),
        r#"{"return":{}}"#
    );
    assert!(TcpStream::connect((Ipv4Addr::LOCALHOST, port)).is_err());
    assert!(call(
        &api,
        r#"{"execute": "remove_hostfwd", "arguments": {"id": 1}}"#
    )
    .starts_with(r#"{"error""#));
    assert!(call(&api, "nonsense").starts_with(r#"{"error""#));

    // What podman sends: empty addresses are the defaults, as slirp4netns
    // takes them (all host addresses; the sandbox's 10.0.2.100).
    let port = free_port();
    let added = call(
        &api,
        &format!(
            r#"{{"execute": "add_hostfwd", "arguments": {{"proto": "tcp", "host_addr": "", "host_port": {port}, "guest_addr": "", "guest_port": 8000}}}}"#
        ),
    );
    assert_eq!(added, r#"{"return":{"id":2}}"#);
    let listed = call(&api, r#"{"execute": "list_hostfwd"}"#);
    assert!(
        listed.contains(r#""guest_addr":"10.0.2.100","guest_port":8000,"host_addr":"0.0.0.0""#),
        "{listed}"
    );
    let bad = call(
        &api,
        r#"{"execute": "add_hostfwd", "arguments": {"proto": "tcp", "host_addr": "", "host_port": 1, "guest_addr": "nowhere", "guest_port": 80}}"#,
    );
    assert_eq!(
        bad,
        r#"{"error":{"desc":"bad request: add_hostfwd: bad arguments.guest_addr"}}"#
    );

    // burrow-net ends with the namespace's process.
    ns.kill().unwrap();
    let _ = ns.wait();
    let status = wait_timeout(&mut net, Duration::from_secs(10));
    assert!(status.success(), "{status:?}");
}

#[test]
fn burrow_net_reports_bad_input_in_one_line() {
    for (args, want) in [
        (
            vec!["notapid", "tap0"],
            "burrow-net: notapid: not a pid (use --netns-type=path)\n",
        ),
        (
            vec!["--cidr", "10.0.2.0/31", "1", "tap0"],
            "burrow-net: --cidr 10.0.2.0/31: expected an IPv4 network like 10.0.2.0/24\n",
        ),
    ] {
        let out = output(Command::new(burrow_net()).args(&args));
        assert_eq!(out.code, 1, "{args:?}");
        assert_eq!(out.stderr, want, "{args:?}");
    }
}

/// `--outbound-addr`, as podman's `outbound_addr=` passes it: connections
/// from the namespace leave the host from that address (here 127.0.0.1,
/// towards a server on the host's own global address, which otherwise
/// sees that global address as the peer).
#[test]
fn outbound_addr_sets_where_connections_come_from() {
    assert_unprivileged();
    let out = Command::new("ip")
        .args(["-4", "-o", "addr", "show", "scope", "global"])
        .output()
        .unwrap();
    let Some(host) = String::from_utf8_lossy(&out.stdout).lines().find_map(|l| {
        let cidr = l.split_whitespace().skip_while(|w| *w != "inet").nth(1)?;
        cidr.split('/').next()?.parse::<Ipv4Addr>().ok()
    }) else {
        skipped("this machine has no global IPv4 address to serve the test on");
        return;
    };
    for (flags, want) in [
        (vec![], host),
        (vec!["--outbound-addr", "127.0.0.1"], Ipv4Addr::LOCALHOST),
        (vec!["--outbound-addr=lo"], Ipv4Addr::LOCALHOST),
    ] {
        let (mut ns, pid) = namespace_with_server();
        let dir = TempDir::new("burrow-net-out");
        let ready = dir.join("ready");
        let mut net = Command::new(burrow_net())
            .arg("--configure")
            .args(&flags)
            .args(["--api-socket"])
            .arg(&ready)
            .arg(pid.to_string())
            .arg("tap0")
            .spawn()
            .unwrap();
        assert!(
            eventually(Duration::from_secs(10), || ready.exists()),
            "burrow-net did not start"
        );
        let listener = TcpListener::bind((host, 0)).unwrap();
        let port = listener.local_addr().unwrap().port();
        let client = Command::new("nsenter")
            .args(["-t", &pid.to_string(), "-U", "-n", "--preserve-credentials"])
            .args(["python3", "-c"])
            .arg(format!(
                "import socket; socket.create_connection(('{host}', {port}), timeout=10).close()"
            ))
            .spawn()
            .unwrap();
        let (_conn, peer) = listener.accept().unwrap();
        let mut client = client;
        let _ = client.wait();
        let _ = net.kill();
        let _ = net.wait();
        let _ = ns.kill();
        let _ = ns.wait();
        assert_eq!(peer.ip(), std::net::IpAddr::V4(want), "{flags:?}");
    }
    let out =
        output(Command::new(burrow_net()).args(["--outbound-addr", "nosuchif0", "1", "tap0"]));
    assert_ne!(out.code, 0);
    assert!(
        out.stderr
            .contains("--outbound-addr nosuchif0: not an address"),
        "{out:?}"
    );
}

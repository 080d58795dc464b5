//! `--net slirp`: the sandbox's traffic through burrow's userspace stack
//! to servers on this machine (a host address or the host's loopback),
//! never off it.

use std::io::{Read, Write};
use std::net::{Ipv4Addr, TcpListener, UdpSocket};
use std::time::Duration;

use burrow_tests::*;

/// A global IPv4 address of this machine (servers bound there are
/// reachable through the stack without --allow-host-loopback).
fn host_address() -> Option<Ipv4Addr> {
    let out = std::process::Command::new("ip")
        .args(["-4", "-o", "addr", "show", "scope", "global"])
        .output()
        .ok()?;
    String::from_utf8_lossy(&out.stdout).lines().find_map(|l| {
        let cidr = l.split_whitespace().skip_while(|w| *w != "inet").nth(1)?;
        cidr.split('/').next()?.parse().ok()
    })
}

fn host_address_or_skip() -> Option<Ipv4Addr> {
    let a = host_address();
    if a.is_none() {
        skipped("this machine has no global IPv4 address to serve tests on");
    }
    a
}

/// Serves `reply` to every TCP connection on `listener`, after reading
/// the request's first chunk.
fn serve_tcp(listener: TcpListener, reply: &'static str) {
    std::thread::spawn(move || {
        for conn in listener.incoming() {
            let Ok(mut conn) = conn else { continue };
            std::thread::spawn(move || {
                let mut buf = [0u8; 4096];
                let _ = conn.read(&mut buf);
                let _ = conn.write_all(reply.as_bytes());
            });
        }
    });
}

const HTTP_REPLY: &str = "HTTP/1.0 200 OK\r\nContent-Length: 16\r\n\r\nhello from host\n";

fn py(flags: &[&str], code: &str) -> Output {
    output(
        burrow_run()
            .args(["--net", "slirp"])
            .args(flags)
            .args(["--", "python3", "-c", code]),
    )
}

#[test]
fn tcp_reaches_a_server_on_a_host_address() {
    let Some(ip) = host_address_or_skip() else {
        return;
    };
    let listener = TcpListener::bind((ip, 0)).unwrap();
    let port = listener.local_addr().unwrap().port();
    serve_tcp(listener, HTTP_REPLY);
    let out = py(
        &[],
        &format!(
            "import urllib.request\n\
             print(urllib.request.urlopen('http://{ip}:{port}/', timeout=10).read().decode(), end='')"
        ),
    );
    assert_eq!(out.ok(), "hello from host\n");
}

#[test]
fn a_refused_port_is_refused_inside_too() {
    let Some(ip) = host_address_or_skip() else {
        return;
    };
    // A port nothing listens on: bind one, then close it.
    let port = TcpListener::bind((ip, 0))
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let out = py(
        &[],
        &format!(
            "import socket\ns = socket.socket(); s.settimeout(10)\n\
             try:\n    s.connect(('{ip}', {port})); print('connected')\n\
             except OSError as e: print(e.errno)"
        ),
    );
    assert_eq!(out.ok(), "111\n"); // ECONNREFUSED
}

#[test]
fn the_hosts_loopback_needs_allow_host_loopback() {
    let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).unwrap();
    let port = listener.local_addr().unwrap().port();
    serve_tcp(listener, HTTP_REPLY);
    let code = format!(
        "import socket\ns = socket.socket(); s.settimeout(10)\n\
         try:\n    s.connect(('10.0.2.2', {port})); s.send(b'GET'); print(s.recv(100).decode().split()[1])\n\
         except OSError as e: print('refused', e.errno)"
    );
    assert_eq!(py(&[], &code).ok(), "refused 111\n");
    assert_eq!(py(&["--allow-host-loopback"], &code).ok(), "200\n");
}

#[test]
fn udp_datagrams_go_both_ways() {
    let Some(ip) = host_address_or_skip() else {
        return;
    };
    let sock = UdpSocket::bind((ip, 0)).unwrap();
    let port = sock.local_addr().unwrap().port();
    std::thread::spawn(move || {
        let mut buf = vec![0u8; 65536];
        while let Ok((n, from)) = sock.recv_from(&mut buf) {
            let reply: Vec<u8> = buf[..n].to_ascii_uppercase();
            let _ = sock.send_to(&reply, from);
        }
    });
    let out = py(
        &[],
        &format!(
            "import socket\ns = socket.socket(socket.AF_INET, socket.SOCK_DGRAM); s.settimeout(10)\n\
             s.sendto(b'ping', ('{ip}', {port})); d, a = s.recvfrom(100); print(d.decode(), a[0] == '{ip}')\n\
             s.sendto(b'x' * 30000, ('{ip}', {port})); print(len(s.recvfrom(65535)[0]))"
        ),
    );
    assert_eq!(out.ok(), "PING True\n30000\n");
}

#[test]
fn names_resolve_through_the_dns_forwarder() {
    let port = serve_dns();
    let out = output(burrow_run().args([
        "--net",
        "slirp",
        "--dns-upstream",
        &format!("127.0.0.1:{port}"),
        "--",
        "sh",
        "-c",
        "cat /etc/resolv.conf; getent hosts some.name.test",
    ]));
    assert_eq!(
        out.ok(),
        "nameserver 10.0.2.3\n192.0.2.99      some.name.test\n"
    );
}

/// Sockets held by the processes whose command line has `token`.
fn sockets_of(token: &str) -> usize {
    processes_with_arg(token)
        .into_iter()
        .map(|pid| {
            std::fs::read_dir(format!("/proc/{pid}/fd"))
                .into_iter()
                .flatten()
                .flatten()
                .filter(|e| {
                    std::fs::read_link(e.path())
                        .is_ok_and(|l| l.to_string_lossy().starts_with("socket:"))
                })
                .count()
        })
        .sum()
}

#[test]
fn many_concurrent_connections_and_no_leak() {
    let Some(ip) = host_address_or_skip() else {
        return;
    };
    let listener = TcpListener::bind((ip, 0)).unwrap();
    let port = listener.local_addr().unwrap().port();
    serve_tcp(listener, "pong");
    let token = unique_token();
    let dir = TempDir::new("conns");
    // 1000 connections open at once, each answered; then all closed, and
    // the sandbox waits while the test counts the stack's sockets. The
    // count appears whole under its name (a rename), never half written.
    let child = burrow_run()
        .args(["--net", "slirp", "--rlimit", "nofile=4096", "--hostname", &token])
        .args(["--bind", dir.s(), "/mark", "--", "python3", "-c"])
        .arg(format!(
            "import os, socket, time\n\
             socks = [socket.create_connection(('{ip}', {port}), timeout=30) for i in range(1000)]\n\
             for s in socks: s.send(b'ping')\n\
             def pong(s):\n    d = b''\n    while len(d) < 4 and (c := s.recv(4 - len(d))): d += c\n    return d == b'pong'\n\
             got = sum(1 for s in socks if pong(s))\n\
             for s in socks: s.close()\n\
             open('/mark/count', 'w').write(str(got))\n\
             os.rename('/mark/count', '/mark/done')\n\
             time.sleep(30)"
        ))
        .spawn()
        .unwrap();
    let mut child = KillOnDrop(child);
    assert!(
        eventually(Duration::from_secs(60), || dir.join("done").exists()),
        "the connections did not finish"
    );
    assert_eq!(std::fs::read_to_string(dir.join("done")).unwrap(), "1000");
    // The stack forgets closed connections: a handful of sockets remain
    // (burrow's own), not a thousand.
    let settled = eventually(Duration::from_secs(20), || sockets_of(&token) < 20);
    let left = sockets_of(&token);
    let _ = child.0.kill();
    assert!(
        settled,
        "{left} sockets still held after the connections closed"
    );
}

struct KillOnDrop(std::process::Child);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[test]
fn the_stack_ends_with_the_sandbox() {
    let token = unique_token();
    let mut child = burrow_run()
        .args(["--net", "slirp", "--hostname", &token, "--", "sleep", "30"])
        .spawn()
        .unwrap();
    // burrow, its network stack and the sleep inside.
    assert!(eventually(Duration::from_secs(10), || {
        processes_with_arg(&token).len() >= 2
    }));
    child.kill().unwrap();
    let _ = child.wait();
    assert!(
        eventually(Duration::from_secs(10), || processes_with_arg(&token)
            .is_empty()),
        "left behind: {:?}",
        processes_with_arg(&token)
    );
}

#[test]
fn a_published_port_reaches_a_server_inside() {
    let port = TcpListener::bind((Ipv4Addr::LOCALHOST, 0))
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    // Inside: answer one connection on 127.0.0.1:8000, then exit.
    let server = "import socket\n\
s = socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)\n\
s.bind(('127.0.0.1', 8000)); s.listen()\n\
c, _ = s.accept(); data = c.recv(100); c.sendall(b'inside got ' + data); c.close()";
    let mut child = burrow_run()
        .args(["--net", "slirp", "-p", &format!("127.0.0.1:{port}:8000")])
        .args(["--", "python3", "-c", server])
        .spawn()
        .unwrap();
    let mut reply = String::new();
    let answered = eventually(Duration::from_secs(15), || {
        let Ok(mut c) = std::net::TcpStream::connect((Ipv4Addr::LOCALHOST, port)) else {
            return false;
        };
        reply.clear();
        c.write_all(b"hello").is_ok() && c.read_to_string(&mut reply).is_ok() && !reply.is_empty()
    });
    let status = wait_timeout(&mut child, Duration::from_secs(15));
    assert!(answered, "no answer through the published port");
    assert_eq!(reply, "inside got hello");
    assert!(status.success(), "{status:?}");
}

#[test]
fn publish_errors_are_one_line() {
    let taken = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).unwrap();
    let port = taken.local_addr().unwrap().port();
    for (args, want) in [
        (
            vec!["-p".to_string(), "8080:80".into()],
            "burrow: --publish needs --net slirp\n".to_string(),
        ),
        (
            vec![
                "--net".into(),
                "slirp".into(),
                "-p".into(),
                "8080:80/sctp".into(),
            ],
            "burrow: --publish 8080:80/sctp: the protocol must be tcp or udp\n".into(),
        ),
        (
            vec![
                "--net".into(),
                "slirp".into(),
                "-p".into(),
                format!("127.0.0.1:{port}:80"),
            ],
            format!("burrow: --publish 127.0.0.1:{port}:80: Address already in use\n"),
        ),
    ] {
        let out = output(burrow_run().args(&args).args(["--", "true"]));
        assert_eq!(out.code, 125, "{args:?}");
        assert_eq!(out.stderr, want, "{args:?}");
    }
}

#[test]
fn slirp4netns_and_pasta_can_serve_the_sandbox_instead() {
    let Some(ip) = host_address_or_skip() else {
        return;
    };
    for prog in ["slirp4netns", "pasta"] {
        if std::process::Command::new(prog)
            .arg("--version")
            .output()
            .is_err()
        {
            skipped(&format!("{prog} is not installed"));
            return;
        }
    }
    let listener = TcpListener::bind((ip, 0)).unwrap();
    let port = listener.local_addr().unwrap().port();
    serve_tcp(listener, HTTP_REPLY);
    let get = |net: &str, host: &str, port: u16| {
        output(burrow_run().args(["--net", net, "--", "python3", "-c"]).arg(format!(
            "import urllib.request\n\
             print(urllib.request.urlopen('http://{host}:{port}/', timeout=10).read().decode(), end='')"
        )))
    };
    // slirp4netns: the same layout as --net slirp.
    assert_eq!(
        get("slirp4netns", &ip.to_string(), port).ok(),
        "hello from host\n"
    );
    // pasta copies the host's own address into the namespace; its gateway
    // address stands for the host's loopback.
    let local = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).unwrap();
    let lport = local.local_addr().unwrap().port();
    serve_tcp(local, HTTP_REPLY);
    let gw = output(burrow_run().args([
        "--net",
        "pasta",
        "--",
        "sh",
        "-c",
        "ip -4 route show default",
    ]));
    let gw = gw
        .ok()
        .split_whitespace()
        .nth(2)
        .unwrap_or_default()
        .to_string();
    assert_eq!(get("pasta", &gw, lport).ok(), "hello from host\n");
    // Neither is left running (only this test starts them).
    assert!(
        eventually(Duration::from_secs(10), || running(&[
            "slirp4netns",
            "pasta"
        ]) == 0),
        "{} left running",
        running(&["slirp4netns", "pasta"])
    );
}

#[test]
fn a_network_helper_too_old_is_one_clear_line() {
    // A stand-in for an old slirp4netns: its help lacks --exit-fd.
    let dir = TempDir::new("old-slirp");
    let fake = dir.join("slirp4netns");
    std::fs::write(
        &fake,
        "#!/bin/sh\necho 'Usage: slirp4netns [OPTION]... PID TAPNAME'\necho '  -c, --configure'\n",
    )
    .unwrap();
    std::fs::set_permissions(&fake, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
    let out = output(
        burrow_run()
            .env("PATH", format!("{}:/usr/bin:/bin", dir.s()))
            .args([
                "--map-users",
                "none",
                "--net",
                "slirp4netns",
                "--",
                "/bin/true",
            ]),
    );
    assert_eq!(out.code, 125);
    assert_eq!(
        out.stderr,
        "burrow: --net slirp4netns: this slirp4netns is too old: it has no --mtu option \
         (install the slirp4netns package, or use --net slirp)\n"
    );
}

#[test]
fn a_missing_network_helper_is_one_clear_line() {
    let out = output(burrow_run().env("PATH", "/nonexistent").args([
        "--map-users",
        "none",
        "--net",
        "slirp4netns",
        "--",
        "/bin/true",
    ]));
    assert_eq!(out.code, 125);
    assert_eq!(
        out.stderr,
        "burrow: --net slirp4netns: cannot run slirp4netns: No such file or directory \
         (install the slirp4netns package, or use --net slirp)\n"
    );
}

/// How many processes of this user were started as one of `names`.
fn running(names: &[&str]) -> usize {
    let me = nix::unistd::getuid().as_raw();
    std::fs::read_dir("/proc")
        .into_iter()
        .flatten()
        .flatten()
        .filter(|e| {
            let cmdline = std::fs::read(e.path().join("cmdline")).unwrap_or_default();
            let argv0 = cmdline.split(|&b| b == 0).next().unwrap_or_default();
            let name =
                String::from_utf8_lossy(argv0.rsplit(|&b| b == b'/').next().unwrap_or_default())
                    .into_owned();
            let uid = std::fs::metadata(e.path()).map(|m| std::os::unix::fs::MetadataExt::uid(&m));
            names.contains(&name.as_str()) && uid.ok() == Some(me)
        })
        .count()
}

#[test]
fn ipv6_too() {
    // This machine has no global IPv6 address: the gateway's IPv6 address
    // (the host's ::1 with --allow-host-loopback) shows the stack's IPv6.
    let Ok(listener) = TcpListener::bind((std::net::Ipv6Addr::LOCALHOST, 0)) else {
        skipped("no IPv6 loopback on this machine");
        return;
    };
    let port = listener.local_addr().unwrap().port();
    serve_tcp(listener, HTTP_REPLY);
    let udp = UdpSocket::bind((std::net::Ipv6Addr::LOCALHOST, 0)).unwrap();
    let uport = udp.local_addr().unwrap().port();
    std::thread::spawn(move || {
        let mut buf = vec![0u8; 65536];
        while let Ok((n, from)) = udp.recv_from(&mut buf) {
            let _ = udp.send_to(&buf[..n].to_ascii_uppercase(), from);
        }
    });
    let code = format!(
        "import socket\n\
         print([a[4][0] for a in socket.getaddrinfo('fd00::100', 0)][0])\n\
         s = socket.socket(socket.AF_INET6); s.settimeout(10)\n\
         try:\n    s.connect(('fd00::2', {port})); s.send(b'GET'); print(s.recv(100).decode().split()[1])\n\
         except OSError as e: print('refused', e.errno)\n\
         u = socket.socket(socket.AF_INET6, socket.SOCK_DGRAM); u.settimeout(3)\n\
         u.sendto(b'six', ('fd00::2', {uport}))\n\
         try:\n    d, a = u.recvfrom(100); print(d.decode(), a[0])\n\
         except OSError as e: print('no answer')"
    );
    assert_eq!(
        py(&["--allow-host-loopback"], &code).ok(),
        "fd00::100\n200\nSIX fd00::2\n"
    );
    assert_eq!(py(&[], &code).ok(), "fd00::100\nrefused 111\nno answer\n");
}

#[test]
fn a_published_udp_port_reaches_a_server_inside() {
    let port = UdpSocket::bind((Ipv4Addr::LOCALHOST, 0))
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    // Inside: answer one datagram on 127.0.0.1:9000 (upper-cased), then exit.
    let server = "import socket\n\
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM); s.bind(('127.0.0.1', 9000))\n\
d, a = s.recvfrom(100); s.sendto(d.upper(), a)";
    let mut child = burrow_run()
        .args([
            "--net",
            "slirp",
            "-p",
            &format!("127.0.0.1:{port}:9000/udp"),
        ])
        .args(["--", "python3", "-c", server])
        .spawn()
        .unwrap();
    let client = UdpSocket::bind((Ipv4Addr::LOCALHOST, 0)).unwrap();
    client
        .set_read_timeout(Some(Duration::from_millis(200)))
        .unwrap();
    let mut buf = [0u8; 100];
    let answer = (0..75).find_map(|_| {
        client.send_to(b"hello", (Ipv4Addr::LOCALHOST, port)).ok()?;
        let (n, _) = client.recv_from(&mut buf).ok()?;
        Some(String::from_utf8_lossy(&buf[..n]).into_owned())
    });
    let status = wait_timeout(&mut child, Duration::from_secs(15));
    assert_eq!(answer.as_deref(), Some("HELLO"));
    assert!(status.success(), "{status:?}");
}

/// Python that pings each argument once with an unprivileged ICMP socket
/// and prints "HOST reply SEQ DATA" or "HOST no reply".
const PING: &str = r#"
import socket, struct, sys
for host in sys.argv[1:]:
    v6 = ":" in host
    s = socket.socket(socket.AF_INET6 if v6 else socket.AF_INET, socket.SOCK_DGRAM,
                      socket.IPPROTO_ICMPV6 if v6 else socket.IPPROTO_ICMP)
    s.settimeout(2); s.connect((host, 0))
    s.send(struct.pack("!BBHHH", 128 if v6 else 8, 0, 0, 0, 7) + b"hello")
    try:
        d = s.recv(100); print(host, "reply", struct.unpack("!H", d[6:8])[0], d[8:].decode())
    except socket.timeout:
        print(host, "no reply")
"#;

#[test]
fn ping_is_answered_truthfully() {
    let host = host_address();
    let mut targets = vec![
        "10.0.2.2".to_string(),
        "fd00::2".into(),
        "203.0.113.9".into(),
    ];
    targets.extend(host.map(|ip| ip.to_string()));
    let out = output(
        burrow_run()
            .args(["--net", "slirp", "--", "python3", "-c", PING])
            .args(&targets),
    );
    let lines: Vec<&str> = out.ok().lines().collect();
    // The gateway answers (IPv4 and IPv6); an unreachable address does not,
    // and is never answered in its place.
    assert_eq!(
        lines[..3],
        [
            "10.0.2.2 reply 7 hello",
            "fd00::2 reply 7 hello",
            "203.0.113.9 no reply"
        ]
    );
    // Outside addresses get echo through the host's ping sockets, where
    // this user may have them.
    let Some(ip) = host else { return };
    let host_pings = std::net::UdpSocket::bind("0.0.0.0:0").is_ok()
        && nix::sys::socket::socket(
            nix::sys::socket::AddressFamily::Inet,
            nix::sys::socket::SockType::Datagram,
            nix::sys::socket::SockFlag::empty(),
            nix::sys::socket::SockProtocol::Icmp,
        )
        .is_ok();
    if host_pings {
        assert_eq!(lines[3], format!("{ip} reply 7 hello"));
    } else {
        assert_eq!(lines[3], format!("{ip} no reply"));
        skipped("this user may not have ping sockets on the host (net.ipv4.ping_group_range): echo to outside addresses is not relayed");
    }
}

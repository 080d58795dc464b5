//! `burrow-net`: burrow's userspace network stack on its own, with
//! slirp4netns' command line and API socket, so that tools made for
//! slirp4netns (rootless podman's `network_cmd_path`) can use it.
//!
//! `burrow-net [OPTIONS] PID|PATH TAPNAME` makes TAPNAME in the network
//! namespace of PID (or the one bound at PATH with `--netns-type=path`),
//! configures it with `--configure` and serves it until `--exit-fd` closes
//! or the namespace goes away.

use std::io::{Read, Write};
use std::net::{IpAddr, Ipv4Addr, SocketAddr, SocketAddrV4};
use std::os::fd::{AsFd, AsRawFd, FromRawFd, OwnedFd};
use std::os::unix::net::UnixListener;
use std::path::PathBuf;
use std::sync::Arc;

use anyhow::{bail, Context, Result};
use burrow_netstack::publish::{Namespace, Publisher};
use burrow_netstack::{netns, Config};
use clap::Parser;
use nix::sched::CloneFlags;
use serde_json::{json, Value};

#[derive(Debug, Parser)]
#[command(
    name = "burrow-net",
    version,
    about = "User-mode networking for unprivileged network namespaces (slirp4netns-compatible)"
)]
struct Args {
    /// Bring up the tap interface, with the address, route and MTU.
    #[arg(short = 'c', long)]
    configure: bool,
    /// Exit when this file descriptor is closed (or readable).
    #[arg(short = 'e', long, value_name = "FD")]
    exit_fd: Option<i32>,
    /// Write "1" to this file descriptor when ready.
    #[arg(short = 'r', long, value_name = "FD")]
    ready_fd: Option<i32>,
    /// MTU of the tap interface.
    #[arg(short = 'm', long, default_value_t = 1500)]
    mtu: usize,
    /// The virtual network (gateway .2, DNS .3, the namespace .100).
    #[arg(long, default_value = "10.0.2.0/24")]
    cidr: String,
    /// Refuse connections to the gateway's address (the host's loopback).
    #[arg(long)]
    disable_host_loopback: bool,
    /// Unix socket for the JSON API (add_hostfwd, list_hostfwd, remove_hostfwd).
    #[arg(short = 'a', long, value_name = "PATH")]
    api_socket: Option<PathBuf>,
    /// How the namespace is named: a pid, or a path (a bound nsfs file).
    #[arg(long, default_value = "pid", value_parser = ["pid", "path"])]
    netns_type: String,
    /// The user namespace to join first (with --netns-type=path).
    #[arg(long, value_name = "PATH")]
    userns_path: Option<PathBuf>,
    /// Accepted for compatibility (burrow-net keeps no privileges to drop).
    #[arg(long)]
    enable_sandbox: bool,
    /// Accepted for compatibility.
    #[arg(long)]
    enable_seccomp: bool,
    /// Serve IPv6 too (fd00::100/64, gateway fd00::2, DNS fd00::3).
    #[arg(short = '6', long)]
    enable_ipv6: bool,
    /// Accepted for compatibility; DNS stays forwarded at the .3 address.
    #[arg(long)]
    disable_dns: bool,
    /// Send outgoing IPv4 connections and datagrams from this host address,
    /// or from the IPv4 address of this interface.
    #[arg(long, value_name = "IPv4|INTERFACE")]
    outbound_addr: Option<String>,
    /// Where DNS queries to the .3 address go (IP or IP:PORT; default: the
    /// first nameserver of /etc/resolv.conf). Also from the environment,
    /// for callers such as podman that pass no options of their own.
    #[arg(long, value_name = "ADDR", env = "BURROW_NET_DNS_UPSTREAM")]
    dns_upstream: Option<String>,
    /// The same for IPv6.
    #[arg(long, value_name = "IPv6|INTERFACE")]
    outbound_addr6: Option<String>,
    /// The namespace: a pid, or a path with --netns-type=path.
    target: String,
    /// The tap interface's name.
    tapname: String,
}

fn main() {
    if let Err(e) = real_main() {
        eprintln!("burrow-net: {e:#}");
        std::process::exit(1);
    }
}

fn real_main() -> Result<()> {
    let args = Args::parse();
    let cfg = config(&args)?;
    let (userns, netns_fd) = namespaces(&args)?;
    let tap = make_tap(&args, &cfg, userns.as_ref(), &netns_fd)?;
    // Relays into the namespace need a thread inside it, which needs this
    // process in its user namespace: join now, while single-threaded.
    if let Some(u) = &userns {
        nix::sched::setns(u, CloneFlags::CLONE_NEWUSER).context("joining the user namespace")?;
    }
    let publisher = Publisher::new(Namespace::Path(netns_path(&args)));
    drop(netns_fd); // holding it would keep the namespace alive
    if let Some(path) = &args.api_socket {
        let listener =
            UnixListener::bind(path).with_context(|| format!("--api-socket {}", path.display()))?;
        let (publisher, guest) = (Arc::clone(&publisher), cfg.guest);
        std::thread::spawn(move || api(listener, publisher, guest));
    }
    if let Some(fd) = args.exit_fd {
        // SAFETY: the caller handed this descriptor to burrow-net; it is
        // owned here from now on.
        let fd = unsafe { OwnedFd::from_raw_fd(fd) };
        std::thread::spawn(move || {
            let mut b = [0u8; 1];
            let _ = nix::unistd::read(&fd, &mut b);
            std::process::exit(0);
        });
    }
    if args.netns_type == "pid" {
        // The tap device's open file keeps the namespace alive, so its end
        // is not seen on the device: watch the process instead.
        if let Ok(pidfd) = pidfd_open(&args.target) {
            std::thread::spawn(move || {
                use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
                let mut fds = [PollFd::new(pidfd.as_fd(), PollFlags::POLLIN)];
                let _ = poll(&mut fds, PollTimeout::NONE);
                std::process::exit(0);
            });
        }
    }
    if let Some(fd) = args.ready_fd {
        // SAFETY: as for the exit descriptor.
        let mut f = unsafe { std::fs::File::from_raw_fd(fd) };
        let _ = f.write_all(b"1");
    }
    burrow_netstack::serve(tap, cfg).context("serving the tap device")
}

/// A pidfd for `pid` (readable once the process has exited).
fn pidfd_open(pid: &str) -> Result<OwnedFd> {
    let pid: libc::pid_t = pid.parse()?;
    // SAFETY: pidfd_open takes a pid and flags and returns a new descriptor.
    let fd = unsafe { libc::syscall(libc::SYS_pidfd_open, pid, 0) };
    if fd < 0 {
        bail!("pidfd_open: {}", std::io::Error::last_os_error());
    }
    // SAFETY: the kernel just made this descriptor for us.
    Ok(unsafe { OwnedFd::from_raw_fd(fd as i32) })
}

fn config(args: &Args) -> Result<Config> {
    let (net, prefix) = args
        .cidr
        .split_once('/')
        .and_then(|(ip, p)| Some((ip.parse::<Ipv4Addr>().ok()?, p.parse::<u8>().ok()?)))
        .filter(|(_, p)| (1..=25).contains(p))
        .with_context(|| {
            format!(
                "--cidr {}: expected an IPv4 network like 10.0.2.0/24",
                args.cidr
            )
        })?;
    let base = u32::from(net) & u32::MAX.checked_shl(32 - prefix as u32).unwrap_or(0);
    let at = |n: u32| Ipv4Addr::from(base + n);
    let mut cfg = Config {
        gateway: at(2),
        dns: at(3),
        guest: at(100),
        prefix,
        mtu: args.mtu,
        allow_host_loopback: !args.disable_host_loopback,
        ipv6: args.enable_ipv6,
        ..Config::default()
    };
    if args.mtu < 576 || args.mtu > 65520 {
        bail!("--mtu {}: must be 576 to 65520", args.mtu);
    }
    if let Some(text) = &args.outbound_addr {
        cfg.outbound = Some(outbound(text, "--outbound-addr", |ip| match ip {
            IpAddr::V4(v4) => Some(v4),
            IpAddr::V6(_) => None,
        })?);
    }
    if let Some(text) = &args.outbound_addr6 {
        cfg.outbound6 = Some(outbound(text, "--outbound-addr6", |ip| match ip {
            IpAddr::V6(v6) => Some(v6),
            IpAddr::V4(_) => None,
        })?);
    }
    let upstream = match &args.dns_upstream {
        Some(text) => Some(
            burrow_netstack::parse_upstream(text)
                .with_context(|| format!("--dns-upstream {text}: not an IP address or IP:PORT"))?,
        ),
        None => burrow_netstack::host_resolver(),
    };
    if let Some(up) = upstream {
        cfg.dns_upstream = up;
    }
    Ok(cfg)
}

/// Where the network namespace is.
fn netns_path(args: &Args) -> PathBuf {
    if args.netns_type == "pid" {
        PathBuf::from(format!("/proc/{}/ns/net", args.target))
    } else {
        PathBuf::from(&args.target)
    }
}

/// The user namespace to join (none when it is already ours) and the
/// network namespace.
fn namespaces(args: &Args) -> Result<(Option<OwnedFd>, OwnedFd)> {
    let open = |p: PathBuf| -> Result<OwnedFd> {
        Ok(std::fs::File::open(&p)
            .with_context(|| format!("opening {}", p.display()))?
            .into())
    };
    let (userns, netns) = if args.netns_type == "pid" {
        let pid: u32 = args
            .target
            .parse()
            .ok()
            .with_context(|| format!("{}: not a pid (use --netns-type=path)", args.target))?;
        (
            Some(open(PathBuf::from(format!("/proc/{pid}/ns/user")))?),
            open(netns_path(args))?,
        )
    } else {
        (
            args.userns_path.clone().map(open).transpose()?,
            open(netns_path(args))?,
        )
    };
    let ours = std::fs::metadata("/proc/self/ns/user").ok();
    let same = |fd: &OwnedFd| {
        let theirs = nix::sys::stat::fstat(fd).ok();
        matches!((ours.as_ref(), theirs), (Some(a), Some(b)) if {
            use std::os::unix::fs::MetadataExt;
            a.ino() == b.st_ino && a.dev() == b.st_dev
        })
    };
    Ok((userns.filter(|u| !same(u)), netns))
}

/// Makes (and with --configure sets up) the tap device in a child that
/// joins the namespaces, and receives its descriptor.
fn make_tap(
    args: &Args,
    cfg: &Config,
    userns: Option<&OwnedFd>,
    netns_fd: &OwnedFd,
) -> Result<OwnedFd> {
    use nix::sys::socket::{socketpair, AddressFamily, SockFlag, SockType};
    let (parent, child) = socketpair(
        AddressFamily::Unix,
        SockType::SeqPacket,
        None,
        SockFlag::SOCK_CLOEXEC,
    )?;
    // SAFETY: burrow-net is single-threaded here; the child only makes
    // system calls and exits.
    match unsafe { nix::unistd::fork() }? {
        nix::unistd::ForkResult::Child => {
            drop(parent);
            let code = match tap_inside(args, cfg, userns, netns_fd) {
                Ok(tap) => match send_fd(&child, &tap) {
                    Ok(()) => 0,
                    Err(e) => {
                        eprintln!("burrow-net: handing the tap device over: {e}");
                        1
                    }
                },
                Err(e) => {
                    eprintln!("burrow-net: {e:#}");
                    1
                }
            };
            // SAFETY: _exit is always safe.
            unsafe { libc::_exit(code) }
        }
        nix::unistd::ForkResult::Parent { child: pid } => {
            drop(child);
            let fd = recv_fd(&parent);
            let _ = nix::sys::wait::waitpid(pid, None);
            fd.context("the tap device was not made")
        }
    }
}

fn tap_inside(
    args: &Args,
    cfg: &Config,
    userns: Option<&OwnedFd>,
    netns_fd: &OwnedFd,
) -> Result<OwnedFd> {
    if let Some(u) = userns {
        nix::sched::setns(u, CloneFlags::CLONE_NEWUSER).context("joining the user namespace")?;
    }
    nix::sched::setns(netns_fd, CloneFlags::CLONE_NEWNET)
        .context("joining the network namespace")?;
    let tun: OwnedFd = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open("/dev/net/tun")
        .context("opening /dev/net/tun")?
        .into();
    let tap = netns::create_tap(tun, &args.tapname)
        .with_context(|| format!("creating {}", args.tapname))?;
    if args.configure {
        netns::configure_interface(&args.tapname, cfg.guest, cfg.prefix, cfg.mtu as u32)
            .with_context(|| format!("configuring {}", args.tapname))?;
        netns::add_default_route(cfg.gateway).context("adding the default route")?;
        if cfg.ipv6 {
            netns::configure_interface6(&args.tapname, cfg.guest6, 64)
                .with_context(|| format!("giving {} its IPv6 address", args.tapname))?;
            netns::add_default_route6(&args.tapname, cfg.gateway6)
                .context("adding the default IPv6 route")?;
        }
        let _ = netns::interface_up("lo");
    }
    Ok(tap)
}

fn send_fd(sock: &OwnedFd, fd: &OwnedFd) -> nix::Result<()> {
    use nix::sys::socket::{sendmsg, ControlMessage, MsgFlags};
    let fds = [fd.as_raw_fd()];
    sendmsg::<()>(
        sock.as_raw_fd(),
        &[std::io::IoSlice::new(b"t")],
        &[ControlMessage::ScmRights(&fds)],
        MsgFlags::empty(),
        None,
    )
    .map(drop)
}

fn recv_fd(sock: &OwnedFd) -> Option<OwnedFd> {
    use nix::sys::socket::{recvmsg, ControlMessageOwned, MsgFlags};
    let mut buf = [0u8; 1];
    let mut iov = [std::io::IoSliceMut::new(&mut buf)];
    let mut space = nix::cmsg_space!([std::os::fd::RawFd; 1]);
    let msg = recvmsg::<()>(
        sock.as_fd().as_raw_fd(),
        &mut iov,
        Some(&mut space),
        MsgFlags::MSG_CMSG_CLOEXEC,
    )
    .ok()?;
    let fd = msg.cmsgs().ok()?.find_map(|c| match c {
        ControlMessageOwned::ScmRights(fds) => fds.first().copied(),
        _ => None,
    })?;
    // SAFETY: the kernel just installed this descriptor for us.
    Some(unsafe { OwnedFd::from_raw_fd(fd) })
}

/// slirp4netns' API: one JSON request per connection, one JSON answer.
fn api(listener: UnixListener, publisher: Arc<Publisher>, guest: Ipv4Addr) {
    for conn in listener.incoming() {
        let Ok(mut conn) = conn else { continue };
        let mut buf = vec![0u8; 65536];
        let n = conn.read(&mut buf).unwrap_or(0);
        let reply = match serde_json::from_slice::<Value>(&buf[..n]) {
            Ok(req) => handle(&req, &publisher, guest),
            Err(e) => json!({"error": {"desc": format!("bad request: {e}")}}),
        };
        let _ = conn.write_all(reply.to_string().as_bytes());
    }
}

fn handle(req: &Value, publisher: &Arc<Publisher>, guest: Ipv4Addr) -> Value {
    let err = |desc: String| json!({"error": {"desc": desc}});
    let a = &req["arguments"];
    match req["execute"].as_str() {
        Some("add_hostfwd") => {
            let udp = match a["proto"].as_str().unwrap_or("tcp") {
                "tcp" => false,
                "udp" => true,
                other => return err(format!("unknown proto {other}")),
            };
            // As slirp4netns: a missing or empty address is the default
            // (podman sends `"guest_addr": ""`); each bad argument is named.
            let given = |key: &str| a[key].as_str().filter(|s| !s.is_empty());
            let bad = |key: &str| err(format!("bad request: add_hostfwd: bad arguments.{key}"));
            let Ok(host_ip) = given("host_addr")
                .unwrap_or("0.0.0.0")
                .parse::<std::net::IpAddr>()
            else {
                return bad("host_addr");
            };
            let Ok(guest_ip) = given("guest_addr").map_or(Ok(guest), str::parse::<Ipv4Addr>) else {
                return bad("guest_addr");
            };
            let port = |key: &str| {
                a[key]
                    .as_u64()
                    .and_then(|p| u16::try_from(p).ok())
                    .filter(|&p| p != 0)
            };
            let Some(hp) = port("host_port") else {
                return bad("host_port");
            };
            let Some(gp) = port("guest_port") else {
                return bad("guest_port");
            };
            let at = SocketAddr::new(host_ip, hp);
            let guest = SocketAddrV4::new(guest_ip, gp);
            let added = if udp {
                std::net::UdpSocket::bind(at).and_then(|s| publisher.add_udp(s, guest))
            } else {
                std::net::TcpListener::bind(at).and_then(|l| publisher.add(l, guest))
            };
            match added {
                Ok(id) => json!({"return": {"id": id}}),
                Err(e) => err(e.to_string()),
            }
        }
        Some("list_hostfwd") => {
            let entries: Vec<Value> = publisher
                .list()
                .into_iter()
                .map(|(id, f)| {
                    json!({"id": id, "proto": if f.udp { "udp" } else { "tcp" }, "host_addr": f.host.ip().to_string(),
                           "host_port": f.host.port(), "guest_addr": f.guest.ip().to_string(),
                           "guest_port": f.guest.port()})
                })
                .collect();
            // (slirp4netns answers this one without "return".)
            json!({ "entries": entries })
        }
        Some("remove_hostfwd") => match a["id"].as_u64() {
            Some(id) if publisher.remove(id as u32) => json!({"return": {}}),
            _ => err("no such forwarding".into()),
        },
        other => err(format!("unknown command {}", other.unwrap_or("(none)"))),
    }
}

/// `--outbound-addr[6] ADDR|INTERFACE`: the address itself, or the
/// interface's first address of the family `pick` takes.
fn outbound<T>(text: &str, flag: &str, pick: impl Fn(IpAddr) -> Option<T>) -> Result<T> {
    if let Ok(ip) = text.parse::<IpAddr>() {
        return pick(ip).ok_or_else(|| anyhow::anyhow!("{flag} {text}: wrong address family"));
    }
    let addrs = nix::ifaddrs::getifaddrs().map_err(|e| anyhow::anyhow!("{flag} {text}: {e}"))?;
    addrs
        .filter(|a| a.interface_name == text)
        .filter_map(|a| {
            let sa = a.address?;
            let ip = sa
                .as_sockaddr_in()
                .map(|s| IpAddr::V4(s.ip()))
                .or_else(|| sa.as_sockaddr_in6().map(|s| IpAddr::V6(s.ip())))?;
            pick(ip)
        })
        .next()
        .ok_or_else(|| anyhow::anyhow!("{flag} {text}: not an address, nor an interface with one"))
}

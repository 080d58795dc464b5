//! Userspace networking for burrow's network namespaces, in the way of
//! slirp4netns: the sandbox has a tap device; this stack, outside the
//! sandbox, reads its frames and speaks for the rest of the network.
//!
//! - TCP from the sandbox is terminated by smoltcp (in "any IP" mode, so
//!   it answers for every address) and carried on a host socket to the
//!   real destination. A new connection is answered only once the host's
//!   connect succeeded, so a refused port is refused inside too.
//! - UDP is translated datagram by datagram, without smoltcp: one
//!   connected host socket per flow, replies built as frames here.
//! - The gateway's address stands for the host's loopback, when allowed;
//!   the DNS address forwards to the host's resolver.

mod device;
mod icmp;
pub mod netns;
pub mod publish;
mod sockets;
mod tcp;
mod udp;

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::os::fd::{AsRawFd, BorrowedFd, OwnedFd};
use std::time::Duration;

use smoltcp::iface::{Config as IfaceConfig, Interface, SocketSet};
use smoltcp::time::Instant;
use smoltcp::wire::{
    EthernetAddress, EthernetFrame, EthernetProtocol, HardwareAddress, IpAddress, IpCidr,
    IpProtocol, Ipv4Packet, Ipv6Packet, TcpPacket, UdpPacket,
};

pub use device::Tap;

/// The sandbox's side of the network, as slirp4netns lays it out.
#[derive(Debug, Clone)]
pub struct Config {
    /// The gateway (this stack); also the host's loopback when allowed.
    pub gateway: Ipv4Addr,
    /// The DNS forwarder's address.
    pub dns: Ipv4Addr,
    /// The sandbox's address.
    pub guest: Ipv4Addr,
    pub prefix: u8,
    /// IPv6 too: the same layout in `gateway6`/`dns6`/`guest6`, /64.
    pub ipv6: bool,
    pub gateway6: Ipv6Addr,
    pub dns6: Ipv6Addr,
    pub guest6: Ipv6Addr,
    pub mtu: usize,
    /// Let the sandbox reach the host's 127.0.0.1 through the gateway.
    pub allow_host_loopback: bool,
    /// Where DNS queries go.
    pub dns_upstream: SocketAddr,
    /// The host addresses outgoing connections and datagrams are sent
    /// from (slirp4netns' `--outbound-addr`, `--outbound-addr6`); none:
    /// the kernel's choice.
    pub outbound: Option<Ipv4Addr>,
    pub outbound6: Option<Ipv6Addr>,
}

impl Default for Config {
    fn default() -> Config {
        Config {
            gateway: Ipv4Addr::new(10, 0, 2, 2),
            dns: Ipv4Addr::new(10, 0, 2, 3),
            guest: Ipv4Addr::new(10, 0, 2, 100),
            prefix: 24,
            ipv6: true,
            gateway6: Ipv6Addr::new(0xfd00, 0, 0, 0, 0, 0, 0, 2),
            dns6: Ipv6Addr::new(0xfd00, 0, 0, 0, 0, 0, 0, 3),
            guest6: Ipv6Addr::new(0xfd00, 0, 0, 0, 0, 0, 0, 0x100),
            mtu: 65520,
            allow_host_loopback: false,
            dns_upstream: SocketAddr::from((Ipv4Addr::LOCALHOST, 53)),
            outbound: None,
            outbound6: None,
        }
    }
}

/// Frames read from the tap device per turn of the loop.
const MAX_BATCH: usize = 256;

/// The MAC address the stack answers with.
pub const GATEWAY_MAC: [u8; 6] = [0x52, 0x55, 0x0a, 0x00, 0x02, 0x02];

/// A DNS upstream written as `IP` (port 53) or `IP:PORT`.
pub fn parse_upstream(text: &str) -> Option<SocketAddr> {
    text.parse::<SocketAddr>().ok().or_else(|| {
        text.parse::<IpAddr>()
            .ok()
            .map(|ip| SocketAddr::new(ip, 53))
    })
}

/// The first nameserver in `/etc/resolv.conf`, port 53.
pub fn host_resolver() -> Option<SocketAddr> {
    let text = std::fs::read_to_string("/etc/resolv.conf").ok()?;
    text.lines().find_map(|l| {
        let mut words = l.split_whitespace();
        (words.next() == Some("nameserver"))
            .then(|| words.next()?.parse::<std::net::IpAddr>().ok())
            .flatten()
            .map(|ip| SocketAddr::new(ip, 53))
    })
}

impl Config {
    /// Where a flow to `dst` from the sandbox really goes, or `None` when
    /// it may not go there.
    fn host_destination(&self, dst: SocketAddr) -> Option<SocketAddr> {
        let port = dst.port();
        // An IPv4 address written as IPv6 (::ffff:127.0.0.1) is judged as
        // the IPv4 address it is, which is what a host socket would reach.
        let ip = match dst.ip() {
            IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(IpAddr::V6(v6), IpAddr::V4),
            v4 => v4,
        };
        if ip != dst.ip() {
            return self
                .host_destination(SocketAddr::new(ip, port))
                .filter(|to| to.ip() == ip);
        }
        match dst.ip() {
            IpAddr::V4(ip) => {
                if ip == self.dns && port == 53 {
                    return Some(self.dns_upstream);
                }
                if ip == self.gateway {
                    return self
                        .allow_host_loopback
                        .then(|| SocketAddr::from((Ipv4Addr::LOCALHOST, port)));
                }
                if ip.is_loopback()
                    || ip.is_unspecified()
                    || ip.is_broadcast()
                    || ip.is_multicast()
                    // Inside the sandbox's own subnet only this stack's
                    // addresses exist.
                    || in_subnet(ip, self.guest, self.prefix)
                {
                    return None;
                }
            }
            IpAddr::V6(_) if !self.ipv6 => return None,
            IpAddr::V6(ip) => {
                if ip == self.dns6 && port == 53 {
                    return Some(self.dns_upstream);
                }
                if ip == self.gateway6 {
                    return self
                        .allow_host_loopback
                        .then(|| SocketAddr::from((Ipv6Addr::LOCALHOST, port)));
                }
                if ip.is_loopback()
                    || ip.is_unspecified()
                    || ip.is_multicast()
                    || ip.segments()[..4] == self.guest6.segments()[..4]
                {
                    return None;
                }
            }
        }
        Some(dst)
    }
}

fn in_subnet(ip: Ipv4Addr, net: Ipv4Addr, prefix: u8) -> bool {
    let mask = u32::MAX.checked_shl(32 - prefix as u32).unwrap_or(0);
    u32::from(ip) & mask == u32::from(net) & mask
}

fn now() -> Instant {
    Instant::now()
}

/// Serves the sandbox's tap device until it goes away (the sandbox's
/// network namespace ended).
pub fn serve(tap_fd: OwnedFd, cfg: Config) -> std::io::Result<()> {
    nix::fcntl::fcntl(
        &tap_fd,
        nix::fcntl::FcntlArg::F_SETFL(nix::fcntl::OFlag::O_NONBLOCK),
    )?;
    let mut tap = Tap::new(tap_fd, cfg.mtu);
    let mut iface_cfg = IfaceConfig::new(HardwareAddress::Ethernet(EthernetAddress(GATEWAY_MAC)));
    iface_cfg.random_seed = u64::from(std::process::id()) ^ 0x9e37_79b9_7f4a_7c15;
    let mut iface = Interface::new(iface_cfg, &mut tap, now());
    let mut addrs = vec![
        IpCidr::new(IpAddress::Ipv4(cfg.gateway), cfg.prefix),
        IpCidr::new(IpAddress::Ipv4(cfg.dns), cfg.prefix),
    ];
    if cfg.ipv6 {
        addrs.push(IpCidr::new(IpAddress::Ipv6(cfg.gateway6), 64));
        addrs.push(IpCidr::new(IpAddress::Ipv6(cfg.dns6), 64));
    }
    let mut full = false;
    iface.update_ip_addrs(|list| {
        for a in addrs {
            // (The list's capacity is a smoltcp build setting.)
            full |= list.push(a).is_err();
        }
    });
    if full {
        return Err(std::io::Error::other(
            "the stack cannot hold all its addresses",
        ));
    }
    // "Any IP": every destination routes through our own gateway address,
    // so smoltcp accepts connections to all of them.
    iface.set_any_ip(true);
    iface
        .routes_mut()
        .add_default_ipv4_route(cfg.gateway)
        .map_err(|_| std::io::Error::other("cannot add the default route"))?;
    if cfg.ipv6 {
        iface
            .routes_mut()
            .add_default_ipv6_route(cfg.gateway6)
            .map_err(|_| std::io::Error::other("cannot add the default IPv6 route"))?;
    }
    let mut sockets = SocketSet::new(Vec::new());
    let mut tcp = tcp::Flows::default();
    let mut udp = udp::Flows::new(cfg.mtu);
    let mut icmp = icmp::Flows::default();

    loop {
        // Frames from the sandbox: UDP is ours, new TCP connections wait
        // for their host side, the rest goes to smoltcp. A bounded batch,
        // so that a flood cannot grow the queue without end.
        for _ in 0..MAX_BATCH {
            match tap.read_frame() {
                Ok(Some(frame)) => match classify(&frame) {
                    Some(Packet::Udp { src, dst }) => {
                        udp.send_out(&cfg, &frame, src, dst);
                    }
                    Some(Packet::TcpSyn { src, dst }) => {
                        if tcp.is_active(src, dst) {
                            tap.rx.push_back(frame); // a retransmission
                        } else if !tcp.is_known(src, dst) {
                            tcp.start(&cfg, src, dst, frame);
                        } // else: still connecting on the host; its SYN is held
                    }
                    Some(Packet::Echo {
                        mac,
                        src,
                        dst,
                        ident,
                        seq,
                        data,
                    }) => {
                        let echo = icmp::Echo {
                            src,
                            dst,
                            ident,
                            seq,
                            data: &data,
                        };
                        if !icmp.send_out(&cfg, mac, &echo) {
                            tap.rx.push_back(frame);
                        }
                    }
                    None => tap.rx.push_back(frame),
                },
                Ok(None) => break,
                Err(e) => return end_of_tap(e),
            }
        }
        // Connections whose host side is now decided.
        for frame in tcp.settle(&mut sockets) {
            tap.rx.push_back(frame);
        }
        iface.poll(now(), &mut tap, &mut sockets);
        tcp.pump(&mut sockets);
        udp.bring_replies(&tap);
        icmp.bring_replies(&tap);
        iface.poll(now(), &mut tap, &mut sockets);
        tcp.reap(&mut sockets);

        // Sleep until something can move.
        let delay = iface
            .poll_delay(now(), &sockets)
            .map(|d| Duration::from_micros(d.total_micros()))
            .unwrap_or(Duration::from_secs(1))
            .min(Duration::from_secs(1));
        let mut fds = vec![libc::pollfd {
            fd: tap.raw_fd(),
            events: libc::POLLIN,
            revents: 0,
        }];
        tcp.poll_fds(&sockets, &mut fds);
        udp.poll_fds(&mut fds);
        icmp.poll_fds(&mut fds);
        wait(&mut fds, delay)?;
    }
}

fn end_of_tap(e: std::io::Error) -> std::io::Result<()> {
    // The device went with the sandbox's network namespace.
    match e.raw_os_error() {
        Some(libc::EBADFD) | Some(libc::EIO) | Some(libc::ENODEV) => Ok(()),
        _ if e.kind() == std::io::ErrorKind::UnexpectedEof => Ok(()),
        _ => Err(e),
    }
}

fn wait(fds: &mut [libc::pollfd], delay: Duration) -> std::io::Result<()> {
    // Rounded up: a sub-millisecond deadline must not become a busy wait.
    let ms = delay.as_micros().div_ceil(1000).min(1000) as i32;
    // SAFETY: `fds` is a valid, exclusively borrowed array of pollfd for
    // the duration of the call.
    let r = unsafe { libc::poll(fds.as_mut_ptr(), fds.len() as libc::nfds_t, ms) };
    if r < 0 {
        let e = std::io::Error::last_os_error();
        if e.kind() != std::io::ErrorKind::Interrupted {
            return Err(e);
        }
    }
    Ok(())
}

enum Packet {
    Udp {
        src: SocketAddr,
        dst: SocketAddr,
    },
    TcpSyn {
        src: SocketAddr,
        dst: SocketAddr,
    },
    Echo {
        mac: EthernetAddress,
        src: IpAddr,
        dst: IpAddr,
        ident: u16,
        seq: u16,
        data: Vec<u8>,
    },
}

/// The addresses, protocol and segment of an unfragmented IPv4 or IPv6
/// packet in an Ethernet frame.
fn l4(frame: &[u8]) -> Option<(IpAddr, IpAddr, IpProtocol, &[u8])> {
    let eth = EthernetFrame::new_checked(frame).ok()?;
    let payload = &frame[smoltcp::wire::ETHERNET_HEADER_LEN..];
    match eth.ethertype() {
        EthernetProtocol::Ipv4 => {
            let ip = Ipv4Packet::new_checked(payload).ok()?;
            if ip.more_frags() || ip.frag_offset() != 0 {
                return None;
            }
            Some((
                ip.src_addr().into(),
                ip.dst_addr().into(),
                ip.next_header(),
                payload.get(ip.header_len() as usize..ip.total_len() as usize)?,
            ))
        }
        EthernetProtocol::Ipv6 => {
            let ip = Ipv6Packet::new_checked(payload).ok()?;
            let start = smoltcp::wire::IPV6_HEADER_LEN;
            Some((
                ip.src_addr().into(),
                ip.dst_addr().into(),
                ip.next_header(),
                payload.get(start..start + ip.payload_len() as usize)?,
            ))
        }
        _ => None,
    }
}

/// What a frame from the sandbox is, as far as this stack cares.
fn classify(frame: &[u8]) -> Option<Packet> {
    let (src_ip, dst_ip, proto, segment) = l4(frame)?;
    match proto {
        IpProtocol::Udp => {
            let u = UdpPacket::new_checked(segment).ok()?;
            Some(Packet::Udp {
                src: SocketAddr::new(src_ip, u.src_port()),
                dst: SocketAddr::new(dst_ip, u.dst_port()),
            })
        }
        IpProtocol::Tcp => {
            let t = TcpPacket::new_checked(segment).ok()?;
            (t.syn() && !t.ack()).then(|| Packet::TcpSyn {
                src: SocketAddr::new(src_ip, t.src_port()),
                dst: SocketAddr::new(dst_ip, t.dst_port()),
            })
        }
        IpProtocol::Icmp | IpProtocol::Icmpv6 => {
            // An echo request: type 8 (ICMPv4) or 128 (ICMPv6), then code,
            // checksum, identifier, sequence number, data.
            let request = if proto == IpProtocol::Icmp { 8 } else { 128 };
            if segment.len() < 8 || segment[0] != request || segment[1] != 0 {
                return None;
            }
            Some(Packet::Echo {
                mac: EthernetFrame::new_checked(frame).ok()?.src_addr(),
                src: src_ip,
                dst: dst_ip,
                ident: u16::from_be_bytes([segment[4], segment[5]]),
                seq: u16::from_be_bytes([segment[6], segment[7]]),
                data: segment[8..].to_vec(),
            })
        }
        _ => None,
    }
}

/// A non-blocking socket connected (or connecting) to `to`, from the
/// configured outbound address of its family, if any.
fn connect_nonblocking(
    cfg: &Config,
    to: SocketAddr,
    kind: nix::sys::socket::SockType,
) -> std::io::Result<OwnedFd> {
    use nix::sys::socket::{bind, connect, socket, AddressFamily, SockFlag, SockaddrStorage};
    let family = if to.is_ipv4() {
        AddressFamily::Inet
    } else {
        AddressFamily::Inet6
    };
    let fd = socket(
        family,
        kind,
        SockFlag::SOCK_NONBLOCK | SockFlag::SOCK_CLOEXEC,
        None,
    )?;
    let from = match to {
        SocketAddr::V4(_) => cfg.outbound.map(std::net::IpAddr::from),
        SocketAddr::V6(_) => cfg.outbound6.map(std::net::IpAddr::from),
    };
    if let Some(ip) = from {
        bind(
            fd.as_raw_fd(),
            &SockaddrStorage::from(SocketAddr::new(ip, 0)),
        )?;
    }
    match connect(fd.as_raw_fd(), &SockaddrStorage::from(to)) {
        Ok(()) | Err(nix::errno::Errno::EINPROGRESS) => Ok(fd),
        Err(e) => Err(e.into()),
    }
}

fn borrow(fd: &OwnedFd) -> BorrowedFd<'_> {
    use std::os::fd::AsFd;
    fd.as_fd()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn dest(cfg: &Config, to: &str) -> Option<String> {
        cfg.host_destination(to.parse().unwrap())
            .map(|a| a.to_string())
    }

    #[test]
    fn only_allowed_destinations_reach_the_host() {
        let mut cfg = Config {
            dns_upstream: "192.0.2.53:53".parse().unwrap(),
            ..Config::default()
        };
        for refused in [
            "127.0.0.1:80",
            "127.1.2.3:80",
            "[::1]:80",
            "[::ffff:127.0.0.1]:80",
            "[::ffff:10.0.2.2]:80",
            "0.0.0.0:80",
            "[::]:80",
            "10.0.2.2:80",
            "[fd00::2]:80",
            "10.0.2.77:80",
            "[fd00::77]:80",
            "255.255.255.255:80",
            "224.0.0.1:80",
            "[ff02::1]:80",
        ] {
            assert_eq!(dest(&cfg, refused), None, "{refused}");
        }
        assert_eq!(dest(&cfg, "192.0.2.2:80").as_deref(), Some("192.0.2.2:80"));
        assert_eq!(
            dest(&cfg, "[::ffff:192.0.2.2]:80").as_deref(),
            Some("192.0.2.2:80")
        );
        assert_eq!(
            dest(&cfg, "[2001:db8::1]:80").as_deref(),
            Some("[2001:db8::1]:80")
        );
        assert_eq!(dest(&cfg, "10.0.2.3:53").as_deref(), Some("192.0.2.53:53"));
        assert_eq!(dest(&cfg, "[fd00::3]:53").as_deref(), Some("192.0.2.53:53"));
        assert_eq!(
            dest(&cfg, "10.0.2.3:53").as_deref(),
            Some("192.0.2.53:53"),
            "DNS over TCP"
        );
        assert_eq!(dest(&cfg, "10.0.2.3:80"), None);
        cfg.ipv6 = false;
        assert_eq!(dest(&cfg, "[2001:db8::1]:80"), None, "IPv6 off");
        cfg.ipv6 = true;
        cfg.allow_host_loopback = true;
        assert_eq!(dest(&cfg, "10.0.2.2:80").as_deref(), Some("127.0.0.1:80"));
        assert_eq!(dest(&cfg, "[fd00::2]:80").as_deref(), Some("[::1]:80"));
        assert_eq!(dest(&cfg, "127.0.0.1:80"), None);
    }
}

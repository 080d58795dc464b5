//! ICMP echo from the sandbox to the outside, through the host's
//! unprivileged ping sockets (where `net.ipv4.ping_group_range` lets this
//! user have them; elsewhere echo requests go unanswered, never answered
//! falsely). Echo to the gateway and DNS addresses is smoltcp's to answer.

use std::net::{IpAddr, SocketAddr};
use std::os::fd::{AsRawFd, OwnedFd};
use std::time::Duration;

use nix::sys::socket::{
    connect, socket, AddressFamily, SockFlag, SockProtocol, SockType, SockaddrStorage,
};
use smoltcp::phy::ChecksumCapabilities;
use smoltcp::wire::{
    EthernetAddress, EthernetFrame, EthernetProtocol, EthernetRepr, Icmpv4Packet, Icmpv4Repr,
    Icmpv6Packet, Icmpv6Repr, IpProtocol, Ipv4Packet, Ipv4Repr, Ipv6Packet, Ipv6Repr,
};

use crate::sockets::HostSockets;
use crate::{Config, Tap, GATEWAY_MAC};

const IDLE: Duration = Duration::from_secs(30);

/// Flows at most (a ping socket each); the least recently used goes first.
const MAX_FLOWS: usize = 1024;

/// (sandbox address, destination, the sandbox's echo identifier).
type Key = (IpAddr, IpAddr, u16);

pub struct Flows {
    sockets: HostSockets<Key>,
    guest_mac: Option<EthernetAddress>,
}

impl Default for Flows {
    fn default() -> Self {
        Flows {
            sockets: HostSockets::new(MAX_FLOWS, IDLE, 65536),
            guest_mac: None,
        }
    }
}

/// An echo request from the sandbox.
pub struct Echo<'a> {
    pub src: IpAddr,
    pub dst: IpAddr,
    pub ident: u16,
    pub seq: u16,
    pub data: &'a [u8],
}

impl Flows {
    /// Sends `echo` out through a ping socket; `false` when it is not ours
    /// to handle (to the stack's own addresses: smoltcp answers).
    pub fn send_out(&mut self, cfg: &Config, mac: EthernetAddress, echo: &Echo) -> bool {
        let own = [
            IpAddr::V4(cfg.gateway),
            IpAddr::V4(cfg.dns),
            IpAddr::V6(cfg.gateway6),
            IpAddr::V6(cfg.dns6),
        ];
        if own.contains(&echo.dst) {
            return false;
        }
        self.guest_mac = Some(mac);
        let Some(to) = cfg.host_destination(SocketAddr::new(echo.dst, 0)) else {
            return true; // dropped
        };
        let key = (echo.src, echo.dst, echo.ident);
        let Some(host) = self.sockets.get_or_open(key, || ping_socket(to)) else {
            return true; // no ping sockets for this user: unanswered
        };
        // The kernel puts its own identifier in; the sequence and data pass.
        let mut msg = vec![0u8; 8 + echo.data.len()];
        msg[0] = if echo.dst.is_ipv4() { 8 } else { 128 };
        msg[6..8].copy_from_slice(&echo.seq.to_be_bytes());
        msg[8..].copy_from_slice(echo.data);
        let _ = nix::sys::socket::send(
            host.as_raw_fd(),
            &msg,
            nix::sys::socket::MsgFlags::MSG_DONTWAIT,
        );
        true
    }

    /// Echo replies from the host, as frames to the sandbox.
    pub fn bring_replies(&mut self, tap: &Tap) {
        let Some(mac) = self.guest_mac else {
            return;
        };
        self.sockets.receive(|&(src, dst, ident), reply| {
            if reply.len() >= 8 {
                let seq = u16::from_be_bytes([reply[6], reply[7]]);
                if let Some(frame) = reply_frame(mac, dst, src, ident, seq, &reply[8..]) {
                    tap.write_frame(&frame);
                }
            }
        });
    }

    pub fn poll_fds(&self, fds: &mut Vec<libc::pollfd>) {
        self.sockets.poll_fds(fds);
    }
}

fn ping_socket(to: SocketAddr) -> std::io::Result<OwnedFd> {
    let (family, proto) = match to {
        SocketAddr::V4(_) => (AddressFamily::Inet, SockProtocol::Icmp),
        SocketAddr::V6(_) => (AddressFamily::Inet6, SockProtocol::IcmpV6),
    };
    let fd = socket(
        family,
        SockType::Datagram,
        SockFlag::SOCK_NONBLOCK | SockFlag::SOCK_CLOEXEC,
        proto,
    )?;
    connect(fd.as_raw_fd(), &SockaddrStorage::from(to))?;
    Ok(fd)
}

/// An echo reply from `from` to the sandbox's `to`.
fn reply_frame(
    mac: EthernetAddress,
    from: IpAddr,
    to: IpAddr,
    ident: u16,
    seq_no: u16,
    data: &[u8],
) -> Option<Vec<u8>> {
    let caps = ChecksumCapabilities::default();
    match (from, to) {
        (IpAddr::V4(s), IpAddr::V4(d)) => {
            let icmp = Icmpv4Repr::EchoReply {
                ident,
                seq_no,
                data,
            };
            let ip = Ipv4Repr {
                src_addr: s,
                dst_addr: d,
                next_header: IpProtocol::Icmp,
                payload_len: icmp.buffer_len(),
                hop_limit: 64,
            };
            let mut frame = vec![0u8; 14 + 20 + icmp.buffer_len()];
            let mut f = EthernetFrame::new_unchecked(&mut frame[..]);
            EthernetRepr {
                src_addr: EthernetAddress(GATEWAY_MAC),
                dst_addr: mac,
                ethertype: EthernetProtocol::Ipv4,
            }
            .emit(&mut f);
            let mut p = Ipv4Packet::new_unchecked(f.payload_mut());
            ip.emit(&mut p, &caps);
            icmp.emit(&mut Icmpv4Packet::new_unchecked(p.payload_mut()), &caps);
            Some(frame)
        }
        (IpAddr::V6(s), IpAddr::V6(d)) => {
            let icmp = Icmpv6Repr::EchoReply {
                ident,
                seq_no,
                data,
            };
            let ip = Ipv6Repr {
                src_addr: s,
                dst_addr: d,
                next_header: IpProtocol::Icmpv6,
                payload_len: icmp.buffer_len(),
                hop_limit: 64,
            };
            let mut frame = vec![0u8; 14 + 40 + icmp.buffer_len()];
            let mut f = EthernetFrame::new_unchecked(&mut frame[..]);
            EthernetRepr {
                src_addr: EthernetAddress(GATEWAY_MAC),
                dst_addr: mac,
                ethertype: EthernetProtocol::Ipv6,
            }
            .emit(&mut f);
            let mut p = Ipv6Packet::new_unchecked(f.payload_mut());
            ip.emit(&mut p);
            icmp.emit(
                &s,
                &d,
                &mut Icmpv6Packet::new_unchecked(p.payload_mut()),
                &caps,
            );
            Some(frame)
        }
        _ => None,
    }
}

//! UDP from the sandbox, datagram by datagram: one connected host socket
//! per (sandbox address, destination) flow; replies are built into frames
//! here. DNS is the same with the forwarder's address mapped to the host's
//! resolver.

use std::net::{IpAddr, SocketAddr};
use std::os::fd::AsRawFd;
use std::time::Duration;

use nix::sys::socket::SockType;
use smoltcp::phy::ChecksumCapabilities;
use smoltcp::wire::{
    EthernetAddress, EthernetFrame, EthernetProtocol, EthernetRepr, IpAddress, IpProtocol,
    Ipv4Packet, Ipv4Repr, Ipv6Packet, Ipv6Repr, UdpPacket, UdpRepr,
};

use crate::sockets::HostSockets;
use crate::{connect_nonblocking, Config, Tap, GATEWAY_MAC};

/// A flow with no traffic for this long is forgotten.
const IDLE: Duration = Duration::from_secs(60);

/// Flows at most (a host socket each); the least recently used goes first.
const MAX_FLOWS: usize = 4096;

pub struct Flows {
    sockets: HostSockets<(SocketAddr, SocketAddr)>,
    /// The sandbox's MAC address, learnt from its frames.
    guest_mac: Option<EthernetAddress>,
}

impl Flows {
    /// Datagrams longer than the tap's MTU allows are cut.
    pub fn new(mtu: usize) -> Self {
        Flows {
            sockets: HostSockets::new(MAX_FLOWS, IDLE, mtu.saturating_sub(28).max(512)),
            guest_mac: None,
        }
    }
}

impl Flows {
    pub fn send_out(&mut self, cfg: &Config, frame: &[u8], src: SocketAddr, dst: SocketAddr) {
        let Ok(eth) = EthernetFrame::new_checked(frame) else {
            return;
        };
        self.guest_mac = Some(eth.src_addr());
        let Some(to) = cfg.host_destination(dst) else {
            return;
        };
        let Some((_, _, _, segment)) = crate::l4(frame) else {
            return;
        };
        let Ok(udp) = UdpPacket::new_checked(segment) else {
            return;
        };
        let open = || connect_nonblocking(cfg, to, SockType::Datagram);
        if let Some(host) = self.sockets.get_or_open((src, dst), open) {
            let _ = nix::sys::socket::send(
                host.as_raw_fd(),
                udp.payload(),
                nix::sys::socket::MsgFlags::MSG_DONTWAIT,
            );
        }
    }

    /// Replies from the host, as frames to the sandbox.
    pub fn bring_replies(&mut self, tap: &Tap) {
        let Some(mac) = self.guest_mac else {
            return;
        };
        self.sockets.receive(|&(src, dst), payload| {
            let frame = reply_frame(mac, dst, src, payload);
            if !frame.is_empty() {
                tap.write_frame(&frame);
            }
        });
    }

    pub fn poll_fds(&self, fds: &mut Vec<libc::pollfd>) {
        self.sockets.poll_fds(fds);
    }
}

/// An Ethernet frame carrying `payload` from `from` to the sandbox's `to`.
fn reply_frame(mac: EthernetAddress, from: SocketAddr, to: SocketAddr, payload: &[u8]) -> Vec<u8> {
    let udp = UdpRepr {
        src_port: from.port(),
        dst_port: to.port(),
    };
    let caps = ChecksumCapabilities::default();
    let (ethertype, ip_len) = match from.ip() {
        IpAddr::V4(_) => (EthernetProtocol::Ipv4, 20),
        IpAddr::V6(_) => (EthernetProtocol::Ipv6, 40),
    };
    let eth = EthernetRepr {
        src_addr: EthernetAddress(GATEWAY_MAC),
        dst_addr: mac,
        ethertype,
    };
    let mut frame = vec![0u8; 14 + ip_len + 8 + payload.len()];
    let mut f = EthernetFrame::new_unchecked(&mut frame[..]);
    eth.emit(&mut f);
    let (src, dst, segment) = match (from.ip(), to.ip()) {
        (IpAddr::V4(s), IpAddr::V4(d)) => {
            let ip = Ipv4Repr {
                src_addr: s,
                dst_addr: d,
                next_header: IpProtocol::Udp,
                payload_len: 8 + payload.len(),
                hop_limit: 64,
            };
            let mut p = Ipv4Packet::new_unchecked(f.payload_mut());
            ip.emit(&mut p, &caps);
            (
                IpAddress::Ipv4(s),
                IpAddress::Ipv4(d),
                &mut f.payload_mut()[20..],
            )
        }
        (IpAddr::V6(s), IpAddr::V6(d)) => {
            let ip = Ipv6Repr {
                src_addr: s,
                dst_addr: d,
                next_header: IpProtocol::Udp,
                payload_len: 8 + payload.len(),
                hop_limit: 64,
            };
            let mut p = Ipv6Packet::new_unchecked(f.payload_mut());
            ip.emit(&mut p);
            (
                IpAddress::Ipv6(s),
                IpAddress::Ipv6(d),
                &mut f.payload_mut()[40..],
            )
        }
        _ => return Vec::new(),
    };
    let mut u = UdpPacket::new_unchecked(segment);
    udp.emit(
        &mut u,
        &src,
        &dst,
        payload.len(),
        |buf| buf.copy_from_slice(payload),
        &caps,
    );
    frame
}

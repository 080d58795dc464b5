//! UDP from the sandbox, datagram by datagram: one connected host socket
//! per (sandbox address, destination) flow; replies are built into frames
//! here. DNS is the same with the forwarder's address mapped to the host's
//! resolver.

use std::collections::HashMap;
use std::net::SocketAddrV4;
use std::os::fd::{AsRawFd, OwnedFd};
use std::time::{Duration, Instant};

use nix::sys::socket::SockType;
use smoltcp::phy::ChecksumCapabilities;
use smoltcp::wire::{
    EthernetAddress, EthernetFrame, EthernetProtocol, EthernetRepr, IpAddress, IpProtocol,
    Ipv4Packet, Ipv4Repr, UdpPacket, UdpRepr,
};

use crate::{connect_nonblocking, Config, Tap, GATEWAY_MAC};

/// A flow with no traffic for this long is forgotten.
const IDLE: Duration = Duration::from_secs(60);

struct Flow {
    host: OwnedFd,
    last: Instant,
}

#[derive(Default)]
pub struct Flows {
    flows: HashMap<(SocketAddrV4, SocketAddrV4), Flow>,
    /// The sandbox's MAC address, learnt from its frames.
    guest_mac: Option<EthernetAddress>,
}

impl Flows {
    pub fn send_out(&mut self, cfg: &Config, frame: &[u8], src: SocketAddrV4, dst: SocketAddrV4) {
        let Ok(eth) = EthernetFrame::new_checked(frame) else {
            return;
        };
        self.guest_mac = Some(eth.src_addr());
        let Some(to) = cfg.host_destination(dst, true) else {
            return;
        };
        let flow = match self.flows.entry((src, dst)) {
            std::collections::hash_map::Entry::Occupied(e) => e.into_mut(),
            std::collections::hash_map::Entry::Vacant(e) => {
                let Ok(host) = connect_nonblocking(to, SockType::Datagram) else {
                    return;
                };
                e.insert(Flow {
                    host,
                    last: Instant::now(),
                })
            }
        };
        flow.last = Instant::now();
        let Ok(ip) = Ipv4Packet::new_checked(eth.payload()) else {
            return;
        };
        let Ok(udp) = UdpPacket::new_checked(ip.payload()) else {
            return;
        };
        let _ = nix::sys::socket::send(
            flow.host.as_raw_fd(),
            udp.payload(),
            nix::sys::socket::MsgFlags::MSG_DONTWAIT,
        );
    }

    /// Replies from the host, as frames to the sandbox.
    pub fn bring_replies(&mut self, tap: &Tap, mtu: usize) {
        let Some(mac) = self.guest_mac else {
            return;
        };
        let mut buf = vec![0u8; mtu.saturating_sub(28).max(512)];
        let now = Instant::now();
        self.flows.retain(|&(src, dst), flow| {
            while let Ok(n) = nix::sys::socket::recv(
                flow.host.as_raw_fd(),
                &mut buf,
                nix::sys::socket::MsgFlags::MSG_DONTWAIT,
            ) {
                flow.last = now;
                tap.write_frame(&reply_frame(mac, dst, src, &buf[..n]));
            }
            now.duration_since(flow.last) < IDLE
        });
    }

    pub fn poll_fds(&self, fds: &mut Vec<libc::pollfd>) {
        for flow in self.flows.values() {
            fds.push(libc::pollfd {
                fd: flow.host.as_raw_fd(),
                events: libc::POLLIN,
                revents: 0,
            });
        }
    }
}

/// An Ethernet frame carrying `payload` from `from` to the sandbox's `to`.
fn reply_frame(
    mac: EthernetAddress,
    from: SocketAddrV4,
    to: SocketAddrV4,
    payload: &[u8],
) -> Vec<u8> {
    let udp = UdpRepr {
        src_port: from.port(),
        dst_port: to.port(),
    };
    let ip = Ipv4Repr {
        src_addr: *from.ip(),
        dst_addr: *to.ip(),
        next_header: IpProtocol::Udp,
        payload_len: 8 + payload.len(),
        hop_limit: 64,
    };
    let eth = EthernetRepr {
        src_addr: EthernetAddress(GATEWAY_MAC),
        dst_addr: mac,
        ethertype: EthernetProtocol::Ipv4,
    };
    let mut frame = vec![0u8; 14 + 20 + 8 + payload.len()];
    let caps = ChecksumCapabilities::default();
    let mut f = EthernetFrame::new_unchecked(&mut frame[..]);
    eth.emit(&mut f);
    let mut p = Ipv4Packet::new_unchecked(f.payload_mut());
    ip.emit(&mut p, &caps);
    let mut u = UdpPacket::new_unchecked(p.payload_mut());
    udp.emit(
        &mut u,
        &IpAddress::Ipv4(*from.ip()),
        &IpAddress::Ipv4(*to.ip()),
        payload.len(),
        |buf| buf.copy_from_slice(payload),
        &caps,
    );
    frame
}

//! TCP from the sandbox: each connection is a smoltcp socket on the
//! sandbox's side and a host socket on the other, with bytes pumped
//! between the two buffers.

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::os::fd::{AsRawFd, OwnedFd};

use nix::errno::Errno;
use nix::sys::socket::SockType;
use smoltcp::iface::{SocketHandle, SocketSet};
use smoltcp::socket::tcp;
use smoltcp::wire::{IpAddress, IpListenEndpoint};

use crate::{borrow, connect_nonblocking, Config};

/// Bytes each side of a connection may have in flight inside the stack.
const BUFFER: usize = 256 * 1024;

type Key = (SocketAddr, SocketAddr);

/// A connection whose host side is still connecting (`None`: refused
/// before trying), and the SYN that opened it.
struct Pending {
    host: Option<OwnedFd>,
    syn: Vec<u8>,
}

struct Flow {
    handle: SocketHandle,
    host: OwnedFd,
    host_eof: bool,
    host_shut: bool,
}

#[derive(Default)]
pub struct Flows {
    pending: HashMap<Key, Pending>,
    active: HashMap<Key, Flow>,
}

impl Flows {
    pub fn is_known(&self, src: SocketAddr, dst: SocketAddr) -> bool {
        self.pending.contains_key(&(src, dst)) || self.active.contains_key(&(src, dst))
    }

    /// Whether a SYN for a known connection goes on to smoltcp (a
    /// retransmission for an established one) or is dropped (still
    /// connecting on the host: its first SYN is held).
    pub fn is_active(&self, src: SocketAddr, dst: SocketAddr) -> bool {
        self.active.contains_key(&(src, dst))
    }

    /// A new connection from the sandbox: starts the host side.
    pub fn start(&mut self, cfg: &Config, src: SocketAddr, dst: SocketAddr, syn: Vec<u8>) {
        let host = cfg
            .host_destination(dst)
            .and_then(|to| connect_nonblocking(cfg, to, SockType::Stream).ok());
        self.pending.insert((src, dst), Pending { host, syn });
    }

    /// Connections whose host side succeeded get a listening smoltcp
    /// socket; those that failed get none. Either way their SYN is let
    /// through now, so smoltcp answers SYN-ACK or RST.
    pub fn settle(&mut self, sockets: &mut SocketSet<'static>) -> Vec<Vec<u8>> {
        let mut ready = Vec::new();
        let keys: Vec<Key> = self.pending.keys().copied().collect();
        for key in keys {
            let state = match &self.pending[&key].host {
                None => Some(false),
                Some(fd) => connect_result(fd),
            };
            let Some(connected) = state else {
                continue; // still connecting
            };
            let p = self.pending.remove(&key).expect("pending key");
            if connected {
                let mut sock = tcp::Socket::new(
                    tcp::SocketBuffer::new(vec![0; BUFFER]),
                    tcp::SocketBuffer::new(vec![0; BUFFER]),
                );
                sock.set_nagle_enabled(false);
                // A peer that stops answering ends the connection, rather
                // than holding its buffers and host socket for ever.
                sock.set_timeout(Some(smoltcp::time::Duration::from_secs(120)));
                let (_, dst) = key;
                let addr = match dst.ip() {
                    IpAddr::V4(ip) => IpAddress::Ipv4(ip),
                    IpAddr::V6(ip) => IpAddress::Ipv6(ip),
                };
                let listen = IpListenEndpoint {
                    addr: Some(addr),
                    port: dst.port(),
                };
                if sock.listen(listen).is_ok() {
                    let handle = sockets.add(sock);
                    self.active.insert(
                        key,
                        Flow {
                            handle,
                            host: p.host.expect("connected host socket"),
                            host_eof: false,
                            host_shut: false,
                        },
                    );
                }
            }
            ready.push(p.syn);
        }
        ready
    }

    /// Moves bytes both ways, as far as buffers and sockets allow.
    pub fn pump(&mut self, sockets: &mut SocketSet<'static>) {
        for flow in self.active.values_mut() {
            let sock = sockets.get_mut::<tcp::Socket>(flow.handle);
            let fd = flow.host.as_raw_fd();
            // Sandbox to host.
            while sock.can_recv() {
                let wrote = sock.recv(|buf| match nix::unistd::write(borrow(&flow.host), buf) {
                    Ok(n) => (n, Ok(n)),
                    Err(Errno::EAGAIN) => (0, Ok(0)),
                    Err(e) => (0, Err(e)),
                });
                match wrote {
                    Ok(Ok(n)) if n > 0 => {}
                    Ok(Err(_)) => {
                        sock.abort();
                        break;
                    }
                    _ => break,
                }
            }
            if !sock.may_recv()
                && !sock.can_recv()
                && !flow.host_shut
                && sock.state() != tcp::State::Listen
                && sock.state() != tcp::State::SynReceived
            {
                let _ = nix::sys::socket::shutdown(fd, nix::sys::socket::Shutdown::Write);
                flow.host_shut = true;
            }
            // Host to sandbox.
            while !flow.host_eof && sock.can_send() {
                let read = sock.send(|buf| match nix::unistd::read(&flow.host, buf) {
                    Ok(n) => (n, Ok(n)),
                    Err(Errno::EAGAIN) => (0, Err(Errno::EAGAIN)),
                    Err(e) => (0, Err(e)),
                });
                match read {
                    Ok(Ok(0)) => {
                        flow.host_eof = true;
                        sock.close();
                    }
                    Ok(Ok(_)) => {}
                    Ok(Err(Errno::EAGAIN)) => break,
                    Ok(Err(_)) => {
                        sock.abort();
                        break;
                    }
                    Err(_) => break,
                }
            }
        }
    }

    /// Forgets connections that are over on both sides. A socket still
    /// (or again) listening has had its SYN: smoltcp refused it, or the
    /// sandbox reset the half-open connection (a client that gave up). Left
    /// listening, it would take the next SYN to its address from anyone.
    pub fn reap(&mut self, sockets: &mut SocketSet<'static>) {
        self.active.retain(|_, flow| {
            let state = sockets.get::<tcp::Socket>(flow.handle).state();
            let done = matches!(
                state,
                tcp::State::Closed | tcp::State::TimeWait | tcp::State::Listen
            );
            if done {
                sockets.remove(flow.handle);
            }
            !done
        });
    }

    /// What to wait for on the host sockets.
    pub fn poll_fds(&self, sockets: &SocketSet<'static>, fds: &mut Vec<libc::pollfd>) {
        for p in self.pending.values() {
            if let Some(fd) = &p.host {
                fds.push(libc::pollfd {
                    fd: fd.as_raw_fd(),
                    events: libc::POLLOUT,
                    revents: 0,
                });
            }
        }
        for flow in self.active.values() {
            let sock = sockets.get::<tcp::Socket>(flow.handle);
            let mut events = 0;
            if !flow.host_eof && sock.can_send() {
                events |= libc::POLLIN;
            }
            if sock.can_recv() {
                events |= libc::POLLOUT;
            }
            if events != 0 {
                fds.push(libc::pollfd {
                    fd: flow.host.as_raw_fd(),
                    events,
                    revents: 0,
                });
            }
        }
    }
}

/// `Some(true)` connected, `Some(false)` failed, `None` still trying.
fn connect_result(fd: &OwnedFd) -> Option<bool> {
    use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
    let mut p = [PollFd::new(borrow(fd), PollFlags::POLLOUT)];
    if !matches!(poll(&mut p, PollTimeout::ZERO), Ok(n) if n > 0) {
        return None;
    }
    let err = nix::sys::socket::getsockopt(fd, nix::sys::socket::sockopt::SocketError).unwrap_or(1);
    Some(err == 0)
}

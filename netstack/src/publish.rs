//! Published ports (burrow's `--publish`, burrow-net's `add_hostfwd`):
//! connections accepted on the host are relayed kernel to kernel into the
//! sandbox's network namespace — a socket connected inside it, and
//! `splice(2)` through a pipe each way — so their bytes never pass through
//! the userspace stack. UDP: one socket inside per host-side peer, the
//! datagrams passed between the two sockets.

use std::collections::{BTreeMap, HashMap};
use std::net::{SocketAddr, SocketAddrV4, TcpListener, UdpSocket};
use std::os::fd::{AsFd, AsRawFd, OwnedFd};
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use nix::fcntl::{splice, SpliceFFlags};
use nix::sched::CloneFlags;
use nix::sys::socket::{
    connect, shutdown, socket, AddressFamily, Shutdown, SockFlag, SockType, SockaddrIn,
};

/// One forwarding: connections to `host` reach `guest` inside.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Forward {
    pub host: SocketAddr,
    pub guest: SocketAddrV4,
    pub udp: bool,
}

/// A UDP peer with no traffic for this long is forgotten.
const UDP_IDLE: Duration = Duration::from_secs(60);

/// Where the network namespace is: held open (burrow, which ends its
/// helper with the sandbox), or reopened for every connection (burrow-net,
/// so that it holds no reference that would keep the namespace alive).
pub enum Namespace {
    Held(OwnedFd),
    Path(PathBuf),
}

/// The forwardings into one network namespace.
pub struct Publisher {
    netns: Namespace,
    entries: Mutex<BTreeMap<u32, (Forward, OwnedFd)>>,
    /// The next forwarding's id: never reused, as slirp4netns' are not.
    next_id: std::sync::atomic::AtomicU32,
}

impl Publisher {
    /// The calling process must already be in the namespace's user
    /// namespace: connections are made by short-lived threads that join
    /// the network namespace (`setns` of a network namespace applies to
    /// one thread; a thread that ends lets go of it).
    pub fn new(netns: Namespace) -> Arc<Publisher> {
        Arc::new(Publisher {
            netns,
            entries: Mutex::new(BTreeMap::new()),
            next_id: std::sync::atomic::AtomicU32::new(1),
        })
    }

    /// A socket connected to `to` inside the namespace.
    fn connect_inside(&self, to: SocketAddrV4, kind: SockType) -> std::io::Result<OwnedFd> {
        let netns: OwnedFd = match &self.netns {
            Namespace::Held(fd) => fd.try_clone()?,
            Namespace::Path(p) => std::fs::File::open(p)?.into(),
        };
        std::thread::spawn(move || {
            nix::sched::setns(&netns, CloneFlags::CLONE_NEWNET)?;
            let fd = socket(AddressFamily::Inet, kind, SockFlag::SOCK_CLOEXEC, None)?;
            connect(fd.as_raw_fd(), &SockaddrIn::from(to))?;
            Ok(fd)
        })
        .join()
        .map_err(|_| std::io::Error::other("the connecting thread died"))?
    }

    /// Forwards connections accepted on `listener` to `guest` inside;
    /// returns the forwarding's id.
    pub fn add(
        self: &Arc<Self>,
        listener: TcpListener,
        guest: SocketAddrV4,
    ) -> std::io::Result<u32> {
        let host = listener.local_addr()?;
        let handle = OwnedFd::from(listener.try_clone()?);
        let mut entries = self.entries.lock().unwrap_or_else(|e| e.into_inner());
        let id = self
            .next_id
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        entries.insert(
            id,
            (
                Forward {
                    host,
                    guest,
                    udp: false,
                },
                handle,
            ),
        );
        drop(entries);
        let me = Arc::clone(self);
        std::thread::spawn(move || {
            for conn in listener.incoming() {
                let outside = match conn {
                    Ok(c) => c,
                    // Shut down by `remove`.
                    Err(_) if !me.has(id) => return,
                    // Out of descriptors, an aborted connection...: the
                    // port stays published.
                    Err(_) => {
                        std::thread::sleep(Duration::from_millis(50));
                        continue;
                    }
                };
                let Ok(inside) = me.connect_inside(guest, SockType::Stream) else {
                    continue; // nothing listens inside: the client sees the close
                };
                relay(outside.into(), inside);
            }
        });
        Ok(id)
    }

    /// Forwards datagrams arriving on `sock` to `guest` inside, and the
    /// answers back to their senders; returns the forwarding's id.
    pub fn add_udp(self: &Arc<Self>, sock: UdpSocket, guest: SocketAddrV4) -> std::io::Result<u32> {
        let host = sock.local_addr()?;
        let handle = OwnedFd::from(sock.try_clone()?);
        let mut entries = self.entries.lock().unwrap_or_else(|e| e.into_inner());
        let id = self
            .next_id
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let forward = Forward {
            host,
            guest,
            udp: true,
        };
        entries.insert(id, (forward, handle));
        drop(entries);
        let me = Arc::clone(self);
        let sock = Arc::new(sock);
        std::thread::spawn(move || {
            let peers: Arc<Mutex<HashMap<SocketAddr, Arc<UdpSocket>>>> = Arc::default();
            let mut buf = vec![0u8; 65536];
            loop {
                let (n, peer) = match sock.recv_from(&mut buf) {
                    Ok(got) if me.has(id) => got,
                    Err(_) if me.has(id) => {
                        std::thread::sleep(Duration::from_millis(50));
                        continue;
                    }
                    _ => return, // shut down by `remove`
                };
                let known = peers
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .get(&peer)
                    .cloned();
                let inside = match known {
                    Some(s) => s,
                    None => {
                        let Ok(fd) = me.connect_inside(guest, SockType::Datagram) else {
                            continue;
                        };
                        let inside = Arc::new(UdpSocket::from(fd));
                        let _ = inside.set_read_timeout(Some(UDP_IDLE));
                        peers
                            .lock()
                            .unwrap_or_else(|e| e.into_inner())
                            .insert(peer, Arc::clone(&inside));
                        let (inside2, sock2, peers2) =
                            (Arc::clone(&inside), Arc::clone(&sock), Arc::clone(&peers));
                        std::thread::spawn(move || {
                            let mut buf = vec![0u8; 65536];
                            // Answers go back until the peer is idle.
                            while let Ok(n) = inside2.recv(&mut buf) {
                                let _ = sock2.send_to(&buf[..n], peer);
                            }
                            peers2
                                .lock()
                                .unwrap_or_else(|e| e.into_inner())
                                .remove(&peer);
                        });
                        inside
                    }
                };
                let _ = inside.send(&buf[..n]);
            }
        });
        Ok(id)
    }

    fn has(&self, id: u32) -> bool {
        self.entries
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .contains_key(&id)
    }

    /// Stops forwarding `id`; `false` when there is no such forwarding.
    pub fn remove(&self, id: u32) -> bool {
        let Some((_, fd)) = self
            .entries
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(&id)
        else {
            return false;
        };
        // Wakes the accepting thread (accept fails), which then ends.
        let _ = shutdown(fd.as_raw_fd(), Shutdown::Both);
        true
    }

    pub fn list(&self) -> Vec<(u32, Forward)> {
        self.entries
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .iter()
            .map(|(id, (f, _))| (*id, *f))
            .collect()
    }
}

/// Two threads, one per direction.
fn relay(a: OwnedFd, b: OwnedFd) {
    let (a2, b2) = match (a.try_clone(), b.try_clone()) {
        (Ok(a2), Ok(b2)) => (a2, b2),
        _ => return,
    };
    std::thread::spawn(move || pump(&a, &b));
    std::thread::spawn(move || pump(&b2, &a2));
}

/// Moves bytes from `from` to `to` through a pipe until `from` ends, then
/// passes the end on.
fn pump(from: &OwnedFd, to: &OwnedFd) {
    let Ok((r, w)) = nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC) else {
        return;
    };
    // A bigger pipe moves more per call (best effort).
    let _ = nix::fcntl::fcntl(&w, nix::fcntl::FcntlArg::F_SETPIPE_SZ(1 << 20));
    let flags = SpliceFFlags::SPLICE_F_MOVE | SpliceFFlags::SPLICE_F_MORE;
    loop {
        let n = match splice(from.as_fd(), None, w.as_fd(), None, 1 << 20, flags) {
            Ok(0) | Err(_) => break,
            Ok(n) => n,
        };
        let mut left = n;
        while left > 0 {
            match splice(r.as_fd(), None, to.as_fd(), None, left, flags) {
                Ok(0) | Err(_) => {
                    let _ = shutdown(from.as_raw_fd(), Shutdown::Read);
                    return;
                }
                Ok(m) => left -= m,
            }
        }
    }
    let _ = shutdown(to.as_raw_fd(), Shutdown::Write);
}

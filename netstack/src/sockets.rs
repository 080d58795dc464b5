//! Host sockets by flow, for the translations that keep one per flow (UDP,
//! ICMP echo): at most a given number (the least recently used goes
//! first), forgotten when idle.

use std::collections::HashMap;
use std::hash::Hash;
use std::os::fd::{AsRawFd, OwnedFd};
use std::time::{Duration, Instant};

struct Flow {
    host: OwnedFd,
    last: Instant,
}

pub struct HostSockets<K> {
    flows: HashMap<K, Flow>,
    max: usize,
    idle: Duration,
    /// Where datagrams are read: allocated once, not per turn of the loop.
    buf: Vec<u8>,
}

impl<K: Hash + Eq + Copy> HostSockets<K> {
    /// At most `max` flows, forgotten after `idle`; datagrams longer than
    /// `datagram` bytes are cut.
    pub fn new(max: usize, idle: Duration, datagram: usize) -> Self {
        HostSockets {
            flows: HashMap::new(),
            max,
            idle,
            buf: vec![0; datagram],
        }
    }

    /// The socket of flow `key`, opened with `open` when new; `None` when
    /// it cannot be opened.
    pub fn get_or_open(
        &mut self,
        key: K,
        open: impl FnOnce() -> std::io::Result<OwnedFd>,
    ) -> Option<&OwnedFd> {
        if self.flows.len() >= self.max && !self.flows.contains_key(&key) {
            let oldest = self
                .flows
                .iter()
                .min_by_key(|(_, f)| f.last)
                .map(|(k, _)| *k);
            if let Some(oldest) = oldest {
                self.flows.remove(&oldest);
            }
        }
        let flow = match self.flows.entry(key) {
            std::collections::hash_map::Entry::Occupied(e) => e.into_mut(),
            std::collections::hash_map::Entry::Vacant(e) => e.insert(Flow {
                host: open().ok()?,
                last: Instant::now(),
            }),
        };
        flow.last = Instant::now();
        Some(&flow.host)
    }

    /// Hands every waiting datagram of every flow to `each`; forgets flows
    /// idle for too long.
    pub fn receive(&mut self, mut each: impl FnMut(&K, &[u8])) {
        if self.flows.is_empty() {
            return;
        }
        let now = Instant::now();
        let idle = self.idle;
        let buf = &mut self.buf;
        self.flows.retain(|key, flow| {
            while let Ok(n) = nix::sys::socket::recv(
                flow.host.as_raw_fd(),
                buf.as_mut_slice(),
                nix::sys::socket::MsgFlags::MSG_DONTWAIT,
            ) {
                flow.last = now;
                each(key, &buf[..n]);
            }
            now.duration_since(flow.last) < idle
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

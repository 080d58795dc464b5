//! The tap device as smoltcp sees it: frames read from the tap fd wait in
//! a queue (the stack looks at them first), frames smoltcp sends are
//! written straight to the fd.

use std::collections::VecDeque;
use std::os::fd::{AsRawFd, OwnedFd};

use smoltcp::phy::{self, DeviceCapabilities, Medium};
use smoltcp::time::Instant;

pub struct Tap {
    fd: OwnedFd,
    pub rx: VecDeque<Vec<u8>>,
    mtu: usize,
    /// Frames are read here and copied out at their length: a fresh
    /// MTU-sized buffer per frame would cost an allocation and a fill.
    scratch: Vec<u8>,
}

impl Tap {
    pub fn new(fd: OwnedFd, mtu: usize) -> Tap {
        Tap {
            fd,
            rx: VecDeque::new(),
            mtu,
            scratch: vec![0; mtu + 14],
        }
    }

    pub fn raw_fd(&self) -> i32 {
        self.fd.as_raw_fd()
    }

    /// Reads one frame; `Ok(None)` when none is waiting.
    pub fn read_frame(&mut self) -> std::io::Result<Option<Vec<u8>>> {
        match nix::unistd::read(&self.fd, &mut self.scratch) {
            Ok(0) => Err(std::io::Error::from(std::io::ErrorKind::UnexpectedEof)),
            Ok(n) => Ok(Some(self.scratch[..n].to_vec())),
            Err(nix::errno::Errno::EAGAIN) => Ok(None),
            Err(e) => Err(e.into()),
        }
    }

    /// Writes one frame; dropped when the tap's queue is full (TCP sends
    /// it again, UDP may lose it, as on a wire).
    pub fn write_frame(&self, frame: &[u8]) {
        let _ = nix::unistd::write(&self.fd, frame);
    }
}

pub struct RxToken(Vec<u8>);
pub struct TxToken<'a>(&'a Tap);

impl phy::RxToken for RxToken {
    fn consume<R, F: FnOnce(&[u8]) -> R>(self, f: F) -> R {
        f(&self.0)
    }
}

impl phy::TxToken for TxToken<'_> {
    fn consume<R, F: FnOnce(&mut [u8]) -> R>(self, len: usize, f: F) -> R {
        let mut buf = vec![0u8; len];
        let r = f(&mut buf);
        self.0.write_frame(&buf);
        r
    }
}

impl phy::Device for Tap {
    type RxToken<'a> = RxToken;
    type TxToken<'a> = TxToken<'a>;

    fn receive(&mut self, _: Instant) -> Option<(RxToken, TxToken<'_>)> {
        let frame = self.rx.pop_front()?;
        Some((RxToken(frame), TxToken(self)))
    }

    fn transmit(&mut self, _: Instant) -> Option<TxToken<'_>> {
        Some(TxToken(self))
    }

    fn capabilities(&self) -> DeviceCapabilities {
        let mut caps = DeviceCapabilities::default();
        caps.medium = Medium::Ethernet;
        caps.max_transmission_unit = self.mtu + 14;
        caps
    }
}

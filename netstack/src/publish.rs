//! Published ports (`--publish HOSTPORT:SANDBOXPORT`): connections accepted
//! on the host are relayed kernel to kernel into the sandbox's network
//! namespace — a socket connected inside it, and `splice(2)` through a
//! pipe each way — so their bytes never pass through the userspace stack.

use std::net::TcpListener;
use std::os::fd::{AsFd, OwnedFd};
use std::sync::mpsc;

use nix::fcntl::{splice, SpliceFFlags};
use nix::sched::CloneFlags;
use nix::sys::socket::{
    connect, shutdown, socket, AddressFamily, Shutdown, SockFlag, SockType, SockaddrIn,
};

/// One published TCP port.
pub struct Published {
    pub listener: TcpListener,
    /// The port inside the sandbox (connected to on its 127.0.0.1).
    pub sandbox_port: u16,
}

/// A request to the thread that lives in the sandbox's network namespace.
type Request = (u16, mpsc::Sender<std::io::Result<OwnedFd>>);

/// Starts relaying `ports` into the network namespace `netns`. The
/// calling process must already be in that namespace's user namespace
/// (so that it may join it) — `setns` of a network namespace applies to
/// one thread, which is all that joins it.
pub fn start(ports: Vec<Published>, netns: OwnedFd) -> std::io::Result<()> {
    if ports.is_empty() {
        return Ok(());
    }
    let (tx, rx) = mpsc::channel::<Request>();
    let (ready_tx, ready_rx) = mpsc::channel();
    std::thread::spawn(move || {
        let joined =
            nix::sched::setns(&netns, CloneFlags::CLONE_NEWNET).map_err(std::io::Error::from);
        let ok = joined.is_ok();
        let _ = ready_tx.send(joined);
        if !ok {
            return;
        }
        for (port, reply) in rx {
            let _ = reply.send(connect_inside(port));
        }
    });
    ready_rx
        .recv()
        .map_err(|_| std::io::Error::other("the namespace thread died"))??;
    for p in ports {
        let tx = tx.clone();
        std::thread::spawn(move || {
            for conn in p.listener.incoming() {
                let Ok(outside) = conn else { continue };
                let (reply_tx, reply_rx) = mpsc::channel();
                if tx.send((p.sandbox_port, reply_tx)).is_err() {
                    return;
                }
                let Ok(Ok(inside)) = reply_rx.recv() else {
                    continue; // nothing listens inside: the client sees the close
                };
                let outside: OwnedFd = outside.into();
                relay(outside, inside);
            }
        });
    }
    Ok(())
}

fn connect_inside(port: u16) -> std::io::Result<OwnedFd> {
    let fd = socket(
        AddressFamily::Inet,
        SockType::Stream,
        SockFlag::SOCK_CLOEXEC,
        None,
    )?;
    connect(
        std::os::fd::AsRawFd::as_raw_fd(&fd),
        &SockaddrIn::new(127, 0, 0, 1, port),
    )?;
    Ok(fd)
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
                    let _ = shutdown(std::os::fd::AsRawFd::as_raw_fd(from), Shutdown::Read);
                    return;
                }
                Ok(m) => left -= m,
            }
        }
    }
    let _ = shutdown(std::os::fd::AsRawFd::as_raw_fd(to), Shutdown::Write);
}

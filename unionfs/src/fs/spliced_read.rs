//! READ answered by splicing. The layer file's pages go into a pipe by
//! reference, and from the pipe into /dev/fuse, where the kernel copies
//! them once into the union's page cache. Reading them into a buffer and
//! writing that would copy each byte twice (and pin the buffer's pages
//! for every reply).
//!
//! fuser's replies are written from memory, so this writes the reply
//! itself, on the session's descriptor (see [`super::SessionSlots`]).

use std::cell::RefCell;
use std::fs::File;
use std::io;
use std::os::fd::{AsFd, OwnedFd};
use std::sync::OnceLock;

use nix::fcntl::{fcntl, splice, FcntlArg, OFlag, SpliceFFlags};

/// The reply's header as the kernel reads it (struct fuse_out_header: the
/// whole length, an error of 0, the request's id).
const HEADER: usize = 16;

/// Smaller replies are copied: for them the extra system calls of a
/// splice cost more than the copy it saves (spliced, burrowfs spent 15%
/// more CPU time serving `cat` of 11,100 files of 4 KiB).
const SPLICE_FROM: usize = 64 * 1024;

/// The most a worker's pipe is grown to: fs.pipe-max-size's default, the
/// most an unprivileged process may ask for. A READ of the kernel's
/// largest size (1 MiB) needs one buffer more and is copied.
const PIPE_MAX: usize = 1 << 20;

fn page_size() -> usize {
    static PAGE: OnceLock<usize> = OnceLock::new();
    *PAGE.get_or_init(|| {
        nix::unistd::sysconf(nix::unistd::SysconfVar::PAGE_SIZE)
            .ok()
            .flatten()
            .map_or(4096, |p| p as usize)
    })
}

/// A worker's pipe, empty between replies. Grown only as far as the READs
/// it carries need: its buffers count against the user's pipe allowance
/// (fs.pipe-user-pages-soft), which every process of the user shares.
struct Pipe {
    read: OwnedFd,
    write: OwnedFd,
    /// Its buffers (one per page spliced in, one for the header).
    slots: usize,
}

impl Pipe {
    fn new() -> io::Result<Pipe> {
        // Non-blocking: a pipe that somehow has no room fails the splice
        // (and the reply falls back to a copy) rather than stall a worker.
        let (read, write) = nix::unistd::pipe2(OFlag::O_CLOEXEC | OFlag::O_NONBLOCK)?;
        let bytes = fcntl(&write, FcntlArg::F_GETPIPE_SZ)?;
        Ok(Pipe {
            read,
            write,
            slots: bytes as usize / page_size(),
        })
    }

    /// Makes room for the header and `len` bytes from `off` (each page of
    /// the file may take a buffer of its own); false if it cannot.
    fn make_room(&mut self, off: u64, len: usize) -> bool {
        let page = page_size();
        let need = 1 + (off as usize % page + len).div_ceil(page);
        if need <= self.slots {
            return true;
        }
        let bytes = need.next_power_of_two() * page;
        if bytes > PIPE_MAX {
            return false;
        }
        match fcntl(&self.write, FcntlArg::F_SETPIPE_SZ(bytes as i32)) {
            Ok(got) => {
                self.slots = got as usize / page;
                need <= self.slots
            }
            Err(_) => false,
        }
    }
}

thread_local! {
    static PIPE: RefCell<Option<Pipe>> = const { RefCell::new(None) };
}

/// Answers READ request `unique` on `dev` with up to `size` bytes of
/// `file` at `off`. False when it did not (too little to send, too much
/// for the pipe, the file changed under it, or the kernel refused the
/// reply): the caller then answers as usual (and where the request is
/// gone, the kernel refuses that answer too).
pub fn read(dev: &OwnedFd, unique: u64, file: &File, off: u64, size: u32) -> bool {
    if (size as usize) < SPLICE_FROM {
        return false;
    }
    let Ok(meta) = file.metadata() else {
        return false;
    };
    let len = meta.len().saturating_sub(off).min(size as u64) as usize;
    if len < SPLICE_FROM {
        return false;
    }
    PIPE.with_borrow_mut(|slot| {
        let pipe = match slot {
            Some(p) => p,
            None => match Pipe::new() {
                Ok(p) => slot.insert(p),
                Err(_) => return false,
            },
        };
        if !pipe.make_room(off, len) {
            return false;
        }
        match send(dev, pipe, unique, file, off, len) {
            Ok(()) => true,
            Err(_) => {
                // Whatever it holds goes with it.
                *slot = None;
                false
            }
        }
    })
}

fn send(
    dev: &OwnedFd,
    pipe: &Pipe,
    unique: u64,
    file: &File,
    off: u64,
    len: usize,
) -> io::Result<()> {
    let mut header = [0u8; HEADER];
    header[..4].copy_from_slice(&((HEADER + len) as u32).to_ne_bytes());
    header[8..].copy_from_slice(&unique.to_ne_bytes());
    if nix::unistd::write(&pipe.write, &header)? != HEADER {
        return Err(io::ErrorKind::WriteZero.into());
    }
    let mut at = off as libc::loff_t;
    let mut left = len;
    while left > 0 {
        // The file may have shrunk since its size was read: the reply
        // would then be short of its header's length.
        match splice(
            file.as_fd(),
            Some(&mut at),
            &pipe.write,
            None,
            left,
            SpliceFFlags::empty(),
        )? {
            0 => return Err(io::ErrorKind::UnexpectedEof.into()),
            n => left -= n,
        }
    }
    // All or nothing: the kernel checks the pipe holds the whole reply
    // before it takes any of it.
    let sent = splice(
        &pipe.read,
        None,
        dev,
        None,
        HEADER + len,
        SpliceFFlags::empty(),
    )?;
    if sent != HEADER + len {
        return Err(io::ErrorKind::WriteZero.into());
    }
    Ok(())
}

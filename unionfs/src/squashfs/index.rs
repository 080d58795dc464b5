//! The index of an image: backhand parses the image's tables once, and
//! its tree is turned into burrowfs' compact one (names in one buffer,
//! each directory's children sorted by name, each file's block list).
//!
//! backhand may panic, recurse without end or allocate without bound on a
//! hostile image, and burrow's binaries abort on a panic: so an image is
//! indexed by a child process under address-space and CPU limits, which
//! sends the compact index back (see [`super::wire`]). backhand's tree, some
//! hundreds of bytes a node, never takes memory in the server.

use std::fs::File;
use std::io;
use std::os::unix::ffi::OsStrExt;

use backhand::compression::Compressor;
use backhand::{FilesystemReader, Fragment, InnerNode};

use super::{reason, FileData, Node};

/// Stack reserved for indexing: backhand walks directories recursively.
const PARSE_STACK: usize = 256 << 20;

/// Memory the trial index may take beyond what the process has: a base,
/// plus this many times the image's size, at most [`TRIAL_MAX`].
const TRIAL_BASE: u64 = 1 << 30;
const TRIAL_PER_BYTE: u64 = 64;
const TRIAL_MAX: u64 = 16 << 30;
/// CPU seconds the trial index may take, and seconds in all.
const TRIAL_CPU: u64 = 120;
const TRIAL_WALL: u64 = 300;

/// What [`super::Image::open`] builds from backhand's tree.
pub(super) struct Index {
    pub(super) block_size: u32,
    pub(super) compressor: Compressor,
    pub(super) fragments: Vec<Fragment>,
    pub(super) nodes: Vec<Node>,
    pub(super) names: Vec<u8>,
    pub(super) children: Vec<u32>,
    pub(super) files: Vec<FileData>,
}

/// Indexes the image at `offset` in `file`, in a child process (see the
/// module's notes).
pub(super) fn index(file: &File, offset: u64, len: u64) -> Result<Index, String> {
    in_child(file, offset, len)
}

fn parse(file: &File, offset: u64) -> Result<Index, String> {
    use std::io::Seek;
    let mut reader = io::BufReader::new(file.try_clone().map_err(|e| e.to_string())?);
    // (backhand reads an image at offset 0 from where the reader is.)
    reader.rewind().map_err(|e| e.to_string())?;
    std::thread::Builder::new()
        .name("squashfs-index".into())
        .stack_size(PARSE_STACK)
        .spawn(move || -> Result<Index, String> {
            let fs = FilesystemReader::from_reader_with_offset(reader, offset).map_err(reason)?;
            Index::of(&fs)
        })
        .map_err(|e| e.to_string())?
        .join()
        .map_err(|_| "its tables could not be read".to_string())?
}

/// [`parse`] in a child process under limits, which writes the index (or
/// `E` and the parse error) to a pipe: an error too when the child died
/// (killed at a limit, or aborted) or sent what does not decode.
fn in_child(file: &File, offset: u64, len: u64) -> Result<Index, String> {
    use nix::sys::wait::{waitpid, WaitStatus};
    use std::io::Write;
    let budget = TRIAL_BASE
        .saturating_add(len.saturating_mul(TRIAL_PER_BYTE))
        .min(TRIAL_MAX);
    // (Without the process's size, no address-space limit: one below what
    // it has would fail every image.)
    let limit = vm_size().map(|size| size.saturating_add(budget));
    let (rx, tx) = nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC).map_err(|e| e.to_string())?;
    let parent = nix::unistd::getpid();
    // SAFETY: the child only indexes the image, writes it and exits; glibc
    // makes its allocator usable in the child of a fork.
    match unsafe { nix::unistd::fork() }.map_err(|e| e.to_string())? {
        nix::unistd::ForkResult::Child => {
            drop(rx);
            // Gone with the server (which holds /dev/fuse: a child left
            // parsing would keep the connection up).
            // SAFETY: prctl with integer arguments.
            unsafe { libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL) };
            if nix::unistd::getppid() != parent {
                // SAFETY: as below.
                unsafe { libc::_exit(1) }
            }
            std::panic::set_hook(Box::new(|_| {}));
            let limits = [
                (libc::RLIMIT_AS, limit),
                (libc::RLIMIT_CPU, Some(TRIAL_CPU)),
                (libc::RLIMIT_CORE, Some(0)),
            ];
            for (resource, value) in limits {
                let Some(value) = value else { continue };
                let r = libc::rlimit {
                    rlim_cur: value,
                    rlim_max: value,
                };
                // SAFETY: setrlimit reads the struct it is given.
                unsafe { libc::setrlimit(resource, &r) };
            }
            let bytes = match parse(file, offset) {
                Ok(index) => super::wire::encode(&index),
                Err(e) => [b"E", e.as_bytes()].concat(),
            };
            let sent = std::fs::File::from(tx).write_all(&bytes).is_ok();
            // SAFETY: _exit ends the child at once, running nothing of the
            // parent's (no atexit handlers, no buffered output).
            unsafe { libc::_exit(if sent { 0 } else { 1 }) }
        }
        nix::unistd::ForkResult::Parent { child } => {
            drop(tx);
            let mut bytes = Vec::new();
            let read = read_within(rx, &mut bytes, TRIAL_WALL);
            if read.is_err() {
                let _ = nix::sys::signal::kill(child, nix::sys::signal::Signal::SIGKILL);
            }
            let status = loop {
                match waitpid(child, None) {
                    Err(nix::errno::Errno::EINTR) => continue,
                    other => break other,
                }
            };
            if let Err(e) = read {
                return Err(format!("indexing it: {e} (after {TRIAL_WALL} s at most)"));
            }
            match status {
                Ok(WaitStatus::Exited(_, 0)) => {}
                Ok(WaitStatus::Signaled(_, signal, _)) => {
                    return Err(format!(
                        "indexing it failed ({signal}: past {} MiB of memory or \
                         {TRIAL_CPU} s of CPU, or a fault in the parser)",
                        budget >> 20
                    ))
                }
                other => return Err(format!("indexing it failed ({other:?})")),
            }
            match bytes.strip_prefix(b"E") {
                Some(e) => Err(String::from_utf8_lossy(e).into_owned()),
                None => super::wire::decode(&bytes),
            }
        }
    }
}

/// Reads `rx` to its end into `out`, for at most `seconds`.
fn read_within(rx: std::os::fd::OwnedFd, out: &mut Vec<u8>, seconds: u64) -> io::Result<()> {
    use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
    use std::io::Read;
    use std::os::fd::AsFd;
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(seconds);
    let mut file = std::fs::File::from(rx);
    let mut buf = vec![0u8; 1 << 16];
    loop {
        let left = deadline.saturating_duration_since(std::time::Instant::now());
        if left.is_zero() {
            return Err(io::Error::from(io::ErrorKind::TimedOut));
        }
        let ms =
            PollTimeout::try_from(left.as_millis().min(60_000) as i32).unwrap_or(PollTimeout::MAX);
        let mut fds = [PollFd::new(file.as_fd(), PollFlags::POLLIN)];
        match poll(&mut fds, ms) {
            Ok(0) | Err(nix::errno::Errno::EINTR) => continue,
            Ok(_) => {}
            Err(e) => return Err(e.into()),
        }
        match file.read(&mut buf) {
            Ok(0) => return Ok(()),
            Ok(n) => out.extend_from_slice(&buf[..n]),
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
}

/// This process's virtual memory size, in bytes, when known.
fn vm_size() -> Option<u64> {
    // SAFETY: sysconf reads a constant.
    let page = u64::try_from(unsafe { libc::sysconf(libc::_SC_PAGESIZE) }).ok()?;
    std::fs::read_to_string("/proc/self/statm")
        .ok()
        .and_then(|s| s.split_whitespace().next()?.parse::<u64>().ok())
        .map(|pages| pages * page)
}

impl Index {
    fn of(fs: &FilesystemReader) -> Result<Index, String> {
        let all = &fs.root.nodes;
        if all.is_empty() || all.len() > u32::MAX as usize / 2 {
            return Err("no root directory".into());
        }
        if !fs.block_size.is_power_of_two() || !(4096..=1 << 20).contains(&fs.block_size) {
            return Err(format!("block size {}", fs.block_size));
        }
        let compressor: Compressor = fs.compressor.ok_or("no compressor recorded")?.into();
        // Each node's parent: the nodes are sorted by path, a directory's
        // descendants right after it, so the parent is on the stack of
        // directories above.
        let mut parents = vec![0u32; all.len()];
        let mut counts = vec![0u32; all.len()];
        let mut above: Vec<usize> = vec![0];
        for (i, n) in all.iter().enumerate().skip(1) {
            let parent = n.fullpath.parent().ok_or("a node without a parent")?;
            while let Some(&top) = above.last() {
                if all[top].fullpath == parent {
                    break;
                }
                above.pop();
            }
            let &p = above.last().ok_or("a node outside the tree")?;
            parents[i] = p as u32;
            counts[p] += 1;
            if matches!(n.inner, InnerNode::Dir(_)) {
                above.push(i);
            }
        }
        // Each directory's children, in path order (so by name), in one array.
        let mut starts = vec![0u32; all.len()];
        let mut total = 0u32;
        for (i, c) in counts.iter().enumerate() {
            starts[i] = total;
            total += c;
        }
        let mut children = vec![0u32; total as usize];
        let mut filled = vec![0u32; all.len()];
        for (i, &p) in parents.iter().enumerate().skip(1) {
            let p = p as usize;
            children[(starts[p] + filled[p]) as usize] = i as u32;
            filled[p] += 1;
        }
        let mut subdirs = vec![0u32; all.len()];
        for (i, n) in all.iter().enumerate().skip(1) {
            if matches!(n.inner, InnerNode::Dir(_)) {
                subdirs[parents[i] as usize] += 1;
            }
        }
        let mut names = Vec::new();
        let mut push = |b: &[u8]| -> Result<(u32, u32), String> {
            let at = u32::try_from(names.len()).map_err(|_| "too many names")?;
            let len = u32::try_from(b.len()).map_err(|_| "a name too long")?;
            at.checked_add(len).ok_or("too many names")?;
            names.extend_from_slice(b);
            Ok((at, len))
        };
        let mut nodes = Vec::with_capacity(all.len());
        let mut files = Vec::new();
        for (i, n) in all.iter().enumerate() {
            let name = match n.fullpath.file_name() {
                Some(name) => push(name.as_bytes())?,
                None => (0, 0),
            };
            let perm = u32::from(n.header.permissions) & 0o7777;
            let (kind, size, nlink, data) = match &n.inner {
                InnerNode::Dir(_) => (libc::S_IFDIR, 0, 2 + subdirs[i], (starts[i], counts[i])),
                InnerNode::File(f) => {
                    files.push(FileData {
                        blocks_start: f.blocks_start(),
                        frag_index: f.frag_index() as u32,
                        block_offset: f.block_offset(),
                        blocks: f.block_sizes().into(),
                        starts: Default::default(),
                    });
                    let index = files.len() as u32 - 1;
                    (libc::S_IFREG, f.file_len() as u64, 1, (index, 0))
                }
                InnerNode::Symlink(s) => {
                    let target = push(s.link.as_os_str().as_bytes())?;
                    (libc::S_IFLNK, u64::from(target.1), 1, target)
                }
                InnerNode::CharacterDevice(d) => (libc::S_IFCHR, 0, 1, (d.device_number, 0)),
                InnerNode::BlockDevice(d) => (libc::S_IFBLK, 0, 1, (d.device_number, 0)),
                InnerNode::NamedPipe => (libc::S_IFIFO, 0, 1, (0, 0)),
                InnerNode::Socket => (libc::S_IFSOCK, 0, 1, (0, 0)),
            };
            nodes.push(Node {
                name,
                mode: kind | perm,
                uid: n.header.uid,
                gid: n.header.gid,
                mtime: n.header.mtime,
                size,
                nlink,
                data,
            });
        }
        if !matches!(all[0].inner, InnerNode::Dir(_)) {
            return Err("the root is not a directory".into());
        }
        Ok(Index {
            block_size: fs.block_size,
            compressor,
            fragments: fs.fragments.clone().unwrap_or_default(),
            nodes,
            names,
            children,
            files,
        })
    }
}

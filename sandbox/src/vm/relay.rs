//! The host end of the control port once the guest is up: the command's
//! description goes in, its standard input and burrow's signals follow,
//! its output and exit status come back.

use std::io::{Read, Write};
use std::os::fd::{AsFd, AsRawFd, FromRawFd, OwnedFd};
use std::os::unix::net::UnixStream;
use std::time::{Duration, Instant};

use burrow_vm_init::{
    frame, parse_status, resize_frame, status_frame, to_guest, to_host, FrameReader,
};
use nix::sys::signalfd::{SfdFlags, SignalFd};

use super::{Machine, VmConfig};
use crate::error::{Error, Result, EXIT_SETUP};

fn lost(machine: &mut Machine, what: &str) -> Error {
    let why = machine.gone("is still running");
    Error::Sandbox {
        code: EXIT_SETUP,
        msg: format!(
            "--vm: {what} before the command finished{}{}",
            if why.is_empty() {
                String::new()
            } else {
                format!(": {why}")
            },
            machine.console_tail()
        ),
    }
}

/// Most bytes waiting to go to the guest before burrow stops reading its
/// standard input (the guest bounds what it holds the same way).
const MAX_QUEUED: usize = 256 << 10;

fn pidfd(pid: u32) -> Result<OwnedFd> {
    // SAFETY: pidfd_open takes a pid and flags.
    let raw = unsafe { libc::syscall(libc::SYS_pidfd_open, pid, 0) };
    if raw < 0 {
        return Err(Error::usage(format!(
            "--vm: pidfd_open: {}",
            std::io::Error::last_os_error()
        )));
    }
    // SAFETY: a new descriptor owned here alone.
    Ok(unsafe { OwnedFd::from_raw_fd(raw as i32) })
}

/// Relays until the guest reports the command's status; returns it.
pub fn run(
    vm: &VmConfig,
    port: UnixStream,
    mut reader: FrameReader,
    mut machine: Machine,
) -> Result<i32> {
    let mut guest = vm.guest.clone();
    let _raw = if vm.tty {
        guest.tty = Some(terminal_size());
        RawTerminal::enter()
    } else {
        None
    };
    let config = serde_json::to_vec(&guest).map_err(|e| Error::usage(e.to_string()))?;
    // Writes to the guest never block: they queue, and go as the port
    // takes them, so that burrow always reads what the guest sends.
    port.set_nonblocking(true)
        .map_err(|e| Error::usage(format!("--vm: control port: {e}")))?;
    let mut port = port;
    let mut queue = frame(to_guest::CONFIG, &config);
    // Signals burrow relays to pid 1, and pid 1 to us: on to the command.
    let signals = SignalFd::with_flags(&crate::signals::waited_set(), SfdFlags::SFD_CLOEXEC)
        .map_err(|e| Error::usage(format!("--vm: signalfd: {}", e.desc())))?;
    // The VMM and its helpers: the VM is gone when any of them is.
    let children: Vec<OwnedFd> = machine
        .children
        .iter()
        .map(|c| pidfd(c.id()))
        .collect::<Result<_>>()?;
    let mut stdin_open = true;
    let mut stdout_open = true;
    let mut buf = vec![0u8; 64 * 1024];
    let mut stdout = std::io::stdout().lock();
    let mut stderr = std::io::stderr().lock();
    loop {
        while let Some((kind, payload)) = reader
            .next_frame()
            .map_err(|e| Error::usage(format!("--vm: the guest: {e}")))?
        {
            match kind {
                to_host::STDOUT if stdout_open => {
                    if let Err(e) = stdout.write_all(&payload).and_then(|()| stdout.flush()) {
                        if e.kind() == std::io::ErrorKind::BrokenPipe {
                            // Nobody reads burrow's output any more: the
                            // command learns it as it would without a VM.
                            stdout_open = false;
                            queue.extend(status_frame(to_guest::SIGNAL, libc::SIGPIPE, ""));
                        }
                    }
                }
                to_host::STDERR => {
                    let _ = stderr.write_all(&payload);
                }
                to_host::EXIT | to_host::FAILED => {
                    let (code, msg) = parse_status(&payload).unwrap_or((EXIT_SETUP, String::new()));
                    if kind == to_host::FAILED {
                        let _ = writeln!(stderr, "burrow: {msg}");
                    }
                    let _ = stdout.flush();
                    // The guest powers off once it knows the status arrived.
                    let _ = port.set_nonblocking(false);
                    let _ = port.write_all(&queue);
                    let _ = port.write_all(&frame(to_guest::ACK, &[]));
                    let deadline = Instant::now() + Duration::from_secs(3);
                    while machine.exited().is_none() && Instant::now() < deadline {
                        std::thread::sleep(Duration::from_millis(10));
                    }
                    return Ok(code);
                }
                _ => {}
            }
        }
        let read_stdin = stdin_open && queue.len() < MAX_QUEUED;
        let mut fds = vec![
            libc::pollfd {
                fd: port.as_raw_fd(),
                events: libc::POLLIN | if queue.is_empty() { 0 } else { libc::POLLOUT },
                revents: 0,
            },
            libc::pollfd {
                fd: signals.as_fd().as_raw_fd(),
                events: libc::POLLIN,
                revents: 0,
            },
            libc::pollfd {
                fd: if read_stdin { 0 } else { -1 },
                events: libc::POLLIN,
                revents: 0,
            },
        ];
        for c in &children {
            fds.push(libc::pollfd {
                fd: c.as_raw_fd(),
                events: libc::POLLIN,
                revents: 0,
            });
        }
        // SAFETY: `fds` is a valid pollfd array for the call.
        if unsafe { libc::poll(fds.as_mut_ptr(), fds.len() as libc::nfds_t, -1) } < 0 {
            continue; // EINTR
        }
        if fds[0].revents & (libc::POLLIN | libc::POLLHUP | libc::POLLERR) != 0 {
            match port.read(&mut buf) {
                Ok(0) => return Err(lost(&mut machine, "the VM closed its control port")),
                Ok(n) => reader.push(&buf[..n]),
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {}
                Err(_) => return Err(lost(&mut machine, "the VM closed its control port")),
            }
            continue; // frames first: the status may have come with the VM's end
        }
        if !queue.is_empty() && fds[0].revents & libc::POLLOUT != 0 {
            match port.write(&queue) {
                Ok(n) => {
                    queue.drain(..n);
                }
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {}
                Err(_) => return Err(lost(&mut machine, "the VM closed its control port")),
            }
        }
        if fds[3..].iter().any(|f| f.revents != 0) {
            return Err(lost(&mut machine, "the VM stopped"));
        }
        if fds[1].revents != 0 {
            if let Ok(Some(info)) = signals.read_signal() {
                let sig = info.ssi_signo as i32;
                if vm.tty && sig == libc::SIGWINCH {
                    let (rows, cols) = terminal_size();
                    queue.extend(resize_frame(rows, cols));
                } else if sig == libc::SIGTERM {
                    queue.extend(status_frame(to_guest::SIGNAL, vm.stop_signal, ""));
                } else if sig != libc::SIGCHLD {
                    queue.extend(status_frame(to_guest::SIGNAL, sig, ""));
                }
            }
        }
        if fds[2].revents != 0 {
            // SAFETY: the pointer and length describe `buf`.
            let n = unsafe { libc::read(0, buf.as_mut_ptr().cast(), buf.len()) };
            if n > 0 {
                queue.extend(frame(to_guest::STDIN, &buf[..n as usize]));
            } else if n == 0
                || !matches!(
                    std::io::Error::last_os_error().raw_os_error(),
                    Some(libc::EINTR | libc::EAGAIN)
                )
            {
                stdin_open = false;
                queue.extend(frame(to_guest::STDIN_EOF, &[]));
            }
        }
    }
}

/// Rows and columns of the terminal on standard input.
fn terminal_size() -> (u16, u16) {
    // SAFETY: winsize is plain old data; TIOCGWINSZ fills it.
    let mut ws: libc::winsize = unsafe { std::mem::zeroed() };
    // SAFETY: TIOCGWINSZ writes a winsize.
    if unsafe { libc::ioctl(0, libc::TIOCGWINSZ, &mut ws) } != 0 || ws.ws_row == 0 {
        return (24, 80);
    }
    (ws.ws_row, ws.ws_col)
}

/// The terminal in raw mode (the guest's terminal does the line editing
/// and turns ^C into SIGINT), restored when dropped.
struct RawTerminal(nix::sys::termios::Termios);

impl RawTerminal {
    fn enter() -> Option<Self> {
        use nix::sys::termios::{cfmakeraw, tcgetattr, tcsetattr, SetArg};
        let stdin = std::io::stdin();
        let saved = tcgetattr(&stdin).ok()?;
        let mut raw = saved.clone();
        cfmakeraw(&mut raw);
        tcsetattr(&stdin, SetArg::TCSANOW, &raw).ok()?;
        Some(RawTerminal(saved))
    }
}

impl Drop for RawTerminal {
    fn drop(&mut self) {
        use nix::sys::termios::{tcsetattr, SetArg};
        let _ = tcsetattr(std::io::stdin(), SetArg::TCSADRAIN, &self.0);
    }
}

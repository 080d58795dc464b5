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

/// Relays until the guest reports the command's status; returns it.
pub fn run(
    vm: &VmConfig,
    mut port: UnixStream,
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
    port.write_all(&frame(to_guest::CONFIG, &config))
        .map_err(|_| lost(&mut machine, "the VM closed its control port"))?;
    // Signals burrow relays to pid 1, and pid 1 to us: on to the command.
    let signals = SignalFd::with_flags(&crate::signals::waited_set(), SfdFlags::SFD_CLOEXEC)
        .map_err(|e| Error::usage(format!("--vm: signalfd: {}", e.desc())))?;
    // SAFETY: pidfd_open takes a pid and flags.
    let raw = unsafe { libc::syscall(libc::SYS_pidfd_open, machine.children[0].id(), 0) };
    if raw < 0 {
        return Err(Error::usage(format!(
            "--vm: pidfd_open: {}",
            std::io::Error::last_os_error()
        )));
    }
    // SAFETY: a new descriptor owned here alone.
    let vmm = unsafe { OwnedFd::from_raw_fd(raw as i32) };
    let mut stdin_open = true;
    let mut buf = vec![0u8; 64 * 1024];
    let mut stdout = std::io::stdout().lock();
    let mut stderr = std::io::stderr().lock();
    loop {
        while let Some((kind, payload)) = reader
            .next_frame()
            .map_err(|e| Error::usage(format!("--vm: the guest: {e}")))?
        {
            match kind {
                to_host::STDOUT => {
                    let _ = stdout.write_all(&payload).and_then(|()| stdout.flush());
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
                    // The guest powers off once it has reported.
                    let deadline = Instant::now() + Duration::from_secs(3);
                    while machine.exited().is_none() && Instant::now() < deadline {
                        std::thread::sleep(Duration::from_millis(10));
                    }
                    return Ok(code);
                }
                _ => {}
            }
        }
        let mut fds = [
            libc::pollfd {
                fd: port.as_raw_fd(),
                events: libc::POLLIN,
                revents: 0,
            },
            libc::pollfd {
                fd: vmm.as_raw_fd(),
                events: libc::POLLIN,
                revents: 0,
            },
            libc::pollfd {
                fd: signals.as_fd().as_raw_fd(),
                events: libc::POLLIN,
                revents: 0,
            },
            libc::pollfd {
                fd: if stdin_open { 0 } else { -1 },
                events: libc::POLLIN,
                revents: 0,
            },
        ];
        // SAFETY: `fds` is a valid pollfd array for the call.
        if unsafe { libc::poll(fds.as_mut_ptr(), fds.len() as libc::nfds_t, -1) } < 0 {
            continue; // EINTR
        }
        if fds[0].revents != 0 {
            match port.read(&mut buf) {
                Ok(0) | Err(_) => return Err(lost(&mut machine, "the VM closed its control port")),
                Ok(n) => reader.push(&buf[..n]),
            }
            continue; // frames first: the status may have arrived with the VMM's exit
        }
        if fds[1].revents != 0 {
            return Err(lost(&mut machine, "the VM stopped"));
        }
        if fds[2].revents != 0 {
            if let Ok(Some(info)) = signals.read_signal() {
                let sig = info.ssi_signo as i32;
                if vm.tty && sig == libc::SIGWINCH {
                    let (rows, cols) = terminal_size();
                    let _ = port.write_all(&resize_frame(rows, cols));
                } else if sig != libc::SIGCHLD {
                    let _ = port.write_all(&status_frame(to_guest::SIGNAL, sig, ""));
                }
            }
        }
        if fds[3].revents != 0 {
            // SAFETY: the pointer and length describe `buf`.
            let n = unsafe { libc::read(0, buf.as_mut_ptr().cast(), buf.len()) };
            let out = if n > 0 {
                frame(to_guest::STDIN, &buf[..n as usize])
            } else {
                stdin_open = false;
                frame(to_guest::STDIN_EOF, &[])
            };
            if port.write_all(&out).is_err() {
                return Err(lost(&mut machine, "the VM closed its control port"));
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

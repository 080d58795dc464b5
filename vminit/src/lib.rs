//! What burrow's VM supervisor on the host and the guest's init say to
//! each other. Everything travels over one virtio-serial port, named
//! [`PORT_NAME`], as frames: a kind byte, the payload's length (u32,
//! little-endian) and the payload. One port keeps the order: the
//! command's last output reaches the host before its exit status.

use serde::{Deserialize, Serialize};

pub mod exec;
pub mod landlock_policy;
pub mod user;

/// The virtio-serial port's name (`/sys/class/virtio-ports/*/name`).
pub const PORT_NAME: &str = "burrow.0";
/// The virtio-fs tag of the sandbox's root filesystem.
pub const FS_TAG: &str = "root";
/// Largest payload either side sends or accepts (the configuration is the
/// largest: a command line and environment, as JSON).
pub const MAX_PAYLOAD: usize = 16 << 20;

/// Host → guest.
pub mod to_guest {
    /// The [`GuestConfig`](super::GuestConfig), as JSON; sent once.
    pub const CONFIG: u8 = b'C';
    /// Bytes for the command's standard input.
    pub const STDIN: u8 = b'I';
    /// The command's standard input ends.
    pub const STDIN_EOF: u8 = b'i';
    /// A signal for the command (payload: the number, i32 LE).
    pub const SIGNAL: u8 = b'K';
    /// The terminal's new size (rows, then columns: u16 LE each).
    pub const RESIZE: u8 = b'W';
    /// The exit status arrived: the guest may power off.
    pub const ACK: u8 = b'A';
}

/// Guest → host.
pub mod to_host {
    /// The guest's init runs (the boot watchdog stops here).
    pub const READY: u8 = b'R';
    pub const STDOUT: u8 = b'O';
    pub const STDERR: u8 = b'E';
    /// The command's exit status (i32 LE; 128+N when killed by signal N).
    pub const EXIT: u8 = b'X';
    /// The guest could not run the command: status (i32 LE), then a
    /// one-line message.
    pub const FAILED: u8 = b'F';
}

/// What the command is and how it runs, as the host decided it.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct GuestConfig {
    pub argv: Vec<Vec<u8>>,
    /// `NAME=value` entries.
    pub env: Vec<Vec<u8>>,
    /// The working directory; when absent, the first of `fallback_dirs`
    /// that exists, else `/`.
    pub cwd: Option<Vec<u8>>,
    pub fallback_dirs: Vec<Vec<u8>>,
    pub uid: u32,
    pub gid: u32,
    /// `USER[:GROUP]` to resolve in the guest's root and run as, instead of
    /// `uid` and `gid` (see [`user`]).
    #[serde(default)]
    pub user: Option<String>,
    /// Add HOME, the user's, when `env` has none.
    #[serde(default)]
    pub home_if_unset: bool,
    pub hostname: Option<String>,
    pub net: Option<GuestNet>,
    /// Run the command on a terminal of this size (rows, columns); its
    /// output then all comes as [`to_host::STDOUT`].
    pub tty: Option<(u16, u16)>,
    /// What confines the command, as burrow confines it without a VM.
    pub confine: Confinement,
}

/// The command's confinement, applied in the guest just before exec in
/// burrow's order: resource limits, the user-namespace ban, capabilities,
/// no_new_privs, Landlock, seccomp.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Confinement {
    /// Capability numbers the command keeps (none by default).
    pub caps: Vec<u8>,
    /// Those it keeps when it runs as a uid other than 0 (`--user`): just
    /// what `--cap-add` gave.
    #[serde(default)]
    pub user_caps: Vec<u8>,
    /// Compiled seccomp programs (arrays of `struct sock_filter`) for the
    /// guest's architecture, which is the host's.
    pub seccomp: Vec<Vec<u8>>,
    pub landlock: Option<landlock_policy::Policy>,
    /// `--rlimit`s: name, resource number, soft and hard limits.
    pub rlimits: Vec<(String, u32, u64, u64)>,
    pub disable_userns: bool,
}

/// The guest's network interface, statically configured.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct GuestNet {
    pub addr: [u8; 4],
    pub prefix: u8,
    pub gateway: [u8; 4],
    pub dns: [u8; 4],
}

/// One frame, ready to write.
pub fn frame(kind: u8, payload: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(5 + payload.len());
    out.push(kind);
    out.extend_from_slice(&(payload.len() as u32).to_le_bytes());
    out.extend_from_slice(payload);
    out
}

/// A [`to_guest::RESIZE`] frame.
pub fn resize_frame(rows: u16, cols: u16) -> Vec<u8> {
    let mut payload = rows.to_le_bytes().to_vec();
    payload.extend_from_slice(&cols.to_le_bytes());
    frame(to_guest::RESIZE, &payload)
}

/// Rows and columns of a [`to_guest::RESIZE`] payload.
pub fn parse_resize(payload: &[u8]) -> Option<(u16, u16)> {
    let b = payload.get(..4)?;
    Some((
        u16::from_le_bytes([b[0], b[1]]),
        u16::from_le_bytes([b[2], b[3]]),
    ))
}

/// A frame carrying a status (and, for [`to_host::FAILED`], a message).
pub fn status_frame(kind: u8, code: i32, msg: &str) -> Vec<u8> {
    let mut payload = code.to_le_bytes().to_vec();
    payload.extend_from_slice(msg.as_bytes());
    frame(kind, &payload)
}

/// Splits a status payload into its code and message.
pub fn parse_status(payload: &[u8]) -> Option<(i32, String)> {
    let code = i32::from_le_bytes(payload.get(..4)?.try_into().ok()?);
    Some((code, String::from_utf8_lossy(&payload[4..]).into_owned()))
}

/// The stream was not made of frames.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BadFrame(pub usize);

impl std::fmt::Display for BadFrame {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "a frame of {} bytes is over the limit", self.0)
    }
}

impl std::error::Error for BadFrame {}

/// Reassembles frames from a byte stream read in arbitrary pieces.
#[derive(Debug, Default)]
pub struct FrameReader {
    buf: Vec<u8>,
}

impl FrameReader {
    pub fn push(&mut self, bytes: &[u8]) {
        self.buf.extend_from_slice(bytes);
    }

    /// The next whole frame, if one has arrived.
    pub fn next_frame(&mut self) -> Result<Option<(u8, Vec<u8>)>, BadFrame> {
        if self.buf.len() < 5 {
            return Ok(None);
        }
        let len = u32::from_le_bytes([self.buf[1], self.buf[2], self.buf[3], self.buf[4]]) as usize;
        if len > MAX_PAYLOAD {
            return Err(BadFrame(len));
        }
        if self.buf.len() < 5 + len {
            return Ok(None);
        }
        let kind = self.buf[0];
        let payload = self.buf[5..5 + len].to_vec();
        self.buf.drain(..5 + len);
        Ok(Some((kind, payload)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frames_survive_being_split_anywhere() {
        let mut stream = frame(to_host::STDOUT, b"hello\n");
        stream.extend(status_frame(to_host::EXIT, 7, ""));
        stream.extend(frame(to_host::STDERR, &[]));
        for cut in 0..stream.len() {
            let mut r = FrameReader::default();
            let mut got = Vec::new();
            for piece in [&stream[..cut], &stream[cut..]] {
                r.push(piece);
                while let Some(f) = r.next_frame().unwrap() {
                    got.push(f);
                }
            }
            assert_eq!(
                got,
                vec![
                    (to_host::STDOUT, b"hello\n".to_vec()),
                    (to_host::EXIT, 7i32.to_le_bytes().to_vec()),
                    (to_host::STDERR, vec![]),
                ],
                "cut at {cut}"
            );
        }
        assert_eq!(
            parse_status(&status_frame(to_host::FAILED, 127, "no such command")[5..]),
            Some((127, "no such command".to_string()))
        );
    }

    #[test]
    fn an_oversized_frame_is_refused() {
        let mut r = FrameReader::default();
        r.push(&[to_guest::STDIN, 0xff, 0xff, 0xff, 0x7f]);
        assert_eq!(r.next_frame(), Err(BadFrame(0x7fff_ffff)));
    }
}

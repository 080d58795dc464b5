//! Errors of the launcher, each with the context a user needs to act on it.

use std::fmt;

/// What went wrong, and the exit status burrow reports for it.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A system call failed; `what` says what burrow was doing.
    #[error("{what}: {source}")]
    Sys {
        what: String,
        #[source]
        source: nix::Error,
    },
    /// Bad input or an unusable environment, already phrased for the user.
    #[error("{0}")]
    Usage(String),
    /// Failure reported by the sandbox side (set-up or exec), with its exit status.
    #[error("{msg}")]
    Sandbox { code: i32, msg: String },
}

impl Error {
    /// Exit status for this error: podman's convention (125 burrow itself,
    /// 126 command not executable, 127 command not found).
    pub fn exit_code(&self) -> i32 {
        match self {
            Error::Sandbox { code, .. } => *code,
            _ => EXIT_SETUP,
        }
    }

    pub fn usage(msg: impl fmt::Display) -> Self {
        Error::Usage(msg.to_string())
    }
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Exit status when burrow itself fails.
pub const EXIT_SETUP: i32 = 125;
/// Exit status when the command exists but cannot be executed.
pub const EXIT_CANNOT_EXEC: i32 = 126;
/// Exit status when the command is not found in the sandbox.
pub const EXIT_NOT_FOUND: i32 = 127;

/// Adds "what was being done" to a failed system call.
pub trait Context<T> {
    fn ctx<S: Into<String>>(self, what: impl FnOnce() -> S) -> Result<T>;
}

impl<T> Context<T> for nix::Result<T> {
    fn ctx<S: Into<String>>(self, what: impl FnOnce() -> S) -> Result<T> {
        self.map_err(|source| Error::Sys {
            what: what().into(),
            source,
        })
    }
}

impl<T> Context<T> for std::io::Result<T> {
    fn ctx<S: Into<String>>(self, what: impl FnOnce() -> S) -> Result<T> {
        self.map_err(|e| Error::Sys {
            what: what().into(),
            source: nix::Error::from_raw(e.raw_os_error().unwrap_or(libc::EIO)),
        })
    }
}

/// `msg` as one line for the terminal: control characters (a newline in a
/// path the user gave, say), bidirectional overrides, zero-width and line
/// separators are shown escaped.
pub fn one_line(msg: &str) -> String {
    let hidden = |c: char| {
        c.is_control()
            || matches!(c, '\u{200b}'..='\u{200f}' | '\u{2028}'..='\u{202e}' | '\u{2066}'..='\u{2069}' | '\u{feff}')
    };
    let mut out = String::with_capacity(msg.len());
    for c in msg.chars() {
        if hidden(c) {
            out.extend(c.escape_default());
        } else {
            out.push(c);
        }
    }
    out
}

#[cfg(test)]
mod one_line_tests {
    #[test]
    fn control_and_invisible_characters_are_escaped() {
        assert_eq!(super::one_line("a\nb\tc"), "a\\nb\\tc");
        assert_eq!(super::one_line("x\u{202e}y"), "x\\u{202e}y");
        assert_eq!(super::one_line("plain é"), "plain é");
    }
}

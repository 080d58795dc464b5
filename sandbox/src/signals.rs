//! Which signals burrow relays into the sandbox, and when.
//!
//! burrow and its pid 1 block these signals and take them with
//! sigwaitinfo. A signal the terminal generated (si_code SI_KERNEL) already
//! reached every process of the foreground group, the command included,
//! unless the command runs in its own session: relaying it again would
//! deliver it twice.

use nix::sys::signal::{SigSet, SigmaskHow, Signal};

/// Signals relayed to the command.
pub const FORWARDED: [Signal; 9] = [
    Signal::SIGHUP,
    Signal::SIGINT,
    Signal::SIGQUIT,
    Signal::SIGTERM,
    Signal::SIGUSR1,
    Signal::SIGUSR2,
    Signal::SIGWINCH,
    Signal::SIGALRM,
    Signal::SIGPWR,
];

/// A signal as podman's `--stop-signal` and an image's StopSignal name
/// it: `SIGUSR1`, `USR1`, `10`, `SIGRTMIN+3`, `RTMAX-1`.
pub fn parse(text: &str) -> Result<i32, String> {
    let bad = || format!("{text:?}: not a signal (SIGNAME, NAME, a number or RTMIN+N)");
    let upper = text.trim().to_ascii_uppercase();
    let name = upper.strip_prefix("SIG").unwrap_or(&upper);
    let (min, max) = (libc::SIGRTMIN(), libc::SIGRTMAX());
    let offset = |rest: &str, sign: char| -> Result<i32, String> {
        rest.strip_prefix(sign)
            .map_or(Ok(0), str::parse::<i32>)
            .map_err(|_| bad())
    };
    let number = if let Ok(n) = name.parse::<i32>() {
        n
    } else if let Some(rest) = name.strip_prefix("RTMIN") {
        min.checked_add(offset(rest, '+')?).ok_or_else(bad)?
    } else if let Some(rest) = name.strip_prefix("RTMAX") {
        max.checked_sub(offset(rest, '-')?).ok_or_else(bad)?
    } else {
        format!("SIG{name}").parse::<Signal>().map_err(|_| bad())? as i32
    };
    if !(1..=max).contains(&number) || (number < min && Signal::try_from(number).is_err()) {
        return Err(bad());
    }
    Ok(number)
}

/// The forwarded signals plus SIGCHLD.
pub fn waited_set() -> SigSet {
    let mut set = SigSet::empty();
    for s in FORWARDED {
        set.add(s);
    }
    set.add(Signal::SIGCHLD);
    set
}

/// What the sandbox's pid 1 takes (and relays to the command, but
/// SIGCHLD, which it takes to reap): every signal it can catch but the
/// faults the kernel sends a thread for its own error. A pid namespace's
/// init ignores any signal it neither catches nor blocks, so a runtime's
/// `kill` of pid 1 with another (SIGRTMIN+3, SIGCONT, ...) would be lost.
pub fn init_set() -> SigSet {
    let mut set = SigSet::all();
    for s in [
        Signal::SIGKILL,
        Signal::SIGSTOP,
        Signal::SIGSEGV,
        Signal::SIGBUS,
        Signal::SIGILL,
        Signal::SIGFPE,
        Signal::SIGTRAP,
        Signal::SIGSYS,
    ] {
        set.remove(s);
    }
    set
}

/// Blocks `set` for this thread (and for children it forks).
pub fn block(set: &SigSet) -> nix::Result<()> {
    nix::sys::signal::pthread_sigmask(SigmaskHow::SIG_BLOCK, Some(set), None)
}

/// Unblocks every signal; done in the command just before exec.
pub fn unblock_all() -> nix::Result<()> {
    nix::sys::signal::pthread_sigmask(SigmaskHow::SIG_SETMASK, Some(&SigSet::empty()), None)
}

/// Whether a signal with `si_code` should be relayed to a target that
/// shares the terminal's foreground process group with us.
pub fn should_relay(si_code: i32, target_shares_group: bool) -> bool {
    !(target_shares_group && si_code == libc::SI_KERNEL)
}

/// Exit status for a child that ended with `code` or was killed by a signal.
pub fn status_from_signal(sig: Signal) -> i32 {
    128 + sig as i32
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn terminal_signals_are_not_relayed_twice() {
        assert!(!should_relay(libc::SI_KERNEL, true));
        assert!(should_relay(libc::SI_KERNEL, false));
        assert!(should_relay(libc::SI_USER, true));
    }

    #[test]
    fn stop_signals_by_name_number_and_realtime_offset() {
        assert_eq!(parse("SIGUSR1"), Ok(libc::SIGUSR1));
        assert_eq!(parse("usr1"), Ok(libc::SIGUSR1));
        assert_eq!(parse("9"), Ok(9));
        assert_eq!(parse("SIGRTMIN+3"), Ok(libc::SIGRTMIN() + 3));
        assert_eq!(parse("RTMAX-1"), Ok(libc::SIGRTMAX() - 1));
        for bad in [
            "",
            "SIGNOPE",
            "0",
            "999",
            "RTMIN+x",
            "-1",
            "RTMIN+2147483647",
            "RTMAX--5",
        ] {
            assert!(parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn signal_exit_status() {
        assert_eq!(status_from_signal(Signal::SIGKILL), 137);
        assert_eq!(status_from_signal(Signal::SIGTERM), 143);
    }
}

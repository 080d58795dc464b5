//! The guest's clock under software emulation, given rather than
//! calibrated.
//!
//! A guest kernel times its TSC against the PIT at boot. Under QEMU's
//! emulation (TCG) on a busy host, the PIT's ticks and the guest's
//! instructions drift apart, the calibration fails ("could not calculate
//! TSC khz"), the TSC is marked unstable and the guest can spin on jiffies
//! that never come. Under TCG the guest's TSC is the host's (QEMU reads
//! the host's counter), so burrow measures the host's TSC frequency
//! against CLOCK_MONOTONIC_RAW and tells the kernel (`tsc_early_khz=`,
//! with `tsc=reliable` so that no watchdog second-guesses it later).

use std::time::Duration;

/// How long the two readings are apart.
const SPAN: Duration = Duration::from_millis(20);

/// The host's TSC frequency in kHz, or `None` where there is no TSC to
/// read or the reading makes no sense.
pub fn host_tsc_khz() -> Option<u64> {
    let (c0, t0) = reading()?;
    std::thread::sleep(SPAN);
    let (c1, t1) = reading()?;
    let ns = t1.checked_sub(t0).filter(|&ns| ns > 0)?;
    let khz = (c1.checked_sub(c0)? as u128 * 1_000_000 / ns as u128) as u64;
    // Between 100 MHz and 10 GHz, or not a TSC worth telling.
    (100_000..10_000_000).contains(&khz).then_some(khz)
}

/// The kernel arguments for a TCG guest: its TSC's frequency, given;
/// and, where the host itself trusts its TSC (invariant, and its
/// clocksource), no watchdog in the guest to second-guess it.
pub fn tcg_kernel_args() -> String {
    let Some(khz) = host_tsc_khz() else {
        return String::new();
    };
    let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
    let flags = cpuinfo
        .lines()
        .find_map(|l| l.strip_prefix("flags"))
        .unwrap_or("");
    let invariant = ["constant_tsc", "nonstop_tsc"]
        .iter()
        .all(|f| flags.split_whitespace().any(|w| w == *f));
    let clocksource =
        std::fs::read_to_string("/sys/devices/system/clocksource/clocksource0/current_clocksource")
            .unwrap_or_default();
    if invariant && clocksource.trim() == "tsc" {
        format!("tsc_early_khz={khz} tsc=reliable")
    } else {
        format!("tsc_early_khz={khz}")
    }
}

/// A TSC reading and the CLOCK_MONOTONIC_RAW time (ns) it was taken at:
/// of three tries, the one whose clock readings lie closest around it, so
/// that a preemption between the two does not count.
fn reading() -> Option<(u64, u64)> {
    let mut best: Option<(u64, u64, u64)> = None;
    for _ in 0..3 {
        let before = now_ns()?;
        let cycles = tsc()?;
        let after = now_ns()?;
        let width = after - before;
        if best.is_none_or(|(_, _, w)| width < w) {
            best = Some((cycles, before + width / 2, width));
        }
    }
    best.map(|(c, t, _)| (c, t))
}

fn now_ns() -> Option<u64> {
    let t = nix::time::clock_gettime(nix::time::ClockId::CLOCK_MONOTONIC_RAW).ok()?;
    Some(t.tv_sec() as u64 * 1_000_000_000 + t.tv_nsec() as u64)
}

#[cfg(target_arch = "x86_64")]
fn tsc() -> Option<u64> {
    // SAFETY: RDTSC reads a counter; it touches no memory. Every x86-64
    // CPU has it.
    Some(unsafe { core::arch::x86_64::_rdtsc() })
}

#[cfg(not(target_arch = "x86_64"))]
fn tsc() -> Option<u64> {
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    #[cfg(target_arch = "x86_64")]
    fn the_host_tsc_frequency_is_measured_consistently() {
        let (a, b) = (host_tsc_khz().unwrap(), host_tsc_khz().unwrap());
        // Two measurements agree to within 1%.
        assert!(a.abs_diff(b) * 100 < a, "{a} vs {b}");
        assert!(tcg_kernel_args().starts_with("tsc_early_khz="));
    }
}

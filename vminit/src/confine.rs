//! The command's confinement inside the guest, as burrow applies it
//! without a VM: resource limits, the user-namespace ban, capabilities,
//! no_new_privs, Landlock, seccomp — in that order, just before exec.

use burrow_vm_init::Confinement;

/// `struct __user_cap_header_struct`.
#[repr(C)]
struct CapHeader {
    version: u32,
    pid: i32,
}

/// `struct __user_cap_data_struct`.
#[repr(C)]
#[derive(Clone, Copy, Default)]
struct CapData {
    effective: u32,
    permitted: u32,
    inheritable: u32,
}

const CAP_VERSION_3: u32 = 0x2008_0522;

fn os_err(what: &str) -> String {
    format!("{what}: {}", std::io::Error::last_os_error())
}

fn capget() -> Result<[CapData; 2], String> {
    let mut header = CapHeader {
        version: CAP_VERSION_3,
        pid: 0,
    };
    let mut data = [CapData::default(); 2];
    // SAFETY: capget fills two data structs for version 3.
    if unsafe { libc::syscall(libc::SYS_capget, &mut header, data.as_mut_ptr()) } != 0 {
        return Err(os_err("capget"));
    }
    Ok(data)
}

fn capset(effective: u64, permitted: u64, inheritable: u64) -> Result<(), String> {
    let mut header = CapHeader {
        version: CAP_VERSION_3,
        pid: 0,
    };
    let split = |v: u64| [v as u32, (v >> 32) as u32];
    let (e, p, i) = (split(effective), split(permitted), split(inheritable));
    let data = [
        CapData {
            effective: e[0],
            permitted: p[0],
            inheritable: i[0],
        },
        CapData {
            effective: e[1],
            permitted: p[1],
            inheritable: i[1],
        },
    ];
    // SAFETY: capset reads two data structs for version 3.
    if unsafe { libc::syscall(libc::SYS_capset, &mut header, data.as_ptr()) } != 0 {
        return Err(os_err("capset"));
    }
    Ok(())
}

/// Before the switch to a uid other than 0: keep the permitted
/// capabilities across it, for [`apply`] to choose from.
pub fn keep_caps_across_setuid() {
    // SAFETY: prctl with integer arguments.
    unsafe { libc::prctl(libc::PR_SET_KEEPCAPS, 1, 0, 0, 0) };
}

/// Confines the calling process (the command about to be exec'd).
/// Returns warnings to print.
pub fn apply(c: &Confinement) -> Result<Vec<String>, String> {
    // Every capability still permitted made effective (a switch to a uid
    // other than 0 cleared them): raising limits, banning user namespaces
    // and dropping the bounding set all need some.
    let data = capget()?;
    let permitted = u64::from(data[0].permitted) | u64::from(data[1].permitted) << 32;
    capset(permitted, permitted, 0)?;
    for (name, resource, soft, hard) in &c.rlimits {
        let lim = libc::rlimit {
            rlim_cur: *soft,
            rlim_max: *hard,
        };
        // SAFETY: setrlimit reads one rlimit.
        if unsafe { libc::setrlimit(*resource as _, &lim) } != 0 {
            return Err(os_err(&format!("--rlimit {name}")));
        }
    }
    if c.disable_userns {
        std::fs::write("/proc/sys/user/max_user_namespaces", "0")
            .map_err(|e| format!("--disable-userns: {e}"))?;
    }
    // Then only `keep`, in every set, and ambient for a command that is
    // not root, so that it keeps them across exec (root's exec keeps its
    // own; ambient ones would also pass to its non-root children).
    let keep: u64 = c.caps.iter().fold(0, |m, &n| m | 1u64 << n);
    let last: u32 = std::fs::read_to_string("/proc/sys/kernel/cap_last_cap")
        .ok()
        .and_then(|s| s.trim().parse().ok())
        .unwrap_or(40);
    for cap in 0..=last {
        if keep & (1u64 << cap) == 0 {
            // SAFETY: prctl with integer arguments.
            if unsafe { libc::prctl(libc::PR_CAPBSET_DROP, cap as libc::c_ulong, 0, 0, 0) } != 0 {
                return Err(os_err("dropping capabilities"));
            }
        }
    }
    // SAFETY: geteuid has no arguments and cannot fail.
    let root = unsafe { libc::geteuid() } == 0;
    // Root's inheritable set stays empty, so that a program with file
    // capabilities gets none from it (CVE-2022-27652's lesson).
    let inheritable = if root { 0 } else { keep & permitted };
    capset(keep & permitted, keep & permitted, inheritable)?;
    for cap in 0..=last {
        if !root && keep & permitted & (1u64 << cap) != 0 {
            // SAFETY: prctl with integer arguments.
            unsafe {
                libc::prctl(
                    libc::PR_CAP_AMBIENT,
                    libc::PR_CAP_AMBIENT_RAISE as libc::c_ulong,
                    cap as libc::c_ulong,
                    0,
                    0,
                )
            };
        }
    }
    // SAFETY: prctl with integer arguments.
    if unsafe { libc::prctl(libc::PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) } != 0 {
        return Err(os_err("no_new_privs"));
    }
    let mut warnings = Vec::new();
    if let Some(policy) = &c.landlock {
        warnings.extend(policy.restrict_self()?);
    }
    for prog in &c.seccomp {
        let fprog = libc::sock_fprog {
            len: (prog.len() / std::mem::size_of::<libc::sock_filter>()) as u16,
            filter: prog.as_ptr() as *mut libc::sock_filter,
        };
        // SAFETY: `fprog` points at the program's instructions, which
        // outlive the call; the kernel copies them.
        let rc = unsafe {
            libc::syscall(
                libc::SYS_seccomp,
                libc::SECCOMP_SET_MODE_FILTER,
                0,
                &fprog as *const libc::sock_fprog,
            )
        };
        if rc != 0 {
            return Err(os_err("seccomp"));
        }
    }
    Ok(warnings)
}

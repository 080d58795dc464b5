//! Setting up a network namespace's side: a tap device, its address,
//! netmask, MTU and the default route, with the classic ioctls (no
//! netlink needed). Run in the namespace (and user namespace) concerned.

use std::os::fd::{AsRawFd, OwnedFd};

use nix::errno::Errno;

fn check(r: libc::c_long) -> nix::Result<libc::c_long> {
    if r < 0 {
        Err(Errno::last())
    } else {
        Ok(r)
    }
}

/// Brings interface `name` up.
pub fn interface_up(name: &str) -> nix::Result<()> {
    let sock = ioctl_socket()?;
    let mut ifr = ifreq(name)?;
    // SAFETY: `ifr` is a valid ifreq for SIOCGIFFLAGS/SIOCSIFFLAGS, which
    // read and write only its name and flags.
    unsafe {
        check(libc::ioctl(sock.as_raw_fd(), libc::SIOCGIFFLAGS, &mut ifr) as _)?;
        ifr.ifr_ifru.ifru_flags |= libc::IFF_UP as libc::c_short;
        check(libc::ioctl(sock.as_raw_fd(), libc::SIOCSIFFLAGS, &ifr) as _)?;
    }
    Ok(())
}

/// A socket for interface ioctls.
fn ioctl_socket() -> nix::Result<OwnedFd> {
    socket_of(nix::sys::socket::AddressFamily::Inet)
}

fn socket_of(family: nix::sys::socket::AddressFamily) -> nix::Result<OwnedFd> {
    use nix::sys::socket::{socket, SockFlag, SockType};
    socket(family, SockType::Datagram, SockFlag::SOCK_CLOEXEC, None)
}

/// An ifreq naming `name`.
fn ifreq(name: &str) -> nix::Result<libc::ifreq> {
    // SAFETY: ifreq is plain data; zero is valid.
    let mut ifr: libc::ifreq = unsafe { std::mem::zeroed() };
    if name.len() >= ifr.ifr_name.len() {
        return Err(Errno::EINVAL);
    }
    for (dst, src) in ifr.ifr_name.iter_mut().zip(name.bytes()) {
        *dst = src as libc::c_char;
    }
    Ok(ifr)
}

fn sockaddr_in(ip: std::net::Ipv4Addr) -> libc::sockaddr {
    let sin = libc::sockaddr_in {
        sin_family: libc::AF_INET as libc::sa_family_t,
        sin_port: 0,
        sin_addr: libc::in_addr {
            s_addr: u32::from(ip).to_be(),
        },
        sin_zero: [0; 8],
    };
    // SAFETY: sockaddr_in and sockaddr have the same size; the kernel reads
    // it as the family says.
    unsafe { std::mem::transmute::<libc::sockaddr_in, libc::sockaddr>(sin) }
}

/// Creates tap device `name` (no packet information header) and returns
/// its descriptor. `tun` is the opened /dev/net/tun.
pub fn create_tap(tun: OwnedFd, name: &str) -> nix::Result<OwnedFd> {
    let mut ifr = ifreq(name)?;
    ifr.ifr_ifru.ifru_flags = (libc::IFF_TAP | libc::IFF_NO_PI) as libc::c_short;
    // SAFETY: TUNSETIFF reads a valid ifreq (name and flags).
    check(unsafe { libc::ioctl(tun.as_raw_fd(), libc::TUNSETIFF, &ifr) } as _)?;
    Ok(tun)
}

/// Gives interface `name` an IPv4 address, netmask and MTU, and brings it up.
pub fn configure_interface(
    name: &str,
    addr: std::net::Ipv4Addr,
    prefix: u8,
    mtu: u32,
) -> nix::Result<()> {
    let sock = ioctl_socket()?;
    let fd = sock.as_raw_fd();
    let mask = std::net::Ipv4Addr::from(u32::MAX.checked_shl(32 - prefix as u32).unwrap_or(0));
    let mut ifr = ifreq(name)?;
    ifr.ifr_ifru.ifru_mtu = mtu as libc::c_int;
    // SAFETY: each ioctl reads (or for SIOCGIFFLAGS writes) only the name
    // and the one union field it is about, in a valid ifreq.
    unsafe {
        check(libc::ioctl(fd, libc::SIOCSIFMTU, &ifr) as _)?;
        ifr.ifr_ifru.ifru_addr = sockaddr_in(addr);
        check(libc::ioctl(fd, libc::SIOCSIFADDR, &ifr) as _)?;
        ifr.ifr_ifru.ifru_netmask = sockaddr_in(mask);
        check(libc::ioctl(fd, libc::SIOCSIFNETMASK, &ifr) as _)?;
    }
    interface_up(name)
}

/// glibc's `struct rtentry` (libc has it only for musl).
#[repr(C)]
struct RtEntry {
    rt_pad1: libc::c_ulong,
    rt_dst: libc::sockaddr,
    rt_gateway: libc::sockaddr,
    rt_genmask: libc::sockaddr,
    rt_flags: libc::c_ushort,
    rt_pad2: libc::c_short,
    rt_pad3: libc::c_ulong,
    rt_pad4: *mut libc::c_void,
    rt_metric: libc::c_short,
    rt_dev: *mut libc::c_char,
    rt_mtu: libc::c_ulong,
    rt_window: libc::c_ulong,
    rt_irtt: libc::c_ushort,
}

/// Adds the default route via `gateway`.
pub fn add_default_route(gateway: std::net::Ipv4Addr) -> nix::Result<()> {
    let sock = ioctl_socket()?;
    let any = std::net::Ipv4Addr::UNSPECIFIED;
    let rt = RtEntry {
        rt_pad1: 0,
        rt_dst: sockaddr_in(any),
        rt_gateway: sockaddr_in(gateway),
        rt_genmask: sockaddr_in(any),
        rt_flags: libc::RTF_UP | libc::RTF_GATEWAY,
        rt_pad2: 0,
        rt_pad3: 0,
        rt_pad4: std::ptr::null_mut(),
        rt_metric: 0,
        rt_dev: std::ptr::null_mut(),
        rt_mtu: 0,
        rt_window: 0,
        rt_irtt: 0,
    };
    // SAFETY: SIOCADDRT reads a valid struct rtentry; its pointers are null.
    check(unsafe { libc::ioctl(sock.as_raw_fd(), libc::SIOCADDRT, &rt) } as _).map(drop)
}

fn in6(ip: std::net::Ipv6Addr) -> libc::in6_addr {
    libc::in6_addr {
        s6_addr: ip.octets(),
    }
}

fn ifindex(name: &str) -> nix::Result<libc::c_int> {
    nix::net::if_::if_nametoindex(name).map(|i| i as libc::c_int)
}

/// Gives interface `name` an IPv6 address (without duplicate address
/// detection, so that it is usable at once).
pub fn configure_interface6(name: &str, addr: std::net::Ipv6Addr, prefix: u8) -> nix::Result<()> {
    // Best effort: where it cannot be written, the address is usable a
    // second later instead.
    let _ = std::fs::write(format!("/proc/sys/net/ipv6/conf/{name}/accept_dad"), "0");
    let sock = socket_of(nix::sys::socket::AddressFamily::Inet6)?;
    let req = libc::in6_ifreq {
        ifr6_addr: in6(addr),
        ifr6_prefixlen: prefix as u32,
        ifr6_ifindex: ifindex(name)?,
    };
    // SAFETY: SIOCSIFADDR on an AF_INET6 socket reads a valid in6_ifreq.
    check(unsafe { libc::ioctl(sock.as_raw_fd(), libc::SIOCSIFADDR, &req) } as _).map(drop)
}

/// The kernel's `struct in6_rtmsg` (libc's has private fields).
#[repr(C)]
struct Rt6 {
    dst: libc::in6_addr,
    src: libc::in6_addr,
    gateway: libc::in6_addr,
    kind: u32,
    dst_len: u16,
    src_len: u16,
    metric: u32,
    info: libc::c_ulong,
    flags: u32,
    ifindex: libc::c_int,
}

/// Adds the default IPv6 route via `gateway` on interface `name`.
pub fn add_default_route6(name: &str, gateway: std::net::Ipv6Addr) -> nix::Result<()> {
    let sock = socket_of(nix::sys::socket::AddressFamily::Inet6)?;
    let any = std::net::Ipv6Addr::UNSPECIFIED;
    let rt = Rt6 {
        dst: in6(any),
        src: in6(any),
        gateway: in6(gateway),
        kind: 0,
        dst_len: 0,
        src_len: 0,
        metric: 1,
        info: 0,
        flags: (libc::RTF_UP | libc::RTF_GATEWAY) as u32,
        ifindex: ifindex(name)?,
    };
    // SAFETY: SIOCADDRT on an AF_INET6 socket reads a valid in6_rtmsg.
    check(unsafe { libc::ioctl(sock.as_raw_fd(), libc::SIOCADDRT, &rt) } as _).map(drop)
}

//! `--net slirp`: the sandbox's network namespace gets a tap device,
//! configured as slirp4netns does (10.0.2.100/24, gateway 10.0.2.2, DNS
//! 10.0.2.3); burrow's own userspace stack (`burrow_netstack`) serves it
//! from a helper process that stays in the host's network namespace.

use std::net::SocketAddr;
use std::os::fd::{AsFd, AsRawFd, OwnedFd};

use nix::fcntl::OFlag;
use nix::sched::CloneFlags;
use nix::sys::stat::Mode;
use nix::unistd::Pid;

use crate::cli::NetMode;
use crate::error::{Context, Error, Result};
use crate::sys;

/// The tap device's name inside, as with slirp4netns.
pub const TAP: &str = "tap0";

/// The stack's settings for this sandbox.
pub fn stack_config(
    allow_host_loopback: bool,
    dns_upstream: Option<SocketAddr>,
) -> burrow_netstack::Config {
    let mut cfg = burrow_netstack::Config {
        allow_host_loopback,
        ..burrow_netstack::Config::default()
    };
    if let Some(up) = dns_upstream.or_else(burrow_netstack::host_resolver) {
        cfg.dns_upstream = up;
    }
    cfg
}

/// `/etc/resolv.conf` inside.
pub fn resolv_conf(cfg: &burrow_netstack::Config) -> String {
    format!("nameserver {}\n", cfg.dns)
}

/// Inside the sandbox (pid 1, in its network namespace, before the root
/// is built): makes and configures the tap device and hands it to the
/// helper over `sock`.
pub fn setup_inside(cfg: &burrow_netstack::Config, sock: &OwnedFd) -> Result<()> {
    let tun = nix::fcntl::open(
        "/dev/net/tun",
        OFlag::O_RDWR | OFlag::O_CLOEXEC,
        Mode::empty(),
    )
    .map_err(|e| {
        Error::usage(format!(
            "--net slirp: cannot open /dev/net/tun: {} (it must exist with mode 0666)",
            e.desc()
        ))
    })?;
    let tap = burrow_netstack::netns::create_tap(tun, TAP)
        .ctx(|| format!("--net slirp: creating {TAP}"))?;
    burrow_netstack::netns::configure_interface(TAP, cfg.guest, cfg.prefix, cfg.mtu as u32)
        .ctx(|| format!("--net slirp: configuring {TAP}"))?;
    burrow_netstack::netns::add_default_route(cfg.gateway)
        .ctx(|| "--net slirp: adding the default route")?;
    if cfg.ipv6 {
        burrow_netstack::netns::configure_interface6(TAP, cfg.guest6, 64)
            .ctx(|| format!("--net slirp: giving {TAP} its IPv6 address"))?;
        burrow_netstack::netns::add_default_route6(TAP, cfg.gateway6)
            .ctx(|| "--net slirp: adding the default IPv6 route")?;
    }
    // `ping` without privileges inside (best effort: the widest range the
    // sandbox's user namespace maps).
    for range in ["0 4294967294", "0 65535", "0 0"] {
        if std::fs::write("/proc/sys/net/ipv4/ping_group_range", range).is_ok() {
            break;
        }
    }
    sys::send_fds(sock.as_fd(), &[tap.as_raw_fd()])
        .ctx(|| "--net slirp: handing the tap device over")
}

/// On the host: forks the helper that serves the sandbox's tap device
/// until the sandbox's network namespace (and with it the device) ends,
/// and relays `publish`ed ports into it. Listening sockets are bound here,
/// so that a port in use is burrow's error before anything starts.
pub fn spawn_helper(
    cfg: burrow_netstack::Config,
    publish: &[(SocketAddr, u16, bool)],
    init: Pid,
    namespaces: Option<&crate::inside::Namespaces>,
    sock: OwnedFd,
    life: sys::HelperLife,
) -> Result<Pid> {
    enum Port {
        Tcp(std::net::TcpListener),
        Udp(std::net::UdpSocket),
    }
    let mut ports = Vec::new();
    for (host, inside, udp) in publish {
        let bound = if *udp {
            std::net::UdpSocket::bind(host).map(Port::Udp)
        } else {
            std::net::TcpListener::bind(host).map(Port::Tcp)
        };
        let proto = if *udp { "/udp" } else { "" };
        let port = bound.map_err(|e| {
            Error::usage(format!(
                "--publish {host}:{inside}{proto}: {}",
                sys::errno_text(&e)
            ))
        })?;
        ports.push((port, *inside));
    }
    // Opened now, while pid 1 waits for its id maps (later it is not
    // dumpable and its /proc files are closed to us).
    // (Made inside namespaces joined, pid 1 never was dumpable: they
    // were handed over.)
    let ns = |kind: &str| {
        let given = namespaces.and_then(|n| match kind {
            "user" => Some(&n.user),
            _ => n.net.as_ref(),
        });
        match given {
            Some(fd) => fd.try_clone(),
            None => std::fs::File::open(format!("/proc/{init}/ns/{kind}")).map(OwnedFd::from),
        }
        .map_err(|e| Error::usage(format!("opening the sandbox's {kind} namespace: {e}")))
    };
    let namespaces = if ports.is_empty() {
        None
    } else {
        Some((ns("user")?, ns("net")?))
    };
    match sys::fork_helper(life).ctx(|| "fork")? {
        sys::Helper::Parent(pid) => Ok(pid),
        sys::Helper::Child(sandbox) => {
            // A host socket per connection.
            burrow_unionfs::fs::raise_open_file_limit();
            if let Some((userns, netns)) = namespaces {
                // Joining the sandbox's user namespace (while this process
                // has one thread) is what lets a thread join its network
                // namespace; host sockets work as before.
                let joined = nix::sched::setns(&userns, CloneFlags::CLONE_NEWUSER)
                    .map_err(std::io::Error::from)
                    .map(|()| {
                        burrow_netstack::publish::Publisher::new(
                            burrow_netstack::publish::Namespace::Held(netns),
                        )
                    })
                    .and_then(|publisher| {
                        for (bound, port) in ports {
                            let inside =
                                std::net::SocketAddrV4::new(std::net::Ipv4Addr::LOCALHOST, port);
                            match bound {
                                Port::Tcp(l) => publisher.add(l, inside)?,
                                Port::Udp(s) => publisher.add_udp(s, inside)?,
                            };
                        }
                        Ok(())
                    });
                if let Err(e) = joined {
                    eprintln!("burrow: --publish: {e}");
                    sys::exit_now(1);
                }
            }
            if let Some(pid1) = sandbox {
                sys::exit_when_ended(pid1); // (threads are allowed now)
            }
            let code = match sys::recv_fds(sock.as_fd()) {
                Ok(fds) => match fds.into_iter().next() {
                    Some(tap) => match burrow_netstack::serve(tap, cfg) {
                        Ok(()) => 0,
                        Err(e) => {
                            eprintln!("burrow: network stack: {e}");
                            1
                        }
                    },
                    None => 0, // the sandbox failed before making the device
                },
                Err(_) => 0,
            };
            sys::exit_now(code)
        }
    }
}

/// Runs the system's `slirp4netns` or `pasta` for the sandbox whose pid 1
/// is `init`, and waits until the namespace is configured (both join it
/// through /proc/PID/ns, which must happen while pid 1 is still dumpable).
/// The returned guard ends either with burrow; if burrow is killed, both
/// get SIGKILL as their parent dies.
pub fn start_external(mode: NetMode, init: Pid) -> Result<ExternalGuard> {
    let (prog, package, needs): (_, _, &[&str]) = match mode {
        NetMode::Slirp4netns => (
            "slirp4netns",
            "slirp4netns",
            &[
                "--configure",
                "--mtu",
                "--disable-host-loopback",
                "--ready-fd",
                "--exit-fd",
            ],
        ),
        _ => (
            "pasta",
            "passt",
            &["--config-net", "--foreground", "--pid", "--quiet"],
        ),
    };
    let unusable = |why: String| {
        Error::usage(format!(
            "--net {prog}: {why} (install the {package} package, or use --net slirp)"
        ))
    };
    // Too old a version lacks options burrow passes: say so plainly.
    let help = std::process::Command::new(prog)
        .arg("--help")
        .stdin(std::process::Stdio::null())
        .output()
        .map_err(|e| unusable(format!("cannot run {prog}: {}", sys::errno_text(&e))))?;
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&help.stdout),
        String::from_utf8_lossy(&help.stderr)
    );
    if let Some(missing) = needs.iter().find(|o| !text.contains(*o)) {
        return Err(unusable(format!(
            "this {prog} is too old: it has no {missing} option"
        )));
    }
    let cloexec = |fd: &OwnedFd| {
        nix::fcntl::fcntl(fd, nix::fcntl::F_SETFD(nix::fcntl::FdFlag::FD_CLOEXEC)).map(drop)
    };
    // The tool writes to `ready` once the namespace is set up.
    let (ready_r, ready_w) = nix::unistd::pipe().ctx(|| "pipe")?;
    cloexec(&ready_r).ctx(|| "pipe")?;
    let mut cmd = std::process::Command::new(prog);
    sys::killed_with_parent(&mut cmd);
    // Held by burrow for the sandbox's lifetime: slirp4netns exits when
    // its exit pipe closes; pasta (in the foreground, as burrow's child,
    // since it would hold the namespace alive on its own) is killed.
    let held = match mode {
        NetMode::Slirp4netns => {
            let (exit_r, exit_w) = nix::unistd::pipe().ctx(|| "pipe")?;
            cloexec(&exit_w).ctx(|| "pipe")?;
            cmd.args(["--configure", "--mtu", "65520", "--disable-host-loopback"])
                .arg(format!("--ready-fd={}", ready_w.as_raw_fd()))
                .arg(format!("--exit-fd={}", exit_r.as_raw_fd()))
                .arg(init.to_string())
                .arg("tap0");
            // exit_r goes to the child with `cmd` and is closed here after.
            (exit_w, Some(exit_r))
        }
        _ => {
            cmd.args(["--config-net", "--quiet", "--foreground", "--pid"])
                .arg(format!("/proc/self/fd/{}", ready_w.as_raw_fd()))
                .arg(init.to_string());
            (ready_r.try_clone().ctx(|| "dup")?, None)
        }
    };
    let child = cmd
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .map_err(|e| unusable(format!("cannot run {prog}: {}", sys::errno_text(&e))))?;
    drop((ready_w, held.1));
    let mut byte = [0u8; 1];
    if !matches!(nix::unistd::read(&ready_r, &mut byte), Ok(1)) {
        let why = child
            .wait_with_output()
            .map(|o| {
                let err = String::from_utf8_lossy(&o.stderr);
                err.lines().last().unwrap_or("").trim().to_string()
            })
            .unwrap_or_default();
        return Err(Error::usage(format!("--net {prog}: {prog} failed: {why}")));
    }
    Ok(ExternalGuard(Some((child, held.0)), mode == NetMode::Pasta))
}

/// Keeps slirp4netns (and its exit pipe) or pasta for the sandbox's
/// lifetime; `true`: kill it at the end (pasta), `false`: closing the pipe
/// ends it (slirp4netns).
pub struct ExternalGuard(Option<(std::process::Child, OwnedFd)>, bool);

impl Drop for ExternalGuard {
    fn drop(&mut self) {
        if let Some((mut child, pipe)) = self.0.take() {
            drop(pipe);
            if self.1 {
                let _ = child.kill();
            }
            let _ = child.wait();
        }
    }
}

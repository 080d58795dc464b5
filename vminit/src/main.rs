//! The init of `burrow run --vm`'s guest: pid 1 in the initramfs, linked
//! statically. It loads the virtio modules, says it is up on the control
//! port, takes the command's description from the host, mounts the
//! sandbox's root (virtio-fs) with fresh /proc, /sys, /dev and /tmp,
//! configures the network, runs the command there, relays its standard
//! streams and exit status, and powers the VM off.

use std::ffi::CString;
use std::fs::File;
use std::io::{Read, Write};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};

mod confine;

use burrow_vm_init::{
    frame, status_frame, to_guest, to_host, FrameReader, GuestConfig, GuestNet, FS_TAG, PORT_NAME,
};

const NEWROOT: &str = "/newroot";
/// Most input held for a command that is not reading it.
const MAX_PENDING: usize = 1 << 20;

fn main() {
    if std::process::id() != 1 {
        eprintln!("burrow-vm-init: this is the init of burrow's VM guest; it runs as pid 1 only");
        std::process::exit(2);
    }
    if let Err(msg) = boot() {
        // No port to the host: the console is all there is.
        eprintln!("burrow-vm-init: {msg}");
    }
    // SAFETY: sync and reboot take no pointers; pid 1 ends the VM here.
    unsafe {
        libc::sync();
        libc::reboot(libc::RB_POWER_OFF);
    }
}

fn boot() -> Result<(), String> {
    mount("proc", "/proc", "proc", "")?;
    mount("sysfs", "/sys", "sysfs", "")?;
    mount("devtmpfs", "/dev", "devtmpfs", "")?;
    load_modules()?;
    let mut port = open_port()?;
    port.write_all(&frame(to_host::READY, &[]))
        .map_err(|e| format!("writing to the control port: {e}"))?;
    let mut reader = FrameReader::default();
    let cfg: GuestConfig = loop {
        let (kind, payload) = read_frame(&mut port, &mut reader)?;
        if kind == to_guest::CONFIG {
            break serde_json::from_slice(&payload)
                .map_err(|e| format!("the host's configuration: {e}"))?;
        }
    };
    let (code, msg) = match setup(&cfg).and_then(|()| run_command(&cfg, &mut port, reader)) {
        Ok(code) => (code, None),
        Err((code, msg)) => (code, Some(msg)),
    };
    let out = match msg {
        Some(msg) => status_frame(to_host::FAILED, code, &msg),
        None => status_frame(to_host::EXIT, code, ""),
    };
    port.write_all(&out)
        .map_err(|e| format!("reporting the exit status: {e}"))?;
    // A port's write returns once the data is queued, not delivered: power
    // off only once the host has the status (or has gone).
    wait_for_ack(&mut port);
    Ok(())
}

/// Reads the port until the host's [`to_guest::ACK`], for 3 s at most.
fn wait_for_ack(port: &mut File) {
    let mut reader = FrameReader::default();
    let mut buf = [0u8; 4096];
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(3);
    while std::time::Instant::now() < deadline {
        let mut fds = [libc::pollfd {
            fd: port.as_raw_fd(),
            events: libc::POLLIN,
            revents: 0,
        }];
        // SAFETY: `fds` is a valid pollfd array for the call.
        if unsafe { libc::poll(fds.as_mut_ptr(), 1, 100) } <= 0 {
            continue;
        }
        match port.read(&mut buf) {
            Ok(0) | Err(_) => return,
            Ok(n) => reader.push(&buf[..n]),
        }
        while let Ok(Some((kind, _))) = reader.next_frame() {
            if kind == to_guest::ACK {
                return;
            }
        }
    }
}

type Failure = (i32, String);

fn setup_err(msg: String) -> Failure {
    (125, msg)
}

fn read_frame(port: &mut File, reader: &mut FrameReader) -> Result<(u8, Vec<u8>), String> {
    let mut buf = [0u8; 4096];
    loop {
        if let Some(f) = reader.next_frame().map_err(|e| e.to_string())? {
            return Ok(f);
        }
        match port.read(&mut buf) {
            Ok(0) => return Err("the host closed the control port".into()),
            Ok(n) => reader.push(&buf[..n]),
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => return Err(format!("reading the control port: {e}")),
        }
    }
}

fn cstr(s: &str) -> CString {
    CString::new(s).expect("no NUL in a constant")
}

fn mount(src: &str, dst: &str, fstype: &str, data: &str) -> Result<(), String> {
    let _ = std::fs::create_dir_all(dst);
    let (s, d, t, o) = (cstr(src), cstr(dst), cstr(fstype), cstr(data));
    // SAFETY: every pointer is a NUL-terminated string that outlives the call.
    let rc = unsafe {
        libc::mount(
            s.as_ptr(),
            d.as_ptr(),
            t.as_ptr(),
            libc::MS_NOSUID,
            o.as_ptr().cast(),
        )
    };
    if rc != 0 {
        return Err(format!(
            "mounting {fstype} on {dst}: {}",
            std::io::Error::last_os_error()
        ));
    }
    Ok(())
}

fn bind(src: &str, dst: &str) -> Result<(), String> {
    let (s, d) = (cstr(src), cstr(dst));
    // SAFETY: NUL-terminated strings; no data argument for a bind.
    let rc = unsafe {
        libc::mount(
            s.as_ptr(),
            d.as_ptr(),
            std::ptr::null(),
            libc::MS_BIND,
            std::ptr::null(),
        )
    };
    if rc != 0 {
        return Err(format!(
            "binding {src} on {dst}: {}",
            std::io::Error::last_os_error()
        ));
    }
    Ok(())
}

/// Loads /modules/*.ko in the order /modules/order lists them.
fn load_modules() -> Result<(), String> {
    let Ok(order) = std::fs::read_to_string("/modules/order") else {
        return Ok(()); // a kernel with everything built in
    };
    for name in order.split_whitespace() {
        let path = format!("/modules/{name}.ko");
        let file = File::open(&path).map_err(|e| format!("{path}: {e}"))?;
        // SAFETY: finit_module reads the module from the descriptor; the
        // parameter string is an empty NUL-terminated string.
        let rc =
            unsafe { libc::syscall(libc::SYS_finit_module, file.as_raw_fd(), c"".as_ptr(), 0) };
        let err = std::io::Error::last_os_error();
        if rc != 0 && err.raw_os_error() != Some(libc::EEXIST) {
            return Err(format!("loading the module {name}: {err}"));
        }
    }
    Ok(())
}

/// The control port, found by name once the virtio-serial driver has
/// announced it.
fn open_port() -> Result<File, String> {
    for _ in 0..500 {
        if let Ok(dir) = std::fs::read_dir("/sys/class/virtio-ports") {
            for entry in dir.flatten() {
                let name = std::fs::read_to_string(entry.path().join("name")).unwrap_or_default();
                if name.trim() == PORT_NAME {
                    let dev = std::path::Path::new("/dev").join(entry.file_name());
                    if let Ok(f) = File::options().read(true).write(true).open(&dev) {
                        return Ok(f);
                    }
                }
            }
        }
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
    Err(format!("no virtio-serial port named {PORT_NAME}"))
}

/// The sandbox's root at /newroot, with the guest's own kernel
/// filesystems, hostname, network and resolver. (/tmp, and the user's
/// mounts under it, come from the host with the root.)
fn setup(cfg: &GuestConfig) -> Result<(), Failure> {
    mount(FS_TAG, NEWROOT, "virtiofs", "").map_err(setup_err)?;
    for (src, dst, fstype, data) in [
        ("proc", "/newroot/proc", "proc", ""),
        ("sysfs", "/newroot/sys", "sysfs", ""),
        ("devtmpfs", "/newroot/dev", "devtmpfs", ""),
        (
            "devpts",
            "/newroot/dev/pts",
            "devpts",
            "newinstance,ptmxmode=0666",
        ),
        ("tmpfs", "/newroot/dev/shm", "tmpfs", "mode=1777"),
    ] {
        mount(src, dst, fstype, data).map_err(setup_err)?;
    }
    if let Some(name) = &cfg.hostname {
        // SAFETY: the pointer and length describe `name`'s bytes.
        if unsafe { libc::sethostname(name.as_ptr().cast(), name.len()) } != 0 {
            return Err(setup_err(format!(
                "setting the hostname: {}",
                std::io::Error::last_os_error()
            )));
        }
    }
    configure_interface("lo", None).map_err(setup_err)?;
    if let Some(net) = &cfg.net {
        let iface = first_ethernet().ok_or_else(|| setup_err("no network interface".into()))?;
        configure_interface(&iface, Some(net)).map_err(setup_err)?;
        // The resolver, as a file of the guest's own, over the rootfs'.
        let [a, b, c, d] = net.dns;
        mount("tmpfs", "/run-burrow", "tmpfs", "mode=0755").map_err(setup_err)?;
        std::fs::write(
            "/run-burrow/resolv.conf",
            format!("nameserver {a}.{b}.{c}.{d}\n"),
        )
        .map_err(|e| setup_err(format!("writing resolv.conf: {e}")))?;
        if std::path::Path::new("/newroot/etc/resolv.conf").exists() {
            bind("/run-burrow/resolv.conf", "/newroot/etc/resolv.conf").map_err(setup_err)?;
        }
    }
    switch_root().map_err(setup_err)
}

/// Makes /newroot the root of the mount namespace (the initramfs cannot
/// be pivoted away, so it is covered instead): a root the command could
/// not tell from a real one — a chroot would, and the kernel would refuse
/// it new user namespaces.
fn switch_root() -> Result<(), String> {
    let fail = |what: &str| format!("{what}: {}", std::io::Error::last_os_error());
    // SAFETY: NUL-terminated paths; no data argument for a move.
    unsafe {
        if libc::chdir(c"/newroot".as_ptr()) != 0 {
            return Err(fail("entering /newroot"));
        }
        if libc::mount(
            c".".as_ptr(),
            c"/".as_ptr(),
            std::ptr::null(),
            libc::MS_MOVE,
            std::ptr::null(),
        ) != 0
        {
            return Err(fail("moving the root"));
        }
        if libc::chroot(c".".as_ptr()) != 0 || libc::chdir(c"/".as_ptr()) != 0 {
            return Err(fail("entering the root"));
        }
    }
    Ok(())
}

fn first_ethernet() -> Option<String> {
    let mut names: Vec<String> = std::fs::read_dir("/sys/class/net")
        .ok()?
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n != "lo")
        .collect();
    names.sort();
    names.into_iter().next()
}

fn sockaddr(addr: [u8; 4]) -> libc::sockaddr {
    let sin = libc::sockaddr_in {
        sin_family: libc::AF_INET as libc::sa_family_t,
        sin_port: 0,
        sin_addr: libc::in_addr {
            s_addr: u32::from_ne_bytes(addr),
        },
        sin_zero: [0; 8],
    };
    // SAFETY: sockaddr_in and sockaddr have the same size; the kernel
    // reads the address family to interpret it.
    unsafe { std::mem::transmute::<libc::sockaddr_in, libc::sockaddr>(sin) }
}

fn ifreq(name: &str) -> libc::ifreq {
    // SAFETY: ifreq is plain old data; all zeroes is a valid value.
    let mut ifr: libc::ifreq = unsafe { std::mem::zeroed() };
    for (dst, src) in ifr.ifr_name.iter_mut().zip(name.bytes().take(15)) {
        *dst = src as libc::c_char;
    }
    ifr
}

fn ioctl<T>(sock: &OwnedFd, req: libc::c_ulong, arg: &mut T, what: &str) -> Result<(), String> {
    // SAFETY: `arg` is the structure the request expects, valid for the call.
    if unsafe { libc::ioctl(sock.as_raw_fd(), req as _, arg as *mut T) } != 0 {
        return Err(format!("{what}: {}", std::io::Error::last_os_error()));
    }
    Ok(())
}

/// Brings `name` up, with an address, netmask and default route when given.
fn configure_interface(name: &str, net: Option<&GuestNet>) -> Result<(), String> {
    // SAFETY: socket() takes no pointers; the descriptor is owned below.
    let raw = unsafe { libc::socket(libc::AF_INET, libc::SOCK_DGRAM | libc::SOCK_CLOEXEC, 0) };
    if raw < 0 {
        return Err(format!(
            "socket for interface set-up: {}",
            std::io::Error::last_os_error()
        ));
    }
    // SAFETY: `raw` is a new descriptor nothing else owns.
    let sock = unsafe { OwnedFd::from_raw_fd(raw) };
    if let Some(net) = net {
        let mut ifr = ifreq(name);
        ifr.ifr_ifru.ifru_addr = sockaddr(net.addr);
        ioctl(&sock, libc::SIOCSIFADDR, &mut ifr, "setting the address")?;
        let mask = u32::MAX
            .checked_shl(32 - u32::from(net.prefix))
            .unwrap_or(0)
            .to_be_bytes();
        ifr.ifr_ifru.ifru_netmask = sockaddr(mask);
        ioctl(&sock, libc::SIOCSIFNETMASK, &mut ifr, "setting the netmask")?;
    }
    let mut ifr = ifreq(name);
    ioctl(
        &sock,
        libc::SIOCGIFFLAGS,
        &mut ifr,
        "reading interface flags",
    )?;
    // SAFETY: SIOCGIFFLAGS filled the flags member of the union.
    unsafe { ifr.ifr_ifru.ifru_flags |= (libc::IFF_UP | libc::IFF_RUNNING) as libc::c_short };
    ioctl(
        &sock,
        libc::SIOCSIFFLAGS,
        &mut ifr,
        "bringing the interface up",
    )?;
    if let Some(net) = net {
        // SAFETY: rtentry is plain old data; all zeroes is a valid value.
        let mut rt: libc::rtentry = unsafe { std::mem::zeroed() };
        rt.rt_dst = sockaddr([0; 4]);
        rt.rt_genmask = sockaddr([0; 4]);
        rt.rt_gateway = sockaddr(net.gateway);
        rt.rt_flags = libc::RTF_UP | libc::RTF_GATEWAY;
        let dev = cstr(name);
        rt.rt_dev = dev.as_ptr() as *mut libc::c_char;
        ioctl(&sock, libc::SIOCADDRT, &mut rt, "adding the default route")?;
    }
    Ok(())
}

fn pipe() -> Result<(OwnedFd, OwnedFd), Failure> {
    let mut fds = [0; 2];
    // SAFETY: `fds` has room for the two descriptors pipe2 writes.
    if unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) } != 0 {
        return Err(setup_err(format!(
            "pipe: {}",
            std::io::Error::last_os_error()
        )));
    }
    // SAFETY: both descriptors are new and owned here alone.
    Ok(unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) })
}

fn set_nonblocking(fd: RawFd) {
    // SAFETY: fcntl on a descriptor this process owns.
    unsafe {
        let flags = libc::fcntl(fd, libc::F_GETFL);
        libc::fcntl(fd, libc::F_SETFL, flags | libc::O_NONBLOCK);
    }
}

/// The command's standard streams as the init holds them.
struct Stdio {
    /// Where its input goes.
    input: OwnedFd,
    /// What it writes, and the kind of frame that carries it.
    outputs: Vec<(OwnedFd, u8)>,
    /// The terminal (its controller side), to resize.
    pty: Option<OwnedFd>,
}

/// The command's ends of its standard streams.
enum ChildEnds {
    Pipes([OwnedFd; 3]),
    Tty(OwnedFd),
}

/// Forks the command on pipes or, for a terminal, a pseudo-terminal of
/// the sandbox's /dev/pts, and relays its streams over the port until it
/// exits. Returns its exit status.
fn run_command(
    cfg: &GuestConfig,
    port: &mut File,
    mut reader: FrameReader,
) -> Result<i32, Failure> {
    if cfg.argv.is_empty() {
        return Err(setup_err("no command".into()));
    }
    let argv = to_cstrings(&cfg.argv)?;
    let env = to_cstrings(&cfg.env)?;
    let (exec_r, exec_w) = pipe()?;
    let dup = |fd: &OwnedFd| fd.try_clone().map_err(|e| setup_err(format!("dup: {e}")));
    let (stdio, child_ends) = match cfg.tty {
        Some((rows, cols)) => {
            let (master, slave) = open_pty(rows, cols).map_err(setup_err)?;
            let stdio = Stdio {
                input: dup(&master)?,
                outputs: vec![(dup(&master)?, to_host::STDOUT)],
                pty: Some(master),
            };
            (stdio, ChildEnds::Tty(slave))
        }
        None => {
            let (in_r, in_w) = pipe()?;
            let (out_r, out_w) = pipe()?;
            let (err_r, err_w) = pipe()?;
            let stdio = Stdio {
                input: in_w,
                outputs: vec![(out_r, to_host::STDOUT), (err_r, to_host::STDERR)],
                pty: None,
            };
            (stdio, ChildEnds::Pipes([in_r, out_w, err_w]))
        }
    };
    // SAFETY: this init is single-threaded, so the child may allocate and
    // use the standard library until it execs.
    let pid = unsafe { libc::fork() };
    if pid < 0 {
        return Err(setup_err(format!(
            "fork: {}",
            std::io::Error::last_os_error()
        )));
    }
    if pid == 0 {
        let (code, msg) = exec_child(cfg, &argv, &env, &child_ends);
        let mut report = code.to_le_bytes().to_vec();
        report.extend_from_slice(msg.as_bytes());
        // SAFETY: write to the pipe, then leave without running destructors.
        unsafe {
            libc::write(exec_w.as_raw_fd(), report.as_ptr().cast(), report.len());
            libc::_exit(code);
        }
    }
    drop((child_ends, exec_w));
    // The command exec'd when the report pipe closes without a word.
    let mut report = Vec::new();
    let _ = File::from(exec_r).read_to_end(&mut report);
    if report.len() >= 4 {
        let code = i32::from_le_bytes(report[..4].try_into().unwrap_or([0; 4]));
        reap(pid);
        return Err((code, String::from_utf8_lossy(&report[4..]).into_owned()));
    }
    relay(pid, port, &mut reader, stdio).map_err(setup_err)
}

/// A pseudo-terminal of the sandbox's devpts (so that the command finds
/// its terminal under /dev/pts), of the given size.
fn open_pty(rows: u16, cols: u16) -> Result<(OwnedFd, OwnedFd), String> {
    let fail = |what: &str| format!("{what}: {}", std::io::Error::last_os_error());
    // SAFETY: a NUL-terminated path; the descriptor is owned below.
    let m = unsafe {
        libc::open(
            c"/dev/pts/ptmx".as_ptr(),
            libc::O_RDWR | libc::O_NOCTTY | libc::O_CLOEXEC,
        )
    };
    if m < 0 {
        return Err(fail("opening /dev/pts/ptmx"));
    }
    // SAFETY: a new descriptor nothing else owns.
    let master = unsafe { OwnedFd::from_raw_fd(m) };
    let mut unlock: libc::c_int = 0;
    let mut n: libc::c_uint = 0;
    let size = libc::winsize {
        ws_row: rows,
        ws_col: cols,
        ws_xpixel: 0,
        ws_ypixel: 0,
    };
    // SAFETY: each ioctl gets the argument type it expects.
    unsafe {
        if libc::ioctl(m, libc::TIOCSPTLCK, &mut unlock) != 0
            || libc::ioctl(m, libc::TIOCGPTN, &mut n) != 0
            || libc::ioctl(m, libc::TIOCSWINSZ, &size) != 0
        {
            return Err(fail("setting up the terminal"));
        }
    }
    let path = cstr(&format!("/dev/pts/{n}"));
    // SAFETY: a NUL-terminated path; the descriptor is owned below.
    let s = unsafe {
        libc::open(
            path.as_ptr(),
            libc::O_RDWR | libc::O_NOCTTY | libc::O_CLOEXEC,
        )
    };
    if s < 0 {
        return Err(fail("opening the terminal"));
    }
    // SAFETY: a new descriptor nothing else owns.
    Ok((master, unsafe { OwnedFd::from_raw_fd(s) }))
}

fn to_cstrings(items: &[Vec<u8>]) -> Result<Vec<CString>, Failure> {
    items
        .iter()
        .map(|a| CString::new(a.clone()).map_err(|_| setup_err("a NUL byte in the command".into())))
        .collect()
}

/// In the forked child: enter the root and become the command. Returns
/// only on failure, with the status and message to report.
fn exec_child(
    cfg: &GuestConfig,
    argv: &[CString],
    env: &[CString],
    ends: &ChildEnds,
) -> (i32, String) {
    // SAFETY: setsid takes nothing; it makes the command a session leader
    // (so that a terminal can become its controlling one).
    unsafe { libc::setsid() };
    let fds: [RawFd; 3] = match ends {
        ChildEnds::Pipes(p) => [p[0].as_raw_fd(), p[1].as_raw_fd(), p[2].as_raw_fd()],
        ChildEnds::Tty(t) => {
            // SAFETY: TIOCSCTTY on the terminal this child holds.
            if unsafe { libc::ioctl(t.as_raw_fd(), libc::TIOCSCTTY, 0) } != 0 {
                return (
                    125,
                    format!("taking the terminal: {}", std::io::Error::last_os_error()),
                );
            }
            [t.as_raw_fd(); 3]
        }
    };
    for (i, fd) in fds.iter().enumerate() {
        // SAFETY: dup2 onto the standard descriptors of this child.
        if unsafe { libc::dup2(*fd, i as RawFd) } < 0 {
            return (125, format!("dup2: {}", std::io::Error::last_os_error()));
        }
    }
    // The command starts with every signal at its default and none
    // blocked (this init, a Rust program, ignores SIGPIPE).
    // SAFETY: signal and sigprocmask with valid arguments; the set is
    // initialised by sigemptyset.
    unsafe {
        for sig in 1..libc::SIGRTMAX() {
            if sig != libc::SIGKILL && sig != libc::SIGSTOP {
                libc::signal(sig, libc::SIG_DFL);
            }
        }
        let mut set = std::mem::zeroed::<libc::sigset_t>();
        libc::sigemptyset(&mut set);
        libc::sigprocmask(libc::SIG_SETMASK, &set, std::ptr::null_mut());
    }
    let dirs = cfg.cwd.iter().chain(cfg.fallback_dirs.iter());
    let mut cwd = b"/".to_vec();
    for dir in dirs {
        let Ok(c) = CString::new(dir.clone()) else {
            continue;
        };
        // SAFETY: NUL-terminated path.
        if unsafe { libc::chdir(c.as_ptr()) } == 0 {
            cwd = dir.clone();
            break;
        }
        if cfg.cwd.as_ref() == Some(dir) {
            return (
                125,
                format!(
                    "--chdir {}: {}",
                    String::from_utf8_lossy(dir),
                    std::io::Error::last_os_error()
                ),
            );
        }
    }
    let user = match cfg
        .user
        .as_deref()
        .map(burrow_vm_init::user::resolve_in_root)
    {
        Some(Ok(id)) => Some(id),
        Some(Err(msg)) => return (125, msg),
        None => None,
    };
    let (uid, gid, groups) = match &user {
        Some(id) => (id.uid, id.gid, id.groups.clone()),
        None => (cfg.uid, cfg.gid, Vec::new()),
    };
    if uid != 0 {
        confine::keep_caps_across_setuid();
    }
    // SAFETY: id-setting calls with plain integers and a list of `groups.len()` gids.
    unsafe {
        if libc::setgroups(groups.len(), groups.as_ptr()) != 0
            || libc::setgid(gid) != 0
            || libc::setuid(uid) != 0
        {
            return (
                125,
                format!(
                    "switching to uid {uid}: {}",
                    std::io::Error::last_os_error()
                ),
            );
        }
    }
    let mut env = burrow_vm_init::exec::with_pwd(env, &cwd);
    if cfg.home_if_unset {
        let home = user.as_ref().map_or(&b"/root"[..], |id| &id.home);
        env = burrow_vm_init::user::with_home(env, home);
    }
    let mut confinement = cfg.confine.clone();
    if user.is_some() && uid != 0 {
        confinement.caps = confinement.user_caps.clone();
    }
    // Last, so that nothing the init still does is confined by it.
    match confine::apply(&confinement) {
        Ok(warnings) => {
            for w in warnings {
                eprintln!("burrow: warning: {w}");
            }
        }
        Err(msg) => return (125, msg),
    }
    let errno = burrow_vm_init::exec::exec_search(argv, &env);
    let code = if matches!(errno, libc::ENOENT | libc::ENOTDIR) {
        127
    } else {
        126
    };
    (
        code,
        format!(
            "cannot run '{}' in the VM: {}",
            argv[0].to_string_lossy(),
            std::io::Error::from_raw_os_error(errno)
        ),
    )
}

/// Waits for `pid` and returns its status as a shell would.
fn reap(pid: libc::pid_t) -> Option<i32> {
    let mut status = 0;
    // SAFETY: `status` is a valid out-pointer.
    let r = unsafe { libc::waitpid(pid, &mut status, 0) };
    (r == pid).then(|| decode(status))
}

fn decode(status: i32) -> i32 {
    if libc::WIFSIGNALED(status) {
        128 + libc::WTERMSIG(status)
    } else {
        libc::WEXITSTATUS(status)
    }
}

/// Moves bytes between the port and the command until the command exits;
/// returns its status.
fn relay(
    pid: libc::pid_t,
    port: &mut File,
    reader: &mut FrameReader,
    stdio: Stdio,
) -> Result<i32, String> {
    // SAFETY: pidfd_open takes a pid and flags.
    let pidfd = unsafe { libc::syscall(libc::SYS_pidfd_open, pid, 0) } as RawFd;
    if pidfd < 0 {
        return Err(format!("pidfd_open: {}", std::io::Error::last_os_error()));
    }
    // SAFETY: a new descriptor owned here alone.
    let pidfd = unsafe { OwnedFd::from_raw_fd(pidfd) };
    set_nonblocking(stdio.input.as_raw_fd());
    let tty = stdio.pty.is_some();
    let mut stdin = Some(stdio.input);
    let mut pending: Vec<u8> = Vec::new();
    let mut stdin_eof = false;
    let mut outs: Vec<(Option<OwnedFd>, u8)> = stdio
        .outputs
        .into_iter()
        .map(|(fd, kind)| {
            set_nonblocking(fd.as_raw_fd());
            (Some(fd), kind)
        })
        .collect();
    let mut buf = vec![0u8; 64 * 1024];
    let mut status = None;
    loop {
        // Input waiting for the command is bounded: past it the port is
        // not read, and the host holds back (virtio-serial's own flow
        // control).
        let take_input = pending.len() < MAX_PENDING;
        let mut fds = vec![
            libc::pollfd {
                fd: port.as_raw_fd(),
                events: if take_input { libc::POLLIN } else { 0 },
                revents: 0,
            },
            libc::pollfd {
                fd: pidfd.as_raw_fd(),
                events: libc::POLLIN,
                revents: 0,
            },
        ];
        for (fd, _) in &outs {
            fds.push(libc::pollfd {
                fd: fd.as_ref().map_or(-1, |f| f.as_raw_fd()),
                events: libc::POLLIN,
                revents: 0,
            });
        }
        let stdin_fd = match (&stdin, pending.is_empty()) {
            (Some(f), false) => f.as_raw_fd(),
            _ => -1,
        };
        fds.push(libc::pollfd {
            fd: stdin_fd,
            events: libc::POLLOUT,
            revents: 0,
        });
        // SAFETY: `fds` is a valid array of pollfd for the call.
        let n = unsafe { libc::poll(fds.as_mut_ptr(), fds.len() as libc::nfds_t, 1000) };
        if n < 0 {
            continue; // EINTR
        }
        if fds[0].revents != 0 {
            match port.read(&mut buf) {
                Ok(0) => return Err("the host closed the control port".into()),
                Ok(n) => reader.push(&buf[..n]),
                Err(_) => {}
            }
        }
        // (Frames may have come with the configuration, before the
        // command existed.)
        while let Some((kind, payload)) = reader.next_frame().map_err(|e| e.to_string())? {
            match kind {
                to_guest::STDIN if stdin.is_some() => pending.extend_from_slice(&payload),
                // A terminal has no end of input: ^D is the user's to type.
                to_guest::STDIN_EOF if !tty => stdin_eof = true,
                to_guest::SIGNAL => {
                    if let Some((sig, _)) = burrow_vm_init::parse_status(&payload) {
                        // SAFETY: kill takes plain integers. The command
                        // leads its own process group (setsid).
                        unsafe { libc::kill(-pid, sig) };
                    }
                }
                to_guest::RESIZE => {
                    if let (Some(pty), Some((rows, cols))) =
                        (&stdio.pty, burrow_vm_init::parse_resize(&payload))
                    {
                        let size = libc::winsize {
                            ws_row: rows,
                            ws_col: cols,
                            ws_xpixel: 0,
                            ws_ypixel: 0,
                        };
                        // SAFETY: TIOCSWINSZ reads a winsize; the kernel
                        // signals the terminal's foreground group.
                        unsafe { libc::ioctl(pty.as_raw_fd(), libc::TIOCSWINSZ, &size) };
                    }
                }
                _ => {}
            }
        }
        if let Some(f) = &stdin {
            if !pending.is_empty() {
                // SAFETY: the pointer and length describe `pending`.
                let n =
                    unsafe { libc::write(f.as_raw_fd(), pending.as_ptr().cast(), pending.len()) };
                if n > 0 {
                    pending.drain(..n as usize);
                } else if n < 0
                    && std::io::Error::last_os_error().raw_os_error() == Some(libc::EPIPE)
                {
                    pending.clear();
                    stdin = None;
                }
            }
        }
        if stdin_eof && pending.is_empty() {
            stdin = None; // the command sees end of file
        }
        // One read per stream and round: a command that writes without
        // pause must not keep the loop from the port and its exit.
        for (fd, kind) in outs.iter_mut() {
            forward(fd, *kind, port, &mut buf, 1)?;
        }
        // The command, and any orphan re-parented to pid 1.
        reap_all(pid, &mut status);
        if let Some(code) = status {
            // What the command wrote before it exited, and no more than
            // that: a background process may hold the pipes open.
            for (fd, kind) in outs.iter_mut() {
                forward(fd, *kind, port, &mut buf, 64)?;
            }
            return Ok(code);
        }
    }
}

/// Sends what `fd` has to the host, in at most `max_reads` reads; closes
/// it at end of file.
fn forward(
    fd: &mut Option<OwnedFd>,
    kind: u8,
    port: &mut File,
    buf: &mut [u8],
    max_reads: usize,
) -> Result<(), String> {
    for _ in 0..max_reads {
        let Some(f) = fd else { break };
        // SAFETY: the pointer and length describe `buf`.
        let n = unsafe { libc::read(f.as_raw_fd(), buf.as_mut_ptr().cast(), buf.len()) };
        match n {
            0 => *fd = None,
            n if n > 0 => port
                .write_all(&frame(kind, &buf[..n as usize]))
                .map_err(|e| format!("writing to the control port: {e}"))?,
            _ if std::io::Error::last_os_error().raw_os_error() == Some(libc::EAGAIN) => break,
            _ => *fd = None, // EIO: a terminal nobody holds any more
        }
    }
    Ok(())
}

fn reap_all(command: libc::pid_t, found: &mut Option<i32>) {
    let mut status = 0;
    loop {
        // SAFETY: `status` is a valid out-pointer.
        let r = unsafe { libc::waitpid(-1, &mut status, libc::WNOHANG) };
        if r <= 0 {
            return;
        }
        if r == command {
            *found = Some(decode(status));
        }
    }
}

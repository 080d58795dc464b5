//! `burrow run --vm`: the same sandbox, with the command inside a
//! micro-VM of its own kernel.
//!
//! burrow builds the sandbox as always (namespaces, id maps, the union
//! root and binds, the network), but pid 1's child is not the command: it
//! is the VM supervisor, in a root of its own (the host's tree read-only,
//! fresh /proc, /dev, /tmp and /run) with the sandbox's root at
//! [`GUEST_ROOT`]. Under burrow's seccomp filter and a Landlock ruleset it
//! starts virtiofsd on that root and the VMM (QEMU's `microvm`); the
//! guest's kernel mounts it over virtio-fs, and burrow's static guest init
//! (`burrow-vm-init`) runs the command there. The command's standard
//! streams, signals and exit status travel over one virtio-serial port
//! (see `burrow_vm_init`).

mod clock;
pub mod initrd;
mod qemu;
mod relay;

use std::io::Write;
use std::os::fd::{AsRawFd, IntoRawFd, RawFd};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::net::UnixListener;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use burrow_vm_init::{to_host, FrameReader, GuestConfig, GuestNet};

use crate::cli::{NetMode, RunArgs, VmAccel};
use crate::error::{Error, Result, EXIT_SETUP};

pub use qemu::Qemu;

/// Where the VM supervisor sees the sandbox's root.
pub const GUEST_ROOT: &str = "/run/burrow-vm/root";
/// The supervisor's sockets and logs (a tmpfs of its own).
const RUN_DIR: &str = "/run/burrow-vm";
/// The guest kernel and its modules, as `scripts/setup-host.sh --vm`
/// caches them from Debian's linux-image-cloud-amd64.
pub const DEFAULT_KERNEL: &str = "/var/cache/burrow-guest/vmlinuz";
/// The guest's address on the VMM's user-mode network (the sandbox's own
/// 10.0.2.0/24 stays reachable through it).
const GUEST_NET: GuestNet = GuestNet {
    addr: [10, 0, 3, 15],
    prefix: 24,
    gateway: [10, 0, 3, 2],
    dns: [10, 0, 3, 3],
};

/// An accelerator the VMM can run the guest with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Accel {
    Kvm,
    Tcg,
}

impl Accel {
    fn name(self) -> &'static str {
        match self {
            Accel::Kvm => "kvm",
            Accel::Tcg => "tcg",
        }
    }
}

/// Everything the VM supervisor needs, decided before the sandbox exists.
#[derive(Debug, Clone)]
pub struct VmConfig {
    /// The guest kernel, open for the whole run.
    pub kernel_fd: RawFd,
    /// The initramfs (a memfd): the guest init and its modules.
    pub initrd_fd: RawFd,
    pub accel: VmAccel,
    pub boot_timeout: Duration,
    /// Whether a silent console means a stuck boot.
    pub watch_console: bool,
    pub kernel_args: String,
    pub memory_mib: u64,
    pub cpus: u32,
    pub guest: GuestConfig,
    /// Ports the VMM forwards from the sandbox's network to the guest
    /// (`--publish`'s inside ports; true = UDP).
    pub forwards: Vec<(u16, bool)>,
    pub backend: Qemu,
    /// What confines the VMM and virtiofsd.
    pub security: crate::security::Security,
    /// burrow runs on a terminal (standard input and output): the command
    /// gets a terminal of the guest's, in raw mode here.
    pub tty: bool,
    /// What a SIGTERM reaches the guest's command as.
    pub stop_signal: i32,
}

impl VmConfig {
    /// Validates `--vm`'s settings and prepares the kernel and initramfs.
    pub fn from_args(
        args: &RunArgs,
        argv: &[std::ffi::CString],
        env: &[std::ffi::CString],
        security: crate::security::Security,
    ) -> Result<Self> {
        if args.map_users == crate::cli::MapUsers::None {
            return Err(Error::usage(
                "--vm needs the subordinate id ranges (virtiofsd serves the guest's users): \
                 drop --map-users none",
            ));
        }
        if !(1..=3600).contains(&args.vm_boot_timeout) {
            return Err(Error::usage(format!(
                "--vm-boot-timeout {}: between 1 and 3600 seconds",
                args.vm_boot_timeout
            )));
        }
        let kernel = args
            .vm_kernel
            .clone()
            .unwrap_or_else(|| PathBuf::from(DEFAULT_KERNEL));
        let kernel_file = std::fs::File::open(&kernel).map_err(|e| {
            Error::usage(format!(
                "--vm: no guest kernel at {}: {} (run scripts/setup-host.sh --vm, or give --vm-kernel)",
                kernel.display(),
                crate::sys::errno_text(&e)
            ))
        })?;
        let modules = kernel.parent().unwrap_or(Path::new("/")).join("vm-modules");
        let init = find_guest_init()?;
        let initrd = build_initrd(&init, &modules)?;
        let memory_mib = match &args.memory {
            Some(text) => crate::cgroup::parse_size(text)
                .map(|b| b >> 20)
                .filter(|&m| m >= 64)
                .ok_or_else(|| {
                    Error::usage(format!(
                        "--memory {text}: a VM needs a size of at least 64M"
                    ))
                })?,
            None => 512,
        };
        let cpus = args.cpus.map_or(1, |c| c.ceil().max(1.0) as u32);
        let net = (args.net != NetMode::None).then_some(GuestNet { ..GUEST_NET });
        let (uid, gid) = if args.keep_id {
            (
                nix::unistd::getuid().as_raw(),
                nix::unistd::getgid().as_raw(),
            )
        } else {
            (0, 0)
        };
        let guest = GuestConfig {
            argv: argv.iter().map(|a| a.as_bytes().to_vec()).collect(),
            env: env.iter().map(|a| a.as_bytes().to_vec()).collect(),
            cwd: args
                .chdir
                .as_ref()
                .map(|d| d.as_os_str().as_bytes().to_vec()),
            fallback_dirs: Vec::new(),
            uid,
            gid,
            user: None,
            home_if_unset: false,
            hostname: args.hostname.clone(),
            net,
            tty: None,
            confine: Default::default(),
        };
        Ok(VmConfig {
            kernel_fd: kernel_file.into_raw_fd(),
            initrd_fd: initrd.into_raw_fd(),
            accel: args.vm_accel,
            boot_timeout: Duration::from_secs(args.vm_boot_timeout),
            // Kernel arguments that quiet the console leave the stall
            // watch nothing to watch.
            watch_console: !args
                .vm_kernel_args
                .as_deref()
                .unwrap_or("")
                .split_whitespace()
                .any(|a| a == "quiet" || a.starts_with("loglevel=") || a.starts_with("console=")),
            kernel_args: args.vm_kernel_args.clone().unwrap_or_default(),
            memory_mib,
            cpus,
            guest,
            forwards: Vec::new(),
            backend: Qemu::find()?,
            security,
            tty: {
                use std::io::IsTerminal;
                std::io::stdin().is_terminal() && std::io::stdout().is_terminal()
            },
            stop_signal: libc::SIGTERM,
        })
    }
}

/// burrow's static guest init: beside the burrow binary (installed), or
/// where `make vm-init` builds it in a source tree.
fn find_guest_init() -> Result<PathBuf> {
    let exe = std::env::current_exe().map_err(|e| Error::usage(format!("--vm: {e}")))?;
    let dir = exe.parent().unwrap_or(Path::new("/"));
    let candidates = [
        dir.join("burrow-vm-init"),
        dir.join("../lib/burrow/burrow-vm-init"),
        dir.join("../x86_64-unknown-linux-gnu/release/burrow-vm-init"),
    ];
    for c in &candidates {
        if let Ok(bytes) = std::fs::read(c) {
            if is_static_elf(&bytes) {
                return Ok(c.clone());
            }
        }
    }
    Err(Error::usage(format!(
        "--vm: no statically linked burrow-vm-init beside {} (build it with `make vm-init`)",
        exe.display()
    )))
}

/// An ELF executable with no program interpreter.
fn is_static_elf(b: &[u8]) -> bool {
    if b.len() < 64 || &b[..4] != b"\x7fELF" || b[4] != 2 {
        return false;
    }
    let u64_at = |o: usize| u64::from_le_bytes(b[o..o + 8].try_into().unwrap_or([0; 8])) as usize;
    let u16_at = |o: usize| u16::from_le_bytes([b[o], b[o + 1]]) as usize;
    let (phoff, phentsize, phnum) = (u64_at(0x20), u16_at(0x36), u16_at(0x38));
    (0..phnum).all(|i| {
        let at = i.checked_mul(phentsize).and_then(|o| o.checked_add(phoff));
        at.and_then(|at| b.get(at..at.checked_add(4)?))
            .is_some_and(|t| u32::from_le_bytes([t[0], t[1], t[2], t[3]]) != libc::PT_INTERP)
    })
}

/// The initramfs, in memory: /init, /dev/console, the modules and their
/// load order.
fn build_initrd(init: &Path, modules: &Path) -> Result<std::fs::File> {
    let what = |e: std::io::Error| Error::usage(format!("--vm: building the initramfs: {e}"));
    let order = std::fs::read_to_string(modules.join("order")).map_err(|e| {
        Error::usage(format!(
            "--vm: no guest modules in {}: {} (run scripts/setup-host.sh --vm)",
            modules.display(),
            crate::sys::errno_text(&e)
        ))
    })?;
    let file = crate::sys::memfd("burrow-initrd").map_err(what)?;
    let mut cpio = initrd::Cpio::new(std::io::BufWriter::new(file));
    for dir in ["dev", "proc", "sys", "newroot", "modules"] {
        cpio.dir(dir).map_err(what)?;
    }
    cpio.char_dev("dev/console", 5, 1).map_err(what)?;
    cpio.file("init", 0o755, &std::fs::read(init).map_err(what)?)
        .map_err(what)?;
    cpio.file("modules/order", 0o644, order.as_bytes())
        .map_err(what)?;
    for name in order.split_whitespace() {
        let path = modules.join(format!("{name}.ko"));
        let data = std::fs::read(&path)
            .map_err(|e| Error::usage(format!("--vm: {}: {e}", path.display())))?;
        cpio.file(&format!("modules/{name}.ko"), 0o644, &data)
            .map_err(what)?;
    }
    let mut out = cpio.finish().map_err(what)?;
    out.flush().map_err(what)?;
    out.into_inner().map_err(|e| what(e.into_error()))
}

/// The guest's settings that depend on the sandbox's network.
pub fn finish_config(
    vm: &mut VmConfig,
    publish: &[(std::net::SocketAddr, u16, bool)],
) -> Result<()> {
    vm.forwards = publish.iter().map(|&(_, port, udp)| (port, udp)).collect();
    let size = serde_json::to_vec(&vm.guest).map_or(0, |v| v.len());
    if size > burrow_vm_init::MAX_PAYLOAD {
        return Err(Error::usage(format!(
            "--vm: the command line and environment are too large for the guest ({} MiB as sent, at most {})",
            size >> 20,
            burrow_vm_init::MAX_PAYLOAD >> 20
        )));
    }
    Ok(())
}

/// A way to run the guest. QEMU's `microvm` is the one there is; another
/// VMM (libkrun, say) implements this too.
pub trait Backend {
    /// For messages.
    fn name(&self) -> &'static str;
    /// Starts the guest with `accel`; its control port connects to the
    /// socket `ctl` that the supervisor listens on.
    fn start(&self, vm: &VmConfig, accel: Accel, run_dir: &Path, ctl: &Path) -> Result<Machine>;
}

/// A started VM: its processes (the VMM first) and where they log.
pub struct Machine {
    pub children: Vec<std::process::Child>,
    pub logs: Vec<PathBuf>,
    pub console: PathBuf,
}

impl Machine {
    /// Why the VMM is gone, if it is.
    fn exited(&mut self) -> Option<String> {
        let status = self.children.first_mut()?.try_wait().ok()??;
        let last = last_line(&self.logs[0]);
        // A helper's complaint explains the VMM's failing to talk to it.
        let helpers: String = if last.contains("vhost") {
            self.logs[1..]
                .iter()
                .map(|l| last_line(l))
                .filter(|l| !l.is_empty())
                .map(|l| format!(" (virtiofsd{l})"))
                .collect()
        } else {
            String::new()
        };
        Some(format!("the VMM exited ({status}){last}{helpers}"))
    }

    /// Why the VMM `did` something: its exit, if it comes within a second.
    fn gone(&mut self, did: &str) -> String {
        let deadline = Instant::now() + Duration::from_secs(1);
        while Instant::now() < deadline {
            if let Some(why) = self.exited() {
                return why;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        format!("the VMM {did}{}", last_line(&self.logs[0]))
    }

    fn kill(&mut self) {
        for c in &mut self.children {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// The first line of the guest's console that contains `needle`.
    fn console_line(&self, needle: &str) -> Option<String> {
        let text = std::fs::read_to_string(&self.console).ok()?;
        let line = text.lines().find(|l| l.contains(needle))?;
        Some(line.trim().to_string())
    }

    /// The guest kernel's last words, for a report.
    fn console_tail(&self) -> String {
        let text = std::fs::read_to_string(&self.console).unwrap_or_default();
        let lines: Vec<&str> = text.lines().filter(|l| !l.trim().is_empty()).collect();
        match lines.last() {
            Some(l) => format!("; the guest console's last line: {}", l.trim()),
            None => "; the guest console stayed silent".into(),
        }
    }
}

impl Drop for Machine {
    fn drop(&mut self) {
        self.kill();
    }
}

/// The line of a log that explains a failure: the first that says
/// "error", else the last.
fn last_line(path: &Path) -> String {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let mut lines = text.lines().map(str::trim).filter(|l| !l.is_empty());
    let first_error = text
        .lines()
        .map(str::trim)
        .find(|l| l.contains("error:") || l.contains("Error:"));
    first_error
        .or_else(|| lines.next_back())
        .map(|l| format!(": {l}"))
        .unwrap_or_default()
}

/// Whether /dev/kvm can create VMs for this process.
fn kvm_usable() -> std::result::Result<(), String> {
    let kvm = std::fs::File::options()
        .read(true)
        .write(true)
        .open("/dev/kvm")
        .map_err(|e| format!("/dev/kvm: {}", crate::sys::errno_text(&e)))?;
    const KVM_GET_API_VERSION: libc::c_ulong = 0xAE00;
    // SAFETY: KVM_GET_API_VERSION takes no argument.
    let v = unsafe { libc::ioctl(kvm.as_raw_fd(), KVM_GET_API_VERSION as _, 0) };
    if v != 12 {
        return Err(format!("/dev/kvm answers API version {v}"));
    }
    Ok(())
}

/// In the sandbox, as pid 1's child: runs the VM and exits with the
/// command's status.
pub fn supervise(vm: &VmConfig) -> ! {
    let code = match run(vm) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("burrow: {e}");
            e.exit_code()
        }
    };
    crate::sys::exit_now(code)
}

fn run(vm: &VmConfig) -> Result<i32> {
    for w in vm.security.apply(None, &[]).map_err(Error::usage)? {
        eprintln!("burrow: warning: {w}");
    }
    let run_dir = Path::new(RUN_DIR);
    let ctl = run_dir.join("ctl.sock");
    // A socket of its own for each boot: a VMM that died early must not
    // leave its connection for the next one to find.
    let listen = || -> Result<UnixListener> {
        let _ = std::fs::remove_file(&ctl);
        let l = UnixListener::bind(&ctl)
            .map_err(|e| Error::usage(format!("--vm: control socket: {e}")))?;
        l.set_nonblocking(true)
            .map_err(|e| Error::usage(format!("--vm: control socket: {e}")))?;
        Ok(l)
    };
    let accels = match vm.accel {
        VmAccel::Tcg => vec![Accel::Tcg],
        VmAccel::Kvm => {
            kvm_usable().map_err(|e| Error::usage(format!("--vm-accel kvm: {e}")))?;
            vec![Accel::Kvm]
        }
        VmAccel::Auto => match kvm_usable() {
            Ok(()) => vec![Accel::Kvm, Accel::Tcg],
            Err(why) => {
                eprintln!(
                    "burrow: warning: no usable KVM ({why}): the VM runs under software \
                     emulation (TCG), many times slower"
                );
                vec![Accel::Tcg]
            }
        },
    };
    let backend = &vm.backend;
    for (i, &accel) in accels.iter().enumerate() {
        let fallback = i + 1 < accels.len();
        // A KVM that cannot run the guest fails at once or stays silent:
        // a short wait before falling back.
        let limit = if fallback {
            vm.boot_timeout.min(Duration::from_secs(10))
        } else {
            vm.boot_timeout
        };
        let deadline = Instant::now() + limit;
        let mut boots = 0;
        let why = loop {
            boots += 1;
            let started = Instant::now();
            let listener = listen()?;
            let mut machine = backend.start(vm, accel, run_dir, &ctl)?;
            match wait_ready(&listener, &mut machine, deadline, vm.watch_console) {
                Ok((stream, reader)) => {
                    let booted = started.elapsed();
                    let code = relay::run(vm, stream, reader, machine)?;
                    if std::env::var_os("BURROW_VM_TIMING").is_some() {
                        eprintln!(
                            "burrow: vm timing ({}, boot {boots}): init up {} ms, command done {} ms after the VMM started",
                            accel.name(),
                            booted.as_millis(),
                            started.elapsed().as_millis()
                        );
                    }
                    return Ok(code);
                }
                // Under emulation on a busy host the guest kernel's timer
                // calibration can fail and leave it spinning without a
                // word: boot it again while time remains.
                Err(NotReady::Stalled(_))
                    if accel == Accel::Tcg && boots < 3 && Instant::now() < deadline =>
                {
                    drop(machine)
                }
                Err(NotReady::Stalled(why) | NotReady::Failed(why)) => break why,
            }
        };
        if fallback {
            eprintln!(
                "burrow: warning: KVM cannot run the guest here ({why}); falling back to \
                 software emulation (TCG), many times slower"
            );
            continue;
        }
        return Err(Error::Sandbox {
            code: EXIT_SETUP,
            msg: format!(
                "--vm: the guest did not start ({}, accel {}, {boots} boot{}): {why}",
                backend.name(),
                accel.name(),
                if boots == 1 { "" } else { "s" }
            ),
        });
    }
    unreachable!("the last accelerator returns")
}

/// Why the guest's init has not said it is up.
enum NotReady {
    /// Its console has been silent for [`STALL`]: it may boot if tried again.
    Stalled(String),
    /// It will not: the VMM exited, the kernel panicked, or time is up.
    Failed(String),
}

/// A booting guest kernel prints something at least every few tenths of
/// a second; this long without a line, it is stuck.
const STALL: Duration = Duration::from_secs(3);

/// Waits for the guest's init to say it is up, until `deadline`.
fn wait_ready(
    listener: &UnixListener,
    machine: &mut Machine,
    deadline: Instant,
    watch_console: bool,
) -> std::result::Result<(std::os::unix::net::UnixStream, FrameReader), NotReady> {
    let mut stream = None;
    let mut reader = FrameReader::default();
    let mut buf = [0u8; 4096];
    let (mut console_len, mut console_grew) = (0, Instant::now());
    loop {
        if let Some(why) = machine.exited() {
            return Err(NotReady::Failed(why));
        }
        let len = std::fs::metadata(&machine.console).map_or(0, |m| m.len());
        if len != console_len {
            (console_len, console_grew) = (len, Instant::now());
            if let Some(panic) = machine.console_line("Kernel panic") {
                return Err(NotReady::Failed(format!(
                    "the guest kernel panicked: {panic}"
                )));
            }
        }
        if Instant::now() >= deadline {
            return Err(NotReady::Failed(format!(
                "no word from the guest's init in time{}",
                machine.console_tail()
            )));
        }
        if watch_console && console_grew.elapsed() >= STALL {
            return Err(NotReady::Stalled(format!(
                "the guest's console was silent for {} s{}",
                STALL.as_secs(),
                machine.console_tail()
            )));
        }
        match &mut stream {
            None => match listener.accept() {
                Ok((s, _)) => {
                    s.set_read_timeout(Some(Duration::from_millis(50)))
                        .map_err(|e| NotReady::Failed(e.to_string()))?;
                    stream = Some(s);
                }
                Err(_) => std::thread::sleep(Duration::from_millis(20)),
            },
            Some(s) => {
                use std::io::Read;
                match s.read(&mut buf) {
                    Ok(0) => return Err(NotReady::Failed(machine.gone("closed the control port"))),
                    Ok(n) => reader.push(&buf[..n]),
                    Err(_) => {}
                }
                let next = reader
                    .next_frame()
                    .map_err(|e| NotReady::Failed(e.to_string()))?;
                if let Some((to_host::READY, _)) = next {
                    let s = stream.take().expect("checked above");
                    s.set_read_timeout(None)
                        .map_err(|e| NotReady::Failed(e.to_string()))?;
                    return Ok((s, reader));
                }
            }
        }
    }
}

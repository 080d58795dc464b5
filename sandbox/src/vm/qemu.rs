//! The QEMU `microvm` backend: no PCI, no firmware, virtio-mmio devices
//! only. The root is shared with virtio-fs (virtiofsd on the sandbox's
//! root: the union and binds as the sandbox sees them, writes landing in
//! the upper layer as they would without a VM); 9p is slower and absent
//! from Debian's cloud kernel, and a block image would have to be built
//! from the whole tree before every start.

use std::os::fd::RawFd;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use burrow_vm_init::{FS_TAG, PORT_NAME};

use super::{Accel, Backend, Machine, VmConfig};
use crate::error::{Error, Result};

/// Where Debian puts virtiofsd: the Rust one (its own package) and the C
/// one QEMU 7 ships.
const VIRTIOFSD: [&str; 2] = ["/usr/libexec/virtiofsd", "/usr/lib/qemu/virtiofsd"];

#[derive(Debug, Clone)]
pub struct Qemu {
    qemu: PathBuf,
    virtiofsd: PathBuf,
}

impl Qemu {
    /// Finds the programs on the host (the VM supervisor sees the host's
    /// tree at the same paths).
    pub fn find() -> Result<Self> {
        let path = std::env::var_os("PATH").unwrap_or_else(|| "/usr/bin:/bin".into());
        // The VM supervisor sees the host's tree but its own /tmp, /run,
        // /dev and /proc, and starts in /: an absolute path outside those.
        let own = ["/tmp", "/run", "/dev", "/proc"];
        let qemu = std::env::split_paths(&path)
            .filter_map(|d| d.join("qemu-system-x86_64").canonicalize().ok())
            .find(|p| p.is_file() && !own.iter().any(|o| p.starts_with(o)))
            .ok_or_else(|| {
                Error::usage("--vm needs qemu-system-x86_64 (Debian: apt install qemu-system-x86)")
            })?;
        let virtiofsd = VIRTIOFSD
            .iter()
            .map(PathBuf::from)
            .find(|p| p.is_file())
            .ok_or_else(|| {
                Error::usage(
                    "--vm needs virtiofsd (Debian: apt install virtiofsd or qemu-system-common)",
                )
            })?;
        Ok(Qemu { qemu, virtiofsd })
    }

    fn virtiofsd_command(&self, socket: &Path) -> Command {
        let mut cmd = Command::new(&self.virtiofsd);
        if self.virtiofsd.starts_with("/usr/libexec") {
            cmd.arg(format!("--socket-path={}", socket.display()))
                .arg(format!("--shared-dir={}", super::GUEST_ROOT))
                .args(["--sandbox=chroot", "--cache=auto", "--xattr"]);
        } else {
            cmd.arg(format!("--socket-path={}", socket.display()))
                .args(["-o", &format!("source={}", super::GUEST_ROOT)])
                .args(["-o", "cache=auto", "-o", "sandbox=chroot", "-o", "xattr"]);
        }
        cmd
    }

    fn qemu_command(
        &self,
        vm: &VmConfig,
        accel: Accel,
        fs: &Path,
        ctl: &Path,
        console: &Path,
    ) -> Command {
        let mut cmd = Command::new(&self.qemu);
        let mem = vm.memory_mib;
        let (accel_name, cpu) = match accel {
            Accel::Kvm => ("kvm", "host"),
            Accel::Tcg => ("tcg", "max"),
        };
        cmd.args(["-M", "microvm,x-option-roms=off,rtc=on"])
            .args(["-accel", accel_name, "-cpu", cpu])
            .args(["-smp", &vm.cpus.to_string(), "-m", &format!("{mem}M")])
            // virtio-fs needs the guest's memory shared with virtiofsd.
            .args([
                "-object",
                &format!("memory-backend-memfd,id=mem,size={mem}M,share=on"),
                "-machine",
                "memory-backend=mem",
            ])
            .args([
                "-nodefaults",
                "-no-user-config",
                "-display",
                "none",
                "-no-reboot",
            ])
            // virtiofsd serves modern (virtio 1.0) devices only.
            .args(["-global", "virtio-mmio.force-legacy=false"])
            .args([
                "-chardev",
                &format!("file,id=con,path={}", console.display()),
                "-serial",
                "chardev:con",
            ])
            .args([
                "-chardev",
                &format!("socket,id=fs,path={}", fs.display()),
                "-device",
                &format!("vhost-user-fs-device,chardev=fs,tag={FS_TAG}"),
            ])
            .args([
                "-device",
                "virtio-serial-device,max_ports=2",
                "-chardev",
                &format!("socket,id=ctl,path={}", ctl.display()),
                "-device",
                &format!("virtserialport,chardev=ctl,name={PORT_NAME}"),
            ]);
        if let Some(net) = &vm.guest.net {
            let [a, b, c, _] = net.addr;
            let mut netdev = format!(
                "user,id=net0,net={a}.{b}.{c}.0/{},host={}.{}.{}.{},dns={}.{}.{}.{}",
                net.prefix,
                net.gateway[0],
                net.gateway[1],
                net.gateway[2],
                net.gateway[3],
                net.dns[0],
                net.dns[1],
                net.dns[2],
                net.dns[3],
            );
            for &(port, udp) in &vm.forwards {
                let proto = if udp { "udp" } else { "tcp" };
                netdev.push_str(&format!(",hostfwd={proto}::{port}-:{port}"));
            }
            cmd.args([
                "-netdev",
                &netdev,
                "-device",
                "virtio-net-device,netdev=net0",
            ]);
        }
        cmd.args([
            "-kernel",
            &fd_path(vm.kernel_fd),
            "-initrd",
            &fd_path(vm.initrd_fd),
        ])
        .args([
            "-append",
            // The kernel's messages go to a log, not to the user: they
            // show that the guest boots (and why it did not).
            &format!(
                "console=ttyS0 panic=-1 no_timer_check rdinit=/init {} {}",
                match accel {
                    Accel::Tcg => super::clock::tcg_kernel_args(),
                    Accel::Kvm => String::new(),
                },
                vm.kernel_args
            ),
        ]);
        cmd
    }
}

fn fd_path(fd: RawFd) -> String {
    format!("/proc/self/fd/{fd}")
}

fn log_file(path: &Path) -> Result<std::fs::File> {
    std::fs::File::create(path).map_err(|e| Error::usage(format!("--vm: {}: {e}", path.display())))
}

fn spawn(cmd: &mut Command, what: &str, log: &Path) -> Result<std::process::Child> {
    use std::os::unix::process::CommandExt;
    crate::sys::killed_with_parent(cmd)
        // Out of the terminal's foreground group: a ^C there is the
        // command's (relayed into the guest), not the VMM's.
        .process_group(0)
        .stdin(Stdio::null())
        .stdout(log_file(log)?)
        .stderr(log_file(log)?)
        .spawn()
        .map_err(|e| Error::usage(format!("--vm: starting {what}: {e}")))
}

impl Backend for Qemu {
    fn name(&self) -> &'static str {
        "qemu-microvm"
    }

    fn start(&self, vm: &VmConfig, accel: Accel, run_dir: &Path, ctl: &Path) -> Result<Machine> {
        let fs = run_dir.join("fs.sock");
        let _ = std::fs::remove_file(&fs);
        let fs_log = run_dir.join("virtiofsd.log");
        let vmm_log = run_dir.join("qemu.log");
        let console = run_dir.join("console.log");
        let virtiofsd = spawn(&mut self.virtiofsd_command(&fs), "virtiofsd", &fs_log)?;
        let mut machine = Machine {
            children: vec![virtiofsd],
            logs: vec![fs_log.clone()],
            console: console.clone(),
        };
        let deadline = Instant::now() + Duration::from_secs(5);
        while !fs.exists() {
            if machine.children[0].try_wait().ok().flatten().is_some() || Instant::now() > deadline
            {
                return Err(Error::usage(format!(
                    "--vm: virtiofsd did not start{}",
                    super::last_line(&fs_log)
                )));
            }
            std::thread::sleep(Duration::from_millis(5));
        }
        let mut cmd = self.qemu_command(vm, accel, &fs, ctl, &console);
        let (kernel, initrd) = (vm.kernel_fd, vm.initrd_fd);
        // SAFETY: the closure runs between fork and exec and only makes
        // fcntl calls: the kernel and initramfs descriptors pass to QEMU
        // alone.
        unsafe {
            use std::os::unix::process::CommandExt;
            cmd.pre_exec(move || {
                for fd in [kernel, initrd] {
                    if libc::fcntl(fd, libc::F_SETFD, 0) < 0 {
                        return Err(std::io::Error::last_os_error());
                    }
                }
                Ok(())
            });
        }
        let qemu = spawn(&mut cmd, "qemu-system-x86_64", &vmm_log)?;
        // The VMM first: its exit ends the VM.
        machine.children.insert(0, qemu);
        machine.logs.insert(0, vmm_log);
        Ok(machine)
    }
}

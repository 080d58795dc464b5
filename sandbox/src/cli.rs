//! Command line of `burrow`, modelled on bwrap's and podman's flags.

use std::ffi::OsString;
use std::path::PathBuf;

use clap::{ArgAction, Args, Parser, Subcommand, ValueEnum};

#[derive(Debug, Parser)]
#[command(name = "burrow", version, about = "A rootless Linux sandbox")]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run COMMAND (default /bin/sh) in a new sandbox.
    Run(Box<RunArgs>),
    /// Remove cgroups left behind by sandboxes whose burrow was killed.
    Gc,
    /// Fetch an image from a registry into the store (what the store
    /// lacks) and record it by name; prints its manifest digest.
    Pull(PullArgs),
    /// List the images in the store; with --inspect, what each named one
    /// is (JSON).
    Images {
        /// Print each REF's record and configuration (ExposedPorts,
        /// Volumes, StopSignal, ...) as a JSON array.
        #[arg(long, requires = "references")]
        inspect: bool,

        /// HOST[:PORT]/NAME[:TAG] of images in the store (with --inspect).
        #[arg(value_name = "REF", requires = "inspect")]
        references: Vec<String>,
    },
    /// Drop pulled images' names from the store, and those of their layers
    /// no other image names and no running sandbox uses.
    Rmi {
        /// HOST[:PORT]/NAME[:TAG] or docker://HOST[:PORT]/NAME[:TAG]
        #[arg(value_name = "REF", required = true)]
        references: Vec<String>,
    },
    /// Manage the image store.
    #[command(subcommand)]
    Image(ImageCommand),
    /// Record the container layer a `run --image REF --upper UPPER-DIR`
    /// left in UPPER-DIR as the image NAME, on top of REF; prints its ID.
    Commit(CommitArgs),
    /// Write an image to FILE as an oci-archive or docker-archive (what
    /// `podman load`, `docker load` and `skopeo` read); prints its
    /// manifest's digest (its configuration's, for a docker-archive).
    Save(SaveArgs),
}

#[derive(Debug, Args)]
pub struct CommitArgs {
    /// A comment for the new layer's history entry.
    #[arg(short, long, value_name = "TEXT")]
    pub message: Option<String>,

    /// The directory a sandbox ran with as --upper (not while it runs).
    #[arg(value_name = "UPPER-DIR")]
    pub upper: PathBuf,

    /// HOST[:PORT]/NAME[:TAG], or NAME[:TAG] for localhost/NAME[:TAG].
    #[arg(value_name = "NAME")]
    pub name: String,
}

#[derive(Debug, Args)]
pub struct SaveArgs {
    #[command(flatten)]
    pub fetch: FetchArgs,

    /// oci-archive (an OCI layout in a tar file), docker-archive (what
    /// `docker save` writes, for `docker load`) or squashfs (the layers
    /// merged into one squashfs file, for `run --image squashfs:FILE`,
    /// Apptainer or enroot).
    #[arg(long, value_name = "FORMAT", default_value = "oci-archive")]
    pub format: String,

    /// Any reference `run --image` takes; with --format squashfs also
    /// dir:PATH, a directory.
    #[arg(value_name = "REF")]
    pub reference: String,

    /// The archive to write (replaced whole once complete).
    #[arg(value_name = "FILE")]
    pub file: PathBuf,
}

#[derive(Debug, Subcommand)]
pub enum ImageCommand {
    /// Remove the layers and blobs no image names and no running sandbox
    /// uses (what oci: and archive runs unpacked, what rmi left).
    Prune,
}

/// How an image is fetched and chosen (`run --image` and `pull`).
#[derive(Debug, Clone, Args)]
pub struct FetchArgs {
    /// With docker://: HTTPS checked against the system's CA store; false
    /// speaks plain HTTP, for a registry on this machine.
    #[arg(long, value_name = "BOOL", default_value_t = true, action = ArgAction::Set,
          num_args = 0..=1, default_missing_value = "true", require_equals = true)]
    pub tls_verify: bool,

    /// The image chosen from a multi-platform index, OS/ARCH[/VARIANT]
    /// (default: this machine's).
    #[arg(long, value_name = "OS/ARCH[/VARIANT]")]
    pub platform: Option<String>,
}

#[derive(Debug, Args)]
pub struct PullArgs {
    #[command(flatten)]
    pub fetch: FetchArgs,

    /// No progress bars (they are shown only on a terminal anyway).
    #[arg(short, long)]
    pub quiet: bool,

    /// docker://HOST[:PORT]/NAME[:TAG|@DIGEST]
    #[arg(value_name = "REF")]
    pub reference: String,
}

/// How the sandbox's users and groups are mapped to the host's.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum MapUsers {
    /// Also map the caller's subordinate ranges (/etc/subuid, /etc/subgid) with newuidmap/newgidmap when available.
    Auto,
    /// Map only the caller's own uid and gid.
    None,
}

/// The accelerator of `--vm`'s VMM.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum VmAccel {
    /// KVM when /dev/kvm can boot the guest, else software emulation.
    Auto,
    Kvm,
    /// QEMU's software emulation (slow, works everywhere).
    Tcg,
}

/// A namespace of the sandbox's own, or the host's.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Share {
    /// A new one.
    Private,
    /// The caller's (no isolation of that kind).
    Host,
}

/// The sandbox's network.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum NetMode {
    /// A new network namespace with only `lo`, up.
    None,
    /// Share the host's network namespace.
    Host,
    /// A new network namespace with `lo` and a tap device served by
    /// burrow's userspace stack: outbound TCP and UDP, DNS (slirp4netns'
    /// layout: 10.0.2.100/24, gateway 10.0.2.2, DNS 10.0.2.3).
    Slirp,
    /// As `slirp`, served by the system's slirp4netns.
    Slirp4netns,
    /// A new network namespace served by the system's pasta.
    Pasta,
}

#[derive(Debug, Args)]
pub struct RunArgs {
    /// With --net slirp: let the sandbox reach the host's 127.0.0.1 at the
    /// gateway's address (10.0.2.2).
    #[arg(long)]
    pub allow_host_loopback: bool,

    /// With --net slirp: publish a sandbox port on the host,
    /// [IP:]HOSTPORT:SANDBOXPORT[/tcp|/udp] (repeatable; IP defaults to 0.0.0.0).
    #[arg(short = 'p', long, value_name = "SPEC", action = ArgAction::Append)]
    pub publish: Vec<String>,

    /// With --net slirp: where the DNS forwarder sends queries (IP or
    /// IP:PORT; default: the first nameserver in /etc/resolv.conf).
    #[arg(long, value_name = "ADDR")]
    pub dns_upstream: Option<String>,

    /// Map the caller to the same uid/gid inside instead of root.
    #[arg(long)]
    pub keep_id: bool,

    /// Map subordinate id ranges too.
    #[arg(long, value_enum, default_value_t = MapUsers::Auto)]
    pub map_users: MapUsers,

    /// The user namespace's uid map, range by range, instead of burrow's
    /// (podman's flag): INSIDE:OUTSIDE:COUNT, repeatable. Written by
    /// newuidmap (the ranges must be the caller's in /etc/subuid, or its
    /// own id), or directly when the caller is root where it runs.
    #[arg(long, value_name = "INSIDE:OUTSIDE:COUNT", action = ArgAction::Append,
          requires = "gidmap", conflicts_with_all = ["keep_id", "map_users"])]
    pub uidmap: Vec<String>,

    /// The gid map, as --uidmap (newgidmap; /etc/subgid).
    #[arg(long, value_name = "INSIDE:OUTSIDE:COUNT", action = ArgAction::Append,
          requires = "uidmap")]
    pub gidmap: Vec<String>,

    /// Place the sandbox in the user namespace at PATH (a pod's infra
    /// container's /proc/PID/ns/user): the sandbox's own user namespace
    /// is made inside it by its root, mapping every id it maps to itself,
    /// so that the sandbox's ids are that namespace's. burrow needs
    /// privileges over it (its owner, as rootless podman's runtime is),
    /// and it must map root.
    #[arg(long, value_name = "PATH",
          conflicts_with_all = ["keep_id", "map_users", "uidmap", "image"])]
    pub userns: Option<PathBuf>,

    /// Network of the sandbox.
    #[arg(long, value_enum, default_value_t = NetMode::None)]
    pub net: NetMode,

    /// Pid namespace: `host` shares the caller's (as MPI ranks on one
    /// node need: Open MPI's shared memory tells peers apart by pid). The
    /// sandbox then sees, and may signal, the caller's other processes; its
    /// /proc is the host's. Not with --pidns or --vm.
    #[arg(long, value_enum, default_value_t = Share::Private, conflicts_with = "pidns")]
    pub pid: Share,

    /// IPC namespace: `host` shares the caller's SysV IPC and POSIX message
    /// queues (no /dev/mqueue of the sandbox's own). Not with --ipcns or
    /// --vm.
    #[arg(long, value_enum, default_value_t = Share::Private, conflicts_with = "ipcns")]
    pub ipc: Share,

    /// HPC: the preset for a job's task (Apptainer's defaults): --keep-id,
    /// --net host, --pid host, --ipc host, the caller's $HOME, /tmp,
    /// /dev/shm and $SCRATCH (where set) bound, and with --image the job's
    /// SLURM_*, PMI*, PMIX_* and OMPI_* variables passed on. Flags given
    /// on the command line win.
    #[arg(long)]
    pub hpc: bool,

    /// Bind the host's device node PATH (under /dev: a GPU's, an
    /// InfiniBand port's) at the same path, with its owner and mode (the
    /// host decides who may open it). Repeatable. Not with --vm.
    #[arg(long, value_name = "PATH")]
    pub device: Vec<PathBuf>,

    /// Join the network namespace at PATH (a namespace file such as
    /// /run/netns/NAME or /proc/PID/ns/net) instead of making one (OCI's
    /// namespace path). burrow needs privileges over it: where it runs as
    /// root of the namespace's owner, as in a rootless podman's.
    #[arg(long, value_name = "PATH")]
    pub netns: Option<PathBuf>,

    /// Join the IPC namespace at PATH (e.g. /proc/PID/ns/ipc of a pod's
    /// infra container) instead of making one; as --netns.
    #[arg(long, value_name = "PATH")]
    pub ipcns: Option<PathBuf>,

    /// Join the UTS namespace (hostname) at PATH instead of making one; as
    /// --netns. Not with --hostname: the namespace's owner sets it.
    #[arg(long, value_name = "PATH", conflicts_with = "hostname")]
    pub utsns: Option<PathBuf>,

    /// Join the cgroup namespace at PATH instead of making one; as --netns.
    /// The sandbox's processes then see cgroups from that namespace's root,
    /// and /sys/fs/cgroup is not one of the sandbox's own.
    #[arg(long, value_name = "PATH")]
    pub cgroupns: Option<PathBuf>,

    /// Join the pid namespace at PATH (a pod's infra container's
    /// /proc/PID/ns/pid) instead of making one: the sandbox sees, and is
    /// seen by, the pod's processes. burrow's pid 1 is then one of them,
    /// not the namespace's init: it reaps its own tree and ends what is
    /// left of it when the command ends. As --netns, burrow needs
    /// privileges over the namespace's owner and where it runs.
    #[arg(long, value_name = "PATH")]
    pub pidns: Option<PathBuf>,

    /// Use DIR as the root filesystem's bottom layer instead of the host's /;
    /// squashfs:FILE or sif:FILE: a squashfs image file (an Apptainer SIF's
    /// system partition), read in place.
    #[arg(long, value_name = "DIR")]
    pub rootfs: Option<PathBuf>,

    /// Run an OCI image: its layers under the sandbox's upper layer, its
    /// Entrypoint, Cmd, Env and WorkingDir as defaults (REF:
    /// docker://HOST[:PORT]/NAME[:TAG|@DIGEST], pulled unless in the store;
    /// HOST[:PORT]/NAME[:TAG] pulled before; oci:DIR[:TAG],
    /// oci-archive:FILE[:TAG] or docker-archive:FILE[:NAME:TAG]); or
    /// squashfs:FILE, sif:FILE: an image file as --rootfs reads it).
    #[arg(long, value_name = "REF", conflicts_with = "rootfs")]
    pub image: Option<String>,

    /// With --image: the command's first words instead of the image's
    /// Entrypoint, whose Cmd then no longer applies (podman's flag): a
    /// JSON array for several words, '' for none.
    #[arg(long, value_name = "CMD", requires = "image")]
    pub entrypoint: Option<String>,

    #[command(flatten)]
    pub fetch: FetchArgs,

    /// Add DIR (or squashfs:FILE, sif:FILE) as a read-only layer above the
    /// rootfs (later layers on top).
    #[arg(long, value_name = "DIR", action = ArgAction::Append)]
    pub layer: Vec<PathBuf>,

    /// Keep the sandbox's writes in DIR (the union's upper layer) instead of
    /// a private tmpfs that vanishes with the sandbox.
    #[arg(long, value_name = "DIR", conflicts_with = "read_only")]
    pub upper: Option<PathBuf>,

    /// Make the root filesystem read-only (no upper layer).
    #[arg(long)]
    pub read_only: bool,

    /// With --rootfs DIR: DIR itself is the root, bound writable (nosuid,
    /// nodev) rather than served by a union, so writes land in DIR (the OCI
    /// runtime's root.readonly: false; missing mount points are made in
    /// DIR). No tmpfs covers /tmp.
    #[arg(long, requires = "rootfs", conflicts_with_all = ["read_only", "upper", "layer", "image"])]
    pub bind_rootfs: bool,

    /// Bind-mount SRC on DST, read-write.
    #[arg(long, num_args = 2, value_names = ["SRC", "DST"], action = ArgAction::Append, allow_hyphen_values = true)]
    pub bind: Vec<PathBuf>,

    /// Bind-mount SRC on DST, read-only.
    #[arg(long, num_args = 2, value_names = ["SRC", "DST"], action = ArgAction::Append, allow_hyphen_values = true)]
    pub ro_bind: Vec<PathBuf>,

    /// Mount a fresh tmpfs on DST (podman's form: DST:size=SIZE,mode=MODE;
    /// without a size it shares the sandbox's tmpfs budget).
    #[arg(long, value_name = "DST[:OPTIONS]", action = ArgAction::Append)]
    pub tmpfs: Vec<PathBuf>,

    /// Make PATH, and every mount below it, read-only, after all other
    /// mounts (OCI's readonlyPaths; e.g. /proc/sys). Skipped where PATH
    /// does not exist.
    #[arg(long, value_name = "PATH", action = ArgAction::Append)]
    pub remount_ro: Vec<PathBuf>,

    /// Make PATH, and every mount below it, noexec, after all other mounts
    /// (a bind podman asks noexec, such as its /dev/shm). Skipped where
    /// PATH does not exist.
    #[arg(long, value_name = "PATH", action = ArgAction::Append)]
    pub remount_noexec: Vec<PathBuf>,

    /// Set a kernel setting of the sandbox's own namespaces (OCI's
    /// linux.sysctl): kernel.shm*, kernel.msg*, kernel.sem, fs.mqueue.*, or
    /// net.* with a network namespace of its own. Repeatable.
    #[arg(long, value_name = "NAME=VALUE", action = ArgAction::Append)]
    pub sysctl: Vec<String>,

    /// Hide PATH, after all other mounts: a directory shows empty and
    /// read-only, a file reads as empty (OCI's maskedPaths, podman's
    /// --security-opt mask=; e.g. /proc/kcore). Skipped where PATH does
    /// not exist.
    #[arg(long, value_name = "PATH", action = ArgAction::Append)]
    pub mask: Vec<PathBuf>,

    /// The most the sandbox's in-memory filesystems (the root's private
    /// upper layer, /tmp, /run, /dev, /dev/shm, --tmpfs) hold in all, e.g.
    /// 2G [default: a quarter of the host's RAM].
    #[arg(long, value_name = "SIZE")]
    pub tmpfs_budget: Option<String>,

    /// Size of /dev/shm, taken out of the tmpfs budget [default: /dev/shm
    /// shares the budget].
    #[arg(long, value_name = "SIZE")]
    pub shm_size: Option<String>,

    /// Working directory inside (default: the current one if it exists there, else $HOME, else /).
    #[arg(long, value_name = "DIR")]
    pub chdir: Option<PathBuf>,

    /// Run the command as USER[:GROUP], names resolved in the sandbox's own
    /// /etc/passwd and /etc/group (default: the image's User, else root
    /// inside). The ids must be mapped: subordinate ranges, or --keep-id's.
    #[arg(short = 'u', long, value_name = "USER[:GROUP]")]
    pub user: Option<String>,

    /// With --user: also the supplementary group GID (podman's flag;
    /// repeatable; a number, as OCI's additionalGids).
    #[arg(long, value_name = "GID", action = ArgAction::Append, requires = "user")]
    pub group_add: Vec<u32>,

    /// The command's file mode creation mask, in octal (podman's --umask;
    /// default: the caller's).
    #[arg(long, value_name = "MODE")]
    pub umask: Option<String>,

    /// The command's OOM score adjustment, -1000 to 1000 (podman's
    /// --oom-score-adj, OCI's oomScoreAdj); below the caller's own it
    /// needs privileges burrow does not have.
    #[arg(long, value_name = "N", allow_hyphen_values = true,
          value_parser = clap::value_parser!(i32).range(-1000..=1000))]
    pub oom_score_adj: Option<i32>,

    /// Set an environment variable.
    #[arg(long, num_args = 2, value_names = ["VAR", "VALUE"], action = ArgAction::Append, allow_hyphen_values = true)]
    pub setenv: Vec<OsString>,

    /// Unset an environment variable.
    #[arg(long, value_name = "VAR", action = ArgAction::Append)]
    pub unsetenv: Vec<OsString>,

    /// Start from an empty environment.
    #[arg(long)]
    pub clearenv: bool,

    /// Hostname inside the sandbox.
    #[arg(long, value_name = "NAME")]
    pub hostname: Option<String>,

    /// Kill the sandbox when the process that started burrow dies.
    #[arg(long)]
    pub die_with_parent: bool,

    /// The signal a SIGTERM to burrow reaches the command as (podman's
    /// --stop-signal; default the image's StopSignal, else SIGTERM):
    /// SIGNAME, NAME, a number or RTMIN+N.
    #[arg(long, value_name = "SIGNAL")]
    pub stop_signal: Option<String>,

    /// Run the command in a new session (default unless stdin is a terminal; blocks TIOCSTI).
    #[arg(long, overrides_with = "no_new_session")]
    pub new_session: bool,

    /// Keep the command in the caller's session even when stdin is not a terminal.
    #[arg(long, overrides_with = "new_session")]
    pub no_new_session: bool,

    /// Pass file descriptors 3 to 3+N-1 on to the command (others beyond
    /// 0, 1 and 2 are closed for it).
    #[arg(long, value_name = "N", default_value_t = 0)]
    pub preserve_fds: u32,

    /// Write JSON lines (child pid, namespace ids, exit code) to file descriptor FD.
    #[arg(long, value_name = "FD")]
    pub json_status: Option<i32>,

    /// Keep capability CAP inside the sandbox's user namespace (repeatable,
    /// comma-separated, or ALL). Root inside keeps podman's default set
    /// (CHOWN, DAC_OVERRIDE, FOWNER, FSETID, KILL, NET_BIND_SERVICE,
    /// SETFCAP, SETGID, SETPCAP, SETUID, SYS_CHROOT); a command that is not
    /// root inside (--keep-id) keeps none.
    #[arg(long, value_name = "CAP", action = ArgAction::Append)]
    pub cap_add: Vec<String>,

    /// Drop capability CAP from the set the command keeps (repeatable,
    /// comma-separated, or ALL: then only --cap-add's are kept).
    #[arg(long, value_name = "CAP", action = ArgAction::Append)]
    pub cap_drop: Vec<String>,

    /// seccomp profile: default, strict, none, or an OCI/Docker JSON file.
    #[arg(long, value_name = "PROFILE", default_value = "default")]
    pub seccomp: String,

    /// Log what the seccomp profile would refuse instead of refusing it.
    #[arg(long)]
    pub seccomp_log: bool,

    /// Confine the command with Landlock: system directories readable and
    /// executable, /tmp, binds and the union's upper layer writable.
    #[arg(long)]
    pub landlock: bool,

    /// With Landlock, fail when the kernel cannot enforce every right.
    #[arg(long)]
    pub landlock_strict: bool,

    /// With Landlock, also allow reading PATH (sandbox view; implies --landlock).
    #[arg(long, value_name = "PATH", action = ArgAction::Append)]
    pub allow_read: Vec<PathBuf>,

    /// With Landlock, also allow reading and writing PATH (implies --landlock).
    #[arg(long, value_name = "PATH", action = ArgAction::Append)]
    pub allow_write: Vec<PathBuf>,

    /// With Landlock, also allow reading and executing PATH (implies --landlock).
    #[arg(long, value_name = "PATH", action = ArgAction::Append)]
    pub allow_exec: Vec<PathBuf>,

    /// With Landlock, allow binding TCP port PORT (implies --landlock).
    #[arg(long, value_name = "PORT", action = ArgAction::Append)]
    pub allow_bind: Vec<u16>,

    /// With Landlock, allow connecting to TCP port PORT (implies --landlock).
    #[arg(long, value_name = "PORT", action = ArgAction::Append)]
    pub allow_connect: Vec<u16>,

    /// Resource limit for the command: NAME=SOFT[:HARD] (nofile, nproc, as,
    /// cpu, fsize, core, ...; a number or "unlimited").
    #[arg(long, value_name = "NAME=SOFT[:HARD]", action = ArgAction::Append)]
    pub rlimit: Vec<String>,

    /// Memory limit (memory.max), e.g. 512M or 2G.
    #[arg(long, value_name = "SIZE")]
    pub memory: Option<String>,

    /// Memory plus swap limit (memory.swap.max is the difference).
    #[arg(long, value_name = "SIZE")]
    pub memory_swap: Option<String>,

    /// Most processes and threads at once (pids.max).
    #[arg(long, value_name = "N")]
    pub pids: Option<u64>,

    /// CPU time, in CPUs (cpu.max), e.g. 1.5.
    #[arg(long, value_name = "CPUS")]
    pub cpus: Option<f64>,

    /// CPU weight, 1 to 10000 (cpu.weight; 100 is the default).
    #[arg(long, value_name = "N")]
    pub cpu_weight: Option<u32>,

    /// I/O weight, 1 to 10000 (io.weight).
    #[arg(long, value_name = "N")]
    pub io_weight: Option<u32>,

    /// I/O limit on a device, DEV:rbps=N,wbps=N,riops=N,wiops=N (io.max;
    /// DEV a device path or MAJ:MIN).
    #[arg(long, value_name = "DEV:LIMITS", action = ArgAction::Append)]
    pub io_max: Vec<String>,

    /// Write JSON with the sandbox's peak memory, CPU time and peak pids to FILE.
    #[arg(long, value_name = "FILE")]
    pub stats: Option<PathBuf>,

    /// Without a delegated cgroup v2 subtree: `strict` (default) fails,
    /// `best-effort` applies rlimits instead and warns.
    #[arg(long, value_name = "MODE", default_value = "strict")]
    pub limits: String,

    /// Forbid new user namespaces inside the sandbox.
    #[arg(long)]
    pub disable_userns: bool,

    /// Read run options from FILE (TOML, or JSON when it ends in .json):
    /// keys are the long flags; flags on the command line win.
    #[arg(long, value_name = "FILE")]
    pub profile: Option<PathBuf>,

    /// Run the command in a micro-VM (QEMU microvm, its own kernel) inside
    /// the sandbox: same root, binds, environment and network.
    #[arg(long)]
    pub vm: bool,

    /// --vm: the guest kernel (its modules in vm-modules/ beside it).
    #[arg(long, value_name = "FILE", requires = "vm")]
    pub vm_kernel: Option<PathBuf>,

    /// --vm: the accelerator; `auto` tries KVM and falls back to TCG.
    #[arg(long, value_enum, default_value_t = VmAccel::Auto, requires = "vm")]
    pub vm_accel: VmAccel,

    /// --vm: seconds to wait for the guest's init before giving up.
    #[arg(long, value_name = "SECS", default_value_t = 20, requires = "vm")]
    pub vm_boot_timeout: u64,

    /// --vm: more arguments for the guest kernel's command line.
    #[arg(long, value_name = "ARGS", requires = "vm", allow_hyphen_values = true)]
    pub vm_kernel_args: Option<String>,

    /// The command and its arguments (an option before it is burrow's,
    /// so a command starting with '-' comes after `--`).
    #[arg(trailing_var_arg = true, value_name = "COMMAND")]
    pub command: Vec<OsString>,
}

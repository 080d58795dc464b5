//! A bundle's config.json (runtime-spec 1.x) as the arguments of `burrow
//! run`: the OCI front end describes its sandbox in the launcher's own
//! terms, and the launcher builds it as it builds every other. A field
//! burrow cannot honour is refused, by name, never dropped.

use std::collections::HashSet;
use std::ffi::OsString;
use std::os::unix::ffi::OsStringExt;
use std::path::{Path, PathBuf};

use oci_spec::runtime::{LinuxNamespaceType, Mount, Spec};

/// Why a config.json cannot be run: the field, and what about it.
#[derive(Debug, thiserror::Error)]
#[error("config.json: {field}: {why}")]
pub struct Refused {
    pub field: String,
    pub why: String,
}

pub(crate) fn refuse(field: impl Into<String>, why: impl Into<String>) -> Refused {
    Refused {
        field: field.into(),
        why: why.into(),
    }
}

/// Refuses the first of `fields` that the config sets.
fn none_set(fields: &[(&str, bool)]) -> Result<(), Refused> {
    match fields.iter().find(|(_, set)| *set) {
        Some((field, _)) => Err(refuse(*field, "not supported yet")),
        None => Ok(()),
    }
}

/// What burrow gives every sandbox, as runtime-spec mounts name them, and
/// the options its own mount has (`size=*`: any size): a spec's mount of
/// one of these is honoured by burrow's own; another option is refused.
const PROVIDED: [(&str, &[&str], &[&str]); 6] = [
    (
        "/proc",
        &["proc"],
        &["nosuid", "noexec", "nodev", "relatime"],
    ),
    // (burrow's /dev holds only its device nodes and links, in the
    // sandbox's tmpfs budget.)
    (
        "/dev",
        &["tmpfs"],
        &["nosuid", "noexec", "strictatime", "mode=755", "size=*"],
    ),
    (
        "/dev/pts",
        &["devpts"],
        &[
            "nosuid",
            "noexec",
            "newinstance",
            "ptmxmode=0666",
            "mode=0620",
            "gid=5",
            "relatime",
        ],
    ),
    // (Its size becomes --shm-size.)
    (
        "/dev/shm",
        &["tmpfs", "shm"],
        &["nosuid", "noexec", "nodev", "mode=1777", "size=*"],
    ),
    (
        "/dev/mqueue",
        &["mqueue"],
        &["nosuid", "noexec", "nodev", "relatime"],
    ),
    // (The host's cgroup tree, read-only, comes with the bind of /sys.)
    (
        "/sys/fs/cgroup",
        &["cgroup", "cgroup2"],
        &["nosuid", "noexec", "nodev", "relatime", "ro"],
    ),
];

/// Options of the read-only bind of the host's /sys that burrow makes.
const SYS_OPTIONS: [&str; 7] = [
    "ro", "rbind", "bind", "nosuid", "noexec", "nodev", "relatime",
];

/// The arguments of `burrow run` (after `run`) for `spec`, whose bundle is
/// `bundle`.
pub fn run_args(spec: &Spec, bundle: &Path) -> Result<Vec<OsString>, Refused> {
    let mut a = Args::default();
    if !spec.version().starts_with("1.") {
        return Err(refuse(
            "ociVersion",
            format!("{}: runtime-spec 1.x is read", spec.version()),
        ));
    }
    none_set(&[
        ("domainname", spec.domainname().is_some()),
        ("solaris", spec.solaris().is_some()),
        ("windows", spec.windows().is_some()),
        ("vm", spec.vm().is_some()),
        ("zos", spec.zos().is_some()),
    ])?;
    root(spec, bundle, &mut a)?;
    let linux = spec.linux().clone().unwrap_or_default();
    let new_netns = linux
        .namespaces()
        .iter()
        .flatten()
        .any(|n| n.typ() == LinuxNamespaceType::Network && n.path().is_none());
    a.0.extend(crate::annotations::args(spec, new_netns)?);
    namespaces(&linux, spec.hostname().is_some(), &mut a)?;
    if let Some(h) = spec.hostname() {
        a.pair("--hostname", h);
    }
    let list = spec.mounts().as_deref().unwrap_or_default();
    let vm = spec
        .annotations()
        .as_ref()
        .and_then(|m| m.get("run.burrow.vm"))
        .is_some_and(|v| v == "true");
    mounts(list, bundle, vm, &mut a)?;
    self::linux(&linux, vm, &mut a)?;
    process(spec, &mut a)
}

#[derive(Default)]
struct Args(Vec<OsString>);

impl Args {
    fn flag(&mut self, f: &str) {
        self.0.push(f.into());
    }

    /// `--f=v`: one argument, so that a value starting with `-` stays a
    /// value.
    fn pair(&mut self, f: &str, v: impl AsRef<std::ffi::OsStr>) {
        let mut arg = OsString::from(f);
        arg.push("=");
        arg.push(v);
        self.0.push(arg);
    }

    /// A flag of two values (which may start with `-`: the launcher's
    /// two-value flags take such values).
    fn pair2(&mut self, f: &str, v1: impl Into<OsString>, v2: impl Into<OsString>) {
        self.0.push(f.into());
        self.0.push(v1.into());
        self.0.push(v2.into());
    }
}

fn root(spec: &Spec, bundle: &Path, a: &mut Args) -> Result<(), Refused> {
    let root = spec
        .root()
        .as_ref()
        .ok_or_else(|| refuse("root", "missing"))?;
    let path = bundle.join(root.path());
    a.pair("--rootfs", path);
    if root.readonly() == Some(true) {
        // A read-only union over it.
        a.flag("--read-only");
    } else {
        // The container writes into the root the engine prepared.
        a.flag("--bind-rootfs");
    }
    Ok(())
}

/// Checks the namespaces asked for against burrow's (a new user, mount,
/// pid, ipc, uts, cgroup and network namespace each): the host's network
/// may be shared; nothing else.
fn namespaces(
    linux: &oci_spec::runtime::Linux,
    hostname: bool,
    a: &mut Args,
) -> Result<(), Refused> {
    let list = linux.namespaces().clone().unwrap_or_default();
    let mut asked = HashSet::new();
    for ns in &list {
        let t = ns.typ();
        if let (LinuxNamespaceType::Network, Some(p)) = (t, ns.path()) {
            // The engine's namespace (rootless podman's, which its
            // slirp4netns serves).
            a.pair("--netns", p);
            asked.insert(t);
            continue;
        }
        let joined = match t {
            LinuxNamespaceType::Ipc => Some("--ipcns"),
            LinuxNamespaceType::Uts => Some("--utsns"),
            LinuxNamespaceType::User => Some("--userns"),
            LinuxNamespaceType::Pid => Some("--pidns"),
            LinuxNamespaceType::Cgroup => Some("--cgroupns"),
            _ => None,
        };
        if let (Some(flag), Some(p)) = (joined, ns.path()) {
            // A pod's: its infra container's namespaces.
            if t == LinuxNamespaceType::Uts && hostname {
                return Err(refuse(
                    "hostname",
                    "set with a uts namespace joined by path (its owner sets it)",
                ));
            }
            a.pair(flag, p);
            asked.insert(t);
            continue;
        }
        if let Some(p) = ns.path() {
            // (mount: burrow builds the root in a mount namespace of its
            // own; time: not made either.)
            return Err(refuse(
                "linux.namespaces",
                format!(
                    "{t} at {}: joining a {t} namespace is not supported",
                    p.display()
                ),
            ));
        }
        if t == LinuxNamespaceType::Time {
            return Err(refuse("linux.namespaces", "time: not supported"));
        }
        asked.insert(t);
    }
    for t in [
        LinuxNamespaceType::Mount,
        LinuxNamespaceType::Pid,
        LinuxNamespaceType::Ipc,
        LinuxNamespaceType::Uts,
    ] {
        if !asked.contains(&t) {
            return Err(refuse(
                "linux.namespaces",
                format!(
                    "no {t} namespace: burrow always makes a new one (the host's is not shared)"
                ),
            ));
        }
    }
    if hostname && !asked.contains(&LinuxNamespaceType::Uts) {
        return Err(refuse("hostname", "set without a uts namespace"));
    }
    if !asked.contains(&LinuxNamespaceType::Network) {
        a.pair("--net", "host");
    }
    // Without a user namespace in the spec (a root engine's), the
    // container still gets one: burrow never runs as the host's root. One
    // joined by path (a pod's) has its maps: burrow's is made inside it,
    // mapping its ids each to itself, and the spec's maps (the pod's own,
    // as podman repeats them) are not written again.
    if !joins_linux(linux, LinuxNamespaceType::User) {
        id_maps(linux, a)?;
    }
    Ok(())
}

/// `linux.devices[i]`: the host's node at its path, bound (`--device`),
/// where the host has that very node: a user namespace can make none, so
/// the host's is what the container gets, with the host's owner and mode
/// (the spec's fileMode, uid and gid are not applied, as a rootless runc
/// binds them too).
fn device(i: usize, d: &oci_spec::runtime::LinuxDevice) -> Result<PathBuf, Refused> {
    use oci_spec::runtime::LinuxDeviceType;
    use std::os::unix::fs::FileTypeExt;
    let field = format!("linux.devices[{i}] ({})", d.path().display());
    if !d.path().starts_with("/dev") || d.path().components().any(|c| c.as_os_str() == "..") {
        return Err(refuse(field, "only nodes under /dev"));
    }
    let host = std::fs::symlink_metadata(d.path()).ok();
    let kind = host.as_ref().map(|m| m.file_type());
    let same_kind = match d.typ() {
        LinuxDeviceType::C | LinuxDeviceType::U => kind.is_some_and(|k| k.is_char_device()),
        LinuxDeviceType::B => kind.is_some_and(|k| k.is_block_device()),
        _ => false,
    };
    let rdev = host.as_ref().map(std::os::unix::fs::MetadataExt::rdev);
    let numbers = rdev.map(|r| (libc::major(r) as i64, libc::minor(r) as i64));
    if !same_kind || numbers != Some((d.major(), d.minor())) {
        return Err(refuse(
            field,
            "the host has no such node at that path (burrow binds the host's node)",
        ));
    }
    Ok(d.path().clone())
}

/// The device nodes `linux.devices` gives (for the cgroup's rules).
fn nodes_of(linux: &oci_spec::runtime::Linux) -> Vec<crate::resources::Node> {
    linux
        .devices()
        .iter()
        .flatten()
        .map(|d| match d.typ() {
            // (An unbuffered character device is a character device.)
            oci_spec::runtime::LinuxDeviceType::U => {
                (oci_spec::runtime::LinuxDeviceType::C, d.major(), d.minor())
            }
            t => (t, d.major(), d.minor()),
        })
        .collect()
}

/// [`nodes_of`] the spec's.
pub fn device_nodes(spec: &Spec) -> Vec<crate::resources::Node> {
    spec.linux().as_ref().map(nodes_of).unwrap_or_default()
}

/// Whether the spec joins a namespace of kind `t` by path.
pub fn joins(spec: &Spec, t: LinuxNamespaceType) -> bool {
    spec.linux().as_ref().is_some_and(|l| joins_linux(l, t))
}

fn joins_linux(linux: &oci_spec::runtime::Linux, t: LinuxNamespaceType) -> bool {
    linux
        .namespaces()
        .iter()
        .flatten()
        .any(|n| n.typ() == t && n.path().is_some())
}

/// uidMappings and gidMappings: none (burrow's own, the caller as root
/// with its subordinate ranges); the caller alone as root (`--map-users
/// none`); any others range by range (`--uidmap`, `--gidmap`: written by
/// newuidmap within the caller's subordinate ranges, or directly where
/// the runtime runs as root, as in a rootless podman's user namespace).
fn id_maps(linux: &oci_spec::runtime::Linux, a: &mut Args) -> Result<(), Refused> {
    let (uid, gid) = (
        nix::unistd::getuid().as_raw(),
        nix::unistd::getgid().as_raw(),
    );
    type Maps = Option<Vec<oci_spec::runtime::LinuxIdMapping>>;
    let caller_as_root = |maps: &Maps, id: u32| {
        maps.as_deref().is_some_and(|m| {
            matches!(m, [one] if one.container_id() == 0 && one.host_id() == id && one.size() == 1)
        })
    };
    let (u, g) = (linux.uid_mappings(), linux.gid_mappings());
    match (u.as_deref(), g.as_deref()) {
        (None | Some([]), None | Some([])) => {
            identity_maps(a);
            return Ok(());
        }
        (None | Some([]), _) => {
            return Err(refuse("linux.uidMappings", "missing beside gidMappings"))
        }
        (_, None | Some([])) => {
            return Err(refuse("linux.gidMappings", "missing beside uidMappings"))
        }
        _ => {}
    }
    if caller_as_root(u, uid) && caller_as_root(g, gid) {
        a.pair("--map-users", "none");
        return Ok(());
    }
    for (flag, maps) in [("--uidmap", u), ("--gidmap", g)] {
        for m in maps.iter().flatten() {
            a.pair(
                flag,
                format!("{}:{}:{}", m.container_id(), m.host_id(), m.size()),
            );
        }
    }
    Ok(())
}

/// A spec without a user namespace asks for the engine's own ids: where
/// the runtime is root (a root engine's, or inside rootless podman's user
/// namespace, which maps the user's subordinate ids), the sandbox's user
/// namespace maps every id the runtime's does, each to itself, so that
/// `--user 1000` is the engine's uid 1000. (Burrow's own user namespace
/// still confines the container's root: its capabilities are not the
/// engine's.) Elsewhere, burrow's own maps.
fn identity_maps(a: &mut Args) {
    if !nix::unistd::geteuid().is_root() {
        return;
    }
    for (flag, file) in [
        ("--uidmap", "/proc/self/uid_map"),
        ("--gidmap", "/proc/self/gid_map"),
    ] {
        let text = std::fs::read_to_string(file).unwrap_or_default();
        for (inner, _, count) in burrow_sandbox::idmap::parse_map(&text) {
            a.pair(flag, format!("{inner}:{inner}:{count}"));
        }
    }
}

/// `vm`: see [`linux`].
fn mounts(list: &[Mount], bundle: &Path, vm: bool, a: &mut Args) -> Result<(), Refused> {
    let (mut sys_bound, mut cgroup) = (false, None);
    for (i, m) in list.iter().enumerate() {
        let dst = m.destination();
        let typ = m.typ().as_deref().unwrap_or("");
        let opts = m.options().clone().unwrap_or_default();
        let field = || format!("mounts[{i}] ({})", dst.display());
        if m.uid_mappings().is_some() || m.gid_mappings().is_some() {
            return Err(refuse(field(), "id-mapped mounts are not supported"));
        }
        if let Some((_, _, has)) = PROVIDED
            .iter()
            .find(|(d, types, _)| dst == Path::new(d) && types.contains(&typ))
        {
            // burrow's own, if it is what is asked for.
            for o in &opts {
                let sized = o.starts_with("size=") && has.contains(&"size=*");
                if !sized
                    && !has.contains(&o.as_str())
                    && !matches!(o.as_str(), "private" | "rprivate")
                {
                    return Err(refuse(
                        field(),
                        format!("option {o:?}: burrow's {} has not", dst.display()),
                    ));
                }
                if sized && dst == Path::new("/dev/shm") {
                    a.pair("--shm-size", &o["size=".len()..]);
                }
            }
            if dst == Path::new("/sys/fs/cgroup") {
                cgroup = Some(field());
            }
            continue;
        }
        let bind = typ == "bind" || opts.iter().any(|o| o == "bind" || o == "rbind");
        if dst == Path::new("/sys") && (typ == "sysfs" || bind) {
            // The host's, read-only: a new sysfs needs a network namespace
            // of one's own and privileges over it.
            if bind && m.source().as_deref() != Some(Path::new("/sys")) {
                return Err(refuse(field(), "only the host's /sys can be bound there"));
            }
            if let Some(o) = opts.iter().find(|o| !SYS_OPTIONS.contains(&o.as_str())) {
                return Err(refuse(
                    field(),
                    format!("option {o:?} is not supported on /sys"),
                ));
            }
            if !opts.iter().any(|o| o == "ro") {
                return Err(refuse(field(), "a writable /sys is not supported"));
            }
            if !vm {
                a.pair2("--ro-bind", "/sys", "/sys");
            }
            sys_bound = true;
            continue;
        }
        if typ == "tmpfs" {
            if dst.as_os_str().as_encoded_bytes().contains(&b':') {
                return Err(refuse(
                    field(),
                    "a tmpfs destination with ':' is not supported",
                ));
            }
            let mut spec = dst.as_os_str().to_owned();
            let mut sep = ":";
            for o in &opts {
                match o.split_once('=') {
                    Some(("size" | "mode", _)) => {
                        spec.push(sep);
                        spec.push(o);
                        sep = ",";
                    }
                    _ if o == "rw" || is_harmless(o) => {}
                    _ => {
                        return Err(refuse(
                            field(),
                            format!("tmpfs option {o:?} is not supported"),
                        ))
                    }
                }
            }
            a.pair("--tmpfs", spec);
            continue;
        }
        if bind {
            let src = m
                .source()
                .as_ref()
                .ok_or_else(|| refuse(field(), "a bind mount without a source"))?;
            // (A relative source is the bundle's.)
            let src = bundle.join(src);
            if !opts.iter().any(|o| o == "rbind") && src.is_dir() && has_mounts_below(&src) {
                return Err(refuse(
                    field(),
                    "a bind of a directory without the mounts below it is not supported yet (use rbind)",
                ));
            }
            let (mut ro, mut noexec) = (false, false);
            for o in &opts {
                match o.as_str() {
                    "ro" => ro = true,
                    "noexec" => noexec = true,
                    "rw" | "bind" | "rbind" => {}
                    o if is_harmless(o) => {}
                    o => {
                        return Err(refuse(
                            field(),
                            format!("bind option {o:?} is not supported"),
                        ))
                    }
                }
            }
            a.pair2(if ro { "--ro-bind" } else { "--bind" }, src, dst);
            if noexec {
                a.pair("--remount-noexec", dst);
            }
            continue;
        }
        return Err(refuse(
            field(),
            format!("a mount of type {typ:?} is not supported"),
        ));
    }
    if let (Some(field), false) = (cgroup, sys_bound) {
        return Err(refuse(
            field,
            "the cgroup tree comes only with a read-only /sys",
        ));
    }
    Ok(())
}

/// Whether anything is mounted below `dir` (then a bind without them, as
/// `bind` without `rbind` asks, would differ from burrow's, which are
/// recursive). From /proc/self/mountinfo, whose paths escape blanks and
/// backslashes as octal.
fn has_mounts_below(dir: &Path) -> bool {
    let Ok(dir) = std::fs::canonicalize(dir) else {
        return true;
    };
    let unescape = |field: &str| -> PathBuf {
        let b = field.as_bytes();
        let mut out = Vec::with_capacity(b.len());
        let mut i = 0;
        while i < b.len() {
            let octal = b.get(i + 1..i + 4).and_then(|d| {
                std::str::from_utf8(d)
                    .ok()
                    .and_then(|d| u8::from_str_radix(d, 8).ok())
            });
            match (b[i], octal) {
                (b'\\', Some(c)) => {
                    out.push(c);
                    i += 4;
                }
                (c, _) => {
                    out.push(c);
                    i += 1;
                }
            }
        }
        PathBuf::from(std::ffi::OsString::from_vec(out))
    };
    let Ok(info) = std::fs::read_to_string("/proc/self/mountinfo") else {
        return true;
    };
    info.lines()
        .filter_map(|l| l.split(' ').nth(4))
        .map(unescape)
        .any(|m| m != dir && m.starts_with(&dir))
}

/// Mount options burrow's mounts have anyway (they are nosuid and nodev,
/// and private), or that only change how access times are kept.
fn is_harmless(o: &str) -> bool {
    matches!(
        o,
        "nosuid" | "nodev" | "private" | "rprivate" | "relatime" | "strictatime" | "noatime"
    )
}

#[derive(Clone, Copy)]
enum Lsm {
    AppArmor,
    SeLinux,
}

impl Lsm {
    fn name(self) -> &'static str {
        match self {
            Lsm::AppArmor => "AppArmor",
            Lsm::SeLinux => "SELinux",
        }
    }

    /// Whether the host enforces it.
    fn enabled(self) -> bool {
        match self {
            Lsm::AppArmor => std::fs::read_to_string("/sys/module/apparmor/parameters/enabled")
                .is_ok_and(|v| v.trim() == "Y"),
            Lsm::SeLinux => Path::new("/sys/fs/selinux/enforce").exists(),
        }
    }
}

/// An AppArmor profile or SELinux label (podman sends one where the host
/// has that module): burrow applies neither, so where the host enforces
/// the module the field is refused; where it does not, there is nothing
/// to apply (as runc ignores them there), and it is ignored with a
/// warning on stderr.
fn unenforced_label(field: &str, value: &str, lsm: Lsm) -> Result<(), Refused> {
    if lsm.enabled() {
        return Err(refuse(
            field,
            format!(
                "{value:?}: burrow applies no {} profile or label",
                lsm.name()
            ),
        ));
    }
    eprintln!(
        "burrow-runtime: warning: config.json: {field} {value:?} ignored: {} is not enabled on this host",
        lsm.name()
    );
    Ok(())
}

/// `vm`: the command runs in burrow's micro-VM, whose kernel makes its
/// own /proc and /sys (the host's are not there to mask or make
/// read-only).
fn linux(linux: &oci_spec::runtime::Linux, vm: bool, a: &mut Args) -> Result<(), Refused> {
    none_set(&[
        ("linux.intelRdt", linux.intel_rdt().is_some()),
        ("linux.personality", linux.personality().is_some()),
        ("linux.timeOffsets", linux.time_offsets().is_some()),
        ("linux.netDevices", linux.net_devices().is_some()),
        ("linux.memoryPolicy", linux.memory_policy().is_some()),
    ])?;
    for (i, d) in linux.devices().iter().flatten().enumerate() {
        a.pair("--device", device(i, d)?);
    }
    // (Applied by create, in a cgroup of the container's own; checked
    // here for every use of the spec.)
    if let Some(r) = linux.resources() {
        crate::resources::limits(r, crate::resources::Use::Create, &nodes_of(linux))?;
    }
    if let Some(label) = linux.mount_label() {
        unenforced_label("linux.mountLabel", label, Lsm::SeLinux)?;
    }
    if let Some(p) = linux.rootfs_propagation() {
        if !matches!(p.as_str(), "private" | "rprivate") {
            return Err(refuse(
                "linux.rootfsPropagation",
                format!("{p}: only private (burrow's mounts are private)"),
            ));
        }
    }
    let has_netns = linux
        .namespaces()
        .iter()
        .flatten()
        .any(|n| n.typ() == LinuxNamespaceType::Network);
    let mut sysctls: Vec<(&String, &String)> = linux.sysctl().iter().flatten().collect();
    sysctls.sort();
    for (name, value) in sysctls {
        if name.starts_with("net.") && !has_netns {
            return Err(refuse(
                "linux.sysctl",
                format!("{name}: no network namespace in linux.namespaces"),
            ));
        }
        let arg = format!("{name}={value}");
        // (The launcher's own check, told by the field's name.)
        burrow_sandbox::sysctl::parse(std::slice::from_ref(&arg), has_netns).map_err(|e| {
            let msg = e.to_string();
            refuse(
                "linux.sysctl",
                msg.trim_start_matches("--sysctl ").to_string(),
            )
        })?;
        a.pair("--sysctl", arg);
    }
    let guests = |p: &&String| vm && (p.starts_with("/proc/") || p.starts_with("/sys/"));
    for p in linux
        .readonly_paths()
        .iter()
        .flatten()
        .filter(|p| !guests(p))
    {
        a.pair("--remount-ro", p);
    }
    for p in linux.masked_paths().iter().flatten().filter(|p| !guests(p)) {
        a.pair("--mask", p);
    }
    Ok(())
}

/// `linux.seccomp` as the text of a profile for the launcher's
/// `--seccomp` (which reads runtime-spec's format, and compiles it with
/// libseccomp as it compiles its own profiles). None: the spec has none,
/// and burrow's default profile applies.
pub fn seccomp(spec: &Spec) -> Result<Option<String>, Refused> {
    let Some(s) = spec.linux().as_ref().and_then(|l| l.seccomp().as_ref()) else {
        return Ok(None);
    };
    none_set(&[
        ("linux.seccomp.listenerPath", s.listener_path().is_some()),
        (
            "linux.seccomp.listenerMetadata",
            s.listener_metadata().is_some(),
        ),
        (
            "linux.seccomp.flags",
            s.flags().as_ref().is_some_and(|f| !f.is_empty()),
        ),
    ])?;
    serde_json::to_string(s)
        .map(Some)
        .map_err(|e| refuse("linux.seccomp", e.to_string()))
}

/// With `process.terminal`: the terminal's rows and columns
/// (`consoleSize`), if given. The terminal is the runtime's to make (see
/// the launcher's `Console`); without it `consoleSize` means nothing.
pub fn terminal(spec: &Spec) -> Option<Option<(u16, u16)>> {
    let p = spec.process().as_ref()?;
    if p.terminal() != Some(true) {
        return None;
    }
    let size = p.console_size().as_ref().map(|b| {
        let clamp = |v: u64| v.min(u64::from(u16::MAX)) as u16;
        (clamp(b.height()), clamp(b.width()))
    });
    Some(size)
}

fn process(spec: &Spec, a: &mut Args) -> Result<Vec<OsString>, Refused> {
    let p = spec
        .process()
        .as_ref()
        .ok_or_else(|| refuse("process", "missing"))?;
    none_set(&[
        ("process.commandLine", p.command_line().is_some()),
        ("process.ioPriority", p.io_priority().is_some()),
        ("process.scheduler", p.scheduler().is_some()),
        ("process.execCPUAffinity", p.exec_cpu_affinity().is_some()),
        ("process.user.username", p.user().username().is_some()),
    ])?;
    if let Some(profile) = p.apparmor_profile() {
        unenforced_label("process.apparmorProfile", profile, Lsm::AppArmor)?;
    }
    if let Some(label) = p.selinux_label() {
        unenforced_label("process.selinuxLabel", label, Lsm::SeLinux)?;
    }
    let args = p.args().clone().unwrap_or_default();
    if args.is_empty() {
        return Err(refuse("process.args", "empty"));
    }
    a.flag("--clearenv");
    for e in p.env().iter().flatten() {
        let (k, v) = e
            .split_once('=')
            .ok_or_else(|| refuse("process.env", format!("{e:?} is not NAME=VALUE")))?;
        a.pair2("--setenv", k, v);
    }
    a.pair("--chdir", p.cwd());
    if let Some(n) = p.oom_score_adj() {
        if !(-1000..=1000).contains(&n) {
            return Err(refuse(
                "process.oomScoreAdj",
                format!("{n}: not in -1000..1000"),
            ));
        }
        a.pair("--oom-score-adj", n.to_string());
    }
    if let Some(mask) = p.user().umask() {
        a.pair("--umask", format!("{mask:o}"));
    }
    let (uid, gid) = (p.user().uid(), p.user().gid());
    let groups = p.user().additional_gids().clone().unwrap_or_default();
    if (uid, gid) != (0, 0) || !groups.is_empty() {
        a.pair("--user", format!("{uid}:{gid}"));
    }
    for g in groups {
        a.pair("--group-add", g.to_string());
    }
    capabilities(p, a)?;
    for r in p.rlimits().iter().flatten() {
        a.pair("--rlimit", format!("{}={}:{}", r.typ(), r.soft(), r.hard()));
    }
    // noNewPrivileges: burrow sets it for every sandbox (its seccomp
    // filter needs it), whatever the spec says.
    let mut out = a.0.clone();
    out.push("--".into());
    out.extend(args.into_iter().map(OsString::from));
    Ok(out)
}

/// The command's capabilities: burrow gives it one set (bounding,
/// effective and permitted alike; ambient for a command that is not root
/// inside), so the spec's sets must agree.
fn capabilities(p: &oci_spec::runtime::Process, a: &mut Args) -> Result<(), Refused> {
    a.pair("--cap-drop", "ALL");
    let Some(c) = p.capabilities() else {
        return Ok(());
    };
    let bounding = c.bounding().clone().unwrap_or_default();
    let none =
        |s: &Option<oci_spec::runtime::Capabilities>| s.as_ref().is_none_or(|s| s.is_empty());
    if [c.effective(), c.permitted(), c.ambient(), c.inheritable()]
        .into_iter()
        .all(none)
    {
        // Only a bounding set (podman's for a user that is not root): the
        // command has no capabilities, and with no_new_privs (always set)
        // it can gain none of the bounding set's.
        return Ok(());
    }
    let same = |s: &Option<oci_spec::runtime::Capabilities>| {
        s.as_ref().is_none_or(|s| s.is_empty() || *s == bounding)
    };
    let agree = [c.effective(), c.permitted(), c.ambient(), c.inheritable()]
        .into_iter()
        .all(same);
    if !agree || c.effective().as_ref().is_none_or(|e| *e != bounding) {
        return Err(refuse(
            "process.capabilities",
            "the sets differ: burrow gives the command one set (bounding, effective and \
             permitted the same; ambient and inheritable empty or the same)",
        ));
    }
    // A command that is not root inside keeps capabilities across its
    // exec only through the ambient set: without one, it has none.
    let root = (p.user().uid(), p.user().gid()) == (0, 0);
    if !root && c.ambient().as_ref().is_none_or(|s| s.is_empty()) {
        return Ok(());
    }
    let mut names: Vec<String> = bounding.iter().map(|c| c.to_string()).collect();
    names.sort();
    for n in names {
        a.pair("--cap-add", n);
    }
    Ok(())
}

/// `bundle`'s config.json.
pub fn load(bundle: &Path) -> anyhow::Result<(Spec, PathBuf)> {
    let bundle = std::fs::canonicalize(bundle)
        .map_err(|e| anyhow::anyhow!("bundle {}: {e}", bundle.display()))?;
    let path = bundle.join("config.json");
    let spec = Spec::load(&path).map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))?;
    Ok((spec, bundle))
}

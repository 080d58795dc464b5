//! A container's state on disk, under `--root`: `ROOT/ID/state.json` (what
//! `create` recorded once the sandbox was made) and `ROOT/ID/exec.fifo`
//! (there from `create` until `start`). The processes are known by pid
//! and start time, so that a reused pid is never taken for the container.

use std::collections::HashMap;
use std::os::fd::{AsFd, OwnedFd};
use std::os::unix::ffi::OsStringExt;
use std::os::unix::fs::{DirBuilderExt, MetadataExt};
use std::path::{Path, PathBuf};

use anyhow::{anyhow, bail, Context, Result};
use burrow_sandbox::config::Hold;
use burrow_sandbox::sys;
use nix::unistd::Pid;
use serde::{Deserialize, Serialize};

/// The directory of every container's state (`--root`).
pub struct StateRoot(PathBuf);

impl StateRoot {
    /// `--root`, else `$XDG_RUNTIME_DIR/burrow-runtime`, else
    /// `/tmp/burrow-runtime-UID`; made (0700) if missing. It must be the
    /// caller's and closed to others: another user who could write there
    /// (or made it first) could plant a container's state.
    pub fn open(given: Option<&Path>) -> Result<StateRoot> {
        let path = match given {
            Some(p) => p.to_path_buf(),
            None => match std::env::var_os("XDG_RUNTIME_DIR").filter(|v| !v.is_empty()) {
                Some(dir) => Path::new(&dir).join("burrow-runtime"),
                None => PathBuf::from(format!(
                    "/tmp/burrow-runtime-{}",
                    nix::unistd::geteuid().as_raw()
                )),
            },
        };
        match std::fs::DirBuilder::new()
            .mode(0o700)
            .recursive(true)
            .create(&path)
        {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {}
            Err(e) => bail!("--root {}: {}", path.display(), sys::errno_text(&e)),
        }
        let meta = std::fs::symlink_metadata(&path)
            .map_err(|e| anyhow!("--root {}: {}", path.display(), sys::errno_text(&e)))?;
        // (Absolute, so that its tag names it whatever the working
        // directory.)
        let path = std::path::absolute(&path)
            .map_err(|e| anyhow!("--root {}: {}", path.display(), sys::errno_text(&e)))?;
        if !meta.is_dir() {
            bail!("--root {}: not a directory", path.display());
        }
        if meta.uid() != nix::unistd::geteuid().as_raw() || meta.mode() & 0o022 != 0 {
            bail!(
                "--root {}: must be this user's and not writable by others",
                path.display()
            );
        }
        Ok(StateRoot(path))
    }

    /// A short name for this root, which the cgroups of its containers
    /// carry: two roots' containers of one ID are not confused.
    pub fn tag(&self) -> String {
        use std::hash::{Hash, Hasher};
        let mut h = std::collections::hash_map::DefaultHasher::new();
        self.0.hash(&mut h);
        format!("{:08x}", h.finish() as u32)
    }

    pub fn dir_of(&self, id: &str) -> PathBuf {
        self.0.join(id)
    }

    /// The IDs of the containers recorded here, sorted.
    pub fn ids(&self) -> Result<Vec<String>> {
        let mut ids: Vec<String> = std::fs::read_dir(&self.0)
            .with_context(|| format!("--root {}", self.0.display()))?
            .flatten()
            .filter(|e| e.file_type().is_ok_and(|t| t.is_dir()))
            .filter_map(|e| e.file_name().into_string().ok())
            .collect();
        ids.sort();
        Ok(ids)
    }
}

/// A container ID as runc takes them: letters, digits, `_`, `+`, `-`, `.`.
pub fn check_id(id: &str) -> Result<()> {
    let ok = |c: char| c.is_ascii_alphanumeric() || matches!(c, '_' | '+' | '-' | '.');
    if id.is_empty() || id == "." || id == ".." || !id.chars().all(ok) {
        bail!("invalid container id {id:?}: letters, digits, '_', '+', '-' and '.'");
    }
    Ok(())
}

/// A process, by pid and the start time the kernel gave it.
#[derive(Debug, Clone, Copy, Serialize, Deserialize)]
pub struct Proc {
    pub pid: i32,
    pub start_time: u64,
}

impl Proc {
    pub fn of(pid: Pid) -> Result<Proc> {
        let stat = ProcStat::read(pid.as_raw())
            .ok_or_else(|| anyhow!("process {pid} ended while the container was made"))?;
        Ok(Proc {
            pid: pid.as_raw(),
            start_time: stat.start_time,
        })
    }

    /// Whether this process still runs (a zombie has ended).
    pub fn alive(&self) -> bool {
        ProcStat::read(self.pid)
            .is_some_and(|s| s.start_time == self.start_time && !matches!(s.state, 'Z' | 'X'))
    }

    /// A pidfd that is surely this process's (opened, then checked).
    pub fn pidfd(&self) -> Option<OwnedFd> {
        let fd = sys::pidfd_open(Pid::from_raw(self.pid)).ok()?;
        ProcStat::read(self.pid)
            .is_some_and(|s| s.start_time == self.start_time)
            .then_some(fd)
    }

    /// Sends signal number `sig`; false when the process has ended.
    pub fn signal(&self, sig: i32) -> Result<bool> {
        let Some(fd) = self.pidfd() else {
            return Ok(false);
        };
        match sys::pidfd_send_signal(fd.as_fd(), sig) {
            Ok(()) => Ok(true),
            Err(nix::errno::Errno::ESRCH) => Ok(false),
            Err(e) => Err(anyhow!("signalling process {}: {}", self.pid, e.desc())),
        }
    }

    /// Waits at most `timeout` for the process to end; whether it did.
    pub fn wait_end(&self, timeout: std::time::Duration) -> bool {
        match self.pidfd() {
            Some(fd) => sys::wait_pidfd(fd.as_fd(), Some(timeout)) || !self.alive(),
            None => true,
        }
    }
}

/// The fields of /proc/PID/stat burrow-runtime reads.
pub struct ProcStat {
    pub state: char,
    pub ppid: i32,
    pub start_time: u64,
}

impl ProcStat {
    pub fn read(pid: i32) -> Option<ProcStat> {
        let text = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
        // The command name, in parentheses, may hold anything: fields are
        // counted from its closing one.
        let rest = &text[text.rfind(')')? + 1..];
        let fields: Vec<&str> = rest.split_whitespace().collect();
        Some(ProcStat {
            state: fields.first()?.chars().next()?,
            ppid: fields.get(1)?.parse().ok()?,
            start_time: fields.get(19)?.parse().ok()?,
        })
    }
}

/// What `create` recorded.
#[derive(Debug, Serialize, Deserialize)]
pub struct Record {
    pub oci_version: String,
    pub id: String,
    /// The sandbox's pid 1: the container's process for the engine.
    pub init: Proc,
    /// burrow's helpers (the root filesystem's server, the network stack),
    /// which end with pid 1; `delete` waits for them.
    pub helpers: Vec<Proc>,
    /// pid 1's child that runs the spec's process: whose namespaces
    /// `exec` joins (None in a record of an older burrow-runtime).
    #[serde(default)]
    pub command: Option<Proc>,
    /// Whether the spec has hooks (`start` and `delete` read it again only
    /// then).
    #[serde(default)]
    pub hooks: bool,
    /// Whether its pid namespace is a pod's, joined by path (shared with
    /// other containers).
    #[serde(default)]
    pub shares_pids: bool,
    /// The container's cgroup, in the subtree delegated to the caller
    /// (None: it has none of its own).
    #[serde(default)]
    pub cgroup: Option<PathBuf>,
    pub bundle: PathBuf,
    pub rootfs: PathBuf,
    /// RFC 3339.
    pub created: String,
    pub annotations: HashMap<String, String>,
}

impl Record {
    /// The command, whose pid namespace holds every process of the
    /// container, where that namespace is the container's own (else
    /// None: the container's processes are pid 1's tree).
    pub fn own_pid_ns(&self) -> Option<&Proc> {
        self.command.as_ref().filter(|_| !self.shares_pids)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Status {
    Creating,
    Created,
    Running,
    /// Frozen by `pause`.
    Paused,
    Stopped,
}

impl Status {
    pub fn name(self) -> &'static str {
        match self {
            Status::Creating => "creating",
            Status::Created => "created",
            Status::Running => "running",
            Status::Paused => "paused",
            Status::Stopped => "stopped",
        }
    }
}

/// A container whose state directory exists.
pub struct Container {
    pub id: String,
    pub dir: PathBuf,
    /// None while `create` is still making it (or died doing so).
    pub record: Option<Record>,
}

const STATE: &str = "state.json";
/// The config.json the container was made from, as `create` read it:
/// `exec` takes the container's settings from here, not from a bundle
/// that may have changed since.
const CONFIG: &str = "config.json";
/// The path of the container's cgroup, from before it was made.
const PENDING_CGROUP: &str = "cgroup";

impl Container {
    /// The container `id`; an unknown one's error says it "does not
    /// exist", which engines look for.
    pub fn load(root: &StateRoot, id: &str) -> Result<Container> {
        check_id(id)?;
        let dir = root.dir_of(id);
        if !dir.is_dir() {
            bail!("container {id:?} does not exist");
        }
        let record = match std::fs::read(dir.join(STATE)) {
            Ok(bytes) => Some(
                serde_json::from_slice(&bytes)
                    .with_context(|| format!("container {id:?}: its state is unreadable"))?,
            ),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => None,
            Err(e) => return Err(e).with_context(|| format!("container {id:?}: its state")),
        };
        Ok(Container {
            id: id.to_string(),
            dir,
            record,
        })
    }

    /// Claims `id` (its directory, made atomically) and makes the FIFO its
    /// command will wait on; the hold point to give the sandbox.
    pub fn claim(root: &StateRoot, id: &str) -> Result<(Container, Hold)> {
        check_id(id)?;
        let dir = root.dir_of(id);
        match std::fs::DirBuilder::new().mode(0o700).create(&dir) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
                bail!("container {id:?} already exists")
            }
            Err(e) => return Err(e).with_context(|| format!("container {id:?}")),
        }
        let container = Container {
            id: id.to_string(),
            dir,
            record: None,
        };
        // Writable by all (as runc's): the command opens it as the root of
        // its user namespace, which need not map this user; the directory
        // (0700) keeps others from its name, and the command reaches it
        // only through the descriptor it is given.
        let fifo = container.dir.join(Hold::FIFO);
        let made = nix::unistd::mkfifo(&fifo, nix::sys::stat::Mode::from_bits_truncate(0o622))
            .and_then(|()| {
                nix::sys::stat::fchmodat(
                    nix::fcntl::AT_FDCWD,
                    &fifo,
                    nix::sys::stat::Mode::from_bits_truncate(0o622),
                    nix::sys::stat::FchmodatFlags::NoFollowSymlink,
                )
            })
            .and_then(|()| sys::open_without_symlinks(&fifo))
            .map_err(|e| anyhow!("container {id:?}: {}: {}", Hold::FIFO, e.desc()));
        match made {
            Ok(fd) => Ok((
                container,
                Hold {
                    fifo: std::sync::Arc::new(fd),
                },
            )),
            Err(e) => {
                container.remove();
                Err(e)
            }
        }
    }

    /// Writes the record, whole or not at all (a temporary file renamed).
    pub fn save(&mut self, record: Record) -> Result<()> {
        let tmp = self.dir.join(".state.json.new");
        std::fs::write(&tmp, serde_json::to_vec(&record)?)
            .and_then(|()| std::fs::rename(&tmp, self.dir.join(STATE)))
            .with_context(|| format!("container {:?}: writing its state", self.id))?;
        self.record = Some(record);
        Ok(())
    }

    /// Keeps the spec the container is made from (before its record).
    pub fn save_spec(&self, spec: &oci_spec::runtime::Spec) -> Result<()> {
        spec.save(self.dir.join(CONFIG))
            .map_err(|e| anyhow!("container {:?}: keeping its config.json: {e}", self.id))
    }

    /// Where the container's cgroup is to be, written before it is made.
    pub fn save_pending_cgroup(&self, path: &Path) -> Result<()> {
        std::fs::write(
            self.dir.join(PENDING_CGROUP),
            path.as_os_str().as_encoded_bytes(),
        )
        .with_context(|| format!("container {:?}: writing its cgroup's name", self.id))
    }

    /// What [`Container::save_pending_cgroup`] wrote.
    pub fn pending_cgroup(&self) -> Option<PathBuf> {
        let bytes = std::fs::read(self.dir.join(PENDING_CGROUP)).ok()?;
        Some(PathBuf::from(std::ffi::OsString::from_vec(bytes)))
    }

    /// The spec `create` kept.
    pub fn spec(&self) -> Result<oci_spec::runtime::Spec> {
        oci_spec::runtime::Spec::load(self.dir.join(CONFIG))
            .map_err(|e| anyhow!("container {:?}: its config.json: {e}", self.id))
    }

    pub fn status(&self) -> Status {
        match &self.record {
            None => Status::Creating,
            Some(r) if !r.init.alive() => Status::Stopped,
            Some(r)
                if r.cgroup
                    .as_deref()
                    .is_some_and(burrow_sandbox::cgroup::is_frozen) =>
            {
                Status::Paused
            }
            Some(_) if self.dir.join(Hold::FIFO).exists() => Status::Created,
            Some(_) => Status::Running,
        }
    }

    /// The record of a container that has one (not still being created).
    pub fn record(&self) -> Result<&Record> {
        self.record
            .as_ref()
            .ok_or_else(|| anyhow!("container {:?} is still being created", self.id))
    }

    /// Removes the state directory (best effort: its files are ours).
    pub fn remove(&self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

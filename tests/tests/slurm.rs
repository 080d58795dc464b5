//! Slurm as the engine (issue 21): Debian's slurmctld, slurmd and munged
//! as a one-node cluster of the test's own (its configuration written
//! here, everything on 127.0.0.1), run as root as they are on a cluster;
//! the jobs are the unprivileged account's, so burrow runs as that user,
//! started by slurmstepd. scripts/run-tests.sh runs the tests named
//! `*_as_real_root` as root.

use burrow_tests::*;
use std::os::unix::fs::PermissionsExt;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

/// The account jobs run as.
const USER: &str = "burrow-test";

/// munged, slurmctld and slurmd of this test's own, their files in `dir`;
/// ended on drop (with any job left).
struct Cluster {
    dir: PathBuf,
    daemons: Vec<Child>,
}

impl Cluster {
    fn start(dir: &Path) -> Cluster {
        std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o755)).unwrap();
        let munge = dir.join("munge");
        for d in ["munge", "state", "spool", "jobs"] {
            std::fs::create_dir(dir.join(d)).unwrap();
        }
        std::fs::write(munge.join("key"), random_bytes(1024)).unwrap();
        let run = |args: &[&str]| {
            let out = output(Command::new(args[0]).args(&args[1..]));
            assert_eq!(out.code, 0, "{args:?}: {out:?}");
        };
        let m = munge.to_str().unwrap();
        run(&["chown", "-R", "munge:munge", m]);
        run(&["chmod", "0400", &format!("{m}/key")]);
        // (Users reach the socket; nothing else of munge's.)
        run(&["chmod", "0711", m]);
        run(&["chown", USER, dir.join("jobs").to_str().unwrap()]);
        let host = nix::unistd::gethostname().unwrap();
        let host = host.to_string_lossy();
        let host = host.split('.').next().unwrap();
        std::fs::write(
            dir.join("slurm.conf"),
            format!(
                "ClusterName=burrowtest\nSlurmctldHost={host}(127.0.0.1)\n\
                 SlurmctldPort=16817\nSlurmdPort=16818\nSlurmUser=root\n\
                 AuthType=auth/munge\nAuthInfo=socket={m}/sock\nCredType=cred/munge\n\
                 StateSaveLocation={d}/state\nSlurmdSpoolDir={d}/spool\n\
                 SlurmctldPidFile={d}/slurmctld.pid\nSlurmdPidFile={d}/slurmd.pid\n\
                 SlurmctldLogFile={d}/slurmctld.log\nSlurmdLogFile={d}/slurmd.log\n\
                 ProctrackType=proctrack/linuxproc\nTaskPlugin=task/none\n\
                 JobAcctGatherType=jobacct_gather/none\n\
                 AccountingStorageType=accounting_storage/none\nMpiDefault=none\n\
                 MailProg=/bin/true\nReturnToService=2\n\
                 NodeName=burrowtest NodeAddr=127.0.0.1 CPUs=2 State=UNKNOWN\n\
                 PartitionName=main Nodes=burrowtest Default=YES MaxTime=INFINITE State=UP\n",
                d = dir.display()
            ),
        )
        .unwrap();
        let mut c = Cluster {
            dir: dir.to_path_buf(),
            daemons: Vec::new(),
        };
        let conf = dir.join("slurm.conf");
        let conf = conf.to_str().unwrap();
        c.spawn(
            "munged",
            Command::new("runuser")
                .args(["-u", "munge", "--", "munged", "-F", "--force"])
                .args([
                    format!("--socket={m}/sock"),
                    format!("--key-file={m}/key"),
                    format!("--log-file={m}/log"),
                    format!("--pid-file={m}/pid"),
                    format!("--seed-file={m}/seed"),
                ]),
        );
        assert!(
            eventually(Duration::from_secs(30), || munge.join("sock").exists()),
            "munged did not start: {}",
            std::fs::read_to_string(dir.join("munged.err")).unwrap_or_default()
        );
        c.spawn(
            "slurmctld",
            Command::new("slurmctld").args(["-D", "-f", conf]),
        );
        c.spawn(
            "slurmd",
            Command::new("slurmd").args(["-D", "-f", conf, "-N", "burrowtest"]),
        );
        assert!(
            eventually(Duration::from_secs(60), || {
                c.as_user("sinfo", &["-h", "-o", "%T"]).stdout.trim() == "idle"
            }),
            "the node did not come up: {}",
            std::fs::read_to_string(dir.join("slurmctld.err")).unwrap_or_default()
        );
        c
    }

    fn spawn(&mut self, name: &str, cmd: &mut Command) {
        // SAFETY: prctl is async-signal-safe; nothing is allocated. (The
        // daemons end with this test, however it ends.)
        unsafe {
            cmd.pre_exec(|| {
                if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL) < 0 {
                    return Err(std::io::Error::last_os_error());
                }
                Ok(())
            });
        }
        let child = cmd
            .stdin(Stdio::null())
            .stdout(std::fs::File::create(self.dir.join(format!("{name}.out"))).unwrap())
            .stderr(std::fs::File::create(self.dir.join(format!("{name}.err"))).unwrap())
            .spawn()
            .unwrap_or_else(|e| panic!("{name} (setup-host.sh installs Slurm and munge): {e}"));
        self.daemons.push(child);
    }

    /// `program args` as the unprivileged account, with this cluster's
    /// configuration (and its home, for --hpc).
    fn as_user(&self, program: &str, args: &[&str]) -> Output {
        output_within(
            &mut self.user_command(program, args),
            Duration::from_secs(120),
        )
    }

    fn user_command(&self, program: &str, args: &[&str]) -> Command {
        let mut cmd = Command::new("runuser");
        cmd.args(["-u", USER, "--", "env", "-i"])
            .arg("PATH=/usr/local/bin:/usr/bin:/bin:/usr/sbin:/sbin")
            .arg(format!("HOME={}", home_of(USER)))
            .arg(format!(
                "SLURM_CONF={}",
                self.dir.join("slurm.conf").display()
            ))
            .arg("LANG=C.UTF-8")
            .arg(program)
            .args(args)
            .current_dir(self.dir.join("jobs"))
            .stdin(Stdio::null());
        cmd
    }

    /// Whether the queue is empty (an error is not).
    fn queue_empty(&self) -> bool {
        self.user_command("squeue", &["-h"])
            .output()
            .is_ok_and(|o| o.status.success() && o.stdout.is_empty())
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        // (Nothing here may panic: this runs on a failed test's way out.)
        let _ = self.user_command("scancel", &["--user", USER]).output();
        let _ = eventually(Duration::from_secs(30), || self.queue_empty());
        for d in self.daemons.iter_mut().rev() {
            let _ = d.kill();
            let _ = d.wait();
        }
        // munged ran under runuser: its own pid is in its file.
        if let Ok(pid) = std::fs::read_to_string(self.dir.join("munge/pid")) {
            if let Ok(pid) = pid.trim().parse::<i32>() {
                let _ = nix::sys::signal::kill(
                    nix::unistd::Pid::from_raw(pid),
                    nix::sys::signal::Signal::SIGKILL,
                );
            }
        }
    }
}

fn home_of(user: &str) -> String {
    nix::unistd::User::from_name(user)
        .ok()
        .flatten()
        .map(|u| u.dir.display().to_string())
        .unwrap_or_else(|| panic!("no account {user} (setup-host.sh makes it)"))
}

fn random_bytes(n: usize) -> Vec<u8> {
    let mut buf = vec![0u8; n];
    let mut f = std::fs::File::open("/dev/urandom").unwrap();
    std::io::Read::read_exact(&mut f, &mut buf).unwrap();
    buf
}

/// The unprivileged account's processes whose command line matches
/// `pattern`.
fn processes_of_user_with(pattern: &str) -> usize {
    let out = output(Command::new("pgrep").args(["-u", USER, "-f", pattern]));
    out.stdout.lines().count()
}

/// The unprivileged account's burrow processes (launchers, pid 1s,
/// helpers).
fn burrows_of_user() -> usize {
    let out = output(Command::new("pgrep").args(["-u", USER, "-x", "burrow"]));
    out.stdout.lines().count()
}

/// `srun -n 2 burrow run --hpc`: both tasks run, each sandboxed (a user
/// namespace of its own) as the user, with its rank; `sbatch --wait` of a
/// script whose step runs burrow the same way; `scancel` of a running job
/// ends every sandbox, leaving no process of burrow's or the command's.
#[test]
fn slurm_runs_each_task_in_a_sandbox_as_real_root() {
    if !nix::unistd::geteuid().is_root() {
        skipped("Slurm's daemons run as root: scripts/run-tests.sh runs this test as root");
        return;
    }
    let burrow = burrow_bin();
    let b = burrow.to_str().unwrap();
    // (A directory every account reaches: the daemons' files.)
    let base = PathBuf::from(format!("/tmp/burrow-slurm-{}", std::process::id()));
    std::fs::create_dir_all(&base).unwrap();
    let t = TempDir::in_dir(&base, "cluster");
    let c = Cluster::start(t.path());
    let host_user = host_ns("user");

    let out = c.as_user(
        "srun",
        &["-n", "2", b, "run", "--hpc", "--", "sh", "-c",
          "echo task $SLURM_PROCID of $SLURM_NTASKS as $(id -un) in $(readlink /proc/self/ns/user)"],
    );
    assert_eq!(out.code, 0, "{out:?}");
    let mut lines: Vec<&str> = out.stdout.lines().collect();
    lines.sort();
    assert_eq!(lines.len(), 2, "{out:?}");
    for (rank, line) in lines.iter().enumerate() {
        let prefix = format!("task {rank} of 2 as {USER} in user:[");
        assert!(line.starts_with(&prefix), "{out:?}");
        assert!(!line.ends_with(&host_user[5..]), "sandboxed: {out:?}");
    }

    // The form: each task on a root that is one squashfs file.
    let root = c.dir.join("jobs/root");
    for d in ["bin", "proc", "dev", "sys", "tmp", "etc"] {
        std::fs::create_dir_all(root.join(d)).unwrap();
    }
    std::fs::copy("/bin/busybox", root.join("bin/busybox")).unwrap();
    std::os::unix::fs::symlink("busybox", root.join("bin/sh")).unwrap();
    let img = c.dir.join("jobs/root.sqfs");
    let pack = output(Command::new("mksquashfs").arg(&root).arg(&img).args([
        "-quiet",
        "-no-progress",
        "-noappend",
    ]));
    assert_eq!(pack.code, 0, "{pack:?}");
    std::fs::set_permissions(&img, std::os::unix::fs::PermissionsExt::from_mode(0o644)).unwrap();
    let image = format!("--image=squashfs:{}", img.display());
    let out = c.as_user(
        "srun",
        &[
            "-n",
            "2",
            b,
            "run",
            &image,
            "--",
            "sh",
            "-c",
            "echo $SLURM_PROCID; ls /bin",
        ],
    );
    assert_eq!(out.code, 0, "{out:?}");
    let mut lines: Vec<&str> = out.stdout.lines().collect();
    lines.sort();
    assert_eq!(
        lines,
        ["0", "1", "busybox", "busybox", "sh", "sh"],
        "{out:?}"
    );

    let script = c.dir.join("jobs/batch.sh");
    std::fs::write(
        &script,
        format!("#!/bin/sh\nsrun -n 2 {b} run --hpc -- sh -c 'echo batch task $SLURM_PROCID'\n"),
    )
    .unwrap();
    let out = c.as_user(
        "sbatch",
        &["--wait", "-n", "2", "-o", "batch.out", "batch.sh"],
    );
    assert_eq!(out.code, 0, "{out:?}");
    let text = std::fs::read_to_string(c.dir.join("jobs/batch.out")).unwrap();
    let mut lines: Vec<&str> = text.lines().collect();
    lines.sort();
    assert_eq!(lines, ["batch task 0", "batch task 1"], "{text}");

    let token = unique_token();
    std::fs::write(
        c.dir.join("jobs/long.sh"),
        format!("#!/bin/sh\nsrun -n 2 {b} run --hpc -- sleep {token}\n"),
    )
    .unwrap();
    let out = c.as_user("sbatch", &["-n", "2", "-o", "long.out", "long.sh"]);
    assert_eq!(out.code, 0, "{out:?}");
    let job = out
        .stdout
        .trim()
        .strip_prefix("Submitted batch job ")
        .unwrap_or_else(|| panic!("{out:?}"))
        .to_string();
    assert!(
        eventually(Duration::from_secs(60), || processes_of_user_with(
            &format!("^sleep {token}$")
        ) == 2),
        "both tasks' commands did not start"
    );
    assert!(burrows_of_user() >= 2, "burrow runs the tasks");
    let out = c.as_user("scancel", &[&job]);
    assert_eq!(out.code, 0, "{out:?}");
    assert!(
        eventually(Duration::from_secs(60), || {
            c.queue_empty() && processes_of_user_with(&token) == 0 && burrows_of_user() == 0
        }),
        "processes left after scancel: {}",
        output(Command::new("pgrep").args(["-a", "-u", USER])).stdout
    );
    drop(c);
    let _ = std::fs::remove_dir_all(&base);
}

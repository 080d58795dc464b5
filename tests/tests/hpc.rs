//! HPC: `--hpc` (a job's task as Apptainer runs it: the caller's ids, the
//! host's network, pid and IPC namespaces, home, /tmp and /dev/shm), and
//! MPI ranks each in a sandbox of its own, driven by Debian's Open MPI.

use burrow_tests::*;
use std::process::Command;
use std::time::Duration;

/// Two ranks, each `burrow run --hpc`, started by Open MPI's `mpirun`
/// and restricted to its shared-memory transport (`--mca btl
/// self,vader`: no TCP between ranks), pass 1 MiB each way: rank 1 turns
/// every byte it receives and sends it back. Each rank runs in the
/// host's pid and IPC namespaces as the caller, in a user namespace of its
/// own. Without --hpc (pid namespaces of their own, /dev/shm of their
/// own) the same job fails: Open MPI tells peers apart by pid, and finds
/// their memory in /dev/shm. The program comes in a squashfs image, read
/// in place as a layer over the host's root (whose Open MPI libraries it
/// links), as a cluster ships an application.
#[test]
fn mpi_ranks_in_sandboxes_exchange_messages_over_shared_memory() {
    assert_unprivileged();
    let Some(t) = ping_image("mpicc.openmpi", "mpirun.openmpi", "Open MPI") else {
        return;
    };
    let layer = format!("--layer=squashfs:{}", t.join("app.sqfs").display());
    let job = |flags: &[&str]| {
        let mut cmd = Command::new("mpirun.openmpi");
        cmd.args(["--mca", "btl", "self,vader", "-np", "2"])
            .arg(burrow_bin())
            .arg("run")
            .arg(&layer)
            .args(flags)
            .args(["--", "sh", "-c"])
            .arg(
                "/opt/app/ping && readlink /proc/self/ns/pid /proc/self/ns/ipc /proc/self/ns/user \
                 && id -u",
            )
            .current_dir(t.path())
            .stdin(std::process::Stdio::null());
        output_within(&mut cmd, Duration::from_secs(120))
    };
    let out = job(&["--hpc"]);
    assert_eq!(out.code, 0, "{out:?}");
    let lines: Vec<&str> = out.stdout.lines().collect();
    assert_both_ranks_exchanged(&lines, &out);
    let me = nix::unistd::getuid().to_string();
    let (pid, ipc, user) = (host_ns("pid"), host_ns("ipc"), host_ns("user"));
    assert_eq!(lines.iter().filter(|l| **l == pid).count(), 2, "{out:?}");
    assert_eq!(lines.iter().filter(|l| **l == ipc).count(), 2, "{out:?}");
    assert_eq!(lines.iter().filter(|l| **l == me).count(), 2, "{out:?}");
    // Each rank in a user namespace of its own.
    let users: Vec<&&str> = lines.iter().filter(|l| l.starts_with("user:[")).collect();
    assert_eq!(users.len(), 2, "{out:?}");
    assert!(users.iter().all(|u| **u != user), "{out:?}");

    let out = job(&["--keep-id", "--net", "host"]);
    assert_ne!(out.code, 0, "{out:?}");
}

/// PING built with `cc` and packed as `/opt/app/ping` in the squashfs
/// image `app.sqfs` of a new directory; None (SKIPPED) without `cc` and
/// `run` (of `what`).
/// Both ranks of the ping program said their MiB came back turned.
fn assert_both_ranks_exchanged(lines: &[&str], out: &Output) {
    for said in [
        "rank 0 of 2: 1048576 bytes came back turned",
        "rank 1 of 2: 1048576 bytes turned",
    ] {
        assert!(lines.contains(&said), "{out:?}");
    }
}

fn ping_image(cc: &str, run: &str, what: &str) -> Option<TempDir> {
    for tool in [cc, run] {
        if Command::new(tool).arg("--version").output().is_err() {
            skipped(&format!(
                "{tool} is not installed (scripts/setup-host.sh installs {what})"
            ));
            return None;
        }
    }
    let t = TempDir::new("mpi");
    std::fs::write(t.join("ping.c"), PING).unwrap();
    std::fs::create_dir_all(t.join("app/opt/app")).unwrap();
    let built = output_within(
        Command::new(cc)
            .args(["-O2", "-o"])
            .arg(t.join("app/opt/app/ping"))
            .arg(t.join("ping.c")),
        Duration::from_secs(120),
    );
    assert_eq!(built.code, 0, "{built:?}");
    let pack = output(
        Command::new("mksquashfs")
            .arg(t.join("app"))
            .arg(t.join("app.sqfs"))
            .args(["-quiet", "-no-progress", "-noappend"]),
    );
    assert_eq!(pack.code, 0, "{pack:?}");
    Some(t)
}

/// The same exchange under MPICH 4 (its UCX transport: --hpc keeps it off
/// the peers' /proc/PID/fd and off cma, which a user namespace of the
/// rank's own puts out of reach, and off TCP between the ranks), started
/// by MPICH's Hydra. UCX's log names the transports each rank chose for
/// its peers: shared memory alone.
#[test]
fn mpich_ranks_in_sandboxes_exchange_messages_over_shared_memory() {
    assert_unprivileged();
    let Some(t) = ping_image("mpicc.mpich", "mpiexec.mpich", "MPICH") else {
        return;
    };
    let mut cmd = Command::new("mpiexec.mpich");
    cmd.args(["-n", "2"])
        .arg(burrow_bin())
        .args(["run", "--hpc"])
        .arg(format!("--layer=squashfs:{}", t.join("app.sqfs").display()))
        .args([
            "--",
            "sh",
            "-c",
            "/opt/app/ping && readlink /proc/self/ns/user",
        ])
        .current_dir(t.path())
        .env_remove("UCX_TLS")
        .env_remove("UCX_POSIX_USE_PROC_LINK")
        .env_remove("UCX_TCP_PUT_ENABLE")
        .env("UCX_LOG_LEVEL", "info")
        .stdin(std::process::Stdio::null());
    let out = output_within(&mut cmd, Duration::from_secs(120));
    assert_eq!(out.code, 0, "{out:?}");
    let lines: Vec<&str> = out.stdout.lines().collect();
    assert_both_ranks_exchanged(&lines, &out);
    // `[TIME] [HOST:PID:THREAD] ... ep_cfg[N]: tag(TRANSPORTS) rma(...)
    // am(...)`, an endpoint's configuration a line: to itself (self), and
    // to the other rank.
    let to_peer: Vec<(&str, &str)> = lines
        .iter()
        .filter_map(|l| {
            let pid = l.split_once("] [")?.1.split(':').nth(1)?.trim();
            let tag = l.split_once("ep_cfg[")?.1.split_once(" tag(")?.1;
            Some((pid, tag.split_once(')')?.0))
        })
        .filter(|(_, tag)| !tag.starts_with("self/"))
        .collect();
    let mut ranks: Vec<&str> = to_peer.iter().map(|(pid, _)| *pid).collect();
    ranks.sort_unstable();
    ranks.dedup();
    assert_eq!(
        ranks.len(),
        2,
        "each rank logs its endpoint to the other: {out:?}"
    );
    for (_, tag) in to_peer {
        assert!(
            tag.split(' ')
                .all(|t| t.starts_with("sysv/") || t.starts_with("posix/")),
            "a rank sends its peer tagged messages over {tag}: {out:?}"
        );
    }
    let users: Vec<&&str> = lines.iter().filter(|l| l.starts_with("user:[")).collect();
    assert_eq!(users.len(), 2, "{out:?}");
    assert!(users.iter().all(|u| **u != host_ns("user")), "{out:?}");
}

/// What --hpc sets, and that the command line wins over it; --pid host
/// and --ipc host alone; what is refused.
#[test]
fn hpc_shares_the_hosts_pid_and_ipc_namespaces_and_the_command_line_wins() {
    let home = std::env::var("HOME").expect("HOME");
    let me = nix::unistd::getuid().to_string();
    let shm = format!("/dev/shm/burrow-hpc-{}", unique_token());
    let script = format!(
        "id -u; readlink /proc/self/ns/pid /proc/self/ns/ipc /proc/self/ns/net; \
         test -d {home} && echo home; cat /proc/1/comm; touch {shm} && echo shm"
    );
    let out = sh(&["--hpc"], &script);
    let on_host = std::fs::remove_file(&shm).is_ok();
    assert_eq!(out.code, 0, "{out:?}");
    assert!(on_host, "{shm} made in the sandbox is the host's: {out:?}");
    let init = std::fs::read_to_string("/proc/1/comm").unwrap();
    assert_eq!(
        out.stdout,
        format!(
            "{me}\n{}\n{}\n{}\nhome\n{init}shm\n",
            host_ns("pid"),
            host_ns("ipc"),
            host_ns("net")
        ),
        "{out:?}"
    );
    // The command line's --net wins over the preset's; the rest stays.
    let out = sh(
        &["--hpc", "--net", "none"],
        "id -u; readlink /proc/self/ns/net",
    );
    assert_eq!(out.code, 0, "{out:?}");
    let lines: Vec<&str> = out.stdout.lines().collect();
    assert_eq!(lines.len(), 2, "{out:?}");
    assert_eq!(lines[0], me, "{out:?}");
    assert_ne!(lines[1], host_ns("net"), "{out:?}");
    // UCX's defaults, unless the job or the command line sets or unsets
    // the variable.
    let ucx = "echo ${UCX_TLS-unset} ${UCX_POSIX_USE_PROC_LINK-unset} \
               ${UCX_TCP_PUT_ENABLE-unset}";
    assert_eq!(sh(&["--hpc"], ucx).ok(), "^cma n n\n");
    assert_eq!(
        sh(&["--hpc", "--setenv", "UCX_TLS", "rc,sm"], ucx).ok(),
        "rc,sm n n\n"
    );
    assert_eq!(
        sh(&["--hpc", "--unsetenv", "UCX_TLS"], ucx).ok(),
        "unset n n\n"
    );
    // Alone, and not with what they replace.
    let out = sh(
        &["--pid", "host"],
        "readlink /proc/self/ns/pid /proc/self/ns/ipc",
    );
    assert_eq!(out.code, 0, "{out:?}");
    assert_eq!(
        out.stdout.lines().collect::<Vec<_>>()[0],
        host_ns("pid"),
        "{out:?}"
    );
    assert_ne!(out.stdout.lines().collect::<Vec<_>>()[1], host_ns("ipc"));
    let out = sh(&["--ipc", "host", "--sysctl", "kernel.msgmax=4096"], "true");
    assert_ne!(out.code, 0, "{out:?}");
    assert!(out.stderr.contains("--sysctl kernel.msgmax"), "{out:?}");
    let own = format!("/proc/{}/ns/pid", std::process::id());
    let out = sh(&["--pid", "host", "--pidns", &own], "true");
    assert_ne!(out.code, 0, "{out:?}");
    assert!(out.stderr.contains("--pidns"), "{out:?}");
}

/// One rank sends 1 MiB to the other, which turns each byte and sends it
/// back.
const PING: &str = r#"
#include <mpi.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
int main(int argc, char **argv) {
    int rank, size;
    const int n = 1 << 20;
    char *buf = malloc(n);
    MPI_Init(&argc, &argv);
    MPI_Comm_rank(MPI_COMM_WORLD, &rank);
    MPI_Comm_size(MPI_COMM_WORLD, &size);
    if (rank == 0) {
        memset(buf, 'x', n);
        MPI_Send(buf, n, MPI_CHAR, 1, 7, MPI_COMM_WORLD);
        MPI_Recv(buf, n, MPI_CHAR, 1, 8, MPI_COMM_WORLD, MPI_STATUS_IGNORE);
        int turned = 0;
        for (int i = 0; i < n; i++) turned += buf[i] == 'y';
        printf("rank 0 of %d: %d bytes came back turned\n", size, turned);
    } else if (rank == 1) {
        MPI_Recv(buf, n, MPI_CHAR, 0, 7, MPI_COMM_WORLD, MPI_STATUS_IGNORE);
        int turned = 0;
        for (int i = 0; i < n; i++) turned += buf[i] == 'x';
        memset(buf, 'y', n);
        MPI_Send(buf, n, MPI_CHAR, 0, 8, MPI_COMM_WORLD);
        printf("rank 1 of %d: %d bytes turned\n", size, turned);
    }
    fflush(stdout);
    MPI_Finalize();
    return 0;
}
"#;

/// With the host's pid namespace the command sees burrow's own processes.
/// Even with every capability, it cannot reach through their /proc files
/// the host's root they hold: the launcher is in a user namespace above
/// the sandbox's, and its helpers (the root's FUSE server), which join the
/// sandbox's, are not dumpable. Its own /proc files it does reach.
#[test]
fn with_the_hosts_pid_namespace_burrows_processes_stay_out_of_reach() {
    let script = r#"
launcher=$(cut -d' ' -f4 /proc/$PPID/stat)
for p in /proc/[0-9]*; do
  [ "$(cut -d' ' -f4 $p/stat 2>/dev/null)" = "$launcher" ] || continue
  [ "${p#/proc/}" = "$PPID" ] && continue
  echo helper
  ls $p/root/ >/dev/null 2>&1 && echo helper-root-reached
  ls $p/fd/ >/dev/null 2>&1 && echo helper-fds-reached
done
ls /proc/$launcher/root/ >/dev/null 2>&1 && echo launcher-reached
ls /proc/$PPID/root/ >/dev/null 2>&1 && echo init-reached
ls /proc/self/root/ >/dev/null 2>&1 && echo self-reached
true"#;
    let out = sh(&["--pid", "host", "--cap-add", "ALL"], script);
    assert_eq!(out.code, 0, "{out:?}");
    let lines: Vec<&str> = out.stdout.lines().collect();
    assert!(
        lines.contains(&"helper"),
        "the FUSE server is seen: {out:?}"
    );
    assert!(
        lines.iter().all(|l| *l == "helper" || *l == "self-reached"),
        "{out:?}"
    );
    assert!(lines.contains(&"self-reached"), "{out:?}");
}

/// --device binds a host device node at its path under /dev, with its
/// kind, numbers and mode (the host decides who may open it), also in a
/// directory of /dev the sandbox lacks; what is not a device node under
/// /dev (or is a link to one) is refused by name.
#[test]
fn devices_are_bound_at_their_path_as_the_host_has_them() {
    let nodes = ["/dev/fuse", "/dev/net/tun"];
    let stat = |p: &str| format!("{p} {}", stat_of(p));
    let out = sh(
        &["--device", nodes[0], "--device", nodes[1]],
        "for d in /dev/fuse /dev/net/tun; do echo $d $(stat -c '%F %t:%T %a' $d); done; \
         exec 3<>/dev/fuse && echo opened",
    );
    assert_eq!(out.code, 0, "{out:?}");
    assert_eq!(
        out.stdout,
        format!("{}\n{}\nopened\n", stat(nodes[0]), stat(nodes[1])),
        "{out:?}"
    );
    for (path, why) in [
        ("/dev/shm", "not a device node"),
        ("/etc/passwd", "not under /dev"),
        ("/dev/no-such-node", "No such file or directory"),
        ("/dev/stdin", "not a device node"),
    ] {
        let out = sh(&["--device", path], "true");
        assert_eq!(out.code, 125, "{path}: {out:?}");
        assert_eq!(
            out.stderr,
            format!("burrow: --device {path}: {why}\n"),
            "{out:?}"
        );
    }
}

fn stat_of(path: &str) -> String {
    let out = std::process::Command::new("stat")
        .args(["-c", "%F %t:%T %a", path])
        .output()
        .unwrap();
    String::from_utf8(out.stdout).unwrap().trim().to_string()
}

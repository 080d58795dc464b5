//! burrow-runtime's `exec`: another process in a running container, as
//! engines start one (conmon and containerd's shim with `--process`,
//! people with a command line), run as the unprivileged account.

use burrow_tests::bundle::*;
use burrow_tests::*;
use std::path::Path;
use std::process::Command;
use std::time::Duration;

/// A running container of a bundle in `dir` whose command notes its own
/// capabilities and seccomp mode in /data/main, then sleeps.
fn running(dir: &Path, root: &Path, id: &str, edit: impl FnOnce(&mut serde_json::Value)) {
    std::fs::create_dir_all(dir.join("data")).unwrap();
    bundle(dir, |c| {
        c["process"]["args"] = serde_json::json!([
            "sh",
            "-c",
            "grep -E '^(CapEff|Seccomp|NoNewPrivs):' /proc/self/status > /data/main.new; \
             mv /data/main.new /data/main; exec sleep 1000"
        ]);
        bind_data(c);
        edit(c);
    });
    std::fs::write(dir.join("rootfs/etc/only-here"), "the container's root\n").unwrap();
    let out = rt(root, &["create", "--bundle", dir.to_str().unwrap(), id]);
    assert_eq!(out.code, 0, "{out:?}");
    assert_eq!(rt(root, &["start", id]).code, 0);
    assert!(
        eventually(Duration::from_secs(30), || dir.join("data/main").exists()),
        "the container's command did not run"
    );
}

/// The exec'd process is in the container: its root, hostname, pid
/// namespace (pid 1 is the container's), user; confined as the
/// container's command is (capabilities, seccomp, no_new_privs); with the
/// working directory and environment asked for; its status is exec's.
#[test]
fn exec_runs_in_the_containers_namespaces_confined_as_its_command() {
    let t = TempDir::new("exec-ns");
    let (b, root, id) = (t.join("b"), t.join("state"), unique_token());
    running(&b, &root, &id, |_| {});
    let out = rt(
        &root,
        &[
            "exec",
            "--cwd",
            "/tmp",
            "--env",
            "X=y",
            &id,
            "sh",
            "-c",
            "cat /etc/only-here; hostname; cat /proc/1/comm; ps -o args | grep -c '^[s]leep 1000'; \
             id -u; echo $X $(pwd); \
             grep -E '^(CapEff|Seccomp|NoNewPrivs):' /proc/self/status > /data/exec; exit 3",
        ],
    );
    assert_eq!(
        (out.code, out.stdout.as_str()),
        (
            3,
            "the container's root\nrunc\nburrow-runtime\n1\n0\ny /tmp\n"
        ),
        "{out:?}"
    );
    let main = std::fs::read_to_string(b.join("data/main")).unwrap();
    assert!(main.contains("Seccomp:\t2"), "{main}");
    assert_eq!(
        std::fs::read_to_string(b.join("data/exec")).unwrap(),
        main,
        "the exec'd process is not confined as the container's command"
    );
    // Nothing of the runtime's (its state, its pipes) reaches the process.
    let out = rt(&root, &["exec", &id, "ls", "/proc/self/fd"]);
    assert_eq!(
        out.stdout.split_whitespace().collect::<Vec<_>>(),
        ["0", "1", "2", "3"],
        "{out:?}"
    );
    assert_eq!(rt(&root, &["delete", "--force", &id]).code, 0);
}

/// -d: exec returns once the process runs, its pid in --pid-file; it is
/// one of the container's processes for ps and kill --all, and delete
/// ends it with the container.
#[test]
fn a_detached_exec_is_one_of_the_containers_processes() {
    let t = TempDir::new("exec-detach");
    let (b, root, id) = (t.join("b"), t.join("state"), unique_token());
    running(&b, &root, &id, |_| {});
    let pid_file = t.join("exec.pid");
    let out = rt(
        &root,
        &[
            "exec",
            "-d",
            "--pid-file",
            pid_file.to_str().unwrap(),
            &id,
            "sleep",
            "999",
        ],
    );
    assert_eq!(out.code, 0, "{out:?}");
    let pid: i32 = std::fs::read_to_string(&pid_file).unwrap().parse().unwrap();
    let cmdline = std::fs::read_to_string(format!("/proc/{pid}/cmdline")).unwrap();
    assert_eq!(cmdline, "sleep\x00999\x00");
    let ps = rt(&root, &["ps", "--format", "json", &id]);
    let pids: Vec<i32> = serde_json::from_str(&ps.stdout).unwrap();
    assert!(pids.contains(&pid), "{ps:?} lacks {pid}");
    assert_eq!(rt(&root, &["kill", "--all", &id, "KILL"]).code, 0);
    assert!(
        eventually(Duration::from_secs(10), || !Path::new(&format!(
            "/proc/{pid}/cmdline"
        ))
        .exists()
            || std::fs::read(format!("/proc/{pid}/cmdline"))
                .unwrap_or_default()
                .is_empty()),
        "kill --all left the exec'd process running"
    );
    assert!(eventually(Duration::from_secs(10), || status_of(
        &root, &id
    ) == "stopped"));
    assert_eq!(rt(&root, &["delete", &id]).code, 0);
}

/// An engine's side of exec with a terminal, as conmon does it: the
/// process's description in a file (`--process`, runtime-spec's process
/// object), a console socket that receives the pty's master.
const EXEC_TTY: &str = r#"
import json, subprocess, sys
rt, root, cid, path, spec = sys.argv[1:]
json.dump({'terminal': True, 'consoleSize': {'height': 21, 'width': 77},
           'user': {'uid': 0, 'gid': 0}, 'cwd': '/etc', 'env': ['PATH=/bin', 'Z=z'],
           'args': ['sh', '-c', 'tty; stty size; pwd; echo $Z; read x; echo "got $x"; exit 6']},
          open(spec, 'w'))
_, master, ex = receive_master(path, lambda: subprocess.Popen(
    [rt, '--root', root, 'exec', '--process', spec, '--tty', '--console-socket', path, cid],
    stdin=subprocess.DEVNULL))
# (Typed once asked for: the terminal's echo comes next.)
print(read_terminal(master, (b'z\r\n', b'typed\n')), end='')
print('status', ex.wait())
"#;

#[test]
fn exec_with_a_process_file_gets_a_terminal_of_its_own() {
    let t = TempDir::new("exec-tty");
    let (b, root, id) = (t.join("b"), t.join("state"), unique_token());
    running(&b, &root, &id, |_| {});
    let out = output_within(
        Command::new("python3")
            .args(["-c", &format!("{PY_CONSOLE}{EXEC_TTY}")])
            .args([
                runtime_bin().to_str().unwrap(),
                root.to_str().unwrap(),
                &id,
                t.join("console.sock").to_str().unwrap(),
                t.join("process.json").to_str().unwrap(),
            ]),
        Duration::from_secs(60),
    );
    assert_eq!(
        out.stdout, "/dev/pts/0\n21 77\n/etc\nz\ntyped\ngot typed\nstatus 6\n",
        "{out:?}"
    );
    assert_eq!(rt(&root, &["delete", "--force", &id]).code, 0);
}

/// What exec refuses, in one line: a container not running (created,
/// stopped, unknown), a command and --process both or neither, labels
/// burrow does not apply; and a working directory through a descriptor
/// of the joining process (/proc/self/fd/N, directly or by a symlink of
/// the container's), which would lead out of the root.
#[test]
fn exec_refuses_what_it_cannot_do_and_never_leaves_the_root() {
    let t = TempDir::new("exec-errors");
    let (b, root, id) = (t.join("b"), t.join("state"), unique_token());
    running(&b, &root, &id, |_| {});
    let one_line = |out: &Output, what: &str| {
        assert_eq!(out.code, 1, "{out:?}");
        assert!(out.stderr.contains(what), "{what}: {out:?}");
        assert_eq!(out.stderr.lines().count(), 1, "{out:?}");
    };
    one_line(&rt(&root, &["exec", "nope", "true"]), "does not exist");
    one_line(&rt(&root, &["exec", &id]), "no command");
    let spec = t.join("p.json");
    std::fs::write(
        &spec,
        r#"{"cwd": "/", "user": {"uid": 0, "gid": 0}, "args": ["true"]}"#,
    )
    .unwrap();
    one_line(
        &rt(
            &root,
            &["exec", "--process", spec.to_str().unwrap(), &id, "true"],
        ),
        "one or the other",
    );
    assert_eq!(
        rt(&root, &["exec", "--process", spec.to_str().unwrap(), &id]).code,
        0
    );
    one_line(
        &rt(&root, &["exec", "--process-label", "x", &id, "true"]),
        "SELinux",
    );
    std::os::unix::fs::symlink("/proc/self/fd/3", b.join("rootfs/tmp/link")).unwrap();
    for n in 3..=12 {
        for cwd in [format!("/proc/self/fd/{n}"), "/tmp/link".to_string()] {
            let out = rt(
                &root,
                &["exec", "--cwd", &cwd, &id, "sh", "-c", "pwd; ls .."],
            );
            assert_ne!(out.code, 0, "--cwd {cwd}: {out:?}");
            assert!(out.stdout.is_empty(), "--cwd {cwd}: {out:?}");
            assert!(out.stderr.contains("--chdir"), "{out:?}");
        }
    }
    let held = unique_token();
    let out = rt(&root, &["create", "--bundle", b.to_str().unwrap(), &held]);
    assert_eq!(out.code, 0, "{out:?}");
    one_line(&rt(&root, &["exec", &held, "true"]), "it is created");
    assert_eq!(rt(&root, &["delete", "--force", &held]).code, 0);
    assert_eq!(rt(&root, &["kill", &id, "KILL"]).code, 0);
    assert!(eventually(Duration::from_secs(10), || status_of(
        &root, &id
    ) == "stopped"));
    one_line(&rt(&root, &["exec", &id, "true"]), "it is stopped");
    assert_eq!(rt(&root, &["delete", &id]).code, 0);
}

/// The attack exec invites (runc's CVE-2019-5736): the container makes a
/// program the engine will exec (here /bin/x) a script whose interpreter
/// is `/proc/self/exe`, which while the joining process execs it is
/// burrow-runtime's host binary, here the user's own file (as `cargo
/// install` leaves it). Run inside, the container could open it through
/// /proc/PID/exe and replace it. The exec fails with EACCES instead (the
/// process may execute only files within the root), and burrow-runtime
/// never runs in the container.
#[test]
fn exec_never_runs_the_runtimes_binary_inside() {
    let t = TempDir::new("exec-self-exe");
    let (b, root, id) = (t.join("b"), t.join("state"), unique_token());
    running(&b, &root, &id, |_| {});
    let own = t.join("burrow-runtime");
    std::fs::copy(runtime_bin(), &own).unwrap();
    let script = b.join("rootfs/bin/x");
    std::fs::write(&script, "#!/proc/self/exe\n").unwrap();
    std::fs::set_permissions(&script, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
    let out = output(
        Command::new(&own)
            .arg("--root")
            .arg(&root)
            .args(["exec", &id, "/bin/x"])
            .stdin(std::process::Stdio::null()),
    );
    assert_ne!(out.code, 0, "{out:?}");
    assert!(out.stderr.contains("Permission denied"), "{out:?}");
    assert!(
        !out.stderr.to_lowercase().contains("usage"),
        "burrow-runtime ran inside: {out:?}"
    );
    assert_eq!(rt(&root, &["delete", "--force", &id]).code, 0);
}

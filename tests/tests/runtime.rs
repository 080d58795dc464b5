//! burrow-runtime, the OCI front end: bundles written by runc's own `spec
//! --rootless` (the real client of the format), run as the unprivileged
//! account; what burrow cannot honour is refused by name.

use burrow_tests::bundle::*;
use burrow_tests::*;
use std::path::Path;
use std::process::{Command, Stdio};

fn run(dir: &Path, id: &str) -> Output {
    assert_unprivileged();
    output(
        Command::new(runtime_bin())
            .args([
                "--log",
                dir.join("log.json").to_str().unwrap(),
                "--log-format",
                "json",
                "--root",
                dir.join("state").to_str().unwrap(),
            ])
            .args(["run", "--bundle", dir.to_str().unwrap(), id])
            .stdin(Stdio::null()),
    )
}

/// runc's rootless spec, as it comes (but for the terminal and the
/// command): its hostname, the caller as root, its three capabilities and
/// open-file limit, a read-only root, /proc/sys read-only and /proc/keys
/// masked, the host's network namespace (it asks for none), a umask, /dev/shm
/// noexec and of its size, its filesystems named as the spec names them; environment values that look like flags stay
/// values; a relative bind source is the bundle's; the exit status is the
/// command's.
#[test]
fn a_bundle_of_runc_spec_runs_as_its_config_says() {
    let t = TempDir::new("runtime-run");
    std::fs::create_dir(t.join("data")).unwrap();
    bundle(t.path(), |c| {
        c["process"]["args"] = serde_json::json!([
            "sh",
            "-c",
            "echo hello; hostname; id -u; test -c /proc/keys && echo keys-masked; \
             grep -c ' /proc/sys ro,' /proc/self/mountinfo; touch /x 2>/dev/null || echo root-ro; \
             ulimit -n; grep CapEff /proc/self/status; readlink /proc/self/ns/net; \
             echo from-the-bundle > /data/out; echo \"$A $B\"; \
             grep ' /dev/shm ' /proc/self/mountinfo | grep -q 'noexec.*size=65536k' && echo shm-as-asked; \
             for m in /proc /dev /dev/pts /dev/shm /dev/mqueue; do \
               grep \" $m \" /proc/self/mountinfo | grep -o ' - [^ ]* [^ ]*'; done; \
             umask; \
             exit 3"
        ]);
        c["process"]["user"]["umask"] = 0o027.into();
        // Values that look like flags stay values.
        c["process"]["env"]
            .as_array_mut()
            .unwrap()
            .extend(["A=-x".into(), "B=--".into()]);
        // A bind mount whose source is relative: the bundle's.
        bind_data(c);
    });
    let out = run(t.path(), "c1");
    let host_net = std::fs::read_link("/proc/self/ns/net").unwrap();
    assert_eq!(out.code, 3, "{out:?}");
    assert_eq!(
        out.stdout,
        format!(
            "hello\nrunc\n0\nkeys-masked\n1\nroot-ro\n1024\nCapEff:\t0000000020000420\n{}\n\
             -x --\nshm-as-asked\n - proc proc\n - tmpfs tmpfs\n - devpts devpts\n - tmpfs shm\n \
             - mqueue mqueue\n0027\n",
            host_net.display()
        ),
        "{out:?}"
    );
    assert_eq!(
        std::fs::read_to_string(t.join("data/out")).unwrap(),
        "from-the-bundle\n"
    );
}

/// Each field burrow cannot honour is an error naming it (one line, also
/// in --log, exit status 1), before anything runs.
#[test]
fn fields_burrow_cannot_honour_are_refused_by_name() {
    type Edit = fn(&mut serde_json::Value);
    let cases: [(&str, Edit); 9] = [
        ("linux.namespaces", |c| {
            for ns in c["linux"]["namespaces"].as_array_mut().unwrap() {
                if ns["type"] == "mount" {
                    ns["path"] = "/proc/self/ns/mnt".into();
                }
            }
        }),
        ("linux.sysctl", |c| {
            c["linux"]["sysctl"] = serde_json::json!({ "net.ipv4.ip_forward": "1" })
        }),
        ("process.oomScoreAdj", |c| {
            c["process"]["oomScoreAdj"] = 5000.into()
        }),
        ("process.terminal", |c| {
            c["process"]["terminal"] = true.into()
        }),
        ("linux.uidMappings", |c| {
            c["linux"]["uidMappings"] = serde_json::json!([])
        }),
        ("linux.seccomp.listenerPath", |c| {
            c["linux"]["seccomp"] = serde_json::json!({
                "defaultAction": "SCMP_ACT_ALLOW", "listenerPath": "/run/x.sock"
            })
        }),
        ("mounts[2] (/dev/pts)", |c| {
            c["mounts"][2]["options"]
                .as_array_mut()
                .unwrap()
                .push("gid=7".into())
        }),
        ("mounts[7] (/data)", |c| {
            c["mounts"].as_array_mut().unwrap().push(serde_json::json!(
                { "destination": "/data", "type": "bind", "source": "/tmp", "options": ["rbind", "nosymfollow"] }
            ))
        }),
        ("mounts[", |c| {
            c["mounts"].as_array_mut().unwrap().push(serde_json::json!(
                { "destination": "/mnt", "type": "nfs", "source": "host:/x" }
            ))
        }),
    ];
    for (field, edit) in cases {
        let t = TempDir::new("runtime-refused");
        bundle(t.path(), |c| {
            c["process"]["args"] = serde_json::json!(["touch", "/tmp/ran"]);
            edit(c);
        });
        let out = run(t.path(), "c2");
        assert_eq!(out.code, 1, "{field}: {out:?}");
        let lines: Vec<&str> = out.stderr.lines().collect();
        assert_eq!(lines.len(), 1, "{field}: {out:?}");
        assert!(
            lines[0].starts_with("burrow-runtime: config.json: ") && lines[0].contains(field),
            "{field}: {out:?}"
        );
        let log = std::fs::read_to_string(t.join("log.json")).unwrap();
        let entry: serde_json::Value = serde_json::from_str(log.trim()).unwrap();
        assert_eq!(entry["level"], "error");
        assert!(entry["msg"].as_str().unwrap().contains(field), "{log}");
    }
}

#[test]
fn a_bad_container_id_is_refused() {
    let t = TempDir::new("runtime-id");
    bundle(t.path(), |_| {});
    let out = run(t.path(), "../x");
    assert_eq!(out.code, 1, "{out:?}");
    assert!(out.stderr.contains("invalid container id"), "{out:?}");
}

/// The engine's side of create and start, as conmon does it: a subreaper
/// runs `create`, reads `--pid-file`, runs `start` and reaps the
/// container's process, whose status is the command's. (Python, so that
/// the subreaper is a process of its own.)
const MONITOR: &str = r#"
import ctypes, os, subprocess, sys
rt, root, bundle, cid, data = sys.argv[1:]
assert ctypes.CDLL(None).prctl(36, 1, 0, 0, 0) == 0  # PR_SET_CHILD_SUBREAPER
def runtime(*args):
    p = subprocess.run([rt, '--root', root, *args], stdin=subprocess.DEVNULL)
    assert p.returncode == 0, (args, p.returncode)
pid_file = os.path.join(data, 'pid')
runtime('create', '--bundle', bundle, '--pid-file', pid_file, cid)
pid = int(open(pid_file).read())
print('held', os.path.exists(os.path.join(data, 'ran')), flush=True)
runtime('start', cid)
_, status = os.waitpid(pid, 0)
print('exit', os.waitstatus_to_exitcode(status), flush=True)
"#;

/// create leaves the command waiting before its exec; start lets it run;
/// the container's process is the monitor's to reap, with the command's
/// status; the command holds no descriptor of the runtime's state.
#[test]
fn create_holds_the_command_until_start_and_the_monitor_reaps_its_status() {
    let t = TempDir::new("runtime-create");
    let b = t.join("b");
    std::fs::create_dir_all(b.join("data")).unwrap();
    bundle(&b, |c| {
        c["process"]["args"] = serde_json::json!([
            "sh",
            "-c",
            "echo ran > /data/ran; for f in /proc/self/fd/*; do readlink $f; done > /data/fds; exit 7"
        ]);
        bind_data(c);
    });
    let root = t.join("state");
    let id = unique_token();
    let out = output(Command::new("python3").args(["-c", MONITOR]).args([
        runtime_bin().to_str().unwrap(),
        root.to_str().unwrap(),
        b.to_str().unwrap(),
        &id,
        b.join("data").to_str().unwrap(),
    ]));
    assert_eq!(out.stdout, "held False\nexit 7\n", "{out:?}");
    assert_eq!(
        std::fs::read_to_string(b.join("data/ran")).unwrap(),
        "ran\n"
    );
    let fds = std::fs::read_to_string(b.join("data/fds")).unwrap();
    assert!(
        !fds.contains(root.to_str().unwrap()),
        "the command holds the runtime's state: {fds}"
    );
    assert_eq!(status_of(&root, &id), "stopped");
    assert_eq!(rt(&root, &["delete", &id]).code, 0);
    assert!(rt(&root, &["list", "-q"]).stdout.is_empty());
}

/// A created container is listed, its processes shown, and deleting it
/// ends them all (pid 1, the command and burrow's helpers) before delete
/// returns; started, it runs until killed.
#[test]
fn state_list_ps_kill_and_delete_follow_the_container() {
    let t = TempDir::new("runtime-life");
    let b = t.join("b");
    bundle(&b, |c| {
        c["process"]["args"] = serde_json::json!(["sh", "-c", "exec sleep 1000"]);
    });
    let root = t.join("state");
    let (first, second) = (unique_token(), unique_token());
    for id in [&first, &second] {
        let out = rt(&root, &["create", "--bundle", b.to_str().unwrap(), id]);
        assert_eq!(out.code, 0, "{out:?}");
        assert_eq!(status_of(&root, id), "created");
        // pid 1 of the sandbox and its command (held), and the root
        // filesystem's server.
        assert!(
            processes_with_arg(id).len() >= 3,
            "{:?}",
            processes_with_arg(id)
        );
    }
    let list = rt(&root, &["list"]);
    assert_eq!(list.stdout.lines().count(), 3, "{list:?}");
    assert!(
        list.stdout.lines().nth(1).unwrap().contains(" created "),
        "{list:?}"
    );
    let mut ids = [first.clone(), second.clone()];
    ids.sort();
    assert_eq!(
        rt(&root, &["list", "-q"]).stdout,
        format!("{}\n", ids.join("\n"))
    );

    // The first is deleted as it waits: nothing of it is left running.
    assert_eq!(rt(&root, &["delete", &first]).code, 0);
    assert_eq!(processes_with_arg(&first), Vec::<i32>::new());

    // The second runs.
    let state: serde_json::Value =
        serde_json::from_str(&rt(&root, &["state", &second]).stdout).unwrap();
    let pid = state["pid"].as_i64().unwrap();
    assert_eq!(rt(&root, &["start", &second]).code, 0);
    assert_eq!(status_of(&root, &second), "running");
    let ps: Vec<i64> =
        serde_json::from_str(&rt(&root, &["ps", "--format", "json", &second]).stdout).unwrap();
    assert_eq!(ps.len(), 2, "pid 1 and sleep: {ps:?}");
    assert_eq!(ps[0], pid);
    let table = rt(&root, &["ps", &second]).stdout;
    assert!(table.lines().any(|l| l.ends_with("sleep 1000")), "{table}");

    let refused = rt(&root, &["delete", &second]);
    assert_eq!(refused.code, 1);
    assert!(refused.stderr.contains("is running"), "{refused:?}");
    assert_eq!(rt(&root, &["kill", &second, "KILL"]).code, 0);
    assert!(eventually(
        std::time::Duration::from_secs(10),
        || status_of(&root, &second) == "stopped"
    ));
    let again = rt(&root, &["kill", &second]);
    assert_eq!(again.code, 1);
    assert!(again.stderr.contains("stopped"), "{again:?}");
    assert_eq!(rt(&root, &["delete", &second]).code, 0);
    assert_eq!(processes_with_arg(&second), Vec::<i32>::new());
    assert!(rt(&root, &["list", "-q"]).stdout.is_empty());
}

/// What engines rely on from errors: an unknown ID "does not exist"; an
/// ID is created once; a container starts once; a bundle that cannot be
/// run leaves no state.
#[test]
fn lifecycle_errors_are_one_line_and_leave_no_state() {
    let t = TempDir::new("runtime-errors");
    let b = t.join("b");
    bundle(&b, |c| {
        c["process"]["args"] = serde_json::json!(["true"]);
    });
    let root = t.join("state");
    for args in [
        vec!["state", "nope"],
        vec!["start", "nope"],
        vec!["kill", "nope"],
        vec!["delete", "nope"],
        vec!["ps", "nope"],
    ] {
        let out = rt(&root, &args);
        assert_eq!(out.code, 1, "{args:?}: {out:?}");
        assert_eq!(
            out.stderr, "burrow-runtime: container \"nope\" does not exist\n",
            "{args:?}"
        );
    }
    assert_eq!(rt(&root, &["delete", "--force", "nope"]).code, 0);

    let id = unique_token();
    let bundle_arg = b.to_str().unwrap();
    assert_eq!(rt(&root, &["create", "--bundle", bundle_arg, &id]).code, 0);
    let twice = rt(&root, &["create", "--bundle", bundle_arg, &id]);
    assert_eq!(twice.code, 1);
    assert!(twice.stderr.contains("already exists"), "{twice:?}");
    assert_eq!(rt(&root, &["start", &id]).code, 0);
    let restart = rt(&root, &["start", &id]);
    assert_eq!(restart.code, 1);
    assert!(restart.stderr.contains("cannot be started"), "{restart:?}");
    assert_eq!(rt(&root, &["delete", "--force", &id]).code, 0);

    // Refused before anything is made.
    let bad = t.join("bad");
    bundle(&bad, |c| {
        c["linux"]["sysctl"] = serde_json::json!({ "kernel.x": "1" })
    });
    let out = rt(&root, &["create", "--bundle", bad.to_str().unwrap(), "bad"]);
    assert_eq!(out.code, 1);
    assert!(out.stderr.contains("linux.sysctl"), "{out:?}");
    assert!(rt(&root, &["list", "-q"]).stdout.is_empty());
    let unknown = rt(&root, &["kill", &id, "NOSUCH"]);
    assert!(unknown.stderr.contains("unknown signal"), "{unknown:?}");

    // A command that is not there is told by create, as runc tells it.
    let missing = t.join("missing");
    bundle(&missing, |c| {
        c["process"]["args"] = serde_json::json!(["no-such-command"])
    });
    let out = rt(
        &root,
        &["create", "--bundle", missing.to_str().unwrap(), "missing"],
    );
    assert_eq!(out.code, 1, "{out:?}");
    assert_eq!(
        out.stderr,
        "burrow-runtime: cannot run 'no-such-command' in the sandbox: No such file or directory\n"
    );
    assert!(rt(&root, &["list", "-q"]).stdout.is_empty());
}

/// features.json as runtime-spec gives it, parsed by oci-spec.
#[test]
fn features_say_what_is_recognised() {
    let t = TempDir::new("runtime-features");
    let out = rt(&t.join("state"), &["features"]);
    assert_eq!(out.code, 0, "{out:?}");
    let f: serde_json::Value = serde_json::from_str(&out.stdout).unwrap();
    assert_eq!(f["ociVersionMin"], "1.0.0");
    let ns = f["linux"]["namespaces"].as_array().unwrap();
    assert!(
        ns.contains(&"user".into()) && ns.contains(&"network".into()),
        "{f}"
    );
    assert_eq!(f["linux"]["seccomp"]["enabled"], true);
    assert!(f["linux"]["capabilities"]
        .as_array()
        .unwrap()
        .contains(&"CAP_SYS_ADMIN".into()));
}

/// The engine's side of a terminal, as conmon does it: a console socket
/// that receives the pty's master from `create`; through it the command's
/// output is read and its input written.
const CONSOLE: &str = r#"
import subprocess, sys
rt, root, bundle, cid, path = sys.argv[1:]
name, master, create = receive_master(path, lambda: subprocess.Popen(
    [rt, '--root', root, 'create', '--bundle', bundle, '--console-socket', path, cid],
    stdin=subprocess.DEVNULL))
assert create.wait() == 0
print('sent', name, flush=True)
os.write(master, b'typed\n')
assert subprocess.run([rt, '--root', root, 'start', cid]).returncode == 0
print(read_terminal(master), end='')
"#;

/// process.terminal with `--console-socket`: the master of a pty of the
/// container's own devpts is sent as conmon expects it (SCM_RIGHTS), of
/// the spec's size; the command's streams and controlling terminal are
/// its other end.
#[test]
fn a_terminal_goes_to_the_console_socket() {
    let t = TempDir::new("runtime-tty");
    let b = t.join("b");
    bundle(&b, |c| {
        c["process"]["terminal"] = true.into();
        c["process"]["consoleSize"] = serde_json::json!({ "height": 33, "width": 101 });
        c["process"]["args"] = serde_json::json!([
            "sh",
            "-c",
            "tty; stty size; read x; echo \"got $x\"; test -t 2 && echo err-too"
        ]);
    });
    let root = t.join("state");
    let id = unique_token();
    let out = output(
        Command::new("python3")
            .args(["-c", &format!("{PY_CONSOLE}{CONSOLE}")])
            .args([
                runtime_bin().to_str().unwrap(),
                root.to_str().unwrap(),
                b.to_str().unwrap(),
                &id,
                t.join("console.sock").to_str().unwrap(),
            ]),
    );
    assert_eq!(
        out.stdout, "sent /dev/pts/0\ntyped\n/dev/pts/0\n33 101\ngot typed\nerr-too\n",
        "{out:?}"
    );
    assert!(eventually(
        std::time::Duration::from_secs(10),
        || status_of(&root, &id) == "stopped"
    ));
    assert_eq!(rt(&root, &["delete", &id]).code, 0);

    // A terminal needs a console socket, and a console socket a terminal.
    let out = rt(&root, &["create", "--bundle", b.to_str().unwrap(), "x"]);
    assert_eq!(out.code, 1);
    assert!(out.stderr.contains("process.terminal"), "{out:?}");
    let plain = t.join("plain");
    bundle(&plain, |_| {});
    let sock = t.join("unused.sock");
    let _listener = std::os::unix::net::UnixListener::bind(&sock).unwrap();
    let out = rt(
        &root,
        &[
            "create",
            "--bundle",
            plain.to_str().unwrap(),
            "--console-socket",
            sock.to_str().unwrap(),
            "y",
        ],
    );
    assert_eq!(out.code, 1);
    assert!(out.stderr.contains("--console-socket"), "{out:?}");
    assert!(rt(&root, &["list", "-q"]).stdout.is_empty());
}

/// root.readonly false: the container writes into the bundle's root
/// itself (as under runc); mount points missing from it are made there;
/// /tmp is the root's own.
#[test]
fn a_writable_root_is_the_bundles_own() {
    let t = TempDir::new("runtime-rw");
    std::fs::create_dir(t.join("data")).unwrap();
    std::fs::write(t.join("data/in"), "bound\n").unwrap();
    bundle(t.path(), |c| {
        c["root"]["readonly"] = false.into();
        c["process"]["args"] = serde_json::json!([
            "sh",
            "-c",
            "echo x > /written; echo t > /tmp/t; cat /made/here/in"
        ]);
        c["mounts"].as_array_mut().unwrap().push(serde_json::json!(
            { "destination": "/made/here", "type": "bind", "source": "data", "options": ["bind"] }
        ));
    });
    let out = run(t.path(), "rw");
    assert_eq!(out.code, 0, "{out:?}");
    assert_eq!(out.stdout, "bound\n");
    assert_eq!(
        std::fs::read_to_string(t.join("rootfs/written")).unwrap(),
        "x\n"
    );
    assert_eq!(
        std::fs::read_to_string(t.join("rootfs/tmp/t")).unwrap(),
        "t\n"
    );
    assert!(t.join("rootfs/made/here").is_dir());
}

/// linux.seccomp: the spec's filter, compiled with libseccomp as burrow's
/// own profiles are, is the command's.
#[test]
fn the_specs_seccomp_filter_is_applied() {
    let t = TempDir::new("runtime-seccomp");
    bundle(t.path(), |c| {
        c["linux"]["seccomp"] = serde_json::json!({
            "defaultAction": "SCMP_ACT_ALLOW",
            "architectures": ["SCMP_ARCH_X86_64", "SCMP_ARCH_X86", "SCMP_ARCH_X32"],
            "syscalls": [{ "names": ["mkdir", "mkdirat"], "action": "SCMP_ACT_ERRNO", "errnoRet": 1 }]
        });
        c["process"]["args"] = serde_json::json!([
            "sh",
            "-c",
            "mkdir /tmp/d 2>&1; grep Seccomp: /proc/self/status; touch /tmp/f && echo touched"
        ]);
    });
    let out = run(t.path(), "sc");
    assert_eq!(
        out.stdout,
        "mkdir: can't create directory '/tmp/d': Operation not permitted\nSeccomp:\t2\ntouched\n",
        "{out:?}"
    );
}

/// uidMappings and gidMappings other than the caller alone, range by
/// range (through newuidmap, within the account's subordinate ids);
/// additionalGids; a bind asked noexec, and a plain bind of a directory
/// with nothing mounted below it.
#[test]
fn id_mappings_groups_and_bind_options_follow_the_spec() {
    if !has_subordinate_ids() {
        skipped("this account has no subordinate ids (/etc/subuid, /etc/subgid, newuidmap)");
        return;
    }
    let (uid, gid) = (
        nix::unistd::getuid().as_raw(),
        nix::unistd::getgid().as_raw(),
    );
    let (subu, subg) = (
        first_subordinate("/etc/subuid"),
        first_subordinate("/etc/subgid"),
    );
    let t = TempDir::new("runtime-maps");
    std::fs::create_dir(t.join("data")).unwrap();
    bundle(t.path(), |c| {
        c["linux"]["uidMappings"] = serde_json::json!([
            { "containerID": 0, "hostID": uid, "size": 1 },
            { "containerID": 1, "hostID": subu, "size": 1000 }
        ]);
        c["linux"]["gidMappings"] = serde_json::json!([
            { "containerID": 0, "hostID": gid, "size": 1 },
            { "containerID": 1, "hostID": subg, "size": 1000 }
        ]);
        c["process"]["user"]["additionalGids"] = serde_json::json!([5]);
        c["process"]["args"] = serde_json::json!([
            "sh",
            "-c",
            "cat /proc/self/uid_map /proc/self/gid_map; id -G; \
             grep ' /data ' /proc/self/mountinfo | grep -q noexec && echo noexec"
        ]);
        c["mounts"].as_array_mut().unwrap().push(serde_json::json!(
            { "destination": "/data", "type": "bind", "source": "data", "options": ["bind", "noexec"] }
        ));
    });
    let out = run(t.path(), "maps");
    assert_eq!(out.code, 0, "{out:?}");
    let words: Vec<&str> = out.stdout.split_whitespace().collect();
    let expect = format!("0 {uid} 1 1 {subu} 1000 0 {gid} 1 1 {subg} 1000 0 5 noexec");
    assert_eq!(words.join(" "), expect, "{out:?}");

    // A range the account was not given is refused, by the range.
    bundle(&t.join("b2"), |c| {
        c["linux"]["uidMappings"][0]["hostID"] = 4242.into();
    });
    let out = run(&t.join("b2"), "maps2");
    assert_eq!(out.code, 1, "{out:?}");
    assert!(
        out.stderr
            .contains("--uidmap 0:4242:1: neither the caller's own id"),
        "{out:?}"
    );
}

/// An attack on the hold point (the class of runc's CVE-2024-21626): a
/// working directory through a descriptor pid 1 holds, /proc/self/fd/N,
/// directly or through a symlink of the image, never leads out of the
/// root: create refuses it, whichever N.
#[test]
fn a_working_directory_through_proc_self_fd_is_refused() {
    let t = TempDir::new("runtime-cwd");
    let root = t.join("state");
    for (n, via_link) in (3..=12).flat_map(|n| [(n, false), (n, true)]) {
        let b = t.join(&format!("b{n}{via_link}"));
        bundle(&b, |c| {
            c["root"]["readonly"] = false.into();
            c["process"]["args"] = serde_json::json!(["sh", "-c", "ls -a ..; cat state.json"]);
            let cwd = if via_link {
                "/work".to_string()
            } else {
                format!("/proc/self/fd/{n}")
            };
            c["process"]["cwd"] = cwd.into();
        });
        std::os::unix::fs::symlink(format!("/proc/self/fd/{n}"), b.join("rootfs/work")).unwrap();
        let id = format!("cwd{n}{via_link}");
        let out = rt(&root, &["create", "--bundle", b.to_str().unwrap(), &id]);
        assert_eq!(out.code, 1, "fd {n}, via a link: {via_link}: {out:?}");
        assert!(out.stderr.contains("--chdir"), "{out:?}");
    }
    assert!(rt(&root, &["list", "-q"]).stdout.is_empty());
}

/// kill reaches the command with any signal it can catch, not only those
/// burrow run relays (pid 1 of a pid namespace would drop the others).
#[test]
fn kill_passes_any_signal_on_to_the_command() {
    let t = TempDir::new("runtime-kill");
    let b = t.join("b");
    std::fs::create_dir_all(b.join("data")).unwrap();
    bundle(&b, |c| {
        c["process"]["args"] = serde_json::json!([
            "sh",
            "-c",
            "trap 'echo got-urg > /data/got; exit 5' URG; trap 'echo got-rt > /data/rt' 37; \
             touch /data/ready; \
             while :; do sleep 1; done"
        ]);
        bind_data(c);
    });
    let root = t.join("state");
    let id = unique_token();
    assert_eq!(
        rt(&root, &["create", "--bundle", b.to_str().unwrap(), &id]).code,
        0
    );
    assert_eq!(rt(&root, &["start", &id]).code, 0);
    assert!(eventually(std::time::Duration::from_secs(20), || b
        .join("data/ready")
        .exists()));
    // SIGRTMIN+3 (37 with glibc): podman's stop signal for systemd.
    assert_eq!(rt(&root, &["kill", &id, "SIGRTMIN+3"]).code, 0);
    assert!(
        eventually(std::time::Duration::from_secs(20), || b
            .join("data/rt")
            .exists()),
        "SIGRTMIN+3 did not reach the command"
    );
    assert_eq!(rt(&root, &["kill", &id, "URG"]).code, 0);
    assert!(
        eventually(std::time::Duration::from_secs(20), || status_of(&root, &id)
            == "stopped"),
        "SIGURG did not reach the command"
    );
    assert_eq!(
        std::fs::read_to_string(b.join("data/got")).unwrap(),
        "got-urg\n"
    );
    assert_eq!(rt(&root, &["delete", &id]).code, 0);
}

/// A user namespace that does not map the runtime's own user (subordinate
/// ids only): the command still reaches its hold point and starts.
#[test]
fn create_and_start_work_when_the_caller_is_not_mapped() {
    if !has_subordinate_ids() {
        skipped("this account has no subordinate ids (/etc/subuid, /etc/subgid, newuidmap)");
        return;
    }
    let (subu, subg) = (
        first_subordinate("/etc/subuid"),
        first_subordinate("/etc/subgid"),
    );
    let t = TempDir::new("runtime-unmapped");
    let b = t.join("b");
    std::fs::create_dir_all(b.join("data")).unwrap();
    std::fs::set_permissions(
        b.join("data"),
        std::os::unix::fs::PermissionsExt::from_mode(0o777),
    )
    .unwrap();
    bundle(&b, |c| {
        c["linux"]["uidMappings"] =
            serde_json::json!([{ "containerID": 0, "hostID": subu, "size": 1000 }]);
        c["linux"]["gidMappings"] =
            serde_json::json!([{ "containerID": 0, "hostID": subg, "size": 1000 }]);
        c["process"]["args"] = serde_json::json!(["sh", "-c", "echo ran > /data/ran"]);
        bind_data(c);
    });
    let root = t.join("state");
    let id = unique_token();
    let out = rt(&root, &["create", "--bundle", b.to_str().unwrap(), &id]);
    assert_eq!(out.code, 0, "{out:?}");
    assert_eq!(rt(&root, &["start", &id]).code, 0);
    assert!(eventually(
        std::time::Duration::from_secs(20),
        || status_of(&root, &id) == "stopped"
    ));
    assert_eq!(
        std::fs::read_to_string(b.join("data/ran")).unwrap(),
        "ran\n"
    );
    assert_eq!(rt(&root, &["delete", &id]).code, 0);
}

/// linux.sysctl: the container's own IPC and network namespaces' settings
/// are set (with a network namespace in the spec); one of the host's is
/// refused by the field's name.
#[test]
fn sysctls_of_the_containers_namespaces_are_set() {
    let t = TempDir::new("runtime-sysctl");
    bundle(t.path(), |c| {
        c["linux"]["namespaces"]
            .as_array_mut()
            .unwrap()
            .push(serde_json::json!({ "type": "network" }));
        c["linux"]["sysctl"] = serde_json::json!({
            "kernel.msgmax": "4321", "net.ipv4.ip_forward": "1", "fs.mqueue.msg_max": "17"
        });
        c["process"]["args"] = serde_json::json!([
            "cat",
            "/proc/sys/kernel/msgmax",
            "/proc/sys/net/ipv4/ip_forward",
            "/proc/sys/fs/mqueue/msg_max"
        ]);
    });
    let out = run(t.path(), &unique_token());
    assert_eq!(
        (out.code, out.stdout.as_str()),
        (0, "4321\n1\n17\n"),
        "{out:?}"
    );
    let host = TempDir::new("runtime-sysctl-host");
    bundle(host.path(), |c| {
        c["linux"]["sysctl"] = serde_json::json!({ "kernel.pid_max": "100" });
    });
    let out = run(host.path(), &unique_token());
    assert_eq!(out.code, 1, "{out:?}");
    assert!(
        out.stderr.contains("linux.sysctl") && out.stderr.contains("kernel.pid_max"),
        "{out:?}"
    );
}

/// process.oomScoreAdj: the command's; below the caller's own (which needs
/// privileges no user namespace gives) create says so and leaves nothing.
#[test]
fn the_oom_score_adjustment_is_the_commands() {
    let t = TempDir::new("runtime-oom");
    bundle(t.path(), |c| {
        c["process"]["oomScoreAdj"] = 500.into();
        c["process"]["args"] = serde_json::json!(["cat", "/proc/self/oom_score_adj"]);
    });
    let out = run(t.path(), &unique_token());
    assert_eq!((out.code, out.stdout.as_str()), (0, "500\n"), "{out:?}");
    let own: i32 = std::fs::read_to_string("/proc/self/oom_score_adj")
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    let lower = TempDir::new("runtime-oom-lower");
    bundle(lower.path(), |c| {
        c["process"]["oomScoreAdj"] = (own - 100).max(-1000).into();
    });
    let root = lower.join("state");
    let out = rt(&root, &["create", "--bundle", lower.s(), "low"]);
    assert_eq!(out.code, 1, "{out:?}");
    assert!(out.stderr.contains("--oom-score-adj"), "{out:?}");
    assert!(rt(&root, &["list", "-q"]).stdout.is_empty());
}

/// Annotations select burrow's own features: run.burrow.net=slirp (its
/// userspace network in the container's new network namespace, here
/// with the host's loopback as 10.0.2.2), run.burrow.landlock with
/// run.burrow.allow-connect (Landlock's TCP rules: the one port allowed,
/// another refused); an unknown key is refused by name.
#[test]
fn annotations_select_burrows_own_features() {
    let server = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let (open, closed) = (server.local_addr().unwrap().port(), free_port());
    std::thread::spawn(move || {
        for conn in server.incoming().flatten() {
            let mut conn = conn;
            let mut buf = [0u8; 1024];
            let _ = std::io::Read::read(&mut conn, &mut buf);
            let _ = std::io::Write::write_all(
                &mut conn,
                b"HTTP/1.0 200 OK\r\nContent-Length: 6\r\n\r\nhello\n",
            );
        }
    });
    let t = TempDir::new("runtime-annotations");
    bundle(t.path(), |c| {
        c["linux"]["namespaces"]
            .as_array_mut()
            .unwrap()
            .push(serde_json::json!({ "type": "network" }));
        c["annotations"] = serde_json::json!({
            "run.burrow.net": "slirp",
            "run.burrow.allow-host-loopback": "true",
            "run.burrow.landlock": "true",
            "run.burrow.allow-connect": open.to_string(),
        });
        // (Where the network's resolver goes, as an image has it.)
        std::fs::write(t.join("rootfs/etc/resolv.conf"), "").unwrap();
        c["process"]["args"] = serde_json::json!([
            "sh",
            "-c",
            format!(
                "ip -o -4 addr show | grep -c 10.0.2.100; wget -q -O - http://10.0.2.2:{open}/; \
                 wget -q -O - http://10.0.2.2:{closed}/ 2>&1 | grep -c 'ermission denied'"
            )
        ]);
    });
    let out = run(t.path(), &unique_token());
    assert_eq!(out.stdout, "1\nhello\n1\n", "{out:?}");

    let bad = TempDir::new("runtime-annotations-bad");
    bundle(bad.path(), |c| {
        c["annotations"] = serde_json::json!({ "run.burrow.nope": "1" });
    });
    let out = run(bad.path(), &unique_token());
    assert_eq!(out.code, 1, "{out:?}");
    assert!(
        out.stderr.contains("annotations.run.burrow.nope"),
        "{out:?}"
    );
    let no_netns = TempDir::new("runtime-annotations-net");
    bundle(no_netns.path(), |c| {
        c["annotations"] = serde_json::json!({ "run.burrow.net": "slirp" });
    });
    let out = run(no_netns.path(), &unique_token());
    assert_eq!(out.code, 1, "{out:?}");
    assert!(out.stderr.contains("annotations.run.burrow.net"), "{out:?}");
}

/// run.burrow.vm: the container's command in burrow's micro-VM, of its
/// own kernel (the spec's masks of /proc and /sys are the guest kernel's
/// business), its status the container's.
#[test]
fn the_vm_annotation_runs_the_container_in_a_micro_vm() {
    let cache = Path::new("/var/cache/burrow-guest");
    if !cache.join("vmlinuz").exists() || !cache.join("vm-modules/order").exists() {
        skipped("no guest kernel and modules (scripts/setup-host.sh --vm caches them)");
        return;
    }
    if !has_subordinate_ids() {
        skipped("--vm needs subordinate id ranges for this user");
        return;
    }
    let t = TempDir::new("runtime-vm");
    bundle(t.path(), |c| {
        // burrow's own id maps (the subordinate ranges virtiofsd needs).
        c["linux"].as_object_mut().unwrap().remove("uidMappings");
        c["linux"].as_object_mut().unwrap().remove("gidMappings");
        c["annotations"] = serde_json::json!({ "run.burrow.vm": "true" });
        c["process"]["args"] = serde_json::json!([
            "sh",
            "-c",
            "cat /proc/sys/kernel/osrelease; hostname; exit 3"
        ]);
    });
    let host_kernel = std::fs::read_to_string("/proc/sys/kernel/osrelease").unwrap();
    let out = run(t.path(), &unique_token());
    assert_eq!(out.code, 3, "{out:?}");
    let lines: Vec<&str> = out.stdout.lines().collect();
    assert_eq!(lines.len(), 2, "{out:?}");
    assert_ne!(
        lines[0],
        host_kernel.trim(),
        "the host's kernel runs it: {out:?}"
    );
    assert_eq!(lines[1], "runc", "{out:?}");
}

/// A hook that appends its stage's name and the state it was given to
/// `log` (its path the host's /bin/sh, or the container's).
fn logging_hook(log: &Path, stage: &str) -> serde_json::Value {
    serde_json::json!({
        "path": "/bin/sh",
        "args": ["sh", "-c", format!("{{ echo {stage}; cat; echo; }} >> {}", log.display())],
        "env": ["PATH=/bin:/usr/bin"],
    })
}

/// The stages and states a hooks log holds, in order.
fn hook_log(log: &Path) -> Vec<(String, serde_json::Value)> {
    let text = std::fs::read_to_string(log).unwrap_or_default();
    text.lines()
        .collect::<Vec<_>>()
        .chunks(2)
        .map(|c| (c[0].to_string(), serde_json::from_str(c[1]).unwrap()))
        .collect()
}

/// Hooks run at their points of the container's life, in order, each
/// given the container's state: createRuntime and prestart by create
/// (pid 1's pid, "creating"), startContainer in the container once
/// started, poststart by start, poststop by delete; createContainer by
/// pid 1 before it enters the root (a spec with it and createRuntime is
/// refused: burrow cannot keep their order). A failing createRuntime
/// hook fails create and leaves nothing; a failing poststop one is a
/// warning.
#[test]
fn hooks_run_at_their_points_given_the_state() {
    let t = TempDir::new("runtime-hooks");
    let (b, root) = (t.join("b"), t.join("state"));
    let log = t.join("hooks.log");
    std::fs::create_dir_all(b.join("data")).unwrap();
    bundle(&b, |c| {
        bind_data(c);
        c["process"]["args"] = serde_json::json!(["sleep", "1000"]);
        c["hooks"] = serde_json::json!({
            "createRuntime": [logging_hook(&log, "createRuntime")],
            "prestart": [logging_hook(&log, "prestart")],
            "startContainer": [logging_hook(Path::new("/data/hooks.log"), "startContainer"),
                               { "path": "/bin/sh",
                                 "args": ["sh", "-c", "grep CapEff /proc/self/status > /data/caps"] }],
            "poststart": [logging_hook(&log, "poststart")],
            "poststop": [logging_hook(&log, "poststop"),
                         { "path": "/bin/false", "args": ["false"] }],
        });
    });
    let id = unique_token();
    let pid_file = t.join("pid");
    let out = rt(
        &root,
        &[
            "create",
            "--bundle",
            b.to_str().unwrap(),
            "--pid-file",
            pid_file.to_str().unwrap(),
            &id,
        ],
    );
    assert_eq!(out.code, 0, "{out:?}");
    let pid: i64 = std::fs::read_to_string(&pid_file).unwrap().parse().unwrap();
    let stages = |l: &[(String, serde_json::Value)]| -> Vec<String> {
        l.iter().map(|(s, _)| s.clone()).collect()
    };
    let created = hook_log(&log);
    assert_eq!(stages(&created), ["createRuntime", "prestart"]);
    for (_, state) in &created {
        assert_eq!(
            (
                state["id"].as_str(),
                state["pid"].as_i64(),
                state["status"].as_str()
            ),
            (Some(id.as_str()), Some(pid), Some("creating")),
            "{state}"
        );
        assert_eq!(state["bundle"].as_str(), Some(b.to_str().unwrap()));
    }
    assert!(
        !b.join("data/hooks.log").exists(),
        "startContainer ran before start"
    );
    assert_eq!(rt(&root, &["start", &id]).code, 0);
    // (start returns once the startContainer hooks have run.)
    let started = hook_log(&b.join("data/hooks.log"));
    assert_eq!(stages(&started), ["startContainer"]);
    assert_eq!(
        started[0].1["pid"].as_i64(),
        Some(pid),
        "{:?}",
        started[0].1
    );
    // Confined as the command is: the spec's three capabilities only.
    assert_eq!(
        std::fs::read_to_string(b.join("data/caps")).unwrap(),
        "CapEff:\t0000000020000420\n"
    );
    assert_eq!(
        stages(&hook_log(&log)),
        ["createRuntime", "prestart", "poststart"]
    );
    let out = rt(&root, &["delete", "--force", &id]);
    assert_eq!(out.code, 0, "{out:?}");
    assert!(
        out.stderr
            .contains("warning: hooks.poststop[1] /bin/false failed"),
        "{out:?}"
    );
    let all = hook_log(&log);
    assert_eq!(
        stages(&all),
        ["createRuntime", "prestart", "poststart", "poststop"]
    );
    assert_eq!(all[3].1["status"].as_str(), Some("stopped"));

    // createContainer: pid 1's, before it enters the root (the host's
    // /bin/sh, the test's log), its state pid 1's; what a hook leaves
    // running there (it would hold the host's root) is ended.
    let b2 = t.join("b2");
    let log2 = t.join("hooks2.log");
    let token = unique_token();
    bundle(&b2, |c| {
        c["process"]["args"] = serde_json::json!(["true"]);
        c["hooks"] = serde_json::json!({
            "createContainer": [logging_hook(&log2, "createContainer"),
                                { "path": "/bin/sh",
                                  "args": ["sh", "-c", format!("sleep 1000 {token} & exit 0")] }],
        });
    });
    let id2 = unique_token();
    let out = rt(
        &root,
        &[
            "create",
            "--bundle",
            b2.to_str().unwrap(),
            "--pid-file",
            pid_file.to_str().unwrap(),
            &id2,
        ],
    );
    assert_eq!(out.code, 0, "{out:?}");
    let pid2: i64 = std::fs::read_to_string(&pid_file).unwrap().parse().unwrap();
    let l = hook_log(&log2);
    assert_eq!(stages(&l), ["createContainer"]);
    assert_eq!(
        (l[0].1["id"].as_str(), l[0].1["pid"].as_i64()),
        (Some(id2.as_str()), Some(pid2)),
        "{:?}",
        l[0].1
    );
    assert!(
        processes_with_arg(&token).is_empty(),
        "a hook's process was left running"
    );
    assert_eq!(rt(&root, &["delete", "--force", &id2]).code, 0);

    // Out of order, and failing.
    for (hooks, what) in [
        (
            serde_json::json!({
                "createContainer": [logging_hook(&log2, "x")],
                "createRuntime": [logging_hook(&log2, "y")],
            }),
            "hooks.createContainer",
        ),
        (
            serde_json::json!({
                "createRuntime": [{ "path": "/bin/sh", "args": ["sh", "-c", "echo no way; exit 3"] }],
            }),
            "hooks.createRuntime[0] /bin/sh failed (exit status: 3): no way",
        ),
        (
            serde_json::json!({
                "createContainer": [{ "path": "/bin/sleep", "args": ["sleep", "100"], "timeout": 1 }],
            }),
            "hooks.createContainer[0] /bin/sleep: still running after its timeout of 1 s",
        ),
    ] {
        let bad = t.join(&format!("bad{}", unique_token()));
        bundle(&bad, |c| c["hooks"] = hooks);
        let out = rt(&root, &["create", "--bundle", bad.to_str().unwrap(), "bad"]);
        assert_eq!(out.code, 1, "{out:?}");
        assert!(out.stderr.contains(what), "{what}: {out:?}");
        assert!(rt(&root, &["list", "-q"]).stdout.is_empty());
    }
}

/// `run` is create and start in one, its container known to the other
/// commands while it runs (`state`, `kill` from elsewhere), its status the
/// command's, and deleted when it ends; `run --detach` leaves it running.
#[test]
fn run_registers_the_container_while_it_runs() {
    let t = TempDir::new("runtime-run");
    let b = t.join("b");
    bundle(&b, |c| {
        c["process"]["args"] = serde_json::json!([
            "sh",
            "-c",
            "trap 'exit 9' TERM; echo ready; sleep 1000 & wait"
        ]);
    });
    let root = t.join("state");
    let id = unique_token();
    let mut fg = Command::new(runtime_bin())
        .arg("--root")
        .arg(&root)
        .args(["run", "--bundle", b.to_str().unwrap(), &id])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    // The command says when its trap is set: a SIGTERM before that would
    // end the shell with 143, not the trap's 9.
    let mut ready = String::new();
    std::io::BufRead::read_line(
        &mut std::io::BufReader::new(fg.stdout.take().unwrap()),
        &mut ready,
    )
    .unwrap();
    assert_eq!(ready, "ready\n");
    assert!(
        eventually(std::time::Duration::from_secs(30), || rt(
            &root,
            &["state", &id]
        )
        .code
            == 0
            && status_of(&root, &id) == "running"),
        "run's container is not known to state"
    );
    assert_eq!(rt(&root, &["kill", &id, "TERM"]).code, 0);
    let status = wait_timeout(&mut fg, std::time::Duration::from_secs(30));
    assert_eq!(exit_code(status), 9);
    assert!(
        rt(&root, &["list", "-q"]).stdout.is_empty(),
        "run left its state"
    );

    let out = rt(&root, &["run", "-d", "--bundle", b.to_str().unwrap(), &id]);
    assert_eq!(out.code, 0, "{out:?}");
    assert_eq!(status_of(&root, &id), "running");
    assert_eq!(rt(&root, &["delete", "--force", &id]).code, 0);
}

/// An AppArmor profile and SELinux labels, as podman sends them where the
/// host has those modules: burrow applies neither, so they are refused
/// where the host enforces the module, and ignored with a warning where
/// it does not (as runc ignores them there); `--no-pivot` is accepted
/// (burrow always pivots).
#[test]
fn security_labels_are_refused_only_where_enforced() {
    let t = TempDir::new("runtime-labels");
    bundle(t.path(), |c| {
        c["process"]["apparmorProfile"] = "containers-default-0.50.0".into();
        c["process"]["selinuxLabel"] = "system_u:system_r:container_t:s0".into();
        c["linux"]["mountLabel"] = "system_u:object_r:container_file_t:s0".into();
        c["process"]["args"] = serde_json::json!(["echo", "ran"]);
    });
    let apparmor = std::fs::read_to_string("/sys/module/apparmor/parameters/enabled")
        .is_ok_and(|v| v.trim() == "Y");
    let selinux = Path::new("/sys/fs/selinux/enforce").exists();
    let root = t.join("state");
    let out = rt(
        &root,
        &["run", "--no-pivot", "--bundle", t.s(), &unique_token()],
    );
    if apparmor || selinux {
        assert_eq!(out.code, 1, "{out:?}");
        let field = if apparmor {
            "process.apparmorProfile"
        } else {
            "process.selinuxLabel"
        };
        assert!(out.stderr.contains(field), "{out:?}");
    } else {
        assert_eq!((out.code, out.stdout.as_str()), (0, "ran\n"), "{out:?}");
        for field in [
            "process.apparmorProfile",
            "process.selinuxLabel",
            "linux.mountLabel",
        ] {
            assert!(
                out.stderr
                    .contains(&format!("warning: config.json: {field}")),
                "{field}: {out:?}"
            );
        }
    }
}

/// Whether this process's cgroup v2 is its own to manage (then the
/// runtime would find a delegated subtree, and the test below has nothing
/// to show).
fn own_cgroup_delegated() -> bool {
    use std::os::unix::fs::MetadataExt;
    let Some(rel) = std::fs::read_to_string("/proc/self/cgroup")
        .unwrap()
        .lines()
        .find_map(|l| l.strip_prefix("0::").map(str::to_string))
    else {
        return false;
    };
    ["/sys/fs/cgroup", "/sys/fs/cgroup/unified"]
        .iter()
        .any(|m| {
            std::fs::metadata(format!("{m}{rel}"))
                .is_ok_and(|md| md.uid() == nix::unistd::getuid().as_raw() && rel != "/")
        })
}

/// Without a cgroup v2 subtree delegated to the user, a spec's limits are
/// an error naming the field (nothing left behind), or, with crun's
/// `--cgroup-manager disabled`, ignored with a warning; a field burrow
/// cannot set is refused by name either way; `pause` and `update` of a
/// container that has no cgroup say why. (Where a subtree is delegated:
/// tests/tests/guest.rs.)
#[test]
fn limits_without_a_delegated_cgroup_are_refused_or_ignored_when_disabled() {
    if own_cgroup_delegated() {
        skipped("this account owns its cgroup: the runtime would place containers in it");
        return;
    }
    let t = TempDir::new("runtime-limits");
    let b = t.join("b");
    bundle(&b, |c| {
        c["process"]["args"] = serde_json::json!(["echo", "ran"]);
        c["linux"]["resources"] = serde_json::json!({
            "memory": { "limit": 67108864 }, "pids": { "limit": 30 }
        });
    });
    let root = t.join("state");
    let bundle_arg = b.to_str().unwrap();
    let out = rt(&root, &["run", "--bundle", bundle_arg, &unique_token()]);
    assert_eq!(out.code, 1, "{out:?}");
    assert!(
        out.stderr
            .starts_with("burrow-runtime: config.json: linux.resources.memory.limit: ")
            && out.stderr.contains("delegated")
            && out.stderr.lines().count() == 1,
        "{out:?}"
    );
    assert!(rt(&root, &["list", "-q"]).stdout.is_empty());

    // (crun's --cgroup-manager disabled.)
    let run_disabled = || {
        rt(
            &root,
            &[
                "--cgroup-manager",
                "disabled",
                "run",
                "--bundle",
                bundle_arg,
                &unique_token(),
            ],
        )
    };
    let out = run_disabled();
    assert_eq!((out.code, out.stdout.as_str()), (0, "ran\n"), "{out:?}");
    assert!(
        out.stderr
            .contains("warning: config.json: linux.resources ignored"),
        "{out:?}"
    );

    let mut config: serde_json::Value =
        serde_json::from_slice(&std::fs::read(b.join("config.json")).unwrap()).unwrap();
    config["linux"]["resources"]["cpu"] = serde_json::json!({ "cpus": "0" });
    std::fs::write(b.join("config.json"), config.to_string()).unwrap();
    let out = run_disabled();
    assert_eq!(out.code, 1, "{out:?}");
    assert!(
        out.stderr
            .contains("linux.resources.cpu.cpus: not supported"),
        "{out:?}"
    );

    // A container without limits has no cgroup of its own here.
    let b2 = t.join("b2");
    bundle(&b2, |c| {
        c["process"]["args"] = serde_json::json!(["sleep", "1000"]);
    });
    let id = unique_token();
    let out = rt(&root, &["run", "-d", "--bundle", b2.to_str().unwrap(), &id]);
    assert_eq!(out.code, 0, "{out:?}");
    for args in [
        vec!["pause", id.as_str()],
        vec!["update", "--memory", "1000000", id.as_str()],
    ] {
        let out = rt(&root, &args);
        assert_eq!(out.code, 1, "{out:?}");
        assert!(
            out.stderr.contains("it has no cgroup of its own"),
            "{args:?}: {out:?}"
        );
    }
    let out = rt(&root, &["resume", &id]);
    assert!(
        out.code == 1 && out.stderr.contains("it is running"),
        "{out:?}"
    );
    assert_eq!(status_of(&root, &id), "running");
    assert_eq!(rt(&root, &["delete", "--force", &id]).code, 0);
}

/// linux.devices (podman's `--device`): the host's node at that path is
/// bound, with the cgroup rule that allows it; one the host does not have
/// as the spec says (other numbers) is refused by the field's name.
#[test]
fn devices_of_the_spec_are_the_hosts_nodes() {
    let with_fuse = |minor: i64| {
        move |c: &mut serde_json::Value| {
            c["process"]["args"] = serde_json::json!(["ls", "-l", "/dev/fuse"]);
            c["linux"]["devices"] = serde_json::json!([{
                "path": "/dev/fuse", "type": "c", "major": 10, "minor": minor,
                "fileMode": 438, "uid": 0, "gid": 0
            }]);
            c["linux"]["resources"]["devices"] = serde_json::json!([
                { "allow": false, "access": "rwm" },
                { "allow": true, "type": "c", "major": 10, "minor": minor, "access": "rwm" }
            ]);
        }
    };
    let t = TempDir::new("runtime-devices");
    bundle(t.path(), with_fuse(229));
    let out = run(t.path(), "d1");
    assert_eq!(out.code, 0, "{out:?}");
    assert!(
        out.stdout.starts_with("crw-rw-rw-") && out.stdout.contains("10, 229"),
        "{out:?}"
    );
    let t = TempDir::new("runtime-devices");
    bundle(t.path(), with_fuse(228));
    let out = run(t.path(), "d2");
    assert_eq!(out.code, 1, "{out:?}");
    assert!(
        out.stderr
            .contains("linux.devices[0] (/dev/fuse): the host has no such node"),
        "{out:?}"
    );
}

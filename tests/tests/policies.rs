//! The command's confinement as a user configures it: capabilities,
//! seccomp profiles (shipped, from a file, logging), resource limits and
//! run profiles.

use burrow_tests::*;

fn status_field(out: &str, field: &str) -> String {
    out.lines()
        .find_map(|l| l.strip_prefix(&format!("{field}:\t")))
        .unwrap_or_else(|| panic!("no {field} in {out:?}"))
        .to_string()
}

/// podman's default set: CHOWN 0, DAC_OVERRIDE 1, FOWNER 3, FSETID 4,
/// KILL 5, SETGID 6, SETUID 7, SETPCAP 8, NET_BIND_SERVICE 10,
/// SYS_CHROOT 18, SETFCAP 31.
const PODMAN_DEFAULT: &str = "00000000800405fb";

#[test]
fn root_inside_keeps_podmans_default_set_and_no_more() {
    let out = sh(
        &[],
        "grep -E '^(Cap|NoNewPrivs|Seccomp:)' /proc/self/status",
    );
    let out = out.ok();
    for set in ["CapPrm", "CapEff", "CapBnd"] {
        assert_eq!(status_field(out, set), PODMAN_DEFAULT, "{set}");
    }
    // Root's exec keeps them; nothing is ambient for its children, nor
    // inheritable for programs with file capabilities.
    assert_eq!(status_field(out, "CapAmb"), "0000000000000000");
    assert_eq!(status_field(out, "CapInh"), "0000000000000000");
    assert_eq!(status_field(out, "NoNewPrivs"), "1");
    assert_eq!(status_field(out, "Seccomp"), "2");
    // What they are for: root inside owns the root, chowns, changes to
    // subordinate ids (given them), binds low ports, chroots.
    let work = sh(
        &[],
        "touch /etc/burrow-caps && chown 0:0 /etc/burrow-caps && echo chown; \
         chroot / true && echo chroot; \
         python3 -c 'import socket; s=socket.socket(); s.bind((\"127.0.0.1\", 80))' && echo bind",
    );
    assert_eq!(work.ok(), "chown\nchroot\nbind\n");
}

#[test]
fn cap_drop_and_cap_add_change_the_set_as_podmans_do() {
    let caps = |flags: &[&str]| {
        let out = sh(flags, "grep -E '^Cap' /proc/self/status");
        (
            status_field(out.ok(), "CapEff"),
            status_field(out.ok(), "CapAmb"),
        )
    };
    let zero = "0000000000000000".to_string();
    assert_eq!(caps(&["--cap-drop", "ALL"]), (zero.clone(), zero.clone()));
    // CHOWN (bit 0) and KILL (bit 5) dropped.
    assert_eq!(
        caps(&["--cap-drop", "chown,CAP_KILL"]).0,
        "00000000800405da"
    );
    // Only NET_BIND_SERVICE (bit 10).
    assert_eq!(
        caps(&["--cap-drop", "ALL", "--cap-add", "NET_BIND_SERVICE"]).0,
        "0000000000000400"
    );
    // NET_RAW (bit 13) added to the default.
    assert_eq!(caps(&["--cap-add", "CAP_NET_RAW"]).0, "00000000800425fb");
    // Giving a file away takes CAP_CHOWN (or fails, without a uid 1).
    let dropped = sh(
        &["--cap-drop", "CHOWN"],
        "chown 1 /etc/hostname; stat -c %u /etc/hostname",
    );
    assert_eq!(dropped.ok(), "0\n");
    assert!(
        dropped.stderr.contains("Operation not permitted")
            || !has_subordinate_ids() && dropped.stderr.contains("Invalid argument"),
        "{dropped:?}"
    );
    // A command that is not root inside keeps none unless added; an added
    // one is ambient, so it survives exec.
    assert_eq!(caps(&["--keep-id"]), (zero.clone(), zero.clone()));
    let user = caps(&["--keep-id", "--cap-add", "net_bind_service"]);
    assert_eq!(user, ("0000000000000400".into(), "0000000000000400".into()));
    for (flags, want) in [
        (
            &["--cap-add", "CAP_FLY"][..],
            "burrow: --cap-add: unknown capability \"CAP_FLY\"\n",
        ),
        (
            &["--cap-drop", "FLY"][..],
            "burrow: --cap-drop: unknown capability \"FLY\"\n",
        ),
        (
            &["--cap-add", "KILL", "--cap-drop", "kill"][..],
            "burrow: CAP_KILL is both added (--cap-add) and dropped (--cap-drop)\n",
        ),
    ] {
        let bad = sh(flags, "true");
        assert_eq!((bad.code, bad.stderr.as_str()), (125, want), "{flags:?}");
    }
}

#[test]
fn a_profile_file_of_ones_own_is_enforced() {
    let dir = TempDir::new("seccomp");
    let profile = dir.join("no-uname.json");
    std::fs::write(
        &profile,
        r#"{"defaultAction": "SCMP_ACT_ALLOW",
            "syscalls": [{"names": ["uname"], "action": "SCMP_ACT_ERRNO", "errnoRet": 38}]}"#,
    )
    .unwrap();
    let out = sh(
        &["--seccomp", profile.to_str().unwrap()],
        "uname 2>&1; echo rc=$?",
    );
    assert!(out.ok().contains("Function not implemented"), "{out:?}");
    assert!(sh(&["--seccomp", "none"], "uname")
        .ok()
        .starts_with("Linux"));

    let broken = dir.join("broken.json");
    std::fs::write(&broken, r#"{"defaultAction": "SCMP_ACT_SOMETIMES"}"#).unwrap();
    let out = sh(&["--seccomp", broken.to_str().unwrap()], "true");
    assert_eq!(out.code, 125);
    assert_eq!(
        out.stderr,
        format!(
            "burrow: seccomp profile {}: unknown action \"SCMP_ACT_SOMETIMES\"\n",
            broken.display()
        )
    );
    let out = sh(&["--seccomp", "/nonexistent.json"], "true");
    assert_eq!(out.code, 125);
    assert_eq!(
        out.stderr,
        "burrow: --seccomp /nonexistent.json: No such file or directory\n"
    );
}

#[test]
fn seccomp_log_logs_instead_of_refusing() {
    let code = "import ctypes; libc = ctypes.CDLL(None, use_errno=True); \
                print('ok' if libc.syscall(248, b'user', b'k', b'v', 1, -2) >= 0 else 'refused')";
    let refused = output(burrow_run().args(["--", "python3", "-c", code]));
    let logged = output(burrow_run().args(["--seccomp-log", "--", "python3", "-c", code]));
    assert_eq!(refused.ok(), "refused\n");
    assert_eq!(logged.ok(), "ok\n");
}

#[test]
fn compiled_profiles_are_cached() {
    let cache = TempDir::new("cache");
    let run = || {
        output(burrow_run().env("XDG_CACHE_HOME", cache.path()).args([
            "--seccomp",
            "strict",
            "--",
            "true",
        ]))
    };
    run().ok();
    let files: Vec<_> = std::fs::read_dir(cache.join("burrow/seccomp"))
        .expect("a cache directory")
        .map(|e| e.unwrap().path())
        .collect();
    assert_eq!(files.len(), 1, "{files:?}");
    // The cached program is what the next start loads: a corrupt one is
    // recompiled, not loaded.
    std::fs::write(&files[0], b"junk").unwrap();
    run().ok();
    assert!(std::fs::read(&files[0]).unwrap().len() > 8);
    // A well-framed but bogus program in the (private) cache is loaded,
    // and the kernel refuses it: the cache is really what runs...
    let mut bogus = 8u32.to_le_bytes().to_vec();
    bogus.extend([0u8; 8]);
    std::fs::write(&files[0], &bogus).unwrap();
    let out = run();
    assert_eq!(out.code, 125, "{out:?}");
    // ...so a cache directory others could write to is not trusted.
    let dir = cache.join("burrow/seccomp");
    std::fs::set_permissions(&dir, std::os::unix::fs::PermissionsExt::from_mode(0o777)).unwrap();
    std::fs::write(&files[0], &bogus).unwrap();
    run().ok();
}

#[test]
fn rlimits_apply_to_the_command() {
    let out = sh(
        &["--rlimit", "nofile=64:128", "--rlimit", "core=0"],
        "ulimit -Sn; ulimit -Hn; ulimit -c",
    );
    assert_eq!(out.ok(), "64\n128\n0\n");
    let out = sh(&["--rlimit", "files=3"], "true");
    assert_eq!(out.code, 125);
    assert!(
        out.stderr
            .starts_with("burrow: --rlimit files=3: unknown limit"),
        "{out:?}"
    );
    assert_eq!(out.stderr.lines().count(), 1);
}

#[test]
fn landlock_strict_holds_on_this_kernel() {
    // ABI 6 (scoping) is what burrow asks for; older kernels get a warning,
    // or with --landlock-strict an error.
    let abi = std::fs::read_to_string("/sys/kernel/security/lsm")
        .map(|l| l.contains("landlock"))
        .unwrap_or(false);
    let out = sh(
        &["--landlock-strict"],
        "echo confined > /tmp/x && cat /tmp/x",
    );
    if out.code == 125 && out.stderr.contains("landlock") {
        skipped(&format!(
            "this kernel's Landlock is older than ABI 6: {}",
            out.stderr.trim()
        ));
        return;
    }
    assert_eq!(out.ok(), "confined\n", "lsm list has landlock: {abi}");
    assert_eq!(out.stderr, "");
}

#[test]
fn a_run_profile_carries_options_and_the_command_line_wins() {
    let dir = TempDir::new("profile");
    let app = dir.join("app.toml");
    std::fs::write(
        &app,
        r#"
hostname = "from-profile"
setenv = { GREETING = "hello" }
rlimit = ["nofile=50"]
seccomp = "strict"
command = ["sh", "-c", "echo $GREETING $(hostname) $(ulimit -n); grep ^Seccomp: /proc/self/status"]
"#,
    )
    .unwrap();
    let a = app.to_str().unwrap();
    let out = output(burrow_run().args(["--profile", a]));
    assert_eq!(out.ok(), "hello from-profile 50\nSeccomp:\t2\n");
    let out = output(burrow_run().args([
        "--profile",
        a,
        "--hostname",
        "from-cli",
        "--seccomp",
        "none",
    ]));
    assert_eq!(out.ok(), "hello from-cli 50\nSeccomp:\t0\n");
    let out = output(burrow_run().args(["--profile", a, "--", "echo", "own-command"]));
    assert_eq!(out.ok(), "own-command\n");

    let bad = dir.join("bad.toml");
    std::fs::write(&bad, "hostname = \"x\"\nnetwork = \"host\"\n").unwrap();
    let out = output(burrow_run().args(["--profile", bad.to_str().unwrap(), "--", "true"]));
    assert_eq!(out.code, 125);
    assert_eq!(
        out.stderr,
        format!(
            "burrow: profile {}: key 'network': not an option of burrow run\n",
            bad.display()
        )
    );
}

#[test]
fn limits_without_a_delegated_cgroup_say_what_is_missing() {
    // These build machines have no cgroup v2 subtree for the test user.
    let out = sh(&["--memory", "64M"], "true");
    if out.code == 0 {
        skipped("this machine delegates a cgroup v2 subtree: the guest tests cover limits");
        return;
    }
    assert_eq!(out.code, 125, "{out:?}");
    assert_eq!(out.stderr.lines().count(), 1, "{out:?}");
    assert!(out.stderr.starts_with("burrow: --memory: "), "{out:?}");
    assert!(
        out.stderr.contains("delegated cgroup v2 subtree"),
        "{out:?}"
    );
    assert!(
        out.stderr
            .contains("systemd-run --user --scope -p Delegate=yes"),
        "{out:?}"
    );
    // Best effort: the memory limit as RLIMIT_AS, and a warning.
    let out = sh(&["--memory", "64M", "--limits", "best-effort"], "ulimit -v");
    assert_eq!(out.ok(), "65536\n");
    assert!(
        out.stderr
            .starts_with("burrow: warning: no delegated cgroup v2 subtree"),
        "{out:?}"
    );
}

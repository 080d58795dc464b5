//! How burrowfs reaches its layers, attacked: whatever can write to a layer
//! (the sandbox through a bind of it, or another process beside a
//! burrowfs mount of its own) swaps a directory the kernel still holds for
//! a symlink to somewhere else, and burrowfs must not follow it there. The
//! union of the host's / shows none of the host's /proc, /tmp, /dev or /run
//! even to a sandbox that keeps every capability, and no path inside the
//! union is too long for burrowfs when it is not for the kernel.

use std::path::{Path, PathBuf};
use std::process::Command;

use burrow_tests::*;

fn burrowfs_bin() -> PathBuf {
    burrow_bin().with_file_name("burrowfs")
}

/// What a victim directory outside every layer holds after an attack: it
/// must stay as the test made it.
fn listing(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    names
}

/// The swap: `held` (a union directory) is opened, so the kernel keeps its
/// node; then `behind` (the same directory in the layer, reached through a
/// bind) is replaced by a symlink to `victim`; then a file is created, an
/// existing one appended to and read, through the held directory.
const SWAP: &str = r#"
import os, sys
held, behind, victim = sys.argv[1:4]
fd = os.open(held, os.O_RDONLY | os.O_DIRECTORY)
os.rename(behind, behind + '.old'); os.symlink(victim, behind)
for what, call in [
    ('create', lambda: os.write(os.open('ESCAPED', os.O_CREAT | os.O_WRONLY, 0o644, dir_fd=fd), b'x\n')),
    ('append', lambda: os.write(os.open('profile', os.O_WRONLY | os.O_APPEND, dir_fd=fd), b'x\n')),
    ('read', lambda: os.read(os.open('profile', os.O_RDONLY, dir_fd=fd), 100)),
    ('mkdir', lambda: os.mkdir('made', dir_fd=fd)),
    ('unlink', lambda: os.unlink('keep', dir_fd=fd)),
]:
    try:
        print(what, 'done', call())
    except OSError as e:
        print(what, 'refused', e.errno)
"#;

/// A victim directory beside the layers: a `profile` and a `keep` file.
fn victim(t: &TempDir) -> PathBuf {
    let v = t.join("victim");
    std::fs::create_dir(&v).unwrap();
    std::fs::write(v.join("profile"), "SECRET\n").unwrap();
    std::fs::write(v.join("keep"), "").unwrap();
    v
}

#[track_caller]
fn untouched(out: &Output, v: &Path) {
    assert_eq!(
        listing(v),
        ["keep", "profile"],
        "burrowfs changed a directory outside its layers: {out:?}"
    );
    assert_eq!(
        std::fs::read_to_string(v.join("profile")).unwrap(),
        "SECRET\n"
    );
    assert!(
        !out.stdout.contains("SECRET"),
        "read outside the layers: {out:?}"
    );
    // A new name needs the walk to the directory, which the symlink stops.
    // (A file burrowfs already holds open may go on being written: it is
    // still the layer's own file, wherever its directory was moved.)
    assert!(out.stdout.contains("create refused"), "{out:?}");
    assert!(out.stdout.contains("mkdir refused"), "{out:?}");
}

#[test]
fn the_upper_layer_inside_a_read_write_bind_cannot_be_swapped_from_inside() {
    // The issue's reproduction: --upper inside a directory bound
    // read-write. The upper layer and its work directory are covered
    // read-only inside the bind, so the swap is refused at its first step;
    // the rest of the bind stays writable. (What a process outside the
    // sandbox can still do to them is attacked beside a burrowfs mount
    // below.)
    let t = TempDir::new("swap-upper");
    let v = victim(&t);
    std::fs::create_dir(t.join("proj")).unwrap();
    let upper = t.join("proj/up");
    let out = output(
        burrow_run()
            .args(["--upper", upper.to_str().unwrap()])
            .args(["--bind", t.join("proj").to_str().unwrap(), "/proj"])
            .args([
                "--",
                "sh",
                "-c",
                &format!(
                    "mkdir -p /var/tmp/zz && touch /var/tmp/zz/keep; \
                     mv /proj/up/var/tmp/zz /proj/up/var/tmp/zz.old 2>&1; \
                     ln -s {v} /proj/up/var/tmp/zz2 2>&1; \
                     mv /proj/.up.burrow-work/work /proj/.up.burrow-work/moved 2>&1; \
                     echo free > /proj/free && echo bind-writable",
                    v = v.display()
                ),
            ]),
    );
    assert_eq!(out.code, 0, "{out:?}");
    assert_eq!(
        out.stdout.matches("Read-only file system").count(),
        3,
        "{out:?}"
    );
    assert!(out.stdout.ends_with("bind-writable\n"), "{out:?}");
    assert_eq!(listing(&v), ["keep", "profile"]);
    assert!(upper.join("var/tmp/zz/keep").is_file());
    assert!(!upper.join("var/tmp/zz2").exists());
    assert!(t.join("proj/.up.burrow-work/work").is_dir());
}

#[test]
fn a_lower_layer_swapped_through_a_bind_does_not_lead_out() {
    let t = TempDir::new("swap-lower");
    let v = victim(&t);
    let low = t.join("low");
    std::fs::create_dir_all(low.join("d")).unwrap();
    std::fs::write(low.join("d/keep"), "").unwrap();
    std::fs::write(low.join("d/profile"), "lower\n").unwrap();
    let out = output(burrow_run().args(["--layer", low.to_str().unwrap()]).args([
        "--bind",
        low.to_str().unwrap(),
        "/low",
        "--",
        "python3",
        "-c",
        SWAP,
        "/d",
        "/low/d",
        v.to_str().unwrap(),
    ]));
    assert_eq!(out.code, 0, "{out:?}");
    untouched(&out, &v);
}

/// burrowfs over `t`'s l, u and w on m, mounted by this unprivileged user
/// (through fusermount3), as `mount -t fuse.burrowfs` would.
struct Mounted<'a>(&'a TempDir);

impl<'a> Mounted<'a> {
    fn new(t: &'a TempDir) -> Mounted<'a> {
        for d in ["l", "u", "w", "m"] {
            std::fs::create_dir_all(t.join(d)).unwrap();
        }
        let out = output(
            Command::new(burrowfs_bin())
                .args(["-o", "lowerdir=l,upperdir=u,workdir=w", "m"])
                .current_dir(t.path()),
        );
        assert_eq!(out.code, 0, "{out:?}");
        Mounted(t)
    }
}

impl Drop for Mounted<'_> {
    fn drop(&mut self) {
        let _ = Command::new("fusermount3")
            .arg("-u")
            .arg(self.0.join("m"))
            .status();
    }
}

/// The attack from another process of the host: the layers of a burrowfs
/// mount changed beside it while a directory of the mount is held open.
fn swap_beside_a_mount(t: &TempDir, layer: &str) -> Output {
    let v = victim(t);
    let out = output(
        Command::new("python3")
            .args(["-c", SWAP])
            .arg(t.join("m/d"))
            .arg(t.join(layer).join("d"))
            .arg(&v),
    );
    untouched(&out, &v);
    out
}

#[test]
fn an_upper_layer_changed_beside_a_burrowfs_mount_does_not_lead_out() {
    assert_unprivileged();
    let t = TempDir::new("swap-mounted-upper");
    let _m = Mounted::new(&t);
    std::fs::create_dir(t.join("m/d")).unwrap();
    std::fs::write(t.join("m/d/keep"), "").unwrap();
    std::fs::write(t.join("m/d/profile"), "union\n").unwrap();
    assert!(
        t.join("u/d/profile").exists(),
        "the directory is in the upper layer"
    );
    swap_beside_a_mount(&t, "u");
}

#[test]
fn a_lower_layer_changed_beside_a_burrowfs_mount_does_not_lead_out() {
    assert_unprivileged();
    let t = TempDir::new("swap-mounted-lower");
    std::fs::create_dir_all(t.join("l/d")).unwrap();
    std::fs::write(t.join("l/d/keep"), "").unwrap();
    std::fs::write(t.join("l/d/profile"), "lower\n").unwrap();
    let _m = Mounted::new(&t);
    assert_eq!(
        std::fs::read_to_string(t.join("m/d/profile")).unwrap(),
        "lower\n"
    );
    swap_beside_a_mount(&t, "l");
}

#[test]
fn a_work_directory_changed_beside_a_burrowfs_mount_does_not_lead_out() {
    // The work directory (`w/work`) swapped for a symlink after the first
    // whiteout, then every operation that builds in it done again through
    // the mount: burrowfs must not build in the victim.
    assert_unprivileged();
    let t = TempDir::new("swap-mounted-work");
    let v = t.join("victim");
    std::fs::create_dir(&v).unwrap();
    std::fs::create_dir(t.join("l")).unwrap();
    for f in ["a", "b", "c"] {
        std::fs::write(t.join("l").join(f), "lower\n").unwrap();
    }
    let _m = Mounted::new(&t);
    let m = t.join("m");
    std::fs::remove_file(m.join("a")).unwrap();
    let work = t.join("w/work");
    assert!(work.is_dir(), "burrowfs works in w/work");
    std::fs::rename(&work, t.join("w/moved")).unwrap();
    std::os::unix::fs::symlink(&v, &work).unwrap();
    let out = output(
        Command::new("sh")
            .arg("-c")
            .arg("echo new > a; rm b; mkdir b; rm c; cat a; ls")
            .current_dir(&m),
    );
    assert!(out.stdout.starts_with("new\n"), "{out:?}");
    assert!(!out.stdout.contains("\nc\n"), "{out:?}");
    assert_eq!(out.code, 0, "{out:?}");
    assert!(
        listing(&v).is_empty(),
        "burrowfs built in the victim: {:?}",
        listing(&v)
    );
}

/// pjdfstest's NN/03.t for each call: a relative path of PATH_MAX - 1
/// bytes (4095) inside the mount, made of 254-byte names. The kernel takes
/// it; so must burrowfs, whose layers' own paths are longer still.
const LONG_PATHS: &str = r#"
import os, stat
prefix = '/'.join(['d' * 254] * 16)           # 4079 bytes
def at(name): return prefix + '/' + name       # 4095 bytes with a 15-byte name
p, q, r = at('f' * 15), at('g' * 15), at('h' * 15)
assert len(p) == 4095
calls = [
    ('open', lambda: os.close(os.open(p, os.O_CREAT | os.O_WRONLY, 0o644))),
    ('ftruncate', lambda: os.ftruncate(os.open(p, os.O_WRONLY), 7)),
    ('truncate', lambda: os.truncate(p, 3)),
    ('chmod', lambda: os.chmod(p, 0o600)),
    ('chown', lambda: os.chown(p, os.getuid(), os.getgid())),
    ('link', lambda: os.link(p, q)),
    ('unlink', lambda: os.unlink(q)),
    ('rename', lambda: os.rename(p, r)),
    ('mkdir', lambda: os.mkdir(q, 0o755)),
    ('rmdir', lambda: os.rmdir(q)),
    ('mkfifo', lambda: os.mkfifo(q)),
    ('unlink-fifo', lambda: os.unlink(q)),
    ('mknod', lambda: os.mknod(q, 0o644 | stat.S_IFIFO)),
    ('unlink-node', lambda: os.unlink(q)),
    ('symlink', lambda: os.symlink('target', q)),
    ('readlink', lambda: os.readlink(q) == 'target' or 1 / 0),
    ('unlink-symlink', lambda: os.unlink(q)),
    ('stat', lambda: os.stat(r).st_size == 3 or 1 / 0),
]
for name, call in calls:
    try:
        call(); print(name, 'ok')
    except OSError as e:
        print(name, os.strerror(e.errno))
"#;

#[test]
fn paths_of_path_max_minus_one_bytes_work_in_every_call() {
    assert_unprivileged();
    let t = TempDir::new("long-paths");
    // The directories come from the lower layer: copied up on the way.
    std::fs::create_dir(t.join("l")).unwrap();
    let out = output(
        Command::new("python3")
            .args(["-c", "import os; os.makedirs('/'.join(['d' * 254] * 16))"])
            .current_dir(t.join("l")),
    );
    assert_eq!(out.code, 0, "{out:?}");
    let _m = Mounted::new(&t);
    let out = output(
        Command::new("python3")
            .args(["-c", LONG_PATHS])
            .current_dir(t.join("m")),
    );
    assert_eq!(out.code, 0, "{out:?}");
    let failed: Vec<&str> = out.stdout.lines().filter(|l| !l.ends_with(" ok")).collect();
    assert!(failed.is_empty(), "calls that failed: {failed:?}");
    assert_eq!(out.stdout.lines().count(), 18, "{out:?}");
    // They happened in the upper layer, whose own paths are longer than
    // PATH_MAX.
    let upper_path = format!("{}/{}", t.join("u").display(), "d".repeat(254));
    assert!(upper_path.len() + 4095 - 254 > 4096);
    assert!(t.join("u").join("d".repeat(254)).is_dir());
}

#[test]
fn the_host_root_union_shows_no_host_proc_tmp_dev_or_run() {
    // Host state the union must not show: this test's own files in the
    // host's /tmp (TMPDIR is under it), the host's pids and devices.
    let t = TempDir::new("sealed");
    let marker = t.join("host-marker");
    std::fs::write(&marker, "").unwrap();
    assert!(Path::new("/proc/1").exists() && Path::new("/dev/null").exists());
    // Root inside with every capability binds the union's root elsewhere:
    // it sees only what the union itself holds below the sandbox's own
    // /proc, /tmp and /dev (and /run/mount, which mount(8) itself makes).
    let out = sh(
        &["--cap-add", "ALL"],
        &format!(
            "mkdir /var/tmp/u-$$ && mount --bind / /var/tmp/u-$$ && cd /var/tmp/u-$$ && \
             test -f etc/passwd && echo bound; \
             for d in proc sys dev tmp run; do echo \"$d: $(ls -A $d | grep -vx mount | wc -l)\"; done; \
             ls .{} 2>&1; ls -A /proc | grep -c '^[0-9]'",
            marker.display()
        ),
    );
    assert_eq!(out.code, 0, "{out:?}");
    let lines: Vec<&str> = out.stdout.lines().collect();
    assert_eq!(lines[0], "bound", "{out:?}");
    for (i, d) in ["proc", "sys", "dev", "tmp", "run"].iter().enumerate() {
        assert_eq!(lines[i + 1], format!("{d}: 0"), "{out:?}");
    }
    assert!(
        lines[6].contains("No such file"),
        "the host's /tmp shows: {out:?}"
    );
    // Control: the sandbox's own /proc is there, with its own pids only.
    let pids: u32 = lines[7].parse().unwrap();
    assert!((1..10).contains(&pids), "{out:?}");
}

#[test]
fn a_fuse_mount_of_the_caller_below_the_host_root_is_an_empty_directory() {
    // The caller's own FUSE mount (an sshfs, say; here a burrowfs) under
    // its home, which the default root shows: the union does not walk
    // into it. Only disk filesystems are crossed below the host's /.
    let Some(t) = in_home("fuse-below") else {
        return;
    };
    std::fs::create_dir(t.join("l")).unwrap();
    std::fs::write(t.join("l/visible-on-the-host"), "x\n").unwrap();
    let _m = Mounted::new(&t);
    let m = t.join("m");
    assert!(
        m.join("visible-on-the-host").exists(),
        "the mount works on the host"
    );
    let out = sh(
        &[],
        &format!(
            "ls -A {m}; echo listed; ls {m}/visible-on-the-host 2>&1; true",
            m = m.display()
        ),
    );
    assert_eq!(out.code, 0, "{out:?}");
    let lines: Vec<&str> = out.stdout.lines().collect();
    assert_eq!(
        lines[0], "listed",
        "the union shows the FUSE mount's files: {out:?}"
    );
    assert!(lines[1].contains("No such file"), "{out:?}");
    // Control: the directory beside it, on the home's disk, is shown.
    let out = sh(&[], &format!("ls {}", t.join("l").display()));
    assert_eq!(out.ok(), "visible-on-the-host\n");
}

#[test]
fn a_fifo_swapped_in_for_a_file_does_not_hang_the_union() {
    // The kernel still takes /f for the regular file it looked up; a FIFO
    // put in its place in the lower layer (through the bind) must not
    // block burrowfs in open(2) while it holds the union's state.
    let t = TempDir::new("fifo-swap");
    let low = t.join("low");
    std::fs::create_dir(&low).unwrap();
    std::fs::write(low.join("f"), "data\n").unwrap();
    let out = output(
        burrow_run()
            .args(["--layer", low.to_str().unwrap()])
            .args(["--bind", low.to_str().unwrap(), "/low"])
            .args([
                "--",
                "sh",
                "-c",
                "stat -c %F /f; rm /low/f; mkfifo /low/f; timeout 5 cat /f; echo \"cat: $?\"; \
                 ls / > /dev/null && echo responsive",
            ]),
    );
    assert_eq!(out.code, 0, "{out:?}");
    let lines: Vec<&str> = out.stdout.lines().collect();
    assert_eq!(lines.first(), Some(&"regular file"), "{out:?}");
    // Refused at once (not ended by timeout's 124), and the union answers.
    assert!(
        lines
            .iter()
            .any(|l| l.starts_with("cat: ") && *l != "cat: 124" && *l != "cat: 0"),
        "{out:?}"
    );
    assert_eq!(lines.last(), Some(&"responsive"), "{out:?}");
}

#[test]
fn a_deep_tree_left_in_the_work_directory_does_not_stop_the_next_mount() {
    // A tree in the work directory deeper than burrowfs removes (1 100
    // levels: a descriptor each would pass the usual limit of 1 024), left
    // there by another of the caller's processes (the sandbox itself sees
    // the work directory read-only); the next run with the same --upper
    // still starts, with that tree set aside.
    let t = TempDir::new("deep-work");
    std::fs::create_dir(t.join("proj")).unwrap();
    let upper = t.join("proj/up");
    let first = sh(&["--upper", upper.to_str().unwrap()], "echo first");
    assert_eq!(first.ok(), "first\n", "{first:?}");
    let work = t.join("proj/.up.burrow-work");
    let deep = output(
        Command::new("python3")
            .args([
                "-c",
                "import os\nos.chdir('work')\n\
                 for _ in range(1100):\n    os.mkdir('a'); os.chdir('a')\nprint('deep')",
            ])
            .current_dir(&work),
    );
    assert_eq!(deep.ok(), "deep\n");
    let second = sh(&["--upper", upper.to_str().unwrap()], "echo started");
    assert_eq!(second.ok(), "started\n", "{second:?}");
    let names: Vec<String> = listing(&work);
    assert!(
        names.iter().any(|n| n.starts_with("work.stale-")),
        "{names:?}"
    );
    // (The test's own clean-up cannot remove 1 100 levels with std either.)
    let _ = Command::new("rm").arg("-rf").arg(&work).status();
}

/// A temporary directory under $HOME: on the host's disk, outside the
/// directories the union seals (TMPDIR is under /tmp).
fn in_home(tag: &str) -> Option<TempDir> {
    let Some(home) = std::env::var_os("HOME").map(PathBuf::from) else {
        skipped("no HOME to mount under");
        return None;
    };
    Some(TempDir::in_dir(&home, tag))
}

/// A process held stopped (SIGSTOP) while this lives.
struct Stopped(nix::unistd::Pid);

impl Drop for Stopped {
    fn drop(&mut self) {
        let _ = nix::sys::signal::kill(self.0, nix::sys::signal::Signal::SIGCONT);
    }
}

#[test]
fn a_stopped_fuse_server_below_the_host_root_does_not_hold_the_union_up() {
    // A FUSE mount whose server no longer answers (a hung sshfs, a
    // stopped one; a network filesystem gone away is the same): the
    // union shows it as an empty directory without asking it anything.
    let Some(t) = in_home("fuse-stopped") else {
        return;
    };
    std::fs::create_dir(t.join("l")).unwrap();
    let _m = Mounted::new(&t);
    let server = burrowfs_server_in(t.path()).expect("the burrowfs server of the mount");
    nix::sys::signal::kill(server, nix::sys::signal::Signal::SIGSTOP).unwrap();
    let _stopped = Stopped(server);
    let m = t.join("m");
    let out = sh(
        &[],
        &format!(
            "ls -A {t}; stat -c %F {m}; ls -A {m} | wc -l",
            t = t.path().display(),
            m = m.display()
        ),
    );
    assert_eq!(out.ok(), "l\nm\nu\nw\ndirectory\n0\n", "{out:?}");
}

//! burrowfs as a program: its command line, mounting with and without a
//! user namespace, mount(8) through mount.fuse3, clean exits, bad input,
//! and crash safety of copy-up.

use std::path::{Path, PathBuf};
use std::process::Command;

use burrow_tests::*;

fn burrowfs_bin() -> PathBuf {
    burrow_bin().with_file_name("burrowfs")
}

/// A lower layer with a file, plus empty upper, work and mount directories.
fn layers(tag: &str) -> TempDir {
    let t = TempDir::new(tag);
    for d in ["l", "u", "w", "m"] {
        std::fs::create_dir(t.join(d)).unwrap();
    }
    std::fs::write(t.join("l/file"), "from lower\n").unwrap();
    t
}

/// Runs `script` with sh in a new user and mount namespace, in `dir`, with
/// $BURROWFS set and burrowfs' directory first in PATH.
fn in_userns(dir: &Path, script: &str) -> Output {
    assert_unprivileged();
    let bin = burrowfs_bin();
    let path = format!(
        "{}:{}",
        bin.parent().unwrap().display(),
        std::env::var("PATH").unwrap_or_default()
    );
    output(
        Command::new("unshare")
            .args(["--user", "--map-root-user", "--mount", "sh", "-c", script])
            .current_dir(dir)
            .env("BURROWFS", &bin)
            .env("PATH", path),
    )
}

/// burrowfs over `t`'s l, u and w on `m`, as this (unprivileged) user:
/// through fusermount3.
fn mount_as_user(t: &TempDir, m: &Path) -> Output {
    output(
        Command::new(burrowfs_bin())
            .args(["-o", "lowerdir=l,upperdir=u,workdir=w"])
            .arg(m)
            .current_dir(t.path()),
    )
}

#[track_caller]
fn one_line_error(out: &Output, needle: &str) {
    assert_eq!(out.code, 1, "{out:?}");
    let lines: Vec<&str> = out.stderr.lines().collect();
    assert_eq!(lines.len(), 1, "expected one line: {out:?}");
    assert!(
        lines[0].starts_with("burrowfs: ") && lines[0].contains(needle),
        "{needle:?} not in {out:?}"
    );
}

#[test]
fn bad_input_is_one_line_and_mounts_nothing() {
    assert_unprivileged();
    let t = layers("cli-errors");
    std::fs::create_dir(t.join("l/inner")).unwrap();
    std::fs::create_dir(t.join("locked")).unwrap();
    std::fs::set_permissions(
        t.join("locked"),
        std::os::unix::fs::PermissionsExt::from_mode(0o000),
    )
    .unwrap();
    let shm = TempDir::new("cli-shm-probe");
    let other_fs_work = Path::new("/dev/shm").join(format!("burrowfs-work-{}", unique_token()));
    std::fs::create_dir_all(&other_fs_work).unwrap();
    let before = host_mount_count();
    let run = |opts: &str| {
        output(
            Command::new(burrowfs_bin())
                .args(["-o", opts])
                .arg(t.join("m"))
                .current_dir(t.path()),
        )
    };
    one_line_error(
        &run("lowerdir=/nonexistent/layer"),
        "lowerdir /nonexistent/layer: No such file or directory",
    );
    one_line_error(&run("lowerdir=locked"), "lowerdir");
    one_line_error(&run("lowerdir=l,upperdir=l/inner,workdir=w"), "overlap");
    let other = format!("lowerdir=l,upperdir=u,workdir={}", other_fs_work.display());
    if std::fs::metadata("/dev/shm")
        .map(|m| std::os::unix::fs::MetadataExt::dev(&m))
        .ok()
        != std::fs::metadata(t.path())
            .map(|m| std::os::unix::fs::MetadataExt::dev(&m))
            .ok()
    {
        one_line_error(&run(&other), "is not on the same filesystem as upperdir");
    }
    one_line_error(&run("lowerdir=l,upperdir=u"), "needs workdir");
    one_line_error(&run("upperdir=u,workdir=w"), "missing lowerdir");
    one_line_error(&run("lowerdir=l,plugins=x"), "not supported yet");
    one_line_error(&run("lowerdir=l,uidmapping=0:1000"), "option uidmapping");
    assert_eq!(host_mount_count(), before, "something stayed mounted");
    let _ = std::fs::remove_dir_all(&other_fs_work);
    drop(shm);
}

#[test]
fn unprivileged_mount_through_fusermount() {
    let t = layers("cli-fusermount");
    let m = t.join("m");
    let out = mount_as_user(&t, &m);
    assert_eq!(out.code, 0, "{out:?}");
    let content = std::fs::read_to_string(m.join("file"));
    std::fs::write(m.join("new"), "written\n").unwrap();
    // A second mount of the same upper layer is refused while this one runs.
    std::fs::create_dir(t.join("m2")).unwrap();
    let second = mount_as_user(&t, &t.join("m2"));
    let unmounted = Command::new("fusermount3")
        .arg("-u")
        .arg(&m)
        .status()
        .unwrap();
    assert_eq!(content.unwrap(), "from lower\n");
    assert!(unmounted.success());
    one_line_error(&second, "is in use by another mount");
    assert_eq!(
        std::fs::read_to_string(t.join("u/new")).unwrap(),
        "written\n"
    );
    assert!(!m.join("file").exists(), "still mounted");
}

/// Where mount.fuse3 finds helpers: its shell's default PATH (mount(8)
/// does not pass the caller's).
const HELPER_PATH: [&str; 6] = [
    "/usr/local/sbin",
    "/usr/local/bin",
    "/usr/sbin",
    "/usr/bin",
    "/sbin",
    "/bin",
];

#[test]
fn mount_fuse3_runs_burrowfs() {
    let installed = HELPER_PATH
        .iter()
        .map(|d| Path::new(d).join("burrowfs"))
        .find(|p| p.exists());
    let under_test = std::fs::read(burrowfs_bin()).unwrap();
    match installed {
        None => {
            skipped("burrowfs is not installed where mount.fuse3 looks (make install)");
            return;
        }
        Some(p) if std::fs::read(&p).unwrap_or_default() != under_test => {
            skipped(&format!(
                "{} is not the build under test (make install)",
                p.display()
            ));
            return;
        }
        Some(_) => {}
    }
    let t = layers("cli-mountfuse");
    let out = in_userns(
        t.path(),
        "mount -t fuse.burrowfs union m -o lowerdir=$PWD/l,upperdir=$PWD/u,workdir=$PWD/w && \
         cat m/file && grep ' fuse.burrowfs union ' /proc/self/mountinfo | wc -l && umount m",
    );
    if out.stderr.contains("unknown filesystem type") {
        skipped("mount(8) has no FUSE helper (mount.fuse3) here");
        return;
    }
    assert_eq!(out.code, 0, "{out:?}");
    assert_eq!(out.stdout, "from lower\n1\n", "{out:?}");
}

#[test]
fn sigterm_unmounts_and_unmount_ends_the_process() {
    let t = layers("cli-signals");
    let out = in_userns(
        t.path(),
        r#"mnt() { grep -c " $PWD/m " /proc/self/mountinfo; }
        "$BURROWFS" -f -o lowerdir=l,upperdir=u,workdir=w m & pid=$!
        for i in $(seq 100); do [ "$(mnt)" = 1 ] && break; sleep 0.05; done
        echo "mounted $(mnt)"; kill -TERM $pid; wait $pid; echo "term exit $? mounted $(mnt)"
        "$BURROWFS" -f -o lowerdir=l,upperdir=u,workdir=w m & pid=$!
        for i in $(seq 100); do [ "$(mnt)" = 1 ] && break; sleep 0.05; done
        umount m; wait $pid; echo "umount exit $? mounted $(mnt)""#,
    );
    assert_eq!(
        out.stdout, "mounted 1\nterm exit 0 mounted 0\numount exit 0 mounted 0\n",
        "{out:?}"
    );
}

#[test]
fn killed_during_copy_up_leaves_no_partial_file() {
    let t = layers("cli-crash");
    // A large lower file, so that copy-up takes a while.
    let big = t.join("l/big");
    {
        let f = std::fs::File::create(&big).unwrap();
        let chunk = vec![0x5au8; 1 << 20];
        for _ in 0..256 {
            std::io::Write::write_all(&mut &f, &chunk).unwrap();
        }
    }
    let out = in_userns(
        t.path(),
        r#""$BURROWFS" -f -o lowerdir=l,upperdir=u,workdir=w m & pid=$!
        for i in $(seq 100); do grep -q " $PWD/m " /proc/self/mountinfo && break; sleep 0.05; done
        (echo x >> m/big) 2>/dev/null & writer=$!
        # Wait until the copy is under way in the work directory, then kill.
        for i in $(seq 2000); do [ -n "$(ls -A w/work 2>/dev/null)" ] && break; sleep 0.001; done
        echo "in work: $(ls -A w/work | wc -l)"
        kill -9 $pid; wait $pid; umount -l m; wait $writer
        echo "upper after crash: $(ls -A u | wc -l)"
        "$BURROWFS" -o lowerdir=l,upperdir=u,workdir=w m
        echo "work after remount: $(ls -A w/work | wc -l)"
        cmp l/big m/big && echo "union shows the lower file"
        umount m"#,
    );
    assert_eq!(
        out.stdout,
        "in work: 1\nupper after crash: 0\nwork after remount: 0\nunion shows the lower file\n",
        "{out:?}"
    );
    let meta = std::fs::metadata(&big).unwrap();
    assert_eq!(meta.len(), 256 << 20, "the lower file changed");
}

#[test]
fn uid_and_gid_mappings_and_squashing() {
    if !has_subordinate_ids() {
        skipped("showing several ids needs subordinate ids in the user namespace");
        return;
    }
    let t = layers("cli-idmap");
    // In the namespace: 0 is this user, 1.. its subordinate ids. Stored id
    // 0 is shown as 1000, stored 1..999 as 1..999 (STORED:SHOWN:COUNT, as
    // fuse-overlayfs reads it).
    let out = output(
        Command::new("unshare")
            .args(["--user", "--map-auto", "--map-root-user", "--mount", "sh", "-c"])
            .arg(
                r#"set -e
                chown 5:5 l && chown 0:0 l/file
                "$BURROWFS" -o lowerdir=l,upperdir=u,workdir=w,uidmapping=0:1000:1:1:1:999,gidmapping=0:1000:1:1:1:999 m
                stat -c 'shown %u:%g' m/file
                setpriv --reuid=1000 --regid=1000 --clear-groups sh -c 'echo mine > m/file2'
                stat -c 'new file stored %u:%g' u/file2
                chown 1000:5 m/file
                stat -c 'stored %u:%g' u/file
                chown 2000 m/file 2>&1 | grep -c 'Invalid argument'
                umount m
                "$BURROWFS" -o lowerdir=l,squash_to_root m
                stat -c 'squashed %u:%g' m/file m
                umount m"#,
            )
            .current_dir(t.path())
            .env("BURROWFS", burrowfs_bin()),
    );
    assert_eq!(
        out.stdout,
        "shown 1000:1000\nnew file stored 0:0\nstored 0:5\n1\nsquashed 0:0\nsquashed 0:0\n",
        "{out:?}"
    );
}

#[test]
fn o_tmpfile_is_refused_cleanly() {
    // The kernel asks with FUSE_TMPFILE, which fuser 0.18 does not pass on:
    // burrowfs can only refuse, as fuse-overlayfs does. It must refuse at
    // once with EOPNOTSUPP (programs then fall back), never hang or EIO.
    let t = layers("cli-tmpfile");
    let m = t.join("m");
    let out = mount_as_user(&t, &m);
    assert_eq!(out.code, 0, "{out:?}");
    let res = nix::fcntl::open(
        &m,
        nix::fcntl::OFlag::O_TMPFILE | nix::fcntl::OFlag::O_RDWR,
        nix::sys::stat::Mode::from_bits_truncate(0o600),
    );
    let unmounted = Command::new("fusermount3")
        .arg("-u")
        .arg(&m)
        .status()
        .unwrap();
    assert!(unmounted.success());
    assert_eq!(res.err(), Some(nix::errno::Errno::EOPNOTSUPP));
}

/// Whether this process may use FUSE passthrough (CAP_SYS_ADMIN in the
/// initial user namespace: real root).
fn admin_of_initial_namespace() -> bool {
    let initial = std::fs::read_to_string("/proc/self/uid_map")
        .is_ok_and(|m| m.split_whitespace().collect::<Vec<_>>() == ["0", "0", "4294967295"]);
    initial && nix::unistd::geteuid().is_root()
}

/// Lazily unmounts a mount point when dropped (a failed assertion must
/// not leave the mount behind).
struct Unmount(PathBuf);

impl Drop for Unmount {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("-l").arg(&self.0).status();
    }
}

/// FUSE passthrough is for real root only: `make test` runs this one test
/// a second time as root (scripts/run-tests.sh); as the unprivileged
/// account it is skipped.
#[test]
fn passthrough_as_real_root() {
    if !admin_of_initial_namespace() {
        skipped("FUSE passthrough needs CAP_SYS_ADMIN in the initial user namespace (real root)");
        return;
    }
    for passthrough in ["auto", "off"] {
        let t = layers("cli-passthrough");
        std::fs::write(t.join("l/big"), vec![7u8; 3 << 20]).unwrap();
        let m = t.join("m");
        let out = output(
            Command::new(burrowfs_bin())
                .arg("-o")
                .arg(format!(
                    "lowerdir=l,upperdir=u,workdir=w,passthrough={passthrough}"
                ))
                .arg(&m)
                .current_dir(t.path()),
        );
        assert_eq!(out.code, 0, "{out:?}");
        let _unmount = Unmount(m.clone());
        // Reads and writes through the mount, whoever serves them.
        assert_eq!(std::fs::read(m.join("big")).unwrap(), vec![7u8; 3 << 20]);
        std::fs::write(m.join("new"), "one\n").unwrap();
        let mut f = std::fs::OpenOptions::new()
            .append(true)
            .open(m.join("new"))
            .unwrap();
        std::io::Write::write_all(&mut f, b"two\n").unwrap();
        drop(f);
        assert_eq!(
            std::fs::read_to_string(m.join("new")).unwrap(),
            "one\ntwo\n"
        );
        // A lower file held open for reading, then opened for writing: with
        // passthrough the reader's backing file is the lower one and the
        // writer's would be the copy, which the kernel does not allow for
        // one inode: EBUSY until the reader closes. Served, it just works.
        let reader = std::fs::File::open(m.join("file")).unwrap();
        // (Reading the backing file's content through passthrough.)
        assert_eq!(std::io::read_to_string(&reader).unwrap(), "from lower\n");
        let second = std::fs::OpenOptions::new()
            .append(true)
            .open(m.join("file"));
        match passthrough {
            "auto" => assert_eq!(
                second.as_ref().map(drop).map_err(|e| e.raw_os_error()),
                Err(Some(libc::EBUSY)),
                "passthrough is not in use"
            ),
            _ => assert!(second.is_ok(), "{second:?}"),
        }
        drop((reader, second));
        std::fs::OpenOptions::new()
            .append(true)
            .open(m.join("file"))
            .and_then(|mut f| std::io::Write::write_all(&mut f, b"more\n"))
            .unwrap();
        assert_eq!(
            std::fs::read_to_string(m.join("file")).unwrap(),
            "from lower\nmore\n"
        );
        assert!(Command::new("umount").arg(&m).status().unwrap().success());
        assert_eq!(
            std::fs::read_to_string(t.join("u/file")).unwrap(),
            "from lower\nmore\n"
        );
        assert_eq!(
            std::fs::read_to_string(t.join("l/file")).unwrap(),
            "from lower\n"
        );
    }
}

#[test]
fn version_is_printed_and_exits_zero() {
    // podman runs `mount_program --version` for `podman info`.
    let out = output(Command::new(burrowfs_bin()).arg("--version"));
    assert_eq!(out.code, 0, "{out:?}");
    assert_eq!(
        out.stdout,
        format!("burrowfs: version {}\n", env!("CARGO_PKG_VERSION"))
    );
}

/// `xattr_permissions=2` (fuse-overlayfs' option): files show the owner,
/// mode and type their `user.containers.override_stat` xattr records; the
/// mount never shows that xattr nor lets anyone set it (a file marked
/// "0:0:04755" would be set-user-ID root's); a chmod of such a file
/// changes its override, in the upper layer, and keeps its on-disk mode.
/// burrowfs over `t`'s l, u and w on m with more options `opts`
/// (",xattr_permissions=2"), mounted through fusermount3; its server.
fn mount_with(t: &TempDir, opts: &str) -> nix::unistd::Pid {
    let out = output(
        Command::new(burrowfs_bin())
            .args(["-o", &format!("lowerdir=l,upperdir=u,workdir=w{opts}")])
            .arg(t.join("m"))
            .current_dir(t.path()),
    );
    assert_eq!(out.code, 0, "{out:?}");
    burrowfs_server_in(t.path()).expect("the mount's server")
}

#[test]
fn override_stat_xattrs_are_presented_and_cannot_be_forged() {
    use std::os::unix::fs::{FileTypeExt, MetadataExt, PermissionsExt};
    const KEY: &str = "user.containers.override_stat";
    assert_unprivileged();
    let t = layers("cli-override");
    let me = nix::unistd::getuid().as_raw();
    let set = |name: &str, value: String| {
        let path = t.join(&format!("l/{name}"));
        std::fs::write(&path, "data\n").unwrap();
        if let Err(e) = xattr::set(&path, KEY, value.as_bytes()) {
            panic!("user xattrs on {}: {e}", path.display());
        }
    };
    set("owned", "33:34:0644".into());
    set("mine", format!("{me}:{me}:04755"));
    set("null", "0:0:0666:char-1-3".into());
    set("suid", format!("{me}:{me}:06755"));
    std::fs::set_permissions(t.join("l/mine"), std::fs::Permissions::from_mode(0o644)).unwrap();
    let m = t.join("m");
    let mount = |opts: &str| mount_with(&t, opts);
    let unmount = |server| unmount_and_wait(&m, server);
    let server = mount(",xattr_permissions=2");
    let owned = std::fs::symlink_metadata(m.join("owned")).unwrap();
    let null = std::fs::symlink_metadata(m.join("null")).unwrap();
    let listed = xattr::list(m.join("owned")).map(|l| l.collect::<Vec<_>>());
    let read = xattr::get(m.join("owned"), KEY);
    std::fs::write(m.join("new"), "new\n").unwrap();
    let forged_new = xattr::set(m.join("new"), KEY, b"0:0:04755");
    let forged_lower = xattr::set(m.join("mine"), KEY, b"0:0:04755");
    let mine_before = std::fs::metadata(m.join("mine")).unwrap();
    let chmod = std::fs::set_permissions(m.join("mine"), std::fs::Permissions::from_mode(0o700));
    let mine_after = std::fs::metadata(m.join("mine")).unwrap();
    let new_meta = std::fs::metadata(m.join("new")).unwrap();
    // A write by one without CAP_FSETID clears set-user-ID and (with group
    // execute) set-group-ID: in the override, which holds them.
    let written = std::fs::OpenOptions::new()
        .append(true)
        .open(m.join("suid"))
        .and_then(|mut f| std::io::Write::write_all(&mut f, b"more\n"));
    let suid_after = std::fs::metadata(m.join("suid")).unwrap();
    unmount(server);
    written.unwrap();
    assert_eq!(suid_after.mode(), 0o100755);

    assert_eq!((owned.uid(), owned.gid(), owned.mode()), (33, 34, 0o100644));
    assert!(null.file_type().is_char_device(), "{null:?}");
    assert_eq!((null.rdev(), null.len()), (libc::makedev(1, 3), 0));
    assert_eq!(listed.unwrap(), Vec::<std::ffi::OsString>::new());
    assert!(matches!(read, Ok(None)), "{read:?}");
    for forged in [&forged_new, &forged_lower] {
        assert_eq!(
            forged.as_ref().map_err(|e| e.raw_os_error()),
            Err(Some(libc::EPERM))
        );
    }
    assert_eq!(new_meta.mode() & 0o7000, 0);
    assert_eq!((mine_before.uid(), mine_before.mode()), (me, 0o104755));
    chmod.unwrap();
    assert_eq!(mine_after.mode(), 0o100700);
    // Copied up with its override, changed there; the lower one untouched.
    let upper = t.join("u/mine");
    assert_eq!(
        xattr::get(&upper, KEY).unwrap().unwrap(),
        format!("{me}:{me}:0700").into_bytes()
    );
    assert_eq!(std::fs::metadata(&upper).unwrap().mode() & 0o7777, 0o644);
    assert_eq!(
        xattr::get(t.join("l/mine"), KEY).unwrap().unwrap(),
        format!("{me}:{me}:04755").into_bytes()
    );

    // Not presented without the option, and still not the mount's to show.
    let server = mount("");
    let plain = std::fs::symlink_metadata(m.join("owned")).unwrap();
    let read = xattr::get(m.join("owned"), KEY);
    unmount(server);
    assert_eq!((plain.uid(), plain.mode() & 0o7777), (me, 0o644));
    assert!(matches!(read, Ok(None)), "{read:?}");
}

#[test]
fn recorded_xattrs_show_under_their_own_names_and_cannot_be_forged() {
    // A layer keeps security.capability, which its unprivileged writer
    // cannot set, as user.burrow.xattr.security.capability; presented, the
    // mount shows it (and only it) as security.capability.
    const CAP: &str = "security.capability";
    const RECORD: &str = "user.burrow.xattr.security.capability";
    assert_unprivileged();
    let t = layers("cli-xattrs");
    let cap = [
        1u8, 0, 0, 2, 0, 32, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
    ];
    let ping = t.join("l/ping");
    std::fs::write(&ping, "binary\n").unwrap();
    xattr::set(&ping, RECORD, &cap).unwrap();
    xattr::set(&ping, "user.note", b"kept").unwrap();
    let m = t.join("m");
    let mount = |opts: &str| mount_with(&t, opts);
    let unmount = |server| unmount_and_wait(&m, server);
    let names = |p: &Path| {
        let mut v: Vec<String> = xattr::list(p)
            .unwrap()
            .map(|n| n.to_string_lossy().into_owned())
            .collect();
        v.sort();
        v
    };
    let server = mount(",xattr_permissions=2");
    let shown = xattr::get(m.join("ping"), CAP);
    let listed = names(&m.join("ping"));
    let record = xattr::get(m.join("ping"), RECORD);
    let forged = xattr::set(m.join("file"), RECORD, &cap);
    // (Setting security.* through a mount the caller made in the initial
    // namespace is the kernel's to refuse; inside a sandbox it reaches
    // burrowfs: see image_commit.rs.)
    unmount(server);
    assert_eq!(shown.unwrap(), Some(cap.to_vec()));
    assert_eq!(listed, ["security.capability", "user.note"]);
    assert!(matches!(record, Ok(None)), "{record:?}");
    assert_eq!(forged.map_err(|e| e.raw_os_error()), Err(Some(libc::EPERM)));

    // Not presented without the option: the record stays hidden.
    let server = mount("");
    let plain = xattr::get(m.join("ping"), CAP);
    let listed = names(&m.join("ping"));
    unmount(server);
    assert!(matches!(plain, Ok(None)), "{plain:?}");
    assert_eq!(listed, ["user.note"]);
}

//! POSIX details FUSE overlays often get wrong, checked on burrow's union
//! root (served by burrowfs).

use burrow_tests::*;
use std::path::Path;
use std::time::Duration;

#[test]
fn umask_is_honoured_on_create() {
    let out = sh(&AS_ROOT, "umask 027; touch /srv/f; mkdir /srv/d; mkfifo /srv/p; stat -c '%a %n' /srv/f /srv/d /srv/p");
    assert_eq!(out.ok(), "640 /srv/f\n750 /srv/d\n640 /srv/p\n");
}

#[test]
fn setuid_is_cleared_by_a_non_owners_write_and_by_chown() {
    if !has_subordinate_ids() {
        skipped("a second user in the sandbox needs subordinate ids");
        return;
    }
    let out = sh(
        &AS_ROOT,
        "touch /srv/s && chmod 4777 /srv/s && \
         setpriv --reuid=1000 --regid=1000 --clear-groups sh -c 'echo x >> /srv/s' && stat -c %a /srv/s; \
         touch /srv/t && chmod 6755 /srv/t && chown 1000:1000 /srv/t && stat -c '%a %u:%g' /srv/t",
    );
    assert_eq!(out.ok(), "777\n755 1000:1000\n");
}

/// burrowfs clears these bits itself (FUSE_HANDLE_KILLPRIV_V2): on a write
/// to a file already written (whose lack of privileges the kernel has
/// remembered) and on a truncate, and the mode the sandbox then sees is the
/// cleared one.
#[test]
fn setuid_is_cleared_by_writes_after_earlier_writes_and_by_truncates() {
    if !has_subordinate_ids() {
        skipped("a second user in the sandbox needs subordinate ids");
        return;
    }
    let out = sh(
        &AS_ROOT,
        "echo a > /srv/w && echo b >> /srv/w && chmod 4777 /srv/w && \
         setpriv --reuid=1000 --regid=1000 --clear-groups sh -c 'echo c >> /srv/w' && \
         stat -c %a /srv/w && cat /srv/w; \
         touch /srv/t && chmod 6777 /srv/t && \
         setpriv --reuid=1000 --regid=1000 --clear-groups truncate -s 1 /srv/t && stat -c %a /srv/t",
    );
    assert_eq!(out.ok(), "777\na\nb\nc\n777\n");
}

#[test]
fn name_and_path_limits() {
    let out = sh(
        &AS_ROOT,
        r#"long=$(printf 'n%.0s' $(seq 256)); touch "/srv/$long" 2>&1 | grep -c 'File name too long'
           ok=$(printf 'n%.0s' $(seq 255)); touch "/srv/$ok" && echo 255-ok"#,
    );
    assert_eq!(out.ok(), "1\n255-ok\n");
}

/// The kernel keeps symlink targets (FUSE_CACHE_SYMLINKS): a symlink
/// replaced by removing it and making another (the upper's file system may
/// hand the new one the old inode number), by renaming another over it,
/// or by a directory of the same name, must never read as the old target.
#[test]
fn a_replaced_symlink_never_reads_as_the_old_one() {
    let out = sh(
        &AS_ROOT,
        "cd /srv; ln -s a l; readlink l; for t in b c d; do rm l; ln -s $t l; readlink l; done; \
         ln -s e l2; mv -T l2 l; readlink l; \
         rm l; mkdir l; test -d l && echo dir; rmdir l; ln -s f l; readlink l; \
         readlink /bin || true",
    );
    let host_bin = std::fs::read_link("/bin")
        .map(|t| format!("{}\n", t.display()))
        .unwrap_or_default();
    assert_eq!(out.ok(), format!("a\nb\nc\nd\ne\ndir\nf\n{host_bin}"));
}

#[test]
fn an_open_unlinked_file_stays_readable_with_no_links() {
    let out = sh(
        &AS_ROOT,
        "exec 3<>/srv/u; echo data >&3; rm /srv/u; test -e /srv/u && echo still-there; \
         stat -L -c 'links %h size %s' /proc/self/fd/3; cat /proc/self/fd/3",
    );
    assert_eq!(out.ok(), "links 0 size 5\ndata\n");
}

/// O_DIRECT goes past the page cache to burrowfs, which (no FUSE opens)
/// must still have the file once its last name is gone: a lower file
/// whited out and an upper file removed, both read and written through
/// descriptors opened before.
#[test]
fn reads_and_writes_reach_a_file_that_lost_its_last_name() {
    let out = sh(
        &AS_ROOT,
        "exec 3</usr/lib/os-release; rm /usr/lib/os-release; test -e /usr/lib/os-release || echo gone; \
         dd if=/proc/self/fd/3 iflag=direct bs=4096 count=1 status=none | head -c 6; echo; \
         exec 4<>/srv/up; printf 'hello world' >&4; rm /srv/up; \
         printf HELLO | dd of=/proc/self/fd/4 oflag=direct conv=notrunc status=none; \
         dd if=/proc/self/fd/4 iflag=direct status=none; echo",
    );
    assert_eq!(out.ok(), "gone\nPRETTY\nHELLO world\n");
}

/// Without FUSE opens burrowfs first hears of a write at the WRITE, which
/// may come after the file's last name is gone: a lower layer's file,
/// opened for writing and then removed, takes writes and truncates in a
/// copy of its own (kernel overlayfs copies it up at the open; a truncate
/// clears set-user-ID there too, and a chmod changes it), and the layer is
/// left as it was. (Before 2026-12-06 the write failed with EIO at close,
/// the truncate with EINVAL, and the chmod did nothing.)
#[test]
fn a_lower_file_written_after_its_last_name_is_gone_is_copied() {
    const SCRIPT: &str = r#"
import mmap, os
def direct(f):  # what burrowfs holds, past the page cache
    fd = os.open('/proc/self/fd/%d' % f.fileno(), os.O_RDONLY | os.O_DIRECT)
    buf = mmap.mmap(-1, 4096)
    n = os.readv(fd, [buf])
    os.close(fd)
    return buf[:n]
f = open('/srv/t/f', 'r+b')
g = open('/srv/t/g', 'ab')
os.unlink('/srv/t/f')
os.unlink('/srv/t/g')
f.seek(0, 2)
f.write(b'+more')
f.flush()
os.fsync(f.fileno())
print(direct(f))
f.truncate(5)
print(direct(f), os.fstat(f.fileno()).st_size)
g.write(b'+g')
g.close()
h = open('/srv/t/h', 'r+b')
os.unlink('/srv/t/h')
h.truncate(1)
print(direct(h), oct(os.fstat(h.fileno()).st_mode & 0o7777))
os.fchmod(h.fileno(), 0o700)
print(oct(os.fstat(h.fileno()).st_mode & 0o7777))
print(os.listdir('/srv/t'))
"#;
    assert_unprivileged();
    let t = TempDir::new("orphan");
    let d = t.join("layer/srv/t");
    std::fs::create_dir_all(&d).unwrap();
    std::fs::write(d.join("f"), "lower data\n").unwrap();
    std::fs::write(d.join("g"), "g\n").unwrap();
    std::fs::write(d.join("h"), "set-user-ID\n").unwrap();
    let setuid = std::os::unix::fs::PermissionsExt::from_mode(0o4755);
    std::fs::set_permissions(d.join("h"), setuid).unwrap();
    let layer = t.join("layer");
    let out = output(burrow_run().args([
        AS_ROOT[0],
        AS_ROOT[1],
        "--layer",
        layer.to_str().unwrap(),
        "--",
        "python3",
        "-c",
        SCRIPT,
    ]));
    assert_eq!(
        out.ok(),
        "b'lower data\\n+more'\nb'lower' 5\nb's' 0o755\n0o700\n[]\n"
    );
    assert_eq!(
        std::fs::read_to_string(d.join("f")).unwrap(),
        "lower data\n"
    );
    assert_eq!(std::fs::read_to_string(d.join("g")).unwrap(), "g\n");
    assert_eq!(
        std::fs::read_to_string(d.join("h")).unwrap(),
        "set-user-ID\n"
    );
}

#[test]
fn creating_and_removing_update_the_parents_times() {
    let out = sh(
        &AS_ROOT,
        "a=$(stat -c %Y /etc); sleep 1.1; touch /etc/burrow-new; b=$(stat -c %Y /etc); \
         sleep 1.1; rm /etc/burrow-new; c=$(stat -c %Y /etc); \
         [ $b -gt $a ] && echo created-later; [ $c -gt $b ] && echo removed-later",
    );
    assert_eq!(out.ok(), "created-later\nremoved-later\n");
}

#[test]
fn hard_links_share_inode_and_count() {
    let out = sh(
        &AS_ROOT,
        "echo one > /srv/h1 && ln /srv/h1 /srv/h2 && stat -c '%h' /srv/h1 && \
         [ $(stat -c %i /srv/h1) = $(stat -c %i /srv/h2) ] && echo same-inode && \
         echo two >> /srv/h2 && cat /srv/h1 && rm /srv/h1 && stat -c '%h' /srv/h2",
    );
    assert_eq!(out.ok(), "2\nsame-inode\none\ntwo\n1\n");
}

#[test]
fn a_new_hard_link_leaves_the_files_owner_alone() {
    if !has_subordinate_ids() {
        skipped("a second owner in the sandbox needs subordinate ids");
        return;
    }
    let out = sh(
        &AS_ROOT,
        "touch /srv/o && chown 1000:1000 /srv/o && ln /srv/o /srv/o2 && \
         stat -c %u:%g /srv/o /srv/o2",
    );
    assert_eq!(out.ok(), "1000:1000\n1000:1000\n");
}

#[test]
fn inode_numbers_survive_copy_up() {
    let out = sh(
        &AS_ROOT,
        "a=$(stat -c %i /etc/hostname); echo x >> /etc/hostname; b=$(stat -c %i /etc/hostname); \
         [ \"$a\" = \"$b\" ] && echo stable",
    );
    assert_eq!(out.ok(), "stable\n");
}

/// Code inside races the server: six processes create, write, append,
/// rename, link, unlink, truncate, chmod and list the same few names at
/// once, directories made and removed among them. Every call succeeds or
/// fails only as such a race allows, the server never stalls, and when it
/// is over the union shows exactly what its upper layer holds on disk.
/// (Before 2026-12-06 a listing taken at OPENDIR went out in READDIRPLUS
/// after its names had changed: the kernel then held dentries of removed
/// files, an append through one failed with EIO at close and an O_CREAT
/// open with ENOENT.)
const FLOOD: &str = r#"
import errno, os, random, stat, sys
D = '/srv/flood'
os.makedirs(D, exist_ok=True)
names = ['f%d' % i for i in range(12)] + ['d%d' % i for i in range(3)]
RACE = {errno.ENOENT, errno.EEXIST, errno.EISDIR, errno.ENOTDIR, errno.ENOTEMPTY}
def work(seed):
    r = random.Random(seed)
    bad = 0
    for _ in range(1500):
        a, b = (os.path.join(D, r.choice(names)) for _ in range(2))
        op = r.randrange(10)
        try:
            if op == 0:
                with open(a, 'wb') as f: f.write(os.urandom(r.randrange(9000)))
            elif op == 1:
                with open(a, 'ab') as f: f.write(b'x' * r.randrange(1, 500))
            elif op == 2: os.rename(a, b)
            elif op == 3: os.link(a, b)
            elif op == 4: os.unlink(a)
            elif op == 5: os.mkdir(a)
            elif op == 6: os.rmdir(a)
            elif op == 7: os.truncate(a, r.randrange(5000))
            elif op == 8: os.chmod(a, r.choice([0o600, 0o644, 0o755]))
            else:
                for n in os.listdir(D):
                    try: os.lstat(os.path.join(D, n))
                    except FileNotFoundError: pass
        except OSError as e:
            # O_CREAT in a directory that is always there: only a directory
            # at the name stops it. A directory cannot be hard-linked (a
            # name may hold one by now).
            if op in (0, 1):
                allowed = {errno.EISDIR}
            elif op == 3:
                allowed = RACE | {errno.EPERM}
            else:
                allowed = RACE
            if e.errno in allowed:
                continue
            print('unexpected', op, e, file=sys.stderr)
            bad += 1
    os._exit(1 if bad else 0)
kids = []
for seed in range(6):
    pid = os.fork()
    if pid == 0:
        work(seed)
    kids.append(pid)
if any(os.waitpid(k, 0)[1] != 0 for k in kids):
    sys.exit('a racing process met an error no race explains')
for n in sorted(os.listdir(D)):
    st = os.lstat(os.path.join(D, n))
    if stat.S_ISDIR(st.st_mode):
        print(n, 'dir', oct(st.st_mode & 0o777))
        continue
    with open(os.path.join(D, n), 'rb') as f:
        size = len(f.read())
    print(n, 'file', st.st_size, size, st.st_nlink, oct(st.st_mode & 0o777))
"#;

/// How the union shows `name` of /srv/flood, as FLOOD prints it, from its
/// place in a layer on disk.
fn as_listed(name: &str, path: &Path) -> String {
    use std::os::unix::fs::MetadataExt;
    let m = std::fs::symlink_metadata(path).unwrap();
    let perm = m.mode() & 0o777;
    if m.is_dir() {
        format!("{name} dir {perm:#o}\n")
    } else {
        let size = m.len();
        format!("{name} file {size} {size} {} {perm:#o}\n", m.nlink())
    }
}

/// Runs FLOOD on the default root (with `layer` as a lower layer above the
/// host's, when given) and an upper layer of the test's, and checks the
/// union's last listing against the layers on disk: the upper layer's
/// entries, its whiteouts hiding the lower layer's names, the rest from
/// the lower layer.
fn flood_and_compare(name: &str, layer: Option<&Path>) {
    use std::os::unix::fs::{FileTypeExt, MetadataExt};
    assert_unprivileged();
    let dir = TempDir::new(name);
    let upper = dir.join("changes");
    let mut cmd = burrow_run();
    cmd.args(["--upper", upper.to_str().unwrap(), AS_ROOT[0], AS_ROOT[1]]);
    if let Some(l) = layer {
        cmd.args(["--layer", l.to_str().unwrap()]);
    }
    let out = output_within(
        cmd.args(["--", "python3", "-c", FLOOD]),
        Duration::from_secs(120),
    );
    let shown = out.ok();
    let up = upper.join("srv/flood");
    let low = layer.map(|l| l.join("srv/flood"));
    let opaque = xattr::get(&up, "user.overlay.opaque").ok().flatten();
    assert!(
        opaque.is_none(),
        "the flood never removes /srv/flood itself"
    );
    let names = |d: &Path| -> Vec<String> {
        std::fs::read_dir(d).map_or(Vec::new(), |r| {
            r.map(|e| e.unwrap().file_name().into_string().unwrap())
                .collect()
        })
    };
    let mut all = names(&up);
    all.extend(low.as_deref().map(names).unwrap_or_default());
    all.sort();
    all.dedup();
    let mut disk = String::new();
    for n in all {
        match std::fs::symlink_metadata(up.join(&n)) {
            Ok(m) if m.file_type().is_char_device() && m.rdev() == 0 => {} // a whiteout
            Ok(_) => disk += &as_listed(&n, &up.join(&n)),
            Err(_) => disk += &as_listed(&n, &low.as_ref().unwrap().join(&n)),
        }
    }
    assert!(!disk.is_empty(), "the flood left nothing: {out:?}");
    assert_eq!(shown, disk);
}

#[test]
fn racing_processes_leave_the_union_and_its_upper_layer_in_step() {
    flood_and_compare("flood", None);
}

/// The same flood over files and a directory of a lower layer: racing
/// copy-ups (appends, truncates, chmods and links of the same lower file
/// at once), whiteouts for removed and renamed-away lower names, and
/// directories removed and made again over lower ones.
#[test]
fn racing_copy_ups_of_lower_files_leave_the_union_in_step() {
    let t = TempDir::new("flood-lower");
    let layer = t.join("layer");
    let d = layer.join("srv/flood");
    std::fs::create_dir_all(d.join("d0")).unwrap();
    for i in 0..6 {
        std::fs::write(d.join(format!("f{i}")), vec![b'l'; 3000 * i + 1]).unwrap();
    }
    flood_and_compare("flood-lower-run", Some(&layer));
}

//! Reading files through the union: every byte of a large lower or upper
//! file, read whole, from page-cache misses at odd offsets and with
//! O_DIRECT in several sizes; reads racing a sandbox that truncates the
//! layer's file behind the union (through a bind of the layer) always
//! finish; a layer directory moved out of the layer serves no file put in
//! it; and large reads are spliced, not copied through burrowfs.

use burrow_tests::*;
use std::time::Duration;

/// Bytes that differ from one 4 KiB page to the next, and at every offset
/// within a page, so that a page read from the wrong place shows.
fn pattern(len: usize) -> Vec<u8> {
    (0..len)
        .map(|i| (i as u32).wrapping_mul(2_654_435_761).to_le_bytes()[(i / 4096) % 4])
        .collect()
}

/// Reads `path` whole (buffered), then again after dropping the union's
/// cached pages, in pieces from odd offsets, then with O_DIRECT (no page
/// cache at all: each read is one READ of that size, up to 2 MiB), and
/// checks every byte against `ref`.
const CHECK: &str = r#"
import mmap, os, sys
path, ref = sys.argv[1], open(sys.argv[2], 'rb').read()
def same(what, got, off=0):
    want = ref[off:off + len(got)]
    if got != want:
        at = next(i for i in range(len(got)) if i >= len(want) or got[i] != want[i])
        sys.exit(f'{what}: differs at byte {off + at} of {len(ref)}')
with open(path, 'rb') as f:
    whole = f.read()
if len(whole) != len(ref):
    sys.exit(f'whole read: {len(whole)} bytes, not {len(ref)}')
same('whole read', whole)
fd = os.open(path, os.O_RDONLY)
os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
for off in (len(ref) - 1, 1, 4095, 123457, 1 << 20, 3 * (1 << 20) - 5):
    for size in (1, 4097, 300000):
        same(f'pread {size} at {off}', os.pread(fd, size, off), off)
os.close(fd)
for size in (4096, 65536, 262144, 1 << 20, 2 << 20):
    fd = os.open(path, os.O_RDONLY | os.O_DIRECT)
    buf = mmap.mmap(-1, size)
    off = 0
    while True:
        n = os.readv(fd, [buf])
        same(f'O_DIRECT read of {size} at {off}', buf[:n], off)
        off += n
        if n < size:
            break
    if off != len(ref):
        sys.exit(f'O_DIRECT reads of {size}: {off} bytes, not {len(ref)}')
    os.close(fd)
print('same', path)
"#;

/// The lower file, then its copy in the upper layer (synced, so that its
/// pages can be dropped and read again from burrowfs).
const COPY_AND_CHECK: &str = "python3 -c \"$1\" /big /t/ref && cp /big /srv/copy && \
    sync /srv/copy && python3 -c \"$1\" /srv/copy /t/ref";

#[test]
fn large_lower_and_upper_files_read_back_every_byte() {
    let t = TempDir::new("union-reads");
    std::fs::create_dir(t.join("layer")).unwrap();
    let data = pattern(3 * (1 << 20) + 123);
    std::fs::write(t.join("layer/big"), &data).unwrap();
    std::fs::write(t.join("ref"), &data).unwrap();
    let out = output_within(
        burrow_run()
            .args([
                "--layer",
                &format!("{}/layer", t.s()),
                "--bind",
                t.s(),
                "/t",
                "--",
            ])
            .args(["sh", "-c", COPY_AND_CHECK, "sh", CHECK]),
        Duration::from_secs(120),
    );
    assert_eq!(out.ok(), "same /big\nsame /srv/copy\n");
}

/// The sandbox truncates a lower file (through a bind of its layer) again
/// and again, for a moment at a time, while another of its threads reads
/// it through the union with O_DIRECT: burrowfs finds the file shorter
/// than it was a moment before. Every read must still end (a reply the
/// kernel refuses must not leave the reader waiting), and the union must
/// go on serving: a file the writer left alone reads back whole. (What
/// the raced file reads as is not checked: like overlayfs, the union does
/// not expect its layers to change under it.)
const RACE: &str = r#"
import mmap, os, threading, time
# The size the kernel keeps for /f (learnt here, before the writer
# starts) stays 1 MiB, so that every read reaches burrowfs.
assert os.stat('/f').st_size == 1 << 20
stop = threading.Event()
def churn():
    with open('/low/f', 'r+b') as f:
        n = 0
        while not stop.is_set():
            n += 1
            f.truncate(4096 * (n % 61))
            f.truncate(1 << 20)
writer = threading.Thread(target=churn)
writer.start()
buf = mmap.mmap(-1, 512 * 1024)
deadline = time.monotonic() + 10
try:
    for i in range(1000):
        if time.monotonic() > deadline:
            break
        fd = os.open('/f', os.O_RDONLY | os.O_DIRECT)
        while os.readv(fd, [buf]) == len(buf):
            pass
        os.close(fd)
finally:
    stop.set()
    writer.join()
want = open('/low/g', 'rb').read()
for flags in (0, os.O_DIRECT):
    fd = os.open('/g', os.O_RDONLY | flags)
    got = b''
    while n := os.readv(fd, [buf]):
        got += buf[:n]
    os.close(fd)
    print('same' if got == want else f'/g reads {len(got)} bytes, not its {len(want)}')
"#;

#[test]
fn reads_racing_a_truncate_of_the_layer_file_all_end() {
    let t = TempDir::new("union-read-race");
    std::fs::create_dir(t.join("layer")).unwrap();
    std::fs::write(t.join("layer/f"), pattern(1 << 20)).unwrap();
    std::fs::write(t.join("layer/g"), pattern(2 << 20)).unwrap();
    let layer = t.join("layer");
    let layer = layer.to_str().unwrap();
    let out = output_within(
        burrow_run()
            .args(["--layer", layer, "--bind", layer, "/low", "--"])
            .args(["python3", "-c", RACE]),
        Duration::from_secs(120),
    );
    assert_eq!(out.ok(), "same\nsame\n");
}

/// burrowfs keeps a layer's directory open once it has opened a file in
/// it, and that descriptor follows the directory wherever it goes. The
/// sandbox, through a bind of the layer's parent, moves the directory out
/// of the layer and puts a file of its own where one the union showed was
/// (renamed over it, so a new inode), and another beside it: through the
/// union neither may read as the file from outside the layer.
const MOVED_OUT: &str = r#"
import os
print(open('/kept/a').read().strip())  # the directory is kept now
os.stat('/kept/b')  # b is known to the kernel, and not read yet
os.rename('/p/layer/kept', '/p/out')
for name in ('x', 'c'):
    with open(f'/p/out/{name}', 'w') as f:
        f.write('from outside the layer\n')
os.rename('/p/out/x', '/p/out/b')
for name in ('b', 'c'):
    try:
        print(open(f'/kept/{name}').read().strip())
    except OSError as e:
        print(name, os.strerror(e.errno))
"#;

#[test]
fn a_directory_moved_out_of_the_layer_serves_no_file_put_in_it() {
    let t = TempDir::new("union-read-moved");
    std::fs::create_dir_all(t.join("p/layer/kept")).unwrap();
    std::fs::write(t.join("p/layer/kept/a"), "a\n").unwrap();
    std::fs::write(t.join("p/layer/kept/b"), "b\n").unwrap();
    let out = output_within(
        burrow_run()
            .args(["--layer", &format!("{}/p/layer", t.s())])
            .args(["--bind", &format!("{}/p", t.s()), "/p", "--"])
            .args(["python3", "-c", MOVED_OUT]),
        Duration::from_secs(60),
    );
    assert_eq!(
        out.ok(),
        "a\nb No such file or directory\nc No such file or directory\n"
    );
}

/// Python put before the scripts below: `burrowfs_pid()`, the pid of the
/// burrowfs serving from the current directory.
const SERVER_PID: &str = r#"
import os
def burrowfs_pid():
    def here(p):
        try:
            return (os.path.basename(os.readlink(f'/proc/{p}/exe')) == 'burrowfs'
                    and os.readlink(f'/proc/{p}/cwd') == os.getcwd())
        except OSError:  # not ours, or gone
            return False
    return next(int(p) for p in os.listdir('/proc') if p.isdigit() and here(p))
"#;

/// burrowfs (argv[1]) over lower layer l, which shows a bind mount (a
/// disk filesystem's, so crossed into) at l/sub; a file read in l/top and
/// one in l/sub/d. Prints whether the server holds the directories l/top
/// and l/sub/d open.
const KEPT_ON_MOUNTS: &str = r#"
import os, stat, subprocess, sys
for d in ('l/sub', 'l/top', 'u', 'w', 'm', 'other/d'):
    os.makedirs(d)
subprocess.run(['mount', '--bind', 'other', 'l/sub'], check=True)
for p in ('l/sub/d/f', 'l/top/f'):
    with open(p, 'w') as f:
        f.write(p + '\n')
subprocess.run([sys.argv[1], '-o', 'lowerdir=l,upperdir=u,workdir=w', 'm'], check=True)
assert open('m/top/f').read() == 'l/top/f\n' and open('m/sub/d/f').read() == 'l/sub/d/f\n'
pid = burrowfs_pid()
held = set()
for fd in os.listdir(f'/proc/{pid}/fd'):
    try:
        st = os.stat(f'/proc/{pid}/fd/{fd}')
    except OSError:
        continue
    if stat.S_ISDIR(st.st_mode):
        held.add((st.st_dev, st.st_ino))
for d in ('l/top', 'l/sub/d'):
    st = os.stat(d)
    print(d, 'held' if (st.st_dev, st.st_ino) in held else 'not held')
subprocess.run(['umount', 'm'], check=True)
"#;

/// A directory is kept open for the next file read in it, but not one on
/// a mount the layer merely shows, which that would hold busy against its
/// unmount (the layer's own directories are held: the kept descriptor).
#[test]
fn directories_kept_for_reads_are_the_layers_own() {
    assert_unprivileged();
    let t = TempDir::new("union-read-kept-mounts");
    let burrowfs = burrow_bin().with_file_name("burrowfs");
    let mut cmd = std::process::Command::new("unshare");
    cmd.args(["--user", "--map-root-user", "--mount", "python3", "-c"])
        .arg(format!("{SERVER_PID}{KEPT_ON_MOUNTS}"))
        .arg(&burrowfs)
        .current_dir(t.path());
    let out = output_within(&mut cmd, Duration::from_secs(60));
    assert_eq!(out.ok(), "l/top held\nl/sub/d not held\n");
}

/// Mounts burrowfs (argv[1]; daemonized, it returns once mounted) over l,
/// u and w on m, reads m/big, unmounts with argv[2:], and prints how many
/// bytes the server read(2) the while (/proc/PID/io's rchar) and whether
/// m/big read as l/big.
const MEASURE: &str = r#"
import os, select, subprocess, sys
subprocess.run([sys.argv[1], '-o', 'lowerdir=l,upperdir=u,workdir=w', 'm'], check=True)
pid = burrowfs_pid()
server = os.pidfd_open(pid)
def rchar():
    return int(next(l.split()[1] for l in open(f'/proc/{pid}/io') if l.startswith('rchar:')))
before = rchar()
got = open('m/big', 'rb').read()
after = rchar()
subprocess.run(sys.argv[2:] + ['m'], check=True)
select.select([server], [], [])
print(after - before, got == open('l/big', 'rb').read())
"#;

/// burrowfs moves a large file's pages from the layer into /dev/fuse
/// without reading them into its own memory: while 8 MiB are read through
/// it, its read(2)s take in only the requests (a few hundred bytes each).
/// Mounted both ways: itself, in a user namespace, and through
/// fusermount3.
#[test]
fn large_reads_do_not_pass_through_the_servers_memory() {
    assert_unprivileged();
    let burrowfs = burrow_bin().with_file_name("burrowfs");
    let in_userns = ["unshare", "--user", "--map-root-user", "--mount"];
    for (how, prefix, unmount) in [
        ("mount(2) in a user namespace", &in_userns[..], "umount"),
        ("fusermount3", &[][..], "fusermount3 -u"),
    ] {
        let t = TempDir::new("union-read-splice");
        for d in ["l", "u", "w", "m"] {
            std::fs::create_dir(t.join(d)).unwrap();
        }
        std::fs::write(t.join("l/big"), pattern(8 << 20)).unwrap();
        let mut cmd = std::process::Command::new("env");
        cmd.args(prefix)
            .args(["python3", "-c", &format!("{SERVER_PID}{MEASURE}")])
            .arg(&burrowfs)
            .args(unmount.split(' '))
            .current_dir(t.path());
        let out = output_within(&mut cmd, Duration::from_secs(60));
        let line = out.ok();
        let (read, same) = line.trim().split_once(' ').expect("two fields");
        assert_eq!(same, "True", "{how}: m/big read as something else: {out:?}");
        let read: u64 = read.parse().unwrap();
        assert!(
            read < 1 << 20,
            "{how}: the server read {read} bytes itself while 8 MiB were read through it"
        );
    }
}

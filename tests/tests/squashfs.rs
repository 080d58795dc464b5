//! squashfs image files as read-only layers, read in place by burrowfs
//! (`lowerdir=squashfs:FILE`, `burrow run --rootfs/--layer/--image
//! squashfs:FILE`, and an Apptainer SIF's partition with `sif:FILE`).
//! Images are made by squashfs-tools' mksquashfs, as the test's own
//! unprivileged user; everything runs as that user.

use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::{Path, PathBuf};
use std::process::Command;

use burrow_tests::*;

fn burrowfs_bin() -> PathBuf {
    burrow_bin().with_file_name("burrowfs")
}

/// mksquashfs `src` into `img` with `args` (pseudo definitions and the
/// like).
#[track_caller]
fn mksquashfs(src: &Path, img: &Path, args: &[&str]) {
    let out = output(
        Command::new("mksquashfs")
            .arg(src)
            .arg(img)
            .args(["-noappend", "-quiet", "-no-progress"])
            .args(args),
    );
    assert_eq!(out.code, 0, "mksquashfs: {out:?}");
}

/// A tree with every kind of file mksquashfs stores: data that compresses
/// and data that does not (whole blocks and fragment tails), a sparse
/// file, an empty one, many small files in one directory, symlinks, a
/// FIFO, nested and empty directories.
fn tree(t: &TempDir) -> PathBuf {
    let src = t.join("src");
    std::fs::create_dir_all(src.join("many")).unwrap();
    std::fs::create_dir_all(src.join("deep/er/still")).unwrap();
    std::fs::create_dir_all(src.join("empty")).unwrap();
    std::fs::write(src.join("hello"), "hello from the image\n").unwrap();
    let text: String = (0..120_000).map(|i| format!("line {i}\n")).collect();
    std::fs::write(src.join("text"), &text).unwrap();
    let noise: Vec<u8> = (0..700_001u32)
        .map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8)
        .collect();
    std::fs::write(src.join("noise"), &noise).unwrap();
    let sparse = std::fs::File::create(src.join("sparse")).unwrap();
    sparse.set_len(3 << 20).unwrap();
    std::os::unix::fs::FileExt::write_at(&sparse, b"end", 3 << 20).unwrap();
    std::fs::write(src.join("empty-file"), "").unwrap();
    for i in 0..400 {
        std::fs::write(src.join(format!("many/f{i:03}")), format!("small {i}\n")).unwrap();
    }
    std::fs::write(src.join("deep/er/still/leaf"), "leaf\n").unwrap();
    std::os::unix::fs::symlink("hello", src.join("link")).unwrap();
    std::os::unix::fs::symlink("/nowhere/at/all", src.join("dangling")).unwrap();
    nix::unistd::mkfifo(
        &src.join("fifo"),
        nix::sys::stat::Mode::from_bits_truncate(0o640),
    )
    .unwrap();
    src
}

/// A burrowfs mount, unmounted (and its server gone) on drop.
struct Mounted {
    at: PathBuf,
    server: Option<nix::unistd::Pid>,
}

impl Mounted {
    #[track_caller]
    fn new(t: &TempDir, name: &str, opts: &str) -> Mounted {
        let at = t.join(name);
        std::fs::create_dir_all(&at).unwrap();
        let out = output(
            Command::new(burrowfs_bin())
                .args(["-o", opts])
                .arg(&at)
                .current_dir(t.path()),
        );
        assert_eq!(out.code, 0, "burrowfs -o {opts}: {out:?}");
        let server = burrowfs_server_in(t.path());
        assert!(server.is_some(), "no burrowfs server for {}", at.display());
        Mounted { at, server }
    }
}

impl Drop for Mounted {
    fn drop(&mut self) {
        if let Some(server) = self.server.take() {
            unmount_and_wait(&self.at, server);
        }
    }
}

#[track_caller]
fn same_tree(src: &Path, mounted: &Path) {
    let out = output(
        Command::new("diff")
            .args(["-r", "--no-dereference"])
            .arg(src)
            .arg(mounted),
    );
    // diff says FIFOs differ by type only as "is a fifo while ... is a fifo".
    let real: Vec<&str> = out
        .stdout
        .lines()
        .filter(|l| !(l.contains(" is a fifo while file ") && l.ends_with(" is a fifo")))
        .collect();
    assert!(real.is_empty() && out.stderr.is_empty(), "{out:?}");
}

#[test]
fn an_image_in_each_compression_shows_its_tree_as_it_was_packed() {
    assert_unprivileged();
    let t = TempDir::new("sqfs-comp");
    let src = tree(&t);
    for comp in ["gzip", "xz", "zstd", "lz4"] {
        let img = t.join(&format!("{comp}.sqfs"));
        mksquashfs(&src, &img, &["-comp", comp]);
        let m = Mounted::new(
            &t,
            &format!("m-{comp}"),
            &format!("lowerdir=squashfs:{comp}.sqfs"),
        );
        same_tree(&src, &m.at);
        for name in [
            "hello",
            "text",
            "noise",
            "sparse",
            "empty-file",
            "many",
            "link",
            "fifo",
        ] {
            let (a, b) = (
                std::fs::symlink_metadata(src.join(name)).unwrap(),
                std::fs::symlink_metadata(m.at.join(name)).unwrap(),
            );
            assert_eq!(a.mode(), b.mode(), "{comp} {name}: mode");
            assert_eq!(a.mtime(), b.mtime(), "{comp} {name}: mtime");
            if !a.is_dir() {
                assert_eq!(a.len(), b.len(), "{comp} {name}: size");
            }
        }
        assert!(std::fs::symlink_metadata(m.at.join("fifo"))
            .unwrap()
            .file_type()
            .is_fifo());
        assert_eq!(
            std::fs::read_link(m.at.join("dangling")).unwrap(),
            Path::new("/nowhere/at/all")
        );
        // Reads at any offset and of any length (across blocks and into
        // the fragment tail), as pread does them.
        let noise = std::fs::read(src.join("noise")).unwrap();
        let f = std::fs::File::open(m.at.join("noise")).unwrap();
        for (at, len) in [
            (0, 10),
            (131_000, 5_000),
            (262_140, 300_000),
            (699_990, 100),
        ] {
            let mut buf = vec![0u8; len];
            let n = std::os::unix::fs::FileExt::read_at(&f, &mut buf, at as u64).unwrap();
            let want = &noise[at..(at + len).min(noise.len())];
            assert_eq!(&buf[..n], want, "{comp}: noise at {at}, {len} bytes");
        }
        // Read-only without an upper layer.
        let e = std::fs::write(m.at.join("hello"), "x").unwrap_err();
        assert_eq!(e.raw_os_error(), Some(libc::EROFS), "{comp}: {e}");
    }
}

#[test]
fn owners_devices_and_whiteouts_of_an_image_show_through_the_union() {
    assert_unprivileged();
    let t = TempDir::new("sqfs-union");
    let below = t.join("below");
    std::fs::create_dir_all(below.join("d")).unwrap();
    std::fs::write(below.join("d/gone"), "hidden by the image's whiteout\n").unwrap();
    std::fs::write(below.join("d/kept"), "from the directory below\n").unwrap();
    let src = t.join("src");
    std::fs::create_dir_all(src.join("d")).unwrap();
    std::fs::write(src.join("d/owned"), "set-id, someone else's\n").unwrap();
    std::fs::write(src.join("d/edit"), "from the image\n").unwrap();
    std::fs::write(src.join("d/remove"), "to be removed\n").unwrap();
    // Owners, a device and a whiteout: made by pseudo definitions, as an
    // unprivileged packer makes them.
    mksquashfs(
        &src,
        &t.join("img.sqfs"),
        &[
            "-p",
            "d/owned m 4755 1234 5678",
            "-p",
            "d/gone c 0 0 0 0 0",
            "-p",
            "d/blk b 660 0 6 8 1",
        ],
    );
    for d in ["u", "w"] {
        std::fs::create_dir_all(t.join(d)).unwrap();
    }
    let m = Mounted::new(
        &t,
        "m",
        "lowerdir=squashfs:img.sqfs:below,upperdir=u,workdir=w",
    );
    let owned = std::fs::metadata(m.at.join("d/owned")).unwrap();
    assert_eq!((owned.uid(), owned.gid()), (1234, 5678));
    assert_eq!(owned.mode() & 0o7777, 0o4755);
    let blk = std::fs::symlink_metadata(m.at.join("d/blk")).unwrap();
    assert!(blk.file_type().is_block_device());
    assert_eq!(blk.rdev(), libc::makedev(8, 1));
    assert!(
        !m.at.join("d/gone").exists(),
        "the image's whiteout hides it"
    );
    assert_eq!(
        std::fs::read_to_string(m.at.join("d/kept")).unwrap(),
        "from the directory below\n"
    );
    let mut names: Vec<String> = std::fs::read_dir(m.at.join("d"))
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    names.sort();
    assert_eq!(names, ["blk", "edit", "kept", "owned", "remove"]);
    // Writes copy up from the image into the upper layer; a removal
    // leaves a whiteout there; the image file is untouched.
    let before = std::fs::read(t.join("img.sqfs")).unwrap();
    use std::io::Write;
    let mut f = std::fs::OpenOptions::new()
        .append(true)
        .open(m.at.join("d/edit"))
        .unwrap();
    f.write_all(b"and the sandbox\n").unwrap();
    drop(f);
    std::fs::remove_file(m.at.join("d/remove")).unwrap();
    assert_eq!(
        std::fs::read_to_string(m.at.join("d/edit")).unwrap(),
        "from the image\nand the sandbox\n"
    );
    assert_eq!(
        std::fs::read_to_string(t.join("u/d/edit")).unwrap(),
        "from the image\nand the sandbox\n"
    );
    let wh = std::fs::symlink_metadata(t.join("u/d/remove")).unwrap();
    assert!(wh.file_type().is_char_device() && wh.rdev() == 0, "{wh:?}");
    assert!(!m.at.join("d/remove").exists());
    drop(m);
    assert_eq!(std::fs::read(t.join("img.sqfs")).unwrap(), before);
}

/// A SIF file around `squashfs`, laid out as Apptainer writes one: the
/// global header, a descriptor table with a definition file and the
/// primary system partition, and the data, the partition 4 KiB-aligned.
/// (No SIF tool is packaged in Debian 12: the test writes the format from
/// its public definition.)
fn sif_of(squashfs: &[u8]) -> Vec<u8> {
    const DESCRIPTOR: usize = 585;
    let descriptors = 48;
    let table_at = 4096usize;
    let data_at = table_at + descriptors * DESCRIPTOR;
    let deffile = b"bootstrap: scratch\n";
    let part_at = (data_at + deffile.len()).div_ceil(4096) * 4096;
    let mut out = vec![0u8; part_at + squashfs.len()];
    out[..32].copy_from_slice(b"#!/usr/bin/env run-singularity\n\0");
    out[32..42].copy_from_slice(b"SIF_MAGIC\0");
    out[42..45].copy_from_slice(b"01\0");
    out[45..48].copy_from_slice(b"02\0");
    let put = |out: &mut Vec<u8>, at: usize, v: i64| {
        out[at..at + 8].copy_from_slice(&v.to_le_bytes());
    };
    put(&mut out, 80, descriptors as i64 - 2);
    put(&mut out, 88, descriptors as i64);
    put(&mut out, 96, table_at as i64);
    put(&mut out, 104, 2 * DESCRIPTOR as i64);
    put(&mut out, 112, data_at as i64);
    let data_len = (out.len() - data_at) as i64;
    put(&mut out, 120, data_len);
    let mut descriptor = |index: usize, kind: i32, id: u32, at: usize, len: usize, extra: &[u8]| {
        let d = table_at + index * DESCRIPTOR;
        out[d..d + 4].copy_from_slice(&kind.to_le_bytes());
        out[d + 4] = 1;
        out[d + 5..d + 9].copy_from_slice(&id.to_le_bytes());
        out[d + 9..d + 13].copy_from_slice(&0xf000_0001u32.to_le_bytes());
        put(&mut out, d + 17, at as i64);
        put(&mut out, d + 25, len as i64);
        put(&mut out, d + 33, len as i64);
        out[d + 201..d + 201 + extra.len()].copy_from_slice(extra);
    };
    descriptor(0, 0x4001, 1, data_at, deffile.len(), &[]);
    let mut partition = Vec::new();
    partition.extend_from_slice(&1i32.to_le_bytes()); // squashfs
    partition.extend_from_slice(&2i32.to_le_bytes()); // primary system
    partition.extend_from_slice(b"02\0");
    descriptor(1, 0x4004, 2, part_at, squashfs.len(), &partition);
    out[data_at..data_at + deffile.len()].copy_from_slice(deffile);
    out[part_at..].copy_from_slice(squashfs);
    out
}

/// A root filesystem of busybox (static), packed as squashfs.
fn busybox_root(t: &TempDir) -> Option<PathBuf> {
    let busybox = Path::new("/bin/busybox");
    if !busybox.exists() {
        skipped("no /bin/busybox (Debian's busybox-static)");
        return None;
    }
    let root = t.join("rootfs");
    for d in ["bin", "etc", "tmp", "opt", "proc", "dev", "sys"] {
        std::fs::create_dir_all(root.join(d)).unwrap();
    }
    std::fs::copy(busybox, root.join("bin/busybox")).unwrap();
    for tool in ["sh", "cat", "echo", "ls", "id"] {
        std::os::unix::fs::symlink("busybox", root.join("bin").join(tool)).unwrap();
    }
    std::fs::write(root.join("etc/passwd"), "root:x:0:0:root:/root:/bin/sh\n").unwrap();
    std::fs::write(root.join("etc/motd"), "inside the squashfs root\n").unwrap();
    let img = t.join("root.sqfs");
    mksquashfs(&root, &img, &["-comp", "zstd"]);
    Some(img)
}

#[test]
fn burrow_runs_a_squashfs_root_a_sif_and_an_image_layer() {
    let t = TempDir::new("sqfs-run");
    let Some(img) = busybox_root(&t) else { return };
    let img_s = img.to_str().unwrap();
    // The root from the image; the sandbox's writes go to its own upper.
    let out = output(burrow_run().args([
        &format!("--rootfs=squashfs:{img_s}"),
        "--",
        "/bin/sh",
        "-c",
        "cat /etc/motd; echo written > /etc/new; cat /etc/new; id -u; exit 7",
    ]));
    assert_eq!(out.code, 7, "{out:?}");
    assert_eq!(out.stdout, "inside the squashfs root\nwritten\n0\n");
    // --image squashfs:FILE is the same root.
    let out = output(burrow_run().args([
        &format!("--image=squashfs:{img_s}"),
        "--",
        "/bin/cat",
        "/etc/motd",
    ]));
    assert_eq!(out.ok(), "inside the squashfs root\n");
    // The SIF's partition, found through its descriptors.
    let sif = t.join("root.sif");
    std::fs::write(&sif, sif_of(&std::fs::read(&img).unwrap())).unwrap();
    let out = output(burrow_run().args([
        &format!("--rootfs=sif:{}", sif.display()),
        "--read-only",
        "--",
        "/bin/cat",
        "/etc/motd",
    ]));
    assert_eq!(out.ok(), "inside the squashfs root\n");
    // An image as a layer over the host's root.
    let src = t.join("tool");
    std::fs::create_dir_all(src.join("opt/tool")).unwrap();
    std::fs::write(src.join("opt/tool/version"), "tool 1.0\n").unwrap();
    let layer = t.join("tool.sqfs");
    mksquashfs(&src, &layer, &[]);
    let out = output(burrow_run().args([
        &format!("--layer=squashfs:{}", layer.display()),
        "--",
        "sh",
        "-c",
        "cat /opt/tool/version; test -x /bin/sh && echo host",
    ]));
    assert_eq!(out.ok(), "tool 1.0\nhost\n");
}

#[test]
fn bad_and_corrupt_images_fail_cleanly() {
    assert_unprivileged();
    let t = TempDir::new("sqfs-bad");
    let src = t.join("src");
    std::fs::create_dir_all(&src).unwrap();
    let text: String = (0..200_000)
        .map(|i| format!("compressible line {i}\n"))
        .collect();
    std::fs::write(src.join("text"), &text).unwrap();
    std::fs::write(src.join("small"), "small and fine\n").unwrap();
    let img = t.join("img.sqfs");
    mksquashfs(&src, &img, &["-comp", "gzip"]);
    let good = std::fs::read(&img).unwrap();

    // Not an image, cut short, not a SIF: one line naming the problem.
    std::fs::write(t.join("plain"), "just text\n").unwrap();
    std::fs::write(t.join("cut.sqfs"), &good[..good.len() / 2]).unwrap();
    for (opts, needle) in [
        ("lowerdir=squashfs:plain", "no squashfs magic"),
        ("lowerdir=squashfs:cut.sqfs", "truncated"),
        ("lowerdir=sif:img.sqfs", "not a SIF file"),
        ("lowerdir=squashfs:missing.sqfs", "No such file"),
    ] {
        std::fs::create_dir_all(t.join("m")).unwrap();
        let out = output(
            Command::new(burrowfs_bin())
                .args(["-o", opts])
                .arg(t.join("m"))
                .current_dir(t.path()),
        );
        assert_eq!(out.code, 1, "{opts}: {out:?}");
        assert_eq!(out.stderr.lines().count(), 1, "{opts}: {out:?}");
        assert!(out.stderr.contains(needle), "{opts}: {out:?}");
        let out = output(
            burrow_run()
                .args([
                    &format!("--rootfs={}", opts.trim_start_matches("lowerdir=")),
                    "--",
                    "true",
                ])
                .current_dir(t.path()),
        );
        assert_eq!(out.code, 125, "{opts}: {out:?}");
        assert_eq!(out.stderr.lines().count(), 1, "{opts}: {out:?}");
        assert!(out.stderr.contains(needle), "{opts}: {out:?}");
    }
    // An image inside the upper or work directory: what the union writes
    // could change the layer below it.
    std::fs::create_dir_all(t.join("u")).unwrap();
    std::fs::create_dir_all(t.join("w")).unwrap();
    std::fs::copy(&img, t.join("u/inside.sqfs")).unwrap();
    let out = output(
        Command::new(burrowfs_bin())
            .args(["-o", "lowerdir=squashfs:u/inside.sqfs,upperdir=u,workdir=w"])
            .arg(t.join("m"))
            .current_dir(t.path()),
    );
    assert_eq!(out.code, 1, "{out:?}");
    assert!(out.stderr.contains("is inside upperdir"), "{out:?}");
    let out = output(
        burrow_run()
            .args(["--rootfs=squashfs:u/inside.sqfs", "--upper=u", "--", "true"])
            .current_dir(t.path()),
    );
    assert_eq!(out.code, 125, "{out:?}");
    assert!(out.stderr.contains("holds the image file"), "{out:?}");
    let mounts = std::fs::read_to_string("/proc/self/mountinfo").unwrap();
    assert!(
        !mounts.contains(t.s()),
        "something stayed mounted: {mounts}"
    );

    // A damaged data block: EIO for the file that reads it, the rest
    // served, the server alive. (The first data block follows the
    // 96-byte superblock; its bytes are zeroed.)
    let mut bad = good.clone();
    bad[200..264].fill(0);
    std::fs::write(t.join("bad.sqfs"), &bad).unwrap();
    let m = Mounted::new(&t, "m-bad", "lowerdir=squashfs:bad.sqfs");
    let e = std::fs::read(m.at.join("text")).unwrap_err();
    assert_eq!(e.raw_os_error(), Some(libc::EIO), "{e}");
    assert_eq!(
        std::fs::read_to_string(m.at.join("small")).unwrap(),
        "small and fine\n"
    );
    let e = std::fs::read(m.at.join("text")).unwrap_err();
    assert_eq!(e.raw_os_error(), Some(libc::EIO), "{e}");
    assert!(m
        .server
        .is_some_and(|p| nix::sys::signal::kill(p, None).is_ok()));
}

/// Every file under `dir`, read (errors ignored): what a sandbox's reads
/// of a damaged image do.
fn read_everything(dir: &Path, depth: usize) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for e in entries.flatten() {
        let path = e.path();
        match e.file_type() {
            Ok(t) if t.is_dir() && depth < 16 => read_everything(&path, depth + 1),
            Ok(t) if t.is_file() => {
                let _ = std::fs::read(&path);
            }
            Ok(t) if t.is_symlink() => {
                let _ = std::fs::read_link(&path);
            }
            _ => {}
        }
    }
}

#[test]
fn damaged_tables_are_refused_at_mount_or_served_never_crashing_the_server() {
    assert_unprivileged();
    let t = TempDir::new("sqfs-damage");
    let src = tree(&t);
    // Compressed tables, and tables stored as they are (so that damage
    // reaches the parser's numbers rather than the decompressor).
    for (name, args) in [
        ("packed.sqfs", &[][..]),
        ("plain.sqfs", &["-noI", "-noD", "-noF", "-noX"][..]),
    ] {
        let img = t.join(name);
        mksquashfs(&src, &img, args);
        let good = std::fs::read(&img).unwrap();
        let u64_at = |at: usize| u64::from_le_bytes(good[at..at + 8].try_into().unwrap());
        // The superblock's inode table start and bytes used: the tables.
        let (tables, used) = (u64_at(64) as usize, u64_at(40) as usize);
        assert!(tables < used && used <= good.len(), "{tables} {used}");
        let (mut refused, mut served) = (0, 0);
        for i in 0..24usize {
            let mut bad = good.clone();
            let at = tables + (used - tables) * i / 24;
            let len = 12.min(used - at);
            for (k, b) in bad[at..at + len].iter_mut().enumerate() {
                *b = b.wrapping_mul(31).wrapping_add(0x9d ^ k as u8) | 0x80;
            }
            std::fs::write(t.join("bad.sqfs"), &bad).unwrap();
            let at_dir = t.join("m");
            std::fs::create_dir_all(&at_dir).unwrap();
            let out = output(
                Command::new(burrowfs_bin())
                    .args(["-o", "lowerdir=squashfs:bad.sqfs", "m"])
                    .current_dir(t.path()),
            );
            if out.code != 0 {
                assert_eq!(out.code, 1, "{name} at {at}: {out:?}");
                assert_eq!(out.stderr.lines().count(), 1, "{name} at {at}: {out:?}");
                assert!(out.stderr.contains("bad.sqfs"), "{name} at {at}: {out:?}");
                refused += 1;
                continue;
            }
            let server = burrowfs_server_in(t.path()).expect("the mounted image's server");
            read_everything(&at_dir, 0);
            assert!(
                nix::sys::signal::kill(server, None).is_ok(),
                "{name}: damage at {at} killed the server"
            );
            unmount_and_wait(&at_dir, server);
            served += 1;
        }
        eprintln!("{name}: {refused} refused at mount, {served} mounted and served");
    }
}

#[test]
fn burrow_save_writes_an_image_as_one_squashfs_file_that_squashfs_tools_read() {
    let t = TempDir::new("sqfs-save");
    let oci = t.join("oci");
    let busybox = std::fs::read("/bin/busybox").unwrap();
    let s = |t: &str| t.as_bytes().to_vec();
    // Three layers: whiteouts, an opaque directory, an owned set-id file
    // and a device node, as an image's tars carry them.
    burrow_tests::oci::write_layout(
        &oci,
        &[
            vec![
                ("bin/", vec![]),
                ("bin/busybox", busybox),
                ("bin/sh", s("->busybox")),
                ("bin/cat", s("->busybox")),
                ("bin/ls", s("->busybox")),
                ("a", s("one\n")),
                ("keep", s("keep\n")),
                ("d/", vec![]),
                ("d/x", s("x")),
                ("e/", vec![]),
                ("e/z", s("z")),
                ("proc/", vec![]),
                ("dev/", vec![]),
                ("sys/", vec![]),
                ("tmp/", vec![]),
            ],
            vec![
                (".wh.a", vec![]),
                ("d/", vec![]),
                ("d/.wh..wh..opq", vec![]),
                ("d/new", s("new")),
                ("owned@1234:5678:4755", s("mine\n")),
                ("null@0:0:666:c1,3", vec![]),
            ],
            vec![("e/", vec![]), ("e/.wh.z", vec![]), ("a", s("again\n"))],
        ],
        serde_json::json!({"config": {"Cmd": ["/bin/sh"]}}),
    );
    let store = t.join("store");
    let img = t.join("saved.sqfs");
    let reference = format!("oci:{}:v1", oci.display());
    let out = output(
        Command::new(burrow_bin())
            .args(["save", "--format", "squashfs", &reference])
            .arg(&img)
            .env("XDG_DATA_HOME", &store),
    );
    assert_eq!(out.code, 0, "{out:?}");
    // squashfs-tools read it: the merged tree, owners and devices kept.
    let out = output(Command::new("unsquashfs").arg("-lln").arg(&img));
    assert_eq!(out.code, 0, "{out:?}");
    let listed: Vec<(String, String, String)> = out
        .stdout
        .lines()
        .filter_map(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            let path = f.last()?.strip_prefix("squashfs-root")?;
            Some((f[0].to_string(), f[1].to_string(), path.to_string()))
        })
        .collect();
    let find = |p: &str| listed.iter().find(|(_, _, path)| path == p).cloned();
    assert!(
        find("/a").is_some() && find("/d/new").is_some(),
        "{listed:?}"
    );
    assert!(
        find("/d/x").is_none() && find("/e/z").is_none(),
        "{listed:?}"
    );
    assert!(
        listed.iter().all(|(_, _, p)| !p.contains(".wh.")),
        "{listed:?}"
    );
    let owned = find("/owned").unwrap();
    assert_eq!(
        (owned.0.as_str(), owned.1.as_str()),
        ("-rwsr-xr-x", "1234/5678")
    );
    let null = find("/null").unwrap();
    assert!(null.0.starts_with('c'), "{null:?}");
    let out = output(Command::new("unsquashfs").args(["-cat"]).arg(&img).arg("a"));
    assert_eq!(out.stdout, "again\n", "{out:?}");
    // And burrow runs it, as the image itself runs.
    let script = "ls -A /d /e; cat /a /keep /owned";
    let from_file = output(burrow_run().args([
        &format!("--image=squashfs:{}", img.display()),
        "--",
        "/bin/sh",
        "-c",
        script,
    ]));
    let from_oci = output(
        burrow_run()
            .args([
                &format!("--image={reference}"),
                "--",
                "/bin/sh",
                "-c",
                script,
            ])
            .env("XDG_DATA_HOME", &store),
    );
    assert_eq!(from_file.ok(), from_oci.ok());
    assert_eq!(from_file.stdout, "/d:\nnew\n\n/e:\nagain\nkeep\nmine\n");
    // The file's digest is what save prints.
    let sum = output(Command::new("sha256sum").arg(&img));
    let printed = output(
        Command::new(burrow_bin())
            .args(["save", "--format", "squashfs", &reference])
            .arg(&img)
            .env("XDG_DATA_HOME", &store),
    );
    assert_eq!(
        printed.ok().trim(),
        format!("sha256:{}", sum.stdout.split_whitespace().next().unwrap())
    );
    // A directory of the caller's: its files root's in the image, as the
    // caller is root of its own namespace.
    std::fs::create_dir_all(t.join("tree/etc")).unwrap();
    std::fs::write(t.join("tree/etc/motd"), "from a directory\n").unwrap();
    let dir_img = t.join("dir.sqfs");
    let out = output(
        Command::new(burrow_bin())
            .args(["save", "--format", "squashfs"])
            .arg(format!("dir:{}", t.join("tree").display()))
            .arg(&dir_img),
    );
    assert_eq!(out.code, 0, "{out:?}");
    let out = output(Command::new("unsquashfs").arg("-lln").arg(&dir_img));
    let motd = out
        .stdout
        .lines()
        .find(|l| l.ends_with("/etc/motd"))
        .unwrap_or_default();
    assert!(motd.contains(" 0/0 "), "{out:?}");
    let out = output(
        Command::new("unsquashfs")
            .args(["-cat"])
            .arg(&dir_img)
            .arg("etc/motd"),
    );
    assert_eq!(out.stdout, "from a directory\n", "{out:?}");
    // What squashfs as written cannot hold is refused by name, before
    // anything is written: no file, no temporary one left.
    std::os::unix::fs::symlink("x".repeat(300), t.join("tree/long")).unwrap();
    let out_dir = t.join("out");
    std::fs::create_dir_all(&out_dir).unwrap();
    let out = output(
        Command::new(burrow_bin())
            .args(["save", "--format", "squashfs"])
            .arg(format!("dir:{}", t.join("tree").display()))
            .arg(out_dir.join("long.sqfs")),
    );
    assert_ne!(out.code, 0, "{out:?}");
    assert_eq!(out.stderr.lines().count(), 1, "{out:?}");
    assert!(
        out.stderr.contains("/long: a symlink target of 256 bytes"),
        "{out:?}"
    );
    assert_eq!(std::fs::read_dir(&out_dir).unwrap().count(), 0);
    // An image file has no entrypoint to replace.
    let out = output(burrow_run().args([
        &format!("--image=squashfs:{}", img.display()),
        "--entrypoint=/bin/true",
    ]));
    assert_eq!(out.code, 125, "{out:?}");
    assert!(out.stderr.contains("--entrypoint"), "{out:?}");
    // A format burrow does not write is refused by name.
    let out = output(
        Command::new(burrow_bin())
            .args(["save", "--format", "ext4", &reference])
            .arg(t.join("x"))
            .env("XDG_DATA_HOME", &store),
    );
    assert_eq!(out.code, 125, "{out:?}");
    assert!(out.stderr.contains("save --format ext4"), "{out:?}");
}

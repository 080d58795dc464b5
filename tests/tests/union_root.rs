//! burrow's root filesystem as a burrowfs union: the host's / (or
//! --rootfs, with --layer on top) under a private upper layer, or --upper
//! to keep the writes, or --read-only.

use std::path::Path;

use burrow_tests::*;

#[test]
fn writes_inside_never_reach_the_host_and_vanish_with_the_sandbox() {
    let name = format!("burrow-union-{}", unique_token());
    let out = sh(
        &AS_ROOT,
        &format!(
            "echo inside > /etc/{name} && cat /etc/{name} && echo appended >> /etc/hostname && \
             rm /etc/hostname && test ! -e /etc/hostname && mount | grep -c ' / type fuse.burrowfs'"
        ),
    );
    assert_eq!(out.ok(), "inside\n1\n");
    assert!(
        !Path::new("/etc").join(&name).exists(),
        "a write reached the host"
    );
    assert!(
        Path::new("/etc/hostname").exists(),
        "a delete reached the host"
    );
    let again = sh(
        &[],
        &format!("test -e /etc/{name} && echo kept || echo gone"),
    );
    assert_eq!(again.ok().trim(), "gone");
}

#[test]
fn upper_keeps_the_writes_between_runs() {
    let dir = TempDir::new("upper");
    let upper = dir.join("changes");
    let upper_s = upper.to_str().unwrap();
    sh(
        &["--upper", upper_s, AS_ROOT[0], AS_ROOT[1]],
        "echo kept > /etc/burrow-kept && rm /etc/hostname",
    )
    .ok();
    assert_eq!(
        std::fs::read_to_string(upper.join("etc/burrow-kept")).unwrap(),
        "kept\n"
    );
    let wh = std::fs::symlink_metadata(upper.join("etc/hostname")).unwrap();
    assert!(
        std::os::unix::fs::FileTypeExt::is_char_device(&wh.file_type()),
        "no whiteout for the deleted file"
    );
    let out = sh(
        &["--upper", upper_s],
        "cat /etc/burrow-kept; test -e /etc/hostname && echo back || echo deleted",
    );
    assert_eq!(out.ok(), "kept\ndeleted\n");
    assert!(Path::new("/etc/hostname").exists());
}

#[test]
fn layers_stack_on_the_rootfs() {
    let t = TempDir::new("layers");
    let (base, layer1, layer2) = (t.join("base"), t.join("l1"), t.join("l2"));
    for d in [&base, &layer1, &layer2] {
        std::fs::create_dir_all(d).unwrap();
    }
    // The base needs a shell and the kernel filesystems' mount points.
    for d in ["proc", "dev", "tmp", "sys", "bin", "lib", "lib64", "usr"] {
        std::fs::create_dir_all(base.join(d)).unwrap();
    }
    std::fs::write(base.join("which"), "base\n").unwrap();
    std::fs::write(layer1.join("which"), "layer1\n").unwrap();
    std::fs::write(layer1.join("only1"), "1\n").unwrap();
    std::fs::write(layer2.join("which"), "layer2\n").unwrap();
    let out = output(burrow_run().args([
        "--rootfs",
        base.to_str().unwrap(),
        "--layer",
        layer1.to_str().unwrap(),
        "--layer",
        layer2.to_str().unwrap(),
        "--ro-bind",
        "/usr",
        "/usr",
        "--ro-bind",
        "/lib",
        "/lib",
        "--ro-bind",
        "/lib64",
        "/lib64",
        "--ro-bind",
        "/bin",
        "/bin",
        "--",
        "/bin/sh",
        "-c",
        "cat /which /only1; echo new > /new && cat /new",
    ]));
    assert_eq!(out.ok(), "layer2\n1\nnew\n", "{out:?}");
    assert!(!base.join("new").exists() && !layer2.join("new").exists());
}

#[test]
fn read_only_layers_refuse_writes() {
    let t = TempDir::new("ro-layer");
    std::fs::write(t.join("f"), "layer\n").unwrap();
    let out = sh(&["--read-only", "--layer", t.s()], "cat /f; echo x > /f");
    assert_eq!(out.stdout, "layer\n", "{out:?}");
    assert!(out.stderr.contains("Read-only file system"), "{out:?}");
}

/// A lower file reopened for writing through /proc after its last name is
/// gone is written as a copy of its own (as a file opened for writing
/// before the unlink is: burrowfs cannot tell the two apart without FUSE
/// opens); the layer's file, here the host's, is never written.
#[test]
fn an_unlinked_lower_file_written_through_proc_fd_leaves_the_layer_alone() {
    assert_unprivileged();
    let home = std::env::var("HOME").expect("HOME");
    let victim = Path::new(&home).join(format!("burrow-victim-{}", unique_token()));
    std::fs::write(&victim, "original\n").unwrap();
    let out = sh(
        &[],
        &format!(
            "exec 3< {v}; rm {v}; echo evil > /proc/self/fd/3 && echo wrote; cat /proc/self/fd/3",
            v = victim.display()
        ),
    );
    let host = std::fs::read_to_string(&victim).unwrap();
    let _ = std::fs::remove_file(&victim);
    assert_eq!(host, "original\n", "the host file was written: {out:?}");
    assert_eq!(out.stdout, "wrote\nevil\n", "{out:?}");
}

#[test]
fn whiteout_names_are_plain_names_in_the_sandbox() {
    let out = sh(
        &AS_ROOT,
        "touch /etc/.wh..wh..opq /etc/.wh.hostname && test -s /etc/passwd && cat /etc/hostname >/dev/null && \
         ls -A /etc | grep -c '^.wh.' && mknod /etc/wh c 0 0 2>&1 | grep -c 'Operation not permitted'",
    );
    assert_eq!(out.ok(), "2\n1\n");
}

#[test]
fn read_write_bind_sources_are_not_also_served_by_the_union() {
    // A directory the sandbox can change directly (through a read-write
    // bind) is left out of the union's lower layer, so that it cannot be
    // swapped for a symlink under the union server's feet.
    assert_unprivileged();
    let home = std::env::var("HOME").expect("HOME");
    let src = Path::new(&home).join(format!("burrow-bind-src-{}", unique_token()));
    std::fs::create_dir(&src).unwrap();
    std::fs::write(src.join("f"), "via bind\n").unwrap();
    let s = src.to_str().unwrap();
    let out = sh(
        &["--bind", s, "/tmp/b", "--ro-bind", "/usr", "/tmp/usr"],
        &format!("cat /tmp/b/f; test -e {s}/f && echo union-shows-it || echo hidden; test -e /usr/bin && echo ro-source-still-shown"),
    );
    let same = sh(&["--bind", s, s], &format!("cat {s}/f; echo x > {s}/g"));
    let _ = std::fs::remove_dir_all(&src);
    assert_eq!(out.ok(), "via bind\nhidden\nro-source-still-shown\n");
    assert_eq!(same.ok(), "via bind\n");
}

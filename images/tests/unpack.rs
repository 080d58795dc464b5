//! Layers written by this test's own tar writer (the `tar` crate, and raw
//! headers for what it refuses to write), unpacked into a store as the
//! calling user: contents, modes and links as the archive says, OCI
//! whiteouts kept for burrowfs, every compression, and hostile archives
//! that must leave nothing outside the layer and nothing half-done.

use std::io::{Read, Write};
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::{Path, PathBuf};

use burrow_images::Store;
use sha2::{Digest, Sha256};

mod common;
use common::{pax_header, Tmp};

fn header(path: &str, kind: tar::EntryType, mode: u32, size: u64) -> tar::Header {
    let mut h = tar::Header::new_gnu();
    h.set_entry_type(kind);
    h.set_mode(mode);
    h.set_size(size);
    h.set_mtime(1_600_000_000);
    // Raw name bytes: the tar crate's set_path refuses `..`, which hostile
    // archives carry.
    let name = &mut h.as_old_mut().name;
    name[..path.len()].copy_from_slice(path.as_bytes());
    h.set_cksum();
    h
}

/// A tar stream of entries (path, kind, mode, data or link target).
fn tar_of(entries: &[(&str, tar::EntryType, u32, &str)]) -> Vec<u8> {
    let mut b = tar::Builder::new(Vec::new());
    for (path, kind, mode, data) in entries {
        let is_link = matches!(kind, tar::EntryType::Symlink | tar::EntryType::Link);
        let size = if is_link { 0 } else { data.len() as u64 };
        let mut h = header(path, *kind, *mode, size);
        if is_link {
            h.set_link_name(data).unwrap();
            h.set_cksum();
            b.append(&h, std::io::empty()).unwrap();
        } else {
            b.append(&h, data.as_bytes()).unwrap();
        }
    }
    b.into_inner().unwrap()
}

fn digest(data: &[u8]) -> String {
    format!("sha256:{:x}", Sha256::digest(data))
}

/// Unpacks `blob` (whose uncompressed stream is `tar`) into a store at `t`.
fn unpack(t: &Tmp, tar: &[u8], blob: Vec<u8>) -> burrow_images::Result<PathBuf> {
    let file = t.0.join("blob");
    std::fs::write(&file, blob).unwrap();
    Store::at(t.0.join("store")).layer(&digest(tar), || Ok(std::fs::File::open(&file).unwrap()))
}

fn leftovers(t: &Tmp) -> Vec<String> {
    let layers = t.0.join("store/layers/sha256");
    std::fs::read_dir(layers)
        .map(|d| {
            d.map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
                .collect()
        })
        .unwrap_or_default()
}

use tar::EntryType::{Block, Char, Directory, Fifo, Link, Regular, Symlink};

#[test]
fn a_layer_unpacks_with_its_modes_links_and_whiteouts() {
    let t = Tmp::new("good");
    let tar = tar_of(&[
        ("etc/", Directory, 0o755, ""),
        ("etc/hostname", Regular, 0o644, "box\n"),
        ("bin/", Directory, 0o555, ""),
        ("bin/tool", Regular, 0o4755, "#!/bin/sh\n"),
        ("bin/again", Link, 0o755, "bin/tool"),
        ("lib", Symlink, 0o777, "usr/lib"),
        ("run/", Directory, 0o755, ""),
        ("run/pipe", Fifo, 0o600, ""),
        ("dev/", Directory, 0o755, ""),
        ("dev/null", Char, 0o666, ""),
        ("etc/.wh.motd", Regular, 0o644, ""),
        ("var/.wh..wh..opq", Regular, 0o644, ""),
        ("/abs", Regular, 0o600, "stripped\n"),
    ]);
    let dir = unpack(&t, &tar, tar.clone()).unwrap();
    assert_eq!(
        std::fs::read_to_string(dir.join("etc/hostname")).unwrap(),
        "box\n"
    );
    // Set-user-ID as the override says, not on the caller's file on disk.
    let tool = std::fs::metadata(dir.join("bin/tool")).unwrap();
    assert_eq!(tool.mode() & 0o7777, 0o755);
    assert_eq!(
        override_of(&dir.join("bin/tool")).as_deref(),
        Some("0:0:04755")
    );
    assert_eq!(override_of(&dir.join("etc/hostname")), None);
    assert_eq!(
        std::fs::metadata(dir.join("bin")).unwrap().mode() & 0o7777,
        0o555
    );
    assert_eq!(
        std::fs::metadata(dir.join("bin/again")).unwrap().ino(),
        tool.ino()
    );
    assert_eq!(
        std::fs::read_link(dir.join("lib")).unwrap(),
        Path::new("usr/lib")
    );
    assert!(std::fs::symlink_metadata(dir.join("run/pipe"))
        .unwrap()
        .file_type()
        .is_fifo());
    // A device node needs root: an empty file stands in for it.
    let null = std::fs::symlink_metadata(dir.join("dev/null")).unwrap();
    assert!(null.is_file() && null.len() == 0, "{null:?}");
    assert_eq!(
        override_of(&dir.join("dev/null")).as_deref(),
        Some("0:0:0666:char-0-0")
    );
    assert!(dir.join("etc/.wh.motd").is_file());
    assert!(dir.join("var/.wh..wh..opq").is_file());
    assert_eq!(
        std::fs::read_to_string(dir.join("abs")).unwrap(),
        "stripped\n"
    );
    assert_eq!(tool.mtime(), 1_600_000_000);
    assert_eq!(leftovers(&t), [dir.file_name().unwrap().to_string_lossy()]);
    // A second use unpacks nothing: the blob is not even opened.
    let again = Store::at(t.0.join("store"))
        .layer(&digest(&tar), || panic!("unpacked twice"))
        .unwrap();
    assert_eq!(again, dir);
}

#[test]
fn gzip_and_zstd_layers_unpack_to_the_same_tree() {
    let tar = tar_of(&[("a", Regular, 0o644, "same\n")]);
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    gz.write_all(&tar).unwrap();
    let gz = gz.finish().unwrap();
    let zst = zstd::encode_all(&tar[..], 3).unwrap();
    for (name, blob) in [("gz", gz), ("zst", zst)] {
        let t = Tmp::new(name);
        let dir = unpack(&t, &tar, blob).unwrap();
        assert_eq!(
            std::fs::read_to_string(dir.join("a")).unwrap(),
            "same\n",
            "{name}"
        );
    }
}

#[test]
fn content_that_is_not_the_diff_id_is_refused_and_leaves_nothing() {
    let t = Tmp::new("diffid");
    let tar = tar_of(&[("a", Regular, 0o644, "one\n")]);
    let other = tar_of(&[("a", Regular, 0o644, "two\n")]);
    let e = unpack(&t, &tar, other).unwrap_err().to_string();
    assert!(e.contains("uncompressed content's digest"), "{e}");
    assert!(leftovers(&t).is_empty(), "{:?}", leftovers(&t));
}

#[test]
fn hostile_archives_write_nothing_outside_the_layer() {
    let outside = Tmp::new("outside");
    let target = outside.0.to_str().unwrap().to_string();
    let cases: Vec<(&str, Vec<u8>)> = vec![
        ("dot-dot", tar_of(&[("../escaped", Regular, 0o644, "x")])),
        (
            "deep dot-dot",
            tar_of(&[("a/../../escaped", Regular, 0o644, "x")]),
        ),
        (
            "through a symlink",
            tar_of(&[
                ("l", Symlink, 0o777, &target),
                ("l/escaped", Regular, 0o644, "x"),
            ]),
        ),
        (
            "hard link out",
            tar_of(&[("h", Link, 0o644, "../../../../../../etc/passwd")]),
        ),
        ("bare whiteout", tar_of(&[(".wh.", Regular, 0o644, "")])),
        (
            "block device",
            tar_of(&[("ok", Regular, 0o644, "x"), ("b", Block, 0o600, "")]),
        ),
    ];
    for (name, tar) in cases {
        let t = Tmp::new("hostile");
        let got = unpack(&t, &tar, tar.clone());
        assert!(
            std::fs::read_dir(&outside.0).unwrap().next().is_none(),
            "{name}: wrote outside"
        );
        if name == "block device" {
            // Left out with a warning; the rest of the layer is there.
            assert!(got.unwrap().join("ok").is_file());
            continue;
        }
        let e = got.expect_err(name).to_string();
        assert!(e.starts_with("layer entry"), "{name}: {e}");
        assert!(leftovers(&t).is_empty(), "{name}: {:?}", leftovers(&t));
    }
}

#[test]
fn a_truncated_archive_is_an_error() {
    let t = Tmp::new("trunc");
    let tar = tar_of(&[("big", Regular, 0o644, &"y".repeat(10_000))]);
    let e = unpack(&t, &tar, tar[..3000].to_vec())
        .unwrap_err()
        .to_string();
    assert!(e.contains("layer"), "{e}");
    assert!(leftovers(&t).is_empty());
}

/// An absolute name is the layer's, not the host's: a directory entry
/// naming a directory of the caller's outside changes nothing there.
#[test]
fn an_absolute_directory_entry_changes_nothing_on_the_host() {
    let outside = Tmp::new("abs-outside");
    let before = std::fs::metadata(&outside.0).unwrap().mode();
    let name = outside.0.to_str().unwrap();
    for mode in [0o777, 0o000, 0o4777] {
        let t = Tmp::new("abs");
        let tar = tar_of(&[
            (name, Directory, mode, ""),
            (&format!("{name}/f"), Regular, 0o644, "in"),
        ]);
        let dir = unpack(&t, &tar, tar.clone()).unwrap();
        assert_eq!(
            std::fs::metadata(&outside.0).unwrap().mode(),
            before,
            "{mode:o}"
        );
        assert!(std::fs::read_dir(&outside.0).unwrap().next().is_none());
        let inner = dir.join(name.trim_start_matches('/'));
        assert_eq!(
            std::fs::metadata(&inner).unwrap().mode() & 0o7777,
            mode & 0o777,
            "set-id bits are the override's"
        );
    }
}

/// The `user.containers.override_stat` xattr of `path`, as text.
fn override_of(path: &Path) -> Option<String> {
    xattr::get(path, "user.containers.override_stat")
        .unwrap()
        .map(|v| String::from_utf8(v).unwrap())
}

#[test]
fn a_size_bomb_stops_at_the_stores_budget_and_leaves_nothing() {
    // 24 MiB of zeros in one entry and 2 000 empty files: a gzip blob of
    // tens of KiB. Against a 16 MiB budget unpacking stops, before the
    // big entry is written, and nothing is left in the store.
    let t = Tmp::new("bomb");
    let mut b = tar::Builder::new(Vec::new());
    let mut h = header("zeros", Regular, 0o644, 24 << 20);
    h.set_cksum();
    b.append(&h, std::io::repeat(0).take(24 << 20)).unwrap();
    for i in 0..2000 {
        let mut h = header(&format!("f{i}"), Regular, 0o644, 0);
        h.set_cksum();
        b.append(&h, std::io::empty()).unwrap();
    }
    let tar = b.into_inner().unwrap();
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    gz.write_all(&tar).unwrap();
    let blob = gz.finish().unwrap();
    assert!(blob.len() < 1 << 20, "{}", blob.len());
    let file = t.0.join("blob");
    std::fs::write(&file, &blob).unwrap();
    let store = Store::at(t.0.join("store")).with_budget(Some(16 << 20));
    let open = || Ok(std::fs::File::open(&file).unwrap());
    let e = store.layer(&digest(&tar), open).unwrap_err().to_string();
    assert!(e.contains("the store's budget"), "{e}");
    assert_eq!(e.lines().count(), 1, "{e}");
    assert!(leftovers(&t).is_empty(), "{:?}", leftovers(&t));
    let tmp = std::fs::read_dir(t.0.join("store/tmp")).unwrap().count();
    assert_eq!(tmp, 0, "scratch left behind");

    // The files alone fit a budget of 16 MiB (2 500 × 4 KiB = 9.8 MiB)
    // but not, after them, a second such layer: the store counts what its
    // layers take.
    let small: Vec<(String, tar::EntryType, u32, &str)> = (0..2500)
        .map(|i| (format!("g{i}"), Regular, 0o644, ""))
        .collect();
    let entries: Vec<(&str, tar::EntryType, u32, &str)> = small
        .iter()
        .map(|(p, k, m, d)| (p.as_str(), *k, *m, *d))
        .collect();
    let files = tar_of(&entries);
    std::fs::write(&file, &files).unwrap();
    store.layer(&digest(&files), open).unwrap();
    let mut other = entries.clone();
    other.push(("different", Regular, 0o644, "x"));
    let second = tar_of(&other);
    std::fs::write(&file, &second).unwrap();
    let e = store.layer(&digest(&second), open).unwrap_err().to_string();
    assert!(e.contains("the store's budget"), "{e}");
    // Without a budget, the filesystem's free space is the limit.
    Store::at(t.0.join("store"))
        .layer(&digest(&second), open)
        .unwrap();
}

#[test]
fn a_pax_size_record_does_not_hide_an_entry_from_the_budget() {
    // The header says 0 bytes; its PAX `size` record says 24 MiB, which
    // is what a reader takes: the budget counts that, before writing.
    let t = Tmp::new("pax-size");
    let mut b = tar::Builder::new(Vec::new());
    let (h, pax) = pax_header(&[("size", (24u64 << 20).to_string().as_bytes())]);
    b.append(&h, &pax[..]).unwrap();
    let mut h = header("big", Regular, 0o644, 0);
    h.set_cksum();
    b.append(&h, std::io::repeat(0).take(24 << 20)).unwrap();
    let tar = b.into_inner().unwrap();
    let file = t.0.join("blob");
    std::fs::write(&file, &tar).unwrap();
    let store = Store::at(t.0.join("store")).with_budget(Some(16 << 20));
    let e = store
        .layer(&digest(&tar), || Ok(std::fs::File::open(&file).unwrap()))
        .unwrap_err()
        .to_string();
    assert!(e.contains("the store's budget"), "{e}");
    assert!(leftovers(&t).is_empty());
}

#[test]
fn a_read_only_directory_with_an_owner_and_xattrs_unpacks() {
    // 0555, owned by 33 (recorded) and with a user xattr: both are set
    // while the directory is still writable, and its mode comes last.
    let t = Tmp::new("ro-dir-xattrs");
    let mut b = tar::Builder::new(Vec::new());
    let (h, pax) = pax_header(&[("SCHILY.xattr.user.note", b"kept")]);
    b.append(&h, &pax[..]).unwrap();
    let mut h = header("ro/", Directory, 0o555, 0);
    h.set_uid(33);
    h.set_gid(33);
    h.set_cksum();
    b.append(&h, std::io::empty()).unwrap();
    let mut h = header("ro/inside", Regular, 0o444, 3);
    h.set_cksum();
    b.append(&h, &b"in\n"[..]).unwrap();
    let tar = b.into_inner().unwrap();
    let dir = unpack(&t, &tar, tar.clone()).unwrap();
    let ro = dir.join("ro");
    assert_eq!(std::fs::metadata(&ro).unwrap().mode() & 0o7777, 0o555);
    assert_eq!(
        xattr::get(&ro, "user.note").unwrap(),
        Some(b"kept".to_vec())
    );
    assert_eq!(override_of(&ro).as_deref(), Some("33:33:0555"));
    assert_eq!(std::fs::read_to_string(ro.join("inside")).unwrap(), "in\n");
}

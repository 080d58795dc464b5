//! `pack`, the inverse of unpacking, on trees made here as the calling
//! user: an upper layer's overlayfs markers (xattr whiteouts, an opaque
//! directory) become OCI `.wh.` entries, recorded owners and set-id bits
//! become the entries' headers, hard links stay links, a symlink that
//! leads out of the tree is written as a symlink and never followed, and
//! what is packed unpacks to the same tree.

use std::collections::BTreeMap;
use std::os::unix::fs::MetadataExt;
use std::path::Path;

use burrow_images::{pack, Markers};

mod common;
use common::{pax_header, Tmp};

/// Each entry of `tar`: name to (type, uid:gid:mode, link target or
/// contents).
fn entries(tar: &[u8]) -> BTreeMap<String, (char, String, String)> {
    let mut out = BTreeMap::new();
    let mut ar = tar::Archive::new(tar);
    for e in ar.entries().unwrap() {
        let mut e = e.unwrap();
        let name = e.path().unwrap().to_string_lossy().into_owned();
        let h = e.header().clone();
        let kind = match h.entry_type() {
            tar::EntryType::Directory => 'd',
            tar::EntryType::Symlink => 'l',
            tar::EntryType::Link => 'h',
            tar::EntryType::Fifo => 'p',
            tar::EntryType::Char => 'c',
            _ => 'f',
        };
        let owner = format!(
            "{}:{}:{:o}",
            h.uid().unwrap(),
            h.gid().unwrap(),
            h.mode().unwrap()
        );
        let rest = match kind {
            'l' | 'h' => e
                .link_name()
                .unwrap()
                .unwrap()
                .to_string_lossy()
                .into_owned(),
            'c' => format!(
                "{},{}",
                h.device_major().unwrap().unwrap(),
                h.device_minor().unwrap().unwrap()
            ),
            _ => {
                let mut s = String::new();
                std::io::Read::read_to_string(&mut e, &mut s).unwrap();
                s
            }
        };
        assert!(out.insert(name, (kind, owner, rest)).is_none(), "twice");
    }
    out
}

fn user_xattrs_work(dir: &Path) -> bool {
    xattr::set(dir, "user.burrow-probe", b"1").is_ok()
}

#[test]
fn an_upper_layer_packs_to_oci_entries_without_leaving_the_tree() {
    let t = Tmp::new("upper");
    if !user_xattrs_work(&t.0) {
        println!("SKIPPED: no user xattrs on {}", t.0.display());
        return;
    }
    let up = t.0.join("up");
    let secret = t.0.join("secret");
    std::fs::create_dir_all(&secret).unwrap();
    std::fs::write(secret.join("key"), "SECRET").unwrap();
    std::fs::create_dir_all(up.join("opq")).unwrap();
    std::fs::create_dir_all(up.join("gone-in")).unwrap();
    std::fs::write(up.join("opq/kept"), "k").unwrap();
    xattr::set(up.join("opq"), "user.overlay.opaque", b"y").unwrap();
    // An xattr whiteout: an empty file marked, in a directory marked "x".
    std::fs::write(up.join("gone-in/old"), "").unwrap();
    xattr::set(up.join("gone-in/old"), "user.overlay.whiteout", b"y").unwrap();
    xattr::set(up.join("gone-in"), "user.overlay.opaque", b"x").unwrap();
    // The same empty file without its directory's mark is a file.
    std::fs::write(up.join("plain-empty"), "").unwrap();
    xattr::set(up.join("plain-empty"), "user.overlay.whiteout", b"y").unwrap();
    std::fs::write(up.join("su"), "binary").unwrap();
    xattr::set(up.join("su"), "user.containers.override_stat", b"0:0:04755").unwrap();
    std::fs::write(up.join("null"), "").unwrap();
    xattr::set(
        up.join("null"),
        "user.containers.override_stat",
        b"0:0:0666:char-1-3",
    )
    .unwrap();
    std::fs::write(up.join("www"), "page").unwrap();
    xattr::set(
        up.join("www"),
        "user.containers.override_stat",
        b"33:33:0640",
    )
    .unwrap();
    std::fs::hard_link(up.join("www"), up.join("www2")).unwrap();
    std::os::unix::fs::symlink(&secret, up.join("out")).unwrap();

    let tar = pack(&up, Markers::Overlay, Vec::new(), u64::MAX).unwrap();
    let got = entries(&tar);
    let me = |mode: &str| {
        let m = std::fs::metadata(&up).unwrap();
        format!("{}:{}:{mode}", m.uid(), m.gid())
    };
    let names: Vec<&str> = got.keys().map(|s| s.as_str()).collect();
    assert_eq!(
        names,
        [
            "gone-in",
            "gone-in/.wh.old",
            "null",
            "opq",
            "opq/.wh..wh..opq",
            "opq/kept",
            "out",
            "plain-empty",
            "su",
            "www",
            "www2",
        ]
    );
    assert_eq!(got["gone-in/.wh.old"].0, 'f');
    assert_eq!(got["opq/.wh..wh..opq"].0, 'f');
    assert_eq!(got["opq/kept"], ('f', me("644"), "k".into()));
    assert_eq!(got["su"], ('f', "0:0:4755".into(), "binary".into()));
    assert_eq!(got["null"], ('c', "0:0:666".into(), "1,3".into()));
    assert_eq!(got["www"], ('f', "33:33:640".into(), "page".into()));
    assert_eq!(got["www2"].0, 'h');
    assert_eq!(got["www2"].2, "www");
    // The symlink is text; nothing of what it points at is read.
    assert_eq!(got["out"].0, 'l');
    assert_eq!(got["out"].2, secret.to_string_lossy());
    assert!(!String::from_utf8_lossy(&tar).contains("SECRET"));
    // Packing is repeatable.
    assert_eq!(
        pack(&up, Markers::Overlay, Vec::new(), u64::MAX).unwrap(),
        tar
    );

    // A store layer keeps its .wh. names as they are; unpacked and packed
    // again, the layer is the same.
    let store = burrow_images::Store::at(t.0.join("store"));
    let diff_id = format!("sha256:{:x}", <sha2::Sha256 as sha2::Digest>::digest(&tar));
    let layer = store
        .layer(&diff_id, || {
            let f = t.0.join("layer.tar");
            std::fs::write(&f, &tar).unwrap();
            Ok(std::fs::File::open(f).unwrap())
        })
        .unwrap();
    let again = entries(&pack(&layer, Markers::Oci, Vec::new(), u64::MAX).unwrap());
    // (The unpacked copies are owned as the archive says through their
    // records; compare types, modes and contents.)
    let modes = |m: &BTreeMap<String, (char, String, String)>| {
        m.iter()
            .map(|(k, (c, o, r))| {
                (
                    k.clone(),
                    *c,
                    o.rsplit(':').next().unwrap().to_string(),
                    r.clone(),
                )
            })
            .collect::<Vec<_>>()
    };
    assert_eq!(modes(&again), modes(&got));
    assert_eq!(again["su"].1, "0:0:4755");
    assert_eq!(again["www"].1, "33:33:640");
    assert_eq!(again["null"], ('c', "0:0:666".into(), "1,3".into()));
}

#[test]
fn what_an_image_cannot_mean_is_refused_and_links_stay_as_written() {
    let t = Tmp::new("refused");
    // A user's file named like a whiteout would hide the base's file.
    let up = t.0.join("up");
    std::fs::create_dir_all(up.join("etc")).unwrap();
    std::fs::write(up.join("etc/.wh.passwd"), "").unwrap();
    let e = pack(&up, Markers::Overlay, Vec::new(), u64::MAX)
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("etc/.wh.passwd") && e.contains("whiteout"),
        "{e}"
    );
    std::fs::remove_file(up.join("etc/.wh.passwd")).unwrap();

    // A sparse terabyte passes no room: refused before it is read.
    let f = std::fs::File::create(up.join("sparse")).unwrap();
    f.set_len(1 << 40).unwrap();
    let e = pack(&up, Markers::Overlay, Vec::new(), 1 << 20)
        .unwrap_err()
        .to_string();
    assert!(e.contains("sparse") && e.contains("room"), "{e}");
    std::fs::remove_file(up.join("sparse")).unwrap();

    // Symlink targets byte for byte, short and long.
    let long = format!("{}/x//", "d".repeat(150));
    std::os::unix::fs::symlink("a//b/", up.join("short")).unwrap();
    std::os::unix::fs::symlink(&long, up.join("long")).unwrap();
    let got = entries(&pack(&up, Markers::Overlay, Vec::new(), u64::MAX).unwrap());
    assert_eq!(got["short"].2, "a//b/");
    assert_eq!(got["long"].2, long);

    // In a store layer, whiteouts come first, the opaque marker before
    // them, whatever sorts before '.'.
    let layer = t.0.join("layer");
    std::fs::create_dir_all(&layer).unwrap();
    for name in ["-dash", "#hash", ".wh.gone", ".wh..wh..opq", "z"] {
        std::fs::write(layer.join(name), "").unwrap();
    }
    let tar = pack(&layer, Markers::Oci, Vec::new(), u64::MAX).unwrap();
    let order: Vec<String> = tar::Archive::new(&tar[..])
        .entries()
        .unwrap()
        .map(|e| e.unwrap().path().unwrap().to_string_lossy().into_owned())
        .collect();
    assert_eq!(order, [".wh..wh..opq", ".wh.gone", "#hash", "-dash", "z"]);
}

#[test]
fn layer_xattrs_are_kept_recorded_or_refused_and_pack_back() {
    let t = Tmp::new("xattrs");
    if !user_xattrs_work(&t.0) {
        println!("SKIPPED: no user xattrs on {}", t.0.display());
        return;
    }
    let cap = [
        1u8, 0, 0, 2, 0, 32, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
    ];
    // A layer forging burrow's and overlayfs' own marks: dropped.
    let (h, pax) = pax_header(&[
        ("SCHILY.xattr.user.note", b"kept"),
        ("SCHILY.xattr.security.capability", &cap),
        ("SCHILY.xattr.user.containers.override_stat", b"0:0:04777"),
        ("SCHILY.xattr.user.overlay.opaque", b"y"),
        ("SCHILY.xattr.user.burrow.xattr.trusted.x", b"1"),
    ]);
    let mut b = tar::Builder::new(Vec::new());
    b.append(&h, &pax[..]).unwrap();
    let mut h = tar::Header::new_ustar();
    h.set_entry_type(tar::EntryType::Regular);
    h.set_path("ping").unwrap();
    h.set_mode(0o555); // not writable: the xattrs go on all the same
    h.set_size(7);
    h.set_mtime(1_600_000_000);
    h.set_cksum();
    b.append(&h, &b"binary\n"[..]).unwrap();
    let tar = b.into_inner().unwrap();

    let store = burrow_images::Store::at(t.0.join("store"));
    let diff_id = format!("sha256:{:x}", <sha2::Sha256 as sha2::Digest>::digest(&tar));
    let f = t.0.join("layer.tar");
    std::fs::write(&f, &tar).unwrap();
    let layer = store
        .layer(&diff_id, || Ok(std::fs::File::open(&f).unwrap()))
        .unwrap();
    let ping = layer.join("ping");
    let mut names: Vec<String> = xattr::list(&ping)
        .unwrap()
        .map(|n| n.to_string_lossy().into_owned())
        .collect();
    names.sort();
    assert_eq!(
        names,
        ["user.burrow.xattr.security.capability", "user.note"]
    );
    assert_eq!(
        xattr::get(&ping, "user.burrow.xattr.security.capability").unwrap(),
        Some(cap.to_vec())
    );
    assert_eq!(std::fs::metadata(&ping).unwrap().mode() & 0o7777, 0o555);

    // Packed again: the xattrs under the names the image gave them.
    let again = pack(&layer, Markers::Oci, Vec::new(), u64::MAX).unwrap();
    let mut ar = tar::Archive::new(&again[..]);
    let mut found = Vec::new();
    for e in ar.entries().unwrap() {
        let mut e = e.unwrap();
        if let Some(exts) = e.pax_extensions().unwrap() {
            for x in exts {
                let x = x.unwrap();
                found.push((x.key().unwrap().to_string(), x.value_bytes().to_vec()));
            }
        }
    }
    assert_eq!(
        found,
        [
            ("SCHILY.xattr.security.capability".to_string(), cap.to_vec()),
            ("SCHILY.xattr.user.note".to_string(), b"kept".to_vec()),
        ]
    );
}

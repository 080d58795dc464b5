//! OCI image layouts written by the tests' own writer: tars and JSON made
//! here, so a test knows every byte of what burrow reads.

use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};

/// An OCI layout written here: each layer a list of (path, data or a
/// symlink's "->target"), directories implied; a path may end in
/// `@UID:GID:MODE` (octal) or `@UID:GID:MODE:cMAJOR,MINOR` (a character
/// device; `b` a block device) for its header. Its one image is tagged
/// `v1`. Returns the layer blobs' paths, bottom first.
pub fn write_layout(
    dir: &Path,
    layers: &[Vec<(&str, Vec<u8>)>],
    config: serde_json::Value,
) -> Vec<PathBuf> {
    let (mut entry, paths) = write_image(dir, layers, config, "amd64");
    entry["annotations"] = serde_json::json!({"org.opencontainers.image.ref.name": "v1"});
    write_index(dir, vec![entry]);
    paths
}

/// Blob `data` into the layout `dir`: its digest and size.
pub fn put_blob(dir: &Path, data: &[u8]) -> (String, usize) {
    let blobs = dir.join("blobs/sha256");
    std::fs::create_dir_all(&blobs).unwrap();
    let digest = format!("{:x}", Sha256::digest(data));
    std::fs::write(blobs.join(&digest), data).unwrap();
    (format!("sha256:{digest}"), data.len())
}

/// `index.json` and `oci-layout` of a layout listing `manifests`.
pub fn write_index(dir: &Path, manifests: Vec<serde_json::Value>) {
    let index = serde_json::json!({"schemaVersion": 2, "manifests": manifests});
    std::fs::write(dir.join("index.json"), serde_json::to_vec(&index).unwrap()).unwrap();
    std::fs::write(dir.join("oci-layout"), br#"{"imageLayoutVersion":"1.0.0"}"#).unwrap();
}

/// One image (its layers, its configuration for `arch`, its manifest) as
/// blobs of the layout `dir`: the manifest's descriptor, with its
/// platform, and the layer blobs' paths, bottom first.
pub fn write_image(
    dir: &Path,
    layers: &[Vec<(&str, Vec<u8>)>],
    config: serde_json::Value,
    arch: &str,
) -> (serde_json::Value, Vec<PathBuf>) {
    let blobs = dir.join("blobs/sha256");
    let put = |data: &[u8]| put_blob(dir, data);
    let mut descs = Vec::new();
    let mut diff_ids = Vec::new();
    let mut paths = Vec::new();
    for entries in layers {
        let mut b = tar::Builder::new(Vec::new());
        for (spec, data) in entries {
            let mut h = tar::Header::new_gnu();
            h.set_mtime(1_600_000_000);
            let (path, head) = spec.split_once('@').unwrap_or((spec, ""));
            if !head.is_empty() {
                // UID:GID:MODE[:cMAJOR,MINOR|bMAJOR,MINOR]
                let f: Vec<&str> = head.split(':').collect();
                h.set_uid(f[0].parse().unwrap());
                h.set_gid(f[1].parse().unwrap());
                let mode = u32::from_str_radix(f[2], 8).unwrap();
                if let Some(dev) = f.get(3) {
                    let (kind, nums) = dev.split_at(1);
                    let (major, minor) = nums.split_once(',').unwrap();
                    h.set_entry_type(match kind {
                        "c" => tar::EntryType::Char,
                        _ => tar::EntryType::Block,
                    });
                    h.set_device_major(major.parse().unwrap()).unwrap();
                    h.set_device_minor(minor.parse().unwrap()).unwrap();
                    h.set_mode(mode);
                    h.set_size(0);
                    b.append_data(&mut h, path, std::io::empty()).unwrap();
                    continue;
                }
                let kind = if path.ends_with('/') {
                    tar::EntryType::Directory
                } else {
                    tar::EntryType::Regular
                };
                h.set_entry_type(kind);
                h.set_mode(mode);
                h.set_size(data.len() as u64);
                b.append_data(&mut h, path, &data[..]).unwrap();
                continue;
            }
            if let Some(target) = data.strip_prefix(b"->") {
                h.set_entry_type(tar::EntryType::Symlink);
                h.set_mode(0o777);
                h.set_size(0);
                b.append_link(&mut h, path, std::str::from_utf8(target).unwrap())
                    .unwrap();
            } else if path.ends_with('/') {
                h.set_entry_type(tar::EntryType::Directory);
                h.set_mode(0o755);
                h.set_size(0);
                b.append_data(&mut h, path, std::io::empty()).unwrap();
            } else {
                h.set_mode(0o755);
                h.set_size(data.len() as u64);
                b.append_data(&mut h, path, &data[..]).unwrap();
            }
        }
        let tar = b.into_inner().unwrap();
        let (digest, size) = put(&tar);
        diff_ids.push(digest.clone());
        paths.push(blobs.join(digest.trim_start_matches("sha256:")));
        descs.push(serde_json::json!({
            "mediaType": "application/vnd.oci.image.layer.v1.tar",
            "digest": digest, "size": size,
        }));
    }
    let mut config = config;
    config["architecture"] = arch.into();
    config["os"] = "linux".into();
    config["rootfs"] = serde_json::json!({"type": "layers", "diff_ids": diff_ids});
    let (cdigest, csize) = put(&serde_json::to_vec(&config).unwrap());
    let manifest = serde_json::json!({
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": cdigest, "size": csize},
        "layers": descs,
    });
    let (mdigest, msize) = put(&serde_json::to_vec(&manifest).unwrap());
    let desc = serde_json::json!({
        "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "digest": mdigest, "size": msize,
        "platform": {"os": "linux", "architecture": arch},
    });
    (desc, paths)
}

/// Three layers: the second whites out `a` and makes `d` opaque, the third
/// whites out `e/z` and brings `a` back.
pub fn three_layers(dir: &Path) -> Vec<PathBuf> {
    let busybox = std::fs::read("/bin/busybox").unwrap();
    let s = |t: &str| t.as_bytes().to_vec();
    write_layout(
        dir,
        &[
            vec![
                ("bin/", vec![]),
                ("bin/busybox", busybox),
                ("bin/sh", s("->busybox")),
                ("bin/ls", s("->busybox")),
                ("bin/cat", s("->busybox")),
                ("a", s("one\n")),
                ("keep", s("keep\n")),
                ("d/", vec![]),
                ("d/x", s("x")),
                ("d/y", s("y")),
                ("e/", vec![]),
                ("e/z", s("z")),
            ],
            vec![
                (".wh.a", vec![]),
                ("d/", vec![]),
                ("d/.wh..wh..opq", vec![]),
                ("d/new", s("new")),
            ],
            vec![("e/", vec![]), ("e/.wh.z", vec![]), ("a", s("again\n"))],
        ],
        serde_json::json!({"config": {
            "Entrypoint": ["/bin/sh", "-c"],
            "Cmd": ["ls -A /d /e; cat /a /keep"],
        }}),
    )
}

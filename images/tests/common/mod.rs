//! What the images crate's test files share.

use std::path::PathBuf;

/// A fresh directory under the temporary directory, removed (read-only
/// directories and all) when dropped.
pub struct Tmp(pub PathBuf);

impl Tmp {
    pub fn new(name: &str) -> Tmp {
        let p = std::env::temp_dir().join(format!("burrow-images-{name}-{}", std::process::id()));
        let _ = burrow_images::remove_tree(&p);
        std::fs::create_dir_all(&p).unwrap();
        Tmp(p)
    }
}

impl Drop for Tmp {
    fn drop(&mut self) {
        let _ = burrow_images::remove_tree(&self.0);
    }
}

/// A PAX extended header whose records are `records` (key, value).
pub fn pax_header(records: &[(&str, &[u8])]) -> (tar::Header, Vec<u8>) {
    let mut data = Vec::new();
    for (key, value) in records {
        let rest = key.len() + value.len() + 3;
        let mut len = rest + 1;
        while len.to_string().len() + rest != len {
            len = len.to_string().len() + rest;
        }
        data.extend(format!("{len} {key}=").into_bytes());
        data.extend_from_slice(value);
        data.push(b'\n');
    }
    let mut h = tar::Header::new_ustar();
    h.set_entry_type(tar::EntryType::XHeader);
    h.set_path("PaxHeaders/x").unwrap();
    h.set_size(data.len() as u64);
    h.set_mode(0o644);
    h.set_cksum();
    (h, data)
}

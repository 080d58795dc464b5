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

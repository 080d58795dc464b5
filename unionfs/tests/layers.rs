//! Merge rules of burrowfs' layer stack on real directories: whiteouts and
//! opaque directories in kernel overlayfs' format and in OCI's.

use std::path::{Path, PathBuf};
use std::process::Command;

use burrow_unionfs::{Kind, Stack};

struct Tree(PathBuf);

impl Tree {
    fn new(tag: &str) -> Tree {
        static N: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
        let n = N.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let base = std::env::var_os("TMPDIR").map_or_else(|| PathBuf::from("/tmp"), PathBuf::from);
        let dir = base.join(format!("burrowfs-{tag}-{}-{n}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        Tree(dir)
    }
    fn layer(&self, name: &str, files: &[&str]) -> PathBuf {
        let root = self.0.join(name);
        std::fs::create_dir_all(&root).unwrap();
        for f in files {
            let p = root.join(f);
            if let Some(dir) = f.strip_suffix('/') {
                std::fs::create_dir_all(root.join(dir)).unwrap();
            } else {
                std::fs::create_dir_all(p.parent().unwrap()).unwrap();
                std::fs::write(&p, format!("{name}:{f}")).unwrap();
            }
        }
        root
    }
}

impl Drop for Tree {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn names(stack: &Stack, dir: &str) -> Vec<String> {
    stack
        .read_dir(Path::new(dir))
        .unwrap()
        .into_iter()
        .map(|e| e.name.to_string_lossy().into_owned())
        .collect()
}

fn content(stack: &Stack, path: &str) -> String {
    let e = stack.lookup(Path::new(path)).unwrap();
    std::fs::read_to_string(stack.layer_dir(e.layer).join(path)).unwrap()
}

fn whiteout(path: &Path) {
    let st = Command::new("mknod")
        .arg(path)
        .args(["c", "0", "0"])
        .status()
        .unwrap();
    assert!(st.success(), "mknod of a 0/0 whiteout failed");
}

#[test]
fn layers_merge_and_upper_wins() {
    let t = Tree::new("merge");
    let upper = t.layer("upper", &["c", "d/z", "a"]);
    let l1 = t.layer("l1", &["a", "d/x"]);
    let l2 = t.layer("l2", &["a", "b", "d/y", "d/x"]);
    let stack = Stack::new(vec![l1, l2], Some(upper)).unwrap();
    assert_eq!(names(&stack, ""), ["a", "b", "c", "d"]);
    assert_eq!(names(&stack, "d"), ["x", "y", "z"]);
    assert_eq!(content(&stack, "a"), "upper:a");
    assert_eq!(content(&stack, "d/x"), "l1:d/x");
    assert_eq!(content(&stack, "b"), "l2:b");
    let d = stack.lookup(Path::new("d")).unwrap();
    assert_eq!(d.kind, Kind::Dir);
    assert_eq!(d.dir_layers, [0, 1, 2]);
}

#[test]
fn char_device_whiteout_hides_lower_entries() {
    let t = Tree::new("wh");
    let upper = t.layer("upper", &["d/"]);
    let lower = t.layer("lower", &["gone", "kept", "d/gone", "d/kept"]);
    whiteout(&upper.join("gone"));
    whiteout(&upper.join("d/gone"));
    let stack = Stack::new(vec![lower], Some(upper)).unwrap();
    assert_eq!(names(&stack, ""), ["d", "kept"]);
    assert_eq!(names(&stack, "d"), ["kept"]);
    let err = stack.lookup(Path::new("d/gone")).unwrap_err();
    assert_eq!(err.kind(), std::io::ErrorKind::NotFound);
}

#[test]
fn opaque_directory_hides_lower_contents() {
    let t = Tree::new("opaque");
    let upper = t.layer("upper", &["d/new"]);
    let lower = t.layer("lower", &["d/old"]);
    xattr::set(upper.join("d"), "user.overlay.opaque", b"y").unwrap();
    let stack = Stack::new(vec![lower], Some(upper)).unwrap();
    assert_eq!(names(&stack, "d"), ["new"]);
    assert!(stack.lookup(Path::new("d/old")).is_err());
    assert_eq!(stack.lookup(Path::new("d")).unwrap().dir_layers, [0]);
}

#[test]
fn xattr_whiteouts_count_only_in_marked_directories() {
    let t = Tree::new("xwh");
    let upper = t.layer("upper", &["d/", "e/"]);
    let lower = t.layer("lower", &["d/gone", "e/stays"]);
    for dir in ["d", "e"] {
        let name = if dir == "d" { "gone" } else { "stays" };
        let p = upper.join(dir).join(name);
        std::fs::write(&p, "").unwrap();
        xattr::set(&p, "user.overlay.whiteout", b"").unwrap();
    }
    // Only d is marked as holding xattr whiteouts.
    xattr::set(upper.join("d"), "user.overlay.opaque", b"x").unwrap();
    let stack = Stack::new(vec![lower], Some(upper)).unwrap();
    assert!(names(&stack, "d").is_empty());
    assert_eq!(names(&stack, "e"), ["stays"]);
}

#[test]
fn oci_whiteouts_and_opaque_marker() {
    let t = Tree::new("oci");
    let top = t.layer("top", &[".wh.gone", "d/.wh..wh..opq", "d/new"]);
    let bottom = t.layer("bottom", &["gone", "kept", "d/old"]);
    let stack = Stack::new(vec![top, bottom], None).unwrap();
    assert_eq!(names(&stack, ""), ["d", "kept"]);
    assert_eq!(names(&stack, "d"), ["new"]);
    assert!(stack.lookup(Path::new("gone")).is_err());
}

#[test]
fn a_file_hides_a_lower_directory_and_is_not_traversable() {
    let t = Tree::new("shadow");
    let upper = t.layer("upper", &["d"]);
    let lower = t.layer("lower", &["d/inner"]);
    let stack = Stack::new(vec![lower], Some(upper)).unwrap();
    assert_eq!(stack.lookup(Path::new("d")).unwrap().kind, Kind::File);
    let err = stack.lookup(Path::new("d/inner")).unwrap_err();
    assert_eq!(err.raw_os_error(), Some(libc::ENOTDIR));
}

#[test]
fn bad_layers_are_refused_with_their_role() {
    let t = Tree::new("bad");
    let file = t.0.join("file");
    std::fs::write(&file, "").unwrap();
    let err = Stack::new(vec![t.0.join("missing")], None).unwrap_err();
    assert!(err.to_string().starts_with("lowerdir "), "{err}");
    let err = Stack::new(vec![t.0.clone()], Some(file)).unwrap_err();
    assert_eq!(
        err.to_string(),
        format!("upperdir {}: not a directory", t.0.join("file").display())
    );
    assert!(Stack::new(Vec::<PathBuf>::new(), None).is_err());
}

//! burrowfs reads what kernel overlayfs writes: layers changed through a
//! real overlayfs mount (in a user namespace, `userxattr`) merge to the
//! same tree in burrowfs' layer stack as in the kernel's own view.

use std::path::{Path, PathBuf};
use std::process::Command;

use burrow_tests::*;
use burrow_unionfs::{Kind, Stack};

/// Changes made through the kernel's overlay: deletions (whiteouts), a
/// directory removed and made again (opaque), copy-ups, new entries.
const MUTATIONS: &str = r#"
set -e
cd "$M"
rm top-only
rm -r both/sub
mkdir both/sub && echo new > both/sub/fresh
rm bottom/deep/b1
echo appended >> both/shared
chmod 600 bottom/deep/b2
mkdir -p made/here && echo x > made/here/file
ln -s ../both/shared made/link
mv bottom/moved-file made/
rm -r gone-dir
"#;

/// One line per entry: path|type|size|link target (dirs get size 0).
const LISTING: &str = r#"cd "$M" && find . -mindepth 1 \( -type d -printf '%P|d|0|\n' \) -o -printf '%P|%y|%s|%l\n' | LC_ALL=C sort"#;

fn overlay(l1: &Path, l2: &Path, upper: &Path, work: &Path, merged: &Path, script: &str) -> Output {
    assert_unprivileged();
    let mount = format!(
        "mount -t overlay overlay -o lowerdir={}:{},upperdir={},workdir={},userxattr \"$M\" || exit 99; {script}",
        l1.display(),
        l2.display(),
        upper.display(),
        work.display()
    );
    output(
        Command::new("unshare")
            .args(["--user", "--map-root-user", "--mount", "sh", "-c", &mount])
            .env("M", merged),
    )
}

fn write_tree(root: &Path, files: &[&str]) {
    for f in files {
        let p = root.join(f);
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(&p, format!("content of {f}\n")).unwrap();
    }
}

/// burrowfs' view in the same format as LISTING.
fn stack_listing(stack: &Stack) -> String {
    fn walk(stack: &Stack, rel: &Path, out: &mut Vec<String>) {
        for e in stack.read_dir(rel).unwrap() {
            let path = rel.join(&e.name);
            let entry = stack.lookup(&path).unwrap();
            let real = stack.layer_dir(entry.layer).join(&path);
            let (ty, size, target) = match entry.kind {
                Kind::Dir => ("d", 0, String::new()),
                Kind::File => ("f", entry.meta.size, String::new()),
                Kind::Symlink => (
                    "l",
                    entry.meta.size,
                    std::fs::read_link(&real)
                        .unwrap()
                        .to_string_lossy()
                        .into_owned(),
                ),
                other => panic!("unexpected {other:?} at {}", path.display()),
            };
            out.push(format!("{}|{ty}|{size}|{target}", path.display()));
            if entry.kind == Kind::Dir {
                walk(stack, &path, out);
            }
        }
    }
    let mut lines = Vec::new();
    walk(stack, Path::new(""), &mut lines);
    lines.sort();
    lines.iter().map(|l| format!("{l}\n")).collect()
}

#[test]
fn burrowfs_merges_layers_written_by_kernel_overlayfs_identically() {
    let t = TempDir::new("ovl");
    let dirs: Vec<PathBuf> = ["l1", "l2", "upper", "work", "merged"]
        .iter()
        .map(|d| t.join(d))
        .collect();
    for d in &dirs {
        std::fs::create_dir_all(d).unwrap();
    }
    let (l1, l2, upper, work, merged) = (&dirs[0], &dirs[1], &dirs[2], &dirs[3], &dirs[4]);
    write_tree(
        l1,
        &["top-only", "both/shared", "both/sub/s1", "gone-dir/g"],
    );
    write_tree(
        l2,
        &[
            "both/shared",
            "both/from-l2",
            "both/sub/s2",
            "bottom/deep/b1",
            "bottom/deep/b2",
            "bottom/moved-file",
        ],
    );

    let changed = overlay(l1, l2, upper, work, merged, MUTATIONS);
    if changed.code == 99 {
        skipped(
            "kernel overlayfs cannot be mounted in a user namespace here (needs userxattr support)",
        );
        return;
    }
    assert_eq!(
        changed.code, 0,
        "mutating through kernel overlayfs failed: {changed:?}"
    );

    let kernel = overlay(l1, l2, upper, work, merged, LISTING);
    assert_eq!(kernel.code, 0, "{kernel:?}");
    let stack = Stack::new(vec![l1.clone(), l2.clone()], Some(upper.clone())).unwrap();
    let ours = stack_listing(&stack);
    assert_eq!(
        ours, kernel.stdout,
        "burrowfs' merge differs from kernel overlayfs'"
    );
    // Sanity: the mutations really produced whiteouts and an opaque dir.
    assert!(
        !ours.contains("top-only")
            && !ours.contains("both/sub/s1")
            && ours.contains("both/sub/fresh")
    );
    assert!(ours.contains("both/from-l2|f"), "{ours}");
    // Contents come from the right layer.
    let shared = stack.lookup(Path::new("both/shared")).unwrap();
    let text = std::fs::read_to_string(stack.layer_dir(shared.layer).join("both/shared")).unwrap();
    assert_eq!(text, "content of both/shared\nappended\n");
}

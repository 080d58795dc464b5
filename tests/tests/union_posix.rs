//! POSIX details FUSE overlays often get wrong, checked on burrow's union
//! root (served by burrowfs).

use burrow_tests::*;

#[test]
fn umask_is_honoured_on_create() {
    let out = sh(&AS_ROOT, "umask 027; touch /srv/f; mkdir /srv/d; mkfifo /srv/p; stat -c '%a %n' /srv/f /srv/d /srv/p");
    assert_eq!(out.ok(), "640 /srv/f\n750 /srv/d\n640 /srv/p\n");
}

#[test]
fn setuid_is_cleared_by_a_non_owners_write_and_by_chown() {
    if !has_subordinate_ids() {
        skipped("a second user in the sandbox needs subordinate ids");
        return;
    }
    let out = sh(
        &AS_ROOT,
        "touch /srv/s && chmod 4777 /srv/s && \
         setpriv --reuid=1000 --regid=1000 --clear-groups sh -c 'echo x >> /srv/s' && stat -c %a /srv/s; \
         touch /srv/t && chmod 6755 /srv/t && chown 1000:1000 /srv/t && stat -c '%a %u:%g' /srv/t",
    );
    assert_eq!(out.ok(), "777\n755 1000:1000\n");
}

/// burrowfs clears these bits itself (FUSE_HANDLE_KILLPRIV_V2): on a write
/// to a file already written (whose lack of privileges the kernel has
/// remembered) and on a truncate, and the mode the sandbox then sees is the
/// cleared one.
#[test]
fn setuid_is_cleared_by_writes_after_earlier_writes_and_by_truncates() {
    if !has_subordinate_ids() {
        skipped("a second user in the sandbox needs subordinate ids");
        return;
    }
    let out = sh(
        &AS_ROOT,
        "echo a > /srv/w && echo b >> /srv/w && chmod 4777 /srv/w && \
         setpriv --reuid=1000 --regid=1000 --clear-groups sh -c 'echo c >> /srv/w' && \
         stat -c %a /srv/w && cat /srv/w; \
         touch /srv/t && chmod 6777 /srv/t && \
         setpriv --reuid=1000 --regid=1000 --clear-groups truncate -s 1 /srv/t && stat -c %a /srv/t",
    );
    assert_eq!(out.ok(), "777\na\nb\nc\n777\n");
}

#[test]
fn name_and_path_limits() {
    let out = sh(
        &AS_ROOT,
        r#"long=$(printf 'n%.0s' $(seq 256)); touch "/srv/$long" 2>&1 | grep -c 'File name too long'
           ok=$(printf 'n%.0s' $(seq 255)); touch "/srv/$ok" && echo 255-ok"#,
    );
    assert_eq!(out.ok(), "1\n255-ok\n");
}

/// The kernel keeps symlink targets (FUSE_CACHE_SYMLINKS): a symlink
/// replaced by removing it and making another (the upper's file system may
/// hand the new one the old inode number), by renaming another over it,
/// or by a directory of the same name, must never read as the old target.
#[test]
fn a_replaced_symlink_never_reads_as_the_old_one() {
    let out = sh(
        &AS_ROOT,
        "cd /srv; ln -s a l; readlink l; for t in b c d; do rm l; ln -s $t l; readlink l; done; \
         ln -s e l2; mv -T l2 l; readlink l; \
         rm l; mkdir l; test -d l && echo dir; rmdir l; ln -s f l; readlink l; \
         readlink /bin || true",
    );
    let host_bin = std::fs::read_link("/bin")
        .map(|t| format!("{}\n", t.display()))
        .unwrap_or_default();
    assert_eq!(out.ok(), format!("a\nb\nc\nd\ne\ndir\nf\n{host_bin}"));
}

#[test]
fn an_open_unlinked_file_stays_readable_with_no_links() {
    let out = sh(
        &AS_ROOT,
        "exec 3<>/srv/u; echo data >&3; rm /srv/u; test -e /srv/u && echo still-there; \
         stat -L -c 'links %h size %s' /proc/self/fd/3; cat /proc/self/fd/3",
    );
    assert_eq!(out.ok(), "links 0 size 5\ndata\n");
}

/// O_DIRECT goes past the page cache to burrowfs, which (no FUSE opens)
/// must still have the file once its last name is gone: a lower file
/// whited out and an upper file removed, both read and written through
/// descriptors opened before.
#[test]
fn reads_and_writes_reach_a_file_that_lost_its_last_name() {
    let out = sh(
        &AS_ROOT,
        "exec 3</usr/lib/os-release; rm /usr/lib/os-release; test -e /usr/lib/os-release || echo gone; \
         dd if=/proc/self/fd/3 iflag=direct bs=4096 count=1 status=none | head -c 6; echo; \
         exec 4<>/srv/up; printf 'hello world' >&4; rm /srv/up; \
         printf HELLO | dd of=/proc/self/fd/4 oflag=direct conv=notrunc status=none; \
         dd if=/proc/self/fd/4 iflag=direct status=none; echo",
    );
    assert_eq!(out.ok(), "gone\nPRETTY\nHELLO world\n");
}

#[test]
fn creating_and_removing_update_the_parents_times() {
    let out = sh(
        &AS_ROOT,
        "a=$(stat -c %Y /etc); sleep 1.1; touch /etc/burrow-new; b=$(stat -c %Y /etc); \
         sleep 1.1; rm /etc/burrow-new; c=$(stat -c %Y /etc); \
         [ $b -gt $a ] && echo created-later; [ $c -gt $b ] && echo removed-later",
    );
    assert_eq!(out.ok(), "created-later\nremoved-later\n");
}

#[test]
fn hard_links_share_inode_and_count() {
    let out = sh(
        &AS_ROOT,
        "echo one > /srv/h1 && ln /srv/h1 /srv/h2 && stat -c '%h' /srv/h1 && \
         [ $(stat -c %i /srv/h1) = $(stat -c %i /srv/h2) ] && echo same-inode && \
         echo two >> /srv/h2 && cat /srv/h1 && rm /srv/h1 && stat -c '%h' /srv/h2",
    );
    assert_eq!(out.ok(), "2\nsame-inode\none\ntwo\n1\n");
}

#[test]
fn a_new_hard_link_leaves_the_files_owner_alone() {
    if !has_subordinate_ids() {
        skipped("a second owner in the sandbox needs subordinate ids");
        return;
    }
    let out = sh(
        &AS_ROOT,
        "touch /srv/o && chown 1000:1000 /srv/o && ln /srv/o /srv/o2 && \
         stat -c %u:%g /srv/o /srv/o2",
    );
    assert_eq!(out.ok(), "1000:1000\n1000:1000\n");
}

#[test]
fn inode_numbers_survive_copy_up() {
    let out = sh(
        &AS_ROOT,
        "a=$(stat -c %i /etc/hostname); echo x >> /etc/hostname; b=$(stat -c %i /etc/hostname); \
         [ \"$a\" = \"$b\" ] && echo stable",
    );
    assert_eq!(out.ok(), "stable\n");
}

//! Root inside the default sandbox of an unprivileged caller owns the
//! system it sees: the host's root-owned files show as root's, and root
//! inside changes them (into the private upper layer) as on an ordinary
//! machine: package managers, useradd, chown. Files the caller cannot read
//! on the host stay unreadable.

use std::path::Path;
use std::process::Command;

use burrow_tests::*;

/// A host path this test's user cannot read (the host's secrets).
fn unreadable_host_paths() -> Vec<&'static str> {
    let found: Vec<_> = ["/etc/shadow-", "/etc/gshadow-", "/root"]
        .into_iter()
        .filter(|p| {
            let denied = |e: std::io::Error| e.kind() == std::io::ErrorKind::PermissionDenied;
            std::fs::File::open(p).is_err_and(denied) || std::fs::read_dir(p).is_err_and(denied)
        })
        .collect();
    assert!(!found.is_empty(), "no host path is unreadable to this user");
    found
}

#[test]
fn the_hosts_root_owned_system_is_roots_inside_and_writable() {
    assert_unprivileged();
    let name = format!("burrow-root-{}", unique_token());
    let out = sh(
        &[],
        &format!(
            "id -u; stat -c '%u:%g %n' / /etc /usr/local /var/log /usr/bin/env /etc/hostname; \
             echo x > /etc/{name} && mkdir /usr/local/{name} && touch /var/log/{name} && \
             chmod 600 /etc/hostname && rm /etc/hostname && \
             rm -r /usr/share/doc/bash && echo changed; stat -c '%u:%g %a' /etc/{name}"
        ),
    );
    assert_eq!(
        out.ok(),
        format!(
            "0\n0:0 /\n0:0 /etc\n0:0 /usr/local\n0:0 /var/log\n0:0 /usr/bin/env\n\
             0:0 /etc/hostname\nchanged\n0:0 644\n"
        )
    );
    for p in [
        format!("/etc/{name}"),
        format!("/usr/local/{name}"),
        format!("/var/log/{name}"),
    ] {
        assert!(!Path::new(&p).exists(), "{p} reached the host");
    }
    assert!(Path::new("/etc/hostname").exists());
    assert!(Path::new("/usr/share/doc/bash").exists());
}

#[test]
fn files_the_caller_cannot_read_stay_unreadable_inside() {
    assert_unprivileged();
    for path in unreadable_host_paths() {
        // Root inside, with DAC_OVERRIDE kept, reading or listing it.
        let out = sh(
            &[],
            &format!(
                "cat {path} 2>&1 || ls {path} 2>&1; dd if={path} bs=1 count=1 2>&1 | head -c 300"
            ),
        );
        assert!(out.stdout.contains("Permission denied"), "{path}: {out:?}");
        assert!(!out.stdout.contains(":$"), "{path}: a hash leaked: {out:?}");
    }
    // Emptying one replaces it in the upper layer without reading it.
    let out = sh(
        &[],
        "f=/etc/shadow-; test -e $f || f=/etc/gshadow-; : > $f && stat -c %s $f && cat $f",
    );
    assert_eq!(out.ok(), "0\n");
}

#[test]
fn the_password_files_are_locked_stand_ins_not_the_hosts() {
    assert_unprivileged();
    if !Path::new("/etc/shadow").exists() || !Path::new("/etc/gshadow").exists() {
        return skipped("this host has no /etc/shadow and /etc/gshadow");
    }
    let out = sh(
        &[],
        "stat -c '%u %a' /etc/shadow /etc/gshadow; cut -d: -f2 /etc/shadow /etc/gshadow | sort -u; \
         cut -d: -f1 /etc/passwd | sort > /tmp/p; cut -d: -f1 /etc/shadow | sort | diff /tmp/p - && echo same-users",
    );
    assert_eq!(out.ok(), "0 640\n0 640\n*\nsame-users\n");
}

#[test]
fn useradd_groupadd_and_passwords_work_inside() {
    assert_unprivileged();
    let out = sh(
        &[],
        "groupadd burrowgrp && useradd -m -g burrowgrp -s /bin/sh alice && \
         echo alice:secret | chpasswd && grep -c '^alice:\\$' /etc/shadow && \
         su alice -c 'id -un; touch ~/mine; stat -c %U:%G ~/mine' && \
         groupadd -f burrowgrp && userdel -r alice && id alice 2>&1 | grep -c 'no such user'",
    );
    assert_eq!(out.ok(), "1\nalice\nalice:burrowgrp\n1\n");
    let host = std::fs::read_to_string("/etc/passwd").unwrap();
    assert!(!host.contains("alice:"), "a user reached the host");
}

/// `dir/NAME.deb`, whose maintainer script adds a system user and writes
/// under /etc, /usr/local and /var/lib.
fn build_deb(dir: &Path, name: &str) {
    let root = dir.join("pkg");
    std::fs::create_dir_all(root.join("DEBIAN")).unwrap();
    std::fs::create_dir_all(root.join("usr/local/share").join(name)).unwrap();
    std::fs::write(
        root.join("usr/local/share").join(name).join("data"),
        "payload\n",
    )
    .unwrap();
    std::fs::write(
        root.join("DEBIAN/control"),
        format!(
            "Package: {name}\nVersion: 1.0\nArchitecture: all\n\
             Maintainer: burrow tests <tests@burrow.invalid>\nDescription: a test package\n"
        ),
    )
    .unwrap();
    let postinst = root.join("DEBIAN/postinst");
    std::fs::write(
        &postinst,
        format!(
            "#!/bin/sh\nset -e\nuseradd --system --user-group --no-create-home {name}d\n\
             echo configured > /etc/{name}.conf\nmkdir -p /var/lib/{name}\n\
             chown {name}d:{name}d /var/lib/{name}\n"
        ),
    )
    .unwrap();
    std::fs::set_permissions(
        &postinst,
        std::os::unix::fs::PermissionsExt::from_mode(0o755),
    )
    .unwrap();
    let deb = dir.join(format!("{name}.deb"));
    let built = Command::new("dpkg-deb")
        .args(["--root-owner-group", "--build"])
        .arg(&root)
        .arg(&deb)
        .output()
        .unwrap();
    assert!(built.status.success(), "dpkg-deb: {built:?}");
}

#[test]
fn dpkg_installs_a_package_and_the_host_shows_no_trace() {
    assert_unprivileged();
    let dir = TempDir::new("deb");
    let name = format!("burrow-t{}", unique_token().replace('.', ""));
    build_deb(dir.path(), &name);
    let out = sh(
        &["--ro-bind", dir.s(), "/mnt"],
        &format!(
            "dpkg -i /mnt/{name}.deb >/dev/null && dpkg -l {name} | tail -1 | cut -c1-2 && \
             getent passwd {name}d | cut -d: -f1 && stat -c %U /var/lib/{name} && \
             cat /etc/{name}.conf /usr/local/share/{name}/data && dpkg -r {name} >/dev/null && \
             test ! -e /usr/local/share/{name}/data && echo removed",
        ),
    );
    assert_eq!(
        out.ok(),
        format!("ii\n{name}d\n{name}d\nconfigured\npayload\nremoved\n")
    );
    for p in [
        format!("/etc/{name}.conf"),
        format!("/var/lib/{name}"),
        format!("/usr/local/share/{name}"),
        format!("/var/lib/dpkg/info/{name}.list"),
    ] {
        assert!(!Path::new(&p).exists(), "{p} reached the host");
    }
    let listed = Command::new("dpkg-query")
        .args(["-W", &name])
        .output()
        .unwrap();
    assert!(!listed.status.success(), "the host's dpkg knows {name}");
    let host = std::fs::read_to_string("/etc/passwd").unwrap();
    assert!(!host.contains(&format!("{name}d:")));
}

#[test]
fn pip_installs_a_wheel_into_the_system_site_packages() {
    assert_unprivileged();
    if Command::new("/usr/bin/python3")
        .args(["-m", "pip", "--version"])
        .output()
        .map_or(true, |o| !o.status.success())
    {
        return skipped("Debian's python3-pip is not installed");
    }
    let dir = TempDir::new("wheel");
    let module = format!("burrowwheel{}", unique_token().replace('.', ""));
    // A wheel by the format's own rules: the module, METADATA, WHEEL and a
    // RECORD of sha256 digests.
    let build = Command::new("/usr/bin/python3")
        .args([
            "-c",
            r#"
import base64, hashlib, sys, zipfile
out, mod = sys.argv[1], sys.argv[2]
files = {
    f"{mod}/__init__.py": b"GREETING = 'hello from a wheel'\n",
    f"{mod}-1.0.dist-info/METADATA": f"Metadata-Version: 2.1\nName: {mod}\nVersion: 1.0\n".encode(),
    f"{mod}-1.0.dist-info/WHEEL": b"Wheel-Version: 1.0\nGenerator: burrow-tests\nRoot-Is-Purelib: true\nTag: py3-none-any\n",
}
record = ""
for name, data in files.items():
    digest = base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=").decode()
    record += f"{name},sha256={digest},{len(data)}\n"
record += f"{mod}-1.0.dist-info/RECORD,,\n"
files[f"{mod}-1.0.dist-info/RECORD"] = record.encode()
with zipfile.ZipFile(f"{out}/{mod}-1.0-py3-none-any.whl", "w") as z:
    for name, data in files.items():
        z.writestr(name, data)
"#,
            dir.s(),
            &module,
        ])
        .output()
        .unwrap();
    assert!(build.status.success(), "{build:?}");
    let out = sh(
        &["--ro-bind", dir.s(), "/mnt"],
        &format!(
            "/usr/bin/python3 -m pip install -q --no-index --break-system-packages \
             --root-user-action=ignore /mnt/{module}-1.0-py3-none-any.whl && \
             cd / && /usr/bin/python3 -c 'import {module} as m; print(m.GREETING); print(m.__file__)'"
        ),
    );
    let text = out.ok();
    let mut lines = text.lines();
    assert_eq!(lines.next(), Some("hello from a wheel"), "{out:?}");
    let file = lines.next().unwrap_or_default();
    assert!(
        file.starts_with("/usr/local/lib/python3") && file.contains("/dist-packages/"),
        "not in the system site-packages: {file}"
    );
    let installed = Path::new(file);
    assert!(!installed.exists(), "{file} reached the host");
}

#[test]
fn chown_to_subordinate_ids_on_new_and_lower_files() {
    assert_unprivileged();
    if !has_subordinate_ids() {
        return skipped("this user has no subordinate ids in /etc/subuid");
    }
    let out = sh(
        &[],
        "touch /etc/new && mkdir /var/newdir && \
         chown 1000:1000 /etc/new /etc/hostname && chown 100:100 /var/newdir /etc/passwd && \
         stat -c '%u:%g %n' /etc/new /etc/hostname /var/newdir /etc/passwd",
    );
    assert_eq!(
        out.ok(),
        "1000:1000 /etc/new\n1000:1000 /etc/hostname\n100:100 /var/newdir\n100:100 /etc/passwd\n"
    );
    let host = std::fs::metadata("/etc/passwd").unwrap();
    assert_eq!(std::os::unix::fs::MetadataExt::uid(&host), 0);
}

#[test]
fn keep_id_shows_the_host_as_the_caller_sees_it() {
    assert_unprivileged();
    let me = nix::unistd::getuid().as_raw();
    let dir = TempDir::in_dir(Path::new("/var/tmp"), "keepid");
    let mine = dir.join("mine");
    std::fs::write(&mine, "x").unwrap();
    let out = sh(
        &["--keep-id"],
        &format!(
            "id -u; stat -c %u /etc {p}; touch /etc/x 2>&1 | grep -c 'Permission denied'; \
             echo y >> {p} && echo own-file-writable",
            p = mine.display()
        ),
    );
    assert_eq!(out.ok(), format!("{me}\n0\n{me}\n1\nown-file-writable\n"));
    // The default shows the caller's own files as root's: it is root inside.
    let root = sh(&[], &format!("stat -c %u {}", mine.display()));
    assert_eq!(root.ok(), "0\n");
    assert_eq!(std::fs::read_to_string(&mine).unwrap(), "x");
}

#[test]
fn a_rootfs_of_the_callers_own_files_is_roots_inside() {
    assert_unprivileged();
    let dir = TempDir::in_dir(Path::new("/var/tmp"), "rootfs");
    let rootfs = dir.join("root");
    for d in [
        "bin", "etc", "usr", "lib", "lib64", "proc", "dev", "tmp", "sys",
    ] {
        std::fs::create_dir_all(rootfs.join(d)).unwrap();
    }
    let copy = Command::new("cp")
        .arg("/bin/busybox")
        .arg(rootfs.join("bin/busybox"))
        .status()
        .unwrap();
    assert!(copy.success());
    std::fs::write(rootfs.join("etc/motd"), "rootfs\n").unwrap();
    let out = output(burrow_run().args(["--rootfs", rootfs.to_str().unwrap(), "--"]).args([
        "/bin/busybox",
        "sh",
        "-c",
        "/bin/busybox stat -c '%u:%g' /etc/motd && echo more >> /etc/motd && /bin/busybox cat /etc/motd",
    ]));
    assert_eq!(out.ok(), "0:0\nrootfs\nmore\n");
    assert_eq!(
        std::fs::read_to_string(rootfs.join("etc/motd")).unwrap(),
        "rootfs\n"
    );
}

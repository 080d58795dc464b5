//! OCI runtime bundles for burrow-runtime's tests: a busybox root and the
//! config.json of runc's own `spec --rootless` (the real client of the
//! format), and burrow-runtime run as the unprivileged account.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use crate::*;

pub fn runtime_bin() -> PathBuf {
    burrow_bin().with_file_name("burrow-runtime")
}

/// A bundle in `dir`: a busybox root (with the mount points a read-only
/// root needs) and runc's rootless config.json, edited by `edit`.
pub fn bundle(dir: &Path, edit: impl FnOnce(&mut serde_json::Value)) {
    let bin = dir.join("rootfs/bin");
    std::fs::create_dir_all(&bin).unwrap();
    for d in ["proc", "dev", "sys", "tmp", "etc", "data"] {
        std::fs::create_dir_all(dir.join("rootfs").join(d)).unwrap();
    }
    std::fs::copy("/bin/busybox", bin.join("busybox")).expect("busybox-static (setup-host.sh)");
    for applet in [
        "sh", "echo", "hostname", "id", "wc", "grep", "touch", "ls", "readlink", "test", "tty",
        "stty", "true", "cat", "mkdir", "sleep", "ps", "pwd", "wget", "ip",
    ] {
        std::os::unix::fs::symlink("busybox", bin.join(applet)).unwrap();
    }
    let out = Command::new("runc")
        .args(["spec", "--rootless"])
        .current_dir(dir)
        .output()
        .expect("runc (setup-host.sh)");
    assert!(out.status.success(), "runc spec: {out:?}");
    let path = dir.join("config.json");
    let mut c: serde_json::Value = serde_json::from_slice(&std::fs::read(&path).unwrap()).unwrap();
    c["process"]["terminal"] = false.into();
    edit(&mut c);
    std::fs::write(&path, serde_json::to_vec_pretty(&c).unwrap()).unwrap();
}

/// The first subordinate id /etc/subuid or /etc/subgid (`file`) grants
/// this account.
pub fn first_subordinate(file: &str) -> u32 {
    let uid = nix::unistd::getuid();
    let name = nix::unistd::User::from_uid(uid).unwrap().unwrap().name;
    std::fs::read_to_string(file)
        .unwrap()
        .lines()
        .find_map(|l| {
            let f: Vec<&str> = l.split(':').collect();
            (f[0] == name || f[0] == uid.to_string()).then(|| f[1].parse().unwrap())
        })
        .unwrap()
}

/// Binds the bundle's `data` directory on /data, read-write.
pub fn bind_data(c: &mut serde_json::Value) {
    c["mounts"].as_array_mut().unwrap().push(serde_json::json!(
        { "destination": "/data", "type": "bind", "source": "data", "options": ["rbind", "rw"] }
    ));
}

/// burrow-runtime with `--root ROOT` and `args`, as the unprivileged
/// account. Its output goes through files, not pipes: a created
/// container keeps the streams it was given (as runc's does), so a pipe
/// would stay open as long as the container.
pub fn rt(root: &Path, args: &[&str]) -> Output {
    assert_unprivileged();
    // (Files of this call's own: a container made by an earlier call may
    // still write to that call's.)
    let call = unique_token();
    let (out, err) = (
        root.with_extension(format!("{call}.out")),
        root.with_extension(format!("{call}.err")),
    );
    let status = Command::new(runtime_bin())
        .arg("--root")
        .arg(root)
        .args(args)
        .stdin(Stdio::null())
        .stdout(std::fs::File::create(&out).unwrap())
        .stderr(std::fs::File::create(&err).unwrap())
        .status()
        .unwrap();
    Output {
        code: exit_code(status),
        stdout: std::fs::read_to_string(&out).unwrap(),
        stderr: std::fs::read_to_string(&err).unwrap(),
    }
}

pub fn status_of(root: &Path, id: &str) -> String {
    let out = rt(root, &["state", id]);
    assert_eq!(out.code, 0, "{out:?}");
    let state: serde_json::Value = serde_json::from_str(&out.stdout).unwrap();
    state["status"].as_str().unwrap().to_string()
}

/// Python for an engine's side of a terminal, as conmon serves it, put
/// before a test's own script: `receive_master(path, start)` listens on
/// the console socket `path`, calls `start()` (which runs the runtime and
/// returns its Popen) and returns the terminal's name, the pty master
/// sent over SCM_RIGHTS and the Popen; `read_terminal(fd, answer)` reads
/// the master until the other end closes (EIO), typing `answer[1]` once
/// the output ends with `answer[0]`, and returns it with `\r\n` as `\n`.
pub const PY_CONSOLE: &str = r#"
import os, socket
def receive_master(path, start):
    srv = socket.socket(socket.AF_UNIX); srv.bind(path); srv.listen(1)
    proc = start()
    conn, _ = srv.accept()
    name, fds, _, _ = socket.recv_fds(conn, 1024, 1)
    return name.decode(), fds[0], proc
def read_terminal(fd, answer=None):
    out = b''
    while True:
        if answer and out.endswith(answer[0]):
            os.write(fd, answer[1])
            answer = None
        try:
            chunk = os.read(fd, 4096)
        except OSError:  # EIO: the terminal's other end is closed
            break
        if not chunk:
            break
        out += chunk
    return out.decode().replace('\r\n', '\n')
"#;

//! `--json-status FD`: JSON lines describing the sandbox, as bwrap's
//! `--json-status-fd`.

use std::os::fd::BorrowedFd;
use std::os::unix::fs::MetadataExt;

use nix::unistd::Pid;
use serde_json::{json, Map, Value};

const NAMESPACES: [&str; 7] = ["cgroup", "ipc", "mnt", "net", "pid", "user", "uts"];

/// Writes `{"child-pid": N, "<ns>-namespace": inode, ...}`.
pub fn write_started(fd: BorrowedFd, child: Pid) {
    let mut obj = Map::new();
    obj.insert("child-pid".into(), json!(child.as_raw()));
    for ns in NAMESPACES {
        if let Ok(meta) = std::fs::metadata(format!("/proc/{child}/ns/{ns}")) {
            obj.insert(format!("{ns}-namespace"), json!(meta.ino()));
        }
    }
    write_line(fd, &Value::Object(obj));
}

/// Writes `{"exit-code": N}`.
pub fn write_exit(fd: BorrowedFd, code: i32) {
    write_line(fd, &json!({ "exit-code": code }));
}

fn write_line(fd: BorrowedFd, value: &Value) {
    let line = format!("{value}\n");
    let mut rest = line.as_bytes();
    while !rest.is_empty() {
        match nix::unistd::write(fd, rest) {
            Ok(n) => rest = &rest[n..],
            Err(nix::errno::Errno::EINTR) => continue,
            Err(_) => return,
        }
    }
}

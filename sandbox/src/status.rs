//! `--json-status FD`: JSON lines describing the sandbox, as bwrap's
//! `--json-status-fd`.

use std::os::fd::BorrowedFd;
use std::os::unix::fs::MetadataExt;

use nix::unistd::Pid;
use serde_json::{json, Map, Value};

const NAMESPACES: [&str; 7] = ["cgroup", "ipc", "mnt", "net", "pid", "user", "uts"];

/// The "started" line: `{"child-pid": N, "<ns>-namespace": inode, ...}`.
/// Read while the sandbox waits for its id maps, so that the namespaces
/// are still there however short-lived the command is.
pub fn started(child: Pid) -> Value {
    let mut obj = Map::new();
    obj.insert("child-pid".into(), json!(child.as_raw()));
    for ns in NAMESPACES {
        if let Ok(meta) = std::fs::metadata(format!("/proc/{child}/ns/{ns}")) {
            obj.insert(format!("{ns}-namespace"), json!(meta.ino()));
        }
    }
    Value::Object(obj)
}

/// Writes a status line.
pub fn write(fd: BorrowedFd, value: &Value) {
    write_line(fd, value);
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

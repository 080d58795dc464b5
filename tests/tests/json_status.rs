//! `--json-status FD`: machine-readable pid, namespaces and exit code.

use burrow_tests::*;
use serde_json::Value;

#[test]
fn json_status_reports_pid_namespaces_and_exit_code() {
    assert_unprivileged();
    let dir = TempDir::new("json");
    let file = dir.join("status.jsonl");
    // The status descriptor must not leak into the sandbox.
    let script = r#"exec 3>"$1"; exec "$0" run --json-status 3 -- sh -c 'test -e /proc/self/fd/3 && echo leaked; exit 4'"#;
    let out = output(
        std::process::Command::new("sh")
            .args(["-c", script])
            .arg(burrow_bin())
            .arg(&file),
    );
    assert_eq!(out.code, 4, "{out:?}");
    assert!(!out.stdout.contains("leaked"), "{out:?}");
    let text = std::fs::read_to_string(&file).unwrap();
    let lines: Vec<Value> = text
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(lines.len(), 2, "{text}");
    assert!(lines[0]["child-pid"].as_i64().unwrap() > 1, "{text}");
    for ns in ["user", "mnt", "pid", "net", "ipc", "uts", "cgroup"] {
        let inode = lines[0][format!("{ns}-namespace")].as_u64();
        assert!(inode.is_some_and(|i| i > 0), "no {ns}-namespace in {text}");
    }
    assert_eq!(lines[1]["exit-code"], 4, "{text}");
}

//! Running a command under a time limit, and reporting what it had done
//! when it overran: the output it had printed so far and the processes it
//! had left, each with what it was waiting in. A hang that comes once in
//! a hundred runs is diagnosed from that report alone.

use std::io::Read;
use std::process::{Child, ExitStatus};
use std::sync::mpsc;
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// A pipe read to its end on a thread of its own, each chunk kept as it
/// comes, so that what was read is there even if the end never comes.
pub struct Capture {
    buf: Arc<Mutex<Vec<u8>>>,
    ended: mpsc::Receiver<()>,
    thread: JoinHandle<()>,
}

impl Capture {
    pub fn start(mut pipe: impl Read + Send + 'static) -> Capture {
        let buf = Arc::new(Mutex::new(Vec::new()));
        let (tx, ended) = mpsc::channel();
        let into = Arc::clone(&buf);
        let thread = std::thread::spawn(move || {
            let mut chunk = [0u8; 8192];
            loop {
                match pipe.read(&mut chunk) {
                    Ok(0) => break,
                    Ok(n) => into.lock().unwrap().extend_from_slice(&chunk[..n]),
                    Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                    Err(_) => break,
                }
            }
            let _ = tx.send(());
        });
        Capture { buf, ended, thread }
    }

    /// Everything, once the pipe's last writer has closed it.
    pub fn finish(self) -> String {
        self.thread.join().expect("pipe reader");
        String::from_utf8_lossy(&self.buf.lock().unwrap()).into_owned()
    }

    /// What was read by the pipe's end or by `grace`, whichever comes
    /// first: a process the test could not kill may hold the pipe open.
    pub fn so_far(&self, grace: Duration) -> String {
        let _ = self.ended.recv_timeout(grace);
        String::from_utf8_lossy(&self.buf.lock().unwrap()).into_owned()
    }
}

/// Waits for `child` until `limit`; None when it is still running then.
pub fn wait_until(child: &mut Child, limit: Duration) -> Option<ExitStatus> {
    let deadline = Instant::now() + limit;
    loop {
        if let Some(status) = child.try_wait().expect("try_wait") {
            return Some(status);
        }
        if Instant::now() > deadline {
            return None;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// `root` and its descendants, parents first: one line each with the pid,
/// state, kernel wait channel and command line.
pub fn process_tree(root: u32) -> Vec<(i32, String)> {
    let mut parent_of = Vec::new();
    if let Ok(dir) = std::fs::read_dir("/proc") {
        for e in dir.flatten() {
            let Ok(pid) = e.file_name().to_string_lossy().parse::<i32>() else {
                continue;
            };
            if let Some((ppid, state)) = stat_fields(pid) {
                parent_of.push((pid, ppid, state));
            }
        }
    }
    let mut tree = Vec::new();
    let mut next = vec![root as i32];
    while let Some(pid) = next.pop() {
        let state = parent_of
            .iter()
            .find(|(p, _, _)| *p == pid)
            .map_or('?', |(_, _, s)| *s);
        let wchan = wait_channels(pid);
        let cmdline = std::fs::read(format!("/proc/{pid}/cmdline"))
            .map(|c| String::from_utf8_lossy(&c).replace('\0', " "))
            .unwrap_or_default();
        tree.push((
            pid,
            format!("{pid} {state} {wchan:<24} {}", cmdline.trim_end()),
        ));
        next.extend(
            parent_of
                .iter()
                .filter(|(_, pp, _)| *pp == pid)
                .map(|(p, _, _)| *p),
        );
    }
    tree
}

/// Where the threads of `pid` wait in the kernel: each distinct wait
/// channel, with how many threads wait there when more than one (a hung
/// server's workers wait apart from its main thread).
fn wait_channels(pid: i32) -> String {
    let mut seen: Vec<(String, usize)> = Vec::new();
    if let Ok(tasks) = std::fs::read_dir(format!("/proc/{pid}/task")) {
        for task in tasks.flatten() {
            let w = std::fs::read_to_string(task.path().join("wchan")).unwrap_or_default();
            match seen.iter_mut().find(|(s, _)| *s == w) {
                Some((_, n)) => *n += 1,
                None => seen.push((w, 1)),
            }
        }
    }
    seen.iter()
        .map(|(w, n)| {
            if *n > 1 {
                format!("{w}×{n}")
            } else {
                w.clone()
            }
        })
        .collect::<Vec<_>>()
        .join(",")
}

/// The parent pid and state letter from /proc/PID/stat (whose command
/// name, in parentheses, may hold spaces and parentheses itself).
fn stat_fields(pid: i32) -> Option<(i32, char)> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let mut rest = stat[stat.rfind(')')? + 1..].split_whitespace();
    let state = rest.next()?.chars().next()?;
    let ppid = rest.next()?.parse().ok()?;
    Some((ppid, state))
}

/// Kills `child` and every descendant it has, so that nothing the test
/// started is left running, reaps it within a few seconds, and returns
/// the tree as it was first read. Each process is stopped first, while
/// the tree is read again until no new one appears: a stopped process
/// forks no more, and its children stay its own instead of going to init
/// when it dies. (A process that had left the tree, double-forked, is out
/// of reach.)
pub fn kill_tree(child: &mut Child) -> String {
    use nix::sys::signal::{kill, Signal};
    let tree = process_tree(child.id());
    let report = tree
        .iter()
        .map(|(_, line)| line.as_str())
        .collect::<Vec<_>>()
        .join("\n");
    let mut stopped: Vec<i32> = Vec::new();
    let mut now = tree;
    for _ in 0..20 {
        let new: Vec<i32> = now
            .iter()
            .map(|(pid, _)| *pid)
            .filter(|pid| !stopped.contains(pid))
            .collect();
        if new.is_empty() {
            break;
        }
        for pid in new {
            let _ = kill(nix::unistd::Pid::from_raw(pid), Signal::SIGSTOP);
            stopped.push(pid);
        }
        now = process_tree(child.id());
    }
    for pid in &stopped {
        let _ = kill(nix::unistd::Pid::from_raw(*pid), Signal::SIGKILL);
    }
    let _ = wait_until(child, Duration::from_secs(5));
    report
}

#[cfg(test)]
mod tests {
    use crate::{eventually, output_within, processes_with_arg, unique_token};
    use std::process::Command;
    use std::time::Duration;

    /// An overrun reports what was printed and the processes left, whose
    /// grandchild holding the pipe open is killed with the rest.
    #[test]
    fn an_overrun_reports_partial_output_and_leaves_nothing_running() {
        let token = unique_token();
        let script = format!("echo started; echo to-stderr >&2; sleep {token} & wait");
        let failed = std::panic::catch_unwind(|| {
            output_within(
                Command::new("sh").args(["-c", &script]),
                Duration::from_secs(3),
            )
        });
        let message = *failed
            .expect_err("the overrun failed the test")
            .downcast::<String>()
            .unwrap();
        assert!(
            message.contains("stdout so far: \"started\\n\""),
            "{message}"
        );
        assert!(
            message.contains("stderr so far: \"to-stderr\\n\""),
            "{message}"
        );
        // The grandchild itself, not only the shell's line naming it.
        let grandchild = format!(" sleep {token}");
        assert!(
            message.lines().any(|l| l.ends_with(&grandchild)),
            "{message}"
        );
        let gone = eventually(Duration::from_secs(10), || {
            processes_with_arg(&token).is_empty()
        });
        assert!(gone, "{message}");
    }
}

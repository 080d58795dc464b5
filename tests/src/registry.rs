//! A local registry for the pull tests: Debian's `docker-registry` on
//! 127.0.0.1, its storage and htpasswd file in a temporary directory,
//! started as the test's own (unprivileged) account and killed on drop;
//! images pushed to it and inspected by `skopeo`.

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Condvar, Mutex};
use std::time::Duration;

use crate::{eventually, free_port, output, skipped, Output, TempDir};

pub struct Registry {
    child: Child,
    dir: TempDir,
    /// `127.0.0.1:PORT`.
    pub host: String,
}

/// The account every registry here accepts (htpasswd, bcrypt).
pub const USER: &str = "alice";
pub const PASSWORD: &str = "burrow-secret";

fn have(tool: &str) -> bool {
    Command::new("sh")
        .args(["-c", &format!("command -v {tool}")])
        .stdout(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

/// Whether the registry `child` accepts connections on `host` (before it
/// exits, as it does when the port was taken).
fn listening(child: &mut Child, host: &str) -> bool {
    let addr = host.parse().unwrap();
    eventually(Duration::from_secs(20), || {
        TcpStream::connect_timeout(&addr, Duration::from_millis(200)).is_ok()
            || matches!(child.try_wait(), Ok(Some(_)))
    }) && matches!(child.try_wait(), Ok(None))
}

impl Registry {
    /// A registry that asks for `USER`/`PASSWORD` (basic auth), or `None`
    /// (having said SKIPPED) when the tools are missing.
    pub fn start() -> Option<Registry> {
        Self::start_with(None, false)
    }

    /// A registry whose clients need Bearer tokens from `tokens`.
    pub fn start_with_tokens(tokens: &crate::token::TokenServer) -> Option<Registry> {
        Self::start_with(Some(tokens), false)
    }

    /// A registry that speaks HTTPS only, with a certificate for 127.0.0.1
    /// from a test CA of its own (`ca.pem` in [`Registry::ca`]).
    pub fn start_with_tls() -> Option<Registry> {
        Self::start_with(None, true)
    }

    /// The test CA's certificate of a registry started with TLS.
    pub fn ca(&self) -> PathBuf {
        self.dir.join("ca.pem")
    }

    fn start_with(tokens: Option<&crate::token::TokenServer>, tls: bool) -> Option<Registry> {
        for tool in ["docker-registry", "skopeo", "htpasswd", "openssl"] {
            if !have(tool) {
                skipped(&format!(
                    "{tool} is not installed (scripts/setup-host.sh installs it)"
                ));
                return None;
            }
        }
        let dir = TempDir::new("registry");
        let htpasswd = output(Command::new("htpasswd").args(["-Bbn", USER, PASSWORD]));
        assert_eq!(htpasswd.code, 0, "htpasswd: {htpasswd:?}");
        std::fs::write(dir.join("htpasswd"), htpasswd.stdout.trim_end()).unwrap();
        let tls = if tls {
            make_certificates(&dir);
            format!(
                "  tls:\n    certificate: {}\n    key: {}\n",
                dir.join("server.pem").display(),
                dir.join("server.key").display()
            )
        } else {
            String::new()
        };
        // A port free a moment ago may be taken by the time the registry
        // binds it: try a few.
        for _ in 0..5 {
            let port = free_port();
            let host = format!("127.0.0.1:{port}");
            let config = format!(
                "version: 0.1\n\
                 log:\n  level: info\n\
                 storage:\n  filesystem:\n    rootdirectory: {root}\n  delete:\n    enabled: true\n\
                 http:\n  addr: {host}\n{tls}{auth}",
                root = dir.join("storage").display(),
                auth = match tokens {
                    None => format!(
                        "auth:\n  htpasswd:\n    realm: burrow-test\n    path: {}\n",
                        dir.join("htpasswd").display()
                    ),
                    Some(t) => format!(
                        "auth:\n  token:\n    realm: {}\n    service: {}\n    issuer: {}\n    \
                         rootcertbundle: {}\n",
                        t.realm,
                        crate::token::SERVICE,
                        crate::token::ISSUER,
                        t.cert.display()
                    ),
                },
            );
            std::fs::write(dir.join("config.yml"), config).unwrap();
            let log = std::fs::File::create(dir.join("log")).unwrap();
            let mut child = Command::new("docker-registry")
                .arg("serve")
                .arg(dir.join("config.yml"))
                .stdin(Stdio::null())
                .stdout(log.try_clone().unwrap())
                .stderr(log)
                .spawn()
                .expect("docker-registry starts");
            if listening(&mut child, &host) {
                return Some(Registry { child, dir, host });
            }
            let _ = child.kill();
            let _ = child.wait();
        }
        panic!("docker-registry did not start on a free port in 5 tries");
    }

    /// The registry's storage: `docker/registry/v2/...`.
    pub fn storage(&self) -> PathBuf {
        self.dir.join("storage")
    }

    /// The file a blob's bytes are kept in.
    pub fn blob_file(&self, digest: &str) -> PathBuf {
        let hex = digest.trim_start_matches("sha256:");
        self.storage()
            .join("docker/registry/v2/blobs/sha256")
            .join(&hex[..2])
            .join(hex)
            .join("data")
    }

    /// Blob downloads the registry has served so far (its access log).
    pub fn blob_gets(&self) -> usize {
        let log = std::fs::read_to_string(self.dir.join("log")).unwrap_or_default();
        log.lines()
            .filter(|l| l.contains("\"GET /v2/") && l.contains("/blobs/sha256:"))
            .count()
    }

    /// The registry's log, for failure messages.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.join("log")).unwrap_or_default()
    }

    /// `skopeo copy [--all] SOURCE docker://HOST/DEST` with the account's
    /// credentials.
    pub fn push(&self, source: &str, dest: &str, all: bool) {
        let mut cmd = Command::new("skopeo");
        cmd.args(["copy", "--quiet", "--dest-tls-verify=false"])
            .arg(format!("--dest-creds={USER}:{PASSWORD}"));
        if all {
            cmd.arg("--all");
        }
        let out = output(
            cmd.arg(source)
                .arg(format!("docker://{}/{dest}", self.host))
                .env("HOME", self.dir.path()),
        );
        assert_eq!(out.code, 0, "skopeo copy {source}: {out:?}");
    }

    /// The manifest digest skopeo sees for `docker://HOST/NAME`.
    pub fn digest(&self, name: &str) -> String {
        let out = output(
            Command::new("skopeo")
                .args(["inspect", "--tls-verify=false", "--format", "{{.Digest}}"])
                .arg(format!("--creds={USER}:{PASSWORD}"))
                .arg(format!("docker://{}/{name}", self.host))
                .env("HOME", self.dir.path()),
        );
        out.ok().trim().to_string()
    }

    /// The manifest (or index) skopeo reads for `docker://HOST/NAME`.
    pub fn manifest(&self, name: &str) -> serde_json::Value {
        let out = output(
            Command::new("skopeo")
                .args(["inspect", "--raw", "--tls-verify=false"])
                .arg(format!("--creds={USER}:{PASSWORD}"))
                .arg(format!("docker://{}/{name}", self.host))
                .env("HOME", self.dir.path()),
        );
        serde_json::from_str(out.ok()).expect("a JSON manifest")
    }

    /// `skopeo login` to this registry, writing the credentials where
    /// `runtime_dir` (as $XDG_RUNTIME_DIR) puts them.
    pub fn login(&self, runtime_dir: &Path) -> Output {
        self.login_at(&self.host, runtime_dir)
    }

    /// `skopeo login` to this registry reached at `host` (a proxy).
    pub fn login_at(&self, host: &str, runtime_dir: &Path) -> Output {
        output(
            Command::new("skopeo")
                .args(["login", "--tls-verify=false", "-u", USER, "-p", PASSWORD])
                .arg(host)
                .env("XDG_RUNTIME_DIR", runtime_dir)
                .env("HOME", self.dir.path()),
        )
    }
}

/// A CA and, signed by it, a server certificate for 127.0.0.1, in `dir`.
fn make_certificates(dir: &TempDir) {
    let run = |args: &[&str]| {
        let out = output(Command::new("openssl").args(args).current_dir(dir.path()));
        assert_eq!(out.code, 0, "openssl {args:?}: {out:?}");
    };
    run(&[
        "req",
        "-x509",
        "-newkey",
        "rsa:2048",
        "-nodes",
        "-days",
        "2",
        "-subj",
        "/CN=burrow-test-ca",
        "-keyout",
        "ca.key",
        "-out",
        "ca.pem",
        "-addext",
        "basicConstraints=critical,CA:TRUE",
        "-addext",
        "keyUsage=critical,keyCertSign",
    ]);
    run(&[
        "req",
        "-newkey",
        "rsa:2048",
        "-nodes",
        "-subj",
        "/CN=127.0.0.1",
        "-keyout",
        "server.key",
        "-out",
        "server.csr",
    ]);
    std::fs::write(
        dir.join("server.ext"),
        "subjectAltName=IP:127.0.0.1\nextendedKeyUsage=serverAuth\nbasicConstraints=CA:FALSE\n",
    )
    .unwrap();
    run(&[
        "x509",
        "-req",
        "-in",
        "server.csr",
        "-CA",
        "ca.pem",
        "-CAkey",
        "ca.key",
        "-CAcreateserial",
        "-days",
        "2",
        "-out",
        "server.pem",
        "-extfile",
        "server.ext",
    ]);
}

impl Drop for Registry {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A TCP proxy to a registry that passes at most `cap` bytes of each
/// connection's responses and then holds the connection open, passing
/// nothing more: a download that stalls midway, for a pull to be killed
/// in. Its threads end with the test process.
pub struct StallingProxy {
    /// `127.0.0.1:PORT`.
    pub host: String,
    stalled: Arc<(Mutex<bool>, Condvar)>,
}

impl StallingProxy {
    pub fn start(upstream: &str, cap: usize) -> StallingProxy {
        let listener = TcpListener::bind("127.0.0.1:0").expect("a proxy port");
        let host = listener.local_addr().unwrap().to_string();
        let stalled = Arc::new((Mutex::new(false), Condvar::new()));
        let (upstream, flag) = (upstream.to_string(), stalled.clone());
        std::thread::spawn(move || {
            for client in listener.incoming().flatten() {
                let Ok(server) = TcpStream::connect(&upstream) else {
                    continue;
                };
                let (mut c_in, mut s_out) =
                    (client.try_clone().unwrap(), server.try_clone().unwrap());
                std::thread::spawn(move || std::io::copy(&mut c_in, &mut s_out));
                let flag = flag.clone();
                std::thread::spawn(move || {
                    let (mut server, mut client) = (server, client);
                    let mut left = cap;
                    let mut buf = vec![0; 64 << 10];
                    while left > 0 {
                        let n = match server.read(&mut buf) {
                            Ok(0) | Err(_) => return,
                            Ok(n) => n.min(left),
                        };
                        if client.write_all(&buf[..n]).is_err() {
                            return;
                        }
                        left -= n;
                    }
                    *flag.0.lock().unwrap() = true;
                    flag.1.notify_all();
                    // Hold both ends open, passing nothing.
                    loop {
                        std::thread::park();
                    }
                });
            }
        });
        StallingProxy { host, stalled }
    }

    /// Whether some connection reached the cap within `limit`.
    pub fn wait_stalled(&self, limit: Duration) -> bool {
        let (lock, cond) = &*self.stalled;
        let guard = lock.lock().unwrap();
        let (guard, _) = cond.wait_timeout_while(guard, limit, |s| !*s).unwrap();
        *guard
    }
}

/// A proxy in front of a registry that answers every blob download with a
/// redirect to another host (127.0.0.2, as a CDN would be), where a server
/// of its own serves the blob from the registry's storage and notes
/// whether the request carried an `Authorization` header. Everything else
/// is passed to the registry, a connection per request.
pub struct RedirectingProxy {
    /// `127.0.0.1:PORT`.
    pub host: String,
    /// What the other host was asked: (path, had Authorization).
    pub served: Arc<Mutex<Vec<(String, bool)>>>,
}

/// The head of an HTTP request (request line and headers) read from `r`.
fn request_head(r: &mut impl std::io::BufRead) -> Vec<String> {
    let mut head = Vec::new();
    let mut line = String::new();
    while r.read_line(&mut line).is_ok_and(|n| n > 2) {
        head.push(std::mem::take(&mut line));
    }
    head
}

impl RedirectingProxy {
    pub fn start(registry: &Registry) -> RedirectingProxy {
        let served = Arc::new(Mutex::new(Vec::new()));
        let cdn = TcpListener::bind("127.0.0.2:0").expect("a port on 127.0.0.2");
        let cdn_host = cdn.local_addr().unwrap().to_string();
        let (storage, log) = (registry.storage(), served.clone());
        std::thread::spawn(move || {
            for conn in cdn.incoming().flatten() {
                let (storage, log) = (storage.clone(), log.clone());
                std::thread::spawn(move || {
                    let mut reader = std::io::BufReader::new(conn.try_clone().unwrap());
                    let head = request_head(&mut reader);
                    let path = head
                        .first()
                        .and_then(|l| l.split_whitespace().nth(1))
                        .unwrap_or("")
                        .to_string();
                    let auth = head
                        .iter()
                        .any(|h| h.to_ascii_lowercase().starts_with("authorization:"));
                    log.lock().unwrap().push((path.clone(), auth));
                    let hex = path.trim_start_matches("/blobs/");
                    let file = storage
                        .join("docker/registry/v2/blobs/sha256")
                        .join(hex.get(..2).unwrap_or("xx"))
                        .join(hex)
                        .join("data");
                    let reply = match std::fs::read(&file) {
                    Ok(data) => {
                        let mut r = format!(
                            "HTTP/1.1 200 OK\r\nContent-Length: {}\r\nContent-Type: \
                             application/octet-stream\r\nConnection: close\r\n\r\n",
                            data.len()
                        )
                        .into_bytes();
                        r.extend(data);
                        r
                    }
                    Err(_) => b"HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
                        .to_vec(),
                };
                    let _ = (&conn).write_all(&reply);
                });
            }
        });
        let listener = TcpListener::bind("127.0.0.1:0").expect("a proxy port");
        let host = listener.local_addr().unwrap().to_string();
        let upstream = registry.host.clone();
        std::thread::spawn(move || {
            for client in listener.incoming().flatten() {
                let (cdn_host, upstream) = (cdn_host.clone(), upstream.clone());
                std::thread::spawn(move || {
                    let mut reader = std::io::BufReader::new(client.try_clone().unwrap());
                    let head = request_head(&mut reader);
                    let target = head
                        .first()
                        .and_then(|l| l.split_whitespace().nth(1))
                        .unwrap_or("")
                        .to_string();
                    let blob = target
                        .split_once("/blobs/sha256:")
                        .filter(|_| head[0].starts_with("GET "))
                        .map(|(_, hex)| hex.to_string());
                    if let Some(hex) = blob {
                        let reply = format!(
                        "HTTP/1.1 307 Temporary Redirect\r\nLocation: http://{cdn_host}/blobs/{hex}\r\n\
                         Content-Length: 0\r\nConnection: close\r\n\r\n"
                    );
                        let _ = (&client).write_all(reply.as_bytes());
                        return;
                    }
                    let Ok(mut server) = TcpStream::connect(&upstream) else {
                        return;
                    };
                    // One request per connection: the registry closes after
                    // its answer, and so does the proxy.
                    let mut out = String::new();
                    for h in &head {
                        if !h.to_ascii_lowercase().starts_with("connection:") {
                            out.push_str(h);
                        }
                    }
                    out.push_str("Connection: close\r\n\r\n");
                    if server.write_all(out.as_bytes()).is_err() {
                        return;
                    }
                    let mut client = client;
                    let _ = std::io::copy(&mut server, &mut client);
                });
            }
        });
        RedirectingProxy { host, served }
    }
}

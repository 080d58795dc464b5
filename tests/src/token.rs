//! A token server for the registry tests (the distribution spec's Bearer
//! token flow): HTTP on 127.0.0.1, Basic credentials checked against the
//! registry's account, JWTs signed RS256 by a key and self-signed
//! certificate that `openssl` makes for each server, and every request it
//! answered logged for the test to read. Anonymous clients get `pull` on
//! the repositories under its public prefix and nothing else.

use std::io::{BufRead, BufReader, Write};
use std::net::TcpListener;
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex};

use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use base64::Engine as _;

use crate::registry::{PASSWORD, USER};
use crate::{output, TempDir};

/// The registry's `auth.token.service` and `issuer`.
pub const SERVICE: &str = "burrow-test-registry";
pub const ISSUER: &str = "burrow-test-tokens";

/// One request the server answered.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Asked {
    /// The Basic user, when credentials were given (and right).
    pub user: Option<String>,
    /// `repository:NAME:ACTIONS`, as asked.
    pub scopes: Vec<String>,
    /// Whether the Authorization header was there at all.
    pub with_credentials: bool,
}

pub struct TokenServer {
    /// `http://127.0.0.1:PORT/token`.
    pub realm: String,
    /// The certificate the registry trusts (`rootcertbundle`).
    pub cert: PathBuf,
    log: Arc<Mutex<Vec<Asked>>>,
    _dir: TempDir,
}

impl TokenServer {
    /// A server granting anonymous `pull` below `public` (e.g. "public/").
    pub fn start(public: &str) -> TokenServer {
        let dir = TempDir::new("tokens");
        let (key, cert) = (dir.join("key.pem"), dir.join("cert.pem"));
        let out = output(
            Command::new("openssl")
                .args([
                    "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2",
                ])
                .args(["-subj", "/CN=burrow-test-tokens", "-keyout"])
                .arg(&key)
                .arg("-out")
                .arg(&cert),
        );
        assert_eq!(out.code, 0, "openssl req: {out:?}");
        let der = Command::new("openssl")
            .args(["x509", "-outform", "DER", "-in"])
            .arg(&cert)
            .output()
            .unwrap();
        assert!(der.status.success());
        let x5c = STANDARD.encode(der.stdout);
        let listener = TcpListener::bind("127.0.0.1:0").expect("a token server port");
        let realm = format!("http://{}/token", listener.local_addr().unwrap());
        let log = Arc::new(Mutex::new(Vec::new()));
        let (public, seen) = (public.to_string(), log.clone());
        std::thread::spawn(move || {
            for conn in listener.incoming().flatten() {
                let mut reader = BufReader::new(conn.try_clone().unwrap());
                let mut head = Vec::new();
                let mut line = String::new();
                while reader.read_line(&mut line).is_ok_and(|n| n > 2) {
                    head.push(std::mem::take(&mut line));
                }
                let reply = answer(&head, &public, &key, &x5c, &seen);
                let _ = (&conn).write_all(reply.as_bytes());
            }
        });
        TokenServer {
            realm,
            cert,
            log,
            _dir: dir,
        }
    }

    /// The requests answered so far.
    pub fn asked(&self) -> Vec<Asked> {
        self.log.lock().unwrap().clone()
    }
}

fn decode(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::new();
    let mut i = 0;
    while i < b.len() {
        match b[i] {
            b'%' if i + 2 < b.len() => {
                let hex = std::str::from_utf8(&b[i + 1..i + 3]).unwrap_or("");
                match u8::from_str_radix(hex, 16) {
                    Ok(v) => {
                        out.push(v);
                        i += 3;
                        continue;
                    }
                    Err(_) => out.push(b'%'),
                }
            }
            b'+' => out.push(b' '),
            c => out.push(c),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

fn http(status: &str, body: &str) -> String {
    format!(
        "HTTP/1.1 {status}\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\
         Connection: close\r\n\r\n{body}",
        body.len()
    )
}

/// The reply to a request whose head (request line, headers) is `head`.
fn answer(
    head: &[String],
    public: &str,
    key: &std::path::Path,
    x5c: &str,
    log: &Mutex<Vec<Asked>>,
) -> String {
    let target = head
        .first()
        .and_then(|l| l.split_whitespace().nth(1))
        .unwrap_or("");
    let query = target.split_once('?').map_or("", |(_, q)| q);
    let scopes: Vec<String> = query
        .split('&')
        .filter_map(|kv| kv.split_once('='))
        .filter(|(k, _)| *k == "scope")
        .map(|(_, v)| decode(v))
        .collect();
    let basic = head.iter().find_map(|h| {
        let (name, value) = h.split_once(':')?;
        name.eq_ignore_ascii_case("authorization")
            .then(|| value.trim().strip_prefix("Basic ").map(str::to_string))?
    });
    let creds = basic
        .as_deref()
        .and_then(|b| STANDARD.decode(b).ok())
        .map(|b| String::from_utf8_lossy(&b).into_owned());
    let user = match &creds {
        Some(c) if *c == format!("{USER}:{PASSWORD}") => Some(USER.to_string()),
        Some(_) => {
            log.lock().unwrap().push(Asked {
                user: None,
                scopes,
                with_credentials: true,
            });
            return http("401 Unauthorized", r#"{"details":"bad credentials"}"#);
        }
        None => None,
    };
    // What each scope may have: everything for the account, pull on the
    // public repositories for anyone.
    let access: Vec<serde_json::Value> = scopes
        .iter()
        .filter_map(|s| {
            let mut parts = s.splitn(3, ':');
            let (kind, name, actions) = (parts.next()?, parts.next()?, parts.next()?);
            let granted: Vec<&str> = actions
                .split(',')
                .filter(|a| user.is_some() || (name.starts_with(public) && *a == "pull"))
                .collect();
            Some(serde_json::json!({"type": kind, "name": name, "actions": granted}))
        })
        .collect();
    log.lock().unwrap().push(Asked {
        user: user.clone(),
        scopes,
        with_credentials: creds.is_some(),
    });
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    let header = serde_json::json!({"typ": "JWT", "alg": "RS256", "x5c": [x5c]});
    let claims = serde_json::json!({
        "iss": ISSUER, "sub": user.clone().unwrap_or_default(), "aud": SERVICE,
        "exp": now + 300, "nbf": now - 10, "iat": now, "jti": format!("t{now}{}", access.len()),
        "access": access,
    });
    let signing_input = format!(
        "{}.{}",
        URL_SAFE_NO_PAD.encode(header.to_string()),
        URL_SAFE_NO_PAD.encode(claims.to_string())
    );
    let mut openssl = Command::new("openssl")
        .args(["dgst", "-sha256", "-sign"])
        .arg(key)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    openssl
        .stdin
        .take()
        .unwrap()
        .write_all(signing_input.as_bytes())
        .unwrap();
    let signed = openssl.wait_with_output().unwrap();
    assert!(signed.status.success(), "openssl dgst -sign");
    let token = format!("{signing_input}.{}", URL_SAFE_NO_PAD.encode(signed.stdout));
    http(
        "200 OK",
        &serde_json::json!({"token": token, "access_token": token, "expires_in": 300}).to_string(),
    )
}

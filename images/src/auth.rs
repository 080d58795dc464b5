//! Registry credentials from the files `podman login`, `skopeo login` and
//! `docker login` write (containers-auth.json(5)): `$REGISTRY_AUTH_FILE`,
//! `$XDG_RUNTIME_DIR/containers/auth.json`,
//! `~/.config/containers/auth.json`, then `~/.docker/config.json`. The
//! first file with an entry for the registry (or for the repository, the
//! most specific key first) gives the credentials.

use std::path::PathBuf;

use base64::Engine as _;
use serde_json::Value;

use crate::{blob, io_err, Error, Result};

/// A user name and password (or identity token) for a registry.
#[derive(Clone, PartialEq, Eq)]
pub struct Credentials {
    pub username: String,
    pub password: String,
}

impl std::fmt::Debug for Credentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Credentials({}, <hidden>)", self.username)
    }
}

fn files() -> Vec<PathBuf> {
    let var = |k: &str| {
        std::env::var_os(k)
            .map(PathBuf::from)
            .filter(|p| p.is_absolute())
    };
    let mut files = Vec::new();
    if let Some(f) = var("REGISTRY_AUTH_FILE") {
        files.push(f);
    }
    if let Some(run) = var("XDG_RUNTIME_DIR") {
        files.push(run.join("containers/auth.json"));
    }
    let config = var("XDG_CONFIG_HOME").or_else(|| var("HOME").map(|h| h.join(".config")));
    if let Some(c) = config {
        files.push(c.join("containers/auth.json"));
    }
    if let Some(h) = var("HOME") {
        files.push(h.join(".docker/config.json"));
    }
    files
}

/// The credentials for `repository` (`HOST[:PORT]/NAME`) on `registry`.
pub fn credentials(registry: &str, repository: &str) -> Result<Option<Credentials>> {
    for file in files() {
        let data = match blob::read_bounded(&file, 1 << 20) {
            Ok(d) => d,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
            Err(e) => return Err(io_err(format!("credentials {}", file.display()))(e)),
        };
        let shown = file.display().to_string();
        if let Some(c) = lookup(&data, registry, repository, &shown)? {
            return Ok(Some(c));
        }
    }
    Ok(None)
}

/// A key of `auths` as the registry (and path) it names: scheme and
/// Docker's `/v1/` suffix dropped.
fn normalized(key: &str) -> &str {
    let key = key
        .strip_prefix("https://")
        .or_else(|| key.strip_prefix("http://"))
        .unwrap_or(key);
    key.strip_suffix("/v1/")
        .or_else(|| key.strip_suffix('/'))
        .unwrap_or(key)
}

fn lookup(
    data: &[u8],
    registry: &str,
    repository: &str,
    shown: &str,
) -> Result<Option<Credentials>> {
    let bad = |why: String| Error::Invalid(format!("credentials {shown}: {why}"));
    let doc: Value = serde_json::from_slice(data).map_err(|e| bad(e.to_string()))?;
    let Some(auths) = doc.get("auths").and_then(Value::as_object) else {
        return Ok(None);
    };
    // `HOST/a/b/c`, then `HOST/a/b`, ..., then `HOST`.
    let full = format!("{registry}/{repository}");
    let mut scopes: Vec<&str> = vec![full.as_str()];
    let mut s = full.as_str();
    while let Some((head, _)) = s.rsplit_once('/') {
        scopes.push(head);
        s = head;
    }
    for scope in scopes {
        let Some((_, entry)) = auths.iter().find(|(k, _)| normalized(k) == scope) else {
            continue;
        };
        let Some(auth) = entry.get("auth").and_then(Value::as_str) else {
            continue;
        };
        let decoded = base64::engine::general_purpose::STANDARD
            .decode(auth.trim())
            .map_err(|e| bad(format!("{scope}: auth is not base64 ({e})")))?;
        let decoded =
            String::from_utf8(decoded).map_err(|_| bad(format!("{scope}: auth is not UTF-8")))?;
        let (username, password) = decoded
            .split_once(':')
            .ok_or_else(|| bad(format!("{scope}: auth is not USER:PASSWORD")))?;
        return Ok(Some(Credentials {
            username: username.into(),
            password: password.into(),
        }));
    }
    Ok(None)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_most_specific_entry_wins_and_docker_keys_are_normalized() {
        let b64 = |s: &str| base64::engine::general_purpose::STANDARD.encode(s);
        let doc = serde_json::json!({"auths": {
            "reg.example:5000": {"auth": b64("host:pw1")},
            "reg.example:5000/team": {"auth": b64("team:pw2")},
            "https://index.docker.io/v1/": {"auth": b64("hub:pw3")},
        }});
        let data = serde_json::to_vec(&doc).unwrap();
        let get =
            |reg: &str, repo: &str| lookup(&data, reg, repo, "f").unwrap().map(|c| c.username);
        assert_eq!(get("reg.example:5000", "team/app").as_deref(), Some("team"));
        assert_eq!(
            get("reg.example:5000", "other/app").as_deref(),
            Some("host")
        );
        assert_eq!(get("index.docker.io", "library/x").as_deref(), Some("hub"));
        assert_eq!(get("reg.example", "team/app"), None);
        let bad = serde_json::to_vec(&serde_json::json!({"auths": {"r": {"auth": "!!"}}})).unwrap();
        assert!(lookup(&bad, "r", "x", "f").is_err());
    }
}

//! Who the command runs as: a `USER[:GROUP]` (`burrow run --user`, an
//! image's `User`) resolved in the sandbox's own `/etc/passwd` and
//! `/etc/group`, read by the sandbox's init once its root is in place and
//! before the command runs. As podman and Docker resolve it: a name must be
//! in the file; a number need not be (its group is then 0 and its home
//! `/`); without an explicit group the user's primary group is
//! `/etc/passwd`'s and its supplementary groups are those of `/etc/group`
//! that list the user's name.
//!
//! No NSS: the image's `nsswitch.conf` and modules never run in burrow.

use std::ffi::CString;

/// The ids and home the command gets.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Identity {
    pub uid: u32,
    pub gid: u32,
    /// Supplementary groups (the primary one not repeated).
    pub groups: Vec<u32>,
    /// From `/etc/passwd`; `/` for a number it does not list.
    pub home: Vec<u8>,
}

/// The most of `/etc/passwd` or `/etc/group` read: more is an error, not
/// memory spent on a hostile image's file.
pub const MAX_FILE: u64 = 16 << 20;

/// `spec` resolved against the text of `/etc/passwd` and `/etc/group`
/// (either may be empty: the file is missing). The error names the part
/// that does not resolve.
pub fn resolve(spec: &str, passwd: &[u8], group: &[u8]) -> Result<Identity, String> {
    let (user, group_spec) = match spec.split_once(':') {
        Some((u, g)) => (u, Some(g)),
        None => (spec, None),
    };
    let users = || entries(passwd, 4);
    let (uid, gid, name, home) = if user.is_empty() {
        (0, 0, None, b"/root".to_vec())
    } else if let Some(uid) = number(user) {
        let uid = uid.map_err(|e| format!("user {user:?}: {e}"))?;
        match users().find(|f| number_bytes(f[2]) == Some(Ok(uid))) {
            Some(f) => (uid, gid_of(&f, user)?, Some(f[0]), home_of(&f)),
            None => (uid, 0, None, b"/".to_vec()),
        }
    } else {
        let f = users()
            .find(|f| f[0] == user.as_bytes())
            .ok_or_else(|| format!("user {user:?} is not in the sandbox's /etc/passwd"))?;
        let uid = match number_bytes(f[2]) {
            Some(Ok(uid)) => uid,
            _ => return Err(format!("user {user:?}: /etc/passwd gives no valid uid")),
        };
        (uid, gid_of(&f, user)?, Some(f[0]), home_of(&f))
    };
    let groups_of = || entries(group, 3);
    let (gid, groups) = match group_spec {
        Some("") => return Err(format!("{spec:?}: the group after ':' is empty")),
        Some(g) => {
            let gid = match number(g) {
                Some(n) => n.map_err(|e| format!("group {g:?}: {e}"))?,
                None => {
                    let f = groups_of()
                        .find(|f| f[0] == g.as_bytes())
                        .ok_or_else(|| format!("group {g:?} is not in the sandbox's /etc/group"))?;
                    match number_bytes(f[2]) {
                        Some(Ok(gid)) => gid,
                        _ => return Err(format!("group {g:?}: /etc/group gives no valid gid")),
                    }
                }
            };
            (gid, Vec::new())
        }
        None => {
            let mut groups: Vec<u32> = Vec::new();
            if let Some(name) = name {
                for f in groups_of() {
                    let member = f
                        .get(3)
                        .is_some_and(|m| m.split(|&b| b == b',').any(|m| m == name));
                    if let (true, Some(Ok(g))) = (member, number_bytes(f[2])) {
                        if g != gid && !groups.contains(&g) {
                            groups.push(g);
                        }
                    }
                }
            }
            (gid, groups)
        }
    };
    Ok(Identity {
        uid,
        gid,
        groups,
        home,
    })
}

/// `spec` resolved against the current root's `/etc/passwd` and
/// `/etc/group` (a missing one is empty; one that is not a regular file,
/// or larger than [`MAX_FILE`], is an error).
pub fn resolve_in_root(spec: &str) -> Result<Identity, String> {
    let passwd = read_etc("/etc/passwd")?;
    let group = read_etc("/etc/group")?;
    resolve(spec, &passwd, &group).map_err(|e| format!("--user {spec}: {e}"))
}

fn read_etc(path: &str) -> Result<Vec<u8>, String> {
    use std::io::Read;
    use std::os::unix::fs::OpenOptionsExt;
    let fail = |e: std::io::Error| format!("{path}: {e}");
    // Not blocking on a FIFO an image put there; not following it to a
    // terminal's device either (only a regular file is read).
    let file = match std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NONBLOCK | libc::O_NOCTTY)
        .open(path)
    {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(fail(e)),
    };
    if !file.metadata().map_err(fail)?.is_file() {
        return Err(format!("{path}: not a regular file"));
    }
    let mut text = Vec::new();
    file.take(MAX_FILE + 1)
        .read_to_end(&mut text)
        .map_err(fail)?;
    if text.len() as u64 > MAX_FILE {
        return Err(format!("{path}: larger than {} MiB", MAX_FILE >> 20));
    }
    Ok(text)
}

/// `env` with `HOME=home` added when it has no HOME.
pub fn with_home(mut env: Vec<CString>, home: &[u8]) -> Vec<CString> {
    if !env.iter().any(|kv| kv.as_bytes().starts_with(b"HOME=")) {
        let mut kv = b"HOME=".to_vec();
        kv.extend_from_slice(home);
        env.extend(CString::new(kv).ok());
    }
    env
}

/// The lines of a colon-separated file with at least `min` fields,
/// comments and blank lines skipped.
fn entries(text: &[u8], min: usize) -> impl Iterator<Item = Vec<&[u8]>> {
    text.split(|&b| b == b'\n')
        .filter(|l| !l.is_empty() && !l.starts_with(b"#"))
        .map(|l| l.split(|&b| b == b':').collect::<Vec<_>>())
        .filter(move |f| f.len() >= min)
}

fn gid_of(f: &[&[u8]], user: &str) -> Result<u32, String> {
    match number_bytes(f[3]) {
        Some(Ok(gid)) => Ok(gid),
        _ => Err(format!("user {user:?}: /etc/passwd gives no valid gid")),
    }
}

fn home_of(f: &[&[u8]]) -> Vec<u8> {
    match f.get(5) {
        Some(h) if h.starts_with(b"/") => h.to_vec(),
        _ => b"/".to_vec(),
    }
}

/// `None` when `s` is not all digits (a name); an error for a number out
/// of range (`u32::MAX` is `(uid_t)-1`, "no change", to the kernel).
fn number(s: &str) -> Option<Result<u32, String>> {
    number_bytes(s.as_bytes())
}

fn number_bytes(s: &[u8]) -> Option<Result<u32, String>> {
    if s.is_empty() || !s.iter().all(u8::is_ascii_digit) {
        return None;
    }
    let text = std::str::from_utf8(s).ok()?;
    Some(match text.parse::<u32>() {
        Ok(n) if n != u32::MAX => Ok(n),
        _ => Err(format!("{text} is out of range")),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const PASSWD: &[u8] = b"root:x:0:0:root:/root:/bin/sh\n\
        # a comment\n\
        www-data:x:33:33:www-data:/var/www:/usr/sbin/nologin\n\
        app:x:1000:1000::/home/app:/bin/sh\n\
        broken:x:abc:1\n";
    const GROUP: &[u8] = b"root:x:0:\n\
        www-data:x:33:\n\
        app:x:1000:\n\
        audio:x:29:app,www-data\n\
        video:x:44:www-data\n\
        staff:x:50:app\n";

    fn id(uid: u32, gid: u32, groups: &[u32], home: &str) -> Identity {
        Identity {
            uid,
            gid,
            groups: groups.to_vec(),
            home: home.as_bytes().to_vec(),
        }
    }

    #[test]
    fn names_and_numbers_resolve_as_podman_resolves_them() {
        let r = |s| resolve(s, PASSWD, GROUP);
        assert_eq!(r("app").unwrap(), id(1000, 1000, &[29, 50], "/home/app"));
        assert_eq!(r("1000").unwrap(), id(1000, 1000, &[29, 50], "/home/app"));
        assert_eq!(r("www-data").unwrap(), id(33, 33, &[29, 44], "/var/www"));
        // An explicit group: that one, and no supplementary groups.
        assert_eq!(r("app:staff").unwrap(), id(1000, 50, &[], "/home/app"));
        assert_eq!(r("app:7").unwrap(), id(1000, 7, &[], "/home/app"));
        // A number the file does not list: group 0, home /.
        assert_eq!(r("4242").unwrap(), id(4242, 0, &[], "/"));
        assert_eq!(r("4242:4242").unwrap(), id(4242, 4242, &[], "/"));
        assert_eq!(r("root").unwrap(), id(0, 0, &[], "/root"));
        // No files at all: numbers still work.
        assert_eq!(resolve("5:6", b"", b"").unwrap(), id(5, 6, &[], "/"));
    }

    #[test]
    fn what_does_not_resolve_is_named() {
        let e = |s| resolve(s, PASSWD, GROUP).unwrap_err();
        assert!(e("nobody-here").contains("\"nobody-here\" is not in the sandbox's /etc/passwd"));
        assert!(e("app:nogroup").contains("\"nogroup\" is not in the sandbox's /etc/group"));
        assert!(e("app:").contains("empty"));
        assert!(e("4294967295").contains("out of range"));
        assert!(e("99999999999").contains("out of range"));
        assert!(e("broken").contains("no valid uid"));
        // A name is matched whole, never as a prefix.
        assert!(e("ap").contains("not in"));
    }

    #[test]
    fn home_is_added_only_when_unset() {
        let env = vec![CString::new("A=1").unwrap()];
        let out = with_home(env, b"/home/app");
        assert_eq!(out[1].as_bytes(), b"HOME=/home/app");
        let out = with_home(out, b"/elsewhere");
        assert_eq!(out.len(), 2);
    }
}

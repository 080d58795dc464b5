//! Starting the command, for both of burrow's inits (the sandbox's pid 1
//! and the guest's): its environment with PWD set, and execvp(3)'s search
//! of PATH done here, since the PATH searched is the command's, not the
//! init's.

use std::ffi::CString;
use std::os::unix::ffi::OsStrExt;

/// The search path when the command's environment has no PATH.
pub const DEFAULT_PATH: &[u8] = b"/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

/// `env` with PWD set to `cwd` (any PWD it had is dropped).
pub fn with_pwd(env: &[CString], cwd: &[u8]) -> Vec<CString> {
    let mut out: Vec<CString> = env
        .iter()
        .filter(|kv| !kv.as_bytes().starts_with(b"PWD="))
        .cloned()
        .collect();
    let mut pwd = b"PWD=".to_vec();
    pwd.extend_from_slice(cwd);
    out.extend(CString::new(pwd).ok());
    out
}

/// Runs `argv[0]` with `argv` and `env`: a name with a slash as it is,
/// others looked up in `env`'s PATH (or [`DEFAULT_PATH`]). Returns only
/// when nothing could run, with the errno that explains it best: EACCES
/// when some candidate was refused, the first other error that is not
/// "no such file", else ENOENT.
pub fn exec_search(argv: &[CString], env: &[CString]) -> i32 {
    let Some(name) = argv.first() else {
        return libc::ENOENT;
    };
    let ptrs = |v: &[CString]| -> Vec<*const libc::c_char> {
        v.iter()
            .map(|s| s.as_ptr())
            .chain([std::ptr::null()])
            .collect()
    };
    let (argv_p, env_p) = (ptrs(argv), ptrs(env));
    search(name, env, |path| {
        // SAFETY: a NUL-terminated path and NULL-terminated arrays of
        // pointers to C strings, all of which outlive the call.
        unsafe { libc::execve(path.as_ptr(), argv_p.as_ptr(), env_p.as_ptr()) };
        std::io::Error::last_os_error()
            .raw_os_error()
            .unwrap_or(libc::ENOENT)
    })
}

/// What [`exec_search`] would find, without running it: 0 when `argv[0]`
/// is a file with an execute bit (what exec needs of root), else the
/// errno exec_search would most likely return. (Used where the command
/// waits before its exec, so that a missing one is told early.)
pub fn find_executable(argv: &[CString], env: &[CString]) -> i32 {
    use std::os::unix::fs::PermissionsExt;
    let Some(name) = argv.first() else {
        return libc::ENOENT;
    };
    search(name, env, |path| {
        match std::fs::metadata(std::ffi::OsStr::from_bytes(path.as_bytes())) {
            Ok(m) if m.is_file() && m.permissions().mode() & 0o111 != 0 => 0,
            Ok(_) => libc::EACCES,
            Err(e) => e.raw_os_error().unwrap_or(libc::ENOENT),
        }
    })
}

/// Tries `attempt` on `name` (a name with a slash) or on each PATH
/// candidate, until it returns 0 or an error other than "not there".
fn search(name: &CString, env: &[CString], mut attempt: impl FnMut(&CString) -> i32) -> i32 {
    if name.as_bytes().contains(&b'/') {
        return attempt(name);
    }
    let path = env
        .iter()
        .find_map(|kv| kv.as_bytes().strip_prefix(b"PATH="))
        .unwrap_or(DEFAULT_PATH);
    let mut denied = false;
    for dir in path.split(|&b| b == b':') {
        let mut full = if dir.is_empty() {
            b".".to_vec()
        } else {
            dir.to_vec()
        };
        full.push(b'/');
        full.extend_from_slice(name.as_bytes());
        let Ok(full) = CString::new(full) else {
            continue;
        };
        match attempt(&full) {
            libc::ENOENT | libc::ENOTDIR | libc::ELOOP | libc::ENAMETOOLONG => {}
            libc::EACCES => denied = true,
            other => return other,
        }
    }
    if denied {
        libc::EACCES
    } else {
        libc::ENOENT
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pwd_replaces_any_pwd_given() {
        let env = [c"A=1".to_owned(), c"PWD=/old".to_owned()];
        assert_eq!(
            with_pwd(&env, b"/new"),
            [c"A=1".to_owned(), c"PWD=/new".to_owned()]
        );
    }

    #[test]
    fn a_missing_command_is_enoent_and_a_directory_on_path_is_skipped() {
        let argv = [c"burrow-surely-absent".to_owned()];
        let env = [c"PATH=/nonexistent:/etc".to_owned()];
        assert_eq!(exec_search(&argv, &env), libc::ENOENT);
        // A path naming a directory: execve says EACCES.
        assert_eq!(exec_search(&[c"/".to_owned()], &env), libc::EACCES);
    }
}
